//! Positions never skip: several processes, each with several threads appending (to their
//! own streams and to one stream they all contend for), and a subscriber in another
//! process following the log live. The subscriber must see every event exactly once, in
//! position order, with no hole; every acknowledged append must be in the log where its
//! acknowledgement says; and the log must hold nothing else.
//!
//! The test binary runs itself as the child processes: `ES_PG_POSITIONS_ROLE` selects the
//! role (`writer` or `subscriber`).
mod common;

use es_core::subscription::Subscription;
use es_core::{EventStore, ExpectedVersion, NewEvent, StoreError};
use es_store_pg::{PgStore, PgStoreOptions};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const ROLE: &str = "ES_PG_POSITIONS_ROLE";
const WRITERS: u64 = 4;
const THREADS: u64 = 4;
const APPENDS: u64 = 150;
const TEST_NAME: &str = "positions_never_skip_across_processes";

#[test]
fn positions_never_skip_across_processes() {
    if let Ok(role) = std::env::var(ROLE) {
        return child(&role);
    }
    let Some(url) = common::url() else { return };
    let schema = common::fresh_schema();
    let _guard = common::SchemaGuard {
        url: url.clone(),
        schema: schema.clone(),
    };
    let store = PgStore::connect_with(&url, options(&schema)).unwrap();
    let started = Instant::now();
    let mut subscriber = spawn(&url, &schema, "subscriber", 0, true);
    let writers: Vec<Running> = (0..WRITERS)
        .map(|w| spawn(&url, &schema, "writer", w, false))
        .collect();
    let mut acks = Vec::new();
    let (mut appends, mut transactions, mut conflicts) = (0u64, 0u64, 0u64);
    for writer in writers {
        let out = wait_with_deadline(writer, Duration::from_secs(300));
        for line in out.lines() {
            let mut words = line.split_whitespace();
            match words.next() {
                Some("ACK") => acks.push(Ack::parse(words)),
                Some("STATS") => {
                    let n: Vec<u64> = words.map(|w| w.parse().unwrap()).collect();
                    appends += n[0];
                    transactions += n[1];
                    conflicts += n[2];
                }
                _ => {}
            }
        }
    }
    let writing = started.elapsed();
    let head = store.head_position().unwrap();
    {
        let mut stdin = subscriber.child.stdin.take().unwrap();
        writeln!(stdin, "{head}").unwrap();
    }
    let out = wait_with_deadline(subscriber, Duration::from_secs(120));
    let mut seen = Vec::new();
    let mut seen_live = 0;
    for line in out.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("SEEN") => {
                let position: u64 = words.next().unwrap().parse().unwrap();
                let id: uuid::Uuid = words.next().unwrap().parse().unwrap();
                seen.push((position, id));
            }
            Some("LIVE") => seen_live = words.next().unwrap().parse().unwrap(),
            _ => {}
        }
    }

    // the subscriber saw positions 1..=head, each once, in order
    assert_eq!(
        seen.len() as u64,
        head,
        "the subscriber saw every event once"
    );
    for (i, (position, _)) in seen.iter().enumerate() {
        assert_eq!(*position, i as u64 + 1, "no hole, no repeat, in order");
    }
    // what it saw is the log
    let log: Vec<_> = store
        .read_all(1)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(log.len() as u64, head);
    for (e, (position, id)) in log.iter().zip(&seen) {
        assert_eq!((e.position, e.event_id), (*position, *id));
    }
    // every acknowledged append is there, where its acknowledgement says, and nothing else
    let mut acked_events = 0;
    for ack in &acks {
        for (i, id) in ack.ids.iter().enumerate() {
            let e = &log[(ack.first_position + i as u64 - 1) as usize];
            assert_eq!(
                (&e.stream_id, e.stream_version, e.event_id),
                (&ack.stream, ack.first_version + i as u64, *id),
                "acknowledged event at position {}",
                ack.first_position + i as u64
            );
        }
        acked_events += ack.ids.len() as u64;
    }
    assert_eq!(
        acked_events, head,
        "the log holds only acknowledged appends"
    );
    let mut versions: HashMap<&str, u64> = HashMap::new();
    for e in &log {
        let v = versions.entry(&e.stream_id).or_default();
        *v += 1;
        assert_eq!(e.stream_version, *v, "stream versions follow the log");
    }
    assert!(log.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
    assert_eq!(acks.len() as u64, appends);
    eprintln!(
        "positions: {WRITERS} writer processes x {THREADS} threads; {appends} appends ({conflicts} refused as conflicts on the shared stream) \
         = {head} events in {transactions} transactions, written in {:.2} s ({:.0} events/s); \
         the subscriber process saw all {head} in order with no hole, {seen_live} of them while the writers ran",
        writing.as_secs_f64(),
        head as f64 / writing.as_secs_f64()
    );
    assert!(conflicts > 0, "the shared stream was contended");
}

fn options(schema: &str) -> PgStoreOptions {
    PgStoreOptions {
        schema: schema.to_owned(),
        poll_interval: Duration::from_millis(50),
        ..PgStoreOptions::default()
    }
}

struct Ack {
    stream: String,
    first_position: u64,
    first_version: u64,
    ids: Vec<uuid::Uuid>,
}

