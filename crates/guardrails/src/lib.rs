//! Content detectors for prompts (guardrails): payment cards, US social
//! security numbers, IBANs, email addresses, phone numbers, credentials
//! (secrets) and user-defined regex rules.
//!
//! A [`Scanner`] is compiled once per configuration and shared; [`Scanner::scan`]
//! returns non-overlapping [`Finding`]s (byte ranges) and [`redact`] replaces
//! them with `[REDACTED:<detector>]`. A [`StreamRedactor`] does the same for
//! text arriving in chunks (streamed answers), holding back only the suffix
//! a match could still span.
//!
//! Precision over recall: candidates are validated (Luhn and issuer prefixes
//! for cards, area/group/serial ranges for SSNs, mod-97 and country lengths
//! for IBANs) and must not sit inside a longer digit run. Cards, SSNs, NANP
//! phones and IBANs come from one hand-written pass over the numeric tokens
//! of the text (digit groups joined by single spaces, dashes or dots); a
//! token glued to letters (`abc4111…`) or to other numbers by `,`, `/` or a
//! decimal point is ignored. Emails, E.164 phones, secrets and custom rules
//! are regexes.
//!
//! # Detector rules
//!
//! - `card`: 13–19 digits, bare or in groups separated by one consistent
//!   single space or dash (first group 4 digits, other groups 3–6), Luhn-valid,
//!   with a known issuer prefix (Visa 4; Mastercard 51–55, 2221–2720; Amex
//!   34/37; Discover 6011, 65, 644–649; JCB 3528–3589; Diners 36, 38,
//!   300–305) and length plausible for the brand. Not part of a longer
//!   digit run or a decimal number.
//! - `ssn`: `AAA-GG-SSSS` or `AAA GG SSSS` (same separator), excluding area
//!   000, 666, 900–999, group 00 and serial 0000; the whole numeric token
//!   (so `12 123-45-6789` is not one). Nine bare digits count only when a
//!   keyword `ssn`, `ss#` or `social security` (optionally followed by
//!   ` number`/` no.`, case-insensitive) ends at most 20 bytes before them
//!   with no digit in between.
//! - `iban`: two capital letters, two check digits, 11–30 capital
//!   alphanumerics, either in one run or in groups of four separated by
//!   single spaces (the last group 1–4); mod-97 must be 1 and the length must
//!   match the country's when the country is known (68 countries), else
//!   15–34. Trailing groups that are not part of the IBAN (`… 7654 32 ASAP`)
//!   are cut off. Lower-case IBANs are not detected.
//! - `email`: `local@domain.tld`, local part `[A-Za-z0-9._%+-]`, domain labels
//!   of `[A-Za-z0-9-]`, a 2–63 letter top-level domain.
//! - `phone`: E.164 (`+`, 8–15 digits, single separators ` .-` and one
//!   parenthesised group allowed) and NANP `(415) 555-0132`,
//!   `(415)555-0132`, `415-555-0132`, `415.555.0132` (optionally after a `1`
//!   and a separator; `+1 …` is E.164), area and exchange starting with 2–9,
//!   consistent separators, the whole numeric token (`415 555 0132` with
//!   spaces and bare `4155550132` are not detected: too many false
//!   positives). Phones overlapping a card or SSN are dropped.
//! - `secret`: AWS access key ids (`AKIA`/`ASIA` + 16), GitHub tokens
//!   (`gh[pousr]_` + 36+, `github_pat_` + 22+), OpenAI/Anthropic style
//!   `sk-…` (20+ of `[A-Za-z0-9_-]`, at least one digit), Slack `xox[abprs]-`,
//!   Stripe `sk_live_`/`rk_live_`, Google API keys (`AIza` + 35), PEM private
//!   key blocks (whole block to the `END` line when present, else the header
//!   line) and JWT-looking `eyJ….eyJ….…` tokens.
//! - custom rules: user regexes compiled with a 1 MiB program size limit and
//!   a 2 MiB lazy-DFA cache limit; empty matches are ignored.
//!
//! On overlap the earlier finding wins, then the longer one, then the
//! detector order secret, card, ssn, iban, email, phone, custom rules.
//!
//! # Performance
//!
//! Scanning a 2 KB English prompt dense with numbers and PII (18 findings:
//! emails, phones, IBANs, order numbers, dates, prices, versions) with every
//! built-in detector plus one custom rule takes 7.7–12 µs per scan (minimum
//! over batches; median 12–13.5 µs with other builds running) in a release
//! build on the 2-core development machine. Measured with the ignored test
//! `tests::timing`: `cargo test --release -p switchyard-guardrails --
//! --ignored --nocapture --exact tests::timing` (20 batches of 1000 scans
//! after 1000 warm-up scans); `tests::timing_per_detector` breaks it down.
//! A [`StreamRedactor`] fed the same text in 4-byte chunks costs about
//! 0.15 µs per chunk (`stream_tests::timing_stream`).

