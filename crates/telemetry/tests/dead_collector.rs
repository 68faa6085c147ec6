//! A collector that is down never makes the application wait: spans past
//! the bounded queue are dropped and counted, and shutdown is bounded.
//! (Its own test binary: `init` installs the process-wide subscriber.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use switchyard_config::TelemetryConfig;

#[test]
fn spans_to_a_dead_collector_are_dropped_and_counted_not_waited_for() {
    // A port nobody listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let cfg = TelemetryConfig {
        otlp_endpoint: Some(format!("http://{closed}")),
        ..TelemetryConfig::default()
    };
    let guard = switchyard_telemetry::init("switchyard-test", &cfg);
    assert!(guard.exporting());

    // The export thread is stuck retrying the collector; every span still
    // ends at once, and once the queue (2048) is full they are dropped.
    let mut made = 0u64;
    while switchyard_telemetry::dropped_spans() == 0 {
        let span = tracing::info_span!("request", n = made);
        span.in_scope(|| tracing::info!("inside"));
        drop(span);
        made += 1;
        assert!(
            made < 1_000_000,
            "a million spans and none dropped: is the queue bounded?"
        );
    }
    assert!(made > 2048, "dropped before the queue was full ({made})");

    // Trace context still flows while export is failing.
    let span = tracing::info_span!("outer");
    let mut headers = Vec::new();
    switchyard_telemetry::inject_from(&span, &mut headers);
    assert_eq!(headers.len(), 1, "{headers:?}");
    assert_eq!(headers[0].0, "traceparent");
    assert_eq!(
        switchyard_telemetry::trace_id(&span).as_deref(),
        headers[0].1.split('-').nth(1)
    );

    // Shutdown gives up on the dead collector after its bound (3 s).
    guard.shutdown();
}
