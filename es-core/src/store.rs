//! The event store contract every backend implements, with its errors and limits.

use crate::envelope::{NewEvent, RecordedEvent, RecordedEventRef};
use crate::snapshot::SnapshotStore;
use std::fmt;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What an append expects of the stream before it writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExpectedVersion {
    /// Append whatever the stream's version.
    Any,
    /// The stream must not exist yet (version 0).
    NoStream,
    /// The stream must exist (version 1 or more).
    StreamExists,
    /// The stream must be at exactly this version (0 means it must not exist).
    Exact(u64),
}

impl ExpectedVersion {
    /// Whether a stream currently at `actual` satisfies this expectation.
    pub fn accepts(self, actual: u64) -> bool {
        match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => actual == 0,
            ExpectedVersion::StreamExists => actual > 0,
            ExpectedVersion::Exact(v) => actual == v,
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any version"),
            ExpectedVersion::NoStream => f.write_str("no stream"),
            ExpectedVersion::StreamExists => f.write_str("an existing stream"),
            ExpectedVersion::Exact(v) => write!(f, "version {v}"),
        }
    }
}

/// What an append was assigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AppendResult {
    /// Stream version of the first event of the batch.
    pub first_version: u64,
    /// Stream version of the last event: the stream's version after the append.
    pub last_version: u64,
    /// Global position of the first event.
    pub first_position: u64,
    /// Global position of the last event.
    pub last_position: u64,
    /// Whether these events were already stored by an earlier append with the same event
    /// ids, so that this append was recognised as its retry and wrote nothing. The
    /// versions and positions are the earlier append's. (When two writers race to append
    /// the same events, one of them learns here that the stored events are the other's.)
    pub retried: bool,
}

/// Where a stream ends: its version and the global position of its last event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StreamEnd {
    /// The stream's version: its last event's.
    pub version: u64,
    /// The global position of its last event.
    pub position: u64,
}

impl AppendResult {
    /// Number of events appended.
    pub fn len(&self) -> u64 {
        self.last_version - self.first_version + 1
    }

    /// Always false: an append writes at least one event.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// Size limits a store enforces before it writes anything.
///
/// The defaults:
///
/// | limit | default |
/// |---|---|
/// | [`max_stream_id_len`](Limits::max_stream_id_len) | 512 bytes |
/// | [`max_event_type_len`](Limits::max_event_type_len) | 256 bytes |
/// | [`max_event_size`](Limits::max_event_size) | 1 MiB (1,048,576 bytes) |
/// | [`max_batch_events`](Limits::max_batch_events) | 10,000 events per append |
/// | [`max_batch_size`](Limits::max_batch_size) | 16 MiB (16,777,216 bytes) per append |
/// | [`max_json_depth`](Limits::max_json_depth) | 64 levels |
///
/// Stores check the limits they are given with [`Limits::validate`] and refuse limits
/// under which they could accept what they cannot read back, or accept nothing at all.
///
/// ```
/// use es_core::Limits;
/// let deeper = Limits { max_json_depth: Limits::MAX_READABLE_JSON_DEPTH, ..Limits::default() };
/// assert!(deeper.validate().is_ok());
/// let too_deep = Limits { max_json_depth: 200, ..Limits::default() };
/// assert!(too_deep.validate().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest stream id, in bytes (default 512).
    pub max_stream_id_len: usize,
    /// Longest event type name, in bytes (default 256).
    pub max_event_type_len: usize,
    /// Largest event (payload plus encoded metadata), in bytes (default 1 MiB).
    pub max_event_size: usize,
    /// Most events in one append (default 10,000).
    pub max_batch_events: usize,
    /// Largest append (sum of event sizes), in bytes (default 16 MiB).
    pub max_batch_size: usize,
    /// Deepest nesting of arrays and objects in a payload or in a metadata value
    /// (default 64). Decoders refuse deeper JSON (serde_json stops at 128 levels), so
    /// deeper input is refused on the way in; at most
    /// [`MAX_READABLE_JSON_DEPTH`](Limits::MAX_READABLE_JSON_DEPTH).
    pub max_json_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_stream_id_len: 512,
            max_event_type_len: 256,
            max_event_size: 1024 * 1024,
            max_batch_events: 10_000,
            max_batch_size: 16 * 1024 * 1024,
            max_json_depth: 64,
        }
    }
}

