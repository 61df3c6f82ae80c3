//! The repository's state cache never changes what a command sees: random commands on a
//! few aggregates, with the cache on and off, with snapshots and without, with another
//! repository writing to the same streams (also between a command's load and its append,
//! forcing conflicts), give the same results, the same states as a full replay and the
//! same stored events. Reactions are recognised by one id look-up, without reading the
//! target's history.

use es_core::prelude::*;
use es_core::{
    CacheOptions, EventStream, NewEvent, RecordedEvent, SnapshotStore, StoreError, uuid::Uuid,
};
use proptest::prelude::*;
use std::sync::atomic::{AtomicU64, Ordering};

#[event]
#[derive(Debug, Clone, PartialEq)]
pub struct Added {
    pub n: u64,
}

#[event]
#[derive(Debug, Clone, PartialEq)]
pub struct Taken {
    pub n: u64,
}

#[event]
#[derive(Debug, Clone, PartialEq)]
pub enum TallyEvent {
    Added(Added),
    Taken(Taken),
}

#[derive(Debug, PartialEq)]
pub struct NotEnough;

/// Tally aggregates whose state depends on the order of their events (`trail`), without
/// snapshots and with one every 3 events.
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize, serde::Deserialize, Aggregate)]
#[aggregate(kind = "tally", event = TallyEvent)]
pub struct Plain {
    pub total: u64,
    pub trail: u64,
    pub events: u64,
}

#[derive(Debug, Default, Clone, PartialEq, serde::Serialize, serde::Deserialize, Aggregate)]
#[aggregate(kind = "tally", event = TallyEvent, snapshot_every = 3)]
pub struct Snapped {
    pub total: u64,
    pub trail: u64,
    pub events: u64,
}

macro_rules! tally_handlers {
    ($($name:ident),*) => {$(
        impl Apply<Added> for $name {
            fn apply(&mut self, e: &Added) {
                self.total += e.n;
                self.trail = self.trail.wrapping_mul(31).wrapping_add(e.n);
                self.events += 1;
            }
        }

        impl Apply<Taken> for $name {
            fn apply(&mut self, e: &Taken) {
                self.total -= e.n;
                self.trail = self.trail.wrapping_mul(37).wrapping_add(e.n);
                self.events += 1;
            }
        }

        impl Tally for $name {
            fn total(&self) -> u64 {
                self.total
            }
        }
    )*};
}

tally_handlers!(Plain, Snapped);

trait Tally: Aggregate<Events = TallyEvent> + Clone + PartialEq + std::fmt::Debug {
    fn total(&self) -> u64;
}

#[derive(Debug, Clone)]
enum Op {
    Add(u64),
    Take(u64),
    Pair(u64, u64),
    Nothing,
    /// Another repository adds `n` between this command's load and its append.
    Raced(u64),
    React(usize),
    Load,
}

#[derive(Debug, Clone)]
struct Step {
    /// 0: the repository under test; 1: another repository on the same store.
    by_other: bool,
    aggregate: u8,
    op: Op,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1..20u64).prop_map(Op::Add),
        2 => (1..40u64).prop_map(Op::Take),
        1 => (1..9u64, 1..9u64).prop_map(|(a, b)| Op::Pair(a, b)),
        1 => Just(Op::Nothing),
        2 => (1..5u64).prop_map(Op::Raced),
        2 => (0..4usize).prop_map(Op::React),
        1 => Just(Op::Load),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    (prop::bool::weighted(0.2), 0..3u8, op()).prop_map(|(by_other, aggregate, op)| Step {
        by_other,
        aggregate,
        op,
    })
}

/// What a step returned, comparable across runs.
#[derive(Debug, PartialEq)]
enum Outcome<A> {
    Done {
        state: A,
        version: u64,
        events: usize,
        already_applied: bool,
    },
    Rejected,
    Conflict,
    Loaded(A, u64),
}

