//! Options and opening: checking the options, taking the directory's write lock,
//! recovering the log and starting the store's threads.

use super::writer::{SealRequest, seal_segments};
use super::writer::{Writer, commit_queued, periodic_sync};
use super::{FileStore, OpenFiles, RecentBytes, SegmentFiles, Shared, TableCache, lock};
use crate::error::OpenError;
use crate::format::{self, Frame};
use crate::layout::{LOCK_FILE, PUBLISHED_FILE, sealed_index_path, segment_path};
use crate::published::Published;
use crate::recovery::{self, RecoverOptions};
use crate::seal::SealedError;
use crate::snapshot::SnapshotFiles;
use crate::vfs::{DirLock, OpenMode, StdFs, Vfs, VfsFile};
use chrono::{DateTime, Utc};
use es_core::Limits;
use es_core::store::HeadSignal;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::Duration;

/// When an acknowledged append is on stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `fdatasync` before acknowledging (the default). A crash loses no acknowledged append.
    #[default]
    Always,
    /// Acknowledge once written to the OS; a background thread syncs every interval. A
    /// crash of the machine (not of the process) can lose the appends of the last
    /// interval, never a part of one.
    ///
    /// After such a crash, a disk that shows garbage (not zeros) where unsynced writes
    /// were makes the next open refuse with [`OpenError::Corrupted`] naming the file and
    /// offset: the store cannot tell those bytes from damage to acknowledged events, and
    /// never cuts what it cannot prove was unacknowledged. Opening with
    /// [`FileStoreOptions::repair`] then drops the log from there (what was lost is in the
    /// [`RecoveryReport`](crate::RecoveryReport)); `es-store repair --dry-run` says what it
    /// would drop first. Read models fed from the lost appends are caught by their
    /// checkpoints (see `es_core::projection::Mark`).
    Periodic(Duration),
    /// Never sync except when a segment is sealed and at close. A machine crash can lose
    /// anything not yet written back by the OS, never a part of an append; garbage where
    /// unsynced writes were is handled as in [`Durability::Periodic`].
    None,
}

/// Options of [`FileStore::open_with`].
#[derive(Debug, Clone)]
pub struct FileStoreOptions {
    /// When acknowledged appends are durable.
    pub durability: Durability,
    /// Size limits on what is appended.
    pub limits: Limits,
    /// A segment is sealed and a new one started once it reaches this size: from 4 KiB
    /// to [`FileStoreOptions::MAX_SEGMENT_SIZE`] (a sealed segment's index counts its
    /// streams, frames and names in 32 bits).
    pub segment_size: u64,
    /// Truncate the log at the first damaged frame instead of refusing to open,
    /// reporting what was dropped in [`FileStore::recovery_report`].
    pub repair: bool,
    /// Open without the write lock: reads only, nothing on disk changes.
    pub read_only: bool,
    /// The active segment grows in zero-filled steps of this many bytes, so that most
    /// syncs persist data only, not a new file size (0 grows it frame by frame; a step
    /// larger than `segment_size` is taken as `segment_size`).
    pub preallocate: u64,
    /// Memory for the stream tables of the newest sealed segments (64 MiB by default),
    /// read at open or kept when a segment is sealed, the oldest dropped first, and
    /// searched in memory by stream loads. A table is kept whole (its stream entries, their
    /// names and every stream's list of frames): a stream's frames in such a segment are
    /// then found without a read. Only a table larger than the whole budget is kept as
    /// entries and names, which cost one small read of the stream's list of frames per
    /// load. Other segments' tables are searched on disk, three small reads per segment a
    /// stream spans; 0 keeps none. A 64 MiB segment of single-event frames has a table of
    /// about 18 MB, 7 MB of it entries and names, when every stream has a frame in it.
    pub stream_table_cache: usize,
    /// Memory for the newest bytes of the log, kept as they were written, so that reads
    /// of recent events (a stream load after a command, a subscriber following the log)
    /// copy them instead of reading the file (8 MiB by default; 0 keeps none).
    pub recent_cache: usize,
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
            stream_table_cache: super::TABLE_CACHE_BYTES,
            recent_cache: super::RECENT_CACHE_BYTES,
            vfs: Arc::new(StdFs),
        }
    }
}

