//! A Bedrock runtime double: a real HTTP server on 127.0.0.1 (port 0)
//! speaking Bedrock's wire format: `POST /model/{modelId}/converse` (JSON),
//! `/converse-stream` (`application/vnd.amazon.eventstream` binary frames),
//! `/invoke` (Titan and Cohere embedding bodies), AWS error bodies
//! (`{"message"}` with `x-amzn-errortype`). It checks the credentials as
//! Bedrock's front door would (a well-formed SigV4 Authorization header for
//! the expected region and service, or the expected bearer key), and records
//! every request's path, headers and body.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Response, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::routing::post;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::bedrock::eventstream::{event, exception};
use crate::bedrock::sign::parse_authorization;
use crate::test_support::answer_text;
use crate::test_support::{self, PIECES, Wire};

pub const REQUEST_ID: &str = "5b2f8c1e-7a3d-4e0b-9c6f-1d2e3f4a5b6c";

/// Bedrock's framing: binary event-stream frames, written as they are;
/// `x-amzn-requestid` on every answer.
pub struct Bedrock;

impl Wire for Bedrock {
    type Event = Vec<u8>;
    const BASE_PATH: &'static str = "";
    const JSON_HEADERS: &'static [(&'static str, &'static str)] = &[
        ("content-type", "application/json"),
        ("x-amzn-requestid", REQUEST_ID),
    ];
    const STREAM_HEADERS: &'static [(&'static str, &'static str)] = &[
        ("content-type", "application/vnd.amazon.eventstream"),
        ("x-amzn-requestid", REQUEST_ID),
    ];

    fn frame(frame: &Vec<u8>) -> Bytes {
        Bytes::from(frame.clone())
    }
}

/// What the double accepts as credentials.
#[derive(Debug, Clone)]
pub enum Expect {
    /// A well-formed SigV4 header for this region, service `bedrock`.
    SigV4 { region: String },
    /// `Authorization: Bearer <key>`.
    Bearer(String),
}

/// [`Script::Answer`] is Converse's answer: JSON, or event-stream frames on
/// `converse-stream`; embeddings on `invoke`. [`Script::Endless`] sends
/// messageStart and one text delta. [`Script::ToolCall`] streams the input
/// split over two deltas. [`Script::Events`] are raw frames.
pub type Script = test_support::Script<Vec<u8>>;
pub type Double = test_support::Double<Bedrock, Captured, Expect>;
type Shared = test_support::Shared<Bedrock, Captured, Expect>;

#[derive(Debug, Clone)]
pub struct Captured {
    /// The path as sent, still percent-encoded.
    pub path: String,
    /// The model id, decoded.
    pub model: String,
    pub headers: HeaderMap,
    pub body: Value,
    /// The body's bytes as received (what the signature covers).
    pub raw: Bytes,
}

impl Double {
    pub async fn start(script: Script, expect: Expect) -> (Self, oneshot::Receiver<()>) {
        let routes = Router::new().route("/model/{model}/{op}", post(handle));
        Self::serve(script, expect, routes).await
    }
}

/// Why the front door refuses the request, if it does.
fn check_auth(expect: &Expect, headers: &HeaderMap) -> Option<String> {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    match expect {
        Expect::Bearer(key) => (auth != Some(format!("Bearer {key}").as_str()))
            .then(|| "Invalid API Key format: Must start with pre-defined prefix".to_owned()),
        Expect::SigV4 { region } => {
            let Some(auth) = auth else {
                return Some("Missing Authentication Token".into());
            };
            let signed = match parse_authorization(auth, region, "bedrock") {
                Ok(s) => s,
                Err(e) => return Some(format!("Authorization header malformed: {e}")),
            };
            let date = headers.get("x-amz-date").and_then(|v| v.to_str().ok());
            let credential_date = auth
                .split("Credential=")
                .nth(1)
                .and_then(|c| c.split('/').nth(1));
            match (date, credential_date) {
                (Some(d), Some(c)) if d.len() == 16 && d.starts_with(c) && d.ends_with('Z') => {}
                _ => {
                    return Some(
                        "x-amz-date is missing or disagrees with the credential scope".into(),
                    );
                }
            }
            if headers.contains_key("x-amz-security-token")
                && !signed.iter().any(|h| h == "x-amz-security-token")
            {
                return Some("the session token is not signed".into());
            }
            None
        }
    }
}

