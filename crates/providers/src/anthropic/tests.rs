//! The Anthropic provider against an HTTP double speaking the Messages API.

use std::time::Duration;

use serde_json::{Value, json};
use switchyard_config::{ProviderConfig, ProviderKind};
use switchyard_proto::gateway::v1::{ChatSpec, FinishReason, content_part::Part};
use switchyard_proto::json::map_from_struct_ref;

use super::double::{self, Double, Script};
use super::*;
use crate::conformance::{Upstream, both_errors};
use crate::registry::http_client;
use crate::test_support::{self, spec_from, stream_items, user_says};

const KEY: &str = "sk-ant-test-0123456789";

fn config(base_url: &str) -> ProviderConfig {
    test_support::config(ProviderKind::Anthropic, base_url, Some(KEY))
}

fn call_with(spec: ChatSpec, model: &str) -> ChatCall {
    ChatCall {
        spec,
        upstream_model: model.into(),
        request_id: "req-42".into(),
        timeout: None,
    }
}

fn call(text: &str) -> ChatCall {
    test_support::chat_call(user_says(text), "claude-sonnet-4-5")
}

async fn provider_for(script: Script) -> (AnthropicProvider, Double) {
    let (d, _) = Double::start(script).await;
    let p = AnthropicProvider::new(&config(&d.base_url()), http_client()).unwrap();
    (p, d)
}

/// The wire's answer to each failing [`Upstream`].
fn error_answer(upstream: Upstream) -> Script {
    let error =
        |status, kind, message: &str| Script::status(status, double::error_json(kind, message));
    match upstream {
        Upstream::RateLimited { retry_after } => error(
            429,
            "rate_limit_error",
            "This request would exceed the rate limit for your organization of 50 requests per minute.",
        )
        .with_header("retry-after", retry_after.as_secs().to_string())
        .with_header("anthropic-ratelimit-requests-remaining", "0"),
        Upstream::ServerError => error(500, "api_error", "Internal server error"),
        Upstream::Overloaded => error(529, "overloaded_error", "Overloaded"),
        Upstream::BadRequest { message } => error(400, "invalid_request_error", &message),
        Upstream::ContextTooLong => error(
            400,
            "invalid_request_error",
            "prompt is too long: 208310 tokens > 200000 maximum",
        ),
        Upstream::Unauthorized => error(401, "authentication_error", "invalid x-api-key"),
        other => unreachable!("{other:?} is not an error answer"),
    }
}

mod conformance {
    use super::*;

    crate::provider_conformance!(test_support::DoubleHarness {
        errors: error_answer,
        start: |s| Box::pin(Double::start(s)),
        build: |url| AnthropicProvider::new(&config(url), http_client()).unwrap(),
        call: || call("Hi"),
    });
}

/// Sends `client_request` (OpenAI-shaped, as the router receives it) through
/// the provider, streamed and not, and returns the two bodies the double
/// received after checking they differ only in `stream`.
async fn upstream_body(client_request: Value, model: &str) -> Value {
    let (p, d) = provider_for(Script::Answer).await;
    let c = call_with(spec_from(client_request), model);
    p.chat(&c).await.unwrap();
    let items = stream_items(&p, &c).await;
    assert!(items.iter().all(Result::is_ok), "{items:?}");
    let reqs = d.requests();
    assert_eq!(reqs.len(), 2);
    let mut streamed = reqs[1].body.clone();
    assert_eq!(streamed["stream"], true);
    streamed.as_object_mut().unwrap().remove("stream");
    assert_eq!(
        streamed, reqs[0].body,
        "stream: true is the only difference"
    );
    reqs[0].body.clone()
}

