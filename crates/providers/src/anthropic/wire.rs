//! Anthropic Messages API wire format (`POST /v1/messages`, API version
//! `2023-06-01`): the request, the response, the stream events and the error
//! body.
//!
//! The same structs serve both edges, like the OpenAI ones: the worker
//! encodes upstream requests and decodes answers, the router's
//! Anthropic-compatible ingress decodes client requests and encodes answers.
//! Every object keeps the fields it does not name in a flattened `extra` map,
//! content blocks of types this module does not name are kept whole as JSON,
//! and serialization leaves out what was absent.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// A JSON object: the pass-through store for fields a struct does not name.
pub type Extra = Map<String, Value>;

/// The API version sent when the config names none.
pub const DEFAULT_VERSION: &str = "2023-06-01";

pub mod role {
    pub const USER: &str = "user";
    pub const ASSISTANT: &str = "assistant";
    /// A system turn inside `messages`, as Claude Code sends one.
    pub const SYSTEM: &str = "system";
}

pub mod stop_reason {
    pub const END_TURN: &str = "end_turn";
    pub const MAX_TOKENS: &str = "max_tokens";
    pub const STOP_SEQUENCE: &str = "stop_sequence";
    pub const TOOL_USE: &str = "tool_use";
    pub const PAUSE_TURN: &str = "pause_turn";
    pub const REFUSAL: &str = "refusal";
    pub const CONTEXT_WINDOW_EXCEEDED: &str = "model_context_window_exceeded";
}

// --- request -------------------------------------------------------------

/// The body of `POST /v1/messages`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MessagesRequest {
    pub model: String,
    pub messages: Vec<InputMessage>,
    /// Required by Anthropic; optional here so the ingress can answer a
    /// missing one with Anthropic's own 400 rather than a decode error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<System>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_sequences: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    /// `top_k`, `thinking`, `service_tier`, ... passed through.
    #[serde(flatten)]
    pub extra: Extra,
}

impl MessagesRequest {
    /// The JSON names of the typed fields; every other key lives in `extra`.
    pub const TYPED_FIELDS: &'static [&'static str] = &[
        "model",
        "messages",
        "max_tokens",
        "system",
        "temperature",
        "top_p",
        "stop_sequences",
        "stream",
        "metadata",
        "tools",
        "tool_choice",
    ];
}

/// `system`: a string or a list of text blocks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum System {
    Text(String),
    Blocks(Vec<ContentBlock>),
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// One turn: `user` or `assistant`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputMessage {
    pub role: String,
    pub content: MessageContent,
    #[serde(flatten)]
    pub extra: Extra,
}

/// Message content: a string (one text block) or a list of blocks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MessageContent {
    Text(String),
    Blocks(Vec<ContentBlock>),
}

impl MessageContent {
    pub fn into_blocks(self) -> Vec<ContentBlock> {
        match self {
            MessageContent::Text(text) => vec![ContentBlock::text(text)],
            MessageContent::Blocks(b) => b,
        }
    }
}

/// A content block. The types the gateway translates are typed; every other
/// block type (`document`, `redacted_thinking`, `server_tool_use`, ...) is
/// kept whole as JSON.
#[derive(Debug, Clone, PartialEq)]
pub enum ContentBlock {
    Text(TextBlock),
    Image(ImageBlock),
    ToolUse(ToolUseBlock),
    ToolResult(ToolResultBlock),
    Thinking(ThinkingBlock),
    Other(Extra),
}

impl ContentBlock {
    pub fn text(text: impl Into<String>) -> Self {
        ContentBlock::Text(TextBlock {
            text: text.into(),
            extra: Extra::new(),
        })
    }

