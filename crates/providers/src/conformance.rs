//! The conformance suite every [`Provider`] passes: the behaviour the worker
//! and the router rely on, whatever the wire format.
//!
//! A provider's tests implement [`Harness`]: given an [`Upstream`] behaviour,
//! start the provider under test against an upstream that behaves so (an HTTP
//! double on 127.0.0.1, or magic messages for an offline provider), and hand
//! back a [`Target`]. Then [`provider_conformance!`](crate::provider_conformance)
//! generates one `#[tokio::test]` per case, all of them or a named subset:
//!
//! ```ignore
//! mod conformance {
//!     switchyard_providers::provider_conformance!(super::MyHarness);
//!     // or only what applies:
//!     switchyard_providers::provider_conformance!(super::MyHarness => chat_returns_content_and_usage, rate_limited_carries_retry_after);
//! }
//! ```
//!
//! Compiled for this crate's tests and with the `conformance` feature.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test support: a failed expectation is a test failure"
)]

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use switchyard_proto::gateway::v1::{
    ChatChunk, ChatResult, FinishReason, Role, content_part::Part,
};

use crate::{ChatCall, ChunkStream, Provider, ProviderError};

/// How the upstream should behave for one test.
#[derive(Debug, Clone, PartialEq)]
pub enum Upstream {
    /// Answer normally, streamed or not, with content and usage. Streamed
    /// answers come in several content chunks.
    Answer,
    /// 429 with this retry-after.
    RateLimited { retry_after: Duration },
    /// 500.
    ServerError,
    /// The provider's "overloaded" answer (503, 529, ...).
    Overloaded,
    /// 400 with this message.
    BadRequest { message: String },
    /// The provider's "prompt too long" answer.
    ContextTooLong,
    /// Accept the request and never answer.
    Hang,
    /// Answer a stream request with success headers, then send nothing.
    StallAfterHeaders,
    /// Nothing listens where the provider connects.
    Refused,
    /// Stream content until the client goes away, then resolve
    /// [`Target::upstream_closed`].
    EndlessStream,
    /// 401 with the provider's own "invalid key" body.
    Unauthorized,
    /// Answer with one call of the tool [`TOOL_NAME`] with arguments
    /// [`TOOL_ARGUMENTS`] (streamed: the arguments split over at least two
    /// deltas), the way the provider's wire format reports a tool call.
    ToolCall,
}

/// The tool an [`Upstream::ToolCall`] answer calls.
pub const TOOL_NAME: &str = "get_weather";
/// Its arguments, as the JSON text the canonical model carries.
pub const TOOL_ARGUMENTS: &str = r#"{"city":"Paris"}"#;

/// A provider under test, wired to an upstream.
pub struct Target {
    pub provider: Arc<dyn Provider>,
    /// The call the cases make (a harness may put magic words in it). Cases
    /// may shorten its `timeout`.
    pub call: ChatCall,
    /// For [`Upstream::EndlessStream`]: resolves once the upstream has seen
    /// the client's connection close.
    pub upstream_closed: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    /// Whatever must live as long as the test (the double's server).
    pub guard: Box<dyn Any + Send>,
}

#[async_trait::async_trait]
pub trait Harness: Send + Sync {
    async fn start(&self, upstream: Upstream) -> Target;
}

/// All cases, in the order [`provider_conformance!`](crate::provider_conformance) generates them.
pub const ALL_CASES: &[&str] = &[
    "chat_returns_content_and_usage",
    "stream_yields_incremental_chunks_then_usage",
    "rate_limited_carries_retry_after",
    "server_error_is_upstream",
    "overloaded_is_overloaded",
    "bad_request_carries_upstream_message",
    "context_too_long",
    "chat_times_out",
    "stream_times_out_before_first_event",
    "connection_refused",
    "dropping_stream_closes_upstream",
    "unauthorized_is_auth",
    "tool_call_in_canonical_shape",
    "streamed_tool_call_arguments_concatenate",
];

