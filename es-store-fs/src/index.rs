//! The stream index: the stream table, and where each frame sits.
//!
//! In memory it holds, per stream, its id, its version, the newest sealed segment that
//! holds its frames and its recent frames; per sealed segment, a summary with the filter
//! of its event ids ([`crate::seal`]); and the recent frames (those of segments not yet
//! sealed) with their event ids. Older frames and ids are looked up in the sealed
//! segment indexes on disk, so memory grows with the number of streams, not with the
//! length of the history.
//!
//! `index.dat` persists the recent part, so that opening a store does not rescan its
//! active segment. The file records the log position it covers; on open, frames after
//! that point are scanned and added. A missing, stale or damaged index file is rebuilt
//! from the log.
//!
//! ```text
//! index.dat
//!   magic b"ESINDEX2"   (b"ESINDEX1": the same layout, every frame from the log's start)
//!   covered end: segment u64, offset u64   (the log up to here is indexed)
//!   head position: u64
//!   stream count: varint, then per stream: varint length + UTF-8 id
//!   frame count: varint, then per frame in log order, the frames of every segment
//!   that has no sealed index:
//!     stream ordinal varint, event count varint, segment varint, offset varint,
//!     frame length varint
//!   event ids: 16 bytes per event of those frames, in position order
//!   CRC32C of everything before it: u32
//! ```

use crate::layout::LogOffset;
use crate::seal::{Sealed, SegmentFrames, StreamRun};
use integer_encoding::VarInt;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::Arc;
use uuid::Uuid;

const INDEX_MAGIC: &[u8; 8] = b"ESINDEX2";
const INDEX_MAGIC_V1: &[u8; 8] = b"ESINDEX1";

/// Where a frame sits: segment, offset and total length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameRef {
    /// Segment number.
    pub segment: u64,
    /// Offset of the frame's first byte in the segment.
    pub offset: u64,
    /// Whole frame length.
    pub len: u32,
}

impl FrameRef {
    /// Where the frame ends (the next frame's place).
    pub fn end(&self) -> LogOffset {
        LogOffset::new(self.segment, self.offset + u64::from(self.len))
    }
}

/// A frame as the index knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameEntry {
    /// Global position of its first event.
    pub first_position: u64,
    /// Stream version of its first event.
    pub first_version: u64,
    /// Number of events.
    pub count: u64,
    /// Where it is.
    pub at: FrameRef,
}

/// One stream: its version, the newest sealed segment holding its frames, and its
/// recent frames.
#[derive(Debug, Clone, Default)]
pub struct StreamEntry {
    /// Ordinal in first-append order.
    pub ordinal: u32,
    /// Current version.
    pub version: u64,
    /// The newest sealed segment holding frames of the stream.
    pub last_sealed: Option<u64>,
    /// Numbers of its recent frames (counted from the log's first frame), in order.
    pub recent: Vec<u64>,
}

/// Event id to global position. Seeded per process, so crafted ids cannot force
/// collisions.
pub type IdMap = HashMap<Uuid, u64, foldhash::fast::RandomState>;

/// The in-memory index. `H` is the stream map's hasher (tests force collisions with it).
#[derive(Debug)]
pub struct Index<H = foldhash::fast::RandomState> {
    /// Streams by id.
    pub streams: HashMap<String, StreamEntry, H>,
    /// Stream ids by ordinal.
    pub stream_ids: Vec<String>,
    /// Sealed segments 0, 1, … in order: their frames are found through their indexes.
    pub sealed: Vec<Arc<Sealed>>,
    /// The frames after the sealed segments, in log order.
    pub recent: VecDeque<FrameEntry>,
    /// The stream ordinal of each recent frame.
    recent_streams: VecDeque<u32>,
    /// Number of the first recent frame.
    recent_base: u64,
    /// Ids of the recent frames' events, in position order.
    recent_ids: VecDeque<Uuid>,
    /// The same ids with their positions.
    id_map: IdMap,
    /// Position of the last event (0 when empty).
    pub head: u64,
    /// End of the indexed log.
    pub covered: LogOffset,
}

