//! Cost, the usage ledger, budgets and spend alerts through real
//! `switchyard` processes: `serve` with its local ledger file, and two
//! routers + a worker over a private nats-server with the JetStream usage
//! stream. The upstream double answers with usage it derives from the
//! prompt (words), and the price of its models is set in the config, so
//! every expected figure below is worked from the usage the client saw.

// Helpers of a test file fail the test by panicking, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::routing::post;
use serde_json::{Value, json};
use switchyard_e2e::double::Double;
use switchyard_e2e::eventually;
use switchyard_e2e::nats::NatsServer;
use switchyard_e2e::process::{Proc, nats_config, write_config};
use switchyard_pricing::Usd;
use tokio::sync::Notify;

/// $2 per million input tokens, $8 per million output tokens; the cheap
/// model a tenth of that.
const PRICES: &str = r#"
pricing:
  models:
    - { provider: openai, model: gpt-test, input: 2, output: 8 }
    - { provider: openai, model: gpt-cheap, input: 0.2, output: 0.8 }
    - { provider: openai, model: cut, input: 2, output: 8 }
    - { provider: openai, model: text-embedding-test, input: 0.02 }
"#;

const MODELS: &str = "  - name: chat\n    routes:\n      - { provider: up, model: gpt-test }\n  - name: cheap\n    routes:\n      - { provider: up, model: gpt-cheap }\n  - name: cutoff\n    routes:\n      - { provider: up, model: cut }\n  - name: emb\n    routes:\n      - { provider: up, model: text-embedding-test }\n";

/// What `usage` costs at the test prices of `model`, worked by hand:
/// tokens × dollars per million.
fn expected_cost(model: &str, usage: &Value) -> Usd {
    let (input, output) = match model {
        "gpt-test" => (2_000_000, 8_000_000),
        "gpt-cheap" => (200_000, 800_000),
        other => panic!("no test price for {other}"),
    };
    let p = usage["prompt_tokens"].as_i64().unwrap();
    let c = usage["completion_tokens"].as_i64().unwrap();
    // Picodollars per token = dollars per million × 10^6.
    Usd::from_pico(p * input + c * output)
}

fn serve_config(double: &Double, extra: &str) -> String {
    format!(
        r#"
server:
  http_addr: 127.0.0.1:0
  grpc_addr: 127.0.0.1:0
  shutdown_delay: 0s
providers:
  - name: up
    kind: openai
    base_url: {base}
    timeout: 5s
models:
{MODELS}
{PRICES}
{extra}"#,
        base = double.base_url()
    )
}

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn cost(&self) -> Usd {
        self.header("x-switchyard-cost-usd")
            .unwrap_or_else(|| panic!("no cost header: {:?} {}", self.headers, self.body))
            .parse()
            .unwrap()
    }
}

async fn chat(base: &str, model: &str, text: &str, headers: &[(&str, &str)]) -> Answer {
    let mut req = switchyard_e2e::http_client()
        .post(format!("{base}/v1/chat/completions"))
        .json(&json!({"model": model, "messages": [{"role": "user", "content": text}]}));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let body = res.json().await.unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        body,
    }
}

