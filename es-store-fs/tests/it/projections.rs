//! Projections over the file store, whose head can move back: a crash in `Periodic` or
//! `None` takes back appends that were acknowledged but not durable, a repair cuts damage.

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
