//! Canonical model <-> Bedrock Converse, worker side only: the upstream
//! request out ([`spec_to_request`]) and the answer back in
//! ([`response_to_result`]; streamed answers in [`super::stream`]).
//!
//! Mapping rules (docs/providers.d/bedrock.md has the full table):
//! - system and developer messages become top-level `system` text blocks,
//!   wherever they stood in the conversation;
//! - tool messages become `toolResult` blocks in a user turn; consecutive
//!   turns of one role are merged (Converse requires alternation, and
//!   parallel tool results must share one user turn);
//! - images only as base64 `data:` URLs; anything else (http URLs, audio,
//!   files) is refused with a 400 naming the part, before any call;
//! - `temperature` and `top_p` are clamped to 0..=1 (Bedrock's range);
//! - `response_format` json_schema / json_object has no Converse equivalent:
//!   it becomes one forced tool whose input schema is the requested schema,
//!   and that tool's input comes back as the message content with finish
//!   reason `stop`;
//! - `spec.extra`: a few model-native keys go to
//!   `additionalModelRequestFields` ([`MODEL_NATIVE_KEYS`]), an explicit
//!   `additionalModelRequestFields` object is merged in verbatim, Converse's
//!   own top-level fields ([`CONVERSE_FIELDS`]) pass through, and every other
//!   key (OpenAI-only fields) is dropped.

use serde_json::{Value, json};
use switchyard_proto::gateway::v1::{
    self as pb, FinishReason, Role, content_part::Part, response_format::Type as FormatType,
    tool_choice::Mode,
};
use switchyard_proto::json::map_from_struct_ref;

use super::wire::{self, ContentBlock, Extra};
use crate::ProviderError;

/// `spec.extra` keys that are inference parameters of the models behind
/// Bedrock (Anthropic's `top_k` and `thinking`, Amazon Nova's and DeepSeek's
/// `reasoning_config`, Anthropic's `anthropic_beta`): sent in
/// `additionalModelRequestFields` under the same name.
pub const MODEL_NATIVE_KEYS: &[&str] = &["top_k", "thinking", "reasoning_config", "anthropic_beta"];

/// Converse request fields the canonical model does not name, passed through
/// from `spec.extra` when a client sets them.
pub const CONVERSE_FIELDS: &[&str] = &[
    "guardrailConfig",
    "performanceConfig",
    "promptVariables",
    "requestMetadata",
    "additionalModelResponseFieldPaths",
    "serviceTier",
];

/// The name of the forced tool a structured-output request becomes when the
/// schema has no name.
pub const STRUCTURED_TOOL: &str = "json_response";

/// The upstream request, and the forced tool that stands for
/// `response_format` when there is one (its input is the answer).
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    pub request: wire::ConverseRequest,
    pub structured_tool: Option<String>,
}