/// A stored event without what differs from run to run (its time, a random id): stream,
/// version, type, payload, causation id and, for a reaction, its derived id.
type Stored = (String, u64, String, Vec<u8>, Option<Uuid>, Option<Uuid>);

/// The stored events, comparable across runs.
fn stored(store: &MemoryStore) -> Vec<Stored> {
    store
        .read_all(1)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let derived = e.metadata.causation_id.map(|_| e.event_id);
            (
                e.stream_id,
                e.stream_version,
                e.event_type,
                e.payload,
                e.metadata.causation_id,
                derived,
            )
        })
        .collect()
}

/// Causes with fixed ids, so that reactions derive the same ids in every run.
fn causes(store: &MemoryStore) -> Vec<RecordedEvent> {
    let batch = (0..4u128)
        .map(|i| {
            let mut e = NewEvent::new("OrderPlaced", 1, br#"{"n":1}"#.to_vec());
            e.event_id = Uuid::from_u128(0xC0FFEE00 + i);
            e
        })
        .collect();
    store
        .append("order-1", ExpectedVersion::NoStream, batch)
        .unwrap();
    store
        .read_stream("order-1", 1)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn run<A: Tally>(steps: &[Step], cache: Option<CacheOptions>) -> (Vec<Outcome<A>>, MemoryStore) {
    let store = MemoryStore::new();
    let causes = causes(&store);
    let mut repository = Repository::<A, _>::new(&store).with_max_attempts(2);
    if let Some(options) = cache {
        repository = repository.with_cache(options);
    }
    let other = Repository::<A, _>::new(&store).with_max_attempts(2);
    let mut outcomes = Vec::new();
    for step in steps {
        let repo = if step.by_other { &other } else { &repository };
        let id = format!("{}", step.aggregate);
        let result = match &step.op {
            Op::Add(n) => repo.execute(&id, |_| Ok::<_, NotEnough>(Added { n: *n })),
            Op::Take(n) => repo.execute(&id, |s| {
                if s.total() < *n {
                    Err(NotEnough)
                } else {
                    Ok(Taken { n: *n })
                }
            }),
            Op::Pair(a, b) => repo.execute(&id, |s| {
                if s.total() + a < *b {
                    return Err(NotEnough);
                }
                Ok((Added { n: *a }, Taken { n: *b }))
            }),
            Op::Nothing => repo.execute(&id, |_| Ok::<_, NotEnough>(())),
            Op::Raced(n) => {
                let mut raced = false;
                repo.execute(&id, |_| {
                    if !raced {
                        raced = true;
                        other
                            .execute(&id, |_| Ok::<_, NotEnough>(Added { n: 100 }))
                            .unwrap();
                    }
                    Ok::<_, NotEnough>(Added { n: *n })
                })
            }
            Op::React(i) => repo.execute_caused_by(&id, &causes[*i], |_| {
                Ok::<_, NotEnough>(Added {
                    n: 1000 + *i as u64,
                })
            }),
            Op::Load => {
                let loaded = repo.load(&id).unwrap();
                outcomes.push(Outcome::Loaded(loaded.state, loaded.version));
                continue;
            }
        };
        outcomes.push(match result {
            Ok(done) => Outcome::Done {
                state: done.state,
                version: done.version,
                events: done.events.len(),
                already_applied: done.already_applied,
            },
            Err(CommandError::Rejected(NotEnough)) => Outcome::Rejected,
            Err(CommandError::Conflict { .. }) => Outcome::Conflict,
            Err(e) => panic!("unexpected error: {e:?}"),
        });
    }
    // the state every instance ends in, as the repository under test sees it, must be the
    // fold of its whole stream
    for aggregate in 0..3 {
        let id = format!("{aggregate}");
        let mut replayed = A::default();
        for e in repository.history(&id).unwrap() {
            replayed.apply_event(&e.event);
        }
        let loaded = repository.load(&id).unwrap();
        assert_eq!(loaded.state, replayed, "instance {id}");
    }
    (outcomes, store)
}

fn same_with_and_without_cache<A: Tally>(steps: &[Step]) {
    let (without, plain_store) = run::<A>(steps, None);
    for cache in [
        CacheOptions::default(),
        // room for one state: every other command is a miss or an eviction
        CacheOptions::default().max_entries(1),
    ] {
        let (with, cached_store) = run::<A>(steps, Some(cache));
        assert_eq!(with, without, "results, cache {cache:?}");
        assert_eq!(
            stored(&cached_store),
            stored(&plain_store),
            "stored events, cache {cache:?}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn the_cache_changes_nothing_without_snapshots(steps in prop::collection::vec(step(), 1..60)) {
        same_with_and_without_cache::<Plain>(&steps);
    }

    #[test]
    fn the_cache_changes_nothing_with_snapshots(steps in prop::collection::vec(step(), 1..60)) {
        same_with_and_without_cache::<Snapped>(&steps);
    }
}

#[test]
fn clones_share_one_cache_across_threads() {
    let store = MemoryStore::new();
    let repository = Repository::<Snapped, _>::new(&store)
        .with_max_attempts(1000)
        .with_cache(CacheOptions::default().max_entries(2));
    std::thread::scope(|scope| {
        for t in 0..4u64 {
            let repository = repository.clone();
            scope.spawn(move || {
                for i in 0..200u64 {
                    let id = format!("{}", i % 3);
                    repository
                        .execute(&id, |_| Ok::<_, NotEnough>(Added { n: t * 1000 + i }))
                        .unwrap();
                }
            });
        }
        // and a writer without the cache
        let store = &store;
        scope.spawn(move || {
            let other = Repository::<Snapped, _>::new(store).with_max_attempts(1000);
            for i in 0..200u64 {
                other
                    .execute(&format!("{}", i % 3), |_| {
                        Ok::<_, NotEnough>(Added { n: 7 })
                    })
                    .unwrap();
            }
        });
    });
    let stats = repository.cache_stats().unwrap();
    assert!(stats.entries <= 2, "{stats:?}");
    assert!(stats.hits > 0, "{stats:?}");
    let mut events = 0;
    for aggregate in 0..3 {
        let id = format!("{aggregate}");
        let mut replayed = Snapped::default();
        for e in repository.history(&id).unwrap() {
            replayed.apply_event(&e.event);
        }
        events += replayed.events;
        assert_eq!(repository.load(&id).unwrap().state, replayed);
    }
    assert_eq!(events, 4 * 200 + 200);
}

/// Two stores stand for one history replaced by another (a restore, a failover): the
/// repository's store is swapped under its cache. `ends` says whether it tells where a
/// stream ends (a store whose log end can move back under a running process, as
/// PostgreSQL's after a failover that lost commits, does not).
struct Switch {
    stores: [MemoryStore; 2],
    active: AtomicU64,
    ends: bool,
}

impl Switch {
    fn new(ends: bool) -> Self {
        Switch {
            stores: [MemoryStore::new(), MemoryStore::new()],
            active: AtomicU64::new(0),
            ends,
        }
    }
    fn store(&self) -> &MemoryStore {
        &self.stores[self.active.load(Ordering::SeqCst) as usize]
    }
}

impl EventStore for Switch {
    fn append(
        &self,
        stream_id: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<es_core::AppendResult, StoreError> {
        self.store().append(stream_id, expected, events)
    }
    fn read_stream(&self, stream_id: &str, from: u64) -> Result<EventStream<'_>, StoreError> {
        self.store().read_stream(stream_id, from)
    }
    fn read_all(&self, from: u64) -> Result<EventStream<'_>, StoreError> {
        self.store().read_all(from)
    }
    fn stream_version(&self, stream_id: &str) -> Result<u64, StoreError> {
        self.store().stream_version(stream_id)
    }
    fn head_position(&self) -> Result<u64, StoreError> {
        self.store().head_position()
    }
    fn stream_end(&self, stream_id: &str) -> Result<Option<es_core::StreamEnd>, StoreError> {
        if !self.ends {
            return Ok(None);
        }
        self.store().stream_end(stream_id)
    }
}

#[test]
fn a_cached_state_of_a_replaced_history_is_not_used() {
    let switch = Switch::new(true);
    // the second history: another stream first, so positions differ
    switch.stores[1]
        .append(
            "other-1",
            ExpectedVersion::NoStream,
            vec![NewEvent::new("X", 1, b"{}".to_vec())],
        )
        .unwrap();
    let repository = Repository::<Plain, _>::new(&switch).with_cache(CacheOptions::default());
    let plain = Repository::<Plain, _>::new(&switch);
    repository
        .execute("1", |_| Ok::<_, NotEnough>(Added { n: 5 }))
        .unwrap();
    switch.active.store(1, Ordering::SeqCst);
    plain
        .execute("1", |_| Ok::<_, NotEnough>(Added { n: 9 }))
        .unwrap();
    let done = repository
        .execute("1", |_| Ok::<_, NotEnough>(Added { n: 1 }))
        .unwrap();
    assert_eq!((done.state.total, done.version), (10, 2));
    assert_eq!(repository.cache_stats().unwrap().invalidations, 1);
}

/// The replaced history gives the cached state's last version and position to another
/// event (one stream, one writer: positions follow versions). The cached state is anchored
/// to its event's id too, and is not used: the command decides on the new history's state,
/// and what it leaves (here a snapshot) is that history's (it folded the old one's, and
/// its snapshot made the error outlast the cache).
#[test]
fn a_cached_state_is_anchored_to_its_events_id() {
    let switch = Switch::new(false);
    let repository = Repository::<Snapped, _>::new(&switch).with_cache(CacheOptions::default());
    let plain = Repository::<Snapped, _>::new(&switch);
    for n in [5, 6] {
        repository
            .execute("1", |_| Ok::<_, NotEnough>(Added { n }))
            .unwrap();
    }
    switch.active.store(1, Ordering::SeqCst);
    for n in [9, 8] {
        plain
            .execute("1", |_| Ok::<_, NotEnough>(Added { n }))
            .unwrap();
    }
    // the same version and position in both histories
    let ends = switch
        .stores
        .each_ref()
        .map(|s| s.stream_end("tally-1").unwrap());
    assert_eq!(ends[0], ends[1]);
    let done = repository
        .execute("1", |c| {
            assert_eq!(c.total, 17, "the command saw the old history's state");
            Ok::<_, NotEnough>(Added { n: 1 })
        })
        .unwrap();
    assert_eq!((done.state.total, done.version), (18, 3));
    assert_eq!(repository.cache_stats().unwrap().invalidations, 1);
    // a load without the cache, from the snapshot the command wrote at version 3, agrees
    // with a replay
    let fresh = Repository::<Snapped, _>::new(&switch).load("1").unwrap();
    let replayed = Repository::<Plain, _>::new(&switch).load("1").unwrap();
    assert_eq!(
        (fresh.total, fresh.trail, fresh.version),
        (18, replayed.trail, 3)
    );
}

/// Counts the events read by stream through it and the id look-ups; tells where a
/// stream ends only when made with [`Counting::telling_ends`].
struct Counting<S> {
    inner: S,
    events_read: AtomicU64,
    lookups: AtomicU64,
    ends: bool,
}

impl<S> Counting<S> {
    fn new(inner: S) -> Self {
        Counting {
            inner,
            events_read: AtomicU64::new(0),
            lookups: AtomicU64::new(0),
            ends: false,
        }
    }
    fn telling_ends(inner: S) -> Self {
        Counting {
            ends: true,
            ..Counting::new(inner)
        }
    }
    fn take_reads(&self) -> u64 {
        self.events_read.swap(0, Ordering::SeqCst)
    }
}

impl<S: EventStore> EventStore for Counting<S> {
    fn append(
        &self,
        stream_id: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<es_core::AppendResult, StoreError> {
        self.inner.append(stream_id, expected, events)
    }
    fn read_stream(&self, stream_id: &str, from: u64) -> Result<EventStream<'_>, StoreError> {
        let counter = &self.events_read;
        Ok(Box::new(self.inner.read_stream(stream_id, from)?.inspect(
            move |_| {
                counter.fetch_add(1, Ordering::SeqCst);
            },
        )))
    }
    fn read_all(&self, from: u64) -> Result<EventStream<'_>, StoreError> {
        self.inner.read_all(from)
    }
    fn stream_version(&self, stream_id: &str) -> Result<u64, StoreError> {
        self.inner.stream_version(stream_id)
    }
    fn head_position(&self) -> Result<u64, StoreError> {
        self.inner.head_position()
    }
    fn stream_end(&self, stream_id: &str) -> Result<Option<es_core::StreamEnd>, StoreError> {
        if !self.ends {
            return Ok(None);
        }
        self.inner.stream_end(stream_id)
    }
    fn snapshots(&self) -> Option<&dyn SnapshotStore> {
        self.inner.snapshots()
    }
    fn version_of_event(&self, stream_id: &str, event_id: Uuid) -> Result<Option<u64>, StoreError> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        self.inner.version_of_event(stream_id, event_id)
    }
}

