//! The stream index: the stream table, and where each frame sits.
//!
//! In memory it holds, per stream, its id, its version, the newest sealed segment that
//! holds its frames and its recent frames; per sealed segment, a summary with the filter
//! of its event ids ([`crate::seal`]); and the recent frames (those of segments not yet
//! sealed) with their event ids. Older frames and ids are looked up in the sealed
//! segment indexes on disk, so memory grows with the number of streams, not with the
//! length of the history.
//!
//! `index.dat` persists the stream table as it stood after the sealed segments (the
//! *base*) and the recent part, so that opening a store neither reads the stream tables
//! of the sealed segments it covers nor rescans the active segment. The file records the
//! log position it covers; on open, frames after that point are scanned and added, and
//! segments sealed after it was written are read from their sealed indexes. A missing,
//! stale or damaged index file is rebuilt from the log.
//!
//! ```text
//! index.dat
//!   magic b"ESINDEX3"
//!   covered end: segment u64, offset u64   (the log up to here is indexed)
//!   head position: u64
//!   base: number of sealed segments B, varint
//!   stream count: varint, then per stream in first-append order: varint length + UTF-8
//!     id, its version after the B sealed segments (varint, 0: it starts later), the
//!     newest of those segments holding it (varint, 0: none, else segment + 1)
//!   frame count: varint, then per frame in log order, the frames after the B sealed
//!   segments:
//!     stream ordinal varint, event count varint, segment varint, offset varint,
//!     frame length varint
//!   event ids: 16 bytes per event of those frames, in position order
//!   CRC32C of everything before it: u32
//! ```
//!
//! The previous layouts are still read: b"ESINDEX2" has no base and lists, per stream,
//! the id only (the streams of the recent frames); b"ESINDEX1" is that layout with every
//! frame from the log's start.

use crate::group::{GROUP_SEGMENTS, IdGroup};
use crate::layout::LogOffset;
use crate::seal::{Sealed, SegmentFrames, StreamRun};
use integer_encoding::VarInt;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::Arc;
use uuid::Uuid;

