//! Sealed segment indexes: one immutable file per sealed segment, written once when the
//! segment is sealed, that lets the store find a stream's frames, a position's frame and
//! an event id's position without holding them in memory.
//!
//! All integers are little-endian.
//!
//! ```text
//! <n:020>.idx
//! header (64 bytes)
//!   0..8    magic b"ESSEGIX2"
//!   8..16   segment number u64
//!   16..24  sealed length u64: the segment's length, the end of its last frame
//!   24..32  global position of the segment's first event u64
//!   32..40  event count u64
//!   40..44  frame count F u32
//!   44..48  stream count S u32
//!   48..52  names length N u32
//!   52..56  filter length L u32 (0: no filter)
//!   56..60  CRC32C of section A but the filter
//!   60..64  CRC32C of bytes 0..60
//! section A (read when the store opens; all but the filter is the "stream table")
//!   streams  S × 56 bytes, sorted by (stream hash, id):
//!            hash u64, previous segment holding the stream u64 (u64::MAX: none),
//!            first version u64, last version u64, name offset u32, name length u32,
//!            first entry in `by stream` u32, frame count u32, first frame u32, reserved u32
//!   names    N bytes: the stream ids, UTF-8
//!   by stream  F × 40 bytes: the frame entries (as below) grouped by stream, in the
//!            order of the streams, each group in log order
//!   filter   L bytes: a binary fuse filter of the event ids with 16-bit fingerprints
//!            (20-byte descriptor, then the fingerprints, u16 each), then the CRC32C of
//!            those, so that an open that knows the stream table reads the filter alone
//! section B (read in pieces, on demand)
//!   frames   F × 40 bytes in log order: offset u64, first position u64, first version
//!            u64, event count u32, length u32, stream (index in streams) u32, reserved u32
//!   ids      E × 24 bytes sorted by id: event id (16 bytes), position u64
//!   CRC32C of section B u32
//! ```
//!
//! Files of the first layout (b"ESSEGIX1": the filter has no checksum of its own and
//! the CRC32C at 56..60 covers the whole of section A) are still read.
//!
//! The file is written to a temporary name, synced, renamed and the directory synced,
//! only after its segment was cut to its last frame and synced: an intact sealed index
//! proves that its segment was durable up to its sealed length. Section B is read in
//! small pieces; what it says is checked against the frame it leads to (whose checksum,
//! position, version, count and stream are checked on every read), so a damaged entry
//! is reported as damage naming the file and offset, never trusted.

use crate::format::{FRAME_OVERHEAD, MIN_BODY_LEN, SEGMENT_HEADER_LEN};
use crate::index::{FrameEntry, FrameRef};
use crate::vfs::VfsFile;
use std::collections::HashMap;
use std::io;
use uuid::Uuid;
use xorf::{BinaryFuse16, BinaryFuse16Ref, DmaSerializable, Filter, FilterRef};

const MAGIC: &[u8; 8] = b"ESSEGIX2";
const MAGIC_V1: &[u8; 8] = b"ESSEGIX1";
/// Length of the header.
pub const HEADER_LEN: u64 = 64;
const STREAM_LEN: u64 = 56;
const FRAME_LEN: u64 = 40;
const ID_LEN: u64 = 24;
const SLOT_LEN: u64 = FRAME_LEN;
const FILTER_DESCRIPTOR_LEN: usize = 20;
const NO_SEGMENT: u64 = u64::MAX;

/// A stable 64-bit hash of a stream id, for file formats (the same in every build).
pub fn stream_hash(stream_id: &str) -> u64 {
    let low = crc32c::crc32c(stream_id.as_bytes());
    let high = crc32c::crc32c_append(0x9e37_79b9, stream_id.as_bytes());
    (u64::from(high) << 32) | u64::from(low)
}

/// Where `hash` would lie among `len` sorted hashes from `first` to `last` were they
/// spread exactly evenly: the start of [`search_near`].
fn interpolate(hash: u64, first: Option<u64>, last: Option<u64>, len: u64) -> u64 {
    let (Some(first), Some(last)) = (first, last) else {
        return 0;
    };
    if len == 0 || last <= first {
        return 0;
    }
    let into = u128::from(hash.clamp(first, last) - first);
    let guess = into * u128::from(len) / (u128::from(last - first) + 1);
    u64::try_from(guess).map_or(len - 1, |g| g.min(len - 1))
}

/// The first of `0..len` at which `below` turns false (it is true for a prefix, false
/// after), searched from `guess` outwards in doubling steps and then by bisection of the
/// last step: a few reads next to the guess when it is close, and never more than twice a
/// bisection's when it is not.
fn search_near<E>(
    len: u64,
    guess: u64,
    mut below: impl FnMut(u64) -> Result<bool, E>,
) -> Result<u64, E> {
    let guess = guess.min(len);
    let (mut lo, mut hi);
    if guess < len && below(guess)? {
        // the answer lies after the guess
        (lo, hi) = (guess + 1, len);
        let mut step = 1;
        while lo < len {
            let probe = (guess + step).min(len - 1);
            if !below(probe)? {
                hi = probe;
                break;
            }
            lo = probe + 1;
            step *= 2;
        }
    } else {
        // at the guess or before it
        (lo, hi) = (0, guess);
        let mut step = 1;
        while hi > 0 {
            let probe = guess.saturating_sub(step);
            if below(probe)? {
                lo = probe + 1;
                break;
            }
            hi = probe;
            step *= 2;
        }
    }
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if below(mid)? {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    Ok(lo)
}

/// The filter key of an event id.
pub(crate) fn id_key(id: &Uuid) -> u64 {
    let (a, b) = id.as_u64_pair();
    a ^ b.rotate_left(29)
}

/// Why a sealed index file cannot be used.
#[derive(Debug)]
pub enum SealedError {
    /// A read failed.
    Io(io::Error),
    /// It is not an intact sealed index of this segment.
    Damaged {
        /// Byte offset in the index file.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
}

impl From<io::Error> for SealedError {
    fn from(e: io::Error) -> Self {
        SealedError::Io(e)
    }
}

fn damaged(offset: u64, reason: impl Into<String>) -> SealedError {
    SealedError::Damaged {
        offset,
        reason: reason.into(),
    }
}

/// The filter in front of a segment's id table: 16-bit fingerprints, so that a lookup
/// in a store of a thousand segments still rarely reads an id table in vain.
pub(crate) struct IdFilter {
    descriptor: [u8; FILTER_DESCRIPTOR_LEN],
    fingerprints: Box<[u16]>,
}

impl IdFilter {
    /// The filter of `keys` (sorted and deduplicated here) as bytes: its descriptor, then
    /// its fingerprints. `None` when the filter cannot be built (no key).
    pub(crate) fn build(keys: &mut Vec<u64>) -> Option<Vec<u8>> {
        keys.sort_unstable();
        keys.dedup();
        let f = BinaryFuse16::try_from(&*keys).ok()?;
        let mut bytes = vec![0u8; FILTER_DESCRIPTOR_LEN];
        f.dma_copy_descriptor_to(&mut bytes);
        bytes.reserve(f.fingerprints.len() * 2);
        for fingerprint in f.fingerprints.iter() {
            bytes.extend_from_slice(&fingerprint.to_le_bytes());
        }
        Some(bytes)
    }

    /// Checks the descriptor against the fingerprints, so that no probe can index out of
    /// them: the segment length a power of two with its mask, the segment count length a
    /// multiple of it, and the fingerprints exactly that long plus two segments.
    pub(crate) fn parse(bytes: &[u8]) -> Option<IdFilter> {
        let (descriptor, fingerprints) = bytes.split_at_checked(FILTER_DESCRIPTOR_LEN)?;
        let u32_at = |i: usize| {
            u64::from(u32::from_le_bytes(
                descriptor[i..i + 4].try_into().unwrap_or([0; 4]),
            ))
        };
        let (length, mask, count_length) = (u32_at(8), u32_at(12), u32_at(16));
        let fits = length.is_power_of_two()
            && mask == length - 1
            && count_length.is_multiple_of(length)
            && (count_length + 2 * length) * 2 == fingerprints.len() as u64
            && count_length + 2 * length <= u64::from(u32::MAX);
        fits.then(|| IdFilter {
            descriptor: descriptor.try_into().unwrap_or([0; FILTER_DESCRIPTOR_LEN]),
            fingerprints: fingerprints
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect(),
        })
    }

    pub(crate) fn may_hold(&self, key: u64) -> bool {
        // a slice of `u16` is aligned as the filter needs
        let fingerprints: &[u8] = bytemuck::cast_slice(&self.fingerprints);
        BinaryFuse16Ref::from_dma(&self.descriptor, fingerprints).contains(&key)
    }
}

/// What the store keeps in memory of a sealed segment: where its sections are, and the
/// filter of its event ids.
pub struct Sealed {
    /// Segment number.
    pub segment: u64,
    /// Its length: the end of its last frame.
    pub len: u64,
    /// Position of its first event.
    pub first_position: u64,
    /// Events in it.
    pub events: u64,
    /// Frames in it.
    pub frames: u32,
    /// Streams with frames in it.
    pub streams: u32,
    names_len: u32,
    filter_len: u32,
    filter: Option<IdFilter>,
    /// The hash of every `FENCE`th stream entry: a lookup in the file reads one block of
    /// entries instead of searching it entry by entry.
    fences: Box<[u64]>,
    /// The checksum of section B (its frame and id tables), as the file records it.
    pub tables_crc: u32,
}

/// How much of a stream table an open keeps for the cache, read oldest segment first
/// while the cache keeps the newest tables.
#[derive(Debug, Clone, Copy)]
pub struct Keep {
    /// The cache's budget in bytes.
    pub budget: usize,
    /// This table's share of it: the budget over the tables still to read, this one
    /// included.
    pub share: usize,
}

impl Keep {
    /// Keep every table whole.
    pub const ALL: Keep = Keep {
        budget: usize::MAX,
        share: usize::MAX,
    };
    /// Keep nothing.
    pub const NOTHING: Keep = Keep {
        budget: 0,
        share: 0,
    };

    /// The bytes kept of a table of `whole` bytes, `core` of them its entries and names:
    /// the whole table when it fits the share. A table that fits the budget is kept whole
    /// or not at all, since the newer tables read after it are kept whole and push out
    /// what came before. Only a table larger than the whole budget is kept as its entries
    /// and names, when those fit the share. 0: nothing.
    fn of(self, whole: u64, core: u64) -> u64 {
        let fits = |n: u64, limit: usize| n <= limit as u64;
        if fits(whole, self.share) {
            whole
        } else if !fits(whole, self.budget) && fits(core, self.share) {
            core
        } else {
            0
        }
    }
}

/// Stream entries per block of [`Sealed::find_stream`]'s reads from the file.
const FENCE: u64 = 64;

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealed")
            .field("segment", &self.segment)
            .field("first_position", &self.first_position)
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}

/// Where a stream table is read from.
pub enum TableSource<'a> {
    /// A copy in memory of the stream entries and their names (what [`Sealed::read`]
    /// returned), possibly followed by every stream's list of frames, with the index file
    /// for those lists when the copy does not hold them.
    Memory(&'a [u8], Option<&'a dyn VfsFile>),
    /// The index file itself.
    File(&'a dyn VfsFile),
}

/// What [`Sealed::read`] returns.
pub struct ReadSealed {
    /// The summary kept in memory.
    pub sealed: Sealed,
    /// The stream runs, in order of their first frame.
    pub runs: Vec<StreamRun>,
    /// The stream table (for [`Sealed::find_stream`] and [`Sealed::stream_frames`]), worth
    /// caching: the stream entries, their names and every stream's list of frames, or the
    /// entries and names alone, or nothing, as what was asked for allowed.
    pub table: Vec<u8>,
}

/// One stream's frames in a sealed segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRun {
    /// The stream id.
    pub stream_id: String,
    /// The previous sealed segment holding frames of the stream.
    pub previous: Option<u64>,
    /// Version of its first event in the segment.
    pub first_version: u64,
    /// Version of its last event in the segment.
    pub last_version: u64,
    first_slot: u32,
    frame_count: u32,
    /// Number (in the segment) of its first frame.
    pub first_frame: u32,
}

