//! For store authors: what a backend uses to keep the [`EventStore`] contract the way the
//! stores of this workspace keep it. Applications never need this module.
//!
//! Writing a store (the file store and the PostgreSQL store are two; a third follows the
//! same steps):
//!
//! 1. **Check before writing.** Call [`Limits::check_append`] on every append (and
//!    [`Limits::check_stream_id`] on every read by stream id) before touching storage, so
//!    that every store refuses the same input with the same typed errors.
//! 2. **Decide idempotent retries with [`check_idempotent_retry`]**, passing where each
//!    event id of the append is already stored ([`IdLocation`]), including appends the
//!    store has accepted but not yet made visible. It returns the original append's
//!    result (write nothing), `None` (append as usual), or the error to report, so that a
//!    client resending an append gets the same answer from every store.
//! 3. **Check the expected version** with [`ExpectedVersion::accepts`] against the stream's
//!    version as the append will commit it (under the lock or in the transaction that
//!    writes it), and report [`StoreError::Conflict`] with the actual version.
//! 4. **Hand out positions in commit order.** Global positions are dense from 1, and a
//!    reader that can see position `N` must see every position below it.
//! 5. **Wake live subscribers.** Keep a [`HeadSignal`], publish each new head after it is
//!    visible to readers, and implement [`EventStore::wait_for_head`] with
//!    [`HeadSignal::wait`] (the default polls).
//! 6. **Keep snapshots** if the store can: [`retain_newest`] and [`newest_at_or_below`]
//!    give the rules ([`SNAPSHOTS_KEPT`] per stream), and [`EventStore::snapshots`]
//!    returns the store.
//! 7. **Answer the cheap questions from an index** if the store keeps one:
//!    [`EventStore::version_of_event`] (a reaction's idempotency) and
//!    [`EventStore::stream_end`] (a cached command with nothing new to read) have
//!    defaults that read the stream or say nothing.
//! 8. **Run the conformance suite**: `es_core::store_conformance_tests!(make_store)` in a
//!    test of the store's crate (feature `testing`) generates one test per behaviour.
//!
//! ```
//! use es_core::backend::{IdLocation, check_idempotent_retry};
//! use es_core::ExpectedVersion;
//! use std::collections::HashMap;
//!
//! // the store's record of stored ids: this one append of two events to "s-1"
//! let (a, b) = (es_core::uuid::Uuid::new_v4(), es_core::uuid::Uuid::new_v4());
//! let stored: HashMap<_, _> = [(a, 1u64), (b, 2u64)].into_iter().collect();
//! let lookup = |id: &es_core::uuid::Uuid| {
//!     stored.get(id).map(|&p| IdLocation {
//!         same_stream: true,
//!         stream_version: p,
//!         position: p,
//!         append_first_position: 1,
//!         append_len: 2,
//!     })
//! };
//! // the same append resent: the original result, nothing to write
//! let again = check_idempotent_retry("s-1", ExpectedVersion::NoStream, &[a, b], 2, lookup)
//!     .unwrap()
//!     .unwrap();
//! assert_eq!((again.first_position, again.last_position), (1, 2));
//! // a new append: nothing stored, append as usual
//! let fresh = [es_core::uuid::Uuid::new_v4()];
//! assert!(check_idempotent_retry("s-1", ExpectedVersion::Exact(2), &fresh, 2, lookup).unwrap().is_none());
//! ```

pub use crate::snapshot::{SNAPSHOTS_KEPT, newest_at_or_below, retain_newest};
use crate::store::{AppendResult, StoreError};
#[allow(unused_imports)] // named by the module's documentation
use crate::{EventStore, ExpectedVersion, Limits};
use std::time::{Duration, Instant};

/// Where an event id of an incoming append is already stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdLocation {
    /// Whether it is in the stream being appended to.
    pub same_stream: bool,
    /// Its stream version.
    pub stream_version: u64,
    /// Its global position.
    pub position: u64,
    /// Global position of the first event of the append that stored it.
    pub append_first_position: u64,
    /// Number of events of that append.
    pub append_len: u64,
}

/// The instant `timeout` from now, for waits: a timeout too long for the clock (such as
/// `Duration::MAX`, "wait for ever") gives an instant about 136 years ahead instead of
/// the panic of `Instant + Duration`.
pub fn deadline_after(timeout: std::time::Duration) -> std::time::Instant {
    let now = std::time::Instant::now();
    now.checked_add(timeout)
        .or_else(|| now.checked_add(std::time::Duration::from_secs(u64::from(u32::MAX))))
        .unwrap_or(now)
}

