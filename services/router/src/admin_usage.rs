//! Spend in the admin API (`switchyard usage` is its client):
//!
//! - `GET /admin/v1/usage`: usage and cost grouped by `group_by`
//!   (`key,team,user,model,provider,served_model,day`) over `from`..`to`
//!   (RFC 3339 times, or a span back from now such as `24h` or `30d`),
//!   filtered by `key=`, `team=`, `user=`, `model=`, `provider=`,
//!   `served_model=`, `outcome=` (`key=` takes a bare key id or the
//!   recorded `key:<id>`/`jwt:<subject>`); `format=json` (default) or
//!   `csv` (chargeback).
//! - `GET /admin/v1/usage/records`: the records themselves, same filters,
//!   oldest first, at most `limit` (default 1,000, at most 100,000).
//! - `GET /admin/v1/audit`: the audit trail, i.e. the same records with
//!   the same filters, oldest first, as JSON lines (default) or CSV, in
//!   pages of `limit` (default 10,000, at most 100,000): when more remain
//!   the answer carries `x-switchyard-next-cursor`, and the same request
//!   with `after=<that cursor>` gets the next page.
//! - `GET /admin/v1/budgets`: every budget's window, limit, spend and
//!   what is left.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use serde_json::{Value, json};
use switchyard_ledger::{Dimension, LedgerError, RecordCursor, UsageQuery, UsageRow};

use crate::core::Gateway;
use crate::error::GatewayError;
use crate::http::error_response;

const DEFAULT_RECORDS: usize = 1_000;
const MAX_RECORDS: usize = 100_000;
/// An audit page: big enough that an export takes few round trips, small
/// enough (a few MB) that no answer is held whole in memory for long.
const DEFAULT_AUDIT_PAGE: usize = 10_000;
const MAX_AUDIT_PAGE: usize = 100_000;

/// Where an audit page says where the next one starts; absent on the last.
pub const NEXT_CURSOR_HEADER: &str = "x-switchyard-next-cursor";

/// A query parameter that is wrong, and why.
struct BadParam {
    param: String,
    message: String,
}

fn bad(param: &str, message: String) -> BadParam {
    BadParam {
        param: param.to_owned(),
        message,
    }
}

impl BadParam {
    fn response(self) -> Response {
        error_response(&GatewayError::InvalidRequest {
            message: self.message,
            param: Some(self.param),
        })
    }
}

/// The query string as a query, or the parameter that is wrong.
fn parse(
    params: &BTreeMap<String, String>,
    gateway: &Gateway,
) -> Result<(UsageQuery, Format), BadParam> {
    let now = Timestamp::now();
    let from = params
        .get("from")
        .map(|v| time(v, now).map_err(|m| bad("from", m)))
        .transpose()?;
    let to = params
        .get("to")
        .map(|v| time(v, now).map_err(|m| bad("to", m)))
        .transpose()?;
    let group_by = match params.get("group_by") {
        None => Vec::new(),
        Some(v) => v
            .split(',')
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .map(|d| {
                Dimension::from_str(d).map_err(|_| {
                    bad(
                        "group_by",
                        format!(
                            "`{d}` is not a dimension: key, team, user, model, provider, served_model, outcome or day"
                        ),
                    )
                })
            })
            .collect::<Result<_, _>>()?,
    };
    let mut filters = Vec::new();
    for (name, value) in params {
        if matches!(
            name.as_str(),
            "from" | "to" | "group_by" | "format" | "limit"
        ) {
            continue;
        }
        match Dimension::from_str(name) {
            // Usage is kept under `key:<id>` (or `jwt:<subject>`), while
            // `switchyard keys` shows the bare id: take either.
            Ok(Dimension::Key) if !value.starts_with("key:") && !value.starts_with("jwt:") => {
                filters.push((Dimension::Key, value.clone()));
                filters.push((Dimension::Key, format!("key:{value}")));
            }
            Ok(d) if name != "day" => filters.push((d, value.clone())),
            _ => {
                return Err(bad(
                    name,
                    format!(
                        "unknown parameter `{name}`: from, to, group_by, format, limit, or a filter (key, team, user, model, provider, served_model, outcome)"
                    ),
                ));
            }
        }
    }
    let format = match params.get("format").map(String::as_str) {
        None | Some("json") => Format::Json,
        Some("csv") => Format::Csv,
        Some(other) => return Err(bad("format", format!("`{other}` is not `json` or `csv`"))),
    };
    let query = UsageQuery {
        from,
        to,
        group_by,
        filters,
        time_zone: gateway.spend().report_time_zone().clone(),
        after: None,
        payloads: false,
    };
    Ok((query, format))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Csv,
}

