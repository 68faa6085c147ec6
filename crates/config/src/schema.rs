//! The configuration schema. Every struct denies unknown fields so a typo is
//! an error, not a silently ignored key.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize, Serializer};

use crate::Secret;
use crate::kinds::ProviderKind;
use crate::spend::{AlertsConfig, BudgetsConfig, LedgerConfig, PricingConfig, SpendCapConfig};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
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
    /// Target health: circuit breakers, cooldowns, the `fastest` strategy.
    #[serde(default)]
    pub routing: RoutingConfig,
    /// Traces (OTLP export, sampling) and what spans may record.
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    /// Service discovery: registration with a Consul agent (off unless
    /// `discovery.consul` is present).
    #[serde(default)]
    pub discovery: DiscoveryConfig,
    /// The exact-match response cache (off unless `cache.enabled`).
    #[serde(default)]
    pub cache: CacheConfig,
    /// Usage records: where every request's tokens and cost are kept.
    #[serde(default)]
    pub ledger: LedgerConfig,
    /// Spend limits per key, team, user, model, provider or in all.
    #[serde(default)]
    pub budgets: BudgetsConfig,
    /// Where budget and spend-spike alerts go, and the spike rules.
    #[serde(default)]
    pub alerts: AlertsConfig,
    /// Price overrides and additions to the bundled price table.
    #[serde(default)]
    pub pricing: PricingConfig,
    /// Stored Responses API responses, for `previous_response_id` (off
    /// unless `responses.store` says where).
    #[serde(default)]
    pub responses: ResponsesConfig,
    /// Content rules applied to prompts before they leave the gateway
    /// (docs/guardrails.md).
    #[serde(default, skip_serializing_if = "GuardrailsConfig::is_empty")]
    pub guardrails: GuardrailsConfig,
    /// Who may call: virtual keys, JWTs, model access rules (docs/auth.md).
    #[serde(default, skip_serializing_if = "crate::AuthConfig::is_default")]
    pub auth: crate::AuthConfig,
    /// Requests and tokens per minute, shared by every router.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rate_limits: Vec<crate::RateLimitConfig>,
}

/// `guardrails`: detectors run over every chat prompt (all three front
/// ends and gRPC), each with an action.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GuardrailsConfig {
    #[serde(default)]
    pub rules: Vec<GuardrailRule>,
}

impl GuardrailsConfig {
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

/// One guardrail: a detector, what to do on a match, and whom it applies to.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GuardrailRule {
    /// Names the rule in errors and logs; required for `regex`, else the
    /// detector's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `card`, `ssn`, `iban`, `email`, `phone`, `secret`, or `regex`.
    pub detector: String,
    /// The regular expression of a `regex` rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    pub action: GuardrailAction,
    /// Models (as the client names them) the rule applies to; empty: all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
    /// Teams (the caller's; `x-switchyard-team` on an open gateway) the
    /// rule applies to; empty: all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub teams: Vec<String>,
    /// Virtual key names the rule applies to; empty: all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<String>,
    /// What the rule scans: the prompt (the default, so configs written
    /// before answers were scanned keep their meaning), the answer, or both.
    #[serde(default, skip_serializing_if = "GuardrailScope::is_request")]
    pub applies_to: GuardrailScope,
}

/// `guardrails.rules[].applies_to`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum GuardrailScope {
    /// The prompt, before it leaves the gateway.
    #[default]
    Request,
    /// The model's answer (unary and streamed), before the client or the
    /// response cache sees it.
    Response,
    /// Both.
    Both,
}

impl GuardrailScope {
    pub fn is_request(&self) -> bool {
        *self == GuardrailScope::Request
    }

    /// Whether the rule scans prompts.
    pub fn request(self) -> bool {
        matches!(self, GuardrailScope::Request | GuardrailScope::Both)
    }

    /// Whether the rule scans answers.
    pub fn response(self) -> bool {
        matches!(self, GuardrailScope::Response | GuardrailScope::Both)
    }
}

impl GuardrailRule {
    /// The name errors and logs use.
    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.detector)
    }
}

/// What a guardrail does with a match.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum GuardrailAction {
    /// A 400 naming the rule and detector; the match is never echoed.
    Block,
    /// The match is replaced by `[REDACTED:<detector>]` before the request
    /// leaves the gateway.
    Redact,
    /// Logged (rule, detector, count; never the match); the request goes on.
    Log,
}

/// The detectors `guardrails.rules[].detector` names (besides `regex`).
pub const GUARDRAIL_DETECTORS: &[&str] = &["card", "ssn", "iban", "email", "phone", "secret"];

