//! The group-commit writer: deciding an append against the stream's version and the
//! event ids already stored, queueing its frame, writing and syncing a group of appends
//! at once, rolling back a failed group, and the periodic sync.
//!
//! Whoever finds the writer idle writes the queue in its own thread (one appender alone
//! never waits for another thread). Appends queued while a group is being written are
//! taken over by the committer thread, which writes group after group until the queue
//! is empty. Each append waits on a slot of its own, and a group's completion wakes only
//! the appenders it carried.
//!
//! Before each group the committer waits for the appends already on their way (their
//! appenders are inside `append` but have not queued yet: most were just woken by the
//! previous group and are preparing the next append), until all of them have queued,
//! and never longer than the previous write and sync took. Without that wait the
//! appenders of one group would always queue during the next group's sync and settle
//! into two alternating halves, each sync carrying half of them; with it, one sync
//! carries them all whenever they come back faster than a sync. When they do not (the
//! wait runs out), the halves are the better choice: each half comes back while the
//! other's sync runs, instead of the disk waiting for all of them. So after a wait runs
//! out the committer writes the next [`GATHER_PAUSE`] groups without waiting, then tries
//! again.

use super::{FileStore, Shared, lock, read};
use crate::format::{self, FramePlace, PreparedEvent, SEGMENT_HEADER_LEN};
use crate::group::{GROUP_MAX_EVENTS, GROUP_SEGMENTS, IdGroup};
use crate::index::{FrameEntry, FrameRef, IdMap, Index, Located};
use crate::layout::{
    CreateSegmentError, INDEX_FILE, LogOffset, create_segment, segment_name, segment_path,
};
use crate::published::Published;
use crate::seal::SealedError;
use crate::store::Durability;
use crate::vfs::{VfsFile, write_atomically};
use chrono::{DateTime, Utc};
use es_core::store::{IdLocation, check_idempotent_retry};
use es_core::{AppendResult, ExpectedVersion, NewEvent, StoreError};
use std::collections::HashMap;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard, OnceLock, Weak};
use std::thread::Thread;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// The writer's state, behind one mutex.
pub(super) struct Writer {
    /// Segment the next frame goes to, and the offset after the last queued frame.
    tail: LogOffset,
    /// End of what is written and acknowledged: where a failed flush rolls back to.
    pub(super) durable_tail: LogOffset,
    /// End of what is synced to disk (equal to `durable_tail` under `Always`). Every
    /// frame records it, so that recovery can prove what was durable.
    synced_end: LogOffset,
    next_position: u64,
    /// Versions of streams with unpublished frames.
    overlay: HashMap<Arc<str>, u64, foldhash::fast::RandomState>,
    /// Frames queued or being flushed, in log order, not yet visible to readers (each
    /// stream's name shared with its overlay entry).
    unpublished: Vec<(Arc<str>, FrameEntry)>,
    /// Queued bytes per segment, not yet written.
    queue: Vec<Chunk>,
    /// Ids of unpublished events with their positions (published ones are in the index).
    ids: IdMap,
    /// The same ids in position order.
    pending_ids: Vec<Uuid>,
    /// The completion slots of the queued appends, in queue order.
    waiters: Vec<Arc<Slot>>,
    pub(super) flushing: bool,
    /// Set while the periodic sync runs outside the lock: a group written meanwhile waits
    /// for its outcome before it is acknowledged, since after a failed sync nothing more
    /// may be (a roll's sync of the same file could report success over dropped pages).
    pub(super) periodic_syncing: bool,
    /// Set by a group whose write or sync failed while it waits for a periodic sync to
    /// end: that sync's success may then be over pages whose error the failed sync was
    /// told of, so it proves nothing and is not published.
    group_failed_during_sync: bool,
    /// Set while the committer thread owns the queue (woken, or writing group after
    /// group); appenders then leave the writing to it.
    committer_awake: bool,
    /// Threads waiting on `Shared::flushed` for a flush to end (a conflict or retry
    /// waiting for the outcome of an append in flight, a checkpoint): the end of a flush
    /// signals that condition variable only when someone waits on it.
    watchers: usize,
    /// How long the last group's write and sync took: the longest the committer waits
    /// for appends on their way.
    last_io: Duration,
    /// Groups still to write without waiting for appends on their way, after a wait that
    /// ran out (see [`GATHER_PAUSE`]).
    gathers_paused: u32,
    /// Bytes of the active segment that exist on disk (data plus zero-filled room).
    pub(super) allocated: u64,
    pub(super) stats: WriteStats,
    /// Set after an fsync failure: writes are refused until reopened.
    pub(super) poisoned: Option<String>,
    last_timestamp: DateTime<Utc>,
    scratch: Vec<u8>,
    /// Buffers of written chunks, kept for the next ones (at most [`SPARE_BUFFERS`], none
    /// larger than [`SPARE_BUFFER_MAX`]).
    spare_buffers: Vec<Vec<u8>>,
    /// Whether written data awaits a periodic sync.
    dirty: bool,
    pub(super) closed: bool,
}

/// Where one queued append learns its outcome: set once by the thread that wrote its
/// group, then its appender is woken.
struct Slot {
    appender: Thread,
    /// Appenders of the same group that this one wakes once it is awake, so that the
    /// thread that completes a group wakes a few appenders, not all of them (a tree:
    /// each woken appender wakes two more). Set before `outcome`.
    wakes: OnceLock<[Option<Arc<Slot>>; 2]>,
    outcome: OnceLock<Outcome>,
}

/// How a queued append ended.
#[derive(Clone)]
enum Outcome {
    /// Written and, as the durability mode asks, synced.
    Acknowledged,
    /// Its group (or one before it) failed to write or sync, and was rolled back.
    Failed {
        kind: io::ErrorKind,
        message: String,
    },
}

