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
