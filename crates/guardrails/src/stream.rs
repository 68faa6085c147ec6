//! Redaction of streamed text (model answers arriving in chunks).
//!
//! A [`StreamRedactor`] emits, after each chunk, everything that no later
//! text can turn into (part of) a match, and holds back only the suffix that
//! still could: the trailing run of characters a built-in match can contain
//! (`[A-Za-z0-9._%+@/=,()#-]`, so prose is held one word at a time), extended
//! back over single spaces between digit/capital groups (spaced cards, SSNs,
//! IBANs, phones), an unterminated PEM private-key block (until its `END`
//! line), and with custom rules the last [`CUSTOM_HOLD`] bytes (released
//! [`CUSTOM_STEP`] bytes at a time). The emitted
//! text is scanned with [`CONTEXT`] bytes of what came before it, which
//! covers every detector's look-behind (the SSN keyword is the longest).
//!
//! The result is the same as scanning and redacting the whole text at once
//! (tests check it for every split point and for one-character chunks),
//! within these limits:
//!
//! - a held run longer than [`MAX_HOLD`] bytes (a 4 KiB token without a
//!   space) is cut: a match crossing the cut is redacted up to where it
//!   ended so far, and the rest of that token flows unredacted;
//! - a PEM block whose `END` line has not come within [`PEM_MAX`] bytes of
//!   its header is treated as header only (what a whole-text scan does when
//!   no `END` line follows);
//! - custom rules are assumed to match at most [`CUSTOM_HOLD`] bytes.

use std::borrow::Borrow;

use crate::{Builtin, Finding, Scanner};

/// Bytes of already emitted text kept as look-behind for the next scan: the
/// SSN keyword may end up to 20 bytes (plus ` number`) before the digits.
pub const CONTEXT: usize = 64;
/// The longest run held back without a space (longest plausible token:
/// JWTs of a few KiB).
pub const MAX_HOLD: usize = 4096;
/// The longest PEM private-key block held back while waiting for its `END`
/// line (an RSA 4096 key is about 3.3 KiB).
pub const PEM_MAX: usize = 64 * 1024;
/// What custom rules hold back: their matches are assumed not longer.
pub const CUSTOM_HOLD: usize = 256;
/// With custom rules, text goes out in pieces of at least this many bytes
/// (until the end), so at most `CUSTOM_HOLD + CUSTOM_STEP` bytes are held.
pub const CUSTOM_STEP: usize = 64;

/// The PEM headers the `secret` detector knows (a partial one at the end of
/// the text is held).
const PEM_HEADERS: [&str; 6] = [
    "-----BEGIN PRIVATE KEY-----",
    "-----BEGIN RSA PRIVATE KEY-----",
    "-----BEGIN EC PRIVATE KEY-----",
    "-----BEGIN OPENSSH PRIVATE KEY-----",
    "-----BEGIN DSA PRIVATE KEY-----",
    "-----BEGIN ENCRYPTED PRIVATE KEY-----",
];

/// A match that stopped a stream in block mode: the detector, and the text
/// before the match that may still be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    pub detector: String,
    pub before: String,
}

/// Redacts a text that arrives in pieces; one per streamed text (per choice
/// and field). `S` is `&Scanner`, `Arc<Scanner>` or a `Scanner`.
#[derive(Debug)]
pub struct StreamRedactor<S: Borrow<Scanner>> {
    scanner: S,
    /// Look-behind (`..emitted`) and the held text (`emitted..`).
    buf: String,
    emitted: usize,
    /// Matches so far per detector, in order of first match.
    found: Vec<(String, usize)>,
    /// A block-mode match stopped the stream: nothing more is emitted.
    stopped: bool,
}

impl<S: Borrow<Scanner>> StreamRedactor<S> {
    pub fn new(scanner: S) -> Self {
        StreamRedactor {
            scanner,
            buf: String::new(),
            emitted: 0,
            found: Vec::new(),
            stopped: false,
        }
    }

