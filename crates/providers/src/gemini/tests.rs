//! The Gemini provider against an HTTP double speaking Gemini's wire format.

use std::time::Duration;

use serde_json::{Value, json};
use switchyard_config::{ProviderConfig, ProviderKind};
use switchyard_proto::gateway::v1::{FinishReason, ImageSpec, content_part::Part};
use switchyard_proto::json::{map_from_struct_ref, struct_from_map};

use super::double::{self, Double, Script};
use super::*;
use crate::conformance::{Upstream, both_errors, stream_chunks};
use crate::registry::http_client;
use crate::test_support::{self, stream_items, user_says};

const KEY: &str = "AIzaSy-test-0123456789";

fn config(base_url: &str) -> ProviderConfig {
    test_support::config(ProviderKind::Gemini, base_url, Some(KEY))
}

fn call(text: &str) -> ChatCall {
    call_with(user_says(text))
}

fn call_with(client_request: Value) -> ChatCall {
    test_support::chat_call(client_request, "gemini-2.5-flash")
}

async fn provider_for(script: Script) -> (GeminiProvider, Double) {
    let (d, _) = Double::start(script).await;
    let p = GeminiProvider::new(&config(&d.base_url()), http_client()).unwrap();
    (p, d)
}

/// The body the double received for one unary call of `client_request`.
async fn sent_body(client_request: Value) -> Value {
    let (p, d) = provider_for(Script::Answer).await;
    p.chat(&call_with(client_request)).await.unwrap();
    d.requests().remove(0).body
}

