//! The group commit: appends queued by this process's threads are decided and written in
//! one transaction, each with its own expected-version check and idempotency check, and
//! each with its own outcome.
//!
//! One transaction of a group:
//!
//! 1. lock the rows of the group's streams (creating missing ones at version 0), in
//!    sorted order;
//! 2. lock the head row: the global position and the commit time, which never goes
//!    backwards (it is at least the previous commit's);
//! 3. look up the group's event ids (idempotent retries, ids stored elsewhere), only
//!    when it can change an outcome: after step 4 refused an append (a retry looks like a
//!    conflict), or in a second run after the insert met an id stored already. The look-up
//!    comes after the head lock, so that it sees every append committed before this one;
//! 4. decide each append in queue order against the locked versions: a conflict, a
//!    duplicate id or an idempotent retry is that append's outcome and writes nothing;
//! 5. write the accepted appends' events, the streams' versions and the head in one
//!    statement, which also notifies listeners; commit.
//!
//! The transaction runs at READ COMMITTED whatever the server's default, so that each
//! statement sees what committed before it; a serialization failure or a deadlock is run
//! again.
//!
//! Every writer in every process locks streams before the head, and streams in one
//! order, so appends cannot deadlock; the head row is held from step 3 to the commit, so
//! positions are handed out in commit order and a reader never sees a position before
//! every lower one is visible.
//!
//! If the transaction fails (not a decision: a database error), each append of the group
//! is tried again alone, so that an error stays with the append that caused it. An
//! append that lost its connection is tried again on another: it is idempotent by its
//! event ids, so a commit whose acknowledgement was lost is recognised, not repeated. When
//! a commit may have been stored and no later attempt succeeds, the append's error says
//! that its outcome is unknown.

use crate::conn::{Conn, Query};
use crate::error::{PgError, describe, is_connection_error, is_event_id_violation};
use crate::store::{Shared, WriteStats, split_time, to_i64};
use chrono::{DateTime, Utc};
use es_core::backend::{IdLocation, check_idempotent_retry};
use es_core::{AppendResult, Corruption, DataLocation, ExpectedVersion, NewEvent, StoreError};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, mpsc};
use uuid::Uuid;

/// An event checked and encoded for its columns.
pub(crate) struct Prepared {
    event_id: Uuid,
    event_type: String,
    schema_version: i64,
    /// The caller's time, split for `timestamptz` (`None`: the commit time).
    timestamp: Option<(DateTime<Utc>, i16)>,
    metadata: Option<String>,
    payload: String,
}

impl Prepared {
    /// Encodes a batch that passed `Limits::check_append`.
    pub(crate) fn batch(
        stream_id: &str,
        events: Vec<NewEvent>,
    ) -> Result<Vec<Prepared>, StoreError> {
        events
            .into_iter()
            .enumerate()
            .map(|(index, e)| {
                let invalid = |reason: String| StoreError::InvalidEvent {
                    stream_id: stream_id.to_owned(),
                    index,
                    event_type: e.event_type.clone(),
                    reason,
                };
                let timestamp = match e.timestamp {
                    None => None,
                    Some(t) => Some(split_time(t).ok_or_else(|| {
                        invalid(format!(
                            "the timestamp {t} is before 4713 BC, which PostgreSQL cannot store"
                        ))
                    })?),
                };
                let metadata =
                    if e.metadata.is_empty() {
                        None
                    } else {
                        Some(serde_json::to_string(&e.metadata).map_err(|err| {
                            invalid(format!("the metadata cannot be encoded: {err}"))
                        })?)
                    };
                let payload = String::from_utf8(e.payload.clone())
                    .map_err(|err| invalid(format!("the payload is not UTF-8: {err}")))?;
                Ok(Prepared {
                    event_id: e.event_id,
                    schema_version: i64::from(e.schema_version),
                    event_type: e.event_type,
                    timestamp,
                    metadata,
                    payload,
                })
            })
            .collect()
    }

    fn size(&self) -> usize {
        self.payload.len() + self.metadata.as_ref().map_or(0, String::len) + self.event_type.len()
    }
}

type Outcome = Result<AppendResult, StoreError>;

struct Request {
    stream_id: String,
    expected: ExpectedVersion,
    events: Vec<Prepared>,
    reply: mpsc::Sender<Outcome>,
}

#[derive(Default)]
struct Queue {
    pending: VecDeque<Request>,
    /// Whether a thread is committing a group now.
    leading: bool,
}

