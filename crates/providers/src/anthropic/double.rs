//! An Anthropic upstream double: a real HTTP server on 127.0.0.1 (port 0)
//! speaking the Messages API wire format (`POST /v1/messages`, JSON answers,
//! SSE streams with `event:` lines, Anthropic's error bodies), scripted per
//! test, recording what it received.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Response, StatusCode};
use axum::routing::post;
use futures_util::{StreamExt, stream};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The answer's text, streamed in these pieces.
pub const PIECES: &[&str] = &[
    "Hello", " there,", " friend!", " How", " can", " I", " help?",
];

#[derive(Debug, Clone)]
pub enum Script {
    /// Anthropic's answer: JSON, or SSE when the request says `stream: true`.
    Answer,
    /// This status, these headers, this JSON body.
    Status {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: Value,
    },
    /// Read the request, never answer.
    Hang,
    /// 200 with SSE headers, then nothing.
    StallAfterHeaders,
    /// `message_start` and one text delta, then nothing until the client
    /// goes away, which resolves the receiver [`Double::start`] returned.
    Endless,
    /// 200 `text/event-stream` with these events: each `data` payload's
    /// `type` is also its `event:` name.
    Sse(Vec<Value>),
    /// 200 `application/json` with this body.
    Json(Value),
    /// One call of `get_weather` (`{"city":"Paris"}`), as JSON or as SSE
    /// with the input split over two deltas.
    ToolCall,
}

#[derive(Debug, Clone)]
pub struct Captured {
    pub headers: HeaderMap,
    pub body: Value,
}

struct Shared {
    script: Script,
    requests: Mutex<Vec<Captured>>,
    closed: Mutex<Option<oneshot::Sender<()>>>,
}

