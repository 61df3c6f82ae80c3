//! The readers: one stream's frames found through the index, and the global log read in
//! order through a read-ahead window; both hand out a frame at a time from a buffer they
//! reuse, decoded into owned events ([`Buffered`]) or lent to a visitor ([`visit`]).

use super::{Shared, StreamTable, corrupted, read};
use crate::format::{self, Frame, RawEvent};
use crate::index::{FrameEntry, FrameRef, Located};
use crate::read_ahead::ReadAhead;
use crate::seal::{Sealed, SealedError, StreamRun};
use crate::vfs::VfsFile;
use es_core::{RecordedEvent, RecordedEventRef, StoreError};
use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::sync::Arc;

/// Frames fetched from the index per lock acquisition.
const FRAMES_PER_FETCH: usize = 64;

/// Yields the events of frames that a [`FrameSource`] decodes, the events of each frame
/// all or none, and stops for good after an error, which comes after every event decoded
/// before it.
pub(super) struct Buffered<S> {
    source: S,
    events: VecDeque<RecordedEvent>,
    /// The error that ends the read, once the events before it are yielded.
    error: Option<StoreError>,
    failed: bool,
}

impl<S> Buffered<S> {
    pub(super) fn new(source: S) -> Self {
        Buffered {
            source,
            events: VecDeque::new(),
            error: None,
            failed: false,
        }
    }
}

/// Frames in reading order.
pub(super) trait FrameSource {
    /// The next frame, checked; `None` after the last.
    fn next_frame(&mut self) -> Result<Option<NextFrame<'_>>, StoreError>;

    /// Decodes into `out` up to [`FRAMES_PER_FILL`] frames that the source already holds
    /// and can hand over without a trip through [`FrameSource::next_frame`] each (none
    /// by default).
    fn own_held(&mut self, _out: &mut VecDeque<RecordedEvent>) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Frames an owned read decodes ahead of its caller: the frames checked together, so
/// that none is checked twice. More would cost more than they save, as the allocator's
/// per-thread cache (seven blocks of a size) then no longer holds the strings of the
/// events freed, each owning three: with 256 events ahead, a replay through owned events
/// took 17 % more instructions than one frame at a time, where with 3 frames it takes
/// 20 % fewer.
const FRAMES_PER_FILL: usize = 3;

/// A checked frame, lent from the reader's buffer, its header decoded.
pub(super) struct NextFrame<'b> {
    /// Its header; its events are still to decode.
    frame: Frame<'b>,
    /// Where it is.
    at: FrameRef,
    /// Its events before this many are not wanted.
    skip: u64,
}

impl NextFrame<'_> {
    /// Decodes the wanted events into owned events, all of them or, on error, none.
    fn decode_into(self, out: &mut VecDeque<RecordedEvent>) -> Result<(), StoreError> {
        decode_frame(self.frame, self.at, self.skip, out)
    }
}

/// Decodes the events of `frame` (at `at`) from the `skip`-th on into `out`: all of them
/// or, on error, none.
#[inline(always)]
fn decode_frame(
    frame: Frame<'_>,
    at: FrameRef,
    skip: u64,
    out: &mut VecDeque<RecordedEvent>,
) -> Result<(), StoreError> {
    let before = out.len();
    frame.into_recorded(skip, out).map_err(|e| {
        out.truncate(before);
        corrupted(at, &e.to_string())
    })
}

/// Decodes the header of the checked frame `bytes` at `at`.
#[inline(always)]
fn parse(bytes: &[u8], at: FrameRef) -> Result<Frame<'_>, StoreError> {
    let body = &bytes[format::FRAME_PREFIX_LEN..bytes.len() - format::FRAME_SUFFIX_LEN];
    Frame::parse(body).map_err(|e| corrupted(at, &e.to_string()))
}

