//! The in-memory backend: moka's concurrent cache, bounded by the bytes it
//! holds (a weigher), with a time to live per entry.
//!
//! moka expires entries on its own clock (wall time), which tokio's paused
//! test time cannot drive; so each entry also carries its expiry on tokio's
//! clock, checked on read. moka's expiry still frees the memory.

use std::path::Path;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use moka::notification::RemovalCause;
use tokio::sync::OnceCell;
use tokio::time::Instant;

use crate::persist::{CacheFile, LoadedEntry, PersistError};
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
/// their TTL runs out; optionally written through to a file
/// ([`MemoryCache::persistent`]).
pub struct MemoryCache {
    inner: moka::future::Cache<Key, Entry>,
    max_entry_bytes: usize,
    /// Declared after `inner`: the eviction listener's queue handle goes
    /// first, then the file writes what is queued.
    persist: Option<Persist>,
}

struct Persist {
    file: CacheFile,
    /// Entries read from the file at start, put into memory on first use
    /// (moka's inserts are async; the constructor is not).
    loaded: OnceCell<()>,
    pending: std::sync::Mutex<Vec<LoadedEntry>>,
}

impl MemoryCache {
    pub fn new(max_memory_bytes: u64, max_entry_bytes: u64) -> Self {
        Self::build(max_memory_bytes, max_entry_bytes, None)
    }

    /// A memory cache written through to the SQLite file at `path` (off
    /// the request path: a background thread writes in batches), starting
    /// with the file's unexpired entries and the time they have left.
    pub fn persistent(
        max_memory_bytes: u64,
        max_entry_bytes: u64,
        path: &Path,
    ) -> Result<Self, PersistError> {
        let (file, loaded) = CacheFile::open(path)?;
        Ok(Self::build(
            max_memory_bytes,
            max_entry_bytes,
            Some(Persist {
                file,
                loaded: OnceCell::new(),
                pending: std::sync::Mutex::new(loaded),
            }),
        ))
    }

    fn build(max_memory_bytes: u64, max_entry_bytes: u64, persist: Option<Persist>) -> Self {
        let mut builder = moka::future::Cache::builder()
            .max_capacity(max_memory_bytes)
            .weigher(|_k: &Key, e: &Entry| {
                u32::try_from(e.value.len() + ENTRY_OVERHEAD).unwrap_or(u32::MAX)
            })
            .expire_after(PerEntryTtl);
        if let Some(p) = &persist {
            // What leaves memory (size, expiry, invalidation) leaves the
            // file; a replaced entry was rewritten by its put.
            let writer = p.file.writer();
            builder = builder.eviction_listener(move |key: Arc<Key>, _e, cause| {
                if cause != RemovalCause::Replaced {
                    writer.delete(*key);
                }
            });
        }
        Self {
            inner: builder.build(),
            max_entry_bytes: usize::try_from(max_entry_bytes).unwrap_or(usize::MAX),
            persist,
        }
    }

    /// Puts the entries read from the file into memory, once.
    async fn ensure_loaded(&self) {
        let Some(p) = &self.persist else {
            return;
        };
        p.loaded
            .get_or_init(|| async {
                let entries =
                    std::mem::take(&mut *p.pending.lock().unwrap_or_else(PoisonError::into_inner));
                let now = Instant::now();
                for e in entries {
                    let entry = Entry {
                        value: e.value,
                        ttl: e.remaining,
                        expires: now + e.remaining,
                    };
                    self.inner.insert(e.key, entry).await;
                }
            })
            .await;
    }

    /// Waits until every entry stored so far is in the file (no-op when
    /// not persisted).
    pub async fn flush(&self) {
        if let Some(p) = &self.persist {
            p.file.flush().await;
        }
    }

    /// Entries not written to the file because its writer was behind.
    pub fn persist_dropped(&self) -> u64 {
        self.persist.as_ref().map_or(0, |p| p.file.dropped())
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
        self.ensure_loaded().await;
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
        self.ensure_loaded().await;
        if let Some(p) = &self.persist {
            p.file.writer().put(key, value.clone(), ttl);
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
    async fn a_persistent_cache_starts_with_what_it_held() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache.db");
        let ttl = Duration::from_secs(600);
        {
            let c = MemoryCache::persistent(1 << 20, 1 << 10, &path).unwrap();
            c.put(key(1), Bytes::from_static(b"one"), ttl)
                .await
                .unwrap();
            c.put(key(2), Bytes::from_static(b"two"), ttl)
                .await
                .unwrap();
            c.put(key(3), Bytes::from(vec![0; 2048]), ttl)
                .await
                .unwrap();
            c.flush().await;
        }
        let c = MemoryCache::persistent(1 << 20, 1 << 10, &path).unwrap();
        assert_eq!(c.get(&key(1)).await.unwrap().as_deref(), Some(&b"one"[..]));
        assert_eq!(c.get(&key(2)).await.unwrap().as_deref(), Some(&b"two"[..]));
        // Too large: never stored, so never written.
        assert_eq!(c.get(&key(3)).await.unwrap(), None);
        assert_eq!(c.persist_dropped(), 0);
    }

    #[tokio::test]
    async fn entries_evicted_from_memory_leave_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache.db");
        let max = 4 * (1000 + ENTRY_OVERHEAD as u64);
        {
            let c = MemoryCache::persistent(max, 1 << 20, &path).unwrap();
            for n in 0..40u8 {
                c.put(key(n), Bytes::from(vec![n; 1000]), Duration::from_secs(60))
                    .await
                    .unwrap();
            }
            c.sync().await;
            c.flush().await;
        }
        let (_file, loaded) = CacheFile::open(&path).unwrap();
        assert!(loaded.len() <= 4, "{}", loaded.len());
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
