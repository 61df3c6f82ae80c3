//! The file store against an events table in SQLite (rusqlite, WAL), measured in one run
//! on the same events: ~160-byte JSON payloads, 10 events per stream.
//!
//! `cargo bench -p es-bench --bench store_vs_sqlite` prints a Markdown table of medians
//! and ratios. `ES_BENCH_QUICK=1` shrinks every workload (for a smoke run);
//! `ES_BENCH_ONLY=name,name` runs some scenarios only.

use es_core::{EventStore, ExpectedVersion, NewEvent};
use es_store_fs::{Durability, FileStore, FileStoreOptions};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Deserialize;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct ProductAdded {
    cart_id: String,
    product_id: String,
    quantity: u32,
    unit_price_cents: u64,
    currency: String,
    note: String,
}

fn payload(i: u64) -> Vec<u8> {
    let p = format!(
        r#"{{"cart_id":"cart-{:08}","product_id":"product-{:06}","quantity":{},"unit_price_cents":{},"currency":"EUR","note":"{}"}}"#,
        i / 10,
        i % 997,
        1 + i % 5,
        199 + i % 5000,
        "gift wrap please, leave at door"
    );
    p.into_bytes()
}

fn event(i: u64) -> NewEvent {
    NewEvent::new("ProductAdded", 1, payload(i))
}

fn stream_of(i: u64) -> String {
    format!("cart-{:08}", i / 10)
}

struct Sqlite {
    conn: Connection,
}

impl Sqlite {
    fn open(path: &Path, durable: bool) -> Sqlite {
        let conn = Connection::open(path).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.pragma_update(None, "synchronous", if durable { "FULL" } else { "OFF" })
            .unwrap();
        conn.busy_timeout(Duration::from_secs(60)).unwrap();
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS events (
                position INTEGER PRIMARY KEY,
                stream_id TEXT NOT NULL,
                version INTEGER NOT NULL,
                event_id BLOB NOT NULL,
                event_type TEXT NOT NULL,
                schema_version INTEGER NOT NULL,
                recorded_at INTEGER NOT NULL,
                metadata TEXT,
                payload TEXT NOT NULL,
                UNIQUE(stream_id, version)
            );",
        )
        .unwrap();
        Sqlite { conn }
    }

    /// An append as a user would write it: check the expected version, insert, commit.
    fn append(&mut self, stream: &str, expected: u64, events: &[NewEvent]) {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .unwrap();
        let current: u64 = tx
            .prepare_cached("SELECT max(version) FROM events WHERE stream_id = ?1")
            .unwrap()
            .query_row(params![stream], |r| r.get::<_, Option<u64>>(0))
            .optional()
            .unwrap()
            .flatten()
            .unwrap_or(0);
        assert_eq!(current, expected, "sqlite conflict");
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO events (stream_id, version, event_id, event_type, schema_version, recorded_at, metadata, payload)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL, ?7)",
                )
                .unwrap();
            let now = 1_700_000_000_000_000i64;
            for (i, e) in events.iter().enumerate() {
                insert
                    .execute(params![
                        stream,
                        current + 1 + i as u64,
                        &e.event_id.as_bytes()[..],
                        e.event_type,
                        e.schema_version,
                        now,
                        std::str::from_utf8(&e.payload).unwrap()
                    ])
                    .unwrap();
            }
        }
        tx.commit().unwrap();
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

struct Row {
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
    root: tempfile::TempDir,
    runs: usize,
}

