//! Classification of OpenAI-format failures into [`ProviderError`]: non-2xx
//! answers, `error` objects inside a stream, and error bodies answered with
//! status 200 (some proxies do that).

use http::{HeaderMap, StatusCode};
use serde_json::Value;

use crate::ProviderError;
use crate::upstream::{Refusal, body_excerpt, classify_status, message_or_reason, retry_after};

/// What an error body says, read leniently: OpenAI's `{"error": {...}}`,
/// vLLM's top-level `{"object": "error", "message", "type", "code": 400}`,
/// `{"error": "text"}`, FastAPI's `{"detail": ...}`, or any text.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ErrorDetail {
    pub message: String,
    pub kind: String,
    pub param: Option<String>,
    pub code: Option<String>,
}

impl ErrorDetail {
    pub fn parse(body: &[u8]) -> Self {
        let said_something =
            |d: &Self| !d.message.is_empty() || !d.kind.is_empty() || d.code.is_some();
        match serde_json::from_slice::<Value>(body)
            .ok()
            .as_ref()
            .and_then(Self::from_json)
        {
            Some(d) if said_something(&d) => d,
            _ => Self {
                message: body_excerpt(body),
                ..Self::default()
            },
        }
    }

    fn from_json(v: &Value) -> Option<Self> {
        let top = v.as_object()?;
        let obj = match top.get("error") {
            Some(Value::Object(e)) => e,
            Some(Value::String(s)) => {
                return Some(Self {
                    message: s.clone(),
                    kind: text(top.get("error_type").or_else(|| top.get("type")))
                        .unwrap_or_default(),
                    ..Self::default()
                });
            }
            _ => top,
        };
        let message = text(obj.get("message"))
            .or_else(|| match obj.get("detail") {
                Some(Value::String(s)) => Some(s.clone()),
                Some(other @ (Value::Array(_) | Value::Object(_))) => Some(other.to_string()),
                _ => None,
            })
            .unwrap_or_default();
        Some(Self {
            message,
            kind: text(obj.get("type")).unwrap_or_default(),
            param: text(obj.get("param")),
            code: match obj.get("code") {
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Number(n)) => Some(n.to_string()),
                _ => None,
            },
        })
    }

    fn mentions(&self, needles: &[&str]) -> bool {
        let m = self.message.to_ascii_lowercase();
        needles.iter().any(|n| m.contains(n))
    }

    fn is_context_length(&self) -> bool {
        self.code.as_deref() == Some("context_length_exceeded")
            || self.mentions(&[
                "context length",
                "context_length",
                "context window",
                "maximum context",
                "prompt is too long",
                "too many tokens",
                "input is too long",
            ])
    }

    fn is_overloaded(&self) -> bool {
        let overloaded =
            |s: &str| matches!(s, "overloaded_error" | "server_overloaded" | "overloaded");
        overloaded(&self.kind) || self.code.as_deref().is_some_and(overloaded)
    }
}

fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

