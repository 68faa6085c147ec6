//! An Anthropic upstream double: a real HTTP server on 127.0.0.1 (port 0)
//! speaking the Messages API wire format (`POST /v1/messages`, JSON answers,
//! SSE streams with `event:` lines, Anthropic's error bodies), scripted per
//! test, recording what it received (the last body also at
//! `GET /_double/stats`, see [`test_support::stats_json`]).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test support: a failed expectation is a test failure"
)]

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::test_support::{self, PIECES, Wire};
use crate::test_support::{Captured, answer_text, instance_of, pieces_of, tool_said};

/// Anthropic's framing: `event: <type>` then `data: <json>` (each event's
/// `type` is also its `event:` name), `request-id` on every answer.
pub struct Anthropic;

impl Wire for Anthropic {
    type Event = Value;
    const BASE_PATH: &'static str = "/v1";
    const JSON_HEADERS: &'static [(&'static str, &'static str)] = &[
        ("content-type", "application/json"),
        ("request-id", "req_double"),
    ];
    const STREAM_HEADERS: &'static [(&'static str, &'static str)] = &[
        ("content-type", "text/event-stream; charset=utf-8"),
        ("cache-control", "no-cache"),
        ("request-id", "req_double"),
    ];

    fn frame(data: &Value) -> Bytes {
        let name = data["type"].as_str().unwrap_or("message");
        Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
    }
}

/// [`Script::Answer`] is Anthropic's answer: JSON, or SSE when the request
/// says `stream: true`. [`Script::Endless`] sends `message_start` and one
/// text delta. [`Script::ToolCall`] streams the input split over two deltas.
/// [`Script::Converse`] answers a forced tool (the structured-output
/// fallback) with a call of it, its input [`instance_of`] its
/// `input_schema`; a conversation ending with a `tool_result` with
/// [`tool_said`] its content; a request with tools with a call of the first.
pub type Script = test_support::Script<Value>;
pub type Double = test_support::Double<Anthropic, Captured>;
type Shared = test_support::Shared<Anthropic, Captured>;

impl Double {
    pub async fn start(script: Script) -> (Self, oneshot::Receiver<()>) {
        Self::serve(script, (), routes()).await
    }

    /// [`Double::start`] on this address.
    pub async fn start_on(
        addr: SocketAddr,
        script: Script,
    ) -> std::io::Result<(Self, oneshot::Receiver<()>)> {
        Self::serve_on(addr, script, (), routes()).await
    }
}

fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/v1/messages", post(handle))
        .route("/_double/stats", get(stats))
}

async fn stats(State(s): State<Arc<Shared>>) -> Response<Body> {
    let requests = s.requests();
    let body = test_support::stats_json(requests.len(), requests.last().map(|r| &r.body));
    Anthropic::json(200, &[], &body)
}

