//! `switchyard-bench`: what the gateway adds on top of the upstream.
//!
//! One run starts the OpenAI upstream double (pinned to its own core when
//! the machine has two), then for each mode (`serve`: in-process bus;
//! `nats`: router + worker + nats-server) starts the gateway pinned to the
//! other core, and measures the same scenarios against the gateway and
//! against the upstream directly, in the same run:
//!
//! - latency at concurrency 1 (closed loop);
//! - latency at fixed request rates, open loop: each request is due at its
//!   scheduled time and its latency counts from then, so a slow response
//!   delays nothing and hides nothing (no coordinated omission);
//! - maximum throughput (closed loop, many connections), CPU time per 1,000
//!   requests and RSS under that load;
//! - throughput sustained with a 20 ms upstream (p99 under 1 s, errors under
//!   0.1%);
//! - streams of 64 deltas paced 20 ms apart: time to first token, delay
//!   between deltas, the highest concurrency at which no stream stalls,
//!   and RSS with many streams open.
//!
//! It prints a table and writes JSON (`--out`). See docs/benchmarks.md.
//!
//! `--cache` measures the response cache instead: hit, miss and semantic
//! hit latency per cache setup (see `cache.rs`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use serde_json::{Value, json};

mod cache;

#[derive(Parser)]
#[command(about = "Measure the latency, throughput and memory the gateway adds over its upstream")]
struct Args {
    /// Where `switchyard` and `upstream-double` are (a release build).
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    /// Modes to measure.
    #[arg(long, value_delimiter = ',', default_value = "serve,nats")]
    modes: Vec<String>,
    /// Seconds per fixed-rate and throughput step.
    #[arg(long, default_value_t = 5)]
    step_secs: u64,
    /// Requests for the concurrency-1 latency run.
    #[arg(long, default_value_t = 2000)]
    c1_requests: usize,
    /// Streams run one after another for time to first token and the
    /// per-delta delay (64 deltas each).
    #[arg(long, default_value_t = 8)]
    stream_runs: usize,
    /// Open streams for the memory measurement.
    #[arg(long, default_value_t = 10_000)]
    open_streams: usize,
    /// Export traces and metrics from the gateway to this OTLP endpoint
    /// (`dead` = a closed local port: what a collector outage costs).
    #[arg(long)]
    otlp: Option<String>,
    /// `on`: the usage ledger (local file for serve, JetStream over NATS)
    /// and two budgets, as a deployment with spend tracking runs; `off`:
    /// `ledger.enabled: false` and no budgets.
    #[arg(long, default_value = "on")]
    spend: String,
    /// Where to write the JSON results.
    #[arg(long, default_value = "target/bench/results.json")]
    out: PathBuf,
    /// Measure response-cache hit latency (p50/p99 at concurrency 1, hit
    /// vs miss vs the upstream directly) instead of the overhead scenarios;
    /// `--c1-requests` requests per series.
    #[arg(long)]
    cache: bool,
    /// Cache setups for `--cache`: memory, redis, semantic.
    #[arg(long, value_delimiter = ',', default_value = "memory,redis,semantic")]
    cache_setups: Vec<String>,
    /// The Redis server of the `redis` cache setup.
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
}

