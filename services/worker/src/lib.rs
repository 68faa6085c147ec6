//! The worker: takes one provider's work from the bus, calls the upstream
//! through that provider's wire format with a pooled HTTP client, and sends
//! events back as they arrive (chunks are forwarded one by one, never
//! buffered into a whole answer).
//!
//! - Concurrency is bounded by `max_concurrency` in-flight upstream calls;
//!   up to `max_queue` more wait for a slot. Past that the worker answers
//!   "overloaded" at once so the router can pick another target instead of
//!   waiting behind a full queue.
//! - A cancelled job (client gone, router gave up) drops its upstream call,
//!   which closes the upstream connection: no tokens paid for nobody.
//! - On shutdown the worker stops taking work (other replicas get it), lets
//!   in-flight jobs finish within the grace period, then cancels the rest.
//! - Metrics (`switchyard.worker.in_flight`, `switchyard.worker.queue_depth`,
//!   `switchyard.worker.shed`) go out over OTLP only: the worker has no HTTP
//!   listener to scrape.

mod health;

pub use health::{Connected, serve_health};

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use switchyard_bus::{Bus, BusError, Event, Job};
use switchyard_config::ProviderConfig;
use switchyard_proto::bus::v1::work_request::Work;
use switchyard_proto::bus::v1::{ErrorKind, StreamEnd, UpstreamError};
use switchyard_proto::gateway::v1::Usage;
use switchyard_providers::{ChatCall, EmbedCall, ImageCall, Provider, ProviderError};
use switchyard_telemetry::semconv::SWITCHYARD_PROVIDER;
use switchyard_telemetry::semconv::{
    GEN_AI_OPERATION_NAME, GEN_AI_PROVIDER_NAME, GEN_AI_REQUEST_MODEL, GEN_AI_USAGE_INPUT_TOKENS,
    GEN_AI_USAGE_OUTPUT_TOKENS, SWITCHYARD_ATTEMPT, SWITCHYARD_OUTCOME, SWITCHYARD_PROVIDER_KIND,
    SWITCHYARD_REQUEST_ID, SWITCHYARD_STREAM, SWITCHYARD_UPSTREAM_STATUS,
};
use switchyard_telemetry::{KeyValue, set_attribute};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, Span};

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("worker for provider `{provider}` cannot subscribe to the bus: {source}")]
    Subscribe { provider: String, source: BusError },
}

pub struct Worker {
    provider_name: String,
    worker_id: String,
    provider: Arc<dyn Provider>,
    slots: Arc<Semaphore>,
    waiting: Arc<AtomicUsize>,
    max_queue: usize,
    /// Jobs answered "overloaded" at once.
    shed: switchyard_telemetry::Counter<u64>,
    /// `switchyard.provider`: the attribute on every worker metric.
    provider_attr: [KeyValue; 1],
    /// Held so their callbacks stay registered while the worker serves.
    _gauges: [switchyard_telemetry::ObservableGauge<i64>; 2],
}

impl Worker {
    pub fn new(config: &ProviderConfig, provider: Arc<dyn Provider>, worker_id: String) -> Self {
        let max_concurrency = config.max_concurrency.max(1);
        let slots = Arc::new(Semaphore::new(max_concurrency));
        let waiting = Arc::new(AtomicUsize::new(0));
        let provider_attr = [KeyValue::new(SWITCHYARD_PROVIDER, config.name.clone())];
        // A no-op meter unless OTLP export is on: read at each collection.
        let meter = switchyard_telemetry::meter();
        let in_flight = {
            let (slots, attr) = (slots.clone(), provider_attr.clone());
            meter
                .i64_observable_gauge("switchyard.worker.in_flight")
                .with_description("Upstream calls in flight (slots taken of max_concurrency)")
                .with_unit("{request}")
                .with_callback(move |o| {
                    let busy = max_concurrency.saturating_sub(slots.available_permits());
                    o.observe(i64::try_from(busy).unwrap_or(i64::MAX), &attr);
                })
                .build()
        };
        let queue_depth = {
            let (waiting, attr) = (waiting.clone(), provider_attr.clone());
            meter
                .i64_observable_gauge("switchyard.worker.queue_depth")
                .with_description("Jobs waiting for a slot (at most max_queue)")
                .with_unit("{request}")
                .with_callback(move |o| {
                    let n = waiting.load(Ordering::Relaxed);
                    o.observe(i64::try_from(n).unwrap_or(i64::MAX), &attr);
                })
                .build()
        };
        let shed = meter
            .u64_counter("switchyard.worker.shed")
            .with_description("Jobs answered overloaded at once: slots and queue were full")
            .with_unit("{request}")
            .build();
        Self {
            provider_name: config.name.clone(),
            worker_id,
            provider,
            slots,
            waiting,
            max_queue: config.max_queue,
            shed,
            provider_attr,
            _gauges: [in_flight, queue_depth],
        }
    }

