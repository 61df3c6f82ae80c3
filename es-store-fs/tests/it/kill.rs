//! A writer process killed with SIGKILL at a random moment loses no acknowledged append and
//! leaves no part of one, in every durability mode (a process crash keeps what the OS
//! holds), on the real disk.
//!
//! `process_kill` is the parent: it starts this test binary again running only
//! `process_kill_child` (with `ES_KILL_CHILD` set), which appends from several threads and
//! reports each append on stdout before it starts and once it is acknowledged. Both are
//! ordinary tests, so any runner (`cargo test`, `cargo nextest`) runs them.
//! `ES_RELIABILITY_FULL=1` runs hundreds of rounds instead of a few.

use crate::common::{Attempt, Outcome, event, figure, next_append_works, scale, verify};
use es_core::{AppendResult, EventStore, ExpectedVersion, NewEvent};
use es_store_fs::{Durability, FileStore, FileStoreOptions};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CHILD: &str = "ES_KILL_CHILD";

/// A small deterministic generator (xorshift64*), so that a round can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn durability(mode: u64) -> Durability {
    match mode % 3 {
        0 => Durability::Always,
        1 => Durability::Periodic(Duration::from_millis(2)),
        _ => Durability::None,
    }
}

fn options(mode: u64) -> FileStoreOptions {
    FileStoreOptions {
        durability: durability(mode),
        segment_size: if mode.is_multiple_of(2) {
            4096
        } else {
            1 << 20
        },
        preallocate: if mode % 4 < 2 { 0 } else { 16 * 1024 },
        ..FileStoreOptions::default()
    }
}

pub(crate) fn event_json(e: &NewEvent) -> serde_json::Value {
    serde_json::json!({
        "id": e.event_id.to_string(),
        "type": e.event_type,
        "version": e.schema_version,
        "payload": String::from_utf8(e.payload.clone()).unwrap(),
        "metadata": e.metadata,
    })
}

fn event_from_json(v: &serde_json::Value) -> NewEvent {
    let mut e = NewEvent::new(
        v["type"].as_str().unwrap(),
        v["version"].as_u64().unwrap() as u32,
        v["payload"].as_str().unwrap().as_bytes().to_vec(),
    );
    e.event_id = v["id"].as_str().unwrap().parse().unwrap();
    e.metadata = serde_json::from_value(v["metadata"].clone()).unwrap();
    e
}

