//! Virtual keys and model access end to end: `switchyard keys` against a
//! running `switchyard serve` (local key file), the keys used by the
//! OpenAI- and Anthropic-shaped front ends, access rules by key, team and
//! role, per-key request limits; and, scaled out, two routers sharing the
//! JetStream key bucket: a key made on one works on the other, and its
//! revocation is refused by both within a second.

// Helpers of a test file fail the test by panicking, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use switchyard_e2e::auth::{Idp, bearer, cli, create_key, unix_now};
use switchyard_e2e::double::Double;
use switchyard_e2e::nats::NatsServer;
use switchyard_e2e::process::{serve, serve_config, two_routers};
use switchyard_e2e::{eventually, http_client, post_chat};

fn config(double: &Double, keys_path: &str) -> String {
    serve_config(
        &double.base_url(),
        &format!(
            r#"  - name: big
    routes:
      - {{ provider: up, model: gpt-big }}
  - name: chat-mini
    routes:
      - {{ provider: up, model: gpt-mini }}
guardrails:
  rules:
    - {{ name: strict-email, detector: email, action: block, keys: [strict] }}
pricing:
  models:
    - {{ provider: openai, model: gpt-test, input: 2, output: 8 }}
auth:
  keys: {{ store: local, path: {keys_path} }}
  access:
    - {{ name: interns-mini-only, roles: [intern], models: ["*-mini"] }}
    - {{ name: research-no-big, teams: [research], models: ["chat*"] }}
"#
        ),
    )
}

fn ask(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hello"}]})
}

#[tokio::test]
async fn keys_made_with_the_cli_are_required_checked_and_revoked() {
    let double = Double::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let keys_path = dir.path().join("keys.db");
    let gw = serve(&config(&double, keys_path.to_str().unwrap()));
    let base = gw.proc.http();

    // No key exists yet: open, to this loopback client.
    let r = post_chat(&base, &ask("chat"), &[]).await;
    assert_eq!(r.status, 200, "{}", r.text);

    let out = cli(
        &base,
        &[
            "keys",
            "create",
            "--name",
            "ci-bot",
            "--model",
            "chat,chat-mini",
        ],
    );
    let key = out.lines().next().unwrap().trim().to_owned();
    assert!(key.starts_with("sk-sy-"), "{out}");
    assert!(out.contains("not shown again"), "{out}");

    // From the first key on, every request needs one.
    let r = post_chat(&base, &ask("chat"), &[]).await;
    assert_eq!(r.status, 401, "{}", r.text);
    assert_eq!(r.json()["error"]["code"], "invalid_api_key");
    let r = post_chat(
        &base,
        &ask("chat"),
        &[("authorization", "Bearer sk-sy-forged")],
    )
    .await;
    assert_eq!(r.status, 401, "{}", r.text);
    assert!(
        !r.text.contains("sk-sy-forged"),
        "the credential is echoed: {}",
        r.text
    );

    let auth = bearer(&key);
    let r = post_chat(&base, &ask("chat"), &[("authorization", &auth)]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    // A model outside the key's list: 403 naming the key.
    let r = post_chat(&base, &ask("big"), &[("authorization", &auth)]).await;
    assert_eq!(r.status, 403, "{}", r.text);
    let e = &r.json()["error"];
    assert_eq!(e["code"], "model_not_allowed", "{e}");
    assert!(
        e["message"].as_str().unwrap().contains("key `ci-bot`"),
        "{e}"
    );
    // Nor through a routing control.
    let mut sneaky = ask("chat");
    sneaky["models"] = json!(["big"]);
    let r = post_chat(&base, &sneaky, &[("authorization", &auth)]).await;
    assert_eq!(r.status, 403, "{}", r.text);
    let r = post_chat(
        &base,
        &ask("chat"),
        &[
            ("authorization", &auth),
            ("x-switchyard-route", r#"{"targets": ["up/gpt-big"]}"#),
        ],
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert_eq!(
        double.requests(),
        2,
        "refused requests reached the upstream"
    );

    // `/v1/models` lists what the key may use.
    let models: Value = http_client()
        .get(format!("{base}/v1/models"))
        .header("authorization", &auth)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, ["chat", "chat-mini"]);

    // The Anthropic SDKs send `x-api-key`; refusals come in their shape.
    let messages = |key: &str| {
        http_client()
            .post(format!("{base}/v1/messages"))
            .header("x-api-key", key)
            .header("anthropic-version", "2023-06-01")
            .json(&json!({"model": "chat", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}))
            .send()
    };
    assert_eq!(messages(&key).await.unwrap().status(), 200);
    let res = messages("sk-sy-nope").await.unwrap();
    assert_eq!(res.status(), 401);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["error"]["type"], "authentication_error", "{body}");

    // Only the hash is on disk.
    let on_disk = std::fs::read(&keys_path).unwrap();
    let secret = key.rsplit('-').next().unwrap();
    assert!(
        !on_disk
            .windows(secret.len())
            .any(|w| w == secret.as_bytes()),
        "the key's secret is in the key file"
    );

    let list = cli(&base, &["keys", "list"]);
    assert!(list.contains("ci-bot") && list.contains("active"), "{list}");
    let id = list
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let out = cli(&base, &["keys", "revoke", &id]);
    assert!(out.contains("revoked"), "{out}");
    let r = post_chat(&base, &ask("chat"), &[("authorization", &auth)]).await;
    assert_eq!(r.status, 401, "{}", r.text);
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("revoked"),
        "{}",
        r.text
    );
    // Revoking every key does not open the gateway again.
    let r = post_chat(&base, &ask("chat"), &[]).await;
    assert_eq!(r.status, 401, "{}", r.text);

    // The keys survive a restart (same file, same hash secret beside it).
    drop(gw);
    let gw = serve(&config(&double, keys_path.to_str().unwrap()));
    let r = post_chat(&gw.proc.http(), &ask("chat"), &[("authorization", &auth)]).await;
    assert_eq!(r.status, 401, "{}", r.text);
    let list = cli(&gw.proc.http(), &["keys", "list"]);
    assert!(list.contains("revoked"), "{list}");
}

