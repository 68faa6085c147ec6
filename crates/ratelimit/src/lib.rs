//! Requests-per-minute and tokens-per-minute limits per virtual key, team,
//! user, model or for the whole deployment, shared by every router.
//!
//! # Semantics
//!
//! - A [`Rule`] limits requests (`rpm`), tokens (`tpm`) or both, over a
//!   sliding window of one minute (see `window.rs` for why per-second
//!   slots). A rule applies to a request when the request has a value
//!   for the rule's [`Dimension`] and, if the rule names a value, it is
//!   that one. A rule without a value counts each value apart (each team
//!   its own counter).
//! - [`Limiter::admit`] counts one request against every rule that
//!   applies, unless one of them is exhausted, in which case nothing is
//!   counted and [`Limited`] names the rule and when to retry.
//! - Tokens are only known after the answer, so, as OpenAI does, TPM is
//!   enforced at admission against the tokens already counted in the
//!   window (a request is refused once the window's tokens are at or over
//!   the limit) and [`Limiter::record_tokens`] counts the answer's tokens
//!   when they are known. A burst of large requests admitted while the
//!   window still had room can thus overshoot a TPM limit by what those
//!   requests use; the next ones wait until the window frees again.
//!
//! # Use
//!
//! ```
//! use switchyard_ratelimit::{Dimension, Limiter, Rule, Subject};
//!
//! let limiter = Limiter::new(vec![Rule {
//!     name: "per-team".into(),
//!     dimension: Dimension::Team,
//!     value: None,
//!     rpm: Some(600),
//!     tpm: Some(100_000),
//! }]);
//! let who = Subject { key: Some("vk-1"), team: Some("red"), user: None, model: "gpt-4o", roles: &[] };
//! let now = tokio::time::Instant::now();
//! match limiter.admit(&who, &[], now) {
//!     // Send `h.pairs()` with the answer.
//!     Ok(admitted) => assert_eq!(admitted.headers.and_then(|h| h.requests).map(|r| r.remaining), Some(599)),
//!     // Answer 429 with `limited.header_pairs()` and `limited.to_string()`.
//!     Err(limited) => unreachable!("{limited}"),
//! }
//! // Once the answer's usage is known:
//! limiter.record_tokens(&who, &[], 1234, now);
//! ```
//!
//! # Sharing between routers
//!
//! Every router admits on its own counters, without a network round trip;
//! [`spawn_sync`] publishes the counts it added every `interval` (default
//! 100 ms) and adds the other routers' into its own, per (rule, value,
//! Unix second). A router thus sees the others' traffic up to `interval`
//! plus the NATS latency late.
//!
//! Left at that, near a full window every router would admit blindly for
//! the whole lag, and the deployment would overshoot by the other
//! routers' rate times the lag: at 1,000 req/s over 2 routers with
//! 100 ms, ~50 requests (measured: 648 admitted for a limit of 600). So
//! on a counter other routers also counted into within the last 2 s, a
//! router admits, between two publications, at most its even share of
//! the room left as last shared: with `R` routers sharing (heard from
//! within the last 2 s or 20 intervals), a window holding `used` of which
//! `pending` are its own unpublished counts, it admits while
//! `pending < ceil((limit - (used - pending)) / R)`. The shares add up to
//! the room, so what the others admit meanwhile fits in theirs; the
//! remaining error is counts in flight (NATS latency, sub-millisecond on
//! a LAN), the rounding up (at most `R - 1` over the limit), and routers
//! whose traffic on a counter starts or resumes (not yet seen there, so
//! not sharing: at most one interval of their traffic). Measured: 603
//! admitted for 600 in the same test. Far from the limit the share is
//! larger than anything a router admits in one interval and changes
//! nothing. Near it, only counters with traffic on several routers are
//! split (a client of one router, with a small per-key limit, can use it
//! all at once), and a router taking most of a split counter's traffic
//! approaches the limit by halving the room every interval: it
//! under-admits for a few intervals, never over. A refusal by share has
//! `retry_after` of one interval and reports the `remaining` the window
//! really has.
//!
//! Windows are per-second slots (see `window.rs`): a count stays in the
//! window between 59 and 60 s, which lets through at most one second's
//! worth (1.7 % of a steady rate) more in any 60 s span. Slots are Unix
//! seconds, so routers' clocks must agree within a fraction of a second
//! (NTP does).
//!
//! # Hot path
//!
//! Counters live in a map split in [`SHARDS`] shards by the hash of
//! (rule, dimension, value), each behind its own mutex held only while
//! one counter is read and bumped: no lock covers all subjects. Lookups
//! borrow the request's strings (no allocation); a counter is allocated
//! once, when its value is first seen, and evicted once idle for more
//! than two windows.