/// The queue of appends and the group-commit protocol: the first appender that finds no
/// commit under way takes the whole queue (within the group limits) and commits it;
/// the others wait for their outcome, and one of them leads the next group.
#[derive(Default)]
pub(crate) struct Committer {
    queue: Mutex<Queue>,
    turn: Condvar,
    appends: AtomicU64,
    transactions: AtomicU64,
}

fn lock(m: &Mutex<Queue>) -> MutexGuard<'_, Queue> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Hands the lead back when a group is done, even if committing it unwound.
struct Lead<'a>(&'a Committer);

impl Drop for Lead<'_> {
    fn drop(&mut self) {
        lock(&self.0.queue).leading = false;
        self.0.turn.notify_all();
    }
}

impl Committer {
    pub(crate) fn stats(&self) -> WriteStats {
        WriteStats {
            appends: self.appends.load(Ordering::Relaxed),
            transactions: self.transactions.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn append(
        &self,
        shared: &Shared,
        stream_id: String,
        expected: ExpectedVersion,
        events: Vec<Prepared>,
    ) -> Outcome {
        let (reply, outcome) = mpsc::channel();
        let mut queue = lock(&self.queue);
        queue.pending.push_back(Request {
            stream_id,
            expected,
            events,
            reply,
        });
        loop {
            match outcome.try_recv() {
                Ok(result) => return result,
                Err(mpsc::TryRecvError::Disconnected) => {
                    // the thread committing this append's group panicked before it could
                    // say how the group ended
                    return Err(StoreError::Backend(
                        "the thread committing this append's group panicked: the append may \
                         or may not be stored (resending it with the same event ids is safe)"
                            .into(),
                    ));
                }
                Err(mpsc::TryRecvError::Empty) => {}
            }
            if !queue.leading && !queue.pending.is_empty() {
                queue.leading = true;
                let group = take_group(&mut queue.pending, &shared.options);
                drop(queue);
                let lead = Lead(self);
                // a panic while committing (the synchronous client used from an async
                // thread, a driver's own) fails the group's appends, this one's included,
                // with an error each instead of unwinding through this caller alone
                let committed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    self.commit(shared, group)
                }));
                if committed.is_err() {
                    tracing::error!("committing a group of appends panicked; its appends fail");
                }
                drop(lead);
                queue = lock(&self.queue);
                continue;
            }
            queue = self.turn.wait(queue).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Commits a group and sends every append its outcome.
    fn commit(&self, shared: &Shared, group: Vec<Request>) {
        let outcomes = match run_with_retries(shared, &group, false) {
            Ok(outcomes) => {
                self.transactions.fetch_add(1, Ordering::Relaxed);
                outcomes
            }
            Err(failure) if group.len() > 1 && !failure.is_pool() => {
                // one append's failure must not fail its neighbours: each alone, knowing
                // whether the group's commit may have been stored
                let maybe_sent = failure.commit_maybe_sent;
                group
                    .iter()
                    .map(|request| {
                        match run_with_retries(shared, std::slice::from_ref(request), maybe_sent) {
                            Ok(mut one) => {
                                self.transactions.fetch_add(1, Ordering::Relaxed);
                                one.pop().unwrap_or_else(|| {
                                    Err(StoreError::Backend("no outcome".into()))
                                })
                            }
                            Err(failure) => {
                                failure.into_errors(std::slice::from_ref(request)).remove(0)
                            }
                        }
                    })
                    .collect()
            }
            Err(failure) => failure.into_errors(&group),
        };
        for (request, outcome) in group.iter().zip(outcomes) {
            if outcome.is_ok() {
                self.appends.fetch_add(1, Ordering::Relaxed);
            }
            // the appender is waiting for this; it cannot have gone
            let _ = request.reply.send(outcome);
        }
    }
}

/// Takes the next group from the queue: at least one append, then as many as the group
/// limits allow.
fn take_group(pending: &mut VecDeque<Request>, options: &crate::PgStoreOptions) -> Vec<Request> {
    let mut group = Vec::new();
    let mut bytes = 0usize;
    let mut events = 0usize;
    while let Some(next) = pending.front() {
        let size: usize = next.events.iter().map(Prepared::size).sum();
        if !group.is_empty()
            && (group.len() >= options.max_group_appends
                || bytes + size > options.max_group_bytes
                || events + next.events.len() > options.limits.max_batch_events.max(10_000))
        {
            break;
        }
        bytes += size;
        events += next.events.len();
        group.extend(pending.pop_front());
    }
    group
}

/// What made a group's transaction fail.
enum Cause {
    /// A statement failed.
    Database {
        error: postgres::Error,
        during: &'static str,
    },
    /// No connection could be had from the pool in time.
    Pool(String),
    /// A row the transaction read is not valid.
    Corrupted(Corruption),
}

/// Why a group's transaction failed.
struct Failure {
    cause: Cause,
    /// Whether a commit of the group may have been stored: a connection was lost after
    /// COMMIT was sent, in this attempt or an earlier one.
    commit_maybe_sent: bool,
}

impl Failure {
    fn database(during: &'static str) -> impl Fn(postgres::Error) -> Failure {
        move |error| Failure {
            cause: Cause::Database { error, during },
            commit_maybe_sent: false,
        }
    }

