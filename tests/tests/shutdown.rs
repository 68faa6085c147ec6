//! Graceful shutdown, the way Kubernetes needs it: on SIGTERM readiness
//! turns false at once while the listener keeps accepting (and serving) for
//! `server.shutdown_delay`; then new connections are refused, and streams in
//! flight run to their `[DONE]`; the process exits 0. Through `serve`, and
//! through a router and a worker over a real nats-server.

// Helpers of a test file fail the test by panicking, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::json;
use switchyard_e2e::double::Double;
use switchyard_e2e::nats::NatsServer;
use switchyard_e2e::process::{Proc, nats_config, write_config};

const STREAMS: usize = 20;
const DELAY: Duration = Duration::from_millis(1500);
/// 16 words at 150 ms a chunk: each stream lasts about 2.5 s, so it outlives
/// the delay and is still running when the listener closes.
const SLOW_MODEL: &str = "slow-150";
const PROMPT: &str =
    "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen";

fn models() -> String {
    format!(
        "  - name: slow\n    routes: [{{ provider: up, model: {SLOW_MODEL} }}]\n  - name: fast\n    routes: [{{ provider: up, model: quick }}]\n"
    )
}

fn serve_config(double: &Double) -> String {
    format!(
        r#"
server:
  http_addr: 127.0.0.1:0
  grpc_addr: 127.0.0.1:0
  shutdown_delay: {}ms
  shutdown_grace: 30s
providers:
  - name: up
    kind: openai
    base_url: {}
    api_key: sk-test-key
    timeout: 10s
models:
{}"#,
        DELAY.as_millis(),
        double.base_url(),
        models()
    )
}

