//! Opening a store directory: find the segments, load or rebuild the index, scan what the
//! index does not cover, and cut a torn tail (never anything before it).

use crate::error::{OpenError, RecoveryReport, Repair};
use crate::format::{
    self, FRAME_OVERHEAD, FRAME_PREFIX_LEN, Frame, SEGMENT_HEADER_LEN, SegmentHeader,
};
use crate::index::{FrameEntry, FrameRef, Index};
use crate::vfs::{OpenMode, Vfs, VfsFile};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use uuid::Uuid;

/// Name of the index file.
pub const INDEX_FILE: &str = "index.dat";
/// Suffix of segment files.
pub const SEGMENT_SUFFIX: &str = ".seg";

/// The path of segment `no`.
pub fn segment_path(dir: &Path, no: u64) -> PathBuf {
    dir.join(format!("{no:020}{SEGMENT_SUFFIX}"))
}

/// What recovery hands to the store.
pub struct Recovered {
    /// The index of every valid frame.
    pub index: Index,
    /// Event ids in position order.
    pub ids: Vec<Uuid>,
    /// Open segment files, by number.
    pub segments: Vec<Arc<dyn VfsFile>>,
    /// End of the last valid frame: (segment, offset).
    pub end: (u64, u64),
    /// Length of the last segment file (its data plus zero-filled room).
    pub allocated: u64,
    /// What was found and done.
    pub report: RecoveryReport,
}