#[tokio::test]
async fn sends_anthropic_headers() {
    let (d, _) = Double::start(Script::Answer).await;
    let mut cfg = config(&d.base_url());
    cfg.headers
        .insert("anthropic-beta".into(), "prompt-caching-2024-07-31".into());
    let p = AnthropicProvider::new(&cfg, http_client()).unwrap();
    p.chat(&call("Hi")).await.unwrap();
    let _ = stream_items(&p, &call("Hi")).await;
    let reqs = d.requests();
    for r in &reqs {
        assert_eq!(r.headers["x-api-key"], KEY);
        assert!(r.headers.get("authorization").is_none());
        assert_eq!(r.headers["anthropic-version"], "2023-06-01");
        assert_eq!(r.headers["anthropic-beta"], "prompt-caching-2024-07-31");
        assert_eq!(r.headers["content-type"], "application/json");
    }
    assert_eq!(reqs[1].headers["accept"], "text/event-stream");

    let mut cfg = config(&d.base_url());
    cfg.api_version = Some("2024-01-01".into());
    cfg.api_key = None;
    let p = AnthropicProvider::new(&cfg, http_client()).unwrap();
    p.chat(&call("Hi")).await.unwrap();
    let last = d.requests().pop().unwrap();
    assert_eq!(last.headers["anthropic-version"], "2024-01-01");
    assert!(last.headers.get("x-api-key").is_none());
    assert!(!format!("{p:?}").contains(KEY));
}

#[tokio::test]
async fn golden_system_lifting_and_default_max_tokens() {
    let body = upstream_body(
        json!({"model": "m", "messages": [
            {"role": "system", "content": "Be terse."},
            {"role": "user", "content": "Hi"},
            {"role": "developer", "content": "Use metric units."},
            {"role": "user", "content": "Weather?"}
        ]}),
        "claude-sonnet-4-5-20250929",
    )
    .await;
    assert_eq!(
        body,
        json!({
            "model": "claude-sonnet-4-5-20250929",
            "max_tokens": 64000,
            "system": [
                {"type": "text", "text": "Be terse."},
                {"type": "text", "text": "Use metric units."}
            ],
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "Hi"},
                    {"type": "text", "text": "Weather?"}
                ]}
            ]
        })
    );

    let body = upstream_body(
        json!({"model": "m", "max_tokens": 100, "messages": [
            {"role": "system", "content": "Be terse."},
            {"role": "user", "content": "Hi"}
        ]}),
        "claude-3-5-haiku-latest",
    )
    .await;
    assert_eq!(
        body,
        json!({
            "model": "claude-3-5-haiku-latest",
            "max_tokens": 100,
            "system": "Be terse.",
            "messages": [{"role": "user", "content": "Hi"}]
        })
    );
}

#[test]
fn max_tokens_defaults() {
    for (model, n) in [
        ("claude-3-haiku-20240307", 4096),
        ("claude-3-opus-latest", 4096),
        ("claude-3-5-sonnet-20241022", 8192),
        ("claude-3-5-haiku-latest", 8192),
        ("claude-3-7-sonnet-latest", 64000),
        ("claude-sonnet-4-20250514", 64000),
        ("claude-sonnet-4.5", 64000),
        ("anthropic.claude-sonnet-4-5-20250929-v1:0", 64000),
        ("claude-haiku-4-5", 64000),
        ("claude-opus-4-1-20250805", 32000),
        ("some-proxy-model", 4096),
    ] {
        assert_eq!(default_max_tokens(model), n, "{model}");
    }
}

#[tokio::test]
async fn golden_tools_and_a_parallel_tool_round_trip() {
    let body = upstream_body(
        json!({"model": "m", "max_tokens": 300,
            "tools": [
                {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
                {"type": "function", "function": {"name": "get_time"}}
            ],
            "tool_choice": "required",
            "parallel_tool_calls": false,
            "messages": [
                {"role": "user", "content": "Weather and time in Paris?"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                    {"id": "toolu_2", "type": "function", "function": {"name": "get_time", "arguments": ""}}
                ]},
                {"role": "tool", "tool_call_id": "toolu_1", "content": "18C, sunny"},
                {"role": "tool", "tool_call_id": "toolu_2", "content": [{"type": "text", "text": "14:05"}]},
                {"role": "user", "content": "Thanks! Summarize."}
            ]}),
        "claude-sonnet-4-5",
    )
    .await;
    assert_eq!(
        body,
        json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 300,
            "tools": [
                {"name": "get_weather", "description": "Weather for a city",
                    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
                {"name": "get_time", "input_schema": {"type": "object", "properties": {}}}
            ],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
            "messages": [
                {"role": "user", "content": "Weather and time in Paris?"},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
                    {"type": "tool_use", "id": "toolu_2", "name": "get_time", "input": {}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C, sunny"},
                    {"type": "tool_result", "tool_use_id": "toolu_2", "content": [{"type": "text", "text": "14:05"}]},
                    {"type": "text", "text": "Thanks! Summarize."}
                ]}
            ]
        })
    );

    let body = upstream_body(
        json!({"model": "m", "max_tokens": 5,
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
            "tool_choice": {"type": "function", "function": {"name": "f"}},
            "messages": [{"role": "user", "content": "go"}]}),
        "claude-sonnet-4-5",
    )
    .await;
    assert_eq!(body["tool_choice"], json!({"type": "tool", "name": "f"}));
}

