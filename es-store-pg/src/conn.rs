//! Pooled connections, each with its own cache of prepared statements.

use crate::error::is_connection_error;
use postgres::{Client, NoTls, Statement};
use std::time::Duration;

/// The statements the store runs, by name; their text is built per store (the tables'
/// schema is part of it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Query {
    ReadAll,
    ReadStream,
    StreamVersion,
    Head,
    LockStreams,
    FindIds,
    EventVersion,
    LockHead,
    Write,
    SaveSnapshot,
    TrimSnapshots,
    LoadSnapshot,
}

impl Query {
    /// Every statement, in the order of their indexes.
    const ALL: [Query; 12] = [
        Query::ReadAll,
        Query::ReadStream,
        Query::StreamVersion,
        Query::Head,
        Query::LockStreams,
        Query::FindIds,
        Query::EventVersion,
        Query::LockHead,
        Query::Write,
        Query::SaveSnapshot,
        Query::TrimSnapshots,
        Query::LoadSnapshot,
    ];
}

const QUERIES: usize = Query::ALL.len();

/// Columns of an event row, in the order [`crate::store::decode_row`] reads them.
const EVENT_COLUMNS: &str = "stream_id, stream_version, position, event_id, recorded_at, recorded_ns, \
     event_type, schema_version, metadata, payload";

/// The bytes of an event row that a read holds in memory (its column `through`, after
/// [`EVENT_COLUMNS`], is the sum of this over its page so far). `octet_length` reads the
/// stored length, without fetching the value.
const EVENT_BYTES: &str = "(octet_length(payload) + coalesce(octet_length(metadata), 0) \
     + octet_length(event_type) + octet_length(stream_id))";

/// The text of every statement for one schema.
#[derive(Debug)]
pub(crate) struct Sql {
    texts: [String; QUERIES],
}

impl Sql {
    pub(crate) fn new(quoted_schema: &str) -> Sql {
        let s = quoted_schema;
        let text = |q: Query| -> String {
            match q {
                // A page: at most $2 rows, and no row after those that reach $3 bytes.
                Query::ReadAll => format!(
                    "SELECT {EVENT_COLUMNS}, through FROM (
                        SELECT {EVENT_COLUMNS}, {EVENT_BYTES} AS size,
                            sum({EVENT_BYTES}) OVER (ORDER BY position ROWS UNBOUNDED PRECEDING) AS through
                        FROM {s}.es_events WHERE position >= $1 ORDER BY position LIMIT $2
                     ) page WHERE through - size < $3 ORDER BY position"
                ),
                Query::ReadStream => format!(
                    "SELECT {EVENT_COLUMNS}, through FROM (
                        SELECT {EVENT_COLUMNS}, {EVENT_BYTES} AS size,
                            sum({EVENT_BYTES}) OVER (ORDER BY stream_version ROWS UNBOUNDED PRECEDING) AS through
                        FROM {s}.es_events WHERE stream_id = $1 AND stream_version >= $2
                        ORDER BY stream_version LIMIT $4
                     ) page WHERE through - size < $3 ORDER BY stream_version"
                ),
                Query::StreamVersion => {
                    format!("SELECT version FROM {s}.es_streams WHERE stream_id = $1")
                }
                Query::Head => format!("SELECT position FROM {s}.es_head"),
                // Locks every stream row of a group, creating the missing ones at version
                // 0, in the order of the (sorted) array: all writers lock streams in the
                // same order, then the head row, so that appends never deadlock.
                Query::LockStreams => format!(
                    "INSERT INTO {s}.es_streams AS t (stream_id, version) \
                     SELECT id, 0 FROM unnest($1::text[]) WITH ORDINALITY AS u(id, n) ORDER BY n \
                     ON CONFLICT (stream_id) DO UPDATE SET version = t.version \
                     RETURNING stream_id, version"
                ),
                Query::FindIds => format!(
                    "SELECT event_id, stream_id, stream_version, position, append_index, append_len \
                     FROM {s}.es_events WHERE event_id = ANY($1::uuid[])"
                ),
                // one probe of the event-id key
                Query::EventVersion => format!(
                    "SELECT stream_version FROM {s}.es_events \
                     WHERE event_id = $1 AND stream_id = $2"
                ),
                // The one serial point: positions and the commit time come from this row,
                // locked until the commit.
                Query::LockHead => format!(
                    "SELECT position, greatest(committed_at, clock_timestamp()) \
                     FROM {s}.es_head FOR UPDATE"
                ),
                Query::Write => format!(
                    "WITH inserted AS (
                        INSERT INTO {s}.es_events (position, stream_id, stream_version, event_id,
                            recorded_at, recorded_ns, event_type, schema_version, metadata, payload,
                            append_index, append_len)
                        SELECT * FROM unnest($1::int8[], $2::text[], $3::int8[], $4::uuid[],
                            $5::timestamptz[], $6::int2[], $7::text[], $8::int8[], $9::text[],
                            $10::text[], $11::int4[], $12::int4[])
                    ), moved AS (
                        UPDATE {s}.es_streams AS t SET version = u.version
                        FROM unnest($13::text[], $14::int8[]) AS u(stream_id, version)
                        WHERE t.stream_id = u.stream_id
                    ), unused AS (
                        DELETE FROM {s}.es_streams WHERE stream_id = ANY($15::text[]) AND version = 0
                    )
                    UPDATE {s}.es_head SET position = $16, committed_at = $17
                    RETURNING pg_notify($18, $19)"
                ),
                Query::SaveSnapshot => format!(
                    "INSERT INTO {s}.es_snapshots (stream_id, version, position, last_event_at,
                        last_event_ns, schema_version, fingerprint, state)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                     ON CONFLICT (stream_id, version) DO UPDATE SET position = excluded.position,
                        last_event_at = excluded.last_event_at, last_event_ns = excluded.last_event_ns,
                        schema_version = excluded.schema_version,
                        fingerprint = excluded.fingerprint, state = excluded.state"
                ),
                Query::TrimSnapshots => format!(
                    "DELETE FROM {s}.es_snapshots WHERE stream_id = $1 AND version < ALL (
                        SELECT version FROM {s}.es_snapshots WHERE stream_id = $1
                        ORDER BY version DESC LIMIT $2)"
                ),
                Query::LoadSnapshot => format!(
                    "SELECT version, position, last_event_at, last_event_ns, schema_version,
                        fingerprint, state
                     FROM {s}.es_snapshots WHERE stream_id = $1 AND version <= $2
                     ORDER BY version DESC LIMIT 1"
                ),
            }
        };
        Sql {
            texts: Query::ALL.map(text),
        }
    }

    fn text(&self, q: Query) -> &str {
        &self.texts[q as usize]
    }
}

