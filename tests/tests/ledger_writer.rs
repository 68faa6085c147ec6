//! The scaled-out ledger end to end: a router and a worker over a private
//! nats-server publish usage records to the JetStream stream, and
//! `switchyard ledger-writer` loads them into a fresh PostgreSQL database.
//! The writer is killed (SIGKILL) in the middle of the traffic and started
//! again: PostgreSQL ends with every request exactly once, and its totals
//! equal the cost headers the clients received. Skipped, saying so, when no
//! PostgreSQL server is reachable.

// Helpers of a test file fail the test by panicking, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::{Value, json};
use switchyard_e2e::double::Double;
use switchyard_e2e::nats::NatsServer;
use switchyard_e2e::postgres::TestDb;
use switchyard_e2e::process::{Proc, nats_config, write_config};
use switchyard_pricing::Usd;

async fn chat(base: &str, i: usize) -> Usd {
    let res = switchyard_e2e::http_client()
        .post(format!("{base}/v1/chat/completions"))
        .header("x-switchyard-team", if i.is_multiple_of(2) { "even" } else { "odd" })
        .json(&json!({"model": "chat", "messages": [{"role": "user", "content": format!("request {i} {}", "w ".repeat(i % 9))}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.headers()["x-switchyard-cost-usd"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn the_writer_loads_every_record_once_across_a_kill() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let nats = NatsServer::start().unwrap();
    let double = Double::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "{}\npricing:\n  models:\n    - {{ provider: openai, model: gpt-test, input: 3, output: 15 }}\nledger:\n  postgres: {{ url: \"{}\" }}\n  writer: {{ ack_wait: 2s, batch_wait: 200ms }}\n",
        nats_config(
            &nats.url(),
            &double.base_url(),
            "",
            "  - name: chat\n    routes:\n      - { provider: up, model: gpt-test }\n"
        ),
        db.url
    );
    let path = write_config(dir.path(), &yaml);
    let path = path.to_str().unwrap();
    let writer_args = ["ledger-writer", "--config", path];
    let mut writer = Proc::start(&writer_args, "ledger writer starting");
    let _worker = Proc::start(
        &["worker", "--config", path, "--provider", "up"],
        "worker serving",
    );
    let router = Proc::start(&["router", "--config", path], "router listening");
    let base = router.http();

    let mut told = Usd::ZERO;
    for i in 0..30 {
        told += chat(&base, i).await;
    }
    // Killed with batches behind it and records still arriving.
    writer.kill();
    for i in 30..60 {
        told += chat(&base, i).await;
    }
    let _writer = Proc::start(&writer_args, "ledger writer starting");
    for i in 60..90 {
        told += chat(&base, i).await;
    }

    // The router's usage API reads PostgreSQL (`ledger.postgres`).
    let usage = switchyard_e2e::eventually(Duration::from_secs(30), async || {
        let res = switchyard_e2e::http_client()
            .get(format!("{base}/admin/v1/usage?from=1h&group_by=team"))
            .send()
            .await
            .unwrap();
        let usage: Value = res.json().await.unwrap_or(Value::Null);
        let requests = usage["totals"]["requests"].as_u64();
        let total = usage["totals"]["cost_usd"]
            .as_str()
            .and_then(|c| c.parse::<Usd>().ok());
        if requests == Some(90) && total == Some(told) {
            Ok(usage)
        } else {
            Err(format!(
                "PostgreSQL has {requests:?} requests costing {total:?}; clients were told {told} over 90: {usage}"
            ))
        }
    })
    .await;
    assert_eq!(usage["rows"].as_array().unwrap().len(), 2, "{usage}");
    // Exactly once, checked in the database itself.
    let client = db.client().await;
    let row = client
        .query_one(
            "SELECT count(*), count(DISTINCT request_id) FROM switchyard_usage_records",
            &[],
        )
        .await
        .unwrap();
    let (all, distinct): (i64, i64) = (row.get(0), row.get(1));
    assert_eq!((all, distinct), (90, 90));
}
