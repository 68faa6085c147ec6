//! OpenAI chat completions wire format, as in OpenAI's OpenAPI description
//! (`CreateChatCompletionRequest`, `CreateChatCompletionResponse`,
//! `CreateChatCompletionStreamResponse`, `ErrorResponse`,
//! `ListModelsResponse`).
//!
//! The same structs serve both edges: the router decodes client requests and
//! encodes answers with them, the worker encodes upstream requests and decodes
//! the answers. So they are faithful both ways: every object keeps the fields
//! it does not name in a flattened `extra` map, open-ended unions (content
//! parts, tool choice, tool types) keep unknown shapes as JSON, and
//! serialization leaves out what was absent. Decoding is lenient where
//! OpenAI-compatible vendors differ from OpenAI (missing `id`/`created`,
//! numeric error codes), strict where OpenAI itself requires a field.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// A JSON object: the pass-through store for fields a struct does not name.
pub type Extra = Map<String, Value>;

/// `object` of a non-streamed answer.
pub const OBJECT_CHAT_COMPLETION: &str = "chat.completion";
/// `object` of a streamed chunk.
pub const OBJECT_CHAT_COMPLETION_CHUNK: &str = "chat.completion.chunk";

// --- request -------------------------------------------------------------

/// `CreateChatCompletionRequest`: the body of `POST /v1/chat/completions`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletionRequest {
    pub model: String,
    pub messages: Vec<RequestMessage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Deprecated by OpenAI in favour of `max_completion_tokens`, but the
    /// only spelling many OpenAI-compatible vendors accept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Stop>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<ResponseFormat>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    /// Every other request field (`logprobs`, `metadata`, `store`,
    /// `reasoning_effort`, vendor extensions, ...), passed through.
    #[serde(flatten)]
    pub extra: Extra,
}

impl ChatCompletionRequest {
    /// The JSON names of the fields this struct types; every other key lives
    /// in `extra`.
    pub const TYPED_FIELDS: &'static [&'static str] = &[
        "model",
        "messages",
        "temperature",
        "top_p",
        "max_tokens",
        "max_completion_tokens",
        "stop",
        "presence_penalty",
        "frequency_penalty",
        "seed",
        "user",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
        "n",
        "stream",
        "stream_options",
    ];
}

/// `stop`: one sequence or a list of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

impl Stop {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            Stop::One(s) => vec![s],
            Stop::Many(v) => v,
        }
    }
}

/// `ChatCompletionStreamOptions`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_usage: Option<bool>,
    /// e.g. `include_obfuscation`.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Role names as they appear on the wire.
pub mod role {
    pub const SYSTEM: &str = "system";
    pub const DEVELOPER: &str = "developer";
    pub const USER: &str = "user";
    pub const ASSISTANT: &str = "assistant";
    pub const TOOL: &str = "tool";
    /// Deprecated by OpenAI; not part of the canonical model.
    pub const FUNCTION: &str = "function";
}

/// `ChatCompletionRequestMessage` (every role in one struct: the role is
/// kept as a string so an unknown one can be reported precisely).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RequestMessage {
    pub role: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<MessageContent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Assistant messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    /// Tool messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// e.g. `refusal`, `audio`, `function_call`, vendor fields.
    #[serde(flatten)]
    pub extra: Extra,
}

impl RequestMessage {
    pub const TYPED_FIELDS: &'static [&'static str] =
        &["role", "content", "name", "tool_calls", "tool_call_id"];
}

/// Message content: a plain string or a list of typed parts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MessageContent {
    Text(String),
    Parts(Vec<ContentPart>),
}

/// One content part. `text` and `image_url` parts are typed; every other
/// part type (`input_audio`, `file`, `refusal`, vendor types), and a known
/// type carrying fields this struct does not name, is kept whole as JSON so
/// it reaches the upstream unchanged.
#[derive(Debug, Clone, PartialEq)]
pub enum ContentPart {
    Text { text: String },
    ImageUrl { image_url: ImageUrl },
    Other(Extra),
}

