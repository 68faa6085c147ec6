//! Canonical model <-> Gemini wire format (worker side only: the gateway's
//! client-facing API is OpenAI's).
//!
//! Requests ([`spec_to_request`]):
//! - system and developer messages, wherever they are, become one
//!   `systemInstruction` (Gemini has no system turns);
//! - `user`/`assistant` become `user`/`model` turns; consecutive turns of the
//!   same role are merged (Gemini wants alternating turns);
//! - assistant tool calls become `functionCall` parts, tool messages
//!   `functionResponse` parts of a `user` turn, named after the call they
//!   answer (Gemini matches by name and order, not by id);
//! - `spec.extra` passes through only for Gemini-native keys (see
//!   [`NATIVE_REQUEST_KEYS`], [`NATIVE_GENERATION_KEYS`]); OpenAI-only extras
//!   are not forwarded, since Gemini rejects unknown fields.
//!
//! Answers ([`response_to_result`]): candidates become choices, `thought`
//! parts become `reasoning_content`, function calls get an id (`call_<n>`)
//! when Gemini gave none.
//!
//! Thought signatures (which Gemini 3 requires back on the function calls of
//! later turns) travel the way Google's own OpenAI-compatible endpoint sends
//! them: `extra_content.google.thought_signature` on each OpenAI tool call,
//! kept in `Message.extra.tool_calls` both ways (complete answers only: the
//! canonical stream deltas have nowhere to carry them).

use std::collections::HashMap;

use serde_json::{Map, Value, json};
use switchyard_proto::gateway::v1::{
    self as pb, FinishReason, Role, content_part::Part, response_format::Type as FormatType,
    tool_choice::Mode,
};
use switchyard_proto::json::{map_from_struct_ref, struct_from_map};

use super::wire::{self, Extra};
use crate::ProviderError;

/// Top-level request keys of `spec.extra` forwarded as they are.
pub const NATIVE_REQUEST_KEYS: &[&str] = &["safetySettings", "cachedContent", "labels"];

/// `spec.extra` keys that are `generationConfig` fields, forwarded into it
/// (a `generationConfig` object in `spec.extra` is merged too).
pub const NATIVE_GENERATION_KEYS: &[&str] = &[
    "topK",
    "thinkingConfig",
    "responseModalities",
    "mediaResolution",
    "speechConfig",
    "responseLogprobs",
    "enableEnhancedCivicAnswers",
    "imageConfig",
];

/// JSON Schema keywords Gemini's `Schema` (an OpenAPI 3.0 subset) rejects in
/// function `parameters`. Dropped wherever a schema appears (never where
/// the key is a property name).
pub const STRIPPED_SCHEMA_KEYS: &[&str] = &[
    "$schema",
    "$id",
    "$comment",
    "additionalProperties",
    "unevaluatedProperties",
    "patternProperties",
    "strict",
];

fn unsupported(param: impl Into<String>, message: impl Into<String>) -> ProviderError {
    ProviderError::unsupported_param(param, message)
}

// --- chat request -----------------------------------------------------------