/// What a cached command reads through `store`: `idle` events when nobody else appended
/// since its state was cached (the anchoring event, or nothing from a store that tells
/// where a stream ends), the anchoring event and the new one after another writer's
/// append, and the whole stream without the cache.
fn cached_command_reads(store: &Counting<MemoryStore>, idle: u64) {
    let cached = Repository::<Plain, _>::new(store).with_cache(CacheOptions::default());
    let plain = Repository::<Plain, _>::new(store);
    let start = plain.load("1").unwrap().state.total;
    let add = |repository: &Repository<Plain, &Counting<MemoryStore>>| {
        repository
            .execute("1", |_| Ok::<_, NotEnough>(Added { n: 1 }))
            .unwrap()
    };
    for _ in 0..100 {
        add(&cached);
    }
    store.take_reads();
    let done = add(&cached);
    assert_eq!(
        store.take_reads(),
        idle,
        "a command with nothing new to read"
    );
    assert_eq!(done.state.total, start + 101);
    // another writer's events are read, and only those
    add(&plain);
    store.take_reads();
    let done = add(&cached);
    assert_eq!(store.take_reads(), 2);
    assert_eq!(done.state.total, start + 103);
    assert_eq!(cached.cache_stats().unwrap().invalidations, 0);
    // without the cache, the whole stream
    let done = add(&plain);
    assert_eq!(store.take_reads(), done.version - 1);
}

