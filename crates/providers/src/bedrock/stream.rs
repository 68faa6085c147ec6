//! ConverseStream's event-stream body as canonical chunks.
//!
//! - Each `:message-type: event` message is one Converse event, named by
//!   `:event-type`: `messageStart` (the role chunk), `contentBlockStart`
//!   (a tool call's id and name), `contentBlockDelta` (text, a piece of a
//!   tool call's input JSON, or reasoning text), `contentBlockStop`,
//!   `messageStop` (the finish reason) and `metadata` (usage).
//! - An `exception` message (`:exception-type: throttlingException`, ...)
//!   becomes one `Err` item classified like the same exception over HTTP, and
//!   ends the stream; so does a frame that fails its CRC.
//! - Usage goes on a final chunk of its own with no choices (the
//!   [`crate::ChunkStream`] contract); the first chunk with choices names the
//!   assistant role.
//! - A body that ends before `messageStop` (or inside a frame) is a truncated
//!   stream: `Err(Connection)` after what arrived.
//! - With the structured-output fallback, the forced tool's input deltas are
//!   content deltas and its `tool_use` stop is `stop`.

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures_util::Stream;
use serde::de::DeserializeOwned;
use switchyard_proto::gateway::v1::{
    ChatChunk, ChoiceDelta, FinishReason, Role, ToolCallDelta, Usage,
};

use super::convert::{self, AnswerContext};
use super::error::classify_exception;
use super::eventstream::{Decoder, Message};
use super::wire::{self, event};
use crate::ProviderError;
use crate::upstream::{body_excerpt, describe};

/// What a content block turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    /// A tool call at this canonical tool-call index.
    Tool(u32),
    /// The structured-output tool: its input is content.
    Structured,
}

pub struct ConverseChunks<S> {
    bytes: Pin<Box<S>>,
    decoder: Decoder,
    ctx: AnswerContext,
    queue: VecDeque<Result<ChatChunk, ProviderError>>,
    blocks: HashMap<u32, Block>,
    next_tool: u32,
    sent_role: bool,
    saw_stop: bool,
    usage: Option<Usage>,
    done: bool,
}

impl<S, B, E> ConverseChunks<S>
where
    S: Stream<Item = Result<B, E>>,
    B: AsRef<[u8]>,
{
    pub fn new(bytes: S, ctx: AnswerContext) -> Self {
        Self {
            bytes: Box::pin(bytes),
            decoder: Decoder::new(),
            ctx,
            queue: VecDeque::new(),
            blocks: HashMap::new(),
            next_tool: 0,
            sent_role: false,
            saw_stop: false,
            usage: None,
            done: false,
        }
    }
}

impl<S> ConverseChunks<S> {
    fn chunk(&mut self, mut delta: ChoiceDelta) -> ChatChunk {
        if !self.sent_role {
            delta.role = Role::Assistant as i32;
            self.sent_role = true;
        }
        ChatChunk {
            id: self.ctx.id.clone(),
            model: self.ctx.model.clone(),
            created: self.ctx.created,
            choices: vec![delta],
            usage: None,
            system_fingerprint: String::new(),
            native_event: None,
        }
    }

    fn emit(&mut self, delta: ChoiceDelta) {
        let c = self.chunk(delta);
        self.queue.push_back(Ok(c));
    }

    fn fail(&mut self, e: ProviderError) {
        self.done = true;
        self.queue.push_back(Err(e));
    }

    /// The end of a complete stream: the usage chunk, if usage came.
    fn finish(&mut self) {
        self.done = true;
        if let Some(u) = self.usage.take() {
            self.queue.push_back(Ok(ChatChunk {
                id: self.ctx.id.clone(),
                model: self.ctx.model.clone(),
                created: self.ctx.created,
                choices: Vec::new(),
                usage: Some(u),
                system_fingerprint: String::new(),
                native_event: None,
            }));
        }
    }

    fn decode<T: DeserializeOwned>(&mut self, msg: &Message) -> Option<T> {
        match serde_json::from_slice(&msg.payload) {
            Ok(v) => Some(v),
            Err(e) => {
                self.fail(ProviderError::InvalidResponse(format!(
                    "undecodable {} event ({e}): {}",
                    msg.header(":event-type").unwrap_or("?"),
                    body_excerpt(&msg.payload)
                )));
                None
            }
        }
    }

