//! The store conformance suite: one public function per behaviour of the
//! [`EventStore`] contract. Each takes a fresh, empty store and panics
//! when the store breaks the contract. Run them all with
//! [`store_conformance_tests!`](crate::store_conformance_tests).

use crate::{
    AppendResult, EventStore, ExpectedVersion, Metadata, NewEvent, RecordedEvent, StoreError,
};
use std::collections::HashMap;
use std::sync::Mutex;
use uuid::Uuid;

/// A small valid event.
pub fn event(n: u64) -> NewEvent {
    NewEvent::new("Tested", 1, format!(r#"{{"n":{n}}}"#).into_bytes())
}

/// `count` small valid events numbered from `start`.
pub fn events(start: u64, count: u64) -> Vec<NewEvent> {
    (start..start + count).map(event).collect()
}

fn read_stream<S: EventStore>(store: &S, stream: &str, from: u64) -> Vec<RecordedEvent> {
    store
        .read_stream(stream, from)
        .expect("read_stream")
        .collect::<Result<_, _>>()
        .expect("read_stream item")
}

fn read_all<S: EventStore>(store: &S, from: u64) -> Vec<RecordedEvent> {
    store
        .read_all(from)
        .expect("read_all")
        .collect::<Result<_, _>>()
        .expect("read_all item")
}

/// `visit_all` and `visit_stream` lend exactly the events `read_all` and `read_stream`
/// return, from any starting point (also inside a multi-event append), with metadata, and
/// stop when the visitor breaks.
pub fn visits_lend_what_reads_return<S: EventStore>(store: &S) {
    use std::ops::ControlFlow;
    let meta = Metadata::new().with_actor("alice").with("reason", "test");
    store
        .append("v-1", ExpectedVersion::NoStream, events(1, 3))
        .unwrap();
    store
        .append(
            "v-2",
            ExpectedVersion::NoStream,
            vec![event(4).with_metadata(meta.clone())],
        )
        .unwrap();
    store
        .append("v-1", ExpectedVersion::Exact(3), events(5, 2))
        .unwrap();
    for from in 1..=7 {
        let mut lent = Vec::new();
        store
            .visit_all(from, &mut |e| {
                lent.push(e.to_recorded());
                ControlFlow::Continue(())
            })
            .unwrap();
        assert_eq!(lent, read_all(store, from), "visit_all from {from}");
    }
    for from in 1..=6 {
        let mut lent = Vec::new();
        store
            .visit_stream("v-1", from, &mut |e| {
                lent.push(e.to_recorded());
                ControlFlow::Continue(())
            })
            .unwrap();
        assert_eq!(
            lent,
            read_stream(store, "v-1", from),
            "visit_stream from {from}"
        );
    }
    let mut seen = Vec::new();
    store
        .visit_all(1, &mut |e| {
            seen.push(e.position);
            if e.position == 2 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap();
    assert_eq!(seen, [1, 2], "visit_all goes on after a break");
    let mut metadata = Vec::new();
    store
        .visit_stream("v-2", 1, &mut |e| {
            metadata.push(e.metadata.clone());
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(metadata, [meta]);
    let mut none = 0;
    store
        .visit_stream("v-none", 1, &mut |_| {
            none += 1;
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(none, 0);
}

fn numbers(events: &[RecordedEvent]) -> Vec<u64> {
    events
        .iter()
        .map(|e| {
            let v: serde_json::Value = serde_json::from_slice(&e.payload).expect("payload json");
            v["n"].as_u64().expect("payload n")
        })
        .collect()
}

fn assert_nothing_written<S: EventStore>(store: &S, stream: &str, head: u64, version: u64) {
    assert_eq!(
        store.head_position().unwrap(),
        head,
        "head moved after a refused append"
    );
    assert_eq!(
        store.stream_version(stream).unwrap_or(0),
        version,
        "stream moved after a refused append"
    );
    assert_eq!(
        read_all(store, 1).len() as u64,
        head,
        "log grew after a refused append"
    );
}

/// Appended events read back whole, with dense versions and positions from 1.
pub fn append_and_read_stream<S: EventStore>(store: &S) {
    let batch = events(1, 3);
    let ids: Vec<Uuid> = batch.iter().map(|e| e.event_id).collect();
    let r = store
        .append("cart-1", ExpectedVersion::NoStream, batch.clone())
        .unwrap();
    assert_eq!(
        r,
        AppendResult {
            first_version: 1,
            last_version: 3,
            first_position: 1,
            last_position: 3,
            retried: false,
        }
    );
    assert_eq!(r.len(), 3);
    let got = read_stream(store, "cart-1", 1);
    assert_eq!(got.len(), 3);
    for (i, (e, sent)) in got.iter().zip(&batch).enumerate() {
        assert_eq!(e.stream_id, "cart-1");
        assert_eq!(e.stream_version, i as u64 + 1);
        assert_eq!(e.position, i as u64 + 1);
        assert_eq!(e.event_id, ids[i]);
        assert_eq!(e.event_type, "Tested");
        assert_eq!(e.schema_version, 1);
        assert_eq!(e.payload, sent.payload);
        assert_eq!(e.kind(), "cart");
    }
    assert_eq!(store.stream_version("cart-1").unwrap(), 3);
    assert_eq!(store.head_position().unwrap(), 3);
}

/// Reading a stream from a version skips the earlier events; past the end reads nothing.
pub fn read_stream_from_version<S: EventStore>(store: &S) {
    store
        .append("s-1", ExpectedVersion::Any, events(1, 10))
        .unwrap();
    assert_eq!(
        numbers(&read_stream(store, "s-1", 4)),
        (4..=10).collect::<Vec<_>>()
    );
    assert_eq!(
        numbers(&read_stream(store, "s-1", 0)).len(),
        10,
        "0 reads from the start"
    );
    assert!(read_stream(store, "s-1", 11).is_empty());
    assert!(read_stream(store, "s-1", u64::MAX).is_empty());
}

/// The global log holds every stream's events in commit order with dense positions.
pub fn read_all_in_commit_order<S: EventStore>(store: &S) {
    store
        .append("a-1", ExpectedVersion::Any, events(1, 2))
        .unwrap();
    store
        .append("b-1", ExpectedVersion::Any, events(3, 3))
        .unwrap();
    store
        .append("a-1", ExpectedVersion::Any, events(6, 1))
        .unwrap();
    let all = read_all(store, 1);
    assert_eq!(numbers(&all), vec![1, 2, 3, 4, 5, 6]);
    let positions: Vec<u64> = all.iter().map(|e| e.position).collect();
    assert_eq!(positions, vec![1, 2, 3, 4, 5, 6]);
    let streams: Vec<(&str, u64)> = all
        .iter()
        .map(|e| (e.stream_id.as_str(), e.stream_version))
        .collect();
    assert_eq!(
        streams,
        vec![
            ("a-1", 1),
            ("a-1", 2),
            ("b-1", 1),
            ("b-1", 2),
            ("b-1", 3),
            ("a-1", 3)
        ]
    );
}

/// Reading the log from a position starts there; past the head reads nothing.
pub fn read_all_from_position<S: EventStore>(store: &S) {
    store
        .append("a-1", ExpectedVersion::Any, events(1, 5))
        .unwrap();
    assert_eq!(numbers(&read_all(store, 3)), vec![3, 4, 5]);
    assert_eq!(numbers(&read_all(store, 0)).len(), 5);
    assert!(read_all(store, 6).is_empty());
    assert!(read_all(store, u64::MAX).is_empty());
}

/// A stream never written is at version 0 and reads empty; an empty store's head is 0.
pub fn unknown_stream_is_empty<S: EventStore>(store: &S) {
    assert_eq!(store.head_position().unwrap(), 0);
    assert_eq!(store.stream_version("nobody-1").unwrap(), 0);
    assert!(read_stream(store, "nobody-1", 1).is_empty());
    assert!(read_all(store, 1).is_empty());
}

/// `Any` appends to a new and to an existing stream.
pub fn expected_any<S: EventStore>(store: &S) {
    let r1 = store
        .append("s-1", ExpectedVersion::Any, events(1, 1))
        .unwrap();
    let r2 = store
        .append("s-1", ExpectedVersion::Any, events(2, 2))
        .unwrap();
    assert_eq!(
        (r1.first_version, r2.first_version, r2.last_version),
        (1, 2, 3)
    );
}

/// `NoStream` appends only to a stream that does not exist.
pub fn expected_no_stream<S: EventStore>(store: &S) {
    store
        .append("s-1", ExpectedVersion::NoStream, events(1, 1))
        .unwrap();
    let err = store
        .append("s-1", ExpectedVersion::NoStream, events(2, 1))
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Conflict {
                actual: 1,
                expected: ExpectedVersion::NoStream,
                ..
            }
        ),
        "{err:?}"
    );
    assert_nothing_written(store, "s-1", 1, 1);
}

/// `StreamExists` refuses a new stream and accepts an existing one.
pub fn expected_stream_exists<S: EventStore>(store: &S) {
    let err = store
        .append("s-1", ExpectedVersion::StreamExists, events(1, 1))
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict { actual: 0, .. }),
        "{err:?}"
    );
    assert_nothing_written(store, "s-1", 0, 0);
    store
        .append("s-1", ExpectedVersion::Any, events(1, 1))
        .unwrap();
    let r = store
        .append("s-1", ExpectedVersion::StreamExists, events(2, 1))
        .unwrap();
    assert_eq!(r.first_version, 2);
}

/// `Exact(n)` accepts only a stream at version n; `Exact(0)` means no stream.
pub fn expected_exact<S: EventStore>(store: &S) {
    store
        .append("s-1", ExpectedVersion::Exact(0), events(1, 2))
        .unwrap();
    store
        .append("s-1", ExpectedVersion::Exact(2), events(3, 1))
        .unwrap();
    for stale in [0, 1, 2, 4, u64::MAX] {
        let err = store
            .append("s-1", ExpectedVersion::Exact(stale), events(9, 1))
            .unwrap_err();
        assert!(
            matches!(err, StoreError::Conflict { actual: 3, .. }),
            "Exact({stale}) on a stream at 3: {err:?}"
        );
    }
    assert_nothing_written(store, "s-1", 3, 3);
}

/// A conflict names the stream, the expectation and the actual version.
pub fn conflict_reports_actual_version<S: EventStore>(store: &S) {
    store
        .append("order-9", ExpectedVersion::Any, events(1, 4))
        .unwrap();
    let err = store
        .append("order-9", ExpectedVersion::Exact(2), events(5, 1))
        .unwrap_err();
    match &err {
        StoreError::Conflict {
            stream_id,
            expected,
            actual,
        } => {
            assert_eq!(stream_id, "order-9");
            assert_eq!(*expected, ExpectedVersion::Exact(2));
            assert_eq!(*actual, 4);
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("order-9") && text.contains('4') && text.contains('2'),
        "{text}"
    );
}

/// Re-sending an append with the same event ids and expectation returns the original
/// result, marked `retried`, and writes nothing, for every kind of expectation.
pub fn idempotent_retry_returns_original_result<S: EventStore>(store: &S) {
    let cases = [
        ("a-1", ExpectedVersion::NoStream),
        ("a-2", ExpectedVersion::Any),
        ("a-3", ExpectedVersion::Exact(0)),
    ];
    for (stream, expected) in cases {
        let batch = events(1, 3);
        let first = store.append(stream, expected, batch.clone()).unwrap();
        let head = store.head_position().unwrap();
        assert!(!first.retried, "a first append is no retry");
        let again = store.append(stream, expected, batch).unwrap();
        assert_eq!(again, retried(first), "retry with {expected:?}");
        assert_nothing_written(store, stream, head, 3);
    }
    // StreamExists and Exact(n) on a stream with history
    let batch = events(10, 2);
    let first = store
        .append("a-1", ExpectedVersion::Exact(3), batch.clone())
        .unwrap();
    assert_eq!(
        store
            .append("a-1", ExpectedVersion::Exact(3), batch)
            .unwrap(),
        retried(first)
    );
    let batch = events(20, 1);
    let first = store
        .append("a-2", ExpectedVersion::StreamExists, batch.clone())
        .unwrap();
    store
        .append("a-2", ExpectedVersion::Any, events(30, 1))
        .unwrap();
    assert_eq!(
        store
            .append("a-2", ExpectedVersion::StreamExists, batch)
            .unwrap(),
        retried(first),
        "a retry after later appends still reports the original"
    );
}

/// The result of a recognised retry of the append that returned `first`.
fn retried(first: AppendResult) -> AppendResult {
    AppendResult {
        retried: true,
        ..first
    }
}

/// A retry whose expectation did not hold for the original append is a conflict.
pub fn idempotent_retry_with_stale_expectation_conflicts<S: EventStore>(store: &S) {
    store
        .append("s-1", ExpectedVersion::Any, events(1, 2))
        .unwrap();
    let batch = events(3, 1);
    store
        .append("s-1", ExpectedVersion::Exact(2), batch.clone())
        .unwrap();
    let err = store
        .append("s-1", ExpectedVersion::Exact(7), batch)
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict { actual: 3, .. }),
        "{err:?}"
    );
    assert_nothing_written(store, "s-1", 3, 3);
}

/// An event id already stored in another stream is refused.
pub fn duplicate_id_in_other_stream_is_rejected<S: EventStore>(store: &S) {
    let batch = events(1, 1);
    store
        .append("s-1", ExpectedVersion::Any, batch.clone())
        .unwrap();
    let err = store
        .append("s-2", ExpectedVersion::Any, batch)
        .unwrap_err();
    assert!(
        matches!(err, StoreError::DuplicateEventId { .. }),
        "{err:?}"
    );
    assert_nothing_written(store, "s-2", 1, 0);
}

/// A batch that repeats only some stored ids, or reorders them, is refused.
pub fn partial_retry_is_rejected<S: EventStore>(store: &S) {
    let batch = events(1, 3);
    store
        .append("s-1", ExpectedVersion::Any, batch.clone())
        .unwrap();
    let mut partial = vec![batch[0].clone(), event(9)];
    let err = store
        .append("s-1", ExpectedVersion::Any, partial.clone())
        .unwrap_err();
    assert!(
        matches!(err, StoreError::DuplicateEventId { .. }),
        "{err:?}"
    );
    partial.reverse();
    let err = store
        .append("s-1", ExpectedVersion::Any, partial)
        .unwrap_err();
    assert!(
        matches!(err, StoreError::DuplicateEventId { .. }),
        "{err:?}"
    );
    let reordered = vec![batch[1].clone(), batch[0].clone()];
    let err = store
        .append("s-1", ExpectedVersion::Any, reordered)
        .unwrap_err();
    assert!(
        matches!(err, StoreError::DuplicateEventId { .. }),
        "{err:?}"
    );
    // a prefix, a suffix or a single event of an append is not "the same append"
    for part in [&batch[..2], &batch[1..], &batch[1..2]] {
        let err = store
            .append("s-1", ExpectedVersion::Any, part.to_vec())
            .unwrap_err();
        assert!(
            matches!(err, StoreError::DuplicateEventId { .. }),
            "{err:?}"
        );
    }
    assert_nothing_written(store, "s-1", 3, 3);
    // nor is a run across two appends
    let next = events(4, 2);
    store
        .append("s-1", ExpectedVersion::Exact(3), next.clone())
        .unwrap();
    let across = vec![batch[2].clone(), next[0].clone()];
    let err = store
        .append("s-1", ExpectedVersion::Any, across)
        .unwrap_err();
    assert!(
        matches!(err, StoreError::DuplicateEventId { .. }),
        "{err:?}"
    );
    assert_nothing_written(store, "s-1", 5, 5);
}

/// A batch that holds the same event id twice is refused.
pub fn duplicate_id_within_batch_is_rejected<S: EventStore>(store: &S) {
    let e = event(1);
    let err = store
        .append("s-1", ExpectedVersion::Any, vec![e.clone(), e])
        .unwrap_err();
    assert!(
        matches!(err, StoreError::DuplicateEventId { .. }),
        "{err:?}"
    );
    assert_nothing_written(store, "s-1", 0, 0);
}

/// Empty, overlong and control-character stream ids are typed errors; nothing is written.
pub fn invalid_stream_ids_are_rejected<S: EventStore>(store: &S) {
    let long = "x".repeat(10 * 1024);
    for bad in [
        "",
        "cart-\0",
        "a\nb",
        "tab\there",
        "\u{7f}del",
        long.as_str(),
    ] {
        let err = store
            .append(bad, ExpectedVersion::Any, events(1, 1))
            .unwrap_err();
        assert!(
            matches!(err, StoreError::InvalidStreamId { .. }),
            "stream id {:?}: {err:?}",
            bad.get(..20).unwrap_or(bad)
        );
        assert!(
            err.to_string().len() < 400,
            "the message stays short: {err}"
        );
        assert!(matches!(
            store.read_stream(bad, 1).err(),
            Some(StoreError::InvalidStreamId { .. })
        ));
    }
    assert_eq!(store.head_position().unwrap(), 0);
}

/// Stream ids are opaque data: path-like and non-ASCII ids round-trip unchanged.
pub fn opaque_stream_ids_round_trip<S: EventStore>(store: &S) {
    let ids = [
        "../../etc/passwd",
        "/abs/path",
        "cart-ünïcödé-🛒",
        "with space",
        "a/b\\c",
        ".",
        "..",
    ];
    for (i, id) in ids.iter().enumerate() {
        store
            .append(id, ExpectedVersion::NoStream, events(i as u64, 1))
            .unwrap();
    }
    for id in ids {
        let got = read_stream(store, id, 1);
        assert_eq!(got.len(), 1, "{id}");
        assert_eq!(got[0].stream_id, id);
    }
}

/// An append with no events is a typed error.
pub fn empty_batch_is_rejected<S: EventStore>(store: &S) {
    let err = store
        .append("s-1", ExpectedVersion::Any, vec![])
        .unwrap_err();
    assert!(matches!(err, StoreError::EmptyBatch { .. }), "{err:?}");
    assert_nothing_written(store, "s-1", 0, 0);
}

/// An event over the size limit is refused before anything is written.
pub fn oversized_event_is_rejected<S: EventStore>(store: &S) {
    let mut payload = Vec::with_capacity(65 * 1024 * 1024);
    payload.push(b'"');
    payload.resize(64 * 1024 * 1024, b'a');
    payload.push(b'"');
    let big = NewEvent::new("Big", 1, payload);
    let err = store
        .append("s-1", ExpectedVersion::Any, vec![event(1), big])
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::EventTooLarge { index: 1, .. } | StoreError::BatchTooLarge { .. }
        ),
        "{err:?}"
    );
    assert_nothing_written(store, "s-1", 0, 0);
}

/// Payloads that are not JSON (including non-UTF-8 bytes and nesting past serde_json's
/// depth limit) are refused.
pub fn invalid_payloads_are_rejected<S: EventStore>(store: &S) {
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let bad: [&[u8]; 6] = [
        b"",
        b"{",
        b"\xff\xfe",
        b"\"\xff\xfe\"",
        b"{\"a\":1} trailing",
        deep.as_bytes(),
    ];
    for payload in bad {
        let e = NewEvent::new("Bad", 1, payload.to_vec());
        let err = store
            .append("s-1", ExpectedVersion::Any, vec![e])
            .unwrap_err();
        assert!(matches!(err, StoreError::InvalidEvent { .. }), "{err:?}");
    }
    let mut nested = serde_json::Value::Null;
    for _ in 0..1_000 {
        nested = serde_json::Value::Array(vec![nested]);
    }
    let e = event(1).with_metadata(Metadata::new().with("deep", nested));
    let err = store
        .append("s-1", ExpectedVersion::Any, vec![e])
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidEvent { .. }), "{err:?}");
    assert_nothing_written(store, "s-1", 0, 0);
    let fine = format!("{}{}", "[".repeat(32), "]".repeat(32));
    let e = NewEvent::new("Nested", 1, fine.into_bytes());
    store.append("s-1", ExpectedVersion::Any, vec![e]).unwrap();
}

