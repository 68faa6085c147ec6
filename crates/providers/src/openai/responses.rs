//! The OpenAI Responses API as a front end (`POST /v1/responses`): the
//! request translated to the canonical spec (so every provider behind the
//! router serves it, as chat), the answer translated back into a
//! `response` object, and a canonical stream into Responses' named events
//! (`response.created` ... `response.completed`).
//!
//! Stateless here: `previous_response_id` is refused with a 400 saying so
//! by [`request_to_spec`]; a router that keeps responses loads the earlier
//! conversation itself and translates with [`continue_from`]. Built-in
//! tools (`web_search`, `file_search`, ...) are refused by name: only
//! function tools are translated.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use switchyard_proto::gateway::v1::{self as pb, FinishReason, Role, content_part, tool_choice};
use switchyard_proto::json::struct_from_map;

use crate::openai::wire::Extra;

/// A request field the translation could not take, named as the client
/// wrote it (`input[2].content[0].type`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ResponsesError {
    pub message: String,
    pub param: Option<String>,
}

impl ResponsesError {
    fn new(param: impl Into<String>, message: impl Into<String>) -> Self {
        ResponsesError {
            message: message.into(),
            param: Some(param.into()),
        }
    }
}

/// `POST /v1/responses` body. Fields the translation does not type are
/// kept in `extra` and passed through to OpenAI-format targets.
#[derive(Debug, Clone, Deserialize)]
pub struct ResponsesRequest {
    pub model: String,
    #[serde(default)]
    pub input: Option<Input>,
    #[serde(default)]
    pub instructions: Option<String>,
    #[serde(default)]
    pub tools: Vec<Value>,
    #[serde(default)]
    pub tool_choice: Option<Value>,
    #[serde(default)]
    pub text: Option<TextConfig>,
    #[serde(default)]
    pub reasoning: Option<ReasoningConfig>,
    #[serde(default)]
    pub max_output_tokens: Option<u32>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub parallel_tool_calls: Option<bool>,
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
    #[serde(default)]
    pub store: Option<bool>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub previous_response_id: Option<String>,
    /// `include`, `truncation`, `service_tier`, ...: kept for OpenAI-format
    /// targets.
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Input {
    Text(String),
    Items(Vec<Value>),
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct TextConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<TextFormat>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TextFormat {
    Text,
    JsonObject,
    JsonSchema {
        #[serde(default)]
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        schema: Option<Map<String, Value>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        strict: Option<bool>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<String>,
    },
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct ReasoningConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effort: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// The spec, whether to stream, and what to echo back in the `response`
/// object.
pub struct Translated {
    pub spec: pb::ChatSpec,
    pub stream: bool,
    pub echo: Echo,
}

/// Request settings the `response` object repeats.
#[derive(Debug, Clone, Default)]
pub struct Echo {
    pub model: String,
    pub instructions: Option<String>,
    pub tools: Vec<Value>,
    pub tool_choice: Value,
    pub text: Value,
    pub reasoning: Value,
    pub max_output_tokens: Option<u32>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub parallel_tool_calls: bool,
    pub metadata: Map<String, Value>,
    pub store: bool,
    pub user: Option<String>,
    /// The stored response this one continues.
    pub previous_response_id: Option<String>,
    /// The request's tool namespaces: a call to `<namespace>__<name>` goes
    /// back as `name` in `namespace`.
    pub namespaces: Vec<String>,
}

pub fn request_to_spec(req: ResponsesRequest) -> Result<Translated, ResponsesError> {
    if req.previous_response_id.is_some() {
        return Err(ResponsesError::new(
            "previous_response_id",
            "this gateway keeps no responses (stateless; `responses.store` is off in its \
             config): send the whole conversation in `input` instead of `previous_response_id`",
        ));
    }
    if req.model.trim().is_empty() {
        return Err(ResponsesError::new(
            "model",
            "you must provide a model parameter",
        ));
    }
    let mut messages = Vec::new();
    if let Some(text) = req.instructions.as_deref().filter(|t| !t.is_empty()) {
        messages.push(text_message(Role::System, text));
    }
    match &req.input {
        None => {}
        Some(Input::Text(t)) => messages.push(text_message(Role::User, t)),
        Some(Input::Items(items)) => {
            for (i, item) in items.iter().enumerate() {
                input_item(item, &format!("input[{i}]"), &mut messages)?;
            }
        }
    }
    if messages.is_empty() {
        return Err(ResponsesError::new("input", "`input` must not be empty"));
    }
    let mut tools = Vec::with_capacity(req.tools.len());
    let mut namespaces = Vec::new();
    for (i, t) in req.tools.iter().enumerate() {
        if let Some(ns) = push_tools(t, i, &mut tools)? {
            namespaces.push(ns);
        }
    }
    let tool_choice = req
        .tool_choice
        .as_ref()
        .map(tool_choice_to_pb)
        .transpose()?;
    let response_format = match req.text.as_ref().and_then(|t| t.format.as_ref()) {
        None | Some(TextFormat::Text) => None,
        Some(TextFormat::JsonObject) => Some(pb::ResponseFormat {
            r#type: pb::response_format::Type::JsonObject as i32,
            ..Default::default()
        }),
        Some(TextFormat::JsonSchema {
            name,
            schema,
            strict,
            ..
        }) => Some(pb::ResponseFormat {
            r#type: pb::response_format::Type::JsonSchema as i32,
            schema_name: name.clone(),
            schema: schema.clone().map(struct_from_map),
            strict: *strict,
        }),
    };
    let mut extra = req.extra.clone();
    // Chat's spelling of the same controls: OpenAI-format targets take it
    // as it is, other wire formats map it like chat's.
    let reasoning = req
        .reasoning
        .as_ref()
        .and_then(|r| r.effort.as_deref())
        .map(crate::reasoning::from_effort);
    if let Some(effort) = req.reasoning.as_ref().and_then(|r| r.effort.clone()) {
        extra.insert("reasoning_effort".into(), Value::String(effort));
    }
    if let Some(m) = &req.metadata {
        extra.insert("metadata".into(), Value::Object(m.clone()));
    }
    let stream = req.stream.unwrap_or(false);
    let spec = pb::ChatSpec {
        model: req.model.clone(),
        messages,
        temperature: req.temperature,
        top_p: req.top_p,
        max_tokens: req.max_output_tokens,
        user: req.user.clone().unwrap_or_default(),
        tools,
        tool_choice,
        parallel_tool_calls: req.parallel_tool_calls,
        response_format,
        include_usage: stream,
        extra: (!extra.is_empty()).then(|| struct_from_map(extra)),
        reasoning,
        ..Default::default()
    };
    let echo = Echo {
        model: req.model,
        instructions: req.instructions,
        tool_choice: req.tool_choice.unwrap_or_else(|| json!("auto")),
        tools: req.tools,
        text: req
            .text
            .map(|t| serde_json::to_value(t).unwrap_or(Value::Null))
            .unwrap_or_else(|| json!({"format": {"type": "text"}})),
        reasoning: req
            .reasoning
            .map(|r| serde_json::to_value(r).unwrap_or(Value::Null))
            .unwrap_or_else(|| json!({"effort": null, "summary": null})),
        max_output_tokens: req.max_output_tokens,
        temperature: req.temperature,
        top_p: req.top_p,
        parallel_tool_calls: req.parallel_tool_calls.unwrap_or(true),
        metadata: req.metadata.unwrap_or_default(),
        store: req.store.unwrap_or(false),
        user: req.user,
        previous_response_id: None,
        namespaces,
    };
    Ok(Translated { spec, stream, echo })
}

/// A request continuing a stored conversation (`previous_response_id`):
/// `earlier` is that conversation's items (each turn's input and output, as
/// [`input_items`] and the `response` objects' `output` have them), put
/// after the system message of this request's `instructions` (those are
/// not inherited) and before this request's `input`.
pub fn continue_from(
    mut req: ResponsesRequest,
    earlier: &[Value],
) -> Result<Translated, ResponsesError> {
    let previous = req.previous_response_id.take();
    let mut before = Vec::new();
    for item in earlier {
        // Stored items were translated once already; one failing now is a
        // record this build cannot read, named by the id that loaded it.
        input_item(item, "previous_response_id", &mut before)?;
    }
    let system = usize::from(req.instructions.as_deref().is_some_and(|t| !t.is_empty()));
    let mut t = request_to_spec(req)?;
    let at = system.min(t.spec.messages.len());
    t.spec.messages.splice(at..at, before);
    t.echo.previous_response_id = previous;
    Ok(t)
}

/// A request's `input` as a list of items: a string is one user message.
/// What a stored response keeps of the request (`instructions` apart).
pub fn input_items(input: Option<&Input>) -> Vec<Value> {
    match input {
        None => Vec::new(),
        Some(Input::Text(t)) => vec![json!({"type": "message", "role": "user", "content": t})],
        Some(Input::Items(items)) => items.clone(),
    }
}

fn text_message(role: Role, text: &str) -> pb::Message {
    pb::Message {
        role: role as i32,
        content: vec![pb::ContentPart {
            part: Some(content_part::Part::Text(text.to_owned())),
            extra: None,
        }],
        ..Default::default()
    }
}

fn str_field<'v>(item: &'v Value, key: &str, at: &str) -> Result<&'v str, ResponsesError> {
    item.get(key).and_then(Value::as_str).ok_or_else(|| {
        ResponsesError::new(format!("{at}.{key}"), format!("`{key}` must be a string"))
    })
}

/// One `input` item onto the conversation: messages, function calls (an
/// assistant message with a tool call, merged into the one before when
/// that is the assistant's too) and their outputs (tool messages).
fn input_item(item: &Value, at: &str, out: &mut Vec<pb::Message>) -> Result<(), ResponsesError> {
    let kind = match item.get("type") {
        None => "message",
        Some(Value::String(k)) => k.as_str(),
        Some(_) => {
            return Err(ResponsesError::new(
                format!("{at}.type"),
                "`type` must be a string",
            ));
        }
    };
    match kind {
        "message" => {
            let role = match str_field(item, "role", at)? {
                "user" => Role::User,
                "assistant" => Role::Assistant,
                "system" => Role::System,
                "developer" => Role::Developer,
                other => {
                    return Err(ResponsesError::new(
                        format!("{at}.role"),
                        format!("unknown role `{other}` (user, assistant, system or developer)"),
                    ));
                }
            };
            let content = match item.get("content") {
                Some(Value::String(t)) => vec![pb::ContentPart {
                    part: Some(content_part::Part::Text(t.clone())),
                    extra: None,
                }],
                Some(Value::Array(parts)) => parts
                    .iter()
                    .enumerate()
                    .map(|(j, p)| content(p, &format!("{at}.content[{j}]")))
                    .collect::<Result<_, _>>()?,
                _ => {
                    return Err(ResponsesError::new(
                        format!("{at}.content"),
                        "`content` must be a string or a list of content parts",
                    ));
                }
            };
            out.push(pb::Message {
                role: role as i32,
                content_is_parts: matches!(item.get("content"), Some(Value::Array(_))),
                content,
                ..Default::default()
            });
        }
        "function_call" => {
            let name = str_field(item, "name", at)?;
            let call = pb::ToolCall {
                id: str_field(item, "call_id", at)?.to_owned(),
                name: match item.get("namespace").and_then(Value::as_str) {
                    Some(ns) => namespaced(ns, name),
                    None => name.to_owned(),
                },
                arguments: str_field(item, "arguments", at)?.to_owned(),
            };
            match out.last_mut() {
                // Parallel calls arrive as consecutive items: one assistant
                // turn, as chat has it.
                Some(m) if m.role == Role::Assistant as i32 && m.tool_call_id.is_empty() => {
                    m.tool_calls.push(call)
                }
                _ => out.push(pb::Message {
                    role: Role::Assistant as i32,
                    tool_calls: vec![call],
                    ..Default::default()
                }),
            }
        }
        "function_call_output" => {
            let output = match item.get("output") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Array(parts)) => parts
                    .iter()
                    .filter_map(|p| p.get("text").and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join(""),
                _ => {
                    return Err(ResponsesError::new(
                        format!("{at}.output"),
                        "`output` must be a string",
                    ));
                }
            };
            out.push(pb::Message {
                role: Role::Tool as i32,
                tool_call_id: str_field(item, "call_id", at)?.to_owned(),
                content: vec![pb::ContentPart {
                    part: Some(content_part::Part::Text(output)),
                    extra: None,
                }],
                ..Default::default()
            });
        }
        // A reasoning item a client sends back is the provider's own
        // record of its thinking; no target behind a translation can use
        // it.
        "reasoning" => {}
        other => {
            return Err(ResponsesError::new(
                format!("{at}.type"),
                format!(
                    "input items of type `{other}` are not supported (message, function_call, \
                     function_call_output)"
                ),
            ));
        }
    }
    Ok(())
}