const INDEX_MAGIC: &[u8; 8] = b"ESINDEX3";
const INDEX_MAGIC_V2: &[u8; 8] = b"ESINDEX2";
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
    /// Where the frame ends (the next frame's place). Saturates for an offset no segment
    /// can have (read from a damaged index), which every check against a file's length
    /// then refuses.
    pub fn end(&self) -> LogOffset {
        LogOffset::new(
            self.segment,
            self.offset.saturating_add(u64::from(self.len)),
        )
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

/// The in-memory index. `H` is the stream table's hasher (tests force collisions with it).
#[derive(Debug)]
pub struct Index<H = foldhash::fast::RandomState> {
    /// Hashes stream ids for `ordinals`.
    hasher: H,
    /// Stream ordinals (first-append order) beside 32 bits of their id's hash
    /// ([`Index::key_hash`]), found by that hash: a table that grows rehashes from what
    /// it holds, without reading and hashing every id again (which, under the writer's
    /// lock, froze appends for half a second at a million streams). Each id is
    /// held once, in `stream_ids`.
    ordinals: hashbrown::HashTable<(u32, u32)>,
    /// The streams, by ordinal.
    entries: Vec<StreamEntry>,
    /// Stream ids by ordinal.
    pub stream_ids: Vec<Arc<str>>,
    /// Sealed segments 0, 1, … in order: their frames are found through their indexes.
    pub sealed: Vec<Arc<Sealed>>,
    /// The id filters of groups of sealed segments, by window (see [`crate::group`]).
    pub groups: Vec<Option<Arc<IdGroup>>>,
    /// Windows whose group filter could not be built while the store runs.
    pub groups_refused: std::collections::BTreeSet<u64>,
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
            hasher: H::default(),
            ordinals: hashbrown::HashTable::new(),
            entries: Vec::new(),
            stream_ids: Vec::new(),
            sealed: Vec::new(),
            groups: Vec::new(),
            groups_refused: std::collections::BTreeSet::new(),
            recent: VecDeque::new(),
            recent_streams: VecDeque::new(),
            recent_base: 0,
            recent_ids: VecDeque::new(),
            id_map: IdMap::default(),
            head: 0,
            covered: first_segment_end,
        }
    }

    /// The 32 bits of `stream_id`'s hash that `ordinals` keeps.
    fn key_hash(hasher: &H, stream_id: &str) -> u32 {
        hasher.hash_one(stream_id) as u32
    }

    /// A kept hash spread to the 64 bits the table places entries by: the low bits (the
    /// bucket) and the high bits (the tag compared first) both depend on all 32.
    fn spread(key: u32) -> u64 {
        u64::from(key).wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }

    /// The ordinal of a stream.
    fn ordinal(&self, stream_id: &str) -> Option<u32> {
        let key = Self::key_hash(&self.hasher, stream_id);
        let ids = &self.stream_ids;
        self.ordinals
            .find(Self::spread(key), |&(k, o)| {
                k == key && ids.get(o as usize).is_some_and(|s| **s == *stream_id)
            })
            .map(|&(_, o)| o)
    }

    /// A stream's entry.
    pub fn stream(&self, stream_id: &str) -> Option<&StreamEntry> {
        self.entries.get(self.ordinal(stream_id)? as usize)
    }

    /// Number of streams.
    pub fn stream_count(&self) -> usize {
        self.entries.len()
    }

    /// The version of a stream (0 when unknown).
    pub fn version(&self, stream_id: &str) -> u64 {
        self.stream(stream_id).map_or(0, |s| s.version)
    }

    /// The ordinal of `stream_id`, a new one (the next) when the stream is new.
    fn ordinal_or_add(&mut self, stream_id: &str) -> Result<u32, String> {
        if let Some(o) = self.ordinal(stream_id) {
            return Ok(o);
        }
        let ordinal = u32::try_from(self.stream_ids.len())
            .map_err(|_| "more than 4 billion streams".to_owned())?;
        self.stream_ids.push(Arc::from(stream_id));
        self.entries.push(StreamEntry::default());
        let key = Self::key_hash(&self.hasher, stream_id);
        self.ordinals
            .insert_unique(Self::spread(key), (key, ordinal), |&(k, _)| Self::spread(k));
        Ok(ordinal)
    }

    /// The entry of stream `ordinal`.
    fn entry_mut(&mut self, ordinal: u32) -> Result<&mut StreamEntry, String> {
        self.entries
            .get_mut(ordinal as usize)
            .ok_or_else(|| "stream table out of step".to_owned())
    }

    /// Adds a recent frame with the ids of its events, after checking it continues the
    /// log and its stream.
    pub fn push(&mut self, stream_id: &str, entry: FrameEntry, ids: &[Uuid]) -> Result<(), String> {
        let ordinal = self.ordinal_or_add(stream_id)?;
        self.push_ordinal(ordinal, entry, ids)
    }

    /// [`Index::push`] for the stream numbered `ordinal`.
    fn push_ordinal(
        &mut self,
        ordinal: u32,
        entry: FrameEntry,
        ids: &[Uuid],
    ) -> Result<(), String> {
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
        let stream = self.entry_mut(ordinal)?;
        if entry.first_version != stream.version + 1 {
            return Err(format!(
                "frame of stream {ordinal} starts at version {}, expected {}",
                entry.first_version,
                stream.version + 1
            ));
        }
        stream.version += entry.count;
        stream.recent.push(frame_no);
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

    /// Adds the frames `file` lists from its frame `from` on (they must continue the log
    /// at `first_position`), in one pass: each stream of the file is looked up once.
    /// `known` holds the ordinals [`Index::install_base`] gave the file's streams.
    pub fn push_listed(
        &mut self,
        file: &IndexFile,
        from: usize,
        first_position: u64,
        known: Option<Vec<Option<u32>>>,
    ) -> Result<(), String> {
        let mut ordinals = known
            .filter(|k| k.len() == file.stream_ids.len())
            .unwrap_or_else(|| vec![None; file.stream_ids.len()]);
        let ids_left = (file.ids.len() as u64)
            .saturating_sub(first_position.saturating_sub(file.first_position()));
        self.id_map.reserve(ids_left as usize);
        let mut position = first_position;
        let mut id_at = usize::try_from(first_position - file.first_position())
            .map_err(|_| "too many ids".to_owned())?;
        for &(listed, count, at) in file.frames.get(from..).unwrap_or_default() {
            let slot = ordinals
                .get_mut(listed as usize)
                .ok_or_else(|| format!("stream {listed} is not listed"))?;
            let ordinal = match *slot {
                Some(o) => o,
                None => {
                    let id = file
                        .stream_ids
                        .get(listed as usize)
                        .ok_or_else(|| format!("stream {listed} is not listed"))?;
                    let o = self.ordinal_or_add(id)?;
                    *slot = Some(o);
                    o
                }
            };
            let first_version = self.entry_mut(ordinal)?.version + 1;
            let end = id_at + count as usize;
            let ids = file
                .ids
                .get(id_at..end)
                .ok_or_else(|| "fewer ids than events".to_owned())?;
            let entry = FrameEntry {
                first_position: position,
                first_version,
                count,
                at,
            };
            self.push_ordinal(ordinal, entry, ids)?;
            position += count;
            id_at = end;
        }
        Ok(())
    }

    /// Sets up an empty index from a base: the stream table `file` recorded as it stood
    /// after its sealed segments, and those segments' summaries. Checks that the segments
    /// continue one another, that the versions add up to their events and that every
    /// stream names one of them as its newest. Returns the ordinal given to each stream
    /// the file lists (none for those that start later). After an error the index is
    /// partly filled: the caller starts again from an empty one.
    pub fn install_base(
        &mut self,
        file: &IndexFile,
        sealed: Vec<Sealed>,
    ) -> Result<Vec<Option<u32>>, String> {
        let Some(base) = &file.base else {
            return Err("the index file records no base".into());
        };
        if !self.sealed.is_empty() || self.head != 0 || !self.stream_ids.is_empty() {
            return Err("a base for an index that is not empty".into());
        }
        if sealed.len() as u64 != base.sealed {
            return Err(format!(
                "a base of {} sealed segments for {} segments",
                base.sealed,
                sealed.len()
            ));
        }
        let mut next = 1u64;
        for (i, s) in sealed.iter().enumerate() {
            if s.segment != i as u64 || s.first_position != next {
                return Err(format!(
                    "sealed segment {} starts at position {}, expected {next}",
                    s.segment, s.first_position
                ));
            }
            next = s.end_position();
        }
        let mut events = 0u64;
        let n = file.stream_ids.len();
        self.stream_ids.reserve(n);
        self.entries.reserve(n);
        self.ordinals.reserve(n, |&(k, _)| Self::spread(k));
        let mut given = vec![None; n];
        for ((id, &(version, last_sealed)), given) in
            file.stream_ids.iter().zip(&base.streams).zip(&mut given)
        {
            if (version == 0) != last_sealed.is_none()
                || last_sealed.is_some_and(|l| l >= base.sealed)
            {
                return Err(format!(
                    "stream `{id}` at version {version} in segment {last_sealed:?}"
                ));
            }
            if version == 0 {
                continue;
            }
            events = events
                .checked_add(version)
                .ok_or_else(|| "versions overflow".to_owned())?;
            let known = self.stream_ids.len();
            let ordinal = self.ordinal_or_add(id)?;
            if (ordinal as usize) < known {
                return Err(format!("stream `{id}` is listed twice"));
            }
            let entry = self.entry_mut(ordinal)?;
            entry.version = version;
            entry.last_sealed = last_sealed;
            *given = Some(ordinal);
        }
        if events != next - 1 {
            return Err(format!(
                "its streams hold {events} events, its segments {}",
                next - 1
            ));
        }
        self.head = events;
        if let Some(last) = sealed.last() {
            self.covered = LogOffset::new(last.segment, last.len);
        }
        self.sealed = sealed.into_iter().map(Arc::new).collect();
        Ok(given)
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
            let ordinal = self.ordinal_or_add(&run.stream_id)?;
            let stream = self.entry_mut(ordinal)?;
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
    /// and a frame of a later segment is published (it is complete): what its sealed
    /// index is built from. The writer counts a new segment before it publishes the
    /// frames of the group that rolled over to it, the last frames of the segment before
    /// among them; published frames are in log order, so the segment's frames are all
    /// here once a later one is.
    pub fn segment_to_seal(&self, active: u64) -> Option<SegmentFrames> {
        let segment = self.recent.front()?.at.segment;
        let newest = self.recent.back()?.at.segment;
        if segment >= active.min(newest) {
            return None;
        }
        let n = self
            .recent
            .iter()
            .take_while(|f| f.at.segment == segment)
            .count();
        let events: u64 = self.recent.iter().take(n).map(|f| f.count).sum();
        let mut frames = Vec::with_capacity(n);
        let mut previous = Vec::new();
        // this runs under the index's read lock, which the writer's publish waits for:
        // each frame takes a reference to its stream's id, and each stream is listed once
        // (by a bit per stream), with nothing allocated per stream and nothing hashed
        let mut listed = vec![0u64; self.stream_ids.len().div_ceil(64)];
        for (f, &ordinal) in self.recent.iter().zip(&self.recent_streams).take(n) {
            let o = ordinal as usize;
            let id = self.stream_ids.get(o)?;
            let bit = listed.get_mut(o / 64)?;
            if *bit & (1 << (o % 64)) == 0 {
                *bit |= 1 << (o % 64);
                previous.push((Arc::clone(id), self.entries.get(o)?.last_sealed));
            }
            frames.push((Arc::clone(id), *f));
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
            if let Some(s) = self.entries.get_mut(ordinal as usize) {
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

    /// Installs the id filter of a group of sealed segments: its segments' own filters
    /// are dropped from memory.
    pub fn install_group(&mut self, group: IdGroup) -> Result<(), String> {
        let w = group.window;
        let first = (w * GROUP_SEGMENTS) as usize;
        let members = self
            .sealed
            .get_mut(first..first + GROUP_SEGMENTS as usize)
            .ok_or_else(|| format!("group {w} covers segments not sealed"))?;
        for s in members {
            *s = Arc::new(s.without_filter());
        }
        if self.groups.len() <= w as usize {
            self.groups.resize(w as usize + 1, None);
        }
        self.groups[w as usize] = Some(Arc::new(group));
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

    /// The end of the newest recent frame in `segment` (0 when none is there).
    pub fn recent_end_in(&self, segment: u64) -> u64 {
        let after = self.recent.partition_point(|f| f.at.segment <= segment);
        match after.checked_sub(1).and_then(|i| self.recent.get(i)) {
            Some(f) if f.at.segment == segment => f.at.end().offset,
            _ => 0,
        }
    }

    /// Up to `max` recent frames of a stream holding versions from `from_version` on,
    /// starting with the one that holds `from_version`.
    #[cfg(test)]
    pub fn stream_frames(&self, stream_id: &str, from_version: u64, max: usize) -> Vec<FrameEntry> {
        let Some(stream) = self.stream(stream_id) else {
            return Vec::new();
        };
        self.frames_of(stream, from_version, max)
    }

    /// [`Index::stream_frames`] of the stream whose entry [`Index::stream`] returned.
    pub fn frames_of(
        &self,
        stream: &StreamEntry,
        from_version: u64,
        max: usize,
    ) -> Vec<FrameEntry> {
        let frame = |no: u64| self.recent.get((no - self.recent_base) as usize).copied();
        let start = stream.recent.partition_point(|&no| {
            frame(no).is_some_and(|e| e.first_version + e.count <= from_version)
        });
        let numbers = &stream.recent[start.min(stream.recent.len())..];
        let mut frames = Vec::with_capacity(numbers.len().min(max));
        frames.extend(numbers.iter().take(max).filter_map(|&no| frame(no)));
        frames
    }

    /// A stream's version and the global position of its last event, when its last
    /// frame is recent.
    pub fn stream_end(&self, stream_id: &str) -> Option<(u64, u64)> {
        let stream = self.stream(stream_id)?;
        let no = *stream.recent.last()?;
        let f = self
            .recent
            .get(usize::try_from(no.checked_sub(self.recent_base)?).ok()?)?;
        let last = f.count.checked_sub(1)?;
        (f.first_version + last == stream.version)
            .then_some((stream.version, f.first_position + last))
    }

    /// Whether recent frame number `no` belongs to `stream_id`.
    pub fn recent_frame_of(&self, stream_id: &str, no: u64) -> bool {
        self.stream(stream_id)
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
        self.stream_ids.get(ordinal as usize).map(|s| &**s)
    }

    /// The ids of recent events from `position` on.
    pub fn recent_ids_from(&self, position: u64) -> Vec<Uuid> {
        self.recent_ids_in(position, usize::MAX)
    }

    /// The ids of at most `count` recent events from `position` on.
    pub fn recent_ids_in(&self, position: u64, count: usize) -> Vec<Uuid> {
        let skip = position.saturating_sub(self.first_recent_position()) as usize;
        self.recent_ids
            .range(skip.min(self.recent_ids.len())..)
            .take(count)
            .copied()
            .collect()
    }

    /// The last frame of the log, if it is recent.
    pub fn last_recent(&self) -> Option<FrameEntry> {
        self.recent.back().copied()
    }

    /// Serializes the base alone, as an index of the sealed segments: what the next open
    /// needs not to read their stream tables, written without syncing the active
    /// segment (sealed segments are durable). The store writes it with
    /// [`Index::encode_base_in_steps`]; this is the whole table under one look.
    #[cfg(test)]
    pub fn encode_base(&self) -> Vec<u8> {
        self.encode_with(false)
    }

    /// Where the base ends: the end of the last sealed segment and its last position (a
    /// base of nothing when no segment is sealed).
    fn base_end(&self) -> (LogOffset, u64) {
        match self.sealed.last() {
            None => (LogOffset::segment_start(0), 0),
            Some(last) => (
                LogOffset::new(last.segment, last.len),
                last.end_position() - 1,
            ),
        }
    }

    /// [`Index::encode_base`], taking `index`'s read lock for `step` streams at a time
    /// rather than for the whole table: the writer's publish waits for that lock, and a
    /// table of a million streams held appends for over a tenth of a second at every
    /// seal. The caller seals (no segment is sealed between the steps); what is appended
    /// between them does not change the base: a stream's version after the sealed
    /// segments is the one before its first recent frame, and streams created meanwhile
    /// start after them (an open finds them in the log).
    pub fn encode_base_in_steps(index: &std::sync::RwLock<Index<H>>, step: usize) -> Vec<u8> {
        let read = || index.read().unwrap_or_else(|e| e.into_inner());
        let (mut out, streams) = {
            let index = read();
            let (covered, head) = index.base_end();
            let streams = index.stream_ids.len();
            let mut out = Vec::with_capacity(64 + streams * 24);
            start_index_file(&mut out, covered, head, index.sealed.len());
            (out, streams)
        };
        let var = push_var;
        var(&mut out, streams as u64);
        let mut from = 0;
        while from < streams {
            let to = (from + step.max(1)).min(streams);
            let index = read();
            for o in from..to {
                let (Some(id), Some(entry)) = (index.stream_ids.get(o), index.entries.get(o))
                else {
                    break;
                };
                // the version before the stream's first recent frame
                let first_recent = entry
                    .recent
                    .first()
                    .and_then(|&no| no.checked_sub(index.recent_base))
                    .and_then(|i| index.recent.get(usize::try_from(i).ok()?));
                let version = match first_recent {
                    Some(f) => f.first_version.saturating_sub(1),
                    None => entry.version,
                };
                var(&mut out, id.len() as u64);
                out.extend_from_slice(id.as_bytes());
                var(&mut out, version);
                var(&mut out, entry.last_sealed.map_or(0, |s| s + 1));
            }
            from = to;
        }
        var(&mut out, 0);
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Serializes the base (the stream table as it stood after the sealed segments) and
    /// the recent part: the frames after the sealed segments with the ids of their
    /// events.
    pub fn encode(&self) -> Vec<u8> {
        self.encode_with(true)
    }

    fn encode_with(&self, recent: bool) -> Vec<u8> {
        let (covered, head) = if recent {
            (self.covered, self.head)
        } else {
            self.base_end()
        };
        let frames = if recent { self.recent.len() } else { 0 };
        let names: usize = self.stream_ids.iter().map(|s| s.len() + 12).sum();
        let mut out =
            Vec::with_capacity(64 + names + self.recent.len() * 12 + self.recent_ids.len() * 16);
        start_index_file(&mut out, covered, head, self.sealed.len());
        let var = push_var;
        // each stream's version before its recent frames
        let mut base: Vec<u64> = self.entries.iter().map(|e| e.version).collect();
        for (f, &o) in self.recent.iter().zip(&self.recent_streams) {
            if let Some(v) = base.get_mut(o as usize) {
                *v = v.saturating_sub(f.count);
            }
        }
        var(&mut out, self.stream_ids.len() as u64);
        for ((id, entry), version) in self.stream_ids.iter().zip(&self.entries).zip(base) {
            var(&mut out, id.len() as u64);
            out.extend_from_slice(id.as_bytes());
            var(&mut out, version);
            var(&mut out, entry.last_sealed.map_or(0, |s| s + 1));
        }
        var(&mut out, frames as u64);
        for (f, &o) in self.recent.iter().zip(&self.recent_streams).take(frames) {
            var(&mut out, u64::from(o));
            var(&mut out, f.count);
            var(&mut out, f.at.segment);
            var(&mut out, f.at.offset);
            var(&mut out, u64::from(f.at.len));
        }
        for id in self
            .recent_ids
            .iter()
            .take(if recent { usize::MAX } else { 0 })
        {
            out.extend_from_slice(id.as_bytes());
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// The recent frames with the ordinals of their streams, in log order.
    pub fn recent_with_streams(&self) -> impl Iterator<Item = (&FrameEntry, u32)> {
        self.recent.iter().zip(self.recent_streams.iter().copied())
    }
}

/// Writes the start of `index.dat`: magic, covered end, head, number of sealed segments.
fn start_index_file(out: &mut Vec<u8>, covered: LogOffset, head: u64, sealed: usize) {
    out.extend_from_slice(INDEX_MAGIC);
    out.extend_from_slice(&covered.segment.to_le_bytes());
    out.extend_from_slice(&covered.offset.to_le_bytes());
    out.extend_from_slice(&head.to_le_bytes());
    push_var(out, sealed as u64);
}

/// Appends `v` as a varint.
fn push_var(out: &mut Vec<u8>, v: u64) {
    let mut buf = [0u8; 10];
    let n = v.encode_var(&mut buf);
    out.extend_from_slice(&buf[..n]);
}

/// The stream table `index.dat` recorded as it stood after the sealed segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Base {
    /// Number of sealed segments it covers.
    pub sealed: u64,
    /// Per stream listed (in the order of [`IndexFile::stream_ids`]): its version after
    /// those segments (0: it starts later) and the newest of them holding it.
    pub streams: Vec<(u64, Option<u64>)>,
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
    /// Written by the first format, listing every frame from the log's start.
    pub from_start: bool,
    /// The stream table after the sealed segments (not in the older formats).
    pub base: Option<Base>,
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
        let (from_start, with_base) = match take(&mut at, 8)? {
            m if m == INDEX_MAGIC => (false, true),
            m if m == INDEX_MAGIC_V2 => (false, false),
            m if m == INDEX_MAGIC_V1 => (true, false),
            _ => return None,
        };
        let u64_le = |s: &[u8]| u64::from_le_bytes(s.try_into().unwrap_or([0; 8]));
        let covered = LogOffset::new(u64_le(take(&mut at, 8)?), u64_le(take(&mut at, 8)?));
        let head = u64_le(take(&mut at, 8)?);
        if head == u64::MAX {
            return None;
        }
        let var = |at: &mut usize| -> Option<u64> {
            let (v, n) = u64::decode_var(body.get(*at..)?)?;
            *at += n;
            Some(v)
        };
        let base_sealed = if with_base { Some(var(&mut at)?) } else { None };
        // each count is bounded by the bytes left, at the fewest bytes one entry takes:
        // a stream a length and a name of at least one byte (and two varints with a
        // base), a frame five varints
        let left = |at: usize| (body.len() - at.min(body.len())) as u64;
        let stream_count = var(&mut at)?;
        if stream_count > left(at) / if with_base { 4 } else { 2 } {
            return None;
        }
        let mut stream_ids = Vec::with_capacity(stream_count as usize);
        let mut base_streams =
            Vec::with_capacity(if with_base { stream_count as usize } else { 0 });
        for _ in 0..stream_count {
            let len = usize::try_from(var(&mut at)?).ok()?;
            let id = std::str::from_utf8(take(&mut at, len)?).ok()?;
            stream_ids.push(id.to_owned());
            if let Some(sealed) = base_sealed {
                let version = var(&mut at)?;
                let last_sealed = match var(&mut at)? {
                    0 => None,
                    n if n <= sealed => Some(n - 1),
                    _ => return None,
                };
                base_streams.push((version, last_sealed));
            }
        }
        let frame_count = var(&mut at)?;
        if frame_count > left(at) / 5 {
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
        // with a base, the ids are checked once, as the stream table is built
        if base_sealed.is_none() {
            let mut seen = std::collections::HashSet::new();
            if !stream_ids.iter().all(|s| seen.insert(s.as_str())) {
                return None;
            }
        }
        Some(IndexFile {
            covered,
            head,
            stream_ids,
            frames,
            ids,
            from_start,
            base: base_sealed.map(|sealed| Base {
                sealed,
                streams: base_streams,
            }),
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
    fn a_segment_is_sealed_only_once_a_later_one_has_a_published_frame() {
        let mut index: Index = Index::new(LogOffset::new(0, 32));
        for p in 1..=3 {
            index.push("s", entry(p, p, 1), &ids(1)).unwrap();
        }
        // the writer has counted segment 1, but published none of its frames yet: the
        // last frames of segment 0 may still be on their way
        assert!(index.segment_to_seal(1).is_none());
        let mut next = entry(4, 4, 1);
        next.at = FrameRef {
            segment: 1,
            offset: 32,
            len: 100,
        };
        index.push("s", next, &ids(1)).unwrap();
        let frames = index.segment_to_seal(1).unwrap();
        assert_eq!((frames.segment, frames.frames.len()), (0, 3));
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
