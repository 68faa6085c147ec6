//! Service discovery: registers a Switchyard process with its Consul agent,
//! keeps it registered, and deregisters it at shutdown.
//!
//! - [`registration`] builds what a router (or `serve`) or a worker
//!   registers, from `discovery.consul` and where the process listens.
//! - [`ConsulAgent`] is the agent's HTTP API: `PUT /v1/agent/service/register`,
//!   `PUT /v1/agent/service/deregister/{id}` and, for TTL checks,
//!   `PUT /v1/agent/check/pass/{check_id}`.
//! - [`Registrar::spawn`] registers in the background: when the agent is
//!   down or refuses, it logs a warning and retries with backoff (the
//!   gateway serves regardless); it passes a worker's TTL check and
//!   registers again when the agent forgot the service (agent restarted).
//!   [`Registrar::deregister`] stops that and deregisters, within a timeout.
//!
//! The agent API is called with the async `reqwest` client already in the
//! tree rather than `rs-consul` 0.15: that crate offers only the *catalog*
//! endpoints (`/v1/catalog/register`), which bypass the local agent (its
//! anti-entropy removes catalog entries it does not own, and it does not run
//! checks registered that way), and it brings hyper with every feature,
//! hyper-rustls and the blocking `ureq` client besides.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Serialize;
use switchyard_config::ConsulConfig;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use url::Url;

/// Environment variable read for the ACL token when `discovery.consul.token`
/// is absent (the Consul CLI's own).
pub const TOKEN_ENV: &str = "CONSUL_HTTP_TOKEN";

/// The gRPC health service name a router's check asks about: it turns
/// NOT_SERVING as soon as shutdown begins (the empty service name does not).
pub const GRPC_HEALTH_SERVICE: &str = "switchyard.gateway.v1.GatewayService";

/// Each HTTP call to the agent gives up after this long.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Backoff between registration attempts while the agent is unreachable.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);
/// A worker's TTL is this many check intervals: two missed passes are
/// tolerated before the agent marks it critical.
const TTL_INTERVALS: u32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("`{address}` is not a usable Consul agent address: {reason}")]
    Address { address: String, reason: String },
    #[error("cannot build the HTTP client for Consul: {0}")]
    Client(String),
    #[error("Consul agent {op} failed: {message}")]
    Transport {
        op: &'static str,
        message: String,
        /// The connection was refused or never made: the agent cannot have
        /// seen the request.
        unsent: bool,
    },
    #[error("Consul agent answered {op} with HTTP {status}: {body}")]
    Status {
        op: &'static str,
        status: u16,
        body: String,
    },
}

/// What a process registers.
#[derive(Debug, Clone, PartialEq)]
pub struct Registration {
    /// Unique per process: see [`service_id`].
    pub id: String,
    pub name: String,
    pub tags: Vec<String>,
    pub address: String,
    /// Absent for workers, which listen on nothing.
    pub port: Option<u16>,
    pub meta: BTreeMap<String, String>,
    pub check: Option<Check>,
}

/// The health check the agent runs (or waits for) on this registration.
#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    /// The agent calls `grpc.health.v1.Health/Check` at `target`
    /// (`host:port/service`), plaintext.
    Grpc {
        target: String,
        interval: Duration,
        deregister_after: Duration,
    },
    /// The process itself reports "passing" at least every `ttl`.
    Ttl {
        ttl: Duration,
        /// How often the process passes it.
        pass_every: Duration,
        deregister_after: Duration,
    },
}

impl Registration {
    /// The id of the registration's check (`service:<id>`, Consul's own
    /// spelling for a check defined with its service).
    pub fn check_id(&self) -> String {
        format!("service:{}", self.id)
    }

