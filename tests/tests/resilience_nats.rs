//! Faults in the scaled-out shape (router + workers over a real
//! nats-server): workers killed mid-stream, the only worker of a provider
//! gone, and the NATS server itself restarted under load.

// Helpers of a test file fail the test by panicking, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};
use switchyard_e2e::double::Double;
use switchyard_e2e::nats::NatsServer;
use switchyard_e2e::process::{Proc, nats_config, write_config};

fn config(nats_url: &str, double: &Double) -> String {
    nats_config(
        nats_url,
        &double.base_url(),
        "  - name: demo\n    kind: demo\n",
        "  - name: chat\n    routes:\n      - { provider: up, model: ok }\n      - { provider: demo, model: echo }\n",
    )
}

fn worker(path: &str, provider: &str) -> Proc {
    Proc::start(
        &["worker", "--config", path, "--provider", provider],
        "worker serving",
    )
}

async fn ask(base: &str, model: &str) -> (u16, reqwest::header::HeaderMap, Value) {
    let res = switchyard_e2e::http_client()
        .post(format!("{base}/v1/chat/completions"))
        .json(&json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    (status, headers, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_worker_mid_stream_ends_the_stream_cleanly_and_the_next_request_is_served() {
    let nats = NatsServer::start().unwrap();
    let double = Double::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &config(&nats.url(), &double));
    let path = path.to_str().unwrap();
    let mut first = worker(path, "up");
    let router = Proc::start(&["router", "--config", path], "router listening");

    let res = switchyard_e2e::http_client()
        .post(format!("{}/v1/chat/completions", router.http()))
        .json(&json!({"model": "up/slow-300", "stream": true,
                      "messages": [{"role": "user", "content": "one two three four five six seven"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let mut body = res.bytes_stream();
    let head = body.next().await.unwrap().unwrap();
    assert!(head.starts_with(b"data: "));
    // Only now does a second worker exist: the stream is on the first.
    let _second = worker(path, "up");
    first.kill();
    let mut rest = String::new();
    let read = async {
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(c) => rest.push_str(&String::from_utf8_lossy(&c)),
                Err(_) => break,
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("the stream hung after its worker died");
    let last = rest
        .split("\n\n")
        .filter(|e| !e.is_empty())
        .last()
        .unwrap_or_default();
    assert!(
        last.contains("\"error\""),
        "no error event at the end: {rest}"
    );
    assert!(!rest.contains("[DONE]"));

    let (status, headers, body) = ask(&router.http(), "up/ok").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["x-switchyard-provider"], "up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_only_worker_of_a_provider_fails_over_at_once() {
    let nats = NatsServer::start().unwrap();
    let double = Double::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &config(&nats.url(), &double));
    let path = path.to_str().unwrap();
    let mut up = worker(path, "up");
    let _demo = worker(path, "demo");
    let router = Proc::start(&["router", "--config", path], "router listening");
    let (status, headers, _) = ask(&router.http(), "chat").await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-switchyard-provider"], "up");

    up.kill();
    let started = Instant::now();
    let (status, headers, body) = ask(&router.http(), "chat").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["x-switchyard-provider"], "demo");
    assert_eq!(headers["x-switchyard-attempted"], "up/ok, demo/echo");
    // No-responders is immediate: no ack timeout (1 s) was waited out.
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "failover took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_restart_under_load_recovers_and_nothing_hangs() {
    let nats = NatsServer::start().unwrap();
    let port = nats.addr.port();
    let double = Double::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &config(&nats.url(), &double));
    let path = path.to_str().unwrap();
    let _up = worker(path, "up");
    let router = Proc::start(&["router", "--config", path], "router listening");
    let base = router.http();
    let (status, _, _) = ask(&base, "up/ok").await;
    assert_eq!(status, 200);

    nats.kill();
    // During the gap: every request ends (no hang) with a clean error.
    for _ in 0..3 {
        let started = Instant::now();
        let (status, _, body) = ask(&base, "up/ok").await;
        assert!(matches!(status, 200 | 502 | 503 | 504), "{status}: {body}");
        if status != 200 {
            assert!(body["error"]["message"].is_string(), "{body}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "a request took {:?} during the outage",
            started.elapsed()
        );
    }

    let _nats = NatsServer::start_on(Some(port)).unwrap();
    // Router and worker reconnect by themselves.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, _, body) = ask(&base, "up/ok").await;
        if status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not recovered after the NATS restart: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