pub fn spec_to_request(spec: &pb::ChatSpec) -> Result<Prepared, ProviderError> {
    let mut system = Vec::new();
    let mut turns: Vec<wire::Message> = Vec::new();
    let mut uses_tools = false;

    for (i, m) in spec.messages.iter().enumerate() {
        match m.role() {
            Role::System | Role::Developer => {
                for (j, p) in m.content.iter().enumerate() {
                    match &p.part {
                        Some(Part::Text(t)) if t.is_empty() => {}
                        Some(Part::Text(t)) => system.push(wire::SystemContentBlock {
                            text: Some(t.clone()),
                            extra: Extra::new(),
                        }),
                        None => {}
                        Some(_) => {
                            return Err(ProviderError::unsupported_param(
                                format!("messages[{i}].content[{j}]"),
                                "Bedrock system prompts take text only",
                            ));
                        }
                    }
                }
            }
            Role::User | Role::Unspecified => {
                let blocks = parts_to_blocks(i, &m.content)?;
                push_turn(&mut turns, wire::role::USER, blocks);
            }
            Role::Assistant => {
                let mut blocks = parts_to_blocks(i, &m.content)?;
                for c in &m.tool_calls {
                    uses_tools = true;
                    blocks.push(ContentBlock {
                        tool_use: Some(wire::ToolUseBlock {
                            tool_use_id: c.id.clone(),
                            name: c.name.clone(),
                            input: arguments_to_input(&c.arguments),
                            extra: Extra::new(),
                        }),
                        ..ContentBlock::default()
                    });
                }
                push_turn(&mut turns, wire::role::ASSISTANT, blocks);
            }
            Role::Tool => {
                uses_tools = true;
                let mut text = String::new();
                for (j, p) in m.content.iter().enumerate() {
                    match &p.part {
                        Some(Part::Text(t)) => text.push_str(t),
                        None => {}
                        Some(_) => {
                            return Err(ProviderError::unsupported_param(
                                format!("messages[{i}].content[{j}]"),
                                "Bedrock tool results take text only",
                            ));
                        }
                    }
                }
                let block = ContentBlock {
                    tool_result: Some(wire::ToolResultBlock {
                        tool_use_id: m.tool_call_id.clone(),
                        content: vec![wire::ToolResultContent {
                            text: Some(text),
                            json: None,
                            extra: Extra::new(),
                        }],
                        status: None,
                        extra: Extra::new(),
                    }),
                    ..ContentBlock::default()
                };
                push_turn(&mut turns, wire::role::USER, vec![block]);
            }
        }
    }

    let (tool_config, structured_tool) = tool_config(spec, uses_tools)?;
    let (additional, extra) = split_extra(spec);

    let inference = wire::InferenceConfig {
        max_tokens: spec.max_tokens,
        temperature: spec.temperature.and_then(unit_interval),
        top_p: spec.top_p.and_then(unit_interval),
        stop_sequences: spec.stop.clone(),
        extra: Extra::new(),
    };
    Ok(Prepared {
        request: wire::ConverseRequest {
            messages: turns,
            system,
            inference_config: (!inference.is_empty()).then_some(inference),
            tool_config,
            additional_model_request_fields: (!additional.is_empty()).then_some(additional),
            extra,
        },
        structured_tool,
    })
}

/// Bedrock's models take 0..=1 where OpenAI takes 0..=2; the router clamps
/// already (`params`), this is the last line for direct callers. NaN is
/// dropped.
fn unit_interval(v: f64) -> Option<f64> {
    (!v.is_nan()).then(|| v.clamp(0.0, 1.0))
}

/// Appends to the last turn when it has the same role.
fn push_turn(turns: &mut Vec<wire::Message>, role: &str, blocks: Vec<ContentBlock>) {
    if blocks.is_empty() {
        // Converse rejects a turn without content; an empty assistant turn
        // (no text, no calls) carries nothing anyway.
        return;
    }
    match turns.last_mut() {
        Some(last) if last.role == role => last.content.extend(blocks),
        _ => turns.push(wire::Message {
            role: role.to_owned(),
            content: blocks,
            extra: Extra::new(),
        }),
    }
}

fn parts_to_blocks(
    i: usize,
    parts: &[pb::ContentPart],
) -> Result<Vec<ContentBlock>, ProviderError> {
    let mut out = Vec::with_capacity(parts.len());
    for (j, p) in parts.iter().enumerate() {
        let param = || format!("messages[{i}].content[{j}]");
        match &p.part {
            // Converse refuses blank text blocks.
            Some(Part::Text(t)) if t.is_empty() => {}
            Some(Part::Text(t)) => out.push(ContentBlock::text(t.clone())),
            Some(Part::ImageUrl(img)) => {
                let (format, data) = parse_data_url(&img.url).ok_or_else(|| {
                    ProviderError::unsupported_param(
                        param(),
                        "Bedrock takes images as base64 data: URLs (image/png, image/jpeg, image/gif or image/webp) only, not by URL",
                    )
                })?;
                out.push(ContentBlock {
                    image: Some(wire::ImageBlock {
                        format: format.to_owned(),
                        source: wire::ImageSource {
                            bytes: Some(data.to_owned()),
                            extra: Extra::new(),
                        },
                        extra: Extra::new(),
                    }),
                    ..ContentBlock::default()
                });
            }
            Some(Part::Other(s)) => {
                let kind = s
                    .fields
                    .get("type")
                    .and_then(|v| match &v.kind {
                        Some(prost_types::value::Kind::StringValue(t)) => Some(t.clone()),
                        _ => None,
                    })
                    .unwrap_or_else(|| "unknown".into());
                return Err(ProviderError::unsupported_param(
                    param(),
                    format!("content parts of type `{kind}` are not supported by Bedrock"),
                ));
            }
            None => {}
        }
    }
    Ok(out)
}

