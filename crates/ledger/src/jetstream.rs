//! The scaled-out sink: every router publishes its records to one JetStream
//! stream, de-duplicated by request id.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, message::PublishMessage, stream};
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use jiff::Timestamp;
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::record::Counters;
use crate::{LedgerError, SinkStats, UsageRecord, UsageSink};

/// The usage stream and how a router publishes to it. Every router and
/// the writer must agree on `stream` and `subject_prefix`; the stream is
/// created with the limits here by whichever process comes first (later
/// ones use it as it is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSettings {
    /// Stream name.
    pub stream: String,
    /// Records go to `<prefix>.<router>`; the stream holds `<prefix>.>`.
    pub subject_prefix: String,
    /// How long the stream keeps a record. The writer must catch up within
    /// it, and [`replay_since`] cannot see further back.
    pub max_age: Duration,
    /// Size limit of the stream (-1: none); the oldest records go first.
    pub max_bytes: i64,
    /// How long JetStream remembers a request id to drop a second publish
    /// of it. Longer than a publish's whole retry span.
    pub duplicate_window: Duration,
    pub replicas: usize,
    /// Records waiting to be published; beyond it `record` drops.
    pub queue_capacity: usize,
    /// Publishes awaiting their JetStream ack at once.
    pub max_in_flight: usize,
    /// Tries per record before it is counted as lost.
    pub publish_attempts: u32,
}

impl Default for StreamSettings {
    fn default() -> Self {
        StreamSettings {
            stream: "SWITCHYARD_USAGE".to_owned(),
            subject_prefix: "switchyard.usage".to_owned(),
            max_age: Duration::from_secs(7 * 24 * 3600),
            max_bytes: -1,
            duplicate_window: Duration::from_secs(120),
            replicas: 1,
            queue_capacity: 100_000,
            max_in_flight: 1_024,
            publish_attempts: 8,
        }
    }
}

impl StreamSettings {
    /// The subject a router publishes to. Characters a subject token cannot
    /// hold (`.`, `*`, `>`, whitespace, ...) become `_`.
    pub fn subject_for(&self, router: &str) -> String {
        let token: String = router
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let token = if token.is_empty() { "_" } else { &token };
        format!("{}.{token}", self.subject_prefix)
    }

    /// Every router's subject.
    pub fn wildcard(&self) -> String {
        format!("{}.>", self.subject_prefix)
    }

    fn stream_config(&self) -> stream::Config {
        stream::Config {
            name: self.stream.clone(),
            description: Some("Switchyard usage records, one per request".to_owned()),
            subjects: vec![self.wildcard()],
            storage: stream::StorageType::File,
            // Limits, not a work queue: the writer, replays and ad-hoc
            // consumers all read the same records.
            retention: stream::RetentionPolicy::Limits,
            discard: stream::DiscardPolicy::Old,
            max_age: self.max_age,
            max_bytes: self.max_bytes,
            max_messages: -1,
            max_messages_per_subject: -1,
            max_message_size: -1,
            max_consumers: -1,
            duplicate_window: self.duplicate_window,
            num_replicas: self.replicas.max(1),
            ..Default::default()
        }
    }
}

/// Creates the stream if it does not exist yet.
pub(crate) async fn ensure_stream(
    js: &jetstream::Context,
    settings: &StreamSettings,
) -> Result<stream::Stream, LedgerError> {
    let mut stream = js
        .get_or_create_stream(settings.stream_config())
        .await
        .map_err(|e| LedgerError::nats("creating the usage stream", e))?;
    let wildcard = settings.wildcard();
    let info = stream
        .info()
        .await
        .map_err(|e| LedgerError::nats("reading the usage stream", e))?;
    if !info
        .config
        .subjects
        .iter()
        .any(|s| *s == wildcard || s == ">")
    {
        tracing::warn!(
            stream = %settings.stream,
            subjects = ?info.config.subjects,
            expected = %wildcard,
            "the usage stream exists with other subjects: records may not reach it"
        );
    }
    Ok(stream)
}

enum Msg {
    Record(Box<UsageRecord>),
    Flush(oneshot::Sender<()>),
}