/// A connection and its prepared statements.
pub(crate) struct Conn {
    pub(crate) client: Client,
    statements: [Option<Statement>; QUERIES],
    /// Set after a connection error, so that the pool drops it.
    broken: bool,
    /// The `idle_in_transaction_session_timeout` the store set on this connection; `None`
    /// when it left the setting alone.
    pub(crate) idle_transaction_timeout: Option<Duration>,
}

/// Drops `value` on a thread of its own and waits for it. A `postgres` client closes its
/// connection through a runtime of its own, which panics on a thread that runs one already:
/// a tokio worker dropping the last handle of a store or a projection would panic.
pub(crate) fn drop_off_runtime<T: Send>(value: T) {
    std::thread::scope(|scope| {
        let spawned = std::thread::Builder::new()
            .name("es-store-pg-close".into())
            .spawn_scoped(scope, move || drop(value));
        if let Err(e) = spawned {
            // the value went with the closure: dropped here, as it would have been
            tracing::warn!("cannot start a thread to close connections on: {e}");
        }
    });
}

/// The longest `idle_in_transaction_session_timeout` the server takes, in milliseconds.
pub(crate) const LONGEST_IDLE_TIMEOUT_MS: u64 = i32::MAX as u64;

/// The slowest link a group's transaction is given time for: the server counts the time
/// it spends receiving a statement as idle time, and a group's write carries every
/// payload in one message. A transaction gets the idle timeout and one more second per
/// this many bytes, for groups large enough to need it.
pub(crate) const SLOWEST_LINK_BYTES_PER_SECOND: usize = 128 * 1024;

/// [`Conn::idle_timeout_for`] of a connection whose own timeout is `base`: the server
/// takes at most [`LONGEST_IDLE_TIMEOUT_MS`], and a base that long needs no more.
fn idle_timeout_for(base: Duration, bytes: usize) -> Option<Duration> {
    let sending = (bytes / SLOWEST_LINK_BYTES_PER_SECOND) as u64;
    let longest = Duration::from_millis(LONGEST_IDLE_TIMEOUT_MS);
    let timeout = base
        .saturating_add(Duration::from_secs(sending))
        .min(longest);
    (sending > 0 && base < longest).then_some(timeout)
}

