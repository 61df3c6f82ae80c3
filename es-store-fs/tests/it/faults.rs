//! Failed writes and syncs: after `EIO` from `fdatasync` (or a write, or the background
//! sync of `Durability::Periodic`) the pending appends fail, the store refuses writes
//! until reopened and keeps every earlier acknowledged append; a full disk (`ENOSPC`) in the middle of a batch exposes no part of it, and
//! writing resumes once space is back. No failed append is ever reported as acknowledged.
//!
//! Runs on the simulated disk (`vfs::sim`). `ES_RELIABILITY_FULL=1` runs many more cases.

use crate::common::{Attempt, Ledger, Outcome, event, figure, next_append_works, scale, verify};
use es_core::{EventStore, ExpectedVersion, StoreError};
use es_store_fs::vfs::sim::{SimFs, SimOp, SimOptions};
use es_store_fs::{Durability, FileStore, FileStoreOptions};
use std::io::ErrorKind;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const DIR: &str = "/db";

/// A simulated disk whose crashes lose or tear unsynced writes (garbage for a lost write
/// is refused as damage by design; `crash.rs` covers that case with repair).
fn disk(seed: u64) -> SimFs {
    SimFs::with_options(
        seed,
        SimOptions {
            garbage_percent: 0,
            ..SimOptions::default()
        },
    )
}

fn options(fs: &SimFs, segment_size: u64, preallocate: u64) -> FileStoreOptions {
    FileStoreOptions {
        vfs: Arc::new(fs.clone()),
        segment_size,
        preallocate,
        ..FileStoreOptions::default()
    }
}

fn acked(a: &Attempt) -> bool {
    matches!(a.outcome, Outcome::Acked { .. })
}

/// Appends `n` batches from `threads` threads, recording everything in `ledger`.
fn load(store: &FileStore, fs: &SimFs, ledger: &Ledger, threads: u64, n: u64, tag: u64) {
    let counter = AtomicU64::new(tag * 1_000_000);
    std::thread::scope(|scope| {
        for t in 0..threads {
            let counter = &counter;
            scope.spawn(move || {
                for i in 0..n {
                    let stream = format!("s-{}", (t + i) % 3);
                    let events: Vec<_> = (0..1 + (i % 4))
                        .map(|k| {
                            let n = counter.fetch_add(1, Ordering::SeqCst);
                            event(&stream, n, 40 + 300 * (k as usize % 3))
                        })
                        .collect();
                    let a = ledger.start(&stream, ExpectedVersion::Any, &events, fs.now());
                    let r = store.append(&stream, ExpectedVersion::Any, events);
                    ledger.finish(a, &r, fs.now());
                }
            });
        }
    });
}

/// `EIO` from the n-th `fdatasync` of the log (or from the n-th write): the appends it
/// carried fail, later appends are refused with `ReadOnly`, reads keep working, and after
/// reopening (with or without a crash) every acknowledged append is intact.
fn io_error_poisons_until_reopen(op: SimOp, what: &str) {
    let mut rounds = 0u64;
    let mut failed = 0u64;
    for seed in 0..u64::from(scale(24, 400)) {
        let fs = disk(seed);
        let (segment_size, preallocate) =
            [(4096, 0), (16384, 4096), (1 << 20, 65536)][seed as usize % 3];
        let store = FileStore::open_with(DIR, options(&fs, segment_size, preallocate)).unwrap();
        let ledger = Ledger::default();
        load(&store, &fs, &ledger, 1, 1 + seed % 5, 0);
        fs.fail(op, seed % 3, ErrorKind::Other, Some(".seg"));
        load(&store, &fs, &ledger, 3, 6, 1);
        let attempts = ledger.snapshot();
        let errors = attempts
            .iter()
            .filter(|a| a.outcome == Outcome::Failed)
            .count() as u64;
        assert!(errors > 0, "seed {seed}: the fault failed no append");
        failed += errors;
        // refused from now on, with the reason
        let err = store
            .append("s-0", ExpectedVersion::Any, vec![event("s-0", 1, 10)])
            .unwrap_err();
        assert!(
            matches!(err, StoreError::ReadOnly(_)),
            "seed {seed}: {err:?}"
        );
        assert!(matches!(store.checkpoint(), Err(StoreError::ReadOnly(_))));
        // reads still serve what was acknowledged
        verify(&store, &attempts, acked).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        drop(store);

        let machine = fs.crash_image();
        // reopened on the same machine: the cache may still hold the failed group
        let store = FileStore::open_with(DIR, options(&fs, segment_size, preallocate)).unwrap();
        verify(&store, &attempts, acked).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        next_append_works(&store).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        drop(store);
        // or the machine crashed right after the failure
        let store =
            FileStore::open_with(DIR, options(&machine, segment_size, preallocate)).unwrap();
        verify(&store, &attempts, acked).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        next_append_works(&store).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        rounds += 1;
    }
    figure(what, "faults injected", rounds);
    figure(what, "appends failed by them", failed);
}