/// Publishes each record to `<prefix>.<router>` as JSON with the header
/// `Nats-Msg-Id: <request_id>`, so a record published twice within the
/// duplicate window is stored once.
///
/// `record` queues (bounded); a background task publishes and awaits the
/// JetStream acks (at most `max_in_flight` pending), retrying a failed
/// publish with backoff. Dropping the sink lets the queued records go out.
pub struct JetStreamSink {
    tx: mpsc::Sender<Msg>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for JetStreamSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamSink")
            .field("stats", &self.counters.snapshot())
            .finish_non_exhaustive()
    }
}

impl JetStreamSink {
    /// Ensures the stream exists and starts the publishing task (on the
    /// current tokio runtime).
    pub async fn new(
        client: async_nats::Client,
        settings: StreamSettings,
    ) -> Result<Arc<JetStreamSink>, LedgerError> {
        let max_in_flight = settings.max_in_flight.max(1);
        let js = jetstream::ContextBuilder::new()
            .max_ack_inflight(max_in_flight)
            .build(client);
        ensure_stream(&js, &settings).await?;
        let (tx, rx) = mpsc::channel(settings.queue_capacity.max(1));
        let counters = Arc::new(Counters::default());
        tokio::spawn(pump(js, rx, settings, counters.clone()));
        Ok(Arc::new(JetStreamSink { tx, counters }))
    }
}

async fn pump(
    js: jetstream::Context,
    mut rx: mpsc::Receiver<Msg>,
    settings: StreamSettings,
    counters: Arc<Counters>,
) {
    let max_in_flight = settings.max_in_flight.max(1);
    let in_flight = Arc::new(Semaphore::new(max_in_flight));
    let settings = Arc::new(settings);
    let client = js.client();
    while let Some(msg) = rx.recv().await {
        match msg {
            Msg::Record(record) => {
                let payload = match encode(&record, client.max_payload()) {
                    Ok(p) => Bytes::from(p),
                    Err(e) => {
                        tracing::error!(request_id = %record.request_id, error = %e, "usage record not serializable; lost");
                        counters.failed(1);
                        continue;
                    }
                };
                let Ok(permit) = in_flight.clone().acquire_owned().await else {
                    return;
                };
                let js = js.clone();
                let settings = settings.clone();
                let counters = counters.clone();
                tokio::spawn(async move {
                    publish(&js, &settings, &record, payload, &counters).await;
                    drop(permit);
                });
            }
            Msg::Flush(done) => {
                // Every permit free again means every publish started
                // before this flush has been acked or given up.
                let all = u32::try_from(max_in_flight).unwrap_or(u32::MAX);
                if let Ok(permits) = in_flight.acquire_many(all).await {
                    drop(permits);
                }
                let _ = done.send(());
            }
        }
    }
}

/// Room a message needs besides the record: its headers (`Nats-Msg-Id`)
/// and protocol line.
const MESSAGE_OVERHEAD: usize = 1024;

/// The record as a stream message of at most `max_payload` bytes (the
/// server's limit; the client refuses bigger ones, every retry alike).
/// Payloads are bounded ([`crate::MAX_PAYLOAD_BYTES`]) well under NATS's
/// default of 1 MiB; on a server configured smaller, a record that does not
/// fit loses its payload, replaced by `{"truncated": true, "bytes": N}`,
/// rather than the record being lost.
fn encode(record: &UsageRecord, max_payload: usize) -> Result<Vec<u8>, serde_json::Error> {
    let bytes = serde_json::to_vec(record)?;
    let limit = max_payload.saturating_sub(MESSAGE_OVERHEAD);
    let Some(payload) = record.payload.as_ref().filter(|_| bytes.len() > limit) else {
        return Ok(bytes);
    };
    let size = serde_json::to_vec(payload).map_or(0, |p| p.len());
    tracing::warn!(
        request_id = %record.request_id,
        bytes = bytes.len(),
        max_payload,
        "usage record over the NATS server's max_payload: its payload is left out"
    );
    let mut slim = record.clone();
    slim.payload = Some(serde_json::json!({"truncated": true, "bytes": size}));
    serde_json::to_vec(&slim)
}