/// Empty, overlong or control-character type names and schema version 0 are refused.
pub fn invalid_event_types_are_rejected<S: EventStore>(store: &S) {
    let long = "T".repeat(5000);
    for name in ["", "bad\0name", long.as_str()] {
        let e = NewEvent::new(name, 1, b"{}".to_vec());
        let err = store
            .append("s-1", ExpectedVersion::Any, vec![e])
            .unwrap_err();
        assert!(matches!(err, StoreError::InvalidEvent { .. }), "{err:?}");
    }
    let e = NewEvent::new("Fine", 0, b"{}".to_vec());
    let err = store
        .append("s-1", ExpectedVersion::Any, vec![e])
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidEvent { .. }), "{err:?}");
    assert_nothing_written(store, "s-1", 0, 0);
}

/// A batch with one bad event writes none of its events.
pub fn one_bad_event_fails_the_whole_batch<S: EventStore>(store: &S) {
    let mut batch = events(1, 5);
    batch[3].payload = b"not json".to_vec();
    let err = store
        .append("s-1", ExpectedVersion::Any, batch)
        .unwrap_err();
    assert!(
        matches!(err, StoreError::InvalidEvent { index: 3, .. }),
        "{err:?}"
    );
    assert_nothing_written(store, "s-1", 0, 0);
}

