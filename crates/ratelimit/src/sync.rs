//! Sharing counts between the routers of a deployment over NATS.
//!
//! Each router publishes, every interval, the counts it added locally
//! since its last publication, per (rule, dimension, value, Unix second),
//! and adds what the others publish into its own counters. Plain NATS
//! publish/subscribe, no JetStream: a count lost while a router is
//! disconnected only makes the limit laxer for under a minute, and
//! replaying old counts would be worse than missing them.
//!
//! Messages are JSON (a few hundred bytes at 10 Hz: not worth a binary
//! format), versioned by `v`; a router ignores versions it does not know,
//! so a rolling upgrade that changes the format degrades to per-router
//! limits instead of miscounting.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::window::WINDOW_SECS;
use crate::{Dimension, KeyRef, Limiter, second_of};

/// How often counts are published unless configured otherwise.
pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_millis(100);

/// The message format version this router writes and reads.
const VERSION: u32 = 1;

/// A router not heard from for this long (or 20 intervals, if longer) is
/// no longer counted among those sharing the limits. Routers publish only
/// when they admitted something, so this is "recently had traffic".
const PEER_FORGET_AFTER: Duration = Duration::from_secs(2);

/// Counts per message at most, well under NATS's default 1 MB payload.
const MAX_COUNTS_PER_MESSAGE: usize = 2000;

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("cannot subscribe to rate-limit counts on `{subject}`: {source}")]
    Subscribe {
        subject: String,
        source: async_nats::SubscribeError,
    },
    #[error("cannot flush the rate-limit subscription: {0}")]
    Flush(#[from] async_nats::client::FlushError),
}

/// One router's counts since its last publication.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Batch {
    pub v: u32,
    pub node: String,
    pub counts: Vec<Count>,
}

/// Requests and tokens added to one counter in one Unix second.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Count {
    #[serde(rename = "r")]
    pub rule: String,
    #[serde(rename = "d")]
    pub dimension: Dimension,
    #[serde(rename = "k")]
    pub value: String,
    #[serde(rename = "s")]
    pub sec: u32,
    #[serde(rename = "q", default)]
    pub req: u32,
    #[serde(rename = "t", default)]
    pub tok: u32,
}

impl Limiter {
    /// Moves out the local counts not yet published.
    pub(crate) fn take_pending(&self) -> Vec<Count> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            let mut shard = shard
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for (key, counter) in shard.iter_mut() {
                counter.take_pending(&mut |p| {
                    out.push(Count {
                        rule: key.rule.to_string(),
                        dimension: key.dimension,
                        value: key.value.to_string(),
                        sec: p.sec,
                        req: p.req,
                        tok: p.tok,
                    });
                });
            }
        }
        out
    }

    /// Adds another router's counts. Counts from seconds already out of
    /// the window are dropped; counts from the future (a router whose
    /// clock is ahead) go into the current second rather than pushing an
    /// older second out of the ring early.
    pub(crate) fn apply_remote(&self, counts: &[Count], now: Instant) {
        let cur = second_of(self.clock.unix_ms(now));
        self.maybe_sweep(cur);
        for c in counts {
            let sec = c.sec.min(cur);
            if sec + WINDOW_SECS <= cur || (c.req == 0 && c.tok == 0) {
                continue;
            }
            let key = KeyRef {
                rule: &c.rule,
                dimension: c.dimension,
                value: &c.value,
            };
            self.with_counter(key, cur, |counter| {
                counter.add_remote(sec, c.req, c.tok);
                counter.remote_hit = cur;
            });
        }
    }
}