impl Ack {
    fn parse<'a>(mut words: impl Iterator<Item = &'a str>) -> Ack {
        let mut next = || words.next().unwrap();
        Ack {
            stream: next().to_owned(),
            first_position: next().parse().unwrap(),
            first_version: next().parse().unwrap(),
            ids: next().split(',').map(|s| s.parse().unwrap()).collect(),
        }
    }
}

/// A child process with a thread collecting its output from the start (a full pipe would
/// stall it).
struct Running {
    child: Child,
    output: std::thread::JoinHandle<String>,
}

fn spawn(url: &str, schema: &str, role: &str, index: u64, piped_stdin: bool) -> Running {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .env("ES_PG_URL", url)
        .env("ES_PG_POSITIONS_SCHEMA", schema)
        .env("ES_PG_POSITIONS_INDEX", index.to_string())
        .stdin(if piped_stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let output = std::thread::spawn(move || {
        let mut out = String::new();
        for line in BufReader::new(stdout).lines() {
            out.push_str(&line.unwrap());
            out.push('\n');
        }
        out
    });
    Running { child, output }
}

/// Waits for a child and returns its output; kills it and fails past the deadline.
fn wait_with_deadline(running: Running, deadline: Duration) -> String {
    let Running { mut child, output } = running;
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "a child process failed: {status}");
            return output.join().unwrap();
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("a child process ran past {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn child(role: &str) {
    // the harness has printed "test NAME ... " with no newline: start the report on a line
    // of its own
    println!();
    let url = std::env::var("ES_PG_URL").unwrap();
    let schema = std::env::var("ES_PG_POSITIONS_SCHEMA").unwrap();
    let index: u64 = std::env::var("ES_PG_POSITIONS_INDEX")
        .unwrap()
        .parse()
        .unwrap();
    match role {
        "writer" => writer(&url, &schema, index),
        "subscriber" => subscriber(&url, &schema),
        other => panic!("unknown role {other}"),
    }
}

fn writer(url: &str, schema: &str, w: u64) {
    let store = PgStore::connect_with(url, options(schema)).unwrap();
    let conflicts = AtomicU64::new(0);
    let lines: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (store, conflicts) = (&store, &conflicts);
                scope.spawn(move || {
                    let mut lines = Vec::new();
                    for i in 0..APPENDS {
                        let count = 1 + (w + t + i) % 4;
                        let batch: Vec<NewEvent> = (0..count)
                            .map(|k| {
                                NewEvent::new(
                                    "Written",
                                    1,
                                    format!(r#"{{"w":{w},"t":{t},"i":{i},"k":{k}}}"#).into_bytes(),
                                )
                            })
                            .collect();
                        let ids: Vec<String> =
                            batch.iter().map(|e| e.event_id.to_string()).collect();
                        let (stream, expected) = if i % 5 == 0 {
                            let current = store.stream_version("hot-1").unwrap();
                            ("hot-1".to_owned(), ExpectedVersion::Exact(current))
                        } else {
                            (format!("p{w}-{t}-{}", i % 3), ExpectedVersion::Any)
                        };
                        match store.append(&stream, expected, batch) {
                            Ok(r) => lines.push(format!(
                                "ACK {stream} {} {} {}",
                                r.first_position,
                                r.first_version,
                                ids.join(",")
                            )),
                            Err(StoreError::Conflict { .. }) => {
                                conflicts.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => panic!("append failed: {e}"),
                        }
                    }
                    lines
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let stats = store.write_stats();
    let mut out = std::io::stdout().lock();
    for line in lines {
        writeln!(out, "{line}").unwrap();
    }
    writeln!(
        out,
        "STATS {} {} {}",
        stats.appends,
        stats.transactions,
        conflicts.load(Ordering::Relaxed)
    )
    .unwrap();
}

fn subscriber(url: &str, schema: &str) {
    let store = PgStore::connect_with(
        url,
        PgStoreOptions {
            read_only: true,
            ..options(schema)
        },
    )
    .unwrap();
    // the parent sends the final head once every writer has finished
    let target = Arc::new(AtomicU64::new(u64::MAX));
    let t = Arc::clone(&target);
    std::thread::spawn(move || {
        let mut line = String::new();
        if std::io::stdin().read_line(&mut line).is_ok()
            && let Ok(head) = line.trim().parse()
        {
            t.store(head, Ordering::SeqCst);
        }
    });
    let mut sub = Subscription::new(&store, 1);
    let mut last = 0;
    let mut live = None;
    let mut out = std::io::stdout().lock();
    while last < target.load(Ordering::SeqCst) {
        if live.is_none() && target.load(Ordering::SeqCst) != u64::MAX {
            live = Some(last);
        }
        if let Some(e) = sub.next_timeout(Duration::from_millis(200)).unwrap() {
            assert_eq!(
                e.position,
                last + 1,
                "the subscriber saw a hole or a repeat"
            );
            last = e.position;
            writeln!(out, "SEEN {} {}", e.position, e.event_id).unwrap();
        }
    }
    writeln!(out, "LIVE {}", live.unwrap_or(last)).unwrap();
}
