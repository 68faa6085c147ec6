//! A Gemini API double: a real HTTP server on 127.0.0.1 (port 0) speaking
//! Gemini's wire format (`models/{model}:generateContent`,
//! `:streamGenerateContent?alt=sse` with CRLF-framed events and no end
//! marker, `:batchEmbedContents`, Imagen's `:predict`, Google's error
//! bodies), scripted per test, recording what it received.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Response, StatusCode, Uri};
use axum::routing::post;
use futures_util::{StreamExt, stream};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The answer's text, streamed in these pieces.
pub const PIECES: &[&str] = &[
    "Hello", " there,", " friend!", " How", " can", " I", " help?",
];

pub const MODEL_VERSION: &str = "gemini-2.5-flash";

#[derive(Debug, Clone)]
pub enum Script {
    /// Gemini's answer for whichever method was called: generateContent
    /// JSON, SSE fragments, embeddings, Imagen predictions.
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
    /// One text fragment, then nothing until the client goes away, which
    /// resolves the receiver [`Double::start`] returned.
    Endless,
    /// 200 `text/event-stream` with these raw payloads, each sent as
    /// `data: <payload>\r\n\r\n` in its own write.
    Sse(Vec<String>),
    /// 200 `application/json` with this body.
    Json(Value),
    /// One call of `get_weather` (`{"city":"Paris"}`), as JSON or as SSE.
    ToolCall,
}

#[derive(Debug, Clone)]
pub struct Captured {
    pub headers: HeaderMap,
    /// e.g. `/v1beta/models/gemini-2.5-flash:generateContent`.
    pub path: String,
    pub query: Option<String>,
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
    /// The server, and a receiver that resolves when an [`Script::Endless`]
    /// stream's client has gone.
    pub async fn start(script: Script) -> (Self, oneshot::Receiver<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel();
        let shared = Arc::new(Shared {
            script,
            requests: Mutex::new(Vec::new()),
            closed: Mutex::new(Some(tx)),
        });
        // `{model}:{method}` is one path segment; the method is split off by
        // hand (axum captures whole segments only).
        let app = Router::new()
            .route("/v1beta/{*rest}", post(handle))
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (Self { addr, shared, task }, rx)
    }

    pub fn base_url(&self) -> String {
        format!("http://{}/v1beta", self.addr)
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

async fn handle(
    State(s): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response<Body> {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let path = uri.path().to_owned();
    let method = path.rsplit_once(':').map_or("", |(_, m)| m).to_owned();
    s.requests.lock().unwrap().push(Captured {
        headers,
        path: path.clone(),
        query: uri.query().map(str::to_owned),
        body: body.clone(),
    });
    if !path.starts_with("/v1beta/models/") && !path.starts_with("/v1beta/tunedModels/") {
        return json(
            404,
            &[],
            &error_json(404, "NOT_FOUND", "unknown path", json!([])),
        );
    }
    let streamed = method == "streamGenerateContent";

    match &s.script {
        Script::Answer => match method.as_str() {
            "generateContent" => json(200, &[], &answer_json()),
            "streamGenerateContent" => sse(answer_events()),
            "batchEmbedContents" => json(200, &[], &embeddings_json(&body)),
            "predict" => json(200, &[], &predictions_json(&body)),
            other => json(
                404,
                &[],
                &error_json(
                    404,
                    "NOT_FOUND",
                    &format!("unknown method {other}"),
                    json!([]),
                ),
            ),
        },
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
            let head = stream::iter([Ok::<_, Infallible>(event(
                &text_fragment("tick", None, false).to_string(),
            ))]);
            let tail = stream::unfold(guard, |g| async move {
                futures_util::future::pending::<()>().await;
                Some((Ok(Bytes::new()), g))
            });
            sse_body(Body::from_stream(head.chain(tail)))
        }
        Script::Sse(events) => sse(events.clone()),
        Script::ToolCall if streamed => sse(vec![tool_call_json().to_string()]),
        Script::ToolCall => json(200, &[], &tool_call_json()),
        Script::Json(v) => json(200, &[], v),
    }
}

fn event(payload: &str) -> Bytes {
    Bytes::from(format!("data: {payload}\r\n\r\n"))
}

fn sse(events: Vec<String>) -> Response<Body> {
    sse_body(Body::from_stream(stream::iter(
        events.into_iter().map(|e| Ok::<_, Infallible>(event(&e))),
    )))
}

fn sse_body(body: Body) -> Response<Body> {
    Response::builder()
        .status(200)
        .header("content-type", "text/event-stream")
        .header("x-content-type-options", "nosniff")
        .body(body)
        .unwrap()
}

fn json(status: u16, headers: &[(&'static str, String)], body: &Value) -> Response<Body> {
    let mut b = Response::builder()
        .status(StatusCode::from_u16(status).unwrap())
        .header("content-type", "application/json; charset=UTF-8");
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
        "promptTokenCount": 12, "candidatesTokenCount": 9, "totalTokenCount": 21,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 12}]
    })
}

