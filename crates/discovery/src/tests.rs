//! Unit tests against an in-process HTTP **stand-in for the Consul agent
//! API** (no Consul agent or server is installable from any registry this
//! project can reach): an axum server on 127.0.0.1:0 that records every
//! request and answers like the agent's `register`, `deregister` and
//! `check/pass` endpoints.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Mutex;
use std::sync::atomic::AtomicUsize;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::routing::put;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::*;

#[derive(Debug, Clone)]
struct Seen {
    path: String,
    token: Option<String>,
    body: Value,
}

struct StandIn {
    /// Register calls answered 500 before one succeeds.
    fail_registers: AtomicUsize,
    /// TTL passes answered 404 ("unknown check") before one succeeds.
    fail_passes: AtomicUsize,
    log: Mutex<Vec<Seen>>,
    tx: mpsc::UnboundedSender<Seen>,
}

async fn record(
    State(s): State<Arc<StandIn>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let seen = Seen {
        path: uri.path().to_owned(),
        token: headers
            .get("x-consul-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    };
    s.log.lock().unwrap().push(seen.clone());
    let _ = s.tx.send(seen.clone());
    let take = |n: &AtomicUsize| {
        n.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1))
            .is_ok()
    };
    if seen.path.ends_with("/register") && take(&s.fail_registers) {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    if seen.path.contains("/check/pass/") && take(&s.fail_passes) {
        return StatusCode::NOT_FOUND;
    }
    StatusCode::OK
}

async fn stand_in(
    fail_registers: usize,
    fail_passes: usize,
) -> (String, Arc<StandIn>, mpsc::UnboundedReceiver<Seen>) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (tx, rx) = mpsc::unbounded_channel();
    let state = Arc::new(StandIn {
        fail_registers: AtomicUsize::new(fail_registers),
        fail_passes: AtomicUsize::new(fail_passes),
        log: Mutex::new(Vec::new()),
        tx,
    });
    let app = Router::new()
        .route("/v1/agent/service/register", put(record))
        .route("/v1/agent/service/deregister/{id}", put(record))
        .route("/v1/agent/check/pass/{id}", put(record))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), state, rx)
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Seen>) -> Seen {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("no call reached the Consul stand-in")
        .unwrap()
}

fn consul(address: &str) -> ConsulConfig {
    ConsulConfig {
        address: address.to_owned(),
        tags: vec!["team-ai".to_owned()],
        ..ConsulConfig::default()
    }
}

#[test]
fn router_registration_body() {
    let c = consul("http://127.0.0.1:8500");
    let r = registration(
        &c,
        Role::Router {
            http_addr: "10.1.2.3:8080".parse().unwrap(),
            grpc_addr: "0.0.0.0:50051".parse().unwrap(),
        },
        "pod-a",
    );
    assert!(r.id.starts_with(&format!("switchyard-router-pod-a-{}-", std::process::id())));
    let body = r.to_agent_json();
    assert_eq!(body["Name"], "switchyard-router");
    assert_eq!(body["ID"], r.id.as_str());
    assert_eq!(body["Tags"], json!(["role=router", "team-ai"]));
    assert_eq!(body["Address"], "10.1.2.3");
    assert_eq!(body["Port"], 8080);
    assert_eq!(body["Meta"]["grpc_port"], "50051");
    assert_eq!(body["Meta"]["role"], "router");
    let check = &body["Check"];
    // Bound to every interface: the agent dials the advertised address.
    assert_eq!(
        check["GRPC"],
        "10.1.2.3:50051/switchyard.gateway.v1.GatewayService"
    );
    assert_eq!(check["GRPCUseTLS"], false);
    assert_eq!(check["Interval"], "10000ms");
    assert_eq!(check["DeregisterCriticalServiceAfter"], "60000ms");
    assert_eq!(check["CheckID"], format!("service:{}", r.id));
}

#[test]
fn unspecified_addresses_advertise_the_host_name_or_the_override() {
    let mut c = consul("http://127.0.0.1:8500");
    let role = Role::Router {
        http_addr: "0.0.0.0:8080".parse().unwrap(),
        grpc_addr: "[::]:50051".parse().unwrap(),
    };
    let r = registration(&c, role, "pod-b");
    assert_eq!(r.address, "pod-b");
    c.advertise_address = Some("fd00::7".to_owned());
    let r = registration(&c, role, "pod-b");
    assert_eq!(r.address, "fd00::7");
    let Some(Check::Grpc { target, .. }) = r.check else {
        panic!("router has a gRPC check")
    };
    assert_eq!(
        target,
        "[fd00::7]:50051/switchyard.gateway.v1.GatewayService"
    );
}

