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
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::de::DeserializeOwned;
use switchyard_providers::openai::{ConvertError, embeddings, images};

use crate::access::AccessInfo;
use crate::error::GatewayError;
use crate::http::{
    AppState, context, error_response, failed_response, json_response, served_headers,
};

/// `POST /v1/embeddings`.
pub(crate) async fn embeddings(
    State(state): State<AppState>,
    Extension(access): Extension<AccessInfo>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let parsed = read_body(&state, body)
        .and_then(|b| decode::<embeddings::EmbeddingRequest>(&b))
        .and_then(|req| embeddings::request_to_spec(req).map_err(invalid));
    let spec = match parsed {
        Ok(spec) => spec,
        Err(e) => {
            access.error(&e);
            return error_response(&e);
        }
    };
    access.requested(&spec.model);
    let encoding = spec.encoding_format.clone();
    let mut ctx = context(&headers);
    ctx.operation = "embeddings";
    match state.gateway.embed(spec, &ctx).await {
        Ok((served, result)) => {
            access.served(&served);
            access.usage(result.usage.as_ref());
            let body = embeddings::result_to_response(&result, &encoding);
            let mut res = json_response(StatusCode::OK, &body);
            served_headers(&mut res, &served);
            res
        }
        Err(f) => {
            access.failed(&f);
            failed_response(&f)
        }
    }
}

/// `POST /v1/images/generations`.
pub(crate) async fn images_generations(
    State(state): State<AppState>,
    Extension(access): Extension<AccessInfo>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let parsed = read_body(&state, body)
        .and_then(|b| decode::<images::ImageGenerationRequest>(&b))
        .and_then(|req| images::request_to_spec(req).map_err(invalid));
    let spec = match parsed {
        Ok(spec) => spec,
        Err(e) => {
            access.error(&e);
            return error_response(&e);
        }
    };
    access.requested(&spec.model);
    let mut ctx = context(&headers);
    ctx.operation = "images";
    match state.gateway.images(spec, &ctx).await {
        Ok((served, result)) => {
            access.served(&served);
            access.usage(result.usage.as_ref());
            let body = images::result_to_response(&result);
            let mut res = json_response(StatusCode::OK, &body);
            served_headers(&mut res, &served);
            res
        }
        Err(f) => {
            access.failed(&f);
            failed_response(&f)
        }
    }
}

/// The body, or 413 when it is over `server.max_body_bytes` (the route's
/// `DefaultBodyLimit` cut it off before it was read whole).
fn read_body(state: &AppState, body: Result<Bytes, BytesRejection>) -> Result<Bytes, GatewayError> {
    match body {
        Ok(b) => Ok(b),
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            Err(GatewayError::PayloadTooLarge {
                limit: state.max_body_bytes,
            })
        }
        Err(rejection) => Err(GatewayError::InvalidRequest {
            message: rejection.body_text(),
            param: None,
        }),
    }
}

fn invalid(e: ConvertError) -> GatewayError {
    GatewayError::InvalidRequest {
        message: e.message,
        param: e.param,
    }
}

/// Decodes a JSON body, naming the offending field as OpenAI does
/// (`dimensions`, `n`), like the chat handler.
fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, GatewayError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            return GatewayError::MalformedJson(format!(
                "We could not parse the JSON body of your request: {inner}. The API expects a JSON payload."
            ));
        }
        let msg = inner.to_string();
        // A body that is JSON but not an object has no field to name.
        let param = if path == "." { None } else { Some(path) };
        GatewayError::InvalidRequest {
            message: match &param {
                Some(p) => format!("Invalid value for '{p}': {msg}"),
                None => format!("The request body must be a JSON object: {msg}"),
            },
            param,
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn decode_errors_name_the_field() {
        let e = decode::<embeddings::EmbeddingRequest>(b"{not json").unwrap_err();
        assert!(matches!(e, GatewayError::MalformedJson(_)), "{e:?}");
        let e = decode::<embeddings::EmbeddingRequest>(
            br#"{"model": "m", "input": "a", "dimensions": -1}"#,
        )
        .unwrap_err();
        assert_eq!(e.param(), Some("dimensions"), "{e:?}");
        let e = decode::<images::ImageGenerationRequest>(
            br#"{"model": "m", "prompt": "p", "n": "two"}"#,
        )
        .unwrap_err();
        assert_eq!(e.param(), Some("n"), "{e:?}");
        let e = decode::<images::ImageGenerationRequest>(b"[1]").unwrap_err();
        assert_eq!(e.param(), None, "{e:?}");
        assert_eq!(e.class().status, StatusCode::BAD_REQUEST);
    }
}
