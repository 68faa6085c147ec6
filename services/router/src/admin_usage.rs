//! Spend in the admin API (`switchyard usage` is its client):
//!
//! - `GET /admin/v1/usage`: usage and cost grouped by `group_by`
//!   (`key,team,user,model,provider,served_model,day`) over `from`..`to`
//!   (RFC 3339 times, or a span back from now such as `24h` or `30d`),
//!   filtered by `key=`, `team=`, `user=`, `model=`, `provider=`,
//!   `served_model=`; `format=json` (default) or `csv` (chargeback).
//! - `GET /admin/v1/usage/records`: the records themselves, same filters,
//!   newest first, at most `limit` (default 1,000, at most 100,000).
//! - `GET /admin/v1/budgets`: every budget's window, limit, spend and
//!   what is left.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jiff::{Timestamp, ToSpan};
use serde_json::{Value, json};
use switchyard_ledger::{Dimension, UsageQuery, UsageRow};

use crate::core::Gateway;
use crate::error::GatewayError;
use crate::http::error_response;

const DEFAULT_RECORDS: usize = 1_000;
const MAX_RECORDS: usize = 100_000;

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
                            "`{d}` is not a dimension: key, team, user, model, provider, served_model or day"
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
            Ok(d) if name != "day" => filters.push((d, value.clone())),
            _ => {
                return Err(bad(
                    name,
                    format!(
                        "unknown parameter `{name}`: from, to, group_by, format, limit, or a filter (key, team, user, model, provider, served_model)"
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
    if let Ok(t) = v.parse::<Timestamp>() {
        return Ok(t);
    }
    let span = humantime::parse_duration(v).map_err(|_| {
        format!("`{v}` is neither an RFC 3339 time (2026-12-01T00:00:00Z) nor a span back from now (24h, 7d)")
    })?;
    let secs = i64::try_from(span.as_secs()).unwrap_or(i64::MAX);
    now.checked_sub(secs.seconds())
        .map_err(|e| format!("`{v}` reaches too far back: {e}"))
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
    let limit = match params.remove("limit").map(|v| v.parse::<usize>()) {
        None => DEFAULT_RECORDS,
        Some(Ok(n)) if n > 0 => n.min(MAX_RECORDS),
        Some(_) => {
            return bad(
                "limit",
                format!("must be a whole number from 1 to {MAX_RECORDS}"),
            )
            .response();
        }
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