fn content(part: &Value, at: &str) -> Result<pb::ContentPart, ResponsesError> {
    let kind = part.get("type").and_then(Value::as_str).unwrap_or("");
    let p = match kind {
        "input_text" | "output_text" | "text" => {
            content_part::Part::Text(str_field(part, "text", at)?.to_owned())
        }
        "input_image" => {
            let url = part
                .get("image_url")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    ResponsesError::new(
                        format!("{at}.image_url"),
                        "`image_url` must be a URL or a data URL (`file_id` needs OpenAI's file store)",
                    )
                })?;
            content_part::Part::ImageUrl(pb::ImageUrl {
                url: url.to_owned(),
                detail: part
                    .get("detail")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            })
        }
        other => {
            return Err(ResponsesError::new(
                format!("{at}.type"),
                format!(
                    "content parts of type `{other}` are not supported (input_text, input_image)"
                ),
            ));
        }
    };
    Ok(pb::ContentPart {
        part: Some(p),
        extra: None,
    })
}

/// Between a namespace and a tool name in the flat name chat-format
/// targets see: the characters every provider allows in a tool name are
/// letters, digits, `_` and `-`.
pub const NAMESPACE_SEPARATOR: &str = "__";

fn namespaced(namespace: &str, name: &str) -> String {
    format!("{namespace}{NAMESPACE_SEPARATOR}{name}")
}