    /// Adds `text`; returns what is now safe to send, with matches replaced
    /// by `[REDACTED:<detector>]`.
    pub fn push(&mut self, text: &str) -> String {
        let mut out = String::new();
        let _ = self.step(text, false, false, &mut out);
        out
    }

    /// The rest of the text, redacted; the redactor is empty afterwards.
    pub fn finish(&mut self) -> String {
        let mut out = String::new();
        let _ = self.step("", true, false, &mut out);
        out
    }

    /// [`Self::push`] for a blocking rule: the text safe to send, or the
    /// first match (with the text before it). After a match, nothing more
    /// is emitted.
    pub fn push_or_block(&mut self, text: &str) -> Result<String, Blocked> {
        let mut out = String::new();
        match self.step(text, false, true, &mut out) {
            Some(detector) => Err(Blocked {
                detector,
                before: out,
            }),
            None => Ok(out),
        }
    }

    /// [`Self::finish`] for a blocking rule.
    pub fn finish_or_block(&mut self) -> Result<String, Blocked> {
        let mut out = String::new();
        match self.step("", true, true, &mut out) {
            Some(detector) => Err(Blocked {
                detector,
                before: out,
            }),
            None => Ok(out),
        }
    }

    /// Matches so far (emitted ones) per detector, in order of first match.
    pub fn found(&self) -> &[(String, usize)] {
        &self.found
    }

    /// Bytes currently held back (not yet emitted).
    pub fn held(&self) -> usize {
        self.buf.len() - self.emitted
    }

    /// Appends `text`, emits into `out` what is final; in `stop` mode
    /// returns the detector of the first match (emitting only the text
    /// before it).
    fn step(&mut self, text: &str, last: bool, stop: bool, out: &mut String) -> Option<String> {
        if self.stopped {
            return None;
        }
        self.buf.push_str(text);
        let cut = if last {
            self.buf.len()
        } else {
            self.safe_cut()
        };
        if cut <= self.emitted {
            return None;
        }
        let scanner: &Scanner = self.scanner.borrow();
        let findings = scanner.scan(&self.buf);
        let from = self.emitted;
        // Only a forced cut (a run over MAX_HOLD) can land inside a match:
        // the match goes out whole, as far as it is known.
        let mut cut = cut;
        if let Some(f) = findings.iter().find(|f| f.start < cut && f.end > cut) {
            cut = f.end;
        }
        let mut pos = from;
        let mut hit = None;
        for f in findings.iter().filter(|f| f.end > from && f.start < cut) {
            // A match begun in the look-behind (after a forced cut) is
            // redacted from where emission resumed.
            let start = f.start.max(from);
            if stop {
                out.push_str(&self.buf[pos..start]);
                count(&mut self.found, &f.detector);
                hit = Some(f.detector.clone());
                break;
            }
            out.push_str(&self.buf[pos..start]);
            push_redacted(out, f);
            count(&mut self.found, &f.detector);
            pos = f.end;
        }
        if hit.is_some() {
            self.stopped = true;
            self.buf.clear();
            self.emitted = 0;
            return hit;
        }
        out.push_str(&self.buf[pos..cut]);
        self.emitted = cut;
        if last {
            self.buf.clear();
            self.emitted = 0;
        } else {
            let keep = floor_boundary(&self.buf, self.emitted.saturating_sub(CONTEXT));
            self.buf.drain(..keep);
            self.emitted -= keep;
        }
        None
    }

    /// Where the held suffix starts: the end of what is final now.
    fn safe_cut(&self) -> usize {
        let scanner: &Scanner = self.scanner.borrow();
        let b = self.buf.as_bytes();
        let len = b.len();
        let from = self.emitted;
        let mut p = token_hold(b, from);
        if len - p > MAX_HOLD {
            p = floor_boundary(&self.buf, len - MAX_HOLD).max(from);
        }
        if scanner.on(Builtin::Secret) {
            p = p.min(pem_hold(scanner, &self.buf, from));
        }
        if !scanner.custom.is_empty() {
            p = p.min(floor_boundary(&self.buf, len.saturating_sub(CUSTOM_HOLD)).max(from));
            // The window slides in steps: each emission rescans the whole
            // window, so emitting a token at a time would cost one scan of
            // CUSTOM_HOLD bytes per token.
            if p - from < CUSTOM_STEP {
                p = from;
            }
        }
        p
    }
}

