//! The embedded ledger against a real SQLite file.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::time::Duration;

use common::{payload, record, ts, varied_records};
use jiff::tz::TimeZone;
use switchyard_ledger::{
    Dimension, LedgerError, LocalLedger, LocalOptions, RecordCursor, UsageQuery, UsageRecord,
    UsageSink, UsageStore, records_to_csv, to_csv,
};
use switchyard_pricing::Usd;

async fn total(ledger: &LocalLedger) -> (u64, Usd) {
    let rows = ledger.query(&UsageQuery::new()).await.unwrap();
    rows.first()
        .map_or((0, Usd::ZERO), |r| (r.requests, r.cost))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_are_stored_and_queried() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = LocalLedger::open(&dir.path().join("usage.db")).unwrap();
    let mut r = record("req-1", ts("2026-01-01T10:00:00.123456Z"));
    r.outcome = "rate_limited".into();
    ledger.record(r.clone());
    ledger.record(record("req-2", ts("2026-01-01T11:00:00Z")));
    ledger.flush().await.unwrap();

    let rows = ledger.query(&UsageQuery::new()).await.unwrap();
    assert_eq!(rows.len(), 1);
    let t = &rows[0];
    assert!(t.group.is_empty());
    assert_eq!(t.requests, 2);
    assert_eq!(t.input_tokens, 200);
    assert_eq!(t.cached_input_tokens, 20);
    assert_eq!(t.cache_write_tokens, 10);
    assert_eq!(t.output_tokens, 100);
    assert_eq!(t.reasoning_tokens, 14);
    assert_eq!(t.cost, Usd::from_pico(37_500));
    assert_eq!(t.saved, Usd::from_pico(2_000));
    assert_eq!(t.errors, 1);
    assert_eq!(t.estimated_requests, 0);

    let records = ledger.records(&UsageQuery::new(), 10).await.unwrap();
    assert_eq!(records.len(), 2);
    // Every field round-trips (times at microsecond precision).
    assert_eq!(records[0], r);
    assert_eq!(ledger.stats().stored, 2);
    assert_eq!(
        ledger.records(&UsageQuery::new(), 1).await.unwrap().len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_request_id_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = LocalLedger::open(&dir.path().join("usage.db")).unwrap();
    let r = record("dup", ts("2026-01-01T10:00:00Z"));
    // Twice in one batch, and again in a later one.
    ledger.record(r.clone());
    ledger.record(r.clone());
    ledger.flush().await.unwrap();
    ledger.record(r.clone());
    ledger.flush().await.unwrap();
    assert_eq!(total(&ledger).await, (1, Usd::from_pico(18_750)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_survives_reopening_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("usage.db");
    let ledger = LocalLedger::open(&path).unwrap();
    for i in 0..10 {
        ledger.record(record(&format!("r{i}"), ts("2026-01-01T10:00:00Z")));
    }
    // No flush: dropping the ledger drains its queue.
    drop(ledger);
    let ledger = LocalLedger::open(&path).unwrap();
    assert_eq!(total(&ledger).await, (10, Usd::from_pico(187_500)));
    ledger.record(record("r10", ts("2026-01-01T10:00:00Z")));
    ledger.flush().await.unwrap();
    assert_eq!(total(&ledger).await.0, 11);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn money_sums_are_exact() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = LocalLedger::open(&dir.path().join("usage.db")).unwrap();
    for i in 0..1000 {
        ledger.record(record(&format!("m{i}"), ts("2026-01-01T10:00:00Z")));
    }
    ledger.flush().await.unwrap();
    let (n, cost) = total(&ledger).await;
    assert_eq!(n, 1000);
    assert_eq!(cost, Usd::from_pico(18_750_000));
    assert_eq!(cost.to_string(), "0.00001875");
}

async fn loaded() -> (tempfile::TempDir, std::sync::Arc<LocalLedger>) {
    let dir = tempfile::tempdir().unwrap();
    let ledger = LocalLedger::open(&dir.path().join("usage.db")).unwrap();
    for r in varied_records() {
        ledger.record(r);
    }
    ledger.flush().await.unwrap();
    (dir, ledger)
}

/// What the store must answer, computed from the records in memory.
fn expected(
    records: &[switchyard_ledger::UsageRecord],
    d: Dimension,
) -> Vec<(Option<String>, u64, Usd)> {
    let mut map: std::collections::BTreeMap<Option<String>, (u64, Usd)> = Default::default();
    for r in records {
        let key = match d {
            Dimension::Key => r.key.clone(),
            Dimension::Team => r.team.clone(),
            Dimension::User => r.user.clone(),
            Dimension::Model => Some(r.model.clone()),
            Dimension::Provider => r.provider.clone(),
            Dimension::ServedModel => r.served_model.clone(),
            Dimension::Outcome => Some(r.outcome.clone()),
            Dimension::Day => Some(r.time.to_zoned_datetime(TimeZone::UTC).date().to_string()),
        };
        let e = map.entry(key).or_default();
        e.0 += 1;
        e.1 += r.cost;
    }
    map.into_iter().map(|(k, (n, c))| (k, n, c)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_by_every_dimension() {
    let (_dir, ledger) = loaded().await;
    let records = varied_records();
    for d in Dimension::ALL {
        let rows = ledger.query(&UsageQuery::new().group_by(d)).await.unwrap();
        let got: Vec<(Option<String>, u64, Usd)> = rows
            .iter()
            .map(|r| {
                assert_eq!(r.group.len(), 1);
                assert_eq!(r.group[0].0, d);
                (r.group[0].1.clone(), r.requests, r.cost)
            })
            .collect();
        assert_eq!(got, expected(&records, d), "group by {d}");
    }
    // Two dimensions: the group keeps the asked order, repeats ignored.
    let rows = ledger
        .query(
            &UsageQuery::new()
                .group_by(Dimension::Provider)
                .group_by(Dimension::Team)
                .group_by(Dimension::Provider),
        )
        .await
        .unwrap();
    assert!(rows.iter().all(|r| r.group.len() == 2
        && r.group[0].0 == Dimension::Provider
        && r.group[1].0 == Dimension::Team));
    let anthropic = rows
        .iter()
        .find(|r| r.get(Dimension::Provider) == Some("anthropic"))
        .unwrap();
    assert_eq!(anthropic.requests, 5);
    assert_eq!(anthropic.estimated_requests, 5);
    assert_eq!(anthropic.errors, 0, "client_closed is not an error");
    let none = rows.iter().find(|r| r.group[0].1.is_none()).unwrap();
    assert_eq!(none.errors, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_and_time_ranges() {
    let (_dir, ledger) = loaded().await;
    let one = |q: UsageQuery| {
        let ledger = ledger.clone();
        async move {
            let rows = ledger.query(&q).await.unwrap();
            rows.first().map_or(0, |r| r.requests)
        }
    };
    assert_eq!(
        one(UsageQuery::new().filter(Dimension::Team, "team-1")).await,
        10
    );
    // Values of one dimension are alternatives...
    assert_eq!(
        one(UsageQuery::new()
            .filter(Dimension::Team, "team-1")
            .filter(Dimension::Team, "ops, \"infra\"\nnight"))
        .await,
        15
    );
    // ...different dimensions must all match.
    assert_eq!(
        one(UsageQuery::new()
            .filter(Dimension::Team, "team-1")
            .filter(Dimension::Provider, "anthropic"))
        .await,
        5
    );
    assert_eq!(
        one(UsageQuery::new().filter(Dimension::Key, "nobody")).await,
        0
    );
    assert!(
        ledger
            .query(&UsageQuery::new().filter(Dimension::Key, "nobody"))
            .await
            .unwrap()
            .is_empty()
    );
    // from inclusive, to exclusive.
    assert_eq!(
        one(UsageQuery::new()
            .from(ts("2026-01-01T23:30:00Z"))
            .to(ts("2026-01-02T12:00:00Z")))
        .await,
        8
    );
    assert_eq!(
        one(UsageQuery::new().from(ts("2026-01-03T05:00:00Z"))).await,
        4
    );
    // A day filter is a local day.
    assert_eq!(
        one(UsageQuery::new().filter(Dimension::Day, "2026-01-02")).await,
        8
    );
    let ny = TimeZone::get("America/New_York").unwrap();
    assert_eq!(
        one(UsageQuery::new()
            .filter(Dimension::Day, "2026-01-01")
            .time_zone(ny))
        .await,
        12
    );
    let bad = ledger
        .query(&UsageQuery::new().filter(Dimension::Day, "yesterday"))
        .await;
    assert!(matches!(bad, Err(LedgerError::InvalidQuery(_))), "{bad:?}");
    let records = ledger
        .records(&UsageQuery::new().filter(Dimension::Model, "embed"), 100)
        .await
        .unwrap();
    assert_eq!(records.len(), 5);
    assert!(records.windows(2).all(|w| w[0].time <= w[1].time));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn days_follow_the_query_time_zone() {
    let (_dir, ledger) = loaded().await;
    let days = |tz: TimeZone| {
        let ledger = ledger.clone();
        async move {
            ledger
                .query(&UsageQuery::new().group_by(Dimension::Day).time_zone(tz))
                .await
                .unwrap()
                .into_iter()
                .map(|r| (r.get(Dimension::Day).unwrap().to_owned(), r.requests))
                .collect::<Vec<_>>()
        }
    };
    let s = |d: &str, n| (d.to_owned(), n);
    assert_eq!(
        days(TimeZone::UTC).await,
        [s("2026-01-01", 8), s("2026-01-02", 8), s("2026-01-03", 4)]
    );
    assert_eq!(
        days(TimeZone::get("Europe/Berlin").unwrap()).await,
        [s("2026-01-01", 4), s("2026-01-02", 12), s("2026-01-03", 4)]
    );
    assert_eq!(
        days(TimeZone::get("America/New_York").unwrap()).await,
        [s("2026-01-01", 12), s("2026-01-02", 4), s("2026-01-03", 4)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spend_since_aggregates_per_bucket() {
    let (_dir, ledger) = loaded().await;
    let since = ts("2026-01-02T00:35:00Z");
    let spend = ledger.spend_since(since).await.unwrap();
    let want: Vec<_> = varied_records()
        .into_iter()
        .filter(|r| r.time >= since)
        .collect();
    let total: Usd = spend.iter().map(|r| r.cost).sum();
    assert_eq!(total, want.iter().map(|r| r.cost).sum::<Usd>());
    let tokens: u64 = spend.iter().map(|r| r.input_tokens).sum();
    assert_eq!(tokens, want.iter().map(|r| r.input_tokens).sum::<u64>());
    assert!(
        spend
            .iter()
            .all(|r| r.time >= since && r.operation == "aggregate")
    );
    // The partial first bucket (00:30-00:45) is stamped with `since`.
    assert!(spend.iter().any(|r| r.time == since));
    assert!(spend.windows(2).all(|w| w[0].time <= w[1].time));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_quotes_what_needs_quoting() {
    let (_dir, ledger) = loaded().await;
    let rows = ledger
        .query(
            &UsageQuery::new()
                .group_by(Dimension::Team)
                .group_by(Dimension::Day),
        )
        .await
        .unwrap();
    let csv = to_csv(&rows);
    let mut lines = csv.split("\r\n");
    assert_eq!(
        lines.next().unwrap(),
        "team,day,requests,input_tokens,cached_input_tokens,cache_write_tokens,\
         output_tokens,reasoning_tokens,cost_usd,saved_usd,estimated_requests,errors"
    );
    assert!(csv.starts_with("team,day,"));
    assert!(
        csv.contains("\r\n\"ops, \"\"infra\"\"\nnight\",2026-01-01,2,40,20,10,100,14,0.000000003002,0.000000002,0,0\r\n"),
        "{csv}"
    );
    // A missing team is an empty field.
    assert!(csv.contains("\r\n,2026-01-01,2,"), "{csv}");
    assert!(csv.ends_with("\r\n"));
    assert_eq!(to_csv(&[]).lines().count(), 1);

    let records = ledger
        .records(&UsageQuery::new().filter(Dimension::Key, "key-2"), 1)
        .await
        .unwrap();
    let csv = records_to_csv(&records);
    assert!(csv.starts_with("request_id,time,router,operation,key,team,user,model,"));
    assert!(
        csv.contains("varied-0-1,2026-01-01T10:00:00Z,router-a,chat,key-2,\"ops, \"\"infra\"\"\nnight\",user-1,embed,"),
        "{csv}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_drops_and_counts_instead_of_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("usage.db");
    let ledger = LocalLedger::open_with(
        &path,
        LocalOptions {
            queue_capacity: 2,
            batch_size: 1,
            linger: Duration::from_millis(1),
        },
    )
    .unwrap();
    // Another connection holds the write lock, so the writer stalls with at
    // most one record in hand and two in the queue.
    let blocker = rusqlite::Connection::open(&path).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    for i in 0..50 {
        ledger.record(record(&format!("q{i}"), ts("2026-01-01T10:00:00Z")));
    }
    // Every call returned while the writer was stuck: none blocked.
    let stats = ledger.stats();
    assert!(stats.dropped >= 47, "{stats:?}");
    assert_eq!(stats.recorded + stats.dropped, 50);
    blocker.execute_batch("COMMIT").unwrap();

    match ledger.flush().await {
        Err(LedgerError::Lost { dropped, failed }) => {
            assert_eq!(dropped, stats.dropped);
            assert_eq!(failed, 0);
        }
        other => panic!("flush should report the drops: {other:?}"),
    }
    // Reported once; the next flush is clean.
    ledger.flush().await.unwrap();
    assert_eq!(total(&ledger).await.0, stats.recorded);
    assert_eq!(ledger.stats().stored, stats.recorded);
}

/// Follows the cursor in pages of `page` records, as the audit export
/// does: one more than the page says whether another follows.
async fn all_pages(
    store: &dyn UsageStore,
    q: &UsageQuery,
    page: usize,
) -> (Vec<UsageRecord>, usize) {
    let mut out = Vec::new();
    let mut q = q.clone();
    let mut pages = 0;
    loop {
        let mut got = store.records(&q, page + 1).await.unwrap();
        pages += 1;
        let more = got.len() > page;
        got.truncate(page);
        let last = got.last().map(RecordCursor::of);
        out.extend(got);
        match last {
            Some(c) if more => q.after = Some(c),
            _ => return (out, pages),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursor_pages_return_every_record_once_in_order() {
    let (_dir, ledger) = loaded().await;
    let everything = ledger.records(&UsageQuery::new(), 1000).await.unwrap();
    assert_eq!(everything.len(), 20);
    // Four records share each time: pages of 3 cut between records of the
    // same time, where only the request id orders them.
    for page in [1, 3, 4, 19, 20, 100] {
        let (got, pages) = all_pages(ledger.as_ref(), &UsageQuery::new(), page).await;
        assert_eq!(got, everything, "pages of {page}");
        assert_eq!(pages, 20usize.div_ceil(page).max(1), "pages of {page}");
    }
    // With a range and a filter, the cursor narrows within them.
    let q = UsageQuery::new()
        .from(ts("2026-01-01T23:30:00Z"))
        .to(ts("2026-01-03T00:00:00Z"))
        .filter(Dimension::Outcome, "upstream_timeout");
    let want = ledger.records(&q, 1000).await.unwrap();
    assert_eq!(want.len(), 3);
    assert!(want.iter().all(|r| r.outcome == "upstream_timeout"));
    assert_eq!(all_pages(ledger.as_ref(), &q, 1).await.0, want);
    // Through its text form, as the admin API hands it out.
    let c: RecordCursor = RecordCursor::of(&everything[5])
        .to_string()
        .parse()
        .unwrap();
    let rest = ledger
        .records(&UsageQuery::new().after(c), 1000)
        .await
        .unwrap();
    assert_eq!(rest, everything[6..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_fields_are_stored_and_exported() {
    let (_dir, ledger) = loaded().await;
    let records = ledger.records(&UsageQuery::new(), 1000).await.unwrap();
    let mut want = varied_records();
    want.sort_by(|a, b| (a.time, &a.request_id).cmp(&(b.time, &b.request_id)));
    assert_eq!(records, want);
    let anonymous = records
        .iter()
        .find(|r| r.request_id == "varied-0-2")
        .unwrap();
    assert_eq!(anonymous.client_addr.as_deref(), Some("2001:db8::1"));
    assert_eq!(anonymous.credential, None);
    assert!(anonymous.guardrails.is_empty());

    let csv = records_to_csv(&records[..4]);
    let header = csv.split("\r\n").next().unwrap();
    // New columns at the end: positions of the old ones are unchanged.
    assert!(
        header.ends_with(",latency_ms,outcome,client_addr,credential,guardrails,payload"),
        "{header}"
    );
    assert!(header.starts_with("request_id,time,router,operation,key,"));
    assert!(
        csv.contains(",ok,10.0.0.7,key,redact:pii/email*2;flag:tone/angry,\r\n"),
        "{csv}"
    );
    assert!(csv.contains(",ok,,jwt,block:no-cards/card,\r\n"), "{csv}");
    assert!(
        csv.contains(",upstream_timeout,2001:db8::1,,,\r\n"),
        "{csv}"
    );
}

/// The schema of version 1, as released: the migration test starts from
/// a file written by that build.
const SCHEMA_V1: &str = "
CREATE TABLE usage_records (
    request_id          TEXT    NOT NULL PRIMARY KEY,
    time_us             INTEGER NOT NULL,
    router              TEXT    NOT NULL,
    operation           TEXT    NOT NULL,
    key_id              TEXT,
    team_id             TEXT,
    user_id             TEXT,
    model               TEXT    NOT NULL,
    provider            TEXT,
    served_model        TEXT,
    input_tokens        INTEGER NOT NULL DEFAULT 0,
    cached_input_tokens INTEGER NOT NULL DEFAULT 0,
    cache_write_tokens  INTEGER NOT NULL DEFAULT 0,
    output_tokens       INTEGER NOT NULL DEFAULT 0,
    reasoning_tokens    INTEGER NOT NULL DEFAULT 0,
    images              INTEGER NOT NULL DEFAULT 0,
    cost_pico           INTEGER NOT NULL DEFAULT 0,
    saved_pico          INTEGER NOT NULL DEFAULT 0,
    estimated           INTEGER NOT NULL DEFAULT 0,
    cache_hit           INTEGER NOT NULL DEFAULT 0,
    latency_ms          INTEGER NOT NULL DEFAULT 0,
    outcome             TEXT    NOT NULL
);
CREATE INDEX usage_records_time     ON usage_records (time_us);
INSERT INTO usage_records (request_id, time_us, router, operation, key_id, model, provider,
    input_tokens, cost_pico, outcome)
VALUES ('old-1', 1767261600000000, 'router-a', 'chat', 'key-1', 'chat-default', 'openai',
    100, 18750, 'ok');
PRAGMA user_version = 1;
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_file_upgrades_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("usage.db");
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(SCHEMA_V1)
        .unwrap();

    let ledger = LocalLedger::open(&path).unwrap();
    let old = ledger.records(&UsageQuery::new(), 10).await.unwrap();
    assert_eq!(old.len(), 1);
    let old = &old[0];
    assert_eq!(old.request_id, "old-1");
    assert_eq!(old.time, ts("2026-01-01T10:00:00Z"));
    assert_eq!(old.cost, Usd::from_pico(18_750));
    assert_eq!(old.client_addr, None);
    assert_eq!(old.credential, None);
    assert!(old.guardrails.is_empty());

    let mut new = record("new-1", ts("2026-01-01T11:00:00Z"));
    new.payload = Some(payload("after the upgrade"));
    ledger.record(new.clone());
    ledger.flush().await.unwrap();
    let all = ledger
        .records(&UsageQuery::new().with_payloads(), 10)
        .await
        .unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].payload, None);
    assert_eq!(all[1], new);
    drop(ledger);

    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 2);
    let indexes: Vec<String> = conn
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL ORDER BY name",
        )
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(indexes, ["usage_records_time_id"]);
    let payloads: i64 = conn
        .query_row("SELECT count(*) FROM usage_payloads", [], |r| r.get(0))
        .unwrap();
    assert_eq!(payloads, 1);
    drop(conn);
    // Opening again changes nothing.
    let ledger = LocalLedger::open(&path).unwrap();
    assert_eq!(
        ledger
            .records(&UsageQuery::new().with_payloads(), 10)
            .await
            .unwrap(),
        all
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_cannot_be_rewritten() {
    let (dir, ledger) = loaded().await;
    let conn = rusqlite::Connection::open(dir.path().join("usage.db")).unwrap();
    let err = conn
        .execute(
            "UPDATE usage_records SET cost_pico = 0 WHERE request_id = 'varied-0-0'",
            [],
        )
        .unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
    // Retention (deleting old records) stays possible.
    let n = conn
        .execute(
            "DELETE FROM usage_records WHERE time_us < ?1",
            [ts("2026-01-02T00:00:00Z").as_microsecond()],
        )
        .unwrap();
    assert_eq!(n, 8);
    assert_eq!(total(&ledger).await.0, 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_are_stored_apart_and_read_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("usage.db");
    let ledger = LocalLedger::open(&path).unwrap();
    let mut with = record("with", ts("2026-01-01T10:00:00Z"));
    with.payload = Some(payload("hello, [REDACTED:email]"));
    let without = record("without", ts("2026-01-01T10:00:01Z"));
    ledger.record(with.clone());
    ledger.record(without.clone());
    // A re-delivery keeps the first copy, payload included.
    let mut again = with.clone();
    again.payload = Some(payload("something else"));
    ledger.record(again);
    ledger.flush().await.unwrap();

    let q = UsageQuery::new().with_payloads();
    assert_eq!(
        ledger.records(&q, 10).await.unwrap(),
        [with.clone(), without.clone()]
    );
    // Reports and plain record listings do not read them.
    let plain = ledger.records(&UsageQuery::new(), 10).await.unwrap();
    assert!(plain.iter().all(|r| r.payload.is_none()));
    assert_eq!(total(&ledger).await.0, 2);
    // Filters and pages work the same with the join.
    let keyed = q.clone().filter(Dimension::Outcome, "ok");
    assert_eq!(ledger.records(&keyed, 1).await.unwrap(), [with.clone()]);
    let next = q.clone().after(RecordCursor::of(&with));
    assert_eq!(ledger.records(&next, 10).await.unwrap(), [without]);

    // The CSV's last column is the payload's JSON, quoted as needed.
    let csv = records_to_csv(&ledger.records(&q, 10).await.unwrap());
    let header = csv.split("\r\n").next().unwrap();
    assert!(header.ends_with(",guardrails,payload"), "{header}");
    let json = with.payload.as_ref().unwrap().to_string();
    let quoted = format!(",\"{}\"\r\n", json.replace('"', "\"\""));
    assert!(csv.contains(&quoted), "{csv}");
    assert!(csv.ends_with(",\r\n"), "no payload: an empty field: {csv}");

    // Append-only like the records, and deleted with them.
    let conn = rusqlite::Connection::open(&path).unwrap();
    let err = conn
        .execute("UPDATE usage_payloads SET payload = '{}'", [])
        .unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
    conn.execute("DELETE FROM usage_records WHERE request_id = 'with'", [])
        .unwrap();
    let left: i64 = conn
        .query_row("SELECT count(*) FROM usage_payloads", [], |r| r.get(0))
        .unwrap();
    assert_eq!(left, 0);
}
