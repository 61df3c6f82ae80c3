//! The repository: load an aggregate, run a command on it, append what it decided.

use crate::aggregate::Aggregate;
use crate::cache::{CacheOptions, CacheStats, Cached, StateCache, Tip};
use crate::envelope::{Cause, EventDecodeError, Metadata, NewEvent};
use crate::event::{EncodeError, EventSet, IntoEvents};
use crate::snapshot::{SNAPSHOTS_KEPT, Snapshot};
use crate::store::{AppendResult, EventStore, ExpectedVersion, StoreError};
use chrono::{DateTime, Utc};
use std::collections::HashSet;
use std::marker::PhantomData;
use std::ops::{ControlFlow, Deref};
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// An aggregate's state and the stream version it reflects.
#[derive(Debug, Clone, Default)]
pub struct Loaded<A> {
    /// The state after folding every event up to `version`.
    pub state: A,
    /// The stream version folded in (0 for a stream with no events).
    pub version: u64,
}

impl<A> Deref for Loaded<A> {
    type Target = A;
    fn deref(&self) -> &A {
        &self.state
    }
}

/// What a successful command did.
#[derive(Debug, Clone)]
pub struct Executed<A: Aggregate> {
    /// The state after the new events.
    pub state: A,
    /// The stream version after the command.
    pub version: u64,
    /// The events the command decided on (empty when it decided nothing).
    pub events: Vec<A::Events>,
    /// Where they were written; `None` when there were no events.
    pub appended: Option<AppendResult>,
    /// How many times the command ran (more than 1 after conflicts).
    pub attempts: u32,
    /// For [`Repository::execute_caused_by`]: the cause had already been handled, so
    /// the command did not run again.
    pub already_applied: bool,
}

/// Why loading an aggregate failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// A stored event could not be decoded into the aggregate's event set.
    #[error(transparent)]
    Decode(#[from] EventDecodeError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn conflict_message(stream_id: &str, attempts: u32, actual: u64, expected: Option<u64>) -> String {
    match expected {
        Some(expected) => {
            let ran = match attempts {
                0 => "the command did not run".to_owned(),
                1 => "the command ran once".to_owned(),
                n => format!("the command ran {n} times"),
            };
            format!(
                "stream `{stream_id}` is at version {actual}, not at the expected version \
                 {expected}; nothing was appended ({ran})"
            )
        }
        None => format!(
            "stream `{stream_id}` kept changing: {attempts} attempts conflicted, the last at \
             version {actual}"
        ),
    }
}

/// Why a command failed. Nothing was appended.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError<E> {
    /// The command refused: the domain's own error.
    #[error("command rejected: {0}")]
    Rejected(E),
    /// Other writers kept changing the stream; the command ran `attempts` times. Or, from
    /// [`Repository::execute_expecting`], the stream is not at the `expected` version the
    /// caller read (the command ran only if the stream moved while it decided).
    #[error("{}", conflict_message(stream_id, *attempts, *actual, *expected))]
    Conflict {
        /// Stream id.
        stream_id: String,
        /// How many times the command ran.
        attempts: u32,
        /// The stream's version at the last conflict.
        actual: u64,
        /// The version the caller expected ([`Repository::execute_expecting`]); `None`
        /// when the repository chose it and retried.
        expected: Option<u64>,
    },
    /// A stored event could not be decoded.
    #[error(transparent)]
    Decode(EventDecodeError),
    /// An event the command decided on could not be encoded.
    #[error(transparent)]
    Encode(EncodeError),
    /// An event the command decided on does not read back from its encoding (a float
    /// that is not finite encodes as `null`, which the event cannot decode): stored, it
    /// would make the stream unreadable.
    #[error("event `{event_type}` does not read back from its encoding: {error}")]
    Unreadable {
        /// The event's type name.
        event_type: String,
        /// What decoding its encoding reported.
        #[source]
        error: crate::DecodeError,
    },
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
}

impl<E> CommandError<E> {
    /// The domain error, if the command refused.
    pub fn rejected(&self) -> Option<&E> {
        match self {
            CommandError::Rejected(e) => Some(e),
            _ => None,
        }
    }
}

impl<E> From<LoadError> for CommandError<E> {
    fn from(e: LoadError) -> Self {
        match e {
            LoadError::Decode(d) => CommandError::Decode(d),
            LoadError::Store(s) => CommandError::Store(s),
        }
    }
}

/// Loads aggregates of type `A` from store `S` and runs commands on them.
///
/// ```
/// use es_core::{MemoryStore, Repository};
/// # use es_core::doc_support::{Account, AccountError};
/// let accounts = Repository::<Account, _>::new(MemoryStore::new());
/// accounts.execute("7", |a| a.deposit(100)).unwrap();
/// let err = accounts.execute("7", |a| a.withdraw(500)).unwrap_err();
/// assert!(matches!(err.rejected(), Some(AccountError::InsufficientFunds { .. })));
/// let account = accounts.load("7").unwrap();
/// assert_eq!((account.balance, account.version), (100, 1));
/// ```
///
/// # The state cache
///
/// Without a cache, every command folds its aggregate's history (from the newest
/// snapshot, when the aggregate keeps them) before it decides: the cost of a command grows
/// with the stream. [`Repository::with_cache`] keeps recent states in memory (for
/// aggregates that are `Clone`), bounded by count and by bytes ([`CacheOptions`]); a
/// command then reads only the events appended since its cached state, usually none.
///
/// The cache never changes what a command sees. A cached state is the fold of the first
/// `version` events, and it is used only while the stream still holds, at that version,
/// the very event it was folded up to (its global position is checked, as for
/// snapshots), so other writers, other processes and other repositories on the same store
/// are seen as usual: their events are read and folded on top. A conflict, a failed read
/// or a failed append drops the entry, and the next command rebuilds the state from the
/// snapshot and the events; a rejected command, or one whose expected version is stale,
/// leaves the state it saw in the cache (it is current).
/// Clones of a repository share its cache, and the cache is safe to use from many
/// threads. Snapshots keep being written as without a cache, so a process that starts
/// cold still loads long streams from them.
///
/// ```
/// use es_core::{CacheOptions, MemoryStore, Repository};
/// # use es_core::doc_support::Account;
/// let accounts = Repository::<Account, _>::new(MemoryStore::new())
///     .with_cache(CacheOptions::default().max_entries(50_000).max_bytes(32 << 20));
/// accounts.execute("7", |a| a.deposit(100)).unwrap();
/// accounts.execute("7", |a| a.deposit(5)).unwrap(); // starts from the cached state
/// assert_eq!(accounts.cache_stats().unwrap().hits, 1);
/// assert_eq!(accounts.load("7").unwrap().balance, 105);
/// ```
pub struct Repository<A, S> {
    store: S,
    max_attempts: u32,
    cache: Option<Arc<StateCache<A>>>,
    snapshot_stats: Arc<std::sync::Mutex<SnapshotStats>>,
    _aggregate: PhantomData<fn() -> A>,
}

