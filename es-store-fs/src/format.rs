//! The on-disk format of log segments: the only module that knows byte offsets.
//!
//! All integers are little-endian; `varint` is unsigned LEB128 (at most 10 bytes).
//!
//! ```text
//! Segment file `<segment_no:020>.seg`
//! ┌──────────────────────────── header, 32 bytes ─────────────────────────────┐
//! │ 0..8   magic  b"ESLOGSG1"                                                 │
//! │ 8..12  format version: u32 (= 2; 1 is still read)                         │
//! │ 12..20 segment number: u64 (0, 1, 2, … in file order)                    │
//! │ 20..28 global position of the segment's first event: u64                 │
//! │ 28..32 CRC32C of bytes 0..28                                              │
//! └───────────────────────────────────────────────────────────────────────────┘
//! followed by frames, back to back, one per append:
//! ┌─────────────────────────────── frame ─────────────────────────────────────┐
//! │ 0..4     body length N: u32                                               │
//! │ 4..8     CRC32C of bytes 8..12+N (the body and the trailing length)       │
//! │ 8..8+N   body                                                             │
//! │ 8+N..12+N body length N again: u32                                        │
//! └───────────────────────────────────────────────────────────────────────────┘
//! body:
//!   kind: u8 (= 2, an append; 1 in format 1, without the next field)
//!   [synced back: varint]  the frame's offset minus the offset up to which this segment
//!                          was durable (synced) when the frame was written
//!   first global position: u64
//!   first stream version: varint
//!   commit time: seconds i64, nanoseconds u32
//!   stream id: varint length + UTF-8 bytes
//!   type table: varint count, then per type varint length + UTF-8 bytes
//!   event count: varint (≥ 1)
//!   per event:
//!     event id: 16 bytes
//!     type and flags: varint, type-table index × 2 + 1 when an own timestamp follows
//!     [own timestamp: seconds i64, nanoseconds u32]
//!     schema version: varint (≥ 1, fits u32)
//!     metadata: varint length + JSON bytes (length 0: empty metadata)
//!     payload: varint length + JSON bytes
//! ```
//!
//! The checksum covers the first position, so bytes left over from an older frame at the
//! same place (a reused or preallocated file) never pass as a frame of the current log.
//!
//! "Synced back" is what lets recovery tell damage from a torn write: a frame that passes
//! its checksum proves that everything in its segment before `offset - synced_back` had
//! been made durable, and so acknowledged, before the frame was written. A bad region
//! before that point is damage, never a write that a crash cut short.

use chrono::{DateTime, Utc};
use es_core::{Metadata, NewEvent, RecordedEvent, RecordedEventRef};
use integer_encoding::VarInt;
use uuid::Uuid;

/// Segment file magic.
pub const SEGMENT_MAGIC: &[u8; 8] = b"ESLOGSG1";
/// Format version written in segment headers.
pub const FORMAT_VERSION: u32 = 2;
/// The oldest format version this build reads.
pub const OLDEST_FORMAT_VERSION: u32 = 1;
/// Size of a segment header.
pub const SEGMENT_HEADER_LEN: usize = 32;
/// Bytes before a frame's body: length and checksum.
pub const FRAME_PREFIX_LEN: usize = 8;
/// Bytes after a frame's body: the trailing length.
pub const FRAME_SUFFIX_LEN: usize = 4;
/// Bytes a frame adds around its body.
pub const FRAME_OVERHEAD: usize = FRAME_PREFIX_LEN + FRAME_SUFFIX_LEN;
/// The smallest possible body (kind, position, version, time, empty id, no types, count,
/// one event without metadata and payload): anything shorter is not a frame.
pub const MIN_BODY_LEN: usize = 1 + 8 + 1 + 12 + 1 + 1 + 1 + 16 + 1 + 1 + 1 + 1;
/// The largest frame the format accepts (64 MiB). Longer lengths read from disk are
/// damage; limits that would allow larger appends are refused when a store opens.
pub const MAX_FRAME_LEN: usize = 64 * 1024 * 1024;
/// Frame kind of format 1: one append.
const KIND_APPEND_V1: u8 = 1;
/// Frame kind of format 2: one append that records how far its segment was durable.
const KIND_APPEND: u8 = 2;
/// Low bit of an event's type-and-flags varint: the event carries its own timestamp.
const FLAG_OWN_TIMESTAMP: u64 = 1;

/// Why bytes are not a valid frame or header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// Fewer bytes than the structure needs (a torn write, or the end of the file).
    #[error("truncated: {0}")]
    Truncated(&'static str),
    /// A length field exceeds the cap.
    #[error("frame length {len} exceeds the cap of {cap} bytes")]
    TooLong {
        /// The length read.
        len: u64,
        /// The cap.
        cap: u64,
    },
    /// The checksum does not match.
    #[error("checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum {
        /// Stored CRC.
        stored: u32,
        /// Computed CRC.
        computed: u32,
    },
    /// A structural rule is broken.
    #[error("malformed: {0}")]
    Malformed(String),
    /// A segment written by a newer version of the store.
    #[error(
        "written by a newer version of the store (format {found}; this build reads formats {OLDEST_FORMAT_VERSION} to {FORMAT_VERSION})"
    )]
    NewerFormat {
        /// The format version found.
        found: u32,
    },
}

type Result<T> = std::result::Result<T, FormatError>;

/// A segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Segment number.
    pub segment_no: u64,
    /// Global position of its first event.
    pub first_position: u64,
}

