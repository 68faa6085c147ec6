//! The OpenAI-compatible HTTP front end (axum), so
//! `OpenAI(base_url="http://host:8080/v1")` just works. Every error is
//! OpenAI's `{"error": {"message", "type", "param", "code"}}` with the
//! matching status; every response carries `x-request-id`, and answers name
//! the provider and upstream model in `x-switchyard-provider` /
//! `x-switchyard-model`.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Extension, Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::StreamExt;
use switchyard_proto::gateway::v1::ChatSpec;
use switchyard_providers::openai::{convert, wire};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::access::AccessInfo;
use crate::core::{ChatStream, Gateway, StreamItem, UsageChunk};
use crate::edge::{self, Wording};
use crate::error::GatewayError;

pub const REQUEST_ID: &str = "x-request-id";
pub const PROVIDER_HEADER: &str = "x-switchyard-provider";
pub const MODEL_HEADER: &str = "x-switchyard-model";
pub const ATTEMPTS_HEADER: &str = "x-switchyard-attempts";
pub const ATTEMPTED_HEADER: &str = "x-switchyard-attempted";
/// How each finished attempt ended: `provider/model=outcome, ...`.
pub const OUTCOMES_HEADER: &str = "x-switchyard-outcomes";
/// The routing controls the request gave (`models`, `provider`,
/// `x-switchyard-route`), as applied.
pub const ROUTING_HEADER: &str = "x-switchyard-routing";
/// What the gateway changed to fit the request to the target (parameters
/// dropped or clamped under `unsupported_params: warn`), `; `-separated.
pub const WARNINGS_HEADER: &str = "x-switchyard-warnings";

#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) gateway: Arc<Gateway>,
    pub(crate) max_body_bytes: u64,
    /// Stored Responses API responses; `None`: stateless.
    pub(crate) responses: Option<Arc<crate::response_store::Responses>>,
}

/// The HTTP application with its middleware, outermost first:
///
/// 1. `SetRequestId`: keeps the client's `x-request-id` or mints a UUID, so
///    every later layer and the handler see one id.
/// 2. `PropagateRequestId`: copies it onto every response, errors included.
/// 3. `Trace`: the request's server span ([`request_span`]), current
///    while the handler runs and while the body is sent.
/// 4. Access log: one line per request when its answer is over
///    ([`crate::access`]).
/// 5. `CatchPanic`: a panicking handler becomes a 500 in OpenAI's error
///    shape instead of a dropped connection.
/// 6. `DefaultBodyLimit` (per route): a body over `server.max_body_bytes`
///    is refused with 413 before it is read whole (Content-Length is
///    checked first, streamed bodies are cut at the limit).
pub fn app(
    gateway: Arc<Gateway>,
    max_body_bytes: u64,
    admin_token: Option<String>,
    responses: Option<Arc<crate::response_store::Responses>>,
) -> Router {
    let admin = crate::admin::router(gateway.clone(), admin_token);
    let state = AppState {
        gateway,
        max_body_bytes,
        responses,
    };
    let limit = usize::try_from(max_body_bytes).unwrap_or(usize::MAX);
    let middleware = ServiceBuilder::new()
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .layer(axum::middleware::from_fn(crate::access::http))
        .layer(CatchPanicLayer::custom(|_| {
            error_response(&GatewayError::Internal(
                "the gateway hit a bug handling this request".into(),
            ))
        }));
    let v1 = Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/messages", post(crate::messages::messages))
        .route("/v1/responses", post(crate::responses::create))
        .route(
            "/v1/responses/{id}",
            get(crate::responses::retrieve).delete(crate::responses::delete),
        )
        .route("/v1/embeddings", post(crate::media::embeddings))
        .route(
            "/v1/images/generations",
            post(crate::media::images_generations),
        )
        .route("/v1/models", get(list_models))
        .route("/v1/models/{*id}", get(retrieve_model))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authenticate,
        ));
    Router::new()
        .merge(v1)
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/readyz", get(readyz))
        .nest("/admin/v1", admin)
        .fallback(unknown_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware)
        .with_state(state)
}

