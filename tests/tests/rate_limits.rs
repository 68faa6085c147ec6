//! Rate limits end to end: a key's own `rpm`, `rate_limits` per team and
//! on tokens through `switchyard serve` (429 with `retry-after` and
//! OpenAI's `x-ratelimit-*` headers, which successful answers carry too),
//! and one limit shared by two routers over NATS.

// Helpers of a test file fail the test by panicking, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use switchyard_e2e::auth::{bearer, create_key};
use switchyard_e2e::double::Double;
use switchyard_e2e::nats::NatsServer;
use switchyard_e2e::post_chat;
use switchyard_e2e::process::{serve, serve_config, two_routers};

fn ask() -> Value {
    json!({"model": "chat", "messages": [{"role": "user", "content": "hello there"}]})
}

async fn key_for(base: &str, body: Value) -> String {
    bearer(create_key(base, body).await["key"].as_str().unwrap())
}

#[tokio::test]
async fn keys_and_teams_are_limited_per_minute() {
    let double = Double::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let gw = serve(&serve_config(
        &double.base_url(),
        &format!(
            r#"auth:
  keys: {{ store: local, path: {keys} }}
rate_limits:
  - {{ name: per-team, scope: {{ team: "*" }}, rpm: 5 }}
  - {{ name: team-tokens, scope: {{ team: tokens }}, tpm: 4 }}
  - {{ name: interns, scope: {{ role: intern }}, rpm: 2 }}
"#,
            keys = dir.path().join("keys.db").display()
        ),
    ));
    let base = gw.proc.http();

    // A key's own rpm.
    let key = key_for(&base, json!({"name": "slow", "limits": {"rpm": 3}})).await;
    for i in 0..3 {
        let r = post_chat(&base, &ask(), &[("authorization", &key)]).await;
        assert_eq!(r.status, 200, "request {i}: {}", r.text);
        let remaining = r.headers["x-ratelimit-remaining-requests"]
            .to_str()
            .unwrap();
        assert_eq!(remaining, (2 - i).to_string(), "request {i}");
        assert_eq!(r.headers["x-ratelimit-limit-requests"], "3");
        assert!(r.headers.contains_key("x-ratelimit-reset-requests"));
    }
    let r = post_chat(&base, &ask(), &[("authorization", &key)]).await;
    assert_eq!(r.status, 429, "{}", r.text);
    let e = &r.json()["error"];
    assert_eq!(e["code"], "rate_limit_exceeded", "{e}");
    assert_eq!(e["type"], "requests", "{e}");
    assert!(e["message"].as_str().unwrap().contains("key `slow`"), "{e}");
    let after: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&after), "retry-after {after}");
    assert_eq!(r.headers["x-ratelimit-remaining-requests"], "0");
    assert_eq!(
        double.requests(),
        3,
        "a refused request reached the upstream"
    );

    // Each team apart: two keys of one team share 5 per minute.
    let a = key_for(&base, json!({"name": "a", "team": "blue"})).await;
    let b = key_for(&base, json!({"name": "b", "team": "blue"})).await;
    let other = key_for(&base, json!({"name": "c", "team": "green"})).await;
    let mut ok = 0;
    for i in 0..8 {
        let k = if i % 2 == 0 { &a } else { &b };
        if post_chat(&base, &ask(), &[("authorization", k)])
            .await
            .status
            == 200
        {
            ok += 1;
        }
    }
    assert_eq!(ok, 5, "team blue was admitted {ok} of 8 for a limit of 5");
    let r = post_chat(&base, &ask(), &[("authorization", &a)]).await;
    assert!(r.text.contains("per-team"), "{}", r.text);
    assert_eq!(
        post_chat(&base, &ask(), &[("authorization", &other)])
            .await
            .status,
        200
    );

    // A role: every caller with it counts together.
    let i1 = key_for(&base, json!({"name": "i1", "roles": ["intern"]})).await;
    let i2 = key_for(&base, json!({"name": "i2", "roles": ["reader", "intern"]})).await;
    assert_eq!(
        post_chat(&base, &ask(), &[("authorization", &i1)])
            .await
            .status,
        200
    );
    assert_eq!(
        post_chat(&base, &ask(), &[("authorization", &i2)])
            .await
            .status,
        200
    );
    let r = post_chat(&base, &ask(), &[("authorization", &i1)]).await;
    assert_eq!(r.status, 429, "{}", r.text);
    assert!(r.text.contains("`interns`"), "{}", r.text);

    // Tokens: counted when the answer's usage is known; once the window
    // holds 4, the next request waits.
    let t = key_for(&base, json!({"name": "t", "team": "tokens"})).await;
    let r = post_chat(&base, &ask(), &[("authorization", &t)]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let used = r.json()["usage"]["total_tokens"].as_u64().unwrap();
    assert!(used >= 4, "the double's answer used only {used} tokens");
    let r = post_chat(&base, &ask(), &[("authorization", &t)]).await;
    assert_eq!(r.status, 429, "{}", r.text);
    assert_eq!(r.json()["error"]["type"], "tokens", "{}", r.text);
    assert!(r.text.contains("team-tokens"), "{}", r.text);
}

#[tokio::test]
async fn two_routers_share_one_limit() {
    let nats = NatsServer::start().unwrap();
    let double = Double::start().await.unwrap();
    let cluster = two_routers(
        &nats.url(),
        &double.base_url(),
        "rate_limits:\n  - { name: everyone, rpm: 40 }\n",
    );
    let routers = [cluster.a.http(), cluster.b.http()];

    // An open-loop rate of about 33 requests per second, alternating
    // between the routers; each shares its counts every 100 ms.
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(30));
    let mut admitted = 0;
    for i in 0..80 {
        tick.tick().await;
        let r = post_chat(&routers[i % 2], &ask(), &[]).await;
        match r.status {
            200 => admitted += 1,
            429 => {}
            s => panic!("unexpected {s}: {}", r.text),
        }
    }
    assert!(
        (38..=42).contains(&admitted),
        "two routers admitted {admitted} for a shared limit of 40"
    );
}
