//! Concurrent appends with every kind of expected version, checked against a model (a
//! `BTreeMap` of streams): exactly one winner per version, conflicts report a version
//! the stream really had, idempotent retries return the original result, and the global
//! order agrees with the order of acknowledgements. Runs on the real and the simulated
//! disk.
//!
//! `ES_RELIABILITY_FULL=1` runs many more cases.

use crate::common::{Attempt, Outcome, event, figure, scale, verify};
use es_core::{AppendResult, EventStore, ExpectedVersion, NewEvent, StoreError};
use es_store_fs::vfs::sim::SimFs;
use es_store_fs::{FileStore, FileStoreOptions};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone)]
struct Op {
    stream: u8,
    /// 0 any, 1 no stream, 2 stream exists, 3 exact (the version last seen), 4 exact
    /// (one ahead of it), 5 retry of this thread's last successful append.
    expect: u8,
    events: u8,
}

fn op() -> impl Strategy<Value = Op> {
    (0u8..3, 0u8..6, 1u8..4).prop_map(|(stream, expect, events)| Op {
        stream,
        expect,
        events,
    })
}

/// One call as it happened.
#[derive(Debug, Clone)]
struct Call {
    stream: String,
    expected: ExpectedVersion,
    events: Vec<NewEvent>,
    start: u64,
    end: u64,
    result: Result<AppendResult, (String, Option<u64>)>,
    /// For a retry: the result of the append it repeats.
    retry_of: Option<AppendResult>,
}

enum Backend {
    Real(tempfile::TempDir),
    Sim(SimFs),
}

impl Backend {
    fn open(&self) -> FileStore {
        match self {
            Backend::Real(dir) => FileStore::open(dir.path()).unwrap(),
            Backend::Sim(fs) => FileStore::open_with(
                "/db",
                FileStoreOptions {
                    vfs: Arc::new(fs.clone()),
                    segment_size: 8192,
                    ..FileStoreOptions::default()
                },
            )
            .unwrap(),
        }
    }
}

fn run(store: &FileStore, threads: &[Vec<Op>]) -> Vec<Call> {
    let clock = AtomicU64::new(0);
    let calls = Mutex::new(Vec::new());
    let counter = AtomicU64::new(0);
    std::thread::scope(|scope| {
        for ops in threads {
            let (clock, calls, counter) = (&clock, &calls, &counter);
            scope.spawn(move || {
                let mut last_ok: Option<(String, ExpectedVersion, Vec<NewEvent>, AppendResult)> =
                    None;
                for op in ops {
                    let stream = format!("m-{}", op.stream);
                    let seen = store.stream_version(&stream).unwrap();
                    let (stream, expected, events, retry_of) = match (op.expect, &last_ok) {
                        (5, Some((s, e, evs, r))) => (s.clone(), *e, evs.clone(), Some(*r)),
                        (k, _) => {
                            let expected = match k {
                                0 | 5 => ExpectedVersion::Any,
                                1 => ExpectedVersion::NoStream,
                                2 => ExpectedVersion::StreamExists,
                                3 => ExpectedVersion::Exact(seen),
                                _ => ExpectedVersion::Exact(seen + 1),
                            };
                            let events = (0..op.events)
                                .map(|_| event(&stream, counter.fetch_add(1, Ordering::SeqCst), 30))
                                .collect();
                            (stream, expected, events, None)
                        }
                    };
                    let start = clock.fetch_add(1, Ordering::SeqCst);
                    let r = store.append(&stream, expected, events.clone());
                    let end = clock.fetch_add(1, Ordering::SeqCst);
                    let result = match r {
                        Ok(r) => {
                            last_ok = Some((stream.clone(), expected, events.clone(), r));
                            Ok(r)
                        }
                        Err(StoreError::Conflict { actual, .. }) => {
                            Err(("conflict".to_owned(), Some(actual)))
                        }
                        Err(e) => Err((e.to_string(), None)),
                    };
                    calls.lock().unwrap().push(Call {
                        stream,
                        expected,
                        events,
                        start,
                        end,
                        result,
                        retry_of,
                    });
                }
            });
        }
    });
    calls.into_inner().unwrap()
}

