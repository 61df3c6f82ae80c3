//! What travels with an event: ids, positions, time and the who/why of an audit log.

use crate::event::EncodedEvent;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use uuid::Uuid;

/// The who and why of an event: correlation and causation ids, the acting user, and a
/// free-form map for anything else (a reason, a request id, a client version).
///
/// ```
/// use es_core::Metadata;
/// let meta = Metadata::new().with_actor("alice").with("reason", "customer request");
/// assert_eq!(meta.actor.as_deref(), Some("alice"));
/// assert_eq!(meta.extra["reason"], "customer request");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    /// Groups every event caused, directly or not, by one request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<Uuid>,
    /// The event or command that directly caused this event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<Uuid>,
    /// Who did it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// Anything else.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl Metadata {
    /// Empty metadata.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the correlation id.
    pub fn with_correlation_id(mut self, id: Uuid) -> Self {
        self.correlation_id = Some(id);
        self
    }

    /// Sets the causation id.
    pub fn with_causation_id(mut self, id: Uuid) -> Self {
        self.causation_id = Some(id);
        self
    }

    /// Sets the actor.
    pub fn with_actor(mut self, actor: impl Into<String>) -> Self {
        self.actor = Some(actor.into());
        self
    }

    /// Adds a free-form entry.
    pub fn with(mut self, key: impl Into<String>, value: impl Into<serde_json::Value>) -> Self {
        self.extra.insert(key.into(), value.into());
        self
    }

    /// Metadata for an event caused by `cause`: same correlation id (or the cause's event
    /// id when it had none), causation id set to the cause's event id.
    pub fn caused_by(cause: &(impl Cause + ?Sized)) -> Self {
        Metadata {
            correlation_id: Some(cause.correlation_id().unwrap_or(cause.event_id())),
            causation_id: Some(cause.event_id()),
            ..Metadata::default()
        }
    }

    /// True when nothing is set.
    pub fn is_empty(&self) -> bool {
        self.correlation_id.is_none()
            && self.causation_id.is_none()
            && self.actor.is_none()
            && self.extra.is_empty()
    }
}

/// The event a reaction answers ([`Repository::execute_caused_by`](crate::Repository::execute_caused_by),
/// [`Metadata::caused_by`]): what it needs of it is its id and its correlation id. A
/// recorded event is one, and so is the envelope a typed subscription delivers.
pub trait Cause {
    /// The event's id.
    fn event_id(&self) -> Uuid;
    /// The correlation id in its metadata, when it has one.
    fn correlation_id(&self) -> Option<Uuid>;
}

impl Cause for RecordedEvent {
    fn event_id(&self) -> Uuid {
        self.event_id
    }
    fn correlation_id(&self) -> Option<Uuid> {
        self.metadata.correlation_id
    }
}

impl<E> Cause for Envelope<E> {
    fn event_id(&self) -> Uuid {
        self.event_id
    }
    fn correlation_id(&self) -> Option<Uuid> {
        self.metadata.correlation_id
    }
}

macro_rules! cause_through {
    ($($pointer:ty),*) => {$(
        impl<T: Cause + ?Sized> Cause for $pointer {
            fn event_id(&self) -> Uuid {
                (**self).event_id()
            }
            fn correlation_id(&self) -> Option<Uuid> {
                (**self).correlation_id()
            }
        }
    )*};
}
cause_through!(&T, Box<T>, std::sync::Arc<T>, std::rc::Rc<T>);

/// An event to append: id, type, version, metadata and payload. The store assigns the
/// stream version and global position.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// Unique id; re-sending the same ids makes a retried append idempotent.
    pub event_id: Uuid,
    /// Stable type name.
    pub event_type: String,
    /// Schema version of the payload.
    pub schema_version: u32,
    /// When it happened; `None` lets the store stamp the commit time.
    pub timestamp: Option<DateTime<Utc>>,
    /// Who/why.
    pub metadata: Metadata,
    /// UTF-8 JSON payload.
    pub payload: Vec<u8>,
}