/// Event ids, metadata and caller-given timestamps are stored as given; events without a
/// timestamp get the commit time.
pub fn metadata_ids_and_timestamps_round_trip<S: EventStore>(store: &S) {
    let id = Uuid::new_v4();
    let corr = Uuid::new_v4();
    let meta = Metadata::new()
        .with_actor("alice")
        .with_correlation_id(corr)
        .with_causation_id(id)
        .with("reason", "audit")
        .with("nested", serde_json::json!({"a": [1, 2, {"b": null}]}));
    let at = chrono::DateTime::parse_from_rfc3339("2020-02-29T12:34:56.789012Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let given = event(1)
        .with_id(id)
        .with_metadata(meta.clone())
        .with_timestamp(at);
    let before = chrono::Utc::now() - chrono::Duration::seconds(1);
    store
        .append("s-1", ExpectedVersion::Any, vec![given, event(2)])
        .unwrap();
    let after = chrono::Utc::now() + chrono::Duration::seconds(1);
    let got = read_stream(store, "s-1", 1);
    assert_eq!(got[0].event_id, id);
    assert_eq!(got[0].metadata, meta);
    assert_eq!(got[0].timestamp, at);
    assert!(got[1].metadata.is_empty());
    assert!(
        got[1].timestamp >= before && got[1].timestamp <= after,
        "{}",
        got[1].timestamp
    );
}

/// Store-stamped timestamps never go backwards along the global log.
pub fn timestamps_never_decrease<S: EventStore>(store: &S) {
    for i in 0..50 {
        store
            .append(&format!("s-{}", i % 3), ExpectedVersion::Any, events(i, 2))
            .unwrap();
    }
    let all = read_all(store, 1);
    assert!(all.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
}

/// Threads racing with `Exact` on one stream: exactly one wins each version, and every
/// loser sees a conflict.
pub fn racing_writers_one_winner_per_version<S: EventStore>(store: &S) {
    const THREADS: usize = 8;
    const VERSIONS: u64 = 40;
    let winners: Mutex<HashMap<u64, usize>> = Mutex::new(HashMap::new());
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            let winners = &winners;
            scope.spawn(move || {
                loop {
                    let current = store.stream_version("race-1").unwrap();
                    if current >= VERSIONS {
                        break;
                    }
                    match store.append(
                        "race-1",
                        ExpectedVersion::Exact(current),
                        vec![event(t as u64)],
                    ) {
                        Ok(r) => {
                            assert_eq!(r.first_version, current + 1);
                            let prior = winners.lock().unwrap().insert(r.first_version, t);
                            assert!(
                                prior.is_none(),
                                "two winners for version {}",
                                r.first_version
                            );
                        }
                        Err(StoreError::Conflict { actual, .. }) => assert!(actual > current),
                        Err(e) => panic!("unexpected error {e:?}"),
                    }
                }
            });
        }
    });
    let winners = winners.into_inner().unwrap();
    let stored = read_stream(store, "race-1", 1);
    assert!(stored.len() as u64 >= VERSIONS);
    for e in &stored {
        let n = numbers(std::slice::from_ref(e))[0] as usize;
        assert_eq!(
            winners.get(&e.stream_version),
            Some(&n),
            "version {}",
            e.stream_version
        );
    }
    assert_eq!(winners.len(), stored.len());
}