#[test]
fn a_cached_command_reads_only_the_event_it_starts_from() {
    cached_command_reads(&Counting::new(MemoryStore::new()), 1);
}

/// A store that tells where a stream ends spares a cached command every read while
/// nobody else appends, also where positions differ from versions.
#[test]
fn a_cached_command_reads_nothing_while_its_stream_ends_at_the_cached_event() {
    cached_command_reads(&Counting::telling_ends(MemoryStore::new()), 0);
    let other_first = MemoryStore::new();
    other_first
        .append(
            "other-1",
            ExpectedVersion::NoStream,
            vec![NewEvent::new("X", 1, b"{}".to_vec())],
        )
        .unwrap();
    cached_command_reads(&Counting::telling_ends(other_first), 0);
}

#[test]
fn a_reaction_reads_no_history() {
    let store = Counting::new(MemoryStore::new());
    let causes = {
        let memory = &store.inner;
        causes(memory)
    };
    // a long target stream, with snapshots, and a repository that starts cold
    let tallies = Repository::<Snapped, _>::new(&store);
    for _ in 0..1000 {
        tallies
            .execute("1", |_| Ok::<_, NotEnough>(Added { n: 1 }))
            .unwrap();
    }
    store.take_reads();
    let first = tallies
        .execute_caused_by("1", &causes[0], |_| Ok::<_, NotEnough>(Added { n: 5 }))
        .unwrap();
    assert!(!first.already_applied);
    assert!(
        store.take_reads() <= 3,
        "starts from the snapshot, not the history"
    );
    let cached = Repository::<Snapped, _>::new(&store).with_cache(CacheOptions::default());
    cached.load("1").unwrap();
    store.take_reads();
    let lookups = store.lookups.load(Ordering::SeqCst);
    for cause in &causes {
        cached
            .execute_caused_by("1", cause, |_| Ok::<_, NotEnough>(Added { n: 5 }))
            .unwrap();
    }
    assert_eq!(store.lookups.load(Ordering::SeqCst) - lookups, 4);
    // the anchoring event, and the last event when a snapshot is taken
    let reads = store.take_reads();
    assert!(reads <= 2 * 4, "{reads} events read for 4 reactions");
    // re-run: nothing applied twice, still no history read
    for (i, cause) in causes.iter().enumerate() {
        let again = cached
            .execute_caused_by("1", cause, |_| Ok::<_, NotEnough>(Added { n: 5 }))
            .unwrap();
        assert!(again.already_applied, "reaction {i} ran twice");
    }
    assert!(store.take_reads() <= 4);
    assert_eq!(cached.load("1").unwrap().total, 1000 + 4 * 5);
    assert_eq!(tallies.load("1").unwrap().total, 1000 + 4 * 5);
}

