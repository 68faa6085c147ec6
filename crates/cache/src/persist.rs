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
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rusqlite::{Connection, params};

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

/// How long a connection waits for another one's lock (a backup, the
/// sqlite3 shell) before a write fails.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("cache file {path}: {message}")]
    Open { path: PathBuf, message: String },
    #[error(
        "cache file {path} has schema version {found}; this build reads version {SCHEMA_VERSION}"
    )]
    Version { path: PathBuf, found: i64 },
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
    /// Called once everything queued before it is committed.
    Flush(Box<dyn FnOnce() + Send>),
}

/// The queue into the writer thread; cheap to clone.
#[derive(Clone)]
pub(crate) struct Writer {
    tx: SyncSender<Op>,
    dropped: Arc<AtomicU64>,
}

impl Writer {
    fn send(&self, op: Op) {
        match self.tx.try_send(op) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_power_of_two() {
                    tracing::warn!(
                        dropped = n,
                        "cache file writer is behind: entries not persisted"
                    );
                }
            }
            // The writer stopped (it failed to write and gave up, or the
            // process is exiting): memory keeps working.
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    pub(crate) fn put(&self, key: Key, value: Bytes, ttl: Duration) {
        let expires_ms =
            now_ms().saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
        self.send(Op::Put {
            key,
            value,
            expires_ms,
        });
    }

    pub(crate) fn delete(&self, key: Key) {
        self.send(Op::Delete(key));
    }
}

/// The open file: its writer thread and the queue into it. Dropping it
/// writes what is queued, then stops the thread.
pub struct CacheFile {
    writer: Writer,
    /// Detached at drop: it ends by itself once the queue is gone.
    _thread: JoinHandle<()>,
    path: PathBuf,
}

impl CacheFile {
    /// Opens (creating) the file, drops the expired entries and reads the
    /// others back.
    pub fn open(path: &Path) -> Result<(Self, Vec<LoadedEntry>), PersistError> {
        let err = |e: &dyn std::fmt::Display| PersistError::Open {
            path: path.to_owned(),
            message: e.to_string(),
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| err(&e))?;
        }
        let conn = Connection::open(path).map_err(|e| err(&e))?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(|e| err(&e))?;
        // WAL: the writer's commits do not wait for readers (a backup).
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| err(&e))?;
        // A power cut may lose the last commits; a cache can afford that.
        conn.pragma_update(None, "synchronous", "NORMAL")
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
                return Err(PersistError::Version {
                    path: path.to_owned(),
                    found,
                });
            }
        }
        let now = now_ms();
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
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE_CAPACITY);
        let thread = std::thread::Builder::new()
            .name("cache-persist".into())
            .spawn({
                let path = path.to_owned();
                move || write_loop(conn, rx, &path)
            })
            .map_err(|e| err(&e))?;
        Ok((
            Self {
                writer: Writer {
                    tx,
                    dropped: Arc::new(AtomicU64::new(0)),
                },
                _thread: thread,
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
        let (tx, rx) = tokio::sync::oneshot::channel();
        // Blocking send: a flush must not be dropped; the queue drains fast.
        let sender = self.writer.tx.clone();
        let done = Box::new(move || {
            let _ = tx.send(());
        });
        let sent = tokio::task::spawn_blocking(move || sender.send(Op::Flush(done)).is_ok()).await;
        if matches!(sent, Ok(true)) {
            let _ = rx.await;
        }
    }
}

impl Drop for CacheFile {
    fn drop(&mut self) {
        // What is queued is written before the file is let go (bounded: a
        // stuck disk does not hold the process's exit for long). The thread
        // itself ends once the last queue handle is gone.
        let (tx, rx) = std::sync::mpsc::channel();
        let done = Box::new(move || {
            let _ = tx.send(());
        });
        if self.writer.tx.send(Op::Flush(done)).is_ok() {
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
/// (up to [`BATCH`]) and commits them in one transaction.
fn write_loop(mut conn: Connection, rx: Receiver<Op>, path: &Path) {
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
        if let Err(e) = write_batch(&mut conn, &mut batch, purge) {
            tracing::warn!(error = %e, path = %path.display(), "cache file write failed; entries not persisted");
        }
        if purge {
            last_purge = std::time::Instant::now();
        }
        // Answered after the commit (or its failure): flushes never hang.
        for op in batch.drain(..) {
            if let Op::Flush(done) = op {
                done();
            }
        }
    }
}

fn write_batch(conn: &mut Connection, batch: &mut [Op], purge: bool) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut put = tx.prepare(
            "INSERT OR REPLACE INTO cache_entries (key, value, expires_ms) VALUES (?1, ?2, ?3)",
        )?;
        let mut delete = tx.prepare("DELETE FROM cache_entries WHERE key = ?1")?;
        for op in batch.iter() {
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
                Op::Flush(_) => {}
            }
        }
        if purge {
            tx.execute(
                "DELETE FROM cache_entries WHERE expires_ms <= ?1",
                [now_ms()],
            )?;
        }
    }
    tx.commit()
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
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 7).unwrap();
        drop(conn);
        assert!(matches!(
            CacheFile::open(&path),
            Err(PersistError::Version { found: 7, .. })
        ));
    }
}
