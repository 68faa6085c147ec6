//! The OpenAI provider against an HTTP double speaking OpenAI's wire format.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use switchyard_config::{ProviderConfig, Secret};
use switchyard_proto::gateway::v1::{ChatChunk, ChatSpec, FinishReason};

use super::double::{self, Double, Script};
use super::*;
use crate::conformance::{Harness, Target, Upstream};
use crate::registry::http_client;

const KEY: &str = "sk-test-0123456789";

fn config(base_url: &str) -> ProviderConfig {
    let mut c: ProviderConfig =
        serde_json::from_value(json!({"name": "openai", "kind": "openai"})).unwrap();
    c.base_url = Some(base_url.to_owned());
    c.api_key = Some(Secret::new(KEY));
    c
}

fn spec_from(client_request: Value) -> ChatSpec {
    let req: wire::ChatCompletionRequest = serde_json::from_value(client_request).unwrap();
    convert::request_to_spec(req).unwrap().0
}

fn call(text: &str) -> ChatCall {
    ChatCall {
        spec: spec_from(
            json!({"model": "chat-default", "messages": [{"role": "user", "content": text}]}),
        ),
        upstream_model: "gpt-4o-mini".into(),
        request_id: "req-42".into(),
        timeout: None,
    }
}

async fn provider_for(script: Script) -> (OpenAiProvider, Double) {
    let (d, _) = Double::start(script).await;
    let p = OpenAiProvider::new(&config(&d.base_url()), http_client()).unwrap();
    (p, d)
}

struct OpenAiHarness;

#[async_trait::async_trait]
impl Harness for OpenAiHarness {
    async fn start(&self, upstream: Upstream) -> Target {
        let status =
            |status: u16, headers: Vec<(&'static str, String)>, body: Value| Script::Status {
                status,
                headers,
                body,
            };
        let script = match upstream {
            Upstream::Refused => {
                // A port nothing listens on: bound, then released.
                let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                let addr = l.local_addr().unwrap();
                drop(l);
                let p = OpenAiProvider::new(&config(&format!("http://{addr}/v1")), http_client())
                    .unwrap();
                return Target {
                    provider: Arc::new(p),
                    call: call("Hi"),
                    upstream_closed: None,
                    guard: Box::new(()),
                };
            }
            Upstream::Answer => Script::Answer,
            Upstream::RateLimited { retry_after } => status(
                429,
                vec![
                    ("retry-after", retry_after.as_secs().to_string()),
                    ("x-ratelimit-remaining-requests", "0".into()),
                ],
                double::error_json(
                    "Rate limit reached for gpt-4o-mini in organization org-x on requests per min (RPM): Limit 3, Used 3, Requested 1.",
                    "requests",
                    None,
                    Some("rate_limit_exceeded"),
                ),
            ),
            Upstream::ServerError => status(
                500,
                vec![],
                double::error_json(
                    "The server had an error while processing your request. Sorry about that!",
                    "server_error",
                    None,
                    None,
                ),
            ),
            Upstream::Overloaded => status(
                503,
                vec![],
                double::error_json(
                    "The engine is currently overloaded, please try again later",
                    "server_error",
                    None,
                    None,
                ),
            ),
            Upstream::BadRequest { message } => status(
                400,
                vec![],
                double::error_json(
                    &message,
                    "invalid_request_error",
                    Some("temperature"),
                    Some("decimal_above_max_value"),
                ),
            ),
            Upstream::ContextTooLong => status(
                400,
                vec![],
                double::error_json(
                    "This model's maximum context length is 128000 tokens. However, your messages resulted in 130211 tokens. Please reduce the length of the messages.",
                    "invalid_request_error",
                    Some("messages"),
                    Some("context_length_exceeded"),
                ),
            ),
            Upstream::Hang => Script::Hang,
            Upstream::StallAfterHeaders => Script::StallAfterHeaders,
            Upstream::EndlessStream => Script::Endless,
            Upstream::Unauthorized => status(
                401,
                vec![],
                double::error_json(
                    "Incorrect API key provided: sk-test. You can find your API key at https://platform.openai.com/account/api-keys.",
                    "invalid_request_error",
                    None,
                    Some("invalid_api_key"),
                ),
            ),
            Upstream::ToolCall => Script::ToolCall,
        };
        let (d, closed) = Double::start(script).await;
        let p = OpenAiProvider::new(&config(&d.base_url()), http_client()).unwrap();
        Target {
            provider: Arc::new(p),
            call: call("Hi"),
            upstream_closed: Some(Box::pin(async move {
                let _ = closed.await;
            })),
            guard: Box::new(d),
        }
    }
}