/// Concurrent appends to many streams: the global log is dense and each append's events
/// sit together, in the order the appends were acknowledged within each stream.
pub fn concurrent_appends_global_order_is_commit_order<S: EventStore>(store: &S) {
    const THREADS: u64 = 6;
    const APPENDS: u64 = 50;
    let acks: Mutex<Vec<(String, AppendResult)>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            let acks = &acks;
            scope.spawn(move || {
                for i in 0..APPENDS {
                    let stream = format!("c-{}", (t + i) % 4);
                    let r = store
                        .append(
                            &stream,
                            ExpectedVersion::Any,
                            events(t * 1000 + i, 1 + i % 3),
                        )
                        .unwrap();
                    acks.lock().unwrap().push((stream, r));
                }
            });
        }
    });
    let acks = acks.into_inner().unwrap();
    let all = read_all(store, 1);
    let total: u64 = acks.iter().map(|(_, r)| r.len()).sum();
    assert_eq!(all.len() as u64, total);
    for (i, e) in all.iter().enumerate() {
        assert_eq!(e.position, i as u64 + 1, "positions are dense");
    }
    for (stream, r) in &acks {
        for p in r.first_position..=r.last_position {
            let e = &all[p as usize - 1];
            assert_eq!(&e.stream_id, stream);
            assert_eq!(e.stream_version, r.first_version + (p - r.first_position));
        }
    }
    let mut last_version: HashMap<&str, u64> = HashMap::new();
    for e in &all {
        let v = last_version.entry(e.stream_id.as_str()).or_default();
        assert_eq!(
            e.stream_version,
            *v + 1,
            "stream versions follow global order"
        );
        *v = e.stream_version;
    }
}

