//! The readers: one stream's frames found through the index, and the global log read in
//! order through a read-ahead window; both hand out a frame at a time from a buffer they
//! reuse, decoded into owned events ([`Buffered`]) or lent to a visitor ([`visit`]).

use super::{Shared, corrupted, read};
use crate::format::{self, Frame};
use crate::index::{FrameEntry, Located};
use crate::read_ahead::ReadAhead;
use crate::seal::{Sealed, SealedError, StreamRun};
use es_core::{RecordedEvent, RecordedEventRef, StoreError};
use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::sync::Arc;

/// Frames fetched from the index per lock acquisition.
const FRAMES_PER_FETCH: usize = 64;

/// Frames a log-order read takes from the index at once: enough to let its read-ahead
/// window span a megabyte of small frames.
const LOG_FRAMES_PER_FETCH: usize = 1024;

/// Yields the events of frames that a [`FrameSource`] decodes one frame at a time, and
/// stops for good after an error.
pub(super) struct Buffered<S> {
    source: S,
    events: VecDeque<RecordedEvent>,
    failed: bool,
}

impl<S> Buffered<S> {
    pub(super) fn new(source: S) -> Self {
        Buffered {
            source,
            events: VecDeque::new(),
            failed: false,
        }
    }
}

/// Frames in reading order.
pub(super) trait FrameSource {
    /// The next frame, checked; `None` after the last.
    fn next_frame(&mut self) -> Result<Option<NextFrame<'_>>, StoreError>;
}

/// A checked frame, lent from the reader's buffer.
pub(super) struct NextFrame<'b> {
    bytes: &'b [u8],
    /// What the index says of it.
    entry: FrameEntry,
    /// Its events before this many are not wanted.
    skip: u64,
    /// The stream it must belong to, in a read of one stream.
    stream_id: Option<&'b str>,
}

impl NextFrame<'_> {
    /// Parses the frame's header, and checks that it is the frame the index describes.
    #[inline]
    fn parse(&self) -> Result<Frame<'_>, StoreError> {
        let (bytes, entry) = (self.bytes, &self.entry);
        let body = &bytes[format::FRAME_PREFIX_LEN..bytes.len() - format::FRAME_SUFFIX_LEN];
        let frame = Frame::parse(body).map_err(|e| corrupted(entry.at, &e.to_string()))?;
        if frame.place.first_position != entry.first_position
            || frame.place.first_version != entry.first_version
            || frame.count != entry.count
            || self.stream_id.is_some_and(|s| s != frame.stream_id)
        {
            return Err(corrupted(entry.at, "the frame does not match the index"));
        }
        Ok(frame)
    }

    /// Decodes the wanted events into owned events.
    fn decode_into(&self, out: &mut VecDeque<RecordedEvent>) -> Result<(), StoreError> {
        self.parse()?
            .into_recorded(self.skip, out)
            .map_err(|e| corrupted(self.entry.at, &e.to_string()))
    }
}

impl<S: FrameSource> Iterator for Buffered<S> {
    type Item = Result<RecordedEvent, StoreError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        while self.events.is_empty() {
            let decoded = match self.source.next_frame() {
                Ok(Some(frame)) => frame.decode_into(&mut self.events),
                Ok(None) => return None,
                Err(e) => Err(e),
            };
            if let Err(e) = decoded {
                self.failed = true;
                return Some(Err(e));
            }
        }
        self.events.pop_front().map(Ok)
    }
}

/// Lends the events of `source`'s frames to `visit`, borrowed from the reader's buffer,
/// until `visit` breaks or the frames end: nothing is allocated per event but the
/// metadata of events that have some.
pub(super) fn visit(
    mut source: impl FrameSource,
    visit: &mut dyn FnMut(RecordedEventRef<'_>) -> ControlFlow<()>,
) -> Result<(), StoreError> {
    while let Some(next) = source.next_frame()? {
        let mut frame = next.parse()?;
        let at = next.entry.at;
        for i in 0..frame.count {
            let raw = frame
                .next_event()
                .map_err(|e| corrupted(at, &e.to_string()))?;
            if i < next.skip {
                continue;
            }
            let metadata = raw.metadata().map_err(|e| corrupted(at, &e.to_string()))?;
            let event = raw.borrowed(frame.stream_id, frame.place, i, metadata.as_ref());
            if visit(event).is_break() {
                return Ok(());
            }
        }
        frame.finish().map_err(|e| corrupted(at, &e.to_string()))?;
    }
    Ok(())
}

/// One stream's frames, found through the index.
pub(super) struct StreamReader<'a> {
    shared: &'a Shared,
    /// Sealed segments still to read, oldest first, with the stream's run in each.
    sealed: VecDeque<(Arc<Sealed>, StreamRun)>,
    /// The version the last walk back through sealed segments started from: a second
    /// walk from the same version would find nothing new.
    walked_from: Option<u64>,
    stream_id: String,
    next_version: u64,
    frames: VecDeque<FrameEntry>,
    buf: Vec<u8>,
}

