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

pub mod auth;
pub mod double;
pub mod nats;
pub mod otlp;
pub mod postgres;
pub mod process;

/// Runs `probe` until it returns `Ok`, failing the test with its last
/// `Err` once `within` has passed. For state another process writes off
/// the request path (a ledger, a peer's counters): there is no signal to
/// wait on across processes, so the test polls, bounded by a deadline.
pub async fn eventually<T>(
    within: std::time::Duration,
    mut probe: impl AsyncFnMut() -> Result<T, String>,
) -> T {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match probe().await {
            Ok(v) => return v,
            Err(why) => assert!(tokio::time::Instant::now() < deadline, "{why}"),
        }
        tokio::task::yield_now().await;
    }
}

/// An answer through the gateway, read whole, with the headers tests look
/// at by name.
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Reply {
    /// A header's value; `""` when absent.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// `x-switchyard-cache`.
    pub fn cache(&self) -> &str {
        self.header("x-switchyard-cache")
    }

    /// `x-switchyard-cache-similarity`.
    pub fn similarity(&self) -> &str {
        self.header("x-switchyard-cache-similarity")
    }

    /// `x-switchyard-provider`.
    pub fn provider(&self) -> &str {
        self.header("x-switchyard-provider")
    }

    /// The first choice's message text of a chat completion.
    pub fn content(&self) -> String {
        self.json()["choices"][0]["message"]["content"]
            .as_str()
            .unwrap_or_else(|| panic!("no content in {}", self.text))
            .to_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.text).unwrap_or(serde_json::Value::Null)
    }
}

/// POSTs `body` to `{base}/v1/chat/completions` with extra `headers`.
pub async fn post_chat(base: &str, body: &serde_json::Value, headers: &[(&str, &str)]) -> Reply {
    let mut req = http_client()
        .post(format!("{base}/v1/chat/completions"))
        .json(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = req.send().await.unwrap();
    Reply {
        status: res.status().as_u16(),
        headers: res.headers().clone(),
        text: res.text().await.unwrap(),
    }
}

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