/// Where a position's frame is.
pub enum Located<'a> {
    /// A recent frame, with its number.
    Recent(FrameEntry, u64),
    /// In a sealed segment.
    Sealed(&'a Arc<Sealed>),
}

impl<H: BuildHasher + Default> Index<H> {
    /// An empty index covering nothing.
    pub fn new(first_segment_end: LogOffset) -> Self {
        Index {
            streams: HashMap::default(),
            stream_ids: Vec::new(),
            sealed: Vec::new(),
            recent: VecDeque::new(),
            recent_streams: VecDeque::new(),
            recent_base: 0,
            recent_ids: VecDeque::new(),
            id_map: IdMap::default(),
            head: 0,
            covered: first_segment_end,
        }
    }

    /// The version of a stream (0 when unknown).
    pub fn version(&self, stream_id: &str) -> u64 {
        self.streams.get(stream_id).map_or(0, |s| s.version)
    }

    /// The stream entry of `stream_id`, created (with the next ordinal) when new.
    fn stream_mut(&mut self, stream_id: &str) -> Result<&mut StreamEntry, String> {
        // one lookup for a known stream (the common case)
        if self.streams.contains_key(stream_id) {
            return self
                .streams
                .get_mut(stream_id)
                .ok_or_else(|| "stream table out of step".to_owned());
        }
        {
            let ordinal = u32::try_from(self.stream_ids.len())
                .map_err(|_| "more than 4 billion streams".to_owned())?;
            self.stream_ids.push(stream_id.to_owned());
            self.streams.insert(
                stream_id.to_owned(),
                StreamEntry {
                    ordinal,
                    ..StreamEntry::default()
                },
            );
        }
        self.streams
            .get_mut(stream_id)
            .ok_or_else(|| "stream table out of step".to_owned())
    }

    /// Adds a recent frame with the ids of its events, after checking it continues the
    /// log and its stream.
    pub fn push(&mut self, stream_id: &str, entry: FrameEntry, ids: &[Uuid]) -> Result<(), String> {
        if entry.first_position != self.head + 1 {
            return Err(format!(
                "frame starts at position {}, expected {}",
                entry.first_position,
                self.head + 1
            ));
        }
        if ids.len() as u64 != entry.count {
            return Err(format!("{} ids for {} events", ids.len(), entry.count));
        }
        let frame_no = self.recent_base + self.recent.len() as u64;
        let stream = self.stream_mut(stream_id)?;
        if entry.first_version != stream.version + 1 {
            return Err(format!(
                "frame of stream `{stream_id}` starts at version {}, expected {}",
                entry.first_version,
                stream.version + 1
            ));
        }
        stream.version += entry.count;
        stream.recent.push(frame_no);
        let ordinal = stream.ordinal;
        self.head += entry.count;
        self.covered = entry.at.end();
        self.recent.push_back(entry);
        self.recent_streams.push_back(ordinal);
        for (i, id) in ids.iter().enumerate() {
            self.recent_ids.push_back(*id);
            self.id_map.insert(*id, entry.first_position + i as u64);
        }
        Ok(())
    }

    /// Adds a sealed segment read from its index at open, with its stream runs (in order
    /// of their first frame), after checking it continues the log and each stream.
    pub fn push_sealed(&mut self, sealed: Sealed, runs: Vec<StreamRun>) -> Result<(), String> {
        if !self.recent.is_empty() || sealed.segment != self.sealed.len() as u64 {
            return Err("a sealed segment after unsealed frames".into());
        }
        if sealed.first_position != self.head + 1 {
            return Err(format!(
                "segment starts at position {}, expected {}",
                sealed.first_position,
                self.head + 1
            ));
        }
        let mut events = 0u64;
        for run in &runs {
            let segment = sealed.segment;
            let stream = self.stream_mut(&run.stream_id)?;
            if run.first_version != stream.version + 1 || run.previous != stream.last_sealed {
                return Err(format!(
                    "stream `{}` continues at version {} (expected {}) after segment {:?} \
                     (expected {:?})",
                    run.stream_id,
                    run.first_version,
                    stream.version + 1,
                    run.previous,
                    stream.last_sealed
                ));
            }
            stream.version = run.last_version;
            stream.last_sealed = Some(segment);
            events += run.last_version - run.first_version + 1;
        }
        if events != sealed.events {
            return Err(format!(
                "its streams hold {events} events, its header {}",
                sealed.events
            ));
        }
        self.head += sealed.events;
        self.covered = LogOffset::new(sealed.segment, sealed.len);
        self.sealed.push(Arc::new(sealed));
        Ok(())
    }

