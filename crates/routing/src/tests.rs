//! Tests of [`crate::order`]: strategies, filtering, availability.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use switchyard_config::{
    BreakerConfig, Capability, PriceConfig, RetryConfig, RoutingConfig, Strategy,
};

use crate::*;

const MS: Duration = Duration::from_millis(1);
const SEC: Duration = Duration::from_secs(1);

fn route(name: &str) -> Route {
    Route::plain(Target::new("p", name))
}

fn weighted_route(name: &str, weight: u32) -> Route {
    Route {
        weight,
        ..route(name)
    }
}

fn priced(name: &str, input: f64, output: f64) -> Route {
    Route {
        price: Some(PriceConfig {
            input_per_mtok: input,
            output_per_mtok: output,
        }),
        ..route(name)
    }
}

fn windowed(name: &str, window: Option<u32>) -> Route {
    Route {
        context_window: window,
        ..route(name)
    }
}

fn capable(name: &str, caps: &[Capability]) -> Route {
    Route {
        capabilities: Some(caps.iter().copied().collect()),
        ..route(name)
    }
}

fn plan(strategy: Strategy, routes: Vec<Route>) -> Plan {
    Plan {
        model: "m".into(),
        strategy,
        routes: routes.into(),
        retry: RetryConfig::default(),
        hedge: None,
        first_token_timeout: None,
        timeout: None,
        unsupported_params: None,
    }
}

fn facts(prompt: u32, max_output: Option<u32>, needs: Caps) -> RequestFacts {
    RequestFacts {
        estimated_prompt_tokens: prompt,
        max_output_tokens: max_output,
        needs,
    }
}

fn small() -> RequestFacts {
    facts(100, None, Caps::NONE)
}

fn health(exploration: f64) -> Health {
    Health::new(&RoutingConfig {
        breaker: BreakerConfig {
            failure_threshold: 1,
            open_for: SEC * 30,
        },
        default_cooldown: SEC * 5,
        exploration,
    })
}

fn names(o: &Ordering) -> Vec<&str> {
    o.routes.iter().map(|r| &*r.target.upstream_model).collect()
}

fn first(p: &Plan, f: &RequestFacts, h: &Health) -> String {
    order(p, f, h).unwrap().routes[0]
        .target
        .upstream_model
        .to_string()
}

#[test]
fn fallback_keeps_config_order() {
    let p = plan(Strategy::Fallback, vec![route("a"), route("b"), route("c")]);
    let o = order(&p, &small(), &health(0.0)).unwrap();
    assert_eq!(names(&o), ["a", "b", "c"]);
    assert!(o.skipped.is_empty() && o.probes.is_empty());
}

#[test]
fn empty_plan_gives_empty_ordering() {
    let p = plan(Strategy::Fallback, vec![]);
    assert_eq!(order(&p, &small(), &health(0.0)), Ok(Ordering::default()));
}

#[test]
fn weighted_first_pick_follows_weights() {
    fastrand::seed(42);
    let p = plan(
        Strategy::Weighted,
        vec![
            weighted_route("a", 1),
            weighted_route("b", 2),
            weighted_route("c", 7),
            weighted_route("parked", 0),
        ],
    );
    let h = health(0.0);
    let n = 10_000;
    let mut firsts: HashMap<String, u32> = HashMap::new();
    for _ in 0..n {
        let o = order(&p, &small(), &h).unwrap();
        // Every route is there, the parked one last.
        assert_eq!(o.routes.len(), 4);
        assert_eq!(&*o.routes[3].target.upstream_model, "parked");
        *firsts
            .entry(o.routes[0].target.upstream_model.to_string())
            .or_default() += 1;
    }
    for (name, weight) in [("a", 0.1), ("b", 0.2), ("c", 0.7)] {
        let share = f64::from(firsts[name]) / f64::from(n);
        assert!((share - weight).abs() < 0.02, "{name}: {share}");
    }
    assert!(!firsts.contains_key("parked"));
}

