//! The built-in offline provider (`kind: demo`): answers at once, without any
//! network or key, so a new user can try the gateway, and tests have an
//! upstream that never flakes.
//!
//! It answers deterministically: `Hello from Switchyard's demo provider. You
//! said: <the last user message>` (long messages are cut at about 200
//! characters). Streamed, the same text arrives word by word: a first chunk
//! with the role, one chunk per word, a chunk with the finish reason, then a
//! usage chunk with no choices.
//!
//! Usage is an approximation: tokens are counted as whitespace-separated
//! words (prompt: the text of every message; completion: the answer's words,
//! or one per tool call). Real tokenizers count more tokens than words.
//!
//! Magic messages, matched on the last user message (trimmed), to try the
//! gateway's failure handling:
//! - `demo:error 429` fails with `RateLimited` (retry after 1 s);
//! - `demo:error 500` (or 502, 504, ...) fails with `Upstream`;
//! - `demo:error 503` or `demo:error 529`: `Overloaded`;
//! - `demo:error 400`, `401`/`403`, `404`: `BadRequest`, `Auth`, `NotFound`;
//! - `demo:error context`: `ContextTooLong`;
//! - any of these followed by text uses that text as the error message
//!   (`demo:error 400 Invalid value for 'temperature'`);
//! - `demo:slow <ms>` waits `<ms>` before each streamed word (and the whole
//!   answer's worth before a non-streamed answer, up to the timeout);
//! - `demo:call <tool-name>`, when the request declares that tool, answers
//!   with a call to it with arguments `{}`.
//!
//! Waiting uses `tokio::time`, so tests with paused time run instantly.
//!
//! Embeddings: a hashed bag of words per input (lowercased words hashed
//! into `dimensions` buckets, 8 by default, with a hash-chosen sign), L2
//! normalised: deterministic, and texts sharing words point the same way,
//! so similarity search can be tried offline. An input that is a magic
//! `demo:error ...` message fails the same way as in chat. Token-array
//! inputs are refused (400). Image generation is not served.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::stream;
use switchyard_config::ProviderConfig;
use switchyard_proto::gateway::v1::{
    ChatChunk, ChatResult, ChatSpec, Choice, ChoiceDelta, ContentPart, FinishReason, Message, Role,
    ToolCall, ToolCallDelta, Usage, content_part::Part,
};

use crate::{ChatCall, ChunkStream, Provider, ProviderError};

/// The echoed user text is cut after this many characters.
const ECHO_LIMIT: usize = 200;

#[derive(Debug, Clone)]
pub struct DemoProvider {
    timeout: Duration,
}

impl DemoProvider {
    pub fn new(cfg: &ProviderConfig) -> Self {
        Self {
            timeout: cfg.timeout,
        }
    }

    /// A demo provider with the given deadline, without a config.
    pub fn with_timeout(timeout: Duration) -> Self {
        Self { timeout }
    }

    fn deadline(&self, call: &ChatCall) -> Duration {
        call.timeout.map_or(self.timeout, |t| t.min(self.timeout))
    }
}

/// What one request gets.
struct Answer {
    words: Vec<String>,
    tool_call: Option<ToolCall>,
    delay: Duration,
    usage: Usage,
    id: String,
    model: String,
    created: i64,
}

impl Answer {
    fn text(&self) -> String {
        self.words.join(" ")
    }

    fn finish(&self) -> FinishReason {
        if self.tool_call.is_some() {
            FinishReason::ToolCalls
        } else {
            FinishReason::Stop
        }
    }

    fn chunk(&self, choices: Vec<ChoiceDelta>, usage: Option<Usage>) -> ChatChunk {
        ChatChunk {
            id: self.id.clone(),
            model: self.model.clone(),
            created: self.created,
            choices,
            usage,
            system_fingerprint: String::new(),
            native_event: None,
        }
    }
}

