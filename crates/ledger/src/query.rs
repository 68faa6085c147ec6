//! The query model shared by every store: group by dimensions, filter,
//! sum the metrics.

use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;
use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};
use switchyard_pricing::Usd;

use crate::{LedgerError, UsageRecord};

/// What usage can be grouped and filtered by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    /// Virtual key id.
    Key,
    Team,
    User,
    /// The model the client asked for.
    Model,
    Provider,
    ServedModel,
    /// How the request ended: `ok`, `client_closed` or an error code.
    Outcome,
    /// The calendar day (`YYYY-MM-DD`) of the request's start in
    /// [`UsageQuery::time_zone`].
    Day,
}

impl Dimension {
    pub const ALL: [Dimension; 8] = [
        Dimension::Key,
        Dimension::Team,
        Dimension::User,
        Dimension::Model,
        Dimension::Provider,
        Dimension::ServedModel,
        Dimension::Outcome,
        Dimension::Day,
    ];

    /// The name in JSON, CSV headers and query strings.
    pub fn as_str(self) -> &'static str {
        match self {
            Dimension::Key => "key",
            Dimension::Team => "team",
            Dimension::User => "user",
            Dimension::Model => "model",
            Dimension::Provider => "provider",
            Dimension::ServedModel => "served_model",
            Dimension::Outcome => "outcome",
            Dimension::Day => "day",
        }
    }
}

impl fmt::Display for Dimension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Accepts the snake_case names, case-insensitively, and `-` for `_`
/// (`served-model`), as typed on a command line or in a query string.
impl FromStr for Dimension {
    type Err = LedgerError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm = s.trim().to_ascii_lowercase().replace('-', "_");
        Dimension::ALL
            .into_iter()
            .find(|d| d.as_str() == norm)
            .ok_or_else(|| {
                LedgerError::InvalidQuery(format!(
                    "unknown dimension `{s}` (expected one of: {})",
                    Dimension::ALL.map(Dimension::as_str).join(", ")
                ))
            })
    }
}

/// Which records to look at and how to group them.
///
/// - `from` is inclusive, `to` exclusive; `None` is unbounded.
/// - `filters`: values of the same dimension are alternatives (`team=a`
///   and `team=b` match either), different dimensions must all match. A
///   filter matches only records that have the value (never a missing
///   one). A `Day` filter is a `YYYY-MM-DD` date in `time_zone`.
/// - `group_by`: the order of the dimensions in each row's `group`;
///   repeats are ignored. Empty: one row with the totals.
/// - `after`: only records past this position in the records' order (time,
///   then request id): the next page of an export.
/// - `payloads`: [`UsageStore::records`] also reads the captured payloads
///   (kept in a table of their own, so only the audit export pays for
///   them); otherwise every record's `payload` is `None`.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageQuery {
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
    pub group_by: Vec<Dimension>,
    pub filters: Vec<(Dimension, String)>,
    /// Where days begin and end for [`Dimension::Day`].
    pub time_zone: TimeZone,
    pub after: Option<RecordCursor>,
    pub payloads: bool,
}

impl Default for UsageQuery {
    fn default() -> Self {
        UsageQuery {
            from: None,
            to: None,
            group_by: Vec::new(),
            filters: Vec::new(),
            time_zone: TimeZone::UTC,
            after: None,
            payloads: false,
        }
    }
}

impl UsageQuery {
    pub fn new() -> UsageQuery {
        UsageQuery::default()
    }

    pub fn from(mut self, t: Timestamp) -> Self {
        self.from = Some(t);
        self
    }

    pub fn to(mut self, t: Timestamp) -> Self {
        self.to = Some(t);
        self
    }

    pub fn group_by(mut self, d: Dimension) -> Self {
        self.group_by.push(d);
        self
    }

    pub fn filter(mut self, d: Dimension, value: impl Into<String>) -> Self {
        self.filters.push((d, value.into()));
        self
    }

    pub fn time_zone(mut self, tz: TimeZone) -> Self {
        self.time_zone = tz;
        self
    }