impl Slot {
    fn new() -> Arc<Slot> {
        Arc::new(Slot {
            appender: std::thread::current(),
            wakes: OnceLock::new(),
            outcome: OnceLock::new(),
        })
    }

    /// Waits for the outcome, then wakes the appenders this one is to wake.
    fn wait(&self) -> &Outcome {
        loop {
            if let Some(outcome) = self.outcome.get() {
                for next in self.wakes.get().into_iter().flatten().flatten() {
                    next.appender.unpark();
                }
                return outcome;
            }
            std::thread::park();
        }
    }
}

/// Completes the slots of a group with one outcome and wakes its first
/// [`WOKEN_BY_THE_WRITER`] appenders; each appender woken wakes two more.
fn complete(slots: &[Arc<Slot>], outcome: &Outcome) {
    let first = WOKEN_BY_THE_WRITER;
    for (i, slot) in slots.iter().enumerate() {
        let wakes = [
            slots.get(first + 2 * i).cloned(),
            slots.get(first + 2 * i + 1).cloned(),
        ];
        // each slot is in exactly one group, and completed once
        let _ = slot.wakes.set(wakes);
        let _ = slot.outcome.set(outcome.clone());
    }
    let me = std::thread::current().id();
    for slot in slots.iter().take(first) {
        if slot.appender.id() != me {
            slot.appender.unpark();
        }
    }
}

/// Appenders of a completed group that the writing thread wakes itself: a small group is
/// woken at once rather than one appender after the other; in a larger one each woken
/// appender wakes two more, so that the writer does not pay one wake per append.
const WOKEN_BY_THE_WRITER: usize = 4;

/// Buffers of written chunks kept for the next appends: enough for the chunks of a
/// group (one per segment it writes to, rarely more than two).
const SPARE_BUFFERS: usize = 4;

/// The largest buffer kept: a group of many appends may have grown one far beyond what
/// the next append needs.
const SPARE_BUFFER_MAX: usize = 1 << 20;

/// Queued bytes of one segment, written with one `pwrite`.
struct Chunk {
    /// Where the bytes go.
    at: LogOffset,
    /// Set when this chunk starts a new segment: its first position.
    new_segment: Option<u64>,
    bytes: Vec<u8>,
}

/// Writes zeros over `from..to` of `file`, a bounded piece at a time.
fn write_zeros(file: &dyn VfsFile, from: u64, to: u64) -> io::Result<()> {
    const PIECE: u64 = 256 * 1024;
    static ZEROS: [u8; PIECE as usize] = [0; PIECE as usize];
    let mut at = from;
    while at < to {
        let n = (to - at).min(PIECE);
        file.write_all_at(&ZEROS[..n as usize], at)?;
        at += n;
    }
    Ok(())
}

pub(super) fn periodic_sync(shared: Weak<Shared>, interval: Duration) {
    loop {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        {
            let (stop, wake) = &shared.stop_sync;
            let stopped = lock(stop);
            let (stopped, _) = wake
                .wait_timeout_while(stopped, interval, |s| !*s)
                .unwrap_or_else(|e| e.into_inner());
            if *stopped {
                return;
            }
        }
        let mut w = lock(&shared.writer);
        if w.closed {
            return;
        }
        // not while a group is being written (the next tick syncs it): a group that ends
        // while this sync runs waits for its outcome (see `periodic_syncing`)
        if w.dirty && w.poisoned.is_none() && !w.flushing {
            w.dirty = false;
            let target = w.durable_tail;
            let file = shared.segment(target.segment).ok();
            if let Some(file) = file {
                w.periodic_syncing = true;
                drop(w);
                let synced = file.sync_data();
                let mut w = lock(&shared.writer);
                w.periodic_syncing = false;
                match synced {
                    // a sync of the same file that failed meanwhile may have been told of
                    // an error over these pages: this success then proves nothing
                    Ok(()) if w.poisoned.is_none() && !w.group_failed_during_sync => {
                        w.synced_end = w.synced_end.max(target);
                        let head = read(&shared.published).head;
                        shared.publish(w.durable_tail, head, w.synced_end);
                    }
                    Ok(()) => {}
                    Err(e) => {
                        w.poisoned = Some(format!(
                            "periodic fsync of {} failed: {e}",
                            segment_name(target.segment)
                        ))
                    }
                }
                if w.watchers > 0 {
                    shared.flushed.notify_all();
                }
            }
        }
    }
}

/// The committer thread: writes group after group while appends are queued behind the
/// one being written, then sleeps until an appender finds the queue growing during a
/// write again. Ends when the store closes.
pub(super) fn commit_queued(shared: Arc<Shared>) {
    let gather = shared.options.durability == Durability::Always;
    let mut w = lock(&shared.writer);
    loop {
        if w.closed {
            return;
        }
        if !w.committer_awake || w.flushing {
            w = shared
                .commit_wake
                .wait(w)
                .unwrap_or_else(|e| e.into_inner());
            continue;
        }
        if gather && w.gathers_paused > 0 {
            w.gathers_paused -= 1;
        } else if gather && shared.on_their_way(&w) > 0 {
            let deadline = Instant::now() + w.last_io;
            shared.gathering.store(true, Ordering::SeqCst);
            while !w.closed && shared.on_their_way(&w) > 0 {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    // they come back slower than a sync: the next groups go without
                    // waiting, so that appenders return during the other groups' syncs
                    w.gathers_paused = GATHER_PAUSE;
                    break;
                }
                w = shared
                    .commit_wake
                    .wait_timeout(w, left)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            shared.gathering.store(false, Ordering::SeqCst);
        }
        if w.queue.is_empty() {
            // nothing came: appenders lead their own writes again until the next group
            // grows behind one
            w.committer_awake = false;
            continue;
        }
        shared.flush(w);
        w = lock(&shared.writer);
    }
}

