//! The response cache as the gateway core uses it: one lookup before
//! routing ([`ResponseCache::lookup`]) and, on a miss, storing the fresh
//! answer ([`Store`]): a unary result when it arrives, a stream only once
//! it ended normally. Keys, entries, backends and the semantic index live
//! in `switchyard-cache`; docs/configuration.md ("Caching") has the
//! behaviour.
//!
//! The semantic cache (`cache.semantic`) runs inside the same lookup, after
//! the exact one missed: the prompt's text is embedded through the
//! gateway's own embeddings path (the core hands [`ResponseCache::lookup`]
//! a function for that), compared with the earlier prompts of the same
//! tenant and bucket (model and parameters), and the answer of the most
//! similar one at or above the threshold is served. A fresh answer's
//! embedding joins the index once the answer is stored.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use futures_util::StreamExt;
use switchyard_cache::entry::{self, CachedAnswer, CachedEmbedding, StreamAssembler};
use switchyard_cache::{Cache, Key, MemoryCache, RedisCache, SemanticIndex, Stored, semantic};
use switchyard_config::{CacheBackend, Config};
use switchyard_proto::gateway::v1::{
    ChatResult, ChatSpec, EmbedResult, EmbedSpec, Embedding, Usage,
};

use crate::attempts::AttemptLog;
use crate::core::{ChatStream, ServedBy, StreamItem};
use crate::metrics::Metrics;

/// Response header (and gRPC metadata) naming what the cache did, and the
/// request header that asks it to `skip` (neither read nor store) or
/// `refresh` (do not read, store the fresh answer).
pub const CACHE_HEADER: &str = "x-switchyard-cache";

/// Response header (and gRPC metadata) of a semantic hit: the cosine
/// similarity of the prompt whose answer was served, e.g. `0.9731`.
pub const SIMILARITY_HEADER: &str = "x-switchyard-cache-similarity";

/// What the cache did for a request; `Off` (no cache configured) sends no
/// header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CacheStatus {
    #[default]
    Off,
    Hit,
    /// Answered with the stored answer of a similar prompt.
    SemanticHit(Similarity),
    Miss,
    Skip,
}

impl CacheStatus {
    /// The `x-switchyard-cache` value: a semantic hit is a `hit` too.
    pub fn as_str(self) -> Option<&'static str> {
        match self {
            CacheStatus::Off => None,
            CacheStatus::Hit | CacheStatus::SemanticHit(_) => Some("hit"),
            CacheStatus::Miss => Some("miss"),
            CacheStatus::Skip => Some("skip"),
        }
    }

    /// The `x-switchyard-cache-similarity` value, on a semantic hit.
    pub fn similarity(self) -> Option<String> {
        match self {
            CacheStatus::SemanticHit(s) => Some(format!("{:.4}", s.0)),
            _ => None,
        }
    }

    /// The `result` label of `switchyard_cache_requests_total`.
    fn metric(self) -> Option<&'static str> {
        match self {
            CacheStatus::SemanticHit(_) => Some("semantic_hit"),
            other => other.as_str(),
        }
    }
}

/// A cosine similarity; equal when bit-for-bit equal (never NaN here).
#[derive(Debug, Clone, Copy)]
pub struct Similarity(pub f32);

impl PartialEq for Similarity {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}

impl Eq for Similarity {}

/// Who asks (the tenant namespace) and what the client allows the cache
/// to do with this request (`Cache-Control`, `x-switchyard-cache`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheRequest {
    pub tenant: String,
    pub lookup: bool,
    pub store: bool,
}

impl Default for CacheRequest {
    fn default() -> Self {
        Self {
            tenant: switchyard_cache::tenant(None),
            lookup: true,
            store: true,
        }
    }
}

impl CacheRequest {
    /// From request headers (HTTP) or metadata (gRPC), by lower-case name.
    /// The tenant is a hash of the credential (`Authorization: Bearer` or
    /// `x-api-key`); with virtual keys (issue 9) it becomes the key or team.
    pub fn from_headers<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Self {
        let credential = get("authorization")
            .map(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
                    .unwrap_or(v)
            })
            .or_else(|| get("x-api-key"));
        let mut req = CacheRequest {
            tenant: switchyard_cache::tenant(credential),
            ..CacheRequest::default()
        };
        if let Some(cc) = get("cache-control") {
            for d in cc.split(',').map(|d| d.trim().to_ascii_lowercase()) {
                match d.as_str() {
                    "no-store" => {
                        req.lookup = false;
                        req.store = false;
                    }
                    "no-cache" => req.lookup = false,
                    _ => {}
                }
            }
        }
        match get(CACHE_HEADER)
            .map(|v| v.trim().to_ascii_lowercase())
            .as_deref()
        {
            Some("skip") => {
                req.lookup = false;
                req.store = false;
            }
            Some("refresh") => req.lookup = false,
            _ => {}
        }
        req
    }
}

