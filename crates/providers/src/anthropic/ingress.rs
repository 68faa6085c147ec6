//! The router side of the Anthropic-compatible `POST /v1/messages`: an
//! Anthropic client request as the canonical spec ([`request_to_spec`]), a
//! canonical result as an Anthropic message ([`result_to_response`]), and
//! canonical stream chunks as Anthropic's event sequence ([`StreamEncoder`]).
//! Whatever provider serves the request: this is what lets the Anthropic
//! SDKs and Claude Code use any model behind the gateway.
//!
//! The mapping is the inverse of [`super::convert`]:
//! - `system` becomes a system message (text blocks: one part each);
//! - `tool_result` blocks become tool messages, placed before the rest of
//!   their user turn (OpenAI-format upstreams need tool answers right after
//!   the calls); `tool_use` blocks become the assistant's tool calls;
//! - images become image parts (base64 as a `data:` URL), PDF documents
//!   become OpenAI `file` parts; other blocks (signed `thinking`,
//!   `redacted_thinking`, `search_result`, ...) travel as raw parts, which
//!   only an Anthropic upstream takes;
//! - a block's own fields (`cache_control`, `citations`), a tool result's
//!   `is_error` and a tool's extra fields (`defer_loading`) ride on the
//!   canonical part, tool message or tool (`extra`), for Anthropic targets
//!   only;
//! - request fields the canonical model does not name (`top_k`, `thinking`,
//!   ...) go to `spec.extra`; `thinking` is also read into `spec.reasoning`,
//!   so other wire formats get it in their own reasoning control
//!   ([`crate::reasoning`]).

use std::collections::HashMap;

use serde_json::Value;
use switchyard_proto::gateway::v1::{
    self as pb, ChatChunk, FinishReason, Role, content_part::Part, tool_choice::Mode,
};
use switchyard_proto::json::{map_from_struct_ref, struct_from_map};

use super::wire::{self, BlockDelta, ContentBlock, Extra, StreamEvent};

/// A request Anthropic would refuse with 400 (`invalid_request_error`).
/// `param` names the field as Anthropic's messages do (`messages.1.role`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct IngressError {
    pub message: String,
    pub param: Option<String>,
}

impl IngressError {
    fn new(param: impl Into<String>, message: impl Into<String>) -> Self {
        let param = param.into();
        Self {
            message: format!("{param}: {}", message.into()),
            param: Some(param),
        }
    }
}

fn text_part(text: String) -> pb::ContentPart {
    pb::ContentPart {
        part: Some(Part::Text(text)),
        extra: None,
    }
}

/// A block's own fields (`cache_control`, `citations`, ...) for the
/// canonical part or tool, so an Anthropic target gets them back.
fn block_extra(extra: Extra) -> Option<prost_types::Struct> {
    (!extra.is_empty()).then(|| struct_from_map(extra))
}