#[tokio::test]
async fn golden_structured_output_fallback() {
    let schema =
        json!({"type": "object", "properties": {"temp": {"type": "number"}}, "required": ["temp"]});
    let client = json!({"model": "m", "max_tokens": 50,
        "response_format": {"type": "json_schema", "json_schema": {"name": "weather", "schema": schema, "strict": true}},
        "messages": [{"role": "user", "content": "Paris?"}]});
    let body = upstream_body(client.clone(), "claude-sonnet-4-5").await;
    assert_eq!(
        body,
        json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 50,
            "tools": [{"name": "weather",
                "description": "Respond with a JSON object in this tool's input schema.",
                "input_schema": schema}],
            "tool_choice": {"type": "tool", "name": "weather"},
            "messages": [{"role": "user", "content": "Paris?"}]
        })
    );

    // The forced call comes back as the message text, finish `stop`.
    let answer = json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": [{"type": "tool_use", "id": "toolu_x", "name": "weather", "input": {"temp": 18}}],
        "stop_reason": "tool_use", "stop_sequence": null, "usage": {"input_tokens": 3, "output_tokens": 4}});
    let (p, _d) = provider_for(Script::Json(answer)).await;
    let r = p
        .chat(&call_with(spec_from(client), "claude-sonnet-4-5"))
        .await
        .unwrap();
    let m = r.choices[0].message.as_ref().unwrap();
    assert!(m.tool_calls.is_empty());
    assert_eq!(m.content[0].part, Some(Part::Text("{\"temp\":18}".into())));
    assert_eq!(r.choices[0].finish_reason(), FinishReason::Stop);

    let body = upstream_body(
        json!({"model": "m", "response_format": {"type": "json_object"},
            "messages": [{"role": "user", "content": "JSON please"}]}),
        "claude-3-haiku-20240307",
    )
    .await;
    assert_eq!(body["max_tokens"], 4096);
    assert_eq!(
        body["tools"][0]["input_schema"],
        json!({"type": "object", "additionalProperties": true})
    );
    assert_eq!(
        body["tool_choice"],
        json!({"type": "tool", "name": "json_response"})
    );
}

#[tokio::test]
async fn golden_images() {
    let body = upstream_body(
        json!({"model": "m", "max_tokens": 10, "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "Compare"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "high"}},
                {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0x"}}
            ]}
        ]}),
        "claude-sonnet-4-5",
    )
    .await;
    assert_eq!(
        body["messages"],
        json!([{"role": "user", "content": [
            {"type": "text", "text": "Compare"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
            {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
            {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0x"}}
        ]}])
    );
}

#[tokio::test]
async fn golden_sampling_user_and_extras() {
    let body = upstream_body(
        json!({"model": "m", "max_tokens": 10,
            "temperature": 1.5, "top_p": 0.9, "stop": ["END", "STOP"], "user": "user-7",
            "seed": 3, "presence_penalty": 0.5, "frequency_penalty": 0.5,
            "logprobs": true, "store": true, "metadata": {"tenant": "a"},
            "top_k": 40, "thinking": {"type": "enabled", "budget_tokens": 2048},
            "messages": [{"role": "user", "content": "Hi"}]}),
        "claude-sonnet-4-5",
    )
    .await;
    assert_eq!(
        body,
        json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 10,
            "temperature": 1.0,
            "top_p": 0.9,
            "stop_sequences": ["END", "STOP"],
            "metadata": {"user_id": "user-7"},
            "top_k": 40,
            "thinking": {"type": "enabled", "budget_tokens": 2048},
            "messages": [{"role": "user", "content": "Hi"}]
        })
    );
}