#[test]
fn weighted_fallbacks_follow_weights_too() {
    fastrand::seed(7);
    // After the first pick, the second is drawn from the rest by weight.
    let p = plan(
        Strategy::Weighted,
        vec![
            weighted_route("a", 1),
            weighted_route("b", 1),
            weighted_route("c", 2),
        ],
    );
    let h = health(0.0);
    let mut second_after_c: HashMap<String, u32> = HashMap::new();
    for _ in 0..10_000 {
        let o = order(&p, &small(), &h).unwrap();
        if &*o.routes[0].target.upstream_model == "c" {
            *second_after_c
                .entry(o.routes[1].target.upstream_model.to_string())
                .or_default() += 1;
        }
    }
    let a = f64::from(second_after_c["a"]);
    let b = f64::from(second_after_c["b"]);
    assert!((a / (a + b) - 0.5).abs() < 0.03, "{a} vs {b}");
}

#[test]
fn weighted_with_only_parked_routes_keeps_config_order() {
    let p = plan(
        Strategy::Weighted,
        vec![weighted_route("a", 0), weighted_route("b", 0)],
    );
    assert_eq!(
        names(&order(&p, &small(), &health(0.0)).unwrap()),
        ["a", "b"]
    );
}

#[test]
fn cheapest_orders_by_estimated_cost_then_unpriced_in_config_order() {
    let p = plan(
        Strategy::Cheapest,
        vec![
            route("unpriced-1"),
            priced("pricey", 3.0, 15.0),
            priced("cheap-input", 0.1, 20.0),
            route("unpriced-2"),
            priced("cheap-output", 1.0, 1.0),
        ],
    );
    let h = health(0.0);
    // Long prompt, short answer: input price dominates.
    // cheap-input: 0.1*10000 + 20*100 = 3000; cheap-output: 10000+100;
    // pricey: 30000+1500.
    let o = order(&p, &facts(10_000, Some(100), Caps::NONE), &h).unwrap();
    assert_eq!(
        names(&o),
        [
            "cheap-input",
            "cheap-output",
            "pricey",
            "unpriced-1",
            "unpriced-2"
        ]
    );
    // Short prompt, long answer: output price dominates.
    let o = order(&p, &facts(100, Some(10_000), Caps::NONE), &h).unwrap();
    assert_eq!(
        names(&o),
        [
            "cheap-output",
            "pricey",
            "cheap-input",
            "unpriced-1",
            "unpriced-2"
        ]
    );
    // No max_tokens: 256 output tokens assumed. cheap-input: 0.1*1000 +
    // 20*256 = 5220; cheap-output: 1000 + 256 = 1256.
    let o = order(&p, &facts(1000, None, Caps::NONE), &h).unwrap();
    assert_eq!(names(&o)[..2], ["cheap-output", "cheap-input"]);
}

#[test]
fn fastest_prefers_unmeasured_then_lower_ewma() {
    let p = plan(
        Strategy::Fastest,
        vec![
            route("slow"),
            route("fast"),
            route("new-1"),
            route("mid"),
            route("new-2"),
        ],
    );
    let h = health(0.0);
    for (name, ms) in [("slow", 900), ("fast", 100), ("mid", 400)] {
        h.record_success(&Target::new("p", name), MS * ms, SEC);
    }
    let o = order(&p, &small(), &h).unwrap();
    assert_eq!(names(&o), ["new-1", "new-2", "fast", "mid", "slow"]);

    // Once measured, the new ones take their place by speed.
    h.record_success(&Target::new("p", "new-1"), MS * 50, SEC);
    h.record_success(&Target::new("p", "new-2"), MS * 2000, SEC);
    let o = order(&p, &small(), &h).unwrap();
    assert_eq!(names(&o), ["new-1", "fast", "mid", "slow", "new-2"]);
}