/// A client's Messages request as the canonical spec, and whether it asked
/// for a stream. Validates what Anthropic validates before any upstream is
/// called.
pub fn request_to_spec(req: wire::MessagesRequest) -> Result<(pb::ChatSpec, bool), IngressError> {
    let wire::MessagesRequest {
        model,
        messages,
        max_tokens,
        system,
        temperature,
        top_p,
        stop_sequences,
        stream,
        metadata,
        tools,
        tool_choice,
        extra,
    } = req;
    if model.trim().is_empty() {
        return Err(IngressError::new("model", "Field required"));
    }
    let Some(max_tokens) = max_tokens else {
        return Err(IngressError::new("max_tokens", "Field required"));
    };
    if max_tokens < 1 {
        return Err(IngressError::new(
            "max_tokens",
            "Input should be greater than or equal to 1",
        ));
    }
    if messages.is_empty() {
        return Err(IngressError::new(
            "messages",
            "at least one message is required",
        ));
    }
    for (name, v) in [("temperature", temperature), ("top_p", top_p)] {
        if let Some(x) = v
            && !(0.0..=1.0).contains(&x)
        {
            return Err(IngressError::new(name, "Input should be between 0 and 1"));
        }
    }

    let mut out = Vec::with_capacity(messages.len() + 1);
    match system {
        None => {}
        Some(wire::System::Text(s)) => out.push(pb::Message {
            role: Role::System as i32,
            content: vec![text_part(s)],
            ..Default::default()
        }),
        Some(wire::System::Blocks(blocks)) => out.push(system_blocks("system", blocks)?),
    }
    for (i, m) in messages.into_iter().enumerate() {
        match m.role.as_str() {
            wire::role::USER => user_to_canonical(i, m.content, &mut out)?,
            wire::role::ASSISTANT => out.push(assistant_to_canonical(i, m.content)?),
            // Claude Code sends its environment as a system turn inside
            // `messages` (text blocks only); it stays a system message in
            // place, which an Anthropic target gets back in `system`.
            wire::role::SYSTEM => out.push(match m.content {
                wire::MessageContent::Text(s) => pb::Message {
                    role: Role::System as i32,
                    content: vec![text_part(s)],
                    ..Default::default()
                },
                wire::MessageContent::Blocks(blocks) => {
                    system_blocks(&format!("messages.{i}.content"), blocks)?
                }
            }),
            _ => {
                return Err(IngressError::new(
                    format!("messages.{i}.role"),
                    "Input should be 'user', 'assistant' or 'system'",
                ));
            }
        }
    }

    let tools = tools
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, t)| match t.input_schema {
            Some(Value::Object(schema)) => Ok(pb::Tool {
                name: t.name,
                description: t.description.unwrap_or_default(),
                parameters: Some(struct_from_map(schema)),
                strict: None,
                extra: block_extra(t.extra),
            }),
            _ => Err(IngressError::new(
                format!("tools.{i}"),
                "only client tools with an `input_schema` object are supported by this gateway (server tools are not)",
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;

    let mut parallel_tool_calls = None;
    let tool_choice = match tool_choice {
        None => None,
        Some(c) => {
            if c.disable_parallel_tool_use == Some(true) {
                parallel_tool_calls = Some(false);
            }
            let mode = match c.kind.as_str() {
                wire::tool_choice_type::AUTO => Mode::Auto,
                wire::tool_choice_type::ANY => Mode::Required,
                wire::tool_choice_type::NONE => Mode::None,
                wire::tool_choice_type::TOOL => Mode::Function,
                _ => {
                    return Err(IngressError::new(
                        "tool_choice.type",
                        "Input should be 'auto', 'any', 'tool' or 'none'",
                    ));
                }
            };
            let name = c.name.unwrap_or_default();
            if mode == Mode::Function && name.is_empty() {
                return Err(IngressError::new("tool_choice.name", "Field required"));
            }
            Some(pb::ToolChoice {
                mode: mode as i32,
                name,
            })
        }
    };

    // Typed for the other wire formats; `thinking` itself stays in `extra`,
    // so an Anthropic target receives exactly what the client sent.
    let reasoning = extra
        .get("thinking")
        .and_then(|t| crate::reasoning::from_anthropic(t, extra.get("output_config")));
    let spec = pb::ChatSpec {
        model,
        messages: out,
        temperature,
        top_p,
        max_tokens: Some(max_tokens),
        stop: stop_sequences.unwrap_or_default(),
        user: metadata.and_then(|m| m.user_id).unwrap_or_default(),
        tools,
        tool_choice,
        parallel_tool_calls,
        extra: (!extra.is_empty()).then(|| struct_from_map(extra)),
        dialect: pb::Dialect::Anthropic as i32,
        reasoning,
        ..Default::default()
    };
    Ok((spec, stream.unwrap_or(false)))
}

/// A system prompt given as blocks: text only. `param` names the list in
/// errors (`system`, `messages.3.content`).
fn system_blocks(param: &str, blocks: Vec<ContentBlock>) -> Result<pb::Message, IngressError> {
    let mut content = Vec::with_capacity(blocks.len());
    for (j, b) in blocks.into_iter().enumerate() {
        match b {
            ContentBlock::Text(t) => content.push(pb::ContentPart {
                part: Some(Part::Text(t.text)),
                extra: block_extra(t.extra),
            }),
            other => {
                return Err(IngressError::new(
                    format!("{param}.{j}.type"),
                    format!("Input should be 'text', not '{}'", other.kind()),
                ));
            }
        }
    }
    Ok(pb::Message {
        role: Role::System as i32,
        content,
        content_is_parts: true,
        ..Default::default()
    })
}

/// A user turn: its tool results as tool messages first, then the rest.
fn user_to_canonical(
    i: usize,
    content: wire::MessageContent,
    out: &mut Vec<pb::Message>,
) -> Result<(), IngressError> {
    let blocks = match content {
        wire::MessageContent::Text(s) => {
            out.push(pb::Message {
                role: Role::User as i32,
                content: vec![text_part(s)],
                ..Default::default()
            });
            return Ok(());
        }
        wire::MessageContent::Blocks(b) => b,
    };
    let mut parts = Vec::new();
    for (j, b) in blocks.into_iter().enumerate() {
        match b {
            ContentBlock::ToolResult(r) => {
                let (content, content_is_parts) = match r.content {
                    None => (Vec::new(), false),
                    Some(wire::MessageContent::Text(s)) => (vec![text_part(s)], false),
                    Some(wire::MessageContent::Blocks(inner)) => (
                        inner
                            .into_iter()
                            .filter_map(|b| block_to_part(b).transpose())
                            .collect::<Result<Vec<_>, _>>()
                            .map_err(|m| {
                                IngressError::new(format!("messages.{i}.content.{j}.content"), m)
                            })?,
                        true,
                    ),
                };
                out.push(pb::Message {
                    role: Role::Tool as i32,
                    content,
                    content_is_parts,
                    tool_call_id: r.tool_use_id,
                    // The tool_result block's own fields (`cache_control`,
                    // `is_error`), for an Anthropic target.
                    extra: block_extra({
                        let mut extra = r.extra;
                        if let Some(e) = r.is_error {
                            extra.insert("is_error".into(), Value::Bool(e));
                        }
                        extra
                    }),
                    ..Default::default()
                });
            }
            ContentBlock::ToolUse(_) => {
                return Err(IngressError::new(
                    format!("messages.{i}.content.{j}"),
                    "tool_use blocks are only allowed in assistant messages",
                ));
            }
            other => {
                if let Some(p) = block_to_part(other)
                    .map_err(|m| IngressError::new(format!("messages.{i}.content.{j}"), m))?
                {
                    parts.push(p);
                }
            }
        }
    }
    if !parts.is_empty() {
        out.push(pb::Message {
            role: Role::User as i32,
            content: parts,
            content_is_parts: true,
            ..Default::default()
        });
    }
    Ok(())
}

fn assistant_to_canonical(
    i: usize,
    content: wire::MessageContent,
) -> Result<pb::Message, IngressError> {
    let blocks = match content {
        wire::MessageContent::Text(s) => {
            return Ok(pb::Message {
                role: Role::Assistant as i32,
                content: vec![text_part(s)],
                ..Default::default()
            });
        }
        wire::MessageContent::Blocks(b) => b,
    };
    let mut parts = Vec::new();
    let mut tool_calls = Vec::new();
    for (j, b) in blocks.into_iter().enumerate() {
        match b {
            ContentBlock::ToolUse(t) => tool_calls.push(pb::ToolCall {
                id: t.id,
                name: t.name,
                arguments: t.input.to_string(),
            }),
            ContentBlock::ToolResult(_) => {
                return Err(IngressError::new(
                    format!("messages.{i}.content.{j}"),
                    "tool_result blocks are only allowed in user messages",
                ));
            }
            other => {
                if let Some(p) = block_to_part(other)
                    .map_err(|m| IngressError::new(format!("messages.{i}.content.{j}"), m))?
                {
                    parts.push(p);
                }
            }
        }
    }
    Ok(pb::Message {
        role: Role::Assistant as i32,
        content_is_parts: !parts.is_empty(),
        content: parts,
        tool_calls,
        ..Default::default()
    })
}

/// One non-tool block as a canonical part; `None` for blocks that carry
/// nothing to send on (unsigned thinking: it came from a non-Anthropic
/// reasoning model through [`StreamEncoder`], and no upstream can verify
/// it).
fn block_to_part(b: ContentBlock) -> Result<Option<pb::ContentPart>, String> {
    let mut extra = None;
    let part = match b {
        ContentBlock::Text(t) => {
            extra = block_extra(t.extra);
            Part::Text(t.text)
        }
        ContentBlock::Image(img) => {
            extra = block_extra(img.extra);
            let s = img.source;
            let url = match (s.kind.as_str(), s.media_type, s.data, s.url) {
                ("base64", Some(mt), Some(data), _) => format!("data:{mt};base64,{data}"),
                ("url", _, _, Some(url)) => url,
                (kind, ..) => {
                    return Err(format!(
                        "image sources of type '{kind}' are not supported by this gateway"
                    ));
                }
            };
            Part::ImageUrl(pb::ImageUrl {
                url,
                detail: String::new(),
            })
        }
        ContentBlock::Thinking(t) if t.signature.as_deref().is_none_or(str::is_empty) => {
            return Ok(None);
        }
        ContentBlock::Other(m) if is_pdf_document(&m) => {
            let data = m["source"]["data"].as_str().unwrap_or_default();
            let file = serde_json::json!({
                "type": "file",
                "file": {"filename": "document.pdf", "file_data": format!("data:application/pdf;base64,{data}")}
            });
            Part::Other(struct_from_map(
                file.as_object().cloned().unwrap_or_default(),
            ))
        }
        other => match serde_json::to_value(&other) {
            Ok(Value::Object(m)) => Part::Other(struct_from_map(m)),
            _ => return Err("undecodable content block".into()),
        },
    };
    Ok(Some(pb::ContentPart {
        part: Some(part),
        extra,
    }))
}

fn is_pdf_document(m: &Extra) -> bool {
    m.get("type").and_then(Value::as_str) == Some("document")
        && m["source"]["type"] == "base64"
        && m["source"]["media_type"] == "application/pdf"
        && m["source"]["data"].is_string()
}

// --- answers -------------------------------------------------------------

/// Anthropic ids start with `msg_`; SDKs do not check, but logs and clients
/// that do should see the familiar shape.
fn message_id(id: &str) -> String {
    if id.starts_with("msg_") {
        id.to_owned()
    } else if id.is_empty() {
        "msg_switchyard".to_owned()
    } else {
        format!("msg_{id}")
    }
}

fn stop_reason(f: FinishReason, has_tool_calls: bool) -> &'static str {
    use wire::stop_reason as sr;
    match f {
        FinishReason::Length => sr::MAX_TOKENS,
        FinishReason::ToolCalls => sr::TOOL_USE,
        FinishReason::ContentFilter => sr::REFUSAL,
        FinishReason::Unspecified if has_tool_calls => sr::TOOL_USE,
        FinishReason::Stop | FinishReason::Unspecified => sr::END_TURN,
    }
}

/// The canonical usage in Anthropic's terms: Anthropic's `input_tokens`
/// excludes cache reads and writes.
fn usage_to_wire(u: Option<&pb::Usage>) -> wire::Usage {
    let u = u.copied().unwrap_or_default();
    wire::Usage {
        input_tokens: Some(
            u.prompt_tokens
                .saturating_sub(u.cached_prompt_tokens)
                .saturating_sub(u.cache_write_tokens),
        ),
        output_tokens: Some(u.completion_tokens),
        cache_creation_input_tokens: Some(u.cache_write_tokens),
        cache_read_input_tokens: Some(u.cached_prompt_tokens),
        extra: Extra::new(),
    }
}

/// Tool call arguments as Anthropic's `input` object. Arguments that are not
/// a JSON object (a model's broken output) become `{}`: Anthropic clients
/// require an object.
fn input_of(arguments: &str) -> Value {
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => v,
        _ => Value::Object(Extra::new()),
    }
}