impl Conn {
    /// The idle timeout for a transaction that sends `bytes` of events, when the
    /// connection's own is too short for them at [`SLOWEST_LINK_BYTES_PER_SECOND`];
    /// `None` when the connection's own does (or the store left the setting alone).
    pub(crate) fn idle_timeout_for(&self, bytes: usize) -> Option<Duration> {
        idle_timeout_for(self.idle_transaction_timeout?, bytes)
    }
}

impl Conn {
    /// The prepared statement for `q`, prepared on first use.
    pub(crate) fn statement(&mut self, sql: &Sql, q: Query) -> Result<Statement, postgres::Error> {
        if let Some(s) = &self.statements[q as usize] {
            return Ok(s.clone());
        }
        let s = self
            .client
            .prepare(sql.text(q))
            .inspect_err(|e| self.note(e))?;
        self.statements[q as usize] = Some(s.clone());
        Ok(s)
    }

    /// Marks the connection broken when `e` says it is gone.
    pub(crate) fn note(&mut self, e: &postgres::Error) {
        if is_connection_error(e) {
            self.broken = true;
        }
    }
}

/// Makes the server plan each execution of a prepared statement for the tables as they
/// are now, not once for all.
///
/// After five executions PostgreSQL may keep one generic plan for a prepared statement,
/// costed against the table's size at that moment, until the table is next analyzed. A
/// store's connections prepare their statements while its tables are new and small, where
/// a sequential scan is cheapest; the cached plan then goes on scanning the whole table
/// as it grows (an event-id lookup of the append path took 5.7 ms at 20,000 events, and
/// grows with the table) until autovacuum happens to analyze it. Planning each execution
/// costs some tens of microseconds per statement.
fn plan_for_current_size(client: &mut Client) -> Result<(), postgres::Error> {
    match client.batch_execute("SET plan_cache_mode = force_custom_plan") {
        // servers before PostgreSQL 12 have no such setting: they keep their own choice
        Err(e) if e.code() == Some(&postgres::error::SqlState::UNDEFINED_OBJECT) => Ok(()),
        other => other,
    }
}

/// Sets what the transactions of a connection that writes (the store's, a projection's) are
/// written for, whatever the server's, the database's or the role's defaults say.
///
/// - `READ COMMITTED`: appends, and projections moving their checkpoints, wait for each
///   other's row locks and then see the rows as committed. Under a default of repeatable
///   read or serializable they would fail with serialization errors (40001) instead: two
///   appends racing for the head, and a projection that lost its compare-and-set to
///   another instance, which must learn `CheckpointMoved` to go on.
/// - `synchronous_commit = on` when the default is `off`: with it off, the server
///   acknowledges a commit before its WAL is flushed, and a crash then takes back appends
///   it acknowledged (their positions are handed out again) and checkpoints it moved. A
///   connection string that asks for `off` itself (`options=-c synchronous_commit=off`,
///   which the server records as set by the client) keeps it: that is the application's
///   choice, for a bulk load it can start again, not a default it did not see. The other
///   settings (`local` and `remote_write`, weaker than `on` only towards standbys, and
///   `remote_apply`, stronger) are the operator's choice for standbys and are kept.
///
/// Two round trips: a batch of statements runs as one transaction, begun under the old
/// default, and on a hot standby whose default is serializable its `SELECT` fails
/// ("cannot use serializable mode in a hot standby"); the `SET` alone changes the default
/// for what follows.
pub(crate) fn pin_session(client: &mut Client) -> Result<(), postgres::Error> {
    client.batch_execute("SET default_transaction_isolation = 'read committed'")?;
    client.batch_execute(
        "SELECT set_config('synchronous_commit', 'on', false) FROM pg_settings
         WHERE name = 'synchronous_commit' AND setting = 'off' AND source <> 'client'",
    )
}

/// Opens connections for the pool.
#[derive(Debug)]
pub(crate) struct Manager {
    pub(crate) config: postgres::Config,
    /// The server's `idle_in_transaction_session_timeout` for the store's connections
    /// (`PgStoreOptions::idle_transaction_timeout`); zero leaves the server's.
    pub(crate) idle_transaction_timeout: Duration,
}

/// Sets the server's `idle_in_transaction_session_timeout` of a store connection to
/// `timeout`, unless it is zero, or the connection string, the database or the role set
/// the timeout (`ALTER DATABASE` / `ALTER ROLE .. SET`): those are kept. Whether it set it.
fn limit_idle_transactions(
    client: &mut Client,
    timeout: Duration,
) -> Result<bool, postgres::Error> {
    if timeout.is_zero() {
        return Ok(false);
    }
    let millis = timeout
        .as_millis()
        .clamp(1, u128::from(LONGEST_IDLE_TIMEOUT_MS))
        .to_string();
    client
        .query(
            "SELECT set_config('idle_in_transaction_session_timeout', $1, false) FROM pg_settings
             WHERE name = 'idle_in_transaction_session_timeout'
             AND source NOT IN ('client', 'database', 'user', 'database user')",
            &[&millis],
        )
        .map(|rows| !rows.is_empty())
}

