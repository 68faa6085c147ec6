//! Unit tests, on explicit instants: the limiter's clock is pinned to a
//! whole Unix second at `t0`, so `at(s)` is exactly `s` seconds later.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use tokio::time::Instant;

use super::*;

/// A whole Unix second (in 2027), so `at(n)` starts second `n`.
const ORIGIN_MS: u64 = 1_800_000_000_000;

struct Fixture {
    limiter: Limiter,
    t0: Instant,
}

impl Fixture {
    fn new(rules: Vec<Rule>) -> Self {
        let t0 = Instant::now();
        Fixture {
            limiter: Limiter::with_clock(rules, t0, ORIGIN_MS),
            t0,
        }
    }

    fn at(&self, secs: f64) -> Instant {
        self.t0 + Duration::from_secs_f64(secs)
    }
}

fn rule(name: &str, dimension: Dimension, rpm: Option<u64>, tpm: Option<u64>) -> Rule {
    Rule {
        name: name.to_owned(),
        dimension,
        value: None,
        rpm,
        tpm,
    }
}

fn subject<'a>(key: &'a str, team: &'a str) -> Subject<'a> {
    Subject {
        key: Some(key),
        team: Some(team),
        user: None,
        model: "gpt-4o",
        roles: &[],
    }
}

const ALICE: Subject<'static> = Subject {
    key: Some("sk-alice"),
    team: Some("red"),
    user: Some("alice"),
    model: "gpt-4o",
    roles: &[],
};

#[test]
fn rpm_refuses_the_request_over_the_limit_and_names_the_rule() {
    let f = Fixture::new(vec![rule("global", Dimension::Global, Some(3), None)]);
    for i in 0..3 {
        let ok = f
            .limiter
            .admit(&ALICE, &[], f.at(1.0))
            .expect("under the limit");
        let h = ok.headers.expect("a rule applied").requests.expect("rpm");
        assert_eq!((h.limit, h.remaining), (3, 2 - i));
    }
    let refused = f.limiter.admit(&ALICE, &[], f.at(1.5)).unwrap_err();
    assert_eq!(refused.rule, "global");
    assert_eq!(refused.what, Exhausted::Requests);
    assert_eq!(refused.limit, 3);
    // Counted in second 1, free at second 61: 59.5 s from 1.5.
    assert_eq!(refused.retry_after, Duration::from_millis(59_500));
    assert_eq!(refused.retry_after_secs(), 60);
    let h = refused.headers.requests.expect("rpm figures");
    assert_eq!((h.limit, h.remaining), (3, 0));
    assert!(refused.to_string().contains("`global`"), "{refused}");
    // A refused request is not counted: still refused, same figures.
    let again = f.limiter.admit(&ALICE, &[], f.at(1.5)).unwrap_err();
    assert_eq!(again.headers, refused.headers);
}

#[test]
fn the_window_slides_and_frees_capacity_when_the_oldest_counts_leave() {
    let f = Fixture::new(vec![rule("global", Dimension::Global, Some(5), None)]);
    for _ in 0..3 {
        f.limiter.admit(&ALICE, &[], f.at(0.2)).unwrap();
    }
    for _ in 0..2 {
        f.limiter.admit(&ALICE, &[], f.at(30.7)).unwrap();
    }
    let refused = f.limiter.admit(&ALICE, &[], f.at(45.0)).unwrap_err();
    assert_eq!(refused.retry_after, Duration::from_secs(15));
    // Just before the first second leaves: still full.
    let refused = f.limiter.admit(&ALICE, &[], f.at(59.999)).unwrap_err();
    assert_eq!(refused.retry_after, Duration::from_millis(1));
    // At 60 s the three of second 0 are gone, the two of second 30 stay.
    for _ in 0..3 {
        f.limiter.admit(&ALICE, &[], f.at(60.0)).unwrap();
    }
    let refused = f.limiter.admit(&ALICE, &[], f.at(60.5)).unwrap_err();
    assert_eq!(refused.retry_after, Duration::from_millis(29_500));
    // Admitted headers tell when capacity next frees: second 30's counts.
    let s = f.limiter.status(&ALICE, &[], f.at(61.0)).unwrap();
    let r = s.requests.unwrap();
    assert_eq!((r.remaining, r.reset), (0, Duration::from_secs(29)));
}

