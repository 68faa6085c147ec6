//! The Anthropic-compatible front end: `POST /v1/messages`, so the Anthropic
//! SDKs (`Anthropic(base_url="http://host:8080")`) and Claude Code
//! (`ANTHROPIC_BASE_URL`) use the gateway with any provider behind it.
//!
//! The request is translated to the canonical spec and served by the same
//! [`Gateway::chat`] / [`Gateway::chat_stream`] as `/v1/chat/completions`
//! (same routing, fallbacks, metrics and access log); the answer is
//! translated back by `switchyard_providers::anthropic::ingress`. Errors are
//! Anthropic's `{"type": "error", "error": {"type", "message"}}` with the
//! gateway's status; a failure after a stream began is an `error` event.
//!
//! The client's `x-api-key` / `Authorization`, `anthropic-version` and
//! `anthropic-beta` headers and the SDK's `?beta=true` query are accepted
//! and not used: the gateway holds the upstream credentials, and client keys
//! are not checked on any front end yet.

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use futures_util::StreamExt;
use switchyard_proto::bus::v1::ErrorKind;
use switchyard_proto::gateway::v1::ChatSpec;
use switchyard_providers::anthropic::ingress::{self, StreamEncoder};
use switchyard_providers::anthropic::wire::{self, error_type};
use switchyard_routing::Unroutable;

use crate::access::AccessInfo;
use crate::core::{ChatStream, StreamItem};
use crate::edge::{self, Wording};
use crate::error::GatewayError;
use crate::http::AppState;

/// Anthropic's error `type` for a gateway error. Exhaustive on purpose: a
/// new error must choose its Anthropic type here. The HTTP status stays the
/// gateway's ([`GatewayError::class`]); the Anthropic SDKs pick their
/// exception class by status.
pub fn anthropic_error_type(e: &GatewayError) -> &'static str {
    match e {
        GatewayError::MalformedJson(_)
        | GatewayError::InvalidRequest { .. }
        | GatewayError::UnsupportedParameter(_)
        | GatewayError::GuardrailBlocked { .. }
        | GatewayError::GuardrailBlockedAnswer { .. }
        | GatewayError::MethodNotAllowed { .. } => error_type::INVALID_REQUEST,
        GatewayError::PayloadTooLarge { .. } => error_type::REQUEST_TOO_LARGE,
        GatewayError::ModelNotFound(_) | GatewayError::UnknownRoute { .. } => error_type::NOT_FOUND,
        GatewayError::Unroutable(u) => match u {
            Unroutable::TooLong { .. } | Unroutable::Missing { .. } => error_type::INVALID_REQUEST,
            // Every target is cooling down: retry later.
            Unroutable::AllUnavailable { .. } => error_type::OVERLOADED,
        },
        GatewayError::AdminForbidden | GatewayError::ModelForbidden { .. } => {
            error_type::PERMISSION
        }
        GatewayError::Unauthenticated(_) => error_type::AUTHENTICATION,
        GatewayError::IdentityProviderUnavailable(_) => error_type::OVERLOADED,
        GatewayError::RateLimited { .. } => error_type::RATE_LIMIT,
        GatewayError::RequestLimit { .. } => error_type::INVALID_REQUEST,
        GatewayError::ShuttingDown => error_type::OVERLOADED,
        GatewayError::BudgetExceeded(_) => error_type::RATE_LIMIT,
        GatewayError::WorkerLost { .. }
        | GatewayError::NoWorker { .. }
        | GatewayError::DeadlineExceeded(_)
        | GatewayError::Internal(_) => error_type::API,
        GatewayError::Upstream { error, .. } => {
            match ErrorKind::try_from(error.kind).unwrap_or(ErrorKind::Unspecified) {
                ErrorKind::RateLimited => error_type::RATE_LIMIT,
                ErrorKind::Overloaded => error_type::OVERLOADED,
                ErrorKind::BadRequest | ErrorKind::ContextTooLong => error_type::INVALID_REQUEST,
                ErrorKind::NotFound => error_type::NOT_FOUND,
                // The provider refused the gateway's own credentials: the
                // gateway's fault (502), not the client's key.
                ErrorKind::Auth
                | ErrorKind::Timeout
                | ErrorKind::Connection
                | ErrorKind::Upstream
                | ErrorKind::Internal
                | ErrorKind::Unspecified => error_type::API,
            }
        }
    }
}

fn error_body(e: &GatewayError) -> wire::ErrorResponse {
    wire::ErrorResponse::new(anthropic_error_type(e), e.to_string())
}

/// Anthropic's error JSON with the gateway's status (and `retry-after`).
pub fn error_response(e: &GatewayError) -> Response {
    let body = serde_json::to_vec(&error_body(e)).unwrap_or_default();
    edge::error_with_status(e, body)
}

