//! How subscriptions and projections read the log while catching up: each pass reads on
//! to the end of the append it is in (a store reads an append of many events whole), and
//! a catch-up through events a filter leaves out keeps to its deadline.

use es_core::projection::{
    BoxError, MemoryCheckpoints, Projection, ProjectionRunner, WithCheckpoint,
};
use es_core::store::EventStream;
use es_core::subscription::{Filter, Subscription};
use es_core::{
    AppendResult, EventStore, ExpectedVersion, MemoryStore, NewEvent, RecordedEvent, StoreError,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A memory store that counts the reads of its log and makes each take `pause`.
#[derive(Default)]
struct CountingReads {
    inner: MemoryStore,
    reads: AtomicU64,
    pause: Duration,
}

impl EventStore for CountingReads {
    fn append(
        &self,
        stream_id: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        self.inner.append(stream_id, expected, events)
    }
    fn read_stream(
        &self,
        stream_id: &str,
        from_version: u64,
    ) -> Result<EventStream<'_>, StoreError> {
        self.inner.read_stream(stream_id, from_version)
    }
    fn read_all(&self, from_position: u64) -> Result<EventStream<'_>, StoreError> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(self.pause);
        self.inner.read_all(from_position)
    }
    fn stream_version(&self, stream_id: &str) -> Result<u64, StoreError> {
        self.inner.stream_version(stream_id)
    }
    fn head_position(&self) -> Result<u64, StoreError> {
        self.inner.head_position()
    }
    fn wait_for_head(&self, position: u64, timeout: Duration) -> Result<u64, StoreError> {
        self.inner.wait_for_head(position, timeout)
    }
}

