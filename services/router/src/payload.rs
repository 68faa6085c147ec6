//! Payload capture for the audit trail: what a request sent upstream and
//! what its answer said, as compact OpenAI-style message JSON, for callers
//! whose key has `capture_payloads`.
//!
//! Built only from what the guardrails already saw: the request's messages
//! after the request rules redacted them, the answer after the answer
//! rules did (for streams, the deltas as the client got them). Fields the
//! guardrails do not scan are left out, so nothing unredacted is kept:
//! pass-through fields (`extra`), reasoning text, and the bytes of inline
//! images. The ledger bounds the result ([`switchyard_ledger::bounded_payload`]).
//!
//! The shape (`payload` of a usage record):
//!
//! ```json
//! {"request": [{"role": "user", "content": "hi [REDACTED:email]"}],
//!  "response": [{"role": "assistant", "content": "...",
//!                "tool_calls": [{"id": "call_1", "type": "function",
//!                                "function": {"name": "f", "arguments": "{}"}}]}]}
//! ```
//!
//! `content` is a string when the client sent one, else a list of parts
//! (`{"type": "text", "text": ...}`, `{"type": "image_url", "image_url":
//! {"url": ...}}` with a `data:` URL shortened to its media type and size,
//! other parts as `{"type": ...}` only). `response` holds one message per
//! choice, in choice order.

use serde_json::{Map, Value, json};
use switchyard_proto::gateway::v1::{
    ChatChunk, ChatResult, ChatSpec, ContentPart, Message, Role, ToolCall, content_part::Part,
};

/// The request part: the messages as sent upstream.
pub(crate) fn request(spec: &ChatSpec) -> Value {
    Value::Array(spec.messages.iter().map(message).collect())
}

/// The response part of a complete answer: each choice's message.
pub(crate) fn response(result: &ChatResult) -> Value {
    let mut choices: Vec<_> = result.choices.iter().collect();
    choices.sort_by_key(|c| c.index);
    Value::Array(
        choices
            .into_iter()
            .map(|c| {
                c.message.as_ref().map_or_else(
                    || answer(String::new(), Vec::new()),
                    |m| {
                        let text = m
                            .content
                            .iter()
                            .filter_map(|p| match &p.part {
                                Some(Part::Text(t)) => Some(t.as_str()),
                                _ => None,
                            })
                            .collect::<String>();
                        answer(text, m.tool_calls.iter().map(tool_call).collect())
                    },
                )
            })
            .collect(),
    )
}

fn role(r: Role) -> &'static str {
    switchyard_providers::openai::convert::role_to_wire(r).unwrap_or("user")
}

fn message(m: &Message) -> Value {
    let mut o = Map::new();
    o.insert("role".into(), role(m.role()).into());
    let content = match (m.content_is_parts, m.content.as_slice()) {
        (
            false,
            [
                ContentPart {
                    part: Some(Part::Text(t)),
                    ..
                },
            ],
        ) => Value::String(t.clone()),
        (false, []) => Value::Null,
        _ => Value::Array(m.content.iter().filter_map(part).collect()),
    };
    if !content.is_null() {
        o.insert("content".into(), content);
    }
    if !m.name.is_empty() {
        o.insert("name".into(), m.name.clone().into());
    }
    if !m.tool_calls.is_empty() {
        o.insert(
            "tool_calls".into(),
            Value::Array(m.tool_calls.iter().map(tool_call).collect()),
        );
    }
    if !m.tool_call_id.is_empty() {
        o.insert("tool_call_id".into(), m.tool_call_id.clone().into());
    }
    Value::Object(o)
}

fn part(p: &ContentPart) -> Option<Value> {
    Some(match p.part.as_ref()? {
        Part::Text(t) => json!({"type": "text", "text": t}),
        Part::ImageUrl(img) => {
            json!({"type": "image_url", "image_url": {"url": image_url(&img.url)}})
        }
        // Audio, files, ...: named, not copied (no guardrail reads them).
        Part::Other(s) => {
            let kind = s
                .fields
                .get("type")
                .and_then(|v| match &v.kind {
                    Some(prost_types::value::Kind::StringValue(k)) => Some(k.as_str()),
                    _ => None,
                })
                .unwrap_or("other");
            json!({ "type": kind })
        }
    })
}

/// An https URL as it is; a `data:` URL as its media type and size (the
/// image itself would be most of the payload, and no guardrail reads it).
fn image_url(url: &str) -> String {
    match url.strip_prefix("data:") {
        Some(rest) => {
            let media = rest.split([';', ',']).next().unwrap_or_default();
            format!("data:{media};[{} bytes omitted]", url.len())
        }
        None => url.to_owned(),
    }
}

fn tool_call(c: &ToolCall) -> Value {
    json!({
        "id": c.id,
        "type": "function",
        "function": {"name": c.name, "arguments": c.arguments},
    })
}

fn answer(text: String, tool_calls: Vec<Value>) -> Value {
    let mut o = Map::new();
    o.insert("role".into(), "assistant".into());
    o.insert(
        "content".into(),
        if text.is_empty() && !tool_calls.is_empty() {
            Value::Null
        } else {
            text.into()
        },
    );
    if !tool_calls.is_empty() {
        o.insert("tool_calls".into(), Value::Array(tool_calls));
    }
    Value::Object(o)
}

/// A streamed answer put back together from its deltas: each choice's
/// text and tool calls (their arguments joined). Holds at most a little
/// over [`switchyard_ledger::MAX_PAYLOAD_BYTES`] of text: beyond that the
/// ledger would cut it anyway, and an open stream must stay small.
#[derive(Debug, Default)]
pub(crate) struct StreamCapture {
    choices: Vec<StreamChoice>,
    bytes: usize,
}