/// Decodes the body into Anthropic's request shape, naming the offending
/// field the way Anthropic does (`messages.0.content`).
fn parse_request(body: &[u8]) -> Result<(ChatSpec, bool), GatewayError> {
    let req: wire::MessagesRequest = edge::decode_json(body, Wording::Anthropic)?;
    ingress::request_to_spec(req).map_err(|e| GatewayError::InvalidRequest {
        message: e.message,
        param: e.param,
    })
}

/// `POST /v1/messages`.
pub(crate) async fn messages(
    State(state): State<AppState>,
    Extension(access): Extension<AccessInfo>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (spec, stream) = match edge::parse_body(
        state.max_body_bytes,
        body,
        &access,
        parse_request,
        error_response,
    ) {
        Ok(v) => v,
        Err(res) => return *res,
    };
    let requested_model = spec.model.clone();
    edge::serve_chat(
        &state.gateway,
        &access,
        &headers,
        spec,
        stream,
        |r| ingress::result_to_response(r, &requested_model),
        |events| sse_response(events, &requested_model),
        error_response,
    )
    .await
}

/// Anthropic's SSE framing: `event:` + `data:` per event, from
/// `message_start` to `message_stop`. A failure after the stream began is
/// an `error` event (the Anthropic SDKs raise it), and the stream ends.
fn sse_response(events: ChatStream, requested_model: &str) -> Response {
    let mut encoder = StreamEncoder::new(requested_model);
    let body = events.map(move |item| {
        let events = match item {
            StreamItem::Chunk(chunk) => encoder.chunk(&chunk),
            StreamItem::Done(usage) => encoder.finish(usage.as_ref()),
            StreamItem::Failed(e) => {
                tracing::warn!(error = %e, "stream failed after it started");
                vec![ingress::error_event(
                    anthropic_error_type(&e),
                    e.to_string(),
                )]
            }
        };
        // One body frame per canonical chunk.
        let bytes: Vec<u8> = events.iter().flat_map(ingress::sse_frame).collect();
        Ok::<_, Infallible>(Bytes::from(bytes))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(body))
        .unwrap_or_else(|e| error_response(&GatewayError::Internal(e.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_proto::bus::v1::UpstreamError;

    fn upstream(kind: ErrorKind) -> GatewayError {
        GatewayError::Upstream {
            provider: "up".into(),
            error: UpstreamError {
                kind: kind as i32,
                message: "boom".into(),
                ..Default::default()
            },
        }
    }

    #[test]
    fn errors_take_anthropic_types_and_keep_the_gateway_status() {
        for (e, kind, status) in [
            (
                GatewayError::InvalidRequest {
                    message: "max_tokens: Field required".into(),
                    param: Some("max_tokens".into()),
                },
                "invalid_request_error",
                400,
            ),
            (
                GatewayError::ModelNotFound("claude-9".into()),
                "not_found_error",
                404,
            ),
            (
                GatewayError::PayloadTooLarge { limit: 10 },
                "request_too_large",
                413,
            ),
            (upstream(ErrorKind::RateLimited), "rate_limit_error", 429),
            (upstream(ErrorKind::Overloaded), "overloaded_error", 503),
            (upstream(ErrorKind::Upstream), "api_error", 502),
            (upstream(ErrorKind::Auth), "api_error", 502),
            (upstream(ErrorKind::NotFound), "not_found_error", 404),
            (
                upstream(ErrorKind::ContextTooLong),
                "invalid_request_error",
                400,
            ),
            (GatewayError::Internal("bug".into()), "api_error", 500),
        ] {
            assert_eq!(anthropic_error_type(&e), kind, "{e:?}");
            let res = error_response(&e);
            assert_eq!(res.status().as_u16(), status, "{e:?}");
            let body = error_body(&e);
            assert_eq!(body.kind, "error");
            assert_eq!(body.error.message, e.to_string());
        }
    }

    #[test]
    fn request_errors_name_the_field() {
        let e = parse_request(br#"{"model": "m", "messages": [{"role": "user", "content": "x"}]}"#)
            .unwrap_err();
        assert_eq!(e.param(), Some("max_tokens"));
        let e =
            parse_request(br#"{"model": "m", "max_tokens": 5, "messages": [{"content": "x"}]}"#)
                .unwrap_err();
        assert_eq!(e.param(), Some("messages[0].role"));
        assert!(matches!(
            parse_request(b"{not json"),
            Err(GatewayError::MalformedJson(_))
        ));
        let (spec, stream) = parse_request(
            br#"{"model": "m", "max_tokens": 5, "stream": true, "messages": [{"role": "user", "content": "x"}]}"#,
        )
        .unwrap();
        assert!(stream);
        assert_eq!(spec.max_tokens, Some(5));
    }
}
