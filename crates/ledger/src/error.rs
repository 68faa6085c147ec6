//! The one error type of the ledger.

/// Everything that can go wrong storing or querying usage.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),

    #[error("PostgreSQL: {}", pg_detail(.0))]
    Postgres(#[from] tokio_postgres::Error),

    #[error("PostgreSQL migration {version} ({name}) failed: {}", pg_detail(.source))]
    Migration {
        version: u32,
        name: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },

    #[error("NATS ({context}): {source}")]
    Nats {
        context: &'static str,
        #[source]
        source: async_nats::Error,
    },

    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),

    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),

    /// A query the store cannot answer as asked (unknown dimension, a day
    /// filter that is not a date, ...).
    #[error("invalid usage query: {0}")]
    InvalidQuery(String),

    /// Records accepted by `record` that will never be stored: `dropped`
    /// because the queue was full, `failed` because every write attempt
    /// failed. Reported once by the `flush` after the loss.
    #[error("{dropped} usage records dropped (queue full) and {failed} lost (write failed)")]
    Lost { dropped: u64, failed: u64 },

    /// The background writer has stopped (it panicked or the sink is
    /// shutting down).
    #[error("the usage writer has stopped")]
    Closed,

    #[error("a stored value is out of range: {0}")]
    Corrupt(String),

    /// Settings that cannot work (an invalid consumer name, ...).
    #[error("invalid ledger settings: {0}")]
    Config(String),
}

/// tokio-postgres says only "db error" or "error connecting to server";
/// the server's message and the I/O cause are in the sources.
fn pg_detail(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} ({})", db.message(), db.code().code());
    }
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

impl LedgerError {
    pub(crate) fn nats(context: &'static str, source: impl Into<async_nats::Error>) -> LedgerError {
        LedgerError::Nats {
            context,
            source: source.into(),
        }
    }
}
