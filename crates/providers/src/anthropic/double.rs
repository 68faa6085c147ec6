//! An Anthropic upstream double: a real HTTP server on 127.0.0.1 (port 0)
//! speaking the Messages API wire format (`POST /v1/messages`, JSON answers,
//! SSE streams with `event:` lines, Anthropic's error bodies), scripted per
//! test, recording what it received.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Response};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::test_support::{self, PIECES, Wire};
use crate::test_support::{Captured, answer_text};

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
pub type Script = test_support::Script<Value>;
pub type Double = test_support::Double<Anthropic, Captured>;
type Shared = test_support::Shared<Anthropic, Captured>;

impl Double {
    pub async fn start(script: Script) -> (Self, oneshot::Receiver<()>) {
        let routes = Router::new().route("/v1/messages", post(handle));
        Self::serve(script, (), routes).await
    }
}

async fn handle(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response<Body> {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let streamed = body["stream"] == true;
    let model = body["model"]
        .as_str()
        .unwrap_or("claude-sonnet-4-5")
        .to_owned();
    s.record(Captured { headers, body });

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
        Script::Answer if streamed => Anthropic::events(answer_events(&model)),
        Script::ToolCall if streamed => Anthropic::events(tool_call_events(&model)),
        Script::ToolCall => Anthropic::json(200, &[], &tool_call_json(&model)),
        _ => Anthropic::json(200, &[], &answer_json(&model)),
    }
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
