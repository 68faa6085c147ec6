//! An OpenAI upstream double: a real HTTP server on 127.0.0.1 (port 0)
//! speaking OpenAI's wire format (JSON answers, SSE streams ending in
//! `data: [DONE]`, OpenAI's error bodies), scripted per test, recording what
//! it received.

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
    /// OpenAI's answer: JSON, or SSE when the request says `stream: true`
    /// (with the usage chunk when `stream_options.include_usage`).
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
    /// A role chunk and a content chunk, then nothing until the client goes
    /// away, which resolves the receiver [`Double::start`] returned.
    Endless,
    /// 200 `text/event-stream` with these raw event payloads, each sent as
    /// `data: <payload>\n\n` in its own write.
    Sse(Vec<String>),
    /// 200 `application/json` with this body.
    Json(Value),
    /// One call of `get_weather` (`{"city":"Paris"}`), as JSON or as SSE
    /// with the arguments split over two deltas.
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
        let app = Router::new()
            .route("/v1/chat/completions", post(handle))
            .route("/v1/embeddings", post(handle_embeddings))
            .route("/v1/images/generations", post(handle_images))
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
    let include_usage = body["stream_options"]["include_usage"] == true;
    let model = body["model"].as_str().unwrap_or("gpt-4o-mini").to_owned();
    s.requests.lock().unwrap().push(Captured { headers, body });

    match &s.script {
        Script::Answer if streamed => sse(answer_events(&model, include_usage)),
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
                role_chunk(&model, false),
                content_chunk(&model, "tick", false),
            ];
            let head = stream::iter(first.map(|v| Ok::<_, Infallible>(event(&v.to_string()))));
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

fn event(payload: &str) -> Bytes {
    Bytes::from(format!("data: {payload}\n\n"))
}

fn sse(events: Vec<String>) -> Response<Body> {
    sse_body(Body::from_stream(stream::iter(
        events.into_iter().map(|e| Ok::<_, Infallible>(event(&e))),
    )))
}

fn sse_body(body: Body) -> Response<Body> {
    Response::builder()
        .status(200)
        .header("content-type", "text/event-stream; charset=utf-8")
        .header("cache-control", "no-cache")
        .header("x-request-id", "req_double")
        .body(body)
        .unwrap()
}

fn json(status: u16, headers: &[(&'static str, String)], body: &Value) -> Response<Body> {
    let mut b = Response::builder()
        .status(StatusCode::from_u16(status).unwrap())
        .header("content-type", "application/json")
        .header("x-request-id", "req_double");
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
        "prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
            "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}
    })
}

pub fn answer_json(model: &str) -> Value {
    json!({
        "id": "chatcmpl-double",
        "object": "chat.completion",
        "created": 1741570283,
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": answer_text(), "refusal": null, "annotations": []},
            "logprobs": null,
            "finish_reason": "stop"
        }],
        "usage": usage_json(),
        "service_tier": "default",
        "system_fingerprint": "fp_double"
    })
}

fn chunk(model: &str, choices: Value, usage: Option<Value>, include_usage: bool) -> Value {
    let mut c = json!({
        "id": "chatcmpl-double",
        "object": "chat.completion.chunk",
        "created": 1741570283,
        "model": model,
        "service_tier": "default",
        "system_fingerprint": "fp_double",
        "choices": choices,
        "obfuscation": "q9R"
    });
    if include_usage {
        c["usage"] = usage.unwrap_or(Value::Null);
    }
    c
}

pub fn role_chunk(model: &str, include_usage: bool) -> Value {
    chunk(
        model,
        json!([{"index": 0, "delta": {"role": "assistant", "content": "", "refusal": null}, "logprobs": null, "finish_reason": null}]),
        None,
        include_usage,
    )
}

pub fn content_chunk(model: &str, text: &str, include_usage: bool) -> Value {
    chunk(
        model,
        json!([{"index": 0, "delta": {"content": text}, "logprobs": null, "finish_reason": null}]),
        None,
        include_usage,
    )
}

pub fn finish_chunk(model: &str, include_usage: bool) -> Value {
    chunk(
        model,
        json!([{"index": 0, "delta": {}, "logprobs": null, "finish_reason": "stop"}]),
        None,
        include_usage,
    )
}

pub fn answer_events(model: &str, include_usage: bool) -> Vec<String> {
    let mut out = vec![role_chunk(model, include_usage).to_string()];
    out.extend(
        PIECES
            .iter()
            .map(|p| content_chunk(model, p, include_usage).to_string()),
    );
    out.push(finish_chunk(model, include_usage).to_string());
    if include_usage {
        out.push(chunk(model, json!([]), Some(usage_json()), true).to_string());
    }
    out.push("[DONE]".into());
    out
}

/// OpenAI's error body.
pub fn error_json(message: &str, kind: &str, param: Option<&str>, code: Option<&str>) -> Value {
    json!({"error": {"message": message, "type": kind, "param": param, "code": code}})
}