impl<S: FrameSource> Iterator for Buffered<S> {
    type Item = Result<RecordedEvent, StoreError>;
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(event) = self.events.pop_front() {
                return Some(Ok(event));
            }
            if self.failed {
                return None;
            }
            if let Some(e) = self.error.take() {
                self.failed = true;
                return Some(Err(e));
            }
            if let Err(e) = self.source.own_held(&mut self.events) {
                self.error = Some(e);
                continue;
            }
            if !self.events.is_empty() {
                continue;
            }
            match self.source.next_frame() {
                Ok(Some(frame)) => {
                    if let Err(e) = frame.decode_into(&mut self.events) {
                        self.error = Some(e);
                    }
                }
                Ok(None) => return None,
                Err(e) => self.error = Some(e),
            }
        }
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
        let NextFrame { frame, at, skip } = next;
        if lend(frame, at, skip, visit)?.is_break() {
            return Ok(());
        }
    }
    Ok(())
}

/// [`visit`] for the global log: the frames the read-ahead window holds go through
/// [`LogReader::lend_held`], the rest (a run's first frame, a frame across the window's
/// end, a frame that fails its check) through [`LogReader::next_frame`].
pub(super) fn visit_log(
    mut reader: LogReader<'_>,
    visit: &mut dyn FnMut(RecordedEventRef<'_>) -> ControlFlow<()>,
) -> Result<(), StoreError> {
    loop {
        if reader.lend_held(visit)?.is_break() {
            return Ok(());
        }
        let Some(next) = reader.next_frame()? else {
            return Ok(());
        };
        let NextFrame { frame, at, skip } = next;
        if lend(frame, at, skip, visit)?.is_break() {
            return Ok(());
        }
    }
}

/// Lends the events of `frame` (at `at`) from the `skip`-th on to `visit`.
#[inline(always)]
fn lend(
    mut frame: Frame<'_>,
    at: FrameRef,
    skip: u64,
    visit: &mut dyn FnMut(RecordedEventRef<'_>) -> ControlFlow<()>,
) -> Result<ControlFlow<()>, StoreError> {
    for i in 0..frame.count {
        let raw = frame
            .next_event()
            .map_err(|e| corrupted(at, &e.to_string()))?;
        if i < skip {
            continue;
        }
        if lend_event(raw, &frame, i, at, visit)?.is_break() {
            return Ok(ControlFlow::Break(()));
        }
    }
    frame.finish().map_err(|e| corrupted(at, &e.to_string()))?;
    Ok(ControlFlow::Continue(()))
}

/// Lends event `i` of `frame` (at `at`), whose fields are `raw`, to `visit`.
#[inline(always)]
fn lend_event(
    raw: RawEvent<'_>,
    frame: &Frame<'_>,
    i: u64,
    at: FrameRef,
    visit: &mut dyn FnMut(RecordedEventRef<'_>) -> ControlFlow<()>,
) -> Result<ControlFlow<()>, StoreError> {
    let parsed;
    let metadata = if raw.metadata.is_empty() {
        None
    } else {
        parsed = raw.metadata().map_err(|e| corrupted(at, &e.to_string()))?;
        parsed.as_ref()
    };
    Ok(visit(raw.borrowed(
        frame.stream_id,
        frame.place,
        i,
        metadata,
    )))
}

/// One stream's frames, found through the index.
pub(super) struct StreamReader<'a> {
    shared: &'a Shared,
    /// Sealed segments still to read, oldest first, with the stream's run in each, and
    /// its table when cached whole and the reader lives for one call. Other tables are
    /// found again when they are read: a reader holds no sealed index open between
    /// reads, so that the bounded set of open files stays bounded.
    sealed: VecDeque<(Arc<Sealed>, StreamRun, Option<StreamTable>)>,
    /// The segment file the last frame was read from, when the reader lives for one
    /// call (a visit): a stream's frames in one segment are then read through one
    /// handle. A reader handed to the caller as an iterator keeps none.
    file: Option<(u64, Arc<dyn VfsFile>)>,
    keep_file: bool,
    /// The version the last walk back through sealed segments started from: a second
    /// walk from the same version would find nothing new.
    walked_from: Option<u64>,
    stream_id: String,
    next_version: u64,
    frames: VecDeque<FrameEntry>,
    /// The recent frames found before a walk back through sealed segments, which follow
    /// those segments' frames: read after them without asking the index again.
    after_sealed: Vec<FrameEntry>,
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
            after_sealed: Vec::new(),
            file: None,
            keep_file: false,
            walked_from: None,
            // room for the usual frame, so that frames of a few hundred bytes are read
            // into one allocation
            buf: Vec::with_capacity(1024),
        }
    }
}