/// Large histories stream: the first events of a long read arrive without reading the
/// rest, and the whole read is complete and in order.
pub fn streaming_read_of_large_history<S: EventStore>(store: &S) {
    const BATCHES: u64 = 200;
    const PER_BATCH: u64 = 100;
    for b in 0..BATCHES {
        let stream = if b % 2 == 0 { "big-1" } else { "big-2" };
        store
            .append(
                stream,
                ExpectedVersion::Any,
                events(b * PER_BATCH, PER_BATCH),
            )
            .unwrap();
    }
    let first: Vec<_> = store
        .read_all(1)
        .unwrap()
        .take(3)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(numbers(&first), vec![0, 1, 2]);
    let mut count = 0u64;
    for (i, e) in store.read_all(1).unwrap().enumerate() {
        let e = e.unwrap();
        assert_eq!(e.position, i as u64 + 1);
        count += 1;
    }
    assert_eq!(count, BATCHES * PER_BATCH);
    let mut expected_version = 1;
    for e in store.read_stream("big-2", 1).unwrap() {
        let e = e.unwrap();
        assert_eq!(e.stream_version, expected_version);
        expected_version += 1;
    }
    assert_eq!(expected_version - 1, BATCHES * PER_BATCH / 2);
}

// ---------------------------------------------------------------------------------------
// Snapshots, subscriptions, projections and process managers over the store.

use crate::Repository;
use crate::projection::{
    BoxError, MemoryCheckpoints, Projection, ProjectionRunner, TransactionalProjection,
    WithCheckpoint,
};
use crate::snapshot::Snapshot;
use crate::subscription::{Filter, Subscription};
use crate::testing::counter::{Counter, SnapCounter, SnapCounterV2};
use std::collections::BTreeMap;
use std::time::Duration;

fn snapshot(stream: &str, version: u64, state: &[u8]) -> Snapshot {
    Snapshot {
        stream_id: stream.to_owned(),
        version,
        position: 0,
        last_event_at: chrono::Utc::now(),
        snapshot_version: 1,
        fingerprint: 0,
        state: state.to_vec(),
    }
}

/// The snapshot store returns the newest snapshot at or below a version and keeps the
/// newest few per stream.
pub fn snapshots_newest_at_or_below<S: EventStore>(store: &S) {
    let snaps = store.snapshots().expect("this store keeps snapshots");
    assert_eq!(snaps.load_snapshot("counter-1", u64::MAX).unwrap(), None);
    for v in [10, 20, 30, 40] {
        snaps
            .save_snapshot(&snapshot("counter-1", v, format!("{v}").as_bytes()))
            .unwrap();
    }
    snaps
        .save_snapshot(&snapshot("counter-2", 5, b"5"))
        .unwrap();
    let at = |max| {
        snaps
            .load_snapshot("counter-1", max)
            .unwrap()
            .map(|s| s.version)
    };
    assert_eq!(at(u64::MAX), Some(40));
    assert_eq!(at(35), Some(30));
    assert_eq!(at(20), Some(20));
    assert_eq!(at(15), None, "only the newest three are kept");
    let s = snaps.load_snapshot("counter-2", 100).unwrap().unwrap();
    assert_eq!((s.version, s.state.as_slice()), (5, &b"5"[..]));
    // replacing the snapshot at the same version keeps one
    snaps
        .save_snapshot(&snapshot("counter-2", 5, b"five"))
        .unwrap();
    assert_eq!(
        snaps.load_snapshot("counter-2", 5).unwrap().unwrap().state,
        b"five"
    );
}

