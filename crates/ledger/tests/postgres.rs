//! The writer and the PostgreSQL store against the local PostgreSQL server
//! (skipped, saying so on stderr, when none is reachable) and a private
//! nats-server.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{nats, payload, record, stream_settings, varied_records, wait_for};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use switchyard_e2e::postgres::TestDb;
use switchyard_ledger::{
    Dimension, JetStreamSink, LocalLedger, PgSettings, PostgresStore, RecordCursor, StreamSettings,
    UsageQuery, UsageRecord, UsageSink, UsageStore, WriterHook, run_writer,
};
use switchyard_pricing::Usd;
use tokio_util::sync::CancellationToken;

async fn count(db: &tokio_postgres::Client) -> (i64, i64, i64) {
    let row = db
        .query_one(
            "SELECT count(*), count(DISTINCT request_id), COALESCE(sum(cost_pico), 0)::bigint \
             FROM switchyard_usage_records",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2))
}

/// Rows in the table, 0 while it does not exist yet.
async fn rows(db: &tokio_postgres::Client) -> i64 {
    match db
        .query_one("SELECT count(*) FROM switchyard_usage_records", &[])
        .await
    {
        Ok(row) => row.get(0),
        Err(_) => 0,
    }
}

fn spawn_writer(
    client: async_nats::Client,
    stream: StreamSettings,
    pg: PgSettings,
) -> (
    CancellationToken,
    tokio::task::JoinHandle<Result<(), switchyard_ledger::LedgerError>>,
) {
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let handle =
        tokio::spawn(async move { run_writer(client, stream, pg, "pg-writer", token).await });
    (shutdown, handle)
}

