//! Per-target health: in-flight counts, cooldowns after 429/overloaded,
//! circuit breakers, time-to-first-token statistics, and output throughput
//! (generated tokens per second, for `provider.sort: throughput`).
//!
//! One [`Health`] lives for the whole router process and outlives route
//! table reloads: it is keyed by [`Target`] (provider + upstream model), not
//! by route, so a reload that keeps a target keeps its state.
//!
//! Time comes from [`tokio::time::Instant`] so tests (here and in the
//! router) can drive cooldowns and breakers with paused time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use serde::Serialize;
use switchyard_config::RoutingConfig;
use tokio::time::Instant;

use crate::Target;

/// Recent time-to-first-token samples kept per target for the p95.
const SAMPLES: usize = 128;
/// Weight of the newest sample in the moving averages: about the last ten
/// requests dominate, so a target that slowed down or recovered shows
/// within seconds under load.
const EWMA_ALPHA: f64 = 0.2;
/// Longest cooldown honoured from a retry-after. Guards the clock arithmetic
/// against absurd values; a day is longer than any real quota window.
const MAX_COOLDOWN: Duration = Duration::from_secs(24 * 60 * 60);
/// Fewest output tokens an answer needs to say anything about a target's
/// generation speed: with one token there is no generation to time (it is
/// the first token).
const MIN_OUTPUT_TOKENS: u32 = 2;
/// Shortest generation time measured: below it, clock granularity and
/// chunks the upstream sent in one burst make the rate meaningless (and
/// huge).
const MIN_GENERATION: Duration = Duration::from_millis(1);
/// Entries kept before idle ones are dropped. Clients can name any
/// `<provider>/<model>`, so the map must not grow with every name tried.
const MAX_TARGETS: usize = 4096;

/// How an attempt failed, as far as its target's health is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// 429 or quota. The target cools down for `retry_after`, else the
    /// configured `default_cooldown`; also counts toward the breaker.
    RateLimited { retry_after: Option<Duration> },
    /// The provider (529/503) or its worker (at capacity) is overloaded.
    /// Same handling as `RateLimited`.
    Overloaded { retry_after: Option<Duration> },
    /// No answer within a deadline. Counts toward the breaker.
    Timeout,
    /// Could not reach the provider. Counts toward the breaker.
    Connection,
    /// 5xx or an undecodable answer. Counts toward the breaker.
    Upstream,
    /// No live worker serves the provider. Counts toward the breaker.
    NoWorker,
    /// A 400-class answer the request caused (malformed, too long): every
    /// target would give it, so it says nothing against this one.
    Rejected,
}

impl Failure {
    /// Whether this failure counts against the target's breaker.
    pub fn counts(self) -> bool {
        !matches!(self, Failure::Rejected)
    }

    /// `Some(retry_after)` for failures that cool the target down.
    fn cooldown(self) -> Option<Option<Duration>> {
        match self {
            Failure::RateLimited { retry_after } | Failure::Overloaded { retry_after } => {
                Some(retry_after)
            }
            _ => None,
        }
    }
}

/// Whether a request may be sent to a target now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Healthy: send.
    Ready,
    /// The breaker is half-open and this caller now holds its one probe.
    /// Send; the outcome decides the breaker. Give the probe back with
    /// [`Health::release_probe`] when it is not used after all.
    Probe,
    /// Rate limited or overloaded; available again after `remaining`.
    CoolingDown { remaining: Duration },
    /// The breaker is open (or half-open with its probe taken); a probe is
    /// due after `remaining`.
    BreakerOpen { remaining: Duration },
}

/// A breaker's state as the admin API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    Open,
    /// The open time passed: the next request probes (or one already does).
    HalfOpen,
}

/// One target's health for the admin API.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetHealth {
    pub provider: String,
    pub model: String,
    pub breaker: BreakerState,
    /// Until a probe may be sent; 0 unless the breaker is open or its probe
    /// is out.
    pub breaker_remaining_ms: u64,
    pub consecutive_failures: u32,
    pub cooldown_remaining_ms: u64,
    pub in_flight: u32,
    pub ewma_first_token_ms: Option<f64>,
    pub p95_first_token_ms: Option<f64>,
    pub ewma_total_ms: Option<f64>,
    /// Moving average of output tokens per second of generation (see
    /// [`Health::record_output`]).
    pub ewma_output_tokens_per_second: Option<f64>,
    pub successes: u64,
    /// Failures that counted against the target.
    pub failures: u64,
    /// 400-class answers the requests caused (not counted against it).
    pub rejected: u64,
}

