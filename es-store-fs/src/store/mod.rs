//! `FileStore`: an event store in one directory. Its jobs live in submodules: options
//! and opening ([`open`]), the group-commit writer ([`writer`]) and the readers
//! ([`readers`]); this module holds what they share.

mod open;
mod readers;
mod recent;
mod writer;

pub(crate) use open::read_beside_writers;
pub use open::{Durability, FileStoreOptions};
pub use writer::WriteStats;

use crate::error::RecoveryReport;
use crate::format;
use crate::index::{FrameRef, Index};
use crate::layout::{sealed_index_path, segment_path};
use crate::seal::{Sealed, SealedError, TableSource};
use crate::snapshot::SnapshotFiles;
use crate::vfs::{OpenMode, VfsFile};
use es_core::snapshot::{Snapshot, SnapshotStore};
use es_core::store::HeadSignal;
use es_core::{
    AppendResult, EventStore, EventStream, ExpectedVersion, NewEvent, RecordedEventRef, StoreError,
    StreamEnd,
};
use open::WriterLock;
use readers::{Buffered, LogReader, StreamReader};
use recent::RecentBytes;
use std::collections::VecDeque;
use std::io;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard};
use std::time::Duration;
use writer::Writer;

/// Sealed segments kept open at most, besides the active one: a store of any size stays
/// well under the common limit of 1,024 open files.
const MAX_OPEN_SEALED: usize = 32;

/// The segment files: how many there are, the active (last) one, and bounded sets of
/// sealed segments and of their indexes open for reading, least recently used first.
struct SegmentFiles {
    count: u64,
    active: Option<Arc<dyn VfsFile>>,
    sealed: OpenFiles,
    indexes: OpenFiles,
}

/// Stream tables of sealed segments (immutable once written), kept up to a budget of
/// bytes, the oldest put in dropped first.
#[derive(Default)]
struct TableCache {
    /// By segment number (the store's own numbers: a fast hash).
    tables: std::collections::HashMap<u64, Arc<Vec<u8>>, foldhash::fast::RandomState>,
    order: VecDeque<u64>,
    bytes: usize,
    budget: usize,
}

/// What the stream table cache holds by default.
const TABLE_CACHE_BYTES: usize = 64 << 20;

/// The newest bytes of the log kept in memory by default.
const RECENT_CACHE_BYTES: usize = 8 << 20;

impl TableCache {
    fn with_budget(budget: usize) -> Self {
        TableCache {
            budget,
            ..TableCache::default()
        }
    }

    fn get(&self, segment: u64) -> Option<Arc<Vec<u8>>> {
        self.tables.get(&segment).cloned()
    }

    fn put(&mut self, segment: u64, table: Arc<Vec<u8>>) {
        // a table fitted to no budget is no copy of it: the file is read instead
        if table.is_empty() {
            return;
        }
        self.bytes += table.len();
        match self.tables.insert(segment, table) {
            Some(old) => self.bytes -= old.len(),
            None => self.order.push_back(segment),
        }
        while self.bytes > self.budget
            && let Some(old) = self.order.pop_front()
        {
            if let Some(t) = self.tables.remove(&old) {
                self.bytes -= t.len();
            }
        }
    }
}

/// Files open for reading, by number, least recently used first, at most
/// [`MAX_OPEN_SEALED`].
#[derive(Default)]
struct OpenFiles(VecDeque<(u64, Arc<dyn VfsFile>)>);

