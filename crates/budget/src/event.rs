//! The alert payload sent to webhooks and NATS.

use std::fmt::Write as _;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use switchyard_pricing::Usd;

use crate::types::{Dimension, Exceeded};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    BudgetExceeded,
    SpendSpike,
}

impl AlertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::BudgetExceeded => "budget_exceeded",
            AlertKind::SpendSpike => "spend_spike",
        }
    }
}

/// One alert. Serialized as JSON with amounts as decimal strings and times
/// as RFC 3339.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertEvent {
    /// The same for every router that raises this alert (rule, value and
    /// window, nothing local): receivers de-duplicate on it.
    pub id: String,
    pub kind: AlertKind,
    pub rule: String,
    pub dimension: Option<Dimension>,
    pub value: Option<String>,
    /// Budget: the calendar window. Spike: the span the spend was measured
    /// over, ending at the record that raised it.
    pub window_start: Timestamp,
    pub window_end: Timestamp,
    pub spent: Usd,
    /// Budget: its limit. Spike: the threshold that was exceeded (in factor
    /// mode, factor × baseline).
    pub limit_or_threshold: Option<Usd>,
    /// Spike, factor mode: the usual spend per window.
    pub baseline: Option<Usd>,
    /// When the spend that raised the alert happened.
    pub at: Timestamp,
}

impl AlertEvent {
    /// The alert for an alert budget that [`Budgets::record`] reported.
    ///
    /// [`Budgets::record`]: crate::Budgets::record
    pub fn budget_exceeded(e: &Exceeded, at: Timestamp) -> Self {
        AlertEvent {
            id: alert_id(
                AlertKind::BudgetExceeded,
                &e.budget,
                e.value.as_deref(),
                e.window_start,
            ),
            kind: AlertKind::BudgetExceeded,
            rule: e.budget.clone(),
            dimension: e.dimension,
            value: e.value.clone(),
            window_start: e.window_start,
            window_end: e.resets_at,
            spent: e.spent,
            limit_or_threshold: Some(e.limit),
            baseline: None,
            at,
        }
    }
}

/// `kind:rule:value:window-start`, with `%`, `:` and control characters of
/// the names percent-encoded, so that distinct alerts never share an id and
/// the id is a valid header value (NATS `Nats-Msg-Id`, HTTP) even when a
/// user name comes from a client.
pub(crate) fn alert_id(
    kind: AlertKind,
    rule: &str,
    value: Option<&str>,
    window: Timestamp,
) -> String {
    let mut id = String::with_capacity(64);
    id.push_str(kind.as_str());
    id.push(':');
    escape_into(&mut id, rule);
    id.push(':');
    match value {
        Some(v) => escape_into(&mut id, v),
        None => id.push('*'),
    }
    id.push(':');
    let _ = write!(id, "{window}");
    id
}

fn escape_into(out: &mut String, s: &str) {
    for ch in s.chars() {
        if ch == '%' || ch == ':' || ch == '*' || ch.is_control() {
            let mut buf = [0u8; 4];
            for b in ch.encode_utf8(&mut buf).bytes() {
                let _ = write!(out, "%{b:02X}");
            }
        } else {
            out.push(ch);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unambiguous_and_header_safe() {
        let t: Timestamp = "2025-01-01T00:00:00Z".parse().unwrap();
        let a = alert_id(AlertKind::BudgetExceeded, "a:b", Some("c"), t);
        let b = alert_id(AlertKind::BudgetExceeded, "a", Some("b:c"), t);
        assert_ne!(a, b);
        assert_eq!(a, "budget_exceeded:a%3Ab:c:2025-01-01T00:00:00Z");
        let c = alert_id(AlertKind::SpendSpike, "r", Some("x\r\nNats-Msg-Id: y"), t);
        assert!(!c.chars().any(char::is_control), "{c}");
        assert_ne!(
            alert_id(AlertKind::SpendSpike, "r", None, t),
            alert_id(AlertKind::SpendSpike, "r", Some("*"), t)
        );
    }
}
