//! Budget counters and the verdicts built from them.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock};

use jiff::Timestamp;
use jiff::tz::TimeZone;
use switchyard_pricing::Usd;

use crate::types::{
    Action, BudgetRule, BudgetStatus, Dimension, Exceeded, Spend, Subject, Verdict,
};

/// Distinct values a per-value budget tracks per window, unless set with
/// [`Budgets::with_max_values`].
pub const DEFAULT_MAX_VALUES: usize = 100_000;

/// Budgets and their spend counters. Shared by reference (`Arc<Budgets>`)
/// between request handlers and the task that applies spend.
///
/// Locking: a read lock on the rule set (written only by
/// [`replace_rules`](Budgets::replace_rules)), then one short mutex per
/// matching rule, held for a hash lookup and an addition. No I/O, and no
/// allocation on the path of a request that is allowed.
pub struct Budgets {
    state: RwLock<State>,
    max_values: usize,
}

struct State {
    tz: TimeZone,
    rules: Vec<RuleState>,
}

struct RuleState {
    rule: BudgetRule,
    slots: Mutex<Slots>,
}

#[derive(Default)]
struct Slots {
    /// The counter of a global budget or of a budget for one given value.
    fixed: Option<Counter>,
    /// Per-value budgets: one counter per value seen in the current window.
    values: HashMap<Box<str>, Counter>,
    /// The newest window any record fell in: older records no longer
    /// count, and values whose counters are older are dropped.
    latest: Option<(Timestamp, Timestamp)>,
    /// The per-value cap was hit in the `latest` window and said so.
    overflow_logged: bool,
}

#[derive(Debug, Clone, Copy)]
struct Counter {
    start: Timestamp,
    end: Timestamp,
    spent: Usd,
    /// An alert budget reported its crossing in this window.
    alerted: bool,
    /// The newest record, to place the counter again when the time zone
    /// changes.
    last: Timestamp,
}

impl Counter {
    fn new((start, end): (Timestamp, Timestamp)) -> Self {
        Counter {
            start,
            end,
            spent: Usd::ZERO,
            alerted: false,
            last: start,
        }
    }

    fn current(&self, now: Timestamp) -> bool {
        self.start <= now && now < self.end
    }
}

/// Which counter of a rule a request or record belongs to.
#[derive(Clone, Copy)]
enum Hit<'a> {
    Fixed,
    Value(&'a str),
}