/// The wire's answer to each failing [`Upstream`].
fn error_answer(upstream: Upstream) -> Script {
    match upstream {
        // Gemini sends no retry-after header: the delay is in RetryInfo.
        Upstream::RateLimited { retry_after } => Script::status(
            429,
            double::error_json(
                429,
                "RESOURCE_EXHAUSTED",
                "You exceeded your current quota, please check your plan and billing details.",
                json!([
                    {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{
                        "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
                        "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                        "quotaValue": "10"}]},
                    {"@type": "type.googleapis.com/google.rpc.Help", "links": [{"description": "Learn more", "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}]},
                    {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": format!("{}s", retry_after.as_secs())}
                ]),
            ),
        ),
        Upstream::ServerError => Script::status(
            500,
            double::error_json(
                500,
                "INTERNAL",
                "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting",
                json!([]),
            ),
        ),
        Upstream::Overloaded => Script::status(
            503,
            double::error_json(
                503,
                "UNAVAILABLE",
                "The model is overloaded. Please try again later.",
                json!([]),
            ),
        ),
        Upstream::BadRequest { message } => Script::status(
            400,
            double::error_json(400, "INVALID_ARGUMENT", &message, json!([])),
        ),
        Upstream::ContextTooLong => Script::status(
            400,
            double::error_json(
                400,
                "INVALID_ARGUMENT",
                "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).",
                json!([]),
            ),
        ),
        // What the Gemini API really answers to a bad key: 400, with the
        // reason in ErrorInfo.
        Upstream::Unauthorized => Script::status(
            400,
            double::error_json(
                400,
                "INVALID_ARGUMENT",
                "API key not valid. Please pass a valid API key.",
                json!([{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                        "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"}}]),
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
        build: |url| GeminiProvider::new(&config(url), http_client()).unwrap(),
        call: || call("Hi"),
    });
}

// --- the HTTP exchange --------------------------------------------------------

#[tokio::test]
async fn endpoints_headers_and_no_key_in_the_url() {
    let (d, _) = Double::start(Script::Answer).await;
    let mut cfg = config(&d.base_url());
    cfg.headers
        .insert("x-goog-user-project".into(), "proj-1".into());
    let p = GeminiProvider::new(&cfg, http_client()).unwrap();

    p.chat(&call("Hi")).await.unwrap();
    let chunks = stream_items(&p, &call("Hi")).await;
    assert!(chunks.iter().all(Result::is_ok));

    let reqs = d.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(
        reqs[0].path,
        "/v1beta/models/gemini-2.5-flash:generateContent"
    );
    assert_eq!(reqs[0].query, None);
    assert_eq!(
        reqs[1].path,
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
    );
    assert_eq!(reqs[1].query.as_deref(), Some("alt=sse"));
    assert_eq!(reqs[1].headers["accept"], "text/event-stream");
    for r in &reqs {
        assert_eq!(r.headers["x-goog-api-key"], KEY);
        assert_eq!(r.headers["x-goog-user-project"], "proj-1");
        assert_eq!(r.headers["content-type"], "application/json");
        assert!(r.headers.get("authorization").is_none());
        assert!(!r.query.as_deref().unwrap_or_default().contains(KEY));
        assert_eq!(
            r.body,
            json!({"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]})
        );
    }
}

#[tokio::test]
async fn endpoint_shapes() {
    let p = GeminiProvider::new(
        &config("https://generativelanguage.googleapis.com/v1beta/"),
        http_client(),
    )
    .unwrap();
    assert_eq!(
        p.endpoint("gemini-2.5-pro", "generateContent", false)
            .as_str(),
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-pro:generateContent"
    );
    assert_eq!(
        p.endpoint("tunedModels/my-model", "streamGenerateContent", true)
            .as_str(),
        "https://generativelanguage.googleapis.com/v1beta/tunedModels/my-model:streamGenerateContent?alt=sse"
    );
    // A model name cannot smuggle in a query or another path.
    assert_eq!(
        p.endpoint("evil?key=x#y", "predict", false).as_str(),
        "https://generativelanguage.googleapis.com/v1beta/models/evil%3Fkey=x%23y:predict"
    );
    // Nor climb out of the collection to another API under our key.
    for model in ["../../v1/files", "tunedModels/../../x", "models/a/b"] {
        let url = p.endpoint(model, "generateContent", false);
        assert!(
            url.path().starts_with("/v1beta/models/")
                || url.path().starts_with("/v1beta/tunedModels/"),
            "{model}: {url}"
        );
        assert_eq!(url.path_segments().unwrap().count(), 3, "{model}: {url}");
    }
    assert_eq!(
        p.endpoint("models/gemini-2.5-flash", "generateContent", false)
            .path(),
        "/v1beta/models/gemini-2.5-flash:generateContent"
    );
    assert_eq!(convert::model_resource("../x"), "models/../x");
    assert!(!format!("{p:?}").contains(KEY));
    let mut bad = config("ftp://x");
    assert!(GeminiProvider::new(&bad, http_client()).is_err());
    bad.base_url = Some("mailto:x@y".into());
    assert!(GeminiProvider::new(&bad, http_client()).is_err());
}

#[tokio::test]
async fn no_key_means_no_key_header() {
    let (d, _) = Double::start(Script::Answer).await;
    let mut cfg = config(&d.base_url());
    cfg.api_key = None;
    let p = GeminiProvider::new(&cfg, http_client()).unwrap();
    p.chat(&call("Hi")).await.unwrap();
    assert!(d.requests()[0].headers.get("x-goog-api-key").is_none());
}

#[tokio::test]
async fn the_configured_timeout_applies_when_the_call_has_none() {
    let (d, _) = Double::start(Script::Hang).await;
    let mut cfg = config(&d.base_url());
    cfg.timeout = Duration::from_millis(150);
    let p = GeminiProvider::new(&cfg, http_client()).unwrap();
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
        400,
        "INVALID_ARGUMENT",
        &format!("API key not valid: {KEY}. Please pass a valid API key."),
        json!([]),
    );
    let (p, _d) = provider_for(Script::status(400, body)).await;
    for e in both_errors(&p, &call("Hi")).await {
        let ProviderError::Auth {
            message,
            status: 401,
        } = &e
        else {
            panic!("{e:?}")
        };
        assert!(!message.contains(KEY), "{message}");
        assert!(message.contains("[redacted]"));
    }
}

#[tokio::test]
async fn error_bodies_with_status_200_are_classified() {
    let body = double::error_json(429, "RESOURCE_EXHAUSTED", "quota", json!([]));
    let (p, _d) = provider_for(Script::Json(body)).await;
    assert!(matches!(
        p.chat(&call("Hi")).await,
        Err(ProviderError::RateLimited { .. })
    ));
    assert!(matches!(
        p.chat_stream(&call("Hi")).await.err(),
        Some(ProviderError::RateLimited { .. })
    ));
    let (p, _d) = provider_for(Script::Json(json!({"answer": "hello"}))).await;
    assert!(matches!(
        p.chat(&call("Hi")).await,
        Err(ProviderError::InvalidResponse(_))
    ));
}

#[tokio::test]
async fn a_json_array_answer_to_a_stream_request_becomes_chunks() {
    let fragments = json!([
        double::text_fragment("Hel", None, false),
        double::text_fragment("lo", Some("STOP"), true)
    ]);
    let (p, _d) = provider_for(Script::Json(fragments)).await;
    let chunks = stream_chunks(&p, &call("Hi")).await;
    assert_eq!(chunks.len(), 3);
    assert_eq!(chunks[0].choices[0].content.as_deref(), Some("Hel"));
    assert_eq!(chunks[1].choices[0].finish_reason(), FinishReason::Stop);
    assert_eq!(chunks[2].usage.unwrap().total_tokens, 21);

    let failed_midway = json!([
        double::text_fragment("Hel", None, false),
        double::error_json(503, "UNAVAILABLE", "The model is overloaded.", json!([]))
    ]);
    let (p, _d) = provider_for(Script::Json(failed_midway)).await;
    assert!(matches!(
        p.chat_stream(&call("Hi")).await.err(),
        Some(ProviderError::Overloaded { status: 503, .. })
    ));
}

#[tokio::test]
async fn stream_errors_before_and_after_the_first_chunk() {
    let err = double::error_json(
        500,
        "INTERNAL",
        "An internal error has occurred.",
        json!([]),
    )
    .to_string();
    let (p, _d) = provider_for(Script::Events(vec![err.clone()])).await;
    assert!(matches!(
        p.chat_stream(&call("Hi")).await.err(),
        Some(ProviderError::Upstream { status: 500, .. })
    ));
    let events = vec![
        double::text_fragment("partial", None, false).to_string(),
        err,
    ];
    let (p, _d) = provider_for(Script::Events(events)).await;
    let items = stream_items(&p, &call("Hi")).await;
    assert_eq!(items.len(), 2);
    assert!(items[0].is_ok());
    assert!(matches!(
        items[1],
        Err(ProviderError::Upstream { status: 500, .. })
    ));

    let (p, _d) = provider_for(Script::Events(vec![
        double::text_fragment("half", None, false).to_string(),
    ]))
    .await;
    let items = stream_items(&p, &call("Hi")).await;
    assert!(matches!(
        items.last(),
        Some(Err(ProviderError::Connection(_)))
    ));
}

// --- golden request bodies ------------------------------------------------------

#[tokio::test]
async fn system_instruction_roles_and_merged_turns() {
    let body = sent_body(json!({
        "model": "m",
        "messages": [
            {"role": "system", "content": "Be terse."},
            {"role": "user", "content": "Hi"},
            {"role": "user", "content": [{"type": "text", "text": "Still there?"}, {"type": "text", "text": ""}]},
            {"role": "developer", "content": "Answer in French."},
            {"role": "assistant", "content": "Oui."},
            {"role": "assistant", "content": "Bonjour."},
            {"role": "user", "content": "Merci", "name": "ann"}
        ]
    }))
    .await;
    assert_eq!(
        body,
        json!({
            "systemInstruction": {"parts": [{"text": "Be terse."}, {"text": "Answer in French."}]},
            "contents": [
                {"role": "user", "parts": [{"text": "Hi"}, {"text": "Still there?"}]},
                {"role": "model", "parts": [{"text": "Oui."}, {"text": "Bonjour."}]},
                {"role": "user", "parts": [{"text": "Merci"}]}
            ]
        })
    );
}

#[tokio::test]
async fn tools_named_choice_and_a_function_round_trip() {
    let body = sent_body(json!({
        "model": "m",
        "messages": [
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_0", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Rome\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_0", "content": "{\"temp\": 21}"},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
            {"role": "user", "content": "Thanks"}
        ],
        "tools": [
            {"type": "function", "function": {
                "name": "get_weather", "description": "Weather by city", "strict": true,
                "parameters": {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
                    "properties": {"city": {"type": "string"}, "strict": {"type": "boolean"}},
                    "required": ["city"], "additionalProperties": false}}},
            {"type": "function", "function": {"name": "now", "parameters": {"type": "object", "properties": {}}}}
        ],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "parallel_tool_calls": false
    }))
    .await;
    assert_eq!(
        body,
        json!({
            "contents": [
                {"role": "user", "parts": [{"text": "Weather in Paris and Rome?"}]},
                {"role": "model", "parts": [
                    {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
                    {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}}
                ]},
                {"role": "user", "parts": [
                    {"functionResponse": {"name": "get_weather", "response": {"temp": 21}}},
                    {"functionResponse": {"name": "get_weather", "response": {"content": "sunny"}}},
                    {"text": "Thanks"}
                ]}
            ],
            "tools": [{"functionDeclarations": [
                {"name": "get_weather", "description": "Weather by city", "parameters": {
                    "type": "object", "properties": {"city": {"type": "string"}, "strict": {"type": "boolean"}},
                    "required": ["city"]}},
                {"name": "now"}
            ]}],
            "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}}
        })
    );
}

/// Gemini 3 wants each function call's thought signature back on the next
/// turn: it leaves with the answer in Google's OpenAI-compatible spot and
/// comes back from a client that echoes the assistant message.
#[tokio::test]
async fn thought_signatures_round_trip_through_the_openai_edge() {
    let (p, _d) = provider_for(Script::ToolCall).await;
    let r = p.chat(&call("Weather?")).await.unwrap();
    let answer = serde_json::to_value(crate::openai::convert::result_to_response(&r)).unwrap();
    let message = answer["choices"][0]["message"].clone();
    assert_eq!(
        message["tool_calls"],
        json!([{"id": "call_0", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
            "extra_content": {"google": {"thought_signature": "c2lnbmF0dXJl"}}}])
    );

    let mut echoed = message;
    echoed
        .as_object_mut()
        .unwrap()
        .retain(|k, _| k == "role" || k == "content" || k == "tool_calls");
    let body = sent_body(json!({"model": "m", "messages": [
        {"role": "user", "content": "Weather?"},
        echoed,
        {"role": "tool", "tool_call_id": "call_0", "content": "sunny"}
    ]}))
    .await;
    assert_eq!(
        body["contents"][1],
        json!({"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
            "thoughtSignature": "c2lnbmF0dXJl"}]})
    );
}

#[tokio::test]
async fn tool_choice_modes() {
    let tools = json!([{"type": "function", "function": {"name": "f"}}]);
    for (choice, mode) in [("auto", "AUTO"), ("none", "NONE"), ("required", "ANY")] {
        let body = sent_body(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "tools": tools, "tool_choice": choice}),
        )
        .await;
        assert_eq!(
            body["toolConfig"],
            json!({"functionCallingConfig": {"mode": mode}}),
            "{choice}"
        );
    }
}

#[tokio::test]
async fn structured_output_uses_response_json_schema() {
    let schema = json!({"type": "object", "properties": {"name": {"type": "string"}},
        "required": ["name"], "additionalProperties": false});
    let body = sent_body(json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "person", "strict": true, "schema": schema}}}))
    .await;
    // The schema goes as the client wrote it: responseJsonSchema takes full
    // JSON Schema.
    assert_eq!(
        body["generationConfig"],
        json!({"responseMimeType": "application/json", "responseJsonSchema": schema})
    );
    let body = sent_body(
        json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
        "response_format": {"type": "json_object"}}),
    )
    .await;
    assert_eq!(
        body["generationConfig"],
        json!({"responseMimeType": "application/json"})
    );
    let body = sent_body(
        json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
        "response_format": {"type": "text"}}),
    )
    .await;
    assert!(body.get("generationConfig").is_none());
}

