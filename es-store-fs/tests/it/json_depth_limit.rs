//! Guards the JSON depth limit of a file store: a store is not opened with a
//! `max_json_depth` deeper than it can read back, and JSON at the largest accepted depth
//! is stored and read back, also after reopening.

use es_core::{EventStore, ExpectedVersion, Limits, Metadata, NewEvent, RecordedEvent, StoreError};
use es_store_fs::{FileStore, FileStoreOptions, OpenError};

fn nested_arrays(depth: usize) -> Vec<u8> {
    format!("{}0{}", "[".repeat(depth), "]".repeat(depth)).into_bytes()
}

fn nested_value(depth: usize) -> serde_json::Value {
    let mut v = serde_json::Value::Null;
    for _ in 0..depth {
        v = serde_json::json!({ "a": v });
    }
    v
}

fn options(max_json_depth: usize) -> FileStoreOptions {
    FileStoreOptions {
        limits: Limits {
            max_json_depth,
            ..Limits::default()
        },
        ..FileStoreOptions::default()
    }
}

#[test]
fn a_store_with_a_depth_it_cannot_read_back_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let err = FileStore::open_with(dir.path(), options(200)).unwrap_err();
    let OpenError::InvalidOptions(message) = &err else {
        panic!("expected InvalidOptions, got {err:?}");
    };
    assert!(message.contains("max_json_depth"), "{message}");
    assert!(
        message.contains(&Limits::MAX_READABLE_JSON_DEPTH.to_string()),
        "{message}"
    );
    // Nothing was created: the refusal comes before the lock is taken.
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());

    let zero = FileStoreOptions {
        limits: Limits {
            max_batch_events: 0,
            ..Limits::default()
        },
        ..FileStoreOptions::default()
    };
    let err = FileStore::open_with(dir.path(), zero).unwrap_err();
    assert!(err.to_string().contains("max_batch_events"), "{err}");
}

#[test]
fn at_the_largest_depth_an_append_is_accepted_and_read_back() {
    let max = Limits::MAX_READABLE_JSON_DEPTH;
    let dir = tempfile::tempdir().unwrap();
    let payload = nested_arrays(max);
    let metadata = Metadata::new().with("deep", nested_value(max));
    {
        let store = FileStore::open_with(dir.path(), options(max)).unwrap();
        let event = NewEvent::new("Deep", 1, payload.clone()).with_metadata(metadata.clone());
        store
            .append("deep-1", ExpectedVersion::NoStream, vec![event])
            .unwrap();
        let too_deep = NewEvent::new("Deep", 1, nested_arrays(max + 1));
        let refused = store.append("deep-2", ExpectedVersion::NoStream, vec![too_deep]);
        assert!(
            matches!(&refused, Err(StoreError::InvalidEvent { stream_id, index: 0, .. }) if stream_id == "deep-2"),
            "{refused:?}"
        );
    }
    let store = FileStore::open_with(dir.path(), options(max)).unwrap();
    let read: Vec<RecordedEvent> = store
        .read_all(1)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].payload, payload);
    assert_eq!(read[0].metadata, metadata);
}