/// Groups the committer writes without waiting for the appends on their way after a wait
/// for them ran out. A wait that runs out means the appenders take longer to come back
/// than a write and sync take (many appenders, few cores, a fast disk): then waiting
/// leaves the disk idle while they come back, and writing whatever is queued lets those
/// of one group come back during the next group's sync instead. Every so many groups the
/// committer waits again, to find out whether they come back in time now (a slower disk,
/// fewer appenders).
const GATHER_PAUSE: u32 = 16;

/// Counts an append in flight until it returns, and wakes a committer that may be
/// waiting for it.
struct InFlight<'a>(&'a Shared);

impl<'a> InFlight<'a> {
    fn enter(shared: &'a Shared) -> Self {
        shared.appending.fetch_add(1, Ordering::SeqCst);
        InFlight(shared)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let shared = self.0;
        shared.appending.fetch_sub(1, Ordering::SeqCst);
        if shared.gathering.load(Ordering::SeqCst) {
            // under the mutex, so that the wake cannot fall between the committer's
            // check and its wait; only when nothing else is on its way, which is all the
            // committer waits for (a wake for each returning appender would cost the
            // committer a context switch each)
            let w = lock(&shared.writer);
            if shared.on_their_way(&w) == 0 {
                shared.commit_wake.notify_one();
            }
        }
    }
}

impl Shared {
    /// Appends inside `append` that have not queued yet, not counting those waiting for
    /// the outcome of another append.
    fn on_their_way(&self, w: &Writer) -> u64 {
        self.appending
            .load(Ordering::SeqCst)
            .saturating_sub(w.waiters.len() as u64 + w.watchers as u64)
    }

    /// Records the acknowledged and durable ends for readers and for recovery.
    fn publish(&self, end: LogOffset, head: u64, durable: LogOffset) {
        if let Some(file) = &self.published_file {
            Published { end, head, durable }.write(&**file);
        }
    }

    fn io_error(&self, what: &str, e: &io::Error) -> String {
        format!("{what} in {}: {e}", self.dir.display())
    }

    /// Syncs the log and encodes the index for the index file, which then covers only
    /// durable frames. The caller writes it, holding the sealing lock (the sealing thread
    /// writes the file too) but not the writer's.
    pub(super) fn index_to_save(&self, w: &mut Writer) -> Result<Vec<u8>, StoreError> {
        // a segment that cannot be opened is an error too: nothing is recorded as durable
        // that was not synced
        let active = self.segment(w.durable_tail.segment)?;
        if let Err(e) = active.sync_data() {
            // as after a failed flush: the dirty pages may be gone, a retry could lie
            let message = self.io_error("fsync of the log failed", &e);
            w.poisoned = Some(format!(
                "{message}; writes are refused until the store is reopened"
            ));
            return Err(e.into());
        }
        w.synced_end = w.synced_end.max(w.durable_tail);
        let index = read(&self.published);
        self.publish(w.durable_tail, index.head, w.synced_end);
        Ok(index.encode())
    }

    /// Writes queued chunks. A segment being left is cut to its last frame and synced
    /// before the next one is created; the active segment grows in zero-filled steps so
    /// that a sync rarely has to persist a new file size; the last file is synced as the
    /// durability mode asks. Returns the new segment files and the allocated end.
    fn write_chunks(
        &self,
        chunks: &[Chunk],
        tail: LogOffset,
        mut allocated: u64,
    ) -> io::Result<(Vec<Arc<dyn VfsFile>>, u64)> {
        let mut created = Vec::new();
        let mut current: Option<(u64, Arc<dyn VfsFile>)> = None;
        let mut data_end = tail.offset;
        let open = |no: u64| self.segment(no).map_err(io::Error::other);
        for chunk in chunks {
            let file = match (chunk.new_segment, &current) {
                (Some(first_position), _) => {
                    let sealed = match &current {
                        Some((no, f)) if *no + 1 == chunk.at.segment => Arc::clone(f),
                        _ => open(chunk.at.segment - 1)?,
                    };
                    let name = segment_name(chunk.at.segment - 1);
                    sealed
                        .set_len(data_end)
                        .map_err(|e| not_survivable(e, format!("cutting {name} at {data_end}")))?;
                    sealed
                        .sync_data()
                        .map_err(|e| not_survivable(e, format!("fdatasync of {name}")))?;
                    // a failed write (survivable when the disk is full) is kept apart
                    // from a failed sync (never survivable)
                    let f = create_segment(
                        &*self.options.vfs,
                        &self.dir,
                        chunk.at.segment,
                        first_position,
                    )
                    .map_err(|e| {
                        let name = segment_name(chunk.at.segment);
                        match e {
                            CreateSegmentError::Write(e) => {
                                failed_at(e, format!("creating {name}"))
                            }
                            CreateSegmentError::Sync(e) => not_survivable(
                                e,
                                format!("syncing the new {name} and the directory"),
                            ),
                        }
                    })?;
                    allocated = SEGMENT_HEADER_LEN as u64;
                    created.push(Arc::clone(&f));
                    f
                }
                (None, Some((no, f))) if *no == chunk.at.segment => Arc::clone(f),
                (None, _) => open(chunk.at.segment)?,
            };
            let end = chunk.at.offset + chunk.bytes.len() as u64;
            let step = self.options.preallocate;
            if step > 0 && end > allocated {
                let new_allocated = end.div_ceil(step).saturating_mul(step);
                match write_zeros(&*file, end, new_allocated) {
                    Ok(()) => allocated = new_allocated,
                    // no room for the room: the frames may still fit, written alone (zeros
                    // written before the disk filled are room after the tail, as ever)
                    Err(e) if e.kind() == io::ErrorKind::StorageFull => {}
                    Err(e) => {
                        let name = segment_name(chunk.at.segment);
                        return Err(failed_at(
                            e,
                            format!("preallocating {name} from {end} to {new_allocated}"),
                        ));
                    }
                }
            }
            file.write_all_at(&chunk.bytes, chunk.at.offset)
                .map_err(|e| {
                    failed_at(
                        e,
                        format!(
                            "writing {} bytes at offset {} of {}",
                            chunk.bytes.len(),
                            chunk.at.offset,
                            segment_name(chunk.at.segment)
                        ),
                    )
                })?;
            allocated = allocated.max(end);
            data_end = end;
            current = Some((chunk.at.segment, file));
        }
        if let Some((no, f)) = &current
            && self.options.durability == Durability::Always
        {
            f.sync_data()
                .map_err(|e| not_survivable(e, format!("fdatasync of {}", segment_name(*no))))?;
        }
        Ok((created, allocated))
    }
}

