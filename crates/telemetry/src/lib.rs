//! Logs and traces for every switchyard process.
//!
//! - [`init`] installs the global `tracing` subscriber with two layers:
//!   - logs on stderr, filtered by `RUST_LOG` (default `info`): one JSON
//!     object per line when stderr is not a terminal (containers, log
//!     shippers) or `SWITCHYARD_LOG_FORMAT=json`, readable text on a
//!     terminal or with `SWITCHYARD_LOG_FORMAT=text`;
//!   - OpenTelemetry: `tracing` spans become OTel spans, exported over OTLP
//!     (gRPC or HTTP/protobuf) when an endpoint is configured
//!     (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`
//!     or `telemetry.otlp_endpoint`).
//!
//!   Keep the returned [`TelemetryGuard`] alive for the life of the process:
//!   dropping it flushes the spans still queued and the last metrics.
//! - Metrics over OTLP, with the same endpoint and protocol resolution
//!   (plus `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`), every
//!   `OTEL_METRIC_EXPORT_INTERVAL` ms (default 60 s): instruments are made
//!   from [`meter`], a no-op when nothing is exported.
//! - [`inject`], [`extract`] and [`set_parent`] carry W3C trace context
//!   (`traceparent`, `tracestate`) from clients and across the bus, so the
//!   router and worker need not know OpenTelemetry.
//! - [`semconv`] names the attributes (OpenTelemetry GenAI semantic
//!   conventions and switchyard's own); [`set_attribute`], [`add_event`] and
//!   [`set_error`] put them on a span without being a field of it (so they
//!   reach the trace but not every log line).
//! - [`dropped_spans`] counts spans dropped because the export queue was
//!   full (a slow or dead collector): export never blocks a request.

mod export;
mod init;
mod log_fields;
mod metrics;
mod propagation;
pub mod semconv;
mod span;

pub use export::dropped_spans;
pub use init::{LOG_FORMAT_ENV, TelemetryGuard, init, init_logging};
pub use metrics::{meter, metrics_exported};
pub use opentelemetry::metrics::{Counter, Histogram, Meter, ObservableGauge};
pub use opentelemetry::{KeyValue, Value};
pub use propagation::{continue_trace, extract, inject, inject_from, set_parent};
pub use span::{add_event, record_trace_id, set_attribute, set_error, set_string_array, trace_id};
