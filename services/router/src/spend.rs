//! Cost and spend on the request path: who asks ([`Identity`]), what a
//! served request cost (the price table over the provider's usage), the
//! budgets a request must pass before it is routed, and the one usage
//! record every request leaves in the ledger ([`Meter`]).
//!
//! Nothing here does I/O on the request path: records go to the ledger's
//! queue, budget counters are in memory (fed by this router's records and,
//! scaled out, by every other router's over NATS), alerts are delivered by
//! background tasks.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use futures_util::{Stream, StreamExt};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use switchyard_budget::{
    Action, BudgetRule, BudgetStatus, Budgets, Dimension, Exceeded, Notifier, Spend as BudgetSpend,
    SpikeRule, Spikes, Subject, Verdict, Webhook,
};
use switchyard_config::{
    BudgetAction, BudgetWindow, Config, LedgerBackend, PriceConfig, SpendScope,
};
use switchyard_ledger::{UsageRecord, UsageSink, UsageStore};
use switchyard_pricing::{Counts, PriceTable, Usd};
use switchyard_proto::bus::v1::work_request::Work;
use switchyard_proto::gateway::v1::{ChatSpec, Usage, content_part};
use switchyard_routing::{Plan, Target};
use tokio::time::Instant;
use tracing::Span;

use crate::core::{ChatStream, Failed, ServedBy, StreamItem};
use crate::error::{BudgetRefusal, GatewayError};
use crate::metrics::Metrics;

/// What a request cost, in US dollars (exact decimal), on unary answers.
pub const COST_HEADER: &str = "x-switchyard-cost-usd";
/// Set when a budget changed the model: `downgraded; budget=<name>;
/// from=<model>; to=<model>`.
pub const BUDGET_HEADER: &str = "x-switchyard-budget";
/// The team a request is billed to on an open gateway; an authenticated
/// caller's team is its key's (or token's), whatever this header says.
pub const TEAM_HEADER: &str = "x-switchyard-team";
/// The end user a request is billed to; the body's `user` field otherwise.
pub const USER_HEADER: &str = "x-switchyard-user";

/// Longest team or user name kept; longer ones are cut (they are labels in
/// reports, and a client must not grow records without bound).
const MAX_NAME: usize = 128;

/// Who a request is billed to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// The credential's id (a hash of it, never the secret).
    pub key: Option<String>,
    pub team: Option<String>,
    pub user: Option<String>,
    /// The client's address (audit records).
    pub client: Option<std::net::IpAddr>,
    /// How the caller proved who it is: `key`, `jwt`; `None`: anonymous.
    pub credential: Option<&'static str>,
    /// The virtual key's name (guardrail rules select keys by name).
    pub key_name: Option<String>,
}

impl Identity {
    /// From request headers (HTTP) or metadata (gRPC); `tenant` is the
    /// credential's hash the cache already computed.
    pub fn from_headers<'a>(get: impl Fn(&str) -> Option<&'a str>, tenant: &str) -> Self {
        Identity {
            key: (tenant != switchyard_cache::tenant(None)).then(|| tenant.to_owned()),
            team: get(TEAM_HEADER).and_then(clean_name),
            user: get(USER_HEADER).and_then(clean_name),
            client: None,
            credential: None,
            key_name: None,
        }
    }

    /// The body's `user` when no header named one.
    pub fn with_body_user(mut self, user: &str) -> Self {
        if self.user.is_none() {
            self.user = clean_name(user);
        }
        self
    }
}

fn clean_name(v: &str) -> Option<String> {
    let v = v.trim();
    if v.is_empty() || v.chars().any(char::is_control) {
        return None;
    }
    let end = v.char_indices().nth(MAX_NAME).map_or(v.len(), |(i, _)| i);
    Some(v[..end].to_owned())
}

#[derive(Debug, thiserror::Error)]
pub enum SpendError {
    #[error("the bundled price table is broken: {0}")]
    Prices(String),
    #[error("cannot open the usage ledger at {path}: {message}")]
    LocalLedger { path: PathBuf, message: String },
    #[error("cannot set up the usage stream: {0}")]
    Stream(String),
    #[error("`ledger.backend: jetstream` needs a NATS connection (`bus`)")]
    NoBus,
}

/// Prices and how provider names map to the price table's provider kinds.
struct Prices {
    table: PriceTable,
    kinds: HashMap<String, &'static str>,
}

impl Prices {
    fn from_config(config: &Config, bundled: &PriceTable) -> Self {
        let table = match bundled.with_overrides(&config.pricing.models, "config") {
            Ok(t) => t,
            Err(e) => {
                // `check` validated the entries; a failure here is a bug,
                // and bundled prices are better than none.
                tracing::error!(error = %e, "price overrides not applied");
                bundled.clone()
            }
        };
        let kinds = config
            .providers
            .iter()
            .map(|p| (p.name.clone(), p.kind.as_str()))
            .collect();
        Prices { table, kinds }
    }

    fn quote(&self, provider: &str, model: &str, counts: &Counts, at: Timestamp) -> Option<Usd> {
        let kind = self.kinds.get(provider).copied().unwrap_or(provider);
        self.table.total(kind, model, counts, at, false)
    }
}

