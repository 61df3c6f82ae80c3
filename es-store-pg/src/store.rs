//! `PgStore`: the event store contract over PostgreSQL tables, for many processes.

use crate::commit::{Committer, Prepared};
use crate::conn::{Conn, Manager, Query, Sql, drop_off_runtime, pin_session};
use crate::error::{ConnectError, PgError, db, is_connection_error};
use crate::listen::Listener;
use crate::schema;
use chrono::{DateTime, Datelike, Utc};
use es_core::backend::HeadSignal;
use es_core::snapshot::SnapshotStore;
use es_core::{
    AppendResult, Corruption, DataLocation, EventStore, EventStream, ExpectedVersion, Limits,
    Metadata, NewEvent, RecordedEvent, StoreError,
};
use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// The longest stream id, in bytes, that the store's `limits` may allow: the tables'
/// indexes hold each stream id with a version, and PostgreSQL refuses an index entry
/// longer than about 2,700 bytes.
pub const MAX_STREAM_ID_LEN: usize = 2048;

/// Options of [`PgStore::connect_with`].
///
/// ```
/// use es_store_pg::PgStoreOptions;
/// use std::time::Duration;
/// let options = PgStoreOptions {
///     schema: "orders".into(),
///     max_connections: 4,
///     poll_interval: Duration::from_millis(100),
///     ..PgStoreOptions::default()
/// };
/// assert!(!options.read_only);
/// ```
#[derive(Debug, Clone)]
pub struct PgStoreOptions {
    /// The PostgreSQL schema that holds the tables (default `public`). Several stores can
    /// share a database, one schema each. Lowercase letters, digits and `_`.
    pub schema: String,
    /// Size limits on what is appended. `max_stream_id_len` may not exceed
    /// [`MAX_STREAM_ID_LEN`].
    pub limits: Limits,
    /// Most connections the store opens (default 8): one at a time commits appends, the
    /// others serve reads.
    pub max_connections: u32,
    /// How long an operation waits for a connection, and for a new one to be opened
    /// (default 10 s). While the server restarts, operations wait up to this long.
    pub connect_timeout: Duration,
    /// How often a waiting subscriber reads the head when no notification arrives
    /// (default 200 ms). Notifications only wake subscribers sooner; this poll is what
    /// they rely on.
    pub poll_interval: Duration,
    /// Refuse appends and snapshot writes, and create nothing: for a read replica (whose
    /// tables must already exist at this build's version).
    pub read_only: bool,
    /// Most appends committed in one transaction by the group commit (default 256).
    pub max_group_appends: usize,
    /// Most bytes of events committed in one transaction, unless one append alone is
    /// larger (default 32 MiB).
    pub max_group_bytes: usize,
    /// How long the server lets one of the store's transactions wait on this process
    /// between two statements before it ends the session (the server's
    /// `idle_in_transaction_session_timeout`, set for the store's connections; default
    /// 10 s, zero leaves the server's setting; a value the connection string, the
    /// database or the role sets is kept). Where the store set it, a group of appends
    /// larger than 128 KiB is given one more second per 128 KiB, the time a slow link
    /// takes to send it (the server counts receiving a statement as idle time).
    ///
    /// A commit holds the lock on the log's head from its first statement to `COMMIT`:
    /// a process that freezes in between (stopped, paused in a debugger, cut off the
    /// network while its socket stays open) would otherwise hold up the appends of every
    /// process sharing the store for as long as it stays frozen. The server rolls such a
    /// transaction back, and the frozen process, when it wakes, finds its connection
    /// closed: its append is retried, or reported as `CommitOutcomeUnknown` if its
    /// `COMMIT` may have been sent, as after any lost connection. The store's own
    /// transactions send their statements back to back, in milliseconds.
    pub idle_transaction_timeout: Duration,
}

impl Default for PgStoreOptions {
    fn default() -> Self {
        PgStoreOptions {
            schema: "public".into(),
            limits: Limits::default(),
            max_connections: 8,
            connect_timeout: Duration::from_secs(10),
            poll_interval: Duration::from_millis(200),
            read_only: false,
            max_group_appends: 256,
            max_group_bytes: 32 * 1024 * 1024,
            idle_transaction_timeout: Duration::from_secs(10),
        }
    }
}