impl FileStoreOptions {
    /// The largest `segment_size` accepted: 2 GiB.
    pub const MAX_SEGMENT_SIZE: u64 = 1 << 31;

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
        Self::open_removing(dir, options, &[]).map(|(store, _)| store)
    }

    /// Opens the store in `dir` as [`open_with`](Self::open_with) does, removing the
    /// derived files `derived` (sealed indexes and id filters a repair found stale) once
    /// recovery has accepted the directory and before the store's threads start: the
    /// store then writes them again from the log, and nothing it has just written is
    /// removed. Recovery reads the directory as it was (a sealed index there is a proof
    /// of the segment after it), so that a repair does what its dry run said. A directory
    /// in place of one of them refuses the open before anything changes; a removal that
    /// fails even so is returned beside the store, naming the file.
    pub(crate) fn open_removing(
        dir: impl AsRef<Path>,
        mut options: FileStoreOptions,
        derived: &[PathBuf],
    ) -> Result<(FileStore, Vec<(PathBuf, std::io::Error)>), OpenError> {
        let dir = dir.as_ref().to_owned();
        // a segment never grows past its size, so neither does a step
        options.preallocate = options.preallocate.min(options.segment_size);
        if options.segment_size < 4096 {
            return Err(OpenError::InvalidOptions(format!(
                "segment_size {} is below the minimum of 4096 bytes",
                options.segment_size
            )));
        }
        if options.segment_size > FileStoreOptions::MAX_SEGMENT_SIZE {
            return Err(OpenError::InvalidOptions(format!(
                "segment_size {} is above the maximum of {} bytes",
                options.segment_size,
                FileStoreOptions::MAX_SEGMENT_SIZE
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
        let recover = |limit: Option<Published>| {
            recovery::recover(
                &*vfs,
                &dir,
                RecoverOptions {
                    limit: limit.map(|p| p.end),
                    limit_durable: limit.map(|p| p.durable),
                    table_budget: options.stream_table_cache,
                    ..RecoverOptions::open(frame_cap, options.read_only, options.repair)
                },
            )
        };
        let (lock, recovered) = if options.read_only {
            (None, read_beside_writers(&*vfs, &dir, recover)?.1)
        } else {
            if found == crate::marker::Found::Nothing {
                vfs.create_dir_all(&dir).map_err(|source| OpenError::Io {
                    path: dir.clone(),
                    source,
                })?;
            }
            let lock = take_lock(&*vfs, &dir)?;
            let removable = check_derived(&dir, derived);
            (Some(lock), removable.and_then(|()| recover(None)))
        };
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
        let not_removed = remove_derived(&*vfs, &dir, derived);
        // marked only once recovery accepted the directory: a refused open leaves no marker
        if lock.is_some() && found != crate::marker::Found::Store {
            crate::marker::write(&*vfs, &dir)?;
        }
        let published_file = match &lock {
            Some(_) => {
                let path = dir.join(PUBLISHED_FILE);
                let failed = |source| OpenError::Io {
                    path: path.clone(),
                    source,
                };
                let mut file = vfs.open(&path, OpenMode::CreateOrOpen).map_err(failed)?;
                // rewritten in place after every commit: a record with another name (a
                // hard link) is replaced by a file of its own, the other name keeping its
                // bytes (readers beside the writer open it by its name)
                if file.links().map_err(failed)? > 1 {
                    drop(file);
                    vfs.remove_file(&path).map_err(failed)?;
                    file = vfs.open(&path, OpenMode::CreateNew).map_err(failed)?;
                }
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
        let recent = newest_bytes(&rec, &options);
        let mut tables = TableCache::with_budget(options.stream_table_cache);
        for (segment, table) in rec.stream_tables {
            tables.put(segment, table.into());
        }
        let shared = Arc::new(Shared {
            dir: dir.clone(),
            frame_cap,
            _lock: lock,
            published_file,
            stop_sync: (Mutex::new(false), Condvar::new()),
            sealing: (Mutex::new(SealRequest::default()), Condvar::new()),
            seal_lock: Mutex::new(()),
            stream_tables: Mutex::new(tables),
            recent: RwLock::new(recent),
            published: RwLock::new(rec.index),
            segments: Mutex::new(SegmentFiles {
                count: rec.segment_count,
                active: rec.last_segment,
                sealed: OpenFiles::default(),
                indexes: OpenFiles::default(),
            }),
            writer: Mutex::new(Writer::new(
                rec.end,
                next_position,
                rec.allocated,
                last_timestamp,
            )),
            appending: AtomicU64::new(0),
            gathering: AtomicBool::new(false),
            flushed: Condvar::new(),
            commit_wake: Condvar::new(),
            head: HeadSignal::new(next_position - 1),
            snapshots: SnapshotFiles::new(&dir, Arc::clone(&vfs), options.read_only),
            report: rec.report,
            options,
        });
        // frames of complete segments that recovery read are sealed in the background:
        // a refused open must leave the directory as it found it, so recovery writes none
        *super::lock(&shared.sealing.0) = SealRequest {
            pending: true,
            stop: false,
        };
        // the store exists before its threads, so that a failure to start one drops the
        // store, which stops those already started
        let mut store = FileStore {
            shared,
            sync_thread: Mutex::new(None),
            commit_thread: Mutex::new(None),
            seal_thread: Mutex::new(None),
        };
        if store.shared.options.read_only {
            return Ok((store, not_removed));
        }
        let spawn = |name: &str, run: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(run)
                .map_err(|source| OpenError::Io {
                    path: store.shared.dir.clone(),
                    source,
                })
        };
        let shared = Arc::clone(&store.shared);
        let committer = spawn(
            "es-store-fs-commit",
            Box::new(move || commit_queued(shared)),
        )?;
        *store
            .commit_thread
            .get_mut()
            .unwrap_or_else(|e| e.into_inner()) = Some(committer);
        let weak = Arc::downgrade(&store.shared);
        let sealer = spawn("es-store-fs-seal", Box::new(move || seal_segments(weak)))?;
        *store
            .seal_thread
            .get_mut()
            .unwrap_or_else(|e| e.into_inner()) = Some(sealer);
        if let Durability::Periodic(interval) = store.shared.options.durability {
            let weak = Arc::downgrade(&store.shared);
            let syncer = spawn(
                "es-store-fs-sync",
                Box::new(move || periodic_sync(weak, interval)),
            )?;
            *store
                .sync_thread
                .get_mut()
                .unwrap_or_else(|e| e.into_inner()) = Some(syncer);
        }
        Ok((store, not_removed))
    }
}

/// The commit time of the last frame, so that commit times never go backwards across a
/// reopen, even when the clock does.
fn last_commit_time(vfs: &dyn Vfs, rec: &recovery::Recovered) -> Result<DateTime<Utc>, OpenError> {
    let last = match (rec.index.last_recent(), rec.index.sealed.last()) {
        (Some(last), _) => last,
        (None, None) => return Ok(DateTime::<Utc>::MIN_UTC),
        (None, Some(sealed)) => {
            let path = sealed_index_path(&rec.dir, sealed.segment);
            let io = |source| OpenError::Io {
                path: path.clone(),
                source,
            };
            let file = vfs.open(&path, OpenMode::Read).map_err(io)?;
            let frames = sealed
                .frames_from(&*file, sealed.end_position() - 1, 1)
                .map_err(|e| match e {
                    SealedError::Io(e) => io(e),
                    SealedError::Damaged { offset, reason } => OpenError::Corrupted {
                        file: path.clone(),
                        segment: sealed.segment,
                        offset,
                        reason,
                    },
                })?;
            match frames.first() {
                Some(f) => *f,
                None => return Ok(DateTime::<Utc>::MIN_UTC),
            }
        }
    };
    let path = segment_path(&rec.dir, last.at.segment);
    let corrupted = |reason: String| OpenError::Corrupted {
        file: path.clone(),
        segment: last.at.segment,
        offset: last.at.offset,
        reason,
    };
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
pub(super) struct WriterLock {
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
        let file_locked = file.try_lock().map_err(io).map_err(unregister)?;
        match dir_lock {
            Some(dir_lock) if file_locked => break dir_lock,
            // one of the two locks is free: a writer holds both, so the other is held by
            // a read-only open probing for a writer (see `writer_holds`), or by another
            // writer between taking its two locks, for an instant
            dir_lock if dir_lock.is_some() != file_locked && started.elapsed() < PROBE_WAIT => {
                drop(dir_lock);
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            _ => {}
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
    // the holder is written for whoever finds the store locked; a lock file with another
    // name (a hard link: a backup made with links, or one planted) is locked, and left
    // as it is: writing it would write the file of its other name
    if file.links().map_err(io).map_err(unregister)? <= 1 {
        file.set_len(0).map_err(io).map_err(unregister)?;
        file.write_all_at(me.as_bytes(), 0)
            .map_err(io)
            .map_err(unregister)?;
    }
    Ok(WriterLock {
        dir: dir_lock,
        file,
        registered,
        created,
    })
}

/// For a read-only open: the end a live writer published, or `None` when no writer holds
/// the directory (then the log is read as recovery would, without cutting anything).
/// Beside a live writer whose record is missing or unreadable, the open is refused: the
/// log past what the writer acknowledged may hold frames whose appends are still
/// syncing, or will fail.
fn published_end(vfs: &dyn Vfs, dir: &Path) -> Result<Option<Published>, OpenError> {
    let started = std::time::Instant::now();
    loop {
        if !writer_holds(vfs, dir)? {
            return Ok(None);
        }
        if let Some(published) = recovery::read_published(vfs, dir)? {
            return Ok(Some(published));
        }
        // a writer that is opening (creating the store, or recovering it) writes its
        // record once its recovery is done: it is asked again for up to a second
        if started.elapsed() >= PROBE_WAIT {
            return Err(OpenError::Io {
                path: dir.join(crate::layout::PUBLISHED_FILE),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "a writer holds the store, but its record of what it acknowledged is \
                     missing or damaged after a second: a read-only open cannot tell \
                     acknowledged frames from frames still being written, and is refused \
                     (try again: the writer writes the record after its next commit, or \
                     once it has closed)",
                ),
            });
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Reads the store in `dir` without its write lock: `read` is given the end a live writer
/// published (`None` when no writer holds the store). A writer that starts while `read`
/// runs without a limit may write frames it has not acknowledged into what is read (or
/// cut a torn tail under it), so once `read` is done the writer is looked for again, and
/// if one came, `read` runs again up to the end it publishes. The first error that is not
/// the reader's own (a failed probe) is returned; `read`'s own result is returned as it
/// is, with the end it was limited to.
pub(crate) fn read_beside_writers<T>(
    vfs: &dyn Vfs,
    dir: &Path,
    mut read: impl FnMut(Option<Published>) -> Result<T, OpenError>,
) -> Result<(Option<Published>, Result<T, OpenError>), OpenError> {
    let mut probes = 0;
    loop {
        let published = published_end(vfs, dir)?;
        let result = read(published);
        probes += 1;
        if published.is_none() && probes < 3 && writer_holds(vfs, dir)? {
            continue;
        }
        return Ok((published, result));
    }
}

/// How long a lock that a read-only open takes for an instant to probe for a writer may
/// stand in the way of a writer taking its locks, or of another probe, before it counts.
const PROBE_WAIT: Duration = Duration::from_secs(1);

/// Whether a writer holds the store in `dir`. A writer holds the directory's lock and the
/// lock of its `LOCK` file. The directory's lock held while the `LOCK` file's is free
/// belongs to another read-only open probing, or to a writer taking its locks: it is
/// asked again for up to [`PROBE_WAIT`], then counts as a writer's (the read then needs
/// the writer's record, as beside any writer).
fn writer_holds(vfs: &dyn Vfs, dir: &Path) -> Result<bool, OpenError> {
    let started = std::time::Instant::now();
    loop {
        let io = |source| OpenError::Io {
            path: dir.to_owned(),
            source,
        };
        if vfs.lock_dir(dir).map_err(io)?.is_some() {
            return Ok(false);
        }
        let lock_path = dir.join(LOCK_FILE);
        let lock_free = match vfs.open(&lock_path, OpenMode::Read) {
            // the lock, when taken, is released as the file is dropped
            Ok(file) => file.try_lock().map_err(|source| OpenError::Io {
                path: lock_path.clone(),
                source,
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => true,
            Err(source) => {
                return Err(OpenError::Io {
                    path: lock_path,
                    source,
                });
            }
        };
        if !lock_free || started.elapsed() >= PROBE_WAIT {
            return Ok(true);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The newest bytes of the log up to the recovered end, read at open so that the events
/// appended last before a restart are read from memory too. A failed read leaves them to
/// be read from the file, where the reader meets the error itself.
fn newest_bytes(rec: &recovery::Recovered, options: &FileStoreOptions) -> RecentBytes {
    let mut recent = RecentBytes::with_capacity(options.recent_cache);
    let end = rec.end;
    let Some(file) = rec
        .last_segment
        .as_ref()
        .filter(|_| !options.read_only && end.segment + 1 == rec.segment_count)
    else {
        return recent;
    };
    let from = end
        .offset
        .saturating_sub(options.recent_cache as u64)
        .max(format::SEGMENT_HEADER_LEN as u64);
    if from < end.offset {
        let mut bytes = vec![0u8; (end.offset - from) as usize];
        match file.read_exact_at(&mut bytes, from) {
            Ok(()) => recent.push(end.segment, from, &bytes),
            Err(e) => tracing::warn!("reading the newest frames into memory: {e}"),
        }
    }
    recent
}

/// Checks that `derived` names derived files of the store in `dir` only (sealed indexes
/// and id filters), none a directory, which no file removal takes.
fn check_derived(dir: &Path, derived: &[PathBuf]) -> Result<(), OpenError> {
    for path in derived {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let is_derived = path.parent() == Some(dir)
            && (name.ends_with(crate::layout::SEALED_INDEX_SUFFIX) || name.ends_with(".flt"));
        if !is_derived {
            return Err(OpenError::InvalidOptions(format!(
                "{} is not a derived file of the store in {}",
                path.display(),
                dir.display()
            )));
        }
        if std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()) {
            return Err(OpenError::Io {
                path: path.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::IsADirectory,
                    "a directory in place of a stale derived file: remove it by hand",
                ),
            });
        }
    }
    Ok(())
}

/// Removes the derived files `derived` of the store in `dir` (checked by
/// [`check_derived`]), a file already gone being fine; returns those it could not remove.
fn remove_derived(
    vfs: &dyn Vfs,
    dir: &Path,
    derived: &[PathBuf],
) -> Vec<(PathBuf, std::io::Error)> {
    let mut failed = Vec::new();
    for path in derived {
        match vfs.remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => failed.push((path.clone(), e)),
            _ => {}
        }
    }
    if !derived.is_empty()
        && let Err(e) = vfs.sync_dir(dir)
    {
        failed.push((dir.to_owned(), e));
    }
    failed
}
