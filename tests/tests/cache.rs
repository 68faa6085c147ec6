//! The exact-match response cache through `switchyard serve` (in-process
//! bus) and the upstream double, whose stats count the requests that
//! reached upstream per model.

// Helpers of a test file fail the test by panicking, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::{Value, json};
use switchyard_e2e::Reply;
use switchyard_e2e::double::Double;
use switchyard_e2e::process::{Proc, Serve, write_config};

fn serve(double: &Double) -> Serve {
    serve_with(double, "cache:\n  enabled: true\n  ttl: 10m\n")
}

fn serve_with(double: &Double, cache: &str) -> Serve {
    switchyard_e2e::process::serve(&config_with(double, cache))
}

/// The models every cache test uses, with `cache` (a YAML `cache:` block).
fn config_with(double: &Double, cache: &str) -> String {
    format!(
        r#"
server:
  http_addr: 127.0.0.1:0
  grpc_addr: 127.0.0.1:0
providers:
  - name: up
    kind: openai
    base_url: {base}
    timeout: 2s
models:
  - name: chat
    routes:
      - {{ provider: up, model: gpt-test }}
  - name: cut
    routes:
      - {{ provider: up, model: cut }}
  - name: emb
    routes:
      - {{ provider: up, model: text-embedding-test }}
  - name: uncached
    cache: {{ enabled: false }}
    routes:
      - {{ provider: up, model: gpt-uncached }}
{cache}"#,
        base = double.base_url()
    )
}

async fn post(base: &str, body: &Value, headers: &[(&str, &str)]) -> Reply {
    switchyard_e2e::post_chat(base, body, headers).await
}

fn ask(model: &str, text: &str) -> Value {
    json!({"model": model, "temperature": 0, "messages": [{"role": "user", "content": text}]})
}

/// The `data:` payloads of an SSE body, checked to be well-formed.
fn sse_events(body: &str) -> Vec<String> {
    assert!(body.ends_with("data: [DONE]\n\n"), "{body}");
    body.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            e.strip_prefix("data: ")
                .unwrap_or_else(|| panic!("not an SSE data event: {e:?}"))
                .to_owned()
        })
        .collect()
}

/// The streamed text and whether a usage chunk came.
fn streamed(body: &str) -> (String, bool) {
    let mut text = String::new();
    let mut usage = false;
    let events = sse_events(body);
    for e in &events[..events.len() - 1] {
        let v: Value = serde_json::from_str(e).unwrap();
        assert_eq!(v["object"], "chat.completion.chunk", "{v}");
        if let Some(t) = v["choices"][0]["delta"]["content"].as_str() {
            text.push_str(t);
        }
        usage |= v["usage"]["total_tokens"].as_u64().is_some_and(|t| t > 0);
    }
    (text, usage)
}

/// Stores run in the background once the answer is complete.
#[tokio::test]
async fn a_repeated_request_is_answered_from_the_cache() {
    let double = Double::start().await.unwrap();
    let s = serve(&double);
    let base = s.proc.http();
    let fresh = post(&base, &ask("chat", "hello cache"), &[]).await;
    assert_eq!(
        (fresh.status, fresh.cache()),
        (200, "miss"),
        "{}",
        fresh.text
    );
    // The same question with other key order and whitespace.
    let body: Value = serde_json::from_str(
        r#"{ "messages": [ {"content": "hello cache", "role": "user"} ], "temperature": 0, "model": "chat" }"#,
    )
    .unwrap();
    let hit = post(&base, &body, &[]).await;
    assert_eq!((hit.status, hit.cache()), (200, "hit"), "{}", hit.text);
    assert_eq!(hit.provider(), "up");
    assert_eq!(hit.content(), fresh.content());
    assert_eq!(double.requests_for("gpt-test"), 1);

    // A streamed request for the same question replays the stored answer.
    let mut stream = ask("chat", "hello cache");
    stream["stream"] = json!(true);
    stream["stream_options"] = json!({"include_usage": true});
    let replay = post(&base, &stream, &[]).await;
    assert_eq!(replay.cache(), "hit");
    let (text, usage) = streamed(&replay.text);
    assert_eq!(text, fresh.content());
    assert!(usage, "{}", replay.text);
    assert_eq!(double.requests_for("gpt-test"), 1);

    let metrics = switchyard_e2e::http_client()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"switchyard_cache_requests_total{result="hit"} 2"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"switchyard_cache_requests_total{result="miss"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_streamed_answer_is_cached_and_replayed_as_sse() {
    let double = Double::start().await.unwrap();
    let s = serve(&double);
    let base = s.proc.http();
    let mut body = ask("chat", "stream me please");
    body["stream"] = json!(true);
    let fresh = post(&base, &body, &[]).await;
    assert_eq!(fresh.cache(), "miss");
    let (fresh_text, _) = streamed(&fresh.text);
    assert!(!fresh_text.is_empty());
    let hit = post(&base, &body, &[]).await;
    assert_eq!((hit.status, hit.cache()), (200, "hit"));
    let (text, usage) = streamed(&hit.text);
    assert_eq!(text, fresh_text);
    assert!(!usage, "no usage chunk unless asked: {}", hit.text);
    let events = sse_events(&hit.text);
    let first: Value = serde_json::from_str(&events[0]).unwrap();
    assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
    let last: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    // The unary form of the question shares the entry.
    let unary = post(&base, &ask("chat", "stream me please"), &[]).await;
    assert_eq!(unary.cache(), "hit");
    assert_eq!(unary.content(), fresh_text);
    assert_eq!(double.requests_for("gpt-test"), 1);
}