/// Checks the calls against the model; returns (appends, conflicts, retries).
fn check(calls: &[Call]) -> Result<(u64, u64, u64), String> {
    let mut conflicts = 0;
    let mut retries = 0;
    // successes that wrote, in log order
    let mut writes: Vec<&Call> = calls
        .iter()
        .filter(|c| c.retry_of.is_none() && c.result.is_ok())
        .collect();
    writes.sort_by_key(|c| c.result.as_ref().unwrap().first_position);
    let mut model: BTreeMap<String, u64> = BTreeMap::new();
    let mut history: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut head = 0u64;
    for c in &writes {
        let r = c.result.as_ref().unwrap();
        let version = model.get(&c.stream).copied().unwrap_or(0);
        if !c.expected.accepts(version) {
            return Err(format!(
                "{:?} won on `{}` at version {version}",
                c.expected, c.stream
            ));
        }
        let n = c.events.len() as u64;
        let want = AppendResult {
            first_version: version + 1,
            last_version: version + n,
            first_position: head + 1,
            last_position: head + n,
            retried: false,
        };
        if *r != want {
            return Err(format!("append got {r:?}, the model says {want:?}"));
        }
        head += n;
        model.insert(c.stream.clone(), version + n);
        history
            .entry(c.stream.clone())
            .or_default()
            .push(version + n);
    }
    for c in calls {
        match (&c.result, c.retry_of) {
            (Ok(r), Some(original)) => {
                retries += 1;
                let want = AppendResult {
                    retried: true,
                    ..original
                };
                if *r != want {
                    return Err(format!(
                        "retry returned {r:?}, the original was {original:?}"
                    ));
                }
            }
            (Err((_, Some(actual))), _) => {
                conflicts += 1;
                let had =
                    *actual == 0 || history.get(&c.stream).is_some_and(|h| h.contains(actual));
                if !had || c.expected.accepts(*actual) {
                    return Err(format!(
                        "conflict on `{}` reported version {actual} for {:?}",
                        c.stream, c.expected
                    ));
                }
            }
            (Err((e, None)), _) => return Err(format!("unexpected error: {e}")),
            (Ok(_), None) => {}
        }
    }
    // an append acknowledged before another began comes first in the log
    for a in &writes {
        for b in &writes {
            let (ra, rb) = (a.result.as_ref().unwrap(), b.result.as_ref().unwrap());
            if a.end < b.start && ra.first_position > rb.first_position {
                return Err(format!(
                    "{ra:?} was acknowledged before {rb:?} began, but comes after it"
                ));
            }
        }
    }
    Ok((writes.len() as u64, conflicts, retries))
}

fn attempts(calls: &[Call]) -> Vec<Attempt> {
    calls
        .iter()
        .filter(|c| c.retry_of.is_none())
        .map(|c| Attempt {
            stream: c.stream.clone(),
            expected: c.expected,
            events: c.events.clone(),
            started: c.start,
            outcome: match c.result {
                Ok(result) => Outcome::Acked { result, at: c.end },
                Err(_) => Outcome::Refused,
            },
            newest_segment: 0,
        })
        .collect()
}