/// Counters of the writer, since the store was connected.
///
/// ```
/// let stats = es_store_pg::WriteStats::default();
/// assert_eq!((stats.appends, stats.transactions), (0, 0));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Appends acknowledged (idempotent retries included).
    pub appends: u64,
    /// Transactions that committed appends: fewer than `appends` when the group commit
    /// joined concurrent appends.
    pub transactions: u64,
}

/// An event store in a PostgreSQL database, shared by any number of processes.
///
/// Global positions are dense and in commit order across every process; appends are
/// checked against their expected version with the stream's row locked; concurrent
/// appends of one process share a transaction (group commit). `PgStore` is `Send + Sync`:
/// share one per process (in an `Arc`).
///
/// ```no_run
/// use es_core::{EventStore, ExpectedVersion, NewEvent};
/// use es_store_pg::PgStore;
/// let store = PgStore::connect("postgres://es@localhost/es").unwrap();
/// let e = NewEvent::new("CartCreated", 1, br#"{"user":"ann"}"#.to_vec());
/// let r = store.append("cart-1", ExpectedVersion::NoStream, vec![e]).unwrap();
/// assert_eq!(r.first_version, 1);
/// ```
pub struct PgStore {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("schema", &self.shared.options.schema)
            .field("read_only", &self.shared.options.read_only)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Shared {
    pub(crate) options: PgStoreOptions,
    pub(crate) config: postgres::Config,
    /// Dropped off the caller's thread ([`drop_off_runtime`]).
    pub(crate) pool: std::mem::ManuallyDrop<r2d2::Pool<Manager>>,
    pub(crate) sql: Sql,
    /// The NOTIFY channel of this store's tables.
    pub(crate) channel: String,
    /// The newest head this process knows of: its own commits and notifications.
    pub(crate) head: Arc<HeadSignal>,
    pub(crate) committer: Committer,
    listener: OnceLock<Listener>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // SAFETY: the pool is taken once, here, and `self` is not used after
        let pool = unsafe { std::mem::ManuallyDrop::take(&mut self.pool) };
        drop_off_runtime(pool);
    }
}

/// Events read per statement, to start with: pages grow while events are small and
/// shrink when they are large.
const FIRST_PAGE: i64 = 128;
const MIN_PAGE: i64 = 16;
const MAX_PAGE: i64 = 2048;
/// Bytes a page aims at: the statement returns no event after those that reach this
/// (payloads, metadata, types and stream ids), so that a page holds at most this plus one
/// event, whatever the sizes of the events before it.
const PAGE_BYTES: i64 = 4 * 1024 * 1024;

impl PgStore {
    /// Connects with default options, creating the tables in schema `public` if they are
    /// missing and upgrading them if they are older than this build.
    ///
    /// `url` is a connection string in either form PostgreSQL accepts
    /// (`postgres://user:password@host:port/database` or `host=... user=...`).
    ///
    /// ```no_run
    /// let store = es_store_pg::PgStore::connect("host=localhost user=es dbname=es").unwrap();
    /// ```
    pub fn connect(url: &str) -> Result<PgStore, ConnectError> {
        Self::connect_with(url, PgStoreOptions::default())
    }

