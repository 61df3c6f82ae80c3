//! A store spares its parse of a payload only when es-core itself parsed that very payload
//! in full while the repository read the event back from its encoding: events of
//! `#[event]` types are marked, a batch made from plain events is not, and a hand-written
//! event set whose decode parses some other text leaves invalid JSON to the store, which
//! refuses it as before.

use es_core::prelude::*;
use es_core::{
    AppendBatch, AppendResult, DecodeError, EncodeError, EncodedEvent, EventSet, EventStream,
    IntoEvents, Limits, NewEvent, StoreError,
};
use std::sync::Mutex;

#[event]
#[derive(Debug, Clone, PartialEq)]
pub struct Added {
    pub n: u64,
}

#[event]
#[derive(Debug, Clone, PartialEq)]
pub enum TallyEvent {
    Added(Added),
}

#[derive(Debug, Default, Clone, Aggregate)]
#[aggregate(kind = "tally", event = TallyEvent)]
pub struct Tally {
    total: u64,
}

impl Apply<Added> for Tally {
    fn apply(&mut self, e: &Added) {
        self.total += e.n;
    }
}

/// A memory store that records, for every batch appended, which payloads came marked.
#[derive(Default)]
struct Marks {
    inner: MemoryStore,
    seen: Mutex<Vec<Vec<bool>>>,
}

impl EventStore for Marks {
    fn append(
        &self,
        stream_id: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        self.append_batch(stream_id, expected, AppendBatch::from(events))
    }
    fn append_batch(
        &self,
        stream_id: &str,
        expected: ExpectedVersion,
        batch: AppendBatch,
    ) -> Result<AppendResult, StoreError> {
        let marks = (0..batch.len()).map(|i| batch.payload_parsed(i)).collect();
        self.seen.lock().unwrap().push(marks);
        self.inner.append_batch(stream_id, expected, batch)
    }
    fn read_stream(&self, stream_id: &str, from: u64) -> Result<EventStream<'_>, StoreError> {
        self.inner.read_stream(stream_id, from)
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
}

#[test]
fn a_command_on_event_types_marks_every_payload_it_read_back() {
    let store = Marks::default();
    let repo = Repository::<Tally, _>::new(&store);
    repo.execute("t-1", |_| Ok::<_, std::convert::Infallible>(Added { n: 1 }))
        .unwrap();
    repo.execute("t-1", |_| {
        Ok::<_, std::convert::Infallible>(vec![Added { n: 2 }, Added { n: 3 }])
    })
    .unwrap();
    assert_eq!(*store.seen.lock().unwrap(), [vec![true], vec![true, true]]);
    assert_eq!(repo.load("t-1").unwrap().state.total, 6);
}

#[test]
fn a_plain_append_marks_nothing() {
    let store = Marks::default();
    let e = NewEvent::new("Added", 1, br#"{"n":1}"#.to_vec());
    store
        .append("t-1", ExpectedVersion::NoStream, vec![e])
        .unwrap();
    assert_eq!(*store.seen.lock().unwrap(), [vec![false]]);
}

#[test]
fn a_batch_made_from_events_has_every_payload_checked() {
    let limits = Limits::default();
    let bad = NewEvent::new("Added", 1, b"{\"n\":".to_vec());
    let batch = AppendBatch::from(vec![bad]);
    assert!(!batch.payload_parsed(0));
    assert!(!batch.payload_parsed(7));
    let err = limits.check_batch("t-1", &batch).unwrap_err();
    assert!(
        matches!(&err, StoreError::InvalidEvent { reason, .. } if reason.contains("not valid JSON")),
        "{err}"
    );
}

// ---- an event set whose decode parses a text other than the payload ----

/// Encodes to a payload that is not JSON, and decodes any payload by parsing a constant
/// text: the read-back succeeds without the payload ever being parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct Careless;

const CONSTANT: &[u8] = br#"{"n":1}"#;

impl EventSet for Careless {
    const EVENT_TYPES: &'static [&'static str] = &["Added"];
    fn event_type(&self) -> &'static str {
        "Added"
    }
    fn schema_version(&self) -> u32 {
        1
    }
    fn encode(&self) -> Result<EncodedEvent, EncodeError> {
        Ok(EncodedEvent {
            event_type: "Added",
            schema_version: 1,
            payload: b"{\"n\":1".to_vec(),
        })
    }
    fn decode(_: &str, version: u32, _payload: &[u8]) -> Result<Option<Self>, DecodeError> {
        Added::decode_stored(version, CONSTANT).map(|_| Some(Careless))
    }
}

impl IntoEvents<Careless> for Careless {
    fn into_events(self, out: &mut Vec<Careless>) {
        out.push(self);
    }
}

#[derive(Debug, Default, Clone)]
pub struct CarelessState;

impl Aggregate for CarelessState {
    const KIND: &'static str = "careless";
    type Events = Careless;
    fn apply_event(&mut self, _: &Careless) {}
}

#[test]
fn a_payload_es_core_did_not_parse_is_still_refused_by_the_store() {
    let store = Marks::default();
    let repo = Repository::<CarelessState, _>::new(&store);
    let err = repo
        .execute("c-1", |_| Ok::<_, std::convert::Infallible>(Careless))
        .unwrap_err();
    assert!(
        matches!(&err, CommandError::Store(StoreError::InvalidEvent { reason, .. }) if reason.contains("not valid JSON")),
        "{err}"
    );
    assert_eq!(*store.seen.lock().unwrap(), [vec![false]]);
    assert_eq!(store.head_position().unwrap(), 0);
}
