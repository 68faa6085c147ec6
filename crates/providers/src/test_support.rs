//! What every provider's tests share: the upstream double's server, its
//! script and request log, the response framing, the conformance harness's
//! plumbing and the call builders. Each provider's `double.rs` keeps only
//! its wire format (routes, answer bodies, error bodies, how an event is
//! framed), its `tests.rs` only what it asserts.
//!
//! Compiled for this crate's tests and, with the Anthropic and Gemini
//! doubles, with the `doubles` feature (the `upstream-double` binary of
//! switchyard-e2e serves them).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test support: a failed expectation is a test failure"
)]

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Response, StatusCode};
use futures_util::{StreamExt, stream};
use serde_json::{Value, json};
use switchyard_config::{ProviderConfig, ProviderKind, Secret};
use switchyard_proto::gateway::v1::{ChatChunk, ChatSpec, EmbedSpec};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::conformance::{Harness, Target, Upstream};
use crate::{ChatCall, EmbedCall, Provider, ProviderError};

/// The answer's text every double streams, in these pieces.
pub const PIECES: &[&str] = &[
    "Hello", " there,", " friend!", " How", " can", " I", " help?",
];

/// [`PIECES`], whole.
pub fn answer_text() -> String {
    PIECES.concat()
}

/// How a double's upstream behaves. What [`Script::Answer`],
/// [`Script::ToolCall`] and [`Script::Converse`] send is the wire format's
/// own (see each double); the rest is played alike by [`Shared::scripted`].
#[derive(Debug, Clone)]
pub enum Script<E> {
    /// The wire format's answer to whichever operation was called.
    Answer,
    /// This status, these headers, this JSON body.
    Status {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: Value,
    },
    /// Read the request, never answer.
    Hang,
    /// 200 with the stream headers, then nothing.
    StallAfterHeaders,
    /// The wire format's first events, then nothing until the client goes
    /// away, which resolves the receiver [`Double::serve`] returned.
    Endless,
    /// 200 with the stream headers and these events, each framed by
    /// [`Wire::frame`] and sent in its own write.
    Events(Vec<E>),
    /// 200 JSON with this body.
    Json(Value),
    /// One call of `get_weather` (`{"city":"Paris"}`), unary or streamed.
    ToolCall,
    /// A model that follows the request, for multi-turn clients (the
    /// `upstream-double` binary's default for these wire formats), in this
    /// order: a structured-output request (a JSON response format, or
    /// Anthropic's forced tool) gets [`instance_of`] its schema; a request
    /// ending with a tool's result gets [`tool_said`] that result; a request
    /// declaring tools gets a call of the first one with
    /// `{"city":"Paris"}`; anything else [`Script::Answer`]'s answer.
    Converse,
}

impl<E> Script<E> {
    /// This status and JSON body, no extra headers.
    pub fn status(status: u16, body: Value) -> Self {
        Self::Status {
            status,
            headers: Vec::new(),
            body,
        }
    }

    /// A [`Script::Status`] with one more header (other scripts as they are).
    #[must_use]
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        if let Self::Status { headers, .. } = &mut self {
            headers.push((name, value.into()));
        }
        self
    }
}

