//! The in-process bus: router and workers in one process (`switchyard
//! serve` without NATS).
//!
//! Per provider there is one bounded job channel; every worker serving the
//! provider pulls from it, so each job goes to exactly one worker and a slow
//! fleet pushes back on callers instead of queueing without bound. Each call
//! gets its own bounded event channel, so a caller that reads slowly slows
//! the worker down rather than buffering the whole answer.
//!
//! There are no acknowledgements or heartbeats here: a worker cannot vanish
//! without its job being dropped, and a dropped job ends the caller's
//! [`Call`] with [`BusError::WorkerLost`] at once.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use futures_util::Stream;
use switchyard_proto::bus::v1::WorkRequest;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{
    Bus, BusError, Call, Event, EventSink, Headers, Job, JobStream, StopFuture, is_terminal,
    is_transport,
};

/// Jobs waiting for a worker of one provider before `call` waits.
const DEFAULT_JOB_CAPACITY: usize = 64;
/// Events a worker may run ahead of its caller.
const EVENT_CAPACITY: usize = 16;

type SharedReceiver = Arc<tokio::sync::Mutex<mpsc::Receiver<Job>>>;

/// The in-process [`Bus`]. Clones share the same providers and workers.
#[derive(Clone)]
pub struct InProcessBus {
    inner: Arc<Inner>,
}

struct Inner {
    job_capacity: usize,
    providers: Mutex<HashMap<String, Provider>>,
}

struct Provider {
    jobs: mpsc::Sender<Job>,
    receiver: SharedReceiver,
    /// Workers whose streams still take jobs; the entry goes away at zero so
    /// jobs nobody will take are dropped (their callers see `WorkerLost`).
    live: usize,
}

impl Default for InProcessBus {
    fn default() -> Self {
        Self::new()
    }
}

impl InProcessBus {
    pub fn new() -> Self {
        Self::with_job_capacity(DEFAULT_JOB_CAPACITY)
    }

    /// Like [`InProcessBus::new`] with `capacity` jobs per provider waiting
    /// for a worker before [`Bus::call`] waits for room.
    pub fn with_job_capacity(capacity: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                job_capacity: capacity.max(1),
                providers: Mutex::new(HashMap::new()),
            }),
        }
    }
}

impl Inner {
    fn providers(&self) -> MutexGuard<'_, HashMap<String, Provider>> {
        // A panic elsewhere while holding the lock leaves the map consistent
        // (every update is a single insert/remove or counter change).
        self.providers.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn join(&self, provider: &str) -> SharedReceiver {
        let mut map = self.providers();
        let entry = map.entry(provider.to_owned()).or_insert_with(|| {
            let (jobs, rx) = mpsc::channel(self.job_capacity);
            Provider {
                jobs,
                receiver: Arc::new(tokio::sync::Mutex::new(rx)),
                live: 0,
            }
        });
        entry.live += 1;
        entry.receiver.clone()
    }

    fn leave(&self, provider: &str) {
        let mut map = self.providers();
        if let Some(entry) = map.get_mut(provider) {
            entry.live = entry.live.saturating_sub(1);
            if entry.live == 0 {
                map.remove(provider);
            }
        }
    }

    fn sender(&self, provider: &str) -> Option<mpsc::Sender<Job>> {
        self.providers()
            .get(provider)
            .filter(|p| p.live > 0)
            .map(|p| p.jobs.clone())
    }
}

#[async_trait::async_trait]
impl Bus for InProcessBus {
    async fn call(&self, request: WorkRequest, headers: Headers) -> Result<Call, BusError> {
        let provider = request.provider.clone();
        let Some(jobs) = self.inner.sender(&provider) else {
            return Err(BusError::NoResponders(provider));
        };
        let (events_tx, events_rx) = mpsc::channel(EVENT_CAPACITY);
        let cancelled = CancellationToken::new();
        let job = Job {
            request,
            headers,
            reply: Box::new(InProcSink {
                events: events_tx,
                finished: AtomicBool::new(false),
                cancelled: cancelled.clone(),
            }),
            cancelled: cancelled.clone(),
        };
        // Fails only when the last worker left between the lookup and now.
        jobs.send(job)
            .await
            .map_err(|_| BusError::NoResponders(provider.clone()))?;
        Ok(Call::new(Box::pin(InProcCall {
            events: events_rx,
            cancelled,
            provider,
            done: false,
        })))
    }