    /// The JSON body of `PUT /v1/agent/service/register`.
    pub fn to_agent_json(&self) -> serde_json::Value {
        #[derive(Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct Body<'a> {
            #[serde(rename = "ID")]
            id: &'a str,
            name: &'a str,
            tags: &'a [String],
            address: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            port: Option<u16>,
            meta: &'a BTreeMap<String, String>,
            #[serde(skip_serializing_if = "Option::is_none")]
            check: Option<serde_json::Value>,
        }
        let check = self.check.as_ref().map(|c| match c {
            Check::Grpc {
                target,
                interval,
                deregister_after,
            } => serde_json::json!({
                "CheckID": self.check_id(),
                "Name": "gRPC health",
                "GRPC": target,
                "GRPCUseTLS": false,
                "Interval": go_duration(*interval),
                "Timeout": go_duration((*interval).min(Duration::from_secs(5))),
                "DeregisterCriticalServiceAfter": go_duration(*deregister_after),
            }),
            Check::Ttl {
                ttl,
                deregister_after,
                ..
            } => serde_json::json!({
                "CheckID": self.check_id(),
                "Name": "worker alive",
                "TTL": go_duration(*ttl),
                // Registered once the worker is up: passing from the start.
                "Status": "passing",
                "DeregisterCriticalServiceAfter": go_duration(*deregister_after),
            }),
        });
        serde_json::to_value(Body {
            id: &self.id,
            name: &self.name,
            tags: &self.tags,
            address: &self.address,
            port: self.port,
            meta: &self.meta,
            check,
        })
        .unwrap_or_default()
    }
}

/// A duration as Go's `time.ParseDuration` reads it (whole milliseconds).
fn go_duration(d: Duration) -> String {
    format!("{}ms", d.as_millis().max(1))
}

/// What the process is, for [`registration`].
#[derive(Debug, Clone, Copy)]
pub enum Role<'a> {
    /// `switchyard router` or `switchyard serve`: the bound listeners.
    Router {
        http_addr: SocketAddr,
        grpc_addr: SocketAddr,
    },
    /// `switchyard worker --provider NAME`.
    Worker { provider: &'a str },
}

/// The registration of this process: service name, tags, address and check
/// from `config`; `host` is the machine's (or pod's) host name.
pub fn registration(config: &ConsulConfig, role: Role<'_>, host: &str) -> Registration {
    let mut meta = BTreeMap::new();
    meta.insert("version".to_owned(), env!("CARGO_PKG_VERSION").to_owned());
    match role {
        Role::Router {
            http_addr,
            grpc_addr,
        } => {
            let address = config.advertise_address.clone().unwrap_or_else(|| {
                specific_ip(http_addr.ip()).map_or_else(|| host.to_owned(), |ip| ip.to_string())
            });
            // The agent dials the gRPC listener where it is bound, or at the
            // advertised address when it is bound to every interface.
            let check_host =
                specific_ip(grpc_addr.ip()).map_or_else(|| address.clone(), |ip| ip.to_string());
            let check_host = match check_host.parse::<IpAddr>() {
                Ok(IpAddr::V6(_)) => format!("[{check_host}]"),
                _ => check_host,
            };
            meta.insert("role".to_owned(), "router".to_owned());
            meta.insert("http_port".to_owned(), http_addr.port().to_string());
            meta.insert("grpc_port".to_owned(), grpc_addr.port().to_string());
            let name = config.router_service_name.clone();
            Registration {
                id: service_id(&name, None, host),
                tags: tags(config, "router", None),
                address,
                port: Some(http_addr.port()),
                meta,
                check: Some(Check::Grpc {
                    target: format!("{check_host}:{}/{GRPC_HEALTH_SERVICE}", grpc_addr.port()),
                    interval: config.check_interval,
                    deregister_after: config.deregister_critical_after,
                }),
                name,
            }
        }
        Role::Worker { provider } => {
            meta.insert("role".to_owned(), "worker".to_owned());
            meta.insert("provider".to_owned(), provider.to_owned());
            let name = config.worker_service_name.clone();
            Registration {
                id: service_id(&name, Some(provider), host),
                tags: tags(config, "worker", Some(provider)),
                address: config
                    .advertise_address
                    .clone()
                    .unwrap_or_else(|| host.to_owned()),
                port: None,
                meta,
                check: Some(Check::Ttl {
                    ttl: config.check_interval * TTL_INTERVALS,
                    pass_every: config.check_interval,
                    deregister_after: config.deregister_critical_after,
                }),
                name,
            }
        }
    }
}

