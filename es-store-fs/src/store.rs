//! `FileStore`: appends with group commit, durable acknowledgement, and streaming reads.

use crate::error::{OpenError, RecoveryReport};
use crate::format::{
    self, FRAME_OVERHEAD, Frame, FramePlace, PreparedEvent, SEGMENT_HEADER_LEN, SegmentHeader,
};
use crate::index::{FrameEntry, FrameRef, Index};
use crate::published::{PUBLISHED_FILE, Published};
use crate::recovery::{self, INDEX_FILE, RecoverOptions};
use crate::snapshot::SnapshotFiles;
use crate::vfs::{DirLock, OpenMode, StdFs, Vfs, VfsFile, write_atomically};
use chrono::{DateTime, Utc};
use es_core::snapshot::{Snapshot, SnapshotStore};
use es_core::store::{HeadSignal, IdLocation, check_idempotent_retry};
use es_core::{
    AppendResult, EventStore, EventStream, ExpectedVersion, Limits, NewEvent, RecordedEvent,
    StoreError,
};
use std::collections::{HashMap, VecDeque};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, Weak};
use std::time::Duration;
use uuid::Uuid;

/// Name of the lock file.
pub const LOCK_FILE: &str = "LOCK";

/// When an acknowledged append is on stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `fdatasync` before acknowledging (the default). A crash loses no acknowledged append.
    #[default]
    Always,
    /// Acknowledge once written to the OS; a background thread syncs every interval. A
    /// crash of the machine (not of the process) can lose the appends of the last
    /// interval, never a part of one.
    Periodic(Duration),
    /// Never sync except when a segment is sealed and at close. A machine crash can lose
    /// anything not yet written back by the OS, never a part of an append.
    None,
}

/// Options of [`FileStore::open_with`].
#[derive(Debug, Clone)]
pub struct FileStoreOptions {
    /// When acknowledged appends are durable.
    pub durability: Durability,
    /// Size limits on what is appended.
    pub limits: Limits,
    /// A segment is sealed and a new one started once it reaches this size.
    pub segment_size: u64,
    /// Truncate the log at the first damaged frame instead of refusing to open,
    /// reporting what was dropped in [`FileStore::recovery_report`].
    pub repair: bool,
    /// Open without the write lock: reads only, nothing on disk changes.
    pub read_only: bool,
    /// The active segment grows in zero-filled steps of this many bytes, so that most
    /// syncs persist data only, not a new file size (0 grows it frame by frame).
    pub preallocate: u64,
    /// The file system (the real one unless a test swaps it).
    pub vfs: Arc<dyn Vfs>,
}

impl Default for FileStoreOptions {
    fn default() -> Self {
        FileStoreOptions {
            durability: Durability::Always,
            limits: Limits::default(),
            segment_size: 64 * 1024 * 1024,
            repair: false,
            read_only: false,
            preallocate: 1024 * 1024,
            vfs: Arc::new(StdFs),
        }
    }
}

impl FileStoreOptions {
    /// The largest frame an append can produce under these limits.
    fn largest_frame(&self) -> usize {
        let l = &self.limits;
        let per_event = 16 + 10 + 12 + 10 + 10 + 10 + 10;
        l.max_batch_size
            .saturating_add(
                l.max_batch_events
                    .saturating_mul(per_event + l.max_event_type_len),
            )
            .saturating_add(l.max_stream_id_len + 64)
    }
}

/// Sealed segments kept open at most, besides the active one: a store of any size stays
/// well under the common limit of 1,024 open files.
const MAX_OPEN_SEALED: usize = 32;

/// The segment files: how many there are, the active (last) one, and a bounded set of
/// sealed ones open for reading, least recently used first.
struct SegmentFiles {
    count: u64,
    active: Option<Arc<dyn VfsFile>>,
    sealed: VecDeque<(u64, Arc<dyn VfsFile>)>,
}

/// A durable, file-based, append-only event store in one directory.
///
/// ```
/// use es_core::{EventStore, ExpectedVersion, NewEvent};
/// use es_store_fs::FileStore;
/// let dir = tempfile::tempdir().unwrap();
/// let store = FileStore::open(dir.path()).unwrap();
/// store.append("cart-1", ExpectedVersion::NoStream, vec![NewEvent::new("CartCreated", 1, b"{}".to_vec())]).unwrap();
/// drop(store);
/// let store = FileStore::open(dir.path()).unwrap();
/// assert_eq!(store.stream_version("cart-1").unwrap(), 1);
/// ```
pub struct FileStore {
    shared: Arc<Shared>,
    /// The periodic sync thread, joined at close so that the lock is released when
    /// `close` returns.
    sync_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for FileStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileStore")
            .field("dir", &self.shared.dir)
            .finish_non_exhaustive()
    }
}

struct Shared {
    dir: PathBuf,
    options: FileStoreOptions,
    frame_cap: usize,
    /// Held for the store's lifetime; the OS locks die with it.
    _lock: Option<WriterLock>,
    /// Where the writer publishes the end of acknowledged frames for readers in other
    /// processes.
    published_file: Option<Arc<dyn VfsFile>>,
    /// Set to stop the periodic sync thread.
    stop_sync: (Mutex<bool>, Condvar),
    /// What readers see: only frames whose append was acknowledged.
    published: RwLock<Index>,
    /// Segment files: the active one always open, sealed ones on demand.
    segments: Mutex<SegmentFiles>,
    writer: Mutex<Writer>,
    /// Appends between entry and return: a group-commit leader waits for them to queue.
    appending: AtomicU64,
    /// Signalled when a flush ends.
    flushed: Condvar,
    /// The published head, for live subscribers.
    head: HeadSignal,
    snapshots: SnapshotFiles,
    report: RecoveryReport,
}

