//! Installing the global subscriber: the log layer, the OpenTelemetry layer
//! and, when an endpoint is configured, the OTLP export pipelines (spans and
//! metrics, sharing one export runtime).

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider,
};
use switchyard_config::{OtlpProtocol, TelemetryConfig};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::export::{BoundedProcessor, OnRuntime, Queue};
use crate::log_fields::{JsonSpanFields, TextFields};

/// `json` or `text`; unset: JSON unless stderr is a terminal.
pub const LOG_FORMAT_ENV: &str = "SWITCHYARD_LOG_FORMAT";

const ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
const TRACES_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
const METRICS_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT";
const PROTOCOL: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";
const TRACES_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL";
const METRICS_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL";
const SERVICE_NAME: &str = "OTEL_SERVICE_NAME";
const SAMPLER: &str = "OTEL_TRACES_SAMPLER";
const SAMPLER_ARG: &str = "OTEL_TRACES_SAMPLER_ARG";
const SDK_DISABLED: &str = "OTEL_SDK_DISABLED";
const TRACES_EXPORTER: &str = "OTEL_TRACES_EXPORTER";
const METRICS_EXPORTER: &str = "OTEL_METRICS_EXPORTER";
/// Milliseconds between metric exports.
const METRIC_EXPORT_INTERVAL: &str = "OTEL_METRIC_EXPORT_INTERVAL";
const BSP_MAX_QUEUE_SIZE: &str = "OTEL_BSP_MAX_QUEUE_SIZE";

/// The SDK's default: enough for bursts between exports (every 5 s).
const DEFAULT_MAX_QUEUE: usize = 2048;

/// The specification's default metric export interval.
const DEFAULT_METRIC_INTERVAL: Duration = Duration::from_secs(60);

/// How long shutdown waits for the last spans to leave. Bounded so a dead
/// collector does not hold up a rolling restart.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(3);

/// Internal spans of the transport crates: hundreds per request, and the
/// exporter's own calls would be traced in turn.
const QUIET_TARGETS: &[&str] = &[
    "h2",
    "hyper",
    "hyper_util",
    "tonic",
    "tower",
    "tower_http",
    "reqwest",
    "rustls",
    "async_nats",
    "opentelemetry",
    "opentelemetry_sdk",
    "opentelemetry_otlp",
];

/// Keeps the export pipelines alive; dropping it flushes queued spans and
/// the last metrics (for a few seconds at most) and stops the export
/// thread. Drop it outside async code, or call [`TelemetryGuard::shutdown`]
/// from `spawn_blocking`: the flush blocks.
#[must_use = "dropping the guard stops span and metric export"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
    /// Whether `provider` has an exporter (metrics may export without it).
    spans: bool,
    meters: Option<SdkMeterProvider>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl TelemetryGuard {
    /// Whether spans are exported (an OTLP endpoint was configured and the
    /// exporter could be built).
    pub fn exporting(&self) -> bool {
        self.spans
    }

    /// Whether metrics are exported over OTLP.
    pub fn exporting_metrics(&self) -> bool {
        self.meters.is_some()
    }

    /// Flushes queued spans and the last metrics, and stops export. Blocks
    /// (a few seconds at most).
    pub fn shutdown(mut self) {
        self.close();
    }

    fn close(&mut self) {
        if let Some(provider) = self.provider.take()
            && self.spans
            && let Err(e) = provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT)
        {
            tracing::warn!(error = %e, "span export did not finish cleanly at shutdown");
        }
        // Before the runtime goes: the final export runs on it. The SDK
        // ignores the timeout given but bounds the wait itself (5 s).
        if let Some(meters) = self.meters.take()
            && let Err(e) = meters.shutdown_with_timeout(SHUTDOWN_TIMEOUT)
        {
            tracing::warn!(error = %e, "metric export did not finish cleanly at shutdown");
        }
        if let Some(rt) = self.runtime.take() {
            // `shutdown_background` may be called anywhere, async code included.
            rt.shutdown_background();
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        self.close();
    }
}