async fn admin(base: &str, path: &str) -> Value {
    let res = switchyard_e2e::http_client()
        .get(format!("{base}/admin/v1/{path}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{path}");
    res.json().await.unwrap()
}

#[tokio::test]
async fn cost_is_reported_in_the_header_the_body_and_the_stream() {
    let double = Double::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &serve_config(&double, ""));
    let proc = Proc::start(
        &["serve", "--config", path.to_str().unwrap()],
        "router listening",
    );
    let base = proc.http();

    let a = chat(&base, "chat", "one two three four five", &[]).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let usage = &a.body["usage"];
    let expected = expected_cost("gpt-test", usage);
    assert!(!expected.is_zero());
    assert_eq!(a.cost(), expected);
    // OpenRouter's shape: `usage.cost` in dollars (a float).
    let body_cost = usage["cost"].as_f64().unwrap();
    assert!((body_cost - expected.as_f64()).abs() < 1e-12, "{usage}");

    // Streamed, with include_usage: the usage chunk carries the cost.
    let res = switchyard_e2e::http_client()
        .post(format!("{base}/v1/chat/completions"))
        .json(
            &json!({"model": "chat", "stream": true, "stream_options": {"include_usage": true},
                      "messages": [{"role": "user", "content": "six seven eight"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap();
    let last = text
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter(|e| *e != "[DONE]")
        .last()
        .unwrap();
    let chunk: Value = serde_json::from_str(last).unwrap();
    let usage = &chunk["usage"];
    let expected = expected_cost("gpt-test", usage);
    assert!(
        (usage["cost"].as_f64().unwrap() - expected.as_f64()).abs() < 1e-12,
        "{chunk}"
    );
    assert!(usage.get("cost_estimated").is_none(), "{chunk}");

    // Embeddings are priced too: input tokens only, $0.02 per million.
    let res = switchyard_e2e::http_client()
        .post(format!("{base}/v1/embeddings"))
        .json(&json!({"model": "emb", "input": ["one two", "three"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let cost: Usd = res.headers()["x-switchyard-cost-usd"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body: Value = res.json().await.unwrap();
    let tokens = body["usage"]["prompt_tokens"].as_i64().unwrap();
    assert!(tokens > 0);
    assert_eq!(cost, Usd::from_pico(tokens * 20_000));

    // gRPC: exact picodollars on the usage message.
    use switchyard_proto::gateway::v1::gateway_service_client::GatewayServiceClient;
    use switchyard_proto::gateway::v1::{
        ChatRequest, ChatSpec, ContentPart, Message, Role, content_part,
    };
    let endpoint = format!("http://{}", proc.grpc_addr.unwrap());
    let mut client = GatewayServiceClient::connect(endpoint).await.unwrap();
    let spec = ChatSpec {
        model: "chat".into(),
        messages: vec![Message {
            role: Role::User as i32,
            content: vec![ContentPart {
                part: Some(content_part::Part::Text("over grpc please".into())),
                extra: None,
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let answer = client
        .chat(ChatRequest { spec: Some(spec) })
        .await
        .unwrap()
        .into_inner();
    let u = answer.result.unwrap().usage.unwrap();
    assert!(u.cost_known && !u.cost_estimated);
    let usage = json!({"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens});
    assert_eq!(u.cost_picodollars, expected_cost("gpt-test", &usage).pico());
}

#[tokio::test]
async fn a_stream_cut_off_before_usage_is_billed_from_an_estimate() {
    let double = Double::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &serve_config(&double, ""));
    let proc = Proc::start(
        &["serve", "--config", path.to_str().unwrap()],
        "router listening",
    );
    let base = proc.http();
    let res = switchyard_e2e::http_client()
        .post(format!("{base}/v1/chat/completions"))
        .json(&json!({"model": "cutoff", "stream": true, "stream_options": {"include_usage": true},
                      "messages": [{"role": "user", "content": "a prompt that is cut off halfway"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // The upstream breaks the stream: the client gets an error event.
    let _ = res.text().await;
    let record = eventually(Duration::from_secs(20), async || {
        let records = admin(&base, "usage/records?from=1h&model=cutoff").await;
        match records["records"].as_array().and_then(|r| r.first()) {
            Some(r) => Ok(r.clone()),
            None => Err(format!("no record: {records}")),
        }
    })
    .await;
    assert_eq!(record["estimated"], true, "{record}");
    assert_ne!(record["outcome"], "ok", "{record}");
    // The prompt's tokens by the tokenizer (at least its 7 words), the
    // completion's from the deltas that passed, at the configured prices.
    let input = record["input_tokens"].as_i64().unwrap();
    let output = record["output_tokens"].as_i64().unwrap();
    assert!(input >= 7, "{record}");
    let cost: Usd = record["cost"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        cost,
        Usd::from_pico(input * 2_000_000 + output * 8_000_000),
        "{record}"
    );
}

/// Sends `n` chats, 8 at a time, each with its own prompt; returns the
/// cost header of every 200 and how many failed (refused while the gateway
/// shut down).
async fn load(base: &str, n: usize, tag: &str, on_half: Option<Arc<Notify>>) -> (Vec<Usd>, usize) {
    use futures_util::StreamExt;
    let answers: Vec<Option<Usd>> = futures_util::stream::iter(0..n)
        .map(|i| {
            let base = base.to_owned();
            let tag = tag.to_owned();
            let on_half = on_half.clone();
            async move {
                let words = "word ".repeat(1 + i % 17);
                let res = switchyard_e2e::http_client()
                    .post(format!("{base}/v1/chat/completions"))
                    .header("x-switchyard-team", "load")
                    .json(&json!({"model": "chat", "messages": [{"role": "user", "content": format!("{tag} {i} {words}")}]}))
                    .send()
                    .await;
                if i == n / 2
                    && let Some(n) = on_half
                {
                    n.notify_one();
                }
                let res = res.ok()?;
                if res.status() != 200 {
                    return None;
                }
                let cost = res.headers().get("x-switchyard-cost-usd")?.to_str().ok()?.parse().ok();
                // The whole body must arrive for the answer to count.
                res.bytes().await.ok()?;
                cost
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let failed = answers.iter().filter(|a| a.is_none()).count();
    (answers.into_iter().flatten().collect(), failed)
}

#[tokio::test]
async fn ledger_totals_equal_the_cost_headers_across_a_restart_under_load() {
    let double = Double::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("usage.db");
    let extra = format!("ledger:\n  path: {}\n", ledger.display());
    let path = write_config(dir.path(), &serve_config(&double, &extra));
    let path = path.to_str().unwrap().to_owned();

    let mut first = Proc::start(&["serve", "--config", &path], "router listening");
    let base = first.http();
    // SIGTERM lands while requests are in flight: they are drained and
    // recorded, later ones are refused (and cost nothing).
    let half = Arc::new(Notify::new());
    let loader = {
        let base = base.clone();
        let half = half.clone();
        tokio::spawn(async move { load(&base, 200, "first", Some(half)).await })
    };
    half.notified().await;
    let status = tokio::task::spawn_blocking(move || first.terminate())
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");
    let (mut costs, _refused) = loader.await.unwrap();
    assert!(
        costs.len() >= 90,
        "only {} answered before shutdown",
        costs.len()
    );

    let second = Proc::start(&["serve", "--config", &path], "router listening");
    let base = second.http();
    let (more, failed) = load(&base, 50, "second", None).await;
    assert_eq!(failed, 0);
    costs.extend(more);
    let told: Usd = costs.iter().copied().sum();

    // Records are written off the request path; poll until all arrived.
    let usage = eventually(Duration::from_secs(20), async || {
        let usage = admin(&base, "usage?from=1h&group_by=team").await;
        let total: Usd = usage["totals"]["cost_usd"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let ok = usage["totals"]["requests"].as_u64().unwrap()
            - usage["totals"]["errors"].as_u64().unwrap();
        if total == told && ok as usize == costs.len() {
            Ok(usage)
        } else {
            Err(format!(
                "ledger says {total} over {ok} answered requests, clients were told {told} over {}",
                costs.len()
            ))
        }
    })
    .await;
    assert_eq!(usage["rows"][0]["team"], "load", "{usage}");
}

/// Two routers and a worker over NATS, with budgets on team `t1`.
struct Cluster {
    _dir: tempfile::TempDir,
    routers: Vec<Proc>,
    _worker: Proc,
}

fn cluster(nats: &NatsServer, double: &Double, budgets: &str, alerts: &str) -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "{}\n{PRICES}\n{budgets}\n{alerts}\n",
        nats_config(&nats.url(), &double.base_url(), "", MODELS)
    );
    let path = write_config(dir.path(), &yaml);
    let path = path.to_str().unwrap();
    let worker = Proc::start(
        &["worker", "--config", path, "--provider", "up"],
        "worker serving",
    );
    let routers = (0..2)
        .map(|i| {
            Proc::start_with_env(
                &["router", "--config", path],
                "router listening",
                &[("HOSTNAME", &format!("router-{i}"))],
            )
        })
        .collect();
    Cluster {
        _dir: dir,
        routers,
        _worker: worker,
    }
}

#[tokio::test]
async fn a_team_budget_holds_across_two_routers() {
    let nats = NatsServer::start().unwrap();
    let double = Double::start().await.unwrap();
    // Each request below costs 4 input + 5 output tokens (the double
    // counts words) at $2/$8 per million = 8 + 40 = 48 microdollars;
    // $0.0002 is spent by the fifth.
    let budgets = "budgets:\n  limits:\n    - { name: t1-daily, scope: { team: t1 }, window: daily, limit_usd: 0.0002, action: reject }\n";
    let c = cluster(&nats, &double, budgets, "");
    let bases: Vec<String> = c.routers.iter().map(Proc::http).collect();
    let team = [("x-switchyard-team", "t1")];

    let mut spent = Usd::ZERO;
    let mut served = 0;
    let mut refused = None;
    for i in 0..20 {
        // Alternate routers: each must see the other's spend.
        let a = chat(&bases[i % 2], "chat", "alpha beta gamma delta", &team).await;
        match a.status {
            200 => {
                spent += a.cost();
                served += 1;
            }
            429 => {
                refused = Some(a);
                break;
            }
            s => panic!("unexpected {s}: {}", a.body),
        }
        // The other router learns of this request's cost over NATS; wait
        // until its budget view has it (explicit condition, bounded).
        wait_for_spend(&bases[(i + 1) % 2], "t1-daily", spent).await;
    }
    let refused = refused.expect("the budget never refused");
    assert_eq!(
        refused.body["error"]["code"], "budget_exceeded",
        "{}",
        refused.body
    );
    let message = refused.body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("t1-daily") && message.contains("resets at"),
        "{message}"
    );
    assert!(refused.header("retry-after").is_some());
    let limit: Usd = "0.0002".parse().unwrap();
    // Sequential requests: the spend stops at the first request past the limit.
    assert!(spent >= limit, "{spent}");
    let each = Usd::from_pico(48_000_000);
    assert!(
        spent - limit < each,
        "{spent} overshoots by more than one request"
    );
    assert_eq!(served, 5);
    // Both routers refuse now; another team is not affected.
    for base in &bases {
        assert_eq!(chat(base, "chat", "more", &team).await.status, 429);
        assert_eq!(
            chat(base, "chat", "more", &[("x-switchyard-team", "t2")])
                .await
                .status,
            200
        );
    }
}

/// Polls the router's `/admin/v1/budgets` until budget `name` shows at
/// least `spent`.
async fn wait_for_spend(base: &str, name: &str, spent: Usd) {
    eventually(Duration::from_secs(5), async || {
        let status = admin(base, "budgets").await;
        let seen: Usd = status["budgets"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| b["name"] == name)
            .filter_map(|b| b["spent"].as_str()?.parse().ok())
            .max()
            .unwrap_or(Usd::ZERO);
        if seen >= spent {
            Ok(())
        } else {
            Err(format!(
                "{base} saw {seen} of budget {name}, {spent} was spent: {status}"
            ))
        }
    })
    .await;
}

#[tokio::test]
async fn a_downgrade_budget_sends_the_rest_to_the_cheaper_model() {
    let nats = NatsServer::start().unwrap();
    let double = Double::start().await.unwrap();
    let budgets = "budgets:\n  limits:\n    - { name: t1-soft, scope: { team: t1 }, window: monthly, limit_usd: 0.00009, action: { downgrade: cheap } }\n";
    let c = cluster(&nats, &double, budgets, "");
    let bases: Vec<String> = c.routers.iter().map(Proc::http).collect();
    let team = [("x-switchyard-team", "t1")];
    let mut spent = Usd::ZERO;
    for i in 0..2 {
        let a = chat(&bases[i % 2], "chat", "alpha beta gamma delta", &team).await;
        assert_eq!(a.status, 200);
        assert_eq!(a.header("x-switchyard-model"), Some("gpt-test"));
        spent += a.cost();
        wait_for_spend(&bases[(i + 1) % 2], "t1-soft", spent).await;
    }
    for base in &bases {
        let a = chat(base, "chat", "alpha beta gamma delta", &team).await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(a.header("x-switchyard-model"), Some("gpt-cheap"));
        assert_eq!(
            a.header("x-switchyard-budget"),
            Some("downgraded; budget=t1-soft; from=chat; to=cheap")
        );
        assert_eq!(a.cost(), expected_cost("gpt-cheap", &a.body["usage"]));
    }
}

#[derive(Clone, Default)]
struct Receiver {
    bodies: Arc<Mutex<Vec<Value>>>,
    arrived: Arc<Notify>,
}

async fn receive(State(r): State<Receiver>, body: axum::Json<Value>) -> &'static str {
    r.bodies.lock().unwrap().push(body.0);
    r.arrived.notify_waiters();
    "ok"
}

#[tokio::test]
async fn a_spend_spike_alert_reaches_the_webhook_exactly_once() {
    let receiver = Receiver::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/hook", post(receive))
        .with_state(receiver.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let double = Double::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Spend above $0.0001 within an hour, per team: the second request
    // crosses it; the following ones are in the same window.
    let alerts = format!(
        "alerts:\n  webhook: {{ url: \"{hook}\", headers: {{ authorization: Bearer hook-secret }} }}\n  spikes:\n    - {{ name: team-burst, scope: {{ team: \"*\" }}, window: 1h, threshold_usd: 0.0001 }}\n"
    );
    let path = write_config(dir.path(), &serve_config(&double, &alerts));
    let mut proc = Proc::start(
        &["serve", "--config", path.to_str().unwrap()],
        "router listening",
    );
    let base = proc.http();
    let arrived = receiver.arrived.notified();
    tokio::pin!(arrived);
    arrived.as_mut().enable();
    for _ in 0..6 {
        let a = chat(
            &base,
            "chat",
            "alpha beta gamma delta",
            &[("x-switchyard-team", "t9")],
        )
        .await;
        assert_eq!(a.status, 200);
    }
    tokio::time::timeout(Duration::from_secs(20), arrived)
        .await
        .expect("no alert arrived");
    // Shutdown drains pending deliveries: after it, nothing more can come.
    let status = tokio::task::spawn_blocking(move || proc.terminate())
        .await
        .unwrap();
    assert!(status.success());
    let bodies = receiver.bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    let alert = &bodies[0];
    assert_eq!(alert["kind"], "spend_spike", "{alert}");
    assert_eq!(alert["rule"], "team-burst", "{alert}");
    assert_eq!(alert["value"], "t9", "{alert}");
}

#[tokio::test]
async fn usage_cli_exports_csv_and_pricing_show_explains() {
    let double = Double::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &serve_config(&double, ""));
    let proc = Proc::start(
        &["serve", "--config", path.to_str().unwrap()],
        "router listening",
    );
    let base = proc.http();
    let mut told = Usd::ZERO;
    for (team, text) in [("red", "a b c"), ("blue", "d e"), ("red", "f, \"g\"")] {
        let a = chat(&base, "chat", text, &[("x-switchyard-team", team)]).await;
        assert_eq!(a.status, 200);
        told += a.cost();
    }
    let bin = switchyard_e2e::process::switchyard_bin();
    let csv = eventually(Duration::from_secs(20), async || {
        let out = std::process::Command::new(&bin)
            .args([
                "usage",
                "--url",
                &base,
                "--group-by",
                "team",
                "--since",
                "1h",
                "--format",
                "csv",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let csv = String::from_utf8(out.stdout).unwrap();
        // Every request recorded, not only one per team: the writer
        // commits in batches of whatever has arrived.
        let requests: u64 = csv
            .lines()
            .skip(1)
            .filter_map(|l| l.split(',').nth(1)?.parse::<u64>().ok())
            .sum();
        if requests == 3 { Ok(csv) } else { Err(csv) }
    })
    .await;
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    assert_eq!(header[0], "team", "{csv}");
    let cost_col = header.iter().position(|h| *h == "cost_usd").unwrap();
    let sum: Usd = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(cost_col).unwrap().parse::<Usd>().unwrap())
        .sum();
    assert_eq!(sum, told, "{csv}");

    let out = std::process::Command::new(&bin)
        .args([
            "pricing",
            "show",
            "gpt-test",
            "--config",
            path.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("gpt-test") && text.contains('2') && text.contains('8'),
        "{text}"
    );
    let out = std::process::Command::new(&bin)
        .args(["pricing", "show", "no-such-model-anywhere"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
