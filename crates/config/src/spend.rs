//! Spend: the usage ledger, budgets, spend alerts and price overrides
//! (docs/configuration.md, "Cost, ledger and budgets").

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use switchyard_pricing::{PriceEntry, Usd};

use crate::Secret;

/// Where usage records go (docs/ledger.md).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LedgerConfig {
    /// `false`: no usage records (costs are still computed and reported,
    /// budgets then count only this process's spend since it started).
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub backend: LedgerBackend,
    /// The local ledger file (`backend: local`). Absent: `ledger.db` in
    /// `$SWITCHYARD_DATA_DIR`, else `$XDG_DATA_HOME/switchyard`, else
    /// `~/.local/share/switchyard`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// The JetStream usage stream (`backend: jetstream`).
    #[serde(default)]
    pub stream: UsageStreamConfig,
    /// The PostgreSQL database the ledger writer loads the stream into;
    /// the admin API's usage queries read it when the backend is
    /// `jetstream`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<PostgresConfig>,
    /// Days in usage reports (`group_by=day`) begin at midnight here.
    #[serde(default = "utc")]
    pub time_zone: String,
    /// This process's name in usage records. Absent: the host name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router_id: Option<String>,
    /// How `switchyard ledger-writer` consumes the stream.
    #[serde(default)]
    pub writer: LedgerWriterConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LedgerWriterConfig {
    /// Most records per PostgreSQL transaction.
    #[serde(default = "default_writer_batch_size")]
    pub batch_size: usize,
    /// How long a fetch waits to fill a batch.
    #[serde(default = "default_writer_batch_wait", with = "humantime_serde")]
    pub batch_wait: Duration,
    /// Records a writer took but never acknowledged (it died) go to
    /// another writer after this long. Set when the consumer is created.
    #[serde(default = "default_writer_ack_wait", with = "humantime_serde")]
    pub ack_wait: Duration,
}

impl Default for LedgerWriterConfig {
    fn default() -> Self {
        Self {
            batch_size: default_writer_batch_size(),
            batch_wait: default_writer_batch_wait(),
            ack_wait: default_writer_ack_wait(),
        }
    }
}

fn default_writer_batch_size() -> usize {
    500
}

fn default_writer_batch_wait() -> Duration {
    Duration::from_secs(1)
}

fn default_writer_ack_wait() -> Duration {
    Duration::from_secs(30)
}

impl Default for LedgerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            backend: LedgerBackend::default(),
            path: None,
            stream: UsageStreamConfig::default(),
            postgres: None,
            time_zone: utc(),
            router_id: None,
            writer: LedgerWriterConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LedgerBackend {
    /// `jetstream` when `bus` is configured (routers scaled out share
    /// spend), else `local`.
    #[default]
    Auto,
    /// A SQLite file of this process (the embedded default).
    Local,
    /// A JetStream stream on the bus's NATS; every router sees every
    /// record (budgets), and `switchyard ledger-writer` loads it into
    /// PostgreSQL.
    Jetstream,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UsageStreamConfig {
    #[serde(default = "default_stream_name")]
    pub name: String,
    /// Records are published on `<subject_prefix>.<router_id>`.
    #[serde(default = "default_stream_subject_prefix")]
    pub subject_prefix: String,
    /// A record published twice within this window (same request id) is
    /// stored once.
    #[serde(default = "default_duplicate_window", with = "humantime_serde")]
    pub duplicate_window: Duration,
    /// Records older than this leave the stream (the PostgreSQL ledger
    /// keeps them). Must cover the longest budget window.
    #[serde(default = "default_stream_max_age", with = "humantime_serde")]
    pub max_age: Duration,
}

impl Default for UsageStreamConfig {
    fn default() -> Self {
        Self {
            name: default_stream_name(),
            subject_prefix: default_stream_subject_prefix(),
            duplicate_window: default_duplicate_window(),
            max_age: default_stream_max_age(),
        }
    }
}

fn default_stream_name() -> String {
    "SWITCHYARD_USAGE".to_owned()
}

fn default_stream_subject_prefix() -> String {
    "switchyard.usage".to_owned()
}

fn default_duplicate_window() -> Duration {
    Duration::from_secs(120)
}

fn default_stream_max_age() -> Duration {
    Duration::from_secs(40 * 24 * 3600)
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// `postgres://user:pass@host:5432/db` or `host=... user=...`.
    pub url: Secret,
}

/// Spend limits (docs/budgets.md).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BudgetsConfig {
    /// Daily, weekly (from Monday) and monthly windows begin at midnight
    /// in this IANA time zone.
    #[serde(default = "utc")]
    pub time_zone: String,
    #[serde(default)]
    pub limits: Vec<BudgetConfig>,
}