fn push_redacted(out: &mut String, f: &Finding) {
    out.push_str("[REDACTED:");
    out.push_str(&f.detector);
    out.push(']');
}

fn count(found: &mut Vec<(String, usize)>, detector: &str) {
    match found.iter_mut().find(|(d, _)| d == detector) {
        Some((_, n)) => *n += 1,
        None => found.push((detector.to_owned(), 1)),
    }
}

/// The largest char boundary of `s` at or before `i`.
fn floor_boundary(s: &str, mut i: usize) -> usize {
    if i >= s.len() {
        return s.len();
    }
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// A character a built-in match (or its right context) can contain.
fn is_token(c: u8) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            b'_' | b'.' | b'%' | b'+' | b'-' | b'@' | b'/' | b'=' | b',' | b'(' | b')' | b'#'
        )
}

/// A character of a group that a single space may join to the next one:
/// digits (cards, SSNs, phones), capitals (IBAN groups), `+()` and the
/// in-group joiners `.-` (E.164, NANP).
fn is_group(c: u8) -> bool {
    c.is_ascii_digit() || c.is_ascii_uppercase() || matches!(c, b'(' | b')' | b'+' | b'.' | b'-')
}

/// Start of the held suffix for the token-shaped detectors: the trailing
/// token run, then back over each single space that sits between group
/// characters (or ends the text after one).
fn token_hold(b: &[u8], from: usize) -> usize {
    let len = b.len();
    let mut p = len;
    while p > from && is_token(b[p - 1]) {
        p -= 1;
    }
    loop {
        let joins =
            p >= from + 2 && b[p - 1] == b' ' && is_group(b[p - 2]) && (p == len || is_group(b[p]));
        if !joins {
            break;
        }
        p -= 1;
        while p > from && is_group(b[p - 1]) {
            p -= 1;
        }
    }
    // No match starts with a group of capitals only (an IBAN starts with
    // `CCdd`), so words in capitals before the last one are not held.
    loop {
        let mut q = p;
        while q < len && b[q].is_ascii_uppercase() {
            q += 1;
        }
        if q > p && q < len && b[q] == b' ' {
            p = q + 1;
        } else {
            break;
        }
    }
    p
}

/// Start of an unterminated PEM private key (header seen, `END` line not
/// yet, within [`PEM_MAX`]) or of a partial header at the end; else the
/// end of the text.
fn pem_hold(scanner: &Scanner, text: &str, from: usize) -> usize {
    let len = text.len();
    let b = text.as_bytes();
    // A header still arriving: the text ends with a proper prefix of one.
    let longest = PEM_HEADERS.iter().map(|h| h.len()).max().unwrap_or(0);
    let mut i = len.saturating_sub(longest).max(from);
    while i < len {
        if b[i] == b'-' {
            let tail = &text[i..];
            if PEM_HEADERS
                .iter()
                .any(|h| h.len() > tail.len() && h.starts_with(tail))
            {
                return earliest_open_block(scanner, text, from).unwrap_or(i).min(i);
            }
        }
        i += 1;
    }
    earliest_open_block(scanner, text, from).unwrap_or(len)
}

/// The start of the first PEM match after `from` that is a header only
/// (its `END` line may still come), when not older than [`PEM_MAX`].
fn earliest_open_block(scanner: &Scanner, text: &str, from: usize) -> Option<usize> {
    if !text[from..].contains("-----BEGIN ") {
        return None;
    }
    scanner
        .builtins
        .pem
        .find_iter(text)
        .filter(|m| m.start() >= from && !m.as_str().contains("-----END "))
        .map(|m| m.start())
        .find(|&s| text.len() - s <= PEM_MAX)
}