#[test]
fn eio_on_fsync_refuses_writes_until_reopened() {
    io_error_poisons_until_reopen(SimOp::SyncData, "EIO on fdatasync");
}

#[test]
fn eio_on_write_refuses_writes_until_reopened() {
    io_error_poisons_until_reopen(SimOp::Write, "EIO on write");
}

/// `EIO` from the sync of the background thread of `Durability::Periodic`, while three
/// threads keep appending, so that the failure lands between flushes, during one, or
/// while appends wait in the queue: from then on appends fail or are refused, reads serve
/// every
/// acknowledged append and nothing partial, a reopen on the same machine keeps every
/// acknowledged append, and a machine crash keeps every append a successful sync
/// covered (the weaker promise of periodic syncs: the last interval's appends may go).
#[test]
fn a_failed_periodic_sync_stops_writes_and_keeps_what_was_synced() {
    let (mut failed, mut refused) = (0u64, 0u64);
    let mut required_after_crash = 0u64;
    let rounds = u64::from(scale(16, 200));
    for seed in 0..rounds {
        let fs = disk(seed);
        let options = |fs: &SimFs| FileStoreOptions {
            durability: Durability::Periodic(Duration::from_micros(200 + 300 * (seed % 4))),
            ..options(fs, 1 << 20, 4096)
        };
        let store = FileStore::open_with(DIR, options(&fs)).unwrap();
        let ledger = Ledger::default();
        load(&store, &fs, &ledger, 1, 2 + seed % 3, 0);
        fs.fail(SimOp::SyncData, seed % 3, ErrorKind::Other, Some(".seg"));
        // appends go on until the failure reaches one
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut tag = 1;
        while ledger.snapshot().iter().all(acked) {
            assert!(
                Instant::now() < deadline,
                "seed {seed}: no append failed after the periodic sync was made to fail"
            );
            load(&store, &fs, &ledger, 3, 4, tag);
            tag += 1;
        }
        // the store knows: everything after is refused, with the reason
        let err = store
            .append("s-0", ExpectedVersion::Any, vec![event("s-0", 1, 10)])
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::ReadOnly(why) if why.contains("fsync")),
            "seed {seed}: {err:?}"
        );
        let attempts = ledger.snapshot();
        failed += attempts
            .iter()
            .filter(|a| a.outcome == Outcome::Failed)
            .count() as u64;
        refused += attempts
            .iter()
            .filter(|a| a.outcome == Outcome::Refused)
            .count() as u64;
        // the machine crashes now: what a successful sync covered is there
        let machine = fs.crash_image();
        let syncs = fs.sync_log();
        let synced = |a: &Attempt| match a.outcome {
            Outcome::Acked { at, .. } => syncs
                .iter()
                .any(|s| s.path.to_string_lossy().ends_with(".seg") && s.started > at),
            _ => false,
        };
        required_after_crash += attempts.iter().filter(|a| synced(a)).count() as u64;
        verify(&store, &attempts, acked).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        drop(store);
        let store = FileStore::open_with(DIR, options(&fs)).unwrap();
        verify(&store, &attempts, acked).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        next_append_works(&store).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        drop(store);
        let store = FileStore::open_with(DIR, options(&machine)).unwrap();
        verify(&store, &attempts, synced).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        next_append_works(&store).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    }
    figure("periodic fsync failure", "faults injected", rounds);
    figure(
        "periodic fsync failure",
        "queued appends failed by it",
        failed,
    );
    figure(
        "periodic fsync failure",
        "appends refused after it",
        refused,
    );
    figure(
        "periodic fsync failure",
        "synced appends required after a crash",
        required_after_crash,
    );
}

