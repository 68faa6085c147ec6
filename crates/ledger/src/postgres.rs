//! The scaled-out store: a writer process loads the usage stream into
//! PostgreSQL; routers and the CLI query it.

use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, AckKind, consumer};
use async_trait::async_trait;
use bytes::{BufMut, BytesMut};
use futures_util::StreamExt;
use jiff::Timestamp;
use switchyard_pricing::Usd;
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};
use tokio_postgres::{Client, NoTls, Row, Statement};
use tokio_util::sync::CancellationToken;

use crate::jetstream::ensure_stream;
use crate::query::{
    Metrics, SpendBucket, days_between, rows_from, spend_records, to_i64, to_u64, ts_from_us,
};
use crate::record::{bounded_payload, guardrails_from_json, guardrails_to_json, payload_from_json};
use crate::sql::{self, Dialect, Param, Sql};
use crate::{
    Dimension, LedgerError, StreamSettings, UsageQuery, UsageRecord, UsageRow, UsageStore,
};

struct Migration {
    version: u32,
    name: &'static str,
    sql: &'static str,
}

/// Applied in order, each once, each in its own transaction. Append only:
/// a released migration is never edited.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "usage_records",
        sql: include_str!("../migrations/0001_usage_records.sql"),
    },
    Migration {
        version: 2,
        name: "audit",
        sql: include_str!("../migrations/0002_audit.sql"),
    },
];

/// Serializes migrations of concurrently starting writers.
const MIGRATION_LOCK: i64 = 0x5357_4c45_4447_4552;

// The guardrail actions travel as JSON text (an array of arrays cannot be
// ragged) and become jsonb in the select. The payloads go in the same
// statement (one statement, one transaction), and only for records that
// are new: a re-delivered record keeps the payload it was stored with.
// The foreign key is checked at the end of the statement, when the new
// records are there.
const INSERT: &str = "WITH new AS (
INSERT INTO switchyard_usage_records (
    request_id, time, router, operation, key_id, team_id, user_id, model, provider,
    served_model, input_tokens, cached_input_tokens, cache_write_tokens, output_tokens,
    reasoning_tokens, images, cost_pico, saved_pico, estimated, cache_hit, latency_ms, outcome,
    client_addr, credential, guardrails)
SELECT c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13, c14, c15, c16, c17, c18, c19,
    c20, c21, c22, c23, c24, c25::jsonb
FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::text[], $5::text[],
    $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::bigint[], $12::bigint[],
    $13::bigint[], $14::bigint[], $15::bigint[], $16::bigint[], $17::bigint[], $18::bigint[],
    $19::boolean[], $20::boolean[], $21::bigint[], $22::text[], $23::text[], $24::text[],
    $25::text[])
    AS u(c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13, c14, c15, c16, c17, c18, c19,
         c20, c21, c22, c23, c24, c25)
ON CONFLICT (request_id) DO NOTHING
RETURNING request_id
), payloads AS (
INSERT INTO switchyard_usage_payloads (request_id, payload)
SELECT p.id, p.payload::jsonb
FROM unnest($1::text[], $26::text[]) AS p(id, payload)
JOIN new ON new.request_id = p.id
WHERE p.payload IS NOT NULL
ON CONFLICT (request_id) DO NOTHING
)
SELECT count(*) FROM new";

/// Microseconds between the Unix epoch and PostgreSQL's (2000-01-01).
const PG_EPOCH_US: i64 = 946_684_800_000_000;

/// A `timestamptz` as microseconds since the Unix epoch, in PostgreSQL's
/// binary format: exact, and no date-time crate bridge needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PgTime(i64);

impl ToSql for PgTime {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        out.put_i64(self.0.saturating_sub(PG_EPOCH_US));
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::TIMESTAMPTZ
    }

    to_sql_checked!();
}

impl<'a> FromSql<'a> for PgTime {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn StdError + Sync + Send>> {
        let bytes: [u8; 8] = raw.try_into()?;
        Ok(PgTime(
            i64::from_be_bytes(bytes).saturating_add(PG_EPOCH_US),
        ))
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::TIMESTAMPTZ
    }
}

async fn connect(url: &str) -> Result<Client, LedgerError> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "PostgreSQL connection closed");
        }
    });
    Ok(client)
}