/// One wire format's framing: where its API lives, the headers its answers
/// carry, how one streamed event goes on the wire.
pub trait Wire: Send + Sync + 'static {
    /// A streamed event as tests write it (a JSON text, a JSON value, a
    /// binary frame).
    type Event: Clone + fmt::Debug + Send + Sync + 'static;
    /// The API's path under the server's root (`/v1`, or empty).
    const BASE_PATH: &'static str;
    /// Headers on every JSON answer, content type first.
    const JSON_HEADERS: &'static [(&'static str, &'static str)];
    /// Headers on every streamed answer, content type first.
    const STREAM_HEADERS: &'static [(&'static str, &'static str)];

    fn frame(event: &Self::Event) -> Bytes;

    /// A JSON answer: this status, the wire's headers then `headers`.
    fn json(status: u16, headers: &[(&'static str, String)], body: &Value) -> Response<Body> {
        let mut b = Response::builder().status(StatusCode::from_u16(status).unwrap());
        for (k, v) in Self::JSON_HEADERS {
            b = b.header(*k, *v);
        }
        for (k, v) in headers {
            b = b.header(*k, v);
        }
        b.body(Body::from(body.to_string())).unwrap()
    }

    /// A 200 stream of these events, each in its own write.
    fn events(events: Vec<Self::Event>) -> Response<Body> {
        Self::stream_body(Body::from_stream(stream::iter(
            events
                .into_iter()
                .map(|e| Ok::<_, Infallible>(Self::frame(&e))),
        )))
    }

    /// A 200 answer with the stream headers and this body.
    fn stream_body(body: Body) -> Response<Body> {
        let mut b = Response::builder().status(200);
        for (k, v) in Self::STREAM_HEADERS {
            b = b.header(*k, *v);
        }
        b.body(body).unwrap()
    }
}

/// A request as the openai and anthropic doubles record it.
#[derive(Debug, Clone)]
pub struct Captured {
    pub headers: HeaderMap,
    pub body: Value,
}

/// What a double's handlers share: the script, the wire-specific
/// expectation `X` (bedrock's credentials), the requests received and the
/// [`Script::Endless`] close signal.
pub struct Shared<W: Wire, C, X = ()> {
    pub script: Script<W::Event>,
    pub ext: X,
    requests: Mutex<Vec<C>>,
    closed: Mutex<Option<oneshot::Sender<()>>>,
}

impl<W: Wire, C, X> Shared<W, C, X> {
    pub fn record(&self, request: C) {
        self.requests.lock().unwrap().push(request);
    }

    /// The requests received so far, in order.
    pub fn requests(&self) -> Vec<C>
    where
        C: Clone,
    {
        self.requests.lock().unwrap().clone()
    }

    /// The answer for the scripts every wire format plays alike; `None` for
    /// [`Script::Answer`] and [`Script::ToolCall`], which are the wire's
    /// own. `endless_head` gives the events an [`Script::Endless`] stream
    /// sends before it goes quiet.
    pub async fn scripted(
        &self,
        endless_head: impl FnOnce() -> Vec<W::Event>,
    ) -> Option<Response<Body>> {
        Some(match &self.script {
            Script::Answer | Script::ToolCall | Script::Converse => return None,
            Script::Status {
                status,
                headers,
                body,
            } => W::json(*status, headers, body),
            Script::Hang => futures_util::future::pending().await,
            Script::StallAfterHeaders => W::stream_body(Body::from_stream(stream::pending::<
                Result<Bytes, Infallible>,
            >())),
            Script::Endless => {
                let guard = SignalOnDrop(self.closed.lock().unwrap().take());
                let head = stream::iter(
                    endless_head()
                        .into_iter()
                        .map(|e| Ok::<_, Infallible>(W::frame(&e))),
                );
                // The tail owns the guard: it goes when hyper drops the body.
                let tail = stream::unfold(guard, |g| async move {
                    futures_util::future::pending::<()>().await;
                    Some((Ok(Bytes::new()), g))
                });
                W::stream_body(Body::from_stream(head.chain(tail)))
            }
            Script::Events(events) => W::events(events.clone()),
            Script::Json(v) => W::json(200, &[], v),
        })
    }
}

/// Sends on drop: the body stream holding it is dropped when hyper sees the
/// client's connection close.
struct SignalOnDrop(Option<oneshot::Sender<()>>);

impl Drop for SignalOnDrop {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

/// An upstream double: a real HTTP server on 127.0.0.1 (port 0) serving a
/// wire format's routes, recording requests of type `C`. Dropping it stops
/// the server.
pub struct Double<W: Wire, C, X = ()> {
    pub addr: SocketAddr,
    shared: Arc<Shared<W, C, X>>,
    task: JoinHandle<()>,
}

impl<W: Wire, C, X> Drop for Double<W, C, X> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl<W: Wire, C: Clone + Send + 'static, X: Send + Sync + 'static> Double<W, C, X> {
    /// The server, and a receiver that resolves when an [`Script::Endless`]
    /// stream's client has gone.
    pub async fn serve(
        script: Script<W::Event>,
        ext: X,
        routes: Router<Arc<Shared<W, C, X>>>,
    ) -> (Self, oneshot::Receiver<()>) {
        Self::serve_on(([127, 0, 0, 1], 0).into(), script, ext, routes)
            .await
            .unwrap()
    }

    /// [`Double::serve`] on this address.
    pub async fn serve_on(
        addr: SocketAddr,
        script: Script<W::Event>,
        ext: X,
        routes: Router<Arc<Shared<W, C, X>>>,
    ) -> std::io::Result<(Self, oneshot::Receiver<()>)> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = oneshot::channel();
        let shared = Arc::new(Shared {
            script,
            ext,
            requests: Mutex::new(Vec::new()),
            closed: Mutex::new(Some(tx)),
        });
        let app = routes.with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok((Self { addr, shared, task }, rx))
    }

    pub fn base_url(&self) -> String {
        format!("http://{}{}", self.addr, W::BASE_PATH)
    }

    pub fn requests(&self) -> Vec<C> {
        self.shared.requests()
    }
}

/// What a double's `GET /_double/stats` answers: how many requests
/// arrived, and the last one's body (`null` before any).
pub fn stats_json(requests: usize, last_body: Option<&Value>) -> Value {
    json!({"requests": requests, "last_body": last_body.cloned().unwrap_or(Value::Null)})
}

/// [`Script::Converse`]'s answer after a tool's result.
pub fn tool_said(result: &str) -> String {
    format!("tool said: {result}")
}

/// A text in streamed pieces: each word with the space before it.
pub fn pieces_of(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (i, w) in text.split(' ').enumerate() {
        out.push(if i == 0 {
            w.to_owned()
        } else {
            format!(" {w}")
        });
    }
    out
}

/// A value of this JSON Schema, as [`Script::Converse`] answers a
/// structured-output request: each property of an object (required or
/// not), one item of an array, the first of an `enum` or `anyOf`; strings
/// are [`answer_text`], numbers 21, booleans `true`.
pub fn instance_of(schema: &Value) -> Value {
    if let Some(first) = schema["enum"].as_array().and_then(|e| e.first()) {
        return first.clone();
    }
    if let Some(c) = schema.get("const") {
        return c.clone();
    }
    if let Some(first) = ["anyOf", "oneOf"]
        .iter()
        .find_map(|k| schema[k].as_array().and_then(|a| a.first()))
    {
        return instance_of(first);
    }
    let kind = match &schema["type"] {
        Value::Array(kinds) => kinds.iter().find(|k| *k != "null").cloned(),
        Value::Null if schema.get("properties").is_some() => Some(json!("object")),
        other => Some(other.clone()),
    };
    // Gemini's OpenAPI-style schemas spell types in capitals.
    match kind
        .as_ref()
        .and_then(Value::as_str)
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("object") => Value::Object(
            schema["properties"]
                .as_object()
                .map(|props| {
                    props
                        .iter()
                        .map(|(k, v)| (k.clone(), instance_of(v)))
                        .collect()
                })
                .unwrap_or_default(),
        ),
        Some("array") => json!([instance_of(&schema["items"])]),
        Some("string") => json!(answer_text()),
        Some("integer" | "number") => json!(21),
        Some("boolean") => json!(true),
        _ => Value::Null,
    }
}

