//! Per-request routing controls end to end through `switchyard serve`:
//! OpenRouter's `models` fallback list and `provider` preferences in the
//! body, the `x-switchyard-route` header, and the headers that report the
//! decision back. Upstreams are OpenAI-format doubles on real sockets.

// Helpers of a test file fail the test by panicking, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use switchyard_e2e::double::Double;
use switchyard_e2e::process::Serve;

/// Three providers on one double, so a model name picks the behaviour
/// (`error-429` rate-limits) and the provider name says who served.
fn serve(double: &Double) -> Serve {
    let yaml = format!(
        r#"
server:
  http_addr: 127.0.0.1:0
  grpc_addr: 127.0.0.1:0
providers:
  - {{ name: pricey, kind: openai, base_url: "{base}" }}
  - {{ name: cheap, kind: openai, base_url: "{base}", data_collection: deny }}
  - {{ name: plain, kind: openai, base_url: "{base}" }}
  - {{ name: mistral, kind: mistral, base_url: "{base}", api_key: k }}
models:
  - name: limited
    retry: {{ max_attempts: 1 }}
    routes:
      - {{ provider: pricey, model: error-429-0 }}
  - name: backup
    routes:
      - {{ provider: plain, model: backup-model }}
  - name: duo
    retry: {{ max_attempts: 3, backoff_base: 1ms }}
    routes:
      - {{ provider: pricey, model: error-429, price: {{ input_per_mtok: 10, output_per_mtok: 30 }} }}
      - {{ provider: cheap, model: duo-cheap, price: {{ input_per_mtok: 0.5, output_per_mtok: 1 }} }}
  - name: picky
    routes:
      - {{ provider: mistral, model: picky-mistral }}
      - {{ provider: plain, model: picky-openai }}
"#,
        base = double.base_url()
    );
    switchyard_e2e::process::serve(&yaml)
}

async fn chat(base: &str, body: Value, route: Option<&str>) -> Answer {
    let mut body = body;
    body["messages"] = json!([{"role": "user", "content": "hi"}]);
    let headers: Vec<(&str, &str)> = route
        .map(|r| ("x-switchyard-route", r))
        .into_iter()
        .collect();
    let reply = switchyard_e2e::post_chat(base, &body, &headers).await;
    Answer {
        body: reply.json(),
        status: reply.status,
        reply,
    }
}

/// A reply with its body parsed (every answer here is JSON).
struct Answer {
    status: u16,
    body: Value,
    reply: switchyard_e2e::Reply,
}

impl Answer {
    fn header(&self, name: &str) -> &str {
        self.reply.header(name)
    }
}

#[tokio::test]
async fn models_list_falls_back_when_the_first_model_is_rate_limited() {
    let double = Double::start().await.unwrap();
    let s = serve(&double);
    let base = s.proc.http();

    let a = chat(
        &base,
        json!({"model": "limited", "models": ["limited", "backup"]}),
        None,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.header("x-switchyard-provider"), "plain");
    assert_eq!(a.header("x-switchyard-model"), "backup-model");
    assert_eq!(a.header("x-switchyard-routing"), "models=limited,backup");
    // Why it moved on (`limited` allows one attempt; the fallback model
    // brings its own).
    assert_eq!(
        a.header("x-switchyard-outcomes"),
        "pricey/error-429-0=rate_limit_exceeded, plain/backup-model=ok"
    );
    // The routing fields never reach an upstream.
    let sent = double.stats.last_body.lock().unwrap().clone();
    assert_eq!(sent["model"], "backup-model");
    assert!(sent.get("models").is_none(), "{sent}");
    assert!(sent.get("provider").is_none(), "{sent}");

    // A model nobody serves is named.
    let a = chat(&base, json!({"model": "limited", "models": ["nope"]}), None).await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert_eq!(a.body["error"]["param"], "models[0]", "{}", a.body);
}

