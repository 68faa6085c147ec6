//! Traces end to end: a router and two workers as separate processes over a
//! private nats-server, exporting OTLP/gRPC to a real receiver in the test.
//! One request is one trace: router request span (continuing the client's
//! `traceparent`) -> routing and attempt spans -> worker span (joined
//! across NATS through headers) -> upstream HTTP span, with the GenAI
//! attributes on them.

// Helpers of a test file fail the test by panicking, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value as Json, json};
use switchyard_e2e::double::Double;
use switchyard_e2e::nats::NatsServer;
use switchyard_e2e::otlp::{self, Receiver, Span, Value};
use switchyard_e2e::process::{Proc, nats_config, write_config};
use switchyard_proto::gateway::v1::gateway_service_client::GatewayServiceClient;
use switchyard_proto::gateway::v1::{
    ChatRequest, ChatSpec, ContentPart, Message, Role, content_part,
};

const WAIT: Duration = Duration::from_secs(30);

fn config(nats: &NatsServer, double: &Double) -> String {
    nats_config(
        &nats.url(),
        &double.base_url(),
        "",
        "  - name: chat\n    routes:\n      - { provider: up, model: gpt-test }\n  - name: fallback\n    routes:\n      - { provider: up, model: error-500 }\n      - { provider: up, model: good }\n",
    )
}

struct Cluster {
    _dir: tempfile::TempDir,
    router: Proc,
    _workers: Vec<Proc>,
}

/// Router and two workers, every one exporting to `endpoint` (quickly:
/// a 100 ms batch delay instead of 5 s).
fn cluster(nats: &NatsServer, double: &Double, endpoint: &str) -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &config(nats, double));
    let path = path.to_str().unwrap();
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    let workers = (0..2)
        .map(|_| {
            Proc::start_with_env(
                &["worker", "--config", path, "--provider", "up"],
                "worker serving",
                &env,
            )
        })
        .collect();
    let router = Proc::start_with_env(&["router", "--config", path], "router listening", &env);
    Cluster {
        _dir: dir,
        router,
        _workers: workers,
    }
}

const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_PARENT: &str = "00f067aa0ba902b7";

fn traceparent(trace: &str) -> String {
    format!("00-{trace}-{CLIENT_PARENT}-01")
}

fn in_trace<'a>(spans: &'a [Span], trace: &str) -> Vec<&'a Span> {
    spans.iter().filter(|s| s.trace_id == trace).collect()
}

fn one<'a>(spans: &[&'a Span], what: &str, pred: impl Fn(&Span) -> bool) -> &'a Span {
    let found: Vec<&Span> = spans.iter().copied().filter(|s| pred(s)).collect();
    assert_eq!(
        found.len(),
        1,
        "expected one {what}, found {}: {spans:#?}",
        found.len()
    );
    found[0]
}

fn children<'a>(spans: &[&'a Span], parent: &Span) -> Vec<&'a Span> {
    spans
        .iter()
        .copied()
        .filter(|s| s.parent_span_id == parent.span_id)
        .collect()
}

/// Whether the whole tree of one served attempt arrived: the request span
/// and at least `attempts` worker and upstream spans.
fn complete(spans: &[Span], trace: &str, request_span: &str, attempts: usize) -> bool {
    let t = in_trace(spans, trace);
    t.iter().any(|s| s.name == request_span)
        && t.iter().filter(|s| s.name == "worker up").count() >= attempts
        && t.iter().filter(|s| s.name.starts_with("chat ")).count() >= attempts
        && t.iter().filter(|s| s.name.starts_with("attempt ")).count() >= attempts
}

