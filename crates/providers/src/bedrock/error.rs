//! Classification of Bedrock failures into [`ProviderError`]: non-2xx
//! answers (a `{"message": ...}` body, the error name in `x-amzn-errortype`)
//! and exception messages inside a ConverseStream body.

use http::{HeaderMap, StatusCode};
use serde_json::Value;

use crate::ProviderError;
use crate::upstream::{Refusal, body_excerpt, classify_status, message_or_reason, retry_after};

/// What a Bedrock error says: the exception name (`ThrottlingException`)
/// and the message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorDetail {
    pub kind: String,
    pub message: String,
}

impl ErrorDetail {
    /// From the `x-amzn-errortype` header (`ThrottlingException:http://...`)
    /// or the body's `__type` (`com.amazon.coral...#ThrottlingException`),
    /// and the body's `message` (`Message` in some services). A body that is
    /// not JSON is quoted as it is.
    pub fn parse(headers: &HeaderMap, body: &[u8]) -> Self {
        let json = serde_json::from_slice::<Value>(body).ok();
        let field = |names: &[&str]| {
            names.iter().find_map(|n| {
                json.as_ref()
                    .and_then(|v| v.get(*n))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
        };
        let kind = headers
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or_else(|| field(&["__type", "code"]))
            .map(|k| exception_name(&k).to_owned())
            .unwrap_or_default();
        let message = match field(&["message", "Message"]) {
            Some(m) => m,
            None if json.is_some() => String::new(),
            None => body_excerpt(body),
        };
        Self { kind, message }
    }

    fn mentions(&self, needles: &[&str]) -> bool {
        let m = self.message.to_ascii_lowercase();
        needles.iter().any(|n| m.contains(n))
    }

    /// Bedrock reports an oversized prompt as a ValidationException whose
    /// wording varies by model: "Input is too long for requested model",
    /// "prompt is too long", "too many input tokens", "... exceeds the context
    /// window". A bare "max tokens" complaint is about the requested
    /// `maxTokens`, not the prompt: a plain bad request.
    fn is_context_length(&self) -> bool {
        self.mentions(&[
            "too long",
            "too many input tokens",
            "too many tokens",
            "context window",
            "context length",
            "maximum context",
        ])
    }
}

/// `ThrottlingException:http://internal.amazon.com/...` and
/// `com.amazon.bedrock#ThrottlingException` both name `ThrottlingException`.
fn exception_name(raw: &str) -> &str {
    let raw = raw.split(':').next().unwrap_or(raw);
    raw.rsplit('#').next().unwrap_or(raw).trim()
}

/// A non-2xx answer as a typed error. `body` is the (possibly truncated)
/// response body.
pub fn classify_error(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> ProviderError {
    classify(status.as_u16(), headers, ErrorDetail::parse(headers, body))
}

/// An exception message inside a ConverseStream body (`:message-type:
/// exception`, the name in `:exception-type`, `{"message"}` payload),
/// classified as the same exception answered over HTTP would be.
pub fn classify_exception(exception_type: &str, payload: &[u8]) -> ProviderError {
    let mut detail = ErrorDetail::parse(&HeaderMap::new(), payload);
    // The stream spells the name in camelCase (`throttlingException`).
    let mut name = exception_type.to_owned();
    if let Some(first) = name.get_mut(..1) {
        first.make_ascii_uppercase();
    }
    detail.kind = name;
    let status = status_of(&detail.kind).unwrap_or(500);
    classify(status, &HeaderMap::new(), detail)
}

/// The HTTP status Bedrock documents for each exception.
fn status_of(kind: &str) -> Option<u16> {
    Some(match kind {
        "ValidationException" => 400,
        "AccessDeniedException" | "UnrecognizedClientException" => 403,
        "ResourceNotFoundException" => 404,
        "ModelTimeoutException" => 408,
        "ModelErrorException" | "ModelStreamErrorException" => 424,
        "ThrottlingException" | "ModelNotReadyException" => 429,
        "InternalServerException" => 500,
        "ServiceUnavailableException" => 503,
        _ => return None,
    })
}

fn classify(status: u16, headers: &HeaderMap, d: ErrorDetail) -> ProviderError {
    let message = match (d.message.is_empty(), d.kind.is_empty()) {
        (false, true) => d.message.clone(),
        (false, false) => format!("{}: {}", d.kind, d.message),
        (true, false) => d.kind.clone(),
        (true, true) => message_or_reason(String::new(), status),
    };
    let retry_after = retry_after(headers);
    // The exception name decides where it is telling; the status otherwise.
    match d.kind.as_str() {
        "ThrottlingException" | "ServiceQuotaExceededException" => {
            return ProviderError::RateLimited {
                message,
                retry_after,
            };
        }
        // A model that is still loading (imported models): come back later.
        "ModelNotReadyException" | "ServiceUnavailableException" => {
            return ProviderError::Overloaded {
                message,
                status,
                retry_after,
            };
        }
        "AccessDeniedException" | "UnrecognizedClientException" if status != 404 => {
            return ProviderError::Auth { message, status };
        }
        "ResourceNotFoundException" => return ProviderError::NotFound { message },
        _ => {}
    }
    // 408 ModelTimeoutException, 424 ModelErrorException and 500
    // InternalServerException end as `Upstream`: the router may retry
    // elsewhere.
    classify_status(Refusal {
        status,
        message,
        retry_after,
        context_too_long: d.is_context_length(),
        overloaded: false,
        param: None,
        code: (!d.kind.is_empty()).then_some(d.kind),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use std::time::Duration;

    fn answer(status: u16, kind: &str, message: &str) -> ProviderError {
        let mut h = HeaderMap::new();
        h.insert(
            "x-amzn-errortype",
            HeaderValue::from_str(&format!(
                "{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/"
            ))
            .unwrap(),
        );
        let body = serde_json::json!({ "message": message }).to_string();
        classify_error(StatusCode::from_u16(status).unwrap(), &h, body.as_bytes())
    }

    #[test]
    fn documented_exceptions() {
        assert!(matches!(
            answer(
                400,
                "ValidationException",
                "Input is too long for requested model."
            ),
            ProviderError::ContextTooLong { .. }
        ));
        assert!(matches!(
            answer(
                400,
                "ValidationException",
                "The model returned the following errors: prompt is too long: 210000 tokens > 200000 maximum"
            ),
            ProviderError::ContextTooLong { .. }
        ));
        let e = answer(400, "ValidationException", "temperature: must be <= 1");
        assert_eq!(
            e,
            ProviderError::BadRequest {
                message: "ValidationException: temperature: must be <= 1".into(),
                status: 400,
                param: None,
                code: Some("ValidationException".into()),
            }
        );
        assert!(matches!(
            answer(
                403,
                "AccessDeniedException",
                "You don't have access to the model with the specified model ID."
            ),
            ProviderError::Auth { status: 403, .. }
        ));
        assert!(matches!(
            answer(
                403,
                "UnrecognizedClientException",
                "The security token included in the request is invalid."
            ),
            ProviderError::Auth { status: 403, .. }
        ));
        assert!(matches!(
            answer(404, "ResourceNotFoundException", "Model not found"),
            ProviderError::NotFound { .. }
        ));
        assert!(matches!(
            answer(
                429,
                "ThrottlingException",
                "Too many requests, please wait before trying again."
            ),
            ProviderError::RateLimited {
                retry_after: None,
                ..
            }
        ));
        assert!(matches!(
            answer(429, "ModelNotReadyException", "Model is not ready"),
            ProviderError::Overloaded { status: 429, .. }
        ));
        assert!(matches!(
            answer(
                503,
                "ServiceUnavailableException",
                "Bedrock is unable to process your request."
            ),
            ProviderError::Overloaded { status: 503, .. }
        ));
        assert!(matches!(
            answer(500, "InternalServerException", "Internal error"),
            ProviderError::Upstream { status: 500, .. }
        ));
        assert!(matches!(
            answer(424, "ModelErrorException", "The model failed"),
            ProviderError::Upstream { status: 424, .. }
        ));
        assert!(matches!(
            answer(408, "ModelTimeoutException", "Model timed out"),
            ProviderError::Upstream { status: 408, .. }
        ));
    }

    #[test]
    fn retry_after_and_odd_bodies() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("3"));
        let e = classify_error(
            StatusCode::TOO_MANY_REQUESTS,
            &h,
            b"{\"message\":\"slow down\"}",
        );
        assert_eq!(
            e,
            ProviderError::RateLimited {
                message: "slow down".into(),
                retry_after: Some(Duration::from_secs(3))
            }
        );
        let e = classify_error(
            StatusCode::BAD_GATEWAY,
            &HeaderMap::new(),
            b"<html>Bad gateway</html>",
        );
        assert_eq!(
            e,
            ProviderError::Upstream {
                status: 502,
                message: "<html>Bad gateway</html>".into()
            }
        );
        let e = classify_error(
            StatusCode::BAD_REQUEST,
            &HeaderMap::new(),
            br#"{"__type":"com.amazon.coral.validate#ValidationException","Message":"bad"}"#,
        );
        assert!(
            matches!(e, ProviderError::BadRequest { code: Some(c), .. } if c == "ValidationException")
        );
        let e = classify_error(StatusCode::SERVICE_UNAVAILABLE, &HeaderMap::new(), b"{}");
        assert!(
            matches!(e, ProviderError::Overloaded { message, .. } if message == "Service Unavailable")
        );
    }

    #[test]
    fn stream_exceptions() {
        let p = br#"{"message":"Too many tokens, please wait before trying again."}"#;
        assert!(matches!(
            classify_exception("throttlingException", p),
            ProviderError::RateLimited { .. }
        ));
        assert!(matches!(
            classify_exception("modelStreamErrorException", b"{\"message\":\"boom\"}"),
            ProviderError::Upstream { status: 424, .. }
        ));
        assert!(matches!(
            classify_exception("internalServerException", b"{}"),
            ProviderError::Upstream { status: 500, .. }
        ));
        assert!(matches!(
            classify_exception("serviceUnavailableException", b"{}"),
            ProviderError::Overloaded { status: 503, .. }
        ));
        assert!(matches!(
            classify_exception(
                "validationException",
                b"{\"message\":\"Input is too long\"}"
            ),
            ProviderError::ContextTooLong { .. }
        ));
        assert!(matches!(
            classify_exception("validationException", b"{\"message\":\"bad field\"}"),
            ProviderError::BadRequest { status: 400, .. }
        ));
        assert!(matches!(
            classify_exception("somethingNewException", b"garbage"),
            ProviderError::Upstream { status: 500, .. }
        ));
    }
}
