//! The memory backend's optional persistence (`cache.persist`): entries
//! written through to a local SQLite file by a background thread, in
//! batches (one transaction per batch), so the request path only queues;
//! the unexpired entries are read back at start.
//!
//! Expiry is kept as wall-clock time (milliseconds since the Unix epoch):
//! the monotonic clocks the cache runs on do not survive a restart. An
//! entry evicted from memory (size, expiry) is deleted from the file too,
//! so the file holds about what memory does.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use rusqlite::params;
use switchyard_localdb::{self as localdb, NotQueued};

use crate::Key;

/// The schema version this build writes (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS cache_entries (
    key        BLOB    NOT NULL PRIMARY KEY,
    value      BLOB    NOT NULL,
    expires_ms INTEGER NOT NULL
) WITHOUT ROWID;
";

/// Writes waiting for the writer thread; beyond it a write is dropped
/// (the entry stays in memory, it only does not survive a restart).
const QUEUE_CAPACITY: usize = 65_536;

/// Most writes in one transaction.
const BATCH: usize = 1_024;

/// How often the writer deletes rows that expired while in the file.
const PURGE_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("cache file: {0}")]
    File(#[from] localdb::OpenError),
    #[error("cache file {path}: {message}")]
    Read { path: PathBuf, message: String },
}

/// An entry read back at start, with the time it has left.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedEntry {
    pub key: Key,
    pub value: Bytes,
    pub remaining: Duration,
}

enum Op {
    Put {
        key: Key,
        value: Bytes,
        expires_ms: i64,
    },
    Delete(Key),
}

/// The queue into the writer thread; cheap to clone.
#[derive(Clone)]
pub(crate) struct Writer {
    queue: localdb::Writer<Op>,
    dropped: Arc<AtomicU64>,
}

impl Writer {
    fn send(&self, op: Op) {
        match self.queue.try_send(op) {
            Ok(()) => {}
            Err(NotQueued::Full) => {
                let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_power_of_two() {
                    tracing::warn!(
                        dropped = n,
                        "cache file writer is behind: entries not persisted"
                    );
                }
            }
            // The writer stopped (the process is exiting): memory keeps
            // working.
            Err(NotQueued::Stopped) => {}
        }
    }

    pub(crate) fn put(&self, key: Key, value: Bytes, ttl: Duration) {
        self.send(Op::Put {
            key,
            value,
            expires_ms: localdb::expires_ms(ttl),
        });
    }

    pub(crate) fn delete(&self, key: Key) {
        self.send(Op::Delete(key));
    }
}

/// The open file and the queue into its writer thread. Dropping it writes
/// what is queued.
pub struct CacheFile {
    writer: Writer,
    path: PathBuf,
}

impl CacheFile {
    /// Opens (creating) the file, drops the expired entries and reads the
    /// others back.
    pub fn open(path: &Path) -> Result<(Self, Vec<LoadedEntry>), PersistError> {
        let err = |e: &dyn std::fmt::Display| PersistError::Read {
            path: path.to_owned(),
            message: e.to_string(),
        };
        let conn = localdb::open(path, SCHEMA, SCHEMA_VERSION)?;
        // A power cut may lose the last commits; a cache can afford that.
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(|e| err(&e))?;
        let now = localdb::now_ms();
        conn.execute("DELETE FROM cache_entries WHERE expires_ms <= ?1", [now])
            .map_err(|e| err(&e))?;
        let mut loaded = Vec::new();
        {
            let mut stmt = conn
                .prepare("SELECT key, value, expires_ms FROM cache_entries")
                .map_err(|e| err(&e))?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((
                        r.get::<_, Vec<u8>>(0)?,
                        r.get::<_, Vec<u8>>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                })
                .map_err(|e| err(&e))?;
            for row in rows {
                let (key, value, expires_ms) = row.map_err(|e| err(&e))?;
                let Ok(key) = <[u8; 32]>::try_from(key.as_slice()) else {
                    continue;
                };
                let left = u64::try_from(expires_ms.saturating_sub(now)).unwrap_or(0);
                if left == 0 {
                    continue;
                }
                loaded.push(LoadedEntry {
                    key: Key(key),
                    value: Bytes::from(value),
                    remaining: Duration::from_millis(left),
                });
            }
        }
        let options = localdb::WriterOptions {
            name: "cache-persist",
            capacity: QUEUE_CAPACITY,
            batch: BATCH,
            purge_every: PURGE_EVERY,
        };
        let queue = localdb::Writer::spawn(conn, path, options, Entries)?;
        Ok((
            Self {
                writer: Writer {
                    queue,
                    dropped: Arc::new(AtomicU64::new(0)),
                },
                path: path.to_owned(),
            },
            loaded,
        ))
    }

    pub(crate) fn writer(&self) -> Writer {
        self.writer.clone()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes dropped because the writer was behind.
    pub fn dropped(&self) -> u64 {
        self.writer.dropped.load(Ordering::Relaxed)
    }

    /// Waits until everything queued so far is in the file (or the writer
    /// stopped).
    pub async fn flush(&self) {
        self.writer.queue.flush().await;
    }
}

/// The writer thread's side: each batch in one transaction.
struct Entries;

impl localdb::Batcher for Entries {
    type Write = Op;

    fn write(
        &mut self,
        tx: &localdb::Transaction<'_>,
        batch: &[Op],
        purge: bool,
    ) -> rusqlite::Result<()> {
        let mut put = tx.prepare(
            "INSERT OR REPLACE INTO cache_entries (key, value, expires_ms) VALUES (?1, ?2, ?3)",
        )?;
        let mut delete = tx.prepare("DELETE FROM cache_entries WHERE key = ?1")?;
        for op in batch {
            match op {
                Op::Put {
                    key,
                    value,
                    expires_ms,
                } => {
                    put.execute(params![&key.0[..], &value[..], expires_ms])?;
                }
                Op::Delete(key) => {
                    delete.execute([&key.0[..]])?;
                }
            }
        }
        if purge {
            tx.execute(
                "DELETE FROM cache_entries WHERE expires_ms <= ?1",
                [localdb::now_ms()],
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[tokio::test]
    async fn entries_survive_a_reopen_with_their_remaining_ttl() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/cache.db");
        let (file, loaded) = CacheFile::open(&path).unwrap();
        assert!(loaded.is_empty());
        let w = file.writer();
        w.put(
            Key([1; 32]),
            Bytes::from_static(b"one"),
            Duration::from_secs(600),
        );
        w.put(
            Key([2; 32]),
            Bytes::from_static(b"two"),
            Duration::from_secs(600),
        );
        w.put(Key([3; 32]), Bytes::from_static(b"gone"), Duration::ZERO);
        w.delete(Key([2; 32]));
        file.flush().await;
        drop(file);
        let (_file, loaded) = CacheFile::open(&path).unwrap();
        assert_eq!(loaded.len(), 1, "{loaded:?}");
        assert_eq!(loaded[0].key, Key([1; 32]));
        assert_eq!(&loaded[0].value[..], b"one");
        assert!(loaded[0].remaining <= Duration::from_secs(600));
        assert!(loaded[0].remaining > Duration::from_secs(500));
    }

    #[test]
    fn another_schema_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache.db");
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 7).unwrap();
        drop(conn);
        assert!(matches!(
            CacheFile::open(&path),
            Err(PersistError::File(switchyard_localdb::OpenError::Version {
                found: 7,
                ..
            }))
        ));
    }
}
