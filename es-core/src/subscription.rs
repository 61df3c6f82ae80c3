//! Subscriptions: read the global log from a position, then follow new appends live.
//!
//! A subscription is a cursor over the log, not a queue: it catches up by reading the
//! store and then waits for the head to move, so there is no gap and no duplicate at the
//! switch from catch-up to live, a slow subscriber never slows the writer or the others,
//! and it only ever sees what the store lets readers see (in the file store's default
//! durability, only synced events).

use crate::aggregate::Aggregate;
use crate::envelope::{Envelope, RecordedEvent, stream_kind};
use crate::event::EventSet;
use crate::store::{EventStore, StoreError};
use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

/// Which events a subscription delivers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    kinds: Option<HashSet<String>>,
    event_types: Option<HashSet<String>>,
}

impl Filter {
    /// Every event.
    pub fn all() -> Self {
        Filter::default()
    }

    /// Only events of streams of these aggregate kinds (the stream id's prefix).
    pub fn kinds<I: IntoIterator<Item = S>, S: Into<String>>(mut self, kinds: I) -> Self {
        self.kinds = Some(kinds.into_iter().map(Into::into).collect());
        self
    }

    /// Only events of these types.
    pub fn event_types<I: IntoIterator<Item = S>, S: Into<String>>(mut self, types: I) -> Self {
        self.event_types = Some(types.into_iter().map(Into::into).collect());
        self
    }

    /// Whether `event` passes.
    pub fn matches(&self, event: &RecordedEvent) -> bool {
        self.kinds
            .as_ref()
            .is_none_or(|k| k.contains(stream_kind(&event.stream_id)))
            && self
                .event_types
                .as_ref()
                .is_none_or(|t| t.contains(&event.event_type))
    }
}

/// How many events a subscription reads per pass over the store.
const READ_BATCH: usize = 512;

/// How many more events a pass reads to finish the append it is in: a store reads a
/// multi-event append whole, so a pass that stopped inside a large one would make the
/// next read it again from its start.
const APPEND_RUN_OUT: usize = 16_384;

/// One pass over the log of a subscription or a projection: `batch` events, then on to
/// the end of the append the last of them is in (at most [`APPEND_RUN_OUT`] more).
///
/// An event continues the append of the one before if it has the same stream, the next
/// version, the next position and the same time (an append's events share theirs; two
/// appends share one only if the clock stood still, and then a pass reads on into the
/// second: a longer pass, never a lost event).
pub(crate) struct Pass {
    batch: usize,
    read: usize,
    position: u64,
    stream_version: u64,
    timestamp: Option<chrono::DateTime<chrono::Utc>>,
    stream_id: String,
}

impl Pass {
    pub(crate) fn new(batch: usize) -> Self {
        Pass {
            batch,
            read: 0,
            position: 0,
            stream_version: 0,
            timestamp: None,
            stream_id: String::new(),
        }
    }

    /// Whether the pass ends before `next` (which the next pass reads again).
    pub(crate) fn ends_before(&self, next: &RecordedEvent) -> bool {
        self.read >= self.batch
            && (self.read >= self.batch + APPEND_RUN_OUT
                || !(self.timestamp == Some(next.timestamp)
                    && next.position == self.position + 1
                    && next.stream_version == self.stream_version + 1
                    && next.stream_id == self.stream_id))
    }

    /// Counts `event` as read.
    pub(crate) fn take(&mut self, event: &RecordedEvent) {
        self.read += 1;
        if self.read >= self.batch {
            self.position = event.position;
            self.stream_version = event.stream_version;
            self.timestamp = Some(event.timestamp);
            self.stream_id.clear();
            self.stream_id.push_str(&event.stream_id);
        }
    }

    /// Whether the pass read its whole batch (else the log ended first).
    pub(crate) fn was_full(&self) -> bool {
        self.read >= self.batch
    }
}

