//! `responses: native` through the real binary: a Responses API request
//! reaches an upstream with its own Responses endpoint (the double's
//! `POST /v1/responses`) as the client sent it, and the client gets the
//! upstream's `response` object (or its stream events) back, with usage
//! and cost recorded as for chat; fallback between a native and a
//! translated target works both ways.

// Helpers of a test file fail the test by panicking, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use switchyard_e2e::double::Double;
use switchyard_e2e::process::{Proc, Serve, serve, write_config};

fn config(double: &Double) -> String {
    let base = double.base_url();
    format!(
        r#"
server:
  http_addr: 127.0.0.1:0
  grpc_addr: 127.0.0.1:0
  shutdown_delay: 0s
providers:
  - name: native
    kind: openai
    base_url: {base}
    api_key: sk-test-key
    responses: native
  - name: up
    kind: openai
    base_url: {base}
    api_key: sk-test-key
pricing:
  models:
    - {{ provider: openai, model: gpt-test, input: 2, output: 8 }}
models:
  - name: native-first
    routes:
      - {{ provider: native, model: error-429 }}
      - {{ provider: up, model: gpt-test }}
  - name: translated-first
    routes:
      - {{ provider: up, model: error-429 }}
      - {{ provider: native, model: gpt-test }}
  - name: search
    routes:
      - {{ provider: up, model: gpt-test }}
      - {{ provider: native, model: gpt-test }}
"#
    )
}

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    text: String,
}

impl Answer {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap()
    }

    /// The SSE events as (event line, data).
    fn events(&self) -> Vec<(String, Value)> {
        self.text
            .split("\n\n")
            .filter(|b| !b.trim().is_empty())
            .map(|block| {
                let mut kind = String::new();
                let mut data = Value::Null;
                for line in block.lines() {
                    if let Some(k) = line.strip_prefix("event: ") {
                        kind = k.to_owned();
                    } else if let Some(d) = line.strip_prefix("data: ") {
                        data = serde_json::from_str(d).unwrap();
                    }
                }
                (kind, data)
            })
            .collect()
    }
}

async fn create(s: &Serve, body: Value) -> Answer {
    create_at(&s.proc.http(), body).await
}

async fn create_at(base: &str, body: Value) -> Answer {
    let res = switchyard_e2e::http_client()
        .post(format!("{base}/v1/responses"))
        .header("authorization", "Bearer sk-caller")
        .json(&body)
        .send()
        .await
        .unwrap();
    Answer {
        status: res.status().as_u16(),
        headers: res.headers().clone(),
        text: res.text().await.unwrap(),
    }
}

/// The last request body the double received.
async fn upstream_body(double: &Double) -> Value {
    let stats: Value = reqwest::get(format!("http://{}/_double/stats", double.addr))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    stats["last_body"].clone()
}

/// A request using what the chat translation cannot carry.
fn rich_request(model: &str) -> Value {
    json!({
        "model": model,
        "input": [{"role": "user", "content": [{"type": "input_text", "text": "find switchyard"}]}],
        "tools": [{"type": "web_search"}],
        "include": ["reasoning.encrypted_content", "web_search_call.action.sources"],
        "truncation": "auto",
        "service_tier": "flex",
        "a_field_from_the_future": {"nested": [1, 2.5, "x"]},
        "store": false,
    })
}