#[test]
fn fastest_explores_at_the_configured_rate() {
    fastrand::seed(3);
    let p = plan(Strategy::Fastest, vec![route("slow"), route("fast")]);
    let measure = |h: &Health| {
        h.record_success(&Target::new("p", "slow"), MS * 900, SEC);
        h.record_success(&Target::new("p", "fast"), MS * 100, SEC);
    };
    let never = health(0.0);
    measure(&never);
    assert!((0..1000).all(|_| first(&p, &small(), &never) == "fast"));

    // With exploration 0.2, a random route (either) goes first 20% of the
    // time, so the slow one leads about 10% of requests.
    let sometimes = health(0.2);
    measure(&sometimes);
    let n = 10_000;
    let slow_first = (0..n)
        .filter(|_| first(&p, &small(), &sometimes) == "slow")
        .count();
    let share = slow_first as f64 / n as f64;
    assert!((share - 0.1).abs() < 0.02, "{share}");
}

/// `routes` ranked as `provider.sort: throughput` ranks them.
fn by_throughput(routes: Vec<Route>, h: &Health) -> Vec<String> {
    crate::order::by_throughput(routes, h)
        .iter()
        .map(|r| r.target.upstream_model.to_string())
        .collect()
}

#[test]
fn throughput_ranks_measured_highest_first_then_unmeasured_in_order() {
    let routes = || {
        vec![
            route("new-1"),
            route("slow"),
            route("fast"),
            route("new-2"),
            route("mid"),
        ]
    };
    let h = health(0.0);
    // Nothing measured: the order given.
    assert_eq!(
        by_throughput(routes(), &h),
        ["new-1", "slow", "fast", "new-2", "mid"]
    );
    // 100 output tokens in 10 s, 1 s and 2 s: 10, 100 and 50 per second.
    for (name, ms) in [("slow", 10_000), ("fast", 1000), ("mid", 2000)] {
        h.record_output(&Target::new("p", name), 100, MS * ms);
    }
    assert_eq!(
        by_throughput(routes(), &h),
        ["fast", "mid", "slow", "new-1", "new-2"]
    );
    // A measured one takes its place; equal rates (new-2 and mid, 50 per
    // second) keep the order given.
    h.record_output(&Target::new("p", "new-2"), 50, SEC);
    h.record_output(&Target::new("p", "new-1"), 1000, SEC);
    assert_eq!(
        by_throughput(routes(), &h),
        ["new-1", "fast", "new-2", "mid", "slow"]
    );
    // Time to first token plays no part.
    h.record_success(&Target::new("p", "slow"), MS, MS);
    h.record_success(&Target::new("p", "new-1"), SEC * 9, SEC * 9);
    assert_eq!(by_throughput(routes(), &h)[0], "new-1");
}

#[test]
fn throughput_ranking_explores_and_skips_unavailable_targets() {
    fastrand::seed(5);
    let measure = |h: &Health| {
        h.record_output(&Target::new("p", "slow"), 100, SEC * 10);
        h.record_output(&Target::new("p", "fast"), 100, SEC);
    };
    let routes = || vec![route("slow"), route("fast")];
    let never = health(0.0);
    measure(&never);
    assert!((0..1000).all(|_| by_throughput(routes(), &never)[0] == "fast"));
    // Exploration 0.2: a random route leads 20% of the time, the slow one
    // about 10%.
    let sometimes = health(0.2);
    measure(&sometimes);
    let n = 10_000;
    let slow_first = (0..n)
        .filter(|_| by_throughput(routes(), &sometimes)[0] == "slow")
        .count();
    let share = slow_first as f64 / n as f64;
    assert!((share - 0.1).abs() < 0.02, "{share}");

    // The ranked plan walks as ranked; a target cooling down is skipped.
    let ranked = crate::order::by_throughput(routes(), &never);
    let p = plan(Strategy::Fallback, ranked);
    assert_eq!(
        names(&order(&p, &small(), &never).unwrap()),
        ["fast", "slow"]
    );
    never.record_failure(
        &Target::new("p", "fast"),
        Failure::RateLimited {
            retry_after: Some(SEC),
        },
    );
    let o = order(&p, &small(), &never).unwrap();
    assert_eq!(names(&o), ["slow"]);
    assert_eq!(o.skipped.len(), 1);
}

