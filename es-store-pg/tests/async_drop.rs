//! A tokio service that uses the store off its async threads, as es-core's `asynchronous`
//! module asks, may still drop the last handle of a store or a projection on one: its
//! connections close on a thread of their own (the `postgres` client closes through a
//! runtime of its own, which panicked on a tokio worker).
mod common;

use es_core::testing::conformance::events;
use es_core::{EventStore, ExpectedVersion};
use es_store_pg::projection::PgCheckpoints;
use std::sync::Arc;

#[test]
fn the_last_handle_of_a_store_or_checkpoints_may_be_dropped_on_a_tokio_worker() {
    let Some((store, guard)) = common::store() else {
        return;
    };
    let checkpoints = PgCheckpoints::connect(&guard.url, &guard.schema).unwrap();
    let store = Arc::new(store);
    store
        .append("s-1", ExpectedVersion::NoStream, events(1, 2))
        .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let used = Arc::clone(&store);
        let head = tokio::task::spawn_blocking(move || used.head_position())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(head, 2);
        // the last handles, dropped on the runtime's thread
        drop(store);
        drop(checkpoints);
    });
}