mod headers;
mod sync;
mod window;

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher, RandomState};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

pub use headers::{Figures, RateHeaders, format_duration};
pub use sync::{DEFAULT_SYNC_INTERVAL, SyncError, spawn_sync};

use window::{Counter, Quantity, Usage, WINDOW_SECS};

/// A counter other routers counted into within this many seconds is
/// shared: this router admits only its share of the room left on it.
const SHARED_RECENTLY_SECS: u32 = 2;

/// Shards of the counter map: enough that concurrent admissions for
/// different subjects rarely meet on a lock.
pub const SHARDS: usize = 64;

/// A counter not hit for more than this many seconds is dropped, so rules
/// that count each value apart do not grow without bound.
const IDLE_EVICT_SECS: u32 = 2 * WINDOW_SECS;

/// What a rule counts by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dimension {
    /// The whole deployment, one counter.
    Global,
    /// The virtual key.
    Key,
    Team,
    User,
    /// The model name the client asked for.
    Model,
    /// A role the caller has (from its key or token). Role rules name
    /// their role: a caller has several, each counted in its own rule.
    Role,
}

/// One limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Names the rule in 429 answers and logs; with the dimension and the
    /// value it identifies the counters, so keep it stable across
    /// reloads. Rules passed as `extra` (e.g. a virtual key's own limits)
    /// should use names distinct from the configured ones.
    pub name: String,
    pub dimension: Dimension,
    /// `Some`: only that value, one counter. `None`: every value, each
    /// with its own counter. Ignored for [`Dimension::Global`]; required
    /// for [`Dimension::Role`] (a rule without one never applies).
    pub value: Option<String>,
    /// Requests per minute.
    pub rpm: Option<u64>,
    /// Tokens (prompt + completion) per minute.
    pub tpm: Option<u64>,
}

impl Rule {
    /// The counter this rule counts the request in, if it applies.
    fn key_for<'a>(&'a self, subject: &Subject<'a>) -> Option<KeyRef<'a>> {
        Some(KeyRef {
            rule: &self.name,
            dimension: self.dimension,
            value: self.value_for(subject)?,
        })
    }

    /// The value this rule counts the request under, if it applies.
    fn value_for<'a>(&'a self, subject: &Subject<'a>) -> Option<&'a str> {
        if self.rpm.is_none() && self.tpm.is_none() {
            return None;
        }
        let actual = match self.dimension {
            Dimension::Global => return Some(""),
            Dimension::Role => {
                let role = self.value.as_deref()?;
                return subject.roles.iter().any(|r| r == role).then_some(role);
            }
            Dimension::Key => subject.key?,
            Dimension::Team => subject.team?,
            Dimension::User => subject.user?,
            Dimension::Model => subject.model,
        };
        match &self.value {
            Some(v) if v != actual => None,
            _ => Some(actual),
        }
    }
}

/// Who a request is from and what it asks for. Every distinct value a
/// per-value rule sees becomes a counter (about 1.3 KB) for two to three
/// minutes, so pass authenticated identities and a model name that
/// resolved to a configured model, not whatever a client sent.
#[derive(Clone, Copy, Debug)]
pub struct Subject<'a> {
    pub key: Option<&'a str>,
    pub team: Option<&'a str>,
    pub user: Option<&'a str>,
    pub model: &'a str,
    /// The caller's roles.
    pub roles: &'a [String],
}

/// A request let through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admitted {
    /// The tightest applying limits' figures, after this request; `None`
    /// when no rule applied.
    pub headers: Option<RateHeaders>,
}

