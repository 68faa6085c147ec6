//! `switchyard serve` (in-process bus) as a real process: HTTP error shapes,
//! client disconnects, and the gRPC API with health and reflection.

// Helpers of a test file fail the test by panicking, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::{Value, json};
use switchyard_e2e::double::Double;
use switchyard_e2e::process::{Proc, write_config};
use switchyard_proto::gateway::v1::gateway_service_client::GatewayServiceClient;
use switchyard_proto::gateway::v1::{
    ChatRequest, ChatSpec, ChatStreamRequest, ContentPart, ListModelsRequest, Message, Role,
    content_part,
};

struct Serve {
    _dir: tempfile::TempDir,
    proc: Proc,
}

fn serve(double: &Double) -> Serve {
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        r#"
server:
  http_addr: 127.0.0.1:0
  grpc_addr: 127.0.0.1:0
  max_body_bytes: 65536
providers:
  - name: demo
    kind: demo
    models: [echo]
  - name: up
    kind: openai
    base_url: {base}
    timeout: 1s
models:
  - name: chat
    routes:
      - {{ provider: up, model: gpt-test }}
  - name: failover
    routes:
      - {{ provider: up, model: error-429 }}
      - {{ provider: up, model: error-500 }}
      - {{ provider: demo, model: echo }}
"#,
        base = double.base_url()
    );
    let path = write_config(dir.path(), &yaml);
    let proc = Proc::start(
        &["serve", "--config", path.to_str().unwrap()],
        "router listening",
    );
    Serve { _dir: dir, proc }
}