/// A child process killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// `taskset -c CORE cmd` when there are two cores and taskset exists, so the
/// gateway and the upstream double do not steal each other's CPU.
fn pinned(core: usize, program: &Path) -> Command {
    let taskset = cores() >= 2
        && Command::new("taskset")
            .arg("-V")
            .stdout(Stdio::null())
            .status()
            .is_ok();
    if taskset {
        let mut c = Command::new("taskset");
        c.arg("-c").arg(core.to_string()).arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// The gateways' data folder for this run (see [`start`]); removed by
/// `main` at the end, as statics are never dropped.
static DATA_DIR: OnceLock<std::io::Result<tempfile::TempDir>> = OnceLock::new();

/// Starts a process and waits for a line containing `ready` on stdout or
/// stderr; returns the process and that line.
fn start(mut cmd: Command, ready: &str, on_stdout: bool) -> Result<(Proc, String)> {
    use std::io::{BufRead, BufReader};
    cmd.stdin(Stdio::null())
        .env(
            "RUST_LOG",
            "warn,switchyard_router=info,switchyard_worker=info",
        )
        .env("SWITCHYARD_LOG_FORMAT", "text")
        .env("NO_COLOR", "1");
    // The gateway's usage ledger goes to a scratch folder of this run, not
    // the user's home (the benchmark measures with it on, as `serve` runs
    // by default): a ledger kept from earlier runs would grow start-up and
    // idle memory from run to run, and one written by another build's
    // schema would be refused.
    if std::env::var_os("SWITCHYARD_DATA_DIR").is_none() {
        match DATA_DIR.get_or_init(tempfile::tempdir) {
            Ok(dir) => {
                cmd.env("SWITCHYARD_DATA_DIR", dir.path());
            }
            Err(e) => anyhow::bail!("cannot make the gateway's data folder: {e}"),
        }
    }
    if on_stdout {
        cmd.stdout(Stdio::piped()).stderr(Stdio::null());
    } else {
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    let pipe: Box<dyn std::io::Read + Send> = if on_stdout {
        Box::new(child.stdout.take().context("no stdout")?)
    } else {
        Box::new(child.stderr.take().context("no stderr")?)
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let ready = ready.to_owned();
    std::thread::spawn(move || {
        let mut sent = false;
        // Keep draining so the child never blocks on a full pipe.
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if !sent && line.contains(&ready) {
                let _ = tx.send(line);
                sent = true;
            }
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(60))
        .context("process never became ready")?;
    Ok((Proc(child), line))
}

fn field(line: &str, name: &str) -> Option<String> {
    let at = line.find(&format!("{name}="))? + name.len() + 1;
    line[at..].split_whitespace().next().map(str::to_owned)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// User + system CPU time of a process, in seconds.
fn cpu_secs(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields overall, in clock ticks (100 per second on Linux).
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

struct Gateway {
    name: String,
    base: String,
    procs: Vec<Proc>,
    _dir: tempfile::TempDir,
}

impl Gateway {
    fn pids(&self) -> Vec<u32> {
        self.procs.iter().map(|p| p.0.id()).collect()
    }
    fn rss_mib(&self) -> f64 {
        self.pids().into_iter().map(rss_kib).sum::<u64>() as f64 / 1024.0
    }
    fn cpu_secs(&self) -> f64 {
        self.pids().into_iter().map(cpu_secs).sum()
    }
}

fn start_gateway(
    mode: &str,
    bin: &Path,
    upstream: &str,
    otlp: Option<&str>,
    spend_on: bool,
) -> Result<Gateway> {
    let dir = tempfile::tempdir()?;
    let mut procs = Vec::new();
    let bus = if mode == "nats" {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut cmd = pinned(0, Path::new("nats-server"));
        // JetStream: the usage stream lives there.
        let store = dir.path().join("nats");
        cmd.args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(&store);
        let (p, _) = start(cmd, "Server is ready", false)?;
        procs.push(p);
        format!("bus:\n  nats_url: nats://127.0.0.1:{port}\n")
    } else {
        String::new()
    };
    let spend = if spend_on {
        // Priced models, so every request is costed, counted against both
        // budgets and recorded with its cost.
        "budgets:\n  limits:\n    - { name: all, window: monthly, limit_usd: 1000000, action: alert }\n    - { name: per-team, scope: { team: \"*\" }, window: daily, limit_usd: 1000000, action: reject }\npricing:\n  models:\n    - { provider: openai, model: fast, input: 2.5, output: 10 }\n    - { provider: openai, model: slow-20, input: 2.5, output: 10 }\n"
    } else {
        "ledger:\n  enabled: false\n"
    };
    let config = format!(
        "server:\n  http_addr: 127.0.0.1:0\n  grpc_addr: 127.0.0.1:0\n{bus}providers:\n  - name: up\n    kind: openai\n    base_url: {upstream}\n    max_concurrency: 100000\n    max_queue: 100000\n{spend}"
    );
    let path = dir.path().join("bench.yaml");
    std::fs::write(&path, config)?;
    let path = path.to_string_lossy().into_owned();
    let switchyard = bin.join("switchyard");
    let with_otlp = |mut c: Command| {
        if let Some(endpoint) = otlp {
            c.env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
                .env("OTEL_METRIC_EXPORT_INTERVAL", "5000");
        }
        c
    };
    let line = if mode == "nats" {
        let mut w = pinned(0, &switchyard);
        w.args(["worker", "--config", &path, "--provider", "up"]);
        let (p, _) = start(with_otlp(w), "worker serving", false)?;
        procs.push(p);
        let mut r = pinned(0, &switchyard);
        r.args(["router", "--config", &path]);
        let (p, line) = start(with_otlp(r), "router listening", false)?;
        procs.push(p);
        line
    } else {
        let mut s = pinned(0, &switchyard);
        s.args(["serve", "--config", &path]);
        let (p, line) = start(with_otlp(s), "router listening", false)?;
        procs.push(p);
        line
    };
    let addr = field(&line, "http_addr").context("no http_addr in the router's log")?;
    Ok(Gateway {
        name: mode.to_owned(),
        base: format!("http://{addr}/v1"),
        procs,
        _dir: dir,
    })
}

fn client() -> Result<reqwest::Client> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(4096)
        .tcp_nodelay(true)
        .build()?)
}

fn body(model: &str, words: usize, stream: bool) -> Value {
    let text = vec!["w"; words].join(" ");
    json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": text}]})
}

/// The model name as this target knows it: the gateway addresses the
/// double through the `up` provider.
fn model(target: &Target, upstream_model: &str) -> String {
    if target.direct {
        upstream_model.to_owned()
    } else {
        format!("up/{upstream_model}")
    }
}

struct Target {
    name: String,
    base: String,
    direct: bool,
}

#[allow(clippy::expect_used)] // constant bounds that are valid by construction
fn histogram() -> Histogram<u64> {
    // 1 µs .. 60 s at 3 significant digits.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

fn summary(h: &Histogram<u64>) -> Value {
    json!({
        "count": h.len(),
        "p50_us": h.value_at_quantile(0.50),
        "p90_us": h.value_at_quantile(0.90),
        "p99_us": h.value_at_quantile(0.99),
        "max_us": h.max(),
    })
}

async fn one(client: &reqwest::Client, url: &str, body: &Value) -> bool {
    match client.post(url).json(body).send().await {
        Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
        Err(_) => false,
    }
}

async fn latency_c1(client: &reqwest::Client, t: &Target, n: usize) -> Histogram<u64> {
    let url = format!("{}/chat/completions", t.base);
    let body = body(&model(t, "fast"), 8, false);
    for _ in 0..50 {
        one(client, &url, &body).await;
    }
    let mut h = histogram();
    for _ in 0..n {
        let start = Instant::now();
        if one(client, &url, &body).await {
            let _ = h.record(start.elapsed().as_micros() as u64);
        }
    }
    h
}

/// Open loop: request `i` is due at `start + i / rate`; latency counts from
/// when it was due.
async fn at_rate(
    client: &reqwest::Client,
    t: &Target,
    upstream_model: &str,
    rate: u64,
    secs: u64,
) -> (Histogram<u64>, u64, u64) {
    let url = Arc::new(format!("{}/chat/completions", t.base));
    let body = Arc::new(body(&model(t, upstream_model), 8, false));
    let total = rate * secs;
    let start = tokio::time::Instant::now() + Duration::from_millis(50);
    let errors = Arc::new(AtomicU64::new(0));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for i in 0..total {
        let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
        tokio::time::sleep_until(due).await;
        let (client, url, body, errors, tx) = (
            client.clone(),
            url.clone(),
            body.clone(),
            errors.clone(),
            tx.clone(),
        );
        tokio::spawn(async move {
            let ok = one(&client, &url, &body).await;
            if ok {
                let _ = tx.send(due.elapsed().as_micros() as u64);
            } else {
                errors.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    drop(tx);
    let mut h = histogram();
    while let Some(us) = rx.recv().await {
        let _ = h.record(us);
    }
    (h, total, errors.load(Ordering::Relaxed))
}

/// Closed loop with `conns` concurrent requesters for `secs`.
async fn throughput(
    client: &reqwest::Client,
    t: &Target,
    upstream_model: &str,
    conns: usize,
    secs: u64,
) -> (f64, u64) {
    let url = Arc::new(format!("{}/chat/completions", t.base));
    let body = Arc::new(body(&model(t, upstream_model), 8, false));
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (client, url, body, done, errors) = (
            client.clone(),
            url.clone(),
            body.clone(),
            done.clone(),
            errors.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while Instant::now() < end {
                if one(&client, &url, &body).await {
                    done.fetch_add(1, Ordering::Relaxed);
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    (
        done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64(),
        errors.load(Ordering::Relaxed),
    )
}

struct StreamStats {
    ttft: Histogram<u64>,
    /// One value per delta: the gap since the delta before ([`streams`]),
    /// or the delta's own trip from the double ([`stamped_streams`]).
    deltas: Histogram<u64>,
    stalled: u64,
    failed: u64,
}

/// `conc` streams at once, each 64 deltas paced 20 ms apart by the double.
/// A gap over 100 ms beyond the pacing counts as a stall.
async fn streams(client: &reqwest::Client, t: &Target, conc: usize) -> StreamStats {
    let url = Arc::new(format!("{}/chat/completions", t.base));
    // "echo:" plus 63 words: 64 content deltas.
    let body = Arc::new(body(&model(t, "slow-20"), 63, true));
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let (client, url, body) = (client.clone(), url.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let mut ttft = None;
            let mut gaps = Vec::with_capacity(80);
            let start = Instant::now();
            let Ok(res) = client.post(url.as_str()).json(&*body).send().await else {
                return None;
            };
            if !res.status().is_success() {
                return None;
            }
            let mut last = None::<Instant>;
            let mut s = res.bytes_stream();
            while let Some(chunk) = s.next().await {
                let Ok(chunk) = chunk else { return None };
                let now = Instant::now();
                let events = chunk.windows(6).filter(|w| w == b"data: ").count();
                if events == 0 {
                    continue;
                }
                if ttft.is_none() {
                    ttft = Some(now - start);
                } else if let Some(l) = last {
                    gaps.push(now - l);
                }
                last = Some(now);
            }
            Some((ttft.unwrap_or_default(), gaps))
        }));
    }
    let mut out = StreamStats {
        ttft: histogram(),
        deltas: histogram(),
        stalled: 0,
        failed: 0,
    };
    for t in tasks {
        match t.await {
            Ok(Some((ttft, gaps))) => {
                let _ = out.ttft.record(ttft.as_micros() as u64);
                for g in gaps {
                    let _ = out.deltas.record(g.as_micros() as u64);
                    if g > Duration::from_millis(120) {
                        out.stalled += 1;
                    }
                }
            }
            _ => out.failed += 1,
        }
    }
    out
}

/// Time to first token and each delta's own trip at concurrency 1, over
/// `runs` streams one after another. The double stamps every content delta
/// with the wall-clock time it sends it (`-stamped` models), so the delay
/// of each delta is measured, not the gap between two (which would hide a
/// delta held back and then sent with the next one).
async fn stamped_streams(client: &reqwest::Client, t: &Target, runs: usize) -> StreamStats {
    let url = format!("{}/chat/completions", t.base);
    let body = body(&model(t, "slow-20-stamped"), 63, true);
    let mut out = StreamStats {
        ttft: histogram(),
        deltas: histogram(),
        stalled: 0,
        failed: 0,
    };
    for _ in 0..runs {
        let start = Instant::now();
        let res = match client.post(&url).json(&body).send().await {
            Ok(r) if r.status().is_success() => r,
            _ => {
                out.failed += 1;
                continue;
            }
        };
        let mut first = true;
        let mut s = res.bytes_stream();
        while let Some(chunk) = s.next().await {
            let Ok(chunk) = chunk else {
                out.failed += 1;
                break;
            };
            let now = unix_micros();
            if first && chunk.windows(6).any(|w| w == b"data: ") {
                let _ = out.ttft.record(start.elapsed().as_micros() as u64);
                first = false;
            }
            for sent in stamps(&chunk) {
                let _ = out.deltas.record(now.saturating_sub(sent));
            }
        }
    }
    out
}

fn unix_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// The `@<µs>` stamps in a piece of an SSE body.
fn stamps(chunk: &[u8]) -> impl Iterator<Item = u64> + '_ {
    chunk.split(|b| *b == b'@').skip(1).filter_map(|rest| {
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
    })
}

/// Opens `n` streams that stay open (the double stalls them) and returns
/// the gateway's RSS with all of them open.
async fn rss_with_open_streams(client: &reqwest::Client, gw: &Gateway, n: usize) -> (f64, usize) {
    let url = format!("{}/chat/completions", gw.base);
    let body = body("up/hang", 3, true);
    let open = Arc::new(AtomicU64::new(0));
    let (release_tx, release_rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    for _ in 0..n {
        let (client, url, body, open, mut release) = (
            client.clone(),
            url.clone(),
            body.clone(),
            open.clone(),
            release_rx.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let Ok(res) = client.post(url).json(&body).send().await else {
                return;
            };
            if res.status().is_success() {
                let mut s = res.bytes_stream();
                if s.next().await.is_some() {
                    open.fetch_add(1, Ordering::Relaxed);
                    let _ = release.changed().await;
                }
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while (open.load(Ordering::Relaxed) as usize) < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rss = gw.rss_mib();
    let opened = open.load(Ordering::Relaxed) as usize;
    let _ = release_tx.send(true);
    for t in tasks {
        t.abort();
    }
    (rss, opened)
}

fn us(v: &Value, k: &str) -> i64 {
    v[k].as_i64().unwrap_or(0)
}

fn added(gw: &Value, direct: &Value) -> Value {
    json!({
        "p50_us": us(gw, "p50_us") - us(direct, "p50_us"),
        "p90_us": us(gw, "p90_us") - us(direct, "p90_us"),
        "p99_us": us(gw, "p99_us") - us(direct, "p99_us"),
        "max_us": us(gw, "max_us") - us(direct, "max_us"),
    })
}

#[tokio::main]
async fn main() -> Result<()> {
    let out = run(Args::parse()).await;
    if let Some(Ok(dir)) = DATA_DIR.get() {
        let _ = std::fs::remove_dir_all(dir.path());
    }
    out
}

async fn run(args: Args) -> Result<()> {
    let double_bin = args.bin_dir.join("upstream-double");
    if !double_bin.exists() || !args.bin_dir.join("switchyard").exists() {
        bail!(
            "{} has no switchyard/upstream-double: run `cargo build --release -p switchyard -p switchyard-e2e` (bench/run.sh does)",
            args.bin_dir.display()
        );
    }
    let mut cmd = pinned(1, &double_bin);
    cmd.arg("127.0.0.1:0");
    let (_double, line) = start(cmd, "listening on", true)?;
    let upstream = line
        .trim()
        .rsplit(' ')
        .next()
        .context("no double URL")?
        .to_owned();
    let client = client()?;
    if args.cache {
        let result = cache::run(
            &client,
            &args.bin_dir,
            &upstream,
            &args.cache_setups,
            &args.redis_url,
            args.c1_requests,
        )
        .await?;
        let result =
            json!({"machine": {"cores": cores(), "pinned": cores() >= 2}, "cache": result});
        if let Some(dir) = args.out.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&args.out, serde_json::to_string_pretty(&result)?)?;
        return cache::print_table(&result["cache"]);
    }
    let spend_on = match args.spend.as_str() {
        "on" => true,
        "off" => false,
        other => bail!("--spend `{other}` is not on or off"),
    };
    let otlp = match args.otlp.as_deref() {
        Some("dead") => {
            let port = std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            Some(format!("http://127.0.0.1:{port}"))
        }
        other => other.map(str::to_owned),
    };
    let direct = Target {
        name: "direct".into(),
        base: upstream.clone(),
        direct: true,
    };
    let secs = args.step_secs;
    let rates = [500u64, 1000, 2000];

    // The direct baseline, measured once per run.
    eprintln_progress("direct: latency at concurrency 1");
    let direct_c1 = summary(&latency_c1(&client, &direct, args.c1_requests).await);
    let mut direct_rates = Vec::new();
    for r in rates {
        eprintln_progress(&format!("direct: {r} req/s"));
        let (h, _, errors) = at_rate(&client, &direct, "fast", r, secs).await;
        direct_rates.push(json!({"rate": r, "latency": summary(&h), "errors": errors}));
    }
    eprintln_progress("direct: streams");
    let ds = stamped_streams(&client, &direct, args.stream_runs).await;
    let direct_stream = json!({"ttft": summary(&ds.ttft), "delta_delay": summary(&ds.deltas)});

    let mut modes = Vec::new();
    for mode in &args.modes {
        let gw = start_gateway(mode, &args.bin_dir, &upstream, otlp.as_deref(), spend_on)?;
        let t = Target {
            name: gw.name.clone(),
            base: gw.base.clone(),
            direct: false,
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        let rss_idle = gw.rss_mib();
        eprintln_progress(&format!("{}: latency at concurrency 1", t.name));
        let c1 = summary(&latency_c1(&client, &t, args.c1_requests).await);
        let mut at_rates = Vec::new();
        for (i, r) in rates.iter().enumerate() {
            eprintln_progress(&format!("{}: {r} req/s", t.name));
            let (h, total, errors) = at_rate(&client, &t, "fast", *r, secs).await;
            let s = summary(&h);
            at_rates.push(json!({"rate": r, "latency": s, "added": added(&s, &direct_rates[i]["latency"]), "sent": total, "errors": errors}));
        }
        eprintln_progress(&format!("{}: max throughput", t.name));
        let cpu0 = gw.cpu_secs();
        let rss_probe = {
            let pids = gw.pids();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(secs / 2 + 1)).await;
                pids.into_iter().map(rss_kib).sum::<u64>() as f64 / 1024.0
            })
        };
        let (rps, tp_errors) = throughput(&client, &t, "fast", 64, secs).await;
        let cpu_per_1000 = (gw.cpu_secs() - cpu0) / (rps * secs as f64 / 1000.0);
        let rss_load = rss_probe.await.unwrap_or(0.0);
        eprintln_progress(&format!("{}: sustained with a 20 ms upstream", t.name));
        let mut sustained = 0u64;
        for r in [1000u64, 2000, 4000, 8000, 16000] {
            let (h, total, errors) = at_rate(&client, &t, "slow-20", r, secs).await;
            let ok =
                h.value_at_quantile(0.99) < 1_000_000 && (errors as f64) < 0.001 * total as f64;
            if !ok {
                break;
            }
            sustained = r;
        }
        eprintln_progress(&format!("{}: streams", t.name));
        let s1 = stamped_streams(&client, &t, args.stream_runs).await;
        let delay = summary(&s1.deltas);
        let stream1 = json!({
            "ttft": summary(&s1.ttft),
            "delta_delay": delay,
            "failed": s1.failed,
            "added_ttft_us": us(&summary(&s1.ttft), "p50_us") - us(&direct_stream["ttft"], "p50_us"),
            "added_delta_p50_us": us(&delay, "p50_us") - us(&direct_stream["delta_delay"], "p50_us"),
            "added_delta_p99_us": us(&delay, "p99_us") - us(&direct_stream["delta_delay"], "p99_us"),
        });
        let mut stall_free = 0usize;
        for c in [10usize, 100, 500, 1000, 2000] {
            let s = streams(&client, &t, c).await;
            if s.stalled > 0 || s.failed > 0 {
                break;
            }
            stall_free = c;
        }
        eprintln_progress(&format!("{}: {} open streams", t.name, args.open_streams));
        // A fresh gateway: the phases above leave the allocator's high-water
        // mark in this one, which would be counted as per-stream memory.
        drop(gw);
        let gw = start_gateway(mode, &args.bin_dir, &upstream, otlp.as_deref(), spend_on)?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (rss_streams, opened) = rss_with_open_streams(&client, &gw, args.open_streams).await;
        modes.push(json!({
            "mode": t.name,
            "latency_c1": {"gateway": c1, "added": added(&c1, &direct_c1)},
            "at_rate": at_rates,
            "max_throughput_rps": rps.round(),
            "max_throughput_errors": tp_errors,
            "cpu_ms_per_1000_requests": (cpu_per_1000 * 1000.0).round(),
            "sustained_rps_20ms_upstream": sustained,
            "stream_c1": stream1,
            "stall_free_streams": stall_free,
            "rss_mib": {"idle": rss_idle, "under_load": rss_load, "open_streams": rss_streams, "streams_opened": opened},
        }));
    }
    let result = json!({
        "machine": {"cores": cores(), "pinned": cores() >= 2},
        "otlp": otlp,
        "spend": args.spend,
        "direct": {"latency_c1": direct_c1, "at_rate": direct_rates, "stream_c1": direct_stream},
        "modes": modes,
    });
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, serde_json::to_string_pretty(&result)?)?;
    print_table(&result)?;
    Ok(())
}

fn eprintln_progress(what: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "bench: {what}");
}

fn print_table(r: &Value) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "| metric | {} |",
        r["modes"].as_array().map_or(String::new(), |m| m
            .iter()
            .map(|m| m["mode"].as_str().unwrap_or("").to_owned())
            .collect::<Vec<_>>()
            .join(" | "))
    )?;
    writeln!(
        out,
        "|---|{}",
        r["modes"]
            .as_array()
            .map_or(String::new(), |m| "---|".repeat(m.len()))
    )?;
    let modes = r["modes"].as_array().cloned().unwrap_or_default();
    let row = |out: &mut std::io::StdoutLock<'_>,
               name: &str,
               f: &dyn Fn(&Value) -> String|
     -> Result<()> {
        writeln!(
            out,
            "| {name} | {} |",
            modes.iter().map(f).collect::<Vec<_>>().join(" | ")
        )?;
        Ok(())
    };
    for q in ["p50", "p90", "p99", "max"] {
        row(&mut out, &format!("added latency c=1 {q} (µs)"), &|m| {
            m["latency_c1"]["added"][format!("{q}_us")].to_string()
        })?;
    }
    for i in 0..3 {
        let rate = modes
            .first()
            .map_or(Value::Null, |m| m["at_rate"][i]["rate"].clone());
        for q in ["p50", "p99"] {
            row(
                &mut out,
                &format!("added latency @{rate} req/s {q} (µs)"),
                &|m| m["at_rate"][i]["added"][format!("{q}_us")].to_string(),
            )?;
        }
    }
    row(&mut out, "max throughput (req/s)", &|m| {
        m["max_throughput_rps"].to_string()
    })?;
    row(&mut out, "CPU per 1,000 requests (ms)", &|m| {
        m["cpu_ms_per_1000_requests"].to_string()
    })?;
    row(&mut out, "sustained, 20 ms upstream (req/s)", &|m| {
        m["sustained_rps_20ms_upstream"].to_string()
    })?;
    row(&mut out, "added TTFT (µs)", &|m| {
        m["stream_c1"]["added_ttft_us"].to_string()
    })?;
    row(&mut out, "added per-delta delay p50 (µs)", &|m| {
        m["stream_c1"]["added_delta_p50_us"].to_string()
    })?;
    row(&mut out, "added per-delta delay p99 (µs)", &|m| {
        m["stream_c1"]["added_delta_p99_us"].to_string()
    })?;
    row(&mut out, "stall-free concurrent streams", &|m| {
        m["stall_free_streams"].to_string()
    })?;
    row(&mut out, "RSS idle (MiB)", &|m| {
        format!("{:.1}", m["rss_mib"]["idle"].as_f64().unwrap_or(0.0))
    })?;
    row(&mut out, "RSS under load (MiB)", &|m| {
        format!("{:.1}", m["rss_mib"]["under_load"].as_f64().unwrap_or(0.0))
    })?;
    row(&mut out, "RSS with open streams (MiB)", &|m| {
        format!(
            "{:.1} ({} open)",
            m["rss_mib"]["open_streams"].as_f64().unwrap_or(0.0),
            m["rss_mib"]["streams_opened"]
        )
    })?;
    Ok(())
}