/// Why a set of [`Limits`] is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LimitsError {
    /// `max_json_depth` allows JSON that the store could store but never read back.
    #[error(
        "limit `max_json_depth` is {value}; the maximum is {max}, the deepest nesting a store can read back"
    )]
    JsonDepthTooDeep {
        /// The depth asked for.
        value: usize,
        /// [`Limits::MAX_READABLE_JSON_DEPTH`].
        max: usize,
    },
    /// A limit is zero, so that every append would be refused.
    #[error("limit `{field}` is 0, which refuses every append")]
    Zero {
        /// The limit's field name.
        field: &'static str,
    },
}

impl Limits {
    /// The largest [`max_json_depth`](Limits::max_json_depth) a store accepts.
    ///
    /// serde_json refuses to decode nesting deeper than its recursion limit (128 levels
    /// counted from the outside, so 127 is the deepest it reads). Stored JSON is nested
    /// further when it is read: a metadata value sits inside the metadata object and its
    /// `extra` map, and an exported event wraps both in the event's object, which is three
    /// levels. This leaves four more, so that a consumer may still wrap an exported line
    /// in an envelope of its own. A test measures serde_json's limit and checks these
    /// margins.
    pub const MAX_READABLE_JSON_DEPTH: usize = 120;

    /// Checks that a store can work under these limits: `max_json_depth` at most
    /// [`MAX_READABLE_JSON_DEPTH`](Limits::MAX_READABLE_JSON_DEPTH), and no size or count
    /// limit zero (a zero `max_json_depth` is allowed: scalar payloads remain possible).
    pub fn validate(&self) -> Result<(), LimitsError> {
        let must_be_positive = [
            ("max_stream_id_len", self.max_stream_id_len),
            ("max_event_type_len", self.max_event_type_len),
            ("max_event_size", self.max_event_size),
            ("max_batch_events", self.max_batch_events),
            ("max_batch_size", self.max_batch_size),
        ];
        if let Some(&(field, _)) = must_be_positive.iter().find(|(_, value)| *value == 0) {
            return Err(LimitsError::Zero { field });
        }
        if self.max_json_depth > Self::MAX_READABLE_JSON_DEPTH {
            return Err(LimitsError::JsonDepthTooDeep {
                value: self.max_json_depth,
                max: Self::MAX_READABLE_JSON_DEPTH,
            });
        }
        Ok(())
    }

