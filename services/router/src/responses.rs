//! The OpenAI Responses API front end: `POST /v1/responses`, so Codex CLI,
//! the OpenAI Agents SDK and `client.responses.create` use the gateway with
//! any provider behind it, and `GET` / `DELETE /v1/responses/{id}` for
//! stored responses.
//!
//! The request is translated to the canonical spec
//! (`switchyard_providers::openai::responses`) and served by the same
//! [`crate::core::Gateway::chat`] / `chat_stream` as `/v1/chat/completions`: same
//! routing, routing controls, fallbacks, cache, budgets, cost and traces.
//! Errors are OpenAI's JSON; a failure after a stream began is an `error`
//! event.
//!
//! The spec also carries the request as the client sent it
//! (`responses_request`): a target configured `responses: native` posts
//! that to its upstream's own Responses endpoint, and its answer comes back
//! with the upstream's `response` object (stream: each upstream event),
//! which is sent as it is ([`native_answer`], [`NativeRelay`]). What only
//! such a target can serve (built-in tools, ...) is left out of the
//! translation and named in `native_only`, which translated targets refuse
//! so a route moves on (`switchyard_providers::openai::native`).
//!
//! Stateless unless `responses.store` is set ([`crate::response_store`]).
//! With a store, a request with `store` not `false` is kept under a fresh
//! id (unique across routers) once answered (a stream: at its final
//! `response.completed` / `response.incomplete` event), and
//! `previous_response_id` puts the stored conversation before the new
//! input. Without one, `store` is echoed `false` (nothing is kept, whatever
//! the client asked) and `previous_response_id` is a 400 saying so.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde_json::{Map, Value, json};
use switchyard_proto::gateway::v1::{ChatChunk, ChatResult, Usage};
use switchyard_proto::json::{map_from_struct_ref, struct_from_map};
use switchyard_providers::openai::native;
use switchyard_providers::openai::responses::{
    self, Echo, ResponsesError, ResponsesRequest, StreamEncoder, StreamEvent, Translated,
};

use crate::access::AccessInfo;
use crate::cache::CacheRequest;
use crate::core::{ChatStream, StreamItem};
use crate::edge::{self, Wording};
use crate::error::GatewayError;
use crate::http::{AppState, error_response};
use crate::response_store::{self, Responses, StoreError, StoredResponse};

fn invalid(e: ResponsesError) -> GatewayError {
    GatewayError::InvalidRequest {
        message: e.message,
        param: e.param,
    }
}

/// Whose responses these are: the credential's hash, as the cache's
/// tenant (`anonymous` without one).
fn tenant(headers: &HeaderMap) -> String {
    CacheRequest::from_headers(|name| headers.get(name)?.to_str().ok()).tenant
}

