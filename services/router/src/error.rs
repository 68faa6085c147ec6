//! Every way a gateway request can fail, with one exhaustive mapping to the
//! HTTP status, the OpenAI error `type`/`code`, and the gRPC status code.

use std::time::Duration;

use http::StatusCode;
use switchyard_bus::BusError;
use switchyard_config::Capability;
use switchyard_proto::bus::v1::{ErrorKind, UpstreamError};
use switchyard_providers::params::UnsupportedParam;
use switchyard_routing::Unroutable;

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum GatewayError {
    /// The body is not valid JSON.
    #[error("{0}")]
    MalformedJson(String),
    /// A field is missing or invalid; `param` names it.
    #[error("{message}")]
    InvalidRequest {
        message: String,
        param: Option<String>,
    },
    /// A `guardrails` rule with `action: block` matched the prompt. The
    /// match itself is never echoed.
    #[error(
        "the request was blocked by guardrail `{rule}`: it contains {detector} content (remove it, or ask the gateway's operator)"
    )]
    GuardrailBlocked { rule: String, detector: String },
    /// A `guardrails` rule with `action: block` and `applies_to: response`
    /// (or `both`) matched the model's answer: the answer (or the rest of a
    /// stream, from where the match began) is withheld. The match itself
    /// is never echoed.
    #[error(
        "the answer was blocked by guardrail `{rule}`: it contained {detector} content (ask the gateway's operator)"
    )]
    GuardrailBlockedAnswer { rule: String, detector: String },
    /// The request uses a parameter the chosen target cannot take, and the
    /// route's `unsupported_params` policy is `reject`.
    #[error("{0}")]
    UnsupportedParameter(UnsupportedParam),
    /// No configured model or provider serves the requested model.
    #[error("The model `{0}` does not exist or you do not have access to it.")]
    ModelNotFound(String),
    /// The body is larger than `server.max_body_bytes`.
    #[error("Request body is larger than the limit of {limit} bytes.")]
    PayloadTooLarge { limit: u64 },
    /// No path or method here.
    #[error("Unknown request URL: {method} {path}. Please check the URL for typos.")]
    UnknownRoute { method: String, path: String },
    /// The path exists, the method does not.
    #[error("{method} is not allowed on {path}.")]
    MethodNotAllowed { method: String, path: String },
    /// No route of the model can take this request (too long, a missing
    /// capability, or every target cooling down / breaker open).
    #[error("{0}")]
    Unroutable(Unroutable),
    /// The admin API refused the caller.
    #[error(
        "the admin API needs `Authorization: Bearer <SWITCHYARD_ADMIN_TOKEN>` (or a loopback client when no token is set)"
    )]
    AdminForbidden,
    /// No credential, or one that is not valid (unknown, revoked, expired
    /// key; a refused JWT). Never echoes the credential.
    #[error("{0}")]
    Unauthenticated(String),
    /// A bearer JWT could not be checked: the identity provider's keys
    /// could not be fetched. Not the caller's fault; worth a retry.
    #[error("the identity provider's signing keys cannot be fetched: {0}")]
    IdentityProviderUnavailable(String),
    /// The caller's key, or an access rule that applies to it, does not
    /// allow this model.
    #[error("{}", forbidden_message(.model, .by))]
    ModelForbidden { model: String, by: String },
    /// A `rate_limits` entry (or the key's own `rpm`/`tpm`) is exhausted for
    /// this minute.
    #[error(
        "rate limit `{rule}` reached: {limit} {what} per minute; retry in {}s",
        .retry_after.as_millis().div_ceil(1000).max(1)
    )]
    RateLimited {
        rule: String,
        /// `requests` or `tokens`.
        what: &'static str,
        limit: u64,
        retry_after: Duration,
        /// The refusing limit's `x-ratelimit-*` headers.
        headers: Vec<(&'static str, String)>,
    },
    /// A per-key request limit (message count, `max_tokens` ceiling).
    #[error("{message}")]
    RequestLimit { message: String, param: String },
    /// The worker that took the request stopped answering (died, missed
    /// its heartbeats, or events were lost on the bus) before the answer
    /// was complete.
    #[error("provider `{provider}`: worker lost: {reason}")]
    WorkerLost { provider: String, reason: String },
    /// No live worker for the provider(s) that would serve the model.
    #[error(
        "no live worker for provider `{provider}`; start `switchyard worker --provider {provider}`"
    )]
    NoWorker { provider: String },
    /// Every target failed with an upstream error; this is the last one.
    #[error("{}", upstream_message(.provider, .error))]
    Upstream {
        provider: String,
        error: UpstreamError,
    },
    /// The gateway's own deadline (`server.request_timeout`) passed.
    #[error("the request did not complete within {0:?}")]
    DeadlineExceeded(Duration),
    /// The router is shutting down and takes no new work.
    #[error("the gateway is shutting down; retry on another instance")]
    ShuttingDown,
    /// A `reject` budget is spent for this window (or every provider that
    /// could serve is under an exhausted provider budget).
    #[error(
        "budget `{}` is exhausted: {} of {} USD spent{}; it resets at {}",
        .0.budget, .0.spent, .0.limit, budget_scope(&.0.scope), .0.resets_at
    )]
    BudgetExceeded(Box<BudgetRefusal>),
    /// A bug or a broken bus; never the client's fault.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Which budget refused a request, and until when.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetRefusal {
    pub budget: String,
    /// `team=research`, or empty for a budget over all spend.
    pub scope: String,
    pub limit: switchyard_pricing::Usd,
    pub spent: switchyard_pricing::Usd,
    pub resets_at: jiff::Timestamp,
}