/// The shared idempotency rule, for store implementations.
///
/// `lookup` tells where an event id is stored, if anywhere. Returns `Ok(None)` when no id
/// of the batch is stored (append as usual), `Ok(Some(result))` when the batch is exactly
/// one stored append of this stream, in order, and `expected` held for that original
/// append (report the original result, write nothing), and an error otherwise: a batch
/// that repeats an id, a partial or scattered match, or a stale expectation.
pub fn check_idempotent_retry(
    stream_id: &str,
    expected: ExpectedVersion,
    event_ids: &[uuid::Uuid],
    current_version: u64,
    mut lookup: impl FnMut(&uuid::Uuid) -> Option<IdLocation>,
) -> Result<Option<AppendResult>, StoreError> {
    let duplicate = |event_id, reason: &str| StoreError::DuplicateEventId {
        stream_id: stream_id.to_owned(),
        event_id,
        reason: reason.to_owned(),
    };
    if event_ids.len() > 1 {
        let mut sorted = event_ids.to_vec();
        sorted.sort_unstable();
        if let Some(pair) = sorted.windows(2).find(|w| w[0] == w[1]) {
            return Err(duplicate(pair[0], "it appears twice in the append"));
        }
    }
    let mut first: Option<IdLocation> = None;
    for (index, &event_id) in event_ids.iter().enumerate() {
        let found = lookup(&event_id);
        match (first, found) {
            (None, None) if index == 0 => {
                return check_rest_absent(event_ids, &mut lookup, stream_id);
            }
            (None, Some(loc)) if index == 0 => {
                if !loc.same_stream {
                    return Err(duplicate(event_id, "in another stream"));
                }
                first = Some(loc);
            }
            (Some(f), Some(loc))
                if loc.same_stream
                    && loc.stream_version == f.stream_version + index as u64
                    && loc.position == f.position + index as u64 => {}
            _ => {
                return Err(duplicate(
                    event_id,
                    "the stored events do not match this append",
                ));
            }
        }
    }
    let Some(first) = first else { return Ok(None) };
    let n = event_ids.len() as u64;
    if first.position != first.append_first_position || n != first.append_len {
        return Err(duplicate(
            event_ids[0],
            "they are part of an append, not the whole of one",
        ));
    }
    let before = first.stream_version - 1;
    if !expected.accepts(before) {
        return Err(StoreError::Conflict {
            stream_id: stream_id.to_owned(),
            expected,
            actual: current_version,
        });
    }
    Ok(Some(AppendResult {
        first_version: first.stream_version,
        last_version: first.stream_version + n - 1,
        first_position: first.position,
        last_position: first.position + n - 1,
        retried: true,
    }))
}

fn check_rest_absent(
    event_ids: &[uuid::Uuid],
    lookup: &mut impl FnMut(&uuid::Uuid) -> Option<IdLocation>,
    stream_id: &str,
) -> Result<Option<AppendResult>, StoreError> {
    for event_id in &event_ids[1..] {
        if lookup(event_id).is_some() {
            return Err(StoreError::DuplicateEventId {
                stream_id: stream_id.to_owned(),
                event_id: *event_id,
                reason: "it is already stored, but the append's first event is not".to_owned(),
            });
        }
    }
    Ok(None)
}

/// A head position that waiters can block on: stores publish each new head, live
/// subscriptions wait for it to move. Publishing costs no system call while nobody waits.
#[derive(Debug, Default)]
pub struct HeadSignal {
    state: std::sync::Mutex<HeadState>,
    moved: std::sync::Condvar,
}

#[derive(Debug, Default)]
struct HeadState {
    head: u64,
    /// Threads in [`HeadSignal::wait`]: a publish wakes them only when there are some.
    waiting: usize,
}

impl HeadSignal {
    /// A signal starting at `head`.
    pub fn new(head: u64) -> Self {
        HeadSignal {
            state: std::sync::Mutex::new(HeadState { head, waiting: 0 }),
            moved: std::sync::Condvar::new(),
        }
    }

    /// Records a new head and wakes every waiter.
    pub fn publish(&self, head: u64) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if head > s.head {
            s.head = head;
        }
        let waiting = s.waiting > 0;
        drop(s);
        if waiting {
            self.moved.notify_all();
        }
    }

    /// Waits until the head is past `position` or `timeout` passes; returns the head.
    pub fn wait(&self, position: u64, timeout: Duration) -> u64 {
        let deadline = deadline_after(timeout);
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        while s.head <= position {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            // counted under the lock that `publish` takes before it looks, so that no
            // publish can miss a waiter
            s.waiting += 1;
            s = self
                .moved
                .wait_timeout(s, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            s.waiting -= 1;
        }
        s.head
    }
}