#[test]
fn retry_after_covers_an_overshoot_larger_than_the_oldest_second() {
    // Counts from other routers can push the window over the limit; the
    // retry must wait until enough has left, not just the oldest second.
    let f = Fixture::new(vec![rule("global", Dimension::Global, Some(4), None)]);
    let base = second_of(ORIGIN_MS);
    let count = |sec: u32, req: u32| sync::Count {
        rule: "global".into(),
        dimension: Dimension::Global,
        value: String::new(),
        sec,
        req,
        tok: 0,
    };
    f.limiter.apply_remote(
        &[count(base, 1), count(base + 10, 3), count(base + 20, 2)],
        f.at(20.0),
    );
    // 6 counted, limit 4: must free down to 3, i.e. seconds 0 and 10.
    let refused = f.limiter.admit(&ALICE, &[], f.at(20.0)).unwrap_err();
    assert_eq!(refused.retry_after, Duration::from_secs(50));
}

#[test]
fn tpm_refuses_once_recorded_tokens_reach_the_limit() {
    let f = Fixture::new(vec![rule("tokens", Dimension::Model, None, Some(1000))]);
    f.limiter.admit(&ALICE, &[], f.at(0.0)).unwrap();
    f.limiter.record_tokens(&ALICE, &[], 600, f.at(0.5));
    // 600 < 1000: admitted, whatever this one will use.
    let ok = f.limiter.admit(&ALICE, &[], f.at(10.0)).unwrap();
    let t = ok.headers.unwrap().tokens.unwrap();
    assert_eq!((t.limit, t.remaining), (1000, 400));
    assert_eq!(ok.headers.unwrap().requests, None, "no rpm rule applies");
    f.limiter.record_tokens(&ALICE, &[], 500, f.at(10.0));
    let refused = f.limiter.admit(&ALICE, &[], f.at(20.0)).unwrap_err();
    assert_eq!(refused.rule, "tokens");
    assert_eq!(refused.what, Exhausted::Tokens);
    assert_eq!(refused.limit, 1000);
    // 1100 counted; second 0's 600 leave at 60 s, leaving 500 < 1000.
    assert_eq!(refused.retry_after, Duration::from_secs(40));
    assert_eq!(refused.headers.tokens.unwrap().remaining, 0);
    // Another model has its own counter.
    let other = Subject {
        model: "claude",
        roles: &[],
        ..ALICE
    };
    f.limiter.admit(&other, &[], f.at(20.0)).unwrap();
    f.limiter.admit(&ALICE, &[], f.at(60.0)).unwrap();
}

#[test]
fn rules_for_each_value_keep_separate_counters() {
    let f = Fixture::new(vec![rule("per-team", Dimension::Team, Some(2), None)]);
    let red = subject("k1", "red");
    let blue = subject("k2", "blue");
    f.limiter.admit(&red, &[], f.at(0.0)).unwrap();
    f.limiter.admit(&red, &[], f.at(0.0)).unwrap();
    assert_eq!(
        f.limiter.admit(&red, &[], f.at(0.0)).unwrap_err().rule,
        "per-team"
    );
    f.limiter.admit(&blue, &[], f.at(0.0)).unwrap();
    f.limiter.admit(&blue, &[], f.at(0.0)).unwrap();
    assert!(f.limiter.admit(&blue, &[], f.at(0.0)).is_err());
    // No team: the rule does not apply.
    let teamless = Subject { team: None, ..red };
    for _ in 0..5 {
        assert_eq!(
            f.limiter.admit(&teamless, &[], f.at(0.0)).unwrap().headers,
            None
        );
    }
}

#[test]
fn a_rule_naming_a_value_applies_to_that_value_only() {
    let mut r = rule("alice", Dimension::User, Some(1), None);
    r.value = Some("alice".into());
    let f = Fixture::new(vec![r]);
    f.limiter.admit(&ALICE, &[], f.at(0.0)).unwrap();
    assert!(f.limiter.admit(&ALICE, &[], f.at(0.0)).is_err());
    let bob = Subject {
        user: Some("bob"),
        ..ALICE
    };
    for _ in 0..3 {
        f.limiter.admit(&bob, &[], f.at(0.0)).unwrap();
    }
}

