//! Stored Responses API responses (`responses.store`), so a request can
//! continue one with `previous_response_id`, and `GET` / `DELETE
//! /v1/responses/{id}` find it.
//!
//! A record holds the whole conversation up to its response: the earlier
//! turns' items (`history`, copied from the response it continued), this
//! turn's input as the client sent it, and the `response` object answered
//! (its `output` items). So continuing reads one record, and a
//! conversation kept alive keeps working after its first turns expired or
//! were deleted; `responses.max_bytes_per_response` bounds the copy.
//!
//! Records are kept per tenant (the credential's hash, as the cache keys
//! them): one caller cannot read, continue or delete another's responses,
//! and to it they do not exist (404).
//!
//! Backends ([`ResponseStore`]) keep opaque bytes under (tenant, id) for
//! `responses.ttl`: [`local::LocalStore`], a SQLite file written off the
//! request path (`switchyard serve`), and [`jetstream::JetStreamStore`], a
//! key-value bucket every router shares (scaled out).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use switchyard_config::{Config, ResponseStoreKind};

pub mod jetstream;
pub mod local;

pub use jetstream::JetStreamStore;
pub use local::LocalStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("response file: {0}")]
    File(#[from] switchyard_localdb::OpenError),
    #[error("`responses.store: jetstream` needs a NATS bus (`bus.nats_url`)")]
    NoBus,
    #[error(
        "cannot open the response bucket `{bucket}` (is JetStream enabled on NATS?): {message}"
    )]
    Bucket { bucket: String, message: String },
    #[error("the response store failed: {0}")]
    Backend(String),
    #[error("the response store did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the stored record is {size} bytes, over `responses.max_bytes_per_response` ({limit})")]
    TooLarge { size: usize, limit: u64 },
    #[error("a stored record cannot be read: {0}")]
    Corrupt(String),
}

/// Where records live: opaque bytes under (tenant, id), for the store's
/// TTL. A missing record and an expired one are the same `None`.
#[async_trait::async_trait]
pub trait ResponseStore: Send + Sync {
    async fn put(&self, tenant: &str, id: &str, record: Bytes) -> Result<(), StoreError>;
    async fn get(&self, tenant: &str, id: &str) -> Result<Option<Bytes>, StoreError>;
    /// `true` when there was a record to delete.
    async fn delete(&self, tenant: &str, id: &str) -> Result<bool, StoreError>;
    /// Which backend, for logs.
    fn describe(&self) -> String;
}

/// One stored response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredResponse {
    pub id: String,
    pub created_at: i64,
    pub model: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_response_id: Option<String>,
    /// The conversation before this turn: every earlier turn's input and
    /// output items, oldest first.
    #[serde(default)]
    pub history: Vec<Value>,
    /// This turn's `input` items as the client sent them (a string input
    /// as one user message; `instructions` are not kept: they are not
    /// inherited).
    #[serde(default)]
    pub input: Vec<Value>,
    /// The `response` object the client got.
    pub response: Value,
}

impl StoredResponse {
    /// The items a continuation puts before its own input: the history,
    /// this turn's input, and this response's output.
    pub fn conversation(&self) -> Vec<Value> {
        let output = self
            .response
            .get("output")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let mut all = Vec::with_capacity(self.history.len() + self.input.len() + output.len());
        all.extend_from_slice(&self.history);
        all.extend_from_slice(&self.input);
        all.extend_from_slice(output);
        all
    }
}

/// The configured store with its limits: what the HTTP handlers use.
pub struct Responses {
    backend: Arc<dyn ResponseStore>,
    max_bytes: u64,
}

impl Responses {
    pub fn new(backend: Arc<dyn ResponseStore>, max_bytes: u64) -> Self {
        Responses { backend, max_bytes }
    }

    /// Opens the store `responses.store` names (`None`: off). `nats` is
    /// the bus's connection when there is one.
    pub async fn open(
        config: &Config,
        nats: Option<async_nats::Client>,
    ) -> Result<Option<Arc<Responses>>, StoreError> {
        let r = &config.responses;
        let kind = match r.store {
            ResponseStoreKind::Off => return Ok(None),
            ResponseStoreKind::Auto if nats.is_some() => ResponseStoreKind::Jetstream,
            ResponseStoreKind::Auto => ResponseStoreKind::Local,
            k => k,
        };
        let backend: Arc<dyn ResponseStore> = if kind == ResponseStoreKind::Local {
            let path = r
                .path
                .clone()
                .unwrap_or_else(|| switchyard_config::data_dir().join("responses.db"));
            Arc::new(LocalStore::open(&path, r.ttl)?)
        } else {
            let client = nats.ok_or(StoreError::NoBus)?;
            Arc::new(JetStreamStore::open(client, &jetstream::settings(r)).await?)
        };
        tracing::info!(store = %backend.describe(), ttl = %humantime::format_duration(r.ttl), "responses are stored");
        Ok(Some(Arc::new(Responses::new(
            backend,
            r.max_bytes_per_response,
        ))))
    }

