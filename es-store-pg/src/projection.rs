//! Read models in PostgreSQL: exactly once ([`PgProjection`]: the rows and the checkpoint
//! change in one transaction, the checkpoint advanced by compare-and-set), or at least
//! once with checkpoints in a table ([`PgCheckpoints`]).
//!
//! The read model's database need not be the store's: a projection can read events from a
//! replica and write its rows to the primary, or to another database.

use crate::error::{ConnectError, describe, is_connection_error};
use crate::schema::{check_schema_name, checkpoints_table, quoted};
use es_core::RecordedEvent;
use es_core::projection::{BoxError, CheckpointStore, EventFailure, TransactionalProjection};
use postgres::{Client, NoTls, Transaction};
use std::sync::Mutex;

/// A read model whose rows live in PostgreSQL, written through the transaction that also
/// moves its checkpoint.
///
/// ```
/// use es_core::RecordedEvent;
/// use es_core::projection::BoxError;
/// use es_store_pg::projection::PgReadModel;
///
/// /// Events per stream, in table `event_counts`.
/// struct EventCounts;
///
/// impl PgReadModel for EventCounts {
///     fn apply(&mut self, tx: &mut es_store_pg::postgres::Transaction<'_>, e: &RecordedEvent) -> Result<(), BoxError> {
///         tx.execute(
///             "INSERT INTO event_counts (stream_id, events) VALUES ($1, 1)
///              ON CONFLICT (stream_id) DO UPDATE SET events = event_counts.events + 1",
///             &[&e.stream_id],
///         )?;
///         Ok(())
///     }
///     fn reset(&mut self, tx: &mut es_store_pg::postgres::Transaction<'_>) -> Result<(), BoxError> {
///         tx.execute("DELETE FROM event_counts", &[])?;
///         Ok(())
///     }
/// }
/// ```
pub trait PgReadModel {
    /// Takes one event into account, writing through `tx` (committed with the checkpoint,
    /// or rolled back with it).
    fn apply(&mut self, tx: &mut Transaction<'_>, event: &RecordedEvent) -> Result<(), BoxError>;
    /// Deletes the read model's rows, before a rebuild from the first event.
    fn reset(&mut self, tx: &mut Transaction<'_>) -> Result<(), BoxError>;
}

/// Why a batch was not applied.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProjectionDbError {
    /// Another instance of the same projection moved the checkpoint first: this batch was
    /// applied there, and nothing was written here. Run again: the runner reads the new
    /// checkpoint.
    #[error(
        "the checkpoint of projection `{name}` is at {found}, not {expected}: another instance applied this batch"
    )]
    CheckpointMoved {
        /// The projection.
        name: String,
        /// The checkpoint this instance started from.
        expected: u64,
        /// The checkpoint found.
        found: u64,
    },
    /// A statement failed; the transaction was rolled back.
    #[error("{during}: {}", describe(source))]
    Database {
        /// What was being done.
        during: &'static str,
        /// The database's error.
        #[source]
        source: postgres::Error,
    },
}

fn db(during: &'static str) -> impl FnOnce(postgres::Error) -> BoxError {
    move |source| Box::new(ProjectionDbError::Database { during, source })
}

/// A connection to the read model's database, opened again when it was lost (a server
/// restart, a terminated backend).
struct Connection {
    config: postgres::Config,
    client: Client,
    /// Set after a connection error: the next call opens a new connection.
    lost: bool,
}

impl Connection {
    fn open(url: &str) -> Result<Connection, ConnectError> {
        let config: postgres::Config = url.parse().map_err(ConnectError::InvalidUrl)?;
        let client = config.connect(NoTls).map_err(ConnectError::Connect)?;
        Ok(Connection {
            config,
            client,
            lost: false,
        })
    }

    /// The client, on a new connection when the last one was lost.
    fn client(&mut self) -> Result<&mut Client, postgres::Error> {
        if self.lost || self.client.is_closed() {
            self.client = self.config.connect(NoTls)?;
            self.lost = false;
        }
        Ok(&mut self.client)
    }