/// Stored responses of `POST /v1/responses` (docs/configuration.md,
/// "responses"): what `previous_response_id`, `GET /v1/responses/{id}` and
/// `DELETE /v1/responses/{id}` read.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ResponsesConfig {
    #[serde(default)]
    pub store: ResponseStoreKind,
    /// How long a stored response is kept after it was answered.
    #[serde(default = "default_responses_ttl", with = "humantime_serde")]
    pub ttl: Duration,
    /// A response whose stored record (the conversation up to it and its
    /// answer, as JSON) is larger is not stored.
    #[serde(default = "default_responses_max_bytes")]
    pub max_bytes_per_response: u64,
    /// The SQLite file (`store: local`). Absent: `responses.db` in
    /// `$SWITCHYARD_DATA_DIR`, else `$XDG_DATA_HOME/switchyard`, else
    /// `~/.local/share/switchyard`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<std::path::PathBuf>,
    /// The JetStream key-value bucket (`store: jetstream`).
    #[serde(default = "default_responses_bucket")]
    pub bucket: String,
    /// Copies of the bucket in a NATS cluster (1 to 5).
    #[serde(default = "default_responses_replicas")]
    pub replicas: usize,
}

impl Default for ResponsesConfig {
    fn default() -> Self {
        Self {
            store: ResponseStoreKind::default(),
            ttl: default_responses_ttl(),
            max_bytes_per_response: default_responses_max_bytes(),
            path: None,
            bucket: default_responses_bucket(),
            replicas: default_responses_replicas(),
        }
    }
}

fn default_responses_ttl() -> Duration {
    Duration::from_secs(30 * 24 * 3600)
}

fn default_responses_max_bytes() -> u64 {
    // JetStream's default largest message is 1 MiB; a record must fit in
    // one, with room for the headers.
    1000 << 10
}

fn default_responses_bucket() -> String {
    "switchyard_responses".to_owned()
}

fn default_responses_replicas() -> usize {
    1
}

/// Where responses are kept.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ResponseStoreKind {
    /// Stateless: nothing is stored, `previous_response_id` is a 400.
    #[default]
    Off,
    /// `jetstream` when `bus` is configured (routers scaled out share
    /// it), else `local`.
    Auto,
    /// A SQLite file of this process (the embedded default).
    Local,
    /// A key-value bucket on the bus's NATS, shared by every router.
    Jetstream,
}

/// The exact-match response cache (docs/configuration.md, "Caching").
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default)]
    pub backend: CacheBackend,
    /// How long an entry is served; `models[].cache.ttl` overrides it.
    #[serde(default = "default_cache_ttl", with = "humantime_serde")]
    pub ttl: Duration,
    /// Answers larger than this (encoded) are not stored.
    #[serde(default = "default_cache_max_entry_bytes")]
    pub max_entry_bytes: u64,
    /// Bytes the memory backend holds before it evicts.
    #[serde(default = "default_cache_max_memory_bytes")]
    pub max_memory_bytes: u64,
    /// Store answers that call tools.
    #[serde(default)]
    pub cache_tool_calls: bool,
    /// Serve and store requests with `temperature` above 0.
    #[serde(default)]
    pub cache_nonzero_temperature: bool,
    /// One namespace every tenant shares (they see each other's answers).
    /// Absent: each tenant has its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_namespace: Option<String>,
    /// The Redis server, for `backend: redis`.
    #[serde(default)]
    pub redis: RedisCacheConfig,
    /// Memory backend: write entries through to a local SQLite file (off
    /// the request path) and load the unexpired ones at start.
    #[serde(default)]
    pub persist: bool,
    /// The file for `persist`. Absent: `cache.db` in
    /// `$SWITCHYARD_DATA_DIR`, else `$XDG_DATA_HOME/switchyard`, else
    /// `~/.local/share/switchyard`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persist_path: Option<std::path::PathBuf>,
    /// Answers for prompts that mean the same (off unless
    /// `cache.semantic.enabled`).
    #[serde(default)]
    pub semantic: SemanticCacheConfig,
}

