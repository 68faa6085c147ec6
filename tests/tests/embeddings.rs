//! `POST /v1/embeddings` and `POST /v1/images/generations` end to end:
//! through `switchyard serve` (in-process bus) and through a router and
//! workers over a real nats-server, against the OpenAI upstream double on
//! a real socket. Also the gRPC `Embed` / `GenerateImages` RPCs.

// Helpers of a test file fail the test by panicking, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use switchyard_e2e::double::{Double, embedding_for};
use switchyard_e2e::nats::NatsServer;
use switchyard_e2e::process::{Proc, nats_config, write_config};
use switchyard_proto::gateway::v1::gateway_service_client::GatewayServiceClient;
use switchyard_proto::gateway::v1::{EmbedRequest, EmbedSpec, GenerateImagesRequest, ImageSpec};

/// Providers besides `up` (the double): `backup` (the double again, under
/// another name), `claude` (Anthropic wire format: chat only; nothing
/// listens at its URL, and nothing should call it) and the offline `demo`.
fn more_providers(double: &Double) -> String {
    format!(
        r#"  - name: backup
    kind: openai
    base_url: {base}
    api_key: sk-test-backup
  - name: claude
    kind: anthropic
    base_url: http://127.0.0.1:9
    api_key: sk-ant-test
  - name: demo
    kind: demo
    models: [echo]
"#,
        base = double.base_url()
    )
}

const MODELS: &str = r#"  - name: embed
    routes:
      - { provider: up, model: text-embedding-3-small }
  - name: embed-failover
    routes:
      - { provider: up, model: error-429 }
      - { provider: backup, model: text-embedding-3-large }
  - name: embed-claude
    routes:
      - { provider: claude, model: claude-sonnet-4-5 }
  - name: embed-demo
    routes:
      - { provider: demo, model: echo }
  - name: img
    routes:
      - { provider: up, model: dall-e-3 }
  - name: img-gpt
    routes:
      - { provider: up, model: gpt-image-1 }
"#;

fn serve_config(double: &Double) -> String {
    format!(
        r#"
server:
  http_addr: 127.0.0.1:0
  grpc_addr: 127.0.0.1:0
  max_body_bytes: 65536
providers:
  - name: up
    kind: openai
    base_url: {base}
    api_key: sk-test-key
    timeout: 5s
{more}
models:
{MODELS}
"#,
        base = double.base_url(),
        more = more_providers(double),
    )
}

struct Running {
    _dir: tempfile::TempDir,
    /// The process serving HTTP and gRPC (serve, or the router).
    front: Proc,
    _workers: Vec<Proc>,
}

fn serve(double: &Double) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &serve_config(double));
    let front = Proc::start(
        &["serve", "--config", path.to_str().unwrap()],
        "router listening",
    );
    Running {
        _dir: dir,
        front,
        _workers: Vec::new(),
    }
}

fn scaled_out(nats: &NatsServer, double: &Double) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let yaml = nats_config(
        &nats.url(),
        &double.base_url(),
        &more_providers(double),
        MODELS,
    );
    let path = write_config(dir.path(), &yaml);
    let path = path.to_str().unwrap();
    let workers = ["up", "backup", "claude", "demo"]
        .iter()
        .map(|p| {
            Proc::start(
                &["worker", "--config", path, "--provider", p],
                "worker serving",
            )
        })
        .collect();
    let front = Proc::start(&["router", "--config", path], "router listening");
    Running {
        _dir: dir,
        front,
        _workers: workers,
    }
}

