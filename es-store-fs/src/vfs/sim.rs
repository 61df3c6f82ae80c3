//! A simulated file system for tests: it keeps, per file, what was written and what was
//! synced, and can lose power.
//!
//! [`SimFs`] implements [`Vfs`], so a [`FileStore`](crate::FileStore) runs on it unchanged
//! (pass it as `FileStoreOptions::vfs`). It follows the assumptions of
//! `docs/storage-format.md` about the disk, choosing the worst case each time:
//!
//! - **File data** becomes durable only with [`VfsFile::sync_data`]. A crash keeps the
//!   synced state plus a random subset of the writes and truncations made since the last
//!   sync, applied in order; each kept write may be torn at an arbitrary byte or replaced
//!   by garbage of the same length. With [`SimOptions::page_size`], writes are first cut
//!   at page boundaries and each page is kept, torn or lost on its own.
//! - **Directory entries** (creations, renames, removals) become durable only with
//!   [`Vfs::sync_dir`] of their directory: a crash drops an unsynced creation, undoes an
//!   unsynced rename and brings back an unsynced removal. Directories themselves are
//!   durable once created.
//! - **Faults**: a chosen `write`, `sync_data` or `sync_dir` fails with the error kind you
//!   pick ([`SimFs::fail`]), and [`SimFs::set_capacity`] makes writes past a number of
//!   bytes fail with `ENOSPC` after writing what fits. A failed `sync_data` behaves as on
//!   Linux: the dirty data stays readable in the cache but is no longer owed to the disk,
//!   so a later successful sync does not make it durable.
//! - **Locks**: [`VfsFile::try_lock`] is an in-memory flag per path, released when the
//!   handle is dropped or the machine crashes.
//!
//! [`SimFs::crash`] loses power in place: every open handle dies (its operations fail)
//! and the files become what the disk kept. [`SimFs::crash_image`] returns that state as a
//! new file system and leaves this one running, and [`SimFs::capture_crash_images`]
//! collects such images just before and just after every sync, so that one run of a
//! workload yields a crash at each of its sync points.
//!
//! Every operation advances a clock ([`SimFs::now`]); images record the time they were
//! taken, so a test can tell which acknowledgements happened before a crash point.
//!
//! Enabled by the cargo feature `sim`.
//!
//! ```
//! use es_core::{EventStore, ExpectedVersion, NewEvent};
//! use es_store_fs::vfs::sim::SimFs;
//! use es_store_fs::{FileStore, FileStoreOptions};
//! use std::sync::Arc;
//!
//! let fs = SimFs::new(7);
//! let options = || FileStoreOptions { vfs: Arc::new(fs.clone()), ..FileStoreOptions::default() };
//! let store = FileStore::open_with("/db", options()).unwrap();
//! let e = NewEvent::new("Deposited", 1, br#"{"amount":5}"#.to_vec());
//! store.append("account-1", ExpectedVersion::NoStream, vec![e]).unwrap();
//! fs.crash(); // power loss: the acknowledged append was synced, so it survives
//! drop(store);
//! let store = FileStore::open_with("/db", options()).unwrap();
//! assert_eq!(store.stream_version("account-1").unwrap(), 1);
//! ```

use super::{OpenMode, Vfs, VfsFile};
use rand::rngs::SmallRng;
use rand::{Rng, RngExt, SeedableRng};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// How the simulated disk behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimOptions {
    /// When set, a crash treats every page of this many bytes of an unsynced write
    /// separately (pages of one write may persist out of order); otherwise a write is
    /// kept, torn or lost as a whole.
    pub page_size: Option<u64>,
    /// Chance, in percent, that a crash keeps an unsynced write (or page).
    pub keep_percent: u8,
    /// Chance, in percent, that a kept write is torn at a random byte.
    pub torn_percent: u8,
    /// Chance, in percent, that a kept write is replaced by random bytes.
    pub garbage_percent: u8,
    /// Chance, in percent, that a crash keeps a directory change (creation, removal, one
    /// side of a rename) that was not synced with `sync_dir`. 0 by default: such changes
    /// are always lost.
    pub entry_keep_percent: u8,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            page_size: None,
            keep_percent: 50,
            torn_percent: 20,
            garbage_percent: 10,
            entry_keep_percent: 0,
        }
    }
}