/// The writer's state, behind one mutex.
struct Writer {
    /// Segment the next frame goes to, and the offset after the last queued frame.
    tail: (u64, u64),
    /// End of what is written and acknowledged: where a failed flush rolls back to.
    durable_tail: (u64, u64),
    /// End of what is synced to disk (equal to `durable_tail` under `Always`). Every
    /// frame records it, so that recovery can prove what was durable.
    synced_end: (u64, u64),
    next_position: u64,
    /// Versions of streams with unpublished frames.
    overlay: HashMap<String, u64>,
    /// Frames queued or being flushed, in log order, not yet visible to readers.
    unpublished: Vec<(String, FrameEntry)>,
    /// Queued bytes per segment, not yet written.
    queue: Vec<Chunk>,
    /// Every stored or queued event id, with its position.
    ids: IdMap,
    /// Ids read at open, hashed into `ids` on the first append (reads never need them,
    /// so opening a large store does not pay for the map).
    ids_on_disk: Option<Vec<Uuid>>,
    /// Ids of unpublished events, to forget if their flush fails.
    pending_ids: Vec<Uuid>,
    /// Tickets: each append takes one; `done` is the last acknowledged.
    next_ticket: u64,
    done: u64,
    /// Tickets that failed and whose appenders have not yet seen it.
    failed: Vec<FailedTickets>,
    flushing: bool,
    /// Bytes of the active segment that exist on disk (data plus zero-filled room).
    allocated: u64,
    stats: WriteStats,
    /// Set after an fsync failure: writes are refused until reopened.
    poisoned: Option<String>,
    last_timestamp: DateTime<Utc>,
    scratch: Vec<u8>,
    /// Whether written data awaits a periodic sync.
    dirty: bool,
    closed: bool,
}

/// Appends of one failed flush: tickets `first..=last`, with the reason.
struct FailedTickets {
    first: u64,
    last: u64,
    /// Appenders of the range that have not returned yet: the entry goes with the last.
    waiting: u64,
    kind: io::ErrorKind,
    message: String,
}

struct Chunk {
    segment: u64,
    offset: u64,
    /// Set when this chunk starts a new segment: its first position.
    new_segment: Option<u64>,
    bytes: Vec<u8>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

impl FileStore {
    /// Opens (creating if needed) the store in `dir` with default options.
    pub fn open(dir: impl AsRef<Path>) -> Result<FileStore, OpenError> {
        Self::open_with(dir, FileStoreOptions::default())
    }

    /// Opens the store in `dir` without the write lock, to read while another process
    /// writes. Beside a live writer it sees exactly the appends the writer had
    /// acknowledged when it opened (the writer publishes that end after every commit),
    /// never a frame being written; without one, it reads the log as recovery would,
    /// reporting a torn tail instead of cutting it. It changes nothing on disk and does
    /// not follow later appends (open it again for those). Appends are refused.
    pub fn open_read_only(dir: impl AsRef<Path>) -> Result<FileStore, OpenError> {
        Self::open_with(
            dir,
            FileStoreOptions {
                read_only: true,
                ..FileStoreOptions::default()
            },
        )
    }

