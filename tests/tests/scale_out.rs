//! Router + workers as separate processes over a real nats-server, with the
//! OpenAI upstream double on a real socket.

// Helpers of a test file fail the test by panicking, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use switchyard_e2e::double::Double;
use switchyard_e2e::nats::NatsServer;
use switchyard_e2e::process::{Proc, nats_config, write_config};

fn config(nats: &NatsServer, double: &Double) -> String {
    let ghost = format!(
        "  - name: ghost\n    kind: openai\n    base_url: {}\n",
        double.base_url()
    );
    nats_config(
        &nats.url(),
        &double.base_url(),
        &ghost,
        "  - name: chat\n    routes:\n      - { provider: up, model: slow-20 }\n",
    )
}

struct Cluster {
    _dir: tempfile::TempDir,
    router: Proc,
    workers: Vec<Proc>,
}

fn cluster(nats: &NatsServer, double: &Double, workers: usize) -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &config(nats, double));
    let path = path.to_str().unwrap();
    let workers = (0..workers)
        .map(|_| {
            Proc::start(
                &["worker", "--config", path, "--provider", "up"],
                "worker serving",
            )
        })
        .collect();
    let router = Proc::start(&["router", "--config", path], "router listening");
    Cluster {
        _dir: dir,
        router,
        workers,
    }
}

async fn chat(client: &reqwest::Client, base: &str, model: &str) -> reqwest::Result<(u16, Value)> {
    let res = client
        .post(format!("{base}/v1/chat/completions"))
        .json(&json!({"model": model, "messages": [{"role": "user", "content": "hi there"}]}))
        .send()
        .await?;
    let status = res.status().as_u16();
    Ok((status, res.json().await?))
}

/// Sends `total` requests, `concurrency` at a time; calls `midway` once
/// `total / 3` have completed. Returns every non-200 answer.
async fn load_with_failure(
    base: String,
    total: usize,
    concurrency: usize,
    midway: impl FnOnce() + Send + 'static,
) -> Vec<(u16, Value)> {
    let client = switchyard_e2e::http_client();
    let done = Arc::new(AtomicUsize::new(0));
    let (trigger_tx, trigger_rx) = tokio::sync::oneshot::channel::<()>();
    let trigger_tx = Arc::new(std::sync::Mutex::new(Some(trigger_tx)));
    let killer = tokio::task::spawn_blocking(move || {
        if trigger_rx.blocking_recv().is_ok() {
            midway();
        }
    });
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, base, done, next, trigger_tx) = (
            client.clone(),
            base.clone(),
            done.clone(),
            next.clone(),
            trigger_tx.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            while next.fetch_add(1, Ordering::SeqCst) < total {
                match chat(&client, &base, "chat").await {
                    Ok((200, _)) => {}
                    Ok(other) => failures.push(other),
                    Err(e) => failures.push((0, json!(e.to_string()))),
                }
                if done.fetch_add(1, Ordering::SeqCst) + 1 == total / 3
                    && let Some(tx) = trigger_tx.lock().unwrap().take()
                {
                    let _ = tx.send(());
                }
            }
            failures
        }));
    }
    let mut failures = Vec::new();
    for t in tasks {
        failures.extend(t.await.unwrap());
    }
    drop(trigger_tx);
    killer.await.unwrap();
    failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_one_of_two_workers_loses_no_request() {
    let nats = NatsServer::start().unwrap();
    let double = Double::start().await.unwrap();
    let mut c = cluster(&nats, &double, 2);
    let base = c.router.http();
    let victim = c.workers.remove(0);
    let victim = Arc::new(std::sync::Mutex::new(victim));
    let v = victim.clone();
    let failures = load_with_failure(base.clone(), 60, 6, move || v.lock().unwrap().kill()).await;
    assert!(
        failures.is_empty(),
        "requests failed after a worker was killed: {failures:?}"
    );
    // The survivor still serves.
    let (status, body) = chat(&switchyard_e2e::http_client(), &base, "chat")
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(double.requests() >= 61);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_a_worker_gracefully_loses_no_request() {
    let nats = NatsServer::start().unwrap();
    let double = Double::start().await.unwrap();
    let mut c = cluster(&nats, &double, 2);
    let base = c.router.http();
    let victim = Arc::new(std::sync::Mutex::new(c.workers.remove(0)));
    let v = victim.clone();
    let failures = load_with_failure(base, 60, 6, move || {
        let status = v.lock().unwrap().terminate();
        assert!(status.success(), "worker exited with {status}");
    })
    .await;
    assert!(
        failures.is_empty(),
        "requests failed while a worker drained: {failures:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_name_the_serving_provider_and_model() {
    let nats = NatsServer::start().unwrap();
    let double = Double::start().await.unwrap();
    let c = cluster(&nats, &double, 1);
    let res = switchyard_e2e::http_client()
        .post(format!("{}/v1/chat/completions", c.router.http()))
        .header("x-request-id", "req-123")
        .json(&json!({"model": "chat", "messages": [{"role": "user", "content": "hello"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-request-id"], "req-123");
    assert_eq!(res.headers()["x-switchyard-provider"], "up");
    assert_eq!(res.headers()["x-switchyard-model"], "slow-20");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], "echo: hello");
    // The worker, not the router, holds the provider key.
    let stats: Value = switchyard_e2e::http_client()
        .get(format!("http://{}/_double/stats", double.addr))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["last_authorization"], "Bearer sk-test-key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_live_worker_is_503_at_once() {
    let nats = NatsServer::start().unwrap();
    let double = Double::start().await.unwrap();
    let c = cluster(&nats, &double, 1);
    let started = std::time::Instant::now();
    let (status, body) = chat(
        &switchyard_e2e::http_client(),
        &c.router.http(),
        "ghost/gpt-4o",
    )
    .await
    .unwrap();
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "no_live_worker");
    assert!(body["error"]["message"].as_str().unwrap().contains("ghost"));
    // No-responders is immediate, not a timeout.
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnect_mid_stream_cancels_upstream_over_nats() {
    let nats = NatsServer::start().unwrap();
    let double = Double::start().await.unwrap();
    let c = cluster(&nats, &double, 1);
    switchyard_e2e::assert_disconnect_cancels_upstream(&c.router.http(), &double).await;
}