    pub fn after(mut self, cursor: RecordCursor) -> Self {
        self.after = Some(cursor);
        self
    }

    /// Records come with their payloads.
    pub fn with_payloads(mut self) -> Self {
        self.payloads = true;
        self
    }

    /// `group_by` without repeats, in first-seen order.
    pub(crate) fn dimensions(&self) -> Vec<Dimension> {
        let mut out: Vec<Dimension> = Vec::new();
        for d in &self.group_by {
            if !out.contains(d) {
                out.push(*d);
            }
        }
        out
    }
}

/// A position in the order [`UsageStore::records`] returns records in
/// (time, then request id): where one page of an export ended and the next
/// begins. As text (`Display`/`FromStr`) it is opaque and safe in a header
/// or a query string: the time in microseconds and the request id in hex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordCursor {
    pub time: Timestamp,
    pub request_id: String,
}

impl RecordCursor {
    /// The position of `r`: records after it come after this cursor.
    pub fn of(r: &UsageRecord) -> RecordCursor {
        RecordCursor {
            time: r.time,
            request_id: r.request_id.clone(),
        }
    }
}

impl fmt::Display for RecordCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.", self.time.as_microsecond())?;
        for b in self.request_id.as_bytes() {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl FromStr for RecordCursor {
    type Err = LedgerError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || LedgerError::InvalidQuery(format!("`{s}` is not a cursor this gateway gave"));
        let (time, id) = s.trim().split_once('.').ok_or_else(bad)?;
        let time = time.parse::<i64>().map_err(|_| bad())?;
        if !id.len().is_multiple_of(2) || !id.is_ascii() {
            return Err(bad());
        }
        let bytes = (0..id.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&id[i..i + 2], 16))
            .collect::<Result<Vec<u8>, _>>()
            .map_err(|_| bad())?;
        Ok(RecordCursor {
            time: Timestamp::from_microsecond(time).map_err(|_| bad())?,
            request_id: String::from_utf8(bytes).map_err(|_| bad())?,
        })
    }
}

/// A time as a query or a command line gives it: RFC 3339
/// (`2026-12-01T00:00:00Z`), or a span back from `now` (`90m`, `24h`,
/// `7d`).
pub fn parse_time(v: &str, now: Timestamp) -> Result<Timestamp, LedgerError> {
    if let Ok(t) = v.trim().parse::<Timestamp>() {
        return Ok(t);
    }
    let span = humantime::parse_duration(v.trim()).map_err(|_| {
        LedgerError::InvalidQuery(format!(
            "`{v}` is neither an RFC 3339 time (2026-12-01T00:00:00Z) nor a span back from now (24h, 7d)"
        ))
    })?;
    let secs = i64::try_from(span.as_secs()).unwrap_or(i64::MAX);
    now.checked_sub(jiff::SignedDuration::from_secs(secs))
        .map_err(|e| LedgerError::InvalidQuery(format!("`{v}` reaches too far back: {e}")))
}

/// One group's sums. Rows come sorted by their group values (a missing
/// value first); a query that matches nothing returns no rows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRow {
    /// The group's value of each `group_by` dimension, in that order;
    /// `None` where records have no value (no team, no provider, ...).
    /// JSON: an object `{"team": "a", "day": "2026-01-31"}`.
    #[serde(with = "group_map")]
    pub group: Vec<(Dimension, Option<String>)>,
    pub requests: u64,
    pub input_tokens: u64,
    pub cached_input_tokens: u64,
    pub cache_write_tokens: u64,
    pub output_tokens: u64,
    pub reasoning_tokens: u64,
    pub cost: Usd,
    pub saved: Usd,
    /// Requests whose usage was estimated.
    pub estimated_requests: u64,
    /// Requests whose outcome is neither `ok` nor `client_closed`.
    pub errors: u64,
}

