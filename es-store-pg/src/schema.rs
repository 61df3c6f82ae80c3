//! The store's tables, their versions, and the set-up that creates or upgrades them.
//!
//! Every table lives in one PostgreSQL schema (`public` unless the options name another).
//! `es_schema` holds one row: the version of the tables. Connecting takes a transaction-
//! scoped advisory lock (so that processes starting together do not race), creates what
//! is missing or applies the upgrade steps from the recorded version to [`CURRENT`], and
//! records the new version, all in one transaction: a failed upgrade leaves the tables
//! as they were. A version newer than [`CURRENT`] is refused and nothing is touched.
//!
//! Version history:
//!
//! 1. `es_head` (one row: the last global position and the last commit time),
//!    `es_streams` (one row per stream: its version, locked by appends), `es_events`.
//! 2. `es_snapshots` and `es_checkpoints`. The checkpoints' mark columns (`event_id`,
//!    `event_position`) came later without a version of their own: projections add them
//!    when they connect, and a checkpoint without them reads as one without a mark.

use crate::error::ConnectError;
use postgres::Client;

/// The version of the tables this build writes.
pub const CURRENT: i32 = 2;

/// The table of projection checkpoints, created by the store's set-up and by projections
/// that connect before the store (whichever comes first). `{s}` is the quoted schema name.
///
/// `event_id` is the id of the event at `event_position`: with `position`, the checkpoint's
/// mark (es-core's `Mark`), by which a runner finds a log replaced under its checkpoint.
/// A mark holds only while `event_position = position`: a build that knows no marks moves
/// `position` alone, and the id left behind names another event.
macro_rules! checkpoints_table {
    () => {
        "CREATE TABLE IF NOT EXISTS {s}.es_checkpoints (
        name TEXT PRIMARY KEY,
        position BIGINT NOT NULL CHECK (position >= 0),
        event_id UUID,
        event_position BIGINT
    );"
    };
}

/// The mark's columns, for checkpoint tables created before them (they came without a
/// version of their own: every projection adds them when it connects, and reads a
/// checkpoint without them as one without a mark).
macro_rules! checkpoint_mark_columns {
    () => {
        "ALTER TABLE {s}.es_checkpoints
        ADD COLUMN IF NOT EXISTS event_id UUID,
        ADD COLUMN IF NOT EXISTS event_position BIGINT;"
    };
}

/// [`checkpoints_table`] for `quoted_schema`.
pub(crate) fn checkpoints_table(quoted_schema: &str) -> String {
    checkpoints_table!().replace("{s}", quoted_schema)
}

/// [`checkpoint_mark_columns`] for `quoted_schema`.
pub(crate) fn checkpoint_mark_columns(quoted_schema: &str) -> String {
    checkpoint_mark_columns!().replace("{s}", quoted_schema)
}

/// The upgrade steps: `STEPS[i]` takes the tables from version `i` to `i + 1`. `{s}` is
/// replaced by the quoted schema name.
const STEPS: [&str; CURRENT as usize] = [
    // 0 -> 1
    "CREATE TABLE {s}.es_head (
        id BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (id),
        position BIGINT NOT NULL CHECK (position >= 0),
        committed_at TIMESTAMPTZ NOT NULL
    );
    INSERT INTO {s}.es_head (position, committed_at) VALUES (0, 'epoch');
    CREATE TABLE {s}.es_streams (
        stream_id TEXT PRIMARY KEY,
        version BIGINT NOT NULL CHECK (version >= 0)
    );
    CREATE TABLE {s}.es_events (
        position BIGINT PRIMARY KEY,
        stream_id TEXT NOT NULL,
        stream_version BIGINT NOT NULL,
        event_id UUID NOT NULL,
        recorded_at TIMESTAMPTZ NOT NULL,
        recorded_ns SMALLINT NOT NULL,
        event_type TEXT NOT NULL,
        schema_version BIGINT NOT NULL,
        metadata TEXT,
        payload TEXT NOT NULL,
        append_index INTEGER NOT NULL,
        append_len INTEGER NOT NULL,
        CONSTRAINT es_events_event_id_key UNIQUE (event_id),
        CONSTRAINT es_events_stream_key UNIQUE (stream_id, stream_version)
    );",
    // 1 -> 2 (`es_checkpoints` may exist already, without the mark's columns: projections
    // create it when they connect before the store)
    concat!(
        "CREATE TABLE {s}.es_snapshots (
        stream_id TEXT NOT NULL,
        version BIGINT NOT NULL,
        position BIGINT NOT NULL,
        last_event_at TIMESTAMPTZ NOT NULL,
        last_event_ns SMALLINT NOT NULL,
        schema_version BIGINT NOT NULL,
        fingerprint BIGINT NOT NULL,
        state BYTEA NOT NULL,
        PRIMARY KEY (stream_id, version)
    );
    ",
        checkpoints_table!(),
        checkpoint_mark_columns!()
    ),
];

/// Checks a schema name: lowercase ASCII letters, digits and `_`, starting with a letter
/// or `_` but not with `pg_` (PostgreSQL keeps those names for itself), at most 48 bytes
/// (so that derived names stay under PostgreSQL's 63). The rule
/// of [`PgStoreOptions::schema`](crate::PgStoreOptions::schema); a read model that
/// names its tables in the store's schema can check a name with it before writing it
/// into SQL.
///
/// ```
/// use es_store_pg::schema::check_schema_name;
/// assert!(check_schema_name("orders_2").is_ok());
/// assert!(check_schema_name("Orders; DROP TABLE x").is_err());
/// assert!(check_schema_name("pg_orders").is_err());
/// ```
pub fn check_schema_name(name: &str) -> Result<(), ConnectError> {
    if name.starts_with("pg_") {
        return Err(ConnectError::InvalidOptions(format!(
            "schema name {name:?}: names starting with `pg_` are reserved by PostgreSQL"
        )));
    }
    let ok = !name.is_empty()
        && name.len() <= 48
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit();
    if ok {
        Ok(())
    } else {
        Err(ConnectError::InvalidOptions(format!(
            "schema name {name:?}: use 1 to 48 lowercase letters, digits and `_`, not starting with a digit"
        )))
    }
}