fn forbidden_message(model: &str, by: &str) -> String {
    format!("the model `{model}` is not allowed for this API key by {by}")
}

fn budget_scope(scope: &str) -> String {
    if scope.is_empty() {
        String::new()
    } else {
        format!(" for {scope}")
    }
}

fn upstream_message(provider: &str, e: &UpstreamError) -> String {
    if e.upstream_status == 0 {
        format!("provider `{provider}`: {}", e.message)
    } else {
        format!(
            "provider `{provider}` answered {}: {}",
            e.upstream_status, e.message
        )
    }
}

/// Where an error is sent: HTTP status, OpenAI `type`, OpenAI `code`, gRPC code.
pub struct ErrorClass {
    pub status: StatusCode,
    pub openai_type: &'static str,
    pub code: Option<&'static str>,
    pub grpc: tonic::Code,
}

impl GatewayError {
    pub fn class(&self) -> ErrorClass {
        use tonic::Code;
        let c = |status, openai_type, code, grpc| ErrorClass {
            status,
            openai_type,
            code,
            grpc,
        };
        match self {
            GatewayError::MalformedJson(_) => c(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                Some("invalid_json"),
                Code::InvalidArgument,
            ),
            GatewayError::InvalidRequest { .. } => c(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                None,
                Code::InvalidArgument,
            ),
            GatewayError::UnsupportedParameter(_) => c(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                Some("unsupported_parameter"),
                Code::InvalidArgument,
            ),
            GatewayError::GuardrailBlocked { .. } => c(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                Some("guardrail_blocked"),
                Code::InvalidArgument,
            ),
            // Not a 400: the request was valid, the answer is what the
            // policy refuses. Not a 5xx either: SDKs retry those on their
            // own, and a retry would pay for the same answer again. 422
            // (the request was understood, its outcome cannot be given)
            // is not retried; over gRPC the caller may not have this
            // content: PERMISSION_DENIED.
            GatewayError::GuardrailBlockedAnswer { .. } => c(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request_error",
                Some("guardrail_blocked_answer"),
                Code::PermissionDenied,
            ),
            GatewayError::ModelNotFound(_) => c(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                Some("model_not_found"),
                Code::NotFound,
            ),
            GatewayError::PayloadTooLarge { .. } => c(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                Some("request_too_large"),
                Code::ResourceExhausted,
            ),
            GatewayError::UnknownRoute { .. } => c(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                Some("unknown_url"),
                Code::Unimplemented,
            ),
            GatewayError::MethodNotAllowed { .. } => c(
                StatusCode::METHOD_NOT_ALLOWED,
                "invalid_request_error",
                Some("method_not_allowed"),
                Code::Unimplemented,
            ),
            GatewayError::Unroutable(u) => match u {
                Unroutable::TooLong { .. } => c(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    Some("context_length_exceeded"),
                    Code::InvalidArgument,
                ),
                Unroutable::Missing { .. } => c(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    Some("unsupported_capability"),
                    Code::InvalidArgument,
                ),
                Unroutable::AllUnavailable { .. } => c(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "service_unavailable",
                    Some("all_targets_unavailable"),
                    Code::Unavailable,
                ),
            },
            GatewayError::AdminForbidden => c(
                StatusCode::FORBIDDEN,
                "permission_error",
                Some("admin_forbidden"),
                Code::PermissionDenied,
            ),
            GatewayError::Unauthenticated(_) => c(
                StatusCode::UNAUTHORIZED,
                "invalid_request_error",
                Some("invalid_api_key"),
                Code::Unauthenticated,
            ),
            GatewayError::IdentityProviderUnavailable(_) => c(
                StatusCode::SERVICE_UNAVAILABLE,
                "service_unavailable",
                Some("identity_provider_unavailable"),
                Code::Unavailable,
            ),
            GatewayError::ModelForbidden { .. } => c(
                StatusCode::FORBIDDEN,
                "permission_error",
                Some("model_not_allowed"),
                Code::PermissionDenied,
            ),
            // OpenAI names what ran out (`requests`/`tokens`) in `type`.
            GatewayError::RateLimited { what, .. } => c(
                StatusCode::TOO_MANY_REQUESTS,
                *what,
                Some("rate_limit_exceeded"),
                Code::ResourceExhausted,
            ),
            GatewayError::RequestLimit { .. } => c(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                Some("request_limit_exceeded"),
                Code::InvalidArgument,
            ),
            GatewayError::WorkerLost { .. } => c(
                StatusCode::BAD_GATEWAY,
                "upstream_error",
                Some("worker_lost"),
                Code::Unavailable,
            ),
            GatewayError::NoWorker { .. } => c(
                StatusCode::SERVICE_UNAVAILABLE,
                "service_unavailable",
                Some("no_live_worker"),
                Code::Unavailable,
            ),
            GatewayError::Upstream { error, .. } => upstream_class(error),
            GatewayError::DeadlineExceeded(_) => c(
                StatusCode::GATEWAY_TIMEOUT,
                "timeout",
                Some("deadline_exceeded"),
                Code::DeadlineExceeded,
            ),
            GatewayError::ShuttingDown => c(
                StatusCode::SERVICE_UNAVAILABLE,
                "service_unavailable",
                Some("shutting_down"),
                Code::Unavailable,
            ),
            GatewayError::BudgetExceeded(_) => c(
                StatusCode::TOO_MANY_REQUESTS,
                "insufficient_quota",
                Some("budget_exceeded"),
                Code::ResourceExhausted,
            ),
            GatewayError::Internal(_) => c(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                None,
                Code::Internal,
            ),
        }
    }

