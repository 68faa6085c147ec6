//! OpenAI wire format <-> canonical model, both directions, in one place.
//!
//! Router side: [`request_to_spec`] (client request in), [`result_to_response`]
//! and [`chunk_to_wire`] (answers out). Worker side: [`spec_to_request`]
//! (upstream request out), [`response_to_result`] and [`chunk_from_wire`]
//! (upstream answers in).
//!
//! Nothing a client sends is dropped on the way to an OpenAI-format upstream:
//! - fields the canonical model does not name go to `ChatSpec.extra` (request)
//!   and `Message.extra` (message), and come back out unchanged;
//! - content parts of unknown types travel as `ContentPart.other`;
//! - a field the canonical model can express only in part (`tools` with
//!   non-function tools, `tool_choice: allowed_tools`, a `json_schema` with a
//!   `description`, `stream_options` beyond `include_usage`, an assistant
//!   message's non-function `tool_calls`) is converted as far as it goes *and*
//!   kept verbatim under its own name in `extra`. [`spec_to_request`] prefers
//!   that verbatim copy, so an OpenAI-format upstream receives exactly what the
//!   client sent, while other formats still see the canonical part.

use serde_json::Value;
use switchyard_proto::gateway::v1::{
    self as pb, FinishReason, Role, content_part::Part, response_format::Type as FormatType,
    tool_choice::Mode,
};
use switchyard_proto::json::{map_from_struct_ref, struct_from_map};

use super::wire::{self, Extra};

/// A client request OpenAI would refuse with 400. `param` names the offending
/// field the way OpenAI does (`messages[2].role`, `tool_choice`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ConvertError {
    pub message: String,
    pub param: Option<String>,
}

impl ConvertError {
    pub fn new(param: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            param: Some(param.into()),
        }
    }
}

/// Which request field carries the completion token limit upstream.
/// OpenAI's reasoning models accept only `max_completion_tokens`; many
/// OpenAI-compatible vendors (Mistral, DeepSeek, older vLLM) accept only
/// `max_tokens`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MaxTokensField {
    #[default]
    MaxCompletionTokens,
    MaxTokens,
}

impl MaxTokensField {
    /// `max_completion_tokens` for OpenAI itself and Azure OpenAI,
    /// `max_tokens` for every other OpenAI-compatible endpoint.
    pub fn for_base_url(url: &url::Url) -> Self {
        match url.host_str() {
            Some(h) if h == "api.openai.com" || h.ends_with(".openai.azure.com") => {
                Self::MaxCompletionTokens
            }
            _ => Self::MaxTokens,
        }
    }
}

// --- router side: client request -> canonical ------------------------------

/// A client's OpenAI request as the canonical spec, and whether it asked for
/// a stream. Validates what OpenAI validates before any upstream is called.
pub fn request_to_spec(
    req: wire::ChatCompletionRequest,
) -> Result<(pb::ChatSpec, bool), ConvertError> {
    let wire::ChatCompletionRequest {
        model,
        messages,
        temperature,
        top_p,
        max_tokens,
        max_completion_tokens,
        stop,
        presence_penalty,
        frequency_penalty,
        seed,
        user,
        tools,
        tool_choice,
        parallel_tool_calls,
        response_format,
        n,
        stream,
        stream_options,
        mut extra,
    } = req;
    let stream = stream.unwrap_or(false);

    if model.trim().is_empty() {
        return Err(ConvertError::new(
            "model",
            "you must provide a model parameter",
        ));
    }
    if messages.is_empty() {
        return Err(ConvertError::new(
            "messages",
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.",
        ));
    }
    check_range("temperature", temperature, 0.0, 2.0)?;
    check_range("top_p", top_p, 0.0, 1.0)?;
    check_range("presence_penalty", presence_penalty, -2.0, 2.0)?;
    check_range("frequency_penalty", frequency_penalty, -2.0, 2.0)?;
    check_min("n", n, 1)?;
    check_min("max_tokens", max_tokens, 1)?;
    check_min("max_completion_tokens", max_completion_tokens, 1)?;
    if stream_options.is_some() && !stream {
        return Err(ConvertError::new(
            "stream_options",
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
        ));
    }

    let messages = messages
        .into_iter()
        .enumerate()
        .map(|(i, m)| message_to_canonical(i, m))
        .collect::<Result<Vec<_>, _>>()?;

    let tools = tools.unwrap_or_default();
    let canonical_tools = tools_to_canonical(&tools)?;
    if tools.iter().ne(canonical_tools
        .iter()
        .map(tool_to_wire)
        .collect::<Vec<_>>()
        .iter())
    {
        extra.insert("tools".into(), to_value(&tools));
    }

    let tool_choice = match tool_choice {
        None => None,
        Some(choice) => {
            let canonical = tool_choice_to_canonical(&choice, &tools)?;
            if tool_choice_to_wire(&canonical).as_ref() != Some(&choice) {
                extra.insert("tool_choice".into(), to_value(&choice));
            }
            Some(canonical)
        }
    };

    let response_format = match response_format {
        None => None,
        Some(format) => {
            let canonical = response_format_to_canonical(&format)?;
            if response_format_to_wire(&canonical).as_ref() != Some(&format) {
                extra.insert("response_format".into(), to_value(&format));
            }
            Some(canonical)
        }
    };

    let include_usage = stream_options
        .as_ref()
        .and_then(|o| o.include_usage)
        .unwrap_or(false);
    if let Some(options) = stream_options.filter(|o| !o.extra.is_empty()) {
        extra.insert("stream_options".into(), to_value(&options));
    }

    // The typed form lets other wire formats map it; the verbatim copy stays
    // in `extra` for OpenAI-format targets.
    let reasoning = extra
        .get("reasoning_effort")
        .and_then(Value::as_str)
        .map(crate::reasoning::from_effort);

    let spec = pb::ChatSpec {
        model,
        messages,
        temperature,
        top_p,
        max_tokens: max_completion_tokens.or(max_tokens),
        stop: stop.map(wire::Stop::into_vec).unwrap_or_default(),
        presence_penalty,
        frequency_penalty,
        seed,
        user: user.unwrap_or_default(),
        tools: canonical_tools,
        tool_choice,
        parallel_tool_calls,
        response_format,
        n: n.unwrap_or(0),
        include_usage,
        extra: (!extra.is_empty()).then(|| struct_from_map(extra)),
        dialect: pb::Dialect::Unspecified as i32,
        reasoning,
        responses_request: None,
        native_only: None,
    };
    Ok((spec, stream))
}

fn check_range(param: &str, v: Option<f64>, min: f64, max: f64) -> Result<(), ConvertError> {
    match v {
        Some(x) if x.is_nan() || x < min => Err(ConvertError::new(
            param,
            format!(
                "Invalid '{param}': decimal below minimum value. Expected a value >= {min}, but got {x} instead."
            ),
        )),
        Some(x) if x > max => Err(ConvertError::new(
            param,
            format!(
                "Invalid '{param}': decimal above maximum value. Expected a value <= {max}, but got {x} instead."
            ),
        )),
        _ => Ok(()),
    }
}

fn check_min(param: &str, v: Option<u32>, min: u32) -> Result<(), ConvertError> {
    match v {
        Some(x) if x < min => Err(ConvertError::new(
            param,
            format!(
                "Invalid '{param}': integer below minimum value. Expected a value >= {min}, but got {x} instead."
            ),
        )),
        _ => Ok(()),
    }
}

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    // Serializing the wire structs cannot fail (string keys, no custom
    // serializers that error).
    serde_json::to_value(v).unwrap_or(Value::Null)
}

