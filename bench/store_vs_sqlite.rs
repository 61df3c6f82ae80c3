//! The file store against an events table in SQLite (rusqlite, WAL), measured in one run
//! on the same events: ~160-byte JSON payloads, 10 events per stream.
//!
//! Two shapes of history are measured wherever they differ. *Commands*: one event per
//! append, the stream of each append drawn at random, streams interleaved in the log (what
//! an application whose commands each decide one event writes). *Batched*: each stream
//! written as one 10-event append, streams in order (the flattering shape: a stream is one
//! frame). Every row names its shape. The raw `fdatasync` time of a small write on the
//! same disk is measured before each scenario and printed with the table.
//!
//! `cargo bench -p es-bench --bench store_vs_sqlite` prints a Markdown table of medians
//! and ratios. `ES_BENCH_QUICK=1` shrinks every workload (for a smoke run);
//! `ES_BENCH_ONLY=name,name` runs some scenarios only.

mod support;

use es_core::{EventStore, ExpectedVersion, NewEvent};
use es_store_fs::{Durability, FileStore, FileStoreOptions};
use rusqlite::{Connection, params};
use std::ops::ControlFlow;
use std::path::Path;
use std::time::{Duration, Instant};
use support::{
    Draw, ProductAdded, Sqlite, decode, fdatasync_time, payload, raw_replay, write_raw_log,
};

fn event(i: u64) -> NewEvent {
    NewEvent::new("ProductAdded", 1, payload(i))
}

fn stream_of(i: u64) -> String {
    format!("cart-{:08}", i / 10)
}

/// Which streams the appends of a workload go to.
#[derive(Clone, Copy)]
enum Streams {
    /// Every append starts a stream of its own, in order.
    Fresh,
    /// Every append goes to a stream drawn at random among this many.
    Random(u64),
}

/// One append of a workload: stream, the version it expects, events.
type Planned = (String, u64, Vec<NewEvent>);