#[test]
fn least_busy_uses_in_flight_guards() {
    let p = plan(
        Strategy::LeastBusy,
        vec![route("a"), route("b"), route("c")],
    );
    let h = health(0.0);
    let t = |n: &str| Target::new("p", n);
    assert_eq!(names(&order(&p, &small(), &h).unwrap()), ["a", "b", "c"]);
    let a1 = h.start(&t("a"));
    let _a2 = h.start(&t("a"));
    let b1 = h.start(&t("b"));
    assert_eq!(names(&order(&p, &small(), &h).unwrap()), ["c", "b", "a"]);
    drop(a1);
    drop(b1);
    let _c = h.start(&t("c"));
    // a: 1, b: 0, c: 1; ties in config order.
    assert_eq!(names(&order(&p, &small(), &h).unwrap()), ["b", "a", "c"]);
}

#[test]
fn capabilities_filter_keeps_unknown() {
    let p = plan(
        Strategy::Fallback,
        vec![
            capable("text-only", &[]),
            capable("tools", &[Capability::Tools]),
            route("unknown"),
            capable(
                "all",
                &[
                    Capability::Tools,
                    Capability::Vision,
                    Capability::JsonSchema,
                ],
            ),
        ],
    );
    let h = health(0.0);
    let o = order(&p, &facts(10, None, Caps::TOOLS), &h).unwrap();
    assert_eq!(names(&o), ["tools", "unknown", "all"]);
    let o = order(
        &p,
        &facts(10, None, Caps::TOOLS.with(Capability::Vision)),
        &h,
    )
    .unwrap();
    assert_eq!(names(&o), ["unknown", "all"]);
    let o = order(&p, &small(), &h).unwrap();
    assert_eq!(o.routes.len(), 4);
}

#[test]
fn missing_capability_is_named() {
    let h = health(0.0);
    let p = plan(
        Strategy::Fallback,
        vec![capable("a", &[Capability::Tools]), capable("b", &[])],
    );
    let needs = Caps::TOOLS.with(Capability::JsonSchema);
    let err = order(&p, &facts(10, None, needs), &h).unwrap_err();
    assert_eq!(
        err,
        Unroutable::Missing {
            capability: Capability::JsonSchema
        }
    );
    assert!(err.is_client_error());
    assert!(err.to_string().contains("json_schema"), "{err}");

    // Each capability exists somewhere, never together: name what the first
    // route lacks.
    let p = plan(
        Strategy::Fallback,
        vec![
            capable("a", &[Capability::Tools]),
            capable("b", &[Capability::Vision]),
        ],
    );
    let err = order(
        &p,
        &facts(10, None, Caps::TOOLS.with(Capability::Vision)),
        &h,
    )
    .unwrap_err();
    assert_eq!(
        err,
        Unroutable::Missing {
            capability: Capability::Vision
        }
    );
}

#[test]
fn context_window_filter_counts_prompt_and_max_tokens() {
    let p = plan(
        Strategy::Fallback,
        vec![
            windowed("8k", Some(8192)),
            windowed("unknown", None),
            windowed("128k", Some(128_000)),
        ],
    );
    let h = health(0.0);
    let o = order(&p, &facts(8000, Some(192), Caps::NONE), &h).unwrap();
    assert_eq!(names(&o), ["8k", "unknown", "128k"], "an exact fit fits");
    let o = order(&p, &facts(8000, Some(193), Caps::NONE), &h).unwrap();
    assert_eq!(names(&o), ["unknown", "128k"]);
    let o = order(&p, &facts(9000, None, Caps::NONE), &h).unwrap();
    assert_eq!(names(&o), ["unknown", "128k"]);
}