impl UsageRow {
    /// The group's value of `d`, if the query grouped by it.
    pub fn get(&self, d: Dimension) -> Option<&str> {
        self.group
            .iter()
            .find(|(g, _)| *g == d)
            .and_then(|(_, v)| v.as_deref())
    }
}

mod group_map {
    use serde::de::{MapAccess, Visitor};
    use serde::ser::SerializeMap;
    use serde::{Deserializer, Serializer};

    use super::Dimension;

    pub fn serialize<S: Serializer>(
        group: &[(Dimension, Option<String>)],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(group.len()))?;
        for (d, v) in group {
            m.serialize_entry(d, v)?;
        }
        m.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<(Dimension, Option<String>)>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Vec<(Dimension, Option<String>)>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a map of dimension to value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<Dimension, Option<String>>()? {
                    out.push((k, v));
                }
                Ok(out)
            }
        }
        d.deserialize_map(V)
    }
}

/// Read access to stored usage: the admin API and the CLI use it, over
/// either backend.
#[async_trait]
pub trait UsageStore: Send + Sync {
    /// Sums grouped as asked.
    async fn query(&self, q: &UsageQuery) -> Result<Vec<UsageRow>, LedgerError>;

    /// Raw records matching `q`'s range and filters (its grouping is
    /// ignored), oldest first, at most `limit`.
    async fn records(&self, q: &UsageQuery, limit: usize) -> Result<Vec<UsageRecord>, LedgerError>;

    /// Spend since `since`, for warming budget counters at start.
    ///
    /// Not the raw records: one synthetic record per 15-minute UTC bucket
    /// (aligned to the epoch, so every local day, week or month boundary
    /// of today's time zones falls on a bucket edge) and distinct (key,
    /// team, user, model, provider, served_model). Its `time` is the
    /// bucket's start, or `since` for the first, partial bucket (all of
    /// whose records are at or after `since`); token counters, `images`,
    /// `cost` and `saved` are sums; `estimated` is set if any record was;
    /// `request_id` is `aggregate:<bucket start>:<n>`, `router` is empty,
    /// `operation` is `aggregate`, `outcome` is `ok`, `latency_ms` and
    /// `cache_hit` are zero/false. Sorted by time.
    async fn spend_since(&self, since: Timestamp) -> Result<Vec<UsageRecord>, LedgerError>;
}

/// Width of the buckets of [`UsageStore::spend_since`], in microseconds.
pub(crate) const SPEND_BUCKET_US: i64 = 15 * 60 * 1_000_000;

/// A local calendar day as an instant range `[start, end)` in microseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DayBucket {
    pub day: String,
    pub start_us: i64,
    pub end_us: i64,
}

fn day_start(date: Date, tz: &TimeZone) -> Result<Timestamp, LedgerError> {
    // Midnight may not exist (a DST jump at 00:00): `to_zoned_datetime`
    // then moves forward to the first instant of the day, which is what
    // a day's start means.
    date.to_zoned_datetime(tz.clone())
        .map(|z| z.timestamp())
        .map_err(|e| LedgerError::InvalidQuery(format!("day {date} in the time zone: {e}")))
}

pub(crate) fn ts_from_us(us: i64) -> Result<Timestamp, LedgerError> {
    Timestamp::from_microsecond(us)
        .map_err(|e| LedgerError::Corrupt(format!("timestamp {us} µs: {e}")))
}

/// The range of one `YYYY-MM-DD` day filter.
pub(crate) fn day_range(day: &str, tz: &TimeZone) -> Result<(i64, i64), LedgerError> {
    let date: Date = day.trim().parse().map_err(|e| {
        LedgerError::InvalidQuery(format!("`{day}` is not a date (YYYY-MM-DD): {e}"))
    })?;
    let next = date
        .tomorrow()
        .map_err(|e| LedgerError::InvalidQuery(format!("day {date}: {e}")))?;
    Ok((
        day_start(date, tz)?.as_microsecond(),
        day_start(next, tz)?.as_microsecond(),
    ))
}