    pub fn param(&self) -> Option<&str> {
        match self {
            GatewayError::InvalidRequest { param, .. } => param.as_deref(),
            GatewayError::UnsupportedParameter(e) => Some(e.param),
            GatewayError::ModelNotFound(_) | GatewayError::ModelForbidden { .. } => Some("model"),
            GatewayError::RequestLimit { param, .. } => Some(param),
            GatewayError::Upstream { error, .. } if !error.param.is_empty() => Some(&error.param),
            GatewayError::Unroutable(Unroutable::TooLong { .. }) => Some("messages"),
            GatewayError::Unroutable(Unroutable::Missing { capability }) => {
                Some(match capability {
                    Capability::Tools => "tools",
                    Capability::Vision => "messages",
                    Capability::JsonSchema => "response_format",
                })
            }
            _ => None,
        }
    }

    /// How long the client should wait before trying again, when known.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            GatewayError::Upstream { error, .. } if error.retry_after_ms > 0 => {
                Some(Duration::from_millis(error.retry_after_ms))
            }
            GatewayError::Unroutable(Unroutable::AllUnavailable { retry_after }) => {
                Some(*retry_after)
            }
            GatewayError::RateLimited { retry_after, .. } => Some(*retry_after),
            // The JWKS is fetched again at most every `min_refresh_interval`.
            GatewayError::IdentityProviderUnavailable(_) => Some(Duration::from_secs(5)),
            GatewayError::BudgetExceeded(r) => {
                let left = r.resets_at.duration_since(jiff::Timestamp::now());
                Some(
                    Duration::try_from(left)
                        .unwrap_or(Duration::ZERO)
                        .max(Duration::from_secs(1)),
                )
            }
            _ => None,
        }
    }

    /// Headers the error's answer carries besides `retry-after`.
    pub fn extra_headers(&self) -> &[(&'static str, String)] {
        match self {
            GatewayError::RateLimited { headers, .. } => headers,
            _ => &[],
        }
    }

    /// The upstream's own error code passes through when it gave one.
    pub fn code(&self) -> Option<&str> {
        match self {
            GatewayError::Upstream { error, .. } if !error.code.is_empty() => Some(&error.code),
            _ => self.class().code,
        }
    }

    /// `provider` is the one the call went to (some bus errors do not name it).
    pub fn from_bus(e: BusError, provider: &str) -> Self {
        match e {
            BusError::NoResponders(provider) => GatewayError::NoWorker { provider },
            BusError::WorkerLost { provider, reason } => {
                GatewayError::WorkerLost { provider, reason }
            }
            BusError::Connection(m) => {
                GatewayError::Internal(format!("bus connection failed: {m}"))
            }
            // A sequence gap means events were lost in transit: the worker's
            // answer is incomplete, which is the same as losing the worker.
            BusError::Decode(m) => GatewayError::WorkerLost {
                provider: provider.to_owned(),
                reason: format!("malformed bus message: {m}"),
            },
            BusError::Closed => GatewayError::ShuttingDown,
        }
    }
}

