//! Canonical model -> Anthropic Messages request, and Anthropic answers ->
//! canonical results (worker side). The router's inverse mapping (an
//! Anthropic client request in, Anthropic answers out) is in
//! [`super::ingress`].
//!
//! What the translation does, where the two models differ:
//! - system and developer messages become the top-level `system` (a string
//!   when there is one plain-text system message, else text blocks), wherever
//!   they stood in the conversation;
//! - tool messages become `tool_result` blocks in a user turn, and
//!   consecutive turns of one role are merged, because Anthropic requires
//!   alternating roles;
//! - `max_tokens` is required by Anthropic: when the request has none, the
//!   model's default from [`default_max_tokens`] is sent;
//! - `response_format` has no stable Anthropic equivalent (structured outputs
//!   are beta), so it uses Anthropic's documented fallback: a tool whose
//!   `input_schema` is the schema, forced with `tool_choice`; its input comes
//!   back as the message's JSON text with finish reason `stop`;
//! - `spec.extra` of a request that came in Anthropic's format
//!   (`/v1/messages`) passes through whole; from an OpenAI-format request
//!   only Anthropic-native names ([`NATIVE_EXTRAS`]): OpenAI-only extras (`logprobs`, `store`, ...)
//!   would make Anthropic answer 400;
//! - parts Anthropic cannot take (audio, non-PDF files) fail with a 400
//!   before any call. `seed`, `presence_penalty` and `frequency_penalty` have
//!   no Anthropic equivalent and are dropped.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use switchyard_proto::gateway::v1::{
    self as pb, FinishReason, Role, content_part::Part, response_format::Type as FormatType,
    tool_choice::Mode,
};
use switchyard_proto::json::{map_from_struct_ref, struct_from_map};

use super::wire::{self, ContentBlock, Extra};
use crate::ProviderError;

/// Request fields from `spec.extra` that Anthropic's Messages API knows and
/// that pass through unchanged. `metadata` passes only with Anthropic's own
/// key (`user_id`) and `service_tier` only with Anthropic's values, since
/// OpenAI clients send both with other meanings.
pub const NATIVE_EXTRAS: &[&str] = &[
    "top_k",
    "thinking",
    "metadata",
    "service_tier",
    "container",
    "mcp_servers",
    "context_management",
];

/// The tool name of the structured-output fallback when the schema is
/// unnamed (`json_object`, or a `json_schema` without a name).
pub const JSON_TOOL_NAME: &str = "json_response";

/// `max_tokens` when the request has none: each model family's maximum
/// output (Anthropic's models overview), so an unlimited OpenAI request
/// stays unlimited. Matched by prefix on the upstream model name, after any
/// `anthropic.` (Bedrock) prefix and with `.` read as `-`; unknown models get
/// 4096, which every Claude model accepts.
///
/// | model prefix | default |
/// |---|---|
/// | `claude-3-haiku`, `claude-3-opus`, `claude-3-sonnet` | 4096 |
/// | `claude-3-5-` | 8192 |
/// | `claude-3-7-`, `claude-sonnet-4`, `claude-haiku-4` | 64000 |
/// | `claude-opus-4` | 32000 |
/// | anything else | 4096 |
pub fn default_max_tokens(model: &str) -> u32 {
    let m = model.rsplit('/').next().unwrap_or(model);
    let m = m.strip_prefix("anthropic.").unwrap_or(m).replace('.', "-");
    let table: &[(&str, u32)] = &[
        ("claude-3-haiku", 4096),
        ("claude-3-opus", 4096),
        ("claude-3-sonnet", 4096),
        ("claude-3-5-", 8192),
        ("claude-3-7-", 64000),
        ("claude-sonnet-4", 64000),
        ("claude-haiku-4", 64000),
        ("claude-opus-4", 32000),
    ];
    table
        .iter()
        .find(|(prefix, _)| m.starts_with(prefix))
        .map_or(4096, |(_, n)| *n)
}

/// The upstream request, and the name of the structured-output tool when the
/// fallback is in use (its call is the answer, not a tool call).
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamRequest {
    pub body: wire::MessagesRequest,
    pub answer_tool: Option<String>,
}

/// One turn being built: consecutive turns of a role merge into it.
struct Turn {
    role: &'static str,
    blocks: Vec<ContentBlock>,
    /// The client sent a plain string and nothing merged into it: sent as a
    /// string again.
    plain: bool,
}

