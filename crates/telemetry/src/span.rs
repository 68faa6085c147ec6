//! Span helpers that hide `tracing-opentelemetry` from callers. Attributes
//! set here go to the trace only; fields declared on a span also show in
//! every log line inside it, so only `request_id` and `trace_id` are fields.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::trace::{Status, TraceContextExt};
use opentelemetry::{Array, KeyValue, StringValue, Value};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Whether spans go anywhere. Without export every span is dropped at its
/// end (sampler off), so attributes, events and statuses would be collected
/// for nothing; the spans themselves stay, for the trace ids in logs and
/// the `traceparent` passed to workers.
static RECORDING: AtomicBool = AtomicBool::new(false);

pub(crate) fn set_recording(on: bool) {
    RECORDING.store(on, Ordering::Relaxed);
}

fn recorded(span: &Span) -> bool {
    RECORDING.load(Ordering::Relaxed) && !span.is_disabled()
}

/// Sets an attribute on `span`'s OpenTelemetry span (no-op when the span is
/// disabled, not sampled, or spans are not exported).
pub fn set_attribute(span: &Span, key: &'static str, value: impl Into<Value>) {
    if recorded(span) {
        span.set_attribute(key, value);
    }
}

/// Sets a string-array attribute (e.g. finish reasons).
pub fn set_string_array(span: &Span, key: &'static str, values: Vec<String>) {
    let values: Vec<StringValue> = values.into_iter().map(StringValue::from).collect();
    set_attribute(span, key, Value::Array(Array::String(values)));
}

/// Adds an event, timestamped now, to `span`'s OpenTelemetry span.
pub fn add_event(span: &Span, name: impl Into<Cow<'static, str>>, attributes: Vec<KeyValue>) {
    if recorded(span) {
        span.add_event(name, attributes);
    }
}

/// Marks `span` failed: status error with `message`, and `error.type`.
pub fn set_error(span: &Span, error_type: &str, message: impl Into<Cow<'static, str>>) {
    if !recorded(span) {
        return;
    }
    span.set_attribute(crate::semconv::ERROR_TYPE, error_type.to_owned());
    span.set_status(Status::error(message));
}

/// `span`'s trace id as 32 hex digits; `None` without tracing set up.
///
/// Starts the OpenTelemetry span if it was not yet: set its parent first.
pub fn trace_id(span: &Span) -> Option<String> {
    if span.is_disabled() {
        return None;
    }
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

/// Records `span`'s trace id into its `trace_id` field (declare it as
/// `trace_id = tracing::field::Empty`), so every log line inside the span
/// carries it. Set the span's parent first.
pub fn record_trace_id(span: &Span) {
    if let Some(id) = trace_id(span) {
        span.record("trace_id", id.as_str());
    }
}
