//! The embedded default's file database: each local store (the persisted
//! cache, stored responses) is one SQLite file with its own schema, opened
//! here the same way: its folder created, WAL journaling so readers never
//! wait for the writer's commits, a busy timeout for outside readers (a
//! backup, the sqlite3 shell), and `PRAGMA user_version` as the schema
//! version, so a file written by another build is refused rather than
//! misread. Writes go through a [`Writer`]: a thread that commits queued
//! writes in batches, so the request path only queues.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use rusqlite::{Connection, Transaction};

/// How long a connection waits for another one's lock before it fails.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot open {path}: {message}")]
    Open { path: PathBuf, message: String },
    #[error("{path} has schema version {found}; this build reads version {expected}")]
    Version {
        path: PathBuf,
        found: i64,
        expected: i64,
    },
}

/// The writer's connection to `path`: a new file gets `schema` and
/// `version`; an existing one must be at `version`.
pub fn open(path: &Path, schema: &str, version: i64) -> Result<Connection, OpenError> {
    let err = |e: &dyn std::fmt::Display| OpenError::Open {
        path: path.to_owned(),
        message: e.to_string(),
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| err(&e))?;
    }
    let conn = reader(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(|e| err(&e))?;
    let found: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(|e| err(&e))?;
    match found {
        0 => {
            conn.execute_batch(schema).map_err(|e| err(&e))?;
            conn.pragma_update(None, "user_version", version)
                .map_err(|e| err(&e))?;
        }
        v if v == version => {}
        found => {
            return Err(OpenError::Version {
                path: path.to_owned(),
                found,
                expected: version,
            });
        }
    }
    Ok(conn)
}

/// Another connection to a file [`open`] made, for reads off the writer's
/// thread.
pub fn reader(path: &Path) -> Result<Connection, OpenError> {
    let err = |e: rusqlite::Error| OpenError::Open {
        path: path.to_owned(),
        message: e.to_string(),
    };
    let conn = Connection::open(path).map_err(err)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(err)?;
    Ok(conn)
}

/// Now, in milliseconds since the Unix epoch: expiry kept in a file must
/// survive a restart, which the monotonic clocks do not.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The [`now_ms`] at which something kept for `ttl` expires.
pub fn expires_ms(ttl: Duration) -> i64 {
    now_ms().saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX))
}

/// What a [`Writer`]'s thread does with a store's writes.
pub trait Batcher: Send + 'static {
    type Write: Send + 'static;
    /// Applies `writes` in `tx`, in order; with `purge`, also deletes what
    /// expired (about once a [`WriterOptions::purge_every`]).
    fn write(
        &mut self,
        tx: &Transaction<'_>,
        writes: &[Self::Write],
        purge: bool,
    ) -> rusqlite::Result<()>;
    /// After `writes` were committed (or failed to be).
    fn committed(&mut self, _writes: &[Self::Write]) {}
}

pub struct WriterOptions {
    /// The thread's name, also naming the store in the warning logged when
    /// a batch fails.
    pub name: &'static str,
    /// Writes the queue holds; past it [`Writer::try_send`] gives the write
    /// back.
    pub capacity: usize,
    /// Most writes in one transaction.
    pub batch: usize,
    pub purge_every: Duration,
}

enum Msg<W> {
    Write(W),
    /// Called once everything queued before it is committed.
    Flush(Box<dyn FnOnce() + Send>),
}

/// The writer thread's queue. Dropping it writes what is queued (waiting
/// at most 5 s: a stuck disk does not hold the process's exit for long);
/// the thread ends once the last handle to the queue is gone.
pub struct Writer<W> {
    tx: SyncSender<Msg<W>>,
}

impl<W> Clone for Writer<W> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
        }
    }
}

/// The writer thread has stopped (the process is exiting).
#[derive(Debug, thiserror::Error)]
#[error("the writer thread stopped")]
pub struct Stopped;

/// Why [`Writer::try_send`] did not queue a write.
#[derive(Debug, PartialEq, Eq)]
pub enum NotQueued {
    /// The writer is behind.
    Full,
    /// The writer thread has stopped.
    Stopped,
}

impl<W: Send + 'static> Writer<W> {
    /// Starts the thread writing to `conn` (the file at `path`, named in
    /// logs).
    pub fn spawn<B: Batcher<Write = W>>(
        conn: Connection,
        path: &Path,
        options: WriterOptions,
        batcher: B,
    ) -> Result<Self, OpenError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(options.capacity);
        let path = path.to_owned();
        let spawned = std::thread::Builder::new()
            .name(options.name.into())
            .spawn({
                let path = path.clone();
                move || write_loop(conn, rx, &path, &options, batcher)
            });
        // Detached: it ends by itself once the queue is gone.
        spawned.map_err(|e| OpenError::Open {
            path,
            message: e.to_string(),
        })?;
        Ok(Self { tx })
    }

    /// Queues `write` if there is room; a full queue drops it.
    pub fn try_send(&self, write: W) -> Result<(), NotQueued> {
        self.tx.try_send(Msg::Write(write)).map_err(|e| match e {
            TrySendError::Full(_) => NotQueued::Full,
            TrySendError::Disconnected(_) => NotQueued::Stopped,
        })
    }

    /// Queues `write`, waiting (off the async threads) while the queue is
    /// full.
    pub async fn send(&self, write: W) -> Result<(), Stopped> {
        let msg = match self.tx.try_send(Msg::Write(write)) {
            Ok(()) => return Ok(()),
            Err(TrySendError::Full(msg)) => msg,
            Err(TrySendError::Disconnected(_)) => return Err(Stopped),
        };
        let tx = self.tx.clone();
        match tokio::task::spawn_blocking(move || tx.send(msg)).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(Stopped),
        }
    }

    /// Waits until everything queued so far is committed (or the writer
    /// stopped).
    pub async fn flush(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let done = Box::new(move || {
            let _ = tx.send(());
        });
        // Blocking send: a flush must not be dropped; the queue drains fast.
        let sender = self.tx.clone();
        let sent = tokio::task::spawn_blocking(move || sender.send(Msg::Flush(done)).is_ok()).await;
        if matches!(sent, Ok(true)) {
            let _ = rx.await;
        }
    }
}