/// The settings that apply live (`models[].cache` reloads with the models).
struct Settings {
    ttl: Duration,
    cache_tool_calls: bool,
    cache_nonzero_temperature: bool,
    shared_namespace: Option<String>,
    /// Per model asked: `(enabled, ttl)` overrides.
    models: HashMap<String, (Option<bool>, Option<Duration>)>,
    /// `cache.semantic`, when enabled (the index itself is fixed at start).
    semantic: Option<SemanticSettings>,
}

struct SemanticSettings {
    embedding_model: String,
    threshold: f32,
    max_prompt_bytes: usize,
    timeout: Duration,
}

impl Settings {
    fn from_config(config: &Config) -> Self {
        let c = &config.cache;
        Self {
            ttl: c.ttl,
            cache_tool_calls: c.cache_tool_calls,
            cache_nonzero_temperature: c.cache_nonzero_temperature,
            shared_namespace: c.shared_namespace.clone(),
            models: config
                .models
                .iter()
                .filter_map(|m| {
                    let mc = m.cache.as_ref()?;
                    Some((m.name.clone(), (mc.enabled, mc.ttl)))
                })
                .collect(),
            semantic: c.semantic.enabled.then(|| SemanticSettings {
                embedding_model: c.semantic.embedding_model.trim().to_owned(),
                threshold: c.semantic.threshold as f32,
                max_prompt_bytes: c.semantic.max_prompt_bytes,
                timeout: c.semantic.timeout,
            }),
        }
    }
}

pub struct ResponseCache {
    backend: Arc<dyn Cache>,
    settings: ArcSwap<Settings>,
    metrics: Arc<Metrics>,
    /// The prompt embeddings, when `cache.semantic.enabled` at start.
    semantic: Option<Arc<SemanticIndex>>,
    /// The memory backend when it is written through to a file.
    persisted: Option<Arc<MemoryCache>>,
}

/// The semantic cache's way to embed a prompt: the gateway's own
/// embeddings path, given by the core. `None` when embedding failed (the
/// lookup then goes on as a miss).
pub(crate) trait Embedder {
    fn embed(&self, spec: EmbedSpec) -> impl Future<Output = Option<Vec<f32>>> + Send;
}

/// `cache.persist_path`, else `cache.db` in `$SWITCHYARD_DATA_DIR`, else
/// under the XDG data directory (where the local usage ledger is too).
pub fn persist_path(config: &Config) -> PathBuf {
    if let Some(p) = &config.cache.persist_path {
        return p.clone();
    }
    switchyard_config::data_dir().join("cache.db")
}

/// What the lookup found: the answer on a hit; otherwise what to store the
/// fresh answer under, when it may be stored.
pub(crate) enum Lookup {
    Hit(Box<(ServedBy, ChatResult)>),
    Miss(CacheStatus, Option<Store>),
}

impl ResponseCache {
    /// The cache `config` asks for, or `None` when `cache.enabled` is off.
    pub fn from_config(config: &Config, metrics: Arc<Metrics>) -> Option<Self> {
        let c = &config.cache;
        if !c.enabled {
            return None;
        }
        let mut persisted = None;
        let backend: Arc<dyn Cache> = match c.backend {
            CacheBackend::Memory if c.persist => {
                let path = persist_path(config);
                match MemoryCache::persistent(c.max_memory_bytes, c.max_entry_bytes, &path) {
                    Ok(m) => {
                        tracing::info!(path = %path.display(), "response cache persisted to a local file");
                        let m = Arc::new(m);
                        persisted = Some(m.clone());
                        m
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cache.persist: cannot use the file; the cache stays in memory only");
                        Arc::new(MemoryCache::new(c.max_memory_bytes, c.max_entry_bytes))
                    }
                }
            }
            CacheBackend::Memory => {
                Arc::new(MemoryCache::new(c.max_memory_bytes, c.max_entry_bytes))
            }
            CacheBackend::Redis => match RedisCache::new(
                &c.redis.url,
                &c.redis.key_prefix,
                c.redis.timeout,
                c.max_entry_bytes,
            ) {
                Ok(r) => Arc::new(r),
                Err(e) => {
                    tracing::error!(error = %e, "cannot use cache.redis: the response cache is off");
                    return None;
                }
            },
        };
        let semantic = c.semantic.enabled.then(|| {
            Arc::new(SemanticIndex::new(
                c.semantic.max_entries,
                c.semantic.max_bucket_entries,
            ))
        });
        Some(Self {
            backend,
            settings: ArcSwap::from_pointee(Settings::from_config(config)),
            metrics,
            semantic,
            persisted,
        })
    }