/// The upstream request for `spec`. Fails (before any upstream call) on what
/// Gemini cannot express: an unknown content part type, a tool message that
/// answers no earlier call, arguments that are not a JSON object.
pub fn spec_to_request(spec: &pb::ChatSpec) -> Result<wire::GenerateContentRequest, ProviderError> {
    let extra = spec
        .extra
        .as_ref()
        .map(map_from_struct_ref)
        .unwrap_or_default();

    let mut system = Vec::new();
    let mut contents: Vec<wire::Content> = Vec::new();
    // Gemini's functionResponse names the function, OpenAI's tool message
    // only the call id: remember which id called what.
    let mut call_names: HashMap<&str, &str> = HashMap::new();
    for (i, m) in spec.messages.iter().enumerate() {
        let (role, parts) = match m.role() {
            Role::System | Role::Developer => {
                for (j, p) in m.content.iter().enumerate() {
                    match &p.part {
                        Some(Part::Text(t)) if !t.is_empty() => system.push(wire::Part::text(t)),
                        Some(Part::Text(_)) | None => {}
                        Some(_) => {
                            return Err(unsupported(
                                format!("messages[{i}].content[{j}]"),
                                "Gemini's system instruction takes text only",
                            ));
                        }
                    }
                }
                continue;
            }
            Role::User | Role::Unspecified => (wire::role::USER, content_parts(i, &m.content)?),
            Role::Assistant => {
                let mut parts = content_parts(i, &m.content)?;
                let verbatim_calls = m
                    .extra
                    .as_ref()
                    .map(map_from_struct_ref)
                    .and_then(|mut e| e.remove("tool_calls"));
                for (j, c) in m.tool_calls.iter().enumerate() {
                    call_names.insert(&c.id, &c.name);
                    let mut extra = Extra::new();
                    if let Some(sig) = thought_signature(verbatim_calls.as_ref(), &c.id) {
                        extra.insert(THOUGHT_SIGNATURE.into(), sig);
                    }
                    parts.push(wire::Part {
                        function_call: Some(wire::FunctionCall {
                            id: None,
                            name: c.name.clone(),
                            args: Some(call_arguments(i, j, &c.arguments)?),
                            extra: Extra::new(),
                        }),
                        extra,
                        ..wire::Part::default()
                    });
                }
                (wire::role::MODEL, parts)
            }
            Role::Tool => {
                let Some(name) = call_names.get(m.tool_call_id.as_str()) else {
                    return Err(unsupported(
                        format!("messages[{i}].tool_call_id"),
                        format!(
                            "no earlier assistant tool call has id `{}`; Gemini needs the name of the function a tool message answers",
                            m.tool_call_id
                        ),
                    ));
                };
                let part = wire::Part {
                    function_response: Some(wire::FunctionResponse {
                        id: None,
                        name: (*name).to_owned(),
                        response: tool_response(&m.content),
                        extra: Extra::new(),
                    }),
                    ..wire::Part::default()
                };
                (wire::role::USER, vec![part])
            }
        };
        // Gemini rejects a turn without parts (an assistant message with
        // neither content nor calls, for instance).
        if parts.is_empty() {
            continue;
        }
        match contents.last_mut() {
            Some(last) if last.role.as_deref() == Some(role) => last.parts.extend(parts),
            _ => contents.push(wire::Content {
                role: Some(role.to_owned()),
                parts,
                extra: Extra::new(),
            }),
        }
    }

    let tools = (!spec.tools.is_empty()).then(|| {
        vec![wire::Tool {
            function_declarations: Some(spec.tools.iter().map(declaration).collect()),
            extra: Extra::new(),
        }]
    });

    let mut request = wire::GenerateContentRequest {
        contents,
        system_instruction: (!system.is_empty()).then(|| wire::Content {
            role: None,
            parts: system,
            extra: Extra::new(),
        }),
        tools,
        tool_config: spec.tool_choice.as_ref().and_then(tool_config),
        generation_config: generation_config(spec, &extra)?,
        extra: Extra::new(),
    };
    for key in NATIVE_REQUEST_KEYS {
        if let Some(v) = extra.get(*key) {
            request.extra.insert((*key).to_owned(), v.clone());
        }
    }
    Ok(request)
}

/// Content parts of a user or assistant message. Empty text parts are left
/// out: Gemini rejects them.
fn content_parts(i: usize, parts: &[pb::ContentPart]) -> Result<Vec<wire::Part>, ProviderError> {
    let mut out = Vec::with_capacity(parts.len());
    for (j, p) in parts.iter().enumerate() {
        let param = || format!("messages[{i}].content[{j}]");
        match &p.part {
            None => {}
            Some(Part::Text(t)) if t.is_empty() => {}
            Some(Part::Text(t)) => out.push(wire::Part::text(t)),
            Some(Part::ImageUrl(img)) => out.push(image_part(&img.url).ok_or_else(|| {
                unsupported(
                    param(),
                    "Gemini takes images as base64 data: URLs or http(s)/gs:// URLs",
                )
            })?),
            Some(Part::Other(s)) => {
                if let Some(part) = other_part(&Value::Object(map_from_struct_ref(s)), &param)? {
                    out.push(part);
                }
            }
        }
    }
    Ok(out)
}

/// An image URL as a part: `data:` URLs inline, http(s) and Cloud Storage
/// URLs by reference.
fn image_part(url: &str) -> Option<wire::Part> {
    if let Some((mime_type, data)) = parse_data_url(url) {
        return Some(wire::Part {
            inline_data: Some(wire::Blob { mime_type, data }),
            ..wire::Part::default()
        });
    }
    let lower = url.to_ascii_lowercase();
    if ["http://", "https://", "gs://"]
        .iter()
        .any(|s| lower.starts_with(s))
    {
        return Some(wire::Part {
            file_data: Some(wire::FileData {
                mime_type: Some(guess_image_mime(&lower).to_owned()),
                file_uri: url.to_owned(),
            }),
            ..wire::Part::default()
        });
    }
    None
}

/// `data:<mime>;base64,<data>` as (mime, data). Gemini takes base64 only.
fn parse_data_url(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let mime = meta.strip_suffix(";base64")?;
    let mime = if mime.is_empty() {
        "application/octet-stream"
    } else {
        mime
    };
    Some((mime.to_owned(), data.to_owned()))
}