fn fast(url: &str) -> PgSettings {
    PgSettings {
        batch_size: 50,
        batch_wait: Duration::from_millis(200),
        ack_wait: Duration::from_secs(2),
        ..PgSettings::new(url)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writer_loads_every_record_once() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let (_server, client) = nats().await;
    let settings = stream_settings();
    let sink = JetStreamSink::new(client.clone(), settings.clone())
        .await
        .unwrap();
    let n = 300;
    for i in 0..n {
        sink.record(record(&format!("w{i}"), Timestamp::now()));
    }
    // Two messages the writer must terminate rather than retry forever:
    // one PostgreSQL refuses (text cannot hold NUL), one not a record.
    let mut refused = record("refused", Timestamp::now());
    refused.team = Some("a\0b".into());
    sink.record(refused);
    client
        .publish(
            format!("{}.junk", settings.subject_prefix),
            "not json".into(),
        )
        .await
        .unwrap();
    sink.flush().await.unwrap();

    let (shutdown, writer) = spawn_writer(client.clone(), settings.clone(), fast(&db.url));
    let pg = db.client().await;
    wait_for("all records in PostgreSQL", Duration::from_secs(30), || {
        let pg = &pg;
        async move { (rows(pg).await == n).then_some(()) }
    })
    .await;

    // Every message acked (the refused ones terminated): nothing comes
    // back, and nothing more arrives.
    let js = async_nats::jetstream::new(client.clone());
    let stream = js.get_stream(&settings.stream).await.unwrap();
    let consumer: async_nats::jetstream::consumer::PullConsumer =
        stream.get_consumer("pg-writer").await.unwrap();
    wait_for("all messages acked", Duration::from_secs(10), || {
        let mut c = consumer.clone();
        async move {
            let info = c.info().await.unwrap();
            (info.num_pending == 0 && info.num_ack_pending == 0).then_some(())
        }
    })
    .await;
    assert_eq!(count(&pg).await, (n, n, n * 18_750));

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), writer)
        .await
        .expect("the writer stops when cancelled")
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_killed_between_commit_and_ack_loses_and_doubles_nothing() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let (server, client) = nats().await;
    let settings = stream_settings();
    let n: i64 = 1_000;

    // Records keep arriving while the writers run.
    let producer = {
        let sink = JetStreamSink::new(client.clone(), settings.clone())
            .await
            .unwrap();
        tokio::spawn(async move {
            for chunk in 0..20 {
                for i in 0..50 {
                    let mut r = record(&format!("k{chunk}-{i}"), Timestamp::now());
                    r.cost = Usd::from_pico(18_750 + chunk);
                    sink.record(r);
                }
                sink.flush().await.unwrap();
                tokio::task::yield_now().await;
            }
        })
    };

    // The first writer, on its own connection, stops dead after committing
    // its third batch: the batch is in PostgreSQL, its messages unacked.
    let (hit_tx, hit_rx) = tokio::sync::oneshot::channel::<u64>();
    let hit_tx = Arc::new(std::sync::Mutex::new(Some(hit_tx)));
    let hook = WriterHook(Arc::new(move |batch| {
        let hit_tx = hit_tx.clone();
        Box::pin(async move {
            if batch == 3 {
                if let Some(tx) = hit_tx.lock().unwrap().take() {
                    let _ = tx.send(batch);
                }
                std::future::pending::<()>().await;
            }
        })
    }));
    let first_client = async_nats::connect(server.url()).await.unwrap();
    let (_first_shutdown, first) = spawn_writer(
        first_client.clone(),
        settings.clone(),
        PgSettings {
            after_commit: Some(hook),
            ..fast(&db.url)
        },
    );
    tokio::time::timeout(Duration::from_secs(30), hit_rx)
        .await
        .expect("the first writer commits three batches")
        .unwrap();
    first.abort();
    let _ = first.await;
    drop(first_client);

    let pg = db.client().await;
    let committed = rows(&pg).await;
    assert!(committed >= 3, "three batches were committed: {committed}");

    let (shutdown, second) = spawn_writer(client.clone(), settings.clone(), fast(&db.url));
    producer.await.unwrap();
    wait_for(
        "every record in PostgreSQL",
        Duration::from_secs(60),
        || {
            let pg = &pg;
            async move { (rows(pg).await == n).then_some(()) }
        },
    )
    .await;

    let js = async_nats::jetstream::new(client.clone());
    let stream = js.get_stream(&settings.stream).await.unwrap();
    let consumer: async_nats::jetstream::consumer::PullConsumer =
        stream.get_consumer("pg-writer").await.unwrap();
    let info = wait_for("every message acked", Duration::from_secs(30), || {
        let mut c = consumer.clone();
        async move {
            let info = c.info().await.unwrap().clone();
            (info.num_pending == 0 && info.num_ack_pending == 0).then_some(info)
        }
    })
    .await;
    // More deliveries than messages: the dead writer's unacked batch (at
    // least) was delivered again, and absorbed.
    assert!(
        info.delivered.consumer_sequence > n as u64,
        "the dead writer's batch was delivered again: {info:?}"
    );
    eprintln!(
        "killed after {committed} rows; {} deliveries of {n} messages",
        info.delivered.consumer_sequence
    );

    let want_cost: i64 = (0..20).map(|c| 50 * (18_750 + c)).sum();
    assert_eq!(count(&pg).await, (n, n, want_cost));
    shutdown.cancel();
    second.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_applied_twice_are_no_ops() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let store = PostgresStore::connect(&db.url).await.unwrap();
    assert_eq!(store.migrate().await.unwrap(), [1, 2]);
    assert!(store.migrate().await.unwrap().is_empty());
    // Two at once (two writers starting together) apply it once too.
    let fresh = TestDb::create().await.unwrap();
    let a = PostgresStore::connect(&fresh.url).await.unwrap();
    let b = PostgresStore::connect(&fresh.url).await.unwrap();
    let (ra, rb) = tokio::join!(a.migrate(), b.migrate());
    let mut applied = ra.unwrap();
    applied.extend(rb.unwrap());
    applied.sort_unstable();
    assert_eq!(applied, [1, 2]);
    let pg = db.client().await;
    let n: i64 = pg
        .query_one("SELECT count(*) FROM switchyard_schema_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
}

