//! Read models in PostgreSQL: exactly once ([`PgProjection`]: the rows and the checkpoint
//! change in one transaction, the checkpoint advanced by compare-and-set), or at least
//! once with checkpoints in a table ([`PgCheckpoints`]).
//!
//! The read model's database need not be the store's: a projection can read events from a
//! replica and write its rows to the primary, or to another database.

use crate::conn::{drop_off_runtime, pin_session};
use crate::error::{ConnectError, describe, is_connection_error};
use crate::schema::{check_schema_name, checkpoint_mark_columns, checkpoints_table, quoted};
use es_core::RecordedEvent;
use es_core::projection::{
    BoxError, CheckpointMoved, CheckpointStore, EventFailure, Mark, TransactionalProjection,
};
use postgres::error::SqlState;
use postgres::{Client, NoTls, Transaction};
use std::mem::ManuallyDrop;
use std::sync::Mutex;
use uuid::Uuid;

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
///     fn set_up(&mut self, tx: &mut es_store_pg::postgres::Transaction<'_>) -> Result<(), BoxError> {
///         tx.batch_execute(
///             "CREATE TABLE IF NOT EXISTS event_counts (stream_id TEXT PRIMARY KEY, events BIGINT NOT NULL)",
///         )?;
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

    /// Creates the read model's tables when they are missing (`CREATE TABLE IF NOT
    /// EXISTS ..`), once per [`PgProjection::connect`]. It runs in a transaction that
    /// holds a lock every read model's set-up in the database takes: instances (or
    /// projections) that start together would otherwise race to create the same tables,
    /// and PostgreSQL refuses the loser's `CREATE TABLE IF NOT EXISTS` with a unique
    /// violation. Return the error of a failed statement: one caught and ignored would
    /// leave the transaction aborted, and the connect fails. The default creates
    /// nothing.
    fn set_up(&mut self, tx: &mut Transaction<'_>) -> Result<(), BoxError> {
        let _ = tx;
        Ok(())
    }
}

/// The read model's error, with the server's message when it is a statement's: the
/// `postgres` crate's error says only "db error" (its message is its source's).
fn read_models(error: BoxError, during: &'static str) -> BoxError {
    match error.downcast::<postgres::Error>() {
        Ok(source) => Box::new(ProjectionDbError::Database {
            during,
            source: *source,
        }),
        Err(other) => other,
    }
}

/// Why a batch was not applied.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProjectionDbError {
    /// Another instance of the same projection moved the checkpoint first: this batch was
    /// applied there, and nothing was written here. Run again: the runner reads the new
    /// checkpoint.
    ///
    /// Its source is es-core's [`CheckpointMoved`], which a projection running in the
    /// background looks for in the error's chain: when it is there, it reads the checkpoint
    /// again and goes on as a standby, instead of stopping.
    #[error("{source}")]
    CheckpointMoved {
        /// The projection, the checkpoint this instance started from, and the one found.
        #[source]
        source: CheckpointMoved,
    },
    /// A statement of the read model failed and the read model went on as if it had not
    /// (it caught the error). PostgreSQL aborts a transaction at its first failed
    /// statement, and its COMMIT then rolls everything back, so nothing of `what` was
    /// written; the checkpoint did not move. The read model must return the error of a
    /// failed statement (or undo it with a savepoint of its own).
    #[error(
        "projection `{name}`: {what} was rolled back, since a statement of the read model failed and the read model went on ({})",
        describe(source)
    )]
    Aborted {
        /// The projection.
        name: String,
        /// What was rolled back: the batch up to a position, or the reset.
        what: String,
        /// The error of the statement run in the aborted transaction.
        #[source]
        source: postgres::Error,
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
    /// Dropped off the caller's thread ([`drop_off_runtime`]).
    client: ManuallyDrop<Client>,
    /// Set after a connection error: the next call opens a new connection.
    lost: bool,
}

impl Drop for Connection {
    fn drop(&mut self) {
        // SAFETY: the client is taken once, here, and `self` is not used after
        let client = unsafe { ManuallyDrop::take(&mut self.client) };
        drop_off_runtime(client);
    }
}