fn message_to_canonical(i: usize, m: wire::RequestMessage) -> Result<pb::Message, ConvertError> {
    let wire::RequestMessage {
        role,
        content,
        name,
        tool_calls,
        tool_call_id,
        mut extra,
    } = m;
    let role = match role.as_str() {
        wire::role::SYSTEM => Role::System,
        wire::role::DEVELOPER => Role::Developer,
        wire::role::USER => Role::User,
        wire::role::ASSISTANT => Role::Assistant,
        wire::role::TOOL => Role::Tool,
        wire::role::FUNCTION => {
            return Err(ConvertError::new(
                format!("messages[{i}].role"),
                "Messages with role 'function' are deprecated and not supported; use 'tool' messages.",
            ));
        }
        other => {
            return Err(ConvertError::new(
                format!("messages[{i}].role"),
                format!(
                    "Invalid value: '{other}'. Supported values are: 'system', 'assistant', 'user', 'tool', and 'developer'."
                ),
            ));
        }
    };
    let needs_content = matches!(
        role,
        Role::System | Role::Developer | Role::User | Role::Tool
    );
    if needs_content && content.is_none() {
        return Err(ConvertError::new(
            format!("messages[{i}].content"),
            format!("Missing required parameter: 'messages[{i}].content'."),
        ));
    }
    if role == Role::Tool && tool_call_id.as_deref().is_none_or(str::is_empty) {
        return Err(ConvertError::new(
            format!("messages[{i}].tool_call_id"),
            format!("Missing required parameter: 'messages[{i}].tool_call_id'."),
        ));
    }
    let (content, content_is_parts) = match content {
        None => (Vec::new(), false),
        Some(wire::MessageContent::Text(s)) => (vec![text_part(s)], false),
        Some(wire::MessageContent::Parts(parts)) => {
            if parts.is_empty() {
                return Err(ConvertError::new(
                    format!("messages[{i}].content"),
                    format!(
                        "Invalid 'messages[{i}].content': empty array. Expected an array with minimum length 1, but got an empty array instead."
                    ),
                ));
            }
            (parts.into_iter().map(part_to_canonical).collect(), true)
        }
    };
    let tool_calls = match tool_calls {
        None => Vec::new(),
        Some(calls) => {
            let canonical = tool_calls_to_canonical(&calls);
            if tool_calls_to_wire(&canonical) != calls {
                extra.insert("tool_calls".into(), to_value(&calls));
            }
            canonical
        }
    };
    Ok(pb::Message {
        role: role as i32,
        content,
        name: name.unwrap_or_default(),
        tool_calls,
        tool_call_id: tool_call_id.unwrap_or_default(),
        content_is_parts,
        extra: (!extra.is_empty()).then(|| struct_from_map(extra)),
    })
}

fn text_part(s: String) -> pb::ContentPart {
    pb::ContentPart {
        part: Some(Part::Text(s)),
        extra: None,
    }
}

fn part_to_canonical(p: wire::ContentPart) -> pb::ContentPart {
    let part = match p {
        wire::ContentPart::Text { text } => Part::Text(text),
        wire::ContentPart::ImageUrl { image_url } => Part::ImageUrl(pb::ImageUrl {
            url: image_url.url,
            detail: image_url.detail.unwrap_or_default(),
        }),
        wire::ContentPart::Other(map) => Part::Other(struct_from_map(map)),
    };
    pb::ContentPart {
        part: Some(part),
        extra: None,
    }
}

fn tools_to_canonical(tools: &[wire::Tool]) -> Result<Vec<pb::Tool>, ConvertError> {
    let mut out = Vec::with_capacity(tools.len());
    for (i, t) in tools.iter().enumerate() {
        if t.kind != "function" {
            // Custom and vendor tools have no canonical form; they travel
            // verbatim in `extra` (see the module doc).
            continue;
        }
        let Some(f) = &t.function else {
            return Err(ConvertError::new(
                format!("tools[{i}].function"),
                format!("Missing required parameter: 'tools[{i}].function'."),
            ));
        };
        if !valid_function_name(&f.name) {
            return Err(ConvertError::new(
                format!("tools[{i}].function.name"),
                format!(
                    "Invalid 'tools[{i}].function.name': string does not match pattern. Expected a string that matches the pattern '^[a-zA-Z0-9_-]{{1,64}}$'."
                ),
            ));
        }
        let parameters = match &f.parameters {
            None | Some(Value::Null) => None,
            Some(Value::Object(o)) => Some(struct_from_map(o.clone())),
            Some(_) => {
                return Err(ConvertError::new(
                    format!("tools[{i}].function.parameters"),
                    format!(
                        "Invalid type for 'tools[{i}].function.parameters': expected an object."
                    ),
                ));
            }
        };
        out.push(pb::Tool {
            name: f.name.clone(),
            description: f.description.clone().unwrap_or_default(),
            parameters,
            strict: f.strict,
            extra: None,
        });
    }
    Ok(out)
}

fn valid_function_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn tool_choice_to_canonical(
    choice: &wire::ToolChoice,
    tools: &[wire::Tool],
) -> Result<pb::ToolChoice, ConvertError> {
    let mode = |m: Mode| pb::ToolChoice {
        mode: m as i32,
        name: String::new(),
    };
    let choice = match choice {
        wire::ToolChoice::Mode(m) => match m.as_str() {
            wire::tool_choice_mode::NONE => mode(Mode::None),
            wire::tool_choice_mode::AUTO => mode(Mode::Auto),
            wire::tool_choice_mode::REQUIRED => mode(Mode::Required),
            other => {
                return Err(ConvertError::new(
                    "tool_choice",
                    format!(
                        "Invalid value: '{other}'. Supported values are: 'none', 'auto', and 'required'."
                    ),
                ));
            }
        },
        wire::ToolChoice::Object(o) if o.kind == "function" => {
            let Some(name) = o
                .function
                .as_ref()
                .map(|f| f.name.clone())
                .filter(|n| !n.is_empty())
            else {
                return Err(ConvertError::new(
                    "tool_choice.function.name",
                    "Missing required parameter: 'tool_choice.function.name'.",
                ));
            };
            let declared = tools
                .iter()
                .any(|t| t.function.as_ref().is_some_and(|f| f.name == name));
            if !declared {
                return Err(ConvertError::new(
                    "tool_choice",
                    format!(
                        "Invalid value for 'tool_choice': function '{name}' is not among the 'tools'."
                    ),
                ));
            }
            pb::ToolChoice {
                mode: Mode::Function as i32,
                name,
            }
        }
        // `allowed_tools` restricts the set but keeps its own mode.
        wire::ToolChoice::Object(o) if o.kind == "allowed_tools" => {
            match o
                .extra
                .get("allowed_tools")
                .and_then(|a| a.get("mode"))
                .and_then(Value::as_str)
            {
                Some(wire::tool_choice_mode::REQUIRED) => mode(Mode::Required),
                _ => mode(Mode::Auto),
            }
        }
        // `custom` and vendor choices name a tool under their own key.
        wire::ToolChoice::Object(o) => {
            let name = o
                .extra
                .get(&o.kind)
                .and_then(|c| c.get("name"))
                .and_then(Value::as_str);
            match name {
                Some(n) => pb::ToolChoice {
                    mode: Mode::Function as i32,
                    name: n.to_owned(),
                },
                None => mode(Mode::Unspecified),
            }
        }
    };
    let forces_a_tool = !matches!(choice.mode(), Mode::None | Mode::Unspecified);
    if forces_a_tool && tools.is_empty() {
        return Err(ConvertError::new(
            "tool_choice",
            "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.",
        ));
    }
    Ok(choice)
}