impl OpenFiles {
    /// File `no`, opened at `path()` unless it is open already (a path is named only to
    /// open it).
    fn get(
        &mut self,
        vfs: &dyn crate::vfs::Vfs,
        no: u64,
        path: impl FnOnce() -> PathBuf,
    ) -> io::Result<Arc<dyn VfsFile>> {
        if let Some(i) = self.0.iter().position(|(n, _)| *n == no)
            && let Some(entry) = self.0.remove(i)
        {
            let file = Arc::clone(&entry.1);
            self.0.push_back(entry);
            return Ok(file);
        }
        let path = path();
        let file = vfs
            .open(&path, OpenMode::Read)
            .map_err(|e| io::Error::new(e.kind(), format!("opening `{}`: {e}", path.display())))?;
        if self.0.len() >= MAX_OPEN_SEALED {
            self.0.pop_front();
        }
        self.0.push_back((no, Arc::clone(&file)));
        Ok(file)
    }
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
    /// The committer thread (writable stores), joined at close likewise.
    commit_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// The thread that writes the indexes of sealed segments, joined at close.
    seal_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for FileStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileStore")
            .field("dir", &self.shared.dir)
            .finish_non_exhaustive()
    }
}

/// What the store's handle, its readers and its writer share.
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
    /// What the sealing thread is asked to do.
    sealing: (Mutex<writer::SealRequest>, Condvar),
    /// Held while sealed indexes are written.
    seal_lock: Mutex<()>,
    /// Stream tables of sealed segments read lately.
    stream_tables: Mutex<TableCache>,
    /// The newest bytes of the log, as written.
    recent: RwLock<RecentBytes>,
    /// What readers see: only frames whose append was acknowledged.
    published: RwLock<Index>,
    /// Segment files: the active one always open, sealed ones on demand.
    segments: Mutex<SegmentFiles>,
    writer: Mutex<Writer>,
    /// Appends between entry and return: the committer waits a little for those on
    /// their way to queue.
    appending: AtomicU64,
    /// Set while the committer waits for appends on their way: an append returning
    /// then wakes it, since it may have been the one waited for.
    gathering: AtomicBool,
    /// Signalled when a flush ends, if anyone waits for that.
    flushed: Condvar,
    /// Wakes the committer thread when appends were queued during a write.
    commit_wake: Condvar,
    /// The published head, for live subscribers.
    head: HeadSignal,
    snapshots: SnapshotFiles,
    report: RecoveryReport,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

