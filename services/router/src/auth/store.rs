//! Where virtual keys are kept ([`KeyStore`]): a SQLite file of this
//! process (`switchyard serve`), or a JetStream key-value bucket every
//! router shares and watches, so a key made or revoked on one router
//! counts on all of them within milliseconds.
//!
//! Records are never deleted: revoking sets `revoked_at`, so a revoked
//! key's usage still has a name, and an old key cannot be brought back by
//! replaying its creation.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};
use futures_util::StreamExt;
use rusqlite::{Connection, params};
use switchyard_auth::{KeyRecord, Keyring};
use switchyard_localdb as localdb;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    #[error("key file: {0}")]
    File(#[from] localdb::OpenError),
    #[error("key file {path}: {message}")]
    Io { path: PathBuf, message: String },
    #[error("cannot open the key bucket `{bucket}` (is JetStream enabled on NATS?): {message}")]
    Bucket { bucket: String, message: String },
    #[error("the key store failed: {0}")]
    Backend(String),
    #[error("`auth.keys.store: jetstream` needs a NATS bus (`bus.nats_url`)")]
    NoBus,
}

#[async_trait::async_trait]
pub trait KeyStore: Send + Sync {
    /// Writes a record (new, or changed: a revocation). Returns once it is
    /// durable; the keyring is updated by the caller or the watch.
    async fn put(&self, record: &KeyRecord) -> Result<(), KeyStoreError>;
    fn describe(&self) -> String;
}

const SCHEMA_VERSION: i64 = 1;
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS keys (
    id     TEXT PRIMARY KEY,
    record TEXT NOT NULL
) WITHOUT ROWID;
";

pub struct LocalKeyStore {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

impl LocalKeyStore {
    /// Opens (creating) the file and loads every record into `ring`.
    pub fn open(path: &Path, ring: &Keyring) -> Result<Self, KeyStoreError> {
        let conn = localdb::open(path, SCHEMA, SCHEMA_VERSION)?;
        let io = |e: rusqlite::Error| KeyStoreError::Io {
            path: path.to_owned(),
            message: e.to_string(),
        };
        {
            let mut stmt = conn.prepare("SELECT record FROM keys").map_err(io)?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(0)).map_err(io)?;
            for row in rows {
                let text = row.map_err(io)?;
                match serde_json::from_str::<KeyRecord>(&text) {
                    Ok(rec) => ring.upsert(rec),
                    Err(e) => {
                        tracing::error!(error = %e, path = %path.display(), "a key record cannot be read; it is ignored")
                    }
                }
            }
        }
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            path: path.to_owned(),
        })
    }
}

#[async_trait::async_trait]
impl KeyStore for LocalKeyStore {
    async fn put(&self, record: &KeyRecord) -> Result<(), KeyStoreError> {
        let text =
            serde_json::to_string(record).map_err(|e| KeyStoreError::Backend(e.to_string()))?;
        let conn = self.conn.clone();
        let id = record.id.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            conn.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .execute(
                    "INSERT INTO keys (id, record) VALUES (?1, ?2)
                     ON CONFLICT (id) DO UPDATE SET record = excluded.record",
                    params![id, text],
                )
                .map(|_| ())
                .map_err(|e| KeyStoreError::Io {
                    path,
                    message: e.to_string(),
                })
        })
        .await
        .map_err(|e| KeyStoreError::Backend(e.to_string()))?
    }

    fn describe(&self) -> String {
        format!("file {}", self.path.display())
    }
}