fn counts(u: &Usage, images: u32) -> Counts {
    Counts {
        images,
        prompt: u64::from(u.prompt_tokens),
        cached_read: u64::from(u.cached_prompt_tokens),
        cache_write: u64::from(u.cache_write_tokens),
        completion: u64::from(u.completion_tokens),
        reasoning: u64::from(u.reasoning_tokens),
        ..Counts::default()
    }
}

/// Where records go, and where they are queried (either may be absent).
type Ledger = (Option<Arc<dyn UsageSink>>, Option<Arc<dyn UsageStore>>);

/// The router's spend state: prices, the ledger, budgets and alerts.
pub struct Spend {
    router_id: String,
    bundled: PriceTable,
    prices: ArcSwap<Prices>,
    sink: Option<Arc<dyn UsageSink>>,
    store: Option<Arc<dyn UsageStore>>,
    budgets: Budgets,
    spikes: Spikes,
    /// `None` only when it could not be built (then alerts are logged).
    notifier: Option<Notifier>,
    report_tz: TimeZone,
    metrics: Arc<Metrics>,
    /// The configured budgets and their time zone, and the virtual keys'
    /// own: the budgets' rule set is both.
    rules: Mutex<BudgetRules>,
    /// `rules.generation`, readable without the lock.
    key_generation: AtomicU64,
}

struct BudgetRules {
    config: Vec<BudgetRule>,
    tz: TimeZone,
    keys: Vec<BudgetRule>,
    /// The keyring generation `keys` were made from.
    generation: u64,
}

impl BudgetRules {
    fn all(&self) -> Vec<BudgetRule> {
        self.config.iter().chain(&self.keys).cloned().collect()
    }
}

/// The budgets virtual keys carry (`limits.budget`), each counting that
/// key's spend alone; revoked keys' are dropped.
fn key_budget_rules(keys: &[Arc<switchyard_auth::KeyRecord>]) -> Vec<BudgetRule> {
    keys.iter()
        .filter(|k| k.revoked_at.is_none())
        .filter_map(|k| {
            let b = k.limits.budget.as_ref()?;
            let limit = match b.limit_usd.parse::<Usd>() {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!(key_id = %k.id, error = %e, "a key's budget is not an amount; it is not enforced");
                    return None;
                }
            };
            Some(BudgetRule {
                name: format!("key {} ({})", k.name, k.id),
                dimension: Some(Dimension::Key),
                value: Some(format!("key:{}", k.id)),
                window: match b.window {
                    switchyard_auth::BudgetWindow::Daily => switchyard_budget::Window::Daily,
                    switchyard_auth::BudgetWindow::Weekly => switchyard_budget::Window::Weekly,
                    switchyard_auth::BudgetWindow::Monthly => switchyard_budget::Window::Monthly,
                },
                limit,
                action: Action::Reject,
            })
        })
        .collect()
}

impl Spend {
    /// Opens the ledger and warms the budget counters from it. `nats` is
    /// the bus's connection, when there is one.
    pub async fn start(
        config: &Config,
        nats: Option<async_nats::Client>,
        metrics: Arc<Metrics>,
        auth: &crate::auth::Auth,
    ) -> Result<Arc<Spend>, SpendError> {
        let bundled = PriceTable::bundled().map_err(|e| SpendError::Prices(e.to_string()))?;
        let router_id = config.ledger.router_id.clone().unwrap_or_else(host_name);
        let tz = time_zone(&config.budgets.time_zone);
        // Keys' budgets are in the rule set before the counters are
        // warmed, so their spend so far counts.
        let rules = BudgetRules {
            config: budget_rules(config),
            tz: tz.clone(),
            keys: key_budget_rules(&auth.list_keys().unwrap_or_default()),
            generation: auth.keys_generation(),
        };
        let budgets = Budgets::new(rules.all(), tz.clone());
        let spikes = Spikes::new(spike_rules(config));
        let notifier = notifier(config, nats.as_ref());
        let backend = match config.ledger.backend {
            LedgerBackend::Auto if config.bus.is_some() => LedgerBackend::Jetstream,
            LedgerBackend::Auto => LedgerBackend::Local,
            b => b,
        };
        let (sink, store): Ledger = if !config.ledger.enabled {
            (None, None)
        } else if backend == LedgerBackend::Local {
            let path = config
                .ledger
                .path
                .clone()
                .unwrap_or_else(default_ledger_path);
            let local = open_local(&path).await?;
            (Some(local.clone()), Some(local))
        } else {
            let client = nats.clone().ok_or(SpendError::NoBus)?;
            let settings = stream_settings(config);
            let sink = match switchyard_ledger::JetStreamSink::new(client, settings).await {
                Ok(sink) => sink,
                // `auto` on a NATS without JetStream: serve, and say
                // loudly what is missing; asked for by name, refuse.
                Err(e) if config.ledger.backend == LedgerBackend::Auto => {
                    tracing::error!(
                        error = %e,
                        "no usage stream (is JetStream enabled on NATS?): usage records are not kept and budgets count this router's spend only; set `ledger.backend: local` or enable JetStream"
                    );
                    return Ok(Self::assemble(
                        config, router_id, bundled, budgets, spikes, notifier, None, None, metrics,
                    ));
                }
                Err(e) => return Err(SpendError::Stream(e.to_string())),
            };
            // Connected on the first usage query: PostgreSQL being down must
            // not keep a router from serving.
            let store: Option<Arc<dyn UsageStore>> = config.ledger.postgres.as_ref().map(|pg| {
                Arc::new(switchyard_ledger::PostgresStore::lazy(pg.url.expose()))
                    as Arc<dyn UsageStore>
            });
            (Some(sink), store)
        };
        let spend = Self::assemble(
            config, router_id, bundled, budgets, spikes, notifier, sink, store, metrics,
        );
        spend
            .key_generation
            .store(rules.generation, Ordering::Release);
        *spend.rules.lock().unwrap_or_else(PoisonError::into_inner) = rules;
        spend.warm(config, backend, nats).await;
        Ok(spend)
    }