    /// Notes a failure of the connection, so that the next call opens a new one.
    fn note(&mut self, e: &postgres::Error) {
        if is_connection_error(e) {
            self.lost = true;
        }
    }

    /// Runs `f`, and once more on a new connection when the connection was lost: for
    /// statements that have the same effect when run twice.
    fn run<T>(
        &mut self,
        mut f: impl FnMut(&mut Client) -> Result<T, postgres::Error>,
    ) -> Result<T, postgres::Error> {
        let mut again = true;
        loop {
            let result = self.client().and_then(&mut f);
            match result {
                Err(e) if again && is_connection_error(&e) => {
                    self.lost = true;
                    again = false;
                }
                Err(e) => {
                    self.note(&e);
                    return Err(e);
                }
                ok => return ok,
            }
        }
    }

    /// Runs `f` in a transaction, started on a new connection when the connection was
    /// lost (nothing was done on the lost one).
    fn with_transaction<T>(
        &mut self,
        f: impl FnOnce(Transaction<'_>) -> Result<T, BoxError>,
    ) -> Result<T, BoxError> {
        let begin = db("starting a transaction");
        let lost = match self.client().map_err(db("connecting again"))?.transaction() {
            Ok(tx) => return f(tx),
            Err(e) => e,
        };
        if !is_connection_error(&lost) {
            return Err(begin(lost));
        }
        self.lost = true;
        let error = match self.client().map_err(db("connecting again"))?.transaction() {
            Ok(tx) => return f(tx),
            Err(e) => e,
        };
        self.note(&error);
        Err(begin(error))
    }
}

/// Creates `schema.es_checkpoints` if it is missing.
fn ensure_checkpoints(client: &mut Client, schema: &str) -> Result<(), ConnectError> {
    let q = quoted(schema);
    let mut tx = client
        .transaction()
        .map_err(|source| ConnectError::Database {
            during: "starting the set-up of the checkpoints table",
            source,
        })?;
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext($1))",
        &[&format!("es-store-pg set-up {schema}")],
    )
    .and_then(|_| {
        tx.batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {q}; {}",
            checkpoints_table(&q)
        ))
    })
    .and_then(|()| tx.commit())
    .map_err(|source| ConnectError::Database {
        during: "creating the checkpoints table",
        source,
    })
}

/// An exactly-once projection into PostgreSQL: each batch's rows and the checkpoint are
/// written in one transaction, and the checkpoint moves only from the value this instance
/// read (compare-and-set), so two instances of the same projection never both apply a
/// batch: the second finds the checkpoint moved, writes nothing, and reports
/// [`ProjectionDbError::CheckpointMoved`].
///
/// Drive it with es-core's `ProjectionRunner`, like any [`TransactionalProjection`].
///
/// ```no_run
/// # use es_core::RecordedEvent;
/// # use es_core::projection::BoxError;
/// # struct EventCounts;
/// # impl es_store_pg::projection::PgReadModel for EventCounts {
/// #     fn apply(&mut self, _: &mut es_store_pg::postgres::Transaction<'_>, _: &RecordedEvent) -> Result<(), BoxError> { Ok(()) }
/// #     fn reset(&mut self, _: &mut es_store_pg::postgres::Transaction<'_>) -> Result<(), BoxError> { Ok(()) }
/// # }
/// use es_core::ProjectionRunner;
/// use es_store_pg::{PgStore, PgStoreOptions};
/// use es_store_pg::projection::PgProjection;
///
/// let store = PgStore::connect_with(
///     "postgres://es@replica.internal/es",
///     PgStoreOptions { read_only: true, ..PgStoreOptions::default() },
/// )?;
/// let counts = PgProjection::connect("postgres://es@primary.internal/es", "public", "event-counts", EventCounts)?;
/// let mut runner = ProjectionRunner::new(&store, counts);
/// runner.run_to_head()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct PgProjection<M> {
    conn: Connection,
    name: String,
    read_sql: String,
    advance_sql: String,
    reset_sql: String,
    /// The checkpoint this instance last read or wrote: where its next batch starts.
    known: Option<u64>,
    model: M,
}