/// Gemini needs a MIME type for a file URI; the URL's extension is all there
/// is to go by. JPEG when it says nothing.
fn guess_image_mime(lower_url: &str) -> &'static str {
    let path = lower_url.split(['?', '#']).next().unwrap_or(lower_url);
    let ext = path.rsplit_once('.').map_or("", |(_, e)| e);
    match ext {
        "png" => "image/png",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "heic" => "image/heic",
        "heif" => "image/heif",
        _ => "image/jpeg",
    }
}

/// A content part the canonical model keeps as JSON (`input_audio`, `file`,
/// a text part with extra fields, an assistant's `refusal`).
fn other_part(v: &Value, param: &dyn Fn() -> String) -> Result<Option<wire::Part>, ProviderError> {
    let kind = v.get("type").and_then(Value::as_str).unwrap_or_default();
    let str_at = |path: &[&str]| {
        path.iter()
            .try_fold(v, |acc, k| acc.get(*k))
            .and_then(Value::as_str)
    };
    match kind {
        // Extra fields (cache breakpoints, ...) mean nothing to Gemini.
        "text" => Ok(str_at(&["text"])
            .filter(|t| !t.is_empty())
            .map(wire::Part::text)),
        "refusal" => Ok(str_at(&["refusal"])
            .filter(|t| !t.is_empty())
            .map(wire::Part::text)),
        "input_audio" => {
            let (Some(data), Some(format)) = (
                str_at(&["input_audio", "data"]),
                str_at(&["input_audio", "format"]),
            ) else {
                return Err(unsupported(
                    param(),
                    "input_audio needs `data` and `format`",
                ));
            };
            let mime_type = match format {
                "mp3" => "audio/mp3".to_owned(),
                "wav" => "audio/wav".to_owned(),
                other => format!("audio/{other}"),
            };
            Ok(Some(wire::Part {
                inline_data: Some(wire::Blob {
                    mime_type,
                    data: data.to_owned(),
                }),
                ..wire::Part::default()
            }))
        }
        "file" => match str_at(&["file", "file_data"]).and_then(parse_data_url) {
            Some((mime_type, data)) => Ok(Some(wire::Part {
                inline_data: Some(wire::Blob { mime_type, data }),
                ..wire::Part::default()
            })),
            None => Err(unsupported(
                param(),
                "Gemini takes files as base64 data: URLs in `file.file_data`; OpenAI file ids are not supported",
            )),
        },
        other => Err(unsupported(
            param(),
            format!("content parts of type `{other}` are not supported by Gemini"),
        )),
    }
}

/// The part field carrying an opaque signature of the model's reasoning,
/// which Gemini 3 requires back on the function calls of later turns.
const THOUGHT_SIGNATURE: &str = "thoughtSignature";

/// The signature of the call `id` in an assistant message's verbatim
/// OpenAI `tool_calls`, where Google's own OpenAI-compatible endpoint puts
/// it: `extra_content.google.thought_signature`.
fn thought_signature(verbatim_calls: Option<&Value>, id: &str) -> Option<Value> {
    verbatim_calls?
        .as_array()?
        .iter()
        .find(|c| c.get("id").and_then(Value::as_str) == Some(id))?
        .pointer("/extra_content/google/thought_signature")
        .filter(|s| s.is_string())
        .cloned()
}

/// An answer's tool calls in OpenAI's wire shape with each call's thought
/// signature under `extra_content.google.thought_signature`, for
/// `Message.extra.tool_calls`: the OpenAI edge sends that verbatim copy to
/// clients, and a client echoing it back returns the signatures.
fn tool_calls_with_signatures(calls: &[pb::ToolCall], signatures: Vec<Option<Value>>) -> Value {
    Value::Array(
        calls
            .iter()
            .zip(signatures)
            .map(|(c, sig)| {
                let mut call = json!({
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments}
                });
                if let Some(sig) = sig {
                    call["extra_content"] = json!({"google": {"thought_signature": sig}});
                }
                call
            })
            .collect(),
    )
}

/// Tool call arguments (JSON text) as Gemini's `args` object.
fn call_arguments(i: usize, j: usize, arguments: &str) -> Result<Value, ProviderError> {
    if arguments.trim().is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => Ok(v),
        _ => Err(unsupported(
            format!("messages[{i}].tool_calls[{j}].function.arguments"),
            "Gemini needs tool call arguments to be a JSON object",
        )),
    }
}

/// A tool message's content as `functionResponse.response`, which must be
/// an object: a JSON object as it is, anything else as `{"content": text}`.
fn tool_response(content: &[pb::ContentPart]) -> Value {
    let text: String = content
        .iter()
        .filter_map(|p| match &p.part {
            Some(Part::Text(t)) => Some(t.as_str()),
            _ => None,
        })
        .collect();
    match serde_json::from_str::<Value>(&text) {
        Ok(v @ Value::Object(_)) => v,
        _ => json!({ "content": text }),
    }
}