    /// Checks a stream id: non-empty, at most `max_stream_id_len` bytes, no control
    /// characters.
    pub fn check_stream_id(&self, stream_id: &str) -> Result<(), StoreError> {
        let reason = if stream_id.is_empty() {
            Some("it is empty".to_owned())
        } else if stream_id.len() > self.max_stream_id_len {
            Some(format!(
                "it is {} bytes long; the limit is {}",
                stream_id.len(),
                self.max_stream_id_len
            ))
        } else if stream_id.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            None // printable ASCII, the usual case, checked without decoding characters
        } else {
            stream_id
                .chars()
                .find(|c| c.is_control())
                .map(|c| format!("it contains the control character {c:?}"))
        };
        match reason {
            Some(reason) => Err(StoreError::InvalidStreamId {
                stream_id: shorten(stream_id),
                reason,
            }),
            None => Ok(()),
        }
    }

    /// Checks a whole append: the stream id, a non-empty batch within the count and size
    /// limits, each event's type name, schema version, size and JSON payload.
    pub fn check_append(&self, stream_id: &str, events: &[NewEvent]) -> Result<(), StoreError> {
        self.check_stream_id(stream_id)?;
        if events.is_empty() {
            return Err(StoreError::EmptyBatch {
                stream_id: stream_id.to_owned(),
            });
        }
        if events.len() > self.max_batch_events {
            return Err(StoreError::BatchTooLarge {
                stream_id: stream_id.to_owned(),
                reason: format!(
                    "{} events; the limit is {}",
                    events.len(),
                    self.max_batch_events
                ),
            });
        }
        let mut total = 0usize;
        for (index, event) in events.iter().enumerate() {
            total += self.check_event(stream_id, index, event)?;
        }
        if total > self.max_batch_size {
            return Err(StoreError::BatchTooLarge {
                stream_id: stream_id.to_owned(),
                reason: format!("{total} bytes; the limit is {}", self.max_batch_size),
            });
        }
        Ok(())
    }

    /// Checks one event of a batch and returns its size in bytes.
    fn check_event(
        &self,
        stream_id: &str,
        index: usize,
        event: &NewEvent,
    ) -> Result<usize, StoreError> {
        let invalid = |reason: String| StoreError::InvalidEvent {
            stream_id: stream_id.to_owned(),
            index,
            event_type: shorten(&event.event_type),
            reason,
        };
        if event.event_type.is_empty() {
            return Err(invalid("the event type is empty".into()));
        }
        if event.event_type.len() > self.max_event_type_len {
            return Err(invalid(format!(
                "the event type is {} bytes long; the limit is {}",
                event.event_type.len(),
                self.max_event_type_len
            )));
        }
        if event.event_type.chars().any(char::is_control) {
            return Err(invalid(
                "the event type contains a control character".into(),
            ));
        }
        if event.schema_version == 0 {
            return Err(invalid("schema versions start at 1, found 0".into()));
        }
        let metadata_size = if event.metadata.is_empty() {
            0
        } else {
            for value in event.metadata.extra.values() {
                if value_depth(value) > self.max_json_depth {
                    return Err(invalid(format!(
                        "the metadata nests deeper than {} levels",
                        self.max_json_depth
                    )));
                }
            }
            serde_json::to_vec(&event.metadata)
                .map_err(|e| invalid(format!("the metadata cannot be encoded: {e}")))?
                .len()
        };
        let size = event.payload.len() + metadata_size;
        if size > self.max_event_size {
            return Err(StoreError::EventTooLarge {
                stream_id: stream_id.to_owned(),
                index,
                size,
                max: self.max_event_size,
            });
        }
        let text = match std::str::from_utf8(&event.payload) {
            Ok(text) => text,
            Err(e) => return Err(invalid(format!("the payload is not UTF-8: {e}"))),
        };
        // parsed as checked text, so that the parser does not check the UTF-8 again
        if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(text) {
            return Err(invalid(format!("the payload is not valid JSON: {e}")));
        }
        if nests_deeper_than(&event.payload, self.max_json_depth) {
            return Err(invalid(format!(
                "the payload nests deeper than {} levels",
                self.max_json_depth
            )));
        }
        Ok(size)
    }
}

/// Whether a JSON text (assumed well-formed) nests arrays and objects deeper than `max`.
fn nests_deeper_than(json: &[u8], max: usize) -> bool {
    // every level opens with a bracket, so no more brackets than the limit (an ordinary
    // payload) keep within it; counting them is a loop the compiler vectorises, unlike
    // the walk that tracks strings
    // `[` and `{` are the two bytes that read `{` with bit 0x20 set; byte counters over
    // chunks of 255 let the compiler count 32 bytes per instruction
    let brackets: usize = json
        .chunks(255)
        .map(|chunk| {
            let n = chunk
                .iter()
                .fold(0u8, |n, &b| n + u8::from((b | 0x20) == b'{'));
            usize::from(n)
        })
        .sum();
    brackets > max && json_depth(json) > max
}

