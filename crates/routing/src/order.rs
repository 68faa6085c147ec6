//! Choosing the routes for one request: filter by what the request needs,
//! order by the model's strategy, then set aside unavailable targets.

use std::fmt;
use std::time::Duration;

use switchyard_config::{Capability, Strategy};

use crate::{Admission, Caps, Health, Plan, RequestFacts, Route, Target};

/// Output tokens assumed for cost when the client set no `max_tokens`: a
/// typical chat reply, so that output price still weighs in.
const DEFAULT_OUTPUT_TOKENS: u32 = 256;

/// The routes to try for one request, in order, and the ones set aside.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ordering {
    /// Try these, first to last.
    pub routes: Vec<Route>,
    /// Targets left out because they are unavailable right now.
    pub skipped: Vec<(Target, SkipReason)>,
    /// Targets in `routes` whose half-open breaker probe this ordering
    /// claimed. Their attempt's outcome closes or reopens the breaker; one
    /// not attempted (or ended without a verdict) should be given back with
    /// [`Health::release_probe`], else other requests keep off the target
    /// until the probe counts as lost (after `open_for`).
    pub probes: Vec<Target>,
}

/// Why an available-by-config route was left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// After a 429 or overloaded answer.
    CoolingDown { remaining: Duration },
    /// The circuit breaker is open, or half-open with its probe out.
    BreakerOpen { remaining: Duration },
}

impl SkipReason {
    /// Until the target may be tried again (at the earliest).
    pub fn remaining(self) -> Duration {
        match self {
            SkipReason::CoolingDown { remaining } | SkipReason::BreakerOpen { remaining } => {
                remaining
            }
        }
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::CoolingDown { remaining } => {
                write!(f, "cooling down for {} ms", remaining.as_millis())
            }
            SkipReason::BreakerOpen { remaining } => {
                write!(f, "circuit breaker open for {} ms", remaining.as_millis())
            }
        }
    }
}

/// Why no route can take a request. The messages are written for the
/// client: `TooLong` and `Missing` are the request's fault (400),
/// `AllUnavailable` is temporary (503 with Retry-After).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unroutable {
    #[error(
        "the request needs about {estimated} tokens (prompt plus max_tokens) but the largest \
         context window among this model's routes is {largest_window}"
    )]
    TooLong { estimated: u64, largest_window: u32 },
    #[error("no route of this model supports {}", describe(*capability))]
    Missing { capability: Capability },
    #[error(
        "every route of this model is temporarily unavailable (rate limited, overloaded or \
         failing); retry in {} ms",
        retry_after.as_millis()
    )]
    AllUnavailable { retry_after: Duration },
}

impl Unroutable {
    /// True when the request itself cannot be served (400), false when the
    /// targets are only unavailable for now (503).
    pub fn is_client_error(&self) -> bool {
        !matches!(self, Unroutable::AllUnavailable { .. })
    }
}

fn describe(c: Capability) -> &'static str {
    match c {
        Capability::Tools => "tool calling (`tools`)",
        Capability::Vision => "image inputs",
        Capability::JsonSchema => "structured output (`response_format` of type `json_schema`)",
    }
}

/// The routes of `plan` for this request, best first.
///
/// 1. Routes that cannot serve it are dropped: a stated capability set
///    lacking one the request needs, or a stated context window smaller
///    than the estimated prompt plus `max_tokens`. Unknown capabilities or
///    windows never drop a route.
/// 2. The rest are ordered by the plan's strategy (see [`Strategy`]).
/// 3. Targets cooling down or behind an open breaker move to
///    [`Ordering::skipped`]. A half-open breaker's single probe is claimed
///    here: the ordering that gets it keeps the route (and lists it in
///    [`Ordering::probes`]), every concurrent one skips it.
///
/// A plan without routes (config validation forbids them) gives an empty
/// ordering.
pub fn order(plan: &Plan, facts: &RequestFacts, health: &Health) -> Result<Ordering, Unroutable> {
    if plan.routes.is_empty() {
        return Ok(Ordering::default());
    }
    let suitable = suitable(&plan.routes, facts)?;
    let ranked = match plan.strategy {
        Strategy::Fallback => suitable,
        Strategy::Weighted => weighted(suitable),
        Strategy::Cheapest => cheapest(suitable, facts),
        Strategy::Fastest => fastest(suitable, health),
        Strategy::LeastBusy => least_busy(suitable, health),
    };
    available(ranked, health)
}

