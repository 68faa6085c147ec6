//! What every HTTP front end (OpenAI chat, Anthropic messages, embeddings,
//! images) does the same way: reading the body under the size limit,
//! decoding JSON with the offending field named, the request context, and
//! the `x-switchyard-*` / `retry-after` headers on answers and errors. Only
//! the error body differs per front end: each passes its renderer.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use switchyard_proto::gateway::v1::{ChatResult, ChatSpec, Usage};

use crate::access::AccessInfo;
use crate::attempts::AttemptLog;
use crate::cache::{CACHE_HEADER, CacheRequest, SIMILARITY_HEADER};
use crate::core::{ChatStream, Failed, Gateway, RequestContext, ServedBy};
use crate::error::GatewayError;
use crate::http::{
    ATTEMPTED_HEADER, ATTEMPTS_HEADER, MODEL_HEADER, OUTCOMES_HEADER, PROVIDER_HEADER, REQUEST_ID,
    ROUTING_HEADER, WARNINGS_HEADER,
};
use crate::spend::{BUDGET_HEADER, COST_HEADER, Identity};
use switchyard_routing::ROUTE_HEADER;

/// Renders a gateway error in a front end's own error shape.
pub(crate) type RenderError = fn(&GatewayError) -> Response;

/// Trace context headers forwarded to workers.
const TRACE_HEADERS: [&str; 2] = ["traceparent", "tracestate"];

/// The body, or 413 when it is over `server.max_body_bytes` (the route's
/// `DefaultBodyLimit` cut it off before it was read whole).
pub(crate) fn read_body(
    limit: u64,
    body: Result<Bytes, BytesRejection>,
) -> Result<Bytes, GatewayError> {
    match body {
        Ok(b) => Ok(b),
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            Err(GatewayError::PayloadTooLarge { limit })
        }
        Err(rejection) => Err(GatewayError::InvalidRequest {
            message: rejection.body_text(),
            param: None,
        }),
    }
}

/// Whose wording a decoding error takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wording {
    OpenAi,
    Anthropic,
}

/// Decodes a JSON body, naming the offending field in `param`: the path
/// serde reached (`messages[2].role`), with a missing field lifted out of
/// serde's message (it reports those at the parent).
pub(crate) fn decode_json<T: DeserializeOwned>(
    body: &[u8],
    wording: Wording,
) -> Result<T, GatewayError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            return GatewayError::MalformedJson(match wording {
                Wording::OpenAi => format!(
                    "We could not parse the JSON body of your request: {inner}. The API expects a JSON payload."
                ),
                Wording::Anthropic => format!("The request body is not valid JSON: {inner}"),
            });
        }
        let msg = inner.to_string();
        let param = match missing_field(&msg) {
            Some(f) if path == "." => Some(f.to_owned()),
            Some(f) => Some(format!("{path}.{f}")),
            // A body that is JSON but not an object has no field to name.
            None if path == "." => None,
            None => Some(path),
        };
        let message = match (&param, wording) {
            (None, _) => format!("The request body must be a JSON object: {msg}"),
            (Some(p), Wording::OpenAi) => format!("Invalid value for '{p}': {msg}"),
            (Some(p), Wording::Anthropic) => format!("{p}: {msg}"),
        };
        GatewayError::InvalidRequest { message, param }
    })
}

fn missing_field(msg: &str) -> Option<&str> {
    let rest = msg.strip_prefix("missing field `")?;
    rest.split('`').next()
}

/// The request's id (set by the middleware), its caller (set by the auth
/// middleware) and the trace headers the worker continues; `operation`
/// labels metrics and spans.
pub(crate) fn context(
    headers: &HeaderMap,
    access: &AccessInfo,
    operation: &'static str,
) -> RequestContext {
    let request_id = headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let get = |name: &str| headers.get(name)?.to_str().ok();
    let cache = CacheRequest::from_headers(get);
    let ctx = RequestContext {
        request_id,
        operation,
        headers: trace_headers(headers),
        who: Identity::from_headers(get, &cache.tenant),
        route: get(ROUTE_HEADER).map(str::to_owned),
        controls: None,
        cache,
        caller: None,
    };
    let (caller, peer) = access.caller();
    let mut ctx = ctx.with_caller(caller);
    ctx.who.client = peer;
    ctx
}