    /// Connects with `options`.
    ///
    /// ```no_run
    /// use es_store_pg::{PgStore, PgStoreOptions};
    /// // a replica: reads, subscriptions and projections; appends are refused
    /// let replica = PgStore::connect_with(
    ///     "postgres://es@replica.internal/es",
    ///     PgStoreOptions { read_only: true, ..PgStoreOptions::default() },
    /// ).unwrap();
    /// ```
    pub fn connect_with(url: &str, options: PgStoreOptions) -> Result<PgStore, ConnectError> {
        schema::check_schema_name(&options.schema)?;
        options
            .limits
            .validate()
            .map_err(|e| ConnectError::InvalidOptions(e.to_string()))?;
        if options.max_connections == 0 {
            return Err(ConnectError::InvalidOptions(
                "max_connections is 0: the store needs at least one connection".into(),
            ));
        }
        if options.poll_interval.is_zero() || options.connect_timeout.is_zero() {
            return Err(ConnectError::InvalidOptions(
                "poll_interval and connect_timeout must be above zero".into(),
            ));
        }
        if options.limits.max_stream_id_len > MAX_STREAM_ID_LEN {
            return Err(ConnectError::InvalidOptions(format!(
                "max_stream_id_len is {}, above {MAX_STREAM_ID_LEN} bytes, the longest stream id PostgreSQL's indexes take (an index entry holds at most about 2,700 bytes)",
                options.limits.max_stream_id_len
            )));
        }
        if options.max_group_appends == 0 {
            return Err(ConnectError::InvalidOptions(
                "max_group_appends is 0: a group holds at least one append".into(),
            ));
        }
        let mut config: postgres::Config = url.parse().map_err(ConnectError::InvalidUrl)?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(options.connect_timeout);
        }
        if config.get_application_name().is_none() {
            config.application_name("es-store-pg");
        }
        let mut client = config
            .connect(postgres::NoTls)
            .map_err(ConnectError::Connect)?;
        // the set-up waits for another process's set-up on an advisory lock and then reads
        // the version that process recorded: under a default of repeatable read or
        // serializable its snapshot, taken before the wait, would not show it, and it
        // would create the tables again
        pin_session(&mut client).map_err(|source| ConnectError::Database {
            during: "setting the session's isolation and commit settings",
            source,
        })?;
        if options.read_only {
            schema::check(&mut client, &options.schema)?;
        } else {
            schema::set_up(&mut client, &options.schema)?;
        }
        let head: i64 = client
            .query_one(
                &format!(
                    "SELECT position FROM {}.es_head",
                    schema::quoted(&options.schema)
                ),
                &[],
            )
            .and_then(|row| row.try_get(0))
            .map_err(|source| ConnectError::Database {
                during: "reading the head position",
                source,
            })?;
        drop(client);
        let pool = r2d2::Pool::builder()
            .max_size(options.max_connections)
            .min_idle(Some(0))
            .test_on_check_out(false)
            .connection_timeout(options.connect_timeout)
            .idle_timeout(Some(Duration::from_secs(300)))
            .build_unchecked(Manager {
                config: crate::listen::with_keepalives(&config),
                idle_transaction_timeout: options.idle_transaction_timeout,
            });
        let quoted = schema::quoted(&options.schema);
        Ok(PgStore {
            shared: Arc::new(Shared {
                sql: Sql::new(&quoted),
                channel: format!("es_head_{}", options.schema),
                head: Arc::new(HeadSignal::new(head.max(0) as u64)),
                committer: Committer::default(),
                listener: OnceLock::new(),
                config,
                pool: std::mem::ManuallyDrop::new(pool),
                options,
            }),
        })
    }

    /// The options the store was connected with.
    ///
    /// ```no_run
    /// let store = es_store_pg::PgStore::connect("postgres://es@localhost/es").unwrap();
    /// assert_eq!(store.options().schema, "public");
    /// ```
    pub fn options(&self) -> &PgStoreOptions {
        &self.shared.options
    }

    /// Writer counters since connect: appends and the transactions that carried them.
    ///
    /// ```no_run
    /// let store = es_store_pg::PgStore::connect("postgres://es@localhost/es").unwrap();
    /// let stats = store.write_stats();
    /// assert!(stats.transactions <= stats.appends);
    /// ```
    pub fn write_stats(&self) -> WriteStats {
        self.shared.committer.stats()
    }
}

impl Shared {
    /// Runs `f` on a pooled connection. A statement that fails because the connection is
    /// gone (a server restart, a dropped socket) is run again on another one: reads only,
    /// and appends, which are idempotent by event id.
    pub(crate) fn with_conn<T>(
        &self,
        during: &'static str,
        mut f: impl FnMut(&Sql, &mut Conn) -> Result<T, postgres::Error>,
    ) -> Result<T, StoreError> {
        let mut attempts = 0;
        loop {
            let mut conn = self.connection()?;
            match f(&self.sql, &mut conn) {
                Ok(v) => return Ok(v),
                Err(e) => {
                    conn.note(&e);
                    if is_connection_error(&e) && attempts < self.retries() {
                        attempts += 1;
                        continue;
                    }
                    return Err(db(during)(e));
                }
            }
        }
    }

    /// How many times an operation is run again after losing its connection: enough to
    /// go through a pool full of connections a restart has closed.
    pub(crate) fn retries(&self) -> u32 {
        self.options.max_connections + 1
    }