#[test]
fn too_long_for_every_window() {
    let p = plan(
        Strategy::Fallback,
        vec![windowed("4k", Some(4096)), windowed("8k", Some(8192))],
    );
    let err = order(&p, &facts(9000, None, Caps::NONE), &health(0.0)).unwrap_err();
    assert_eq!(
        err,
        Unroutable::TooLong {
            estimated: 9000,
            largest_window: 8192
        }
    );
    assert!(err.is_client_error());
    assert_eq!(
        err.to_string(),
        "the request needs about 9000 tokens (prompt plus max_tokens) but the largest context \
         window among this model's routes is 8192"
    );
    // max_tokens near u32::MAX does not overflow.
    let err = order(
        &p,
        &facts(u32::MAX, Some(u32::MAX), Caps::NONE),
        &health(0.0),
    )
    .unwrap_err();
    assert!(
        matches!(err, Unroutable::TooLong { estimated, .. } if estimated == 2 * u64::from(u32::MAX))
    );
}

#[test]
fn too_long_beats_missing_when_a_capable_route_is_too_small() {
    let p = plan(
        Strategy::Fallback,
        vec![
            Route {
                context_window: Some(4096),
                ..capable("small-tools", &[Capability::Tools])
            },
            Route {
                context_window: Some(200_000),
                ..capable("big-no-tools", &[])
            },
        ],
    );
    let err = order(&p, &facts(9000, None, Caps::TOOLS), &health(0.0)).unwrap_err();
    assert_eq!(
        err,
        Unroutable::TooLong {
            estimated: 9000,
            largest_window: 4096
        }
    );
}

#[tokio::test(start_paused = true)]
async fn cooling_and_open_targets_are_skipped_with_reasons() {
    let p = plan(
        Strategy::Fallback,
        vec![route("limited"), route("broken"), route("ok")],
    );
    let h = health(0.0);
    let t = |n: &str| Target::new("p", n);
    h.record_failure(
        &t("limited"),
        Failure::RateLimited {
            retry_after: Some(SEC * 2),
        },
    );
    h.record_failure(&t("broken"), Failure::Connection);
    let o = order(&p, &small(), &h).unwrap();
    assert_eq!(names(&o), ["ok"]);
    // `limited` also had its breaker opened (threshold 1, 30 s): the longer
    // of the two is what keeps it out.
    assert_eq!(
        o.skipped,
        [
            (
                t("limited"),
                SkipReason::BreakerOpen {
                    remaining: SEC * 30
                }
            ),
            (
                t("broken"),
                SkipReason::BreakerOpen {
                    remaining: SEC * 30
                }
            ),
        ]
    );
    assert_eq!(
        o.skipped[1].1.to_string(),
        "circuit breaker open for 30000 ms"
    );
}

#[tokio::test(start_paused = true)]
async fn cooldown_alone_is_reported_as_cooling_down() {
    let p = plan(Strategy::Fallback, vec![route("limited"), route("ok")]);
    let h = Health::new(&RoutingConfig::default()); // threshold 5
    h.record_failure(
        &Target::new("p", "limited"),
        Failure::RateLimited { retry_after: None },
    );
    let o = order(&p, &small(), &h).unwrap();
    assert_eq!(names(&o), ["ok"]);
    assert_eq!(
        o.skipped[0].1,
        SkipReason::CoolingDown { remaining: SEC * 5 }
    );
    assert_eq!(o.skipped[0].1.to_string(), "cooling down for 5000 ms");
    tokio::time::advance(SEC * 5).await;
    assert_eq!(names(&order(&p, &small(), &h).unwrap()), ["limited", "ok"]);
}