    fn corrupted(location: DataLocation, reason: String) -> Failure {
        Failure {
            cause: Cause::Corrupted(Corruption::new(location, reason)),
            commit_maybe_sent: false,
        }
    }

    fn is_pool(&self) -> bool {
        matches!(self.cause, Cause::Pool(_))
    }

    fn database_error(&self) -> Option<&postgres::Error> {
        match &self.cause {
            Cause::Database { error, .. } => Some(error),
            _ => None,
        }
    }

    /// The outcome of each append of `group`: when a commit may have been stored, that its
    /// outcome is unknown, whatever the last attempt met.
    fn into_errors(self, group: &[Request]) -> Vec<Outcome> {
        let unknown = |stream_id: &str, reason: String, source| -> StoreError {
            PgError::CommitOutcomeUnknown {
                stream_id: stream_id.to_owned(),
                reason,
                source,
            }
            .into()
        };
        let maybe_sent = self.commit_maybe_sent;
        match self.cause {
            Cause::Pool(message) => group
                .iter()
                .map(|r| {
                    Err(if maybe_sent {
                        unknown(
                            &r.stream_id,
                            format!("no database connection available: {message}"),
                            None,
                        )
                    } else {
                        PgError::Pool(message.clone()).into()
                    })
                })
                .collect(),
            cause => {
                let mut outcomes = Vec::with_capacity(group.len());
                let mut cause = Some(cause);
                for r in group {
                    let error = match cause.take() {
                        Some(Cause::Database { error, during }) if maybe_sent => unknown(
                            &r.stream_id,
                            format!("{during}: {}", describe(&error)),
                            Some(error),
                        ),
                        Some(Cause::Database { error, during }) => PgError::Database {
                            during,
                            source: error,
                        }
                        .into(),
                        Some(Cause::Corrupted(c)) if maybe_sent => {
                            unknown(&r.stream_id, c.to_string(), None)
                        }
                        Some(Cause::Corrupted(c)) => StoreError::Corrupted(c),
                        // a group that failed together is split before its errors are
                        // reported, so this is not reached
                        Some(Cause::Pool(_)) | None => StoreError::Backend(
                            "the transaction of this append's group failed".into(),
                        ),
                    };
                    outcomes.push(Err(error));
                }
                outcomes
            }
        }
    }
}

/// Whether the server rolled a transaction back to resolve a conflict with another one
/// (a serialization failure or a deadlock): running it again is safe.
fn is_transient(e: &postgres::Error) -> bool {
    use postgres::error::SqlState;
    e.code().is_some_and(|c| {
        *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED
    })
}

/// Most runs of a group's transaction after serialization failures and deadlocks.
const TRANSIENT_RETRIES: u32 = 10;

/// Runs a group's transaction, again on another connection after a lost connection (up to
/// the pool's size plus one), again after a serialization failure or a deadlock, and once
/// more after a unique violation of an event id (the other writer has committed by then,
/// and the look-up finds the id). `maybe_sent` says whether an earlier run's commit may
/// have been stored; then a failure is reported as an unknown outcome.
fn run_with_retries(
    shared: &Shared,
    group: &[Request],
    mut maybe_sent: bool,
) -> Result<Vec<Outcome>, Failure> {
    let mut lost = 0;
    let mut transient = 0;
    let mut violated = false;
    loop {
        let mut conn = match shared.pool.get() {
            Ok(c) => c,
            Err(e) => {
                return Err(Failure {
                    cause: Cause::Pool(e.to_string()),
                    commit_maybe_sent: maybe_sent,
                });
            }
        };
        match run_group(shared, &mut conn, group, violated) {
            Ok(outcomes) => return Ok(outcomes),
            Err(mut failure) => {
                maybe_sent |= failure.commit_maybe_sent;
                failure.commit_maybe_sent = maybe_sent;
                let Some(error) = failure.database_error() else {
                    return Err(failure);
                };
                conn.note(error);
                if is_connection_error(error) && lost < shared.retries() {
                    lost += 1;
                    continue;
                }
                if is_transient(error) && transient < TRANSIENT_RETRIES {
                    transient += 1;
                    std::thread::sleep(std::time::Duration::from_millis(u64::from(transient)));
                    continue;
                }
                if is_event_id_violation(error) && !violated {
                    violated = true;
                    continue;
                }
                return Err(failure);
            }
        }
    }
}

/// Where an event id of the group is stored (or being stored by an earlier append of the
/// group).
#[derive(Clone)]
struct Stored {
    stream_id: String,
    version: u64,
    position: u64,
    append_first_position: u64,
    append_len: u64,
}

/// The columns of the events a group writes.
#[derive(Default)]
struct Columns<'a> {
    positions: Vec<i64>,
    stream_ids: Vec<&'a str>,
    versions: Vec<i64>,
    ids: Vec<Uuid>,
    times: Vec<DateTime<Utc>>,
    time_ns: Vec<i16>,
    types: Vec<&'a str>,
    schema_versions: Vec<i64>,
    metadata: Vec<Option<&'a str>>,
    payloads: Vec<&'a str>,
    append_index: Vec<i32>,
    append_len: Vec<i32>,
}