impl StreamReader<'_> {
    /// Lets the reader keep the segment file it reads from between frames: for a reader
    /// that lives for one call.
    pub(super) fn for_one_call(mut self) -> Self {
        self.keep_file = true;
        self
    }

    /// Fills `frames` with the next frames of the stream: from the next sealed segment
    /// that holds it, or from the recent frames in memory. When versions from
    /// `next_version` on are no longer recent (they were sealed), the sealed segments
    /// holding them are found by following the stream's chain of segments back from the
    /// newest one.
    fn fetch(&mut self) -> Result<(), StoreError> {
        loop {
            if let Some((sealed, run, kept)) = self.sealed.pop_front() {
                let table = match kept {
                    Some(table) => Ok(table),
                    None => self.shared.stream_table(&sealed),
                };
                let listed = table.and_then(|table| {
                    let more = table.with(|src| {
                        sealed.stream_frames_into(
                            src,
                            &run,
                            self.next_version,
                            FRAMES_PER_FETCH,
                            &mut self.frames,
                        )
                    })?;
                    Ok((more, table))
                });
                match listed {
                    Err(e) => {
                        // none of a damaged list's frames is read
                        self.frames.clear();
                        return Err(self.shared.sealed_failed(sealed.segment, e));
                    }
                    // the rest of the run is listed once these frames are read, from the
                    // version they end at
                    Ok((true, _)) if self.frames.is_empty() => {
                        // a list in order holds a frame past the version searched for
                        // where its bisection ends: this one is out of order
                        return Err(self.shared.sealed_failed(
                            sealed.segment,
                            SealedError::Damaged {
                                offset: 0,
                                reason: format!(
                                    "the list of the frames of stream `{}` is out of order",
                                    self.stream_id
                                ),
                            },
                        ));
                    }
                    Ok((true, table)) => {
                        let keep = self.kept(&table);
                        self.sealed.push_front((sealed, run, keep));
                    }
                    Ok((false, _)) => {}
                }
                if self.frames.is_empty() {
                    continue;
                }
                return Ok(());
            }
            let mut after_sealed = std::mem::take(&mut self.after_sealed);
            after_sealed.retain(|f| f.first_version + f.count > self.next_version);
            if after_sealed
                .first()
                .is_some_and(|f| f.first_version <= self.next_version)
            {
                self.frames.extend(after_sealed);
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
                let recent = index.frames_of(stream, self.next_version, FRAMES_PER_FETCH);
                if recent
                    .first()
                    .is_some_and(|f| f.first_version <= self.next_version)
                {
                    self.frames.extend(recent);
                    return Ok(());
                }
                self.after_sealed = recent;
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

    /// `table`, for the read of its frames, when it holds no file and the reader lives
    /// for one call: an iterator handed to the caller holds no table the cache may have
    /// let go.
    fn kept(&self, table: &StreamTable) -> Option<StreamTable> {
        if self.keep_file {
            table.without_file()
        } else {
            None
        }
    }

    /// Collects the sealed segments holding versions from `next_version` on, following
    /// the chain back from `newest`.
    fn walk_back(&mut self, newest: Option<u64>) -> Result<(), StoreError> {
        let mut chain = Vec::new();
        let hash = crate::seal::stream_hash(&self.stream_id);
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
            let table = self
                .shared
                .stream_table(&sealed)
                .map_err(|e| self.shared.sealed_failed(segment, e))?;
            let run = table
                .with(|src| sealed.find_stream_hashed(src, &self.stream_id, hash))
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
            // each segment's list of the stream's frames is a likely cache miss: asked
            // for while the walk goes on, they arrive together
            table.touch_frames(&sealed, &run);
            chain.push((sealed, run, self.kept(&table)));
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
        if entry.first_version > self.next_version {
            // a stream's frames follow each other without a gap: an index that lists one
            // after a gap has lost the frames between
            return Err(corrupted(
                entry.at,
                &format!(
                    "the index lists a frame from version {} where the stream continues at \
                     version {}",
                    entry.first_version, self.next_version
                ),
            ));
        }
        let file = if self.keep_file {
            &mut self.file
        } else {
            &mut None
        };
        self.shared.read_frame(entry.at, &mut self.buf, file)?;
        let frame = parse(&self.buf, entry.at)?;
        if frame.place.first_position != entry.first_position
            || frame.place.first_version != entry.first_version
            || frame.count != entry.count
            || frame.stream_id != self.stream_id
        {
            return Err(corrupted(entry.at, "the frame does not match the index"));
        }
        let skip = self.next_version.saturating_sub(entry.first_version);
        self.next_version = entry.first_version + entry.count;
        Ok(Some(NextFrame {
            frame,
            at: entry.at,
            skip,
        }))
    }
}

/// The global log's frames, read sequentially through a read-ahead window. The index
/// gives where a read starts and how far each segment's published frames go; within a
/// segment, each frame is found by the length of the one before it, and must continue
/// the positions of the one before it.
pub(super) struct LogReader<'a> {
    shared: &'a Shared,
    next_position: u64,
    run: Option<Run>,
    window: ReadAhead,
    /// Frames of the window checked ahead of the read.
    checked: Checked,
}

/// Frames back to back in one segment, read one after the other.
#[derive(Debug, Clone, Copy)]
struct Run {
    segment: u64,
    /// The next frame's offset.
    offset: u64,
    /// Where the frames the run may read end: the segment's sealed length, or the end of
    /// its newest published frame. Bytes beyond may still change (zero room being
    /// filled) or vanish (room cut off when a segment is sealed).
    end: u64,
    /// What the index says of the run's first frame while it is still to read: it may
    /// start before the position read, and must be the frame the index describes. Every
    /// later one starts where the one before ended.
    listed: Option<FrameEntry>,
}

impl<'a> LogReader<'a> {
    /// Reads the log from `from_position` on.
    pub(super) fn new(shared: &'a Shared, from_position: u64) -> Self {
        LogReader {
            shared,
            next_position: from_position.max(1),
            run: None,
            window: ReadAhead::default(),
            checked: Checked::default(),
        }
    }

    /// Finds the frame holding `next_position` through the index, and how far the
    /// published frames of its segment go; `None` past the log's head.
    fn locate(&self) -> Result<Option<Run>, StoreError> {
        let sealed = {
            let index = read(&self.shared.published);
            match index.locate(self.next_position) {
                None => return Ok(None),
                Some(Located::Recent(entry, _)) => {
                    return Ok(Some(Run {
                        segment: entry.at.segment,
                        offset: entry.at.offset,
                        end: index.recent_end_in(entry.at.segment),
                        listed: Some(entry),
                    }));
                }
                Some(Located::Sealed(sealed)) => Arc::clone(sealed),
            }
        };
        let file = self.shared.sealed_index(sealed.segment)?;
        let entry = sealed
            .frames_from(&*file, self.next_position, 1)
            .map_err(|e| self.shared.sealed_failed(sealed.segment, e))?
            .into_iter()
            .next()
            .ok_or_else(|| {
                self.shared.sealed_failed(
                    sealed.segment,
                    SealedError::Damaged {
                        offset: 0,
                        reason: format!("no frame holds position {}", self.next_position),
                    },
                )
            })?;
        Ok(Some(Run {
            segment: sealed.segment,
            offset: entry.at.offset,
            end: sealed.len,
            listed: Some(entry),
        }))
    }
}

/// The checked frame at `run`'s offset, its length taken from its prefix, through the
/// window, which reads ahead but never past the run's end: from the newest bytes in
/// memory when they hold the frame, else from the file.
fn walk<'w>(
    shared: &Shared,
    window: &'w mut ReadAhead,
    checked: &mut Checked,
    run: &Run,
) -> Result<(&'w [u8], FrameRef), StoreError> {
    let (segment, offset) = (run.segment, run.offset);
    let mut at = FrameRef {
        segment,
        offset,
        len: 0,
    };
    // the window, filled from the newest bytes in memory or from the file unless it holds
    // the `want` bytes at `offset` already
    let mut fill = |window: &mut ReadAhead, at: FrameRef, want: usize| -> Result<(), StoreError> {
        if window.holds(segment, offset, want) {
            return Ok(());
        }
        *checked = Checked::default();
        if !read(&shared.recent).lend_to(segment, offset, run.end, want, window) {
            let file = shared.segment(segment)?;
            window
                .slice(&*file, segment, offset, want, run.end)
                .map_err(|e| shared.read_failed(at, e))?;
        }
        Ok(())
    };
    fill(window, at, format::FRAME_PREFIX_LEN)?;
    let prefix = window
        .held(segment, offset, format::FRAME_PREFIX_LEN)
        .ok_or_else(|| corrupted(at, "a frame runs past the log's end"))?;
    let len =
        format::frame_len(prefix, shared.frame_cap).map_err(|e| corrupted(at, &e.to_string()))?;
    at.len = u32::try_from(len).map_err(|_| corrupted(at, "the frame is too long"))?;
    if offset
        .checked_add(len as u64)
        .is_none_or(|end| end > run.end)
    {
        return Err(corrupted(at, "a frame runs past the log's end"));
    }
    fill(window, at, len)?;
    let window = &*window;
    let bytes = window
        .held(segment, offset, len)
        // cannot happen: the run's end covers the frame
        .ok_or_else(|| corrupted(at, "a frame runs past the log's end"))?;
    if !checked.take(segment, offset, len) {
        *checked = check_ahead(shared, window, run, bytes, at)?;
    }
    Ok((bytes, at))
}

