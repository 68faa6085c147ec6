//! Span helpers that hide `tracing-opentelemetry` from callers. Attributes
//! set here go to the trace only; fields declared on a span also show in
//! every log line inside it, so only `request_id` and `trace_id` are fields.

use std::borrow::Cow;

use opentelemetry::trace::{Status, TraceContextExt};
use opentelemetry::{Array, KeyValue, StringValue, Value};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Sets an attribute on `span`'s OpenTelemetry span (no-op when the span is
/// disabled or not sampled).
pub fn set_attribute(span: &Span, key: &'static str, value: impl Into<Value>) {
    if !span.is_disabled() {
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
    if !span.is_disabled() {
        span.add_event(name, attributes);
    }
}

/// Marks `span` failed: status error with `message`, and `error.type`.
pub fn set_error(span: &Span, error_type: &str, message: impl Into<Cow<'static, str>>) {
    if span.is_disabled() {
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
