//! How the file store scales with the length of its history: append latency while many
//! segments roll, open time and resident memory after a clean close, the first append
//! and one-stream loads after open, and recovery after a crash.
//!
//! `cargo bench -p es-bench --bench scale` runs 1,000,000 events with 1 MiB segments.
//! `ES_SCALE_EVENTS=100000` (or `10000000`) changes the size, `ES_SCALE_SEGMENT` the
//! segment size in bytes, `ES_SCALE_DIR` the directory (a temporary one by default; 10M
//! events take about 2 GB). Workload: appends of 10 events of ~160 bytes of JSON, one
//! writer, `Durability::None` (so that the figures show the store's own work, not the
//! disk's flush time; segment rolls still sync), stream ids `cart-<k mod 10000>` for
//! append k (10,000 streams, round robin). Open, memory and recovery are measured in
//! fresh child processes (the bench runs itself again).

mod support;

use es_core::{EventStore, ExpectedVersion, NewEvent};
use es_store_fs::{Durability, FileStore, FileStoreOptions};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use support::payload;

const STREAMS: u64 = 10_000;
const BATCH: u64 = 10;

fn batch(first: u64) -> Vec<NewEvent> {
    (first..first + BATCH)
        .map(|i| NewEvent::new("ProductAdded", 1, payload(i)))
        .collect()
}

fn stream_of(append: u64) -> String {
    format!("cart-{}", append % STREAMS)
}

fn options(segment: u64) -> FileStoreOptions {
    FileStoreOptions {
        durability: Durability::None,
        segment_size: segment,
        ..FileStoreOptions::default()
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Appends `appends` batches from append number `from`; returns each append's latency.
fn write(store: &FileStore, from: u64, appends: u64) -> Vec<Duration> {
    let mut latencies = Vec::with_capacity(appends as usize);
    for k in from..from + appends {
        let events = batch(k * BATCH);
        let started = Instant::now();
        store
            .append(&stream_of(k), ExpectedVersion::Any, events)
            .unwrap();
        latencies.push(started.elapsed());
    }
    latencies
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

/// Child: opens the store, reports open time, resident memory, the first append and
/// one-stream loads, and closes it.
fn child_open(dir: &Path, segment: u64, appended: u64) {
    let before = rss_kib();
    let started = Instant::now();
    let store = FileStore::open_with(dir, options(segment)).unwrap();
    let open = started.elapsed();
    let rss = rss_kib();
    let report = store.recovery_report().clone();
    let started = Instant::now();
    store
        .append(
            &stream_of(appended),
            ExpectedVersion::Any,
            batch(appended * BATCH),
        )
        .unwrap();
    let first_append = started.elapsed();
    let mut loads = Vec::new();
    for k in 0..200u64 {
        let id = stream_of(k * 37);
        let started = Instant::now();
        let n = store.read_stream(&id, 1).unwrap().count();
        loads.push(started.elapsed());
        assert!(n > 0);
    }
    loads.sort();
    let events = store.head_position().unwrap();
    store.close().unwrap();
    println!(
        "open_ms={:.1} rss_mib={:.1} rss_before_open_mib={:.1} frames_scanned={} first_append_ms={:.2} stream_load_median_us={:.0} stream_load_p99_us={:.0} events={events}",
        ms(open),
        rss as f64 / 1024.0,
        before as f64 / 1024.0,
        report.frames_scanned,
        ms(first_append),
        loads[loads.len() / 2].as_secs_f64() * 1e6,
        percentile(&loads, 0.99).as_secs_f64() * 1e6,
    );
}

/// Child: opens the store, appends, and exits without closing (a crash of the process:
/// the index file is not written, sealing may lag).
fn child_crash(dir: &Path, segment: u64, from: u64, appends: u64) {
    let store = FileStore::open_with(dir, options(segment)).unwrap();
    write(&store, from, appends);
    std::process::exit(0);
}

fn run_child(args: &[String]) -> String {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .env("ES_SCALE_CHILD", args.join(" "))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "child failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn main() {
    let events = env_u64("ES_SCALE_EVENTS", 1_000_000);
    let segment = env_u64("ES_SCALE_SEGMENT", 1024 * 1024);
    if let Ok(child) = std::env::var("ES_SCALE_CHILD") {
        let a: Vec<&str> = child.split(' ').collect();
        let dir = PathBuf::from(a[1]);
        let n = |i: usize| a[i].parse::<u64>().unwrap();
        match a[0] {
            "open" => child_open(&dir, segment, n(2)),
            "crash" => child_crash(&dir, segment, n(2), n(3)),
            other => panic!("unknown child {other}"),
        }
        return;
    }
    let temp;
    let dir = match std::env::var("ES_SCALE_DIR") {
        Ok(d) => PathBuf::from(d),
        Err(_) => {
            temp = tempfile::tempdir().unwrap();
            temp.path().join("store")
        }
    };
    let appends = events / BATCH;
    println!(
        "# scale: {events} events in appends of {BATCH}, {STREAMS} streams round robin, {segment}-byte segments, Durability::None"
    );
    let store = FileStore::open_with(&dir, options(segment)).unwrap();
    let started = Instant::now();
    let mut latencies = write(&store, 0, appends);
    let elapsed = started.elapsed();
    let segments = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "seg")
        })
        .count();
    store.close().unwrap();
    latencies.sort();
    let worst_at = latencies.len() - 1;
    println!(
        "appends: {} ({:.0} events/s), segments rolled: {}, append latency p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms, worst {:.2} ms",
        appends,
        events as f64 / elapsed.as_secs_f64(),
        segments - 1,
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        ms(percentile(&latencies, 0.999)),
        ms(latencies[worst_at]),
    );
    let d = dir.display().to_string();
    println!(
        "after a clean close: {}",
        run_child(&["open".into(), d.clone(), appends.to_string()])
    );
    // a crash: appends after the last clean close, then no close
    let crash_appends = (appends / 20).max(1);
    run_child(&[
        "crash".into(),
        d.clone(),
        (appends + 1).to_string(),
        crash_appends.to_string(),
    ]);
    println!(
        "after a crash ({} appends since the last close): {}",
        crash_appends,
        run_child(&["open".into(), d, (appends + 1 + crash_appends).to_string()])
    );
}