/// What a repository's snapshots have done ([`Repository::snapshot_stats`]): a snapshot
/// that cannot be written does not fail the command that took the stream across
/// `snapshot_every` (the events are stored), so it is counted here, and logged with
/// `tracing`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotStats {
    /// Snapshots written.
    pub written: u64,
    /// Snapshots that could not be written: the state did not encode (JSON cannot hold a
    /// map with tuple keys, say), or the store failed.
    pub failed: u64,
    /// Why the last one failed, naming its stream.
    pub last_failure: Option<String>,
}

/// Cheap when the store is (`Arc<FileStore>`, `&S`, …): handlers and tasks take a clone.
/// Clones share the state cache.
impl<A, S: Clone> Clone for Repository<A, S> {
    fn clone(&self) -> Self {
        Repository {
            store: self.store.clone(),
            max_attempts: self.max_attempts,
            cache: self.cache.clone(),
            snapshot_stats: Arc::clone(&self.snapshot_stats),
            _aggregate: PhantomData,
        }
    }
}

impl<A: Aggregate + Clone, S: EventStore> Repository<A, S> {
    /// Keeps recent states between commands, within `options`' bounds, so that a command
    /// reads only the events appended since (see [the state cache](Repository#the-state-cache)).
    /// An entry is weighed as the size of `A` itself; states that own heap data (maps,
    /// vectors, strings) are better weighed by [`Repository::with_cache_weighed`].
    ///
    /// It replaces any cache set before; clones made afterwards share the new one.
    pub fn with_cache(self, options: CacheOptions) -> Self {
        self.with_cache_weighed(options, |_| std::mem::size_of::<A>())
    }

    /// [`Repository::with_cache`] with `weigh` estimating a state's size in bytes, which
    /// the byte bound of `options` counts.
    ///
    /// ```
    /// use es_core::{CacheOptions, MemoryStore, Repository};
    /// # use es_core::doc_support::Account;
    /// let accounts = Repository::<Account, _>::new(MemoryStore::new()).with_cache_weighed(
    ///     CacheOptions::default().max_bytes(1 << 20),
    ///     // a state owning heap data would add what it holds there
    ///     |account| std::mem::size_of_val(account),
    /// );
    /// # let _ = accounts;
    /// ```
    pub fn with_cache_weighed(mut self, options: CacheOptions, weigh: fn(&A) -> usize) -> Self {
        self.cache = Some(Arc::new(StateCache::new(options, A::clone, weigh)));
        self
    }
}

/// The event a folded state ends with, which the stream must still hold at the state's
/// version for the state to be folded on: its global position (0: any) and, for a
/// snapshot, its recorded time. Positions alone do not tell histories apart: after a
/// crash took back events that were acknowledged but not yet durable, new events take
/// their versions and positions again, never their times.
#[derive(Debug, Clone, Copy)]
struct Anchor {
    position: u64,
    at: Option<DateTime<Utc>>,
    /// The event's id, for a cached state (which knows it): a history whose log end moved
    /// back under a running process (a failover that lost commits) gives the same version
    /// and position to another event, recorded at another time with another id.
    event_id: Option<Uuid>,
}

impl<A: Aggregate, S: EventStore> Repository<A, S> {
    /// A repository over `store` that runs a conflicting command at most 5 times, with no
    /// state cache (see [`Repository::with_cache`]).
    pub fn new(store: S) -> Self {
        Repository {
            store,
            max_attempts: 5,
            cache: None,
            snapshot_stats: Arc::default(),
            _aggregate: PhantomData,
        }
    }

    /// Sets how many times a command runs before a conflict is reported (at least 1).
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Turns the state cache off: every command folds the stream from its newest snapshot.
    /// Clones made before keep the cache.
    pub fn without_cache(mut self) -> Self {
        self.cache = None;
        self
    }

    /// What the state cache holds and has done; `None` without a cache.
    pub fn cache_stats(&self) -> Option<CacheStats> {
        self.cache.as_ref().map(|c| c.stats())
    }

