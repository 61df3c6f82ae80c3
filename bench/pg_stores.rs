//! Event stores on PostgreSQL, measured in one run on one server: es-store-pg's `PgStore`
//! against cqrs-es's `postgres-es` (the Rust peer), beside the file store (durable) and
//! SQLite (WAL, `synchronous=FULL`), all on the same ~160-byte JSON events.
//!
//! `cargo bench -p es-bench --bench pg_stores` prints the server's version and settings,
//! the raw `fdatasync` time of a small write measured between the rounds, and a Markdown
//! table of medians and ratios. The server is `ES_PG_URL` when set, else a throwaway
//! server started in a temporary directory (the es-store-pg tests' routine, included
//! below), with `fsync` on. `ES_BENCH_QUICK=1` shrinks every workload for a smoke run;
//! `ES_BENCH_ONLY=single,concurrent,batch,large,latency` runs some workloads only.
//!
//! Every measurement runs on a fresh store (a fresh PostgreSQL schema, a fresh directory),
//! and the stores take turns: each round runs every store once, in a rotated order.

#[allow(dead_code)] // the tests' restart is not needed here
#[path = "../es-store-pg/tests/common/server.rs"]
mod server;
mod support;

use cqrs_es::persist::{PersistedEventRepository, PersistedEventStore, SerializedEvent};
use cqrs_es::{Aggregate, DomainEvent, EventStore as _};
use es_core::subscription::Subscription;
use es_core::{EventStore, ExpectedVersion, NewEvent};
use es_store_fs::{Durability, FileStore, FileStoreOptions};
use es_store_pg::{PgStore, PgStoreOptions};
use postgres_es::PostgresEventRepository;
use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{ProductAdded, Sqlite, fdatasync_time};

// ---------------------------------------------------------------------------------------
// The events

fn product_added(stream: u64, version: u64) -> ProductAdded {
    let i = stream * 10 + version;
    ProductAdded {
        cart_id: stream_id(stream),
        product_id: format!("product-{:06}", i % 997),
        quantity: 1 + (i % 5) as u32,
        unit_price_cents: 199 + i % 5000,
        currency: "EUR".into(),
        note: "gift wrap please, leave at door".into(),
    }
}

fn stream_id(stream: u64) -> String {
    format!("cart-{stream:08}")
}

/// The event as es-core stores take it (`version` is the stream version it gets, from 1).
fn new_event(stream: u64, version: u64) -> NewEvent {
    let payload = serde_json::to_vec(&product_added(stream, version)).unwrap();
    NewEvent::new("ProductAdded", 1, payload)
}

/// The event as postgres-es takes it: the same payload, cqrs-es's empty metadata.
fn serialized_event(stream: u64, version: u64) -> SerializedEvent {
    SerializedEvent::new(
        stream_id(stream),
        version as usize,
        Cart::TYPE.into(),
        "ProductAdded".into(),
        "1.0".into(),
        serde_json::to_value(product_added(stream, version)).unwrap(),
        serde_json::Value::Object(Default::default()),
    )
}

impl DomainEvent for ProductAdded {
    fn event_type(&self) -> String {
        "ProductAdded".into()
    }

    fn event_version(&self) -> String {
        "1.0".into()
    }
}

/// The cqrs-es aggregate the events belong to (cqrs-es types every read by one).
#[derive(Debug, Default, Serialize, Deserialize)]
struct Cart {
    items: u64,
}

impl Aggregate for Cart {
    const TYPE: &'static str = "Cart";
    type Command = ();
    type Event = ProductAdded;
    type Error = std::convert::Infallible;
    type Services = ();

    async fn handle(
        &mut self,
        _command: (),
        _services: &(),
        _sink: &cqrs_es::event_sink::EventSink<Self>,
    ) -> Result<(), Self::Error> {
        Ok(())
    }

    fn apply(&mut self, _event: ProductAdded) {
        self.items += 1;
    }
}

// ---------------------------------------------------------------------------------------
// The stores

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Pg,
    PgEs,
    Fs,
    Sqlite,
}

const KINDS: [Kind; 4] = [Kind::Pg, Kind::PgEs, Kind::Fs, Kind::Sqlite];

/// Stream numbers each writer draws from: many streams, so that appends rarely meet.
const STREAMS_PER_WRITER: u64 = 10_000;
const WRITERS: u64 = 16;
/// Writers that build the large stores: more than `WRITERS`, for larger group commits.
const BUILD_WRITERS: u64 = 64;

/// A small deterministic generator (splitmix64): the same stream order for every store.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % n
    }
}

/// One writer's appends: `(stream, version before the append)`.
type Plan = Vec<(u64, u64)>;

