//! A machine crash at every sync point of generated workloads (several streams, mixed
//! batch sizes, concurrent appenders, segment rolls, index writes) loses no acknowledged
//! append, never exposes part of an append, keeps versions and positions dense, and leaves
//! a store that takes the next append; the weaker promises of `Periodic` and `None`
//! durability hold too.
//!
//! Runs on the simulated disk (`vfs::sim`). `ES_RELIABILITY_FULL=1` runs many more cases.

use crate::common;
use crate::common::{
    Attempt, Ledger, Outcome, event, figure, next_append_works, proptest_config, scale,
    segment_number, verify,
};
use es_core::{EventStore, ExpectedVersion, StoreError};
use es_store_fs::vfs::sim::{CrashImage, SimFs, SimOptions};
use es_store_fs::{Durability, FileStore, FileStoreOptions, OpenError};
use proptest::prelude::*;
use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const DIR: &str = "/db";

#[derive(Debug, Clone)]
enum Op {
    /// An append to stream `s-{stream}` of events of these payload sizes, with the
    /// expectation picked by `expect`.
    Append {
        stream: u8,
        sizes: Vec<usize>,
        expect: u8,
    },
    /// `FileStore::checkpoint`: syncs and writes the index file.
    Checkpoint,
    /// Closes the store and opens it again.
    Reopen,
}

#[derive(Debug, Clone)]
struct Workload {
    threads: Vec<Vec<Op>>,
    segment_size: u64,
    preallocate: u64,
    seed: u64,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => (0u8..5, prop::collection::vec(prop_oneof![4 => 1usize..200, 1 => 200usize..3000], 1..6), 0u8..8)
            .prop_map(|(stream, sizes, expect)| Op::Append { stream, sizes, expect }),
        1 => Just(Op::Checkpoint),
    ]
}

fn workload(max_ops: usize) -> impl Strategy<Value = Workload> {
    (
        prop::collection::vec(prop::collection::vec(op(), 1..max_ops), 1..4),
        prop_oneof![Just(4096u64), Just(16 * 1024), Just(1 << 20)],
        prop_oneof![Just(0u64), Just(4096), Just(64 * 1024)],
        any::<u64>(),
    )
        .prop_map(|(threads, segment_size, preallocate, seed)| Workload {
            threads,
            segment_size,
            preallocate,
            seed,
        })
}

fn options(fs: &SimFs, w: &Workload, durability: Durability) -> FileStoreOptions {
    FileStoreOptions {
        vfs: Arc::new(fs.clone()),
        segment_size: w.segment_size,
        preallocate: w.preallocate,
        durability,
        ..FileStoreOptions::default()
    }
}

fn expectation(store: &FileStore, stream: &str, pick: u8) -> ExpectedVersion {
    let v = store.stream_version(stream).unwrap();
    match pick {
        0..=3 => ExpectedVersion::Any,
        4 => ExpectedVersion::Exact(v),
        5 if v == 0 => ExpectedVersion::NoStream,
        5 => ExpectedVersion::StreamExists,
        6 => ExpectedVersion::Exact(v + 1),
        _ => ExpectedVersion::StreamExists,
    }
}

/// Runs a workload to its end (closing the store) and returns what was attempted.
/// `during` is called after every operation of every thread.
fn run(
    fs: &SimFs,
    w: &Workload,
    durability: Durability,
    during: &(dyn Fn() + Sync),
) -> Vec<Attempt> {
    let ledger = Ledger::default();
    let store = std::sync::RwLock::new(Some(
        FileStore::open_with(DIR, options(fs, w, durability)).unwrap(),
    ));
    let counter = AtomicU64::new(0);
    let (ledger, store, counter) = (&ledger, &store, &counter);
    std::thread::scope(|scope| {
        for ops in &w.threads {
            scope.spawn(move || {
                for op in ops {
                    match op {
                        Op::Append {
                            stream,
                            sizes,
                            expect,
                        } => {
                            let guard = store.read().unwrap();
                            let store = guard.as_ref().unwrap();
                            let stream = format!("s-{stream}");
                            let expected = expectation(store, &stream, *expect);
                            let events: Vec<_> = sizes
                                .iter()
                                .map(|&size| {
                                    event(&stream, counter.fetch_add(1, Ordering::SeqCst), size)
                                })
                                .collect();
                            let i = ledger.start(&stream, expected, &events, fs.now());
                            let r = store.append(&stream, expected, events);
                            ledger.finish(i, &r, fs.now());
                            let newest = fs.files().iter().filter_map(|p| segment_number(p)).max();
                            ledger.note_segment(i, newest.unwrap_or(0));
                            match r {
                                Ok(_) | Err(StoreError::Conflict { .. }) => {}
                                Err(e) => panic!("append failed without a fault: {e}"),
                            }
                        }
                        Op::Checkpoint => {
                            let guard = store.read().unwrap();
                            guard.as_ref().unwrap().checkpoint().unwrap();
                        }
                        Op::Reopen => {
                            let mut guard = store.write().unwrap();
                            guard.take().unwrap().close().unwrap();
                            *guard = Some(
                                FileStore::open_with(DIR, options(fs, w, durability)).unwrap(),
                            );
                        }
                    }
                    during();
                }
            });
        }
    });
    store.write().unwrap().take().unwrap().close().unwrap();
    ledger.snapshot()
}