    /// The recent frames of the oldest unsealed segment, if it lies before `active`
    /// (it is complete): what its sealed index is built from.
    pub fn segment_to_seal(&self, active: u64) -> Option<SegmentFrames> {
        let segment = self.recent.front()?.at.segment;
        if segment >= active {
            return None;
        }
        let n = self
            .recent
            .iter()
            .take_while(|f| f.at.segment == segment)
            .count();
        let events: u64 = self.recent.iter().take(n).map(|f| f.count).sum();
        let mut frames = Vec::with_capacity(n);
        let mut previous = HashMap::new();
        // one copy of each stream id, shared by its frames: this runs under the index's
        // read lock, which the writer's publish waits for
        let mut names: HashMap<u32, Arc<str>> = HashMap::new();
        for (f, &ordinal) in self.recent.iter().zip(&self.recent_streams).take(n) {
            let name = match names.get(&ordinal) {
                Some(name) => Arc::clone(name),
                None => {
                    let id = self.stream_ids.get(ordinal as usize)?;
                    let name: Arc<str> = Arc::from(id.as_str());
                    previous.insert(Arc::clone(&name), self.streams.get(id)?.last_sealed);
                    names.insert(ordinal, Arc::clone(&name));
                    name
                }
            };
            frames.push((name, *f));
        }
        Some(SegmentFrames {
            segment,
            frames,
            ids: self
                .recent_ids
                .iter()
                .take(events as usize)
                .copied()
                .collect(),
            previous,
        })
    }

    /// Replaces the recent frames of `sealed`'s segment (the oldest recent ones) with
    /// the sealed segment, once its index is durable.
    pub fn install_sealed(&mut self, sealed: Sealed) -> Result<(), String> {
        let segment = sealed.segment;
        if segment != self.sealed.len() as u64
            || self.recent.front().is_none_or(|f| f.at.segment != segment)
        {
            return Err(format!("segment {segment} is not the next one to seal"));
        }
        let n = self
            .recent
            .iter()
            .take_while(|f| f.at.segment == segment)
            .count();
        let base = self.recent_base + n as u64;
        let events: u64 = self.recent.drain(..n).map(|f| f.count).sum();
        // each stream of the segment once
        let mut seen = vec![false; self.stream_ids.len()];
        let ordinals: Vec<u32> = self
            .recent_streams
            .drain(..n)
            .filter(|&o| {
                seen.get_mut(o as usize)
                    .is_some_and(|s| !std::mem::replace(s, true))
            })
            .collect();
        for ordinal in ordinals {
            if let Some(s) = self
                .stream_ids
                .get(ordinal as usize)
                .and_then(|id| self.streams.get_mut(id))
            {
                s.last_sealed = Some(segment);
                let keep = s.recent.partition_point(|&no| no < base);
                s.recent.drain(..keep);
                if s.recent.capacity() > 4 * s.recent.len().max(4) {
                    s.recent.shrink_to_fit();
                }
            }
        }
        let sealed_ids = events.min(self.recent_ids.len() as u64) as usize;
        if sealed_ids > self.recent_ids.len() / 2 {
            // most ids leave: build the map of the rest instead of removing each
            self.recent_ids.drain(..sealed_ids);
            let first = sealed.end_position();
            self.id_map = self
                .recent_ids
                .iter()
                .enumerate()
                .map(|(i, id)| (*id, first + i as u64))
                .collect();
        } else {
            for id in self.recent_ids.drain(..sealed_ids) {
                self.id_map.remove(&id);
            }
        }
        self.recent_base = base;
        self.sealed.push(Arc::new(sealed));
        Ok(())
    }