/// Applies the migrations not yet recorded in `switchyard_schema_migrations`
/// and returns their versions.
async fn migrate(client: &mut Client) -> Result<Vec<u32>, LedgerError> {
    let mut applied = Vec::new();
    for m in MIGRATIONS {
        let tx = client.transaction().await?;
        // Held to the end of the transaction: a second writer starting at
        // the same time waits, then finds the migration recorded.
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS switchyard_schema_migrations (
                version    INTEGER     PRIMARY KEY,
                name       TEXT        NOT NULL,
                applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        )
        .await?;
        let version = i32::try_from(m.version).unwrap_or(i32::MAX);
        let done = tx
            .query_opt(
                "SELECT 1 FROM switchyard_schema_migrations WHERE version = $1",
                &[&version],
            )
            .await?;
        if done.is_some() {
            tx.rollback().await?;
            continue;
        }
        tx.batch_execute(m.sql)
            .await
            .map_err(|source| LedgerError::Migration {
                version: m.version,
                name: m.name,
                source,
            })?;
        tx.execute(
            "INSERT INTO switchyard_schema_migrations (version, name) VALUES ($1, $2)",
            &[&version, &m.name],
        )
        .await?;
        tx.commit().await?;
        tracing::info!(
            version = m.version,
            name = m.name,
            "applied usage migration"
        );
        applied.push(m.version);
    }
    Ok(applied)
}

type HookFn = dyn Fn(u64) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync;

/// Test-only fault injection: called with the batch number (from 1) after
/// a batch is committed and before its messages are acked.
#[doc(hidden)]
#[derive(Clone)]
pub struct WriterHook(pub Arc<HookFn>);

impl std::fmt::Debug for WriterHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WriterHook")
    }
}

/// The PostgreSQL side of [`run_writer`], and how it consumes.
#[derive(Debug, Clone)]
pub struct PgSettings {
    /// libpq style (`host=... user=... dbname=...`) or a
    /// `postgresql://` URL; no TLS.
    pub url: String,
    /// Most messages per fetch, and so per insert.
    pub batch_size: usize,
    /// How long a fetch waits to fill a batch.
    pub batch_wait: Duration,
    /// When a message delivered but not acked (a writer that died) is
    /// delivered again. Used when the consumer is created.
    pub ack_wait: Duration,
    /// Messages delivered and not yet acked, at most. Used when the
    /// consumer is created.
    pub max_ack_pending: i64,
    /// Longest pause between reconnect attempts.
    pub max_backoff: Duration,
    #[doc(hidden)]
    pub after_commit: Option<WriterHook>,
}

impl PgSettings {
    pub fn new(url: impl Into<String>) -> PgSettings {
        PgSettings {
            url: url.into(),
            batch_size: 500,
            batch_wait: Duration::from_secs(1),
            ack_wait: Duration::from_secs(30),
            max_ack_pending: 20_000,
            max_backoff: Duration::from_secs(30),
            after_commit: None,
        }
    }
}

/// Loads the usage stream into PostgreSQL until `shutdown` is cancelled.
///
/// Applies the migrations, then reads with the durable pull consumer
/// `consumer` (created on first start: all records, explicit acks) in
/// batches; each batch is one `INSERT ... ON CONFLICT (request_id) DO
/// NOTHING` statement (one transaction), and its messages are acked only
/// after the commit. A writer that dies between the commit and the acks
/// gets the batch again (after `ack_wait`), and the conflict clause absorbs
/// it: nothing lost, nothing doubled. Run any number of writers with the
/// same consumer name; they share the work.
///
/// A message that is not a usage record, or that PostgreSQL rejects (say a
/// NUL byte in a name), is logged and terminated rather than retried.
/// Errors of PostgreSQL or NATS are retried with backoff, reconnecting;
/// only a failed migration or an invalid consumer name ends the writer
/// with an error.
pub async fn run_writer(
    client: async_nats::Client,
    stream: StreamSettings,
    pg: PgSettings,
    consumer: &str,
    shutdown: CancellationToken,
) -> Result<(), LedgerError> {
    if consumer.is_empty()
        || consumer
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '.' | '*' | '>' | '/' | '\\'))
    {
        return Err(LedgerError::Config(format!(
            "`{consumer}` is not a JetStream consumer name (no spaces, `.`, `*`, `>`, `/`)"
        )));
    }
    let js = jetstream::new(client.clone());
    let mut progress = Progress::new();
    let mut pause = Duration::from_millis(200);
    loop {
        if shutdown.is_cancelled() {
            return Ok(());
        }
        let session = Session {
            nats: &client,
            js: &js,
            stream: &stream,
            pg: &pg,
            consumer,
            shutdown: &shutdown,
        };
        match session.run(&mut progress, &mut pause).await {
            Ok(()) => {
                progress.log();
                return Ok(());
            }
            Err(e @ (LedgerError::Migration { .. } | LedgerError::Config(_))) => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?pause, "usage writer: failed; reconnecting");
                tokio::select! {
                    () = shutdown.cancelled() => return Ok(()),
                    () = tokio::time::sleep(pause) => {}
                }
                pause = (pause * 2).min(pg.max_backoff.max(Duration::from_millis(200)));
            }
        }
    }
}