/// How a crash image may be opened.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Open {
    /// It must open as it is.
    Plain,
    /// It may instead report damage in its last segment, which repair must then cut
    /// without losing anything required: the documented outcome when the disk returned
    /// garbage for an unsynced write and a later write did reach it.
    RepairAllowed,
}

/// Opens the store on a crash image and checks it holds whole appends only, including
/// every one `required` names; opens it a second time (now from the index written at
/// close) and checks again; then appends. Returns what was found and whether repair was
/// needed.
fn check_image(
    image: &SimFs,
    w: &Workload,
    attempts: &[Attempt],
    required: &dyn Fn(&Attempt) -> bool,
    how: Open,
) -> Result<(common::Found, bool), String> {
    let open = |repair| {
        FileStore::open_with(
            DIR,
            FileStoreOptions {
                repair,
                ..options(image, w, Durability::Always)
            },
        )
    };
    let (store, repaired) = match open(false) {
        Ok(store) => (store, false),
        Err(OpenError::Corrupted { segment, .. }) if how == Open::RepairAllowed => {
            let segments = image
                .files()
                .iter()
                .filter(|p| p.extension().is_some_and(|e| e == "seg"))
                .count() as u64;
            if segment + 1 != segments {
                return Err(format!(
                    "damage reported in segment {segment}, not the last"
                ));
            }
            let store = open(true).map_err(|e| format!("repairing after the crash: {e}"))?;
            (store, true)
        }
        Err(e) => return Err(format!("reopening after the crash: {e}")),
    };
    let found = verify(&store, attempts, required)
        .map_err(|e| format!("{e}; recovery: {:?}", store.recovery_report()))?;
    store.close().map_err(|e| e.to_string())?;
    let store = open(false).map_err(|e| format!("reopening a second time: {e}"))?;
    let report = store.recovery_report();
    if report.torn_tail.is_some() || report.index_rebuilt || report.repaired.is_some() {
        return Err(format!(
            "a clean close left work for the next open: {report:?}"
        ));
    }
    verify(&store, attempts, required)?;
    next_append_works(&store)?;
    Ok((found, repaired))
}

fn acked_before(a: &Attempt, t: u64) -> bool {
    matches!(a.outcome, Outcome::Acked { at, .. } if at < t)
}

#[derive(Default)]
struct Tally {
    workloads: u64,
    crash_points: u64,
    appends_acknowledged: u64,
    required_checked: u64,
    unacknowledged_present: u64,
    repaired: u64,
}

impl Tally {
    fn add(&mut self, found: common::Found, repaired: bool) {
        self.crash_points += 1;
        self.required_checked += found.required;
        self.unacknowledged_present += found.appends - found.required;
        self.repaired += u64::from(repaired);
    }

    fn report(&self, test: &str) {
        figure(test, "workloads", self.workloads);
        figure(test, "crash points checked", self.crash_points);
        figure(test, "appends acknowledged", self.appends_acknowledged);
        figure(
            test,
            "required appends found intact, summed over crash points",
            self.required_checked,
        );
        figure(
            test,
            "unacknowledged appends found whole, summed over crash points",
            self.unacknowledged_present,
        );
        figure(
            test,
            "crash points reported as damage, then repaired without loss",
            self.repaired,
        );
    }
}

