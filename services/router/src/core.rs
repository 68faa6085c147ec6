//! The gateway core that both front ends (HTTP and gRPC) call: resolve the
//! model to a plan, walk its targets over the bus, and hand back either a
//! complete result or a stream that has already produced its first event.
//!
//! Retries and fallback live here, at the route level, and only before the
//! first byte reaches the client: a streamed call is returned to the front
//! end only once its first content event arrived, so every failure before
//! that can still move to the next target.

use std::borrow::Cow;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use futures_util::{Stream, StreamExt};
use switchyard_bus::{Bus, BusError, Call, Event, Headers};
use switchyard_config::Config;
use switchyard_pricing::Usd;
use switchyard_proto::bus::v1::work_request::Work;
use switchyard_proto::bus::v1::{UpstreamError, WorkRequest};
use switchyard_proto::gateway::v1::{
    ChatChunk, ChatResult, ChatSpec, EmbedResult, EmbedSpec, ImageResult, ImageSpec, Role, Usage,
};
use switchyard_providers::params;
use switchyard_routing::{
    ControlError, Health, InFlight, ListedModel, Plan, RequestFacts, RouteTable, RoutingControls,
    Target,
};
use tokio::time::Instant;

use crate::attempts::{self, AttemptLog, Won};
use crate::cache::{self, CacheRequest, CacheStatus, EmbedPlan, Lookup, ResponseCache};
use crate::error::GatewayError;
use crate::metrics::{Metrics, RequestRecord, StreamRecord};
use crate::spend::{self, Admission, Downgrade, Identity, Meter, Spend};
use crate::trace::{self, RequestTrace};

/// What one request carries besides its body.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub request_id: String,
    /// Front end and operation, for metrics: `chat` (HTTP) or `grpc_chat`.
    pub operation: &'static str,
    /// The client's trace context (`traceparent`, `tracestate`). Each
    /// attempt sends the worker its own span's context instead; these go
    /// as they are only when tracing is not set up.
    pub headers: Headers,
    /// The tenant and the client's cache directives.
    pub cache: CacheRequest,
    /// Who the request is billed to (budgets, usage records).
    pub who: Identity,
    /// The `x-switchyard-route` header, as sent (parsed with the body's
    /// routing fields).
    pub route: Option<String>,
    /// The request's routing controls, once taken from the body and the
    /// header ([`take_controls`]).
    pub controls: Option<Arc<RoutingControls>>,
    /// The authenticated caller (`None`: an open gateway).
    pub caller: Option<Arc<switchyard_auth::Principal>>,
}

impl RequestContext {
    /// Bills the request to its authenticated caller: the key (or token
    /// subject), its team, and its user unless the client names one. A
    /// caller with a key cannot pick another team with a header.
    pub fn with_caller(mut self, caller: Option<Arc<switchyard_auth::Principal>>) -> Self {
        if let Some(p) = &caller {
            self.who.credential = Some(match &p.credential {
                switchyard_auth::Credential::Key { name, .. } => {
                    self.who.key_name = Some(name.clone());
                    "key"
                }
                switchyard_auth::Credential::Jwt { .. } => "jwt",
            });
            self.who.key = Some(p.id());
            self.who.team.clone_from(&p.team);
            if p.user.is_some() {
                self.who.user.clone_from(&p.user);
            }
        }
        self.caller = caller;
        self
    }
}

/// Takes OpenRouter's `models` and `provider` fields out of the body's
/// pass-through fields (no upstream takes them) and parses them with the
/// `x-switchyard-route` header into the context the request is routed
/// with; borrowed as it is when the request has no controls.
fn take_controls<'c>(
    spec: &mut ChatSpec,
    ctx: &'c RequestContext,
) -> Result<Cow<'c, RequestContext>, GatewayError> {
    let (models, provider) = match spec.extra.as_mut() {
        Some(extra) => (
            extra.fields.remove("models"),
            extra.fields.remove("provider"),
        ),
        None => (None, None),
    };
    if models.is_none() && provider.is_none() && ctx.route.is_none() {
        return Ok(Cow::Borrowed(ctx));
    }
    let json = switchyard_proto::json::json_from_value;
    let controls =
        RoutingControls::parse(models.map(json), provider.map(json), ctx.route.as_deref())
            .map_err(control_error)?;
    Ok(Cow::Owned(RequestContext {
        controls: Some(Arc::new(controls)),
        ..ctx.clone()
    }))
}

/// The caller's key's request limits: at most `max_messages` messages, and
/// `max_tokens` no higher than its ceiling (a request naming none gets the
/// ceiling, so the upstream cannot run past it).
fn key_request_limits(ctx: &RequestContext, spec: &mut ChatSpec) -> Result<(), GatewayError> {
    let Some(limits) = ctx.caller.as_ref().map(|c| &c.limits) else {
        return Ok(());
    };
    if let Some(max) = limits.max_messages
        && spec.messages.len() > usize::try_from(max).unwrap_or(usize::MAX)
    {
        return Err(GatewayError::RequestLimit {
            message: format!(
                "this API key allows at most {max} messages per request; this one has {}",
                spec.messages.len()
            ),
            param: "messages".into(),
        });
    }
    if let Some(ceiling) = limits.max_tokens {
        match spec.max_tokens {
            Some(asked) if asked > ceiling => {
                return Err(GatewayError::RequestLimit {
                    message: format!(
                        "this API key allows max_tokens up to {ceiling}; the request asks {asked}"
                    ),
                    param: "max_tokens".into(),
                });
            }
            Some(_) => {}
            None => spec.max_tokens = Some(ceiling),
        }
    }
    Ok(())
}

/// OpenRouter's `provider.require_parameters`: only targets that take the
/// request as it is, nothing dropped or clamped by the parameter policy.
fn require_parameters(
    mut plan: Plan,
    table: &RouteTable,
    reasoning: &params::ReasoningRules,
    spec: &ChatSpec,
) -> Result<Plan, GatewayError> {
    let kept: Vec<_> = plan
        .routes
        .iter()
        .filter(|r| {
            table.param_rules(&plan, &r.target).is_none_or(|(kind, _)| {
                let t = &r.target;
                params::fits(
                    spec,
                    &reasoning.target(&plan.model, &t.provider, kind, &t.upstream_model),
                )
            })
        })
        .cloned()
        .collect();
    if kept.is_empty() {
        return Err(GatewayError::InvalidRequest {
            message: "no target of this model takes every parameter of the request as it is \
                      (`provider.require_parameters: true`)"
                .to_owned(),
            param: Some("provider.require_parameters".to_owned()),
        });
    }
    plan.routes = kept.into();
    Ok(plan)
}