/// A called tool's name as the client declared it: `(namespace, name)`
/// when the flat name starts with one of the request's namespaces.
fn split_namespace<'n>(name: &'n str, namespaces: &'n [String]) -> (Option<&'n str>, &'n str) {
    namespaces
        .iter()
        .find_map(|ns| {
            let rest = name
                .strip_prefix(ns.as_str())?
                .strip_prefix(NAMESPACE_SEPARATOR)?;
            Some((Some(ns.as_str()), rest))
        })
        .unwrap_or((None, name))
}

fn function_tool(t: &Value, name: String, context: &str) -> pb::Tool {
    let description = t
        .get("description")
        .and_then(Value::as_str)
        .unwrap_or_default();
    pb::Tool {
        name,
        description: match (context, description) {
            ("", d) => d.to_owned(),
            (c, "") => c.to_owned(),
            (c, d) => format!("{c}\n\n{d}"),
        },
        parameters: t
            .get("parameters")
            .and_then(Value::as_object)
            .cloned()
            .map(struct_from_map),
        strict: t.get("strict").and_then(Value::as_bool),
        extra: None,
    }
}

/// Adds tool `i` to `out`: a function tool as it is, a namespace as its
/// function tools under flat names (chat-format targets have no
/// namespaces), returning the namespace's name.
fn push_tools(
    t: &Value,
    i: usize,
    out: &mut Vec<pb::Tool>,
) -> Result<Option<String>, ResponsesError> {
    let at = format!("tools[{i}]");
    match t.get("type").and_then(Value::as_str) {
        Some("function") => {
            let name = str_field(t, "name", &at)?.to_owned();
            out.push(function_tool(t, name, ""));
            Ok(None)
        }
        Some("namespace") => {
            let ns = str_field(t, "name", &at)?;
            let context = t
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let inner = t.get("tools").and_then(Value::as_array).ok_or_else(|| {
                ResponsesError::new(format!("{at}.tools"), "a namespace needs a `tools` list")
            })?;
            for (j, f) in inner.iter().enumerate() {
                let at = format!("{at}.tools[{j}]");
                match f.get("type").and_then(Value::as_str) {
                    Some("function") => {
                        let name = namespaced(ns, str_field(f, "name", &at)?);
                        out.push(function_tool(f, name, context));
                    }
                    other => {
                        return Err(ResponsesError::new(
                            format!("{at}.type"),
                            format!(
                                "`{}` tools are not supported inside a namespace (function tools only)",
                                other.unwrap_or("(none)")
                            ),
                        ));
                    }
                }
            }
            Ok(Some(ns.to_owned()))
        }
        Some(other) => Err(ResponsesError::new(
            format!("{at}.type"),
            format!(
                "`{other}` is a built-in tool of OpenAI's own service; the targets here take \
                 function tools (and namespaces of them) only"
            ),
        )),
        None => Err(ResponsesError::new(
            format!("{at}.type"),
            "a tool needs a `type`",
        )),
    }
}