/// Shared health of every target. Thread-safe; each operation takes a short
/// std lock (never held across an await), and in-flight counting is atomic.
#[derive(Debug)]
pub struct Health {
    settings: RwLock<Settings>,
    targets: RwLock<HashMap<Target, Arc<TargetState>>>,
}

#[derive(Debug, Clone, Copy)]
struct Settings {
    failure_threshold: u32,
    open_for: Duration,
    default_cooldown: Duration,
    exploration: f64,
}

impl From<&RoutingConfig> for Settings {
    fn from(c: &RoutingConfig) -> Self {
        Settings {
            // Validation rejects 0; a threshold of 0 would open on nothing.
            failure_threshold: c.breaker.failure_threshold.max(1),
            open_for: c.breaker.open_for,
            default_cooldown: c.default_cooldown,
            exploration: c.exploration.clamp(0.0, 1.0),
        }
    }
}

#[derive(Debug, Default)]
struct TargetState {
    in_flight: AtomicU32,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    breaker: Breaker,
    consecutive_failures: u32,
    cooldown_until: Option<Instant>,
    /// Seconds.
    ewma_first_token: Option<f64>,
    /// Seconds.
    ewma_total: Option<f64>,
    /// Output tokens per second of generation.
    ewma_output_rate: Option<f64>,
    /// Ring buffer of recent first-token times; `next` is the slot to
    /// overwrite once full.
    samples: Vec<Duration>,
    next: usize,
    successes: u64,
    failures: u64,
    rejected: u64,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Breaker {
    #[default]
    Closed,
    Open {
        until: Instant,
    },
    /// `probe_since`: when the current probe was handed out. A probe that
    /// never reports back (its request was cancelled, or the target sat
    /// behind one that answered) is taken as lost after `open_for`, so the
    /// target cannot stay out forever.
    HalfOpen {
        probe_since: Option<Instant>,
    },
}

impl Inner {
    /// Brings time-based state up to `now`: an expired cooldown ends and an
    /// open breaker whose time passed turns half-open.
    fn tick(&mut self, now: Instant) {
        if self.cooldown_until.is_some_and(|u| u <= now) {
            self.cooldown_until = None;
        }
        if let Breaker::Open { until } = self.breaker
            && until <= now
        {
            self.breaker = Breaker::HalfOpen { probe_since: None };
        }
    }

    fn cooldown_remaining(&self, now: Instant) -> Option<Duration> {
        self.cooldown_until
            .map(|u| u.saturating_duration_since(now))
    }

    /// Until a request may pass the breaker, when it may not now.
    fn breaker_remaining(&self, now: Instant, open_for: Duration) -> Option<Duration> {
        match self.breaker {
            Breaker::Closed | Breaker::HalfOpen { probe_since: None } => None,
            Breaker::Open { until } => Some(until.saturating_duration_since(now)),
            Breaker::HalfOpen {
                probe_since: Some(at),
            } => {
                let lost_at = at + open_for;
                (lost_at > now).then(|| lost_at - now)
            }
        }
    }

    fn open(&mut self, now: Instant, open_for: Duration) {
        self.breaker = Breaker::Open {
            until: later(now, open_for),
        };
    }

    fn push_sample(&mut self, d: Duration) {
        if self.samples.len() < SAMPLES {
            self.samples.push(d);
        } else {
            self.samples[self.next] = d;
        }
        self.next = (self.next + 1) % SAMPLES;
    }

    /// One answer's generation speed into the moving average, unless it is
    /// too short to measure.
    fn push_output(&mut self, tokens: u32, generation: Duration) {
        if tokens < MIN_OUTPUT_TOKENS || generation < MIN_GENERATION {
            return;
        }
        let rate = f64::from(tokens) / generation.as_secs_f64();
        self.ewma_output_rate = Some(ewma(self.ewma_output_rate, rate));
    }

