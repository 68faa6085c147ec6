//! The usage record and the sink every router writes it to.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use switchyard_pricing::Usd;

use crate::LedgerError;

/// What one request cost and how it went: the gateway writes exactly one per
/// request it serves, failed ones included.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRecord {
    /// Unique; the idempotency key in every store and on the stream.
    pub request_id: String,
    /// When the request started.
    pub time: Timestamp,
    /// Router instance that served it.
    pub router: String,
    /// `chat`, `embeddings`, `images`, `messages`, ...
    pub operation: String,
    /// Virtual key id (never the secret).
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub team: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    /// The model the client asked for.
    pub model: String,
    /// The provider that served it; `None` when it failed before any.
    #[serde(default)]
    pub provider: Option<String>,
    #[serde(default)]
    pub served_model: Option<String>,
    // Counters default to zero so records written by an older router (fewer
    // fields) still load.
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default)]
    pub cached_input_tokens: u64,
    #[serde(default)]
    pub cache_write_tokens: u64,
    #[serde(default)]
    pub output_tokens: u64,
    #[serde(default)]
    pub reasoning_tokens: u64,
    #[serde(default)]
    pub images: u32,
    /// Exact; a decimal string on the wire.
    #[serde(default)]
    pub cost: Usd,
    /// Cost avoided by a cache hit.
    #[serde(default)]
    pub saved: Usd,
    /// Usage was estimated (the stream was cut off before the provider
    /// reported it).
    #[serde(default)]
    pub estimated: bool,
    #[serde(default)]
    pub cache_hit: bool,
    #[serde(default)]
    pub latency_ms: u64,
    /// `ok`, `client_closed`, or an error code.
    pub outcome: String,
    // The audit fields: who called from where, and what the guardrails did.
    // Defaults so records of older routers still load.
    /// The client's IP address, as text (the peer, or the forwarded address
    /// the router trusts).
    #[serde(default)]
    pub client_addr: Option<String>,
    /// How the caller authenticated: `key` or `jwt`; `None` when anonymous.
    #[serde(default)]
    pub credential: Option<String>,
    /// Guardrail actions taken on the request, in order, each a short text
    /// such as `block:no-cards/card` or `redact:pii/email*2`; opaque to the
    /// ledger.
    #[serde(default)]
    pub guardrails: Vec<String>,
    /// What was said, for callers whose key captures payloads (see
    /// [`bounded_payload`] for the shape and the size cap); `None` for
    /// everyone else. Stored apart from the record's row, and read only by
    /// the audit export ([`crate::UsageQuery::with_payloads`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<serde_json::Value>,
}

impl UsageRecord {
    /// A record with every optional field empty and every counter zero.
    pub fn new(
        request_id: impl Into<String>,
        time: Timestamp,
        router: impl Into<String>,
        operation: impl Into<String>,
        model: impl Into<String>,
    ) -> UsageRecord {
        UsageRecord {
            request_id: request_id.into(),
            time,
            router: router.into(),
            operation: operation.into(),
            key: None,
            team: None,
            user: None,
            model: model.into(),
            provider: None,
            served_model: None,
            input_tokens: 0,
            cached_input_tokens: 0,
            cache_write_tokens: 0,
            output_tokens: 0,
            reasoning_tokens: 0,
            images: 0,
            cost: Usd::ZERO,
            saved: Usd::ZERO,
            estimated: false,
            cache_hit: false,
            latency_ms: 0,
            outcome: OUTCOME_OK.to_owned(),
            client_addr: None,
            credential: None,
            guardrails: Vec::new(),
            payload: None,
        }
    }

    /// Whether this request counts as an error in [`crate::UsageRow::errors`]:
    /// anything but `ok` and `client_closed` (a client hanging up is not the
    /// gateway failing).
    pub fn is_error(&self) -> bool {
        is_error_outcome(&self.outcome)
    }
}

/// The guardrail actions as stored: a JSON array of strings (SQLite TEXT,
/// PostgreSQL `jsonb`), so they stay one column, queryable in either.
pub(crate) fn guardrails_to_json(actions: &[String]) -> String {
    serde_json::to_string(actions).unwrap_or_else(|_| "[]".to_owned())
}