/// The repository writes snapshots as commands cross the threshold, loads from them, and
/// falls back to events when a snapshot is stale, damaged, of another schema version, or
/// newer than the wanted point.
pub fn repository_snapshots<S: EventStore>(store: &S) {
    let plain = Repository::<Counter, _>::new(store);
    let snapped = Repository::<SnapCounter, _>::new(store);
    for i in 1..=25 {
        snapped.execute("1", |c| c.add(i)).unwrap();
    }
    let snaps = store.snapshots().expect("this store keeps snapshots");
    let newest = snaps
        .load_snapshot("counter-1", u64::MAX)
        .unwrap()
        .expect("a snapshot");
    assert_eq!(newest.version, 20, "snapshots at multiples of 10");
    let full = plain.load("1").unwrap();
    let loaded = snapped.load("1").unwrap();
    assert_eq!(
        (loaded.total, loaded.events, loaded.version),
        (full.total, full.events, 25)
    );
    for v in [0, 5, 10, 15, 20, 25, 30] {
        let want = plain.load_at("1", v).unwrap();
        let got = snapped.load_at("1", v).unwrap();
        assert_eq!(
            (got.total, got.version),
            (want.total, want.version),
            "load_at({v})"
        );
    }
    let before = chrono::Utc::now() - chrono::Duration::days(1);
    assert_eq!(
        snapped.load_as_of("1", before).unwrap().version,
        0,
        "a snapshot newer than the wanted time is not used"
    );
    // a snapshot of another schema version is ignored
    let v2 = Repository::<SnapCounterV2, _>::new(store)
        .load("1")
        .unwrap();
    assert_eq!((v2.total, v2.events), (full.total, full.events));
    // a damaged state is ignored
    snaps
        .save_snapshot(&snapshot("counter-1", 20, b"{not json"))
        .unwrap();
    assert_eq!(snapped.load("1").unwrap().total, full.total);
    // a snapshot of another history (the event at its version is not the one it was
    // taken after, as when a crash or a repair took events back) is not used
    let mut foreign = snapshot("counter-1", 20, br#"{"total":1,"events":1}"#);
    foreign.position = u64::MAX;
    snaps.save_snapshot(&foreign).unwrap();
    assert_eq!(
        snapped.load("1").unwrap().total,
        full.total,
        "snapshot of another history"
    );
    // a wrong but well-formed state at a version the stream has is trusted: that is what
    // snapshot versions and fingerprints are for; a snapshot ahead of the stream is not
    snaps
        .save_snapshot(&snapshot("counter-1", 99, br#"{"total":1,"events":1}"#))
        .unwrap();
    let loaded = snapped.load("1").unwrap();
    assert_eq!(
        (loaded.total, loaded.version),
        (full.total, 25),
        "snapshot ahead of the stream"
    );
    // the event at a snapshot's version and position must also be the one recorded at
    // its time: after a crash took back events acknowledged but not yet durable, new
    // events take the same versions and positions again
    for i in 1..=12 {
        snapped.execute("3", |c| c.add(i)).unwrap();
    }
    let at_10 = store
        .read_stream("counter-3", 10)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let mut same_place = snapshot("counter-3", 10, br#"{"total":1,"events":1}"#);
    same_place.position = at_10.position;
    same_place.last_event_at = at_10.timestamp - chrono::Duration::seconds(1);
    snaps.save_snapshot(&same_place).unwrap();
    let (want, got) = (plain.load("3").unwrap(), snapped.load("3").unwrap());
    assert_eq!(
        (got.total, got.version),
        (want.total, want.version),
        "snapshot of another history at the same place"
    );
    // a snapshot at version 0 anchors to no event: ignored, never folded on
    for i in 1..=3 {
        snapped.execute("2", |c| c.add(i)).unwrap();
    }
    let mut at_zero = snapshot("counter-2", 0, br#"{"total":1000,"events":1}"#);
    at_zero.position = 0;
    snaps.save_snapshot(&at_zero).unwrap();
    let (want, got) = (plain.load("2").unwrap(), snapped.load("2").unwrap());
    assert_eq!(
        (got.total, got.version),
        (want.total, want.version),
        "snapshot at version 0"
    );
}

/// A subscription started before and during concurrent appends delivers every event
/// exactly once, in order, across the switch from catch-up to live.
pub fn live_subscription_has_no_gap_or_duplicate<S: EventStore>(store: &S) {
    const TOTAL: u64 = 600;
    store
        .append("live-0", ExpectedVersion::Any, events(0, 50))
        .unwrap();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut n = 50;
            while n < TOTAL {
                let k = (n % 7 + 1).min(TOTAL - n);
                store
                    .append(
                        &format!("live-{}", n % 3),
                        ExpectedVersion::Any,
                        events(n, k),
                    )
                    .unwrap();
                n += k;
            }
        });
        for start in [1, 25] {
            let mut sub = Subscription::new(store, start);
            let mut expected = start;
            while expected <= TOTAL {
                let e = sub
                    .next_timeout(Duration::from_secs(10))
                    .unwrap()
                    .unwrap_or_else(|| panic!("no event {expected} within 10 s"));
                assert_eq!(e.position, expected, "no gap, no duplicate");
                expected += 1;
            }
            assert!(
                sub.next_timeout(Duration::from_millis(20))
                    .unwrap()
                    .is_none()
            );
        }
    });
}

/// A wait given a timeout too long for the clock (`Duration::MAX`, "for ever") returns
/// what is there instead of panicking on the deadline's arithmetic.
pub fn waits_take_any_timeout<S: EventStore>(store: &S) {
    store
        .append(
            "wait-1",
            ExpectedVersion::NoStream,
            vec![NewEvent::new("Waited", 1, b"{}".to_vec())],
        )
        .unwrap();
    assert_eq!(store.wait_for_head(0, Duration::MAX).unwrap(), 1);
    let mut sub = Subscription::new(store, 1);
    let e = sub.next_timeout(Duration::MAX).unwrap().unwrap();
    assert_eq!(e.position, 1);
}

/// Subscriptions filter by aggregate kind and by event type.
pub fn subscription_filters<S: EventStore>(store: &S) {
    let typed = |t: &str| NewEvent::new(t, 1, b"{}".to_vec());
    store
        .append(
            "cart-1",
            ExpectedVersion::Any,
            vec![typed("Created"), typed("Added")],
        )
        .unwrap();
    store
        .append("order-1", ExpectedVersion::Any, vec![typed("Placed")])
        .unwrap();
    store
        .append("cart-2", ExpectedVersion::Any, vec![typed("Added")])
        .unwrap();
    let collect = |filter: Filter| {
        let mut sub = Subscription::new(store, 1).with_filter(filter);
        let mut out = Vec::new();
        while let Some(e) = sub.try_next().unwrap() {
            out.push(format!("{}:{}", e.stream_id, e.event_type));
        }
        out
    };
    assert_eq!(
        collect(Filter::all().kinds(["cart"])),
        ["cart-1:Created", "cart-1:Added", "cart-2:Added"]
    );
    assert_eq!(
        collect(Filter::all().event_types(["Added"])),
        ["cart-1:Added", "cart-2:Added"]
    );
    assert_eq!(
        collect(
            Filter::all()
                .kinds(["order"])
                .event_types(["Placed", "Added"])
        ),
        ["order-1:Placed"]
    );
    // a match far behind many filtered-out events is still found by a single poll
    for i in 0..1500 {
        store
            .append("noise-1", ExpectedVersion::Any, vec![event(i)])
            .unwrap();
    }
    store
        .append("rare-1", ExpectedVersion::Any, vec![typed("Rare")])
        .unwrap();
    let mut rare = Subscription::new(store, 1).with_filter(Filter::all().kinds(["rare"]));
    assert_eq!(
        rare.try_next().unwrap().map(|e| e.event_type),
        Some("Rare".to_owned())
    );
}

/// A read model that sums `n` per stream, for projection tests.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Sums(pub BTreeMap<String, u64>);

impl Projection for Sums {
    fn handle(&mut self, event: &RecordedEvent) -> Result<(), BoxError> {
        let v: serde_json::Value = serde_json::from_slice(&event.payload)?;
        *self.0.entry(event.stream_id.clone()).or_default() += v["n"].as_u64().unwrap_or(0);
        Ok(())
    }
    fn reset(&mut self) -> Result<(), BoxError> {
        self.0.clear();
        Ok(())
    }
}

/// An exactly-once read model: the sums and the checkpoint change together.
#[derive(Debug, Default, Clone)]
pub struct TransactionalSums {
    /// The committed sums.
    pub sums: Sums,
    /// The committed checkpoint.
    pub checkpoint: u64,
    /// Fail the batch that holds this position, before committing it.
    pub fail_at: Option<u64>,
}

impl TransactionalProjection for TransactionalSums {
    fn checkpoint(&mut self) -> Result<u64, BoxError> {
        Ok(self.checkpoint)
    }
    fn apply_batch(&mut self, events: &[RecordedEvent], checkpoint: u64) -> Result<(), BoxError> {
        let mut next = self.sums.clone();
        for e in events {
            if Some(e.position) == self.fail_at {
                return Err("simulated crash".into());
            }
            next.handle(e)?;
        }
        (self.sums, self.checkpoint) = (next, checkpoint);
        Ok(())
    }
    fn reset(&mut self) -> Result<(), BoxError> {
        (self.sums, self.checkpoint) = (Sums::default(), 0);
        Ok(())
    }
}

/// A projection stopped part-way resumes from its checkpoint and ends with the same read
/// model as an uninterrupted run; a rebuild equals the incremental result; a run up to a
/// position or a time sees only what was there.
pub fn projections_resume_rebuild_and_stop_in_time<S: EventStore>(store: &S) {
    for i in 0..40 {
        store
            .append(
                &format!("p-{}", i % 4),
                ExpectedVersion::Any,
                events(i * 10, 1 + i % 3),
            )
            .unwrap();
    }
    let head = store.head_position().unwrap();
    let mut whole = ProjectionRunner::new(store, TransactionalSums::default());
    assert_eq!(whole.run_to_head().unwrap(), head);
    let reference = whole.projection().sums.clone();
    // exactly once: a failure mid-batch commits nothing of that batch; the rerun resumes
    let crashing = TransactionalSums {
        fail_at: Some(head / 2),
        ..TransactionalSums::default()
    };
    let mut runner = ProjectionRunner::new(store, crashing).with_batch_size(7);
    assert!(runner.run_to_head().is_err());
    let resumed_from = runner.projection().checkpoint;
    assert!(resumed_from > 0 && resumed_from < head / 2);
    runner.projection_mut().fail_at = None;
    assert_eq!(runner.run_to_head().unwrap(), head);
    assert_eq!(runner.projection().sums, reference);
    // at least once, stopped at a position, then resumed from its checkpoint
    let checkpoints = MemoryCheckpoints::default();
    let mut first = ProjectionRunner::new(
        store,
        WithCheckpoint::new(Sums::default(), "sums", &checkpoints),
    )
    .with_batch_size(5);
    first.run_until_position(head / 3).unwrap();
    let partial = first.into_projection().projection;
    let mut second =
        ProjectionRunner::new(store, WithCheckpoint::new(partial, "sums", &checkpoints));
    assert_eq!(second.lag().unwrap(), head - head / 3);
    second.run_to_head().unwrap();
    assert_eq!(second.lag().unwrap(), 0);
    assert_eq!(second.projection().projection, reference);
    // rebuild from zero equals the incremental result
    assert_eq!(second.rebuild().unwrap(), head);
    assert_eq!(second.projection().projection, reference);
    // a point-in-time run stops at the first event after the time
    let all = read_all(store, 1);
    let cut = &all[all.len() / 2];
    let mut then = ProjectionRunner::new(store, TransactionalSums::default());
    let reached = then.run_until_time(cut.timestamp).unwrap();
    assert!(reached >= cut.position);
    assert!(
        all.iter()
            .filter(|e| e.position <= reached)
            .all(|e| e.timestamp <= cut.timestamp)
    );
    assert!(
        all.iter()
            .filter(|e| e.position > reached)
            .all(|e| e.timestamp > cut.timestamp)
    );
}

/// A background projection follows live appends, reports its lag and stops cleanly.
pub fn background_projection_follows_live<S: EventStore>(store: &S) {
    store
        .append("bg-1", ExpectedVersion::Any, events(1, 3))
        .unwrap();
    std::thread::scope(|scope| {
        let running =
            ProjectionRunner::new(store, TransactionalSums::default()).spawn_scoped(scope);
        assert!(running.wait_for(3, Duration::from_secs(10)));
        store
            .append("bg-1", ExpectedVersion::Any, events(4, 2))
            .unwrap();
        assert!(
            running.wait_for(5, Duration::from_secs(10)),
            "follows live appends"
        );
        assert_eq!(running.lag().unwrap(), 0);
        let runner = running.stop().unwrap();
        assert_eq!(runner.projection().sums.0["bg-1"], 1 + 2 + 3 + 4 + 5);
    });
}

/// A process manager re-run from an old checkpoint (as after a crash) issues no command
/// twice, and its events carry correlation and causation ids.
pub fn process_manager_rerun_issues_no_duplicates<S: EventStore>(store: &S) {
    for i in 0..6 {
        let meta = Metadata::new().with_correlation_id(Uuid::new_v4());
        store
            .append(
                &format!("order-{i}"),
                ExpectedVersion::NoStream,
                vec![event(i).with_metadata(meta)],
            )
            .unwrap();
    }
    let counters = Repository::<Counter, _>::new(store);
    let react = |from: u64| {
        let mut sub = Subscription::new(store, from).with_filter(Filter::all().kinds(["order"]));
        let mut applied = 0;
        while let Some(cause) = sub.try_next().unwrap() {
            let target = format!("{}", cause.position % 2);
            let done = counters
                .execute_caused_by(&target, &cause, |c| c.add(cause.position))
                .unwrap();
            applied += u64::from(!done.already_applied);
        }
        applied
    };
    assert_eq!(react(1), 6);
    assert_eq!(react(1), 0, "a full re-run applies nothing again");
    assert_eq!(react(4), 0);
    let (a, b) = (counters.load("0").unwrap(), counters.load("1").unwrap());
    assert_eq!(a.events + b.events, 6);
    assert_eq!(a.total + b.total, 1 + 2 + 3 + 4 + 5 + 6);
    let orders = read_stream(store, "order-2", 1);
    let reaction = read_stream(store, "counter-1", 1)
        .into_iter()
        .find(|e| e.metadata.causation_id == Some(orders[0].event_id))
        .expect("the reaction to order-2");
    assert_eq!(
        reaction.metadata.correlation_id,
        orders[0].metadata.correlation_id
    );
}

/// A reaction whose event a snapshot already covers is still recognised as done.
pub fn reaction_covered_by_a_snapshot_is_not_repeated<S: EventStore>(store: &S) {
    store
        .append("order-1", ExpectedVersion::NoStream, events(1, 1))
        .unwrap();
    let cause = read_stream(store, "order-1", 1).remove(0);
    let counters = Repository::<SnapCounter, _>::new(store);
    for _ in 0..9 {
        counters.execute("x", |c| c.add(1)).unwrap();
    }
    let first = counters
        .execute_caused_by("x", &cause, |c| c.add(100))
        .unwrap();
    assert!(!first.already_applied);
    assert_eq!(first.version, 10);
    let snapshot = store
        .snapshots()
        .expect("this store keeps snapshots")
        .load_snapshot("counter-x", u64::MAX)
        .unwrap()
        .expect("a snapshot at version 10");
    assert_eq!(snapshot.version, 10, "the snapshot covers the reaction");
    let again = counters
        .execute_caused_by("x", &cause, |c| c.add(100))
        .unwrap();
    assert!(again.already_applied, "ran twice: {again:?}");
    assert_eq!(counters.load("x").unwrap().total, 109);
}

/// `version_of_event` finds an event id in its own stream only, and only once stored.
pub fn event_ids_are_found_in_their_stream<S: EventStore>(store: &S) {
    let batch = events(1, 3);
    let ids: Vec<Uuid> = batch.iter().map(|e| e.event_id).collect();
    store
        .append("ids-1", ExpectedVersion::NoStream, batch)
        .unwrap();
    let other = events(4, 1);
    let other_id = other[0].event_id;
    store
        .append("ids-2", ExpectedVersion::NoStream, other)
        .unwrap();
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(
            store.version_of_event("ids-1", *id).unwrap(),
            Some(i as u64 + 1)
        );
        assert_eq!(store.version_of_event("ids-2", *id).unwrap(), None);
    }
    assert_eq!(store.version_of_event("ids-2", other_id).unwrap(), Some(1));
    assert_eq!(store.version_of_event("ids-1", other_id).unwrap(), None);
    assert_eq!(
        store.version_of_event("ids-1", Uuid::new_v4()).unwrap(),
        None
    );
    assert_eq!(
        store.version_of_event("never", Uuid::new_v4()).unwrap(),
        None
    );
}