/// A cursor over the global log that catches up, then follows live appends.
///
/// ```
/// use es_core::{EventStore, ExpectedVersion, MemoryStore, NewEvent};
/// use es_core::subscription::{Filter, Subscription};
/// use std::time::Duration;
///
/// let store = MemoryStore::new();
/// store.append("cart-1", ExpectedVersion::Any, vec![NewEvent::new("CartCreated", 1, b"{}".to_vec())]).unwrap();
/// let mut sub = Subscription::new(&store, 1).with_filter(Filter::all().kinds(["cart"]));
/// let first = sub.next_timeout(Duration::from_millis(10)).unwrap().unwrap();
/// assert_eq!(first.position, 1);
/// // nothing more yet: waits up to the timeout, then returns None
/// assert!(sub.next_timeout(Duration::from_millis(10)).unwrap().is_none());
/// store.append("cart-1", ExpectedVersion::Any, vec![NewEvent::new("ProductAdded", 1, b"{}".to_vec())]).unwrap();
/// assert_eq!(sub.next_timeout(Duration::from_secs(1)).unwrap().unwrap().position, 2);
/// ```
///
/// A subscription sees what its store handle sees. A handle that shows the log as it was
/// when opened (the file store opened read-only, as another process opens it beside the
/// writer) sees no later append: such a subscription catches up, then waits in vain.
/// Follow a live log through the writer's handle, through a store every process writes
/// and reads (PostgreSQL), or by opening the read-only handle again.
pub struct Subscription<'a, S: EventStore + ?Sized> {
    store: &'a S,
    next_position: u64,
    filter: Filter,
    buffer: VecDeque<RecordedEvent>,
    /// An error met after the events in `buffer`: reported once they are delivered.
    failed: Option<StoreError>,
}

impl<'a, S: EventStore + ?Sized> Subscription<'a, S> {
    /// A subscription delivering events from global position `from` (1 for all).
    ///
    /// `from` may be one past the log's last position (the next append's). Further on, in
    /// a store whose head can move back (the file store after a crash in `Periodic` or
    /// `None`, or a repair), a read that finds nothing fails with
    /// [`StoreError::PositionAhead`]: `from` is not a position of this log, or the log
    /// lost events before it, and waiting would skip the events that take their positions
    /// again.
    pub fn new(store: &'a S, from: u64) -> Self {
        Subscription {
            store,
            next_position: from.max(1),
            filter: Filter::all(),
            buffer: VecDeque::new(),
            failed: None,
        }
    }

    /// Delivers only events that pass `filter` (from now on: events read already but not
    /// delivered are filtered again).
    pub fn with_filter(mut self, filter: Filter) -> Self {
        self.buffer.retain(|e| filter.matches(e));
        self.filter = filter;
        self
    }

    /// The position of the next event it will look at: after everything delivered (or
    /// filtered out) so far. Save it, and resume with `Subscription::new(store, saved)`.
    ///
    /// It is one past the last event delivered, where a projection's checkpoint
    /// ([`ProjectionRunner`](crate::projection::ProjectionRunner),
    /// [`CheckpointStore`](crate::projection::CheckpointStore)) is the last event taken
    /// into account: a checkpoint `c` resumes a subscription at `c + 1`.
    pub fn position(&self) -> u64 {
        self.buffer
            .front()
            .map_or(self.next_position, |e| e.position)
    }

    /// The next event if one is available now, without waiting (however far behind the
    /// next event that passes the filter is).
    ///
    /// An error of the store's read comes after the events read before it: those are
    /// delivered first, then the error; the next call reads again from the event that
    /// failed.
    pub fn try_next(&mut self) -> Result<Option<RecordedEvent>, StoreError> {
        self.next_before(None)
    }