/// The Anthropic request for `spec`. Fails, before any call, on what
/// Anthropic cannot express.
pub fn spec_to_request(
    spec: &pb::ChatSpec,
    upstream_model: &str,
    stream: bool,
) -> Result<UpstreamRequest, ProviderError> {
    if spec.n > 1 {
        return Err(ProviderError::unsupported_param(
            "n",
            "Anthropic generates one choice per request; `n` greater than 1 is not supported",
        ));
    }

    // Block and tool fields the canonical model does not name
    // (`cache_control`, `defer_loading`, ...) came in Anthropic's own
    // format: they go back on their blocks.
    let keep = spec.dialect() == pb::Dialect::Anthropic;
    let mut system: Vec<ContentBlock> = Vec::new();
    let mut system_is_parts = false;
    let mut turns: Vec<Turn> = Vec::new();
    for (i, m) in spec.messages.iter().enumerate() {
        match m.role() {
            Role::System | Role::Developer => {
                system_is_parts |= m.content_is_parts;
                for (j, p) in m.content.iter().enumerate() {
                    match &p.part {
                        Some(Part::Text(t)) => {
                            system.push(with_extra(ContentBlock::text(t.clone()), p, keep));
                        }
                        _ => {
                            return Err(ProviderError::unsupported_param(
                                format!("messages[{i}].content[{j}]"),
                                "Anthropic takes only text in system messages",
                            ));
                        }
                    }
                }
            }
            Role::Assistant => {
                // Thinking blocks an earlier answer carried in
                // `thinking_blocks` (see `response_to_result`), echoed back by
                // the client: Anthropic wants them first, signatures intact,
                // when thinking is on and the turn used tools.
                let mut blocks: Vec<ContentBlock> = match m
                    .extra
                    .as_ref()
                    .and_then(|e| e.fields.get("thinking_blocks"))
                    .map(|v| switchyard_proto::json::json_from_value(v.clone()))
                {
                    Some(Value::Array(items)) => items
                        .into_iter()
                        .filter_map(|b| serde_json::from_value(b).ok())
                        .filter(|b: &ContentBlock| {
                            matches!(b.kind(), "thinking" | "redacted_thinking")
                        })
                        .collect(),
                    _ => Vec::new(),
                };
                for (j, p) in m.content.iter().enumerate() {
                    match &p.part {
                        // Anthropic refuses empty text blocks; OpenAI clients
                        // send `content: ""` beside tool calls.
                        Some(Part::Text(t)) if t.is_empty() => {}
                        _ => blocks.push(part_to_block(i, j, p, keep)?),
                    }
                }
                for (j, c) in m.tool_calls.iter().enumerate() {
                    blocks.push(ContentBlock::ToolUse(wire::ToolUseBlock {
                        id: c.id.clone(),
                        name: c.name.clone(),
                        input: arguments_to_input(i, j, &c.arguments)?,
                        extra: Extra::new(),
                    }));
                }
                let plain = !m.content_is_parts && m.tool_calls.is_empty() && blocks.len() == 1;
                push_turn(&mut turns, wire::role::ASSISTANT, blocks, plain);
            }
            Role::Tool => {
                let content = if !m.content_is_parts
                    && let [
                        pb::ContentPart {
                            part: Some(Part::Text(t)),
                            ..
                        },
                    ] = m.content.as_slice()
                {
                    Some(wire::MessageContent::Text(t.clone()))
                } else {
                    let blocks = m
                        .content
                        .iter()
                        .enumerate()
                        .map(|(j, p)| part_to_block(i, j, p, keep))
                        .collect::<Result<Vec<_>, _>>()?;
                    (!blocks.is_empty()).then_some(wire::MessageContent::Blocks(blocks))
                };
                let block = ContentBlock::ToolResult(wire::ToolResultBlock {
                    tool_use_id: m.tool_call_id.clone(),
                    content,
                    is_error: None,
                    // The tool_result block's own fields (the ingress keeps
                    // them on the tool message).
                    extra: match &m.extra {
                        Some(e) if keep => map_from_struct_ref(e),
                        _ => Extra::new(),
                    },
                });
                push_turn(&mut turns, wire::role::USER, vec![block], false);
            }
            Role::User | Role::Unspecified => {
                let blocks = m
                    .content
                    .iter()
                    .enumerate()
                    .map(|(j, p)| part_to_block(i, j, p, keep))
                    .collect::<Result<Vec<_>, _>>()?;
                let plain = !m.content_is_parts && blocks.len() == 1;
                push_turn(&mut turns, wire::role::USER, blocks, plain);
            }
        }
    }

    let system = match system.as_slice() {
        [] => None,
        [ContentBlock::Text(one)] if !system_is_parts && one.extra.is_empty() => {
            Some(wire::System::Text(one.text.clone()))
        }
        _ => Some(wire::System::Blocks(system)),
    };

    let mut tools: Vec<wire::Tool> = spec.tools.iter().map(|t| tool_to_wire(t, keep)).collect();
    let mut tool_choice = spec.tool_choice.as_ref().and_then(tool_choice_to_wire);

    let answer_tool = spec.response_format.as_ref().and_then(answer_tool);
    if let Some(tool) = &answer_tool {
        // Forced only when the client has no tools of its own: forcing would
        // take the client's tools away.
        if tools.is_empty() {
            tool_choice = Some(wire::ToolChoice {
                kind: wire::tool_choice_type::TOOL.into(),
                name: Some(tool.name.clone()),
                ..Default::default()
            });
        }
        tools.push(tool.clone());
    }
    if spec.parallel_tool_calls == Some(false) && !tools.is_empty() {
        let choice = tool_choice.get_or_insert_with(|| wire::ToolChoice {
            kind: wire::tool_choice_type::AUTO.into(),
            ..Default::default()
        });
        // `none` takes no options.
        if choice.kind != wire::tool_choice_type::NONE {
            choice.disable_parallel_tool_use = Some(true);
        }
    }

    let mut extra = spec
        .extra
        .as_ref()
        .map(map_from_struct_ref)
        .unwrap_or_default();
    // Came in Anthropic's own format (/v1/messages): every field is meant
    // for Anthropic, including ones newer than this table. From an OpenAI
    // client only the names Anthropic knows.
    if spec.dialect() != pb::Dialect::Anthropic {
        extra.retain(|k, v| native_extra(k, v));
    }
    // Reasoning asked for in another spelling goes out as `thinking`, unless
    // the client sent Anthropic's own or Anthropic would refuse it (then the
    // router has dropped it already, with a warning).
    if !extra.contains_key("thinking")
        && let Some(r) = spec.reasoning.as_ref()
        && let Ok(thinking) = crate::reasoning::anthropic_thinking(spec, r, upstream_model)
    {
        extra.insert("thinking".into(), thinking.to_json());
    }
    let mut metadata: Option<wire::Metadata> = extra
        .remove("metadata")
        .and_then(|v| serde_json::from_value(v).ok());
    if !spec.user.is_empty() {
        metadata.get_or_insert_with(Default::default).user_id = Some(spec.user.clone());
    }

    let body = wire::MessagesRequest {
        model: upstream_model.to_owned(),
        messages: turns
            .into_iter()
            .map(|t| wire::InputMessage {
                role: t.role.to_owned(),
                content: match (t.plain, t.blocks.as_slice()) {
                    (true, [ContentBlock::Text(b)]) if b.extra.is_empty() => {
                        wire::MessageContent::Text(b.text.clone())
                    }
                    _ => wire::MessageContent::Blocks(t.blocks),
                },
                extra: Extra::new(),
            })
            .collect(),
        max_tokens: Some(
            spec.max_tokens
                .unwrap_or_else(|| default_max_tokens(upstream_model)),
        ),
        system,
        // Anthropic's range is 0..=1; OpenAI's 0..=2. The router maps
        // temperatures already; this keeps a stray one from a 400.
        temperature: spec.temperature.map(|t| t.clamp(0.0, 1.0)),
        top_p: spec.top_p,
        stop_sequences: (!spec.stop.is_empty()).then(|| spec.stop.clone()),
        stream: stream.then_some(true),
        metadata,
        tools: (!tools.is_empty()).then_some(tools),
        tool_choice,
        extra,
    };
    Ok(UpstreamRequest {
        body,
        answer_tool: answer_tool.map(|t| t.name),
    })
}