#[test]
fn worker_registration_has_a_ttl_check_and_no_port() {
    let mut c = consul("http://127.0.0.1:8500");
    c.worker_service_name = "llm-workers".to_owned();
    let r = registration(&c, Role::Worker { provider: "openai" }, "pod-c");
    assert!(r.id.starts_with("llm-workers-openai-pod-c-"), "{}", r.id);
    let body = r.to_agent_json();
    assert_eq!(body["Name"], "llm-workers");
    assert_eq!(
        body["Tags"],
        json!(["role=worker", "provider=openai", "team-ai"])
    );
    assert!(body.get("Port").is_none());
    assert_eq!(body["Check"]["TTL"], "30000ms");
    assert_eq!(body["Check"]["Status"], "passing");
}

#[test]
fn ids_are_unique_per_process_start() {
    let a = service_id("s", None, "h/x y");
    let b = service_id("s", None, "h/x y");
    assert_ne!(a, b);
    assert!(a.starts_with("s-h-x-y-"), "{a}");
}

#[tokio::test]
async fn registers_after_failures_then_deregisters_by_id() {
    let (addr, state, mut rx) = stand_in(2, 0).await;
    let agent = ConsulAgent::new(&addr, Some("t0ken".to_owned())).unwrap();
    let r = registration(
        &consul(&addr),
        Role::Router {
            http_addr: "127.0.0.1:8080".parse().unwrap(),
            grpc_addr: "127.0.0.1:50051".parse().unwrap(),
        },
        "h",
    );
    let registrar = Registrar::spawn(agent, r.clone());
    // Two refused attempts (1 s, then 2 s backoff), then success.
    for _ in 0..3 {
        let seen = next(&mut rx).await;
        assert_eq!(seen.path, "/v1/agent/service/register");
        assert_eq!(seen.token.as_deref(), Some("t0ken"));
        assert_eq!(seen.body, r.to_agent_json());
    }
    registrar.deregister(Duration::from_secs(5)).await;
    let seen = next(&mut rx).await;
    assert_eq!(seen.path, format!("/v1/agent/service/deregister/{}", r.id));
    assert_eq!(state.log.lock().unwrap().len(), 4);
}

#[tokio::test]
async fn a_worker_passes_its_ttl_and_registers_again_when_forgotten() {
    let (addr, _state, mut rx) = stand_in(0, 1).await;
    let mut c = consul(&addr);
    c.check_interval = Duration::from_millis(50);
    let r = registration(&c, Role::Worker { provider: "up" }, "h");
    let registrar = Registrar::spawn(ConsulAgent::new(&addr, None).unwrap(), r.clone());
    let pass = format!("/v1/agent/check/pass/service:{}", r.id);
    let paths: Vec<String> = {
        let mut v = Vec::new();
        for _ in 0..4 {
            v.push(next(&mut rx).await.path);
        }
        v
    };
    // register, pass (agent: unknown check), register again, pass.
    assert_eq!(
        paths,
        [
            "/v1/agent/service/register".to_owned(),
            pass.clone(),
            "/v1/agent/service/register".to_owned(),
            pass,
        ]
    );
    registrar.deregister(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn an_unreachable_agent_never_blocks_shutdown_for_long() {
    // A port nothing listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let addr = format!("http://127.0.0.1:{port}");
    let agent = ConsulAgent::new(&addr, None).unwrap();
    let err = agent.deregister("x").await.unwrap_err();
    assert!(matches!(err, DiscoveryError::Transport { .. }), "{err}");
    let r = registration(&consul(&addr), Role::Worker { provider: "up" }, "h");
    let registrar = Registrar::spawn(agent, r);
    let started = std::time::Instant::now();
    registrar.deregister(Duration::from_millis(500)).await;
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[test]
fn bad_addresses_are_refused() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    assert!(ConsulAgent::new("127.0.0.1:8500", None).is_err());
    assert!(ConsulAgent::new("unix:///tmp/consul.sock", None).is_err());
    let a = ConsulAgent::new("http://consul.local:8500/prefix/", None).unwrap();
    assert_eq!(
        a.url(&["v1", "agent", "check", "pass", "service:a b"])
            .as_str(),
        "http://consul.local:8500/prefix/v1/agent/check/pass/service:a%20b"
    );
}
