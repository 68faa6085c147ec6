//! The OpenAI-compatible HTTP handlers beyond chat: `POST /v1/embeddings`
//! and `POST /v1/images/generations`. They share everything else with chat
//! ([`crate::http`]): request id, body-size limit, error JSON, and the
//! `x-switchyard-provider` / `-model` / `-attempts` headers; the gateway
//! walks the model's routes for them exactly as for chat.
//!
//! `encoding_format: base64` is served here, at the edge: the gateway's
//! result always holds floats (workers ask upstreams for floats), and the
//! answer encodes them as base64 of little-endian `f32`s when the client
//! asked. So every provider kind that embeds supports it, and the OpenAI
//! SDKs, which ask for base64 by default, work against all of them.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, State};
use axum::http::HeaderMap;
use axum::response::Response;
use switchyard_providers::openai::{ConvertError, embeddings, images};

use crate::access::AccessInfo;
use crate::edge::{self, Wording};
use crate::error::GatewayError;
use crate::http::{AppState, error_response};

/// `POST /v1/embeddings`.
pub(crate) async fn embeddings(
    State(state): State<AppState>,
    Extension(access): Extension<AccessInfo>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let parse = |b: &[u8]| {
        let req = edge::decode_json::<embeddings::EmbeddingRequest>(b, Wording::OpenAi)?;
        embeddings::request_to_spec(req).map_err(invalid)
    };
    let spec = match edge::parse_body(state.max_body_bytes, body, &access, parse, error_response) {
        Ok(spec) => spec,
        Err(res) => return *res,
    };
    access.requested(&spec.model);
    let encoding = spec.encoding_format.clone();
    let ctx = edge::context(&headers, &access, "embeddings");
    let out = state.gateway.embed(spec, &ctx).await;
    edge::unary_answer(
        &access,
        out,
        |r| r.usage.as_ref(),
        |r| embeddings::result_to_response(r, &encoding),
        error_response,
    )
}

/// `POST /v1/images/generations`.
pub(crate) async fn images_generations(
    State(state): State<AppState>,
    Extension(access): Extension<AccessInfo>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let parse = |b: &[u8]| {
        let req = edge::decode_json::<images::ImageGenerationRequest>(b, Wording::OpenAi)?;
        images::request_to_spec(req).map_err(invalid)
    };
    let spec = match edge::parse_body(state.max_body_bytes, body, &access, parse, error_response) {
        Ok(spec) => spec,
        Err(res) => return *res,
    };
    access.requested(&spec.model);
    let ctx = edge::context(&headers, &access, "images");
    let out = state.gateway.images(spec, &ctx).await;
    edge::unary_answer(
        &access,
        out,
        |r| r.usage.as_ref(),
        images::result_to_response,
        error_response,
    )
}

fn invalid(e: ConvertError) -> GatewayError {
    GatewayError::InvalidRequest {
        message: e.message,
        param: e.param,
    }
}