impl NewEvent {
    /// A new event with a fresh id and empty metadata.
    ///
    /// ```
    /// let e = es_core::NewEvent::new("Deposited", 1, br#"{"amount":5}"#.to_vec());
    /// assert_eq!(e.event_type, "Deposited");
    /// ```
    pub fn new(event_type: impl Into<String>, schema_version: u32, payload: Vec<u8>) -> Self {
        NewEvent {
            event_id: Uuid::new_v4(),
            event_type: event_type.into(),
            schema_version,
            timestamp: None,
            metadata: Metadata::default(),
            payload,
        }
    }

    /// A new event from an encoded one.
    pub fn from_encoded(encoded: EncodedEvent) -> Self {
        NewEvent::new(encoded.event_type, encoded.schema_version, encoded.payload)
    }

    /// Sets the event id.
    pub fn with_id(mut self, id: Uuid) -> Self {
        self.event_id = id;
        self
    }

    /// Sets the metadata.
    pub fn with_metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }

    /// Sets the timestamp (an import keeps the original time this way).
    pub fn with_timestamp(mut self, timestamp: DateTime<Utc>) -> Self {
        self.timestamp = Some(timestamp);
        self
    }
}

/// An event as the store recorded it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedEvent {
    /// The stream it belongs to.
    pub stream_id: String,
    /// Its version in the stream: dense, from 1.
    pub stream_version: u64,
    /// Its position in the global log: dense, from 1, in commit order.
    pub position: u64,
    /// Unique id.
    pub event_id: Uuid,
    /// When it happened.
    pub timestamp: DateTime<Utc>,
    /// Stable type name.
    pub event_type: String,
    /// Schema version of the payload as stored.
    pub schema_version: u32,
    /// Who/why.
    pub metadata: Metadata,
    /// UTF-8 JSON payload as stored.
    #[serde(with = "payload_as_json")]
    pub payload: Vec<u8>,
}

impl RecordedEvent {
    /// The aggregate kind: the part of the stream id before the first `-`.
    pub fn kind(&self) -> &str {
        stream_kind(&self.stream_id)
    }

    /// The event borrowed, as [`EventStore::visit_all`](crate::EventStore::visit_all)
    /// hands it out.
    pub fn borrowed(&self) -> RecordedEventRef<'_> {
        RecordedEventRef {
            stream_id: &self.stream_id,
            stream_version: self.stream_version,
            position: self.position,
            event_id: self.event_id,
            timestamp: self.timestamp,
            event_type: &self.event_type,
            schema_version: self.schema_version,
            metadata: &self.metadata,
            payload: &self.payload,
        }
    }

    /// Decodes the payload into `S`, upcasting old versions. `Ok(None)` is a declared
    /// ignored type. Errors name the stream, version and position.
    pub fn decode<S: crate::EventSet>(&self) -> Result<Option<Envelope<S>>, EventDecodeError> {
        self.borrowed().decode()
    }
}

/// An event as the store recorded it, borrowed from the store's read buffer for the
/// length of one call of the visitor given to
/// [`EventStore::visit_all`](crate::EventStore::visit_all) or
/// [`EventStore::visit_stream`](crate::EventStore::visit_stream). The same fields as
/// [`RecordedEvent`]; [`to_recorded`](RecordedEventRef::to_recorded) makes the owned
/// copy when the event is to be kept.
///
/// ```
/// use es_core::{EventStore, ExpectedVersion, MemoryStore, NewEvent};
/// use std::ops::ControlFlow;
/// let store = MemoryStore::new();
/// let e = NewEvent::new("Deposited", 1, br#"{"amount":5}"#.to_vec());
/// store.append("account-1", ExpectedVersion::NoStream, vec![e]).unwrap();
/// let mut total = 0;
/// store
///     .visit_all(1, &mut |e| {
///         let v: serde_json::Value = serde_json::from_slice(e.payload).unwrap();
///         total += v["amount"].as_u64().unwrap();
///         ControlFlow::Continue(())
///     })
///     .unwrap();
/// assert_eq!(total, 5);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RecordedEventRef<'a> {
    /// The stream it belongs to.
    pub stream_id: &'a str,
    /// Its version in the stream: dense, from 1.
    pub stream_version: u64,
    /// Its position in the global log: dense, from 1, in commit order.
    pub position: u64,
    /// Unique id.
    pub event_id: Uuid,
    /// When it happened.
    pub timestamp: DateTime<Utc>,
    /// Stable type name.
    pub event_type: &'a str,
    /// Schema version of the payload as stored.
    pub schema_version: u32,
    /// Who/why.
    pub metadata: &'a Metadata,
    /// UTF-8 JSON payload as stored.
    pub payload: &'a [u8],
}

