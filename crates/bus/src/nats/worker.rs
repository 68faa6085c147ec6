//! The worker's side of the NATS bus: taking work, acknowledging it, sending
//! events and heartbeats, and hearing cancellations.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use async_nats::{Client, Message, StatusCode, Subject, Subscriber};
use bytes::Bytes;
use futures_util::StreamExt;
use prost::Message as _;
use switchyard_proto::bus::v1::{
    Accepted, CancelRequest, ErrorKind, Heartbeat, UpstreamError, WorkEvent, WorkRequest,
};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::{CALL_HEADER, Inner, connection_error, from_header_map, server_round_trip};
use crate::{BusError, Event, EventSink, Job, JobStream, StopFuture, is_terminal, is_transport};

/// How long a worker remembers a provider-wide cancel for a request it has
/// not (yet) received. Such a cancel overtakes its request by milliseconds
/// in practice; the margin covers a worker busy draining a backlog.
pub const RECENT_CANCEL_TTL: Duration = Duration::from_secs(60);
/// At most this many remembered cancels; the oldest go first.
pub const RECENT_CANCEL_MAX: usize = 4096;

/// Work messages read ahead of the job stream. Kept small: what sits here is
/// not acknowledged yet, and the caller's ack timeout runs.
const READ_AHEAD: usize = 1;

pub(super) async fn serve(
    inner: &Arc<Inner>,
    provider: &str,
    worker_id: &str,
) -> Result<JobStream, BusError> {
    if inner.shutdown.is_cancelled() {
        return Err(BusError::Closed);
    }
    let client = &inner.client;
    let work = client
        .queue_subscribe(
            inner.subjects.work(provider),
            inner.subjects.queue_group(provider),
        )
        .await
        .map_err(connection_error)?;
    let ctl = client
        .subscribe(inner.subjects.ctl(worker_id))
        .await
        .map_err(connection_error)?;
    let provider_cancels = client
        .subscribe(inner.subjects.cancel(provider))
        .await
        .map_err(connection_error)?;
    let status_prefix = client.new_inbox();
    let statuses = client
        .subscribe(format!("{status_prefix}.*"))
        .await
        .map_err(connection_error)?;
    // Callers that publish after `serve` returns must find the subscription
    // in place, or they would get NoResponders from a live worker.
    if let Err(e) = server_round_trip(client).await {
        tracing::warn!(provider, error = %e, "NATS did not confirm the work subscription yet");
    }

    let table_gone = CancellationToken::new();
    let table = Arc::new(JobTable {
        state: Mutex::new(TableState::default()),
        _gone: table_gone.clone().drop_guard(),
    });
    tokio::spawn(control_loop(
        ControlSubs {
            ctl,
            provider_cancels,
            statuses,
        },
        Arc::downgrade(&table),
        table_gone,
        inner.shutdown.clone(),
    ));

    let (messages_tx, messages_rx) = mpsc::channel(READ_AHEAD);
    let (stop_tx, stop_rx) = oneshot::channel::<oneshot::Sender<()>>();
    tokio::spawn(forward_work(
        work,
        messages_tx,
        stop_rx,
        inner.shutdown.clone(),
        client.clone(),
    ));

    let intake = Intake {
        inner: inner.clone(),
        table,
        worker_id: worker_id.to_owned(),
        provider: provider.to_owned(),
        status_prefix,
    };
    let jobs =
        futures_util::stream::unfold((messages_rx, intake), |(mut messages, intake)| async move {
            loop {
                let msg = messages.recv().await?;
                if let Some(job) = intake.take(msg).await {
                    return Some((job, (messages, intake)));
                }
            }
        });
    let stop = Box::new(move || {
        let fut: StopFuture = Box::pin(async move {
            let (done_tx, done_rx) = oneshot::channel();
            if stop_tx.send(done_tx).is_ok() {
                // Err: the forwarder already ended (bus closed).
                let _ = done_rx.await;
            }
        });
        fut
    });
    Ok(JobStream::new(Box::pin(jobs), stop))
}