fn response_format_to_canonical(
    f: &wire::ResponseFormat,
) -> Result<pb::ResponseFormat, ConvertError> {
    let plain = |t: FormatType| pb::ResponseFormat {
        r#type: t as i32,
        ..Default::default()
    };
    Ok(match f.kind.as_str() {
        wire::response_format_type::TEXT => plain(FormatType::Text),
        wire::response_format_type::JSON_OBJECT => plain(FormatType::JsonObject),
        wire::response_format_type::JSON_SCHEMA => {
            let Some(js) = &f.json_schema else {
                return Err(ConvertError::new(
                    "response_format.json_schema",
                    "Missing required parameter: 'response_format.json_schema'.",
                ));
            };
            if !valid_function_name(&js.name) {
                return Err(ConvertError::new(
                    "response_format.json_schema.name",
                    "Invalid 'response_format.json_schema.name': string does not match pattern. Expected a string that matches the pattern '^[a-zA-Z0-9_-]{1,64}$'.",
                ));
            }
            let schema = match &js.schema {
                None | Some(Value::Null) => None,
                Some(Value::Object(o)) => Some(struct_from_map(o.clone())),
                Some(_) => {
                    return Err(ConvertError::new(
                        "response_format.json_schema.schema",
                        "Invalid type for 'response_format.json_schema.schema': expected an object.",
                    ));
                }
            };
            pb::ResponseFormat {
                r#type: FormatType::JsonSchema as i32,
                schema_name: js.name.clone(),
                schema,
                strict: js.strict,
            }
        }
        // Vendor formats (grammars, regexes) travel verbatim in `extra`.
        _ => plain(FormatType::Unspecified),
    })
}

fn tool_calls_to_canonical(calls: &[wire::ToolCall]) -> Vec<pb::ToolCall> {
    calls
        .iter()
        .filter_map(|c| {
            let f = c.function.as_ref()?;
            Some(pb::ToolCall {
                id: c.id.clone(),
                name: f.name.clone(),
                arguments: f.arguments.clone(),
            })
        })
        .collect()
}

// --- worker side: canonical -> upstream request ----------------------------

/// The upstream request for `spec`, with OpenAI's current token-limit field.
/// See [`spec_to_request_with`].
pub fn spec_to_request(
    spec: &pb::ChatSpec,
    upstream_model: &str,
    stream: bool,
) -> wire::ChatCompletionRequest {
    spec_to_request_with(spec, upstream_model, stream, MaxTokensField::default())
}

/// The upstream request for `spec`. Streaming requests always ask for the
/// usage chunk (`stream_options.include_usage`), whatever the client wanted:
/// the gateway must learn usage. `spec.extra` passes through unchanged, except
/// keys naming a typed field: the verbatim copies the module doc describes
/// replace their canonical form, and gateway-owned fields (`model`,
/// `messages`, `stream`, ...) are never taken from `extra`.
pub fn spec_to_request_with(
    spec: &pb::ChatSpec,
    upstream_model: &str,
    stream: bool,
    max_tokens_field: MaxTokensField,
) -> wire::ChatCompletionRequest {
    // Extras that came in another vendor's format (Anthropic's `thinking`,
    // `top_k` on /v1/messages) mean nothing to an OpenAI-format server, and
    // strict ones (Mistral, Groq) refuse unknown fields.
    let mut extra = match spec.dialect() {
        pb::Dialect::Unspecified => spec
            .extra
            .as_ref()
            .map(map_from_struct_ref)
            .unwrap_or_default(),
        pb::Dialect::Anthropic => wire::Extra::new(),
    };
    // Reasoning asked for in another spelling (Anthropic's `thinking`, a
    // gRPC client's typed field) goes out as OpenAI's own control; the
    // router already dropped it for models that do not reason.
    if !extra.contains_key("reasoning_effort")
        && let Some(effort) = spec
            .reasoning
            .as_ref()
            .and_then(crate::reasoning::openai_effort)
    {
        extra.insert("reasoning_effort".into(), Value::String(effort));
    }
    let verbatim_tools = take_verbatim::<Vec<wire::Tool>>(&mut extra, "tools");
    let verbatim_choice = take_verbatim::<wire::ToolChoice>(&mut extra, "tool_choice");
    let verbatim_format = take_verbatim::<wire::ResponseFormat>(&mut extra, "response_format");
    let verbatim_options = take_verbatim::<wire::StreamOptions>(&mut extra, "stream_options");
    drop_typed_keys(&mut extra, wire::ChatCompletionRequest::TYPED_FIELDS);

    let tools = verbatim_tools.or_else(|| {
        (!spec.tools.is_empty()).then(|| spec.tools.iter().map(tool_to_wire).collect())
    });
    let (max_tokens, max_completion_tokens) = match max_tokens_field {
        MaxTokensField::MaxTokens => (spec.max_tokens, None),
        MaxTokensField::MaxCompletionTokens => (None, spec.max_tokens),
    };
    wire::ChatCompletionRequest {
        model: upstream_model.to_owned(),
        messages: spec
            .messages
            .iter()
            .map(|m| {
                let mut w = message_to_wire(m);
                // As with the request's extras: another vendor's fields
                // (an Anthropic tool_result's `cache_control`).
                if spec.dialect() == pb::Dialect::Anthropic {
                    w.extra.clear();
                }
                w
            })
            .collect(),
        temperature: spec.temperature,
        top_p: spec.top_p,
        max_tokens,
        max_completion_tokens,
        stop: (!spec.stop.is_empty()).then(|| wire::Stop::Many(spec.stop.clone())),
        presence_penalty: spec.presence_penalty,
        frequency_penalty: spec.frequency_penalty,
        seed: spec.seed,
        user: (!spec.user.is_empty()).then(|| spec.user.clone()),
        tools,
        tool_choice: verbatim_choice
            .or_else(|| spec.tool_choice.as_ref().and_then(tool_choice_to_wire)),
        parallel_tool_calls: spec.parallel_tool_calls,
        response_format: verbatim_format.or_else(|| {
            spec.response_format
                .as_ref()
                .and_then(response_format_to_wire)
        }),
        n: (spec.n > 0).then_some(spec.n),
        stream: stream.then_some(true),
        stream_options: stream.then(|| wire::StreamOptions {
            include_usage: Some(true),
            ..verbatim_options.unwrap_or_default()
        }),
        extra,
    }
}

/// Removes `key` from `extra` and decodes it; a copy that does not decode
/// (a hand-made `extra` from a gRPC client) yields to the canonical field.
fn take_verbatim<T: serde::de::DeserializeOwned>(extra: &mut Extra, key: &str) -> Option<T> {
    serde_json::from_value(extra.remove(key)?).ok()
}

fn drop_typed_keys(extra: &mut Extra, typed: &[&str]) {
    if typed.iter().any(|k| extra.contains_key(*k)) {
        // Serializing a typed field and the same key from `extra` would write
        // the key twice.
        extra.retain(|k, _| !typed.contains(&k.as_str()));
    }
}

fn message_to_wire(m: &pb::Message) -> wire::RequestMessage {
    let mut extra = m
        .extra
        .as_ref()
        .map(map_from_struct_ref)
        .unwrap_or_default();
    let verbatim_calls = take_verbatim::<Vec<wire::ToolCall>>(&mut extra, "tool_calls");
    drop_typed_keys(&mut extra, wire::RequestMessage::TYPED_FIELDS);
    let tool_calls = verbatim_calls
        .or_else(|| (!m.tool_calls.is_empty()).then(|| tool_calls_to_wire(&m.tool_calls)));
    wire::RequestMessage {
        role: role_to_wire(m.role())
            .unwrap_or(wire::role::USER)
            .to_owned(),
        content: content_to_wire(&m.content, m.content_is_parts),
        name: (!m.name.is_empty()).then(|| m.name.clone()),
        tool_calls,
        tool_call_id: (!m.tool_call_id.is_empty()).then(|| m.tool_call_id.clone()),
        extra,
    }
}