/// A Responses API request with something only a `responses: native`
/// target can serve (a built-in tool, an item type the translation lacks):
/// the other targets are left out before any is tried, and without a
/// native one it is the 400 naming that field.
fn native_targets_only(
    mut plan: Plan,
    table: &RouteTable,
    only: &switchyard_proto::gateway::v1::NativeOnly,
) -> Result<Plan, GatewayError> {
    let kept: Vec<_> = plan
        .routes
        .iter()
        .filter(|r| table.serves_responses_natively(&r.target.provider))
        .cloned()
        .collect();
    if kept.is_empty() {
        return Err(GatewayError::InvalidRequest {
            message: only.message.clone(),
            param: (!only.param.is_empty()).then(|| only.param.clone()),
        });
    }
    plan.routes = kept.into();
    Ok(plan)
}

fn control_error(e: ControlError) -> GatewayError {
    GatewayError::InvalidRequest {
        param: Some(e.param().to_owned()),
        message: e.to_string(),
    }
}

/// Which target served a request, and every target tried on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedBy {
    pub provider: String,
    pub upstream_model: String,
    pub attempts: AttemptLog,
    /// What was changed to fit the request to the target (parameters
    /// dropped or clamped); sent as `x-switchyard-warnings`.
    pub warnings: Vec<String>,
    /// What the response cache did (`x-switchyard-cache`).
    pub cache: CacheStatus,
    /// What the answer cost (`x-switchyard-cost-usd`), when a price is
    /// known and the answer came in one piece.
    pub cost: Option<Usd>,
    /// The budget that changed the model (`x-switchyard-budget`).
    pub downgrade: Option<Downgrade>,
    /// The tightest rate limit's figures (`x-ratelimit-*`).
    pub rate: Option<switchyard_ratelimit::RateHeaders>,
}

/// A request that failed, and every target tried on the way.
#[derive(Debug, Clone, PartialEq)]
pub struct Failed {
    pub error: GatewayError,
    pub attempts: AttemptLog,
}

impl From<Box<Failed>> for Failed {
    fn from(f: Box<Failed>) -> Self {
        *f
    }
}

impl From<GatewayError> for Failed {
    fn from(error: GatewayError) -> Self {
        Failed {
            error,
            attempts: AttemptLog::default(),
        }
    }
}

/// Items of a streamed answer as front ends see them.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamItem {
    Chunk(ChatChunk),
    /// The stream finished; usage as the provider reported it.
    Done(Option<Usage>),
    /// The stream broke after it started; nothing can be retried now.
    Failed(GatewayError),
}

pub type ChatStream = Pin<Box<dyn Stream<Item = StreamItem> + Send>>;

/// The last chunk of a stream carries its usage and no choices, stamped with
/// the stream's id, model and creation time, taken once from its first chunk.
#[derive(Debug, Default)]
pub struct UsageChunk {
    head: Option<ChatChunk>,
}

/// A chunk with `chunk`'s identity (id, model, created, fingerprint) and
/// nothing else: the frame of chunks the gateway adds to a stream.
pub(crate) fn chunk_head(chunk: &ChatChunk) -> ChatChunk {
    ChatChunk {
        id: chunk.id.clone(),
        model: chunk.model.clone(),
        created: chunk.created,
        system_fingerprint: chunk.system_fingerprint.clone(),
        ..ChatChunk::default()
    }
}

impl UsageChunk {
    pub fn observe(&mut self, chunk: &ChatChunk) {
        if self.head.is_none() {
            self.head = Some(chunk_head(chunk));
        }
    }

    pub fn finish(&mut self, usage: Option<Usage>) -> ChatChunk {
        ChatChunk {
            usage: Some(usage.unwrap_or_default()),
            ..self.head.take().unwrap_or_default()
        }
    }
}

pub struct Gateway {
    /// Swapped whole on config reload; requests in flight keep the table
    /// they started with.
    routes: ArcSwap<RouteTable>,
    /// The config's `reasoning` keys, swapped with `routes`.
    reasoning: ArcSwap<params::ReasoningRules>,
    /// The config's `guardrails`, compiled; swapped with `routes`.
    guardrails: ArcSwap<crate::guardrails::Guardrails>,
    /// Outlives reloads: a target's cooldown and breaker stay as they are
    /// when the table around it changes.
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    bus: Arc<dyn Bus>,
    request_timeout: Duration,
    /// Readiness is false: shutdown began (requests are still served while
    /// `server.shutdown_delay` runs).
    shutting_down: AtomicBool,
    /// The listeners stopped accepting: new requests are refused.
    closed: AtomicBool,
    /// `telemetry.record_content`: prompts and completions on the trace.
    record_content: bool,
    /// The response cache, when `cache.enabled` (fixed at start).
    cache: Option<ResponseCache>,
    /// Prices, the usage ledger, budgets and alerts.
    spend: Arc<Spend>,
    /// Credentials and model access rules.
    auth: Arc<crate::auth::Auth>,
    /// `rate_limits` and keys' own limits (reloaded in place).
    limiter: Arc<switchyard_ratelimit::Limiter>,
    /// Whether any `rate_limits` are configured: without them only keys
    /// with limits of their own pay for counting.
    rate_rules: AtomicBool,
}

impl Gateway {
    /// `metrics` are the ones `spend` records into.
    pub fn new(
        config: &Config,
        bus: Arc<dyn Bus>,
        health: Arc<Health>,
        metrics: Arc<Metrics>,
        spend: Arc<Spend>,
        auth: Arc<crate::auth::Auth>,
    ) -> Self {
        Self {
            spend,
            auth,
            limiter: Arc::new(switchyard_ratelimit::Limiter::new(crate::limits::rules(
                config,
            ))),
            rate_rules: AtomicBool::new(!config.rate_limits.is_empty()),
            routes: ArcSwap::from_pointee(RouteTable::from_config(config)),
            reasoning: ArcSwap::from_pointee(params::ReasoningRules::from_config(config)),
            guardrails: ArcSwap::new(crate::guardrails::Guardrails::from_config(config)),
            cache: ResponseCache::from_config(config, metrics.clone()),
            metrics,
            health,
            bus,
            request_timeout: config.server.request_timeout,
            shutting_down: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            record_content: config.telemetry.record_content,
        }
    }