/// An operation a fault can hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SimOp {
    /// [`VfsFile::read_at`].
    Read,
    /// [`VfsFile::write_all_at`].
    Write,
    /// [`VfsFile::sync_data`].
    SyncData,
    /// [`Vfs::sync_dir`].
    SyncDir,
    /// [`VfsFile::set_len`].
    SetLen,
    /// [`Vfs::open`] of a file that does not exist yet.
    Create,
    /// [`Vfs::rename`].
    Rename,
}

/// A crash image: what a power loss at one moment would have left, as a file system of
/// its own.
#[derive(Debug, Clone)]
pub struct CrashImage {
    /// The clock ([`SimFs::now`]) when the image was taken.
    pub at: u64,
    /// Whether it was taken just after the sync (else just before it).
    pub after_sync: bool,
    /// The crashed file system.
    pub fs: SimFs,
}

/// A `sync_data` that succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRecord {
    /// The file synced.
    pub path: PathBuf,
    /// The clock when it was called.
    pub started: u64,
    /// The clock when it returned.
    pub finished: u64,
}

/// Counters of operations since the file system was made (or crashed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimCounts {
    /// Writes.
    pub writes: u64,
    /// `sync_data` calls.
    pub syncs: u64,
    /// `sync_dir` calls.
    pub dir_syncs: u64,
    /// Faults injected.
    pub faults: u64,
}

/// A simulated file system; clones share the same disk.
#[derive(Clone)]
pub struct SimFs {
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for SimFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.lock();
        f.debug_struct("SimFs")
            .field("files", &s.live.len())
            .field("now", &s.now)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
enum Change {
    Write { offset: u64, bytes: Vec<u8> },
    SetLen(u64),
}

#[derive(Debug, Clone, Default)]
struct Inode {
    /// What reads return.
    data: Vec<u8>,
    /// What the disk holds for sure.
    durable: Vec<u8>,
    /// Changes since the last sync that the disk may or may not have.
    pending: Vec<Change>,
}

#[derive(Debug, Clone)]
struct Fault {
    op: SimOp,
    /// Operations of this kind to let pass first.
    skip: u64,
    kind: io::ErrorKind,
    /// Only operations on paths containing this.
    path_contains: Option<String>,
    /// Fails every such operation until cleared, not just one.
    persistent: bool,
}

#[derive(Debug)]
struct State {
    options: SimOptions,
    rng: SmallRng,
    inodes: HashMap<u64, Inode>,
    next_inode: u64,
    /// Directory entries as the running system sees them.
    live: BTreeMap<PathBuf, u64>,
    /// Directory entries as the disk holds them.
    durable: BTreeMap<PathBuf, u64>,
    dirs: BTreeSet<PathBuf>,
    /// Locked paths and the handle holding each.
    locks: HashMap<PathBuf, u64>,
    next_handle: u64,
    /// Bumped by a crash: handles of an older generation are dead.
    generation: u64,
    now: u64,
    faults: Vec<Fault>,
    capacity: Option<u64>,
    capture: Option<usize>,
    images: Vec<CrashImage>,
    counts: SimCounts,
    syncs: Vec<SyncRecord>,
}

fn dead() -> io::Error {
    io::Error::other("simulated power loss: this handle belongs to a crashed machine")
}

fn apply(data: &mut Vec<u8>, change: &Change) {
    match change {
        Change::Write { offset, bytes } => {
            let offset = *offset as usize;
            let end = offset + bytes.len();
            if data.len() < end {
                data.resize(end, 0);
            }
            data[offset..end].copy_from_slice(bytes);
        }
        Change::SetLen(len) => data.resize(*len as usize, 0),
    }
}

impl State {
    fn tick(&mut self) -> u64 {
        self.now += 1;
        self.now
    }