    /// Opens the store in `dir`.
    pub fn open_with(
        dir: impl AsRef<Path>,
        options: FileStoreOptions,
    ) -> Result<FileStore, OpenError> {
        let dir = dir.as_ref().to_owned();
        if options.segment_size < 4096 {
            return Err(OpenError::InvalidOptions(format!(
                "segment_size {} is below the minimum of 4096 bytes",
                options.segment_size
            )));
        }
        options
            .limits
            .validate()
            .map_err(|e| OpenError::InvalidOptions(e.to_string()))?;
        if let Durability::Periodic(d) = options.durability
            && d.is_zero()
        {
            return Err(OpenError::InvalidOptions(
                "a periodic sync interval must be above zero".into(),
            ));
        }
        let frame_cap = format::MAX_FRAME_LEN;
        if options.largest_frame() > frame_cap {
            return Err(OpenError::InvalidOptions(format!(
                "the limits allow appends of up to {} bytes once encoded; the format caps a frame at {frame_cap}",
                options.largest_frame()
            )));
        }
        let vfs = Arc::clone(&options.vfs);
        let found = crate::marker::inspect(&*vfs, &dir, options.read_only)?;
        let (lock, limit) = if options.read_only {
            (None, published_end(&*vfs, &dir)?)
        } else {
            if found == crate::marker::Found::Nothing {
                vfs.create_dir_all(&dir).map_err(|source| OpenError::Io {
                    path: dir.clone(),
                    source,
                })?;
            }
            (Some(take_lock(&*vfs, &dir)?), None)
        };
        let recovered = recovery::recover(
            &*vfs,
            &dir,
            RecoverOptions {
                limit: limit.map(|p| p.end),
                ..RecoverOptions::open(frame_cap, options.read_only, options.repair)
            },
        );
        let rec = match recovered {
            Ok(rec) => rec,
            Err(e) => {
                // a refused open leaves the directory as it found it
                if lock.as_ref().is_some_and(|l| l.created) {
                    let _ = vfs.remove_file(&dir.join(LOCK_FILE));
                }
                return Err(e);
            }
        };
        // marked only once recovery accepted the directory: a refused open leaves no marker
        if lock.is_some() && found != crate::marker::Found::Store {
            crate::marker::write(&*vfs, &dir)?;
        }
        let published_file = match &lock {
            Some(_) => {
                let path = dir.join(PUBLISHED_FILE);
                let file = vfs
                    .open(&path, OpenMode::CreateOrOpen)
                    .map_err(|source| OpenError::Io { path, source })?;
                Published {
                    end: rec.end,
                    head: rec.index.head,
                    durable: rec.end,
                }
                .write(&*file);
                Some(file)
            }
            None => None,
        };
        let next_position = rec.index.head + 1;
        let last_timestamp = last_commit_time(&*vfs, &rec).unwrap_or_else(|e| {
            // reads of that frame report the damage; opening stays possible
            tracing::warn!("reading the last commit time: {e}");
            DateTime::<Utc>::MIN_UTC
        });
        let shared = Arc::new(Shared {
            dir: dir.clone(),
            frame_cap,
            _lock: lock,
            published_file,
            stop_sync: (Mutex::new(false), Condvar::new()),
            published: RwLock::new(rec.index),
            segments: Mutex::new(SegmentFiles {
                count: rec.segment_count,
                active: rec.last_segment,
                sealed: VecDeque::new(),
            }),
            writer: Mutex::new(Writer {
                tail: rec.end,
                durable_tail: rec.end,
                synced_end: rec.end,
                next_position,
                overlay: HashMap::new(),
                unpublished: Vec::new(),
                queue: Vec::new(),
                ids: IdMap::default(),
                ids_on_disk: Some(rec.ids),
                pending_ids: Vec::new(),
                next_ticket: 1,
                done: 0,
                failed: Vec::new(),
                flushing: false,
                allocated: rec.allocated,
                stats: WriteStats::default(),
                poisoned: None,
                last_timestamp,
                scratch: Vec::new(),
                dirty: false,
                closed: false,
            }),
            appending: AtomicU64::new(0),
            flushed: Condvar::new(),
            head: HeadSignal::new(next_position - 1),
            snapshots: SnapshotFiles::new(&dir, Arc::clone(&vfs), options.read_only),
            report: rec.report,
            options,
        });
        if let Durability::Periodic(interval) = shared.options.durability
            && !shared.options.read_only
        {
            let weak = Arc::downgrade(&shared);
            let thread = std::thread::Builder::new()
                .name("es-store-fs-sync".into())
                .spawn(move || periodic_sync(weak, interval))
                .map_err(|source| OpenError::Io {
                    path: shared.dir.clone(),
                    source,
                })?;
            return Ok(FileStore {
                shared,
                sync_thread: Mutex::new(Some(thread)),
            });
        }
        Ok(FileStore {
            shared,
            sync_thread: Mutex::new(None),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// What opening the store found and did.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.shared.report
    }

    /// Number of streams.
    pub fn stream_count(&self) -> usize {
        read(&self.shared.published).streams.len()
    }

    /// The ids of every stream with its version, in first-append order.
    pub fn streams(&self) -> Vec<(String, u64)> {
        let index = read(&self.shared.published);
        index
            .stream_ids
            .iter()
            .map(|s| (s.clone(), index.version(s)))
            .collect()
    }

    /// Writer counters since open: appends and the group commits that carried them.
    pub fn write_stats(&self) -> WriteStats {
        lock(&self.shared.writer).stats
    }

    /// Failed flushes whose appenders have not all returned yet (kept so that none of
    /// them mistakes its failed append for an acknowledged one). For tests: it must not
    /// grow with the number of failed appends.
    #[doc(hidden)]
    pub fn failures_held(&self) -> usize {
        lock(&self.shared.writer).failed.len()
    }

    /// Bytes of log on disk (segments only).
    pub fn log_bytes(&self) -> io::Result<u64> {
        let count = lock(&self.shared.segments).count;
        (0..count)
            .map(|no| {
                self.shared
                    .segment(no)
                    .map_err(|e| io::Error::other(e.to_string()))?
                    .len()
            })
            .sum()
    }

    /// Syncs the log and writes the index file, so that the next open does not rescan.
    /// Called by `Drop`; call it yourself to see its errors.
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        if self.shared.options.read_only {
            return Ok(());
        }
        let mut w = lock(&self.shared.writer);
        while w.flushing {
            w = self
                .shared
                .flushed
                .wait(w)
                .unwrap_or_else(|e| e.into_inner());
        }
        if let Some(reason) = &w.poisoned {
            return Err(StoreError::ReadOnly(reason.clone()));
        }
        self.shared.save_index(&mut w)
    }

    /// Cuts the zero-filled room off the active segment (done at close).
    fn trim(&self) -> Result<(), StoreError> {
        if self.shared.options.read_only {
            return Ok(());
        }
        let mut w = lock(&self.shared.writer);
        if w.poisoned.is_some() || w.allocated <= w.durable_tail.1 {
            return Ok(());
        }
        let (seg, end) = w.durable_tail;
        let file = self.shared.segment(seg)?;
        file.set_len(end)?;
        file.sync_data()?;
        w.allocated = end;
        Ok(())
    }

    /// Syncs, writes the index, and closes. When it returns, the directory's lock is
    /// released (the store can be opened again at once).
    pub fn close(self) -> Result<(), StoreError> {
        let result = self.checkpoint().and_then(|()| self.trim());
        lock(&self.shared.writer).closed = true;
        self.stop_sync_thread();
        result
    }

    fn stop_sync_thread(&self) {
        let (stop, wake) = &self.shared.stop_sync;
        *lock(stop) = true;
        wake.notify_all();
        if let Some(thread) = lock(&self.sync_thread).take() {
            let _ = thread.join();
        }
    }
}

impl Drop for FileStore {
    fn drop(&mut self) {
        let closed = lock(&self.shared.writer).closed;
        if !closed {
            if let Err(e) = self.checkpoint().and_then(|()| self.trim()) {
                tracing::warn!("closing event store {}: {e}", self.shared.dir.display());
            }
            lock(&self.shared.writer).closed = true;
        }
        self.stop_sync_thread();
    }
}

/// The commit time of the last frame, so that commit times never go backwards across a
/// reopen, even when the clock does.
fn last_commit_time(vfs: &dyn Vfs, rec: &recovery::Recovered) -> Result<DateTime<Utc>, OpenError> {
    let Some(last) = rec.index.frames.last() else {
        return Ok(DateTime::<Utc>::MIN_UTC);
    };
    let corrupted = |reason: String| OpenError::Corrupted {
        file: rec.dir.join(format!(
            "{:020}{}",
            last.at.segment,
            recovery::SEGMENT_SUFFIX
        )),
        segment: last.at.segment,
        offset: last.at.offset,
        reason,
    };
    let path = recovery::segment_path(&rec.dir, last.at.segment);
    let file = vfs.open(&path, OpenMode::Read).map_err(|e| {
        corrupted(format!(
            "the segment of the last frame cannot be opened: {e}"
        ))
    })?;
    let mut bytes = vec![0u8; last.at.len as usize];
    file.read_exact_at(&mut bytes, last.at.offset)
        .map_err(|e| corrupted(format!("unreadable last frame: {e}")))?;
    let frame = format::check_frame(&bytes)
        .and_then(Frame::parse)
        .map_err(|e| corrupted(format!("last frame: {e}")))?;
    Ok(frame.place.timestamp)
}

/// The write lock: an advisory lock on the directory itself (which a user cannot delete
/// from under a running writer and recreate) and on the lock file (which names the
/// holder).
#[allow(dead_code)] // held for their `Drop`
struct WriterLock {
    dir: DirLock,
    file: Arc<dyn VfsFile>,
    /// This process's registration of the directory.
    registered: PathBuf,
    /// Whether taking the lock created the lock file (removed again if the open fails).
    created: bool,
}

impl Drop for WriterLock {
    fn drop(&mut self) {
        lock(&OPEN_HERE).remove(&self.registered);
    }
}

/// Store directories this process has open for writing.
static OPEN_HERE: Mutex<std::collections::BTreeSet<PathBuf>> =
    Mutex::new(std::collections::BTreeSet::new());

/// How long a lock that names this process but that this process no longer holds is
/// waited for: a child process being started holds copies of the parent's descriptors
/// (and so its locks) until it executes its program.
const FORKED_LOCK_WAIT: Duration = Duration::from_millis(500);

fn take_lock(vfs: &dyn Vfs, dir: &Path) -> Result<WriterLock, OpenError> {
    let path = dir.join(LOCK_FILE);
    let io = |source| OpenError::Io {
        path: path.clone(),
        source,
    };
    let me = format!("process {}", std::process::id());
    let registered = if vfs.shared_by_the_process() {
        std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned())
    } else {
        PathBuf::new()
    };
    if vfs.shared_by_the_process() && !lock(&OPEN_HERE).insert(registered.clone()) {
        return Err(OpenError::Locked {
            dir: dir.to_owned(),
            holder: format!(
                "this process ({}) already has it open: share that `FileStore` (it is `Sync`; wrap it in an `Arc`)",
                std::process::id()
            ),
        });
    }
    let unregister = |e| {
        lock(&OPEN_HERE).remove(&registered);
        e
    };
    let created =
        matches!(vfs.open(&path, OpenMode::Read), Err(e) if e.kind() == io::ErrorKind::NotFound);
    let file = vfs
        .open(&path, OpenMode::CreateOrOpen)
        .map_err(io)
        .map_err(unregister)?;
    let started = std::time::Instant::now();
    let dir_lock = loop {
        let dir_lock = vfs
            .lock_dir(dir)
            .map_err(|source| OpenError::Io {
                path: dir.to_owned(),
                source,
            })
            .map_err(unregister)?;
        let locked = match dir_lock {
            Some(dir_lock) if file.try_lock().map_err(io).map_err(unregister)? => Some(dir_lock),
            _ => None,
        };
        if let Some(dir_lock) = locked {
            break dir_lock;
        }
        let mut holder = vec![0u8; 256];
        let n = file.read_at(&mut holder, 0).unwrap_or(0);
        let holder = String::from_utf8_lossy(&holder[..n]).trim().to_owned();
        if holder == me && started.elapsed() < FORKED_LOCK_WAIT {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        lock(&OPEN_HERE).remove(&registered);
        return Err(OpenError::Locked {
            dir: dir.to_owned(),
            holder: if holder.is_empty() {
                "unknown holder".into()
            } else {
                holder
            },
        });
    };
    file.set_len(0).map_err(io).map_err(unregister)?;
    file.write_all_at(me.as_bytes(), 0)
        .map_err(io)
        .map_err(unregister)?;
    Ok(WriterLock {
        dir: dir_lock,
        file,
        registered,
        created,
    })
}

/// For a read-only open: the end a live writer published, or `None` when no writer holds
/// the directory (then the log is read as recovery would, without cutting anything).
pub(crate) fn published_end(vfs: &dyn Vfs, dir: &Path) -> Result<Option<Published>, OpenError> {
    let io = |source| OpenError::Io {
        path: dir.to_owned(),
        source,
    };
    if vfs.lock_dir(dir).map_err(io)?.is_some() {
        return Ok(None);
    }
    recovery::read_published(vfs, dir)
}

fn periodic_sync(shared: Weak<Shared>, interval: Duration) {
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
        if w.dirty && w.poisoned.is_none() {
            w.dirty = false;
            let target = w.durable_tail;
            let file = shared.segment(target.0).ok();
            drop(w);
            if let Some(file) = file {
                let synced = file.sync_data();
                let mut w = lock(&shared.writer);
                match synced {
                    Ok(()) => {
                        w.synced_end = w.synced_end.max(target);
                        let head = read(&shared.published).head;
                        shared.publish(w.durable_tail, head, w.synced_end);
                    }
                    Err(e) => w.poisoned = Some(format!("periodic fsync failed: {e}")),
                }
            }
        }
    }
}

impl Shared {
    /// Records the acknowledged and durable ends for readers and for recovery.
    fn publish(&self, end: (u64, u64), head: u64, durable: (u64, u64)) {
        if let Some(file) = &self.published_file {
            Published { end, head, durable }.write(&**file);
        }
    }