/// `Always`: a crash image at every sync point keeps every append acknowledged before it.
fn check_always(
    w: &Workload,
    sim: SimOptions,
    how: Open,
    tally: &mut Tally,
) -> Result<(), TestCaseError> {
    let fs = SimFs::with_options(w.seed, sim);
    fs.capture_crash_images(1);
    let attempts = run(&fs, w, Durability::Always, &|| {});
    let images: Vec<CrashImage> = fs.take_crash_images();
    prop_assert!(!images.is_empty());
    tally.workloads += 1;
    tally.appends_acknowledged += attempts
        .iter()
        .filter(|a| matches!(a.outcome, Outcome::Acked { .. }))
        .count() as u64;
    for (n, image) in images.iter().enumerate() {
        let (found, repaired) =
            check_image(&image.fs, w, &attempts, &|a| acked_before(a, image.at), how).map_err(
                |e| {
                    TestCaseError::fail(format!(
                        "crash image {n} of {} (at {}, {} a sync): {e}",
                        images.len(),
                        image.at,
                        if image.after_sync { "after" } else { "before" }
                    ))
                },
            )?;
        tally.add(found, repaired);
    }
    // the clean end: everything acknowledged is there
    let (found, _) = check_image(
        &fs,
        w,
        &attempts,
        &|a| matches!(a.outcome, Outcome::Acked { .. }),
        Open::Plain,
    )
    .map_err(TestCaseError::fail)?;
    prop_assert_eq!(found.required, found.appends);
    Ok(())
}

/// Unsynced writes kept whole, torn at any byte, or lost: what a crash does. Every image
/// opens as it is.
fn lost_or_torn() -> SimOptions {
    SimOptions {
        garbage_percent: 0,
        ..SimOptions::default()
    }
}

#[test]
fn crash_at_every_sync_point_loses_nothing_acknowledged() {
    let tally = RefCell::new(Tally::default());
    proptest!(proptest_config(24, 400), |(w in workload(12))| {
        check_always(&w, lost_or_torn(), Open::Plain, &mut tally.borrow_mut())?;
    });
    tally.borrow().report("always");
}

/// Unsynced writes that read back as garbage: recovery cannot tell them from an
/// acknowledged frame gone bad, so the open refuses; repair then loses nothing
/// acknowledged.
#[test]
fn crash_with_garbage_for_unsynced_writes_is_refused_and_repair_loses_nothing() {
    let tally = RefCell::new(Tally::default());
    proptest!(proptest_config(12, 200), |(w in workload(12))| {
        check_always(&w, SimOptions::default(), Open::RepairAllowed, &mut tally.borrow_mut())?;
    });
    tally.borrow().report("always, garbage for unsynced writes");
}

/// Pages of one write reaching the disk out of order (lost pages read back as zeros)
/// still open as a cut tail.
#[test]
fn crash_with_pages_persisted_out_of_order_loses_nothing_acknowledged() {
    let tally = RefCell::new(Tally::default());
    let sim = SimOptions {
        page_size: Some(512),
        garbage_percent: 0,
        torn_percent: 0,
        ..SimOptions::default()
    };
    proptest!(proptest_config(12, 200), |(w in workload(12))| {
        check_always(&w, sim, Open::Plain, &mut tally.borrow_mut())?;
    });
    tally.borrow().report("always, pages out of order");
}

/// The same with torn pages and pages that read back as garbage: where that garbage
/// precedes a page that did persist, open reports damage and repair loses nothing
/// acknowledged.
#[test]
fn crash_with_torn_and_garbled_pages_loses_nothing_acknowledged() {
    let tally = RefCell::new(Tally::default());
    let sim = SimOptions {
        page_size: Some(512),
        ..SimOptions::default()
    };
    proptest!(proptest_config(12, 200), |(w in workload(12))| {
        check_always(&w, sim, Open::RepairAllowed, &mut tally.borrow_mut())?;
    });
    tally.borrow().report("always, pages torn and garbled");
}

#[test]
fn crash_with_reopens_and_checkpoints_in_the_workload() {
    let tally = RefCell::new(Tally::default());
    let with_reopens = workload(10).prop_map(|mut w| {
        // one thread, so that a reopen never races an append
        let mut ops: Vec<Op> = w.threads.concat();
        for i in (0..ops.len()).step_by(4).skip(1) {
            ops[i] = Op::Reopen;
        }
        w.threads = vec![ops];
        w
    });
    proptest!(proptest_config(8, 150), |(w in with_reopens)| {
        check_always(&w, lost_or_torn(), Open::Plain, &mut tally.borrow_mut())?;
    });
    tally.borrow().report("always, with reopens");
}

