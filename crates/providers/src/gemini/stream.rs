//! Gemini's `streamGenerateContent?alt=sse` stream as canonical chunks.
//!
//! - Each `data:` event is a whole `GenerateContentResponse` fragment; there
//!   is no end marker: the stream is complete when the body ends after a
//!   candidate reported a `finishReason` (or the prompt was blocked), and
//!   truncated (`Err`) otherwise.
//! - Text parts become content deltas, `thought` parts reasoning deltas. The
//!   first delta of each candidate names the assistant role.
//! - A `functionCall` part arrives whole; it becomes two tool-call deltas in
//!   two chunks, id and name first, then the arguments, the way OpenAI
//!   streams them, so clients that accumulate deltas work unchanged.
//! - The finish reason rides on the candidate's last delta of its final
//!   fragment.
//! - Every fragment carries cumulative `usageMetadata`; the last one is
//!   delivered on a final chunk of its own with no choices (the
//!   [`crate::ChunkStream`] contract).
//! - An `error` object in the stream becomes one `Err` item, classified like
//!   the same error over HTTP, and ends the stream.

use std::collections::{HashMap, VecDeque};

use futures_util::Stream;
use switchyard_proto::gateway::v1::{ChatChunk, ChoiceDelta, Role, ToolCallDelta, Usage};

use super::{convert, error::classify_error_body, wire};
use crate::ProviderError;
use crate::sse::{Sse, SseEvents, undecodable};

/// Per-candidate progress.
#[derive(Debug, Default)]
struct CandidateState {
    /// The role was announced.
    started: bool,
    /// Function calls so far (the next call's tool-call index).
    calls: u32,
}

/// Turns fragments into chunks; shared by the SSE adapter and the JSON-array
/// answer some proxies give to a stream request.
#[derive(Debug)]
pub struct Assembler {
    created: i64,
    id: String,
    model: String,
    candidates: HashMap<u32, CandidateState>,
    /// Function calls of the whole answer: ids are unique per answer.
    calls_seen: usize,
    usage: Option<Usage>,
    finished: bool,
}

impl Assembler {
    pub fn new(created: i64) -> Self {
        Self {
            created,
            id: String::new(),
            model: String::new(),
            candidates: HashMap::new(),
            calls_seen: 0,
            usage: None,
            finished: false,
        }
    }

    /// Whether a finish reason (or a prompt block) was seen: a body ending
    /// now is complete.
    pub fn finished(&self) -> bool {
        self.finished
    }

    fn chunk(&self, choices: Vec<ChoiceDelta>) -> ChatChunk {
        ChatChunk {
            id: self.id.clone(),
            model: self.model.clone(),
            created: self.created,
            choices,
            usage: None,
            system_fingerprint: String::new(),
            native_event: None,
        }
    }

    /// The chunks of one fragment, in order.
    pub fn fragment(&mut self, resp: wire::GenerateContentResponse) -> Vec<ChatChunk> {
        if let Some(id) = resp.response_id.filter(|s| !s.is_empty()) {
            self.id = id;
        }
        if let Some(m) = resp.model_version.filter(|s| !s.is_empty()) {
            self.model = m;
        }
        if let Some(u) = &resp.usage_metadata {
            self.usage = Some(convert::usage_from_wire(u));
        }
        let mut out = Vec::new();
        if resp.candidates.is_empty() {
            if let Some(reason) = resp
                .prompt_feedback
                .as_ref()
                .and_then(|f| f.block_reason.as_deref())
            {
                self.finished = true;
                let choice = convert::blocked_choice(reason);
                out.push(self.chunk(vec![ChoiceDelta {
                    index: choice.index,
                    role: Role::Assistant as i32,
                    finish_reason: choice.finish_reason,
                    ..Default::default()
                }]));
            }
            return out;
        }
        for (position, c) in resp.candidates.into_iter().enumerate() {
            let index = c
                .index
                .unwrap_or_else(|| u32::try_from(position).unwrap_or(u32::MAX));
            let mut deltas = self.candidate_deltas(index, c);
            if let Some(last) = deltas.pop() {
                out.extend(deltas.into_iter().map(|d| self.chunk(vec![d])));
                out.push(self.chunk(vec![last]));
            }
        }
        out
    }