fn declaration(t: &pb::Tool) -> wire::FunctionDeclaration {
    let parameters = t
        .parameters
        .as_ref()
        .map(|p| clean_schema(&Value::Object(map_from_struct_ref(p))))
        // Gemini rejects an OBJECT schema without properties ("should be
        // non-empty for OBJECT type"): a function without parameters has no
        // schema at all.
        .filter(|p| {
            p.get("properties")
                .and_then(Value::as_object)
                .is_some_and(|m| !m.is_empty())
                || p.get("type").and_then(Value::as_str) != Some("object")
        });
    wire::FunctionDeclaration {
        name: t.name.clone(),
        description: (!t.description.is_empty()).then(|| t.description.clone()),
        parameters,
        extra: Extra::new(),
    }
}

/// A JSON Schema without the keywords Gemini rejects
/// ([`STRIPPED_SCHEMA_KEYS`]), recursively through every place a schema
/// nests. Property names are kept whatever they are.
pub fn clean_schema(v: &Value) -> Value {
    let Value::Object(o) = v else {
        return v.clone();
    };
    let mut out = Map::with_capacity(o.len());
    for (k, val) in o {
        if STRIPPED_SCHEMA_KEYS.contains(&k.as_str()) {
            continue;
        }
        let cleaned = match (k.as_str(), val) {
            // Maps from names to schemas.
            ("properties" | "$defs" | "definitions", Value::Object(m)) => Value::Object(
                m.iter()
                    .map(|(name, s)| (name.clone(), clean_schema(s)))
                    .collect(),
            ),
            // Lists of schemas.
            ("anyOf" | "oneOf" | "allOf" | "prefixItems" | "items", Value::Array(a)) => {
                Value::Array(a.iter().map(clean_schema).collect())
            }
            // One schema.
            ("items" | "not" | "contains" | "additionalItems", s @ Value::Object(_)) => {
                clean_schema(s)
            }
            _ => val.clone(),
        };
        out.insert(k.clone(), cleaned);
    }
    Value::Object(out)
}

fn tool_config(c: &pb::ToolChoice) -> Option<wire::ToolConfig> {
    let (mode, names) = match c.mode() {
        Mode::Unspecified => return None,
        Mode::None => (wire::calling_mode::NONE, None),
        Mode::Auto => (wire::calling_mode::AUTO, None),
        Mode::Required => (wire::calling_mode::ANY, None),
        Mode::Function => (wire::calling_mode::ANY, Some(vec![c.name.clone()])),
    };
    Some(wire::ToolConfig {
        function_calling_config: Some(wire::FunctionCallingConfig {
            mode: Some(mode.to_owned()),
            allowed_function_names: names,
            extra: Extra::new(),
        }),
        extra: Extra::new(),
    })
}