impl std::fmt::Debug for TelemetryGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelemetryGuard")
            .field("exporting", &self.exporting())
            .field("exporting_metrics", &self.exporting_metrics())
            .finish()
    }
}

/// Installs logging and tracing for a process whose spans are named
/// `service` (e.g. `switchyard-router`; `OTEL_SERVICE_NAME` wins). Never
/// fails: an exporter that cannot be set up is logged and export stays off.
/// Later calls (tests) leave the first subscriber in place.
pub fn init(service: &str, cfg: &TelemetryConfig) -> TelemetryGuard {
    init_with_env(service, cfg, &|k| std::env::var(k).ok())
}

/// Logs only, no OpenTelemetry layer: for tools and tests.
pub fn init_logging() {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let mut notes = Vec::new();
    let _ = tracing_subscriber::registry()
        .with(log_layer(&mut notes, &|k| std::env::var(k).ok()))
        .try_init();
}

type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

fn init_with_env(service: &str, cfg: &TelemetryConfig, env: Env<'_>) -> TelemetryGuard {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    // Problems are logged once the subscriber that shows them is in place.
    let mut notes: Vec<String> = Vec::new();
    let plan = export_plan(cfg, env, Signal::Traces, &mut notes);
    let metrics_plan = export_plan(cfg, env, Signal::Metrics, &mut notes);
    // One export thread for both signals.
    let mut runtime = None;
    if plan.is_some() || metrics_plan.is_some() {
        match export_runtime() {
            Ok(rt) => runtime = Some(rt),
            Err(e) => notes.push(format!("span and metric export are off: {e}")),
        }
    }
    let mut builder = SdkTracerProvider::builder().with_resource(resource(service, env));
    let mut export_to = None;
    if let (Some(plan), Some(rt)) = (&plan, &runtime) {
        match build_pipeline(plan, env, rt) {
            Ok(processor) => {
                builder = builder.with_span_processor(processor);
                export_to = Some(plan.describe());
            }
            Err(e) => notes.push(format!("span export is off: {e}")),
        }
    }
    let spans = export_to.is_some();
    let mut meters = None;
    let mut metrics_to = None;
    if let (Some(plan), Some(rt)) = (&metrics_plan, &runtime) {
        let interval = metric_interval(env, &mut notes);
        match crate::metrics::meter_provider(
            plan.protocol,
            plan.endpoint.as_deref(),
            interval,
            resource(service, env),
            rt,
        ) {
            Ok(p) => {
                meters = Some(p);
                metrics_to = Some(format!("{} every {interval:?}", plan.describe()));
            }
            Err(e) => notes.push(format!("metric export is off: {e}")),
        }
    }
    // None: OTEL_TRACES_SAMPLER is set, and the SDK reads it (and its argument).
    if let Some(s) = sampler(cfg, env, spans) {
        builder = builder.with_sampler(s);
    }
    let provider = builder.build();
    let tracer = provider.tracer("switchyard");
    let otel = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_threads(false)
        .with_target(false)
        .with_location(false)
        .with_tracked_inactivity(false)
        // Nothing reads OpenTelemetry's own current context (propagation
        // asks the span for its context), so entering a span need not
        // attach one.
        .with_context_activation(false)
        .with_filter(otel_filter())
        .boxed();
    let installed = tracing_subscriber::registry()
        .with(vec![log_layer(&mut notes, env), otel])
        .try_init()
        .is_ok();
    // Both signals resolve the protocol the same way: one note each is enough.
    let mut unique: Vec<String> = Vec::with_capacity(notes.len());
    for n in notes {
        if !unique.contains(&n) {
            unique.push(n);
        }
    }
    for n in &unique {
        tracing::warn!("{n}");
    }
    if !installed {
        // Someone else's subscriber is in place; ours would see no spans,
        // and the process's metrics are not ours to export either.
        let _ = provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT);
        if let Some(m) = meters {
            let _ = m.shutdown_with_timeout(SHUTDOWN_TIMEOUT);
        }
        if let Some(rt) = runtime {
            rt.shutdown_background();
        }
        return TelemetryGuard {
            provider: None,
            spans: false,
            meters: None,
            runtime: None,
        };
    }
    crate::span::set_recording(spans);
    if let Some(to) = export_to {
        tracing::info!(service, export = %to, "exporting traces over OTLP");
    }
    if let (Some(m), Some(to)) = (&meters, metrics_to) {
        // Instruments made from `crate::meter()` from now on record.
        opentelemetry::global::set_meter_provider(m.clone());
        crate::metrics::set_exported(true);
        tracing::info!(service, export = %to, "exporting metrics over OTLP");
    }
    TelemetryGuard {
        provider: Some(provider),
        spans,
        meters,
        runtime,
    }
}

