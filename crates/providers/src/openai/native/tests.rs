use futures_util::StreamExt;
use serde_json::json;
use switchyard_proto::json::map_from_struct;

use super::*;
use crate::openai::responses::request_to_spec;

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

fn spec_with(request: Value) -> ChatSpec {
    ChatSpec {
        model: "m".into(),
        responses_request: Some(struct_from_map(obj(request))),
        ..Default::default()
    }
}

#[test]
fn the_request_passes_through_with_only_model_and_stream_replaced() {
    let sent = json!({
        "model": "chat",
        "input": [{"type": "message", "role": "user", "content": "hi"}],
        "include": ["reasoning.encrypted_content"],
        "truncation": "auto",
        "tools": [{"type": "web_search", "search_context_size": "low"}],
        "reasoning": {"effort": "low", "summary": "auto"},
        "max_output_tokens": 100,
        "temperature": 0.5,
        "unknown_future_field": {"a": [1, "b", null]},
    });
    let spec = spec_with(sent.clone());
    let mut expected = sent.clone();
    expected["model"] = json!("gpt-5");
    assert_eq!(request_body(&spec, "gpt-5", false), Some(expected.clone()));
    expected["stream"] = json!(true);
    assert_eq!(request_body(&spec, "gpt-5", true), Some(expected));
    // A chat request (no original) has no native body.
    assert_eq!(request_body(&ChatSpec::default(), "gpt-5", false), None);
}

fn answered() -> Value {
    json!({
        "id": "resp_abc", "object": "response", "created_at": 1_741_476_542,
        "status": "completed", "model": "gpt-5-2025-08-07",
        "output": [
            {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAA"},
            {"type": "web_search_call", "id": "ws_1", "status": "completed",
             "action": {"type": "search", "query": "q"}},
            {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
             "content": [{"type": "output_text", "text": "Hello", "annotations": []},
                         {"type": "output_text", "text": " there", "annotations": []}]},
            {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "get_weather",
             "arguments": "{\"city\":\"Paris\"}", "status": "completed"},
            {"type": "function_call", "id": "fc_2", "call_id": "call_2", "namespace": "ns",
             "name": "f", "arguments": "{}", "status": "completed"},
        ],
        "usage": {"input_tokens": 36, "input_tokens_details": {"cached_tokens": 10},
                  "output_tokens": 87, "output_tokens_details": {"reasoning_tokens": 50},
                  "total_tokens": 123},
    })
}

#[test]
fn an_answer_reads_into_the_canonical_result_and_is_kept_whole() {
    let r = response_to_result(obj(answered()));
    assert_eq!(r.id, "resp_abc");
    assert_eq!(r.model, "gpt-5-2025-08-07");
    assert_eq!(r.created, 1_741_476_542);
    let choice = &r.choices[0];
    assert_eq!(choice.finish_reason(), FinishReason::ToolCalls);
    let m = choice.message.as_ref().unwrap();
    assert_eq!(
        m.content[0].part,
        Some(content_part::Part::Text("Hello there".into()))
    );
    assert_eq!(m.tool_calls.len(), 2);
    assert_eq!(m.tool_calls[0].id, "call_1");
    assert_eq!(m.tool_calls[0].name, "get_weather");
    assert_eq!(m.tool_calls[0].arguments, "{\"city\":\"Paris\"}");
    assert_eq!(m.tool_calls[1].name, "ns__f");
    let u = r.usage.unwrap();
    assert_eq!(
        (
            u.prompt_tokens,
            u.completion_tokens,
            u.total_tokens,
            u.cached_prompt_tokens,
            u.reasoning_tokens
        ),
        (36, 87, 123, 10, 50)
    );
    let kept = Value::Object(map_from_struct(r.native_response.unwrap()));
    assert_eq!(kept, answered());
}

#[test]
fn incomplete_answers_say_why() {
    let mut v = answered();
    v["status"] = json!("incomplete");
    v["incomplete_details"] = json!({"reason": "max_output_tokens"});
    assert_eq!(
        response_to_result(obj(v.clone())).choices[0].finish_reason(),
        FinishReason::Length
    );
    v["incomplete_details"] = json!({"reason": "content_filter"});
    assert_eq!(
        response_to_result(obj(v)).choices[0].finish_reason(),
        FinishReason::ContentFilter
    );
}

type Item = Result<ChatChunk, ProviderError>;

async fn parse(events: &[Value]) -> Vec<Item> {
    let body: String = events
        .iter()
        .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap()))
        .collect();
    // Split mid-event, as a network would.
    let (a, b) = body.split_at(body.len() / 3);
    let pieces = vec![
        Ok::<_, std::io::Error>(a.as_bytes().to_vec()),
        Ok(b.as_bytes().to_vec()),
    ];
    NativeChunks::new(futures_util::stream::iter(pieces))
        .collect()
        .await
}