fn specific_ip(ip: IpAddr) -> Option<IpAddr> {
    (!ip.is_unspecified()).then_some(ip)
}

fn tags(config: &ConsulConfig, role: &str, provider: Option<&str>) -> Vec<String> {
    let mut tags = vec![format!("role={role}")];
    if let Some(p) = provider {
        tags.push(format!("provider={p}"));
    }
    tags.extend(config.tags.iter().cloned());
    tags
}

/// `<name>[-<provider>]-<host>-<pid>-<8 random hex>`: unique per process,
/// readable in the Consul UI, and never reused by a restarted process (in a
/// container the pid is the same every time).
pub fn service_id(name: &str, provider: Option<&str>, host: &str) -> String {
    let host: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let random = uuid::Uuid::new_v4().simple().to_string();
    let random = random.get(..8).unwrap_or(&random);
    let pid = std::process::id();
    match provider {
        Some(p) => format!("{name}-{p}-{host}-{pid}-{random}"),
        None => format!("{name}-{host}-{pid}-{random}"),
    }
}

/// This machine's host name (the pod name in Kubernetes): `HOSTNAME`, else
/// the kernel's, else `localhost`.
pub fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// The agent's HTTP API.
#[derive(Debug, Clone)]
pub struct ConsulAgent {
    http: reqwest::Client,
    base: Url,
    token: Option<String>,
}

impl ConsulAgent {
    /// The agent at `config.address`, with `config.token`, else
    /// `CONSUL_HTTP_TOKEN`, as the ACL token.
    pub fn from_config(config: &ConsulConfig) -> Result<ConsulAgent, DiscoveryError> {
        let token = config
            .token
            .as_ref()
            .map(|t| t.expose().to_owned())
            .or_else(|| std::env::var(TOKEN_ENV).ok())
            .filter(|t| !t.is_empty());
        ConsulAgent::new(&config.address, token)
    }