impl SegmentHeader {
    /// Encodes the header.
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_LEN] {
        let mut b = [0u8; SEGMENT_HEADER_LEN];
        b[0..8].copy_from_slice(SEGMENT_MAGIC);
        b[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[12..20].copy_from_slice(&self.segment_no.to_le_bytes());
        b[20..28].copy_from_slice(&self.first_position.to_le_bytes());
        let crc = crc32c::crc32c(&b[0..28]);
        b[28..32].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes and checks a header.
    pub fn decode(b: &[u8]) -> Result<SegmentHeader> {
        if b.len() < SEGMENT_HEADER_LEN {
            return Err(FormatError::Truncated("segment header"));
        }
        let stored = u32_at(b, 28);
        let computed = crc32c::crc32c(&b[0..28]);
        if stored != computed {
            return Err(FormatError::Checksum { stored, computed });
        }
        if &b[0..8] != SEGMENT_MAGIC {
            return Err(FormatError::Malformed(
                "not a segment file (bad magic)".into(),
            ));
        }
        let version = u32_at(b, 8);
        if version > FORMAT_VERSION {
            return Err(FormatError::NewerFormat { found: version });
        }
        if version < OLDEST_FORMAT_VERSION {
            return Err(FormatError::Malformed(format!(
                "segment format version {version} is not a version this store ever wrote"
            )));
        }
        Ok(SegmentHeader {
            segment_no: u64_at(b, 12),
            first_position: u64_at(b, 20),
        })
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// One event of a batch, pre-encoded outside the writer's lock.
#[derive(Debug, Clone)]
pub struct PreparedEvent {
    /// Event id.
    pub event_id: Uuid,
    /// Caller-given timestamp, if any.
    pub timestamp: Option<DateTime<Utc>>,
    /// Type name.
    pub event_type: String,
    /// Schema version.
    pub schema_version: u32,
    /// Encoded metadata (empty for none).
    pub metadata: Vec<u8>,
    /// Payload.
    pub payload: Vec<u8>,
}

impl PreparedEvent {
    /// Encodes the metadata of a new event. When it cannot be encoded, gives back the
    /// error with the event's type name, for the caller's report.
    pub fn from_new(e: NewEvent) -> std::result::Result<Self, (serde_json::Error, String)> {
        let metadata = if e.metadata.is_empty() {
            Vec::new()
        } else {
            match serde_json::to_vec(&e.metadata) {
                Ok(metadata) => metadata,
                Err(err) => return Err((err, e.event_type)),
            }
        };
        Ok(PreparedEvent {
            event_id: e.event_id,
            timestamp: e.timestamp,
            event_type: e.event_type,
            schema_version: e.schema_version,
            metadata,
            payload: e.payload,
        })
    }
}

/// The fixed part of a frame: where it sits in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FramePlace {
    /// Global position of the first event.
    pub first_position: u64,
    /// Stream version of the first event.
    pub first_version: u64,
    /// Commit time.
    pub timestamp: DateTime<Utc>,
    /// The frame's offset minus the offset up to which its segment was durable when it was
    /// written; `None` in format-1 frames, which do not record it.
    pub synced_back: Option<u64>,
}

fn put_varint(out: &mut Vec<u8>, v: u64) {
    if v < 0x80 {
        out.push(v as u8);
        return;
    }
    let mut buf = [0u8; 10];
    let n = v.encode_var(&mut buf);
    out.extend_from_slice(&buf[..n]);
}

fn put_time(out: &mut Vec<u8>, t: DateTime<Utc>) {
    out.extend_from_slice(&t.timestamp().to_le_bytes());
    out.extend_from_slice(&t.timestamp_subsec_nanos().to_le_bytes());
}

/// Appends one complete frame for `events` of `stream_id` to `out`; returns its length.
pub fn encode_frame(
    out: &mut Vec<u8>,
    place: FramePlace,
    stream_id: &str,
    events: &[PreparedEvent],
) -> usize {
    let start = out.len();
    // room for the whole frame up front, so that the writes below never reallocate: at
    // most ten bytes per varint, twelve per time
    out.reserve(
        FRAME_OVERHEAD
            + 64
            + stream_id.len()
            + events
                .iter()
                .map(|e| 16 + 4 * 10 + 12 + e.event_type.len() + e.metadata.len() + e.payload.len())
                .sum::<usize>(),
    );
    out.extend_from_slice(&[0u8; FRAME_PREFIX_LEN]);
    match place.synced_back {
        Some(back) => {
            out.push(KIND_APPEND);
            put_varint(out, back);
        }
        None => out.push(KIND_APPEND_V1),
    }
    out.extend_from_slice(&place.first_position.to_le_bytes());
    put_varint(out, place.first_version);
    put_time(out, place.timestamp);
    put_varint(out, stream_id.len() as u64);
    out.extend_from_slice(stream_id.as_bytes());
    // the type names in order of first use, and each event's index among them; a frame
    // whose events share one type (the usual one) needs no lists
    let first_type = events.first().map_or("", |e| e.event_type.as_str());
    let (types, type_index): (Vec<&str>, Vec<usize>) =
        if events.iter().all(|e| e.event_type == first_type) {
            (Vec::new(), Vec::new())
        } else {
            let mut types: Vec<&str> = Vec::new();
            let type_index = events
                .iter()
                .map(|e| match types.iter().position(|t| *t == e.event_type) {
                    Some(i) => i,
                    None => {
                        types.push(&e.event_type);
                        types.len() - 1
                    }
                })
                .collect();
            (types, type_index)
        };
    if types.is_empty() {
        put_varint(out, u64::from(!events.is_empty()));
        if !events.is_empty() {
            put_varint(out, first_type.len() as u64);
            out.extend_from_slice(first_type.as_bytes());
        }
    } else {
        put_varint(out, types.len() as u64);
        for t in &types {
            put_varint(out, t.len() as u64);
            out.extend_from_slice(t.as_bytes());
        }
    }
    put_varint(out, events.len() as u64);
    for (i, e) in events.iter().enumerate() {
        let ti = type_index.get(i).copied().unwrap_or(0);
        out.extend_from_slice(e.event_id.as_bytes());
        let own_time = u64::from(e.timestamp.is_some());
        put_varint(out, ((ti as u64) << 1) | (own_time * FLAG_OWN_TIMESTAMP));
        if let Some(t) = e.timestamp {
            put_time(out, t);
        }
        put_varint(out, u64::from(e.schema_version));
        put_varint(out, e.metadata.len() as u64);
        out.extend_from_slice(&e.metadata);
        put_varint(out, e.payload.len() as u64);
        out.extend_from_slice(&e.payload);
    }
    let body_len = (out.len() - start - FRAME_PREFIX_LEN) as u32;
    out.extend_from_slice(&body_len.to_le_bytes());
    let crc = crc32c::crc32c(&out[start + FRAME_PREFIX_LEN..]);
    out[start..start + 4].copy_from_slice(&body_len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    out.len() - start
}

/// Reads a frame's prefix: the body length, checked against `cap` and the minimum, so
/// that nothing is allocated for an absurd length.
pub fn frame_len(prefix: &[u8], cap: usize) -> Result<usize> {
    if prefix.len() < FRAME_PREFIX_LEN {
        return Err(FormatError::Truncated("frame prefix"));
    }
    let len = u32_at(prefix, 0) as usize;
    if len > cap {
        return Err(FormatError::TooLong {
            len: len as u64,
            cap: cap as u64,
        });
    }
    if len < MIN_BODY_LEN {
        return Err(FormatError::Malformed(format!(
            "frame body of {len} bytes is too short"
        )));
    }
    Ok(FRAME_OVERHEAD + len)
}

/// Checks a whole frame (`bytes` is exactly one frame) and returns its body.
pub fn check_frame(bytes: &[u8]) -> Result<&[u8]> {
    let len = frame_shape(bytes)?;
    let stored = u32_at(bytes, 4);
    let computed = crc32c::crc32c(&bytes[FRAME_PREFIX_LEN..]);
    if stored != computed {
        return Err(FormatError::Checksum { stored, computed });
    }
    Ok(&bytes[FRAME_PREFIX_LEN..FRAME_PREFIX_LEN + len])
}

/// Whether each of three frames passes [`check_frame`], their checksums computed side
/// by side in three lanes. An empty slot fails. Callers learn what is wrong with a
/// failing frame from [`check_frame`].
pub fn frames_intact(frames: [&[u8]; 3]) -> [bool; 3] {
    let computed = crate::crc::crc32c_3(frames.map(|f| f.get(FRAME_PREFIX_LEN..).unwrap_or(&[])));
    let mut intact = [false; 3];
    for ((ok, frame), computed) in intact.iter_mut().zip(frames).zip(computed) {
        *ok = frame_shape(frame).is_ok() && u32_at(frame, 4) == computed;
    }
    intact
}

/// A frame's body length, when `bytes` is long enough for a frame and its two lengths
/// agree with each other and with `bytes`.
fn frame_shape(bytes: &[u8]) -> Result<usize> {
    if bytes.len() < FRAME_OVERHEAD + MIN_BODY_LEN {
        return Err(FormatError::Truncated("frame"));
    }
    let len = u32_at(bytes, 0) as usize;
    if bytes.len() != FRAME_OVERHEAD + len {
        return Err(FormatError::Truncated("frame body"));
    }
    let trailing = u32_at(bytes, FRAME_PREFIX_LEN + len) as usize;
    if trailing != len {
        return Err(FormatError::Malformed(format!(
            "trailing length {trailing} differs from leading length {len}"
        )));
    }
    Ok(len)
}

/// A decoded frame header with a cursor over its events.
#[derive(Debug)]
pub struct Frame<'a> {
    /// Where it sits.
    pub place: FramePlace,
    /// Its stream.
    pub stream_id: &'a str,
    /// Number of events.
    pub count: u64,
    types: Types<'a>,
    rest: Reader<'a>,
}

/// A frame's type table: the first name inline, so that decoding a frame of one event
/// type (the usual frame) allocates nothing and the header stays small to move.
#[derive(Debug, Default)]
struct Types<'a> {
    first: Option<&'a str>,
    more: Box<[&'a str]>,
}

impl<'a> Types<'a> {
    /// A table of `names`, in order.
    fn of(names: impl IntoIterator<Item = &'a str>) -> Self {
        let mut names = names.into_iter();
        Types {
            first: names.next(),
            more: names.collect(),
        }
    }

    #[inline]
    fn get(&self, index: usize) -> Option<&'a str> {
        match index {
            0 => self.first,
            _ => self.more.get(index - 1).copied(),
        }
    }
}

/// A bounds-checked cursor.
#[derive(Debug, Clone)]
struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    #[inline]
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8]> {
        match self.buf.get(self.at..).and_then(|rest| rest.get(..n)) {
            Some(s) => {
                self.at += n;
                Ok(s)
            }
            None => Err(runs_past(what)),
        }
    }

    #[inline]
    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N]> {
        let b = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(b);
        Ok(a)
    }

    #[inline]
    fn u8(&mut self, what: &'static str) -> Result<u8> {
        Ok(self.array::<1>(what)?[0])
    }

    #[inline]
    fn u64(&mut self, what: &'static str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    #[inline(always)]
    fn varint(&mut self, what: &'static str) -> Result<u64> {
        // most varints (lengths, versions, counts) fit one byte
        match self.buf.get(self.at..self.at + 2) {
            Some(&[b, _]) if b < 0x80 => {
                self.at += 1;
                Ok(u64::from(b))
            }
            Some(&[lo, hi]) if hi < 0x80 => {
                self.at += 2;
                Ok(u64::from(lo & 0x7f) | (u64::from(hi) << 7))
            }
            _ => self.longer_varint(what),
        }
    }

    /// A varint of three bytes or more, or one at the end of the buffer.
    #[inline(never)]
    fn longer_varint(&mut self, what: &'static str) -> Result<u64> {
        // a distance back to the last sync often takes three or four bytes
        match self.buf.get(self.at..self.at + 4) {
            Some(&[b0, b1, b2, _]) if b2 < 0x80 => {
                self.at += 3;
                Ok(u64::from(b0 & 0x7f) | (u64::from(b1 & 0x7f) << 7) | (u64::from(b2) << 14))
            }
            Some(&[b0, b1, b2, b3]) if b3 < 0x80 => {
                self.at += 4;
                Ok(u64::from(b0 & 0x7f)
                    | (u64::from(b1 & 0x7f) << 7)
                    | (u64::from(b2 & 0x7f) << 14)
                    | (u64::from(b3) << 21))
            }
            _ => self.long_varint(what),
        }
    }

    #[cold]
    fn long_varint(&mut self, what: &'static str) -> Result<u64> {
        let (v, n) = self
            .buf
            .get(self.at..)
            .and_then(u64::decode_var)
            .ok_or_else(|| FormatError::Malformed(format!("bad varint in {what}")))?;
        self.at += n;
        Ok(v)
    }

    #[inline(always)]
    fn len_prefixed(&mut self, what: &'static str) -> Result<&'a [u8]> {
        let len = self.varint(what)?;
        match usize::try_from(len) {
            Ok(len) => self.take(len, what),
            Err(_) => Err(runs_past(what)),
        }
    }

    #[inline]
    fn str(&mut self, what: &'static str) -> Result<&'a str> {
        std::str::from_utf8(self.len_prefixed(what)?).map_err(|_| not_utf8(what))
    }

    #[inline(always)]
    fn time(&mut self, what: &'static str) -> Result<DateTime<Utc>> {
        let secs = self.u64(what)? as i64;
        let nanos = u32::from_le_bytes(self.array(what)?);
        time_of(secs, nanos).ok_or_else(|| out_of_range(what))
    }
}

std::thread_local! {
    /// The day of the last time decoded on this thread: frames read in a row were
    /// mostly written on the same day, and finding a day's date is most of the work.
    static LAST_DAY: std::cell::Cell<Option<(i64, chrono::NaiveDate)>> =
        const { std::cell::Cell::new(None) };
}

/// `DateTime::from_timestamp(secs, nanos)`, the date of the day remembered.
#[inline(always)]
fn time_of(secs: i64, nanos: u32) -> Option<DateTime<Utc>> {
    let days = secs.div_euclid(86_400);
    let secs_of_day = u32::try_from(secs.rem_euclid(86_400)).ok()?;
    let date = match LAST_DAY.get() {
        Some((day, date)) if day == days => date,
        _ => {
            // days from 0001-01-01 (CE) to 1970-01-01
            let date = chrono::NaiveDate::from_num_days_from_ce_opt(
                i32::try_from(days.checked_add(719_163)?).ok()?,
            )?;
            LAST_DAY.set(Some((days, date)));
            date
        }
    };
    let time = chrono::NaiveTime::from_num_seconds_from_midnight_opt(secs_of_day, nanos)?;
    Some(chrono::NaiveDateTime::new(date, time).and_utc())
}

/// Whether every byte is below 0x80, eight at a time: the last eight bytes (overlapping
/// the ones before) once at least eight are there, so that a name of 8 to 16 bytes takes
/// two loads. The standard library's check goes byte by byte below 16 bytes.
#[inline(always)]
fn is_ascii(bytes: &[u8]) -> bool {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let (chunks, rest) = bytes.as_chunks::<8>();
    let mut any = chunks.iter().fold(0, |any, c| any | u64::from_le_bytes(*c));
    match bytes.last_chunk::<8>() {
        Some(last) => any |= u64::from_le_bytes(*last),
        None => any |= rest.iter().fold(0, |any, &b| any | u64::from(b)),
    }
    any & HIGH == 0
}

/// A varint of one to four bytes at the start of `bytes`, and the bytes after it; `None`
/// for a longer one or one that runs past the end.
#[inline(always)]
fn short_varint(bytes: &[u8]) -> Option<(u64, &[u8])> {
    match bytes {
        [b, rest @ ..] if *b < 0x80 => Some((u64::from(*b), rest)),
        _ => {
            // the first four bytes as one word: the varint ends at the first byte below 0x80
            let word = u32::from_le_bytes(*bytes.first_chunk::<4>()?);
            let ends = !word & 0x8080_8080;
            if ends == 0 {
                return None;
            }
            let len = ends.trailing_zeros() / 8 + 1;
            let value = (word & 0x7f)
                | ((word >> 1) & (0x7f << 7))
                | ((word >> 2) & (0x7f << 14))
                | ((word >> 3) & (0x7f << 21));
            // the 7 * len bits of the varint's own bytes (at most 28)
            let keep = (1 << (7 * len)) - 1;
            Some((u64::from(value & keep), bytes.get(len as usize..)?))
        }
    }
}

/// The fewest bytes an event takes in a frame: its id, then one byte each for its type,
/// schema version, metadata length and payload length.
const MIN_EVENT_LEN: usize = 16 + 4;

/// Bytes known to be ASCII, as text.
#[inline(always)]
fn ascii_unchecked(bytes: &[u8]) -> &str {
    debug_assert!(is_ascii(bytes));
    // SAFETY: callers pass only bytes checked to be below 0x80, and ASCII is valid UTF-8.
    unsafe { std::str::from_utf8_unchecked(bytes) }
}

#[cold]
fn runs_past(what: &str) -> FormatError {
    FormatError::Malformed(format!("{what} runs past the frame"))
}

#[cold]
fn not_utf8(what: &str) -> FormatError {
    FormatError::Malformed(format!("{what} is not UTF-8"))
}

#[cold]
fn out_of_range(what: &str) -> FormatError {
    FormatError::Malformed(format!("{what} out of range"))
}

impl<'a> Frame<'a> {
    /// Decodes the header of a checked body (see [`check_frame`]).
    #[inline]
    pub fn parse(body: &'a [u8]) -> Result<Frame<'a>> {
        match Self::parse_usual(body) {
            Some(frame) => Ok(frame),
            None => Self::parse_any(body),
        }
    }

    /// [`Frame::parse`] of the usual frame, in one pass over the bytes: format 2, one
    /// event type, the stream id and the type name ASCII, each of them and the event count
    /// shorter than 128 bytes, the varints at most four bytes long. `None` for any other
    /// frame, and for one that breaks a rule of the format: [`Frame::parse`] then decodes
    /// it by the general path, or names what is wrong.
    #[inline(always)]
    pub fn parse_usual(body: &'a [u8]) -> Option<Frame<'a>> {
        let [KIND_APPEND, rest @ ..] = body else {
            return None;
        };
        let (synced_back, rest) = short_varint(rest)?;
        let (first_position, rest) = rest.split_first_chunk::<8>()?;
        let first_position = u64::from_le_bytes(*first_position);
        let (first_version, rest) = short_varint(rest)?;
        let (secs, rest) = rest.split_first_chunk::<8>()?;
        let (nanos, names) = rest.split_first_chunk::<4>()?;
        let timestamp = time_of(i64::from_le_bytes(*secs), u32::from_le_bytes(*nanos))?;
        // the stream id and the type table: lengths, count and names, all ASCII
        let id_end = 1 + usize::from(*names.first()?);
        let [1, type_len, ..] = *names.get(id_end..)? else {
            return None;
        };
        let names_end = id_end + 2 + usize::from(type_len);
        let (&count, events) = names.get(names_end..)?.split_first()?;
        if !is_ascii(names.get(..names_end)?) || count == 0 || count >= 0x80 {
            return None;
        }
        let count = u64::from(count);
        if count > (events.len() / MIN_EVENT_LEN) as u64
            || first_position == 0
            || first_version == 0
            || first_position.checked_add(count).is_none()
            || first_version.checked_add(count).is_none()
        {
            return None;
        }
        Some(Frame {
            place: FramePlace {
                first_position,
                first_version,
                timestamp,
                synced_back: Some(synced_back),
            },
            stream_id: ascii_unchecked(&names[1..id_end]),
            count,
            types: Types {
                first: Some(ascii_unchecked(&names[id_end + 2..names_end])),
                more: Box::default(),
            },
            rest: Reader {
                buf: body,
                at: body.len() - events.len(),
            },
        })
    }

    /// [`Frame::parse`] of any frame.
    #[inline(never)]
    fn parse_any(body: &'a [u8]) -> Result<Frame<'a>> {
        let mut r = Reader { buf: body, at: 0 };
        let kind = r.u8("frame kind")?;
        let synced_back = match kind {
            KIND_APPEND => Some(r.varint("synced back")?),
            KIND_APPEND_V1 => None,
            _ => return Err(FormatError::Malformed(format!("unknown frame kind {kind}"))),
        };
        let first_position = r.u64("first position")?;
        let first_version = r.varint("first version")?;
        let timestamp = r.time("commit time")?;
        let (stream_id, types) = match Self::ascii_names(&r) {
            Some((stream_id, types, end)) => {
                r.at = end;
                (stream_id, types)
            }
            None => Self::names(&mut r)?,
        };
        let count = r.varint("event count")?;
        // every event takes its 16-byte id and four bytes at least: a count the frame
        // cannot hold is damage, before anything is sized by it
        if count > ((r.buf.len() - r.at) / MIN_EVENT_LEN) as u64 {
            return Err(FormatError::Malformed(format!(
                "an event count of {count} exceeds what the frame can hold"
            )));
        }
        if count == 0 || first_position == 0 || first_version == 0 {
            return Err(FormatError::Malformed(
                "event count, first position and first version must be at least 1".into(),
            ));
        }
        if first_position.checked_add(count).is_none() || first_version.checked_add(count).is_none()
        {
            return Err(FormatError::Malformed("positions overflow".into()));
        }
        Ok(Frame {
            place: FramePlace {
                first_position,
                first_version,
                timestamp,
                synced_back,
            },
            stream_id,
            count,
            types,
            rest: r,
        })
    }

    /// The stream id and the type table, each name checked as UTF-8 on its own.
    fn names(r: &mut Reader<'a>) -> Result<(&'a str, Types<'a>)> {
        let stream_id = r.str("stream id")?;
        let type_count = r.varint("type count")?;
        // every type takes at least one byte: bound the allocation by what is left
        if type_count > (r.buf.len() - r.at) as u64 {
            return Err(FormatError::Malformed(
                "type count exceeds the frame".into(),
            ));
        }
        let names = (0..type_count)
            .map(|_| r.str("event type"))
            .collect::<Result<Vec<_>>>()?;
        Ok((stream_id, Types::of(names)))
    }

    /// [`Frame::names`] for the usual frame: the stream id, then up to four type names,
    /// every byte of them ASCII, so every length and the count in one byte. ASCII is valid
    /// UTF-8, and one check that every byte from the stream id's length to the end of
    /// the last name is below 0x80 takes a few word-wide instructions, where `from_utf8`
    /// walks byte by byte up to its first aligned word. `None` when the frame is not of
    /// that shape or runs short: [`Frame::names`] then reads it and names what is wrong.
    fn ascii_names(r: &Reader<'a>) -> Option<(&'a str, Types<'a>, usize)> {
        let (buf, start) = (r.buf, r.at);
        // the usual frame: one event type
        let id_end = start + 1 + usize::from(*buf.get(start)?);
        if let Some(&[1, type_len]) = buf.get(id_end..id_end + 2) {
            let end = id_end + 2 + usize::from(type_len);
            if !is_ascii(buf.get(start..end)?) {
                return None;
            }
            let types = Types {
                first: Some(ascii_unchecked(&buf[id_end + 2..end])),
                more: Box::default(),
            };
            return Some((ascii_unchecked(&buf[start + 1..id_end]), types, end));
        }
        let mut at = start;
        // a name's span after its one-byte length; checked to be ASCII below
        let name = |at: &mut usize| -> Option<(usize, usize)> {
            let from = *at + 1;
            *at = from + usize::from(*buf.get(*at)?);
            Some((from, *at))
        };
        let id = name(&mut at)?;
        let type_count = usize::from(*buf.get(at)?);
        at += 1;
        let mut spans = [(0, 0); 4];
        for span in spans.get_mut(..type_count)? {
            *span = name(&mut at)?;
        }
        if !is_ascii(buf.get(start..at)?) {
            return None;
        }
        // every span lies inside the ASCII bytes just checked
        let text = |(from, to): (usize, usize)| buf.get(from..to).map(ascii_unchecked);
        let names = spans[..type_count]
            .iter()
            .map(|&span| text(span))
            .collect::<Option<Vec<_>>>()?;
        Some((text(id)?, Types::of(names), at))
    }

    /// Position after the last event.
    pub fn end_position(&self) -> u64 {
        self.place.first_position + self.count
    }

    /// Decodes every event, calling `f` for each with its index in the frame.
    pub fn for_each_event(
        mut self,
        mut f: impl FnMut(u64, RawEvent<'a>) -> Result<()>,
    ) -> Result<()> {
        for i in 0..self.count {
            let e = self.next_event()?;
            f(i, e)?;
        }
        self.finish()
    }

    /// After the last event: checks that nothing follows it.
    pub fn finish(&self) -> Result<()> {
        if self.rest.at != self.rest.buf.len() {
            return Err(FormatError::Malformed("bytes after the last event".into()));
        }
        Ok(())
    }

    /// The only event of a frame of one event, in the usual shape (the frame's one event
    /// type, no timestamp of its own, lengths of at most four bytes, nothing after it),
    /// decoded in one pass without moving the cursor: what [`Frame::next_event`] then
    /// [`Frame::finish`] give for it. `None` for any other frame, which those two then
    /// decode, or name what is wrong with.
    #[inline(always)]
    pub fn only_event(&self) -> Option<RawEvent<'a>> {
        if self.count != 1 {
            return None;
        }
        let bytes = self.rest.buf.get(self.rest.at..)?;
        let (id, rest) = bytes.split_first_chunk::<16>()?;
        // type 0 and no timestamp of its own, a schema version of one byte
        let [0, schema_version @ 1..0x80, rest @ ..] = rest else {
            return None;
        };
        let (metadata_len, rest) = short_varint(rest)?;
        let (metadata, rest) = rest.split_at_checked(usize::try_from(metadata_len).ok()?)?;
        let (payload_len, payload) = short_varint(rest)?;
        if usize::try_from(payload_len).ok()? != payload.len() {
            return None;
        }
        Some(RawEvent {
            event_id: Uuid::from_bytes(*id),
            timestamp: self.place.timestamp,
            event_type: self.types.first?,
            schema_version: u32::from(*schema_version),
            metadata,
            payload,
        })
    }

    /// The next of the frame's `count` events; call it `count` times, then
    /// [`Frame::finish`].
    #[inline(always)]
    pub fn next_event(&mut self) -> Result<RawEvent<'a>> {
        let r = &mut self.rest;
        let id = Uuid::from_bytes(r.array("event id")?);
        let type_and_flags = r.varint("event type")?;
        let timestamp = if type_and_flags & FLAG_OWN_TIMESTAMP != 0 {
            r.time("event time")?
        } else {
            self.place.timestamp
        };
        let type_index = type_and_flags >> 1;
        let event_type = usize::try_from(type_index)
            .ok()
            .and_then(|i| self.types.get(i))
            .ok_or_else(|| {
                FormatError::Malformed(format!("type index {type_index} out of range"))
            })?;
        let schema_version = u32::try_from(r.varint("schema version")?)
            .ok()
            .filter(|&v| v > 0)
            .ok_or_else(|| FormatError::Malformed("schema version out of range".into()))?;
        let metadata = r.len_prefixed("metadata")?;
        let payload = r.len_prefixed("payload")?;
        Ok(RawEvent {
            event_id: id,
            timestamp,
            event_type,
            schema_version,
            metadata,
            payload,
        })
    }

    /// Decodes every event into [`RecordedEvent`]s, skipping those before `from_index`.
    pub fn into_recorded(
        self,
        from_index: u64,
        out: &mut impl Extend<RecordedEvent>,
    ) -> Result<()> {
        let stream_id = self.stream_id;
        let place = self.place;
        self.for_each_event(|i, raw| {
            if i >= from_index {
                out.extend(Some(raw.to_recorded(stream_id, place, i)?));
            }
            Ok(())
        })
    }
}

/// One event's fields, borrowed from a frame.
#[derive(Debug, Clone, Copy)]
pub struct RawEvent<'a> {
    /// Event id.
    pub event_id: Uuid,
    /// Event time.
    pub timestamp: DateTime<Utc>,
    /// Type name.
    pub event_type: &'a str,
    /// Schema version.
    pub schema_version: u32,
    /// Metadata JSON (empty for none).
    pub metadata: &'a [u8],
    /// Payload JSON.
    pub payload: &'a [u8],
}

/// The metadata of events that have none, lent by borrowed events.
static NO_METADATA: Metadata = Metadata {
    correlation_id: None,
    causation_id: None,
    actor: None,
    extra: std::collections::BTreeMap::new(),
};

impl<'a> RawEvent<'a> {
    /// Decodes the metadata; `None` when the event has none.
    #[inline]
    pub fn metadata(&self) -> Result<Option<Metadata>> {
        if self.metadata.is_empty() {
            return Ok(None);
        }
        Self::parse_metadata(self.metadata).map(Some)
    }

    fn parse_metadata(bytes: &[u8]) -> Result<Metadata> {
        serde_json::from_slice(bytes).map_err(|e| FormatError::Malformed(format!("metadata: {e}")))
    }

    /// The borrowed event at `index` of a frame, with its decoded metadata (`None` for
    /// none).
    pub fn borrowed<'m>(
        &self,
        stream_id: &'a str,
        place: FramePlace,
        index: u64,
        metadata: Option<&'m Metadata>,
    ) -> RecordedEventRef<'m>
    where
        'a: 'm,
    {
        RecordedEventRef {
            stream_id,
            stream_version: place.first_version + index,
            position: place.first_position + index,
            event_id: self.event_id,
            timestamp: self.timestamp,
            event_type: self.event_type,
            schema_version: self.schema_version,
            metadata: metadata.unwrap_or(&NO_METADATA),
            payload: self.payload,
        }
    }

    /// Builds the owned event at `index` of a frame.
    pub fn to_recorded(
        &self,
        stream_id: &str,
        place: FramePlace,
        index: u64,
    ) -> Result<RecordedEvent> {
        let metadata = self.metadata()?.unwrap_or_default();
        Ok(RecordedEvent {
            stream_id: stream_id.to_owned(),
            stream_version: place.first_version + index,
            position: place.first_position + index,
            event_id: self.event_id,
            timestamp: self.timestamp,
            event_type: self.event_type.to_owned(),
            schema_version: self.schema_version,
            metadata,
            payload: self.payload.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let events = vec![
            PreparedEvent {
                event_id: Uuid::new_v4(),
                timestamp: None,
                event_type: "A".into(),
                schema_version: 1,
                metadata: Vec::new(),
                payload: b"{}".to_vec(),
            },
            PreparedEvent {
                event_id: Uuid::new_v4(),
                timestamp: Some(DateTime::from_timestamp(5, 6).unwrap()),
                event_type: "B".into(),
                schema_version: 7,
                metadata: br#"{"actor":"x"}"#.to_vec(),
                payload: b"[1]".to_vec(),
            },
        ];
        let mut out = Vec::new();
        let place = FramePlace {
            first_position: 10,
            first_version: 3,
            timestamp: DateTime::from_timestamp(100, 0).unwrap(),
            synced_back: Some(300),
        };
        encode_frame(&mut out, place, "s-1", &events);
        out
    }

    #[test]
    fn an_event_count_the_frame_cannot_hold_is_damage() {
        let out = sample();
        let body = check_frame(&out).unwrap().to_vec();
        let at = Frame::parse(&body).unwrap().rest.at;
        assert_eq!(body[at - 1], 2, "the count's one byte");
        for count in [1u64 << 62, u64::MAX, 1 << 20, 1 + body.len() as u64 / 20] {
            let mut forged = body[..at - 1].to_vec();
            put_varint(&mut forged, count);
            forged.extend_from_slice(&body[at..]);
            let err = Frame::parse(&forged).unwrap_err().to_string();
            assert!(
                err.contains("exceeds what the frame can hold"),
                "{count}: {err}"
            );
        }
    }

    #[test]
    fn names_read_as_ascii_are_the_names_read_one_by_one() {
        let long = "t".repeat(200);
        let cases: Vec<(String, Vec<String>)> = vec![
            ("s-1".into(), vec!["A".into()]),
            ("".into(), vec!["A".into()]),
            ("köln-ß-€-🙂".into(), vec!["Ärger".into(), "B".into()]),
            ("s".into(), (0..4).map(|i| format!("T{i}")).collect()),
            ("s".into(), (0..5).map(|i| format!("T{i}")).collect()),
            (long.clone(), vec!["A".into()]),
            ("s".into(), vec![long.clone(), "B".into()]),
            ("t".repeat(127), vec!["t".repeat(127)]),
            ("t".repeat(128), vec!["t".repeat(128)]),
            ("s-1".into(), vec!["A".into(), "Bé".into()]),
        ];
        for (stream, types) in cases {
            let events: Vec<PreparedEvent> = types
                .iter()
                .map(|t| PreparedEvent {
                    event_id: Uuid::new_v4(),
                    timestamp: None,
                    event_type: t.clone(),
                    schema_version: 1,
                    metadata: Vec::new(),
                    payload: b"{}".to_vec(),
                })
                .collect();
            let place = FramePlace {
                first_position: 1,
                first_version: 1,
                timestamp: DateTime::from_timestamp(100, 0).unwrap(),
                synced_back: Some(0),
            };
            let mut out = Vec::new();
            encode_frame(&mut out, place, &stream, &events);
            let body = check_frame(&out).unwrap();
            let frame = Frame::parse(body).unwrap();
            assert_eq!(frame.stream_id, stream);
            let mut seen = Vec::new();
            frame
                .for_each_event(|_, e| {
                    seen.push(e.event_type.to_owned());
                    Ok(())
                })
                .unwrap();
            assert_eq!(seen, types);
            // a byte that is not UTF-8 in the stream id or a type is refused, either way
            let name_at = |name: &str| {
                body.windows(name.len().max(1))
                    .position(|w| w == name.as_bytes())
                    .unwrap()
            };
            for name in std::iter::once(&stream)
                .chain(&types)
                .filter(|n| !n.is_empty())
            {
                let mut bad = body.to_vec();
                bad[name_at(name)] = 0xff;
                let err = Frame::parse(&bad).unwrap_err().to_string();
                assert!(err.contains("not UTF-8"), "{err}");
            }
        }
    }

    #[test]
    fn the_ascii_check_finds_a_high_byte_anywhere() {
        for len in 0..40 {
            let clean = vec![b'a'; len];
            assert!(is_ascii(&clean));
            for at in 0..len {
                for high in [0x80, 0xc3, 0xff] {
                    let mut bytes = clean.clone();
                    bytes[at] = high;
                    assert!(!is_ascii(&bytes), "{len} bytes, {high:#x} at {at}");
                }
            }
        }
    }

    #[test]
    fn short_varints_decode_as_the_general_decoder_or_not_at_all() {
        let mut cases: Vec<Vec<u8>> = Vec::new();
        for v in (0..64).flat_map(|bit| [1u64 << bit, (1u64 << bit) - 1]) {
            let mut bytes = Vec::new();
            put_varint(&mut bytes, v);
            cases.push(bytes);
        }
        // encodings that are not the shortest, and every one- and two-byte prefix
        cases.extend(
            [
                &[0x80, 0x00][..],
                &[0xff, 0x80, 0x00],
                &[0x80, 0x80, 0x80, 0x00],
            ]
            .map(<[u8]>::to_vec),
        );
        cases.extend((0..=255u8).flat_map(|a| (0..=255u8).map(move |b| vec![a, b])));
        for bytes in cases {
            for tail in [&[][..], &[0x05][..], &[0x81, 0x81, 0x81][..]] {
                let mut buf = bytes.clone();
                buf.extend_from_slice(tail);
                let general = u64::decode_var(&buf[..]);
                match short_varint(&buf) {
                    Some((v, rest)) => {
                        assert_eq!(general, Some((v, buf.len() - rest.len())), "{buf:02x?}");
                        assert!(rest.len() + 4 >= buf.len(), "{buf:02x?}");
                    }
                    // only a varint longer than four bytes, or one in fewer than four bytes
                    // that is not a single byte, is left to the general decoder
                    None => assert!(
                        buf.len() < 4 || buf[..4].iter().all(|b| b & 0x80 != 0),
                        "{buf:02x?}"
                    ),
                }
            }
        }
    }

    /// The usual frame's parse gives what the general parse gives, or leaves the frame to
    /// it: for frames of every shape, and for each of them with every byte changed.
    #[test]
    fn the_usual_frame_parses_as_any_frame_parses() {
        let event = |t: &str, own_time: bool, metadata: &[u8]| PreparedEvent {
            event_id: Uuid::from_u128(0x1234_5678_9abc_def0_1234_5678_9abc_def0),
            timestamp: own_time.then(|| DateTime::from_timestamp(5, 6).unwrap()),
            event_type: t.into(),
            schema_version: 3,
            metadata: metadata.to_vec(),
            payload: br#"{"a":1}"#.to_vec(),
        };
        let big = |len: usize, schema_version: u32| PreparedEvent {
            event_id: Uuid::from_u128(7),
            timestamp: None,
            event_type: "Big".into(),
            schema_version,
            metadata: Vec::new(),
            payload: vec![b'1'; len],
        };
        let shapes: Vec<(&str, Vec<PreparedEvent>, Option<u64>, u64)> = vec![
            ("cart-1", vec![event("Added", false, b"")], Some(0), 1),
            (
                "cart-1",
                vec![event("Added", false, b"")],
                Some(300),
                1 << 40,
            ),
            (
                "cart-1",
                vec![event("Added", true, br#"{"actor":"x"}"#)],
                Some(1 << 21),
                7,
            ),
            (
                "cart-1",
                vec![event("Added", false, b""), event("Added", false, b"")],
                Some(1 << 27),
                9,
            ),
            (
                "cart-1",
                vec![event("A", false, b""), event("B", false, b"")],
                Some(5),
                1,
            ),
            ("köln", vec![event("Added", false, b"")], Some(5), 1),
            ("cart-1", vec![event("Added", false, b"")], None, 1),
            ("", vec![event("", false, b"")], Some(1 << 28), 1 << 14),
            ("cart-1", vec![big(200, 1)], Some(5), 1),
            ("cart-1", vec![big(20_000, 1)], Some(5), 1),
            ("cart-1", vec![big(3, 128)], Some(5), 1),
        ];
        let (mut usual, mut only_events) = (0, 0);
        for (stream, events, synced_back, first_version) in shapes {
            let place = FramePlace {
                first_position: 1 << 20,
                first_version,
                timestamp: DateTime::from_timestamp(1_700_000_000, 5).unwrap(),
                synced_back,
            };
            let mut out = Vec::new();
            encode_frame(&mut out, place, stream, &events);
            let body = check_frame(&out).unwrap().to_vec();
            let mut bodies = vec![body.clone()];
            // every byte of the header and of the event's fields, and the payload's last
            let changed = (0..body.len()).filter(|&at| at < 128 || at + 16 >= body.len());
            for at in changed {
                for byte in [0x00, 0x01, 0x02, 0x7f, 0x80, 0xff] {
                    let mut changed = body.clone();
                    changed[at] = byte;
                    bodies.push(changed);
                }
            }
            for body in &bodies {
                let any = Frame::parse_any(body);
                // the only event decoded in one pass is the one the cursor decodes
                if let Ok(frame) = &any
                    && let Some(only) = frame.only_event()
                {
                    only_events += 1;
                    let mut cursor = Frame::parse_any(body).unwrap();
                    let event = cursor.next_event().unwrap();
                    cursor.finish().unwrap();
                    assert_eq!(
                        (
                            only.event_id,
                            only.timestamp,
                            only.event_type,
                            only.schema_version
                        ),
                        (
                            event.event_id,
                            event.timestamp,
                            event.event_type,
                            event.schema_version
                        )
                    );
                    assert_eq!(
                        (only.metadata, only.payload),
                        (event.metadata, event.payload)
                    );
                }
                let Some(fast) = Frame::parse_usual(body) else {
                    continue;
                };
                usual += 1;
                let any = any.unwrap_or_else(|e| panic!("{e}: {body:02x?}"));
                assert_eq!(fast.place, any.place);
                assert_eq!(fast.stream_id, any.stream_id);
                assert_eq!(fast.count, any.count);
                assert_eq!(fast.types.first, any.types.first);
                assert_eq!(fast.types.more, any.types.more);
                assert_eq!(fast.rest.at, any.rest.at);
            }
        }
        assert!(usual > 1000, "{usual} frames took the usual path");
        assert!(
            only_events > 1000,
            "{only_events} frames had their only event read at once"
        );
    }

    #[test]
    fn varints_decode_as_the_general_decoder_decodes_them() {
        let mut values: Vec<u64> = vec![0, 1, 0x7f, 0x80, 0x3fff, 0x4000, 0x1f_ffff, 0x20_0000];
        values.extend((0..64).map(|bit| 1u64 << bit));
        values.extend((0..64).map(|bit| (1u64 << bit) - 1));
        values.push(u64::MAX);
        for v in values {
            let mut bytes = Vec::new();
            put_varint(&mut bytes, v);
            // as written, with bytes after it, and cut short
            for tail in [&[][..], &[0x05, 0x81][..]] {
                let mut buf = bytes.clone();
                buf.extend_from_slice(tail);
                let mut r = Reader { buf: &buf, at: 0 };
                assert_eq!(r.varint("v").unwrap(), v);
                assert_eq!(r.at, bytes.len());
            }
            let cut = &bytes[..bytes.len() - 1];
            assert!(Reader { buf: cut, at: 0 }.varint("v").is_err() || cut.is_empty());
        }
        // an encoding that is not the shortest decodes as the general decoder decodes it
        let cases: [&[u8]; 6] = [
            &[0x80, 0x00, 0x00],
            &[0xff, 0x80, 0x00],
            &[0x81, 0x81, 0x01],
            &[0x80, 0x00, 0x00, 0x05],
            &[0x80, 0x80, 0x80, 0x00, 0x05],
            &[0xff, 0xff, 0xff, 0x7f, 0x05],
        ];
        for buf in cases {
            let expected = u64::decode_var(buf).unwrap();
            let mut r = Reader { buf, at: 0 };
            assert_eq!(r.varint("v").unwrap(), expected.0);
            assert_eq!(r.at, expected.1);
        }
    }

    #[test]
    fn times_decode_as_chrono_decodes_them() {
        let mut seed = 11u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            seed >> 11
        };
        let edges = [
            0i64,
            -1,
            86_399,
            86_400,
            -86_400,
            1_700_000_000,
            i64::MAX,
            i64::MIN,
            8_210_298_412_799,
            8_210_298_412_800,
            -62_135_596_800,
            -62_135_596_801,
        ];
        let nanos = [
            0u32,
            1,
            999_999_999,
            1_000_000_000,
            1_999_999_999,
            2_000_000_000,
        ];
        let mut cases: Vec<(i64, u32)> = edges
            .iter()
            .flat_map(|&s| nanos.iter().map(move |&n| (s, n)))
            .collect();
        for _ in 0..20_000 {
            let s = (next() as i64 % 20_000_000_000) - 10_000_000_000;
            // runs of the same day, and days apart
            cases.push((s, (next() % 1_100_000_000) as u32));
            cases.push((s + (next() % 100) as i64, (next() % 1_000_000_000) as u32));
            cases.push((s - 59 + 60 * (next() % 3) as i64, 1_500_000_000));
        }
        for (s, n) in cases {
            assert_eq!(time_of(s, n), DateTime::from_timestamp(s, n), "{s} {n}");
        }
    }

    #[test]
    fn frame_round_trips() {
        let bytes = sample();
        assert_eq!(frame_len(&bytes, 1 << 20).unwrap(), bytes.len());
        let frame = Frame::parse(check_frame(&bytes).unwrap()).unwrap();
        assert_eq!(frame.stream_id, "s-1");
        let mut out = Vec::new();
        frame.into_recorded(0, &mut out).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!((out[1].position, out[1].stream_version), (11, 4));
        assert_eq!(out[1].schema_version, 7);
        assert_eq!(out[1].metadata.actor.as_deref(), Some("x"));
        assert_eq!(out[0].timestamp.timestamp(), 100);
        assert_eq!(out[1].timestamp.timestamp(), 5);
    }

    #[test]
    fn synced_back_round_trips_and_format_1_frames_still_parse() {
        let bytes = sample();
        let frame = Frame::parse(check_frame(&bytes).unwrap()).unwrap();
        assert_eq!(frame.place.synced_back, Some(300));
        let mut v1 = Vec::new();
        let place = FramePlace {
            synced_back: None,
            ..frame.place
        };
        let event = PreparedEvent {
            event_id: Uuid::new_v4(),
            timestamp: None,
            event_type: "A".into(),
            schema_version: 1,
            metadata: Vec::new(),
            payload: b"{}".to_vec(),
        };
        encode_frame(&mut v1, place, "s-1", &[event]);
        let old = Frame::parse(check_frame(&v1).unwrap()).unwrap();
        assert_eq!(old.place.synced_back, None);
        assert_eq!(old.place.first_position, 10);
    }

    #[test]
    fn a_newer_format_is_its_own_error() {
        let mut b = SegmentHeader {
            segment_no: 0,
            first_position: 1,
        }
        .encode();
        b[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
        let crc = crc32c::crc32c(&b[0..28]);
        b[28..32].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            SegmentHeader::decode(&b),
            Err(FormatError::NewerFormat {
                found: FORMAT_VERSION + 1
            })
        );
    }

    #[test]
    fn every_flipped_bit_is_detected() {
        let bytes = sample();
        for i in 0..bytes.len() * 8 {
            let mut b = bytes.clone();
            b[i / 8] ^= 1 << (i % 8);
            let ok = frame_len(&b, 1 << 20)
                .ok()
                .filter(|&l| l == b.len())
                .and_then(|_| check_frame(&b).ok());
            assert!(ok.is_none(), "bit {i} flipped went unnoticed");
        }
    }

    #[test]
    fn header_round_trips_and_rejects_damage() {
        let h = SegmentHeader {
            segment_no: 3,
            first_position: 99,
        };
        let b = h.encode();
        assert_eq!(SegmentHeader::decode(&b).unwrap(), h);
        let mut bad = b;
        bad[13] ^= 1;
        assert!(SegmentHeader::decode(&bad).is_err());
        assert!(SegmentHeader::decode(&b[..10]).is_err());
    }
}
