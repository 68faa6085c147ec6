//! An upstream double that speaks OpenAI's chat-completions wire format
//! (JSON and SSE with `data: [DONE]`) on a real socket, scripted by the
//! `model` the request names:
//!
//! | model prefix    | behaviour |
//! |-----------------|-----------|
//! | (anything else) | answers `echo: <last user text>`; streams it word by word |
//! | `slow-<ms>`     | as above, `<ms>` between streamed chunks (and before a JSON answer) |
//! | `…-stamped`     | (with any of the above) each streamed content delta is `@<µs since the Unix epoch> `, stamped as it is sent, so a client can time every delta's trip |
//! | `error-429`     | 429 with `retry-after: 2` and OpenAI's rate-limit error body |
//! | `error-429-<s>` | the same with `retry-after: <s>` |
//! | `cut`           | streams two chunks, then breaks the connection (no `[DONE]`) |
//! | `error-500`     | 500 with an OpenAI server_error body |
//! | `error-400`     | 400 invalid_request_error naming `temperature` |
//! | `context-long`  | 400 `context_length_exceeded` |
//! | `hang`          | never answers (JSON), or sends one chunk then stalls (SSE) |
//! | `tool-call`     | calls the first tool with `{"city": "Paris"}`; after its result, `tool said: <result>` |
//! | `agent`         | runs the user's `` Run `<command>` `` with the client's shell tool (Codex's `exec_command`, Claude Code's `Bash`, ...); after its result, `done: <first line>` |
//!
//! `POST /v1/embeddings` and `POST /v1/images/generations` answer in
//! OpenAI's shapes, scripted by the same `error-429` / `error-429-<s>` /
//! `error-500` / `error-400` / `hang` models. Embeddings: one vector per
//! input, `[chars, position, 0.5, 0.5, ...]` (`dimensions` long, 3 by
//! default), so a test can tell which input a vector belongs to; for
//! `words*` models a bag-of-words vector instead ([`word_embedding`], 256
//! long by default), so similar texts have similar vectors; floats
//! only (a base64 request is refused: the gateway must ask for floats).
//! Images: `n` images as `url`s, or `b64_json` when asked or for
//! `gpt-image-*` models (which report usage too).
//!
//! `POST /v1/responses` speaks OpenAI's Responses API (the `response`
//! object; named stream events with `sequence_number`), as an upstream
//! with its own Responses endpoint does for `responses: native`: it
//! answers `echo: <last user text>` (streamed word by word), first calling
//! OpenAI's `web_search` built-in (a `web_search_call` output item) when
//! the request declares that tool; `tool-call` calls the first function
//! tool with `{"city": "Paris"}`; the scripted failures as above.
//!
//! `GET /_double/stats` reports how many chat requests arrived, how many
//! answers were cut off by the client going away, and the last
//! `authorization` header seen, so tests in any language can check them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::Notify;

#[derive(Default)]
pub struct Stats {
    pub requests: AtomicU64,
    /// Chat requests per requested model.
    pub by_model: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
    /// Answers (streamed or not) whose client went away before the end.
    pub disconnects: AtomicU64,
    pub last_authorization: std::sync::Mutex<String>,
    pub last_body: std::sync::Mutex<Value>,
    /// Notified on every disconnect.
    pub disconnected: Notify,
    /// Notified on every chat request received.
    pub received: Notify,
}

pub struct Double {
    pub addr: SocketAddr,
    pub stats: Arc<Stats>,
    task: tokio::task::JoinHandle<()>,
}

impl Double {
    /// Starts on 127.0.0.1, port 0.
    pub async fn start() -> std::io::Result<Double> {
        Self::start_on("127.0.0.1:0".parse().map_err(std::io::Error::other)?).await
    }