async fn publish(
    js: &jetstream::Context,
    settings: &StreamSettings,
    record: &UsageRecord,
    payload: Bytes,
    counters: &Counters,
) {
    let subject = settings.subject_for(&record.router);
    let attempts = settings.publish_attempts.max(1);
    let mut pause = Duration::from_millis(100);
    for attempt in 1..=attempts {
        let message = PublishMessage::build()
            .payload(payload.clone())
            .message_id(&record.request_id);
        let result = match js.send_publish(subject.clone(), message).await {
            Ok(ack) => ack.await.map_err(async_nats::Error::from),
            Err(e) => Err(async_nats::Error::from(e)),
        };
        match result {
            Ok(ack) => {
                if ack.duplicate {
                    tracing::debug!(request_id = %record.request_id, "usage record was already in the stream");
                }
                counters.stored.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Err(e) if attempt < attempts => {
                tracing::debug!(request_id = %record.request_id, attempt, error = %e, "usage publish failed; retrying");
                // Retried with the same Nats-Msg-Id: if the failed attempt
                // did reach the stream, the retry is dropped as a duplicate.
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
            Err(e) => {
                tracing::error!(request_id = %record.request_id, attempts, error = %e, "usage record could not be published; lost");
                counters.failed(1);
            }
        }
    }
}

#[async_trait]
impl UsageSink for JetStreamSink {
    fn record(&self, record: UsageRecord) {
        match self.tx.try_send(Msg::Record(Box::new(record))) {
            Ok(()) => {
                self.counters.recorded.fetch_add(1, Ordering::Relaxed);
            }
            Err(mpsc::error::TrySendError::Full(m)) => {
                self.counters.dropped(1);
                if let Msg::Record(r) = m {
                    self.counters.log_drop(&r.request_id, "usage queue full");
                }
            }
            Err(mpsc::error::TrySendError::Closed(m)) => {
                self.counters.dropped(1);
                if let Msg::Record(r) = m {
                    self.counters
                        .log_drop(&r.request_id, "usage publisher stopped");
                }
            }
        }
    }

    async fn flush(&self) -> Result<(), LedgerError> {
        let (done_tx, done_rx) = oneshot::channel();
        self.tx
            .send(Msg::Flush(done_tx))
            .await
            .map_err(|_| LedgerError::Closed)?;
        done_rx.await.map_err(|_| LedgerError::Closed)?;
        self.counters.report()
    }

    fn stats(&self) -> SinkStats {
        self.counters.snapshot()
    }
}

/// Request ids seen lately, to drop the second copy of a retried publish.
struct Recent {
    window: Duration,
    cap: usize,
    order: VecDeque<(Instant, String)>,
    seen: HashSet<String>,
}

impl Recent {
    fn new(window: Duration, cap: usize) -> Recent {
        Recent {
            window,
            cap,
            order: VecDeque::new(),
            seen: HashSet::new(),
        }
    }

    fn first_time(&mut self, id: &str) -> bool {
        let now = Instant::now();
        while let Some((t, old)) = self.order.front() {
            if now.duration_since(*t) <= self.window && self.order.len() < self.cap {
                break;
            }
            self.seen.remove(old);
            self.order.pop_front();
        }
        if self.seen.contains(id) {
            return false;
        }
        self.seen.insert(id.to_owned());
        self.order.push_back((now, id.to_owned()));
        true
    }
}

/// Most request ids [`subscribe`] remembers for de-duplication.
const SUBSCRIBE_DEDUPE_CAP: usize = 200_000;

/// Live records from every router, as they are published: a core NATS
/// subscription on `<prefix>.>` (JetStream-published messages reach core
/// subscribers too), so nothing is replayed and nothing acked.
///
/// A publish retried after a lost ack reaches subscribers twice even though
/// the stream keeps one copy; such repeats within the duplicate window are
/// dropped here (up to 200,000 remembered ids). Messages that are not
/// records are logged and skipped.
pub async fn subscribe(
    client: &async_nats::Client,
    settings: &StreamSettings,
) -> Result<impl Stream<Item = UsageRecord> + Send + Unpin + 'static, LedgerError> {
    let subscriber = client
        .subscribe(settings.wildcard())
        .await
        .map_err(|e| LedgerError::nats("subscribing to usage", e))?;
    let mut recent = Recent::new(settings.duplicate_window, SUBSCRIBE_DEDUPE_CAP);
    Ok(subscriber.filter_map(move |m| {
        let record = match serde_json::from_slice::<UsageRecord>(&m.payload) {
            Ok(r) if recent.first_time(&r.request_id) => Some(r),
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(subject = %m.subject, error = %e, "not a usage record; skipped");
                None
            }
        };
        std::future::ready(record)
    }))
}

/// How far before `since` a replay starts reading the stream: the stream's
/// clock (publish time) and the routers' clocks (record time) may differ.
const REPLAY_CLOCK_MARGIN: Duration = Duration::from_secs(60);