/// Waits (at most 20 s) for the router's access line of `request_id`.
fn access_line(router: &Proc, request_id: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    while std::time::Instant::now() < deadline {
        if let Ok(line) = router.lines.recv_timeout(Duration::from_millis(200)) {
            if line.contains("switchyard::access") && line.contains(request_id) {
                return line;
            }
            seen.push(line);
        }
    }
    panic!(
        "no access line for {request_id}; router logged:\n{}",
        seen.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_from_the_client_through_router_worker_and_upstream() {
    let nats = NatsServer::start().unwrap();
    let double = Double::start().await.unwrap();
    let receiver = Receiver::start().await.unwrap();
    let c = cluster(&nats, &double, &receiver.endpoint());
    let client = switchyard_e2e::http_client();

    // Unary, continuing the client's trace.
    let res = client
        .post(format!("{}/v1/chat/completions", c.router.http()))
        .header("traceparent", traceparent(CLIENT_TRACE))
        .header("x-request-id", "trace-req-1")
        .json(&json!({
            "model": "chat", "temperature": 0.5, "top_p": 0.9, "max_tokens": 50,
            "messages": [{"role": "user", "content": "hello tracing"}]
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Json = res.json().await.unwrap();
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "echo: hello tracing"
    );

    let spans = receiver
        .wait_for(WAIT, |s| {
            complete(s, CLIENT_TRACE, "POST /v1/chat/completions", 1)
        })
        .await;
    let t = in_trace(&spans, CLIENT_TRACE);

    // The router's server span continues the client's parent.
    let request = one(&t, "request span", |s| {
        s.name == "POST /v1/chat/completions"
    });
    assert_eq!(request.service, "switchyard-router");
    assert_eq!(request.parent_span_id, CLIENT_PARENT);
    assert_eq!(request.kind, otlp::KIND_SERVER);
    assert_eq!(request.str("switchyard.request_id"), Some("trace-req-1"));
    assert_eq!(request.str("gen_ai.operation.name"), Some("chat"));
    assert_eq!(request.str("gen_ai.request.model"), Some("chat"));
    assert_eq!(request.str("gen_ai.provider.name"), Some("up"));
    assert_eq!(request.str("gen_ai.response.model"), Some("gpt-test"));
    assert!(
        request
            .str("gen_ai.response.id")
            .is_some_and(|id| id.starts_with("chatcmpl-double")),
        "{request:#?}"
    );
    assert_eq!(
        request.attr("gen_ai.request.temperature"),
        Some(&Value::Double(0.5))
    );
    assert_eq!(
        request.attr("gen_ai.request.top_p"),
        Some(&Value::Double(0.9))
    );
    assert_eq!(request.int("gen_ai.request.max_tokens"), Some(50));
    assert_eq!(
        request.attr("gen_ai.response.finish_reasons"),
        Some(&Value::Array(vec![Value::Str("stop".into())]))
    );
    assert!(request.int("gen_ai.usage.input_tokens").unwrap() > 0);
    assert_eq!(request.int("gen_ai.usage.output_tokens"), Some(3));
    assert_eq!(request.int("http.response.status_code"), Some(200));
    assert_eq!(request.int("switchyard.attempts"), Some(1));

    // Routing and the attempt are its children.
    let routing = one(&t, "routing span", |s| s.name == "routing");
    assert_eq!(routing.parent_span_id, request.span_id);
    let attempt = one(&t, "attempt span", |s| s.name == "attempt up/gpt-test");
    assert_eq!(attempt.parent_span_id, request.span_id);
    assert_eq!(attempt.kind, otlp::KIND_CLIENT);
    assert_eq!(attempt.int("switchyard.attempt"), Some(1));
    assert_eq!(attempt.str("switchyard.attempt.outcome"), Some("ok"));

    // The worker (another process) continues the attempt, across NATS.
    let worker = one(&t, "worker span", |s| s.name == "worker up");
    assert_eq!(worker.service, "switchyard-worker");
    assert_eq!(worker.parent_span_id, attempt.span_id);
    assert_eq!(worker.kind, otlp::KIND_SERVER);
    assert_eq!(worker.str("switchyard.request_id"), Some("trace-req-1"));

    // And the upstream HTTP call is the worker's child.
    let upstream = one(&t, "upstream span", |s| s.name == "chat gpt-test");
    assert_eq!(upstream.service, "switchyard-worker");
    assert_eq!(upstream.parent_span_id, worker.span_id);
    assert_eq!(upstream.kind, otlp::KIND_CLIENT);
    assert_eq!(upstream.str("http.request.method"), Some("POST"));
    assert_eq!(upstream.int("http.response.status_code"), Some(200));
    assert_eq!(upstream.str("server.address"), Some("127.0.0.1"));
    assert_eq!(upstream.str("gen_ai.request.model"), Some("gpt-test"));
    // No transport-internal spans (h2, hyper, tonic, tower) made it out.
    assert_eq!(t.len(), 5, "{t:#?}");
    assert!(
        spans.iter().all(|s| !s.name.contains("h2")
            && !s.name.starts_with("hyper")
            && !s.name.starts_with("tonic")),
        "{spans:#?}"
    );

    // The access line names the request and its trace.
    let line = access_line(&c.router, "trace-req-1");
    for needle in [
        CLIENT_TRACE,
        "status=200",
        "model=\"chat\"",
        "provider=\"up\"",
        "upstream_model=\"gpt-test\"",
        "attempts=1",
        "output_tokens=3",
        "latency_ms=",
    ] {
        assert!(line.contains(needle), "{needle} missing: {line}");
    }
    assert!(!line.contains("sk-test-key"), "{line}");

    // Streamed, without a client traceparent: a new trace, the first-token
    // event on the request span, usage and finish reason at the end.
    let res = client
        .post(format!("{}/v1/chat/completions", c.router.http()))
        .header("x-request-id", "trace-req-2")
        .json(&json!({
            "model": "chat", "stream": true, "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": "stream me please"}]
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let mut body = res.bytes_stream();
    let mut text = String::new();
    while let Some(chunk) = body.next().await {
        text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
    }
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");

    let streamed = |s: &Span| {
        s.name == "POST /v1/chat/completions"
            && s.str("switchyard.request_id") == Some("trace-req-2")
    };
    let spans = receiver
        .wait_for(WAIT, |spans| {
            spans
                .iter()
                .find(|s| streamed(s))
                .is_some_and(|r| complete(spans, &r.trace_id, &r.name, 1))
        })
        .await;
    let request = spans.iter().find(|s| streamed(s)).unwrap();
    assert_ne!(request.trace_id, CLIENT_TRACE);
    assert!(request.parent_span_id.is_empty(), "{request:#?}");
    assert_eq!(request.attr("switchyard.stream"), Some(&Value::Bool(true)));
    let first = request
        .event("gen_ai.first_token")
        .unwrap_or_else(|| panic!("no first-token event: {request:#?}"));
    assert!(matches!(
        first.attributes.get("switchyard.time_to_first_token_ms"),
        Some(Value::Int(_))
    ));
    assert_eq!(request.int("gen_ai.usage.output_tokens"), Some(4));
    assert_eq!(
        request.attr("gen_ai.response.finish_reasons"),
        Some(&Value::Array(vec![Value::Str("stop".into())]))
    );
    let t = in_trace(&spans, &request.trace_id);
    let attempt = one(&t, "attempt span", |s| s.name.starts_with("attempt "));
    let worker = one(&t, "worker span", |s| s.name == "worker up");
    assert_eq!(worker.parent_span_id, attempt.span_id);
    let upstream = one(&t, "upstream span", |s| s.name == "chat gpt-test");
    assert_eq!(upstream.parent_span_id, worker.span_id);
    // No span per chunk anywhere in the trace.
    assert_eq!(t.len(), 5, "{t:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fallback_shows_two_attempts_under_one_request() {
    let nats = NatsServer::start().unwrap();
    let double = Double::start().await.unwrap();
    let receiver = Receiver::start().await.unwrap();
    let c = cluster(&nats, &double, &receiver.endpoint());
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let res = switchyard_e2e::http_client()
        .post(format!("{}/v1/chat/completions", c.router.http()))
        .header("traceparent", traceparent(trace))
        .json(&json!({"model": "fallback", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-switchyard-model"], "good");

    let spans = receiver
        .wait_for(WAIT, |s| complete(s, trace, "POST /v1/chat/completions", 2))
        .await;
    let t = in_trace(&spans, trace);
    let request = one(&t, "request span", |s| {
        s.name == "POST /v1/chat/completions"
    });
    assert_eq!(request.int("switchyard.attempts"), Some(2));
    assert_eq!(request.str("gen_ai.response.model"), Some("good"));
    let attempts: Vec<&Span> = children(&t, request)
        .into_iter()
        .filter(|s| s.name.starts_with("attempt "))
        .collect();
    assert_eq!(attempts.len(), 2, "{t:#?}");

    let failed = one(&attempts, "failed attempt", |s| {
        s.name == "attempt up/error-500"
    });
    assert_eq!(failed.int("switchyard.attempt"), Some(1));
    assert_eq!(failed.str("switchyard.attempt.kind"), Some("first"));
    assert_eq!(failed.status_code, otlp::STATUS_ERROR);
    assert!(
        failed.status_message.contains("upstream exploded"),
        "{failed:#?}"
    );
    assert!(failed.str("error.type").is_some(), "{failed:#?}");
    assert_ne!(failed.str("switchyard.attempt.outcome"), Some("ok"));

    let served = one(&attempts, "served attempt", |s| s.name == "attempt up/good");
    assert_eq!(served.int("switchyard.attempt"), Some(2));
    assert_eq!(served.str("switchyard.attempt.kind"), Some("fallback"));
    assert_eq!(served.str("switchyard.attempt.outcome"), Some("ok"));
    assert_ne!(served.status_code, otlp::STATUS_ERROR);

    // Each attempt has its own worker span, and that its upstream call.
    for attempt in [failed, served] {
        let workers = children(&t, attempt);
        assert_eq!(workers.len(), 1, "{t:#?}");
        assert_eq!(workers[0].name, "worker up");
        let upstream = children(&t, workers[0]);
        assert_eq!(upstream.len(), 1, "{t:#?}");
    }
    let failed_upstream = one(&t, "failed upstream span", |s| s.name == "chat error-500");
    assert_eq!(failed_upstream.int("http.response.status_code"), Some(500));
    assert_eq!(failed_upstream.status_code, otlp::STATUS_ERROR);

    // gRPC callers are traced alike: `traceparent` metadata is continued.
    let grpc_trace = "5b8efff798038103d269b633813fc60c";
    let endpoint = format!("http://{}", c.router.grpc_addr.unwrap());
    let mut client = GatewayServiceClient::connect(endpoint).await.unwrap();
    let mut request = tonic::Request::new(ChatRequest {
        spec: Some(ChatSpec {
            model: "fallback".into(),
            messages: vec![Message {
                role: Role::User as i32,
                content: vec![ContentPart {
                    part: Some(content_part::Part::Text("hi".into())),
                    extra: None,
                }],
                ..Default::default()
            }],
            ..Default::default()
        }),
    });
    request
        .metadata_mut()
        .insert("traceparent", traceparent(grpc_trace).parse().unwrap());
    let answer = client.chat(request).await.unwrap().into_inner();
    assert_eq!(answer.upstream_model, "good");
    let name = "switchyard.gateway.v1.GatewayService/Chat";
    let spans = receiver
        .wait_for(WAIT, |s| complete(s, grpc_trace, name, 2))
        .await;
    let t = in_trace(&spans, grpc_trace);
    let request = one(&t, "gRPC request span", |s| s.name == name);
    assert_eq!(request.parent_span_id, CLIENT_PARENT);
    assert_eq!(request.kind, otlp::KIND_SERVER);
    assert_eq!(request.int("rpc.grpc.status_code"), Some(0));
    assert_eq!(request.str("gen_ai.response.model"), Some("good"));
    let attempts = children(&t, request)
        .into_iter()
        .filter(|s| s.name.starts_with("attempt "))
        .count();
    assert_eq!(attempts, 2, "{t:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_collector_does_not_block_requests() {
    let nats = NatsServer::start().unwrap();
    let double = Double::start().await.unwrap();
    // A port nobody listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let c = cluster(&nats, &double, &format!("http://{closed}"));
    let client = switchyard_e2e::http_client();
    for i in 0..20 {
        let res = client
            .post(format!("{}/v1/chat/completions", c.router.http()))
            .header("x-request-id", format!("dead-{i}"))
            .json(&json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
    // The exporter was on and found the collector gone; requests went on.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    loop {
        match c.router.lines.recv_timeout(Duration::from_millis(200)) {
            Ok(line) if line.contains("cannot export spans") => break,
            Ok(line) => seen.push(line),
            Err(_) if std::time::Instant::now() > deadline => {
                panic!("no export warning; router logged:\n{}", seen.join("\n"))
            }
            Err(_) => {}
        }
    }
}
