//! Classification of Gemini API failures into [`ProviderError`]: non-2xx
//! answers (`{"error": google.rpc.Status}`), `error` objects inside a
//! stream, and error bodies answered with status 200.
//!
//! Google's canonical codes and what they become:
//!
//! | HTTP | `status`                          | [`ProviderError`]                       |
//! |------|-----------------------------------|-----------------------------------------|
//! | 400  | `INVALID_ARGUMENT`, token count   | `ContextTooLong`                        |
//! | 400  | `INVALID_ARGUMENT`, `API_KEY_INVALID` | `Auth` (401)                        |
//! | 400  | `INVALID_ARGUMENT`, `FAILED_PRECONDITION` | `BadRequest`                    |
//! | 401/403 | `UNAUTHENTICATED`, `PERMISSION_DENIED` | `Auth`                          |
//! | 404  | `NOT_FOUND`                       | `NotFound`                              |
//! | 429  | `RESOURCE_EXHAUSTED`              | `RateLimited` (`retry-after`, else `RetryInfo.retryDelay`) |
//! | 503  | `UNAVAILABLE`                     | `Overloaded`                            |
//! | 500, 504, other | `INTERNAL`, `DEADLINE_EXCEEDED` | `Upstream`                     |

use std::time::Duration;

use http::{HeaderMap, StatusCode};
use serde_json::Value;

use crate::ProviderError;
use crate::upstream::{
    Refusal, body_excerpt, classify_status, message_or_reason, parse_go_duration, retry_after,
};

/// What an error body says, read leniently: Google's `{"error": {...}}`, the
/// same wrapped in an array (the non-SSE stream format), or any text.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ErrorDetail {
    pub code: Option<u16>,
    pub message: String,
    /// The canonical code name (`RESOURCE_EXHAUSTED`).
    pub status: String,
    /// `ErrorInfo.reason` (`API_KEY_INVALID`).
    pub reason: Option<String>,
    /// `RetryInfo.retryDelay`.
    pub retry_delay: Option<Duration>,
}

impl ErrorDetail {
    pub fn parse(body: &[u8]) -> Self {
        let json = serde_json::from_slice::<Value>(body).ok();
        let obj = match &json {
            Some(Value::Array(items)) => items.first().and_then(|i| i.get("error")),
            Some(v) => v.get("error"),
            None => None,
        };
        match obj {
            Some(Value::Object(e)) => {
                let details = e.get("details").and_then(Value::as_array);
                let detail_of = |suffix: &str, key: &str| {
                    details?
                        .iter()
                        .filter(|d| {
                            d.get("@type")
                                .and_then(Value::as_str)
                                .is_some_and(|t| t.ends_with(suffix))
                        })
                        .find_map(|d| d.get(key).and_then(Value::as_str))
                        .map(str::to_owned)
                };
                Self {
                    code: e
                        .get("code")
                        .and_then(Value::as_u64)
                        .and_then(|c| u16::try_from(c).ok()),
                    message: text(e.get("message")),
                    status: text(e.get("status")),
                    reason: detail_of("google.rpc.ErrorInfo", "reason"),
                    retry_delay: detail_of("google.rpc.RetryInfo", "retryDelay")
                        .as_deref()
                        .and_then(parse_go_duration),
                }
            }
            Some(Value::String(s)) => Self {
                message: s.clone(),
                ..Self::default()
            },
            _ => Self {
                message: body_excerpt(body),
                ..Self::default()
            },
        }
    }

    fn mentions(&self, needles: &[&str]) -> bool {
        let m = self.message.to_ascii_lowercase();
        needles.iter().any(|n| m.contains(n))
    }

    /// Gemini says "The input token count (N) exceeds the maximum number of
    /// tokens allowed (M)."; Vertex AI phrases it a few other ways.
    fn is_context_length(&self) -> bool {
        self.mentions(&[
            "exceeds the maximum number of tokens",
            "input token count",
            "context window",
            "context length",
            "too many tokens",
            "prompt is too long",
        ])
    }

    /// A rejected key is answered with 400 `INVALID_ARGUMENT`, not 401.
    fn is_bad_key(&self) -> bool {
        self.reason.as_deref() == Some("API_KEY_INVALID")
            || self.mentions(&["api key not valid", "api key expired"])
    }
}

fn text(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        _ => String::new(),
    }
}