#[tokio::test]
async fn images_audio_and_files() {
    let body = sent_body(json!({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "Compare"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "high"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.webp?size=large"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/photo"}},
        {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
        {"type": "input_audio", "input_audio": {"data": "SUQz", "format": "mp3"}},
        {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0="}}
    ]}]}))
    .await;
    assert_eq!(
        body["contents"],
        json!([{"role": "user", "parts": [
            {"text": "Compare"},
            {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
            {"fileData": {"mimeType": "image/webp", "fileUri": "https://example.com/cat.webp?size=large"}},
            {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/photo"}},
            {"inlineData": {"mimeType": "audio/wav", "data": "UklGRg=="}},
            {"inlineData": {"mimeType": "audio/mp3", "data": "SUQz"}},
            {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0="}}
        ]}])
    );
}

#[tokio::test]
async fn what_gemini_cannot_take_fails_before_any_call() {
    let (p, d) = provider_for(Script::Answer).await;
    let cases = [
        (
            json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "file", "file": {"file_id": "file-abc"}}]}]}),
            "messages[0].content[0]",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}]}]}),
            "messages[0].content[0]",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}, {"role": "tool", "tool_call_id": "call_9", "content": "x"}]}),
            "messages[1].tool_call_id",
        ),
        (
            json!({"model": "m", "messages": [{"role": "assistant", "tool_calls": [
                {"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1]"}}]}]}),
            "messages[0].tool_calls[0].function.arguments",
        ),
    ];
    for (req, param) in cases {
        let e = p.chat(&call_with(req.clone())).await.unwrap_err();
        assert!(
            matches!(&e, ProviderError::BadRequest { status: 400, param: Some(p), .. } if p == param),
            "{req}: {e:?}"
        );
        assert!(p.chat_stream(&call_with(req)).await.is_err());
    }
    assert!(d.requests().is_empty());
}