    pub async fn start_on(addr: SocketAddr) -> std::io::Result<Double> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let stats = Arc::new(Stats::default());
        let app = Router::new()
            .route("/v1/chat/completions", post(chat))
            .route("/v1/embeddings", post(embeddings))
            .route("/v1/images/generations", post(images))
            .route("/v1/responses", post(responses))
            .route("/_double/stats", get(stats_handler))
            .with_state(stats.clone());
        // TCP_NODELAY, as providers' servers have it: without it a streamed
        // delta can sit in the double's socket until the gateway acknowledges
        // the one before (Nagle against delayed ACKs), a stall of up to a
        // delta's interval that is the double's, not the gateway's.
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Double { addr, stats, task })
    }

    /// `http://127.0.0.1:PORT/v1`
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn requests(&self) -> u64 {
        self.stats.requests.load(Ordering::SeqCst)
    }

    /// Chat requests that named `model`.
    pub fn requests_for(&self, model: &str) -> u64 {
        self.stats
            .by_model
            .lock()
            .map(|m| m.get(model).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    pub fn disconnects(&self) -> u64 {
        self.stats.disconnects.load(Ordering::SeqCst)
    }

    /// Runs until the process ends (the standalone binary).
    pub async fn serve_forever(mut self) {
        let _ = (&mut self.task).await;
    }
}

impl Drop for Double {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn stats_handler(State(stats): State<Arc<Stats>>) -> Response {
    let auth = stats
        .last_authorization
        .lock()
        .map(|a| a.clone())
        .unwrap_or_default();
    let body = stats
        .last_body
        .lock()
        .map(|b| b.clone())
        .unwrap_or_default();
    let by_model = stats.by_model.lock().map(|m| json!(*m)).unwrap_or_default();
    axum::Json(json!({
        "requests": stats.requests.load(Ordering::SeqCst),
        "by_model": by_model,
        "disconnects": stats.disconnects.load(Ordering::SeqCst),
        "last_authorization": auth,
        "last_body": body,
    }))
    .into_response()
}

/// Counts a disconnect if dropped before `finish`.
struct CutGuard {
    stats: Arc<Stats>,
    finished: bool,
}

impl CutGuard {
    fn finish(&mut self) {
        self.finished = true;
    }
}

impl Drop for CutGuard {
    fn drop(&mut self) {
        if !self.finished {
            self.stats.disconnects.fetch_add(1, Ordering::SeqCst);
            self.stats.disconnected.notify_waiters();
        }
    }
}

fn error(
    status: StatusCode,
    message: &str,
    kind: &str,
    param: Option<&str>,
    code: Option<&str>,
) -> Response {
    let body = json!({"error": {"message": message, "type": kind, "param": param, "code": code}});
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn last_user_text(body: &Value) -> String {
    user_texts(body).last().unwrap_or_default()
}

fn words(s: &str) -> u64 {
    s.split_whitespace().count() as u64
}

async fn chat(State(stats): State<Arc<Stats>>, headers: HeaderMap, body: Bytes) -> Response {
    stats.requests.fetch_add(1, Ordering::SeqCst);
    stats.received.notify_waiters();
    if let Ok(mut a) = stats.last_authorization.lock() {
        *a = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
    }
    let body: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("invalid JSON: {e}"),
                "invalid_request_error",
                None,
                None,
            );
        }
    };
    if let Ok(mut b) = stats.last_body.lock() {
        *b = body.clone();
    }
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    if let Ok(mut m) = stats.by_model.lock() {
        *m.entry(model.clone()).or_default() += 1;
    }
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let mut guard = CutGuard {
        stats: stats.clone(),
        finished: false,
    };
    let delay = model
        .strip_prefix("slow-")
        .and_then(|ms| ms.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|ms| ms.parse::<u64>().ok())
        .map(Duration::from_millis);
    let retry_after = match model.as_str() {
        "error-429" => Some("2"),
        m => m.strip_prefix("error-429-"),
    };
    if let Some(secs) = retry_after {
        guard.finish();
        let mut res = error(
            StatusCode::TOO_MANY_REQUESTS,
            "Rate limit reached for requests",
            "requests",
            None,
            Some("rate_limit_exceeded"),
        );
        if let Ok(v) = header::HeaderValue::from_str(secs) {
            res.headers_mut().insert("retry-after", v);
        }
        return res;
    }
    match model.as_str() {
        "error-500" => {
            guard.finish();
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "upstream exploded",
                "server_error",
                None,
                None,
            );
        }
        "error-400" => {
            guard.finish();
            return error(
                StatusCode::BAD_REQUEST,
                "Invalid value for 'temperature': upstream says no",
                "invalid_request_error",
                Some("temperature"),
                None,
            );
        }
        "context-long" => {
            guard.finish();
            return error(
                StatusCode::BAD_REQUEST,
                "This model's maximum context length is 8 tokens.",
                "invalid_request_error",
                Some("messages"),
                Some("context_length_exceeded"),
            );
        }
        "hang" if !stream => {
            // Held until the client goes away; the guard counts that.
            std::future::pending::<()>().await;
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
        _ => {}
    }
    if model == "tool-call" {
        guard.finish();
        return tool_call_answer(&body, &model, stream);
    }
    if model == "agent" {
        guard.finish();
        return agent_answer(&body, &model, stream);
    }
    let text = format!("echo: {}", last_user_text(&body));
    let prompt_tokens = body
        .get("messages")
        .and_then(Value::as_array)
        .map_or(0, |ms| {
            ms.iter()
                .map(|m| words(&m.get("content").map(|c| c.to_string()).unwrap_or_default()))
                .sum()
        });
    let completion_tokens = words(&text);
    let usage = json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0}
    });
    let id = format!("chatcmpl-double-{}", stats.requests.load(Ordering::SeqCst));
    if !stream {
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        guard.finish();
        let body = json!({
            "id": id, "object": "chat.completion", "created": 1_700_000_000, "model": model,
            "system_fingerprint": "fp_double",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "refusal": null},
                         "logprobs": null, "finish_reason": "stop"}],
            "usage": usage,
        });
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response();
    }
    let include_usage = body
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let hang = model == "hang";
    let cut = model == "cut";
    let stamped = model.ends_with("-stamped");
    let chunk = |delta: Value, finish: Value| {
        json!({"id": id, "object": "chat.completion.chunk", "created": 1_700_000_000, "model": model,
               "system_fingerprint": "fp_double",
               "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]})
    };
    let mut events: Vec<Value> = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    let pieces: Vec<String> = text.split_inclusive(' ').map(str::to_owned).collect();
    for p in pieces {
        events.push(chunk(json!({"content": p}), Value::Null));
    }
    events.push(chunk(json!({}), json!("stop")));
    if include_usage {
        events.push(json!({"id": id, "object": "chat.completion.chunk", "created": 1_700_000_000, "model": model,
                           "system_fingerprint": "fp_double", "choices": [], "usage": usage}));
    }
    let stream = futures_util::stream::unfold(
        (events.into_iter(), guard, 0usize),
        move |(mut it, mut guard, n)| async move {
            if n == usize::MAX {
                return None;
            }
            if n > 0 {
                if hang && n >= 2 {
                    std::future::pending::<()>().await;
                }
                if cut && n >= 2 {
                    // Give the client time to read what was sent: a reset
                    // connection can discard data still unread.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    // An error from the body stream makes hyper drop the
                    // connection mid-body: the client sees a truncated stream.
                    guard.finish();
                    return Some((Err(std::io::Error::other("cut")), (it, guard, usize::MAX)));
                }
                if let Some(d) = delay {
                    tokio::time::sleep(d).await;
                }
            }
            match it.next() {
                Some(mut ev) => {
                    if stamped {
                        stamp(&mut ev);
                    }
                    Some((
                        Ok::<_, std::io::Error>(Bytes::from(format!("data: {ev}\n\n"))),
                        (it, guard, n + 1),
                    ))
                }
                None => {
                    guard.finish();
                    Some((
                        Ok(Bytes::from_static(b"data: [DONE]\n\n")),
                        (it, guard, usize::MAX),
                    ))
                }
            }
        },
    );
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// A `-stamped` model's content delta: its text becomes the time it is sent.
fn stamp(event: &mut Value) {
    if let Some(content) = event.pointer_mut("/choices/0/delta/content")
        && content.as_str().is_some_and(|c| !c.is_empty())
    {
        let micros = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros());
        *content = Value::String(format!("@{micros} "));
    }
}

/// `tool-call`: calls the request's first tool with `{"city": "Paris"}`;
/// once the conversation ends with that tool's result, answers `tool said:
/// <result>`.
fn tool_call_answer(body: &Value, model: &str, stream: bool) -> Response {
    let tool = body
        .pointer("/tools/0/function/name")
        .and_then(Value::as_str)
        .unwrap_or("none");
    let call = ToolCall {
        name: tool.to_owned(),
        arguments: r#"{"city": "Paris"}"#.to_owned(),
    };
    tool_turn(body, model, stream, Some(call), |result| {
        format!("tool said: {result}")
    })
}

/// `agent`: plays a coding agent's model for real client programs (Codex
/// CLI, Claude Code). Finds the first `` Run `<command>` `` in the user's
/// messages and calls the client's own shell tool with it (each client
/// names that tool and its arguments differently); once the tool's result
/// is back, answers `done: <first line of the result>`.
fn agent_answer(body: &Value, model: &str, stream: bool) -> Response {
    let tools: Vec<&str> = body
        .get("tools")
        .and_then(Value::as_array)
        .map(|ts| {
            ts.iter()
                .filter_map(|t| t.pointer("/function/name").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    let command = user_texts(body).find_map(|t| {
        let rest = &t[t.find("Run `")? + 5..];
        Some(rest[..rest.find('`')?].to_owned())
    });
    let call = command.and_then(|cmd| {
        let arguments = if tools.contains(&"exec_command") {
            ("exec_command", json!({"cmd": cmd}))
        } else if tools.contains(&"shell_command") {
            ("shell_command", json!({"command": cmd}))
        } else if tools.contains(&"shell") {
            ("shell", json!({"command": ["bash", "-lc", cmd]}))
        } else if tools.contains(&"Bash") {
            (
                "Bash",
                json!({"command": cmd, "description": "Run the requested command"}),
            )
        } else {
            return None;
        };
        Some(ToolCall {
            name: arguments.0.to_owned(),
            arguments: arguments.1.to_string(),
        })
    });
    tool_turn(body, model, stream, call, |result| {
        format!("done: {}", result.lines().next().unwrap_or_default())
    })
}

/// The texts of every user message, oldest first.
fn user_texts(body: &Value) -> impl Iterator<Item = String> + '_ {
    body.get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .map(|m| content_text(m.get("content")))
}

/// A message's text, whether `content` is a string or a list of parts.
fn content_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

struct ToolCall {
    name: String,
    arguments: String,
}

/// One turn of a tool round trip: when the conversation ends with a tool
/// result, the text `reply(result)`; otherwise `call` (or, without one, a
/// text saying there was nothing to call). Plain JSON or SSE, the
/// arguments in two pieces.
fn tool_turn(
    body: &Value,
    model: &str,
    stream: bool,
    call: Option<ToolCall>,
    reply: impl FnOnce(&str) -> String,
) -> Response {
    let last = body
        .get("messages")
        .and_then(Value::as_array)
        .and_then(|m| m.last());
    let answered = last.and_then(|m| m.get("role")).and_then(Value::as_str) == Some("tool");
    let usage = json!({"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15});
    let (message, finish, call) = match call {
        _ if answered => {
            let result = content_text(last.and_then(|m| m.get("content")));
            (
                json!({"role": "assistant", "content": reply(&result)}),
                "stop",
                None,
            )
        }
        Some(call) => (
            json!({"role": "assistant", "content": null, "tool_calls": [{"id": "call_double_1", "type": "function",
                   "function": {"name": call.name, "arguments": call.arguments}}]}),
            "tool_calls",
            Some(call),
        ),
        None => (
            json!({"role": "assistant", "content": "nothing to call"}),
            "stop",
            None,
        ),
    };
    if !stream {
        let body = json!({"id": "chatcmpl-double-tool", "object": "chat.completion", "created": 1_700_000_000,
            "model": model, "choices": [{"index": 0, "message": message, "finish_reason": finish}], "usage": usage});
        return (
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response();
    }
    let chunk = |delta: Value, finish: Value| {
        json!({"id": "chatcmpl-double-tool", "object": "chat.completion.chunk", "created": 1_700_000_000,
               "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    let mut events = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    match call {
        None => events.push(chunk(json!({"content": message["content"]}), Value::Null)),
        Some(call) => {
            let mut cut = call.arguments.len() / 2;
            while !call.arguments.is_char_boundary(cut) {
                cut -= 1;
            }
            let (head, tail) = call.arguments.split_at(cut);
            events.push(chunk(
                json!({"tool_calls": [{"index": 0, "id": "call_double_1", "type": "function",
                       "function": {"name": call.name, "arguments": head}}]}),
                Value::Null,
            ));
            events.push(chunk(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": tail}}]}),
                Value::Null,
            ));
        }
    }
    events.push(chunk(json!({}), json!(finish)));
    events.push(json!({"id": "chatcmpl-double-tool", "object": "chat.completion.chunk", "created": 1_700_000_000,
                       "model": model, "choices": [], "usage": usage}));
    let mut text: String = events.iter().map(|e| format!("data: {e}\n\n")).collect();
    text.push_str("data: [DONE]\n\n");
    ([(header::CONTENT_TYPE, "text/event-stream")], text).into_response()
}

/// Counts and records a non-chat request like a chat one; the decoded
/// body, or the error answer for one that is not JSON (boxed: a response is
/// large next to a `Value`).
fn record(stats: &Stats, headers: &HeaderMap, body: &[u8]) -> Result<Value, Box<Response>> {
    stats.requests.fetch_add(1, Ordering::SeqCst);
    stats.received.notify_waiters();
    if let Ok(mut a) = stats.last_authorization.lock() {
        *a = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
    }
    let body: Value = serde_json::from_slice(body).map_err(|e| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            &format!("invalid JSON: {e}"),
            "invalid_request_error",
            None,
            None,
        ))
    })?;
    if let Ok(mut b) = stats.last_body.lock() {
        *b = body.clone();
    }
    let model = body.get("model").and_then(Value::as_str).unwrap_or("");
    if let Ok(mut m) = stats.by_model.lock() {
        *m.entry(model.to_owned()).or_default() += 1;
    }
    Ok(body)
}

/// The scripted failures every endpoint shares, by model name.
async fn scripted_failure(model: &str) -> Option<Response> {
    let retry_after = match model {
        "error-429" => Some("2"),
        m => m.strip_prefix("error-429-"),
    };
    if let Some(secs) = retry_after {
        let mut res = error(
            StatusCode::TOO_MANY_REQUESTS,
            "Rate limit reached for requests",
            "requests",
            None,
            Some("rate_limit_exceeded"),
        );
        if let Ok(v) = header::HeaderValue::from_str(secs) {
            res.headers_mut().insert("retry-after", v);
        }
        return Some(res);
    }
    match model {
        "error-500" => Some(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "upstream exploded",
            "server_error",
            None,
            None,
        )),
        "error-400" => Some(error(
            StatusCode::BAD_REQUEST,
            "Invalid value for 'dimensions': upstream says no",
            "invalid_request_error",
            Some("dimensions"),
            None,
        )),
        "hang" => {
            std::future::pending::<()>().await;
            None
        }
        _ => None,
    }
}

fn ok_json(body: &Value) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// The double's vector for the input at `position`.
pub fn embedding_for(text: &str, position: usize, dims: usize) -> Vec<f32> {
    let mut v = vec![0.5f32; dims];
    if let Some(x) = v.get_mut(0) {
        *x = text.chars().count() as f32;
    }
    if let Some(x) = v.get_mut(1) {
        *x = position as f32;
    }
    v
}

/// The double's vector for `words*` embedding models: a bag of words,
/// each lower-cased alphanumeric word counted in one of `dims` slots (by a
/// mixed FNV-1a hash), so texts sharing most words are close in cosine terms and
/// unrelated texts are not.
pub fn word_embedding(text: &str, dims: usize) -> Vec<f32> {
    let mut v = vec![0f32; dims.max(1)];
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in word.to_lowercase().bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        // FNV-1a's low bits depend on the low bits alone: mix before taking
        // them (MurmurHash3's finalizer), or many words share a slot.
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        let slot = (h % v.len() as u64) as usize;
        v[slot] += 1.0;
    }
    v
}

/// The cosine similarity of two vectors (0 when either is zero).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na * nb)
    }
}

async fn embeddings(State(stats): State<Arc<Stats>>, headers: HeaderMap, body: Bytes) -> Response {
    let body = match record(&stats, &headers, &body) {
        Ok(b) => b,
        Err(res) => return *res,
    };
    let model = body.get("model").and_then(Value::as_str).unwrap_or("");
    if let Some(res) = scripted_failure(model).await {
        return res;
    }
    if body.get("encoding_format").and_then(Value::as_str) == Some("base64") {
        return error(
            StatusCode::BAD_REQUEST,
            "this double answers floats only: the gateway must ask for floats",
            "invalid_request_error",
            Some("encoding_format"),
            None,
        );
    }
    let dims = body.get("dimensions").and_then(Value::as_u64).unwrap_or(3) as usize;
    let texts: Vec<String> = match body.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) if items.iter().all(Value::is_number) => {
            vec![Value::Array(items.clone()).to_string()]
        }
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned))
            .collect(),
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "'input' is a required property",
                "invalid_request_error",
                Some("input"),
                None,
            );
        }
    };
    let words_model = model.starts_with("words");
    let data: Vec<Value> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let v = if words_model {
                let dims = body
                    .get("dimensions")
                    .and_then(Value::as_u64)
                    .unwrap_or(256) as usize;
                word_embedding(t, dims)
            } else {
                embedding_for(t, i, dims)
            };
            json!({"object": "embedding", "index": i, "embedding": v})
        })
        .collect();
    let tokens: u64 = texts.iter().map(|t| words(t)).sum();
    ok_json(&json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens}
    }))
}