/// Everything a sealed index is built from: the frames of one segment in log order with
/// their streams, and the ids of its events in position order.
pub struct SegmentFrames {
    /// Segment number.
    pub segment: u64,
    /// Frames with their stream ids.
    pub frames: Vec<(std::sync::Arc<str>, FrameEntry)>,
    /// Event ids in position order.
    pub ids: Vec<Uuid>,
    /// Each stream of the segment once, with the previous sealed segment holding it.
    pub previous: Vec<(std::sync::Arc<str>, Option<u64>)>,
}

impl Sealed {
    fn streams_at(&self) -> u64 {
        HEADER_LEN
    }
    fn names_at(&self) -> u64 {
        self.streams_at() + STREAM_LEN * u64::from(self.streams)
    }
    fn slots_at(&self) -> u64 {
        self.names_at() + u64::from(self.names_len)
    }
    fn filter_at(&self) -> u64 {
        self.slots_at() + SLOT_LEN * u64::from(self.frames)
    }
    fn frames_at(&self) -> u64 {
        self.filter_at() + u64::from(self.filter_len)
    }
    fn ids_at(&self) -> u64 {
        self.frames_at() + FRAME_LEN * u64::from(self.frames)
    }
    /// The index file's length (a header read checks that this is its file's length).
    fn file_len(&self) -> u64 {
        self.checked_file_len().unwrap_or(u64::MAX)
    }
    /// [`Sealed::file_len`] of a header not yet known to fit its file: `None` when the
    /// counts overflow.
    fn checked_file_len(&self) -> Option<u64> {
        ID_LEN
            .checked_mul(self.events)?
            .checked_add(self.ids_at())?
            .checked_add(4)
    }

    /// Position after its last event.
    pub fn end_position(&self) -> u64 {
        self.first_position + self.events
    }

    /// Whether the segment may hold event `id` (no false negatives). Without a filter
    /// (its group's filter answers for it), it may.
    pub fn may_hold(&self, id: &Uuid) -> bool {
        self.filter.as_ref().is_none_or(|f| f.may_hold(id_key(id)))
    }

    /// The same summary without the id filter, for a segment whose group filter answers
    /// for it.
    pub fn without_filter(&self) -> Sealed {
        Sealed {
            segment: self.segment,
            len: self.len,
            first_position: self.first_position,
            events: self.events,
            frames: self.frames,
            streams: self.streams,
            names_len: self.names_len,
            filter_len: self.filter_len,
            filter: None,
            fences: self.fences.clone(),
            tables_crc: self.tables_crc,
        }
    }

    /// The filter keys of every event id of the segment, from its id table, after checking
    /// the checksum of the frame and id tables (a group filter built from a damaged table
    /// would let a stored id through as new).
    pub fn id_keys(&self, file: &dyn VfsFile, keys: &mut Vec<u64>) -> Result<(), SealedError> {
        let b = self.checked_tables(file)?;
        let ids = &b[(self.ids_at() - self.frames_at()) as usize..];
        keys.extend(
            ids.chunks_exact(ID_LEN as usize)
                .map(|e| id_key(&Uuid::from_slice(&e[..16]).unwrap_or_default())),
        );
        Ok(())
    }