use regex::{Regex, RegexBuilder};

mod stream;
pub use stream::{Blocked, CONTEXT, CUSTOM_HOLD, CUSTOM_STEP, MAX_HOLD, PEM_MAX, StreamRedactor};

/// A built-in detector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Builtin {
    Card,
    Ssn,
    Iban,
    Email,
    Phone,
    Secret,
}

impl Builtin {
    /// Every built-in detector.
    pub const ALL: [Builtin; 6] = [
        Builtin::Card,
        Builtin::Ssn,
        Builtin::Iban,
        Builtin::Email,
        Builtin::Phone,
        Builtin::Secret,
    ];

    /// The detector's name as used in config and in findings.
    pub fn name(self) -> &'static str {
        match self {
            Builtin::Card => "card",
            Builtin::Ssn => "ssn",
            Builtin::Iban => "iban",
            Builtin::Email => "email",
            Builtin::Phone => "phone",
            Builtin::Secret => "secret",
        }
    }

    /// The detector named `name`, if any.
    pub fn from_name(name: &str) -> Option<Builtin> {
        Builtin::ALL.into_iter().find(|b| b.name() == name)
    }
}

/// One match: which detector (a builtin's name or a custom rule's name) and the byte range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub detector: String,
    pub start: usize,
    pub end: usize,
}

/// A configuration error.
#[derive(Debug, thiserror::Error)]
pub enum GuardrailError {
    #[error("custom rule `{name}`: invalid pattern: {message}")]
    Pattern { name: String, message: String },
}

/// Maximum compiled size of a custom rule.
const CUSTOM_SIZE_LIMIT: usize = 1 << 20;
/// Maximum lazy-DFA cache of a custom rule.
const CUSTOM_DFA_LIMIT: usize = 2 << 20;

struct Builtins {
    email: Regex,
    e164: Regex,
    secret: Regex,
    pem: Regex,
}

/// Compiles a built-in pattern; the patterns are constants covered by tests,
/// so failure is a bug. Falls back to a never-matching regex rather than
/// panicking.
fn builtin_regex(pattern: &str) -> Regex {
    match Regex::new(pattern) {
        Ok(re) => re,
        Err(_) => {
            debug_assert!(false, "invalid built-in pattern {pattern}");
            // `[^\s\S]` never matches; it always compiles.
            Regex::new(r"[^\s\S]").unwrap_or_else(|_| unreachable!())
        }
    }
}

impl Builtins {
    fn new() -> Builtins {
        Builtins {
            email: builtin_regex(
                r"[A-Za-z0-9._%+-]+@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}(?-u:\b)",
            ),
            e164: builtin_regex(r"\+[0-9]+(?:(?:[ .-]?\([0-9]{1,4}\)[ .-]?|[ .-])?[0-9]+)*"),
            secret: builtin_regex(concat!(
                r"(?-u:\b)(?:",
                r"(?:AKIA|ASIA)[A-Z0-9]{16}(?-u:\b)",
                r"|gh[pousr]_[A-Za-z0-9]{36,255}",
                r"|github_pat_[A-Za-z0-9_]{22,255}",
                r"|sk-[A-Za-z0-9_-]{20,}",
                r"|xox[abprs]-[A-Za-z0-9-]{10,}",
                r"|[sr]k_live_[A-Za-z0-9]{16,}",
                r"|AIza[0-9A-Za-z_-]{35}",
                r"|eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*",
                r")",
            )),
            pem: builtin_regex(
                r"-----BEGIN (?:RSA |EC |OPENSSH |DSA |ENCRYPTED )?PRIVATE KEY-----(?:[\s\S]*?-----END (?:RSA |EC |OPENSSH |DSA |ENCRYPTED )?PRIVATE KEY-----)?",
            ),
        }
    }
}

