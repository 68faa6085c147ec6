//! Spend-spike alerts: spend over a short sliding window compared with a
//! fixed threshold or with the usual spend per window.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError, RwLock};
use std::time::Duration;

use jiff::Timestamp;
use switchyard_pricing::Usd;

use crate::event::{AlertEvent, AlertKind, alert_id};
use crate::types::{Dimension, Spend};

/// Distinct values a per-value spike rule tracks, unless set with
/// [`Spikes::with_max_values`]. Each costs about 1 KiB (factor mode) or
/// 100 bytes (threshold mode).
pub const DEFAULT_MAX_SPIKE_VALUES: usize = 10_000;

/// The sliding window is measured in this many buckets: the window's edge is
/// exact to a tenth of it.
const FINE_BUCKETS: i64 = 10;
/// The baseline is kept in at most this many buckets, however long it is.
const COARSE_BUCKETS: i64 = 60;
/// Factor mode waits until it has seen this many windows of history (or the
/// whole baseline, if shorter): an average over fewer is noise.
const MIN_BASELINE_WINDOWS: i64 = 10;

#[derive(Debug, Clone, PartialEq)]
pub struct SpikeRule {
    pub name: String,
    /// `None`: all spend.
    pub dimension: Option<Dimension>,
    /// `Some`: only this key/team/...; `None`: each value separately.
    pub value: Option<String>,
    /// The sliding window spend is measured over, e.g. 5 minutes.
    pub window: Duration,
    /// Alert when spend in `window` is above this.
    pub threshold: Option<Usd>,
    /// Alert when spend in `window` is above `factor` × the average spend
    /// per window over `baseline` (which ends where the window begins).
    pub factor: Option<f64>,
    /// How far back the usual spend is averaged (factor mode), e.g. 24 h.
    pub baseline: Duration,
    /// Factor mode ignores windows that spent less than this.
    pub min_spend: Usd,
}

/// Bucket sizes in milliseconds; two rules with the same geometry can share
/// their history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Geometry {
    window: i64,
    fine: i64,
    fine_n: i64,
    coarse: i64,
    /// Baseline buckets.
    coarse_n: i64,
    /// Baseline buckets plus those of the current window.
    coarse_slots: i64,
    /// Observed history factor mode needs before it alerts.
    needed: i64,
    /// A value idle this long has nothing left in its rings.
    horizon: i64,
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX).max(1)
}

/// For positive operands (signed `div_ceil` is not stable).
fn ceil_div(a: i64, b: i64) -> i64 {
    (a + b - 1) / b
}

impl Geometry {
    fn of(rule: &SpikeRule) -> Self {
        // Capped so that bucket arithmetic cannot overflow (ten years).
        const MAX: i64 = 10 * 366 * 86_400_000;
        let window = millis(rule.window).min(MAX);
        let fine = (window / FINE_BUCKETS).max(1);
        let fine_n = ceil_div(window, fine);
        let (coarse, coarse_n, coarse_slots, needed) = if rule.factor.is_some() {
            let baseline = millis(rule.baseline).clamp(window, MAX);
            let coarse = ceil_div(baseline, COARSE_BUCKETS).max(1);
            let coarse_n = ceil_div(baseline, coarse);
            let slots = coarse_n + ceil_div(window, coarse) + 1;
            (
                coarse,
                coarse_n,
                slots,
                baseline.min(MIN_BASELINE_WINDOWS * window),
            )
        } else {
            (1, 0, 0, 0)
        };
        Geometry {
            window,
            fine,
            fine_n,
            coarse,
            coarse_n,
            coarse_slots,
            needed,
            horizon: window + fine + coarse * (coarse_n + 2),
        }
    }
}

/// Spend per time bucket, the newest `slots.len()` buckets.
struct Ring {
    width: i64,
    /// Index (time / width) of the newest bucket.
    head: Option<i64>,
    slots: Box<[i64]>,
}

impl Ring {
    fn new(width: i64, n: i64) -> Self {
        Ring {
            width,
            head: None,
            slots: vec![0; usize::try_from(n).unwrap_or(0)].into_boxed_slice(),
        }
    }

    fn len(&self) -> i64 {
        i64::try_from(self.slots.len()).unwrap_or(i64::MAX)
    }

    fn slot(&self, idx: i64) -> usize {
        usize::try_from(idx.rem_euclid(self.len())).unwrap_or(0)
    }