    /// Applies a new config's models and routing settings. Requests already
    /// running finish on the old table.
    pub fn reload(&self, config: &Config) {
        self.routes.store(Arc::new(RouteTable::from_config(config)));
        self.reasoning
            .store(Arc::new(params::ReasoningRules::from_config(config)));
        self.guardrails
            .store(crate::guardrails::Guardrails::from_config(config));
        self.health.set_config(&config.routing);
        if let Some(cache) = &self.cache {
            cache.reload(config);
        }
        self.spend.reload(config);
        self.auth.reload(config);
        self.limiter.set_rules(crate::limits::rules(config));
        self.rate_rules
            .store(!config.rate_limits.is_empty(), Ordering::Relaxed);
    }

    /// The rate limiter, for the sync task that shares its counts.
    pub fn limiter(&self) -> &Arc<switchyard_ratelimit::Limiter> {
        &self.limiter
    }

    fn rate_limited(&self, caller: Option<&switchyard_auth::Principal>) -> bool {
        self.rate_rules.load(Ordering::Relaxed)
            || caller.is_some_and(|c| c.limits.rpm.is_some() || c.limits.tpm.is_some())
    }

    pub fn auth(&self) -> &Arc<crate::auth::Auth> {
        &self.auth
    }

    /// The models `caller` may ask for (`GET /v1/models`).
    pub fn list_models_for(&self, caller: Option<&switchyard_auth::Principal>) -> Vec<ListedModel> {
        let mut models = self.list_models();
        models.retain(|m| self.auth.allows(caller, &m.id));
        models
    }

    pub fn spend(&self) -> &Arc<Spend> {
        &self.spend
    }

    pub fn list_models(&self) -> Vec<ListedModel> {
        self.routes.load().list().to_vec()
    }