async fn handle(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response<Body> {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let streamed = body["stream"] == true;
    let model = body["model"]
        .as_str()
        .unwrap_or("claude-sonnet-4-5")
        .to_owned();
    s.record(Captured {
        headers,
        body: body.clone(),
    });

    let endless_head = || {
        vec![
            message_start(&model),
            block_start(0, json!({"type": "text", "text": ""})),
            block_delta(0, json!({"type": "text_delta", "text": "tick"})),
        ]
    };
    if let Some(r) = s.scripted(endless_head).await {
        return r;
    }
    match &s.script {
        Script::Converse => converse(&body, &model, streamed),
        Script::Answer if streamed => Anthropic::events(answer_events(&model)),
        Script::ToolCall if streamed => Anthropic::events(tool_call_events(&model)),
        Script::ToolCall => Anthropic::json(200, &[], &tool_call_json(&model)),
        _ => Anthropic::json(200, &[], &answer_json(&model)),
    }
}

/// [`Script::Converse`]'s answer to `body`.
fn converse(body: &Value, model: &str, streamed: bool) -> Response<Body> {
    let call = |id: &str, name: &str, input: &Value| {
        if streamed {
            let json = input.to_string();
            let mid = json
                .char_indices()
                .map(|(i, _)| i)
                .find(|&i| i >= json.len() / 2)
                .unwrap_or(json.len());
            let (head, tail) = json.split_at(mid);
            Anthropic::events(tool_use_events(model, id, name, &[head, tail]))
        } else {
            Anthropic::json(200, &[], &tool_use_json(model, id, name, input))
        }
    };
    let text = |text: &str| {
        if streamed {
            let pieces = pieces_of(text);
            let pieces: Vec<&str> = pieces.iter().map(String::as_str).collect();
            Anthropic::events(text_events(model, &pieces))
        } else {
            Anthropic::json(200, &[], &text_json(model, text))
        }
    };
    let tools = body["tools"].as_array().cloned().unwrap_or_default();
    if body["tool_choice"]["type"] == "tool" {
        let name = body["tool_choice"]["name"].as_str().unwrap_or_default();
        let schema = tools
            .iter()
            .find(|t| t["name"] == name)
            .map_or(Value::Null, |t| t["input_schema"].clone());
        return call("toolu_answer", name, &instance_of(&schema));
    }
    if let Some(result) = tool_result(body) {
        return text(&tool_said(&result));
    }
    if let Some(name) = tools.first().and_then(|t| t["name"].as_str()) {
        return call("toolu_01A", name, &json!({"city": "Paris"}));
    }
    text(&answer_text())
}

/// The content of the `tool_result` a conversation ends with: its text, or
/// its text blocks' joined.
fn tool_result(body: &Value) -> Option<String> {
    let last = body["messages"].as_array()?.last()?;
    let result = last["content"]
        .as_array()?
        .iter()
        .rev()
        .find(|b| b["type"] == "tool_result")?;
    Some(match &result["content"] {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks.iter().filter_map(|b| b["text"].as_str()).collect(),
        _ => String::new(),
    })
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
    text_json(model, &answer_text())
}

/// A message answering this text.
pub fn text_json(model: &str, text: &str) -> Value {
    json!({
        "id": "msg_double",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}],
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
    text_events(model, PIECES)
}

/// A message answering these pieces of text, streamed.
pub fn text_events(model: &str, pieces: &[&str]) -> Vec<Value> {
    let mut out = vec![
        message_start(model),
        block_start(0, json!({"type": "text", "text": ""})),
        json!({"type": "ping"}),
    ];
    out.extend(
        pieces
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
    tool_use_json(model, "toolu_01A", "get_weather", &json!({"city": "Paris"}))
}

/// A message calling tool `name` with `input`.
pub fn tool_use_json(model: &str, id: &str, name: &str, input: &Value) -> Value {
    json!({
        "id": "msg_tool1",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "tool_use", "id": id, "name": name, "input": input}],
        "stop_reason": "tool_use",
        "stop_sequence": null,
        "usage": usage_json()
    })
}

/// The same call streamed as Anthropic does: id and name in
/// `content_block_start`, the input in `input_json_delta` pieces.
pub fn tool_call_events(model: &str) -> Vec<Value> {
    tool_use_events(
        model,
        "toolu_01A",
        "get_weather",
        &["{\"city\":", "\"Paris\"}"],
    )
}

/// A call of tool `name` streamed, its input JSON in these pieces (after
/// an empty one, as Anthropic sends).
pub fn tool_use_events(model: &str, id: &str, name: &str, input_pieces: &[&str]) -> Vec<Value> {
    let mut out = vec![
        message_start(model),
        block_start(
            0,
            json!({"type": "tool_use", "id": id, "name": name, "input": {}}),
        ),
        block_delta(0, json!({"type": "input_json_delta", "partial_json": ""})),
    ];
    out.extend(
        input_pieces
            .iter()
            .map(|p| block_delta(0, json!({"type": "input_json_delta", "partial_json": p}))),
    );
    out.push(block_stop(0));
    out.extend(message_end("tool_use", 9));
    out
}