    /// How many snapshots this repository and its clones wrote, how many could not be
    /// written, and why the last one failed. Check it in a test of an aggregate with
    /// `snapshot_every`: a state that does not encode is never snapshotted, and every
    /// load then folds the whole history.
    pub fn snapshot_stats(&self) -> SnapshotStats {
        self.snapshot_stats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Empties the state cache (shared with this repository's clones); the next command
    /// on each aggregate rebuilds its state from the store.
    pub fn clear_cache(&self) {
        if let Some(cache) = &self.cache {
            cache.clear();
        }
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The store, given back: to close a store the repository owns and see what closing
    /// reports (`FileStore::close`).
    ///
    /// ```
    /// use es_core::doc_support::Account;
    /// use es_core::{EventStore, MemoryStore, Repository};
    ///
    /// let accounts = Repository::<Account, _>::new(MemoryStore::new());
    /// accounts.execute("7", |a| a.deposit(5)).unwrap();
    /// let store = accounts.into_store();
    /// assert_eq!(store.head_position().unwrap(), 1);
    /// ```
    pub fn into_store(self) -> S {
        self.store
    }

    /// The stream id of instance `id`.
    pub fn stream_id(&self, id: &str) -> String {
        A::stream_id(id)
    }

    /// The stream of instance `id`, refusing an empty id (it would name the stream
    /// `"{KIND}-"`, which no instance should share).
    fn stream_of(&self, id: &str) -> Result<String, StoreError> {
        if id.is_empty() {
            return Err(StoreError::InvalidStreamId {
                stream_id: A::stream_id(id),
                reason: format!("the {} id is empty", A::KIND),
            });
        }
        Ok(A::stream_id(id))
    }

    /// The current state of instance `id` (the default state at version 0 when it has no
    /// events). With a [state cache](Repository#the-state-cache), it starts from the
    /// cached state and keeps the state it returns.
    pub fn load(&self, id: &str) -> Result<Loaded<A>, LoadError> {
        let stream_id = self.stream_of(id)?;
        let (loaded, tip, from_cache) = self.current(&stream_id, false)?;
        if let Some(cache) = &self.cache
            && from_cache != Some(loaded.version)
        {
            cache.put(&stream_id, cache.copy(&loaded.state), loaded.version, tip);
        }
        Ok(loaded)
    }

    /// The state of instance `id` after its first `version` events (fewer when the stream
    /// is shorter; `Loaded::version` says how many were folded).
    pub fn load_at(&self, id: &str, version: u64) -> Result<Loaded<A>, LoadError> {
        Ok(self.fold(&self.stream_of(id)?, version, None)?.0)
    }

    /// The state of instance `id` as of `timestamp`: its events up to the first one recorded
    /// after `timestamp`. The store records its own appends in time order, so these are
    /// every event recorded at or before `timestamp`; of events imported with their own
    /// times out of order, the state is the longest run from the first event recorded by
    /// then, a state the stream had (skipping later events in the middle would make one
    /// it never had). It folds from the first event, without snapshots (they do not record
    /// when each of their events was recorded).
    pub fn load_as_of(&self, id: &str, timestamp: DateTime<Utc>) -> Result<Loaded<A>, LoadError> {
        Ok(self
            .fold(&self.stream_of(id)?, u64::MAX, Some(timestamp))?
            .0)
    }

    /// The recorded events of instance `id`, decoded, for audit views.
    pub fn history(&self, id: &str) -> Result<Vec<crate::Envelope<A::Events>>, LoadError> {
        let mut out = Vec::new();
        for recorded in self.store.read_stream(&self.stream_of(id)?, 1)? {
            if let Some(envelope) = recorded?.decode::<A::Events>()? {
                out.push(envelope);
            }
        }
        Ok(out)
    }

    /// The current state of `stream_id`, the global position of its last event (0 when
    /// unknown) and, when it started from a cached state, that state's version. It starts
    /// from the cached state if there is one (taking it out of the cache when `take`: the
    /// caller puts back the state it ends with), else from the newest usable snapshot.
    fn current(
        &self,
        stream_id: &str,
        take: bool,
    ) -> Result<(Loaded<A>, Tip, Option<u64>), LoadError> {
        if let Some(cache) = &self.cache {
            let cached = if take {
                cache.take(stream_id)
            } else {
                cache.get(stream_id)
            };
            if let Some(Cached {
                state,
                version,
                tip,
            }) = cached
            {
                let start = Loaded { state, version };
                let anchor = Anchor {
                    position: tip.position,
                    at: None,
                    event_id: tip.event_id,
                };
                match self.fold_from(stream_id, start, anchor, u64::MAX, None) {
                    Ok(Some((loaded, tip))) => return Ok((loaded, tip, Some(version))),
                    Ok(None) => {
                        tracing::warn!(
                            stream_id,
                            version,
                            "the stream no longer holds the event its cached state was folded up to; rebuilding from the store"
                        );
                        cache.invalidate(stream_id);
                    }
                    Err(e) => {
                        cache.invalidate(stream_id);
                        return Err(e);
                    }
                }
            }
        }
        let (loaded, tip) = self.fold(stream_id, u64::MAX, None)?;
        Ok((loaded, tip, None))
    }

    /// Folds the stream up to `max_version` and, when given, events recorded at or before
    /// `as_of`, starting from the newest usable snapshot. Also returns the global position
    /// of the last event folded (0 when unknown).
    fn fold(
        &self,
        stream_id: &str,
        max_version: u64,
        as_of: Option<DateTime<Utc>>,
    ) -> Result<(Loaded<A>, Tip), LoadError> {
        // the newest snapshot first; one that does not match the stream's history (a crash
        // or a repair took back the events it was folded from) gives way to an older one
        let mut stale: Option<u64> = None;
        let mut below = max_version;
        for _ in 0..SNAPSHOTS_KEPT {
            let (snapshot, found_stale) = self.snapshot_start(stream_id, below, as_of);
            stale = stale.max(found_stale);
            let Some((start, anchor)) = snapshot else {
                break;
            };
            let version = start.version;
            if let Some(done) = self.fold_from(stream_id, start, anchor, max_version, as_of)? {
                self.replace_stale(stream_id, stale, &done.0, max_version, as_of);
                return Ok(done);
            }
            tracing::warn!(
                stream_id,
                version,
                "the snapshot does not match the stream's history; trying an older one"
            );
            stale = stale.max(Some(version));
            match version.checked_sub(1) {
                Some(v) if v > 0 => below = v,
                _ => break,
            }
        }
        let empty = Loaded {
            state: A::default(),
            version: 0,
        };
        let anchor = Anchor {
            position: 0,
            at: None,
            event_id: None,
        };
        let done = self
            .fold_from(stream_id, empty, anchor, max_version, as_of)?
            .unwrap_or_default();
        self.replace_stale(stream_id, stale, &done.0, max_version, as_of);
        Ok(done)
    }

    /// Replaces a stale snapshot (the newest found, at version `stale`) by the state just
    /// folded to the stream's end, so that the next load starts from it and does not warn
    /// again. Only a state at that version or later replaces it; an earlier one would
    /// not be the newest, and saving it on every load would rewrite the file for nothing.
    fn replace_stale(
        &self,
        stream_id: &str,
        stale: Option<u64>,
        done: &Loaded<A>,
        max_version: u64,
        as_of: Option<DateTime<Utc>>,
    ) {
        if stale.is_some_and(|v| done.version >= v)
            && max_version == u64::MAX
            && as_of.is_none()
            && done.version > 0
        {
            self.save_snapshot(stream_id, done);
        }
    }

    /// Folds events after `start.version`, returning the state and the global position of
    /// the last event folded. `None` when the stream does not hold, at `start.version`,
    /// the event `anchor` describes, the one the state was folded up to: a snapshot or
    /// cached state of another history, such as one a crash or a repair took back.
    fn fold_from(
        &self,
        stream_id: &str,
        mut loaded: Loaded<A>,
        anchor: Anchor,
        max_version: u64,
        as_of: Option<DateTime<Utc>>,
    ) -> Result<Option<(Loaded<A>, Tip)>, LoadError> {
        let Anchor {
            mut position,
            at,
            event_id,
        } = anchor;
        let mut last_id = event_id;
        let start_version = loaded.version;
        // a stream that still ends at the event the state was folded up to has nothing
        // more to fold: no read (an error here is met again by the read below). Only for
        // a state this process folded: a snapshot's event is also checked for its time
        if start_version > 0
            && at.is_none()
            && position != 0
            && let Ok(Some(end)) = self.store.stream_end(stream_id)
            && end.version == start_version
            && end.position == position
        {
            let tip = Tip { position, event_id };
            return Ok(Some((loaded, tip)));
        }
        // the events are lent by the store and only the event itself is decoded: a fold
        // keeps nothing of an event but what it changes in the state
        let mut anchored = start_version == 0;
        let mut failure = None;
        self.store
            .visit_stream(stream_id, start_version.max(1), &mut |e| {
                if !anchored {
                    // the first event read must be the one the state was folded up to
                    if e.stream_version == start_version
                        && (position == 0 || e.position == position)
                        && at.is_none_or(|t| e.timestamp == t)
                        && event_id.is_none_or(|id| e.event_id == id)
                    {
                        anchored = true;
                        position = e.position;
                        last_id = Some(e.event_id);
                        return ControlFlow::Continue(());
                    }
                    return ControlFlow::Break(());
                }
                if e.stream_version > max_version || as_of.is_some_and(|t| e.timestamp > t) {
                    return ControlFlow::Break(());
                }
                match <A::Events as EventSet>::decode(e.event_type, e.schema_version, e.payload) {
                    Ok(Some(event)) => loaded.state.apply_event(&event),
                    Ok(None) => {}
                    Err(error) => {
                        failure = Some(EventDecodeError {
                            stream_id: e.stream_id.to_owned(),
                            stream_version: e.stream_version,
                            position: e.position,
                            error,
                        });
                        return ControlFlow::Break(());
                    }
                }
                loaded.version = e.stream_version;
                position = e.position;
                last_id = Some(e.event_id);
                ControlFlow::Continue(())
            })?;
        if let Some(e) = failure {
            return Err(e.into());
        }
        if !anchored {
            return Ok(None);
        }
        let tip = Tip {
            position,
            event_id: last_id,
        };
        Ok(Some((loaded, tip)))
    }

    /// The state in the newest usable snapshot at or below `max_version`, if the aggregate
    /// and the store keep them, and the version of a snapshot found but stale (to be
    /// replaced).
    #[allow(clippy::type_complexity)]
    fn snapshot_start(
        &self,
        stream_id: &str,
        max_version: u64,
        as_of: Option<DateTime<Utc>>,
    ) -> (Option<(Loaded<A>, Anchor)>, Option<u64>) {
        // a load as of a time folds from the first event: a snapshot records when its last
        // event was recorded, not whether every event before it was recorded by then
        // (events imported with their own times need not be in order), so it could hold
        // an event the time leaves out
        if as_of.is_some() {
            return (None, None);
        }
        let (Some(policy), Some(snapshots)) = (A::snapshot_policy(), self.store.snapshots()) else {
            return (None, None);
        };
        let snapshot = match snapshots.load_snapshot(stream_id, max_version) {
            Ok(Some(found)) => found,
            Ok(None) => return (None, None),
            Err(e) => {
                tracing::warn!(
                    stream_id,
                    error = %e,
                    "cannot read the snapshot; rebuilding from events"
                );
                return (None, None);
            }
        };
        if snapshot.version == 0 {
            // a state folded from no event: nothing to anchor it, and an empty stream
            // needs no snapshot (the repository never saves one)
            tracing::warn!(stream_id, "ignoring a snapshot at version 0");
            return (None, None);
        }
        if snapshot.snapshot_version != policy.snapshot_version
            || snapshot.fingerprint != A::snapshot_fingerprint()
        {
            tracing::warn!(
                stream_id,
                version = snapshot.version,
                "ignoring a snapshot written for snapshot version {} (fingerprint {:#x}), the code is at {} ({:#x}); it is replaced once rebuilt",
                snapshot.snapshot_version,
                snapshot.fingerprint,
                policy.snapshot_version,
                A::snapshot_fingerprint()
            );
            return (None, Some(snapshot.version));
        }
        match A::decode_snapshot(&snapshot.state) {
            Some(Ok(state)) => (
                Some((
                    Loaded {
                        state,
                        version: snapshot.version,
                    },
                    Anchor {
                        position: snapshot.position,
                        // a snapshot without a position (0) is anchored by version alone
                        at: (snapshot.position != 0).then_some(snapshot.last_event_at),
                        event_id: None,
                    },
                )),
                None,
            ),
            Some(Err(e)) => {
                tracing::warn!(
                    stream_id,
                    version = snapshot.version,
                    error = %e,
                    "ignoring a snapshot that does not decode; it is replaced once rebuilt"
                );
                (None, Some(snapshot.version))
            }
            None => (None, None),
        }
    }

    /// Saves a snapshot when a command took the stream across a multiple of the
    /// aggregate's `snapshot_every`. Failures are logged, never returned: the command
    /// already succeeded.
    fn maybe_snapshot(&self, stream_id: &str, before: u64, loaded: &Loaded<A>) {
        let Some(policy) = A::snapshot_policy() else {
            return;
        };
        let every = policy.every.max(1);
        if before / every == loaded.version / every {
            return;
        }
        self.save_snapshot(stream_id, loaded);
    }

    /// Saves a snapshot of `loaded`. Failures are logged, never returned.
    fn save_snapshot(&self, stream_id: &str, loaded: &Loaded<A>) {
        let Some(policy) = A::snapshot_policy() else {
            return;
        };
        let Some(snapshots) = self.store.snapshots() else {
            return;
        };
        let span = tracing::debug_span!("es.snapshot", stream_id, version = loaded.version);
        let _entered = span.enter();
        let failed = |why: String| {
            tracing::warn!("{why}");
            let mut stats = self
                .snapshot_stats
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            stats.failed += 1;
            stats.last_failure = Some(why);
        };
        let state = match loaded.state.encode_snapshot() {
            Some(Ok(state)) => state,
            Some(Err(e)) => {
                return failed(format!(
                    "cannot encode a snapshot of `{stream_id}` at version {}: {e}",
                    loaded.version
                ));
            }
            None => return,
        };
        // the event the state ends with: its position anchors the snapshot to this
        // history, its time tells as-of loads whether the snapshot lies before them
        let last = self
            .store
            .read_stream(stream_id, loaded.version)
            .and_then(|mut events| events.next().transpose());
        let last = match last {
            Ok(Some(e)) if e.stream_version == loaded.version => e,
            Ok(_) => return,
            Err(e) => return failed(format!("cannot snapshot `{stream_id}`: {e}")),
        };
        let snapshot = Snapshot {
            stream_id: stream_id.to_owned(),
            version: loaded.version,
            position: last.position,
            last_event_at: last.timestamp,
            snapshot_version: policy.snapshot_version,
            fingerprint: A::snapshot_fingerprint(),
            state,
        };
        match snapshots.save_snapshot(&snapshot) {
            Ok(()) => {
                let mut stats = self
                    .snapshot_stats
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                stats.written += 1;
            }
            Err(e) => failed(format!("cannot save a snapshot of `{stream_id}`: {e}")),
        }
    }

    /// Loads instance `id`, runs `command` on its state and appends the events it returns
    /// with the loaded version as expectation. On a conflict it reloads and runs the
    /// command again, up to the configured number of attempts.
    ///
    /// The command is a plain function of the state returning one event, several (`Vec`,
    /// tuple, array), none (`()`, `None`), or its own error. A closure that cannot fail
    /// names the error type it never returns: `|_| Ok::<_, std::convert::Infallible>(event)`.
    ///
    /// A command that conflicts retries in its turn among the retries of this process on
    /// the same instance of the same store (waiting at most 200 ms for it, once per
    /// command), and a new command waits while such a retry runs (at most 200 ms too), so
    /// that commands racing on one hot instance in one process (threads, async tasks)
    /// succeed one after another instead of conflicting again and again. The turns are
    /// not a queue: a command whose wait runs out goes on without its turn, and with
    /// commands slower than the wait on one instance, a few can still run out of
    /// attempts. Commands of other processes (a shared PostgreSQL store) can win every
    /// attempt: raise the attempts ([`Repository::with_max_attempts`]) for instances that
    /// many processes change at once, or retry the command later.
    pub fn execute<T, E>(
        &self,
        id: &str,
        command: impl FnMut(&A) -> Result<T, E>,
    ) -> Result<Executed<A>, CommandError<E>>
    where
        T: IntoEvents<A::Events>,
    {
        self.execute_with(id, Metadata::default(), command)
    }

    /// [`Repository::execute`] attaching `metadata` (actor, correlation, reason…) to every
    /// event the command appends.
    pub fn execute_with<T, E>(
        &self,
        id: &str,
        metadata: Metadata,
        command: impl FnMut(&A) -> Result<T, E>,
    ) -> Result<Executed<A>, CommandError<E>>
    where
        T: IntoEvents<A::Events>,
    {
        self.run(id, metadata, None, None, command)
    }

    /// Runs a command only if instance `id` is still at `version` (the version a client
    /// read, as in HTTP's `If-Match`): the command decides once, against that state, and
    /// a stream that has moved on is [`CommandError::Conflict`] with the actual version,
    /// without retrying. Version 0 means the instance must not exist yet.
    ///
    /// ```
    /// use es_core::{CommandError, MemoryStore, Metadata, Repository};
    /// # use es_core::doc_support::Account;
    /// let accounts = Repository::<Account, _>::new(MemoryStore::new());
    /// accounts.execute_expecting("7", 0, Metadata::new(), |a| a.deposit(10)).unwrap();
    /// let stale = accounts.execute_expecting("7", 0, Metadata::new(), |a| a.deposit(10));
    /// assert!(matches!(stale, Err(CommandError::Conflict { actual: 1, .. })));
    /// ```
    pub fn execute_expecting<T, E>(
        &self,
        id: &str,
        version: u64,
        metadata: Metadata,
        command: impl FnMut(&A) -> Result<T, E>,
    ) -> Result<Executed<A>, CommandError<E>>
    where
        T: IntoEvents<A::Events>,
    {
        self.run(id, metadata, None, Some(version), command)
    }

    /// Runs a command in reaction to `cause` (an event of another aggregate), at most once.
    ///
    /// The new events carry the cause's correlation id and its event id as causation id,
    /// and event ids derived from the cause and the target stream. If the stream already
    /// holds the first of those ids (the reaction ran before, say before a crash), the
    /// command does not run again and `Executed::already_applied` is set. When two runs of
    /// the same reaction race (two instances of a service), the store keeps the first
    /// run's events and recognises the second run's append as a retry of it: the second
    /// run also reports `already_applied`, returns no events, and keeps nothing it decided
    /// (what it decided may differ from what was stored). This is what makes a process manager safe to re-run from an
    /// older checkpoint.
    ///
    /// "At most once" holds for reactions that append: the events are what records that
    /// the reaction ran. A command that decides nothing (returns no event) or is refused
    /// leaves no trace, so it runs again on every call with the same cause, each time
    /// against the state of that moment. A process manager replayed from an older
    /// checkpoint may then decide differently than it did the first time; when that
    /// matters, have the command record its refusal as an event.
    ///
    /// Telling whether the reaction ran costs one look-up in the store's event-id index
    /// ([`EventStore::version_of_event`]), not a read of the target's history: the target
    /// is then loaded like any command's, from the state cache or its newest snapshot.
    ///
    /// One cause, one instance, one reaction: a second reaction to the same cause on the
    /// same instance (two order lines for one product, two process managers that react
    /// to the same event) would be taken for this one having run, and would not run.
    /// Name each such reaction with
    /// [`execute_caused_by_as`](Repository::execute_caused_by_as).
    pub fn execute_caused_by<T, E>(
        &self,
        id: &str,
        cause: &(impl Cause + ?Sized),
        command: impl FnMut(&A) -> Result<T, E>,
    ) -> Result<Executed<A>, CommandError<E>>
    where
        T: IntoEvents<A::Events>,
    {
        self.execute_caused_by_as(id, cause, "", command)
    }

    /// [`execute_caused_by`](Repository::execute_caused_by) for one of several reactions
    /// to the same cause on the same instance, told apart by `reaction` (stable across
    /// runs: a process manager's name, an order line's number). Each named reaction runs
    /// at most once; the empty name is the reaction of `execute_caused_by`.
    ///
    /// ```
    /// use es_core::{EventStore, MemoryStore, Repository};
    /// # use es_core::doc_support::Account;
    /// let accounts = Repository::<Account, _>::new(MemoryStore::new());
    /// accounts.execute("payer", |a| a.deposit(100)).unwrap();
    /// let cause = accounts.store().read_stream("account-payer", 1).unwrap().next().unwrap().unwrap();
    /// // two lines of one order, each a deposit of its own, both caused by one event
    /// for (line, amount) in [("line-1", 2), ("line-2", 3)] {
    ///     let done = accounts.execute_caused_by_as("shop", &cause, line, |a| a.deposit(amount)).unwrap();
    ///     assert!(!done.already_applied);
    /// }
    /// // run again (a restart from an older checkpoint): nothing is applied twice
    /// let again = accounts.execute_caused_by_as("shop", &cause, "line-2", |a| a.deposit(3)).unwrap();
    /// assert!(again.already_applied);
    /// assert_eq!(again.version, 2);
    /// ```
    pub fn execute_caused_by_as<T, E>(
        &self,
        id: &str,
        cause: &(impl Cause + ?Sized),
        reaction: &str,
        command: impl FnMut(&A) -> Result<T, E>,
    ) -> Result<Executed<A>, CommandError<E>>
    where
        T: IntoEvents<A::Events>,
    {
        self.run(
            id,
            Metadata::caused_by(cause),
            Some(reaction_id(cause.event_id(), reaction)),
            None,
            command,
        )
    }

    fn run<T, E>(
        &self,
        id: &str,
        metadata: Metadata,
        cause: Option<uuid::Uuid>,
        expected_version: Option<u64>,
        mut command: impl FnMut(&A) -> Result<T, E>,
    ) -> Result<Executed<A>, CommandError<E>>
    where
        T: IntoEvents<A::Events>,
    {
        let stream_id = self.stream_of(id).map_err(CommandError::Store)?;
        let span = tracing::debug_span!(
            "es.command",
            stream_id = %stream_id,
            expected_version = expected_version,
            attempts = tracing::field::Empty,
            version = tracing::field::Empty,
            first_position = tracing::field::Empty,
        );
        // nothing listens to the span: entering it and recording its fields would only
        // cost (a few hundred instructions per command when `tracing` also feeds `log`);
        // the events below are still emitted
        let _entered = (!span.is_disabled()).then(|| span.enter());
        let result = self.run_in_span(stream_id, metadata, cause, expected_version, &mut command);
        match &result {
            Ok(done) if !span.is_disabled() => {
                span.record("attempts", done.attempts);
                span.record("version", done.version);
                if let Some(appended) = &done.appended {
                    span.record("first_position", appended.first_position);
                }
            }
            Ok(_) => {}
            Err(CommandError::Rejected(_)) => tracing::debug!("command rejected"),
            Err(CommandError::Conflict { actual, .. }) => {
                tracing::debug!(actual, "command conflicted")
            }
            Err(_) => tracing::debug!("command failed"),
        }
        result
    }

    fn run_in_span<T, E>(
        &self,
        stream_id: String,
        metadata: Metadata,
        cause: Option<uuid::Uuid>,
        expected_version: Option<u64>,
        command: &mut impl FnMut(&A) -> Result<T, E>,
    ) -> Result<Executed<A>, CommandError<E>>
    where
        T: IntoEvents<A::Events>,
    {
        let mut attempts = 0;
        // held from the first retry on: see `RetryTurn`
        let mut _turn = None;
        // one wait for a turn per command: a command that waited in vain retries without
        let mut waited = false;
        // a first attempt made while a retry of this process holds the stream's turn
        // would race that retry, and under steady load win it again and again: it waits
        // for the turn to end instead (bounded, as a retry's wait for a turn is)
        RetryTurn::wait_out(self.store.store_key(), &stream_id);
        loop {
            attempts += 1;
            if attempts > 1 && !waited {
                waited = true;
                _turn = RetryTurn::take(self.store.store_key(), &stream_id);
            }
            let (Loaded { mut state, version }, tip, _) = self.current(&stream_id, true)?;
            // a reaction that ran before stored its first event under the first id derived
            // from its cause: one look-up in the store's id index tells. Looked up after
            // the load: a run that stores the reaction after the look-up is caught at the
            // append (its ids are taken), one that stored it before the look-up is seen
            // here, whether or not the state loaded holds it
            let stored_at = match cause {
                Some(cause) => self
                    .store
                    .version_of_event(&stream_id, derived_event_id(cause, &stream_id, 0))
                    .map_err(CommandError::Store)?,
                None => None,
            };
            if stored_at.is_some_and(|at| at > version) {
                // stored by another run after this load: the state as it is now
                return self.already_applied_now(&stream_id, attempts);
            }
            let already_applied = stored_at.is_some();
            let done = |state, events, appended, already_applied| Executed {
                state,
                version,
                events,
                appended,
                attempts,
                already_applied,
            };
            if already_applied {
                self.keep(&stream_id, &state, version, tip);
                return Ok(done(state, Vec::new(), None, true));
            }
            if let Some(expected) = expected_version
                && expected != version
            {
                // the state is current: the caller's expectation is stale, not the cache
                self.keep(&stream_id, &state, version, tip);
                return Err(CommandError::Conflict {
                    stream_id,
                    // the command did not run this time
                    attempts: attempts - 1,
                    actual: version,
                    expected: Some(expected),
                });
            }
            let mut events = Vec::new();
            match command(&state) {
                Ok(decided) => decided.into_events(&mut events),
                Err(rejected) => {
                    self.keep_owned(&stream_id, state, version, tip);
                    return Err(CommandError::Rejected(rejected));
                }
            }
            if events.is_empty() {
                self.keep(&stream_id, &state, version, tip);
                return Ok(done(state, events, None, false));
            }
            let batch = events
                .iter()
                .enumerate()
                .map(|(i, e)| {
                    let encoded = e.encode()?;
                    let mut new = NewEvent::from_encoded(encoded).with_metadata(metadata.clone());
                    if let Some(cause) = cause {
                        new.event_id = derived_event_id(cause, &stream_id, i);
                    }
                    Ok(new)
                })
                .collect::<Result<Vec<_>, EncodeError>>()
                .map_err(CommandError::Encode)?;
            // what is stored is what every later load folds: the events read back from
            // their encoding (a field serde skips comes back as its default), and an event
            // that does not read back is refused before it poisons the stream
            let mut events = Vec::with_capacity(batch.len());
            for new in &batch {
                let unreadable = |error| CommandError::Unreadable {
                    event_type: new.event_type.clone(),
                    error,
                };
                match A::Events::decode(&new.event_type, new.schema_version, &new.payload) {
                    Ok(Some(e)) => events.push(e),
                    Ok(None) => {
                        return Err(unreadable(crate::DecodeError::UnknownType {
                            event_type: new.event_type.clone(),
                            version: new.schema_version,
                        }));
                    }
                    Err(error) => return Err(unreadable(error)),
                }
            }
            let expected = if version == 0 {
                ExpectedVersion::NoStream
            } else {
                ExpectedVersion::Exact(version)
            };
            // the id of the last event, which a cached state of this stream is anchored to
            let last_id = batch.last().map(|e| e.event_id);
            match self.store.append(&stream_id, expected, batch) {
                Ok(appended) if appended.retried && cause.is_some() => {
                    // another run of the same reaction stored these events first (their ids
                    // are derived from the cause): the stored events are that run's, which
                    // may differ from what this run decided, so neither this run's events
                    // nor a state folded from them may be kept; the state returned is the
                    // stream's as it is now
                    self.drop_cached(&stream_id);
                    return self.already_applied_now(&stream_id, attempts);
                }
                Ok(appended) => {
                    for e in &events {
                        state.apply_event(e);
                    }
                    let loaded = Loaded {
                        state,
                        version: appended.last_version,
                    };
                    let tip = Tip {
                        position: appended.last_position,
                        event_id: last_id,
                    };
                    self.keep(&stream_id, &loaded.state, loaded.version, tip);
                    self.maybe_snapshot(&stream_id, version, &loaded);
                    return Ok(Executed {
                        state: loaded.state,
                        version: loaded.version,
                        events,
                        appended: Some(appended),
                        attempts,
                        already_applied: false,
                    });
                }
                Err(StoreError::DuplicateEventId { .. }) if cause.is_some() => {
                    // the reaction was appended meanwhile: the state read is behind it
                    self.drop_cached(&stream_id);
                    return self.already_applied_now(&stream_id, attempts);
                }
                Err(StoreError::Conflict { actual, .. })
                    if attempts >= self.max_attempts || expected_version.is_some() =>
                {
                    self.drop_cached(&stream_id);
                    // a reaction that lost its last attempt to another run of itself is
                    // applied, not in conflict: its first derived id tells
                    if let Some(cause) = cause {
                        let first = derived_event_id(cause, &stream_id, 0);
                        if self
                            .store
                            .version_of_event(&stream_id, first)
                            .map_err(CommandError::Store)?
                            .is_some()
                        {
                            return self.already_applied_now(&stream_id, attempts);
                        }
                    }
                    return Err(CommandError::Conflict {
                        stream_id,
                        attempts,
                        actual,
                        expected: expected_version,
                    });
                }
                Err(StoreError::Conflict { .. }) => {
                    self.drop_cached(&stream_id);
                    continue;
                }
                Err(e) => {
                    self.drop_cached(&stream_id);
                    return Err(CommandError::Store(e));
                }
            }
        }
    }

    /// What a reaction that another run stored first returns: the stream's state and
    /// version as they are now, no events of its own.
    fn already_applied_now<E>(
        &self,
        stream_id: &str,
        attempts: u32,
    ) -> Result<Executed<A>, CommandError<E>> {
        let (Loaded { state, version }, tip, _) = self.current(stream_id, true)?;
        self.keep(stream_id, &state, version, tip);
        Ok(Executed {
            state,
            version,
            events: Vec::new(),
            appended: None,
            attempts,
            already_applied: true,
        })
    }

    /// Keeps a copy of `state` in the cache, if there is one.
    fn keep(&self, stream_id: &str, state: &A, version: u64, tip: Tip) {
        if let Some(cache) = &self.cache {
            cache.put(stream_id, cache.copy(state), version, tip);
        }
    }

    /// Keeps `state` itself in the cache, if there is one.
    fn keep_owned(&self, stream_id: &str, state: A, version: u64, tip: Tip) {
        if let Some(cache) = &self.cache {
            cache.put(stream_id, state, version, tip);
        }
    }

    /// Drops the cached state of `stream_id`, if any: the stream moved under it.
    fn drop_cached(&self, stream_id: &str) {
        if let Some(cache) = &self.cache {
            cache.invalidate(stream_id);
        }
    }
}

/// The streams (of a store, by its key) whose retry turn is taken in this process, and
/// the waiters' wake-up.
type Turns = (std::sync::Mutex<HashSet<(u64, String)>>, std::sync::Condvar);
static TURNS: std::sync::LazyLock<Turns> = std::sync::LazyLock::new(Default::default);

/// How many retry turns are held in this process: a first attempt looks for its stream's
/// turn only while some turn is held, so that commands that do not conflict pay one
/// atomic read for it.
static TURNS_HELD: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The longest a retry waits for its turn. Past it, it retries without one, as if there
/// were none: a command whose closure waits for another thread's command on the same
/// stream (which would wait for the turn it holds) costs this wait, not a deadlock.
const MAX_TURN_WAIT: Duration = Duration::from_millis(200);

std::thread_local! {
    /// Whether this thread holds a retry turn (a command that runs another command
    /// inside it does not wait for a second turn, which could be its own).
    static HOLDS_A_TURN: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// A command's turn to retry on its stream after a conflict, among this process's retries
/// on that stream. Commands that race on one instance (threads, async tasks) would
/// otherwise all conflict again, attempt after attempt, and most would run out of
/// attempts; with a turn each, the retries follow one another, each on the state the
/// last one left. First attempts take no turn, but wait while a retry holds the turn on
/// their stream ([`RetryTurn::wait_out`]), so that under steady load the retry is not
/// beaten by the next first attempt every time; when no turn is held anywhere in the
/// process they pay one atomic read. Retries on other streams never wait for it;
/// commands of other processes are met by the retries as before.
struct RetryTurn {
    key: (u64, String),
}

impl RetryTurn {
    fn take(store: u64, stream_id: &str) -> Option<RetryTurn> {
        if HOLDS_A_TURN.with(std::cell::Cell::get) {
            return None;
        }
        let key = (store, stream_id.to_owned());
        let (mut streams, free) = Self::wait_until_free(&key);
        if !free {
            return None;
        }
        streams.insert(key.clone());
        TURNS_HELD.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        HOLDS_A_TURN.with(|h| h.set(true));
        Some(RetryTurn { key })
    }

    /// Waits while a retry of this process holds the turn on `stream_id` of store
    /// `store`, at most [`MAX_TURN_WAIT`]; at once when no turn is held in the process,
    /// or when this thread holds one (a command run inside another's).
    fn wait_out(store: u64, stream_id: &str) {
        if TURNS_HELD.load(std::sync::atomic::Ordering::SeqCst) == 0
            || HOLDS_A_TURN.with(std::cell::Cell::get)
        {
            return;
        }
        let _unlocked_at_once = Self::wait_until_free(&(store, stream_id.to_owned()));
    }

    /// Waits until no turn on `key` is taken, at most [`MAX_TURN_WAIT`]: the set of
    /// taken turns, locked, and whether the turn is free.
    fn wait_until_free(
        key: &(u64, String),
    ) -> (std::sync::MutexGuard<'static, HashSet<(u64, String)>>, bool) {
        let (taken, turn_over) = &*TURNS;
        let deadline = Instant::now() + MAX_TURN_WAIT;
        // a command that panicked holding the set leaves nothing to repair
        let mut streams = taken.lock().unwrap_or_else(|e| e.into_inner());
        while streams.contains(key) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return (streams, false);
            }
            streams = turn_over
                .wait_timeout(streams, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        (streams, true)
    }
}

impl Drop for RetryTurn {
    fn drop(&mut self) {
        let (taken, turn_over) = &*TURNS;
        let mut streams = taken.lock().unwrap_or_else(|e| e.into_inner());
        streams.remove(&self.key);
        TURNS_HELD.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        drop(streams);
        HOLDS_A_TURN.with(|h| h.set(false));
        turn_over.notify_all();
    }
}

/// The id of event `index` of the reaction to `cause` on `stream_id`: the same on every
/// run, so that a reaction re-run is recognised (and refused by the store as a duplicate).
/// The id a reaction named `reaction` derives its event ids from: the cause's own id for
/// the unnamed reaction (the ids stores already hold stay the same), otherwise an id
/// derived from it and the name, so that each named reaction to one cause runs once.
fn reaction_id(cause: uuid::Uuid, reaction: &str) -> uuid::Uuid {
    if reaction.is_empty() {
        cause
    } else {
        uuid::Uuid::new_v5(&cause, format!("reaction:{reaction}").as_bytes())
    }
}

fn derived_event_id(cause: uuid::Uuid, stream_id: &str, index: usize) -> uuid::Uuid {
    let name = format!("{stream_id}#{index}");
    uuid::Uuid::new_v5(&cause, name.as_bytes())
}
