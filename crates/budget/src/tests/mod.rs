#![allow(clippy::unwrap_used, clippy::expect_used)]

mod budgets;
mod spikes;

use jiff::Timestamp;
use switchyard_pricing::Usd;

use crate::Spend;

pub(crate) fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

pub(crate) fn usd(s: &str) -> Usd {
    s.parse().unwrap()
}

/// A record with only a key and a model.
pub(crate) fn spend<'a>(at: &str, key: &'a str, cost: &str) -> Spend<'a> {
    Spend {
        at: ts(at),
        key: Some(key),
        team: None,
        user: None,
        model: "gpt-4o",
        provider: Some("openai"),
        cost: usd(cost),
    }
}
