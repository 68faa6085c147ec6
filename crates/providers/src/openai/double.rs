//! An OpenAI upstream double: a real HTTP server on 127.0.0.1 (port 0)
//! speaking OpenAI's wire format (JSON answers, SSE streams ending in
//! `data: [DONE]`, OpenAI's error bodies), scripted per test, recording what
//! it received.

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

/// OpenAI's framing: `data: <payload>` events (the payload a JSON text, or
/// `[DONE]`), `x-request-id` on every answer.
pub struct OpenAi;

impl Wire for OpenAi {
    type Event = String;
    const BASE_PATH: &'static str = "/v1";
    const JSON_HEADERS: &'static [(&'static str, &'static str)] = &[
        ("content-type", "application/json"),
        ("x-request-id", "req_double"),
    ];
    const STREAM_HEADERS: &'static [(&'static str, &'static str)] = &[
        ("content-type", "text/event-stream; charset=utf-8"),
        ("cache-control", "no-cache"),
        ("x-request-id", "req_double"),
    ];

    fn frame(payload: &String) -> Bytes {
        Bytes::from(format!("data: {payload}\n\n"))
    }
}

/// [`Script::Answer`] is OpenAI's answer: JSON, or SSE when the request says
/// `stream: true` (with the usage chunk when `stream_options.include_usage`).
/// [`Script::Endless`] sends a role chunk and a content chunk.
/// [`Script::ToolCall`] streams the arguments split over two deltas.
pub type Script = test_support::Script<String>;
pub type Double = test_support::Double<OpenAi, Captured>;
type Shared = test_support::Shared<OpenAi, Captured>;

impl Double {
    pub async fn start(script: Script) -> (Self, oneshot::Receiver<()>) {
        let routes = Router::new()
            .route("/v1/chat/completions", post(handle))
            .route(
                "/v1/embeddings",
                post(|State(s): State<Arc<Shared>>, h, b: Bytes| async move {
                    operation(&s, h, &b, embeddings_answer).await
                }),
            )
            .route(
                "/v1/images/generations",
                post(|State(s): State<Arc<Shared>>, h, b: Bytes| async move {
                    operation(&s, h, &b, images_answer).await
                }),
            );
        Self::serve(script, (), routes).await
    }
}

async fn handle(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response<Body> {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let streamed = body["stream"] == true;
    let include_usage = body["stream_options"]["include_usage"] == true;
    let model = body["model"].as_str().unwrap_or("gpt-4o-mini").to_owned();
    s.record(Captured { headers, body });

    let endless_head = || {
        vec![
            role_chunk(&model, false).to_string(),
            content_chunk(&model, "tick", false).to_string(),
        ]
    };
    if let Some(r) = s.scripted(endless_head).await {
        return r;
    }
    match &s.script {
        Script::Answer if streamed => OpenAi::events(answer_events(&model, include_usage)),
        Script::ToolCall if streamed => OpenAi::events(tool_call_events(&model)),
        Script::ToolCall => OpenAi::json(200, &[], &tool_call_json(&model)),
        _ => OpenAi::json(200, &[], &answer_json(&model)),
    }
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

/// `POST /v1/embeddings`: for [`Script::Answer`], OpenAI's answer with one
/// [`embedding_for`] vector per input (`dimensions` long, 3 by default),
/// base64 when asked; usage counts input words.
fn embeddings_answer(body: &Value) -> Value {
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
    json!({
        "object": "list",
        "data": data,
        "model": body["model"],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens}
    })
}

/// The double's vector for `text`: a function of its length, so tests can
/// tell which input a vector belongs to.
pub fn embedding_for(text: &str, dims: usize) -> Vec<f32> {
    (0..dims)
        .map(|i| text.len() as f32 + i as f32 * 0.25)
        .collect()
}

/// `POST /v1/images/generations`: for [`Script::Answer`] and `gpt-image-*`
/// models gpt-image-1's answer (`b64_json` and usage), otherwise DALL-E's
/// (`url`, or `b64_json` when asked), `n` images.
fn images_answer(body: &Value) -> Value {
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
    answer
}

/// A request to an operation other than chat: recorded, then `answer` to
/// its body for [`Script::Answer`]; the scripts that do not depend on the
/// operation as for chat; the others are for chat only.
async fn operation(
    s: &Shared,
    headers: HeaderMap,
    body: &Bytes,
    answer: fn(&Value) -> Value,
) -> Response<Body> {
    let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    s.record(Captured {
        headers,
        body: body.clone(),
    });
    match &s.script {
        Script::Answer => OpenAi::json(200, &[], &answer(&body)),
        Script::Status { .. } | Script::Json(_) | Script::Hang => {
            s.scripted(Vec::new).await.unwrap()
        }
        other => OpenAi::json(
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
