//! Usage records: every request the gateway serves produces exactly one,
//! handed to a [`UsageSink`] off the request path and stored exactly once.
//!
//! - Embedded (`switchyard serve`): [`LocalLedger`], a SQLite file written
//!   in batches by a background thread; it is also the [`UsageStore`].
//! - Scaled out: routers publish to a NATS JetStream stream
//!   ([`JetStreamSink`], de-duplicated by request id); [`run_writer`] loads
//!   the stream into PostgreSQL and resumes where it stopped;
//!   [`PostgresStore`] answers queries. [`subscribe`] and [`replay_since`]
//!   keep budget counters of every router in sync.
//!
//! The request id is the idempotency key everywhere: a record stored,
//! published or loaded twice counts once.
//!
//! The records are also the audit trail (who, from where, what the
//! guardrails did): append-only in every store, both databases refusing
//! UPDATE, and exported page by page with [`RecordCursor`]. Payloads
//! captured for keys that ask for it travel on the record and are stored
//! in a table of their own, read back only by the export.

mod csv;
mod error;
mod jetstream;
mod local;
mod postgres;
mod query;
mod record;
mod sql;

pub use crate::csv::{records_to_csv, to_csv};
pub use crate::error::LedgerError;
pub use crate::jetstream::{JetStreamSink, StreamSettings, replay_since, subscribe};
pub use crate::local::{LocalLedger, LocalOptions};
#[doc(hidden)]
pub use crate::postgres::WriterHook;
pub use crate::postgres::{PgSettings, PostgresStore, run_writer};
pub use crate::query::{Dimension, RecordCursor, UsageQuery, UsageRow, UsageStore, parse_time};
pub use crate::record::{
    MAX_PAYLOAD_BYTES, MemorySink, OUTCOME_CLIENT_CLOSED, OUTCOME_OK, SinkStats, UsageRecord,
    UsageSink, bounded_payload,
};
/// The time type of records and queries, for callers without their own
/// `jiff` dependency (the CLI).
pub use jiff::Timestamp;
