//! Projections over the file store, whose head can move back: a crash in `Periodic` or
//! `None` takes back appends that were acknowledged but not durable, a repair cuts damage.
//! A checkpoint that cannot be read is reported as the checkpoint's failure, naming its
//! file, not as the read model's.

use crate::common::Count;
use es_core::projection::{
    CheckpointStore, MemoryCheckpoints, ProjectionError, ProjectionRunner, WithCheckpoint,
};
use es_core::{EventStore, ExpectedVersion, NewEvent};
use es_store_fs::{Durability, FileStore, FileStoreOptions};
use std::sync::Arc;

/// A checkpoint past the end of the log (the log lost events the read model has seen) is
/// an error naming both, not a run that silently skips the events that take those
/// positions again.
#[test]
fn a_checkpoint_past_the_end_of_the_log_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let options = FileStoreOptions {
        durability: Durability::None,
        ..FileStoreOptions::default()
    };
    let store = FileStore::open_with(dir.path(), options).unwrap();
    for n in 0..5 {
        let payload = format!(r#"{{"n":{n}}}"#).into_bytes();
        store
            .append(
                "s",
                ExpectedVersion::Any,
                vec![NewEvent::new("Noted", 1, payload)],
            )
            .unwrap();
    }
    let head = store.head_position().unwrap();
    // the checkpoint of a read model that saw events the log no longer holds
    let checkpoints = Arc::new(MemoryCheckpoints::default());
    checkpoints.save("count", head + 7).unwrap();
    let projection = WithCheckpoint::new(Count::default(), "count", checkpoints.clone());
    let mut runner = ProjectionRunner::new(&store, projection);
    let err = runner.run_to_head().unwrap_err();
    assert!(
        matches!(err, ProjectionError::CheckpointAhead { checkpoint, head: h }
            if checkpoint == head + 7 && h == head),
        "{err}"
    );
    // a rebuild starts over from the first event
    assert_eq!(runner.rebuild().unwrap(), head);
    assert_eq!(runner.projection().projection.0, 5);
}

/// After a crash that took back appends the read model had seen, new appends take their
/// positions and the log grows past the checkpoint again: the projection's checkpoint
/// records the event it was taken at, so the run stops with `HistoryReplaced` instead of
/// skipping the new events (it used to return the old checkpoint and hand none of them
/// over). Checkpoints saved in files, on a disk that keeps nothing unsynced.
#[test]
fn a_log_replaced_under_the_checkpoint_is_an_error_not_a_skip() {
    use es_store_fs::FileCheckpoints;
    use es_store_fs::vfs::sim::{SimFs, SimOptions};
    use std::time::Duration;

    let fs = SimFs::with_options(
        1,
        SimOptions {
            keep_percent: 0,
            ..SimOptions::default()
        },
    );
    let options = || FileStoreOptions {
        vfs: Arc::new(fs.clone()),
        durability: Durability::Periodic(Duration::from_secs(60)),
        ..FileStoreOptions::default()
    };
    let append = |store: &FileStore, kind: &str| {
        store
            .append(
                "s-1",
                ExpectedVersion::Any,
                vec![NewEvent::new(kind, 1, b"{}".to_vec())],
            )
            .unwrap();
    };
    let store = FileStore::open_with("/db", options()).unwrap();
    for _ in 0..3 {
        append(&store, "Lost");
    }
    let checkpoints = FileCheckpoints::open_with("/cp", Arc::new(fs.clone())).unwrap();
    let mut runner = ProjectionRunner::new(
        &store,
        WithCheckpoint::new(Count::default(), "count", &checkpoints),
    );
    assert_eq!(runner.run_to_head().unwrap(), 3);
    drop(runner);
    fs.crash();
    drop(store);

    let store = FileStore::open_with("/db", options()).unwrap();
    assert_eq!(
        store.head_position().unwrap(),
        0,
        "the crash kept unsynced appends"
    );
    for _ in 0..4 {
        append(&store, "New");
    }
    let checkpoints = FileCheckpoints::open_with("/cp", Arc::new(fs.clone())).unwrap();
    let mut runner = ProjectionRunner::new(
        &store,
        WithCheckpoint::new(Count::default(), "count", &checkpoints),
    );
    let err = runner.run_to_head().unwrap_err();
    assert!(
        matches!(err, ProjectionError::HistoryReplaced { checkpoint: 3, .. }),
        "{err}"
    );
    assert_eq!(runner.projection().projection.0, 0);
    // a rebuild takes the new history
    assert_eq!(runner.rebuild().unwrap(), 4);
    assert_eq!(runner.projection().projection.0, 4);
    // and a later run from its own checkpoint goes on as usual
    append(&store, "New");
    let mut runner = ProjectionRunner::new(
        &store,
        WithCheckpoint::new(Count::default(), "count", &checkpoints),
    );
    assert_eq!(runner.run_to_head().unwrap(), 5);
    assert_eq!(runner.projection().projection.0, 1);
}