fn tool_choice_to_pb(v: &Value) -> Result<pb::ToolChoice, ResponsesError> {
    use tool_choice::Mode;
    let mode = |m: Mode| pb::ToolChoice {
        mode: m as i32,
        name: String::new(),
    };
    match v {
        Value::String(s) => match s.as_str() {
            "none" => Ok(mode(Mode::None)),
            "auto" => Ok(mode(Mode::Auto)),
            "required" => Ok(mode(Mode::Required)),
            other => Err(ResponsesError::new(
                "tool_choice",
                format!("unknown tool_choice `{other}` (none, auto, required)"),
            )),
        },
        Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("function") => {
            Ok(pb::ToolChoice {
                mode: Mode::Function as i32,
                name: o
                    .get("name")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        ResponsesError::new("tool_choice.name", "`name` must be a string")
                    })?
                    .to_owned(),
            })
        }
        _ => Err(ResponsesError::new(
            "tool_choice",
            "tool_choice must be none, auto, required or {\"type\": \"function\", \"name\": ...}",
        )),
    }
}

/// The `usage` object of a response.
pub fn usage_json(u: Option<&pb::Usage>) -> Value {
    let u = u.cloned().unwrap_or_default();
    let mut v = json!({
        "input_tokens": u.prompt_tokens,
        "input_tokens_details": {"cached_tokens": u.cached_prompt_tokens},
        "output_tokens": u.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
        "total_tokens": u.prompt_tokens + u.completion_tokens,
    });
    if u.cost_known {
        // As in chat's usage: OpenRouter's `cost` extension, USD.
        v["cost"] = json!(u.cost_picodollars as f64 / 1e12);
        if u.cost_estimated {
            v["cost_estimated"] = json!(true);
        }
    }
    v
}

/// The `response` object around `output`.
fn envelope(
    id: &str,
    created_at: i64,
    status: &str,
    echo: &Echo,
    output: Vec<Value>,
    usage: Option<Value>,
    incomplete: Option<&str>,
) -> Value {
    json!({
        "id": id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "error": null,
        "incomplete_details": incomplete.map(|r| json!({"reason": r})),
        "instructions": echo.instructions,
        "max_output_tokens": echo.max_output_tokens,
        "model": echo.model,
        "output": output,
        "parallel_tool_calls": echo.parallel_tool_calls,
        "previous_response_id": echo.previous_response_id,
        "reasoning": echo.reasoning,
        "store": echo.store,
        "temperature": echo.temperature,
        "text": echo.text,
        "tool_choice": echo.tool_choice,
        "tools": echo.tools,
        "top_p": echo.top_p,
        "truncation": "disabled",
        "usage": usage,
        "user": echo.user,
        "metadata": echo.metadata,
    })
}

fn message_item(id: &str, text: &str, status: &str) -> Value {
    json!({
        "type": "message",
        "id": id,
        "status": status,
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    })
}

fn call_item(id: &str, call: &pb::ToolCall, status: &str, namespaces: &[String]) -> Value {
    let (namespace, name) = split_namespace(&call.name, namespaces);
    let mut item = json!({
        "type": "function_call",
        "id": id,
        "call_id": call.id,
        "name": name,
        "arguments": call.arguments,
        "status": status,
    });
    if let Some(ns) = namespace {
        item["namespace"] = json!(ns);
    }
    item
}

