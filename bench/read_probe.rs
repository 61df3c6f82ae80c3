//! The file store's read path alone, for profilers: opens a store (building it first when
//! the directory does not exist), loads random 10-event streams and replays the whole log,
//! lending every event without decoding its payload. The instruction counts and the
//! `perf` samples in BENCHMARKS.md come from this program under
//! `valgrind --tool=callgrind --toggle-collect='*visit_stream*'` (loads) or
//! `--toggle-collect='*visit_all*'` (replay).
//!
//! `cargo bench -p es-bench --bench read_probe` with, all optional:
//! - `PROBE_DIR`: the store (default: a new temporary directory, built and removed);
//! - `PROBE_EVENTS`: events of a store it builds (default 100,000; ten per stream);
//! - `PROBE_SHAPE`: `commands` (one event per append, streams drawn in a shuffled order
//!   each round, the default) or `batched` (each stream one 10-event append);
//! - `PROBE_LOADS`: random stream loads after the open (default 20,000);
//! - `PROBE_REPLAYS`: full replays after them (default 1);
//! - `PROBE_DECODE=1`: each replay also decodes every payload into a typed event, as the
//!   replay rows of `store_vs_sqlite` do;
//! - `PROBE_OWNED=1`: each replay reads owned events (`read_all`) instead of borrowed
//!   ones (`visit_all`; `--toggle-collect='*owned_replay*'` counts it);
//! - `PROBE_RAW=1`: after the replays, writes the payloads as a raw log (length, CRC-32C,
//!   payload, as `store_vs_sqlite`'s limit) and replays that as often, decoding as the
//!   replays do (`--toggle-collect='*raw_replay*'` counts it alone).
//!
//! It prints the open time and the memory after it, the mean load time and each replay's
//! time.

mod support;

use es_core::{EventStore, ExpectedVersion, NewEvent};
use es_store_fs::{Durability, FileStore, FileStoreOptions};
use std::ops::ControlFlow;
use std::path::Path;
use std::time::Instant;
use support::{Draw, payload, raw_replay, write_raw_log};

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn build(dir: &Path, streams: u64, batched: bool) {
    let options = FileStoreOptions {
        durability: Durability::None,
        ..FileStoreOptions::default()
    };
    let store = FileStore::open_with(dir, options).expect("open the store to build");
    let stream = |s: u64| format!("cart-{s:08}");
    let event = |s: u64, round: u64| NewEvent::new("ProductAdded", 1, payload(s * 10 + round));
    if batched {
        for s in 0..streams {
            let events = (0..10).map(|round| event(s, round)).collect();
            store
                .append(&stream(s), ExpectedVersion::NoStream, events)
                .expect("append");
        }
        return;
    }
    let mut draw = Draw(7);
    for round in 0..10 {
        let mut order: Vec<u64> = (0..streams).collect();
        draw.shuffle(&mut order);
        for s in order {
            store
                .append(
                    &stream(s),
                    ExpectedVersion::Exact(round),
                    vec![event(s, round)],
                )
                .expect("append");
        }
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches` smoke-runs nothing here
    }
    let temporary = tempfile::tempdir().expect("a temporary directory");
    let dir =
        std::env::var_os("PROBE_DIR").map_or_else(|| temporary.path().join("store"), Into::into);
    let streams = (setting("PROBE_EVENTS", 100_000) / 10).max(1);
    if !dir.exists() {
        let batched = std::env::var("PROBE_SHAPE").is_ok_and(|s| s == "batched");
        let start = Instant::now();
        build(&dir, streams, batched);
        eprintln!(
            "built {} events in {:.1} s",
            streams * 10,
            start.elapsed().as_secs_f64()
        );
    }
    let start = Instant::now();
    let store = FileStore::open(&dir).expect("open the store");
    let memory = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS"))
                .map(str::to_owned)
        })
        .unwrap_or_default();
    eprintln!(
        "open: {:.1} ms; {memory}",
        start.elapsed().as_secs_f64() * 1e3
    );
    let loads = setting("PROBE_LOADS", 20_000);
    let mut draw = Draw(9);
    let start = Instant::now();
    for _ in 0..loads {
        let stream = format!("cart-{:08}", draw.below(streams));
        let mut events = 0;
        store
            .visit_stream(&stream, 1, &mut |_| {
                events += 1;
                ControlFlow::Continue(())
            })
            .expect("load a stream");
        assert_eq!(events, 10, "{stream}");
    }
    if loads > 0 {
        eprintln!(
            "load: {:.1} us per 10-event stream",
            start.elapsed().as_secs_f64() * 1e6 / loads as f64
        );
    }
    let decode = setting("PROBE_DECODE", 0) == 1;
    let owned = setting("PROBE_OWNED", 0) == 1;
    for _ in 0..setting("PROBE_REPLAYS", 1) {
        let start = Instant::now();
        let mut events = 0u64;
        let mut count = |payload: &[u8]| events += u64::from(counts(payload, decode));
        if owned {
            owned_replay(&store, &mut count);
        } else {
            store
                .visit_all(1, &mut |e| {
                    count(e.payload);
                    ControlFlow::Continue(())
                })
                .expect("replay");
        }
        eprintln!(
            "replay: {events} events in {:.1} ms",
            start.elapsed().as_secs_f64() * 1e3
        );
    }
    if setting("PROBE_RAW", 0) == 1 {
        let path = temporary.path().join("raw.log");
        let events = store.read_all(1).expect("replay");
        write_raw_log(&path, events.map(|e| e.expect("event").payload));
        for _ in 0..setting("PROBE_REPLAYS", 1) {
            let start = Instant::now();
            let events = raw_replay(&path, |p| counts(p, decode));
            eprintln!(
                "raw replay: {events} events in {:.1} ms",
                start.elapsed().as_secs_f64() * 1e3
            );
        }
    }
}

/// Whether a replayed payload counts: decoded into the typed event when `decode`, as the
/// replay rows of `store_vs_sqlite` do, its quantity positive; else not empty.
#[inline(always)]
fn counts(payload: &[u8], decode: bool) -> bool {
    if decode {
        support::decode(payload).quantity > 0
    } else {
        !payload.is_empty()
    }
}

/// A replay through owned events, each handed to `count`.
#[inline(never)]
fn owned_replay(store: &FileStore, count: &mut dyn FnMut(&[u8])) {
    for event in store.read_all(1).expect("replay") {
        count(&event.expect("event").payload);
    }
}
