//! The local response store (`responses.store: local`, the embedded
//! default of `auto`): a SQLite file of this process.
//!
//! Writes go through a queue to a writer thread that commits them in
//! batches, so the request path never waits on the disk. Until a write is
//! committed its record (or its deletion) is kept in memory and reads see
//! it there: a client that continues a response at once must find it.
//! Reads of committed records use their own connection (WAL: they do not
//! wait for the writer) on a blocking thread.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, params};

use super::{ResponseStore, StoreError};

/// The schema version this build writes (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS responses (
    tenant     TEXT    NOT NULL,
    id         TEXT    NOT NULL,
    record     BLOB    NOT NULL,
    expires_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS responses_expiry ON responses (expires_ms);
";

/// Writes waiting for the writer thread; a full queue makes the request
/// that stores wait (rather than lose a response the client was told is
/// stored).
const QUEUE_CAPACITY: usize = 4_096;

/// Most writes in one transaction.
const BATCH: usize = 256;

/// How often the writer deletes expired rows.
const PURGE_EVERY: Duration = Duration::from_secs(60);

/// How long a connection waits for another one's lock (a backup, the
/// sqlite3 shell) before it fails.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

type Slot = (String, String);

enum Op {
    Put {
        slot: Slot,
        record: Bytes,
        expires_ms: i64,
        seq: u64,
    },
    Delete {
        slot: Slot,
        seq: u64,
    },
    /// Called once everything queued before it is committed.
    Flush(Box<dyn FnOnce() + Send>),
}

/// Queued, not yet committed: the latest write of a slot (`None`: its
/// deletion), with its sequence number so the writer forgets only that one.
type Pending = Arc<Mutex<HashMap<Slot, (u64, Option<Bytes>)>>>;

pub struct LocalStore {
    tx: SyncSender<Op>,
    pending: Pending,
    next: AtomicU64,
    reader: Arc<Mutex<Connection>>,
    ttl: Duration,
    path: PathBuf,
    /// Detached at drop: it ends by itself once the queue is gone.
    _thread: JoinHandle<()>,
}

impl LocalStore {
    /// Opens (creating) the file; records are kept for `ttl`.
    pub fn open(path: &Path, ttl: Duration) -> Result<Self, StoreError> {
        let err = |e: &dyn std::fmt::Display| StoreError::Open {
            path: path.to_owned(),
            message: e.to_string(),
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| err(&e))?;
        }
        let conn = Connection::open(path).map_err(|e| err(&e))?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(|e| err(&e))?;
        // WAL: reads do not wait for the writer's commits.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| err(&e))?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| err(&e))?;
        match version {
            0 => {
                conn.execute_batch(SCHEMA).map_err(|e| err(&e))?;
                conn.pragma_update(None, "user_version", SCHEMA_VERSION)
                    .map_err(|e| err(&e))?;
            }
            SCHEMA_VERSION => {}
            found => {
                return Err(StoreError::Version {
                    path: path.to_owned(),
                    found,
                    expected: SCHEMA_VERSION,
                });
            }
        }
        conn.execute("DELETE FROM responses WHERE expires_ms <= ?1", [now_ms()])
            .map_err(|e| err(&e))?;
        let reader = Connection::open(path).map_err(|e| err(&e))?;
        reader.busy_timeout(BUSY_TIMEOUT).map_err(|e| err(&e))?;
        let pending: Pending = Arc::default();
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE_CAPACITY);
        let thread = std::thread::Builder::new()
            .name("response-store".into())
            .spawn({
                let path = path.to_owned();
                let pending = pending.clone();
                move || write_loop(conn, rx, &pending, &path)
            })
            .map_err(|e| err(&e))?;
        Ok(LocalStore {
            tx,
            pending,
            next: AtomicU64::new(0),
            reader: Arc::new(Mutex::new(reader)),
            ttl,
            path: path.to_owned(),
            _thread: thread,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queues a write; waits only when the queue is full.
    async fn send(&self, slot: Slot, record: Option<Bytes>) -> Result<(), StoreError> {
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(slot.clone(), (seq, record.clone()));
        let op = match record {
            Some(record) => Op::Put {
                slot,
                record,
                expires_ms: now_ms()
                    .saturating_add(i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX)),
                seq,
            },
            None => Op::Delete { slot, seq },
        };
        let op = match self.tx.try_send(op) {
            Ok(()) => return Ok(()),
            Err(TrySendError::Full(op)) => op,
            Err(TrySendError::Disconnected(_)) => {
                return Err(StoreError::Backend(format!(
                    "the writer of {} stopped",
                    self.path.display()
                )));
            }
        };
        let tx = self.tx.clone();
        match tokio::task::spawn_blocking(move || tx.send(op)).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(StoreError::Backend(format!(
                "the writer of {} stopped",
                self.path.display()
            ))),
        }
    }

    /// Waits until everything queued so far is in the file.
    pub async fn flush(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let sender = self.tx.clone();
        let done = Box::new(move || {
            let _ = tx.send(());
        });
        let sent = tokio::task::spawn_blocking(move || sender.send(Op::Flush(done)).is_ok()).await;
        if matches!(sent, Ok(true)) {
            let _ = rx.await;
        }
    }
}

#[async_trait::async_trait]
impl ResponseStore for LocalStore {
    async fn put(&self, tenant: &str, id: &str, record: Bytes) -> Result<(), StoreError> {
        self.send((tenant.to_owned(), id.to_owned()), Some(record))
            .await
    }

