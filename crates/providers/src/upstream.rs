//! HTTP details every wire format shares: how long the upstream asks us to
//! wait, how transport failures are classified, and how much of an error
//! body is worth reading.

use std::time::{Duration, SystemTime};

use http::{HeaderMap, StatusCode};

use crate::ProviderError;

/// Error bodies are read up to this size: enough for any JSON error, and a
/// misbehaving upstream cannot make a worker buffer a huge page.
pub(crate) const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// Upstream text quoted in an error message is cut to this many characters.
const MESSAGE_LIMIT: usize = 512;

/// How long the upstream asks us to wait before retrying, from the headers
/// vendors document, most precise first:
/// - `retry-after-ms` (OpenAI, Azure OpenAI): milliseconds;
/// - `retry-after` (RFC 9110): seconds, or an HTTP date;
/// - `x-ratelimit-reset-requests` / `x-ratelimit-reset-tokens` (OpenAI, Groq):
///   Go-style durations such as `1s`, `6m0s`, `20ms`. When
///   `x-ratelimit-remaining-*` says which limit is exhausted, its reset is
///   used; otherwise the later of the two.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    retry_after_at(headers, SystemTime::now())
}

/// [`retry_after`] with an explicit clock, for HTTP dates.
pub fn retry_after_at(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };

    if let Some(ms) = get("retry-after-ms").and_then(|v| v.parse::<f64>().ok())
        && ms.is_finite()
        && ms >= 0.0
    {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    if let Some(v) = get("retry-after") {
        if let Ok(secs) = v.parse::<f64>() {
            if secs.is_finite() && secs >= 0.0 {
                return Some(Duration::from_secs_f64(secs));
            }
        } else if let Ok(at) = httpdate::parse_http_date(v) {
            return Some(at.duration_since(now).unwrap_or(Duration::ZERO));
        }
    }
    let requests = get("x-ratelimit-reset-requests").and_then(parse_go_duration);
    let tokens = get("x-ratelimit-reset-tokens").and_then(parse_go_duration);
    let exhausted = |name: &str| {
        get(name)
            .and_then(|v| v.parse::<f64>().ok())
            .map(|n| n <= 0.0)
    };
    match (
        exhausted("x-ratelimit-remaining-requests"),
        exhausted("x-ratelimit-remaining-tokens"),
    ) {
        (Some(true), Some(false)) if requests.is_some() => requests,
        (Some(false), Some(true)) if tokens.is_some() => tokens,
        _ => requests.max(tokens),
    }
}

/// A Go `time.Duration` string (`1h2m3.5s`, `6m0s`, `20ms`, `1.5µs`), the
/// format OpenAI uses in `x-ratelimit-reset-*`. A bare number is seconds.
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if let Ok(secs) = s.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let mut total = 0.0_f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let value: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" | "μs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += value * scale;
    }
    (total.is_finite() && total >= 0.0).then(|| Duration::from_secs_f64(total))
}

/// A transport failure: `Timeout` for reqwest's own deadline, `Connection`
/// for everything else (DNS, connect, TLS, reset, a broken body). Connect
/// timeouts are connection failures: the host is unreachable, not slow.
pub(crate) fn from_reqwest(e: &reqwest::Error, deadline: Duration) -> ProviderError {
    if e.is_timeout() && !e.is_connect() {
        ProviderError::Timeout(deadline)
    } else {
        ProviderError::Connection(describe(e))
    }
}

/// An error and its causes on one line. reqwest's own message is terse
/// ("error sending request"); the cause says what happened ("Connection
/// refused").
pub(crate) fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// Up to `limit` bytes of a response body; a body that fails midway yields
/// what arrived.
pub(crate) async fn read_limited(mut resp: reqwest::Response, limit: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while out.len() < limit {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                let take = chunk.len().min(limit - out.len());
                out.extend_from_slice(&chunk[..take]);
            }
            Ok(None) | Err(_) => break,
        }
    }
    out
}

/// The start of an upstream body as message text: lossy UTF-8, whitespace
/// collapsed, cut on a character boundary.
pub(crate) fn body_excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    truncate_chars(&collapsed, MESSAGE_LIMIT)
}

/// What a vendor's error said, read by its own rules, for the status table
/// every wire format shares.
pub(crate) struct Refusal {
    pub status: u16,
    pub message: String,
    pub retry_after: Option<Duration>,
    /// The vendor's wording of a prompt over the context window.
    pub context_too_long: bool,
    /// The vendor's name for overload, whatever the status.
    pub overloaded: bool,
    pub param: Option<String>,
    pub code: Option<String>,
}

