//! The configuration schema. Every struct denies unknown fields so a typo is
//! an error, not a silently ignored key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Secret;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    /// Absent: the in-process bus (router and workers in one process).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bus: Option<BusConfig>,
    #[serde(default)]
    pub providers: Vec<ProviderConfig>,
    #[serde(default)]
    pub models: Vec<ModelConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    #[serde(default = "default_http_addr")]
    pub http_addr: SocketAddr,
    #[serde(default = "default_grpc_addr")]
    pub grpc_addr: SocketAddr,
    /// Larger request bodies get 413 before they are read whole.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: u64,
    /// Whole-request deadline at the router, across every attempt.
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// How long in-flight requests may finish after SIGTERM/SIGINT.
    #[serde(default = "default_shutdown_grace", with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BusConfig {
    /// e.g. nats://127.0.0.1:4222
    pub nats_url: String,
    /// Subjects are `<prefix>.work.<provider>` and `<prefix>.ctl.<worker-id>`;
    /// lets several gateways share one NATS.
    #[serde(default = "default_subject_prefix")]
    pub subject_prefix: String,
    /// A worker that has not acknowledged a request within this long is taken
    /// as lost, and the request is sent again to another worker.
    #[serde(default = "default_ack_timeout", with = "humantime_serde")]
    pub ack_timeout: Duration,
    /// Workers send a heartbeat this often while the upstream is silent; three
    /// missed heartbeats mean the worker is lost.
    #[serde(default = "default_heartbeat_interval", with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// Optional credentials: a token ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
    /// ... or a user and password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderKind {
    /// OpenAI's chat completions wire format; also every OpenAI-compatible
    /// vendor (Mistral, DeepSeek, Groq, Together, xAI, vLLM, Ollama, ...).
    Openai,
    /// Built-in offline provider that answers without any network.
    Demo,
}

impl ProviderKind {
    pub const ALL: &'static [&'static str] = &["openai", "demo"];

    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Openai => "openai",
            ProviderKind::Demo => "demo",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Referenced by routes and by `switchyard worker --provider`.
    pub name: String,
    pub kind: ProviderKind,
    /// Defaults per kind (openai: https://api.openai.com/v1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// The key itself (use `${ENV_VAR}` interpolation rather than a literal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<Secret>,
    /// Name of the environment variable holding the key, read by the worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    /// Whole call when not streamed, time to first byte when streamed.
    #[serde(default = "default_provider_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// In-flight upstream calls per worker process.
    #[serde(default = "default_max_concurrency")]
    pub max_concurrency: usize,
    /// Requests that may wait for a free slot; past this the worker answers
    /// "overloaded" at once so the route can pick another target.
    #[serde(default = "default_max_queue")]
    pub max_queue: usize,
    /// Extra HTTP headers sent upstream with every request.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Upstream models this provider exposes directly, listed by
    /// `GET /v1/models` as `<provider>/<model>`. Any `<provider>/<model>` may
    /// be asked for, listed or not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
}

impl ProviderConfig {
    /// The key the worker sends upstream: `api_key`, else `api_key_env`'s
    /// variable. `None` when neither gives one.
    pub fn resolve_api_key(&self) -> Option<Secret> {
        if let Some(k) = &self.api_key {
            return Some(k.clone());
        }
        let var = self.api_key_env.as_ref()?;
        std::env::var(var).ok().filter(|v| !v.is_empty()).map(Secret::new)
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Try routes in order; move to the next on a retryable failure.
    #[default]
    Fallback,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// The name clients ask for.
    pub name: String,
    #[serde(default)]
    pub strategy: Strategy,
    pub routes: Vec<RouteConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// A configured provider's name.
    pub provider: String,
    /// The model name sent upstream.
    pub model: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            http_addr: default_http_addr(),
            grpc_addr: default_grpc_addr(),
            max_body_bytes: default_max_body_bytes(),
            request_timeout: default_request_timeout(),
            shutdown_grace: default_shutdown_grace(),
        }
    }
}

fn default_http_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_grpc_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 50051))
}
fn default_max_body_bytes() -> u64 {
    32 * 1024 * 1024
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(600)
}
fn default_shutdown_grace() -> Duration {
    Duration::from_secs(30)
}
pub fn default_subject_prefix() -> String {
    "switchyard".to_owned()
}
pub fn default_ack_timeout() -> Duration {
    Duration::from_secs(2)
}
pub fn default_heartbeat_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_provider_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_max_concurrency() -> usize {
    256
}
fn default_max_queue() -> usize {
    1024
}