/// A non-2xx answer as a typed error. `body` is the (possibly truncated)
/// response body.
pub fn classify_error(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> ProviderError {
    classify(status.as_u16(), headers, ErrorDetail::parse(body))
}

/// An error reported without a telling HTTP status (inside a stream, or with
/// status 200): the status comes from `error.code`, else from the canonical
/// code name.
pub fn classify_error_body(body: &[u8]) -> ProviderError {
    let detail = ErrorDetail::parse(body);
    let status = detail
        .code
        .filter(|c| (400..600).contains(c))
        .unwrap_or_else(|| status_of_code_name(&detail.status));
    classify(status, &HeaderMap::new(), detail)
}

/// The HTTP status Google pairs with a canonical code name.
fn status_of_code_name(name: &str) -> u16 {
    match name {
        "INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "OUT_OF_RANGE" => 400,
        "UNAUTHENTICATED" => 401,
        "PERMISSION_DENIED" => 403,
        "NOT_FOUND" => 404,
        "ABORTED" | "ALREADY_EXISTS" => 409,
        "RESOURCE_EXHAUSTED" => 429,
        "CANCELLED" => 499,
        "UNIMPLEMENTED" => 501,
        "UNAVAILABLE" => 503,
        "DEADLINE_EXCEEDED" => 504,
        _ => 500,
    }
}

fn classify(status: u16, headers: &HeaderMap, d: ErrorDetail) -> ProviderError {
    let bad_key = d.is_bad_key();
    let context_too_long = d.is_context_length();
    let message = message_or_reason(d.message, status);
    match status {
        400 | 413 | 422 if bad_key => {
            return ProviderError::Auth {
                message,
                // A credentials failure, whatever status Google chose: the
                // router and clients treat 401 as "fix the key".
                status: 401,
            };
        }
        // Anthropic's overload status; none of Google's: a plain failure.
        529 => return ProviderError::Upstream { status, message },
        _ => {}
    }
    classify_status(Refusal {
        status,
        message,
        // The header is the HTTP-level answer; RetryInfo is what Gemini
        // actually sends.
        retry_after: retry_after(headers).or(d.retry_delay),
        context_too_long,
        overloaded: false,
        param: None,
        code: (!d.status.is_empty()).then_some(d.status),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use serde_json::json;

    fn google(code: u16, status: &str, message: &str, details: Value) -> Value {
        json!({"error": {"code": code, "message": message, "status": status, "details": details}})
    }

    fn classify_json(status: u16, headers: &[(&'static str, &str)], body: &Value) -> ProviderError {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        classify_error(
            StatusCode::from_u16(status).unwrap(),
            &h,
            body.to_string().as_bytes(),
        )
    }

    #[test]
    fn classification_table() {
        let retry_info = json!([
            {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{"quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests"}]},
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"}
        ]);
        let too_long = "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).";
        let bad_key = json!([{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
            "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"}}]);
        type Case = (u16, Vec<(&'static str, &'static str)>, Value, ProviderError);
        let cases: Vec<Case> = vec![
            (
                429,
                vec![],
                google(
                    429,
                    "RESOURCE_EXHAUSTED",
                    "You exceeded your current quota.",
                    retry_info.clone(),
                ),
                ProviderError::RateLimited {
                    message: "You exceeded your current quota.".into(),
                    retry_after: Some(Duration::from_secs(7)),
                },
            ),
            (
                429,
                vec![("retry-after", "2")],
                google(429, "RESOURCE_EXHAUSTED", "quota", retry_info),
                ProviderError::RateLimited {
                    message: "quota".into(),
                    retry_after: Some(Duration::from_secs(2)),
                },
            ),
            (
                429,
                vec![],
                google(429, "RESOURCE_EXHAUSTED", "quota", json!([])),
                ProviderError::RateLimited {
                    message: "quota".into(),
                    retry_after: None,
                },
            ),
            (
                400,
                vec![],
                google(400, "INVALID_ARGUMENT", too_long, json!([])),
                ProviderError::ContextTooLong {
                    message: too_long.into(),
                },
            ),
            (
                400,
                vec![],
                google(
                    400,
                    "INVALID_ARGUMENT",
                    "API key not valid. Please pass a valid API key.",
                    bad_key,
                ),
                ProviderError::Auth {
                    message: "API key not valid. Please pass a valid API key.".into(),
                    status: 401,
                },
            ),
            (
                400,
                vec![],
                google(
                    400,
                    "INVALID_ARGUMENT",
                    "Invalid value at 'generation_config.temperature' (TYPE_FLOAT), \"hot\"",
                    json!([]),
                ),
                ProviderError::BadRequest {
                    message:
                        "Invalid value at 'generation_config.temperature' (TYPE_FLOAT), \"hot\""
                            .into(),
                    status: 400,
                    param: None,
                    code: Some("INVALID_ARGUMENT".into()),
                },
            ),
            (
                400,
                vec![],
                google(
                    400,
                    "FAILED_PRECONDITION",
                    "User location is not supported for the API use.",
                    json!([]),
                ),
                ProviderError::BadRequest {
                    message: "User location is not supported for the API use.".into(),
                    status: 400,
                    param: None,
                    code: Some("FAILED_PRECONDITION".into()),
                },
            ),
            (
                401,
                vec![],
                google(
                    401,
                    "UNAUTHENTICATED",
                    "Request had invalid authentication credentials.",
                    json!([]),
                ),
                ProviderError::Auth {
                    message: "Request had invalid authentication credentials.".into(),
                    status: 401,
                },
            ),
            (
                403,
                vec![],
                google(
                    403,
                    "PERMISSION_DENIED",
                    "Method doesn't allow unregistered callers.",
                    json!([]),
                ),
                ProviderError::Auth {
                    message: "Method doesn't allow unregistered callers.".into(),
                    status: 403,
                },
            ),
            (
                404,
                vec![],
                google(
                    404,
                    "NOT_FOUND",
                    "models/gemini-9 is not found for API version v1beta",
                    json!([]),
                ),
                ProviderError::NotFound {
                    message: "models/gemini-9 is not found for API version v1beta".into(),
                },
            ),
            (
                503,
                vec![("retry-after", "3")],
                google(
                    503,
                    "UNAVAILABLE",
                    "The model is overloaded. Please try again later.",
                    json!([]),
                ),
                ProviderError::Overloaded {
                    message: "The model is overloaded. Please try again later.".into(),
                    status: 503,
                    retry_after: Some(Duration::from_secs(3)),
                },
            ),
            (
                500,
                vec![],
                google(
                    500,
                    "INTERNAL",
                    "An internal error has occurred.",
                    json!([]),
                ),
                ProviderError::Upstream {
                    status: 500,
                    message: "An internal error has occurred.".into(),
                },
            ),
            (
                504,
                vec![],
                google(
                    504,
                    "DEADLINE_EXCEEDED",
                    "Deadline expired before operation could complete.",
                    json!([]),
                ),
                ProviderError::Upstream {
                    status: 504,
                    message: "Deadline expired before operation could complete.".into(),
                },
            ),
            (
                // The non-SSE stream format wraps the error in an array.
                429,
                vec![],
                json!([google(429, "RESOURCE_EXHAUSTED", "slow down", json!([]))]),
                ProviderError::RateLimited {
                    message: "slow down".into(),
                    retry_after: None,
                },
            ),
        ];
        for (status, headers, body, expected) in cases {
            assert_eq!(
                classify_json(status, &headers, &body),
                expected,
                "status {status}, body {body}"
            );
        }
    }

    #[test]
    fn non_json_bodies_are_quoted() {
        assert_eq!(
            classify_error(
                StatusCode::BAD_GATEWAY,
                &HeaderMap::new(),
                b"<html>\n bad gateway </html>"
            ),
            ProviderError::Upstream {
                status: 502,
                message: "<html> bad gateway </html>".into()
            }
        );
        assert_eq!(
            classify_error(StatusCode::SERVICE_UNAVAILABLE, &HeaderMap::new(), b""),
            ProviderError::Overloaded {
                status: 503,
                message: "Service Unavailable".into(),
                retry_after: None
            }
        );
    }

    #[test]
    fn errors_without_status_use_the_code() {
        let body = |v: Value| v.to_string().into_bytes();
        assert!(matches!(
            classify_error_body(&body(google(429, "RESOURCE_EXHAUSTED", "x", json!([])))),
            ProviderError::RateLimited { .. }
        ));
        assert!(matches!(
            classify_error_body(&body(
                json!({"error": {"message": "x", "status": "UNAVAILABLE"}})
            )),
            ProviderError::Overloaded { status: 503, .. }
        ));
        assert_eq!(
            classify_error_body(&body(
                json!({"error": {"message": "boom", "status": "INTERNAL"}})
            )),
            ProviderError::Upstream {
                status: 500,
                message: "boom".into()
            }
        );
        assert!(matches!(
            classify_error_body(b"not json"),
            ProviderError::Upstream { status: 500, .. }
        ));
    }
}