/// `status` and `incomplete_details.reason` for a finish reason.
fn status_of(finish: FinishReason) -> (&'static str, Option<&'static str>) {
    match finish {
        FinishReason::Length => ("incomplete", Some("max_output_tokens")),
        FinishReason::ContentFilter => ("incomplete", Some("content_filter")),
        FinishReason::Stop | FinishReason::ToolCalls | FinishReason::Unspecified => {
            ("completed", None)
        }
    }
}

/// The `response` object for a complete answer (its first choice).
pub fn result_to_response(r: &pb::ChatResult, echo: &Echo) -> Value {
    let id = response_id(&r.id);
    let choice = r.choices.first();
    let message = choice.and_then(|c| c.message.as_ref());
    let mut output = Vec::new();
    if let Some(m) = message {
        let text: String = m
            .content
            .iter()
            .filter_map(|p| match &p.part {
                Some(content_part::Part::Text(t)) => Some(t.as_str()),
                _ => None,
            })
            .collect();
        if !text.is_empty() || m.tool_calls.is_empty() {
            output.push(message_item(&format!("msg_{id}"), &text, "completed"));
        }
        for (i, call) in m.tool_calls.iter().enumerate() {
            output.push(call_item(
                &format!("fc_{id}_{i}"),
                call,
                "completed",
                &echo.namespaces,
            ));
        }
    }
    let finish = choice
        .and_then(|c| FinishReason::try_from(c.finish_reason).ok())
        .unwrap_or(FinishReason::Stop);
    let (status, incomplete) = status_of(finish);
    envelope(
        &id,
        r.created,
        status,
        echo,
        output,
        Some(usage_json(r.usage.as_ref())),
        incomplete,
    )
}

/// `resp_<upstream id>`, so an id seen in the gateway's logs is findable.
fn response_id(upstream: &str) -> String {
    let clean: String = upstream
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    if clean.is_empty() {
        format!("resp_{}", uuid_like())
    } else {
        format!("resp_{clean}")
    }
}

/// Unique within a process and across restarts: the clock's nanoseconds
/// and a counter.
fn uuid_like() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{nanos:x}{n:x}")
}

/// One SSE event: its `type` is also its `event:` line, as OpenAI sends
/// them.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamEvent(pub Value);

impl StreamEvent {
    pub fn kind(&self) -> &str {
        self.0.get("type").and_then(Value::as_str).unwrap_or("")
    }
}

pub fn sse_frame(ev: &StreamEvent) -> Vec<u8> {
    let data = serde_json::to_string(&ev.0).unwrap_or_default();
    format!("event: {}\ndata: {data}\n\n", ev.kind()).into_bytes()
}

/// An `error` event, for a failure after the stream began.
pub fn error_event(code: Option<&str>, message: &str) -> StreamEvent {
    StreamEvent(json!({"type": "error", "code": code, "message": message, "param": null}))
}

/// An output item being streamed.
enum Open {
    Text { id: String, text: String },
    Call { id: String, call: pb::ToolCall },
}

/// Canonical chunks in, Responses events out: `response.created` and
/// `response.in_progress` first, an output item per text answer and per
/// tool call (added, deltas, done), `response.completed` (or
/// `response.incomplete`) with usage last. Items are closed in order:
/// starting a new one closes the one before.
pub struct StreamEncoder {
    id: String,
    created_at: i64,
    echo: Echo,
    seq: u64,
    started: bool,
    open: Option<(usize, Open)>,
    /// Closed items, for the final `response` object.
    done: Vec<Value>,
    /// Canonical tool-call index → output index.
    calls: Vec<(u32, usize)>,
    finish: FinishReason,
}

impl StreamEncoder {
    pub fn new(echo: Echo) -> Self {
        Self::with_id(echo, format!("resp_{}", uuid_like()))
    }

    /// An encoder whose `response` has the given id (a stored response's,
    /// unique across routers).
    pub fn with_id(echo: Echo, id: String) -> Self {
        StreamEncoder {
            id,
            created_at: unix_now(),
            echo,
            seq: 0,
            started: false,
            open: None,
            done: Vec::new(),
            calls: Vec::new(),
            finish: FinishReason::Stop,
        }
    }

    fn event(&mut self, kind: &str, mut body: Value) -> StreamEvent {
        body["type"] = json!(kind);
        body["sequence_number"] = json!(self.seq);
        self.seq += 1;
        StreamEvent(body)
    }

    fn start(&mut self, out: &mut Vec<StreamEvent>) {
        if self.started {
            return;
        }
        self.started = true;
        let r = envelope(
            &self.id,
            self.created_at,
            "in_progress",
            &self.echo,
            Vec::new(),
            None,
            None,
        );
        let e = self.event("response.created", json!({"response": r.clone()}));
        out.push(e);
        let e = self.event("response.in_progress", json!({"response": r}));
        out.push(e);
    }