/// `stream_end`, when a store answers it, names the stream's last event as a read
/// finds it: its version and global position, after single and batched appends, with
/// other streams between; `None` for a stream that does not exist.
pub fn stream_ends_name_the_last_event<S: EventStore>(store: &S) {
    assert_eq!(store.stream_end("ends-never").unwrap(), None);
    let check = |stream: &str| {
        let Some(end) = store.stream_end(stream).unwrap() else {
            return; // a store that cannot tell
        };
        let last = read_stream(store, stream, 1)
            .pop()
            .expect("a stream with an end");
        assert_eq!(
            (end.version, end.position),
            (last.stream_version, last.position),
            "{stream}"
        );
        assert_eq!(end.version, store.stream_version(stream).unwrap());
    };
    store
        .append("ends-1", ExpectedVersion::NoStream, events(1, 1))
        .unwrap();
    check("ends-1");
    store
        .append("ends-2", ExpectedVersion::NoStream, events(2, 3))
        .unwrap();
    check("ends-1");
    check("ends-2");
    store
        .append("ends-1", ExpectedVersion::Exact(1), events(5, 4))
        .unwrap();
    check("ends-1");
    check("ends-2");
    // a refused append changes no end
    let before = store.stream_end("ends-2").unwrap();
    assert!(
        store
            .append("ends-2", ExpectedVersion::Exact(1), events(9, 1))
            .is_err()
    );
    assert_eq!(store.stream_end("ends-2").unwrap(), before);
}

