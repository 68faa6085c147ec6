//! `responses: native`: a Responses API request (`POST /v1/responses`)
//! posted as the client sent it to the upstream's own Responses endpoint
//! (OpenAI, Azure OpenAI), instead of its chat translation.
//!
//! The router routes on the canonical spec the Responses front end
//! translated, which carries the original in `responses_request`; an
//! attempt on a native target posts that original with only `model` (the
//! upstream model) and `stream` replaced. The answer is read twice: into
//! the canonical result (text, tool calls, usage), which usage, cost,
//! budgets, cache and traces work on, and kept whole in `native_response`
//! / each chunk's `native_event`, which the front end hands to the client
//! as it is. So nothing the canonical model does not name (built-in tools,
//! reasoning items, `include`, output item types) is lost.
//!
//! [`split_native_only`] is the front end's half: what of a request only a
//! native target can serve, taken out of the translation and named, so that
//! translated targets refuse it ([`refusal`]) and a route moves on.

use serde_json::{Map, Value, json};
use switchyard_proto::gateway::v1::{
    self as pb, ChatChunk, ChatResult, ChatSpec, ChoiceDelta, FinishReason, NativeOnly, Role,
    ToolCallDelta, Usage, content_part,
};
use switchyard_proto::json::{map_from_struct_ref, struct_from_map};

use super::error::classify_error_body;
use super::responses::{Input, ResponsesRequest};
use crate::ProviderError;
use crate::sse::{Sse, SseEvents, undecodable};

/// The error code that moves a route on to its next target
/// (`ProviderError::unsupported`'s).
const UNSUPPORTED_OPERATION: &str = "unsupported_operation";

/// Input item types the translation to chat reads (`responses::input_item`).
const TRANSLATED_ITEMS: &[&str] = &[
    "message",
    "function_call",
    "function_call_output",
    "reasoning",
];

/// Tool types the translation to chat reads (`responses::push_tools`).
const TRANSLATED_TOOLS: &[&str] = &["function", "namespace"];

/// Takes out of `req` (and of `earlier`, a stored conversation put before
/// it) what only a native target can serve: built-in tools, input items the
/// translation lacks and, when the gateway keeps no responses
/// (`stateless`), `previous_response_id` (the upstream's own). Returns the
/// first such thing as the error a translated target answers, `None` when
/// the whole request translates. The original request, which native
/// targets get, is left as the client sent it by the caller.
pub fn split_native_only(
    req: &mut ResponsesRequest,
    earlier: &mut Vec<Value>,
    stateless: bool,
) -> Option<NativeOnly> {
    let mut first: Option<NativeOnly> = None;
    let mut note = |param: String, message: String| {
        first.get_or_insert(NativeOnly { param, message });
    };
    if stateless && req.previous_response_id.take().is_some() {
        note(
            "previous_response_id".into(),
            "this gateway keeps no responses (stateless; `responses.store` is off in its \
             config), and only a provider with `responses: native` can pass \
             `previous_response_id` to its upstream: send the whole conversation in `input`"
                .into(),
        );
    }
    let mut i = 0;
    req.tools.retain(|t| {
        let at = i;
        i += 1;
        match t.get("type").and_then(Value::as_str) {
            Some(kind) if !TRANSLATED_TOOLS.contains(&kind) => {
                note(
                    format!("tools[{at}].type"),
                    format!(
                        "`{kind}` is a built-in tool of OpenAI's own service; only a provider \
                         with `responses: native` can pass it on (the others take function \
                         tools and namespaces of them)"
                    ),
                );
                false
            }
            _ => true,
        }
    });
    let unknown = |item: &Value| match item.get("type") {
        Some(Value::String(kind)) if !TRANSLATED_ITEMS.contains(&kind.as_str()) => {
            Some(kind.clone())
        }
        _ => None,
    };
    let before = earlier.len();
    earlier.retain(|item| unknown(item).is_none());
    if earlier.len() != before {
        note(
            "previous_response_id".into(),
            "the stored conversation holds items only a provider with `responses: native` \
             can take (built-in tool calls, ...)"
                .into(),
        );
    }
    if let Some(Input::Items(items)) = &mut req.input {
        let mut i = 0;
        items.retain(|item| {
            let at = i;
            i += 1;
            match unknown(item) {
                Some(kind) => {
                    note(
                        format!("input[{at}].type"),
                        format!(
                            "input items of type `{kind}` are not supported by a translated \
                             target (message, function_call, function_call_output); only a \
                             provider with `responses: native` takes them"
                        ),
                    );
                    false
                }
                None => true,
            }
        });
    }
    first
}

/// A translated target's answer to a request only a native target can
/// serve: a 400 that moves the route on to its next target.
pub fn refusal(spec: &ChatSpec, native: bool) -> Option<ProviderError> {
    if native && spec.responses_request.is_some() {
        return None;
    }
    let n = spec.native_only.as_ref()?;
    Some(ProviderError::BadRequest {
        message: n.message.clone(),
        status: 400,
        param: (!n.param.is_empty()).then(|| n.param.clone()),
        code: Some(UNSUPPORTED_OPERATION.to_owned()),
    })
}