    fn close(&mut self, out: &mut Vec<StreamEvent>) {
        let Some((index, item)) = self.open.take() else {
            return;
        };
        match item {
            Open::Text { id, text } => {
                let e = self.event(
                    "response.output_text.done",
                    json!({"item_id": id, "output_index": index, "content_index": 0, "text": text}),
                );
                out.push(e);
                let e = self.event(
                    "response.content_part.done",
                    json!({"item_id": id, "output_index": index, "content_index": 0,
                           "part": {"type": "output_text", "text": text, "annotations": []}}),
                );
                out.push(e);
                let item = message_item(&id, &text, "completed");
                let e = self.event(
                    "response.output_item.done",
                    json!({"output_index": index, "item": item.clone()}),
                );
                out.push(e);
                self.done.push(item);
            }
            Open::Call { id, call } => {
                let e = self.event(
                    "response.function_call_arguments.done",
                    json!({"item_id": id, "output_index": index, "arguments": call.arguments}),
                );
                out.push(e);
                let item = call_item(&id, &call, "completed", &self.echo.namespaces);
                let e = self.event(
                    "response.output_item.done",
                    json!({"output_index": index, "item": item.clone()}),
                );
                out.push(e);
                self.done.push(item);
            }
        }
    }

    fn text(&mut self, delta: &str, out: &mut Vec<StreamEvent>) {
        if !matches!(self.open, Some((_, Open::Text { .. }))) {
            self.close(out);
            let index = self.done.len();
            let id = format!("msg_{}_{index}", self.id);
            let e = self.event(
                "response.output_item.added",
                json!({"output_index": index, "item": {"type": "message", "id": id, "status": "in_progress",
                        "role": "assistant", "content": []}}),
            );
            out.push(e);
            let e = self.event(
                "response.content_part.added",
                json!({"item_id": id, "output_index": index, "content_index": 0,
                       "part": {"type": "output_text", "text": "", "annotations": []}}),
            );
            out.push(e);
            self.open = Some((
                index,
                Open::Text {
                    id,
                    text: String::new(),
                },
            ));
        }
        if let Some((index, Open::Text { id, text })) = &mut self.open {
            text.push_str(delta);
            let body =
                json!({"item_id": id, "output_index": *index, "content_index": 0, "delta": delta});
            let e = self.event("response.output_text.delta", body);
            out.push(e);
        }
    }

    fn call(&mut self, d: &pb::ToolCallDelta, out: &mut Vec<StreamEvent>) {
        let current = self
            .calls
            .iter()
            .find(|(i, _)| *i == d.index)
            .map(|(_, o)| *o);
        let open_here =
            matches!((&self.open, current), (Some((o, Open::Call { .. })), Some(c)) if *o == c);
        if !open_here {
            self.close(out);
            let index = self.done.len();
            let id = format!("fc_{}_{index}", self.id);
            let call = pb::ToolCall {
                id: d.id.clone(),
                name: d.name.clone(),
                arguments: String::new(),
            };
            let mut item = call_item(&id, &call, "in_progress", &self.echo.namespaces);
            item["arguments"] = json!("");
            let e = self.event(
                "response.output_item.added",
                json!({"output_index": index, "item": item}),
            );
            out.push(e);
            self.calls.push((d.index, index));
            self.open = Some((index, Open::Call { id, call }));
        }
        if let Some((index, Open::Call { id, call })) = &mut self.open {
            if call.id.is_empty() {
                call.id.clone_from(&d.id);
            }
            if call.name.is_empty() {
                call.name.clone_from(&d.name);
            }
            if !d.arguments.is_empty() {
                call.arguments.push_str(&d.arguments);
                let body = json!({"item_id": id, "output_index": *index, "delta": d.arguments});
                let e = self.event("response.function_call_arguments.delta", body);
                out.push(e);
            }
        }
    }

    pub fn chunk(&mut self, c: &pb::ChatChunk) -> Vec<StreamEvent> {
        let mut out = Vec::new();
        self.start(&mut out);
        // The first choice is the answer (`n` is not a Responses field).
        for d in c.choices.iter().filter(|d| d.index == 0) {
            if let Some(t) = d.content.as_deref().filter(|t| !t.is_empty()) {
                self.text(t, &mut out);
            }
            for call in &d.tool_calls {
                self.call(call, &mut out);
            }
            if let Ok(f) = FinishReason::try_from(d.finish_reason)
                && f != FinishReason::Unspecified
            {
                self.finish = f;
            }
        }
        out
    }