pub fn answer_json() -> Value {
    json!({
        "candidates": [{
            "content": {"parts": [{"text": answer_text()}], "role": "model"},
            "finishReason": "STOP",
            "index": 0,
            "safetyRatings": [{"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"}]
        }],
        "usageMetadata": usage_json(),
        "modelVersion": MODEL_VERSION,
        "responseId": "resp-double"
    })
}

/// One streamed fragment. Gemini repeats usage on every fragment; before the
/// last one it counts only the prompt.
pub fn text_fragment(text: &str, finish: Option<&str>, final_usage: bool) -> Value {
    let mut candidate = json!({
        "content": {"parts": [{"text": text}], "role": "model"},
        "index": 0
    });
    if let Some(f) = finish {
        candidate["finishReason"] = json!(f);
    }
    json!({
        "candidates": [candidate],
        "usageMetadata": if final_usage { usage_json() } else { json!({"promptTokenCount": 12, "totalTokenCount": 12}) },
        "modelVersion": MODEL_VERSION,
        "responseId": "resp-double"
    })
}

pub fn answer_events() -> Vec<String> {
    let last = PIECES.len() - 1;
    PIECES
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let end = i == last;
            text_fragment(p, end.then_some("STOP"), end).to_string()
        })
        .collect()
}

/// Google's error body.
pub fn error_json(code: u16, status: &str, message: &str, details: Value) -> Value {
    json!({"error": {"code": code, "message": message, "status": status, "details": details}})
}

/// An answer calling `get_weather` for Paris, as gemini-2.5 models send it
/// (no call id, a thought signature beside the call).
pub fn tool_call_json() -> Value {
    json!({
        "candidates": [{
            "content": {"role": "model", "parts": [{
                "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                "thoughtSignature": "c2lnbmF0dXJl"
            }]},
            "finishReason": "STOP",
            "index": 0
        }],
        "usageMetadata": usage_json(),
        "modelVersion": MODEL_VERSION,
        "responseId": "resp-tool"
    })
}

/// One vector per request, in order: `[position, text length, 0.5]`.
fn embeddings_json(body: &Value) -> Value {
    let requests = body["requests"].as_array().cloned().unwrap_or_default();
    let embeddings: Vec<Value> = requests
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let len = r["content"]["parts"][0]["text"]
                .as_str()
                .map_or(0, str::len);
            json!({"values": [i as f64, len as f64, 0.5]})
        })
        .collect();
    json!({"embeddings": embeddings})
}

/// `sampleCount` images (default 1), each the base64 of `image-<n>`.
fn predictions_json(body: &Value) -> Value {
    let n = body["parameters"]["sampleCount"].as_u64().unwrap_or(1);
    let b64 = [
        "aW1hZ2UtMA==",
        "aW1hZ2UtMQ==",
        "aW1hZ2UtMg==",
        "aW1hZ2UtMw==",
    ];
    let predictions: Vec<Value> = (0..n as usize)
        .map(|i| json!({"bytesBase64Encoded": b64[i % b64.len()], "mimeType": "image/png"}))
        .collect();
    json!({"predictions": predictions})
}
