//! Guardrails end to end through `switchyard serve` and the OpenAI-format
//! upstream double: a blocked detector is a 400 naming the rule and the
//! detector (never the match) and the upstream is never called; a
//! redacting rule replaces the match before the request leaves; rules
//! limited to a team apply to that team only; `/v1/messages` gets the same
//! rules in Anthropic's error shape. Answer rules (`applies_to: response`)
//! redact the upstream's answer, unary and streamed (the double streams its
//! echo word by word, so a card number arrives split over four chunks),
//! and a blocking one withholds it.

// Helpers of a test file fail the test by panicking, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use switchyard_e2e::double::Double;
use switchyard_e2e::post_chat;
use switchyard_e2e::process::{Serve, serve, serve_config};

const CARD: &str = "4111 1111 1111 1111";

fn start(double: &Double) -> Serve {
    serve(&serve_config(
        &double.base_url(),
        r#"guardrails:
  rules:
    - { detector: card, action: block }
    - { detector: email, action: redact }
    - { name: red-ssn, detector: ssn, action: block, teams: [red] }
    - { name: codename, detector: regex, pattern: '(?i)project\s+falcon', action: redact }
"#,
    ))
}

fn ask(text: &str) -> Value {
    json!({"model": "chat", "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": text}
    ]})
}

fn sent(double: &Double) -> String {
    double.stats.last_body.lock().unwrap().to_string()
}

