//! `switchyard`: the one binary for every role.
//!
//! - `serve`: router and every configured provider's worker in one process
//!   (in-process bus unless the config names a NATS URL).
//! - `router`: the router alone, sending work over NATS.
//! - `worker --provider NAME`: one provider's worker, taking work from NATS.
//! - `check`: validates a config file and prints every problem.

mod admin_client;
mod audit_cli;
mod keys_cli;
mod spend_cli;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use switchyard_bus::Bus;
use switchyard_bus::inproc::InProcessBus;
use switchyard_bus::nats::{NatsBus, NatsOptions};
use switchyard_config::{Config, ConfigWatcher};
use switchyard_worker::Worker;
use tokio_util::sync::CancellationToken;

// glibc's malloc took a fifth of the instructions of a proxied request
// (docs/benchmarks.md, "Hot path, first pass"); built with `no_thp`, as
// transparent huge pages took idle RSS from 25 to 40 MiB.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "switchyard",
    version,
    about = "AI API gateway: one endpoint in front of many model providers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Router and all providers' workers in one process. Without a config,
    /// serves the offline `demo` provider plus every provider whose API key
    /// is in the environment.
    Serve {
        #[arg(long, short, env = "SWITCHYARD_CONFIG")]
        config: Option<PathBuf>,
    },
    /// The router alone; workers run as separate processes over NATS.
    Router {
        #[arg(long, short, env = "SWITCHYARD_CONFIG")]
        config: PathBuf,
    },
    /// One provider's worker, taking that provider's work from NATS.
    Worker {
        #[arg(long, short, env = "SWITCHYARD_CONFIG")]
        config: PathBuf,
        /// A `providers[].name` from the config.
        #[arg(long, short)]
        provider: String,
        /// Serve `/healthz` (liveness) and `/readyz` (connected to the bus
        /// and taking work) on this address, for orchestrator probes.
        #[arg(long, env = "SWITCHYARD_HEALTH_ADDR")]
        health_addr: Option<std::net::SocketAddr>,
    },
    /// Validate a config file; print every problem with its place; exit 1 on any.
    Check {
        #[arg(long, short, env = "SWITCHYARD_CONFIG")]
        config: PathBuf,
    },
    /// Prices: what applies to a model, and why.
    Pricing {
        #[command(subcommand)]
        command: spend_cli::PricingCommand,
    },
    /// Usage and cost from a running gateway's ledger (its admin API).
    Usage(spend_cli::UsageArgs),
    /// Virtual keys on a running gateway (its admin API).
    Keys(keys_cli::KeysArgs),
    /// The audit trail of a running gateway: every request it recorded
    /// (its admin API).
    Audit(audit_cli::AuditArgs),
    /// Loads the JetStream usage stream into PostgreSQL; resumes where it
    /// stopped (`ledger.postgres` and `bus` from the config).
    LedgerWriter {
        #[arg(long, short, env = "SWITCHYARD_CONFIG")]
        config: PathBuf,
        /// The durable consumer's name; writers sharing it share the work.
        #[arg(long, default_value = "switchyard-ledger-writer")]
        consumer: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // reqwest (providers, OTLP/HTTP export) and async-nats use rustls; one
    // process-wide provider, installed before anything builds a client.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (role, path) = match &cli.command {
        Command::Serve { config } => ("serve", config.as_ref()),
        Command::Router { config } => ("router", Some(config)),
        Command::Worker { config, .. } => ("worker", Some(config)),
        Command::Check { config } => return check(config),
        Command::Pricing { command } => return spend_cli::pricing(command),
        Command::Usage(args) => return spend_cli::usage(args),
        Command::Keys(args) => return keys_cli::keys(args),
        Command::Audit(args) => return audit_cli::audit(args),
        Command::LedgerWriter { config, .. } => ("ledger-writer", Some(config)),
    };
    // The config says where traces go, so it is read before telemetry starts.
    let config = match load(path) {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    let telemetry = switchyard_telemetry::init(&format!("switchyard-{role}"), &config.telemetry);
    if path.is_none() {
        tracing::info!(
            "no config file given: serving the embedded default (demo provider + providers from environment keys)"
        );
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli.command, config));
    drop(runtime);
    // Outside async code: the last spans are flushed (for a few seconds at
    // most when the collector is down).
    telemetry.shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn fail(e: &anyhow::Error) -> ExitCode {
    // Also when logging is not set up yet (a bad config).
    switchyard_telemetry::init_logging();
    tracing::error!("{e:#}");
    let _ = writeln!(std::io::stderr(), "switchyard: {e:#}");
    ExitCode::FAILURE
}