    /// Applies a new config's TTLs, rules and semantic settings. The
    /// backend, the persistence file and the semantic index's bounds stay
    /// as they started; turning `cache.semantic` on takes a restart.
    pub fn reload(&self, config: &Config) {
        self.settings.store(Arc::new(Settings::from_config(config)));
    }

    /// Waits until the entries stored so far are in the persistence file
    /// (no-op when not persisted); at shutdown.
    pub async fn flush(&self) {
        if let Some(m) = &self.persisted {
            m.flush().await;
        }
    }

    /// Before routing: the stored answer (exact, else a similar prompt's
    /// when the semantic cache is on), or how to store the fresh one.
    pub(crate) async fn lookup(
        &self,
        spec: &ChatSpec,
        req: &CacheRequest,
        embedder: &impl Embedder,
    ) -> Lookup {
        let settings = self.settings.load();
        let (enabled, ttl) = settings
            .models
            .get(&spec.model)
            .copied()
            .unwrap_or_default();
        // An absent temperature is the provider's default, which samples.
        let sampled = spec.temperature.is_none_or(|t| t > 0.0);
        if enabled == Some(false) || (sampled && !settings.cache_nonzero_temperature) {
            return self.counted(Lookup::Miss(CacheStatus::Skip, None));
        }
        let namespace = settings.shared_namespace.as_deref().unwrap_or(&req.tenant);
        let key = switchyard_cache::chat_key(spec, namespace);
        let store = req.store.then(|| Store {
            backend: self.backend.clone(),
            metrics: self.metrics.clone(),
            key,
            ttl: ttl.unwrap_or(settings.ttl),
            cache_tool_calls: settings.cache_tool_calls,
            semantic: None,
        });
        let mut failed = false;
        if req.lookup {
            match self.backend.get(&key).await {
                Ok(Some(bytes)) => {
                    if let Some(a) = entry::decode(&bytes) {
                        return self.counted(hit(a, CacheStatus::Hit));
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "cache lookup failed; answering as a miss");
                    failed = true;
                }
            }
        }
        let status = if req.lookup {
            CacheStatus::Miss
        } else {
            CacheStatus::Skip
        };
        let (found, store, semantic_failed) = match (&self.semantic, &settings.semantic) {
            (Some(index), Some(s)) if !failed => {
                self.semantic_lookup(index, s, spec, namespace, req, store, embedder)
                    .await
            }
            _ => (None, store, false),
        };
        if let Some(found) = found {
            return self.counted(found);
        }
        if failed || semantic_failed {
            self.metrics.cache_request("error");
            return Lookup::Miss(status, store);
        }
        self.counted(Lookup::Miss(status, store))
    }