/// A base URL nothing listens on: a port bound, then released.
fn refused_base_url<W: Wire>() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}{}", W::BASE_PATH)
}

/// The script for a conformance [`Upstream`]: the behaviours every double
/// plays alike here, the error answers (which each wire format spells its
/// own way) from `error`. `None` for [`Upstream::Refused`]: no double.
fn script_for<E>(
    upstream: Upstream,
    error: impl FnOnce(Upstream) -> Script<E>,
) -> Option<Script<E>> {
    Some(match upstream {
        Upstream::Refused => return None,
        Upstream::Answer => Script::Answer,
        Upstream::Hang => Script::Hang,
        Upstream::StallAfterHeaders => Script::StallAfterHeaders,
        Upstream::EndlessStream => Script::Endless,
        Upstream::ToolCall => Script::ToolCall,
        other => error(other),
    })
}

/// What [`DoubleHarness::start`] returns: a served double and its
/// [`Script::Endless`] close signal.
pub type Served<W, C, X> =
    Pin<Box<dyn Future<Output = (Double<W, C, X>, oneshot::Receiver<()>)> + Send>>;

/// The conformance [`Harness`] of a provider against its double: each case's
/// [`Upstream`] becomes a script (see [`script_for`]), the double `start`
/// serves it, `build` makes the provider for its base URL; for
/// [`Upstream::Refused`], for a base URL nothing listens on.
pub struct DoubleHarness<W: Wire, C, X, P> {
    /// The wire's answer to each failing [`Upstream`].
    pub errors: fn(Upstream) -> Script<W::Event>,
    pub start: fn(Script<W::Event>) -> Served<W, C, X>,
    pub build: fn(&str) -> P,
    /// The call the cases make.
    pub call: fn() -> ChatCall,
}

