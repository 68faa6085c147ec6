//! Route-level resilience: the walk over a plan's targets for one request.
//!
//! Everything that decides *where* an attempt goes and *whether* to try
//! again lives here, before the first byte reaches the client:
//!
//! 1. The plan's routes are filtered (capabilities, context window) and
//!    ordered by the model's strategy; targets cooling down after a 429 or
//!    with an open circuit breaker are skipped ([`switchyard_routing::order`]).
//! 2. Attempts go out one at a time, in that order. A failure another
//!    target might not have (429, overloaded, 5xx, timeout, connection, no
//!    worker) moves to the next target at once; a lost worker is sent again
//!    to the same provider (another replica); a "context too long" answer
//!    moves to routes with a larger window; a 400-class rejection ends the
//!    walk (every target would reject it).
//! 3. Targets that failed transiently (5xx, connection) are tried again when
//!    the others are used up, after an exponential backoff with full jitter,
//!    within the model's attempt budget (`retry.max_attempts`).
//! 4. With a hedge configured, a slow first attempt (no first event after
//!    the hedge delay) gets company: the next target starts too, the first
//!    to answer wins, and the loser is dropped, which cancels it upstream.
//! 5. `first_token_timeout` abandons an attempt that produced nothing.
//!
//! Every outcome feeds the shared [`Health`] (cooldowns, breakers, latency
//! for `fastest`, in-flight counts for `least-busy`).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use switchyard_config::HedgeDelay;
use switchyard_proto::bus::v1::{ErrorKind, UpstreamError};
use switchyard_routing::{Failure, Health, InFlight, Plan, RequestFacts, Route, Target};
use tokio::time::Instant;
use tracing::{Instrument, Span};

use crate::error::GatewayError;
use crate::trace;

/// How often a request is sent again to the same provider after its worker
/// vanished; another replica of the provider usually takes it at once.
const MAX_REDELIVERIES: u32 = 2;

/// The targets a request was sent to, in order (hedges included), and how
/// each attempt that finished ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttemptLog {
    pub targets: Vec<Target>,
    /// Finished attempts: the target and `ok` or the error's code.
    pub outcomes: Vec<(Target, &'static str)>,
    /// Attempts started by hedging.
    pub hedges: u32,
    /// The request's routing controls, when it had any
    /// ([`switchyard_routing::RoutingControls::describe`]).
    pub routing: Option<String>,
}

