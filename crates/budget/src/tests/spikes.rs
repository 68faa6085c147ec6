use std::time::Duration;

use jiff::{Timestamp, ToSpan};

use super::{ts, usd};
use crate::*;

const MIN: Duration = Duration::from_secs(60);

fn rule(name: &str, dim: Option<Dimension>) -> SpikeRule {
    SpikeRule {
        name: name.to_owned(),
        dimension: dim,
        value: None,
        window: MIN,
        threshold: None,
        factor: None,
        baseline: Duration::from_secs(3600),
        min_spend: Usd::ZERO,
    }
}

fn at(t: Timestamp, key: &str, cost: &str) -> SpendRecord {
    SpendRecord {
        at: t,
        key: Some(key.to_owned()),
        team: None,
        user: None,
        model: "gpt-4o".into(),
        provider: Some("openai".into()),
        cost: usd(cost),
        origin: None,
    }
}

fn rec(s: &Spikes, t: Timestamp, key: &str, cost: &str) -> Vec<AlertEvent> {
    s.record(&at(t, key, cost).as_spend())
}

#[test]
fn threshold_fires_once_per_window_and_again_later() {
    let s = Spikes::new(vec![SpikeRule {
        threshold: Some(usd("10")),
        ..rule("burst", None)
    }]);
    let t0 = ts("2025-06-15T12:00:00Z");
    assert!(rec(&s, t0, "a", "4").is_empty());
    assert!(rec(&s, t0 + 10.seconds(), "b", "4").is_empty());
    // 12 > 10 within the minute.
    let fired = rec(&s, t0 + 20.seconds(), "a", "4");
    assert_eq!(fired.len(), 1);
    let e = &fired[0];
    assert_eq!(e.kind, AlertKind::SpendSpike);
    assert_eq!(e.spent, usd("12"));
    assert_eq!(e.limit_or_threshold, Some(usd("10")));
    assert_eq!(e.baseline, None);
    assert_eq!(e.value, None);
    assert_eq!(
        (e.window_start, e.window_end),
        (t0 - 40.seconds(), t0 + 20.seconds())
    );
    assert_eq!(e.id, "spend_spike:burst:*:2025-06-15T12:00:00Z");
    // Still above, same window: nothing more.
    assert!(rec(&s, t0 + 30.seconds(), "a", "4").is_empty());
    assert!(rec(&s, t0 + 59.seconds(), "a", "4").is_empty());
    // The next window, spend still above (the last minute holds 17): again.
    let again = rec(&s, t0 + 61.seconds(), "a", "1");
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id, "spend_spike:burst:*:2025-06-15T12:01:00Z");
    // Quiet later: the old spend has slid out of the window.
    assert!(rec(&s, t0 + 5.minutes(), "a", "1").is_empty());
}

#[test]
fn per_value_rules_are_isolated() {
    let s = Spikes::new(vec![SpikeRule {
        threshold: Some(usd("5")),
        ..rule("per-key", Some(Dimension::Key))
    }]);
    let t0 = ts("2025-06-15T12:00:00Z");
    let a = rec(&s, t0, "a", "6");
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].value.as_deref(), Some("a"));
    assert!(rec(&s, t0 + 1.second(), "b", "4").is_empty());
    // "a" already alerted this window; "b" crosses on its own spend.
    assert!(rec(&s, t0 + 2.seconds(), "a", "6").is_empty());
    let b = rec(&s, t0 + 3.seconds(), "b", "2");
    assert_eq!(b.len(), 1);
    assert_eq!((b[0].value.as_deref(), b[0].spent), (Some("b"), usd("6")));
    assert_ne!(a[0].id, b[0].id);
}

/// $1 every 5 minutes for two hours, then a burst.
#[test]
fn factor_mode_compares_with_the_baseline() {
    let s = Spikes::new(vec![SpikeRule {
        window: 5 * MIN,
        factor: Some(3.0),
        baseline: Duration::from_secs(3600),
        min_spend: usd("1"),
        ..rule("surge", None)
    }]);
    let t0 = ts("2025-06-15T10:00:00Z");
    for k in 0..=24 {
        let fired = rec(&s, t0 + (5 * k).minutes(), "a", "1");
        assert!(
            fired.is_empty(),
            "steady spend alerted at step {k}: {fired:?}"
        );
    }
    // 12:00 had $1; a $1.5 at 12:01 makes 2.5 in 5 minutes: below 3 × 1.
    assert!(rec(&s, t0 + 121.minutes(), "a", "1.5").is_empty());
    // $4 more: 6.5 > 3.
    let fired = rec(&s, t0 + 122.minutes(), "a", "4");
    assert_eq!(fired.len(), 1, "{fired:?}");
    let e = &fired[0];
    assert_eq!(e.spent, usd("6.5"));
    assert_eq!(e.baseline, Some(usd("1")));
    assert_eq!(e.limit_or_threshold, Some(usd("3")));
    assert_eq!(e.id, "spend_spike:surge:*:2025-06-15T12:00:00Z");
    // Same 5-minute period: once only.
    assert!(rec(&s, t0 + 123.minutes(), "a", "10").is_empty());
    // The next period, still spiking: again.
    assert_eq!(rec(&s, t0 + 126.minutes(), "a", "10").len(), 1);
}

#[test]
fn factor_mode_needs_history_and_ignores_small_amounts() {
    let s = Spikes::new(vec![SpikeRule {
        window: 5 * MIN,
        factor: Some(2.0),
        baseline: Duration::from_secs(3600),
        min_spend: usd("1"),
        ..rule("surge", Some(Dimension::Key))
    }]);
    let t0 = ts("2025-06-15T10:00:00Z");
    // The first spend ever: no history yet to call it unusual.
    assert!(rec(&s, t0, "a", "100").is_empty());
    // Fifty minutes of history later a newcomer's spend is compared with
    // a baseline of zero, but $0.5 is under `min_spend`.
    assert!(rec(&s, t0 + 56.minutes(), "b", "0.5").is_empty());
    // $1 is not.
    let fired = rec(&s, t0 + 57.minutes(), "b", "0.5");
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(fired[0].baseline, Some(Usd::ZERO));
}

#[test]
fn replace_rules_keeps_history_of_unchanged_rules() {
    let r = SpikeRule {
        threshold: Some(usd("10")),
        ..rule("burst", None)
    };
    let s = Spikes::new(vec![r.clone()]);
    let t0 = ts("2025-06-15T12:00:00Z");
    assert!(rec(&s, t0, "a", "8").is_empty());
    // Lower threshold, same window: the $8 still counts.
    s.replace_rules(vec![SpikeRule {
        threshold: Some(usd("5")),
        ..r.clone()
    }]);
    assert_eq!(rec(&s, t0 + 1.second(), "a", "0.01").len(), 1);
    // A different window starts afresh.
    s.replace_rules(vec![SpikeRule {
        threshold: Some(usd("5")),
        window: 2 * MIN,
        ..r
    }]);
    assert!(rec(&s, t0 + 2.seconds(), "a", "0.01").is_empty());
}

#[test]
fn validation() {
    let bad = validate_spikes(&[
        SpikeRule {
            window: Duration::ZERO,
            ..rule("a", None)
        },
        SpikeRule {
            factor: Some(f64::NAN),
            baseline: Duration::from_secs(1),
            ..rule("b", None)
        },
    ]);
    assert_eq!(
        bad,
        vec![
            RuleError::ZeroWindow("a".into()),
            RuleError::NoCondition("a".into()),
            RuleError::BadFactor("b".into()),
            RuleError::ShortBaseline("b".into()),
        ]
    );
}