/// The semantic cache: a chat request that misses the exact cache is
/// embedded (through the gateway's own embeddings route) and answered
/// with the stored answer of an earlier prompt of the same tenant, with
/// the same model and parameters, whose embedding is at least `threshold`
/// similar (cosine).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SemanticCacheConfig {
    #[serde(default)]
    pub enabled: bool,
    /// The model (as clients name it: `models[].name` or
    /// `provider/model`) the prompts are embedded with.
    #[serde(default)]
    pub embedding_model: String,
    /// Least cosine similarity that counts as the same prompt.
    #[serde(default = "default_semantic_threshold")]
    pub threshold: f64,
    /// Embeddings kept in all (oldest evicted first).
    #[serde(default = "default_semantic_max_entries")]
    pub max_entries: usize,
    /// Embeddings kept per tenant and model/parameters (each lookup
    /// compares against all of one such list).
    #[serde(default = "default_semantic_max_bucket_entries")]
    pub max_bucket_entries: usize,
    /// Longer prompts (their text, in bytes) are only cached exactly.
    #[serde(default = "default_semantic_max_prompt_bytes")]
    pub max_prompt_bytes: usize,
    /// Bound on embedding a prompt; past it the request goes on as a miss.
    #[serde(default = "default_semantic_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for SemanticCacheConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            embedding_model: String::new(),
            threshold: default_semantic_threshold(),
            max_entries: default_semantic_max_entries(),
            max_bucket_entries: default_semantic_max_bucket_entries(),
            max_prompt_bytes: default_semantic_max_prompt_bytes(),
            timeout: default_semantic_timeout(),
        }
    }
}

fn default_semantic_threshold() -> f64 {
    0.95
}

fn default_semantic_max_entries() -> usize {
    10_000
}

fn default_semantic_max_bucket_entries() -> usize {
    1_000
}

fn default_semantic_max_prompt_bytes() -> usize {
    16 << 10
}

fn default_semantic_timeout() -> Duration {
    Duration::from_secs(2)
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RedisCacheConfig {
    #[serde(default = "default_redis_url")]
    pub url: String,
    /// Bound on every cache call (and on connecting); past it the request
    /// is answered as a miss.
    #[serde(default = "default_redis_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Prepended to every key.
    #[serde(default = "default_redis_key_prefix")]
    pub key_prefix: String,
}

impl Default for RedisCacheConfig {
    fn default() -> Self {
        Self {
            url: default_redis_url(),
            timeout: default_redis_timeout(),
            key_prefix: default_redis_key_prefix(),
        }
    }
}

fn default_redis_url() -> String {
    "redis://127.0.0.1:6379".to_owned()
}

fn default_redis_timeout() -> Duration {
    Duration::from_millis(100)
}

fn default_redis_key_prefix() -> String {
    "switchyard:cache:".to_owned()
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CacheBackend {
    /// In process memory, per router.
    #[default]
    Memory,
    /// A Redis server every router shares (`cache.redis`).
    Redis,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            backend: CacheBackend::default(),
            ttl: default_cache_ttl(),
            max_entry_bytes: default_cache_max_entry_bytes(),
            max_memory_bytes: default_cache_max_memory_bytes(),
            cache_tool_calls: false,
            cache_nonzero_temperature: false,
            shared_namespace: None,
            redis: RedisCacheConfig::default(),
            persist: false,
            persist_path: None,
            semantic: SemanticCacheConfig::default(),
        }
    }
}

fn default_cache_ttl() -> Duration {
    Duration::from_secs(3600)
}

fn default_cache_max_entry_bytes() -> u64 {
    1 << 20
}

fn default_cache_max_memory_bytes() -> u64 {
    256 << 20
}

/// A model's override of the cache settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelCacheConfig {
    /// Absent: `cache.enabled`. `false` turns the cache off for this model
    /// (`true` has no effect while `cache.enabled` is false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Absent: `cache.ttl`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "humantime_serde::option"
    )]
    pub ttl: Option<Duration>,
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
    /// After SIGTERM/SIGINT, how long the router keeps accepting
    /// connections (and serving them) while reporting not-ready, so load
    /// balancers and Kubernetes endpoints stop sending traffic before the
    /// listeners close. Zero: close at once.
    #[serde(default = "default_shutdown_delay", with = "humantime_serde")]
    pub shutdown_delay: Duration,
}

/// `discovery:` service discovery settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DiscoveryConfig {
    /// Present: every `serve`, `router` and `worker` process registers itself
    /// with the Consul agent and deregisters on shutdown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consul: Option<ConsulConfig>,
}