fn native_extra(key: &str, value: &Value) -> bool {
    match key {
        "metadata" => value
            .as_object()
            .is_some_and(|m| m.keys().all(|k| k == "user_id")),
        "service_tier" => matches!(value.as_str(), Some("auto" | "standard_only")),
        k => NATIVE_EXTRAS.contains(&k),
    }
}

fn push_turn(turns: &mut Vec<Turn>, role: &'static str, blocks: Vec<ContentBlock>, plain: bool) {
    if blocks.is_empty() {
        // An assistant message with neither content nor tool calls says
        // nothing, and Anthropic refuses empty content.
        return;
    }
    match turns.last_mut() {
        Some(last) if last.role == role => {
            last.plain = false;
            last.blocks.extend(blocks);
        }
        _ => turns.push(Turn {
            role,
            blocks,
            plain,
        }),
    }
}

/// Tool-call arguments as the `input` object Anthropic wants. Empty text
/// means no arguments.
fn arguments_to_input(i: usize, j: usize, args: &str) -> Result<Value, ProviderError> {
    if args.trim().is_empty() {
        return Ok(Value::Object(Extra::new()));
    }
    match serde_json::from_str::<Value>(args) {
        Ok(v @ Value::Object(_)) => Ok(v),
        _ => Err(ProviderError::unsupported_param(
            format!("messages[{i}].tool_calls[{j}].function.arguments"),
            "Anthropic needs tool call arguments that are a JSON object",
        )),
    }
}