/// Moves work messages from the subscription to the job stream, and drains
/// the subscription on request even while the stream is not being polled.
async fn forward_work(
    mut work: Subscriber,
    messages: mpsc::Sender<Message>,
    mut stop: oneshot::Receiver<oneshot::Sender<()>>,
    shutdown: CancellationToken,
    client: Client,
) {
    let mut stopping = false;
    let mut pending: Option<Message> = None;
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            _ = messages.closed() => break,
            request = &mut stop, if !stopping => {
                stopping = true;
                let Ok(done) = request else {
                    // The job stream was dropped without stopping first.
                    break;
                };
                if let Err(e) = work.drain().await {
                    tracing::warn!(error = %e, "draining the work subscription failed");
                    break;
                }
                if let Err(e) = server_round_trip(&client).await {
                    tracing::warn!(error = %e, "NATS did not confirm the unsubscribe");
                }
                let _ = done.send(());
            }
            permit = messages.reserve(), if pending.is_some() => {
                let Ok(permit) = permit else { break };
                if let Some(msg) = pending.take() {
                    permit.send(msg);
                }
            }
            msg = work.next(), if pending.is_none() => match msg {
                Some(msg) => pending = Some(msg),
                // Drained (or the connection closed for good).
                None => break,
            },
        }
    }
    // A message read but never handed over is lost; its caller sees no
    // `accepted` and retries after its ack timeout.
}

struct Intake {
    inner: Arc<Inner>,
    table: Arc<JobTable>,
    worker_id: String,
    provider: String,
    status_prefix: String,
}

impl Intake {
    /// Turns a work message into a job, or `None` when there is nothing to
    /// do (undecodable, or cancelled before it arrived).
    async fn take(&self, msg: Message) -> Option<Job> {
        let Some(reply) = msg.reply.clone() else {
            tracing::warn!(provider = %self.provider, subject = %msg.subject, "work message without a reply subject; dropped");
            return None;
        };
        let request = match WorkRequest::decode(msg.payload.clone()) {
            Ok(request) => request,
            Err(e) => {
                self.reject(reply, format!("undecodable WorkRequest: {e}"))
                    .await;
                return None;
            }
        };
        let cancelled = self.inner.shutdown.child_token();
        let Some(job_no) = self.table.register(
            reply.to_string(),
            request.request_id.clone(),
            cancelled.clone(),
        ) else {
            tracing::debug!(request_id = %request.request_id, "request cancelled before it arrived; skipped");
            return None;
        };
        let registration = Registration {
            table: self.table.clone(),
            job: job_no,
        };
        let shared = Arc::new(SinkShared {
            client: self.inner.client.clone(),
            reply,
            status_reply: Subject::from(format!("{}.{job_no}", self.status_prefix)),
            cancelled: cancelled.clone(),
            done: CancellationToken::new(),
            heartbeat_interval: self.inner.heartbeat_interval,
            state: tokio::sync::Mutex::new(SinkState {
                next_seq: 0,
                last_sent: Instant::now(),
                finished: false,
            }),
        });
        {
            let mut state = shared.state.lock().await;
            let accepted = Event::Accepted(Accepted {
                worker_id: self.worker_id.clone(),
            });
            if let Err(e) = shared.publish(&mut state, accepted).await {
                tracing::warn!(request_id = %request.request_id, error = %e, "could not accept a request");
                return None;
            }
        }
        tokio::spawn(heartbeats(shared.clone()));
        Some(Job {
            request,
            headers: from_header_map(msg.headers.as_ref()),
            reply: Box::new(NatsSink {
                _done: shared.done.clone().drop_guard(),
                shared,
                _registration: registration,
            }),
            cancelled,
        })
    }

    /// Answers a request the worker cannot even read, so its caller gets an
    /// error now instead of retrying after a timeout.
    async fn reject(&self, reply: Subject, message: String) {
        tracing::warn!(provider = %self.provider, %message, "rejecting work");
        let events = [
            Event::Accepted(Accepted {
                worker_id: self.worker_id.clone(),
            }),
            Event::Error(UpstreamError {
                kind: ErrorKind::Internal as i32,
                message,
                ..Default::default()
            }),
        ];
        for (seq, event) in (0u64..).zip(events) {
            let payload = Bytes::from(
                WorkEvent {
                    seq,
                    event: Some(event),
                }
                .encode_to_vec(),
            );
            if self
                .inner
                .client
                .publish(reply.clone(), payload)
                .await
                .is_err()
            {
                return;
            }
        }
    }
}

struct SinkShared {
    client: Client,
    /// The caller's inbox.
    reply: Subject,
    /// Ours: the server sends a no-responders status here when the caller's
    /// inbox is gone.
    status_reply: Subject,
    cancelled: CancellationToken,
    /// Fired once the job is over; stops the heartbeats.
    done: CancellationToken,
    heartbeat_interval: Duration,
    /// Held across the publish so sequence numbers go out in order.
    state: tokio::sync::Mutex<SinkState>,
}

struct SinkState {
    next_seq: u64,
    last_sent: Instant,
    finished: bool,
}