fn log_layer(notes: &mut Vec<String>, env: Env<'_>) -> Box<dyn Layer<Registry> + Send + Sync> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let terminal = std::io::stderr().is_terminal();
    let json = match env(LOG_FORMAT_ENV).map(|v| v.trim().to_ascii_lowercase()) {
        Some(v) if v == "json" => true,
        Some(v) if v == "text" || v == "pretty" => false,
        Some(v) if v.is_empty() => !terminal,
        Some(v) => {
            notes.push(format!(
                "{LOG_FORMAT_ENV}=`{v}` is neither `json` nor `text`; choosing by the terminal"
            ));
            !terminal
        }
        None => !terminal,
    };
    if json {
        // Span fields (request_id, trace_id) come in `spans`, outermost first.
        tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(true)
            .fmt_fields(JsonSpanFields)
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .fmt_fields(TextFields)
            .with_writer(std::io::stderr)
            .with_ansi(terminal && env("NO_COLOR").is_none())
            .with_target(true)
            .with_filter(filter)
            .boxed()
    }
}

/// Spans switchyard makes are INFO; the transport crates' are kept out.
fn otel_filter() -> Targets {
    Targets::new()
        .with_default(LevelFilter::INFO)
        .with_targets(QUIET_TARGETS.iter().map(|t| (*t, LevelFilter::OFF)))
}

fn resource(service: &str, env: Env<'_>) -> Resource {
    let name = env(SERVICE_NAME)
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| service.to_owned());
    // `builder()` also reads OTEL_RESOURCE_ATTRIBUTES.
    Resource::builder()
        .with_service_name(name)
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Parent-based: a request arriving with a `traceparent` follows its
/// caller's decision; new traces are kept at the configured ratio.
fn sampler(cfg: &TelemetryConfig, env: Env<'_>, exporting: bool) -> Option<Sampler> {
    if !exporting {
        // Trace ids still exist (logs carry them, workers continue them), but
        // nothing is recorded that nobody would receive.
        return Some(Sampler::AlwaysOff);
    }
    if env(SAMPLER).is_some_and(|s| !s.trim().is_empty()) {
        return None;
    }
    let ratio = env(SAMPLER_ARG)
        .and_then(|a| a.trim().parse::<f64>().ok())
        .filter(|r| (0.0..=1.0).contains(r))
        .unwrap_or(cfg.sampling_ratio);
    Some(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
        ratio,
    ))))
}

#[derive(Debug, Clone, PartialEq)]
struct ExportPlan {
    protocol: OtlpProtocol,
    /// From the config; `None`: the exporter reads the `OTEL_*` variables.
    endpoint: Option<String>,
}

impl ExportPlan {
    fn describe(&self) -> String {
        let protocol = match self.protocol {
            OtlpProtocol::Grpc => "grpc",
            OtlpProtocol::Http => "http/protobuf",
        };
        match &self.endpoint {
            Some(e) => format!("{protocol} to {e}"),
            None => format!("{protocol} to the OTEL_EXPORTER_OTLP_* endpoint"),
        }
    }
}