/// Where recovery stands while scanning.
struct Scan<'a> {
    vfs: &'a dyn Vfs,
    dir: &'a Path,
    frame_cap: usize,
    read_only: bool,
    repair: bool,
    /// Scan the whole log, trusting no index file (verification).
    ignore_index: bool,
    /// Called with the byte length of each frame scanned.
    progress: Option<&'a dyn Fn(u64)>,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> OpenError + '_ {
    move |source| OpenError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Recovers the log in `dir`.
pub fn recover(
    vfs: &dyn Vfs,
    dir: &Path,
    frame_cap: usize,
    read_only: bool,
    repair: bool,
) -> Result<Recovered, OpenError> {
    let scan = Scan {
        vfs,
        dir,
        frame_cap,
        read_only,
        repair,
        ignore_index: false,
        progress: None,
    };
    scan.run()
}

/// Scans the whole log read-only, checking every frame, ignoring the index file.
pub fn scan_all(
    vfs: &dyn Vfs,
    dir: &Path,
    frame_cap: usize,
    progress: &dyn Fn(u64),
) -> Result<Recovered, OpenError> {
    let scan = Scan {
        vfs,
        dir,
        frame_cap,
        read_only: true,
        repair: false,
        ignore_index: true,
        progress: Some(progress),
    };
    scan.run()
}

/// Reads and decodes `index.dat`, if present and intact.
pub fn read_index_file(vfs: &dyn Vfs, dir: &Path) -> Option<(Index, Vec<Uuid>)> {
    let file = vfs.open(&dir.join(INDEX_FILE), OpenMode::Read).ok()?;
    let len = usize::try_from(file.len().ok()?).ok()?;
    let mut bytes = vec![0u8; len];
    file.read_exact_at(&mut bytes, 0).ok()?;
    Index::decode(&bytes)
}

impl Scan<'_> {
    fn run(&self) -> Result<Recovered, OpenError> {
        let mut report = RecoveryReport::default();
        let mut numbers = self.segment_numbers()?;
        if numbers.is_empty() {
            if self.read_only {
                return Ok(Recovered {
                    index: Index::new((0, SEGMENT_HEADER_LEN as u64)),
                    ids: Vec::new(),
                    segments: Vec::new(),
                    end: (0, SEGMENT_HEADER_LEN as u64),
                    allocated: SEGMENT_HEADER_LEN as u64,
                    report,
                });
            }
            create_segment(self.vfs, self.dir, 0, 1)?;
            numbers.push(0);
        }
        let mut segments = Vec::with_capacity(numbers.len());
        let mode = if self.read_only {
            OpenMode::Read
        } else {
            OpenMode::ReadWrite
        };
        for &no in &numbers {
            let path = segment_path(self.dir, no);
            segments.push(self.vfs.open(&path, mode).map_err(io_err(&path))?);
        }
        let loaded = if self.ignore_index {
            None
        } else {
            self.load_index(&segments)
        };
        let (mut index, mut ids) = match loaded {
            Some(loaded) => loaded,
            None => {
                report.index_rebuilt = true;
                (Index::new((0, SEGMENT_HEADER_LEN as u64)), Vec::new())
            }
        };
        let mut end = index.covered;
        let mut seg = index.covered.0;
        while seg < segments.len() as u64 {
            let is_last = seg + 1 == segments.len() as u64;
            let file = Arc::clone(&segments[seg as usize]);
            let len = file.len().map_err(io_err(&segment_path(self.dir, seg)))?;
            let need_header = seg != index.covered.0 || report.index_rebuilt;
            let mut offset = index.covered.1;
            if need_header {
                match self.check_header(&*file, seg, index.head + 1) {
                    Ok(()) => offset = SEGMENT_HEADER_LEN as u64,
                    Err(reason) => {
                        let unacknowledged = is_last
                            && self
                                .first_valid_frame_after(&*file, 0, len, index.head + 1)
                                .is_none();
                        if !unacknowledged {
                            return Err(OpenError::Corrupted {
                                segment: seg,
                                offset: 0,
                                reason: format!("segment header: {reason}"),
                            });
                        }
                        // the newest segment's header never became durable (or, beside a
                        // live writer, is being written now): it holds no acknowledged event
                        if self.read_only {
                            segments.pop();
                            break;
                        }
                        let path = segment_path(self.dir, seg);
                        if seg == 0 {
                            file.set_len(0).map_err(io_err(&path))?;
                            write_header(&*file, 0, 1).map_err(io_err(&path))?;
                            end = (0, SEGMENT_HEADER_LEN as u64);
                        } else {
                            self.vfs.remove_file(&path).map_err(io_err(&path))?;
                            self.vfs.sync_dir(self.dir).map_err(io_err(self.dir))?;
                            segments.pop();
                        }
                        report.removed_empty_segment = Some(seg);
                        break;
                    }
                }
            }
            let stop =
                self.scan_frames(&*file, seg, offset, len, &mut index, &mut ids, &mut report)?;
            end = (seg, stop);
            if is_last && stop > offset && !self.read_only {
                // Frames past the index may sit only in the page cache: after a failed
                // fdatasync the kernel keeps showing pages it will never write. Writing
                // them again and syncing makes them durable before anything builds on them.
                let path = segment_path(self.dir, seg);
                rewrite_durably(&*file, offset, stop).map_err(io_err(&path))?;
            }
            if stop < len && is_last && all_zero(&*file, stop, len) {
                // room the writer zero-filled ahead of its frames
                seg += 1;
                continue;
            }
            if stop < len {
                match self.handle_bad_frame(&*file, seg, stop, len, is_last, index.head + 1)? {
                    Recovery::TornTail => {
                        report.torn_tail = Some((seg, stop, len - stop));
                    }
                    Recovery::Repaired(reason) => {
                        let removed: Vec<u64> = (seg + 1..segments.len() as u64).collect();
                        for &r in &removed {
                            let path = segment_path(self.dir, r);
                            self.vfs.remove_file(&path).map_err(io_err(&path))?;
                        }
                        if !removed.is_empty() {
                            self.vfs.sync_dir(self.dir).map_err(io_err(self.dir))?;
                        }
                        segments.truncate(seg as usize + 1);
                        report.repaired = Some(Repair {
                            segment: seg,
                            offset: stop,
                            reason,
                            bytes_dropped: len - stop,
                            segments_removed: removed,
                        });
                        break;
                    }
                }
            }
            seg += 1;
        }
        let allocated = match segments.get(end.0 as usize) {
            Some(f) => f.len().map_err(io_err(&segment_path(self.dir, end.0)))?,
            None => end.1,
        };
        Ok(Recovered {
            index,
            ids,
            segments,
            end,
            allocated: allocated.max(end.1),
            report,
        })
    }

    fn segment_numbers(&self) -> Result<Vec<u64>, OpenError> {
        let names = self.vfs.list(self.dir).map_err(io_err(self.dir))?;
        let mut numbers: Vec<u64> = names
            .iter()
            .filter_map(|n| n.strip_suffix(SEGMENT_SUFFIX))
            .filter(|stem| stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()))
            .filter_map(|stem| stem.parse().ok())
            .collect();
        numbers.sort_unstable();
        for (i, &n) in numbers.iter().enumerate() {
            if n != i as u64 {
                return Err(OpenError::Corrupted {
                    segment: i as u64,
                    offset: 0,
                    reason: format!("segment file {i} is missing (found segment {n} instead)"),
                });
            }
        }
        Ok(numbers)
    }

    /// Loads `index.dat` when it is intact and consistent with the segments present.
    fn load_index(&self, segments: &[Arc<dyn VfsFile>]) -> Option<(Index, Vec<Uuid>)> {
        let (index, ids) = read_index_file(self.vfs, self.dir)?;
        let (seg, offset) = index.covered;
        let seg_file = segments.get(usize::try_from(seg).ok()?)?;
        if seg_file.len().ok()? < offset || offset < SEGMENT_HEADER_LEN as u64 {
            return None;
        }
        if let Some(last) = index.frames.last()
            && (last.at.segment, last.at.offset + u64::from(last.at.len)) > index.covered
        {
            return None;
        }
        // readers allocate what the index says a frame is long: every frame must be a
        // plausible length, in log order, and inside its segment
        let lens: Vec<u64> = segments
            .iter()
            .map(|f| f.len().ok())
            .collect::<Option<_>>()?;
        let min_len = (FRAME_OVERHEAD + format::MIN_BODY_LEN) as u64;
        let mut previous_end = (0, 0);
        for f in &index.frames {
            let len = u64::from(f.at.len);
            let end = f.at.offset.checked_add(len)?;
            let plausible = (min_len..=self.frame_cap as u64).contains(&len)
                && f.at.offset >= SEGMENT_HEADER_LEN as u64
                && (f.at.segment, f.at.offset) >= previous_end
                && end <= *lens.get(usize::try_from(f.at.segment).ok()?)?;
            if !plausible {
                return None;
            }
            previous_end = (f.at.segment, end);
        }
        Some((index, ids))
    }

    fn check_header(&self, file: &dyn VfsFile, seg: u64, next_position: u64) -> Result<(), String> {
        let mut b = [0u8; SEGMENT_HEADER_LEN];
        file.read_exact_at(&mut b, 0).map_err(|e| e.to_string())?;
        let h = SegmentHeader::decode(&b).map_err(|e| e.to_string())?;
        if h.segment_no != seg {
            return Err(format!("header names segment {}", h.segment_no));
        }
        if h.first_position != next_position {
            return Err(format!(
                "header starts at position {}, but the log continues at {next_position}",
                h.first_position
            ));
        }
        Ok(())
    }

    /// Scans valid frames from `offset`; returns where the valid run ends.
    #[allow(clippy::too_many_arguments)]
    fn scan_frames(
        &self,
        file: &dyn VfsFile,
        seg: u64,
        mut offset: u64,
        len: u64,
        index: &mut Index,
        ids: &mut Vec<Uuid>,
        report: &mut RecoveryReport,
    ) -> Result<u64, OpenError> {
        let mut window = Window::default();
        while offset < len {
            let Some(bytes) = window.frame(file, offset, len, self.frame_cap) else {
                return Ok(offset);
            };
            let Ok(body) = format::check_frame(bytes) else {
                return Ok(offset);
            };
            let Ok(frame) = Frame::parse(body) else {
                return Ok(offset);
            };
            if frame.place.first_position != index.head + 1 {
                return Ok(offset);
            }
            let stream_id = frame.stream_id.to_owned();
            let entry = FrameEntry {
                first_position: frame.place.first_position,
                first_version: frame.place.first_version,
                count: frame.count,
                at: FrameRef {
                    segment: seg,
                    offset,
                    len: bytes.len() as u32,
                },
            };
            let frame_len = bytes.len() as u64;
            let mut frame_ids = Vec::with_capacity(frame.count as usize);
            if frame
                .for_each_event(|_, e| {
                    frame_ids.push(e.event_id);
                    Ok(())
                })
                .is_err()
            {
                return Ok(offset);
            }
            if index.push(&stream_id, entry).is_err() {
                return Ok(offset);
            }
            ids.extend(frame_ids);
            report.frames_scanned += 1;
            if let Some(progress) = self.progress {
                progress(frame_len);
            }
            offset += frame_len;
        }
        Ok(offset)
    }

    /// Decides what a bad frame at `offset` is: a torn tail (cut, or in read-only mode
    /// ignored), or damage (an error, or with repair a cut).
    fn handle_bad_frame(
        &self,
        file: &dyn VfsFile,
        seg: u64,
        offset: u64,
        len: u64,
        is_last: bool,
        next_position: u64,
    ) -> Result<Recovery, OpenError> {
        let reason = describe_bad_frame(file, offset, len, self.frame_cap);
        // A valid frame after the bad one means damage, unless a stretch between them was
        // never written: then both are writes of the unsynced tail that reached the disk
        // out of order, and neither was durable.
        let later_valid = if is_last {
            self.first_valid_frame_after(file, offset + 1, len, next_position)
                .filter(|&at| !has_unwritten_stretch(file, offset, at))
        } else {
            None
        };
        let damage = if !is_last {
            Some(format!("{reason}, in a segment that is not the last"))
        } else {
            later_valid.map(|at| format!("{reason}, followed by a valid frame at offset {at}"))
        };
        if self.read_only {
            return match damage {
                Some(reason) => Err(OpenError::Corrupted {
                    segment: seg,
                    offset,
                    reason,
                }),
                None => Ok(Recovery::TornTail),
            };
        }
        match damage {
            Some(reason) if !self.repair => Err(OpenError::Corrupted {
                segment: seg,
                offset,
                reason,
            }),
            damage => {
                let path = segment_path(self.dir, seg);
                file.set_len(offset).map_err(io_err(&path))?;
                file.sync_data().map_err(io_err(&path))?;
                Ok(match damage {
                    Some(reason) => Recovery::Repaired(reason),
                    None => Recovery::TornTail,
                })
            }
        }
    }

    /// The first offset in `from..len` that starts a frame that passes its checksum and
    /// belongs at or after `next_position` (older, stale frames do not count).
    fn first_valid_frame_after(
        &self,
        file: &dyn VfsFile,
        from: u64,
        len: u64,
        next_position: u64,
    ) -> Option<u64> {
        let mut window = Window::default();
        let mut offset = from;
        while offset + (FRAME_OVERHEAD + format::MIN_BODY_LEN) as u64 <= len {
            if let Some(bytes) = window.candidate(file, offset, len, self.frame_cap)
                && let Ok(body) = format::check_frame(bytes)
                && let Ok(frame) = Frame::parse(body)
                && frame.place.first_position >= next_position
            {
                return Some(offset);
            }
            offset += 1;
        }
        None
    }
}

