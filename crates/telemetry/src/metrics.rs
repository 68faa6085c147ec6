//! The OTLP metrics pipeline: the SDK's periodic reader feeding an OTLP
//! exporter whose calls run on the export runtime (the one the span
//! exporter uses), installed as the global meter provider.
//!
//! Instruments come from [`meter`]: before a provider is installed, or when
//! none is (no OTLP endpoint), that is the API's no-op meter, so recording
//! costs next to nothing in a process that does not export.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::metrics::Meter;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider, Temporality};
use switchyard_config::OtlpProtocol;

/// Whether a meter provider that exports is installed.
static EXPORTED: AtomicBool = AtomicBool::new(false);

pub(crate) fn set_exported(on: bool) {
    EXPORTED.store(on, Ordering::Relaxed);
}

/// Whether metrics recorded on [`meter`]'s instruments go anywhere: callers
/// skip building attributes (owned strings, per request) when they do not.
pub fn metrics_exported() -> bool {
    EXPORTED.load(Ordering::Relaxed)
}

/// The meter every switchyard instrument is made from. Call it after
/// [`crate::init`]: instruments made earlier stay no-ops.
pub fn meter() -> Meter {
    opentelemetry::global::meter("switchyard")
}

/// Runs the exporter's calls on the export runtime. The periodic reader
/// exports from a plain thread of its own (through a minimal executor),
/// while the tonic and reqwest clients need a Tokio runtime for their I/O
/// and timers. The metrics batch is borrowed, so it cannot be spawned onto
/// the runtime as the span exporter's is: the reader's thread blocks on the
/// runtime's handle instead, which is what that thread is for.
#[derive(Debug)]
struct OnRuntime<E> {
    inner: E,
    handle: tokio::runtime::Handle,
    failing: AtomicBool,
}

impl<E: PushMetricExporter> PushMetricExporter for OnRuntime<E> {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        let result = self.handle.block_on(self.inner.export(metrics));
        // Once per run of failures, like spans: a dead collector is one
        // warning, not one every interval.
        match &result {
            Err(e) if !self.failing.swap(true, Ordering::Relaxed) => {
                tracing::warn!(error = %e, "cannot export metrics to the OTLP collector; retrying every interval");
            }
            Ok(()) if self.failing.swap(false, Ordering::Relaxed) => {
                tracing::info!("exporting metrics to the OTLP collector again");
            }
            _ => {}
        }
        result
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn temporality(&self) -> Temporality {
        self.inner.temporality()
    }
}

/// Builds the meter provider exporting every `interval` to `endpoint`
/// (`None`: the exporter reads the `OTEL_EXPORTER_OTLP_*` variables).
pub(crate) fn meter_provider(
    protocol: OtlpProtocol,
    endpoint: Option<&str>,
    interval: Duration,
    resource: Resource,
    rt: &tokio::runtime::Runtime,
) -> Result<SdkMeterProvider, String> {
    // tonic's lazily connecting channel starts its worker on the runtime
    // current while it is built.
    let exporter = {
        let _entered = rt.enter();
        match protocol {
            OtlpProtocol::Grpc => {
                let mut b = opentelemetry_otlp::MetricExporter::builder()
                    .with_tonic()
                    .with_protocol(Protocol::Grpc);
                if let Some(e) = endpoint {
                    b = b.with_endpoint(e.to_owned());
                }
                b.build()
            }
            OtlpProtocol::Http => {
                let mut b = opentelemetry_otlp::MetricExporter::builder()
                    .with_http()
                    .with_protocol(Protocol::HttpBinary);
                if let Some(e) = endpoint {
                    b = b.with_endpoint(e.to_owned());
                }
                b.build()
            }
        }
        .map_err(|e| e.to_string())?
    };
    let reader = PeriodicReader::builder(OnRuntime {
        inner: exporter,
        handle: rt.handle().clone(),
        failing: AtomicBool::new(false),
    })
    .with_interval(interval)
    .build();
    Ok(SdkMeterProvider::builder()
        .with_resource(resource)
        .with_reader(reader)
        .build())
}
