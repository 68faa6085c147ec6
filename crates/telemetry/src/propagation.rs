//! W3C trace context (`traceparent`, `tracestate`) in and out of the header
//! pairs the bus carries, with the global propagator [`crate::init`] sets.

use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

struct Inject<'a>(&'a mut Vec<(String, String)>);

impl Injector for Inject<'_> {
    fn set(&mut self, key: &str, value: String) {
        // An empty `tracestate` is written as such; sending nothing says the
        // same, and drops a stale value the caller had.
        if value.is_empty() {
            self.0.retain(|(k, _)| !k.eq_ignore_ascii_case(key));
            return;
        }
        // Replaces a stale value (e.g. the client's own traceparent) rather
        // than sending two.
        match self.0.iter_mut().find(|(k, _)| k.eq_ignore_ascii_case(key)) {
            Some(slot) => slot.1 = value,
            None => self.0.push((key.to_owned(), value)),
        }
    }
}

struct Extract<'a>(&'a [(String, String)]);

impl Extractor for Extract<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| k.as_str()).collect()
    }
}

/// Writes the current span's trace context into `headers` (replacing any
/// `traceparent`/`tracestate` already there). Nothing is written when
/// tracing is not set up.
pub fn inject(headers: &mut Vec<(String, String)>) {
    inject_from(&Span::current(), headers);
}

/// Like [`inject`], for `span` rather than the current one.
pub fn inject_from(span: &Span, headers: &mut Vec<(String, String)>) {
    if span.is_disabled() {
        return;
    }
    let cx = span.context();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, &mut Inject(headers)));
}

/// The remote parent carried by `headers` (an empty context when there is
/// none or it is malformed: the span then starts a new trace).
pub fn extract(headers: &[(String, String)]) -> Context {
    opentelemetry::global::get_text_map_propagator(|p| p.extract(&Extract(headers)))
}

/// Makes `span` continue the trace in `headers`. Call before the span is
/// first entered; a span that already started keeps its parent.
pub fn set_parent(span: &Span, headers: &[(String, String)]) {
    if span.is_disabled() {
        return;
    }
    let cx = extract(headers);
    // A span already started, or one the OpenTelemetry layer does not
    // know (tracing not set up), keeps the parent it has: nothing to do.
    let _ = span.set_parent(cx);
}

/// Makes `span` continue the trace in `headers` and records its trace id
/// (the `trace_id` field the request's log lines carry): what every
/// server-side span of a request does first.
pub fn continue_trace(span: &Span, headers: &[(String, String)]) {
    set_parent(span, headers);
    crate::record_trace_id(span);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extract_is_case_insensitive_and_inject_replaces() {
        let headers = vec![(
            "TraceParent".to_owned(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned(),
        )];
        assert_eq!(
            Extract(&headers).get("traceparent"),
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        );
        let mut out = headers.clone();
        Inject(&mut out).set("traceparent", "new".to_owned());
        Inject(&mut out).set("tracestate", "a=b".to_owned());
        Inject(&mut out).set("baggage", String::new());
        assert_eq!(
            out,
            vec![
                ("TraceParent".to_owned(), "new".to_owned()),
                ("tracestate".to_owned(), "a=b".to_owned())
            ]
        );
    }
}
