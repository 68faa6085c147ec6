//! OpenAI-style `x-ratelimit-*` response headers.

use std::fmt::Write as _;
use std::time::Duration;

/// One limit's figures, as a client sees them after its request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Figures {
    /// The configured limit per minute.
    pub limit: u64,
    /// What is left of it in the current window.
    pub remaining: u64,
    /// How long until the window's oldest count leaves it, i.e. until
    /// `remaining` next grows (zero when nothing is counted). OpenAI
    /// describes its figure as "until the limit resets to its initial
    /// state"; with a sliding window that is always close to a minute
    /// under steady traffic and tells a client nothing, so this is the
    /// moment capacity next frees, which is what a client waiting for
    /// room needs.
    pub reset: Duration,
}

/// The figures of the tightest requests limit and the tightest tokens
/// limit that applied to a request (each `None` when no rule of that kind
/// applied, so no header of that kind is sent).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateHeaders {
    pub requests: Option<Figures>,
    pub tokens: Option<Figures>,
}

impl RateHeaders {
    /// `(header name, value)` pairs in OpenAI's format:
    /// `x-ratelimit-limit-requests: 600`, `x-ratelimit-remaining-requests:
    /// 599`, `x-ratelimit-reset-requests: 1s`, and the `-tokens` ones;
    /// resets are written like Go durations (`20ms`, `1.5s`, `6m0s`) as
    /// OpenAI does, so clients parsing them keep working.
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::with_capacity(6);
        if let Some(f) = self.requests {
            out.push(("x-ratelimit-limit-requests", f.limit.to_string()));
            out.push(("x-ratelimit-remaining-requests", f.remaining.to_string()));
            out.push(("x-ratelimit-reset-requests", format_duration(f.reset)));
        }
        if let Some(f) = self.tokens {
            out.push(("x-ratelimit-limit-tokens", f.limit.to_string()));
            out.push(("x-ratelimit-remaining-tokens", f.remaining.to_string()));
            out.push(("x-ratelimit-reset-tokens", format_duration(f.reset)));
        }
        out
    }

    /// Keeps, per kind, the figures with the least remaining (on a tie,
    /// the smaller limit): the limit the client will run into first.
    pub(crate) fn merge(&mut self, requests: Option<Figures>, tokens: Option<Figures>) {
        fn tighter(current: &mut Option<Figures>, new: Option<Figures>) {
            if let Some(n) = new {
                let replace = match current {
                    None => true,
                    Some(c) => (n.remaining, n.limit) < (c.remaining, c.limit),
                };
                if replace {
                    *current = Some(n);
                }
            }
        }
        tighter(&mut self.requests, requests);
        tighter(&mut self.tokens, tokens);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.requests.is_none() && self.tokens.is_none()
    }
}

/// A duration the way Go prints one (and OpenAI's headers show it),
/// rounded up to the millisecond so a client never retries early:
/// `0s`, `17ms`, `1s`, `59.413s`, `6m0s`, `1h0m0s`.
pub fn format_duration(d: Duration) -> String {
    let ms = u64::try_from(d.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX);
    if ms == 0 {
        return "0s".to_owned();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let hours = ms / 3_600_000;
    let minutes = (ms / 60_000) % 60;
    let seconds = (ms / 1000) % 60;
    let millis = ms % 1000;
    let mut out = String::with_capacity(12);
    if hours > 0 {
        let _ = write!(out, "{hours}h");
    }
    if hours > 0 || minutes > 0 {
        let _ = write!(out, "{minutes}m");
    }
    let _ = write!(out, "{seconds}");
    if millis > 0 {
        let frac = format!("{millis:03}");
        let _ = write!(out, ".{}", frac.trim_end_matches('0'));
    }
    out.push('s');
    out
}