/// The W3C trace context headers of a request, as pairs.
pub(crate) fn trace_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    TRACE_HEADERS
        .iter()
        .filter_map(|name| {
            let v = headers.get(*name)?.to_str().ok()?;
            Some(((*name).to_owned(), v.to_owned()))
        })
        .collect()
}

/// Who served the answer, what was tried, and what was changed to fit.
pub(crate) fn served_headers(res: &mut Response, served: &ServedBy) {
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&served.provider) {
        h.insert(PROVIDER_HEADER, v);
    }
    if let Ok(v) = HeaderValue::from_str(&served.upstream_model) {
        h.insert(MODEL_HEADER, v);
    }
    if !served.warnings.is_empty()
        && let Ok(v) = HeaderValue::from_str(&served.warnings.join("; "))
    {
        h.insert(WARNINGS_HEADER, v);
    }
    if let Some(status) = served.cache.as_str() {
        h.insert(CACHE_HEADER, HeaderValue::from_static(status));
    }
    if let Some(v) = served.cache.similarity()
        && let Ok(v) = HeaderValue::from_str(&v)
    {
        h.insert(SIMILARITY_HEADER, v);
    }
    if let Some(cost) = served.cost
        && let Ok(v) = HeaderValue::from_str(&cost.to_string())
    {
        h.insert(COST_HEADER, v);
    }
    if let Some(d) = &served.downgrade
        && let Ok(v) = HeaderValue::from_str(&d.header())
    {
        h.insert(BUDGET_HEADER, v);
    }
    if let Some(rate) = &served.rate {
        for (name, value) in rate.pairs() {
            if let Ok(v) = HeaderValue::from_str(&value) {
                h.insert(name, v);
            }
        }
    }
    attempt_headers(res, &served.attempts);
}

/// How many attempts a request took and where they went, so a fallback is
/// visible to the client without a trace.
fn attempt_headers(res: &mut Response, log: &AttemptLog) {
    if log.targets.is_empty() {
        return;
    }
    let h = res.headers_mut();
    h.insert(ATTEMPTS_HEADER, HeaderValue::from(log.targets.len()));
    if let Ok(v) = HeaderValue::from_str(&log.describe()) {
        h.insert(ATTEMPTED_HEADER, v);
    }
    if let Ok(v) = HeaderValue::from_str(&log.describe_outcomes())
        && !log.outcomes.is_empty()
    {
        h.insert(OUTCOMES_HEADER, v);
    }
    if let Some(Ok(v)) = log.routing.as_deref().map(HeaderValue::from_str) {
        h.insert(ROUTING_HEADER, v);
    }
}

/// An error body in `status`, with `retry-after` when the error knows one.
pub(crate) fn error_with_status(e: &GatewayError, body: Vec<u8>) -> Response {
    let mut res = (
        e.class().status,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response();
    if let Some(after) = e.retry_after() {
        // Whole seconds, rounded up: HTTP's Retry-After has no fractions.
        let secs = after.as_millis().div_ceil(1000).max(1);
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            res.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    for (name, value) in e.extra_headers() {
        if let Ok(v) = HeaderValue::from_str(value) {
            res.headers_mut().insert(*name, v);
        }
    }
    res
}

/// A request that failed after routing: the error, and the attempts made.
pub(crate) fn failed_response(f: &Failed, render: RenderError) -> Response {
    let mut res = render(&f.error);
    attempt_headers(&mut res, &f.attempts);
    res
}

/// `body` as JSON, or the encoding failure rendered as an error.
pub(crate) fn json_response<T: serde::Serialize>(
    status: StatusCode,
    body: &T,
    render: RenderError,
) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Err(e) => render(&GatewayError::Internal(format!(
            "could not encode the answer: {e}"
        ))),
    }
}

