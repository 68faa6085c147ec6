//! The audit trail end to end: `switchyard serve` with its local ledger,
//! a few requests (answered, refused for an unknown model, one whose
//! e-mail address a guardrail redacts), then `switchyard audit export` in
//! JSON lines and CSV, in pages small enough that the export follows the
//! cursor. Every request must be there once, with what the client was
//! told: its model, outcome, tokens, cost, and the address it came from.

// Helpers of a test file fail the test by panicking, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use switchyard_e2e::auth::{bearer, cli, create_key};
use switchyard_e2e::double::Double;
use switchyard_e2e::eventually;
use switchyard_e2e::process::{Serve, serve, serve_config};
use switchyard_pricing::Usd;

fn start(double: &Double) -> Serve {
    serve(&serve_config(
        &double.base_url(),
        r#"pricing:
  models:
    - { provider: openai, model: gpt-test, input: 2, output: 8 }
guardrails:
  rules:
    - { detector: email, action: redact }
"#,
    ))
}

/// What the client saw of one request.
#[derive(Debug)]
struct Sent {
    request_id: String,
    model: &'static str,
    status: u16,
    /// The cost header (absent on a refusal).
    cost: Option<Usd>,
    prompt_tokens: u64,
    completion_tokens: u64,
}

async fn chat(base: &str, model: &'static str, text: &str) -> Sent {
    let res = switchyard_e2e::http_client()
        .post(format!("{base}/v1/chat/completions"))
        .json(&json!({"model": model, "messages": [{"role": "user", "content": text}]}))
        .send()
        .await
        .unwrap();
    let header = |name: &str| {
        res.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let request_id = header("x-request-id").expect("every answer names its request");
    let cost = header("x-switchyard-cost-usd").map(|c| c.parse().unwrap());
    let status = res.status().as_u16();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    Sent {
        request_id,
        model,
        status,
        cost,
        prompt_tokens: body["usage"]["prompt_tokens"].as_u64().unwrap_or(0),
        completion_tokens: body["usage"]["completion_tokens"].as_u64().unwrap_or(0),
    }
}

/// `switchyard audit export ARGS` (the last hour unless ARGS say
/// otherwise) against the gateway, its stdout. A
/// failing export fails the test at once: records not committed yet are a
/// shorter export, not an error.
fn export(base: &str, args: &[&str]) -> String {
    let mut all = vec!["audit", "export"];
    all.extend_from_slice(args);
    if !args.contains(&"--since") {
        all.extend_from_slice(&["--since", "1h"]);
    }
    cli(base, &all)
}

/// Checks one exported record (JSON, or a CSV row as strings) against
/// what its client saw.
fn check(sent: &Sent, field: impl Fn(&str) -> String) {
    let id = &sent.request_id;
    assert_eq!(field("model"), sent.model, "{id}");
    // The address the test connected from; no auth configured: anonymous.
    assert_eq!(field("client_addr"), "127.0.0.1", "{id}");
    assert_eq!(field("credential"), "", "{id}");
    if sent.status == 200 {
        assert_eq!(field("outcome"), "ok", "{id}");
        assert_eq!(field("provider"), "up", "{id}");
        assert_eq!(field("served_model"), "gpt-test", "{id}");
        assert_eq!(
            field("input_tokens").parse::<u64>().unwrap(),
            sent.prompt_tokens,
            "{id}"
        );
        assert_eq!(
            field("output_tokens").parse::<u64>().unwrap(),
            sent.completion_tokens,
            "{id}"
        );
        assert!(sent.prompt_tokens > 0, "{sent:?}");
        let cost: Usd = field("cost").parse().unwrap();
        assert_eq!(
            Some(cost),
            sent.cost,
            "{id}: the ledger says what the client was told"
        );
        assert!(cost > Usd::ZERO, "{id}");
    } else {
        assert_eq!(sent.status, 404, "{sent:?}");
        assert_eq!(field("outcome"), "model_not_found", "{id}");
        assert_eq!(field("provider"), "", "{id}");
        assert_eq!(field("input_tokens"), "0", "{id}");
        assert_eq!(field("cost").parse::<Usd>().unwrap(), Usd::ZERO, "{id}");
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[tokio::test]
async fn every_request_is_in_the_exported_audit_trail() {
    let double = Double::start().await.unwrap();
    let gw = start(&double);
    let base = gw.proc.http();
    let mut sent = vec![
        chat(&base, "chat", "one two three").await,
        chat(&base, "no-such-model", "four five").await,
        chat(&base, "chat", "write to ada@example.com today").await,
        chat(&base, "chat", "six").await,
    ];
    assert_eq!(
        sent.iter().map(|s| s.status).collect::<Vec<_>>(),
        [200, 404, 200, 200],
        "{sent:?}"
    );

    // Pages of 3: the export follows the cursor once. The ledger commits
    // in batches off the request path, so wait for all four.
    let jsonl = eventually(Duration::from_secs(20), async || {
        let out = export(&base, &["--format", "jsonl", "--page-size", "3"]);
        if out.lines().count() == sent.len() {
            Ok(out)
        } else {
            Err(format!("not every request exported yet:\n{out}"))
        }
    })
    .await;
    let records: Vec<Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Oldest first: the order the requests were made in (one at a time).
    let ids: Vec<&str> = records
        .iter()
        .map(|r| r["request_id"].as_str().unwrap())
        .collect();
    let want: Vec<&str> = sent.iter().map(|s| s.request_id.as_str()).collect();
    assert_eq!(ids, want, "{jsonl}");
    for (s, r) in sent.iter().zip(&records) {
        check(s, |name| text(&r[name]));
    }
    // The redacted e-mail address is an action on its request only, and
    // the address itself is nowhere in the trail.
    let actions: Vec<Vec<&str>> = records
        .iter()
        .map(|r| {
            r["guardrails"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap())
                .collect()
        })
        .collect();
    assert!(actions[0].is_empty() && actions[1].is_empty() && actions[3].is_empty());
    assert_eq!(actions[2].len(), 1, "{actions:?}");
    assert!(
        actions[2][0].starts_with("redact:") && actions[2][0].contains("email"),
        "{actions:?}"
    );
    assert!(!jsonl.contains("ada@example.com"), "{jsonl}");

    // CSV, into a file: one header however many pages, the same records.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.csv");
    let out = export(
        &base,
        &[
            "--format",
            "csv",
            "--page-size",
            "1",
            "--output",
            file.to_str().unwrap(),
        ],
    );
    assert!(out.is_empty(), "{out}");
    let csv = std::fs::read_to_string(&file).unwrap();
    assert!(!dir.path().join("audit.csv.partial").exists());
    let mut lines = csv.split("\r\n");
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(header[0], "request_id", "{csv}");
    assert_eq!(
        header[header.len() - 4..],
        ["client_addr", "credential", "guardrails", "payload"],
        "{csv}"
    );
    // No field here holds a comma or a line break: plain splitting works.
    let rows: Vec<BTreeMap<&str, &str>> = lines
        .filter(|l| !l.is_empty())
        .map(|l| header.iter().copied().zip(l.split(',')).collect())
        .collect();
    assert_eq!(rows.len(), sent.len(), "{csv}");
    assert_eq!(rows[2]["guardrails"], actions[2][0], "{csv}");
    for (s, row) in sent.iter().zip(&rows) {
        assert_eq!(row["request_id"], s.request_id);
        let cost = |name: &str| match name {
            "cost" => row["cost_usd"].to_owned(),
            _ => row[name].to_owned(),
        };
        check(s, cost);
    }

    // Filters: by outcome, and by model.
    let ok = export(&base, &["--outcome", "ok"]);
    assert_eq!(ok.lines().count(), 3, "{ok}");
    let refused = export(&base, &["--model", "no-such-model"]);
    assert_eq!(refused.lines().count(), 1, "{refused}");
    assert!(refused.contains(&sent[1].request_id), "{refused}");
    // A range that ended before the requests holds none of them.
    let none = export(&base, &["--since", "2h", "--until", "1h"]);
    assert!(none.is_empty(), "{none}");

    // The API itself: JSON lines, a cursor while more remain, none after.
    let client = switchyard_e2e::http_client();
    let page = |after: Option<String>| {
        let client = client.clone();
        let base = base.clone();
        async move {
            // A cursor is digits, `.` and hex: nothing to escape.
            let after = after.map_or(String::new(), |a| format!("&after={a}"));
            let res = client
                .get(format!("{base}/admin/v1/audit?from=1h&limit=2{after}"))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200);
            assert_eq!(
                res.headers()["content-type"].to_str().unwrap(),
                "application/x-ndjson"
            );
            let next = res
                .headers()
                .get("x-switchyard-next-cursor")
                .map(|v| v.to_str().unwrap().to_owned());
            (res.text().await.unwrap(), next)
        }
    };
    let (first, next) = page(None).await;
    assert_eq!(first.lines().count(), 2, "{first}");
    let (second, last) = page(next.clone()).await;
    assert_eq!(second.lines().count(), 2, "{second}");
    assert_eq!(last, None, "four records in pages of two: two pages");
    assert_eq!(format!("{first}{second}"), jsonl);
    let res = client
        .get(format!("{base}/admin/v1/audit?after=not-a-cursor"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["param"], "after", "{body}");

    // Later requests are appended; what was exported is unchanged.
    sent.push(chat(&base, "chat", "seven eight").await);
    let more = eventually(Duration::from_secs(20), async || {
        let out = export(&base, &[]);
        if out.lines().count() == sent.len() {
            Ok(out)
        } else {
            Err(out)
        }
    })
    .await;
    assert!(more.starts_with(&jsonl), "{more}");
}

/// Records of keyed requests name the key (its id, never the secret) and
/// how the caller authenticated; `--key` and `--team` pick them out; a
/// request refused for a forged key is in the trail too (who tried, from
/// where), without the key.
#[tokio::test]
async fn keyed_requests_name_their_key_and_are_filtered_by_it() {
    let double = Double::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.db");
    let gw = serve(&serve_config(
        &double.base_url(),
        &format!(
            r#"auth:
  keys: {{ store: local, path: {keys} }}
"#,
            keys = keys.display()
        ),
    ));
    let base = gw.proc.http();
    let client = switchyard_e2e::http_client();
    let red = create_key(&base, json!({"name": "red-bot", "team": "red"})).await;
    let blue = create_key(&base, json!({"name": "blue-bot", "team": "blue"})).await;
    let ask = async |key: &str| {
        let res = client
            .post(format!("{base}/v1/chat/completions"))
            .bearer_auth(key)
            .json(&json!({"model": "chat", "messages": [{"role": "user", "content": "hi there"}]}))
            .send()
            .await
            .unwrap();
        let id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
        (res.status().as_u16(), id)
    };
    let (status, red_id) = ask(red["key"].as_str().unwrap()).await;
    assert_eq!(status, 200);
    let (status, blue_id) = ask(blue["key"].as_str().unwrap()).await;
    assert_eq!(status, 200);
    let (status, forged_id) = ask("sk-sy-forged").await;
    assert_eq!(status, 401);

    let all = eventually(Duration::from_secs(20), async || {
        let out = export(&base, &[]);
        if out.lines().count() == 3 {
            Ok(out)
        } else {
            Err(format!(
                "expected the two keyed requests and the refused one:\n{out}"
            ))
        }
    })
    .await;
    assert!(!all.contains("sk-sy-"), "a secret in the trail: {all}");
    let refused: Value = all
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|r| r["request_id"] == forged_id.as_str())
        .expect("the refused request is in the trail");
    assert_eq!(refused["outcome"], "invalid_api_key", "{refused}");
    assert_eq!(refused["client_addr"], "127.0.0.1", "{refused}");
    assert!(refused["key"].is_null(), "{refused}");
    assert!(refused["credential"].is_null(), "{refused}");

    let red_only = export(&base, &["--key", red["id"].as_str().unwrap()]);
    let records: Vec<Value> = red_only
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 1, "{red_only}");
    let r = &records[0];
    assert_eq!(r["request_id"], red_id.as_str(), "{r}");
    // Usage is kept under `key:<id>`; `--key` takes the bare id too.
    assert_eq!(
        r["key"].as_str().unwrap(),
        format!("key:{}", red["id"].as_str().unwrap()),
        "{r}"
    );
    assert_eq!(r["team"], "red", "{r}");
    assert_eq!(r["credential"], "key", "{r}");
    assert_eq!(r["client_addr"], "127.0.0.1", "{r}");

    let blue_only = export(&base, &["--team", "blue", "--format", "csv"]);
    assert_eq!(blue_only.lines().count(), 2, "{blue_only}");
    assert!(blue_only.contains(&blue_id), "{blue_only}");
}

/// A key with `capture_payloads` leaves its prompts and answers in the
/// trail, as the upstream and the client saw them: after the guardrail
/// redacted the e-mail address, which is nowhere in the trail. Unary and
/// streamed alike; a key without capture leaves none.
#[tokio::test]
async fn captured_payloads_are_exported_redacted() {
    let double = Double::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.db");
    let gw = serve(&serve_config(
        &double.base_url(),
        &format!(
            r#"guardrails:
  rules:
    - {{ detector: email, action: redact }}
auth:
  keys: {{ store: local, path: {keys} }}
"#,
            keys = keys.display()
        ),
    ));
    let base = gw.proc.http();
    let client = switchyard_e2e::http_client();
    let captured = create_key(&base, json!({"name": "audited", "capture_payloads": true})).await;
    assert_eq!(captured["capture_payloads"], true, "{captured}");
    let plain = create_key(&base, json!({"name": "plain"})).await;
    assert!(plain.get("capture_payloads").is_none(), "{plain}");
    // The CLI's flag makes the same key.
    let made: Value = serde_json::from_str(&cli(
        &base,
        &[
            "keys",
            "create",
            "--name",
            "cli-audited",
            "--capture-payloads",
            "--json",
        ],
    ))
    .unwrap();
    assert_eq!(made["capture_payloads"], true, "{made}");

    let prompt = "mail ada@example.com the report";
    let ask = async |key: &str, stream: bool| {
        let res = client
            .post(format!("{base}/v1/chat/completions"))
            .header("authorization", bearer(key))
            .json(&json!({
                "model": "chat",
                "stream": stream,
                "messages": [
                    {"role": "system", "content": "be brief"},
                    {"role": "user", "content": prompt},
                ],
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
        (id, res.text().await.unwrap())
    };
    let key = captured["key"].as_str().unwrap();
    let (unary_id, unary_body) = ask(key, false).await;
    let (stream_id, stream_body) = ask(key, true).await;
    let (cli_id, _) = ask(made["key"].as_str().unwrap(), false).await;
    let (plain_id, _) = ask(plain["key"].as_str().unwrap(), false).await;

    // What the client got: the double echoes the prompt it was sent.
    let answer: Value = serde_json::from_str(&unary_body).unwrap();
    let said = answer["choices"][0]["message"]["content"].as_str().unwrap();
    assert_eq!(said, "echo: mail [REDACTED:email] the report");
    let streamed: String = stream_body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .filter_map(|d| {
            let v: Value = serde_json::from_str(d).unwrap();
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(streamed, said);

    let jsonl = eventually(Duration::from_secs(20), async || {
        let out = export(&base, &[]);
        if out.lines().count() == 4 {
            Ok(out)
        } else {
            Err(format!("expected four requests:\n{out}"))
        }
    })
    .await;
    assert!(!jsonl.contains("ada@example.com"), "{jsonl}");
    let records: BTreeMap<String, Value> = jsonl
        .lines()
        .map(|l| {
            let r: Value = serde_json::from_str(l).unwrap();
            (r["request_id"].as_str().unwrap().to_owned(), r)
        })
        .collect();
    let request = json!([
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "mail [REDACTED:email] the report"},
    ]);
    for id in [&unary_id, &stream_id, &cli_id] {
        let r = &records[id.as_str()];
        assert_eq!(r["payload"]["request"], request, "{r}");
        assert_eq!(
            r["payload"]["response"],
            json!([{"role": "assistant", "content": said}]),
            "{r}"
        );
        assert!(r["payload"].get("truncated").is_none(), "{r}");
        assert!(
            r["guardrails"][0].as_str().unwrap().starts_with("redact:"),
            "{r}"
        );
    }
    let r = &records[plain_id.as_str()];
    assert!(r.get("payload").is_none(), "no capture, no payload: {r}");

    // CSV: the payload's JSON in the last column, empty without one.
    let csv = export(&base, &["--format", "csv"]);
    assert!(!csv.contains("ada@example.com"), "{csv}");
    let header = csv.split("\r\n").next().unwrap();
    assert!(header.ends_with(",guardrails,payload"), "{header}");
    let quoted = records[unary_id.as_str()]["payload"]
        .to_string()
        .replace('"', "\"\"");
    assert!(csv.contains(&format!(",\"{quoted}\"\r\n")), "{csv}");
    let plain_row = csv
        .split("\r\n")
        .find(|l| l.starts_with(plain_id.as_str()))
        .unwrap();
    assert!(plain_row.ends_with(','), "{plain_row}");
}