/// RFC 3339, or a span back from `now` (`90m`, `24h`, `7d`).
fn time(v: &str, now: Timestamp) -> Result<Timestamp, String> {
    switchyard_ledger::parse_time(v, now).map_err(query_message)
}

/// What a refused query says, without the ledger's prefix.
fn query_message(e: LedgerError) -> String {
    match e {
        LedgerError::InvalidQuery(m) => m,
        other => other.to_string(),
    }
}

/// `limit`, taken out of `params`: a whole number from 1, capped at `max`.
fn take_limit(
    params: &mut BTreeMap<String, String>,
    default: usize,
    max: usize,
) -> Result<usize, BadParam> {
    match params.remove("limit").map(|v| v.parse::<usize>()) {
        None => Ok(default),
        Some(Ok(n)) if n > 0 => Ok(n.min(max)),
        Some(_) => Err(bad(
            "limit",
            format!("must be a whole number from 1 to {max}"),
        )),
    }
}

fn no_ledger() -> Response {
    let mut res = error_response(&GatewayError::InvalidRequest {
        message: "this router keeps no queryable ledger: `ledger.enabled` is false, or the \
                  backend is `jetstream` without `ledger.postgres`"
            .into(),
        param: None,
    });
    *res.status_mut() = StatusCode::NOT_FOUND;
    res
}

fn internal(e: impl std::fmt::Display) -> Response {
    error_response(&GatewayError::Internal(format!("ledger query failed: {e}")))
}

fn csv(body: String, name: &str) -> Response {
    let mut res = (StatusCode::OK, body).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}.csv\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    res
}

pub(crate) async fn usage(gateway: Arc<Gateway>, params: BTreeMap<String, String>) -> Response {
    let (query, format) = match parse(&params, &gateway) {
        Ok(v) => v,
        Err(bad) => return bad.response(),
    };
    let Some(store) = gateway.spend().store() else {
        return no_ledger();
    };
    let rows = match store.query(&query).await {
        Ok(rows) => rows,
        Err(e) => return internal(e),
    };
    if format == Format::Csv {
        return csv(switchyard_ledger::to_csv(&rows), "usage");
    }
    let totals = total(&rows);
    axum::Json(json!({
        "from": query.from.map(|t| t.to_string()),
        "to": query.to.map(|t| t.to_string()),
        "group_by": query.group_by.iter().map(|d| d.as_str()).collect::<Vec<_>>(),
        "rows": rows.iter().map(row_json).collect::<Vec<_>>(),
        "totals": row_json(&totals),
    }))
    .into_response()
}

pub(crate) async fn records(
    gateway: Arc<Gateway>,
    mut params: BTreeMap<String, String>,
) -> Response {
    let limit = match take_limit(&mut params, DEFAULT_RECORDS, MAX_RECORDS) {
        Ok(n) => n,
        Err(bad) => return bad.response(),
    };
    if params.contains_key("group_by") {
        return bad(
            "group_by",
            "records are not grouped; use /admin/v1/usage".into(),
        )
        .response();
    }
    let (query, format) = match parse(&params, &gateway) {
        Ok(v) => v,
        Err(bad) => return bad.response(),
    };
    let Some(store) = gateway.spend().store() else {
        return no_ledger();
    };
    let records = match store.records(&query, limit).await {
        Ok(r) => r,
        Err(e) => return internal(e),
    };
    if format == Format::Csv {
        return csv(switchyard_ledger::records_to_csv(&records), "usage-records");
    }
    axum::Json(json!({"records": records})).into_response()
}