    /// Takes the fault planned for this operation, if any.
    fn fault(&mut self, op: SimOp, path: &Path) -> Option<io::Error> {
        let path = path.to_string_lossy();
        let i = self.faults.iter().position(|f| {
            f.op == op && f.path_contains.as_deref().is_none_or(|p| path.contains(p))
        })?;
        if self.faults[i].skip > 0 {
            self.faults[i].skip -= 1;
            return None;
        }
        let f = if self.faults[i].persistent {
            self.faults[i].clone()
        } else {
            self.faults.remove(i)
        };
        self.counts.faults += 1;
        Some(io::Error::new(
            f.kind,
            format!("simulated {:?} failure", f.kind),
        ))
    }

    fn used_bytes(&self) -> u64 {
        let live: BTreeSet<u64> = self.live.values().copied().collect();
        live.iter()
            .filter_map(|i| self.inodes.get(i))
            .map(|n| n.data.len() as u64)
            .sum()
    }

    /// What the disk of one file holds after a power loss now.
    fn crashed_contents(&mut self, ino: u64) -> Vec<u8> {
        let Some(inode) = self.inodes.get(&ino) else {
            return Vec::new();
        };
        let mut data = inode.durable.clone();
        let pending = inode.pending.clone();
        let o = self.options;
        for change in &pending {
            let pieces: Vec<Change> = match (change, o.page_size) {
                (Change::Write { offset, bytes }, Some(page)) if page > 0 => {
                    let mut pieces = Vec::new();
                    let mut at = *offset;
                    let end = offset + bytes.len() as u64;
                    while at < end {
                        let next = ((at / page) + 1) * page;
                        let stop = next.min(end);
                        let from = (at - offset) as usize;
                        let to = (stop - offset) as usize;
                        pieces.push(Change::Write {
                            offset: at,
                            bytes: bytes[from..to].to_vec(),
                        });
                        at = stop;
                    }
                    pieces
                }
                _ => vec![change.clone()],
            };
            for piece in pieces {
                if self.rng.random_range(0..100u8) >= o.keep_percent {
                    continue;
                }
                match piece {
                    Change::Write { offset, mut bytes } => {
                        let roll = self.rng.random_range(0..100u8);
                        if roll < o.torn_percent {
                            let keep = self.rng.random_range(0..=bytes.len());
                            bytes.truncate(keep);
                        } else if roll < o.torn_percent.saturating_add(o.garbage_percent) {
                            self.rng.fill_bytes(&mut bytes);
                        }
                        apply(&mut data, &Change::Write { offset, bytes });
                    }
                    set_len => apply(&mut data, &set_len),
                }
            }
        }
        data
    }

    /// The state a power loss now would leave, as a new state.
    fn crashed(&mut self) -> State {
        let mut durable = self.durable.clone();
        if self.options.entry_keep_percent > 0 {
            let paths: BTreeSet<PathBuf> = self
                .live
                .keys()
                .chain(self.durable.keys())
                .cloned()
                .collect();
            for p in paths {
                let live = self.live.get(&p).copied();
                if live != self.durable.get(&p).copied()
                    && self.rng.random_range(0..100u8) < self.options.entry_keep_percent
                {
                    match live {
                        Some(ino) => durable.insert(p, ino),
                        None => durable.remove(&p),
                    };
                }
            }
        }
        let mut inodes = HashMap::new();
        let mut seen = BTreeSet::new();
        for &ino in durable.values() {
            if seen.insert(ino) {
                let data = self.crashed_contents(ino);
                inodes.insert(
                    ino,
                    Inode {
                        durable: data.clone(),
                        data,
                        pending: Vec::new(),
                    },
                );
            }
        }
        self.successor(inodes, durable.clone(), durable)
    }

    /// What a crash of the process alone leaves: everything written, as the OS holds it.
    fn process_crashed(&mut self) -> State {
        let mut inodes = HashMap::new();
        for &ino in self.live.values() {
            if let Some(inode) = self.inodes.get(&ino) {
                inodes.insert(
                    ino,
                    Inode {
                        data: inode.data.clone(),
                        durable: inode.durable.clone(),
                        pending: inode.pending.clone(),
                    },
                );
            }
        }
        let (live, durable) = (self.live.clone(), self.durable.clone());
        self.successor(inodes, live, durable)
    }