/// Marks an error of a sync (or of cutting a sealed segment) so that the store stops
/// writing: after a failed `fdatasync` the kernel may have dropped the pages, whatever
/// the error's kind, so even a "disk full" from a sync is not survivable.
/// The error keeps its kind (a full disk stays `StorageFull`, a failed device `Other` or
/// whatever the system said), so that callers can tell what happened.
fn not_survivable(e: io::Error, what: String) -> io::Error {
    io::Error::new(e.kind(), SyncFailed { what, source: e })
}

/// Whether `e` is the error of a sync (see [`not_survivable`]).
fn is_sync_failure(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<SyncFailed>())
}

/// A failed `fdatasync` (or a failed cut of a sealed segment): never survivable. `what`
/// names the call and its file.
#[derive(Debug)]
struct SyncFailed {
    what: String,
    source: io::Error,
}

impl std::fmt::Display for SyncFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} failed: {}", self.what, self.source)
    }
}

/// A failed write, with what was written where (its kind kept: a full disk stays
/// `StorageFull`).
fn failed_at(e: io::Error, what: String) -> io::Error {
    io::Error::new(e.kind(), WriteFailed { what, source: e })
}

#[derive(Debug)]
struct WriteFailed {
    what: String,
    source: io::Error,
}

impl std::fmt::Display for WriteFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.what, self.source)
    }
}

impl std::error::Error for WriteFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

impl std::error::Error for SyncFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

impl FileStore {
    pub(super) fn do_append(
        &self,
        stream_id: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        let span = tracing::debug_span!(
            "es.append",
            stream_id,
            events = events.len(),
            expected = ?expected,
            first_position = tracing::field::Empty,
            last_version = tracing::field::Empty,
        );
        // nothing listens to the span: entering it and recording its fields would only
        // cost; the event below is still emitted
        let _entered = (!span.is_disabled()).then(|| span.enter());
        let result = self.append_in_span(stream_id, expected, events);
        match &result {
            Ok(_) if span.is_disabled() => {}
            Ok(r) => {
                span.record("first_position", r.first_position);
                span.record("last_version", r.last_version);
            }
            Err(e) => tracing::debug!(error = %e, "append refused or failed"),
        }
        result
    }

