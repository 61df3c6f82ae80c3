//! `MemoryStore`: a thread-safe in-memory event store with the same semantics as the
//! durable stores, for tests and prototypes.

use crate::envelope::{NewEvent, RecordedEvent};
use crate::snapshot::{Snapshot, SnapshotStore, newest_at_or_below, retain_newest};
use crate::store::HeadSignal;
use crate::store::{
    AppendResult, EventStore, EventStream, ExpectedVersion, IdLocation, Limits, LimitsError,
    StoreError, StreamEnd, check_idempotent_retry,
};
use chrono::Utc;
// seeded per process, so crafted ids cannot force collisions; much cheaper than SipHash
use foldhash::fast::RandomState;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;
use uuid::Uuid;

/// How many events a streaming read copies out per lock acquisition.
const READ_CHUNK: usize = 256;

/// A thread-safe in-memory event store. Nothing survives the process.
///
/// ```
/// use es_core::{EventStore, ExpectedVersion, MemoryStore, NewEvent};
/// let store = MemoryStore::new();
/// store.append("cart-1", ExpectedVersion::Any, vec![NewEvent::new("CartCreated", 1, b"{}".to_vec())]).unwrap();
/// assert_eq!(store.stream_version("cart-1").unwrap(), 1);
/// ```
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: RwLock<Inner>,
    limits: Limits,
    head: HeadSignal,
    snapshots: Mutex<HashMap<String, Vec<Snapshot>>>,
}

#[derive(Debug, Default)]
struct Inner {
    /// The global log; `log[p - 1]` is position `p`.
    log: Vec<Arc<RecordedEvent>>,
    /// Each stream's positions; `streams[s][v - 1]` is version `v`.
    streams: HashMap<String, Vec<u64>, RandomState>,
    /// Event id to global position.
    ids: HashMap<Uuid, u64, RandomState>,
    /// For each position, the first position and length of the append that wrote it.
    appends: Vec<(u64, u64)>,
    /// The newest commit time stamped, so that commit times never go backwards (events
    /// that bring their own time, as imports do, do not move it).
    last_commit: Option<chrono::DateTime<Utc>>,
}

impl MemoryStore {
    /// An empty store with the default [`Limits`].
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store with other limits, refused when [`Limits::validate`] refuses them
    /// (a JSON depth the store could not read back, or a limit that refuses every
    /// append).
    ///
    /// ```
    /// use es_core::{Limits, MemoryStore};
    /// let small = Limits { max_batch_events: 100, ..Limits::default() };
    /// assert_eq!(MemoryStore::with_limits(small).unwrap().limits().max_batch_events, 100);
    /// assert!(MemoryStore::with_limits(Limits { max_json_depth: 200, ..small }).is_err());
    /// ```
    pub fn with_limits(limits: Limits) -> Result<Self, LimitsError> {
        limits.validate()?;
        Ok(MemoryStore {
            limits,
            ..MemoryStore::default()
        })
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        // A panic while holding the lock cannot leave `Inner` half-updated: appends
        // validate first and mutate only after every check passed.
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl EventStore for MemoryStore {
    fn append(
        &self,
        stream_id: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        self.limits.check_append(stream_id, &events)?;
        let event_ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
        let mut inner = self.write();
        let current = inner.streams.get(stream_id).map_or(0, |s| s.len() as u64);
        let retry = check_idempotent_retry(stream_id, expected, &event_ids, current, |id| {
            let position = *inner.ids.get(id)?;
            let recorded = &inner.log[position as usize - 1];
            let (append_first_position, append_len) = inner.appends[position as usize - 1];
            Some(IdLocation {
                same_stream: recorded.stream_id == stream_id,
                stream_version: recorded.stream_version,
                position,
                append_first_position,
                append_len,
            })
        })?;
        if let Some(original) = retry {
            return Ok(original);
        }
        if !expected.accepts(current) {
            return Err(StoreError::Conflict {
                stream_id: stream_id.to_owned(),
                expected,
                actual: current,
            });
        }
        let now = Utc::now();
        let floor = inner.last_commit.map_or(now, |t| t.max(now));
        inner.last_commit = Some(floor);
        let first_position = inner.log.len() as u64 + 1;
        let n = events.len() as u64;
        let mut positions = Vec::with_capacity(events.len());
        for (i, e) in events.into_iter().enumerate() {
            let position = first_position + i as u64;
            positions.push(position);
            inner.ids.insert(e.event_id, position);
            inner.appends.push((first_position, n));
            inner.log.push(Arc::new(RecordedEvent {
                stream_id: stream_id.to_owned(),
                stream_version: current + 1 + i as u64,
                position,
                event_id: e.event_id,
                timestamp: e.timestamp.unwrap_or(floor),
                event_type: e.event_type,
                schema_version: e.schema_version,
                metadata: e.metadata,
                payload: e.payload,
            }));
        }
        match inner.streams.get_mut(stream_id) {
            Some(stream) => stream.extend(positions),
            None => {
                inner.streams.insert(stream_id.to_owned(), positions);
            }
        }
        let head = inner.log.len() as u64;
        drop(inner);
        self.head.publish(head);
        Ok(AppendResult {
            first_version: current + 1,
            last_version: current + n,
            first_position,
            last_position: first_position + n - 1,
            retried: false,
        })
    }

    fn read_stream(
        &self,
        stream_id: &str,
        from_version: u64,
    ) -> Result<EventStream<'_>, StoreError> {
        self.limits.check_stream_id(stream_id)?;
        let stream_id = stream_id.to_owned();
        let mut next_index = from_version.max(1) as usize - 1;
        Ok(Box::new(chunked(move || {
            let inner = self.read();
            let Some(positions) = inner.streams.get(&stream_id) else {
                return Vec::new();
            };
            let end = positions.len().min(next_index.saturating_add(READ_CHUNK));
            let chunk: Vec<_> = positions
                .get(next_index..end)
                .unwrap_or_default()
                .iter()
                .map(|&p| Arc::clone(&inner.log[p as usize - 1]))
                .collect();
            next_index = end.max(next_index);
            chunk
        })))
    }

    fn read_all(&self, from_position: u64) -> Result<EventStream<'_>, StoreError> {
        let mut next_index = from_position.max(1) as usize - 1;
        Ok(Box::new(chunked(move || {
            let inner = self.read();
            let end = inner.log.len().min(next_index.saturating_add(READ_CHUNK));
            let chunk = inner.log.get(next_index..end).unwrap_or_default().to_vec();
            next_index = end.max(next_index);
            chunk
        })))
    }