/// The event at a marked checkpoint is checked before a run reads on; when that event
/// cannot be read (damage in a sealed segment), the run is not stopped by it: it reads
/// from the next event, as it did before checkpoints recorded events, and the damage is
/// left for the reads that need it to report.
#[test]
fn a_damaged_event_at_the_checkpoint_does_not_stop_the_run() {
    use es_store_fs::FileCheckpoints;

    let dir = tempfile::tempdir().unwrap();
    let options = || FileStoreOptions {
        segment_size: 4096,
        ..FileStoreOptions::default()
    };
    let store = FileStore::open_with(dir.path().join("events"), options()).unwrap();
    for n in 0..120 {
        let payload = format!(r#"{{"n":{n}}}"#).into_bytes();
        store
            .append(
                &format!("s-{}", n % 3),
                ExpectedVersion::Any,
                vec![NewEvent::new("Noted", 1, payload)],
            )
            .unwrap();
    }
    let checkpoints = FileCheckpoints::open(dir.path().join("checkpoints")).unwrap();
    let mut runner = ProjectionRunner::new(
        &store,
        WithCheckpoint::new(Count::default(), "count", &checkpoints),
    );
    assert_eq!(runner.run_until_position(10).unwrap(), 10);
    drop(runner);
    store.close().unwrap();

    // damage the tenth frame of the first (sealed) segment: the event at the checkpoint
    let segment = dir.path().join("events").join(format!("{:020}.seg", 0));
    let mut bytes = std::fs::read(&segment).unwrap();
    let starts = crate::common::frame_starts(&bytes);
    assert!(starts.len() > 11, "{} frames in segment 0", starts.len());
    bytes[starts[9] + 20] ^= 0x40;
    std::fs::write(&segment, &bytes).unwrap();

    let store = FileStore::open_with(dir.path().join("events"), options()).unwrap();
    let mut runner = ProjectionRunner::new(
        &store,
        WithCheckpoint::new(Count::default(), "count", &checkpoints),
    );
    assert_eq!(runner.run_to_head().unwrap(), 120);
    assert_eq!(runner.projection().projection.0, 110);
}

#[test]
fn a_checkpoint_that_cannot_be_read_is_reported_as_such_naming_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path().join("store")).unwrap();
    let e = NewEvent::new("Noted", 1, br#"{"n":1}"#.to_vec());
    store.append("s", ExpectedVersion::Any, vec![e]).unwrap();
    let checkpoints = es_store_fs::FileCheckpoints::open(dir.path().join("checkpoints")).unwrap();
    // a directory where the checkpoint file goes
    let path = dir.path().join("checkpoints").join("count.checkpoint");
    std::fs::create_dir(&path).unwrap();
    std::fs::write(path.join("keep"), b"x").unwrap();
    let projection = WithCheckpoint::new(Count::default(), "count", checkpoints);
    let err = ProjectionRunner::new(&store, projection)
        .run_to_head()
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("loading the checkpoint of projection `count`")
            && text.contains(&path.display().to_string()),
        "{text}"
    );
    let ProjectionError::ReadModel { source, .. } = &err else {
        panic!("{err:?}")
    };
    assert!(source.is::<es_core::CheckpointFailed>(), "{source:?}");
}