pub struct Double {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for Double {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Double {
    pub async fn start(script: Script) -> (Self, oneshot::Receiver<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel();
        let shared = Arc::new(Shared {
            script,
            requests: Mutex::new(Vec::new()),
            closed: Mutex::new(Some(tx)),
        });
        let app = Router::new()
            .route("/v1/messages", post(handle))
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (Self { addr, shared, task }, rx)
    }

    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn requests(&self) -> Vec<Captured> {
        self.shared.requests.lock().unwrap().clone()
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

async fn handle(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response<Body> {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let streamed = body["stream"] == true;
    let model = body["model"]
        .as_str()
        .unwrap_or("claude-sonnet-4-5")
        .to_owned();
    s.requests.lock().unwrap().push(Captured { headers, body });

    match &s.script {
        Script::Answer if streamed => sse(answer_events(&model)),
        Script::Answer => json(200, &[], &answer_json(&model)),
        Script::Status {
            status,
            headers,
            body,
        } => json(*status, headers, body),
        Script::Hang => futures_util::future::pending().await,
        Script::StallAfterHeaders => sse_body(Body::from_stream(stream::pending::<
            Result<Bytes, Infallible>,
        >())),
        Script::Endless => {
            let guard = SignalOnDrop(s.closed.lock().unwrap().take());
            let first = [
                message_start(&model),
                block_start(0, json!({"type": "text", "text": ""})),
                block_delta(0, json!({"type": "text_delta", "text": "tick"})),
            ];
            let head = stream::iter(first.map(|v| Ok::<_, Infallible>(event(&v))));
            let tail = stream::unfold(guard, |g| async move {
                futures_util::future::pending::<()>().await;
                Some((Ok(Bytes::new()), g))
            });
            sse_body(Body::from_stream(head.chain(tail)))
        }
        Script::Sse(events) => sse(events.clone()),
        Script::ToolCall if streamed => sse(tool_call_events(&model)),
        Script::ToolCall => json(200, &[], &tool_call_json(&model)),
        Script::Json(v) => json(200, &[], v),
    }
}

/// `event: <type>\ndata: <json>\n\n`, as Anthropic frames every event.
fn event(data: &Value) -> Bytes {
    let name = data["type"].as_str().unwrap_or("message");
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

fn sse(events: Vec<Value>) -> Response<Body> {
    sse_body(Body::from_stream(stream::iter(
        events.into_iter().map(|e| Ok::<_, Infallible>(event(&e))),
    )))
}

fn sse_body(body: Body) -> Response<Body> {
    Response::builder()
        .status(200)
        .header("content-type", "text/event-stream; charset=utf-8")
        .header("cache-control", "no-cache")
        .header("request-id", "req_double")
        .body(body)
        .unwrap()
}

fn json(status: u16, headers: &[(&'static str, String)], body: &Value) -> Response<Body> {
    let mut b = Response::builder()
        .status(StatusCode::from_u16(status).unwrap())
        .header("content-type", "application/json")
        .header("request-id", "req_double");
    for (k, v) in headers {
        b = b.header(*k, v);
    }
    b.body(Body::from(body.to_string())).unwrap()
}

pub fn answer_text() -> String {
    PIECES.concat()
}

pub fn usage_json() -> Value {
    json!({
        "input_tokens": 12,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": 9,
        "service_tier": "standard"
    })
}

pub fn answer_json(model: &str) -> Value {
    json!({
        "id": "msg_double",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": answer_text()}],
        "stop_reason": "end_turn",
        "stop_sequence": null,
        "usage": usage_json()
    })
}

pub fn message_start(model: &str) -> Value {
    let mut usage = usage_json();
    usage["output_tokens"] = json!(1);
    json!({"type": "message_start", "message": {
        "id": "msg_double", "type": "message", "role": "assistant", "content": [],
        "model": model, "stop_reason": null, "stop_sequence": null, "usage": usage
    }})
}

pub fn block_start(index: u32, block: Value) -> Value {
    json!({"type": "content_block_start", "index": index, "content_block": block})
}

pub fn block_delta(index: u32, delta: Value) -> Value {
    json!({"type": "content_block_delta", "index": index, "delta": delta})
}

fn block_stop(index: u32) -> Value {
    json!({"type": "content_block_stop", "index": index})
}

fn message_end(stop_reason: &str, output_tokens: u32) -> [Value; 2] {
    [
        json!({"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": null}, "usage": {"output_tokens": output_tokens}}),
        json!({"type": "message_stop"}),
    ]
}

pub fn answer_events(model: &str) -> Vec<Value> {
    let mut out = vec![
        message_start(model),
        block_start(0, json!({"type": "text", "text": ""})),
        json!({"type": "ping"}),
    ];
    out.extend(
        PIECES
            .iter()
            .map(|p| block_delta(0, json!({"type": "text_delta", "text": p}))),
    );
    out.push(block_stop(0));
    out.extend(message_end("end_turn", 9));
    out
}

/// Anthropic's error body.
pub fn error_json(kind: &str, message: &str) -> Value {
    json!({"type": "error", "error": {"type": kind, "message": message}})
}

/// A message calling `get_weather` for Paris.
pub fn tool_call_json(model: &str) -> Value {
    json!({
        "id": "msg_tool1",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"city": "Paris"}}],
        "stop_reason": "tool_use",
        "stop_sequence": null,
        "usage": usage_json()
    })
}

/// The same call streamed as Anthropic does: id and name in
/// `content_block_start`, the input in `input_json_delta` pieces.
pub fn tool_call_events(model: &str) -> Vec<Value> {
    let mut out = vec![
        message_start(model),
        block_start(
            0,
            json!({"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {}}),
        ),
        block_delta(0, json!({"type": "input_json_delta", "partial_json": ""})),
        block_delta(
            0,
            json!({"type": "input_json_delta", "partial_json": "{\"city\":"}),
        ),
        block_delta(
            0,
            json!({"type": "input_json_delta", "partial_json": "\"Paris\"}"}),
        ),
        block_stop(0),
    ];
    out.extend(message_end("tool_use", 9));
    out
}