impl<'a> StreamReader<'a> {
    /// Reads `stream_id` from `from_version` on.
    pub(super) fn new(shared: &'a Shared, stream_id: &str, from_version: u64) -> Self {
        StreamReader {
            shared,
            stream_id: stream_id.to_owned(),
            next_version: from_version.max(1),
            frames: VecDeque::new(),
            sealed: VecDeque::new(),
            walked_from: None,
            // room for the usual frame, so that frames of a few hundred bytes are read
            // into one allocation
            buf: Vec::with_capacity(1024),
        }
    }
}

impl StreamReader<'_> {
    /// Fills `frames` with the next frames of the stream: from the next sealed segment
    /// that holds it, or from the recent frames in memory. When versions from
    /// `next_version` on are no longer recent (they were sealed), the sealed segments
    /// holding them are found by following the stream's chain of segments back from the
    /// newest one.
    fn fetch(&mut self) -> Result<(), StoreError> {
        loop {
            if let Some((sealed, run)) = self.sealed.pop_front() {
                let frames = self
                    .shared
                    .with_stream_table(&sealed, |src| {
                        sealed.stream_frames(src, &run, self.next_version)
                    })
                    .map_err(|e| self.shared.sealed_failed(sealed.segment, e))?;
                self.frames.extend(frames);
                if self.frames.is_empty() {
                    continue;
                }
                return Ok(());
            }
            let last_sealed = {
                let index = read(&self.shared.published);
                let Some(stream) = index.stream(&self.stream_id) else {
                    return Ok(());
                };
                if stream.version < self.next_version {
                    return Ok(());
                }
                let recent =
                    index.stream_frames(&self.stream_id, self.next_version, FRAMES_PER_FETCH);
                if recent
                    .first()
                    .is_some_and(|f| f.first_version <= self.next_version)
                {
                    self.frames.extend(recent);
                    return Ok(());
                }
                stream.last_sealed
            };
            let again = self.walked_from == Some(self.next_version);
            self.walked_from = Some(self.next_version);
            if !again {
                self.walk_back(last_sealed)?;
            }
            if self.sealed.is_empty() {
                return Err(StoreError::Corrupted(es_core::store::Corruption::new(
                    es_core::store::DataLocation::StoredEvent {
                        stream_id: Some(self.stream_id.to_string()),
                        stream_version: Some(self.next_version),
                        position: None,
                    },
                    "the index lists it, but no segment holds it",
                )));
            }
        }
    }

    /// Collects the sealed segments holding versions from `next_version` on, following
    /// the chain back from `newest`.
    fn walk_back(&mut self, newest: Option<u64>) -> Result<(), StoreError> {
        let mut chain = Vec::new();
        let mut at = newest;
        while let Some(segment) = at {
            let sealed = read(&self.shared.published)
                .sealed
                .get(segment as usize)
                .cloned();
            let Some(sealed) = sealed else {
                return Err(StoreError::Corrupted(es_core::store::Corruption::new(
                    es_core::store::DataLocation::StoredEvent {
                        stream_id: Some(self.stream_id.to_string()),
                        stream_version: Some(self.next_version),
                        position: None,
                    },
                    format!(
                        "the stream's index names segment {segment} as sealed, which it is not"
                    ),
                )));
            };
            let run = self
                .shared
                .with_stream_table(&sealed, |src| sealed.find_stream(src, &self.stream_id))
                .map_err(|e| self.shared.sealed_failed(segment, e))?
                .ok_or_else(|| {
                    self.shared.sealed_failed(
                        segment,
                        SealedError::Damaged {
                            offset: 0,
                            reason: format!("stream `{}` is missing from it", self.stream_id),
                        },
                    )
                })?;
            if run.last_version < self.next_version {
                break;
            }
            at = run.previous.filter(|&p| p < segment);
            let reached = run.first_version <= self.next_version;
            chain.push((sealed, run));
            if reached {
                break;
            }
        }
        self.sealed.extend(chain.into_iter().rev());
        Ok(())
    }
}