#[tokio::test]
async fn a_cut_off_stream_is_not_cached() {
    let double = Double::start().await.unwrap();
    let s = serve(&double);
    let base = s.proc.http();
    let mut body = ask("cut", "this breaks");
    body["stream"] = json!(true);
    for _ in 0..2 {
        let a = post(&base, &body, &[]).await;
        assert_eq!(a.cache(), "miss");
        assert!(!a.text.contains("[DONE]"), "{}", a.text);
    }
    assert_eq!(double.requests_for("cut"), 2);
}

#[tokio::test]
async fn tenants_do_not_share_answers() {
    let double = Double::start().await.unwrap();
    let s = serve(&double);
    let base = s.proc.http();
    let body = ask("chat", "whose answer");
    let a = [("authorization", "Bearer tenant-a")];
    let b = [("authorization", "Bearer tenant-b")];
    assert_eq!(post(&base, &body, &a).await.cache(), "miss");
    assert_eq!(post(&base, &body, &b).await.cache(), "miss");
    assert_eq!(post(&base, &body, &a).await.cache(), "hit");
    assert_eq!(post(&base, &body, &b).await.cache(), "hit");
    assert_eq!(post(&base, &body, &[]).await.cache(), "miss");
    assert_eq!(double.requests_for("gpt-test"), 3);
}

#[tokio::test]
async fn client_directives_and_sampling_are_honoured() {
    let double = Double::start().await.unwrap();
    let s = serve(&double);
    let base = s.proc.http();
    let body = ask("chat", "directives");
    // no-store: neither read nor stored.
    let a = post(&base, &body, &[("cache-control", "no-store")]).await;
    assert_eq!(a.cache(), "skip");
    assert_eq!(post(&base, &body, &[]).await.cache(), "miss");
    // no-cache / refresh: not read (upstream answers), still stored.
    assert_eq!(
        post(&base, &body, &[("cache-control", "no-cache")])
            .await
            .cache(),
        "skip"
    );
    assert_eq!(
        post(&base, &body, &[("x-switchyard-cache", "refresh")])
            .await
            .cache(),
        "skip"
    );
    assert_eq!(
        post(&base, &body, &[("x-switchyard-cache", "skip")])
            .await
            .cache(),
        "skip"
    );
    assert_eq!(post(&base, &body, &[]).await.cache(), "hit");
    assert_eq!(double.requests_for("gpt-test"), 5);

    // Sampling (temperature above 0, or left to the provider's default)
    // is not cached by default.
    let sampled = json!({"model": "chat", "temperature": 0.7, "messages": [{"role": "user", "content": "dice"}]});
    let default = json!({"model": "chat", "messages": [{"role": "user", "content": "dice"}]});
    for body in [&sampled, &sampled, &default, &default] {
        assert_eq!(post(&base, body, &[]).await.cache(), "skip");
    }
    assert_eq!(double.requests_for("gpt-test"), 9);

    // A model with `cache: { enabled: false }`.
    for _ in 0..2 {
        assert_eq!(
            post(&base, &ask("uncached", "x"), &[]).await.cache(),
            "skip"
        );
    }
    assert_eq!(double.requests_for("gpt-uncached"), 2);
}