    /// Position of the first recent event.
    pub fn first_recent_position(&self) -> u64 {
        self.sealed.last().map_or(1, |s| s.end_position())
    }

    /// Where the frame holding `position` is, if any.
    pub fn locate(&self, position: u64) -> Option<Located<'_>> {
        if position == 0 || position > self.head {
            return None;
        }
        if position < self.first_recent_position() {
            let i = self
                .sealed
                .partition_point(|s| s.end_position() <= position);
            return self.sealed.get(i).map(Located::Sealed);
        }
        let i = self
            .recent
            .partition_point(|f| f.first_position + f.count <= position);
        let f = *self.recent.get(i)?;
        Some(Located::Recent(f, self.recent_base + i as u64))
    }

    /// Up to `max` recent frames from the one holding `position` on.
    pub fn recent_frames_from(&self, position: u64, max: usize) -> Vec<FrameEntry> {
        let i = self
            .recent
            .partition_point(|f| f.first_position + f.count <= position);
        self.recent.iter().skip(i).take(max).copied().collect()
    }

    /// Up to `max` recent frames of a stream holding versions from `from_version` on,
    /// starting with the one that holds `from_version`.
    pub fn stream_frames(&self, stream_id: &str, from_version: u64, max: usize) -> Vec<FrameEntry> {
        let Some(stream) = self.streams.get(stream_id) else {
            return Vec::new();
        };
        let frame = |no: u64| self.recent.get((no - self.recent_base) as usize).copied();
        let start = stream.recent.partition_point(|&no| {
            frame(no).is_some_and(|e| e.first_version + e.count <= from_version)
        });
        stream.recent[start.min(stream.recent.len())..]
            .iter()
            .take(max)
            .filter_map(|&no| frame(no))
            .collect()
    }

    /// Whether recent frame number `no` belongs to `stream_id`.
    pub fn recent_frame_of(&self, stream_id: &str, no: u64) -> bool {
        self.streams
            .get(stream_id)
            .is_some_and(|s| s.recent.binary_search(&no).is_ok())
    }

    /// The position of a recent event id.
    pub fn recent_id(&self, id: &Uuid) -> Option<u64> {
        self.id_map.get(id).copied()
    }

    /// The stream of the recent frame starting at `first_position`.
    pub fn stream_of_recent(&self, first_position: u64) -> Option<&str> {
        let i = self
            .recent
            .partition_point(|f| f.first_position < first_position);
        let f = self.recent.get(i)?;
        if f.first_position != first_position {
            return None;
        }
        let ordinal = *self.recent_streams.get(i)?;
        self.stream_ids.get(ordinal as usize).map(String::as_str)
    }

    /// The ids of recent events from `position` on.
    pub fn recent_ids_from(&self, position: u64) -> Vec<Uuid> {
        let skip = position.saturating_sub(self.first_recent_position()) as usize;
        self.recent_ids.iter().skip(skip).copied().collect()
    }

    /// The last frame of the log, if it is recent.
    pub fn last_recent(&self) -> Option<FrameEntry> {
        self.recent.back().copied()
    }

    /// Serializes the recent part: the frames after the sealed segments with the ids of
    /// their events.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.recent.len() * 12 + self.recent_ids.len() * 16);
        out.extend_from_slice(INDEX_MAGIC);
        out.extend_from_slice(&self.covered.segment.to_le_bytes());
        out.extend_from_slice(&self.covered.offset.to_le_bytes());
        out.extend_from_slice(&self.head.to_le_bytes());
        let mut buf = [0u8; 10];
        let mut var = |out: &mut Vec<u8>, v: u64| {
            let n = v.encode_var(&mut buf);
            out.extend_from_slice(&buf[..n]);
        };
        // only the streams of recent frames, numbered in order of appearance
        let mut local: HashMap<u32, u64> = HashMap::new();
        let mut names: Vec<&str> = Vec::new();
        for &ordinal in &self.recent_streams {
            local.entry(ordinal).or_insert_with(|| {
                names.push(
                    self.stream_ids
                        .get(ordinal as usize)
                        .map_or("", String::as_str),
                );
                names.len() as u64 - 1
            });
        }
        var(&mut out, names.len() as u64);
        for id in &names {
            var(&mut out, id.len() as u64);
            out.extend_from_slice(id.as_bytes());
        }
        var(&mut out, self.recent.len() as u64);
        for (f, o) in self.recent.iter().zip(&self.recent_streams) {
            var(&mut out, local[o]);
            var(&mut out, f.count);
            var(&mut out, f.at.segment);
            var(&mut out, f.at.offset);
            var(&mut out, u64::from(f.at.len));
        }
        for id in &self.recent_ids {
            out.extend_from_slice(id.as_bytes());
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }
}