    pub fn health(&self) -> &Health {
        &self.health
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The current route table (for the admin API).
    pub fn routes(&self) -> Arc<RouteTable> {
        self.routes.load_full()
    }

    /// Readiness: false once shutdown began, so load balancers move away.
    pub fn is_ready(&self) -> bool {
        !self.shutting_down.load(Ordering::Relaxed)
    }

    /// Readiness turns false; requests are still taken (load balancers and
    /// Kubernetes endpoints need a moment to stop sending them).
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Relaxed);
    }

    /// The listeners stopped accepting: a request that still arrives (on a
    /// connection being drained) is refused with `shutting_down`.
    pub fn close(&self) {
        self.begin_shutdown();
        self.closed.store(true, Ordering::Relaxed);
    }

    fn plan(
        &self,
        model: &str,
        work: &Work,
        blocked: &[switchyard_budget::Exceeded],
        controls: Option<&RoutingControls>,
    ) -> Result<Plan, GatewayError> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(GatewayError::ShuttingDown);
        }
        match work {
            Work::Chat(spec) => validate_spec(spec)?,
            Work::Embed(spec) => validate_embed(spec)?,
            Work::Image(spec) => validate_image(spec)?,
        }
        let table = self.routes.load();
        let mut plan = table
            .resolve(model)
            .ok_or_else(|| GatewayError::ModelNotFound(model.to_owned()))?;
        if let Some(controls) = controls {
            plan = controls
                .apply(plan, &table, &self.health, |t| self.spend.list_price(t))
                .map_err(control_error)?;
            if controls.provider.require_parameters == Some(true)
                && let Work::Chat(spec) = work
            {
                plan = require_parameters(plan, &table, &self.reasoning.load(), spec)?;
            }
        }
        if let Work::Chat(spec) = work
            && let Some(only) = &spec.native_only
        {
            plan = native_targets_only(plan, &table, only)?;
        }
        spend::without_blocked(plan, blocked)
    }

    /// A complete answer from the first target that gives one.
    pub async fn chat(
        &self,
        mut spec: ChatSpec,
        ctx: &RequestContext,
    ) -> Result<(ServedBy, ChatResult), Failed> {
        // Answer rules name models as clients do, like the prompt's.
        let asked = spec.model.clone();
        let (meter, admission, ctx) = self.admit_chat(ctx, &mut spec)?;
        let ctx = &*ctx;
        let trace = RequestTrace::begin(&spec, false, self.record_content);
        let (status, store) = match self.cache_lookup(&spec, ctx).await {
            Lookup::Hit(hit) => {
                return Ok(self.cached_answer(*hit, meter, admission, &trace, &asked, ctx)?);
            }
            Lookup::Miss(status, store) => (status, store),
        };
        let facts = RequestFacts::from_spec(&spec);
        let model = spec.model.clone();
        let completion = trace.completion();
        let out = self
            .unary(
                &model,
                facts,
                Work::Chat(spec),
                ctx,
                &admission,
                trace,
                chat_result,
                |t, r| {
                    t.result(r);
                    r.usage.as_ref()
                },
            )
            .await;
        let (mut meter, mut served, mut result) =
            serve_unary(meter, out, |r| r.usage.as_mut(), |_| 0)?;
        // Before the cache: a redacted answer is what gets stored, and a
        // blocked one is not stored at all.
        let answer = self
            .guardrails
            .load()
            .apply_response(&mut result, &asked, &ctx.who);
        // The answer as the client gets it; a blocked one is not kept.
        if answer.is_ok() && captures(ctx) {
            meter.payload("response", crate::payload::response(&result));
        }
        meter.finish();
        if let Err(error) = answer {
            return Err(Failed {
                error,
                attempts: served.attempts,
            });
        }
        if let Some(c) = completion {
            c.record(&result);
        }
        served.cache = status;
        admission.stamp(&mut served);
        if let Some(store) = store {
            store.result(&served, &result).await;
        }
        Ok((served, result))
    }

    /// A cache hit as the answer: metered (nothing spent), the answer rules
    /// applied (rules added since the answer was stored apply too), traced.
    fn cached_answer(
        &self,
        (mut served, mut result): (ServedBy, ChatResult),
        mut meter: Meter,
        admission: Admission,
        trace: &RequestTrace,
        asked: &str,
        ctx: &RequestContext,
    ) -> Result<(ServedBy, ChatResult), Box<Failed>> {
        trace.result(&result);
        meter.cache_hit(&served, result.usage.as_mut());
        let answer = self
            .guardrails
            .load()
            .apply_response(&mut result, asked, &ctx.who);
        if answer.is_ok() && captures(ctx) {
            meter.payload("response", crate::payload::response(&result));
        }
        meter.finish();
        if let Err(error) = answer {
            return Err(Box::new(Failed {
                error,
                attempts: served.attempts,
            }));
        }
        if let Some(c) = trace.completion() {
            c.record(&result);
        }
        admission.stamp(&mut served);
        Ok((served, result))
    }

    /// The budgets' say before anything else: a refusal, or the model to
    /// route (`model` is changed in place when a budget downgrades it) and
    /// the providers to skip; with the meter of the request's usage record.
    fn admit(
        &self,
        ctx: &RequestContext,
        operation: &'static str,
        model: &mut String,
        body_user: &str,
    ) -> Result<(Meter, Admission), Box<Failed>> {
        let who = ctx.who.clone().with_body_user(body_user);
        let mut meter = self.spend.meter(&ctx.request_id, operation, &who, model);
        if let Err(e) = self.auth.check_model(ctx.caller.as_deref(), model) {
            let f = Failed::from(e);
            meter.failed(&f);
            return Err(Box::new(f));
        }
        self.spend.sync_key_budgets(&self.auth);
        match self.spend.admit(&who, model) {
            Ok(mut admission) => {
                if self.rate_limited(ctx.caller.as_deref()) {
                    // Model names the route table does not know (a 404 to
                    // come) share one counter: the client picks them, and
                    // each distinct one would be a counter kept for minutes.
                    let counted = if self.routes.load().knows(model) {
                        model.as_str()
                    } else {
                        "(unknown)"
                    };
                    match crate::limits::admit(&self.limiter, &who, ctx.caller.as_deref(), counted)
                    {
                        Ok((headers, charge)) => {
                            admission.rate = headers;
                            meter.charge(charge);
                        }
                        Err(e) => {
                            let f = Failed::from(e);
                            meter.failed(&f);
                            return Err(Box::new(f));
                        }
                    }
                }
                if let Some(d) = &admission.downgrade {
                    model.clone_from(&d.to);
                }
                Ok((meter, admission))
            }
            Err(e) => {
                let f = Failed::from(e);
                meter.failed(&f);
                Err(Box::new(f))
            }
        }
    }

    /// [`Self::admit`] for chat, then the request's routing controls taken
    /// out of its body and header: the context it is routed with.
    fn admit_chat<'c>(
        &self,
        ctx: &'c RequestContext,
        spec: &mut ChatSpec,
    ) -> Result<(Meter, Admission, Cow<'c, RequestContext>), Box<Failed>> {
        let guardrails = self.guardrails.load();
        // Rules name models as clients do, before a spend cap downgrades.
        let asked = (!guardrails.is_empty()).then(|| spec.model.clone());
        let (mut meter, admission) = self.admit(ctx, "chat", &mut spec.model, &spec.user)?;
        // Before anything (cache, routing) sees the prompt.
        if let Some(model) = asked {
            match guardrails.apply(spec, &model, &ctx.who) {
                Ok(applied) => meter.guardrails(applied.matched),
                Err(e) => {
                    if let GatewayError::GuardrailBlocked { rule, detector } = &e {
                        meter.guardrails(vec![format!("block:{rule}/{detector}")]);
                    }
                    let f = Failed::from(e);
                    meter.failed(&f);
                    return Err(Box::new(f));
                }
            }
        }
        // After the redaction: the audit trail keeps what went upstream,
        // never what the rules took out. A blocked request keeps none.
        if captures(ctx) {
            meter.payload("request", crate::payload::request(spec));
        }
        let checked = key_request_limits(ctx, spec).and_then(|()| {
            let routed = take_controls(spec, ctx)?;
            self.check_control_models(&routed)?;
            Ok(routed)
        });
        match checked {
            Ok(ctx) => Ok((meter, admission, ctx)),
            Err(e) => {
                let f = Failed::from(e);
                meter.failed(&f);
                Err(Box::new(f))
            }
        }
    }

    /// Routing controls reach other models (`models`) and upstream models
    /// (`x-switchyard-route` targets): each must be one the caller may use.
    fn check_control_models(&self, ctx: &RequestContext) -> Result<(), GatewayError> {
        let Some(controls) = &ctx.controls else {
            return Ok(());
        };
        let caller = ctx.caller.as_deref();
        let targets = controls.route.iter().flat_map(|r| &r.targets);
        for model in controls
            .models
            .iter()
            .map(String::as_str)
            .chain(targets.map(|t| t.model()))
        {
            self.auth.check_model(caller, model)?;
        }
        Ok(())
    }

    /// The one place chat consults the response cache (before routing).
    /// The semantic cache embeds prompts through [`Self::embed`].
    async fn cache_lookup(&self, spec: &ChatSpec, ctx: &RequestContext) -> Lookup {
        match &self.cache {
            Some(cache) if !self.closed.load(Ordering::Relaxed) => {
                let embedder = GatewayEmbedder { gateway: self, ctx };
                cache.lookup(spec, &ctx.cache, &embedder).await
            }
            _ => Lookup::Miss(CacheStatus::Off, None),
        }
    }

    /// Waits until the response cache's entries are in its persistence
    /// file (`cache.persist`); at shutdown.
    pub async fn flush_cache(&self) {
        if let Some(cache) = &self.cache {
            cache.flush().await;
        }
    }

    /// A streamed answer. Returns once the first chunk arrived (or the stream
    /// ended empty), so the caller can still send a proper error status for
    /// anything that fails before that.
    pub async fn chat_stream(
        &self,
        mut spec: ChatSpec,
        ctx: &RequestContext,
    ) -> Result<(ServedBy, ChatStream), Failed> {
        let started = Instant::now();
        // Answer rules name models as clients do, like the prompt's.
        let asked = spec.model.clone();
        let (meter, admission, ctx) = self.admit_chat(ctx, &mut spec)?;
        let ctx = &*ctx;
        let trace = RequestTrace::begin(&spec, true, self.record_content);
        let (status, store) = match self.cache_lookup(&spec, ctx).await {
            Lookup::Hit(hit) => {
                let (served, result) =
                    self.cached_answer(*hit, meter, admission, &trace, &asked, ctx)?;
                return Ok((served, cache::replay(&result)));
            }
            Lookup::Miss(status, store) => (status, store),
        };
        let facts = RequestFacts::from_spec(&spec);
        let model = spec.model.clone();
        let work = Work::Chat(spec);
        let (mut served, won, deadline) = match self
            .run(&model, facts, &work, ctx, &admission, true, stream_attempt)
            .await
        {
            Ok(v) => v,
            Err(f) => {
                trace.failed(&f);
                self.record_failure(ctx, &model, true, started, &f);
                meter.failed(&f);
                return Err(f);
            }
        };
        let (first, call) = won.value;
        let stream = continue_stream(
            first,
            call,
            won.in_flight,
            served.provider.clone(),
            deadline,
        );
        // First, so metrics, traces, the cache and the meter all see the
        // answer as the client gets it.
        let stream = self.guardrails.load().stream(stream, &asked, &ctx.who);
        let record = StreamRecord {
            operation: ctx.operation,
            model,
            provider: served.provider.clone(),
            upstream_model: served.upstream_model.clone(),
            started,
            first_token: started.elapsed(),
            attempts: served.attempts.clone(),
        };
        trace.served(&served);
        let stream = trace.stream(self.metrics.watch(stream, record), won.span);
        served.cache = status;
        admission.stamp(&mut served);
        // Metered inside the cache's tap: the stored answer's usage has
        // no cost in it (a hit reports its own).
        let stream = match store {
            Some(store) => store.stream(&served, stream),
            None => stream,
        };
        let stream = spend::metered(stream, meter, &served, work);
        Ok((served, stream))
    }

    /// A request that failed before any answer reached the client. Unknown
    /// model names are one label value, so a client cannot grow the metrics
    /// without bound by asking for made-up models.
    fn record_failure(
        &self,
        ctx: &RequestContext,
        model: &str,
        stream: bool,
        started: Instant,
        f: &Failed,
    ) {
        let model = match f.error {
            GatewayError::ModelNotFound(_) => "unknown",
            _ => model,
        };
        self.metrics.record(&RequestRecord {
            operation: ctx.operation,
            model,
            provider: "",
            upstream_model: "",
            outcome: f.error.class().code.unwrap_or("error"),
            stream,
            duration: started.elapsed(),
            first_token: None,
            usage: None,
            attempts: &f.attempts,
        });
    }

    /// Resolves the plan and walks it under the request's deadline, making
    /// each attempt with `attempt`.
    #[allow(clippy::too_many_arguments)]
    async fn run<T, F, Fut>(
        &self,
        model: &str,
        facts: RequestFacts,
        work: &Work,
        ctx: &RequestContext,
        admission: &Admission,
        stream: bool,
        attempt: F,
    ) -> Result<(ServedBy, Won<T>, Deadline), Failed>
    where
        T: Send + 'static,
        F: Fn(Arc<dyn Bus>, Arc<Metrics>, WorkRequest, Headers) -> Fut,
        Fut: std::future::Future<Output = Result<T, AttemptError>> + Send + 'static,
    {
        let routing = trace::routing_span(model);
        let plan = routing
            .in_scope(|| self.plan(model, work, &admission.blocked, ctx.controls.as_deref()))?;
        trace::routing_plan(&routing, &plan);
        let timeout = plan.timeout.unwrap_or(self.request_timeout);
        let deadline = Deadline {
            at: Instant::now() + timeout,
            timeout,
        };
        let mut log = AttemptLog {
            routing: ctx.controls.as_ref().map(|c| c.describe()),
            ..AttemptLog::default()
        };
        let walk = attempts::walk(
            &self.health,
            &plan,
            &facts,
            &mut log,
            routing,
            trace::operation_name(work),
            |route, n| {
                let provider = route.target.provider.to_string();
                let fut = self.fit_work(work, &plan, &route.target).map(|(work, _)| {
                    let request = self.work_request(
                        work.into_owned(),
                        &route.target,
                        ctx,
                        stream,
                        n,
                        deadline.at,
                    );
                    // Called inside the attempt's span: the worker continues
                    // it (this replaces the client's own traceparent, if any).
                    let mut headers = ctx.headers.clone();
                    switchyard_telemetry::inject(&mut headers);
                    attempt(self.bus.clone(), self.metrics.clone(), request, headers)
                });
                async move {
                    match fut {
                        Ok(fut) => fut.await.map_err(|e| e.into_gateway(&provider)),
                        Err(e) => Err(e),
                    }
                }
            },
        );
        let won = match tokio::time::timeout_at(deadline.at, walk).await {
            Ok(Ok(won)) => won,
            Ok(Err(error)) => {
                return Err(Failed {
                    error,
                    attempts: log,
                });
            }
            Err(_) => {
                return Err(Failed {
                    error: GatewayError::DeadlineExceeded(timeout),
                    attempts: log,
                });
            }
        };
        // Fitting is deterministic: the winner's warnings are recomputed
        // rather than carried out of every attempt.
        let warnings = self
            .fit_work(work, &plan, &won.route.target)
            .map(|(_, w)| w)
            .unwrap_or_default();
        let served = ServedBy {
            provider: won.route.target.provider.to_string(),
            upstream_model: won.route.target.upstream_model.to_string(),
            attempts: log,
            warnings,
            cache: CacheStatus::Off,
            cost: None,
            downgrade: None,
            rate: None,
        };
        Ok((served, won, deadline))
    }

    /// `spec` as a target of this provider's kind can take it, under the
    /// route's `unsupported_params` policy (docs/providers.md,
    /// "Parameters"), with the warnings to report. Borrowed when nothing
    /// needed changing, which is the usual case.
    fn fit_to_target<'s>(
        &self,
        spec: &'s ChatSpec,
        plan: &Plan,
        target: &Target,
    ) -> Result<(Cow<'s, ChatSpec>, Vec<String>), GatewayError> {
        let Some((kind, policy)) = self.routes.load().param_rules(plan, target) else {
            return Ok((Cow::Borrowed(spec), Vec::new()));
        };
        let facts = self.reasoning.load().target(
            &plan.model,
            &target.provider,
            kind,
            &target.upstream_model,
        );
        if params::fits(spec, &facts) {
            return Ok((Cow::Borrowed(spec), Vec::new()));
        }
        let mut fitted = spec.clone();
        let warnings = params::normalize(&mut fitted, &facts, policy)
            .map_err(GatewayError::UnsupportedParameter)?;
        Ok((Cow::Owned(fitted), warnings))
    }

    /// The work as `target` can take it: chat goes through
    /// [`Self::fit_to_target`]; embeddings and images are sent as they are.
    fn fit_work<'w>(
        &self,
        work: &'w Work,
        plan: &Plan,
        target: &Target,
    ) -> Result<(Cow<'w, Work>, Vec<String>), GatewayError> {
        match work {
            Work::Chat(spec) => Ok(match self.fit_to_target(spec, plan, target)? {
                (Cow::Borrowed(_), warnings) => (Cow::Borrowed(work), warnings),
                (Cow::Owned(fitted), warnings) => (Cow::Owned(Work::Chat(fitted)), warnings),
            }),
            Work::Embed(spec) => {
                if let Some((kind, _)) = self.routes.load().param_rules(plan, target) {
                    params::check_embed(spec, &target.provider, kind)
                        .map_err(GatewayError::UnsupportedParameter)?;
                }
                Ok((Cow::Borrowed(work), Vec::new()))
            }
            Work::Image(_) => Ok((Cow::Borrowed(work), Vec::new())),
        }
    }

    fn work_request(
        &self,
        work: Work,
        target: &Target,
        ctx: &RequestContext,
        stream: bool,
        attempt: u32,
        deadline: Instant,
    ) -> WorkRequest {
        let remaining = deadline.saturating_duration_since(Instant::now());
        WorkRequest {
            request_id: ctx.request_id.clone(),
            provider: target.provider.to_string(),
            upstream_model: target.upstream_model.to_string(),
            work: Some(work),
            stream,
            deadline_ms: u64::try_from(remaining.as_millis())
                .unwrap_or(u64::MAX)
                .max(1),
            attempt,
        }
    }
}