/// Two runs of one reaction race, and decide differently (as two service instances may:
/// each records its own name, or reads a clock). The store keeps the first; the second run
/// learns that its append was a retry of the first, reports the reaction as already
/// applied, and keeps neither its own events nor a state folded from them: its cache
/// holds what was stored.
#[test]
fn the_loser_of_a_reaction_race_keeps_the_stored_events_not_its_own() {
    let store = MemoryStore::new();
    let cause = causes(&store).remove(0);
    let winner = Repository::<Plain, _>::new(&store).with_cache(CacheOptions::default());
    let loser = Repository::<Plain, _>::new(&store).with_cache(CacheOptions::default());
    let mut raced = false;
    let lost = loser
        .execute_caused_by("1", &cause, |_| {
            if !raced {
                raced = true;
                // while this run decides, the other run stores its decision
                let won = winner
                    .execute_caused_by("1", &cause, |_| Ok::<_, NotEnough>(Added { n: 7 }))
                    .unwrap();
                assert!(!won.already_applied);
            }
            Ok::<_, NotEnough>(Added { n: 3 })
        })
        .unwrap();
    assert!(lost.already_applied, "{lost:?}");
    assert!(lost.events.is_empty() && lost.appended.is_none());
    // the state and version returned are the stream's as stored, not those read before
    assert_eq!((lost.state.total, lost.version), (7, 1), "{lost:?}");
    // both repositories, and a cold one, see the stored event: 7, not 3
    assert_eq!(loser.load("1").unwrap().total, 7);
    assert_eq!(winner.load("1").unwrap().total, 7);
    assert_eq!(
        Repository::<Plain, _>::new(&store).load("1").unwrap().total,
        7
    );
    // and the next command of the loser starts from the stored state
    let next = loser
        .execute("1", |_| Ok::<_, NotEnough>(Added { n: 1 }))
        .unwrap();
    assert_eq!((next.state.total, next.version), (8, 2));
}

