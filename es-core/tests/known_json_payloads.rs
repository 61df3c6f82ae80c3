//! A store spares its parse of a payload only when es-core's own JSON writer wrote that
//! very payload and nothing changed it since: events of `#[event]` types are marked, a
//! batch made from plain events is not, and a hand-written event set that returns bytes
//! of its own, or edits what es-core wrote, leaves them to the store's parse, which
//! refuses what is not JSON as before (however leniently its decode reads them back).

use es_core::prelude::*;
use es_core::{
    AppendBatch, AppendResult, DecodeError, EncodeError, EncodedEvent, Event, EventSet,
    EventStream, IntoEvents, Limits, NewEvent, StoreError,
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
        let marks = (0..batch.len())
            .map(|i| batch.payload_known_json(i))
            .collect();
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
fn a_command_on_event_types_marks_every_payload_es_core_wrote() {
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
    assert!(!batch.payload_known_json(0));
    assert!(!batch.payload_known_json(7));
    let err = limits.check_batch("t-1", &batch).unwrap_err();
    assert!(
        matches!(&err, StoreError::InvalidEvent { reason, .. } if reason.contains("not valid JSON")),
        "{err}"
    );
}

// ---- hand-written event sets that return bytes es-core did not write ----

/// How a hand-written event set makes its payload.
#[derive(Debug, Clone, PartialEq)]
pub enum Careless {
    /// Bytes of its own, not JSON.
    Own(&'static [u8]),
    /// What es-core wrote for `Added { n: 1 }`, then one byte changed in place.
    Edited(usize, u8),
}

impl EventSet for Careless {
    const EVENT_TYPES: &'static [&'static str] = &["Added"];
    fn event_type(&self) -> &'static str {
        "Added"
    }
    fn schema_version(&self) -> u32 {
        1
    }
    fn encode(&self) -> Result<EncodedEvent, EncodeError> {
        match self {
            Careless::Own(bytes) => Ok(EncodedEvent {
                event_type: "Added",
                schema_version: 1,
                payload: bytes.to_vec(),
            }),
            Careless::Edited(at, byte) => {
                let mut encoded = EncodeError::encode(&Added { n: 1 })?;
                encoded.payload[*at] = *byte;
                Ok(encoded)
            }
        }
    }
    /// Reads anything back through es-core's own parse, into types that accept what is
    /// not JSON: a decode that succeeds proves nothing about the bytes.
    fn decode(_: &str, version: u32, payload: &[u8]) -> Result<Option<Self>, DecodeError> {
        let _ = Untouched::decode_stored(version, payload);
        let _ = Swallowing::decode_stored(version, payload);
        Ok(Some(Careless::Own(b"")))
    }
}

/// Reads nothing: whitespace alone parses.
#[derive(Debug, serde::Serialize)]
pub struct Untouched;

impl<'de> serde::Deserialize<'de> for Untouched {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Ok(Untouched)
    }
}

impl Event for Untouched {
    const NAME: &'static str = "Added";
    const VERSION: u32 = 1;
}

/// Takes the default where its field does not parse: `{"n":tru}}` parses.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Swallowing {
    #[serde(deserialize_with = "swallow")]
    pub n: u64,
}

fn swallow<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    Ok(<u64 as serde::Deserialize>::deserialize(d).unwrap_or_default())
}

impl Event for Swallowing {
    const NAME: &'static str = "Added";
    const VERSION: u32 = 1;
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
fn a_payload_es_core_did_not_write_as_it_is_is_still_refused_by_the_store() {
    let cases = [
        Careless::Own(b"{\"n\":1"),
        Careless::Own(b"{\"n\":tru}}"),
        Careless::Own(b"   "),
        // `{"n":1}` with its 1 made an x
        Careless::Edited(5, b'x'),
    ];
    for case in cases {
        let store = Marks::default();
        let repo = Repository::<CarelessState, _>::new(&store);
        let err = repo
            .execute("c-1", |_| Ok::<_, std::convert::Infallible>(case.clone()))
            .unwrap_err();
        assert!(
            matches!(&err, CommandError::Store(StoreError::InvalidEvent { reason, .. }) if reason.contains("not valid JSON")),
            "{case:?}: {err}"
        );
        assert_eq!(*store.seen.lock().unwrap(), [vec![false]], "{case:?}");
        assert_eq!(store.head_position().unwrap(), 0);
    }
    // es-core's bytes, unchanged, are marked
    let store = Marks::default();
    let repo = Repository::<CarelessState, _>::new(&store);
    repo.execute("c-1", |_| {
        Ok::<_, std::convert::Infallible>(Careless::Edited(5, b'1'))
    })
    .unwrap();
    assert_eq!(*store.seen.lock().unwrap(), [vec![true]]);
}