pub(crate) fn guardrails_from_json(text: &str) -> Result<Vec<String>, LedgerError> {
    serde_json::from_str(text)
        .map_err(|e| LedgerError::Corrupt(format!("guardrail actions `{text}`: {e}")))
}

pub(crate) fn payload_from_json(text: &str) -> Result<serde_json::Value, LedgerError> {
    serde_json::from_str(text).map_err(|e| LedgerError::Corrupt(format!("payload: {e}")))
}

/// Most bytes a record's payload takes as JSON text. Well under NATS's
/// default `max_payload` (1 MiB), so a record with its payload always
/// fits one stream message, and one request cannot bloat the ledger.
pub const MAX_PAYLOAD_BYTES: usize = 256 * 1024;

/// A payload as the ledger keeps it, at most [`MAX_PAYLOAD_BYTES`] of JSON:
///
/// - NUL characters become U+FFFD: PostgreSQL stores no NUL in text or
///   `jsonb`, and a record it refuses would be lost whole.
/// - Too big: the texts are cut, in document order (the request's
///   messages before the answer's), the first one over the budget ending
///   in `…`, the ones after it emptied, and the payload gains
///   `"truncated": true` and `"bytes"`, the size it had. The structure (the
///   messages, their roles, ids and tool names: strings of up to 64 bytes)
///   stays. If even that does not fit (tens
///   of thousands of messages), only `{"truncated": true, "bytes": N}` is
///   left.
///
/// Bounded work: a payload within the cap is serialized once.
pub fn bounded_payload(mut payload: serde_json::Value) -> serde_json::Value {
    strip_nul(&mut payload);
    let bytes = json_len(&payload);
    if bytes <= MAX_PAYLOAD_BYTES {
        return payload;
    }
    let marked = |mut v: serde_json::Value| {
        if let Some(o) = v.as_object_mut() {
            o.insert("truncated".into(), true.into());
            o.insert("bytes".into(), bytes.into());
        }
        v
    };
    // Escaping (quotes, control characters) and the structure take room
    // besides the strings' bytes: cut deeper until it fits.
    let mut budget = MAX_PAYLOAD_BYTES * 3 / 4;
    while budget >= MAX_PAYLOAD_BYTES / 16 {
        let mut cut = payload.clone();
        let mut left = budget;
        cut_strings(&mut cut, &mut left);
        let cut = marked(cut);
        if json_len(&cut) <= MAX_PAYLOAD_BYTES {
            return cut;
        }
        budget /= 2;
    }
    marked(serde_json::Value::Object(serde_json::Map::new()))
}

fn json_len(v: &serde_json::Value) -> usize {
    serde_json::to_vec(v).map_or(usize::MAX, |b| b.len())
}

fn strip_nul(v: &mut serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::String(s) if s.contains('\0') => *s = s.replace('\0', "\u{fffd}"),
        Value::Array(a) => a.iter_mut().for_each(strip_nul),
        Value::Object(o) => {
            if o.keys().any(|k| k.contains('\0')) {
                let old = std::mem::take(o);
                o.extend(
                    old.into_iter()
                        .map(|(k, v)| (k.replace('\0', "\u{fffd}"), v)),
                );
            }
            o.values_mut().for_each(strip_nul);
        }
        _ => {}
    }
}

/// Strings this short (roles, ids, tool names) are never cut: they are
/// the payload's structure, not its bulk.
const KEPT_STRING: usize = 64;

