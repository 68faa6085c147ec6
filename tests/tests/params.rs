//! Parameters a target cannot take, end to end through `switchyard serve`:
//! dropped or clamped with an `x-switchyard-warnings` header under `warn`,
//! refused with a 400 naming the parameter under `reject` (and then nothing
//! reaches the upstream).

// Helpers of a test file fail the test by panicking, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use switchyard_e2e::double::Double;
use switchyard_e2e::process::{Proc, write_config};

fn serve(double: &Double, dir: &std::path::Path) -> Proc {
    let yaml = format!(
        r#"
server:
  http_addr: 127.0.0.1:0
  grpc_addr: 127.0.0.1:0
providers:
  - name: mistral
    kind: mistral
    base_url: {base}
    api_key: test-key
  - name: openai
    kind: openai
    base_url: {base}
models:
  - name: lenient
    routes:
      - {{ provider: mistral, model: mistral-warn }}
  - name: quiet
    unsupported_params: drop
    routes:
      - {{ provider: mistral, model: mistral-drop }}
  - name: strict
    unsupported_params: reject
    routes:
      - {{ provider: mistral, model: mistral-reject }}
  - name: anything
    unsupported_params: reject
    routes:
      - {{ provider: openai, model: openai-all }}
"#,
        base = double.base_url()
    );
    let path = write_config(dir, &yaml);
    Proc::start(
        &["serve", "--config", path.to_str().unwrap()],
        "router listening",
    )
}

async fn chat(base: &str, model: &str) -> (u16, reqwest::header::HeaderMap, Value) {
    let res = switchyard_e2e::http_client()
        .post(format!("{base}/v1/chat/completions"))
        .json(&json!({
            "model": model,
            "messages": [{"role": "user", "content": "hi"}],
            "temperature": 1.8,
            "logprobs": true,
            "user": "u-1",
        }))
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    (status, headers, res.json().await.unwrap())
}

#[tokio::test]
async fn unsupported_parameters_follow_the_policy() {
    let double = Double::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let proc = serve(&double, dir.path());
    let base = proc.http();

    let (status, headers, _) = chat(&base, "lenient").await;
    assert_eq!(status, 200);
    assert_eq!(
        headers["x-switchyard-warnings"],
        "dropped logprobs (unsupported by mistral); dropped user (unsupported by mistral); \
         clamped temperature 1.8 to 1.5 (the maximum for mistral)"
    );
    assert_eq!(double.requests_for("mistral-warn"), 1);

    let (status, headers, _) = chat(&base, "quiet").await;
    assert_eq!(status, 200);
    assert!(headers.get("x-switchyard-warnings").is_none());

    let (status, _, body) = chat(&base, "strict").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert_eq!(body["error"]["code"], "unsupported_parameter");
    assert_eq!(body["error"]["param"], "logprobs");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("provider `mistral`"),
        "{body}"
    );
    assert_eq!(double.requests_for("mistral-reject"), 0);

    // OpenAI takes all of it: nothing to warn about or refuse.
    let (status, headers, body) = chat(&base, "anything").await;
    assert_eq!(status, 200, "{body}");
    assert!(headers.get("x-switchyard-warnings").is_none());
}