/// Generates one `#[tokio::test]` per conformance case for a [`Harness`]
/// expression: `provider_conformance!(MyHarness)` for every case, or
/// `provider_conformance!(MyHarness => case_a, case_b)` for a subset. The
/// calling crate needs tokio with `macros` and `rt`.
#[macro_export]
macro_rules! provider_conformance {
    ($harness:expr) => {
        $crate::provider_conformance!($harness =>
            chat_returns_content_and_usage,
            stream_yields_incremental_chunks_then_usage,
            rate_limited_carries_retry_after,
            server_error_is_upstream,
            overloaded_is_overloaded,
            bad_request_carries_upstream_message,
            context_too_long,
            chat_times_out,
            stream_times_out_before_first_event,
            connection_refused,
            dropping_stream_closes_upstream,
            unauthorized_is_auth,
            tool_call_in_canonical_shape,
            streamed_tool_call_arguments_concatenate,
        );
    };
    ($harness:expr => $($case:ident),+ $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                $crate::conformance::cases::$case(&$harness).await;
            }
        )+
    };
}

/// A deadline that only a broken test reaches: waiting on an explicit signal
/// must not hang the suite forever.
const GUARD: Duration = Duration::from_secs(20);

/// The text of every choice's message, concatenated.
pub fn text(r: &ChatResult) -> String {
    r.choices
        .iter()
        .flat_map(|c| c.message.iter())
        .flat_map(|m| m.content.iter())
        .filter_map(|p| match &p.part {
            Some(Part::Text(t)) => Some(t.as_str()),
            _ => None,
        })
        .collect()
}

/// The errors of the call, unary and streamed: both must fail, the stream
/// before its first chunk.
pub async fn both_errors(provider: &dyn Provider, call: &ChatCall) -> [ProviderError; 2] {
    let chat = provider.chat(call).await.expect_err("chat should fail");
    [chat, stream_err(provider.chat_stream(call).await)]
}

/// The chunks of a stream that must open and end without an error.
pub async fn stream_chunks(provider: &dyn Provider, call: &ChatCall) -> Vec<ChatChunk> {
    let items: Vec<_> = provider
        .chat_stream(call)
        .await
        .expect("chat_stream")
        .collect()
        .await;
    items.into_iter().map(|i| i.expect("stream item")).collect()
}

/// Starts `upstream` and checks that the call fails, unary and streamed, as
/// `expected` says.
async fn both_fail(h: &dyn Harness, upstream: Upstream, expected: impl Fn(&ProviderError) -> bool) {
    let t = h.start(upstream).await;
    for e in both_errors(t.provider.as_ref(), &t.call).await {
        assert!(expected(&e), "{e:?}");
    }
}

fn stream_err(r: Result<ChunkStream, ProviderError>) -> ProviderError {
    match r {
        Ok(_) => panic!("chat_stream should fail before the first chunk"),
        Err(e) => e,
    }
}

pub mod cases {
    use super::*;

    /// A complete answer has text, a finish reason and consistent usage.
    pub async fn chat_returns_content_and_usage(h: &dyn Harness) {
        let t = h.start(Upstream::Answer).await;
        let r = t.provider.chat(&t.call).await.expect("chat");
        assert!(!r.choices.is_empty(), "no choices");
        assert!(!text(&r).is_empty(), "no content");
        let m = r.choices[0].message.as_ref().expect("message");
        assert_eq!(m.role(), Role::Assistant);
        assert_eq!(r.choices[0].finish_reason(), FinishReason::Stop);
        let u = r.usage.expect("usage");
        assert!(
            u.prompt_tokens > 0 && u.completion_tokens > 0,
            "usage {u:?}"
        );
        assert_eq!(u.total_tokens, u.prompt_tokens + u.completion_tokens);
    }