/// Zero bytes in a row that no frame holds: JSON has no NUL byte, stream ids and type
/// names no control character, and the binary fields between them are interleaved with
/// non-zero lengths and counts, so the longest run inside a frame is 17 bytes (a nil event
/// id followed by a zero type index).
const UNWRITTEN_RUN: usize = 32;
/// Zero bytes in a row that no frame starts or ends with: its first and last four bytes
/// are its length, which is never zero.
const UNWRITTEN_EDGE: usize = 4;

/// Whether `from..to` holds zero bytes in a row that no write of frames leaves there:
/// [`UNWRITTEN_RUN`] anywhere, or [`UNWRITTEN_EDGE`] at either end. Such a stretch is space
/// the log had claimed (zero-filled room, or a hole before a later write) whose write never
/// reached the disk. Bit rot flips bits; it does not zero a run, so damage never looks like
/// this.
fn has_unwritten_stretch(file: &dyn VfsFile, from: u64, to: u64) -> bool {
    let mut buf = vec![0u8; WINDOW.min((to - from) as usize)];
    let mut run = 0usize;
    let mut at = from;
    while at < to {
        let n = ((to - at) as usize).min(buf.len());
        if file.read_exact_at(&mut buf[..n], at).is_err() {
            return false;
        }
        for (i, &b) in buf[..n].iter().enumerate() {
            run = if b == 0 { run + 1 } else { 0 };
            let from_start = at + i as u64 + 1 - from == run as u64;
            if run >= UNWRITTEN_RUN || (from_start && run >= UNWRITTEN_EDGE) {
                return true;
            }
        }
        at += n as u64;
    }
    run >= UNWRITTEN_EDGE
}