/// `Periodic` and `None`: after a machine crash the store holds whole appends only, and
/// keeps every append acknowledged before a sync of the log that completed before the
/// crash; after a crash of the process alone it keeps every acknowledged append.
fn check_weaker(durability: Durability, sim: SimOptions, how: Open, test: &str) {
    let tally = RefCell::new(Tally::default());
    let process_images = Cell::new(0u64);
    proptest!(proptest_config(10, 150), |(w in workload(12))| {
        let fs = SimFs::with_options(w.seed, sim);
        fs.capture_crash_images(1);
        let extra = std::sync::Mutex::new(Vec::new());
        let attempts = run(&fs, &w, durability, &|| {
            let mut extra = extra.lock().unwrap();
            let now = fs.now();
            extra.push((now, false, fs.crash_image()));
            extra.push((now, true, fs.process_crash_image()));
        });
        let syncs = fs.sync_log();
        let mut images: Vec<(u64, bool, SimFs)> = fs
            .take_crash_images()
            .into_iter()
            .map(|i| (i.at, false, i.fs))
            .collect();
        images.extend(extra.into_inner().unwrap());
        let mut tally = tally.borrow_mut();
        tally.workloads += 1;
        tally.appends_acknowledged += attempts
            .iter()
            .filter(|a| matches!(a.outcome, Outcome::Acked { .. }))
            .count() as u64;
        for (t, process_crash, image) in &images {
            let (t, process_crash) = (*t, *process_crash);
            // a sync of the segment the append went to (or of a later one, whose roll
            // sealed it) that started after the acknowledgement and ended before the crash
            let synced_after = |a: &Attempt| match a.outcome {
                Outcome::Acked { at, .. } => syncs.iter().any(|s| {
                    segment_number(&s.path).is_some_and(|n| n >= a.newest_segment)
                        && s.started > at
                        && s.finished < t
                }),
                _ => false,
            };
            let required: &dyn Fn(&Attempt) -> bool = if process_crash {
                &|a: &Attempt| acked_before(a, t)
            } else {
                &synced_after
            };
            let how = if process_crash { Open::Plain } else { how };
            let (found, repaired) = check_image(image, &w, &attempts, required, how)
                .map_err(|e| {
                    let kind = if process_crash { "process" } else { "machine" };
                    TestCaseError::fail(format!("{kind} crash at {t}: {e}"))
                })?;
            tally.add(found, repaired);
            if process_crash {
                process_images.set(process_images.get() + 1);
            }
        }
    });
    tally.borrow().report(test);
    figure(test, "of which process crashes", process_images.get());
}

/// A disk that loses unsynced writes whole, never tearing or garbling one.
fn whole_writes() -> SimOptions {
    SimOptions {
        garbage_percent: 0,
        torn_percent: 0,
        ..SimOptions::default()
    }
}

#[test]
fn periodic_durability_keeps_its_weaker_promise() {
    let d = Durability::Periodic(Duration::from_millis(1));
    check_weaker(d, whole_writes(), Open::Plain, "periodic, whole writes");
    check_weaker(d, SimOptions::default(), Open::RepairAllowed, "periodic");
}

#[test]
fn no_sync_durability_keeps_its_weaker_promise() {
    check_weaker(
        Durability::None,
        whole_writes(),
        Open::Plain,
        "none, whole writes",
    );
    check_weaker(
        Durability::None,
        SimOptions::default(),
        Open::RepairAllowed,
        "none",
    );
}

/// A crash between creating a new segment and syncing the directory: the new file is
/// lost, or (when the file system kept the entry anyway) present with a torn or missing
/// header; either way no acknowledged append is lost and the log goes on.
#[test]
fn crash_during_a_segment_roll() {
    let mut rolls = 0u64;
    let mut points = 0u64;
    let mut removed = 0u64;
    for seed in 0..u64::from(scale(40, 800)) {
        let sim = SimOptions {
            entry_keep_percent: if seed.is_multiple_of(2) { 0 } else { 70 },
            ..lost_or_torn()
        };
        let fs = SimFs::with_options(seed, sim);
        let w = Workload {
            threads: vec![
                (0..12)
                    .map(|i| Op::Append {
                        stream: (i % 3) as u8,
                        sizes: vec![300 + 37 * i as usize, 120],
                        expect: 0,
                    })
                    .collect(),
            ],
            segment_size: 4096,
            preallocate: if seed.is_multiple_of(3) { 0 } else { 4096 },
            seed,
        };
        fs.capture_crash_images(1);
        let attempts = run(&fs, &w, Durability::Always, &|| {});
        let segments = fs
            .files()
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "seg"))
            .count();
        assert!(segments >= 3, "the workload rolls segments");
        rolls += segments as u64 - 1;
        for image in fs.take_crash_images() {
            let store = FileStore::open_with(DIR, options(&image.fs, &w, Durability::Always))
                .unwrap_or_else(|e| panic!("seed {seed}, crash at {}: {e}", image.at));
            if store.recovery_report().removed_empty_segment.is_some() {
                removed += 1;
            }
            drop(store);
            check_image(
                &image.fs,
                &w,
                &attempts,
                &|a| acked_before(a, image.at),
                Open::Plain,
            )
            .unwrap_or_else(|e| panic!("seed {seed}, crash at {}: {e}", image.at));
            points += 1;
        }
    }
    assert!(
        removed > 0,
        "some crash left a new segment without its header"
    );
    figure("segment roll", "segment rolls", rolls);
    figure("segment roll", "crash points checked", points);
    figure(
        "segment roll",
        "new segments without a durable header removed",
        removed,
    );
}

