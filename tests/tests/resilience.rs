//! Routing and resilience with real processes and injected faults, in
//! `switchyard serve` (in-process bus): cooldowns from retry-after, retries
//! with backoff, first-token timeouts, refused connections, cut streams,
//! context windows and capabilities, weighted splits, hedging, circuit
//! breakers and config hot reload under load.

// Helpers of a test file fail the test by panicking, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use switchyard_e2e::double::Double;
use switchyard_e2e::process::{Proc, write_config};

struct Serve {
    dir: tempfile::TempDir,
    proc: Proc,
}

impl Serve {
    fn base(&self) -> String {
        self.proc.http()
    }
}

fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn serve(double: &Double, models: &str, routing: &str) -> Serve {
    let dir = tempfile::tempdir().unwrap();
    let yaml = config_text(double, models, routing);
    let path = write_config(dir.path(), &yaml);
    let proc = Proc::start(
        &["serve", "--config", path.to_str().unwrap()],
        "router listening",
    );
    Serve { dir, proc }
}

fn config_text(double: &Double, models: &str, routing: &str) -> String {
    format!(
        r#"
server:
  http_addr: 127.0.0.1:0
  grpc_addr: 127.0.0.1:0
providers:
  - name: demo
    kind: demo
  - name: up
    kind: openai
    base_url: {base}
    timeout: 5s
  - name: dead
    kind: openai
    base_url: http://127.0.0.1:{closed}/v1
{routing}
models:
{models}
"#,
        base = double.base_url(),
        closed = closed_port(),
    )
}

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    }
}

async fn ask(base: &str, body: Value) -> Answer {
    let res = switchyard_e2e::http_client()
        .post(format!("{base}/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let body = res.json().await.unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        body,
    }
}

fn chat(model: &str, text: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": text}]})
}

#[tokio::test]
async fn a_429_moves_on_at_once_and_the_target_rests_for_retry_after() {
    let double = Double::start().await.unwrap();
    let s = serve(
        &double,
        "  - name: rl\n    routes:\n      - { provider: up, model: error-429-1 }\n      - { provider: up, model: ok }\n",
        "",
    );
    let a = ask(&s.base(), chat("rl", "hi")).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.header("x-switchyard-model"), "ok");
    assert_eq!(a.header("x-switchyard-attempts"), "2");
    assert_eq!(a.header("x-switchyard-attempted"), "up/error-429-1, up/ok");
    assert_eq!(double.requests_for("error-429-1"), 1);

    // Cooling down: not called again, the next target answers directly.
    let a = ask(&s.base(), chat("rl", "hi")).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("x-switchyard-attempts"), "1");
    assert_eq!(double.requests_for("error-429-1"), 1);

    // After retry-after (1 s) the target is tried again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let a = ask(&s.base(), chat("rl", "hi")).await;
    assert_eq!(a.status, 200);
    assert_eq!(double.requests_for("error-429-1"), 2);
}

#[tokio::test]
async fn a_single_target_that_is_rate_limited_answers_429_with_retry_after() {
    let double = Double::start().await.unwrap();
    let s = serve(
        &double,
        "  - name: rl\n    routes:\n      - { provider: up, model: error-429-3 }\n",
        "",
    );
    let a = ask(&s.base(), chat("rl", "hi")).await;
    assert_eq!(a.status, 429, "{}", a.body);
    assert_eq!(a.header("retry-after"), "3");
    // While it rests, the gateway answers without calling it.
    let a = ask(&s.base(), chat("rl", "hi")).await;
    assert_eq!(a.status, 503, "{}", a.body);
    assert_eq!(a.body["error"]["code"], "all_targets_unavailable");
    assert!(!a.header("retry-after").is_empty());
    assert_eq!(double.requests_for("error-429-3"), 1);
}