fn suitable(routes: &[Route], facts: &RequestFacts) -> Result<Vec<Route>, Unroutable> {
    let capable: Vec<&Route> = routes
        .iter()
        .filter(|r| r.capabilities.is_none_or(|c| c.contains(facts.needs)))
        .collect();
    if capable.is_empty() {
        return Err(Unroutable::Missing {
            capability: missing_capability(routes, facts.needs),
        });
    }
    let needed = facts.needed_window();
    let fits: Vec<Route> = capable
        .iter()
        .filter(|r| r.context_window.is_none_or(|w| u64::from(w) >= needed))
        .map(|r| (*r).clone())
        .collect();
    if fits.is_empty() {
        // Every capable route has a known window (unknown ones always fit).
        let largest_window = capable
            .iter()
            .filter_map(|r| r.context_window)
            .max()
            .unwrap_or(0);
        return Err(Unroutable::TooLong {
            estimated: needed,
            largest_window,
        });
    }
    Ok(fits)
}

/// The capability to name when no route has all the request needs: one no
/// route has at all, else (each is somewhere, never together) the first the
/// first route lacks.
fn missing_capability(routes: &[Route], needs: Caps) -> Capability {
    let offered = |c: Capability| {
        routes
            .iter()
            .any(|r| r.capabilities.is_none_or(|rc| rc.has(c)))
    };
    let first_lacking = || {
        routes
            .first()
            .and_then(|r| r.capabilities)
            .and_then(|rc| needs.iter().find(|c| !rc.has(*c)))
    };
    needs
        .iter()
        .find(|c| !offered(*c))
        .or_else(first_lacking)
        .or_else(|| needs.iter().next())
        .unwrap_or(Capability::Tools)
}

/// First pick at random in proportion to weight, the rest in weighted random
/// order after it; weight-0 routes last, in config order.
fn weighted(routes: Vec<Route>) -> Vec<Route> {
    let (mut pool, parked): (Vec<Route>, Vec<Route>) =
        routes.into_iter().partition(|r| r.weight > 0);
    let mut out = Vec::with_capacity(pool.len() + parked.len());
    while !pool.is_empty() {
        let total: u64 = pool.iter().map(|r| u64::from(r.weight)).sum();
        let mut pick = fastrand::u64(0..total);
        let i = pool
            .iter()
            .position(|r| {
                let w = u64::from(r.weight);
                if pick < w {
                    true
                } else {
                    pick -= w;
                    false
                }
            })
            .unwrap_or(0);
        out.push(pool.remove(i));
    }
    out.extend(parked);
    out
}

/// Estimated cost of this request on `route` in USD, when it has a price.
fn estimated_cost(route: &Route, facts: &RequestFacts) -> Option<f64> {
    let price = route.price?;
    let input = f64::from(facts.estimated_prompt_tokens);
    let output = f64::from(facts.max_output_tokens.unwrap_or(DEFAULT_OUTPUT_TOKENS));
    Some((input * price.input_per_mtok + output * price.output_per_mtok) / 1e6)
}

/// Cheapest first (ties in config order), unpriced routes after, in config
/// order.
fn cheapest(routes: Vec<Route>, facts: &RequestFacts) -> Vec<Route> {
    let mut priced = Vec::new();
    let mut unpriced = Vec::new();
    for r in routes {
        match estimated_cost(&r, facts) {
            Some(cost) => priced.push((cost, r)),
            None => unpriced.push(r),
        }
    }
    // Stable: equal costs keep config order.
    priced.sort_by(|a, b| a.0.total_cmp(&b.0));
    priced.into_iter().map(|(_, r)| r).chain(unpriced).collect()
}