    /// The wire `type` of this block.
    pub fn kind(&self) -> &str {
        match self {
            ContentBlock::Text(_) => "text",
            ContentBlock::Image(_) => "image",
            ContentBlock::ToolUse(_) => "tool_use",
            ContentBlock::ToolResult(_) => "tool_result",
            ContentBlock::Thinking(_) => "thinking",
            ContentBlock::Other(m) => m.get("type").and_then(Value::as_str).unwrap_or(""),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TextBlock {
    pub text: String,
    /// `cache_control`, `citations`, ...
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageBlock {
    pub source: Source,
    #[serde(flatten)]
    pub extra: Extra,
}

/// An image or document source: `base64` (`media_type`, `data`), `url`
/// (`url`), or another type kept in `extra` (`file`, `text`, `content`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Source {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ToolUseBlock {
    pub id: String,
    pub name: String,
    /// The arguments: a JSON object.
    pub input: Value,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ToolResultBlock {
    pub tool_use_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<MessageContent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_error: Option<bool>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ThinkingBlock {
    pub thinking: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl Serialize for ContentBlock {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let body = match self {
            ContentBlock::Other(map) => return map.serialize(s),
            ContentBlock::Text(b) => serde_json::to_value(b),
            ContentBlock::Image(b) => serde_json::to_value(b),
            ContentBlock::ToolUse(b) => serde_json::to_value(b),
            ContentBlock::ToolResult(b) => serde_json::to_value(b),
            ContentBlock::Thinking(b) => serde_json::to_value(b),
        };
        let mut out = Extra::new();
        out.insert("type".into(), Value::String(self.kind().to_owned()));
        match body.map_err(serde::ser::Error::custom)? {
            Value::Object(m) => out.extend(m),
            _ => return Err(serde::ser::Error::custom("a content block is an object")),
        }
        out.serialize(s)
    }
}

impl<'de> Deserialize<'de> for ContentBlock {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = Extra::deserialize(d)?;
        let kind = match map.get("type") {
            Some(Value::String(k)) => k.clone(),
            _ => return Err(D::Error::custom("content block without a string `type`")),
        };
        fn typed<T: serde::de::DeserializeOwned, E: serde::de::Error>(
            mut map: Extra,
            kind: &str,
        ) -> Result<T, E> {
            map.remove("type");
            serde_json::from_value(Value::Object(map))
                .map_err(|e| E::custom(format!("invalid `{kind}` block: {e}")))
        }
        Ok(match kind.as_str() {
            "text" => ContentBlock::Text(typed(map, &kind)?),
            "image" => ContentBlock::Image(typed(map, &kind)?),
            "tool_use" => ContentBlock::ToolUse(typed(map, &kind)?),
            "tool_result" => ContentBlock::ToolResult(typed(map, &kind)?),
            "thinking" => ContentBlock::Thinking(typed(map, &kind)?),
            // `type` stays in the map: an Other block is its whole JSON.
            _ => ContentBlock::Other(map),
        })
    }
}

/// A client tool (`input_schema`), or a server tool (`type:
/// web_search_20250305`, ...) whose body stays in `extra`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_schema: Option<Value>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `tool_choice`: `auto`, `any`, `none`, or `tool` with a `name`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ToolChoice {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_parallel_tool_use: Option<bool>,
    #[serde(flatten)]
    pub extra: Extra,
}

pub mod tool_choice_type {
    pub const AUTO: &str = "auto";
    pub const ANY: &str = "any";
    pub const NONE: &str = "none";
    pub const TOOL: &str = "tool";
}

// --- response ------------------------------------------------------------

/// A complete answer (`type: message`), also the `message` of a stream's
/// `message_start` event.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MessagesResponse {
    pub id: String,
    #[serde(rename = "type", default = "message_type")]
    pub kind: String,
    #[serde(default = "assistant_role")]
    pub role: String,
    #[serde(default)]
    pub content: Vec<ContentBlock>,
    pub model: String,
    /// Serialized even when null: SDKs read the key.
    #[serde(default)]
    pub stop_reason: Option<String>,
    #[serde(default)]
    pub stop_sequence: Option<String>,
    #[serde(default)]
    pub usage: Usage,
    #[serde(flatten)]
    pub extra: Extra,
}

fn message_type() -> String {
    "message".into()
}

fn assistant_role() -> String {
    role::ASSISTANT.into()
}

/// Token usage. Every field is optional because `message_delta` events
/// carry only some of them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_creation_input_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read_input_tokens: Option<u32>,
    #[serde(flatten)]
    pub extra: Extra,
}

// --- stream --------------------------------------------------------------

/// One SSE event's `data`, tagged by `type` (which repeats the `event:`
/// name). Event types added later decode as [`StreamEvent::Unknown`], which
/// Anthropic's versioning policy says clients must ignore.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamEvent {
    MessageStart {
        message: MessagesResponse,
    },
    ContentBlockStart {
        index: u32,
        content_block: ContentBlock,
    },
    ContentBlockDelta {
        index: u32,
        delta: BlockDelta,
    },
    ContentBlockStop {
        index: u32,
    },
    MessageDelta {
        delta: MessageDeltaBody,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        usage: Option<Usage>,
    },
    MessageStop,
    Ping,
    Error {
        error: ErrorDetail,
    },
    #[serde(other)]
    Unknown,
}