fn model_test(name: &str, make: impl Fn(u64) -> Backend, ci: u32, full_run: u32) {
    let totals = Mutex::new((0u64, 0u64, 0u64, 0u64));
    let config = ProptestConfig {
        cases: scale(ci, full_run),
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(
        threads in prop::collection::vec(prop::collection::vec(op(), 1..25), 2..5),
        seed in any::<u64>(),
    )| {
        let backend = make(seed);
        let store = backend.open();
        let calls = run(&store, &threads);
        let (appends, conflicts, retries) = check(&calls).map_err(TestCaseError::fail)?;
        let attempts = attempts(&calls);
        let acked = |a: &Attempt| matches!(a.outcome, Outcome::Acked { .. });
        verify(&store, &attempts, acked).map_err(TestCaseError::fail)?;
        drop(store);
        let store = backend.open();
        verify(&store, &attempts, acked).map_err(TestCaseError::fail)?;
        let mut t = totals.lock().unwrap();
        t.0 += 1;
        t.1 += appends;
        t.2 += conflicts;
        t.3 += retries;
    });
    let t = totals.into_inner().unwrap();
    figure(name, "workloads", t.0);
    figure(name, "appends won", t.1);
    figure(name, "conflicts checked", t.2);
    figure(name, "idempotent retries checked", t.3);
}

#[test]
fn concurrent_appends_match_the_model_on_the_real_disk() {
    model_test(
        "model, real disk",
        |_| Backend::Real(tempfile::tempdir().unwrap()),
        16,
        300,
    );
}

#[test]
fn concurrent_appends_match_the_model_on_the_simulated_disk() {
    model_test(
        "model, simulated disk",
        |seed| Backend::Sim(SimFs::new(seed)),
        48,
        1000,
    );
}

/// Many writers racing for the same next version: exactly one wins each version.
#[test]
fn racing_writers_get_exactly_one_winner_per_version() {
    for backend in [
        Backend::Real(tempfile::tempdir().unwrap()),
        Backend::Sim(SimFs::new(9)),
    ] {
        let store = backend.open();
        let rounds = u64::from(scale(30, 500));
        let winners = Mutex::new(BTreeMap::<u64, u32>::new());
        for round in 0..rounds {
            std::thread::scope(|scope| {
                for t in 0..4u64 {
                    let (store, winners) = (&store, &winners);
                    scope.spawn(move || {
                        let e = vec![event("race", round * 10 + t, 20)];
                        if store
                            .append("race", ExpectedVersion::Exact(round), e)
                            .is_ok()
                        {
                            *winners.lock().unwrap().entry(round + 1).or_default() += 1;
                        }
                    });
                }
            });
        }
        let winners = winners.into_inner().unwrap();
        assert_eq!(winners.len() as u64, rounds);
        assert!(winners.values().all(|&n| n == 1), "{winners:?}");
        assert_eq!(store.stream_version("race").unwrap(), rounds);
    }
}

/// A conflict names only a version readers can see: an append that conflicts with one
/// still being written waits for it, so a writer that retries on what it reads lands in
/// a few attempts instead of spinning through its retries during another's sync.
#[test]
fn a_retry_on_what_was_read_lands_while_another_writer_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(FileStore::open(dir.path()).unwrap());
    let writers: Vec<_> = (0..2)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut worst = 0;
                for n in 0..100u64 {
                    let mut attempts = 0;
                    loop {
                        attempts += 1;
                        let version = store.stream_version("cart-1").unwrap();
                        let expected = if version == 0 {
                            ExpectedVersion::NoStream
                        } else {
                            ExpectedVersion::Exact(version)
                        };
                        let e = event("cart-1", t * 1000 + n, 40);
                        match store.append("cart-1", expected, vec![e]) {
                            Ok(_) => break,
                            Err(es_core::StoreError::Conflict { .. }) => assert!(attempts < 1000),
                            Err(e) => panic!("{e}"),
                        }
                    }
                    worst = worst.max(attempts);
                }
                worst
            })
        })
        .collect();
    let worst = writers
        .into_iter()
        .map(|w| w.join().unwrap())
        .max()
        .unwrap();
    assert_eq!(store.stream_version("cart-1").unwrap(), 200);
    // each conflict means the other writer's append landed, and it makes at most 100
    assert!(worst <= 101, "a command needed {worst} attempts");
}