/// `generationConfig`: the canonical sampling fields, then (where those left
/// a key unset) a `generationConfig` object and the native keys from
/// `spec.extra`, and OpenAI's `logprobs`/`top_logprobs` translated.
fn generation_config(
    spec: &pb::ChatSpec,
    extra: &Extra,
) -> Result<Option<wire::GenerationConfig>, ProviderError> {
    let (mime, schema) = match spec.response_format.as_ref().map(|f| (f.r#type(), f)) {
        Some((FormatType::JsonObject, _)) => (Some("application/json".to_owned()), None),
        Some((FormatType::JsonSchema, f)) => (
            Some("application/json".to_owned()),
            // `responseJsonSchema` takes JSON Schema as it is; the older
            // `responseSchema` only an OpenAPI subset.
            f.schema
                .as_ref()
                .map(|s| Value::Object(map_from_struct_ref(s))),
        ),
        _ => (None, None),
    };
    let typed = wire::GenerationConfig {
        stop_sequences: (!spec.stop.is_empty()).then(|| spec.stop.clone()),
        response_mime_type: mime,
        response_json_schema: schema,
        candidate_count: (spec.n > 0).then_some(spec.n),
        max_output_tokens: spec.max_tokens,
        temperature: spec.temperature,
        top_p: spec.top_p,
        seed: spec.seed,
        presence_penalty: spec.presence_penalty,
        frequency_penalty: spec.frequency_penalty,
        response_logprobs: None,
        logprobs: None,
        extra: Extra::new(),
    };
    let Ok(Value::Object(mut map)) = serde_json::to_value(&typed) else {
        return Ok(None);
    };
    let mut fill = |k: &str, v: &Value| {
        if !map.contains_key(k) {
            map.insert(k.to_owned(), v.clone());
        }
    };
    if let Some(Value::Object(native)) = extra.get("generationConfig") {
        for (k, v) in native {
            fill(k, v);
        }
    }
    for key in NATIVE_GENERATION_KEYS {
        if let Some(v) = extra.get(*key) {
            fill(key, v);
        }
    }
    if extra.get("logprobs") == Some(&Value::Bool(true)) {
        fill("responseLogprobs", &Value::Bool(true));
    }
    if let Some(n) = extra.get("top_logprobs") {
        fill("logprobs", n);
    }
    // Reasoning asked for in another spelling (`reasoning_effort`,
    // Anthropic's `thinking`), unless the client sent Gemini's own
    // `thinkingConfig` above.
    if let Some(budget) = spec
        .reasoning
        .as_ref()
        .and_then(crate::reasoning::gemini_budget)
    {
        fill("thinkingConfig", &json!({ "thinkingBudget": budget }));
    }
    if map.is_empty() {
        return Ok(None);
    }
    serde_json::from_value(Value::Object(map))
        .map(Some)
        .map_err(|e| unsupported("generationConfig", format!("invalid generationConfig: {e}")))
}

// --- chat answer ------------------------------------------------------------

/// Gemini's finish reasons. `STOP` on a candidate that called functions is
/// OpenAI's `tool_calls`; every safety-style stop is `content_filter`.
pub fn finish_reason_from_wire(r: Option<&str>, called_functions: bool) -> FinishReason {
    match r {
        None => FinishReason::Unspecified,
        Some("MAX_TOKENS") => FinishReason::Length,
        Some(
            "SAFETY"
            | "RECITATION"
            | "BLOCKLIST"
            | "PROHIBITED_CONTENT"
            | "SPII"
            | "IMAGE_SAFETY"
            | "IMAGE_PROHIBITED_CONTENT"
            | "IMAGE_RECITATION",
        ) => FinishReason::ContentFilter,
        Some(_) if called_functions => FinishReason::ToolCalls,
        Some(_) => FinishReason::Stop,
    }
}

pub fn usage_from_wire(u: &wire::UsageMetadata) -> pb::Usage {
    // Tool-use prompt tokens are billed as input; thoughts as output.
    let prompt = u
        .prompt_token_count
        .saturating_add(u.tool_use_prompt_token_count);
    let completion = u
        .candidates_token_count
        .saturating_add(u.thoughts_token_count);
    pb::Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: if u.total_token_count == 0 {
            prompt.saturating_add(completion)
        } else {
            u.total_token_count
        },
        cached_prompt_tokens: u.cached_content_token_count,
        reasoning_tokens: u.thoughts_token_count,
        ..pb::Usage::default()
    }
}

/// The id of the `n`th function call of an answer: Gemini's own when it
/// gave one.
pub fn call_id(given: Option<&str>, n: usize) -> String {
    match given {
        Some(id) if !id.is_empty() => id.to_owned(),
        _ => format!("call_{n}"),
    }
}

/// Function call arguments as the JSON text the canonical model carries.
pub fn arguments_text(args: Option<&Value>) -> String {
    match args {
        None | Some(Value::Null) => "{}".to_owned(),
        Some(v) => v.to_string(),
    }
}

fn text_part(s: String) -> pb::ContentPart {
    pb::ContentPart {
        part: Some(Part::Text(s)),
        extra: None,
    }
}

/// A complete answer as the canonical result. Gemini has no creation time;
/// `created` is the caller's clock.
pub fn response_to_result(resp: wire::GenerateContentResponse, created: i64) -> pb::ChatResult {
    let mut calls_seen = 0;
    let mut choices: Vec<pb::Choice> = resp
        .candidates
        .into_iter()
        .enumerate()
        .map(|(position, c)| {
            let mut text = String::new();
            let mut reasoning = String::new();
            let mut tool_calls = Vec::new();
            let mut signatures = Vec::new();
            for mut part in c.content.map(|c| c.parts).unwrap_or_default() {
                if let Some(f) = part.function_call {
                    tool_calls.push(pb::ToolCall {
                        id: call_id(f.id.as_deref(), calls_seen),
                        name: f.name,
                        arguments: arguments_text(f.args.as_ref()),
                    });
                    signatures.push(part.extra.remove(THOUGHT_SIGNATURE));
                    calls_seen += 1;
                } else if let Some(t) = &part.text {
                    if part.is_thought() {
                        reasoning.push_str(t);
                    } else {
                        text.push_str(t);
                    }
                }
            }
            let finish =
                finish_reason_from_wire(c.finish_reason.as_deref(), !tool_calls.is_empty());
            let mut extra = Extra::new();
            if !reasoning.is_empty() {
                extra.insert("reasoning_content".into(), Value::String(reasoning));
            }
            if signatures.iter().any(Option::is_some) {
                extra.insert(
                    "tool_calls".into(),
                    tool_calls_with_signatures(&tool_calls, signatures),
                );
            }
            pb::Choice {
                index: c
                    .index
                    .unwrap_or_else(|| u32::try_from(position).unwrap_or(u32::MAX)),
                message: Some(pb::Message {
                    role: Role::Assistant as i32,
                    content: (!text.is_empty())
                        .then(|| text_part(text))
                        .into_iter()
                        .collect(),
                    tool_calls,
                    extra: (!extra.is_empty()).then(|| struct_from_map(extra)),
                    ..Default::default()
                }),
                finish_reason: finish as i32,
            }
        })
        .collect();
    if choices.is_empty()
        && let Some(reason) = resp
            .prompt_feedback
            .as_ref()
            .and_then(|f| f.block_reason.as_deref())
    {
        choices.push(blocked_choice(reason));
    }
    pb::ChatResult {
        id: resp.response_id.unwrap_or_default(),
        model: resp.model_version.unwrap_or_default(),
        created,
        choices,
        usage: resp.usage_metadata.as_ref().map(usage_from_wire),
        system_fingerprint: String::new(),
        native_response: None,
    }
}