async fn post(
    base: &str,
    body: impl Into<reqwest::Body>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let res = switchyard_e2e::http_client()
        .post(format!("{base}/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(body)
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

fn assert_openai_error(body: &Value) {
    let e = &body["error"];
    assert!(e["message"].is_string(), "{body}");
    assert!(e["type"].is_string(), "{body}");
    assert!(
        e.get("param").is_some() && e.get("code").is_some(),
        "{body}"
    );
}

#[tokio::test]
async fn http_errors_have_openai_shape_and_status() {
    let double = Double::start().await.unwrap();
    let s = serve(&double);
    let base = s.proc.http();
    let msg = |model: &str| {
        json!({"model": model, "messages": [{"role": "user", "content": "x"}]}).to_string()
    };

    let (status, headers, body) = post(&base, "{not json").await;
    assert_eq!(status, 400);
    assert_openai_error(&body);
    assert_eq!(body["error"]["code"], "invalid_json");
    assert!(headers.contains_key("x-request-id"));

    let (status, _, body) = post(
        &base,
        json!({"messages": [{"role": "user", "content": "x"}]}).to_string(),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["param"], "model");

    let (status, _, body) = post(
        &base,
        json!({"model": "chat", "messages": [{"role": "wizard", "content": "x"}]}).to_string(),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["param"]
            .as_str()
            .unwrap()
            .contains("messages"),
        "{body}"
    );

    let (status, _, body) = post(&base, json!({"model": "chat", "messages": []}).to_string()).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["param"], "messages");

    let (status, _, body) = post(&base, msg("no-such-model")).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "model_not_found");

    let big =
        json!({"model": "chat", "messages": [{"role": "user", "content": "x".repeat(100_000)}]})
            .to_string();
    let (status, _, body) = post(&base, big).await;
    assert_eq!(status, 413, "{body}");
    assert_openai_error(&body);

    let (status, _, body) = post(&base, msg("up/error-500")).await;
    assert_eq!(status, 502);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("upstream exploded"),
        "{body}"
    );

    let (status, _, body) = post(&base, msg("up/error-400")).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["param"], "temperature");

    let (status, _, body) = post(&base, msg("up/error-429")).await;
    assert_eq!(status, 429, "{body}");

    let (status, _, body) = post(&base, msg("up/hang")).await;
    assert_eq!(status, 504, "{body}");

    let res = switchyard_e2e::http_client()
        .get(format!("{base}/v1/nothing-here"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    assert_openai_error(&res.json().await.unwrap());

    let res = switchyard_e2e::http_client()
        .get(format!("{base}/v1/chat/completions"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 405);
    assert_openai_error(&res.json().await.unwrap());
}

#[tokio::test]
async fn fallback_moves_past_429_and_500_to_the_next_route() {
    let double = Double::start().await.unwrap();
    let s = serve(&double);
    let (status, headers, body) = post(
        &s.proc.http(),
        json!({"model": "failover", "messages": [{"role": "user", "content": "hello"}]})
            .to_string(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["x-switchyard-provider"], "demo");
    assert_eq!(double.requests(), 2);
}

#[tokio::test]
async fn client_disconnect_mid_stream_cancels_upstream_in_process() {
    let double = Double::start().await.unwrap();
    let s = serve(&double);
    switchyard_e2e::assert_disconnect_cancels_upstream(&s.proc.http(), &double).await;
}

#[tokio::test]
async fn client_gone_before_a_unary_answer_cancels_upstream() {
    let double = Double::start().await.unwrap();
    let s = serve(&double);
    let received = double.stats.received.notified();
    let disconnected = double.stats.disconnected.notified();
    tokio::pin!(received, disconnected);
    received.as_mut().enable();
    disconnected.as_mut().enable();
    let base = s.proc.http();
    let request = tokio::spawn(async move {
        let _ = switchyard_e2e::http_client()
            .post(format!("{base}/v1/chat/completions"))
            .json(&json!({"model": "up/hang", "messages": [{"role": "user", "content": "x"}]}))
            .send()
            .await;
    });
    tokio::time::timeout(Duration::from_secs(10), received)
        .await
        .expect("request never reached upstream");
    request.abort();
    tokio::time::timeout(Duration::from_secs(10), disconnected)
        .await
        .expect("the upstream double never saw its connection closed");
}

#[tokio::test]
async fn grpc_cancel_mid_stream_cancels_upstream() {
    let double = Double::start().await.unwrap();
    let s = serve(&double);
    let disconnected = double.stats.disconnected.notified();
    tokio::pin!(disconnected);
    disconnected.as_mut().enable();
    let endpoint = format!("http://{}", s.proc.grpc_addr.unwrap());
    let mut client = GatewayServiceClient::connect(endpoint).await.unwrap();
    let mut stream = client
        .chat_stream(ChatStreamRequest {
            spec: Some(spec("up/hang", "never ends")),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(stream.message().await.unwrap().is_some());
    drop(stream);
    drop(client);
    tokio::time::timeout(Duration::from_secs(10), disconnected)
        .await
        .expect("the upstream double never saw its connection closed");
}

fn spec(model: &str, text: &str) -> ChatSpec {
    ChatSpec {
        model: model.into(),
        messages: vec![Message {
            role: Role::User as i32,
            content: vec![ContentPart {
                part: Some(content_part::Part::Text(text.into())),
                extra: None,
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[tokio::test]
async fn grpc_chat_stream_models_health_and_reflection() {
    let double = Double::start().await.unwrap();
    let s = serve(&double);
    let endpoint = format!("http://{}", s.proc.grpc_addr.unwrap());
    let channel = tonic::transport::Endpoint::from_shared(endpoint)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = GatewayServiceClient::new(channel.clone());

    let res = client
        .chat(ChatRequest {
            spec: Some(spec("chat", "hello grpc")),
        })
        .await
        .unwrap();
    assert_eq!(res.metadata().get("x-switchyard-provider").unwrap(), "up");
    assert!(res.metadata().get("x-request-id").is_some());
    let res = res.into_inner();
    assert_eq!(res.provider, "up");
    let result = res.result.unwrap();
    let text = match &result.choices[0].message.as_ref().unwrap().content[0].part {
        Some(content_part::Part::Text(t)) => t.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(text, "echo: hello grpc");
    assert!(result.usage.unwrap().total_tokens > 0);

    let mut stream = client
        .chat_stream(ChatStreamRequest {
            spec: Some(spec("chat", "one two three")),
        })
        .await
        .unwrap()
        .into_inner();
    let mut content = String::new();
    let mut usage = None;
    while let Some(msg) = stream.message().await.unwrap() {
        let chunk = msg.chunk.unwrap();
        for c in &chunk.choices {
            content.push_str(c.content.as_deref().unwrap_or(""));
        }
        if chunk.usage.is_some() {
            usage = chunk.usage;
        }
    }
    assert_eq!(content, "echo: one two three");
    assert!(usage.unwrap().completion_tokens > 0);

    let err = client
        .chat(ChatRequest {
            spec: Some(spec("missing", "x")),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    let err = client.chat(ChatRequest { spec: None }).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);

    let models = client
        .list_models(ListModelsRequest {})
        .await
        .unwrap()
        .into_inner()
        .models;
    let ids: Vec<_> = models.iter().map(|m| m.id.as_str()).collect();
    assert!(
        ids.contains(&"chat") && ids.contains(&"demo/echo"),
        "{ids:?}"
    );

    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "switchyard.gateway.v1.GatewayService".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(
        status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut reflection = ServerReflectionClient::new(channel);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::once(req))
        .await
        .unwrap()
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) =
        responses.message().await.unwrap().unwrap().message_response
    else {
        panic!("no list_services answer")
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(
        names.contains(&"switchyard.gateway.v1.GatewayService"),
        "{names:?}"
    );
    assert!(names.contains(&"grpc.health.v1.Health"), "{names:?}");
}

#[tokio::test]
async fn check_reports_every_problem_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        "providers:\n  - name: a\n    kind: openai\n    base_url: not a url\nmodels:\n  - name: m\n    routes:\n      - { provider: nope, model: x }\n",
    );
    let out = std::process::Command::new(switchyard_e2e::process::switchyard_bin())
        .args(["check", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("providers[0].base_url"), "{text}");
    assert!(text.contains("models[0].routes[0].provider"), "{text}");
    assert!(text.contains("switchyard.yaml"), "{text}");

    let path = write_config(dir.path(), "server:\n  htp_addr: 1\n");
    let out = std::process::Command::new(switchyard_e2e::process::switchyard_bin())
        .args(["check", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("htp_addr"), "{text}");
}