/// Loads `records` through the stream and the writer.
async fn load(db: &TestDb, records: &[UsageRecord]) {
    let (_server, client) = nats().await;
    let settings = stream_settings();
    let sink = JetStreamSink::new(client.clone(), settings.clone())
        .await
        .unwrap();
    for r in records {
        sink.record(r.clone());
    }
    sink.flush().await.unwrap();
    let (shutdown, writer) = spawn_writer(client, settings, fast(&db.url));
    let pg = db.client().await;
    let n = records.len() as i64;
    wait_for("the records in PostgreSQL", Duration::from_secs(30), || {
        let pg = &pg;
        async move { (rows(pg).await == n).then_some(()) }
    })
    .await;
    shutdown.cancel();
    writer.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_answers_like_the_local_ledger() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let mut records = varied_records();
    // Sub-second times and big numbers survive both.
    let mut big = record("big", "2026-01-02T03:04:05.678901Z".parse().unwrap());
    big.cost = Usd::from_pico(9_000_000_000_000_000);
    big.input_tokens = 1 << 40;
    big.payload = Some(payload("a big one, \u{1F600} and all"));
    records.push(big);
    records[0].payload = Some(payload("the first"));
    load(&db, &records).await;
    let pg = PostgresStore::connect(&db.url).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let local = LocalLedger::open(&dir.path().join("usage.db")).unwrap();
    for r in &records {
        local.record(r.clone());
    }
    local.flush().await.unwrap();

    let berlin = TimeZone::get("Europe/Berlin").unwrap();
    let mut queries = vec![
        UsageQuery::new(),
        UsageQuery::new()
            .group_by(Dimension::Team)
            .group_by(Dimension::Day)
            .time_zone(berlin.clone()),
        UsageQuery::new()
            .group_by(Dimension::Day)
            .time_zone(TimeZone::get("America/New_York").unwrap()),
        UsageQuery::new()
            .filter(Dimension::Team, "team-1")
            .filter(Dimension::Team, "ops, \"infra\"\nnight")
            .filter(Dimension::Day, "2026-01-02")
            .time_zone(berlin)
            .group_by(Dimension::Provider),
        UsageQuery::new()
            .from("2026-01-01T23:30:00Z".parse().unwrap())
            .to("2026-01-02T12:00:00Z".parse().unwrap())
            .group_by(Dimension::Model),
        UsageQuery::new().filter(Dimension::Key, "nobody"),
    ];
    for d in Dimension::ALL {
        queries.push(UsageQuery::new().group_by(d));
    }
    for q in &queries {
        let want = local.query(q).await.unwrap();
        assert!(!want.is_empty() || q.filters.iter().any(|(_, v)| v == "nobody"));
        assert_eq!(pg.query(q).await.unwrap(), want, "{q:?}");
        assert_eq!(
            pg.records(q, 1000).await.unwrap(),
            local.records(q, 1000).await.unwrap(),
            "{q:?}"
        );
    }
    // Pages cut by the cursor, through ties of time, come out alike.
    let mut want = Vec::new();
    let mut got = Vec::new();
    let (mut lq, mut pq) = (UsageQuery::new(), UsageQuery::new());
    loop {
        let l = local.records(&lq, 3).await.unwrap();
        let p = pg.records(&pq, 3).await.unwrap();
        assert_eq!(p, l, "page after {:?}", lq.after);
        let Some(last) = l.last() else { break };
        lq.after = Some(RecordCursor::of(last));
        pq.after = Some(
            RecordCursor::of(p.last().unwrap())
                .to_string()
                .parse()
                .unwrap(),
        );
        want.extend(l);
        got.extend(p);
    }
    assert_eq!(got.len(), records.len());
    assert_eq!(got, want);
    // Payloads only when asked, alike in both.
    assert!(got.iter().all(|r| r.payload.is_none()));
    let q = UsageQuery::new().with_payloads();
    let with = pg.records(&q, 1000).await.unwrap();
    assert_eq!(with, local.records(&q, 1000).await.unwrap());
    assert_eq!(with.iter().filter(|r| r.payload.is_some()).count(), 2);
    let mut sorted = records.clone();
    sorted.sort_by(|a, b| (a.time, &a.request_id).cmp(&(b.time, &b.request_id)));
    assert_eq!(
        with, sorted,
        "every field, the payload included, round-trips"
    );
    assert!(
        got.iter()
            .any(|r| r.credential.as_deref() == Some("jwt") && r.guardrails.len() == 1)
    );
    let since: Timestamp = "2026-01-02T00:35:00Z".parse().unwrap();
    assert_eq!(
        pg.spend_since(since).await.unwrap(),
        local.spend_since(since).await.unwrap()
    );
    let total = &pg.query(&UsageQuery::new()).await.unwrap()[0];
    assert_eq!(
        total.cost,
        records.iter().map(|r| r.cost).sum::<Usd>(),
        "exact"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_table_upgrades_in_place_and_refuses_updates() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let pg = db.client().await;
    // What a writer of the previous release left: migration 1 and a row.
    pg.batch_execute(include_str!("../migrations/0001_usage_records.sql"))
        .await
        .unwrap();
    pg.batch_execute(
        "CREATE TABLE switchyard_schema_migrations (
            version INTEGER PRIMARY KEY, name TEXT NOT NULL,
            applied_at TIMESTAMPTZ NOT NULL DEFAULT now());
         INSERT INTO switchyard_schema_migrations (version, name) VALUES (1, 'usage_records');
         INSERT INTO switchyard_usage_records (request_id, time, router, operation, model,
             cost_pico, outcome)
         VALUES ('old-1', '2026-01-01T10:00:00Z', 'router-a', 'chat', 'chat-default', 18750, 'ok');",
    )
    .await
    .unwrap();
    let store = PostgresStore::connect(&db.url).await.unwrap();
    assert_eq!(store.migrate().await.unwrap(), [2]);
    let old = store.records(&UsageQuery::new(), 10).await.unwrap();
    assert_eq!(old.len(), 1);
    assert_eq!(old[0].cost, Usd::from_pico(18_750));
    assert_eq!(old[0].client_addr, None);
    assert_eq!(old[0].credential, None);
    assert!(old[0].guardrails.is_empty());

    // New records, through the stream and the writer, keep their fields,
    // their payloads included.
    let mut new = record("new-1", "2026-01-01T11:00:00Z".parse().unwrap());
    new.payload = Some(payload("after the upgrade"));
    // A NUL PostgreSQL cannot store: the writer replaces it rather than
    // losing the record.
    let mut nul = record("nul-1", "2026-01-01T12:00:00Z".parse().unwrap());
    nul.payload = Some(payload("a\u{0}b"));
    load_more(&db, &[new.clone(), nul], 3).await;
    let all = store
        .records(&UsageQuery::new().with_payloads(), 10)
        .await
        .unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0].payload, None);
    assert_eq!(all[1], new);
    assert_eq!(
        all[2].payload.as_ref().unwrap()["request"][1]["content"],
        "a\u{fffd}b"
    );
    let plain = store.records(&UsageQuery::new(), 10).await.unwrap();
    assert!(plain.iter().all(|r| r.payload.is_none()));
    let matched: i64 = pg
        .query_one(
            "SELECT count(*) FROM switchyard_usage_records \
             WHERE guardrails ? 'redact:pii/email*2'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(matched, 2, "guardrail actions are queryable jsonb");

    let err = pg
        .execute(
            "UPDATE switchyard_usage_records SET cost_pico = 0 WHERE request_id = 'old-1'",
            &[],
        )
        .await
        .unwrap_err();
    assert!(format!("{err:?}").contains("append-only"), "{err:?}");
    let err = pg
        .execute("UPDATE switchyard_usage_payloads SET payload = '{}'", &[])
        .await
        .unwrap_err();
    assert!(format!("{err:?}").contains("append-only"), "{err:?}");
    // A payload goes with its record.
    pg.execute(
        "DELETE FROM switchyard_usage_records WHERE request_id = 'new-1'",
        &[],
    )
    .await
    .unwrap();
    let left: i64 = pg
        .query_one(
            "SELECT count(*) FROM switchyard_usage_payloads WHERE request_id = 'new-1'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
    // Retention stays possible.
    let n = pg
        .execute(
            "DELETE FROM switchyard_usage_records WHERE request_id = 'old-1'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(n, 1);
}

/// Loads `records` through the stream and the writer into a table that
/// holds `expect` rows afterwards.
async fn load_more(db: &TestDb, records: &[UsageRecord], expect: i64) {
    let (_server, client) = nats().await;
    let settings = stream_settings();
    let sink = JetStreamSink::new(client.clone(), settings.clone())
        .await
        .unwrap();
    for r in records {
        sink.record(r.clone());
    }
    sink.flush().await.unwrap();
    let (shutdown, writer) = spawn_writer(client, settings, fast(&db.url));
    let pg = db.client().await;
    wait_for("the records in PostgreSQL", Duration::from_secs(30), || {
        let pg = &pg;
        async move { (rows(pg).await == expect).then_some(()) }
    })
    .await;
    shutdown.cancel();
    writer.await.unwrap().unwrap();
}