mod conformance {
    crate::provider_conformance!(super::OpenAiHarness);
}

#[tokio::test]
async fn sends_openai_requests_upstream() {
    let (d, _) = Double::start(Script::Answer).await;
    let mut cfg = config(&d.base_url());
    cfg.headers
        .insert("OpenAI-Organization".into(), "org-1".into());
    let p = OpenAiProvider::new(&cfg, http_client()).unwrap();
    let client_request = json!({
        "model": "chat-default",
        "messages": [
            {"role": "system", "content": "Be terse."},
            {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}
        ],
        "max_tokens": 50,
        "logprobs": true,
        "x_vendor_knob": {"a": 1}
    });
    let c = ChatCall {
        spec: spec_from(client_request.clone()),
        ..call("unused")
    };

    p.chat(&c).await.unwrap();
    let chunks: Vec<_> = p.chat_stream(&c).await.unwrap().collect().await;
    assert!(chunks.iter().all(Result::is_ok));

    let reqs = d.requests();
    assert_eq!(reqs.len(), 2);
    for r in &reqs {
        assert_eq!(r.headers["authorization"], format!("Bearer {KEY}"));
        assert_eq!(r.headers["openai-organization"], "org-1");
        assert_eq!(r.headers["content-type"], "application/json");
        assert!(r.headers.get("x-request-id").is_none());
        assert_eq!(r.body["model"], "gpt-4o-mini");
        assert_eq!(r.body["messages"], client_request["messages"]);
        assert_eq!(r.body["logprobs"], true);
        assert_eq!(r.body["x_vendor_knob"], json!({"a": 1}));
        // Not OpenAI itself: the spelling every compatible vendor accepts.
        assert_eq!(r.body["max_tokens"], 50);
        assert!(r.body.get("max_completion_tokens").is_none());
    }
    assert!(reqs[0].body.get("stream").is_none());
    assert!(reqs[0].body.get("stream_options").is_none());
    // The client did not ask for usage; the gateway always does.
    assert_eq!(reqs[1].body["stream"], true);
    assert_eq!(
        reqs[1].body["stream_options"],
        json!({"include_usage": true})
    );
    assert_eq!(reqs[1].headers["accept"], "text/event-stream");
}

#[tokio::test]
async fn answers_convert_to_canonical() {
    let (p, _d) = provider_for(Script::Answer).await;
    let r = p.chat(&call("Hi")).await.unwrap();
    assert_eq!(r.id, "chatcmpl-double");
    assert_eq!(r.model, "gpt-4o-mini");
    assert_eq!(r.system_fingerprint, "fp_double");
    let m = r.choices[0].message.as_ref().unwrap();
    assert_eq!(
        m.extra.as_ref().unwrap().fields.len(),
        1,
        "annotations kept: {:?}",
        m.extra
    );
    let u = r.usage.unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (12, 9, 21)
    );
}

#[tokio::test]
async fn endpoint_keeps_the_base_path_and_query() {
    let http = http_client();
    let endpoint = |base: &str| {
        OpenAiProvider::new(&config(base), http.clone())
            .unwrap()
            .endpoint
            .to_string()
    };
    assert_eq!(
        endpoint("https://api.openai.com/v1"),
        "https://api.openai.com/v1/chat/completions"
    );
    assert_eq!(
        endpoint("http://localhost:11434/v1/"),
        "http://localhost:11434/v1/chat/completions"
    );
    assert_eq!(
        endpoint("https://x.openai.azure.com/openai/deployments/gpt4o?api-version=2024-10-21"),
        "https://x.openai.azure.com/openai/deployments/gpt4o/chat/completions?api-version=2024-10-21"
    );
    let p = OpenAiProvider::new(&config("https://api.openai.com/v1"), http.clone()).unwrap();
    assert_eq!(
        p.preset.max_tokens_field,
        MaxTokensField::MaxCompletionTokens
    );
    assert!(!format!("{p:?}").contains(KEY));
}