/// The canonical result as an Anthropic message. `requested_model` is the
/// model the client named (Anthropic echoes it).
pub fn result_to_response(r: &pb::ChatResult, requested_model: &str) -> wire::MessagesResponse {
    let choice = r.choices.first();
    let message = choice.and_then(|c| c.message.as_ref());
    let mut content = Vec::new();
    if let Some(m) = message {
        // Signed thinking blocks an Anthropic upstream returned, first as
        // Anthropic puts them.
        let extra = m
            .extra
            .as_ref()
            .map(map_from_struct_ref)
            .unwrap_or_default();
        if let Some(Value::Array(blocks)) = extra.get("thinking_blocks") {
            content.extend(
                blocks
                    .iter()
                    .filter_map(|b| serde_json::from_value::<ContentBlock>(b.clone()).ok()),
            );
        }
        let text: String = m
            .content
            .iter()
            .filter_map(|p| match &p.part {
                Some(Part::Text(t)) => Some(t.as_str()),
                _ => None,
            })
            .collect();
        if !text.is_empty() {
            content.push(ContentBlock::text(text));
        }
        for t in &m.tool_calls {
            content.push(ContentBlock::ToolUse(wire::ToolUseBlock {
                id: t.id.clone(),
                name: t.name.clone(),
                input: input_of(&t.arguments),
                extra: Extra::new(),
            }));
        }
    }
    let has_tools = message.is_some_and(|m| !m.tool_calls.is_empty());
    wire::MessagesResponse {
        id: message_id(&r.id),
        kind: "message".into(),
        role: wire::role::ASSISTANT.into(),
        content,
        model: requested_model.to_owned(),
        stop_reason: Some(
            stop_reason(
                choice.map_or(FinishReason::Unspecified, |c| c.finish_reason()),
                has_tools,
            )
            .to_owned(),
        ),
        stop_sequence: None,
        usage: usage_to_wire(r.usage.as_ref()),
        extra: Extra::new(),
    }
}