fn event_of(c: &ChatChunk) -> Value {
    Value::Object(map_from_struct(c.native_event.clone().unwrap()))
}

#[tokio::test]
async fn a_stream_reads_into_chunks_that_carry_their_events() {
    let head = json!({"id": "resp_1", "object": "response", "created_at": 7, "status": "in_progress",
                      "model": "gpt-5", "output": [], "usage": null});
    let mut done = head.clone();
    done["status"] = json!("completed");
    done["usage"] = json!({"input_tokens": 5, "output_tokens": 4, "total_tokens": 9,
                           "input_tokens_details": {"cached_tokens": 2},
                           "output_tokens_details": {"reasoning_tokens": 1}});
    let events = vec![
        json!({"type": "response.created", "sequence_number": 0, "response": head}),
        json!({"type": "response.output_item.added", "sequence_number": 1, "output_index": 0,
               "item": {"type": "web_search_call", "id": "ws_1", "status": "in_progress"}}),
        json!({"type": "response.web_search_call.completed", "sequence_number": 2,
               "output_index": 0, "item_id": "ws_1"}),
        json!({"type": "response.output_text.delta", "sequence_number": 3, "output_index": 1,
               "item_id": "msg_1", "content_index": 0, "delta": "Hi"}),
        json!({"type": "response.output_item.added", "sequence_number": 4, "output_index": 2,
               "item": {"type": "function_call", "id": "fc_1", "call_id": "call_1",
                        "name": "f", "arguments": ""}}),
        json!({"type": "response.function_call_arguments.delta", "sequence_number": 5,
               "output_index": 2, "item_id": "fc_1", "delta": "{\"a\":"}),
        json!({"type": "response.function_call_arguments.delta", "sequence_number": 6,
               "output_index": 2, "item_id": "fc_1", "delta": "1}"}),
        json!({"type": "response.completed", "sequence_number": 7, "response": done}),
    ];
    let items = parse(&events).await;
    assert_eq!(items.len(), events.len());
    let chunks: Vec<ChatChunk> = items.into_iter().map(Result::unwrap).collect();
    for (c, e) in chunks.iter().zip(&events) {
        assert_eq!(&event_of(c), e);
    }
    // Events without canonical content carry no choices.
    assert!(chunks[0].choices.is_empty());
    assert!(chunks[2].choices.is_empty());
    assert_eq!(chunks[1].id, "resp_1");
    assert_eq!(chunks[3].choices[0].content.as_deref(), Some("Hi"));
    let call = &chunks[4].choices[0].tool_calls[0];
    assert_eq!(
        (call.index, call.id.as_str(), call.name.as_str()),
        (0, "call_1", "f")
    );
    let args: String = chunks[5..7]
        .iter()
        .map(|c| c.choices[0].tool_calls[0].arguments.clone())
        .collect();
    assert_eq!(args, "{\"a\":1}");
    let last = chunks.last().unwrap();
    assert_eq!(last.choices[0].finish_reason(), FinishReason::ToolCalls);
    let u = last.usage.unwrap();
    assert_eq!(
        (
            u.prompt_tokens,
            u.completion_tokens,
            u.cached_prompt_tokens,
            u.reasoning_tokens
        ),
        (5, 4, 2, 1)
    );
}

#[tokio::test]
async fn failures_in_a_stream_end_it_classified() {
    let created = json!({"type": "response.created", "sequence_number": 0,
                         "response": {"id": "resp_1", "status": "in_progress"}});
    let items = parse(&[
        created.clone(),
        json!({"type": "error", "sequence_number": 1, "code": "rate_limit_exceeded",
               "message": "slow down", "param": null}),
    ])
    .await;
    assert_eq!(items.len(), 2);
    assert!(
        matches!(&items[1], Err(ProviderError::RateLimited { message, .. }) if message == "slow down"),
        "{:?}",
        items[1]
    );

    let items = parse(&[
        created.clone(),
        json!({"type": "response.failed", "sequence_number": 1,
               "response": {"id": "resp_1", "status": "failed",
                            "error": {"code": "server_error", "message": "boom"}}}),
    ])
    .await;
    assert!(
        matches!(&items[1], Err(e) if e.to_string().contains("boom")),
        "{:?}",
        items[1]
    );

    // Cut before the final event.
    let items = parse(&[created]).await;
    assert!(matches!(
        items.last(),
        Some(Err(ProviderError::Connection(_)))
    ));
}

fn request(v: Value) -> ResponsesRequest {
    serde_json::from_value(v).unwrap()
}