    /// The semantic stage of a lookup the exact cache missed (or was told
    /// not to read): the prompt embedded, a similar prompt's answer when
    /// reading is allowed, and the embedding handed to the store so the
    /// fresh answer joins the index. Returns the hit, the store, and
    /// whether something failed (embedding, reading the answer).
    #[allow(clippy::too_many_arguments)]
    async fn semantic_lookup(
        &self,
        index: &Arc<SemanticIndex>,
        s: &SemanticSettings,
        spec: &ChatSpec,
        namespace: &str,
        req: &CacheRequest,
        store: Option<Store>,
        embedder: &impl Embedder,
    ) -> (Option<Lookup>, Option<Store>, bool) {
        // Neither reading nor storing: nothing to embed for.
        if !req.lookup && store.is_none() {
            return (None, store, false);
        }
        let Some(text) = semantic::prompt_text(spec).filter(|t| t.len() <= s.max_prompt_bytes)
        else {
            return (None, store, false);
        };
        let embed = EmbedSpec {
            model: s.embedding_model.clone(),
            inputs: vec![text],
            user: spec.user.clone(),
            ..EmbedSpec::default()
        };
        let vector = match tokio::time::timeout(s.timeout, embedder.embed(embed)).await {
            Ok(Some(v)) if !v.is_empty() => v,
            Ok(_) => return (None, store, true),
            Err(_) => {
                tracing::warn!(timeout = ?s.timeout, "semantic cache: embedding the prompt took too long; answering as a miss");
                return (None, store, true);
            }
        };
        let bucket = semantic::bucket_key(spec, namespace);
        if req.lookup
            && let Some(m) = index.search(&bucket, &vector, s.threshold)
        {
            match self.backend.get(&m.key).await {
                Ok(Some(bytes)) => {
                    if let Some(a) = entry::decode(&bytes) {
                        let similarity = Similarity(m.similarity.min(1.0));
                        switchyard_telemetry::set_attribute(
                            &tracing::Span::current(),
                            "switchyard.cache.similarity",
                            f64::from(similarity.0),
                        );
                        return (
                            Some(hit(a, CacheStatus::SemanticHit(similarity))),
                            None,
                            false,
                        );
                    }
                }
                // Evicted or expired since: an ordinary miss.
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "cache lookup failed; answering as a miss");
                    return (None, store, true);
                }
            }
        }
        let store = store.map(|st| Store {
            semantic: Some(SemanticStore {
                index: index.clone(),
                bucket,
                vector,
            }),
            ..st
        });
        (None, store, false)
    }

    /// Embeddings, per input: which inputs are stored, and how to store
    /// the others. Token inputs and models with the cache off bypass it
    /// (`skip`).
    pub(crate) async fn embed_lookup(&self, spec: &EmbedSpec, req: &CacheRequest) -> EmbedPlan {
        let settings = self.settings.load();
        let (enabled, ttl) = settings
            .models
            .get(&spec.model)
            .copied()
            .unwrap_or_default();
        let tokens = spec
            .extra
            .as_ref()
            .is_some_and(|e| e.fields.contains_key("input"));
        if enabled == Some(false) || tokens || spec.inputs.is_empty() {
            self.count(CacheStatus::Skip);
            return EmbedPlan::bypass(CacheStatus::Skip);
        }
        let namespace = settings.shared_namespace.as_deref().unwrap_or(&req.tenant);
        let keys: Vec<Key> = spec
            .inputs
            .iter()
            .map(|i| switchyard_cache::embed_item_key(spec, i, namespace))
            .collect();
        let mut cached = vec![None; keys.len()];
        let status = if req.lookup {
            for (slot, key) in cached.iter_mut().zip(&keys) {
                match self.backend.get(key).await {
                    Ok(Some(bytes)) => *slot = entry::decode_embedding(&bytes),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "cache lookup failed; answering as a miss");
                        self.metrics.cache_request("error");
                    }
                }
            }
            if cached.iter().all(Option::is_some) {
                CacheStatus::Hit
            } else {
                CacheStatus::Miss
            }
        } else {
            CacheStatus::Skip
        };
        self.count(status);
        EmbedPlan {
            status,
            bypass: false,
            cached,
            keys,
            store: req
                .store
                .then(|| (self.backend.clone(), ttl.unwrap_or(settings.ttl))),
        }
    }

    fn count(&self, status: CacheStatus) {
        if let Some(s) = status.metric() {
            self.metrics.cache_request(s);
            switchyard_telemetry::set_attribute(&tracing::Span::current(), "switchyard.cache", s);
        }
    }

    fn counted(&self, l: Lookup) -> Lookup {
        let status = match &l {
            Lookup::Hit(h) => h.0.cache,
            Lookup::Miss(s, _) => *s,
        };
        self.count(status);
        l
    }
}

/// A stored answer as the hit it is.
fn hit(a: CachedAnswer, cache: CacheStatus) -> Lookup {
    let served = ServedBy {
        provider: a.provider,
        upstream_model: a.upstream_model,
        attempts: AttemptLog::default(),
        warnings: Vec::new(),
        cache,
        cost: None,
        downgrade: None,
        rate: None,
    };
    Lookup::Hit(Box::new((served, a.result)))
}

/// An embeddings request's cached inputs, and where the others go once
/// upstream answered them.
pub(crate) struct EmbedPlan {
    status: CacheStatus,
    /// The request goes upstream as it is and its answer comes back as it
    /// is (no cache, or not cached).
    bypass: bool,
    /// Per input, in request order.
    cached: Vec<Option<CachedEmbedding>>,
    keys: Vec<Key>,
    store: Option<(Arc<dyn Cache>, Duration)>,
}