impl FileStore {
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
        read(&self.shared.published).stream_count()
    }

    /// The ids of every stream with its version, in first-append order.
    pub fn streams(&self) -> Vec<(String, u64)> {
        let index = read(&self.shared.published);
        index
            .stream_ids
            .iter()
            .map(|s| (s.to_string(), index.version(s)))
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
        lock(&self.shared.writer).failures_held()
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
        // sealed segments get their own indexes first: `index.dat` then lists the active
        // segment's frames only. A sealing that fails (a full disk) does not stop the sync
        // and the index below (the segments it could not seal are listed there): its
        // error is returned after them
        let sealed = self.shared.seal_ready(false);
        // one writer of the index file at a time: the sealing thread writes it too. Taken
        // before the writer's lock, so that appends wait for the sync and the encoding
        // only, not for a sealing round (which may build an id filter) or for the write
        let _one_at_a_time = lock(&self.shared.seal_lock);
        let bytes = {
            let mut w = lock(&self.shared.writer);
            // nor while the periodic sync runs: its outcome must be known (a failure
            // there poisons the store) before this sync's success can be taken as proof
            while w.flushing || w.periodic_syncing {
                w = self.shared.wait_for_flush(w);
            }
            if let Some(reason) = &w.poisoned {
                return Err(StoreError::ReadOnly(reason.clone()));
            }
            self.shared.index_to_save(&mut w)?
        };
        let path = self.shared.dir.join(crate::layout::INDEX_FILE);
        crate::vfs::write_atomically(&*self.shared.options.vfs, &self.shared.dir, &path, &bytes)
            .map_err(|e| {
                StoreError::Io(io::Error::new(
                    e.kind(),
                    format!("writing `{}`: {e}", path.display()),
                ))
            })?;
        sealed
    }

    /// Cuts the zero-filled room off the active segment (done at close).
    fn trim(&self) -> Result<(), StoreError> {
        if self.shared.options.read_only {
            return Ok(());
        }
        let mut w = lock(&self.shared.writer);
        while w.flushing || w.periodic_syncing {
            w = self.shared.wait_for_flush(w);
        }
        if let Some(reason) = &w.poisoned {
            return Err(StoreError::ReadOnly(reason.clone()));
        }
        let end = w.durable_tail;
        if w.allocated <= end.offset {
            return Ok(());
        }
        let file = self.shared.segment(end.segment)?;
        file.set_len(end.offset)?;
        file.sync_data()?;
        w.allocated = end.offset;
        Ok(())
    }

    /// Syncs, writes the index, and closes. When it returns, the directory's lock is
    /// released (the store can be opened again at once).
    pub fn close(self) -> Result<(), StoreError> {
        let result = self.checkpoint().and_then(|()| self.trim());
        lock(&self.shared.writer).closed = true;
        self.stop_sync_thread();
        // a periodic sync that failed after the checkpoint's own succeeded: what it was
        // to make durable may not be
        let poisoned = lock(&self.shared.writer).poisoned.clone();
        match (result, poisoned) {
            (Ok(()), Some(reason)) if !self.shared.options.read_only => {
                Err(StoreError::ReadOnly(reason))
            }
            (result, _) => result,
        }
    }

    fn stop_sync_thread(&self) {
        let (stop, wake) = &self.shared.stop_sync;
        *lock(stop) = true;
        wake.notify_all();
        if let Some(thread) = lock(&self.sync_thread).take() {
            let _ = thread.join();
        }
        // `closed` is set: the committer ends once woken
        self.shared.commit_wake.notify_all();
        if let Some(thread) = lock(&self.commit_thread).take() {
            let _ = thread.join();
        }
        let (request, wake) = &self.shared.sealing;
        lock(request).stop = true;
        wake.notify_all();
        if let Some(thread) = lock(&self.seal_thread).take() {
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

impl Shared {
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
            return Err(StoreError::Corrupted(es_core::store::Corruption::new(
                es_core::store::DataLocation::File {
                    path: crate::layout::segment_name(no).into(),
                    offset: 0,
                },
                format!(
                    "the index lists this segment, but the log has {}",
                    files.count
                ),
            )));
        }
        Ok(files
            .sealed
            .get(&*self.options.vfs, no, || segment_path(&self.dir, no))?)
    }

    /// The sealed index of segment `no`, from the bounded set of open files.
    fn sealed_index(&self, no: u64) -> Result<Arc<dyn VfsFile>, StoreError> {
        Ok(lock(&self.segments)
            .indexes
            .get(&*self.options.vfs, no, || sealed_index_path(&self.dir, no))?)
    }

    /// The stream table of sealed segment `sealed`, for one or more [`StreamTable::with`].
    /// A table cached whole needs no file: the index file is looked up only when the
    /// cache holds less.
    fn stream_table(&self, sealed: &Sealed) -> Result<StreamTable, SealedError> {
        let cached = lock(&self.stream_tables).get(sealed.segment);
        if let Some(table) = &cached
            && sealed.table_is_whole(table.len())
        {
            return Ok(StreamTable::Whole(Arc::clone(table)));
        }
        let file = self
            .sealed_index(sealed.segment)
            .map_err(|e| SealedError::Io(io::Error::other(e.to_string())))?;
        Ok(match cached {
            Some(table) => StreamTable::Part(table, file),
            None => StreamTable::File(file),
        })
    }

    /// A sealed index that cannot be used while the store runs: damage names the file and
    /// offset; the index is rebuilt from its segment when the store is opened again.
    fn sealed_failed(&self, no: u64, e: SealedError) -> StoreError {
        let path = sealed_index_path(&self.dir, no);
        match e {
            SealedError::Io(e) => StoreError::Io(io::Error::new(
                e.kind(),
                format!("reading `{}`: {e}", path.display()),
            )),
            SealedError::Damaged { offset, reason } => {
                StoreError::Corrupted(es_core::store::Corruption::new(
                    es_core::store::DataLocation::File {
                        path: path.file_name().map(Into::into).unwrap_or_default(),
                        offset,
                    },
                    format!(
                        "{reason}; remove this sealed index and reopen the store to rebuild it \
                         from its segment"
                    ),
                ))
            }
        }
    }

    /// A failed read of a published frame: an I/O error naming the file and offset. A
    /// file shorter than a frame the index lists is damage, not a failed read.
    fn read_failed(&self, at: FrameRef, e: io::Error) -> StoreError {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            return corrupted(at, "the segment ends inside a frame the index lists");
        }
        let path = segment_path(&self.dir, at.segment);
        StoreError::Io(io::Error::new(
            e.kind(),
            format!("reading `{}` at offset {}: {e}", path.display(), at.offset),
        ))
    }

    /// Reads and checks the frame at `at`, through the segment file in `file` when it is
    /// the frame's, leaving there the file it read from.
    fn read_frame(
        &self,
        at: FrameRef,
        buf: &mut Vec<u8>,
        file: &mut Option<(u64, Arc<dyn VfsFile>)>,
    ) -> Result<(), StoreError> {
        if !read(&self.recent).copy(at, buf) {
            buf.resize(at.len as usize, 0);
            let segment = match file {
                Some((no, f)) if *no == at.segment => f,
                _ => &file.insert((at.segment, self.segment(at.segment)?)).1,
            };
            segment
                .read_exact_at(buf, at.offset)
                .map_err(|e| self.read_failed(at, e))?;
        }
        format::check_frame(buf).map_err(|e| corrupted(at, &e.to_string()))?;
        Ok(())
    }
}