/// What `index.dat` holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexFile {
    /// The log up to here is indexed.
    pub covered: LogOffset,
    /// The last position.
    pub head: u64,
    /// Stream ids by the ordinals the frames name.
    pub stream_ids: Vec<String>,
    /// The frames listed, with the ordinal of their stream; positions and versions are
    /// filled in when they join an index.
    pub frames: Vec<(u32, u64, FrameRef)>,
    /// The ids of their events, in position order.
    pub ids: Vec<Uuid>,
    /// Written by the previous format, listing every frame from the log's start.
    pub from_start: bool,
}

impl IndexFile {
    /// Position of the first frame listed.
    pub fn first_position(&self) -> u64 {
        self.head + 1 - self.ids.len() as u64
    }

    /// Parses an index file; `None` when it is damaged or inconsistent (then it is
    /// rebuilt from the log).
    pub fn decode(bytes: &[u8]) -> Option<IndexFile> {
        let (body, crc) = bytes.split_at_checked(bytes.len().checked_sub(4)?)?;
        if crc32c::crc32c(body).to_le_bytes() != crc {
            return None;
        }
        let mut at = 0usize;
        let take = |at: &mut usize, n: usize| -> Option<&[u8]> {
            let s = body.get(*at..at.checked_add(n)?)?;
            *at += n;
            Some(s)
        };
        let from_start = match take(&mut at, 8)? {
            m if m == INDEX_MAGIC => false,
            m if m == INDEX_MAGIC_V1 => true,
            _ => return None,
        };
        let u64_le = |s: &[u8]| u64::from_le_bytes(s.try_into().unwrap_or([0; 8]));
        let covered = LogOffset::new(u64_le(take(&mut at, 8)?), u64_le(take(&mut at, 8)?));
        let head = u64_le(take(&mut at, 8)?);
        let var = |at: &mut usize| -> Option<u64> {
            let (v, n) = u64::decode_var(body.get(*at..)?)?;
            *at += n;
            Some(v)
        };
        let stream_count = var(&mut at)?;
        if stream_count > body.len() as u64 {
            return None;
        }
        let mut stream_ids = Vec::with_capacity(stream_count as usize);
        for _ in 0..stream_count {
            let len = usize::try_from(var(&mut at)?).ok()?;
            let id = std::str::from_utf8(take(&mut at, len)?).ok()?;
            stream_ids.push(id.to_owned());
        }
        let frame_count = var(&mut at)?;
        if frame_count > body.len() as u64 {
            return None;
        }
        let mut frames = Vec::with_capacity(frame_count as usize);
        let mut events = 0u64;
        for _ in 0..frame_count {
            let ordinal = u32::try_from(var(&mut at)?).ok()?;
            let count = var(&mut at)?;
            let segment = var(&mut at)?;
            let offset = var(&mut at)?;
            let len = u32::try_from(var(&mut at)?).ok()?;
            if count == 0 || ordinal as usize >= stream_ids.len() {
                return None;
            }
            events = events.checked_add(count)?;
            frames.push((
                ordinal,
                count,
                FrameRef {
                    segment,
                    offset,
                    len,
                },
            ));
        }
        if events > head || (from_start && events != head) {
            return None;
        }
        let id_bytes = body.get(at..)?;
        if id_bytes.len() as u64 != events.checked_mul(16)? {
            return None;
        }
        let ids = id_bytes
            .chunks_exact(16)
            .map(|c| Uuid::from_slice(c).unwrap_or_default())
            .collect();
        let mut seen = std::collections::HashSet::new();
        if !stream_ids.iter().all(|s| seen.insert(s.as_str())) {
            return None;
        }
        Some(IndexFile {
            covered,
            head,
            stream_ids,
            frames,
            ids,
            from_start,
        })
    }
}