/// One transaction of a group. The group's event ids are looked up only when `look_up`
/// is set (a second run after an insert met a stored id) or when an append would be
/// refused without them (a retry of a stored append looks like a conflict): an id stored
/// already that no decision looked up makes the insert fail on its unique key, and the
/// group runs again with the look-up. So a group of fresh appends takes five round trips.
fn run_group(
    shared: &Shared,
    conn: &mut Conn,
    group: &[Request],
    look_up: bool,
) -> Result<Vec<Outcome>, Failure> {
    let fail = Failure::database;
    let sql = &shared.sql;
    let lock_streams = conn
        .statement(sql, Query::LockStreams)
        .map_err(fail("preparing"))?;
    let find_ids = conn
        .statement(sql, Query::FindIds)
        .map_err(fail("preparing"))?;
    let lock_head = conn
        .statement(sql, Query::LockHead)
        .map_err(fail("preparing"))?;
    let idle_timeout = conn.idle_timeout_for(
        group
            .iter()
            .flat_map(|r| r.events.iter().map(Prepared::size))
            .sum(),
    );
    let write = conn
        .statement(sql, Query::Write)
        .map_err(fail("preparing"))?;

    let mut streams: Vec<&str> = group.iter().map(|r| r.stream_id.as_str()).collect();
    streams.sort_unstable();
    streams.dedup();
    let all_ids: Vec<Uuid> = group
        .iter()
        .flat_map(|r| r.events.iter().map(|e| e.event_id))
        .collect();

    // read committed whatever the server's default: each statement sees what committed
    // before it, and the locks, not snapshots, order the writers
    let mut tx = conn
        .client
        .build_transaction()
        .isolation_level(postgres::IsolationLevel::ReadCommitted)
        .start()
        .map_err(fail("starting a transaction"))?;
    // the server counts the time it takes to receive the write as idle: a large group
    // on a slow link is given the time to send it
    if let Some(timeout) = idle_timeout {
        tx.batch_execute(&format!(
            "SET LOCAL idle_in_transaction_session_timeout = '{}ms'",
            timeout.as_millis()
        ))
        .map_err(fail("allowing for the time the write takes to send"))?;
    }
    let mut versions: HashMap<String, u64> = HashMap::with_capacity(streams.len());
    for row in tx
        .query(&lock_streams, &[&streams])
        .map_err(fail("locking the streams"))?
    {
        let read = fail("reading the locked streams");
        let stream_id: String = row.try_get(0).map_err(&read)?;
        let version: i64 = row.try_get(1).map_err(&read)?;
        let Ok(version) = u64::try_from(version) else {
            return Err(Failure::corrupted(
                DataLocation::StoredEvent {
                    stream_id: Some(stream_id),
                    stream_version: None,
                    position: None,
                },
                format!("the stream's row in es_streams holds version {version}"),
            ));
        };
        versions.insert(stream_id, version);
    }
    let find = |tx: &mut postgres::Transaction<'_>| -> Result<HashMap<Uuid, Stored>, Failure> {
        let mut stored = HashMap::new();
        for row in tx
            .query(&find_ids, &[&all_ids])
            .map_err(fail("looking up event ids"))?
        {
            let read = fail("reading stored event ids");
            let (id, place) = stored_place(
                row.try_get(0).map_err(&read)?,
                row.try_get(1).map_err(&read)?,
                row.try_get(2).map_err(&read)?,
                row.try_get(3).map_err(&read)?,
                row.try_get(4).map_err(&read)?,
                row.try_get(5).map_err(&read)?,
            )?;
            stored.insert(id, place);
        }
        Ok(stored)
    };
    let head_row = tx
        .query_one(&lock_head, &[])
        .map_err(fail("locking the head"))?;
    // a value the row cannot give as these types (a commit time of 'infinity') is an
    // error of this append, never a panic of the thread committing its group
    let head = head_row
        .try_get::<_, i64>(0)
        .map_err(fail("reading the head"))?;
    let now: DateTime<Utc> = head_row.try_get(1).map_err(fail("reading the head"))?;
    let Ok(head) = u64::try_from(head) else {
        return Err(Failure::corrupted(
            DataLocation::StoredEvent {
                stream_id: None,
                stream_version: None,
                position: None,
            },
            format!("the head row (es_head) holds position {head}"),
        ));
    };
    // looked up with the head locked: every append that committed before this one took
    // the head is seen
    let mut stored = if look_up {
        find(&mut tx)?
    } else {
        HashMap::new()
    };

    let locked = versions.clone();
    let (mut outcomes, mut columns, mut next_position);
    let mut looked_up = look_up;
    loop {
        outcomes = Vec::with_capacity(group.len());
        columns = Columns::default();
        next_position = head + 1;
        versions.clone_from(&locked);
        let mut known = stored.clone();
        for request in group {
            let outcome = decide(request, &mut versions, &mut known, &mut next_position);
            if let Ok((result, true)) = &outcome {
                push_columns(&mut columns, request, result, now);
            }
            outcomes.push(outcome.map(|(result, _)| result));
        }
        if looked_up || outcomes.iter().all(Result::is_ok) {
            break;
        }
        // a refusal may be a retry of an append stored already: decide again knowing
        // where the group's ids are stored
        stored = find(&mut tx)?;
        looked_up = true;
    }
    if columns.positions.is_empty() {
        // nothing to write: the rollback also removes the rows made for new streams
        drop(tx);
        return Ok(outcomes);
    }
    let new_head = next_position - 1;
    let (moved_ids, moved_versions): (Vec<&str>, Vec<i64>) = versions
        .iter()
        .filter(|(s, v)| locked.get(*s) != Some(*v))
        .map(|(s, v)| (s.as_str(), *v as i64))
        .unzip();
    let unused: Vec<&str> = versions
        .iter()
        .filter(|(_, v)| **v == 0)
        .map(|(s, _)| s.as_str())
        .collect();
    let c = &columns;
    tx.query(
        &write,
        &[
            &c.positions,
            &c.stream_ids,
            &c.versions,
            &c.ids,
            &c.times,
            &c.time_ns,
            &c.types,
            &c.schema_versions,
            &c.metadata,
            &c.payloads,
            &c.append_index,
            &c.append_len,
            &moved_ids,
            &moved_versions,
            &unused,
            &(new_head as i64),
            &now,
            &shared.channel,
            &new_head.to_string(),
        ],
    )
    .map_err(fail("writing the events"))?;
    tx.commit().map_err(|error| Failure {
        // the server may have committed before the connection died; not when it says it
        // ended the session for idling in the transaction, which it rolled back
        commit_maybe_sent: is_connection_error(&error)
            && error.code().is_none_or(|c| c.code() != "25P03"),
        cause: Cause::Database {
            error,
            during: "committing the events",
        },
    })?;
    shared.head.publish(new_head);
    Ok(outcomes)
}