/// The semantic cache's embeddings: the gateway's own embeddings path, in
/// process, so the call is routed, cached per input, priced and recorded
/// like any embeddings request: billed to the same caller, under its own
/// request id (`<id>:semantic`, the usage ledger keeps one record per id)
/// and operation (`semantic_cache`).
struct GatewayEmbedder<'a> {
    gateway: &'a Gateway,
    ctx: &'a RequestContext,
}

impl cache::Embedder for GatewayEmbedder<'_> {
    async fn embed(&self, spec: EmbedSpec) -> Option<Vec<f32>> {
        let ctx = RequestContext {
            request_id: format!("{}:semantic", self.ctx.request_id),
            operation: "semantic_cache",
            headers: self.ctx.headers.clone(),
            cache: CacheRequest {
                tenant: self.ctx.cache.tenant.clone(),
                lookup: true,
                store: true,
            },
            who: self.ctx.who.clone(),
            route: None,
            controls: None,
            // The operator's embedding model, not the caller's choice:
            // billed to the caller, not held to its model rules.
            caller: None,
        };
        match self.gateway.embed(spec, &ctx).await {
            Ok((_, result)) => result.data.into_iter().next().map(|e| e.vector),
            Err(f) => {
                tracing::warn!(error = %f.error, "semantic cache: embedding the prompt failed; answering as a miss");
                None
            }
        }
    }
}