/// `data:image/png;base64,<data>` as (`png`, `<data>`). The base64 is passed
/// on as it is: the JSON protocol carries blobs as base64, so decoding and
/// re-encoding would only cost time.
fn parse_data_url(url: &str) -> Option<(&'static str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let mut meta = meta.split(';');
    let mime = meta.next()?.trim().to_ascii_lowercase();
    if !meta.any(|p| p.trim().eq_ignore_ascii_case("base64")) || data.is_empty() {
        return None;
    }
    let format = match mime.as_str() {
        "image/png" => "png",
        "image/jpeg" | "image/jpg" => "jpeg",
        "image/gif" => "gif",
        "image/webp" => "webp",
        _ => return None,
    };
    Some((format, data))
}

/// A tool call's arguments as the `input` document. Arguments that are not
/// JSON (models do produce those) travel as a JSON string, so the history is
/// still sent as it was rather than silently rewritten.
fn arguments_to_input(arguments: &str) -> Value {
    if arguments.trim().is_empty() {
        return json!({});
    }
    serde_json::from_str(arguments).unwrap_or_else(|_| Value::String(arguments.to_owned()))
}

fn tool_config(
    spec: &pb::ChatSpec,
    history_uses_tools: bool,
) -> Result<(Option<wire::ToolConfig>, Option<String>), ProviderError> {
    let structured = match spec.response_format.as_ref().map(|f| (f.r#type(), f)) {
        Some((FormatType::JsonSchema, f)) => Some((
            if f.schema_name.is_empty() {
                STRUCTURED_TOOL.to_owned()
            } else {
                f.schema_name.clone()
            },
            f.schema
                .as_ref()
                .map(|s| Value::Object(map_from_struct_ref(s)))
                .unwrap_or_else(|| json!({"type": "object"})),
        )),
        Some((FormatType::JsonObject, _)) => {
            Some((STRUCTURED_TOOL.to_owned(), json!({"type": "object"})))
        }
        _ => None,
    };

    if let Some((name, schema)) = structured {
        if !spec.tools.is_empty() {
            // Forcing the format tool would forbid the client's tools, and
            // not forcing it would not guarantee JSON: refuse rather than
            // quietly do one or the other.
            return Err(ProviderError::unsupported_param(
                "response_format",
                "Bedrock has no structured-output mode; the gateway emulates one with a forced tool, which cannot be combined with `tools`",
            ));
        }
        let tool = wire::Tool {
            tool_spec: Some(wire::ToolSpec {
                name: name.clone(),
                description: Some(
                    "Give the answer by calling this tool: its input is the response, as JSON matching the schema."
                        .into(),
                ),
                input_schema: wire::InputSchema { json: schema },
                extra: Extra::new(),
            }),
            extra: Extra::new(),
        };
        return Ok((
            Some(wire::ToolConfig {
                tools: vec![tool],
                tool_choice: Some(wire::ToolChoice::Tool(wire::SpecificTool {
                    name: name.clone(),
                })),
                extra: Extra::new(),
            }),
            Some(name),
        ));
    }

    if spec.tools.is_empty() {
        return Ok((None, None));
    }
    let mode = spec
        .tool_choice
        .as_ref()
        .map_or(Mode::Unspecified, |c| c.mode());
    let choice = match mode {
        Mode::Unspecified | Mode::Auto => Some(wire::ToolChoice::Auto(wire::Empty {})),
        Mode::Required => Some(wire::ToolChoice::Any(wire::Empty {})),
        Mode::Function => Some(wire::ToolChoice::Tool(wire::SpecificTool {
            name: spec
                .tool_choice
                .as_ref()
                .map(|c| c.name.clone())
                .unwrap_or_default(),
        })),
        Mode::None if history_uses_tools => {
            // Converse refuses toolUse/toolResult blocks without a
            // toolConfig, and has no "none" choice: the tools stay declared
            // with no choice (the model's default, auto).
            None
        }
        Mode::None => return Ok((None, None)),
    };
    let tools = spec
        .tools
        .iter()
        .map(|t| wire::Tool {
            tool_spec: Some(wire::ToolSpec {
                name: t.name.clone(),
                description: (!t.description.is_empty()).then(|| t.description.clone()),
                input_schema: wire::InputSchema {
                    json: t
                        .parameters
                        .as_ref()
                        .map(|p| Value::Object(map_from_struct_ref(p)))
                        // Converse requires a schema; OpenAI allows none.
                        .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
                },
                extra: Extra::new(),
            }),
            extra: Extra::new(),
        })
        .collect();
    Ok((
        Some(wire::ToolConfig {
            tools,
            tool_choice: choice,
            extra: Extra::new(),
        }),
        None,
    ))
}

/// `additionalModelRequestFields` and the top-level pass-through fields from
/// `spec.extra` (see the module doc).
fn split_extra(spec: &pb::ChatSpec) -> (Extra, Extra) {
    let Some(extra) = spec.extra.as_ref() else {
        return (Extra::new(), Extra::new());
    };
    let extra = map_from_struct_ref(extra);
    let mut additional = Extra::new();
    let mut top = Extra::new();
    for (k, v) in &extra {
        if MODEL_NATIVE_KEYS.contains(&k.as_str()) {
            additional.insert(k.clone(), v.clone());
        } else if CONVERSE_FIELDS.contains(&k.as_str()) {
            top.insert(k.clone(), v.clone());
        }
    }
    if let Some(Value::Object(explicit)) = extra.get("additionalModelRequestFields") {
        for (k, v) in explicit {
            additional.insert(k.clone(), v.clone());
        }
    }
    (additional, top)
}

// --- answers ---------------------------------------------------------------

/// What the answer's body does not say: Bedrock has no response id (the
/// `x-amzn-requestid` header stands in), no model echo and no timestamp.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AnswerContext {
    pub id: String,
    pub model: String,
    pub created: i64,
    pub structured_tool: Option<String>,
}