impl AttemptLog {
    /// `provider/model` of every attempt, comma-separated, for headers.
    pub fn describe(&self) -> String {
        self.targets
            .iter()
            .map(|t| format!("{}/{}", t.provider, t.upstream_model))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// How each finished attempt ended, `provider/model=outcome`
    /// (`ok`, `rate_limit_exceeded`, ...), comma-separated: why the request
    /// moved on from a target.
    pub fn describe_outcomes(&self) -> String {
        self.outcomes
            .iter()
            .map(|(t, o)| format!("{}/{}={o}", t.provider, t.upstream_model))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// What the walk does after a failed attempt.
enum Next {
    /// Another replica of the same provider may serve it.
    SameProvider,
    /// Try the next target now, and this one again later with backoff.
    OtherThenRetry,
    /// Try the next target; this one is done for this request.
    OtherTarget,
    /// Only routes with a larger context window can serve it.
    LargerWindow,
    /// Every target would fail the same way.
    Stop,
}

fn next_step(e: &GatewayError) -> Next {
    match e {
        GatewayError::Upstream { error, .. } => match kind(error) {
            // The target's wire format lacks the operation (embeddings on
            // Anthropic): another route of the model may have it.
            ErrorKind::BadRequest if error.code == UNSUPPORTED_OPERATION => Next::OtherTarget,
            ErrorKind::Connection | ErrorKind::Upstream => Next::OtherThenRetry,
            ErrorKind::RateLimited
            | ErrorKind::Overloaded
            | ErrorKind::Timeout
            | ErrorKind::Auth
            | ErrorKind::NotFound
            | ErrorKind::Internal
            | ErrorKind::Unspecified => Next::OtherTarget,
            ErrorKind::ContextTooLong => Next::LargerWindow,
            ErrorKind::BadRequest => Next::Stop,
        },
        GatewayError::WorkerLost { .. } => Next::SameProvider,
        GatewayError::NoWorker { .. } => Next::OtherTarget,
        GatewayError::MalformedJson(_)
        | GatewayError::InvalidRequest { .. }
        | GatewayError::UnsupportedParameter(_)
        | GatewayError::GuardrailBlocked { .. }
        | GatewayError::GuardrailBlockedAnswer { .. }
        | GatewayError::ModelNotFound(_)
        | GatewayError::PayloadTooLarge { .. }
        | GatewayError::UnknownRoute { .. }
        | GatewayError::MethodNotAllowed { .. }
        | GatewayError::Unroutable(_)
        | GatewayError::AdminForbidden
        | GatewayError::Unauthenticated(_)
        | GatewayError::IdentityProviderUnavailable(_)
        | GatewayError::ModelForbidden { .. }
        | GatewayError::RateLimited { .. }
        | GatewayError::RequestLimit { .. }
        | GatewayError::DeadlineExceeded(_)
        | GatewayError::ShuttingDown
        | GatewayError::BudgetExceeded(_)
        | GatewayError::Internal(_) => Next::Stop,
    }
}

/// The error code of a provider kind without the requested operation
/// (`ProviderError::unsupported`).
const UNSUPPORTED_OPERATION: &str = "unsupported_operation";

fn kind(e: &UpstreamError) -> ErrorKind {
    ErrorKind::try_from(e.kind).unwrap_or(ErrorKind::Unspecified)
}

fn retry_after(e: &UpstreamError) -> Option<Duration> {
    (e.retry_after_ms > 0).then(|| Duration::from_millis(e.retry_after_ms))
}

/// How a failure counts against its target. A missing or lost worker is
/// the bus's trouble, not the upstream's: it does not trip the target's
/// breaker (a NATS restart would otherwise lock healthy targets out for
/// `open_for` after the bus is back), and it is detected fast anyway.
fn failure(e: &GatewayError) -> Failure {
    match e {
        GatewayError::Upstream { error, .. } => match kind(error) {
            ErrorKind::RateLimited => Failure::RateLimited {
                retry_after: retry_after(error),
            },
            ErrorKind::Overloaded => Failure::Overloaded {
                retry_after: retry_after(error),
            },
            ErrorKind::Timeout => Failure::Timeout,
            ErrorKind::Connection => Failure::Connection,
            ErrorKind::Upstream
            | ErrorKind::Auth
            | ErrorKind::NotFound
            | ErrorKind::Internal
            | ErrorKind::Unspecified => Failure::Upstream,
            ErrorKind::BadRequest | ErrorKind::ContextTooLong => Failure::Rejected,
        },
        GatewayError::WorkerLost { .. } | GatewayError::NoWorker { .. } => Failure::Rejected,
        GatewayError::DeadlineExceeded(_) => Failure::Timeout,
        GatewayError::MalformedJson(_)
        | GatewayError::InvalidRequest { .. }
        | GatewayError::UnsupportedParameter(_)
        | GatewayError::GuardrailBlocked { .. }
        | GatewayError::GuardrailBlockedAnswer { .. }
        | GatewayError::ModelNotFound(_)
        | GatewayError::PayloadTooLarge { .. }
        | GatewayError::UnknownRoute { .. }
        | GatewayError::MethodNotAllowed { .. }
        | GatewayError::Unroutable(_)
        | GatewayError::AdminForbidden
        | GatewayError::Unauthenticated(_)
        | GatewayError::IdentityProviderUnavailable(_)
        | GatewayError::ModelForbidden { .. }
        | GatewayError::RateLimited { .. }
        | GatewayError::RequestLimit { .. }
        | GatewayError::ShuttingDown
        | GatewayError::BudgetExceeded(_)
        | GatewayError::Internal(_) => Failure::Rejected,
    }
}

fn first_token_timeout(target: &Target, after: Duration) -> GatewayError {
    GatewayError::Upstream {
        provider: target.provider.to_string(),
        error: UpstreamError {
            kind: ErrorKind::Timeout as i32,
            message: format!("no first token within {after:?} (first_token_timeout)"),
            ..Default::default()
        },
    }
}

/// Half-open probes this request claimed. A probe whose attempt never gave
/// a verdict (not tried, cancelled, or a client-caused rejection) is handed
/// back on drop, so other requests need not wait out `open_for` again.
struct Probes<'a> {
    health: &'a Health,
    unsettled: Vec<Target>,
}

impl Probes<'_> {
    fn settle(&mut self, target: &Target) {
        self.unsettled.retain(|t| t != target);
    }
}

impl Drop for Probes<'_> {
    fn drop(&mut self) {
        for t in &self.unsettled {
            self.health.release_probe(t);
        }
    }
}

