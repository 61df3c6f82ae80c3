//! The stream index: which frames hold each stream and where each frame sits.
//!
//! It is derived from the log and persisted in `index.dat` so that opening a large store
//! does not rescan it. The file records the log position it covers; on open, frames
//! after that point are scanned and added. A missing, stale or damaged index file is
//! rebuilt from the log.
//!
//! ```text
//! index.dat
//!   magic b"ESINDEX1"
//!   covered end: segment u64, offset u64   (the log up to here is indexed)
//!   head position: u64
//!   stream count: varint, then per stream: varint length + UTF-8 id
//!   frame count: varint, then per frame in log order:
//!     stream ordinal varint, event count varint, segment varint, offset varint,
//!     frame length varint
//!   event ids: 16 bytes per event, in position order
//!   CRC32C of everything before it: u32
//! ```

use crate::layout::LogOffset;
use integer_encoding::VarInt;
use std::collections::HashMap;
use std::hash::BuildHasher;
use uuid::Uuid;

const INDEX_MAGIC: &[u8; 8] = b"ESINDEX1";

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

/// One stream: its version and its frames in order.
#[derive(Debug, Clone, Default)]
pub struct StreamEntry {
    /// Ordinal in the index file's stream table.
    pub ordinal: u32,
    /// Current version.
    pub version: u64,
    /// Indices into [`Index::frames`] of this stream's frames.
    pub frames: Vec<u32>,
}

/// The in-memory index. `H` is the stream map's hasher (tests force collisions with it).
#[derive(Debug, Clone)]
pub struct Index<H = std::collections::hash_map::RandomState> {
    /// Streams by id.
    pub streams: HashMap<String, StreamEntry, H>,
    /// Stream ids by ordinal.
    pub stream_ids: Vec<String>,
    /// Every frame in log order.
    pub frames: Vec<FrameEntry>,
    /// Position of the last event (0 when empty).
    pub head: u64,
    /// End of the indexed log.
    pub covered: LogOffset,
}

impl<H: BuildHasher + Default> Index<H> {
    /// An empty index covering nothing.
    pub fn new(first_segment_end: LogOffset) -> Self {
        Index {
            streams: HashMap::default(),
            stream_ids: Vec::new(),
            frames: Vec::new(),
            head: 0,
            covered: first_segment_end,
        }
    }

    /// The version of a stream (0 when unknown).
    pub fn version(&self, stream_id: &str) -> u64 {
        self.streams.get(stream_id).map_or(0, |s| s.version)
    }

    /// Adds a frame after checking it continues the log and its stream.
    pub fn push(&mut self, stream_id: &str, entry: FrameEntry) -> Result<(), String> {
        if entry.first_position != self.head + 1 {
            return Err(format!(
                "frame starts at position {}, expected {}",
                entry.first_position,
                self.head + 1
            ));
        }
        let frame_no = u32::try_from(self.frames.len())
            .map_err(|_| "more than 4 billion frames".to_owned())?;
        let stream = match self.streams.get_mut(stream_id) {
            Some(s) => s,
            None => {
                let ordinal = u32::try_from(self.stream_ids.len())
                    .map_err(|_| "more than 4 billion streams".to_owned())?;
                self.stream_ids.push(stream_id.to_owned());
                self.streams
                    .entry(stream_id.to_owned())
                    .or_insert(StreamEntry {
                        ordinal,
                        ..StreamEntry::default()
                    })
            }
        };
        if entry.first_version != stream.version + 1 {
            return Err(format!(
                "frame of stream `{stream_id}` starts at version {}, expected {}",
                entry.first_version,
                stream.version + 1
            ));
        }
        stream.version += entry.count;
        stream.frames.push(frame_no);
        self.head += entry.count;
        self.covered = entry.at.end();
        self.frames.push(entry);
        Ok(())
    }

    /// The index of the frame holding `position`, if any.
    pub fn frame_of_position(&self, position: u64) -> Option<usize> {
        if position == 0 || position > self.head {
            return None;
        }
        let i = self
            .frames
            .partition_point(|f| f.first_position + f.count <= position);
        (i < self.frames.len()).then_some(i)
    }

    /// Up to `max` frames of a stream holding versions from `from_version` on, starting
    /// with the one that holds `from_version`.
    pub fn stream_frames(&self, stream_id: &str, from_version: u64, max: usize) -> Vec<FrameEntry> {
        let Some(stream) = self.streams.get(stream_id) else {
            return Vec::new();
        };
        let frames = &stream.frames;
        let start = frames.partition_point(|&f| {
            let e = &self.frames[f as usize];
            e.first_version + e.count <= from_version
        });
        frames[start.min(frames.len())..]
            .iter()
            .take(max)
            .map(|&f| self.frames[f as usize])
            .collect()
    }