impl r2d2::ManageConnection for Manager {
    type Connection = Conn;
    type Error = postgres::Error;

    fn connect(&self) -> Result<Conn, postgres::Error> {
        let mut client = self.config.connect(NoTls)?;
        pin_session(&mut client)?;
        let limited = limit_idle_transactions(&mut client, self.idle_transaction_timeout)?;
        plan_for_current_size(&mut client)?;
        Ok(Conn {
            client,
            statements: Default::default(),
            broken: false,
            idle_transaction_timeout: limited.then_some(self.idle_transaction_timeout),
        })
    }

    fn is_valid(&self, conn: &mut Conn) -> Result<(), postgres::Error> {
        conn.client.simple_query("").map(|_| ())
    }

    fn has_broken(&self, conn: &mut Conn) -> bool {
        conn.broken || conn.client.is_closed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use r2d2::ManageConnection;

    /// Large groups get a second per 128 KiB on top of the base, never more than the
    /// server takes (a base of days, or `Duration::MAX`, made every large append fail, or
    /// panicked the committing thread).
    #[test]
    fn a_large_group_gets_time_to_send_within_what_the_server_takes() {
        let ten = Duration::from_secs(10);
        assert_eq!(idle_timeout_for(ten, 1000), None);
        assert_eq!(
            idle_timeout_for(ten, 3 * SLOWEST_LINK_BYTES_PER_SECOND),
            Some(Duration::from_secs(13))
        );
        let longest = Duration::from_millis(LONGEST_IDLE_TIMEOUT_MS);
        let days = Duration::from_secs(20 * 86_400);
        assert_eq!(idle_timeout_for(days, 1 << 40), Some(longest));
        assert_eq!(
            idle_timeout_for(Duration::from_secs(30 * 86_400), 1 << 20),
            None
        );
        assert_eq!(idle_timeout_for(Duration::MAX, usize::MAX), None);
        assert_eq!(idle_timeout_for(longest, 1 << 20), None);
    }

    fn show(client: &mut Client, name: &str) -> String {
        client
            .query_one(&format!("SHOW {name}"), &[])
            .unwrap()
            .get(0)
    }

    #[test]
    fn store_connections_run_at_read_committed_and_commit_synchronously_whatever_the_server_defaults()
     {
        let Some(server) = crate::start_server(&[
            "default_transaction_isolation=serializable",
            "synchronous_commit=off",
        ]) else {
            return;
        };
        let manager = Manager {
            config: server.url.parse().unwrap(),
            idle_transaction_timeout: Duration::from_secs(10),
        };
        let mut conn = manager.connect().unwrap();
        assert_eq!(
            show(&mut conn.client, "default_transaction_isolation"),
            "read committed"
        );
        assert_eq!(show(&mut conn.client, "synchronous_commit"), "on");
        assert_eq!(
            show(&mut conn.client, "idle_in_transaction_session_timeout"),
            "10s"
        );

        // a connection string that asks for commits without waiting keeps them
        let asked = format!(
            "{}?options=-c%20synchronous_commit%3Doff%20-c%20idle_in_transaction_session_timeout%3D7s",
            server.url
        );
        let manager = Manager {
            config: asked.parse().unwrap(),
            idle_transaction_timeout: Duration::from_secs(10),
        };
        let mut conn = manager.connect().unwrap();
        assert_eq!(show(&mut conn.client, "synchronous_commit"), "off");
        assert_eq!(
            show(&mut conn.client, "idle_in_transaction_session_timeout"),
            "7s"
        );

        // so does a value set for the database
        conn.client
            .batch_execute("ALTER DATABASE postgres SET idle_in_transaction_session_timeout = '9s'")
            .unwrap();
        let manager = Manager {
            config: server.url.parse().unwrap(),
            idle_transaction_timeout: Duration::from_secs(10),
        };
        let mut conn = manager.connect().unwrap();
        assert_eq!(
            show(&mut conn.client, "idle_in_transaction_session_timeout"),
            "9s"
        );
        assert_eq!(conn.idle_transaction_timeout, None);
        assert_eq!(
            show(&mut conn.client, "default_transaction_isolation"),
            "read committed"
        );
    }
}