/// A request that came in on /v1/messages reaches an Anthropic upstream
/// with every field it had, known to this gateway or not.
#[tokio::test]
async fn anthropic_dialect_extras_pass_through_whole() {
    let (spec, _) = super::ingress::request_to_spec(
        serde_json::from_value(json!({
            "model": "m", "max_tokens": 32000,
            "thinking": {"type": "enabled", "budget_tokens": 31999},
            "context_management": {"edits": [{"type": "clear_tool_uses_20250919"}]},
            "a_field_from_next_year": {"x": 1},
            "messages": [{"role": "user", "content": "Hi"}]
        }))
        .unwrap(),
    )
    .unwrap();
    let (p, d) = provider_for(Script::Answer).await;
    p.chat(&call_with(spec, "claude-sonnet-4-5")).await.unwrap();
    let body = &d.requests()[0].body;
    assert_eq!(body["thinking"]["budget_tokens"], 31999);
    assert_eq!(
        body["context_management"]["edits"][0]["type"],
        "clear_tool_uses_20250919"
    );
    assert_eq!(body["a_field_from_next_year"]["x"], 1);
}

#[tokio::test]
async fn unsupported_content_fails_before_any_call() {
    let (p, d) = provider_for(Script::Answer).await;
    for (content, param) in [
        (
            json!([{"type": "text", "text": "listen"}, {"type": "input_audio", "input_audio": {"data": "AAA", "format": "wav"}}]),
            "messages[0].content[1]",
        ),
        (
            json!([{"type": "file", "file": {"file_id": "file-abc"}}]),
            "messages[0].content[0]",
        ),
        (
            json!([{"type": "file", "file": {"file_data": "data:text/plain;base64,aGk="}}]),
            "messages[0].content[0]",
        ),
    ] {
        let c = call_with(
            spec_from(json!({"model": "m", "messages": [{"role": "user", "content": content}]})),
            "claude-sonnet-4-5",
        );
        for e in both_errors(&p, &c).await {
            assert!(
                matches!(&e, ProviderError::BadRequest { status: 400, param: Some(pa), code: Some(code), .. }
                    if pa == param && code == "unsupported_parameter"),
                "{e:?}"
            );
        }
    }
    let c = call_with(
        spec_from(json!({"model": "m", "n": 2, "messages": [{"role": "user", "content": "x"}]})),
        "claude-sonnet-4-5",
    );
    assert!(matches!(
        p.chat(&c).await,
        Err(ProviderError::BadRequest { param: Some(p), .. }) if p == "n"
    ));
    assert!(d.requests().is_empty());
}

#[tokio::test]
async fn responses_convert_with_cache_usage_and_thinking() {
    let answer = json!({
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": [
            {"type": "thinking", "thinking": "The user greets me.", "signature": "EqQBCgIYAhIM"},
            {"type": "text", "text": "Hello"},
            {"type": "text", "text": ", world"},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}
        ],
        "stop_reason": "tool_use",
        "stop_sequence": null,
        "usage": {"input_tokens": 20, "cache_creation_input_tokens": 30, "cache_read_input_tokens": 1000, "output_tokens": 15}
    });
    let (p, _d) = provider_for(Script::Json(answer)).await;
    let r = p.chat(&call("Hi")).await.unwrap();
    assert_eq!(r.id, "msg_01XFDUDYJgAACzvnptvVoYEL");
    assert_eq!(r.model, "claude-sonnet-4-5-20250929");
    assert!(r.created > 0);
    let c = &r.choices[0];
    assert_eq!(c.finish_reason(), FinishReason::ToolCalls);
    let m = c.message.as_ref().unwrap();
    assert_eq!(m.content[0].part, Some(Part::Text("Hello, world".into())));
    assert_eq!(m.tool_calls[0].id, "toolu_1");
    assert_eq!(m.tool_calls[0].arguments, "{\"city\":\"Paris\"}");
    let extra = map_from_struct_ref(m.extra.as_ref().unwrap());
    assert_eq!(extra["reasoning_content"], "The user greets me.");
    assert_eq!(
        extra["thinking_blocks"],
        json!([{"type": "thinking", "thinking": "The user greets me.", "signature": "EqQBCgIYAhIM"}])
    );
    let u = r.usage.unwrap();
    assert_eq!(
        (
            u.prompt_tokens,
            u.cached_prompt_tokens,
            u.completion_tokens,
            u.total_tokens
        ),
        (1050, 1000, 15, 1065)
    );

    for (reason, finish) in [
        ("end_turn", FinishReason::Stop),
        ("stop_sequence", FinishReason::Stop),
        ("max_tokens", FinishReason::Length),
        ("refusal", FinishReason::ContentFilter),
    ] {
        let answer = json!({"id": "m", "type": "message", "role": "assistant", "model": "c",
            "content": [{"type": "text", "text": "x"}], "stop_reason": reason, "usage": {"input_tokens": 1, "output_tokens": 1}});
        let (p, _d) = provider_for(Script::Json(answer)).await;
        assert_eq!(
            p.chat(&call("Hi")).await.unwrap().choices[0].finish_reason(),
            finish,
            "{reason}"
        );
    }
}

