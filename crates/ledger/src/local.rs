//! The embedded ledger: one SQLite file, written in batches by a background
//! thread, read on a second connection.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use rusqlite::types::Value;
use rusqlite::{Connection, TransactionBehavior, params, params_from_iter};
use switchyard_pricing::Usd;
use tokio::sync::oneshot;

use crate::query::{
    Metrics, SpendBucket, days_between, rows_from, spend_records, to_i64, to_u64, ts_from_us,
};
use crate::record::{Counters, guardrails_from_json, guardrails_to_json, payload_from_json};
use crate::sql::{self, Dialect, Param, Sql};
use crate::{LedgerError, SinkStats, UsageQuery, UsageRecord, UsageRow, UsageSink, UsageStore};

/// The schema version this build writes (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 2;

const SCHEMA_V1: &str = "
CREATE TABLE usage_records (
    request_id          TEXT    NOT NULL PRIMARY KEY,
    time_us             INTEGER NOT NULL,
    router              TEXT    NOT NULL,
    operation           TEXT    NOT NULL,
    key_id              TEXT,
    team_id             TEXT,
    user_id             TEXT,
    model               TEXT    NOT NULL,
    provider            TEXT,
    served_model        TEXT,
    input_tokens        INTEGER NOT NULL DEFAULT 0,
    cached_input_tokens INTEGER NOT NULL DEFAULT 0,
    cache_write_tokens  INTEGER NOT NULL DEFAULT 0,
    output_tokens       INTEGER NOT NULL DEFAULT 0,
    reasoning_tokens    INTEGER NOT NULL DEFAULT 0,
    images              INTEGER NOT NULL DEFAULT 0,
    cost_pico           INTEGER NOT NULL DEFAULT 0,
    saved_pico          INTEGER NOT NULL DEFAULT 0,
    estimated           INTEGER NOT NULL DEFAULT 0,
    cache_hit           INTEGER NOT NULL DEFAULT 0,
    latency_ms          INTEGER NOT NULL DEFAULT 0,
    outcome             TEXT    NOT NULL
);
CREATE INDEX usage_records_time     ON usage_records (time_us);
";
// One index besides the key: every index is another B-tree insert per
// record on the writer thread, which shares the gateway's CPU, and reports
// select a time range first (the grouping then scans that range).

/// The audit fields. Added columns, so a file of version 1 upgrades in place
/// (its records get no address, no credential, no guardrail actions).
///
/// The time index gains the request id: an export pages by (time, request
/// id), and with both in the index each page is a range scan in order,
/// not a sort of everything after the cursor. It replaces the old one (one
/// index besides the key, still).
///
/// Records are append-only: the trigger refuses any UPDATE, so no code
/// path (nor a stray statement in the sqlite3 shell) rewrites history.
/// Deleting old records stays possible, for retention.
///
/// Captured payloads (JSON text) live in a table of their own, keyed by
/// request id: the records' pages stay small for the reports that scan
/// them, and only the audit export reads payloads. Append-only too, and
/// deleted with their record by a trigger (not a foreign key: the sqlite3
/// shell, where retention deletes run, does not enforce those by default).
const SCHEMA_V2: &str = "
ALTER TABLE usage_records ADD COLUMN client_addr TEXT;
ALTER TABLE usage_records ADD COLUMN credential  TEXT;
ALTER TABLE usage_records ADD COLUMN guardrails  TEXT NOT NULL DEFAULT '[]';
CREATE INDEX usage_records_time_id ON usage_records (time_us, request_id);
DROP INDEX usage_records_time;
CREATE TRIGGER usage_records_append_only BEFORE UPDATE ON usage_records
BEGIN
    SELECT RAISE(ABORT, 'usage records are append-only');
END;
CREATE TABLE usage_payloads (
    request_id TEXT NOT NULL PRIMARY KEY,
    payload    TEXT NOT NULL
);
CREATE TRIGGER usage_payloads_append_only BEFORE UPDATE ON usage_payloads
BEGIN
    SELECT RAISE(ABORT, 'usage records are append-only');
END;
CREATE TRIGGER usage_records_delete_payload AFTER DELETE ON usage_records
BEGIN
    DELETE FROM usage_payloads WHERE request_id = OLD.request_id;
END;
";

/// Rows inserted between two yields of the writer thread.
const YIELD_EVERY: usize = 32;