/// The attempt a child reports as it starts an append (`{"start": key, "stream", "events"}`).
pub(crate) fn started_attempt(v: &serde_json::Value) -> Attempt {
    Attempt {
        stream: v["stream"].as_str().unwrap().to_owned(),
        expected: ExpectedVersion::Any,
        events: v["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(event_from_json)
            .collect(),
        started: 0,
        outcome: Outcome::Pending,
        newest_segment: 0,
    }
}

/// The outcome a child reports once an append is acknowledged (`{"ack": key, "r": [first
/// version, last version, first position, last position]}`).
pub(crate) fn acked_outcome(v: &serde_json::Value) -> Outcome {
    let r: Vec<u64> = v["r"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect();
    let result = AppendResult {
        first_version: r[0],
        last_version: r[1],
        first_position: r[2],
        last_position: r[3],
        retried: false,
    };
    Outcome::Acked { result, at: 0 }
}

/// The child: appends until killed, reporting each append as it starts and ends.
fn child(dir: &str, seed: u64, mode: u64) {
    let store = FileStore::open_with(dir, options(mode)).unwrap();
    let out = std::sync::Mutex::new(std::io::stdout());
    let say = |v: serde_json::Value| {
        let mut out = out.lock().unwrap();
        // on a line of its own, whatever the test harness printed before it
        writeln!(out, "\n{v}").unwrap();
        out.flush().unwrap();
    };
    std::thread::scope(|scope| {
        for t in 0..3u64 {
            let (store, say) = (&store, &say);
            scope.spawn(move || {
                let mut rng = Rng(seed ^ (t + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
                for i in 0.. {
                    let stream = format!("k-{}", rng.below(4));
                    let n = 1 + rng.below(5);
                    let events: Vec<NewEvent> = (0..n)
                        .map(|k| event(&stream, t << 32 | i << 8 | k, 10 + rng.below(600) as usize))
                        .collect();
                    let key = format!("{t}-{i}");
                    say(serde_json::json!({
                        "start": key,
                        "stream": stream,
                        "events": events.iter().map(event_json).collect::<Vec<_>>(),
                    }));
                    let r = store.append(&stream, ExpectedVersion::Any, events).unwrap();
                    say(serde_json::json!({
                        "ack": key,
                        "r": [r.first_version, r.last_version, r.first_position, r.last_position],
                    }));
                }
            });
        }
    });
}

/// One round: start the child, kill it after a random number of acknowledgements (or
/// a random time), reopen and check.
fn round(seed: u64) -> Result<(u64, u64), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut rng = Rng(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1);
    let mode = rng.below(12);
    let mut child = Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
        .args([
            child_test_name().as_str(),
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, dir.path())
        .env("ES_KILL_SEED", seed.to_string())
        .env("ES_KILL_MODE", mode.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| e.to_string())?;
    let stdout = child.stdout.take().unwrap();
    let kill_after_acks = 1 + rng.below(150);
    let deadline = Instant::now() + Duration::from_millis(20 + rng.below(400));
    let mut attempts: Vec<Attempt> = Vec::new();
    let mut by_key = std::collections::HashMap::new();
    let mut acks = 0u64;
    let mut killed = false;
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        // a line cut short by the kill is not a report
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if let Some(key) = v["start"].as_str() {
            by_key.insert(key.to_owned(), attempts.len());
            attempts.push(started_attempt(&v));
        } else if let Some(key) = v["ack"].as_str() {
            attempts[by_key[key]].outcome = acked_outcome(&v);
            acks += 1;
        }
        if !killed && (acks >= kill_after_acks || Instant::now() > deadline) {
            child.kill().map_err(|e| e.to_string())?; // SIGKILL
            killed = true;
        }
    }
    if !killed {
        child.kill().ok();
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    if status.success() {
        return Err("the child exited by itself".into());
    }
    let store = FileStore::open(dir.path()).map_err(|e| format!("reopening: {e}"))?;
    let found = verify(&store, &attempts, |a| {
        matches!(a.outcome, Outcome::Acked { .. })
    })
    .map_err(|e| format!("mode {mode}: {e}; recovery: {:?}", store.recovery_report()))?;
    next_append_works(&store)?;
    Ok((acks, found.appends - found.required))
}

/// The name the test harness gives `process_kill_child`: its module path inside the
/// test binary, without the binary's own name.
fn child_test_name() -> String {
    let module = module_path!().split_once("::").map_or("", |(_, path)| path);
    if module.is_empty() {
        "process_kill_child".to_owned()
    } else {
        format!("{module}::process_kill_child")
    }
}

/// The child's role: only when the parent started it (`ES_KILL_CHILD` set); otherwise a
/// no-op.
#[test]
fn process_kill_child() {
    if let Ok(dir) = std::env::var(CHILD) {
        let seed = std::env::var("ES_KILL_SEED").unwrap().parse().unwrap();
        let mode = std::env::var("ES_KILL_MODE").unwrap().parse().unwrap();
        child(&dir, seed, mode);
    }
}

#[test]
fn process_kill() {
    if std::env::var(CHILD).is_ok() {
        return;
    }
    let rounds = scale(12, 500);
    let first_seed: u64 = std::env::var("ES_KILL_FIRST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let (mut acks, mut unacked_present) = (0, 0);
    let mut failures = Vec::new();
    for seed in first_seed..first_seed + u64::from(rounds) {
        match round(seed) {
            Ok((a, u)) => {
                acks += a;
                unacked_present += u;
            }
            Err(e) => failures.push(format!("round {seed}: {e}")),
        }
    }
    figure("process kill", "rounds", u64::from(rounds));
    figure("process kill", "acknowledged appends checked", acks);
    figure(
        "process kill",
        "in-flight appends found whole after the kill",
        unacked_present,
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