pub fn finish_reason(stop_reason: &str) -> FinishReason {
    match stop_reason {
        "end_turn" | "stop_sequence" => FinishReason::Stop,
        "max_tokens" | "model_context_window_exceeded" => FinishReason::Length,
        "tool_use" => FinishReason::ToolCalls,
        "guardrail_intervened" | "content_filtered" => FinishReason::ContentFilter,
        _ => FinishReason::Unspecified,
    }
}

/// Bedrock's `inputTokens` excludes prompt-cache reads and writes; the
/// canonical prompt count includes them (as OpenAI's does), with the reads
/// as `cached_prompt_tokens`.
pub fn usage(u: &wire::TokenUsage) -> pb::Usage {
    let read = u.cache_read_input_tokens.unwrap_or(0);
    let write = u.cache_write_input_tokens.unwrap_or(0);
    let prompt = u.input_tokens.saturating_add(read).saturating_add(write);
    pb::Usage {
        prompt_tokens: prompt,
        completion_tokens: u.output_tokens,
        total_tokens: prompt.saturating_add(u.output_tokens),
        cached_prompt_tokens: read,
        reasoning_tokens: 0,
        cache_write_tokens: write,
        ..pb::Usage::default()
    }
}

pub fn response_to_result(resp: wire::ConverseResponse, ctx: &AnswerContext) -> pb::ChatResult {
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut calls = Vec::new();
    let mut structured: Option<String> = None;
    for block in resp.output.message.map(|m| m.content).unwrap_or_default() {
        if let Some(t) = block.text {
            text.push_str(&t);
        }
        if let Some(r) = block.reasoning_content.and_then(|r| r.reasoning_text) {
            reasoning.push_str(&r.text);
        }
        if let Some(u) = block.tool_use {
            let arguments = u.input.to_string();
            if ctx.structured_tool.as_deref() == Some(u.name.as_str()) {
                structured = Some(arguments);
            } else {
                calls.push(pb::ToolCall {
                    id: u.tool_use_id,
                    name: u.name,
                    arguments,
                });
            }
        }
    }
    let mut finish = finish_reason(&resp.stop_reason);
    if let Some(json) = structured {
        // The forced tool's input is the answer; any text beside it is
        // preamble that would make the content invalid JSON.
        text = json;
        if finish == FinishReason::ToolCalls && calls.is_empty() {
            finish = FinishReason::Stop;
        }
    }
    let mut extra = Extra::new();
    if !reasoning.is_empty() {
        extra.insert("reasoning_content".into(), Value::String(reasoning));
    }
    let message = pb::Message {
        role: Role::Assistant as i32,
        content: (!text.is_empty())
            .then_some(pb::ContentPart {
                part: Some(Part::Text(text)),
                extra: None,
            })
            .into_iter()
            .collect(),
        tool_calls: calls,
        extra: (!extra.is_empty()).then(|| switchyard_proto::json::struct_from_map(extra)),
        ..Default::default()
    };
    pb::ChatResult {
        id: ctx.id.clone(),
        model: ctx.model.clone(),
        created: ctx.created,
        choices: vec![pb::Choice {
            index: 0,
            message: Some(message),
            finish_reason: finish as i32,
        }],
        usage: resp.usage.as_ref().map(usage),
        system_fingerprint: String::new(),
        native_response: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This converter does not see the model name, so the router writes
    /// Anthropic's `thinking` for a Claude model into `extra`
    /// (`params::normalize`), and it goes out in
    /// `additionalModelRequestFields`.
    #[test]
    fn reasoning_reaches_claude_as_thinking() {
        use crate::params::{TargetFacts, normalize};
        let mut spec = pb::ChatSpec {
            messages: vec![pb::Message {
                role: Role::User as i32,
                content: vec![pb::ContentPart {
                    part: Some(Part::Text("x".into())),
                    extra: None,
                }],
                ..Default::default()
            }],
            max_tokens: Some(32000),
            reasoning: Some(crate::reasoning::from_effort("medium")),
            ..Default::default()
        };
        let claude = TargetFacts::new(
            "b",
            switchyard_config::ProviderKind::Bedrock,
            "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
        );
        let warnings = normalize(&mut spec, &claude, switchyard_config::ParamPolicy::Warn).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        let request = spec_to_request(&spec).unwrap().request;
        assert_eq!(
            request.additional_model_request_fields.unwrap()["thinking"],
            json!({"type": "enabled", "budget_tokens": 8192})
        );
    }

    #[test]
    fn data_urls() {
        assert_eq!(
            parse_data_url("data:image/png;base64,iVBORw0KGgo="),
            Some(("png", "iVBORw0KGgo="))
        );
        assert_eq!(
            parse_data_url("data:image/JPEG;charset=x;base64,AAAA"),
            Some(("jpeg", "AAAA"))
        );
        assert_eq!(parse_data_url("data:image/png,rawbytes"), None);
        assert_eq!(parse_data_url("data:image/bmp;base64,AAAA"), None);
        assert_eq!(parse_data_url("data:image/png;base64,"), None);
        assert_eq!(parse_data_url("https://example.com/cat.png"), None);
    }

    #[test]
    fn finish_reasons_and_usage() {
        assert_eq!(finish_reason("end_turn"), FinishReason::Stop);
        assert_eq!(finish_reason("stop_sequence"), FinishReason::Stop);
        assert_eq!(finish_reason("max_tokens"), FinishReason::Length);
        assert_eq!(finish_reason("tool_use"), FinishReason::ToolCalls);
        assert_eq!(
            finish_reason("guardrail_intervened"),
            FinishReason::ContentFilter
        );
        assert_eq!(
            finish_reason("content_filtered"),
            FinishReason::ContentFilter
        );
        assert_eq!(finish_reason("something_new"), FinishReason::Unspecified);
        let u = usage(&wire::TokenUsage {
            input_tokens: 10,
            output_tokens: 5,
            total_tokens: 1215,
            cache_read_input_tokens: Some(1000),
            cache_write_input_tokens: Some(200),
        });
        assert_eq!(
            u,
            pb::Usage {
                prompt_tokens: 1210,
                completion_tokens: 5,
                total_tokens: 1215,
                cached_prompt_tokens: 1000,
                reasoning_tokens: 0,
                cache_write_tokens: 200,
                ..pb::Usage::default()
            }
        );
    }

    #[test]
    fn arguments() {
        assert_eq!(arguments_to_input(r#"{"a":1}"#), json!({"a": 1}));
        assert_eq!(arguments_to_input(""), json!({}));
        assert_eq!(arguments_to_input("{oops"), json!("{oops"));
    }
}