/// Frames of the window checked ahead of the read: the next ones it will reach, each
/// by its segment, offset and length. Valid only while the window holds what it held
/// when they were checked, so emptied whenever it reads again.
#[derive(Debug, Default, Clone, Copy)]
struct Checked {
    segment: u64,
    /// `(offset, len)` of each, in the order the read reaches them.
    frames: [(u64, usize); 2],
    count: usize,
}

impl Checked {
    /// Whether the frame of `len` bytes at `offset` of `segment` is exactly the next one
    /// checked; if so, it is no longer ahead.
    fn take(&mut self, segment: u64, offset: u64, len: usize) -> bool {
        if self.count == 0 || self.segment != segment || self.frames[0] != (offset, len) {
            return false;
        }
        self.frames[0] = self.frames[1];
        self.count -= 1;
        true
    }
}

/// Checks `first` (the frame at `at`, in the window) and the two frames after it when
/// the window holds them whole inside the run, their checksums computed side by side.
/// `Err` names what is wrong with `first`; a later frame that fails is left unchecked, to
/// be checked, and reported, on its own when the read reaches it.
fn check_ahead(
    shared: &Shared,
    window: &ReadAhead,
    run: &Run,
    first: &[u8],
    at: FrameRef,
) -> Result<Checked, StoreError> {
    let mut frames = [first, &[][..], &[][..]];
    let mut checked = Checked {
        segment: at.segment,
        ..Checked::default()
    };
    let mut next = at.offset + u64::from(at.len);
    for (slot, place) in frames[1..].iter_mut().zip(&mut checked.frames) {
        let Some(len) = window
            .held(at.segment, next, format::FRAME_PREFIX_LEN)
            .and_then(|p| format::frame_len(p, shared.frame_cap).ok())
        else {
            break;
        };
        let Some(frame) = next
            .checked_add(len as u64)
            .filter(|&end| end <= run.end)
            .and_then(|_| window.held(at.segment, next, len))
        else {
            break;
        };
        *slot = frame;
        *place = (next, len);
        next += len as u64;
    }
    let intact = format::frames_intact(frames);
    if !intact[0] {
        format::check_frame(first).map_err(|e| corrupted(at, &e.to_string()))?;
        // cannot happen: both checks read the same bytes
        return Err(corrupted(at, "the frame does not match its checksum"));
    }
    // the frames after the first that passed, up to the first that did not (an empty
    // slot never passes)
    checked.count = intact[1..].iter().take_while(|&&ok| ok).count();
    Ok(checked)
}

