//! Anthropic's SSE stream as canonical chunks.
//!
//! Anthropic streams typed events (`event: <type>` plus `data: {"type":
//! <type>, ...}`): `message_start`, then per content block
//! `content_block_start`, `content_block_delta`s and `content_block_stop`,
//! then `message_delta` (stop reason, output tokens) and `message_stop`;
//! `ping`s anywhere, an `error` event when the stream fails midway. Each
//! event becomes at most one chunk:
//! - `message_start` -> the first chunk, naming the assistant role;
//! - text deltas -> `content`; thinking deltas -> `reasoning_content`;
//! - a `tool_use` block -> a tool call at its own index (tool blocks counted
//!   from 0): id and name first, then its `input_json_delta`s as argument
//!   deltas. The structured-output tool (see [`super::convert`]) streams as
//!   `content` instead;
//! - `message_delta` -> the finish reason;
//! - `message_stop` -> the usage chunk, last, with no choices (the
//!   [`crate::ChunkStream`] contract), and the end: nothing after it is read;
//! - an `error` event -> one `Err` item, classified like the same error over
//!   HTTP, and the end.
//!
//! A body that ends without `message_stop` is complete if the stop reason
//! was seen, and otherwise truncated: `Err`.

use std::collections::HashMap;

use futures_util::Stream;
use switchyard_proto::gateway::v1::{ChatChunk, ChoiceDelta, FinishReason, Role, ToolCallDelta};

use super::convert::{finish_reason, usage_to_canonical};
use super::error::classify_error_body;
use super::wire::{self, BlockDelta, ContentBlock, StreamEvent};
use crate::ProviderError;
use crate::sse::{Sse, SseEvents, undecodable};

/// What an open content block is, by its Anthropic index.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Block {
    Text,
    /// A tool call, at this canonical tool-call index.
    Tool(u32),
    /// The structured-output tool: its input is the answer text.
    Answer,
    Thinking,
    Ignored,
}

/// The stream's state between events, apart from the byte source.
#[derive(Debug, Default)]
pub struct State {
    done: bool,
    saw_finish: bool,
    id: String,
    model: String,
    created: i64,
    usage: wire::Usage,
    blocks: HashMap<u32, Block>,
    next_tool: u32,
    answer_tool: Option<String>,
    answered_by_tool: bool,
}

/// Canonical chunks from an Anthropic SSE byte stream.
pub type SseChunks<S> = Sse<S, State>;

impl<S, B, E> SseChunks<S>
where
    S: Stream<Item = Result<B, E>>,
    B: AsRef<[u8]>,
{
    /// `answer_tool`: the structured-output tool's name, if the request used
    /// the fallback. `created`: the chunks' timestamp (Anthropic sends none).
    pub fn new(bytes: S, answer_tool: Option<String>, created: i64) -> Self {
        let state = State {
            answer_tool,
            created,
            ..State::default()
        };
        Self::with_state(bytes, state)
    }
}

type Item = Option<Result<ChatChunk, ProviderError>>;

impl State {
    fn chunk(&self, delta: ChoiceDelta) -> Item {
        Some(Ok(ChatChunk {
            id: self.id.clone(),
            model: self.model.clone(),
            created: self.created,
            choices: vec![delta],
            usage: None,
            system_fingerprint: String::new(),
            native_event: None,
        }))
    }

    fn content(&self, text: String) -> Item {
        if text.is_empty() {
            return None;
        }
        self.chunk(ChoiceDelta {
            content: Some(text),
            ..Default::default()
        })
    }

    fn tool(&self, delta: ToolCallDelta) -> Item {
        self.chunk(ChoiceDelta {
            tool_calls: vec![delta],
            ..Default::default()
        })
    }

    /// The end: the usage chunk.
    fn finish(&mut self) -> Item {
        self.done = true;
        Some(Ok(ChatChunk {
            id: self.id.clone(),
            model: self.model.clone(),
            created: self.created,
            choices: Vec::new(),
            usage: Some(usage_to_canonical(&self.usage)),
            system_fingerprint: String::new(),
            native_event: None,
        }))
    }