/// The response to a call answered in one piece: the body `to_wire` makes
/// of the result with the served-by headers, or the failure; either way
/// noted in the access log.
pub(crate) fn unary_answer<R, W: serde::Serialize>(
    access: &AccessInfo,
    out: Result<(ServedBy, R), Failed>,
    usage: impl FnOnce(&R) -> Option<&Usage>,
    to_wire: impl FnOnce(&R) -> W,
    render: RenderError,
) -> Response {
    match out {
        Ok((served, result)) => {
            access.served(&served);
            access.usage(usage(&result));
            let mut res = json_response(StatusCode::OK, &to_wire(&result), render);
            served_headers(&mut res, &served);
            res
        }
        Err(f) => {
            access.failed(&f);
            failed_response(&f, render)
        }
    }
}

/// A request body read (within `limit`) and decoded by the front end's
/// `parse`; a failure is noted in the access log and rendered in the front
/// end's error shape, ready to return (boxed: a response is large).
pub(crate) fn parse_body<T>(
    limit: u64,
    body: Result<Bytes, BytesRejection>,
    access: &AccessInfo,
    parse: impl FnOnce(&[u8]) -> Result<T, GatewayError>,
    render: RenderError,
) -> Result<T, Box<Response>> {
    read_body(limit, body)
        .and_then(|b| {
            // The caller's key may allow less than the server does.
            match access.caller().0.and_then(|c| c.limits.max_body_bytes) {
                Some(key_limit) if u64::try_from(b.len()).unwrap_or(u64::MAX) > key_limit => {
                    Err(GatewayError::PayloadTooLarge { limit: key_limit })
                }
                _ => Ok(b),
            }
        })
        .and_then(|b| parse(&b))
        .map_err(|e| {
            access.error(&e);
            Box::new(render(&e))
        })
}

/// What every chat front end does once it has the canonical spec: serve
/// it in one piece (`to_wire` makes the body) or as a stream (`sse` frames
/// the events), with the served-by headers, or render the failure in the
/// front end's error shape; all noted in the access log.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn serve_chat<W: serde::Serialize>(
    gateway: &Gateway,
    access: &AccessInfo,
    headers: &HeaderMap,
    spec: ChatSpec,
    stream: bool,
    to_wire: impl FnOnce(&ChatResult) -> W,
    sse: impl FnOnce(ChatStream) -> Response,
    render: RenderError,
) -> Response {
    access.requested(&spec.model);
    // The GenAI operation is `chat` whichever front end took it.
    let ctx = context(headers, access, "chat");
    if !stream {
        let out = gateway.chat(spec, &ctx).await;
        return unary_answer(access, out, |r| r.usage.as_ref(), to_wire, render);
    }
    match gateway.chat_stream(spec, &ctx).await {
        Ok((served, events)) => {
            access.served(&served);
            let mut res = sse(access.watch(events));
            served_headers(&mut res, &served);
            res
        }
        Err(f) => {
            access.failed(&f);
            failed_response(&f, render)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Req {
        model: String,
        n: Option<u32>,
        messages: Vec<Msg>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Msg {
        role: String,
    }

    #[test]
    fn decoding_errors_name_the_field() {
        let e = decode_json::<Req>(b"{not json", Wording::OpenAi).unwrap_err();
        assert!(matches!(e, GatewayError::MalformedJson(_)), "{e:?}");
        let e = decode_json::<Req>(
            br#"{"model": "m", "n": "two", "messages": []}"#,
            Wording::OpenAi,
        )
        .unwrap_err();
        assert_eq!(e.param(), Some("n"), "{e:?}");
        assert!(e.to_string().starts_with("Invalid value for 'n': "), "{e}");
        let e = decode_json::<Req>(br#"{"messages": []}"#, Wording::Anthropic).unwrap_err();
        assert_eq!(e.param(), Some("model"), "{e:?}");
        assert!(e.to_string().starts_with("model: missing field"), "{e}");
        let e = decode_json::<Req>(br#"{"model": "m", "messages": [{}]}"#, Wording::OpenAi)
            .unwrap_err();
        assert_eq!(e.param(), Some("messages[0].role"), "{e:?}");
        let e = decode_json::<Req>(b"7", Wording::OpenAi).unwrap_err();
        assert_eq!(e.param(), None, "{e:?}");
        assert_eq!(e.class().status, StatusCode::BAD_REQUEST);
    }
}