const INSERT: &str = "INSERT OR IGNORE INTO usage_records (
    request_id, time_us, router, operation, key_id, team_id, user_id, model, provider,
    served_model, input_tokens, cached_input_tokens, cache_write_tokens, output_tokens,
    reasoning_tokens, images, cost_pico, saved_pico, estimated, cache_hit, latency_ms, outcome,
    client_addr, credential, guardrails
) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18,
          ?19, ?20, ?21, ?22, ?23, ?24, ?25)";

/// Only with a record that is new: a re-delivered record (ignored above)
/// keeps the payload it was stored with.
const INSERT_PAYLOAD: &str =
    "INSERT OR IGNORE INTO usage_payloads (request_id, payload) VALUES (?1, ?2)";

/// How long a connection waits for another one's lock (a backup, the
/// sqlite3 shell) before a write attempt fails.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Write attempts of one batch before its records are counted as lost.
const WRITE_ATTEMPTS: u32 = 5;

/// Tuning of a [`LocalLedger`].
#[derive(Debug, Clone)]
pub struct LocalOptions {
    /// Records waiting for the writer; beyond it `record` drops.
    pub queue_capacity: usize,
    /// Most records in one transaction.
    pub batch_size: usize,
    /// How long the writer waits for more records before committing a
    /// batch that is not full.
    pub linger: Duration,
}

impl Default for LocalOptions {
    fn default() -> Self {
        LocalOptions {
            queue_capacity: 100_000,
            batch_size: 1_000,
            linger: Duration::from_millis(100),
        }
    }
}

enum Msg {
    // Boxed: the channel allocates every slot up front, and a record is a
    // few hundred bytes.
    Record(Box<UsageRecord>),
    Flush(oneshot::Sender<()>),
}

/// Usage in a local SQLite file (WAL mode), for `switchyard serve`.
///
/// `record` hands the record to a bounded queue; one writer thread commits
/// it in batches with `INSERT OR IGNORE` on the request id, so a record
/// written twice is stored once. Queries run on their own connection on
/// tokio's blocking pool. Dropping the last handle lets the writer drain
/// the queue and waits for it.
pub struct LocalLedger {
    tx: Option<SyncSender<Msg>>,
    writer: Option<JoinHandle<()>>,
    reader: Arc<Mutex<Connection>>,
    counters: Arc<Counters>,
    path: PathBuf,
}

impl std::fmt::Debug for LocalLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalLedger")
            .field("path", &self.path)
            .field("stats", &self.counters.snapshot())
            .finish_non_exhaustive()
    }
}

impl LocalLedger {
    /// Opens (creating or migrating) the ledger at `path` with default
    /// options.
    pub fn open(path: &Path) -> Result<Arc<LocalLedger>, LedgerError> {
        LocalLedger::open_with(path, LocalOptions::default())
    }

    pub fn open_with(path: &Path, options: LocalOptions) -> Result<Arc<LocalLedger>, LedgerError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut writer = Connection::open(path)?;
        writer.busy_timeout(BUSY_TIMEOUT)?;
        // WAL: readers never block the writer nor the other way round.
        // synchronous=FULL: a committed batch survives a power cut, and with
        // one commit per batch the fsyncs stay few.
        let mode: String = writer.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(path = %path.display(), mode, "SQLite refused WAL mode");
        }
        writer.pragma_update(None, "synchronous", "FULL")?;
        migrate(&mut writer)?;

        let reader = Connection::open(path)?;
        reader.busy_timeout(BUSY_TIMEOUT)?;
        reader.pragma_update(None, "query_only", true)?;

        let (tx, rx) = std::sync::mpsc::sync_channel(options.queue_capacity.max(1));
        let counters = Arc::new(Counters::default());
        let thread_counters = counters.clone();
        let writer = std::thread::Builder::new()
            .name("usage-ledger-writer".to_owned())
            .spawn(move || write_loop(writer, rx, options, thread_counters))?;
        Ok(Arc::new(LocalLedger {
            tx: Some(tx),
            writer: Some(writer),
            reader: Arc::new(Mutex::new(reader)),
            counters,
            path: path.to_owned(),
        }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn read<T, F>(&self, f: F) -> Result<T, LedgerError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, LedgerError> + Send + 'static,
    {
        let reader = self.reader.clone();
        tokio::task::spawn_blocking(move || {
            let conn = reader.lock().unwrap_or_else(PoisonError::into_inner);
            f(&conn)
        })
        .await
        .map_err(|e| LedgerError::Io(std::io::Error::other(e)))?
    }
}

impl Drop for LocalLedger {
    fn drop(&mut self) {
        // Closing the channel makes the writer commit what is queued and
        // stop; waiting for it means a reopen sees every record.
        self.tx.take();
        if let Some(handle) = self.writer.take()
            && handle.join().is_err()
        {
            tracing::error!(path = %self.path.display(), "usage ledger writer panicked");
        }
    }
}

fn migrate(conn: &mut Connection) -> Result<(), LedgerError> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(LedgerError::Corrupt(format!(
            "the usage ledger has schema version {version}, newer than this build's \
             {SCHEMA_VERSION}: use a newer switchyard or another file"
        )));
    }
    // Each step in its own transaction with its version: a file stopped
    // half-way (a crash during an upgrade) resumes at the step it lacks.
    for (v, schema) in [(1, SCHEMA_V1), (2, SCHEMA_V2)] {
        if version >= v {
            continue;
        }
        let tx = conn.transaction_with_behavior(TransactionBehavior::Exclusive)?;
        // Read again under the lock: another process opening the same file
        // may have applied this step while we waited for it.
        let now: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if now >= v {
            continue;
        }
        tx.execute_batch(schema)?;
        tx.pragma_update(None, "user_version", v)?;
        tx.commit()?;
        if version > 0 {
            tracing::info!(version = v, "usage ledger schema upgraded");
        }
    }
    Ok(())
}