/// `discovery.consul`: registration with a local Consul agent.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConsulConfig {
    /// The agent's HTTP API, e.g. `http://127.0.0.1:8500`.
    #[serde(default = "default_consul_address")]
    pub address: String,
    /// ACL token sent as `X-Consul-Token`. Absent: `CONSUL_HTTP_TOKEN` from
    /// the environment, if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
    /// Service name of routers (and `serve`).
    #[serde(default = "default_router_service_name")]
    pub router_service_name: String,
    /// Service name of workers.
    #[serde(default = "default_worker_service_name")]
    pub worker_service_name: String,
    /// Extra tags, after the built-in `role=...` (and `provider=...`) ones.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// How often the agent checks a router (gRPC health), and how often a
    /// worker reports itself alive (TTL check of 3x this).
    #[serde(default = "default_check_interval", with = "humantime_serde")]
    pub check_interval: Duration,
    /// The agent removes a registration whose check has been critical this
    /// long (a process that died without deregistering).
    #[serde(
        default = "default_deregister_critical_after",
        with = "humantime_serde"
    )]
    pub deregister_critical_after: Duration,
    /// The address registered for this process (an IP or a DNS name).
    /// Absent: the IP of `server.http_addr` when it is a specific one, else
    /// the host name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertise_address: Option<String>,
}

impl Default for ConsulConfig {
    fn default() -> Self {
        Self {
            address: default_consul_address(),
            token: None,
            router_service_name: default_router_service_name(),
            worker_service_name: default_worker_service_name(),
            tags: Vec::new(),
            check_interval: default_check_interval(),
            deregister_critical_after: default_deregister_critical_after(),
            advertise_address: None,
        }
    }
}

#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BusConfig {
    /// e.g. nats://127.0.0.1:4222, or several comma-separated. May carry
    /// credentials (`nats://user:pass@host`), so Debug and Serialize redact
    /// them.
    #[serde(serialize_with = "serialize_redacted_url")]
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

/// Whether a provider may keep or train on request data
/// (`providers[].data_collection`).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DataCollectionPolicy {
    #[default]
    Allow,
    Deny,
}

impl DataCollectionPolicy {
    pub fn is_allow(&self) -> bool {
        *self == DataCollectionPolicy::Allow
    }
}

#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Referenced by routes and by `switchyard worker --provider`.
    pub name: String,
    pub kind: ProviderKind,
    /// Defaults per kind (`ProviderKind::default_base_url`).
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
    /// Extra HTTP headers sent upstream with every request. Values may be
    /// credentials (`api-key`, `x-api-key`), so Debug and Serialize redact
    /// them.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        serialize_with = "serialize_redacted_headers"
    )]
    pub headers: BTreeMap<String, String>,
    /// Upstream models this provider exposes directly, listed by
    /// `GET /v1/models` as `<provider>/<model>`. Any `<provider>/<model>` may
    /// be asked for, listed or not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
    /// What to do with a request parameter this provider cannot honour
    /// (`seed` on Anthropic, `n` > 1 on Bedrock, ...). A model's own
    /// `unsupported_params` wins over this.
    #[serde(default)]
    pub unsupported_params: ParamPolicy,
    /// Whether this provider's models take reasoning controls
    /// (`reasoning_effort`, `thinking`, `thinkingBudget`). A model's own
    /// `reasoning` wins over this.
    #[serde(default, skip_serializing_if = "ReasoningMode::is_auto")]
    pub reasoning: ReasoningMode,
    /// `deny`: the provider's terms say it neither keeps nor trains on
    /// request data, so requests with OpenRouter's `provider.data_collection:
    /// deny` may go to it. `allow` (the default) makes no such promise.
    #[serde(default, skip_serializing_if = "DataCollectionPolicy::is_allow")]
    pub data_collection: DataCollectionPolicy,
    /// `azure-openai`: the `api-version` query parameter; `anthropic`: the
    /// `anthropic-version` header. Absent: the kind's documented default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// `bedrock`: the AWS region (else `AWS_REGION` / `AWS_DEFAULT_REGION`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// `bedrock`: AWS credentials for SigV4 signing. Absent: the standard
    /// variables `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_SESSION_TOKEN`. A Bedrock API key (`api_key`/`api_key_env`,
    /// default `AWS_BEARER_TOKEN_BEDROCK`) is used instead when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws: Option<AwsCredentials>,
    /// How `POST /v1/responses` reaches this provider: translated to chat
    /// completions (every kind), or `native`: the client's Responses
    /// request posted to the upstream's own `/responses` endpoint (OpenAI,
    /// Azure OpenAI), so built-in tools and fields the canonical model does
    /// not name survive.
    #[serde(default, skip_serializing_if = "ResponsesMode::is_translate")]
    pub responses: ResponsesMode,
}