#[test]
fn extra_rules_count_alongside_the_configured_ones() {
    let f = Fixture::new(vec![rule("global", Dimension::Global, Some(100), None)]);
    let key_limit = [rule("key:rpm", Dimension::Key, Some(2), None)];
    let a = subject("k-a", "red");
    let b = subject("k-b", "red");
    let ok = f.limiter.admit(&a, &key_limit, f.at(0.0)).unwrap();
    // The tightest figure is the key's.
    let r = ok.headers.unwrap().requests.unwrap();
    assert_eq!((r.limit, r.remaining), (2, 1));
    f.limiter.admit(&a, &key_limit, f.at(0.0)).unwrap();
    let refused = f.limiter.admit(&a, &key_limit, f.at(0.0)).unwrap_err();
    assert_eq!((refused.rule.as_str(), refused.limit), ("key:rpm", 2));
    f.limiter.admit(&b, &key_limit, f.at(0.0)).unwrap();
    // The configured rule counted the admitted three, not the refused one.
    let g = f
        .limiter
        .status(&a, &[], f.at(0.0))
        .unwrap()
        .requests
        .unwrap();
    assert_eq!(g.remaining, 97);
}

#[test]
fn a_refusal_by_a_later_rule_takes_back_the_earlier_counts() {
    let f = Fixture::new(vec![
        rule("global", Dimension::Global, Some(10), None),
        rule("per-user", Dimension::User, Some(1), None),
    ]);
    f.limiter.admit(&ALICE, &[], f.at(0.0)).unwrap();
    for _ in 0..5 {
        assert_eq!(
            f.limiter.admit(&ALICE, &[], f.at(0.0)).unwrap_err().rule,
            "per-user"
        );
    }
    let anonymous = Subject {
        user: None,
        ..ALICE
    };
    let g = f
        .limiter
        .status(&anonymous, &[], f.at(0.0))
        .unwrap()
        .requests
        .unwrap();
    assert_eq!(g.remaining, 9);
}

/// Another router's `req` requests on the global rule in second 0.
fn remote_count(req: u32) -> sync::Count {
    sync::Count {
        rule: "global".into(),
        dimension: Dimension::Global,
        value: String::new(),
        sec: second_of(ORIGIN_MS),
        req,
        tok: 0,
    }
}

#[test]
fn with_other_routers_each_admits_its_share_of_the_room_until_the_next_sync() {
    let f = Fixture::new(vec![rule("global", Dimension::Global, Some(10), None)]);
    f.limiter.peers.store(1, Ordering::Relaxed);
    f.limiter.apply_remote(&[remote_count(6)], f.at(0.0));
    // Room 4 as last shared, two routers: 2 each until counts are shared.
    f.limiter.admit(&ALICE, &[], f.at(0.1)).unwrap();
    f.limiter.admit(&ALICE, &[], f.at(0.1)).unwrap();
    let refused = f.limiter.admit(&ALICE, &[], f.at(0.1)).unwrap_err();
    assert_eq!(refused.what, Exhausted::Requests);
    assert_eq!(refused.retry_after, DEFAULT_SYNC_INTERVAL);
    assert_eq!(refused.headers.requests.unwrap().remaining, 2);
    // Published: room 2, share 1; then room 1, share 1 (rounded up, so
    // the last unit is not stranded); then the limit itself.
    assert_eq!(f.limiter.take_pending().len(), 1);
    f.limiter.admit(&ALICE, &[], f.at(0.2)).unwrap();
    assert!(f.limiter.admit(&ALICE, &[], f.at(0.2)).is_err());
    f.limiter.take_pending();
    f.limiter.admit(&ALICE, &[], f.at(0.3)).unwrap();
    f.limiter.take_pending();
    let refused = f.limiter.admit(&ALICE, &[], f.at(0.4)).unwrap_err();
    assert_eq!(refused.retry_after, Duration::from_millis(59_600));
    // A counter only this router counts into is not split, even with
    // other routers around: a burst may use the whole limit at once.
    let h = Fixture::new(Vec::new());
    h.limiter.peers.store(1, Ordering::Relaxed);
    let per_key = [rule("key", Dimension::Key, Some(10), None)];
    for _ in 0..10 {
        h.limiter.admit(&ALICE, &per_key, h.at(0.5)).unwrap();
    }
    assert!(h.limiter.admit(&ALICE, &per_key, h.at(0.5)).is_err());
    // Nor once the other routers' counts are older than 2 s.
    let g = Fixture::new(vec![rule("global", Dimension::Global, Some(10), None)]);
    g.limiter.peers.store(1, Ordering::Relaxed);
    g.limiter.apply_remote(&[remote_count(6)], g.at(0.0));
    for _ in 0..4 {
        g.limiter.admit(&ALICE, &[], g.at(3.0)).unwrap();
    }
    assert!(g.limiter.admit(&ALICE, &[], g.at(3.0)).is_err());
}