/// The appends of writer `writer`, to streams drawn at random among `STREAMS_PER_WRITER`
/// of its own.
fn plan(writer: u64, appends: u64, per_append: u64) -> Plan {
    let mut rng = Rng(writer * 7919 + 1);
    let mut versions = std::collections::HashMap::new();
    (0..appends)
        .map(|_| {
            let stream = writer * 1_000_000 + rng.below(STREAMS_PER_WRITER);
            let version = versions.entry(stream).or_insert(0u64);
            let before = *version;
            *version += per_append;
            (stream, before)
        })
        .collect()
}

fn new_events(stream: u64, before: u64, n: u64) -> Vec<NewEvent> {
    (before + 1..=before + n)
        .map(|v| new_event(stream, v))
        .collect()
}

fn serialized_events(stream: u64, before: u64, n: u64) -> Vec<SerializedEvent> {
    (before + 1..=before + n)
        .map(|v| serialized_event(stream, v))
        .collect()
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

/// `url` with a session setting added (`name=value`), in either form of connection string.
fn with_setting(url: &str, setting: &str) -> String {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let sep = if url.contains('?') { '&' } else { '?' };
        format!(
            "{url}{sep}options=-c%20{}",
            setting.replace('=', "%3D").replace(' ', "%20")
        )
    } else {
        format!("{url} options='-c {setting}'")
    }
}

// ---------------------------------------------------------------------------------------
// The run

struct Bench {
    quick: bool,
    only: Option<Vec<String>>,
    url: String,
    admin: postgres::Client,
    rt: tokio::runtime::Runtime,
    root: tempfile::TempDir,
    rounds: usize,
    /// The median `fdatasync` time of each probe (one per round).
    syncs: Vec<Duration>,
    /// Schemas this run created, dropped at the end.
    schemas: Vec<String>,
    rows: Vec<Row>,
}

/// A line of the table: the figure of each store (`None`: not measured) and the target.
struct Row {
    workload: String,
    unit: Unit,
    figures: [Option<f64>; 4],
    target: Target,
}

#[derive(Clone, Copy)]
enum Unit {
    Rate,
    Micros,
    Millis,
    Bytes,
}

impl Unit {
    fn higher_is_better(self) -> bool {
        matches!(self, Unit::Rate)
    }

    fn show(self, v: f64) -> String {
        match self {
            Unit::Rate if v >= 1e6 => format!("{:.2} M events/s", v / 1e6),
            Unit::Rate => format!("{} events/s", thousands(v)),
            Unit::Micros => format!("{v:.0} µs"),
            Unit::Millis => format!("{v:.2} ms"),
            Unit::Bytes => format!("{v:.0} B"),
        }
    }
}