/// Which quantity ran out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exhausted {
    Requests,
    Tokens,
}

impl std::fmt::Display for Exhausted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Exhausted::Requests => "requests",
            Exhausted::Tokens => "tokens",
        })
    }
}

/// A request refused: answer 429 with `retry-after` and the headers.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("rate limit `{rule}` reached: {limit} {what} per minute; retry after {}", format_duration(*.retry_after))]
pub struct Limited {
    /// The rule that refused (the first exhausted one, configured rules
    /// before `extra` ones).
    pub rule: String,
    pub what: Exhausted,
    /// That rule's limit of `what`.
    pub limit: u64,
    /// When the oldest counted capacity frees enough for a request to
    /// pass that rule (the longer of the two if both its requests and
    /// tokens are exhausted); one sync interval if this router has only
    /// used up its share of the room left (see the crate docs).
    pub retry_after: Duration,
    /// The refusing rule's figures.
    pub headers: RateHeaders,
}

impl Limited {
    /// The `retry-after` header value: whole seconds, rounded up and at
    /// least 1 (0 would invite an immediate retry).
    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after.as_secs_f64().ceil().max(1.0) as u64
    }

    /// The rate-limit headers plus `retry-after`, for the 429 answer.
    pub fn header_pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = self.headers.pairs();
        pairs.push(("retry-after", self.retry_after_secs().to_string()));
        pairs
    }
}

// ---------------------------------------------------------------------------
// Counter keys, borrowed for lookups.
//
// The key is hashed once per lookup (SipHash with a per-process random
// key, as the counted values come from clients): the hash picks the shard
// and is stored with the key, and the shard's map uses it as is.

#[derive(Clone, Debug)]
struct CounterKey {
    hash: u64,
    rule: Box<str>,
    dimension: Dimension,
    value: Box<str>,
}

#[derive(Clone, Copy)]
struct KeyRef<'a> {
    rule: &'a str,
    dimension: Dimension,
    value: &'a str,
}

/// A [`KeyRef`] with its hash, as the map is searched with.
#[derive(Clone, Copy)]
struct Lookup<'a> {
    hash: u64,
    key: KeyRef<'a>,
}

/// Lets the map be searched with borrowed strings ([`Lookup`]) while
/// storing owned [`CounterKey`]s: both hash and compare through this view.
trait AsKey {
    fn hash_value(&self) -> u64;
    fn key(&self) -> KeyRef<'_>;
}

impl AsKey for CounterKey {
    fn hash_value(&self) -> u64 {
        self.hash
    }

    fn key(&self) -> KeyRef<'_> {
        KeyRef {
            rule: &self.rule,
            dimension: self.dimension,
            value: &self.value,
        }
    }
}

impl AsKey for Lookup<'_> {
    fn hash_value(&self) -> u64 {
        self.hash
    }

    fn key(&self) -> KeyRef<'_> {
        self.key
    }
}

impl Hash for dyn AsKey + '_ {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash_value());
    }
}

impl PartialEq for dyn AsKey + '_ {
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (self.key(), other.key());
        self.hash_value() == other.hash_value()
            && a.rule == b.rule
            && a.dimension == b.dimension
            && a.value == b.value
    }
}

impl Eq for dyn AsKey + '_ {}

impl Hash for CounterKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (self as &dyn AsKey).hash(state);
    }
}

impl PartialEq for CounterKey {
    fn eq(&self, other: &Self) -> bool {
        (self as &dyn AsKey) == (other as &dyn AsKey)
    }
}

impl Eq for CounterKey {}

impl<'a> Borrow<dyn AsKey + 'a> for CounterKey {
    fn borrow(&self) -> &(dyn AsKey + 'a) {
        self
    }
}

impl Lookup<'_> {
    fn to_owned_key(self) -> CounterKey {
        CounterKey {
            hash: self.hash,
            rule: self.key.rule.into(),
            dimension: self.key.dimension,
            value: self.key.value.into(),
        }
    }
}

/// The shard maps' hasher: keys arrive hashed already.
#[derive(Default)]
struct PreHashed(u64);