/// A string when the client sent a string (and the content is still one text
/// part), else the list of parts.
fn content_to_wire(parts: &[pb::ContentPart], is_parts: bool) -> Option<wire::MessageContent> {
    if !is_parts {
        match parts {
            [] => return None,
            [
                pb::ContentPart {
                    part: Some(Part::Text(s)),
                    ..
                },
            ] => return Some(wire::MessageContent::Text(s.clone())),
            _ => {}
        }
    }
    Some(wire::MessageContent::Parts(
        parts.iter().filter_map(part_to_wire).collect(),
    ))
}

fn part_to_wire(p: &pb::ContentPart) -> Option<wire::ContentPart> {
    Some(match p.part.as_ref()? {
        Part::Text(text) => wire::ContentPart::Text { text: text.clone() },
        Part::ImageUrl(img) => wire::ContentPart::ImageUrl {
            image_url: wire::ImageUrl {
                url: img.url.clone(),
                detail: (!img.detail.is_empty()).then(|| img.detail.clone()),
            },
        },
        Part::Other(s) => wire::ContentPart::Other(map_from_struct_ref(s)),
    })
}

fn tool_to_wire(t: &pb::Tool) -> wire::Tool {
    wire::Tool {
        kind: "function".into(),
        function: Some(wire::FunctionDefinition {
            name: t.name.clone(),
            description: (!t.description.is_empty()).then(|| t.description.clone()),
            parameters: t
                .parameters
                .as_ref()
                .map(|p| Value::Object(map_from_struct_ref(p))),
            strict: t.strict,
            extra: Extra::new(),
        }),
        extra: Extra::new(),
    }
}

fn tool_choice_to_wire(c: &pb::ToolChoice) -> Option<wire::ToolChoice> {
    let mode = |m: &str| Some(wire::ToolChoice::Mode(m.to_owned()));
    match c.mode() {
        Mode::Unspecified => None,
        Mode::None => mode(wire::tool_choice_mode::NONE),
        Mode::Auto => mode(wire::tool_choice_mode::AUTO),
        Mode::Required => mode(wire::tool_choice_mode::REQUIRED),
        Mode::Function => Some(wire::ToolChoice::Object(wire::ToolChoiceObject {
            kind: "function".into(),
            function: Some(wire::FunctionName {
                name: c.name.clone(),
                extra: Extra::new(),
            }),
            extra: Extra::new(),
        })),
    }
}

fn response_format_to_wire(f: &pb::ResponseFormat) -> Option<wire::ResponseFormat> {
    let plain = |k: &str| {
        Some(wire::ResponseFormat {
            kind: k.to_owned(),
            json_schema: None,
            extra: Extra::new(),
        })
    };
    match f.r#type() {
        FormatType::Unspecified => None,
        FormatType::Text => plain(wire::response_format_type::TEXT),
        FormatType::JsonObject => plain(wire::response_format_type::JSON_OBJECT),
        FormatType::JsonSchema => Some(wire::ResponseFormat {
            kind: wire::response_format_type::JSON_SCHEMA.into(),
            json_schema: Some(wire::JsonSchemaFormat {
                name: f.schema_name.clone(),
                description: None,
                schema: f
                    .schema
                    .as_ref()
                    .map(|s| Value::Object(map_from_struct_ref(s))),
                strict: f.strict,
                extra: Extra::new(),
            }),
            extra: Extra::new(),
        }),
    }
}

fn tool_calls_to_wire(calls: &[pb::ToolCall]) -> Vec<wire::ToolCall> {
    calls
        .iter()
        .map(|c| wire::ToolCall {
            id: c.id.clone(),
            kind: "function".into(),
            function: Some(wire::FunctionCall {
                name: c.name.clone(),
                arguments: c.arguments.clone(),
                extra: Extra::new(),
            }),
            extra: Extra::new(),
        })
        .collect()
}

/// The wire name of a role; `None` for `ROLE_UNSPECIFIED`.
pub fn role_to_wire(r: Role) -> Option<&'static str> {
    match r {
        Role::Unspecified => None,
        Role::System => Some(wire::role::SYSTEM),
        Role::User => Some(wire::role::USER),
        Role::Assistant => Some(wire::role::ASSISTANT),
        Role::Tool => Some(wire::role::TOOL),
        Role::Developer => Some(wire::role::DEVELOPER),
    }
}

fn role_from_wire(r: &str) -> Role {
    match r {
        wire::role::SYSTEM => Role::System,
        wire::role::DEVELOPER => Role::Developer,
        wire::role::USER => Role::User,
        wire::role::ASSISTANT => Role::Assistant,
        wire::role::TOOL => Role::Tool,
        _ => Role::Unspecified,
    }
}

// --- answers: upstream -> canonical -> client ------------------------------

/// OpenAI's finish reasons, plus the spellings OpenAI-compatible vendors use.
pub fn finish_reason_from_wire(r: &str) -> FinishReason {
    match r {
        "stop" | "eos" | "end_turn" | "stop_sequence" => FinishReason::Stop,
        "length" | "max_tokens" | "model_length" => FinishReason::Length,
        "tool_calls" | "function_call" | "tool_use" => FinishReason::ToolCalls,
        "content_filter" => FinishReason::ContentFilter,
        _ => FinishReason::Unspecified,
    }
}

/// `None` (JSON `null`) for `FINISH_REASON_UNSPECIFIED`.
pub fn finish_reason_to_wire(r: FinishReason) -> Option<&'static str> {
    match r {
        FinishReason::Unspecified => None,
        FinishReason::Stop => Some("stop"),
        FinishReason::Length => Some("length"),
        FinishReason::ToolCalls => Some("tool_calls"),
        FinishReason::ContentFilter => Some("content_filter"),
    }
}

fn finish_from_opt(r: Option<&str>) -> i32 {
    r.map_or(FinishReason::Unspecified, finish_reason_from_wire) as i32
}

fn finish_to_opt(r: FinishReason) -> Option<String> {
    finish_reason_to_wire(r).map(str::to_owned)
}

pub fn usage_from_wire(u: &wire::Usage) -> pb::Usage {
    let total = if u.total_tokens == 0 {
        u.prompt_tokens.saturating_add(u.completion_tokens)
    } else {
        u.total_tokens
    };
    pb::Usage {
        prompt_tokens: u.prompt_tokens,
        completion_tokens: u.completion_tokens,
        total_tokens: total,
        cached_prompt_tokens: u
            .prompt_tokens_details
            .as_ref()
            .and_then(|d| d.cached_tokens)
            .unwrap_or(0),
        reasoning_tokens: u
            .completion_tokens_details
            .as_ref()
            .and_then(|d| d.reasoning_tokens)
            .unwrap_or(0),
        ..pb::Usage::default()
    }
}

/// OpenAI's shape: the detail objects are always present.
pub fn usage_to_wire(u: &pb::Usage) -> wire::Usage {
    wire::Usage {
        prompt_tokens: u.prompt_tokens,
        completion_tokens: u.completion_tokens,
        total_tokens: u.total_tokens,
        prompt_tokens_details: Some(wire::PromptTokensDetails {
            cached_tokens: Some(u.cached_prompt_tokens),
            extra: Extra::new(),
        }),
        completion_tokens_details: Some(wire::CompletionTokensDetails {
            reasoning_tokens: Some(u.reasoning_tokens),
            extra: Extra::new(),
        }),
        extra: cost_fields(u),
    }
}