/// The answer to a prompt Gemini refused to process: no content, a refusal
/// naming the reason, `content_filter`.
pub fn blocked_choice(reason: &str) -> pb::Choice {
    let mut extra = Extra::new();
    extra.insert(
        "refusal".into(),
        Value::String(format!("the prompt was blocked by Gemini ({reason})")),
    );
    pb::Choice {
        index: 0,
        message: Some(pb::Message {
            role: Role::Assistant as i32,
            extra: Some(struct_from_map(extra)),
            ..Default::default()
        }),
        finish_reason: FinishReason::ContentFilter as i32,
    }
}

// --- embeddings ---------------------------------------------------------------

/// Keys of `EmbedSpec.extra` forwarded into every `EmbedContentRequest`.
pub const NATIVE_EMBED_KEYS: &[&str] = &["taskType", "title"];

/// A model's collection and id: `models/x` and `tunedModels/x` name
/// theirs; any other name (slashes included) is an id in `models`. Never
/// more than these two parts: the URL is built from them, and a name must
/// not be able to walk out of the collection (`../../files`).
pub fn split_model(model: &str) -> (&'static str, &str) {
    for collection in ["models", "tunedModels"] {
        if let Some(id) = model
            .strip_prefix(collection)
            .and_then(|rest| rest.strip_prefix('/'))
            .filter(|id| !id.is_empty() && !id.contains('/'))
        {
            return (collection, id);
        }
    }
    ("models", model)
}

/// `models/{model}`, the form Gemini wants in bodies.
pub fn model_resource(model: &str) -> String {
    let (collection, id) = split_model(model);
    format!("{collection}/{id}")
}

pub fn embed_request(
    spec: &pb::EmbedSpec,
    upstream_model: &str,
) -> Result<wire::BatchEmbedContentsRequest, ProviderError> {
    let extra = spec
        .extra
        .as_ref()
        .map(map_from_struct_ref)
        .unwrap_or_default();
    if spec.inputs.is_empty() && extra.contains_key("input") {
        return Err(unsupported(
            "input",
            "Gemini embeds text only; token-array inputs are not supported",
        ));
    }
    let mut shared = Extra::new();
    for key in NATIVE_EMBED_KEYS {
        if let Some(v) = extra.get(*key) {
            shared.insert((*key).to_owned(), v.clone());
        }
    }
    let model = model_resource(upstream_model);
    Ok(wire::BatchEmbedContentsRequest {
        requests: spec
            .inputs
            .iter()
            .map(|text| wire::EmbedContentRequest {
                model: model.clone(),
                content: wire::Content {
                    role: None,
                    parts: vec![wire::Part::text(text)],
                    extra: Extra::new(),
                },
                output_dimensionality: spec.dimensions,
                extra: shared.clone(),
            })
            .collect(),
    })
}

/// Gemini answers embeddings in request order, one per input; anything else
/// is an undecodable answer.
pub fn embed_result(
    resp: wire::BatchEmbedContentsResponse,
    inputs: usize,
    upstream_model: &str,
) -> Result<pb::EmbedResult, ProviderError> {
    if resp.embeddings.len() != inputs {
        return Err(ProviderError::InvalidResponse(format!(
            "Gemini answered {} embeddings for {inputs} inputs",
            resp.embeddings.len()
        )));
    }
    // batchEmbedContents reports no usage today; use it if it ever does.
    let prompt = resp
        .usage_metadata
        .as_ref()
        .map_or(0, |u| u.prompt_token_count);
    Ok(pb::EmbedResult {
        model: upstream_model.to_owned(),
        data: resp
            .embeddings
            .into_iter()
            .enumerate()
            .map(|(i, e)| pb::Embedding {
                index: u32::try_from(i).unwrap_or(u32::MAX),
                vector: e.values,
            })
            .collect(),
        usage: Some(pb::Usage {
            prompt_tokens: prompt,
            total_tokens: prompt,
            ..Default::default()
        }),
    })
}

// --- images -------------------------------------------------------------------

