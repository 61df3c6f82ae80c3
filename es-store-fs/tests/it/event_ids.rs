//! Guards `version_of_event` on the file store beyond the conformance suite: ids are
//! found after a reopen, before any append has built the id map, and through a read-only
//! open, which keeps no id map.

use es_core::uuid::Uuid;
use es_core::{EventStore, ExpectedVersion, NewEvent};
use es_store_fs::FileStore;

fn event(n: u64) -> NewEvent {
    NewEvent::new("Added", 1, format!(r#"{{"n":{n}}}"#).into_bytes())
}

#[test]
fn event_ids_are_found_after_a_reopen_and_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let batch = vec![event(1), event(2)];
    let ids: Vec<Uuid> = batch.iter().map(|e| e.event_id).collect();
    let store = FileStore::open(dir.path()).unwrap();
    store
        .append("other-1", ExpectedVersion::NoStream, vec![event(0)])
        .unwrap();
    store
        .append("ids-1", ExpectedVersion::NoStream, batch)
        .unwrap();
    store.close().unwrap();

    let reopened = FileStore::open(dir.path()).unwrap();
    assert_eq!(reopened.version_of_event("ids-1", ids[1]).unwrap(), Some(2));
    assert_eq!(reopened.version_of_event("other-1", ids[1]).unwrap(), None);
    let reader = FileStore::open_read_only(dir.path()).unwrap();
    assert_eq!(reader.version_of_event("ids-1", ids[0]).unwrap(), Some(1));
    assert_eq!(
        reader.version_of_event("ids-1", Uuid::new_v4()).unwrap(),
        None
    );
    assert!(
        reader.version_of_event("", ids[0]).is_err(),
        "an empty stream id is refused"
    );
}