fn check(path: &Path) -> ExitCode {
    match Config::load(path) {
        Ok(c) => {
            let _ = writeln!(
                std::io::stdout(),
                "{}: OK ({} providers, {} models)",
                path.display(),
                c.providers.len(),
                c.models.len()
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "{errors}");
            let _ = writeln!(
                err,
                "{}: {} problem(s) found",
                path.display(),
                errors.errors.len()
            );
            ExitCode::FAILURE
        }
    }
}

fn load(path: Option<&PathBuf>) -> Result<Config> {
    let origin = path.map_or_else(
        || switchyard_config::EMBEDDED_ORIGIN.to_owned(),
        |p| p.display().to_string(),
    );
    let mut config = match path {
        Some(p) => Config::load(p).map_err(|e| anyhow::anyhow!("invalid config:\n{e}"))?,
        None => Config::embedded_default(),
    };
    config
        .apply_env_overrides(|k| std::env::var(k).ok())
        .map_err(|e| anyhow::anyhow!("invalid environment override:\n{e}"))?;
    // Overrides and the environment-built default are checked like a file.
    config
        .validate(&origin)
        .map_err(|e| anyhow::anyhow!("invalid config after environment overrides:\n{e}"))?;
    Ok(config)
}

/// The bus, and the NATS connection behind it (to flush and close at exit).
async fn connect_bus(
    config: &Config,
    role: &str,
    require_nats: bool,
) -> Result<(Arc<dyn Bus>, Option<NatsBus>)> {
    match &config.bus {
        Some(b) => {
            let bus = NatsBus::connect(NatsOptions::from_config(b, format!("switchyard-{role}")))
                .await
                .with_context(|| format!("cannot connect to NATS at {}", b.nats_url))?;
            tracing::info!(url = %b.nats_url, "bus: NATS");
            Ok((Arc::new(bus.clone()), Some(bus)))
        }
        None if require_nats => {
            bail!(
                "`switchyard {role}` needs a NATS bus: set bus.nats_url in the config or SWITCHYARD_NATS_URL"
            )
        }
        None => {
            tracing::info!("bus: in-process");
            Ok((Arc::new(InProcessBus::new()), None))
        }
    }
}