/// Keys of `ImageSpec.extra` forwarded into Imagen's `parameters` (a
/// `parameters` object in `extra` is merged too).
pub const NATIVE_IMAGE_KEYS: &[&str] = &[
    "personGeneration",
    "imageSize",
    "outputOptions",
    "safetyFilterLevel",
    "addWatermark",
    "enhancePrompt",
    "negativePrompt",
    "includeRaiReason",
    "language",
    "seed",
];

/// The aspect ratios Imagen accepts, as (name, width / height).
const ASPECT_RATIOS: &[(&str, f64)] = &[
    ("1:1", 1.0),
    ("3:4", 0.75),
    ("4:3", 4.0 / 3.0),
    ("9:16", 9.0 / 16.0),
    ("16:9", 16.0 / 9.0),
];

/// An OpenAI `size` (`1792x1024`) as the nearest Imagen aspect ratio;
/// `None` for the provider's default (`""`, `auto`).
pub fn aspect_ratio(size: &str) -> Result<Option<&'static str>, ProviderError> {
    if size.is_empty() || size == "auto" {
        return Ok(None);
    }
    let parsed = size
        .split_once(['x', 'X'])
        .and_then(|(w, h)| Some((w.trim().parse::<u32>().ok()?, h.trim().parse::<u32>().ok()?)))
        .filter(|(w, h)| *w > 0 && *h > 0);
    let Some((w, h)) = parsed else {
        return Err(unsupported(
            "size",
            format!("invalid size `{size}`: expected WIDTHxHEIGHT or auto"),
        ));
    };
    let ratio = f64::from(w) / f64::from(h);
    // Compared on a log scale, so 2:1 is as far from 1:1 as 1:2 is.
    let nearest = ASPECT_RATIOS
        .iter()
        .min_by(|a, b| {
            let d = |r: f64| (r.ln() - ratio.ln()).abs();
            d(a.1).total_cmp(&d(b.1))
        })
        .map(|(name, _)| *name);
    Ok(nearest)
}

pub fn image_request(spec: &pb::ImageSpec) -> Result<wire::PredictRequest, ProviderError> {
    if spec.response_format == "url" {
        return Err(unsupported(
            "response_format",
            "Gemini (Imagen) returns image bytes, not URLs: ask for response_format `b64_json`",
        ));
    }
    let extra = spec
        .extra
        .as_ref()
        .map(map_from_struct_ref)
        .unwrap_or_default();
    let mut native = Extra::new();
    if let Some(Value::Object(params)) = extra.get("parameters") {
        native.extend(params.clone());
    }
    for key in NATIVE_IMAGE_KEYS {
        if let Some(v) = extra.get(*key) {
            native.insert((*key).to_owned(), v.clone());
        }
    }
    // OpenAI's `n` defaults to 1, Imagen's `sampleCount` to 4: always say.
    let sample_count = spec.n.max(1);
    let aspect = aspect_ratio(&spec.size)?.map(str::to_owned);
    // The canonical fields win over the same keys in `extra` (and a key
    // must not be written twice).
    native.remove("sampleCount");
    if aspect.is_some() {
        native.remove("aspectRatio");
    }
    let parameters = Some(wire::ImagenParameters {
        sample_count: Some(sample_count),
        aspect_ratio: aspect,
        extra: native,
    });
    Ok(wire::PredictRequest {
        instances: vec![wire::ImagenInstance {
            prompt: spec.prompt.clone(),
        }],
        parameters,
    })
}

