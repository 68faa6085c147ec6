//! OpenAI's SSE stream as canonical chunks.
//!
//! - Each `data:` event is one `CreateChatCompletionStreamResponse`;
//!   `data: [DONE]` ends the stream (nothing after it is read).
//! - An `error` object in the stream (OpenAI sends `data: {"error": {...}}`,
//!   some vendors `event: error`) becomes one `Err` item, classified like the
//!   same error answered over HTTP, and ends the stream.
//! - Usage is moved to a final chunk of its own with no choices, whichever
//!   chunk the upstream put it on (vendors differ): the [`crate::ChunkStream`]
//!   contract. Chunks carrying neither choices nor usage (Azure's prompt
//!   filter results) are skipped.
//! - A body that ends without `[DONE]` is complete if a finish reason was seen
//!   (some vendors omit `[DONE]`), and otherwise a truncated stream: `Err`.

use futures_util::Stream;
use switchyard_proto::gateway::v1::{ChatChunk, FinishReason, Usage};

use super::{convert, error::classify_error_body, wire};
use crate::ProviderError;
use crate::sse::{Sse, SseEvents, undecodable};

/// Canonical chunks from an SSE byte stream (reqwest's `bytes_stream()`, or
/// any stream of byte buffers).
pub type SseChunks<S> = Sse<S, State>;

/// The stream's state between events, apart from the byte source.
#[derive(Default)]
pub struct State {
    done: bool,
    saw_finish: bool,
    usage: Option<Usage>,
    /// The last chunk's identity, for the usage chunk made at the end.
    last: ChatChunk,
}

impl<S, B, E> SseChunks<S>
where
    S: Stream<Item = Result<B, E>>,
    B: AsRef<[u8]>,
{
    pub fn new(bytes: S) -> Self {
        Self::with_state(bytes, State::default())
    }
}

impl State {
    /// The end of the stream: the usage chunk if the upstream reported usage.
    fn finish(&mut self) -> Option<Result<ChatChunk, ProviderError>> {
        self.done = true;
        let usage = self.usage.take()?;
        Some(Ok(ChatChunk {
            choices: Vec::new(),
            usage: Some(usage),
            ..std::mem::take(&mut self.last)
        }))
    }
}

impl SseEvents for State {
    fn done(&self) -> bool {
        self.done
    }

    fn fail(&mut self, e: ProviderError) -> Option<Result<ChatChunk, ProviderError>> {
        self.done = true;
        Some(Err(e))
    }

    fn on_close(&mut self) -> Option<Result<ChatChunk, ProviderError>> {
        if self.saw_finish {
            return self.finish();
        }
        self.fail(ProviderError::Connection(
            "the upstream stream ended before it finished (no finish_reason, no [DONE])".into(),
        ))
    }