/// After a failed `fdatasync` the kernel may have dropped the dirty pages while the cache
/// still shows them: appends acknowledged after reopening must survive a later crash.
#[test]
fn appends_after_an_fsync_failure_and_reopen_survive_a_crash() {
    let mut lost = 0u64;
    let rounds = u64::from(scale(24, 400));
    for seed in 0..rounds {
        let fs = SimFs::with_options(
            seed,
            SimOptions {
                keep_percent: 0,
                ..SimOptions::default()
            },
        );
        let store = FileStore::open_with(DIR, options(&fs, 1 << 20, 4096)).unwrap();
        let ledger = Ledger::default();
        load(&store, &fs, &ledger, 1, 3, 0);
        fs.fail(SimOp::SyncData, 0, ErrorKind::Other, Some(".seg"));
        load(&store, &fs, &ledger, 2, 3, 1);
        drop(store);
        let store = FileStore::open_with(DIR, options(&fs, 1 << 20, 4096)).unwrap();
        load(&store, &fs, &ledger, 1, 3 + seed % 3, 2);
        let attempts = ledger.snapshot();
        drop(store);
        fs.crash();
        match FileStore::open_with(DIR, options(&fs, 1 << 20, 4096)) {
            Ok(store) => {
                if let Err(e) = verify(&store, &attempts, acked) {
                    lost += 1;
                    eprintln!("seed {seed}: {e}");
                }
            }
            Err(e) => {
                lost += 1;
                eprintln!("seed {seed}: {e}");
            }
        }
    }
    figure("fsync failure, reopen, crash", "rounds", rounds);
    assert_eq!(lost, 0, "rounds that lost acknowledged appends");
}

/// A full disk at every point of a batch's write (zero-fill, frames, segment roll, header,
/// index): the batch fails with `StorageFull` and no part of it is visible, now or after a
/// crash; once space is back, appends succeed and nothing acknowledged is lost.
#[test]
fn enospc_mid_batch_writes_nothing_partial_and_recovers() {
    let mut points = 0u64;
    let mut failed = 0u64;
    let rounds = scale(40, 600);
    for seed in 0..u64::from(rounds) {
        let fs = disk(seed);
        let (segment_size, preallocate) =
            [(4096, 0), (4096, 4096), (1 << 20, 65536)][seed as usize % 3];
        let store = FileStore::open_with(DIR, options(&fs, segment_size, preallocate)).unwrap();
        let ledger = Ledger::default();
        load(&store, &fs, &ledger, 1, 2 + seed % 7, 0);
        // leave room for part of the next batch only
        fs.set_capacity(Some(fs.used_bytes() + seed * 37 % 3000));
        let big: Vec<_> = (0..8).map(|k| event("s-big", 100 + k, 700)).collect();
        let a = ledger.start("s-big", ExpectedVersion::Any, &big, fs.now());
        let r = store.append("s-big", ExpectedVersion::Any, big);
        ledger.finish(a, &r, fs.now());
        match &r {
            Err(StoreError::Io(e)) => {
                assert_eq!(e.kind(), ErrorKind::StorageFull, "seed {seed}: {e}");
                failed += 1;
                assert_eq!(store.stream_version("s-big").unwrap(), 0);
            }
            Err(e) => panic!("seed {seed}: {e:?}"),
            Ok(_) => {}
        }
        // while the disk is full, appends fail cleanly or succeed whole
        load(&store, &fs, &ledger, 2, 3, 1);
        let attempts = ledger.snapshot();
        verify(&store, &attempts, acked).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        let crashed = fs.crash_image();
        fs.set_capacity(None);
        let again = vec![event("s-after", 1, 30)];
        let a = ledger.start("s-after", ExpectedVersion::Any, &again, fs.now());
        let r = store.append("s-after", ExpectedVersion::Any, again);
        ledger.finish(a, &r, fs.now());
        let after = r.unwrap_or_else(|e| panic!("seed {seed}: no append once space is back: {e}"));
        assert_eq!(after.last_position, store.head_position().unwrap());
        let all = ledger.snapshot();
        verify(&store, &all, acked).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        drop(store);
        for (image, attempts) in [(crashed, &attempts), (fs.crash_image(), &all)] {
            let store =
                FileStore::open_with(DIR, options(&image, segment_size, preallocate)).unwrap();
            verify(&store, attempts, acked).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
            next_append_works(&store).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
            points += 1;
        }
    }
    figure("ENOSPC", "rounds", u64::from(rounds));
    figure("ENOSPC", "batches failed by a full disk", failed);
    figure("ENOSPC", "crash images checked", points);
}

