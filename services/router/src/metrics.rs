//! Prometheus metrics, served at `GET /metrics` on the HTTP listener.
//!
//! Names follow the OpenTelemetry GenAI conventions where they exist
//! (`gen_ai_client_token_usage`, `gen_ai_server_time_to_first_token`,
//! `gen_ai_client_operation_duration`), `switchyard_*` otherwise. Labels stay
//! low-cardinality: the model the client asked for (unknown names are
//! counted as `unknown`), the provider and upstream model that served it,
//! the outcome as an error code (`ok` on success), never ids or keys.
//!
//! The same records also feed OpenTelemetry instruments ([`OtelSink`]),
//! exported over OTLP when an endpoint is configured: the GenAI semantic
//! conventions' names and attributes (`gen_ai.client.operation.duration`,
//! ...). Without an endpoint the global meter is a no-op and so are they.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use switchyard_proto::gateway::v1::Usage;
use switchyard_routing::{BreakerState, Health};
use switchyard_telemetry::KeyValue;
use switchyard_telemetry::semconv::{
    ERROR_TYPE, GEN_AI_OPERATION_NAME, GEN_AI_PROVIDER_NAME, GEN_AI_REQUEST_MODEL,
    GEN_AI_RESPONSE_MODEL, GEN_AI_TOKEN_TYPE, SWITCHYARD_OUTCOME, SWITCHYARD_STREAM,
    SWITCHYARD_UPSTREAM_MODEL,
};

use futures_util::StreamExt;