    fn add(&mut self, t: i64, amount: i64) {
        let n = self.len();
        if n == 0 {
            return;
        }
        let idx = t.div_euclid(self.width);
        match self.head {
            // Too old for the ring: outside every span evaluated from now on.
            Some(h) if idx <= h - n => return,
            Some(h) if idx > h => {
                if idx - h >= n {
                    self.slots.fill(0);
                } else {
                    for i in h + 1..=idx {
                        let s = self.slot(i);
                        self.slots[s] = 0;
                    }
                }
                self.head = Some(idx);
            }
            Some(_) => {}
            None => self.head = Some(idx),
        }
        let s = self.slot(idx);
        self.slots[s] = self.slots[s].saturating_add(amount);
    }

    /// Spend in buckets `from..=to` (clipped to what the ring holds).
    fn sum(&self, from: i64, to: i64) -> i64 {
        let Some(h) = self.head else {
            return 0;
        };
        let lo = from.max(h - self.len() + 1);
        let hi = to.min(h);
        (lo..=hi).fold(0i64, |acc, i| acc.saturating_add(self.slots[self.slot(i)]))
    }
}

struct Track {
    fine: Ring,
    coarse: Ring,
    /// The newest record's time: spikes are evaluated as of then.
    last: i64,
    /// The window period (time / window) an alert last fired in.
    fired: Option<i64>,
}

impl Track {
    fn new(g: &Geometry, t: i64) -> Self {
        Track {
            fine: Ring::new(g.fine, g.fine_n),
            coarse: Ring::new(g.coarse, g.coarse_slots),
            last: t,
            fired: None,
        }
    }
}

struct Inner {
    fixed: Option<Track>,
    values: HashMap<Box<str>, Track>,
    /// The earliest record this rule has seen: history before it is
    /// unknown, not zero.
    since: Option<i64>,
    /// The window period idle values were last dropped in.
    swept: i64,
    /// The window period the per-value cap was last reported in.
    overflow_logged: Option<i64>,
}

impl Inner {
    fn new() -> Self {
        Inner {
            fixed: None,
            values: HashMap::new(),
            since: None,
            swept: i64::MIN,
            overflow_logged: None,
        }
    }
}

struct RuleState {
    rule: SpikeRule,
    geo: Geometry,
    inner: Mutex<Inner>,
}

/// Spike rules and their recent spend. Driven only by the records'
/// timestamps, never by the clock.
pub struct Spikes {
    rules: RwLock<Vec<RuleState>>,
    max_values: usize,
}

fn build(rules: Vec<SpikeRule>, old: &mut [Option<RuleState>]) -> Vec<RuleState> {
    rules
        .into_iter()
        .map(|rule| {
            let geo = Geometry::of(&rule);
            let kept = old
                .iter_mut()
                .find(|o| {
                    o.as_ref().is_some_and(|o| {
                        o.rule.name == rule.name
                            && o.rule.dimension == rule.dimension
                            && o.rule.value == rule.value
                            && o.geo == geo
                    })
                })
                .and_then(Option::take)
                .map(|o| o.inner.into_inner().unwrap_or_else(PoisonError::into_inner));
            RuleState {
                rule,
                geo,
                inner: Mutex::new(kept.unwrap_or_else(Inner::new)),
            }
        })
        .collect()
}

struct Finding {
    current: i64,
    limit: i64,
    baseline: Option<i64>,
}

fn evaluate(rule: &SpikeRule, g: &Geometry, track: &Track, since: i64) -> Option<Finding> {
    let t = track.last;
    let fi = t.div_euclid(g.fine);
    let current = track.fine.sum(fi - g.fine_n + 1, fi);
    let mut baseline = None;
    let mut factor_limit = None;
    if let Some(factor) = rule.factor {
        // The coarse bucket holding the window's start is partly inside the
        // window: the baseline ends before it, so a spike does not raise
        // its own baseline.
        let cs = (t - g.window).div_euclid(g.coarse);
        let from = cs - g.coarse_n;
        let observed = cs * g.coarse - (from * g.coarse).max(since);
        if observed >= g.needed && observed > 0 {
            let sum = track.coarse.sum(from, cs - 1);
            let avg = i128::from(sum) * i128::from(g.window) / i128::from(observed);
            let avg = i64::try_from(avg).unwrap_or(i64::MAX);
            baseline = Some(avg);
            // Saturating float-to-int: a huge baseline only makes the
            // threshold unreachable.
            let limit = (factor * avg as f64).round() as i64;
            if current >= rule.min_spend.pico() && current > limit {
                factor_limit = Some(limit);
            }
        }
    }
    let threshold = rule.threshold.map(Usd::pico).filter(|th| current > *th);
    threshold.or(factor_limit).map(|limit| Finding {
        current,
        limit,
        baseline,
    })
}