/// The server span of one HTTP request. It continues the client's
/// `traceparent` when one came, and its `request_id` and `trace_id` fields
/// put both on every log line inside the request. Probes and scrapes get
/// none: they would be most of the traces and say nothing.
fn request_span(req: &axum::http::Request<Body>) -> tracing::Span {
    let path = req.uri().path();
    if crate::access::quiet(path) {
        return tracing::Span::none();
    }
    let id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let method = req.method();
    // The route, not the raw path, names the span: an unknown path per
    // request would make span names unbounded.
    let route = match path {
        "/v1/chat/completions"
        | "/v1/messages"
        | "/v1/responses"
        | "/v1/embeddings"
        | "/v1/images/generations"
        | "/v1/models" => path,
        p if p.starts_with("/v1/models/") => "/v1/models/{id}",
        p if p.starts_with("/v1/responses/") => "/v1/responses/{id}",
        p if p.starts_with("/admin/v1/") => "/admin/v1",
        _ => "",
    };
    let name = if route.is_empty() {
        method.to_string()
    } else {
        format!("{method} {route}")
    };
    let span = tracing::info_span!(
        "http",
        otel.name = %name,
        otel.kind = "server",
        request_id = %id,
        trace_id = tracing::field::Empty,
    );
    switchyard_telemetry::continue_trace(&span, &edge::trace_headers(req.headers()));
    switchyard_telemetry::set_attribute(&span, "http.request.method", method.to_string());
    switchyard_telemetry::set_attribute(&span, "url.path", path.to_owned());
    if !route.is_empty() {
        switchyard_telemetry::set_attribute(&span, "http.route", route.to_owned());
    }
    span
}

/// OpenAI's error JSON with the mapped status.
pub fn error_response(e: &GatewayError) -> Response {
    let class = e.class();
    let body = serde_json::json!({
        "error": {
            "message": e.to_string(),
            "type": class.openai_type,
            "param": e.param(),
            "code": e.code(),
        }
    });
    edge::error_with_status(e, body.to_string().into_bytes())
}

fn json_ok<T: serde::Serialize>(body: &T) -> Response {
    edge::json_response(StatusCode::OK, body, error_response)
}

/// Decodes the body into OpenAI's request shape, naming the offending field.
fn parse_request(body: &[u8]) -> Result<(ChatSpec, bool), GatewayError> {
    let req: wire::ChatCompletionRequest = edge::decode_json(body, Wording::OpenAi)?;
    convert::request_to_spec(req).map_err(|e| GatewayError::InvalidRequest {
        message: e.message,
        param: e.param,
    })
}

async fn chat_completions(
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
    let include_usage = spec.include_usage;
    edge::serve_chat(
        &state.gateway,
        &access,
        &headers,
        spec,
        stream,
        convert::result_to_response,
        |events| sse_response(events, include_usage),
        error_response,
    )
    .await
}