    /// Closes the open item and sends the final `response` with usage.
    pub fn finish(&mut self, usage: Option<&pb::Usage>) -> Vec<StreamEvent> {
        let mut out = Vec::new();
        self.start(&mut out);
        self.close(&mut out);
        let (status, incomplete) = status_of(self.finish);
        let r = envelope(
            &self.id,
            self.created_at,
            status,
            &self.echo,
            self.done.clone(),
            Some(usage_json(usage)),
            incomplete,
        );
        let kind = if status == "completed" {
            "response.completed"
        } else {
            "response.incomplete"
        };
        let e = self.event(kind, json!({"response": r}));
        out.push(e);
        out
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn translate(v: Value) -> Result<Translated, ResponsesError> {
        request_to_spec(serde_json::from_value(v).unwrap())
    }

    #[test]
    fn input_items_become_the_conversation() {
        let t = translate(json!({
            "model": "m",
            "instructions": "be brief",
            "input": [
                {"role": "user", "content": "weather in Paris?"},
                {"type": "function_call", "call_id": "c1", "name": "weather", "arguments": "{\"city\":\"Paris\"}"},
                {"type": "function_call", "call_id": "c2", "name": "time", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
                {"type": "reasoning", "id": "rs_1", "summary": []},
                {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "and"},
                    {"type": "input_image", "image_url": "data:image/png;base64,AAAA"}]}
            ],
            "tools": [{"type": "function", "name": "weather", "parameters": {"type": "object"}}],
            "tool_choice": {"type": "function", "name": "weather"},
            "text": {"format": {"type": "json_schema", "name": "out", "schema": {"type": "object"}, "strict": true}},
            "reasoning": {"effort": "low"},
            "max_output_tokens": 50,
            "store": false,
            "stream": true
        }))
        .unwrap();
        let s = &t.spec;
        let roles: Vec<i32> = s.messages.iter().map(|m| m.role).collect();
        assert_eq!(
            roles,
            [
                Role::System,
                Role::User,
                Role::Assistant,
                Role::Tool,
                Role::User
            ]
            .map(|r| r as i32)
        );
        assert_eq!(s.messages[2].tool_calls.len(), 2);
        assert_eq!(s.messages[3].tool_call_id, "c1");
        assert_eq!(s.max_tokens, Some(50));
        assert_eq!(s.tools[0].name, "weather");
        assert_eq!(s.tool_choice.as_ref().unwrap().name, "weather");
        let rf = s.response_format.as_ref().unwrap();
        assert_eq!(rf.schema_name, "out");
        assert_eq!(rf.strict, Some(true));
        let extra = switchyard_proto::json::map_from_struct_ref(s.extra.as_ref().unwrap());
        assert_eq!(extra["reasoning_effort"], "low");
        assert!(extra.get("store").is_none());
        assert!(t.stream);
        assert!(s.include_usage);
    }

    #[test]
    fn a_continuation_puts_the_stored_conversation_before_the_new_input() {
        let earlier = [
            input_items(Some(&Input::Text("weather in Paris?".into()))),
            vec![
                json!({"type": "function_call", "id": "fc_1", "call_id": "c1", "name": "weather",
                       "arguments": "{}", "status": "completed"}),
                json!({"type": "function_call_output", "call_id": "c1", "output": "sunny"}),
                json!({"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
                       "content": [{"type": "output_text", "text": "It is sunny.", "annotations": []}]}),
            ],
        ]
        .concat();
        let req = serde_json::from_value(json!({
            "model": "m",
            "instructions": "be brief",
            "previous_response_id": "resp_1",
            "input": "and tomorrow?"
        }))
        .unwrap();
        let t = continue_from(req, &earlier).unwrap();
        let roles: Vec<i32> = t.spec.messages.iter().map(|m| m.role).collect();
        assert_eq!(
            roles,
            [
                Role::System,
                Role::User,
                Role::Assistant,
                Role::Tool,
                Role::Assistant,
                Role::User
            ]
            .map(|r| r as i32)
        );
        assert_eq!(t.spec.messages[2].tool_calls[0].id, "c1");
        assert_eq!(t.echo.previous_response_id.as_deref(), Some("resp_1"));
        let v = result_to_response(&pb::ChatResult::default(), &t.echo);
        assert_eq!(v["previous_response_id"], "resp_1");
        // Without instructions the stored conversation comes first.
        let req = serde_json::from_value(
            json!({"model": "m", "previous_response_id": "resp_1", "input": "x"}),
        )
        .unwrap();
        let t = continue_from(req, &earlier).unwrap();
        assert_eq!(t.spec.messages[0].role, Role::User as i32);
        assert_eq!(t.spec.messages.len(), 5);
    }

    #[test]
    fn refusals_name_the_field() {
        for (body, param) in [
            (
                json!({"model": "m", "input": "x", "previous_response_id": "resp_1"}),
                "previous_response_id",
            ),
            (
                json!({"model": "m", "input": "x", "tools": [{"type": "web_search"}]}),
                "tools[0].type",
            ),
            (
                json!({"model": "m", "input": [{"type": "computer_call"}]}),
                "input[0].type",
            ),
            (
                json!({"model": "m", "input": [{"role": "robot", "content": "x"}]}),
                "input[0].role",
            ),
            (
                json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_file"}]}]}),
                "input[0].content[0].type",
            ),
            (
                json!({"model": "m", "input": "x", "tool_choice": "sometimes"}),
                "tool_choice",
            ),
            (json!({"model": "m", "input": []}), "input"),
        ] {
            let e = translate(body.clone()).err().unwrap();
            assert_eq!(e.param.as_deref(), Some(param), "{body}: {e}");
        }
    }