/// Unmeasured targets first (so they get measured), then by moving average
/// of time to first token; with probability `exploration` a random route
/// goes first, so a target that was slow and recovered gets noticed.
fn fastest(routes: Vec<Route>, health: &Health) -> Vec<Route> {
    let mut keyed: Vec<(Option<Duration>, Route)> = routes
        .into_iter()
        .map(|r| (health.ewma_first_token(&r.target), r))
        .collect();
    // `None` sorts before any `Some`; the sort is stable, so ties and the
    // unmeasured stay in config order.
    keyed.sort_by_key(|(ewma, _)| *ewma);
    explore(keyed.into_iter().map(|(_, r)| r).collect(), health)
}

/// Highest moving average of output tokens per second first
/// (`provider.sort: throughput`), ties in the given order; unmeasured
/// targets after the measured ones, in the given order. A client asking for
/// throughput wants the target known to generate fastest for its own
/// answer, not a gamble on one nobody timed yet (`fastest`, an operator's
/// standing choice for a model, puts the unmeasured first so they get
/// measured). Unmeasured and stale targets still get measured: by other
/// traffic, by fallbacks, and by exploration as in `fastest`.
pub(crate) fn by_throughput(routes: Vec<Route>, health: &Health) -> Vec<Route> {
    let mut keyed: Vec<(Option<f64>, Route)> = routes
        .into_iter()
        .map(|r| (health.output_rate(&r.target), r))
        .collect();
    keyed.sort_by(|(a, _), (b, _)| match (a, b) {
        (Some(a), Some(b)) => b.total_cmp(a),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    });
    explore(keyed.into_iter().map(|(_, r)| r).collect(), health)
}

/// With probability `exploration`, a random route goes first, so a target
/// that was slow and recovered (or was never measured) gets noticed.
fn explore(mut routes: Vec<Route>, health: &Health) -> Vec<Route> {
    if routes.len() > 1 && fastrand::f64() < health.exploration() {
        let explored = routes.remove(fastrand::usize(..routes.len()));
        routes.insert(0, explored);
    }
    routes
}

/// Fewest requests in flight first; ties in config order.
fn least_busy(routes: Vec<Route>, health: &Health) -> Vec<Route> {
    let mut keyed: Vec<(u32, Route)> = routes
        .into_iter()
        .map(|r| (health.in_flight(&r.target), r))
        .collect();
    keyed.sort_by_key(|(n, _)| *n);
    keyed.into_iter().map(|(_, r)| r).collect()
}

fn available(ranked: Vec<Route>, health: &Health) -> Result<Ordering, Unroutable> {
    let mut ordering = Ordering::default();
    for route in ranked {
        match health.admit(&route.target) {
            Admission::Ready => ordering.routes.push(route),
            Admission::Probe => {
                ordering.probes.push(route.target.clone());
                ordering.routes.push(route);
            }
            Admission::CoolingDown { remaining } => ordering
                .skipped
                .push((route.target, SkipReason::CoolingDown { remaining })),
            Admission::BreakerOpen { remaining } => ordering
                .skipped
                .push((route.target, SkipReason::BreakerOpen { remaining })),
        }
    }
    if ordering.routes.is_empty()
        && let Some(retry_after) = ordering.skipped.iter().map(|(_, s)| s.remaining()).min()
    {
        return Err(Unroutable::AllUnavailable { retry_after });
    }
    Ok(ordering)
}

/// The routes that may serve a request one target answered "context too
/// long" for: those with a known window larger than that target's. When
/// its window is unknown, any route with a known window (a stated window is
/// the only promise of room).
pub fn larger_window_only(routes: &[Route], than: Option<u32>) -> Vec<Route> {
    routes
        .iter()
        .filter(|r| match (r.context_window, than) {
            (Some(w), Some(failed)) => w > failed,
            (Some(_), None) => true,
            (None, _) => false,
        })
        .cloned()
        .collect()
}
