//! Consul registration of real `switchyard` processes.
//!
//! The agent here is an HTTP **stand-in for the Consul agent API**, not
//! Consul: no Consul agent or server can be installed from any registry this
//! project's machines reach. It is an axum server on 127.0.0.1:0 that
//! records `PUT /v1/agent/service/register`,
//! `PUT /v1/agent/service/deregister/{id}` and
//! `PUT /v1/agent/check/pass/{check_id}` and answers 200 (or 500 for the
//! first register calls it is told to refuse), which is all the gateway
//! uses of the agent.

// Helpers of a test file fail the test by panicking, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::routing::put;
use serde_json::{Value, json};
use switchyard_e2e::double::Double;
use switchyard_e2e::nats::NatsServer;
use switchyard_e2e::process::{Proc, nats_config, write_config};
use tokio::sync::mpsc;

struct StandIn {
    refuse_registers: AtomicUsize,
    tx: mpsc::UnboundedSender<(String, Value)>,
}

async fn record(State(s): State<Arc<StandIn>>, uri: Uri, body: Bytes) -> StatusCode {
    let path = uri.path().to_owned();
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let _ = s.tx.send((path.clone(), body));
    let refuse = path.ends_with("/register")
        && s.refuse_registers
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
    if refuse {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    }
}

/// The stand-in agent's URL and the calls it receives.
async fn consul_stand_in(
    refuse_registers: usize,
) -> (String, mpsc::UnboundedReceiver<(String, Value)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let state = Arc::new(StandIn {
        refuse_registers: AtomicUsize::new(refuse_registers),
        tx,
    });
    let app = Router::new()
        .route("/v1/agent/service/register", put(record))
        .route("/v1/agent/service/deregister/{id}", put(record))
        .route("/v1/agent/check/pass/{id}", put(record))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), rx)
}

async fn next_call(rx: &mut mpsc::UnboundedReceiver<(String, Value)>) -> (String, Value) {
    tokio::time::timeout(Duration::from_secs(15), rx.recv())
        .await
        .expect("no call reached the Consul stand-in")
        .unwrap()
}

fn sigterm(proc: &Proc) {
    assert!(
        std::process::Command::new("kill")
            .arg("-TERM")
            .arg(proc.child.id().to_string())
            .status()
            .unwrap()
            .success()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_registers_with_consul_retrying_a_refusal_and_deregisters_on_sigterm() {
    let (consul, mut calls) = consul_stand_in(1).await;
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        &format!(
            r#"
server:
  http_addr: 127.0.0.1:0
  grpc_addr: 127.0.0.1:0
  shutdown_delay: 2s
providers:
  - {{ name: demo, kind: demo, models: [echo] }}
models:
  - name: demo
    routes: [{{ provider: demo, model: echo }}]
discovery:
  consul:
    address: {consul}
    tags: [e2e]
    check_interval: 2s
"#
        ),
    );
    let serve = Proc::start_with_env(
        &["serve", "--config", path.to_str().unwrap()],
        "router listening",
        &[("HOSTNAME", "e2e-host"), ("CONSUL_HTTP_TOKEN", "")],
    );
    let http = serve.http_addr.unwrap();
    let grpc = serve.grpc_addr.unwrap();

    // The first register is refused (agent trouble): the gateway serves
    // anyway and registers again in the background.
    let (p1, first) = next_call(&mut calls).await;
    assert_eq!(p1, "/v1/agent/service/register");
    let res = switchyard_e2e::http_client()
        .get(format!("http://{http}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let (p2, body) = next_call(&mut calls).await;
    assert_eq!(p2, "/v1/agent/service/register");
    assert_eq!(body, first);

    let id = body["ID"].as_str().unwrap().to_owned();
    assert!(
        id.starts_with(&format!("switchyard-router-e2e-host-{}-", serve.child.id())),
        "{id}"
    );
    assert_eq!(body["Name"], "switchyard-router");
    assert_eq!(body["Tags"], json!(["role=router", "e2e"]));
    assert_eq!(body["Address"], "127.0.0.1");
    assert_eq!(body["Port"], http.port());
    assert_eq!(body["Meta"]["grpc_port"], grpc.port().to_string());
    let check = &body["Check"];
    assert_eq!(
        check["GRPC"],
        format!(
            "127.0.0.1:{}/switchyard.gateway.v1.GatewayService",
            grpc.port()
        )
    );
    assert_eq!(check["GRPCUseTLS"], false);
    assert_eq!(check["Interval"], "2000ms");
    assert_eq!(check["DeregisterCriticalServiceAfter"], "60000ms");

    sigterm(&serve);
    let (path, _) = next_call(&mut calls).await;
    assert_eq!(path, format!("/v1/agent/service/deregister/{id}"));
    // Readiness went false before deregistration, and the listener is
    // still open (shutdown_delay).
    let res = switchyard_e2e::http_client()
        .get(format!("http://{http}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    assert!(serve.exited().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_registers_with_a_ttl_check_passes_it_and_deregisters_on_sigterm() {
    let (consul, mut calls) = consul_stand_in(0).await;
    let nats = NatsServer::start().unwrap();
    let double = Double::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = nats_config(
        &nats.url(),
        &double.base_url(),
        "",
        "  - name: chat\n    routes: [{ provider: up, model: m }]\n",
    ) + &format!(
        "discovery:\n  consul:\n    address: {consul}\n    token: s3cret\n    worker_service_name: llm-worker\n    check_interval: 300ms\n    advertise_address: 10.0.0.9\n"
    );
    let path = write_config(dir.path(), &text);
    let worker = Proc::start_with_env(
        &[
            "worker",
            "--config",
            path.to_str().unwrap(),
            "--provider",
            "up",
        ],
        "worker serving",
        &[("HOSTNAME", "wk")],
    );
    let (p, body) = next_call(&mut calls).await;
    assert_eq!(p, "/v1/agent/service/register");
    let id = body["ID"].as_str().unwrap().to_owned();
    assert!(id.starts_with("llm-worker-up-wk-"), "{id}");
    assert_eq!(body["Name"], "llm-worker");
    assert_eq!(body["Tags"], json!(["role=worker", "provider=up"]));
    assert_eq!(body["Address"], "10.0.0.9");
    assert!(body.get("Port").is_none(), "{body}");
    assert_eq!(body["Check"]["TTL"], "900ms");
    assert_eq!(body["Meta"]["provider"], "up");
    // The worker passes its TTL check every check_interval.
    let (p, _) = next_call(&mut calls).await;
    assert_eq!(p, format!("/v1/agent/check/pass/service:{id}"));

    sigterm(&worker);
    loop {
        let (p, _) = next_call(&mut calls).await;
        if p.starts_with("/v1/agent/check/pass/") {
            continue;
        }
        assert_eq!(p, format!("/v1/agent/service/deregister/{id}"));
        break;
    }
    assert!(worker.exited().await.success());
}