/// OpenAI's 404 for a response id it does not have (or that is another
/// caller's: to this one it does not exist).
fn not_found(message: String, param: Option<&str>) -> Response {
    let body = json!({
        "error": {"message": message, "type": "invalid_request_error", "param": param, "code": null}
    });
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn store_failed(access: &AccessInfo, e: &StoreError) -> Response {
    tracing::warn!(error = %e, "response store failed");
    let e = GatewayError::Internal(e.to_string());
    access.error(&e);
    error_response(&e)
}

/// The 400 of a gateway that keeps no responses, for `GET` / `DELETE`.
fn stateless(id: &str) -> GatewayError {
    GatewayError::InvalidRequest {
        message: format!(
            "this gateway keeps no responses (stateless; `responses.store` is off in its \
             config), so there is no response '{id}'"
        ),
        param: None,
    }
}

/// What keeping one answered response takes: where, under which id, and
/// the conversation it ends.
struct Saver {
    store: Arc<Responses>,
    tenant: String,
    id: String,
    model: String,
    previous_response_id: Option<String>,
    history: Vec<Value>,
    input: Vec<Value>,
}

impl Saver {
    /// The record of `response` (the object about to be sent, given this
    /// saver's id), or `None` when it is too large to keep, in which case
    /// the client is told `store: false`.
    fn prepare(&self, response: &mut Value) -> Option<Bytes> {
        response["id"] = json!(self.id);
        let record = StoredResponse {
            id: self.id.clone(),
            created_at: response
                .get("created_at")
                .and_then(Value::as_i64)
                .unwrap_or_default(),
            model: self.model.clone(),
            previous_response_id: self.previous_response_id.clone(),
            history: self.history.clone(),
            input: self.input.clone(),
            response: response.clone(),
        };
        match self.store.encode(&record) {
            Ok(bytes) => Some(bytes),
            Err(e) => {
                tracing::warn!(id = %self.id, error = %e, "response not stored");
                response["store"] = json!(false);
                None
            }
        }
    }

    /// Keeps the record; a failure is logged (the client has its answer).
    async fn save(&self, record: Bytes) {
        if let Err(e) = self.store.put(&self.tenant, &self.id, record).await {
            tracing::warn!(id = %self.id, error = %e, "response not stored");
        }
    }
}

/// `POST /v1/responses`.
pub(crate) async fn create(
    State(state): State<AppState>,
    Extension(access): Extension<AccessInfo>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    // The request as typed for the translation, and as the client sent
    // it for `responses: native` targets.
    let (mut req, raw): (ResponsesRequest, Option<Map<String, Value>>) = match edge::parse_body(
        state.max_body_bytes,
        body,
        &access,
        |b| {
            Ok((
                edge::decode_json(b, Wording::OpenAi)?,
                serde_json::from_slice(b).ok(),
            ))
        },
        error_response,
    ) {
        Ok(v) => v,
        Err(res) => return *res,
    };
    let store = state.responses.clone();
    let tenant = tenant(&headers);
    // Without a store `request_to_spec` refuses `previous_response_id`.
    let earlier = match (&store, &req.previous_response_id) {
        (Some(store), Some(id)) => match store.get(&tenant, id).await {
            Ok(Some(record)) => Some(record),
            Ok(None) => {
                access.requested(&req.model);
                access.error(&GatewayError::InvalidRequest {
                    message: String::new(),
                    param: None,
                });
                return not_found(
                    format!("Previous response with id '{id}' not found."),
                    Some("previous_response_id"),
                );
            }
            Err(e) => return store_failed(&access, &e),
        },
        _ => None,
    };
    let input = responses::input_items(req.input.as_ref());
    // OpenAI's default is to store; a client opts out with `store: false`.
    let keep = store.is_some() && req.store != Some(false);
    let history = earlier
        .as_ref()
        .map(StoredResponse::conversation)
        .unwrap_or_default();
    // What native targets get: the request as sent; continuing a stored
    // response, the stored conversation before its input, as stored (our
    // id means nothing upstream).
    let native_request = raw.map(|mut raw| {
        raw.remove("stream");
        if earlier.is_some() {
            raw.remove("previous_response_id");
            let items = history.iter().chain(&input).cloned().collect();
            raw.insert("input".into(), Value::Array(items));
        }
        struct_from_map(raw)
    });
    // What only a native target can serve is left out of the translation
    // and named, so translated targets refuse it and the route moves on.
    let mut translatable = history.clone();
    let native_only = native::split_native_only(&mut req, &mut translatable, store.is_none());
    let translated = match &earlier {
        None => responses::request_to_spec(req),
        Some(_) => responses::continue_from(req, &translatable),
    };
    let Translated {
        mut spec,
        stream,
        mut echo,
    } = match translated {
        Ok(t) => t,
        Err(e) => {
            let e = invalid(e);
            access.error(&e);
            return error_response(&e);
        }
    };
    echo.store = keep;
    spec.responses_request = native_request;
    spec.native_only = native_only;
    let saver = match store {
        Some(store) if keep => Some(Arc::new(Saver {
            store,
            tenant,
            id: response_store::new_id(),
            model: echo.model.clone(),
            previous_response_id: echo.previous_response_id.clone(),
            history,
            input,
        })),
        _ => None,
    };
    let mut record = None;
    let res = edge::serve_chat(
        &state.gateway,
        &access,
        &headers,
        spec,
        stream,
        |r| {
            let mut v = match native_answer(r) {
                Some(v) => v,
                None => responses::result_to_response(r, &echo),
            };
            if let Some(s) = &saver {
                record = s.prepare(&mut v);
            }
            v
        },
        |events| sse_response(events, echo.clone(), saver.clone()),
        error_response,
    )
    .await;
    // Kept before the answer leaves: the client may continue it at once
    // (the local store only queues; the bucket acknowledges the write).
    if let (Some(s), Some(record)) = (&saver, record) {
        s.save(record).await;
    }
    res
}

/// The response store, or the 400 saying the gateway keeps none (boxed: a
/// response is large next to the `Ok`).
fn kept<'s>(
    state: &'s AppState,
    access: &AccessInfo,
    id: &str,
) -> Result<&'s crate::response_store::Responses, Box<Response>> {
    state.responses.as_deref().ok_or_else(|| {
        let e = stateless(id);
        access.error(&e);
        Box::new(error_response(&e))
    })
}

/// `GET /v1/responses/{id}`: the stored `response` object.
pub(crate) async fn retrieve(
    State(state): State<AppState>,
    Extension(access): Extension<AccessInfo>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let store = match kept(&state, &access, &id) {
        Ok(store) => store,
        Err(res) => return *res,
    };
    match store.get(&tenant(&headers), &id).await {
        Ok(Some(record)) => edge::json_response(StatusCode::OK, &record.response, error_response),
        Ok(None) => not_found(format!("Response with id '{id}' not found."), None),
        Err(e) => store_failed(&access, &e),
    }
}