impl<M> std::fmt::Debug for PgProjection<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgProjection")
            .field("name", &self.name)
            .field("checkpoint", &self.known)
            .finish_non_exhaustive()
    }
}

/// How a batch's transaction ended.
enum Batch {
    Applied,
    /// The checkpoint was not where this instance left it; nothing was written.
    Moved,
    /// The read model refused an event; nothing was written.
    Refused(BoxError),
}

impl<M: PgReadModel> PgProjection<M> {
    /// Connects to the read model's database; its checkpoint is the row `name` of
    /// `schema.es_checkpoints` (created if missing). A lost connection (a server restart,
    /// a terminated backend) is opened again by the next call.
    pub fn connect(url: &str, schema: &str, name: &str, model: M) -> Result<Self, ConnectError> {
        check_schema_name(schema)?;
        let mut conn = Connection::open(url)?;
        ensure_checkpoints(&mut conn.client, schema)?;
        let q = quoted(schema);
        Ok(PgProjection {
            conn,
            name: name.to_owned(),
            read_sql: format!(
                "WITH created AS (
                    INSERT INTO {q}.es_checkpoints (name, position) VALUES ($1, 0)
                    ON CONFLICT (name) DO NOTHING RETURNING position)
                 SELECT position FROM created UNION ALL
                 SELECT position FROM {q}.es_checkpoints WHERE name = $1"
            ),
            advance_sql: format!(
                "UPDATE {q}.es_checkpoints SET position = $3 WHERE name = $1 AND position = $2"
            ),
            reset_sql: format!("UPDATE {q}.es_checkpoints SET position = 0 WHERE name = $1"),
            known: None,
            model,
        })
    }

    /// The read model.
    pub fn model(&self) -> &M {
        &self.model
    }

    /// The read model, to change its settings.
    pub fn model_mut(&mut self) -> &mut M {
        &mut self.model
    }

    /// The connection, to query the read model (a new one when the last was lost and a
    /// new one can be opened).
    pub fn client(&mut self) -> &mut Client {
        // when no new connection can be opened, the old one reports the error
        let _ = self.conn.client();
        &mut self.conn.client
    }

    fn read_checkpoint(&mut self) -> Result<u64, BoxError> {
        let (sql, name) = (&self.read_sql, &self.name);
        let rows = self
            .conn
            .run(|client| client.query(sql, &[name]))
            .map_err(db("reading the checkpoint"))?;
        match rows.first() {
            None => Ok(0),
            Some(row) => checkpoint_position(row, name),
        }
    }
}

/// The position of a checkpoint row, which is never negative.
fn checkpoint_position(row: &postgres::Row, name: &str) -> Result<u64, BoxError> {
    let position: i64 = row.try_get(0).map_err(db("reading the checkpoint"))?;
    u64::try_from(position).map_err(|_| {
        format!("the checkpoint row `{name}` holds position {position}, which is negative").into()
    })
}

impl<M: PgReadModel> TransactionalProjection for PgProjection<M> {
    fn checkpoint(&mut self) -> Result<u64, BoxError> {
        let position = self.read_checkpoint()?;
        self.known = Some(position);
        Ok(position)
    }

