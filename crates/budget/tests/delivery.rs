//! Alert delivery against real receivers: an HTTP server on a loopback
//! socket and a private nats-server.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use futures_util::StreamExt;
use serde_json::{Value, json};
use switchyard_budget::*;
use tokio::time::Instant;

#[derive(Default)]
struct Receiver {
    /// Statuses to answer, in order; 200 once they run out.
    script: Vec<u16>,
    posts: usize,
    accepted: Vec<(HeaderMap, Value)>,
}

async fn receive(
    State(r): State<Arc<Mutex<Receiver>>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let mut r = r.lock().unwrap();
    let status = r.script.get(r.posts).copied().unwrap_or(200);
    r.posts += 1;
    if status == 200 {
        r.accepted
            .push((headers, serde_json::from_slice(&body).unwrap()));
    }
    StatusCode::from_u16(status).unwrap()
}

async fn receiver(script: &[u16]) -> (Url, Arc<Mutex<Receiver>>) {
    let state = Arc::new(Mutex::new(Receiver {
        script: script.to_vec(),
        ..Receiver::default()
    }));
    let app = Router::new()
        .route("/hook", post(receive))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook").parse().unwrap(), state)
}

fn webhook(url: Url) -> Webhook {
    Webhook {
        url,
        headers: vec![("Authorization".into(), "Bearer s3cret".into())],
        timeout: Duration::from_secs(10),
    }
}

fn event() -> AlertEvent {
    let exceeded = Exceeded {
        budget: "team-daily".into(),
        dimension: Some(Dimension::Team),
        value: Some("ml".into()),
        limit: "50".parse().unwrap(),
        spent: "50.0125".parse().unwrap(),
        window_start: "2025-06-15T00:00:00Z".parse().unwrap(),
        resets_at: "2025-06-16T00:00:00Z".parse().unwrap(),
    };
    AlertEvent::budget_exceeded(&exceeded, "2025-06-15T14:03:12Z".parse().unwrap())
}

fn expected_json() -> Value {
    json!({
        "id": "budget_exceeded:team-daily:ml:2025-06-15T00:00:00Z",
        "kind": "budget_exceeded",
        "rule": "team-daily",
        "dimension": "team",
        "value": "ml",
        "window_start": "2025-06-15T00:00:00Z",
        "window_end": "2025-06-16T00:00:00Z",
        "spent": "50.0125",
        "limit_or_threshold": "50",
        "baseline": null,
        "at": "2025-06-15T14:03:12Z"
    })
}