/// `DELETE /v1/responses/{id}`: OpenAI's deletion object.
pub(crate) async fn delete(
    State(state): State<AppState>,
    Extension(access): Extension<AccessInfo>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let store = match kept(&state, &access, &id) {
        Ok(store) => store,
        Err(res) => return *res,
    };
    match store.delete(&tenant(&headers), &id).await {
        Ok(true) => edge::json_response(
            StatusCode::OK,
            &json!({"id": id, "object": "response", "deleted": true}),
            error_response,
        ),
        Ok(false) => not_found(format!("Response with id '{id}' not found."), None),
        Err(e) => store_failed(&access, &e),
    }
}

/// `usage.cost` (USD) and `usage.cost_estimated` on a native `response`
/// object, as a translated answer's usage has them.
fn add_cost(response: &mut Value, usage: Option<&Usage>) {
    let Some(u) = usage.filter(|u| u.cost_known) else {
        return;
    };
    if let Some(Value::Object(out)) = response.get_mut("usage") {
        out.insert("cost".into(), json!(u.cost_picodollars as f64 / 1e12));
        if u.cost_estimated {
            out.insert("cost_estimated".into(), json!(true));
        }
    }
}

/// A native target's `response` object, as the upstream answered it (its
/// `id` and `model` too), with the cost added to its usage.
fn native_answer(r: &ChatResult) -> Option<Value> {
    let mut v = Value::Object(map_from_struct_ref(r.native_response.as_ref()?));
    add_cost(&mut v, r.usage.as_ref());
    Some(v)
}

/// A native target's stream events, sent as they came. The final
/// `response.completed` / `response.incomplete` waits for the stream's
/// usage (which the router has costed) so its `usage` says the cost;
/// stored, every event's `response.id` is the stored response's.
struct NativeRelay {
    id: Option<String>,
    last: Option<StreamEvent>,
}

impl NativeRelay {
    /// `None`: not a native chunk.
    fn event(&mut self, chunk: &ChatChunk) -> Option<Vec<StreamEvent>> {
        let mut ev = StreamEvent(Value::Object(map_from_struct_ref(
            chunk.native_event.as_ref()?,
        )));
        if let (Some(id), Some(Value::Object(r))) = (&self.id, ev.0.get_mut("response")) {
            r.insert("id".into(), json!(id));
        }
        if matches!(ev.kind(), "response.completed" | "response.incomplete") {
            self.last = Some(ev);
            return Some(Vec::new());
        }
        Some(vec![ev])
    }

    fn finish(&mut self, usage: Option<&Usage>) -> Option<Vec<StreamEvent>> {
        let mut ev = self.last.take()?;
        if let Some(r) = ev.0.get_mut("response") {
            add_cost(r, usage);
        }
        Some(vec![ev])
    }
}

/// Responses' SSE framing: `event: <type>` and `data: <json>` per event.
/// With a saver, the final `response` is kept before it is sent.
fn sse_response(events: ChatStream, echo: Echo, saver: Option<Arc<Saver>>) -> Response {
    let mut encoder = match &saver {
        Some(s) => StreamEncoder::with_id(echo, s.id.clone()),
        None => StreamEncoder::new(echo),
    };
    let mut relay = NativeRelay {
        id: saver.as_ref().map(|s| s.id.clone()),
        last: None,
    };
    let body = events.then(move |item| {
        let mut events = match item {
            StreamItem::Chunk(chunk) => {
                relay.event(&chunk).unwrap_or_else(|| encoder.chunk(&chunk))
            }
            StreamItem::Done(usage) => relay
                .finish(usage.as_ref())
                .unwrap_or_else(|| encoder.finish(usage.as_ref())),
            StreamItem::Failed(e) => {
                tracing::warn!(error = %e, "stream failed after it started");
                vec![responses::error_event(e.code(), &e.to_string())]
            }
        };
        let save = saver.as_ref().and_then(|s| {
            let last = events
                .last_mut()
                .filter(|e| matches!(e.kind(), "response.completed" | "response.incomplete"))?;
            let record = s.prepare(&mut last.0["response"])?;
            Some((s.clone(), record))
        });
        let bytes: Vec<u8> = events.iter().flat_map(responses::sse_frame).collect();
        async move {
            if let Some((s, record)) = save {
                s.save(record).await;
            }
            Ok::<_, Infallible>(Bytes::from(bytes))
        }
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(body))
        .unwrap_or_else(|e| error_response(&GatewayError::Internal(e.to_string())))
}