/// How long the NATS connection may take to flush at exit.
const BUS_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Flushes what was published (a worker's last chunks and end events) and
/// closes the NATS connection: exiting without it can lose them.
async fn close_bus(nats: Option<NatsBus>) {
    if let Some(n) = nats
        && tokio::time::timeout(BUS_CLOSE_TIMEOUT, n.close())
            .await
            .is_err()
    {
        tracing::warn!(timeout = ?BUS_CLOSE_TIMEOUT, "NATS connection did not close in time");
    }
}

fn worker_id(provider: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{provider}-{}-{nanos:08x}", std::process::id())
}

async fn spawn_worker(
    config: &Config,
    name: &str,
    bus: Arc<dyn Bus>,
    http: reqwest::Client,
    shutdown: CancellationToken,
) -> Result<tokio::task::JoinHandle<Result<(), switchyard_worker::WorkerError>>> {
    let pc = config
        .provider(name)
        .with_context(|| {
            let known: Vec<_> = config.providers.iter().map(|p| p.name.as_str()).collect();
            format!(
                "no provider named `{name}` in the config (known: {})",
                known.join(", ")
            )
        })?
        .clone();
    let provider = switchyard_providers::build_provider(&pc, http)
        .with_context(|| format!("cannot set up provider `{name}`"))?;
    let worker = Worker::new(&pc, provider, worker_id(name));
    let grace = config.server.shutdown_grace;
    Ok(tokio::spawn(async move {
        worker.run(bus, shutdown, grace).await
    }))
}

async fn run(command: Command, config: Config) -> Result<()> {
    // SIGTERM/SIGINT: the start of the shutdown sequence (see
    // `shut_down_router`).
    let signal = CancellationToken::new();
    tokio::spawn(signal_shutdown(signal.clone()));
    match command {
        // Handled in main before the runtime starts.
        Command::Check { .. }
        | Command::Pricing { .. }
        | Command::Usage(_)
        | Command::Keys(_)
        | Command::Audit(_) => {}
        Command::LedgerWriter { consumer, .. } => {
            spend_cli::ledger_writer(&config, &consumer, signal).await?;
        }
        Command::Serve {
            config: config_path,
        } => {
            let (bus, nats) = connect_bus(&config, "serve", false).await?;
            let http = switchyard_providers::registry::http_client();
            // The in-process workers serve the router's requests to their
            // end, so they stop only once the router has drained.
            let workers_stop = CancellationToken::new();
            let mut workers = Vec::new();
            for p in &config.providers {
                workers.push(
                    spawn_worker(
                        &config,
                        &p.name,
                        bus.clone(),
                        http.clone(),
                        workers_stop.clone(),
                    )
                    .await?,
                );
            }
            let listeners_stop = CancellationToken::new();
            let client = nats.as_ref().map(NatsBus::client);
            let router =
                switchyard_router::start(&config, bus, client, listeners_stop.clone()).await?;
            if let Some(path) = &config_path {
                watch_config(
                    path.clone(),
                    config.clone(),
                    router.gateway.clone(),
                    signal.clone(),
                );
            }
            if config.bus.is_none() && !router.http_addr.ip().is_loopback() {
                tracing::warn!(addr = %router.http_addr, "listening beyond localhost with no client authentication configured");
            }
            let registrar = register_router(&config, &router);
            let drained =
                shut_down_router(router, registrar, &signal, &listeners_stop, &config.server)
                    .await?;
            workers_stop.cancel();
            // After a full drain the workers hold nothing and stop at once;
            // after the grace period ran out, what they hold is cancelled.
            let remaining = if drained {
                config.server.shutdown_grace
            } else {
                Duration::ZERO
            };
            for w in workers {
                match tokio::time::timeout(remaining + Duration::from_secs(1), w).await {
                    Ok(r) => r??,
                    Err(_) => tracing::warn!("a worker did not stop in time"),
                }
            }
            close_bus(nats).await;
        }
        Command::Router { config: path } => {
            let (bus, nats) = connect_bus(&config, "router", true).await?;
            let listeners_stop = CancellationToken::new();
            let client = nats.as_ref().map(NatsBus::client);
            let router =
                switchyard_router::start(&config, bus, client, listeners_stop.clone()).await?;
            watch_config(path, config.clone(), router.gateway.clone(), signal.clone());
            let registrar = register_router(&config, &router);
            shut_down_router(router, registrar, &signal, &listeners_stop, &config.server).await?;
            close_bus(nats).await;
        }
        Command::Worker {
            provider,
            health_addr,
            ..
        } => {
            let (bus, nats) = connect_bus(&config, "worker", true).await?;
            // Held until exit: the probes answer through the drain.
            let _health = match (health_addr, &nats) {
                (Some(addr), Some(n)) => {
                    let n = n.clone();
                    let connected: switchyard_worker::Connected =
                        Arc::new(move || n.is_connected());
                    Some(
                        switchyard_worker::serve_health(addr, signal.clone(), connected)
                            .await
                            .with_context(|| format!("cannot listen on --health-addr {addr}"))?,
                    )
                }
                _ => None,
            };
            let http = switchyard_providers::registry::http_client();
            // Workers take work from a NATS queue group: unsubscribing takes
            // effect at the server at once, so no delay is needed before
            // they stop taking work.
            let mut worker = spawn_worker(&config, &provider, bus, http, signal.clone()).await?;
            let registrar = config.discovery.consul.as_ref().and_then(|c| {
                let role = switchyard_discovery::Role::Worker {
                    provider: &provider,
                };
                register(c, role)
            });
            let result = tokio::select! {
                r = &mut worker => {
                    deregister(registrar).await;
                    r
                }
                _ = signal.cancelled() => {
                    // Deregistered while the worker finishes its jobs.
                    let (r, ()) = tokio::join!(&mut worker, deregister(registrar));
                    r
                }
            };
            result??;
            close_bus(nats).await;
        }
    }
    Ok(())
}

/// How long deregistration from Consul may take at shutdown.
const DEREGISTER_TIMEOUT: Duration = Duration::from_secs(3);

fn register_router(
    config: &Config,
    router: &switchyard_router::RunningRouter,
) -> Option<switchyard_discovery::Registrar> {
    let role = switchyard_discovery::Role::Router {
        http_addr: router.http_addr,
        grpc_addr: router.grpc_addr,
    };
    register(config.discovery.consul.as_ref()?, role)
}

/// Starts registering with Consul in the background (a down agent is
/// retried, never fatal).
fn register(
    consul: &switchyard_config::ConsulConfig,
    role: switchyard_discovery::Role<'_>,
) -> Option<switchyard_discovery::Registrar> {
    let registration =
        switchyard_discovery::registration(consul, role, &switchyard_discovery::host_name());
    match switchyard_discovery::ConsulAgent::from_config(consul) {
        Ok(agent) => Some(switchyard_discovery::Registrar::spawn(agent, registration)),
        Err(e) => {
            tracing::warn!(error = %e, "Consul registration is off");
            None
        }
    }
}

async fn deregister(registrar: Option<switchyard_discovery::Registrar>) {
    if let Some(r) = registrar {
        r.deregister(DEREGISTER_TIMEOUT).await;
    }
}

/// How often the config file is checked for changes.
const CONFIG_POLL: std::time::Duration = std::time::Duration::from_secs(2);

/// Applies config changes (file edits, or SIGHUP) to the running router:
/// models and routing settings change live; a bad config is rejected with
/// its errors logged and the running one kept; keys that need a restart
/// are named in a warning.
fn watch_config(
    path: PathBuf,
    current: Config,
    gateway: Arc<switchyard_router::Gateway>,
    shutdown: CancellationToken,
) {
    let mut watcher = ConfigWatcher::new(path.clone(), CONFIG_POLL);
    #[cfg(unix)]
    {
        let trigger = watcher.trigger_handle();
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(mut hup) => {
                tokio::spawn(async move {
                    while hup.recv().await.is_some() {
                        tracing::info!("SIGHUP: reloading the config");
                        trigger.trigger();
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP; config reload on file change only")
            }
        }
    }
    tokio::spawn(async move {
        let mut current = current;
        loop {
            let reload = tokio::select! {
                r = watcher.changed() => r,
                _ = shutdown.cancelled() => return,
            };
            match reload {
                Ok(new) => {
                    let restart = current.reload_diff(&new);
                    if !restart.is_empty() {
                        tracing::warn!(keys = %restart.join(", "), "config changes that apply only after a restart were kept at their running values");
                    }
                    // What runs now: the new models and routing settings
                    // over the server, bus and providers started with.
                    current.models = new.models;
                    current.routing = new.routing;
                    gateway.reload(&current);
                    tracing::info!(path = %path.display(), models = current.models.len(), "config reloaded");
                }
                Err(errors) => {
                    tracing::error!(path = %path.display(), "config reload rejected, the running config stays:\n{errors}");
                }
            }
        }
    });
}

/// Serves until `signal`, then shuts down in the order load balancers and
/// Kubernetes need: readiness false (`/readyz` 503, gRPC health
/// NOT_SERVING) at once; deregistration from Consul; still serving for
/// `server.shutdown_delay` (endpoints update asynchronously, so traffic can
/// still arrive); then the listeners close and in-flight requests get
/// `server.shutdown_grace` to finish. Returns whether they all did.
/// [`drain_router`], then the usage records still queued are written.
async fn shut_down_router(
    router: switchyard_router::RunningRouter,
    registrar: Option<switchyard_discovery::Registrar>,
    signal: &CancellationToken,
    listeners_stop: &CancellationToken,
    server: &switchyard_config::ServerConfig,
) -> Result<bool> {
    let spend = router.gateway.spend().clone();
    let gateway = router.gateway.clone();
    let drained = drain_router(router, registrar, signal, listeners_stop, server).await;
    spend.flush().await;
    // `cache.persist`: the entries still queued for the file.
    gateway.flush_cache().await;
    drained
}

async fn drain_router(
    router: switchyard_router::RunningRouter,
    registrar: Option<switchyard_discovery::Registrar>,
    signal: &CancellationToken,
    listeners_stop: &CancellationToken,
    server: &switchyard_config::ServerConfig,
) -> Result<bool> {
    let readiness = router.readiness();
    let done = router.wait();
    tokio::pin!(done);
    tokio::select! {
        r = &mut done => {
            // A server failed before any signal.
            deregister(registrar).await;
            r?;
            return Ok(true);
        }
        _ = signal.cancelled() => {}
    }
    readiness.set_not_ready().await;
    tracing::info!(delay = ?server.shutdown_delay, "shutdown: not ready; still serving until the delay is over");
    // The delay and deregistration run together: the listeners close once
    // both are over.
    tokio::join!(
        tokio::time::sleep(server.shutdown_delay),
        deregister(registrar)
    );
    listeners_stop.cancel();
    let grace = server.shutdown_grace;
    tracing::info!(
        ?grace,
        "shutdown: listeners closed, finishing in-flight requests"
    );
    match tokio::time::timeout(grace, done).await {
        Ok(r) => {
            r?;
            Ok(true)
        }
        Err(_) => {
            tracing::warn!(?grace, "grace period over: closing remaining connections");
            Ok(false)
        }
    }
}

async fn signal_shutdown(token: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM");
                    let _ = ctrl_c.await;
                    token.cancel();
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutdown signal: draining");
    token.cancel();
}