/// An error's message, or the status's reason when the upstream gave none.
pub(crate) fn message_or_reason(message: String, status: u16) -> String {
    if !message.is_empty() {
        return message;
    }
    StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("no error message")
        .to_owned()
}

/// A refusal by its status, once the vendor's own rules have had their say.
pub(crate) fn classify_status(r: Refusal) -> ProviderError {
    let Refusal {
        status,
        message,
        retry_after,
        ..
    } = r;
    match status {
        429 => ProviderError::RateLimited {
            message,
            retry_after,
        },
        400 | 413 | 422 if r.context_too_long => ProviderError::ContextTooLong { message },
        400 | 413 | 415 | 422 => ProviderError::BadRequest {
            message,
            status,
            param: r.param,
            code: r.code,
        },
        401 | 403 => ProviderError::Auth { message, status },
        404 => ProviderError::NotFound { message },
        // 529 is Anthropic's overloaded status; 503 everyone's.
        503 | 529 => ProviderError::Overloaded {
            message,
            status,
            retry_after,
        },
        _ if r.overloaded => ProviderError::Overloaded {
            message,
            status,
            retry_after,
        },
        _ => ProviderError::Upstream { status, message },
    }
}

pub(crate) fn truncate_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn go_durations() {
        let ms = Duration::from_millis;
        assert_eq!(parse_go_duration("1s"), Some(ms(1000)));
        assert_eq!(parse_go_duration("6m0s"), Some(ms(360_000)));
        assert_eq!(parse_go_duration("20ms"), Some(ms(20)));
        assert_eq!(parse_go_duration("1h2m3.5s"), Some(ms(3_723_500)));
        assert_eq!(parse_go_duration("7.66s"), Some(ms(7660)));
        assert_eq!(parse_go_duration("2m59.56s"), Some(ms(179_560)));
        assert_eq!(
            parse_go_duration("1500us"),
            Some(ms(1) + Duration::from_micros(500))
        );
        assert_eq!(parse_go_duration("3"), Some(ms(3000)));
        for bad in ["", "s", "1x", "-1s", "1s2", "abc"] {
            assert_eq!(parse_go_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn retry_after_sources_in_order_of_precision() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480); // 2015-10-21T07:28:00Z
        let at = |h: &HeaderMap| retry_after_at(h, now);
        assert_eq!(
            at(&headers(&[("retry-after", "7")])),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            at(&headers(&[("retry-after", "0.5")])),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            at(&headers(&[(
                "retry-after",
                "Wed, 21 Oct 2015 07:28:30 GMT"
            )])),
            Some(Duration::from_secs(30))
        );
        // A date in the past means "now".
        assert_eq!(
            at(&headers(&[(
                "retry-after",
                "Wed, 21 Oct 2015 07:00:00 GMT"
            )])),
            Some(Duration::ZERO)
        );
        assert_eq!(
            at(&headers(&[
                ("retry-after", "20"),
                ("retry-after-ms", "1500")
            ])),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            at(&headers(&[
                ("x-ratelimit-reset-requests", "1s"),
                ("x-ratelimit-reset-tokens", "6m0s")
            ])),
            Some(Duration::from_secs(360))
        );
        // The exhausted limit decides.
        assert_eq!(
            at(&headers(&[
                ("x-ratelimit-reset-requests", "1s"),
                ("x-ratelimit-reset-tokens", "6m0s"),
                ("x-ratelimit-remaining-requests", "0"),
                ("x-ratelimit-remaining-tokens", "5000"),
            ])),
            Some(Duration::from_secs(1))
        );
        assert_eq!(at(&headers(&[("retry-after", "soon")])), None);
        assert_eq!(at(&HeaderMap::new()), None);
    }

    #[test]
    fn excerpts_are_short_and_clean() {
        assert_eq!(
            body_excerpt(b"  <html>\n  <body>Bad gateway</body>\n</html> "),
            "<html> <body>Bad gateway</body> </html>"
        );
        let long = "é".repeat(600);
        let e = body_excerpt(long.as_bytes());
        assert_eq!(e.chars().count(), MESSAGE_LIMIT + 1);
        assert!(e.ends_with('…'));
    }
}