    fn p95(&self) -> Option<Duration> {
        if self.samples.is_empty() {
            return None;
        }
        let mut sorted = self.samples.clone();
        sorted.sort_unstable();
        // Nearest rank: the smallest sample at or above 95% of them.
        let rank = (sorted.len() * 95).div_ceil(100);
        sorted.get(rank.saturating_sub(1)).copied()
    }

    fn is_idle(&self) -> bool {
        self.breaker == Breaker::Closed
            && self.cooldown_until.is_none()
            && self.consecutive_failures == 0
    }
}

/// The moving average after `sample` (seconds, or tokens per second: every
/// per-target estimate is smoothed alike).
fn ewma(old: Option<f64>, sample: f64) -> f64 {
    match old {
        Some(old) => old + EWMA_ALPHA * (sample - old),
        None => sample,
    }
}

fn later(now: Instant, d: Duration) -> Instant {
    now + d.min(MAX_COOLDOWN)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Milliseconds with microsecond precision, for display.
fn millis_f64(seconds: f64) -> f64 {
    (seconds * 1e6).round() / 1e3
}

fn lock(state: &TargetState) -> MutexGuard<'_, Inner> {
    // A panic while holding the lock cannot leave `Inner` half-updated in a
    // way that matters (each field is valid on its own), so poisoning is
    // ignored rather than spreading the panic to every request.
    state.inner.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Default for Health {
    fn default() -> Self {
        Health::new(&RoutingConfig::default())
    }
}

impl Health {
    pub fn new(config: &RoutingConfig) -> Self {
        Health {
            settings: RwLock::new(Settings::from(config)),
            targets: RwLock::new(HashMap::new()),
        }
    }

    /// Applies reloaded settings. Open breakers and cooldowns keep the end
    /// times they were given; new failures use the new settings.
    pub fn set_config(&self, config: &RoutingConfig) {
        *self
            .settings
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Settings::from(config);
    }

    fn settings(&self) -> Settings {
        *self.settings.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Share of `fastest` requests that explore.
    pub(crate) fn exploration(&self) -> f64 {
        self.settings().exploration
    }

    fn get(&self, target: &Target) -> Option<Arc<TargetState>> {
        self.targets
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(target)
            .cloned()
    }

    fn entry(&self, target: &Target) -> Arc<TargetState> {
        if let Some(s) = self.get(target) {
            return s;
        }
        let mut map = self.targets.write().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= MAX_TARGETS && !map.contains_key(target) {
            // Only entries nobody holds (no in-flight guard) and with
            // nothing to remember but statistics go.
            map.retain(|_, s| Arc::strong_count(s) > 1 || !lock(s).is_idle());
        }
        map.entry(target.clone()).or_default().clone()
    }

    /// Counts a request in flight to `target` until the guard drops (for
    /// `least-busy`). Hold it for the whole attempt, stream included.
    pub fn start(&self, target: &Target) -> InFlight {
        let state = self.entry(target);
        state.in_flight.fetch_add(1, AtomicOrdering::Relaxed);
        InFlight { state }
    }

    /// Requests in flight to `target` (guards from [`Health::start`] alive).
    pub fn in_flight(&self, target: &Target) -> u32 {
        self.get(target)
            .map_or(0, |s| s.in_flight.load(AtomicOrdering::Relaxed))
    }

    /// Whether a request may go to `target` now. A half-open breaker hands
    /// its one probe to exactly one caller ([`Admission::Probe`]); everyone
    /// else sees it as open until the probe reports.
    pub fn admit(&self, target: &Target) -> Admission {
        let Some(state) = self.get(target) else {
            return Admission::Ready;
        };
        let open_for = self.settings().open_for;
        let now = Instant::now();
        let mut inner = lock(&state);
        inner.tick(now);
        let cooling = inner.cooldown_remaining(now);
        let open = inner.breaker_remaining(now, open_for);
        match (cooling, open) {
            (Some(c), Some(o)) if o > c => Admission::BreakerOpen { remaining: o },
            (Some(c), _) => Admission::CoolingDown { remaining: c },
            (None, Some(o)) => Admission::BreakerOpen { remaining: o },
            (None, None) => match inner.breaker {
                Breaker::Closed => Admission::Ready,
                // Half-open with no live probe (the open time just passed,
                // or the last probe was lost): this caller probes.
                Breaker::Open { .. } | Breaker::HalfOpen { .. } => {
                    inner.breaker = Breaker::HalfOpen {
                        probe_since: Some(now),
                    };
                    Admission::Probe
                }
            },
        }
    }

    /// Gives back a probe obtained from [`Health::admit`] (or
    /// [`crate::order`]) that was not sent after all, or whose attempt ended
    /// without a verdict (cancelled, or rejected as the client's fault), so
    /// the next request may probe at once.
    pub fn release_probe(&self, target: &Target) {
        if let Some(state) = self.get(target) {
            let mut inner = lock(&state);
            if let Breaker::HalfOpen { .. } = inner.breaker {
                inner.breaker = Breaker::HalfOpen { probe_since: None };
            }
        }
    }

    /// An attempt answered. `first_token`: until its first token (the whole
    /// answer when not streamed); `total`: until its end, or as far as it is
    /// known when recorded.
    ///
    /// Resets the consecutive failures and closes a half-open breaker. An
    /// open one stays open until its probe: this success came from a request
    /// sent before it opened.
    pub fn record_success(&self, target: &Target, first_token: Duration, total: Duration) {
        let state = self.entry(target);
        let mut inner = lock(&state);
        inner.tick(Instant::now());
        inner.successes += 1;
        inner.consecutive_failures = 0;
        if let Breaker::HalfOpen { .. } = inner.breaker {
            inner.breaker = Breaker::Closed;
        }
        inner.ewma_first_token = Some(ewma(inner.ewma_first_token, first_token.as_secs_f64()));
        inner.ewma_total = Some(ewma(inner.ewma_total, total.as_secs_f64()));
        inner.push_sample(first_token);
    }

    /// An answer of `target` finished with `output_tokens` generated in
    /// `generation`: for a stream, from its first event to its end (the
    /// time to first token is the latency estimate's business, and prompt
    /// length would skew a speed that included it); for an answer in one
    /// piece, the whole call, as nothing tells its first token apart (so
    /// such answers read somewhat slower than streams of the same target).
    ///
    /// Feeds the moving average of output tokens per second
    /// ([`Health::output_rate`]). Answers with fewer than 2 output tokens or
    /// under 1 ms of generation are left out: they time nothing but noise.
    pub fn record_output(&self, target: &Target, output_tokens: u32, generation: Duration) {
        let state = self.entry(target);
        lock(&state).push_output(output_tokens, generation);
    }

    /// An attempt failed. See [`Failure`] for how each kind counts.
    pub fn record_failure(&self, target: &Target, failure: Failure) {
        let settings = self.settings();
        let state = self.entry(target);
        let now = Instant::now();
        let mut inner = lock(&state);
        inner.tick(now);
        if !failure.counts() {
            inner.rejected += 1;
            return;
        }
        if let Some(retry_after) = failure.cooldown() {
            let until = later(now, retry_after.unwrap_or(settings.default_cooldown));
            // A shorter retry-after arriving later (from a request sent
            // earlier) does not cut a longer cooldown short.
            if inner.cooldown_until.is_none_or(|u| u < until) && until > now {
                inner.cooldown_until = Some(until);
            }
        }
        inner.failures += 1;
        inner.consecutive_failures = inner.consecutive_failures.saturating_add(1);
        match inner.breaker {
            Breaker::Closed if inner.consecutive_failures >= settings.failure_threshold => {
                inner.open(now, settings.open_for);
            }
            Breaker::Closed => {}
            // The probe (or a request racing it) failed: out again.
            Breaker::HalfOpen { .. } => inner.open(now, settings.open_for),
            // Already open; this failure is from a request sent before.
            Breaker::Open { .. } => {}
        }
    }

    /// Closes the breaker and ends the cooldown of `target` (an operator's
    /// override from the admin API). Statistics stay.
    pub fn reset(&self, target: &Target) {
        if let Some(state) = self.get(target) {
            let mut inner = lock(&state);
            inner.breaker = Breaker::Closed;
            inner.consecutive_failures = 0;
            inner.cooldown_until = None;
        }
    }

    /// Moving average of time to first token, once measured.
    pub fn ewma_first_token(&self, target: &Target) -> Option<Duration> {
        let state = self.get(target)?;
        let secs = lock(&state).ewma_first_token?;
        Duration::try_from_secs_f64(secs).ok()
    }

    /// Moving average of output tokens per second of generation, once
    /// measured ([`Health::record_output`]).
    pub fn output_rate(&self, target: &Target) -> Option<f64> {
        let state = self.get(target)?;
        lock(&state).ewma_output_rate
    }

    /// 95th percentile of the recent (up to 128) times to first token.
    pub fn p95_first_token(&self, target: &Target) -> Option<Duration> {
        let state = self.get(target)?;
        lock(&state).p95()
    }

    /// Every known target's health, sorted by provider and model.
    pub fn snapshot(&self) -> Vec<TargetHealth> {
        let open_for = self.settings().open_for;
        let now = Instant::now();
        let entries: Vec<(Target, Arc<TargetState>)> = self
            .targets
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(t, s)| (t.clone(), s.clone()))
            .collect();
        let mut out: Vec<TargetHealth> = entries
            .into_iter()
            .map(|(target, state)| {
                let in_flight = state.in_flight.load(AtomicOrdering::Relaxed);
                let mut inner = lock(&state);
                inner.tick(now);
                TargetHealth {
                    provider: target.provider.to_string(),
                    model: target.upstream_model.to_string(),
                    breaker: match inner.breaker {
                        Breaker::Closed => BreakerState::Closed,
                        Breaker::Open { .. } => BreakerState::Open,
                        Breaker::HalfOpen { .. } => BreakerState::HalfOpen,
                    },
                    breaker_remaining_ms: inner.breaker_remaining(now, open_for).map_or(0, millis),
                    consecutive_failures: inner.consecutive_failures,
                    cooldown_remaining_ms: inner.cooldown_remaining(now).map_or(0, millis),
                    in_flight,
                    ewma_first_token_ms: inner.ewma_first_token.map(millis_f64),
                    p95_first_token_ms: inner.p95().map(|d| millis_f64(d.as_secs_f64())),
                    ewma_total_ms: inner.ewma_total.map(millis_f64),
                    // Three decimals, for display, as the latencies.
                    ewma_output_tokens_per_second: inner
                        .ewma_output_rate
                        .map(|r| (r * 1e3).round() / 1e3),
                    successes: inner.successes,
                    failures: inner.failures,
                    rejected: inner.rejected,
                }
            })
            .collect();
        out.sort_by(|a, b| (&a.provider, &a.model).cmp(&(&b.provider, &b.model)));
        out
    }
}

/// A request in flight to a target; dropping it ends the count.
#[derive(Debug)]
pub struct InFlight {
    state: Arc<TargetState>,
}

impl InFlight {
    /// [`Health::record_output`] for the guard's target: a stream holds its
    /// guard to the end, where its usage is known.
    pub fn record_output(&self, output_tokens: u32, generation: Duration) {
        lock(&self.state).push_output(output_tokens, generation);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.state.in_flight.fetch_sub(1, AtomicOrdering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Barrier;
    use switchyard_config::BreakerConfig;
    use tokio::time::advance;

    fn config(threshold: u32, open_for: Duration) -> RoutingConfig {
        RoutingConfig {
            breaker: BreakerConfig {
                failure_threshold: threshold,
                open_for,
            },
            default_cooldown: Duration::from_secs(5),
            exploration: 0.0,
        }
    }

    fn t(name: &str) -> Target {
        Target::new("p", name)
    }

    const MS: Duration = Duration::from_millis(1);
    const SEC: Duration = Duration::from_secs(1);

    #[tokio::test(start_paused = true)]
    async fn rate_limit_cools_down_for_retry_after() {
        let h = Health::new(&config(100, SEC * 30));
        let a = t("a");
        h.record_failure(
            &a,
            Failure::RateLimited {
                retry_after: Some(SEC * 2),
            },
        );
        assert_eq!(h.admit(&a), Admission::CoolingDown { remaining: SEC * 2 });
        advance(SEC).await;
        assert_eq!(h.admit(&a), Admission::CoolingDown { remaining: SEC });
        // A shorter retry-after does not shorten it.
        h.record_failure(
            &a,
            Failure::Overloaded {
                retry_after: Some(MS * 10),
            },
        );
        assert_eq!(h.admit(&a), Admission::CoolingDown { remaining: SEC });
        advance(SEC).await;
        assert_eq!(h.admit(&a), Admission::Ready);
        assert_eq!(h.admit(&t("other")), Admission::Ready);
    }

    #[tokio::test(start_paused = true)]
    async fn overloaded_without_retry_after_uses_default_cooldown() {
        let h = Health::new(&config(100, SEC * 30));
        let a = t("a");
        h.record_failure(&a, Failure::Overloaded { retry_after: None });
        assert_eq!(h.admit(&a), Admission::CoolingDown { remaining: SEC * 5 });
        advance(SEC * 5).await;
        assert_eq!(h.admit(&a), Admission::Ready);
    }

    #[tokio::test(start_paused = true)]
    async fn other_failures_do_not_cool_down() {
        let h = Health::new(&config(100, SEC * 30));
        let a = t("a");
        for f in [
            Failure::Timeout,
            Failure::Connection,
            Failure::Upstream,
            Failure::NoWorker,
            Failure::Rejected,
        ] {
            h.record_failure(&a, f);
            assert_eq!(h.admit(&a), Admission::Ready, "{f:?}");
        }
        let s = &h.snapshot()[0];
        assert_eq!((s.failures, s.rejected, s.consecutive_failures), (4, 1, 4));
    }

    #[tokio::test(start_paused = true)]
    async fn huge_retry_after_is_capped_not_overflowing() {
        let h = Health::new(&config(100, SEC));
        let a = t("a");
        h.record_failure(
            &a,
            Failure::RateLimited {
                retry_after: Some(Duration::MAX),
            },
        );
        assert_eq!(
            h.admit(&a),
            Admission::CoolingDown {
                remaining: MAX_COOLDOWN
            }
        );
        h.reset(&a);
        assert_eq!(h.admit(&a), Admission::Ready);
    }

    #[tokio::test(start_paused = true)]
    async fn breaker_opens_half_opens_closes_and_reopens() {
        let h = Health::new(&config(3, SEC * 10));
        let a = t("a");
        h.record_failure(&a, Failure::Upstream);
        h.record_failure(&a, Failure::Timeout);
        assert_eq!(h.admit(&a), Admission::Ready, "below the threshold");
        // A success in between resets the count.
        h.record_success(&a, MS, MS);
        h.record_failure(&a, Failure::Connection);
        h.record_failure(&a, Failure::NoWorker);
        assert_eq!(h.admit(&a), Admission::Ready);
        // Rejections never count.
        h.record_failure(&a, Failure::Rejected);
        assert_eq!(h.admit(&a), Admission::Ready);
        h.record_failure(&a, Failure::Upstream);
        assert_eq!(
            h.admit(&a),
            Admission::BreakerOpen {
                remaining: SEC * 10
            }
        );
        assert_eq!(h.snapshot()[0].breaker, BreakerState::Open);

        // A late success from a request sent earlier does not close it.
        h.record_success(&a, MS, MS);
        advance(SEC * 4).await;
        assert_eq!(h.admit(&a), Admission::BreakerOpen { remaining: SEC * 6 });

        // Half-open: one probe, everyone else still kept out.
        advance(SEC * 6).await;
        assert_eq!(h.snapshot()[0].breaker, BreakerState::HalfOpen);
        assert_eq!(h.admit(&a), Admission::Probe);
        assert_eq!(
            h.admit(&a),
            Admission::BreakerOpen {
                remaining: SEC * 10
            }
        );
        // The probe fails: open for another `open_for`.
        h.record_failure(&a, Failure::Timeout);
        assert_eq!(
            h.admit(&a),
            Admission::BreakerOpen {
                remaining: SEC * 10
            }
        );

        advance(SEC * 10).await;
        assert_eq!(h.admit(&a), Admission::Probe);
        h.record_success(&a, MS, MS);
        assert_eq!(h.admit(&a), Admission::Ready);
        let s = &h.snapshot()[0];
        assert_eq!(s.breaker, BreakerState::Closed);
        assert_eq!(s.consecutive_failures, 0);

        // Closed again: it takes the full threshold to reopen.
        h.record_failure(&a, Failure::Upstream);
        h.record_failure(&a, Failure::Upstream);
        assert_eq!(h.admit(&a), Admission::Ready);
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limits_count_toward_the_breaker() {
        let h = Health::new(&config(2, SEC * 60));
        let a = t("a");
        h.record_failure(&a, Failure::RateLimited { retry_after: None });
        h.record_failure(&a, Failure::RateLimited { retry_after: None });
        // Both apply; the longer one is reported.
        assert_eq!(
            h.admit(&a),
            Admission::BreakerOpen {
                remaining: SEC * 60
            }
        );
        h.set_config(&config(2, SEC));
        assert_eq!(
            h.admit(&a),
            Admission::BreakerOpen {
                remaining: SEC * 60
            },
            "a reload keeps running end times"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn cooldown_holds_back_a_due_probe() {
        let h = Health::new(&config(1, SEC));
        let a = t("a");
        h.record_failure(
            &a,
            Failure::RateLimited {
                retry_after: Some(SEC * 3),
            },
        );
        advance(SEC).await;
        assert_eq!(h.admit(&a), Admission::CoolingDown { remaining: SEC * 2 });
        advance(SEC * 2).await;
        assert_eq!(h.admit(&a), Admission::Probe);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lost_or_released_probe_is_handed_out_again() {
        let h = Health::new(&config(1, SEC * 10));
        let a = t("a");
        h.record_failure(&a, Failure::Upstream);
        advance(SEC * 10).await;
        assert_eq!(h.admit(&a), Admission::Probe);
        h.release_probe(&a);
        assert_eq!(h.admit(&a), Admission::Probe);
        // Never reported: after `open_for` the probe counts as lost.
        advance(SEC * 9).await;
        assert_eq!(h.admit(&a), Admission::BreakerOpen { remaining: SEC });
        advance(SEC).await;
        assert_eq!(h.admit(&a), Admission::Probe);
        // Releasing on a closed breaker does nothing.
        h.record_success(&a, MS, MS);
        h.release_probe(&a);
        assert_eq!(h.admit(&a), Admission::Ready);
    }

    #[tokio::test(start_paused = true)]
    async fn only_one_of_many_concurrent_callers_gets_the_probe() {
        let h = Arc::new(Health::new(&config(1, SEC)));
        let a = t("a");
        h.record_failure(&a, Failure::Upstream);
        advance(SEC).await;
        let threads = 16;
        let barrier = Arc::new(Barrier::new(threads));
        // Entering the runtime gives the threads its paused clock.
        let rt = tokio::runtime::Handle::current();
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (h, a, barrier, rt) = (h.clone(), a.clone(), barrier.clone(), rt.clone());
                std::thread::spawn(move || {
                    let _rt = rt.enter();
                    barrier.wait();
                    (0..100).filter(|_| h.admit(&a) == Admission::Probe).count()
                })
            })
            .collect();
        let probes: usize = handles.into_iter().map(|j| j.join().unwrap()).sum();
        assert_eq!(probes, 1);
    }

    #[test]
    fn in_flight_guards_count_until_dropped() {
        let h = Health::default();
        let a = t("a");
        assert_eq!(h.in_flight(&a), 0);
        let g1 = h.start(&a);
        let g2 = h.start(&a);
        assert_eq!(h.in_flight(&a), 2);
        drop(g1);
        assert_eq!(h.in_flight(&a), 1);
        assert_eq!(h.snapshot()[0].in_flight, 1);
        drop(g2);
        assert_eq!(h.in_flight(&a), 0);
    }

    #[test]
    fn p95_is_the_nearest_rank_of_recent_samples() {
        let h = Health::default();
        let a = t("a");
        assert_eq!(h.p95_first_token(&a), None);
        h.record_success(&a, MS * 7, MS * 7);
        assert_eq!(h.p95_first_token(&a), Some(MS * 7));
        // 1..=100 ms in shuffled order: the 95th is 95 ms.
        let h = Health::default();
        let mut ms: Vec<u64> = (1..=100).collect();
        fastrand::Rng::with_seed(7).shuffle(&mut ms);
        for m in ms {
            h.record_success(&a, MS * m as u32, SEC);
        }
        assert_eq!(h.p95_first_token(&a), Some(MS * 95));
        // Only the last 128 samples count: 200 fast ones push the slow out.
        for _ in 0..200 {
            h.record_success(&a, MS, SEC);
        }
        assert_eq!(h.p95_first_token(&a), Some(MS));
    }

    #[test]
    fn ewma_follows_samples() {
        let h = Health::default();
        let a = t("a");
        assert_eq!(h.ewma_first_token(&a), None);
        h.record_success(&a, MS * 100, SEC);
        assert_eq!(h.ewma_first_token(&a), Some(MS * 100));
        h.record_success(&a, MS * 200, SEC);
        let e = h.ewma_first_token(&a).unwrap();
        assert!(e > MS * 119 && e < MS * 121, "{e:?}");
    }

    #[test]
    fn output_rate_is_tokens_per_second_smoothed_like_latency() {
        let h = Health::default();
        let a = t("a");
        assert_eq!(h.output_rate(&a), None);
        // 100 tokens in 2 s.
        h.record_output(&a, 100, SEC * 2);
        assert_eq!(h.output_rate(&a), Some(50.0));
        // 100 tokens in 0.5 s: 200/s, weighted as a latency sample is.
        h.record_output(&a, 100, MS * 500);
        let r = h.output_rate(&a).unwrap();
        assert!((r - (50.0 + EWMA_ALPHA * 150.0)).abs() < 1e-9, "{r}");
        // Too little to measure: one token, or under a millisecond.
        for (tokens, took) in [(1, SEC), (0, SEC), (500, Duration::from_micros(999))] {
            h.record_output(&a, tokens, took);
            assert_eq!(h.output_rate(&a), Some(r), "{tokens} in {took:?}");
        }
        h.record_output(&a, 2, MS);
        assert!(h.output_rate(&a).unwrap() > r);
        // Statistics only: the breaker, successes and failures are untouched.
        let s = &h.snapshot()[0];
        assert_eq!(
            (s.successes, s.failures, s.ewma_first_token_ms),
            (0, 0, None)
        );
    }

    #[test]
    fn a_guard_records_output_for_its_target() {
        let h = Health::default();
        let (a, b) = (t("a"), t("b"));
        let g = h.start(&a);
        g.record_output(10, MS * 100);
        drop(g);
        assert_eq!(h.output_rate(&a), Some(100.0));
        assert_eq!(h.output_rate(&b), None);
    }

    #[tokio::test(start_paused = true)]
    async fn snapshot_serializes_for_the_admin_api() {
        let h = Health::new(&config(1, SEC * 30));
        let b = Target::new("openai", "gpt-4o");
        let a = Target::new("anthropic", "claude");
        h.record_success(&b, MS * 250, SEC * 2);
        h.record_output(&b, 300, SEC * 4);
        h.record_failure(
            &a,
            Failure::RateLimited {
                retry_after: Some(SEC * 2),
            },
        );
        let _g = h.start(&b);
        let json = serde_json::to_value(h.snapshot()).unwrap();
        assert_eq!(
            json,
            serde_json::json!([
                {
                    "provider": "anthropic", "model": "claude", "breaker": "open",
                    "breaker_remaining_ms": 30000, "consecutive_failures": 1,
                    "cooldown_remaining_ms": 2000, "in_flight": 0,
                    "ewma_first_token_ms": null, "p95_first_token_ms": null,
                    "ewma_total_ms": null, "ewma_output_tokens_per_second": null,
                    "successes": 0, "failures": 1, "rejected": 0
                },
                {
                    "provider": "openai", "model": "gpt-4o", "breaker": "closed",
                    "breaker_remaining_ms": 0, "consecutive_failures": 0,
                    "cooldown_remaining_ms": 0, "in_flight": 1,
                    "ewma_first_token_ms": 250.0, "p95_first_token_ms": 250.0,
                    "ewma_total_ms": 2000.0, "ewma_output_tokens_per_second": 75.0,
                    "successes": 1, "failures": 0, "rejected": 0
                }
            ])
        );
    }

    #[test]
    fn idle_entries_are_dropped_when_the_map_is_full() {
        let h = Health::default();
        let busy = t("busy");
        let _g = h.start(&busy);
        let broken = t("broken");
        h.record_failure(&broken, Failure::Connection);
        for i in 0..MAX_TARGETS + 10 {
            h.record_success(&t(&format!("m{i}")), MS, MS);
        }
        let n = h.targets.read().unwrap().len();
        assert!(n <= MAX_TARGETS, "{n}");
        assert_eq!(h.in_flight(&busy), 1);
        assert_eq!(
            h.snapshot()
                .iter()
                .find(|s| s.model == "broken")
                .map(|s| s.failures),
            Some(1)
        );
    }
}
