//! The Bedrock provider against an HTTP double speaking Bedrock's wire
//! format, SigV4-signed.

use std::time::Duration;

use serde_json::{Value, json};
use switchyard_config::{AwsCredentials, ProviderConfig, ProviderKind, Secret};
use switchyard_proto::gateway::v1::FinishReason;

use super::double::{self, Double, Expect, Script};
use super::*;
use crate::conformance::{Upstream, both_errors, text};
use crate::registry::http_client;
use crate::test_support::{self, embed_call, stream_items, user_says};

const MODEL: &str = "anthropic.claude-3-5-sonnet-20240620-v1:0";
const REGION: &str = "us-west-2";
const SECRET_KEY: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const SESSION_TOKEN: &str = "IQoJb3JpZ2luX2VjEXAMPLETOKEN";

fn config(base_url: &str) -> ProviderConfig {
    let mut c = test_support::config(ProviderKind::Bedrock, base_url, None);
    c.region = Some(REGION.to_owned());
    c.aws = Some(AwsCredentials {
        access_key_id: Secret::new("AKIDEXAMPLE"),
        secret_access_key: Secret::new(SECRET_KEY),
        session_token: Some(Secret::new(SESSION_TOKEN)),
    });
    c
}

fn sigv4() -> Expect {
    Expect::SigV4 {
        region: REGION.into(),
    }
}

fn call_with(client_request: Value) -> ChatCall {
    test_support::chat_call(client_request, MODEL)
}

fn call(text: &str) -> ChatCall {
    call_with(user_says(text))
}

async fn provider_for(script: Script) -> (BedrockProvider, Double) {
    let (d, _) = Double::start(script, sigv4()).await;
    let p = BedrockProvider::new(&config(&d.base_url()), http_client()).unwrap();
    (p, d)
}

/// Bedrock's error: this status, `x-amzn-errortype` naming `kind`.
fn aws_error(status: u16, kind: &str, message: &str) -> Script {
    Script::status(status, json!({ "message": message }))
        .with_header("x-amzn-errortype", double::error_type(kind))
}

/// The wire's answer to each failing [`Upstream`].
fn error_answer(upstream: Upstream) -> Script {
    match upstream {
        Upstream::RateLimited { retry_after } => aws_error(
            429,
            "ThrottlingException",
            "Too many requests, please wait before trying again.",
        )
        .with_header("retry-after", retry_after.as_secs().to_string()),
        Upstream::ServerError => aws_error(
            500,
            "InternalServerException",
            "The server encountered an error processing your request.",
        ),
        Upstream::Overloaded => aws_error(
            503,
            "ServiceUnavailableException",
            "Bedrock is unable to process your request.",
        ),
        Upstream::BadRequest { message } => aws_error(400, "ValidationException", &message),
        Upstream::ContextTooLong => aws_error(
            400,
            "ValidationException",
            "Input is too long for requested model.",
        ),
        Upstream::Unauthorized => aws_error(
            401,
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        ),
        other => unreachable!("{other:?} is not an error answer"),
    }
}

mod conformance {
    use super::*;

    crate::provider_conformance!(test_support::DoubleHarness {
        errors: error_answer,
        start: |s| Box::pin(Double::start(s, sigv4())),
        build: |url| BedrockProvider::new(&config(url), http_client()).unwrap(),
        call: || call("Hi"),
    });
}

/// Both calls of a chat (plain and streamed) and the bodies the double got.
async fn both_bodies(p: &BedrockProvider, d: &Double, c: &ChatCall) -> Vec<double::Captured> {
    p.chat(c).await.unwrap();
    let chunks = stream_items(p, c).await;
    assert!(chunks.iter().all(Result::is_ok), "{chunks:?}");
    let reqs = d.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].body, reqs[1].body, "the stream body differs");
    reqs
}