/// `OTEL_METRIC_EXPORT_INTERVAL` (milliseconds), 60 s when unset or invalid.
fn metric_interval(env: Env<'_>, notes: &mut Vec<String>) -> Duration {
    match non_empty(env, METRIC_EXPORT_INTERVAL) {
        None => DEFAULT_METRIC_INTERVAL,
        Some(v) => match v.parse::<u64>() {
            Ok(ms) if ms > 0 => Duration::from_millis(ms),
            _ => {
                notes.push(format!(
                    "{METRIC_EXPORT_INTERVAL}=`{v}` is not a positive number of milliseconds; exporting every 60 s"
                ));
                DEFAULT_METRIC_INTERVAL
            }
        },
    }
}

/// The OTLP signals switchyard exports; each has its own variables.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Signal {
    Traces,
    Metrics,
}

impl Signal {
    fn exporter_var(self) -> &'static str {
        match self {
            Signal::Traces => TRACES_EXPORTER,
            Signal::Metrics => METRICS_EXPORTER,
        }
    }

    fn endpoint_var(self) -> &'static str {
        match self {
            Signal::Traces => TRACES_ENDPOINT,
            Signal::Metrics => METRICS_ENDPOINT,
        }
    }

    fn protocol_var(self) -> &'static str {
        match self {
            Signal::Traces => TRACES_PROTOCOL,
            Signal::Metrics => METRICS_PROTOCOL,
        }
    }

    /// The OTLP/HTTP path after the collector's address.
    fn http_path(self) -> &'static str {
        match self {
            Signal::Traces => "/v1/traces",
            Signal::Metrics => "/v1/metrics",
        }
    }
}

fn non_empty(env: Env<'_>, key: &str) -> Option<String> {
    env(key)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// Whether and where to export `signal`: the environment first, then the
/// config.
fn export_plan(
    cfg: &TelemetryConfig,
    env: Env<'_>,
    signal: Signal,
    notes: &mut Vec<String>,
) -> Option<ExportPlan> {
    if non_empty(env, SDK_DISABLED).is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return None;
    }
    let exporter_var = signal.exporter_var();
    match non_empty(env, exporter_var).map(|v| v.to_ascii_lowercase()) {
        Some(v) if v == "none" => return None,
        Some(v) if v != "otlp" => notes.push(format!(
            "{exporter_var}=`{v}` is not supported; only `otlp` (or `none`)"
        )),
        _ => {}
    }
    let protocol = match non_empty(env, signal.protocol_var()).or_else(|| non_empty(env, PROTOCOL))
    {
        Some(p) if p == "grpc" => OtlpProtocol::Grpc,
        Some(p) if p == "http/protobuf" => OtlpProtocol::Http,
        Some(p) if p == "http/json" => {
            notes.push(
                "OTLP http/json is not supported; exporting http/protobuf to the same endpoint"
                    .to_owned(),
            );
            OtlpProtocol::Http
        }
        Some(p) => {
            notes.push(format!(
                "unknown OTLP protocol `{p}` (expected grpc or http/protobuf); using telemetry.otlp_protocol"
            ));
            cfg.otlp_protocol
        }
        None => cfg.otlp_protocol,
    };
    let from_env =
        non_empty(env, signal.endpoint_var()).is_some() || non_empty(env, ENDPOINT).is_some();
    if from_env {
        return Some(ExportPlan {
            protocol,
            endpoint: None,
        });
    }
    let endpoint = cfg.otlp_endpoint.as_deref()?.trim();
    let endpoint = match protocol {
        OtlpProtocol::Grpc => endpoint.to_owned(),
        // Like OTEL_EXPORTER_OTLP_ENDPOINT, the key names the collector; the
        // signal's path goes after it. A path for the other signal is
        // replaced, so one traces URL in the config serves metrics too.
        OtlpProtocol::Http => {
            let base = endpoint.trim_end_matches('/');
            let base = base
                .strip_suffix(Signal::Traces.http_path())
                .or_else(|| base.strip_suffix(Signal::Metrics.http_path()))
                .unwrap_or(base);
            format!("{base}{}", signal.http_path())
        }
    };
    Some(ExportPlan {
        protocol,
        endpoint: Some(endpoint),
    })
}

fn export_runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("otlp-export")
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the export thread: {e}"))
}