/// `appends` appends of `per_append` events each; `prefix` keeps concurrent writers'
/// streams apart.
fn plan(prefix: &str, appends: u64, per_append: u64, streams: Streams, seed: u64) -> Vec<Planned> {
    let mut draw = Draw(seed);
    let mut versions = std::collections::HashMap::new();
    (0..appends)
        .map(|a| {
            let first = a * per_append;
            let events = (first..first + per_append).map(event).collect();
            let (stream, expected) = match streams {
                Streams::Fresh => (format!("cart-{prefix}{a:08}"), 0),
                Streams::Random(k) => {
                    let s = draw.below(k);
                    let v = versions.entry(s).or_insert(0u64);
                    let expected = *v;
                    *v += per_append;
                    (format!("cart-{prefix}{s:08}"), expected)
                }
            };
            (stream, expected, events)
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n.is_multiple_of(2) {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    } else {
        v[n / 2]
    }
}

struct Row {
    sync: String,
    scenario: String,
    ours: String,
    baseline: String,
    ratio: String,
    target: String,
}

struct Bench {
    quick: bool,
    only: Option<Vec<String>>,
    rows: Vec<Row>,
    sync: String,
    root: tempfile::TempDir,
    runs: usize,
}

impl Bench {
    /// Rounds of the replay and load scenarios, whose ratios are medians of per-round
    /// ratios: more than `runs`, because a round is short and the machine drifts; an
    /// even number, so that each of the two orders a round runs its systems in (see
    /// `replay_and_loads`) counts as often.
    fn rounds(&self) -> usize {
        if self.runs == 1 { 1 } else { 8 }
    }

    /// Whether scenario `name` runs; if so, measures the disk's sync time first.
    fn enabled(&mut self, name: &str) -> bool {
        let on = self
            .only
            .as_ref()
            .is_none_or(|o| o.iter().any(|n| n == name));
        if on {
            let t = fdatasync_time(self.root.path());
            self.sync = format!("{:.2} ms", t.as_secs_f64() * 1e3);
            eprintln!("{name}: raw fdatasync {}", self.sync);
        }
        on
    }

    fn dir(&self, name: &str) -> std::path::PathBuf {
        let d = self.root.path().join(name);
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn scale(&self, n: u64) -> u64 {
        if self.quick { (n / 20).max(10) } else { n }
    }

    fn row(&mut self, scenario: &str, ours: String, baseline: String, ratio: f64, target: &str) {
        eprintln!("{scenario}: ours {ours}, baseline {baseline}, ratio {ratio:.2}");
        self.rows.push(Row {
            sync: self.sync.clone(),
            scenario: scenario.into(),
            ours,
            baseline,
            ratio: format!("{ratio:.2}x"),
            target: target.into(),
        });
    }
}

fn rate(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn fmt_rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2} M events/s", r / 1e6)
    } else {
        format!("{:.0} events/s", r)
    }
}

fn fs_store(dir: &Path, durability: Durability) -> FileStore {
    FileStore::open_with(
        dir,
        FileStoreOptions {
            durability,
            ..FileStoreOptions::default()
        },
    )
    .unwrap()
}

/// Runs `plan` with one writer on the file store.
fn fs_sequential(dir: &Path, durability: Durability, plan: Vec<Planned>) -> Duration {
    let store = fs_store(dir, durability);
    let start = Instant::now();
    for (stream, expected, events) in plan {
        store
            .append(&stream, ExpectedVersion::Exact(expected), events)
            .unwrap();
    }
    start.elapsed()
}

/// Runs `plan` with one writer on SQLite.
fn sqlite_sequential(dir: &Path, durable: bool, plan: Vec<Planned>) -> Duration {
    let mut db = Sqlite::open(&dir.join("events.db"), durable);
    let start = Instant::now();
    for (stream, expected, events) in plan {
        db.append(&stream, expected, &events);
    }
    start.elapsed()
}

fn durable_appends(
    b: &mut Bench,
    name: &str,
    appends: u64,
    per_append: u64,
    streams: Streams,
    target: &str,
) {
    let n = b.scale(appends);
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for run in 0..b.runs {
        let d = b.dir("fs");
        let p = plan("", n, per_append, streams, run as u64);
        ours.push(rate(
            n * per_append,
            fs_sequential(&d, Durability::Always, p),
        ));
        let d = b.dir("sqlite");
        let p = plan("", n, per_append, streams, run as u64);
        theirs.push(rate(n * per_append, sqlite_sequential(&d, true, p)));
    }
    let (o, t) = (median(ours), median(theirs));
    b.row(name, fmt_rate(o), fmt_rate(t), o / t, target);
}

/// Each writer's workload: one event per append to a stream drawn at random among its
/// own 1,000.
fn writer_plans(threads: u64, per_thread: u64) -> Vec<Vec<Planned>> {
    (0..threads)
        .map(|t| plan(&format!("{t:03}-"), per_thread, 1, Streams::Random(1000), t))
        .collect()
}

/// `threads` writers, each appending `per_thread` single events to its own streams.
/// Prints how many appends each group commit carried and where a commit cycle's time
/// went: writing and syncing, and everything else (queueing, waking).
fn fs_concurrent(dir: &Path, threads: u64, per_thread: u64) -> Duration {
    let store = fs_store(dir, Durability::Always);
    let plans = writer_plans(threads, per_thread);
    let start = Instant::now();
    std::thread::scope(|s| {
        for p in plans {
            let store = &store;
            s.spawn(move || {
                for (stream, expected, events) in p {
                    store
                        .append(&stream, ExpectedVersion::Exact(expected), events)
                        .unwrap();
                }
            });
        }
    });
    let elapsed = start.elapsed();
    let s = store.write_stats();
    let flushes = s.flushes.max(1) as f64;
    let cycle = elapsed.as_secs_f64() * 1e6 / flushes;
    let io = s.io_time.as_secs_f64() * 1e6 / flushes;
    eprintln!(
        "  group commit, {threads} writers: {} appends in {} syncs ({:.1} per sync); cycle {cycle:.0} us: write + fdatasync {io:.0} us, outside {:.0} us",
        s.appends,
        s.flushes,
        s.appends as f64 / flushes,
        cycle - io,
    );
    elapsed
}

fn sqlite_concurrent(dir: &Path, threads: u64, per_thread: u64) -> Duration {
    let path = dir.join("events.db");
    drop(Sqlite::open(&path, true));
    let plans = writer_plans(threads, per_thread);
    let start = Instant::now();
    std::thread::scope(|s| {
        for p in plans {
            let path = path.clone();
            s.spawn(move || {
                let mut db = Sqlite::open(&path, true);
                for (stream, expected, events) in p {
                    db.append(&stream, expected, &events);
                }
            });
        }
    });
    start.elapsed()
}

fn concurrent_writers(b: &mut Bench) {
    let per_thread = b.scale(400);
    let mut single = Vec::new();
    let mut ours: Vec<(u64, Vec<f64>)> =
        [2u64, 4, 16, 64].iter().map(|&t| (t, Vec::new())).collect();
    let mut theirs_multi = Vec::new();
    for _ in 0..b.runs {
        let n = 16 * per_thread;
        let d = b.dir("sqlite");
        let p = plan("", n / 4, 1, Streams::Random(10_000), 7);
        single.push(rate(n / 4, sqlite_sequential(&d, true, p)));
        for (threads, rates) in &mut ours {
            let d = b.dir("fs");
            rates.push(rate(
                *threads * per_thread,
                fs_concurrent(&d, *threads, per_thread),
            ));
        }
        let d = b.dir("sqlite16");
        theirs_multi.push(rate(n, sqlite_concurrent(&d, 16, per_thread)));
    }
    let s1 = median(single);
    for (threads, rates) in ours {
        let o = median(rates);
        let target = match threads {
            16 => ">= 10x",
            64 => "above 16 writers",
            _ => "(for reference)",
        };
        b.row(
            &format!(
                "durable, {threads} writers, 1 event per append, random streams (baseline: SQLite, 1 writer)"
            ),
            fmt_rate(o),
            fmt_rate(s1),
            o / s1,
            target,
        );
        if threads == 16 {
            let s16 = median(std::mem::take(&mut theirs_multi));
            b.row(
                "durable, 16 writers, 1 event per append, random streams (baseline: SQLite, 16 writers)",
                fmt_rate(o),
                fmt_rate(s16),
                o / s16,
                "(for reference)",
            );
        }
    }
}

fn bulk_no_sync(b: &mut Bench) {
    for (name, appends, per_append, streams, target) in [
        (
            "no fsync, 1 event per append, random streams among 100,000 (SQLite synchronous=OFF)",
            b.scale(200_000),
            1,
            Streams::Random(100_000),
            "(commands shape)",
        ),
        (
            "no fsync, bulk: 100 events per append, a new stream each (SQLite synchronous=OFF)",
            b.scale(10_000),
            100,
            Streams::Fresh,
            ">= 1,000,000 events/s",
        ),
    ] {
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for run in 0..b.runs {
            let d = b.dir("fs");
            let p = plan("", appends, per_append, streams, run as u64);
            ours.push(rate(
                appends * per_append,
                fs_sequential(&d, Durability::None, p),
            ));
            let d = b.dir("sqlite");
            let p = plan("", appends, per_append, streams, run as u64);
            theirs.push(rate(appends * per_append, sqlite_sequential(&d, false, p)));
        }
        let (o, t) = (median(ours), median(theirs));
        b.row(name, fmt_rate(o), fmt_rate(t), o / t, target);
    }
}

/// The shape of a stored history: how its events were appended.
#[derive(Clone, Copy, PartialEq)]
enum Shape {
    /// One event per append; every stream gets 10 events, the streams interleaved at
    /// random (ten rounds, each over all streams in a shuffled order).
    Commands,
    /// Each stream written as one 10-event append, streams in order.
    Batched,
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Shape::Commands => "commands shape: 1 event per append, streams interleaved",
            Shape::Batched => "batched shape: 10 events per append, streams in order",
        }
    }

    fn tag(self) -> &'static str {
        match self {
            Shape::Commands => "commands",
            Shape::Batched => "batched",
        }
    }

    /// The appends that build `n` events of this shape: (stream number, events' first
    /// version, event numbers).
    fn appends(self, n: u64) -> Vec<(u64, u64, std::ops::Range<u64>)> {
        let streams = n / 10;
        match self {
            Shape::Batched => (0..streams).map(|s| (s, 1, s * 10..s * 10 + 10)).collect(),
            Shape::Commands => {
                let mut draw = Draw(42);
                let mut order: Vec<u64> = (0..streams).collect();
                let mut out = Vec::with_capacity(n as usize);
                for round in 0..10 {
                    draw.shuffle(&mut order);
                    out.extend(
                        order
                            .iter()
                            .map(|&s| (s, round + 1, s * 10 + round..s * 10 + round + 1)),
                    );
                }
                out
            }
        }
    }
}

