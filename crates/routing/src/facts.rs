//! What routing needs to know about a request: its rough size and the
//! capabilities it needs.

use prost_types::value::Kind;
use prost_types::{Struct, Value};
use switchyard_config::Capability;
use switchyard_proto::gateway::v1::content_part::Part;
use switchyard_proto::gateway::v1::{ChatSpec, ContentPart, response_format};

use crate::Caps;

/// Text bytes per token. English averages about 4 characters per token;
/// counting UTF-8 bytes rather than characters keeps scripts with multi-byte
/// characters (which tokenize denser) from being undercounted badly.
const BYTES_PER_TOKEN: usize = 4;
/// Role markers and separators the chat template adds around each message.
const TOKENS_PER_MESSAGE: usize = 4;
/// The template's priming of the assistant's reply.
const TOKENS_PER_REPLY: usize = 3;
/// The wrapper around each tool definition.
const TOKENS_PER_TOOL: usize = 8;
/// An image at `detail: low` (OpenAI's fixed cost).
const TOKENS_PER_LOW_IMAGE: usize = 85;
/// Any other image: OpenAI's cost for a 1024x1024 picture at high detail
/// (85 + 4 tiles x 170). Image URLs and base64 data are never counted as
/// text: a data URL's size says little about its token cost.
const TOKENS_PER_IMAGE: usize = 765;
/// Parts of a kind the canonical model does not name (audio, files) that
/// carry no `text`: a token cost cannot be told from their bytes, so they
/// count a little rather than by size.
const TOKENS_PER_OTHER_PART: usize = 85;

/// The facts about one request that routing decides on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RequestFacts {
    /// An estimate of the prompt's size in tokens; see
    /// [`RequestFacts::from_spec`].
    pub estimated_prompt_tokens: u32,
    /// The client's cap on generated tokens, when it gave one.
    pub max_output_tokens: Option<u32>,
    /// Capabilities a target must have to serve the request.
    pub needs: Caps,
}

impl RequestFacts {
    /// Facts of a canonical request.
    ///
    /// The token count is an estimate, cheap enough for every request: about
    /// 4 bytes of text per token over message text, tool calls, tool
    /// definitions and the response schema, plus a small fixed overhead per
    /// message and per tool and a fixed cost per image. It leans low on
    /// purpose: a route wrongly filtered out turns a servable request into
    /// a 400, while an underestimate only costs an upstream "context too
    /// long" answer, which falls back to a larger window anyway. A real
    /// tokenizer comes with the pricing work.
    pub fn from_spec(spec: &ChatSpec) -> Self {
        let mut needs = Caps::NONE;
        let mut text_bytes = 0usize;
        let mut fixed_tokens = TOKENS_PER_REPLY;

        for m in &spec.messages {
            fixed_tokens += TOKENS_PER_MESSAGE;
            text_bytes += m.name.len() + m.tool_call_id.len();
            for call in &m.tool_calls {
                text_bytes += call.name.len() + call.arguments.len();
            }
            for part in &m.content {
                match part_cost(part) {
                    PartCost::Text(bytes) => text_bytes += bytes,
                    PartCost::Image(tokens) => {
                        needs.insert(Capability::Vision);
                        fixed_tokens += tokens;
                    }
                    PartCost::Other(tokens) => fixed_tokens += tokens,
                }
            }
        }

        if !spec.tools.is_empty() {
            needs.insert(Capability::Tools);
        }
        for tool in &spec.tools {
            fixed_tokens += TOKENS_PER_TOOL;
            text_bytes += tool.name.len() + tool.description.len();
            text_bytes += tool.parameters.as_ref().map_or(0, struct_json_len);
        }

        if let Some(rf) = &spec.response_format
            && rf.r#type == response_format::Type::JsonSchema as i32
        {
            needs.insert(Capability::JsonSchema);
            text_bytes += rf.schema_name.len() + rf.schema.as_ref().map_or(0, struct_json_len);
        }

        let tokens = text_bytes
            .div_ceil(BYTES_PER_TOKEN)
            .saturating_add(fixed_tokens);
        RequestFacts {
            estimated_prompt_tokens: u32::try_from(tokens).unwrap_or(u32::MAX),
            max_output_tokens: spec.max_tokens,
            needs,
        }
    }