#[tokio::test]
async fn provider_preferences_pick_and_limit_targets() {
    let double = Double::start().await.unwrap();
    let s = serve(&double);
    let base = s.proc.http();

    // sort=price: the cheap target first, so the rate-limited one is never
    // called.
    let before = double
        .stats
        .requests
        .load(std::sync::atomic::Ordering::SeqCst);
    let a = chat(
        &base,
        json!({"model": "duo", "provider": {"sort": "price"}}),
        None,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.header("x-switchyard-provider"), "cheap");
    assert_eq!(a.header("x-switchyard-attempts"), "1");
    assert_eq!(
        double
            .stats
            .requests
            .load(std::sync::atomic::Ordering::SeqCst)
            - before,
        1
    );

    // allow_fallbacks: false surfaces the first target's error.
    let a = chat(
        &base,
        json!({"model": "duo", "provider": {"order": ["pricey"], "allow_fallbacks": false}}),
        None,
    )
    .await;
    assert_eq!(a.status, 429, "{}", a.body);
    assert_eq!(a.header("x-switchyard-attempted"), "pricey/error-429");

    // only / ignore / max_price / data_collection narrow the targets.
    for provider in [
        json!({"only": ["cheap"]}),
        json!({"ignore": ["pricey"]}),
        json!({"max_price": {"prompt": 1}}),
        json!({"data_collection": "deny"}),
    ] {
        let a = chat(&base, json!({"model": "duo", "provider": provider}), None).await;
        assert_eq!(a.status, 200, "{provider}: {}", a.body);
        assert_eq!(
            a.header("x-switchyard-attempted"),
            "cheap/duo-cheap",
            "{provider}"
        );
    }
    let a = chat(
        &base,
        json!({"model": "duo", "provider": {"only": ["plain"]}}),
        None,
    )
    .await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert_eq!(a.body["error"]["param"], "provider");

    // require_parameters: Mistral cannot take `logprobs`, so the OpenAI
    // target serves although it is second.
    let a = chat(
        &base,
        json!({"model": "picky", "logprobs": true, "provider": {"require_parameters": true}}),
        None,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.header("x-switchyard-provider"), "plain");

    // An unknown preference is named, not ignored.
    let a = chat(
        &base,
        json!({"model": "duo", "provider": {"zdr": true}}),
        None,
    )
    .await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert_eq!(a.body["error"]["param"], "provider.zdr");
    assert_eq!(a.body["error"]["type"], "invalid_request_error");
}