/// The hash secret of a local store: the configured one, else the one kept
/// in `keys.secret` beside the key file (made on first start, owner-only).
/// Apart from the key file, so a copy of that file alone does not let
/// anyone test guesses.
pub fn local_hash_secret(key_file: &Path) -> Result<String, KeyStoreError> {
    let path = key_file.with_extension("secret");
    let io = |e: std::io::Error| KeyStoreError::Io {
        path: path.clone(),
        message: e.to_string(),
    };
    match std::fs::read_to_string(&path) {
        Ok(s) if s.trim().len() >= 32 => return Ok(s.trim().to_owned()),
        Ok(_) => {
            return Err(KeyStoreError::Io {
                path: path.clone(),
                message: "shorter than 32 bytes; restore it from a backup (keys made with it no longer match otherwise)".into(),
            });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let secret = switchyard_auth::keys::random_secret()
        .map_err(|e| KeyStoreError::Backend(e.to_string()))?;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    use std::io::Write;
    let mut f = opts.open(&path).map_err(io)?;
    f.write_all(secret.as_bytes()).map_err(io)?;
    Ok(secret)
}

/// Bound on every call to the bucket.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

pub struct JetStreamKeyStore {
    kv: kv::Store,
    bucket: String,
}

impl JetStreamKeyStore {
    /// Creates the bucket (or updates its settings), loads every record
    /// into `ring`, and keeps it current with the bucket's updates until
    /// `shutdown`.
    pub async fn open(
        client: async_nats::Client,
        bucket: &str,
        replicas: usize,
        ring: Arc<Keyring>,
        shutdown: CancellationToken,
    ) -> Result<Self, KeyStoreError> {
        let js = jetstream::new(client);
        let fail = |message: String| KeyStoreError::Bucket {
            bucket: bucket.to_owned(),
            message,
        };
        // Made by hand, as the response bucket is: the client's
        // `create_key_value` cannot parse nats-server 2.9's account info.
        let config = stream::Config {
            name: format!("KV_{bucket}"),
            description: Some("switchyard: virtual keys (hashes only)".to_owned()),
            subjects: vec![format!("$KV.{bucket}.>")],
            max_messages_per_subject: 1,
            num_replicas: replicas,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            discard: stream::DiscardPolicy::New,
            ..Default::default()
        };
        let timed = |what: &'static str| format!("no answer within {CALL_TIMEOUT:?} ({what})");
        tokio::time::timeout(CALL_TIMEOUT, js.create_or_update_stream(config))
            .await
            .map_err(|_| fail(timed("create")))?
            .map_err(|e| fail(e.to_string()))?;
        let kv = tokio::time::timeout(CALL_TIMEOUT, js.get_key_value(bucket.to_owned()))
            .await
            .map_err(|_| fail(timed("open")))?
            .map_err(|e| fail(e.to_string()))?;
        // The watch starts at each key's latest value, so nothing written
        // between the load and the watch is missed; records are applied
        // whole, so seeing one twice is harmless.
        let mut watch = tokio::time::timeout(CALL_TIMEOUT, kv.watch_with_history(">"))
            .await
            .map_err(|_| fail(timed("watch")))?
            .map_err(|e| fail(e.to_string()))?;
        // Load to the end of the history before serving (an empty bucket
        // delivers nothing, so its size says whether to wait at all).
        let status = tokio::time::timeout(CALL_TIMEOUT, kv.status())
            .await
            .map_err(|_| fail(timed("status")))?
            .map_err(|e| fail(e.to_string()))?;
        let mut pending = status.values() > 0;
        while pending {
            match tokio::time::timeout(CALL_TIMEOUT, watch.next()).await {
                Err(_) => return Err(fail(timed("load"))),
                Ok(None) => return Err(fail("the watch ended".into())),
                Ok(Some(Err(e))) => return Err(fail(e.to_string())),
                Ok(Some(Ok(entry))) => {
                    apply(&ring, &entry);
                    pending = entry.delta > 0;
                }
            }
        }
        let name = bucket.to_owned();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    entry = watch.next() => match entry {
                        Some(Ok(entry)) => apply(&ring, &entry),
                        Some(Err(e)) => tracing::warn!(bucket = %name, error = %e, "key bucket watch error"),
                        None => {
                            tracing::error!(bucket = %name, "key bucket watch ended: keys made or revoked on other routers are not seen until restart");
                            return;
                        }
                    }
                }
            }
        });
        Ok(Self {
            kv,
            bucket: bucket.to_owned(),
        })
    }
}

fn apply(ring: &Keyring, entry: &kv::Entry) {
    if entry.operation != kv::Operation::Put {
        return;
    }
    match serde_json::from_slice::<KeyRecord>(&entry.value) {
        Ok(rec) => ring.upsert(rec),
        Err(e) => {
            tracing::error!(key = %entry.key, error = %e, "a key record cannot be read; it is ignored")
        }
    }
}

#[async_trait::async_trait]
impl KeyStore for JetStreamKeyStore {
    async fn put(&self, record: &KeyRecord) -> Result<(), KeyStoreError> {
        let bytes =
            serde_json::to_vec(record).map_err(|e| KeyStoreError::Backend(e.to_string()))?;
        tokio::time::timeout(CALL_TIMEOUT, self.kv.put(record.id.clone(), bytes.into()))
            .await
            .map_err(|_| KeyStoreError::Backend(format!("no answer within {CALL_TIMEOUT:?}")))?
            .map_err(|e| KeyStoreError::Backend(e.to_string()))?;
        Ok(())
    }

    fn describe(&self) -> String {
        format!("JetStream key-value bucket {}", self.bucket)
    }
}
