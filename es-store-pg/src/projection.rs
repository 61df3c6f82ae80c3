//! Read models in PostgreSQL: exactly once ([`PgProjection`]: the rows and the checkpoint
//! change in one transaction, the checkpoint advanced by compare-and-set), or at least
//! once with checkpoints in a table ([`PgCheckpoints`]).
//!
//! The read model's database need not be the store's: a projection can read events from a
//! replica and write its rows to the primary, or to another database.

use crate::error::{ConnectError, describe};
use crate::schema::{check_schema_name, quoted};
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
            "CREATE SCHEMA IF NOT EXISTS {q};
             CREATE TABLE IF NOT EXISTS {q}.es_checkpoints (
                name TEXT PRIMARY KEY,
                position BIGINT NOT NULL CHECK (position >= 0)
             );"
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
/// use es_store_pg::PgStore;
/// use es_store_pg::projection::PgProjection;
///
/// let store = PgStore::connect("postgres://es@replica.internal/es")?;
/// let counts = PgProjection::connect("postgres://es@primary.internal/es", "public", "event-counts", EventCounts)?;
/// let mut runner = ProjectionRunner::new(&store, counts);
/// runner.run_to_head()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct PgProjection<M> {
    client: Client,
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

impl<M: PgReadModel> PgProjection<M> {
    /// Connects to the read model's database; its checkpoint is the row `name` of
    /// `schema.es_checkpoints` (created if missing).
    pub fn connect(url: &str, schema: &str, name: &str, model: M) -> Result<Self, ConnectError> {
        check_schema_name(schema)?;
        let mut client = Client::connect(url, NoTls).map_err(ConnectError::Connect)?;
        ensure_checkpoints(&mut client, schema)?;
        let q = quoted(schema);
        Ok(PgProjection {
            client,
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

    /// The connection, to query the read model.
    pub fn client(&mut self) -> &mut Client {
        &mut self.client
    }

    fn read_checkpoint(&mut self) -> Result<u64, BoxError> {
        let rows = self
            .client
            .query(&self.read_sql, &[&self.name])
            .map_err(db("reading the checkpoint"))?;
        let position: i64 = rows.first().map_or(0, |r| r.get(0));
        Ok(position.max(0) as u64)
    }
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
        let mut tx = self
            .client
            .transaction()
            .map_err(db("starting a transaction"))?;
        // the row lock taken here makes a second instance wait, then find the row moved
        let moved = tx
            .execute(&self.advance_sql, &[&self.name, &from, &to])
            .map_err(db("advancing the checkpoint"))?;
        if moved == 0 {
            drop(tx);
            self.known = None;
            let found = self.read_checkpoint()?;
            return Err(Box::new(ProjectionDbError::CheckpointMoved {
                name: self.name.clone(),
                expected,
                found,
            }));
        }
        for event in events {
            if let Err(source) = self.model.apply(&mut tx, event) {
                self.known = None;
                return Err(Box::new(EventFailure::new(event, source)));
            }
        }
        if let Err(e) = tx.commit() {
            self.known = None;
            return Err(db("committing the batch")(e));
        }
        self.known = Some(checkpoint);
        Ok(())
    }

    fn reset(&mut self) -> Result<(), BoxError> {
        self.read_checkpoint()?;
        let mut tx = self
            .client
            .transaction()
            .map_err(db("starting a transaction"))?;
        self.model.reset(&mut tx)?;
        tx.execute(&self.reset_sql, &[&self.name])
            .map_err(db("resetting the checkpoint"))?;
        tx.commit().map_err(db("committing the reset"))?;
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
    client: Mutex<Client>,
    load_sql: String,
    save_sql: String,
}

impl std::fmt::Debug for PgCheckpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgCheckpoints").finish_non_exhaustive()
    }
}

impl PgCheckpoints {
    /// Connects; the table is created if missing.
    pub fn connect(url: &str, schema: &str) -> Result<Self, ConnectError> {
        check_schema_name(schema)?;
        let mut client = Client::connect(url, NoTls).map_err(ConnectError::Connect)?;
        ensure_checkpoints(&mut client, schema)?;
        let q = quoted(schema);
        Ok(PgCheckpoints {
            client: Mutex::new(client),
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
        let mut client = self.client.lock().unwrap_or_else(|e| e.into_inner());
        let row = client
            .query_opt(&self.load_sql, &[&name])
            .map_err(db("reading a checkpoint"))?;
        Ok(row.map_or(0, |r| r.get::<_, i64>(0).max(0) as u64))
    }

    fn save(&self, name: &str, position: u64) -> Result<(), BoxError> {
        let position =
            i64::try_from(position).map_err(|_| format!("checkpoint {position} is past BIGINT"))?;
        let mut client = self.client.lock().unwrap_or_else(|e| e.into_inner());
        client
            .execute(&self.save_sql, &[&name, &position])
            .map_err(db("saving a checkpoint"))?;
        Ok(())
    }
}