fn sse_event<T: serde::Serialize>(value: &T) -> Bytes {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"data: ");
    // Serializing our own wire structs cannot fail; an empty object keeps the
    // stream well-formed if it ever did.
    if serde_json::to_writer(&mut out, value).is_err() {
        out.extend_from_slice(b"{}");
    }
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// OpenAI's SSE framing: one `data:` line per chunk, the usage chunk (no
/// choices) when the client asked for it, then `data: [DONE]`. A failure
/// after the stream began is sent as an `error` event, which the OpenAI SDKs
/// raise as an APIError, and no `[DONE]` follows.
fn sse_response(events: ChatStream, include_usage: bool) -> Response {
    let mut usage_chunk = UsageChunk::default();
    // One body frame per event: no per-chunk collection on the hot path.
    let body = events.map(move |item| {
        let bytes = match item {
            StreamItem::Chunk(chunk) => {
                if include_usage {
                    usage_chunk.observe(&chunk);
                }
                sse_event(&convert::chunk_to_wire(&chunk))
            }
            StreamItem::Done(usage) => {
                const DONE: &[u8] = b"data: [DONE]\n\n";
                if include_usage {
                    let last = sse_event(&convert::chunk_to_wire(&usage_chunk.finish(usage)));
                    let mut both = Vec::with_capacity(last.len() + DONE.len());
                    both.extend_from_slice(&last);
                    both.extend_from_slice(DONE);
                    Bytes::from(both)
                } else {
                    Bytes::from_static(DONE)
                }
            }
            StreamItem::Failed(e) => {
                tracing::warn!(error = %e, "stream failed after it started");
                let class = e.class();
                let body = serde_json::json!({
                    "error": {"message": e.to_string(), "type": class.openai_type, "param": e.param(), "code": e.code()}
                });
                sse_event(&body)
            }
        };
        Ok::<_, Infallible>(bytes)
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(body))
        .unwrap_or_else(|e| error_response(&GatewayError::Internal(e.to_string())))
}

fn model_json(m: &switchyard_routing::ListedModel) -> serde_json::Value {
    serde_json::json!({"id": m.id, "object": "model", "created": 0, "owned_by": m.owned_by})
}

/// The API routes' credential check (`/v1/...`): the caller goes into the
/// request's [`AccessInfo`] for the handler; a refusal is rendered in the
/// front end's own error shape.
async fn authenticate(
    State(state): State<AppState>,
    Extension(access): Extension<AccessInfo>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let headers = req.headers();
    let credential = crate::auth::credential(|n| headers.get(n)?.to_str().ok());
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|axum::extract::ConnectInfo(peer)| peer.ip());
    let loopback = crate::auth::trusted_loopback(peer.is_some_and(|ip| ip.is_loopback()), |n| {
        headers.get(n)?.to_str().ok()
    });
    match state
        .gateway
        .auth()
        .authenticate(credential, loopback)
        .await
    {
        Ok(caller) => {
            access.set_caller(caller, peer);
            next.run(req).await
        }
        Err(e) => {
            access.error(&e);
            let path = req.uri().path();
            let request_id = headers
                .get(REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            state
                .gateway
                .spend()
                .refused(request_id, operation_of(path), peer, &e);
            if path == "/v1/messages" {
                crate::messages::error_response(&e)
            } else {
                error_response(&e)
            }
        }
    }
}

/// The operation a usage record names for a request to `path` (as the
/// handlers do), for requests refused before a handler ran.
fn operation_of(path: &str) -> &'static str {
    match path {
        "/v1/chat/completions" | "/v1/messages" | "/v1/responses" => "chat",
        "/v1/embeddings" => "embeddings",
        "/v1/images/generations" => "images",
        p if p.starts_with("/v1/models") => "models",
        p if p.starts_with("/v1/responses/") => "responses",
        _ => "other",
    }
}

async fn list_models(
    State(state): State<AppState>,
    Extension(access): Extension<AccessInfo>,
) -> Response {
    let data: Vec<_> = state
        .gateway
        .list_models_for(access.caller().0.as_deref())
        .iter()
        .map(model_json)
        .collect();
    json_ok(&serde_json::json!({"object": "list", "data": data}))
}

async fn retrieve_model(
    State(state): State<AppState>,
    Extension(access): Extension<AccessInfo>,
    Path(id): Path<String>,
) -> Response {
    let models = state.gateway.list_models_for(access.caller().0.as_deref());
    match models.iter().find(|m| m.id == id) {
        Some(m) => json_ok(&model_json(m)),
        None => error_response(&GatewayError::ModelNotFound(id)),
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    match state.gateway.metrics().encode() {
        Ok(text) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => error_response(&GatewayError::Internal(format!(
            "cannot encode metrics: {e}"
        ))),
    }
}

async fn healthz() -> Response {
    json_ok(&serde_json::json!({"status": "ok"}))
}

async fn readyz(State(state): State<AppState>) -> Response {
    if state.gateway.is_ready() {
        json_ok(&serde_json::json!({"status": "ready"}))
    } else {
        error_response(&GatewayError::ShuttingDown)
    }
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    error_response(&GatewayError::MethodNotAllowed {
        method: method.to_string(),
        path: uri.path().to_owned(),
    })
}

async fn unknown_route(method: Method, uri: Uri) -> Response {
    error_response(&GatewayError::UnknownRoute {
        method: method.to_string(),
        path: uri.path().to_owned(),
    })
}