#[tokio::test]
async fn route_header_overrides_targets_and_is_validated() {
    let double = Double::start().await.unwrap();
    let s = serve(&double);
    let base = s.proc.http();

    let a = chat(
        &base,
        json!({"model": "duo"}),
        Some(r#"{"targets": ["plain/from-header", "cheap/duo-cheap"], "retry": {"max_attempts": 1}}"#),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.header("x-switchyard-attempted"), "plain/from-header");
    assert_eq!(a.header("x-switchyard-routing"), "x-switchyard-route");
    assert_eq!(
        double.stats.last_body.lock().unwrap()["model"],
        "from-header"
    );

    for (header, field) in [
        (
            r#"{"retry": {"max_attempts": "many"}}"#,
            "x-switchyard-route.retry.max_attempts",
        ),
        (
            r#"{"targets": ["nobody/x"]}"#,
            "x-switchyard-route.targets[0]",
        ),
        (r#"{"strategy": "random"}"#, "x-switchyard-route.strategy"),
        ("{", "x-switchyard-route"),
    ] {
        let a = chat(&base, json!({"model": "duo"}), Some(header)).await;
        assert_eq!(a.status, 400, "{header}: {}", a.body);
        assert_eq!(a.body["error"]["param"], field, "{header}: {}", a.body);
    }

    // Streams take the same controls.
    let res = switchyard_e2e::http_client()
        .post(format!("{base}/v1/chat/completions"))
        .json(
            &json!({"model": "duo", "stream": true, "provider": {"sort": "price"},
            "messages": [{"role": "user", "content": "hi"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-switchyard-provider"], "cheap");
    let text = res.text().await.unwrap();
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
}

#[tokio::test]
async fn grpc_and_messages_take_the_same_controls() {
    use switchyard_proto::gateway::v1::gateway_service_client::GatewayServiceClient;
    use switchyard_proto::gateway::v1::{
        ChatRequest, ChatSpec, ContentPart, Message, Role, content_part,
    };

    let double = Double::start().await.unwrap();
    let s = serve(&double);
    let base = s.proc.http();

    // /v1/messages: the body's `provider` field, Anthropic shape.
    let res = switchyard_e2e::http_client()
        .post(format!("{base}/v1/messages"))
        .header("anthropic-version", "2023-06-01")
        .json(
            &json!({"model": "duo", "max_tokens": 16, "provider": {"only": ["cheap"]},
            "messages": [{"role": "user", "content": "hi"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-switchyard-provider"], "cheap");

    // gRPC: `models` in the spec's pass-through fields, the header as
    // metadata.
    let endpoint = format!("http://{}", s.proc.grpc_addr.unwrap());
    let mut client = GatewayServiceClient::connect(endpoint).await.unwrap();
    let mut extra = serde_json::Map::new();
    extra.insert("models".into(), json!(["limited", "backup"]));
    let spec = ChatSpec {
        model: "limited".into(),
        messages: vec![Message {
            role: Role::User as i32,
            content: vec![ContentPart {
                part: Some(content_part::Part::Text("hi".into())),
                extra: None,
            }],
            ..Default::default()
        }],
        extra: Some(switchyard_proto::json::struct_from_map(extra)),
        ..Default::default()
    };
    let res = client
        .chat(ChatRequest {
            spec: Some(spec.clone()),
        })
        .await
        .unwrap();
    assert_eq!(
        res.metadata().get("x-switchyard-provider").unwrap(),
        "plain"
    );
    assert_eq!(
        res.metadata().get("x-switchyard-routing").unwrap(),
        "models=limited,backup"
    );

    let mut req = tonic::Request::new(ChatRequest { spec: Some(spec) });
    req.metadata_mut().insert(
        "x-switchyard-route",
        r#"{"retry": {"max_attempts": 0}}"#.parse().unwrap(),
    );
    let status = client.chat(req).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status
            .message()
            .contains("x-switchyard-route.retry.max_attempts"),
        "{status:?}"
    );
}

/// `provider.sort: "throughput"` ranks targets by the output tokens per
/// second the gateway observed. One target streams its answer with 100 ms
/// between chunks, the other with 5 ms (20x faster), both behind the same
/// double; the slow one is first in config order.
#[tokio::test]
async fn sort_throughput_prefers_the_target_that_generated_faster() {
    let double = Double::start().await.unwrap();
    let yaml = format!(
        r#"
server:
  http_addr: 127.0.0.1:0
  grpc_addr: 127.0.0.1:0
routing:
  # No random pick: the decision is the measurement's alone.
  exploration: 0
providers:
  - {{ name: sluggish, kind: openai, base_url: "{base}" }}
  - {{ name: swift, kind: openai, base_url: "{base}" }}
models:
  - name: gen
    routes:
      - {{ provider: sluggish, model: slow-100 }}
      - {{ provider: swift, model: slow-5 }}
"#,
        base = double.base_url()
    );
    let s = switchyard_e2e::process::serve(&yaml);
    let base = s.proc.http();
    // Nine output tokens (`echo: ` and eight words), one per chunk.
    let messages = json!([{"role": "user", "content": "one two three four five six seven eight"}]);
    // A whole streamed answer: its end is where its speed is recorded,
    // before the last bytes reach the client.
    let stream = |provider: Value| {
        let body = json!({"model": "gen", "stream": true, "provider": provider,
                          "messages": messages.clone()});
        let base = base.clone();
        async move {
            let res = switchyard_e2e::http_client()
                .post(format!("{base}/v1/chat/completions"))
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200);
            let served = res.headers()["x-switchyard-provider"]
                .to_str()
                .unwrap()
                .to_owned();
            let routing = res
                .headers()
                .get("x-switchyard-routing")
                .map(|v| v.to_str().unwrap().to_owned());
            let text = res.text().await.unwrap();
            assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
            (served, routing)
        }
    };

    // Nothing measured yet: config order, and the answer times `sluggish`.
    let (served, routing) = stream(json!({"sort": "throughput"})).await;
    assert_eq!(served, "sluggish");
    assert_eq!(routing.as_deref(), Some("sort=throughput"));
    // Warm the other one.
    let (served, _) = stream(json!({"only": ["swift"]})).await;
    assert_eq!(served, "swift");
    // Both streams were timed (the admin API shows the estimates).
    let admin: Value = switchyard_e2e::http_client()
        .get(format!("{base}/admin/v1/routes"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for provider in ["sluggish", "swift"] {
        let target = admin["targets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["provider"] == provider)
            .unwrap_or_else(|| panic!("{admin}"));
        assert!(
            target["ewma_output_tokens_per_second"].as_f64().is_some(),
            "{target}"
        );
    }

    // Measured: the faster generator goes first, plain and streamed.
    let a = chat(
        &base,
        json!({"model": "gen", "provider": {"sort": "throughput"}}),
        None,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.header("x-switchyard-provider"), "swift");
    assert_eq!(a.header("x-switchyard-attempted"), "swift/slow-5");
    assert_eq!(a.header("x-switchyard-routing"), "sort=throughput");
    let (served, _) = stream(json!({"sort": "throughput"})).await;
    assert_eq!(served, "swift");
    // Without the sort, config order still rules.
    let a = chat(&base, json!({"model": "gen"}), None).await;
    assert_eq!(a.header("x-switchyard-provider"), "sluggish");
}