async fn post(base: &str, path: &str, body: Value) -> (u16, reqwest::header::HeaderMap, Value) {
    let res = switchyard_e2e::http_client()
        .post(format!("{base}{path}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let text = res.text().await.unwrap();
    (
        status,
        headers,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn header<'a>(h: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

/// The inverse of OpenAI's `encoding_format: base64` (little-endian f32s),
/// written out here so the test does not trust the gateway's encoder.
fn decode_base64_f32(s: &str) -> Vec<f32> {
    const ALPHABET: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bytes = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.trim_end_matches('=').chars() {
        acc = ((acc << 6) | ALPHABET.find(c).unwrap() as u32) & 0xff_ffff;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            bytes.push((acc >> bits) as u8);
        }
    }
    assert_eq!(bytes.len() % 4, 0, "{s}");
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Everything one front end should do, whichever bus is behind it.
async fn embeddings_and_images(base: &str, double: &Double) {
    // A batch: one vector per input, in input order.
    let inputs = ["alpha", "be", "gamma ray", "d"];
    let (status, h, body) = post(
        base,
        "/v1/embeddings",
        json!({"model": "embed", "input": inputs}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(header(&h, "x-switchyard-provider"), "up");
    assert_eq!(header(&h, "x-switchyard-model"), "text-embedding-3-small");
    assert!(!header(&h, "x-request-id").is_empty());
    assert_eq!(body["object"], "list");
    assert_eq!(body["model"], "text-embedding-3-small");
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), inputs.len());
    for (i, (d, text)) in data.iter().zip(inputs).enumerate() {
        assert_eq!(d["object"], "embedding");
        assert_eq!(d["index"], i);
        assert_eq!(floats(&d["embedding"]), embedding_for(text, i, 3), "{d}");
    }
    assert_eq!(body["usage"]["prompt_tokens"], 5);
    assert_eq!(body["usage"]["total_tokens"], 5);

    // base64 (the OpenAI SDKs' default): the upstream is asked for floats,
    // the gateway encodes them.
    let (status, _, body) = post(
        base,
        "/v1/embeddings",
        json!({"model": "embed", "input": "hello there", "encoding_format": "base64", "dimensions": 5}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let b64 = body["data"][0]["embedding"].as_str().unwrap();
    assert_eq!(decode_base64_f32(b64), embedding_for("hello there", 0, 5));
    let sent = double.stats.last_body.lock().unwrap().clone();
    assert_eq!(
        sent,
        json!({"model": "text-embedding-3-small", "input": ["hello there"], "encoding_format": "float", "dimensions": 5})
    );

    // 429 from the first route: served by the second.
    let (status, h, body) = post(
        base,
        "/v1/embeddings",
        json!({"model": "embed-failover", "input": ["x"]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(header(&h, "x-switchyard-provider"), "backup");
    assert_eq!(header(&h, "x-switchyard-attempts"), "2");
    assert_eq!(body["model"], "text-embedding-3-large");

    // A chat-only wire format: a clear 400 naming the provider kind.
    let (status, _, body) = post(
        base,
        "/v1/embeddings",
        json!({"model": "embed-claude", "input": "x"}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("anthropic") && message.contains("embeddings"),
        "{body}"
    );
    assert_eq!(body["error"]["type"], "invalid_request_error");

    // The offline demo provider embeds too.
    let (status, _, body) = post(
        base,
        "/v1/embeddings",
        json!({"model": "embed-demo", "input": ["the cat", "The Cat"]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"][0]["embedding"].as_array().unwrap().len(), 8);
    assert_eq!(body["data"][0]["embedding"], body["data"][1]["embedding"]);

    // Images, as URLs and as base64.
    let (status, h, body) = post(
        base,
        "/v1/images/generations",
        json!({"model": "img", "prompt": "a lighthouse at dusk", "n": 2, "size": "1024x1024", "style": "vivid"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(header(&h, "x-switchyard-model"), "dall-e-3");
    assert_eq!(body["data"].as_array().unwrap().len(), 2);
    assert_eq!(body["data"][1]["url"], "https://images.example/1.png");
    assert_eq!(body["data"][0]["revised_prompt"], "a lighthouse at dusk");
    assert!(body.get("usage").is_none(), "{body}");
    let sent = double.stats.last_body.lock().unwrap().clone();
    assert_eq!(
        sent,
        json!({"model": "dall-e-3", "prompt": "a lighthouse at dusk", "n": 2, "size": "1024x1024", "style": "vivid"})
    );

    let (status, _, body) = post(
        base,
        "/v1/images/generations",
        json!({"model": "img", "prompt": "a lighthouse", "response_format": "b64_json"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"][0]["b64_json"], "ZG91YmxlLWltYWdl");
    assert!(body["data"][0].get("url").is_none(), "{body}");

    let (status, _, body) = post(
        base,
        "/v1/images/generations",
        json!({"model": "img-gpt", "prompt": "a lighthouse"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["usage"]["input_tokens"], 50);
    assert_eq!(body["usage"]["output_tokens"], 4160);
}

#[tokio::test]
async fn through_serve() {
    let double = Double::start().await.unwrap();
    let s = serve(&double);
    embeddings_and_images(&s.front.http(), &double).await;
}

#[tokio::test]
async fn through_router_and_workers_over_nats() {
    let nats = NatsServer::start().unwrap();
    let double = Double::start().await.unwrap();
    let s = scaled_out(&nats, &double);
    embeddings_and_images(&s.front.http(), &double).await;
}

#[tokio::test]
async fn bad_requests_get_openai_errors_before_any_upstream_call() {
    let double = Double::start().await.unwrap();
    let s = serve(&double);
    let base = s.front.http();
    let cases = [
        ("/v1/embeddings", json!({"input": "x"}), "model"),
        ("/v1/embeddings", json!({"model": "embed"}), "input"),
        (
            "/v1/embeddings",
            json!({"model": "embed", "input": []}),
            "input",
        ),
        (
            "/v1/embeddings",
            json!({"model": "embed", "input": ["a", 3]}),
            "input",
        ),
        (
            "/v1/embeddings",
            json!({"model": "embed", "input": "a", "encoding_format": "int8"}),
            "encoding_format",
        ),
        (
            "/v1/embeddings",
            json!({"model": "embed", "input": "a", "dimensions": "many"}),
            "dimensions",
        ),
        ("/v1/images/generations", json!({"model": "img"}), "prompt"),
        (
            "/v1/images/generations",
            json!({"model": "img", "prompt": "p", "n": 11}),
            "n",
        ),
        (
            "/v1/images/generations",
            json!({"model": "img", "prompt": "p", "response_format": "png"}),
            "response_format",
        ),
    ];
    for (path, body, param) in cases {
        let (status, h, answer) = post(&base, path, body.clone()).await;
        assert_eq!(status, 400, "{body} -> {answer}");
        assert_eq!(answer["error"]["param"], param, "{body} -> {answer}");
        assert_eq!(answer["error"]["type"], "invalid_request_error");
        assert!(!header(&h, "x-request-id").is_empty());
    }

    let (status, _, answer) = post(
        &base,
        "/v1/embeddings",
        json!({"model": "nope", "input": "x"}),
    )
    .await;
    assert_eq!(status, 404, "{answer}");
    assert_eq!(answer["error"]["code"], "model_not_found");

    let res = switchyard_e2e::http_client()
        .post(format!("{base}/v1/embeddings"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let answer: Value = res.json().await.unwrap();
    assert_eq!(answer["error"]["code"], "invalid_json");

    let big = "word ".repeat(20_000);
    let (status, _, answer) = post(
        &base,
        "/v1/embeddings",
        json!({"model": "embed", "input": big}),
    )
    .await;
    assert_eq!(status, 413, "{answer}");

    assert_eq!(double.requests(), 0, "no bad request reached the upstream");
}

#[tokio::test]
async fn grpc_embed_and_generate_images() {
    let double = Double::start().await.unwrap();
    let s = serve(&double);
    let grpc = format!("http://{}", s.front.grpc_addr.unwrap());
    let mut client = GatewayServiceClient::connect(grpc).await.unwrap();

    let res = client
        .embed(EmbedRequest {
            spec: Some(EmbedSpec {
                model: "embed".into(),
                inputs: vec!["one".into(), "three".into()],
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    assert_eq!(
        res.metadata()
            .get("x-switchyard-provider")
            .unwrap()
            .to_str()
            .unwrap(),
        "up"
    );
    let r = res.into_inner();
    assert_eq!(r.provider, "up");
    assert_eq!(r.upstream_model, "text-embedding-3-small");
    let result = r.result.unwrap();
    assert_eq!(result.data.len(), 2);
    assert_eq!(result.data[1].index, 1);
    assert_eq!(result.data[1].vector, embedding_for("three", 1, 3));
    assert_eq!(result.usage.unwrap().prompt_tokens, 2);

    let status = client
        .embed(EmbedRequest {
            spec: Some(EmbedSpec {
                model: "embed".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");

    let status = client
        .embed(EmbedRequest {
            spec: Some(EmbedSpec {
                model: "embed-claude".into(),
                inputs: vec!["x".into()],
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");

    let r = client
        .generate_images(GenerateImagesRequest {
            spec: Some(ImageSpec {
                model: "img".into(),
                prompt: "a lighthouse".into(),
                n: 3,
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.provider, "up");
    assert_eq!(r.result.unwrap().data.len(), 3);

    let status = client
        .generate_images(GenerateImagesRequest { spec: None })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
}