    /// Later usage reports replace earlier ones, field by field: Anthropic's
    /// `message_delta` usage is cumulative.
    fn merge_usage(&mut self, u: wire::Usage) {
        let wire::Usage {
            input_tokens,
            output_tokens,
            cache_creation_input_tokens,
            cache_read_input_tokens,
            extra: _,
        } = u;
        let keep = |new: Option<u32>, old: &mut Option<u32>| {
            if new.is_some() {
                *old = new;
            }
        };
        keep(input_tokens, &mut self.usage.input_tokens);
        keep(output_tokens, &mut self.usage.output_tokens);
        keep(
            cache_creation_input_tokens,
            &mut self.usage.cache_creation_input_tokens,
        );
        keep(
            cache_read_input_tokens,
            &mut self.usage.cache_read_input_tokens,
        );
    }

    fn on_block_start(&mut self, index: u32, block: ContentBlock) -> Item {
        match block {
            ContentBlock::Text(t) => {
                self.blocks.insert(index, Block::Text);
                self.content(t.text)
            }
            ContentBlock::ToolUse(t) if self.answer_tool.as_deref() == Some(t.name.as_str()) => {
                self.blocks.insert(index, Block::Answer);
                self.answered_by_tool = true;
                None
            }
            ContentBlock::ToolUse(t) => {
                let i = self.next_tool;
                self.next_tool += 1;
                self.blocks.insert(index, Block::Tool(i));
                // Anthropic starts with `input: {}` and streams the input;
                // a non-empty start input is the whole input.
                let arguments = match &t.input {
                    serde_json::Value::Object(m) if !m.is_empty() => t.input.to_string(),
                    _ => String::new(),
                };
                self.tool(ToolCallDelta {
                    index: i,
                    id: t.id,
                    name: t.name,
                    arguments,
                })
            }
            ContentBlock::Thinking(t) => {
                self.blocks.insert(index, Block::Thinking);
                (!t.thinking.is_empty())
                    .then(|| {
                        self.chunk(ChoiceDelta {
                            reasoning_content: Some(t.thinking),
                            ..Default::default()
                        })
                    })
                    .flatten()
            }
            ContentBlock::Image(_) | ContentBlock::ToolResult(_) | ContentBlock::Other(_) => {
                self.blocks.insert(index, Block::Ignored);
                None
            }
        }
    }
}

impl SseEvents for State {
    fn done(&self) -> bool {
        self.done
    }

    fn fail(&mut self, e: ProviderError) -> Item {
        self.done = true;
        Some(Err(e))
    }

    fn on_close(&mut self) -> Item {
        if self.saw_finish {
            return self.finish();
        }
        self.fail(ProviderError::Connection(
            "the upstream stream ended before it finished (no stop_reason, no message_stop)".into(),
        ))
    }