impl SinkShared {
    async fn publish(&self, state: &mut SinkState, event: Event) -> Result<(), BusError> {
        let payload = Bytes::from(
            WorkEvent {
                seq: state.next_seq,
                event: Some(event),
            }
            .encode_to_vec(),
        );
        let published = self
            .client
            .publish_with_reply(self.reply.clone(), self.status_reply.clone(), payload)
            .await;
        if let Err(e) = published {
            // The caller can no longer hear us: stop paying for the upstream.
            self.cancelled.cancel();
            self.done.cancel();
            return Err(connection_error(e));
        }
        state.next_seq += 1;
        state.last_sent = Instant::now();
        Ok(())
    }
}

async fn heartbeats(shared: Arc<SinkShared>) {
    loop {
        let due = {
            let state = shared.state.lock().await;
            if state.finished {
                return;
            }
            state.last_sent + shared.heartbeat_interval
        };
        tokio::select! {
            _ = shared.done.cancelled() => return,
            _ = shared.cancelled.cancelled() => return,
            _ = tokio::time::sleep_until(due) => {}
        }
        let mut state = shared.state.lock().await;
        if state.finished || shared.done.is_cancelled() {
            return;
        }
        // Content sent meanwhile postpones the heartbeat.
        if state.last_sent.elapsed() >= shared.heartbeat_interval
            && shared
                .publish(&mut state, Event::Heartbeat(Heartbeat {}))
                .await
                .is_err()
        {
            return;
        }
    }
}

struct NatsSink {
    shared: Arc<SinkShared>,
    /// Stops the heartbeats when the job is dropped, finished or not: a
    /// worker that lets go of a job without answering shows up as lost.
    _done: DropGuard,
    _registration: Registration,
}

#[async_trait::async_trait]
impl EventSink for NatsSink {
    async fn send(&self, event: Event) -> Result<(), BusError> {
        if is_transport(&event) {
            return Ok(());
        }
        if self.shared.cancelled.is_cancelled() {
            return Err(BusError::Closed);
        }
        let mut state = self.shared.state.lock().await;
        if state.finished {
            return Err(BusError::Closed);
        }
        let terminal = is_terminal(&event);
        self.shared.publish(&mut state, event).await?;
        if terminal {
            state.finished = true;
            self.shared.done.cancel();
        }
        Ok(())
    }
}

/// Removes the job from the table when its sink goes away.
struct Registration {
    table: Arc<JobTable>,
    job: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.table.lock().active.remove(&self.job);
    }
}

/// The jobs a `serve` has in flight and the cancels it remembers.
struct JobTable {
    state: Mutex<TableState>,
    /// Ends the control loop once neither the job stream nor any job needs it.
    _gone: DropGuard,
}

#[derive(Default)]
struct TableState {
    next_job: u64,
    active: HashMap<u64, ActiveJob>,
    /// Cancels for requests not seen (yet), oldest first.
    recent: VecDeque<(Instant, CancelKey)>,
    recent_at: HashMap<CancelKey, Instant>,
}

struct ActiveJob {
    call_id: String,
    request_id: String,
    cancelled: CancellationToken,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum CancelKey {
    /// One attempt, by its reply inbox (what this bus sends).
    Call(String),
    /// Every attempt of a request (a cancel without the call header).
    Request(String),
}

impl JobTable {
    fn lock(&self) -> MutexGuard<'_, TableState> {
        // Every update leaves the maps consistent, so a poisoned lock is safe.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a job; `None` when a cancel for it arrived first.
    fn register(
        &self,
        call_id: String,
        request_id: String,
        cancelled: CancellationToken,
    ) -> Option<u64> {
        let mut state = self.lock();
        state.expire(Instant::now());
        if state
            .recent_at
            .remove(&CancelKey::Call(call_id.clone()))
            .is_some()
            || state
                .recent_at
                .contains_key(&CancelKey::Request(request_id.clone()))
        {
            return None;
        }
        let job = state.next_job;
        state.next_job += 1;
        state.active.insert(
            job,
            ActiveJob {
                call_id,
                request_id,
                cancelled,
            },
        );
        Some(job)
    }

    /// Cancels the matching jobs; with `remember`, keeps the cancel for a
    /// request that has not arrived.
    fn cancel(&self, call_id: Option<&str>, request_id: &str, remember: bool) {
        let mut state = self.lock();
        let mut hit = false;
        for job in state.active.values() {
            let matches = match call_id {
                Some(call_id) => job.call_id == call_id,
                None => job.request_id == request_id,
            };
            if matches {
                job.cancelled.cancel();
                hit = true;
            }
        }
        if !hit && remember {
            let key = match call_id {
                Some(call_id) => CancelKey::Call(call_id.to_owned()),
                None => CancelKey::Request(request_id.to_owned()),
            };
            state.remember(key, Instant::now());
        }
    }

