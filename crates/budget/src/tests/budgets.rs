use jiff::tz::TimeZone;

use super::{spend, ts, usd};
use crate::*;

fn rule(
    name: &str,
    dim: Option<Dimension>,
    value: Option<&str>,
    limit: &str,
    action: Action,
) -> BudgetRule {
    BudgetRule {
        name: name.to_owned(),
        dimension: dim,
        value: value.map(str::to_owned),
        window: Window::Daily,
        limit: usd(limit),
        action,
    }
}

fn key(k: &str) -> Subject<'_> {
    Subject {
        key: Some(k),
        team: None,
        user: None,
        model: "gpt-4o",
    }
}

const NOON: &str = "2025-06-15T12:00:00Z";

fn rejected_by(v: Verdict) -> String {
    match v {
        Verdict::Reject(e) => e.budget,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[test]
fn per_value_specific_value_and_global() {
    let b = Budgets::new(
        vec![
            rule("each-key", Some(Dimension::Key), None, "10", Action::Reject),
            rule(
                "key-a",
                Some(Dimension::Key),
                Some("a"),
                "5",
                Action::Reject,
            ),
            rule("all", None, None, "18", Action::Reject),
        ],
        TimeZone::UTC,
    );
    let now = ts(NOON);
    b.record(&spend("2025-06-15T08:00:00Z", "a", "5"));
    // "a" hit its own budget, "b" is untouched.
    let e = match b.check(&key("a"), now) {
        Verdict::Reject(e) => e,
        v => panic!("{v:?}"),
    };
    assert_eq!(
        (e.budget.as_str(), e.value.as_deref()),
        ("key-a", Some("a"))
    );
    assert_eq!(e.spent, usd("5"));
    assert_eq!(b.check(&key("b"), now), Verdict::Allow);
    // Per-value: each key has 10 of its own.
    b.record(&spend("2025-06-15T08:00:00Z", "b", "9.99"));
    assert_eq!(b.check(&key("b"), now), Verdict::Allow);
    b.record(&spend("2025-06-15T08:00:01Z", "c", "3"));
    assert_eq!(b.check(&key("c"), now), Verdict::Allow);
    // Global: 5 + 9.99 + 3 = 17.99 < 18 ...
    assert_eq!(b.check(&key("d"), now), Verdict::Allow);
    b.record(&spend("2025-06-15T08:00:02Z", "c", "0.01"));
    // ... and now everyone is refused, including a key never seen.
    assert_eq!(rejected_by(b.check(&key("d"), now)), "all");
    // A request without a key is not under per-key budgets but is under
    // the global one.
    let anon = Subject {
        key: None,
        team: None,
        user: None,
        model: "gpt-4o",
    };
    assert_eq!(rejected_by(b.check(&anon, now)), "all");
}

#[test]
fn rejects_at_exactly_the_limit() {
    let b = Budgets::new(
        vec![rule("k", Some(Dimension::Key), None, "1", Action::Reject)],
        TimeZone::UTC,
    );
    b.record(&spend("2025-06-15T08:00:00Z", "a", "0.999999999999"));
    assert_eq!(b.check(&key("a"), ts(NOON)), Verdict::Allow);
    b.record(&spend("2025-06-15T08:00:00Z", "a", "0.000000000001"));
    let Verdict::Reject(e) = b.check(&key("a"), ts(NOON)) else {
        panic!("spent == limit must reject");
    };
    assert_eq!(e.spent, e.limit);
    assert_eq!(e.window_start, ts("2025-06-15T00:00:00Z"));
    assert_eq!(e.resets_at, ts("2025-06-16T00:00:00Z"));
    // The next window starts from zero.
    assert_eq!(
        b.check(&key("a"), ts("2025-06-16T00:00:00Z")),
        Verdict::Allow
    );
}

#[test]
fn reject_wins_and_reports_the_budget_that_resets_last() {
    let mut monthly = rule("monthly", Some(Dimension::Key), None, "1", Action::Reject);
    monthly.window = Window::Monthly;
    let b = Budgets::new(
        vec![
            rule(
                "downgrade",
                Some(Dimension::Key),
                None,
                "1",
                Action::Downgrade { to: "mini".into() },
            ),
            rule("daily", Some(Dimension::Key), None, "1", Action::Reject),
            monthly,
            rule("alert", None, None, "0.5", Action::Alert),
        ],
        TimeZone::UTC,
    );
    b.record(&spend("2025-06-15T08:00:00Z", "a", "1"));
    let Verdict::Reject(e) = b.check(&key("a"), ts(NOON)) else {
        panic!()
    };
    assert_eq!(e.budget, "monthly");
    assert_eq!(e.resets_at, ts("2025-07-01T00:00:00Z"));
}

#[test]
fn downgrade_and_no_loop() {
    let b = Budgets::new(
        vec![
            rule(
                "team-soft",
                Some(Dimension::Team),
                None,
                "2",
                Action::Downgrade {
                    to: "gpt-4o-mini".into(),
                },
            ),
            rule(
                "team-other",
                Some(Dimension::Team),
                None,
                "1",
                Action::Downgrade { to: "other".into() },
            ),
            rule(
                "team-alert",
                Some(Dimension::Team),
                None,
                "1",
                Action::Alert,
            ),
        ],
        TimeZone::UTC,
    );
    let team = |model| Subject {
        key: None,
        team: Some("ml"),
        user: None,
        model,
    };
    let s = Spend {
        team: Some("ml"),
        ..spend("2025-06-15T08:00:00Z", "a", "1.5")
    };
    b.record(&s);
    // Only "team-other" is exhausted; the alert budget is too but never blocks.
    match b.check(&team("gpt-4o"), ts(NOON)) {
        Verdict::Downgrade { exceeded, to } => {
            assert_eq!(
                (exceeded.budget.as_str(), to.as_str()),
                ("team-other", "other")
            );
            assert_eq!(exceeded.value.as_deref(), Some("ml"));
        }
        v => panic!("{v:?}"),
    }
    b.record(&s);
    // Both exhausted: the first in rule order decides.
    match b.check(&team("gpt-4o"), ts(NOON)) {
        Verdict::Downgrade { to, .. } => assert_eq!(to, "gpt-4o-mini"),
        v => panic!("{v:?}"),
    }
    // Asking for the downgrade target already: allowed, not downgraded
    // again (not even by the second rule: that would ping-pong).
    assert_eq!(b.check(&team("gpt-4o-mini"), ts(NOON)), Verdict::Allow);
    // Other teams are unaffected.
    let other = Subject {
        team: Some("web"),
        ..team("gpt-4o")
    };
    assert_eq!(b.check(&other, ts(NOON)), Verdict::Allow);
}

#[test]
fn alert_budgets_are_reported_once_per_window() {
    let b = Budgets::new(
        vec![
            rule("alert-each", Some(Dimension::Key), None, "1", Action::Alert),
            rule("reject", Some(Dimension::Key), None, "1", Action::Reject),
        ],
        TimeZone::UTC,
    );
    assert!(
        b.record(&spend("2025-06-15T08:00:00Z", "a", "0.6"))
            .is_empty()
    );
    let crossed = b.record(&spend("2025-06-15T09:00:00Z", "a", "0.6"));
    assert_eq!(
        crossed.len(),
        1,
        "only the alert budget is reported: {crossed:?}"
    );
    let e = &crossed[0];
    assert_eq!(
        (e.budget.as_str(), e.value.as_deref(), e.spent),
        ("alert-each", Some("a"), usd("1.2"))
    );
    // Spending on: no second report in the same window.
    assert!(
        b.record(&spend("2025-06-15T10:00:00Z", "a", "5"))
            .is_empty()
    );
    // Another key crosses on its own.
    assert_eq!(b.record(&spend("2025-06-15T10:00:00Z", "b", "1")).len(), 1);
    // Alert budgets never block.
    assert!(matches!(b.check(&key("a"), ts(NOON)), Verdict::Reject(e) if e.budget == "reject"));
    // Next day: counted from zero, reported again when crossed.
    assert!(
        b.record(&spend("2025-06-16T01:00:00Z", "a", "0.5"))
            .is_empty()
    );
    assert_eq!(
        b.record(&spend("2025-06-16T02:00:00Z", "a", "0.5")).len(),
        1
    );

    let event = AlertEvent::budget_exceeded(e, ts("2025-06-15T09:00:00Z"));
    assert_eq!(
        event.id,
        "budget_exceeded:alert-each:a:2025-06-15T00:00:00Z"
    );
    assert_eq!(event.kind, AlertKind::BudgetExceeded);
    assert_eq!(event.limit_or_threshold, Some(usd("1")));
}

#[test]
fn rollover_resets_and_late_records_do_not_count() {
    let b = Budgets::new(
        vec![rule("k", Some(Dimension::Key), None, "1", Action::Reject)],
        TimeZone::UTC,
    );
    b.record(&spend("2025-06-15T23:59:59Z", "a", "1"));
    assert!(matches!(
        b.check(&key("a"), ts("2025-06-15T23:59:59.5Z")),
        Verdict::Reject(_)
    ));
    assert_eq!(
        b.check(&key("a"), ts("2025-06-16T00:00:00Z")),
        Verdict::Allow
    );
    b.record(&spend("2025-06-16T00:00:01Z", "a", "0.5"));
    // A record from yesterday arriving late (another router, a slow
    // request) does not count today.
    b.record(&spend("2025-06-15T23:00:00Z", "a", "0.5"));
    assert_eq!(
        b.check(&key("a"), ts("2025-06-16T12:00:00Z")),
        Verdict::Allow
    );
    let st = b.status(ts("2025-06-16T12:00:00Z"));
    assert_eq!(st.len(), 1);
    assert_eq!(st[0].spent, usd("0.5"));
    // A late record of a value not seen today is not counted either.
    b.record(&spend("2025-06-15T10:00:00Z", "b", "0.5"));
    assert_eq!(b.status(ts("2025-06-16T12:00:00Z")).len(), 1);
    assert_eq!(b.tracked(), 1);
    // Yesterday's counters are dropped, not just ignored, once a record
    // opens a new window.
    for k in ["x", "y", "z"] {
        b.record(&spend("2025-06-16T10:00:00Z", k, "0.1"));
    }
    assert_eq!(b.tracked(), 4);
    b.record(&spend("2025-06-17T00:00:00Z", "a", "0.1"));
    assert_eq!(b.tracked(), 1);
}

#[test]
fn windows_follow_the_time_zone() {
    let ny = TimeZone::get("America/New_York").unwrap();
    let b = Budgets::new(
        vec![rule("k", Some(Dimension::Key), None, "1", Action::Reject)],
        ny,
    );
    // 23:30 on Saturday in New York is Sunday 03:30 UTC: still Saturday's budget.
    b.record(&spend("2025-03-09T04:30:00Z", "a", "1"));
    let Verdict::Reject(e) = b.check(&key("a"), ts("2025-03-09T04:45:00Z")) else {
        panic!()
    };
    assert_eq!(e.window_start, ts("2025-03-08T00:00:00-05:00"));
    assert_eq!(e.resets_at, ts("2025-03-09T00:00:00-05:00"));
    assert_eq!(
        b.check(&key("a"), ts("2025-03-09T05:00:00Z")),
        Verdict::Allow
    );
}

#[test]
fn replace_rules_keeps_counters_of_unchanged_budgets() {
    let b = Budgets::new(
        vec![
            rule("keep", Some(Dimension::Key), None, "10", Action::Reject),
            rule(
                "rewindowed",
                Some(Dimension::Key),
                None,
                "10",
                Action::Reject,
            ),
            rule("alert", None, None, "1", Action::Alert),
        ],
        TimeZone::UTC,
    );
    b.record(&spend("2025-06-15T08:00:00Z", "a", "2"));
    let mut weekly = rule(
        "rewindowed",
        Some(Dimension::Key),
        None,
        "10",
        Action::Reject,
    );
    weekly.window = Window::Weekly;
    b.replace_rules(
        vec![
            rule("new", Some(Dimension::Key), None, "2", Action::Reject),
            rule("keep", Some(Dimension::Key), None, "2", Action::Reject),
            weekly,
            // Raised: can alert again once crossed.
            rule("alert", None, None, "3", Action::Alert),
        ],
        TimeZone::UTC,
    );
    let now = ts(NOON);
    let spent: Vec<(String, Usd)> = b
        .status(now)
        .into_iter()
        .map(|s| (s.name, s.spent))
        .collect();
    assert_eq!(
        spent,
        vec![
            ("keep".to_owned(), usd("2")),
            ("alert".to_owned(), usd("2"))
        ],
        "the new budget and the re-windowed one start empty (and show no per-key rows)"
    );
    // The kept counter meets its new, lower limit.
    assert!(matches!(b.check(&key("a"), now), Verdict::Reject(e) if e.budget == "keep"));
    let crossed = b.record(&spend("2025-06-15T09:00:00Z", "b", "1"));
    assert_eq!(
        crossed
            .iter()
            .map(|e| e.budget.as_str())
            .collect::<Vec<_>>(),
        ["alert"]
    );

    // A time zone change keeps the counters, moved to the new zone's day.
    let tokyo = TimeZone::get("Asia/Tokyo").unwrap();
    b.replace_rules(
        vec![rule(
            "keep",
            Some(Dimension::Key),
            None,
            "2",
            Action::Reject,
        )],
        tokyo,
    );
    let Verdict::Reject(e) = b.check(&key("a"), now) else {
        panic!()
    };
    assert_eq!(e.window_start, ts("2025-06-15T00:00:00+09:00"));
    assert_eq!(e.resets_at, ts("2025-06-16T00:00:00+09:00"));
}

#[test]
fn provider_budgets_block_providers_not_requests() {
    let b = Budgets::new(
        vec![
            rule(
                "each-provider",
                Some(Dimension::Provider),
                None,
                "5",
                Action::Reject,
            ),
            rule(
                "anthropic",
                Some(Dimension::Provider),
                Some("anthropic"),
                "1",
                Action::Reject,
            ),
            rule(
                "provider-alert",
                Some(Dimension::Provider),
                None,
                "0.1",
                Action::Alert,
            ),
        ],
        TimeZone::UTC,
    );
    let now = ts(NOON);
    b.record(&spend("2025-06-15T08:00:00Z", "a", "5"));
    b.record(&Spend {
        provider: Some("anthropic"),
        ..spend("2025-06-15T08:00:00Z", "a", "1")
    });
    b.record(&Spend {
        provider: Some("gemini"),
        ..spend("2025-06-15T08:00:00Z", "a", "1")
    });
    // Requests are still allowed: the router skips the blocked targets.
    assert_eq!(b.check(&key("a"), now), Verdict::Allow);
    let blocked: Vec<(String, Option<String>)> = b
        .blocked_providers(&key("a"), now)
        .into_iter()
        .map(|e| (e.budget, e.value))
        .collect();
    assert_eq!(
        blocked,
        vec![
            ("anthropic".to_owned(), Some("anthropic".to_owned())),
            ("each-provider".to_owned(), Some("openai".to_owned())),
        ]
    );
    assert!(b.provider_blocked("openai", now).is_some());
    assert!(b.provider_blocked("anthropic", now).is_some());
    assert!(b.provider_blocked("gemini", now).is_none());
    assert!(
        b.provider_blocked("openai", ts("2025-06-16T00:00:00Z"))
            .is_none()
    );
}

#[test]
fn zero_limit_blocks_without_any_spend() {
    let b = Budgets::new(
        vec![rule(
            "frozen",
            Some(Dimension::Team),
            Some("x"),
            "0",
            Action::Reject,
        )],
        TimeZone::UTC,
    );
    let s = Subject {
        key: None,
        team: Some("x"),
        user: None,
        model: "m",
    };
    let Verdict::Reject(e) = b.check(&s, ts(NOON)) else {
        panic!()
    };
    assert_eq!(e.resets_at, ts("2025-06-16T00:00:00Z"));
    assert_eq!(
        b.check(
            &Subject {
                team: Some("y"),
                ..s
            },
            ts(NOON)
        ),
        Verdict::Allow
    );
}

#[test]
fn dimensions_match_their_own_field() {
    let b = Budgets::new(
        vec![
            rule("user", Some(Dimension::User), None, "1", Action::Reject),
            rule(
                "model",
                Some(Dimension::Model),
                Some("o1"),
                "1",
                Action::Downgrade {
                    to: "o1-mini".into(),
                },
            ),
        ],
        TimeZone::UTC,
    );
    let s = Spend {
        user: Some("u1"),
        model: "o1",
        ..spend("2025-06-15T08:00:00Z", "a", "1")
    };
    b.record(&s);
    let who = |user, model| Subject {
        key: Some("a"),
        team: None,
        user,
        model,
    };
    assert!(matches!(
        b.check(&who(Some("u1"), "gpt"), ts(NOON)),
        Verdict::Reject(_)
    ));
    assert_eq!(b.check(&who(Some("u2"), "gpt"), ts(NOON)), Verdict::Allow);
    assert!(matches!(
        b.check(&who(None, "o1"), ts(NOON)),
        Verdict::Downgrade { .. }
    ));
}

#[test]
fn distinct_values_are_capped() {
    let b = Budgets::new(
        vec![rule("k", Some(Dimension::Key), None, "1", Action::Reject)],
        TimeZone::UTC,
    )
    .with_max_values(2);
    for k in ["a", "b", "c"] {
        b.record(&spend("2025-06-15T08:00:00Z", k, "1"));
    }
    // "c" came beyond the cap: not counted this window; "a" and "b" are.
    assert!(matches!(b.check(&key("a"), ts(NOON)), Verdict::Reject(_)));
    assert_eq!(b.check(&key("c"), ts(NOON)), Verdict::Allow);
    // The next window frees the room.
    b.record(&spend("2025-06-16T08:00:00Z", "c", "1"));
    assert!(matches!(
        b.check(&key("c"), ts("2025-06-16T12:00:00Z")),
        Verdict::Reject(_)
    ));
}

#[test]
fn status_lists_counters() {
    let b = Budgets::new(
        vec![
            rule("global", None, None, "10", Action::Alert),
            rule("each", Some(Dimension::Key), None, "1", Action::Reject),
        ],
        TimeZone::UTC,
    );
    b.record(&spend("2025-06-15T08:00:00Z", "b", "1.5"));
    b.record(&spend("2025-06-15T08:00:00Z", "a", "0.25"));
    let st = b.status(ts(NOON));
    let rows: Vec<(&str, Option<&str>, Usd, Usd, bool)> = st
        .iter()
        .map(|s| {
            (
                s.name.as_str(),
                s.value.as_deref(),
                s.spent,
                s.remaining,
                s.exhausted,
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            ("global", None, usd("1.75"), usd("8.25"), false),
            ("each", Some("a"), usd("0.25"), usd("0.75"), false),
            ("each", Some("b"), usd("1.5"), usd("0"), true),
        ]
    );
    let json = serde_json::to_value(&st[2]).unwrap();
    assert_eq!(json["spent"], "1.5");
    assert_eq!(json["window_start"], "2025-06-15T00:00:00Z");
    assert_eq!(json["action"]["type"], "reject");
    assert_eq!(json["dimension"], "key");
}

#[test]
fn validation_names_every_problem() {
    let errors = validate_budgets(&[
        rule("a", None, Some("x"), "1", Action::Reject),
        rule(
            "a",
            Some(Dimension::Provider),
            None,
            "-1",
            Action::Downgrade { to: String::new() },
        ),
        rule("", Some(Dimension::Key), Some(""), "1", Action::Alert),
    ]);
    assert_eq!(
        errors,
        vec![
            RuleError::Duplicate("a".into()),
            RuleError::EmptyName,
            RuleError::ValueWithoutDimension("a".into()),
            RuleError::NegativeLimit("a".into()),
            RuleError::EmptyDowngradeTarget("a".into()),
            RuleError::ProviderDowngrade("a".into()),
            RuleError::EmptyValue(String::new()),
        ]
    );
    assert!(
        validate_budgets(&[rule("ok", Some(Dimension::Key), None, "1", Action::Reject)]).is_empty()
    );
}

#[test]
fn spend_records_round_trip() {
    let s = Spend {
        team: Some("t"),
        ..spend("2025-06-15T08:00:00Z", "a", "0.000123")
    };
    let rec = SpendRecord::from_spend(&s, Some("router-1".into()));
    let json = serde_json::to_string(&rec).unwrap();
    let back: SpendRecord = serde_json::from_str(&json).unwrap();
    assert_eq!(back.as_spend(), s);
    assert!(json.contains("\"cost\":\"0.000123\""), "{json}");
}

#[test]
fn budgets_are_shared_between_threads() {
    fn shared<T: Send + Sync>() {}
    shared::<Budgets>();
    shared::<Spikes>();
    shared::<Notifier>();
    let b = std::sync::Arc::new(Budgets::new(
        vec![rule("all", None, None, "1000", Action::Reject)],
        TimeZone::UTC,
    ));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let b = b.clone();
            std::thread::spawn(move || {
                for _ in 0..1000 {
                    b.record(&spend("2025-06-15T08:00:00Z", "a", "0.25"));
                    let _ = b.check(&key("a"), ts(NOON));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(b.status(ts(NOON))[0].spent, usd("1000"));
}