    fn on_event(&mut self, event: &str, data: &str) -> Item {
        if event == "error" {
            return self.fail(classify_error_body(data.as_bytes()));
        }
        let ev: StreamEvent = match serde_json::from_str(data) {
            Ok(ev) => ev,
            Err(e) => return self.fail(undecodable(e, data)),
        };
        match ev {
            StreamEvent::MessageStart { message } => {
                self.id = message.id;
                self.model = message.model;
                self.merge_usage(message.usage);
                self.chunk(ChoiceDelta {
                    role: Role::Assistant as i32,
                    content: Some(String::new()),
                    ..Default::default()
                })
            }
            StreamEvent::ContentBlockStart {
                index,
                content_block,
            } => self.on_block_start(index, content_block),
            StreamEvent::ContentBlockDelta { index, delta } => {
                let block = self.blocks.get(&index).copied().unwrap_or(Block::Ignored);
                match (delta, block) {
                    (BlockDelta::TextDelta { text }, _) => self.content(text),
                    (BlockDelta::InputJsonDelta { partial_json }, Block::Tool(i))
                        if !partial_json.is_empty() =>
                    {
                        self.tool(ToolCallDelta {
                            index: i,
                            arguments: partial_json,
                            ..Default::default()
                        })
                    }
                    (BlockDelta::InputJsonDelta { partial_json }, Block::Answer) => {
                        self.content(partial_json)
                    }
                    (BlockDelta::ThinkingDelta { thinking }, _) if !thinking.is_empty() => self
                        .chunk(ChoiceDelta {
                            reasoning_content: Some(thinking),
                            ..Default::default()
                        }),
                    _ => None,
                }
            }
            StreamEvent::MessageDelta { delta, usage } => {
                if let Some(u) = usage {
                    self.merge_usage(u);
                }
                let reason = delta.stop_reason?;
                self.saw_finish = true;
                let finish = finish_reason(Some(&reason), self.answered_by_tool);
                let finish = if finish == FinishReason::Unspecified {
                    // A stop reason newer than this code: the turn did end.
                    FinishReason::Stop
                } else {
                    finish
                };
                self.chunk(ChoiceDelta {
                    finish_reason: finish as i32,
                    ..Default::default()
                })
            }
            StreamEvent::MessageStop => self.finish(),
            StreamEvent::Error { .. } => self.fail(classify_error_body(data.as_bytes())),
            StreamEvent::ContentBlockStop { .. } | StreamEvent::Ping | StreamEvent::Unknown => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    type Out = Vec<Result<ChatChunk, ProviderError>>;

    async fn parse_pieces(pieces: Vec<Vec<u8>>, answer_tool: Option<&str>) -> Out {
        let bytes: Vec<Result<Vec<u8>, std::io::Error>> = pieces.into_iter().map(Ok).collect();
        SseChunks::new(
            futures_util::stream::iter(bytes),
            answer_tool.map(str::to_owned),
            7,
        )
        .collect()
        .await
    }

    async fn parse(whole: &str) -> Out {
        parse_pieces(vec![whole.as_bytes().to_vec()], None).await
    }

    /// A stream as Anthropic sends it (from the streaming docs), with a
    /// thinking block, text, two tool calls, cache usage and pings.
    pub(crate) const RECORDED: &str = concat!(
        "event: message_start\n",
        "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_01\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-sonnet-4-5\",\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":25,\"cache_creation_input_tokens\":10,\"cache_read_input_tokens\":100,\"output_tokens\":1}}}\n\n",
        "event: ping\n",
        "data: {\"type\": \"ping\"}\n\n",
        "event: content_block_start\n",
        "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\"}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"Let me see.\"}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"signature_delta\",\"signature\":\"EqQBCgIYAhIM\"}}\n\n",
        "event: content_block_stop\n",
        "data: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        "event: content_block_start\n",
        "data: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\"Héllo\"}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\" — checking.\"}}\n\n",
        "event: content_block_stop\n",
        "data: {\"type\":\"content_block_stop\",\"index\":1}\n\n",
        "event: content_block_start\n",
        "data: {\"type\":\"content_block_start\",\"index\":2,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_01\",\"name\":\"get_weather\",\"input\":{}}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\"}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"city\\\": \\\"Pa\"}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"ris\\\"}\"}}\n\n",
        "event: content_block_stop\n",
        "data: {\"type\":\"content_block_stop\",\"index\":2}\n\n",
        "event: content_block_start\n",
        "data: {\"type\":\"content_block_start\",\"index\":3,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_02\",\"name\":\"get_time\",\"input\":{}}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":3,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"tz\\\": \\\"CET\\\"}\"}}\n\n",
        "event: content_block_stop\n",
        "data: {\"type\":\"content_block_stop\",\"index\":3}\n\n",
        "event: message_delta\n",
        "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":89}}\n\n",
        "event: message_stop\n",
        "data: {\"type\":\"message_stop\"}\n\n",
    );

    #[tokio::test]
    async fn a_recorded_stream() {
        let items = parse(RECORDED).await;
        let chunks: Vec<ChatChunk> = items.into_iter().map(Result::unwrap).collect();
        let (last, body) = chunks.split_last().unwrap();
        assert_eq!(body[0].choices[0].role(), Role::Assistant);
        assert!(
            body.iter()
                .all(|c| c.id == "msg_01" && c.model == "claude-sonnet-4-5" && c.created == 7)
        );
        let deltas: Vec<&ChoiceDelta> = body.iter().flat_map(|c| &c.choices).collect();
        let text: String = deltas.iter().filter_map(|d| d.content.clone()).collect();
        assert_eq!(text, "Héllo — checking.");
        let reasoning: String = deltas
            .iter()
            .filter_map(|d| d.reasoning_content.clone())
            .collect();
        assert_eq!(reasoning, "Let me see.");
        let calls: Vec<&ToolCallDelta> = deltas.iter().flat_map(|d| &d.tool_calls).collect();
        assert_eq!(
            calls
                .iter()
                .map(|t| (
                    t.index,
                    t.id.as_str(),
                    t.name.as_str(),
                    t.arguments.as_str()
                ))
                .collect::<Vec<_>>(),
            vec![
                (0, "toolu_01", "get_weather", ""),
                (0, "", "", "{\"city\": \"Pa"),
                (0, "", "", "ris\"}"),
                (1, "toolu_02", "get_time", ""),
                (1, "", "", "{\"tz\": \"CET\"}"),
            ]
        );
        assert_eq!(
            deltas.last().unwrap().finish_reason(),
            FinishReason::ToolCalls
        );
        assert!(last.choices.is_empty());
        let u = last.usage.unwrap();
        assert_eq!(
            (
                u.prompt_tokens,
                u.cached_prompt_tokens,
                u.completion_tokens,
                u.total_tokens
            ),
            (135, 100, 89, 224)
        );
    }