fn plan(call: &ChatCall) -> Result<Answer, ProviderError> {
    let said = last_user_text(&call.spec);
    let said = said.trim();
    let mut delay = Duration::ZERO;
    let mut tool_call = None;
    if let Some(rest) = said.strip_prefix("demo:error") {
        if let Some(e) = magic_error(rest.trim()) {
            return Err(e);
        }
    } else if let Some(ms) = said
        .strip_prefix("demo:slow")
        .and_then(|r| r.trim().parse::<u64>().ok())
    {
        delay = Duration::from_millis(ms);
    } else if let Some(name) = said.strip_prefix("demo:call").map(str::trim)
        && call.spec.tools.iter().any(|t| t.name == name)
    {
        tool_call = Some(ToolCall {
            id: "call_demo_0".into(),
            name: name.to_owned(),
            arguments: "{}".into(),
        });
    }

    let words: Vec<String> = if tool_call.is_some() {
        Vec::new()
    } else {
        let echo = if said.is_empty() {
            "nothing".to_owned()
        } else {
            echo(said)
        };
        format!("Hello from Switchyard's demo provider. You said: {echo}")
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    let prompt_tokens = count(call.spec.messages.iter().map(message_words).sum());
    let completion_tokens = if tool_call.is_some() {
        1
    } else {
        count(words.len())
    };
    Ok(Answer {
        words,
        tool_call,
        delay,
        usage: Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens.saturating_add(completion_tokens),
            cached_prompt_tokens: 0,
            reasoning_tokens: 0,
            ..Usage::default()
        },
        id: format!(
            "chatcmpl-demo-{}",
            if call.request_id.is_empty() {
                "0"
            } else {
                &call.request_id
            }
        ),
        model: if call.upstream_model.is_empty() {
            "demo".into()
        } else {
            call.upstream_model.clone()
        },
        created: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0)),
    })
}

