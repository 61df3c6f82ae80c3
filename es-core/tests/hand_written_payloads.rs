//! The store parses every payload a command appends, whatever made it: a hand-written
//! event set that returns bytes of its own, or edits what es-core's writer wrote, gets
//! what is not JSON refused, however leniently its decode reads it back. (A proof that
//! would spare the store that parse for payloads es-core wrote was tried and withdrawn:
//! see BENCHMARKS.md.)

use es_core::prelude::*;
use es_core::{DecodeError, EncodeError, EncodedEvent, Event, EventSet, IntoEvents, StoreError};

#[event]
#[derive(Debug, Clone, PartialEq)]
pub struct Added {
    pub n: u64,
}

// ---- hand-written event sets that return bytes es-core did not write ----

/// How a hand-written event set makes its payload.
#[derive(Debug, Clone, PartialEq)]
pub enum Careless {
    /// Bytes of its own, not JSON.
    Own(&'static [u8]),
    /// What es-core wrote for `Added { n: 1 }`, then one byte changed in place.
    Edited(usize, u8),
    /// What es-core's writer wrote for a `Serialize` that discards an error.
    BestEffort,
}

/// Writes its field's key, then discards the error of its value (a map with a key JSON
/// cannot hold): serde_json's writer is left with `{"reading":}`.
#[derive(Debug, serde::Deserialize)]
pub struct BestEffort;

impl serde::Serialize for BestEffort {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut fields = s.serialize_struct("BestEffort", 1)?;
        let unwritable: std::collections::BTreeMap<Vec<u8>, u8> = [(vec![1], 1)].into();
        let _ = fields.serialize_field("reading", &unwritable);
        fields.end()
    }
}

impl Event for BestEffort {
    const NAME: &'static str = "Added";
    const VERSION: u32 = 1;
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
            Careless::BestEffort => EncodeError::encode(&BestEffort),
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
fn a_payload_that_is_not_json_is_refused_whatever_made_it() {
    let cases = [
        Careless::Own(b"{\"n\":1"),
        Careless::Own(b"{\"n\":tru}}"),
        Careless::Own(b"   "),
        // `{"n":1}` with its 1 made an x
        Careless::Edited(5, b'x'),
        Careless::BestEffort,
    ];
    for case in cases {
        let store = MemoryStore::new();
        let repo = Repository::<CarelessState, _>::new(&store);
        let err = repo
            .execute("c-1", |_| Ok::<_, std::convert::Infallible>(case.clone()))
            .unwrap_err();
        assert!(
            matches!(&err, CommandError::Store(StoreError::InvalidEvent { reason, .. }) if reason.contains("not valid JSON")),
            "{case:?}: {err}"
        );
        assert_eq!(store.head_position().unwrap(), 0);
    }
    // es-core's bytes, unchanged, are stored
    let store = MemoryStore::new();
    let repo = Repository::<CarelessState, _>::new(&store);
    repo.execute("c-1", |_| {
        Ok::<_, std::convert::Infallible>(Careless::Edited(5, b'1'))
    })
    .unwrap();
    assert_eq!(store.head_position().unwrap(), 1);
}
