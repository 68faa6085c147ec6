//! The typed classification of every upstream failure.

use std::time::Duration;

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum ProviderError {
    /// 429 or quota exhausted. `retry_after` from the upstream's headers.
    #[error("rate limited by upstream: {message}")]
    RateLimited {
        message: String,
        retry_after: Option<Duration>,
    },
    /// The provider says it is overloaded (503, 529, "overloaded_error").
    #[error("upstream overloaded: {message}")]
    Overloaded {
        message: String,
        status: u16,
        retry_after: Option<Duration>,
    },
    /// 400/422 that is not a context-length problem.
    #[error("upstream rejected the request: {message}")]
    BadRequest {
        message: String,
        status: u16,
        param: Option<String>,
        code: Option<String>,
    },
    /// 401/403.
    #[error("upstream rejected the credentials: {message}")]
    Auth { message: String, status: u16 },
    /// The prompt is longer than the model's context window.
    #[error("prompt exceeds the model's context window: {message}")]
    ContextTooLong { message: String },
    /// 404 for the model.
    #[error("upstream does not know the model: {message}")]
    NotFound { message: String },
    /// No answer (or no first byte, when streaming) within the deadline.
    #[error("upstream did not answer within {0:?}")]
    Timeout(Duration),
    /// DNS, connect, TLS or reset before an answer.
    #[error("could not reach upstream: {0}")]
    Connection(String),
    /// Any other non-success status (5xx and the unexpected).
    #[error("upstream failed with status {status}: {message}")]
    Upstream { status: u16, message: String },
    /// The upstream answered 2xx with a body we could not decode.
    #[error("undecodable upstream answer: {0}")]
    InvalidResponse(String),
}

impl ProviderError {
    /// The wire format has no such operation (embeddings on Anthropic).
    pub fn unsupported(kind: &str, operation: &str, model: &str) -> Self {
        ProviderError::BadRequest {
            message: format!(
                "provider kind `{kind}` does not serve {operation} (upstream model `{model}`)"
            ),
            status: 400,
            param: Some("model".to_owned()),
            code: Some("unsupported_operation".to_owned()),
        }
    }

    /// The request uses something the target cannot express (an audio part
    /// for Anthropic, `n` > 1 where only one choice exists). Raised before
    /// any upstream call; `param` names the request field as OpenAI would.
    pub fn unsupported_param(param: impl Into<String>, message: impl Into<String>) -> Self {
        ProviderError::BadRequest {
            message: message.into(),
            status: 400,
            param: Some(param.into()),
            code: Some("unsupported_parameter".to_owned()),
        }
    }

    /// The same error with its message text passed through `f` (to scrub
    /// secrets an upstream echoed, for instance).
    pub fn map_message(self, f: impl FnOnce(String) -> String) -> Self {
        use ProviderError::*;
        match self {
            RateLimited {
                message,
                retry_after,
            } => RateLimited {
                message: f(message),
                retry_after,
            },
            Overloaded {
                message,
                status,
                retry_after,
            } => Overloaded {
                message: f(message),
                status,
                retry_after,
            },
            BadRequest {
                message,
                status,
                param,
                code,
            } => BadRequest {
                message: f(message),
                status,
                param,
                code,
            },
            Auth { message, status } => Auth {
                message: f(message),
                status,
            },
            ContextTooLong { message } => ContextTooLong {
                message: f(message),
            },
            NotFound { message } => NotFound {
                message: f(message),
            },
            Timeout(d) => Timeout(d),
            Connection(message) => Connection(f(message)),
            Upstream { status, message } => Upstream {
                status,
                message: f(message),
            },
            InvalidResponse(message) => InvalidResponse(f(message)),
        }
    }
}