    /// The parser's output does not depend on how the bytes are cut: split
    /// in two at every byte offset (inside multi-byte characters too), and
    /// one byte per read.
    #[tokio::test]
    async fn output_is_independent_of_read_boundaries() {
        let whole = RECORDED.as_bytes();
        let expected = parse(RECORDED).await;
        for cut in 0..=whole.len() {
            let pieces = vec![whole[..cut].to_vec(), whole[cut..].to_vec()];
            assert_eq!(parse_pieces(pieces, None).await, expected, "cut at {cut}");
        }
        let bytes = whole.iter().map(|b| vec![*b]).collect();
        assert_eq!(parse_pieces(bytes, None).await, expected);
    }

    #[tokio::test]
    async fn garbage_is_an_error_never_a_panic() {
        let inputs: &[&[u8]] = &[
            b"",
            b"data: {not json}\n\n",
            b"event: message_start\ndata: {\"type\":\"message_start\"}\n\n",
            b"data: {\"type\":\"content_block_delta\",\"index\":99,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"x\"}}\n\n",
            b"\xff\xfe\n\n",
            b"data: [1,2,3]\n\n",
            b"data: \"text\"\n\n",
            b"event: error\ndata: garbage\n\n",
        ];
        for input in inputs {
            let items = parse_pieces(vec![input.to_vec()], None).await;
            assert!(
                matches!(items.last(), Some(Err(_))),
                "{:?}: {items:?}",
                String::from_utf8_lossy(input)
            );
        }
        // Every prefix of a real stream, too.
        let whole = RECORDED.as_bytes();
        for cut in (0..whole.len()).step_by(7) {
            let items = parse_pieces(vec![whole[..cut].to_vec()], None).await;
            assert!(matches!(items.last(), Some(Err(_)) | Some(Ok(_))));
        }
    }

    #[tokio::test]
    async fn errors_mid_stream_end_it() {
        let head = RECORDED.split("event: content_block_start").next().unwrap();
        let err = "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";
        let items = parse(&format!("{head}{err}{RECORDED}")).await;
        assert_eq!(items.len(), 2);
        assert!(items[0].is_ok());
        assert!(matches!(
            &items[1],
            Err(ProviderError::Overloaded { status: 529, message, .. }) if message == "Overloaded"
        ));
    }

    #[tokio::test]
    async fn truncation_and_a_missing_message_stop() {
        let cut = RECORDED.split("event: message_delta").next().unwrap();
        let items = parse(cut).await;
        assert!(matches!(
            items.last(),
            Some(Err(ProviderError::Connection(_)))
        ));
        let no_stop = RECORDED.split("event: message_stop").next().unwrap();
        let items = parse(no_stop).await;
        let last = items.last().unwrap().as_ref().unwrap();
        assert_eq!(last.usage.unwrap().completion_tokens, 89);
    }

    #[tokio::test]
    async fn the_structured_output_tool_streams_as_content() {
        let events = concat!(
            "event: message_start\n",
            "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_2\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-3-5-haiku\",\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}\n\n",
            "event: content_block_start\n",
            "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_9\",\"name\":\"answer\",\"input\":{}}}\n\n",
            "event: content_block_delta\n",
            "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"a\\\":\"}}\n\n",
            "event: content_block_delta\n",
            "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"1}\"}}\n\n",
            "event: message_delta\n",
            "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":4}}\n\n",
            "event: message_stop\n",
            "data: {\"type\":\"message_stop\"}\n\n",
        );
        let items = parse_pieces(vec![events.as_bytes().to_vec()], Some("answer")).await;
        let deltas: Vec<ChoiceDelta> = items.into_iter().flat_map(|i| i.unwrap().choices).collect();
        assert!(deltas.iter().all(|d| d.tool_calls.is_empty()));
        let text: String = deltas.iter().filter_map(|d| d.content.clone()).collect();
        assert_eq!(text, "{\"a\":1}");
        assert_eq!(deltas.last().unwrap().finish_reason(), FinishReason::Stop);
    }
}
