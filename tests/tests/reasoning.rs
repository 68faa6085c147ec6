//! Reasoning controls across wire formats, end to end through `switchyard
//! serve` to the OpenAI-format upstream double: Claude Code's
//! `thinking: {"type": "enabled", "budget_tokens": 31999}` on
//! `/v1/messages` reaches a reasoning model as `reasoning_effort: "high"`,
//! is dropped (with an `x-switchyard-warnings` header, even under
//! `unsupported_params: reject`) for a model without reasoning, and the
//! config's `reasoning: on | off` overrides the model-family rules. An
//! OpenAI client's own `reasoning_effort` reaches an OpenAI-format
//! reasoning model exactly as sent.

// Helpers of a test file fail the test by panicking, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use switchyard_e2e::double::Double;
use switchyard_e2e::process::{Serve, serve};

fn start(double: &Double) -> Serve {
    serve(&format!(
        r#"
server:
  http_addr: 127.0.0.1:0
  grpc_addr: 127.0.0.1:0
providers:
  - name: up
    kind: openai
    base_url: {base}
  - name: local
    kind: vllm
    base_url: {base}
    reasoning: on
models:
  - name: coder
    routes:
      - {{ provider: up, model: gpt-5 }}
  - name: small
    routes:
      - {{ provider: up, model: gpt-4o-mini }}
  - name: strict-small
    unsupported_params: reject
    routes:
      - {{ provider: up, model: gpt-4o-mini }}
  - name: quiet-small
    unsupported_params: drop
    routes:
      - {{ provider: up, model: gpt-4o-mini }}
  - name: local-reasoner
    routes:
      - {{ provider: local, model: my-distill }}
  - name: no-thinking
    reasoning: off
    routes:
      - {{ provider: up, model: o3 }}
"#,
        base = double.base_url()
    ))
}

/// What Claude Code 2.x sends: extended thinking with a 31,999-token budget
/// under max_tokens 32,000, temperature 1.
fn claude_code(model: &str) -> Value {
    json!({
        "model": model,
        "max_tokens": 32000,
        "temperature": 1,
        "thinking": {"type": "enabled", "budget_tokens": 31999},
        "system": [{"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hello code"}]}]
    })
}

/// Posts `body` to `path`; the status, the warnings header (empty when
/// absent) and the body the upstream double received last.
async fn send(base: &str, path: &str, body: &Value, double: &Double) -> (u16, String, Value) {
    let res = switchyard_e2e::http_client()
        .post(format!("{base}{path}"))
        .header("anthropic-version", "2023-06-01")
        .json(body)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let warnings = res
        .headers()
        .get("x-switchyard-warnings")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let answer: Value = res.json().await.unwrap();
    assert_eq!(status, 200, "{answer}");
    let upstream = double.stats.last_body.lock().unwrap().clone();
    (status, warnings, upstream)
}

#[tokio::test]
async fn claude_code_thinking_reaches_an_openai_format_upstream_as_reasoning_effort() {
    let double = Double::start().await.unwrap();
    let s = start(&double);
    let base = s.proc.http();

    // A reasoning model: OpenAI's own control, Anthropic's gone.
    let (_, warnings, upstream) = send(&base, "/v1/messages", &claude_code("coder"), &double).await;
    assert_eq!(upstream["model"], "gpt-5");
    assert_eq!(upstream["reasoning_effort"], "high", "{upstream}");
    assert!(upstream.get("thinking").is_none(), "{upstream}");
    assert_eq!(warnings, "");

    // The same through a direct `<provider>/<model>` name.
    let (_, _, upstream) = send(&base, "/v1/messages", &claude_code("up/o4-mini"), &double).await;
    assert_eq!(upstream["reasoning_effort"], "high", "{upstream}");

    // A model without reasoning would answer 400 to it: dropped, said so.
    let (_, warnings, upstream) = send(&base, "/v1/messages", &claude_code("small"), &double).await;
    assert_eq!(upstream["model"], "gpt-4o-mini");
    assert!(upstream.get("reasoning_effort").is_none(), "{upstream}");
    assert!(upstream.get("thinking").is_none(), "{upstream}");
    assert_eq!(warnings, "dropped thinking (gpt-4o-mini does not reason)");

    // A hint, not a parameter to refuse: dropped under `reject` too ...
    let (_, warnings, upstream) =
        send(&base, "/v1/messages", &claude_code("strict-small"), &double).await;
    assert!(upstream.get("reasoning_effort").is_none(), "{upstream}");
    assert_eq!(warnings, "dropped thinking (gpt-4o-mini does not reason)");
    // ... and silently under `drop`.
    let (_, warnings, _) = send(&base, "/v1/messages", &claude_code("quiet-small"), &double).await;
    assert_eq!(warnings, "");

    // The config settles what the family rules cannot know, both ways.
    let (_, _, upstream) = send(
        &base,
        "/v1/messages",
        &claude_code("local-reasoner"),
        &double,
    )
    .await;
    assert_eq!(upstream["reasoning_effort"], "high", "{upstream}");
    let (_, warnings, upstream) =
        send(&base, "/v1/messages", &claude_code("no-thinking"), &double).await;
    assert!(upstream.get("reasoning_effort").is_none(), "{upstream}");
    assert_eq!(warnings, "dropped thinking (`reasoning: off` for o3)");
}

#[tokio::test]
async fn an_openai_clients_reasoning_effort_goes_as_sent_or_not_at_all() {
    let double = Double::start().await.unwrap();
    let s = start(&double);
    let base = s.proc.http();
    let chat = |model: &str| {
        json!({"model": model, "reasoning_effort": "minimal",
            "messages": [{"role": "user", "content": "hi"}]})
    };

    let (_, warnings, upstream) =
        send(&base, "/v1/chat/completions", &chat("coder"), &double).await;
    assert_eq!(upstream["reasoning_effort"], "minimal", "{upstream}");
    assert_eq!(warnings, "");

    let (_, warnings, upstream) = send(
        &base,
        "/v1/chat/completions",
        &chat("strict-small"),
        &double,
    )
    .await;
    assert!(upstream.get("reasoning_effort").is_none(), "{upstream}");
    assert_eq!(
        warnings,
        "dropped reasoning_effort (gpt-4o-mini does not reason)"
    );
}
