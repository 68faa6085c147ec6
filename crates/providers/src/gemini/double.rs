//! A Gemini API double: a real HTTP server on 127.0.0.1 (port 0) speaking
//! Gemini's wire format (`models/{model}:generateContent`,
//! `:streamGenerateContent?alt=sse` with CRLF-framed events and no end
//! marker, `:batchEmbedContents`, Imagen's `:predict`, Google's error
//! bodies), scripted per test, recording what it received (the last body
//! also at `GET /_double/stats`, see [`test_support::stats_json`]).

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
use axum::http::{HeaderMap, Response, Uri};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::test_support::{self, PIECES, Wire};
use crate::test_support::{answer_text, instance_of, pieces_of, tool_said};

pub const MODEL_VERSION: &str = "gemini-2.5-flash";

/// Gemini's framing: `data: <payload>` events ended by CRLF pairs, no end
/// marker, no request id header.
pub struct Gemini;

impl Wire for Gemini {
    type Event = String;
    const BASE_PATH: &'static str = "/v1beta";
    const JSON_HEADERS: &'static [(&'static str, &'static str)] =
        &[("content-type", "application/json; charset=UTF-8")];
    const STREAM_HEADERS: &'static [(&'static str, &'static str)] = &[
        ("content-type", "text/event-stream"),
        ("x-content-type-options", "nosniff"),
    ];

    fn frame(payload: &String) -> Bytes {
        Bytes::from(format!("data: {payload}\r\n\r\n"))
    }
}

/// [`Script::Answer`] is Gemini's answer for whichever method was called:
/// generateContent JSON, SSE fragments, embeddings, Imagen predictions.
/// [`Script::Endless`] sends one text fragment. [`Script::Converse`]
/// answers a request with `responseMimeType: application/json` with the
/// JSON text [`instance_of`] its `responseJsonSchema` (or `responseSchema`),
/// a conversation ending with a `functionResponse` with [`tool_said`] its
/// `response.content` (or the whole `response`), a request with function
/// declarations with a call of the first.
pub type Script = test_support::Script<String>;
pub type Double = test_support::Double<Gemini, Captured>;
type Shared = test_support::Shared<Gemini, Captured>;

#[derive(Debug, Clone)]
pub struct Captured {
    pub headers: HeaderMap,
    /// e.g. `/v1beta/models/gemini-2.5-flash:generateContent`.
    pub path: String,
    pub query: Option<String>,
    pub body: Value,
}

impl Double {
    pub async fn start(script: Script) -> (Self, oneshot::Receiver<()>) {
        // `{model}:{method}` is one path segment; the method is split off by
        // hand (axum captures whole segments only).
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
        .route("/v1beta/{*rest}", post(handle))
        .route("/_double/stats", get(stats))
}

async fn stats(State(s): State<Arc<Shared>>) -> Response<Body> {
    let requests = s.requests();
    let last = requests.last();
    let mut body = test_support::stats_json(requests.len(), last.map(|r| &r.body));
    body["last_path"] = json!(last.map(|r| r.path.clone()));
    Gemini::json(200, &[], &body)
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
    s.record(Captured {
        headers,
        path: path.clone(),
        query: uri.query().map(str::to_owned),
        body: body.clone(),
    });
    if !path.starts_with("/v1beta/models/") && !path.starts_with("/v1beta/tunedModels/") {
        return Gemini::json(
            404,
            &[],
            &error_json(404, "NOT_FOUND", "unknown path", json!([])),
        );
    }
    let endless_head = || vec![text_fragment("tick", None, false).to_string()];
    if let Some(r) = s.scripted(endless_head).await {
        return r;
    }
    let streamed = method == "streamGenerateContent";
    match (&s.script, method.as_str()) {
        (Script::Converse, "generateContent" | "streamGenerateContent") => {
            converse(&body, streamed)
        }
        (Script::ToolCall, _) if streamed => Gemini::events(vec![tool_call_json().to_string()]),
        (Script::ToolCall, _) => Gemini::json(200, &[], &tool_call_json()),
        (_, "generateContent") => Gemini::json(200, &[], &answer_json()),
        (_, "streamGenerateContent") => Gemini::events(answer_events()),
        (_, "batchEmbedContents") => Gemini::json(200, &[], &embeddings_json(&body)),
        (_, "predict") => Gemini::json(200, &[], &predictions_json(&body)),
        (_, other) => Gemini::json(
            404,
            &[],
            &error_json(
                404,
                "NOT_FOUND",
                &format!("unknown method {other}"),
                json!([]),
            ),
        ),
    }
}

/// [`Script::Converse`]'s answer to `body`.
fn converse(body: &Value, streamed: bool) -> Response<Body> {
    let answer = |whole: Value, pieces: Vec<String>| {
        if streamed {
            Gemini::events(pieces)
        } else {
            Gemini::json(200, &[], &whole)
        }
    };
    let text = |text: &str| {
        let pieces = pieces_of(text);
        let last = pieces.len() - 1;
        let events = pieces
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let end = i == last;
                text_fragment(p, end.then_some("STOP"), end).to_string()
            })
            .collect();
        answer(text_json(text), events)
    };
    let config = &body["generationConfig"];
    if config["responseMimeType"] == "application/json" {
        let schema = match &config["responseJsonSchema"] {
            Value::Null => &config["responseSchema"],
            s => s,
        };
        return text(&instance_of(schema).to_string());
    }
    if let Some(result) = function_response(body) {
        return text(&tool_said(&result));
    }
    let first = body["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|t| t["functionDeclarations"][0]["name"].as_str());
    if let Some(name) = first {
        let call = function_call_json(name, &json!({"city": "Paris"}));
        return answer(call.clone(), vec![call.to_string()]);
    }
    text(&answer_text())
}

/// The result of the `functionResponse` a conversation ends with: its
/// `response.content` when that is a string, else the whole `response`.
fn function_response(body: &Value) -> Option<String> {
    let last = body["contents"].as_array()?.last()?;
    let response = last["parts"]
        .as_array()?
        .iter()
        .rev()
        .find_map(|p| p.get("functionResponse"))?;
    let response = &response["response"];
    Some(match response["content"].as_str() {
        Some(s) => s.to_owned(),
        None => response.to_string(),
    })
}

pub fn usage_json() -> Value {
    json!({
        "promptTokenCount": 12, "candidatesTokenCount": 9, "totalTokenCount": 21,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 12}]
    })
}

pub fn answer_json() -> Value {
    text_json(&answer_text())
}

/// An answer of this text.
pub fn text_json(text: &str) -> Value {
    json!({
        "candidates": [{
            "content": {"parts": [{"text": text}], "role": "model"},
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
    function_call_json("get_weather", &json!({"city": "Paris"}))
}

/// An answer calling function `name` with `args`, as [`tool_call_json`].
pub fn function_call_json(name: &str, args: &Value) -> Value {
    json!({
        "candidates": [{
            "content": {"role": "model", "parts": [{
                "functionCall": {"name": name, "args": args},
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