#[async_trait::async_trait]
impl<W, C, X, P> Harness for DoubleHarness<W, C, X, P>
where
    W: Wire,
    C: Clone + Send + 'static,
    X: Send + Sync + 'static,
    P: Provider,
{
    async fn start(&self, upstream: Upstream) -> Target {
        let call = (self.call)();
        let Some(script) = script_for(upstream, self.errors) else {
            return Target {
                provider: Arc::new((self.build)(&refused_base_url::<W>())),
                call,
                upstream_closed: None,
                guard: Box::new(()),
            };
        };
        let (d, closed) = (self.start)(script).await;
        Target {
            provider: Arc::new((self.build)(&d.base_url())),
            call,
            upstream_closed: Some(Box::pin(async move {
                let _ = closed.await;
            })),
            guard: Box::new(d),
        }
    }
}

/// A provider's config: named after its kind, this base URL and API key.
pub fn config(kind: ProviderKind, base_url: &str, key: Option<&str>) -> ProviderConfig {
    let mut c = ProviderConfig::new(kind.as_str(), kind);
    c.base_url = Some(base_url.to_owned());
    c.api_key = key.map(Secret::new);
    c
}

/// A canonical spec as the router makes it from an OpenAI client request.
pub fn spec_from(client_request: Value) -> ChatSpec {
    let req: crate::openai::wire::ChatCompletionRequest =
        serde_json::from_value(client_request).unwrap();
    crate::openai::convert::request_to_spec(req).unwrap().0
}

/// The client request of one user message.
pub fn user_says(text: &str) -> Value {
    json!({"model": "chat-default", "messages": [{"role": "user", "content": text}]})
}

/// The call of `client_request` to `upstream_model`.
pub fn chat_call(client_request: Value, upstream_model: &str) -> ChatCall {
    ChatCall {
        spec: spec_from(client_request),
        upstream_model: upstream_model.into(),
        request_id: "req-42".into(),
        timeout: None,
    }
}

/// An embeddings call of these inputs to `upstream_model`.
pub fn embed_call(upstream_model: &str, inputs: &[&str], dimensions: Option<u32>) -> EmbedCall {
    EmbedCall {
        spec: EmbedSpec {
            model: "embed".into(),
            inputs: inputs.iter().map(|s| (*s).to_owned()).collect(),
            dimensions,
            ..EmbedSpec::default()
        },
        upstream_model: upstream_model.into(),
        request_id: "req-e".into(),
        timeout: None,
    }
}

/// The items of a stream that opened, to its end.
pub async fn stream_items(
    p: &dyn Provider,
    call: &ChatCall,
) -> Vec<Result<ChatChunk, ProviderError>> {
    p.chat_stream(call).await.unwrap().collect().await
}