    pub(crate) fn connection(&self) -> Result<r2d2::PooledConnection<Manager>, StoreError> {
        self.pool
            .get()
            .map_err(|e| PgError::Pool(e.to_string()).into())
    }

    fn head_position(&self) -> Result<u64, StoreError> {
        let head: i64 = self.with_conn("reading the head position", |sql, conn| {
            let s = conn.statement(sql, Query::Head)?;
            conn.client
                .query_one(&s, &[])
                .inspect_err(|e| conn.note(e))
                .and_then(|r| r.try_get(0))
        })?;
        nonnegative(head, "head position")
    }

    fn listener(&self) -> &Listener {
        self.listener.get_or_init(|| {
            Listener::spawn(
                self.config.clone(),
                self.channel.clone(),
                Arc::clone(&self.head),
            )
        })
    }
}

impl EventStore for PgStore {
    fn append(
        &self,
        stream_id: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        let shared = &*self.shared;
        if shared.options.read_only {
            return Err(StoreError::ReadOnly(
                "the store was connected read-only".into(),
            ));
        }
        shared.options.limits.check_append(stream_id, &events)?;
        let prepared = Prepared::batch(stream_id, events)?;
        shared
            .committer
            .append(shared, stream_id.to_owned(), expected, prepared)
    }

    fn read_stream(
        &self,
        stream_id: &str,
        from_version: u64,
    ) -> Result<EventStream<'_>, StoreError> {
        self.shared.options.limits.check_stream_id(stream_id)?;
        Ok(Box::new(Pages::new(
            &self.shared,
            Cursor::Stream {
                stream_id: stream_id.to_owned(),
                next_version: from_version.max(1),
            },
        )))
    }

    fn read_all(&self, from_position: u64) -> Result<EventStream<'_>, StoreError> {
        Ok(Box::new(Pages::new(
            &self.shared,
            Cursor::All {
                next_position: from_position.max(1),
            },
        )))
    }

    fn stream_version(&self, stream_id: &str) -> Result<u64, StoreError> {
        self.shared.options.limits.check_stream_id(stream_id)?;
        let version: Option<i64> =
            self.shared
                .with_conn("reading a stream version", |sql, conn| {
                    let s = conn.statement(sql, Query::StreamVersion)?;
                    conn.client
                        .query_opt(&s, &[&stream_id])
                        .inspect_err(|e| conn.note(e))
                        .and_then(|r| r.map(|r| r.try_get(0)).transpose())
                })?;
        nonnegative(version.unwrap_or(0), "stream version")
    }

    fn head_position(&self) -> Result<u64, StoreError> {
        self.shared.head_position()
    }

    /// Waits for the head to pass `position`. Notifications (LISTEN/NOTIFY) and this
    /// process's own commits wake the wait early; the head is read from the database
    /// every [`poll_interval`](PgStoreOptions::poll_interval) regardless, so that a lost
    /// notification (a dropped connection, a replica, which cannot listen) only delays.
    fn wait_for_head(&self, position: u64, timeout: Duration) -> Result<u64, StoreError> {
        let shared = &*self.shared;
        shared.listener();
        let deadline = es_core::store::deadline_after(timeout);
        // set when a wake-up promised a head the database did not show (the hint of a
        // store whose tables were replaced): then the next wait is a plain sleep
        let mut woken_in_vain = false;
        loop {
            let head = shared.head_position()?;
            shared.head.publish(head);
            let now = Instant::now();
            if head > position || now >= deadline {
                return Ok(head);
            }
            let slice = (deadline - now).min(shared.options.poll_interval);
            if woken_in_vain {
                std::thread::sleep(slice);
                woken_in_vain = false;
            } else {
                woken_in_vain = shared.head.wait(position, slice) > position;
            }
        }
    }

    fn snapshots(&self) -> Option<&dyn SnapshotStore> {
        Some(self)
    }

    /// One probe of the events table's unique key on event ids.
    fn version_of_event(
        &self,
        stream_id: &str,
        event_id: uuid::Uuid,
    ) -> Result<Option<u64>, StoreError> {
        self.shared.options.limits.check_stream_id(stream_id)?;
        let version: Option<i64> =
            self.shared
                .with_conn("looking up an event id", |sql, conn| {
                    let s = conn.statement(sql, Query::EventVersion)?;
                    conn.client
                        .query_opt(&s, &[&event_id, &stream_id])
                        .inspect_err(|e| conn.note(e))
                        .and_then(|r| r.map(|r| r.try_get(0)).transpose())
                })?;
        version
            .map(|v| {
                from_one(v).ok_or_else(|| {
                    StoreError::Corrupted(Corruption::new(
                        DataLocation::StoredEvent {
                            stream_id: Some(stream_id.to_owned()),
                            stream_version: None,
                            position: None,
                        },
                        format!("the row of event id {event_id} holds stream version {v}; versions start at 1"),
                    ))
                })
            })
            .transpose()
    }
}

