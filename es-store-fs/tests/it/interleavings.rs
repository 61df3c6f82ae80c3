//! Interleavings of the writer with other threads, made deterministic by a disk that
//! holds a segment write or sync until the test lets it go: a retried append while the
//! original's group is being written, and a group written while a periodic sync runs.

use es_core::{EventStore, ExpectedVersion, NewEvent, StoreError};
use es_store_fs::vfs::sim::SimFs;
use es_store_fs::vfs::{DirLock, OpenMode, Vfs, VfsFile};
use es_store_fs::{Durability, FileStore, FileStoreOptions};
use std::io;
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// What the gate does to the next segment write and sync.
#[derive(Debug, Default)]
struct GateState {
    /// Hold the next segment write until `release`.
    hold_write: bool,
    /// Segment writes held so far.
    writes_held: usize,
    release: bool,
    /// The held write then fails with this.
    fail_write: Option<io::ErrorKind>,
    /// Hold the next segment sync until `release_sync`.
    hold_sync: bool,
    syncs_held: usize,
    release_sync: bool,
    /// The next segment sync (held or not) fails with this.
    fail_sync: Option<io::ErrorKind>,
    syncs_failed: usize,
    /// Hold the next write of the index file until `release_index`.
    hold_index_write: bool,
    index_writes_held: usize,
    release_index: bool,
}

#[derive(Debug, Default)]
struct Gate {
    state: Mutex<GateState>,
    moved: Condvar,
}

impl Gate {
    fn set(&self, f: impl FnOnce(&mut GateState)) {
        f(&mut self.state.lock().unwrap());
        self.moved.notify_all();
    }

    /// Waits until `done` holds, at most 10 s.
    fn wait_until(&self, what: &str, done: impl Fn(&GateState) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut s = self.state.lock().unwrap();
        while !done(&s) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "waited 10 s for {what}");
            s = self.moved.wait_timeout(s, left).unwrap().0;
        }
    }
}

/// A simulated disk whose segment files, and the index file's writes, pass through the
/// gate.
#[derive(Debug)]
struct GateFs {
    inner: SimFs,
    gate: Arc<Gate>,
}

#[derive(Debug)]
struct GateFile {
    inner: Arc<dyn VfsFile>,
    gate: Arc<Gate>,
    /// The index file's temporary file, not a segment.
    index: bool,
}

impl Vfs for GateFs {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner.create_dir_all(path)
    }
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn VfsFile>> {
        let inner = self.inner.open(path, mode)?;
        let index = path.file_name().is_some_and(|n| n == "index.dat.tmp");
        if index || path.extension().is_some_and(|e| e == "seg") {
            Ok(Arc::new(GateFile {
                inner,
                gate: Arc::clone(&self.gate),
                index,
            }))
        } else {
            Ok(inner)
        }
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.inner.list(dir)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_file(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.inner.sync_dir(dir)
    }
    fn lock_dir(&self, dir: &Path) -> io::Result<Option<DirLock>> {
        self.inner.lock_dir(dir)
    }
}

impl VfsFile for GateFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.inner.read_at(buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut s = self.gate.state.lock().unwrap();
        if self.index {
            if s.hold_index_write {
                s.hold_index_write = false;
                s.index_writes_held += 1;
                self.gate.moved.notify_all();
                while !s.release_index {
                    s = self.gate.moved.wait(s).unwrap();
                }
                s.release_index = false;
            }
            drop(s);
            return self.inner.write_all_at(buf, offset);
        }
        if s.hold_write {
            s.hold_write = false;
            s.writes_held += 1;
            self.gate.moved.notify_all();
            while !s.release {
                s = self.gate.moved.wait(s).unwrap();
            }
            s.release = false;
            if let Some(kind) = s.fail_write.take() {
                return Err(kind.into());
            }
        }
        drop(s);
        self.inner.write_all_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        if self.index {
            return self.inner.sync_data();
        }
        let mut s = self.gate.state.lock().unwrap();
        if s.hold_sync {
            s.hold_sync = false;
            s.syncs_held += 1;
            self.gate.moved.notify_all();
            while !s.release_sync {
                s = self.gate.moved.wait(s).unwrap();
            }
            s.release_sync = false;
        }
        if let Some(kind) = s.fail_sync.take() {
            s.syncs_failed += 1;
            self.gate.moved.notify_all();
            return Err(kind.into());
        }
        drop(s);
        self.inner.sync_data()
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
    fn try_lock(&self) -> io::Result<bool> {
        self.inner.try_lock()
    }
}