#[tokio::test]
async fn server_errors_are_retried_with_backoff_within_the_budget() {
    let double = Double::start().await.unwrap();
    let s = serve(
        &double,
        "  - name: five\n    retry: { max_attempts: 3, backoff_base: 10ms, backoff_max: 50ms }\n    routes:\n      - { provider: up, model: error-500 }\n",
        "",
    );
    let a = ask(&s.base(), chat("five", "hi")).await;
    assert_eq!(a.status, 502, "{}", a.body);
    assert_eq!(a.header("x-switchyard-attempts"), "3");
    assert_eq!(double.requests_for("error-500"), 3);
}

#[tokio::test]
async fn a_400_is_not_retried_anywhere() {
    let double = Double::start().await.unwrap();
    let s = serve(
        &double,
        "  - name: bad\n    routes:\n      - { provider: up, model: error-400 }\n      - { provider: demo, model: echo }\n",
        "",
    );
    let a = ask(&s.base(), chat("bad", "hi")).await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert_eq!(a.header("x-switchyard-attempts"), "1");
}

#[tokio::test]
async fn first_token_timeout_abandons_a_hung_target_and_cancels_it() {
    let double = Double::start().await.unwrap();
    let s = serve(
        &double,
        "  - name: slowfirst\n    first_token_timeout: 300ms\n    routes:\n      - { provider: up, model: hang }\n      - { provider: up, model: ok }\n",
        "",
    );
    let disconnected = double.stats.disconnected.notified();
    tokio::pin!(disconnected);
    disconnected.as_mut().enable();
    let a = ask(&s.base(), chat("slowfirst", "hi")).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.header("x-switchyard-model"), "ok");
    tokio::time::timeout(Duration::from_secs(5), disconnected)
        .await
        .expect("hung attempt not cancelled upstream");
}

#[tokio::test]
async fn connection_refused_falls_back() {
    let double = Double::start().await.unwrap();
    let s = serve(
        &double,
        "  - name: conn\n    routes:\n      - { provider: dead, model: x }\n      - { provider: up, model: ok }\n",
        "",
    );
    let a = ask(&s.base(), chat("conn", "hi")).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.header("x-switchyard-attempted"), "dead/x, up/ok");
}

