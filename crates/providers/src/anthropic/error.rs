//! Classification of Anthropic failures into [`ProviderError`]: non-2xx
//! answers and `error` events inside a stream.
//!
//! Anthropic's error body is `{"type": "error", "error": {"type": ...,
//! "message": ...}}`; the error `type` pairs with a status (Anthropic's
//! "HTTP errors" page): `invalid_request_error` 400, `authentication_error`
//! 401, `permission_error` 403, `not_found_error` 404, `request_too_large`
//! 413, `rate_limit_error` 429, `api_error` 500, `timeout_error` 504,
//! `overloaded_error` 529.

use http::{HeaderMap, StatusCode};

use super::wire::{self, error_type};
use crate::ProviderError;
use crate::upstream::{Refusal, body_excerpt, classify_status, message_or_reason, retry_after};

/// What an error body says: Anthropic's shape, or any text (a proxy's HTML
/// page) as the message.
fn detail(body: &[u8]) -> wire::ErrorDetail {
    match serde_json::from_slice::<wire::ErrorResponse>(body) {
        Ok(r) if !r.error.message.is_empty() || !r.error.kind.is_empty() => r.error,
        _ => wire::ErrorDetail {
            message: body_excerpt(body),
            ..Default::default()
        },
    }
}

/// A non-2xx answer as a typed error. `body` is the (possibly truncated)
/// response body.
pub fn classify_error(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> ProviderError {
    classify(status.as_u16(), headers, detail(body))
}

/// An `error` event inside a stream (or an error body with status 200): the
/// status is the one Anthropic pairs with the error type, so the result
/// matches the same error answered over HTTP.
pub fn classify_error_body(body: &[u8]) -> ProviderError {
    let d = detail(body);
    let status = implied_status(&d.kind);
    classify(status, &HeaderMap::new(), d)
}

fn implied_status(kind: &str) -> u16 {
    match kind {
        error_type::INVALID_REQUEST => 400,
        error_type::AUTHENTICATION => 401,
        error_type::PERMISSION => 403,
        error_type::NOT_FOUND => 404,
        error_type::REQUEST_TOO_LARGE => 413,
        error_type::RATE_LIMIT => 429,
        error_type::TIMEOUT => 504,
        error_type::OVERLOADED => 529,
        _ => 500,
    }
}

/// Anthropic words a too-long prompt as "prompt is too long: 208310 tokens >
/// 200000 maximum", and prompt plus `max_tokens` over the window as "input
/// length and `max_tokens` exceed context limit".
fn is_context_length(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "prompt is too long",
        "exceed context limit",
        "context window",
        "context length",
    ]
    .iter()
    .any(|n| m.contains(n))
}

fn classify(status: u16, headers: &HeaderMap, d: wire::ErrorDetail) -> ProviderError {
    classify_status(Refusal {
        status,
        retry_after: retry_after(headers),
        // 422 is none of Anthropic's statuses: a proxy's, not a long prompt.
        context_too_long: status != 422 && is_context_length(&d.message),
        overloaded: d.kind == error_type::OVERLOADED,
        message: message_or_reason(d.message, status),
        param: None,
        code: (!d.kind.is_empty()).then_some(d.kind),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use std::time::Duration;

    fn body(kind: &str, message: &str) -> Vec<u8> {
        serde_json::to_vec(&wire::ErrorResponse::new(kind, message)).unwrap()
    }

    fn at(status: u16, kind: &str, message: &str) -> ProviderError {
        classify_error(
            StatusCode::from_u16(status).unwrap(),
            &HeaderMap::new(),
            &body(kind, message),
        )
    }

    #[test]
    fn every_documented_error_type() {
        assert!(matches!(
            at(400, "invalid_request_error", "max_tokens: Field required"),
            ProviderError::BadRequest { status: 400, code: Some(c), .. } if c == "invalid_request_error"
        ));
        assert!(matches!(
            at(
                400,
                "invalid_request_error",
                "prompt is too long: 208310 tokens > 200000 maximum"
            ),
            ProviderError::ContextTooLong { .. }
        ));
        assert!(matches!(
            at(401, "authentication_error", "invalid x-api-key"),
            ProviderError::Auth { status: 401, .. }
        ));
        assert!(matches!(
            at(403, "permission_error", "no"),
            ProviderError::Auth { status: 403, .. }
        ));
        assert!(matches!(
            at(404, "not_found_error", "model: claude-9"),
            ProviderError::NotFound { .. }
        ));
        assert!(matches!(
            at(
                413,
                "request_too_large",
                "Request exceeds the maximum allowed number of bytes."
            ),
            ProviderError::BadRequest { status: 413, .. }
        ));
        assert!(matches!(
            at(500, "api_error", "Internal server error"),
            ProviderError::Upstream { status: 500, .. }
        ));
        assert!(matches!(
            at(529, "overloaded_error", "Overloaded"),
            ProviderError::Overloaded { status: 529, .. }
        ));
    }

    #[test]
    fn rate_limits_carry_retry_after() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("7"));
        let e = classify_error(
            StatusCode::TOO_MANY_REQUESTS,
            &h,
            &body(
                "rate_limit_error",
                "Number of request tokens has exceeded your per-minute rate limit",
            ),
        );
        assert_eq!(
            e,
            ProviderError::RateLimited {
                message: "Number of request tokens has exceeded your per-minute rate limit".into(),
                retry_after: Some(Duration::from_secs(7)),
            }
        );
    }

    #[test]
    fn stream_errors_imply_their_status_and_text_bodies_are_quoted() {
        assert!(matches!(
            classify_error_body(&body("overloaded_error", "Overloaded")),
            ProviderError::Overloaded { status: 529, .. }
        ));
        assert!(matches!(
            classify_error_body(&body("rate_limit_error", "slow down")),
            ProviderError::RateLimited { .. }
        ));
        assert!(matches!(
            classify_error_body(b"not json"),
            ProviderError::Upstream { status: 500, message } if message == "not json"
        ));
        assert!(matches!(
            classify_error(StatusCode::BAD_GATEWAY, &HeaderMap::new(), b"<html>Bad gateway</html>"),
            ProviderError::Upstream { status: 502, message } if message.contains("Bad gateway")
        ));
    }
}
