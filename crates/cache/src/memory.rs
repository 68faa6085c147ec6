//! The in-memory backend: moka's concurrent cache, bounded by the bytes it
//! holds (a weigher), with a time to live per entry.
//!
//! moka expires entries on its own clock (wall time), which tokio's paused
//! test time cannot drive; so each entry also carries its expiry on tokio's
//! clock, checked on read. moka's expiry still frees the memory.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::time::Instant;

use crate::{Cache, CacheError, Key, Stored};

/// Bookkeeping per entry counted on top of its bytes by the weigher.
const ENTRY_OVERHEAD: usize = 96;

#[derive(Clone)]
struct Entry {
    value: Bytes,
    ttl: Duration,
    expires: Instant,
}

struct PerEntryTtl;

impl moka::Expiry<Key, Entry> for PerEntryTtl {
    fn expire_after_create(
        &self,
        _key: &Key,
        value: &Entry,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }

    fn expire_after_update(
        &self,
        _key: &Key,
        value: &Entry,
        _updated_at: std::time::Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// Entries in process memory, evicted when their bytes pass
/// `max_memory_bytes` (least recently and least frequently used first) or
/// their TTL runs out.
pub struct MemoryCache {
    inner: moka::future::Cache<Key, Entry>,
    max_entry_bytes: usize,
}

impl MemoryCache {
    pub fn new(max_memory_bytes: u64, max_entry_bytes: u64) -> Self {
        let inner = moka::future::Cache::builder()
            .max_capacity(max_memory_bytes)
            .weigher(|_k: &Key, e: &Entry| {
                u32::try_from(e.value.len() + ENTRY_OVERHEAD).unwrap_or(u32::MAX)
            })
            .expire_after(PerEntryTtl)
            .build();
        Self {
            inner,
            max_entry_bytes: usize::try_from(max_entry_bytes).unwrap_or(usize::MAX),
        }
    }

    /// Runs moka's pending maintenance (evictions); for tests and metrics.
    pub async fn sync(&self) {
        self.inner.run_pending_tasks().await;
    }

    /// The bytes held, as the weigher counts them (after [`Self::sync`]).
    pub fn weighted_size(&self) -> u64 {
        self.inner.weighted_size()
    }
}

#[async_trait]
impl Cache for MemoryCache {
    async fn get(&self, key: &Key) -> Result<Option<Bytes>, CacheError> {
        let Some(entry) = self.inner.get(key).await else {
            return Ok(None);
        };
        if Instant::now() >= entry.expires {
            self.inner.invalidate(key).await;
            return Ok(None);
        }
        Ok(Some(entry.value))
    }

    async fn put(&self, key: Key, value: Bytes, ttl: Duration) -> Result<Stored, CacheError> {
        if value.len() > self.max_entry_bytes {
            return Ok(Stored::TooLarge);
        }
        let entry = Entry {
            value,
            ttl,
            expires: Instant::now() + ttl,
        };
        self.inner.insert(key, entry).await;
        Ok(Stored::Stored)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn key(n: u8) -> Key {
        Key([n; 32])
    }

    #[tokio::test(start_paused = true)]
    async fn entries_expire_after_their_ttl() {
        let c = MemoryCache::new(1 << 20, 1 << 10);
        c.put(key(1), Bytes::from_static(b"one"), Duration::from_secs(60))
            .await
            .unwrap();
        c.put(
            key(2),
            Bytes::from_static(b"two"),
            Duration::from_secs(3600),
        )
        .await
        .unwrap();
        assert_eq!(c.get(&key(1)).await.unwrap().as_deref(), Some(&b"one"[..]));
        tokio::time::advance(Duration::from_secs(59)).await;
        assert!(c.get(&key(1)).await.unwrap().is_some());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(c.get(&key(1)).await.unwrap(), None);
        assert!(c.get(&key(2)).await.unwrap().is_some());
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert_eq!(c.get(&key(2)).await.unwrap(), None);
    }

    #[tokio::test]
    async fn entries_over_the_maximum_size_are_not_kept() {
        let c = MemoryCache::new(1 << 20, 8);
        let ttl = Duration::from_secs(60);
        assert_eq!(
            c.put(key(1), Bytes::from_static(b"12345678"), ttl)
                .await
                .unwrap(),
            Stored::Stored
        );
        assert_eq!(
            c.put(key(2), Bytes::from_static(b"123456789"), ttl)
                .await
                .unwrap(),
            Stored::TooLarge
        );
        assert!(c.get(&key(1)).await.unwrap().is_some());
        assert_eq!(c.get(&key(2)).await.unwrap(), None);
    }

    #[tokio::test]
    async fn memory_is_bounded_by_the_weigher() {
        let max = 10 * (1000 + ENTRY_OVERHEAD as u64);
        let c = MemoryCache::new(max, 1 << 20);
        for n in 0..50u8 {
            c.put(key(n), Bytes::from(vec![n; 1000]), Duration::from_secs(60))
                .await
                .unwrap();
        }
        c.sync().await;
        assert!(c.weighted_size() <= max, "{}", c.weighted_size());
    }
}