/// Settles a unary answer's meter: its cost stamped into the usage the
/// client gets, or the failure recorded.
fn settle_unary<T>(
    meter: Meter,
    out: Result<(ServedBy, T), Failed>,
    usage: impl FnOnce(&mut T) -> Option<&mut Usage>,
    images: impl FnOnce(&T) -> u32,
) -> Result<(ServedBy, T), Box<Failed>> {
    let (meter, served, result) = serve_unary(meter, out, usage, images)?;
    meter.finish();
    Ok((served, result))
}

/// [`settle_unary`] with the meter handed back unfinished on success, for
/// what still belongs in the record (the answer's payload).
fn serve_unary<T>(
    mut meter: Meter,
    out: Result<(ServedBy, T), Failed>,
    usage: impl FnOnce(&mut T) -> Option<&mut Usage>,
    images: impl FnOnce(&T) -> u32,
) -> Result<(Meter, ServedBy, T), Box<Failed>> {
    match out {
        Ok((mut served, mut result)) => {
            let images = images(&result);
            meter.served(&mut served, usage(&mut result), images);
            Ok((meter, served, result))
        }
        Err(f) => {
            meter.failed(&f);
            Err(Box::new(f))
        }
    }
}

/// Whether the request's payloads go into its usage record: its caller's
/// key says so. Embeddings and images never: no guardrail redacts their
/// inputs.
fn captures(ctx: &RequestContext) -> bool {
    ctx.caller.as_ref().is_some_and(|c| c.capture_payloads)
}

/// Embeddings and image generation: the same route walk as chat (fallback,
/// retries, breakers, deadlines), with one unary attempt per target.
impl Gateway {
    /// Embeddings from the first target that gives them, one per input in
    /// input order. Vectors are floats; encoding them (base64) is the front
    /// end's business.
    pub async fn embed(
        &self,
        mut spec: EmbedSpec,
        ctx: &RequestContext,
    ) -> Result<(ServedBy, EmbedResult), Failed> {
        let (meter, admission) = self.admit(ctx, "embeddings", &mut spec.model, &spec.user)?;
        let model = spec.model.clone();
        // Checked before the cache: a stored vector never answers a request
        // that would have been refused.
        if let Err(e) = validate_embed(&spec) {
            let f = Failed::from(e);
            meter.failed(&f);
            return Err(f);
        }
        // Per input: only the inputs not cached go upstream.
        let plan = match &self.cache {
            Some(cache) if !self.closed.load(Ordering::Relaxed) => {
                cache.embed_lookup(&spec, &ctx.cache).await
            }
            _ => EmbedPlan::bypass(CacheStatus::Off),
        };
        let spec = match plan.uncached(&spec) {
            Some(sent) => sent,
            None => {
                let (served, result) = plan.all_cached();
                let mut meter = meter;
                meter.cache_hit(&served, None);
                meter.finish();
                return Ok((served, result));
            }
        };
        let work = Work::Embed(spec);
        let trace = RequestTrace::begin_operation(trace::operation_name(&work), &model);
        let facts = RequestFacts::default();
        let out = self
            .unary(
                &model,
                facts,
                work,
                ctx,
                &admission,
                trace,
                embeddings_result,
                |t, r| {
                    t.unary_result(&r.model, r.usage.as_ref());
                    r.usage.as_ref()
                },
            )
            .await;
        let (mut served, result) = settle_unary(meter, out, |r| r.usage.as_mut(), |_| 0)?;
        served.cache = plan.status();
        admission.stamp(&mut served);
        let merged = plan.merge(&served, result).await;
        Ok((served, merged))
    }

