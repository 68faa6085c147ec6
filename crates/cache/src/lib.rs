//! The exact-match response cache: the key a request is cached under (a
//! SHA-256 of the canonical request with what does not change the answer
//! removed, plus the tenant's namespace), the [`Cache`] trait the router
//! stores entries through, its in-memory backend ([`MemoryCache`]) and the
//! shared one ([`RedisCache`]).
//!
//! The memory backend can be written through to a local SQLite file
//! (`persist`), and [`semantic`] holds the semantic cache's prompt
//! embeddings.
//!
//! Entries are opaque bytes to the backends; [`entry`] encodes the chat
//! answers the router stores (a canonical `ChatResult`), and assembles a
//! streamed answer into one.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

pub mod entry;
mod key;
mod memory;
mod persist;
mod redis_backend;
pub mod semantic;

pub use key::{Key, chat_key, embed_item_key, tenant};
pub use memory::MemoryCache;
pub use persist::{CacheFile, LoadedEntry, PersistError};
pub use redis_backend::RedisCache;
pub use semantic::{SemanticIndex, SemanticMatch};

/// A backend failed (never for a plain miss): callers treat it as a miss.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheError(pub String);

impl std::fmt::Display for CacheError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cache backend failed: {}", self.0)
    }
}

impl std::error::Error for CacheError {}

/// What `put` did with an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    Stored,
    /// Over the backend's maximum entry size: not kept.
    TooLarge,
}

/// A response cache. Entries are bytes with a time to live; a backend may
/// evict earlier (memory pressure), never serve later.
#[async_trait]
pub trait Cache: Send + Sync {
    async fn get(&self, key: &Key) -> Result<Option<Bytes>, CacheError>;
    async fn put(&self, key: Key, value: Bytes, ttl: Duration) -> Result<Stored, CacheError>;
}