impl FrameSource for StreamReader<'_> {
    fn next_frame(&mut self) -> Result<Option<NextFrame<'_>>, StoreError> {
        if self.frames.is_empty() {
            self.fetch()?;
        }
        let Some(entry) = self.frames.pop_front() else {
            return Ok(None);
        };
        if entry.first_version + entry.count <= self.next_version {
            return Err(corrupted(
                entry.at,
                "the index lists a frame before the version being read",
            ));
        }
        self.shared.read_frame(entry.at, &mut self.buf)?;
        let skip = self.next_version.saturating_sub(entry.first_version);
        self.next_version = entry.first_version + entry.count;
        Ok(Some(NextFrame {
            bytes: &self.buf,
            entry,
            skip,
            stream_id: Some(&self.stream_id),
        }))
    }
}

/// The global log's frames, read sequentially through a read-ahead window.
pub(super) struct LogReader<'a> {
    shared: &'a Shared,
    next_position: u64,
    frames: VecDeque<FrameEntry>,
    window: ReadAhead,
    /// A frame copied from the newest bytes in memory.
    recent: Vec<u8>,
}

impl<'a> LogReader<'a> {
    /// Reads the log from `from_position` on.
    pub(super) fn new(shared: &'a Shared, from_position: u64) -> Self {
        LogReader {
            shared,
            next_position: from_position.max(1),
            frames: VecDeque::new(),
            window: ReadAhead::default(),
            recent: Vec::new(),
        }
    }

    /// The checked frame at `entry`. The window reads ahead, but never past
    /// `known_end`: the end of frames already published, since bytes beyond may still
    /// change (zero room being filled) or vanish (room cut off when a segment is sealed).
    fn frame(&mut self, entry: &FrameEntry, known_end: u64) -> Result<&[u8], StoreError> {
        let at = entry.at;
        let len = at.len as usize;
        if !self.window.holds(at.segment, at.offset, len) {
            if read(&self.shared.recent).copy(at, &mut self.recent) {
                format::check_frame(&self.recent).map_err(|e| corrupted(at, &e.to_string()))?;
                return Ok(&self.recent);
            }
            let file = self.shared.segment(at.segment)?;
            let limit = known_end.max(at.offset + u64::from(at.len));
            self.window
                .slice(&*file, at.segment, at.offset, len, limit)
                .map_err(|e| self.shared.read_failed(at, e))?;
        }
        let bytes = self
            .window
            .held(at.segment, at.offset, len)
            // cannot happen: the limit covers the frame
            .ok_or_else(|| corrupted(at, "the frame lies past the log's end"))?;
        format::check_frame(bytes).map_err(|e| corrupted(at, &e.to_string()))?;
        Ok(bytes)
    }
}

impl FrameSource for LogReader<'_> {
    fn next_frame(&mut self) -> Result<Option<NextFrame<'_>>, StoreError> {
        if self.frames.is_empty() {
            let sealed = {
                let index = read(&self.shared.published);
                match index.locate(self.next_position) {
                    None => None,
                    Some(Located::Recent(..)) => {
                        self.frames.extend(
                            index.recent_frames_from(self.next_position, LOG_FRAMES_PER_FETCH),
                        );
                        None
                    }
                    Some(Located::Sealed(sealed)) => Some(Arc::clone(sealed)),
                }
            };
            if let Some(sealed) = sealed {
                let file = self.shared.sealed_index(sealed.segment)?;
                let frames = sealed
                    .frames_from(&*file, self.next_position, LOG_FRAMES_PER_FETCH)
                    .map_err(|e| self.shared.sealed_failed(sealed.segment, e))?;
                self.frames.extend(frames);
            }
        }
        let Some(entry) = self.frames.pop_front() else {
            return Ok(None);
        };
        let known_end = self
            .frames
            .iter()
            .rev()
            .find(|f| f.at.segment == entry.at.segment)
            .map_or(0, |f| f.at.offset + u64::from(f.at.len));
        if entry.first_position + entry.count <= self.next_position {
            // an index that lists a frame behind the reader would make it go round
            return Err(corrupted(
                entry.at,
                "the index lists a frame before the position being read",
            ));
        }
        let skip = self.next_position.saturating_sub(entry.first_position);
        self.next_position = entry.first_position + entry.count;
        let bytes = self.frame(&entry, known_end)?;
        Ok(Some(NextFrame {
            bytes,
            entry,
            skip,
            stream_id: None,
        }))
    }
}