/// Cuts the strings of `v` longer than [`KEPT_STRING`] to `left` bytes in
/// all, in document order.
fn cut_strings(v: &mut serde_json::Value, left: &mut usize) {
    use serde_json::Value;
    match v {
        Value::String(s) if s.len() <= KEPT_STRING => {}
        Value::String(s) => {
            if s.len() <= *left {
                *left -= s.len();
            } else {
                let mut end = *left;
                while !s.is_char_boundary(end) {
                    end -= 1;
                }
                s.truncate(end);
                if end > 0 {
                    s.push('…');
                }
                *left = 0;
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|v| cut_strings(v, left)),
        Value::Object(o) => o.values_mut().for_each(|v| cut_strings(v, left)),
        _ => {}
    }
}

pub const OUTCOME_OK: &str = "ok";
pub const OUTCOME_CLIENT_CLOSED: &str = "client_closed";

pub(crate) fn is_error_outcome(outcome: &str) -> bool {
    outcome != OUTCOME_OK && outcome != OUTCOME_CLIENT_CLOSED
}

/// Counters of a sink, for metrics and shutdown logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkStats {
    /// Accepted by `record` into the queue.
    pub recorded: u64,
    /// Refused by `record` because the queue was full (or the sink closed).
    pub dropped: u64,
    /// Durably stored (committed to SQLite, acknowledged by JetStream),
    /// re-deliveries of a known request id included.
    pub stored: u64,
    /// Accepted but lost: every write attempt failed.
    pub failed: u64,
}

/// Where the router sends each request's usage. `record` is on the request
/// path: it never blocks, never fails and never panics.
#[async_trait]
pub trait UsageSink: Send + Sync {
    /// Queues the record for storage. When the bounded queue is full the
    /// record is dropped, counted and logged.
    fn record(&self, record: UsageRecord);

    /// Returns once everything recorded before the call is durable; an
    /// error when some of it was lost (see [`LedgerError::Lost`]).
    async fn flush(&self) -> Result<(), LedgerError>;

    fn stats(&self) -> SinkStats {
        SinkStats::default()
    }
}

/// Shared counters of a sink; `unreported_*` are the losses the next flush
/// reports.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub recorded: AtomicU64,
    pub dropped: AtomicU64,
    pub stored: AtomicU64,
    pub failed: AtomicU64,
    unreported_dropped: AtomicU64,
    unreported_failed: AtomicU64,
}

impl Counters {
    pub fn dropped(&self, n: u64) {
        self.dropped.fetch_add(n, Ordering::Relaxed);
        self.unreported_dropped.fetch_add(n, Ordering::Relaxed);
    }