/// The gateway's cost of the request, as OpenRouter reports it: `cost` in
/// US dollars (the exact figure is in `x-switchyard-cost-usd` and the
/// ledger; a JSON number is a float), plus `cost_estimated` when the
/// counts were estimated.
fn cost_fields(u: &pb::Usage) -> Extra {
    let mut extra = Extra::new();
    if u.cost_known {
        #[allow(clippy::cast_precision_loss)]
        let usd = u.cost_picodollars as f64 / 1e12;
        extra.insert("cost".to_owned(), serde_json::Value::from(usd));
        if u.cost_estimated {
            extra.insert("cost_estimated".to_owned(), serde_json::Value::Bool(true));
        }
    }
    extra
}

/// An upstream's complete answer as the canonical result. Message fields the
/// canonical model does not name (`refusal`, `annotations`, `audio`,
/// `reasoning_content`) go to `Message.extra`. Choice `logprobs` have no
/// canonical place and are not carried.
pub fn response_to_result(resp: wire::ChatCompletionResponse) -> pb::ChatResult {
    pb::ChatResult {
        id: resp.id,
        model: resp.model,
        created: resp.created,
        choices: resp
            .choices
            .into_iter()
            .map(|c| pb::Choice {
                index: c.index,
                message: Some(response_message_to_canonical(c.message)),
                finish_reason: finish_from_opt(c.finish_reason.as_deref()),
            })
            .collect(),
        usage: resp.usage.as_ref().map(usage_from_wire),
        system_fingerprint: resp.system_fingerprint.unwrap_or_default(),
        native_response: None,
    }
}

fn response_message_to_canonical(m: wire::ResponseMessage) -> pb::Message {
    let wire::ResponseMessage {
        role,
        content,
        refusal,
        tool_calls,
        mut extra,
    } = m;
    if let Some(r) = refusal {
        extra.insert("refusal".into(), Value::String(r));
    }
    let tool_calls = match tool_calls {
        None => Vec::new(),
        Some(calls) => {
            let canonical = tool_calls_to_canonical(&calls);
            if tool_calls_to_wire(&canonical) != calls {
                extra.insert("tool_calls".into(), to_value(&calls));
            }
            canonical
        }
    };
    let role = match role_from_wire(&role) {
        Role::Unspecified => Role::Assistant,
        r => r,
    };
    pb::Message {
        role: role as i32,
        content: content.map(text_part).into_iter().collect(),
        tool_calls,
        extra: (!extra.is_empty()).then(|| struct_from_map(extra)),
        ..Default::default()
    }
}

/// The canonical result in OpenAI's response shape, for clients.
pub fn result_to_response(r: &pb::ChatResult) -> wire::ChatCompletionResponse {
    wire::ChatCompletionResponse {
        id: r.id.clone(),
        object: wire::OBJECT_CHAT_COMPLETION.into(),
        created: r.created,
        model: r.model.clone(),
        choices: r
            .choices
            .iter()
            .map(|c| wire::Choice {
                index: c.index,
                message: c
                    .message
                    .as_ref()
                    .map(response_message_to_wire)
                    .unwrap_or_default(),
                finish_reason: finish_to_opt(c.finish_reason()),
                logprobs: None,
                extra: Extra::new(),
            })
            .collect(),
        usage: r.usage.as_ref().map(usage_to_wire),
        system_fingerprint: (!r.system_fingerprint.is_empty())
            .then(|| r.system_fingerprint.clone()),
        extra: Extra::new(),
    }
}

fn response_message_to_wire(m: &pb::Message) -> wire::ResponseMessage {
    let mut extra = m
        .extra
        .as_ref()
        .map(map_from_struct_ref)
        .unwrap_or_default();
    let verbatim_calls = take_verbatim::<Vec<wire::ToolCall>>(&mut extra, "tool_calls");
    let refusal = match extra.remove("refusal") {
        Some(Value::String(s)) => Some(s),
        _ => None,
    };
    drop_typed_keys(&mut extra, &["role", "content", "refusal", "tool_calls"]);
    let texts: Vec<&str> = m
        .content
        .iter()
        .filter_map(|p| match &p.part {
            Some(Part::Text(t)) => Some(t.as_str()),
            _ => None,
        })
        .collect();
    wire::ResponseMessage {
        role: wire::role::ASSISTANT.into(),
        content: (!texts.is_empty()).then(|| texts.concat()),
        refusal,
        tool_calls: verbatim_calls
            .or_else(|| (!m.tool_calls.is_empty()).then(|| tool_calls_to_wire(&m.tool_calls))),
        extra,
    }
}

/// One upstream stream event as a canonical chunk. Usage is converted as
/// found; moving it to a final choice-less chunk is the stream adapter's job.
pub fn chunk_from_wire(chunk: wire::ChatCompletionChunk) -> pb::ChatChunk {
    pb::ChatChunk {
        id: chunk.id,
        model: chunk.model,
        created: chunk.created,
        choices: chunk
            .choices
            .into_iter()
            .map(|c| {
                let wire::Delta {
                    role,
                    content,
                    tool_calls,
                    reasoning_content,
                    extra,
                } = c.delta;
                // vLLM and OpenRouter spell it `reasoning`.
                let reasoning_content =
                    reasoning_content.or_else(|| match extra.get("reasoning") {
                        Some(Value::String(s)) => Some(s.clone()),
                        _ => None,
                    });
                pb::ChoiceDelta {
                    index: c.index,
                    role: role.as_deref().map_or(Role::Unspecified, role_from_wire) as i32,
                    content,
                    tool_calls: tool_calls
                        .unwrap_or_default()
                        .into_iter()
                        .map(|t| {
                            let f = t.function.unwrap_or_default();
                            pb::ToolCallDelta {
                                index: t.index,
                                id: t.id.unwrap_or_default(),
                                name: f.name.unwrap_or_default(),
                                arguments: f.arguments.unwrap_or_default(),
                            }
                        })
                        .collect(),
                    finish_reason: finish_from_opt(c.finish_reason.as_deref()),
                    reasoning_content,
                }
            })
            .collect(),
        usage: chunk.usage.as_ref().map(usage_from_wire),
        system_fingerprint: chunk.system_fingerprint.unwrap_or_default(),
        native_event: None,
    }
}

/// A canonical chunk in OpenAI's stream shape, for clients. A tool call's
/// first delta (the one with its id) carries `type` and the name, and
/// `arguments` is always a string, as OpenAI sends it: client SDKs
/// concatenate `arguments` without checking for absence.
pub fn chunk_to_wire(c: &pb::ChatChunk) -> wire::ChatCompletionChunk {
    wire::ChatCompletionChunk {
        id: c.id.clone(),
        object: wire::OBJECT_CHAT_COMPLETION_CHUNK.into(),
        created: c.created,
        model: c.model.clone(),
        choices: c
            .choices
            .iter()
            .map(|d| wire::ChunkChoice {
                index: d.index,
                delta: wire::Delta {
                    role: role_to_wire(d.role()).map(str::to_owned),
                    content: d.content.clone(),
                    tool_calls: (!d.tool_calls.is_empty()).then(|| {
                        d.tool_calls
                            .iter()
                            .map(|t| {
                                let first = !t.id.is_empty();
                                wire::ToolCallChunk {
                                    index: t.index,
                                    id: first.then(|| t.id.clone()),
                                    kind: first.then(|| "function".to_owned()),
                                    function: Some(wire::FunctionCallDelta {
                                        name: (!t.name.is_empty()).then(|| t.name.clone()),
                                        arguments: Some(t.arguments.clone()),
                                        extra: Extra::new(),
                                    }),
                                    extra: Extra::new(),
                                }
                            })
                            .collect()
                    }),
                    reasoning_content: d.reasoning_content.clone(),
                    extra: Extra::new(),
                },
                finish_reason: finish_to_opt(d.finish_reason()),
                logprobs: None,
                extra: Extra::new(),
            })
            .collect(),
        usage: c.usage.as_ref().map(usage_to_wire),
        system_fingerprint: (!c.system_fingerprint.is_empty())
            .then(|| c.system_fingerprint.clone()),
        extra: Extra::new(),
    }
}