/// `data:<media type>;base64,<data>`.
fn parse_data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let media_type = meta.strip_suffix(";base64")?;
    Some((media_type, data))
}

fn image_block(url: &str) -> Option<ContentBlock> {
    let source = if let Some((media_type, data)) = parse_data_url(url) {
        wire::Source {
            kind: "base64".into(),
            media_type: Some(media_type.to_owned()),
            data: Some(data.to_owned()),
            ..Default::default()
        }
    } else if url.starts_with("https://") || url.starts_with("http://") {
        wire::Source {
            kind: "url".into(),
            url: Some(url.to_owned()),
            ..Default::default()
        }
    } else {
        return None;
    };
    Some(ContentBlock::Image(wire::ImageBlock {
        source,
        extra: Extra::new(),
    }))
}

/// Block types a content part may already be in (sent through the
/// Anthropic-compatible ingress, or by a client that knows the target):
/// passed on whole.
const NATIVE_BLOCKS: &[&str] = &[
    "text",
    "image",
    "document",
    "thinking",
    "redacted_thinking",
    "search_result",
    "container_upload",
];

/// `block` with the part's own fields (`cache_control`, ...) when `keep`.
fn with_extra(mut block: ContentBlock, p: &pb::ContentPart, keep: bool) -> ContentBlock {
    if let (true, Some(extra)) = (keep, &p.extra) {
        match &mut block {
            ContentBlock::Text(b) => b.extra.extend(map_from_struct_ref(extra)),
            ContentBlock::Image(b) => b.extra.extend(map_from_struct_ref(extra)),
            // Other blocks travel whole, their fields included.
            _ => {}
        }
    }
    block
}

fn part_to_block(
    i: usize,
    j: usize,
    p: &pb::ContentPart,
    keep: bool,
) -> Result<ContentBlock, ProviderError> {
    part_to_bare_block(i, j, p).map(|b| with_extra(b, p, keep))
}

fn part_to_bare_block(
    i: usize,
    j: usize,
    p: &pb::ContentPart,
) -> Result<ContentBlock, ProviderError> {
    let unsupported = |what: &str| {
        ProviderError::unsupported_param(
            format!("messages[{i}].content[{j}]"),
            format!("Anthropic does not accept {what}"),
        )
    };
    match &p.part {
        Some(Part::Text(t)) => Ok(ContentBlock::text(t.clone())),
        Some(Part::ImageUrl(img)) => image_block(&img.url)
            .ok_or_else(|| unsupported("image URLs other than data: and http(s):")),
        Some(Part::Other(s)) => {
            let map = map_from_struct_ref(s);
            let kind = map
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            match kind.as_str() {
                "input_audio" => Err(unsupported("audio input")),
                "file" => {
                    let data = map
                        .get("file")
                        .and_then(|f| f.get("file_data"))
                        .and_then(Value::as_str)
                        .and_then(parse_data_url);
                    match data {
                        Some((media_type @ "application/pdf", data)) => Ok(ContentBlock::Other(
                            json!({
                                "type": "document",
                                "source": {"type": "base64", "media_type": media_type, "data": data}
                            })
                            .as_object()
                            .cloned()
                            .unwrap_or_default(),
                        )),
                        _ => Err(unsupported(
                            "file parts other than a PDF in `file_data` (a data: URL)",
                        )),
                    }
                }
                k if NATIVE_BLOCKS.contains(&k) => {
                    serde_json::from_value::<ContentBlock>(Value::Object(map))
                        .map_err(|e| unsupported(&format!("this `{k}` part ({e})")))
                }
                other => Err(unsupported(&format!("content parts of type `{other}`"))),
            }
        }
        None => Err(unsupported("an empty content part")),
    }
}