/// The user's text, cut at a word boundary when long.
fn echo(said: &str) -> String {
    if said.chars().count() <= ECHO_LIMIT {
        return said.to_owned();
    }
    let head: String = said.chars().take(ECHO_LIMIT).collect();
    let head = head
        .rsplit_once(char::is_whitespace)
        .map_or(head.as_str(), |(h, _)| h);
    format!("{}…", head.trim_end())
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn texts(m: &Message) -> impl Iterator<Item = &str> {
    m.content.iter().filter_map(|p| match &p.part {
        Some(Part::Text(t)) => Some(t.as_str()),
        _ => None,
    })
}

fn message_words(m: &Message) -> usize {
    texts(m).map(|t| t.split_whitespace().count()).sum()
}

fn last_user_text(spec: &ChatSpec) -> String {
    spec.messages
        .iter()
        .rev()
        .find(|m| m.role() == Role::User)
        .map(|m| texts(m).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// `demo:error <what> [message]`; `None` when `<what>` is not a known error,
/// so the text is answered like any other.
fn magic_error(rest: &str) -> Option<ProviderError> {
    let (what, text) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    let text = text.trim();
    let message = |default: &str| {
        if text.is_empty() {
            default.to_owned()
        } else {
            text.to_owned()
        }
    };
    if what == "context" {
        return Some(ProviderError::ContextTooLong {
            message: message("demo: the prompt exceeds the model's context window"),
        });
    }
    let status: u16 = what.parse().ok()?;
    Some(match status {
        429 => ProviderError::RateLimited {
            message: message("demo: rate limited"),
            retry_after: Some(Duration::from_secs(1)),
        },
        400 => ProviderError::BadRequest {
            message: message("demo: bad request"),
            status,
            param: None,
            code: None,
        },
        401 | 403 => ProviderError::Auth {
            message: message("demo: credentials rejected"),
            status,
        },
        404 => ProviderError::NotFound {
            message: message("demo: no such model"),
        },
        503 | 529 => ProviderError::Overloaded {
            message: message("demo: overloaded"),
            status,
            retry_after: None,
        },
        402 | 405..=428 | 430..=502 | 504..=528 | 530..=599 => ProviderError::Upstream {
            status,
            message: message("demo: upstream failure"),
        },
        _ => return None,
    })
}

#[async_trait::async_trait]
impl Provider for DemoProvider {
    fn kind(&self) -> &'static str {
        "demo"
    }

    async fn chat(&self, call: &ChatCall) -> Result<ChatResult, ProviderError> {
        let answer = plan(call)?;
        let deadline = self.deadline(call);
        let wait = answer.delay.saturating_mul(count(answer.words.len()));
        if wait > deadline {
            tokio::time::sleep(deadline).await;
            return Err(ProviderError::Timeout(deadline));
        }
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        let text = answer.text();
        let message = Message {
            role: Role::Assistant as i32,
            content: if answer.tool_call.is_some() {
                Vec::new()
            } else {
                vec![ContentPart {
                    part: Some(Part::Text(text)),
                    extra: None,
                }]
            },
            tool_calls: answer.tool_call.clone().into_iter().collect(),
            ..Default::default()
        };
        Ok(ChatResult {
            id: answer.id.clone(),
            model: answer.model.clone(),
            created: answer.created,
            choices: vec![Choice {
                index: 0,
                message: Some(message),
                finish_reason: answer.finish() as i32,
            }],
            usage: Some(answer.usage),
            system_fingerprint: String::new(),
            native_response: None,
        })
    }

    async fn chat_stream(&self, call: &ChatCall) -> Result<ChunkStream, ProviderError> {
        let answer = plan(call)?;
        let mut steps: VecDeque<(Duration, ChatChunk)> = VecDeque::new();
        let delta = |d: ChoiceDelta| vec![ChoiceDelta { index: 0, ..d }];
        steps.push_back((
            Duration::ZERO,
            answer.chunk(
                delta(ChoiceDelta {
                    role: Role::Assistant as i32,
                    content: Some(String::new()),
                    ..Default::default()
                }),
                None,
            ),
        ));
        for (i, word) in answer.words.iter().enumerate() {
            let piece = if i == 0 {
                word.clone()
            } else {
                format!(" {word}")
            };
            steps.push_back((
                answer.delay,
                answer.chunk(
                    delta(ChoiceDelta {
                        content: Some(piece),
                        ..Default::default()
                    }),
                    None,
                ),
            ));
        }
        if let Some(tc) = &answer.tool_call {
            let call_delta = ToolCallDelta {
                index: 0,
                id: tc.id.clone(),
                name: tc.name.clone(),
                arguments: tc.arguments.clone(),
            };
            steps.push_back((
                answer.delay,
                answer.chunk(
                    delta(ChoiceDelta {
                        tool_calls: vec![call_delta],
                        ..Default::default()
                    }),
                    None,
                ),
            ));
        }
        steps.push_back((
            Duration::ZERO,
            answer.chunk(
                delta(ChoiceDelta {
                    finish_reason: answer.finish() as i32,
                    ..Default::default()
                }),
                None,
            ),
        ));
        steps.push_back((Duration::ZERO, answer.chunk(Vec::new(), Some(answer.usage))));

        Ok(Box::pin(stream::unfold(steps, |mut steps| async move {
            let (delay, chunk) = steps.pop_front()?;
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            Some((Ok(chunk), steps))
        })))
    }

    async fn embed(
        &self,
        call: &crate::EmbedCall,
    ) -> Result<switchyard_proto::gateway::v1::EmbedResult, ProviderError> {
        embed(call)
    }
}

/// Vector length when the request names no `dimensions`.
const EMBED_DIMS: u32 = 8;
/// Larger requests are cut here: the demo has no use for huge vectors.
const EMBED_MAX_DIMS: u32 = 4096;

fn embed(
    call: &crate::EmbedCall,
) -> Result<switchyard_proto::gateway::v1::EmbedResult, ProviderError> {
    use switchyard_proto::gateway::v1::{EmbedResult, Embedding};
    let spec = &call.spec;
    if spec.inputs.is_empty() {
        return Err(ProviderError::unsupported_param(
            "input",
            "the demo provider embeds text only: token-array inputs need an OpenAI-format provider",
        ));
    }
    if let Some(e) = spec.inputs.iter().find_map(|t| {
        t.trim()
            .strip_prefix("demo:error")
            .and_then(|rest| magic_error(rest.trim()))
    }) {
        return Err(e);
    }
    let dims = spec
        .dimensions
        .unwrap_or(EMBED_DIMS)
        .clamp(1, EMBED_MAX_DIMS);
    let mut words = 0u32;
    let data = spec
        .inputs
        .iter()
        .zip(0u32..)
        .map(|(text, index)| {
            words = words.saturating_add(count(text.split_whitespace().count()));
            Embedding {
                index,
                vector: bag_of_words(text, dims),
            }
        })
        .collect();
    Ok(EmbedResult {
        model: call.upstream_model.clone(),
        data,
        usage: Some(Usage {
            prompt_tokens: words,
            total_tokens: words,
            ..Default::default()
        }),
    })
}

/// FNV-1a: stable across runs and platforms, unlike std's hasher.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn bag_of_words(text: &str, dims: u32) -> Vec<f32> {
    let mut v = vec![0f32; dims as usize];
    for word in text.split_whitespace() {
        let h = fnv1a(&word.to_lowercase());
        let i = (h % u64::from(dims)) as usize;
        v[i] += if h >> 63 == 0 { 1.0 } else { -1.0 };
    }
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::conformance::{Harness, Target, Upstream};
    use futures_util::StreamExt;
    use switchyard_proto::gateway::v1::Tool;

    fn call(text: &str) -> ChatCall {
        ChatCall {
            spec: ChatSpec {
                model: "demo/demo-1".into(),
                messages: vec![
                    Message {
                        role: Role::System as i32,
                        content: vec![ContentPart {
                            part: Some(Part::Text("Be brief.".into())),
                            extra: None,
                        }],
                        ..Default::default()
                    },
                    Message {
                        role: Role::User as i32,
                        content: vec![ContentPart {
                            part: Some(Part::Text(text.into())),
                            extra: None,
                        }],
                        ..Default::default()
                    },
                ],
                ..Default::default()
            },
            upstream_model: "demo-1".into(),
            request_id: "req-1".into(),
            timeout: None,
        }
    }

    fn text_of(r: &ChatResult) -> String {
        texts(r.choices[0].message.as_ref().unwrap()).collect()
    }

    /// The demo's failures come from magic messages; it has no connection to
    /// refuse, stall or close.
    struct DemoHarness;

    #[async_trait::async_trait]
    impl Harness for DemoHarness {
        async fn start(&self, upstream: Upstream) -> Target {
            let text = match upstream {
                Upstream::Answer => "Hi there".to_owned(),
                Upstream::RateLimited { .. } => "demo:error 429".into(),
                Upstream::ServerError => "demo:error 500".into(),
                Upstream::Overloaded => "demo:error 503".into(),
                Upstream::BadRequest { message } => format!("demo:error 400 {message}"),
                Upstream::ContextTooLong => "demo:error context".into(),
                Upstream::Hang => "demo:slow 100000".into(),
                other => panic!("{other:?} does not apply to the demo provider"),
            };
            Target {
                provider: Arc::new(DemoProvider::with_timeout(Duration::from_secs(60))),
                call: call(&text),
                upstream_closed: None,
                guard: Box::new(()),
            }
        }
    }

    mod conformance {
        crate::provider_conformance!(super::DemoHarness =>
            chat_returns_content_and_usage,
            stream_yields_incremental_chunks_then_usage,
            rate_limited_carries_retry_after,
            server_error_is_upstream,
            overloaded_is_overloaded,
            bad_request_carries_upstream_message,
            context_too_long,
            chat_times_out,
        );
    }

    #[tokio::test]
    async fn echoes_the_last_user_message_with_word_usage() {
        let p = DemoProvider::with_timeout(Duration::from_secs(60));
        let r = p.chat(&call("What   is Switchyard?")).await.unwrap();
        assert_eq!(
            text_of(&r),
            "Hello from Switchyard's demo provider. You said: What is Switchyard?"
        );
        assert_eq!(r.id, "chatcmpl-demo-req-1");
        assert_eq!(r.model, "demo-1");
        assert_eq!(r.choices[0].finish_reason(), FinishReason::Stop);
        let u = r.usage.unwrap();
        // "Be brief." (2) + "What is Switchyard?" (3); the answer has 10 words.
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.total_tokens),
            (5, 10, 15)
        );
    }

    #[tokio::test]
    async fn long_messages_are_cut() {
        let p = DemoProvider::with_timeout(Duration::from_secs(60));
        let r = p.chat(&call(&"word ".repeat(200))).await.unwrap();
        let text = text_of(&r);
        assert!(text.ends_with(" word…"), "{text}");
        assert!(text.chars().count() < 270);
    }

    #[tokio::test]
    async fn streams_word_by_word_then_usage() {
        let p = DemoProvider::with_timeout(Duration::from_secs(60));
        let chunks: Vec<ChatChunk> = p
            .chat_stream(&call("hi there"))
            .await
            .unwrap()
            .map(Result::unwrap)
            .collect()
            .await;
        assert_eq!(chunks[0].choices[0].role(), Role::Assistant);
        let words: Vec<&str> = chunks[1..chunks.len() - 2]
            .iter()
            .map(|c| c.choices[0].content.as_deref().unwrap())
            .collect();
        assert_eq!(
            words.concat(),
            "Hello from Switchyard's demo provider. You said: hi there"
        );
        assert_eq!(words.len(), 9);
        assert_eq!(
            chunks[chunks.len() - 2].choices[0].finish_reason(),
            FinishReason::Stop
        );
        let last = chunks.last().unwrap();
        assert!(last.choices.is_empty());
        assert_eq!(last.usage.unwrap().completion_tokens, 9);
    }

    #[tokio::test(start_paused = true)]
    async fn slow_waits_per_word_in_virtual_time() {
        let p = DemoProvider::with_timeout(Duration::from_secs(60));
        let start = tokio::time::Instant::now();
        let mut s = p.chat_stream(&call("demo:slow 250")).await.unwrap();
        assert!(s.next().await.unwrap().is_ok());
        assert_eq!(
            start.elapsed(),
            Duration::ZERO,
            "the role chunk comes at once"
        );
        let rest: Vec<_> = s.collect().await;
        // "Hello from Switchyard's demo provider. You said: demo:slow 250": 9 words.
        assert_eq!(rest.len(), 9 + 2);
        assert_eq!(start.elapsed(), Duration::from_millis(250 * 9));

        let start = tokio::time::Instant::now();
        p.chat(&call("demo:slow 250")).await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_millis(250 * 9));
    }

    #[tokio::test(start_paused = true)]
    async fn slow_chat_times_out_at_the_deadline() {
        let p = DemoProvider::with_timeout(Duration::from_secs(60));
        let mut c = call("demo:slow 1000");
        c.timeout = Some(Duration::from_secs(2));
        let start = tokio::time::Instant::now();
        assert_eq!(
            p.chat(&c).await,
            Err(ProviderError::Timeout(Duration::from_secs(2)))
        );
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    }

    #[tokio::test]
    async fn magic_errors() {
        let p = DemoProvider::with_timeout(Duration::from_secs(60));
        let err = |t: &str| {
            let c = call(t);
            let p = p.clone();
            async move { p.chat(&c).await.unwrap_err() }
        };
        assert_eq!(
            err("demo:error 429").await,
            ProviderError::RateLimited {
                message: "demo: rate limited".into(),
                retry_after: Some(Duration::from_secs(1))
            }
        );
        assert_eq!(
            err("demo:error 500").await,
            ProviderError::Upstream {
                status: 500,
                message: "demo: upstream failure".into()
            }
        );
        assert!(matches!(
            err("demo:error 503").await,
            ProviderError::Overloaded { status: 503, .. }
        ));
        assert!(matches!(
            err("demo:error 401").await,
            ProviderError::Auth { status: 401, .. }
        ));
        assert!(matches!(
            err("demo:error 404").await,
            ProviderError::NotFound { .. }
        ));
        assert!(matches!(
            err("demo:error context").await,
            ProviderError::ContextTooLong { .. }
        ));
        assert_eq!(
            err("  demo:error 400 Invalid value for 'temperature'  ").await,
            ProviderError::BadRequest {
                message: "Invalid value for 'temperature'".into(),
                status: 400,
                param: None,
                code: None
            }
        );
        // Streams fail before the first chunk.
        assert!(matches!(
            p.chat_stream(&call("demo:error 429")).await,
            Err(ProviderError::RateLimited { .. })
        ));
        // Not a known error: answered like any text.
        let r = p.chat(&call("demo:error teapot")).await.unwrap();
        assert!(text_of(&r).ends_with("You said: demo:error teapot"));
    }

    #[tokio::test]
    async fn calls_a_declared_tool() {
        let p = DemoProvider::with_timeout(Duration::from_secs(60));
        let mut c = call("demo:call get_weather");
        c.spec.tools.push(Tool {
            name: "get_weather".into(),
            ..Default::default()
        });
        let r = p.chat(&c).await.unwrap();
        let m = r.choices[0].message.as_ref().unwrap();
        assert_eq!(r.choices[0].finish_reason(), FinishReason::ToolCalls);
        assert_eq!(
            m.tool_calls,
            vec![ToolCall {
                id: "call_demo_0".into(),
                name: "get_weather".into(),
                arguments: "{}".into()
            }]
        );
        assert!(m.content.is_empty());

        let chunks: Vec<ChatChunk> = p
            .chat_stream(&c)
            .await
            .unwrap()
            .map(Result::unwrap)
            .collect()
            .await;
        assert_eq!(chunks[1].choices[0].tool_calls[0].name, "get_weather");
        assert_eq!(
            chunks[2].choices[0].finish_reason(),
            FinishReason::ToolCalls
        );
        assert!(chunks[3].usage.is_some());

        // An undeclared tool is not called.
        let r = p.chat(&call("demo:call get_weather")).await.unwrap();
        assert!(r.choices[0].message.as_ref().unwrap().tool_calls.is_empty());
    }
}