/// `image_url` of an image part.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageUrl {
    pub url: String,
    /// `auto`, `low` or `high`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Serialize for ContentPart {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(tag = "type", rename_all = "snake_case")]
        enum Typed<'a> {
            Text { text: &'a str },
            ImageUrl { image_url: &'a ImageUrl },
        }
        match self {
            ContentPart::Text { text } => Typed::Text { text }.serialize(s),
            ContentPart::ImageUrl { image_url } => Typed::ImageUrl { image_url }.serialize(s),
            ContentPart::Other(map) => map.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for ContentPart {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = Extra::deserialize(d)?;
        let Some(kind) = map.get("type").and_then(Value::as_str) else {
            return Err(D::Error::custom("content part without a string `type`"));
        };
        let only = |keys: &[&str]| {
            map.keys()
                .all(|k| k == "type" || keys.contains(&k.as_str()))
        };
        match kind {
            "text" if only(&["text"]) => match map.get("text") {
                Some(Value::String(text)) => Ok(ContentPart::Text { text: text.clone() }),
                _ => Err(D::Error::custom(
                    "text content part without a string `text`",
                )),
            },
            "image_url" if only(&["image_url"]) => {
                let Some(raw) = map.get("image_url") else {
                    return Err(D::Error::custom(
                        "image_url content part without `image_url`",
                    ));
                };
                // An image_url with fields beyond url/detail stays whole.
                match raw {
                    Value::Object(o) if o.keys().all(|k| k == "url" || k == "detail") => {
                        let image_url = ImageUrl::deserialize(raw).map_err(D::Error::custom)?;
                        Ok(ContentPart::ImageUrl { image_url })
                    }
                    Value::Object(_) => Ok(ContentPart::Other(map)),
                    _ => Err(D::Error::custom(
                        "`image_url` must be an object with a `url`",
                    )),
                }
            }
            _ => Ok(ContentPart::Other(map)),
        }
    }
}

/// `ChatCompletionTool` (`type: function`) or any other tool type
/// (`custom`, vendor tools), which keeps its body in `extra`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<FunctionDefinition>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `FunctionObject`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FunctionDefinition {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON Schema of the arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `ChatCompletionToolChoiceOption`: `"none" | "auto" | "required"`, or an
/// object (`{"type": "function", "function": {"name"}}`, `allowed_tools`,
/// `custom`, ...). The mode is kept as a string so an invalid one can be
/// reported with its field name rather than as an unmatched union.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ToolChoice {
    Mode(String),
    Object(ToolChoiceObject),
}