/// Counts for the progress log.
struct Progress {
    batches: u64,
    inserted: u64,
    duplicates: u64,
    rejected: u64,
    last_log: Instant,
    logged_batches: u64,
}

impl Progress {
    fn new() -> Progress {
        Progress {
            batches: 0,
            inserted: 0,
            duplicates: 0,
            rejected: 0,
            last_log: Instant::now(),
            logged_batches: 0,
        }
    }

    fn log(&mut self) {
        self.logged_batches = self.batches;
        tracing::info!(
            batches = self.batches,
            inserted = self.inserted,
            duplicates = self.duplicates,
            rejected = self.rejected,
            "usage writer progress"
        );
        self.last_log = Instant::now();
    }

    /// At most every 30 s, and only when something was stored.
    fn maybe_log(&mut self) {
        if self.batches != self.logged_batches && self.last_log.elapsed() >= Duration::from_secs(30)
        {
            self.log();
        }
    }
}

struct Session<'a> {
    nats: &'a async_nats::Client,
    js: &'a jetstream::Context,
    stream: &'a StreamSettings,
    pg: &'a PgSettings,
    consumer: &'a str,
    shutdown: &'a CancellationToken,
}

impl Session<'_> {
    async fn run(&self, progress: &mut Progress, pause: &mut Duration) -> Result<(), LedgerError> {
        let mut db = connect(&self.pg.url).await?;
        migrate(&mut db).await?;
        let insert = db.prepare(INSERT).await?;
        let stream = ensure_stream(self.js, self.stream).await?;
        let mut consumer: consumer::PullConsumer = stream
            .get_or_create_consumer(
                self.consumer,
                consumer::pull::Config {
                    durable_name: Some(self.consumer.to_owned()),
                    description: Some("switchyard usage writer (PostgreSQL)".to_owned()),
                    deliver_policy: consumer::DeliverPolicy::All,
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: self.pg.ack_wait,
                    max_ack_pending: self.pg.max_ack_pending,
                    filter_subject: self.stream.wildcard(),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| LedgerError::nats("creating the writer consumer", e))?;
        let info = consumer
            .info()
            .await
            .map_err(|e| LedgerError::nats("reading the writer consumer", e))?;
        tracing::info!(
            consumer = self.consumer,
            pending = info.num_pending,
            unacked = info.num_ack_pending,
            "usage writer: consuming"
        );
        loop {
            let messages = tokio::select! {
                () = self.shutdown.cancelled() => return Ok(()),
                batch = self.fetch(&consumer) => batch?,
            };
            if messages.is_empty() {
                progress.maybe_log();
                continue;
            }
            self.store(&db, &insert, messages, progress).await?;
            *pause = Duration::from_millis(200);
            progress.maybe_log();
        }
    }

    async fn fetch(
        &self,
        consumer: &consumer::PullConsumer,
    ) -> Result<Vec<jetstream::Message>, LedgerError> {
        let mut batch = consumer
            .batch()
            .max_messages(self.pg.batch_size.max(1))
            .expires(self.pg.batch_wait)
            .messages()
            .await
            .map_err(|e| LedgerError::nats("fetching usage", e))?;
        let mut out = Vec::new();
        while let Some(m) = batch.next().await {
            // Messages already received stay unacked on error and come
            // back after ack_wait.
            out.push(m.map_err(|e| LedgerError::nats("fetching usage", e))?);
        }
        Ok(out)
    }

    async fn store(
        &self,
        db: &Client,
        insert: &Statement,
        messages: Vec<jetstream::Message>,
        progress: &mut Progress,
    ) -> Result<(), LedgerError> {
        let mut records = Vec::with_capacity(messages.len());
        let mut keep = Vec::with_capacity(messages.len());
        for m in messages {
            match serde_json::from_slice::<UsageRecord>(&m.payload) {
                Ok(mut r) => {
                    // Routers bound payloads already; bounded again here,
                    // since one PostgreSQL refuses (a NUL) would cost the
                    // whole record.
                    r.payload = r.payload.take().map(bounded_payload);
                    records.push(r);
                    keep.push(m);
                }
                Err(e) => {
                    tracing::warn!(subject = %m.subject, error = %e, "not a usage record; terminated");
                    progress.rejected += 1;
                    ack(&m, AckKind::Term).await;
                }
            }
        }
        if records.is_empty() {
            return self.flush_acks().await;
        }
        // One statement is one transaction: the whole batch or nothing.
        let inserted = match insert_records(db, insert, &records).await {
            Ok(n) => n,
            Err(e) if is_data_error(&e) => {
                // One record PostgreSQL refuses must not block the rest:
                // store one by one, terminate the refused ones.
                let mut n = 0;
                let mut stored = Vec::with_capacity(keep.len());
                for (r, m) in records.iter().zip(keep) {
                    match insert_records(db, insert, std::slice::from_ref(r)).await {
                        Ok(k) => {
                            n += k;
                            stored.push(m);
                        }
                        Err(e) if is_data_error(&e) => {
                            tracing::error!(request_id = %r.request_id, error = %e, "usage record refused by PostgreSQL; terminated");
                            progress.rejected += 1;
                            ack(&m, AckKind::Term).await;
                        }
                        Err(e) => {
                            for m in &stored {
                                ack(m, AckKind::Ack).await;
                            }
                            return Err(e.into());
                        }
                    }
                }
                keep = stored;
                n
            }
            Err(e) => {
                // Back at once rather than after ack_wait.
                for m in &keep {
                    ack(m, AckKind::Nak(None)).await;
                }
                let _ = self.nats.flush().await;
                return Err(e.into());
            }
        };
        progress.batches += 1;
        progress.inserted += inserted;
        progress.duplicates += (keep.len() as u64).saturating_sub(inserted);
        tracing::debug!(
            records = keep.len(),
            inserted,
            "usage writer: batch committed"
        );
        if let Some(hook) = &self.pg.after_commit {
            (hook.0)(progress.batches).await;
        }
        for m in &keep {
            ack(m, AckKind::Ack).await;
        }
        self.flush_acks().await
    }

    async fn flush_acks(&self) -> Result<(), LedgerError> {
        self.nats
            .flush()
            .await
            .map_err(|e| LedgerError::nats("sending acks", e))
    }
}

