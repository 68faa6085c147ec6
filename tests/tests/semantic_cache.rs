//! The semantic cache through `switchyard serve`: prompts are embedded by
//! the gateway's own embeddings route, here served by the upstream
//! double's `words` model (a deterministic bag-of-words vector, so the
//! similarity of two prompts is known in advance), and a near-duplicate
//! prompt of the same tenant with the same parameters is answered with
//! the earlier prompt's answer.

// Helpers of a test file fail the test by panicking, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use switchyard_e2e::Reply;
use switchyard_e2e::double::{Double, cosine, word_embedding};
use switchyard_e2e::process::Serve;

/// Semantic cache on, threshold 0.9, prompts embedded by `emb` (the
/// double's bag-of-words model); `broken-emb` fails every embedding.
fn serve(double: &Double, embedding_model: &str) -> Serve {
    let yaml = format!(
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
  - name: emb
    routes:
      - {{ provider: up, model: words }}
  - name: broken-emb
    routes:
      - {{ provider: up, model: error-500 }}
cache:
  enabled: true
  ttl: 10m
  semantic:
    enabled: true
    embedding_model: {embedding_model}
    threshold: 0.9
"#,
        base = double.base_url()
    );
    switchyard_e2e::process::serve(&yaml)
}

async fn post(base: &str, body: &Value, headers: &[(&str, &str)]) -> Reply {
    switchyard_e2e::post_chat(base, body, headers).await
}

fn ask(text: &str) -> Value {
    json!({"model": "chat", "temperature": 0, "messages": [{"role": "user", "content": text}]})
}

/// The similarity the gateway computes for two prompts: the cosine of the
/// double's vectors for the text the gateway embeds (`user: <text>`).
fn similarity(a: &str, b: &str) -> f32 {
    cosine(
        &word_embedding(&format!("user: {a}"), 256),
        &word_embedding(&format!("user: {b}"), 256),
    )
}

const FIRST: &str = "What is the capital of France?";
const NEAR: &str = "what is the capital city of France";
const OTHER: &str = "How do I bake sourdough bread at home?";