    fn on_message(&mut self, msg: &Message) {
        match msg.header(":message-type") {
            Some("event") => self.on_event(msg),
            Some("exception") => {
                let kind = msg
                    .header(":exception-type")
                    .unwrap_or("internalServerException");
                self.fail(classify_exception(kind, &msg.payload));
            }
            Some("error") => {
                // Transport-level errors of the event-stream protocol itself.
                let code = msg.header(":error-code").unwrap_or("error");
                let text = msg.header(":error-message").unwrap_or_default();
                self.fail(ProviderError::Upstream {
                    status: 500,
                    message: format!("{code}: {text}"),
                });
            }
            // Unknown message types are for future protocol use: skipped.
            _ => {}
        }
    }

    fn on_event(&mut self, msg: &Message) {
        match msg.header(":event-type").unwrap_or_default() {
            event::MESSAGE_START => {
                let Some(_) = self.decode::<wire::MessageStartEvent>(msg) else {
                    return;
                };
                self.emit(ChoiceDelta {
                    role: Role::Assistant as i32,
                    content: Some(String::new()),
                    ..ChoiceDelta::default()
                });
            }
            event::CONTENT_BLOCK_START => {
                let Some(ev) = self.decode::<wire::ContentBlockStartEvent>(msg) else {
                    return;
                };
                let Some(tool) = ev.start.tool_use else {
                    return;
                };
                if self.ctx.structured_tool.as_deref() == Some(tool.name.as_str()) {
                    self.blocks
                        .insert(ev.content_block_index, Block::Structured);
                    return;
                }
                let index = self.tool_index(ev.content_block_index);
                self.emit(ChoiceDelta {
                    tool_calls: vec![ToolCallDelta {
                        index,
                        id: tool.tool_use_id,
                        name: tool.name,
                        arguments: String::new(),
                    }],
                    ..ChoiceDelta::default()
                });
            }
            event::CONTENT_BLOCK_DELTA => {
                let Some(ev) = self.decode::<wire::ContentBlockDeltaEvent>(msg) else {
                    return;
                };
                let d = ev.delta;
                if let Some(text) = d.text.filter(|t| !t.is_empty()) {
                    self.emit(ChoiceDelta {
                        content: Some(text),
                        ..ChoiceDelta::default()
                    });
                }
                if let Some(input) = d.tool_use.map(|t| t.input).filter(|i| !i.is_empty()) {
                    match self.blocks.get(&ev.content_block_index).copied() {
                        Some(Block::Structured) => self.emit(ChoiceDelta {
                            content: Some(input),
                            ..ChoiceDelta::default()
                        }),
                        _ => {
                            let index = self.tool_index(ev.content_block_index);
                            self.emit(ChoiceDelta {
                                tool_calls: vec![ToolCallDelta {
                                    index,
                                    arguments: input,
                                    ..ToolCallDelta::default()
                                }],
                                ..ChoiceDelta::default()
                            });
                        }
                    }
                }
                if let Some(text) = d
                    .reasoning_content
                    .and_then(|r| r.text)
                    .filter(|t| !t.is_empty())
                {
                    self.emit(ChoiceDelta {
                        reasoning_content: Some(text),
                        ..ChoiceDelta::default()
                    });
                }
            }
            event::MESSAGE_STOP => {
                let Some(ev) = self.decode::<wire::MessageStopEvent>(msg) else {
                    return;
                };
                let mut finish = convert::finish_reason(&ev.stop_reason);
                let structured = self.blocks.values().any(|b| *b == Block::Structured);
                if structured && finish == FinishReason::ToolCalls && self.next_tool == 0 {
                    finish = FinishReason::Stop;
                }
                self.saw_stop = true;
                self.emit(ChoiceDelta {
                    finish_reason: finish as i32,
                    ..ChoiceDelta::default()
                });
            }
            event::METADATA => {
                if let Some(ev) = self.decode::<wire::MetadataEvent>(msg) {
                    self.usage = Some(convert::usage(&ev.usage));
                }
            }
            // contentBlockStop carries nothing canonical; unknown events are
            // new Converse features this gateway does not map yet.
            _ => {}
        }
    }