    /// Encodes the sealed index of `seg`, whose segment ends at `len`. `None` when the
    /// segment holds no frame.
    pub fn encode(seg: &SegmentFrames, len: u64) -> Option<Vec<u8>> {
        let first = seg.frames.first()?.1;
        let events: u64 = seg.frames.iter().map(|(_, f)| f.count).sum();
        // streams in order of their first frame, then sorted by hash for lookups
        // maps of the segment's stream ids, hashed with a per-process seed
        type ByStream<'s, V> = HashMap<&'s str, V, foldhash::fast::RandomState>;
        let previous: ByStream<'_, Option<u64>> =
            seg.previous.iter().map(|(s, p)| (&**s, *p)).collect();
        let mut order: Vec<&str> = Vec::new();
        let mut slots_of: ByStream<'_, Vec<u32>> = HashMap::default();
        for (i, (s, _)) in seg.frames.iter().enumerate() {
            slots_of
                .entry(&**s)
                .or_insert_with(|| {
                    order.push(&**s);
                    Vec::new()
                })
                .push(i as u32);
        }
        // each id hashed once (a sort that hashed both sides of every comparison took
        // seconds for a segment of 300,000 streams); ids are distinct, so is each pair
        let mut sorted: Vec<(u64, &str)> = order.iter().map(|s| (stream_hash(s), *s)).collect();
        sorted.sort_unstable();
        let stream_no: ByStream<'_, u32> = sorted
            .iter()
            .enumerate()
            .map(|(i, (_, s))| (*s, i as u32))
            .collect();
        let mut streams = Vec::with_capacity(sorted.len() * STREAM_LEN as usize);
        let mut names = Vec::new();
        let mut slots = Vec::with_capacity(seg.frames.len() * SLOT_LEN as usize);
        for &(hash, s) in &sorted {
            let frame_nos = &slots_of[s];
            let first_frame = &seg.frames[frame_nos[0] as usize].1;
            let last_frame = &seg.frames[frame_nos[frame_nos.len() - 1] as usize].1;
            streams.extend_from_slice(&hash.to_le_bytes());
            let previous = previous.get(s).copied().flatten();
            streams.extend_from_slice(&previous.unwrap_or(NO_SEGMENT).to_le_bytes());
            streams.extend_from_slice(&first_frame.first_version.to_le_bytes());
            let last_version = last_frame.first_version + last_frame.count - 1;
            streams.extend_from_slice(&last_version.to_le_bytes());
            streams.extend_from_slice(&(names.len() as u32).to_le_bytes());
            streams.extend_from_slice(&(s.len() as u32).to_le_bytes());
            streams.extend_from_slice(&((slots.len() / SLOT_LEN as usize) as u32).to_le_bytes());
            streams.extend_from_slice(&(frame_nos.len() as u32).to_le_bytes());
            streams.extend_from_slice(&frame_nos[0].to_le_bytes());
            streams.extend_from_slice(&0u32.to_le_bytes());
            names.extend_from_slice(s.as_bytes());
            for no in frame_nos {
                encode_frame_entry(&mut slots, &seg.frames[*no as usize].1, stream_no[s]);
            }
        }
        let mut keys: Vec<u64> = seg.ids.iter().map(id_key).collect();
        let filter = IdFilter::build(&mut keys).map(|mut bytes| {
            let crc = crc32c::crc32c(&bytes);
            bytes.extend_from_slice(&crc.to_le_bytes());
            bytes
        });
        let filter = filter.unwrap_or_default();
        let mut frames = Vec::with_capacity(seg.frames.len() * FRAME_LEN as usize);
        for (s, f) in &seg.frames {
            encode_frame_entry(&mut frames, f, stream_no[&**s]);
        }
        let mut ids: Vec<(Uuid, u64)> = seg
            .ids
            .iter()
            .enumerate()
            .map(|(i, id)| (*id, first.first_position + i as u64))
            .collect();
        ids.sort_unstable();
        let mut section_a = streams;
        section_a.extend_from_slice(&names);
        section_a.extend_from_slice(&slots);
        let table_crc = crc32c::crc32c(&section_a);
        section_a.extend_from_slice(&filter);
        let mut section_b = frames;
        for (id, position) in &ids {
            section_b.extend_from_slice(id.as_bytes());
            section_b.extend_from_slice(&position.to_le_bytes());
        }
        let mut out = Vec::with_capacity(64 + section_a.len() + section_b.len() + 4);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&seg.segment.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&first.first_position.to_le_bytes());
        out.extend_from_slice(&events.to_le_bytes());
        out.extend_from_slice(&(seg.frames.len() as u32).to_le_bytes());
        out.extend_from_slice(&(sorted.len() as u32).to_le_bytes());
        out.extend_from_slice(&(names.len() as u32).to_le_bytes());
        out.extend_from_slice(&(filter.len() as u32).to_le_bytes());
        out.extend_from_slice(&table_crc.to_le_bytes());
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&section_a);
        out.extend_from_slice(&section_b);
        out.extend_from_slice(&crc32c::crc32c(&section_b).to_le_bytes());
        Some(out)
    }

    /// Reads the header and section A of segment `segment`'s sealed index: the summary
    /// kept in memory and the stream runs (in order of their first frame).
    ///
    /// `segment_len` is the segment file's length. When the header records the segment
    /// as longer, only the header is read (the runs and the table are left empty): the
    /// caller reports the loss the header proves, and a header made to claim a segment
    /// of any length cannot make this read allocate more than the segment could need.
    pub fn read(
        file: &dyn VfsFile,
        segment: u64,
        segment_len: u64,
    ) -> Result<ReadSealed, SealedError> {
        Self::read_with(file, segment, segment_len, true, Keep::ALL)
    }

    /// [`Sealed::read`] without the stream runs (left empty), for a store that knows its
    /// stream table from a base. The stream table is checked in pieces; what of it is
    /// returned to be cached is what `keep` allows (see [`Keep`]).
    pub fn read_summary(
        file: &dyn VfsFile,
        segment: u64,
        segment_len: u64,
        keep: Keep,
    ) -> Result<ReadSealed, SealedError> {
        Self::read_with(file, segment, segment_len, false, keep)
    }

    fn read_with(
        file: &dyn VfsFile,
        segment: u64,
        segment_len: u64,
        with_runs: bool,
        keep: Keep,
    ) -> Result<ReadSealed, SealedError> {
        let file_len = file.len()?;
        let mut h = [0u8; HEADER_LEN as usize];
        match file.read_exact_noting(&mut h, 0) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(damaged(0, "shorter than a header"));
            }
            Err(e) => return Err(e.into()),
        }
        let first_layout = match &h[0..8] {
            m if m == MAGIC => false,
            m if m == MAGIC_V1 => true,
            _ => return Err(damaged(0, "not a sealed segment index (bad magic)")),
        };
        if crc32c::crc32c(&h[..60]).to_le_bytes() != h[60..64] {
            return Err(damaged(60, "header checksum mismatch"));
        }
        let u64_at = |i: usize| u64::from_le_bytes(h[i..i + 8].try_into().unwrap_or([0; 8]));
        let u32_at = |i: usize| u32::from_le_bytes(h[i..i + 4].try_into().unwrap_or([0; 4]));
        let sealed = Sealed {
            segment: u64_at(8),
            len: u64_at(16),
            first_position: u64_at(24),
            events: u64_at(32),
            frames: u32_at(40),
            streams: u32_at(44),
            names_len: u32_at(48),
            filter_len: u32_at(52),
            filter: None,
            fences: Box::default(),
            tables_crc: 0,
        };
        if sealed.segment != segment {
            return Err(damaged(8, format!("names segment {}", sealed.segment)));
        }
        let min_frame = (FRAME_OVERHEAD + MIN_BODY_LEN) as u64;
        let plausible = sealed.frames > 0
            && sealed.streams > 0
            && sealed.streams <= sealed.frames
            && u64::from(sealed.frames) <= sealed.events
            && sealed.first_position > 0
            && sealed.first_position.checked_add(sealed.events).is_some()
            && sealed.len >= SEGMENT_HEADER_LEN as u64 + u64::from(sealed.frames) * min_frame
            && sealed.events <= sealed.len
            && sealed.checked_file_len() == Some(file_len)
            // what it lists of each frame takes at most about twice the frame's bytes (a
            // frame of one event, of a stream of its own with a one-byte name, a one-byte
            // type and a one-byte payload: 64 bytes, against 56 for the stream entry, 40
            // for the frame's, 24 for the id's and one or two for the filter's), so three
            // times the segment's length is never reached, with room for the header and
            // the fixed part of a filter of few ids
            && file_len <= sealed.len.saturating_mul(3).saturating_add(64 << 10);
        if !plausible {
            return Err(damaged(
                0,
                format!("its counts do not fit its length of {file_len} bytes"),
            ));
        }
        if sealed.len > segment_len {
            return Ok(ReadSealed {
                sealed,
                runs: Vec::new(),
                table: Vec::new(),
            });
        }
        let mut crc_b = [0u8; 4];
        file.read_exact_noting(&mut crc_b, sealed.file_len() - 4)?;
        let sealed = Sealed {
            tables_crc: u32::from_le_bytes(crc_b),
            ..sealed
        };
        let filter_from = (sealed.filter_at() - HEADER_LEN) as usize;
        // the filter, with its own checksum in this layout
        let parse_filter = |bytes: &[u8]| -> Result<Option<IdFilter>, SealedError> {
            if sealed.filter_len == 0 {
                return Ok(None);
            }
            let unusable = || damaged(sealed.filter_at(), "an unusable id filter");
            let bytes = if first_layout {
                bytes
            } else {
                let (body, crc) = bytes
                    .split_at_checked(bytes.len().wrapping_sub(4))
                    .ok_or_else(unusable)?;
                if crc32c::crc32c(body).to_le_bytes() != crc {
                    return Err(damaged(
                        sealed.filter_at(),
                        "checksum mismatch in the id filter",
                    ));
                }
                body
            };
            IdFilter::parse(bytes).map(Some).ok_or_else(unusable)
        };
        if !with_runs && !first_layout {
            // the stream table is checked, as at every open, in pieces of whole blocks of
            // entries, so that each block starts in its piece; what `keep` allows of it
            // is kept
            let kept_len = keep.of(
                sealed.filter_at() - HEADER_LEN,
                sealed.slots_at() - HEADER_LEN,
            );
            // the kept part is read straight into the table (zeroed pages from the
            // allocator, not a copy), the rest through a buffer; no read spans both
            let mut table = vec![0u8; kept_len as usize];
            let kept_end = HEADER_LEN + kept_len;
            let mut crc = 0u32;
            let piece = (STREAM_LEN * FENCE * 256).min(sealed.filter_at() - HEADER_LEN);
            let mut buf = Vec::new();
            let mut at = HEADER_LEN;
            let mut fences = Vec::with_capacity(sealed.streams.div_ceil(FENCE as u32) as usize);
            while at < sealed.filter_at() {
                let until = if at < kept_end {
                    kept_end
                } else {
                    sealed.filter_at()
                };
                let n = piece.min(until - at) as usize;
                let bytes = if at < kept_end {
                    let from = (at - HEADER_LEN) as usize;
                    let into = &mut table[from..from + n];
                    file.read_exact_noting(into, at)?;
                    &*into
                } else {
                    buf.resize(n, 0);
                    file.read_exact_noting(&mut buf, at)?;
                    &buf[..]
                };
                crc = crc32c::crc32c_append(crc, bytes);
                let entries = &bytes[..n.min(sealed.names_at().saturating_sub(at) as usize)];
                fences.extend(
                    entries
                        .chunks((STREAM_LEN * FENCE) as usize)
                        .filter_map(|b| Some(u64::from_le_bytes(b.get(..8)?.try_into().ok()?))),
                );
                at += n as u64;
            }
            if crc.to_le_bytes() != h[56..60] {
                return Err(damaged(HEADER_LEN, "checksum mismatch in the stream table"));
            }
            let mut f = vec![0u8; sealed.filter_len as usize];
            file.read_exact_noting(&mut f, sealed.filter_at())?;
            let filter = parse_filter(&f)?;
            return Ok(ReadSealed {
                sealed: Sealed {
                    filter,
                    fences: fences.into(),
                    ..sealed
                },
                runs: Vec::new(),
                table,
            });
        }
        let a_len = sealed.frames_at() - HEADER_LEN;
        let mut a = vec![0u8; a_len as usize];
        file.read_exact_noting(&mut a, HEADER_LEN)?;
        let covered = if first_layout {
            &a[..]
        } else {
            &a[..filter_from]
        };
        if crc32c::crc32c(covered).to_le_bytes() != h[56..60] {
            return Err(damaged(HEADER_LEN, "checksum mismatch in the stream table"));
        }
        let names_from = (sealed.names_at() - HEADER_LEN) as usize;
        let names = &a[names_from..(sealed.slots_at() - HEADER_LEN) as usize];
        let n = if with_runs {
            sealed.streams as usize
        } else {
            0
        };
        let mut runs = Vec::with_capacity(n);
        for i in 0..n {
            let at = HEADER_LEN + i as u64 * STREAM_LEN;
            let run = parse_run(
                &a[i * STREAM_LEN as usize..(i + 1) * STREAM_LEN as usize],
                names,
                &sealed,
            )
            .ok_or_else(|| damaged(at, "a stream entry outside the file's bounds"))?;
            runs.push(run);
        }
        runs.sort_by_key(|r| r.first_frame);
        let filter = parse_filter(&a[filter_from..])?;
        let fences = a[..names_from]
            .chunks((STREAM_LEN * FENCE) as usize)
            .filter_map(|b| Some(u64::from_le_bytes(b.get(..8)?.try_into().ok()?)))
            .collect();
        // the stream entries, their names and every stream's list of frames: the caller
        // fits them to its cache with `fit_table`
        a.truncate(filter_from);
        a.shrink_to_fit();
        Ok(ReadSealed {
            sealed: Sealed {
                filter,
                fences,
                ..sealed
            },
            runs,
            table: a,
        })
    }

    /// Fits `table` (entries, names and frame lists, or entries and names) to a cache of
    /// `budget` bytes by the rule of [`Keep`]: whole when it fits, else its entries and
    /// names when those fit, else nothing.
    pub fn fit_table(&self, table: &mut Vec<u8>, budget: usize) {
        let core = self.slots_at() - HEADER_LEN;
        let whole = (table.len() as u64).max(core);
        let keep = Keep {
            budget,
            share: budget,
        };
        let kept = usize::try_from(keep.of(whole, core)).unwrap_or(0);
        if kept < table.len() {
            table.truncate(kept);
            table.shrink_to_fit();
        }
    }

    /// Whether a copy of `len` bytes of the stream table holds it whole: entries, names
    /// and every stream's list of frames.
    pub fn table_is_whole(&self, len: usize) -> bool {
        self.streams_at() + len as u64 == self.filter_at()
    }

    /// `len` bytes of the stream table at file offset `at`, from `src`.
    fn table_bytes<'t>(
        &self,
        src: &TableSource<'t>,
        at: u64,
        len: usize,
    ) -> Result<std::borrow::Cow<'t, [u8]>, SealedError> {
        match src {
            TableSource::Memory(table, file) => {
                // entries and names, or those and every stream's frame list
                let len_ok = [self.slots_at(), self.filter_at()]
                    .contains(&(self.streams_at() + table.len() as u64));
                if !len_ok {
                    return Err(damaged(
                        self.streams_at(),
                        "a stream table of the wrong length",
                    ));
                }
                let from = (at - self.streams_at()) as usize;
                match (table.get(from..from + len), file) {
                    (Some(b), _) => Ok(std::borrow::Cow::Borrowed(b)),
                    // a stream's frames, which the copy does not hold
                    (None, Some(file)) if at >= self.slots_at() => {
                        self.table_bytes(&TableSource::File(*file), at, len)
                    }
                    (None, _) => Err(damaged(at, "an entry outside the stream table")),
                }
            }
            TableSource::File(file) => {
                if at + len as u64 > self.filter_at() {
                    return Err(damaged(at, "an entry outside the stream table"));
                }
                let mut b = vec![0u8; len];
                file.read_exact_noting(&mut b, at)?;
                Ok(std::borrow::Cow::Owned(b))
            }
        }
    }

    /// [`Sealed::table_bytes`], read into `scratch` when they come from the file and fit
    /// it, so that a search of the file allocates nothing.
    fn table_bytes_in<'a>(
        &self,
        src: &TableSource<'a>,
        at: u64,
        len: usize,
        scratch: &'a mut [u8],
    ) -> Result<std::borrow::Cow<'a, [u8]>, SealedError> {
        match (src, scratch.get_mut(..len)) {
            (TableSource::File(file), Some(b)) if at + len as u64 <= self.filter_at() => {
                file.read_exact_noting(b, at)?;
                Ok(std::borrow::Cow::Borrowed(b))
            }
            _ => self.table_bytes(src, at, len),
        }
    }

    /// The run of `stream_id` in this segment, found by a search in the stream table (a
    /// cached copy, or the file: a few small reads). The run's `stream_id` is left empty:
    /// the caller knows it.
    pub fn find_stream(
        &self,
        src: &TableSource<'_>,
        stream_id: &str,
    ) -> Result<Option<StreamRun>, SealedError> {
        self.find_stream_hashed(src, stream_id, stream_hash(stream_id))
    }

    /// [`Sealed::find_stream`] with the id's [`stream_hash`] given, for a caller that
    /// looks the stream up in several segments.
    pub fn find_stream_hashed(
        &self,
        src: &TableSource<'_>,
        stream_id: &str,
        hash: u64,
    ) -> Result<Option<StreamRun>, SealedError> {
        let streams = u64::from(self.streams);
        let fenced = self.fences.len() as u64 == streams.div_ceil(FENCE);
        if let TableSource::File(_) = src
            && fenced
        {
            return self.find_stream_by_blocks(src, stream_id, hash);
        }
        let entries = self.entries_in_memory(src)?;
        let entry = |i: u64| self.entry(src, entries, i);
        let hash_of = |b: &[u8]| u64::from_le_bytes(b[0..8].try_into().unwrap_or([0; 8]));
        // hashes spread evenly, so a search starts where `hash` would lie were they exactly
        // even, and widens from there: a couple of neighbouring entries rather than the
        // scattered ones of a bisection (each a likely cache miss)
        let (mut lo, mut hi, mut low, mut high) = (0u64, streams, 0u64, u64::MAX);
        if fenced {
            // the first entry of `hash` or above lies between the last fence below it and
            // the first fence at or above it: the search starts in one block
            let fences = &self.fences;
            let guess = interpolate(
                hash,
                fences.first().copied(),
                fences.last().copied(),
                fences.len() as u64,
            );
            let above = search_near(fences.len() as u64, guess, |i| {
                Ok::<_, SealedError>(fences.get(i as usize).is_some_and(|&f| f < hash))
            })?;
            lo = above.saturating_sub(1) * FENCE;
            hi = (above * FENCE).min(streams);
            low = above
                .checked_sub(1)
                .and_then(|b| fences.get(b as usize))
                .map_or(0, |&f| f);
            high = fences.get(above as usize).map_or(u64::MAX, |&f| f);
        }
        let guess = interpolate(hash, Some(low), Some(high), hi - lo);
        let i = lo
            + search_near(hi - lo, guess, |k| {
                Ok::<_, SealedError>(hash_of(&entry(lo + k)?) < hash)
            })?;
        if i >= streams {
            return Ok(None);
        }
        let b = entry(i)?;
        if hash_of(&b) != hash {
            return Ok(None);
        }
        let next_differs = i + 1 >= streams || hash_of(&entry(i + 1)?) != hash;
        if next_differs {
            return self.run_if_named(src, &b, i, stream_id);
        }
        self.find_in_tie(src, i, hash, stream_id)
    }

    /// The run of `stream_id` among the entries that share its hash, the first of them
    /// entry `first`. Entries of one hash are sorted by id, so the tie is searched by
    /// bisection: the hash is stable and not secret, and ids made to share one (a CRC is
    /// linear: equal-length ids with equal CRCs are easy to make by the thousand) would
    /// otherwise make every lookup of them read the whole tie.
    fn find_in_tie(
        &self,
        src: &TableSource<'_>,
        first: u64,
        hash: u64,
        stream_id: &str,
    ) -> Result<Option<StreamRun>, SealedError> {
        let entries = self.entries_in_memory(src)?;
        let entry = |i: u64| self.entry(src, entries, i);
        let hash_of = |b: &[u8]| u64::from_le_bytes(b[0..8].try_into().unwrap_or([0; 8]));
        let rest = u64::from(self.streams).saturating_sub(first);
        let len = search_near(rest, 1, |k| {
            Ok::<_, SealedError>(hash_of(&entry(first + k)?) <= hash)
        })?;
        let (mut lo, mut hi) = (first, first + len);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let b = entry(mid)?;
            match self.name_order(src, &b, mid, stream_id)? {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return self.parsed_run(&b, mid).map(Some),
            }
        }
        Ok(None)
    }

    /// The stream entries of a copy in memory, its length checked once (`None` for the
    /// file, read entry by entry).
    fn entries_in_memory<'t>(
        &self,
        src: &TableSource<'t>,
    ) -> Result<Option<&'t [u8]>, SealedError> {
        match src {
            TableSource::Memory(..) => {
                let len = (self.names_at() - self.streams_at()) as usize;
                self.table_bytes(src, self.streams_at(), len)
                    .map(|b| match b {
                        std::borrow::Cow::Borrowed(b) => Some(b),
                        std::borrow::Cow::Owned(_) => None,
                    })
            }
            TableSource::File(_) => Ok(None),
        }
    }

    /// Stream entry `i`: from `entries` when the copy in memory holds them, else read.
    fn entry<'t>(
        &self,
        src: &TableSource<'t>,
        entries: Option<&'t [u8]>,
        i: u64,
    ) -> Result<std::borrow::Cow<'t, [u8]>, SealedError> {
        let at = self.streams_at() + i * STREAM_LEN;
        match entries {
            Some(entries) => usize::try_from(i * STREAM_LEN)
                .ok()
                .and_then(|from| entries.get(from..from + STREAM_LEN as usize))
                .map(std::borrow::Cow::Borrowed)
                .ok_or_else(|| damaged(at, "an entry outside the stream table")),
            None => self.table_bytes(src, at, STREAM_LEN as usize),
        }
    }

    /// The run of stream entry `i` (its bytes `b`) if the entry names `stream_id`.
    fn run_if_named(
        &self,
        src: &TableSource<'_>,
        b: &[u8],
        i: u64,
        stream_id: &str,
    ) -> Result<Option<StreamRun>, SealedError> {
        let run = self.parsed_run(b, i)?;
        let named = self.name_order(src, b, i, stream_id)?.is_eq();
        Ok(named.then_some(run))
    }

    /// The run of stream entry `i` (its bytes `b`), its id left empty.
    fn parsed_run(&self, b: &[u8], i: u64) -> Result<StreamRun, SealedError> {
        let at = self.streams_at() + i * STREAM_LEN;
        parse_run(b, &[], self)
            .ok_or_else(|| damaged(at, "a stream entry outside the file's bounds"))
    }

    /// How the name of stream entry `i` (its bytes `b`) compares with `stream_id`, byte by
    /// byte (the order of the entries that share a hash).
    fn name_order(
        &self,
        src: &TableSource<'_>,
        b: &[u8],
        i: u64,
        stream_id: &str,
    ) -> Result<std::cmp::Ordering, SealedError> {
        let at = self.streams_at() + i * STREAM_LEN;
        let name_at = u64::from(u32::from_le_bytes(b[32..36].try_into().unwrap_or([0; 4])));
        let name_len = u32::from_le_bytes(b[36..40].try_into().unwrap_or([0; 4]));
        if name_at + u64::from(name_len) > u64::from(self.names_len) {
            return Err(damaged(at, "a stream entry outside the file's bounds"));
        }
        let mut scratch = [0u8; 256];
        let at = self.names_at() + name_at;
        let name = self.table_bytes_in(src, at, name_len as usize, &mut scratch)?;
        Ok((*name).cmp(stream_id.as_bytes()))
    }

    /// [`Sealed::find_stream`] in the file: the fences name the block where entries of
    /// `hash` start, read whole (one read, and one for each block they run into).
    fn find_stream_by_blocks(
        &self,
        src: &TableSource<'_>,
        stream_id: &str,
        hash: u64,
    ) -> Result<Option<StreamRun>, SealedError> {
        let streams = u64::from(self.streams);
        let mut block = (self.fences.partition_point(|&f| f < hash) as u64).saturating_sub(1);
        let hash_of = |b: &[u8]| u64::from_le_bytes(b[0..8].try_into().unwrap_or([0; 8]));
        while block * FENCE < streams {
            let first = block * FENCE;
            let n = FENCE.min(streams - first);
            let mut scratch = [0u8; (FENCE * STREAM_LEN) as usize];
            let (at, len) = (
                self.streams_at() + first * STREAM_LEN,
                (n * STREAM_LEN) as usize,
            );
            let bytes = self.table_bytes_in(src, at, len, &mut scratch)?;
            let mut entries = bytes
                .chunks_exact(STREAM_LEN as usize)
                .enumerate()
                .peekable();
            while let Some((k, b)) = entries.next() {
                let entry_hash = hash_of(b);
                if entry_hash < hash {
                    continue;
                }
                if entry_hash > hash {
                    return Ok(None);
                }
                let i = first + k as u64;
                return match entries.peek() {
                    Some((_, next)) if hash_of(next) != hash => {
                        self.run_if_named(src, b, i, stream_id)
                    }
                    None if i + 1 >= streams => self.run_if_named(src, b, i, stream_id),
                    _ => self.find_in_tie(src, i, hash, stream_id),
                };
            }
            block += 1;
        }
        Ok(None)
    }

    /// Frame `no` of the segment, with the index (in the streams) of its stream.
    fn frame(&self, file: &dyn VfsFile, no: u32) -> Result<(FrameEntry, u32), SealedError> {
        let at = self.frames_at() + u64::from(no) * FRAME_LEN;
        let mut b = [0u8; FRAME_LEN as usize];
        file.read_exact_noting(&mut b, at)?;
        self.parse_frame(&b)
            .ok_or_else(|| damaged(at, "a frame entry outside the segment's bounds"))
    }

    fn parse_frame(&self, b: &[u8]) -> Option<(FrameEntry, u32)> {
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or([0; 8]));
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap_or([0; 4]));
        let entry = FrameEntry {
            first_position: u64_at(8),
            first_version: u64_at(16),
            count: u64::from(u32_at(24)),
            at: FrameRef {
                segment: self.segment,
                offset: u64_at(0),
                len: u32_at(28),
            },
        };
        let stream = u32_at(32);
        let min_frame = (FRAME_OVERHEAD + MIN_BODY_LEN) as u32;
        let ok = entry.count > 0
            && entry.first_version > 0
            && entry.first_version.checked_add(entry.count).is_some()
            && entry.first_position >= self.first_position
            && entry
                .first_position
                .checked_add(entry.count)
                .is_some_and(|end| end <= self.end_position())
            && entry.at.len >= min_frame
            && entry.at.len as usize <= crate::format::MAX_FRAME_LEN + FRAME_OVERHEAD
            && entry.at.offset >= SEGMENT_HEADER_LEN as u64
            && entry
                .at
                .offset
                .checked_add(u64::from(entry.at.len))
                .is_some_and(|end| end <= self.len)
            && stream < self.streams;
        ok.then_some((entry, stream))
    }

    /// The frames of `run`, from the first one holding `from_version` on.
    pub fn stream_frames(
        &self,
        src: &TableSource<'_>,
        run: &StreamRun,
        from_version: u64,
    ) -> Result<Vec<FrameEntry>, SealedError> {
        let mut frames = Vec::with_capacity(run.frame_count as usize);
        self.stream_frames_into(src, run, from_version, usize::MAX, &mut frames)?;
        Ok(frames)
    }

    /// At most `max` of [`Sealed::stream_frames`], added to `frames`; whether the run
    /// holds more after them. The first is found by bisection of the run's list, so that
    /// a read from a version late in a long run (a snapshot's, an early-ending read)
    /// reads a few entries, not the whole list: an entry out of order there is found by
    /// the frames' own checks, which the reader makes on every frame.
    pub fn stream_frames_into(
        &self,
        src: &TableSource<'_>,
        run: &StreamRun,
        from_version: u64,
        max: usize,
        frames: &mut impl Extend<FrameEntry>,
    ) -> Result<bool, SealedError> {
        let list_at = self.slots_at() + u64::from(run.first_slot) * SLOT_LEN;
        let count = u64::from(run.frame_count);
        let entry = |i: u64| -> Result<FrameEntry, SealedError> {
            let at = list_at + i * SLOT_LEN;
            let b = self.table_bytes(src, at, SLOT_LEN as usize)?;
            self.parse_frame(&b).map(|(f, _)| f).ok_or_else(|| {
                damaged(
                    at,
                    "a frame entry of a stream outside the segment's bounds or out of order",
                )
            })
        };
        // the first frame that ends past `from_version`
        let first = if from_version <= run.first_version {
            0
        } else {
            let (mut lo, mut hi) = (0, count);
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                let f = entry(mid)?;
                if f.first_version.saturating_add(f.count) <= from_version {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
            lo
        };
        let take = (count - first).min(u64::try_from(max).unwrap_or(u64::MAX));
        if take == 0 {
            return Ok(false);
        }
        // where the bisection ended must be where the version read lies: the frame found
        // holds it (or is the run's first), and continues the one before it. A damaged
        // entry that misled the bisection is damage here, in this file, not a gap in the
        // log the reader would report against the segment
        let found = entry(first)?;
        let holds = if from_version <= run.first_version {
            first == 0 && found.first_version == run.first_version
        } else {
            found.first_version <= from_version
        };
        let continues = match first.checked_sub(1) {
            None => true,
            Some(before) => {
                let before = entry(before)?;
                before.first_version.checked_add(before.count) == Some(found.first_version)
            }
        };
        if !holds || !continues {
            return Err(damaged(
                list_at + first * SLOT_LEN,
                "a frame entry of a stream outside the segment's bounds or out of order",
            ));
        }
        let at = list_at + first * SLOT_LEN;
        let len = usize::try_from(take * SLOT_LEN)
            .map_err(|_| damaged(at, "a stream's list of frames longer than memory"))?;
        let bytes = self.table_bytes(src, at, len)?;
        let mut previous: Option<FrameEntry> = None;
        for (i, b) in bytes.chunks_exact(SLOT_LEN as usize).enumerate() {
            let in_order = |f: &FrameEntry| {
                previous.is_none_or(|p| {
                    f.first_position >= p.first_position + p.count
                        && f.first_version == p.first_version + p.count
                })
            };
            let frame = self
                .parse_frame(b)
                .map(|(f, _)| f)
                .filter(in_order)
                .ok_or_else(|| {
                    damaged(
                        at + i as u64 * SLOT_LEN,
                        "a frame entry of a stream outside the segment's bounds or out of order",
                    )
                })?;
            previous = Some(frame);
            if frame.first_version + frame.count > from_version {
                frames.extend([frame]);
            }
        }
        Ok(first + take < count)
    }

    /// Reads the first byte of the list of `run`'s frames when `src` holds it in memory,
    /// so that [`Sealed::stream_frames`] finds it in the processor's cache.
    pub fn touch_frames(&self, src: &TableSource<'_>, run: &StreamRun) {
        if let TableSource::Memory(table, _) = src {
            let at = self.slots_at() + u64::from(run.first_slot) * SLOT_LEN;
            let from = at.saturating_sub(self.streams_at());
            if let Some(b) = usize::try_from(from).ok().and_then(|i| table.get(i)) {
                std::hint::black_box(*b);
            }
        }
    }

    /// Up to `max` frames from the one holding `position` on.
    pub fn frames_from(
        &self,
        file: &dyn VfsFile,
        position: u64,
        max: usize,
    ) -> Result<Vec<FrameEntry>, SealedError> {
        // the frame holding `position`: the last one starting at or before it
        let (mut lo, mut hi) = (0u32, self.frames);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.frame(file, mid)?.0.first_position <= position {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let first = lo.saturating_sub(1);
        let n = (self.frames - first).min(max as u32);
        let at = self.frames_at() + u64::from(first) * FRAME_LEN;
        let mut bytes = vec![0u8; n as usize * FRAME_LEN as usize];
        file.read_exact_noting(&mut bytes, at)?;
        bytes
            .chunks_exact(FRAME_LEN as usize)
            .enumerate()
            .map(|(i, b)| {
                self.parse_frame(b).map(|(f, _)| f).ok_or_else(|| {
                    damaged(
                        at + i as u64 * FRAME_LEN,
                        "a frame entry outside the segment's bounds",
                    )
                })
            })
            .collect()
    }

    /// Where event `id` is in this segment: its position, its frame and the frame's
    /// stream id.
    pub fn find_id(
        &self,
        file: &dyn VfsFile,
        id: &Uuid,
    ) -> Result<Option<(u64, FrameEntry, String)>, SealedError> {
        if !self.may_hold(id) {
            return Ok(None);
        }
        let entry = |i: u64| -> Result<(Uuid, u64), SealedError> {
            let mut b = [0u8; ID_LEN as usize];
            file.read_exact_noting(&mut b, self.ids_at() + i * ID_LEN)?;
            let id = Uuid::from_slice(&b[..16]).unwrap_or_default();
            Ok((
                id,
                u64::from_le_bytes(b[16..24].try_into().unwrap_or([0; 8])),
            ))
        };
        let (mut lo, mut hi) = (0u64, self.events);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if entry(mid)?.0 < *id {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        if lo == self.events {
            return Ok(None);
        }
        let (found, position) = entry(lo)?;
        if found != *id {
            return Ok(None);
        }
        let at = self.ids_at() + lo * ID_LEN;
        if position < self.first_position || position >= self.end_position() {
            return Err(damaged(at, "an event id at a position outside the segment"));
        }
        let frame = self
            .frames_from(file, position, 1)?
            .into_iter()
            .next()
            .filter(|f| f.first_position <= position && position < f.first_position + f.count)
            .ok_or_else(|| damaged(at, "no frame holds the position of an event id"))?;
        let frame_no = self.frame_number(file, frame.first_position)?;
        let (_, stream) = self.frame(file, frame_no)?;
        let stream_at = self.streams_at() + u64::from(stream) * STREAM_LEN;
        let mut b = [0u8; STREAM_LEN as usize];
        file.read_exact_noting(&mut b, stream_at)?;
        let name_at = u64::from(u32::from_le_bytes(b[32..36].try_into().unwrap_or([0; 4])));
        let name_len = u32::from_le_bytes(b[36..40].try_into().unwrap_or([0; 4]));
        if name_at + u64::from(name_len) > u64::from(self.names_len) {
            return Err(damaged(stream_at, "a stream name outside the names"));
        }
        let mut name = vec![0u8; name_len as usize];
        file.read_exact_noting(&mut name, self.names_at() + name_at)?;
        let name = String::from_utf8(name)
            .map_err(|_| damaged(stream_at, "a stream name that is not UTF-8"))?;
        Ok(Some((position, frame, name)))
    }

    /// The number of the frame starting at `first_position`.
    fn frame_number(&self, file: &dyn VfsFile, first_position: u64) -> Result<u32, SealedError> {
        let (mut lo, mut hi) = (0u32, self.frames);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.frame(file, mid)?.0.first_position < first_position {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo.min(self.frames.saturating_sub(1)))
    }

    /// Reads section B whole and checks its checksum (for verification).
    pub fn check_all(&self, file: &dyn VfsFile) -> Result<Vec<FrameEntry>, SealedError> {
        self.checked_tables(file)?;
        self.frames_from(file, self.first_position, self.frames as usize)
    }

    /// Every event id of the segment with its position, in the id table's order, read
    /// whole: for `verify`, which compares them all with the segment.
    pub fn read_ids(&self, file: &dyn VfsFile) -> Result<Vec<(Uuid, u64)>, SealedError> {
        let len = usize::try_from(self.events * ID_LEN)
            .map_err(|_| damaged(self.ids_at(), "an id table too large to read"))?;
        let mut b = vec![0u8; len];
        file.read_exact_noting(&mut b, self.ids_at())?;
        Ok(b.chunks_exact(ID_LEN as usize)
            .map(|e| {
                let id = Uuid::from_slice(&e[..16]).unwrap_or_default();
                (
                    id,
                    u64::from_le_bytes(e[16..24].try_into().unwrap_or([0; 8])),
                )
            })
            .collect())
    }

    /// Section B (the frame and id tables), read whole, after checking its checksum.
    fn checked_tables(&self, file: &dyn VfsFile) -> Result<Vec<u8>, SealedError> {
        let at = self.frames_at();
        let mut b = vec![0u8; (self.file_len() - 4 - at) as usize];
        file.read_exact_noting(&mut b, at)?;
        let mut crc = [0u8; 4];
        file.read_exact_noting(&mut crc, self.file_len() - 4)?;
        if crc32c::crc32c(&b).to_le_bytes() != crc {
            return Err(damaged(at, "checksum mismatch in the frame and id tables"));
        }
        Ok(b)
    }
}

/// Parses a stream entry; `names` (section A's names) fills in the id when given.
fn parse_run(b: &[u8], names: &[u8], sealed: &Sealed) -> Option<StreamRun> {
    let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or([0; 8]));
    let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap_or([0; 4]));
    let previous = match u64_at(8) {
        NO_SEGMENT => None,
        s if s < sealed.segment => Some(s),
        _ => return None,
    };
    let (name_at, name_len) = (u32_at(32) as usize, u32_at(36) as usize);
    let stream_id = if names.is_empty() {
        String::new()
    } else {
        std::str::from_utf8(names.get(name_at..name_at.checked_add(name_len)?)?)
            .ok()?
            .to_owned()
    };
    let run = StreamRun {
        stream_id,
        previous,
        first_version: u64_at(16),
        last_version: u64_at(24),
        first_slot: u32_at(40),
        frame_count: u32_at(44),
        first_frame: u32_at(48),
    };
    let ok = run.first_version > 0
        && run.last_version >= run.first_version
        && run.last_version - run.first_version < sealed.events
        && run.frame_count > 0
        && u64::from(run.first_slot) + u64::from(run.frame_count) <= u64::from(sealed.frames)
        && run.first_frame < sealed.frames;
    ok.then_some(run)
}