#[tokio::test]
async fn no_key_means_no_authorization_header() {
    let (d, _) = Double::start(Script::Answer).await;
    let mut cfg = config(&d.base_url());
    cfg.api_key = None;
    let p = OpenAiProvider::new(&cfg, http_client()).unwrap();
    p.chat(&call("Hi")).await.unwrap();
    assert!(d.requests()[0].headers.get("authorization").is_none());
}

#[tokio::test]
async fn the_configured_timeout_applies_when_the_call_has_none() {
    let (d, _) = Double::start(Script::Hang).await;
    let mut cfg = config(&d.base_url());
    cfg.timeout = Duration::from_millis(150);
    let p = OpenAiProvider::new(&cfg, http_client()).unwrap();
    assert_eq!(
        p.chat(&call("Hi")).await,
        Err(ProviderError::Timeout(Duration::from_millis(150)))
    );
    // A caller's longer deadline does not extend the configured one.
    let mut c = call("Hi");
    c.timeout = Some(Duration::from_secs(30));
    assert_eq!(
        p.chat(&c).await,
        Err(ProviderError::Timeout(Duration::from_millis(150)))
    );
}

#[tokio::test]
async fn an_upstream_echoing_the_key_is_scrubbed() {
    let body = double::error_json(
        &format!(
            "Incorrect API key provided: {KEY}. You can find your API key at https://platform.openai.com/account/api-keys."
        ),
        "invalid_request_error",
        None,
        Some("invalid_api_key"),
    );
    let (p, _d) = provider_for(Script::Status {
        status: 401,
        headers: vec![],
        body,
    })
    .await;
    for e in [
        p.chat(&call("Hi")).await.unwrap_err(),
        p.chat_stream(&call("Hi")).await.err().unwrap(),
    ] {
        let ProviderError::Auth {
            message,
            status: 401,
        } = &e
        else {
            panic!("{e:?}")
        };
        assert!(!message.contains(KEY), "{message}");
        assert!(message.contains("Incorrect API key provided: [redacted]."));
    }
}

#[tokio::test]
async fn an_error_body_with_status_200_is_classified() {
    let body = double::error_json(
        "Rate limit reached",
        "requests",
        None,
        Some("rate_limit_exceeded"),
    );
    let (p, _d) = provider_for(Script::Json(body)).await;
    assert!(matches!(
        p.chat(&call("Hi")).await,
        Err(ProviderError::RateLimited { .. })
    ));
    assert!(matches!(
        p.chat_stream(&call("Hi")).await.err(),
        Some(ProviderError::RateLimited { .. })
    ));
}

#[tokio::test]
async fn an_undecodable_answer_is_invalid_response() {
    let (p, _d) = provider_for(Script::Json(json!({"answer": "hello"}))).await;
    assert!(matches!(
        p.chat(&call("Hi")).await,
        Err(ProviderError::InvalidResponse(_))
    ));
}

#[tokio::test]
async fn a_json_answer_to_a_stream_request_becomes_chunks() {
    let (p, _d) = provider_for(Script::Json(double::answer_json("gpt-4o-mini"))).await;
    let chunks: Vec<ChatChunk> = p
        .chat_stream(&call("Hi"))
        .await
        .unwrap()
        .map(Result::unwrap)
        .collect()
        .await;
    assert_eq!(chunks.len(), 3);
    assert_eq!(
        chunks[0].choices[0].content.as_deref(),
        Some(double::answer_text().as_str())
    );
    assert_eq!(chunks[1].choices[0].finish_reason(), FinishReason::Stop);
    assert!(chunks[2].choices.is_empty());
    assert_eq!(chunks[2].usage.unwrap().total_tokens, 21);
}