/// The body posted upstream: the client's request with `model` the
/// upstream model and `stream` as asked, every other field as it came.
pub fn request_body(spec: &ChatSpec, upstream_model: &str, stream: bool) -> Option<Value> {
    let mut body = map_from_struct_ref(spec.responses_request.as_ref()?);
    body.insert("model".into(), json!(upstream_model));
    if stream {
        body.insert("stream".into(), json!(true));
    } else {
        body.remove("stream");
    }
    Some(Value::Object(body))
}

fn u32_at(v: &Value, path: &[&str]) -> u32 {
    let mut cur = v;
    for key in path {
        match cur.get(key) {
            Some(next) => cur = next,
            None => return 0,
        }
    }
    cur.as_u64()
        .map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX))
}

/// A Responses `usage` object as canonical usage.
pub fn usage_from_json(u: &Value) -> Usage {
    let prompt = u32_at(u, &["input_tokens"]);
    let completion = u32_at(u, &["output_tokens"]);
    Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: match u32_at(u, &["total_tokens"]) {
            0 => prompt.saturating_add(completion),
            t => t,
        },
        cached_prompt_tokens: u32_at(u, &["input_tokens_details", "cached_tokens"]),
        reasoning_tokens: u32_at(u, &["output_tokens_details", "reasoning_tokens"]),
        ..Default::default()
    }
}

/// The flat name a namespaced call has in the canonical model, as the
/// translation names it.
fn call_name(item: &Value) -> String {
    let name = item.get("name").and_then(Value::as_str).unwrap_or_default();
    match item.get("namespace").and_then(Value::as_str) {
        Some(ns) => format!("{ns}__{name}"),
        None => name.to_owned(),
    }
}

/// The finish reason of a `response` object with `calls` function calls.
fn finish_of(response: &Value, calls: bool) -> FinishReason {
    let reason = response
        .pointer("/incomplete_details/reason")
        .and_then(Value::as_str);
    match (response.get("status").and_then(Value::as_str), reason) {
        (Some("incomplete"), Some("content_filter")) => FinishReason::ContentFilter,
        (Some("incomplete"), _) => FinishReason::Length,
        _ if calls => FinishReason::ToolCalls,
        _ => FinishReason::Stop,
    }
}

/// A `response` object read into the canonical result, which keeps the
/// object whole in `native_response`.
pub fn response_to_result(response: Map<String, Value>) -> ChatResult {
    let response = Value::Object(response);
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    for item in response
        .get("output")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match item.get("type").and_then(Value::as_str) {
            Some("message") => {
                for part in item
                    .get("content")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    // A refusal is the model's answer as much as text is.
                    let t = part.get("text").or_else(|| part.get("refusal"));
                    if let Some(t) = t.and_then(Value::as_str) {
                        text.push_str(t);
                    }
                }
            }
            Some("function_call") => tool_calls.push(pb::ToolCall {
                id: item
                    .get("call_id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                name: call_name(item),
                arguments: item
                    .get("arguments")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            }),
            // Built-in tool calls, reasoning, ...: the client gets them in
            // the native response; the canonical model has no place for them.
            _ => {}
        }
    }
    let finish = finish_of(&response, !tool_calls.is_empty());
    let message = pb::Message {
        role: Role::Assistant as i32,
        content: vec![pb::ContentPart {
            part: Some(content_part::Part::Text(text)),
            extra: None,
        }],
        tool_calls,
        ..Default::default()
    };
    let str_of = |k: &str| {
        response
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    ChatResult {
        id: str_of("id"),
        model: str_of("model"),
        created: response
            .get("created_at")
            .and_then(Value::as_i64)
            .unwrap_or_default(),
        choices: vec![pb::Choice {
            index: 0,
            message: Some(message),
            finish_reason: finish as i32,
        }],
        usage: response.get("usage").map(usage_from_json),
        system_fingerprint: String::new(),
        native_response: match response {
            Value::Object(m) => Some(struct_from_map(m)),
            _ => None,
        },
    }
}

/// Canonical chunks from a Responses SSE body, each carrying its event.
pub type NativeChunks<S> = Sse<S, NativeState>;

/// Reading a Responses event stream.
///
/// - Every event becomes one chunk carrying it in `native_event`; text
///   deltas and function call argument deltas also as canonical deltas.
/// - `response.completed` / `response.incomplete` carry the usage and the
///   finish reason, and end the stream.
/// - `error` and `response.failed` become one `Err` item, classified as the
///   same error answered over HTTP, and end the stream.
/// - A body that ends before the final event is a truncated stream: `Err`.
#[derive(Default)]
pub struct NativeState {
    done: bool,
    id: String,
    model: String,
    created: i64,
    /// Output index of each function call item, in the order they came: the
    /// canonical tool call index is the position here.
    calls: Vec<u64>,
}

impl<S, B, E> NativeChunks<S>
where
    S: futures_util::Stream<Item = Result<B, E>>,
    B: AsRef<[u8]>,
{
    pub fn new(bytes: S) -> Self {
        Self::with_state(bytes, NativeState::default())
    }
}