/// Writes `from..to` of the file again with what it reads, and syncs it.
fn rewrite_durably(file: &dyn VfsFile, from: u64, to: u64) -> std::io::Result<()> {
    let mut buf = vec![0u8; WINDOW.min((to - from) as usize)];
    let mut at = from;
    while at < to {
        let n = ((to - at) as usize).min(buf.len());
        file.read_exact_at(&mut buf[..n], at)?;
        file.write_all_at(&buf[..n], at)?;
        at += n as u64;
    }
    file.sync_data()
}

/// Whether `from..to` of the file holds only zero bytes.
fn all_zero(file: &dyn VfsFile, from: u64, to: u64) -> bool {
    let mut buf = vec![0u8; WINDOW];
    let mut at = from;
    while at < to {
        let n = ((to - at) as usize).min(WINDOW);
        if file.read_exact_at(&mut buf[..n], at).is_err() || buf[..n].iter().any(|&b| b != 0) {
            return false;
        }
        at += n as u64;
    }
    true
}

fn describe_bad_frame(file: &dyn VfsFile, offset: u64, len: u64, cap: usize) -> String {
    let mut prefix = [0u8; FRAME_PREFIX_LEN];
    if len - offset < FRAME_PREFIX_LEN as u64 || file.read_exact_at(&mut prefix, offset).is_err() {
        return "incomplete frame header".into();
    }
    match format::frame_len(&prefix, cap) {
        Err(e) => e.to_string(),
        Ok(n) if offset + n as u64 > len => {
            format!("frame of {n} bytes runs past the end of the file")
        }
        Ok(n) => {
            let mut bytes = vec![0u8; n];
            if file.read_exact_at(&mut bytes, offset).is_err() {
                return "unreadable frame".into();
            }
            match format::check_frame(&bytes).and_then(Frame::parse) {
                Err(e) => e.to_string(),
                Ok(f) => format!(
                    "frame at position {} does not continue the log or its stream",
                    f.place.first_position
                ),
            }
        }
    }
}