/// `providers[].responses`: whether Responses API requests are translated
/// to chat or passed to the upstream's own Responses endpoint.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ResponsesMode {
    #[default]
    Translate,
    Native,
}

impl ResponsesMode {
    pub fn is_translate(&self) -> bool {
        *self == ResponsesMode::Translate
    }
}

/// What happens to a request parameter the target cannot honour, or a value
/// outside the target's range.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ParamPolicy {
    /// Leave it out (out-of-range values are clamped) and say so in the
    /// `x-switchyard-warnings` response header.
    #[default]
    Warn,
    /// Leave it out (or clamp it) without a word.
    Drop,
    /// Refuse the request with a 400 naming the parameter.
    Reject,
}

impl ParamPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            ParamPolicy::Warn => "warn",
            ParamPolicy::Drop => "drop",
            ParamPolicy::Reject => "reject",
        }
    }
}

/// Whether a target model takes a reasoning request (docs/providers.md,
/// "Reasoning and thinking"). A model without reasoning answers 400 to
/// one, so it is dropped, under the parameter policy, for those.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ReasoningMode {
    /// Decided per model name by documented model families (OpenAI's
    /// o-series and GPT-5, Claude from 3.7, Gemini from 2.5); a model
    /// outside them keeps only a control sent in its own format.
    #[default]
    Auto,
    /// Every model here reasons: the request's reasoning is always sent.
    On,
    /// No model here reasons: the request's reasoning is always dropped.
    Off,
}

impl ReasoningMode {
    pub fn is_auto(&self) -> bool {
        *self == ReasoningMode::Auto
    }
}

/// Static AWS credentials (use `${ENV}` interpolation, not literals).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AwsCredentials {
    pub access_key_id: Secret,
    pub secret_access_key: Secret,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_token: Option<Secret>,
}

impl ProviderConfig {
    /// A provider with every optional key at its default (`base_url` is left
    /// unset; loading fills in the kind's default).
    pub fn new(name: impl Into<String>, kind: ProviderKind) -> Self {
        ProviderConfig {
            name: name.into(),
            kind,
            base_url: None,
            api_key: None,
            api_key_env: None,
            timeout: default_provider_timeout(),
            max_concurrency: default_max_concurrency(),
            max_queue: default_max_queue(),
            headers: BTreeMap::new(),
            models: Vec::new(),
            unsupported_params: ParamPolicy::default(),
            reasoning: ReasoningMode::default(),
            data_collection: DataCollectionPolicy::default(),
            api_version: None,
            region: None,
            aws: None,
            responses: ResponsesMode::default(),
        }
    }

    /// The key the worker sends upstream: `api_key`, else `api_key_env`'s
    /// variable, else the kind's usual variable (`ANTHROPIC_API_KEY`, ...).
    /// `None` when none gives one.
    pub fn resolve_api_key(&self) -> Option<Secret> {
        if let Some(k) = &self.api_key {
            return Some(k.clone());
        }
        // The kind's usual variable only when calling the kind's own host:
        // never send OPENAI_API_KEY to a local vLLM behind `kind: openai`.
        let usual = self.kind.key_env().filter(|_| {
            self.base_url
                .as_deref()
                .is_none_or(|u| Some(u) == self.kind.default_base_url())
        });
        let var = self.api_key_env.as_deref().or(usual)?;
        std::env::var(var)
            .ok()
            .filter(|v| !v.is_empty())
            .map(Secret::new)
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Try routes in order; move to the next on a retryable failure.
    #[default]
    Fallback,
    /// Pick the first route at random in proportion to `weight`; the rest
    /// follow in weighted random order as fallbacks.
    Weighted,
    /// Lowest estimated cost of this request first (from `price`); routes
    /// without a price follow in config order.
    Cheapest,
    /// Lowest moving average of time to first token first, with some
    /// exploration so a recovered or unmeasured target is noticed.
    Fastest,
    /// Fewest requests in flight first.
    LeastBusy,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// The name clients ask for.
    pub name: String,
    #[serde(default)]
    pub strategy: Strategy,
    pub routes: Vec<RouteConfig>,
    /// Retries and backoff across this model's routes.
    #[serde(default)]
    pub retry: RetryConfig,
    /// Overrides each route provider's `unsupported_params` for this model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unsupported_params: Option<ParamPolicy>,
    /// Overrides each route provider's `reasoning` for this model's routes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<ReasoningMode>,
    /// Opt-in: start the next route when the first is slow to its first token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hedge: Option<HedgeConfig>,
    /// An attempt that has produced nothing (no first token, no answer)
    /// within this long is abandoned and the next route tried. Absent: only
    /// the provider's own `timeout` applies.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "humantime_serde::option"
    )]
    pub first_token_timeout: Option<Duration>,
    /// Deadline for the whole request across every attempt. Absent:
    /// `server.request_timeout`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "humantime_serde::option"
    )]
    pub timeout: Option<Duration>,
    /// Overrides `cache.enabled` / `cache.ttl` for this model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<ModelCacheConfig>,
    /// Past this spend in its window, requests for this model are served
    /// by `downgrade_to` (a routing step, like a budget's `downgrade`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spend_cap: Option<SpendCapConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts per request, all routes together (the first try counts).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Before trying a target again that already failed this request, wait
    /// `backoff_base * 2^n` (with full jitter), at most `backoff_max`. Moving
    /// to a different target never waits.
    #[serde(default = "default_backoff_base", with = "humantime_serde")]
    pub backoff_base: Duration,
    #[serde(default = "default_backoff_max", with = "humantime_serde")]
    pub backoff_max: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: default_max_attempts(),
            backoff_base: default_backoff_base(),
            backoff_max: default_backoff_max(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HedgeConfig {
    /// Start the next route after this long without a first token: a
    /// duration (`1500ms`), or `p95` for the first target's observed 95th
    /// percentile time to first token (this `min_delay` until measured).
    pub delay: HedgeDelay,
    /// Lower bound for a `p95` delay, and the delay before any measurement.
    #[serde(default = "default_hedge_min_delay", with = "humantime_serde")]
    pub min_delay: Duration,
    /// Extra attempts started by hedging, at most.
    #[serde(default = "default_max_hedges")]
    pub max_hedges: u32,
}

/// `delay:` of a hedge: a fixed duration or the observed p95.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HedgeDelay {
    Fixed(Duration),
    P95,
}