impl Bench {
    fn enabled(&self, name: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|o| o.iter().any(|n| n == name))
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

/// Appends `appends` batches of `per_append` events, one writer, each to a fresh stream
/// of 10 events in turn.
fn fs_sequential(dir: &Path, durability: Durability, appends: u64, per_append: u64) -> Duration {
    let store = fs_store(dir, durability);
    let batches: Vec<(String, u64, Vec<NewEvent>)> = (0..appends)
        .map(|a| {
            let first = a * per_append;
            let stream = format!("cart-{a:08}");
            (stream, 0, (first..first + per_append).map(event).collect())
        })
        .collect();
    let start = Instant::now();
    for (stream, expected, events) in batches {
        store
            .append(&stream, ExpectedVersion::Exact(expected), events)
            .unwrap();
    }
    start.elapsed()
}

fn sqlite_sequential(dir: &Path, durable: bool, appends: u64, per_append: u64) -> Duration {
    let mut db = Sqlite::open(&dir.join("events.db"), durable);
    let batches: Vec<(String, Vec<NewEvent>)> = (0..appends)
        .map(|a| {
            let first = a * per_append;
            (
                format!("cart-{a:08}"),
                (first..first + per_append).map(event).collect(),
            )
        })
        .collect();
    let start = Instant::now();
    for (stream, events) in batches {
        db.append(&stream, 0, &events);
    }
    start.elapsed()
}

fn durable_appends(b: &mut Bench, name: &str, appends: u64, per_append: u64, target: &str) {
    let n = b.scale(appends);
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..b.runs {
        let d = b.dir("fs");
        ours.push(rate(
            n * per_append,
            fs_sequential(&d, Durability::Always, n, per_append),
        ));
        let d = b.dir("sqlite");
        theirs.push(rate(
            n * per_append,
            sqlite_sequential(&d, true, n, per_append),
        ));
    }
    let (o, t) = (median(ours), median(theirs));
    b.row(name, fmt_rate(o), fmt_rate(t), o / t, target);
}

/// `threads` writers, each appending `per_thread` single events to its own streams.
fn fs_concurrent(dir: &Path, threads: u64, per_thread: u64) -> Duration {
    let store = Arc::new(fs_store(dir, Durability::Always));
    let _report = GroupReport(Arc::clone(&store));
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let store = Arc::clone(&store);
            s.spawn(move || {
                for i in 0..per_thread {
                    let stream = format!("cart-{t:03}-{:06}", i / 10);
                    store
                        .append(&stream, ExpectedVersion::Exact(i % 10), vec![event(i)])
                        .unwrap();
                }
            });
        }
    });
    start.elapsed()
}

/// Prints how many appends each group commit carried.
struct GroupReport(Arc<FileStore>);

impl Drop for GroupReport {
    fn drop(&mut self) {
        let s = self.0.write_stats();
        eprintln!(
            "  group commit: {} appends in {} syncs ({:.1} per sync)",
            s.appends,
            s.flushes,
            s.appends as f64 / s.flushes.max(1) as f64
        );
    }
}

fn sqlite_concurrent(dir: &Path, threads: u64, per_thread: u64) -> Duration {
    let path = dir.join("events.db");
    drop(Sqlite::open(&path, true));
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let path = path.clone();
            s.spawn(move || {
                let mut db = Sqlite::open(&path, true);
                for i in 0..per_thread {
                    let stream = format!("cart-{t:03}-{:06}", i / 10);
                    db.append(&stream, i % 10, &[event(i)]);
                }
            });
        }
    });
    start.elapsed()
}

fn concurrent_writers(b: &mut Bench) {
    let threads = 16;
    let per_thread = b.scale(400);
    let n = threads * per_thread;
    let (mut ours, mut theirs_single, mut theirs_multi) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..b.runs {
        let d = b.dir("fs");
        ours.push(rate(n, fs_concurrent(&d, threads, per_thread)));
        let d = b.dir("sqlite");
        theirs_single.push(rate(n / 4, sqlite_sequential(&d, true, n / 4, 1)));
        let d = b.dir("sqlite16");
        theirs_multi.push(rate(n, sqlite_concurrent(&d, threads, per_thread)));
    }
    let (o, s1, s16) = (median(ours), median(theirs_single), median(theirs_multi));
    b.row(
        "durable, 16 writers, 1 event per append (baseline: SQLite, 1 writer)",
        fmt_rate(o),
        fmt_rate(s1),
        o / s1,
        ">= 10x",
    );
    b.row(
        "durable, 16 writers, 1 event per append (baseline: SQLite, 16 writers)",
        fmt_rate(o),
        fmt_rate(s16),
        o / s16,
        "(for reference)",
    );
}

fn bulk_no_sync(b: &mut Bench) {
    let appends = b.scale(10_000);
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..b.runs {
        let d = b.dir("fs");
        ours.push(rate(
            appends * 100,
            fs_sequential(&d, Durability::None, appends, 100),
        ));
        let d = b.dir("sqlite");
        theirs.push(rate(
            appends * 100,
            sqlite_sequential(&d, false, appends, 100),
        ));
    }
    let (o, t) = (median(ours), median(theirs));
    b.row(
        "no fsync, bulk (100 events per append; SQLite synchronous=OFF)",
        fmt_rate(o),
        fmt_rate(t),
        o / t,
        ">= 1,000,000 events/s",
    );
}