/// Acks are fire-and-forget: one that is lost means a redelivery, which
/// the insert absorbs.
async fn ack(m: &jetstream::Message, kind: AckKind) {
    if let Err(e) = m.ack_with(kind).await {
        tracing::debug!(subject = %m.subject, error = %e, "usage ack not sent");
    }
}

/// Errors about the data (class 22: data exception, class 23: integrity
/// constraint), as opposed to the connection or the server.
fn is_data_error(e: &tokio_postgres::Error) -> bool {
    e.code()
        .is_some_and(|c| c.code().starts_with("22") || c.code().starts_with("23"))
}

async fn insert_records(
    db: &Client,
    insert: &Statement,
    records: &[UsageRecord],
) -> Result<u64, tokio_postgres::Error> {
    let ids: Vec<&str> = records.iter().map(|r| r.request_id.as_str()).collect();
    let times: Vec<PgTime> = records
        .iter()
        .map(|r| PgTime(r.time.as_microsecond()))
        .collect();
    let text = |f: fn(&UsageRecord) -> &str| -> Vec<&str> { records.iter().map(f).collect() };
    let opt = |f: fn(&UsageRecord) -> &Option<String>| -> Vec<Option<&str>> {
        records.iter().map(|r| f(r).as_deref()).collect()
    };
    let num = |f: fn(&UsageRecord) -> i64| -> Vec<i64> { records.iter().map(f).collect() };
    let flag = |f: fn(&UsageRecord) -> bool| -> Vec<bool> { records.iter().map(f).collect() };
    let routers = text(|r| &r.router);
    let operations = text(|r| &r.operation);
    let keys = opt(|r| &r.key);
    let teams = opt(|r| &r.team);
    let users = opt(|r| &r.user);
    let models = text(|r| &r.model);
    let providers = opt(|r| &r.provider);
    let served = opt(|r| &r.served_model);
    let input = num(|r| to_i64(r.input_tokens));
    let cached = num(|r| to_i64(r.cached_input_tokens));
    let cache_write = num(|r| to_i64(r.cache_write_tokens));
    let output = num(|r| to_i64(r.output_tokens));
    let reasoning = num(|r| to_i64(r.reasoning_tokens));
    let images = num(|r| i64::from(r.images));
    let cost = num(|r| r.cost.pico());
    let saved = num(|r| r.saved.pico());
    let estimated = flag(|r| r.estimated);
    let cache_hit = flag(|r| r.cache_hit);
    let latency = num(|r| to_i64(r.latency_ms));
    let outcomes = text(|r| &r.outcome);
    let addrs = opt(|r| &r.client_addr);
    let credentials = opt(|r| &r.credential);
    let guardrails: Vec<String> = records
        .iter()
        .map(|r| guardrails_to_json(&r.guardrails))
        .collect();
    let payloads: Vec<Option<String>> = records
        .iter()
        .map(|r| r.payload.as_ref().map(ToString::to_string))
        .collect();
    let row = db
        .query_one(
            insert,
            &[
                &ids,
                &times,
                &routers,
                &operations,
                &keys,
                &teams,
                &users,
                &models,
                &providers,
                &served,
                &input,
                &cached,
                &cache_write,
                &output,
                &reasoning,
                &images,
                &cost,
                &saved,
                &estimated,
                &cache_hit,
                &latency,
                &outcomes,
                &addrs,
                &credentials,
                &guardrails,
                &payloads,
            ],
        )
        .await?;
    Ok(to_u64(row.try_get(0)?))
}