impl fmt::Display for HedgeDelay {
    /// The spelling `delay:` accepts, so a value round-trips through YAML.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HedgeDelay::Fixed(d) => write!(f, "{}", humantime::format_duration(*d)),
            HedgeDelay::P95 => f.write_str("p95"),
        }
    }
}

/// A `delay:` that is neither `p95` nor a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not a duration such as `1500ms` or `2s`, nor `p95`")]
pub struct HedgeDelayParseError {
    pub text: String,
}

impl std::str::FromStr for HedgeDelay {
    type Err = HedgeDelayParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let t = text.trim();
        if t.eq_ignore_ascii_case("p95") {
            return Ok(HedgeDelay::P95);
        }
        humantime::parse_duration(t)
            .map(HedgeDelay::Fixed)
            .map_err(|_| HedgeDelayParseError {
                text: text.to_owned(),
            })
    }
}

impl Serialize for HedgeDelay {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HedgeDelay {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Capability {
    /// Function/tool calling.
    Tools,
    /// Image inputs.
    Vision,
    /// `response_format: json_schema` (structured output).
    JsonSchema,
}

impl Capability {
    pub const ALL: &'static [Capability] = &[
        Capability::Tools,
        Capability::Vision,
        Capability::JsonSchema,
    ];

    /// The spelling used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Capability::Tools => "tools",
            Capability::Vision => "vision",
            Capability::JsonSchema => "json_schema",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// A configured provider's name.
    pub provider: String,
    /// The model name sent upstream.
    pub model: String,
    /// Share of traffic under the `weighted` strategy.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// The model's context window in tokens. A request whose estimated
    /// prompt plus `max_tokens` exceeds it is not sent here. Absent: unknown,
    /// never filtered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_window: Option<u32>,
    /// What this target can do. Absent: unknown, never filtered; present: a
    /// request needing a capability not listed is not sent here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Vec<Capability>>,
    /// USD per million tokens, for the `cheapest` strategy (until the
    /// bundled price catalog covers the model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<PriceConfig>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PriceConfig {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RoutingConfig {
    #[serde(default)]
    pub breaker: BreakerConfig,
    /// How long a target rests after a 429 or "overloaded" answer that gave
    /// no retry-after.
    #[serde(default = "default_cooldown", with = "humantime_serde")]
    pub default_cooldown: Duration,
    /// Share of `fastest` requests that try a random target first, so a
    /// target that recovered (or was never measured) gets noticed.
    #[serde(default = "default_exploration")]
    pub exploration: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BreakerConfig {
    /// Consecutive failures that open a target's breaker.
    #[serde(default = "default_failure_threshold")]
    pub failure_threshold: u32,
    /// How long an open breaker keeps the target out before one probe
    /// request is let through (half-open).
    #[serde(default = "default_open_for", with = "humantime_serde")]
    pub open_for: Duration,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        Self {
            breaker: BreakerConfig::default(),
            default_cooldown: default_cooldown(),
            exploration: default_exploration(),
        }
    }
}

impl RouteConfig {
    /// A route with every optional key at its default.
    pub fn new(provider: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            provider: provider.into(),
            model: model.into(),
            weight: default_weight(),
            context_window: None,
            capabilities: None,
            price: None,
        }
    }
}

