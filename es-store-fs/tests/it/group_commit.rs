//! Group commit on a slow disk: appenders that come back faster than a sync are carried
//! together, not in alternating halves.

use crate::common::SegmentSyncHook;
use es_core::{EventStore, ExpectedVersion, NewEvent};
use es_store_fs::{FileStore, FileStoreOptions};
use std::sync::Arc;
use std::time::Duration;

/// Eight writers on a disk whose syncs take 20 ms: each comes back long before the next
/// sync could end, so nearly every sync carries all eight. Alternating halves (four per
/// sync) would take twice the syncs.
#[test]
fn writers_faster_than_a_sync_share_each_sync() {
    let dir = tempfile::tempdir().unwrap();
    let options = FileStoreOptions {
        vfs: Arc::new(SegmentSyncHook {
            before_sync: Arc::new(|| std::thread::sleep(Duration::from_millis(20))),
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

/// A stale append on a stream that other writers keep busy is refused with a conflict,
/// not held. While the stream has writes in flight the append waits for their outcome
/// (the version it conflicts with is not visible yet), but only for a few flushes: here
/// every sync has another append of the stream queued behind it, so the stream is never
/// idle.
#[test]
fn a_stale_append_on_a_stream_kept_busy_is_refused_not_held() {
    use es_core::StoreError;
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Instant;

    let event = || vec![NewEvent::new("Added", 1, br#"{"n":1}"#.to_vec())];
    let store: Arc<OnceLock<Arc<FileStore>>> = Arc::new(OnceLock::new());
    let done = Arc::new(AtomicBool::new(false));
    let busy_until = Instant::now() + Duration::from_secs(10);
    let before_sync = {
        let (store, done) = (store.clone(), done.clone());
        Arc::new(move || {
            let Some(store) = store.get() else { return };
            if done.load(Ordering::Relaxed) || Instant::now() > busy_until {
                return;
            }
            // another append of the stream, queued while this sync runs
            let store = store.clone();
            std::thread::spawn(move || {
                let _ = store.append("hot", ExpectedVersion::Any, event());
            });
            std::thread::sleep(Duration::from_millis(10));
        })
    };
    let dir = tempfile::tempdir().unwrap();
    let options = FileStoreOptions {
        vfs: Arc::new(SegmentSyncHook { before_sync }),
        ..FileStoreOptions::default()
    };
    let opened = Arc::new(FileStore::open_with(dir.path(), options).unwrap());
    opened.append("hot", ExpectedVersion::Any, event()).unwrap();
    let _ = store.set(opened.clone());
    opened.append("hot", ExpectedVersion::Any, event()).unwrap();

    let start = Instant::now();
    let stale = opened.append("hot", ExpectedVersion::Exact(1), event());
    let took = start.elapsed();
    done.store(true, Ordering::Relaxed);
    assert!(
        matches!(stale, Err(StoreError::Conflict { ref stream_id, .. }) if stream_id == "hot"),
        "{stale:?}"
    );
    assert!(
        took < Duration::from_secs(5),
        "the stale append was held {took:?} while the stream stayed busy"
    );
}