/// `op` is `converse`, `converse-stream` or `invoke`.
async fn handle(
    State(s): State<Arc<Shared>>,
    Path((model, op)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
    raw: Bytes,
) -> Response<Body> {
    if !["converse", "converse-stream", "invoke"].contains(&op.as_str()) {
        return StatusCode::NOT_FOUND.into_response();
    }
    let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    s.record(Captured {
        path: uri.path().to_owned(),
        model: model.clone(),
        headers: headers.clone(),
        body: body.clone(),
        raw,
    });
    if let Some(why) = check_auth(&s.ext, &headers) {
        return Bedrock::json(
            403,
            &[(
                "x-amzn-errortype",
                error_type("UnrecognizedClientException"),
            )],
            &json!({ "message": why }),
        );
    }

    let endless_head = || {
        vec![
            event(
                "messageStart",
                &json!({"p": "abcdefghij", "role": "assistant"}),
            ),
            event(
                "contentBlockDelta",
                &json!({"contentBlockIndex": 0, "delta": {"text": "tick"}, "p": "abcd"}),
            ),
        ]
    };
    if let Some(r) = s.scripted(endless_head).await {
        return r;
    }
    match (&s.script, op.as_str()) {
        (Script::ToolCall, "converse-stream") => Bedrock::events(tool_call_frames()),
        (Script::ToolCall, _) => Bedrock::json(200, &[], &tool_call_json()),
        (_, "converse-stream") => Bedrock::events(answer_frames()),
        (_, "invoke") => embeddings(&model, &body),
        _ => Bedrock::json(200, &[], &answer_json()),
    }
}

/// The `x-amzn-errortype` value Bedrock sends.
pub fn error_type(kind: &str) -> String {
    format!("{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/")
}

pub fn usage_json() -> Value {
    json!({"inputTokens": 12, "outputTokens": 9, "totalTokens": 21})
}

pub fn answer_json() -> Value {
    json!({
        "output": {"message": {"role": "assistant", "content": [{"text": answer_text()}]}},
        "stopReason": "end_turn",
        "usage": usage_json(),
        "metrics": {"latencyMs": 412}
    })
}

/// Bedrock pads event payloads with a `p` field of varying length.
pub fn answer_frames() -> Vec<Vec<u8>> {
    let mut out = vec![event(
        "messageStart",
        &json!({"p": "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUV", "role": "assistant"}),
    )];
    out.extend(PIECES.iter().map(|p| {
        event(
            "contentBlockDelta",
            &json!({"contentBlockIndex": 0, "delta": {"text": p}, "p": "abcdefgh"}),
        )
    }));
    out.push(event(
        "contentBlockStop",
        &json!({"contentBlockIndex": 0, "p": "abc"}),
    ));
    out.push(event(
        "messageStop",
        &json!({"p": "abcdefghijk", "stopReason": "end_turn"}),
    ));
    out.push(event(
        "metadata",
        &json!({"metrics": {"latencyMs": 412}, "p": "abcdef", "usage": usage_json()}),
    ));
    out
}

pub fn tool_call_json() -> Value {
    json!({
        "output": {"message": {"role": "assistant", "content": [
            {"toolUse": {"toolUseId": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "name": "get_weather", "input": {"city": "Paris"}}}
        ]}},
        "stopReason": "tool_use",
        "usage": usage_json(),
        "metrics": {"latencyMs": 388}
    })
}

pub fn tool_call_frames() -> Vec<Vec<u8>> {
    vec![
        event(
            "messageStart",
            &json!({"p": "abcdefgh", "role": "assistant"}),
        ),
        event(
            "contentBlockStart",
            &json!({"contentBlockIndex": 0, "p": "abc", "start": {"toolUse": {"name": "get_weather", "toolUseId": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q"}}}),
        ),
        event(
            "contentBlockDelta",
            &json!({"contentBlockIndex": 0, "delta": {"toolUse": {"input": "{\"city\":"}}, "p": "ab"}),
        ),
        event(
            "contentBlockDelta",
            &json!({"contentBlockIndex": 0, "delta": {"toolUse": {"input": "\"Paris\"}"}}, "p": "abcd"}),
        ),
        event(
            "contentBlockStop",
            &json!({"contentBlockIndex": 0, "p": "a"}),
        ),
        event(
            "messageStop",
            &json!({"p": "abcdef", "stopReason": "tool_use"}),
        ),
        event(
            "metadata",
            &json!({"metrics": {"latencyMs": 388}, "p": "ab", "usage": usage_json()}),
        ),
    ]
}

/// A ConverseStream exception frame, for tests.
pub fn exception_frame(kind: &str, message: &str) -> Vec<u8> {
    exception(kind, message)
}

/// A deterministic vector for a text: its length, its first byte, and
/// `dims - 2` copies of 0.5.
pub fn vector_for(text: &str, dims: usize) -> Vec<f32> {
    let mut v = vec![
        text.len() as f32,
        f32::from(text.bytes().next().unwrap_or(0)),
    ];
    v.resize(dims.max(2), 0.5);
    v
}

fn embeddings(model: &str, body: &Value) -> Response<Body> {
    if model.contains("titan-embed") {
        let text = body["inputText"].as_str().unwrap_or_default();
        let dims = body["dimensions"].as_u64().unwrap_or(4) as usize;
        return Bedrock::json(
            200,
            &[(
                "x-amzn-bedrock-input-token-count",
                text.split_whitespace().count().to_string(),
            )],
            &json!({
                "embedding": vector_for(text, dims),
                "embeddingsByType": {"float": vector_for(text, dims)},
                "inputTextTokenCount": text.split_whitespace().count()
            }),
        );
    }
    let texts: Vec<String> = serde_json::from_value(body["texts"].clone()).unwrap_or_default();
    let tokens: usize = texts.iter().map(|t| t.split_whitespace().count()).sum();
    Bedrock::json(
        200,
        &[("x-amzn-bedrock-input-token-count", tokens.to_string())],
        &json!({
            "id": "emb-double",
            "embeddings": texts.iter().map(|t| vector_for(t, 4)).collect::<Vec<_>>(),
            "response_type": "embeddings_floats",
            "texts": texts
        }),
    )
}