impl ModelConfig {
    /// A `fallback` model over `routes` with every optional key at its default.
    pub fn new(name: impl Into<String>, routes: Vec<RouteConfig>) -> Self {
        Self {
            name: name.into(),
            strategy: Strategy::default(),
            routes,
            retry: RetryConfig::default(),
            unsupported_params: None,
            reasoning: None,
            hedge: None,
            first_token_timeout: None,
            timeout: None,
            cache: None,
            spend_cap: None,
        }
    }
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: default_failure_threshold(),
            open_for: default_open_for(),
        }
    }
}

/// OpenTelemetry traces. The standard `OTEL_*` environment variables win
/// over these keys, so one container image can be pointed at a collector
/// without editing its config.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Share of new traces recorded (0 to 1). Requests that arrive with a
    /// `traceparent` follow their caller's decision (parent-based sampling).
    #[serde(default = "default_sampling_ratio")]
    pub sampling_ratio: f64,
    /// Record prompts and completions as span events. Off by default: they
    /// are user data and traces are often kept longer and read more widely
    /// than the data itself.
    #[serde(default)]
    pub record_content: bool,
    /// OTLP collector address (`http://host:4317` for gRPC, `http://host:4318`
    /// for HTTP). Absent and no `OTEL_EXPORTER_OTLP_*ENDPOINT`: no export.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otlp_endpoint: Option<String>,
    #[serde(default)]
    pub otlp_protocol: OtlpProtocol,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            sampling_ratio: default_sampling_ratio(),
            record_content: false,
            otlp_endpoint: None,
            otlp_protocol: OtlpProtocol::default(),
        }
    }
}

/// OTLP transport: gRPC (port 4317) or HTTP with protobuf bodies (4318).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum OtlpProtocol {
    #[default]
    Grpc,
    Http,
}

impl Config {
    /// The provider named `name`.
    pub fn provider(&self, name: &str) -> Option<&ProviderConfig> {
        self.providers.iter().find(|p| p.name == name)
    }

    /// The `models[]` entry named `name`.
    pub fn model(&self, name: &str) -> Option<&ModelConfig> {
        self.models.iter().find(|m| m.name == name)
    }
}

impl BusConfig {
    /// A NATS bus at `nats_url` with every other key at its default.
    pub fn new(nats_url: impl Into<String>) -> Self {
        BusConfig {
            nats_url: nats_url.into(),
            subject_prefix: default_subject_prefix(),
            ack_timeout: default_ack_timeout(),
            heartbeat_interval: default_heartbeat_interval(),
            token: None,
            user: None,
            password: None,
        }
    }
}

impl fmt::Debug for BusConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BusConfig")
            .field("nats_url", &redact_url_credentials(&self.nats_url))
            .field("subject_prefix", &self.subject_prefix)
            .field("ack_timeout", &self.ack_timeout)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("token", &self.token)
            .field("user", &self.user)
            .field("password", &self.password)
            .finish()
    }
}

impl fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: BTreeMap<&str, &str> = self
            .headers
            .keys()
            .map(|k| (k.as_str(), REDACTED))
            .collect();
        f.debug_struct("ProviderConfig")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key)
            .field("api_key_env", &self.api_key_env)
            .field("timeout", &self.timeout)
            .field("max_concurrency", &self.max_concurrency)
            .field("max_queue", &self.max_queue)
            .field("headers", &headers)
            .field("models", &self.models)
            .field("responses", &self.responses)
            .finish()
    }
}

const REDACTED: &str = "[redacted]";