    /// The state after a crash: these files and names, the same options and clock, a
    /// new generation, no locks, faults, captures or counts.
    fn successor(
        &mut self,
        inodes: HashMap<u64, Inode>,
        live: BTreeMap<PathBuf, u64>,
        durable: BTreeMap<PathBuf, u64>,
    ) -> State {
        State {
            options: self.options,
            rng: SmallRng::seed_from_u64(self.rng.next_u64()),
            inodes,
            next_inode: self.next_inode,
            live,
            durable,
            dirs: self.dirs.clone(),
            locks: HashMap::new(),
            next_handle: self.next_handle,
            generation: self.generation + 1,
            now: self.now,
            faults: Vec::new(),
            capacity: None,
            capture: None,
            images: Vec::new(),
            counts: SimCounts::default(),
            syncs: Vec::new(),
        }
    }

    fn capture(&mut self, after_sync: bool) {
        let Some(n) = self.capture else { return };
        for _ in 0..n {
            let image = self.crashed();
            self.images.push(CrashImage {
                at: self.now,
                after_sync,
                fs: SimFs {
                    state: Arc::new(Mutex::new(image)),
                },
            });
        }
    }

    fn parent_exists(&self, path: &Path) -> bool {
        path.parent()
            .is_none_or(|p| p.as_os_str().is_empty() || self.dirs.contains(p))
    }
}

impl SimFs {
    /// An empty disk whose crashes are drawn from `seed`.
    pub fn new(seed: u64) -> SimFs {
        Self::with_options(seed, SimOptions::default())
    }