#[derive(Debug, Default)]
struct StreamChoice {
    index: u32,
    content: String,
    tool_calls: Vec<ToolCall>,
    /// The tool call index of each entry of `tool_calls`.
    tool_index: Vec<u32>,
}

impl StreamCapture {
    pub(crate) fn chunk(&mut self, chunk: &ChatChunk) {
        for d in &chunk.choices {
            if self.bytes > switchyard_ledger::MAX_PAYLOAD_BYTES {
                return;
            }
            let i = match self.choices.iter().position(|c| c.index == d.index) {
                Some(i) => i,
                None => {
                    self.choices.push(StreamChoice {
                        index: d.index,
                        ..StreamChoice::default()
                    });
                    self.choices.len() - 1
                }
            };
            let choice = &mut self.choices[i];
            if let Some(t) = &d.content {
                choice.content.push_str(t);
                self.bytes += t.len();
            }
            for t in &d.tool_calls {
                let k = match choice.tool_index.iter().position(|&k| k == t.index) {
                    Some(k) => k,
                    None => {
                        choice.tool_index.push(t.index);
                        choice.tool_calls.push(ToolCall::default());
                        choice.tool_calls.len() - 1
                    }
                };
                let call = &mut choice.tool_calls[k];
                // Ids and names come once, in the call's first delta.
                if call.id.is_empty() {
                    call.id.clone_from(&t.id);
                }
                if call.name.is_empty() {
                    call.name.clone_from(&t.name);
                }
                call.arguments.push_str(&t.arguments);
                self.bytes += t.arguments.len();
            }
        }
    }

    /// The response part, as [`response`] makes it for a complete answer.
    pub(crate) fn into_response(mut self) -> Value {
        self.choices.sort_by_key(|c| c.index);
        Value::Array(
            self.choices
                .into_iter()
                .map(|c| answer(c.content, c.tool_calls.iter().map(tool_call).collect()))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use switchyard_proto::gateway::v1::{Choice, ChoiceDelta, ImageUrl, ToolCallDelta};

    use super::*;

    fn text(t: &str) -> ContentPart {
        ContentPart {
            part: Some(Part::Text(t.into())),
            ..ContentPart::default()
        }
    }

    #[test]
    fn requests_are_openai_messages_without_what_no_guardrail_reads() {
        let spec = ChatSpec {
            messages: vec![
                Message {
                    role: Role::System as i32,
                    content: vec![text("be brief")],
                    ..Message::default()
                },
                Message {
                    role: Role::User as i32,
                    content: vec![
                        text("what is this?"),
                        ContentPart {
                            part: Some(Part::ImageUrl(ImageUrl {
                                url: "data:image/png;base64,AAAA".into(),
                                detail: String::new(),
                            })),
                            ..ContentPart::default()
                        },
                    ],
                    content_is_parts: true,
                    ..Message::default()
                },
                Message {
                    role: Role::Assistant as i32,
                    tool_calls: vec![ToolCall {
                        id: "call_1".into(),
                        name: "look".into(),
                        arguments: "{\"q\":1}".into(),
                    }],
                    ..Message::default()
                },
                Message {
                    role: Role::Tool as i32,
                    content: vec![text("found")],
                    tool_call_id: "call_1".into(),
                    ..Message::default()
                },
            ],
            ..ChatSpec::default()
        };
        assert_eq!(
            request(&spec),
            json!([
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": [
                    {"type": "text", "text": "what is this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;[26 bytes omitted]"}},
                ]},
                {"role": "assistant", "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "look", "arguments": "{\"q\":1}"}},
                ]},
                {"role": "tool", "content": "found", "tool_call_id": "call_1"},
            ])
        );
    }

    #[test]
    fn streamed_answers_come_out_like_complete_ones() {
        let result = ChatResult {
            choices: vec![Choice {
                index: 0,
                message: Some(Message {
                    role: Role::Assistant as i32,
                    content: vec![text("hello there")],
                    tool_calls: vec![ToolCall {
                        id: "c1".into(),
                        name: "f".into(),
                        arguments: "{\"a\":1}".into(),
                    }],
                    ..Message::default()
                }),
                ..Choice::default()
            }],
            ..ChatResult::default()
        };
        let delta = |content: Option<&str>, args: Option<(&str, &str, &str)>| ChatChunk {
            choices: vec![ChoiceDelta {
                index: 0,
                content: content.map(Into::into),
                tool_calls: args
                    .map(|(id, name, a)| ToolCallDelta {
                        index: 0,
                        id: id.into(),
                        name: name.into(),
                        arguments: a.into(),
                    })
                    .into_iter()
                    .collect(),
                ..ChoiceDelta::default()
            }],
            ..ChatChunk::default()
        };
        let mut c = StreamCapture::default();
        c.chunk(&delta(Some("hello "), None));
        c.chunk(&delta(Some("there"), Some(("c1", "f", "{\"a\""))));
        c.chunk(&delta(None, Some(("", "", ":1}"))));
        assert_eq!(c.into_response(), response(&result));
        assert_eq!(
            response(&result),
            json!([{"role": "assistant", "content": "hello there", "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}]}])
        );
    }

    #[test]
    fn a_stream_keeps_little_more_than_the_cap() {
        let mut c = StreamCapture::default();
        let big = "x".repeat(64 * 1024);
        let chunk = ChatChunk {
            choices: vec![ChoiceDelta {
                content: Some(big),
                ..ChoiceDelta::default()
            }],
            ..ChatChunk::default()
        };
        for _ in 0..100 {
            c.chunk(&chunk);
        }
        assert!(c.bytes <= switchyard_ledger::MAX_PAYLOAD_BYTES + 64 * 1024);
    }
}