/// Where a stored event id is, from its row; a row whose numbers cannot be an event's
/// (versions and positions start at 1, the event's place lies within its append) is
/// reported as corrupted.
fn stored_place(
    id: Uuid,
    stream_id: String,
    version: i64,
    position: i64,
    index: i32,
    len: i32,
) -> Result<(Uuid, Stored), Failure> {
    let checked = (|| {
        let version = u64::try_from(version).ok().filter(|v| *v >= 1)?;
        let position = u64::try_from(position).ok().filter(|p| *p >= 1)?;
        let index = u64::try_from(index).ok()?;
        let len = u64::try_from(len).ok()?;
        (index < len && index < position).then_some((version, position, index, len))
    })();
    match checked {
        Some((version, position, index, len)) => Ok((
            id,
            Stored {
                stream_id,
                version,
                position,
                append_first_position: position - index,
                append_len: len,
            },
        )),
        None => Err(Failure::corrupted(
            DataLocation::StoredEvent {
                stream_id: Some(stream_id),
                stream_version: u64::try_from(version).ok(),
                position: u64::try_from(position).ok(),
            },
            format!(
                "the row of event id {id} holds stream version {version}, position {position}, \
                 place {index} of an append of {len}: versions and positions start at 1, and \
                 the place lies within the append"
            ),
        )),
    }
}