impl Default for BudgetsConfig {
    fn default() -> Self {
        Self {
            time_zone: utc(),
            limits: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BudgetConfig {
    pub name: String,
    /// Whose spend: `{team: research}` for one team, `{team: "*"}` for
    /// each team apart. Absent: all spend together.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "serde_norway::with::singleton_map"
    )]
    pub scope: Option<SpendScope>,
    pub window: BudgetWindow,
    pub limit_usd: Usd,
    #[serde(with = "serde_norway::with::singleton_map")]
    pub action: BudgetAction,
}

/// One dimension of a request and the value it must have (`*`: each
/// value apart).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SpendScope {
    Key(String),
    Team(String),
    User(String),
    Model(String),
    Provider(String),
}

impl SpendScope {
    pub fn dimension(&self) -> &'static str {
        match self {
            SpendScope::Key(_) => "key",
            SpendScope::Team(_) => "team",
            SpendScope::User(_) => "user",
            SpendScope::Model(_) => "model",
            SpendScope::Provider(_) => "provider",
        }
    }

    /// The one value this scope names; `None` for `*` (each value).
    pub fn value(&self) -> Option<&str> {
        let v = match self {
            SpendScope::Key(v)
            | SpendScope::Team(v)
            | SpendScope::User(v)
            | SpendScope::Model(v)
            | SpendScope::Provider(v) => v.as_str(),
        };
        (v != "*").then_some(v)
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BudgetWindow {
    Daily,
    Weekly,
    Monthly,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum BudgetAction {
    /// 429 `budget_exceeded` until the window resets.
    Reject,
    /// Serve with this (cheaper) model instead, saying so in
    /// `x-switchyard-budget`.
    Downgrade(String),
    /// Serve, and send an alert once per window.
    Alert,
}

/// A model's spending cap: past `limit_usd` in the window, its requests
/// are served by `downgrade_to`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SpendCapConfig {
    pub limit_usd: Usd,
    pub window: BudgetWindow,
    pub downgrade_to: String,
}

/// Where alerts go, and the spend-spike rules (docs/budgets.md).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookConfig>,
    /// Alerts are also published (JSON) on this NATS subject, when a bus
    /// is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nats_subject: Option<String>,
    #[serde(default)]
    pub spikes: Vec<SpikeConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub url: String,
    /// Sent with every POST (e.g. `Authorization`); values are secrets.
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    #[serde(default = "default_webhook_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_webhook_timeout() -> Duration {
    Duration::from_secs(5)
}

/// Spend in `window` above `threshold_usd`, or above `factor` times its
/// usual rate over `baseline`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SpikeConfig {
    pub name: String,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "serde_norway::with::singleton_map"
    )]
    pub scope: Option<SpendScope>,
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold_usd: Option<Usd>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub factor: Option<f64>,
    #[serde(default = "default_spike_baseline", with = "humantime_serde")]
    pub baseline: Duration,
    /// In `factor` mode, spend below this never alerts.
    #[serde(default)]
    pub min_spend_usd: Usd,
}

fn default_spike_baseline() -> Duration {
    Duration::from_secs(24 * 3600)
}

/// Prices that replace or add to the bundled table (docs/pricing.md):
/// an entry with the `provider` kind and `model` of a bundled one replaces
/// it; others are added.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PricingConfig {
    #[serde(default)]
    pub models: Vec<PriceEntry>,
}

fn yes() -> bool {
    true
}

fn utc() -> String {
    "UTC".to_owned()
}
