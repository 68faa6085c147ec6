//! The scaled-out response store (`responses.store: jetstream`, or `auto`
//! with a bus): a JetStream key-value bucket on the bus's NATS, shared by
//! every router, so a conversation continues whichever router the next
//! request lands on.
//!
//! The bucket's `max_age` is `responses.ttl` (NATS expires records, no
//! sweeper here), its largest value `responses.max_bytes_per_response`,
//! and it keeps one revision per key. It is created, or its settings
//! brought up to the config's, at start. A put is acknowledged by the
//! server before the client gets its answer: the next request may read it
//! from another router at once.

use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};
use bytes::Bytes;
use switchyard_config::ResponsesConfig;

use super::{ResponseStore, StoreError};

/// Bound on every call to the bucket.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// The bucket's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct BucketSettings {
    pub bucket: String,
    pub ttl: Duration,
    pub max_value_bytes: u64,
    pub replicas: usize,
}

pub(crate) fn settings(r: &ResponsesConfig) -> BucketSettings {
    BucketSettings {
        bucket: r.bucket.clone(),
        ttl: r.ttl,
        max_value_bytes: r.max_bytes_per_response,
        replicas: r.replicas,
    }
}

pub struct JetStreamStore {
    kv: kv::Store,
    bucket: String,
}

impl JetStreamStore {
    /// Creates the bucket, or updates its settings to these.
    pub async fn open(
        client: async_nats::Client,
        settings: &BucketSettings,
    ) -> Result<Self, StoreError> {
        let js = jetstream::new(client);
        let fail = |message: String| StoreError::Bucket {
            bucket: settings.bucket.clone(),
            message,
        };
        // The stream a key-value bucket is, made by hand: the client's
        // `create_key_value` first asks for the account's details, whose
        // answer it cannot parse from nats-server 2.9. Same settings as
        // the client's: one revision per key, rollups, direct gets.
        let stream = stream::Config {
            name: format!("KV_{}", settings.bucket),
            description: Some(
                "switchyard: stored Responses API responses (previous_response_id)".to_owned(),
            ),
            subjects: vec![format!("$KV.{}.>", settings.bucket)],
            max_messages_per_subject: 1,
            max_age: settings.ttl,
            max_message_size: i32::try_from(settings.max_value_bytes).unwrap_or(i32::MAX),
            num_replicas: settings.replicas,
            allow_rollup: true,
            deny_delete: true,
            deny_purge: false,
            allow_direct: true,
            discard: stream::DiscardPolicy::New,
            ..Default::default()
        };
        tokio::time::timeout(CALL_TIMEOUT, js.create_or_update_stream(stream))
            .await
            .map_err(|_| fail(format!("no answer within {CALL_TIMEOUT:?}")))?
            .map_err(|e| fail(e.to_string()))?;
        let kv = tokio::time::timeout(CALL_TIMEOUT, js.get_key_value(settings.bucket.clone()))
            .await
            .map_err(|_| fail(format!("no answer within {CALL_TIMEOUT:?}")))?
            .map_err(|e| fail(e.to_string()))?;
        Ok(JetStreamStore {
            kv,
            bucket: settings.bucket.clone(),
        })
    }
}

/// `<tenant>.<id>`: key-value keys take letters, digits and `-/_=.`; the
/// tenant (`anonymous` or `key:<hex>`) has its `:` made `_` (neither form
/// has a `_` of its own, so two tenants never share a key), and ids were
/// checked by the caller.
fn key(tenant: &str, id: &str) -> String {
    let tenant: String = tenant
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("{tenant}.{id}")
}

async fn bounded<T, E: std::fmt::Display>(
    call: impl Future<Output = Result<T, E>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(CALL_TIMEOUT, call)
        .await
        .map_err(|_| StoreError::Timeout(CALL_TIMEOUT))?
        .map_err(|e| StoreError::Backend(e.to_string()))
}

#[async_trait::async_trait]
impl ResponseStore for JetStreamStore {
    async fn put(&self, tenant: &str, id: &str, record: Bytes) -> Result<(), StoreError> {
        bounded(self.kv.put(key(tenant, id), record)).await?;
        Ok(())
    }

    async fn get(&self, tenant: &str, id: &str) -> Result<Option<Bytes>, StoreError> {
        bounded(self.kv.get(key(tenant, id))).await
    }

    async fn delete(&self, tenant: &str, id: &str) -> Result<bool, StoreError> {
        let k = key(tenant, id);
        if bounded(self.kv.get(k.clone())).await?.is_none() {
            return Ok(false);
        }
        // Purge, not delete: the record's bytes leave the bucket now, not
        // at `max_age`.
        bounded(self.kv.purge(k)).await?;
        Ok(true)
    }

    fn describe(&self) -> String {
        format!("JetStream key-value bucket {}", self.bucket)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::Arc;

    use super::*;
    use switchyard_e2e::nats::NatsServer;

    fn settings(ttl: Duration) -> BucketSettings {
        BucketSettings {
            bucket: "test_responses".into(),
            ttl,
            max_value_bytes: 1 << 20,
            replicas: 1,
        }
    }

    #[tokio::test]
    async fn keeps_per_tenant_deletes_and_expires() {
        let nats = NatsServer::start().unwrap();
        let client = async_nats::connect(nats.url()).await.unwrap();
        let store = JetStreamStore::open(client.clone(), &settings(Duration::from_secs(1)))
            .await
            .unwrap();
        super::super::tests::behaves_as_a_store(Arc::new(store), Duration::from_secs(1)).await;

        // A second router opens the same bucket; a changed TTL is applied.
        let again = JetStreamStore::open(client.clone(), &settings(Duration::from_secs(3600)))
            .await
            .unwrap();
        let status = again.kv.status().await.unwrap();
        assert_eq!(status.max_age(), Duration::from_secs(3600));
        again
            .put("key:a", "resp_1", Bytes::from_static(b"{}"))
            .await
            .unwrap();
        let other = JetStreamStore::open(client, &settings(Duration::from_secs(3600)))
            .await
            .unwrap();
        assert_eq!(
            other.get("key:a", "resp_1").await.unwrap().as_deref(),
            Some(&b"{}"[..])
        );
    }

    #[test]
    fn keys_are_valid_and_apart_per_tenant() {
        assert_eq!(key("key:ab12", "resp_x"), "key_ab12.resp_x");
        assert_eq!(key("anonymous", "resp_x"), "anonymous.resp_x");
        assert_ne!(key("key:ab", "r"), key("anonymous", "r"));
    }
}