    #[allow(clippy::too_many_arguments)]
    fn assemble(
        config: &Config,
        router_id: String,
        bundled: PriceTable,
        budgets: Budgets,
        spikes: Spikes,
        notifier: Option<Notifier>,
        sink: Option<Arc<dyn UsageSink>>,
        store: Option<Arc<dyn UsageStore>>,
        metrics: Arc<Metrics>,
    ) -> Arc<Spend> {
        Arc::new(Spend {
            router_id,
            prices: ArcSwap::from_pointee(Prices::from_config(config, &bundled)),
            bundled,
            sink,
            store,
            budgets,
            spikes,
            notifier,
            report_tz: time_zone(&config.ledger.time_zone),
            metrics,
            rules: Mutex::new(BudgetRules {
                config: Vec::new(),
                tz: TimeZone::UTC,
                keys: Vec::new(),
                generation: 0,
            }),
            key_generation: AtomicU64::new(0),
        })
    }

    /// Counters start from what was already spent in the current windows:
    /// from the local file, or (scaled out) from the usage stream, whose
    /// live records from other routers keep them current afterwards.
    async fn warm(
        self: &Arc<Self>,
        config: &Config,
        backend: LedgerBackend,
        nats: Option<async_nats::Client>,
    ) {
        if !config.ledger.enabled {
            return;
        }
        let now = Timestamp::now();
        let tz = time_zone(&config.budgets.time_zone);
        // The oldest spend that still counts: the start of the longest
        // budget window, or of the longest spike baseline.
        let windows = self
            .rules
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .all()
            .into_iter()
            .map(|r| r.window.bounds(now, &tz).0);
        let baselines = config.alerts.spikes.iter().filter_map(|s| {
            let back = i64::try_from(s.baseline.max(s.window).as_secs()).ok()?;
            now.checked_sub(jiff::SignedDuration::from_secs(back)).ok()
        });
        let Some(since) = windows.chain(baselines).min() else {
            // Nothing counts spend yet; scaled out, the live feed still
            // runs so that budgets added by a reload see other routers.
            self.follow(backend, nats, config, HashSet::new()).await;
            return;
        };
        match (backend, nats) {
            (LedgerBackend::Jetstream, Some(client)) => {
                let settings = stream_settings(config);
                // Subscribed before the replay, so nothing falls between;
                // what both deliver is counted once (by request id).
                let live = match switchyard_ledger::subscribe(&client, &settings).await {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot follow other routers' spend; budgets count this router's only");
                        return;
                    }
                };
                let mut replayed = HashSet::new();
                match switchyard_ledger::replay_since(&client, &settings, since).await {
                    Ok(records) => {
                        for r in &records {
                            self.count(r, false);
                            replayed.insert(r.request_id.clone());
                        }
                        tracing::info!(
                            records = records.len(),
                            "budget counters warmed from the usage stream"
                        );
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cannot replay the usage stream; budgets start from zero")
                    }
                }
                self.spawn_follow(live, replayed);
            }
            _ => {
                let Some(store) = &self.store else { return };
                match store.spend_since(since).await {
                    Ok(records) => {
                        for r in &records {
                            self.count(r, false);
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cannot read past spend; budgets start from zero")
                    }
                }
            }
        }
    }

    /// Scaled out, with nothing to warm: only the live feed.
    async fn follow(
        self: &Arc<Self>,
        backend: LedgerBackend,
        nats: Option<async_nats::Client>,
        config: &Config,
        replayed: HashSet<String>,
    ) {
        if let (LedgerBackend::Jetstream, Some(client)) = (backend, nats) {
            match switchyard_ledger::subscribe(&client, &stream_settings(config)).await {
                Ok(live) => self.spawn_follow(live, replayed),
                Err(e) => {
                    tracing::error!(error = %e, "cannot follow other routers' spend; budgets count this router's only")
                }
            }
        }
    }