/// Many appenders while the disk fills and empties: an append that failed is never
/// reported as acknowledged, and every acknowledged one is stored.
#[test]
fn failed_appends_are_never_acknowledged_under_concurrency() {
    let rounds = scale(20, 300);
    let mut failed = 0u64;
    for seed in 0..u64::from(rounds) {
        let fs = disk(seed);
        let store = FileStore::open_with(DIR, options(&fs, 1 << 20, 0)).unwrap();
        let ledger = Ledger::default();
        std::thread::scope(|scope| {
            scope.spawn(|| {
                for i in 0..30u64 {
                    let cap = if i.is_multiple_of(2) {
                        Some(fs.used_bytes() + (seed * 131 + i * 17) % 800)
                    } else {
                        None
                    };
                    fs.set_capacity(cap);
                    std::thread::yield_now();
                }
                fs.set_capacity(None);
            });
            load(&store, &fs, &ledger, 4, 12, 0);
        });
        fs.set_capacity(None);
        let attempts = ledger.snapshot();
        failed += attempts
            .iter()
            .filter(|a| a.outcome == Outcome::Failed)
            .count() as u64;
        verify(&store, &attempts, acked).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        drop(store);
        let store = FileStore::open_with(DIR, options(&fs, 1 << 20, 0)).unwrap();
        verify(&store, &attempts, acked).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        // the failed ones are not there after reopening either: the partial write was cut
        let stored: std::collections::HashSet<uuid::Uuid> = store
            .read_all(1)
            .unwrap()
            .map(|e| e.unwrap().event_id)
            .collect();
        for a in attempts.iter().filter(|a| a.outcome == Outcome::Failed) {
            assert!(
                a.events.iter().all(|e| !stored.contains(&e.event_id)),
                "seed {seed}: a failed append appeared after reopening"
            );
        }
    }
    figure("ENOSPC under concurrency", "rounds", u64::from(rounds));
    figure("ENOSPC under concurrency", "appends failed", failed);
}

/// A failed sync of the log before an index write (checkpoint, segment roll) refuses
/// writes like a failed flush: a retried sync could falsely succeed.
#[test]
fn a_failed_sync_before_an_index_write_refuses_writes() {
    for durability in [
        es_store_fs::Durability::None,
        es_store_fs::Durability::Periodic(std::time::Duration::from_secs(3600)),
    ] {
        let fs = disk(3);
        let store = FileStore::open_with(
            DIR,
            FileStoreOptions {
                durability,
                ..options(&fs, 1 << 20, 0)
            },
        )
        .unwrap();
        let ledger = Ledger::default();
        load(&store, &fs, &ledger, 1, 4, 0);
        fs.fail(SimOp::SyncData, 0, ErrorKind::Other, Some(".seg"));
        assert!(matches!(store.checkpoint(), Err(StoreError::Io(_))));
        let err = store
            .append("s-0", ExpectedVersion::Any, vec![event("s-0", 1, 10)])
            .unwrap_err();
        assert!(matches!(err, StoreError::ReadOnly(_)), "{err:?}");
        drop(store);
        let store = FileStore::open_with(DIR, options(&fs, 1 << 20, 0)).unwrap();
        verify(&store, &ledger.snapshot(), acked).unwrap();
        next_append_works(&store).unwrap();
    }
}