#[tokio::test]
async fn generation_config_and_extras() {
    let body = sent_body(json!({
        "model": "m",
        "messages": [{"role": "user", "content": "x"}],
        "temperature": 1.5, "top_p": 0.9, "max_completion_tokens": 300, "stop": ["END", "\n\n"],
        "seed": 42, "presence_penalty": 0.5, "frequency_penalty": -0.5, "n": 2,
        "user": "user-1", "logprobs": true, "top_logprobs": 3,
        "metadata": {"team": "a"}, "store": true, "logit_bias": {"50256": -100},
        "topK": 40,
        "thinkingConfig": {"thinkingBudget": 1024, "includeThoughts": true},
        "generationConfig": {"responseModalities": ["TEXT"], "temperature": 0.1},
        "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
        "cachedContent": "cachedContents/abc"
    }))
    .await;
    assert_eq!(
        body,
        json!({
            "contents": [{"role": "user", "parts": [{"text": "x"}]}],
            "generationConfig": {
                "temperature": 1.5, "topP": 0.9, "maxOutputTokens": 300, "stopSequences": ["END", "\n\n"],
                "seed": 42, "presencePenalty": 0.5, "frequencyPenalty": -0.5, "candidateCount": 2,
                "responseLogprobs": true, "logprobs": 3,
                "topK": 40, "thinkingConfig": {"thinkingBudget": 1024, "includeThoughts": true},
                "responseModalities": ["TEXT"]
            },
            "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
            "cachedContent": "cachedContents/abc"
        })
    );
}