    pub fn new(address: &str, token: Option<String>) -> Result<ConsulAgent, DiscoveryError> {
        let bad = |reason: String| DiscoveryError::Address {
            address: address.to_owned(),
            reason,
        };
        let base = Url::parse(address).map_err(|e| bad(e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(bad("expected an http:// or https:// URL".to_owned()));
        }
        let http = reqwest::Client::builder()
            .timeout(CALL_TIMEOUT)
            .build()
            .map_err(|e| DiscoveryError::Client(e.to_string()))?;
        Ok(ConsulAgent { http, base, token })
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    async fn put(
        &self,
        op: &'static str,
        url: Url,
        body: Option<Vec<u8>>,
    ) -> Result<(), DiscoveryError> {
        let mut req = self.http.put(url);
        if let Some(t) = &self.token {
            req = req.header("x-consul-token", t);
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        let res = req.send().await.map_err(|e| DiscoveryError::Transport {
            op,
            message: error_chain(&e),
            unsent: e.is_connect(),
        })?;
        let status = res.status();
        if status.is_success() {
            return Ok(());
        }
        let mut body = res.text().await.unwrap_or_default();
        if let Some((cut, _)) = body.char_indices().nth(300) {
            body.truncate(cut);
        }
        Err(DiscoveryError::Status {
            op,
            status: status.as_u16(),
            body: body.trim().to_owned(),
        })
    }

    /// `PUT /v1/agent/service/register` (replaces a registration of the same id).
    pub async fn register(&self, r: &Registration) -> Result<(), DiscoveryError> {
        let body = serde_json::to_vec(&r.to_agent_json()).unwrap_or_default();
        self.put(
            "service register",
            self.url(&["v1", "agent", "service", "register"]),
            Some(body),
        )
        .await
    }

    /// `PUT /v1/agent/service/deregister/{id}`.
    pub async fn deregister(&self, id: &str) -> Result<(), DiscoveryError> {
        self.put(
            "service deregister",
            self.url(&["v1", "agent", "service", "deregister", id]),
            None,
        )
        .await
    }

    /// `PUT /v1/agent/check/pass/{check_id}`.
    pub async fn pass_ttl(&self, check_id: &str) -> Result<(), DiscoveryError> {
        self.put(
            "check pass",
            self.url(&["v1", "agent", "check", "pass", check_id]),
            None,
        )
        .await
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

/// A registration kept alive in the background.
pub struct Registrar {
    agent: Arc<ConsulAgent>,
    id: String,
    /// A register request may have reached the agent.
    reached: Arc<AtomicBool>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Registrar {
    /// Registers `registration` in the background, retrying with backoff
    /// (1 s doubling to 30 s) while the agent is unreachable or refuses,
    /// each failure logged as a warning; then passes the TTL check, if any,
    /// and registers again when a pass fails (the agent lost the service).
    pub fn spawn(agent: ConsulAgent, registration: Registration) -> Registrar {
        let agent = Arc::new(agent);
        let stop = CancellationToken::new();
        let id = registration.id.clone();
        let reached = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(keep_registered(
            agent.clone(),
            registration,
            stop.clone(),
            reached.clone(),
        ));
        Registrar {
            agent,
            id,
            reached,
            stop,
            task,
        }
    }

    /// The registered service id.
    pub fn service_id(&self) -> &str {
        &self.id
    }

    /// Stops registering and passing checks, then deregisters; gives up
    /// (with a warning: the agent removes the service once its check has
    /// been critical for `deregister_critical_after`) after `timeout`.
    pub async fn deregister(self, timeout: Duration) {
        self.stop.cancel();
        // The loop ends at its next await point; a registration in flight
        // is abandoned (and the deregistration below covers it if it landed).
        self.task.abort();
        let _ = self.task.await;
        if !self.reached.load(Ordering::SeqCst) {
            tracing::debug!(service_id = %self.id, "never registered with Consul: nothing to deregister");
            return;
        }
        match tokio::time::timeout(timeout, self.agent.deregister(&self.id)).await {
            Ok(Ok(())) => tracing::info!(service_id = %self.id, "deregistered from Consul"),
            Ok(Err(e)) => {
                tracing::warn!(service_id = %self.id, error = %e, "cannot deregister from Consul; the agent removes the service once its check is critical")
            }
            Err(_) => {
                tracing::warn!(service_id = %self.id, ?timeout, "Consul deregistration timed out; the agent removes the service once its check is critical")
            }
        }
    }
}

async fn keep_registered(
    agent: Arc<ConsulAgent>,
    r: Registration,
    stop: CancellationToken,
    reached: Arc<AtomicBool>,
) {
    let pass_every = match &r.check {
        Some(Check::Ttl { pass_every, .. }) => Some(*pass_every),
        _ => None,
    };
    let check_id = r.check_id();
    let mut registered = false;
    // An earlier register call reached the agent (success, or an answer
    // or timeout that leaves it unknown).
    let mut may_have_landed = false;
    let mut backoff = RETRY_FIRST;
    loop {
        if !registered {
            // Set before the call: abandoned mid-flight (shutdown), it may
            // still land. Cleared when the agent cannot have seen it.
            reached.store(true, Ordering::SeqCst);
            let attempt = agent.register(&r).await;
            if matches!(attempt, Err(DiscoveryError::Transport { unsent: true, .. })) {
                reached.store(may_have_landed, Ordering::SeqCst);
            } else {
                may_have_landed = true;
            }
            match attempt {
                Ok(()) => {
                    tracing::info!(service = %r.name, service_id = %r.id, address = %r.address, port = ?r.port, tags = ?r.tags, "registered with Consul");
                    registered = true;
                    backoff = RETRY_FIRST;
                }
                Err(e) => {
                    tracing::warn!(service_id = %r.id, error = %e, retry_in = ?backoff, "cannot register with Consul; serving anyway and retrying in the background");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stop.cancelled() => return,
                    }
                    backoff = (backoff * 2).min(RETRY_MAX);
                    continue;
                }
            }
        }
        let Some(every) = pass_every else {
            stop.cancelled().await;
            return;
        };
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.cancelled() => return,
        }
        if let Err(e) = agent.pass_ttl(&check_id).await {
            tracing::warn!(service_id = %r.id, error = %e, "cannot pass the Consul TTL check; registering again");
            registered = false;
        }
    }
}

#[cfg(test)]
mod tests;
