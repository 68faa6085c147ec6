//! The OpenAI provider against an HTTP double speaking OpenAI's wire format.

use std::time::Duration;

use serde_json::json;
use switchyard_config::{ProviderConfig, ProviderKind};
use switchyard_proto::gateway::v1::FinishReason;

use super::double::{self, Double, Script};
use super::*;
use crate::conformance::{Upstream, both_errors};
use crate::registry::http_client;
use crate::test_support::{self, spec_from, stream_items, user_says};

const KEY: &str = "sk-test-0123456789";

fn config(base_url: &str) -> ProviderConfig {
    test_support::config(ProviderKind::Openai, base_url, Some(KEY))
}

fn call(text: &str) -> ChatCall {
    test_support::chat_call(user_says(text), "gpt-4o-mini")
}

async fn provider_for(script: Script) -> (OpenAiProvider, Double) {
    let (d, _) = Double::start(script).await;
    let p = OpenAiProvider::new(&config(&d.base_url()), http_client()).unwrap();
    (p, d)
}

/// The wire's answer to each failing [`Upstream`].
fn error_answer(upstream: Upstream) -> Script {
    match upstream {
        Upstream::RateLimited { retry_after } => Script::status(
            429,
            double::error_json(
                "Rate limit reached for gpt-4o-mini in organization org-x on requests per min (RPM): Limit 3, Used 3, Requested 1.",
                "requests",
                None,
                Some("rate_limit_exceeded"),
            ),
        )
        .with_header("retry-after", retry_after.as_secs().to_string())
        .with_header("x-ratelimit-remaining-requests", "0"),
        Upstream::ServerError => Script::status(
            500,
            double::error_json(
                "The server had an error while processing your request. Sorry about that!",
                "server_error",
                None,
                None,
            ),
        ),
        Upstream::Overloaded => Script::status(
            503,
            double::error_json(
                "The engine is currently overloaded, please try again later",
                "server_error",
                None,
                None,
            ),
        ),
        Upstream::BadRequest { message } => Script::status(
            400,
            double::error_json(
                &message,
                "invalid_request_error",
                Some("temperature"),
                Some("decimal_above_max_value"),
            ),
        ),
        Upstream::ContextTooLong => Script::status(
            400,
            double::error_json(
                "This model's maximum context length is 128000 tokens. However, your messages resulted in 130211 tokens. Please reduce the length of the messages.",
                "invalid_request_error",
                Some("messages"),
                Some("context_length_exceeded"),
            ),
        ),
        Upstream::Unauthorized => Script::status(
            401,
            double::error_json(
                "Incorrect API key provided: sk-test. You can find your API key at https://platform.openai.com/account/api-keys.",
                "invalid_request_error",
                None,
                Some("invalid_api_key"),
            ),
        ),
        other => unreachable!("{other:?} is not an error answer"),
    }
}

mod conformance {
    use super::*;

    crate::provider_conformance!(test_support::DoubleHarness {
        errors: error_answer,
        start: |s| Box::pin(Double::start(s)),
        build: |url| OpenAiProvider::new(&config(url), http_client()).unwrap(),
        call: || call("Hi"),
    });
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
    let chunks = stream_items(&p, &c).await;
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
    let (p, _d) = provider_for(Script::status(401, body)).await;
    for e in both_errors(&p, &call("Hi")).await {
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
    let chunks = test_support::whole_answer_as_chunks(&p, &call("Hi")).await;
    assert_eq!(chunks[1].choices[0].finish_reason(), FinishReason::Stop);
    assert!(chunks[2].choices.is_empty());
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
    let (p, _d) = provider_for(Script::Events(vec![err.clone()])).await;
    assert!(matches!(
        p.chat_stream(&call("Hi")).await.err(),
        Some(ProviderError::Upstream { status: 500, .. })
    ));

    let events = vec![
        double::role_chunk("m", true).to_string(),
        double::content_chunk("m", "partial", true).to_string(),
        err,
    ];
    let (p, _d) = provider_for(Script::Events(events)).await;
    let items = stream_items(&p, &call("Hi")).await;
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
    let (p, _d) = provider_for(Script::Events(events)).await;
    let items = stream_items(&p, &call("Hi")).await;
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
    assert_eq!(p.up.headers.get("api-key").unwrap(), KEY);
    assert!(p.up.headers.get("authorization").is_none());
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