/// A sealed segment's stream table: the cached copy when there is one, and the index file.
enum StreamTable {
    /// Cached whole: entries, names and every stream's list of frames.
    Whole(Arc<Vec<u8>>),
    /// Entries and names cached, the lists of frames read from the index file.
    Part(Arc<Vec<u8>>, Arc<dyn VfsFile>),
    /// Not cached: read from the index file.
    File(Arc<dyn VfsFile>),
}

impl StreamTable {
    /// Runs `f` on the table.
    fn with<T>(
        &self,
        f: impl FnOnce(&TableSource<'_>) -> Result<T, SealedError>,
    ) -> Result<T, SealedError> {
        match self {
            StreamTable::Whole(table) => f(&TableSource::Memory(&table[..], None)),
            StreamTable::Part(table, file) => f(&TableSource::Memory(&table[..], Some(&**file))),
            StreamTable::File(file) => f(&TableSource::File(&**file)),
        }
    }

    /// The table when it holds no file open: one a reader may keep between reads.
    fn without_file(&self) -> Option<StreamTable> {
        match self {
            StreamTable::Whole(table) => Some(StreamTable::Whole(Arc::clone(table))),
            _ => None,
        }
    }

    /// [`Sealed::touch_frames`] on the table.
    fn touch_frames(&self, sealed: &Sealed, run: &crate::seal::StreamRun) {
        if let StreamTable::Whole(table) | StreamTable::Part(table, _) = self {
            sealed.touch_frames(&TableSource::Memory(&table[..], None), run);
        }
    }
}

fn corrupted(at: FrameRef, reason: &str) -> StoreError {
    StoreError::Corrupted(es_core::store::Corruption::new(
        es_core::store::DataLocation::File {
            path: crate::layout::segment_name(at.segment).into(),
            offset: at.offset,
        },
        reason,
    ))
}

impl EventStore for FileStore {
    /// A crash takes back what `Periodic` and `None` acknowledged but had not yet made
    /// durable, and a repair cuts damage: the positions after the cut are handed out again.
    fn head_can_move_back(&self) -> bool {
        true
    }

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
        Ok(Box::new(Buffered::new(StreamReader::new(
            &self.shared,
            stream_id,
            from_version,
        ))))
    }