    /// Counts other routers' records as they are published (this router
    /// counted its own when it made them), skipping what the replay had.
    fn spawn_follow(
        self: &Arc<Self>,
        live: impl futures_util::Stream<Item = UsageRecord> + Send + Unpin + 'static,
        mut replayed: HashSet<String>,
    ) {
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut live = live;
            while let Some(r) = live.next().await {
                let Some(spend) = me.upgrade() else { break };
                if replayed.remove(&r.request_id) {
                    continue;
                }
                if r.router != spend.router_id {
                    spend.count(&r, true);
                }
            }
        });
    }

    /// New prices, budgets and spike rules (`ledger` needs a restart).
    pub fn reload(&self, config: &Config) {
        self.prices
            .store(Arc::new(Prices::from_config(config, &self.bundled)));
        let mut rules = self.rules.lock().unwrap_or_else(PoisonError::into_inner);
        rules.config = budget_rules(config);
        rules.tz = time_zone(&config.budgets.time_zone);
        self.budgets.replace_rules(rules.all(), rules.tz.clone());
        drop(rules);
        self.spikes.replace_rules(spike_rules(config));
    }

    /// Brings the keys' budgets up to the keyring's `generation` (a key
    /// made, changed or revoked here or on another router); one atomic
    /// compare when nothing changed.
    pub fn sync_key_budgets(&self, auth: &crate::auth::Auth) {
        let generation = auth.keys_generation();
        if self.key_generation.load(Ordering::Acquire) == generation {
            return;
        }
        let mut rules = self.rules.lock().unwrap_or_else(PoisonError::into_inner);
        if rules.generation == generation {
            return;
        }
        rules.keys = key_budget_rules(&auth.list_keys().unwrap_or_default());
        rules.generation = generation;
        self.budgets.replace_rules(rules.all(), rules.tz.clone());
        self.key_generation.store(generation, Ordering::Release);
    }

    /// Before routing: the model to route (a `downgrade` budget may change
    /// it) and the providers whose budgets are spent, or the refusal.
    pub fn admit(&self, who: &Identity, model: &str) -> Result<Admission, GatewayError> {
        let now = Timestamp::now();
        let subject = Subject {
            key: who.key.as_deref(),
            team: who.team.as_deref(),
            user: who.user.as_deref(),
            model,
        };
        let mut admission = Admission::default();
        match self.budgets.check(&subject, now) {
            Verdict::Allow => {}
            Verdict::Reject(e) => {
                self.metrics.budget_action(&e.budget, "reject");
                return Err(refusal(e));
            }
            Verdict::Downgrade { exceeded, to } => {
                self.metrics.budget_action(&exceeded.budget, "downgrade");
                admission.downgrade = Some(Downgrade {
                    budget: exceeded.budget,
                    from: model.to_owned(),
                    to,
                });
            }
        }
        let routed = admission.model(model).to_owned();
        let subject = Subject {
            model: &routed,
            ..subject
        };
        admission.blocked = self.budgets.blocked_providers(&subject, now);
        Ok(admission)
    }

    /// What `usage` cost at `provider`'s prices for `model` now; `None`
    /// when no price is known.
    pub fn quote(&self, provider: &str, model: &str, usage: &Usage, images: u32) -> Option<Usd> {
        self.prices
            .load()
            .quote(provider, model, &counts(usage, images), Timestamp::now())
    }

    /// The list price of `target` (USD per million input and output
    /// tokens) from the price table, for routing by price when the route
    /// states none.
    pub fn list_price(&self, target: &Target) -> Option<PriceConfig> {
        let prices = self.prices.load();
        let kind = prices
            .kinds
            .get(&*target.provider)
            .copied()
            .unwrap_or(&target.provider);
        let priced = prices.table.lookup(kind, &target.upstream_model)?;
        let e = priced.entry();
        Some(PriceConfig {
            input_per_mtok: e.input?.as_f64(),
            output_per_mtok: e.output.unwrap_or(Usd::ZERO).as_f64(),
        })
    }

    /// Writes the cost into `usage` (as clients and gRPC see it).
    pub fn stamp(
        &self,
        provider: &str,
        model: &str,
        usage: &mut Usage,
        images: u32,
    ) -> Option<Usd> {
        let cost = self.quote(provider, model, usage, images);
        usage.cost_known = cost.is_some();
        usage.cost_picodollars = cost.map_or(0, Usd::pico);
        cost
    }

    /// The ledger's query side (admin API), when there is one.
    pub fn store(&self) -> Option<&Arc<dyn UsageStore>> {
        self.store.as_ref()
    }

    /// Days in reports begin at midnight here (`ledger.time_zone`).
    pub fn report_time_zone(&self) -> &TimeZone {
        &self.report_tz
    }

    pub fn budget_status(&self) -> Vec<BudgetStatus> {
        self.budgets.status(Timestamp::now())
    }

    pub fn prices(&self) -> PriceTable {
        self.prices.load().table.clone()
    }

    /// Everything recorded so far is durable (shutdown).
    pub async fn flush(&self) {
        if let Some(sink) = &self.sink
            && let Err(e) = sink.flush().await
        {
            tracing::error!(error = %e, "usage records not flushed");
        }
        if let Some(n) = &self.notifier {
            n.drain().await;
        }
    }

    /// A finished request: into the ledger and the counters.
    fn settle(&self, record: UsageRecord) {
        self.count(&record, true);
        self.metrics.cost(
            &record.model,
            record.provider.as_deref().unwrap_or(""),
            record.cost.as_f64(),
            record.saved.as_f64(),
        );
        if let Some(sink) = &self.sink {
            sink.record(record);
        }
    }

    /// Adds a record's cost to the budget and spike counters; alerts only
    /// for live records (a replay at start reports nothing twice).
    fn count(&self, r: &UsageRecord, alert: bool) {
        if r.cost.is_zero() {
            return;
        }
        let spend = BudgetSpend {
            at: r.time,
            key: r.key.as_deref(),
            team: r.team.as_deref(),
            user: r.user.as_deref(),
            model: &r.model,
            provider: r.provider.as_deref(),
            cost: r.cost,
        };
        let crossed = self.budgets.record(&spend);
        let spikes = self.spikes.record(&spend);
        if alert {
            let events = crossed
                .iter()
                .map(|e| switchyard_budget::AlertEvent::budget_exceeded(e, r.time))
                .chain(spikes);
            for event in events {
                match &self.notifier {
                    Some(n) => n.notify(event),
                    None => {
                        tracing::warn!(target: "switchyard::alert", rule = %event.rule, "alert (not delivered)")
                    }
                }
            }
        }
    }

    /// The record of a request refused before it was read (no or a bad
    /// credential): the audit trail shows who tried, from where, when.
    pub(crate) fn refused(
        self: &Arc<Self>,
        request_id: &str,
        operation: &'static str,
        client: Option<std::net::IpAddr>,
        error: &GatewayError,
    ) {
        let who = Identity {
            client,
            ..Identity::default()
        };
        let request_id = if request_id.is_empty() {
            uuid::Uuid::new_v4().to_string()
        } else {
            request_id.to_owned()
        };
        self.meter(&request_id, operation, &who, "")
            .failed(&Failed::from(error.clone()));
    }

    /// A meter for one request, started now.
    pub(crate) fn meter(
        self: &Arc<Self>,
        request_id: &str,
        operation: &'static str,
        who: &Identity,
        model: &str,
    ) -> Meter {
        let mut record = UsageRecord::new(
            request_id,
            Timestamp::now(),
            self.router_id.clone(),
            operation,
            model,
        );
        record.key = who.key.clone();
        record.team = who.team.clone();
        record.user = who.user.clone();
        record.client_addr = who.client.map(|ip| ip.to_string());
        record.credential = who.credential.map(str::to_owned);
        Meter {
            spend: self.clone(),
            record: Some(record),
            charge: None,
            started: Instant::now(),
            span: Span::current(),
        }
    }
}