/// The rule that tells a lost unsynced write from damage: a frame that passes its
/// checksum and records its segment as durable past a bad region proves the region was
/// acknowledged (damage); without such a frame, only what a lost write leaves (zeros
/// where bytes were owed) is cut, and bit rot is damage.
#[test]
fn a_lost_write_before_one_that_persisted_is_a_torn_tail_but_rot_is_damage() {
    let opts = |fs: &SimFs, durability| FileStoreOptions {
        vfs: Arc::new(fs.clone()),
        preallocate: 0,
        durability,
        ..FileStoreOptions::default()
    };
    let seg = std::path::PathBuf::from(DIR).join(format!("{:020}.seg", 0));
    let write = |durability| {
        let fs = SimFs::new(11);
        let store = FileStore::open_with(DIR, opts(&fs, durability)).unwrap();
        let mut ends = vec![fs.read_file(&seg).unwrap().len()];
        for i in 0..3 {
            store
                .append("s", ExpectedVersion::Any, vec![event("s", i, 200)])
                .unwrap();
            ends.push(fs.read_file(&seg).unwrap().len());
        }
        std::mem::forget(store); // a crash: no close
        (fs.read_file(&seg).unwrap(), ends)
    };
    let open_damaged = |log: &[u8], durability, damage: &dyn Fn(&mut Vec<u8>)| {
        let image = SimFs::new(12);
        let mut bytes = log.to_vec();
        damage(&mut bytes);
        image.write_file(&seg, &bytes);
        FileStore::open_with(DIR, opts(&image, durability))
    };
    let is_damage_at = |result: Result<FileStore, OpenError>, start: usize, what: &str| {
        let err = match result.map(|s| s.recovery_report().clone()) {
            Ok(report) => panic!("{what}: opened, {report:?}"),
            Err(err) => err,
        };
        assert!(
            matches!(err, OpenError::Corrupted { segment: 0, offset, .. } if offset == start as u64),
            "{what}: {err}"
        );
    };

    // Synced appends: the third frame proves the second was durable. Whatever is wrong
    // with the second is damage, zeros included.
    let (log, ends) = write(Durability::Always);
    let (start, end) = (ends[1], ends[2]);
    for (from, to) in [(start, end), (start, start + 8), (start + 50, start + 82)] {
        let result = open_damaged(&log, Durability::Always, &|b| b[from..to].fill(0));
        is_damage_at(result, start, &format!("synced, zeros at {from}..{to}"));
    }

    // Unsynced appends (no sync between them): the second frame's write may have been
    // lost while the third's reached the disk.
    let (log, ends) = write(Durability::None);
    let (start, end) = (ends[1], ends[2]);
    for (from, to) in [(start, end), (start, start + 8), (end - 8, end)] {
        let store = open_damaged(&log, Durability::None, &|b| b[from..to].fill(0))
            .unwrap_or_else(|e| panic!("zeros at {from}..{to}: {e}"));
        assert_eq!(
            store.recovery_report().torn_tail.map(|t| t.offset),
            Some(start as u64)
        );
        assert_eq!(store.head_position().unwrap(), 1);
    }
    // bit rot, or zeros inside a frame whose both ends are intact (no lost sector): damage
    for (from, to) in [
        (start + 60, start + 61),
        (start + 50, start + 70),
        (start + 50, start + 82),
        (end - 4, end - 3),
    ] {
        let result = open_damaged(&log, Durability::None, &|b| {
            for x in &mut b[from..to] {
                *x = if to - from == 1 { *x ^ 0x10 } else { 0 };
            }
        });
        is_damage_at(result, start, &format!("unsynced, {from}..{to}"));
    }
}
