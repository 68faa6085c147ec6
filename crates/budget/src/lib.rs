//! Budgets, spend counters and spend-spike alerts, as a library the router
//! calls.
//!
//! - [`Budgets`]: limits on spend per calendar [`Window`] (daily, ISO
//!   weekly, monthly, aligned in a configured time zone), globally or per
//!   key, team, user, model or provider. [`Budgets::check`] runs before
//!   routing (a few hash lookups under short locks, no I/O, no allocation
//!   when the request is allowed); [`Budgets::record`] runs after each
//!   request, for this router's spend and the spend other routers publish
//!   ([`SpendRecord`] is the owned form for the wire).
//! - [`Spikes`]: alerts when spend over a short sliding window exceeds a
//!   threshold or a multiple of its usual level.
//! - [`Notifier`]: logs every alert and delivers it to a webhook (with
//!   retries) and/or a NATS subject.
//!
//! Budgets count spend that has been recorded: requests already in flight
//! when a budget runs out are served, so spend can overshoot a limit by the
//! cost of those requests (see docs/budgets.md).

mod budgets;
mod event;
mod notify;
mod spikes;
mod types;
mod window;

pub use budgets::{Budgets, DEFAULT_MAX_VALUES};
pub use event::{AlertEvent, AlertKind};
pub use notify::{ALERT_ID_HEADER, ALERT_TARGET, Notifier, NotifierError, RetryPolicy, Webhook};
pub use spikes::{DEFAULT_MAX_SPIKE_VALUES, SpikeRule, Spikes};
pub use types::{
    Action, BudgetRule, BudgetStatus, Dimension, Exceeded, RuleError, Spend, SpendRecord, Subject,
    Verdict, validate_budgets, validate_spikes,
};
pub use window::Window;

// The types the API is made of, so callers need not name these crates'
// versions themselves.
pub use jiff::Timestamp;
pub use jiff::tz::TimeZone;
pub use switchyard_pricing::Usd;
pub use url::Url;

#[cfg(test)]
mod tests;