/// A non-2xx answer as a typed error. `body` is the (possibly truncated)
/// response body.
pub fn classify_error(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> ProviderError {
    classify(status.as_u16(), headers, ErrorDetail::parse(body))
}

/// An error the upstream reported without a telling HTTP status: an `error`
/// event inside an SSE stream, or an error body with status 200. The status
/// is taken from a numeric `code`, else inferred from `type`/`code` the way
/// OpenAI pairs them, so the result matches what the same error would be as
/// an HTTP answer.
pub fn classify_error_body(body: &[u8]) -> ProviderError {
    let detail = ErrorDetail::parse(body);
    let status = implied_status(&detail);
    classify(status, &HeaderMap::new(), detail)
}

fn implied_status(d: &ErrorDetail) -> u16 {
    if let Some(n) = d
        .code
        .as_deref()
        .and_then(|c| c.parse::<u16>().ok())
        .filter(|n| (400..600).contains(n))
    {
        return n;
    }
    let is = |names: &[&str]| {
        names
            .iter()
            .any(|n| d.kind == *n || d.code.as_deref() == Some(n))
    };
    if is(&[
        "rate_limit_exceeded",
        "rate_limit_error",
        "insufficient_quota",
        "tokens",
        "requests",
    ]) {
        429
    } else if is(&[
        "context_length_exceeded",
        "invalid_request_error",
        "BadRequestError",
    ]) {
        400
    } else if is(&[
        "authentication_error",
        "invalid_api_key",
        "AuthenticationError",
    ]) {
        401
    } else if is(&[
        "permission_error",
        "permission_denied",
        "PermissionDeniedError",
    ]) {
        403
    } else if is(&["not_found_error", "model_not_found", "NotFoundError"]) {
        404
    } else if is(&["overloaded_error"]) {
        529
    } else if is(&["server_overloaded"]) {
        503
    } else {
        500
    }
}

fn classify(status: u16, headers: &HeaderMap, d: ErrorDetail) -> ProviderError {
    classify_status(Refusal {
        status,
        retry_after: retry_after(headers),
        context_too_long: d.is_context_length(),
        overloaded: d.is_overloaded(),
        message: message_or_reason(d.message, status),
        param: d.param,
        code: d.code,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use http::HeaderValue;
    use serde_json::json;

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

    fn openai(message: &str, kind: &str, param: Option<&str>, code: Option<&str>) -> Value {
        json!({"error": {"message": message, "type": kind, "param": param, "code": code}})
    }

    #[test]
    fn classification_table() {
        let rate = openai(
            "Rate limit reached for gpt-4o in organization org-x on tokens per min (TPM): Limit 30000, Used 30000, Requested 100.",
            "tokens",
            None,
            Some("rate_limit_exceeded"),
        );
        let context = openai(
            "This model's maximum context length is 128000 tokens. However, your messages resulted in 130012 tokens. Please reduce the length of the messages.",
            "invalid_request_error",
            Some("messages"),
            Some("context_length_exceeded"),
        );
        type Case = (u16, Vec<(&'static str, &'static str)>, Value, ProviderError);
        let cases: Vec<Case> = vec![
            (
                429,
                vec![("retry-after", "20")],
                rate.clone(),
                ProviderError::RateLimited {
                    message: rate["error"]["message"].as_str().unwrap().into(),
                    retry_after: Some(Duration::from_secs(20)),
                },
            ),
            (
                429,
                vec![("x-ratelimit-reset-tokens", "6m0s")],
                json!({"error": {"message": "quota", "type": "insufficient_quota", "param": null, "code": "insufficient_quota"}}),
                ProviderError::RateLimited { message: "quota".into(), retry_after: Some(Duration::from_secs(360)) },
            ),
            (
                400,
                vec![],
                context.clone(),
                ProviderError::ContextTooLong { message: context["error"]["message"].as_str().unwrap().into() },
            ),
            (
                // vLLM: no code, but the message names the context length.
                400,
                vec![],
                json!({"object": "error", "message": "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens.", "type": "BadRequestError", "param": null, "code": 400}),
                ProviderError::ContextTooLong {
                    message: "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens.".into(),
                },
            ),
            (
                400,
                vec![],
                openai(
                    "Invalid 'temperature': decimal above maximum value.",
                    "invalid_request_error",
                    Some("temperature"),
                    Some("decimal_above_max_value"),
                ),
                ProviderError::BadRequest {
                    message: "Invalid 'temperature': decimal above maximum value.".into(),
                    status: 400,
                    param: Some("temperature".into()),
                    code: Some("decimal_above_max_value".into()),
                },
            ),
            (
                422,
                vec![],
                json!({"detail": [{"loc": ["body", "messages"], "msg": "field required", "type": "value_error.missing"}]}),
                ProviderError::BadRequest {
                    message: r#"[{"loc":["body","messages"],"msg":"field required","type":"value_error.missing"}]"#.into(),
                    status: 422,
                    param: None,
                    code: None,
                },
            ),
            (
                401,
                vec![],
                openai("Incorrect API key provided: sk-proj-****abcd.", "invalid_request_error", None, Some("invalid_api_key")),
                ProviderError::Auth { message: "Incorrect API key provided: sk-proj-****abcd.".into(), status: 401 },
            ),
            (
                403,
                vec![],
                json!({"error": "forbidden"}),
                ProviderError::Auth { message: "forbidden".into(), status: 403 },
            ),
            (
                404,
                vec![],
                openai("The model `gpt-9` does not exist or you do not have access to it.", "invalid_request_error", None, Some("model_not_found")),
                ProviderError::NotFound { message: "The model `gpt-9` does not exist or you do not have access to it.".into() },
            ),
            (
                503,
                vec![("retry-after-ms", "250")],
                openai("The engine is currently overloaded, please try again later", "server_error", None, None),
                ProviderError::Overloaded {
                    message: "The engine is currently overloaded, please try again later".into(),
                    status: 503,
                    retry_after: Some(Duration::from_millis(250)),
                },
            ),
            (
                529,
                vec![],
                json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
                ProviderError::Overloaded { message: "Overloaded".into(), status: 529, retry_after: None },
            ),
            (
                500,
                vec![],
                openai("", "server_overloaded", None, None),
                ProviderError::Overloaded { message: "Internal Server Error".into(), status: 500, retry_after: None },
            ),
            (
                500,
                vec![],
                openai("The server had an error while processing your request. Sorry about that!", "server_error", None, None),
                ProviderError::Upstream {
                    status: 500,
                    message: "The server had an error while processing your request. Sorry about that!".into(),
                },
            ),
            (
                502,
                vec![],
                Value::String("<html><body><h1>502 Bad Gateway</h1></body></html>".into()),
                ProviderError::Upstream {
                    status: 502,
                    message: r#""<html><body><h1>502 Bad Gateway</h1></body></html>""#.into(),
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
    fn non_json_bodies_are_quoted_trimmed() {
        let e = classify_error(
            StatusCode::BAD_GATEWAY,
            &HeaderMap::new(),
            b"\n  upstream connect error\n",
        );
        assert_eq!(
            e,
            ProviderError::Upstream {
                status: 502,
                message: "upstream connect error".into()
            }
        );
        let e = classify_error(StatusCode::INTERNAL_SERVER_ERROR, &HeaderMap::new(), b"");
        assert_eq!(
            e,
            ProviderError::Upstream {
                status: 500,
                message: "Internal Server Error".into()
            }
        );
    }

    #[test]
    fn errors_without_status_are_classified_like_http_errors() {
        let body = |v: Value| v.to_string().into_bytes();
        assert!(matches!(
            classify_error_body(&body(openai(
                "slow down",
                "tokens",
                None,
                Some("rate_limit_exceeded")
            ))),
            ProviderError::RateLimited { .. }
        ));
        assert!(matches!(
            classify_error_body(&body(openai(
                "too long",
                "invalid_request_error",
                None,
                Some("context_length_exceeded")
            ))),
            ProviderError::ContextTooLong { .. }
        ));
        assert!(matches!(
            classify_error_body(&body(
                json!({"error": {"message": "bad", "type": "BadRequestError", "code": 400}})
            )),
            ProviderError::BadRequest { status: 400, .. }
        ));
        assert!(matches!(
            classify_error_body(&body(
                json!({"error": {"message": "Overloaded", "type": "overloaded_error"}})
            )),
            ProviderError::Overloaded { status: 529, .. }
        ));
        assert_eq!(
            classify_error_body(&body(openai(
                "The server had an error",
                "server_error",
                None,
                None
            ))),
            ProviderError::Upstream {
                status: 500,
                message: "The server had an error".into()
            }
        );
    }
}