/// Builds a store of `n` events of `shape` (no fsync), and the same rows in SQLite in the
/// same order.
fn build_both(
    b: &Bench,
    n: u64,
    shape: Shape,
    tag: &str,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let appends = shape.appends(n);
    let fs_dir = b.dir(&format!("fs-{tag}-{}", shape.tag()));
    {
        let store = fs_store(&fs_dir, Durability::None);
        for (s, first_version, events) in &appends {
            let events = events.clone().map(event).collect();
            store
                .append(
                    &stream_of(s * 10),
                    ExpectedVersion::Exact(first_version - 1),
                    events,
                )
                .unwrap();
        }
        store.close().unwrap();
    }
    let sq_dir = b.dir(&format!("sqlite-{tag}-{}", shape.tag()));
    {
        let mut db = Sqlite::open(&sq_dir.join("events.db"), false);
        let tx = db.conn.transaction().unwrap();
        {
            let mut insert = tx
                .prepare("INSERT INTO events (stream_id, version, event_id, event_type, schema_version, recorded_at, metadata, payload) VALUES (?1, ?2, ?3, 'ProductAdded', 1, 0, NULL, ?4)")
                .unwrap();
            for (s, first_version, events) in &appends {
                for (k, i) in events.clone().enumerate() {
                    let id = uuid::Uuid::new_v4();
                    insert
                        .execute(params![
                            stream_of(s * 10),
                            first_version + k as u64,
                            &id.as_bytes()[..],
                            std::str::from_utf8(&payload(i)).unwrap()
                        ])
                        .unwrap();
                }
            }
        }
        tx.commit().unwrap();
        db.conn
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
            .unwrap();
    }
    (fs_dir, sq_dir)
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

/// Writes the same `n` payloads as an independent raw log (see `support::write_raw_log`).
fn build_raw_log(b: &Bench, n: u64) -> std::path::PathBuf {
    let path = b.dir("raw").join("raw.log");
    write_raw_log(&path, (0..n).map(payload));
    path
}

/// Replays the log into typed events, each event lent by the store (`visit_all`), as
/// the SQLite loop borrows each row's payload.
fn typed_replay_fs(store: &FileStore) -> u64 {
    let mut count = 0u64;
    store
        .visit_all(1, &mut |e| {
            let typed = decode(e.payload);
            count += u64::from(typed.quantity > 0);
            ControlFlow::Continue(())
        })
        .unwrap();
    count
}

/// Replays the log into typed events through owned events (`read_all`).
fn typed_replay_fs_owned(store: &FileStore) -> u64 {
    let mut count = 0u64;
    for e in store.read_all(1).unwrap() {
        let e = e.unwrap();
        let typed = decode(&e.payload);
        count += u64::from(typed.quantity > 0);
    }
    count
}

fn typed_replay_sqlite(conn: &Connection) -> u64 {
    let mut stmt = conn
        .prepare("SELECT stream_id, version, event_id, event_type, schema_version, recorded_at, metadata, payload FROM events ORDER BY position")
        .unwrap();
    let mut rows = stmt.query([]).unwrap();
    let mut count = 0u64;
    while let Some(row) = rows.next().unwrap() {
        let payload = row.get_ref(7).unwrap().as_str().unwrap();
        let typed: ProductAdded = serde_json::from_str(payload).unwrap();
        let _stream: String = row.get(0).unwrap();
        count += u64::from(typed.quantity > 0);
    }
    count
}

/// Mean microseconds to load one 10-event stream, decoded, over 20,000 random streams.
fn load_fs(store: &FileStore, streams: u64) -> f64 {
    let lookups = 20_000u64;
    let mut draw = Draw(9);
    let start = Instant::now();
    for _ in 0..lookups {
        let s = stream_of(draw.below(streams) * 10);
        let mut events = Vec::new();
        store
            .visit_stream(&s, 1, &mut |e| {
                events.push(decode(e.payload));
                ControlFlow::Continue(())
            })
            .unwrap();
        assert_eq!(events.len(), 10);
    }
    start.elapsed().as_secs_f64() * 1e6 / lookups as f64
}

/// Mean microseconds to decode ten payloads as a load does, without reading them: the
/// part of a load that every store pays the same.
fn decode_ten() -> f64 {
    let lookups = 20_000u64;
    let payloads: Vec<Vec<u8>> = (0..1_000).map(payload).collect();
    let mut draw = Draw(9);
    let start = Instant::now();
    for _ in 0..lookups {
        let from = draw.below(990) as usize;
        let mut events = Vec::new();
        for p in &payloads[from..from + 10] {
            events.push(decode(p));
        }
        assert_eq!(std::hint::black_box(events).len(), 10);
    }
    start.elapsed().as_secs_f64() * 1e6 / lookups as f64
}

fn load_sqlite(conn: &Connection, streams: u64) -> f64 {
    let lookups = 20_000u64;
    let mut draw = Draw(9);
    let mut stmt = conn
        .prepare_cached("SELECT version, event_id, event_type, schema_version, recorded_at, metadata, payload FROM events WHERE stream_id = ?1 ORDER BY version")
        .unwrap();
    let start = Instant::now();
    for _ in 0..lookups {
        let s = stream_of(draw.below(streams) * 10);
        let mut rows = stmt.query(params![s]).unwrap();
        let mut count = 0;
        while let Some(row) = rows.next().unwrap() {
            let payload = row.get_ref(6).unwrap().as_str().unwrap();
            let _: ProductAdded = serde_json::from_str(payload).unwrap();
            count += 1;
        }
        assert_eq!(count, 10);
    }
    start.elapsed().as_secs_f64() * 1e6 / lookups as f64
}

fn replay_and_loads(b: &mut Bench) {
    let n = b.scale(1_000_000);
    let small = b.scale(10_000);
    let raw = build_raw_log(b, n);
    for shape in [Shape::Commands, Shape::Batched] {
        let (fs_dir, sq_dir) = build_both(b, n, shape, "large");
        let seg_bytes: u64 = std::fs::read_dir(&fs_dir)
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".seg"))
            .map(|e| e.metadata().unwrap().len())
            .sum();
        let total = dir_bytes(&fs_dir);
        let sqlite_bytes = dir_bytes(&sq_dir);
        b.row(
            &format!(
                "bytes on disk per event, {n} events, log only / with index ({})",
                shape.name()
            ),
            format!(
                "{:.0} / {:.0} B",
                seg_bytes as f64 / n as f64,
                total as f64 / n as f64
            ),
            format!("{:.0} B", sqlite_bytes as f64 / n as f64),
            sqlite_bytes as f64 / total as f64,
            "<= 200 B",
        );

        // open time of a cleanly closed store
        let mut opens = Vec::new();
        for _ in 0..b.runs.max(5) {
            let start = Instant::now();
            let store = FileStore::open(&fs_dir).unwrap();
            opens.push(start.elapsed().as_secs_f64() * 1e3);
            assert!(!store.recovery_report().index_rebuilt);
            drop(store);
        }
        b.row(
            &format!("open a cleanly closed {n}-event store ({})", shape.name()),
            format!("{:.1} ms", median(opens)),
            "-".into(),
            f64::NAN,
            "< 100 ms",
        );

        // full replay decoded to typed events; the independent raw log as the limit
        let store = FileStore::open(&fs_dir).unwrap();
        let conn = Connection::open(sq_dir.join("events.db")).unwrap();
        let (mut ours, mut theirs, mut limit) = (Vec::new(), Vec::new(), Vec::new());
        let mut owned = Vec::new();
        // rounds of all four, in turn, the order reversed every other round; each ratio is
        // the median of the rounds' ratios, so that the machine's drift between rounds
        // does not enter it
        let replays: [&dyn Fn() -> u64; 4] = [
            &|| typed_replay_fs(&store),
            &|| typed_replay_fs_owned(&store),
            &|| typed_replay_sqlite(&conn),
            &|| raw_replay(&raw, |p| decode(p).quantity > 0),
        ];
        for round in 0..b.rounds() {
            let mut rates = [0.0; 4];
            let mut order = [0, 1, 2, 3];
            if round % 2 == 1 {
                order.reverse();
            }
            for k in order {
                let start = Instant::now();
                assert_eq!(replays[k](), n);
                rates[k] = rate(n, start.elapsed());
            }
            ours.push(rates[0]);
            owned.push(rates[1]);
            theirs.push(rates[2]);
            limit.push(rates[3]);
        }
        let ratio = |a: &[f64], b: &[f64]| median(a.iter().zip(b).map(|(a, b)| a / b).collect());
        let (vs_sqlite, vs_raw, owned_vs_sqlite) = (
            ratio(&ours, &theirs),
            ratio(&ours, &limit),
            ratio(&owned, &theirs),
        );
        let (o, t, l, ow) = (median(ours), median(theirs), median(limit), median(owned));
        b.row(
            &format!(
                "full replay of {n} events, lent by the store (`visit_all`), decoded to typed events ({})",
                shape.name()
            ),
            fmt_rate(o),
            fmt_rate(t),
            vs_sqlite,
            ">= 1.5x",
        );
        b.row(
            &format!(
                "full replay against an independent raw log (length + CRC-32C + payload, read, checked, decoded) of the same payloads ({})",
                shape.name()
            ),
            fmt_rate(o),
            format!("{} (raw log)", fmt_rate(l)),
            vs_raw,
            ">= 0.8x",
        );
        b.row(
            &format!(
                "full replay of {n} events through owned events (`read_all`), decoded to typed events ({})",
                shape.name()
            ),
            fmt_rate(ow),
            fmt_rate(t),
            owned_vs_sqlite,
            "(for reference)",
        );

        // loading one 10-event stream, at n and at 10k events in the store
        let (fs_small, sq_small) = build_both(b, small, shape, "small");
        let store_small = FileStore::open(&fs_small).unwrap();
        let conn_small = Connection::open(sq_small.join("events.db")).unwrap();
        let (mut ol, mut os, mut tl, mut ts) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut dec = Vec::new();
        for round in 0..b.rounds() {
            // the same two orders as the replays'
            let mut order = [0, 1, 2, 3, 4];
            if round % 2 == 1 {
                order.reverse();
            }
            for k in order {
                match k {
                    0 => ol.push(load_fs(&store, n / 10)),
                    1 => tl.push(load_sqlite(&conn, n / 10)),
                    2 => os.push(load_fs(&store_small, small / 10)),
                    3 => ts.push(load_sqlite(&conn_small, small / 10)),
                    _ => dec.push(decode_ten()),
                }
            }
        }
        let (large_ratio, small_ratio) = (ratio(&tl, &ol), ratio(&ts, &os));
        let (ol, os, tl, ts) = (median(ol), median(os), median(tl), median(ts));
        let dec = median(dec);
        b.row(
            &format!(
                "load one 10-event stream (`visit_stream`), {n} events in store ({})",
                shape.name()
            ),
            format!("{ol:.1} us"),
            format!("{tl:.1} us"),
            large_ratio,
            ">= 3x",
        );
        b.row(
            &format!(
                "load one 10-event stream (`visit_stream`), {small} events in store ({})",
                shape.name()
            ),
            format!("{os:.1} us"),
            format!("{ts:.1} us"),
            small_ratio,
            ">= 3x",
        );
        // what a store that cost nothing could reach: SQLite's load over the decode alone
        b.row(
            &format!(
                "decoding a load's 10 payloads alone, the part both loads share: SQLite's load at {n} / {small} events over it is the best ratio any store could reach ({})",
                shape.name()
            ),
            format!("{dec:.1} us"),
            format!("{tl:.1} / {ts:.1} us"),
            tl / dec,
            &format!("{:.1}x / {:.1}x at most", tl / dec, ts / dec),
        );

        // the id map for idempotent retries may be built on the first append after open
        drop(store);
        let mut firsts = Vec::new();
        for i in 0..b.runs {
            let store = FileStore::open(&fs_dir).unwrap();
            let start = Instant::now();
            store
                .append(
                    &format!("first-{i}"),
                    ExpectedVersion::NoStream,
                    vec![event(i as u64)],
                )
                .unwrap();
            firsts.push(start.elapsed().as_secs_f64() * 1e3);
        }
        b.row(
            &format!(
                "first append after opening the {n}-event store ({})",
                shape.name()
            ),
            format!("{:.1} ms", median(firsts)),
            "-".into(),
            f64::NAN,
            "< 50 ms",
        );
    }
}