impl NativeState {
    fn chunk(&self, event: Map<String, Value>, delta: Option<ChoiceDelta>) -> ChatChunk {
        ChatChunk {
            id: self.id.clone(),
            model: self.model.clone(),
            created: self.created,
            choices: delta.into_iter().collect(),
            usage: None,
            system_fingerprint: String::new(),
            native_event: Some(struct_from_map(event)),
        }
    }

    fn call_index(&self, event: &Map<String, Value>) -> Option<u32> {
        let at = event.get("output_index").and_then(Value::as_u64)?;
        let i = self.calls.iter().position(|&o| o == at)?;
        u32::try_from(i).ok()
    }
}

fn delta() -> ChoiceDelta {
    ChoiceDelta {
        index: 0,
        role: Role::Assistant as i32,
        ..Default::default()
    }
}

/// `{"error": {...}}` as an HTTP error body has it, for classification.
fn error_body(e: &Value) -> Vec<u8> {
    json!({"error": e}).to_string().into_bytes()
}

impl SseEvents for NativeState {
    fn done(&self) -> bool {
        self.done
    }

    fn fail(&mut self, e: ProviderError) -> Option<Result<ChatChunk, ProviderError>> {
        self.done = true;
        Some(Err(e))
    }

    fn on_close(&mut self) -> Option<Result<ChatChunk, ProviderError>> {
        self.fail(ProviderError::Connection(
            "the upstream stream ended before it finished (no response.completed)".into(),
        ))
    }

    fn on_event(&mut self, event: &str, data: &str) -> Option<Result<ChatChunk, ProviderError>> {
        let mut ev: Map<String, Value> = match serde_json::from_str(data) {
            Ok(v) => v,
            Err(e) => return self.fail(undecodable(e, data)),
        };
        // The type is in the data; the `event:` line names it only when
        // the data does not.
        if !ev.contains_key("type") && !event.is_empty() && event != "message" {
            ev.insert("type".into(), json!(event));
        }
        let kind = ev
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if let Some(r) = ev.get("response") {
            if let Some(id) = r.get("id").and_then(Value::as_str) {
                self.id = id.to_owned();
            }
            if let Some(m) = r.get("model").and_then(Value::as_str) {
                self.model = m.to_owned();
            }
            if let Some(c) = r.get("created_at").and_then(Value::as_i64) {
                self.created = c;
            }
        }
        match kind.as_str() {
            "error" => {
                let e = json!({
                    "message": ev.get("message").cloned().unwrap_or(Value::Null),
                    "code": ev.get("code").cloned().unwrap_or(Value::Null),
                    "param": ev.get("param").cloned().unwrap_or(Value::Null),
                });
                self.fail(classify_error_body(&error_body(&e)))
            }
            "response.failed" => {
                let e = ev
                    .get("response")
                    .and_then(|r| r.get("error"))
                    .filter(|e| e.is_object())
                    .cloned()
                    .unwrap_or_else(|| json!({"message": "the upstream response failed"}));
                self.fail(classify_error_body(&error_body(&e)))
            }
            "response.completed" | "response.incomplete" => {
                self.done = true;
                let response = ev.get("response").cloned().unwrap_or(Value::Null);
                let usage = response.get("usage").map(usage_from_json);
                let finish = finish_of(&response, !self.calls.is_empty());
                let mut d = delta();
                d.finish_reason = finish as i32;
                let mut chunk = self.chunk(ev, Some(d));
                chunk.usage = usage;
                Some(Ok(chunk))
            }
            "response.output_text.delta" => {
                let text = ev.get("delta").and_then(Value::as_str).map(str::to_owned);
                let mut d = delta();
                d.content = text;
                Some(Ok(self.chunk(ev, Some(d))))
            }
            "response.output_item.added"
                if ev
                    .get("item")
                    .and_then(|i| i.get("type"))
                    .and_then(Value::as_str)
                    == Some("function_call") =>
            {
                let at = ev
                    .get("output_index")
                    .and_then(Value::as_u64)
                    .unwrap_or(self.calls.len() as u64);
                self.calls.push(at);
                let item = ev.get("item").cloned().unwrap_or(Value::Null);
                let mut d = delta();
                d.tool_calls.push(ToolCallDelta {
                    index: u32::try_from(self.calls.len() - 1).unwrap_or_default(),
                    id: item
                        .get("call_id")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    name: call_name(&item),
                    arguments: item
                        .get("arguments")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                });
                Some(Ok(self.chunk(ev, Some(d))))
            }
            "response.function_call_arguments.delta" => {
                let d = self.call_index(&ev).map(|index| {
                    let mut d = delta();
                    d.tool_calls.push(ToolCallDelta {
                        index,
                        arguments: ev
                            .get("delta")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned(),
                        ..Default::default()
                    });
                    d
                });
                Some(Ok(self.chunk(ev, d)))
            }
            _ => Some(Ok(self.chunk(ev, None))),
        }
    }
}

#[cfg(test)]
mod tests;