fn write_loop(
    mut conn: Connection,
    rx: Receiver<Msg>,
    options: LocalOptions,
    counters: Arc<Counters>,
) {
    let batch_size = options.batch_size.max(1);
    let mut batch: Vec<UsageRecord> = Vec::with_capacity(batch_size);
    let mut waiters: Vec<oneshot::Sender<()>> = Vec::new();
    let take =
        |m: Msg, batch: &mut Vec<UsageRecord>, waiters: &mut Vec<oneshot::Sender<()>>| match m {
            Msg::Record(r) => batch.push(*r),
            Msg::Flush(w) => waiters.push(w),
        };
    let mut behind = false;
    loop {
        let Ok(first) = rx.recv() else { return };
        take(first, &mut batch, &mut waiters);
        // Then sleep out the linger and take what came meanwhile: waking on
        // every record would cost a thread switch per request on the
        // gateway's CPU. A flush (shutdown, tests) does not wait, nor does
        // a writer behind (its last batch was full).
        if waiters.is_empty() && !behind {
            std::thread::sleep(options.linger);
        }
        let mut closed = false;
        while batch.len() < batch_size {
            match rx.try_recv() {
                Ok(m) => take(m, &mut batch, &mut waiters),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    closed = true;
                    break;
                }
            }
        }
        commit(&mut conn, &batch, &counters);
        behind = batch.len() >= batch_size;
        batch.clear();
        for w in waiters.drain(..) {
            let _ = w.send(());
        }
        if closed {
            return;
        }
    }
}

fn commit(conn: &mut Connection, batch: &[UsageRecord], counters: &Counters) {
    if batch.is_empty() {
        return;
    }
    let mut pause = Duration::from_millis(50);
    for attempt in 1..=WRITE_ATTEMPTS {
        match insert(conn, batch) {
            Ok(()) => {
                counters
                    .stored
                    .fetch_add(batch.len() as u64, std::sync::atomic::Ordering::Relaxed);
                return;
            }
            Err(e) if attempt < WRITE_ATTEMPTS => {
                tracing::warn!(error = %e, attempt, records = batch.len(), "usage ledger write failed; retrying");
                // Back-off before retrying a failed write (a locked or full
                // disk), on the writer's own thread.
                std::thread::sleep(pause);
                pause *= 2;
            }
            Err(e) => {
                tracing::error!(error = %e, records = batch.len(), "usage ledger write failed; records lost");
                counters.failed(batch.len() as u64);
            }
        }
    }
}

fn insert(conn: &mut Connection, batch: &[UsageRecord]) -> Result<(), rusqlite::Error> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    {
        let mut stmt = tx.prepare(INSERT)?;
        let mut payloads = tx.prepare(INSERT_PAYLOAD)?;
        for (i, r) in batch.iter().enumerate() {
            // A full batch is about a millisecond of CPU; on a gateway
            // pinned to one core that would stall requests behind it, so
            // the writer lets them run every few rows.
            if i % YIELD_EVERY == YIELD_EVERY - 1 {
                std::thread::yield_now();
            }
            let inserted = stmt.execute(params![
                r.request_id,
                r.time.as_microsecond(),
                r.router,
                r.operation,
                r.key,
                r.team,
                r.user,
                r.model,
                r.provider,
                r.served_model,
                to_i64(r.input_tokens),
                to_i64(r.cached_input_tokens),
                to_i64(r.cache_write_tokens),
                to_i64(r.output_tokens),
                to_i64(r.reasoning_tokens),
                i64::from(r.images),
                r.cost.pico(),
                r.saved.pico(),
                r.estimated,
                r.cache_hit,
                to_i64(r.latency_ms),
                r.outcome,
                r.client_addr,
                r.credential,
                guardrails_to_json(&r.guardrails),
            ])?;
            if inserted == 1
                && let Some(p) = &r.payload
            {
                payloads.execute(params![r.request_id, p.to_string()])?;
            }
        }
    }
    tx.commit()
}