#[tokio::test]
async fn stream_errors_before_and_after_the_first_chunk() {
    let err = double::error_json(
        "The server had an error processing your request.",
        "server_error",
        None,
        None,
    )
    .to_string();
    let (p, _d) = provider_for(Script::Sse(vec![err.clone()])).await;
    assert!(matches!(
        p.chat_stream(&call("Hi")).await.err(),
        Some(ProviderError::Upstream { status: 500, .. })
    ));

    let events = vec![
        double::role_chunk("m", true).to_string(),
        double::content_chunk("m", "partial", true).to_string(),
        err,
    ];
    let (p, _d) = provider_for(Script::Sse(events)).await;
    let items: Vec<_> = p.chat_stream(&call("Hi")).await.unwrap().collect().await;
    assert_eq!(items.len(), 3);
    assert!(items[0].is_ok() && items[1].is_ok());
    assert!(matches!(
        items[2],
        Err(ProviderError::Upstream { status: 500, .. })
    ));
}

#[tokio::test]
async fn a_stream_cut_before_it_finished_ends_in_an_error() {
    let events = vec![
        double::role_chunk("m", true).to_string(),
        double::content_chunk("m", "half", true).to_string(),
    ];
    let (p, _d) = provider_for(Script::Sse(events)).await;
    let items: Vec<_> = p.chat_stream(&call("Hi")).await.unwrap().collect().await;
    assert!(matches!(
        items.last(),
        Some(Err(ProviderError::Connection(_)))
    ));
}

#[test]
fn azure_puts_the_deployment_in_the_path_and_the_key_in_api_key() {
    let mut cfg = config("https://my-res.openai.azure.com");
    cfg.kind = switchyard_config::ProviderKind::AzureOpenai;
    let p = OpenAiProvider::new(&cfg, http_client()).unwrap();
    assert_eq!(
        p.chat_url("gpt4o-prod").as_str(),
        "https://my-res.openai.azure.com/openai/deployments/gpt4o-prod/chat/completions?api-version=2024-10-21"
    );
    assert_eq!(
        p.operation_url("embed-small", &["embeddings"]).as_str(),
        "https://my-res.openai.azure.com/openai/deployments/embed-small/embeddings?api-version=2024-10-21"
    );
    assert_eq!(p.headers.get("api-key").unwrap(), KEY);
    assert!(p.headers.get("authorization").is_none());
    assert_eq!(p.kind(), "azure-openai");

    cfg.api_version = Some("2025-04-01-preview".into());
    let p = OpenAiProvider::new(&cfg, http_client()).unwrap();
    assert!(
        p.chat_url("d")
            .as_str()
            .ends_with("?api-version=2025-04-01-preview")
    );
}

#[test]
fn operation_urls_replace_chat_completions() {
    let p = OpenAiProvider::new(&config("http://localhost:8000/v1"), http_client()).unwrap();
    assert_eq!(
        p.operation_url("m", &["images", "generations"]).as_str(),
        "http://localhost:8000/v1/images/generations"
    );
}

#[tokio::test]
async fn a_vendor_kind_speaks_its_dialect() {
    let (d, _) = Double::start(Script::Answer).await;
    let mut cfg = config(&d.base_url());
    cfg.kind = switchyard_config::ProviderKind::Mistral;
    let p = OpenAiProvider::new(&cfg, http_client()).unwrap();
    assert_eq!(p.kind(), "mistral");
    let mut c = call("Hi");
    c.spec = spec_from(json!({
        "model": "m", "messages": [{"role": "user", "content": "Hi"}],
        "seed": 3, "max_tokens": 50,
    }));
    p.chat(&c).await.unwrap();
    let body = &d.requests()[0].body;
    assert_eq!(body["random_seed"], 3);
    assert_eq!(body["max_tokens"], 50);
    assert!(body.get("seed").is_none() && body.get("max_completion_tokens").is_none());
}