#[tokio::test]
async fn sends_converse_requests_upstream() {
    let (p, d) = provider_for(Script::Answer).await;
    let c = call_with(json!({
        "model": "chat-default",
        "messages": [
            {"role": "system", "content": "Be terse."},
            {"role": "developer", "content": "Answer in French."},
            {"role": "user", "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
            ]}
        ],
        "max_tokens": 50,
        "temperature": 1.5,
        "top_p": 0.9,
        "stop": ["\n\n", "END"],
        "top_k": 40,
        "logprobs": true,
        "guardrailConfig": {"guardrailIdentifier": "gr-1", "guardrailVersion": "1"}
    }));
    let reqs = both_bodies(&p, &d, &c).await;
    assert_eq!(
        reqs[0].body,
        json!({
            "messages": [{"role": "user", "content": [
                {"text": "What is this?"},
                {"image": {"format": "png", "source": {"bytes": "iVBORw0KGgo="}}}
            ]}],
            "system": [{"text": "Be terse."}, {"text": "Answer in French."}],
            "inferenceConfig": {"maxTokens": 50, "temperature": 1.0, "topP": 0.9, "stopSequences": ["\n\n", "END"]},
            "additionalModelRequestFields": {"top_k": 40},
            "guardrailConfig": {"guardrailIdentifier": "gr-1", "guardrailVersion": "1"}
        })
    );
    assert_eq!(
        reqs[0].path,
        "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"
    );
    assert_eq!(
        reqs[1].path,
        "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse-stream"
    );
    for r in &reqs {
        assert_eq!(r.model, MODEL);
        let auth = r.headers["authorization"].to_str().unwrap();
        let signed = sign::parse_authorization(auth, REGION, "bedrock").unwrap();
        assert_eq!(
            signed,
            ["content-type", "host", "x-amz-date", "x-amz-security-token"]
        );
        assert!(auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"));
        assert_eq!(r.headers["x-amz-security-token"], SESSION_TOKEN);
        assert_eq!(r.headers["content-type"], "application/json");
    }
    assert_eq!(reqs[0].headers["accept"], "application/json");
    assert_eq!(
        reqs[1].headers["accept"],
        "application/vnd.amazon.eventstream"
    );
}