/// Decides one append against the locked state: `Ok((result, true))` to write it,
/// `Ok((original, false))` for an idempotent retry, or its error.
fn decide(
    request: &Request,
    versions: &mut HashMap<String, u64>,
    stored: &mut HashMap<Uuid, Stored>,
    next_position: &mut u64,
) -> Result<(AppendResult, bool), StoreError> {
    let stream_id = request.stream_id.as_str();
    let current = versions.get(stream_id).copied().unwrap_or(0);
    let ids: Vec<Uuid> = request.events.iter().map(|e| e.event_id).collect();
    let retry = check_idempotent_retry(stream_id, request.expected, &ids, current, |id| {
        stored.get(id).map(|s| IdLocation {
            same_stream: s.stream_id == stream_id,
            stream_version: s.version,
            position: s.position,
            append_first_position: s.append_first_position,
            append_len: s.append_len,
        })
    })?;
    if let Some(original) = retry {
        return Ok((original, false));
    }
    if !request.expected.accepts(current) {
        return Err(StoreError::Conflict {
            stream_id: stream_id.to_owned(),
            expected: request.expected,
            actual: current,
        });
    }
    let n = request.events.len() as u64;
    let first_position = *next_position;
    let out_of_range = |what: &'static str, value: u64| -> StoreError {
        PgError::OutOfRange {
            what,
            value: value.to_string(),
            reason: "positions and versions are stored as BIGINT",
        }
        .into()
    };
    if to_i64(first_position + n).is_none() {
        return Err(out_of_range("global position", first_position + n));
    }
    if to_i64(current + n).is_none() {
        return Err(out_of_range("stream version", current + n));
    }
    if i32::try_from(n).is_err() {
        return Err(StoreError::BatchTooLarge {
            stream_id: stream_id.to_owned(),
            reason: format!(
                "{n} events; the store takes at most {} per append",
                i32::MAX
            ),
        });
    }
    for (i, e) in request.events.iter().enumerate() {
        stored.insert(
            e.event_id,
            Stored {
                stream_id: stream_id.to_owned(),
                version: current + 1 + i as u64,
                position: first_position + i as u64,
                append_first_position: first_position,
                append_len: n,
            },
        );
    }
    *next_position += n;
    versions.insert(stream_id.to_owned(), current + n);
    Ok((
        AppendResult {
            first_version: current + 1,
            last_version: current + n,
            first_position,
            last_position: first_position + n - 1,
            retried: false,
        },
        true,
    ))
}

fn push_columns<'a>(
    c: &mut Columns<'a>,
    request: &'a Request,
    result: &AppendResult,
    now: DateTime<Utc>,
) {
    let n = request.events.len() as i32;
    for (i, e) in request.events.iter().enumerate() {
        let (time, ns) = e.timestamp.unwrap_or((now, 0));
        c.positions.push((result.first_position + i as u64) as i64);
        c.stream_ids.push(&request.stream_id);
        c.versions.push((result.first_version + i as u64) as i64);
        c.ids.push(e.event_id);
        c.times.push(time);
        c.time_ns.push(ns);
        c.types.push(&e.event_type);
        c.schema_versions.push(e.schema_version);
        c.metadata.push(e.metadata.as_deref());
        c.payloads.push(&e.payload);
        c.append_index.push(i as i32);
        c.append_len.push(n);
    }
}