    /// Prompt plus the most the reply may take: what must fit a context
    /// window. Without a client cap only the prompt is known to be needed.
    pub fn needed_window(&self) -> u64 {
        u64::from(self.estimated_prompt_tokens) + u64::from(self.max_output_tokens.unwrap_or(0))
    }
}

enum PartCost {
    Text(usize),
    Image(usize),
    Other(usize),
}

fn part_cost(part: &ContentPart) -> PartCost {
    match &part.part {
        Some(Part::Text(t)) => PartCost::Text(t.len()),
        Some(Part::ImageUrl(img)) => PartCost::Image(image_tokens(&img.detail)),
        Some(Part::Other(s)) => other_part_cost(s),
        None => PartCost::Other(0),
    }
}

fn image_tokens(detail: &str) -> usize {
    if detail == "low" {
        TOKENS_PER_LOW_IMAGE
    } else {
        TOKENS_PER_IMAGE
    }
}

/// A part kept as JSON: an image in another API's shape (Anthropic `image`,
/// Responses `input_image`) needs vision; one with `text` counts its text.
fn other_part_cost(s: &Struct) -> PartCost {
    let string_field = |name: &str| match s.fields.get(name).and_then(|v| v.kind.as_ref()) {
        Some(Kind::StringValue(v)) => Some(v.as_str()),
        _ => None,
    };
    if let Some("image" | "image_url" | "input_image") = string_field("type") {
        let detail = string_field("detail").unwrap_or_default();
        return PartCost::Image(image_tokens(detail));
    }
    match string_field("text") {
        Some(text) => PartCost::Text(text.len()),
        None => PartCost::Other(TOKENS_PER_OTHER_PART),
    }
}

/// About how long `s` is as JSON text, without building the text. Numbers
/// count a typical width; exactness does not matter at 4 bytes per token.
fn struct_json_len(s: &Struct) -> usize {
    2 + s
        .fields
        .iter()
        .map(|(k, v)| k.len() + 4 + value_json_len(v))
        .sum::<usize>()
}