    fn stream_version(&self, stream_id: &str) -> Result<u64, StoreError> {
        self.limits.check_stream_id(stream_id)?;
        Ok(self
            .read()
            .streams
            .get(stream_id)
            .map_or(0, |s| s.len() as u64))
    }

    fn stream_end(&self, stream_id: &str) -> Result<Option<StreamEnd>, StoreError> {
        self.limits.check_stream_id(stream_id)?;
        Ok(self.read().streams.get(stream_id).and_then(|s| {
            Some(StreamEnd {
                version: s.len() as u64,
                position: *s.last()?,
            })
        }))
    }

    fn head_position(&self) -> Result<u64, StoreError> {
        Ok(self.read().log.len() as u64)
    }

    fn wait_for_head(&self, position: u64, timeout: Duration) -> Result<u64, StoreError> {
        Ok(self.head.wait(position, timeout))
    }

    fn snapshots(&self) -> Option<&dyn SnapshotStore> {
        Some(self)
    }

    fn version_of_event(&self, stream_id: &str, event_id: Uuid) -> Result<Option<u64>, StoreError> {
        self.limits.check_stream_id(stream_id)?;
        let inner = self.read();
        Ok(inner
            .ids
            .get(&event_id)
            .and_then(|&position| {
                inner
                    .log
                    .get(usize::try_from(position).ok()?.checked_sub(1)?)
            })
            .filter(|recorded| recorded.stream_id == stream_id)
            .map(|recorded| recorded.stream_version))
    }
}

impl SnapshotStore for MemoryStore {
    fn save_snapshot(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        self.limits.check_stream_id(&snapshot.stream_id)?;
        let mut all = self.snapshots.lock().unwrap_or_else(|e| e.into_inner());
        retain_newest(all.entry(snapshot.stream_id.clone()).or_default(), snapshot);
        Ok(())
    }

    fn load_snapshot(
        &self,
        stream_id: &str,
        max_version: u64,
    ) -> Result<Option<Snapshot>, StoreError> {
        let all = self.snapshots.lock().unwrap_or_else(|e| e.into_inner());
        Ok(all
            .get(stream_id)
            .and_then(|list| newest_at_or_below(list, max_version))
            .cloned())
    }
}

/// An iterator that refills from `fetch` one chunk at a time until it returns nothing.
fn chunked<'a>(
    mut fetch: impl FnMut() -> Vec<Arc<RecordedEvent>> + Send + 'a,
) -> impl Iterator<Item = Result<RecordedEvent, StoreError>> + Send + 'a {
    let mut buffer: VecDeque<Arc<RecordedEvent>> = VecDeque::new();
    std::iter::from_fn(move || {
        if buffer.is_empty() {
            buffer.extend(fetch());
        }
        buffer.pop_front().map(|e| Ok(RecordedEvent::clone(&e)))
    })
}
