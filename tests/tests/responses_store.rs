//! Stored Responses API responses (`responses.store`) through the real
//! binary: `switchyard serve` keeps them in its local file across a
//! restart; routers over NATS share them through the JetStream bucket, so
//! a conversation continues on whichever router the next request reaches.

// Helpers of a test file fail the test by panicking, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use switchyard_e2e::double::Double;
use switchyard_e2e::nats::NatsServer;
use switchyard_e2e::process::{Proc, nats_config, write_config};

const KEY: &str = "Bearer sk-caller-a";

async fn call(
    method: reqwest::Method,
    url: String,
    auth: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = switchyard_e2e::http_client()
        .request(method, url)
        .header("authorization", auth);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap())
}

async fn create(base: &str, body: Value) -> (u16, Value) {
    call(
        reqwest::Method::POST,
        format!("{base}/v1/responses"),
        KEY,
        Some(body),
    )
    .await
}

async fn retrieve(base: &str, id: &str, auth: &str) -> (u16, Value) {
    call(
        reqwest::Method::GET,
        format!("{base}/v1/responses/{id}"),
        auth,
        None,
    )
    .await
}

/// The messages of the last chat request the double received.
async fn upstream_messages(double: &Double) -> Vec<(String, String)> {
    let stats: Value = reqwest::get(format!("http://{}/_double/stats", double.addr))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    stats["last_body"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let content = match &m["content"] {
                Value::String(s) => s.clone(),
                Value::Array(parts) => parts.iter().filter_map(|p| p["text"].as_str()).collect(),
                _ => String::new(),
            };
            (m["role"].as_str().unwrap().to_owned(), content)
        })
        .collect()
}

fn serve_config(double: &Double, store: &str) -> String {
    format!(
        "server:\n  http_addr: 127.0.0.1:0\n  grpc_addr: 127.0.0.1:0\nproviders:\n  - name: up\n    kind: openai\n    base_url: {}\n    api_key: sk-test-key\nresponses:\n  store: {store}\n  ttl: 1h\n",
        double.base_url()
    )
}

#[tokio::test]
async fn serve_keeps_responses_in_its_file_across_a_restart() {
    let double = Double::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &serve_config(&double, "auto"));
    let args = ["serve", "--config", path.to_str().unwrap()];
    let env = [("SWITCHYARD_DATA_DIR", data.path().to_str().unwrap())];

    let mut gw = Proc::start_with_env(&args, "router listening", &env);
    let (status, first) = create(
        &gw.http(),
        json!({"model": "up/gpt-test", "input": "my name is Ada", "instructions": "be brief"}),
    )
    .await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["store"], true);
    let id = first["id"].as_str().unwrap().to_owned();
    // SIGTERM: the queued write is committed before the process exits.
    assert!(gw.terminate().success());
    assert!(data.path().join("responses.db").exists());

    let gw = Proc::start_with_env(&args, "router listening", &env);
    let base = gw.http();
    let (status, got) = retrieve(&base, &id, KEY).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["id"], id.as_str());
    assert_eq!(got["output"], first["output"]);

    let (status, second) = create(
        &base,
        json!({"model": "up/gpt-test", "input": "what is my name?", "previous_response_id": id}),
    )
    .await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["previous_response_id"], id.as_str());
    assert_eq!(
        upstream_messages(&double).await,
        [
            ("user".to_owned(), "my name is Ada".to_owned()),
            ("assistant".to_owned(), "echo: my name is Ada".to_owned()),
            ("user".to_owned(), "what is my name?".to_owned()),
        ]
    );

    // Another caller: not found, and it cannot delete it either.
    let (status, e) = retrieve(&base, &id, "Bearer sk-caller-b").await;
    assert_eq!(status, 404, "{e}");
    let (status, deleted) = call(
        reqwest::Method::DELETE,
        format!("{base}/v1/responses/{id}"),
        KEY,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        deleted,
        json!({"id": id, "object": "response", "deleted": true})
    );
    let (status, e) = retrieve(&base, &id, KEY).await;
    assert_eq!(status, 404);
    assert_eq!(e["error"]["type"], "invalid_request_error");
}

#[tokio::test]
async fn a_store_that_is_off_says_so() {
    let double = Double::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &serve_config(&double, "off"));
    let gw = Proc::start(
        &["serve", "--config", path.to_str().unwrap()],
        "router listening",
    );
    let base = gw.http();
    let (status, r) = create(&base, json!({"model": "up/gpt-test", "input": "x"})).await;
    assert_eq!(status, 200);
    assert_eq!(r["store"], false);
    let (status, e) = create(
        &base,
        json!({"model": "up/gpt-test", "input": "x", "previous_response_id": "resp_1"}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(e["error"]["param"], "previous_response_id");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("responses.store"),
        "{e}"
    );
    let (status, _) = retrieve(&base, "resp_1", KEY).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn routers_over_nats_share_the_bucket() {
    let nats = NatsServer::start().unwrap();
    let double = Double::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let yaml = nats_config(
        &nats.url(),
        &double.base_url(),
        "",
        "  - name: chat\n    routes:\n      - { provider: up, model: gpt-test }\n",
    ) + "responses:\n  store: auto\n  ttl: 1h\n  bucket: e2e_responses\n";
    let path = write_config(dir.path(), &yaml);
    let path = path.to_str().unwrap();
    let _worker = Proc::start(
        &["worker", "--config", path, "--provider", "up"],
        "worker serving",
    );
    let a = Proc::start(&["router", "--config", path], "router listening");
    let b = Proc::start(&["router", "--config", path], "router listening");

    let (status, first) = create(
        &a.http(),
        json!({"model": "chat", "input": "my name is Ada", "stream": false}),
    )
    .await;
    assert_eq!(status, 200, "{first}");
    let id = first["id"].as_str().unwrap();

    // The next turn reaches the other router at once.
    let (status, second) = create(
        &b.http(),
        json!({"model": "chat", "input": "what is my name?", "previous_response_id": id}),
    )
    .await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(
        second["output"][0]["content"][0]["text"],
        "echo: what is my name?"
    );
    assert_eq!(upstream_messages(&double).await.len(), 3);
    let (status, got) = retrieve(&b.http(), second["id"].as_str().unwrap(), KEY).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["previous_response_id"], id);

    let (status, e) = create(
        &b.http(),
        json!({"model": "chat", "input": "x", "previous_response_id": "resp_unknown"}),
    )
    .await;
    assert_eq!(status, 404, "{e}");
    assert_eq!(e["error"]["param"], "previous_response_id");
    assert_eq!(
        e["error"]["message"],
        "Previous response with id 'resp_unknown' not found."
    );
}