async fn images(State(stats): State<Arc<Stats>>, headers: HeaderMap, body: Bytes) -> Response {
    let body = match record(&stats, &headers, &body) {
        Ok(b) => b,
        Err(res) => return *res,
    };
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("dall-e-2");
    if let Some(res) = scripted_failure(model).await {
        return res;
    }
    let n = body.get("n").and_then(Value::as_u64).unwrap_or(1);
    let gpt_image = model.starts_with("gpt-image");
    let b64 = gpt_image || body.get("response_format").and_then(Value::as_str) == Some("b64_json");
    let prompt = body.get("prompt").cloned().unwrap_or(Value::Null);
    let data: Vec<Value> = (0..n)
        .map(|i| {
            if b64 {
                // Base64 of "double-image" stands in for PNG bytes.
                json!({"b64_json": "ZG91YmxlLWltYWdl"})
            } else {
                json!({"url": format!("https://images.example/{i}.png"), "revised_prompt": prompt})
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
    ok_json(&answer)
}

/// The text of the last user message of a Responses `input`.
fn responses_user_text(body: &Value) -> String {
    match body.get("input") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => items
            .iter()
            .filter(|i| i.get("role").and_then(Value::as_str) == Some("user"))
            .map(|i| content_text(i.get("content")))
            .next_back()
            .unwrap_or_default(),
        _ => String::new(),
    }
}

/// `POST /v1/responses`: OpenAI's Responses API.
async fn responses(State(stats): State<Arc<Stats>>, headers: HeaderMap, body: Bytes) -> Response {
    let body = match record(&stats, &headers, &body) {
        Ok(b) => b,
        Err(res) => return *res,
    };
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    if let Some(res) = scripted_failure(&model).await {
        return res;
    }
    let n = stats.requests.load(Ordering::SeqCst);
    let id = format!("resp_double{n:08}");
    let asked = responses_user_text(&body);
    let tools = body
        .get("tools")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let searches = tools
        .iter()
        .any(|t| t.get("type").and_then(Value::as_str) == Some("web_search"));
    let call = if model == "tool-call" {
        tools
            .iter()
            .find(|t| t.get("type").and_then(Value::as_str) == Some("function"))
            .and_then(|t| t.get("name").and_then(Value::as_str))
            .map(str::to_owned)
    } else {
        None
    };
    let text = format!("echo: {asked}");
    let mut output = Vec::new();
    if searches {
        output.push(json!({
            "type": "web_search_call", "id": format!("ws_{n:08}"), "status": "completed",
            "action": {"type": "search", "query": asked},
        }));
    }
    match &call {
        Some(name) => output.push(json!({
            "type": "function_call", "id": format!("fc_{n:08}"), "call_id": format!("call_{n:08}"),
            "name": name, "arguments": "{\"city\": \"Paris\"}", "status": "completed",
        })),
        None => output.push(json!({
            "type": "message", "id": format!("msg_{n:08}"), "status": "completed", "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
        })),
    }
    let input_tokens = words(&asked);
    let output_tokens = if call.is_some() { 8 } else { words(&text) };
    let response = |status: &str, output: Vec<Value>, usage: Value| {
        json!({
            "id": id, "object": "response", "created_at": 1_700_000_000, "status": status,
            "background": false, "error": null, "incomplete_details": null,
            "instructions": body.get("instructions").cloned().unwrap_or(Value::Null),
            "max_output_tokens": body.get("max_output_tokens").cloned().unwrap_or(Value::Null),
            "model": model, "output": output,
            "parallel_tool_calls": body.get("parallel_tool_calls").cloned().unwrap_or(json!(true)),
            "previous_response_id": body.get("previous_response_id").cloned().unwrap_or(Value::Null),
            "reasoning": {"effort": null, "summary": null},
            "store": body.get("store").cloned().unwrap_or(json!(true)),
            "temperature": 1.0, "text": {"format": {"type": "text"}},
            "tool_choice": body.get("tool_choice").cloned().unwrap_or(json!("auto")),
            "tools": tools, "top_p": 1.0,
            "truncation": body.get("truncation").cloned().unwrap_or(json!("disabled")),
            "usage": usage, "user": null, "metadata": {},
        })
    };
    let usage = json!({
        "input_tokens": input_tokens, "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": output_tokens, "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + output_tokens,
    });
    if !body.get("stream").and_then(Value::as_bool).unwrap_or(false) {
        return ok_json(&response("completed", output, usage));
    }
    let mut events = vec![
        json!({"type": "response.created", "response": response("in_progress", vec![], Value::Null)}),
        json!({"type": "response.in_progress", "response": response("in_progress", vec![], Value::Null)}),
    ];
    for (i, item) in output.iter().enumerate() {
        let item_id = item.get("id").cloned().unwrap_or(Value::Null);
        match item.get("type").and_then(Value::as_str) {
            Some("web_search_call") => {
                let mut added = item.clone();
                added["status"] = json!("in_progress");
                events.push(
                    json!({"type": "response.output_item.added", "output_index": i, "item": added}),
                );
                for phase in ["in_progress", "searching", "completed"] {
                    events.push(json!({"type": format!("response.web_search_call.{phase}"),
                                       "output_index": i, "item_id": item_id}));
                }
            }
            Some("function_call") => {
                let mut added = item.clone();
                added["status"] = json!("in_progress");
                added["arguments"] = json!("");
                events.push(
                    json!({"type": "response.output_item.added", "output_index": i, "item": added}),
                );
                let args = item.get("arguments").and_then(Value::as_str).unwrap_or("");
                let (a, b) = args.split_at(args.len() / 2);
                for piece in [a, b] {
                    events.push(json!({"type": "response.function_call_arguments.delta",
                                       "output_index": i, "item_id": item_id, "delta": piece}));
                }
                events.push(json!({"type": "response.function_call_arguments.done",
                                   "output_index": i, "item_id": item_id, "arguments": args}));
            }
            _ => {
                let mut added = item.clone();
                added["status"] = json!("in_progress");
                added["content"] = json!([]);
                events.push(
                    json!({"type": "response.output_item.added", "output_index": i, "item": added}),
                );
                events.push(json!({"type": "response.content_part.added", "output_index": i, "item_id": item_id,
                                   "content_index": 0,
                                   "part": {"type": "output_text", "text": "", "annotations": []}}));
                for piece in text.split_inclusive(' ') {
                    events.push(json!({"type": "response.output_text.delta", "output_index": i,
                                       "item_id": item_id, "content_index": 0, "delta": piece, "logprobs": []}));
                }
                events.push(json!({"type": "response.output_text.done", "output_index": i, "item_id": item_id,
                                   "content_index": 0, "text": text, "logprobs": []}));
                events.push(json!({"type": "response.content_part.done", "output_index": i, "item_id": item_id,
                                   "content_index": 0,
                                   "part": {"type": "output_text", "text": text, "annotations": []}}));
            }
        }
        events.push(json!({"type": "response.output_item.done", "output_index": i, "item": item}));
    }
    events.push(json!({"type": "response.completed", "response": response("completed", output.clone(), usage)}));
    let mut out = String::new();
    for (seq, mut ev) in events.into_iter().enumerate() {
        ev["sequence_number"] = json!(seq);
        let kind = ev
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        out.push_str(&format!("event: {kind}\ndata: {ev}\n\n"));
    }
    ([(header::CONTENT_TYPE, "text/event-stream")], out).into_response()
}