    /// A stream delivers the same text as the complete answer, in several
    /// chunks, then exactly one usage chunk with no choices, last.
    pub async fn stream_yields_incremental_chunks_then_usage(h: &dyn Harness) {
        let t = h.start(Upstream::Answer).await;
        let whole = t.provider.chat(&t.call).await.expect("chat");
        let chunks = stream_chunks(t.provider.as_ref(), &t.call).await;
        let (last, body) = chunks.split_last().expect("no chunks");

        assert!(last.choices.is_empty(), "the last chunk has choices");
        let usage = last.usage.expect("the last chunk has no usage");
        assert_eq!(
            Some(usage),
            whole.usage,
            "streamed usage differs from the complete answer's"
        );
        assert!(
            body.iter().all(|c| c.usage.is_none()),
            "usage before the last chunk"
        );

        let first = body
            .iter()
            .find(|c| !c.choices.is_empty())
            .expect("no choice chunks");
        assert_eq!(
            first.choices[0].role(),
            Role::Assistant,
            "the first chunk names the role"
        );
        let pieces: Vec<&str> = body
            .iter()
            .flat_map(|c| c.choices.iter())
            .filter_map(|d| d.content.as_deref())
            .filter(|s| !s.is_empty())
            .collect();
        assert!(pieces.len() >= 2, "content is not incremental: {pieces:?}");
        assert_eq!(pieces.concat(), text(&whole));
        let finish = body
            .iter()
            .flat_map(|c| c.choices.iter())
            .map(|d| d.finish_reason())
            .next_back();
        assert_eq!(
            finish,
            Some(FinishReason::Stop),
            "the last choice chunk carries the finish reason"
        );
    }

    pub async fn rate_limited_carries_retry_after(h: &dyn Harness) {
        let retry = Duration::from_secs(1);
        both_fail(
            h,
            Upstream::RateLimited { retry_after: retry },
            |e| matches!(e, ProviderError::RateLimited { retry_after: Some(r), .. } if *r == retry),
        )
        .await;
    }

    pub async fn server_error_is_upstream(h: &dyn Harness) {
        both_fail(h, Upstream::ServerError, |e| {
            matches!(e, ProviderError::Upstream { status: 500, .. })
        })
        .await;
    }

    pub async fn overloaded_is_overloaded(h: &dyn Harness) {
        both_fail(h, Upstream::Overloaded, |e| {
            matches!(e, ProviderError::Overloaded { .. })
        })
        .await;
    }

    pub async fn bad_request_carries_upstream_message(h: &dyn Harness) {
        let message = "Invalid 'temperature': decimal above maximum value.".to_owned();
        let upstream = Upstream::BadRequest {
            message: message.clone(),
        };
        both_fail(h, upstream, |e| {
            matches!(e, ProviderError::BadRequest { message: m, status: 400, .. } if m.contains(&message))
        })
        .await;
    }

    pub async fn context_too_long(h: &dyn Harness) {
        both_fail(h, Upstream::ContextTooLong, |e| {
            matches!(e, ProviderError::ContextTooLong { .. })
        })
        .await;
    }

    /// An upstream that never answers fails the call at the call's deadline,
    /// not later.
    pub async fn chat_times_out(h: &dyn Harness) {
        let t = h.start(Upstream::Hang).await;
        let deadline = Duration::from_millis(200);
        let mut call = t.call.clone();
        call.timeout = Some(deadline);
        let start = tokio::time::Instant::now();
        let e = tokio::time::timeout(GUARD, t.provider.chat(&call))
            .await
            .expect("the deadline was not kept");
        assert_eq!(e.err(), Some(ProviderError::Timeout(deadline)));
        assert!(start.elapsed() >= deadline);
    }

    /// Streamed, the deadline covers the time to the first event: success
    /// headers alone do not count.
    pub async fn stream_times_out_before_first_event(h: &dyn Harness) {
        let t = h.start(Upstream::StallAfterHeaders).await;
        let deadline = Duration::from_millis(200);
        let mut call = t.call.clone();
        call.timeout = Some(deadline);
        let r = tokio::time::timeout(GUARD, t.provider.chat_stream(&call))
            .await
            .expect("the deadline was not kept");
        assert_eq!(stream_err(r), ProviderError::Timeout(deadline));
    }