/// Quotes a checked identifier.
pub(crate) fn quoted(name: &str) -> String {
    format!("\"{name}\"")
}

/// The version recorded in `schema`, or `None` when there are no tables.
fn recorded_version(
    client: &mut impl postgres::GenericClient,
    schema: &str,
) -> Result<Option<i32>, ConnectError> {
    let db = |during| move |source| ConnectError::Database { during, source };
    let exists: Option<String> = client
        .query_one(
            "SELECT to_regclass($1)::text",
            &[&format!("{}.es_schema", quoted(schema))],
        )
        .and_then(|row| row.try_get(0))
        .map_err(db("looking for the store's tables"))?;
    if exists.is_none() {
        return Ok(None);
    }
    let row = client
        .query_opt(
            &format!("SELECT version FROM {}.es_schema", quoted(schema)),
            &[],
        )
        .and_then(|row| row.map(|r| r.try_get(0)).transpose())
        .map_err(db("reading the schema version"))?;
    Ok(Some(row.unwrap_or(0)))
}

fn check_encoding(client: &mut Client) -> Result<(), ConnectError> {
    let row = client
        .query_one("SELECT current_setting('server_encoding')", &[])
        .and_then(|row| row.try_get(0))
        .map_err(|source| ConnectError::Database {
            during: "reading the server encoding",
            source,
        })?;
    let encoding: String = row;
    if encoding != "UTF8" {
        return Err(ConnectError::UnsupportedEncoding { encoding });
    }
    Ok(())
}

/// Creates or upgrades the tables in `schema` to [`CURRENT`] in one transaction.
pub(crate) fn set_up(client: &mut Client, schema: &str) -> Result<(), ConnectError> {
    set_up_to(client, schema, CURRENT)
}

/// Creates or upgrades the tables in `schema` up to version `target` only, as an older
/// build would have left them: for tests of upgrades. [`PgStore::connect`](crate::PgStore::connect)
/// is the way to set up a store.
///
/// ```no_run
/// let mut client = postgres::Client::connect("postgres://es@localhost/es", postgres::NoTls).unwrap();
/// es_store_pg::schema::set_up_to(&mut client, "old", 1).unwrap();
/// ```
#[doc(hidden)]
pub fn set_up_to(client: &mut Client, schema: &str, target: i32) -> Result<(), ConnectError> {
    check_encoding(client)?;
    if !(0..=CURRENT).contains(&target) {
        return Err(ConnectError::InvalidOptions(format!(
            "schema version {target} does not exist (the versions run from 0 to {CURRENT})"
        )));
    }
    let db = |during| move |source| ConnectError::Database { during, source };
    let mut tx = client
        .transaction()
        .map_err(db("starting the set-up transaction"))?;
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext($1))",
        &[&format!("es-store-pg set-up {schema}")],
    )
    .map_err(db("waiting for another process's set-up"))?;
    let q = quoted(schema);
    let found = match recorded_version(&mut tx, schema)? {
        Some(v) => v,
        None => {
            let present = tx
                .query_opt("SELECT 1 FROM pg_namespace WHERE nspname = $1", &[&schema])
                .map_err(db("looking for the schema"))?
                .is_some();
            if !present {
                tx.batch_execute(&format!("CREATE SCHEMA {q}"))
                    .map_err(db("creating the schema"))?;
            }
            tx.batch_execute(&format!(
                "CREATE TABLE {q}.es_schema (
                    id BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (id),
                    version INTEGER NOT NULL,
                    upgraded_at TIMESTAMPTZ NOT NULL DEFAULT now()
                );
                INSERT INTO {q}.es_schema (version) VALUES (0);"
            ))
            .map_err(db("creating the schema version table"))?;
            0
        }
    };
    if found > CURRENT {
        return Err(ConnectError::SchemaTooNew {
            schema: schema.to_owned(),
            found,
            supported: CURRENT,
        });
    }
    if found >= target {
        return Ok(());
    }
    for step in &STEPS[found.max(0) as usize..target as usize] {
        tx.batch_execute(&step.replace("{s}", &q))
            .map_err(db("upgrading the tables"))?;
    }
    tx.execute(
        &format!("UPDATE {q}.es_schema SET version = $1, upgraded_at = now()"),
        &[&target],
    )
    .map_err(db("recording the schema version"))?;
    tx.commit().map_err(db("committing the set-up"))?;
    Ok(())
}

/// For a read-only store: checks that the tables exist at [`CURRENT`], changing nothing.
pub(crate) fn check(client: &mut Client, schema: &str) -> Result<(), ConnectError> {
    check_encoding(client)?;
    match recorded_version(client, schema)? {
        None | Some(0) => Err(ConnectError::SchemaMissing {
            schema: schema.to_owned(),
        }),
        Some(found) if found > CURRENT => Err(ConnectError::SchemaTooNew {
            schema: schema.to_owned(),
            found,
            supported: CURRENT,
        }),
        Some(found) if found < CURRENT => Err(ConnectError::SchemaOutdated {
            schema: schema.to_owned(),
            found,
            supported: CURRENT,
        }),
        Some(_) => Ok(()),
    }
}