/// The chunks a stream request gets when the upstream answers with the
/// double's whole JSON answer: three of them, all the text in the first, the
/// usage (12 + 9 tokens) in the last.
pub async fn whole_answer_as_chunks(p: &dyn Provider, call: &ChatCall) -> Vec<ChatChunk> {
    let chunks = crate::conformance::stream_chunks(p, call).await;
    assert_eq!(chunks.len(), 3);
    assert_eq!(
        chunks[0].choices[0].content.as_deref(),
        Some(answer_text().as_str())
    );
    assert_eq!(chunks[2].usage.unwrap().total_tokens, 21);
    chunks
}

/// A Responses API request (`POST /v1/responses`, as a client sends it)
/// translated as the router does and served by `p`: the `response` object
/// of the plain answer, and the one the stream's last event carries.
pub async fn via_responses(
    p: &dyn Provider,
    request: Value,
    upstream_model: &str,
) -> (Value, Value) {
    use crate::openai::responses::{self, StreamEncoder, StreamEvent};
    let t = responses::request_to_spec(serde_json::from_value(request).unwrap()).unwrap();
    let call = ChatCall {
        spec: t.spec,
        upstream_model: upstream_model.into(),
        request_id: "req-responses".into(),
        timeout: None,
    };
    let result = p.chat(&call).await.unwrap();
    let plain = responses::result_to_response(&result, &t.echo);
    let mut encoder = StreamEncoder::new(t.echo);
    let mut events: Vec<StreamEvent> = Vec::new();
    let mut usage = None;
    for item in stream_items(p, &call).await {
        let chunk = item.unwrap();
        if chunk.usage.is_some() {
            usage = chunk.usage;
        }
        events.extend(encoder.chunk(&chunk));
    }
    events.extend(encoder.finish(usage.as_ref()));
    let last = events.last().unwrap();
    assert_eq!(last.kind(), "response.completed", "{events:?}");
    (plain, last.0["response"].clone())
}

/// The text of a `response` object's message items.
pub fn response_text(r: &Value) -> String {
    r["output"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["type"] == "message")
        .flat_map(|o| o["content"].as_array().unwrap().iter())
        .filter_map(|c| c["text"].as_str())
        .collect()
}

/// The one `function_call` item of a `response` object, checked to call
/// `get_weather` with `{"city": "Paris"}` (what the doubles' tool-call
/// scripts send).
pub fn weather_call(r: &Value) -> &Value {
    let call = r["output"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["type"] == "function_call")
        .unwrap_or_else(|| panic!("no function call in {r}"));
    assert_eq!(call["name"], "get_weather");
    let args: Value = serde_json::from_str(call["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"city": "Paris"}));
    call
}

/// A plain question through the Responses front end to `p` (scripted to
/// answer), plain and streamed: both completed with the doubles' answer
/// text. Returned for the wire format's own checks.
pub async fn responses_text_served(p: &dyn Provider, upstream_model: &str) -> [Value; 2] {
    let ask =
        json!({"model": "m", "input": "Hi", "instructions": "be kind", "max_output_tokens": 50});
    let (plain, streamed) = via_responses(p, ask, upstream_model).await;
    for r in [&plain, &streamed] {
        assert_eq!(response_text(r), answer_text(), "{r}");
        assert_eq!(r["status"], "completed");
    }
    [plain, streamed]
}

/// [`responses_tool_request`] to `p` (scripted to call the tool), plain and
/// streamed: each answer's [`weather_call`].
pub async fn responses_calls_served(p: &dyn Provider, upstream_model: &str) -> [Value; 2] {
    let (plain, streamed) = via_responses(p, responses_tool_request(), upstream_model).await;
    [
        weather_call(&plain).clone(),
        weather_call(&streamed).clone(),
    ]
}

/// A Responses request with a function tool and a question to call it.
pub fn responses_tool_request() -> Value {
    json!({
        "model": "m",
        "instructions": "use tools",
        "input": [{"role": "user", "content": "weather in Paris?"}],
        "tools": [{"type": "function", "name": "get_weather", "description": "Weather",
                   "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}],
        "max_output_tokens": 100
    })
}