    fn chunk(
        content: Option<&str>,
        calls: Vec<pb::ToolCallDelta>,
        finish: FinishReason,
    ) -> pb::ChatChunk {
        pb::ChatChunk {
            choices: vec![pb::ChoiceDelta {
                content: content.map(str::to_owned),
                tool_calls: calls,
                finish_reason: finish as i32,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn stream_events_follow_openais_sequence() {
        let mut enc = StreamEncoder::new(Echo::default());
        let mut events = enc.chunk(&chunk(Some("Hel"), vec![], FinishReason::Unspecified));
        events.extend(enc.chunk(&chunk(Some("lo"), vec![], FinishReason::Unspecified)));
        events.extend(enc.chunk(&chunk(
            None,
            vec![pb::ToolCallDelta {
                index: 0,
                id: "c1".into(),
                name: "f".into(),
                arguments: "{\"a\"".into(),
            }],
            FinishReason::Unspecified,
        )));
        events.extend(enc.chunk(&chunk(
            None,
            vec![pb::ToolCallDelta {
                index: 0,
                arguments: ":1}".into(),
                ..Default::default()
            }],
            FinishReason::ToolCalls,
        )));
        events.extend(enc.finish(Some(&pb::Usage {
            prompt_tokens: 3,
            completion_tokens: 4,
            ..Default::default()
        })));
        let kinds: Vec<&str> = events.iter().map(StreamEvent::kind).collect();
        assert_eq!(
            kinds,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        let seqs: Vec<u64> = events
            .iter()
            .map(|e| e.0["sequence_number"].as_u64().unwrap())
            .collect();
        assert_eq!(seqs, (0..15).collect::<Vec<_>>());
        let done = &events[14].0["response"];
        assert_eq!(done["output"][0]["content"][0]["text"], "Hello");
        assert_eq!(done["output"][1]["arguments"], "{\"a\":1}");
        assert_eq!(done["output"][1]["call_id"], "c1");
        assert_eq!(done["usage"]["total_tokens"], 7);
        let frame = String::from_utf8(sse_frame(&events[0])).unwrap();
        assert!(
            frame.starts_with("event: response.created\ndata: {"),
            "{frame}"
        );
    }

    #[test]
    fn a_cut_answer_is_incomplete() {
        let r = pb::ChatResult {
            id: "chatcmpl-1".into(),
            choices: vec![pb::Choice {
                message: Some(text_message(Role::Assistant, "par")),
                finish_reason: FinishReason::Length as i32,
                ..Default::default()
            }],
            ..Default::default()
        };
        let v = result_to_response(&r, &Echo::default());
        assert_eq!(v["id"], "resp_chatcmpl-1");
        assert_eq!(v["status"], "incomplete");
        assert_eq!(v["incomplete_details"]["reason"], "max_output_tokens");
        assert_eq!(v["output"][0]["content"][0]["text"], "par");
    }

    /// Codex CLI groups its sub-agent tools in a `namespace`: chat-format
    /// targets see flat names, the client gets its namespace back.
    #[test]
    fn namespaced_tools_are_flattened_and_restored() {
        let t = translate(json!({
            "model": "m",
            "input": [
                {"role": "user", "content": "go"},
                {"type": "function_call", "call_id": "c0", "namespace": "agents", "name": "spawn", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c0", "output": "ok"}
            ],
            "tools": [
                {"type": "function", "name": "exec_command", "parameters": {"type": "object"}},
                {"type": "namespace", "name": "agents", "description": "Sub-agents.", "tools": [
                    {"type": "function", "name": "spawn", "description": "Start one.", "parameters": {"type": "object"}},
                    {"type": "function", "name": "close", "parameters": {"type": "object"}}
                ]}
            ]
        }))
        .unwrap();
        let names: Vec<&str> = t.spec.tools.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["exec_command", "agents__spawn", "agents__close"]);
        assert_eq!(t.spec.tools[1].description, "Sub-agents.\n\nStart one.");
        assert_eq!(t.spec.tools[2].description, "Sub-agents.");
        assert_eq!(t.spec.messages[1].tool_calls[0].name, "agents__spawn");

        let call = |name: &str| pb::ToolCall {
            id: "c1".into(),
            name: name.into(),
            arguments: "{}".into(),
        };
        let r = pb::ChatResult {
            id: "x".into(),
            choices: vec![pb::Choice {
                message: Some(pb::Message {
                    role: Role::Assistant as i32,
                    tool_calls: vec![call("agents__close"), call("exec_command")],
                    ..Default::default()
                }),
                finish_reason: FinishReason::ToolCalls as i32,
                ..Default::default()
            }],
            ..Default::default()
        };
        let v = result_to_response(&r, &t.echo);
        assert_eq!(v["output"][0]["namespace"], "agents");
        assert_eq!(v["output"][0]["name"], "close");
        assert!(v["output"][1].get("namespace").is_none());
        assert_eq!(v["output"][1]["name"], "exec_command");

        let bad = translate(json!({"model": "m", "input": "x", "tools": [
            {"type": "namespace", "name": "n", "description": "", "tools": [{"type": "custom", "name": "c"}]}
        ]}));
        assert_eq!(
            bad.err().and_then(|e| e.param).as_deref(),
            Some("tools[0].tools[0].type")
        );
    }
}