#[tokio::test]
async fn a_card_number_is_blocked_and_never_leaves() {
    let double = Double::start().await.unwrap();
    let gw = start(&double);
    let base = gw.proc.http();

    let r = post_chat(&base, &ask(&format!("charge {CARD} please")), &[]).await;
    assert_eq!(r.status, 400, "{}", r.text);
    let e = &r.json()["error"];
    assert_eq!(e["code"], "guardrail_blocked", "{e}");
    assert_eq!(e["type"], "invalid_request_error", "{e}");
    let message = e["message"].as_str().unwrap();
    assert!(
        message.contains("`card`") && message.contains("card"),
        "{message}"
    );
    assert!(!r.text.contains("4111"), "the match is echoed: {}", r.text);
    assert_eq!(double.requests(), 0);

    // The same digits failing the Luhn check are an ordinary number.
    let r = post_chat(&base, &ask("order 4111 1111 1111 1112 shipped"), &[]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(sent(&double).contains("4111 1111 1111 1112"));

    // Anthropic's front end, Anthropic's error shape.
    let res = switchyard_e2e::http_client()
        .post(format!("{base}/v1/messages"))
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"model": "chat", "max_tokens": 50,
            "messages": [{"role": "user", "content": [{"type": "text", "text": CARD}]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
    assert_eq!(double.requests(), 1);
}

#[tokio::test]
async fn redaction_happens_before_the_request_leaves() {
    let double = Double::start().await.unwrap();
    let gw = start(&double);
    let base = gw.proc.http();

    let r = post_chat(
        &base,
        &ask("mail bob.smith@example.com about Project  Falcon"),
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let upstream = sent(&double);
    assert!(!upstream.contains("bob.smith@example.com"), "{upstream}");
    assert!(!upstream.to_lowercase().contains("falcon"), "{upstream}");
    assert!(upstream.contains("[REDACTED:email]"), "{upstream}");
    assert!(upstream.contains("[REDACTED:codename]"), "{upstream}");
    // The untouched system message is still there.
    assert!(upstream.contains("Be brief."), "{upstream}");
}

#[tokio::test]
async fn a_team_rule_applies_to_that_team_only() {
    let double = Double::start().await.unwrap();
    let gw = start(&double);
    let base = gw.proc.http();
    let body = ask("my ssn is 123-45-6789");

    let r = post_chat(&base, &body, &[("x-switchyard-team", "red")]).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.text.contains("red-ssn"), "{}", r.text);
    assert!(!r.text.contains("6789"), "{}", r.text);

    let r = post_chat(&base, &body, &[("x-switchyard-team", "blue")]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(sent(&double).contains("123-45-6789"));
}

/// A gateway whose rules scan answers only: the double echoes the prompt,
/// so what the prompt carries comes back in the answer.
fn start_answers(double: &Double) -> Serve {
    serve(&serve_config(
        &double.base_url(),
        r#"guardrails:
  rules:
    - { detector: card, action: redact, applies_to: response }
    - { detector: secret, action: block, applies_to: response }
    - { detector: email, action: log, applies_to: both }
"#,
    ))
}

/// The joined `delta.content` of an SSE body, and its last event.
fn stream_text(body: &str) -> (String, Value) {
    let mut text = String::new();
    let mut last = Value::Null;
    for e in body.split("\n\n").filter(|e| !e.is_empty()) {
        let data = e.strip_prefix("data: ").unwrap_or_else(|| panic!("{e:?}"));
        if data == "[DONE]" {
            last = Value::String(data.to_owned());
            continue;
        }
        let v: Value = serde_json::from_str(data).unwrap();
        if let Some(t) = v
            .pointer("/choices/0/delta/content")
            .and_then(Value::as_str)
        {
            text.push_str(t);
        }
        last = v;
    }
    (text, last)
}

fn stream(mut body: Value) -> Value {
    body["stream"] = json!(true);
    body
}

#[tokio::test]
async fn a_card_in_the_answer_is_redacted_unary_and_streamed() {
    let double = Double::start().await.unwrap();
    let gw = start_answers(&double);
    let base = gw.proc.http();
    let prompt = format!("card {CARD} ok");

    let r = post_chat(&base, &ask(&prompt), &[]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    // The prompt is not scanned by answer rules: the card went upstream.
    assert!(sent(&double).contains(CARD));
    assert_eq!(r.content(), "echo: card [REDACTED:card] ok");
    assert!(!r.text.contains("4111"), "{}", r.text);

    // Streamed word by word: `4111 `, `1111 `, ... each its own chunk.
    let r = post_chat(&base, &stream(ask(&prompt)), &[]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let (text, last) = stream_text(&r.text);
    assert_eq!(text, "echo: card [REDACTED:card] ok", "{}", r.text);
    assert_eq!(last, "[DONE]", "{}", r.text);
    assert!(!r.text.contains("4111"), "{}", r.text);
    assert!(!r.text.contains("1111"), "{}", r.text);

    // Text without a match flows unchanged.
    let r = post_chat(
        &base,
        &stream(ask("order 4111 1111 1111 1112 shipped")),
        &[],
    )
    .await;
    let (text, _) = stream_text(&r.text);
    assert_eq!(text, "echo: order 4111 1111 1111 1112 shipped");
}

#[tokio::test]
async fn a_secret_in_the_answer_blocks_it() {
    let double = Double::start().await.unwrap();
    let gw = start_answers(&double);
    let base = gw.proc.http();
    let prompt = "the key is AKIAIOSFODNN7EXAMPLE so there";

    let r = post_chat(&base, &ask(prompt), &[]).await;
    assert_eq!(r.status, 422, "{}", r.text);
    let e = &r.json()["error"];
    assert_eq!(e["code"], "guardrail_blocked_answer", "{e}");
    assert!(e["message"].as_str().unwrap().contains("`secret`"), "{e}");
    assert!(!r.text.contains("AKIA"), "{}", r.text);

    // Streamed: what came before the match is sent, then the error; the
    // match and what follows never are.
    let r = post_chat(&base, &stream(ask(prompt)), &[]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let (text, last) = stream_text(&r.text);
    assert_eq!(text, "echo: the key is ", "{}", r.text);
    assert_eq!(
        last["error"]["code"], "guardrail_blocked_answer",
        "{}",
        r.text
    );
    assert!(!r.text.contains("AKIA"), "{}", r.text);
    assert!(!r.text.contains("there"), "{}", r.text);
    assert!(!r.text.contains("[DONE]"), "{}", r.text);

    // An email is only logged, in the prompt and in the answer.
    let r = post_chat(&base, &ask("write to a@b.io"), &[]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.content(), "echo: write to a@b.io");
}