fn schema_of(schema: Option<Extra>) -> Value {
    schema
        .map(Value::Object)
        .unwrap_or_else(|| json!({"type": "object", "properties": {}}))
}

fn tool_to_wire(t: &pb::Tool, keep: bool) -> wire::Tool {
    wire::Tool {
        name: t.name.clone(),
        description: (!t.description.is_empty()).then(|| t.description.clone()),
        input_schema: Some(schema_of(t.parameters.as_ref().map(map_from_struct_ref))),
        extra: match &t.extra {
            Some(e) if keep => map_from_struct_ref(e),
            _ => Extra::new(),
        },
    }
}

fn tool_choice_to_wire(c: &pb::ToolChoice) -> Option<wire::ToolChoice> {
    let kind = match c.mode() {
        Mode::Unspecified => return None,
        Mode::None => wire::tool_choice_type::NONE,
        Mode::Auto => wire::tool_choice_type::AUTO,
        Mode::Required => wire::tool_choice_type::ANY,
        Mode::Function => wire::tool_choice_type::TOOL,
    };
    Some(wire::ToolChoice {
        kind: kind.into(),
        name: (c.mode() == Mode::Function).then(|| c.name.clone()),
        ..Default::default()
    })
}

/// The structured-output fallback's tool for a JSON response format.
fn answer_tool(f: &pb::ResponseFormat) -> Option<wire::Tool> {
    let (name, schema) = match f.r#type() {
        FormatType::Unspecified | FormatType::Text => return None,
        FormatType::JsonObject => (
            JSON_TOOL_NAME.to_owned(),
            json!({"type": "object", "additionalProperties": true}),
        ),
        FormatType::JsonSchema => (
            if f.schema_name.is_empty() {
                JSON_TOOL_NAME.to_owned()
            } else {
                f.schema_name.clone()
            },
            schema_of(f.schema.as_ref().map(map_from_struct_ref)),
        ),
    };
    Some(wire::Tool {
        name,
        description: Some("Respond with a JSON object in this tool's input schema.".into()),
        input_schema: Some(schema),
        extra: Extra::new(),
    })
}

// --- answers -------------------------------------------------------------

pub(crate) fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Anthropic's stop reason as the canonical finish reason.
/// `answered_by_tool`: the structured-output tool was called, so the call is
/// the answer and the turn ended normally.
pub fn finish_reason(stop_reason: Option<&str>, answered_by_tool: bool) -> FinishReason {
    use wire::stop_reason as sr;
    match stop_reason {
        Some(sr::TOOL_USE) if answered_by_tool => FinishReason::Stop,
        Some(sr::END_TURN | sr::STOP_SEQUENCE | sr::PAUSE_TURN) => FinishReason::Stop,
        Some(sr::MAX_TOKENS | sr::CONTEXT_WINDOW_EXCEEDED) => FinishReason::Length,
        Some(sr::TOOL_USE) => FinishReason::ToolCalls,
        Some(sr::REFUSAL) => FinishReason::ContentFilter,
        Some(_) | None => FinishReason::Unspecified,
    }
}

/// Anthropic counts cached prompt tokens apart from `input_tokens`; the
/// canonical prompt count includes them.
pub fn usage_to_canonical(u: &wire::Usage) -> pb::Usage {
    let input = u.input_tokens.unwrap_or(0);
    let created = u.cache_creation_input_tokens.unwrap_or(0);
    let read = u.cache_read_input_tokens.unwrap_or(0);
    let prompt = input.saturating_add(created).saturating_add(read);
    let completion = u.output_tokens.unwrap_or(0);
    pb::Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: prompt.saturating_add(completion),
        cached_prompt_tokens: read,
        reasoning_tokens: 0,
        cache_write_tokens: created,
        ..pb::Usage::default()
    }
}