    fn on_event(&mut self, event: &str, data: &str) -> Option<Result<ChatChunk, ProviderError>> {
        if data == "[DONE]" {
            return self.finish();
        }
        if event == "error" {
            return self.fail(classify_error_body(data.as_bytes()));
        }
        let chunk: wire::ChatCompletionChunk = match serde_json::from_str(data) {
            Ok(c) => c,
            Err(e) => return self.fail(undecodable(e, data)),
        };
        if chunk.extra.contains_key("error") {
            return self.fail(classify_error_body(data.as_bytes()));
        }
        let mut chunk = convert::chunk_from_wire(chunk);
        if let Some(u) = chunk.usage.take() {
            self.usage = Some(u);
        }
        if chunk
            .choices
            .iter()
            .any(|c| c.finish_reason() != FinishReason::Unspecified)
        {
            self.saw_finish = true;
        }
        self.last = ChatChunk {
            choices: Vec::new(),
            usage: None,
            ..chunk.clone()
        };
        (!chunk.choices.is_empty()).then_some(Ok(chunk))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use switchyard_proto::gateway::v1::Role;

    type Item = Result<ChatChunk, ProviderError>;

    async fn parse(pieces: &[&str]) -> Vec<Item> {
        let bytes: Vec<Result<Vec<u8>, std::io::Error>> =
            pieces.iter().map(|p| Ok(p.as_bytes().to_vec())).collect();
        SseChunks::new(futures_util::stream::iter(bytes))
            .collect()
            .await
    }

    fn chunk(content: &str) -> String {
        format!(
            r#"data: {{"id":"chatcmpl-1","object":"chat.completion.chunk","created":7,"model":"gpt-4o-mini","system_fingerprint":"fp_1","choices":[{{"index":0,"delta":{{"content":{content:?}}},"logprobs":null,"finish_reason":null}}],"usage":null}}

"#
        )
    }

    const ROLE: &str = "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":7,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null,\"obfuscation\":\"xyz\"}\n\n";
    const FINISH: &str = "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":7,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":null}\n\n";
    const USAGE: &str = "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":7,\"model\":\"gpt-4o-mini\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2,\"total_tokens\":11,\"prompt_tokens_details\":{\"cached_tokens\":4},\"completion_tokens_details\":{\"reasoning_tokens\":0}}}\n\n";
    const DONE: &str = "data: [DONE]\n\n";

    fn content(items: &[Item]) -> String {
        items
            .iter()
            .filter_map(|i| i.as_ref().ok())
            .flat_map(|c| c.choices.iter().filter_map(|d| d.content.clone()))
            .collect()
    }

    #[tokio::test]
    async fn a_complete_stream() {
        let items = parse(&[ROLE, &chunk("Hel"), &chunk("lo"), FINISH, USAGE, DONE]).await;
        assert_eq!(items.len(), 5);
        assert!(items.iter().all(Result::is_ok));
        assert_eq!(content(&items), "Hello");
        let first = items[0].as_ref().unwrap();
        assert_eq!(first.choices[0].role(), Role::Assistant);
        assert_eq!(first.model, "gpt-4o-mini");
        let last = items[4].as_ref().unwrap();
        assert!(last.choices.is_empty());
        let usage = last.usage.unwrap();
        assert_eq!(
            (
                usage.prompt_tokens,
                usage.completion_tokens,
                usage.cached_prompt_tokens
            ),
            (9, 2, 4)
        );
        assert_eq!(last.id, "chatcmpl-1");
        assert_eq!(last.created, 7);
    }

    #[tokio::test]
    async fn events_split_anywhere_and_comments_are_ignored() {
        let whole = [": keep-alive\n\n", ROLE, &chunk("Hi"), FINISH, USAGE, DONE].concat();
        // One byte per read: every boundary falls inside an event somewhere.
        let bytes: Vec<String> = whole.chars().map(String::from).collect();
        let refs: Vec<&str> = bytes.iter().map(String::as_str).collect();
        let items = parse(&refs).await;
        assert_eq!(content(&items), "Hi");
        assert_eq!(items.len(), 4);
        assert!(items.iter().all(Result::is_ok));
    }

    /// Property: wherever the byte stream is cut into two reads (even inside
    /// a multi-byte character or a CRLF), the parse is the same.
    #[tokio::test]
    async fn every_split_point_gives_the_same_chunks() {
        let whole = [ROLE, &chunk("Grüße 👋"), FINISH, USAGE, DONE]
            .concat()
            .replace("\n", "\r\n")
            .into_bytes();
        let parse_bytes = |pieces: Vec<Vec<u8>>| async move {
            let reads: Vec<Result<Vec<u8>, std::io::Error>> = pieces.into_iter().map(Ok).collect();
            SseChunks::new(futures_util::stream::iter(reads))
                .collect::<Vec<Item>>()
                .await
        };
        let reference = parse_bytes(vec![whole.clone()]).await;
        assert_eq!(content(&reference), "Grüße 👋");
        assert_eq!(reference.len(), 4);
        for cut in 1..whole.len() {
            let got = parse_bytes(vec![whole[..cut].to_vec(), whole[cut..].to_vec()]).await;
            assert_eq!(got, reference, "split at byte {cut}");
        }
    }

    /// Property: arbitrary bytes end the stream with items or an error,
    /// never a panic or a hang.
    #[tokio::test]
    async fn garbage_never_panics() {
        let mut seed: u64 = 0x5eed;
        let mut next = move || {
            // xorshift64: deterministic, so a failure reproduces.
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let alphabet = b"data: {}[]\"\n\r:,DONE\xff\x00abc";
        for _ in 0..300 {
            let len = usize::try_from(next() % 200).unwrap();
            let bytes: Vec<u8> = (0..len)
                .map(|_| alphabet[usize::try_from(next()).unwrap() % alphabet.len()])
                .collect();
            let reads: Vec<Result<Vec<u8>, std::io::Error>> =
                bytes.chunks(7).map(|c| Ok(c.to_vec())).collect();
            let items: Vec<Item> = SseChunks::new(futures_util::stream::iter(reads))
                .collect()
                .await;
            // Once an error is yielded, the stream ends.
            if let Some(i) = items.iter().position(Result::is_err) {
                assert_eq!(i, items.len() - 1);
            }
        }
    }

    #[tokio::test]
    async fn nothing_after_done_is_read() {
        let items = parse(&[ROLE, FINISH, DONE, &chunk("ghost"), "data: {not json}\n\n"]).await;
        assert_eq!(items.len(), 2);
        assert!(items.iter().all(Result::is_ok));
    }

    #[tokio::test]
    async fn usage_on_a_content_chunk_moves_to_its_own_last_chunk() {
        let with_usage = "data: {\"id\":\"c\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"!\"},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1,\"total_tokens\":4}}\n\n";
        let items = parse(&[with_usage, DONE]).await;
        assert_eq!(items.len(), 2);
        let first = items[0].as_ref().unwrap();
        assert!(first.usage.is_none());
        assert_eq!(first.choices[0].finish_reason(), FinishReason::Stop);
        let last = items[1].as_ref().unwrap();
        assert!(last.choices.is_empty());
        assert_eq!(last.usage.unwrap().total_tokens, 4);
    }

    #[tokio::test]
    async fn chunks_without_choices_or_usage_are_skipped() {
        let azure = "data: {\"choices\":[],\"created\":0,\"id\":\"\",\"model\":\"\",\"object\":\"\",\"prompt_filter_results\":[{\"prompt_index\":0,\"content_filter_results\":{}}]}\n\n";
        let items = parse(&[azure, ROLE, FINISH, DONE]).await;
        assert_eq!(items.len(), 2);
    }

    #[tokio::test]
    async fn an_error_in_the_stream_is_classified_and_ends_it() {
        let err = "data: {\"error\":{\"message\":\"The server had an error while processing your request.\",\"type\":\"server_error\",\"param\":null,\"code\":null}}\n\n";
        let items = parse(&[ROLE, &chunk("a"), err, &chunk("b"), DONE]).await;
        assert_eq!(items.len(), 3);
        assert_eq!(
            items[2],
            Err(ProviderError::Upstream {
                status: 500,
                message: "The server had an error while processing your request.".into()
            })
        );

        let named = "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";
        let items = parse(&[named]).await;
        assert!(matches!(
            items.as_slice(),
            [Err(ProviderError::Overloaded { status: 529, .. })]
        ));

        let rate = "data: {\"error\":{\"message\":\"Rate limit reached\",\"type\":\"tokens\",\"code\":\"rate_limit_exceeded\"}}\n\n";
        let items = parse(&[ROLE, rate]).await;
        assert!(matches!(items[1], Err(ProviderError::RateLimited { .. })));
    }

    #[tokio::test]
    async fn truncated_streams() {
        // Ended without a finish reason: an error after what arrived.
        let items = parse(&[ROLE, &chunk("half")]).await;
        assert_eq!(items.len(), 3);
        assert!(matches!(items[2], Err(ProviderError::Connection(_))));
        // An empty body is truncated too.
        let items = parse(&[]).await;
        assert!(matches!(
            items.as_slice(),
            [Err(ProviderError::Connection(_))]
        ));
        // Ended without [DONE] but finished: complete, usage still delivered.
        let items = parse(&[ROLE, &chunk("ok"), FINISH, USAGE]).await;
        assert_eq!(items.len(), 4);
        assert!(items.iter().all(Result::is_ok));
        assert!(items[3].as_ref().unwrap().usage.is_some());
    }

    #[tokio::test]
    async fn transport_errors_and_garbage_end_the_stream() {
        let bytes: Vec<Result<Vec<u8>, std::io::Error>> = vec![
            Ok(ROLE.as_bytes().to_vec()),
            Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "connection reset by peer",
            )),
            Ok(FINISH.as_bytes().to_vec()),
        ];
        let items: Vec<Item> = SseChunks::new(futures_util::stream::iter(bytes))
            .collect()
            .await;
        assert_eq!(items.len(), 2);
        assert!(matches!(&items[1], Err(ProviderError::Connection(m)) if m.contains("reset")));

        let items = parse(&[ROLE, "data: {\"choices\": 3}\n\n", FINISH]).await;
        assert_eq!(items.len(), 2);
        assert!(matches!(items[1], Err(ProviderError::InvalidResponse(_))));
    }

    #[tokio::test]
    async fn tool_call_deltas() {
        let a = "data: {\"id\":\"c\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"\"}}]},\"finish_reason\":null}]}\n\n";
        let b = "data: {\"id\":\"c\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"city\\\":\\\"Paris\\\"}\"}}]},\"finish_reason\":null}]}\n\n";
        let c = "data: {\"id\":\"c\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n";
        let items = parse(&[a, b, c, DONE]).await;
        assert_eq!(items.len(), 3);
        let first = &items[0].as_ref().unwrap().choices[0].tool_calls[0];
        assert_eq!(
            (
                first.id.as_str(),
                first.name.as_str(),
                first.arguments.as_str()
            ),
            ("call_1", "get_weather", "")
        );
        let second = &items[1].as_ref().unwrap().choices[0].tool_calls[0];
        assert_eq!(
            (second.id.as_str(), second.arguments.as_str()),
            ("", "{\"city\":\"Paris\"}")
        );
        assert_eq!(
            items[2].as_ref().unwrap().choices[0].finish_reason(),
            FinishReason::ToolCalls
        );
    }
}
