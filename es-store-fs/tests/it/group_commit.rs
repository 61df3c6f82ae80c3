//! Group commit on a slow disk: appenders that come back faster than a sync are carried
//! together, not in alternating halves.

use es_core::{EventStore, ExpectedVersion, NewEvent};
use es_store_fs::vfs::{OpenMode, StdFs, Vfs, VfsFile};
use es_store_fs::{FileStore, FileStoreOptions};
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The real file system, with every sync of a segment file taking `delay` longer.
#[derive(Debug)]
struct SlowSyncFs {
    delay: Duration,
}

#[derive(Debug)]
struct SlowFile {
    inner: Arc<dyn VfsFile>,
    delay: Option<Duration>,
}

impl VfsFile for SlowFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.inner.read_at(buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.inner.write_all_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        if let Some(delay) = self.delay {
            std::thread::sleep(delay);
        }
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

impl Vfs for SlowSyncFs {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        StdFs.create_dir_all(path)
    }
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn VfsFile>> {
        let segment = path.extension().is_some_and(|e| e == "seg");
        Ok(Arc::new(SlowFile {
            inner: StdFs.open(path, mode)?,
            delay: segment.then_some(self.delay),
        }))
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        StdFs.list(dir)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        StdFs.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        StdFs.remove_file(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        StdFs.sync_dir(dir)
    }
}

/// Eight writers on a disk whose syncs take 20 ms: each comes back long before the next
/// sync could end, so nearly every sync carries all eight. Alternating halves (four per
/// sync) would take twice the syncs.
#[test]
fn writers_faster_than_a_sync_share_each_sync() {
    let dir = tempfile::tempdir().unwrap();
    let options = FileStoreOptions {
        vfs: Arc::new(SlowSyncFs {
            delay: Duration::from_millis(20),
        }),
        ..FileStoreOptions::default()
    };
    let store = FileStore::open_with(dir.path(), options).unwrap();
    let (writers, appends) = (8u64, 10u64);
    std::thread::scope(|scope| {
        for w in 0..writers {
            let store = &store;
            scope.spawn(move || {
                for n in 0..appends {
                    let payload = format!(r#"{{"n":{n}}}"#).into_bytes();
                    store
                        .append(
                            &format!("writer-{w}"),
                            ExpectedVersion::Exact(n),
                            vec![NewEvent::new("Added", 1, payload)],
                        )
                        .unwrap();
                }
            });
        }
    });
    let stats = store.write_stats();
    assert_eq!(stats.appends, writers * appends);
    // all together: 10 syncs and one or two to gather the writers at the start; halves:
    // 20
    assert!(
        stats.flushes <= 15,
        "{} appends took {} syncs",
        stats.appends,
        stats.flushes
    );
    assert_eq!(store.head_position().unwrap(), writers * appends);
}
