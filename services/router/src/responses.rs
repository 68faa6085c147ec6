//! The OpenAI Responses API front end: `POST /v1/responses`, so Codex CLI,
//! the OpenAI Agents SDK and `client.responses.create` use the gateway with
//! any provider behind it.
//!
//! The request is translated to the canonical spec
//! (`switchyard_providers::openai::responses`) and served by the same
//! [`crate::core::Gateway::chat`] / `chat_stream` as `/v1/chat/completions`: same
//! routing, routing controls, fallbacks, cache, budgets, cost and traces.
//! Errors are OpenAI's JSON; a failure after a stream began is an `error`
//! event. Stateless: `previous_response_id` is a 400.

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use futures_util::StreamExt;
use switchyard_providers::openai::responses::{self, Echo, StreamEncoder, Translated};

use crate::access::AccessInfo;
use crate::core::{ChatStream, StreamItem};
use crate::edge::{self, Wording};
use crate::error::GatewayError;
use crate::http::{AppState, error_response};

fn parse_request(body: &[u8]) -> Result<Translated, GatewayError> {
    let req: responses::ResponsesRequest = edge::decode_json(body, Wording::OpenAi)?;
    responses::request_to_spec(req).map_err(|e| GatewayError::InvalidRequest {
        message: e.message,
        param: e.param,
    })
}

/// `POST /v1/responses`.
pub(crate) async fn create(
    State(state): State<AppState>,
    Extension(access): Extension<AccessInfo>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Translated { spec, stream, echo } = match edge::parse_body(
        state.max_body_bytes,
        body,
        &access,
        parse_request,
        error_response,
    ) {
        Ok(v) => v,
        Err(res) => return *res,
    };
    edge::serve_chat(
        &state.gateway,
        &access,
        &headers,
        spec,
        stream,
        |r| responses::result_to_response(r, &echo),
        |events| sse_response(events, echo.clone()),
        error_response,
    )
    .await
}

/// Responses' SSE framing: `event: <type>` and `data: <json>` per event.
fn sse_response(events: ChatStream, echo: Echo) -> Response {
    let mut encoder = StreamEncoder::new(echo);
    let body = events.map(move |item| {
        let events = match item {
            StreamItem::Chunk(chunk) => encoder.chunk(&chunk),
            StreamItem::Done(usage) => encoder.finish(usage.as_ref()),
            StreamItem::Failed(e) => {
                tracing::warn!(error = %e, "stream failed after it started");
                vec![responses::error_event(e.code(), &e.to_string())]
            }
        };
        let bytes: Vec<u8> = events.iter().flat_map(responses::sse_frame).collect();
        Ok::<_, Infallible>(Bytes::from(bytes))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(body))
        .unwrap_or_else(|e| error_response(&GatewayError::Internal(e.to_string())))
}
