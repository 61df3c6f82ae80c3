//! The store keeps a bounded set of files open: reads of a stream that spans many sealed
//! segments, through an iterator kept between calls or through a visit, hold no more
//! sealed segments and sealed indexes open than that set allows.

use es_core::{EventStore, ExpectedVersion, NewEvent};
use es_store_fs::vfs::sim::SimFs;
use es_store_fs::vfs::{DirLock, OpenMode, Vfs, VfsFile};
use es_store_fs::{Durability, FileStore, FileStoreOptions};
use std::io;
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// At most this many sealed segments, and as many sealed indexes, are open at once (the
/// store's documented bound), plus the handful a read or a write has in hand.
const BOUND: usize = 32 + 2;

/// Handles alive, by kind of file.
#[derive(Debug, Default)]
struct Live {
    segments: AtomicUsize,
    indexes: AtomicUsize,
}

/// A simulated disk that counts the segment and sealed-index handles alive.
#[derive(Debug)]
struct CountingFs {
    inner: SimFs,
    live: Arc<Live>,
}

#[derive(Debug)]
struct Counted {
    inner: Arc<dyn VfsFile>,
    live: Arc<Live>,
    index: bool,
}

impl Counted {
    fn counter(&self) -> &AtomicUsize {
        if self.index {
            &self.live.indexes
        } else {
            &self.live.segments
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.counter().fetch_sub(1, Ordering::SeqCst);
    }
}

impl Vfs for CountingFs {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner.create_dir_all(path)
    }
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn VfsFile>> {
        let inner = self.inner.open(path, mode)?;
        let index = match path.extension().and_then(|e| e.to_str()) {
            Some("idx") => true,
            Some("seg") => false,
            _ => return Ok(inner),
        };
        let file = Counted {
            inner,
            live: Arc::clone(&self.live),
            index,
        };
        file.counter().fetch_add(1, Ordering::SeqCst);
        Ok(Arc::new(file))
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

impl VfsFile for Counted {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.inner.read_at(buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.inner.write_all_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
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

fn event(n: u64) -> NewEvent {
    let payload = format!(r#"{{"n":{n},"note":"{}"}}"#, "x".repeat(100));
    NewEvent::new("Noted", 1, payload.into_bytes())
}

#[test]
fn reads_of_a_stream_across_many_sealed_segments_keep_the_open_files_bounded() {
    let live = Arc::new(Live::default());
    let vfs = Arc::new(CountingFs {
        inner: SimFs::new(11),
        live: Arc::clone(&live),
    });
    let options = FileStoreOptions {
        vfs,
        segment_size: 4096,
        durability: Durability::None,
        preallocate: 0,
        ..FileStoreOptions::default()
    };
    let store = FileStore::open_with("/db", options).unwrap();
    // one event of the stream per segment or so, among others
    let rounds = 120;
    for round in 0..rounds {
        store
            .append("s", ExpectedVersion::Any, vec![event(round)])
            .unwrap();
        for k in 0..30 {
            store
                .append(
                    &format!("other-{}", k % 7),
                    ExpectedVersion::Any,
                    vec![event(k)],
                )
                .unwrap();
        }
    }
    // every complete segment sealed, its index written
    store.checkpoint().unwrap();
    let (segments, indexes) = (
        live.segments.load(Ordering::SeqCst),
        live.indexes.load(Ordering::SeqCst),
    );
    assert!(
        segments <= BOUND && indexes <= BOUND,
        "{segments} segments and {indexes} indexes open after writing"
    );

    // an iterator, between calls
    let mut read = store.read_stream("s", 1).unwrap();
    assert_eq!(read.next().unwrap().unwrap().stream_version, 1);
    let (segments, indexes) = (
        live.segments.load(Ordering::SeqCst),
        live.indexes.load(Ordering::SeqCst),
    );
    assert!(
        segments <= BOUND && indexes <= BOUND,
        "{segments} segments and {indexes} indexes open while an iterator is held"
    );
    let rest: Vec<u64> = read.map(|e| e.unwrap().stream_version).collect();
    assert_eq!(rest, (2..=rounds).collect::<Vec<_>>());

    // a visit, from inside it
    let mut most = (0, 0);
    let mut versions = Vec::new();
    store
        .visit_stream("s", 1, &mut |e| {
            versions.push(e.stream_version);
            most.0 = most.0.max(live.segments.load(Ordering::SeqCst));
            most.1 = most.1.max(live.indexes.load(Ordering::SeqCst));
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(versions, (1..=rounds).collect::<Vec<_>>());
    assert!(
        most.0 <= BOUND && most.1 <= BOUND,
        "{} segments and {} indexes open during a visit",
        most.0,
        most.1
    );
}
