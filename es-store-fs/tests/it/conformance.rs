//! The file store passes the whole store conformance suite, with fsync on every append.
use es_store_fs::FileStore;

fn make() -> (FileStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (FileStore::open(dir.path()).unwrap(), dir)
}

es_core::store_conformance_tests!(make);

mod small_segments {
    //! The same suite with tiny segments, so that appends roll over segment files often.
    use es_store_fs::{FileStore, FileStoreOptions};

    fn make() -> (FileStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let options = FileStoreOptions {
            segment_size: 4096,
            ..FileStoreOptions::default()
        };
        (FileStore::open_with(dir.path(), options).unwrap(), dir)
    }

    es_core::store_conformance_tests!(make);
}

/// The file store tells where a stream ends from its index while the stream's last frame
/// is in the active segment, also after a reopen, and says nothing (rather than a wrong
/// end) once that frame is sealed.
#[test]
fn stream_ends_come_from_the_index_while_recent() {
    use es_core::{EventStore, ExpectedVersion, NewEvent, StreamEnd};
    use es_store_fs::FileStoreOptions;
    let dir = tempfile::tempdir().unwrap();
    let options = || FileStoreOptions {
        segment_size: 4096,
        ..FileStoreOptions::default()
    };
    let event = |n: u64| NewEvent::new("Added", 1, format!(r#"{{"n":{n}}}"#).into_bytes());
    let store = FileStore::open_with(dir.path(), options()).unwrap();
    store
        .append("old", ExpectedVersion::NoStream, vec![event(0), event(1)])
        .unwrap();
    assert_eq!(
        store.stream_end("old").unwrap(),
        Some(StreamEnd {
            version: 2,
            position: 2
        })
    );
    // enough frames of another stream to seal the segment holding "old"
    for n in 0..100 {
        store
            .append("busy", ExpectedVersion::Any, vec![event(n)])
            .unwrap();
    }
    let busy = StreamEnd {
        version: 100,
        position: 102,
    };
    assert_eq!(store.stream_end("busy").unwrap(), Some(busy));
    assert_eq!(store.stream_end("old").unwrap(), None, "sealed: not told");
    assert_eq!(store.stream_version("old").unwrap(), 2);
    drop(store);
    let store = FileStore::open_with(dir.path(), options()).unwrap();
    assert_eq!(store.stream_end("busy").unwrap(), Some(busy));
    assert_eq!(store.stream_end("old").unwrap(), None);
    assert!(
        store.stream_end("bad\0id").is_err(),
        "an invalid id is refused"
    );
}
