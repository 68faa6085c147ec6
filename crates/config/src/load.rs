//! Loading: interpolate `${VAR}`, parse strictly, normalize, validate, and
//! turn every problem into a [`ConfigError`] with its place in the file.

use std::path::Path;

use crate::error::{ConfigError, ConfigErrors};
use crate::interpolate::{Interpolated, interpolate};
use crate::locate::{line_col, locate};
use crate::validate::{normalize, validate};
use crate::{Config, keypath::KeyPath};

/// `origin` for text that does not come from a file.
pub const EMBEDDED_ORIGIN: &str = "<embedded>";

impl Config {
    /// Reads, interpolates, parses and validates the YAML file at `path`.
    /// `${VAR}` references are resolved from the process environment.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        Self::load_with_env(path, |name| std::env::var(name).ok())
    }

    /// [`Config::load`] with `${VAR}` resolved through `lookup`.
    pub fn load_with_env(
        path: &Path,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigErrors> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new(
                origin.as_str(),
                "",
                format!("cannot read the config file: {e}"),
            )
        })?;
        Self::from_yaml_str_with_env(&text, &origin, lookup)
    }

    /// Like [`Config::load`] for text; `origin` names it in errors (a file
    /// path, or [`EMBEDDED_ORIGIN`]).
    pub fn from_yaml_str(text: &str, origin: &str) -> Result<Config, ConfigErrors> {
        Self::from_yaml_str_with_env(text, origin, |name| std::env::var(name).ok())
    }

    /// [`Config::from_yaml_str`] with `${VAR}` resolved through `lookup`.
    pub fn from_yaml_str_with_env(
        text: &str,
        origin: &str,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigErrors> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let interpolated = interpolate(text, &lookup).map_err(|errors| {
            ConfigErrors::new(
                errors
                    .into_iter()
                    .map(|e| {
                        ConfigError::new(origin, "", e.message).at(Some(line_col(text, e.offset)))
                    })
                    .collect(),
            )
        })?;

        let de = serde_norway::Deserializer::from_str(&interpolated.text);
        let mut config: Config = serde_path_to_error::deserialize(de)
            .map_err(|e| ConfigErrors::from(parse_error(&e, origin, text, &interpolated)))?;

        normalize(&mut config);
        let problems = validate(&config);
        if problems.is_empty() {
            return Ok(config);
        }
        let mut errors = ConfigErrors::new(
            problems
                .into_iter()
                .map(|(path, message)| {
                    let pos = position_of(&path, text, &interpolated);
                    ConfigError::new(origin, path.to_string(), message).at(pos)
                })
                .collect(),
        );
        errors.sort_by_position();
        Err(errors)
    }

    /// Validates a config built in code (the embedded default, or one changed
    /// after loading). Errors carry key paths but no line numbers.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigErrors> {
        let problems = validate(self);
        if problems.is_empty() {
            return Ok(());
        }
        Err(ConfigErrors::new(
            problems
                .into_iter()
                .map(|(path, message)| ConfigError::new(origin, path.to_string(), message))
                .collect(),
        ))
    }
}

/// Where `path` is written, or else its nearest written ancestor (short of
/// the document itself): a problem with a key left at its default (say
/// `retry.backoff_max` when only `backoff_base` was set) then points at the
/// block it belongs to instead of nowhere.
fn position_of(path: &KeyPath, text: &str, interpolated: &Interpolated) -> Option<(usize, usize)> {
    let mut at = path.clone();
    loop {
        if at.is_root() {
            return None;
        }
        if let Some(offset) = locate(&interpolated.text, &at) {
            return Some(line_col(text, interpolated.input_offset(offset)));
        }
        at = at.parent()?;
    }
}

fn parse_error(
    e: &serde_path_to_error::Error<serde_norway::Error>,
    origin: &str,
    text: &str,
    interpolated: &Interpolated,
) -> ConfigError {
    let path = e.path().to_string();
    let path = if path == "." { String::new() } else { path };
    let inner = e.inner();
    let message = clean_message(&inner.to_string(), &path);
    let pos = inner
        .location()
        .map(|l| line_col(text, interpolated.input_offset(l.index())));
    ConfigError::new(origin, path, message).at(pos)
}

/// serde_norway's messages carry their own copy of the key path and of the
/// position (in the interpolated text); both are reported separately here.
fn clean_message(message: &str, path: &str) -> String {
    let mut m = message;
    if !path.is_empty()
        && let Some(rest) = m.strip_prefix(path).and_then(|r| r.strip_prefix(": "))
    {
        m = rest;
    }
    if let Some((prefix, rest)) = m.split_once(": ") {
        let looks_like_path = !prefix.is_empty()
            && prefix.chars().all(|c| {
                c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '[' | ']' | '?')
            });
        if looks_like_path && prefix.contains(['.', '[']) {
            m = rest;
        }
    }
    let mut m = strip_positions(m);
    // serde's wording names the type but not what it looks like.
    if m.ends_with("expected a duration") {
        m.push_str(" such as `60s`, `1m 30s` or `500ms`");
    } else if m == "invalid socket address syntax" {
        m.push_str(": expected IP:PORT such as `127.0.0.1:8080` or `[::]:8080`");
    }
    m
}

/// Removes every ` at line N column M` and ` at position N`.
fn strip_positions(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(i) = rest.find(" at ") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 4..];
        if let Some(len) = position_len(after) {
            rest = &after[len..];
        } else {
            out.push_str(" at ");
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Length of a leading `line N column M` or `position N`.
fn position_len(s: &str) -> Option<usize> {
    fn digits(s: &str) -> usize {
        s.bytes().take_while(u8::is_ascii_digit).count()
    }
    if let Some(r) = s.strip_prefix("line ") {
        let n = digits(r);
        let r2 = r[n..].strip_prefix(" column ")?;
        let m = digits(r2);
        (n > 0 && m > 0).then(|| "line ".len() + n + " column ".len() + m)
    } else if let Some(r) = s.strip_prefix("position ") {
        let n = digits(r);
        (n > 0).then(|| "position ".len() + n)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_positions() {
        assert_eq!(
            strip_positions(
                "did not find expected key at line 5 column 3, while parsing a block mapping at line 2 column 1"
            ),
            "did not find expected key, while parsing a block mapping"
        );
        assert_eq!(
            strip_positions("look at this at position 12"),
            "look at this"
        );
    }

    #[test]
    fn strips_duplicate_path() {
        assert_eq!(
            clean_message(
                "providers[0].kind: unknown variant `x` at line 3 column 11",
                "providers[0].kind"
            ),
            "unknown variant `x`"
        );
        assert_eq!(
            clean_message("invalid type: string \"x\", expected u64", "a"),
            "invalid type: string \"x\", expected u64"
        );
    }
}