/// A read-ahead buffer over one file for sequential frame scans.
#[derive(Default)]
struct Window {
    start: u64,
    buf: Vec<u8>,
}

const WINDOW: usize = 1 << 20;

impl Window {
    fn fill(&mut self, file: &dyn VfsFile, offset: u64, want: usize, len: u64) -> Option<()> {
        let n = (want.max(WINDOW) as u64).min(len - offset) as usize;
        if n < want {
            return None;
        }
        self.buf.resize(n, 0);
        file.read_exact_at(&mut self.buf, offset).ok()?;
        self.start = offset;
        Some(())
    }

    fn slice(&mut self, file: &dyn VfsFile, offset: u64, n: usize, len: u64) -> Option<&[u8]> {
        let end = offset.checked_add(n as u64)?;
        if end > len {
            return None;
        }
        if offset < self.start || end > self.start + self.buf.len() as u64 {
            self.fill(file, offset, n, len)?;
        }
        let at = (offset - self.start) as usize;
        Some(&self.buf[at..at + n])
    }

    /// The whole frame at `offset` if its length is plausible and it fits in the file.
    fn frame(&mut self, file: &dyn VfsFile, offset: u64, len: u64, cap: usize) -> Option<&[u8]> {
        let prefix = self.slice(file, offset, FRAME_PREFIX_LEN, len)?;
        let n = format::frame_len(prefix, cap).ok()?;
        self.slice(file, offset, n, len)
    }

    /// Like [`Window::frame`], but first checks the trailing length cheaply, for scans
    /// that try every offset.
    fn candidate(
        &mut self,
        file: &dyn VfsFile,
        offset: u64,
        len: u64,
        cap: usize,
    ) -> Option<&[u8]> {
        let prefix = self.slice(file, offset, FRAME_PREFIX_LEN, len)?;
        let n = format::frame_len(prefix, cap).ok()?;
        let body_len = (n - FRAME_OVERHEAD) as u32;
        let trailing_at = offset + (n - 4) as u64;
        if trailing_at + 4 > len {
            return None;
        }
        // read the trailing length beside the window, not through it: moving the window
        // for every plausible length would re-read a megabyte per offset tried
        let mut trailing = [0u8; 4];
        let end = self.start + self.buf.len() as u64;
        if trailing_at >= self.start && trailing_at + 4 <= end {
            let at = (trailing_at - self.start) as usize;
            trailing.copy_from_slice(&self.buf[at..at + 4]);
        } else if file.read_exact_at(&mut trailing, trailing_at).is_err() {
            return None;
        }
        if trailing != body_len.to_le_bytes() {
            return None;
        }
        self.slice(file, offset, n, len)
    }
}

/// Writes a segment header at the start of `file`.
pub fn write_header(
    file: &dyn VfsFile,
    segment_no: u64,
    first_position: u64,
) -> std::io::Result<()> {
    let header = SegmentHeader {
        segment_no,
        first_position,
    };
    file.write_all_at(&header.encode(), 0)?;
    file.sync_data()
}

/// Creates segment `no` (replacing a leftover file of a failed attempt), writes and syncs
/// its header, and syncs the directory so the new file survives a crash.
pub fn create_segment(
    vfs: &dyn Vfs,
    dir: &Path,
    no: u64,
    first_position: u64,
) -> Result<Arc<dyn VfsFile>, OpenError> {
    let path = segment_path(dir, no);
    let file = vfs
        .open(&path, OpenMode::CreateTruncate)
        .map_err(io_err(&path))?;
    write_header(&*file, no, first_position).map_err(io_err(&path))?;
    vfs.sync_dir(dir).map_err(io_err(dir))?;
    Ok(file)
}

/// What a bad frame turned out to be.
enum Recovery {
    /// The unacknowledged end of the log: cut.
    TornTail,
    /// Damage cut off in repair mode, with the reason.
    Repaired(String),
}
