//! The semantic cache's index: prompt embeddings per tenant and "bucket"
//! (the model and every parameter but the messages), each pointing at the
//! exact-cache key its answer is stored under.
//!
//! Search is brute force: the cosine similarity against every embedding
//! of the one bucket the request falls in (vectors are unit-normalised at
//! insert, so it is one dot product each). That is exact, has no index to
//! build or tune, and is fast enough for the bounded lists it runs over:
//! `max_bucket_entries` (1,000 by default) × 1,536 dimensions is about 1.5
//! million multiply-adds, well under a millisecond; an approximate index
//! (HNSW) pays off only for lists far longer than a per-tenant, per-model
//! cache holds, and brings a heavy dependency and approximate answers.
//!
//! Bounds: `max_bucket_entries` per bucket (its oldest embedding goes
//! first) and `max_entries` in all (the oldest overall goes first), so the
//! memory held is at most `max_entries` × dimensions × 4 bytes. Entries
//! also expire with the answer they point at (the TTL it was stored with).

use std::collections::{HashMap, VecDeque};
use std::sync::{PoisonError, RwLock};
use std::time::Duration;

use prost::Message as _;
use switchyard_proto::gateway::v1::content_part::Part;
use switchyard_proto::gateway::v1::{ChatSpec, Role};
use tokio::time::Instant;

use crate::Key;

/// A prompt that matched: the exact-cache key of its answer and how
/// similar it was.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SemanticMatch {
    pub key: Key,
    pub similarity: f32,
}

struct Slot {
    seq: u64,
    /// Unit length.
    vector: Box<[f32]>,
    key: Key,
    expires: Instant,
}

#[derive(Default)]
struct Inner {
    buckets: HashMap<Key, VecDeque<Slot>>,
    /// Insertion order over all buckets, for the global bound. May hold
    /// entries already gone from their bucket (replaced, expired, evicted
    /// by the bucket bound); those are skipped, and the queue is rebuilt
    /// when it grows past twice the live entries.
    order: VecDeque<(Key, u64)>,
    len: usize,
    seq: u64,
}

impl Inner {
    fn remove(&mut self, bucket: &Key, seq: u64) -> bool {
        let Some(slots) = self.buckets.get_mut(bucket) else {
            return false;
        };
        let Some(at) = slots.iter().position(|s| s.seq == seq) else {
            return false;
        };
        slots.remove(at);
        if slots.is_empty() {
            self.buckets.remove(bucket);
        }
        self.len -= 1;
        true
    }

    fn compact(&mut self) {
        let mut live: Vec<(Key, u64)> = self
            .buckets
            .iter()
            .flat_map(|(b, slots)| slots.iter().map(|s| (*b, s.seq)))
            .collect();
        live.sort_unstable_by_key(|(_, seq)| *seq);
        self.order = live.into();
    }
}

/// Prompt embeddings, bounded; see the module docs.
pub struct SemanticIndex {
    inner: RwLock<Inner>,
    max_entries: usize,
    max_bucket_entries: usize,
}

impl SemanticIndex {
    pub fn new(max_entries: usize, max_bucket_entries: usize) -> Self {
        Self {
            inner: RwLock::new(Inner::default()),
            max_entries: max_entries.max(1),
            max_bucket_entries: max_bucket_entries.max(1),
        }
    }

    /// The most similar unexpired prompt of `bucket` at or above
    /// `threshold`, if any. Embeddings of another length (the embedding
    /// model changed) never match.
    pub fn search(&self, bucket: &Key, vector: &[f32], threshold: f32) -> Option<SemanticMatch> {
        let query = normalized(vector)?;
        let now = Instant::now();
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        let slots = inner.buckets.get(bucket)?;
        let mut best: Option<SemanticMatch> = None;
        for s in slots {
            if s.vector.len() != query.len() || s.expires <= now {
                continue;
            }
            let similarity = dot(&s.vector, &query);
            if similarity >= threshold && best.is_none_or(|b| similarity > b.similarity) {
                best = Some(SemanticMatch {
                    key: s.key,
                    similarity,
                });
            }
        }
        best
    }