/// An `error` event for a stream that fails after it began.
pub fn error_event(kind: &str, message: impl Into<String>) -> StreamEvent {
    StreamEvent::Error {
        error: wire::ErrorResponse::new(kind, message).error,
    }
}

/// One event in Anthropic's SSE framing: `event: <type>` and its `data`.
pub fn sse_frame(ev: &StreamEvent) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(ev.name().as_bytes());
    out.extend_from_slice(b"\ndata: ");
    // Serializing these structs cannot fail; an empty object keeps the
    // stream well-formed if it ever did.
    if serde_json::to_writer(&mut out, ev).is_err() {
        out.extend_from_slice(b"{}");
    }
    out.extend_from_slice(b"\n\n");
    out
}

/// The content block being streamed.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Open {
    Text,
    Thinking,
    /// A tool call, by its canonical index.
    Tool(u32),
}

/// Canonical chunks in, Anthropic's event sequence out: `message_start`,
/// per content block `content_block_start` / `_delta`s / `_stop`, then
/// `message_delta` (stop reason and usage) and `message_stop` from
/// [`StreamEncoder::finish`]. Choices other than the first are ignored
/// (Anthropic has one).
#[derive(Debug)]
pub struct StreamEncoder {
    model: String,
    started: bool,
    finished: bool,
    /// The open block: its kind and Anthropic index.
    open: Option<(Open, u32)>,
    next_block: u32,
    /// Canonical tool-call index -> Anthropic block index.
    tools: HashMap<u32, u32>,
    finish: FinishReason,
}

impl StreamEncoder {
    pub fn new(requested_model: &str) -> Self {
        Self {
            model: requested_model.to_owned(),
            started: false,
            finished: false,
            open: None,
            next_block: 0,
            tools: HashMap::new(),
            finish: FinishReason::Unspecified,
        }
    }