impl StreamEvent {
    /// The SSE `event:` name of this event.
    pub fn name(&self) -> &'static str {
        match self {
            StreamEvent::MessageStart { .. } => "message_start",
            StreamEvent::ContentBlockStart { .. } => "content_block_start",
            StreamEvent::ContentBlockDelta { .. } => "content_block_delta",
            StreamEvent::ContentBlockStop { .. } => "content_block_stop",
            StreamEvent::MessageDelta { .. } => "message_delta",
            StreamEvent::MessageStop => "message_stop",
            StreamEvent::Ping => "ping",
            StreamEvent::Error { .. } => "error",
            StreamEvent::Unknown => "unknown",
        }
    }
}

/// The `delta` of a `content_block_delta` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BlockDelta {
    TextDelta {
        text: String,
    },
    InputJsonDelta {
        partial_json: String,
    },
    ThinkingDelta {
        thinking: String,
    },
    SignatureDelta {
        signature: String,
    },
    /// `citations_delta` and later delta types.
    #[serde(other)]
    Other,
}

/// The `delta` of a `message_delta` event.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MessageDeltaBody {
    #[serde(default)]
    pub stop_reason: Option<String>,
    #[serde(default)]
    pub stop_sequence: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

// --- errors --------------------------------------------------------------

/// `{"type": "error", "error": {"type": ..., "message": ...}}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ErrorResponse {
    #[serde(rename = "type", default = "error_type")]
    pub kind: String,
    pub error: ErrorDetail,
    #[serde(flatten)]
    pub extra: Extra,
}

fn error_type() -> String {
    "error".into()
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub message: String,
    #[serde(flatten)]
    pub extra: Extra,
}

impl ErrorResponse {
    pub fn new(kind: &str, message: impl Into<String>) -> Self {
        Self {
            kind: error_type(),
            error: ErrorDetail {
                kind: kind.to_owned(),
                message: message.into(),
                extra: Extra::new(),
            },
            extra: Extra::new(),
        }
    }
}

/// Anthropic's error `type`s.
pub mod error_type {
    pub const INVALID_REQUEST: &str = "invalid_request_error";
    pub const AUTHENTICATION: &str = "authentication_error";
    pub const PERMISSION: &str = "permission_error";
    pub const NOT_FOUND: &str = "not_found_error";
    pub const REQUEST_TOO_LARGE: &str = "request_too_large";
    pub const RATE_LIMIT: &str = "rate_limit_error";
    pub const API: &str = "api_error";
    pub const TIMEOUT: &str = "timeout_error";
    pub const OVERLOADED: &str = "overloaded_error";
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn blocks_round_trip_and_unknown_blocks_stay_whole() {
        let v = json!([
            {"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}},
            {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}},
            {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}},
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "ok"},
            {"type": "thinking", "thinking": "hmm", "signature": "sig"},
            {"type": "redacted_thinking", "data": "xyz"}
        ]);
        let blocks: Vec<ContentBlock> = serde_json::from_value(v.clone()).unwrap();
        assert!(matches!(blocks[5], ContentBlock::Other(_)));
        assert_eq!(serde_json::to_value(&blocks).unwrap(), v);
        assert!(serde_json::from_value::<ContentBlock>(json!({"type": "text"})).is_err());
        assert!(serde_json::from_value::<ContentBlock>(json!({"text": "x"})).is_err());
    }

    #[test]
    fn unknown_events_and_deltas_decode() {
        let e: StreamEvent = serde_json::from_value(json!({"type": "brand_new", "x": 1})).unwrap();
        assert_eq!(e, StreamEvent::Unknown);
        let e: StreamEvent = serde_json::from_value(json!({"type": "content_block_delta", "index": 0, "delta": {"type": "citations_delta", "citation": {}}})).unwrap();
        assert!(matches!(
            e,
            StreamEvent::ContentBlockDelta {
                delta: BlockDelta::Other,
                ..
            }
        ));
    }
}