async fn metrics(base: &str) -> String {
    switchyard_e2e::http_client()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_near_duplicate_prompt_is_answered_from_the_semantic_cache() {
    let expected = similarity(FIRST, NEAR);
    assert!((0.9..0.99).contains(&expected), "{expected}");
    let double = Double::start().await.unwrap();
    let s = serve(&double, "emb");
    let base = s.proc.http();

    let fresh = post(&base, &ask(FIRST), &[]).await;
    assert_eq!(
        (fresh.status, fresh.cache(), fresh.similarity()),
        (200, "miss", ""),
        "{}",
        fresh.text
    );
    // The prompt went through the gateway's embeddings route to the double.
    assert_eq!(double.requests_for("words"), 1);

    let hit = post(&base, &ask(NEAR), &[]).await;
    assert_eq!((hit.status, hit.cache()), (200, "hit"), "{}", hit.text);
    assert_eq!(hit.similarity(), format!("{expected:.4}"));
    // The earlier prompt's answer (the double echoes the question).
    assert_eq!(hit.content(), fresh.content());
    assert_eq!(hit.content(), format!("echo: {FIRST}"));
    assert_eq!(double.requests_for("gpt-test"), 1);
    assert_eq!(double.requests_for("words"), 2);

    // Streamed, the near duplicate is replayed as SSE.
    let mut stream = ask(NEAR);
    stream["stream"] = json!(true);
    let replay = post(&base, &stream, &[]).await;
    assert_eq!(replay.cache(), "hit");
    assert_eq!(replay.similarity(), format!("{expected:.4}"));
    assert!(replay.text.ends_with("data: [DONE]\n\n"), "{}", replay.text);
    assert!(replay.text.contains("France"), "{}", replay.text);
    assert_eq!(double.requests_for("gpt-test"), 1);
    // The same prompt again: its embedding came from the embeddings cache.
    assert_eq!(double.requests_for("words"), 2);

    // The chat requests (one miss, two semantic hits) and the embeddings
    // calls the gateway made for them (two misses, one hit).
    let m = metrics(&base).await;
    for (result, n) in [("semantic_hit", 2), ("miss", 3), ("hit", 1)] {
        assert!(
            m.contains(&format!(
                r#"switchyard_cache_requests_total{{result="{result}"}} {n}"#
            )),
            "{result} {n}: {m}"
        );
    }
    assert!(
        m.contains(r#"operation="semantic_cache""#),
        "the embeddings calls are in the request metrics: {m}"
    );
}

#[tokio::test]
async fn a_prompt_below_the_threshold_is_a_miss() {
    assert!(similarity(FIRST, OTHER) < 0.9);
    let double = Double::start().await.unwrap();
    let s = serve(&double, "emb");
    let base = s.proc.http();
    assert_eq!(post(&base, &ask(FIRST), &[]).await.cache(), "miss");
    let other = post(&base, &ask(OTHER), &[]).await;
    assert_eq!((other.status, other.cache()), (200, "miss"));
    assert_eq!(other.similarity(), "");
    assert_eq!(other.content(), format!("echo: {OTHER}"));
    assert_eq!(double.requests_for("gpt-test"), 2);
}

#[tokio::test]
async fn semantic_matches_stay_within_a_tenant() {
    let double = Double::start().await.unwrap();
    let s = serve(&double, "emb");
    let base = s.proc.http();
    let a = [("authorization", "Bearer sk-tenant-a")];
    let b = [("authorization", "Bearer sk-tenant-b")];
    assert_eq!(post(&base, &ask(FIRST), &a).await.cache(), "miss");
    let other_tenant = post(&base, &ask(NEAR), &b).await;
    assert_eq!(other_tenant.cache(), "miss");
    assert_eq!(other_tenant.content(), format!("echo: {NEAR}"));
    assert_eq!(post(&base, &ask(NEAR), &a).await.cache(), "hit");
    assert_eq!(double.requests_for("gpt-test"), 2);
}

#[tokio::test]
async fn different_parameters_never_match_semantically() {
    let double = Double::start().await.unwrap();
    let s = serve(&double, "emb");
    let base = s.proc.http();
    assert_eq!(post(&base, &ask(FIRST), &[]).await.cache(), "miss");
    let mut capped = ask(NEAR);
    capped["max_tokens"] = json!(50);
    assert_eq!(post(&base, &capped, &[]).await.cache(), "miss");
    let mut system = ask(NEAR);
    system["seed"] = json!(7);
    assert_eq!(post(&base, &system, &[]).await.cache(), "miss");
    assert_eq!(double.requests_for("gpt-test"), 3);
    // The parameters of the first request: a hit.
    let hit = post(&base, &ask(NEAR), &[]).await;
    assert_eq!(hit.cache(), "hit");
    assert_eq!(hit.content(), format!("echo: {FIRST}"));
    // And the capped one now has its own answer to match.
    let mut capped_near = ask("What is the capital city of France?");
    capped_near["max_tokens"] = json!(50);
    let hit = post(&base, &capped_near, &[]).await;
    assert_eq!(hit.cache(), "hit");
    assert_eq!(hit.content(), format!("echo: {NEAR}"));
    assert_eq!(double.requests_for("gpt-test"), 3);
}

#[tokio::test]
async fn client_directives_apply_to_the_semantic_cache() {
    let double = Double::start().await.unwrap();
    let s = serve(&double, "emb");
    let base = s.proc.http();
    // no-store: neither read nor stored, and nothing embedded.
    let skipped = post(&base, &ask(FIRST), &[("cache-control", "no-store")]).await;
    assert_eq!(skipped.cache(), "skip");
    assert_eq!(double.requests_for("words"), 0);
    assert_eq!(post(&base, &ask(NEAR), &[]).await.cache(), "miss");
    // no-cache: not read, but the fresh answer is stored.
    let refreshed = post(&base, &ask(FIRST), &[("cache-control", "no-cache")]).await;
    assert_eq!(refreshed.cache(), "skip");
    assert_eq!(double.requests_for("gpt-test"), 3);
    // Sampled requests are not cached (nor embedded) by default.
    let mut sampled = ask(NEAR);
    sampled["temperature"] = json!(0.7);
    assert_eq!(post(&base, &sampled, &[]).await.cache(), "skip");
    assert_eq!(double.requests_for("gpt-test"), 4);
    assert_eq!(double.requests_for("words"), 2);
}

#[tokio::test]
async fn a_failing_embedding_model_degrades_to_misses() {
    let double = Double::start().await.unwrap();
    let s = serve(&double, "broken-emb");
    let base = s.proc.http();
    for text in [FIRST, NEAR] {
        let a = post(&base, &ask(text), &[]).await;
        assert_eq!((a.status, a.cache()), (200, "miss"), "{}", a.text);
        assert_eq!(a.content(), format!("echo: {text}"));
    }
    // The exact cache still works.
    assert_eq!(post(&base, &ask(FIRST), &[]).await.cache(), "hit");
    assert_eq!(double.requests_for("gpt-test"), 2);
    let m = metrics(&base).await;
    assert!(
        m.contains(r#"switchyard_cache_requests_total{result="error"} 2"#),
        "{m}"
    );
}

#[tokio::test]
async fn grpc_reports_the_similarity_in_metadata() {
    use switchyard_proto::gateway::v1::gateway_service_client::GatewayServiceClient;
    use switchyard_proto::gateway::v1::{
        ChatRequest, ChatSpec, ContentPart, Message, Role, content_part,
    };

    let double = Double::start().await.unwrap();
    let s = serve(&double, "emb");
    let endpoint = format!("http://{}", s.proc.grpc_addr.unwrap());
    let mut client = GatewayServiceClient::connect(endpoint).await.unwrap();
    let spec = |text: &str| ChatSpec {
        model: "chat".into(),
        temperature: Some(0.0),
        messages: vec![Message {
            role: Role::User as i32,
            content: vec![ContentPart {
                part: Some(content_part::Part::Text(text.into())),
                extra: None,
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let mut seen = Vec::new();
    for text in [FIRST, NEAR] {
        let res = client
            .chat(ChatRequest {
                spec: Some(spec(text)),
            })
            .await
            .unwrap();
        let meta = |k: &str| {
            res.metadata()
                .get(k)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        seen.push((
            meta("x-switchyard-cache"),
            meta("x-switchyard-cache-similarity"),
        ));
    }
    let expected = format!("{:.4}", similarity(FIRST, NEAR));
    assert_eq!(
        seen,
        [
            (Some("miss".to_owned()), None),
            (Some("hit".to_owned()), Some(expected))
        ]
    );
    assert_eq!(double.requests_for("gpt-test"), 1);
}