#[test]
fn what_only_a_native_target_serves_is_split_off_and_named() {
    let mut req = request(json!({
        "model": "m",
        "input": [{"role": "user", "content": "hi"},
                  {"type": "web_search_call", "id": "ws_1", "status": "completed"}],
        "tools": [{"type": "function", "name": "f", "parameters": {}},
                  {"type": "web_search"}],
    }));
    let mut earlier = Vec::new();
    let only = split_native_only(&mut req, &mut earlier, true).unwrap();
    assert_eq!(only.param, "tools[1].type");
    assert_eq!(req.tools.len(), 1);
    assert!(matches!(&req.input, Some(Input::Items(items)) if items.len() == 1));
    // What is left translates.
    let spec = request_to_spec(req).unwrap().spec;
    assert_eq!(spec.tools.len(), 1);

    // The upstream's own previous_response_id, when the gateway keeps none.
    let mut req = request(json!({"model": "m", "input": "x", "previous_response_id": "resp_up"}));
    let only = split_native_only(&mut req, &mut earlier, true).unwrap();
    assert_eq!(only.param, "previous_response_id");
    assert!(req.previous_response_id.is_none());
    // With a store it is the store's: left for the store to load.
    let mut req = request(json!({"model": "m", "input": "x", "previous_response_id": "resp_ours"}));
    assert_eq!(split_native_only(&mut req, &mut earlier, false), None);
    assert!(req.previous_response_id.is_some());

    // A stored conversation with a built-in tool call.
    let mut earlier = vec![
        json!({"type": "message", "role": "user", "content": "q"}),
        json!({"type": "web_search_call", "id": "ws_1"}),
    ];
    let mut req = request(json!({"model": "m", "input": "x"}));
    let only = split_native_only(&mut req, &mut earlier, false).unwrap();
    assert_eq!(only.param, "previous_response_id");
    assert_eq!(earlier.len(), 1);

    // A request that translates whole.
    let mut req =
        request(json!({"model": "m", "input": "x", "tools": [{"type": "function", "name": "f"}]}));
    assert_eq!(split_native_only(&mut req, &mut Vec::new(), true), None);
}

#[test]
fn translated_targets_refuse_native_only_requests_so_the_route_moves_on() {
    let mut spec = spec_with(json!({"model": "m", "input": "x"}));
    assert!(refusal(&spec, false).is_none());
    spec.native_only = Some(NativeOnly {
        param: "tools[0].type".into(),
        message: "built-in".into(),
    });
    assert!(refusal(&spec, true).is_none());
    match refusal(&spec, false) {
        Some(ProviderError::BadRequest { param, code, .. }) => {
            assert_eq!(param.as_deref(), Some("tools[0].type"));
            assert_eq!(code.as_deref(), Some(UNSUPPORTED_OPERATION));
        }
        other => panic!("{other:?}"),
    }
    // A native provider with a chat request (no original) is not native.
    spec.responses_request = None;
    assert!(refusal(&spec, true).is_some());
}

#[test]
fn native_calls_go_to_the_responses_endpoint() {
    use crate::Provider;
    use crate::openai::OpenAiProvider;
    use crate::test_support::config;
    use switchyard_config::{ProviderKind, ResponsesMode};

    let http = crate::registry::http_client();
    let mut cfg = config(ProviderKind::Openai, "https://api.openai.com/v1", Some("k"));
    let p = OpenAiProvider::new(&cfg, http.clone()).unwrap();
    assert!(!p.responses_native());
    cfg.responses = ResponsesMode::Native;
    let p = OpenAiProvider::new(&cfg, http.clone()).unwrap();
    assert!(p.responses_native());
    assert_eq!(
        p.responses_url("gpt-5").as_str(),
        "https://api.openai.com/v1/responses"
    );
    let call = |spec: ChatSpec| crate::ChatCall {
        spec,
        upstream_model: "gpt-5".into(),
        request_id: "r".into(),
        timeout: None,
    };
    let native = call(spec_with(json!({"model": "m", "input": "x"})));
    assert_eq!(
        p.call_url(&native).as_str(),
        "https://api.openai.com/v1/responses"
    );
    // A chat request to a native provider is still chat.
    assert_eq!(
        p.call_url(&call(ChatSpec::default())).as_str(),
        "https://api.openai.com/v1/chat/completions"
    );

    // Azure: the v1 API, the deployment in the body's `model`.
    let mut cfg = config(
        ProviderKind::AzureOpenai,
        "https://res.openai.azure.com",
        Some("k"),
    );
    cfg.responses = ResponsesMode::Native;
    let p = OpenAiProvider::new(&cfg, http).unwrap();
    assert_eq!(
        p.responses_url("dep").as_str(),
        "https://res.openai.azure.com/openai/v1/responses"
    );
}