/// Two reactions to one cause on one instance (two order lines for one product), each
/// named: both run, each once; the unnamed reaction keeps the ids it always derived.
#[test]
fn named_reactions_to_one_cause_each_run_once() {
    let store = MemoryStore::new();
    let cause = causes(&store).remove(0);
    let repository = Repository::<Plain, _>::new(&store).with_cache(CacheOptions::default());
    for (reaction, n) in [("line-1", 2), ("line-2", 3)] {
        let done = repository
            .execute_caused_by_as("1", &cause, reaction, |_| Ok::<_, NotEnough>(Added { n }))
            .unwrap();
        assert!(!done.already_applied, "{reaction}");
    }
    for (reaction, n) in [("line-1", 2), ("line-2", 3)] {
        let again = repository
            .execute_caused_by_as("1", &cause, reaction, |_| Ok::<_, NotEnough>(Added { n }))
            .unwrap();
        assert!(again.already_applied, "{reaction}");
    }
    assert_eq!(repository.load("1").unwrap().total, 5);
    // the unnamed reaction is a third one, with the ids derived from the cause alone
    let plain = repository
        .execute_caused_by("1", &cause, |_| Ok::<_, NotEnough>(Added { n: 1 }))
        .unwrap();
    assert!(!plain.already_applied);
    let stored = store
        .read_stream("tally-1", 3)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(
        stored.event_id,
        Uuid::new_v5(&cause.event_id, b"tally-1#0"),
        "the unnamed reaction's ids changed"
    );
    assert!(
        repository
            .execute_caused_by("1", &cause, |_| Ok::<_, NotEnough>(Added { n: 1 }))
            .unwrap()
            .already_applied
    );
    assert_eq!(repository.load("1").unwrap().total, 6);
}