#[cfg(test)]
mod embed_tests {
    #![allow(clippy::unwrap_used)]

    use switchyard_proto::gateway::v1::EmbedSpec;

    use super::*;
    use crate::EmbedCall;

    fn call(inputs: &[&str], dimensions: Option<u32>) -> EmbedCall {
        EmbedCall {
            spec: EmbedSpec {
                model: "demo".into(),
                inputs: inputs.iter().map(|s| (*s).to_owned()).collect(),
                dimensions,
                ..Default::default()
            },
            upstream_model: "echo".into(),
            request_id: "req-1".into(),
            timeout: None,
        }
    }

    #[tokio::test]
    async fn deterministic_normalised_bag_of_words() {
        let p = DemoProvider::with_timeout(Duration::from_secs(1));
        let r = p
            .embed(&call(&["the cat sat", "The CAT sat", "dogs bark"], None))
            .await
            .unwrap();
        assert_eq!(r.data.len(), 3);
        assert_eq!(r.data[0].vector.len(), 8);
        assert_eq!(r.data[0].vector, r.data[1].vector, "case-insensitive");
        assert_ne!(r.data[0].vector, r.data[2].vector);
        let norm: f32 = r.data[2].vector.iter().map(|x| x * x).sum();
        assert!((norm - 1.0).abs() < 1e-5, "{norm}");
        assert_eq!(r.usage.unwrap().prompt_tokens, 8);
        let again = p.embed(&call(&["dogs bark"], Some(3))).await.unwrap();
        assert_eq!(again.data[0].vector.len(), 3);
    }

    #[tokio::test]
    async fn magic_errors_and_token_inputs() {
        let p = DemoProvider::with_timeout(Duration::from_secs(1));
        let e = p
            .embed(&call(&["fine", "demo:error 429"], None))
            .await
            .unwrap_err();
        assert!(matches!(e, ProviderError::RateLimited { .. }), "{e:?}");
        let e = p.embed(&call(&[], None)).await.unwrap_err();
        assert!(matches!(e, ProviderError::BadRequest { .. }), "{e:?}");
        let e = p
            .images(&crate::ImageCall {
                spec: Default::default(),
                upstream_model: "echo".into(),
                request_id: "r".into(),
                timeout: None,
            })
            .await
            .unwrap_err();
        assert!(matches!(e, ProviderError::BadRequest { .. }), "{e:?}");
    }
}
