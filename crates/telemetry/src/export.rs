//! The span export pipeline: the SDK's batch processor behind a bounded
//! queue that drops (and counts) rather than waits, feeding an OTLP exporter
//! that runs on a small runtime of its own.
//!
//! Why the runtime of its own: the batch processor exports from its own
//! thread, but the tonic and reqwest clients need a Tokio runtime to do
//! their I/O. Borrowing the application's runtime would tie export to it:
//! a flush on shutdown from async code could wait on the very runtime it
//! blocks, and a struggling exporter would take worker time from requests.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use opentelemetry::Context;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{BatchSpanProcessor, Span, SpanData, SpanExporter, SpanProcessor};

static DROPPED_SPANS: AtomicU64 = AtomicU64::new(0);

/// Spans dropped since the process started because the export queue was
/// full (the collector is slow or down). Export never makes a request wait;
/// this counter is the price. Monotonic, for a metrics counter.
pub fn dropped_spans() -> u64 {
    DROPPED_SPANS.load(Ordering::Relaxed)
}

/// Spans handed to the batch processor and not yet given to the exporter.
/// Kept here because the SDK does not expose its own drop count.
#[derive(Debug, Default)]
pub(crate) struct Queue {
    queued: AtomicUsize,
}

impl Queue {
    fn taken(&self, n: usize) {
        let _ = self
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
                Some(q.saturating_sub(n))
            });
    }
}

/// Admits a finished span to the batch processor only while fewer than
/// `limit` are queued; drops and counts the rest. The processor's own
/// channel holds `limit` too, and holds at most what this gate counts as
/// queued, so it never drops a span itself (its count is private).
#[derive(Debug)]
pub(crate) struct BoundedProcessor {
    inner: BatchSpanProcessor,
    queue: Arc<Queue>,
    limit: usize,
}

impl BoundedProcessor {
    pub(crate) fn new(inner: BatchSpanProcessor, queue: Arc<Queue>, limit: usize) -> Self {
        Self {
            inner,
            queue,
            limit,
        }
    }
}

impl SpanProcessor for BoundedProcessor {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        let admitted = self
            .queue
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
                (q < self.limit).then_some(q + 1)
            })
            .is_ok();
        if admitted {
            self.inner.on_end(span);
        } else {
            DROPPED_SPANS.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// Runs an exporter's calls on `handle` (the export runtime), counts spans
/// leaving the queue, and logs the first failure of a run of failures and
/// the recovery, not every failed batch.
#[derive(Debug)]
pub(crate) struct OnRuntime<E> {
    inner: Arc<E>,
    handle: tokio::runtime::Handle,
    queue: Arc<Queue>,
    failing: AtomicBool,
}

impl<E> OnRuntime<E> {
    pub(crate) fn new(inner: E, handle: tokio::runtime::Handle, queue: Arc<Queue>) -> Self {
        Self {
            inner: Arc::new(inner),
            handle,
            queue,
            failing: AtomicBool::new(false),
        }
    }
}

impl<E: SpanExporter + 'static> SpanExporter for OnRuntime<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.queue.taken(batch.len());
        let inner = self.inner.clone();
        let result = match self
            .handle
            .spawn(async move { inner.export(batch).await })
            .await
        {
            Ok(r) => r,
            Err(e) => Err(OTelSdkError::InternalFailure(format!(
                "span export task failed: {e}"
            ))),
        };
        match &result {
            Err(e) if !self.failing.swap(true, Ordering::Relaxed) => {
                tracing::warn!(error = %e, "cannot export spans to the OTLP collector; dropping them until it answers (count: dropped spans)");
            }
            Ok(()) if self.failing.swap(false, Ordering::Relaxed) => {
                tracing::info!("exporting spans to the OTLP collector again");
            }
            _ => {}
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        // Called once while the provider is built, before any export holds
        // a clone: the exporter is still ours alone.
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.set_resource(resource);
        }
    }
}