impl LogReader<'_> {
    /// Lends the events of the frames that continue the current run inside the window,
    /// checked three at a time, without a trip through [`FrameSource::next_frame`] per
    /// frame: the loop a replay spends its time in. It stops before a run's first frame
    /// (which must match the index), a frame the window does not hold whole, and a frame
    /// that fails its check, all left to `next_frame`, which reads, checks and reports
    /// them.
    fn lend_held(
        &mut self,
        visit: &mut dyn FnMut(RecordedEventRef<'_>) -> ControlFlow<()>,
    ) -> Result<ControlFlow<()>, StoreError> {
        self.each_held(&mut Lend(visit))
    }

    /// Hands each frame that continues the current run inside the window, checked and its
    /// header decoded, to `each`; stops where `each` breaks, after the frame it broke on.
    /// See [`LogReader::lend_held`] for the frames it leaves.
    #[inline(always)]
    fn each_held(&mut self, each: &mut impl HeldFrame) -> Result<ControlFlow<()>, StoreError> {
        let LogReader {
            shared,
            next_position,
            run,
            window,
            checked,
            ..
        } = self;
        let Some(run) = run.as_mut().filter(|run| run.listed.is_none()) else {
            return Ok(ControlFlow::Continue(()));
        };
        let Some(held) = window.held_before(run.segment, run.offset, run.end) else {
            return Ok(ControlFlow::Continue(()));
        };
        // frames checked ahead by `next_frame` are checked again here
        *checked = Checked::default();
        let mut from = 0;
        loop {
            let (frames, count) = whole_frames(&held[from..], shared.frame_cap);
            if count == 0 {
                return Ok(ControlFlow::Continue(()));
            }
            let intact = format::frames_intact(frames);
            for (bytes, intact) in frames[..count].iter().zip(intact) {
                if !intact {
                    return Ok(ControlFlow::Continue(()));
                }
                let at = FrameRef {
                    segment: run.segment,
                    offset: run.offset,
                    // at most the frame cap and the framing: far below u32::MAX
                    len: bytes.len() as u32,
                };
                let body = &bytes[format::FRAME_PREFIX_LEN..bytes.len() - format::FRAME_SUFFIX_LEN];
                // each arm hands over its own frame, so that the decoded header is not moved
                let handed = match Frame::parse_usual(body) {
                    Some(frame) => each.take(frame, at, next_position)?,
                    None => each.take(parse(bytes, at)?, at, next_position)?,
                };
                run.offset += bytes.len() as u64;
                from += bytes.len();
                if handed.is_break() {
                    return Ok(ControlFlow::Break(()));
                }
            }
        }
    }
}