fn refusal(e: Exceeded) -> GatewayError {
    let scope = match (e.dimension, &e.value) {
        (Some(d), Some(v)) => format!("{}={v}", dimension_name(d)),
        (Some(d), None) => dimension_name(d).to_owned(),
        _ => String::new(),
    };
    GatewayError::BudgetExceeded(Box::new(BudgetRefusal {
        budget: e.budget,
        scope,
        limit: e.limit,
        spent: e.spent,
        resets_at: e.resets_at,
    }))
}

fn dimension_name(d: Dimension) -> &'static str {
    match d {
        Dimension::Key => "key",
        Dimension::Team => "team",
        Dimension::User => "user",
        Dimension::Model => "model",
        Dimension::Provider => "provider",
    }
}

/// `plan` without the routes of providers whose budgets are spent; the
/// refusal when none is left.
pub(crate) fn without_blocked(mut plan: Plan, blocked: &[Exceeded]) -> Result<Plan, GatewayError> {
    if blocked.is_empty() {
        return Ok(plan);
    }
    let is_blocked = |provider: &str| blocked.iter().any(|e| e.value.as_deref() == Some(provider));
    let routes: Vec<_> = plan
        .routes
        .iter()
        .filter(|r| !is_blocked(&r.target.provider))
        .cloned()
        .collect();
    if routes.is_empty() {
        // The one that frees a route first.
        let first = blocked.iter().min_by_key(|e| e.resets_at).cloned();
        return Err(first.map_or_else(|| GatewayError::Internal("no route left".into()), refusal));
    }
    plan.routes = routes.into();
    Ok(plan)
}

/// What the budgets decided before routing.
#[derive(Debug, Clone, Default)]
pub struct Admission {
    pub downgrade: Option<Downgrade>,
    /// Providers under a spent `reject` budget: their targets are skipped.
    pub blocked: Vec<Exceeded>,
    /// The rate limits' figures after this request.
    pub rate: Option<switchyard_ratelimit::RateHeaders>,
}

impl Admission {
    /// What the answer reports of the admission: the budget's downgrade
    /// (`x-switchyard-budget`) and the rate limits (`x-ratelimit-*`).
    pub fn stamp(self, served: &mut ServedBy) {
        served.downgrade = self.downgrade;
        served.rate = self.rate;
    }