    async fn get(&self, tenant: &str, id: &str) -> Result<Option<Bytes>, StoreError> {
        let slot = (tenant.to_owned(), id.to_owned());
        if let Some((_, queued)) = self
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&slot)
        {
            return Ok(queued.clone());
        }
        let reader = self.reader.clone();
        tokio::task::spawn_blocking(move || {
            let conn = reader.lock().unwrap_or_else(PoisonError::into_inner);
            conn.query_row(
                "SELECT record FROM responses WHERE tenant = ?1 AND id = ?2 AND expires_ms > ?3",
                params![slot.0, slot.1, now_ms()],
                |r| r.get::<_, Vec<u8>>(0),
            )
            .optional()
            .map(|r| r.map(Bytes::from))
            .map_err(|e| StoreError::Backend(e.to_string()))
        })
        .await
        .map_err(|e| StoreError::Backend(e.to_string()))?
    }

    async fn delete(&self, tenant: &str, id: &str) -> Result<bool, StoreError> {
        if self.get(tenant, id).await?.is_none() {
            return Ok(false);
        }
        self.send((tenant.to_owned(), id.to_owned()), None).await?;
        Ok(true)
    }

    fn describe(&self) -> String {
        format!("local file {}", self.path.display())
    }
}

impl Drop for LocalStore {
    fn drop(&mut self) {
        // What is queued is written before the file is let go (bounded: a
        // stuck disk does not hold the process's exit for long).
        let (tx, rx) = std::sync::mpsc::channel();
        let done = Box::new(move || {
            let _ = tx.send(());
        });
        if self.tx.send(Op::Flush(done)).is_ok() {
            let _ = rx.recv_timeout(Duration::from_secs(5));
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The writer thread: waits for one write, takes whatever else is queued
/// (up to [`BATCH`]), commits them in one transaction, then lets go of
/// their in-memory copies.
fn write_loop(mut conn: Connection, rx: Receiver<Op>, pending: &Pending, path: &Path) {
    let mut last_purge = std::time::Instant::now();
    let mut batch = Vec::with_capacity(BATCH);
    while let Ok(first) = rx.recv() {
        batch.push(first);
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        let purge = last_purge.elapsed() >= PURGE_EVERY;
        if let Err(e) = write_batch(&mut conn, &batch, purge) {
            tracing::warn!(error = %e, path = %path.display(), "response file write failed; responses not stored");
        }
        if purge {
            last_purge = std::time::Instant::now();
        }
        {
            let mut pending = pending.lock().unwrap_or_else(PoisonError::into_inner);
            for op in &batch {
                if let Op::Put { slot, seq, .. } | Op::Delete { slot, seq } = op
                    && pending.get(slot).is_some_and(|(s, _)| s == seq)
                {
                    pending.remove(slot);
                }
            }
        }
        // Answered after the commit (or its failure): flushes never hang.
        for op in batch.drain(..) {
            if let Op::Flush(done) = op {
                done();
            }
        }
    }
}

fn write_batch(conn: &mut Connection, batch: &[Op], purge: bool) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut put = tx.prepare(
            "INSERT OR REPLACE INTO responses (tenant, id, record, expires_ms) VALUES (?1, ?2, ?3, ?4)",
        )?;
        let mut delete = tx.prepare("DELETE FROM responses WHERE tenant = ?1 AND id = ?2")?;
        for op in batch {
            match op {
                Op::Put {
                    slot,
                    record,
                    expires_ms,
                    ..
                } => {
                    put.execute(params![slot.0, slot.1, &record[..], expires_ms])?;
                }
                Op::Delete { slot, .. } => {
                    delete.execute(params![slot.0, slot.1])?;
                }
                Op::Flush(_) => {}
            }
        }
        if purge {
            tx.execute("DELETE FROM responses WHERE expires_ms <= ?1", [now_ms()])?;
        }
    }
    tx.commit()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[tokio::test]
    async fn keeps_per_tenant_deletes_and_expires() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            LocalStore::open(&dir.path().join("sub/responses.db"), Duration::from_secs(1)).unwrap();
        super::super::tests::behaves_as_a_store(Arc::new(store), Duration::from_secs(1)).await;
    }

    #[tokio::test]
    async fn records_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("responses.db");
        let store = LocalStore::open(&path, Duration::from_secs(600)).unwrap();
        store
            .put("t", "resp_1", Bytes::from_static(b"{}"))
            .await
            .unwrap();
        // Seen before the writer committed it, and after.
        assert_eq!(
            store.get("t", "resp_1").await.unwrap().as_deref(),
            Some(&b"{}"[..])
        );
        store.flush().await;
        assert!(store.pending.lock().unwrap().is_empty());
        drop(store);
        let store = LocalStore::open(&path, Duration::from_secs(600)).unwrap();
        assert_eq!(
            store.get("t", "resp_1").await.unwrap().as_deref(),
            Some(&b"{}"[..])
        );
        assert!(store.delete("t", "resp_1").await.unwrap());
        store.flush().await;
        assert_eq!(store.get("t", "resp_1").await.unwrap(), None);
    }

    #[test]
    fn another_schema_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("responses.db");
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 7).unwrap();
        drop(conn);
        assert!(matches!(
            LocalStore::open(&path, Duration::from_secs(1)),
            Err(StoreError::Version { found: 7, .. })
        ));
    }
}
