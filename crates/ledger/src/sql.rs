//! SQL shared by the SQLite and PostgreSQL stores. The two schemas have the
//! same columns; they differ in placeholders, the time column's type, and
//! what `SUM` returns.

use crate::query::{DayBucket, day_range};
use crate::{Dimension, LedgerError, UsageQuery};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

/// A bound parameter. Times are microseconds since the Unix epoch: an
/// INTEGER in SQLite, a `timestamptz` in PostgreSQL.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Param {
    Text(String),
    Time(i64),
    TextArray(Vec<String>),
    TimeArray(Vec<i64>),
}

/// The stored columns, in the order `records` reads them.
pub(crate) const RECORD_COLUMNS: [&str; 25] = [
    "request_id",
    "time",
    "router",
    "operation",
    "key_id",
    "team_id",
    "user_id",
    "model",
    "provider",
    "served_model",
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "images",
    "cost_pico",
    "saved_pico",
    "estimated",
    "cache_hit",
    "latency_ms",
    "outcome",
    "client_addr",
    "credential",
    "guardrails",
];

impl Dialect {
    pub fn table(self) -> &'static str {
        match self {
            Dialect::Sqlite => "usage_records",
            Dialect::Postgres => "switchyard_usage_records",
        }
    }

    /// The captured payloads, one row per request id that has one.
    pub fn payload_table(self) -> &'static str {
        match self {
            Dialect::Sqlite => "usage_payloads",
            Dialect::Postgres => "switchyard_usage_payloads",
        }
    }

    /// The time column (in SQLite its unit is in the name, for whoever
    /// opens the file with the sqlite3 shell).
    pub fn time(self) -> &'static str {
        match self {
            Dialect::Sqlite => "time_us",
            Dialect::Postgres => "time",
        }
    }

    fn placeholder(self, n: usize) -> String {
        match self {
            Dialect::Sqlite => format!("?{n}"),
            Dialect::Postgres => format!("${n}"),
        }
    }

    /// An exact integer sum, 0 over no rows. PostgreSQL's SUM(bigint) is a
    /// numeric: cast back (an overflow is an error, not a wrong number).
    fn sum(self, expr: &str) -> String {
        match self {
            Dialect::Sqlite => format!("COALESCE(SUM({expr}), 0)"),
            Dialect::Postgres => format!("COALESCE(SUM({expr}), 0)::bigint"),
        }
    }

    pub fn column(self, name: &str) -> &str {
        if name == "time" { self.time() } else { name }
    }

    /// How `records` selects a stored column: the guardrail actions are
    /// a JSON array, `jsonb` in PostgreSQL, read back as its text.
    fn select(self, name: &str) -> String {
        match (self, name) {
            (Dialect::Postgres, "guardrails") => "u.guardrails::text".to_owned(),
            _ => format!("u.{}", self.column(name)),
        }
    }
}

fn dimension_column(d: Dimension) -> &'static str {
    match d {
        Dimension::Key => "u.key_id",
        Dimension::Team => "u.team_id",
        Dimension::User => "u.user_id",
        Dimension::Model => "u.model",
        Dimension::Provider => "u.provider",
        Dimension::ServedModel => "u.served_model",
        Dimension::Outcome => "u.outcome",
        Dimension::Day => "d.day",
    }
}

/// SQL text with its parameters, built left to right so placeholder numbers
/// follow binding order.
#[derive(Debug)]
pub(crate) struct Sql {
    pub dialect: Dialect,
    pub text: String,
    pub params: Vec<Param>,
}

impl Sql {
    fn new(dialect: Dialect) -> Sql {
        Sql {
            dialect,
            text: String::new(),
            params: Vec::new(),
        }
    }

    fn push(&mut self, s: &str) {
        self.text.push_str(s);
    }

    fn bind(&mut self, p: Param) {
        self.params.push(p);
        let ph = self.dialect.placeholder(self.params.len());
        self.text.push_str(&ph);
    }

