//! `${VAR}` / `${VAR:-default}` interpolation over the raw YAML text, before
//! parsing, so a variable can supply any scalar (a number, a duration, a
//! key) and the schema still types it.
//!
//! Comments are copied verbatim: a commented-out line that mentions an unset
//! variable must not break the file. A comment is a `#` at the start of a
//! line or after whitespace, outside a quoted scalar on that line.

/// The interpolated text and enough bookkeeping to map positions in it back
/// to the text as written, so errors point at the user's lines and columns.
#[derive(Debug)]
pub(crate) struct Interpolated {
    pub(crate) text: String,
    edits: Vec<Edit>,
}

/// One replaced span: `input[in_start..in_end]` became
/// `text[out_start..out_end]`.
#[derive(Debug, Clone, Copy)]
struct Edit {
    in_start: usize,
    in_end: usize,
    out_start: usize,
    out_end: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InterpolationError {
    /// Byte offset of the offending `${` in the input.
    pub(crate) offset: usize,
    pub(crate) message: String,
}

impl Interpolated {
    /// The input byte offset for a byte offset in the interpolated text. An
    /// offset inside a substituted value maps to the `${` that produced it.
    pub(crate) fn input_offset(&self, out: usize) -> usize {
        let (mut in_base, mut out_base) = (0, 0);
        for e in &self.edits {
            if out < e.out_start {
                break;
            }
            if out < e.out_end {
                return e.in_start;
            }
            (in_base, out_base) = (e.in_end, e.out_end);
        }
        in_base + out.saturating_sub(out_base)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Quote {
    None,
    Single,
    Double,
}

fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t' || b == b'\r'
}

fn is_var_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Replaces every `${VAR}` and `${VAR:-default}` (default used when VAR is
/// unset or empty) and turns `$${` into a literal `${`. Reports every bad or
/// unset reference, not only the first.
pub(crate) fn interpolate(
    input: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Interpolated, Vec<InterpolationError>> {
    let bytes = input.as_bytes();
    let mut text = String::with_capacity(input.len());
    let mut edits = Vec::new();
    let mut errors = Vec::new();
    // input[copied..i] is pending; it is flushed before each replacement.
    let mut copied = 0;
    let mut i = 0;
    let mut quote = Quote::None;
    let mut comment = false;
    // The byte before `i` on this line; None at the start of a line. Bytes
    // of multi-byte characters never equal the ASCII bytes looked for here.
    let mut prev: Option<u8> = None;

    while i < bytes.len() {
        let b = bytes[i];
        if b == b'\n' {
            // Quoted scalars rarely span lines in a config; treating each
            // line afresh keeps one stray quote from disabling comment
            // detection for the rest of the file.
            comment = false;
            quote = Quote::None;
            prev = None;
            i += 1;
            continue;
        }
        if comment {
            i += 1;
            continue;
        }
        match quote {
            Quote::Double => {
                if b == b'\\' && matches!(bytes.get(i + 1), Some(b'\\' | b'"')) {
                    prev = bytes.get(i + 1).copied();
                    i += 2;
                    continue;
                }
                if b == b'"' {
                    quote = Quote::None;
                }
            }
            Quote::Single => {
                if b == b'\'' {
                    if bytes.get(i + 1) == Some(&b'\'') {
                        prev = Some(b'\'');
                        i += 2;
                        continue;
                    }
                    quote = Quote::None;
                }
            }
            Quote::None => {
                let after_blank = prev.is_none_or(is_blank);
                if b == b'#' && after_blank {
                    comment = true;
                    i += 1;
                    continue;
                }
                // A quote opens a quoted scalar only where a scalar can start;
                // the apostrophe in `name: don't` is plain text.
                let scalar_start =
                    after_blank || prev.is_some_and(|p| matches!(p, b'[' | b'{' | b',' | b':'));
                if scalar_start && b == b'"' {
                    quote = Quote::Double;
                } else if scalar_start && b == b'\'' {
                    quote = Quote::Single;
                }
            }
        }

        if b == b'$' && input[i..].starts_with("$${") {
            text.push_str(&input[copied..i]);
            let out_start = text.len();
            text.push_str("${");
            edits.push(Edit {
                in_start: i,
                in_end: i + 3,
                out_start,
                out_end: text.len(),
            });
            i += 3;
            copied = i;
            prev = Some(b'{');
            continue;
        }
        if b == b'$' && input[i..].starts_with("${") {
            let body_start = i + 2;
            let Some(close) = input[body_start..]
                .find(['}', '\n'])
                .map(|p| body_start + p)
                .filter(|&p| bytes[p] == b'}')
            else {
                errors.push(InterpolationError {
                    offset: i,
                    message: "unterminated `${` (missing `}`); write `$${` for a literal `${`"
                        .to_owned(),
                });
                i = body_start;
                prev = Some(b'{');
                continue;
            };
            let reference = &input[i..=close];
            match resolve(&input[body_start..close], reference, lookup) {
                Ok(value) => {
                    text.push_str(&input[copied..i]);
                    let out_start = text.len();
                    text.push_str(&value);
                    edits.push(Edit {
                        in_start: i,
                        in_end: close + 1,
                        out_start,
                        out_end: text.len(),
                    });
                    copied = close + 1;
                }
                Err(message) => errors.push(InterpolationError { offset: i, message }),
            }
            i = close + 1;
            prev = Some(b'}');
            continue;
        }
        prev = Some(b);
        i += 1;
    }

    if !errors.is_empty() {
        return Err(errors);
    }
    text.push_str(&input[copied..]);
    Ok(Interpolated { text, edits })
}

/// The value for the inside of one `${...}`.
fn resolve(
    body: &str,
    reference: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, String> {
    let (name, default) = match body.split_once(":-") {
        Some((name, default)) => (name, Some(default)),
        None => (body, None),
    };
    if !is_var_name(name) {
        return Err(format!(
            "invalid variable reference `{reference}`: expected `${{NAME}}` or `${{NAME:-default}}` \
             with NAME made of letters, digits and `_`"
        ));
    }
    if default.is_some_and(|d| d.contains("${")) {
        return Err(format!(
            "invalid variable reference `{reference}`: a default cannot contain another `${{...}}`"
        ));
    }
    match (lookup(name), default) {
        (Some(v), None) => Ok(v),
        (Some(v), Some(_)) if !v.is_empty() => Ok(v),
        (_, Some(default)) => Ok(default.to_owned()),
        (None, None) => Err(format!(
            "environment variable `{name}` is not set (write `${{{name}:-default}}` to give a default)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("example.com".to_owned()),
            "EMPTY" => Some(String::new()),
            "LONG_VALUE" => Some("0123456789".to_owned()),
            _ => None,
        }
    }

    fn run(input: &str) -> Result<String, Vec<InterpolationError>> {
        interpolate(input, &env).map(|i| i.text)
    }

    #[test]
    fn defined_variable() {
        assert_eq!(
            run("url: https://${HOST}/v1").unwrap(),
            "url: https://example.com/v1"
        );
    }

    #[test]
    fn default_when_unset_or_empty() {
        assert_eq!(run("a: ${NOPE:-x}").unwrap(), "a: x");
        assert_eq!(run("a: ${EMPTY:-x}").unwrap(), "a: x");
        assert_eq!(run("a: ${HOST:-x}").unwrap(), "a: example.com");
        assert_eq!(run("a: ${NOPE:-}").unwrap(), "a: ");
        // Set but empty without a default is not an error.
        assert_eq!(run("a: '${EMPTY}'").unwrap(), "a: ''");
    }

    #[test]
    fn missing_variable_names_it_and_its_place() {
        let errs = run("a: 1\nb: ${HOST}\nc: x ${MISSING_ONE}\nd: ${MISSING_TWO}\n").unwrap_err();
        assert_eq!(errs.len(), 2);
        assert!(
            errs[0].message.contains("`MISSING_ONE` is not set"),
            "{}",
            errs[0].message
        );
        assert_eq!(errs[0].offset, "a: 1\nb: ${HOST}\nc: x ".len());
        assert!(errs[1].message.contains("`MISSING_TWO`"));
    }

    #[test]
    fn escape_gives_literal() {
        assert_eq!(
            run("a: $${HOST} ${HOST}").unwrap(),
            "a: ${HOST} example.com"
        );
        assert_eq!(run("a: $$ and $x").unwrap(), "a: $$ and $x");
    }

    #[test]
    fn bad_references() {
        assert!(
            run("a: ${}").unwrap_err()[0]
                .message
                .contains("invalid variable reference")
        );
        assert!(
            run("a: ${1X}").unwrap_err()[0]
                .message
                .contains("invalid variable reference")
        );
        assert!(
            run("a: ${HOST:x}").unwrap_err()[0]
                .message
                .contains("invalid variable reference")
        );
        assert!(
            run("a: ${HOST\nb: 1").unwrap_err()[0]
                .message
                .contains("unterminated")
        );
        assert!(
            run("a: ${A:-${B}}").unwrap_err()[0]
                .message
                .contains("cannot contain")
        );
    }

    #[test]
    fn comments_are_left_alone() {
        let input =
            "# api_key: ${UNSET}\na: 1 # ${UNSET}\nb: \"x # ${HOST}\"\nc: don't # ${UNSET}\n";
        assert_eq!(
            run(input).unwrap(),
            "# api_key: ${UNSET}\na: 1 # ${UNSET}\nb: \"x # example.com\"\nc: don't # ${UNSET}\n"
        );
        // `#` inside a word is not a comment.
        assert_eq!(run("a: x#${HOST}").unwrap(), "a: x#example.com");
    }

    #[test]
    fn offsets_map_back_to_input() {
        let input = "a: ${LONG_VALUE} b\nc: $${x} ${EMPTY} d";
        let out = interpolate(input, &env).unwrap();
        assert_eq!(out.text, "a: 0123456789 b\nc: ${x}  d");
        let b_out = out.text.find(" b").unwrap() + 1;
        assert_eq!(out.input_offset(b_out), input.find(" b").unwrap() + 1);
        // Inside a substituted value: the `${` that produced it.
        assert_eq!(out.input_offset(5), 3);
        let d_out = out.text.rfind('d').unwrap();
        assert_eq!(out.input_offset(d_out), input.rfind('d').unwrap());
        assert_eq!(out.input_offset(0), 0);
    }
}
