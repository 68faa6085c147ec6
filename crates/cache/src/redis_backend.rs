//! The shared backend: Redis, so every router sees one cache. Each call is
//! bounded by `timeout`; a slow or dead Redis gives an error (the router
//! answers it as a miss and counts it), never a slow or failed request.
//! After a failed connection attempt, calls fail at once for a second
//! instead of each waiting out the timeout.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use redis::aio::ConnectionManager;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::{Cache, CacheError, Key, Stored};

const RECONNECT_AFTER: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Conn {
    manager: Option<ConnectionManager>,
    failed_at: Option<Instant>,
}

pub struct RedisCache {
    client: redis::Client,
    conn: Mutex<Conn>,
    prefix: String,
    timeout: Duration,
    max_entry_bytes: usize,
}

impl RedisCache {
    /// Connects lazily, on first use: a Redis that is down at start does
    /// not stop the router.
    pub fn new(
        url: &str,
        prefix: &str,
        timeout: Duration,
        max_entry_bytes: u64,
    ) -> Result<Self, CacheError> {
        let client = redis::Client::open(url).map_err(|e| CacheError(e.to_string()))?;
        Ok(Self {
            client,
            conn: Mutex::new(Conn::default()),
            prefix: prefix.to_owned(),
            timeout,
            max_entry_bytes: usize::try_from(max_entry_bytes).unwrap_or(usize::MAX),
        })
    }

    /// The Redis key of an entry.
    pub fn redis_key(&self, key: &Key) -> String {
        format!("{}{}", self.prefix, key.hex())
    }

    async fn connection(&self) -> Result<ConnectionManager, CacheError> {
        let mut conn = self.conn.lock().await;
        if let Some(m) = &conn.manager {
            return Ok(m.clone());
        }
        if conn
            .failed_at
            .is_some_and(|t| t.elapsed() < RECONNECT_AFTER)
        {
            return Err(CacheError("redis unreachable (retrying shortly)".into()));
        }
        let connect = ConnectionManager::new(self.client.clone());
        match tokio::time::timeout(self.timeout, connect).await {
            Ok(Ok(m)) => {
                conn.manager = Some(m.clone());
                conn.failed_at = None;
                Ok(m)
            }
            Ok(Err(e)) => {
                conn.failed_at = Some(Instant::now());
                Err(CacheError(format!("redis connect: {e}")))
            }
            Err(_) => {
                conn.failed_at = Some(Instant::now());
                Err(CacheError(format!(
                    "redis connect: no answer within {:?}",
                    self.timeout
                )))
            }
        }
    }

    async fn bounded<T>(&self, cmd: redis::Cmd) -> Result<T, CacheError>
    where
        T: redis::FromRedisValue,
    {
        let mut conn = self.connection().await?;
        match tokio::time::timeout(self.timeout, cmd.query_async::<T>(&mut conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(CacheError(format!("redis: {e}"))),
            Err(_) => Err(CacheError(format!(
                "redis: no answer within {:?}",
                self.timeout
            ))),
        }
    }
}

#[async_trait]
impl Cache for RedisCache {
    async fn get(&self, key: &Key) -> Result<Option<Bytes>, CacheError> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.redis_key(key));
        let v: Option<Vec<u8>> = self.bounded(cmd).await?;
        Ok(v.map(Bytes::from))
    }

    async fn put(&self, key: Key, value: Bytes, ttl: Duration) -> Result<Stored, CacheError> {
        if value.len() > self.max_entry_bytes {
            return Ok(Stored::TooLarge);
        }
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.redis_key(&key))
            .arg(value.as_ref())
            .arg("PX")
            .arg(ms);
        let () = self.bounded(cmd).await?;
        Ok(Stored::Stored)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    const URL: &str = "redis://127.0.0.1:6379";

    fn prefix() -> String {
        format!(
            "switchyard-test:{}:{}:",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        )
    }

    async fn cleanup(c: &RedisCache, keys: &[Key]) {
        let mut cmd = redis::cmd("DEL");
        for k in keys {
            cmd.arg(c.redis_key(k));
        }
        let _: Result<i64, _> = c.bounded(cmd).await;
    }

    #[tokio::test]
    async fn stores_and_reads_with_a_ttl_and_a_size_limit() {
        let c = RedisCache::new(URL, &prefix(), Duration::from_secs(2), 8).unwrap();
        let (a, b) = (Key([1; 32]), Key([2; 32]));
        assert_eq!(c.get(&a).await.unwrap(), None);
        let stored = c
            .put(a, Bytes::from_static(b"12345678"), Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(stored, Stored::Stored);
        let too_large = c
            .put(b, Bytes::from_static(b"123456789"), Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(too_large, Stored::TooLarge);
        assert_eq!(c.get(&a).await.unwrap().as_deref(), Some(&b"12345678"[..]));
        assert_eq!(c.get(&b).await.unwrap(), None);
        let mut pttl = redis::cmd("PTTL");
        pttl.arg(c.redis_key(&a));
        let ms: i64 = c.bounded(pttl).await.unwrap();
        assert!((59_000..=60_000).contains(&ms), "{ms}");
        cleanup(&c, &[a, b]).await;
        assert_eq!(c.get(&a).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_dead_server_fails_fast_and_bounded() {
        // Nothing listens on port 1.
        let c = RedisCache::new(
            "redis://127.0.0.1:1",
            &prefix(),
            Duration::from_millis(200),
            1024,
        )
        .unwrap();
        let started = std::time::Instant::now();
        assert!(c.get(&Key([1; 32])).await.is_err());
        let put = c
            .put(
                Key([1; 32]),
                Bytes::from_static(b"x"),
                Duration::from_secs(1),
            )
            .await;
        assert!(put.is_err());
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
    }
}