/// Compiled once per config; cheap to share (Send + Sync).
pub struct Scanner {
    enabled: [bool; 6],
    builtins: Builtins,
    custom: Vec<(String, Regex)>,
}

impl std::fmt::Debug for Scanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let builtins: Vec<&str> = Builtin::ALL
            .into_iter()
            .filter(|b| self.enabled[*b as usize])
            .map(Builtin::name)
            .collect();
        let custom: Vec<&str> = self.custom.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("Scanner")
            .field("builtins", &builtins)
            .field("custom", &custom)
            .finish()
    }
}

/// Overlap priority of detector kinds (lower wins).
const PRIO_SECRET: u8 = 0;
const PRIO_CARD: u8 = 1;
const PRIO_SSN: u8 = 2;
const PRIO_IBAN: u8 = 3;
const PRIO_EMAIL: u8 = 4;
const PRIO_PHONE: u8 = 5;
const PRIO_CUSTOM: u8 = 6;

struct Raw {
    start: usize,
    end: usize,
    prio: u8,
    name: usize,
}

impl Scanner {
    /// Compiles the enabled built-ins and the custom `(name, regex)` rules.
    pub fn new(
        builtins: &[Builtin],
        custom: &[(String, String)], /* (name, regex) */
    ) -> Result<Scanner, GuardrailError> {
        let mut enabled = [false; 6];
        for b in builtins {
            enabled[*b as usize] = true;
        }
        let custom = custom
            .iter()
            .map(|(name, pattern)| {
                RegexBuilder::new(pattern)
                    .size_limit(CUSTOM_SIZE_LIMIT)
                    .dfa_size_limit(CUSTOM_DFA_LIMIT)
                    .build()
                    .map(|re| (name.clone(), re))
                    .map_err(|e| GuardrailError::Pattern {
                        name: name.clone(),
                        message: e.to_string(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Scanner {
            enabled,
            builtins: Builtins::new(),
            custom,
        })
    }

    fn on(&self, b: Builtin) -> bool {
        self.enabled[b as usize]
    }

    /// Non-overlapping findings sorted by start (on overlap keep the earlier/longer one).
    pub fn scan(&self, text: &str) -> Vec<Finding> {
        let mut raw: Vec<Raw> = Vec::new();
        let b = &self.builtins;
        let mut push = |start: usize, end: usize, prio: u8, name: usize| {
            raw.push(Raw {
                start,
                end,
                prio,
                name,
            })
        };
        if self.on(Builtin::Secret) {
            for m in b.secret.find_iter(text) {
                if secret_ok(m.as_str()) {
                    push(m.start(), m.end(), PRIO_SECRET, usize::MAX);
                }
            }
            if text.contains("-----BEGIN ") {
                for m in b.pem.find_iter(text) {
                    push(m.start(), m.end(), PRIO_SECRET, usize::MAX);
                }
            }
        }
        let (card, ssn, phone) = (
            self.on(Builtin::Card),
            self.on(Builtin::Ssn),
            self.on(Builtin::Phone),
        );
        let iban = self.on(Builtin::Iban);
        if card || ssn || phone || iban {
            let t = text.as_bytes();
            let mut groups = Vec::new();
            numeric_tokens(text, &mut groups, |g, glued, after_plus| {
                // An IBAN's check digits follow two capitals.
                let i = g[0].start.wrapping_sub(2);
                if iban
                    && g[0].start >= 2
                    && g[0].len() >= 2
                    && t[i].is_ascii_uppercase()
                    && t[i + 1].is_ascii_uppercase()
                    && (i == 0 || !is_word(t[i - 1]))
                    && let Some(cand) = iban_candidate(t, i)
                    && let Some(end) = iban_match(&text[i..cand])
                {
                    push(i, i + end, PRIO_IBAN, usize::MAX);
                }
                if glued {
                    return;
                }
                if card {
                    cards_in_token(text, g, &mut |s, e| push(s, e, PRIO_CARD, usize::MAX));
                }
                if ssn && let Some((s, e)) = ssn_token(text, g) {
                    push(s, e, PRIO_SSN, usize::MAX);
                }
                if ssn
                    && let [one] = g
                    && let Some((s, e)) = ssn_bare(text, one)
                {
                    push(s, e, PRIO_SSN, usize::MAX);
                }
                // After a `+` the E.164 pattern decides.
                if phone
                    && !after_plus
                    && let Some((s, e)) = nanp_token(text, g)
                {
                    push(s, e, PRIO_PHONE, usize::MAX);
                }
            });
        }
        if self.on(Builtin::Email) {
            for m in b.email.find_iter(text) {
                // The local part must not start with a dot.
                let lead = m.as_str().bytes().take_while(|&c| c == b'.').count();
                let at = m.as_str().find('@').unwrap_or(0);
                if lead < at {
                    push(m.start() + lead, m.end(), PRIO_EMAIL, usize::MAX);
                }
            }
        }
        if self.on(Builtin::Phone) {
            for m in b.e164.find_iter(text) {
                let digits = m.as_str().bytes().filter(u8::is_ascii_digit).count();
                if (8..=15).contains(&digits) && digit_bounded(text, m.start(), m.end(), true) {
                    push(m.start(), m.end(), PRIO_PHONE, usize::MAX);
                }
            }
        }
        for (i, (_, re)) in self.custom.iter().enumerate() {
            for m in re.find_iter(text) {
                if !m.is_empty() {
                    push(m.start(), m.end(), PRIO_CUSTOM, i);
                }
            }
        }

        // Cards and SSNs take precedence over phones on any overlap.
        let strong: Vec<(usize, usize)> = raw
            .iter()
            .filter(|r| r.prio == PRIO_CARD || r.prio == PRIO_SSN)
            .map(|r| (r.start, r.end))
            .collect();
        if !strong.is_empty() {
            raw.retain(|r| {
                r.prio != PRIO_PHONE || !strong.iter().any(|&(s, e)| r.start < e && s < r.end)
            });
        }
        raw.sort_by(|a, b| {
            a.start
                .cmp(&b.start)
                .then(b.end.cmp(&a.end))
                .then(a.prio.cmp(&b.prio))
                .then(a.name.cmp(&b.name))
        });
        let mut out = Vec::with_capacity(raw.len());
        let mut last_end = 0;
        for r in raw {
            if r.start < last_end {
                continue;
            }
            last_end = r.end;
            let detector = match r.prio {
                PRIO_SECRET => Builtin::Secret.name(),
                PRIO_CARD => Builtin::Card.name(),
                PRIO_SSN => Builtin::Ssn.name(),
                PRIO_IBAN => Builtin::Iban.name(),
                PRIO_EMAIL => Builtin::Email.name(),
                PRIO_PHONE => Builtin::Phone.name(),
                _ => self
                    .custom
                    .get(r.name)
                    .map_or("custom", |(n, _)| n.as_str()),
            };
            out.push(Finding {
                detector: detector.to_owned(),
                start: r.start,
                end: r.end,
            });
        }
        out
    }
}

/// `text` with each finding replaced by `[REDACTED:<detector>]`.
///
/// Findings are applied in start order; ranges that overlap an earlier one,
/// fall outside `text` or not on character boundaries are skipped.
pub fn redact(text: &str, findings: &[Finding]) -> String {
    let mut sorted: Vec<&Finding> = findings.iter().collect();
    sorted.sort_by_key(|f| (f.start, std::cmp::Reverse(f.end)));
    let mut out = String::with_capacity(text.len());
    let mut pos = 0;
    for f in sorted {
        if f.start < pos
            || f.end < f.start
            || f.end > text.len()
            || !text.is_char_boundary(f.start)
            || !text.is_char_boundary(f.end)
        {
            continue;
        }
        out.push_str(&text[pos..f.start]);
        out.push_str("[REDACTED:");
        out.push_str(&f.detector);
        out.push(']');
        pos = f.end;
    }
    out.push_str(&text[pos..]);
    out
}

fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Whether `text[start..end]` is not glued to more digits or letters: the
/// neighbouring bytes are not word characters, and a neighbouring joiner
/// (`-`, `.`, `,`, `/`, and a space when `space_joins`) is not followed by
/// a digit on the far side.
fn digit_bounded(text: &str, start: usize, end: usize, space_joins: bool) -> bool {
    let t = text.as_bytes();
    let joiner = |c: u8| matches!(c, b'-' | b'.' | b',' | b'/') || (space_joins && c == b' ');
    if start > 0 {
        let p = t[start - 1];
        if is_word(p) {
            return false;
        }
        if joiner(p) && start > 1 && t[start - 2].is_ascii_digit() {
            return false;
        }
    }
    if end < t.len() {
        let n = t[end];
        if is_word(n) {
            return false;
        }
        if joiner(n) && end + 1 < t.len() && t[end + 1].is_ascii_digit() {
            return false;
        }
    }
    true
}

fn num(d: &[u8]) -> u32 {
    d.iter().fold(0, |acc, &c| acc * 10 + u32::from(c - b'0'))
}

fn ssn_valid(parts: &[&[u8]; 3]) -> bool {
    let area = num(parts[0]);
    area != 0 && area != 666 && area < 900 && num(parts[1]) != 0 && num(parts[2]) != 0
}

fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, &d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(d);
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

/// Whether `digits` (values 0–9) start with a known issuer prefix and have a
/// length plausible for that brand.
fn card_brand_ok(digits: &[u8]) -> bool {
    let n = digits.len();
    let p = |k: usize| digits[..k].iter().fold(0u32, |a, &d| a * 10 + u32::from(d));
    match digits[0] {
        // Visa
        4 => matches!(n, 13 | 16 | 19),
        2 | 5 => {
            let p2 = p(2);
            let p4 = p(4);
            n == 16 && ((51..=55).contains(&p2) || (2221..=2720).contains(&p4))
        }
        3 => {
            let p2 = p(2);
            let p3 = p(3);
            let p4 = p(4);
            if p2 == 34 || p2 == 37 {
                n == 15
            } else if (3528..=3589).contains(&p4) {
                (16..=19).contains(&n)
            } else if p2 == 36 || p2 == 38 || (300..=305).contains(&p3) {
                (14..=19).contains(&n)
            } else {
                false
            }
        }
        6 => {
            let p2 = p(2);
            let p3 = p(3);
            let p4 = p(4);
            (p4 == 6011 || p2 == 65 || (644..=649).contains(&p3)) && (16..=19).contains(&n)
        }
        _ => false,
    }
}

/// One group of digits in a numeric token: byte range and the joiner byte
/// before it (0 for the first group).
#[derive(Clone, Copy)]
struct Group {
    start: usize,
    end: usize,
    sep: u8,
}

impl Group {
    fn len(&self) -> usize {
        self.end - self.start
    }
}

/// Calls `f` with each numeric token of `text`: a maximal run of digit
/// groups joined by single spaces, dashes or dots, not glued to letters or
/// to other numbers by `,` or `/`, and not preceded by `.`/`,`/`/` plus
/// digit. The second argument tells whether the token is glued (to be
/// ignored by digit detectors), the third whether a `+` precedes it.
fn numeric_tokens(text: &str, groups: &mut Vec<Group>, mut f: impl FnMut(&[Group], bool, bool)) {
    let t = text.as_bytes();
    let n = t.len();
    let mut i = 0;
    while i < n {
        if !t[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        groups.clear();
        let mut sep = 0u8;
        loop {
            let g = i;
            while i < n && t[i].is_ascii_digit() {
                i += 1;
            }
            groups.push(Group {
                start: g,
                end: i,
                sep,
            });
            if i + 1 < n && matches!(t[i], b' ' | b'-' | b'.') && t[i + 1].is_ascii_digit() {
                sep = t[i];
                i += 1;
            } else {
                break;
            }
        }
        let end = i;
        let glued_before = start > 0 && {
            let p = t[start - 1];
            is_word(p)
                || (matches!(p, b'.' | b',' | b'/') && start > 1 && t[start - 2].is_ascii_digit())
        };
        let glued_after = end < n && {
            let c = t[end];
            is_word(c) || (matches!(c, b',' | b'/') && end + 1 < n && t[end + 1].is_ascii_digit())
        };
        f(
            groups,
            glued_before || glued_after,
            start > 0 && t[start - 1] == b'+',
        );
    }
}

/// Finds cards among a token's groups.
fn cards_in_token(text: &str, groups: &[Group], emit: &mut impl FnMut(usize, usize)) {
    let t = text.as_bytes();
    let total: usize = groups.iter().map(Group::len).sum();
    if total < 13 {
        return;
    }
    let mut digits: Vec<u8> = Vec::with_capacity(19);
    let mut gi = 0;
    while gi < groups.len() {
        let mut found = None;
        // Longest window first.
        let mut total = 0;
        let mut last = None;
        for (k, g) in groups.iter().enumerate().skip(gi) {
            if k > gi + 5 {
                break;
            }
            total += g.len();
            if total > 19 {
                break;
            }
            last = Some(k);
        }
        let Some(last) = last else {
            gi += 1;
            continue;
        };
        let mut gj = last + 1;
        while gj > gi {
            gj -= 1;
            let window = &groups[gi..=gj];
            let len: usize = window.iter().map(Group::len).sum();
            if !(13..=19).contains(&len) {
                continue;
            }
            // A dot next to the window makes it part of a dotted number.
            if window[0].sep == b'.' || groups.get(gj + 1).is_some_and(|g| g.sep == b'.') {
                continue;
            }
            if window.len() > 1 {
                let sep = window[1].sep;
                if sep == b'.'
                    || window[0].len() != 4
                    || window[1..]
                        .iter()
                        .any(|g| g.sep != sep || !(3..=6).contains(&g.len()))
                {
                    continue;
                }
            }
            digits.clear();
            for g in window {
                digits.extend(t[g.start..g.end].iter().map(|c| c - b'0'));
            }
            if card_brand_ok(&digits) && luhn(&digits) {
                found = Some(gj);
                break;
            }
        }
        match found {
            Some(gj) => {
                emit(groups[gi].start, groups[gj].end);
                gi = gj + 1;
            }
            None => gi += 1,
        }
    }
}

/// An SSN token: exactly `AAA-GG-SSSS` or `AAA GG SSSS`.
fn ssn_token(text: &str, g: &[Group]) -> Option<(usize, usize)> {
    let t = text.as_bytes();
    if g.len() == 3
        && g[0].len() == 3
        && g[1].len() == 2
        && g[2].len() == 4
        && g[1].sep == g[2].sep
        && matches!(g[1].sep, b'-' | b' ')
        && ssn_valid(&[
            &t[g[0].start..g[0].end],
            &t[g[1].start..g[1].end],
            &t[g[2].start..g[2].end],
        ])
    {
        Some((g[0].start, g[2].end))
    } else {
        None
    }
}

/// Keywords that make nine bare digits an SSN when they precede them.
const SSN_KEYWORDS: [&[u8]; 3] = [b"social security", b"ssn", b"ss#"];
/// How far (in bytes) after a keyword the digits may start.
const SSN_KEYWORD_GAP: usize = 20;

/// Nine bare digits preceded within [`SSN_KEYWORD_GAP`] bytes (plus an
/// optional ` number`/` no.` after `social security`) by an SSN keyword,
/// with no digit in between.
fn ssn_bare(text: &str, g: &Group) -> Option<(usize, usize)> {
    let t = text.as_bytes();
    if g.len() != 9 || g.sep != 0 {
        return None;
    }
    let d = &t[g.start..g.end];
    if !ssn_valid(&[&d[0..3], &d[3..5], &d[5..9]]) {
        return None;
    }
    let from = g.start.saturating_sub(SSN_KEYWORD_GAP + 8 + 15);
    let window = &t[from..g.start];
    for kw in SSN_KEYWORDS {
        let Some(pos) = window
            .windows(kw.len())
            .rposition(|w| w.eq_ignore_ascii_case(kw))
        else {
            continue;
        };
        let kw_start = from + pos;
        if kw_start > 0 && is_word(t[kw_start - 1]) {
            continue;
        }
        let mut after = kw_start + kw.len();
        if kw.len() > 3 {
            for suffix in [&b" number"[..], b" no."] {
                if t[after..g.start].len() >= suffix.len()
                    && t[after..after + suffix.len()].eq_ignore_ascii_case(suffix)
                {
                    after += suffix.len();
                    break;
                }
            }
        } else if after < t.len() && is_word(t[after]) && t[after].is_ascii_alphabetic() {
            // `ssns`, `ssnumber`: not the keyword.
            continue;
        }
        let gap = &t[after..g.start];
        if gap.len() <= SSN_KEYWORD_GAP && !gap.iter().any(u8::is_ascii_digit) {
            return Some((g.start, g.end));
        }
    }
    None
}

/// A NANP phone token: `415-555-0132`, `415.555.0132`, optionally after a
/// `1` and a joiner, or `555-0132` after `(415) `/`(415)`.
fn nanp_token(text: &str, g: &[Group]) -> Option<(usize, usize)> {
    let t = text.as_bytes();
    let first = |g: &Group| t[g.start];
    let main = match g.len() {
        3 => g,
        4 if g[0].len() == 1 && first(&g[0]) == b'1' => &g[1..],
        2 => {
            // `(415) 555-0132`
            if g[0].len() != 3 || g[1].len() != 4 || g[1].sep != b'-' || first(&g[0]) < b'2' {
                return None;
            }
            let s = g[0].start;
            let close = if s >= 1 && t[s - 1] == b')' {
                s - 1
            } else if s >= 2 && t[s - 1] == b' ' && t[s - 2] == b')' {
                s - 2
            } else {
                return None;
            };
            if close < 4 || t[close - 4] != b'(' {
                return None;
            }
            let open = close - 4;
            let area = &t[open + 1..close];
            if !area.iter().all(u8::is_ascii_digit) || area[0] < b'2' {
                return None;
            }
            if open > 0 && (is_word(t[open - 1]) || t[open - 1] == b'+') {
                return None;
            }
            return Some((open, g[1].end));
        }
        _ => return None,
    };
    if main.len() == 3
        && main[0].len() == 3
        && main[1].len() == 3
        && main[2].len() == 4
        && main[1].sep == main[2].sep
        && matches!(main[1].sep, b'-' | b'.')
        && first(&main[0]) >= b'2'
        && first(&main[1]) >= b'2'
    {
        Some((g[0].start, main[2].end))
    } else {
        None
    }
}

fn iban_char(c: u8) -> bool {
    c.is_ascii_uppercase() || c.is_ascii_digit()
}

/// The end of the IBAN-shaped text at `i` (which starts with two capitals
/// and two digits): one run of capitals and digits, or groups of four
/// separated by single spaces (the last group 1–4). Not followed by a
/// word character.
fn iban_candidate(t: &[u8], i: usize) -> Option<usize> {
    let n = t.len();
    let run = |from: usize| (from..n).take_while(|&k| iban_char(t[k])).count();
    let end = if i + 4 < n && t[i + 4] == b' ' {
        let mut j = i + 4;
        while j + 1 < n && t[j] == b' ' {
            let k = run(j + 1);
            if k == 0 || k > 4 || (j + 1 + k < n && is_word(t[j + 1 + k])) {
                break;
            }
            j += 1 + k;
            if k < 4 {
                break;
            }
        }
        j
    } else {
        let j = i + 4 + run(i + 4);
        if j < n && is_word(t[j]) {
            return None;
        }
        j
    };
    let chars = end - i;
    (15..=34 + 8).contains(&chars).then_some(end)
}

/// IBAN length by country, where known.
fn iban_country_len(cc: &[u8]) -> Option<usize> {
    let n = match cc {
        b"AD" => 24,
        b"AE" => 23,
        b"AL" => 28,
        b"AT" => 20,
        b"AZ" => 28,
        b"BA" => 20,
        b"BE" => 16,
        b"BG" => 22,
        b"BH" => 22,
        b"BR" => 29,
        b"CH" => 21,
        b"CR" => 22,
        b"CY" => 28,
        b"CZ" => 24,
        b"DE" => 22,
        b"DK" => 18,
        b"DO" => 28,
        b"EE" => 20,
        b"ES" => 24,
        b"FI" => 18,
        b"FO" => 18,
        b"FR" => 27,
        b"GB" => 22,
        b"GE" => 22,
        b"GI" => 23,
        b"GL" => 18,
        b"GR" => 27,
        b"GT" => 28,
        b"HR" => 21,
        b"HU" => 28,
        b"IE" => 22,
        b"IL" => 23,
        b"IS" => 26,
        b"IT" => 27,
        b"JO" => 30,
        b"KW" => 30,
        b"KZ" => 20,
        b"LB" => 28,
        b"LI" => 21,
        b"LT" => 20,
        b"LU" => 20,
        b"LV" => 21,
        b"MC" => 27,
        b"MD" => 24,
        b"ME" => 22,
        b"MK" => 19,
        b"MR" => 27,
        b"MT" => 31,
        b"MU" => 30,
        b"NL" => 18,
        b"NO" => 15,
        b"PK" => 24,
        b"PL" => 28,
        b"PS" => 29,
        b"PT" => 25,
        b"QA" => 29,
        b"RO" => 24,
        b"RS" => 22,
        b"SA" => 24,
        b"SE" => 24,
        b"SI" => 19,
        b"SK" => 24,
        b"SM" => 27,
        b"TN" => 24,
        b"TR" => 26,
        b"UA" => 29,
        b"VG" => 24,
        b"XK" => 20,
        _ => return None,
    };
    Some(n)
}

fn iban_mod97(chars: &[u8]) -> bool {
    let mut rem = 0u32;
    for &c in chars[4..].iter().chain(&chars[..4]) {
        if c.is_ascii_digit() {
            rem = (rem * 10 + u32::from(c - b'0')) % 97;
        } else {
            rem = (rem * 100 + u32::from(c - b'A') + 10) % 97;
        }
    }
    rem == 1
}

/// The byte length of the IBAN at the start of candidate `s`, if valid.
fn iban_match(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    // Alphanumeric characters with the byte offset just past each.
    let mut chars: Vec<u8> = Vec::with_capacity(34);
    let mut ends: Vec<usize> = Vec::with_capacity(34);
    for (i, &c) in b.iter().enumerate() {
        if c != b' ' {
            chars.push(c);
            ends.push(i + 1);
        }
    }
    // A cut is allowed only at a group end (a space or the end).
    let cut_ok = |n: usize| ends[n - 1] == b.len() || b[ends[n - 1]] == b' ';
    let try_len = |n: usize| -> Option<usize> {
        if n <= chars.len() && cut_ok(n) && iban_mod97(&chars[..n]) {
            Some(ends[n - 1])
        } else {
            None
        }
    };
    match iban_country_len(&chars[..2]) {
        Some(n) => try_len(n),
        None => (15..=chars.len().min(34)).rev().find_map(try_len),
    }
}

/// Extra checks on a secret-pattern match.
fn secret_ok(s: &str) -> bool {
    // `sk-` words like `sk-learn-compatible-estimators` are not keys: real
    // keys are random and contain digits.
    if let Some(rest) = s.strip_prefix("sk-") {
        return rest.bytes().any(|c| c.is_ascii_digit());
    }
    true
}

#[cfg(test)]
mod stream_tests;
#[cfg(test)]
mod tests;