    /// Serializes the index with the ids of every event in position order.
    pub fn encode(&self, ids: &[Uuid]) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.frames.len() * 12 + ids.len() * 16);
        out.extend_from_slice(INDEX_MAGIC);
        out.extend_from_slice(&self.covered.segment.to_le_bytes());
        out.extend_from_slice(&self.covered.offset.to_le_bytes());
        out.extend_from_slice(&self.head.to_le_bytes());
        let mut buf = [0u8; 10];
        let mut var = |out: &mut Vec<u8>, v: u64| {
            let n = v.encode_var(&mut buf);
            out.extend_from_slice(&buf[..n]);
        };
        var(&mut out, self.stream_ids.len() as u64);
        for id in &self.stream_ids {
            var(&mut out, id.len() as u64);
            out.extend_from_slice(id.as_bytes());
        }
        var(&mut out, self.frames.len() as u64);
        let mut ordinal_of_frame = vec![0u32; self.frames.len()];
        for s in self.streams.values() {
            for &f in &s.frames {
                ordinal_of_frame[f as usize] = s.ordinal;
            }
        }
        for (f, o) in self.frames.iter().zip(ordinal_of_frame) {
            var(&mut out, u64::from(o));
            var(&mut out, f.count);
            var(&mut out, f.at.segment);
            var(&mut out, f.at.offset);
            var(&mut out, u64::from(f.at.len));
        }
        for id in ids {
            out.extend_from_slice(id.as_bytes());
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Parses an index file; `None` when it is damaged or inconsistent (then it is
    /// rebuilt from the log).
    pub fn decode(bytes: &[u8]) -> Option<(Self, Vec<Uuid>)> {
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
        if take(&mut at, 8)? != INDEX_MAGIC {
            return None;
        }
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
        let mut index = Index::new(covered);
        for _ in 0..stream_count {
            let len = usize::try_from(var(&mut at)?).ok()?;
            let id = std::str::from_utf8(take(&mut at, len)?).ok()?;
            index.stream_ids.push(id.to_owned());
        }
        let frame_count = var(&mut at)?;
        if frame_count > body.len() as u64 {
            return None;
        }
        index.frames.reserve(frame_count as usize);
        let mut versions = vec![0u64; index.stream_ids.len()];
        let mut frames_of: Vec<Vec<u32>> = vec![Vec::new(); index.stream_ids.len()];
        let mut position = 1u64;
        for frame_no in 0..frame_count {
            let ordinal = usize::try_from(var(&mut at)?).ok()?;
            let count = var(&mut at)?;
            let segment = var(&mut at)?;
            let offset = var(&mut at)?;
            let len = u32::try_from(var(&mut at)?).ok()?;
            let version = versions.get_mut(ordinal)?;
            if count == 0 {
                return None;
            }
            index.frames.push(FrameEntry {
                first_position: position,
                first_version: *version + 1,
                count,
                at: FrameRef {
                    segment,
                    offset,
                    len,
                },
            });
            *version = version.checked_add(count)?;
            position = position.checked_add(count)?;
            frames_of[ordinal].push(u32::try_from(frame_no).ok()?);
        }
        if position != head + 1 {
            return None;
        }
        let id_bytes = body.get(at..)?;
        if id_bytes.len() as u64 != head.checked_mul(16)? {
            return None;
        }
        let ids = id_bytes
            .chunks_exact(16)
            .map(|c| Uuid::from_slice(c).unwrap_or_default())
            .collect();
        for (ordinal, (id, frames)) in index.stream_ids.iter().zip(frames_of).enumerate() {
            let entry = StreamEntry {
                ordinal: ordinal as u32,
                version: versions[ordinal],
                frames,
            };
            if index.streams.insert(id.clone(), entry).is_some() {
                return None;
            }
        }
        index.head = head;
        Some((index, ids))
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
                index.push(s, entry(position, round * 2 + 1, 2)).unwrap();
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
        index.push("a-1", entry(1, 1, 2)).unwrap();
        assert!(
            index.push("a-1", entry(4, 3, 1)).is_err(),
            "gap in positions"
        );
        assert!(
            index.push("a-1", entry(3, 2, 1)).is_err(),
            "stream version repeats"
        );
        index.push("a-1", entry(3, 3, 1)).unwrap();
    }

    #[test]
    fn file_form_round_trips_and_rejects_damage() {
        let mut index: Index = Index::new(LogOffset::new(0, 32));
        index.push("a-1", entry(1, 1, 2)).unwrap();
        index.push("b-1", entry(3, 1, 1)).unwrap();
        index.push("a-1", entry(4, 3, 3)).unwrap();
        let ids: Vec<Uuid> = (0..6).map(|_| Uuid::new_v4()).collect();
        let bytes = index.encode(&ids);
        let (back, back_ids) =
            Index::<std::collections::hash_map::RandomState>::decode(&bytes).unwrap();
        assert_eq!(back.frames, index.frames);
        assert_eq!(back.head, 6);
        assert_eq!(back.covered, index.covered);
        assert_eq!(back_ids, ids);
        assert_eq!(back.stream_frames("a-1", 4, 10), vec![entry(4, 3, 3)]);
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert!(
                Index::<std::collections::hash_map::RandomState>::decode(&bad).is_none(),
                "byte {i}"
            );
        }
        for cut in 0..bytes.len() {
            assert!(
                Index::<std::collections::hash_map::RandomState>::decode(&bytes[..cut]).is_none()
            );
        }
    }
}