impl RecordedEventRef<'_> {
    /// The owned event.
    pub fn to_recorded(&self) -> RecordedEvent {
        RecordedEvent {
            stream_id: self.stream_id.to_owned(),
            stream_version: self.stream_version,
            position: self.position,
            event_id: self.event_id,
            timestamp: self.timestamp,
            event_type: self.event_type.to_owned(),
            schema_version: self.schema_version,
            metadata: self.metadata.clone(),
            payload: self.payload.to_vec(),
        }
    }

    /// The aggregate kind: the part of the stream id before the first `-`.
    pub fn kind(&self) -> &str {
        stream_kind(self.stream_id)
    }

    /// Decodes the payload into `S`, upcasting old versions, as
    /// [`RecordedEvent::decode`] does.
    pub fn decode<S: crate::EventSet>(&self) -> Result<Option<Envelope<S>>, EventDecodeError> {
        match S::decode(self.event_type, self.schema_version, self.payload) {
            Ok(Some(event)) => Ok(Some(Envelope {
                stream_id: self.stream_id.to_owned(),
                stream_version: self.stream_version,
                position: self.position,
                event_id: self.event_id,
                timestamp: self.timestamp,
                metadata: self.metadata.clone(),
                event,
            })),
            Ok(None) => Ok(None),
            Err(error) => Err(EventDecodeError {
                stream_id: self.stream_id.to_owned(),
                stream_version: self.stream_version,
                position: self.position,
                error,
            }),
        }
    }
}

/// The aggregate kind of a stream id: the part before the first `-` (the whole id when it
/// has none).
pub fn stream_kind(stream_id: &str) -> &str {
    stream_id.split_once('-').map_or(stream_id, |(k, _)| k)
}

/// A decoded event with its envelope.
#[derive(Debug, Clone)]
pub struct Envelope<E> {
    /// The stream it belongs to.
    pub stream_id: String,
    /// Its version in the stream.
    pub stream_version: u64,
    /// Its global position.
    pub position: u64,
    /// Unique id.
    pub event_id: Uuid,
    /// When it happened.
    pub timestamp: DateTime<Utc>,
    /// Who/why.
    pub metadata: Metadata,
    /// The decoded, upcast event.
    pub event: E,
}

/// A stored event that could not be decoded, with where it is.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "cannot decode event {stream_version} of stream `{stream_id}` (global position {position}): {error}"
)]
pub struct EventDecodeError {
    /// Stream id.
    pub stream_id: String,
    /// Version in the stream.
    pub stream_version: u64,
    /// Global position.
    pub position: u64,
    /// What went wrong.
    #[source]
    pub error: crate::DecodeError,
}

/// Serde helper that writes a JSON payload held as bytes as inline JSON (for exports).
mod payload_as_json {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use serde_json::value::RawValue;

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        let text = std::str::from_utf8(bytes).map_err(serde::ser::Error::custom)?;
        let raw: &RawValue = serde_json::from_str(text).map_err(serde::ser::Error::custom)?;
        raw.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let raw = Box::<RawValue>::deserialize(d).map_err(D::Error::custom)?;
        Ok(raw.get().as_bytes().to_vec())
    }
}