    /// The record as bytes, or [`StoreError::TooLarge`]: checked before the
    /// answer is sent, so the client is told `store: false` when it will
    /// not be kept.
    pub fn encode(&self, record: &StoredResponse) -> Result<Bytes, StoreError> {
        let bytes = serde_json::to_vec(record).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > self.max_bytes {
            return Err(StoreError::TooLarge {
                size: bytes.len(),
                limit: self.max_bytes,
            });
        }
        Ok(Bytes::from(bytes))
    }

    pub async fn put(&self, tenant: &str, id: &str, record: Bytes) -> Result<(), StoreError> {
        self.backend.put(tenant, id, record).await
    }

    pub async fn get(&self, tenant: &str, id: &str) -> Result<Option<StoredResponse>, StoreError> {
        if !valid_id(id) {
            return Ok(None);
        }
        match self.backend.get(tenant, id).await? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| StoreError::Corrupt(format!("{id}: {e}"))),
        }
    }

    pub async fn delete(&self, tenant: &str, id: &str) -> Result<bool, StoreError> {
        if !valid_id(id) {
            return Ok(false);
        }
        self.backend.delete(tenant, id).await
    }
}

/// Ids this gateway hands out (`resp_` and letters, digits, `-`, `_`);
/// anything else cannot be stored, so is not looked up (nor put in a
/// bucket key).
fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 200
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// A new response id, unique across routers (they share one bucket).
pub fn new_id() -> String {
    format!("resp_{}", uuid::Uuid::new_v4().simple())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use serde_json::json;

    /// What every backend must do: keep per tenant, replace, delete,
    /// forget after the TTL.
    pub(crate) async fn behaves_as_a_store(store: Arc<dyn ResponseStore>, ttl: Duration) {
        let r = Responses::new(store, 1 << 20);
        let record = StoredResponse {
            id: new_id(),
            created_at: 1,
            model: "m".into(),
            previous_response_id: None,
            history: vec![],
            input: vec![json!({"type": "message", "role": "user", "content": "hi"})],
            response: json!({"id": "x", "output": [{"type": "message", "role": "assistant",
                "content": [{"type": "output_text", "text": "hello"}]}]}),
        };
        let id = record.id.clone();
        r.put("key:a", &id, r.encode(&record).unwrap())
            .await
            .unwrap();
        assert_eq!(r.get("key:a", &id).await.unwrap(), Some(record.clone()));
        assert_eq!(r.get("anonymous", &id).await.unwrap(), None, "other tenant");
        assert_eq!(r.get("key:a", "resp_nope").await.unwrap(), None);
        assert_eq!(r.get("key:a", "../etc").await.unwrap(), None);
        assert_eq!(record.conversation().len(), 2);
        assert!(!r.delete("anonymous", &id).await.unwrap());
        assert!(r.delete("key:a", &id).await.unwrap());
        assert_eq!(r.get("key:a", &id).await.unwrap(), None);
        assert!(!r.delete("key:a", &id).await.unwrap());

        let other = StoredResponse {
            id: new_id(),
            ..record
        };
        r.put("key:a", &other.id, r.encode(&other).unwrap())
            .await
            .unwrap();
        tokio::time::sleep(ttl + Duration::from_millis(1500)).await;
        assert_eq!(r.get("key:a", &other.id).await.unwrap(), None, "expired");

        let small = Responses::new(Arc::new(NoStore), 10);
        assert!(matches!(
            small.encode(&other),
            Err(StoreError::TooLarge { limit: 10, .. })
        ));
    }

    struct NoStore;

    #[async_trait::async_trait]
    impl ResponseStore for NoStore {
        async fn put(&self, _: &str, _: &str, _: Bytes) -> Result<(), StoreError> {
            Ok(())
        }
        async fn get(&self, _: &str, _: &str) -> Result<Option<Bytes>, StoreError> {
            Ok(None)
        }
        async fn delete(&self, _: &str, _: &str) -> Result<bool, StoreError> {
            Ok(false)
        }
        fn describe(&self) -> String {
            "none".into()
        }
    }
}