#[tokio::test(start_paused = true)]
async fn all_unavailable_reports_the_soonest_return() {
    let p = plan(Strategy::Fallback, vec![route("a"), route("b")]);
    let h = Health::new(&RoutingConfig::default()); // threshold 5
    h.record_failure(
        &Target::new("p", "a"),
        Failure::RateLimited {
            retry_after: Some(SEC * 9),
        },
    );
    h.record_failure(
        &Target::new("p", "b"),
        Failure::Overloaded {
            retry_after: Some(SEC * 3),
        },
    );
    let err = order(&p, &small(), &h).unwrap_err();
    assert_eq!(
        err,
        Unroutable::AllUnavailable {
            retry_after: SEC * 3
        }
    );
    assert!(!err.is_client_error());
    tokio::time::advance(SEC).await;
    assert_eq!(
        order(&p, &small(), &h).unwrap_err(),
        Unroutable::AllUnavailable {
            retry_after: SEC * 2
        }
    );
}

#[tokio::test(start_paused = true)]
async fn a_half_open_probe_goes_to_one_ordering_only() {
    let p = plan(
        Strategy::Fallback,
        vec![route("recovering"), route("backup")],
    );
    let h = health(0.0);
    let rec = Target::new("p", "recovering");
    h.record_failure(&rec, Failure::Upstream);
    tokio::time::advance(SEC * 30).await;

    let first = order(&p, &small(), &h).unwrap();
    assert_eq!(names(&first), ["recovering", "backup"]);
    assert_eq!(first.probes, std::slice::from_ref(&rec));

    let second = order(&p, &small(), &h).unwrap();
    assert_eq!(names(&second), ["backup"]);
    assert!(second.probes.is_empty());
    assert!(matches!(
        second.skipped[0].1,
        SkipReason::BreakerOpen { .. }
    ));

    // The probe succeeds: everyone may use the target again.
    h.record_success(&rec, MS, MS);
    let third = order(&p, &small(), &h).unwrap();
    assert_eq!(names(&third), ["recovering", "backup"]);
    assert!(third.probes.is_empty());
}

#[tokio::test(start_paused = true)]
async fn probe_claims_under_contention_from_many_threads() {
    let p = Arc::new(plan(
        Strategy::Fallback,
        vec![route("recovering"), route("backup")],
    ));
    let h = Arc::new(health(0.0));
    h.record_failure(&Target::new("p", "recovering"), Failure::Timeout);
    tokio::time::advance(SEC * 30).await;
    let rt = tokio::runtime::Handle::current();
    let barrier = Arc::new(std::sync::Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let (p, h, rt, barrier) = (p.clone(), h.clone(), rt.clone(), barrier.clone());
            std::thread::spawn(move || {
                let _rt = rt.enter();
                barrier.wait();
                (0..50)
                    .map(|_| order(&p, &small(), &h).unwrap().probes.len())
                    .sum::<usize>()
            })
        })
        .collect();
    let probes: usize = handles.into_iter().map(|j| j.join().unwrap()).sum();
    assert_eq!(probes, 1);
}

#[test]
fn larger_window_only_keeps_known_larger_windows() {
    let routes = [
        windowed("8k", Some(8192)),
        windowed("unknown", None),
        windowed("32k", Some(32_768)),
        windowed("128k", Some(128_000)),
    ];
    let names = |rs: Vec<Route>| -> Vec<String> {
        rs.iter()
            .map(|r| r.target.upstream_model.to_string())
            .collect()
    };
    assert_eq!(
        names(larger_window_only(&routes, Some(8192))),
        ["32k", "128k"]
    );
    assert_eq!(names(larger_window_only(&routes, Some(32_768))), ["128k"]);
    assert!(larger_window_only(&routes, Some(128_000)).is_empty());
    assert_eq!(
        names(larger_window_only(&routes, None)),
        ["8k", "32k", "128k"]
    );
}

#[test]
fn all_unavailable_message_is_fit_for_a_client() {
    let e = Unroutable::AllUnavailable {
        retry_after: MS * 1500,
    };
    assert_eq!(
        e.to_string(),
        "every route of this model is temporarily unavailable (rate limited, overloaded or \
         failing); retry in 1500 ms"
    );
}