/// A chat completion calling `get_weather` for Paris.
pub fn tool_call_json(model: &str) -> Value {
    json!({
        "id": "chatcmpl-tool1",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [{
            "index": 0,
            "message": {
                "role": "assistant",
                "content": null,
                "tool_calls": [{
                    "id": "call_abc123",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}
                }]
            },
            "logprobs": null,
            "finish_reason": "tool_calls"
        }],
        "usage": usage_json()
    })
}

/// The same call streamed as OpenAI does: id, type and name in the first
/// delta, the arguments in pieces after it.
pub fn tool_call_events(model: &str) -> Vec<String> {
    let delta = |tc: Value, finish: Value| {
        chunk(
            model,
            json!([{"index": 0, "delta": {"tool_calls": [tc]}, "logprobs": null, "finish_reason": finish}]),
            None,
            false,
        )
    };
    vec![
        role_chunk(model, false).to_string(),
        delta(
            json!({"index": 0, "id": "call_abc123", "type": "function", "function": {"name": "get_weather", "arguments": ""}}),
            Value::Null,
        )
        .to_string(),
        delta(json!({"index": 0, "function": {"arguments": "{\"city\":"}}), Value::Null).to_string(),
        delta(json!({"index": 0, "function": {"arguments": "\"Paris\"}"}}), Value::Null).to_string(),
        chunk(
            model,
            json!([{"index": 0, "delta": {}, "logprobs": null, "finish_reason": "tool_calls"}]),
            None,
            false,
        )
        .to_string(),
        "[DONE]".to_owned(),
    ]
}

/// `POST /v1/embeddings`. [`Script::Answer`] is OpenAI's answer with one
/// [`embedding_for`] vector per input (`dimensions` long, 3 by default),
/// base64 when asked; usage counts input words. Other scripts as for chat.
async fn handle_embeddings(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response<Body> {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    s.requests.lock().unwrap().push(Captured {
        headers,
        body: body.clone(),
    });
    if !matches!(s.script, Script::Answer) {
        return scripted(&s.script).await;
    }
    let dims = body["dimensions"].as_u64().unwrap_or(3) as usize;
    let texts: Vec<String> = match &body["input"] {
        Value::String(t) => vec![t.clone()],
        Value::Array(items) if items.iter().all(Value::is_number) => {
            vec![body["input"].to_string()]
        }
        Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned))
            .collect(),
        _ => Vec::new(),
    };
    let base64 = body["encoding_format"] == "base64";
    let data: Vec<Value> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let v = embedding_for(t, dims);
            let embedding = if base64 {
                json!(super::embeddings::encode_f32_base64(&v))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    let tokens: usize = texts.iter().map(|t| t.split_whitespace().count()).sum();
    json(
        200,
        &[],
        &json!({
            "object": "list",
            "data": data,
            "model": body["model"],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}
        }),
    )
}

/// The double's vector for `text`: a function of its length, so tests can
/// tell which input a vector belongs to.
pub fn embedding_for(text: &str, dims: usize) -> Vec<f32> {
    (0..dims)
        .map(|i| text.len() as f32 + i as f32 * 0.25)
        .collect()
}

/// `POST /v1/images/generations`. [`Script::Answer`]: for `gpt-image-*`
/// models gpt-image-1's answer (`b64_json` and usage), otherwise DALL-E's
/// (`url`, or `b64_json` when asked), `n` images. Other scripts as for chat.
async fn handle_images(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response<Body> {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    s.requests.lock().unwrap().push(Captured {
        headers,
        body: body.clone(),
    });
    if !matches!(s.script, Script::Answer) {
        return scripted(&s.script).await;
    }
    let n = body["n"].as_u64().unwrap_or(1);
    let model = body["model"].as_str().unwrap_or("dall-e-2");
    let gpt_image = model.starts_with("gpt-image");
    let b64 = gpt_image || body["response_format"] == "b64_json";
    let data: Vec<Value> = (0..n)
        .map(|i| {
            if b64 {
                json!({"b64_json": format!("iVBORw0KGgo{i}")})
            } else {
                json!({"url": format!("https://images.example/{i}.png"), "revised_prompt": body["prompt"]})
            }
        })
        .collect();
    let mut answer = json!({"created": 1_713_833_628, "data": data});
    if gpt_image {
        answer["usage"] = json!({
            "total_tokens": 4210, "input_tokens": 50, "output_tokens": 4160,
            "input_tokens_details": {"text_tokens": 50, "image_tokens": 0}
        });
    }
    json(200, &[], &answer)
}

/// The scripts that do not depend on the operation.
async fn scripted(script: &Script) -> Response<Body> {
    match script {
        Script::Status {
            status,
            headers,
            body,
        } => json(*status, headers, body),
        Script::Json(v) => json(200, &[], v),
        Script::Hang => futures_util::future::pending().await,
        other => json(
            500,
            &[],
            &error_json(
                &format!("script {other:?} is for chat"),
                "server_error",
                None,
                None,
            ),
        ),
    }
}