/// What a read is walking.
enum Cursor {
    All {
        next_position: u64,
    },
    Stream {
        stream_id: String,
        next_version: u64,
    },
}

/// A streaming read: one statement per page, each on a connection taken from the pool
/// for that statement only, so that a slow reader holds no connection between pages.
struct Pages<'a> {
    shared: &'a Shared,
    cursor: Cursor,
    page: i64,
    buffer: VecDeque<RecordedEvent>,
    finished: bool,
}

impl<'a> Pages<'a> {
    fn new(shared: &'a Shared, cursor: Cursor) -> Self {
        Pages {
            shared,
            cursor,
            page: FIRST_PAGE,
            buffer: VecDeque::new(),
            finished: false,
        }
    }

    fn fetch(&mut self) -> Result<(), StoreError> {
        let limit = self.page;
        let rows = match &self.cursor {
            Cursor::All { next_position } => {
                let Some(from) = to_i64(*next_position) else {
                    self.finished = true;
                    return Ok(());
                };
                self.shared.with_conn("reading the log", |sql, conn| {
                    let s = conn.statement(sql, Query::ReadAll)?;
                    conn.client
                        .query(&s, &[&from, &limit, &PAGE_BYTES])
                        .inspect_err(|e| conn.note(e))
                })?
            }
            Cursor::Stream {
                stream_id,
                next_version,
            } => {
                let Some(from) = to_i64(*next_version) else {
                    self.finished = true;
                    return Ok(());
                };
                self.shared.with_conn("reading a stream", |sql, conn| {
                    let s = conn.statement(sql, Query::ReadStream)?;
                    conn.client
                        .query(&s, &[stream_id, &from, &PAGE_BYTES, &limit])
                        .inspect_err(|e| conn.note(e))
                })?
            }
        };
        // the bytes of the page: the running total of its last row
        let bytes = match rows.last() {
            Some(row) => row.try_get::<_, i64>(10).map_err(|e| {
                StoreError::Corrupted(Corruption::new(
                    DataLocation::StoredEvent {
                        stream_id: None,
                        stream_version: None,
                        position: None,
                    },
                    format!("an event row cannot be read (its size): {e}"),
                ))
            })?,
            None => 0,
        };
        // a page cut short by its bytes is not the end of the log
        if (rows.len() as i64) < limit && bytes < PAGE_BYTES {
            self.finished = true;
        }
        for row in &rows {
            let event = decode_row(row)?;
            match &mut self.cursor {
                Cursor::All { next_position } => {
                    if event.position != *next_position {
                        return Err(StoreError::Corrupted(Corruption::new(
                            DataLocation::StoredEvent {
                                stream_id: Some(event.stream_id.clone()),
                                stream_version: Some(event.stream_version),
                                position: Some(event.position),
                            },
                            format!(
                                "the log has this position where {next_position} was expected: positions must be dense"
                            ),
                        )));
                    }
                    *next_position = event.position + 1;
                }
                Cursor::Stream { next_version, .. } => *next_version = event.stream_version + 1,
            }
            self.buffer.push_back(event);
        }
        self.page = if bytes > PAGE_BYTES {
            (self.page / 2).max(MIN_PAGE)
        } else if bytes < PAGE_BYTES / 4 {
            (self.page * 2).min(MAX_PAGE)
        } else {
            self.page
        };
        Ok(())
    }
}

impl Iterator for Pages<'_> {
    type Item = Result<RecordedEvent, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.buffer.is_empty()
            && !self.finished
            && let Err(e) = self.fetch()
        {
            self.finished = true;
            return Some(Err(e));
        }
        self.buffer.pop_front().map(Ok)
    }
}