    fn cancel_job(&self, job: u64) {
        if let Some(job) = self.lock().active.get(&job) {
            job.cancelled.cancel();
        }
    }
}

impl TableState {
    fn remember(&mut self, key: CancelKey, now: Instant) {
        self.expire(now);
        while self.recent.len() >= RECENT_CANCEL_MAX {
            self.pop_oldest();
        }
        self.recent_at.insert(key.clone(), now);
        self.recent.push_back((now, key));
    }

    fn expire(&mut self, now: Instant) {
        while self
            .recent
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) >= RECENT_CANCEL_TTL)
        {
            self.pop_oldest();
        }
    }

    fn pop_oldest(&mut self) {
        if let Some((at, key)) = self.recent.pop_front()
            // The key may have been remembered again since: keep that.
            && self.recent_at.get(&key) == Some(&at)
        {
            self.recent_at.remove(&key);
        }
    }
}

struct ControlSubs {
    ctl: Subscriber,
    provider_cancels: Subscriber,
    statuses: Subscriber,
}

async fn control_loop(
    mut subs: ControlSubs,
    table: Weak<JobTable>,
    table_gone: CancellationToken,
    shutdown: CancellationToken,
) {
    loop {
        let (msg, remember) = tokio::select! {
            _ = table_gone.cancelled() => return,
            // Every job's token is a child of `shutdown`: nothing left to do.
            _ = shutdown.cancelled() => return,
            msg = subs.ctl.next() => match msg {
                Some(msg) => (msg, false),
                None => return,
            },
            msg = subs.provider_cancels.next() => match msg {
                Some(msg) => (msg, true),
                None => return,
            },
            msg = subs.statuses.next() => match msg {
                Some(msg) => {
                    if let Some(table) = table.upgrade() {
                        caller_gone(&table, &msg);
                    }
                    continue;
                }
                None => return,
            },
        };
        let Some(table) = table.upgrade() else {
            return;
        };
        let request = match CancelRequest::decode(msg.payload.clone()) {
            Ok(request) => request,
            Err(e) => {
                tracing::warn!(subject = %msg.subject, error = %e, "undecodable CancelRequest; ignored");
                continue;
            }
        };
        let call_id = msg
            .headers
            .as_ref()
            .and_then(|h| h.get(CALL_HEADER))
            .map(|v| v.as_str().to_owned());
        tracing::debug!(request_id = %request.request_id, call = ?call_id, "cancel received");
        table.cancel(call_id.as_deref(), &request.request_id, remember);
    }
}

/// A no-responders status on our reply subject: the caller's inbox is gone.
fn caller_gone(table: &JobTable, msg: &Message) {
    if msg.status != Some(StatusCode::NO_RESPONDERS) {
        return;
    }
    let job = msg
        .subject
        .as_str()
        .rsplit('.')
        .next()
        .and_then(|token| token.parse::<u64>().ok());
    if let Some(job) = job {
        tracing::debug!(job, "caller is gone; cancelling its job");
        table.cancel_job(job);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> JobTable {
        JobTable {
            state: Mutex::new(TableState::default()),
            _gone: CancellationToken::new().drop_guard(),
        }
    }

    #[test]
    fn cancel_before_arrival_is_remembered_once() {
        let table = table();
        table.cancel(Some("inbox.1"), "req-1", true);
        assert!(
            table
                .register("inbox.1".into(), "req-1".into(), CancellationToken::new())
                .is_none()
        );
        // The retry of the same request is another call: it must run.
        assert!(
            table
                .register("inbox.2".into(), "req-1".into(), CancellationToken::new())
                .is_some()
        );
    }

    #[test]
    fn cancel_hits_only_the_named_call() {
        let table = table();
        let first = CancellationToken::new();
        let retry = CancellationToken::new();
        table.register("inbox.1".into(), "req-1".into(), first.clone());
        table.register("inbox.2".into(), "req-1".into(), retry.clone());
        table.cancel(Some("inbox.1"), "req-1", true);
        assert!(first.is_cancelled());
        assert!(!retry.is_cancelled());
        table.cancel(None, "req-1", false);
        assert!(retry.is_cancelled());
    }

    #[test]
    fn remembered_cancels_are_bounded() {
        let table = table();
        for i in 0..RECENT_CANCEL_MAX + 10 {
            table.cancel(Some(&format!("inbox.{i}")), "r", true);
        }
        let state = table.lock();
        assert_eq!(state.recent.len(), RECENT_CANCEL_MAX);
        assert_eq!(state.recent_at.len(), RECENT_CANCEL_MAX);
        assert!(
            !state
                .recent_at
                .contains_key(&CancelKey::Call("inbox.0".into()))
        );
    }
}
