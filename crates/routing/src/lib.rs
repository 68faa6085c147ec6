//! The routing brain: which targets may serve a requested model, in which
//! order, and whether each is healthy enough to try now. A pure library: no
//! I/O, no bus, no HTTP; the router's attempt loop drives it.
//!
//! - [`RouteTable`] resolves a client's `model` to a [`Plan`]: its
//!   [`Route`]s in config order plus the model's strategy, retry, hedge and
//!   timeout settings. Built from a config and swapped whole on reload.
//! - [`RequestFacts::from_spec`] estimates a request's size and the
//!   capabilities it needs.
//! - [`Health`] keeps per-[`Target`] state that survives reloads: in-flight
//!   counts, cooldowns after 429/overloaded, circuit breakers, and
//!   time-to-first-token and output-speed (tokens per second) statistics.
//! - [`order`] filters a plan's routes by what the request needs, orders
//!   them by strategy and sets aside the unavailable ones;
//!   [`larger_window_only`] narrows them after a "context too long" answer.
//! - [`RoutingControls`] narrow and reorder a plan for one request
//!   (OpenRouter's `models` / `provider` fields, `x-switchyard-route`).
//! - [`backoff`] and [`hedge_delay`] say how long to wait.

mod controls;
mod facts;
mod health;
mod order;
mod table;
mod timing;

pub use controls::{
    ControlError, DataCollection, MaxPrice, ProviderPreferences, ROUTE_HEADER, RetryOverride,
    RouteOverride, RoutingControls, Sort, TargetSpec,
};
pub use facts::RequestFacts;
pub use health::{Admission, BreakerState, Failure, Health, InFlight, TargetHealth};
pub use order::{Ordering, SkipReason, Unroutable, larger_window_only, order};
pub use table::{Caps, ListedModel, Plan, Route, RouteTable, Target};
pub use timing::{backoff, hedge_delay};

#[cfg(test)]
mod tests;