/// Replaces the user-info of each comma-separated URL: a password, or a
/// bare token (`nats://token@host`).
pub(crate) fn redact_url_credentials(urls: &str) -> String {
    urls.split(',')
        .map(|u| {
            let Some(scheme_end) = u.find("://").map(|p| p + 3) else {
                return u.to_owned();
            };
            let authority_end = u[scheme_end..]
                .find('/')
                .map_or(u.len(), |p| scheme_end + p);
            let Some(at) = u[scheme_end..authority_end]
                .rfind('@')
                .map(|p| scheme_end + p)
            else {
                return u.to_owned();
            };
            let userinfo = &u[scheme_end..at];
            let redacted = match userinfo.split_once(':') {
                Some((user, _)) => format!("{user}:{REDACTED}"),
                None => REDACTED.to_owned(),
            };
            format!("{}{redacted}{}", &u[..scheme_end], &u[at..])
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn serialize_redacted_url<S: Serializer>(url: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&redact_url_credentials(url))
}

fn serialize_redacted_headers<S: Serializer>(
    headers: &BTreeMap<String, String>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_map(headers.keys().map(|k| (k, REDACTED)))
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            http_addr: default_http_addr(),
            grpc_addr: default_grpc_addr(),
            max_body_bytes: default_max_body_bytes(),
            request_timeout: default_request_timeout(),
            shutdown_grace: default_shutdown_grace(),
            shutdown_delay: default_shutdown_delay(),
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
fn default_shutdown_delay() -> Duration {
    Duration::ZERO
}
/// Where `serve` keeps its local files (the usage ledger, the persisted
/// cache) unless the config names a path: `$SWITCHYARD_DATA_DIR`, else
/// `switchyard` under the XDG data directory (`~/.local/share`).
pub fn data_dir() -> std::path::PathBuf {
    use std::path::PathBuf;
    std::env::var_os("SWITCHYARD_DATA_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_DATA_HOME").map(|d| PathBuf::from(d).join("switchyard")))
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share/switchyard"))
        })
        .unwrap_or_else(|| PathBuf::from("."))
}

pub fn default_consul_address() -> String {
    "http://127.0.0.1:8500".to_owned()
}
pub fn default_router_service_name() -> String {
    "switchyard-router".to_owned()
}
pub fn default_worker_service_name() -> String {
    "switchyard-worker".to_owned()
}
fn default_check_interval() -> Duration {
    Duration::from_secs(10)
}
fn default_deregister_critical_after() -> Duration {
    Duration::from_secs(60)
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

fn default_max_attempts() -> u32 {
    4
}
fn default_backoff_base() -> Duration {
    Duration::from_millis(50)
}
fn default_backoff_max() -> Duration {
    Duration::from_secs(2)
}
fn default_hedge_min_delay() -> Duration {
    Duration::from_millis(500)
}
fn default_max_hedges() -> u32 {
    1
}
fn default_weight() -> u32 {
    1
}
fn default_cooldown() -> Duration {
    Duration::from_secs(5)
}
fn default_exploration() -> f64 {
    0.05
}
fn default_failure_threshold() -> u32 {
    5
}
fn default_open_for() -> Duration {
    Duration::from_secs(30)
}
fn default_sampling_ratio() -> f64 {
    1.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hedge_delay_parses() {
        assert_eq!("p95".parse(), Ok(HedgeDelay::P95));
        assert_eq!(" P95 ".parse(), Ok(HedgeDelay::P95));
        assert_eq!(
            "1500ms".parse(),
            Ok(HedgeDelay::Fixed(Duration::from_millis(1500)))
        );
        assert_eq!(
            "1s 500ms".parse(),
            Ok(HedgeDelay::Fixed(Duration::from_millis(1500)))
        );
        for garbage in ["", "p99", "fast", "1500", "-1s", "p95ms"] {
            let e = garbage.parse::<HedgeDelay>().unwrap_err();
            assert_eq!(e.text, garbage);
            assert!(e.to_string().contains("nor `p95`"), "{e}");
        }
    }

    #[test]
    fn hedge_delay_round_trips() {
        for d in [
            HedgeDelay::P95,
            HedgeDelay::Fixed(Duration::from_millis(1500)),
            HedgeDelay::Fixed(Duration::from_secs(90)),
        ] {
            assert_eq!(d.to_string().parse(), Ok(d));
            let yaml = serde_norway::to_string(&d).unwrap();
            assert_eq!(serde_norway::from_str::<HedgeDelay>(&yaml).unwrap(), d);
        }
        assert_eq!(
            HedgeDelay::Fixed(Duration::from_millis(1500)).to_string(),
            "1s 500ms"
        );
    }

    #[test]
    fn capability_spelling_matches_serde() {
        for cap in Capability::ALL {
            let yaml = serde_norway::to_string(cap).unwrap();
            assert_eq!(yaml.trim(), cap.as_str());
        }
    }
}
