//! A Bedrock runtime double: a real HTTP server on 127.0.0.1 (port 0)
//! speaking Bedrock's wire format: `POST /model/{modelId}/converse` (JSON),
//! `/converse-stream` (`application/vnd.amazon.eventstream` binary frames),
//! `/invoke` (Titan and Cohere embedding bodies), AWS error bodies
//! (`{"message"}` with `x-amzn-errortype`). It checks the credentials as
//! Bedrock's front door would (a well-formed SigV4 Authorization header for
//! the expected region and service, or the expected bearer key), and records
//! every request's path, headers and body.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Response, StatusCode, Uri};
use axum::routing::post;
use futures_util::{StreamExt, stream};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::bedrock::eventstream::{event, exception};
use crate::bedrock::sign::parse_authorization;

/// The answer's text, streamed in these pieces.
pub const PIECES: &[&str] = &[
    "Hello", " there,", " friend!", " How", " can", " I", " help?",
];
pub const REQUEST_ID: &str = "5b2f8c1e-7a3d-4e0b-9c6f-1d2e3f4a5b6c";

/// What the double accepts as credentials.
#[derive(Debug, Clone)]
pub enum Expect {
    /// A well-formed SigV4 header for this region, service `bedrock`.
    SigV4 { region: String },
    /// `Authorization: Bearer <key>`.
    Bearer(String),
}

#[derive(Debug, Clone)]
pub enum Script {
    /// Converse's answer: JSON, or event-stream frames on `converse-stream`;
    /// embeddings on `invoke`.
    Answer,
    /// This status, these headers, this JSON body.
    Status {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: Value,
    },
    /// Read the request, never answer.
    Hang,
    /// 200 with event-stream headers, then nothing.
    StallAfterHeaders,
    /// messageStart and one text delta, then nothing until the client goes
    /// away, which resolves the receiver [`Double::start`] returned.
    Endless,
    /// One call of `get_weather` (`{"city":"Paris"}`), as JSON or streamed
    /// with the input split over two deltas.
    ToolCall,
    /// 200 event-stream with these raw frames, each in its own write.
    Frames(Vec<Vec<u8>>),
    /// 200 `application/json` with this body.
    Json(Value),
}

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

struct Shared {
    script: Script,
    expect: Expect,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Converse,
    ConverseStream,
    Invoke,
}

impl Double {
    pub async fn start(script: Script, expect: Expect) -> (Self, oneshot::Receiver<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel();
        let shared = Arc::new(Shared {
            script,
            expect,
            requests: Mutex::new(Vec::new()),
            closed: Mutex::new(Some(tx)),
        });
        let app = Router::new()
            .route("/model/{model}/converse", post(converse))
            .route("/model/{model}/converse-stream", post(converse_stream))
            .route("/model/{model}/invoke", post(invoke))
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (Self { addr, shared, task }, rx)
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
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

async fn converse(
    s: State<Arc<Shared>>,
    p: Path<String>,
    u: Uri,
    h: HeaderMap,
    b: Bytes,
) -> Response<Body> {
    handle(Op::Converse, s, p, u, h, b).await
}

async fn converse_stream(
    s: State<Arc<Shared>>,
    p: Path<String>,
    u: Uri,
    h: HeaderMap,
    b: Bytes,
) -> Response<Body> {
    handle(Op::ConverseStream, s, p, u, h, b).await
}

async fn invoke(
    s: State<Arc<Shared>>,
    p: Path<String>,
    u: Uri,
    h: HeaderMap,
    b: Bytes,
) -> Response<Body> {
    handle(Op::Invoke, s, p, u, h, b).await
}

async fn handle(
    op: Op,
    State(s): State<Arc<Shared>>,
    Path(model): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response<Body> {
    let raw = body;
    let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    s.requests.lock().unwrap().push(Captured {
        path: uri.path().to_owned(),
        model: model.clone(),
        headers: headers.clone(),
        body: body.clone(),
        raw,
    });
    if let Some(why) = check_auth(&s.expect, &headers) {
        return json(
            403,
            &[(
                "x-amzn-errortype",
                error_type("UnrecognizedClientException"),
            )],
            &json!({ "message": why }),
        );
    }

    match (&s.script, op) {
        (Script::Answer, Op::Converse) => json(200, &[], &answer_json()),
        (Script::Answer, Op::ConverseStream) => frames(answer_frames()),
        (Script::Answer, Op::Invoke) => embeddings(&model, &body),
        (Script::ToolCall, Op::ConverseStream) => frames(tool_call_frames()),
        (Script::ToolCall, _) => json(200, &[], &tool_call_json()),
        (
            Script::Status {
                status,
                headers,
                body,
            },
            _,
        ) => json(*status, headers, body),
        (Script::Hang, _) => futures_util::future::pending().await,
        (Script::StallAfterHeaders, _) => stream_body(Body::from_stream(stream::pending::<
            Result<Bytes, Infallible>,
        >())),
        (Script::Endless, _) => {
            let guard = SignalOnDrop(s.closed.lock().unwrap().take());
            let first = [
                event(
                    "messageStart",
                    &json!({"p": "abcdefghij", "role": "assistant"}),
                ),
                event(
                    "contentBlockDelta",
                    &json!({"contentBlockIndex": 0, "delta": {"text": "tick"}, "p": "abcd"}),
                ),
            ];
            let head = stream::iter(first.map(|f| Ok::<_, Infallible>(Bytes::from(f))));
            let tail = stream::unfold(guard, |g| async move {
                futures_util::future::pending::<()>().await;
                Some((Ok(Bytes::new()), g))
            });
            stream_body(Body::from_stream(head.chain(tail)))
        }
        (Script::Frames(f), _) => frames(f.clone()),
        (Script::Json(v), _) => json(200, &[], v),
    }
}

/// The `x-amzn-errortype` value Bedrock sends.
pub fn error_type(kind: &str) -> String {
    format!("{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/")
}

fn frames(frames: Vec<Vec<u8>>) -> Response<Body> {
    stream_body(Body::from_stream(stream::iter(
        frames
            .into_iter()
            .map(|f| Ok::<_, Infallible>(Bytes::from(f))),
    )))
}

fn stream_body(body: Body) -> Response<Body> {
    Response::builder()
        .status(200)
        .header("content-type", "application/vnd.amazon.eventstream")
        .header("x-amzn-requestid", REQUEST_ID)
        .body(body)
        .unwrap()
}

fn json(status: u16, headers: &[(&'static str, String)], body: &Value) -> Response<Body> {
    let mut b = Response::builder()
        .status(StatusCode::from_u16(status).unwrap())
        .header("content-type", "application/json")
        .header("x-amzn-requestid", REQUEST_ID);
    for (k, v) in headers {
        b = b.header(*k, v);
    }
    b.body(Body::from(body.to_string())).unwrap()
}

pub fn answer_text() -> String {
    PIECES.concat()
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
        return json(
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
    json(
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
