//! What admission costs a request before routing: the virtual key checked
//! (HMAC-SHA256, constant-time), the model access rules, a rate limit
//! counted, and six guardrail rules over a 2 KB prompt. Timing, so
//! ignored by default:
//!
//! ```sh
//! cargo test --release -p switchyard-router --test admission_bench -- --ignored --nocapture
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard_auth::NewKey;
use switchyard_config::Config;
use switchyard_providers::openai::{convert, wire};
use switchyard_router::auth::Auth;
use switchyard_router::guardrails::Guardrails;
use switchyard_router::limits;
use switchyard_router::spend::Identity;
use tokio_util::sync::CancellationToken;

fn config(dir: &std::path::Path) -> Config {
    Config::from_yaml_str(
        &format!(
            r#"
providers: [{{name: demo, kind: demo}}]
auth:
  keys: {{store: local, path: {}}}
  access:
    - {{name: everyone, models: ["chat*", "demo"]}}
rate_limits:
  - {{name: per-key, scope: {{key: "*"}}, rpm: 100000000}}
  - {{name: per-team, scope: {{team: "*"}}, rpm: 100000000, tpm: 100000000000}}
guardrails:
  rules:
    - {{detector: card, action: block}}
    - {{detector: ssn, action: block}}
    - {{detector: secret, action: block}}
    - {{detector: iban, action: redact}}
    - {{detector: email, action: redact}}
    - {{detector: phone, action: log}}
"#,
            dir.join("keys.db").display()
        ),
        "bench.yaml",
    )
    .unwrap()
}

/// 2 KB of prompt; `pii` puts an e-mail address, a phone number and an
/// IBAN in each paragraph (redacted or logged), otherwise none.
fn prompt(pii: bool) -> String {
    let para = if pii {
        "Please summarise this ticket. The customer, reachable at jane.doe@example.com or \
         415-555-0132, was charged twice for order 100234987 and wants a refund to IBAN \
         DE89 3704 0044 0532 0130 00 within five business days. "
    } else {
        "Please summarise this ticket. The customer was charged twice for the same order \
         and would like a refund within five business days; they are on version 2.14.3 of \
         the app and have attached two screenshots of the checkout page. "
    };
    let mut s = String::new();
    while s.len() < 2048 {
        s.push_str(para);
    }
    s.truncate(2048);
    s
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

#[tokio::test(flavor = "current_thread")]
#[ignore = "timing; run with --release --ignored --nocapture"]
async fn admission_of_a_2kb_prompt() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let auth = Auth::start(
        &config,
        None,
        switchyard_providers::registry::http_client(),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    let (key, _) = auth
        .create_key(NewKey {
            name: "bench".into(),
            team: Some("research".into()),
            ..NewKey::default()
        })
        .await
        .unwrap();
    let limiter = Arc::new(switchyard_ratelimit::Limiter::new(limits::rules(&config)));
    let guardrails = Guardrails::from_config(&config);

    for pii in [false, true] {
        let body = serde_json::json!({
            "model": "chat",
            "messages": [{"role": "user", "content": prompt(pii)}]
        });
        let req: wire::ChatCompletionRequest = serde_json::from_value(body).unwrap();
        let (spec, _) = convert::request_to_spec(req).unwrap();
        let mut samples = Vec::with_capacity(20_000);
        for i in 0..22_000 {
            let mut spec = spec.clone();
            let started = Instant::now();
            let caller = auth
                .authenticate(Some(std::hint::black_box(&key)), false)
                .await
                .unwrap();
            auth.check_model(caller.as_deref(), &spec.model).unwrap();
            let mut who = Identity::default();
            if let Some(p) = &caller {
                who.key = Some(p.id());
                who.team.clone_from(&p.team);
            }
            let (_, charge) =
                limits::admit(&limiter, &who, caller.as_deref(), &spec.model).unwrap();
            let model = spec.model.clone();
            let applied = guardrails.apply(&mut spec, &model, &who).unwrap();
            let elapsed = started.elapsed();
            charge.tokens(600);
            std::hint::black_box(applied);
            // The first 2,000 warm caches and counters up.
            if i >= 2_000 {
                samples.push(elapsed);
            }
        }
        samples.sort();
        println!(
            "admission (key + access + rate limit + 6 guardrail rules), 2 KB prompt {}: p50 {:?}, p90 {:?}, p99 {:?}, max {:?}",
            if pii {
                "with PII (redacted)"
            } else {
                "without matches"
            },
            percentile(&samples, 0.5),
            percentile(&samples, 0.9),
            percentile(&samples, 0.99),
            samples[samples.len() - 1],
        );
    }
}