    /// ` WHERE ...` for the range and filters of `q` (always present, so
    /// callers can append ` AND ...`).
    fn where_clause(&mut self, q: &UsageQuery) -> Result<(), LedgerError> {
        let t = format!("u.{}", self.dialect.time());
        self.push(" WHERE 1=1");
        if let Some(from) = q.from {
            self.push(&format!(" AND {t} >= "));
            self.bind(Param::Time(from.as_microsecond()));
        }
        if let Some(to) = q.to {
            self.push(&format!(" AND {t} < "));
            self.bind(Param::Time(to.as_microsecond()));
        }
        if let Some(after) = &q.after {
            // The first comparison alone bounds an index range on time
            // (and on time, request id); the second finishes the row-value
            // comparison both stores order by.
            let at = after.time.as_microsecond();
            self.push(&format!(" AND {t} >= "));
            self.bind(Param::Time(at));
            self.push(&format!(" AND ({t} > "));
            self.bind(Param::Time(at));
            self.push(" OR u.request_id > ");
            self.bind(Param::Text(after.request_id.clone()));
            self.push(")");
        }
        for d in Dimension::ALL {
            let values: Vec<&str> = q
                .filters
                .iter()
                .filter(|(fd, _)| *fd == d)
                .map(|(_, v)| v.as_str())
                .collect();
            if values.is_empty() {
                continue;
            }
            self.push(" AND (");
            if d == Dimension::Day {
                for (i, day) in values.iter().enumerate() {
                    let (start, end) = day_range(day, &q.time_zone)?;
                    if i > 0 {
                        self.push(" OR ");
                    }
                    self.push(&format!("({t} >= "));
                    self.bind(Param::Time(start));
                    self.push(&format!(" AND {t} < "));
                    self.bind(Param::Time(end));
                    self.push(")");
                }
            } else {
                self.push(dimension_column(d));
                self.push(" IN (");
                for (i, v) in values.iter().enumerate() {
                    if i > 0 {
                        self.push(", ");
                    }
                    self.bind(Param::Text((*v).to_owned()));
                }
                self.push(")");
            }
            self.push(")");
        }
        Ok(())
    }
}

/// The first and last record time matching `q`: which days a Day grouping
/// needs. One row of two nullable integers / timestamps.
pub(crate) fn time_range(dialect: Dialect, q: &UsageQuery) -> Result<Sql, LedgerError> {
    let mut sql = Sql::new(dialect);
    let t = dialect.time();
    sql.push(&format!(
        "SELECT MIN(u.{t}), MAX(u.{t}) FROM {} u",
        dialect.table()
    ));
    sql.where_clause(q)?;
    Ok(sql)
}

/// The grouped sums: one text column per dimension of `dims`, then the ten
/// metrics of [`crate::query::Metrics`].
pub(crate) fn aggregate(
    dialect: Dialect,
    q: &UsageQuery,
    dims: &[Dimension],
    days: Option<&[DayBucket]>,
) -> Result<Sql, LedgerError> {
    let mut sql = Sql::new(dialect);
    let t = dialect.time();
    if let Some(days) = days {
        sql.push("WITH d(day, lo, hi) AS (");
        match dialect {
            // Integers and digits-and-dashes dates only, so inlining is
            // safe, and it avoids SQLite's limit on bound parameters.
            Dialect::Sqlite => {
                sql.push("VALUES ");
                for (i, b) in days.iter().enumerate() {
                    if i > 0 {
                        sql.push(", ");
                    }
                    sql.push(&format!("('{}', {}, {})", b.day, b.start_us, b.end_us));
                }
            }
            Dialect::Postgres => {
                sql.push("SELECT * FROM unnest(");
                sql.bind(Param::TextArray(
                    days.iter().map(|b| b.day.clone()).collect(),
                ));
                sql.push("::text[], ");
                sql.bind(Param::TimeArray(days.iter().map(|b| b.start_us).collect()));
                sql.push("::timestamptz[], ");
                sql.bind(Param::TimeArray(days.iter().map(|b| b.end_us).collect()));
                sql.push("::timestamptz[])");
            }
        }
        sql.push(") ");
    }
    sql.push("SELECT ");
    for d in dims {
        sql.push(dimension_column(*d));
        sql.push(", ");
    }
    let metrics = [
        "1",
        "u.input_tokens",
        "u.cached_input_tokens",
        "u.cache_write_tokens",
        "u.output_tokens",
        "u.reasoning_tokens",
        "u.cost_pico",
        "u.saved_pico",
        "CASE WHEN u.estimated THEN 1 ELSE 0 END",
        "CASE WHEN u.outcome IN ('ok', 'client_closed') THEN 0 ELSE 1 END",
    ];
    let sums: Vec<String> = metrics.iter().map(|m| dialect.sum(m)).collect();
    sql.push(&sums.join(", "));
    match (days.is_some(), dialect) {
        (false, _) => sql.push(&format!(" FROM {} u", dialect.table())),
        // CROSS JOIN makes SQLite loop over the days outside, so each day
        // is an index range scan (on time, or on a filtered column and
        // time) rather than every record compared with every day.
        (true, Dialect::Sqlite) => sql.push(&format!(" FROM d CROSS JOIN {} u", dialect.table())),
        (true, Dialect::Postgres) => {
            sql.push(&format!(" FROM d JOIN {} u ON TRUE", dialect.table()))
        }
    }
    sql.where_clause(q)?;
    if days.is_some() {
        sql.push(&format!(" AND u.{t} >= d.lo AND u.{t} < d.hi"));
    }
    if !dims.is_empty() {
        let cols: Vec<&str> = dims.iter().map(|d| dimension_column(*d)).collect();
        sql.push(" GROUP BY ");
        sql.push(&cols.join(", "));
    }
    Ok(sql)
}