    fn append_in_span(
        &self,
        stream_id: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        let shared = &*self.shared;
        let _in_flight = InFlight::enter(shared);
        if shared.options.read_only {
            return Err(StoreError::ReadOnly(format!(
                "{} was opened read-only",
                shared.dir.display()
            )));
        }
        shared.options.limits.check_append(stream_id, &events)?;
        let prepared = events
            .into_iter()
            .enumerate()
            .map(|(index, e)| {
                PreparedEvent::from_new(e).map_err(|(err, event_type)| StoreError::InvalidEvent {
                    stream_id: stream_id.to_owned(),
                    index,
                    event_type,
                    reason: format!("the metadata cannot be encoded: {err}"),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        // the ids of the usual small append without an allocation
        let mut few = [Uuid::nil(); 8];
        let many: Vec<Uuid>;
        let event_ids: &[Uuid] = if prepared.len() <= few.len() {
            for (id, p) in few.iter_mut().zip(&prepared) {
                *id = p.event_id;
            }
            &few[..prepared.len()]
        } else {
            many = prepared.iter().map(|p| p.event_id).collect();
            &many
        };
        let mut w = lock(&shared.writer);
        // a conflict is reported after at most three more flushes: a stream that others
        // keep appending to is always being written, and the wait must end
        let mut conflict_until: Option<u64> = None;
        let (slot, result) = loop {
            if let Some(reason) = &w.poisoned {
                return Err(StoreError::ReadOnly(reason.clone()));
            }
            if w.closed {
                return Err(StoreError::ReadOnly("the store is closed".into()));
            }
            let current = match w.overlay.get(stream_id) {
                Some(&v) => v,
                None => read(&shared.published).version(stream_id),
            };
            let mut pending_original = false;
            let checked = {
                let index = read(&shared.published);
                let w_ref = &*w;
                let mut failed = None;
                let checked =
                    check_idempotent_retry(stream_id, expected, event_ids, current, |id| {
                        if let Some(&position) = w_ref.ids.get(id) {
                            pending_original = true;
                            let (s, f) = w_ref.unpublished.iter().find(|(_, f)| {
                                position >= f.first_position
                                    && position < f.first_position + f.count
                            })?;
                            return Some(IdLocation {
                                same_stream: **s == *stream_id,
                                stream_version: f.first_version + (position - f.first_position),
                                position,
                                append_first_position: f.first_position,
                                append_len: f.count,
                            });
                        }
                        match shared.find_id(&index, stream_id, id) {
                            Ok(found) => found,
                            Err(e) => {
                                failed.get_or_insert(e);
                                None
                            }
                        }
                    });
                if let Some(e) = failed {
                    return Err(e);
                }
                checked
            };
            let retry = match checked {
                Err(_) if pending_original && !w.closed => {
                    // the refusal names ids still being written: their group may yet fail
                    // and be forgotten. Wait for its outcome, then decide again.
                    w = shared.wait_for_flush(w);
                    continue;
                }
                checked => checked?,
            };
            if let Some(original) = retry {
                if !pending_original {
                    return Ok(original);
                }
                // the original is still being written: wait for its outcome, then decide again
                w = shared.wait_for_flush(w);
                continue;
            }
            if !expected.accepts(current) {
                let until = *conflict_until.get_or_insert(w.stats.flushes + 3);
                if w.overlay.contains_key(stream_id) && !w.closed && w.stats.flushes < until {
                    // the version this conflicts with is still being written: a conflict
                    // reported now would name a version no reader can see yet, and a
                    // caller retrying on what it reads would spin until that write
                    // lands. Wait for its outcome, then decide again (a few times: other
                    // appenders may keep the stream busy for good).
                    w = shared.wait_for_flush(w);
                    continue;
                }
                return Err(StoreError::Conflict {
                    stream_id: stream_id.to_owned(),
                    expected,
                    actual: current,
                });
            }
            break self.enqueue(&mut w, stream_id, current, &prepared)?;
        };
        if !w.flushing && !w.committer_awake {
            // nobody is writing: write the queue (this append and whatever is queued
            // with it) in this thread, without a hand-off
            shared.flush(w);
        } else {
            drop(w);
        }
        match slot.wait() {
            Outcome::Acknowledged => Ok(result),
            Outcome::Failed { kind, message } => {
                Err(StoreError::Io(io::Error::new(*kind, message.clone())))
            }
        }
    }

    /// Encodes the append as a frame at the log's tail and queues it.
    fn enqueue(
        &self,
        w: &mut Writer,
        stream_id: &str,
        current: u64,
        prepared: &[PreparedEvent],
    ) -> Result<(Arc<Slot>, AppendResult), StoreError> {
        let shared = &*self.shared;
        let now = Utc::now().max(w.last_timestamp);
        w.last_timestamp = now;
        let n = prepared.len() as u64;
        let mut at = w.tail;
        let synced_back = |w: &Writer, at: LogOffset| {
            // a new segment's header is synced before any frame is written into it
            let synced = if w.synced_end.segment == at.segment {
                w.synced_end.offset
            } else {
                SEGMENT_HEADER_LEN as u64
            };
            at.offset.saturating_sub(synced)
        };
        let mut place = FramePlace {
            first_position: w.next_position,
            first_version: current + 1,
            timestamp: now,
            synced_back: Some(synced_back(w, at)),
        };
        let mut scratch = std::mem::take(&mut w.scratch);
        scratch.clear();
        let mut len = format::encode_frame(&mut scratch, place, stream_id, prepared);
        let mut new_segment = None;
        if at.offset > SEGMENT_HEADER_LEN as u64
            && at.offset + len as u64 > shared.options.segment_size
        {
            at = LogOffset::segment_start(at.segment + 1);
            new_segment = Some(place.first_position);
            place.synced_back = Some(synced_back(w, at));
            scratch.clear();
            len = format::encode_frame(&mut scratch, place, stream_id, prepared);
        }
        if len > shared.frame_cap {
            w.scratch = scratch;
            return Err(StoreError::BatchTooLarge {
                stream_id: stream_id.to_owned(),
                reason: format!(
                    "the encoded append is {len} bytes; the frame cap is {}",
                    shared.frame_cap
                ),
            });
        }
        match w.queue.last_mut() {
            Some(c) if new_segment.is_none() && c.at.segment == at.segment => {
                c.bytes.extend_from_slice(&scratch);
                w.scratch = scratch;
            }
            _ => {
                // the frame's buffer becomes the chunk's; a spare one the next scratch
                w.scratch = w.spare_buffers.pop().unwrap_or_default();
                w.queue.push(Chunk {
                    at,
                    new_segment,
                    bytes: scratch,
                });
            }
        }
        w.tail = LogOffset::new(at.segment, at.offset + len as u64);
        let entry = FrameEntry {
            first_position: place.first_position,
            first_version: place.first_version,
            count: n,
            at: FrameRef {
                segment: at.segment,
                offset: at.offset,
                len: len as u32,
            },
        };
        let name = match w.overlay.get_key_value(stream_id) {
            Some((name, _)) => Arc::clone(name),
            None => Arc::from(stream_id),
        };
        w.unpublished.push((Arc::clone(&name), entry));
        w.overlay.insert(name, current + n);
        for (i, e) in prepared.iter().enumerate() {
            w.ids.insert(e.event_id, place.first_position + i as u64);
            w.pending_ids.push(e.event_id);
        }
        w.next_position += n;
        let slot = Slot::new();
        w.waiters.push(Arc::clone(&slot));
        if shared.gathering.load(Ordering::SeqCst) && shared.on_their_way(w) == 0 {
            // the committer waits for the appends on their way: this was the last
            shared.commit_wake.notify_one();
        }
        Ok((
            slot,
            AppendResult {
                first_version: current + 1,
                last_version: current + n,
                first_position: place.first_position,
                last_position: place.first_position + n - 1,
                retried: false,
            },
        ))
    }
}

impl Shared {
    /// One group commit: writes everything queued, syncs, publishes, hands appends queued
    /// meanwhile to the committer thread, and wakes the appenders it carried.
    fn flush(&self, mut w: MutexGuard<'_, Writer>) {
        let shared = self;
        let mut chunks = std::mem::take(&mut w.queue);
        let mut carried = std::mem::take(&mut w.waiters);
        if let Some(reason) = w.poisoned.clone() {
            // a sync failed since these appends were queued (the periodic one): a later
            // sync of the same file could report success over pages the kernel dropped,
            // so nothing more is written or acknowledged
            carried.append(&mut w.waiters);
            let e = io::Error::other(reason.clone());
            shared.roll_back(&mut w, &e, reason.clone());
            w.poisoned = Some(reason.clone());
            if w.watchers > 0 {
                shared.flushed.notify_all();
            }
            drop(w);
            complete(
                &carried,
                &Outcome::Failed {
                    kind: e.kind(),
                    message: reason,
                },
            );
            return;
        }
        let frames = w.unpublished.len();
        let tail = w.tail;
        let (durable_tail, allocated) = (w.durable_tail, w.allocated);
        w.flushing = true;
        drop(w);
        let started = Instant::now();
        let result = shared.write_chunks(&chunks, durable_tail, allocated);
        let io_time = started.elapsed();
        let mut w = lock(&shared.writer);
        w.group_failed_during_sync = result.is_err();
        while w.periodic_syncing {
            w = shared.wait_for_flush(w);
        }
        w.group_failed_during_sync = false;
        w.flushing = false;
        w.stats.flushes += 1;
        w.stats.io_time += io_time;
        w.last_io = io_time;
        let result = match (result, &w.poisoned) {
            // a sync of the same file failed while this group was being written (the
            // periodic one): a later sync, the roll's included, may have reported success
            // over pages the kernel dropped, so nothing of this group is acknowledged
            (Ok(_), Some(reason)) => Err(io::Error::other(reason.clone())),
            (result, _) => result,
        };
        let outcome = match result {
            Ok((created, allocated)) => {
                {
                    let mut recent = shared.recent.write().unwrap_or_else(|e| e.into_inner());
                    for chunk in &chunks {
                        recent.push(chunk.at.segment, chunk.at.offset, &chunk.bytes);
                    }
                }
                let new_segment = chunks.iter().rev().find_map(|c| {
                    c.new_segment
                        .map(|_| LogOffset::segment_start(c.at.segment))
                });
                for chunk in chunks.drain(..) {
                    let mut bytes = chunk.bytes;
                    if w.spare_buffers.len() < SPARE_BUFFERS && bytes.capacity() <= SPARE_BUFFER_MAX
                    {
                        bytes.clear();
                        w.spare_buffers.push(bytes);
                    }
                }
                if w.queue.capacity() == 0 {
                    // the queue's room too, unless appends queued meanwhile have their own
                    w.queue = std::mem::take(&mut chunks);
                }
                w.allocated = allocated;
                w.stats.appends += carried.len() as u64;
                if let Some(newest) = created.last() {
                    let mut files = lock(&shared.segments);
                    files.count += created.len() as u64;
                    files.active = Some(Arc::clone(newest));
                }
                // the frames written move from the writer's overlay into the index, in one
                // pass under both locks
                let w = &mut *w;
                let mut published_events = 0u64;
                let mut starts_segment = false;
                let head = {
                    let mut index = shared.published.write().unwrap_or_else(|e| e.into_inner());
                    let mut ids = w.pending_ids.as_slice();
                    for (stream, entry) in w.unpublished.drain(..frames) {
                        let (frame_ids, rest) = ids.split_at(ids.len().min(entry.count as usize));
                        ids = rest;
                        if let Err(e) = index.push(&stream, entry, frame_ids) {
                            // cannot happen: frames were checked against the same versions
                            tracing::error!("index out of step: {e}");
                        }
                        if w.overlay.get(&*stream) == Some(&(entry.first_version + entry.count - 1))
                        {
                            w.overlay.remove(&*stream);
                        }
                        published_events += entry.count;
                        starts_segment |= entry.at.offset == SEGMENT_HEADER_LEN as u64;
                    }
                    index.head
                };
                shared.head.publish(head);
                if shared.options.durability == Durability::Always {
                    w.synced_end = tail;
                } else if let Some(start) = new_segment {
                    // a roll synced the segments before the new one and its header
                    w.synced_end = w.synced_end.max(start);
                }
                shared.publish(tail, head, w.synced_end);
                // published ids are found in the index from now on
                for id in w.pending_ids.drain(..published_events as usize) {
                    w.ids.remove(&id);
                }
                w.durable_tail = tail;
                w.dirty = shared.options.durability != Durability::Always;
                if new_segment.is_some() || starts_segment {
                    // the segments before the new one are sealed (a segment is sealed once
                    // a later one has a published frame, which may come after the roll
                    // when a crash left the new segment empty): their indexes are written
                    // by the sealing thread, outside this lock
                    let (request, wake) = &shared.sealing;
                    lock(request).pending = true;
                    wake.notify_all();
                }
                Outcome::Acknowledged
            }
            Err(e) => {
                let poisoned = w.poisoned.clone();
                let message = shared.io_error("append failed", &e);
                // the appends queued behind the failed ones fail with them: the roll-back
                // forgets everything not acknowledged
                carried.append(&mut w.waiters);
                shared.roll_back(&mut w, &e, message.clone());
                if poisoned.is_some() {
                    w.poisoned = poisoned;
                }
                Outcome::Failed {
                    kind: e.kind(),
                    message,
                }
            }
        };
        if !w.queue.is_empty() && !w.committer_awake {
            // appends queued during the write: the committer thread writes them next
            w.committer_awake = true;
            shared.commit_wake.notify_one();
        }
        if w.watchers > 0 {
            shared.flushed.notify_all();
        }
        drop(w);
        complete(&carried, &outcome);
    }

    /// Waits until a flush ends (the writer's mutex is released meanwhile).
    pub(super) fn wait_for_flush<'a>(
        &'a self,
        mut w: MutexGuard<'a, Writer>,
    ) -> MutexGuard<'a, Writer> {
        w.watchers += 1;
        let mut w = self.flushed.wait(w).unwrap_or_else(|e| e.into_inner());
        w.watchers -= 1;
        w
    }

    /// Forgets everything not acknowledged after a failed flush. A full disk is survivable
    /// when the partial write can be cut off; anything else refuses writes until reopened.
    fn roll_back(&self, w: &mut Writer, e: &io::Error, message: String) {
        let shared = self;
        let pending: Vec<Uuid> = std::mem::take(&mut w.pending_ids);
        for id in pending {
            w.ids.remove(&id);
        }
        w.queue.clear();
        w.unpublished.clear();
        w.overlay.clear();
        w.next_position = read(&shared.published).head + 1;
        let LogOffset {
            segment: seg,
            offset,
        } = w.durable_tail;
        let last_queued_segment = w.tail.segment;
        w.tail = w.durable_tail;
        // segments created by the failed flush are not part of the log: remove them, so
        // that none can later sit after a segment that kept growing
        let vfs = &*shared.options.vfs;
        let mut stray_removed = true;
        let mut removed_any = false;
        for stray in seg + 1..=last_queued_segment {
            match vfs.remove_file(&segment_path(&shared.dir, stray)) {
                Ok(()) => removed_any = true,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(_) => stray_removed = false,
            }
        }
        if removed_any {
            stray_removed &= vfs.sync_dir(&shared.dir).is_ok();
        }
        // The cut is synced: the failed group's frames, synced by a roll, must not come
        // back after a crash at positions later appends reuse, nor after a reopen as
        // appends their appenders were told failed. It is tried whatever the error; after
        // a failed sync it is not synced (a sync then may report success over pages the
        // kernel dropped, and nothing is built on the cut: the store refuses writes).
        let after_failed_sync = is_sync_failure(e) || w.poisoned.is_some();
        let cut = shared.segment(seg).ok().is_some_and(|f| {
            f.set_len(offset).is_ok() && (after_failed_sync || f.sync_data().is_ok())
        });
        let recoverable =
            e.kind() == io::ErrorKind::StorageFull && !is_sync_failure(e) && stray_removed && cut;
        w.allocated = offset;
        if !recoverable {
            w.poisoned = Some(format!(
                "{message}; writes are refused until the store is reopened"
            ));
        }
    }
}

impl Writer {
    /// Failed flushes whose appenders have not all returned yet: none, since a failure
    /// is handed to each appender's own slot, which goes with the appender.
    pub(super) fn failures_held(&self) -> usize {
        0
    }

    /// The writer of a log that ends at `end`.
    pub(super) fn new(
        end: LogOffset,
        next_position: u64,
        allocated: u64,
        last_timestamp: DateTime<Utc>,
    ) -> Self {
        Writer {
            tail: end,
            durable_tail: end,
            synced_end: end,
            next_position,
            overlay: HashMap::default(),
            unpublished: Vec::new(),
            queue: Vec::new(),
            ids: IdMap::default(),
            pending_ids: Vec::new(),
            waiters: Vec::new(),
            flushing: false,
            periodic_syncing: false,
            group_failed_during_sync: false,
            committer_awake: false,
            watchers: 0,
            last_io: Duration::ZERO,
            gathers_paused: 0,
            allocated,
            stats: WriteStats::default(),
            poisoned: None,
            last_timestamp,
            scratch: Vec::new(),
            spare_buffers: Vec::new(),
            dirty: false,
            closed: false,
        }
    }
}

/// Counters of the writer, for tuning and the CLI.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Appends acknowledged since open.
    pub appends: u64,
    /// Group commits (writes followed by one sync) since open.
    pub flushes: u64,
    /// Time spent in the writes and syncs of the group commits since open: the rest of
    /// the time between commits goes to queueing and waking.
    pub io_time: Duration,
}

/// What the sealing thread is asked to do.
#[derive(Default)]
pub(super) struct SealRequest {
    /// A segment was sealed: write the indexes of sealed segments.
    pub(super) pending: bool,
    /// The store is closing.
    pub(super) stop: bool,
}

/// The sealing thread: writes the index of each sealed segment (synced, renamed into
/// place, the directory synced), then lets the in-memory index drop the segment's frames
/// and ids. A failure leaves them in memory; the next roll, or the next open, retries.
pub(super) fn seal_segments(shared: Weak<Shared>) {
    loop {
        {
            let Some(shared) = shared.upgrade() else {
                return;
            };
            let (request, wake) = &shared.sealing;
            let mut r = lock(request);
            while !r.pending && !r.stop {
                r = wake.wait(r).unwrap_or_else(|e| e.into_inner());
            }
            if r.stop {
                return;
            }
            r.pending = false;
        }
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if let Err(e) = shared.seal_ready(true) {
            tracing::warn!("{e}");
        }
    }
}

impl Shared {
    /// Writes the sealed index of every complete segment whose frames are still in
    /// memory, then drops those frames and ids from memory. One caller at a time.
    /// With `groups`, also builds the id filters of complete windows of segments (the
    /// sealing thread does; `checkpoint` does not wait for them).
    pub(super) fn seal_ready(&self, groups: bool) -> Result<(), StoreError> {
        if self.options.read_only {
            return Ok(());
        }
        let _one_at_a_time = lock(&self.seal_lock);
        let mut sealed_any = false;
        loop {
            let active = lock(&self.segments).count.saturating_sub(1);
            let Some(frames) = read(&self.published).segment_to_seal(active) else {
                break;
            };
            let segment = frames.segment;
            let (sealed, mut table) =
                crate::recovery::write_sealed(&*self.options.vfs, &self.dir, &frames).map_err(
                    |e| {
                        StoreError::Io(io::Error::new(
                            e.kind(),
                            format!("writing the index of sealed segment {segment}: {e}"),
                        ))
                    },
                )?;
            sealed.fit_table(&mut table, self.options.stream_table_cache);
            let mut index = self.published.write().unwrap_or_else(|e| e.into_inner());
            index.install_sealed(sealed).map_err(|e| {
                StoreError::Corrupted(es_core::store::Corruption::new(
                    es_core::store::DataLocation::File {
                        path: crate::layout::segment_name(segment).into(),
                        offset: 0,
                    },
                    format!("its sealed index does not fit the index in memory: {e}"),
                ))
            })?;
            drop(index);
            // the newest table is the likeliest to be searched
            lock(&self.stream_tables).put(segment, table.into());
            sealed_any = true;
        }
        // the stream table is recorded even when a group filter fails
        let grouped = if groups { self.build_groups() } else { Ok(()) };
        if sealed_any {
            // the stream table after the sealed segments, so that an open after a crash
            // need not read their stream tables (a clean close writes the whole index)
            let bytes = crate::index::Index::encode_base_in_steps(&self.published, 16_384);
            write_atomically(
                &*self.options.vfs,
                &self.dir,
                &self.dir.join(INDEX_FILE),
                &bytes,
            )
            .map_err(|e| {
                StoreError::Io(io::Error::new(
                    e.kind(),
                    format!("writing {INDEX_FILE}: {e}"),
                ))
            })?;
        }
        grouped
    }
}

impl Shared {
    /// Writes and installs the id filter of one complete window of sealed segments that
    /// has none (and holds no more than [`GROUP_MAX_EVENTS`] events); asks the sealing
    /// thread to come back for the next one, so that the sealing lock is released between
    /// windows. Called by the sealing thread, under the sealing lock.
    fn build_groups(&self) -> Result<(), StoreError> {
        {
            let todo = {
                let index = read(&self.published);
                let windows = index.sealed.len() as u64 / GROUP_SEGMENTS;
                (0..windows).find_map(|w| {
                    let first = (w * GROUP_SEGMENTS) as usize;
                    let members = &index.sealed[first..first + GROUP_SEGMENTS as usize];
                    let events: u64 = members.iter().map(|m| m.events).sum();
                    let missing = index.groups.get(w as usize).is_none_or(Option::is_none)
                        && !index.groups_refused.contains(&w);
                    (missing && events <= GROUP_MAX_EVENTS).then(|| (w, members.to_vec()))
                })
            };
            let Some((w, members)) = todo else {
                return Ok(());
            };
            // the next window, if any, on the sealing thread's next round
            lock(&self.sealing.0).pending = true;
            let path = crate::layout::group_filter_path(&self.dir, w);
            // a window that failed once is not tried again while the store runs
            self.published
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .groups_refused
                .insert(w);
            let keys = IdGroup::keys(&members, |no| {
                self.sealed_index(no)
                    .map_err(|e| SealedError::Io(io::Error::other(e.to_string())))
            })
            .map_err(|(no, e)| self.sealed_failed(no, e))?;
            let group = IdGroup::encode(w, &members, keys)
                .ok_or_else(|| {
                    StoreError::Io(io::Error::other(format!(
                        "no id filter can be built for {}",
                        path.display()
                    )))
                })
                .and_then(|bytes| {
                    write_atomically(&*self.options.vfs, &self.dir, &path, &bytes).map_err(
                        |e| {
                            StoreError::Io(io::Error::new(
                                e.kind(),
                                format!("writing {}: {e}", path.display()),
                            ))
                        },
                    )?;
                    IdGroup::parse(&bytes, w, &members).map_err(|reason| {
                        StoreError::Io(io::Error::other(format!("{}: {reason}", path.display())))
                    })
                })?;
            let mut index = self.published.write().unwrap_or_else(|e| e.into_inner());
            index.groups_refused.remove(&w);
            index.install_group(group).map_err(|reason| {
                StoreError::Io(io::Error::other(format!("{}: {reason}", path.display())))
            })
        }
    }