pub mod tool_choice_mode {
    pub const NONE: &str = "none";
    pub const AUTO: &str = "auto";
    pub const REQUIRED: &str = "required";
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ToolChoiceObject {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<FunctionName>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FunctionName {
    pub name: String,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `response_format`: `text`, `json_object` or `json_schema` (other types
/// keep their body in `extra`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResponseFormat {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_schema: Option<JsonSchemaFormat>,
    #[serde(flatten)]
    pub extra: Extra,
}

pub mod response_format_type {
    pub const TEXT: &str = "text";
    pub const JSON_OBJECT: &str = "json_object";
    pub const JSON_SCHEMA: &str = "json_schema";
}

/// `ResponseFormatJsonSchema.json_schema`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JsonSchemaFormat {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `ChatCompletionMessageToolCall` (and other tool call types, such as
/// `custom`, whose body stays in `extra`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<FunctionCall>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FunctionCall {
    pub name: String,
    /// JSON text as the model produced it, possibly invalid.
    #[serde(default)]
    pub arguments: String,
    #[serde(flatten)]
    pub extra: Extra,
}

// --- response ------------------------------------------------------------

/// `CreateChatCompletionResponse`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletionResponse {
    #[serde(default)]
    pub id: String,
    #[serde(default = "object_chat_completion")]
    pub object: String,
    #[serde(default)]
    pub created: i64,
    #[serde(default)]
    pub model: String,
    /// Required (no default), so an error body answered with status 200 is
    /// not mistaken for an empty answer.
    pub choices: Vec<Choice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_fingerprint: Option<String>,
    /// e.g. `service_tier`.
    #[serde(flatten)]
    pub extra: Extra,
}

fn object_chat_completion() -> String {
    OBJECT_CHAT_COMPLETION.to_owned()
}

fn object_chat_completion_chunk() -> String {
    OBJECT_CHAT_COMPLETION_CHUNK.to_owned()
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    #[serde(default)]
    pub index: u32,
    pub message: ResponseMessage,
    /// Required but nullable in OpenAI's schema: always written.
    #[serde(default)]
    pub finish_reason: Option<String>,
    /// Required but nullable: always written.
    #[serde(default)]
    pub logprobs: Option<Value>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `ChatCompletionResponseMessage`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResponseMessage {
    #[serde(default = "role_assistant")]
    pub role: String,
    /// Required but nullable: always written.
    #[serde(default)]
    pub content: Option<String>,
    /// Required but nullable: always written.
    #[serde(default)]
    pub refusal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    /// e.g. `annotations`, `audio`, `function_call`, `reasoning_content`.
    #[serde(flatten)]
    pub extra: Extra,
}

impl Default for ResponseMessage {
    fn default() -> Self {
        Self {
            role: role_assistant(),
            content: None,
            refusal: None,
            tool_calls: None,
            extra: Extra::new(),
        }
    }
}

fn role_assistant() -> String {
    role::ASSISTANT.to_owned()
}

/// `CompletionUsage`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    #[serde(default, deserialize_with = "null_as_default")]
    pub prompt_tokens: u32,
    #[serde(default, deserialize_with = "null_as_default")]
    pub completion_tokens: u32,
    #[serde(default, deserialize_with = "null_as_default")]
    pub total_tokens: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_tokens_details: Option<CompletionTokensDetails>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PromptTokensDetails {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_tokens: Option<u32>,
    /// e.g. `audio_tokens`.
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CompletionTokensDetails {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_tokens: Option<u32>,
    /// e.g. `audio_tokens`, `accepted_prediction_tokens`.
    #[serde(flatten)]
    pub extra: Extra,
}

// --- stream --------------------------------------------------------------

/// `CreateChatCompletionStreamResponse`: one `data:` event of a stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletionChunk {
    #[serde(default)]
    pub id: String,
    #[serde(default = "object_chat_completion_chunk")]
    pub object: String,
    #[serde(default)]
    pub created: i64,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub choices: Vec<ChunkChoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_fingerprint: Option<String>,
    /// e.g. `service_tier`, `obfuscation`.
    #[serde(flatten)]
    pub extra: Extra,
}

impl Default for ChatCompletionChunk {
    fn default() -> Self {
        Self {
            id: String::new(),
            object: object_chat_completion_chunk(),
            created: 0,
            model: String::new(),
            choices: Vec::new(),
            usage: None,
            system_fingerprint: None,
            extra: Extra::new(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChunkChoice {
    #[serde(default)]
    pub index: u32,
    #[serde(default)]
    pub delta: Delta,
    /// Required but nullable: always written.
    #[serde(default)]
    pub finish_reason: Option<String>,
    /// Written even when null, as OpenAI does.
    #[serde(default)]
    pub logprobs: Option<Value>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `ChatCompletionStreamResponseDelta`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Delta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCallChunk>>,
    /// Not OpenAI's: DeepSeek, vLLM and others stream hidden reasoning here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    /// e.g. `refusal`, `function_call`, `reasoning` (another vendor spelling).
    #[serde(flatten)]
    pub extra: Extra,
}

/// `ChatCompletionMessageToolCallChunk`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ToolCallChunk {
    #[serde(default)]
    pub index: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<FunctionCallDelta>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FunctionCallDelta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

// --- errors and models ---------------------------------------------------

/// `ErrorResponse`: `{"error": {...}}`, the body of every non-2xx answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ErrorResponse {
    pub error: ErrorObject,
}

/// `Error`. `param` and `code` are required but nullable: always written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ErrorObject {
    #[serde(default)]
    pub message: String,
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub param: Option<String>,
    /// A string in OpenAI's schema; vendors such as vLLM send the HTTP
    /// status as a number, read here as its decimal text.
    #[serde(default, deserialize_with = "string_or_number")]
    pub code: Option<String>,
}

/// `ListModelsResponse`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListModelsResponse {
    #[serde(default = "object_list")]
    pub object: String,
    pub data: Vec<Model>,
}

impl Default for ListModelsResponse {
    fn default() -> Self {
        Self {
            object: object_list(),
            data: Vec::new(),
        }
    }
}

fn object_list() -> String {
    "list".to_owned()
}

/// `Model`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model {
    pub id: String,
    #[serde(default = "object_model")]
    pub object: String,
    #[serde(default)]
    pub created: i64,
    #[serde(default)]
    pub owned_by: String,
    /// e.g. `shutdown_date`.
    #[serde(flatten)]
    pub extra: Extra,
}

impl Model {
    pub fn new(id: impl Into<String>, owned_by: impl Into<String>, created: i64) -> Self {
        Self {
            id: id.into(),
            object: object_model(),
            created,
            owned_by: owned_by.into(),
            extra: Extra::new(),
        }
    }
}

fn object_model() -> String {
    "model".to_owned()
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) => Some(s),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn round_trip<T>(v: &Value) -> T
    where
        T: Serialize + for<'de> Deserialize<'de>,
    {
        let typed: T = serde_json::from_value(v.clone()).unwrap();
        let back = serde_json::to_value(&typed).unwrap();
        assert_eq!(&back, v, "round trip changed the JSON");
        typed
    }

    #[test]
    fn request_with_tools_images_and_unknown_fields_round_trips() {
        let v = json!({
            "model": "gpt-4o",
            "messages": [
                {"role": "developer", "content": "Be terse."},
                {"role": "user", "content": [
                    {"type": "text", "text": "What is in this image?"},
                    {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "high"}},
                    {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
                    {"type": "text", "text": "cached", "prompt_cache_breakpoint": {"type": "ephemeral"}}
                ], "name": "ann"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                    {"id": "call_2", "type": "custom", "custom": {"name": "sql", "input": "select 1"}}
                ], "refusal": null},
                {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}
            ],
            "tools": [
                {"type": "function", "function": {
                    "name": "get_weather", "description": "Weather by city",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
                    "strict": true}},
                {"type": "custom", "custom": {"name": "sql", "format": {"type": "text"}}}
            ],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            "parallel_tool_calls": false,
            "response_format": {"type": "json_schema", "json_schema": {
                "name": "w", "description": "weather", "schema": {"type": "object"}, "strict": true}},
            "temperature": 0.2,
            "top_p": 0.9,
            "max_completion_tokens": 300,
            "stop": ["\n\n", "END"],
            "seed": 42,
            "n": 1,
            "user": "user-1234",
            "stream": true,
            "stream_options": {"include_usage": true, "include_obfuscation": false},
            "logprobs": true,
            "top_logprobs": 2,
            "metadata": {"team": "a"},
            "reasoning_effort": "low",
            "x_vendor_knob": [1, 2, 3]
        });
        let mut req: ChatCompletionRequest = serde_json::from_value(v.clone()).unwrap();
        // `content: null` reads as absent; OpenAI treats both the same.
        let mut expected = v.clone();
        expected["messages"][2]
            .as_object_mut()
            .unwrap()
            .remove("content");
        assert_eq!(serde_json::to_value(&req).unwrap(), expected);

        assert_eq!(req.extra.len(), 5);
        assert_eq!(req.extra["x_vendor_knob"], json!([1, 2, 3]));
        let Some(MessageContent::Parts(parts)) = &req.messages[1].content else {
            panic!()
        };
        assert!(
            matches!(&parts[0], ContentPart::Text { text } if text == "What is in this image?")
        );
        assert!(
            matches!(&parts[1], ContentPart::ImageUrl { image_url } if image_url.detail.as_deref() == Some("high"))
        );
        assert!(matches!(&parts[2], ContentPart::Other(m) if m["type"] == "input_audio"));
        // A text part with a field we do not type is kept whole.
        assert!(
            matches!(&parts[3], ContentPart::Other(m) if m["prompt_cache_breakpoint"]["type"] == "ephemeral")
        );
        assert_eq!(req.messages[2].extra["refusal"], Value::Null);
        let tools = req.tools.take().unwrap();
        assert_eq!(tools[1].kind, "custom");
        assert!(tools[1].function.is_none());
        assert_eq!(tools[1].extra["custom"]["name"], "sql");
        assert!(
            matches!(req.tool_choice, Some(ToolChoice::Object(ref o)) if o.function.as_ref().unwrap().name == "get_weather")
        );
        assert_eq!(
            req.stop,
            Some(Stop::Many(vec!["\n\n".into(), "END".into()]))
        );
        assert_eq!(
            req.stream_options.as_ref().unwrap().extra["include_obfuscation"],
            false
        );
    }