    pub async fn connection_refused(h: &dyn Harness) {
        both_fail(h, Upstream::Refused, |e| {
            matches!(e, ProviderError::Connection(_))
        })
        .await;
    }

    /// Dropping the stream is how the gateway cancels: the upstream must see
    /// its connection closed.
    pub async fn dropping_stream_closes_upstream(h: &dyn Harness) {
        let t = h.start(Upstream::EndlessStream).await;
        let mut closed = t
            .upstream_closed
            .expect("the harness gives an upstream_closed signal for EndlessStream");
        let mut s = t.provider.chat_stream(&t.call).await.expect("chat_stream");
        s.next()
            .await
            .expect("a first chunk")
            .expect("an ok first chunk");
        assert!(
            (&mut closed).now_or_never().is_none(),
            "the upstream saw a close while the stream was alive"
        );
        drop(s);
        tokio::time::timeout(GUARD, closed)
            .await
            .expect("the upstream never saw its connection close");
    }

    pub async fn unauthorized_is_auth(h: &dyn Harness) {
        both_fail(h, Upstream::Unauthorized, |e| {
            matches!(e, ProviderError::Auth { status: 401, .. })
        })
        .await;
    }

    /// A tool call comes back as OpenAI shapes it, whatever the wire format:
    /// an id, the name, the arguments as JSON text, `tool_calls` finish.
    pub async fn tool_call_in_canonical_shape(h: &dyn Harness) {
        let t = h.start(Upstream::ToolCall).await;
        let r = t.provider.chat(&t.call).await.expect("chat");
        let choice = &r.choices[0];
        assert_eq!(choice.finish_reason(), FinishReason::ToolCalls);
        let calls = &choice.message.as_ref().expect("message").tool_calls;
        assert_eq!(calls.len(), 1, "{calls:?}");
        assert!(!calls[0].id.is_empty(), "tool call without an id");
        assert_eq!(calls[0].name, TOOL_NAME);
        let args: serde_json::Value = serde_json::from_str(&calls[0].arguments).expect("JSON");
        assert_eq!(
            args,
            serde_json::from_str::<serde_json::Value>(TOOL_ARGUMENTS).unwrap()
        );
    }

    /// Streamed, the call's id and name come first (once) and the argument
    /// deltas concatenate to the arguments, all at one tool-call index.
    pub async fn streamed_tool_call_arguments_concatenate(h: &dyn Harness) {
        let t = h.start(Upstream::ToolCall).await;
        let chunks = stream_chunks(t.provider.as_ref(), &t.call).await;
        let deltas: Vec<_> = chunks
            .iter()
            .flat_map(|c| c.choices.iter())
            .flat_map(|d| d.tool_calls.iter())
            .collect();
        assert!(deltas.len() >= 2, "arguments not streamed: {deltas:?}");
        assert!(deltas.iter().all(|d| d.index == deltas[0].index));
        let ids: Vec<_> = deltas.iter().filter(|d| !d.id.is_empty()).collect();
        assert_eq!(ids.len(), 1, "the id comes once: {deltas:?}");
        assert_eq!(
            deltas.iter().map(|d| d.name.as_str()).collect::<String>(),
            TOOL_NAME
        );
        let args: String = deltas.iter().map(|d| d.arguments.as_str()).collect();
        let args: serde_json::Value = serde_json::from_str(&args).expect("JSON");
        assert_eq!(
            args,
            serde_json::from_str::<serde_json::Value>(TOOL_ARGUMENTS).unwrap()
        );
        let finish = chunks
            .iter()
            .flat_map(|c| c.choices.iter())
            .map(|d| d.finish_reason())
            .rfind(|f| *f != FinishReason::Unspecified);
        assert_eq!(finish, Some(FinishReason::ToolCalls));
    }
}