/// The deepest nesting of arrays and objects in a JSON text (assumed well-formed).
fn json_depth(json: &[u8]) -> usize {
    let (mut depth, mut max, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &b in json {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// The deepest nesting of a JSON value, walked without recursion.
fn value_depth(value: &serde_json::Value) -> usize {
    let mut max = 0;
    let mut stack = vec![(value, 1usize)];
    while let Some((v, depth)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &serde_json::Value>> = match v {
            serde_json::Value::Array(a) => Box::new(a.iter()),
            serde_json::Value::Object(o) => Box::new(o.values()),
            _ => continue,
        };
        max = max.max(depth);
        stack.extend(children.map(|c| (c, depth + 1)));
    }
    max
}

/// Whether `c` acts on a terminal or a log line rather than being shown: a control
/// character (escape sequences start with one), a line or paragraph separator, or a
/// bidirectional control (which reorders the text after it).
pub fn acts_on_display(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{061c}'
        )
        || ('\u{202a}'..='\u{202e}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
}

/// `s` with every character that [acts on display](acts_on_display) written out as a
/// Rust escape (`\n`, `\u{202e}`): text from a store or from outside (an id, a type
/// name, a payload) that can be printed on a terminal or a log line without breaking the
/// line, reordering what follows it, or acting on the terminal. Borrowed when nothing
/// needs escaping.
///
/// ```
/// assert_eq!(es_core::store::displayable("cart-1"), "cart-1");
/// assert_eq!(
///     es_core::store::displayable("cart-\u{202e}1\n"),
///     "cart-\\u{202e}1\\n"
/// );
/// ```
pub fn displayable(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(acts_on_display) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut shown = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if acts_on_display(c) {
            shown.extend(c.escape_default());
        } else {
            shown.push(c);
        }
    }
    std::borrow::Cow::Owned(shown)
}

/// [`displayable`], owned.
pub(crate) fn shown(s: &str) -> String {
    displayable(s).into_owned()
}

/// Cuts long user input down for error messages.
fn shorten(s: &str) -> String {
    const MAX: usize = 80;
    if s.len() <= MAX {
        return shown(s);
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", shown(&s[..end]), s.len())
}

/// Errors of an event store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The stream was not at the expected version; nothing was written.
    #[error("conflict on stream `{stream_id}`: expected {expected}, but it is at version {actual}")]
    Conflict {
        /// Stream id.
        stream_id: String,
        /// What the append expected.
        expected: ExpectedVersion,
        /// The stream's actual version.
        actual: u64,
    },
    /// The stream id breaks the rules; nothing was written.
    #[error("invalid stream id `{stream_id}`: {reason}")]
    InvalidStreamId {
        /// The id (shortened when long).
        stream_id: String,
        /// Which rule it breaks.
        reason: String,
    },
    /// An append with no events; nothing was written.
    #[error("append to stream `{stream_id}` has no events")]
    EmptyBatch {
        /// Stream id.
        stream_id: String,
    },
    /// One event is larger than the limit; nothing was written.
    #[error(
        "event {index} of the append to `{stream_id}` is {size} bytes; the limit is {max} bytes"
    )]
    EventTooLarge {
        /// Stream id.
        stream_id: String,
        /// Index of the event in the batch.
        index: usize,
        /// Its size (payload plus metadata).
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The append holds too many events or bytes; nothing was written.
    #[error("append to `{stream_id}` is too large: {reason}")]
    BatchTooLarge {
        /// Stream id.
        stream_id: String,
        /// Count or size, and the limit.
        reason: String,
    },
    /// A snapshot is larger than the store keeps; nothing was written, and the
    /// snapshots saved before are kept.
    #[error(
        "the snapshot of `{stream_id}` is {size} bytes; the store keeps snapshots of up to {max}"
    )]
    SnapshotTooLarge {
        /// Stream id.
        stream_id: String,
        /// Its size, encoded.
        size: u64,
        /// The largest the store keeps.
        max: u64,
    },
    /// An event's type, version or payload is unusable; nothing was written.
    #[error("event {index} (`{event_type}`) of the append to `{stream_id}` is invalid: {reason}")]
    InvalidEvent {
        /// Stream id.
        stream_id: String,
        /// Index of the event in the batch.
        index: usize,
        /// Its type name (shortened when long).
        event_type: String,
        /// What is wrong.
        reason: String,
    },
    /// Some event ids of the append are already stored, but not as this same append;
    /// nothing was written.
    #[error(
        "event id {event_id} of the append to `{stream_id}` is already stored ({reason}); an idempotent retry must resend the whole original append"
    )]
    DuplicateEventId {
        /// Stream id of the append.
        stream_id: String,
        /// The id found.
        event_id: uuid::Uuid,
        /// Where it was found.
        reason: String,
    },
    /// Stored data failed a check: where, and which check.
    #[error("corrupted store: {0}")]
    Corrupted(Corruption),
    /// A subscription's position is past the end of the log. Either the position is not
    /// one of this log (a checkpoint of another store, or a position given one too far),
    /// or events before it, which the subscriber may have taken into account, are no
    /// longer in the log (a crash took back appends that were acknowledged but not yet
    /// durable, or a repair cut the log). Reading on would skip the events that take
    /// those positions again: check where the position came from; if the log moved back,
    /// rebuild what the subscription fed, then subscribe from its new checkpoint. Checked only with
    /// stores whose head can move back ([`EventStore::head_can_move_back`]), when a read
    /// from the position finds nothing.
    #[error(
        "the subscription's position {position} is past the end of the log, position {head}: either the position is not one of this log (a checkpoint of another store, or one position too far: a subscription starts at the position after the last event handled), or the log no longer holds events before it (a crash took back appends that were not yet durable, or a repair cut the log), and then what the subscription fed must be rebuilt before subscribing again. (A store opened read-only shows the log as it was when opened: if the position came from the writer since, open the store again instead.)"
    )]
    PositionAhead {
        /// The position the subscription would read next.
        position: u64,
        /// The log's last position.
        head: u64,
    },
    /// The store refuses writes (after a failed fsync, or opened read-only).
    #[error("store is read-only: {0}")]
    ReadOnly(String),
    /// An I/O error from the backend.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// Any other backend error.
    #[error("{0}")]
    Backend(Box<dyn std::error::Error + Send + Sync>),
}