#[tokio::test]
async fn a_stream_cut_midway_ends_with_an_error_event() {
    let double = Double::start().await.unwrap();
    let s = serve(
        &double,
        "  - name: cut\n    routes:\n      - { provider: up, model: cut }\n",
        "",
    );
    let res = switchyard_e2e::http_client()
        .post(format!("{}/v1/chat/completions", s.base()))
        .json(&json!({"model": "cut", "stream": true, "messages": [{"role": "user", "content": "a b c d e"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body = String::from_utf8(res.bytes().await.unwrap().to_vec()).unwrap();
    let events: Vec<&str> = body.split("\n\n").filter(|e| !e.is_empty()).collect();
    assert!(events.len() >= 2, "{body}");
    let last: Value =
        serde_json::from_str(events.last().unwrap().trim_start_matches("data: ")).unwrap();
    assert!(last["error"]["message"].is_string(), "{body}");
    assert!(!body.contains("[DONE]"), "{body}");
}

#[tokio::test]
async fn context_windows_and_capabilities_pick_a_fitting_route() {
    let double = Double::start().await.unwrap();
    let s = serve(
        &double,
        r#"  - name: ctx
    routes:
      - { provider: up, model: small, context_window: 50 }
      - { provider: up, model: big, context_window: 100000 }
  - name: grow
    routes:
      - { provider: up, model: context-long }
      - { provider: up, model: huge, context_window: 200000 }
  - name: tooly
    routes:
      - { provider: up, model: notools, capabilities: [vision] }
      - { provider: up, model: withtools, capabilities: [tools] }
"#,
        "",
    );
    let long = "word ".repeat(400);
    let a = ask(&s.base(), chat("ctx", &long)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.header("x-switchyard-model"), "big");
    assert_eq!(double.requests_for("small"), 0);

    let a = ask(&s.base(), chat("ctx", &"word ".repeat(200_000))).await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert_eq!(a.body["error"]["code"], "context_length_exceeded");

    // The upstream says "too long": only larger windows are tried next.
    let a = ask(&s.base(), chat("grow", "hi")).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        a.header("x-switchyard-attempted"),
        "up/context-long, up/huge"
    );

    let mut with_tools = chat("tooly", "hi");
    with_tools["tools"] =
        json!([{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]);
    let a = ask(&s.base(), with_tools).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.header("x-switchyard-model"), "withtools");
    assert_eq!(double.requests_for("notools"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_split_is_within_5_percent_over_2000_requests() {
    let double = Double::start().await.unwrap();
    let s = serve(
        &double,
        "  - name: w\n    strategy: weighted\n    routes:\n      - { provider: up, model: wa, weight: 3 }\n      - { provider: up, model: wb, weight: 1 }\n",
        "",
    );
    let base = s.base();
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (base, next) = (base.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let client = switchyard_e2e::http_client();
            while next.fetch_add(1, Ordering::SeqCst) < 2000 {
                let res = client
                    .post(format!("{base}/v1/chat/completions"))
                    .json(&chat("w", "x"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), 200);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let (a, b) = (
        double.requests_for("wa") as f64,
        double.requests_for("wb") as f64,
    );
    assert_eq!(a + b, 2000.0);
    let share = a / 2000.0;
    assert!(
        (share - 0.75).abs() <= 0.05,
        "wa got {share:.3} of traffic, configured 0.75"
    );
}

#[tokio::test]
async fn hedging_starts_the_next_target_and_cancels_the_slow_one() {
    let double = Double::start().await.unwrap();
    let s = serve(
        &double,
        "  - name: hedged\n    hedge: { delay: 100ms }\n    routes:\n      - { provider: up, model: slow-3000 }\n      - { provider: up, model: fast }\n",
        "",
    );
    let disconnected = double.stats.disconnected.notified();
    tokio::pin!(disconnected);
    disconnected.as_mut().enable();
    let a = ask(&s.base(), chat("hedged", "hi")).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.header("x-switchyard-model"), "fast");
    assert_eq!(a.header("x-switchyard-attempted"), "up/slow-3000, up/fast");
    tokio::time::timeout(Duration::from_secs(2), disconnected)
        .await
        .expect("the losing hedge was not cancelled upstream");
}

#[tokio::test]
async fn a_failing_target_opens_its_breaker_and_the_admin_api_shows_it() {
    let double = Double::start().await.unwrap();
    let s = serve(
        &double,
        "  - name: brk\n    retry: { max_attempts: 2 }\n    routes:\n      - { provider: up, model: error-500 }\n      - { provider: demo, model: echo }\n",
        "routing:\n  breaker: { failure_threshold: 2, open_for: 60s }\n",
    );
    for _ in 0..2 {
        let a = ask(&s.base(), chat("brk", "hi")).await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(a.header("x-switchyard-provider"), "demo");
    }
    assert_eq!(double.requests_for("error-500"), 2);
    let a = ask(&s.base(), chat("brk", "hi")).await;
    assert_eq!(a.status, 200);
    assert_eq!(
        a.header("x-switchyard-attempts"),
        "1",
        "open breaker skipped"
    );
    assert_eq!(double.requests_for("error-500"), 2);

    let admin: Value = switchyard_e2e::http_client()
        .get(format!("{}/admin/v1/routes", s.base()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let target = admin["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["model"] == "error-500")
        .unwrap_or_else(|| panic!("{admin}"));
    assert_eq!(target["breaker"], "open", "{target}");
    assert!(
        admin["models"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["name"] == "brk"),
        "{admin}"
    );
}

/// Sends requests at `model` until `stop` is set; returns the non-200
/// answers.
fn load(
    base: String,
    model: &'static str,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
) -> tokio::task::JoinHandle<Vec<String>> {
    tokio::spawn(async move {
        let client = switchyard_e2e::http_client();
        let mut failures = Vec::new();
        while !stop.load(Ordering::SeqCst) {
            let res = client
                .post(format!("{base}/v1/chat/completions"))
                .json(&chat(model, "x"))
                .timeout(Duration::from_secs(10))
                .send()
                .await;
            sent.fetch_add(1, Ordering::SeqCst);
            match res {
                Ok(r) if r.status() == 200 => {}
                Ok(r) => failures.push(format!(
                    "{}: {}",
                    r.status(),
                    r.text().await.unwrap_or_default()
                )),
                Err(e) => failures.push(e.to_string()),
            }
        }
        failures
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_hot_reload_under_load_fails_no_request() {
    let double = Double::start().await.unwrap();
    let models_a = "  - name: chat\n    routes:\n      - { provider: up, model: first }\n";
    let models_b = "  - name: chat\n    strategy: weighted\n    routes:\n      - { provider: up, model: second, weight: 1 }\n";
    let mut s = serve(&double, models_a, "");
    let path = s.dir.path().join("switchyard.yaml");
    let pid = s.proc.child.id().to_string();
    // Each config change lands while requests are flowing.
    let flowing = |sent: Arc<AtomicUsize>| async move {
        let target = sent.load(Ordering::SeqCst) + 50;
        while sent.load(Ordering::SeqCst) < target {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    let hup = || {
        let ok = std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    };
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..4)
        .map(|_| load(s.base(), "chat", stop.clone(), sent.clone()))
        .collect();

    // A bad config is rejected and the running one kept.
    flowing(sent.clone()).await;
    std::fs::write(
        &path,
        "models: [ {name: chat, routes: [ {provider: nope, model: x} ] } ]\n",
    )
    .unwrap();
    hup();
    wait_for_log(&mut s.proc, "config reload rejected");
    // The errors follow, naming the file and the key.
    wait_for_log(&mut s.proc, "models[0].routes[0].provider");

    for models in [models_b, models_a, models_b] {
        flowing(sent.clone()).await;
        std::fs::write(&path, config_text(&double, models, "")).unwrap();
        hup();
        wait_for_log(&mut s.proc, "config reloaded");
    }
    flowing(sent.clone()).await;
    stop.store(true, Ordering::SeqCst);
    let mut failures = Vec::new();
    for w in workers {
        failures.extend(w.await.unwrap());
    }
    assert!(failures.is_empty(), "{failures:?}");
    assert!(sent.load(Ordering::SeqCst) >= 250);
    let a = ask(&s.base(), chat("chat", "x")).await;
    assert_eq!(a.header("x-switchyard-model"), "second");
}

fn wait_for_log(proc: &mut Proc, needle: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    while std::time::Instant::now() < deadline {
        match proc.lines.recv_timeout(Duration::from_millis(200)) {
            Ok(line) if line.contains(needle) => return line,
            Ok(line) => seen.push(line),
            Err(_) => {}
        }
    }
    panic!("no log line with `{needle}`; saw:\n{}", seen.join("\n"));
}

#[tokio::test]
async fn streams_fall_back_before_the_first_byte() {
    let double = Double::start().await.unwrap();
    let s = serve(
        &double,
        "  - name: sfb\n    routes:\n      - { provider: up, model: error-500 }\n      - { provider: up, model: ok }\n",
        "",
    );
    let res = switchyard_e2e::http_client()
        .post(format!("{}/v1/chat/completions", s.base()))
        .json(&json!({"model": "sfb", "stream": true, "messages": [{"role": "user", "content": "hello"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-switchyard-model"], "ok");
    let mut body = res.bytes_stream();
    let mut text = String::new();
    while let Some(chunk) = body.next().await {
        text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
    }
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
}