    /// Generated images from the first target that gives them.
    pub async fn images(
        &self,
        mut spec: ImageSpec,
        ctx: &RequestContext,
    ) -> Result<(ServedBy, ImageResult), Failed> {
        let (meter, admission) = self.admit(ctx, "images", &mut spec.model, &spec.user)?;
        let model = spec.model.clone();
        let work = Work::Image(spec);
        let trace = RequestTrace::begin_operation(trace::operation_name(&work), &model);
        let facts = RequestFacts::default();
        let out = self
            .unary(
                &model,
                facts,
                work,
                ctx,
                &admission,
                trace,
                images_result,
                |t, r| {
                    t.unary_result("", r.usage.as_ref());
                    r.usage.as_ref()
                },
            )
            .await;
        let (mut served, result) = settle_unary(
            meter,
            out,
            |r| r.usage.as_mut(),
            |r| u32::try_from(r.data.len()).unwrap_or(u32::MAX),
        )?;
        admission.stamp(&mut served);
        Ok((served, result))
    }

    /// A request answered in one piece (chat, embeddings, images): routed,
    /// traced and recorded alike. `terminal` picks the answer out of the
    /// worker's terminal event; `describe` records it on the trace and
    /// gives its usage. Embeddings and images route on the model alone:
    /// context windows and capabilities are chat notions.
    #[allow(clippy::too_many_arguments)]
    async fn unary<T: Send + 'static>(
        &self,
        model: &str,
        facts: RequestFacts,
        work: Work,
        ctx: &RequestContext,
        admission: &Admission,
        trace: RequestTrace,
        terminal: fn(Event) -> Result<T, Box<Event>>,
        describe: for<'a> fn(&RequestTrace, &'a T) -> Option<&'a Usage>,
    ) -> Result<(ServedBy, T), Failed> {
        let started = Instant::now();
        let mut answered = None;
        let out = self
            .run(
                model,
                facts,
                &work,
                ctx,
                admission,
                false,
                move |b, m, r, h| unary_attempt(b, m, r, h, terminal),
            )
            .await
            .map(|(served, won, _deadline)| {
                answered = Some((won.route.target, won.took));
                (served, won.value)
            });
        match &out {
            Ok((served, value)) => {
                trace.served(served);
                let usage = describe(&trace, value);
                // Generation speed for `provider.sort: throughput`; only
                // chat generates text.
                if let (Work::Chat(_), Some(u), Some((target, took))) = (&work, usage, &answered) {
                    self.health
                        .record_output(target, u.completion_tokens, *took);
                }
                self.metrics.record(&RequestRecord {
                    operation: ctx.operation,
                    model,
                    provider: &served.provider,
                    upstream_model: &served.upstream_model,
                    outcome: "ok",
                    stream: false,
                    duration: started.elapsed(),
                    first_token: None,
                    usage,
                    attempts: &served.attempts,
                });
            }
            Err(f) => {
                trace.failed(f);
                self.record_failure(ctx, model, false, started, f);
            }
        }
        out
    }
}

#[derive(Debug, Clone, Copy)]
struct Deadline {
    at: Instant,
    timeout: Duration,
}

/// A failed attempt, before it is attributed to its provider.
pub(crate) enum AttemptError {
    Bus(BusError),
    Upstream(UpstreamError),
    Protocol(String),
}

impl AttemptError {
    fn into_gateway(self, provider: &str) -> GatewayError {
        match self {
            AttemptError::Bus(e) => GatewayError::from_bus(e, provider),
            AttemptError::Upstream(error) => GatewayError::Upstream {
                provider: provider.to_owned(),
                error,
            },
            AttemptError::Protocol(m) => {
                GatewayError::Internal(format!("worker for `{provider}` broke protocol: {m}"))
            }
        }
    }
}

fn stream_ended(provider: &str) -> BusError {
    BusError::WorkerLost {
        provider: provider.to_owned(),
        reason: "event stream ended before a terminal event".into(),
    }
}

/// Hands the work to a worker. `Bus::call` returns once a worker took it
/// (over NATS: its acknowledgement arrived), so its duration is the bus
/// round trip.
async fn call_bus(
    bus: &dyn Bus,
    metrics: &Metrics,
    request: WorkRequest,
    headers: Headers,
) -> Result<Call, AttemptError> {
    let started = Instant::now();
    let provider = request.provider.clone();
    let call = bus
        .call(request, headers)
        .await
        .map_err(AttemptError::Bus)?;
    metrics.bus_round_trip(&provider, started.elapsed());
    Ok(call)
}

/// The terminal event a unary call of each operation answers with; any
/// other event comes back as it is (boxed: events are large).
fn chat_result(e: Event) -> Result<ChatResult, Box<Event>> {
    match e {
        Event::Result(r) => Ok(r),
        other => Err(Box::new(other)),
    }
}

fn embeddings_result(e: Event) -> Result<EmbedResult, Box<Event>> {
    match e {
        Event::Embeddings(r) => Ok(r),
        other => Err(Box::new(other)),
    }
}

fn images_result(e: Event) -> Result<ImageResult, Box<Event>> {
    match e {
        Event::Images(r) => Ok(r),
        other => Err(Box::new(other)),
    }
}

/// One attempt answered in one piece: `terminal` picks the operation's
/// answer out of the first content event.
async fn unary_attempt<T>(
    bus: Arc<dyn Bus>,
    metrics: Arc<Metrics>,
    request: WorkRequest,
    headers: Headers,
    terminal: fn(Event) -> Result<T, Box<Event>>,
) -> Result<T, AttemptError> {
    let provider = request.provider.clone();
    let mut call = call_bus(&*bus, &metrics, request, headers).await?;
    match call.next().await {
        Some(Ok(Event::Error(e))) => Err(AttemptError::Upstream(e)),
        Some(Ok(event)) => terminal(event).map_err(|other| {
            AttemptError::Protocol(format!("unexpected event {other:?} for a unary call"))
        }),
        Some(Err(e)) => Err(AttemptError::Bus(e)),
        None => Err(AttemptError::Bus(stream_ended(&provider))),
    }
}