/// A repository with a state cache sees what another repository (without one) appends
/// to the same streams, and both agree with a full replay.
pub fn cached_repository_sees_other_writers<S: EventStore>(store: &S) {
    let cached = Repository::<Counter, _>::new(store).with_cache(crate::CacheOptions::default());
    let plain = Repository::<Counter, _>::new(store);
    for round in 0..20u64 {
        let id = format!("c{}", round % 3);
        if round % 4 == 3 {
            plain.execute(&id, |c| c.add(round)).unwrap();
        } else {
            let done = cached.execute(&id, |c| c.add(round)).unwrap();
            assert_eq!(done.state, plain.load(&id).unwrap().state);
        }
    }
    for i in 0..3 {
        let id = format!("c{i}");
        assert_eq!(
            cached.load(&id).unwrap().state,
            plain.load(&id).unwrap().state
        );
    }
    let stats = cached.cache_stats().unwrap();
    assert!(stats.hits > 0, "the cache was used: {stats:?}");
}

/// A reaction re-run through a repository with a state cache is still not repeated.
pub fn cached_reaction_is_not_repeated<S: EventStore>(store: &S) {
    store
        .append("order-1", ExpectedVersion::NoStream, events(1, 1))
        .unwrap();
    let cause = read_stream(store, "order-1", 1).remove(0);
    let counters =
        Repository::<SnapCounter, _>::new(store).with_cache(crate::CacheOptions::default());
    for _ in 0..12 {
        counters.execute("x", |c| c.add(1)).unwrap();
    }
    let first = counters
        .execute_caused_by("x", &cause, |c| c.add(100))
        .unwrap();
    assert!(!first.already_applied);
    let cold = Repository::<SnapCounter, _>::new(store);
    for repository in [&counters, &cold] {
        let again = repository
            .execute_caused_by("x", &cause, |c| c.add(100))
            .unwrap();
        assert!(again.already_applied, "ran twice: {again:?}");
        assert_eq!((again.version, again.state.total), (13, 112));
    }
    assert_eq!(counters.load("x").unwrap().total, 112);
}