    /// Serves jobs until `shutdown` fires, then drains within `grace`.
    pub async fn run(
        self,
        bus: Arc<dyn Bus>,
        shutdown: CancellationToken,
        grace: Duration,
    ) -> Result<(), WorkerError> {
        let mut jobs = bus
            .serve(&self.provider_name, &self.worker_id)
            .await
            .map_err(|source| WorkerError::Subscribe {
                provider: self.provider_name.clone(),
                source,
            })?;
        tracing::info!(provider = %self.provider_name, worker_id = %self.worker_id, kind = self.provider.kind(), "worker serving");
        let tracker = TaskTracker::new();
        // Fired when the grace period is over: in-flight jobs give up.
        let hard_stop = CancellationToken::new();
        let mut stopping = false;
        loop {
            let job = tokio::select! {
                job = jobs.next() => job,
                _ = shutdown.cancelled(), if !stopping => {
                    stopping = true;
                    tracing::info!(provider = %self.provider_name, "worker stopping: no new work, finishing in-flight jobs");
                    jobs.stop_receiving().await;
                    continue;
                }
            };
            let Some(job) = job else { break };
            self.dispatch(job, &tracker, hard_stop.clone());
        }
        tracker.close();
        if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
            tracing::warn!(provider = %self.provider_name, remaining = tracker.len(), "grace period over: cancelling in-flight jobs");
            hard_stop.cancel();
            tracker.wait().await;
        }
        tracing::info!(provider = %self.provider_name, "worker stopped");
        Ok(())
    }

    fn dispatch(&self, job: Job, tracker: &TaskTracker, hard_stop: CancellationToken) {
        let span = job_span(&self.provider_name, self.provider.kind(), &job);
        let waiting = self.waiting.fetch_add(1, Ordering::AcqRel);
        if self.slots.available_permits() == 0 && waiting >= self.max_queue {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            self.shed.add(1, &self.provider_attr);
            tracker.spawn(
                async move {
                    let e = UpstreamError {
                        kind: ErrorKind::Overloaded as i32,
                        message: "worker at capacity (max_concurrency and max_queue reached)"
                            .into(),
                        ..Default::default()
                    };
                    job_failed(&e);
                    let _ = job.reply.send(Event::Error(e)).await;
                }
                .instrument(span),
            );
            return;
        }
        let slots = self.slots.clone();
        let queued = self.waiting.clone();
        let provider = self.provider.clone();
        tracker.spawn(async move {
            let cancelled = job.cancelled.clone();
            let permit = tokio::select! {
                p = slots.acquire_owned() => p,
                _ = cancelled.cancelled() => { queued.fetch_sub(1, Ordering::AcqRel); return; }
                _ = hard_stop.cancelled() => { queued.fetch_sub(1, Ordering::AcqRel); return; }
            };
            queued.fetch_sub(1, Ordering::AcqRel);
            let Ok(_permit) = permit else { return };
            tokio::select! {
                _ = run_job(&*provider, &job) => {}
                _ = cancelled.cancelled() => {
                    set_attribute(&Span::current(), SWITCHYARD_OUTCOME, "cancelled");
                    tracing::debug!(request_id = %job.request.request_id, "job cancelled: upstream call dropped");
                }
                _ = hard_stop.cancelled() => {
                    let e = UpstreamError { kind: ErrorKind::Internal as i32, message: "worker shut down before the answer finished".into(), ..Default::default() };
                    job_failed(&e);
                    let _ = job.reply.send(Event::Error(e)).await;
                }
            }
        }.instrument(span));
    }
}