    #[test]
    fn string_forms_round_trip() {
        let v = json!({
            "model": "m",
            "messages": [{"role": "user", "content": "hi"}],
            "stop": "END",
            "tool_choice": "required",
            "response_format": {"type": "json_object"},
            "max_tokens": 5
        });
        let req: ChatCompletionRequest = round_trip(&v);
        assert_eq!(req.stop, Some(Stop::One("END".into())));
        assert_eq!(req.tool_choice, Some(ToolChoice::Mode("required".into())));
        assert_eq!(req.max_tokens, Some(5));
        assert!(req.extra.is_empty());
    }

    #[test]
    fn allowed_tools_choice_round_trips() {
        let v = json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "tool_choice": {"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": [{"type": "function", "function": {"name": "a"}}]}}});
        let req: ChatCompletionRequest = round_trip(&v);
        let Some(ToolChoice::Object(o)) = req.tool_choice else {
            panic!()
        };
        assert_eq!(o.kind, "allowed_tools");
        assert!(o.function.is_none());
    }

    #[test]
    fn content_part_errors_are_reported() {
        let bad = json!({"role": "user", "content": [{"text": "no type"}]});
        assert!(serde_json::from_value::<RequestMessage>(bad).is_err());
        let bad = json!({"role": "user", "content": [{"type": "text", "text": 3}]});
        assert!(serde_json::from_value::<RequestMessage>(bad).is_err());
        let bad =
            json!({"role": "user", "content": [{"type": "image_url", "image_url": "https://x"}]});
        assert!(serde_json::from_value::<RequestMessage>(bad).is_err());
    }

    #[test]
    fn response_with_tool_calls_round_trips() {
        let v = json!({
            "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
            "object": "chat.completion",
            "created": 1741570283,
            "model": "gpt-4o-2024-08-06",
            "choices": [{
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": null,
                    "refusal": null,
                    "tool_calls": [{"id": "call_abc", "type": "function",
                        "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}],
                    "annotations": []
                },
                "logprobs": null,
                "finish_reason": "tool_calls"
            }],
            "usage": {
                "prompt_tokens": 82, "completion_tokens": 17, "total_tokens": 99,
                "prompt_tokens_details": {"cached_tokens": 64, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                    "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}
            },
            "service_tier": "default",
            "system_fingerprint": "fp_fc9f1d7035"
        });
        let resp: ChatCompletionResponse = round_trip(&v);
        let usage = resp.usage.unwrap();
        assert_eq!(usage.prompt_tokens_details.unwrap().cached_tokens, Some(64));
        assert_eq!(resp.extra["service_tier"], "default");
        assert_eq!(resp.choices[0].message.extra["annotations"], json!([]));
    }

    #[test]
    fn stream_chunks_round_trip() {
        for v in [
            json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
                "system_fingerprint": "fp_1", "service_tier": "default", "obfuscation": "abc",
                "choices": [{"index": 0, "delta": {"role": "assistant", "content": "", "refusal": null},
                    "logprobs": null, "finish_reason": null}]}),
            json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
                "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                    "function": {"name": "f", "arguments": ""}}]}, "logprobs": null, "finish_reason": null}]}),
            json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
                "choices": [{"index": 0, "delta": {}, "logprobs": null, "finish_reason": "stop"}]}),
            json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
                "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11,
                    "prompt_tokens_details": {"cached_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 0}}}),
        ] {
            let _: ChatCompletionChunk = round_trip(&v);
        }
    }

    #[test]
    fn error_bodies_read_leniently_and_write_fully() {
        let e: ErrorResponse = serde_json::from_value(
            json!({"error": {"message": "bad", "type": "invalid_request_error",
            "param": "messages", "code": null}}),
        )
        .unwrap();
        assert_eq!(e.error.param.as_deref(), Some("messages"));
        let vllm: ErrorResponse = serde_json::from_value(
            json!({"error": {"message": "m", "type": "BadRequestError", "code": 400}}),
        )
        .unwrap();
        assert_eq!(vllm.error.code.as_deref(), Some("400"));
        let out = serde_json::to_value(ErrorResponse {
            error: ErrorObject {
                message: "m".into(),
                kind: "t".into(),
                param: None,
                code: None,
            },
        })
        .unwrap();
        assert_eq!(
            out,
            json!({"error": {"message": "m", "type": "t", "param": null, "code": null}})
        );
    }

    #[test]
    fn model_list_round_trips() {
        let v = json!({"object": "list", "data": [
            {"id": "gpt-4o", "object": "model", "created": 1686935002, "owned_by": "openai", "shutdown_date": "2026-10-23"}]});
        let list: ListModelsResponse = round_trip(&v);
        assert_eq!(list.data[0].extra["shutdown_date"], "2026-10-23");
    }

    /// The router reports decoding errors with the field's path as `param`;
    /// the flattened `extra` maps must not hide it.
    #[test]
    fn decoding_errors_name_the_field() {
        let path_of = |v: Value| {
            let s = v.to_string();
            let de = &mut serde_json::Deserializer::from_str(&s);
            serde_path_to_error::deserialize::<_, ChatCompletionRequest>(de)
                .unwrap_err()
                .path()
                .to_string()
        };
        let msgs = json!([{"role": "user", "content": "x"}]);
        assert_eq!(
            path_of(json!({"model": "m", "messages": msgs, "temperature": "hot"})),
            "temperature"
        );
        assert_eq!(
            path_of(json!({"model": "m", "messages": msgs, "max_tokens": -1})),
            "max_tokens"
        );
        assert_eq!(
            path_of(
                json!({"model": "m", "messages": [{"role": "user", "content": "x"}, {"role": 3, "content": "x"}]})
            ),
            "messages[1].role"
        );
        assert_eq!(
            path_of(
                json!({"model": "m", "messages": msgs, "tools": [{"type": "function", "function": {"name": 1}}]})
            ),
            "tools[0].function.name"
        );
    }

    #[test]
    fn null_usage_counts_read_as_zero() {
        let u: Usage =
            serde_json::from_value(json!({"prompt_tokens": 3, "completion_tokens": null})).unwrap();
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.total_tokens),
            (3, 0, 0)
        );
    }
}