    fn start(&mut self, id: &str, out: &mut Vec<StreamEvent>) {
        if self.started {
            return;
        }
        self.started = true;
        out.push(StreamEvent::MessageStart {
            message: wire::MessagesResponse {
                id: message_id(id),
                kind: "message".into(),
                role: wire::role::ASSISTANT.into(),
                content: Vec::new(),
                model: self.model.clone(),
                stop_reason: None,
                stop_sequence: None,
                // Canonical usage comes at the end; `message_delta` has it.
                usage: wire::Usage {
                    input_tokens: Some(0),
                    output_tokens: Some(0),
                    ..Default::default()
                },
                extra: Extra::new(),
            },
        });
    }

    fn close(&mut self, out: &mut Vec<StreamEvent>) {
        if let Some((_, index)) = self.open.take() {
            out.push(StreamEvent::ContentBlockStop { index });
        }
    }

    /// Makes `kind` the open block, opening it with `block` when it is not.
    fn ensure(
        &mut self,
        kind: Open,
        block: impl FnOnce() -> ContentBlock,
        out: &mut Vec<StreamEvent>,
    ) -> u32 {
        match self.open {
            Some((k, index)) if k == kind => index,
            _ => {
                self.close(out);
                let index = self.next_block;
                self.next_block += 1;
                self.open = Some((kind, index));
                out.push(StreamEvent::ContentBlockStart {
                    index,
                    content_block: block(),
                });
                index
            }
        }
    }

    /// The events for one canonical chunk.
    pub fn chunk(&mut self, c: &ChatChunk) -> Vec<StreamEvent> {
        let mut out = Vec::new();
        if self.finished {
            return out;
        }
        self.start(&c.id, &mut out);
        for d in c.choices.iter().filter(|d| d.index == 0) {
            if let Some(r) = d.reasoning_content.as_deref().filter(|r| !r.is_empty()) {
                let index = self.ensure(
                    Open::Thinking,
                    || {
                        ContentBlock::Thinking(wire::ThinkingBlock {
                            thinking: String::new(),
                            signature: Some(String::new()),
                            extra: Extra::new(),
                        })
                    },
                    &mut out,
                );
                out.push(StreamEvent::ContentBlockDelta {
                    index,
                    delta: BlockDelta::ThinkingDelta {
                        thinking: r.to_owned(),
                    },
                });
            }
            if let Some(text) = d.content.as_deref().filter(|t| !t.is_empty()) {
                let index = self.ensure(Open::Text, || ContentBlock::text(""), &mut out);
                out.push(StreamEvent::ContentBlockDelta {
                    index,
                    delta: BlockDelta::TextDelta {
                        text: text.to_owned(),
                    },
                });
            }
            for t in &d.tool_calls {
                let index = match self.tools.get(&t.index) {
                    Some(i) => *i,
                    None => {
                        let id = if t.id.is_empty() {
                            format!("toolu_{}", t.index)
                        } else {
                            t.id.clone()
                        };
                        let name = t.name.clone();
                        let i = self.ensure(
                            Open::Tool(t.index),
                            || {
                                ContentBlock::ToolUse(wire::ToolUseBlock {
                                    id,
                                    name,
                                    input: Value::Object(Extra::new()),
                                    extra: Extra::new(),
                                })
                            },
                            &mut out,
                        );
                        self.tools.insert(t.index, i);
                        i
                    }
                };
                if !t.arguments.is_empty() {
                    out.push(StreamEvent::ContentBlockDelta {
                        index,
                        delta: BlockDelta::InputJsonDelta {
                            partial_json: t.arguments.clone(),
                        },
                    });
                }
            }
            if d.finish_reason() != FinishReason::Unspecified {
                self.finish = d.finish_reason();
            }
        }
        out
    }

