//! The SSE event loop every SSE wire format (OpenAI, Anthropic, Gemini)
//! shares: bytes to events with `eventsource-stream`, transport and framing
//! failures ending the stream the same way, and each format's [`SseEvents`]
//! turning its events into canonical chunks.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use eventsource_stream::{EventStream, EventStreamError, Eventsource};
use futures_util::Stream;
use switchyard_proto::gateway::v1::ChatChunk;

use crate::ProviderError;
use crate::upstream::{body_excerpt, describe};

/// Canonical chunks from an SSE byte stream (reqwest's `bytes_stream()`, or
/// any stream of byte buffers), as a wire format's `St` reads its events.
pub struct Sse<S, St> {
    events: Pin<Box<EventStream<S>>>,
    state: St,
}

impl<S, B, E, St> Sse<S, St>
where
    S: Stream<Item = Result<B, E>>,
    B: AsRef<[u8]>,
{
    pub(crate) fn with_state(bytes: S, state: St) -> Self {
        Self {
            events: Box::pin(bytes.eventsource()),
            state,
        }
    }
}

impl<S, B, E, St> Stream for Sse<S, St>
where
    S: Stream<Item = Result<B, E>>,
    B: AsRef<[u8]>,
    E: std::error::Error + 'static,
    St: SseEvents + Unpin,
{
    type Item = Result<ChatChunk, ProviderError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        poll_sse(this.events.as_mut(), &mut this.state, cx)
    }
}

/// One wire format's reading of an SSE body, driven by [`Sse`].
pub trait SseEvents {
    /// Whether the stream has ended: the answer is complete, or failed.
    fn done(&self) -> bool;

    /// A chunk an earlier event queued, handed on before reading more.
    fn queued(&mut self) -> Option<ChatChunk> {
        None
    }

    /// One event's (trimmed, non-empty) data: `None` when it carries nothing
    /// to hand on.
    fn on_event(&mut self, event: &str, data: &str) -> Option<Result<ChatChunk, ProviderError>>;

    /// The body ended: the last chunk of a complete answer, or an error for
    /// a truncated one.
    fn on_close(&mut self) -> Option<Result<ChatChunk, ProviderError>>;

    /// Ends the stream with `e`.
    fn fail(&mut self, e: ProviderError) -> Option<Result<ChatChunk, ProviderError>>;
}

/// Reads events until one yields an item. Transport and framing failures
/// end the stream the same way for every wire format.
fn poll_sse<S, B, E>(
    mut events: Pin<&mut EventStream<S>>,
    state: &mut impl SseEvents,
    cx: &mut Context<'_>,
) -> Poll<Option<Result<ChatChunk, ProviderError>>>
where
    S: Stream<Item = Result<B, E>>,
    B: AsRef<[u8]>,
    E: std::error::Error + 'static,
{
    loop {
        if let Some(c) = state.queued() {
            return Poll::Ready(Some(Ok(c)));
        }
        if state.done() {
            return Poll::Ready(None);
        }
        let malformed =
            |e: String| ProviderError::InvalidResponse(format!("malformed event stream: {e}"));
        let item = match ready!(events.as_mut().poll_next(cx)) {
            None => state.on_close(),
            Some(Err(EventStreamError::Transport(e))) => {
                state.fail(ProviderError::Connection(describe(&e)))
            }
            Some(Err(EventStreamError::Utf8(e))) => state.fail(malformed(e.to_string())),
            Some(Err(EventStreamError::Parser(e))) => {
                state.fail(malformed(format!("{:?}", e.code)))
            }
            Some(Ok(ev)) if ev.data.trim().is_empty() => None,
            Some(Ok(ev)) => state.on_event(&ev.event, ev.data.trim()),
        };
        if let Some(item) = item {
            return Poll::Ready(Some(item));
        }
    }
}

/// A stream event the wire format cannot read.
pub(crate) fn undecodable(e: impl std::fmt::Display, data: &str) -> ProviderError {
    ProviderError::InvalidResponse(format!(
        "undecodable stream event ({e}): {}",
        body_excerpt(data.as_bytes())
    ))
}