/// Stored data that failed a check: where the damaged record is and what is wrong with it.
///
/// ```
/// use es_core::store::{Corruption, DataLocation};
/// let c = Corruption::new(
///     DataLocation::File { path: "00000003.seg".into(), offset: 4096 },
///     "checksum mismatch",
/// );
/// assert_eq!(c.to_string(), "`00000003.seg` at offset 4096: checksum mismatch");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{location}: {reason}")]
#[non_exhaustive]
pub struct Corruption {
    /// Where the damaged record is.
    pub location: DataLocation,
    /// The check it failed.
    pub reason: String,
}

impl Corruption {
    /// A damaged record at `location`.
    pub fn new(location: DataLocation, reason: impl Into<String>) -> Self {
        Corruption {
            location,
            reason: reason.into(),
        }
    }
}

impl From<Corruption> for StoreError {
    fn from(c: Corruption) -> Self {
        StoreError::Corrupted(c)
    }
}

/// Where a damaged record is, in the terms of the store that keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DataLocation {
    /// A byte offset in one of the store's files; `path` is the file's name inside the
    /// store's directory.
    File {
        /// The file.
        path: std::path::PathBuf,
        /// Byte offset of the record in the file.
        offset: u64,
    },
    /// An event, as far as it could be read (a row of a database table).
    StoredEvent {
        /// Its stream, when known.
        stream_id: Option<String>,
        /// Its stream version, when known.
        stream_version: Option<u64>,
        /// Its global position, when known.
        position: Option<u64>,
    },
    /// A snapshot of a stream.
    Snapshot {
        /// The stream.
        stream_id: String,
    },
}

impl std::fmt::Display for DataLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DataLocation::File { path, offset } => {
                write!(f, "`{}` at offset {offset}", path.display())
            }
            DataLocation::StoredEvent {
                stream_id,
                stream_version,
                position,
            } => {
                f.write_str("event")?;
                if let Some(v) = stream_version {
                    write!(f, " {v}")?;
                }
                if let Some(s) = stream_id {
                    write!(f, " of stream `{s}`")?;
                }
                if let Some(p) = position {
                    write!(f, " at position {p}")?;
                }
                Ok(())
            }
            DataLocation::Snapshot { stream_id } => write!(f, "a snapshot of `{stream_id}`"),
        }
    }
}

/// A streaming read: events one at a time, in order, holding a bounded amount in memory.
pub type EventStream<'a> = Box<dyn Iterator<Item = Result<RecordedEvent, StoreError>> + Send + 'a>;