/// Subscribes `client` to `subject` (waiting until the server has the
/// subscription, so no peer's count published after this returns is
/// missed) and spawns the task that, every `interval`, publishes this
/// router's new counts there and, meanwhile, adds the other routers'
/// counts (messages from `node_id` itself are skipped). On `shutdown` it
/// publishes what is left and ends.
pub async fn spawn_sync(
    limiter: Arc<Limiter>,
    client: async_nats::Client,
    subject: String,
    node_id: String,
    interval: Duration,
    shutdown: CancellationToken,
) -> Result<JoinHandle<()>, SyncError> {
    let mut subscriber =
        client
            .subscribe(subject.clone())
            .await
            .map_err(|source| SyncError::Subscribe {
                subject: subject.clone(),
                source,
            })?;
    client.flush().await?;
    limiter.sync_interval_ms.store(
        u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
        Ordering::Relaxed,
    );
    Ok(tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let forget_after = (interval * 20).max(PEER_FORGET_AFTER);
        let mut peers: HashMap<String, Instant> = HashMap::new();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => {
                    publish(&limiter, &client, &subject, &node_id).await;
                    let _ = client.flush().await;
                    break;
                }
                _ = tick.tick() => {
                    let now = Instant::now();
                    limiter.maybe_sweep(second_of(limiter.clock.unix_ms(now)));
                    let before = peers.len();
                    peers.retain(|_, heard| now.saturating_duration_since(*heard) <= forget_after);
                    if peers.len() != before {
                        set_peers(&limiter, &peers);
                    }
                    publish(&limiter, &client, &subject, &node_id).await;
                }
                message = subscriber.next() => {
                    let Some(message) = message else {
                        tracing::warn!(%subject, "rate-limit count subscription ended; limits are now per router");
                        break;
                    };
                    let now = Instant::now();
                    if let Some(peer) = receive(&limiter, &node_id, &message.payload, now)
                        && peers.insert(peer, now).is_none()
                    {
                        set_peers(&limiter, &peers);
                    }
                }
            }
        }
        // Alone from now on: admit on the local view only.
        limiter.peers.store(0, Ordering::Relaxed);
    }))
}

fn set_peers(limiter: &Limiter, peers: &HashMap<String, Instant>) {
    let n = u32::try_from(peers.len()).unwrap_or(u32::MAX);
    limiter.peers.store(n, Ordering::Relaxed);
    tracing::debug!(peers = n, "routers sharing rate-limit counts changed");
}

async fn publish(limiter: &Limiter, client: &async_nats::Client, subject: &str, node_id: &str) {
    let mut counts = limiter.take_pending();
    while !counts.is_empty() {
        let rest = counts.split_off(counts.len().min(MAX_COUNTS_PER_MESSAGE));
        let batch = Batch {
            v: VERSION,
            node: node_id.to_owned(),
            counts,
        };
        counts = rest;
        let payload = match serde_json::to_vec(&batch) {
            Ok(p) => p,
            Err(error) => {
                tracing::error!(%error, "cannot encode rate-limit counts");
                return;
            }
        };
        if let Err(error) = client.publish(subject.to_owned(), payload.into()).await {
            // The other routers undercount this one's traffic for under
            // a minute; retrying would mostly delay the next counts.
            tracing::warn!(%error, %subject, "cannot publish rate-limit counts");
        }
    }
}

/// Applies another router's counts; returns that router's id.
pub(crate) fn receive(
    limiter: &Limiter,
    node_id: &str,
    payload: &[u8],
    now: Instant,
) -> Option<String> {
    /// Read first, so a newer format that no longer parses as [`Batch`]
    /// is told apart from a malformed message.
    #[derive(Deserialize)]
    struct Version {
        v: u32,
    }
    match serde_json::from_slice::<Version>(payload) {
        Ok(Version { v: VERSION }) => {}
        Ok(Version { v }) => {
            tracing::debug!(
                version = v,
                "ignoring rate-limit counts of another format version"
            );
            return None;
        }
        Err(error) => {
            tracing::warn!(%error, "ignoring a malformed rate-limit count message");
            return None;
        }
    }
    let batch: Batch = match serde_json::from_slice(payload) {
        Ok(b) => b,
        Err(error) => {
            tracing::warn!(%error, "ignoring a malformed rate-limit count message");
            return None;
        }
    };
    if batch.node == node_id {
        return None;
    }
    limiter.apply_remote(&batch.counts, now);
    Some(batch.node)
}