fn value_json_len(v: &Value) -> usize {
    match &v.kind {
        None | Some(Kind::NullValue(_)) => 4,
        Some(Kind::NumberValue(_)) => 4,
        Some(Kind::BoolValue(_)) => 5,
        Some(Kind::StringValue(s)) => s.len() + 2,
        Some(Kind::StructValue(s)) => struct_json_len(s),
        Some(Kind::ListValue(l)) => {
            2 + l
                .values
                .iter()
                .map(|v| value_json_len(v) + 1)
                .sum::<usize>()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_proto::gateway::v1::{ImageUrl, Message, ResponseFormat, Role, Tool, ToolCall};

    fn text(t: &str) -> ContentPart {
        ContentPart {
            part: Some(Part::Text(t.into())),
            extra: None,
        }
    }

    fn message(parts: Vec<ContentPart>) -> Message {
        Message {
            role: Role::User as i32,
            content: parts,
            ..Default::default()
        }
    }

    fn spec(messages: Vec<Message>) -> ChatSpec {
        ChatSpec {
            model: "m".into(),
            messages,
            ..Default::default()
        }
    }

    fn string(s: &str) -> Value {
        Value {
            kind: Some(Kind::StringValue(s.into())),
        }
    }

    fn object(fields: &[(&str, Value)]) -> Struct {
        Struct {
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        }
    }

    #[test]
    fn text_counts_four_bytes_per_token_plus_overheads() {
        let f = RequestFacts::from_spec(&spec(vec![message(vec![text(&"a".repeat(400))])]));
        assert_eq!(
            f.estimated_prompt_tokens,
            100 + TOKENS_PER_MESSAGE as u32 + TOKENS_PER_REPLY as u32
        );
        assert_eq!(f.needs, Caps::NONE);
        assert_eq!(f.max_output_tokens, None);

        // Two messages: two overheads, text summed before rounding up.
        let f = RequestFacts::from_spec(&spec(vec![
            message(vec![text("abc")]),
            message(vec![text("de")]),
        ]));
        assert_eq!(f.estimated_prompt_tokens, 2 + 2 * 4 + 3);
    }

    #[test]
    fn a_long_text_estimates_within_its_rough_size() {
        // ~9000 tokens of English-like text.
        let f = RequestFacts::from_spec(&spec(vec![message(vec![text(
            &"the quick brown fox jumps ".repeat(1385),
        )])]));
        assert!((9000..9020).contains(&f.estimated_prompt_tokens), "{f:?}");
    }

    #[test]
    fn tools_and_tool_calls_count_and_need_tools() {
        let params = object(&[
            ("type", string("object")),
            (
                "properties",
                Value {
                    kind: Some(Kind::StructValue(object(&[(
                        "city",
                        string("x".repeat(100).as_str()),
                    )]))),
                },
            ),
        ]);
        let mut s = spec(vec![Message {
            role: Role::Assistant as i32,
            tool_calls: vec![ToolCall {
                id: "c1".into(),
                name: "weather".into(),
                arguments: "{\"city\":\"Paris\"}".into(),
            }],
            ..Default::default()
        }]);
        let base = RequestFacts::from_spec(&s).estimated_prompt_tokens;
        assert!(base > 7, "tool call text counts: {base}");
        s.tools = vec![Tool {
            name: "weather".into(),
            description: "d".repeat(40),
            parameters: Some(params),
            strict: None,
            extra: None,
        }];
        let f = RequestFacts::from_spec(&s);
        assert_eq!(f.needs, Caps::TOOLS);
        // name 7 + description 40 + schema > 100 bytes: at least 37 tokens.
        assert!(
            f.estimated_prompt_tokens >= base + 37 + TOKENS_PER_TOOL as u32,
            "{f:?}"
        );
    }

    #[test]
    fn images_need_vision_and_cost_a_fixed_amount() {
        let data_url = format!("data:image/png;base64,{}", "A".repeat(100_000));
        let f = RequestFacts::from_spec(&spec(vec![message(vec![
            ContentPart {
                part: Some(Part::ImageUrl(ImageUrl {
                    url: data_url,
                    detail: String::new(),
                })),
                extra: None,
            },
            ContentPart {
                part: Some(Part::ImageUrl(ImageUrl {
                    url: "https://x/y.png".into(),
                    detail: "low".into(),
                })),
                extra: None,
            },
        ])]));
        assert_eq!(f.needs, Caps::VISION);
        assert_eq!(f.estimated_prompt_tokens, 765 + 85 + 4 + 3);
    }

    #[test]
    fn other_parts_in_image_shapes_need_vision() {
        let anthropic_image = object(&[("type", string("image")), ("source", string("..."))]);
        let f = RequestFacts::from_spec(&spec(vec![message(vec![ContentPart {
            part: Some(Part::Other(anthropic_image)),
            extra: None,
        }])]));
        assert_eq!(f.needs, Caps::VISION);

        let audio = object(&[
            ("type", string("input_audio")),
            ("data", string(&"A".repeat(10_000))),
        ]);
        let f = RequestFacts::from_spec(&spec(vec![message(vec![ContentPart {
            part: Some(Part::Other(audio)),
            extra: None,
        }])]));
        assert_eq!(f.needs, Caps::NONE);
        assert_eq!(
            f.estimated_prompt_tokens,
            85 + 4 + 3,
            "binary data is not text"
        );

        let text_part = object(&[
            ("type", string("input_text")),
            ("text", string(&"a".repeat(40))),
        ]);
        let f = RequestFacts::from_spec(&spec(vec![message(vec![ContentPart {
            part: Some(Part::Other(text_part)),
            extra: None,
        }])]));
        assert_eq!(f.estimated_prompt_tokens, 10 + 4 + 3);
    }

    #[test]
    fn json_schema_response_format_needs_json_schema_and_counts_the_schema() {
        let mut s = spec(vec![message(vec![text("hi")])]);
        s.max_tokens = Some(500);
        s.response_format = Some(ResponseFormat {
            r#type: response_format::Type::JsonObject as i32,
            ..Default::default()
        });
        let plain = RequestFacts::from_spec(&s);
        assert_eq!(plain.needs, Caps::NONE, "json_object is not json_schema");
        assert_eq!(plain.max_output_tokens, Some(500));
        assert_eq!(
            plain.needed_window(),
            u64::from(plain.estimated_prompt_tokens) + 500
        );

        s.response_format = Some(ResponseFormat {
            r#type: response_format::Type::JsonSchema as i32,
            schema_name: "answer".into(),
            schema: Some(object(&[("description", string(&"x".repeat(400)))])),
            strict: Some(true),
        });
        let f = RequestFacts::from_spec(&s);
        assert_eq!(f.needs, Caps::JSON_SCHEMA);
        assert!(f.estimated_prompt_tokens >= plain.estimated_prompt_tokens + 100);
    }
}