impl EmbedPlan {
    pub(crate) fn bypass(status: CacheStatus) -> Self {
        Self {
            status,
            bypass: true,
            cached: Vec::new(),
            keys: Vec::new(),
            store: None,
        }
    }

    pub(crate) fn status(&self) -> CacheStatus {
        self.status
    }

    /// The request upstream gets: only the inputs not cached, in order;
    /// `None` when every input was.
    pub(crate) fn uncached(&self, spec: &EmbedSpec) -> Option<EmbedSpec> {
        if self.bypass {
            return Some(spec.clone());
        }
        let inputs: Vec<String> = spec
            .inputs
            .iter()
            .zip(&self.cached)
            .filter(|(_, c)| c.is_none())
            .map(|(i, _)| i.clone())
            .collect();
        (!inputs.is_empty()).then(|| EmbedSpec {
            inputs,
            ..spec.clone()
        })
    }

    /// The answer when every input was cached: no tokens were sent.
    pub(crate) fn all_cached(self) -> (ServedBy, EmbedResult) {
        let first = self.cached.iter().flatten().next().cloned();
        let (provider, upstream_model, model) = first
            .map(|e| (e.provider, e.upstream_model, e.model))
            .unwrap_or_default();
        let data = self
            .cached
            .into_iter()
            .enumerate()
            .map(|(i, e)| Embedding {
                index: u32::try_from(i).unwrap_or(u32::MAX),
                vector: e.map(|e| e.vector).unwrap_or_default(),
            })
            .collect();
        let served = ServedBy {
            provider,
            upstream_model,
            attempts: AttemptLog::default(),
            warnings: Vec::new(),
            cache: CacheStatus::Hit,
            cost: None,
            downgrade: None,
            rate: None,
        };
        let result = EmbedResult {
            model,
            data,
            usage: Some(Usage::default()),
        };
        (served, result)
    }

    /// Upstream's answer for the uncached inputs merged with the cached
    /// ones, in request order with their request indices; usage is what was
    /// sent. The fresh vectors are stored in the background.
    pub(crate) async fn merge(self, served: &ServedBy, fresh: EmbedResult) -> EmbedResult {
        if self.bypass {
            return fresh;
        }
        let missing: Vec<usize> = (0..self.cached.len())
            .filter(|&i| self.cached[i].is_none())
            .collect();
        let mut vectors: Vec<Option<Vec<f32>>> = self
            .cached
            .into_iter()
            .map(|c| c.map(|e| e.vector))
            .collect();
        let mut puts = Vec::new();
        for e in fresh.data {
            let Some(&at) = usize::try_from(e.index).ok().and_then(|i| missing.get(i)) else {
                continue;
            };
            if self.store.is_some() {
                puts.push((
                    self.keys[at],
                    entry::encode_embedding(&CachedEmbedding {
                        provider: served.provider.clone(),
                        upstream_model: served.upstream_model.clone(),
                        model: fresh.model.clone(),
                        vector: e.vector.clone(),
                    }),
                ));
            }
            vectors[at] = Some(e.vector);
        }
        if let Some((backend, ttl)) = self.store {
            for (key, bytes) in puts {
                if let Err(e) = backend.put(key, bytes, ttl).await {
                    tracing::warn!(error = %e, "cache store failed");
                }
            }
        }
        EmbedResult {
            model: fresh.model,
            data: vectors
                .into_iter()
                .enumerate()
                .map(|(i, v)| Embedding {
                    index: u32::try_from(i).unwrap_or(u32::MAX),
                    vector: v.unwrap_or_default(),
                })
                .collect(),
            usage: fresh.usage,
        }
    }
}

/// Where a fresh answer goes once it is complete.
pub(crate) struct Store {
    backend: Arc<dyn Cache>,
    metrics: Arc<Metrics>,
    key: Key,
    ttl: Duration,
    cache_tool_calls: bool,
    /// The prompt's embedding, added to the semantic index once the answer
    /// is stored.
    semantic: Option<SemanticStore>,
}

struct SemanticStore {
    index: Arc<SemanticIndex>,
    bucket: Key,
    vector: Vec<f32>,
}