/// What [`LogReader::each_held`] does with each frame, a trait rather than a closure so
/// that it is inlined into both arms of the loop (as a closure it was called, its
/// 176-byte header moved into the call: 7 % more instructions per replayed event).
trait HeldFrame {
    /// Takes `frame` (at `at`), which must hold the log's events from `next_position` on,
    /// and moves `next_position` past it.
    fn take(
        &mut self,
        frame: Frame<'_>,
        at: FrameRef,
        next_position: &mut u64,
    ) -> Result<ControlFlow<()>, StoreError>;
}

/// Lends each frame's events to a visitor.
struct Lend<'v, 'f>(&'v mut (dyn FnMut(RecordedEventRef<'_>) -> ControlFlow<()> + 'f));

impl HeldFrame for Lend<'_, '_> {
    #[inline(always)]
    fn take(
        &mut self,
        frame: Frame<'_>,
        at: FrameRef,
        next_position: &mut u64,
    ) -> Result<ControlFlow<()>, StoreError> {
        lend_next(frame, at, next_position, self.0)
    }
}

/// Decodes each frame's events into owned events, `frames` frames at most.
struct Own<'o> {
    out: &'o mut VecDeque<RecordedEvent>,
    frames: usize,
}

impl HeldFrame for Own<'_> {
    #[inline(always)]
    fn take(
        &mut self,
        frame: Frame<'_>,
        at: FrameRef,
        next_position: &mut u64,
    ) -> Result<ControlFlow<()>, StoreError> {
        continue_log(&frame, at, next_position)?;
        decode_frame(frame, at, 0, self.out)?;
        self.frames = self.frames.saturating_sub(1);
        Ok(if self.frames == 0 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        })
    }
}