#[test]
fn set_rules_keeps_the_counters_of_rules_that_stay() {
    let f = Fixture::new(vec![
        rule("global", Dimension::Global, Some(3), None),
        rule("per-key", Dimension::Key, Some(10), None),
    ]);
    f.limiter.admit(&ALICE, &[], f.at(0.0)).unwrap();
    f.limiter.admit(&ALICE, &[], f.at(0.0)).unwrap();
    // Reload: same global rule; the per-key rule's limit lowered to 2.
    f.limiter.set_rules(vec![
        rule("global", Dimension::Global, Some(3), None),
        rule("per-key", Dimension::Key, Some(2), None),
    ]);
    let refused = f.limiter.admit(&ALICE, &[], f.at(1.0)).unwrap_err();
    assert_eq!(refused.rule, "per-key");
    // Per-key dropped: the global one still remembers its two.
    f.limiter
        .set_rules(vec![rule("global", Dimension::Global, Some(3), None)]);
    f.limiter.admit(&ALICE, &[], f.at(1.0)).unwrap();
    assert_eq!(
        f.limiter.admit(&ALICE, &[], f.at(1.0)).unwrap_err().rule,
        "global"
    );
}

#[test]
fn headers_report_the_tightest_limits_in_openai_format() {
    let f = Fixture::new(vec![
        rule("global", Dimension::Global, Some(600), Some(150_000)),
        rule("per-team", Dimension::Team, Some(60), Some(1_000_000)),
    ]);
    f.limiter.admit(&ALICE, &[], f.at(0.25)).unwrap();
    f.limiter.record_tokens(&ALICE, &[], 1200, f.at(0.5));
    let ok = f.limiter.admit(&ALICE, &[], f.at(2.0)).unwrap();
    let h = ok.headers.unwrap();
    assert_eq!(
        h.requests,
        Some(Figures {
            limit: 60,
            remaining: 58,
            reset: Duration::from_secs(58)
        })
    );
    assert_eq!(
        h.tokens,
        Some(Figures {
            limit: 150_000,
            remaining: 148_800,
            reset: Duration::from_secs(58)
        })
    );
    assert_eq!(
        h.pairs(),
        vec![
            ("x-ratelimit-limit-requests", "60".to_owned()),
            ("x-ratelimit-remaining-requests", "58".to_owned()),
            ("x-ratelimit-reset-requests", "58s".to_owned()),
            ("x-ratelimit-limit-tokens", "150000".to_owned()),
            ("x-ratelimit-remaining-tokens", "148800".to_owned()),
            ("x-ratelimit-reset-tokens", "58s".to_owned()),
        ]
    );
    let only_rpm = RateHeaders {
        requests: h.requests,
        tokens: None,
    };
    assert_eq!(only_rpm.pairs().len(), 3);
}

#[test]
fn the_429_headers_carry_retry_after_in_whole_seconds() {
    let f = Fixture::new(vec![rule("global", Dimension::Global, Some(1), None)]);
    f.limiter.admit(&ALICE, &[], f.at(0.0)).unwrap();
    let refused = f.limiter.admit(&ALICE, &[], f.at(58.6)).unwrap_err();
    assert_eq!(refused.retry_after, Duration::from_millis(1400));
    let pairs = refused.header_pairs();
    assert!(
        pairs.contains(&("retry-after", "2".to_owned())),
        "{pairs:?}"
    );
    assert!(
        pairs.contains(&("x-ratelimit-reset-requests", "1.4s".to_owned())),
        "{pairs:?}"
    );
    assert!(pairs.contains(&("x-ratelimit-remaining-requests", "0".to_owned())));
}