impl Connection {
    fn open(url: &str) -> Result<Connection, ConnectError> {
        let config: postgres::Config = url.parse().map_err(ConnectError::InvalidUrl)?;
        let mut client = config.connect(NoTls).map_err(ConnectError::Connect)?;
        pin_session(&mut client).map_err(|source| ConnectError::Database {
            during: "setting the session's isolation and commit settings",
            source,
        })?;
        Ok(Connection {
            config,
            client: ManuallyDrop::new(client),
            lost: false,
        })
    }

    /// The client, on a new connection when the last one was lost.
    fn client(&mut self) -> Result<&mut Client, postgres::Error> {
        if self.lost || self.client.is_closed() {
            let mut client = self.config.connect(NoTls)?;
            pin_session(&mut client)?;
            // the lost connection closes on a thread of its own too
            let lost = std::mem::replace(&mut *self.client, client);
            drop_off_runtime(lost);
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

/// How many of the mark's two columns the checkpoints table `$1` has (0 when there is no
/// such table).
const COUNT_MARK_COLUMNS: &str =
    "SELECT count(*) FROM pg_attribute WHERE attrelid = to_regclass($1)
     AND attname IN ('event_id', 'event_position') AND NOT attisdropped";

/// Creates `schema.es_checkpoints` if it is missing, and adds the mark's columns to one
/// created without them.
///
/// The columns are looked for before they are added: `ALTER TABLE` takes the table's
/// strongest lock even when it has nothing to add, and would make every projection that
/// connects wait for the batches under way (and every batch wait behind it).
///
/// A table that is there with its columns is used as it is, without a statement that needs
/// more than the rights to read and write it: PostgreSQL checks the right to create before
/// it looks whether the object exists, so `CREATE .. IF NOT EXISTS` fails for a role
/// granted only those.
fn ensure_checkpoints(client: &mut Client, schema: &str) -> Result<(), ConnectError> {
    let q = quoted(schema);
    let present = client
        .query_one(COUNT_MARK_COLUMNS, &[&format!("{q}.es_checkpoints")])
        .map_err(|source| ConnectError::Database {
            during: "looking for the checkpoints table",
            source,
        })?;
    if present
        .try_get::<_, i64>(0)
        .is_ok_and(|columns| columns == 2)
    {
        return Ok(());
    }
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
    .and_then(|()| tx.query_one(COUNT_MARK_COLUMNS, &[&format!("{q}.es_checkpoints")]))
    .and_then(|row| match row.try_get::<_, i64>(0) {
        Ok(2) => Ok(()),
        _ => tx.batch_execute(&checkpoint_mark_columns(&q)),
    })
    .and_then(|()| tx.commit())
    .map_err(|source| ConnectError::Database {
        during: "creating the checkpoints table",
        source,
    })
}

/// Runs the read model's [`PgReadModel::set_up`] in a transaction that holds the lock of
/// the projection's set-up, so that instances starting together create its tables once.
fn set_up_read_model<M: PgReadModel>(
    client: &mut Client,
    name: &str,
    model: &mut M,
) -> Result<(), ConnectError> {
    let database = |during| move |source| ConnectError::Database { during, source };
    let mut tx = client
        .transaction()
        .map_err(database("starting the set-up of the read model"))?;
    // one lock for every read model's set-up in the database: projections of other names
    // may create the same tables (set-ups are rare, and short)
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext('es-store-pg read model set-up'))",
        &[],
    )
    .map_err(database("locking the set-up of the read model"))?;
    let failed = |source| ConnectError::ReadModelSetUp {
        name: name.to_owned(),
        source,
    };
    model
        .set_up(&mut tx)
        .map_err(|e| read_models(e, "the read model's set-up"))
        .map_err(failed)?;
    // a set-up that caught a statement's error would have its transaction rolled back by
    // the commit, reported as a success
    ensure_open(&mut tx, name, || "the read model's set-up".to_owned()).map_err(failed)?;
    tx.commit()
        .map_err(database("committing the set-up of the read model"))
}

/// Makes sure a transaction is still open before it is committed.
///
/// PostgreSQL aborts a transaction at its first failed statement, and the COMMIT of an
/// aborted transaction rolls it back, while the client reports that COMMIT as a success. A
/// read model that catches a statement's error and goes on would then have its batch
/// reported applied, and the checkpoint this instance keeps in memory moved, when nothing
/// was written. One trivial statement, refused in an aborted transaction, tells; it costs
/// a round trip, only after the read model has run.
fn ensure_open(
    tx: &mut Transaction<'_>,
    name: &str,
    what: impl FnOnce() -> String,
) -> Result<(), BoxError> {
    match tx.batch_execute("SELECT 1") {
        Ok(()) => Ok(()),
        Err(source) if source.code() == Some(&SqlState::IN_FAILED_SQL_TRANSACTION) => {
            Err(Box::new(ProjectionDbError::Aborted {
                name: name.to_owned(),
                what: what(),
                source,
            }))
        }
        Err(source) => Err(db("checking the transaction before its commit")(source)),
    }
}

/// An exactly-once projection into PostgreSQL: each batch's rows and the checkpoint are
/// written in one transaction, and the checkpoint moves only from the value this instance
/// read (compare-and-set), so two instances of the same projection never both apply a
/// batch: the second finds the checkpoint moved, writes nothing, and reports
/// [`ProjectionDbError::CheckpointMoved`]. A run reports it; a runner following the log
/// in the background ([`ProjectionRunner::spawn`](es_core::ProjectionRunner::spawn))
/// reads the checkpoint again and goes on, so competing instances keep running as
/// standbys of each other.
///
/// The checkpoint is recorded with the id of the event at its position (a [`Mark`]), so
/// that a runner finds a log replaced under it
/// ([`ProjectionError::HistoryReplaced`](es_core::projection::ProjectionError::HistoryReplaced)).
///
/// Its connection runs its transactions at `READ COMMITTED` and, unless the connection
/// string asks otherwise, with `synchronous_commit` on, whatever the server's defaults.
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
        let mut model = model;
        set_up_read_model(&mut conn.client, name, &mut model)?;
        let q = quoted(schema);
        Ok(PgProjection {
            conn,
            name: name.to_owned(),
            read_sql: format!(
                "WITH created AS (
                    INSERT INTO {q}.es_checkpoints (name, position) VALUES ($1, 0)
                    ON CONFLICT (name) DO NOTHING RETURNING position)
                 SELECT position, NULL::uuid FROM created UNION ALL
                 SELECT {MARK_COLUMNS} FROM {q}.es_checkpoints WHERE name = $1"
            ),
            advance_sql: format!(
                "UPDATE {q}.es_checkpoints SET position = $3, event_id = $4, event_position = $3
                 WHERE name = $1 AND position = $2"
            ),
            // an upsert, so that the row is there (and locked) before the read model's reset
            reset_sql: format!(
                "INSERT INTO {q}.es_checkpoints (name, position) VALUES ($1, 0)
                 ON CONFLICT (name) DO UPDATE
                 SET position = 0, event_id = NULL, event_position = NULL"
            ),
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

    fn read_checkpoint(&mut self) -> Result<Mark, BoxError> {
        let (sql, name) = (&self.read_sql, &self.name);
        let rows = self
            .conn
            .run(|client| client.query(sql, &[name]))
            .map_err(db("reading the checkpoint"))?;
        match rows.first() {
            None => Ok(Mark::default()),
            Some(row) => checkpoint_mark(row, name),
        }
    }
}

/// The columns of a checkpoint's [`Mark`]: the position, and the event id when it was
/// recorded at that position.
const MARK_COLUMNS: &str =
    "position, CASE WHEN event_position = position THEN event_id END AS event_id";

/// The mark of a checkpoint row read with [`MARK_COLUMNS`]; its position is never
/// negative.
fn checkpoint_mark(row: &postgres::Row, name: &str) -> Result<Mark, BoxError> {
    let position: i64 = row.try_get(0).map_err(db("reading the checkpoint"))?;
    let event_id: Option<Uuid> = row.try_get(1).map_err(db("reading the checkpoint"))?;
    let position = u64::try_from(position).map_err(|_| -> BoxError {
        format!("the checkpoint row `{name}` holds position {position}, which is negative").into()
    })?;
    Ok(Mark { position, event_id })
}

/// A checkpoint position as a `BIGINT`.
fn bigint(position: u64) -> Result<i64, BoxError> {
    i64::try_from(position).map_err(|_| format!("checkpoint {position} is past BIGINT").into())
}

impl<M: PgReadModel> TransactionalProjection for PgProjection<M> {
    fn checkpoint(&mut self) -> Result<u64, BoxError> {
        Ok(self.checkpoint_mark()?.position)
    }