/// `GET /admin/v1/audit`: one page of the audit trail (see the module
/// doc). Pages are cut by a cursor (time, request id) rather than an
/// offset, so following them never skips or repeats a record, and each
/// page is an index range scan however deep into the export it is.
pub(crate) async fn audit(gateway: Arc<Gateway>, mut params: BTreeMap<String, String>) -> Response {
    let limit = match take_limit(&mut params, DEFAULT_AUDIT_PAGE, MAX_AUDIT_PAGE) {
        Ok(n) => n,
        Err(bad) => return bad.response(),
    };
    let after = match params.remove("after").map(|v| v.parse::<RecordCursor>()) {
        None => None,
        Some(Ok(c)) => Some(c),
        Some(Err(e)) => return bad("after", query_message(e)).response(),
    };
    let csv_format = match params.remove("format").as_deref() {
        None | Some("jsonl") => false,
        Some("csv") => true,
        Some(other) => {
            return bad("format", format!("`{other}` is not `jsonl` or `csv`")).response();
        }
    };
    if params.contains_key("group_by") {
        return bad(
            "group_by",
            "the audit trail is not grouped; use /admin/v1/usage".into(),
        )
        .response();
    }
    let mut query = match parse(&params, &gateway) {
        Ok((q, _)) => q,
        Err(bad) => return bad.response(),
    };
    query.after = after;
    // The audit trail is the one place payloads are read back.
    query.payloads = true;
    let Some(store) = gateway.spend().store() else {
        return no_ledger();
    };
    // One more than the page: whether another page follows, without a
    // count over the rest of the range.
    let mut records = match store.records(&query, limit + 1).await {
        Ok(r) => r,
        Err(e) => return internal(e),
    };
    let next = if records.len() > limit {
        records.truncate(limit);
        records.last().map(RecordCursor::of)
    } else {
        None
    };
    let mut res = if csv_format {
        csv(switchyard_ledger::records_to_csv(&records), "audit")
    } else {
        let mut body = String::with_capacity(records.len() * 512);
        for r in &records {
            match serde_json::to_string(r) {
                Ok(line) => body.push_str(&line),
                Err(e) => return internal(e),
            }
            body.push('\n');
        }
        let mut res = (StatusCode::OK, body).into_response();
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-ndjson"),
        );
        res
    };
    if let Some(next) = next
        && let Ok(v) = HeaderValue::from_str(&next.to_string())
    {
        res.headers_mut().insert(NEXT_CURSOR_HEADER, v);
    }
    res
}

pub(crate) fn budgets(gateway: &Gateway) -> Response {
    axum::Json(json!({"budgets": gateway.spend().budget_status()})).into_response()
}

fn row_json(r: &UsageRow) -> Value {
    let mut o = serde_json::Map::new();
    for (d, v) in &r.group {
        o.insert(
            d.as_str().to_owned(),
            v.clone().map_or(Value::Null, Value::String),
        );
    }
    o.insert("requests".into(), r.requests.into());
    o.insert("errors".into(), r.errors.into());
    o.insert("input_tokens".into(), r.input_tokens.into());
    o.insert("cached_input_tokens".into(), r.cached_input_tokens.into());
    o.insert("cache_write_tokens".into(), r.cache_write_tokens.into());
    o.insert("output_tokens".into(), r.output_tokens.into());
    o.insert("reasoning_tokens".into(), r.reasoning_tokens.into());
    // Exact decimals, as strings: JSON numbers are floats to most readers.
    o.insert("cost_usd".into(), r.cost.to_string().into());
    o.insert("saved_usd".into(), r.saved.to_string().into());
    o.insert("estimated_requests".into(), r.estimated_requests.into());
    Value::Object(o)
}

fn total(rows: &[UsageRow]) -> UsageRow {
    let mut t = UsageRow {
        group: Vec::new(),
        ..UsageRow::default()
    };
    for r in rows {
        t.requests += r.requests;
        t.errors += r.errors;
        t.input_tokens += r.input_tokens;
        t.cached_input_tokens += r.cached_input_tokens;
        t.cache_write_tokens += r.cache_write_tokens;
        t.output_tokens += r.output_tokens;
        t.reasoning_tokens += r.reasoning_tokens;
        t.cost += r.cost;
        t.saved += r.saved;
        t.estimated_requests += r.estimated_requests;
    }
    t
}