    pub fn failed(&self, n: u64) {
        self.failed.fetch_add(n, Ordering::Relaxed);
        self.unreported_failed.fetch_add(n, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> SinkStats {
        SinkStats {
            recorded: self.recorded.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            stored: self.stored.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
        }
    }

    /// The losses since the previous report, as a flush result.
    pub fn report(&self) -> Result<(), LedgerError> {
        let dropped = self.unreported_dropped.swap(0, Ordering::Relaxed);
        let failed = self.unreported_failed.swap(0, Ordering::Relaxed);
        if dropped == 0 && failed == 0 {
            Ok(())
        } else {
            Err(LedgerError::Lost { dropped, failed })
        }
    }

    /// Logs a dropped record; the first one and then every 1000th, so a
    /// full queue does not turn into a flood of log lines.
    pub fn log_drop(&self, request_id: &str, why: &str) {
        let total = self.dropped.load(Ordering::Relaxed);
        if total == 1 || total.is_multiple_of(1000) {
            tracing::warn!(
                request_id,
                dropped_total = total,
                "usage record dropped: {why}"
            );
        }
    }
}

/// Keeps records in memory: for tests of code that records usage, and for
/// running with the ledger switched off but usage still inspectable.
#[derive(Debug, Default)]
pub struct MemorySink {
    records: Mutex<Vec<UsageRecord>>,
}

impl MemorySink {
    pub fn new() -> MemorySink {
        MemorySink::default()
    }

    /// Everything recorded so far, in order.
    pub fn records(&self) -> Vec<UsageRecord> {
        self.records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

#[async_trait]
impl UsageSink for MemorySink {
    fn record(&self, record: UsageRecord) {
        self.records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(record);
    }

    async fn flush(&self) -> Result<(), LedgerError> {
        Ok(())
    }

    fn stats(&self) -> SinkStats {
        let n = self
            .records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len() as u64;
        SinkStats {
            recorded: n,
            stored: n,
            ..SinkStats::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_of_older_routers_load_and_new_fields_are_on_the_wire() {
        // What a router before the audit fields published.
        let old = r#"{"request_id":"r1","time":"2026-01-01T10:00:00Z","router":"a",
            "operation":"chat","model":"m","cost":"0.000001","outcome":"ok"}"#;
        let r: UsageRecord = serde_json::from_str(old).unwrap();
        assert_eq!(r.client_addr, None);
        assert_eq!(r.credential, None);
        assert!(r.guardrails.is_empty());

        let mut r = r;
        r.client_addr = Some("127.0.0.1".into());
        r.credential = Some("jwt".into());
        r.guardrails = vec!["block:no-cards/card".into()];
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["client_addr"], "127.0.0.1");
        assert_eq!(json["credential"], "jwt");
        assert_eq!(json["guardrails"][0], "block:no-cards/card");
        let back: UsageRecord = serde_json::from_value(json).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn guardrail_actions_store_as_a_json_array() {
        let actions = vec!["redact:pii/email*2".to_owned(), "a\"b;c".to_owned()];
        let text = guardrails_to_json(&actions);
        assert_eq!(guardrails_from_json(&text).unwrap(), actions);
        assert_eq!(guardrails_to_json(&[]), "[]");
        assert!(guardrails_from_json("not json").is_err());
    }

    #[test]
    fn payloads_travel_only_when_captured() {
        let mut r = UsageRecord::new("r1", Timestamp::UNIX_EPOCH, "a", "chat", "m");
        let json = serde_json::to_value(&r).unwrap();
        assert!(json.get("payload").is_none(), "no payload key: {json}");
        r.payload = Some(serde_json::json!({"request": [{"role": "user", "content": "hi"}]}));
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["payload"]["request"][0]["content"], "hi");
        assert_eq!(serde_json::from_value::<UsageRecord>(json).unwrap(), r);
    }

    #[test]
    fn small_payloads_are_kept_as_they_are_but_for_nul() {
        let p = serde_json::json!({
            "request": [{"role": "user", "content": "a\u{0}b"}],
            "response": [{"role": "assistant", "content": "ok"}],
        });
        let got = bounded_payload(p);
        assert_eq!(got["request"][0]["content"], "a\u{fffd}b");
        assert_eq!(got["response"][0]["content"], "ok");
        assert!(got.get("truncated").is_none());
    }

    #[test]
    fn big_payloads_are_cut_to_the_cap_keeping_their_structure() {
        let big = "x".repeat(MAX_PAYLOAD_BYTES);
        let p = serde_json::json!({
            "request": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": big},
            ],
            "response": [{"role": "assistant", "content": "y".repeat(1000)}],
        });
        let size = json_len(&p);
        let got = bounded_payload(p);
        assert!(json_len(&got) <= MAX_PAYLOAD_BYTES);
        assert_eq!(got["truncated"], true);
        assert_eq!(got["bytes"], size);
        assert_eq!(got["request"][0]["content"], "be brief");
        let cut = got["request"][1]["content"].as_str().unwrap();
        assert!(
            cut.ends_with('…') && cut.len() > MAX_PAYLOAD_BYTES / 2,
            "{}",
            cut.len()
        );
        // Cut in order: the answer after the long prompt is emptied, its
        // role kept.
        assert_eq!(got["response"][0]["role"], "assistant");
        assert_eq!(got["response"][0]["content"], "");

        // Escaping that doubles the size is cut deeper until it fits.
        let quotes = serde_json::json!({"request": [{"role": "user", "content": "\"".repeat(MAX_PAYLOAD_BYTES)}]});
        let got = bounded_payload(quotes);
        assert!(json_len(&got) <= MAX_PAYLOAD_BYTES);
        assert_eq!(got["truncated"], true);
        // Multi-byte characters are cut on a character boundary.
        let wide = serde_json::json!({"request": [{"role": "user", "content": "é".repeat(MAX_PAYLOAD_BYTES)}]});
        let got = bounded_payload(wide);
        assert!(json_len(&got) <= MAX_PAYLOAD_BYTES);

        // Nothing but structure: only the marker is left.
        let many: Vec<_> = (0..MAX_PAYLOAD_BYTES / 8)
            .map(|_| serde_json::json!({"role": "user"}))
            .collect();
        let got = bounded_payload(serde_json::json!({"request": many}));
        assert_eq!(got.as_object().unwrap().len(), 2, "{got}");
        assert_eq!(got["truncated"], true);
    }
}