#[test]
fn durations_are_formatted_like_openai_and_go() {
    let cases = [
        (Duration::ZERO, "0s"),
        (Duration::from_micros(1), "1ms"),
        (Duration::from_millis(17), "17ms"),
        (Duration::from_millis(999), "999ms"),
        (Duration::from_secs(1), "1s"),
        (Duration::from_millis(1500), "1.5s"),
        (Duration::from_millis(59_413), "59.413s"),
        (Duration::from_millis(8_640), "8.64s"),
        (Duration::from_secs(360), "6m0s"),
        (Duration::from_millis(61_050), "1m1.05s"),
        (Duration::from_secs(3600), "1h0m0s"),
        (Duration::from_secs(3725), "1h2m5s"),
    ];
    for (d, want) in cases {
        assert_eq!(format_duration(d), want, "{d:?}");
    }
}

#[test]
fn idle_counters_are_evicted_after_two_windows() {
    let f = Fixture::new(vec![rule("per-user", Dimension::User, Some(10), None)]);
    for i in 0..50 {
        let user = format!("user-{i}");
        let s = Subject {
            user: Some(&user),
            ..ALICE
        };
        f.limiter.admit(&s, &[], f.at(0.0)).unwrap();
    }
    assert_eq!(f.limiter.counter_count(), 50);
    // Alice keeps coming; the others go quiet.
    for t in [30.0, 60.0, 90.0, 120.0] {
        f.limiter.admit(&ALICE, &[], f.at(t)).unwrap();
    }
    assert_eq!(
        f.limiter.counter_count(),
        51,
        "idle for 120 s is not yet > 2 windows"
    );
    f.limiter.admit(&ALICE, &[], f.at(181.0)).unwrap();
    assert_eq!(f.limiter.counter_count(), 1, "only alice's counter is left");
}

#[test]
fn counts_move_between_limiters_once_and_only_once() {
    let rules = vec![
        rule("global", Dimension::Global, Some(10), Some(10_000)),
        rule("per-team", Dimension::Team, Some(5), None),
    ];
    let a = Fixture::new(rules.clone());
    let b = Limiter::with_clock(rules, a.t0, ORIGIN_MS);
    for _ in 0..3 {
        a.limiter.admit(&ALICE, &[], a.at(5.0)).unwrap();
    }
    a.limiter.record_tokens(&ALICE, &[], 700, a.at(6.0));
    let counts = a.limiter.take_pending();
    assert!(a.limiter.take_pending().is_empty(), "published once");
    // Through the wire format.
    let batch = sync::Batch {
        v: 1,
        node: "a".into(),
        counts,
    };
    let bytes = serde_json::to_vec(&batch).unwrap();
    let decoded: sync::Batch = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(decoded, batch);
    let at = a.at(7.0);
    sync::receive(&b, "b", &bytes, at);
    assert_eq!(b.status(&ALICE, &[], at), a.limiter.status(&ALICE, &[], at));
    let seen = b.status(&ALICE, &[], at).unwrap();
    assert_eq!(seen.requests.unwrap().remaining, 2, "team limit 5, 3 seen");
    assert_eq!(seen.tokens.unwrap().remaining, 9_300);
    // Remote counts are not published again.
    assert!(b.take_pending().is_empty());
    // Own messages and unknown versions are ignored.
    sync::receive(&a.limiter, "a", &bytes, at);
    let v2 = serde_json::to_vec(&sync::Batch { v: 2, ..decoded }).unwrap();
    sync::receive(&b, "b", &v2, at);
    sync::receive(&b, "b", b"not json", at);
    assert_eq!(b.status(&ALICE, &[], at), a.limiter.status(&ALICE, &[], at));
}