// --- answers ----------------------------------------------------------------------

#[tokio::test]
async fn answers_with_thoughts_calls_and_cached_usage() {
    let answer = json!({
        "candidates": [
            {"content": {"role": "model", "parts": [
                {"text": "The user wants weather.", "thought": true},
                {"text": "Let me check. "},
                {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
                {"functionCall": {"id": "fc-7", "name": "get_time", "args": {}}}
            ]}, "finishReason": "STOP", "index": 0},
            {"content": {"role": "model", "parts": [{"text": "I can't"}]}, "finishReason": "SAFETY", "index": 1},
            {"content": {"role": "model", "parts": [{"text": "Long"}]}, "finishReason": "MAX_TOKENS", "index": 2}
        ],
        "usageMetadata": {"promptTokenCount": 100, "candidatesTokenCount": 20, "totalTokenCount": 150,
            "thoughtsTokenCount": 30, "cachedContentTokenCount": 64},
        "modelVersion": "gemini-2.5-pro",
        "responseId": "abc123"
    });
    let (p, _d) = provider_for(Script::Json(answer)).await;
    let r = p.chat(&call("Hi")).await.unwrap();
    assert_eq!(
        (r.id.as_str(), r.model.as_str()),
        ("abc123", "gemini-2.5-pro")
    );
    assert!(r.created > 1_700_000_000);
    assert_eq!(r.choices.len(), 3);
    let m = r.choices[0].message.as_ref().unwrap();
    assert_eq!(r.choices[0].finish_reason(), FinishReason::ToolCalls);
    assert!(matches!(&m.content[..], [c] if c.part == Some(Part::Text("Let me check. ".into()))));
    let extra = map_from_struct_ref(m.extra.as_ref().unwrap());
    assert_eq!(extra["reasoning_content"], "The user wants weather.");
    let calls: Vec<_> = m
        .tool_calls
        .iter()
        .map(|c| (c.id.as_str(), c.name.as_str(), c.arguments.as_str()))
        .collect();
    assert_eq!(
        calls,
        [
            ("call_0", "get_weather", "{\"city\":\"Paris\"}"),
            ("fc-7", "get_time", "{}")
        ]
    );
    assert_eq!(r.choices[1].finish_reason(), FinishReason::ContentFilter);
    assert_eq!(
        (r.choices[2].index, r.choices[2].finish_reason()),
        (2, FinishReason::Length)
    );
    let u = r.usage.unwrap();
    assert_eq!(
        (
            u.prompt_tokens,
            u.completion_tokens,
            u.total_tokens,
            u.reasoning_tokens,
            u.cached_prompt_tokens
        ),
        (100, 50, 150, 30, 64)
    );

    // The same answer through the OpenAI edge: reasoning and tool calls in
    // OpenAI's shape.
    let out = serde_json::to_value(crate::openai::convert::result_to_response(&r)).unwrap();
    assert_eq!(
        out["choices"][0]["message"]["reasoning_content"],
        "The user wants weather."
    );
    assert_eq!(out["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(out["choices"][1]["finish_reason"], "content_filter");
}

#[tokio::test]
async fn a_blocked_prompt_is_a_content_filter_choice() {
    let answer = json!({"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
        "usageMetadata": {"promptTokenCount": 7, "totalTokenCount": 7}, "modelVersion": "gemini-2.5-flash"});
    let (p, _d) = provider_for(Script::Json(answer.clone())).await;
    let r = p.chat(&call("Hi")).await.unwrap();
    assert_eq!(r.choices.len(), 1);
    assert_eq!(r.choices[0].finish_reason(), FinishReason::ContentFilter);
    let extra = map_from_struct_ref(
        r.choices[0]
            .message
            .as_ref()
            .unwrap()
            .extra
            .as_ref()
            .unwrap(),
    );
    assert!(
        extra["refusal"]
            .as_str()
            .unwrap()
            .contains("PROHIBITED_CONTENT")
    );
    assert_eq!(r.usage.unwrap().prompt_tokens, 7);

    let (p, _d) = provider_for(Script::Events(vec![answer.to_string()])).await;
    let chunks = stream_chunks(&p, &call("Hi")).await;
    assert_eq!(chunks.len(), 2);
    assert_eq!(
        chunks[0].choices[0].finish_reason(),
        FinishReason::ContentFilter
    );
    assert!(chunks[1].usage.is_some());
}

// --- embeddings and images ----------------------------------------------------------

fn embed_call(inputs: &[&str], dimensions: Option<u32>, extra: Option<Value>) -> EmbedCall {
    let mut call = test_support::embed_call("gemini-embedding-001", inputs, dimensions);
    call.spec.extra = extra.map(|e| struct_from_map(e.as_object().unwrap().clone()));
    call
}

#[tokio::test]
async fn embeddings_in_input_order() {
    let (p, d) = provider_for(Script::Answer).await;
    let r = p
        .embed(&embed_call(
            &["a", "bb", "ccc"],
            Some(768),
            Some(json!({"taskType": "RETRIEVAL_DOCUMENT", "encoding_format_hint": 1})),
        ))
        .await
        .unwrap();
    assert_eq!(r.model, "gemini-embedding-001");
    let got: Vec<(u32, Vec<f32>)> = r.data.iter().map(|e| (e.index, e.vector.clone())).collect();
    assert_eq!(
        got,
        [
            (0, vec![0.0, 1.0, 0.5]),
            (1, vec![1.0, 2.0, 0.5]),
            (2, vec![2.0, 3.0, 0.5])
        ]
    );
    assert_eq!(r.usage.unwrap().prompt_tokens, 0);
    let req = &d.requests()[0];
    assert_eq!(
        req.path,
        "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    );
    assert_eq!(req.headers["x-goog-api-key"], KEY);
    let one = |t: &str| {
        json!({"model": "models/gemini-embedding-001", "content": {"parts": [{"text": t}]},
            "outputDimensionality": 768, "taskType": "RETRIEVAL_DOCUMENT"})
    };
    assert_eq!(
        req.body,
        json!({"requests": [one("a"), one("bb"), one("ccc")]})
    );

    // A count mismatch is not silently misaligned.
    let (p, _d) = provider_for(Script::Json(json!({"embeddings": [{"values": [1.0]}]}))).await;
    assert!(matches!(
        p.embed(&embed_call(&["a", "b"], None, None)).await,
        Err(ProviderError::InvalidResponse(_))
    ));
    // Token arrays have no Gemini form.
    assert!(matches!(
        p.embed(&embed_call(&[], None, Some(json!({"input": [[1, 2]]})))).await,
        Err(ProviderError::BadRequest { param: Some(p), .. }) if p == "input"
    ));
}

fn image_call(n: u32, size: &str, response_format: &str) -> ImageCall {
    ImageCall {
        spec: ImageSpec {
            model: "img".into(),
            prompt: "A lighthouse at dawn".into(),
            n,
            size: size.into(),
            quality: "hd".into(),
            response_format: response_format.into(),
            extra: Some(struct_from_map(
                json!({"personGeneration": "dont_allow", "style": "vivid"})
                    .as_object()
                    .unwrap()
                    .clone(),
            )),
            ..Default::default()
        },
        upstream_model: "imagen-4.0-generate-001".into(),
        request_id: "req-i".into(),
        timeout: None,
    }
}

#[tokio::test]
async fn imagen_generates_base64_images() {
    let (p, d) = provider_for(Script::Answer).await;
    let r = p
        .images(&image_call(2, "1792x1024", "b64_json"))
        .await
        .unwrap();
    let b64: Vec<&str> = r.data.iter().map(|i| i.b64_json.as_str()).collect();
    assert_eq!(b64, ["aW1hZ2UtMA==", "aW1hZ2UtMQ=="]);
    assert!(r.data.iter().all(|i| i.url.is_empty()));
    assert!(r.created > 1_700_000_000);
    let req = &d.requests()[0];
    assert_eq!(req.path, "/v1beta/models/imagen-4.0-generate-001:predict");
    assert_eq!(
        req.body,
        json!({"instances": [{"prompt": "A lighthouse at dawn"}],
            "parameters": {"sampleCount": 2, "aspectRatio": "16:9", "personGeneration": "dont_allow"}})
    );

    // Gemini has no image URLs to give.
    let e = p.images(&image_call(1, "", "url")).await.unwrap_err();
    assert!(
        matches!(&e, ProviderError::BadRequest { param: Some(p), .. } if p == "response_format")
    );
    assert_eq!(d.requests().len(), 1);

    // Every image withheld: a content-policy refusal.
    let (p, _d) = provider_for(Script::Json(
        json!({"predictions": [{"raiFilteredReason": "Unable to show generated images."}]}),
    ))
    .await;
    let e = p.images(&image_call(1, "", "")).await.unwrap_err();
    assert!(
        matches!(&e, ProviderError::BadRequest { code: Some(c), .. } if c == "content_policy_violation")
    );
}

#[tokio::test]
async fn embeddings_and_images_errors_are_classified() {
    let body = double::error_json(
        429,
        "RESOURCE_EXHAUSTED",
        "quota",
        json!([{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"}]),
    );
    let (p, _d) = provider_for(Script::status(429, body)).await;
    for e in [
        p.embed(&embed_call(&["a"], None, None)).await.unwrap_err(),
        p.images(&image_call(1, "", "")).await.unwrap_err(),
    ] {
        assert_eq!(
            e,
            ProviderError::RateLimited {
                message: "quota".into(),
                retry_after: Some(Duration::from_secs(7))
            }
        );
    }
}

/// The Responses API front end served by a Gemini upstream: text, and a
/// function call, plain and streamed.
#[tokio::test]
async fn responses_api_requests_are_served() {
    let (p, _d) = provider_for(Script::Answer).await;
    test_support::responses_text_served(&p, "gemini-2.5-flash").await;
    let (p, _d) = provider_for(Script::ToolCall).await;
    test_support::responses_calls_served(&p, "gemini-2.5-flash").await;
}