fn hit<'a>(
    rule: &BudgetRule,
    value_of: impl FnOnce(Dimension) -> Option<&'a str>,
) -> Option<Hit<'a>> {
    let Some(dim) = rule.dimension else {
        return Some(Hit::Fixed);
    };
    let v = value_of(dim)?;
    match &rule.value {
        Some(want) => (want == v).then_some(Hit::Fixed),
        None => Some(Hit::Value(v)),
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Counters are plain numbers, consistent after any panic: keep counting.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl RuleState {
    fn exceeded(&self, hit: Hit<'_>, c: &Counter) -> Exceeded {
        Exceeded {
            budget: self.rule.name.clone(),
            dimension: self.rule.dimension,
            value: match hit {
                Hit::Fixed => self.rule.dimension.and(self.rule.value.clone()),
                Hit::Value(v) => Some(v.to_owned()),
            },
            limit: self.rule.limit,
            spent: c.spent,
            window_start: c.start,
            resets_at: c.end,
        }
    }

    /// The counter `hit` names if it is in the window containing `now`, else
    /// a zero one for that window (computed only when asked for, since only
    /// a zero limit makes an empty counter exhausted).
    fn current(&self, slots: &Slots, hit: Hit<'_>, now: Timestamp) -> Option<Counter> {
        let c = match hit {
            Hit::Fixed => slots.fixed,
            Hit::Value(v) => slots.values.get(v).copied(),
        };
        c.filter(|c| c.current(now))
    }

    fn exhausted(
        &self,
        slots: &Slots,
        hit: Hit<'_>,
        now: Timestamp,
        tz: &TimeZone,
    ) -> Option<Counter> {
        match self.current(slots, hit, now) {
            Some(c) => (c.spent >= self.rule.limit).then_some(c),
            None if self.rule.limit <= Usd::ZERO => {
                Some(Counter::new(self.rule.window.bounds(now, tz)))
            }
            None => None,
        }
    }
}

impl Slots {
    /// Moves to a newer window: counters of older windows are dropped.
    fn roll(&mut self, w: (Timestamp, Timestamp)) {
        self.latest = Some(w);
        self.overflow_logged = false;
        self.values.retain(|_, c| c.end > w.0);
        if self.fixed.is_some_and(|c| c.end <= w.0) {
            self.fixed = None;
        }
    }
}

/// Adds one record to a counter; returns whether an alert budget crossed
/// its limit just now.
fn apply(
    c: &mut Counter,
    window: (Timestamp, Timestamp),
    spend: &Spend<'_>,
    rule: &BudgetRule,
) -> bool {
    if c.start != window.0 {
        if c.start > window.0 {
            return false;
        }
        *c = Counter::new(window);
    }
    c.spent += spend.cost;
    c.last = c.last.max(spend.at);
    // `>=` rather than "was below, is now at or above": a limit lowered
    // under the spend by a reload alerts with the next record.
    if rule.action == Action::Alert && !c.alerted && c.spent >= rule.limit {
        c.alerted = true;
        return true;
    }
    false
}

fn build(rules: Vec<BudgetRule>) -> Vec<RuleState> {
    rules
        .into_iter()
        .map(|rule| RuleState {
            rule,
            slots: Mutex::new(Slots::default()),
        })
        .collect()
}

/// Counters carry over a reload when they count the same thing.
fn same_counters(a: &BudgetRule, b: &BudgetRule) -> bool {
    a.name == b.name && a.window == b.window && a.dimension == b.dimension && a.value == b.value
}

impl Budgets {
    pub fn new(rules: Vec<BudgetRule>, tz: TimeZone) -> Self {
        Budgets {
            state: RwLock::new(State {
                tz,
                rules: build(rules),
            }),
            max_values: DEFAULT_MAX_VALUES,
        }
    }

    /// Caps the distinct values each per-value budget tracks in a window.
    /// Beyond it, spend of new values is not counted for that budget until
    /// the window rolls over (values already tracked still are), and a
    /// warning is logged once per budget and window.
    pub fn with_max_values(mut self, max: usize) -> Self {
        self.max_values = max;
        self
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies a new rule set (config reload). A budget keeps its counters
    /// when its name, window, dimension and value are unchanged; its limit
    /// and action may change. When the time zone changes, kept counters move
    /// to the new zone's window containing their latest record.
    pub fn replace_rules(&self, rules: Vec<BudgetRule>, tz: TimeZone) {
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        let rezone = state.tz != tz;
        let mut old: Vec<Option<RuleState>> = std::mem::take(&mut state.rules)
            .into_iter()
            .map(Some)
            .collect();
        let rules = rules
            .into_iter()
            .map(|rule| {
                let kept = old
                    .iter_mut()
                    .find(|o| o.as_ref().is_some_and(|o| same_counters(&o.rule, &rule)))
                    .and_then(Option::take);
                let mut slots = kept
                    .map(|o| o.slots.into_inner().unwrap_or_else(PoisonError::into_inner))
                    .unwrap_or_default();
                let fixed = slots.fixed.iter_mut();
                for c in fixed.chain(slots.values.values_mut()) {
                    if rezone {
                        let (start, end) = rule.window.bounds(c.last, &tz);
                        c.start = start;
                        c.end = end;
                    }
                    // A raised limit can be crossed again.
                    if c.spent < rule.limit {
                        c.alerted = false;
                    }
                }
                if rezone {
                    // Recomputed by the next record, which also drops
                    // counters of older windows.
                    slots.latest = None;
                }
                RuleState {
                    rule,
                    slots: Mutex::new(slots),
                }
            })
            .collect();
        state.rules = rules;
        state.tz = tz;
    }

    /// Counts a served request's cost in every budget it falls under, in the
    /// window containing `spend.at`. A record older than the newest window a
    /// budget has seen is not counted (its window is over).
    ///
    /// Returns the alert budgets that reached their limit with this record,
    /// each at most once per window and counter.
    pub fn record(&self, spend: &Spend<'_>) -> Vec<Exceeded> {
        let state = self.read();
        let mut crossed = Vec::new();
        for r in &state.rules {
            let Some(hit) = hit(&r.rule, |d| d.of_spend(spend)) else {
                continue;
            };
            let mut slots = lock(&r.slots);
            let window = match slots.latest {
                Some((start, end)) if start <= spend.at && spend.at < end => (start, end),
                Some((start, _)) if spend.at < start => continue,
                _ => {
                    let w = r.rule.window.bounds(spend.at, &state.tz);
                    slots.roll(w);
                    w
                }
            };
            let counter = match hit {
                Hit::Fixed => slots.fixed.get_or_insert_with(|| Counter::new(window)),
                Hit::Value(v) => {
                    if !slots.values.contains_key(v) {
                        if slots.values.len() >= self.max_values {
                            if !slots.overflow_logged {
                                slots.overflow_logged = true;
                                tracing::warn!(
                                    budget = %r.rule.name,
                                    max_values = self.max_values,
                                    "budget tracks too many distinct values; new ones are not counted until the window resets"
                                );
                            }
                            continue;
                        }
                        slots.values.insert(v.into(), Counter::new(window));
                    }
                    match slots.values.get_mut(v) {
                        Some(c) => c,
                        None => continue,
                    }
                }
            };
            if apply(counter, window, spend, &r.rule) {
                let c = *counter;
                crossed.push(r.exceeded(hit, &c));
            }
        }
        crossed
    }

    /// The verdict for a request before routing. Every matching budget is
    /// considered: an exhausted `Reject` budget wins (the one that resets
    /// last, as the request stays refused until then); else the first
    /// exhausted `Downgrade` budget in rule order, unless the request
    /// already asks for its target model. `Alert` budgets never block.
    ///
    /// Allocation-free unless the verdict is not `Allow`.
    pub fn check(&self, who: &Subject<'_>, now: Timestamp) -> Verdict {
        let state = self.read();
        let mut reject: Option<(&RuleState, Hit<'_>, Counter)> = None;
        let mut downgrade: Option<(&RuleState, Hit<'_>, Counter, &str)> = None;
        for r in &state.rules {
            match &r.rule.action {
                Action::Alert => continue,
                Action::Downgrade { .. } if downgrade.is_some() => continue,
                _ => {}
            }
            let Some(hit) = hit(&r.rule, |d| d.of_subject(who)) else {
                continue;
            };
            let exhausted = {
                let slots = lock(&r.slots);
                r.exhausted(&slots, hit, now, &state.tz)
            };
            let Some(c) = exhausted else {
                continue;
            };
            match &r.rule.action {
                Action::Reject => {
                    if reject.is_none_or(|(_, _, best)| c.end > best.end) {
                        reject = Some((r, hit, c));
                    }
                }
                Action::Downgrade { to } => downgrade = Some((r, hit, c, to)),
                Action::Alert => {}
            }
        }
        if let Some((r, hit, c)) = reject {
            return Verdict::Reject(r.exceeded(hit, &c));
        }
        match downgrade {
            // Already on the cheaper model: downgrading again would loop.
            Some((_, _, _, to)) if to == who.model => Verdict::Allow,
            Some((r, hit, c, to)) => Verdict::Downgrade {
                exceeded: r.exceeded(hit, &c),
                to: to.to_owned(),
            },
            None => Verdict::Allow,
        }
    }

    /// Whether `provider` is exhausted by a provider budget with `Reject`:
    /// the router skips its targets. Allocation-free when it is not.
    pub fn provider_blocked(&self, provider: &str, now: Timestamp) -> Option<Exceeded> {
        let state = self.read();
        let mut worst: Option<(&RuleState, Hit<'_>, Counter)> = None;
        for r in provider_rules(&state) {
            let Some(hit) = hit(&r.rule, |_| Some(provider)) else {
                continue;
            };
            let exhausted = r.exhausted(&lock(&r.slots), hit, now, &state.tz);
            if let Some(c) = exhausted
                && worst.is_none_or(|(_, _, w)| c.end > w.end)
            {
                worst = Some((r, hit, c));
            }
        }
        worst.map(|(r, hit, c)| r.exceeded(hit, &c))
    }

    /// Every exhausted provider budget with `Reject`, for the providers that
    /// have spent in the current window (a per-provider budget with a zero
    /// limit blocks every provider, which only
    /// [`provider_blocked`](Budgets::provider_blocked) can tell).
    ///
    /// `who` is not used today: provider budgets are not scoped by who asks.
    pub fn blocked_providers(&self, who: &Subject<'_>, now: Timestamp) -> Vec<Exceeded> {
        let _ = who;
        let state = self.read();
        let mut out = Vec::new();
        for r in provider_rules(&state) {
            let slots = lock(&r.slots);
            if r.rule.value.is_some() {
                if let Some(c) = r.exhausted(&slots, Hit::Fixed, now, &state.tz) {
                    out.push(r.exceeded(Hit::Fixed, &c));
                }
                continue;
            }
            for (v, c) in &slots.values {
                if c.current(now) && c.spent >= r.rule.limit {
                    out.push(r.exceeded(Hit::Value(v), c));
                }
            }
        }
        out.sort_by(|a, b| (&a.value, &a.budget).cmp(&(&b.value, &b.budget)));
        out
    }

    /// Every budget's counters in the window containing `now`: one row for a
    /// global or single-value budget, one per value that has spent in the
    /// window for a per-value budget (sorted by value).
    pub fn status(&self, now: Timestamp) -> Vec<BudgetStatus> {
        let state = self.read();
        let mut out = Vec::new();
        for r in &state.rules {
            let (start, end) = r.rule.window.bounds(now, &state.tz);
            let row = |value: Option<String>, spent: Usd| BudgetStatus {
                name: r.rule.name.clone(),
                dimension: r.rule.dimension,
                value,
                window: r.rule.window,
                window_start: start,
                window_end: end,
                limit: r.rule.limit,
                spent,
                remaining: if spent >= r.rule.limit {
                    Usd::ZERO
                } else {
                    r.rule.limit - spent
                },
                exhausted: spent >= r.rule.limit,
                action: r.rule.action.clone(),
            };
            let slots = lock(&r.slots);
            if r.rule.dimension.is_none() || r.rule.value.is_some() {
                let spent = slots
                    .fixed
                    .filter(|c| c.current(now))
                    .map_or(Usd::ZERO, |c| c.spent);
                out.push(row(r.rule.dimension.and(r.rule.value.clone()), spent));
                continue;
            }
            let mut values: Vec<(&str, Usd)> = slots
                .values
                .iter()
                .filter(|(_, c)| c.current(now))
                .map(|(v, c)| (&**v, c.spent))
                .collect();
            values.sort_unstable();
            out.extend(
                values
                    .into_iter()
                    .map(|(v, spent)| row(Some(v.to_owned()), spent)),
            );
        }
        out
    }

    /// Counters held, all rules together (memory bound tests).
    #[cfg(test)]
    pub(crate) fn tracked(&self) -> usize {
        self.read()
            .rules
            .iter()
            .map(|r| {
                let s = lock(&r.slots);
                s.values.len() + usize::from(s.fixed.is_some())
            })
            .sum()
    }

    /// The time zone windows are aligned in.
    pub fn time_zone(&self) -> TimeZone {
        self.read().tz.clone()
    }
}

fn provider_rules(state: &State) -> impl Iterator<Item = &RuleState> {
    state.rules.iter().filter(|r| {
        r.rule.dimension == Some(Dimension::Provider) && r.rule.action == Action::Reject
    })
}

impl std::fmt::Debug for Budgets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.read();
        f.debug_struct("Budgets")
            .field("tz", &state.tz)
            .field(
                "rules",
                &state.rules.iter().map(|r| &r.rule).collect::<Vec<_>>(),
            )
            .finish()
    }
}