/// A typed subscription meets an event it cannot decode (stored at a version newer than
/// the code): the error comes again on the next call, and the position stays at that
/// event, so that a checkpoint saved after the error never passes it.
#[test]
fn a_typed_subscription_does_not_pass_an_event_it_cannot_decode() {
    let store = MemoryStore::new();
    let repository = Repository::<Plain, _>::new(&store);
    repository
        .execute("1", |_| Ok::<_, NotEnough>(Added { n: 1 }))
        .unwrap();
    let future = NewEvent::new("Added", 99, br#"{"n":1}"#.to_vec());
    store
        .append("tally-1", ExpectedVersion::Exact(1), vec![future])
        .unwrap();
    let mut subscription = es_core::Subscription::new(&store, 1).typed::<Plain>();
    let wait = std::time::Duration::from_millis(10);
    assert!(subscription.next_timeout(wait).unwrap().is_some());
    for _ in 0..2 {
        assert!(subscription.next_timeout(wait).is_err());
        assert_eq!(subscription.position(), 2);
    }
}

/// Events imported with their own times need not be in time order: a load as of a time is
/// the run of events from the first up to the first one recorded later, with a snapshot
/// or without (a snapshot recorded after the time's last event, at a version past an event
/// recorded after the time, was used, and the answer depended on whether one existed).
#[test]
fn a_load_as_of_a_time_is_the_same_with_snapshots() {
    use chrono::TimeZone;
    let store = MemoryStore::new();
    let at = |year| chrono::Utc.with_ymd_and_hms(year, 1, 1, 0, 0, 0).unwrap();
    let added = |n: u64| NewEvent::from_encoded(TallyEvent::Added(Added { n }).encode().unwrap());
    store
        .append(
            "tally-1",
            ExpectedVersion::NoStream,
            vec![
                added(1).with_timestamp(at(2000)),
                added(2).with_timestamp(at(2100)),
            ],
        )
        .unwrap();
    // the third event, now, crosses `snapshot_every = 3`: a snapshot recorded now
    Repository::<Snapped, _>::new(&store)
        .execute("1", |_| Ok::<_, NotEnough>(Added { n: 4 }))
        .unwrap();
    assert!(store.load_snapshot("tally-1", 3).unwrap().is_some());
    let now = chrono::Utc::now();
    let snapped = Repository::<Snapped, _>::new(&store)
        .load_as_of("1", now)
        .unwrap();
    let plain = Repository::<Plain, _>::new(&store)
        .load_as_of("1", now)
        .unwrap();
    assert_eq!(
        (snapped.total, snapped.version),
        (plain.total, plain.version)
    );
    assert_eq!((plain.total, plain.version), (1, 1));
    // as of a time after every event: all of them, with the snapshot's state
    let later = Repository::<Snapped, _>::new(&store)
        .load_as_of("1", at(2200))
        .unwrap();
    assert_eq!((later.total, later.version), (7, 3));
}
