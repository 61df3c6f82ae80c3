//! Errors of connecting to a PostgreSQL store and of its database calls.

use es_core::StoreError;

/// Why [`PgStore::connect`](crate::PgStore::connect) failed.
///
/// ```
/// use es_store_pg::{ConnectError, PgStore, PgStoreOptions};
/// let options = PgStoreOptions { schema: "no spaces allowed".into(), ..PgStoreOptions::default() };
/// let err = PgStore::connect_with("postgres://localhost/es", options).unwrap_err();
/// assert!(matches!(err, ConnectError::InvalidOptions(_)));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The connection string could not be parsed.
    #[error("invalid connection string: {0}")]
    InvalidUrl(#[source] postgres::Error),
    /// The options are unusable; nothing was done.
    #[error("invalid options: {0}")]
    InvalidOptions(String),
    /// The server could not be reached or refused the connection.
    #[error("cannot connect to the database: {}", describe(.0))]
    Connect(#[source] postgres::Error),
    /// The database's tables were written by a newer version of this crate: they are left
    /// as they are.
    #[error(
        "the tables in schema `{schema}` are at version {found}; this build knows versions up to {supported}: upgrade es-store-pg"
    )]
    SchemaTooNew {
        /// The PostgreSQL schema holding the tables.
        schema: String,
        /// The version recorded in the database.
        found: i32,
        /// The newest version this build knows.
        supported: i32,
    },
    /// A read-only store found tables older than this build: connect to the primary with
    /// this build once to upgrade them.
    #[error(
        "the tables in schema `{schema}` are at version {found}; this build needs version {supported}: connect to the primary once to upgrade them"
    )]
    SchemaOutdated {
        /// The PostgreSQL schema holding the tables.
        schema: String,
        /// The version recorded in the database.
        found: i32,
        /// The version this build needs.
        supported: i32,
    },
    /// A read-only store was asked for tables that do not exist (nothing is created
    /// read-only: connect once to the primary first).
    #[error(
        "no event store tables in schema `{schema}`, and a read-only store creates none: connect to the primary once to create them"
    )]
    SchemaMissing {
        /// The PostgreSQL schema that was looked in.
        schema: String,
    },
    /// The database stores text in an encoding that cannot hold every event.
    #[error(
        "the database encoding is {encoding}; the store needs UTF8 (create the database with ENCODING 'UTF8')"
    )]
    UnsupportedEncoding {
        /// The server's encoding.
        encoding: String,
    },
    /// A statement of the set-up or upgrade failed; the transaction was rolled back.
    #[error("{during}: {}", describe(source))]
    Database {
        /// What was being done.
        during: &'static str,
        /// The database's error.
        #[source]
        source: postgres::Error,
    },
    /// The read model's own set-up (`PgReadModel::set_up`) failed; its transaction was
    /// rolled back.
    #[error("setting up the read model of projection `{name}`: {source}")]
    ReadModelSetUp {
        /// The projection.
        name: String,
        /// What the read model reported (a failed statement says what the server said).
        #[source]
        source: es_core::projection::BoxError,
    },
}

/// A database error of a store operation, carried in [`StoreError::Backend`].
///
/// ```
/// use es_store_pg::PgError;
/// let e = PgError::Pool("timed out".into());
/// assert!(e.to_string().contains("timed out"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PgError {
    /// A statement failed.
    #[error("{during}: {}", describe(source))]
    Database {
        /// What was being done.
        during: &'static str,
        /// The database's error.
        #[source]
        source: postgres::Error,
    },
    /// No connection could be had from the pool in time.
    #[error("no database connection available: {0}")]
    Pool(String),
    /// A value does not fit the column that stores it.
    #[error("{what} {value} is out of range: {reason}")]
    OutOfRange {
        /// What the value is.
        what: &'static str,
        /// The value.
        value: String,
        /// The range allowed.
        reason: &'static str,
    },
    /// The outcome of an append is unknown: a connection was lost after its commit was
    /// sent, and no later attempt could learn whether it was stored. Resend the same
    /// append (same event ids) to learn it: an idempotent retry returns the original
    /// result if it was committed.
    #[error(
        "the connection was lost after the commit of an append to `{stream_id}` was sent, and its outcome could not be learnt ({reason}): resend the same events to learn it"
    )]
    CommitOutcomeUnknown {
        /// Stream id of the append.
        stream_id: String,
        /// What the last attempt to learn the outcome met.
        reason: String,
        /// The database's error of that attempt, when it was one.
        #[source]
        source: Option<postgres::Error>,
    },
}

impl From<PgError> for StoreError {
    fn from(e: PgError) -> Self {
        StoreError::Backend(Box::new(e))
    }
}

/// Whether an error means the connection is gone (so that a statement that was never
/// executed may be retried on another one).
pub(crate) fn is_connection_error(e: &postgres::Error) -> bool {
    use postgres::error::SqlState;
    if e.is_closed() {
        return true;
    }
    match e.code() {
        Some(code) => {
            *code == SqlState::ADMIN_SHUTDOWN
                || *code == SqlState::CRASH_SHUTDOWN
                || *code == SqlState::CANNOT_CONNECT_NOW
                || code.code().starts_with("08")
                // the server ended the session: idle in a transaction (the store's
                // `idle_transaction_timeout`, a process frozen in its commit), or idle
                || code.code() == "25P03"
                || code.code() == "57P05"
        }
        None => std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>()),
    }
}

/// Whether an error is a unique violation of the event id index (another process stored
/// the same id while this append waited for it).
pub(crate) fn is_event_id_violation(e: &postgres::Error) -> bool {
    e.as_db_error().is_some_and(|db| {
        *db.code() == postgres::error::SqlState::UNIQUE_VIOLATION
            && db.constraint().is_some_and(|c| c.ends_with("event_id_key"))
    })
}

pub(crate) fn db(during: &'static str) -> impl FnOnce(postgres::Error) -> StoreError {
    move |source| PgError::Database { during, source }.into()
}

/// The text of a database error: the server's message and code, or the client's error
/// with its cause (`postgres::Error` alone says only "db error").
pub(crate) fn describe(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut text = format!("{} ({})", db.message(), db.code().code());
        if let Some(detail) = db.detail() {
            text.push_str(": ");
            text.push_str(detail);
        }
        return text;
    }
    match std::error::Error::source(e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}