#[tokio::test]
async fn native_requests_reach_the_upstream_untouched_and_answers_come_back_as_sent() {
    let double = Double::start().await.unwrap();
    let s = serve(&config(&double));

    // One piece.
    let sent = rich_request("native/gpt-test");
    let a = create(&s, sent.clone()).await;
    assert_eq!(a.status, 200, "{}", a.text);
    let mut expected = sent.clone();
    expected["model"] = json!("gpt-test");
    assert_eq!(upstream_body(&double).await, expected);
    let r = a.json();
    assert_eq!(r["object"], "response");
    // The upstream's own id and object, down to the item type the
    // canonical model does not have.
    assert!(r["id"].as_str().unwrap().starts_with("resp_double"), "{r}");
    assert_eq!(r["output"][0]["type"], "web_search_call");
    assert_eq!(r["output"][0]["action"]["query"], "find switchyard");
    assert_eq!(
        r["output"][1]["content"][0]["text"],
        "echo: find switchyard"
    );
    assert_eq!(r["truncation"], "auto");
    assert_eq!(r["usage"]["input_tokens"], 2);
    assert_eq!(r["usage"]["output_tokens"], 3);
    assert_eq!(a.header("x-switchyard-provider"), "native");
    assert_eq!(a.header("x-switchyard-model"), "gpt-test");
    // Cost at $2 / $8 per million tokens, on the answer and its header.
    let cost = (2.0 * 2.0 + 3.0 * 8.0) / 1e6;
    assert!(
        (r["usage"]["cost"].as_f64().unwrap() - cost).abs() < 1e-12,
        "{r}"
    );
    let header: f64 = a.header("x-switchyard-cost-usd").parse().unwrap();
    assert!((header - cost).abs() < 1e-12);

    // Streamed: every upstream event, in order, as it was sent.
    let mut sent = rich_request("native/gpt-test");
    sent["stream"] = json!(true);
    let a = create(&s, sent.clone()).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(upstream_body(&double).await["stream"], true);
    assert_eq!(upstream_body(&double).await["include"], sent["include"]);
    let events = a.events();
    let kinds: Vec<&str> = events.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(kinds.first(), Some(&"response.created"));
    assert!(
        kinds.contains(&"response.web_search_call.searching"),
        "{kinds:?}"
    );
    assert_eq!(kinds.last(), Some(&"response.completed"));
    for (i, (kind, data)) in events.iter().enumerate() {
        assert_eq!(data["type"], kind.as_str());
        assert_eq!(data["sequence_number"], i, "{kinds:?}");
    }
    let text: String = events
        .iter()
        .filter(|(k, _)| k == "response.output_text.delta")
        .filter_map(|(_, d)| d["delta"].as_str())
        .collect();
    assert_eq!(text, "echo: find switchyard");
    let done = &events.last().unwrap().1["response"];
    assert_eq!(done["output"][0]["type"], "web_search_call");
    assert_eq!(done["usage"]["output_tokens"], 3);
    assert!((done["usage"]["cost"].as_f64().unwrap() - cost).abs() < 1e-12);

    // Without a store here, `previous_response_id` is the upstream's own:
    // passed on to a native target.
    let a = create(
        &s,
        json!({"model": "native/gpt-test", "input": "and then?", "previous_response_id": "resp_up1"}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(
        upstream_body(&double).await["previous_response_id"],
        "resp_up1"
    );
    assert_eq!(a.json()["previous_response_id"], "resp_up1");

    // A translated provider of the same upstream gets chat, and refuses
    // what only a native target can serve.
    let a = create(&s, json!({"model": "up/gpt-test", "input": "hi"})).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert!(upstream_body(&double).await.get("messages").is_some());
    let a = create(&s, rich_request("up/gpt-test")).await;
    assert_eq!(a.status, 400, "{}", a.text);
    assert_eq!(a.json()["error"]["param"], "tools[0].type");
}

#[tokio::test]
async fn fallback_between_native_and_translated_targets_works_both_ways() {
    let double = Double::start().await.unwrap();
    let s = serve(&config(&double));

    // Native rate limited: the translated target gets the chat translation.
    for stream in [false, true] {
        let a = create(
            &s,
            json!({"model": "native-first", "input": "hello", "include": ["x"], "stream": stream}),
        )
        .await;
        assert_eq!(a.status, 200, "{}", a.text);
        assert_eq!(a.header("x-switchyard-provider"), "up");
        let upstream = upstream_body(&double).await;
        assert_eq!(upstream["model"], "gpt-test");
        assert!(upstream.get("messages").is_some(), "{upstream}");
        assert!(upstream.get("input").is_none(), "{upstream}");
        if stream {
            let events = a.events();
            assert_eq!(events.last().unwrap().0, "response.completed");
        } else {
            assert_eq!(a.json()["output"][0]["content"][0]["text"], "echo: hello");
        }
    }

    // Translated rate limited: the native target gets the request as sent.
    let a = create(
        &s,
        json!({"model": "translated-first", "input": "hello", "truncation": "auto"}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.header("x-switchyard-provider"), "native");
    let upstream = upstream_body(&double).await;
    assert_eq!(upstream["input"], "hello");
    assert_eq!(upstream["truncation"], "auto");
    assert!(upstream.get("messages").is_none(), "{upstream}");
    assert!(a.json()["id"].as_str().unwrap().starts_with("resp_double"));

    // A built-in tool: the translated target refuses it, the native one serves it.
    let a = create(&s, rich_request("search")).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.header("x-switchyard-provider"), "native");
    assert_eq!(a.json()["output"][0]["type"], "web_search_call");
}

#[tokio::test]
async fn the_gateway_store_keeps_and_continues_native_responses() {
    let double = Double::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let yaml = format!("{}responses:\n  store: auto\n", config(&double));
    let path = write_config(dir.path(), &yaml);
    let args = ["serve", "--config", path.to_str().unwrap()];
    let env = [("SWITCHYARD_DATA_DIR", data.path().to_str().unwrap())];
    let gw = Proc::start_with_env(&args, "router listening", &env);
    let base = gw.http();

    let mut first = rich_request("native/gpt-test");
    first["store"] = json!(true);
    let a = create_at(&base, first).await;
    assert_eq!(a.status, 200, "{}", a.text);
    let r = a.json();
    // The gateway's id, so it can continue it.
    let id = r["id"].as_str().unwrap().to_owned();
    assert!(!id.starts_with("resp_double"), "{id}");
    assert_eq!(r["output"][0]["type"], "web_search_call");

    // Continued on the native target: the stored items, as stored, before
    // the new input; the gateway's id is not sent upstream.
    for stream in [false, true] {
        let a = create_at(
            &base,
            json!({"model": "native/gpt-test", "input": "more", "previous_response_id": id, "stream": stream}),
        )
        .await;
        assert_eq!(a.status, 200, "{}", a.text);
        let upstream = upstream_body(&double).await;
        assert!(upstream.get("previous_response_id").is_none(), "{upstream}");
        let input = upstream["input"].as_array().unwrap();
        let kinds: Vec<&str> = input
            .iter()
            .map(|i| i["type"].as_str().unwrap_or("message"))
            .collect();
        assert_eq!(
            kinds,
            ["message", "web_search_call", "message", "message"],
            "{upstream}"
        );
        assert_eq!(input[3]["content"], "more");
        if stream {
            let events = a.events();
            let (kind, done) = events.last().unwrap();
            assert_eq!(kind, "response.completed");
            // Every event names the stored response.
            let stored = done["response"]["id"].as_str().unwrap();
            assert!(!stored.starts_with("resp_double"));
            assert_eq!(events[0].1["response"]["id"], stored);
        }
    }

    // A translated target cannot take the stored web search call; the route
    // moves on to the native one.
    let a = create_at(
        &base,
        json!({"model": "search", "input": "more", "previous_response_id": id}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.header("x-switchyard-provider"), "native");

    // Retrieved as it was answered.
    let got: Value = switchyard_e2e::http_client()
        .get(format!("{base}/v1/responses/{id}"))
        .header("authorization", "Bearer sk-caller")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got["id"], id.as_str());
    assert_eq!(got["output"], r["output"]);
}