/// Queries usage in PostgreSQL (what the writer loaded). Reconnects on the
/// next query when the connection was lost.
pub struct PostgresStore {
    url: String,
    client: tokio::sync::Mutex<Option<Arc<Client>>>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore").finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects (no TLS). Does not migrate: the writer owns the schema.
    pub async fn connect(url: &str) -> Result<PostgresStore, LedgerError> {
        let client = connect(url).await?;
        Ok(PostgresStore {
            url: url.to_owned(),
            client: tokio::sync::Mutex::new(Some(Arc::new(client))),
        })
    }

    /// Connects on the first query instead (and again after a lost
    /// connection): a router must start, and serve traffic, while its
    /// reporting database is down.
    pub fn lazy(url: &str) -> PostgresStore {
        PostgresStore {
            url: url.to_owned(),
            client: tokio::sync::Mutex::new(None),
        }
    }

    /// Applies pending migrations (what [`run_writer`] does at start) and
    /// returns the versions applied now; empty when the schema was current.
    pub async fn migrate(&self) -> Result<Vec<u32>, LedgerError> {
        let mut client = connect(&self.url).await?;
        migrate(&mut client).await
    }

    async fn client(&self) -> Result<Arc<Client>, LedgerError> {
        let mut slot = self.client.lock().await;
        if let Some(c) = slot.as_ref()
            && !c.is_closed()
        {
            return Ok(c.clone());
        }
        let c = Arc::new(connect(&self.url).await?);
        *slot = Some(c.clone());
        Ok(c)
    }

    async fn rows(&self, sql: &Sql) -> Result<Vec<Row>, LedgerError> {
        let client = self.client().await?;
        let params: Vec<Box<dyn ToSql + Sync + Send>> = sql
            .params
            .iter()
            .map(|p| -> Box<dyn ToSql + Sync + Send> {
                match p {
                    Param::Text(s) => Box::new(s.clone()),
                    Param::Time(us) => Box::new(PgTime(*us)),
                    Param::TextArray(v) => Box::new(v.clone()),
                    Param::TimeArray(v) => {
                        Box::new(v.iter().map(|us| PgTime(*us)).collect::<Vec<_>>())
                    }
                }
            })
            .collect();
        let refs: Vec<&(dyn ToSql + Sync)> = params
            .iter()
            .map(|b| b.as_ref() as &(dyn ToSql + Sync))
            .collect();
        Ok(client.query(&sql.text, &refs).await?)
    }
}

