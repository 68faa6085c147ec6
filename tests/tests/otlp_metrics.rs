//! Metrics over OTLP end to end: a router and a worker as separate
//! processes over a private nats-server, exporting OTLP/gRPC metrics every
//! 500 ms to a real receiver in the test. The router's GenAI instruments
//! arrive after traffic, and so do the worker's gauges, which have no other
//! way out (the worker has no HTTP listener to scrape).

// Helpers of a test file fail the test by panicking, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;
use switchyard_e2e::double::Double;
use switchyard_e2e::nats::NatsServer;
use switchyard_e2e::otlp::{Metric, Receiver};
use switchyard_e2e::process::{Proc, nats_config, write_config};

const WAIT: Duration = Duration::from_secs(30);

fn config(nats: &NatsServer, double: &Double) -> String {
    nats_config(
        &nats.url(),
        &double.base_url(),
        "",
        "  - name: chat\n    routes:\n      - { provider: up, model: gpt-test }\n",
    )
}

fn seen(metrics: &[Metric], service: &str, name: &str) -> bool {
    metrics
        .iter()
        .any(|m| m.service == service && m.name == name)
}

const ROUTER_METRICS: &[&str] = &[
    "gen_ai.client.operation.duration",
    "gen_ai.client.token.usage",
    "gen_ai.server.time_to_first_token",
    "switchyard.requests",
    "switchyard.attempts",
    "switchyard.target.in_flight",
];
const WORKER_METRICS: &[&str] = &[
    "switchyard.worker.queue_depth",
    "switchyard.worker.in_flight",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_and_worker_export_metrics_over_otlp() {
    let nats = NatsServer::start().unwrap();
    let double = Double::start().await.unwrap();
    let receiver = Receiver::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &config(&nats, &double));
    let path = path.to_str().unwrap();
    let endpoint = receiver.endpoint();
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_METRIC_EXPORT_INTERVAL", "500"),
    ];
    let _worker = Proc::start_with_env(
        &["worker", "--config", path, "--provider", "up"],
        "worker serving",
        &env,
    );
    let router = Proc::start_with_env(&["router", "--config", path], "router listening", &env);
    let client = switchyard_e2e::http_client();
    let url = format!("{}/v1/chat/completions", router.http());

    for i in 0..3 {
        let res = client
            .post(&url)
            .json(&json!({
                "model": "chat",
                "messages": [{"role": "user", "content": format!("hello metrics {i}")}]
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
    // A stream, for the time to first token.
    let res = client
        .post(&url)
        .json(&json!({
            "model": "chat", "stream": true,
            "messages": [{"role": "user", "content": "hello stream"}]
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let mut body = res.bytes_stream();
    while let Some(chunk) = body.next().await {
        chunk.unwrap();
    }

    let metrics = receiver
        .wait_for_metrics(WAIT, |m| {
            ROUTER_METRICS
                .iter()
                .all(|n| seen(m, "switchyard-router", n))
                && WORKER_METRICS
                    .iter()
                    .all(|n| seen(m, "switchyard-worker", n))
        })
        .await;
    // The worker reports its own instruments only; the router's GenAI ones
    // are not duplicated there.
    assert!(
        !seen(
            &metrics,
            "switchyard-worker",
            "gen_ai.client.operation.duration"
        ),
        "{metrics:?}"
    );
}