use crate::attempts::AttemptLog;
use crate::core::{ChatStream, StreamItem};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    /// `chat` (HTTP) or `grpc_chat`.
    operation: String,
    model: String,
    provider: String,
    outcome: String,
    stream: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetLabels {
    provider: String,
    upstream_model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    provider: String,
    upstream_model: String,
    /// `input`, `output`, `cached_input`, `reasoning`.
    token_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttemptLabels {
    provider: String,
    upstream_model: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderLabels {
    provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CostLabels {
    model: String,
    provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BudgetLabels {
    budget: String,
    /// `reject` or `downgrade`.
    action: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabels {
    /// `hit`, `semantic_hit`, `miss`, `skip` or `error`.
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabels {
    model: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 1 ms .. ~65 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

fn bus_histogram() -> Histogram {
    // 50 µs .. ~1.6 s: in-process hand-offs are microseconds, NATS a few
    // hundred, a lost acknowledgement seconds.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

fn token_histogram() -> Histogram {
    // 1 .. ~4M tokens, the GenAI convention's recommended shape.
    Histogram::new(exponential_buckets(1.0, 4.0, 12))
}

fn rate_histogram() -> Histogram {
    // 1 .. ~4k tokens per second.
    Histogram::new(exponential_buckets(1.0, 2.0, 13))
}

/// Everything one request reports when it ends.
pub struct RequestRecord<'a> {
    pub operation: &'static str,
    pub model: &'a str,
    /// Served-by provider and upstream model; empty when nothing served it.
    pub provider: &'a str,
    pub upstream_model: &'a str,
    /// `ok` or the error code.
    pub outcome: &'a str,
    pub stream: bool,
    pub duration: Duration,
    /// Streams: the time until the first chunk reached the front end.
    pub first_token: Option<Duration>,
    pub usage: Option<&'a Usage>,
    pub attempts: &'a AttemptLog,
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: HistogramFamily<RequestLabels>,
    first_token: HistogramFamily<TargetLabels>,
    token_usage: HistogramFamily<TokenLabels>,
    tokens: Family<TokenLabels, Counter>,
    output_rate: HistogramFamily<TargetLabels>,
    attempts: Family<AttemptLabels, Counter>,
    fallbacks: Family<ModelLabels, Counter>,
    hedges: Family<ModelLabels, Counter>,
    bus_round_trip: HistogramFamily<ProviderLabels>,
    cache_requests: Family<CacheLabels, Counter>,
    cost: Family<CostLabels, Counter<f64, AtomicU64>>,
    saved: Family<CostLabels, Counter<f64, AtomicU64>>,
    budget_actions: Family<BudgetLabels, Counter>,
    otel: OtelSink,
}

impl Metrics {
    /// `health` feeds the per-target gauges (breaker state, in-flight,
    /// cooldown) at each scrape.
    pub fn new(health: Arc<Health>) -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let duration: HistogramFamily<RequestLabels> =
            Family::new_with_constructor(latency_histogram);
        let first_token: HistogramFamily<TargetLabels> =
            Family::new_with_constructor(latency_histogram);
        let token_usage: HistogramFamily<TokenLabels> =
            Family::new_with_constructor(token_histogram);
        let tokens = Family::<TokenLabels, Counter>::default();
        let output_rate: HistogramFamily<TargetLabels> =
            Family::new_with_constructor(rate_histogram);
        let attempts = Family::<AttemptLabels, Counter>::default();
        let fallbacks = Family::<ModelLabels, Counter>::default();
        let hedges = Family::<ModelLabels, Counter>::default();
        let bus_round_trip: HistogramFamily<ProviderLabels> =
            Family::new_with_constructor(bus_histogram);
        registry.register(
            "switchyard_bus_round_trip_seconds",
            "From sending work on the bus to a worker taking it, by provider",
            bus_round_trip.clone(),
        );
        registry.register(
            "switchyard_requests",
            "Requests by model, serving target and outcome",
            requests.clone(),
        );
        registry.register(
            "gen_ai_client_operation_duration_seconds",
            "Request duration at the gateway, to the last byte",
            duration.clone(),
        );
        registry.register(
            "gen_ai_server_time_to_first_token_seconds",
            "Time to first token of streamed answers, as the client sees it",
            first_token.clone(),
        );
        registry.register(
            "gen_ai_client_token_usage",
            "Tokens per request by type",
            token_usage.clone(),
        );
        registry.register(
            "switchyard_tokens",
            "Tokens by target and type",
            tokens.clone(),
        );
        registry.register(
            "switchyard_output_tokens_per_second",
            "Output tokens per second of streamed answers after the first token",
            output_rate.clone(),
        );
        registry.register(
            "switchyard_attempts",
            "Upstream attempts by target and outcome",
            attempts.clone(),
        );
        registry.register(
            "switchyard_fallbacks",
            "Requests answered by a target other than the first tried",
            fallbacks.clone(),
        );
        registry.register(
            "switchyard_hedges",
            "Extra attempts started by hedging",
            hedges.clone(),
        );
        let cache_requests = Family::<CacheLabels, Counter>::default();
        registry.register(
            "switchyard_cache_requests",
            "Chat and embeddings requests by what the response cache did: hit, miss, skip, error",
            cache_requests.clone(),
        );
        let cost = Family::<CostLabels, Counter<f64, AtomicU64>>::default();
        registry.register(
            "switchyard_cost_usd",
            "Spend in US dollars by model asked and provider that served (from the price table)",
            cost.clone(),
        );
        let saved = Family::<CostLabels, Counter<f64, AtomicU64>>::default();
        registry.register(
            "switchyard_cost_saved_usd",
            "Spend avoided by response cache hits, in US dollars",
            saved.clone(),
        );
        let budget_actions = Family::<BudgetLabels, Counter>::default();
        registry.register(
            "switchyard_budget_actions",
            "Requests refused (reject) or sent to a cheaper model (downgrade) by a budget",
            budget_actions.clone(),
        );
        let otel = OtelSink::new(health.clone());
        registry.register_collector(Box::new(TargetGauges { health }));
        Self {
            registry,
            requests,
            duration,
            first_token,
            token_usage,
            tokens,
            output_rate,
            attempts,
            fallbacks,
            hedges,
            bus_round_trip,
            cache_requests,
            cost,
            saved,
            budget_actions,
            otel,
        }
    }

    /// A settled request's cost and the cost a cache hit saved. Floats are
    /// fine for a rate on a dashboard; the ledger keeps exact sums.
    pub fn cost(&self, model: &str, provider: &str, cost: f64, saved: f64) {
        if cost == 0.0 && saved == 0.0 {
            return;
        }
        let labels = CostLabels {
            model: model.to_owned(),
            provider: provider.to_owned(),
        };
        let attrs = [
            KeyValue::new(GEN_AI_REQUEST_MODEL, model.to_owned()),
            KeyValue::new("switchyard.provider", provider.to_owned()),
        ];
        if cost > 0.0 {
            self.cost.get_or_create(&labels).inc_by(cost);
            self.otel.cost.add(cost, &attrs);
        }
        if saved > 0.0 {
            self.saved.get_or_create(&labels).inc_by(saved);
            self.otel.saved.add(saved, &attrs);
        }
    }

    /// A budget refused a request or changed its model.
    pub fn budget_action(&self, budget: &str, action: &'static str) {
        self.budget_actions
            .get_or_create(&BudgetLabels {
                budget: budget.to_owned(),
                action: action.to_owned(),
            })
            .inc();
        self.otel.budget_actions.add(
            1,
            &[
                KeyValue::new("switchyard.budget", budget.to_owned()),
                KeyValue::new("switchyard.budget.action", action),
            ],
        );
    }

    /// One response cache outcome (`hit`, `semantic_hit`, `miss`, `skip`,
    /// `error`).
    pub fn cache_request(&self, result: &'static str) {
        self.cache_requests
            .get_or_create(&CacheLabels {
                result: result.to_owned(),
            })
            .inc();
        self.otel
            .cache_requests
            .add(1, &[KeyValue::new("switchyard.cache.result", result)]);
    }

    /// One hand-off of work to a provider's worker.
    pub fn bus_round_trip(&self, provider: &str, took: Duration) {
        self.bus_round_trip
            .get_or_create(&ProviderLabels {
                provider: provider.to_owned(),
            })
            .observe(took.as_secs_f64());
        self.otel.bus_round_trip.record(
            took.as_secs_f64(),
            &[switchyard_telemetry::KeyValue::new(
                "switchyard.provider",
                provider.to_owned(),
            )],
        );
    }

    pub fn record(&self, r: &RequestRecord<'_>) {
        self.otel.record(r);
        let labels = RequestLabels {
            operation: r.operation.to_owned(),
            model: r.model.to_owned(),
            provider: r.provider.to_owned(),
            outcome: r.outcome.to_owned(),
            stream: r.stream.to_string(),
        };
        self.requests.get_or_create(&labels).inc();
        self.duration
            .get_or_create(&labels)
            .observe(r.duration.as_secs_f64());
        let target = TargetLabels {
            provider: r.provider.to_owned(),
            upstream_model: r.upstream_model.to_owned(),
        };
        if let Some(ttft) = r.first_token {
            self.first_token
                .get_or_create(&target)
                .observe(ttft.as_secs_f64());
        }
        if let Some(u) = r.usage {
            for (kind, n) in [
                ("input", u.prompt_tokens),
                ("output", u.completion_tokens),
                ("cached_input", u.cached_prompt_tokens),
                ("reasoning", u.reasoning_tokens),
            ] {
                let l = TokenLabels {
                    provider: r.provider.to_owned(),
                    upstream_model: r.upstream_model.to_owned(),
                    token_type: kind.to_owned(),
                };
                self.tokens.get_or_create(&l).inc_by(u64::from(n));
                if kind == "input" || (kind == "output" && produces_output(r.operation)) {
                    self.token_usage.get_or_create(&l).observe(f64::from(n));
                }
            }
            if let Some(ttft) = r.first_token {
                let generating = r.duration.saturating_sub(ttft).as_secs_f64();
                if generating > 0.0 && u.completion_tokens > 1 {
                    self.output_rate
                        .get_or_create(&target)
                        .observe(f64::from(u.completion_tokens - 1) / generating);
                }
            }
        }
        for (t, outcome) in &r.attempts.outcomes {
            self.attempts
                .get_or_create(&AttemptLabels {
                    provider: t.provider.to_string(),
                    upstream_model: t.upstream_model.to_string(),
                    outcome: (*outcome).to_owned(),
                })
                .inc();
        }
        let model = ModelLabels {
            model: r.model.to_owned(),
        };
        if fell_back(r) {
            self.fallbacks.get_or_create(&model).inc();
        }
        if r.attempts.hedges > 0 {
            self.hedges
                .get_or_create(&model)
                .inc_by(u64::from(r.attempts.hedges));
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::with_capacity(16 * 1024);
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// Whether a target other than the first tried answered the request.
fn fell_back(r: &RequestRecord<'_>) -> bool {
    r.outcome == "ok"
        && r.attempts.targets.first().is_some_and(|first| {
            &*first.provider != r.provider || &*first.upstream_model != r.upstream_model
        })
}

/// Bucket boundaries the GenAI semantic conventions recommend.
const DURATION_BUCKETS: [f64; 14] = [
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
];
const TOKEN_BUCKETS: [f64; 14] = [
    1.0,
    4.0,
    16.0,
    64.0,
    256.0,
    1024.0,
    4096.0,
    16384.0,
    65536.0,
    262_144.0,
    1_048_576.0,
    4_194_304.0,
    16_777_216.0,
    67_108_864.0,
];
const FIRST_TOKEN_BUCKETS: [f64; 16] = [
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// The OpenTelemetry side of [`Metrics`]: the same records, as OTel
/// instruments from the global `switchyard` meter (a no-op without an OTLP
/// endpoint). Per-target gauges are read from the routing health at each
/// collection, like the Prometheus ones at each scrape.
struct OtelSink {
    duration: switchyard_telemetry::Histogram<f64>,
    bus_round_trip: switchyard_telemetry::Histogram<f64>,
    token_usage: switchyard_telemetry::Histogram<u64>,
    first_token: switchyard_telemetry::Histogram<f64>,
    requests: switchyard_telemetry::Counter<u64>,
    attempts: switchyard_telemetry::Counter<u64>,
    fallbacks: switchyard_telemetry::Counter<u64>,
    hedges: switchyard_telemetry::Counter<u64>,
    cache_requests: switchyard_telemetry::Counter<u64>,
    cost: switchyard_telemetry::Counter<f64>,
    saved: switchyard_telemetry::Counter<f64>,
    budget_actions: switchyard_telemetry::Counter<u64>,
    /// Held so their callbacks stay registered for the router's life.
    _gauges: [switchyard_telemetry::ObservableGauge<i64>; 2],
}

impl OtelSink {
    fn new(health: Arc<Health>) -> Self {
        let meter = switchyard_telemetry::meter();
        let in_flight = {
            let health = health.clone();
            meter
                .i64_observable_gauge("switchyard.target.in_flight")
                .with_description("Requests in flight per target")
                .with_unit("{request}")
                .with_callback(move |o| {
                    for t in health.snapshot() {
                        o.observe(i64::from(t.in_flight), &target_attributes(&t));
                    }
                })
                .build()
        };
        let breaker = meter
            .i64_observable_gauge("switchyard.target.breaker_state")
            .with_description("Circuit breaker per target: 0 closed, 1 half-open, 2 open")
            .with_callback(move |o| {
                for t in health.snapshot() {
                    let state = match t.breaker {
                        BreakerState::Closed => 0,
                        BreakerState::HalfOpen => 1,
                        BreakerState::Open => 2,
                    };
                    o.observe(state, &target_attributes(&t));
                }
            })
            .build();
        Self {
            duration: meter
                .f64_histogram("gen_ai.client.operation.duration")
                .with_description("GenAI operation duration at the gateway, to the last byte")
                .with_unit("s")
                .with_boundaries(DURATION_BUCKETS.to_vec())
                .build(),
            bus_round_trip: meter
                .f64_histogram("switchyard.bus.round_trip")
                .with_description("From sending work on the bus to a worker taking it")
                .with_unit("s")
                .build(),
            token_usage: meter
                .u64_histogram("gen_ai.client.token.usage")
                .with_description("Input and output tokens per request")
                .with_unit("{token}")
                .with_boundaries(TOKEN_BUCKETS.to_vec())
                .build(),
            first_token: meter
                .f64_histogram("gen_ai.server.time_to_first_token")
                .with_description("Time to first token of streamed answers, as the client sees it")
                .with_unit("s")
                .with_boundaries(FIRST_TOKEN_BUCKETS.to_vec())
                .build(),
            requests: meter
                .u64_counter("switchyard.requests")
                .with_description("Requests by model, serving target and outcome")
                .with_unit("{request}")
                .build(),
            attempts: meter
                .u64_counter("switchyard.attempts")
                .with_description("Upstream attempts by target and outcome")
                .with_unit("{attempt}")
                .build(),
            fallbacks: meter
                .u64_counter("switchyard.fallbacks")
                .with_description("Requests answered by a target other than the first tried")
                .with_unit("{request}")
                .build(),
            hedges: meter
                .u64_counter("switchyard.hedges")
                .with_description("Extra attempts started by hedging")
                .with_unit("{attempt}")
                .build(),
            cache_requests: meter
                .u64_counter("switchyard.cache.requests")
                .with_description("Chat and embeddings requests by what the response cache did")
                .with_unit("{request}")
                .build(),
            cost: meter
                .f64_counter("switchyard.cost")
                .with_description("Spend by model asked and provider that served")
                .with_unit("USD")
                .build(),
            saved: meter
                .f64_counter("switchyard.cost.saved")
                .with_description("Spend avoided by response cache hits")
                .with_unit("USD")
                .build(),
            budget_actions: meter
                .u64_counter("switchyard.budget.actions")
                .with_description("Requests refused or downgraded by a budget")
                .with_unit("{request}")
                .build(),
            _gauges: [in_flight, breaker],
        }
    }

    fn record(&self, r: &RequestRecord<'_>) {
        if !switchyard_telemetry::metrics_exported() {
            return;
        }
        // The GenAI operation is `chat` whichever front end took it.
        let operation = r.operation.strip_prefix("grpc_").unwrap_or(r.operation);
        let mut attrs = vec![
            KeyValue::new(GEN_AI_OPERATION_NAME, operation),
            KeyValue::new(GEN_AI_REQUEST_MODEL, r.model.to_owned()),
        ];
        // Nothing served a request that failed before any target answered.
        if !r.provider.is_empty() {
            attrs.push(KeyValue::new(GEN_AI_PROVIDER_NAME, r.provider.to_owned()));
        }
        if !r.upstream_model.is_empty() {
            attrs.push(KeyValue::new(
                GEN_AI_RESPONSE_MODEL,
                r.upstream_model.to_owned(),
            ));
        }
        if r.outcome != "ok" {
            attrs.push(KeyValue::new(ERROR_TYPE, r.outcome.to_owned()));
        }
        self.duration.record(r.duration.as_secs_f64(), &attrs);
        if let Some(ttft) = r.first_token {
            self.first_token.record(ttft.as_secs_f64(), &attrs);
        }
        if let Some(u) = r.usage {
            for (kind, n) in [("input", u.prompt_tokens), ("output", u.completion_tokens)] {
                if kind == "output" && !produces_output(r.operation) {
                    continue;
                }
                attrs.push(KeyValue::new(GEN_AI_TOKEN_TYPE, kind));
                self.token_usage.record(u64::from(n), &attrs);
                attrs.pop();
            }
        }
        attrs.push(KeyValue::new(SWITCHYARD_OUTCOME, r.outcome.to_owned()));
        attrs.push(KeyValue::new(SWITCHYARD_STREAM, r.stream));
        self.requests.add(1, &attrs);
        for (t, outcome) in &r.attempts.outcomes {
            self.attempts.add(
                1,
                &[
                    KeyValue::new(GEN_AI_PROVIDER_NAME, t.provider.to_string()),
                    KeyValue::new(SWITCHYARD_UPSTREAM_MODEL, t.upstream_model.to_string()),
                    KeyValue::new(SWITCHYARD_OUTCOME, *outcome),
                ],
            );
        }
        let model = [KeyValue::new(GEN_AI_REQUEST_MODEL, r.model.to_owned())];
        if fell_back(r) {
            self.fallbacks.add(1, &model);
        }
        if r.attempts.hedges > 0 {
            self.hedges.add(u64::from(r.attempts.hedges), &model);
        }
    }
}

fn target_attributes(t: &switchyard_routing::TargetHealth) -> [KeyValue; 2] {
    [
        KeyValue::new(GEN_AI_PROVIDER_NAME, t.provider.clone()),
        KeyValue::new(SWITCHYARD_UPSTREAM_MODEL, t.model.clone()),
    ]
}

/// How a per-target gauge reads its value from the health snapshot.
type GaugeOf = fn(&switchyard_routing::TargetHealth) -> i64;

/// Per-target gauges read from the routing health at scrape time, and the
/// trace exporter's dropped-span count.
#[derive(Debug)]
struct TargetGauges {
    health: Arc<Health>,
}

impl Collector for TargetGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let snapshot = self.health.snapshot();
        let gauges: [(&str, &str, GaugeOf); 3] = [
            (
                "switchyard_breaker_state",
                "Circuit breaker per target: 0 closed, 1 half-open, 2 open",
                |t| match t.breaker {
                    BreakerState::Closed => 0,
                    BreakerState::HalfOpen => 1,
                    BreakerState::Open => 2,
                },
            ),
            (
                "switchyard_in_flight",
                "Requests in flight per target",
                |t| i64::from(t.in_flight),
            ),
            (
                "switchyard_cooldown_remaining_milliseconds",
                "Time left before a rate-limited target gets traffic again",
                |t| i64::try_from(t.cooldown_remaining_ms).unwrap_or(i64::MAX),
            ),
        ];
        let dropped = ConstCounter::new(switchyard_telemetry::dropped_spans());
        let metric = encoder.encode_descriptor(
            "switchyard_trace_spans_dropped",
            "Spans dropped because the trace export queue was full (collector slow or down)",
            None,
            dropped.metric_type(),
        )?;
        dropped.encode(metric)?;
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(0i64);
            let mut family = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
            for t in &snapshot {
                let labels = TargetLabels {
                    provider: t.provider.clone(),
                    upstream_model: t.model.clone(),
                };
                let metric = family.encode_family(&labels)?;
                ConstGauge::new(value(t)).encode(metric)?;
            }
        }
        Ok(())
    }
}

/// A streamed answer's record, completed as the stream runs and reported
/// when it ends, fails or is dropped by a client that went away.
pub struct StreamRecord {
    pub operation: &'static str,
    pub model: String,
    pub provider: String,
    pub upstream_model: String,
    pub started: tokio::time::Instant,
    pub first_token: Duration,
    pub attempts: AttemptLog,
}

struct Watched {
    metrics: Arc<Metrics>,
    record: StreamRecord,
    usage: Option<Usage>,
    outcome: Option<&'static str>,
}

impl Drop for Watched {
    fn drop(&mut self) {
        let r = &self.record;
        self.metrics.record(&RequestRecord {
            operation: r.operation,
            model: &r.model,
            provider: &r.provider,
            upstream_model: &r.upstream_model,
            // Dropped before its end: the client went away.
            outcome: self.outcome.unwrap_or("client_closed"),
            stream: true,
            duration: r.started.elapsed(),
            first_token: Some(r.first_token),
            usage: self.usage.as_ref(),
            attempts: &r.attempts,
        });
    }
}

impl Metrics {
    /// Passes `events` through, recording the request when the stream ends.
    pub fn watch(self: &Arc<Self>, events: ChatStream, record: StreamRecord) -> ChatStream {
        let mut watched = Watched {
            metrics: self.clone(),
            record,
            usage: None,
            outcome: None,
        };
        Box::pin(events.map(move |item| {
            // Naming the whole struct makes the closure own it, so its Drop
            // (the recording) runs when the stream is dropped, not now.
            let w = &mut watched;
            match &item {
                StreamItem::Chunk(_) => {}
                StreamItem::Done(usage) => {
                    w.usage = *usage;
                    w.outcome = Some("ok");
                }
                StreamItem::Failed(e) => w.outcome = Some(e.class().code.unwrap_or("error")),
            }
            item
        }))
    }
}

/// Whether an operation's answers are counted in output tokens: an
/// embeddings request has none, and a 0 sample per request would drag the
/// output-token distribution down.
fn produces_output(operation: &str) -> bool {
    !operation.ends_with("embeddings")
}