    async fn serve(&self, provider: &str, _worker_id: &str) -> Result<JobStream, BusError> {
        let receiver = self.inner.join(provider);
        let slot = Arc::new(Slot {
            bus: self.inner.clone(),
            provider: provider.to_owned(),
            receiver: Mutex::new(Some(receiver)),
            stopped: CancellationToken::new(),
            left: AtomicBool::new(false),
        });
        let stream = futures_util::stream::unfold(slot.clone(), |slot| async move {
            let job = slot.next_job().await?;
            Some((job, slot))
        });
        let stop = Box::new(move || {
            let fut: StopFuture = Box::pin(async move {
                slot.stop();
            });
            fut
        });
        Ok(JobStream::new(Box::pin(stream), stop))
    }
}

/// One worker's membership in a provider.
struct Slot {
    bus: Arc<Inner>,
    provider: String,
    /// Dropped on stop, so a stopped worker does not keep queued jobs alive.
    receiver: Mutex<Option<SharedReceiver>>,
    stopped: CancellationToken,
    left: AtomicBool,
}

impl Slot {
    async fn next_job(&self) -> Option<Job> {
        let receiver = self
            .receiver
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()?;
        tokio::select! {
            biased;
            _ = self.stopped.cancelled() => None,
            job = async { receiver.lock().await.recv().await } => job,
        }
    }

    fn stop(&self) {
        self.stopped.cancel();
        self.receiver
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if !self.left.swap(true, Ordering::SeqCst) {
            self.bus.leave(&self.provider);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.stop();
    }
}

struct InProcSink {
    events: mpsc::Sender<Event>,
    finished: AtomicBool,
    cancelled: CancellationToken,
}

#[async_trait::async_trait]
impl EventSink for InProcSink {
    async fn send(&self, event: Event) -> Result<(), BusError> {
        if is_transport(&event) {
            return Ok(());
        }
        // Past a terminal event nobody reads: the bounded channel would fill
        // and block the worker forever.
        if self.finished.load(Ordering::SeqCst) || self.cancelled.is_cancelled() {
            return Err(BusError::Closed);
        }
        let terminal = is_terminal(&event);
        tokio::select! {
            biased;
            _ = self.cancelled.cancelled() => return Err(BusError::Closed),
            sent = self.events.send(event) => {
                if sent.is_err() {
                    self.cancelled.cancel();
                    return Err(BusError::Closed);
                }
            }
        }
        if terminal {
            self.finished.store(true, Ordering::SeqCst);
        }
        Ok(())
    }
}

struct InProcCall {
    events: mpsc::Receiver<Event>,
    cancelled: CancellationToken,
    provider: String,
    done: bool,
}

impl Stream for InProcCall {
    type Item = Result<Event, BusError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if self.done {
                return Poll::Ready(None);
            }
            match self.events.poll_recv(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(event)) => {
                    if is_transport(&event) {
                        continue;
                    }
                    if is_terminal(&event) {
                        self.done = true;
                    }
                    return Poll::Ready(Some(Ok(event)));
                }
                Poll::Ready(None) => {
                    self.done = true;
                    let provider = self.provider.clone();
                    return Poll::Ready(Some(Err(BusError::WorkerLost {
                        provider,
                        reason: "the worker dropped the job without a final event".to_owned(),
                    })));
                }
            }
        }
    }
}

impl Drop for InProcCall {
    fn drop(&mut self) {
        if !self.done {
            self.cancelled.cancel();
        }
    }
}