    /// An empty disk with the given behaviour.
    pub fn with_options(seed: u64, options: SimOptions) -> SimFs {
        let mut dirs = BTreeSet::new();
        dirs.insert(PathBuf::from("/"));
        SimFs {
            state: Arc::new(Mutex::new(State {
                options,
                rng: SmallRng::seed_from_u64(seed),
                inodes: HashMap::new(),
                next_inode: 1,
                live: BTreeMap::new(),
                durable: BTreeMap::new(),
                dirs,
                locks: HashMap::new(),
                next_handle: 1,
                generation: 0,
                now: 0,
                faults: Vec::new(),
                capacity: None,
                capture: None,
                images: Vec::new(),
                counts: SimCounts::default(),
                syncs: Vec::new(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Loses power now: open handles die, and files become what the disk kept.
    pub fn crash(&self) {
        let mut s = self.lock();
        let crashed = s.crashed();
        *s = crashed;
    }

    /// What a power loss now would leave, as a new file system; this one goes on.
    pub fn crash_image(&self) -> SimFs {
        let crashed = self.lock().crashed();
        SimFs {
            state: Arc::new(Mutex::new(crashed)),
        }
    }

    /// What a crash of this process alone (the machine stays up) would leave: every
    /// write, synced or not, as the OS holds it. This one goes on.
    pub fn process_crash_image(&self) -> SimFs {
        let crashed = self.lock().process_crashed();
        SimFs {
            state: Arc::new(Mutex::new(crashed)),
        }
    }

    /// Every `sync_data` that succeeded, in order.
    pub fn sync_log(&self) -> Vec<SyncRecord> {
        self.lock().syncs.clone()
    }

    /// From now on, take `per_point` crash images just before and just after every
    /// `sync_data` and `sync_dir` (0 stops).
    pub fn capture_crash_images(&self, per_point: usize) {
        self.lock().capture = (per_point > 0).then_some(per_point);
    }

    /// The crash images taken so far, in order; they are removed from this file system.
    pub fn take_crash_images(&self) -> Vec<CrashImage> {
        std::mem::take(&mut self.lock().images)
    }

    /// The clock: it advances by one with every operation.
    pub fn now(&self) -> u64 {
        self.lock().now
    }

    /// Operation counters since the file system was made or last crashed.
    pub fn counts(&self) -> SimCounts {
        self.lock().counts
    }

    /// Makes the operation of kind `op` after the next `skip` ones (on a path containing
    /// `path_contains`, when given) fail with `kind`. A failing write first writes a
    /// random part of its bytes; a failing `sync_data` drops the file's unsynced changes
    /// from what the disk owes (they stay readable).
    pub fn fail(&self, op: SimOp, skip: u64, kind: io::ErrorKind, path_contains: Option<&str>) {
        self.lock().faults.push(Fault {
            op,
            skip,
            kind,
            path_contains: path_contains.map(str::to_owned),
            persistent: false,
        });
    }

    /// Makes every operation of kind `op` (on a path containing `path_contains`, when
    /// given) fail with `kind` until [`SimFs::clear_faults`]: a disk that keeps failing.
    pub fn fail_persistently(&self, op: SimOp, kind: io::ErrorKind, path_contains: Option<&str>) {
        self.lock().faults.push(Fault {
            op,
            skip: 0,
            kind,
            path_contains: path_contains.map(str::to_owned),
            persistent: true,
        });
    }

    /// Removes every planned fault (those that have not fired, and persistent ones).
    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    /// Limits the bytes all files may hold together (`None`: unlimited). A write past it
    /// writes what fits and fails with `ENOSPC`.
    pub fn set_capacity(&self, bytes: Option<u64>) {
        self.lock().capacity = bytes;
    }

    /// The bytes all files hold together.
    pub fn used_bytes(&self) -> u64 {
        self.lock().used_bytes()
    }

    /// A file's contents as reads see them.
    pub fn read_file(&self, path: impl AsRef<Path>) -> Option<Vec<u8>> {
        let s = self.lock();
        let ino = s.live.get(path.as_ref())?;
        s.inodes.get(ino).map(|n| n.data.clone())
    }

    /// Creates or replaces a file with `bytes`, durable at once (for setting up a test).
    pub fn write_file(&self, path: impl AsRef<Path>, bytes: &[u8]) {
        let mut s = self.lock();
        let path = path.as_ref().to_owned();
        if let Some(parent) = path.parent() {
            for a in parent.ancestors() {
                s.dirs.insert(a.to_owned());
            }
        }
        let ino = s.next_inode;
        s.next_inode += 1;
        s.inodes.insert(
            ino,
            Inode {
                data: bytes.to_vec(),
                durable: bytes.to_vec(),
                pending: Vec::new(),
            },
        );
        s.live.insert(path.clone(), ino);
        s.durable.insert(path, ino);
    }

    /// The paths of every file, as reads see them.
    pub fn files(&self) -> Vec<PathBuf> {
        self.lock().live.keys().cloned().collect()
    }
}

/// An open file of a [`SimFs`].
#[derive(Debug)]
pub struct SimFile {
    fs: SimFs,
    ino: u64,
    handle: u64,
    generation: u64,
    path: PathBuf,
    writable: bool,
}

impl SimFile {
    fn state(&self) -> io::Result<MutexGuard<'_, State>> {
        let s = self.fs.lock();
        if s.generation != self.generation {
            return Err(dead());
        }
        Ok(s)
    }

    fn writable(&self) -> io::Result<()> {
        if self.writable {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "file opened read-only",
            ))
        }
    }
}

impl Drop for SimFile {
    fn drop(&mut self) {
        let mut s = self.fs.lock();
        if s.generation == self.generation && s.locks.get(&self.path) == Some(&self.handle) {
            s.locks.remove(&self.path);
        }
    }
}

impl VfsFile for SimFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let mut s = self.state()?;
        s.tick();
        if let Some(e) = s.fault(SimOp::Read, &self.path) {
            return Err(e);
        }
        let data = &s.inodes.get(&self.ino).ok_or_else(dead)?.data;
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(data.len());
        let n = buf.len().min(data.len() - start);
        buf[..n].copy_from_slice(&data[start..start + n]);
        Ok(n)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.writable()?;
        let mut s = self.state()?;
        s.tick();
        s.counts.writes += 1;
        let mut bytes = buf;
        let mut error = s.fault(SimOp::Write, &self.path);
        if let Some(e) = &error {
            let keep = s.rng.random_range(0..=bytes.len());
            bytes = &bytes[..keep];
            if e.kind() == io::ErrorKind::StorageFull {
                // the space ran out here: the rest of the disk is full too
                let used = s.used_bytes();
                s.capacity = Some(used + keep as u64);
            }
        }
        if let Some(cap) = s.capacity {
            let len = s.inodes[&self.ino].data.len() as u64;
            let grow = (offset + bytes.len() as u64).saturating_sub(len);
            let free = cap.saturating_sub(s.used_bytes());
            if grow > free {
                let fits = (len + free).saturating_sub(offset) as usize;
                bytes = &bytes[..fits.min(bytes.len())];
                error = Some(io::Error::new(
                    io::ErrorKind::StorageFull,
                    "simulated disk full (ENOSPC)",
                ));
            }
        }
        let change = Change::Write {
            offset,
            bytes: bytes.to_vec(),
        };
        let inode = s.inodes.get_mut(&self.ino).ok_or_else(dead)?;
        apply(&mut inode.data, &change);
        inode.pending.push(change);
        match error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut s = self.state()?;
        s.tick();
        s.counts.syncs += 1;
        s.capture(false);
        if let Some(e) = s.fault(SimOp::SyncData, &self.path) {
            // like Linux: the dirty pages are marked clean without reaching the disk
            s.inodes
                .get_mut(&self.ino)
                .ok_or_else(dead)?
                .pending
                .clear();
            return Err(e);
        }
        let started = s.now;
        let inode = s.inodes.get_mut(&self.ino).ok_or_else(dead)?;
        for change in std::mem::take(&mut inode.pending) {
            apply(&mut inode.durable, &change);
        }
        let finished = s.tick();
        s.syncs.push(SyncRecord {
            path: self.path.clone(),
            started,
            finished,
        });
        s.capture(true);
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        let s = self.state()?;
        Ok(s.inodes.get(&self.ino).ok_or_else(dead)?.data.len() as u64)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.writable()?;
        let mut s = self.state()?;
        s.tick();
        if let Some(e) = s.fault(SimOp::SetLen, &self.path) {
            return Err(e);
        }
        let current = s.inodes[&self.ino].data.len() as u64;
        if let Some(cap) = s.capacity
            && len > current
            && len - current > cap.saturating_sub(s.used_bytes())
        {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "simulated disk full (ENOSPC)",
            ));
        }
        let inode = s.inodes.get_mut(&self.ino).ok_or_else(dead)?;
        let change = Change::SetLen(len);
        apply(&mut inode.data, &change);
        inode.pending.push(change);
        Ok(())
    }