type Running<T> = FuturesUnordered<Pin<Box<dyn Future<Output = Finished<T>> + Send>>>;

struct Finished<T> {
    route: Route,
    started: Instant,
    result: Result<T, GatewayError>,
    in_flight: InFlight,
    span: Span,
}

/// A successful walk: the route that answered, its answer, and its in-flight
/// guard (hold it while a stream runs so `least-busy` counts it).
pub(crate) struct Won<T> {
    pub route: Route,
    pub value: T,
    pub in_flight: InFlight,
    /// The attempt's span: hold it while a stream runs, so the attempt
    /// covers the whole answer in the trace.
    pub span: Span,
    /// From the winning attempt's start to its first event (the whole
    /// answer when not streamed).
    pub took: Duration,
}

/// Walks `plan` for one request. `launch` starts one attempt on a route
/// (its argument is the attempt number, from 1) and resolves when the
/// attempt produced its first event or failed; it is called inside the
/// attempt's span. `routing` is the span of the routing decision, ended
/// once the routes are ordered.
pub(crate) async fn walk<T, F, Fut>(
    health: &Health,
    plan: &Plan,
    facts: &RequestFacts,
    log: &mut AttemptLog,
    routing: Span,
    operation: &'static str,
    mut launch: F,
) -> Result<Won<T>, GatewayError>
where
    T: Send + 'static,
    F: FnMut(&Route, u32) -> Fut,
    Fut: Future<Output = Result<T, GatewayError>> + Send + 'static,
{
    let ordering = routing
        .in_scope(|| switchyard_routing::order(plan, facts, health))
        .map_err(GatewayError::Unroutable)?;
    trace::routing_order(&routing, &ordering);
    drop(routing);
    for (target, reason) in &ordering.skipped {
        tracing::debug!(provider = %target.provider, model = %target.upstream_model, %reason, "route skipped");
    }
    let mut probes = Probes {
        health,
        unsettled: ordering.probes,
    };
    let mut queue: VecDeque<Route> = ordering.routes.into();
    let mut retry_later: Vec<Route> = Vec::new();
    let mut tries: HashMap<Target, u32> = HashMap::new();
    let mut redeliveries: HashMap<Target, u32> = HashMap::new();
    let mut running: Running<T> = FuturesUnordered::new();
    let mut last: Option<GatewayError> = None;
    let mut attempts: u32 = 0;
    let budget = plan.retry.max_attempts.max(1);
    let mut hedges_left = plan.hedge.as_ref().map_or(0, |h| h.max_hedges);
    let mut hedge_at: Option<Instant> = None;

    let mut start = |route: Route,
                     running: &mut Running<T>,
                     attempts: &mut u32,
                     log: &mut AttemptLog,
                     redelivery: bool| {
        *attempts += 1;
        let n = tries.entry(route.target.clone()).or_insert(0);
        let kind = if redelivery {
            "redelivery"
        } else if !running.is_empty() {
            "hedge"
        } else if *n > 0 {
            "retry"
        } else if *attempts == 1 {
            "first"
        } else {
            "fallback"
        };
        // Moving to another target never waits; trying one again does.
        let delay = if *n > 0 && !redelivery {
            switchyard_routing::backoff(&plan.retry, *n - 1)
        } else {
            Duration::ZERO
        };
        *n += 1;
        log.targets.push(route.target.clone());
        let in_flight = health.start(&route.target);
        let span = trace::attempt_span(operation, &route.target, *attempts, kind);
        // Launched inside its span, so the work request carries the
        // attempt's trace context to the worker.
        let attempt = span.in_scope(|| launch(&route, *attempts));
        let ftt = plan.first_token_timeout;
        // Made out here so an attempt dropped before its first poll is
        // still marked cancelled.
        let mut outcome = trace::AttemptOutcome::new(span.clone());
        let finished_span = span.clone();
        running.push(Box::pin(
            async move {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                let started = Instant::now();
                let result = match ftt {
                    Some(limit) => match tokio::time::timeout(limit, attempt).await {
                        Ok(r) => r,
                        Err(_) => Err(first_token_timeout(&route.target, limit)),
                    },
                    None => attempt.await,
                };
                outcome.settle(&result);
                Finished {
                    route,
                    started,
                    result,
                    in_flight,
                    span: finished_span,
                }
            }
            .instrument(span),
        ));
    };
    let hedge_delay = |route: &Route| -> Option<Duration> {
        let h = plan.hedge.as_ref()?;
        Some(match h.delay {
            HedgeDelay::Fixed(d) => d,
            HedgeDelay::P95 => health
                .p95_first_token(&route.target)
                .unwrap_or(h.min_delay)
                .max(h.min_delay),
        })
    };

    loop {
        if running.is_empty() {
            if queue.is_empty() && attempts < budget && !retry_later.is_empty() {
                // Everything else is used up: the transient failures get
                // another go, if their targets are still available.
                let again = std::mem::take(&mut retry_later);
                if let Ok(o) = switchyard_routing::order(plan, facts, health) {
                    probes.unsettled.extend(o.probes);
                    queue.extend(
                        o.routes
                            .into_iter()
                            .filter(|r| again.iter().any(|a| a.target == r.target)),
                    );
                }
            }
            let Some(route) = queue.pop_front() else {
                break;
            };
            if attempts >= budget {
                break;
            }
            hedge_at = hedge_delay(&route).map(|d| Instant::now() + d);
            start(route, &mut running, &mut attempts, log, false);
        }
        let hedge_due =
            hedge_at.filter(|_| hedges_left > 0 && !queue.is_empty() && attempts < budget);
        let hedge = async move {
            match hedge_due {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            Some(done) = running.next() => {
                let Finished { route, started, result, in_flight, span } = done;
                match result {
                    Ok(value) => {
                        log.outcomes.push((route.target.clone(), "ok"));
                        let took = started.elapsed();
                        health.record_success(&route.target, took, took);
                        probes.settle(&route.target);
                        // Dropping `running` cancels any hedge still going.
                        return Ok(Won { route, value, in_flight, span, took });
                    }
                    Err(e) => {
                        log.outcomes.push((route.target.clone(), e.class().code.unwrap_or("error")));
                        let f = failure(&e);
                        health.record_failure(&route.target, f);
                        if f.counts() {
                            probes.settle(&route.target);
                        }
                        tracing::warn!(
                            provider = %route.target.provider,
                            model = %route.target.upstream_model,
                            attempt = attempts,
                            error = %e,
                            "attempt failed"
                        );
                        match next_step(&e) {
                            Next::Stop => return Err(e),
                            Next::SameProvider => {
                                let r = redeliveries.entry(route.target.clone()).or_insert(0);
                                if *r < MAX_REDELIVERIES && attempts < budget + MAX_REDELIVERIES {
                                    *r += 1;
                                    // A lost worker is not the request's
                                    // fault: it does not spend the budget.
                                    attempts -= 1;
                                    start(route, &mut running, &mut attempts, log, true);
                                }
                            }
                            Next::OtherThenRetry => retry_later.push(route),
                            Next::OtherTarget => {}
                            Next::LargerWindow => {
                                let rest: Vec<Route> = queue.drain(..).collect();
                                queue = switchyard_routing::larger_window_only(&rest, route.context_window).into();
                            }
                        }
                        last = Some(e);
                    }
                }
            }
            _ = hedge => {
                if let Some(route) = queue.pop_front() {
                    hedges_left -= 1;
                    log.hedges += 1;
                    tracing::info!(provider = %route.target.provider, model = %route.target.upstream_model, "hedging: first attempt is slow");
                    hedge_at = hedge_delay(&route).map(|d| Instant::now() + d);
                    start(route, &mut running, &mut attempts, log, false);
                }
            }
        }
    }
    Err(last.unwrap_or_else(|| {
        GatewayError::Internal(format!("model `{}` has no usable route", plan.model))
    }))
}