#[tokio::test]
async fn access_rules_by_team_and_role_and_per_key_limits() {
    let double = Double::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let gw = serve(&config(
        &double,
        dir.path().join("keys.db").to_str().unwrap(),
    ));
    let base = gw.proc.http();

    let intern = create_key(&base, json!({"name": "intern", "roles": ["intern"]})).await;
    let intern = bearer(intern["key"].as_str().unwrap());
    assert_eq!(
        post_chat(&base, &ask("chat-mini"), &[("authorization", &intern)])
            .await
            .status,
        200
    );
    let r = post_chat(&base, &ask("chat"), &[("authorization", &intern)]).await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert!(r.text.contains("rule `interns-mini-only`"), "{}", r.text);

    let researcher = create_key(&base, json!({"name": "r1", "team": "research"})).await;
    let researcher = bearer(researcher["key"].as_str().unwrap());
    assert_eq!(
        post_chat(&base, &ask("chat"), &[("authorization", &researcher)])
            .await
            .status,
        200
    );
    let r = post_chat(&base, &ask("big"), &[("authorization", &researcher)]).await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert!(r.text.contains("rule `research-no-big`"), "{}", r.text);
    // A key cannot bill another team with the header.
    let r = post_chat(
        &base,
        &ask("big"),
        &[
            ("authorization", &researcher),
            ("x-switchyard-team", "platform"),
        ],
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.text);

    // A guardrail rule for one key only.
    let strict = create_key(&base, json!({"name": "strict"})).await;
    let strict = bearer(strict["key"].as_str().unwrap());
    let mail = json!({"model": "chat", "messages": [{"role": "user", "content": "write to ada@example.com"}]});
    let r = post_chat(&base, &mail, &[("authorization", &strict)]).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.text.contains("strict-email"), "{}", r.text);
    let r = post_chat(&base, &mail, &[("authorization", &researcher)]).await;
    assert_eq!(r.status, 200, "{}", r.text);

    let limited = create_key(
        &base,
        json!({"name": "small", "limits": {"max_tokens": 50, "max_messages": 2, "max_body_bytes": 400}}),
    )
    .await;
    let limited = bearer(limited["key"].as_str().unwrap());
    let mut body = ask("chat");
    body["max_tokens"] = json!(51);
    let r = post_chat(&base, &body, &[("authorization", &limited)]).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.json()["error"]["param"], "max_tokens", "{}", r.text);
    // No max_tokens: the ceiling is sent upstream.
    let r = post_chat(&base, &ask("chat"), &[("authorization", &limited)]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let sent = double.stats.last_body.lock().unwrap().clone();
    let sent_max = sent
        .get("max_completion_tokens")
        .or_else(|| sent.get("max_tokens"));
    assert_eq!(sent_max, Some(&json!(50)), "{sent}");
    let three = json!({"model": "chat", "messages": [
        {"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}
    ]});
    let r = post_chat(&base, &three, &[("authorization", &limited)]).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(
        r.json()["error"]["code"],
        "request_limit_exceeded",
        "{}",
        r.text
    );
    let long = json!({"model": "chat", "messages": [{"role": "user", "content": "x".repeat(500)}]});
    let r = post_chat(&base, &long, &[("authorization", &limited)]).await;
    assert_eq!(r.status, 413, "{}", r.text);

    // A key's own budget: once its spend reaches the limit, it is refused
    // until the window resets; other keys are not.
    let thrifty = create_key(
        &base,
        json!({"name": "thrifty", "limits": {"budget": {"limit_usd": "0.00001", "window": "daily"}}}),
    )
    .await;
    let thrifty = bearer(thrifty["key"].as_str().unwrap());
    let r = post_chat(&base, &ask("chat"), &[("authorization", &thrifty)]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let cost: f64 = r.headers["x-switchyard-cost-usd"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(cost >= 0.00001, "one answer cost only {cost}");
    let r = post_chat(&base, &ask("chat"), &[("authorization", &thrifty)]).await;
    assert_eq!(r.status, 429, "{}", r.text);
    assert_eq!(r.json()["error"]["code"], "budget_exceeded", "{}", r.text);
    assert!(r.text.contains("key thrifty"), "{}", r.text);
    let bad = http_client()
        .post(format!("{base}/admin/v1/keys"))
        .json(&json!({"name": "x", "limits": {"budget": {"limit_usd": "lots", "window": "daily"}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);

    // An expired key is refused by name.
    let brief = create_key(&base, json!({"name": "brief", "expires_in": "300ms"})).await;
    let brief = bearer(brief["key"].as_str().unwrap());
    eventually(Duration::from_secs(10), async || {
        let r = post_chat(&base, &ask("chat"), &[("authorization", &brief)]).await;
        if r.status == 401 && r.text.contains("expired") {
            Ok(())
        } else {
            Err(format!("{} {}", r.status, r.text))
        }
    })
    .await;

    // Keys never reach the admin API.
    let res = http_client()
        .get(format!("{base}/admin/v1/keys"))
        .header("authorization", &researcher)
        .send()
        .await
        .unwrap();
    // A loopback client without SWITCHYARD_ADMIN_TOKEN is the operator;
    // the listing never holds hashes or keys.
    let text = res.text().await.unwrap();
    assert!(
        !text.contains("\"hash\"") && !text.contains("sk-sy-"),
        "{text}"
    );
}

#[tokio::test]
async fn scaled_out_routers_share_keys_and_revocations() {
    let nats = NatsServer::start().unwrap();
    let double = Double::start().await.unwrap();
    let routers = two_routers(
        &nats.url(),
        &double.base_url(),
        "auth:\n  keys:\n    hash_secret: 0123456789abcdef0123456789abcdef-test\n",
    );
    let (a, b) = (routers.a.http(), routers.b.http());

    let made = create_key(&a, json!({"name": "shared"})).await;
    let auth = bearer(made["key"].as_str().unwrap());
    eventually(Duration::from_secs(1), async || {
        match post_chat(&b, &ask("chat"), &[("authorization", &auth)])
            .await
            .status
        {
            200 => Ok(()),
            s => Err(format!("router b answered {s}")),
        }
    })
    .await;

    // Requests keep flowing to router b while the key is revoked on a.
    let stop = Arc::new(tokio::sync::Notify::new());
    let flow = {
        let (b, auth, stop) = (b.clone(), auth.clone(), stop.clone());
        tokio::spawn(async move {
            let mut seen = Vec::new();
            loop {
                let started = tokio::time::Instant::now();
                let status = post_chat(&b, &ask("chat"), &[("authorization", &auth)])
                    .await
                    .status;
                seen.push((started, status));
                tokio::select! {
                    () = stop.notified() => return seen,
                    () = std::future::ready(()) => {}
                }
            }
        })
    };
    let id = made["id"].as_str().unwrap();
    let res = http_client()
        .delete(format!("{a}/admin/v1/keys/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let revoked = tokio::time::Instant::now();
    // The router that revoked refuses the very next request.
    assert_eq!(
        post_chat(&a, &ask("chat"), &[("authorization", &auth)])
            .await
            .status,
        401
    );
    eventually(Duration::from_secs(1), async || {
        match post_chat(&b, &ask("chat"), &[("authorization", &auth)])
            .await
            .status
        {
            401 => Ok(()),
            s => Err(format!("router b still answers {s} after the revocation")),
        }
    })
    .await;
    stop.notify_one();
    let seen = flow.await.unwrap();
    // Once router b refused the key, it never served it again, and
    // nothing that started a second after the revocation was served.
    let first_refusal = seen.iter().position(|(_, s)| *s == 401);
    let first_refusal = first_refusal.expect("router b never refused during the flow");
    assert!(
        seen[first_refusal..].iter().all(|(_, s)| *s == 401),
        "served after refusing: {:?}",
        seen.iter().map(|(_, s)| s).collect::<Vec<_>>()
    );
    assert!(
        seen.iter()
            .all(|(t, s)| *s == 401 || *t < revoked + Duration::from_secs(1)),
        "served more than a second after the revocation"
    );
    assert!(seen[..first_refusal].iter().all(|(_, s)| *s == 200));
}

#[tokio::test]
async fn jwts_from_the_identity_provider_carry_team_and_role() {
    let double = Double::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let idp = Idp::new("k1");
    let jwks_path = dir.path().join("jwks.json");
    std::fs::write(&jwks_path, idp.jwks.to_string()).unwrap();
    let mut yaml = config(&double, dir.path().join("keys.db").to_str().unwrap());
    yaml.push_str(&format!(
        "  jwt:\n    issuer: https://idp.test\n    audiences: [switchyard]\n    jwks_file: {}\n    team_claim: org.team\n    role_claim: roles\n    min_refresh_interval: 1ms\n",
        jwks_path.display()
    ));
    let gw = serve(&yaml);
    let base = gw.proc.http();
    let claims = |aud: &str, exp: u64, roles: &[&str]| {
        json!({"iss": "https://idp.test", "aud": aud, "sub": "u-1", "exp": exp,
               "org": {"team": "research"}, "roles": roles})
    };
    let hour = unix_now() + 3600;

    // With JWTs configured the gateway is never open.
    assert_eq!(post_chat(&base, &ask("chat"), &[]).await.status, 401);
    let good = bearer(&idp.token(&claims("switchyard", hour, &[])));
    let r = post_chat(&base, &ask("chat"), &[("authorization", &good)]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    // The team claim applies the team's access rule.
    let r = post_chat(&base, &ask("big"), &[("authorization", &good)]).await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert!(r.text.contains("rule `research-no-big`"), "{}", r.text);
    let intern = bearer(&idp.token(&claims("switchyard", hour, &["intern"])));
    let r = post_chat(&base, &ask("chat"), &[("authorization", &intern)]).await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert!(r.text.contains("rule `interns-mini-only`"), "{}", r.text);

    for (why, token) in [
        (
            "expired",
            idp.token(&claims("switchyard", unix_now() - 600, &[])),
        ),
        (
            "wrong audience",
            idp.token(&claims("someone-else", hour, &[])),
        ),
        (
            "unknown key",
            Idp::new("k2").token(&claims("switchyard", hour, &[])),
        ),
    ] {
        let r = post_chat(&base, &ask("chat"), &[("authorization", &bearer(&token))]).await;
        assert_eq!(r.status, 401, "{why}: {}", r.text);
        assert!(!r.text.contains(&token), "{why}: the token is echoed");
    }

    // The provider rotates to a new key: the file is read again on the
    // unknown key id.
    let rotated = Idp::new("k2");
    std::fs::write(&jwks_path, rotated.jwks.to_string()).unwrap();
    let token = bearer(&rotated.token(&claims("switchyard", hour, &[])));
    eventually(Duration::from_secs(5), async || {
        match post_chat(&base, &ask("chat"), &[("authorization", &token)])
            .await
            .status
        {
            200 => Ok(()),
            s => Err(format!("{s}")),
        }
    })
    .await;

    // The keys cannot be fetched: a token with an unknown key id is a 503
    // to retry, not the caller's fault; known keys keep working.
    std::fs::remove_file(&jwks_path).unwrap();
    let unknown = bearer(&Idp::new("k3").token(&claims("switchyard", hour, &[])));
    let r = post_chat(&base, &ask("chat"), &[("authorization", &unknown)]).await;
    assert_eq!(r.status, 503, "{}", r.text);
    assert_eq!(
        r.json()["error"]["code"],
        "identity_provider_unavailable",
        "{}",
        r.text
    );
    assert!(r.headers.contains_key("retry-after"));
    let r = post_chat(&base, &ask("chat"), &[("authorization", &token)]).await;
    assert_eq!(r.status, 200, "{}", r.text);
}
