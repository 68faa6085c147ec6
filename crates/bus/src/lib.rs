//! The router <-> worker bus: one [`Bus`] trait, two implementations
//! ([`nats::NatsBus`] over NATS subjects with queue groups, and
//! [`inproc::InProcessBus`] for `switchyard serve` in one process). Messages
//! are the protobuf types of `switchyard.bus.v1`.
//!
//! What a caller can rely on, whichever implementation:
//! - [`Bus::call`] fails at once with [`BusError::NoResponders`] when no worker
//!   of the provider is live.
//! - A [`Call`] yields only content events (`result`, `chunk`, `end`,
//!   `error`); transport events (accepted, heartbeat) are handled inside. A
//!   worker that vanishes before the call finished surfaces as
//!   [`BusError::WorkerLost`], so the router can send the work again.
//! - Dropping a [`Call`] before its terminal event cancels the work: the
//!   worker's [`Job::cancelled`] token fires and it drops the upstream call.
//! - Trace context ([`Headers`], e.g. W3C `traceparent`) travels with the
//!   request (NATS headers) and arrives in [`Job::headers`].

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::Stream;
use switchyard_proto::bus::v1::{WorkRequest, work_event};
use tokio_util::sync::CancellationToken;

pub mod inproc;
pub mod nats;

/// Header pairs carried beside a request (trace context and the like).
pub type Headers = Vec<(String, String)>;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum BusError {
    /// No worker of this provider is subscribed.
    #[error("no live worker for provider `{0}`")]
    NoResponders(String),
    /// The worker stopped answering (no ack, missed heartbeats, or it died)
    /// before the call finished.
    #[error("worker for provider `{provider}` was lost: {reason}")]
    WorkerLost { provider: String, reason: String },
    /// The bus connection itself failed.
    #[error("bus connection failed: {0}")]
    Connection(String),
    /// A message on the bus could not be decoded.
    #[error("malformed bus message: {0}")]
    Decode(String),
    /// The bus (or the call's router side) is gone.
    #[error("the bus is closed")]
    Closed,
}

/// A content event of a call; see `switchyard.bus.v1.WorkEvent`.
pub type Event = work_event::Event;

/// Whether `event` ends a call (`result`, `end`, `error`, `embeddings` or
/// `images`).
pub fn is_terminal(event: &Event) -> bool {
    match event {
        Event::Result(_)
        | Event::End(_)
        | Event::Error(_)
        | Event::Embeddings(_)
        | Event::Images(_) => true,
        Event::Accepted(_) | Event::Heartbeat(_) | Event::Chunk(_) => false,
    }
}

/// Whether `event` belongs to the transport (`accepted`, `heartbeat`) rather
/// than to the call's content. Implementations produce these themselves.
pub fn is_transport(event: &Event) -> bool {
    matches!(event, Event::Accepted(_) | Event::Heartbeat(_))
}

/// The router's side of one request: a stream of content events. Ends after
/// a terminal event (`result`, `end` or `error`). Dropping it early cancels
/// the work.
pub struct Call {
    inner: Pin<Box<dyn Stream<Item = Result<Event, BusError>> + Send>>,
}

impl Call {
    pub fn new(inner: Pin<Box<dyn Stream<Item = Result<Event, BusError>> + Send>>) -> Self {
        Self { inner }
    }
}

impl Stream for Call {
    type Item = Result<Event, BusError>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

/// Where a worker sends a job's events.
#[async_trait::async_trait]
pub trait EventSink: Send + Sync {
    /// Sends one content event. Fails when the caller is gone, and after a
    /// terminal event was sent. Transport events (`accepted`, `heartbeat`)
    /// are ignored: the bus sends those itself.
    async fn send(&self, event: Event) -> Result<(), BusError>;
}

/// The worker's side of one request.
pub struct Job {
    pub request: WorkRequest,
    pub headers: Headers,
    pub reply: Box<dyn EventSink>,
    /// Fires when the caller cancelled or went away.
    pub cancelled: CancellationToken,
}

/// What [`JobStream::stop_receiving`] awaits.
pub type StopFuture = Pin<Box<dyn std::future::Future<Output = ()> + Send>>;
/// Starts stopping a [`JobStream`]; called at most once.
pub type StopFn = Box<dyn FnOnce() -> StopFuture + Send>;

/// Jobs for one provider, as a worker receives them.
pub struct JobStream {
    inner: Pin<Box<dyn Stream<Item = Job> + Send>>,
    stop: Option<StopFn>,
}

impl JobStream {
    pub fn new(inner: Pin<Box<dyn Stream<Item = Job> + Send>>, stop: StopFn) -> Self {
        Self {
            inner,
            stop: Some(stop),
        }
    }

    /// Stops taking new jobs (other workers of the provider get them from
    /// now on); jobs already delivered are still yielded, then the stream
    /// ends. Used for graceful shutdown.
    pub async fn stop_receiving(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop().await;
        }
    }
}

impl Stream for JobStream {
    type Item = Job;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Job>> {
        self.inner.as_mut().poll_next(cx)
    }
}

#[async_trait::async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Sends work to the provider named in `request.provider` and returns
    /// its events. Returns once a worker has taken the request (over NATS:
    /// its `accepted`); fails with [`BusError::NoResponders`] at once when no
    /// worker serves the provider, and with [`BusError::WorkerLost`] when
    /// none accepts within the ack timeout.
    async fn call(&self, request: WorkRequest, headers: Headers) -> Result<Call, BusError>;

    /// Starts receiving `provider`'s work. Every worker of one provider
    /// shares the work (NATS queue group): each job goes to exactly one.
    /// `worker_id` is unique per worker process (used to address
    /// cancellations).
    async fn serve(&self, provider: &str, worker_id: &str) -> Result<JobStream, BusError>;
}