/// The contract of an event store.
///
/// Appends are atomic per batch and checked against an [`ExpectedVersion`]; stream versions
/// are dense from 1; global positions are dense from 1 and strictly increasing in commit
/// order. Reads stream their results. Implementations are `Send + Sync` and take `&self`,
/// so one store is shared by reference or `Arc` across threads.
///
/// The conformance suite in `es_core::testing::conformance` (feature `testing`) pins every
/// behaviour; each implementation runs it.
///
/// ```
/// use es_core::{EventStore, ExpectedVersion, MemoryStore, NewEvent};
/// let store = MemoryStore::new();
/// let e = NewEvent::new("Deposited", 1, br#"{"amount":5}"#.to_vec());
/// let r = store.append("account-1", ExpectedVersion::NoStream, vec![e]).unwrap();
/// assert_eq!((r.first_version, r.first_position), (1, 1));
/// let events: Vec<_> = store.read_stream("account-1", 1).unwrap().collect::<Result<_, _>>().unwrap();
/// assert_eq!(events[0].event_type, "Deposited");
/// ```
///
/// The API is synchronous. From async code, use the `tokio` feature's
/// `asynchronous::AsyncRepository` and `asynchronous::subscribe`, or move a call to
/// tokio's blocking pool yourself:
///
/// ```
/// use es_core::{EventStore, MemoryStore};
/// use std::sync::Arc;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let store = Arc::new(MemoryStore::new());
/// let s = Arc::clone(&store);
/// let version = tokio::task::spawn_blocking(move || s.stream_version("cart-1")).await.unwrap();
/// assert_eq!(version.unwrap(), 0);
/// # }
/// ```
pub trait EventStore: Send + Sync {
    /// Appends `events` to `stream_id` atomically if the stream satisfies `expected`.
    ///
    /// Re-sending an append whose event ids are already stored as one append to this
    /// stream, with an expectation that held for the original, returns the original
    /// result with [`AppendResult::retried`] set, and writes nothing.
    fn append(
        &self,
        stream_id: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError>;

    /// Reads one stream from `from_version` (1 for all of it), in version order.
    fn read_stream(
        &self,
        stream_id: &str,
        from_version: u64,
    ) -> Result<EventStream<'_>, StoreError>;

    /// Reads the global log from `from_position` (1 for all of it), in position order.
    fn read_all(&self, from_position: u64) -> Result<EventStream<'_>, StoreError>;

    /// Hands the global log from `from_position` to `visit`, in position order, each
    /// event borrowed, until `visit` breaks or the log ends: [`read_all`](Self::read_all)
    /// without an owned copy of every event, for replays that keep only what they build
    /// from the events. The default borrows the events of `read_all`; a store that reads
    /// into buffers of its own lends from them.
    ///
    /// ```
    /// use es_core::{EventStore, ExpectedVersion, MemoryStore, NewEvent};
    /// use std::ops::ControlFlow;
    /// let store = MemoryStore::new();
    /// let e = NewEvent::new("Opened", 1, b"{}".to_vec());
    /// store.append("account-1", ExpectedVersion::NoStream, vec![e]).unwrap();
    /// let mut types = Vec::new();
    /// store
    ///     .visit_all(1, &mut |e| {
    ///         types.push(e.event_type.to_owned());
    ///         ControlFlow::Continue(())
    ///     })
    ///     .unwrap();
    /// assert_eq!(types, ["Opened"]);
    /// ```
    fn visit_all(
        &self,
        from_position: u64,
        visit: &mut dyn FnMut(RecordedEventRef<'_>) -> ControlFlow<()>,
    ) -> Result<(), StoreError> {
        for event in self.read_all(from_position)? {
            if visit(event?.borrowed()).is_break() {
                break;
            }
        }
        Ok(())
    }

    /// Hands one stream from `from_version` to `visit`, in version order, each event
    /// borrowed, until `visit` breaks or the stream ends: [`read_stream`](Self::read_stream)
    /// without an owned copy of every event (see [`visit_all`](Self::visit_all)).
    ///
    /// ```
    /// use es_core::{EventStore, ExpectedVersion, MemoryStore, NewEvent};
    /// use std::ops::ControlFlow;
    /// let store = MemoryStore::new();
    /// let events = (1..=3)
    ///     .map(|n| NewEvent::new("Deposited", 1, format!(r#"{{"amount":{n}}}"#).into_bytes()))
    ///     .collect();
    /// store.append("account-1", ExpectedVersion::NoStream, events).unwrap();
    /// let mut versions = Vec::new();
    /// store
    ///     .visit_stream("account-1", 2, &mut |e| {
    ///         versions.push(e.stream_version);
    ///         ControlFlow::Continue(())
    ///     })
    ///     .unwrap();
    /// assert_eq!(versions, [2, 3]);
    /// ```
    fn visit_stream(
        &self,
        stream_id: &str,
        from_version: u64,
        visit: &mut dyn FnMut(RecordedEventRef<'_>) -> ControlFlow<()>,
    ) -> Result<(), StoreError> {
        for event in self.read_stream(stream_id, from_version)? {
            if visit(event?.borrowed()).is_break() {
                break;
            }
        }
        Ok(())
    }

    /// The current version of a stream (0 when it does not exist).
    fn stream_version(&self, stream_id: &str) -> Result<u64, StoreError>;

    /// The position of the last event in the global log (0 when empty).
    fn head_position(&self) -> Result<u64, StoreError>;

    /// Where `stream_id` ends, when the store can tell without reading an event;
    /// `Ok(None)` when it cannot (the default) or the stream does not exist. Only events
    /// visible to readers count.
    ///
    /// The repository asks it before reading what was appended after a cached state:
    /// when the stream still ends at the event the state was folded up to (same version,
    /// same global position), there is nothing to read. Any other answer sends it to the
    /// stream, as without this method; there the anchoring event's id is checked too.
    ///
    /// A store whose log end can move back while it is open, handing a version and a
    /// position to another event (a database failing over to a replica that lost
    /// commits), keeps the default: an answer of version and position could not tell the
    /// other event from the one the cached state was folded up to.
    ///
    /// ```
    /// use es_core::{EventStore, ExpectedVersion, MemoryStore, NewEvent, StreamEnd};
    /// let store = MemoryStore::new();
    /// let e = NewEvent::new("Deposited", 1, br#"{"amount":5}"#.to_vec());
    /// store.append("account-1", ExpectedVersion::NoStream, vec![e]).unwrap();
    /// let end = StreamEnd { version: 1, position: 1 };
    /// assert_eq!(store.stream_end("account-1").unwrap(), Some(end));
    /// assert_eq!(store.stream_end("account-2").unwrap(), None);
    /// ```
    fn stream_end(&self, stream_id: &str) -> Result<Option<StreamEnd>, StoreError> {
        let _ = stream_id;
        Ok(None)
    }

    /// Blocks until the head position is past `position` or `timeout` passes, and
    /// returns the head. Live subscriptions wait here.
    ///
    /// The default polls; stores that can signal new appends override it.
    fn wait_for_head(&self, position: u64, timeout: Duration) -> Result<u64, StoreError> {
        let deadline = deadline_after(timeout);
        loop {
            let head = self.head_position()?;
            let now = Instant::now();
            if head > position || now >= deadline {
                return Ok(head);
            }
            std::thread::sleep((deadline - now).min(Duration::from_millis(5)));
        }
    }

    /// The store's snapshot store, when it keeps snapshots.
    fn snapshots(&self) -> Option<&dyn SnapshotStore> {
        None
    }

    /// The stream version at which `stream_id` holds the event with id `event_id`, or
    /// `None` when that stream does not hold it (the id is not stored, or stored in
    /// another stream). Only events visible to readers count.
    ///
    /// The repository asks it whether a reaction already ran (its event ids are derived
    /// from its cause). Stores index event ids for idempotent retries and answer with
    /// one lookup; the default reads the whole stream, which is correct but costs
    /// O(stream length).
    ///
    /// ```
    /// use es_core::{EventStore, ExpectedVersion, MemoryStore, NewEvent};
    /// let store = MemoryStore::new();
    /// let e = NewEvent::new("Deposited", 1, br#"{"amount":5}"#.to_vec());
    /// let id = e.event_id;
    /// store.append("account-1", ExpectedVersion::NoStream, vec![e]).unwrap();
    /// assert_eq!(store.version_of_event("account-1", id).unwrap(), Some(1));
    /// assert_eq!(store.version_of_event("account-2", id).unwrap(), None);
    /// ```
    fn version_of_event(
        &self,
        stream_id: &str,
        event_id: uuid::Uuid,
    ) -> Result<Option<u64>, StoreError> {
        for recorded in self.read_stream(stream_id, 1)? {
            let recorded = recorded?;
            if recorded.event_id == event_id {
                return Ok(Some(recorded.stream_version));
            }
        }
        Ok(None)
    }

    /// Whether the log can end before a position it once had, so that positions are
    /// handed out again: a store that acknowledges appends before they are durable loses
    /// them in a crash, and a repair cuts damage. A projection whose checkpoint lies past
    /// the head of such a store knows it has lost events. `false` by default: a store
    /// whose head only moves forward (a replica's lags behind, and catches up).
    fn head_can_move_back(&self) -> bool {
        false
    }

    /// Which store this is, through the references and pointers that hold it: its address
    /// and its type (values of a zero-sized type share an address). The repository's
    /// retry turns are kept per store and stream. Not for use elsewhere.
    #[doc(hidden)]
    fn store_key(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::hash::DefaultHasher::new();
        (std::ptr::from_ref(self).cast::<()>() as usize).hash(&mut hasher);
        std::any::type_name::<Self>().hash(&mut hasher);
        hasher.finish()
    }
}

macro_rules! forward_event_store {
    ($($ty:ty),*) => {$(
        impl<S: EventStore + ?Sized> EventStore for $ty {
            fn append(
                &self,
                stream_id: &str,
                expected: ExpectedVersion,
                events: Vec<NewEvent>,
            ) -> Result<AppendResult, StoreError> {
                (**self).append(stream_id, expected, events)
            }
            fn read_stream(
                &self,
                stream_id: &str,
                from_version: u64,
            ) -> Result<EventStream<'_>, StoreError> {
                (**self).read_stream(stream_id, from_version)
            }
            fn read_all(&self, from_position: u64) -> Result<EventStream<'_>, StoreError> {
                (**self).read_all(from_position)
            }
            fn visit_all(
                &self,
                from_position: u64,
                visit: &mut dyn FnMut(RecordedEventRef<'_>) -> ControlFlow<()>,
            ) -> Result<(), StoreError> {
                (**self).visit_all(from_position, visit)
            }
            fn visit_stream(
                &self,
                stream_id: &str,
                from_version: u64,
                visit: &mut dyn FnMut(RecordedEventRef<'_>) -> ControlFlow<()>,
            ) -> Result<(), StoreError> {
                (**self).visit_stream(stream_id, from_version, visit)
            }
            fn stream_version(&self, stream_id: &str) -> Result<u64, StoreError> {
                (**self).stream_version(stream_id)
            }
            fn head_position(&self) -> Result<u64, StoreError> {
                (**self).head_position()
            }
            fn stream_end(&self, stream_id: &str) -> Result<Option<StreamEnd>, StoreError> {
                (**self).stream_end(stream_id)
            }
            fn wait_for_head(&self, position: u64, timeout: Duration) -> Result<u64, StoreError> {
                (**self).wait_for_head(position, timeout)
            }
            fn snapshots(&self) -> Option<&dyn SnapshotStore> {
                (**self).snapshots()
            }
            fn version_of_event(
                &self,
                stream_id: &str,
                event_id: uuid::Uuid,
            ) -> Result<Option<u64>, StoreError> {
                (**self).version_of_event(stream_id, event_id)
            }
            fn head_can_move_back(&self) -> bool {
                (**self).head_can_move_back()
            }
            fn store_key(&self) -> u64 {
                (**self).store_key()
            }
        }
    )*};
}
forward_event_store!(&S, Arc<S>, Box<S>);

// Moved to `backend`, their home for store authors; these paths keep working.
#[doc(hidden)]
pub use crate::backend::{HeadSignal, IdLocation, check_idempotent_retry, deadline_after};

#[cfg(test)]
mod tests {
    use super::{Limits, StoreError, json_depth, nests_deeper_than};

    /// A refused stream id is named with its control characters written out: an id with a
    /// line break made the error two lines in a log (one of them forged at will).
    #[test]
    fn a_refused_id_is_shown_with_its_control_characters_written_out() {
        let err = Limits::default()
            .check_stream_id("a-1\nERROR forged line\u{1b}[31m")
            .unwrap_err();
        let StoreError::InvalidStreamId { stream_id, .. } = &err else {
            panic!("{err}");
        };
        assert_eq!(stream_id, "a-1\\nERROR forged line\\u{1b}[31m");
        assert_eq!(
            super::shown("a\u{2028}b\u{202e}c\u{61c}"),
            "a\\u{2028}b\\u{202e}c\\u{61c}"
        );
        assert!(!err.to_string().contains('\n'), "{err}");
        assert!(!err.to_string().contains('\u{1b}'), "{err}");
    }

    #[test]
    fn the_bracket_count_decides_only_what_the_walk_would() {
        // texts longer than a counting chunk, brackets in strings and out
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        let in_string = |n: usize| format!(r#"{{"s":"{}"}}"#, "[{".repeat(n));
        let wide = |n: usize| format!("[{}]", vec!["{}"; n].join(","));
        for n in [0, 1, 63, 64, 65, 200, 254, 255, 256, 600] {
            for text in [deep(n), in_string(n), wide(n)] {
                for max in [0, 1, 2, 64, 128, 255, 256] {
                    assert_eq!(
                        nests_deeper_than(text.as_bytes(), max),
                        json_depth(text.as_bytes()) > max,
                        "{n} {max}"
                    );
                }
            }
        }
    }
}