    /// The next event, waiting up to `timeout` for one to be appended. A catch-up through
    /// many events the filter leaves out stops at the deadline too, and returns `None`;
    /// the next call goes on from where it stopped.
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<RecordedEvent>, StoreError> {
        let deadline = crate::backend::deadline_after(timeout);
        loop {
            if let Some(e) = self.next_before(Some(deadline))? {
                return Ok(Some(e));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            self.store
                .wait_for_head(self.next_position - 1, deadline - now)?;
        }
    }

    /// The next event available now; a catch-up stops reading at `deadline`.
    fn next_before(
        &mut self,
        deadline: Option<Instant>,
    ) -> Result<Option<RecordedEvent>, StoreError> {
        if self.buffer.is_empty() {
            if let Some(e) = self.failed.take() {
                return Err(e);
            }
            self.fill(deadline)?;
        }
        Ok(self.buffer.pop_front())
    }

    /// Reads from the store into the buffer until an event passes the filter, the log
    /// ends or the deadline passes, a batch at a time.
    fn fill(&mut self, deadline: Option<Instant>) -> Result<(), StoreError> {
        let span = tracing::trace_span!(
            "es.poll",
            from = self.next_position,
            read = tracing::field::Empty
        );
        let _entered = span.enter();
        let from = self.next_position;
        let result = self.fill_batches(deadline);
        span.record("read", self.next_position - from);
        match result {
            // the events read before the error go first
            Err(e) if !self.buffer.is_empty() => {
                self.failed = Some(e);
                Ok(())
            }
            result => result,
        }
    }

    fn fill_batches(&mut self, deadline: Option<Instant>) -> Result<(), StoreError> {
        loop {
            let mut pass = Pass::new(READ_BATCH);
            let from = self.next_position;
            for event in self.store.read_all(from)? {
                let event = event?;
                if pass.ends_before(&event) {
                    break;
                }
                self.next_position = event.position + 1;
                pass.take(&event);
                if self.filter.matches(&event) {
                    self.buffer.push_back(event);
                }
            }
            if self.next_position == from {
                self.check_not_ahead()?;
            }
            if !self.buffer.is_empty() || !pass.was_full() {
                return Ok(());
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(());
            }
        }
    }

    /// With nothing to read from its position: refuses a position past the end of a log
    /// that can move back (a crash or a repair took back events before it), where reading
    /// on would skip the events that take those positions again. A position one past the
    /// head is where a subscription waits for the next append.
    fn check_not_ahead(&self) -> Result<(), StoreError> {
        if !self.store.head_can_move_back() {
            return Ok(());
        }
        let head = self.store.head_position()?;
        if head < self.next_position - 1 {
            return Err(StoreError::PositionAhead {
                position: self.next_position,
                head,
            });
        }
        Ok(())
    }

    /// Decodes into one aggregate's events: only streams of `A`'s kind are delivered,
    /// upcast to the current schema, with their envelopes.
    pub fn typed<A: Aggregate>(self) -> TypedSubscription<'a, S, A::Events> {
        let filter = Filter {
            kinds: Some(std::iter::once(A::KIND.to_owned()).collect()),
            ..self.filter.clone()
        };
        TypedSubscription {
            inner: self.with_filter(filter),
            _set: std::marker::PhantomData,
        }
    }
}

/// A subscription that delivers decoded events of one event set.
pub struct TypedSubscription<'a, S: EventStore + ?Sized, E: EventSet> {
    inner: Subscription<'a, S>,
    _set: std::marker::PhantomData<fn() -> E>,
}

/// Why a typed subscription could not deliver: the store failed, or an event could not be
/// decoded. The same errors as a load ([`LoadError`](crate::LoadError)), so code that
/// handles one handles both.
pub type SubscriptionError = crate::LoadError;

impl<S: EventStore + ?Sized, E: EventSet> TypedSubscription<'_, S, E> {
    /// The position of the next event it will look at.
    pub fn position(&self) -> u64 {
        self.inner.position()
    }

    /// The next decoded event, waiting up to `timeout`. Declared ignored types are skipped.
    ///
    /// An event that cannot be decoded is an error and stays where it is: the next call
    /// meets it again, and [`position`](Self::position) stays at it, so that a checkpoint
    /// saved after the error never passes an event the code could not read. To pass it on
    /// purpose (once it is recorded elsewhere), subscribe again from `position() + 1`.
    pub fn next_timeout(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<Envelope<E>>, SubscriptionError> {
        let deadline = crate::backend::deadline_after(timeout);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(raw) = self.inner.next_timeout(left)? else {
                return Ok(None);
            };
            match raw.decode::<E>() {
                Ok(Some(envelope)) => return Ok(Some(envelope)),
                // a declared ignored type: passed, within the deadline
                Ok(None) if Instant::now() >= deadline => return Ok(None),
                Ok(None) => {}
                Err(e) => {
                    self.inner.buffer.push_front(raw);
                    return Err(e.into());
                }
            }
        }
    }
}