    fn io_error(&self, what: &str, e: &io::Error) -> String {
        format!("{what} in {}: {e}", self.dir.display())
    }

    /// Writes the index file atomically: log synced first, so that it covers only durable
    /// frames.
    fn save_index(&self, w: &mut Writer) -> Result<(), StoreError> {
        if let Ok(active) = self.segment(w.durable_tail.0)
            && let Err(e) = active.sync_data()
        {
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
        let bytes = match &w.ids_on_disk {
            Some(ids) => index.encode(&ids[..(index.head as usize).min(ids.len())]),
            None => {
                let mut ids = vec![Uuid::nil(); index.head as usize];
                for (id, &p) in &w.ids {
                    if p <= index.head {
                        ids[p as usize - 1] = *id;
                    }
                }
                index.encode(&ids)
            }
        };
        drop(index);
        let path = self.dir.join(INDEX_FILE);
        write_atomically(&*self.options.vfs, &self.dir, &path, &bytes)?;
        Ok(())
    }

    /// Segment `no`: the active one, or a sealed one from the bounded set of open files
    /// (opened read-only on demand, the least recently used closed beyond
    /// [`MAX_OPEN_SEALED`]).
    fn segment(&self, no: u64) -> Result<Arc<dyn VfsFile>, StoreError> {
        let mut files = lock(&self.segments);
        if no + 1 == files.count
            && let Some(active) = &files.active
        {
            return Ok(Arc::clone(active));
        }
        if no >= files.count {
            return Err(StoreError::Corrupted(format!(
                "segment {no} does not exist (the log has {} segments)",
                files.count
            )));
        }
        if let Some(i) = files.sealed.iter().position(|(n, _)| *n == no) {
            let entry = files.sealed.remove(i).unwrap_or_else(|| unreachable!());
            let file = Arc::clone(&entry.1);
            files.sealed.push_back(entry);
            return Ok(file);
        }
        let path = recovery::segment_path(&self.dir, no);
        let file = self.options.vfs.open(&path, OpenMode::Read).map_err(|e| {
            StoreError::Io(io::Error::new(
                e.kind(),
                format!("opening `{}`: {e}", path.display()),
            ))
        })?;
        if files.sealed.len() >= MAX_OPEN_SEALED {
            files.sealed.pop_front();
        }
        files.sealed.push_back((no, Arc::clone(&file)));
        Ok(file)
    }

    /// A failed read of a published frame: an I/O error naming the file and offset. A
    /// file shorter than a frame the index lists is damage, not a failed read.
    fn read_failed(&self, at: FrameRef, e: io::Error) -> StoreError {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            return corrupted(at, "the segment ends inside a frame the index lists");
        }
        let path = recovery::segment_path(&self.dir, at.segment);
        StoreError::Io(io::Error::new(
            e.kind(),
            format!("reading `{}` at offset {}: {e}", path.display(), at.offset),
        ))
    }