#[tokio::test]
async fn tool_round_trip_with_parallel_calls() {
    let (p, d) = provider_for(Script::Answer).await;
    let c = call_with(json!({
        "model": "chat-default",
        "messages": [
            {"role": "user", "content": "Weather and time in Paris?"},
            {"role": "assistant", "content": "Checking both.", "tool_calls": [
                {"id": "tooluse_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "tooluse_2", "type": "function", "function": {"name": "get_time", "arguments": "{\"tz\":\"Europe/Paris\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "tooluse_1", "content": "18°C, cloudy"},
            {"role": "tool", "tool_call_id": "tooluse_2", "content": [{"type": "text", "text": "14:05"}]},
            {"role": "user", "content": "Thanks! Anything else?"}
        ],
        "tools": [
            {"type": "function", "function": {"name": "get_weather", "description": "Current weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
            {"type": "function", "function": {"name": "get_time"}}
        ],
        "tool_choice": "required",
        "parallel_tool_calls": true
    }));
    let reqs = both_bodies(&p, &d, &c).await;
    assert_eq!(
        reqs[0].body,
        json!({
            "messages": [
                {"role": "user", "content": [{"text": "Weather and time in Paris?"}]},
                {"role": "assistant", "content": [
                    {"text": "Checking both."},
                    {"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather", "input": {"city": "Paris"}}},
                    {"toolUse": {"toolUseId": "tooluse_2", "name": "get_time", "input": {"tz": "Europe/Paris"}}}
                ]},
                {"role": "user", "content": [
                    {"toolResult": {"toolUseId": "tooluse_1", "content": [{"text": "18°C, cloudy"}]}},
                    {"toolResult": {"toolUseId": "tooluse_2", "content": [{"text": "14:05"}]}},
                    {"text": "Thanks! Anything else?"}
                ]}
            ],
            "toolConfig": {
                "tools": [
                    {"toolSpec": {"name": "get_weather", "description": "Current weather", "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}},
                    {"toolSpec": {"name": "get_time", "inputSchema": {"json": {"type": "object", "properties": {}}}}}
                ],
                "toolChoice": {"any": {}}
            }
        })
    );
}

#[tokio::test]
async fn tool_choices() {
    let tools =
        json!([{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]);
    let body_for = |choice: Value, messages: Value| {
        let c = call_with(json!({
            "model": "m", "messages": messages, "tools": tools, "tool_choice": choice
        }));
        serde_json::to_value(convert::spec_to_request(&c.spec).unwrap().request).unwrap()
    };
    let hi = json!([{"role": "user", "content": "hi"}]);
    assert_eq!(
        body_for(json!("auto"), hi.clone())["toolConfig"]["toolChoice"],
        json!({"auto": {}})
    );
    assert_eq!(
        body_for(
            json!({"type": "function", "function": {"name": "f"}}),
            hi.clone()
        )["toolConfig"]["toolChoice"],
        json!({"tool": {"name": "f"}})
    );
    // `none` without tool history: no toolConfig at all.
    assert!(body_for(json!("none"), hi).get("toolConfig").is_none());
    // `none` with tool history: the tools stay (Converse requires them), no
    // choice.
    let history = json!([
        {"role": "user", "content": "hi"},
        {"role": "assistant", "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "t1", "content": "ok"}
    ]);
    let b = body_for(json!("none"), history);
    assert_eq!(b["toolConfig"]["tools"][0]["toolSpec"]["name"], "f");
    assert!(b["toolConfig"].get("toolChoice").is_none());
}

#[tokio::test]
async fn structured_output_falls_back_to_a_forced_tool() {
    let answer = json!({
        "output": {"message": {"role": "assistant", "content": [
            {"toolUse": {"toolUseId": "tooluse_s", "name": "weather_report", "input": {"city": "Paris", "celsius": 18}}}
        ]}},
        "stopReason": "tool_use",
        "usage": {"inputTokens": 30, "outputTokens": 12, "totalTokens": 42}
    });
    let (p, d) = provider_for(Script::Json(answer)).await;
    let schema = json!({"type": "object", "properties": {"city": {"type": "string"}, "celsius": {"type": "number"}}, "required": ["city", "celsius"]});
    let c = call_with(json!({
        "model": "m",
        "messages": [{"role": "user", "content": "Weather in Paris as JSON"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "weather_report", "schema": schema, "strict": true}}
    }));
    let r = p.chat(&c).await.unwrap();
    assert_eq!(r.choices[0].finish_reason(), FinishReason::Stop);
    assert!(r.choices[0].message.as_ref().unwrap().tool_calls.is_empty());
    let content: Value = serde_json::from_str(&text(&r)).unwrap();
    assert_eq!(content, json!({"city": "Paris", "celsius": 18}));
    assert_eq!(
        d.requests()[0].body,
        json!({
            "messages": [{"role": "user", "content": [{"text": "Weather in Paris as JSON"}]}],
            "toolConfig": {
                "tools": [{"toolSpec": {
                    "name": "weather_report",
                    "description": "Give the answer by calling this tool: its input is the response, as JSON matching the schema.",
                    "inputSchema": {"json": schema}
                }}],
                "toolChoice": {"tool": {"name": "weather_report"}}
            }
        })
    );

    // Combined with tools it is refused, before any call.
    let c = call_with(json!({
        "model": "m",
        "messages": [{"role": "user", "content": "x"}],
        "tools": [{"type": "function", "function": {"name": "f"}}],
        "response_format": {"type": "json_object"}
    }));
    let e = p.chat(&c).await.unwrap_err();
    assert!(
        matches!(&e, ProviderError::BadRequest { param: Some(p), .. } if p == "response_format"),
        "{e:?}"
    );
    assert_eq!(d.requests().len(), 1);
}

#[tokio::test]
async fn unsupported_parts_are_refused_before_any_call() {
    let (p, d) = provider_for(Script::Answer).await;
    let cases = [
        (
            json!([{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]),
            "messages[0].content[1]",
        ),
        (
            json!([{"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}]),
            "messages[0].content[0]",
        ),
        (
            json!([{"type": "file", "file": {"file_data": "data:application/pdf;base64,AAAA", "filename": "a.pdf"}}]),
            "messages[0].content[0]",
        ),
    ];
    for (content, param) in cases {
        let c =
            call_with(json!({"model": "m", "messages": [{"role": "user", "content": content}]}));
        for e in both_errors(&p, &c).await {
            assert!(
                matches!(&e, ProviderError::BadRequest { status: 400, param: Some(got), code: Some(code), .. }
                    if got == param && code == "unsupported_parameter"),
                "{e:?}"
            );
        }
    }
    assert!(d.requests().is_empty());
}

#[tokio::test]
async fn answers_convert_to_canonical_with_cache_usage_and_reasoning() {
    let answer = json!({
        "output": {"message": {"role": "assistant", "content": [
            {"reasoningContent": {"reasoningText": {"text": "The user greets.", "signature": "sig=="}}},
            {"text": "Bonjour"},
            {"text": " !"}
        ]}},
        "stopReason": "max_tokens",
        "usage": {"inputTokens": 5, "outputTokens": 7, "totalTokens": 1512, "cacheReadInputTokens": 1200, "cacheWriteInputTokens": 300},
        "metrics": {"latencyMs": 99},
        "trace": {}
    });
    let (p, _d) = provider_for(Script::Json(answer)).await;
    let r = p.chat(&call("Hi")).await.unwrap();
    assert_eq!(r.id, double::REQUEST_ID);
    assert_eq!(r.model, MODEL);
    assert!(r.created > 0);
    assert_eq!(text(&r), "Bonjour !");
    assert_eq!(r.choices[0].finish_reason(), FinishReason::Length);
    let m = r.choices[0].message.as_ref().unwrap();
    assert_eq!(
        switchyard_proto::json::map_from_struct_ref(m.extra.as_ref().unwrap())["reasoning_content"],
        "The user greets."
    );
    let u = r.usage.unwrap();
    assert_eq!(
        (
            u.prompt_tokens,
            u.completion_tokens,
            u.total_tokens,
            u.cached_prompt_tokens
        ),
        (1505, 7, 1512, 1200)
    );
}

#[tokio::test]
async fn guardrails_are_content_filter() {
    let answer = json!({
        "output": {"message": {"role": "assistant", "content": [{"text": "Sorry, the model cannot answer this question."}]}},
        "stopReason": "guardrail_intervened",
        "usage": {"inputTokens": 5, "outputTokens": 0, "totalTokens": 5}
    });
    let (p, _d) = provider_for(Script::Json(answer)).await;
    let r = p.chat(&call("Hi")).await.unwrap();
    assert_eq!(r.choices[0].finish_reason(), FinishReason::ContentFilter);
}

#[tokio::test]
async fn a_bearer_key_replaces_sigv4() {
    let (d, _) = Double::start(Script::Answer, Expect::Bearer("ABSKbedrock-key".into())).await;
    let mut cfg = config(&d.base_url());
    cfg.api_key = Some(Secret::new("ABSKbedrock-key"));
    let p = BedrockProvider::new(&cfg, http_client()).unwrap();
    p.chat(&call("Hi")).await.unwrap();
    let r = &d.requests()[0];
    assert_eq!(r.headers["authorization"], "Bearer ABSKbedrock-key");
    assert!(r.headers.get("x-amz-date").is_none());
    assert!(r.headers.get("x-amz-security-token").is_none());
    assert!(!format!("{p:?}").contains("ABSK"));

    // A wrong key: the double refuses it as Bedrock would.
    cfg.api_key = Some(Secret::new("ABSKwrong"));
    let p = BedrockProvider::new(&cfg, http_client()).unwrap();
    assert!(matches!(
        p.chat(&call("Hi")).await,
        Err(ProviderError::Auth { status: 403, .. })
    ));
}

#[tokio::test]
async fn unsigned_requests_are_refused_by_the_double() {
    let (d, _) = Double::start(Script::Answer, sigv4()).await;
    let mut cfg = config(&d.base_url());
    cfg.aws = None;
    // SAFETY of the test: these variables are not set in CI; if a developer
    // has them, the provider signs and the double accepts, which is fine too.
    if std::env::var_os("AWS_ACCESS_KEY_ID").is_some() {
        return;
    }
    let p = BedrockProvider::new(&cfg, http_client()).unwrap();
    let e = p.chat(&call("Hi")).await.unwrap_err();
    assert!(
        matches!(&e, ProviderError::Auth { status: 403, message } if message.contains("Missing Authentication Token")),
        "{e:?}"
    );
}

#[tokio::test]
async fn inference_profile_arns_are_one_path_segment() {
    let (p, d) = provider_for(Script::Answer).await;
    let arn = "arn:aws:bedrock:us-west-2:123456789012:inference-profile/us.anthropic.claude-3-7-sonnet-20250219-v1:0";
    let mut c = call("Hi");
    c.upstream_model = arn.into();
    p.chat(&c).await.unwrap();
    let r = &d.requests()[0];
    assert_eq!(
        r.path,
        "/model/arn%3Aaws%3Abedrock%3Aus-west-2%3A123456789012%3Ainference-profile%2Fus.anthropic.claude-3-7-sonnet-20250219-v1%3A0/converse"
    );
    assert_eq!(r.model, arn);
}

#[tokio::test]
async fn endpoints() {
    let http = http_client();
    let mut cfg = ProviderConfig::new("b", ProviderKind::Bedrock);
    cfg.region = Some("eu-west-3".into());
    let p = BedrockProvider::new(&cfg, http.clone()).unwrap();
    assert_eq!(
        p.url(MODEL, "converse").as_str(),
        "https://bedrock-runtime.eu-west-3.amazonaws.com/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"
    );
    cfg.base_url =
        Some("https://vpce-1.bedrock-runtime.eu-west-3.vpce.amazonaws.com/proxy/".into());
    let p = BedrockProvider::new(&cfg, http.clone()).unwrap();
    assert_eq!(
        p.url("m", "invoke").as_str(),
        "https://vpce-1.bedrock-runtime.eu-west-3.vpce.amazonaws.com/proxy/model/m/invoke"
    );
    cfg.base_url = Some("ftp://x".into());
    assert!(matches!(
        BedrockProvider::new(&cfg, http.clone()),
        Err(BuildError::InvalidBaseUrl { .. })
    ));
    cfg.base_url = Some("https://x/?a=1".into());
    assert!(matches!(
        BedrockProvider::new(&cfg, http.clone()),
        Err(BuildError::InvalidBaseUrl { .. })
    ));
    cfg.base_url = None;
    cfg.api_key = Some(Secret::new("bad\nkey"));
    let e = BedrockProvider::new(&cfg, http).err().unwrap();
    assert!(matches!(e, BuildError::InvalidApiKey { .. }));
    assert!(!e.to_string().contains("bad\nkey"));
}

#[tokio::test]
async fn the_configured_timeout_applies_when_the_call_has_none() {
    let (d, _) = Double::start(Script::Hang, sigv4()).await;
    let mut cfg = config(&d.base_url());
    cfg.timeout = Duration::from_millis(150);
    let p = BedrockProvider::new(&cfg, http_client()).unwrap();
    let mut c = call("Hi");
    c.timeout = Some(Duration::from_secs(30));
    assert_eq!(
        p.chat(&c).await,
        Err(ProviderError::Timeout(Duration::from_millis(150)))
    );
}

#[tokio::test]
async fn upstream_messages_echoing_secrets_are_scrubbed() {
    let (p, _d) = provider_for(aws_error(
        403,
        "UnrecognizedClientException",
        &format!("The security token {SESSION_TOKEN} is invalid (secret {SECRET_KEY})."),
    ))
    .await;
    for e in both_errors(&p, &call("Hi")).await {
        let ProviderError::Auth {
            message,
            status: 403,
        } = &e
        else {
            panic!("{e:?}")
        };
        assert!(
            !message.contains(SESSION_TOKEN) && !message.contains(SECRET_KEY),
            "{message}"
        );
        assert!(message.contains("[redacted]"));
    }
}

#[tokio::test]
async fn stream_exceptions_before_and_after_the_first_chunk() {
    let (p, _d) = provider_for(Script::Events(vec![double::exception_frame(
        "serviceUnavailableException",
        "Bedrock is unable to process your request.",
    )]))
    .await;
    assert!(matches!(
        p.chat_stream(&call("Hi")).await.err(),
        Some(ProviderError::Overloaded { status: 503, .. })
    ));

    let mut frames = double::answer_frames()[..3].to_vec();
    frames.push(double::exception_frame(
        "throttlingException",
        "Too many tokens, please wait before trying again.",
    ));
    let (p, _d) = provider_for(Script::Events(frames)).await;
    let items = stream_items(&p, &call("Hi")).await;
    assert_eq!(items.len(), 4);
    assert!(items[..3].iter().all(Result::is_ok));
    assert!(matches!(items[3], Err(ProviderError::RateLimited { .. })));
}

#[tokio::test]
async fn a_json_answer_to_a_stream_request_becomes_chunks() {
    let (p, _d) = provider_for(Script::Json(double::answer_json())).await;
    test_support::whole_answer_as_chunks(&p, &call("Hi")).await;
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
async fn titan_embeddings_one_call_per_input_in_order() {
    let (p, d) = provider_for(Script::Answer).await;
    let inputs = [
        "alpha beta",
        "gamma",
        "delta epsilon zeta",
        "eta",
        "theta iota",
        "kappa",
    ];
    let r = p
        .embed(&embed_call(
            "amazon.titan-embed-text-v2:0",
            &inputs,
            Some(3),
        ))
        .await
        .unwrap();
    assert_eq!(r.model, "amazon.titan-embed-text-v2:0");
    assert_eq!(r.data.len(), inputs.len());
    for (i, (e, input)) in r.data.iter().zip(inputs).enumerate() {
        assert_eq!(e.index as usize, i);
        assert_eq!(e.vector, double::vector_for(input, 3));
    }
    let u = r.usage.unwrap();
    assert_eq!((u.prompt_tokens, u.total_tokens), (10, 10));
    let reqs = d.requests();
    assert_eq!(reqs.len(), inputs.len());
    let mut bodies: Vec<Value> = reqs.iter().map(|r| r.body.clone()).collect();
    bodies.sort_by_key(|b| b["inputText"].as_str().unwrap().to_owned());
    assert_eq!(
        bodies[0],
        json!({"inputText": "alpha beta", "dimensions": 3})
    );
    assert!(
        reqs.iter()
            .all(|r| r.path == "/model/amazon.titan-embed-text-v2%3A0/invoke")
    );
}

#[tokio::test]
async fn cohere_embeddings_in_one_call() {
    let (p, d) = provider_for(Script::Answer).await;
    let inputs = ["first text", "second one here"];
    let r = p
        .embed(&embed_call("cohere.embed-english-v3", &inputs, None))
        .await
        .unwrap();
    assert_eq!(r.data.len(), 2);
    assert_eq!(r.data[1].vector, double::vector_for("second one here", 4));
    assert_eq!(r.usage.unwrap().prompt_tokens, 5);
    let reqs = d.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(
        reqs[0].body,
        json!({"texts": ["first text", "second one here"], "input_type": "search_document"})
    );
    assert_eq!(reqs[0].path, "/model/cohere.embed-english-v3/invoke");
}

#[tokio::test]
async fn embeddings_of_other_models_and_errors() {
    let (p, d) = provider_for(aws_error(
        429,
        "ThrottlingException",
        "Too many requests, please wait before trying again.",
    ))
    .await;
    let e = p
        .embed(&embed_call("meta.llama3-8b-instruct-v1:0", &["x"], None))
        .await
        .unwrap_err();
    assert!(
        matches!(e, ProviderError::BadRequest { status: 400, .. }),
        "{e:?}"
    );
    assert!(d.requests().is_empty());
    let e = p
        .embed(&embed_call(
            "amazon.titan-embed-text-v2:0",
            &["x", "y"],
            None,
        ))
        .await
        .unwrap_err();
    assert!(matches!(e, ProviderError::RateLimited { .. }), "{e:?}");
}

/// `YYYYMMDDTHHMMSSZ` back to a time (Howard Hinnant's `days_from_civil`).
fn parse_amz_date(s: &str) -> std::time::SystemTime {
    let n = |r: std::ops::Range<usize>| s[r].parse::<i64>().unwrap();
    let (y, m, d) = (n(0..4), n(4..6), n(6..8));
    let secs = n(9..11) * 3600 + n(11..13) * 60 + n(13..15);
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    std::time::UNIX_EPOCH + Duration::from_secs(u64::try_from(days * 86_400 + secs).unwrap())
}

/// Recomputed from what the double received (its Host header, the path as
/// it arrived, the body bytes, x-amz-date), the signature is the one sent:
/// nothing between signing and the wire changed a signed part.
#[tokio::test]
async fn the_signature_covers_what_was_sent() {
    let (p, d) = provider_for(Script::Answer).await;
    let mut c = call_with(json!({
        "model": "m",
        "messages": [{"role": "user", "content": "Grüße, 世界 — \"quotes\" & <tags>"}],
        "max_tokens": 5
    }));
    c.upstream_model =
        "arn:aws:bedrock:us-west-2:123456789012:inference-profile/us.meta.llama3-2-1b-instruct-v1:0"
            .into();
    p.chat(&c).await.unwrap();
    stream_items(&p, &c).await;
    p.embed(&embed_call("amazon.titan-embed-text-v2:0", &["x"], None))
        .await
        .unwrap();
    let creds = sign::Credentials {
        access_key_id: Secret::new("AKIDEXAMPLE"),
        secret_access_key: Secret::new(SECRET_KEY),
        session_token: Some(Secret::new(SESSION_TOKEN)),
    };
    let reqs = d.requests();
    assert_eq!(reqs.len(), 3);
    for r in reqs {
        let header = |n: &str| r.headers[n].to_str().unwrap().to_owned();
        let expected = sign::sign(
            &sign::Request {
                method: "POST",
                host: &header("host"),
                path: &r.path,
                headers: &[("content-type", &header("content-type"))],
                payload: &r.raw,
            },
            &creds,
            REGION,
            "bedrock",
            parse_amz_date(&header("x-amz-date")),
        );
        assert_eq!(
            header("authorization"),
            expected.authorization,
            "{}",
            r.path
        );
    }
}