/// The longest a replay waits for the next message before giving up on
/// the rest.
const REPLAY_IDLE: Duration = Duration::from_secs(10);

/// Every record in the stream whose `time` is at or after `since`, in
/// stream order (a router publishes concurrently, so not quite the order
/// it recorded in): for warming budget counters when a router starts. Reads
/// with an ephemeral consumer (deliver by start time, no acks) up to the
/// records present when it started; records older than the stream's
/// `max_age` are gone. An absent stream is an empty history.
///
/// Start [`subscribe`] first and de-duplicate by request id, so no record
/// falls between the replay and the live feed.
pub async fn replay_since(
    client: &async_nats::Client,
    settings: &StreamSettings,
    since: Timestamp,
) -> Result<Vec<UsageRecord>, LedgerError> {
    let js = jetstream::new(client.clone());
    let stream = match js.get_stream(&settings.stream).await {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                jetstream::context::GetStreamErrorKind::JetStream(ref j)
                    if j.code() == 404
            ) =>
        {
            return Ok(Vec::new());
        }
        Err(e) => return Err(LedgerError::nats("opening the usage stream", e)),
    };
    let start_ns = i128::from(since.as_microsecond()) * 1_000
        - i128::try_from(REPLAY_CLOCK_MARGIN.as_nanos()).unwrap_or(0);
    let start_time = async_nats::datetime::from_nanos(start_ns)
        .map_err(|e| LedgerError::nats("replay start time", e))?;
    let mut consumer: consumer::PullConsumer = stream
        .create_consumer(consumer::pull::Config {
            deliver_policy: consumer::DeliverPolicy::ByStartTime { start_time },
            ack_policy: consumer::AckPolicy::None,
            filter_subject: settings.wildcard(),
            inactive_threshold: Duration::from_secs(60),
            description: Some("switchyard budget warm-up".to_owned()),
            ..Default::default()
        })
        .await
        .map_err(|e| LedgerError::nats("creating the replay consumer", e))?;
    let info = consumer
        .info()
        .await
        .map_err(|e| LedgerError::nats("reading the replay consumer", e))?;
    let mut remaining = info.num_pending;
    let name = info.name.clone();
    let mut out = Vec::new();
    if remaining > 0 {
        let mut messages = consumer
            .messages()
            .await
            .map_err(|e| LedgerError::nats("reading the usage stream", e))?;
        while remaining > 0 {
            let next = match tokio::time::timeout(REPLAY_IDLE, messages.next()).await {
                Ok(Some(m)) => m.map_err(|e| LedgerError::nats("reading the usage stream", e))?,
                Ok(None) => break,
                Err(_) => {
                    tracing::warn!(remaining, "usage replay stalled; returning what arrived");
                    break;
                }
            };
            remaining -= 1;
            if let Ok(meta) = next.info() {
                // Records published after the replay started do not extend
                // it: `pending` counts what is left of the whole stream.
                remaining = remaining.min(meta.pending);
            }
            match serde_json::from_slice::<UsageRecord>(&next.payload) {
                Ok(r) if r.time >= since => out.push(r),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(subject = %next.subject, error = %e, "not a usage record; skipped")
                }
            }
        }
    }
    if let Err(e) = stream.delete_consumer(&name).await {
        tracing::debug!(consumer = %name, error = %e, "replay consumer not deleted; it expires when idle");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_record_over_max_payload_goes_without_its_payload() {
        let mut r = UsageRecord::new("r1", Timestamp::UNIX_EPOCH, "a", "chat", "m");
        r.payload =
            Some(serde_json::json!({"request": [{"role": "user", "content": "x".repeat(5000)}]}));
        let whole = encode(&r, 1024 * 1024).unwrap();
        let back: UsageRecord = serde_json::from_slice(&whole).unwrap();
        assert_eq!(back, r);

        let slim = encode(&r, 4096).unwrap();
        assert!(slim.len() <= 4096 - MESSAGE_OVERHEAD);
        let back: UsageRecord = serde_json::from_slice(&slim).unwrap();
        assert_eq!(back.payload.as_ref().unwrap()["truncated"], true);
        assert!(back.payload.as_ref().unwrap()["bytes"].as_u64().unwrap() > 5000);
        r.payload = back.payload.clone();
        assert_eq!(back, r, "everything else is kept");
    }
}