/// Loading one aggregate of 100,000 events: full replay against a snapshot.
fn snapshot_load(b: &mut Bench) {
    use es_core::Repository;
    use es_core::snapshot::{Snapshot, SnapshotStore};
    use es_core::testing::counter::{Counter, SnapCounter};
    let n = b.scale(100_000);
    let dir = b.dir("snap");
    let store = fs_store(&dir, Durability::None);
    let mut v = 0;
    while v < n {
        let k = 1000.min(n - v);
        let batch = (v..v + k)
            .map(|i| NewEvent::new("Added", 1, format!(r#"{{"n":{}}}"#, i % 7).into_bytes()))
            .collect();
        store
            .append("counter-1", ExpectedVersion::Exact(v), batch)
            .unwrap();
        v += k;
    }
    // the snapshot is `behind` events older than the head, as a policy of one snapshot
    // every 100 events leaves it at worst
    let behind = 100.min(n / 2);
    let at = n - behind;
    let then = Repository::<Counter, _>::new(&store)
        .load_at("1", at)
        .unwrap();
    let state = serde_json::to_vec(&SnapCounter {
        total: then.total,
        events: then.events,
    })
    .unwrap();
    // anchored to the event at `at` as the store recorded it, as the repository anchors
    // the snapshots it takes
    let event = store
        .read_stream("counter-1", at)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    store
        .save_snapshot(&Snapshot {
            stream_id: "counter-1".into(),
            version: at,
            position: event.position,
            last_event_at: event.timestamp,
            snapshot_version: 1,
            fingerprint: 0,
            state,
        })
        .unwrap();
    let (mut replay, mut snap) = (Vec::new(), Vec::new());
    for _ in 0..b.runs.max(5) {
        let start = Instant::now();
        let a = Repository::<Counter, _>::new(&store).load("1").unwrap();
        replay.push(start.elapsed().as_secs_f64() * 1e3);
        let start = Instant::now();
        let s = Repository::<SnapCounter, _>::new(&store).load("1").unwrap();
        snap.push(start.elapsed().as_secs_f64() * 1e3);
        assert_eq!((a.total, a.version), (s.total, s.version));
    }
    // every load started from that snapshot: none replaced it
    let newest = store.load_snapshot("counter-1", u64::MAX).unwrap();
    assert_eq!(
        newest.map(|s| s.version),
        Some(at),
        "the snapshot loaded from"
    );
    let (r, s) = (median(replay), median(snap));
    b.row(
        &format!(
            "load a {n}-event aggregate: from a snapshot {behind} events behind the head vs full replay (file store)"
        ),
        format!("{s:.3} ms"),
        format!("{r:.1} ms (replay)"),
        r / s,
        "(faster with snapshot)",
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches` smoke-runs nothing here
    }
    let quick = std::env::var_os("ES_BENCH_QUICK").is_some();
    let only = std::env::var("ES_BENCH_ONLY")
        .ok()
        .map(|s| s.split(',').map(str::to_owned).collect());
    let mut b = Bench {
        quick,
        only,
        rows: Vec::new(),
        sync: String::new(),
        root: tempfile::tempdir_in(
            std::env::var_os("ES_BENCH_DIR").unwrap_or_else(|| std::env::temp_dir().into()),
        )
        .unwrap(),
        runs: if quick { 1 } else { 3 },
    };
    if b.enabled("single") {
        durable_appends(
            &mut b,
            "durable, 1 writer, 1 event per append, random streams among 10,000",
            2000,
            1,
            Streams::Random(10_000),
            ">= 1x",
        );
    }
    if b.enabled("concurrent") {
        concurrent_writers(&mut b);
    }
    if b.enabled("batch") {
        durable_appends(
            &mut b,
            "durable, 1 writer, 100 events per append, a new stream each",
            300,
            100,
            Streams::Fresh,
            ">= 7x",
        );
    }
    if b.enabled("bulk") {
        bulk_no_sync(&mut b);
    }
    if b.enabled("snapshot") {
        snapshot_load(&mut b);
    }
    if b.enabled("replay") {
        replay_and_loads(&mut b);
    }
    println!("| scenario | es-store-fs | SQLite | ratio | target | raw fdatasync |");
    println!("|---|---|---|---|---|---|");
    for r in &b.rows {
        let ratio = if r.ratio == "NaNx" { "-" } else { &r.ratio };
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            r.scenario, r.ours, r.baseline, ratio, r.target, r.sync
        );
    }
}