    /// Reads and checks the frame at `at`.
    fn read_frame(&self, at: FrameRef, buf: &mut Vec<u8>) -> Result<(), StoreError> {
        buf.resize(at.len as usize, 0);
        let file = self.segment(at.segment)?;
        file.read_exact_at(buf, at.offset)
            .map_err(|e| self.read_failed(at, e))?;
        format::check_frame(buf).map_err(|e| corrupted(at, &e.to_string()))?;
        Ok(())
    }

    /// Writes queued chunks. A segment being left is cut to its last frame and synced
    /// before the next one is created; the active segment grows in zero-filled steps so
    /// that a sync rarely has to persist a new file size; the last file is synced as the
    /// durability mode asks. Returns the new segment files and the allocated end.
    fn write_chunks(
        &self,
        chunks: &[Chunk],
        tail: (u64, u64),
        mut allocated: u64,
    ) -> io::Result<(Vec<Arc<dyn VfsFile>>, u64)> {
        let mut created = Vec::new();
        let mut current: Option<(u64, Arc<dyn VfsFile>)> = None;
        let mut data_end = tail.1;
        let open = |no: u64| self.segment(no).map_err(io::Error::other);
        for chunk in chunks {
            let file = match (chunk.new_segment, &current) {
                (Some(first_position), _) => {
                    let sealed = match &current {
                        Some((no, f)) if *no + 1 == chunk.segment => Arc::clone(f),
                        _ => open(chunk.segment - 1)?,
                    };
                    sealed.set_len(data_end).map_err(not_survivable)?;
                    sealed.sync_data().map_err(not_survivable)?;
                    // created like `recovery::create_segment`, but keeping a failed write
                    // (survivable when the disk is full) apart from a failed sync (never)
                    let vfs = &*self.options.vfs;
                    let path = recovery::segment_path(&self.dir, chunk.segment);
                    let f = vfs.open(&path, OpenMode::CreateTruncate)?;
                    let header = SegmentHeader {
                        segment_no: chunk.segment,
                        first_position,
                    };
                    f.write_all_at(&header.encode(), 0)?;
                    f.sync_data().map_err(not_survivable)?;
                    vfs.sync_dir(&self.dir).map_err(not_survivable)?;
                    allocated = SEGMENT_HEADER_LEN as u64;
                    created.push(Arc::clone(&f));
                    f
                }
                (None, Some((no, f))) if *no == chunk.segment => Arc::clone(f),
                (None, _) => open(chunk.segment)?,
            };
            let end = chunk.offset + chunk.bytes.len() as u64;
            let step = self.options.preallocate;
            if step > 0 && end > allocated {
                let new_allocated = end.div_ceil(step) * step;
                let zeros = vec![0u8; (new_allocated - end) as usize];
                file.write_all_at(&zeros, end)?;
                allocated = new_allocated;
            }
            file.write_all_at(&chunk.bytes, chunk.offset)?;
            allocated = allocated.max(end);
            data_end = end;
            current = Some((chunk.segment, file));
        }
        if let Some((_, f)) = &current
            && self.options.durability == Durability::Always
        {
            f.sync_data().map_err(not_survivable)?;
        }
        Ok((created, allocated))
    }
}

/// Marks an error of a sync (or of cutting a sealed segment) so that the store stops
/// writing: after a failed `fdatasync` the kernel may have dropped the pages, whatever
/// the error's kind, so even a "disk full" from a sync is not survivable.
fn not_survivable(e: io::Error) -> io::Error {
    io::Error::other(format!("fdatasync failed: {e}"))
}

fn corrupted(at: FrameRef, reason: &str) -> StoreError {
    StoreError::Corrupted(format!(
        "segment {} at offset {}: {reason}",
        at.segment, at.offset
    ))
}

impl FileStore {
    fn do_append(
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
        let _entered = span.enter();
        let result = self.append_in_span(stream_id, expected, events);
        match &result {
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
        shared.appending.fetch_add(1, Ordering::SeqCst);
        let _in_flight = InFlight(&shared.appending);
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
                let event_type = e.event_type.clone();
                PreparedEvent::from_new(e).map_err(|err| StoreError::InvalidEvent {
                    stream_id: stream_id.to_owned(),
                    index,
                    event_type,
                    reason: format!("the metadata cannot be encoded: {err}"),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let event_ids: Vec<Uuid> = prepared.iter().map(|p| p.event_id).collect();
        let mut w = lock(&shared.writer);
        w.hash_ids();
        let (ticket, result) = loop {
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
            let retry = {
                let index = read(&shared.published);
                let w_ref = &*w;
                check_idempotent_retry(stream_id, expected, &event_ids, current, |id| {
                    let position = *w_ref.ids.get(id)?;
                    if position > index.head {
                        pending_original = true;
                        let (s, f) = w_ref.unpublished.iter().find(|(_, f)| {
                            position >= f.first_position && position < f.first_position + f.count
                        })?;
                        return Some(IdLocation {
                            same_stream: s == stream_id,
                            stream_version: f.first_version + (position - f.first_position),
                            position,
                            append_first_position: f.first_position,
                            append_len: f.count,
                        });
                    }
                    let frame_no = index.frame_of_position(position)?;
                    let f = index.frames[frame_no];
                    let same_stream = index
                        .streams
                        .get(stream_id)
                        .is_some_and(|s| s.frames.binary_search(&(frame_no as u32)).is_ok());
                    Some(IdLocation {
                        same_stream,
                        stream_version: f.first_version + (position - f.first_position),
                        position,
                        append_first_position: f.first_position,
                        append_len: f.count,
                    })
                })?
            };
            if let Some(original) = retry {
                if !pending_original {
                    return Ok(original);
                }
                // the original is still being written: wait for its outcome, then decide again
                w = shared.flushed.wait(w).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            if !expected.accepts(current) {
                if w.overlay.contains_key(stream_id) && !w.closed {
                    // the version this conflicts with is still being written: a conflict
                    // reported now would name a version no reader can see yet, and a
                    // caller retrying on what it reads would spin until that write
                    // lands. Wait for its outcome, then decide again.
                    w = shared.flushed.wait(w).unwrap_or_else(|e| e.into_inner());
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
        let mut gathered = false;
        loop {
            // failures first: after a failed flush, a later one may complete (and move
            // `done` past this ticket) before this appender wakes up
            if let Some(i) = w
                .failed
                .iter()
                .position(|f| (f.first..=f.last).contains(&ticket))
            {
                let f = &mut w.failed[i];
                let error = StoreError::Io(io::Error::new(f.kind, f.message.clone()));
                f.waiting -= 1;
                if f.waiting == 0 {
                    w.failed.swap_remove(i);
                }
                return Err(error);
            }
            if w.done >= ticket {
                return Ok(result);
            }
            if !w.flushing && !w.queue.is_empty() {
                let queued = w.next_ticket - 1 - w.done;
                let appending = shared.appending.load(Ordering::SeqCst);
                if queued < appending
                    && !gathered
                    && shared.options.durability == Durability::Always
                {
                    // other appends are on their way: give them a moment to join this sync
                    gathered = true;
                    w = shared
                        .flushed
                        .wait_timeout(w, GATHER_WAIT)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                    continue;
                }
                w = self.flush(w);
                continue;
            }
            w = shared.flushed.wait(w).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Encodes the append as a frame at the log's tail and queues it.
    fn enqueue(
        &self,
        w: &mut Writer,
        stream_id: &str,
        current: u64,
        prepared: &[PreparedEvent],
    ) -> Result<(u64, AppendResult), StoreError> {
        let shared = &*self.shared;
        let now = Utc::now().max(w.last_timestamp);
        w.last_timestamp = now;
        let n = prepared.len() as u64;
        let (mut segment, mut offset) = w.tail;
        let synced_back = |w: &Writer, segment: u64, offset: u64| {
            // a new segment's header is synced before any frame is written into it
            let synced = if w.synced_end.0 == segment {
                w.synced_end.1
            } else {
                SEGMENT_HEADER_LEN as u64
            };
            offset.saturating_sub(synced)
        };
        let mut place = FramePlace {
            first_position: w.next_position,
            first_version: current + 1,
            timestamp: now,
            synced_back: Some(synced_back(w, segment, offset)),
        };
        let mut scratch = std::mem::take(&mut w.scratch);
        scratch.clear();
        let mut len = format::encode_frame(&mut scratch, place, stream_id, prepared);
        let mut new_segment = None;
        if offset > SEGMENT_HEADER_LEN as u64 && offset + len as u64 > shared.options.segment_size {
            segment += 1;
            offset = SEGMENT_HEADER_LEN as u64;
            new_segment = Some(place.first_position);
            place.synced_back = Some(synced_back(w, segment, offset));
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
            Some(c) if new_segment.is_none() && c.segment == segment => {
                c.bytes.extend_from_slice(&scratch)
            }
            _ => w.queue.push(Chunk {
                segment,
                offset,
                new_segment,
                bytes: scratch.clone(),
            }),
        }
        w.scratch = scratch;
        w.tail = (segment, offset + len as u64);
        let entry = FrameEntry {
            first_position: place.first_position,
            first_version: place.first_version,
            count: n,
            at: FrameRef {
                segment,
                offset,
                len: len as u32,
            },
        };
        w.unpublished.push((stream_id.to_owned(), entry));
        w.overlay.insert(stream_id.to_owned(), current + n);
        for (i, e) in prepared.iter().enumerate() {
            w.ids.insert(e.event_id, place.first_position + i as u64);
            w.pending_ids.push(e.event_id);
        }
        w.next_position += n;
        let ticket = w.next_ticket;
        w.next_ticket += 1;
        if !w.flushing && ticket - w.done >= shared.appending.load(Ordering::SeqCst) {
            // a leader may be gathering: every appender in flight has now queued
            shared.flushed.notify_all();
        }
        Ok((
            ticket,
            AppendResult {
                first_version: current + 1,
                last_version: current + n,
                first_position: place.first_position,
                last_position: place.first_position + n - 1,
            },
        ))
    }

    /// Leads one group commit: writes everything queued, syncs, publishes, and wakes the
    /// appenders whose tickets it covered.
    fn flush<'a>(&'a self, mut w: MutexGuard<'a, Writer>) -> MutexGuard<'a, Writer> {
        let shared = &*self.shared;
        let chunks = std::mem::take(&mut w.queue);
        let last_ticket = w.next_ticket - 1;
        let frames = w.unpublished.len();
        let tail = w.tail;
        let (durable_tail, allocated) = (w.durable_tail, w.allocated);
        w.flushing = true;
        drop(w);
        let result = shared.write_chunks(&chunks, durable_tail, allocated);
        let mut w = lock(&shared.writer);
        w.flushing = false;
        w.stats.flushes += 1;
        match result {
            Ok((created, allocated)) => {
                w.allocated = allocated;
                w.stats.appends += last_ticket - w.done;
                if let Some(newest) = created.last() {
                    let mut files = lock(&shared.segments);
                    files.count += created.len() as u64;
                    files.active = Some(Arc::clone(newest));
                }
                let published: Vec<(String, FrameEntry)> = w.unpublished.drain(..frames).collect();
                let head = {
                    let mut index = shared.published.write().unwrap_or_else(|e| e.into_inner());
                    for (stream, entry) in &published {
                        if let Err(e) = index.push(stream, *entry) {
                            // cannot happen: frames were checked against the same versions
                            tracing::error!("index out of step: {e}");
                        }
                    }
                    index.head
                };
                shared.head.publish(head);
                if shared.options.durability == Durability::Always {
                    w.synced_end = tail;
                } else if let Some(c) = chunks.iter().rev().find(|c| c.new_segment.is_some()) {
                    // a roll synced the segments before the new one and its header
                    w.synced_end = w.synced_end.max((c.segment, SEGMENT_HEADER_LEN as u64));
                }
                shared.publish(tail, head, w.synced_end);
                for (stream, entry) in &published {
                    if w.overlay.get(stream) == Some(&(entry.first_version + entry.count - 1)) {
                        w.overlay.remove(stream);
                    }
                }
                let published_events: u64 = published.iter().map(|(_, e)| e.count).sum();
                w.pending_ids.drain(..published_events as usize);
                w.done = last_ticket;
                w.durable_tail = tail;
                w.dirty = shared.options.durability != Durability::Always;
                if !chunks.iter().all(|c| c.new_segment.is_none())
                    && let Err(e) = shared.save_index(&mut w)
                {
                    tracing::warn!("writing the index after a segment roll: {e}");
                }
            }
            Err(e) => {
                let first = w.done + 1;
                let last = w.next_ticket - 1;
                let message = shared.io_error("append failed", &e);
                // kept until every appender of the range has seen it: a waiter of a
                // failed ticket may wake late, and must never mistake its append for an
                // acknowledged one
                w.failed.push(FailedTickets {
                    first,
                    last,
                    waiting: last + 1 - first,
                    kind: e.kind(),
                    message: message.clone(),
                });
                // every ticket up to `last` is now decided; the failed ones are found in
                // `failed` before `done` is looked at
                w.done = last;
                self.roll_back(&mut w, &e, message);
            }
        }
        shared.flushed.notify_all();
        w
    }

    /// Forgets everything not acknowledged after a failed flush. A full disk is survivable
    /// when the partial write can be cut off; anything else refuses writes until reopened.
    fn roll_back(&self, w: &mut Writer, e: &io::Error, message: String) {
        let shared = &*self.shared;
        let pending: Vec<Uuid> = std::mem::take(&mut w.pending_ids);
        for id in pending {
            w.ids.remove(&id);
        }
        w.queue.clear();
        w.unpublished.clear();
        w.overlay.clear();
        w.next_position = read(&shared.published).head + 1;
        let (seg, offset) = w.durable_tail;
        let last_queued_segment = w.tail.0;
        w.tail = w.durable_tail;
        // segments created by the failed flush are not part of the log: remove them, so
        // that none can later sit after a segment that kept growing
        let vfs = &*shared.options.vfs;
        let mut stray_removed = true;
        let mut removed_any = false;
        for stray in seg + 1..=last_queued_segment {
            match vfs.remove_file(&recovery::segment_path(&shared.dir, stray)) {
                Ok(()) => removed_any = true,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(_) => stray_removed = false,
            }
        }
        if removed_any {
            stray_removed &= vfs.sync_dir(&shared.dir).is_ok();
        }
        let recoverable = e.kind() == io::ErrorKind::StorageFull
            && stray_removed
            && shared
                .segment(seg)
                .ok()
                .is_some_and(|f| f.set_len(offset).is_ok());
        w.allocated = offset;
        if !recoverable {
            w.poisoned = Some(format!(
                "{message}; writes are refused until the store is reopened"
            ));
        }
    }
}

impl EventStore for FileStore {
    fn append(
        &self,
        stream_id: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        self.do_append(stream_id, expected, events)
    }

    fn read_stream(
        &self,
        stream_id: &str,
        from_version: u64,
    ) -> Result<EventStream<'_>, StoreError> {
        self.shared.options.limits.check_stream_id(stream_id)?;
        Ok(Box::new(Buffered::new(StreamReader {
            shared: &self.shared,
            stream_id: stream_id.to_owned(),
            next_version: from_version.max(1),
            frames: VecDeque::new(),
            buf: Vec::new(),
        })))
    }

    fn read_all(&self, from_position: u64) -> Result<EventStream<'_>, StoreError> {
        Ok(Box::new(Buffered::new(LogReader {
            shared: &self.shared,
            next_position: from_position.max(1),
            frames: VecDeque::new(),
            window: ReadWindow::default(),
        })))
    }

    fn stream_version(&self, stream_id: &str) -> Result<u64, StoreError> {
        self.shared.options.limits.check_stream_id(stream_id)?;
        Ok(read(&self.shared.published).version(stream_id))
    }

    fn head_position(&self) -> Result<u64, StoreError> {
        Ok(read(&self.shared.published).head)
    }

    fn wait_for_head(&self, position: u64, timeout: Duration) -> Result<u64, StoreError> {
        Ok(self.shared.head.wait(position, timeout))
    }

    fn snapshots(&self) -> Option<&dyn SnapshotStore> {
        Some(self)
    }

    /// One look-up in the id map the writer keeps for idempotent retries, then one in the
    /// index; ids of appends not yet acknowledged do not count.
    fn version_of_event(&self, stream_id: &str, event_id: Uuid) -> Result<Option<u64>, StoreError> {
        let shared = &*self.shared;
        shared.options.limits.check_stream_id(stream_id)?;
        if shared.options.read_only {
            // a read-only store keeps no id map of what the writer appends: read the stream
            for recorded in self.read_stream(stream_id, 1)? {
                let recorded = recorded?;
                if recorded.event_id == event_id {
                    return Ok(Some(recorded.stream_version));
                }
            }
            return Ok(None);
        }
        let position = {
            let mut w = lock(&shared.writer);
            w.hash_ids();
            w.ids.get(&event_id).copied()
        };
        let Some(position) = position else {
            return Ok(None);
        };
        let index = read(&shared.published);
        let Some(frame_no) = index.frame_of_position(position) else {
            return Ok(None);
        };
        let in_stream = index
            .streams
            .get(stream_id)
            .is_some_and(|s| s.frames.binary_search(&(frame_no as u32)).is_ok());
        Ok(index
            .frames
            .get(frame_no)
            .filter(|_| in_stream)
            .map(|f| f.first_version + (position - f.first_position)))
    }
}

impl SnapshotStore for FileStore {
    fn save_snapshot(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        self.shared
            .options
            .limits
            .check_stream_id(&snapshot.stream_id)?;
        self.shared.snapshots.save(snapshot)
    }

    fn load_snapshot(
        &self,
        stream_id: &str,
        max_version: u64,
    ) -> Result<Option<Snapshot>, StoreError> {
        self.shared.options.limits.check_stream_id(stream_id)?;
        Ok(self.shared.snapshots.load(stream_id, max_version))
    }
}

impl Writer {
    /// Builds the id map from the ids read at open, once.
    fn hash_ids(&mut self) {
        if let Some(list) = self.ids_on_disk.take() {
            self.ids.reserve(list.len());
            self.ids.extend(
                list.into_iter()
                    .enumerate()
                    .map(|(i, id)| (id, i as u64 + 1)),
            );
        }
    }
}

/// Event id to global position. Seeded per process, so crafted ids cannot force
/// collisions; faster than the default hasher on this hot path (three lookups per event).
type IdMap = HashMap<Uuid, u64, foldhash::fast::RandomState>;

/// Counts an append in flight until it returns.
struct InFlight<'a>(&'a AtomicU64);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Counters of the writer, for tuning and the CLI.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Appends acknowledged since open.
    pub appends: u64,
    /// Group commits (writes followed by one sync) since open.
    pub flushes: u64,
}

/// How long a new group-commit leader waits for the appenders of the previous group.
const GATHER_WAIT: Duration = Duration::from_micros(100);

/// Frames fetched from the index per lock acquisition.
const FRAMES_PER_FETCH: usize = 64;

/// Frames a log-order read takes from the index at once: enough to let its read-ahead
/// window span a megabyte of small frames.
const LOG_FRAMES_PER_FETCH: usize = 1024;

/// Yields the events of frames that a [`FrameSource`] decodes one frame at a time, and
/// stops for good after an error.
struct Buffered<S> {
    source: S,
    events: VecDeque<RecordedEvent>,
    failed: bool,
}

impl<S> Buffered<S> {
    fn new(source: S) -> Self {
        Buffered {
            source,
            events: VecDeque::new(),
            failed: false,
        }
    }
}

/// Frames in reading order.
trait FrameSource {
    /// Decodes the next frame's wanted events into `out`; `false` when there is none.
    fn next_frame(&mut self, out: &mut VecDeque<RecordedEvent>) -> Result<bool, StoreError>;
}

impl<S: FrameSource> Iterator for Buffered<S> {
    type Item = Result<RecordedEvent, StoreError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        while self.events.is_empty() {
            match self.source.next_frame(&mut self.events) {
                Ok(true) => {}
                Ok(false) => return None,
                Err(e) => {
                    self.failed = true;
                    return Some(Err(e));
                }
            }
        }
        self.events.pop_front().map(Ok)
    }
}

/// Decodes a checked frame's events from index `skip` on into `out`, after checking that
/// the frame is the one the index describes.
fn decode_frame(
    bytes: &[u8],
    entry: &FrameEntry,
    stream_id: Option<&str>,
    skip: u64,
    out: &mut VecDeque<RecordedEvent>,
) -> Result<(), StoreError> {
    let body = &bytes[format::FRAME_PREFIX_LEN..bytes.len() - format::FRAME_SUFFIX_LEN];
    let frame = Frame::parse(body).map_err(|e| corrupted(entry.at, &e.to_string()))?;
    if frame.place.first_position != entry.first_position
        || frame.place.first_version != entry.first_version
        || frame.count != entry.count
        || stream_id.is_some_and(|s| s != frame.stream_id)
    {
        return Err(corrupted(entry.at, "the frame does not match the index"));
    }
    frame
        .into_recorded(skip, out)
        .map_err(|e| corrupted(entry.at, &e.to_string()))
}

/// One stream's frames, found through the index.
struct StreamReader<'a> {
    shared: &'a Shared,
    stream_id: String,
    next_version: u64,
    frames: VecDeque<FrameEntry>,
    buf: Vec<u8>,
}

impl FrameSource for StreamReader<'_> {
    fn next_frame(&mut self, out: &mut VecDeque<RecordedEvent>) -> Result<bool, StoreError> {
        if self.frames.is_empty() {
            let index = read(&self.shared.published);
            self.frames.extend(index.stream_frames(
                &self.stream_id,
                self.next_version,
                FRAMES_PER_FETCH,
            ));
        }
        let Some(entry) = self.frames.pop_front() else {
            return Ok(false);
        };
        self.shared.read_frame(entry.at, &mut self.buf)?;
        let skip = self.next_version.saturating_sub(entry.first_version);
        decode_frame(&self.buf, &entry, Some(&self.stream_id), skip, out)?;
        self.next_version = entry.first_version + entry.count;
        Ok(true)
    }
}

/// A sequential read-ahead buffer over the segments for log-order reads.
#[derive(Default)]
struct ReadWindow {
    segment: u64,
    start: u64,
    buf: Vec<u8>,
}

const READ_AHEAD: usize = 1 << 20;

impl ReadWindow {
    /// The checked frame at `at`. The window reads ahead, but never past `known_end`:
    /// the end of frames already published, since bytes beyond may still change (zero
    /// room being filled) or vanish (room cut off when a segment is sealed).
    fn frame(
        &mut self,
        shared: &Shared,
        at: FrameRef,
        known_end: u64,
    ) -> Result<&[u8], StoreError> {
        let len = at.len as usize;
        let end = at.offset + len as u64;
        let covered = self.segment == at.segment
            && at.offset >= self.start
            && end <= self.start + self.buf.len() as u64;
        if !covered {
            let file = shared.segment(at.segment)?;
            let want = (known_end.max(end) - at.offset).min(READ_AHEAD.max(len) as u64);
            self.buf.resize(want as usize, 0);
            if let Err(e) = file.read_exact_at(&mut self.buf, at.offset) {
                self.buf.clear();
                return Err(shared.read_failed(at, e));
            }
            self.segment = at.segment;
            self.start = at.offset;
        }
        let from = (at.offset - self.start) as usize;
        let bytes = &self.buf[from..from + len];
        format::check_frame(bytes).map_err(|e| corrupted(at, &e.to_string()))?;
        Ok(bytes)
    }
}

/// The global log's frames, read sequentially through a read-ahead window.
struct LogReader<'a> {
    shared: &'a Shared,
    next_position: u64,
    frames: VecDeque<FrameEntry>,
    window: ReadWindow,
}

impl FrameSource for LogReader<'_> {
    fn next_frame(&mut self, out: &mut VecDeque<RecordedEvent>) -> Result<bool, StoreError> {
        if self.frames.is_empty() {
            let index = read(&self.shared.published);
            if let Some(first) = index.frame_of_position(self.next_position) {
                let end = (first + LOG_FRAMES_PER_FETCH).min(index.frames.len());
                self.frames.extend(index.frames[first..end].iter().copied());
            }
        }
        let Some(entry) = self.frames.pop_front() else {
            return Ok(false);
        };
        let known_end = self
            .frames
            .iter()
            .rev()
            .find(|f| f.at.segment == entry.at.segment)
            .map_or(0, |f| f.at.offset + u64::from(f.at.len));
        let bytes = self.window.frame(self.shared, entry.at, known_end)?;
        let skip = self.next_position.saturating_sub(entry.first_position);
        decode_frame(bytes, &entry, None, skip, out)?;
        self.next_position = entry.first_position + entry.count;
        Ok(true)
    }
}

const _: () = assert!(FRAME_OVERHEAD == 12);