    /// One candidate's deltas: text and reasoning together, then two per
    /// function call; the finish reason on the last.
    fn candidate_deltas(&mut self, index: u32, c: wire::Candidate) -> Vec<ChoiceDelta> {
        let mut text = String::new();
        let mut reasoning = String::new();
        let mut calls = Vec::new();
        for part in c.content.map(|c| c.parts).unwrap_or_default() {
            if let Some(f) = part.function_call {
                calls.push(f);
            } else if let Some(t) = &part.text {
                if part.is_thought() {
                    reasoning.push_str(t);
                } else {
                    text.push_str(t);
                }
            }
        }
        let state = self.candidates.entry(index).or_default();
        let mut deltas = Vec::new();
        if !text.is_empty() || !reasoning.is_empty() {
            deltas.push(ChoiceDelta {
                index,
                content: (!text.is_empty()).then_some(text),
                reasoning_content: (!reasoning.is_empty()).then_some(reasoning),
                ..Default::default()
            });
        }
        for f in calls {
            let call_index = state.calls;
            state.calls += 1;
            let id = convert::call_id(f.id.as_deref(), self.calls_seen);
            self.calls_seen += 1;
            deltas.push(ChoiceDelta {
                index,
                tool_calls: vec![ToolCallDelta {
                    index: call_index,
                    id,
                    name: f.name,
                    arguments: String::new(),
                }],
                ..Default::default()
            });
            deltas.push(ChoiceDelta {
                index,
                tool_calls: vec![ToolCallDelta {
                    index: call_index,
                    arguments: convert::arguments_text(f.args.as_ref()),
                    ..Default::default()
                }],
                ..Default::default()
            });
        }
        if let Some(reason) = c.finish_reason.as_deref() {
            self.finished = true;
            let finish = convert::finish_reason_from_wire(Some(reason), state.calls > 0);
            if deltas.is_empty() {
                deltas.push(ChoiceDelta {
                    index,
                    ..Default::default()
                });
            }
            if let Some(last) = deltas.last_mut() {
                last.finish_reason = finish as i32;
            }
        }
        if let Some(first) = deltas.first_mut()
            && !state.started
        {
            state.started = true;
            first.role = Role::Assistant as i32;
        }
        deltas
    }

    /// The usage chunk that ends a stream, when the upstream reported usage.
    pub fn end(&mut self) -> Option<ChatChunk> {
        let usage = self.usage.take()?;
        Some(ChatChunk {
            usage: Some(usage),
            ..self.chunk(Vec::new())
        })
    }
}

/// Canonical chunks from an SSE byte stream (reqwest's `bytes_stream()`, or
/// any stream of byte buffers).
pub type SseChunks<S> = Sse<S, State>;

/// The stream's state between events, apart from the byte source.
pub struct State {
    assembler: Assembler,
    pending: VecDeque<ChatChunk>,
    done: bool,
}

impl<S, B, E> SseChunks<S>
where
    S: Stream<Item = Result<B, E>>,
    B: AsRef<[u8]>,
{
    pub fn new(bytes: S, created: i64) -> Self {
        let state = State {
            assembler: Assembler::new(created),
            pending: VecDeque::new(),
            done: false,
        };
        Self::with_state(bytes, state)
    }
}

impl SseEvents for State {
    fn done(&self) -> bool {
        self.done
    }

    fn queued(&mut self) -> Option<ChatChunk> {
        self.pending.pop_front()
    }

    fn fail(&mut self, e: ProviderError) -> Option<Result<ChatChunk, ProviderError>> {
        self.done = true;
        self.pending.clear();
        Some(Err(e))
    }

    fn on_close(&mut self) -> Option<Result<ChatChunk, ProviderError>> {
        if !self.assembler.finished() {
            return self.fail(ProviderError::Connection(
                "the upstream stream ended before it finished (no finishReason)".into(),
            ));
        }
        self.done = true;
        self.assembler.end().map(Ok)
    }