#[cfg(test)]
mod tests {
    //! Streams whose names hash alike never mix, and the file form round-trips.
    use super::*;
    use std::hash::{BuildHasherDefault, Hasher};

    /// A hasher under which every key collides.
    #[derive(Default)]
    struct Constant;
    impl Hasher for Constant {
        fn finish(&self) -> u64 {
            42
        }
        fn write(&mut self, _: &[u8]) {}
    }

    fn entry(position: u64, version: u64, count: u64) -> FrameEntry {
        FrameEntry {
            first_position: position,
            first_version: version,
            count,
            at: FrameRef {
                segment: 0,
                offset: 32 + position * 100,
                len: 100,
            },
        }
    }

    #[test]
    fn forced_hash_collisions_do_not_mix_streams() {
        let mut index: Index<BuildHasherDefault<Constant>> = Index::new(LogOffset::new(0, 32));
        let mut position = 1;
        for round in 0..50u64 {
            for s in ["a-1", "b-1", "c-1"] {
                index
                    .push(s, entry(position, round * 2 + 1, 2), &ids(2))
                    .unwrap();
                position += 2;
            }
        }
        for (i, s) in ["a-1", "b-1", "c-1"].iter().enumerate() {
            assert_eq!(index.version(s), 100);
            let frames = index.stream_frames(s, 1, usize::MAX);
            assert_eq!(frames.len(), 50);
            for (round, f) in frames.iter().enumerate() {
                assert_eq!(f.first_position, 1 + 6 * round as u64 + 2 * i as u64);
            }
        }
        assert_eq!(index.version("d-1"), 0);
        assert!(index.stream_frames("d-1", 1, 10).is_empty());
    }

    #[test]
    fn pushes_that_break_the_log_are_refused() {
        let mut index: Index = Index::new(LogOffset::new(0, 32));
        index.push("a-1", entry(1, 1, 2), &ids(2)).unwrap();
        assert!(
            index.push("a-1", entry(4, 3, 1), &ids(1)).is_err(),
            "gap in positions"
        );
        assert!(
            index.push("a-1", entry(3, 2, 1), &ids(1)).is_err(),
            "stream version repeats"
        );
        index.push("a-1", entry(3, 3, 1), &ids(1)).unwrap();
    }

    fn ids(n: usize) -> Vec<Uuid> {
        (0..n).map(|_| Uuid::new_v4()).collect()
    }

    #[test]
    fn file_form_round_trips_and_rejects_damage() {
        let mut index: Index = Index::new(LogOffset::new(0, 32));
        let all = ids(6);
        index.push("a-1", entry(1, 1, 2), &all[0..2]).unwrap();
        index.push("b-1", entry(3, 1, 1), &all[2..3]).unwrap();
        index.push("a-1", entry(4, 3, 3), &all[3..6]).unwrap();
        let bytes = index.encode();
        let back = IndexFile::decode(&bytes).unwrap();
        assert_eq!(back.head, 6);
        assert_eq!(back.first_position(), 1);
        assert_eq!(back.covered, index.covered);
        assert_eq!(back.ids, all);
        assert_eq!(back.stream_ids, vec!["a-1".to_owned(), "b-1".to_owned()]);
        let frames: Vec<FrameRef> = back.frames.iter().map(|f| f.2).collect();
        let expected: Vec<FrameRef> = index.recent.iter().map(|f| f.at).collect();
        assert_eq!(frames, expected);
        assert_eq!(index.stream_frames("a-1", 4, 10), vec![entry(4, 3, 3)]);
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert!(IndexFile::decode(&bad).is_none(), "byte {i}");
        }
        for cut in 0..bytes.len() {
            assert!(IndexFile::decode(&bytes[..cut]).is_none());
        }
    }
}