    /// The canonical tool-call index of a content block, allocated in order
    /// of first appearance.
    fn tool_index(&mut self, block: u32) -> u32 {
        if let Some(Block::Tool(i)) = self.blocks.get(&block) {
            return *i;
        }
        let i = self.next_tool;
        self.next_tool += 1;
        self.blocks.insert(block, Block::Tool(i));
        i
    }
}

impl<S, B, E> Stream for ConverseChunks<S>
where
    S: Stream<Item = Result<B, E>>,
    B: AsRef<[u8]>,
    E: std::error::Error + 'static,
{
    type Item = Result<ChatChunk, ProviderError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(item) = this.queue.pop_front() {
                return Poll::Ready(Some(item));
            }
            if this.done {
                return Poll::Ready(None);
            }
            match this.decoder.next_message() {
                Ok(Some(msg)) => {
                    this.on_message(&msg);
                    continue;
                }
                Err(e) => {
                    this.fail(ProviderError::InvalidResponse(format!(
                        "malformed event stream: {e}"
                    )));
                    continue;
                }
                Ok(None) => {}
            }
            match ready!(this.bytes.as_mut().poll_next(cx)) {
                Some(Ok(b)) => this.decoder.push(b.as_ref()),
                Some(Err(e)) => this.fail(ProviderError::Connection(describe(&e))),
                None => match this.decoder.finish() {
                    Err(e) => this.fail(ProviderError::Connection(format!(
                        "the upstream stream was cut: {e}"
                    ))),
                    Ok(()) if this.saw_stop => this.finish(),
                    Ok(()) => this.fail(ProviderError::Connection(
                        "the upstream stream ended before it finished (no messageStop)".into(),
                    )),
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bedrock::eventstream::{event as frame, exception};
    use futures_util::StreamExt;
    use serde_json::json;

    type Item = Result<ChatChunk, ProviderError>;

    fn ctx(structured: Option<&str>) -> AnswerContext {
        AnswerContext {
            id: "req-1".into(),
            model: "anthropic.claude-3-5-sonnet-20240620-v1:0".into(),
            created: 7,
            structured_tool: structured.map(str::to_owned),
        }
    }

    async fn parse_with(pieces: Vec<Vec<u8>>, c: AnswerContext) -> Vec<Item> {
        let bytes: Vec<Result<Vec<u8>, std::io::Error>> = pieces.into_iter().map(Ok).collect();
        ConverseChunks::new(futures_util::stream::iter(bytes), c)
            .collect()
            .await
    }

    async fn parse(pieces: Vec<Vec<u8>>) -> Vec<Item> {
        parse_with(pieces, ctx(None)).await
    }

    fn text_answer() -> Vec<Vec<u8>> {
        vec![
            frame("messageStart", &json!({"p": "abc", "role": "assistant"})),
            frame(
                "contentBlockDelta",
                &json!({"contentBlockIndex": 0, "delta": {"text": "Hel"}, "p": "ab"}),
            ),
            frame(
                "contentBlockDelta",
                &json!({"contentBlockIndex": 0, "delta": {"text": "lo"}}),
            ),
            frame("contentBlockStop", &json!({"contentBlockIndex": 0})),
            frame("messageStop", &json!({"stopReason": "end_turn"})),
            frame(
                "metadata",
                &json!({"usage": {"inputTokens": 9, "outputTokens": 2, "totalTokens": 11, "cacheReadInputTokens": 4}, "metrics": {"latencyMs": 120}}),
            ),
        ]
    }

    fn content(items: &[Item]) -> String {
        items
            .iter()
            .filter_map(|i| i.as_ref().ok())
            .flat_map(|c| c.choices.iter().filter_map(|d| d.content.clone()))
            .collect()
    }

    #[tokio::test]
    async fn a_complete_stream() {
        let items = parse(text_answer()).await;
        assert_eq!(items.len(), 5, "{items:?}");
        assert!(items.iter().all(Result::is_ok));
        assert_eq!(content(&items), "Hello");
        let first = items[0].as_ref().unwrap();
        assert_eq!(first.choices[0].role(), Role::Assistant);
        assert_eq!(first.id, "req-1");
        assert_eq!(
            items[3].as_ref().unwrap().choices[0].finish_reason(),
            FinishReason::Stop
        );
        let last = items[4].as_ref().unwrap();
        assert!(last.choices.is_empty());
        assert_eq!(
            last.usage,
            Some(Usage {
                prompt_tokens: 13,
                completion_tokens: 2,
                total_tokens: 15,
                cached_prompt_tokens: 4,
                reasoning_tokens: 0,
                ..Usage::default()
            })
        );
    }

    #[tokio::test]
    async fn any_split_gives_the_same_chunks() {
        let whole = text_answer().concat();
        let expected = parse(vec![whole.clone()]).await;
        for cut in 0..=whole.len() {
            let got = parse(vec![whole[..cut].to_vec(), whole[cut..].to_vec()]).await;
            assert_eq!(got, expected, "cut at {cut}");
        }
        let bytes = whole.iter().map(|b| vec![*b]).collect();
        assert_eq!(parse(bytes).await, expected);
    }

    #[tokio::test]
    async fn tool_calls_stream_as_openai_deltas() {
        let items = parse(vec![
            frame("messageStart", &json!({"role": "assistant"})),
            frame("contentBlockDelta", &json!({"contentBlockIndex": 0, "delta": {"text": "Let me check."}})),
            frame("contentBlockStop", &json!({"contentBlockIndex": 0})),
            frame("contentBlockStart", &json!({"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "tooluse_a", "name": "get_weather"}}})),
            frame("contentBlockDelta", &json!({"contentBlockIndex": 1, "delta": {"toolUse": {"input": "{\"city\":"}}})),
            frame("contentBlockDelta", &json!({"contentBlockIndex": 1, "delta": {"toolUse": {"input": "\"Paris\"}"}}})),
            frame("contentBlockStop", &json!({"contentBlockIndex": 1})),
            frame("contentBlockStart", &json!({"contentBlockIndex": 2, "start": {"toolUse": {"toolUseId": "tooluse_b", "name": "get_time"}}})),
            frame("contentBlockDelta", &json!({"contentBlockIndex": 2, "delta": {"toolUse": {"input": "{}"}}})),
            frame("messageStop", &json!({"stopReason": "tool_use"})),
            frame("metadata", &json!({"usage": {"inputTokens": 1, "outputTokens": 1, "totalTokens": 2}})),
        ])
        .await;
        let deltas: Vec<&ToolCallDelta> = items
            .iter()
            .flat_map(|i| i.as_ref().unwrap().choices.iter())
            .flat_map(|d| d.tool_calls.iter())
            .collect();
        assert_eq!(deltas.len(), 5);
        assert_eq!(
            (
                deltas[0].index,
                deltas[0].id.as_str(),
                deltas[0].name.as_str()
            ),
            (0, "tooluse_a", "get_weather")
        );
        assert_eq!(
            deltas
                .iter()
                .filter(|d| d.index == 0)
                .map(|d| d.arguments.as_str())
                .collect::<String>(),
            "{\"city\":\"Paris\"}"
        );
        assert_eq!((deltas[3].index, deltas[3].id.as_str()), (1, "tooluse_b"));
        let finish = items
            .iter()
            .flat_map(|i| i.as_ref().unwrap().choices.iter())
            .map(|d| d.finish_reason())
            .rfind(|f| *f != FinishReason::Unspecified);
        assert_eq!(finish, Some(FinishReason::ToolCalls));
    }

    #[tokio::test]
    async fn the_structured_output_tool_streams_as_content() {
        let items = parse_with(
            vec![
                frame("messageStart", &json!({"role": "assistant"})),
                frame("contentBlockStart", &json!({"contentBlockIndex": 0, "start": {"toolUse": {"toolUseId": "t1", "name": "answer"}}})),
                frame("contentBlockDelta", &json!({"contentBlockIndex": 0, "delta": {"toolUse": {"input": "{\"ok\":"}}})),
                frame("contentBlockDelta", &json!({"contentBlockIndex": 0, "delta": {"toolUse": {"input": "true}"}}})),
                frame("messageStop", &json!({"stopReason": "tool_use"})),
            ],
            ctx(Some("answer")),
        )
        .await;
        assert_eq!(content(&items), "{\"ok\":true}");
        assert!(items.iter().all(|i| {
            i.as_ref()
                .unwrap()
                .choices
                .iter()
                .all(|d| d.tool_calls.is_empty())
        }));
        let last = items.last().unwrap().as_ref().unwrap();
        assert_eq!(last.choices[0].finish_reason(), FinishReason::Stop);
    }

    #[tokio::test]
    async fn reasoning_is_streamed_beside_content() {
        let items = parse(vec![
            frame("messageStart", &json!({"role": "assistant"})),
            frame("contentBlockDelta", &json!({"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "Hmm."}}})),
            frame("contentBlockDelta", &json!({"contentBlockIndex": 0, "delta": {"reasoningContent": {"signature": "sig"}}})),
            frame("contentBlockDelta", &json!({"contentBlockIndex": 1, "delta": {"text": "Yes."}})),
            frame("messageStop", &json!({"stopReason": "end_turn"})),
        ])
        .await;
        assert_eq!(items.len(), 4);
        assert_eq!(
            items[1].as_ref().unwrap().choices[0]
                .reasoning_content
                .as_deref(),
            Some("Hmm.")
        );
        assert_eq!(content(&items), "Yes.");
    }

    #[tokio::test]
    async fn exceptions_end_the_stream() {
        let items = parse(vec![
            frame("messageStart", &json!({"role": "assistant"})),
            frame(
                "contentBlockDelta",
                &json!({"contentBlockIndex": 0, "delta": {"text": "a"}}),
            ),
            exception(
                "throttlingException",
                "Too many requests, please wait before trying again.",
            ),
            frame(
                "contentBlockDelta",
                &json!({"contentBlockIndex": 0, "delta": {"text": "b"}}),
            ),
        ])
        .await;
        assert_eq!(items.len(), 3);
        assert!(matches!(items[2], Err(ProviderError::RateLimited { .. })));

        let items = parse(vec![exception(
            "modelStreamErrorException",
            "The model failed",
        )])
        .await;
        assert!(matches!(
            items.as_slice(),
            [Err(ProviderError::Upstream { status: 424, .. })]
        ));
    }

    #[tokio::test]
    async fn truncated_corrupted_and_broken_streams() {
        // No messageStop: truncated.
        let items = parse(text_answer()[..2].to_vec()).await;
        assert!(matches!(
            items.last(),
            Some(Err(ProviderError::Connection(_)))
        ));
        // Cut inside a frame.
        let mut whole = text_answer().concat();
        whole.truncate(whole.len() - 3);
        let items = parse(vec![whole]).await;
        assert!(
            matches!(items.last(), Some(Err(ProviderError::Connection(m))) if m.contains("cut"))
        );
        // A flipped byte: a CRC error, and nothing after it.
        let mut pieces = text_answer();
        pieces[1][20] ^= 0x40;
        let items = parse(pieces).await;
        assert_eq!(items.len(), 2);
        assert!(matches!(items[1], Err(ProviderError::InvalidResponse(_))));
        // An HTML error page where frames should be.
        let items = parse(vec![b"<html><body>502 Bad Gateway</body></html>".to_vec()]).await;
        assert!(matches!(
            items.as_slice(),
            [Err(ProviderError::InvalidResponse(_))]
        ));
        // A frame whose payload is not the event's JSON.
        let items = parse(vec![frame("messageStop", &json!({"stopReason": 3}))]).await;
        assert!(matches!(
            items.as_slice(),
            [Err(ProviderError::InvalidResponse(_))]
        ));
        // A transport error.
        let bytes: Vec<Result<Vec<u8>, std::io::Error>> = vec![
            Ok(text_answer()[0].clone()),
            Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "connection reset by peer",
            )),
        ];
        let items: Vec<Item> = ConverseChunks::new(futures_util::stream::iter(bytes), ctx(None))
            .collect()
            .await;
        assert!(matches!(&items[1], Err(ProviderError::Connection(m)) if m.contains("reset")));
    }
}
