//! `switchyard-bench --cache`: what a response-cache hit costs, end to end
//! over HTTP at concurrency 1, next to a miss and to the upstream double
//! asked directly, for each cache setup:
//!
//! - `memory`: the in-process backend (`cache.backend: memory`);
//! - `redis`: the shared backend (`cache.backend: redis`, the server at
//!   `--redis-url`);
//! - `semantic`: memory plus the semantic cache, prompts embedded by the
//!   double's bag-of-words `words` model through the gateway's own
//!   embeddings route. Its hits are near-duplicates, each a new text (so
//!   each one is embedded upstream: the honest price of a semantic hit),
//!   and its misses pay for the embedding too.
//!
//! Misses are unique prompts (nothing in common with each other, so no
//! semantic match either); hits repeat one stored prompt; a streamed hit
//! is timed to the end of the replayed SSE body.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use serde_json::{Value, json};

use super::{Gateway, eprintln_progress, field, histogram, pinned, start, summary};

/// One request, timed to the end of the body; `None` when it failed or
/// did not report the cache outcome `want` (a benchmark of hits that
/// silently measured misses would be worthless).
async fn timed(
    client: &reqwest::Client,
    url: &str,
    body: &Value,
    want: Option<&str>,
) -> Option<u64> {
    let start = Instant::now();
    let res = client.post(url).json(body).send().await.ok()?;
    if !res.status().is_success() {
        return None;
    }
    let cache = res
        .headers()
        .get("x-switchyard-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    res.bytes().await.ok()?;
    let took = start.elapsed().as_micros() as u64;
    match want {
        Some(w) if w != cache => None,
        _ => Some(took),
    }
}

fn chat(model: &str, text: &str, stream: bool) -> Value {
    json!({"model": model, "temperature": 0, "stream": stream,
           "messages": [{"role": "user", "content": text}]})
}

/// A prompt of words no other prompt of the run has.
fn unique(i: usize) -> String {
    (0..8)
        .map(|w| format!("q{i}x{w}"))
        .collect::<Vec<_>>()
        .join(" ")
}

const STORED: &str = "what is the capital of france";

/// Runs `n` requests from `make(i)` (after 20 warm-up ones), recording the
/// latency of those that came back as `want`.
async fn series(
    client: &reqwest::Client,
    url: &str,
    n: usize,
    want: Option<&str>,
    make: impl Fn(usize) -> Value,
) -> (Histogram<u64>, usize) {
    let mut h = histogram();
    let mut wrong = 0;
    for i in 0..n + 20 {
        match timed(client, url, &make(i), want).await {
            Some(us) if i >= 20 => {
                let _ = h.record(us);
            }
            Some(_) => {}
            None => wrong += usize::from(i >= 20),
        }
    }
    (h, wrong)
}

fn start_cache_gateway(
    bin: &Path,
    upstream: &str,
    setup: &str,
    redis_url: &str,
) -> Result<Gateway> {
    let dir = tempfile::tempdir()?;
    let cache = match setup {
        "memory" => "cache:\n  enabled: true\n  ttl: 10m\n".to_owned(),
        "redis" => format!(
            "cache:\n  enabled: true\n  ttl: 10m\n  backend: redis\n  redis:\n    url: {redis_url}\n    key_prefix: 'switchyard:bench:{}:'\n",
            std::process::id()
        ),
        "semantic" => "cache:\n  enabled: true\n  ttl: 10m\n  semantic:\n    enabled: true\n    embedding_model: up/words\n    threshold: 0.9\n".to_owned(),
        other => anyhow::bail!("--cache-setups: `{other}` is not memory, redis or semantic"),
    };
    // No ledger: the cache's own cost is measured, not the usage records'.
    let config = format!(
        "server:\n  http_addr: 127.0.0.1:0\n  grpc_addr: 127.0.0.1:0\nproviders:\n  - name: up\n    kind: openai\n    base_url: {upstream}\n    max_concurrency: 100000\nledger:\n  enabled: false\n{cache}"
    );
    let path = dir.path().join("bench.yaml");
    std::fs::write(&path, config)?;
    let mut s = pinned(0, &bin.join("switchyard"));
    s.args(["serve", "--config"]).arg(&path);
    let (p, line) = start(s, "router listening", false)?;
    let addr = field(&line, "http_addr").context("no http_addr in the router's log")?;
    Ok(Gateway {
        name: setup.to_owned(),
        base: format!("http://{addr}/v1"),
        procs: vec![p],
        _dir: dir,
    })
}

pub(crate) async fn run(
    client: &reqwest::Client,
    bin: &Path,
    upstream: &str,
    setups: &[String],
    redis_url: &str,
    n: usize,
) -> Result<Value> {
    eprintln_progress("cache: direct baseline");
    let direct_url = format!("{upstream}/chat/completions");
    let (direct, _) = series(client, &direct_url, n, None, |i| {
        chat("fast", &unique(i), false)
    })
    .await;
    let mut out = Vec::new();
    for setup in setups {
        let gw = start_cache_gateway(bin, upstream, setup, redis_url)?;
        let url = format!("{}/chat/completions", gw.base);
        let model = "up/fast";
        eprintln_progress(&format!("cache {setup}: misses"));
        let (miss, miss_wrong) = series(client, &url, n, Some("miss"), |i| {
            chat(model, &unique(i), false)
        })
        .await;
        // Stored once, then asked again and again.
        let _ = timed(client, &url, &chat(model, STORED, false), None).await;
        eprintln_progress(&format!("cache {setup}: hits"));
        let (hit, hit_wrong) =
            series(client, &url, n, Some("hit"), |_| chat(model, STORED, false)).await;
        eprintln_progress(&format!("cache {setup}: streamed hits"));
        let (stream_hit, stream_wrong) =
            series(client, &url, n, Some("hit"), |_| chat(model, STORED, true)).await;
        let semantic = if setup == "semantic" {
            eprintln_progress(&format!("cache {setup}: semantic hits"));
            // A new near-duplicate each time: one extra word, similarity
            // 7/sqrt(7*8) = 0.935 against the stored prompt.
            let (h, wrong) = series(client, &url, n, Some("hit"), |i| {
                chat(model, &format!("{STORED} n{i}"), false)
            })
            .await;
            json!({"latency": summary(&h), "not_hit": wrong})
        } else {
            Value::Null
        };
        out.push(json!({
            "setup": setup,
            "miss": {"latency": summary(&miss), "not_miss": miss_wrong},
            "hit": {"latency": summary(&hit), "not_hit": hit_wrong},
            "stream_hit": {"latency": summary(&stream_hit), "not_hit": stream_wrong},
            "semantic_hit": semantic,
        }));
        drop(gw);
    }
    Ok(json!({"requests": n, "direct": summary(&direct), "setups": out}))
}

pub(crate) fn print_table(r: &Value) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let setups = r["setups"].as_array().cloned().unwrap_or_default();
    writeln!(
        out,
        "| latency at c=1 (µs) | {} |",
        setups
            .iter()
            .map(|s| s["setup"].as_str().unwrap_or("").to_owned())
            .collect::<Vec<_>>()
            .join(" | ")
    )?;
    writeln!(out, "|---|{}", "---|".repeat(setups.len()))?;
    let cell = |v: &Value, q: &str| match v["latency"][format!("{q}_us")].as_u64() {
        Some(x) if v["latency"]["count"].as_u64().unwrap_or(0) > 0 => x.to_string(),
        _ => "–".to_owned(),
    };
    for q in ["p50", "p99"] {
        writeln!(
            out,
            "| upstream asked directly {q} | {} |",
            vec![r["direct"][format!("{q}_us")].to_string(); setups.len()].join(" | ")
        )?;
    }
    for (name, key) in [
        ("miss (through the gateway)", "miss"),
        ("hit", "hit"),
        ("streamed hit (whole SSE body)", "stream_hit"),
        ("semantic hit (new near-duplicate)", "semantic_hit"),
    ] {
        for q in ["p50", "p99"] {
            writeln!(
                out,
                "| {name} {q} | {} |",
                setups
                    .iter()
                    .map(|s| cell(&s[key], q))
                    .collect::<Vec<_>>()
                    .join(" | ")
            )?;
        }
    }
    Ok(())
}