/// Appends a 40-byte frame entry.
fn encode_frame_entry(out: &mut Vec<u8>, f: &FrameEntry, stream: u32) {
    out.extend_from_slice(&f.at.offset.to_le_bytes());
    out.extend_from_slice(&f.first_position.to_le_bytes());
    out.extend_from_slice(&f.first_version.to_le_bytes());
    out.extend_from_slice(&(f.count as u32).to_le_bytes());
    out.extend_from_slice(&f.at.len.to_le_bytes());
    out.extend_from_slice(&stream.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
}

/// Reads that say where they failed: an error of a sealed index's read names the offset
/// (the caller names the file).
trait ReadNoting {
    fn read_exact_noting(&self, buf: &mut [u8], at: u64) -> io::Result<()>;
}

impl<F: VfsFile + ?Sized> ReadNoting for F {
    fn read_exact_noting(&self, buf: &mut [u8], at: u64) -> io::Result<()> {
        let len = buf.len();
        self.read_exact_at(buf, at).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                e
            } else {
                io::Error::new(e.kind(), format!("reading {len} bytes at offset {at}: {e}"))
            }
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::error::OpenError;
    use crate::layout::sealed_index_path;
    use crate::vfs::Vfs;
    use crate::{Durability, FileStore, FileStoreOptions};
    use es_core::{EventStore, ExpectedVersion, NewEvent};
    use std::path::Path;
    use std::sync::Arc;

    proptest::proptest! {
        /// The search from a guess finds what a bisection finds, whatever the guess and
        /// however the values cluster.
        #[test]
        fn a_search_from_a_guess_finds_the_partition_point(
            mut values in proptest::collection::vec(proptest::prelude::any::<u64>(), 0..300),
            target in proptest::prelude::any::<u64>(),
            guess in 0u64..400,
            clustered in proptest::prelude::any::<bool>(),
        ) {
            if clustered {
                // a crafted table: most hashes in a narrow band
                for v in values.iter_mut().skip(1) {
                    *v %= 1000;
                }
            }
            values.sort_unstable();
            let len = values.len() as u64;
            let expected = values.partition_point(|&v| v < target) as u64;
            let found = search_near(len, guess, |i| {
                Ok::<_, ()>(values[i as usize] < target)
            });
            proptest::prop_assert_eq!(found, Ok(expected));
            let guessed = interpolate(target, values.first().copied(), values.last().copied(), len);
            proptest::prop_assert!(len == 0 || guessed < len);
            let found = search_near(len, guessed, |i| Ok::<_, ()>(values[i as usize] < target));
            proptest::prop_assert_eq!(found, Ok(expected));
        }
    }

    /// A store of several sealed segments: streams of one event per append, interleaved.
    fn store_of_sealed_segments(dir: &Path) {
        let options = FileStoreOptions {
            segment_size: 4096,
            durability: Durability::None,
            ..Default::default()
        };
        let store = FileStore::open_with(dir, options).unwrap();
        for i in 0..200u64 {
            let stream = format!("cart-{}", i % 7);
            let payload = format!(r#"{{"n":{i}}}"#).into_bytes();
            store
                .append(
                    &stream,
                    ExpectedVersion::Any,
                    vec![NewEvent::new("Added", 1, payload)],
                )
                .unwrap();
        }
        drop(store);
        assert!(sealed_index_path(dir, 1).exists(), "segments were sealed");
    }

    /// Rewrites sealed index `no` with `forge` applied to its bytes, then makes its
    /// checksums agree again: damage that only a comparison with the segment finds.
    fn forge(dir: &Path, no: u64, forge: impl FnOnce(&Sealed, &mut Vec<u8>)) {
        let path = sealed_index_path(dir, no);
        let file = crate::vfs::StdFs
            .open(&path, crate::vfs::OpenMode::Read)
            .unwrap();
        let sealed = Sealed::read(&*file, no, u64::MAX).unwrap().sealed;
        drop(file);
        let mut bytes = std::fs::read(&path).unwrap();
        forge(&sealed, &mut bytes);
        let (table_from, table_to) = (HEADER_LEN as usize, sealed.filter_at() as usize);
        let table_crc = crc32c::crc32c(&bytes[table_from..table_to]);
        bytes[56..60].copy_from_slice(&table_crc.to_le_bytes());
        let header_crc = crc32c::crc32c(&bytes[..60]);
        bytes[60..64].copy_from_slice(&header_crc.to_le_bytes());
        let end = bytes.len() - 4;
        let tables_crc = crc32c::crc32c(&bytes[sealed.frames_at() as usize..end]);
        bytes[end..].copy_from_slice(&tables_crc.to_le_bytes());
        std::fs::write(&path, bytes).unwrap();
        // the open trusts an intact index: the forgery is not caught there
        let file = crate::vfs::StdFs
            .open(&path, crate::vfs::OpenMode::Read)
            .unwrap();
        assert!(
            Sealed::read(&*file, no, u64::MAX).is_ok(),
            "the forgery passes the checksums"
        );
    }

    fn verify_refuses(dir: &Path, no: u64, why: &str) {
        match crate::tools::verify(dir, &|_| {}) {
            Err(OpenError::Corrupted {
                file,
                segment,
                reason,
                ..
            }) => {
                assert_eq!(file, sealed_index_path(dir, no));
                assert_eq!(segment, no);
                assert!(reason.contains(why), "{reason}");
            }
            other => panic!("verify passes a forged index: {other:?}"),
        }
    }

    /// `count` distinct ids of one length whose [`stream_hash`] is the same. A CRC is
    /// linear: flipping the case of a set of letters changes it by the XOR of what each
    /// flip alone changes, so the sets whose changes cancel (a subspace of at least 2^16
    /// sets among 48 letters and 32 bits) all keep it.
    pub(crate) fn ids_of_one_hash(count: usize) -> Vec<String> {
        let base: Vec<u8> = b"cart-"
            .iter()
            .copied()
            .chain((0..48u8).map(|i| b'a' + i % 26))
            .collect();
        let base_crc = crc32c::crc32c(&base);
        let mut basis: [Option<(u32, u64)>; 32] = [None; 32];
        let mut kernel = Vec::new();
        for j in 0..48 {
            let mut flipped = base.clone();
            flipped[5 + j] ^= 0x20;
            let (mut change, mut set) = (crc32c::crc32c(&flipped) ^ base_crc, 1u64 << j);
            for bit in (0..32).rev() {
                if change >> bit & 1 == 0 {
                    continue;
                }
                match basis[bit] {
                    Some((c, s)) => (change, set) = (change ^ c, set ^ s),
                    None => {
                        basis[bit] = Some((change, set));
                        break;
                    }
                }
            }
            if change == 0 {
                kernel.push(set);
            }
        }
        assert!(count <= 1 << kernel.len().min(20));
        (0..count)
            .map(|n| {
                let set = (0..kernel.len())
                    .filter(|k| n >> k & 1 == 1)
                    .fold(0u64, |acc, k| acc ^ kernel[k]);
                let mut id = base.clone();
                for j in 0..48 {
                    if set >> j & 1 == 1 {
                        id[5 + j] ^= 0x20;
                    }
                }
                String::from_utf8(id).unwrap()
            })
            .collect()
    }

    /// Reads of a sealed index, counted.
    #[derive(Debug)]
    struct CountedReads {
        file: Arc<dyn VfsFile>,
        reads: std::sync::atomic::AtomicUsize,
        bytes: std::sync::atomic::AtomicUsize,
    }

    impl VfsFile for CountedReads {
        fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
            self.reads
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.bytes
                .fetch_add(buf.len(), std::sync::atomic::Ordering::Relaxed);
            self.file.read_at(buf, offset)
        }
        fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
            self.file.write_all_at(buf, offset)
        }
        fn sync_data(&self) -> io::Result<()> {
            self.file.sync_data()
        }
        fn len(&self) -> io::Result<u64> {
            self.file.len()
        }
        fn set_len(&self, len: u64) -> io::Result<()> {
            self.file.set_len(len)
        }
        fn try_lock(&self) -> io::Result<bool> {
            self.file.try_lock()
        }
    }

    /// Thousands of streams whose ids share one hash (crafted ids: the hash is stable and
    /// public) are found in a sealed segment by a bisection of their tie, not one by one:
    /// a few dozen reads of the index file for any of them, where a walk through the tie
    /// read a block per 64 entries and a name per entry passed.
    #[test]
    fn streams_whose_ids_share_a_hash_are_found_without_walking_the_tie() {
        let ids = ids_of_one_hash(3001);
        let hash = stream_hash(&ids[0]);
        assert!(ids.iter().all(|id| stream_hash(id) == hash));
        let (absent, ids) = ids.split_last().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let options = |stream_table_cache| FileStoreOptions {
            segment_size: 1 << 20,
            durability: Durability::None,
            stream_table_cache,
            ..Default::default()
        };
        let store = FileStore::open_with(dir.path(), options(64 << 20)).unwrap();
        let event = |n: usize| NewEvent::new("Added", 1, format!(r#"{{"n":{n}}}"#).into_bytes());
        for (n, id) in ids.iter().enumerate() {
            store
                .append(id, ExpectedVersion::NoStream, vec![event(n)])
                .unwrap();
            store
                .append("cart-other", ExpectedVersion::Any, vec![event(n)])
                .unwrap();
        }
        let mut n = 0;
        while !sealed_index_path(dir.path(), 0).exists() {
            store
                .append("cart-filler", ExpectedVersion::Any, vec![event(n)])
                .unwrap();
            n += 1;
            if n % 1000 == 0 {
                store.checkpoint().unwrap();
            }
        }
        drop(store);
        let path = sealed_index_path(dir.path(), 0);
        let file = CountedReads {
            file: crate::vfs::StdFs
                .open(&path, crate::vfs::OpenMode::Read)
                .unwrap(),
            reads: Default::default(),
            bytes: Default::default(),
        };
        let read = Sealed::read(&file, 0, u64::MAX).unwrap();
        let (sealed, table) = (read.sealed, read.table);
        let mut sorted: Vec<&String> = ids.iter().collect();
        sorted.sort();
        for id in [
            sorted[0],
            sorted[sorted.len() / 2],
            sorted[sorted.len() - 1],
        ] {
            file.reads.store(0, std::sync::atomic::Ordering::Relaxed);
            let run = sealed
                .find_stream(&TableSource::File(&file), id)
                .unwrap()
                .expect("the stream is found in the file");
            assert_eq!((run.first_version, run.last_version), (1, 1));
            let reads = file.reads.load(std::sync::atomic::Ordering::Relaxed);
            assert!(
                reads <= 80,
                "{reads} reads of the index to find one of the tie"
            );
            let in_memory = sealed
                .find_stream(&TableSource::Memory(&table, None), id)
                .unwrap()
                .expect("the stream is found in memory");
            assert_eq!(in_memory.first_slot, run.first_slot);
        }
        for src in [TableSource::File(&file), TableSource::Memory(&table, None)] {
            assert!(sealed.find_stream(&src, absent).unwrap().is_none());
        }
        // every one of them reads back through the store, its stream tables cached or not
        for cache in [0, 64 << 20] {
            let store = FileStore::open_with(dir.path(), options(cache)).unwrap();
            for (n, id) in ids.iter().enumerate().step_by(7) {
                let events: Vec<_> = store
                    .read_stream(id, 1)
                    .unwrap()
                    .collect::<Result<_, _>>()
                    .unwrap();
                assert_eq!(events.len(), 1, "{id}");
                assert_eq!(events[0].payload, format!(r#"{{"n":{n}}}"#).into_bytes());
            }
        }
    }

    /// A read from a version late in a long run of one stream's frames in a sealed
    /// segment finds its first frame by bisection of the run's list: a few reads of the
    /// index, where the whole list was read and parsed first (milliseconds for a run of
    /// 300,000 frames). Every read from any version yields exactly the events from it.
    #[test]
    fn a_read_from_late_in_a_long_run_reads_a_few_entries_of_its_list() {
        let dir = tempfile::tempdir().unwrap();
        let options = |stream_table_cache| FileStoreOptions {
            segment_size: 1 << 20,
            durability: Durability::None,
            stream_table_cache,
            ..Default::default()
        };
        let store = FileStore::open_with(dir.path(), options(64 << 20)).unwrap();
        let event = |n: u64| NewEvent::new("Added", 1, format!(r#"{{"n":{n}}}"#).into_bytes());
        let mut n = 0;
        while !sealed_index_path(dir.path(), 1).exists() {
            store
                .append("long", ExpectedVersion::Exact(n), vec![event(n)])
                .unwrap();
            n += 1;
            if n % 1000 == 0 {
                store.checkpoint().unwrap();
            }
        }
        drop(store);
        let path = sealed_index_path(dir.path(), 0);
        let file = CountedReads {
            file: crate::vfs::StdFs
                .open(&path, crate::vfs::OpenMode::Read)
                .unwrap(),
            reads: Default::default(),
            bytes: Default::default(),
        };
        let read = Sealed::read(&file, 0, u64::MAX).unwrap();
        let sealed = read.sealed;
        let run = sealed
            .find_stream(&TableSource::File(&file), "long")
            .unwrap()
            .unwrap();
        assert!(run.frame_count > 5_000, "{}", run.frame_count);
        let all = sealed
            .stream_frames(&TableSource::File(&file), &run, 1)
            .unwrap();
        for from in [
            1,
            2,
            run.last_version / 2,
            run.last_version - 3,
            run.last_version,
        ] {
            file.reads.store(0, std::sync::atomic::Ordering::Relaxed);
            file.bytes.store(0, std::sync::atomic::Ordering::Relaxed);
            let mut frames = Vec::new();
            let more = sealed
                .stream_frames_into(&TableSource::File(&file), &run, from, 1, &mut frames)
                .unwrap();
            let reads = file.reads.load(std::sync::atomic::Ordering::Relaxed);
            let bytes = file.bytes.load(std::sync::atomic::Ordering::Relaxed);
            assert!(
                reads <= 20,
                "{reads} reads of the index from version {from}"
            );
            assert!(
                bytes <= 1_000,
                "{bytes} bytes of the index read from version {from}"
            );
            assert_eq!(frames, vec![all[(from - run.first_version) as usize]]);
            assert_eq!(more, from < run.last_version);
        }
        // through the store, its tables cached or not: exactly the events from a version
        for cache in [0, 64 << 20] {
            let store = FileStore::open_with(dir.path(), options(cache)).unwrap();
            for from in [1, 2, 63, 64, 65, 129, n / 2, run.last_version, n - 1, n] {
                let versions: Vec<u64> = store
                    .read_stream("long", from)
                    .unwrap()
                    .map(|e| e.unwrap().stream_version)
                    .collect();
                assert_eq!(versions, (from..=n).collect::<Vec<_>>(), "from {from}");
            }
        }
    }

    #[test]
    fn a_header_claiming_a_huge_table_allocates_nothing_of_it() {
        // a header with a valid checksum claiming 2^28 streams and frames in a segment of
        // 64 GiB, the file made sparse to the length those counts imply (tens of GB):
        // reading it must not allocate the table (the process would abort), and the open
        // reports the segment shorter than its index records
        let dir = tempfile::tempdir().unwrap();
        store_of_sealed_segments(dir.path());
        let path = sealed_index_path(dir.path(), 0);
        let segment_len = std::fs::metadata(crate::layout::segment_path(dir.path(), 0))
            .unwrap()
            .len();
        let mut header = std::fs::read(&path).unwrap()[..HEADER_LEN as usize].to_vec();
        let count: u32 = 1 << 28;
        let claimed_len: u64 = 1 << 36;
        header[16..24].copy_from_slice(&claimed_len.to_le_bytes());
        header[32..40].copy_from_slice(&u64::from(count).to_le_bytes());
        header[40..44].copy_from_slice(&count.to_le_bytes());
        header[44..48].copy_from_slice(&count.to_le_bytes());
        let crc = crc32c::crc32c(&header[..60]);
        header[60..64].copy_from_slice(&crc.to_le_bytes());
        let u32_at = |i: usize| u32::from_le_bytes(header[i..i + 4].try_into().unwrap());
        let forged = Sealed {
            segment: 0,
            len: claimed_len,
            first_position: 1,
            events: u64::from(count),
            frames: count,
            streams: count,
            names_len: u32_at(48),
            filter_len: u32_at(52),
            filter: None,
            fences: Box::default(),
            tables_crc: 0,
        };
        let file_len = forged.checked_file_len().unwrap();
        assert!(file_len > 30 << 30, "{file_len}");
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&file, &header, 0).unwrap();
        file.set_len(file_len).unwrap();
        drop(file);
        let file = crate::vfs::StdFs
            .open(&path, crate::vfs::OpenMode::Read)
            .unwrap();
        let read = Sealed::read(&*file, 0, segment_len).unwrap();
        assert_eq!(read.sealed.len, claimed_len);
        assert!(read.runs.is_empty() && read.table.is_empty());
        let summary = Sealed::read_summary(&*file, 0, segment_len, Keep::ALL).unwrap();
        assert!(summary.table.is_empty());
        drop(file);
        match FileStore::open(dir.path()) {
            Err(OpenError::Corrupted {
                segment: 0, reason, ..
            }) => {
                assert!(reason.contains("records it as durable"), "{reason}")
            }
            other => panic!("{:?}", other.map(|_| ())),
        }
    }

    #[test]
    fn a_stream_list_that_drops_a_frame_is_reported_by_the_read() {
        let dir = tempfile::tempdir().unwrap();
        store_of_sealed_segments(dir.path());
        // every stream of segment 1 with two frames or more loses its first frame from
        // its list: the list starts one entry later and counts one fewer
        forge(dir.path(), 1, |sealed, bytes| {
            for i in 0..sealed.streams as usize {
                let entry = HEADER_LEN as usize + i * 56;
                let count = u32::from_le_bytes(bytes[entry + 44..entry + 48].try_into().unwrap());
                if count >= 2 {
                    let first =
                        u32::from_le_bytes(bytes[entry + 40..entry + 44].try_into().unwrap());
                    bytes[entry + 40..entry + 44].copy_from_slice(&(first + 1).to_le_bytes());
                    bytes[entry + 44..entry + 48].copy_from_slice(&(count - 1).to_le_bytes());
                }
            }
        });
        let store = FileStore::open(dir.path()).unwrap();
        for s in 0..7 {
            let read: Result<Vec<_>, _> = store
                .read_stream(&format!("cart-{s}"), 1)
                .unwrap()
                .collect();
            match read {
                Err(es_core::StoreError::Corrupted(_)) => {}
                other => panic!("cart-{s}: a frame went missing silently: {other:?}"),
            }
        }
        verify_refuses(dir.path(), 1, "");
    }

    #[test]
    fn verify_finds_a_sealed_index_whose_ids_name_the_wrong_positions() {
        let dir = tempfile::tempdir().unwrap();
        store_of_sealed_segments(dir.path());
        crate::tools::verify(dir.path(), &|_| {}).unwrap();
        // two ids swap positions: still in id order, each position still in the segment
        forge(dir.path(), 1, |sealed, bytes| {
            let at = sealed.ids_at() as usize;
            let (first, second) = (at + 16, at + ID_LEN as usize + 16);
            let a: [u8; 8] = bytes[first..first + 8].try_into().unwrap();
            let b: [u8; 8] = bytes[second..second + 8].try_into().unwrap();
            assert_ne!(a, b);
            bytes[first..first + 8].copy_from_slice(&b);
            bytes[second..second + 8].copy_from_slice(&a);
        });
        verify_refuses(dir.path(), 1, "event ids differ");
    }

    #[test]
    fn verify_finds_a_sealed_index_whose_stream_lists_a_wrong_frame() {
        let dir = tempfile::tempdir().unwrap();
        store_of_sealed_segments(dir.path());
        // a stream's frame listed one byte longer than it is, still inside the segment
        forge(dir.path(), 2, |sealed, bytes| {
            let at = sealed.slots_at() as usize + 28;
            let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
            bytes[at..at + 4].copy_from_slice(&(len + 1).to_le_bytes());
        });
        verify_refuses(dir.path(), 2, "differs from the segment");
    }

    /// A header whose counts overflow when its length is computed, its checksum made
    /// to agree: damage, not a panic.
    #[test]
    fn a_header_whose_counts_overflow_is_damage() {
        let dir = tempfile::tempdir().unwrap();
        store_of_sealed_segments(dir.path());
        let path = sealed_index_path(dir.path(), 1);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
        bytes[32..40].copy_from_slice(&(u64::MAX / ID_LEN + 10).to_le_bytes());
        let crc = crc32c::crc32c(&bytes[..60]);
        bytes[60..64].copy_from_slice(&crc.to_le_bytes());
        std::fs::write(&path, bytes).unwrap();
        let file = crate::vfs::StdFs
            .open(&path, crate::vfs::OpenMode::Read)
            .unwrap();
        assert!(matches!(
            Sealed::read(&*file, 1, u64::MAX),
            Err(SealedError::Damaged { .. })
        ));
        // the store rebuilds it from its segment, and verify passes
        drop(FileStore::open(dir.path()).unwrap());
        crate::tools::verify(dir.path(), &|_| {}).unwrap();
    }

    /// Frame entries whose positions, versions or offsets overflow: damage, not a panic.
    #[test]
    fn frame_entries_that_overflow_are_damage() {
        for (field, value) in [(0usize, u64::MAX), (8, u64::MAX), (16, u64::MAX)] {
            let dir = tempfile::tempdir().unwrap();
            store_of_sealed_segments(dir.path());
            forge(dir.path(), 1, |sealed, bytes| {
                let at = sealed.frames_at() as usize + field;
                bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
            });
            verify_refuses(dir.path(), 1, "damaged");
        }
    }

    #[test]
    fn verify_finds_a_sealed_index_out_of_id_order() {
        let dir = tempfile::tempdir().unwrap();
        store_of_sealed_segments(dir.path());
        // the first two entries swapped whole: the same pairs, but a search misses them
        forge(dir.path(), 1, |sealed, bytes| {
            let at = sealed.ids_at() as usize;
            let n = ID_LEN as usize;
            let first: Vec<u8> = bytes[at..at + n].to_vec();
            bytes.copy_within(at + n..at + 2 * n, at);
            bytes[at + n..at + 2 * n].copy_from_slice(&first);
        });
        verify_refuses(dir.path(), 1, "out of order");
    }
}