    /// The end of a stream that completed: the open block's stop,
    /// `message_delta` with the stop reason and usage, `message_stop`.
    pub fn finish(&mut self, usage: Option<&pb::Usage>) -> Vec<StreamEvent> {
        let mut out = Vec::new();
        if self.finished {
            return out;
        }
        self.start("", &mut out);
        self.close(&mut out);
        self.finished = true;
        out.push(StreamEvent::MessageDelta {
            delta: wire::MessageDeltaBody {
                stop_reason: Some(stop_reason(self.finish, !self.tools.is_empty()).to_owned()),
                stop_sequence: None,
                extra: Extra::new(),
            },
            usage: Some(usage_to_wire(usage)),
        });
        out.push(StreamEvent::MessageStop);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use switchyard_proto::gateway::v1::{ChoiceDelta, ToolCallDelta};

    fn request(v: Value) -> Result<(pb::ChatSpec, bool), IngressError> {
        request_to_spec(serde_json::from_value(v).unwrap())
    }

    /// The canonical spec as OpenAI's request shape: easy to read in
    /// assertions.
    fn as_openai(spec: &pb::ChatSpec) -> Value {
        serde_json::to_value(crate::openai::convert::spec_to_request(spec, "m", false)).unwrap()
    }

    #[test]
    fn a_claude_code_style_request() {
        let (spec, stream) = request(json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 1024,
            "stream": true,
            "system": [{"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}],
            "metadata": {"user_id": "user_abc"},
            "temperature": 1,
            "stop_sequences": ["</done>"],
            "top_k": 5,
            "tools": [{"name": "Read", "description": "Read a file", "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}}}],
            "tool_choice": {"type": "auto", "disable_parallel_tool_use": true},
            "messages": [
                {"role": "user", "content": "Read a.txt"},
                {"role": "assistant", "content": [
                    {"type": "text", "text": "Reading."},
                    {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {"path": "a.txt"}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "hello", "is_error": false},
                    {"type": "text", "text": "Now summarize."},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}}
                ]}
            ]
        }))
        .unwrap();
        assert!(stream);
        assert_eq!(spec.max_tokens, Some(1024));
        assert_eq!(spec.user, "user_abc");
        assert_eq!(spec.parallel_tool_calls, Some(false));
        // Anthropic-only fields ride in `extra`, marked as Anthropic's, so an
        // OpenAI-format target does not receive them.
        assert_eq!(spec.dialect(), pb::Dialect::Anthropic);
        assert!(
            spec.extra
                .as_ref()
                .is_some_and(|e| e.fields.contains_key("top_k"))
        );
        assert_eq!(
            as_openai(&spec),
            json!({
                "model": "m",
                "max_completion_tokens": 1024,
                "temperature": 1.0,
                "stop": ["</done>"],
                "user": "user_abc",
                "parallel_tool_calls": false,
                "tool_choice": "auto",
                "tools": [{"type": "function", "function": {"name": "Read", "description": "Read a file",
                    "parameters": {"type": "object", "properties": {"path": {"type": "string"}}}}}],
                "messages": [
                    {"role": "system", "content": [{"type": "text", "text": "You are Claude Code."}]},
                    {"role": "user", "content": "Read a.txt"},
                    {"role": "assistant", "content": [{"type": "text", "text": "Reading."}],
                        "tool_calls": [{"id": "toolu_1", "type": "function", "function": {"name": "Read", "arguments": "{\"path\":\"a.txt\"}"}}]},
                    {"role": "tool", "tool_call_id": "toolu_1", "content": "hello"},
                    {"role": "user", "content": [
                        {"type": "text", "text": "Now summarize."},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}}
                    ]}
                ]
            })
        );
    }

    /// Claude Code 2.1 ends its first request with a system turn holding
    /// the environment; it stays where it was sent.
    #[test]
    fn a_system_turn_inside_messages() {
        let (spec, _) = request(json!({
            "model": "m",
            "max_tokens": 10,
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "system", "content": [{"type": "text", "text": "# Environment", "cache_control": {"type": "ephemeral"}}]},
                {"role": "system", "content": "plain"}
            ]
        }))
        .unwrap();
        assert_eq!(
            as_openai(&spec)["messages"],
            json!([
                {"role": "user", "content": "hi"},
                {"role": "system", "content": [{"type": "text", "text": "# Environment"}]},
                {"role": "system", "content": "plain"}
            ])
        );
    }

    #[test]
    fn thinking_is_typed_and_kept_verbatim() {
        let ask = |thinking: Value| {
            request(
                json!({"model": "m", "max_tokens": 32000, "thinking": thinking,
                "messages": [{"role": "user", "content": "x"}]}),
            )
            .unwrap()
            .0
        };
        let spec = ask(json!({"type": "enabled", "budget_tokens": 31999}));
        assert_eq!(
            spec.reasoning.as_ref().map(|r| r.budget_tokens),
            Some(31999)
        );
        assert!(
            spec.extra
                .as_ref()
                .is_some_and(|e| e.fields.contains_key("thinking"))
        );
        // To an OpenAI-format target: OpenAI's own control instead.
        assert_eq!(as_openai(&spec)["reasoning_effort"], "high");
        assert!(as_openai(&spec).get("thinking").is_none());
        assert!(ask(json!({"type": "disabled"})).reasoning.unwrap().disabled);
        assert_eq!(
            ask(json!({"type": "adaptive"})).reasoning,
            Some(pb::Reasoning::default())
        );
        let plain = request(json!({"model": "m", "max_tokens": 5,
            "messages": [{"role": "user", "content": "x"}]}))
        .unwrap()
        .0;
        assert_eq!(plain.reasoning, None);
    }

    #[test]
    fn anthropic_round_trip_through_the_canonical_model() {
        let client = json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 100,
            "system": "Be brief.",
            "messages": [
                {"role": "user", "content": [
                    {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0x"}},
                    {"type": "text", "text": "Summarize"}
                ]},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "hm", "signature": "sig"},
                    {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}}
                ]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "ok"}]}
            ]
        });
        let (spec, _) = request(client.clone()).unwrap();
        let up = super::super::convert::spec_to_request(&spec, "claude-sonnet-4-5", false).unwrap();
        let mut expected = client;
        expected["messages"][2]["content"] =
            json!([{"type": "tool_result", "tool_use_id": "toolu_1", "content": "ok"}]);
        assert_eq!(serde_json::to_value(&up.body).unwrap(), expected);
    }

    /// Claude Code's prompt-cache breakpoints and extra tool fields reach
    /// an Anthropic upstream where the client put them, and no other.
    #[test]
    fn cache_control_and_tool_fields_round_trip_to_anthropic_only() {
        let cc = json!({"type": "ephemeral"});
        let client = json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 100,
            "system": [
                {"type": "text", "text": "You are Claude Code."},
                {"type": "text", "text": "Env.", "cache_control": cc}
            ],
            "tools": [{"name": "Later", "description": "d", "input_schema": {"type": "object"},
                       "defer_loading": true, "cache_control": cc}],
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "Run it", "cache_control": cc}]},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "toolu_1", "name": "Later", "input": {}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "ok", "is_error": true, "cache_control": cc}
                ]}
            ]
        });
        let (spec, _) = request(client.clone()).unwrap();
        let up = super::super::convert::spec_to_request(&spec, "claude-sonnet-4-5", false).unwrap();
        assert_eq!(serde_json::to_value(&up.body).unwrap(), client);

        let openai = as_openai(&spec).to_string();
        for field in ["cache_control", "defer_loading", "is_error"] {
            assert!(!openai.contains(field), "{field} in {openai}");
        }
    }

    #[test]
    fn invalid_requests() {
        let base =
            json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]});
        let with = |k: &str, v: Value| {
            let mut r = base.clone();
            if v.is_null() {
                r.as_object_mut().unwrap().remove(k);
            } else {
                r[k] = v;
            }
            request(r).unwrap_err()
        };
        assert_eq!(
            with("max_tokens", Value::Null).param.as_deref(),
            Some("max_tokens")
        );
        assert_eq!(
            with("max_tokens", Value::Null).message,
            "max_tokens: Field required"
        );
        assert_eq!(
            with("messages", json!([])).param.as_deref(),
            Some("messages")
        );
        assert_eq!(
            with("temperature", json!(1.5)).param.as_deref(),
            Some("temperature")
        );
        assert_eq!(
            with("messages", json!([{"role": "developer", "content": "x"}]))
                .param
                .as_deref(),
            Some("messages.0.role")
        );
        assert_eq!(
            with(
                "messages",
                json!([{"role": "system", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "x"}]}])
            )
            .param
            .as_deref(),
            Some("messages.0.content.0.type")
        );
        assert_eq!(
            with("tool_choice", json!({"type": "tool"}))
                .param
                .as_deref(),
            Some("tool_choice.name")
        );
        assert_eq!(
            with(
                "tools",
                json!([{"type": "web_search_20250305", "name": "web_search"}])
            )
            .param
            .as_deref(),
            Some("tools.0")
        );
        assert!(request(json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "thinking": {"type": "enabled", "budget_tokens": 1024}})).is_ok());
    }

    fn result(finish: FinishReason, text: &str, calls: Vec<pb::ToolCall>) -> pb::ChatResult {
        pb::ChatResult {
            id: "chatcmpl-1".into(),
            model: "gpt-4o-mini".into(),
            created: 1,
            choices: vec![pb::Choice {
                index: 0,
                message: Some(pb::Message {
                    role: Role::Assistant as i32,
                    content: vec![text_part(text.into())],
                    tool_calls: calls,
                    ..Default::default()
                }),
                finish_reason: finish as i32,
            }],
            usage: Some(pb::Usage {
                prompt_tokens: 30,
                completion_tokens: 5,
                total_tokens: 35,
                cached_prompt_tokens: 10,
                reasoning_tokens: 0,
                ..pb::Usage::default()
            }),
            system_fingerprint: String::new(),
            native_response: None,
        }
    }

    #[test]
    fn results_as_messages() {
        let r = result(FinishReason::Stop, "Hi!", vec![]);
        assert_eq!(
            serde_json::to_value(result_to_response(&r, "my-model")).unwrap(),
            json!({
                "id": "msg_chatcmpl-1", "type": "message", "role": "assistant", "model": "my-model",
                "content": [{"type": "text", "text": "Hi!"}],
                "stop_reason": "end_turn", "stop_sequence": null,
                "usage": {"input_tokens": 20, "output_tokens": 5, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 10}
            })
        );
        let r = result(
            FinishReason::ToolCalls,
            "",
            vec![pb::ToolCall {
                id: "call_1".into(),
                name: "f".into(),
                arguments: "{\"a\":1}".into(),
            }],
        );
        let m = serde_json::to_value(result_to_response(&r, "x")).unwrap();
        assert_eq!(
            m["content"],
            json!([{"type": "tool_use", "id": "call_1", "name": "f", "input": {"a": 1}}])
        );
        assert_eq!(m["stop_reason"], "tool_use");
        for (f, s) in [
            (FinishReason::Length, "max_tokens"),
            (FinishReason::ContentFilter, "refusal"),
        ] {
            assert_eq!(
                result_to_response(&result(f, "x", vec![]), "x")
                    .stop_reason
                    .as_deref(),
                Some(s)
            );
        }
    }

    fn chunk(delta: ChoiceDelta) -> ChatChunk {
        ChatChunk {
            id: "chatcmpl-9".into(),
            model: "gpt".into(),
            choices: vec![delta],
            ..Default::default()
        }
    }

    #[test]
    fn the_stream_encoder_emits_anthropics_sequence() {
        let mut e = StreamEncoder::new("claude-x");
        let mut events = Vec::new();
        let text = |s: &str| {
            chunk(ChoiceDelta {
                content: Some(s.into()),
                ..Default::default()
            })
        };
        events.extend(e.chunk(&chunk(ChoiceDelta {
            role: Role::Assistant as i32,
            content: Some(String::new()),
            ..Default::default()
        })));
        events.extend(e.chunk(&text("Hel")));
        events.extend(e.chunk(&text("lo")));
        let tool = |index: u32, id: &str, name: &str, args: &str| {
            chunk(ChoiceDelta {
                tool_calls: vec![ToolCallDelta {
                    index,
                    id: id.into(),
                    name: name.into(),
                    arguments: args.into(),
                }],
                ..Default::default()
            })
        };
        events.extend(e.chunk(&tool(0, "call_a", "f", "")));
        events.extend(e.chunk(&tool(0, "", "", "{\"x\":")));
        events.extend(e.chunk(&tool(0, "", "", "1}")));
        events.extend(e.chunk(&tool(1, "call_b", "g", "{}")));
        events.extend(e.chunk(&chunk(ChoiceDelta {
            finish_reason: FinishReason::ToolCalls as i32,
            ..Default::default()
        })));
        events.extend(e.finish(Some(&pb::Usage {
            prompt_tokens: 12,
            completion_tokens: 7,
            total_tokens: 19,
            ..Default::default()
        })));
        let json: Vec<Value> = events
            .iter()
            .map(|e| serde_json::to_value(e).unwrap())
            .collect();
        assert_eq!(
            json,
            vec![
                json!({"type": "message_start", "message": {"id": "msg_chatcmpl-9", "type": "message", "role": "assistant", "content": [], "model": "claude-x", "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 0, "output_tokens": 0}}}),
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hel"}}),
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "lo"}}),
                json!({"type": "content_block_stop", "index": 0}),
                json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "call_a", "name": "f", "input": {}}}),
                json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"x\":"}}),
                json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "1}"}}),
                json!({"type": "content_block_stop", "index": 1}),
                json!({"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "call_b", "name": "g", "input": {}}}),
                json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "{}"}}),
                json!({"type": "content_block_stop", "index": 2}),
                json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null}, "usage": {"input_tokens": 12, "output_tokens": 7, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}),
                json!({"type": "message_stop"}),
            ]
        );
        assert!(e.finish(None).is_empty());
        assert_eq!(
            String::from_utf8(sse_frame(&StreamEvent::MessageStop)).unwrap(),
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"
        );
    }

    #[test]
    fn encoded_streams_parse_back() {
        // What the encoder writes, the provider's own stream parser reads
        // back to the same content: the two are inverse.
        let mut e = StreamEncoder::new("m");
        let mut bytes = Vec::new();
        for ev in e
            .chunk(&chunk(ChoiceDelta {
                reasoning_content: Some("think".into()),
                ..Default::default()
            }))
            .into_iter()
            .chain(e.chunk(&chunk(ChoiceDelta {
                content: Some("answer".into()),
                finish_reason: FinishReason::Stop as i32,
                ..Default::default()
            })))
            .chain(e.finish(None))
        {
            bytes.extend(sse_frame(&ev));
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let items: Vec<_> = rt.block_on(futures_util::StreamExt::collect::<Vec<_>>(
            super::super::stream::SseChunks::new(
                futures_util::stream::iter([Ok::<_, std::io::Error>(bytes)]),
                None,
                0,
            ),
        ));
        let chunks: Vec<ChatChunk> = items.into_iter().map(Result::unwrap).collect();
        let text: String = chunks
            .iter()
            .flat_map(|c| &c.choices)
            .filter_map(|d| d.content.clone())
            .collect();
        let thought: String = chunks
            .iter()
            .flat_map(|c| &c.choices)
            .filter_map(|d| d.reasoning_content.clone())
            .collect();
        assert_eq!((text.as_str(), thought.as_str()), ("answer", "think"));
        assert!(chunks.last().unwrap().usage.is_some());
    }

    #[test]
    fn error_events() {
        let ev = error_event("overloaded_error", "Overloaded");
        assert_eq!(
            String::from_utf8(sse_frame(&ev)).unwrap(),
            "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n"
        );
    }
}