    pub fn model<'m>(&'m self, asked: &'m str) -> &'m str {
        self.downgrade.as_ref().map_or(asked, |d| d.to.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downgrade {
    pub budget: String,
    pub from: String,
    pub to: String,
}

impl Downgrade {
    pub fn header(&self) -> String {
        format!(
            "downgraded; budget={}; from={}; to={}",
            self.budget, self.from, self.to
        )
    }
}

/// One request's usage record in the making. Dropped without
/// [`Meter::finish`]: recorded as `client_closed` (the client went away).
pub(crate) struct Meter {
    spend: Arc<Spend>,
    record: Option<UsageRecord>,
    /// The rate limits the request's tokens count against.
    charge: Option<crate::limits::Charge>,
    started: Instant,
    /// The request's span, for the cost attribute.
    span: Span,
}

impl Meter {
    /// Keeps `value` as `part` (`request`, `response`) of the record's
    /// payload, bounded by the ledger's cap. Called only for callers whose
    /// key captures payloads ([`crate::payload`]).
    pub(crate) fn payload(&mut self, part: &'static str, value: serde_json::Value) {
        let Some(r) = self.record.as_mut() else {
            return;
        };
        let mut whole = match r.payload.take() {
            Some(serde_json::Value::Object(o)) => o,
            _ => serde_json::Map::new(),
        };
        whole.insert(part.to_owned(), value);
        r.payload = Some(switchyard_ledger::bounded_payload(
            serde_json::Value::Object(whole),
        ));
    }

    /// What the guardrails did to the request, for its record.
    pub(crate) fn guardrails(&mut self, actions: Vec<String>) {
        if let Some(r) = self.record.as_mut() {
            r.guardrails.extend(actions);
        }
    }

    /// Counts the request's tokens against rate limits when it settles.
    pub(crate) fn charge(&mut self, charge: crate::limits::Charge) {
        self.charge = Some(charge);
    }

    /// Who served, and (unary) what it cost: stamped into `usage`.
    pub(crate) fn served(&mut self, served: &mut ServedBy, usage: Option<&mut Usage>, images: u32) {
        let Some(r) = self.record.as_mut() else {
            return;
        };
        r.provider = Some(served.provider.clone());
        r.served_model = Some(served.upstream_model.clone());
        r.images = images;
        let mut none = Usage::default();
        let u = match usage {
            Some(u) => u,
            // Image models without token usage are priced per image.
            None if images > 0 => &mut none,
            None => return,
        };
        served.cost = self
            .spend
            .stamp(&served.provider, &served.upstream_model, u, images);
        fill_counts(r, u);
        r.cost = served.cost.unwrap_or(Usd::ZERO);
    }

    /// A cache hit: nothing spent, and what it would have cost saved.
    pub(crate) fn cache_hit(&mut self, served: &ServedBy, usage: Option<&mut Usage>) {
        let Some(r) = self.record.as_mut() else {
            return;
        };
        r.provider = Some(served.provider.clone());
        r.served_model = Some(served.upstream_model.clone());
        r.cache_hit = true;
        if let Some(u) = usage {
            fill_counts(r, u);
            r.saved = self
                .spend
                .quote(&served.provider, &served.upstream_model, u, 0)
                .unwrap_or(Usd::ZERO);
            u.cost_known = true;
            u.cost_picodollars = 0;
        }
    }

    pub(crate) fn failed(mut self, f: &Failed) {
        if let Some(r) = self.record.as_mut() {
            r.outcome = f.error.class().code.unwrap_or("error").to_owned();
        }
        self.finish();
    }

    /// Records the request (once).
    pub(crate) fn finish(mut self) {
        self.settle(None);
    }

    fn settle(&mut self, outcome: Option<&str>) {
        let Some(mut r) = self.record.take() else {
            return;
        };
        if let Some(o) = outcome {
            r.outcome = o.to_owned();
        }
        r.latency_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        if let Some(charge) = self.charge.take() {
            charge.tokens(r.input_tokens.saturating_add(r.output_tokens));
        }
        if !r.cost.is_zero() {
            switchyard_telemetry::set_attribute(&self.span, "switchyard.cost_usd", r.cost.as_f64());
        }
        if r.cache_hit {
            switchyard_telemetry::set_attribute(&self.span, "switchyard.cache.hit", true);
        }
        self.spend.settle(r);
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        self.settle(Some(switchyard_ledger::OUTCOME_CLIENT_CLOSED));
    }
}

fn fill_counts(r: &mut UsageRecord, u: &Usage) {
    r.input_tokens = u64::from(u.prompt_tokens);
    r.cached_input_tokens = u64::from(u.cached_prompt_tokens);
    r.cache_write_tokens = u64::from(u.cache_write_tokens);
    r.output_tokens = u64::from(u.completion_tokens);
    r.reasoning_tokens = u64::from(u.reasoning_tokens);
    r.estimated = u.cost_estimated;
}

/// A streamed answer under a meter: the cost goes into the final usage (so
/// the usage chunk carries it), and the record is made when the stream
/// ends. When it ends without the provider's usage (cut off, failed, or the
/// client left), usage is estimated with the tokenizer: the prompt from the
/// request, the completion from the deltas that passed.
pub(crate) fn metered(
    events: ChatStream,
    mut meter: Meter,
    served: &ServedBy,
    work: Work,
) -> ChatStream {
    // Decided once per stream: a request part means the caller's key
    // captures payloads, and only then are the deltas gathered.
    let mut capture = None;
    if let Some(r) = meter.record.as_mut() {
        r.provider = Some(served.provider.clone());
        r.served_model = Some(served.upstream_model.clone());
        if r.payload.is_some() {
            capture = Some(crate::payload::StreamCapture::default());
        }
    }
    Box::pin(Metered {
        events,
        meter: Some(meter),
        provider: served.provider.clone(),
        model: served.upstream_model.clone(),
        work,
        completion: String::new(),
        dropped_bytes: 0,
        capture,
    })
}

/// Completion text kept per stream for an estimate; beyond it the oldest
/// text is counted by bytes only (an estimate is rarely needed, and open
/// streams must stay small).
const KEPT_COMPLETION: usize = 8 * 1024;

struct Metered {
    events: ChatStream,
    meter: Option<Meter>,
    provider: String,
    model: String,
    /// The request, kept (not copied) for estimating its prompt tokens.
    work: Work,
    /// The deltas' text so far (at most [`KEPT_COMPLETION`] bytes): it is
    /// tokenized only if the provider's usage never comes, not per delta.
    completion: String,
    /// Bytes of completion that no longer fit in `completion`.
    dropped_bytes: u64,
    /// The answer as the client got it, for a key that captures payloads.
    capture: Option<crate::payload::StreamCapture>,
}

impl Metered {
    fn keep(&mut self, text: &str) {
        if self.completion.len() + text.len() > KEPT_COMPLETION {
            self.dropped_bytes += self.completion.len() as u64;
            self.completion.clear();
        }
        if text.len() > KEPT_COMPLETION {
            self.dropped_bytes += text.len() as u64;
        } else {
            self.completion.push_str(text);
        }
    }

    fn estimate(&self) -> Usage {
        let (prompt, completion) = tokenizing(|| {
            let prompt = match &self.work {
                Work::Chat(spec) => prompt_tokens(&self.model, spec),
                _ => 0,
            };
            let completion = switchyard_pricing::estimate_tokens(&self.model, &self.completion)
                + self.dropped_bytes.div_ceil(4);
            (prompt, completion)
        });
        let prompt = u32::try_from(prompt).unwrap_or(u32::MAX);
        let completion = u32::try_from(completion).unwrap_or(u32::MAX);
        Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: prompt.saturating_add(completion),
            cost_estimated: true,
            ..Usage::default()
        }
    }

    /// Settles the record with `usage` (estimated when the provider gave
    /// none) and `outcome`.
    fn settle(&mut self, usage: Option<&mut Usage>, outcome: &str) {
        let Some(mut meter) = self.meter.take() else {
            return;
        };
        let mut estimated;
        let usage = match usage {
            Some(u) => u,
            None => {
                estimated = self.estimate();
                &mut estimated
            }
        };
        let cost = meter.spend.stamp(&self.provider, &self.model, usage, 0);
        if let Some(r) = meter.record.as_mut() {
            fill_counts(r, usage);
            r.cost = cost.unwrap_or(Usd::ZERO);
        }
        if let Some(capture) = self.capture.take() {
            meter.payload("response", capture.into_response());
        }
        meter.settle(Some(outcome));
    }
}

impl Stream for Metered {
    type Item = StreamItem;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<StreamItem>> {
        let this = &mut *self;
        let item = match this.events.poll_next_unpin(cx) {
            Poll::Ready(item) => item,
            Poll::Pending => return Poll::Pending,
        };
        match item {
            Some(StreamItem::Chunk(chunk)) => {
                if let Some(capture) = this.capture.as_mut() {
                    capture.chunk(&chunk);
                }
                for c in &chunk.choices {
                    for text in [&c.content, &c.reasoning_content].into_iter().flatten() {
                        this.keep(text);
                    }
                    for call in &c.tool_calls {
                        this.keep(&call.arguments);
                    }
                }
                Poll::Ready(Some(StreamItem::Chunk(chunk)))
            }
            Some(StreamItem::Done(usage)) => {
                let mut usage = usage;
                match usage.as_mut() {
                    Some(u) => this.settle(Some(u), switchyard_ledger::OUTCOME_OK),
                    None => {
                        let mut estimated = this.estimate();
                        this.settle(Some(&mut estimated), switchyard_ledger::OUTCOME_OK);
                        usage = Some(estimated);
                    }
                }
                Poll::Ready(Some(StreamItem::Done(usage)))
            }
            Some(StreamItem::Failed(e)) => {
                let outcome = e.class().code.unwrap_or("error");
                this.settle(None, outcome);
                Poll::Ready(Some(StreamItem::Failed(e)))
            }
            None => {
                this.settle(None, switchyard_ledger::OUTCOME_CLIENT_CLOSED);
                Poll::Ready(None)
            }
        }
    }
}

impl Drop for Metered {
    fn drop(&mut self) {
        self.settle(None, switchyard_ledger::OUTCOME_CLIENT_CLOSED);
    }
}

/// Runs tokenizer work. The tokenizer's tables are built on first use
/// (about 0.1 s, and tens of MB a process only pays for when a stream
/// does end without usage): on the multi-threaded runtime the worker
/// thread hands its other tasks on meanwhile.
fn tokenizing<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Tokenizer count of a chat request's text (what a cut-off stream's
/// prompt is billed as).
fn prompt_tokens(model: &str, spec: &ChatSpec) -> u64 {
    let mut n = 0;
    for m in &spec.messages {
        // The per-message framing tokens OpenAI documents.
        n += 3;
        for p in &m.content {
            if let Some(content_part::Part::Text(t)) = &p.part {
                n += switchyard_pricing::estimate_tokens(model, t);
            }
        }
        for call in &m.tool_calls {
            n += switchyard_pricing::estimate_tokens(model, &call.arguments);
        }
    }
    n + 3
}

fn budget_rules(config: &Config) -> Vec<BudgetRule> {
    let mut rules: Vec<BudgetRule> = config
        .budgets
        .limits
        .iter()
        .map(|b| {
            let (dimension, value) = scope(b.scope.as_ref());
            BudgetRule {
                name: b.name.clone(),
                dimension,
                value,
                window: window(b.window),
                limit: b.limit_usd,
                action: match &b.action {
                    BudgetAction::Reject => Action::Reject,
                    BudgetAction::Alert => Action::Alert,
                    BudgetAction::Downgrade(to) => Action::Downgrade { to: to.clone() },
                },
            }
        })
        .collect();
    // A model's spending cap is a downgrade budget on that model.
    for m in &config.models {
        if let Some(cap) = &m.spend_cap {
            rules.push(BudgetRule {
                name: format!("spend_cap:{}", m.name),
                dimension: Some(Dimension::Model),
                value: Some(m.name.clone()),
                window: window(cap.window),
                limit: cap.limit_usd,
                action: Action::Downgrade {
                    to: cap.downgrade_to.clone(),
                },
            });
        }
    }
    rules
}

fn spike_rules(config: &Config) -> Vec<SpikeRule> {
    config
        .alerts
        .spikes
        .iter()
        .map(|s| {
            let (dimension, value) = scope(s.scope.as_ref());
            SpikeRule {
                name: s.name.clone(),
                dimension,
                value,
                window: s.window,
                threshold: s.threshold_usd,
                factor: s.factor,
                baseline: s.baseline,
                min_spend: s.min_spend_usd,
            }
        })
        .collect()
}

fn scope(s: Option<&SpendScope>) -> (Option<Dimension>, Option<String>) {
    let Some(s) = s else { return (None, None) };
    let d = match s {
        SpendScope::Key(_) => Dimension::Key,
        SpendScope::Team(_) => Dimension::Team,
        SpendScope::User(_) => Dimension::User,
        SpendScope::Model(_) => Dimension::Model,
        SpendScope::Provider(_) => Dimension::Provider,
    };
    (Some(d), s.value().map(str::to_owned))
}

fn window(w: BudgetWindow) -> switchyard_budget::Window {
    match w {
        BudgetWindow::Daily => switchyard_budget::Window::Daily,
        BudgetWindow::Weekly => switchyard_budget::Window::Weekly,
        BudgetWindow::Monthly => switchyard_budget::Window::Monthly,
    }
}

fn notifier(config: &Config, nats: Option<&async_nats::Client>) -> Option<Notifier> {
    let webhook = config.alerts.webhook.as_ref().and_then(|w| {
        let url = url::Url::parse(&w.url).ok()?;
        Some(Webhook {
            url,
            headers: w
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.expose().to_owned()))
                .collect(),
            timeout: w.timeout,
        })
    });
    let nats = match (&config.alerts.nats_subject, nats) {
        (Some(subject), Some(client)) => Some((client.clone(), subject.clone())),
        _ => None,
    };
    match Notifier::new(webhook, nats.clone()) {
        Ok(n) => Some(n),
        Err(e) => {
            // `check` validated the URL: alerts are still logged and
            // published.
            tracing::error!(error = %e, "alert webhook unusable");
            Notifier::new(None, nats).ok()
        }
    }
}

/// The usage stream as `ledger.stream` configures it (routers and the
/// ledger writer).
pub fn stream_settings(config: &Config) -> switchyard_ledger::StreamSettings {
    let s = &config.ledger.stream;
    switchyard_ledger::StreamSettings {
        stream: s.name.clone(),
        subject_prefix: s.subject_prefix.clone(),
        duplicate_window: s.duplicate_window,
        max_age: s.max_age,
        ..switchyard_ledger::StreamSettings::default()
    }
}

async fn open_local(
    path: &std::path::Path,
) -> Result<Arc<switchyard_ledger::LocalLedger>, SpendError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| SpendError::LocalLedger {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
    }
    switchyard_ledger::LocalLedger::open(path).map_err(|e| SpendError::LocalLedger {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

/// `$SWITCHYARD_DATA_DIR/ledger.db`, else under the XDG data directory.
pub fn default_ledger_path() -> PathBuf {
    switchyard_config::data_dir().join("ledger.db")
}

fn time_zone(name: &str) -> TimeZone {
    TimeZone::get(name).unwrap_or(TimeZone::UTC)
}

fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| {
            h.trim()
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect::<String>()
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "router".to_owned())
}