#[tokio::test]
async fn anthropic_messages_and_grpc_report_the_cache() {
    use switchyard_proto::gateway::v1::gateway_service_client::GatewayServiceClient;
    use switchyard_proto::gateway::v1::{
        ChatRequest, ChatSpec, ContentPart, Message, Role, content_part,
    };

    let double = Double::start().await.unwrap();
    let s = serve(&double);
    let base = s.proc.http();
    let body = json!({"model": "chat", "max_tokens": 64, "temperature": 0,
        "messages": [{"role": "user", "content": "anthropic shape"}]});
    let mut statuses = Vec::new();
    for _ in 0..2 {
        let res = switchyard_e2e::http_client()
            .post(format!("{base}/v1/messages"))
            .header("x-api-key", "sk-ant")
            .header("anthropic-version", "2023-06-01")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 200);
        statuses.push(
            res.headers()["x-switchyard-cache"]
                .to_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(statuses, ["miss", "hit"]);

    let endpoint = format!("http://{}", s.proc.grpc_addr.unwrap());
    let mut client = GatewayServiceClient::connect(endpoint).await.unwrap();
    let spec = ChatSpec {
        model: "chat".into(),
        temperature: Some(0.0),
        messages: vec![Message {
            role: Role::User as i32,
            content: vec![ContentPart {
                part: Some(content_part::Part::Text("grpc shape".into())),
                extra: None,
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let mut statuses = Vec::new();
    for _ in 0..2 {
        let res = client
            .chat(ChatRequest {
                spec: Some(spec.clone()),
            })
            .await
            .unwrap();
        statuses.push(
            res.metadata()
                .get("x-switchyard-cache")
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(statuses, ["miss", "hit"]);
    assert_eq!(double.requests_for("gpt-test"), 2);
}

async fn embed(base: &str, inputs: &[&str], headers: &[(&str, &str)]) -> (String, Value) {
    let mut req = switchyard_e2e::http_client()
        .post(format!("{base}/v1/embeddings"))
        .json(&json!({"model": "emb", "input": inputs}));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = req.send().await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let cache = res.headers()["x-switchyard-cache"]
        .to_str()
        .unwrap()
        .to_owned();
    (cache, res.json().await.unwrap())
}

#[tokio::test]
async fn embeddings_are_cached_per_input() {
    let double = Double::start().await.unwrap();
    let s = serve(&double);
    let base = s.proc.http();
    let vectors = |v: &Value| -> Vec<Value> {
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
            .map(|(i, d)| {
                assert_eq!(d["index"], i, "{v}");
                d["embedding"].clone()
            })
            .collect()
    };
    let (cache, first) = embed(&base, &["alpha", "bb"], &[]).await;
    assert_eq!(cache, "miss");

    // A batch with two cached inputs among two new ones: one upstream call
    // with exactly the new ones, merged back in request order.
    let (cache, mixed) = embed(&base, &["ccc", "alpha", "dddd", "bb"], &[]).await;
    assert_eq!(cache, "miss");
    assert_eq!(double.requests_for("text-embedding-test"), 2);
    let sent = double.stats.last_body.lock().unwrap()["input"].clone();
    assert_eq!(sent, json!(["ccc", "dddd"]));
    let got = vectors(&mixed);
    let before = vectors(&first);
    assert_eq!(got[1], before[0]);
    assert_eq!(got[3], before[1]);
    let lengths: Vec<f64> = got.iter().map(|v| v[0].as_f64().unwrap()).collect();
    assert_eq!(lengths, [3.0, 5.0, 4.0, 2.0]);
    // Usage is what was sent: the same as asking for the new inputs alone.
    let (cache, alone) = embed(&base, &["ccc", "dddd"], &[("cache-control", "no-store")]).await;
    assert_eq!(cache, "skip");
    assert_eq!(mixed["usage"], alone["usage"]);

    // Every input cached: no upstream call, no tokens.
    let calls = double.requests_for("text-embedding-test");
    let (cache, hit) = embed(&base, &["dddd", "alpha"], &[]).await;
    assert_eq!(cache, "hit");
    assert_eq!(double.requests_for("text-embedding-test"), calls);
    assert_eq!(vectors(&hit)[1], before[0]);
    assert_eq!(hit["usage"]["prompt_tokens"], 0);
}

const REDIS: &str = "redis://127.0.0.1:6379";

/// Deletes a test's keys from the local Redis.
fn redis_cleanup(prefix: &str) {
    let mut conn = redis::Client::open(REDIS)
        .unwrap()
        .get_connection()
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query(&mut conn)
        .unwrap();
    if !keys.is_empty() {
        let _: i64 = redis::cmd("DEL").arg(&keys).query(&mut conn).unwrap();
    }
}

#[tokio::test]
async fn routers_share_the_redis_cache() {
    let double = Double::start().await.unwrap();
    let prefix = format!("switchyard-e2e:{}:", uuid_like());
    let cache = format!(
        "cache:\n  enabled: true\n  backend: redis\n  redis: {{ url: '{REDIS}', key_prefix: '{prefix}', timeout: 500ms }}\n"
    );
    let (a, b) = (serve_with(&double, &cache), serve_with(&double, &cache));
    let body = ask("chat", "shared across routers");
    assert_eq!(post(&a.proc.http(), &body, &[]).await.cache(), "miss");
    let hit = post(&b.proc.http(), &body, &[]).await;
    assert_eq!(hit.cache(), "hit");
    assert_eq!(hit.content(), "echo: shared across routers");
    let mut stream = body.clone();
    stream["stream"] = json!(true);
    let replay = post(&b.proc.http(), &stream, &[]).await;
    assert_eq!(replay.cache(), "hit");
    assert_eq!(streamed(&replay.text).0, "echo: shared across routers");
    assert_eq!(double.requests_for("gpt-test"), 1);
    redis_cleanup(&prefix);
}

#[tokio::test]
async fn a_dead_redis_degrades_to_misses() {
    let double = Double::start().await.unwrap();
    // Nothing listens on port 1.
    let s = serve_with(
        &double,
        "cache:\n  enabled: true\n  backend: redis\n  redis: { url: 'redis://127.0.0.1:1', timeout: 100ms }\n",
    );
    let base = s.proc.http();
    let started = std::time::Instant::now();
    for _ in 0..3 {
        let a = post(&base, &ask("chat", "no redis"), &[]).await;
        assert_eq!((a.status, a.cache()), (200, "miss"), "{}", a.text);
        assert_eq!(a.content(), "echo: no redis");
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(double.requests_for("gpt-test"), 3);
    let metrics = switchyard_e2e::http_client()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"switchyard_cache_requests_total{result="error"}"#),
        "{metrics}"
    );
}

/// A per-test unique suffix for Redis keys.
fn uuid_like() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

#[tokio::test]
async fn redis_going_down_mid_run_degrades_to_misses() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut redis = KillOnDrop(
        std::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (apt-get install -y redis-server)"),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "redis-server did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let double = Double::start().await.unwrap();
    let s = serve_with(
        &double,
        &format!(
            "cache:\n  enabled: true\n  backend: redis\n  redis: {{ url: 'redis://127.0.0.1:{port}', timeout: 200ms }}\n"
        ),
    );
    let base = s.proc.http();
    let body = ask("chat", "redis dies");
    assert_eq!(post(&base, &body, &[]).await.cache(), "miss");
    assert_eq!(post(&base, &body, &[]).await.cache(), "hit");
    redis.0.kill().unwrap();
    redis.0.wait().unwrap();
    let started = std::time::Instant::now();
    for _ in 0..3 {
        let a = post(&base, &body, &[]).await;
        assert_eq!((a.status, a.cache()), (200, "miss"), "{}", a.text);
        assert_eq!(a.content(), "echo: redis dies");
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(double.requests_for("gpt-test"), 4);
}

/// A child process killed when the test ends, passed or not.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `cache.persist`: the memory cache written through to `cache.db` in
/// `SWITCHYARD_DATA_DIR`; after a restart (SIGTERM: the queue is flushed at
/// shutdown) the same question is a hit without reaching upstream.
#[tokio::test]
async fn a_persisted_cache_answers_after_a_restart() {
    let double = Double::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let yaml = config_with(
        &double,
        "cache:\n  enabled: true\n  ttl: 10m\n  persist: true\n",
    );
    let path = write_config(dir.path(), &yaml);
    let start = || {
        Proc::start_with_env(
            &["serve", "--config", path.to_str().unwrap()],
            "router listening",
            &[("SWITCHYARD_DATA_DIR", data.to_str().unwrap())],
        )
    };
    let mut first = start();
    let fresh = post(&first.http(), &ask("chat", "remember me"), &[]).await;
    assert_eq!((fresh.status, fresh.cache()), (200, "miss"));
    let mut stream = ask("chat", "remember me too");
    stream["stream"] = json!(true);
    assert_eq!(post(&first.http(), &stream, &[]).await.cache(), "miss");
    assert!(first.terminate().success());
    assert!(data.join("cache.db").exists());

    let second = start();
    let hit = post(&second.http(), &ask("chat", "remember me"), &[]).await;
    assert_eq!((hit.status, hit.cache()), (200, "hit"), "{}", hit.text);
    assert_eq!(hit.content(), fresh.content());
    assert_eq!(hit.provider(), "up");
    let replay = post(&second.http(), &stream, &[]).await;
    assert_eq!(replay.cache(), "hit");
    let (text, _) = streamed(&replay.text);
    assert_eq!(text, "echo: remember me too");
    assert_eq!(double.requests_for("gpt-test"), 2);
}