fn values(sql: &Sql) -> Result<Vec<Value>, LedgerError> {
    sql.params
        .iter()
        .map(|p| match p {
            Param::Text(s) => Ok(Value::Text(s.clone())),
            Param::Time(us) => Ok(Value::Integer(*us)),
            Param::TextArray(_) | Param::TimeArray(_) => Err(LedgerError::InvalidQuery(
                "array parameter in SQLite".to_owned(),
            )),
        })
        .collect()
}

fn query_sync(conn: &Connection, q: &UsageQuery) -> Result<Vec<UsageRow>, LedgerError> {
    let dims = q.dimensions();
    let days = if dims.contains(&crate::Dimension::Day) {
        let range = sql::time_range(Dialect::Sqlite, q)?;
        let (first, last): (Option<i64>, Option<i64>) =
            conn.query_row(&range.text, params_from_iter(values(&range)?), |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
        match (first, last) {
            (Some(a), Some(b)) => Some(days_between(a, b, &q.time_zone)?),
            _ => return Ok(Vec::new()),
        }
    } else {
        None
    };
    let sql = sql::aggregate(Dialect::Sqlite, q, &dims, days.as_deref())?;
    let mut stmt = conn.prepare(&sql.text)?;
    let n = dims.len();
    let raw = stmt
        .query_map(params_from_iter(values(&sql)?), |r| {
            let mut group = Vec::with_capacity(n);
            for i in 0..n {
                group.push(r.get::<_, Option<String>>(i)?);
            }
            let mut m: Metrics = [0; 10];
            for (j, v) in m.iter_mut().enumerate() {
                *v = r.get(n + j)?;
            }
            Ok((group, m))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows_from(&dims, raw))
}

fn record_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(UsageRecordRaw, i64)> {
    Ok((
        UsageRecordRaw {
            request_id: r.get(0)?,
            router: r.get(2)?,
            operation: r.get(3)?,
            key: r.get(4)?,
            team: r.get(5)?,
            user: r.get(6)?,
            model: r.get(7)?,
            provider: r.get(8)?,
            served_model: r.get(9)?,
            counters: [
                r.get(10)?,
                r.get(11)?,
                r.get(12)?,
                r.get(13)?,
                r.get(14)?,
                r.get(15)?,
                r.get(16)?,
                r.get(17)?,
                r.get(20)?,
            ],
            estimated: r.get(18)?,
            cache_hit: r.get(19)?,
            outcome: r.get(21)?,
            client_addr: r.get(22)?,
            credential: r.get(23)?,
            guardrails: r.get(24)?,
            payload: r.get(25)?,
        },
        r.get(1)?,
    ))
}

/// A stored row before its time is checked (rusqlite's row mapping cannot
/// return our error type).
struct UsageRecordRaw {
    request_id: String,
    router: String,
    operation: String,
    key: Option<String>,
    team: Option<String>,
    user: Option<String>,
    model: String,
    provider: Option<String>,
    served_model: Option<String>,
    /// input, cached input, cache write, output, reasoning, images, cost,
    /// saved, latency.
    counters: [i64; 9],
    estimated: bool,
    cache_hit: bool,
    outcome: String,
    client_addr: Option<String>,
    credential: Option<String>,
    /// JSON array text.
    guardrails: String,
    /// JSON text.
    payload: Option<String>,
}

impl UsageRecordRaw {
    fn into_record(self, time_us: i64) -> Result<UsageRecord, LedgerError> {
        let c = self.counters;
        Ok(UsageRecord {
            request_id: self.request_id,
            time: ts_from_us(time_us)?,
            router: self.router,
            operation: self.operation,
            key: self.key,
            team: self.team,
            user: self.user,
            model: self.model,
            provider: self.provider,
            served_model: self.served_model,
            input_tokens: to_u64(c[0]),
            cached_input_tokens: to_u64(c[1]),
            cache_write_tokens: to_u64(c[2]),
            output_tokens: to_u64(c[3]),
            reasoning_tokens: to_u64(c[4]),
            images: u32::try_from(c[5]).unwrap_or(u32::MAX),
            cost: Usd::from_pico(c[6]),
            saved: Usd::from_pico(c[7]),
            estimated: self.estimated,
            cache_hit: self.cache_hit,
            latency_ms: to_u64(c[8]),
            outcome: self.outcome,
            client_addr: self.client_addr,
            credential: self.credential,
            guardrails: guardrails_from_json(&self.guardrails)?,
            payload: self.payload.as_deref().map(payload_from_json).transpose()?,
        })
    }
}

fn records_sync(
    conn: &Connection,
    q: &UsageQuery,
    limit: usize,
) -> Result<Vec<UsageRecord>, LedgerError> {
    let sql = sql::records(Dialect::Sqlite, q, limit)?;
    let mut stmt = conn.prepare(&sql.text)?;
    let raw = stmt
        .query_map(params_from_iter(values(&sql)?), record_from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    raw.into_iter().map(|(r, t)| r.into_record(t)).collect()
}

fn spend_since_sync(conn: &Connection, since: Timestamp) -> Result<Vec<UsageRecord>, LedgerError> {
    let sql = sql::spend_since(Dialect::Sqlite, since.as_microsecond());
    let mut stmt = conn.prepare(&sql.text)?;
    let buckets = stmt
        .query_map(params_from_iter(values(&sql)?), |r| {
            let mut ids: [Option<String>; 6] = Default::default();
            for (i, v) in ids.iter_mut().enumerate() {
                *v = r.get(1 + i)?;
            }
            let mut sums = [0i64; 8];
            for (i, v) in sums.iter_mut().enumerate() {
                *v = r.get(7 + i)?;
            }
            Ok(SpendBucket {
                bucket_us: r.get(0)?,
                ids,
                sums,
                estimated: r.get::<_, i64>(15)? != 0,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    spend_records(since, buckets)
}

#[async_trait]
impl UsageSink for LocalLedger {
    fn record(&self, record: UsageRecord) {
        let Some(tx) = &self.tx else { return };
        match tx.try_send(Msg::Record(Box::new(record))) {
            Ok(()) => {
                self.counters
                    .recorded
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            Err(TrySendError::Full(m)) => {
                self.counters.dropped(1);
                if let Msg::Record(r) = m {
                    self.counters.log_drop(&r.request_id, "usage queue full");
                }
            }
            Err(TrySendError::Disconnected(m)) => {
                self.counters.dropped(1);
                if let Msg::Record(r) = m {
                    self.counters
                        .log_drop(&r.request_id, "usage writer stopped");
                }
            }
        }
    }

    async fn flush(&self) -> Result<(), LedgerError> {
        let tx = self.tx.clone().ok_or(LedgerError::Closed)?;
        let (done_tx, done_rx) = oneshot::channel();
        // Behind every record queued so far: once the writer reaches it,
        // they are committed. The queue may be full, so the send may wait,
        // on the blocking pool rather than a runtime thread.
        match tx.try_send(Msg::Flush(done_tx)) {
            Ok(()) => {}
            Err(TrySendError::Disconnected(_)) => return Err(LedgerError::Closed),
            Err(TrySendError::Full(m)) => {
                tokio::task::spawn_blocking(move || tx.send(m))
                    .await
                    .map_err(|_| LedgerError::Closed)?
                    .map_err(|_| LedgerError::Closed)?;
            }
        }
        done_rx.await.map_err(|_| LedgerError::Closed)?;
        self.counters.report()
    }

    fn stats(&self) -> SinkStats {
        self.counters.snapshot()
    }
}

#[async_trait]
impl UsageStore for LocalLedger {
    async fn query(&self, q: &UsageQuery) -> Result<Vec<UsageRow>, LedgerError> {
        let q = q.clone();
        self.read(move |c| query_sync(c, &q)).await
    }

    async fn records(&self, q: &UsageQuery, limit: usize) -> Result<Vec<UsageRecord>, LedgerError> {
        let q = q.clone();
        self.read(move |c| records_sync(c, &q, limit)).await
    }

    async fn spend_since(&self, since: Timestamp) -> Result<Vec<UsageRecord>, LedgerError> {
        self.read(move |c| spend_since_sync(c, since)).await
    }
}