impl<W> Drop for Writer<W> {
    fn drop(&mut self) {
        let (tx, rx) = std::sync::mpsc::channel();
        let done = Box::new(move || {
            let _ = tx.send(());
        });
        if self.tx.send(Msg::Flush(done)).is_ok() {
            let _ = rx.recv_timeout(Duration::from_secs(5));
        }
    }
}

fn write_loop<B: Batcher>(
    mut conn: Connection,
    rx: Receiver<Msg<B::Write>>,
    path: &Path,
    options: &WriterOptions,
    mut batcher: B,
) {
    let batch = options.batch.max(1);
    let mut last_purge = Instant::now();
    let mut writes = Vec::with_capacity(batch);
    let mut flushes = Vec::new();
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Msg::Write(w) => writes.push(w),
                Msg::Flush(done) => flushes.push(done),
            }
            // Empty or disconnected: commit what was taken.
            if writes.len() < batch {
                next = rx.try_recv().ok();
            }
        }
        let purge = last_purge.elapsed() >= options.purge_every;
        let written = conn.transaction().and_then(|tx| {
            batcher.write(&tx, &writes, purge)?;
            tx.commit()
        });
        if let Err(e) = written {
            tracing::warn!(error = %e, path = %path.display(), store = options.name, "write to a local file failed; the batch is lost");
        }
        if purge {
            last_purge = Instant::now();
        }
        batcher.committed(&writes);
        writes.clear();
        // Answered after the commit (or its failure): flushes never hang.
        for done in flushes.drain(..) {
            done();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEMA: &str = "CREATE TABLE t (k TEXT PRIMARY KEY, v TEXT);";

    #[test]
    fn creates_then_reopens_and_refuses_other_versions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/dir/store.db");
        let conn = open(&path, SCHEMA, 3).unwrap();
        conn.execute("INSERT INTO t VALUES ('a', 'b')", []).unwrap();
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        drop(conn);

        // Reopened: the schema is not run again, the row is there.
        let conn = open(&path, SCHEMA, 3).unwrap();
        let v: String = reader(&path)
            .unwrap()
            .query_row("SELECT v FROM t WHERE k = 'a'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, "b");
        drop(conn);

        let e = open(&path, SCHEMA, 4).unwrap_err();
        assert!(
            matches!(
                e,
                OpenError::Version {
                    found: 3,
                    expected: 4,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("store.db"), "{e}");
    }

    #[test]
    fn an_unwritable_place_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "not a folder").unwrap();
        let e = open(&file.join("store.db"), SCHEMA, 1).unwrap_err();
        assert!(matches!(e, OpenError::Open { .. }), "{e}");
        assert!(e.to_string().contains("file/store.db"), "{e}");
    }

    /// Keeps `(k, v)` pairs; records which batches it saw.
    struct Pairs(std::sync::Arc<std::sync::Mutex<Vec<usize>>>);

    impl Batcher for Pairs {
        type Write = (String, String);
        fn write(
            &mut self,
            tx: &Transaction<'_>,
            writes: &[Self::Write],
            _purge: bool,
        ) -> rusqlite::Result<()> {
            for (k, v) in writes {
                tx.execute("INSERT OR REPLACE INTO t VALUES (?1, ?2)", [k, v])?;
            }
            Ok(())
        }
        fn committed(&mut self, writes: &[Self::Write]) {
            self.0.lock().unwrap().push(writes.len());
        }
    }

    #[tokio::test]
    async fn the_writer_commits_in_batches_and_flushes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let seen = std::sync::Arc::default();
        let options = WriterOptions {
            name: "test-writer",
            capacity: 4,
            batch: 3,
            purge_every: Duration::from_secs(60),
        };
        let w = Writer::spawn(
            open(&path, SCHEMA, 1).unwrap(),
            &path,
            options,
            Pairs(std::sync::Arc::clone(&seen)),
        )
        .unwrap();
        for i in 0..10 {
            // More than the queue holds: `send` waits for room.
            w.send((format!("k{i}"), format!("v{i}"))).await.unwrap();
        }
        w.flush().await;
        let n: i64 = reader(&path)
            .unwrap()
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 10);
        let batches = seen.lock().unwrap().clone();
        assert_eq!(batches.iter().sum::<usize>(), 10);
        assert!(batches.iter().all(|&b| b <= 3), "{batches:?}");

        // Dropping writes what is queued.
        w.try_send(("last".into(), "x".into())).unwrap();
        drop(w);
        let v: String = reader(&path)
            .unwrap()
            .query_row("SELECT v FROM t WHERE k = 'last'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, "x");
    }
}