fn gated_store(durability: Durability) -> (Arc<FileStore>, Arc<Gate>) {
    let gate = Arc::new(Gate::default());
    let vfs = Arc::new(GateFs {
        inner: SimFs::new(7),
        gate: Arc::clone(&gate),
    });
    let options = FileStoreOptions {
        vfs,
        durability,
        preallocate: 0,
        ..FileStoreOptions::default()
    };
    (
        Arc::new(FileStore::open_with("/db", options).unwrap()),
        gate,
    )
}

fn event(n: u64) -> NewEvent {
    NewEvent::new("Noted", 1, format!(r#"{{"n":{n}}}"#).into_bytes())
}

#[test]
fn a_retry_naming_ids_still_being_written_waits_for_their_outcome() {
    // A's group is being written when B sends an append with A's event id to another
    // stream. Refused at once ("in another stream"), B would be told of an id that A's
    // failing write is about to forget. B waits, and once A's group fails on a full disk
    // its own append goes through.
    let (store, gate) = gated_store(Durability::Always);
    store
        .append("warm", ExpectedVersion::Any, vec![event(0)])
        .unwrap();
    let shared = event(1);
    gate.set(|s| {
        s.hold_write = true;
        s.fail_write = Some(io::ErrorKind::StorageFull);
    });
    let a = {
        let (store, e) = (Arc::clone(&store), shared.clone());
        std::thread::spawn(move || store.append("x", ExpectedVersion::NoStream, vec![e]))
    };
    gate.wait_until("A's write", |s| s.writes_held == 1);
    let (tx, rx) = mpsc::channel();
    let b_thread = {
        let (store, e) = (Arc::clone(&store), shared.clone());
        std::thread::spawn(move || {
            let _ = tx.send(store.append("y", ExpectedVersion::NoStream, vec![e]));
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    let early = rx.try_recv();
    // released before any assertion: a held write would keep the store from closing
    gate.set(|s| s.release = true);
    assert!(
        early.is_err(),
        "B decided while A's group was still being written: {early:?}"
    );
    let a = a.join().unwrap();
    assert!(
        matches!(&a, Err(StoreError::Io(e)) if e.kind() == io::ErrorKind::StorageFull),
        "{a:?}"
    );
    let b = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    b.unwrap_or_else(|e| panic!("B: {e}"));
    b_thread.join().unwrap();
    assert_eq!(store.stream_version("x").unwrap(), 0);
    let y: Vec<_> = store
        .read_stream("y", 1)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(y.len(), 1);
    assert_eq!(y[0].event_id, shared.event_id);
}

/// Runs `during` on a store in `Periodic` durability while its periodic sync is held,
/// that sync set to fail: `Err` with what `during` returned if it returned before the
/// sync was released, `Ok` with what it returned after.
fn beside_a_failing_periodic_sync<T: Send + 'static>(
    during: impl FnOnce(&FileStore) -> T + Send + 'static,
) -> (Arc<FileStore>, Result<T, T>) {
    let (store, gate) = gated_store(Durability::Periodic(Duration::from_millis(20)));
    gate.set(|s| {
        s.hold_sync = true;
        s.fail_sync = Some(io::ErrorKind::Other);
    });
    store
        .append("warm", ExpectedVersion::Any, vec![event(0)])
        .unwrap();
    gate.wait_until("the periodic sync", |s| s.syncs_held == 1);
    let (tx, rx) = mpsc::channel();
    let thread = {
        let store = Arc::clone(&store);
        std::thread::spawn(move || {
            let _ = tx.send(during(&store));
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    let early = rx.try_recv();
    // released before any assertion: a held sync would keep the store from closing
    gate.set(|s| s.release_sync = true);
    let outcome = match early {
        Ok(early) => Err(early),
        Err(_) => Ok(rx.recv_timeout(Duration::from_secs(10)).unwrap()),
    };
    thread.join().unwrap();
    (store, outcome)
}

#[test]
fn a_group_written_while_a_periodic_sync_runs_waits_for_its_outcome() {
    // After a failed fdatasync the kernel may drop pages and report the next sync of the
    // file as a success: nothing may be acknowledged after the failure, so a group
    // written while the periodic sync runs waits for its outcome, and fails with it.
    let (store, outcome) = beside_a_failing_periodic_sync(|store| {
        store.append("x", ExpectedVersion::NoStream, vec![event(1)])
    });
    let result = outcome.unwrap_or_else(|early| {
        panic!("acknowledged while the periodic sync was still running: {early:?}")
    });
    assert!(
        result.is_err(),
        "acknowledged after the sync failed: {result:?}"
    );
    assert_eq!(store.stream_version("x").unwrap(), 0);
    let later = store.append("z", ExpectedVersion::Any, vec![event(2)]);
    assert!(matches!(later, Err(StoreError::ReadOnly(_))), "{later:?}");
}

#[test]
fn a_checkpoint_waits_for_the_periodic_sync_and_reports_its_failure() {
    // Two syncs of one file at once: the kernel tells only one of them of a writeback
    // error. A checkpoint that synced beside a failing periodic sync could vouch for
    // pages the kernel dropped, and a periodic sync that succeeded beside a failing one
    // could publish them as durable. The checkpoint waits for the periodic sync, and
    // reports its failure.
    let (_store, outcome) = beside_a_failing_periodic_sync(|store| store.checkpoint());
    let result = outcome.unwrap_or_else(|early| {
        panic!("the checkpoint synced beside the periodic sync: {early:?}")
    });
    assert!(
        matches!(result, Err(StoreError::ReadOnly(_))),
        "the periodic sync's failure is the checkpoint's: {result:?}"
    );
}

/// A stream read that has found the stream's frames in sealed segments and in memory
/// still reads what is appended to the stream while it goes, and goes on reading the
/// frames it found in memory once they are sealed.
#[test]
fn a_stream_read_across_sealed_segments_reads_on_through_appends_and_seals() {
    let dir = tempfile::tempdir().unwrap();
    let options = FileStoreOptions {
        segment_size: 4096,
        durability: Durability::None,
        ..FileStoreOptions::default()
    };
    let store = FileStore::open_with(dir.path(), options).unwrap();
    let append = |stream: &str, n: u64| {
        store
            .append(stream, ExpectedVersion::Any, vec![event(n)])
            .unwrap();
    };
    // the stream's events spread over several segments, the last ones still recent
    for n in 0..120 {
        append("s", n);
        append(&format!("other-{}", n % 5), n);
    }
    let mut read = store.read_stream("s", 1).unwrap();
    let first = read.next().unwrap().unwrap();
    assert_eq!(first.stream_version, 1);
    // appends to the stream, and enough others to seal the segments it was in
    for n in 120..130 {
        append("s", n);
    }
    for n in 0..200 {
        append(&format!("other-{}", n % 5), n);
    }
    let versions: Vec<u64> = read.map(|e| e.unwrap().stream_version).collect();
    assert_eq!(versions, (2..=130).collect::<Vec<_>>());
    // and a read from the middle, begun after the seals, finds the same events
    let versions: Vec<u64> = store
        .read_stream("s", 100)
        .unwrap()
        .map(|e| e.unwrap().stream_version)
        .collect();
    assert_eq!(versions, (100..=130).collect::<Vec<_>>());
}

/// A checkpoint writes the index file without the writer's lock: appends go on while
/// that write (a write, a sync, a rename and a directory sync) is under way.
#[test]
fn appends_go_on_while_a_checkpoint_writes_the_index_file() {
    let (store, gate) = gated_store(Durability::Always);
    for n in 0..5 {
        store
            .append("a", ExpectedVersion::Any, vec![event(n)])
            .unwrap();
    }
    gate.set(|s| s.hold_index_write = true);
    let checkpoint = {
        let store = Arc::clone(&store);
        std::thread::spawn(move || store.checkpoint())
    };
    gate.wait_until("the checkpoint's index write", |s| s.index_writes_held == 1);
    let (done, appended) = mpsc::channel();
    let appender = {
        let store = Arc::clone(&store);
        std::thread::spawn(move || {
            let result = store.append("b", ExpectedVersion::NoStream, vec![event(5)]);
            done.send(result.is_ok()).unwrap();
        })
    };
    let during = appended.recv_timeout(Duration::from_secs(5));
    // let everything go before asserting, so that a failure does not leave threads held
    gate.set(|s| s.release_index = true);
    appender.join().unwrap();
    checkpoint.join().unwrap().unwrap();
    assert_eq!(
        during,
        Ok(true),
        "the append waited for the checkpoint's index write"
    );
    assert_eq!(store.stream_version("b").unwrap(), 1);
}