    fn try_lock(&self) -> io::Result<bool> {
        let mut s = self.state()?;
        match s.locks.get(&self.path) {
            Some(&h) if h != self.handle => Ok(false),
            _ => {
                s.locks.insert(self.path.clone(), self.handle);
                Ok(true)
            }
        }
    }
}

impl Vfs for SimFs {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut s = self.lock();
        s.tick();
        if s.live.contains_key(path) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "a file is in the way",
            ));
        }
        for a in path.ancestors() {
            if !a.as_os_str().is_empty() {
                s.dirs.insert(a.to_owned());
            }
        }
        Ok(())
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn VfsFile>> {
        let mut s = self.lock();
        s.tick();
        let existing = s.live.get(path).copied();
        let ino = match (mode, existing) {
            (OpenMode::Read | OpenMode::ReadWrite, None) => {
                return Err(io::Error::new(io::ErrorKind::NotFound, "no such file"));
            }
            (OpenMode::CreateNew, Some(_)) => {
                return Err(io::Error::new(io::ErrorKind::AlreadyExists, "file exists"));
            }
            (OpenMode::CreateTruncate, Some(ino)) => {
                let inode = s.inodes.get_mut(&ino).ok_or_else(dead)?;
                let change = Change::SetLen(0);
                apply(&mut inode.data, &change);
                inode.pending.push(change);
                ino
            }
            (_, Some(ino)) => ino,
            (_, None) => {
                if s.dirs.contains(path) {
                    return Err(io::Error::new(
                        io::ErrorKind::IsADirectory,
                        "is a directory",
                    ));
                }
                if !s.parent_exists(path) {
                    return Err(io::Error::new(io::ErrorKind::NotFound, "no such directory"));
                }
                if let Some(e) = s.fault(SimOp::Create, path) {
                    return Err(e);
                }
                let ino = s.next_inode;
                s.next_inode += 1;
                s.inodes.insert(ino, Inode::default());
                s.live.insert(path.to_owned(), ino);
                ino
            }
        };
        let handle = s.next_handle;
        s.next_handle += 1;
        Ok(Arc::new(SimFile {
            fs: self.clone(),
            ino,
            handle,
            generation: s.generation,
            path: path.to_owned(),
            writable: mode != OpenMode::Read,
        }))
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut s = self.lock();
        s.tick();
        if !s.dirs.contains(dir) {
            return Err(io::Error::new(io::ErrorKind::NotFound, "no such directory"));
        }
        let mut names: Vec<String> = s
            .live
            .keys()
            .chain(s.dirs.iter())
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut s = self.lock();
        s.tick();
        if let Some(e) = s.fault(SimOp::Rename, from) {
            return Err(e);
        }
        let ino = s
            .live
            .remove(from)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such file"))?;
        s.live.insert(to.to_owned(), ino);
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut s = self.lock();
        s.tick();
        s.live
            .remove(path)
            .map(|_| ())
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such file"))
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.lock();
        s.tick();
        s.counts.dir_syncs += 1;
        if !s.dirs.contains(dir) {
            return Err(io::Error::new(io::ErrorKind::NotFound, "no such directory"));
        }
        s.capture(false);
        if let Some(e) = s.fault(SimOp::SyncDir, dir) {
            return Err(e);
        }
        let in_dir = |p: &PathBuf| p.parent() == Some(dir);
        s.durable.retain(|p, _| !in_dir(p));
        let entries: Vec<(PathBuf, u64)> = s
            .live
            .iter()
            .filter(|(p, _)| in_dir(p))
            .map(|(p, &i)| (p.clone(), i))
            .collect();
        s.durable.extend(entries);
        s.tick();
        s.capture(true);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! The simulated disk keeps exactly what its documentation promises.
    use super::*;

    fn never_lose() -> SimOptions {
        SimOptions {
            keep_percent: 100,
            torn_percent: 0,
            garbage_percent: 0,
            ..SimOptions::default()
        }
    }

    fn always_lose() -> SimOptions {
        SimOptions {
            keep_percent: 0,
            ..SimOptions::default()
        }
    }

    #[test]
    fn synced_data_survives_and_unsynced_data_may_not() {
        let fs = SimFs::with_options(1, always_lose());
        fs.create_dir_all(Path::new("/d")).unwrap();
        let f = fs.open(Path::new("/d/a"), OpenMode::CreateNew).unwrap();
        fs.sync_dir(Path::new("/d")).unwrap();
        f.write_all_at(b"hello", 0).unwrap();
        f.sync_data().unwrap();
        f.write_all_at(b" world", 5).unwrap();
        assert_eq!(fs.read_file("/d/a").unwrap(), b"hello world");
        fs.crash();
        assert_eq!(fs.read_file("/d/a").unwrap(), b"hello");
        assert!(f.read_at(&mut [0u8; 4], 0).is_err(), "old handles die");
    }

    #[test]
    fn unsynced_creations_and_renames_are_undone() {
        let fs = SimFs::with_options(1, never_lose());
        fs.create_dir_all(Path::new("/d")).unwrap();
        let a = fs.open(Path::new("/d/a"), OpenMode::CreateNew).unwrap();
        a.write_all_at(b"a", 0).unwrap();
        a.sync_data().unwrap();
        fs.sync_dir(Path::new("/d")).unwrap();
        let b = fs.open(Path::new("/d/b"), OpenMode::CreateNew).unwrap();
        b.write_all_at(b"b", 0).unwrap();
        b.sync_data().unwrap();
        fs.rename(Path::new("/d/a"), Path::new("/d/c")).unwrap();
        fs.crash();
        assert_eq!(fs.files(), vec![PathBuf::from("/d/a")]);
        fs.rename(Path::new("/d/a"), Path::new("/d/c")).unwrap();
        fs.sync_dir(Path::new("/d")).unwrap();
        fs.remove_file(Path::new("/d/c")).unwrap();
        fs.crash();
        assert_eq!(fs.files(), vec![PathBuf::from("/d/c")]);
    }

    #[test]
    fn crashes_tear_and_garble_unsynced_writes() {
        let mut outcomes = BTreeSet::new();
        for seed in 0..200 {
            let fs = SimFs::new(seed);
            let f = fs.open(Path::new("/a"), OpenMode::CreateNew).unwrap();
            fs.sync_dir(Path::new("/")).unwrap();
            f.write_all_at(b"xxxxxxxx", 0).unwrap();
            let image = fs.crash_image();
            let got = image.read_file("/a").unwrap();
            outcomes.insert(match got.as_slice() {
                b"" => "lost",
                b"xxxxxxxx" => "kept",
                g if b"xxxxxxxx".starts_with(g) => "torn",
                _ => "garbage",
            });
        }
        assert_eq!(outcomes.len(), 4, "{outcomes:?}");
    }

    #[test]
    fn a_failed_sync_leaves_data_readable_but_not_durable() {
        let fs = SimFs::with_options(1, always_lose());
        let f = fs.open(Path::new("/a"), OpenMode::CreateNew).unwrap();
        fs.sync_dir(Path::new("/")).unwrap();
        f.write_all_at(b"one", 0).unwrap();
        fs.fail(SimOp::SyncData, 0, io::ErrorKind::Other, None);
        assert!(f.sync_data().is_err());
        f.write_all_at(b"two", 3).unwrap();
        f.sync_data().unwrap();
        assert_eq!(fs.read_file("/a").unwrap(), b"onetwo");
        fs.crash();
        assert_eq!(fs.read_file("/a").unwrap(), b"\0\0\0two");
    }

    #[test]
    fn a_full_disk_writes_what_fits() {
        let fs = SimFs::new(1);
        let f = fs.open(Path::new("/a"), OpenMode::CreateNew).unwrap();
        fs.set_capacity(Some(4));
        let e = f.write_all_at(b"abcdef", 0).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::StorageFull);
        assert_eq!(fs.read_file("/a").unwrap(), b"abcd");
        f.write_all_at(b"AB", 0).unwrap();
        fs.set_capacity(None);
        f.write_all_at(b"ef", 4).unwrap();
        assert_eq!(fs.read_file("/a").unwrap(), b"ABcdef");
    }

    #[test]
    fn locks_are_exclusive_until_dropped_or_crashed() {
        let fs = SimFs::new(1);
        let a = fs.open(Path::new("/LOCK"), OpenMode::CreateOrOpen).unwrap();
        let b = fs.open(Path::new("/LOCK"), OpenMode::CreateOrOpen).unwrap();
        assert!(a.try_lock().unwrap());
        assert!(!b.try_lock().unwrap());
        drop(a);
        assert!(b.try_lock().unwrap());
        fs.sync_dir(Path::new("/")).unwrap();
        fs.crash();
        let c = fs.open(Path::new("/LOCK"), OpenMode::CreateOrOpen).unwrap();
        assert!(c.try_lock().unwrap());
    }

    #[test]
    fn images_are_taken_around_every_sync() {
        let fs = SimFs::with_options(1, always_lose());
        fs.capture_crash_images(1);
        let f = fs.open(Path::new("/a"), OpenMode::CreateNew).unwrap();
        f.write_all_at(b"a", 0).unwrap();
        f.sync_data().unwrap();
        fs.sync_dir(Path::new("/")).unwrap();
        let images = fs.take_crash_images();
        let seen: Vec<(bool, Option<Vec<u8>>)> = images
            .iter()
            .map(|i| (i.after_sync, i.fs.read_file("/a")))
            .collect();
        assert_eq!(
            seen,
            vec![
                (false, None),
                (true, None),
                (false, None),
                (true, Some(b"a".to_vec()))
            ]
        );
        assert!(images.windows(2).all(|w| w[0].at < w[1].at));
    }
}