/// A client that opens a new connection for every request, so "refused"
/// means the listener is closed, not that a pooled connection was reused.
fn fresh_client() -> reqwest::Client {
    let _ = switchyard_e2e::http_client();
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

/// Opens `STREAMS` streams and returns once each has its first chunk; the
/// handles give each stream's whole body. `finished` counts completed ones.
async fn open_streams(
    base: &str,
    finished: &Arc<AtomicUsize>,
) -> Vec<tokio::task::JoinHandle<String>> {
    let client = switchyard_e2e::http_client();
    let (started_tx, mut started_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut handles = Vec::new();
    for _ in 0..STREAMS {
        let (client, base, started_tx, finished) = (
            client.clone(),
            base.to_owned(),
            started_tx.clone(),
            finished.clone(),
        );
        handles.push(tokio::spawn(async move {
            let res = client
                .post(format!("{base}/v1/chat/completions"))
                .json(&json!({
                    "model": "slow", "stream": true,
                    "messages": [{"role": "user", "content": PROMPT}]
                }))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200);
            let mut body = res.bytes_stream();
            let mut text = String::new();
            let first = body.next().await.unwrap().unwrap();
            text.push_str(&String::from_utf8_lossy(&first));
            started_tx.send(()).unwrap();
            while let Some(chunk) = body.next().await {
                match chunk {
                    Ok(c) => text.push_str(&String::from_utf8_lossy(&c)),
                    Err(e) => panic!("stream broke: {e}; so far:\n{text}"),
                }
            }
            finished.fetch_add(1, Ordering::SeqCst);
            text
        }));
    }
    drop(started_tx);
    for _ in 0..STREAMS {
        tokio::time::timeout(Duration::from_secs(20), started_rx.recv())
            .await
            .expect("streams did not start")
            .expect("a stream task failed before its first chunk");
    }
    handles
}

fn sigterm(proc: &Proc) {
    let ok = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(proc.child.id().to_string())
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -TERM failed");
}

/// What `/readyz` and new connections did between SIGTERM and the listener
/// closing.
struct Observed {
    /// `/readyz` answers 503 seen while the listener still accepted.
    not_ready_answers: usize,
    /// A chat request sent on a new connection during the delay was served,
    /// and gRPC health said NOT_SERVING then.
    served_during_delay: bool,
    /// From just before SIGTERM to the first refused connection.
    refused_after: Duration,
    /// Streams already complete when the listener was found closed.
    finished_at_close: usize,
}

/// Polls `/readyz` on new connections (a deadline, not a sleep, bounds it)
/// until one is refused; asserts every answer before that was a 503 once
/// the first 503 came, and sends one chat request while not ready.
async fn watch_shutdown(
    base: &str,
    grpc: std::net::SocketAddr,
    signalled: Instant,
    finished: &Arc<AtomicUsize>,
) -> Observed {
    let client = fresh_client();
    let deadline = signalled + DELAY + Duration::from_secs(10);
    let mut not_ready_answers = 0;
    let mut served_during_delay = false;
    loop {
        assert!(
            Instant::now() < deadline,
            "the listener never closed ({not_ready_answers} not-ready answers)"
        );
        match client.get(format!("{base}/readyz")).send().await {
            Ok(res) if res.status() == 503 => {
                not_ready_answers += 1;
                if !served_during_delay {
                    // Endpoints lag behind readiness: traffic that still
                    // arrives during the delay is served, not refused.
                    let res = client
                        .post(format!("{base}/v1/chat/completions"))
                        .json(&json!({"model": "fast", "messages": [{"role": "user", "content": "late"}]}))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(res.status(), 200, "{:?}", res.text().await);
                    assert_grpc_not_serving(grpc).await;
                    served_during_delay = true;
                }
            }
            Ok(res) => {
                assert_eq!(res.status(), 200, "readyz: {:?}", res.text().await);
                assert_eq!(
                    not_ready_answers, 0,
                    "/readyz turned ready again during shutdown"
                );
            }
            // Refused; or, racing the close, accepted by the kernel and
            // then closed unanswered.
            Err(e) if e.is_connect() || (e.is_request() && not_ready_answers > 0) => {
                return Observed {
                    not_ready_answers,
                    served_during_delay,
                    refused_after: signalled.elapsed(),
                    finished_at_close: finished.load(Ordering::SeqCst),
                };
            }
            Err(e) => panic!("readyz: {e}"),
        }
        // Polling pace, not synchronisation.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// gRPC health of the gateway service, on a new connection, is NOT_SERVING.
async fn assert_grpc_not_serving(grpc: std::net::SocketAddr) {
    use tonic_health::pb::health_check_response::ServingStatus;
    let channel = tonic::transport::Channel::from_shared(format!("http://{grpc}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let status = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest {
            service: "switchyard.gateway.v1.GatewayService".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(status, ServingStatus::NotServing as i32);
}

fn assert_orderly(o: &Observed) {
    assert!(
        o.not_ready_answers > 0,
        "/readyz never answered 503 before the listener closed"
    );
    assert!(o.served_during_delay);
    assert!(
        o.refused_after >= DELAY,
        "the listener closed {:?} after SIGTERM, before shutdown_delay ({DELAY:?})",
        o.refused_after
    );
    assert!(
        o.finished_at_close < STREAMS,
        "every stream was over before the listener closed: the test proves nothing"
    );
}

async fn assert_all_done(handles: Vec<tokio::task::JoinHandle<String>>) {
    for h in handles {
        let text = tokio::time::timeout(Duration::from_secs(30), h)
            .await
            .expect("a stream did not finish")
            .unwrap();
        assert!(text.contains("data: [DONE]"), "no [DONE]:\n{text}");
        assert!(!text.contains("\"error\""), "error event:\n{text}");
        assert!(text.contains("fifteen"), "truncated:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_on_serve_turns_unready_keeps_serving_for_the_delay_then_drains_every_stream() {
    let double = Double::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &serve_config(&double));
    let serve = Proc::start(
        &["serve", "--config", path.to_str().unwrap()],
        "router listening",
    );
    let base = serve.http();
    let finished = Arc::new(AtomicUsize::new(0));
    let handles = open_streams(&base, &finished).await;

    let signalled = Instant::now();
    sigterm(&serve);
    let observed = watch_shutdown(&base, serve.grpc_addr.unwrap(), signalled, &finished).await;
    assert_orderly(&observed);
    assert_all_done(handles).await;
    assert!(serve.exited().await.success());
    assert_eq!(double.disconnects(), 0, "an upstream call was cut");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_on_router_and_worker_over_nats_drains_every_stream() {
    let nats = NatsServer::start().unwrap();
    let double = Double::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut text = nats_config(&nats.url(), &double.base_url(), "", &models());
    text = text.replace(
        "  grpc_addr: 127.0.0.1:0\n",
        &format!(
            "  grpc_addr: 127.0.0.1:0\n  shutdown_delay: {}ms\n",
            DELAY.as_millis()
        ),
    );
    let path = write_config(dir.path(), &text);
    let path = path.to_str().unwrap();
    let worker = Proc::start(
        &["worker", "--config", path, "--provider", "up"],
        "worker serving",
    );
    // A second worker takes the work the first one stops taking.
    let spare = Proc::start(
        &["worker", "--config", path, "--provider", "up"],
        "worker serving",
    );
    let router = Proc::start(&["router", "--config", path], "router listening");
    let base = router.http();
    let finished = Arc::new(AtomicUsize::new(0));
    let handles = open_streams(&base, &finished).await;

    let signalled = Instant::now();
    sigterm(&worker);
    sigterm(&router);
    let observed = watch_shutdown(&base, router.grpc_addr.unwrap(), signalled, &finished).await;
    assert_orderly(&observed);
    assert_all_done(handles).await;
    assert!(router.exited().await.success());
    assert!(worker.exited().await.success());
    drop(spare);
    assert_eq!(double.disconnects(), 0, "an upstream call was cut");
}