/// Every local day from the one holding `first_us` to the one holding
/// `last_us` (both inclusive).
pub(crate) fn days_between(
    first_us: i64,
    last_us: i64,
    tz: &TimeZone,
) -> Result<Vec<DayBucket>, LedgerError> {
    let first = tz.to_datetime(ts_from_us(first_us)?).date();
    let last = tz.to_datetime(ts_from_us(last_us)?).date();
    let mut out = Vec::new();
    let mut day = first;
    let mut start = day_start(day, tz)?.as_microsecond();
    while day <= last {
        let next = day
            .tomorrow()
            .map_err(|e| LedgerError::InvalidQuery(format!("day {day}: {e}")))?;
        let end = day_start(next, tz)?.as_microsecond();
        out.push(DayBucket {
            day: day.to_string(),
            start_us: start,
            end_us: end,
        });
        day = next;
        start = end;
    }
    Ok(out)
}

/// Sums as a store returns them, in the column order of
/// [`crate::sql::METRICS`].
pub(crate) type Metrics = [i64; 10];

pub(crate) fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Builds sorted rows from a store's raw groups.
pub(crate) fn rows_from(
    dims: &[Dimension],
    raw: Vec<(Vec<Option<String>>, Metrics)>,
) -> Vec<UsageRow> {
    let mut rows: Vec<UsageRow> = raw
        .into_iter()
        .filter(|(_, m)| m[0] > 0)
        .map(|(values, m)| UsageRow {
            group: dims.iter().copied().zip(values).collect(),
            requests: to_u64(m[0]),
            input_tokens: to_u64(m[1]),
            cached_input_tokens: to_u64(m[2]),
            cache_write_tokens: to_u64(m[3]),
            output_tokens: to_u64(m[4]),
            reasoning_tokens: to_u64(m[5]),
            cost: Usd::from_pico(m[6]),
            saved: Usd::from_pico(m[7]),
            estimated_requests: to_u64(m[8]),
            errors: to_u64(m[9]),
        })
        .collect();
    // Sorted here rather than in SQL: SQLite and PostgreSQL disagree on
    // where NULLs go and on string collation, and both stores must answer
    // the same.
    rows.sort_by(|a, b| {
        let ka = a.group.iter().map(|(_, v)| v.as_deref());
        let kb = b.group.iter().map(|(_, v)| v.as_deref());
        ka.cmp(kb)
    });
    rows
}

/// One row of [`crate::sql::spend_since`], decoded by a store.
pub(crate) struct SpendBucket {
    pub bucket_us: i64,
    /// key, team, user, model, provider, served_model.
    pub ids: [Option<String>; 6],
    /// input, cached input, cache write, output, reasoning tokens, images,
    /// cost, saved.
    pub sums: [i64; 8],
    pub estimated: bool,
}