fn thousands(v: f64) -> String {
    let s = format!("{:.0}", v);
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

enum Target {
    None,
    /// PgStore's advantage over postgres-es at least this.
    OverPeer(f64),
    /// PgStore's figure below this (milliseconds).
    BelowMillis(f64),
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

impl Bench {
    fn enabled(&self, name: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|o| o.iter().any(|n| n == name))
    }

    fn scale(&self, full: u64, quick: u64) -> u64 {
        if self.quick { quick } else { full }
    }

    fn dir(&self, name: &str) -> PathBuf {
        let d = self.root.path().join(name);
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn fresh_schema(&mut self) -> String {
        let name = format!("bench_{}", uuid::Uuid::new_v4().simple());
        self.schemas.push(name.clone());
        name
    }

    fn drop_schema(&mut self, schema: &str) {
        self.admin
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .unwrap();
        self.schemas.retain(|s| s != schema);
    }

    fn pg_store(&self, url: &str, schema: &str) -> PgStore {
        PgStore::connect_with(
            url,
            PgStoreOptions {
                schema: schema.into(),
                ..PgStoreOptions::default()
            },
        )
        .unwrap()
    }

    /// postgres-es's tables, as its documentation gives them, in their own schema.
    fn pges_tables(&mut self, schema: &str) {
        self.admin
            .batch_execute(&format!(
                "CREATE SCHEMA {schema};
                 CREATE TABLE {schema}.events (
                     aggregate_type text NOT NULL,
                     aggregate_id text NOT NULL,
                     sequence bigint CHECK (sequence >= 0) NOT NULL,
                     event_type text NOT NULL,
                     event_version text NOT NULL,
                     payload json NOT NULL,
                     metadata json NOT NULL,
                     PRIMARY KEY (aggregate_type, aggregate_id, sequence)
                 );
                 CREATE TABLE {schema}.snapshots (
                     aggregate_type text NOT NULL,
                     aggregate_id text NOT NULL,
                     last_sequence bigint CHECK (last_sequence >= 0) NOT NULL,
                     current_snapshot bigint CHECK (current_snapshot >= 0) NOT NULL,
                     payload json NOT NULL,
                     PRIMARY KEY (aggregate_type, aggregate_id, last_sequence)
                 );"
            ))
            .unwrap();
    }

    /// A postgres-es repository on the tables in `schema`, with a pool of `WRITERS`
    /// connections (its helper `default_postgress_pool` opens 10).
    fn pges_repo(&self, url: &str, schema: &str) -> PostgresEventRepository {
        let options = PgConnectOptions::from_str(url).unwrap();
        let pool = self.rt.block_on(async {
            PgPoolOptions::new()
                .max_connections(WRITERS as u32)
                .connect_with(options)
                .await
                .unwrap()
        });
        PostgresEventRepository::new(pool)
            .with_tables(&format!("{schema}.events"), &format!("{schema}.snapshots"))
    }

    /// Total size of the tables in `schema` (with their indexes and TOAST).
    fn schema_bytes(&mut self, schema: &str) -> u64 {
        let bytes: i64 = self
            .admin
            .query_one(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::int8 FROM pg_class c
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = $1 AND c.relkind = 'r'",
                &[&schema],
            )
            .unwrap()
            .get(0);
        bytes as u64
    }

    fn vacuum(&mut self, tables: &[String]) {
        for t in tables {
            self.admin
                .batch_execute(&format!("VACUUM ANALYZE {t}"))
                .unwrap();
        }
        self.admin.batch_execute("CHECKPOINT").unwrap();
    }

    /// Measures the raw `fdatasync` time between rounds, and says it.
    fn probe_sync(&mut self) {
        let t = fdatasync_time(self.root.path());
        eprintln!("  raw fdatasync of a 200-byte write: {t:?}");
        self.syncs.push(t);
    }

    fn row(&mut self, workload: String, unit: Unit, figures: [Option<f64>; 4], target: Target) {
        eprintln!(
            "{workload}: {}",
            KINDS
                .iter()
                .zip(figures)
                .filter_map(|(k, f)| f.map(|f| format!("{k:?} {}", unit.show(f))))
                .collect::<Vec<_>>()
                .join(", ")
        );
        self.rows.push(Row {
            workload,
            unit,
            figures,
            target,
        });
    }

    /// Runs `measure` for every store in `kinds`, `rounds` times, the stores taking turns
    /// in a rotated order, a sync probe before each round; the median per store.
    fn rounds(
        &mut self,
        kinds: &[Kind],
        mut measure: impl FnMut(&mut Bench, Kind) -> f64,
    ) -> [Option<f64>; 4] {
        let mut results: [Vec<f64>; 4] = Default::default();
        for round in 0..self.rounds {
            self.probe_sync();
            for i in 0..kinds.len() {
                let kind = kinds[(i + round) % kinds.len()];
                let v = measure(self, kind);
                results[kind as usize].push(v);
            }
        }
        results.map(|r| (!r.is_empty()).then(|| median(&r)))
    }
}

// ---------------------------------------------------------------------------------------
// Appends: one writer, and 16 writers

/// One writer: `appends` appends of `per_append` events to random streams; events/s.
fn sequential(b: &mut Bench, kind: Kind, appends: u64, per_append: u64) -> f64 {
    let plan = plan(0, appends, per_append);
    let n = appends * per_append;
    let elapsed = match kind {
        Kind::Pg => {
            let schema = b.fresh_schema();
            let store = b.pg_store(&b.url, &schema);
            let batches: Vec<_> = plan
                .iter()
                .map(|&(s, v)| (stream_id(s), v, new_events(s, v, per_append)))
                .collect();
            let start = Instant::now();
            for (stream, v, events) in batches {
                store
                    .append(&stream, ExpectedVersion::Exact(v), events)
                    .unwrap();
            }
            let elapsed = start.elapsed();
            drop(store);
            b.drop_schema(&schema);
            elapsed
        }
        Kind::PgEs => {
            let schema = b.fresh_schema();
            b.pges_tables(&schema);
            let repo = b.pges_repo(&b.url, &schema);
            let batches: Vec<_> = plan
                .iter()
                .map(|&(s, v)| serialized_events(s, v, per_append))
                .collect();
            let elapsed = b.rt.block_on(async {
                let start = Instant::now();
                for events in batches {
                    repo.persist::<Cart>(&events, None).await.unwrap();
                }
                start.elapsed()
            });
            drop(repo);
            b.drop_schema(&schema);
            elapsed
        }
        Kind::Fs => {
            let dir = b.dir("fs");
            let store = fs_store(&dir, Durability::Always);
            let batches: Vec<_> = plan
                .iter()
                .map(|&(s, v)| (stream_id(s), v, new_events(s, v, per_append)))
                .collect();
            let start = Instant::now();
            for (stream, v, events) in batches {
                store
                    .append(&stream, ExpectedVersion::Exact(v), events)
                    .unwrap();
            }
            start.elapsed()
        }
        Kind::Sqlite => {
            let dir = b.dir("sqlite");
            let mut db = Sqlite::open(&dir.join("events.db"), true);
            let batches: Vec<_> = plan
                .iter()
                .map(|&(s, v)| (stream_id(s), v, new_events(s, v, per_append)))
                .collect();
            let start = Instant::now();
            for (stream, v, events) in batches {
                db.append(&stream, v, &events);
            }
            start.elapsed()
        }
    };
    n as f64 / elapsed.as_secs_f64()
}

/// `WRITERS` writers (threads; tokio tasks for postgres-es), each `per_writer` appends of
/// one event to random streams of its own; events/s.
fn concurrent(b: &mut Bench, kind: Kind, per_writer: u64) -> f64 {
    let plans: Vec<Plan> = (0..WRITERS).map(|w| plan(w, per_writer, 1)).collect();
    let n = WRITERS * per_writer;
    let threads = |append: &(dyn Fn(&Plan) + Sync)| -> Duration {
        let start = Instant::now();
        std::thread::scope(|s| {
            for plan in &plans {
                s.spawn(move || append(plan));
            }
        });
        start.elapsed()
    };
    let elapsed = match kind {
        Kind::Pg => {
            let schema = b.fresh_schema();
            let store = b.pg_store(&b.url, &schema);
            let elapsed = threads(&|plan| {
                for &(s, v) in plan {
                    store
                        .append(
                            &stream_id(s),
                            ExpectedVersion::Exact(v),
                            new_events(s, v, 1),
                        )
                        .unwrap();
                }
            });
            let stats = store.write_stats();
            eprintln!(
                "  PgStore group commit: {} appends in {} transactions ({:.1} per transaction)",
                stats.appends,
                stats.transactions,
                stats.appends as f64 / stats.transactions.max(1) as f64
            );
            drop(store);
            b.drop_schema(&schema);
            elapsed
        }
        Kind::PgEs => {
            let schema = b.fresh_schema();
            b.pges_tables(&schema);
            let repo = Arc::new(b.pges_repo(&b.url, &schema));
            let elapsed = b.rt.block_on(async {
                let start = Instant::now();
                let tasks: Vec<_> = plans
                    .iter()
                    .map(|plan| {
                        let repo = Arc::clone(&repo);
                        let plan = plan.clone();
                        tokio::spawn(async move {
                            for (s, v) in plan {
                                repo.persist::<Cart>(&serialized_events(s, v, 1), None)
                                    .await
                                    .unwrap();
                            }
                        })
                    })
                    .collect();
                for t in tasks {
                    t.await.unwrap();
                }
                start.elapsed()
            });
            drop(repo);
            b.drop_schema(&schema);
            elapsed
        }
        Kind::Fs => {
            let dir = b.dir("fs");
            let store = fs_store(&dir, Durability::Always);
            threads(&|plan| {
                for &(s, v) in plan {
                    store
                        .append(
                            &stream_id(s),
                            ExpectedVersion::Exact(v),
                            new_events(s, v, 1),
                        )
                        .unwrap();
                }
            })
        }
        Kind::Sqlite => {
            let dir = b.dir("sqlite");
            let path = dir.join("events.db");
            drop(Sqlite::open(&path, true));
            threads(&|plan| {
                let mut db = Sqlite::open(&path, true);
                for &(s, v) in plan {
                    db.append(&stream_id(s), v, &new_events(s, v, 1));
                }
            })
        }
    };
    n as f64 / elapsed.as_secs_f64()
}

// ---------------------------------------------------------------------------------------
// A large store: replay, stream loads, bytes per event

/// The stores of `streams * 10` events, written one event per append, streams interleaved
/// (every stream's first event, then every stream's second, ...).
struct Large {
    streams: u64,
    pg_schema: String,
    pges_schema: String,
    fs_dir: PathBuf,
    sqlite_path: PathBuf,
}

fn build_large(b: &mut Bench, streams: u64) -> Large {
    let n = streams * 10;
    // the build is not measured: PostgreSQL commits without waiting for the WAL flush
    let unsynced = with_setting(&b.url, "synchronous_commit=off");
    let setting: String = postgres::Client::connect(&unsynced, postgres::NoTls)
        .unwrap()
        .query_one("SHOW synchronous_commit", &[])
        .unwrap()
        .get(0);
    assert_eq!(
        setting, "off",
        "the build's connections commit without waiting"
    );
    let mine = move |w: u64| (w..streams).step_by(BUILD_WRITERS as usize);

    let start = Instant::now();
    let pg_schema = b.fresh_schema();
    {
        let store = b.pg_store(&unsynced, &pg_schema);
        std::thread::scope(|s| {
            for w in 0..BUILD_WRITERS {
                let store = &store;
                s.spawn(move || {
                    for v in 0..10 {
                        for stream in mine(w) {
                            store
                                .append(
                                    &stream_id(stream),
                                    ExpectedVersion::Exact(v),
                                    vec![new_event(stream, v + 1)],
                                )
                                .unwrap();
                        }
                    }
                });
            }
        });
        let stats = store.write_stats();
        eprintln!(
            "  PgStore build: {} appends in {} transactions",
            stats.appends, stats.transactions
        );
    }
    b.vacuum(&[
        format!("{pg_schema}.es_events"),
        format!("{pg_schema}.es_streams"),
    ]);
    eprintln!("  built PgStore's {n} events in {:?}", start.elapsed());

    let start = Instant::now();
    let pges_schema = b.fresh_schema();
    b.pges_tables(&pges_schema);
    {
        let repo = Arc::new(b.pges_repo(&unsynced, &pges_schema));
        b.rt.block_on(async {
            let tasks: Vec<_> = (0..BUILD_WRITERS)
                .map(|w| {
                    let repo = Arc::clone(&repo);
                    tokio::spawn(async move {
                        for v in 0..10 {
                            for stream in mine(w) {
                                repo.persist::<Cart>(&[serialized_event(stream, v + 1)], None)
                                    .await
                                    .unwrap();
                            }
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
        });
    }
    b.vacuum(&[format!("{pges_schema}.events")]);
    eprintln!("  built postgres-es's {n} events in {:?}", start.elapsed());

    let start = Instant::now();
    let fs_dir = b.dir("fs-large");
    {
        let store = fs_store(&fs_dir, Durability::None);
        for v in 0..10 {
            for stream in 0..streams {
                store
                    .append(
                        &stream_id(stream),
                        ExpectedVersion::Exact(v),
                        vec![new_event(stream, v + 1)],
                    )
                    .unwrap();
            }
        }
        store.close().unwrap();
    }
    eprintln!(
        "  built the file store's {n} events in {:?}",
        start.elapsed()
    );

    let start = Instant::now();
    let sqlite_path = b.dir("sqlite-large").join("events.db");
    {
        let mut db = Sqlite::open(&sqlite_path, false);
        let tx = db.conn.transaction().unwrap();
        {
            let mut insert = tx
                .prepare(
                    "INSERT INTO events (stream_id, version, event_id, event_type, schema_version, recorded_at, metadata, payload)
                     VALUES (?1, ?2, ?3, ?4, ?5, 0, NULL, ?6)",
                )
                .unwrap();
            for v in 0..10 {
                for stream in 0..streams {
                    let e = new_event(stream, v + 1);
                    insert
                        .execute(params![
                            stream_id(stream),
                            v + 1,
                            &e.event_id.as_bytes()[..],
                            e.event_type,
                            e.schema_version,
                            std::str::from_utf8(&e.payload).unwrap()
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
    eprintln!("  built SQLite's {n} events in {:?}", start.elapsed());

    Large {
        streams,
        pg_schema,
        pges_schema,
        fs_dir,
        sqlite_path,
    }
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

/// The readers of the large stores, opened once.
struct Readers {
    pg: PgStore,
    pges_repo: PostgresEventRepository,
    pges_store: PersistedEventStore<PostgresEventRepository, Cart>,
    fs: FileStore,
    sqlite: Connection,
}

fn replay(b: &Bench, r: &Readers, kind: Kind, n: u64) -> f64 {
    let start = Instant::now();
    let mut count = 0u64;
    match kind {
        Kind::Pg => {
            for e in r.pg.read_all(1).unwrap() {
                let typed: ProductAdded = serde_json::from_slice(&e.unwrap().payload).unwrap();
                count += u64::from(typed.quantity > 0);
            }
        }
        Kind::PgEs => {
            b.rt.block_on(async {
                let mut events = r.pges_repo.stream_all_events::<Cart>().await.unwrap();
                while let Some(e) = events.next::<Cart>(&[]).await {
                    count += u64::from(e.unwrap().payload.quantity > 0);
                }
            });
        }
        Kind::Fs => {
            for e in r.fs.read_all(1).unwrap() {
                let typed: ProductAdded = serde_json::from_slice(&e.unwrap().payload).unwrap();
                count += u64::from(typed.quantity > 0);
            }
        }
        Kind::Sqlite => {
            let mut stmt = r
                .sqlite
                .prepare_cached(
                    "SELECT stream_id, version, event_id, event_type, schema_version, recorded_at, metadata, payload
                     FROM events ORDER BY position",
                )
                .unwrap();
            let mut rows = stmt.query([]).unwrap();
            while let Some(row) = rows.next().unwrap() {
                let _stream: String = row.get(0).unwrap();
                let payload = row.get_ref(7).unwrap().as_str().unwrap();
                let typed: ProductAdded = serde_json::from_str(payload).unwrap();
                count += u64::from(typed.quantity > 0);
            }
        }
    }
    assert_eq!(count, n, "{kind:?} replayed {count} of {n} events");
    n as f64 / start.elapsed().as_secs_f64()
}

/// Loads `lookups` random 10-event streams, decoded; microseconds per stream.
fn load(b: &Bench, r: &Readers, kind: Kind, streams: u64, lookups: u64) -> f64 {
    let mut rng = Rng(42);
    let ids: Vec<String> = (0..lookups)
        .map(|_| stream_id(rng.below(streams)))
        .collect();
    let start = Instant::now();
    match kind {
        Kind::Pg => {
            for id in &ids {
                let events: Vec<ProductAdded> =
                    r.pg.read_stream(id, 1)
                        .unwrap()
                        .map(|e| serde_json::from_slice(&e.unwrap().payload).unwrap())
                        .collect();
                assert_eq!(events.len(), 10);
            }
        }
        Kind::PgEs => {
            b.rt.block_on(async {
                for id in &ids {
                    let events = r.pges_store.load_events(id).await.unwrap();
                    assert_eq!(events.len(), 10);
                }
            });
        }
        Kind::Fs => {
            for id in &ids {
                let events: Vec<ProductAdded> =
                    r.fs.read_stream(id, 1)
                        .unwrap()
                        .map(|e| serde_json::from_slice(&e.unwrap().payload).unwrap())
                        .collect();
                assert_eq!(events.len(), 10);
            }
        }
        Kind::Sqlite => {
            let mut stmt = r
                .sqlite
                .prepare_cached(
                    "SELECT version, event_id, event_type, schema_version, recorded_at, metadata, payload
                     FROM events WHERE stream_id = ?1 ORDER BY version",
                )
                .unwrap();
            for id in &ids {
                let mut rows = stmt.query(params![id]).unwrap();
                let mut count = 0;
                while let Some(row) = rows.next().unwrap() {
                    let payload = row.get_ref(6).unwrap().as_str().unwrap();
                    let _: ProductAdded = serde_json::from_str(payload).unwrap();
                    count += 1;
                }
                assert_eq!(count, 10);
            }
        }
    }
    start.elapsed().as_secs_f64() * 1e6 / lookups as f64
}

fn large(b: &mut Bench) {
    let streams = b.scale(100_000, 2_000);
    let n = streams * 10;
    let store = build_large(b, streams);
    let readers = Readers {
        pg: b.pg_store(&b.url, &store.pg_schema),
        pges_repo: b.pges_repo(&b.url, &store.pges_schema),
        pges_store: PersistedEventStore::new_event_store(b.pges_repo(&b.url, &store.pges_schema)),
        fs: FileStore::open(&store.fs_dir).unwrap(),
        sqlite: Connection::open(&store.sqlite_path).unwrap(),
    };

    let pg_bytes = b.schema_bytes(&store.pg_schema);
    let pges_bytes = b.schema_bytes(&store.pges_schema);
    let fs_bytes = dir_bytes(&store.fs_dir);
    let sqlite_bytes = std::fs::metadata(&store.sqlite_path).unwrap().len();
    let per = |bytes: u64| Some(bytes as f64 / n as f64);
    b.row(
        format!("bytes per event ({n} events)"),
        Unit::Bytes,
        [
            per(pg_bytes),
            per(pges_bytes),
            per(fs_bytes),
            per(sqlite_bytes),
        ],
        Target::None,
    );

    let figures = b.rounds(&KINDS, |b, kind| replay(b, &readers, kind, n));
    b.row(
        format!("full replay of {n} events, decoded to typed events"),
        Unit::Rate,
        figures,
        Target::OverPeer(1.5),
    );

    let figures = b.rounds(&KINDS, |b, kind| {
        let lookups = match kind {
            Kind::Pg | Kind::PgEs => b.scale(5_000, 300),
            Kind::Fs | Kind::Sqlite => b.scale(20_000, 1_000),
        };
        load(b, &readers, kind, store.streams, lookups)
    });
    b.row(
        format!("load one 10-event stream among {n} events"),
        Unit::Micros,
        figures,
        Target::OverPeer(1.0),
    );
    drop(readers);
    b.drop_schema(&store.pg_schema);
    b.drop_schema(&store.pges_schema);
}

// ---------------------------------------------------------------------------------------
// Delivery to a live subscriber

/// Appends `warm_up + events` single events, a random 1–4 ms apart, while a subscriber
/// follows the log. For each event after the warm-up, in ms: the delay from the start of
/// its append to its delivery, and from the append's acknowledgement to its delivery
/// (zero when the subscriber had it first).
fn delivery(b: &mut Bench, kind: Kind, events: usize) -> (Vec<f64>, Vec<f64>) {
    let warm_up = 20;
    let total = warm_up + events;
    let follow = |store: &dyn EventStore, ready: &std::sync::Barrier| -> Vec<Instant> {
        let mut sub = Subscription::new(store, 1);
        ready.wait();
        (0..total)
            .map(|i| {
                let e = sub.next_timeout(Duration::from_secs(30)).unwrap().unwrap();
                assert_eq!(e.position, i as u64 + 1);
                Instant::now()
            })
            .collect()
    };
    let write = |store: &dyn EventStore| -> Vec<(Instant, Instant)> {
        let mut rng = Rng(7);
        (0..total as u64)
            .map(|i| {
                std::thread::sleep(Duration::from_micros(1000 + rng.below(3000)));
                if i == warm_up as u64 {
                    // the subscriber is listening by now
                    std::thread::sleep(Duration::from_millis(200));
                }
                let sent = Instant::now();
                store
                    .append(
                        &stream_id(i % 100),
                        ExpectedVersion::Any,
                        vec![new_event(i % 100, i / 100 + 1)],
                    )
                    .unwrap();
                (sent, Instant::now())
            })
            .collect()
    };
    let ready = std::sync::Barrier::new(2);
    let (sent, received) = match kind {
        Kind::Pg => {
            // the subscriber has a store of its own, as another process would: only the
            // server's notification (or its poll) tells it of an append
            let schema = b.fresh_schema();
            let writer = b.pg_store(&b.url, &schema);
            let reader = b.pg_store(&b.url, &schema);
            let out = std::thread::scope(|s| {
                let sub = s.spawn(|| follow(&reader, &ready));
                ready.wait();
                let sent = write(&writer);
                (sent, sub.join().unwrap())
            });
            drop((writer, reader));
            b.drop_schema(&schema);
            out
        }
        Kind::Fs => {
            let dir = b.dir("fs-live");
            let store = fs_store(&dir, Durability::Always);
            std::thread::scope(|s| {
                let sub = s.spawn(|| follow(&store, &ready));
                ready.wait();
                let sent = write(&store);
                (sent, sub.join().unwrap())
            })
        }
        Kind::PgEs | Kind::Sqlite => unreachable!("no live subscription to measure"),
    };
    let ms = |from: Instant, to: Instant| to.saturating_duration_since(from).as_secs_f64() * 1e3;
    sent.iter()
        .zip(&received)
        .skip(warm_up)
        .map(|(&(sent, acked), &got)| (ms(sent, got), ms(acked, got)))
        .unzip()
}

fn latency(b: &mut Bench) {
    let events = b.scale(300, 30) as usize;
    let mut all: [Vec<f64>; 4] = Default::default();
    let mut after_ack: [Vec<f64>; 4] = Default::default();
    for round in 0..b.rounds {
        b.probe_sync();
        let order = if round % 2 == 0 {
            [Kind::Pg, Kind::Fs]
        } else {
            [Kind::Fs, Kind::Pg]
        };
        for kind in order {
            let (from_start, from_ack) = delivery(b, kind, events);
            all[kind as usize].extend(from_start);
            after_ack[kind as usize].extend(from_ack);
        }
    }
    let stat = |all: &[Vec<f64>; 4], p: f64| {
        all.clone().map(|mut v| {
            (!v.is_empty()).then(|| {
                v.sort_by(f64::total_cmp);
                percentile(&v, p)
            })
        })
    };
    b.row(
        "start of an append to its delivery to a live subscriber, median".into(),
        Unit::Millis,
        stat(&all, 0.5),
        Target::BelowMillis(5.0),
    );
    b.row(
        "start of an append to its delivery to a live subscriber, p99".into(),
        Unit::Millis,
        stat(&all, 0.99),
        Target::None,
    );
    b.row(
        "acknowledgement of an append to its delivery, median".into(),
        Unit::Millis,
        stat(&after_ack, 0.5),
        Target::None,
    );
    b.row(
        "acknowledgement of an append to its delivery, p99".into(),
        Unit::Millis,
        stat(&after_ack, 0.99),
        Target::None,
    );
}

// ---------------------------------------------------------------------------------------

/// The server's version and the settings that decide durability and commit speed.
fn server_settings(admin: &mut postgres::Client) -> String {
    let names = [
        "server_version",
        "fsync",
        "synchronous_commit",
        "wal_sync_method",
        "full_page_writes",
        "commit_delay",
        "shared_buffers",
        "work_mem",
        "max_wal_size",
    ];
    names
        .iter()
        .map(|name| {
            let v: String = admin
                .query_one(&format!("SHOW {name}"), &[])
                .unwrap()
                .get(0);
            format!("{name}={v}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn print_table(b: &Bench) {
    println!(
        "| workload | PgStore | postgres-es | es-store-fs | SQLite | PgStore vs postgres-es | target |"
    );
    println!("|---|---|---|---|---|---|---|");
    for r in &b.rows {
        let show = |f: Option<f64>| f.map_or("-".to_string(), |v| r.unit.show(v));
        let [pg, pges, fs, sq] = r.figures;
        // above 1: PgStore is better (faster, smaller)
        let advantage = match (pg, pges) {
            (Some(pg), Some(pges)) if r.unit.higher_is_better() => Some(pg / pges),
            (Some(pg), Some(pges)) => Some(pges / pg),
            _ => None,
        };
        let ratio = advantage.map_or("-".to_string(), |a| format!("{a:.2}x"));
        let target = match (&r.target, advantage, pg) {
            (Target::OverPeer(t), Some(a), _) => {
                format!("≥ {t}x: {}", if a >= *t { "met" } else { "**not met**" })
            }
            (Target::BelowMillis(t), _, Some(pg)) => {
                format!("< {t} ms: {}", if pg < *t { "met" } else { "**not met**" })
            }
            _ => "-".into(),
        };
        println!(
            "| {} | {} | {} | {} | {} | {ratio} | {target} |",
            r.workload,
            show(pg),
            show(pges),
            show(fs),
            show(sq)
        );
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches` smoke-runs nothing here
    }
    let quick = std::env::var_os("ES_BENCH_QUICK").is_some();
    let only = std::env::var("ES_BENCH_ONLY")
        .ok()
        .map(|s| s.split(',').map(str::to_owned).collect());
    let started = Instant::now();

    // the server: ES_PG_URL, or a throwaway one with fsync on (PostgreSQL's default)
    let mut _server = None;
    let url = match std::env::var("ES_PG_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => {
            let s = server::Server::start_with(&["shared_buffers=256MB", "max_wal_size=4GB"])
                .unwrap_or_else(|e| {
                    panic!("no ES_PG_URL, and no throwaway PostgreSQL server could be started: {e}")
                });
            let url = s.url.clone();
            _server = Some(s);
            url
        }
    };
    let mut admin = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let settings = server_settings(&mut admin);
    eprintln!("server: {settings}");
    let root = tempfile::tempdir_in(
        std::env::var_os("ES_BENCH_DIR").unwrap_or_else(|| std::env::temp_dir().into()),
    )
    .unwrap();
    let mut b = Bench {
        quick,
        only,
        url,
        admin,
        rt: tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap(),
        root,
        rounds: if quick { 1 } else { 3 },
        syncs: Vec::new(),
        schemas: Vec::new(),
        rows: Vec::new(),
    };

    if b.enabled("single") {
        let appends = b.scale(1_000, 100);
        let figures = b.rounds(&KINDS, |b, kind| sequential(b, kind, appends, 1));
        b.row(
            "durable, 1 writer, 1 event per append".into(),
            Unit::Rate,
            figures,
            Target::None,
        );
    }
    if b.enabled("concurrent") {
        let per_writer = b.scale(250, 20);
        let figures = b.rounds(&KINDS, |b, kind| concurrent(b, kind, per_writer));
        b.row(
            format!("durable, {WRITERS} writers, 1 event per append"),
            Unit::Rate,
            figures,
            Target::OverPeer(3.0),
        );
    }
    if b.enabled("batch") {
        let appends = b.scale(200, 10);
        let figures = b.rounds(&KINDS, |b, kind| sequential(b, kind, appends, 100));
        b.row(
            "durable, 1 writer, 100 events per append".into(),
            Unit::Rate,
            figures,
            Target::None,
        );
    }
    if b.enabled("large") {
        large(&mut b);
    }
    if b.enabled("latency") {
        latency(&mut b);
    }

    for schema in b.schemas.clone() {
        b.drop_schema(&schema);
    }
    let syncs: Vec<f64> = b.syncs.iter().map(|d| d.as_secs_f64() * 1e6).collect();
    println!("PostgreSQL server: {settings}");
    if !syncs.is_empty() {
        println!(
            "raw fdatasync of a 200-byte write, median of 50 per round ({} rounds): median {:.0} µs, range {:.0}..{:.0} µs",
            syncs.len(),
            median(&syncs),
            syncs.iter().copied().fold(f64::INFINITY, f64::min),
            syncs.iter().copied().fold(0.0, f64::max)
        );
    }
    println!("run took {:.0} s", started.elapsed().as_secs_f64());
    println!();
    print_table(&b);
}