impl Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Not called: keys hash with `write_u64` only. Kept correct anyway.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

// ---------------------------------------------------------------------------
// Clock

/// Maps the monotonic [`Instant`]s callers pass to Unix milliseconds, so
/// every router buckets the same moment in the same second while tests
/// can drive time (tokio's paused clock, or explicit instants).
#[derive(Clone, Copy)]
struct Clock {
    origin: Instant,
    origin_unix_ms: u64,
}

impl Clock {
    fn unix_ms(&self, now: Instant) -> u64 {
        let after = now.saturating_duration_since(self.origin);
        let before = self.origin.saturating_duration_since(now);
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        self.origin_unix_ms
            .saturating_add(ms(after))
            .saturating_sub(ms(before))
    }
}

/// The Unix second of a Unix millisecond time, as slots store it (u32
/// lasts until 2106).
fn second_of(unix_ms: u64) -> u32 {
    u32::try_from(unix_ms / 1000).unwrap_or(u32::MAX)
}

/// How long from `unix_ms` until the start of Unix second `sec`.
fn until_second(unix_ms: u64, sec: u32) -> Duration {
    Duration::from_millis((u64::from(sec) * 1000).saturating_sub(unix_ms))
}

// ---------------------------------------------------------------------------
// Limiter

type Shard = HashMap<CounterKey, Counter, BuildHasherDefault<PreHashed>>;

/// The limits of one router process. `Send + Sync`; share it with `Arc`.
pub struct Limiter {
    rules: ArcSwap<Vec<Rule>>,
    shards: Box<[Mutex<Shard>]>,
    shard_hasher: RandomState,
    clock: Clock,
    /// The Unix second from which the next admission sweeps idle counters.
    next_sweep: AtomicU32,
    /// Other routers heard from recently (set by the sync task).
    pub(crate) peers: AtomicU32,
    /// The sync task's interval, in milliseconds.
    pub(crate) sync_interval_ms: AtomicU64,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("rules", &self.rules.load().len())
            .finish_non_exhaustive()
    }
}

/// The outcome of one rule at admission.
enum Check {
    Pass(RateHeaders),
    Refuse(Limited),
}

impl Limiter {
    pub fn new(rules: Vec<Rule>) -> Self {
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Self::with_clock(rules, Instant::now(), unix_ms)
    }

    /// A limiter whose clock reads `origin_unix_ms` at `origin`: tests pin
    /// the second boundaries with it.
    pub(crate) fn with_clock(rules: Vec<Rule>, origin: Instant, origin_unix_ms: u64) -> Self {
        Limiter {
            rules: ArcSwap::from_pointee(rules),
            shards: (0..SHARDS)
                .map(|_| Mutex::new(HashMap::default()))
                .collect(),
            shard_hasher: RandomState::new(),
            clock: Clock {
                origin,
                origin_unix_ms,
            },
            next_sweep: AtomicU32::new(0),
            peers: AtomicU32::new(0),
            sync_interval_ms: AtomicU64::new(
                u64::try_from(DEFAULT_SYNC_INTERVAL.as_millis()).unwrap_or(100),
            ),
        }
    }

    /// Replaces the configured rules (config reload). Counters are keyed
    /// by rule name, dimension and value, so those of rules that keep
    /// their name and dimension survive, even with new limits (a lowered
    /// limit applies at once to what the window already holds); counters
    /// of removed rules stop being hit and are evicted once idle.
    pub fn set_rules(&self, rules: Vec<Rule>) {
        self.rules.store(Arc::new(rules));
    }

