//! Shared helpers for the end-to-end tests: a real `nats-server` per test,
//! the OpenAI upstream double, an OTLP trace receiver, and `switchyard`
//! processes whose listening addresses are read from their logs (every test
//! uses port 0).

// Test support: a panic is how a helper reports a broken test setup.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    clippy::zombie_processes
)]

pub mod double;
pub mod nats;
pub mod otlp;
pub mod postgres;
pub mod process;

/// A reqwest client for tests. reqwest is built without a default crypto
/// provider (the binary installs ring at start), so tests install it too.
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// Opens a stream through the gateway at `base` that the double never
/// finishes (`up/hang`), reads the first chunk, hangs up, and waits (at most
/// 10 s) for the double to see its own upstream connection closed: the
/// cancellation went from the client through the router and the bus to the
/// worker's upstream call.
pub async fn assert_disconnect_cancels_upstream(base: &str, double: &double::Double) {
    use futures_util::StreamExt;
    let disconnected = double.stats.disconnected.notified();
    tokio::pin!(disconnected);
    disconnected.as_mut().enable();
    let res = http_client()
        .post(format!("{base}/v1/chat/completions"))
        .json(&serde_json::json!({
            "model": "up/hang", "stream": true,
            "messages": [{"role": "user", "content": "never ends"}]
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let mut body = res.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    assert!(first.starts_with(b"data: "), "{first:?}");
    assert_eq!(double.disconnects(), 0);
    drop(body);
    tokio::time::timeout(std::time::Duration::from_secs(10), disconnected)
        .await
        .expect("the upstream double never saw its connection closed");
    assert_eq!(double.disconnects(), 1);
}