/// The terminal event of a call answered in one piece.
fn finish_unary<T>(result: Result<T, ProviderError>, ok: impl FnOnce(T) -> Event) -> Event {
    match result {
        Ok(r) => ok(r),
        Err(e) => {
            let e = upstream_error(&e);
            job_failed(&e);
            Event::Error(e)
        }
    }
}

async fn run_job(provider: &dyn Provider, job: &Job) {
    let req = &job.request;
    let timeout = (req.deadline_ms > 0).then(|| Duration::from_millis(req.deadline_ms));
    let spec = match req.work.clone() {
        Some(Work::Chat(spec)) => spec,
        Some(Work::Embed(spec)) => {
            let call = EmbedCall {
                spec,
                upstream_model: req.upstream_model.clone(),
                request_id: req.request_id.clone(),
                timeout,
            };
            let event = finish_unary(provider.embed(&call).await, |r| {
                job_done(r.usage.as_ref());
                Event::Embeddings(r)
            });
            let _ = job.reply.send(event).await;
            return;
        }
        Some(Work::Image(spec)) => {
            let call = ImageCall {
                spec,
                upstream_model: req.upstream_model.clone(),
                request_id: req.request_id.clone(),
                timeout,
            };
            let event = finish_unary(provider.images(&call).await, |r| {
                job_done(r.usage.as_ref());
                Event::Images(r)
            });
            let _ = job.reply.send(event).await;
            return;
        }
        None => {
            let e = UpstreamError {
                kind: ErrorKind::Internal as i32,
                message: "work request without any work (chat, embed or image)".into(),
                ..Default::default()
            };
            let _ = job.reply.send(Event::Error(e)).await;
            return;
        }
    };
    let call = ChatCall {
        spec,
        upstream_model: req.upstream_model.clone(),
        request_id: req.request_id.clone(),
        timeout,
    };
    // A Responses request only a `responses: native` target can serve:
    // every other provider refuses it, so the route moves on.
    if let Some(e) =
        switchyard_providers::openai::native::refusal(&call.spec, provider.responses_native())
    {
        let e = upstream_error(&e);
        job_failed(&e);
        let _ = job.reply.send(Event::Error(e)).await;
        return;
    }
    if !req.stream {
        let event = finish_unary(provider.chat(&call).await, |r| {
            job_done(r.usage.as_ref());
            Event::Result(r)
        });
        let _ = job.reply.send(event).await;
        return;
    }
    let mut chunks = match provider.chat_stream(&call).await {
        Ok(s) => s,
        Err(e) => {
            let e = upstream_error(&e);
            job_failed(&e);
            let _ = job.reply.send(Event::Error(e)).await;
            return;
        }
    };
    // Usage rides on its own event at the end, so the router decides whether
    // the client sees a usage chunk; the gateway always learns it.
    let mut usage: Option<Usage> = None;
    while let Some(item) = chunks.next().await {
        match item {
            Ok(mut chunk) => {
                if let Some(u) = chunk.usage.take() {
                    usage = Some(u);
                }
                // A native Responses event goes on even without choices:
                // the client gets every event the upstream sent.
                if chunk.choices.is_empty() && chunk.native_event.is_none() {
                    continue;
                }
                if job.reply.send(Event::Chunk(chunk)).await.is_err() {
                    // The caller is gone: dropping `chunks` closes the upstream.
                    set_attribute(&Span::current(), SWITCHYARD_OUTCOME, "cancelled");
                    return;
                }
            }
            Err(e) => {
                let e = upstream_error(&e);
                job_failed(&e);
                let _ = job.reply.send(Event::Error(e)).await;
                return;
            }
        }
    }
    job_done(usage.as_ref());
    let _ = job.reply.send(Event::End(StreamEnd { usage })).await;
}