/// Paused clock: the backoff sleeps pass instantly, and the virtual time
/// they took shows the schedule.
#[tokio::test(start_paused = true)]
async fn webhook_retries_503_then_delivers_exactly_once() {
    let (url, rx) = receiver(&[503, 503]).await;
    let notifier = Notifier::new(Some(webhook(url)), None).unwrap();
    let started = Instant::now();
    notifier.notify(event());
    notifier.drain().await;
    let waited = started.elapsed();
    let r = rx.lock().unwrap();
    assert_eq!(r.posts, 3);
    assert_eq!(r.accepted.len(), 1);
    let (headers, body) = &r.accepted[0];
    assert_eq!(body, &expected_json());
    assert_eq!(headers["authorization"], "Bearer s3cret");
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(
        headers[ALERT_ID_HEADER],
        "budget_exceeded:team-daily:ml:2025-06-15T00:00:00Z"
    );
    // Two pauses: 0.25..0.5 s, then 0.5..1 s.
    assert!(
        waited >= Duration::from_millis(750) && waited <= Duration::from_millis(1600),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn webhook_400_is_not_retried() {
    let (url, rx) = receiver(&[400, 503]).await;
    let notifier = Notifier::new(Some(webhook(url)), None).unwrap();
    notifier.notify(event());
    notifier.drain().await;
    let r = rx.lock().unwrap();
    assert_eq!(r.posts, 1);
    assert!(r.accepted.is_empty());
}

#[tokio::test(start_paused = true)]
async fn webhook_429_is_retried() {
    let (url, rx) = receiver(&[429]).await;
    let notifier = Notifier::new(Some(webhook(url)), None).unwrap();
    notifier.notify(event());
    notifier.drain().await;
    let r = rx.lock().unwrap();
    assert_eq!((r.posts, r.accepted.len()), (2, 1));
}

#[tokio::test(start_paused = true)]
async fn unreachable_webhook_is_retried_then_given_up() {
    // A port nobody listens on any more.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url: Url = format!("http://{}/hook", listener.local_addr().unwrap())
        .parse()
        .unwrap();
    drop(listener);
    let notifier = Notifier::new(Some(webhook(url)), None)
        .unwrap()
        .with_retry(RetryPolicy {
            attempts: 3,
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(16),
        });
    let started = Instant::now();
    notifier.notify(event());
    notifier.drain().await;
    let waited = started.elapsed();
    // Pauses after attempts 1 and 2 (0.5..1 s, 1..2 s), none after the last.
    assert!(
        waited >= Duration::from_millis(1500) && waited <= Duration::from_millis(3100),
        "{waited:?}"
    );
}

#[test]
fn bad_webhook_settings_are_errors() {
    let url: Url = "http://127.0.0.1:9/hook".parse().unwrap();
    let bad_header = Webhook {
        headers: vec![("bad header".into(), "x".into())],
        ..webhook(url.clone())
    };
    assert!(matches!(
        Notifier::new(Some(bad_header), None),
        Err(NotifierError::HeaderName(_))
    ));
    let bad_value = Webhook {
        headers: vec![("x-token".into(), "a\nb".into())],
        ..webhook(url)
    };
    assert!(matches!(
        Notifier::new(Some(bad_value), None),
        Err(NotifierError::HeaderValue(_))
    ));
    let ftp = webhook("ftp://example.com/x".parse().unwrap());
    assert!(matches!(
        Notifier::new(Some(ftp), None),
        Err(NotifierError::Scheme(_))
    ));
}

#[tokio::test]
async fn nats_delivery_publishes_json_with_the_id_header() {
    let server = switchyard_e2e::nats::NatsServer::start().unwrap();
    let client = async_nats::connect(server.url()).await.unwrap();
    let mut sub = client.subscribe("switchyard.alerts").await.unwrap();
    client.flush().await.unwrap();
    let notifier = Notifier::new(None, Some((client.clone(), "switchyard.alerts".into()))).unwrap();
    notifier.notify(event());
    notifier.drain().await;
    let msg = tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .expect("no alert on NATS")
        .unwrap();
    let body: Value = serde_json::from_slice(&msg.payload).unwrap();
    assert_eq!(body, expected_json());
    let headers = msg.headers.unwrap();
    assert_eq!(
        headers.get("Nats-Msg-Id").map(|v| v.as_str()),
        Some("budget_exceeded:team-daily:ml:2025-06-15T00:00:00Z")
    );
}

/// Two routers raising the same alert: a stream on the subject keeps one.
#[tokio::test]
async fn jetstream_deduplicates_alerts_of_several_routers() {
    let server = switchyard_e2e::nats::NatsServer::start().unwrap();
    let admin = async_nats::connect(server.url()).await.unwrap();
    let js = async_nats::jetstream::new(admin);
    let mut stream = js
        .create_stream(async_nats::jetstream::stream::Config {
            name: "ALERTS".into(),
            subjects: vec!["switchyard.alerts".into()],
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut routers = Vec::new();
    let mut clients = Vec::new();
    for _ in 0..2 {
        let client = async_nats::connect(server.url()).await.unwrap();
        clients.push(client.clone());
        routers.push(Notifier::new(None, Some((client, "switchyard.alerts".into()))).unwrap());
    }
    for n in &routers {
        n.notify(event());
    }
    let mut other = event();
    other.id = "budget_exceeded:team-daily:ml:2025-06-16T00:00:00Z".into();
    routers[0].notify(other);
    for n in &routers {
        n.drain().await;
    }
    // Drain means written to the socket; a round trip on each connection
    // means the server has processed them. A stream may store
    // asynchronously still: a marker published after them and acknowledged
    // by the stream is stored after them.
    for c in &clients {
        round_trip(c).await;
    }
    js.publish("switchyard.alerts", "marker".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let info = stream.info().await.unwrap();
    assert_eq!(info.state.messages, 3, "two distinct alerts and the marker");
}

/// Returns once the server has processed everything `client` sent before.
async fn round_trip(client: &async_nats::Client) {
    let inbox = client.new_inbox();
    let mut sub = client.subscribe(inbox.clone()).await.unwrap();
    client.publish(inbox, "ping".into()).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .expect("no round trip")
        .unwrap();
}

#[tokio::test]
async fn notify_without_targets_only_logs() {
    let notifier = Notifier::new(None, None).unwrap();
    notifier.notify(event());
    notifier.drain().await;
}