/// Raw records in [`RECORD_COLUMNS`] order, oldest first, then the payload
/// as JSON text (NULL without one, or when `q` does not ask for payloads).
pub(crate) fn records(dialect: Dialect, q: &UsageQuery, limit: usize) -> Result<Sql, LedgerError> {
    let mut sql = Sql::new(dialect);
    let cols: Vec<String> = RECORD_COLUMNS.iter().map(|c| dialect.select(c)).collect();
    // A primary-key probe per record of the page, and only for the audit
    // export: reports and the usage tables never touch the payloads.
    let (payload, join) = if q.payloads {
        let col = match dialect {
            Dialect::Sqlite => "p.payload",
            Dialect::Postgres => "p.payload::text",
        };
        (
            col.to_owned(),
            format!(
                " LEFT JOIN {} p ON p.request_id = u.request_id",
                dialect.payload_table()
            ),
        )
    } else {
        let null = match dialect {
            Dialect::Sqlite => "NULL",
            Dialect::Postgres => "NULL::text",
        };
        (null.to_owned(), String::new())
    };
    sql.push(&format!(
        "SELECT {}, {payload} FROM {} u{join}",
        cols.join(", "),
        dialect.table()
    ));
    sql.where_clause(q)?;
    sql.push(&format!(
        " ORDER BY u.{}, u.request_id LIMIT {}",
        dialect.time(),
        i64::try_from(limit).unwrap_or(i64::MAX)
    ));
    Ok(sql)
}

/// The buckets of `spend_since`: bucket start, the six id dimensions,
/// then input, cached input, cache write, output, reasoning tokens, images,
/// cost, saved (all i64), and whether any record was estimated (i64 0/1).
pub(crate) fn spend_since(dialect: Dialect, since_us: i64) -> Sql {
    let mut sql = Sql::new(dialect);
    let t = dialect.time();
    let bucket = match dialect {
        Dialect::Sqlite => format!("(u.{t} / {b}) * {b}", b = crate::query::SPEND_BUCKET_US),
        // Buckets of the same epoch-aligned width as SQLite's.
        Dialect::Postgres => {
            format!("date_bin('15 minutes', u.{t}, timestamptz '1970-01-01 00:00:00+00')")
        }
    };
    let any_estimated = match dialect {
        Dialect::Sqlite => "MAX(u.estimated)".to_owned(),
        Dialect::Postgres => "MAX(CASE WHEN u.estimated THEN 1 ELSE 0 END)::bigint".to_owned(),
    };
    let sums: Vec<String> = [
        "u.input_tokens",
        "u.cached_input_tokens",
        "u.cache_write_tokens",
        "u.output_tokens",
        "u.reasoning_tokens",
        "u.images",
        "u.cost_pico",
        "u.saved_pico",
    ]
    .iter()
    .map(|m| dialect.sum(m))
    .collect();
    sql.push(&format!(
        "SELECT {bucket} AS bucket, u.key_id, u.team_id, u.user_id, u.model, u.provider, \
         u.served_model, {}, {any_estimated} FROM {} u WHERE u.{t} >= ",
        sums.join(", "),
        dialect.table()
    ));
    sql.bind(Param::Time(since_us));
    sql.push(" GROUP BY 1, 2, 3, 4, 5, 6, 7 ORDER BY 1");
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_follow_binding_order() {
        let q = UsageQuery::new()
            .from("2026-01-01T00:00:00Z".parse().unwrap())
            .filter(Dimension::Team, "a")
            .filter(Dimension::Team, "b")
            .filter(Dimension::Day, "2026-01-02");
        let days = [DayBucket {
            day: "2026-01-02".into(),
            start_us: 1,
            end_us: 2,
        }];
        let sql = aggregate(Dialect::Postgres, &q, &[Dimension::Day], Some(&days)).unwrap();
        for n in 1..=sql.params.len() {
            assert!(sql.text.contains(&format!("${n}")), "{}", sql.text);
        }
        assert!(matches!(sql.params[0], Param::TextArray(_)));
        assert_eq!(sql.params.len(), 3 + 1 + 2 + 2);
        let sql = aggregate(Dialect::Sqlite, &q, &[], None).unwrap();
        assert!(sql.text.contains("u.team_id IN (?2, ?3)"), "{}", sql.text);
    }
}