/// Builds a store of `n` events, 10 per stream, 100 per append (no fsync), and the same
/// table in SQLite.
fn build_both(b: &Bench, n: u64, tag: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let fs_dir = b.dir(&format!("fs-{tag}"));
    {
        let store = fs_store(&fs_dir, Durability::None);
        for s in 0..n / 10 {
            let events = (s * 10..s * 10 + 10).map(event).collect();
            store
                .append(&stream_of(s * 10), ExpectedVersion::NoStream, events)
                .unwrap();
        }
        store.close().unwrap();
    }
    let sq_dir = b.dir(&format!("sqlite-{tag}"));
    {
        let mut db = Sqlite::open(&sq_dir.join("events.db"), false);
        let tx = db.conn.transaction().unwrap();
        {
            let mut insert = tx
                .prepare("INSERT INTO events (stream_id, version, event_id, event_type, schema_version, recorded_at, metadata, payload) VALUES (?1, ?2, ?3, 'ProductAdded', 1, 0, NULL, ?4)")
                .unwrap();
            for i in 0..n {
                let id = uuid::Uuid::new_v4();
                insert
                    .execute(params![
                        stream_of(i),
                        i % 10 + 1,
                        &id.as_bytes()[..],
                        std::str::from_utf8(&payload(i)).unwrap()
                    ])
                    .unwrap();
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

fn replay_and_loads(b: &mut Bench) {
    let n = b.scale(1_000_000);
    let (fs_dir, sq_dir) = build_both(b, n, "large");
    let seg_bytes: u64 = std::fs::read_dir(&fs_dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".seg"))
        .map(|e| e.metadata().unwrap().len())
        .sum();
    let total = dir_bytes(&fs_dir);
    let sqlite_bytes = dir_bytes(&sq_dir);
    b.row(
        &format!("bytes on disk per event ({n} events; log only / with index)"),
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
    let open_ms = median(opens);
    b.row(
        &format!("open a cleanly closed {n}-event store"),
        format!("{open_ms:.1} ms"),
        "-".into(),
        f64::NAN,
        "< 100 ms",
    );

    // full replay decoded to typed events
    let store = FileStore::open(&fs_dir).unwrap();
    let conn = Connection::open(sq_dir.join("events.db")).unwrap();
    let (mut ours, mut theirs, mut plain) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..b.runs {
        let start = Instant::now();
        let mut count = 0u64;
        for e in store.read_all(1).unwrap() {
            let e = e.unwrap();
            let typed: ProductAdded = serde_json::from_slice(&e.payload).unwrap();
            count += u64::from(typed.quantity > 0);
        }
        assert_eq!(count, n);
        ours.push(rate(n, start.elapsed()));

        let start = Instant::now();
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
        assert_eq!(count, n);
        theirs.push(rate(n, start.elapsed()));

        let start = Instant::now();
        plain.push(rate(plain_replay(&fs_dir), start.elapsed()));
    }
    let (o, t, p) = (median(ours), median(theirs), median(plain));
    b.row(
        &format!("full replay of {n} events, decoded to typed events"),
        fmt_rate(o),
        fmt_rate(t),
        o / t,
        ">= 1.4x",
    );
    b.row(
        "full replay against a plain read + CRC + serde_json decode of the same frames",
        fmt_rate(o),
        fmt_rate(p),
        o / p,
        ">= 0.8x",
    );

    // loading one 10-event stream, at 1M and at 10k events in the store
    let small = b.scale(10_000);
    let (fs_small, sq_small) = build_both(b, small, "small");
    let store_small = FileStore::open(&fs_small).unwrap();
    let conn_small = Connection::open(sq_small.join("events.db")).unwrap();
    let load_fs = |store: &FileStore, streams: u64| -> f64 {
        let lookups = 20_000u64;
        let start = Instant::now();
        for k in 0..lookups {
            let s = stream_of((k * 7919 % streams) * 10);
            let events: Vec<_> = store
                .read_stream(&s, 1)
                .unwrap()
                .map(|e| serde_json::from_slice::<ProductAdded>(&e.unwrap().payload).unwrap())
                .collect();
            assert_eq!(events.len(), 10);
        }
        start.elapsed().as_secs_f64() * 1e6 / lookups as f64
    };
    let load_sq = |conn: &Connection, streams: u64| -> f64 {
        let lookups = 20_000u64;
        let mut stmt = conn
            .prepare_cached("SELECT version, event_id, event_type, schema_version, recorded_at, metadata, payload FROM events WHERE stream_id = ?1 ORDER BY version")
            .unwrap();
        let start = Instant::now();
        for k in 0..lookups {
            let s = stream_of((k * 7919 % streams) * 10);
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
    };
    let (mut ol, mut os, mut tl, mut ts) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..b.runs {
        ol.push(load_fs(&store, n / 10));
        os.push(load_fs(&store_small, small / 10));
        tl.push(load_sq(&conn, n / 10));
        ts.push(load_sq(&conn_small, small / 10));
    }
    let (ol, os, tl, ts) = (median(ol), median(os), median(tl), median(ts));
    b.row(
        &format!("load one 10-event stream, {n} events in store"),
        format!("{ol:.1} us"),
        format!("{tl:.1} us"),
        tl / ol,
        ">= 4x",
    );
    b.row(
        &format!("load one 10-event stream, {small} events in store"),
        format!("{os:.1} us"),
        format!("{ts:.1} us"),
        ts / os,
        ">= 4x",
    );
    // the id map for idempotent retries is built on the first append after open
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
        &format!("first append after opening the {n}-event store (builds the id map)"),
        format!("{:.1} ms", median(firsts)),
        "-".into(),
        f64::NAN,
        "(one-off)",
    );
    b.row(
        &format!("load latency at {n} vs {small} events in store (ours)"),
        format!("{ol:.1} us"),
        format!("{os:.1} us"),
        os / ol,
        "no slower (>= ~1x)",
    );
}

/// Replays the segment files directly: read, check CRC, decode payloads, nothing else.
fn plain_replay(dir: &Path) -> u64 {
    use es_store_fs::format::{
        FRAME_PREFIX_LEN, Frame, SEGMENT_HEADER_LEN, check_frame, frame_len,
    };
    let mut segs: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    segs.sort();
    let mut count = 0;
    for seg in segs {
        let data = std::fs::read(seg).unwrap();
        let mut at = SEGMENT_HEADER_LEN;
        while at + FRAME_PREFIX_LEN <= data.len() {
            let len = frame_len(&data[at..], usize::MAX >> 1).unwrap();
            let body = check_frame(&data[at..at + len]).unwrap();
            Frame::parse(body)
                .unwrap()
                .for_each_event(|_, e| {
                    let typed: ProductAdded = serde_json::from_slice(e.payload).unwrap();
                    count += u64::from(typed.quantity > 0);
                    Ok(())
                })
                .unwrap();
            at += len;
        }
    }
    count
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
    let full = Repository::<Counter, _>::new(&store).load("1").unwrap();
    let state = serde_json::to_vec(&SnapCounter {
        total: full.total,
        events: full.events,
    })
    .unwrap();
    store
        .save_snapshot(&Snapshot {
            stream_id: "counter-1".into(),
            version: n,
            position: n,
            last_event_at: chrono::Utc::now(),
            schema_version: 1,
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
    let (r, s) = (median(replay), median(snap));
    b.row(
        &format!("load a {n}-event aggregate: snapshot vs full replay (file store)"),
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
        root: tempfile::tempdir_in(
            std::env::var_os("ES_BENCH_DIR").unwrap_or_else(|| std::env::temp_dir().into()),
        )
        .unwrap(),
        runs: if quick { 1 } else { 3 },
    };
    if b.enabled("single") {
        durable_appends(
            &mut b,
            "durable, 1 writer, 1 event per append",
            2000,
            1,
            ">= 1x",
        );
    }
    if b.enabled("concurrent") {
        concurrent_writers(&mut b);
    }
    if b.enabled("batch") {
        durable_appends(
            &mut b,
            "durable, 1 writer, 100 events per append",
            300,
            100,
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
    println!("| scenario | es-store-fs | SQLite | ratio | target |");
    println!("|---|---|---|---|---|");
    for r in &b.rows {
        let ratio = if r.ratio == "NaNx" { "-" } else { &r.ratio };
        println!(
            "| {} | {} | {} | {} | {} |",
            r.scenario, r.ours, r.baseline, ratio, r.target
        );
    }
}
