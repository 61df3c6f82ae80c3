//! Subscribers and readers never see an event before it is durable: not while its
//! `fdatasync` is still running, and never when the sync fails.

use crate::common::SegmentSyncHook;
use es_core::subscription::Subscription;
use es_core::{EventStore, ExpectedVersion, NewEvent, StoreError};
use es_store_fs::vfs::sim::{SimFs, SimOp};
use es_store_fs::{FileStore, FileStoreOptions};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

fn event(n: u64) -> NewEvent {
    NewEvent::new("Tested", 1, format!(r#"{{"n":{n}}}"#).into_bytes())
}

/// A gate a held sync waits at until the test opens it.
#[derive(Debug, Default)]
struct Gate {
    open: Mutex<bool>,
    opened: Condvar,
}

#[test]
fn an_event_is_invisible_while_its_sync_runs() {
    let dir = tempfile::tempdir().unwrap();
    let slow = Arc::new(AtomicBool::new(false));
    let syncing = Arc::new(AtomicBool::new(false));
    let gate = Arc::new(Gate::default());
    // syncs of segment files are held at the gate while `slow` is set
    let hook = {
        let (slow, syncing, gate) = (Arc::clone(&slow), Arc::clone(&syncing), Arc::clone(&gate));
        move || {
            if slow.load(Ordering::SeqCst) {
                syncing.store(true, Ordering::SeqCst);
                let open = gate.open.lock().unwrap();
                drop(gate.opened.wait_while(open, |open| !*open).unwrap());
                syncing.store(false, Ordering::SeqCst);
            }
        }
    };
    let vfs = SegmentSyncHook {
        before_sync: Arc::new(hook),
    };
    let options = FileStoreOptions {
        vfs: Arc::new(vfs),
        ..FileStoreOptions::default()
    };
    let store = FileStore::open_with(dir.path(), options).unwrap();
    store
        .append("s-1", ExpectedVersion::Any, vec![event(1)])
        .unwrap();
    slow.store(true, Ordering::SeqCst);
    let mut sub = Subscription::new(&store, 1);
    assert_eq!(sub.try_next().unwrap().unwrap().position, 1);
    std::thread::scope(|scope| {
        let appender = scope.spawn(|| {
            store
                .append("s-1", ExpectedVersion::Any, vec![event(2)])
                .unwrap()
        });
        // wait until the append is written and its sync is running
        let deadline = Instant::now() + Duration::from_secs(10);
        while !syncing.load(Ordering::SeqCst) {
            assert!(Instant::now() < deadline, "the sync never started");
            std::thread::yield_now();
        }
        // the sync is held at the gate: every look at the store in the window sees nothing
        for _ in 0..50 {
            assert!(syncing.load(Ordering::SeqCst), "the sync is still held");
            assert!(
                sub.try_next().unwrap().is_none(),
                "an event was delivered before its sync ended"
            );
            assert_eq!(store.head_position().unwrap(), 1);
            assert_eq!(store.read_all(2).unwrap().count(), 0);
        }
        *gate.open.lock().unwrap() = true;
        gate.opened.notify_all();
        let acked = appender.join().unwrap();
        assert_eq!(acked.first_position, 2);
    });
    let delivered = sub.next_timeout(Duration::from_secs(5)).unwrap().unwrap();
    assert_eq!(delivered.position, 2, "delivered once durable");
}

#[test]
fn an_event_whose_sync_fails_is_never_delivered() {
    let sim = SimFs::new(7);
    let options = FileStoreOptions {
        vfs: Arc::new(sim.clone()),
        ..FileStoreOptions::default()
    };
    let store = FileStore::open_with("/store", options).unwrap();
    store
        .append("s-1", ExpectedVersion::Any, vec![event(1)])
        .unwrap();
    let mut sub = Subscription::new(&store, 1);
    assert!(sub.try_next().unwrap().is_some());
    sim.fail(SimOp::SyncData, 0, io::ErrorKind::Other, Some(".seg"));
    let failed = store.append("s-1", ExpectedVersion::Any, vec![event(2)]);
    assert!(
        matches!(&failed, Err(StoreError::Io(e)) if e.to_string().contains("fdatasync of 0")),
        "{failed:?}"
    );
    assert!(
        sub.next_timeout(Duration::from_millis(200))
            .unwrap()
            .is_none()
    );
    assert_eq!(store.head_position().unwrap(), 1);
    assert_eq!(store.read_all(1).unwrap().count(), 1);
}

/// A subscription resumed from a position past the end of the log (the log lost events the
/// subscriber may have taken into account) is an error naming both, not a wait that skips
/// the events that take those positions again. One past the head is where a subscription
/// waits for the next append, and stays allowed; so is any position in the async feed's
/// own loop once it has caught up.
#[test]
fn a_subscription_past_the_end_of_the_log_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    for n in 0..5 {
        store
            .append("s", ExpectedVersion::Any, vec![event(n)])
            .unwrap();
    }
    let head = store.head_position().unwrap();
    let mut ahead = Subscription::new(&store, head + 4);
    let err = ahead.try_next().unwrap_err();
    assert!(
        matches!(err, StoreError::PositionAhead { position, head: h }
            if position == head + 4 && h == head),
        "{err}"
    );
    assert!(err.to_string().contains("past the end of the log"), "{err}");
    // the same from next_timeout, without waiting for appends that would be skipped
    let started = Instant::now();
    let err = ahead.next_timeout(Duration::from_secs(5)).unwrap_err();
    assert!(matches!(err, StoreError::PositionAhead { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(4));
    // one past the head: waits, then delivers the next append
    let mut next = Subscription::new(&store, head + 1);
    assert!(next.try_next().unwrap().is_none());
    assert!(
        next.next_timeout(Duration::from_millis(20))
            .unwrap()
            .is_none()
    );
    store
        .append("s", ExpectedVersion::Any, vec![event(5)])
        .unwrap();
    let e = next.next_timeout(Duration::from_secs(5)).unwrap().unwrap();
    assert_eq!(e.position, head + 1);
    // a subscription that has read everything and waits is never ahead
    assert!(next.try_next().unwrap().is_none());
}

/// The memory store's head never moves back: a position past it is where the subscription
/// waits, as before.
#[test]
fn a_memory_store_subscription_ahead_waits() {
    let store = es_core::MemoryStore::new();
    store
        .append("s", ExpectedVersion::Any, vec![event(0)])
        .unwrap();
    let mut ahead = Subscription::new(&store, 5);
    assert!(ahead.try_next().unwrap().is_none());
}