    fn read_all(&self, from_position: u64) -> Result<EventStream<'_>, StoreError> {
        Ok(Box::new(Buffered::new(LogReader::new(
            &self.shared,
            from_position,
        ))))
    }

    fn visit_all(
        &self,
        from_position: u64,
        visit: &mut dyn FnMut(RecordedEventRef<'_>) -> ControlFlow<()>,
    ) -> Result<(), StoreError> {
        readers::visit_log(LogReader::new(&self.shared, from_position), visit)
    }

    fn visit_stream(
        &self,
        stream_id: &str,
        from_version: u64,
        visit: &mut dyn FnMut(RecordedEventRef<'_>) -> ControlFlow<()>,
    ) -> Result<(), StoreError> {
        self.shared.options.limits.check_stream_id(stream_id)?;
        readers::visit(
            StreamReader::new(&self.shared, stream_id, from_version).for_one_call(),
            visit,
        )
    }

    fn stream_version(&self, stream_id: &str) -> Result<u64, StoreError> {
        self.shared.options.limits.check_stream_id(stream_id)?;
        Ok(read(&self.shared.published).version(stream_id))
    }

    fn head_position(&self) -> Result<u64, StoreError> {
        Ok(read(&self.shared.published).head)
    }

    /// Answered from the index in memory when the stream's last frame is among the
    /// recent ones (those of the active segment); `None` otherwise.
    fn stream_end(&self, stream_id: &str) -> Result<Option<StreamEnd>, StoreError> {
        self.shared.options.limits.check_stream_id(stream_id)?;
        Ok(read(&self.shared.published)
            .stream_end(stream_id)
            .map(|(version, position)| StreamEnd { version, position }))
    }

    fn wait_for_head(&self, position: u64, timeout: Duration) -> Result<u64, StoreError> {
        Ok(self.shared.head.wait(position, timeout))
    }

    fn snapshots(&self) -> Option<&dyn SnapshotStore> {
        Some(self)
    }

    /// One look-up among the recent ids kept in memory, then in the sealed segments whose
    /// filter lets the id through; ids of appends not yet acknowledged do not count.
    fn version_of_event(
        &self,
        stream_id: &str,
        event_id: uuid::Uuid,
    ) -> Result<Option<u64>, StoreError> {
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
        // published events only: the recent ids in memory, then the sealed segments'
        // filters and id tables
        let index = read(&shared.published);
        Ok(shared
            .find_id(&index, stream_id, &event_id)?
            .filter(|found| found.same_stream)
            .map(|found| found.stream_version))
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
        self.shared.snapshots.load(stream_id, max_version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use es_core::{ExpectedVersion, NewEvent};

    /// The base of `index.dat` written a few streams at a time, the read lock taken for
    /// each few, is the base written under one look: streams in and past sealed
    /// segments, streams only recent, frames of several events.
    #[test]
    fn the_base_written_in_steps_is_the_base_written_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open_with(
            dir.path(),
            FileStoreOptions {
                segment_size: 4096,
                durability: crate::Durability::None,
                ..FileStoreOptions::default()
            },
        )
        .unwrap();
        for n in 0..400u64 {
            let events = (0..1 + n % 3)
                .map(|k| NewEvent::new("Added", 1, format!(r#"{{"n":{n},"k":{k}}}"#).into_bytes()))
                .collect();
            store
                .append(&format!("s-{}", n % 17), ExpectedVersion::Any, events)
                .unwrap();
        }
        store.checkpoint().unwrap();
        // no segment sealed while the two are compared (what the sealing thread holds
        // when it writes the base)
        let _no_sealing = lock(&store.shared.seal_lock);
        let index = read(&store.shared.published);
        assert!(index.sealed.len() > 3 && !index.recent.is_empty());
        let whole = index.encode_base();
        drop(index);
        for step in [1, 2, 5, 16, 1000] {
            assert_eq!(
                Index::encode_base_in_steps(&store.shared.published, step),
                whole,
                "step {step}"
            );
        }
    }
}