/// A complete canonical result as the chunks a stream of it would carry: per
/// choice its role, content and tool calls, then its finish reason; then the
/// usage chunk. Used when an upstream answers a stream request with a
/// complete JSON body.
pub fn result_to_chunks(r: &pb::ChatResult) -> Vec<pb::ChatChunk> {
    let base = |choices: Vec<pb::ChoiceDelta>, usage: Option<pb::Usage>| pb::ChatChunk {
        id: r.id.clone(),
        model: r.model.clone(),
        created: r.created,
        choices,
        usage,
        system_fingerprint: r.system_fingerprint.clone(),
        native_event: None,
    };
    let mut out = Vec::with_capacity(r.choices.len() * 2 + 1);
    for c in &r.choices {
        let m = c.message.clone().unwrap_or_default();
        let text: String = m
            .content
            .iter()
            .filter_map(|p| match &p.part {
                Some(Part::Text(t)) => Some(t.as_str()),
                _ => None,
            })
            .collect();
        out.push(base(
            vec![pb::ChoiceDelta {
                index: c.index,
                role: Role::Assistant as i32,
                content: Some(text),
                tool_calls: m
                    .tool_calls
                    .iter()
                    .enumerate()
                    .map(|(i, t)| pb::ToolCallDelta {
                        index: u32::try_from(i).unwrap_or(u32::MAX),
                        id: t.id.clone(),
                        name: t.name.clone(),
                        arguments: t.arguments.clone(),
                    })
                    .collect(),
                ..Default::default()
            }],
            None,
        ));
        out.push(base(
            vec![pb::ChoiceDelta {
                index: c.index,
                finish_reason: c.finish_reason,
                ..Default::default()
            }],
            None,
        ));
    }
    if let Some(u) = r.usage {
        out.push(base(Vec::new(), Some(u)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> wire::ChatCompletionRequest {
        serde_json::from_value(v).unwrap()
    }

    fn spec(v: Value) -> (pb::ChatSpec, bool) {
        request_to_spec(parse(v)).unwrap()
    }

    fn param_of(v: Value) -> Option<String> {
        request_to_spec(parse(v)).unwrap_err().param
    }

    /// A request using most of what OpenAI accepts: tools of two kinds, image
    /// and audio parts, a text part with an untyped field, an assistant turn
    /// with a custom tool call, a structured output schema with a
    /// description, and fields the canonical model does not know.
    fn rich_request() -> Value {
        json!({
            "model": "chat-default",
            "messages": [
                {"role": "developer", "content": "Be terse."},
                {"role": "user", "name": "ann", "content": [
                    {"type": "text", "text": "What is in this image?"},
                    {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "high"}},
                    {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
                    {"type": "text", "text": "cached", "prompt_cache_breakpoint": {"type": "ephemeral"}}
                ]},
                {"role": "assistant", "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                    {"id": "call_2", "type": "custom", "custom": {"name": "sql", "input": "select 1"}}
                ], "refusal": null},
                {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
                {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "1"}]}
            ],
            "tools": [
                {"type": "function", "function": {
                    "name": "get_weather", "description": "Weather by city",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
                    "strict": true}},
                {"type": "custom", "custom": {"name": "sql", "format": {"type": "text"}}}
            ],
            "tool_choice": "auto",
            "parallel_tool_calls": false,
            "response_format": {"type": "json_schema", "json_schema": {
                "name": "weather", "description": "A forecast", "schema": {"type": "object"}, "strict": true}},
            "temperature": 0.2,
            "top_p": 0.9,
            "max_completion_tokens": 300,
            "stop": ["\n\n", "END"],
            "presence_penalty": 0.5,
            "frequency_penalty": -0.5,
            "seed": 42,
            "n": 2,
            "user": "user-1234",
            "stream": true,
            "stream_options": {"include_usage": true, "include_obfuscation": false},
            "logprobs": true,
            "top_logprobs": 2,
            "metadata": {"team": "a"},
            "reasoning_effort": "low",
            "x_vendor_knob": [1, 2, 3]
        })
    }

    #[test]
    fn a_client_request_reaches_an_openai_upstream_unchanged() {
        let original = rich_request();
        let (spec, stream) = spec(original.clone());
        assert!(stream);
        let upstream = spec_to_request(&spec, "gpt-4o-2024-08-06", true);
        let mut expected = original;
        expected["model"] = json!("gpt-4o-2024-08-06");
        assert_eq!(serde_json::to_value(&upstream).unwrap(), expected);
    }

    #[test]
    fn reasoning_effort_is_typed_and_kept_verbatim() {
        let (s, _) = spec(rich_request());
        assert_eq!(s.reasoning.as_ref().map(|r| r.effort.as_str()), Some("low"));
        let (s, _) = spec(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "reasoning_effort": "none"}),
        );
        assert!(s.reasoning.as_ref().is_some_and(|r| r.disabled));
        let upstream = serde_json::to_value(spec_to_request(&s, "gpt-5.1", false)).unwrap();
        assert_eq!(
            upstream["reasoning_effort"], "none",
            "the client's own value goes"
        );
    }

    #[test]
    fn thinking_from_another_dialect_becomes_reasoning_effort() {
        let mut s = pb::ChatSpec {
            messages: vec![pb::Message {
                role: Role::User as i32,
                content: vec![text_part("x".into())],
                ..Default::default()
            }],
            extra: Some(struct_from_map(
                json!({"thinking": {"type": "enabled", "budget_tokens": 31999}})
                    .as_object()
                    .unwrap()
                    .clone(),
            )),
            dialect: pb::Dialect::Anthropic as i32,
            reasoning: Some(pb::Reasoning {
                budget_tokens: 31999,
                ..Default::default()
            }),
            ..Default::default()
        };
        let upstream = serde_json::to_value(spec_to_request(&s, "gpt-5", false)).unwrap();
        assert_eq!(upstream["reasoning_effort"], "high");
        assert!(upstream.get("thinking").is_none());
        s.reasoning = Some(pb::Reasoning {
            disabled: true,
            ..Default::default()
        });
        let upstream = serde_json::to_value(spec_to_request(&s, "gpt-5", false)).unwrap();
        assert!(upstream.get("reasoning_effort").is_none());
    }

    #[test]
    fn extras_from_another_dialect_are_not_forwarded() {
        let (mut spec, _) = spec(rich_request());
        spec.dialect = pb::Dialect::Anthropic as i32;
        // Only the typed reasoning would come back out, as reasoning_effort.
        spec.reasoning = None;
        let upstream = serde_json::to_value(spec_to_request(&spec, "m", true)).unwrap();
        assert!(upstream.get("x_vendor_knob").is_none());
        assert!(upstream.get("reasoning_effort").is_none());
        // What the canonical model names still goes.
        assert_eq!(upstream["model"], "m");
        assert!(
            upstream["messages"]
                .as_array()
                .is_some_and(|m| m.len() == 5)
        );
    }

    #[test]
    fn the_canonical_spec_carries_what_it_can_name() {
        let (s, _) = spec(rich_request());
        assert_eq!(s.model, "chat-default");
        assert_eq!(s.messages.len(), 5);
        assert_eq!(s.messages[0].role(), Role::Developer);
        let user = &s.messages[1];
        assert_eq!(user.role(), Role::User);
        assert_eq!(user.name, "ann");
        assert!(user.content_is_parts);
        assert!(
            matches!(&user.content[0].part, Some(Part::Text(t)) if t == "What is in this image?")
        );
        assert!(
            matches!(&user.content[1].part, Some(Part::ImageUrl(i)) if i.url == "https://example.com/a.png" && i.detail == "high")
        );
        assert!(matches!(&user.content[2].part, Some(Part::Other(_))));
        assert!(matches!(&user.content[3].part, Some(Part::Other(_))));
        let assistant = &s.messages[2];
        assert_eq!(
            assistant.tool_calls.len(),
            1,
            "only the function call has a canonical form"
        );
        assert_eq!(assistant.tool_calls[0].name, "get_weather");
        assert!(assistant.content.is_empty());
        let extra = assistant.extra.as_ref().unwrap();
        assert!(extra.fields.contains_key("tool_calls") && extra.fields.contains_key("refusal"));
        assert_eq!(s.messages[3].tool_call_id, "call_1");
        assert!(!s.messages[3].content_is_parts);

        assert_eq!(s.tools.len(), 1);
        assert_eq!(s.tools[0].name, "get_weather");
        assert_eq!(s.tools[0].strict, Some(true));
        assert_eq!(s.tool_choice.as_ref().unwrap().mode(), Mode::Auto);
        let rf = s.response_format.as_ref().unwrap();
        assert_eq!(
            (rf.r#type(), rf.schema_name.as_str(), rf.strict),
            (FormatType::JsonSchema, "weather", Some(true))
        );
        assert_eq!(s.max_tokens, Some(300));
        assert_eq!(s.stop, vec!["\n\n", "END"]);
        assert_eq!((s.n, s.seed, s.user.as_str()), (2, Some(42), "user-1234"));
        assert!(s.include_usage);
        let extra = map_from_struct_ref(s.extra.as_ref().unwrap());
        let mut keys: Vec<&str> = extra.keys().map(String::as_str).collect();
        keys.sort_unstable();
        // The four verbatim copies, and the fields without a canonical place.
        assert_eq!(
            keys,
            [
                "logprobs",
                "metadata",
                "reasoning_effort",
                "response_format",
                "stream_options",
                "tools",
                "top_logprobs",
                "x_vendor_knob"
            ]
        );
    }

    #[test]
    fn plain_requests_need_no_verbatim_copies() {
        let v = json!({
            "model": "m",
            "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "hi"},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "ok"}],
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}],
            "tool_choice": {"type": "function", "function": {"name": "f"}},
            "response_format": {"type": "json_object"}
        });
        let (s, stream) = spec(v.clone());
        assert!(!stream);
        assert!(s.extra.is_none(), "{:?}", s.extra);
        assert!(s.messages.iter().all(|m| m.extra.is_none()));
        assert_eq!(s.tool_choice.as_ref().unwrap().mode(), Mode::Function);
        let mut expected = v;
        expected["model"] = json!("up");
        expected["messages"][2]
            .as_object_mut()
            .unwrap()
            .remove("content");
        assert_eq!(
            serde_json::to_value(spec_to_request(&s, "up", false)).unwrap(),
            expected
        );
    }

    #[test]
    fn max_completion_tokens_wins_and_goes_out_in_the_upstream_spelling() {
        let (s, _) = spec(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "max_tokens": 10, "max_completion_tokens": 20}),
        );
        assert_eq!(s.max_tokens, Some(20));
        let out = serde_json::to_value(spec_to_request_with(
            &s,
            "m",
            false,
            MaxTokensField::MaxTokens,
        ))
        .unwrap();
        assert_eq!(
            (out["max_tokens"].clone(), out.get("max_completion_tokens")),
            (json!(20), None)
        );
        let out = serde_json::to_value(spec_to_request(&s, "m", false)).unwrap();
        assert_eq!(
            (out.get("max_tokens"), out["max_completion_tokens"].clone()),
            (None, json!(20))
        );

        let (s, _) = spec(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 10}),
        );
        assert_eq!(s.max_tokens, Some(10));
    }

    #[test]
    fn max_tokens_field_by_host() {
        let f = |u: &str| MaxTokensField::for_base_url(&url::Url::parse(u).unwrap());
        assert_eq!(
            f("https://api.openai.com/v1"),
            MaxTokensField::MaxCompletionTokens
        );
        assert_eq!(
            f("https://me.openai.azure.com/openai/deployments/x"),
            MaxTokensField::MaxCompletionTokens
        );
        assert_eq!(f("https://api.mistral.ai/v1"), MaxTokensField::MaxTokens);
        assert_eq!(f("http://localhost:8000/v1"), MaxTokensField::MaxTokens);
    }

    #[test]
    fn streaming_upstream_requests_always_ask_for_usage() {
        let (s, stream) = spec(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": true}),
        );
        assert!(stream && !s.include_usage);
        let out = serde_json::to_value(spec_to_request(&s, "m", true)).unwrap();
        assert_eq!(out["stream"], true);
        assert_eq!(out["stream_options"], json!({"include_usage": true}));
        // A non-streamed upstream call never carries stream_options, even when
        // the client's did (OpenAI rejects it).
        let (s, _) = spec(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": true,
            "stream_options": {"include_usage": false, "include_obfuscation": false}}),
        );
        let out = serde_json::to_value(spec_to_request(&s, "m", false)).unwrap();
        assert!(out.get("stream_options").is_none() && out.get("stream").is_none());
        let out = serde_json::to_value(spec_to_request(&s, "m", true)).unwrap();
        assert_eq!(
            out["stream_options"],
            json!({"include_usage": true, "include_obfuscation": false})
        );
    }

    #[test]
    fn validation_names_the_field() {
        let user = json!([{"role": "user", "content": "x"}]);
        let with = |k: &str, v: Value| {
            let mut r = json!({"model": "m", "messages": user.clone()});
            r[k] = v;
            r
        };
        let cases: Vec<(Value, &str)> = vec![
            (json!({"model": "", "messages": user.clone()}), "model"),
            (json!({"model": "m", "messages": []}), "messages"),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": "x"}, {"role": "robot", "content": "x"}]}),
                "messages[1].role",
            ),
            (
                json!({"model": "m", "messages": [{"role": "function", "name": "f", "content": "x"}]}),
                "messages[0].role",
            ),
            (
                json!({"model": "m", "messages": [{"role": "tool", "content": "x"}]}),
                "messages[0].tool_call_id",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user"}]}),
                "messages[0].content",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": []}]}),
                "messages[0].content",
            ),
            (with("temperature", json!(2.5)), "temperature"),
            (with("temperature", json!(-0.1)), "temperature"),
            (with("top_p", json!(1.5)), "top_p"),
            (with("presence_penalty", json!(-3)), "presence_penalty"),
            (with("frequency_penalty", json!(2.1)), "frequency_penalty"),
            (with("n", json!(0)), "n"),
            (with("max_tokens", json!(0)), "max_tokens"),
            (
                with("max_completion_tokens", json!(0)),
                "max_completion_tokens",
            ),
            (
                with("stream_options", json!({"include_usage": true})),
                "stream_options",
            ),
            (with("tool_choice", json!("sometimes")), "tool_choice"),
            (with("tool_choice", json!("required")), "tool_choice"),
            (
                with("tools", json!([{"type": "function"}])),
                "tools[0].function",
            ),
            (
                with(
                    "tools",
                    json!([{"type": "function", "function": {"name": "has space"}}]),
                ),
                "tools[0].function.name",
            ),
            (
                with(
                    "tools",
                    json!([{"type": "function", "function": {"name": "f", "parameters": "nope"}}]),
                ),
                "tools[0].function.parameters",
            ),
            (
                with("response_format", json!({"type": "json_schema"})),
                "response_format.json_schema",
            ),
            (
                with(
                    "response_format",
                    json!({"type": "json_schema", "json_schema": {"name": ""}}),
                ),
                "response_format.json_schema.name",
            ),
        ];
        for (req, param) in cases {
            assert_eq!(param_of(req.clone()).as_deref(), Some(param), "{req}");
        }
        let mut named = with(
            "tools",
            json!([{"type": "function", "function": {"name": "f"}}]),
        );
        named["tool_choice"] = json!({"type": "function", "function": {"name": "g"}});
        assert_eq!(param_of(named).as_deref(), Some("tool_choice"));
        // "none" needs no tools.
        assert!(request_to_spec(parse(with("tool_choice", json!("none")))).is_ok());
    }

    #[test]
    fn a_grpc_spec_goes_out_as_well_formed_json() {
        let spec = pb::ChatSpec {
            model: "openai/gpt-4o".into(),
            messages: vec![pb::Message {
                role: Role::User as i32,
                content: vec![
                    text_part("look".into()),
                    pb::ContentPart {
                        part: Some(Part::ImageUrl(pb::ImageUrl { url: "https://x/y.png".into(), detail: String::new() })),
                     extra: None, },
                ],
                // Content with an image cannot be a string whatever the flag says.
                content_is_parts: false,
                extra: Some(struct_from_map(json!({"role": "system", "x": 1}).as_object().unwrap().clone())),
                ..Default::default()
            }],
            extra: Some(struct_from_map(
                json!({"model": "sneaky", "stream": true, "messages": [], "tools": "not tools", "logit_bias": {"50256": -100}})
                    .as_object()
                    .unwrap()
                    .clone(),
            )),
            ..Default::default()
        };
        let out = serde_json::to_value(spec_to_request(&spec, "gpt-4o", false)).unwrap();
        assert_eq!(
            out,
            json!({
                "model": "gpt-4o",
                "messages": [{"role": "user", "x": 1, "content": [
                    {"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}],
                "logit_bias": {"50256": -100}
            })
        );
    }

    #[test]
    fn responses_convert_both_ways() {
        let upstream = json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1741570283, "model": "gpt-4o-2024-08-06",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": null, "refusal": null,
                    "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}],
                    "annotations": []},
                 "logprobs": null, "finish_reason": "tool_calls"},
                {"index": 1, "message": {"role": "assistant", "content": "I can't help with that.", "refusal": "policy"},
                 "logprobs": null, "finish_reason": "content_filter"}
            ],
            "usage": {"prompt_tokens": 82, "completion_tokens": 17, "total_tokens": 99,
                "prompt_tokens_details": {"cached_tokens": 64}, "completion_tokens_details": {"reasoning_tokens": 5}},
            "system_fingerprint": "fp_1"
        });
        let r = response_to_result(serde_json::from_value(upstream.clone()).unwrap());
        assert_eq!(r.choices[0].finish_reason(), FinishReason::ToolCalls);
        assert_eq!(
            r.choices[0].message.as_ref().unwrap().tool_calls[0].arguments,
            "{\"city\":\"Paris\"}"
        );
        assert_eq!(r.choices[1].finish_reason(), FinishReason::ContentFilter);
        let u = r.usage.unwrap();
        assert_eq!(
            (u.cached_prompt_tokens, u.reasoning_tokens, u.total_tokens),
            (64, 5, 99)
        );

        let mut expected = upstream;
        // OpenAI's full usage shape is always written.
        expected["usage"]["prompt_tokens_details"] = json!({"cached_tokens": 64});
        expected["usage"]["completion_tokens_details"] = json!({"reasoning_tokens": 5});
        assert_eq!(
            serde_json::to_value(result_to_response(&r)).unwrap(),
            expected
        );
    }

    #[test]
    fn custom_tool_calls_in_answers_survive() {
        let calls = json!([{"id": "call_9", "type": "custom", "custom": {"name": "sql", "input": "select 1"}}]);
        let resp: wire::ChatCompletionResponse = serde_json::from_value(json!({
            "id": "x", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": null, "tool_calls": calls}, "finish_reason": "tool_calls"}]
        }))
        .unwrap();
        let r = response_to_result(resp);
        assert!(r.choices[0].message.as_ref().unwrap().tool_calls.is_empty());
        let back = serde_json::to_value(result_to_response(&r)).unwrap();
        assert_eq!(back["choices"][0]["message"]["tool_calls"], calls);
    }

    #[test]
    fn chunks_convert_both_ways() {
        let samples = [
            json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m", "system_fingerprint": "fp",
                "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}]}),
            json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                "choices": [{"index": 0, "delta": {"content": "Hi", "reasoning_content": "thinking"}, "logprobs": null, "finish_reason": null}]}),
            json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                    "function": {"name": "f", "arguments": ""}}]}, "logprobs": null, "finish_reason": null}]}),
            json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{\"a\":"}}]},
                    "logprobs": null, "finish_reason": null}]}),
            json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                "choices": [{"index": 0, "delta": {}, "logprobs": null, "finish_reason": "length"}]}),
            json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [],
                "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11,
                    "prompt_tokens_details": {"cached_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 0}}}),
        ];
        for v in samples {
            let c = chunk_from_wire(serde_json::from_value(v.clone()).unwrap());
            assert_eq!(serde_json::to_value(chunk_to_wire(&c)).unwrap(), v);
        }
        // vLLM's spelling of reasoning.
        let c = chunk_from_wire(
            serde_json::from_value(
                json!({"choices": [{"index": 0, "delta": {"reasoning": "hmm"}}]}),
            )
            .unwrap(),
        );
        assert_eq!(c.choices[0].reasoning_content.as_deref(), Some("hmm"));
    }

    #[test]
    fn finish_reasons() {
        for (wire, canonical) in [
            ("stop", FinishReason::Stop),
            ("length", FinishReason::Length),
            ("tool_calls", FinishReason::ToolCalls),
            ("content_filter", FinishReason::ContentFilter),
        ] {
            assert_eq!(finish_reason_from_wire(wire), canonical);
            assert_eq!(finish_reason_to_wire(canonical), Some(wire));
        }
        assert_eq!(
            finish_reason_from_wire("function_call"),
            FinishReason::ToolCalls
        );
        assert_eq!(
            finish_reason_from_wire("model_length"),
            FinishReason::Length
        );
        assert_eq!(finish_reason_from_wire("abort"), FinishReason::Unspecified);
        assert_eq!(finish_reason_to_wire(FinishReason::Unspecified), None);
    }

    #[test]
    fn a_complete_result_as_chunks() {
        let r = pb::ChatResult {
            id: "x".into(),
            choices: vec![pb::Choice {
                index: 0,
                message: Some(pb::Message {
                    role: Role::Assistant as i32,
                    content: vec![text_part("hi".into())],
                    ..Default::default()
                }),
                finish_reason: FinishReason::Stop as i32,
            }],
            usage: Some(pb::Usage {
                prompt_tokens: 1,
                completion_tokens: 1,
                total_tokens: 2,
                ..Default::default()
            }),
            ..Default::default()
        };
        let chunks = result_to_chunks(&r);
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks[0].choices[0].content.as_deref(), Some("hi"));
        assert_eq!(chunks[1].choices[0].finish_reason(), FinishReason::Stop);
        assert_eq!(chunks[2].usage, r.usage);
    }
}