fn record_from_row(r: &Row) -> Result<UsageRecord, LedgerError> {
    let time: PgTime = r.try_get(1)?;
    Ok(UsageRecord {
        request_id: r.try_get(0)?,
        time: ts_from_us(time.0)?,
        router: r.try_get(2)?,
        operation: r.try_get(3)?,
        key: r.try_get(4)?,
        team: r.try_get(5)?,
        user: r.try_get(6)?,
        model: r.try_get(7)?,
        provider: r.try_get(8)?,
        served_model: r.try_get(9)?,
        input_tokens: to_u64(r.try_get(10)?),
        cached_input_tokens: to_u64(r.try_get(11)?),
        cache_write_tokens: to_u64(r.try_get(12)?),
        output_tokens: to_u64(r.try_get(13)?),
        reasoning_tokens: to_u64(r.try_get(14)?),
        images: u32::try_from(r.try_get::<_, i64>(15)?).unwrap_or(u32::MAX),
        cost: Usd::from_pico(r.try_get(16)?),
        saved: Usd::from_pico(r.try_get(17)?),
        estimated: r.try_get(18)?,
        cache_hit: r.try_get(19)?,
        latency_ms: to_u64(r.try_get(20)?),
        outcome: r.try_get(21)?,
        client_addr: r.try_get(22)?,
        credential: r.try_get(23)?,
        guardrails: guardrails_from_json(r.try_get(24)?)?,
        payload: r
            .try_get::<_, Option<&str>>(25)?
            .map(payload_from_json)
            .transpose()?,
    })
}

#[async_trait]
impl UsageStore for PostgresStore {
    async fn query(&self, q: &UsageQuery) -> Result<Vec<UsageRow>, LedgerError> {
        let dims = q.dimensions();
        let days = if dims.contains(&Dimension::Day) {
            let range = self.rows(&sql::time_range(Dialect::Postgres, q)?).await?;
            let bounds = match range.first() {
                Some(r) => (
                    r.try_get::<_, Option<PgTime>>(0)?,
                    r.try_get::<_, Option<PgTime>>(1)?,
                ),
                None => (None, None),
            };
            match bounds {
                (Some(a), Some(b)) => Some(days_between(a.0, b.0, &q.time_zone)?),
                _ => return Ok(Vec::new()),
            }
        } else {
            None
        };
        let sql = sql::aggregate(Dialect::Postgres, q, &dims, days.as_deref())?;
        let n = dims.len();
        let mut raw = Vec::new();
        for r in self.rows(&sql).await? {
            let mut group = Vec::with_capacity(n);
            for i in 0..n {
                group.push(r.try_get::<_, Option<String>>(i)?);
            }
            let mut m: Metrics = [0; 10];
            for (j, v) in m.iter_mut().enumerate() {
                *v = r.try_get(n + j)?;
            }
            raw.push((group, m));
        }
        Ok(rows_from(&dims, raw))
    }

    async fn records(&self, q: &UsageQuery, limit: usize) -> Result<Vec<UsageRecord>, LedgerError> {
        let sql = sql::records(Dialect::Postgres, q, limit)?;
        self.rows(&sql).await?.iter().map(record_from_row).collect()
    }

    async fn spend_since(&self, since: Timestamp) -> Result<Vec<UsageRecord>, LedgerError> {
        let sql = sql::spend_since(Dialect::Postgres, since.as_microsecond());
        let mut buckets = Vec::new();
        for r in self.rows(&sql).await? {
            let bucket: PgTime = r.try_get(0)?;
            let mut ids: [Option<String>; 6] = Default::default();
            for (i, v) in ids.iter_mut().enumerate() {
                *v = r.try_get(1 + i)?;
            }
            let mut sums = [0i64; 8];
            for (i, v) in sums.iter_mut().enumerate() {
                *v = r.try_get(7 + i)?;
            }
            buckets.push(SpendBucket {
                bucket_us: bucket.0,
                ids,
                sums,
                estimated: r.try_get::<_, i64>(15)? != 0,
            });
        }
        spend_records(since, buckets)
    }
}