/// Upstream failures keep the status class the client would have seen
/// upstream where that is meaningful (429 stays 429, a 400 the provider
/// rejected stays 400), and become 502/504 where the provider broke.
fn upstream_class(e: &UpstreamError) -> ErrorClass {
    use tonic::Code;
    let c = |status, openai_type, code, grpc| ErrorClass {
        status,
        openai_type,
        code,
        grpc,
    };
    let kind = ErrorKind::try_from(e.kind).unwrap_or(ErrorKind::Unspecified);
    match kind {
        ErrorKind::RateLimited => c(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            Some("rate_limit_exceeded"),
            Code::ResourceExhausted,
        ),
        ErrorKind::Overloaded => c(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded_error",
            Some("upstream_overloaded"),
            Code::Unavailable,
        ),
        ErrorKind::BadRequest => c(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            None,
            Code::InvalidArgument,
        ),
        ErrorKind::ContextTooLong => c(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("context_length_exceeded"),
            Code::InvalidArgument,
        ),
        // The provider refused the gateway's credentials: a gateway
        // misconfiguration, not the client's key, so not 401.
        ErrorKind::Auth => c(
            StatusCode::BAD_GATEWAY,
            "upstream_error",
            Some("upstream_auth_failed"),
            Code::Unavailable,
        ),
        ErrorKind::NotFound => c(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            Some("model_not_found"),
            Code::NotFound,
        ),
        ErrorKind::Timeout => c(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            Some("upstream_timeout"),
            Code::DeadlineExceeded,
        ),
        ErrorKind::Connection => c(
            StatusCode::BAD_GATEWAY,
            "upstream_error",
            Some("upstream_unreachable"),
            Code::Unavailable,
        ),
        ErrorKind::Upstream => c(
            StatusCode::BAD_GATEWAY,
            "upstream_error",
            Some("upstream_error"),
            Code::Unavailable,
        ),
        ErrorKind::Internal | ErrorKind::Unspecified => c(
            StatusCode::BAD_GATEWAY,
            "upstream_error",
            Some("worker_error"),
            Code::Internal,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(kind: ErrorKind, status: u32) -> GatewayError {
        GatewayError::Upstream {
            provider: "p".into(),
            error: UpstreamError {
                kind: kind as i32,
                message: "m".into(),
                upstream_status: status,
                ..Default::default()
            },
        }
    }

    #[test]
    fn statuses_match_the_contract() {
        assert_eq!(GatewayError::MalformedJson("x".into()).class().status, 400);
        assert_eq!(GatewayError::ModelNotFound("x".into()).class().status, 404);
        assert_eq!(
            GatewayError::PayloadTooLarge { limit: 1 }.class().status,
            413
        );
        assert_eq!(
            GatewayError::NoWorker {
                provider: "p".into()
            }
            .class()
            .status,
            503
        );
        assert_eq!(upstream(ErrorKind::Upstream, 500).class().status, 502);
        assert_eq!(upstream(ErrorKind::Timeout, 0).class().status, 504);
        assert_eq!(upstream(ErrorKind::RateLimited, 429).class().status, 429);
        assert_eq!(
            GatewayError::DeadlineExceeded(Duration::from_secs(1))
                .class()
                .status,
            504
        );
    }

    #[test]
    fn upstream_message_names_provider_and_status() {
        assert_eq!(
            upstream(ErrorKind::Upstream, 500).to_string(),
            "provider `p` answered 500: m"
        );
        assert_eq!(
            upstream(ErrorKind::Connection, 0).to_string(),
            "provider `p`: m"
        );
    }
}