    /// Admission: counts one request against every rule that applies
    /// (the configured rules plus `extra`, e.g. the limits a virtual key
    /// carries) unless one of them is exhausted (requests at the limit,
    /// or tokens already counted at or over it); then nothing is counted.
    pub fn admit(
        &self,
        subject: &Subject<'_>,
        extra: &[Rule],
        now: Instant,
    ) -> Result<Admitted, Limited> {
        let unix_ms = self.clock.unix_ms(now);
        let sec = second_of(unix_ms);
        self.maybe_sweep(sec);
        let rules = self.rules.load();
        let sharing = Sharing {
            routers: 1 + u64::from(self.peers.load(Ordering::Relaxed)),
            interval: Duration::from_millis(self.sync_interval_ms.load(Ordering::Relaxed)),
        };
        let mut headers = RateHeaders::default();
        for (index, rule) in rules.iter().chain(extra).enumerate() {
            let Some(key) = rule.key_for(subject) else {
                continue;
            };
            let check = self.with_counter(key, sec, |counter| {
                check_and_count(rule, counter, unix_ms, sec, sharing)
            });
            match check {
                Check::Pass(h) => headers.merge(h.requests, h.tokens),
                Check::Refuse(limited) => {
                    self.roll_back(rules.iter().chain(extra).take(index), subject, sec);
                    return Err(limited);
                }
            }
        }
        Ok(Admitted {
            headers: (!headers.is_empty()).then_some(headers),
        })
    }

    /// After the answer: counts the tokens it used (prompt + completion)
    /// against every TPM rule that applies, in the current second.
    pub fn record_tokens(&self, subject: &Subject<'_>, extra: &[Rule], tokens: u64, now: Instant) {
        if tokens == 0 {
            return;
        }
        let sec = second_of(self.clock.unix_ms(now));
        let tokens = u32::try_from(tokens).unwrap_or(u32::MAX);
        let rules = self.rules.load();
        for rule in rules.iter().chain(extra) {
            if rule.tpm.is_none() {
                continue;
            }
            let Some(key) = rule.key_for(subject) else {
                continue;
            };
            self.with_counter(key, sec, |c| c.add_local(sec, 0, tokens));
        }
    }

    /// The figures admission would report now, without counting anything
    /// (for a status endpoint, and to watch counts arrive from other
    /// routers); `None` when no rule applies.
    pub fn status(
        &self,
        subject: &Subject<'_>,
        extra: &[Rule],
        now: Instant,
    ) -> Option<RateHeaders> {
        let unix_ms = self.clock.unix_ms(now);
        let sec = second_of(unix_ms);
        let rules = self.rules.load();
        let mut headers = RateHeaders::default();
        for rule in rules.iter().chain(extra) {
            let Some(key) = rule.key_for(subject) else {
                continue;
            };
            let h = self
                .peek_counter(key, |c| figures(rule, &c.usage(sec), unix_ms))
                .unwrap_or_else(|| figures(rule, &Usage::default(), unix_ms));
            headers.merge(h.requests, h.tokens);
        }
        (!headers.is_empty()).then_some(headers)
    }

