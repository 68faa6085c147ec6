//! Shared by the ledger's integration tests: record builders, waiting on a
//! condition with a deadline, a private nats-server, a throwaway PostgreSQL
//! database.

#![allow(dead_code)]

use std::future::Future;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use switchyard_ledger::UsageRecord;
use switchyard_pricing::Usd;

/// A record with usage in every counter.
pub fn record(id: &str, time: Timestamp) -> UsageRecord {
    let mut r = UsageRecord::new(id, time, "router-a", "chat", "chat-default");
    r.key = Some("key-1".into());
    r.team = Some("team-1".into());
    r.user = Some("user-1".into());
    r.provider = Some("openai".into());
    r.served_model = Some("gpt-4o-mini".into());
    r.input_tokens = 100;
    r.cached_input_tokens = 10;
    r.cache_write_tokens = 5;
    r.output_tokens = 50;
    r.reasoning_tokens = 7;
    r.images = 1;
    r.cost = Usd::from_pico(18_750);
    r.saved = Usd::from_pico(1_000);
    r.latency_ms = 42;
    r.client_addr = Some("10.0.0.7".into());
    r.credential = Some("key".into());
    r.guardrails = vec!["redact:pii/email*2".into(), "flag:tone/angry".into()];
    r
}

/// A captured payload as the router writes it, with text that needs
/// escaping in JSON and CSV.
pub fn payload(prompt: &str) -> serde_json::Value {
    serde_json::json!({
        "request": [
            {"role": "system", "content": "Answer \"briefly\",\nplease."},
            {"role": "user", "content": prompt},
        ],
        "response": [{"role": "assistant", "content": format!("echo: {prompt}"),
            "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "lookup", "arguments": "{\"q\":1}"}}]}],
    })
}

pub fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A varied set: two teams (one with CSV-hostile characters), a record
/// without team/provider, errors, estimates, two days around midnight UTC
/// (which are one day in New York), and in Berlin's early hours.
pub fn varied_records() -> Vec<UsageRecord> {
    let mut out = Vec::new();
    let base = [
        "2026-01-01T10:00:00Z",
        "2026-01-01T23:30:00Z", // 2026-01-02 in Berlin, 2026-01-01 in New York
        "2026-01-02T00:40:00Z", // still 2026-01-01 in New York
        "2026-01-02T12:00:00Z",
        "2026-01-03T05:00:00Z", // 2026-01-03 00:00 in New York
    ];
    for (i, t) in base.iter().enumerate() {
        for j in 0..4 {
            let mut r = record(&format!("varied-{i}-{j}"), ts(t));
            r.cost = Usd::from_pico(1_000 * (i as i64 + 1) + j as i64);
            r.input_tokens = 10 * (j as u64 + 1);
            match j {
                0 => {}
                1 => {
                    r.team = Some("ops, \"infra\"\nnight".into());
                    r.key = Some("key-2".into());
                    r.model = "embed".into();
                    r.credential = Some("jwt".into());
                    r.client_addr = None;
                    r.guardrails = vec!["block:no-cards/card".into()];
                }
                2 => {
                    r.team = None;
                    r.user = None;
                    r.provider = None;
                    r.served_model = None;
                    r.outcome = "upstream_timeout".into();
                    r.cost = Usd::ZERO;
                    // Anonymous, from IPv6, nothing the guardrails did.
                    r.client_addr = Some("2001:db8::1".into());
                    r.credential = None;
                    r.guardrails = Vec::new();
                }
                _ => {
                    r.provider = Some("anthropic".into());
                    r.served_model = Some("claude-sonnet-4-5".into());
                    r.estimated = true;
                    r.outcome = "client_closed".into();
                }
            }
            out.push(r);
        }
    }
    out
}

/// Polls `check` until it returns `Some`, failing after `deadline`. The
/// pause between polls is back-off, not synchronisation.
pub async fn wait_for<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let end = Instant::now() + deadline;
    let mut pause = Duration::from_millis(5);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < end,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

pub async fn nats() -> (switchyard_e2e::nats::NatsServer, async_nats::Client) {
    let server = tokio::task::spawn_blocking(switchyard_e2e::nats::NatsServer::start)
        .await
        .unwrap()
        .expect("nats-server starts");
    let client = async_nats::connect(server.url()).await.unwrap();
    (server, client)
}

/// Settings with a small queue and fast retries, on a stream of its own.
pub fn stream_settings() -> switchyard_ledger::StreamSettings {
    switchyard_ledger::StreamSettings {
        publish_attempts: 3,
        ..Default::default()
    }
}