    /// Queues the chunks of one `data:` payload, or ends the stream in error.
    fn on_event(&mut self, _event: &str, data: &str) -> Option<Result<ChatChunk, ProviderError>> {
        let resp: wire::GenerateContentResponse = match serde_json::from_str(data) {
            Ok(r) => r,
            Err(e) => return self.fail(undecodable(e, data)),
        };
        if resp.extra.contains_key("error") {
            return self.fail(classify_error_body(data.as_bytes()));
        }
        self.pending.extend(self.assembler.fragment(resp));
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use switchyard_proto::gateway::v1::FinishReason;

    type Item = Result<ChatChunk, ProviderError>;

    async fn parse_bytes(pieces: Vec<Vec<u8>>) -> Vec<Item> {
        let bytes: Vec<Result<Vec<u8>, std::io::Error>> = pieces.into_iter().map(Ok).collect();
        SseChunks::new(futures_util::stream::iter(bytes), 7)
            .collect()
            .await
    }

    async fn parse(pieces: &[&str]) -> Vec<Item> {
        parse_bytes(pieces.iter().map(|p| p.as_bytes().to_vec()).collect()).await
    }

    /// A stream as Gemini sends it (CRLF line ends), with a thought, text in
    /// three fragments, cumulative usage, and the finish on the last text.
    const RECORDED: &str = concat!(
        "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Thinking about it\",\"thought\": true}],\"role\": \"model\"},\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 8,\"totalTokenCount\": 8},\"modelVersion\": \"gemini-2.5-flash\",\"responseId\": \"resp-1\"}\r\n\r\n",
        "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Héllo\"}],\"role\": \"model\"},\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 8,\"totalTokenCount\": 8},\"modelVersion\": \"gemini-2.5-flash\",\"responseId\": \"resp-1\"}\r\n\r\n",
        "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \" wörld\"}],\"role\": \"model\"},\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 8,\"totalTokenCount\": 8},\"modelVersion\": \"gemini-2.5-flash\",\"responseId\": \"resp-1\"}\r\n\r\n",
        "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"!\"}],\"role\": \"model\"},\"finishReason\": \"STOP\",\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 8,\"candidatesTokenCount\": 4,\"totalTokenCount\": 17,\"thoughtsTokenCount\": 5,\"cachedContentTokenCount\": 2},\"modelVersion\": \"gemini-2.5-flash\",\"responseId\": \"resp-1\"}\r\n\r\n",
    );

    fn content(items: &[Item]) -> String {
        items
            .iter()
            .filter_map(|i| i.as_ref().ok())
            .flat_map(|c| c.choices.iter().filter_map(|d| d.content.clone()))
            .collect()
    }

    #[tokio::test]
    async fn a_recorded_stream() {
        let items = parse(&[RECORDED]).await;
        let chunks: Vec<ChatChunk> = items.into_iter().map(Result::unwrap).collect();
        assert_eq!(chunks.len(), 5);
        assert_eq!(chunks[0].choices[0].role(), Role::Assistant);
        assert_eq!(
            chunks[0].choices[0].reasoning_content.as_deref(),
            Some("Thinking about it")
        );
        assert!(
            chunks[1..4]
                .iter()
                .all(|c| c.choices[0].role() == Role::Unspecified)
        );
        assert_eq!(
            content(&chunks.iter().cloned().map(Ok).collect::<Vec<_>>()),
            "Héllo wörld!"
        );
        assert_eq!(chunks[3].choices[0].finish_reason(), FinishReason::Stop);
        let last = &chunks[4];
        assert!(last.choices.is_empty());
        assert_eq!(
            (last.id.as_str(), last.model.as_str(), last.created),
            ("resp-1", "gemini-2.5-flash", 7)
        );
        let u = last.usage.unwrap();
        assert_eq!(
            (
                u.prompt_tokens,
                u.completion_tokens,
                u.total_tokens,
                u.reasoning_tokens,
                u.cached_prompt_tokens
            ),
            (8, 9, 17, 5, 2)
        );
    }

    /// The parser must not care where reads split the bytes: at every
    /// offset (inside a CRLF, inside a multi-byte character), and one byte
    /// at a time.
    #[tokio::test]
    async fn splitting_the_bytes_anywhere_changes_nothing() {
        let whole = RECORDED.as_bytes();
        let expected = parse_bytes(vec![whole.to_vec()]).await;
        assert!(expected.iter().all(Result::is_ok));
        for cut in 0..=whole.len() {
            let got = parse_bytes(vec![whole[..cut].to_vec(), whole[cut..].to_vec()]).await;
            assert_eq!(got, expected, "split at byte {cut}");
        }
        let bytewise = parse_bytes(whole.iter().map(|b| vec![*b]).collect()).await;
        assert_eq!(bytewise, expected);
    }

    #[tokio::test]
    async fn garbage_is_an_error_never_a_panic() {
        // A deterministic pseudo-random byte soup (no rand dependency).
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        for round in 0..200 {
            let len = 1 + (round * 7) % 300;
            let mut bytes = Vec::with_capacity(len);
            for _ in 0..len {
                seed = seed
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                bytes.push((seed >> 56) as u8);
            }
            if round % 2 == 0 {
                bytes.splice(0..0, b"data: ".iter().copied());
                bytes.extend_from_slice(b"\n\n");
            }
            let items = parse_bytes(vec![bytes]).await;
            assert!(
                matches!(items.last(), Some(Err(_))),
                "round {round}: {items:?}"
            );
        }
        for bad in [
            "data: {not json}\n\n",
            "data: {\"candidates\": 3}\n\n",
            "data: [1,2]\n\n",
        ] {
            let items = parse(&[bad]).await;
            assert!(
                matches!(items.as_slice(), [Err(ProviderError::InvalidResponse(_))]),
                "{bad}: {items:?}"
            );
        }
        let invalid_utf8 = parse_bytes(vec![b"data: {\"a\": \"\xff\"}\n\n".to_vec()]).await;
        assert!(matches!(
            invalid_utf8.as_slice(),
            [Err(ProviderError::InvalidResponse(_))]
        ));
    }

    #[tokio::test]
    async fn function_calls_stream_as_two_deltas() {
        let ev = "data: {\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"functionCall\":{\"name\":\"get_weather\",\"args\":{\"city\":\"Paris\"}}},{\"functionCall\":{\"id\":\"g-2\",\"name\":\"get_time\",\"args\":{}}}]},\"finishReason\":\"STOP\",\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":5,\"candidatesTokenCount\":3,\"totalTokenCount\":8}}\n\n";
        let chunks: Vec<ChatChunk> = parse(&[ev]).await.into_iter().map(Result::unwrap).collect();
        assert_eq!(chunks.len(), 5);
        let tc = |i: usize| &chunks[i].choices[0].tool_calls[0];
        assert_eq!(chunks[0].choices[0].role(), Role::Assistant);
        assert_eq!(
            (
                tc(0).index,
                tc(0).id.as_str(),
                tc(0).name.as_str(),
                tc(0).arguments.as_str()
            ),
            (0, "call_0", "get_weather", "")
        );
        assert_eq!(
            (tc(1).index, tc(1).id.as_str(), tc(1).arguments.as_str()),
            (0, "", "{\"city\":\"Paris\"}")
        );
        assert_eq!(
            (tc(2).index, tc(2).id.as_str(), tc(2).name.as_str()),
            (1, "g-2", "get_time")
        );
        assert_eq!((tc(3).index, tc(3).arguments.as_str()), (1, "{}"));
        assert!(
            chunks[..3]
                .iter()
                .all(|c| c.choices[0].finish_reason() == FinishReason::Unspecified)
        );
        assert_eq!(
            chunks[3].choices[0].finish_reason(),
            FinishReason::ToolCalls
        );
        assert_eq!(chunks[4].usage.unwrap().total_tokens, 8);
    }

    #[tokio::test]
    async fn errors_blocks_and_truncation() {
        let err = "data: {\"error\": {\"code\": 503, \"message\": \"The model is overloaded.\", \"status\": \"UNAVAILABLE\"}}\n\n";
        let items = parse(&[&RECORDED[..RECORDED.find("\r\n\r\n").unwrap() + 4], err]).await;
        assert_eq!(items.len(), 2);
        assert!(matches!(
            items[1],
            Err(ProviderError::Overloaded { status: 503, .. })
        ));

        let blocked = "data: {\"promptFeedback\": {\"blockReason\": \"SAFETY\"}, \"usageMetadata\": {\"promptTokenCount\": 4, \"totalTokenCount\": 4}}\n\n";
        let chunks: Vec<ChatChunk> = parse(&[blocked])
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(chunks.len(), 2);
        assert_eq!(
            chunks[0].choices[0].finish_reason(),
            FinishReason::ContentFilter
        );
        assert_eq!(chunks[1].usage.unwrap().prompt_tokens, 4);

        // No finishReason before the body ended: truncated.
        let first = &RECORDED[..RECORDED.find("\r\n\r\n").unwrap() + 4];
        let items = parse(&[first]).await;
        assert!(matches!(
            items.last(),
            Some(Err(ProviderError::Connection(_)))
        ));
        assert!(matches!(
            parse(&[]).await.as_slice(),
            [Err(ProviderError::Connection(_))]
        ));
    }
}
