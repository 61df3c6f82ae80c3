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

use es_core::{EventStore, ExpectedVersion, NewEvent};
use es_store_fs::{Durability, FileStore, FileStoreOptions};
use std::ops::ControlFlow;
use std::path::Path;
use std::time::Instant;

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The bench's ~160-byte event of stream `s`, `round`-th of it.
fn payload(s: u64, round: u64) -> Vec<u8> {
    let i = s * 10 + round;
    format!(
        r#"{{"cart_id":"cart-{s:08}","product_id":"product-{:06}","quantity":{},"unit_price_cents":{},"currency":"EUR","note":"gift wrap please, leave at door"}}"#,
        i % 997,
        1 + i % 5,
        199 + i % 5000
    )
    .into_bytes()
}

/// The typed event a replay decodes with `PROBE_DECODE=1`.
#[derive(serde::Deserialize)]
#[allow(dead_code)] // decoded, not read
struct ProductAdded {
    cart_id: String,
    product_id: String,
    quantity: u32,
    unit_price_cents: u64,
    currency: String,
    note: String,
}

/// A small deterministic generator (splitmix64).
struct Draw(u64);

impl Draw {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % n
    }
}

fn build(dir: &Path, streams: u64, batched: bool) {
    let options = FileStoreOptions {
        durability: Durability::None,
        ..FileStoreOptions::default()
    };
    let store = FileStore::open_with(dir, options).expect("open the store to build");
    let stream = |s: u64| format!("cart-{s:08}");
    let event = |s: u64, round: u64| NewEvent::new("ProductAdded", 1, payload(s, round));
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
        for k in (1..order.len()).rev() {
            order.swap(k, draw.below(k as u64 + 1) as usize);
        }
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
        let mut out = std::io::BufWriter::new(std::fs::File::create(&path).expect("raw log"));
        store
            .visit_all(1, &mut |e| {
                use std::io::Write;
                out.write_all(&(e.payload.len() as u32).to_le_bytes())
                    .and_then(|()| out.write_all(&crc32c::crc32c(e.payload).to_le_bytes()))
                    .and_then(|()| out.write_all(e.payload))
                    .expect("write the raw log");
                ControlFlow::Continue(())
            })
            .expect("replay");
        drop(out);
        for _ in 0..setting("PROBE_REPLAYS", 1) {
            let start = Instant::now();
            let events = raw_replay(&path, decode);
            eprintln!(
                "raw replay: {events} events in {:.1} ms",
                start.elapsed().as_secs_f64() * 1e3
            );
        }
    }
}

/// Reads the raw log at `path` through a 1 MiB buffer, checking each record's CRC and,
/// with `decode`, decoding its payload; returns the records.
#[inline(never)]
fn raw_replay(path: &Path, decode: bool) -> u64 {
    use std::io::Read;
    let mut file = std::fs::File::open(path).expect("open the raw log");
    let mut buf = vec![0u8; 1 << 20];
    let (mut start, mut end, mut count) = (0usize, 0usize, 0u64);
    loop {
        let len = buf[start..end]
            .first_chunk::<4>()
            .map(|l| u32::from_le_bytes(*l) as usize);
        if len.is_none_or(|len| end - start < 8 + len) {
            buf.copy_within(start..end, 0);
            end -= start;
            start = 0;
            let got = file.read(&mut buf[end..]).expect("read the raw log");
            if got == 0 {
                return count;
            }
            end += got;
            continue;
        }
        let len = len.unwrap_or(0);
        let crc = u32::from_le_bytes(buf[start + 4..start + 8].try_into().expect("4 bytes"));
        let body = &buf[start + 8..start + 8 + len];
        assert_eq!(crc32c::crc32c(body), crc, "raw log damaged");
        count += u64::from(counts(body, decode));
        start += 8 + len;
    }
}

/// Whether a replayed payload counts: decoded into the typed event when `decode`, as the
/// replay rows of `store_vs_sqlite` do, its quantity positive; else not empty.
#[inline(always)]
fn counts(payload: &[u8], decode: bool) -> bool {
    if decode {
        let text = std::str::from_utf8(payload).expect("UTF-8");
        let typed: ProductAdded = serde_json::from_str(text).expect("decode");
        typed.quantity > 0
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