    fn lookup<'k>(&self, key: KeyRef<'k>) -> Lookup<'k> {
        let hash = self
            .shard_hasher
            .hash_one((key.rule, key.dimension, key.value));
        Lookup { hash, key }
    }

    fn shard(&self, lookup: &Lookup<'_>) -> MutexGuard<'_, Shard> {
        // The high bits pick the shard; the map inside picks buckets with
        // the low ones (and its control bytes with the top 7, which only
        // makes a shard's keys share those, not collide).
        let index = (lookup.hash >> 32) as usize % self.shards.len();
        self.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the counter of `key`, created if new, marked hit at
    /// `sec`.
    fn with_counter<R>(&self, key: KeyRef<'_>, sec: u32, f: impl FnOnce(&mut Counter) -> R) -> R {
        let lookup = self.lookup(key);
        let mut shard = self.shard(&lookup);
        if let Some(counter) = shard.get_mut(&lookup as &dyn AsKey) {
            counter.last_hit = counter.last_hit.max(sec);
            return f(counter);
        }
        let counter = shard
            .entry(lookup.to_owned_key())
            .or_insert_with(|| Counter::new(sec));
        f(counter)
    }

    fn peek_counter<R>(&self, key: KeyRef<'_>, f: impl FnOnce(&Counter) -> R) -> Option<R> {
        let lookup = self.lookup(key);
        let shard = self.shard(&lookup);
        shard.get(&lookup as &dyn AsKey).map(f)
    }

    /// Takes back the request counted by the rules before the one that
    /// refused, so a refused request leaves no trace.
    fn roll_back<'r>(
        &self,
        rules: impl Iterator<Item = &'r Rule>,
        subject: &Subject<'_>,
        sec: u32,
    ) {
        for rule in rules {
            if rule.rpm.is_none() {
                continue;
            }
            let Some(key) = rule.key_for(subject) else {
                continue;
            };
            let lookup = self.lookup(key);
            let mut shard = self.shard(&lookup);
            if let Some(c) = shard.get_mut(&lookup as &dyn AsKey) {
                c.remove_local_request(sec);
            }
        }
    }

    /// Drops counters idle for more than two windows. Runs at most once a
    /// minute, from whichever admission (or sync tick) first sees the
    /// minute pass; it locks one shard at a time.
    fn maybe_sweep(&self, sec: u32) {
        let due = self.next_sweep.load(Ordering::Relaxed);
        if sec < due
            || self
                .next_sweep
                .compare_exchange(due, sec + WINDOW_SECS, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        self.sweep(sec);
    }

    fn sweep(&self, sec: u32) {
        for shard in self.shards.iter() {
            shard
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .retain(|_, c| sec.saturating_sub(c.last_hit) <= IDLE_EVICT_SECS);
        }
    }

    #[cfg(test)]
    fn counter_count(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }
}

/// One rule's figures from its counter's usage at `unix_ms`.
fn figures(rule: &Rule, usage: &Usage, unix_ms: u64) -> RateHeaders {
    let one = |limit: Option<u64>, q: Quantity| {
        limit.map(|limit| Figures {
            limit,
            remaining: limit.saturating_sub(usage.get(q)),
            reset: usage
                .oldest_frees_at(q)
                .map_or(Duration::ZERO, |s| until_second(unix_ms, s)),
        })
    };
    RateHeaders {
        requests: one(rule.rpm, Quantity::Requests),
        tokens: one(rule.tpm, Quantity::Tokens),
    }
}

/// How the other routers weigh on this one's admissions.
#[derive(Clone, Copy)]
struct Sharing {
    /// This router plus the others heard from recently.
    routers: u64,
    /// How long until this router's counts reach the others (and theirs
    /// arrive): the retry for a refusal by share.
    interval: Duration,
}

fn check_and_count(
    rule: &Rule,
    counter: &mut Counter,
    unix_ms: u64,
    sec: u32,
    sharing: Sharing,
) -> Check {
    let usage = counter.usage(sec);
    let mut refused: Option<(Exhausted, u64)> = None;
    let mut retry_at = 0;
    let mut by_share = false;
    for (limit, q, what) in [
        (rule.rpm, Quantity::Requests, Exhausted::Requests),
        (rule.tpm, Quantity::Tokens, Exhausted::Tokens),
    ] {
        let Some(limit) = limit else { continue };
        let used = usage.get(q);
        if used >= limit {
            refused.get_or_insert((what, limit));
            if let Some(at) = counter.frees_at(sec, q, limit) {
                retry_at = retry_at.max(at);
            }
        } else if sharing.routers > 1
            && counter.remote_hit > 0
            && sec.saturating_sub(counter.remote_hit) <= SHARED_RECENTLY_SECS
        {
            // The room left as the deployment last shared it, split
            // evenly: what the others admit meanwhile fits in their part.
            let pending = usage.pending(q);
            let room = limit - (used - pending);
            if pending >= room.div_ceil(sharing.routers) {
                refused.get_or_insert((what, limit));
                by_share = true;
            }
        }
    }
    if let Some((what, limit)) = refused {
        let mut retry_after = until_second(unix_ms, retry_at);
        if by_share {
            retry_after = retry_after.max(sharing.interval);
        }
        return Check::Refuse(Limited {
            rule: rule.name.clone(),
            what,
            limit,
            retry_after,
            headers: figures(rule, &usage, unix_ms),
        });
    }
    let mut usage = usage;
    if rule.rpm.is_some() {
        counter.add_local(sec, 1, 0);
        usage.add_request(sec);
    }
    Check::Pass(figures(rule, &usage, unix_ms))
}

#[cfg(test)]
mod tests;