fn build_pipeline(
    plan: &ExportPlan,
    env: Env<'_>,
    rt: &tokio::runtime::Runtime,
) -> Result<BoundedProcessor, String> {
    // tonic's lazily connecting channel starts its worker on the runtime
    // current while it is built.
    let exporter = {
        let _entered = rt.enter();
        match plan.protocol {
            OtlpProtocol::Grpc => {
                let mut b = opentelemetry_otlp::SpanExporter::builder()
                    .with_tonic()
                    .with_protocol(Protocol::Grpc);
                if let Some(e) = &plan.endpoint {
                    b = b.with_endpoint(e.clone());
                }
                b.build()
            }
            OtlpProtocol::Http => {
                let mut b = opentelemetry_otlp::SpanExporter::builder()
                    .with_http()
                    .with_protocol(Protocol::HttpBinary);
                if let Some(e) = &plan.endpoint {
                    b = b.with_endpoint(e.clone());
                }
                b.build()
            }
        }
        .map_err(|e| e.to_string())?
    };
    let limit = non_empty(env, BSP_MAX_QUEUE_SIZE)
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(DEFAULT_MAX_QUEUE);
    let queue = Arc::new(Queue::default());
    let batch = BatchSpanProcessor::new(
        OnRuntime::new(exporter, rt.handle().clone(), queue.clone()),
        BatchConfigBuilder::default()
            .with_max_queue_size(limit)
            .build(),
    );
    Ok(BoundedProcessor::new(batch, queue, limit))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn plan(cfg: &TelemetryConfig, vars: &[(&str, &str)]) -> (Option<ExportPlan>, Vec<String>) {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let mut notes = Vec::new();
        let p = export_plan(cfg, &|k| vars.get(k).cloned(), Signal::Traces, &mut notes);
        (p, notes)
    }

    fn metrics_plan(cfg: &TelemetryConfig, vars: &[(&str, &str)]) -> Option<ExportPlan> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        export_plan(
            cfg,
            &|k| vars.get(k).cloned(),
            Signal::Metrics,
            &mut Vec::new(),
        )
    }

    #[test]
    fn metrics_follow_the_traces_resolution_with_their_own_variables() {
        let cfg = TelemetryConfig {
            otlp_endpoint: Some("http://collector:4318/v1/traces".into()),
            otlp_protocol: OtlpProtocol::Http,
            ..TelemetryConfig::default()
        };
        assert_eq!(
            metrics_plan(&cfg, &[]).and_then(|p| p.endpoint).as_deref(),
            Some("http://collector:4318/v1/metrics")
        );
        assert_eq!(metrics_plan(&TelemetryConfig::default(), &[]), None);
        let p = metrics_plan(
            &TelemetryConfig::default(),
            &[(METRICS_ENDPOINT, "http://env:4317"), (PROTOCOL, "grpc")],
        );
        assert_eq!(
            p,
            Some(ExportPlan {
                protocol: OtlpProtocol::Grpc,
                endpoint: None
            })
        );
        // The metrics-only endpoint does not switch traces on.
        assert_eq!(
            plan(
                &TelemetryConfig::default(),
                &[(METRICS_ENDPOINT, "http://env:4317")]
            )
            .0,
            None
        );
        assert_eq!(metrics_plan(&cfg, &[(METRICS_EXPORTER, "none")]), None);
        assert!(metrics_plan(&cfg, &[(TRACES_EXPORTER, "none")]).is_some());
    }

    #[test]
    fn metric_interval_from_environment() {
        let mut notes = Vec::new();
        assert_eq!(
            metric_interval(&|_| None, &mut notes),
            DEFAULT_METRIC_INTERVAL
        );
        let set =
            |v: &'static str| move |k: &str| (k == METRIC_EXPORT_INTERVAL).then(|| v.to_owned());
        assert_eq!(
            metric_interval(&set("500"), &mut notes),
            Duration::from_millis(500)
        );
        assert!(notes.is_empty());
        assert_eq!(
            metric_interval(&set("soon"), &mut notes),
            DEFAULT_METRIC_INTERVAL
        );
        assert_eq!(notes.len(), 1);
    }

    #[test]
    fn no_endpoint_means_no_export() {
        assert_eq!(plan(&TelemetryConfig::default(), &[]).0, None);
        assert_eq!(
            plan(&TelemetryConfig::default(), &[(ENDPOINT, " ")]).0,
            None
        );
    }

    #[test]
    fn environment_wins_over_config() {
        let cfg = TelemetryConfig {
            otlp_endpoint: Some("http://config:4318".into()),
            otlp_protocol: OtlpProtocol::Http,
            ..TelemetryConfig::default()
        };
        let (p, _) = plan(&cfg, &[(ENDPOINT, "http://env:4317"), (PROTOCOL, "grpc")]);
        assert_eq!(
            p,
            Some(ExportPlan {
                protocol: OtlpProtocol::Grpc,
                endpoint: None
            })
        );
        // The signal-specific variables win over the general ones.
        let (p, _) = plan(
            &cfg,
            &[
                (TRACES_ENDPOINT, "http://env:4318/v1/traces"),
                (PROTOCOL, "grpc"),
                (TRACES_PROTOCOL, "http/protobuf"),
            ],
        );
        assert_eq!(p.map(|p| p.protocol), Some(OtlpProtocol::Http));
    }

    #[test]
    fn config_endpoint_gets_the_http_traces_path() {
        let mut cfg = TelemetryConfig {
            otlp_endpoint: Some("http://collector:4318/".into()),
            otlp_protocol: OtlpProtocol::Http,
            ..TelemetryConfig::default()
        };
        assert_eq!(
            plan(&cfg, &[]).0.and_then(|p| p.endpoint).as_deref(),
            Some("http://collector:4318/v1/traces")
        );
        cfg.otlp_endpoint = Some("http://collector:4318/v1/traces".into());
        assert_eq!(
            plan(&cfg, &[]).0.and_then(|p| p.endpoint).as_deref(),
            Some("http://collector:4318/v1/traces")
        );
        cfg.otlp_protocol = OtlpProtocol::Grpc;
        cfg.otlp_endpoint = Some("http://collector:4317".into());
        assert_eq!(
            plan(&cfg, &[]).0.and_then(|p| p.endpoint).as_deref(),
            Some("http://collector:4317")
        );
    }

    #[test]
    fn export_can_be_switched_off_and_odd_values_are_noted() {
        let cfg = TelemetryConfig {
            otlp_endpoint: Some("http://collector:4317".into()),
            ..TelemetryConfig::default()
        };
        assert_eq!(plan(&cfg, &[(SDK_DISABLED, "true")]).0, None);
        assert_eq!(plan(&cfg, &[(TRACES_EXPORTER, "none")]).0, None);
        let (p, notes) = plan(&cfg, &[(PROTOCOL, "http/json")]);
        assert_eq!(p.map(|p| p.protocol), Some(OtlpProtocol::Http));
        assert_eq!(notes.len(), 1, "{notes:?}");
    }

    #[test]
    fn sampler_ratio_from_config_or_environment() {
        let cfg = TelemetryConfig {
            sampling_ratio: 0.25,
            ..TelemetryConfig::default()
        };
        let none = |_: &str| None;
        assert!(matches!(
            sampler(&cfg, &none, false),
            Some(Sampler::AlwaysOff)
        ));
        let Some(Sampler::ParentBased(root)) = sampler(&cfg, &none, true) else {
            panic!("expected a parent-based sampler");
        };
        assert!(format!("{root:?}").contains("0.25"), "{root:?}");
        let arg = |k: &str| (k == SAMPLER_ARG).then(|| "0.5".to_owned());
        let Some(Sampler::ParentBased(root)) = sampler(&cfg, &arg, true) else {
            panic!("expected a parent-based sampler");
        };
        assert!(format!("{root:?}").contains("0.5"), "{root:?}");
        let named = |k: &str| (k == SAMPLER).then(|| "always_on".to_owned());
        assert!(sampler(&cfg, &named, true).is_none());
    }
}