    /// Where event `id` is stored among the published events: a recent frame, or a sealed
    /// segment whose filter lets it through and whose id table holds it.
    pub(super) fn find_id(
        &self,
        index: &Index,
        stream_id: &str,
        id: &Uuid,
    ) -> Result<Option<IdLocation>, StoreError> {
        let location = |same_stream: bool, position: u64, f: &FrameEntry| IdLocation {
            same_stream,
            stream_version: f.first_version + (position - f.first_position),
            position,
            append_first_position: f.first_position,
            append_len: f.count,
        };
        if let Some(position) = index.recent_id(id) {
            return Ok(match index.locate(position) {
                Some(Located::Recent(f, no)) => {
                    Some(location(index.recent_frame_of(stream_id, no), position, &f))
                }
                _ => None,
            });
        }
        // newest first, a window of segments at a time: its group filter answers for all
        // its segments when it has one, else each segment's own filter
        let windows = (index.sealed.len() as u64).div_ceil(GROUP_SEGMENTS);
        for w in (0..windows).rev() {
            let first = (w * GROUP_SEGMENTS) as usize;
            let last = (first + GROUP_SEGMENTS as usize).min(index.sealed.len());
            let group = index.groups.get(w as usize).and_then(Option::as_ref);
            if group.is_some_and(|g| !g.may_hold(id)) {
                continue;
            }
            for sealed in index.sealed[first..last].iter().rev() {
                // a segment whose group answers for it has no filter of its own: it may
                if !sealed.may_hold(id) {
                    continue;
                }
                let file = self.sealed_index(sealed.segment)?;
                let found = sealed
                    .find_id(&*file, id)
                    .map_err(|e| self.sealed_failed(sealed.segment, e))?;
                if let Some((position, f, stream)) = found {
                    return Ok(Some(location(stream == stream_id, position, &f)));
                }
            }
        }
        Ok(None)
    }
}
