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
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, params};
use switchyard_localdb::{self as localdb, now_ms};

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
}

/// Queued, not yet committed: the latest write of a slot (`None`: its
/// deletion), with its sequence number so the writer forgets only that one.
type Pending = Arc<Mutex<HashMap<Slot, (u64, Option<Bytes>)>>>;

/// Dropping it writes what is queued.
pub struct LocalStore {
    writer: localdb::Writer<Op>,
    pending: Pending,
    next: AtomicU64,
    reader: Arc<Mutex<Connection>>,
    ttl: Duration,
    path: PathBuf,
}

impl LocalStore {
    /// Opens (creating) the file; records are kept for `ttl`.
    pub fn open(path: &Path, ttl: Duration) -> Result<Self, StoreError> {
        let conn = localdb::open(path, SCHEMA, SCHEMA_VERSION)?;
        conn.execute("DELETE FROM responses WHERE expires_ms <= ?1", [now_ms()])
            .map_err(|e| StoreError::Backend(format!("{}: {e}", path.display())))?;
        let reader = localdb::reader(path)?;
        let pending: Pending = Arc::default();
        let options = localdb::WriterOptions {
            name: "response-store",
            capacity: QUEUE_CAPACITY,
            batch: BATCH,
            purge_every: PURGE_EVERY,
        };
        let writer = localdb::Writer::spawn(conn, path, options, Records(pending.clone()))?;
        Ok(LocalStore {
            writer,
            pending,
            next: AtomicU64::new(0),
            reader: Arc::new(Mutex::new(reader)),
            ttl,
            path: path.to_owned(),
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
                expires_ms: localdb::expires_ms(self.ttl),
                seq,
            },
            None => Op::Delete { slot, seq },
        };
        self.writer.send(op).await.map_err(|_| {
            StoreError::Backend(format!("the writer of {} stopped", self.path.display()))
        })
    }

    /// Waits until everything queued so far is in the file.
    pub async fn flush(&self) {
        self.writer.flush().await;
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

/// The writer thread's side: each batch in one transaction, then the
/// in-memory copies of its writes let go.
struct Records(Pending);

impl localdb::Batcher for Records {
    type Write = Op;

    fn write(
        &mut self,
        tx: &localdb::Transaction<'_>,
        batch: &[Op],
        purge: bool,
    ) -> rusqlite::Result<()> {
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
            }
        }
        if purge {
            tx.execute("DELETE FROM responses WHERE expires_ms <= ?1", [now_ms()])?;
        }
        Ok(())
    }

    fn committed(&mut self, batch: &[Op]) {
        let mut pending = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        for op in batch {
            let (Op::Put { slot, seq, .. } | Op::Delete { slot, seq }) = op;
            if pending.get(slot).is_some_and(|(s, _)| s == seq) {
                pending.remove(slot);
            }
        }
    }
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
            Err(StoreError::File(localdb::OpenError::Version {
                found: 7,
                ..
            }))
        ));
    }
}