/// An upstream answer as the canonical result. Text blocks are joined;
/// `tool_use` blocks become tool calls (the structured-output tool's input
/// becomes the text); thinking goes to `message.extra`:
/// `reasoning_content` (the text) and `thinking_blocks` (the blocks with
/// their signatures, which a later turn must send back).
pub fn response_to_result(
    resp: wire::MessagesResponse,
    answer_tool: Option<&str>,
) -> pb::ChatResult {
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    let mut reasoning = String::new();
    let mut thinking_blocks = Vec::new();
    let mut answered_by_tool = false;
    for block in resp.content {
        match block {
            ContentBlock::Text(t) => text.push_str(&t.text),
            ContentBlock::ToolUse(t) if Some(t.name.as_str()) == answer_tool => {
                answered_by_tool = true;
                text.push_str(&t.input.to_string());
            }
            ContentBlock::ToolUse(t) => tool_calls.push(pb::ToolCall {
                id: t.id,
                name: t.name,
                arguments: t.input.to_string(),
            }),
            ContentBlock::Thinking(t) => {
                reasoning.push_str(&t.thinking);
                thinking_blocks
                    .push(serde_json::to_value(ContentBlock::Thinking(t)).unwrap_or_default());
            }
            other @ ContentBlock::Other(_) if other.kind() == "redacted_thinking" => {
                thinking_blocks.push(serde_json::to_value(other).unwrap_or_default());
            }
            // Images, server tool results, ...: no canonical place.
            ContentBlock::Image(_) | ContentBlock::ToolResult(_) | ContentBlock::Other(_) => {}
        }
    }
    let mut extra = Extra::new();
    if !reasoning.is_empty() {
        extra.insert("reasoning_content".into(), Value::String(reasoning));
    }
    if !thinking_blocks.is_empty() {
        extra.insert("thinking_blocks".into(), Value::Array(thinking_blocks));
    }
    let has_text = !text.is_empty() || tool_calls.is_empty();
    pb::ChatResult {
        id: resp.id,
        model: resp.model,
        created: now_unix(),
        choices: vec![pb::Choice {
            index: 0,
            message: Some(pb::Message {
                role: Role::Assistant as i32,
                content: if has_text {
                    vec![pb::ContentPart {
                        part: Some(Part::Text(text)),
                        extra: None,
                    }]
                } else {
                    Vec::new()
                },
                tool_calls,
                extra: (!extra.is_empty()).then(|| struct_from_map(extra)),
                ..Default::default()
            }),
            finish_reason: finish_reason(resp.stop_reason.as_deref(), answered_by_tool) as i32,
        }],
        usage: Some(usage_to_canonical(&resp.usage)),
        system_fingerprint: String::new(),
        native_response: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(reasoning: pb::Reasoning, extra: Value) -> pb::ChatSpec {
        pb::ChatSpec {
            messages: vec![pb::Message {
                role: Role::User as i32,
                content: vec![pb::ContentPart {
                    part: Some(Part::Text("x".into())),
                    extra: None,
                }],
                ..Default::default()
            }],
            max_tokens: Some(4000),
            reasoning: Some(reasoning),
            extra: extra.as_object().cloned().map(struct_from_map),
            ..Default::default()
        }
    }

    fn thinking_of(s: &pb::ChatSpec) -> Option<Value> {
        let req = spec_to_request(s, "claude-sonnet-4-5", false).unwrap();
        req.body.extra.get("thinking").cloned()
    }

    #[test]
    fn reasoning_effort_becomes_thinking_that_fits() {
        let effort = |e: &str| crate::reasoning::from_effort(e);
        let s = spec(effort("medium"), json!({"reasoning_effort": "medium"}));
        // Medium's 8,192 does not fit under max_tokens 4,000.
        assert_eq!(
            thinking_of(&s),
            Some(json!({"type": "enabled", "budget_tokens": 3999}))
        );
        let s = spec(effort("low"), json!({}));
        assert_eq!(
            thinking_of(&s),
            Some(json!({"type": "enabled", "budget_tokens": 1024}))
        );
        let s = spec(effort("none"), json!({}));
        assert_eq!(thinking_of(&s), Some(json!({"type": "disabled"})));
        // Anthropic would refuse thinking beside a temperature of 0.2: none.
        let mut s = spec(effort("low"), json!({}));
        s.temperature = Some(0.2);
        assert_eq!(thinking_of(&s), None);
    }

    #[test]
    fn the_clients_own_thinking_wins() {
        let own = json!({"type": "enabled", "budget_tokens": 2048});
        let mut s = spec(
            pb::Reasoning {
                budget_tokens: 2048,
                ..Default::default()
            },
            json!({"thinking": own}),
        );
        s.dialect = pb::Dialect::Anthropic as i32;
        assert_eq!(thinking_of(&s), Some(own));
    }
}