/// The worker's span for one job: a server span continuing the router's
/// attempt span (its context came in the bus headers), so the trace runs
/// router request -> attempt -> worker -> upstream call.
fn job_span(provider: &str, kind: &'static str, job: &Job) -> Span {
    let req = &job.request;
    let span = tracing::info_span!(
        "worker",
        otel.name = %format_args!("worker {provider}"),
        otel.kind = "server",
        request_id = %req.request_id,
        trace_id = tracing::field::Empty,
    );
    switchyard_telemetry::continue_trace(&span, &job.headers);
    set_attribute(&span, SWITCHYARD_REQUEST_ID, req.request_id.clone());
    let operation = match &req.work {
        Some(Work::Embed(_)) => "embeddings",
        Some(Work::Image(_)) => "image_generation",
        Some(Work::Chat(_)) | None => "chat",
    };
    set_attribute(&span, GEN_AI_OPERATION_NAME, operation);
    set_attribute(&span, GEN_AI_PROVIDER_NAME, provider.to_owned());
    set_attribute(&span, SWITCHYARD_PROVIDER_KIND, kind);
    set_attribute(&span, GEN_AI_REQUEST_MODEL, req.upstream_model.clone());
    set_attribute(&span, SWITCHYARD_ATTEMPT, i64::from(req.attempt));
    set_attribute(&span, SWITCHYARD_STREAM, req.stream);
    span
}

/// Notes a failed job on the current (job) span.
fn job_failed(e: &UpstreamError) {
    let span = Span::current();
    let kind = ErrorKind::try_from(e.kind)
        .unwrap_or(ErrorKind::Unspecified)
        .as_str_name()
        .trim_start_matches("ERROR_KIND_")
        .to_ascii_lowercase();
    set_attribute(&span, SWITCHYARD_OUTCOME, kind.clone());
    if e.upstream_status > 0 {
        set_attribute(
            &span,
            SWITCHYARD_UPSTREAM_STATUS,
            i64::from(e.upstream_status),
        );
    }
    switchyard_telemetry::set_error(&span, &kind, e.message.clone());
}

/// Notes a served job (and its usage) on the current (job) span.
fn job_done(usage: Option<&Usage>) {
    let span = Span::current();
    set_attribute(&span, SWITCHYARD_OUTCOME, "ok");
    if let Some(u) = usage {
        set_attribute(&span, GEN_AI_USAGE_INPUT_TOKENS, i64::from(u.prompt_tokens));
        set_attribute(
            &span,
            GEN_AI_USAGE_OUTPUT_TOKENS,
            i64::from(u.completion_tokens),
        );
    }
}

fn millis(d: Option<Duration>) -> u64 {
    d.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The one mapping from a provider's classified failure to the bus's.
pub fn upstream_error(e: &ProviderError) -> UpstreamError {
    let message = match e {
        ProviderError::RateLimited { message, .. }
        | ProviderError::Overloaded { message, .. }
        | ProviderError::BadRequest { message, .. }
        | ProviderError::Auth { message, .. }
        | ProviderError::ContextTooLong { message }
        | ProviderError::NotFound { message }
        | ProviderError::Upstream { message, .. } => message.clone(),
        ProviderError::Timeout(_)
        | ProviderError::Connection(_)
        | ProviderError::InvalidResponse(_) => e.to_string(),
    };
    let (kind, status, retry_after, code, param) = match e {
        ProviderError::RateLimited { retry_after, .. } => {
            (ErrorKind::RateLimited, 429, *retry_after, None, None)
        }
        ProviderError::Overloaded {
            status,
            retry_after,
            ..
        } => (ErrorKind::Overloaded, *status, *retry_after, None, None),
        ProviderError::BadRequest {
            status,
            param,
            code,
            ..
        } => (
            ErrorKind::BadRequest,
            *status,
            None,
            code.clone(),
            param.clone(),
        ),
        ProviderError::Auth { status, .. } => (ErrorKind::Auth, *status, None, None, None),
        ProviderError::ContextTooLong { .. } => (
            ErrorKind::ContextTooLong,
            400,
            None,
            Some("context_length_exceeded".to_owned()),
            None,
        ),
        ProviderError::NotFound { .. } => (ErrorKind::NotFound, 404, None, None, None),
        ProviderError::Timeout(_) => (ErrorKind::Timeout, 0, None, None, None),
        ProviderError::Connection(_) => (ErrorKind::Connection, 0, None, None, None),
        ProviderError::Upstream { status, .. } => (ErrorKind::Upstream, *status, None, None, None),
        ProviderError::InvalidResponse(_) => (ErrorKind::Upstream, 0, None, None, None),
    };
    UpstreamError {
        kind: kind as i32,
        message,
        upstream_status: u32::from(status),
        retry_after_ms: millis(retry_after),
        code: code.unwrap_or_default(),
        param: param.unwrap_or_default(),
    }
}