fn events(n: usize) -> Vec<NewEvent> {
    (0..n)
        .map(|k| NewEvent::new("Added", 1, format!(r#"{{"k":{k}}}"#).into_bytes()))
        .collect()
}

#[derive(Default)]
struct Count(u64);

impl Projection for Count {
    fn handle(&mut self, _: &RecordedEvent) -> Result<(), BoxError> {
        self.0 += 1;
        Ok(())
    }
    fn reset(&mut self) -> Result<(), BoxError> {
        self.0 = 0;
        Ok(())
    }
}

/// Two appends of 10,000 events: a subscription reads the log a handful of times, not
/// once per 512 events, and a projection of batches of one event a handful of times, not
/// once per event.
#[test]
fn catching_up_over_large_appends_reads_each_about_once() {
    let store = CountingReads::default();
    store
        .append("big-1", ExpectedVersion::Any, events(10_000))
        .unwrap();
    store
        .append("big-2", ExpectedVersion::Any, events(10_000))
        .unwrap();

    let mut sub = Subscription::new(&store, 1);
    let mut delivered = Vec::new();
    while let Some(e) = sub.try_next().unwrap() {
        delivered.push(e.position);
    }
    assert_eq!(delivered, (1..=20_000).collect::<Vec<_>>());
    let reads = store.reads.swap(0, Ordering::Relaxed);
    assert!(reads <= 4, "a subscription read the log {reads} times");

    let mut runner = ProjectionRunner::new(
        &store,
        WithCheckpoint::new(Count::default(), "n", MemoryCheckpoints::default()),
    )
    .with_batch_size(1);
    assert_eq!(runner.run_to_head().unwrap(), 20_000);
    assert_eq!(runner.projection().projection.0, 20_000);
    let reads = store.reads.swap(0, Ordering::Relaxed);
    assert!(
        reads <= 6,
        "a projection of batches of one read the log {reads} times"
    );
}

/// Appends of one event each to many streams: a pass still stops after its batch (no
/// append to read on to the end of).
#[test]
fn catching_up_over_small_appends_reads_in_batches() {
    let store = CountingReads::default();
    for n in 0..2_000 {
        store
            .append(&format!("s-{n}"), ExpectedVersion::Any, events(1))
            .unwrap();
    }
    let mut runner = ProjectionRunner::new(
        &store,
        WithCheckpoint::new(Count::default(), "n", MemoryCheckpoints::default()),
    )
    .with_batch_size(100);
    assert_eq!(runner.run_to_head().unwrap(), 2_000);
    let reads = store.reads.load(Ordering::Relaxed);
    assert!((20..=22).contains(&reads), "{reads} reads for 20 batches");
}

/// A store whose log reads take 5 ms each, holding 200 appends of 512 events of
/// `event_type` to streams `{prefix}-{n}`: a catch-up through them takes over a second.
fn slow_store_of_noise(prefix: &str, event_type: &str) -> CountingReads {
    let store = CountingReads {
        pause: Duration::from_millis(5),
        ..CountingReads::default()
    };
    for n in 0..200 {
        let batch = (0..512)
            .map(|k| NewEvent::new(event_type, 1, format!(r#"{{"k":{k}}}"#).into_bytes()))
            .collect();
        store
            .append(&format!("{prefix}-{n}"), ExpectedVersion::Any, batch)
            .unwrap();
    }
    store
}

/// Asks `next` with a 20 ms deadline: the first call must come back empty after a few
/// reads of `store`'s log, and later calls must go on to the event past the noise, which
/// is returned.
fn keeps_to_its_deadline<T>(
    store: &CountingReads,
    mut next: impl FnMut(Duration) -> Option<T>,
) -> T {
    assert!(next(Duration::from_millis(20)).is_none());
    let reads = store.reads.load(Ordering::Relaxed);
    assert!(
        reads < 50,
        "{reads} reads of the log before a 20 ms deadline"
    );
    (0..1000)
        .find_map(|_| next(Duration::from_millis(20)))
        .expect("the event past the noise")
}

/// A filtered catch-up through many events the filter leaves out returns at its
/// deadline, and goes on from there on the next call.
#[test]
fn a_filtered_catch_up_keeps_to_its_deadline() {
    let store = slow_store_of_noise("noise", "Noise");
    store
        .append("rare-1", ExpectedVersion::Any, events(1))
        .unwrap();
    let mut sub = Subscription::new(&store, 1).with_filter(Filter::all().kinds(["rare"]));
    let found = keeps_to_its_deadline(&store, |wait| sub.next_timeout(wait).unwrap());
    assert_eq!(found.stream_id, "rare-1");
}

/// Changing a subscription's filter after it has read ahead filters what it read too: a
/// typed subscription never meets an event of another kind.
#[test]
fn a_filter_set_after_reading_applies_to_what_was_read() {
    let store = MemoryStore::new();
    store
        .append("order-1", ExpectedVersion::Any, events(1))
        .unwrap();
    store
        .append("account-1", ExpectedVersion::Any, events(1))
        .unwrap();
    let mut sub = Subscription::new(&store, 1);
    assert_eq!(sub.try_next().unwrap().unwrap().stream_id, "order-1");
    // the second event is read already; a filter for orders leaves it out
    let mut orders = sub.with_filter(Filter::all().kinds(["order"]));
    assert!(orders.try_next().unwrap().is_none());
    assert_eq!(orders.position(), 3);
}

/// One stream written by many appends of one event: a projection's batches keep their
/// size (its appends are apart, though they follow each other in the stream).
#[test]
fn a_stream_of_many_small_appends_is_read_in_batches() {
    let store = CountingReads::default();
    for _ in 0..2_000 {
        store
            .append("s-1", ExpectedVersion::Any, events(1))
            .unwrap();
    }
    let mut runner = ProjectionRunner::new(
        &store,
        WithCheckpoint::new(Count::default(), "n", MemoryCheckpoints::default()),
    )
    .with_batch_size(100);
    assert_eq!(runner.run_to_head().unwrap(), 2_000);
    let reads = store.reads.load(Ordering::Relaxed);
    assert!((20..=22).contains(&reads), "{reads} reads for 20 batches");
}

mod typed {
    use es_core::prelude::*;
    use es_core::subscription::Subscription;
    use es_core::{EventStore, ExpectedVersion, NewEvent};

    #[event]
    #[derive(Debug, Clone, PartialEq)]
    pub struct Opened {
        pub by: String,
    }

    #[event(ignore = ["Viewed"])]
    #[derive(Debug, Clone, PartialEq)]
    pub enum PageEvent {
        Opened(Opened),
    }

    #[derive(Debug, Default, Clone, Aggregate)]
    #[aggregate(kind = "page", event = PageEvent)]
    pub struct Page {
        pub opened: u64,
    }

    impl Apply<Opened> for Page {
        fn apply(&mut self, _: &Opened) {
            self.opened += 1;
        }
    }

    /// A typed subscription passing a long run of a declared ignored type keeps to its
    /// deadline too, and goes on from where it stopped.
    #[test]
    fn a_typed_catch_up_through_ignored_events_keeps_to_its_deadline() {
        let store = super::slow_store_of_noise("page", "Viewed");
        let opened = NewEvent::new("Opened", 1, br#"{"by":"ann"}"#.to_vec());
        store
            .append("page-x", ExpectedVersion::Any, vec![opened])
            .unwrap();
        let mut sub = Subscription::new(&store, 1).typed::<Page>();
        let found = super::keeps_to_its_deadline(&store, |wait| sub.next_timeout(wait).unwrap());
        assert_eq!(found.stream_id, "page-x");
    }
}