impl Spikes {
    pub fn new(rules: Vec<SpikeRule>) -> Self {
        Spikes {
            rules: RwLock::new(build(rules, &mut [])),
            max_values: DEFAULT_MAX_SPIKE_VALUES,
        }
    }

    /// Caps the values each per-value rule tracks; beyond it new values are
    /// not watched until idle ones are dropped, and a warning is logged once
    /// per rule and window.
    pub fn with_max_values(mut self, max: usize) -> Self {
        self.max_values = max;
        self
    }

    /// Applies a new rule set. A rule keeps its history when its name,
    /// dimension, value, window and baseline (and whether it has a factor)
    /// are unchanged; thresholds, factor and `min_spend` may change.
    pub fn replace_rules(&self, rules: Vec<SpikeRule>) {
        let mut state = self.rules.write().unwrap_or_else(PoisonError::into_inner);
        let mut old: Vec<Option<RuleState>> =
            std::mem::take(&mut *state).into_iter().map(Some).collect();
        *state = build(rules, &mut old);
    }

    /// Adds a record; returns the spikes it reveals, each rule and value
    /// alerting at most once per window period (periods are multiples of
    /// the window since the Unix epoch, the same on every router).
    pub fn record(&self, spend: &Spend<'_>) -> Vec<AlertEvent> {
        let rules = self.rules.read().unwrap_or_else(PoisonError::into_inner);
        let t = spend.at.as_millisecond();
        let amount = spend.cost.pico();
        let mut out = Vec::new();
        for r in rules.iter() {
            let hit = match r.rule.dimension {
                None => None,
                Some(d) => match (d.of_spend(spend), &r.rule.value) {
                    (None, _) => continue,
                    (Some(v), Some(want)) if v != want => continue,
                    (Some(_), Some(_)) => None,
                    (Some(v), None) => Some(v),
                },
            };
            let g = &r.geo;
            let mut guard = r.inner.lock().unwrap_or_else(PoisonError::into_inner);
            let inner = &mut *guard;
            let since = inner.since.map_or(t, |s| s.min(t));
            inner.since = Some(since);
            let period = t.div_euclid(g.window);
            if period > inner.swept {
                inner.swept = period;
                let horizon = t.saturating_sub(g.horizon);
                inner.values.retain(|_, tr| tr.last >= horizon);
            }
            let track = match hit {
                None => inner.fixed.get_or_insert_with(|| Track::new(g, t)),
                Some(v) => {
                    if !inner.values.contains_key(v) {
                        if inner.values.len() >= self.max_values {
                            if inner.overflow_logged != Some(period) {
                                inner.overflow_logged = Some(period);
                                tracing::warn!(
                                    rule = %r.rule.name,
                                    max_values = self.max_values,
                                    "spike rule tracks too many distinct values; new ones are not watched"
                                );
                            }
                            continue;
                        }
                        inner.values.insert(v.into(), Track::new(g, t));
                    }
                    match inner.values.get_mut(v) {
                        Some(tr) => tr,
                        None => continue,
                    }
                }
            };
            track.fine.add(t, amount);
            track.coarse.add(t, amount);
            track.last = track.last.max(t);
            let period = track.last.div_euclid(g.window);
            if track.fired == Some(period) {
                continue;
            }
            let Some(f) = evaluate(&r.rule, g, track, since) else {
                continue;
            };
            track.fired = Some(period);
            let value = hit
                .map(str::to_owned)
                .or_else(|| r.rule.dimension.and(r.rule.value.clone()));
            let ts = |ms: i64| Timestamp::from_millisecond(ms).unwrap_or(spend.at);
            out.push(AlertEvent {
                id: alert_id(
                    AlertKind::SpendSpike,
                    &r.rule.name,
                    value.as_deref(),
                    ts(period * g.window),
                ),
                kind: AlertKind::SpendSpike,
                rule: r.rule.name.clone(),
                dimension: r.rule.dimension,
                value,
                window_start: ts(track.last - g.window),
                window_end: ts(track.last),
                spent: Usd::from_pico(f.current),
                limit_or_threshold: Some(Usd::from_pico(f.limit)),
                baseline: f.baseline.map(Usd::from_pico),
                at: spend.at,
            });
        }
        out
    }
}

impl std::fmt::Debug for Spikes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rules = self.rules.read().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("Spikes")
            .field("rules", &rules.iter().map(|r| &r.rule).collect::<Vec<_>>())
            .finish()
    }
}