/// Lends the events of `frame` (at `at`), which must hold the log's events from
/// `next_position` on, and moves `next_position` past them.
#[inline(always)]
fn lend_next(
    frame: Frame<'_>,
    at: FrameRef,
    next_position: &mut u64,
    visit: &mut dyn FnMut(RecordedEventRef<'_>) -> ControlFlow<()>,
) -> Result<ControlFlow<()>, StoreError> {
    continue_log(&frame, at, next_position)?;
    match frame.only_event() {
        Some(raw) => lend_event(raw, &frame, 0, at, visit),
        None => lend(frame, at, 0, visit),
    }
}

/// Up to three frames at the start of `bytes`, each whole in it and of a length the
/// prefix allows, and how many there are; empty slots after them.
#[inline(always)]
fn whole_frames(bytes: &[u8], cap: usize) -> ([&[u8]; 3], usize) {
    let mut frames = [&[][..]; 3];
    let mut rest = bytes;
    for (k, slot) in frames.iter_mut().enumerate() {
        let Some(len) = rest
            .get(..format::FRAME_PREFIX_LEN)
            .and_then(|prefix| format::frame_len(prefix, cap).ok())
        else {
            return (frames, k);
        };
        let Some((frame, after)) = rest.split_at_checked(len) else {
            return (frames, k);
        };
        *slot = frame;
        rest = after;
    }
    (frames, 3)
}

/// Checks that `frame` (at `at`) holds the log's events from `next_position` on, and
/// moves `next_position` past them.
#[inline(always)]
fn continue_log(
    frame: &Frame<'_>,
    at: FrameRef,
    next_position: &mut u64,
) -> Result<(), StoreError> {
    if frame.place.first_position != *next_position {
        return Err(discontinuous(at, frame, *next_position));
    }
    *next_position = frame.end_position();
    Ok(())
}

/// The error of a frame at `at` that does not continue the log at `expected`.
fn discontinuous(at: FrameRef, frame: &Frame<'_>, expected: u64) -> StoreError {
    corrupted(
        at,
        &format!(
            "the frame holds positions {} to {}, where the log continues at position \
             {expected}",
            frame.place.first_position,
            frame.end_position() - 1
        ),
    )
}

impl FrameSource for LogReader<'_> {
    /// The frames [`LogReader::lend_held`] would lend, decoded into owned events.
    fn own_held(&mut self, out: &mut VecDeque<RecordedEvent>) -> Result<(), StoreError> {
        let frames = FRAMES_PER_FILL;
        let _all_taken_or_held = self.each_held(&mut Own { out, frames })?;
        Ok(())
    }

    fn next_frame(&mut self) -> Result<Option<NextFrame<'_>>, StoreError> {
        let run = match self.run {
            Some(run) if run.offset < run.end => run,
            _ => match self.locate()? {
                Some(run) => run,
                None => {
                    self.run = None;
                    return Ok(None);
                }
            },
        };
        let (bytes, at) = walk(self.shared, &mut self.window, &mut self.checked, &run)?;
        let frame = parse(bytes, at)?;
        let (first, expected) = (frame.place.first_position, self.next_position);
        let continues = match run.listed {
            Some(entry) => {
                if first != entry.first_position
                    || frame.place.first_version != entry.first_version
                    || frame.count != entry.count
                    || at.len != entry.at.len
                {
                    return Err(corrupted(at, "the frame does not match the index"));
                }
                first <= expected
            }
            None => first == expected,
        };
        if !continues || frame.end_position() <= expected {
            return Err(discontinuous(at, &frame, expected));
        }
        self.next_position = frame.end_position();
        self.run = Some(Run {
            offset: run.offset + u64::from(at.len),
            listed: None,
            ..run
        });
        Ok(Some(NextFrame {
            frame,
            at,
            skip: expected - first,
        }))
    }
}