enum First {
    Chunk(ChatChunk),
    End(Option<Usage>),
}

async fn stream_attempt(
    bus: Arc<dyn Bus>,
    metrics: Arc<Metrics>,
    request: WorkRequest,
    headers: Headers,
) -> Result<(First, Call), AttemptError> {
    let provider = request.provider.clone();
    let mut call = call_bus(&*bus, &metrics, request, headers).await?;
    match call.next().await {
        Some(Ok(Event::Chunk(c))) => Ok((First::Chunk(c), call)),
        Some(Ok(Event::End(end))) => Ok((First::End(end.usage), call)),
        Some(Ok(Event::Error(e))) => Err(AttemptError::Upstream(e)),
        Some(Ok(other)) => Err(AttemptError::Protocol(format!(
            "unexpected event {other:?} for a stream"
        ))),
        Some(Err(e)) => Err(AttemptError::Bus(e)),
        None => Err(AttemptError::Bus(stream_ended(&provider))),
    }
}

/// The rest of a stream after its first event. Dropping it drops the call,
/// which cancels the upstream request; the in-flight guard lives as long as
/// the stream, so `least-busy` counts running streams.
fn continue_stream(
    first: First,
    call: Call,
    in_flight: InFlight,
    provider: String,
    deadline: Deadline,
) -> ChatStream {
    let head = match first {
        First::Chunk(c) => StreamItem::Chunk(c),
        First::End(u) => StreamItem::Done(u),
    };
    let done = matches!(head, StreamItem::Done(_));
    // The first event just arrived: generation is timed from here.
    let first_at = Instant::now();
    let state = Some((call, provider, in_flight));
    let rest = futures_util::stream::unfold(state, move |state| async move {
        let (mut call, provider, in_flight) = state?;
        let next = tokio::time::timeout_at(deadline.at, call.next()).await;
        let item = match next {
            Err(_) => StreamItem::Failed(GatewayError::DeadlineExceeded(deadline.timeout)),
            Ok(Some(Ok(Event::Chunk(c)))) => {
                return Some((StreamItem::Chunk(c), Some((call, provider, in_flight))));
            }
            Ok(Some(Ok(Event::End(end)))) => {
                if let Some(u) = &end.usage {
                    in_flight.record_output(u.completion_tokens, first_at.elapsed());
                }
                StreamItem::Done(end.usage)
            }
            Ok(Some(Ok(Event::Error(error)))) => {
                StreamItem::Failed(GatewayError::Upstream { provider, error })
            }
            Ok(Some(Ok(other))) => StreamItem::Failed(GatewayError::Internal(format!(
                "worker for `{provider}` broke protocol: unexpected event {other:?} in a stream"
            ))),
            Ok(Some(Err(e))) => StreamItem::Failed(GatewayError::from_bus(e, &provider)),
            Ok(None) => {
                StreamItem::Failed(GatewayError::from_bus(stream_ended(&provider), &provider))
            }
        };
        Some((item, None))
    });
    let head = futures_util::stream::once(async move { head });
    if done {
        Box::pin(head)
    } else {
        Box::pin(head.chain(rest))
    }
}

/// What every front end checks, whatever shape the request came in.
pub fn validate_spec(spec: &ChatSpec) -> Result<(), GatewayError> {
    let invalid = |message: String, param: &str| GatewayError::InvalidRequest {
        message,
        param: Some(param.to_owned()),
    };
    if spec.model.trim().is_empty() {
        return Err(invalid(
            "you must provide a model parameter".into(),
            "model",
        ));
    }
    if spec.messages.is_empty() {
        return Err(invalid(
            "`messages` must contain at least one message".into(),
            "messages",
        ));
    }
    for (i, m) in spec.messages.iter().enumerate() {
        if m.role == Role::Unspecified as i32 || Role::try_from(m.role).is_err() {
            return Err(invalid(
                format!("messages[{i}].role is missing or unknown"),
                &format!("messages[{i}].role"),
            ));
        }
    }
    if let Some(t) = spec.temperature
        && !(0.0..=2.0).contains(&t)
    {
        return Err(invalid(
            format!("{t} is greater than the maximum of 2 or below 0 - 'temperature'"),
            "temperature",
        ));
    }
    if let Some(p) = spec.top_p
        && !(0.0..=1.0).contains(&p)
    {
        return Err(invalid(
            format!("{p} is not between 0 and 1 - 'top_p'"),
            "top_p",
        ));
    }
    Ok(())
}

/// What every front end checks on an embeddings request (the HTTP shim
/// checks more, as OpenAI does, before it builds the spec).
pub fn validate_embed(spec: &EmbedSpec) -> Result<(), GatewayError> {
    let invalid = |message: &str, param: &str| GatewayError::InvalidRequest {
        message: message.to_owned(),
        param: Some(param.to_owned()),
    };
    if spec.model.trim().is_empty() {
        return Err(invalid("you must provide a model parameter", "model"));
    }
    let tokens = spec
        .extra
        .as_ref()
        .is_some_and(|e| e.fields.contains_key("input"));
    if spec.inputs.is_empty() && !tokens {
        return Err(invalid("`inputs` must contain at least one input", "input"));
    }
    if !matches!(spec.encoding_format.as_str(), "" | "float" | "base64") {
        return Err(invalid(
            "`encoding_format` must be `float` or `base64`",
            "encoding_format",
        ));
    }
    if spec.dimensions == Some(0) {
        return Err(invalid("`dimensions` must be at least 1", "dimensions"));
    }
    Ok(())
}

/// What every front end checks on an image generation request.
pub fn validate_image(spec: &ImageSpec) -> Result<(), GatewayError> {
    let invalid = |message: &str, param: &str| GatewayError::InvalidRequest {
        message: message.to_owned(),
        param: Some(param.to_owned()),
    };
    if spec.model.trim().is_empty() {
        return Err(invalid("you must provide a model parameter", "model"));
    }
    if spec.prompt.trim().is_empty() {
        return Err(invalid("`prompt` must not be empty", "prompt"));
    }
    if spec.n > 10 {
        return Err(invalid("`n` must be between 1 and 10", "n"));
    }
    if !matches!(spec.response_format.as_str(), "" | "url" | "b64_json") {
        return Err(invalid(
            "`response_format` must be `url` or `b64_json`",
            "response_format",
        ));
    }
    Ok(())
}