impl Store {
    /// Stores a complete answer before it is handed on, so the next
    /// identical request finds it. A slow backend holds the answer up by at
    /// most its bounded timeout (memory: no wait; Redis:
    /// `cache.redis.timeout`), and a failing one only counts an error.
    /// Answers that call tools only when configured.
    pub(crate) async fn result(self, served: &ServedBy, result: &ChatResult) {
        if entry::has_tool_calls(result) && !self.cache_tool_calls {
            return;
        }
        let bytes = entry::encode(&CachedAnswer {
            provider: served.provider.clone(),
            upstream_model: served.upstream_model.clone(),
            result: result.clone(),
        });
        match self.backend.put(self.key, bytes, self.ttl).await {
            Ok(Stored::Stored) => {
                if let Some(s) = self.semantic {
                    s.index.insert(s.bucket, &s.vector, self.key, self.ttl);
                }
            }
            Ok(Stored::TooLarge) => {
                tracing::debug!("answer over cache.max_entry_bytes: not cached")
            }
            Err(e) => {
                tracing::warn!(error = %e, "cache store failed");
                self.metrics.cache_request("error");
            }
        }
    }

    /// `events` as they are, collecting the answer; stored when the stream
    /// ends normally (`StreamItem::Done`), never when it failed or the
    /// client went away before its end.
    pub(crate) fn stream(self, served: &ServedBy, events: ChatStream) -> ChatStream {
        let served = served.clone();
        let pending = Arc::new(std::sync::Mutex::new(Some((
            self,
            StreamAssembler::default(),
        ))));
        // The end is handed on once the answer is stored: a client that
        // saw `[DONE]` finds it cached.
        Box::pin(events.then(move |item| {
            let pending = pending.clone();
            let served = served.clone();
            async move {
                let done = match &item {
                    StreamItem::Chunk(c) => {
                        if let Ok(mut p) = pending.lock()
                            && let Some((_, a)) = p.as_mut()
                        {
                            a.push(c);
                        }
                        None
                    }
                    StreamItem::Done(usage) => pending
                        .lock()
                        .ok()
                        .and_then(|mut p| p.take())
                        .map(|(store, a)| (store, a.finish(*usage))),
                    StreamItem::Failed(_) => {
                        if let Ok(mut p) = pending.lock() {
                            *p = None;
                        }
                        None
                    }
                };
                if let Some((store, result)) = done {
                    store.result(&served, &result).await;
                }
                item
            }
        }))
    }
}

/// A stored answer replayed as the stream a live answer would be: the
/// chunks, then its end with the stored usage (the front end renders the
/// usage chunk when the client asked for it).
pub(crate) fn replay(result: &ChatResult) -> ChatStream {
    let mut items: Vec<StreamItem> = entry::replay_chunks(result)
        .into_iter()
        .map(StreamItem::Chunk)
        .collect();
    items.push(StreamItem::Done(result.usage));
    Box::pin(futures_util::stream::iter(items))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn req(pairs: &[(&'static str, &'static str)]) -> CacheRequest {
        CacheRequest::from_headers(|name| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| *v))
    }

    #[test]
    fn a_semantic_hit_is_a_hit_with_its_similarity() {
        let s = CacheStatus::SemanticHit(Similarity(0.973_14));
        assert_eq!(s.as_str(), Some("hit"));
        assert_eq!(s.metric(), Some("semantic_hit"));
        assert_eq!(s.similarity().as_deref(), Some("0.9731"));
        assert_eq!(CacheStatus::Hit.similarity(), None);
        assert_eq!(CacheStatus::Hit.metric(), Some("hit"));
        assert_eq!(CacheStatus::Off.metric(), None);
    }

    #[test]
    fn request_headers_control_the_cache() {
        let plain = req(&[]);
        assert_eq!((plain.lookup, plain.store), (true, true));
        assert_eq!(plain.tenant, "anonymous");
        let r = req(&[("cache-control", "no-cache")]);
        assert_eq!((r.lookup, r.store), (false, true));
        let r = req(&[("cache-control", "max-age=0, No-Store")]);
        assert_eq!((r.lookup, r.store), (false, false));
        let r = req(&[(CACHE_HEADER, "skip")]);
        assert_eq!((r.lookup, r.store), (false, false));
        let r = req(&[(CACHE_HEADER, "refresh")]);
        assert_eq!((r.lookup, r.store), (false, true));
        let a = req(&[("authorization", "Bearer sk-a")]);
        let b = req(&[("x-api-key", "sk-a")]);
        let c = req(&[("authorization", "Bearer sk-c")]);
        assert_eq!(a.tenant, b.tenant);
        assert_ne!(a.tenant, c.tenant);
        assert_ne!(a.tenant, plain.tenant);
    }
}