    /// Adds a prompt's embedding, pointing at the answer stored under
    /// `key` for `ttl`. A prompt already in the bucket with the same key
    /// is replaced.
    pub fn insert(&self, bucket: Key, vector: &[f32], key: Key, ttl: Duration) {
        let Some(vector) = normalized(vector) else {
            return;
        };
        let now = Instant::now();
        let mut guard = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        let inner = &mut *guard;
        inner.seq += 1;
        let seq = inner.seq;
        let slots = inner.buckets.entry(bucket).or_default();
        let before = slots.len();
        slots.retain(|s| s.key != key && s.expires > now);
        while slots.len() >= self.max_bucket_entries {
            slots.pop_front();
        }
        slots.push_back(Slot {
            seq,
            vector: vector.into_boxed_slice(),
            key,
            expires: now + ttl,
        });
        let removed = before + 1 - slots.len();
        inner.len = inner.len + 1 - removed;
        inner.order.push_back((bucket, seq));
        while inner.len > self.max_entries {
            let Some((b, s)) = inner.order.pop_front() else {
                break;
            };
            inner.remove(&b, s);
        }
        if inner.order.len() > 2 * inner.len.max(16) {
            inner.compact();
        }
    }

    /// Embeddings held.
    pub fn len(&self) -> usize {
        self.inner
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Eight partial sums, so the compiler can use SIMD lanes (a single running
/// float sum has to be added in order).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

/// `v` at unit length; `None` for an empty or zero (or non-finite) vector.
fn normalized(v: &[f32]) -> Option<Vec<f32>> {
    let norm = dot(v, v).sqrt();
    (norm.is_finite() && norm > 0.0).then(|| v.iter().map(|x| x / norm).collect())
}

/// The bucket of a chat request in `namespace`: everything that changes
/// the answer except the messages (the model asked, tools, response
/// format, sampling parameters, ...), so only requests that differ in
/// their prompt alone are compared. Cleared like [`crate::chat_key`]:
/// `user` and `include_usage`.
pub fn bucket_key(spec: &ChatSpec, namespace: &str) -> Key {
    let mut canonical = spec.clone();
    canonical.messages.clear();
    canonical.user.clear();
    canonical.include_usage = false;
    crate::key::digest(
        b"switchyard-cache/v1/semantic-bucket\0",
        namespace,
        &canonical.encode_to_vec(),
    )
}

/// The text of a conversation as it is embedded: one line per message,
/// `role: text` (with the participant name, tool calls and the call a tool
/// message answers). `None` when a message carries what text cannot stand
/// for (an image or another non-text part, provider-specific fields):
/// such requests are cached exactly only.
pub fn prompt_text(spec: &ChatSpec) -> Option<String> {
    let mut out = String::new();
    for m in &spec.messages {
        if m.extra.as_ref().is_some_and(|e| !e.fields.is_empty()) {
            return None;
        }
        let role = match Role::try_from(m.role).unwrap_or(Role::Unspecified) {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
            Role::Developer => "developer",
            Role::Unspecified => "unspecified",
        };
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(role);
        if !m.name.is_empty() {
            out.push('(');
            out.push_str(&m.name);
            out.push(')');
        }
        if !m.tool_call_id.is_empty() {
            out.push_str(" [answers ");
            out.push_str(&m.tool_call_id);
            out.push(']');
        }
        out.push_str(": ");
        for p in &m.content {
            match &p.part {
                Some(Part::Text(t)) => out.push_str(t),
                _ => return None,
            }
        }
        for t in &m.tool_calls {
            out.push_str(" [call ");
            out.push_str(&t.name);
            out.push('(');
            out.push_str(&t.arguments);
            out.push_str(")]");
        }
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use switchyard_proto::gateway::v1::{ContentPart, ImageUrl, Message};

    fn key(n: u8) -> Key {
        Key([n; 32])
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[tokio::test]
    async fn the_most_similar_prompt_at_or_above_the_threshold_matches() {
        let idx = SemanticIndex::new(100, 10);
        idx.insert(key(1), &[1.0, 0.0, 0.0], key(10), HOUR);
        idx.insert(key(1), &[0.8, 0.6, 0.0], key(11), HOUR);
        // Scale does not matter: cosine.
        let m = idx.search(&key(1), &[2.0, 0.1, 0.0], 0.9).unwrap();
        assert_eq!(m.key, key(10));
        assert!(m.similarity > 0.99 && m.similarity <= 1.0001, "{m:?}");
        let m = idx.search(&key(1), &[0.7, 0.7, 0.0], 0.9).unwrap();
        assert_eq!(m.key, key(11));
        assert!(idx.search(&key(1), &[0.0, 0.0, 1.0], 0.5).is_none());
        // Another bucket (tenant, parameters) sees none of them.
        assert!(idx.search(&key(2), &[1.0, 0.0, 0.0], 0.5).is_none());
        // Another length never matches; a zero vector neither.
        assert!(idx.search(&key(1), &[1.0, 0.0], 0.5).is_none());
        assert!(idx.search(&key(1), &[0.0, 0.0, 0.0], 0.0).is_none());
    }

    #[test]
    fn dot_products_of_any_length() {
        for n in [0usize, 1, 7, 8, 9, 16, 1536, 1539] {
            let a: Vec<f32> = (0..n).map(|i| (i % 5) as f32 - 2.0).collect();
            let b: Vec<f32> = (0..n).map(|i| (i % 3) as f32).collect();
            let want: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert_eq!(dot(&a, &b), want, "{n}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn entries_expire_with_their_answer() {
        let idx = SemanticIndex::new(100, 10);
        idx.insert(key(1), &[1.0, 0.0], key(10), Duration::from_secs(60));
        assert!(idx.search(&key(1), &[1.0, 0.0], 0.9).is_some());
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(idx.search(&key(1), &[1.0, 0.0], 0.9).is_none());
    }

    #[tokio::test]
    async fn bounds_evict_the_oldest() {
        let idx = SemanticIndex::new(5, 3);
        for n in 0..4u8 {
            idx.insert(key(1), &[1.0, f32::from(n)], key(n), HOUR);
        }
        assert_eq!(idx.len(), 3);
        // The first of bucket 1 went.
        assert_ne!(
            idx.search(&key(1), &[1.0, 0.0], 0.999).map(|m| m.key),
            Some(key(0))
        );
        for n in 10..13u8 {
            idx.insert(key(2), &[1.0, f32::from(n)], key(n), HOUR);
        }
        assert_eq!(idx.len(), 5);
        // The same answer again replaces its embedding.
        idx.insert(key(2), &[0.0, 1.0], key(12), HOUR);
        assert_eq!(idx.len(), 5);
        assert_eq!(
            idx.search(&key(2), &[0.0, 1.0], 0.999).map(|m| m.key),
            Some(key(12))
        );
        for n in 0..200u8 {
            idx.insert(key(3), &[1.0, f32::from(n)], key(n), HOUR);
        }
        // Bucket 3 is at its own bound, the oldest of bucket 2 went for
        // the global one.
        assert_eq!(idx.len(), 5);
        let inner = idx.inner.read().unwrap();
        assert_eq!(inner.buckets[&key(3)].len(), 3);
        assert_eq!(inner.buckets[&key(2)].len(), 2);
        assert!(inner.order.len() <= 2 * 16 + 1, "{}", inner.order.len());
        assert_eq!(inner.buckets.values().map(VecDeque::len).sum::<usize>(), 5);
    }

    fn text(role: Role, t: &str) -> Message {
        Message {
            role: role as i32,
            content: vec![ContentPart {
                part: Some(Part::Text(t.into())),
                extra: None,
            }],
            ..Message::default()
        }
    }

    #[test]
    fn prompt_text_and_buckets() {
        let spec = ChatSpec {
            model: "m".into(),
            messages: vec![text(Role::System, "be brief"), text(Role::User, "hi there")],
            temperature: Some(0.0),
            ..ChatSpec::default()
        };
        assert_eq!(
            prompt_text(&spec).as_deref(),
            Some("system: be brief\nuser: hi there")
        );
        let other_text = ChatSpec {
            messages: vec![text(Role::User, "something else")],
            user: "u".into(),
            ..spec.clone()
        };
        assert_eq!(bucket_key(&spec, "t"), bucket_key(&other_text, "t"));
        assert_ne!(bucket_key(&spec, "t"), bucket_key(&spec, "u"));
        let other_params = ChatSpec {
            max_tokens: Some(5),
            ..spec.clone()
        };
        assert_ne!(bucket_key(&spec, "t"), bucket_key(&other_params, "t"));
        let other_model = ChatSpec {
            model: "n".into(),
            ..spec.clone()
        };
        assert_ne!(bucket_key(&spec, "t"), bucket_key(&other_model, "t"));
        let mut image = spec.clone();
        image.messages[1].content.push(ContentPart {
            part: Some(Part::ImageUrl(ImageUrl {
                url: "https://x/y.png".into(),
                detail: String::new(),
            })),
            extra: None,
        });
        assert_eq!(prompt_text(&image), None);
        assert_eq!(prompt_text(&ChatSpec::default()), None);
    }
}