    fn apply_batch(&mut self, events: &[RecordedEvent], checkpoint: u64) -> Result<(), BoxError> {
        self.apply_batch_marked(events, Mark::at(checkpoint))
    }

    /// Locks the checkpoint row before the read model deletes its rows, as a batch does
    /// before it writes: a reset that deleted first would not see the rows of a batch
    /// committing meanwhile (its snapshot predates them), then set the checkpoint to 0
    /// over that batch, and the rebuild would apply those events a second time.
    fn reset(&mut self) -> Result<(), BoxError> {
        let (name, reset_sql, model) = (&self.name, &self.reset_sql, &mut self.model);
        let reset = self.conn.with_transaction(|mut tx| {
            tx.execute(reset_sql, &[name])
                .map_err(db("resetting the checkpoint"))?;
            model
                .reset(&mut tx)
                .map_err(|e| read_models(e, "the read model's reset"))?;
            ensure_open(&mut tx, name, || "the reset".to_owned())?;
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

    fn checkpoint_mark(&mut self) -> Result<Mark, BoxError> {
        let mark = self.read_checkpoint()?;
        self.known = Some(mark.position);
        Ok(mark)
    }

    fn apply_batch_marked(&mut self, events: &[RecordedEvent], mark: Mark) -> Result<(), BoxError> {
        let expected = match self.known {
            Some(p) => p,
            None => self.checkpoint()?,
        };
        // a batch holds the events after the checkpoint it was read from: one that begins
        // at or before the checkpoint known here overlaps what was applied (read by another
        // runner, or from a checkpoint this instance did not know), and is not applied
        // again. The compare-and-set below cannot tell: it moves the checkpoint from
        // `expected`, which, read here, is where the row is now, not where the batch began.
        let overlaps = events.first().is_some_and(|e| e.position <= expected);
        if overlaps || mark.position < expected {
            self.known = None;
            let began = events
                .first()
                .map_or(mark.position, |e| e.position.saturating_sub(1));
            return Err(Box::new(ProjectionDbError::CheckpointMoved {
                source: CheckpointMoved {
                    name: self.name.clone(),
                    expected: began,
                    found: expected,
                },
            }));
        }
        let (from, to) = (bigint(expected)?, bigint(mark.position)?);
        let (name, advance_sql, model) = (&self.name, &self.advance_sql, &mut self.model);
        let batch = self.conn.with_transaction(|mut tx| {
            // the row lock taken here makes a second instance wait, then find the row moved
            let moved = tx
                .execute(advance_sql, &[name, &from, &to, &mark.event_id])
                .map_err(db("advancing the checkpoint"))?;
            if moved == 0 {
                return Ok(Batch::Moved);
            }
            for event in events {
                if let Err(source) = model.apply(&mut tx, event) {
                    let source = read_models(source, "the read model's statement");
                    return Ok(Batch::Refused(Box::new(EventFailure::new(event, source))));
                }
            }
            if !events.is_empty() {
                ensure_open(&mut tx, name, || {
                    format!("the batch up to position {}", mark.position)
                })?;
            }
            tx.commit().map_err(db("committing the batch"))?;
            Ok(Batch::Applied)
        });
        match batch {
            Ok(Batch::Applied) => {
                self.known = Some(mark.position);
                Ok(())
            }
            Ok(Batch::Moved) => {
                self.known = None;
                let found = self.read_checkpoint()?.position;
                Err(Box::new(ProjectionDbError::CheckpointMoved {
                    source: CheckpointMoved {
                        name: self.name.clone(),
                        expected,
                        found,
                    },
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
}

/// Checkpoints of at-least-once projections, in `schema.es_checkpoints`, with the id of
/// the event at each (a [`Mark`], so that a runner finds a log replaced under a
/// checkpoint).
///
/// A save never moves a checkpoint back, except to 0: instances of one projection that
/// share its name (two processes, for availability) each save where they got to, and the
/// one lagging behind saving its older position would otherwise make the next start
/// handle again everything after it. A save of 0 is a reset (before a rebuild) and is
/// always taken.
///
/// Its connection runs at `READ COMMITTED` and, unless the connection string asks
/// otherwise, with `synchronous_commit` on, whatever the server's defaults.
///
/// ```no_run
/// use es_core::projection::CheckpointStore;
/// use es_store_pg::projection::PgCheckpoints;
/// let checkpoints = PgCheckpoints::connect("postgres://es@localhost/es", "public")?;
/// checkpoints.save("mailer", 42)?;
/// checkpoints.save("mailer", 40)?; // an instance lagging behind
/// assert_eq!(checkpoints.load("mailer")?, 42);
/// checkpoints.save("mailer", 0)?; // a reset
/// assert_eq!(checkpoints.load("mailer")?, 0);
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
            load_sql: format!("SELECT {MARK_COLUMNS} FROM {q}.es_checkpoints WHERE name = $1"),
            // the row is locked while the condition is checked, so that two saves at once
            // keep the greater
            save_sql: format!(
                "INSERT INTO {q}.es_checkpoints AS c (name, position, event_id, event_position)
                 VALUES ($1, $2, $3, $2)
                 ON CONFLICT (name) DO UPDATE SET position = excluded.position,
                    event_id = excluded.event_id, event_position = excluded.event_position
                 WHERE excluded.position = 0 OR excluded.position >= c.position"
            ),
        })
    }
}

impl CheckpointStore for PgCheckpoints {
    fn load(&self, name: &str) -> Result<u64, BoxError> {
        Ok(self.load_mark(name)?.position)
    }

    /// Saves `position` unless the checkpoint is past it already (see [`PgCheckpoints`]).
    fn save(&self, name: &str, position: u64) -> Result<(), BoxError> {
        self.save_mark(name, Mark::at(position))
    }

    fn load_mark(&self, name: &str) -> Result<Mark, BoxError> {
        let mut conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let row = conn
            .run(|client| client.query_opt(&self.load_sql, &[&name]))
            .map_err(db("reading a checkpoint"))?;
        match row {
            None => Ok(Mark::default()),
            Some(row) => checkpoint_mark(&row, name),
        }
    }

    /// Saves `mark` unless the checkpoint is past it already (see [`PgCheckpoints`]).
    fn save_mark(&self, name: &str, mark: Mark) -> Result<(), BoxError> {
        let position = bigint(mark.position)?;
        let mut conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        // saving the same mark twice is saving it once
        conn.run(|client| client.execute(&self.save_sql, &[&name, &position, &mark.event_id]))
            .map_err(db("saving a checkpoint"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Nothing;

    impl PgReadModel for Nothing {
        fn apply(&mut self, _: &mut Transaction<'_>, _: &RecordedEvent) -> Result<(), BoxError> {
            Ok(())
        }
        fn reset(&mut self, _: &mut Transaction<'_>) -> Result<(), BoxError> {
            Ok(())
        }
    }

    /// The isolation and commit settings of `client`.
    fn settings(client: &mut Client) -> (String, String) {
        let row = client
            .query_one(
                "SELECT current_setting('default_transaction_isolation'),
                    current_setting('synchronous_commit')",
                &[],
            )
            .unwrap();
        (row.get(0), row.get(1))
    }

    #[test]
    fn projections_and_checkpoints_run_at_read_committed_and_commit_synchronously_whatever_the_server_defaults()
     {
        let Some(server) = crate::start_server(&[
            "default_transaction_isolation=serializable",
            "synchronous_commit=off",
        ]) else {
            return;
        };
        let pinned = ("read committed".to_owned(), "on".to_owned());
        let mut projection = PgProjection::connect(&server.url, "public", "p", Nothing).unwrap();
        assert_eq!(settings(projection.client()), pinned);
        let checkpoints = PgCheckpoints::connect(&server.url, "public").unwrap();
        let mut conn = checkpoints.conn.lock().unwrap();
        assert_eq!(settings(&mut conn.client), pinned);
        // and so does a connection opened again after one was lost
        conn.lost = true;
        assert_eq!(settings(conn.client().unwrap()), pinned);
    }
}