    fn apply_batch(&mut self, events: &[RecordedEvent], checkpoint: u64) -> Result<(), BoxError> {
        let expected = match self.known {
            Some(p) => p,
            None => self.checkpoint()?,
        };
        let out_of_range = |p: u64| -> BoxError { format!("checkpoint {p} is past BIGINT").into() };
        let (from, to) = (
            i64::try_from(expected).map_err(|_| out_of_range(expected))?,
            i64::try_from(checkpoint).map_err(|_| out_of_range(checkpoint))?,
        );
        let (name, advance_sql, model) = (&self.name, &self.advance_sql, &mut self.model);
        let batch = self.conn.with_transaction(|mut tx| {
            // the row lock taken here makes a second instance wait, then find the row moved
            let moved = tx
                .execute(advance_sql, &[name, &from, &to])
                .map_err(db("advancing the checkpoint"))?;
            if moved == 0 {
                return Ok(Batch::Moved);
            }
            for event in events {
                if let Err(source) = model.apply(&mut tx, event) {
                    return Ok(Batch::Refused(Box::new(EventFailure::new(event, source))));
                }
            }
            tx.commit().map_err(db("committing the batch"))?;
            Ok(Batch::Applied)
        });
        match batch {
            Ok(Batch::Applied) => {
                self.known = Some(checkpoint);
                Ok(())
            }
            Ok(Batch::Moved) => {
                self.known = None;
                let found = self.read_checkpoint()?;
                Err(Box::new(ProjectionDbError::CheckpointMoved {
                    name: self.name.clone(),
                    expected,
                    found,
                }))
            }
            Ok(Batch::Refused(e)) | Err(e) => {
                // the checkpoint is read again before the next batch (a commit whose
                // connection was lost may have moved it)
                self.known = None;
                Err(e)
            }
        }
    }

    fn reset(&mut self) -> Result<(), BoxError> {
        self.read_checkpoint()?;
        let (name, reset_sql, model) = (&self.name, &self.reset_sql, &mut self.model);
        let reset = self.conn.with_transaction(|mut tx| {
            model.reset(&mut tx)?;
            tx.execute(reset_sql, &[name])
                .map_err(db("resetting the checkpoint"))?;
            tx.commit().map_err(db("committing the reset"))?;
            Ok(())
        });
        if let Err(e) = reset {
            self.known = None;
            return Err(e);
        }
        self.known = Some(0);
        Ok(())
    }
}

/// Checkpoints of at-least-once projections, in `schema.es_checkpoints`.
///
/// ```no_run
/// use es_core::projection::CheckpointStore;
/// use es_store_pg::projection::PgCheckpoints;
/// let checkpoints = PgCheckpoints::connect("postgres://es@localhost/es", "public")?;
/// checkpoints.save("mailer", 42)?;
/// assert_eq!(checkpoints.load("mailer")?, 42);
/// # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
/// ```
pub struct PgCheckpoints {
    conn: Mutex<Connection>,
    load_sql: String,
    save_sql: String,
}

impl std::fmt::Debug for PgCheckpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgCheckpoints").finish_non_exhaustive()
    }
}

impl PgCheckpoints {
    /// Connects; the table is created if missing. A lost connection (a server restart, a
    /// terminated backend) is opened again by the next call.
    pub fn connect(url: &str, schema: &str) -> Result<Self, ConnectError> {
        check_schema_name(schema)?;
        let mut conn = Connection::open(url)?;
        ensure_checkpoints(&mut conn.client, schema)?;
        let q = quoted(schema);
        Ok(PgCheckpoints {
            conn: Mutex::new(conn),
            load_sql: format!("SELECT position FROM {q}.es_checkpoints WHERE name = $1"),
            save_sql: format!(
                "INSERT INTO {q}.es_checkpoints (name, position) VALUES ($1, $2)
                 ON CONFLICT (name) DO UPDATE SET position = excluded.position"
            ),
        })
    }
}

impl CheckpointStore for PgCheckpoints {
    fn load(&self, name: &str) -> Result<u64, BoxError> {
        let mut conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let row = conn
            .run(|client| client.query_opt(&self.load_sql, &[&name]))
            .map_err(db("reading a checkpoint"))?;
        match row {
            None => Ok(0),
            Some(row) => checkpoint_position(&row, name),
        }
    }

    fn save(&self, name: &str, position: u64) -> Result<(), BoxError> {
        let position =
            i64::try_from(position).map_err(|_| format!("checkpoint {position} is past BIGINT"))?;
        let mut conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        // saving the same position twice is saving it once
        conn.run(|client| client.execute(&self.save_sql, &[&name, &position]))
            .map_err(db("saving a checkpoint"))?;
        Ok(())
    }
}