#[tokio::test]
async fn an_upstream_echoing_the_key_is_scrubbed() {
    let (p, _d) = provider_for(Script::status(
        401,
        double::error_json("authentication_error", &format!("invalid x-api-key: {KEY}")),
    ))
    .await;
    for e in both_errors(&p, &call("Hi")).await {
        let ProviderError::Auth { message, .. } = &e else {
            panic!("{e:?}")
        };
        assert_eq!(message, "invalid x-api-key: [redacted]");
    }
}

#[tokio::test]
async fn an_error_body_with_status_200_is_classified() {
    let (p, _d) = provider_for(Script::Json(double::error_json(
        "overloaded_error",
        "Overloaded",
    )))
    .await;
    assert!(matches!(
        p.chat(&call("Hi")).await,
        Err(ProviderError::Overloaded { .. })
    ));
    let (p, _d) = provider_for(Script::Json(json!({"answer": 1}))).await;
    assert!(matches!(
        p.chat(&call("Hi")).await,
        Err(ProviderError::InvalidResponse(_))
    ));
}

#[tokio::test]
async fn stream_errors_mid_stream_are_classified() {
    let events = vec![
        double::message_start("claude-sonnet-4-5"),
        double::block_start(0, json!({"type": "text", "text": ""})),
        double::block_delta(0, json!({"type": "text_delta", "text": "partial"})),
        double::error_json("overloaded_error", "Overloaded"),
    ];
    let (p, _d) = provider_for(Script::Events(events)).await;
    let items = stream_items(&p, &call("Hi")).await;
    assert_eq!(items.len(), 3);
    assert!(matches!(
        items[2],
        Err(ProviderError::Overloaded { status: 529, .. })
    ));
}

#[tokio::test]
async fn the_configured_timeout_applies() {
    let (d, _) = Double::start(Script::Hang).await;
    let mut cfg = config(&d.base_url());
    cfg.timeout = Duration::from_millis(150);
    let p = AnthropicProvider::new(&cfg, http_client()).unwrap();
    assert_eq!(
        p.chat(&call("Hi")).await,
        Err(ProviderError::Timeout(Duration::from_millis(150)))
    );
}

#[test]
fn endpoints() {
    let e = |base: &str| {
        AnthropicProvider::new(&config(base), http_client())
            .unwrap()
            .endpoint
            .to_string()
    };
    assert_eq!(
        e("https://api.anthropic.com/v1"),
        "https://api.anthropic.com/v1/messages"
    );
    assert_eq!(
        e("http://proxy:8080/anthropic/v1/"),
        "http://proxy:8080/anthropic/v1/messages"
    );
}

#[tokio::test]
async fn thinking_blocks_echoed_by_a_client_go_back_first() {
    let body = upstream_body(
        json!({"model": "m", "max_tokens": 10, "messages": [
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": null,
                "thinking_blocks": [{"type": "thinking", "thinking": "Use the tool.", "signature": "sig"}],
                "tool_calls": [{"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"}
        ]}),
        "claude-sonnet-4-5",
    )
    .await;
    assert_eq!(
        body["messages"][1],
        json!({"role": "assistant", "content": [
            {"type": "thinking", "thinking": "Use the tool.", "signature": "sig"},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}
        ]})
    );
}

/// The Responses API front end served by an Anthropic upstream: text, and
/// a function call, plain and streamed.
#[tokio::test]
async fn responses_api_requests_are_served() {
    let (p, _d) = provider_for(Script::Answer).await;
    for r in test_support::responses_text_served(&p, "claude-sonnet-4-5").await {
        assert!(r["usage"]["output_tokens"].as_u64().unwrap() > 0, "{r}");
    }
    let (p, _d) = provider_for(Script::ToolCall).await;
    for call in test_support::responses_calls_served(&p, "claude-sonnet-4-5").await {
        assert_eq!(call["call_id"], "toolu_01A");
    }
}