/// A full disk reported by `fdatasync` (not by a write) is not survivable: with delayed
/// allocation the kernel may have dropped the pages, so the store stops writing, in every
/// durability mode, even when the failed sync is the one that seals a segment.
#[test]
fn enospc_from_a_sync_refuses_writes_like_eio() {
    for durability in [
        es_store_fs::Durability::Always,
        es_store_fs::Durability::None,
    ] {
        let fs = disk(11);
        let mut opts = options(&fs, 4096, 0);
        opts.durability = durability;
        let store = FileStore::open_with(DIR, opts.clone()).unwrap();
        fs.fail(SimOp::SyncData, 0, ErrorKind::StorageFull, Some(".seg"));
        let mut acked = 0u64;
        let mut refused = false;
        for n in 0..200 {
            match store.append("s-1", ExpectedVersion::Any, vec![event("s-1", n, 300)]) {
                Ok(_) => acked += 1,
                Err(StoreError::ReadOnly(_)) => {
                    refused = true;
                    break;
                }
                // the append whose sync failed: the disk's error kind, and the failed call
                Err(StoreError::Io(e))
                    if e.kind() == ErrorKind::StorageFull
                        && e.to_string().contains("fdatasync of 0")
                        && e.to_string().contains(".seg failed") => {}
                Err(e) => panic!("{durability:?}: append {n} failed with {e:?}"),
            }
        }
        assert!(refused, "{durability:?}: writes go on after a failed sync");
        drop(store);
        // whatever the disk kept, a crash image opens and every event it shows is whole
        let image = fs.crash_image();
        let reopened = FileStore::open_with(
            DIR,
            FileStoreOptions {
                vfs: Arc::new(image),
                ..opts.clone()
            },
        )
        .unwrap();
        let read: Result<Vec<_>, _> = reopened.read_all(1).unwrap().collect();
        assert!(read.is_ok(), "{durability:?}: {read:?}");
        assert!(read.unwrap().len() as u64 <= acked);
    }
}

/// A full disk in a flush that rolled over several segments leaves none of the new
/// segments behind: the store keeps writing once space is back, and reopens cleanly.
#[test]
fn enospc_across_several_rolls_leaves_no_stray_segment() {
    for skip in 0..scale(24, 120) as u64 {
        let fs = disk(100 + skip);
        let opts = options(&fs, 4096, 0);
        let store = FileStore::open_with(DIR, opts.clone()).unwrap();
        fs.fail(SimOp::Write, skip, ErrorKind::StorageFull, Some(".seg"));
        let ledger = Ledger::default();
        // events of 1.5 KB: a group commit of the 8 writers spans several 4 KiB segments
        std::thread::scope(|scope| {
            for t in 0..8u64 {
                let (store, fs, ledger) = (&store, &fs, &ledger);
                scope.spawn(move || {
                    for i in 0..6u64 {
                        let stream = format!("s-{t}");
                        let events = vec![event(&stream, skip * 1000 + t * 10 + i, 1500)];
                        let a = ledger.start(&stream, ExpectedVersion::Any, &events, fs.now());
                        let r = store.append(&stream, ExpectedVersion::Any, events);
                        ledger.finish(a, &r, fs.now());
                    }
                });
            }
        });
        fs.clear_faults();
        fs.set_capacity(None);
        let after = store.append(
            "after-1",
            ExpectedVersion::Any,
            vec![event("after-1", 1, 10)],
        );
        assert!(
            after.is_ok(),
            "skip {skip}: writing did not resume: {after:?}"
        );
        drop(store);
        let reopened = FileStore::open_with(DIR, opts.clone())
            .unwrap_or_else(|e| panic!("skip {skip}: reopen failed: {e}"));
        let acked: u64 = ledger.snapshot().iter().filter(|a| acked(a)).count() as u64;
        let events: Vec<_> = reopened
            .read_all(1)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            events.len() as u64 > acked,
            "skip {skip}: every acknowledged append is there"
        );
    }
}