/// Imagen's predictions as images. An answer without a single image (every
/// one withheld by the safety filter) is a content-policy refusal.
pub fn image_result(
    resp: wire::PredictResponse,
    created: i64,
) -> Result<pb::ImageResult, ProviderError> {
    let mut reasons = Vec::new();
    let mut data = Vec::new();
    for p in resp.predictions {
        match p.bytes_base64_encoded {
            Some(b64) if !b64.is_empty() => data.push(pb::GeneratedImage {
                url: String::new(),
                b64_json: b64,
                revised_prompt: p.prompt.unwrap_or_default(),
            }),
            _ => reasons.extend(p.rai_filtered_reason),
        }
    }
    if data.is_empty() {
        let why = if reasons.is_empty() {
            "Imagen returned no images (all were withheld by its safety filter)".to_owned()
        } else {
            reasons.join(" ")
        };
        return Err(ProviderError::BadRequest {
            message: why,
            status: 400,
            param: Some("prompt".into()),
            code: Some("content_policy_violation".into()),
        });
    }
    Ok(pb::ImageResult {
        created,
        data,
        usage: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasoning_becomes_a_thinking_budget() {
        let config = |reasoning: pb::Reasoning, extra: Value| {
            let spec = pb::ChatSpec {
                reasoning: Some(reasoning),
                ..Default::default()
            };
            let extra = extra.as_object().cloned().unwrap_or_default();
            serde_json::to_value(generation_config(&spec, &extra).unwrap()).unwrap()
        };
        let effort = |e: &str| crate::reasoning::from_effort(e);
        assert_eq!(
            config(effort("low"), json!({}))["thinkingConfig"],
            json!({"thinkingBudget": 1024})
        );
        let claude_code = pb::Reasoning {
            budget_tokens: 31999,
            ..Default::default()
        };
        assert_eq!(
            config(claude_code, json!({}))["thinkingConfig"],
            json!({"thinkingBudget": 24576})
        );
        assert_eq!(
            config(effort("none"), json!({}))["thinkingConfig"],
            json!({"thinkingBudget": 0})
        );
        // Gemini's own spelling from the client wins.
        let own = json!({"thinkingConfig": {"thinkingBudget": 512, "includeThoughts": true}});
        assert_eq!(
            config(effort("high"), own.clone())["thinkingConfig"],
            own["thinkingConfig"]
        );
    }

    #[test]
    fn schemas_lose_what_gemini_rejects_but_keep_property_names() {
        let schema = json!({
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "strict": {"type": "boolean"},
                "additionalProperties": {"type": "string"},
                "tags": {"type": "array", "items": {"type": "object", "additionalProperties": false,
                    "properties": {"k": {"type": "string"}}}},
                "choice": {"anyOf": [{"type": "string", "$comment": "x"}, {"type": "null"}]}
            },
            "required": ["strict"]
        });
        assert_eq!(
            clean_schema(&schema),
            json!({
                "type": "object",
                "properties": {
                    "strict": {"type": "boolean"},
                    "additionalProperties": {"type": "string"},
                    "tags": {"type": "array", "items": {"type": "object", "properties": {"k": {"type": "string"}}}},
                    "choice": {"anyOf": [{"type": "string"}, {"type": "null"}]}
                },
                "required": ["strict"]
            })
        );
    }

    #[test]
    fn finish_reasons() {
        let f = finish_reason_from_wire;
        assert_eq!(f(Some("STOP"), false), FinishReason::Stop);
        assert_eq!(f(Some("STOP"), true), FinishReason::ToolCalls);
        assert_eq!(f(Some("MAX_TOKENS"), true), FinishReason::Length);
        for r in [
            "SAFETY",
            "RECITATION",
            "BLOCKLIST",
            "PROHIBITED_CONTENT",
            "SPII",
            "IMAGE_SAFETY",
        ] {
            assert_eq!(f(Some(r), false), FinishReason::ContentFilter, "{r}");
        }
        assert_eq!(
            f(Some("MALFORMED_FUNCTION_CALL"), false),
            FinishReason::Stop
        );
        assert_eq!(f(Some("OTHER"), false), FinishReason::Stop);
        assert_eq!(f(None, false), FinishReason::Unspecified);
    }

    #[test]
    fn sizes_become_the_nearest_aspect_ratio() {
        for (size, ratio) in [
            ("1024x1024", Some("1:1")),
            ("256x256", Some("1:1")),
            ("1792x1024", Some("16:9")),
            ("1024x1792", Some("9:16")),
            ("1536x1024", Some("4:3")),
            ("1024x1536", Some("3:4")),
            ("auto", None),
            ("", None),
        ] {
            assert_eq!(aspect_ratio(size).unwrap(), ratio, "{size}");
        }
        for bad in ["big", "0x100", "100x", "x"] {
            assert!(aspect_ratio(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn image_mime_types_are_guessed_from_the_path() {
        assert_eq!(guess_image_mime("https://x/a.png?sig=1.jpg"), "image/png");
        assert_eq!(guess_image_mime("https://x/a.webp#f"), "image/webp");
        assert_eq!(guess_image_mime("https://x/photo"), "image/jpeg");
        assert_eq!(
            parse_data_url("data:image/png;base64,AAAA"),
            Some(("image/png".into(), "AAAA".into()))
        );
        assert_eq!(parse_data_url("data:text/plain,hello"), None);
    }

    #[test]
    fn usage_counts_thoughts_as_completion() {
        let u = usage_from_wire(&wire::UsageMetadata {
            prompt_token_count: 10,
            candidates_token_count: 4,
            thoughts_token_count: 6,
            cached_content_token_count: 8,
            tool_use_prompt_token_count: 2,
            total_token_count: 22,
            extra: Extra::new(),
        });
        assert_eq!(
            (
                u.prompt_tokens,
                u.completion_tokens,
                u.total_tokens,
                u.reasoning_tokens,
                u.cached_prompt_tokens
            ),
            (12, 10, 22, 6, 8)
        );
        let u = usage_from_wire(&wire::UsageMetadata {
            prompt_token_count: 3,
            candidates_token_count: 2,
            ..Default::default()
        });
        assert_eq!(u.total_tokens, 5);
    }
}