/// The synthetic records [`UsageStore::spend_since`] documents.
pub(crate) fn spend_records(
    since: Timestamp,
    mut buckets: Vec<SpendBucket>,
) -> Result<Vec<UsageRecord>, LedgerError> {
    // Ordered here, not in SQL, so both stores number them alike (they
    // disagree on NULL placement and collation).
    buckets.sort_by(|a, b| (a.bucket_us, &a.ids).cmp(&(b.bucket_us, &b.ids)));
    let since_us = since.as_microsecond();
    let mut out = Vec::with_capacity(buckets.len());
    for (n, b) in buckets.into_iter().enumerate() {
        let start = ts_from_us(b.bucket_us)?;
        let [key, team, user, model, provider, served_model] = b.ids;
        let s = b.sums;
        out.push(UsageRecord {
            request_id: format!("aggregate:{start}:{n}"),
            time: ts_from_us(b.bucket_us.max(since_us))?,
            router: String::new(),
            operation: "aggregate".to_owned(),
            key,
            team,
            user,
            model: model.unwrap_or_default(),
            provider,
            served_model,
            input_tokens: to_u64(s[0]),
            cached_input_tokens: to_u64(s[1]),
            cache_write_tokens: to_u64(s[2]),
            output_tokens: to_u64(s[3]),
            reasoning_tokens: to_u64(s[4]),
            images: u32::try_from(s[5]).unwrap_or(u32::MAX),
            cost: Usd::from_pico(s[6]),
            saved: Usd::from_pico(s[7]),
            estimated: b.estimated,
            cache_hit: false,
            latency_ms: 0,
            outcome: crate::record::OUTCOME_OK.to_owned(),
            client_addr: None,
            credential: None,
            guardrails: Vec::new(),
            payload: None,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dimensions_parse_and_print() {
        for d in Dimension::ALL {
            assert_eq!(d.as_str().parse::<Dimension>().unwrap(), d);
            let json = serde_json::to_string(&d).unwrap();
            assert_eq!(json, format!("\"{}\"", d.as_str()));
        }
        assert_eq!(
            "Served-Model".parse::<Dimension>().unwrap(),
            Dimension::ServedModel
        );
        assert!("region".parse::<Dimension>().is_err());
    }

    #[test]
    fn cursors_round_trip_as_opaque_text() {
        let c = RecordCursor {
            time: "2026-01-01T10:00:00.123456Z".parse().unwrap(),
            request_id: "req 1/ü,\"x\"".into(),
        };
        let text = c.to_string();
        assert!(
            text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.'),
            "{text}"
        );
        assert_eq!(text.parse::<RecordCursor>().unwrap(), c);
        for bad in ["", "12", "x.61", "12.6", "12.zz", "12.ff"] {
            assert!(bad.parse::<RecordCursor>().is_err(), "{bad}");
        }
    }

    #[test]
    fn times_are_rfc3339_or_a_span_back() {
        let now: Timestamp = "2026-01-08T00:00:00Z".parse().unwrap();
        assert_eq!(
            parse_time("7d", now).unwrap(),
            "2026-01-01T00:00:00Z".parse::<Timestamp>().unwrap()
        );
        assert_eq!(
            parse_time("2026-01-02T03:04:05Z", now).unwrap(),
            "2026-01-02T03:04:05Z".parse::<Timestamp>().unwrap()
        );
        assert!(parse_time("yesterday", now).is_err());
    }

    #[test]
    fn days_follow_the_time_zone_across_dst() {
        let tz = TimeZone::get("Europe/Berlin").unwrap();
        // 2026-03-29 is 23 hours long in Berlin.
        let a: Timestamp = "2026-03-28T12:00:00Z".parse().unwrap();
        let b: Timestamp = "2026-03-30T12:00:00Z".parse().unwrap();
        let days = days_between(a.as_microsecond(), b.as_microsecond(), &tz).unwrap();
        let names: Vec<&str> = days.iter().map(|d| d.day.as_str()).collect();
        assert_eq!(names, ["2026-03-28", "2026-03-29", "2026-03-30"]);
        assert_eq!(days[1].end_us - days[1].start_us, 23 * 3600 * 1_000_000);
        assert_eq!(days[0].end_us, days[1].start_us);
        let (s, e) = day_range("2026-03-29", &tz).unwrap();
        assert_eq!((s, e), (days[1].start_us, days[1].end_us));
        assert!(day_range("29/03/2026", &tz).is_err());
    }

    #[test]
    fn rows_serialize_groups_as_objects() {
        let row = UsageRow {
            group: vec![
                (Dimension::Team, Some("a".into())),
                (Dimension::Provider, None),
            ],
            requests: 2,
            cost: Usd::from_pico(18_750),
            ..UsageRow::default()
        };
        let json = serde_json::to_value(&row).unwrap();
        assert_eq!(json["group"]["team"], "a");
        assert!(json["group"]["provider"].is_null());
        assert_eq!(json["cost"], "0.00000001875");
        // Through text, the group keeps its order.
        let text = serde_json::to_string(&row).unwrap();
        assert!(
            text.starts_with(r#"{"group":{"team":"a","provider":null}"#),
            "{text}"
        );
        let back: UsageRow = serde_json::from_str(&text).unwrap();
        assert_eq!(back, row);
    }
}