#[test]
fn counts_older_than_the_window_are_dropped_and_future_ones_count_now() {
    let f = Fixture::new(vec![rule("global", Dimension::Global, Some(10), None)]);
    let base = second_of(ORIGIN_MS);
    let count = |sec: u32| sync::Count {
        rule: "global".into(),
        dimension: Dimension::Global,
        value: String::new(),
        sec,
        req: 4,
        tok: 0,
    };
    f.limiter
        .apply_remote(&[count(base), count(base + 100)], f.at(70.0));
    let r = f
        .limiter
        .status(&ALICE, &[], f.at(70.0))
        .unwrap()
        .requests
        .unwrap();
    assert_eq!(r.remaining, 6, "only the future count, as of now");
    assert_eq!(r.reset, Duration::from_secs(60));
}

#[tokio::test(start_paused = true)]
async fn works_on_tokios_paused_clock() {
    let limiter = Limiter::new(vec![rule("global", Dimension::Global, Some(2), None)]);
    limiter.admit(&ALICE, &[], Instant::now()).unwrap();
    limiter.admit(&ALICE, &[], Instant::now()).unwrap();
    let refused = limiter.admit(&ALICE, &[], Instant::now()).unwrap_err();
    assert!(refused.retry_after <= Duration::from_secs(60));
    assert!(refused.retry_after > Duration::from_secs(59));
    tokio::time::advance(refused.retry_after).await;
    limiter.admit(&ALICE, &[], Instant::now()).unwrap();
}

/// Cost of one admission with four applying rules (global, per-team,
/// per-key extra, per-model TPM) over 1,000 keys in 10 teams.
///
/// `cargo test --release -p switchyard-ratelimit -- --ignored bench_admit --nocapture`
#[test]
#[ignore = "benchmark; run in release with --nocapture"]
#[allow(clippy::print_stdout)]
fn bench_admit() {
    let limiter = Limiter::new(vec![
        rule("global", Dimension::Global, Some(u64::MAX), None),
        rule("per-team", Dimension::Team, Some(u64::MAX), None),
        rule("per-model", Dimension::Model, None, Some(u64::MAX)),
    ]);
    let extra = [rule("key", Dimension::Key, Some(u64::MAX), None)];
    let keys: Vec<String> = (0..1000).map(|i| format!("sk-{i:04}")).collect();
    let teams: Vec<String> = (0..10).map(|i| format!("team-{i}")).collect();
    let subjects: Vec<Subject<'_>> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| Subject {
            key: Some(k),
            team: Some(&teams[i % 10]),
            user: None,
            model: "gpt-4o",
            roles: &[],
        })
        .collect();
    let now = Instant::now();
    let run = |n: usize| {
        let start = std::time::Instant::now();
        for i in 0..n {
            let ok = limiter.admit(&subjects[i % subjects.len()], &extra, now);
            std::hint::black_box(ok.is_ok());
        }
        start.elapsed().as_nanos() as f64 / n as f64
    };
    run(100_000);
    let mut samples: Vec<f64> = (0..10).map(|_| run(200_000)).collect();
    samples.sort_by(f64::total_cmp);
    println!(
        "admit, 4 rules: best {:.0} ns/op, median {:.0} ns/op",
        samples[0], samples[5]
    );
}

#[test]
fn the_limiter_is_shared_between_threads() {
    fn shared<T: Send + Sync>() {}
    shared::<Limiter>();
    shared::<Limited>();
}

#[test]
fn role_rules_count_callers_with_that_role_together() {
    let interns = Rule {
        value: Some("intern".into()),
        ..rule("interns", Dimension::Role, Some(2), None)
    };
    // A role rule must name its role: without one it never applies.
    let unnamed = rule("any-role", Dimension::Role, Some(1), None);
    let f = Fixture::new(vec![interns, unnamed]);
    let roles = ["reader".to_owned(), "intern".to_owned()];
    let a = Subject {
        roles: &roles,
        ..subject("sk-a", "red")
    };
    let b = Subject {
        roles: &roles[1..],
        ..subject("sk-b", "blue")
    };
    assert!(f.limiter.admit(&a, &[], f.at(1.0)).is_ok());
    assert!(f.limiter.admit(&b, &[], f.at(1.0)).is_ok());
    let refused = f.limiter.admit(&a, &[], f.at(1.0)).unwrap_err();
    assert_eq!(refused.rule, "interns");
    // Callers without the role are not under it.
    for _ in 0..5 {
        assert!(f.limiter.admit(&ALICE, &[], f.at(1.0)).is_ok());
    }
}
