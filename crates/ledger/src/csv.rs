//! CSV export (RFC 4180: comma separated, CRLF line ends, fields quoted
//! when they hold a comma, a quote, or a line break). Money is an exact
//! decimal in dollars, times are RFC 3339 in UTC.

use crate::{Dimension, UsageRecord, UsageRow};

const ROW_METRICS: [&str; 10] = [
    "requests",
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cost_usd",
    "saved_usd",
    "estimated_requests",
    "errors",
];

// New columns go at the end: readers that pick columns by position keep
// working.
const RECORD_HEADER: [&str; 26] = [
    "request_id",
    "time",
    "router",
    "operation",
    "key",
    "team",
    "user",
    "model",
    "provider",
    "served_model",
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "images",
    "cost_usd",
    "saved_usd",
    "estimated",
    "cache_hit",
    "latency_ms",
    "outcome",
    "client_addr",
    "credential",
    "guardrails",
    "payload",
];

fn field(out: &mut String, value: &str) {
    if value.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&value.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(value);
    }
}

fn line<'a>(out: &mut String, fields: impl IntoIterator<Item = &'a str>) {
    for (i, f) in fields.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        field(out, f);
    }
    out.push_str("\r\n");
}

/// Grouped rows as CSV: one column per dimension of the first row's group
/// (every row of one query has the same), then the metrics. A missing
/// group value is an empty field.
pub fn to_csv(rows: &[UsageRow]) -> String {
    let dims: Vec<Dimension> = rows
        .first()
        .map(|r| r.group.iter().map(|(d, _)| *d).collect())
        .unwrap_or_default();
    let mut out = String::new();
    line(&mut out, dims.iter().map(|d| d.as_str()).chain(ROW_METRICS));
    for r in rows {
        let metrics = [
            r.requests.to_string(),
            r.input_tokens.to_string(),
            r.cached_input_tokens.to_string(),
            r.cache_write_tokens.to_string(),
            r.output_tokens.to_string(),
            r.reasoning_tokens.to_string(),
            r.cost.to_string(),
            r.saved.to_string(),
            r.estimated_requests.to_string(),
            r.errors.to_string(),
        ];
        line(
            &mut out,
            r.group
                .iter()
                .map(|(_, v)| v.as_deref().unwrap_or(""))
                .chain(metrics.iter().map(String::as_str)),
        );
    }
    out
}

/// Raw records as CSV, one column per field; the guardrail actions in one
/// field, separated by `;` (empty when there were none); the payload as
/// its JSON text (empty when there is none).
pub fn records_to_csv(records: &[UsageRecord]) -> String {
    let mut out = String::new();
    line(&mut out, RECORD_HEADER);
    for r in records {
        let opt = |v: &Option<String>| v.clone().unwrap_or_default();
        let fields = [
            r.request_id.clone(),
            r.time.to_string(),
            r.router.clone(),
            r.operation.clone(),
            opt(&r.key),
            opt(&r.team),
            opt(&r.user),
            r.model.clone(),
            opt(&r.provider),
            opt(&r.served_model),
            r.input_tokens.to_string(),
            r.cached_input_tokens.to_string(),
            r.cache_write_tokens.to_string(),
            r.output_tokens.to_string(),
            r.reasoning_tokens.to_string(),
            r.images.to_string(),
            r.cost.to_string(),
            r.saved.to_string(),
            r.estimated.to_string(),
            r.cache_hit.to_string(),
            r.latency_ms.to_string(),
            r.outcome.clone(),
            opt(&r.client_addr),
            opt(&r.credential),
            r.guardrails.join(";"),
            r.payload
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
        ];
        line(&mut out, fields.iter().map(String::as_str));
    }
    out
}
