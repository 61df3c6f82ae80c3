//! Every repository command, append, snapshot, subscription poll and projection batch
//! runs in a span that names its stream, versions and positions; a stale snapshot warns
//! once and is replaced by the next load.

use crate::common::Count;
use es_core::prelude::*;
use es_core::projection::{MemoryCheckpoints, ProjectionRunner, WithCheckpoint};
use es_core::snapshot::{Snapshot, SnapshotStore};
use es_core::subscription::Subscription;
use es_core::{EventStore, Repository};
use es_store_fs::FileStore;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

#[event]
#[derive(Debug, Clone, PartialEq)]
pub struct Counted {
    pub by: u64,
}

#[event]
#[derive(Debug, Clone, PartialEq)]
pub enum CounterEvent {
    Counted(Counted),
}

#[derive(Debug, Default, Clone, PartialEq, serde::Serialize, serde::Deserialize, Aggregate)]
#[aggregate(kind = "counter", event = CounterEvent, snapshot_every = 2)]
pub struct Counter {
    total: u64,
}

impl Apply<Counted> for Counter {
    fn apply(&mut self, e: &Counted) {
        self.total += e.by;
    }
}

/// A span's name and its fields as recorded.
type SpanRecord = (String, Vec<(String, String)>);

/// Spans and warnings, in order.
#[derive(Default)]
struct Recorder {
    next: AtomicU64,
    spans: Mutex<Vec<SpanRecord>>,
    warnings: Mutex<Vec<String>>,
}

struct Fields<'a>(&'a mut Vec<(String, String)>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push((field.name().to_owned(), format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name().to_owned(), value.to_owned()));
    }
}

impl Subscriber for &'static Recorder {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut fields = Vec::new();
        span.record(&mut Fields(&mut fields));
        let mut spans = self.spans.lock().unwrap();
        spans.push((span.metadata().name().to_owned(), fields));
        self.next.fetch_add(1, Ordering::SeqCst);
        Id::from_u64(spans.len() as u64)
    }
    fn record(&self, span: &Id, values: &Record<'_>) {
        let mut spans = self.spans.lock().unwrap();
        if let Some((_, fields)) = spans.get_mut(span.into_u64() as usize - 1) {
            values.record(&mut Fields(fields));
        }
    }
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        if *event.metadata().level() == tracing::Level::WARN {
            let mut fields = Vec::new();
            event.record(&mut Fields(&mut fields));
            self.warnings.lock().unwrap().push(format!("{fields:?}"));
        }
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .rev()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

#[test]
fn commands_appends_snapshots_polls_and_batches_have_spans() {
    let recorder: &'static Recorder = Box::leak(Box::default());
    let dir = tempfile::tempdir().unwrap();
    tracing::subscriber::with_default(recorder, || {
        let store = FileStore::open(dir.path()).unwrap();
        let counters = Repository::<Counter, _>::new(&store);
        for by in 1..=3 {
            counters
                .execute("7", |_| Ok::<_, std::convert::Infallible>(Counted { by }))
                .unwrap();
        }
        let mut sub = Subscription::new(&store, 1);
        assert!(
            sub.next_timeout(Duration::from_millis(10))
                .unwrap()
                .is_some()
        );
        let mut runner = ProjectionRunner::new(
            &store,
            WithCheckpoint::new(Count(0), "count", MemoryCheckpoints::default()),
        );
        assert_eq!(runner.run_to_head().unwrap(), 3);
    });
    let spans = recorder.spans.lock().unwrap();
    let named = |name: &str| spans.iter().filter(|(n, _)| n == name).collect::<Vec<_>>();
    let commands = named("es.command");
    assert_eq!(commands.len(), 3);
    assert_eq!(field(&commands[2].1, "stream_id"), Some("counter-7"));
    assert_eq!(field(&commands[2].1, "version"), Some("3"));
    assert_eq!(field(&commands[2].1, "first_position"), Some("3"));
    let appends = named("es.append");
    assert_eq!(appends.len(), 3);
    assert_eq!(field(&appends[1].1, "stream_id"), Some("counter-7"));
    assert_eq!(field(&appends[1].1, "first_position"), Some("2"));
    let snapshots = named("es.snapshot");
    assert_eq!(snapshots.len(), 1, "one snapshot, at version 2");
    assert_eq!(field(&snapshots[0].1, "version"), Some("2"));
    assert!(!named("es.poll").is_empty());
    let batches = named("es.projection.batch");
    assert_eq!(field(&batches[0].1, "from"), Some("1"));
    assert_eq!(field(&batches[0].1, "to"), Some("3"));
}

#[test]
fn a_stale_snapshot_warns_once_and_is_replaced_by_the_next_load() {
    let recorder: &'static Recorder = Box::leak(Box::default());
    let dir = tempfile::tempdir().unwrap();
    tracing::subscriber::with_default(recorder, || {
        let store = FileStore::open(dir.path()).unwrap();
        let counters = Repository::<Counter, _>::new(&store);
        counters
            .execute("7", |_| {
                Ok::<_, std::convert::Infallible>(Counted { by: 5 })
            })
            .unwrap();
        let last = store
            .read_stream("counter-7", 1)
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        // a snapshot from code whose state meant something else
        store
            .save_snapshot(&Snapshot {
                stream_id: "counter-7".into(),
                version: 1,
                position: last.position,
                last_event_at: last.timestamp,
                snapshot_version: 1,
                fingerprint: 0xdead_beef,
                state: br#"{"total":999}"#.to_vec(),
            })
            .unwrap();
        for _ in 0..3 {
            assert_eq!(counters.load("7").unwrap().total, 5);
        }
        let replaced = store.load_snapshot("counter-7", u64::MAX).unwrap().unwrap();
        assert_ne!(replaced.fingerprint, 0xdead_beef);
        assert_eq!(replaced.state, br#"{"total":5}"#.to_vec());
    });
    let warnings = recorder.warnings.lock().unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
}