/// Reads one event row (the columns of `conn::EVENT_COLUMNS`).
fn decode_row(row: &postgres::Row) -> Result<RecordedEvent, StoreError> {
    let unknown = DataLocation::StoredEvent {
        stream_id: None,
        stream_version: None,
        position: None,
    };
    let bad = |what: &str, e: &dyn std::fmt::Display| {
        StoreError::Corrupted(Corruption::new(
            unknown.clone(),
            format!("an event row cannot be read ({what}): {e}"),
        ))
    };
    let get = |i: usize| row.try_get::<_, i64>(i).map_err(|e| bad("number", &e));
    let stream_id: String = row.try_get(0).map_err(|e| bad("stream id", &e))?;
    let (stored_version, stored_position) = (get(1)?, get(2)?);
    let (Some(stream_version), Some(position)) =
        (from_one(stored_version), from_one(stored_position))
    else {
        return Err(StoreError::Corrupted(Corruption::new(
            DataLocation::StoredEvent {
                stream_id: Some(stream_id),
                stream_version: u64::try_from(stored_version).ok(),
                position: u64::try_from(stored_position).ok(),
            },
            format!(
                "the row holds stream version {stored_version} and position {stored_position}; both start at 1"
            ),
        )));
    };
    let at = |reason: String| {
        StoreError::Corrupted(Corruption::new(
            DataLocation::StoredEvent {
                stream_id: Some(stream_id.clone()),
                stream_version: Some(stream_version),
                position: Some(position),
            },
            reason,
        ))
    };
    let recorded_at: DateTime<Utc> = row.try_get(4).map_err(|e| at(e.to_string()))?;
    let recorded_ns: i16 = row.try_get(5).map_err(|e| at(e.to_string()))?;
    let timestamp = join_time(recorded_at, recorded_ns)
        .ok_or_else(|| at(format!("invalid sub-microsecond part {recorded_ns}")))?;
    let schema_version: i64 = row.try_get(7).map_err(|e| at(e.to_string()))?;
    let metadata: Option<String> = row.try_get(8).map_err(|e| at(e.to_string()))?;
    let metadata = match metadata {
        None => Metadata::default(),
        Some(text) => serde_json::from_str(&text)
            .map_err(|e| at(format!("the metadata is not valid: {e}")))?,
    };
    let payload: String = row.try_get(9).map_err(|e| at(e.to_string()))?;
    Ok(RecordedEvent {
        event_id: row.try_get(3).map_err(|e| at(e.to_string()))?,
        timestamp,
        event_type: row.try_get(6).map_err(|e| at(e.to_string()))?,
        schema_version: u32::try_from(schema_version)
            .map_err(|_| at(format!("schema version {schema_version} is out of range")))?,
        metadata,
        payload: payload.into_bytes(),
        stream_id,
        stream_version,
        position,
    })
}

pub(crate) fn nonnegative(v: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| {
        StoreError::Corrupted(Corruption::new(
            DataLocation::StoredEvent {
                stream_id: None,
                stream_version: None,
                position: None,
            },
            format!("negative {what} {v} stored"),
        ))
    })
}

/// A stored stream version or position of an event, which start at 1.
fn from_one(v: i64) -> Option<u64> {
    u64::try_from(v).ok().filter(|v| *v >= 1)
}

/// A position or version as a column value; `None` when it is past anything storable.
pub(crate) fn to_i64(v: u64) -> Option<i64> {
    i64::try_from(v).ok()
}

/// Splits a time into the microsecond `timestamptz` holds and the nanoseconds below it,
/// or `None` when PostgreSQL cannot store the year.
pub(crate) fn split_time(t: DateTime<Utc>) -> Option<(DateTime<Utc>, i16)> {
    // timestamptz covers 4713 BC (year -4712) to 294276 AD
    if t.year() < -4712 {
        return None;
    }
    let below = t.timestamp_subsec_nanos() % 1000;
    let micro = t - chrono::Duration::nanoseconds(i64::from(below));
    Some((micro, below as i16))
}

/// The inverse of [`split_time`].
pub(crate) fn join_time(micro: DateTime<Utc>, below: i16) -> Option<DateTime<Utc>> {
    if !(0..1000).contains(&below) {
        return None;
    }
    micro.checked_add_signed(chrono::Duration::nanoseconds(i64::from(below)))
}
