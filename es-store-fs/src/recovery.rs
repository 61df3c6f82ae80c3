//! Opening a store directory: find the segments, load or rebuild the index, scan what the
//! index does not cover, and cut a torn tail (never anything before it).

use crate::error::{HeaderRewrite, OpenError, RecoveryReport, Repair, TornTail};
use crate::format::{
    self, FRAME_OVERHEAD, FRAME_PREFIX_LEN, FRAME_SUFFIX_LEN, Frame, SEGMENT_HEADER_LEN,
    SegmentHeader,
};
use crate::group::{GROUP_SEGMENTS, IdGroup};
use crate::index::{FrameEntry, FrameRef, Index, IndexFile};
use crate::layout::{
    INDEX_FILE, LogOffset, PUBLISHED_FILE, create_segment, group_filter_path, sealed_index_path,
    segment_number, segment_path, write_header,
};
use crate::published::Published;
use crate::read_ahead::{READ_AHEAD, ReadAhead};
use crate::seal::{ReadSealed, Sealed, SealedError, SegmentFrames};
use crate::vfs::{OpenMode, Vfs, VfsFile};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What recovery hands to the store.
pub struct Recovered {
    /// The store directory.
    pub dir: PathBuf,
    /// The index of every valid frame.
    pub index: Index,
    /// Number of segment files (0, 1, … count − 1).
    pub segment_count: u64,
    /// The last segment, open (for writing unless read-only).
    pub last_segment: Option<Arc<dyn VfsFile>>,
    /// End of the last valid frame.
    pub end: LogOffset,
    /// Length of the last segment file (its data plus zero-filled room).
    pub allocated: u64,
    /// What was found and done.
    pub report: RecoveryReport,
    /// Stream tables of the newest sealed segments, read at open.
    pub stream_tables: Vec<(u64, Vec<u8>)>,
}

/// How to recover.
pub struct RecoverOptions<'a> {
    /// The largest frame length accepted.
    pub frame_cap: usize,
    /// Change nothing on disk.
    pub read_only: bool,
    /// Cut damage too (the user's explicit choice).
    pub repair: bool,
    /// Scan the whole log, reading the index file only as a record of what existed
    /// (verification).
    pub ignore_index: bool,
    /// Read only up to this end, which a live writer published as durable: every frame
    /// before it must be valid, nothing after it is looked at.
    pub limit: Option<LogOffset>,
    /// With `limit`: how far the live writer published the log as synced. The log must
    /// reach at least this far (or the limit, when that is nearer). Not the acknowledged
    /// end itself: a writer that is still recovering after a crash has not yet replaced
    /// the record of the previous run, whose acknowledged but unsynced appends the crash
    /// may have taken (in `Periodic` and `None`).
    pub limit_durable: Option<LogOffset>,
    /// Called with the byte length of each frame scanned.
    pub progress: Option<&'a dyn Fn(u64)>,
    /// Bytes of sealed segments' stream tables to hand to the store's cache.
    pub table_budget: usize,
}

impl RecoverOptions<'_> {
    /// Options of an ordinary open.
    pub fn open(frame_cap: usize, read_only: bool, repair: bool) -> Self {
        RecoverOptions {
            frame_cap,
            read_only,
            repair,
            // a repair checks every frame: the index does not vouch for what it covers
            ignore_index: repair,
            limit: None,
            limit_durable: None,
            progress: None,
            table_budget: 0,
        }
    }
}

/// Where recovery stands while scanning.
struct Scan<'a> {
    vfs: &'a dyn Vfs,
    dir: &'a Path,
    o: RecoverOptions<'a>,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> OpenError + '_ {
    move |source| OpenError::Io {
        path: path.to_owned(),
        source,
    }
}

/// An I/O error of reading `path` at `offset`: the offset goes into the message.
fn read_err(path: &Path, offset: u64) -> impl FnOnce(std::io::Error) -> OpenError + '_ {
    move |e| OpenError::Io {
        path: path.to_owned(),
        source: std::io::Error::new(e.kind(), format!("reading at offset {offset}: {e}")),
    }
}

/// The longest segment file this store can write: a segment is sealed once it reaches
/// its size, at most [`FileStoreOptions::MAX_SEGMENT_SIZE`](crate::FileStoreOptions::MAX_SEGMENT_SIZE),
/// after the frame that got it there, and its room is claimed in steps of at most that
/// size.
const MAX_SEGMENT_FILE: u64 =
    2 * crate::FileStoreOptions::MAX_SEGMENT_SIZE + 2 * format::MAX_FRAME_LEN as u64;

/// Recovers the log in `dir`.
pub fn recover(vfs: &dyn Vfs, dir: &Path, o: RecoverOptions<'_>) -> Result<Recovered, OpenError> {
    Scan { vfs, dir, o }.run()
}

/// What `index.dat` holds.
enum IndexState {
    /// Absent, or failing its checksum: derived data to rebuild.
    Unusable,
    /// Intact, but describing frames that cannot be (lengths out of range, out of order):
    /// not trusted, rebuilt.
    Implausible,
    /// Intact and plausible.
    Intact(IndexFile),
}

/// What reading `index.dat` found.
pub enum IndexRead {
    /// No such file.
    Absent,
    /// Present, but failing its checksum or structure.
    Damaged,
    /// Longer than any index of the segments present could be: not read.
    TooLong(u64),
    /// Intact.
    Intact(IndexFile),
}

/// The longest `index.dat` that segments of `segment_bytes` bytes in all can have: every
/// stream it names, every frame it lists and every id it holds is in a segment, in more
/// bytes than the index spends on it (a frame of at least fifty bytes with the stream's
/// name and each event's 16-byte id), so twice the segments' length leaves a wide margin,
/// plus room for the fixed fields. A longer file was not written by this store for these
/// segments, and is not read into memory (a sparse file of 200 GB would otherwise be
/// allocated and read whole).
pub fn index_file_cap(segment_bytes: u64) -> u64 {
    segment_bytes.saturating_mul(2).saturating_add(1 << 20)
}

/// Reads and decodes `index.dat` when it is no longer than `max_len`. A failed read is an
/// error (the file may be the only proof of what the log held).
pub fn read_index_file(vfs: &dyn Vfs, dir: &Path, max_len: u64) -> Result<IndexRead, OpenError> {
    let path = dir.join(INDEX_FILE);
    let file = match vfs.open(&path, OpenMode::Read) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(IndexRead::Absent),
        Err(e) => return Err(io_err(&path)(e)),
    };
    let len = file.len().map_err(io_err(&path))?;
    if len > max_len {
        return Ok(IndexRead::TooLong(len));
    }
    let Ok(len) = usize::try_from(len) else {
        return Ok(IndexRead::TooLong(len));
    };
    let mut bytes = vec![0u8; len];
    match file.read_exact_at(&mut bytes, 0) {
        Ok(()) => Ok(IndexFile::decode(&bytes).map_or(IndexRead::Damaged, IndexRead::Intact)),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(IndexRead::Damaged),
        Err(e) => Err(read_err(&path, 0)(e)),
    }
}

/// Reads `PUBLISHED`: `None` when absent or not intact, an error when a read fails.
pub fn read_published(vfs: &dyn Vfs, dir: &Path) -> Result<Option<Published>, OpenError> {
    let path = dir.join(PUBLISHED_FILE);
    let file = match vfs.open(&path, OpenMode::Read) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(&path)(e)),
    };
    Published::read(&*file).map_err(read_err(&path, 0))
}

/// What the bytes after the last valid frame of the last segment are.
enum Tail {
    /// Zeros to the end of the file: room the writer claimed ahead of its frames.
    Room,
    /// What a crash leaves of writes that were never made durable: cut.
    Torn,
    /// Anything else.
    Damage(String),
}

/// A change recovery makes to the log without being asked, made only once the whole
/// directory is read and accepted.
enum Deferred {
    /// A torn tail, never acknowledged, is cut at `at`.
    Cut { segment: u64, at: u64 },
    /// The first segment, whose header never became durable, is written again empty.
    NewFirstSegment,
    /// A later segment whose header never became durable goes.
    Remove { segment: u64 },
}

impl Scan<'_> {
    fn apply(&self, change: Deferred) -> Result<(), OpenError> {
        match change {
            Deferred::Cut { segment, at } => {
                let (path, file) = self.open_to_write(segment)?;
                file.set_len(at).map_err(io_err(&path))?;
                file.sync_data().map_err(io_err(&path))?;
            }
            Deferred::NewFirstSegment => {
                let (path, file) = self.open_to_write(0)?;
                // emptied and written anew: a file with another name is not the store's to
                // empty
                crate::vfs::refuse_other_names(&*file, &path).map_err(io_err(&path))?;
                file.set_len(0).map_err(io_err(&path))?;
                write_header(&*file, 0, 1).map_err(|e| io_err(&path)(e.into_io()))?;
            }
            Deferred::Remove { segment } => {
                let path = segment_path(self.dir, segment);
                self.vfs.remove_file(&path).map_err(io_err(&path))?;
                self.vfs.sync_dir(self.dir).map_err(io_err(self.dir))?;
            }
        }
        Ok(())
    }

    fn open_to_write(
        &self,
        segment: u64,
    ) -> Result<(std::path::PathBuf, Arc<dyn VfsFile>), OpenError> {
        let path = segment_path(self.dir, segment);
        let file = self
            .vfs
            .open(&path, OpenMode::ReadWrite)
            .map_err(io_err(&path))?;
        Ok((path, file))
    }

    /// Removes the records of how far the log reached (`index.dat`, `PUBLISHED`) and
    /// syncs the directory, before a repair cuts the log: a record left in place, or one
    /// brought back by a power loss (`PUBLISHED` is written again at every open without
    /// a sync), would claim what the cut removed, and the next open would refuse the log.
    fn remove_records(&self) -> Result<(), OpenError> {
        for name in [INDEX_FILE, PUBLISHED_FILE] {
            let path = self.dir.join(name);
            match self.vfs.remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(io_err(&path)(e));
                }
                _ => {}
            }
        }
        self.vfs.sync_dir(self.dir).map_err(io_err(self.dir))
    }

    fn corrupted(&self, segment: u64, offset: u64, reason: String) -> OpenError {
        OpenError::Corrupted {
            file: segment_path(self.dir, segment),
            segment,
            offset,
            reason,
        }
    }

    fn run(&self) -> Result<Recovered, OpenError> {
        let mut report = RecoveryReport::default();
        let mut numbers = self.segment_numbers()?;
        if let Some(limit) = self.o.limit {
            numbers.retain(|&n| n <= limit.segment);
        }
        // The last segment is never sealed: a segment is sealed only once a later one
        // holds a published frame, and that later segment's header and directory entry
        // were synced when it was created. A sealed last segment proves the next one gone.
        // (Beside a live writer the read stops at an end it published, and the segment
        // there may be sealed since.)
        if let Some(&last) = numbers.last()
            && self.o.limit.is_none()
            && self.has_sealed_index(last)
        {
            let why = format!(
                "segment {} is missing: segment {last} has a sealed index, which is written \
                 only once a later segment holds a published frame",
                last + 1
            );
            if !self.o.repair {
                return Err(self.corrupted(last + 1, 0, why));
            }
            // the user's choice: the last segment present takes appends again, and its
            // sealed index (derived data) goes, so that it is read from the log; the
            // records of how far the log reached go first, durably
            if !self.o.read_only {
                self.remove_records()?;
                let idx = sealed_index_path(self.dir, last);
                self.vfs.remove_file(&idx).map_err(io_err(&idx))?;
                self.vfs.sync_dir(self.dir).map_err(io_err(self.dir))?;
            }
            report.repaired = Some(Repair {
                segment: last + 1,
                offset: 0,
                reason: why,
                bytes_dropped: 0,
                segments_removed: Vec::new(),
            });
        }
        if numbers.is_empty() {
            // a store whose records prove it held events has lost its log, it is not new
            // with no segment, an index of any length records a lost log (one of no events
            // is a few dozen bytes)
            let index_head = match read_index_file(self.vfs, self.dir, index_file_cap(0))? {
                IndexRead::Intact(i) => i.head,
                IndexRead::TooLong(_) => u64::MAX,
                IndexRead::Absent | IndexRead::Damaged => 0,
            };
            let published = self.published_record()?;
            // a sealed index is written only once its segment and a later one hold frames
            let sealed = self
                .vfs
                .list(self.dir)
                .map_err(io_err(self.dir))?
                .into_iter()
                .find(|name| name.ends_with(crate::layout::SEALED_INDEX_SUFFIX));
            if let Some(name) = sealed {
                return Err(self.corrupted(
                    0,
                    0,
                    format!(
                        "no segment file is left, but the sealed index {name} records that \
                         the log held events"
                    ),
                ));
            }
            if index_head > 0 || published.is_some_and(|p| p.durable > LogOffset::segment_start(0))
            {
                return Err(self.corrupted(
                    0,
                    0,
                    format!(
                        "no segment file is left, but {INDEX_FILE} or {PUBLISHED_FILE} records \
                         that the log held events"
                    ),
                ));
            }
            if self.o.read_only {
                return Ok(Recovered {
                    dir: self.dir.to_owned(),
                    index: Index::new(LogOffset::segment_start(0)),
                    segment_count: 0,
                    last_segment: None,
                    end: LogOffset::segment_start(0),
                    allocated: SEGMENT_HEADER_LEN as u64,
                    report,
                    stream_tables: Vec::new(),
                });
            }
            create_segment(self.vfs, self.dir, 0, 1).map_err(|e| OpenError::Io {
                path: segment_path(self.dir, 0),
                source: e.into_io(),
            })?;
            numbers.push(0);
        }
        let mode = if self.o.read_only {
            OpenMode::Read
        } else {
            OpenMode::ReadWrite
        };
        // one segment open at a time: a store may have more segments than a process may
        // hold open files
        let open = |no: u64| {
            let path = segment_path(self.dir, no);
            self.vfs.open(&path, mode).map_err(io_err(&path))
        };
        let mut segment_count = numbers.len() as u64;
        let mut lens = Vec::with_capacity(numbers.len());
        for &no in &numbers {
            let len = open(no)?
                .len()
                .map_err(io_err(&segment_path(self.dir, no)))?;
            if len > MAX_SEGMENT_FILE {
                // not a file this store wrote (a sparse file, say, whose scan for zeros
                // would take ages): refused before its length bounds anything
                return Err(self.corrupted(
                    no,
                    MAX_SEGMENT_FILE,
                    format!(
                        "the file is {len} bytes long; no segment this store writes is longer \
                         than {MAX_SEGMENT_FILE} bytes"
                    ),
                ));
            }
            lens.push(len);
        }
        // What a durable record proves the log held: it must still hold it.
        let mut proven: Option<(LogOffset, String)> = None;
        // what recovery changes once every check has passed: in the last segment, so one
        // change at most
        let mut deferred = None;
        let mut index_lost = None;
        let loaded = match self.load_index(lens.iter().fold(0, |a: u64, &l| a.saturating_add(l)))? {
            IndexState::Intact(index) => {
                let covered = index.covered;
                let claim = format!("{INDEX_FILE} records {} events up to {covered}", index.head);
                let unfit = first_unfit(&index, &lens);
                // an intact index proves what it lists, whether or not it is used: it may
                // not be (a sealed index it builds on is missing), and the log is then
                // scanned, which must still reach its end (an index of no events proves
                // nothing about the log)
                proven = (index.head > 0).then_some((covered, claim));
                if self.o.ignore_index || unfit.is_some() {
                    index_lost = proven.clone().filter(|_| unfit.is_some());
                    None
                } else {
                    Some(index)
                }
            }
            IndexState::Implausible | IndexState::Unusable => None,
        };
        // the durable end the writer recorded after its last sync proves as much
        if self.o.limit.is_none()
            && let Some(p) = self.published_record()?
            && p.durable > LogOffset::segment_start(0)
            && proven.as_ref().is_none_or(|(end, _)| p.durable > *end)
        {
            let claim = format!(
                "{PUBLISHED_FILE} records the log as durable up to {}",
                p.durable
            );
            let lost = lens
                .get(p.durable.segment as usize)
                .is_none_or(|&len| len < p.durable.offset);
            if lost && !self.o.repair {
                let LogOffset {
                    segment: seg,
                    offset,
                } = p.durable;
                let at = lens.get(seg as usize).map_or(0, |&len| len.min(offset));
                return Err(self.corrupted(
                    seg,
                    at,
                    format!("{claim}, but the log ends before that"),
                ));
            }
            proven = Some((p.durable, claim));
        }
        if let Some((
            LogOffset {
                segment: seg,
                offset,
            },
            claim,
        )) = &index_lost
            && !self.o.repair
            && !self.o.ignore_index
        {
            let (at_seg, at) = match lens.get(*seg as usize) {
                None => (*seg, 0),
                Some(&len) => (*seg, len.min(*offset)),
            };
            let reason = match lens.get(*seg as usize) {
                None => format!("{claim}, but segment {seg} is missing"),
                Some(len) => format!(
                    "{claim}, but the log ends before that (segment {seg} is {len} bytes long, or an earlier segment lost frames the index lists)"
                ),
            };
            return Err(self.corrupted(at_seg, at, reason));
        }
        // Sealed segments whose index is intact and fits: their frames are not read. Those
        // that `index.dat`'s base covers are not even parsed: the base holds their stream
        // table.
        let mut index = Index::new(LogOffset::segment_start(0));
        let mut upto = segment_count - 1;
        let mut seg = 0;
        let mut stream_tables = std::collections::VecDeque::new();
        let mut tables_len = 0usize;
        let mut base = loaded
            .as_ref()
            .filter(|f| f.base.as_ref().is_some_and(|b| b.sealed > 0))
            .filter(|_| !self.o.ignore_index);
        let mut for_base = Vec::new();
        // the ordinals the base gave the streams `index.dat` lists
        let mut base_ordinals = None;
        while seg < upto {
            let base_sealed = base.and_then(|f| f.base.as_ref()).map_or(0, |b| b.sealed);
            if base_sealed > upto {
                base = None;
                continue;
            }
            let by_base = seg < base_sealed;
            // a base that cannot be installed: every segment's stream runs are read
            // instead, up to `$stop`
            macro_rules! drop_base {
                ($stop:expr, $why:expr) => {{
                    tracing::warn!("{INDEX_FILE}'s stream table is not used: {}", $why);
                    upto = $stop;
                    base = None;
                    for_base.clear();
                    index = Index::new(LogOffset::segment_start(0));
                    base_ordinals = None;
                    stream_tables.clear();
                    tables_len = 0;
                    seg = 0;
                    continue;
                }};
            }
            let Some(ReadSealed {
                sealed,
                runs,
                mut table,
            }) = self
                .read_sealed(seg, lens[seg as usize], !by_base, upto - seg)?
                .inspect(|_| report.sealed_tables_read += u64::from(!by_base))
            else {
                if by_base {
                    drop_base!(seg, "a sealed index it covers is missing or damaged");
                }
                break;
            };
            let recorded = LogOffset::new(seg, sealed.len);
            if lens[seg as usize] < sealed.len {
                let claim = format!(
                    "the sealed index of segment {seg} records it as durable up to offset {}",
                    sealed.len
                );
                if !self.o.repair {
                    return Err(self.corrupted(
                        seg,
                        lens[seg as usize],
                        format!(
                            "{claim}, but the segment, which is not the last, is {} bytes long",
                            lens[seg as usize]
                        ),
                    ));
                }
                if proven.as_ref().is_none_or(|(p, _)| recorded > *p) {
                    proven = Some((recorded, claim));
                }
                if by_base {
                    drop_base!(seg, "a segment it covers is shorter than sealed");
                }
                break;
            }
            if self.o.ignore_index || lens[seg as usize] != sealed.len {
                // scanned instead: a repair or a verification checks every frame, and a
                // segment longer than its index records is checked as unsealed
                if by_base {
                    drop_base!(seg, "a segment it covers is longer than sealed");
                }
                break;
            }
            sealed.fit_table(&mut table, self.o.table_budget);
            let table_len = table.len();
            if by_base {
                for_base.push(sealed);
                if seg + 1 == base_sealed
                    && let Some(file) = base
                {
                    match index.install_base(file, std::mem::take(&mut for_base)) {
                        Ok(given) => base_ordinals = Some(given),
                        Err(reason) => drop_base!(upto, reason),
                    }
                }
            } else if let Err(reason) = index.push_sealed(sealed, runs) {
                tracing::warn!(
                    "the sealed index of segment {seg} does not continue the log ({reason}); \
                     it is rebuilt from the segment"
                );
                // start again, stopping before it
                index = Index::new(LogOffset::segment_start(0));
                base_ordinals = None;
                stream_tables.clear();
                tables_len = 0;
                upto = seg;
                seg = 0;
                continue;
            }
            // the newest tables are kept for the store's cache: open has read them anyway
            if table_len > 0 {
                tables_len += table_len;
                stream_tables.push_back((seg, table));
            }
            while tables_len > self.o.table_budget
                && let Some((_, old)) = stream_tables.pop_front()
            {
                tables_len -= old.len();
            }
            seg += 1;
        }
        let first_unsealed = index.sealed.len() as u64;
        // `index.dat` lists the frames of the segments after the sealed ones
        let mut fresh = true;
        match loaded {
            Some(file) => {
                if self.load_recent(&mut index, &file, first_unsealed, base_ordinals) {
                    fresh = false;
                } else if file.covered.segment >= first_unsealed {
                    report.index_rebuilt = true;
                }
            }
            None => report.index_rebuilt = true,
        }
        if fresh {
            index.covered = LogOffset::segment_start(first_unsealed);
        }
        let mut end = index.covered;
        let mut seg = index.covered.segment;
        while seg < segment_count {
            let is_last = seg + 1 == segment_count;
            let path = segment_path(self.dir, seg);
            let file = open(seg)?;
            let mut len = lens[seg as usize];
            let limited = self.o.limit.is_some_and(|l| l.segment == seg);
            if let Some(limit) = self.o.limit
                && limit.segment == seg
            {
                len = len.min(limit.offset);
            }
            let need_header = seg != index.covered.segment || fresh;
            // This segment's header was durable when the index file covering part of it,
            // or the sealed index of the segment before it, was written: a segment is
            // sealed only once a later one has a published frame, and a new segment's
            // header is synced before any frame goes into it. Such a header that is
            // missing or bad is damage, never the leftover of a crash while creating it.
            // (A repair or a verification reads no sealed index, so there the file's
            // presence is the proof; a file placed there counts too: refusing is safe.)
            let previous_sealed =
                || seg > 0 && (seg <= first_unsealed || self.has_sealed_index(seg - 1));
            let covered = !fresh && seg == index.covered.segment;
            // the position the header must name: the index's next one for a segment read
            // from its start; for the one the index file covers part of, its first frame's
            // position when the index lists one (the header is checked all the same)
            let first_position = if need_header {
                Some(index.head + 1)
            } else {
                index
                    .recent
                    .iter()
                    .find(|f| f.at.segment == seg)
                    .map(|f| f.first_position)
                    .or_else(|| {
                        (index.covered.offset == SEGMENT_HEADER_LEN as u64)
                            .then_some(index.head + 1)
                    })
            };
            let mut offset = index.covered.offset;
            let checked = match self.check_header(&*file, seg, first_position) {
                // under repair, a damaged header before an intact frame is written again:
                // it holds nothing but the segment's number and first position, both known
                // here, and the frames after it are the log's
                Err(HeaderProblem::Bad(reason)) if self.o.repair && self.o.limit.is_none() => {
                    let intact_frame = match first_position {
                        Some(first) => frame_follows_header(
                            &*file,
                            lens[seg as usize],
                            self.o.frame_cap,
                            first,
                        )
                        .map_err(read_err(&path, SEGMENT_HEADER_LEN as u64))?,
                        None => false,
                    };
                    match first_position {
                        Some(first) if intact_frame => {
                            if !self.o.read_only {
                                write_header(&*file, seg, first)
                                    .map_err(|e| io_err(&path)(e.into_io()))?;
                                file.sync_data().map_err(io_err(&path))?;
                            }
                            report.headers_rewritten.push(HeaderRewrite {
                                segment: seg,
                                reason,
                            });
                            Ok(())
                        }
                        _ => Err(HeaderProblem::Bad(reason)),
                    }
                }
                other => other,
            };
            match checked {
                Ok(()) if need_header => offset = SEGMENT_HEADER_LEN as u64,
                Ok(()) => {}
                Err(HeaderProblem::Newer(found)) => {
                    return Err(OpenError::NewerFormat {
                        file: path,
                        found,
                        supported: format::FORMAT_VERSION,
                    });
                }
                Err(HeaderProblem::Io(e)) => return Err(read_err(&path, 0)(e)),
                Err(HeaderProblem::Bad(reason)) => {
                    let previous_sealed = previous_sealed();
                    let leftover = is_last
                        && !covered
                        && !previous_sealed
                        && proven.as_ref().is_none_or(|(p, _)| p.segment < seg)
                        && self.o.limit.is_none()
                        && unfinished_segment(&*file, lens[seg as usize], seg, index.head + 1)
                            .map_err(read_err(&path, 0))?;
                    let why = format!(
                        "segment header: {reason}; the file is not a segment this store \
                             finished creating, and it is not the leftover of a crash while \
                             creating one"
                    );
                    let repairable = self.o.repair && is_last && self.o.limit.is_none();
                    if !(leftover || repairable) {
                        return Err(self.corrupted(seg, 0, why));
                    }
                    if !leftover {
                        // the user asked for the cut: the last segment's content goes
                        // whole (what a crash leaves when the new segment's header was
                        // never synced and reads back as garbage, or damage). The file
                        // stays, emptied to a new header, when it is the first or the
                        // segment before it is sealed: a sealed segment never becomes
                        // the one appends go to.
                        let bytes_dropped = lens[seg as usize];
                        let keep_file = seg == 0 || previous_sealed;
                        if !self.o.read_only {
                            self.remove_records()?;
                            if keep_file {
                                crate::vfs::refuse_other_names(&*file, &path)
                                    .map_err(io_err(&path))?;
                                file.set_len(0).map_err(io_err(&path))?;
                                write_header(&*file, seg, index.head + 1)
                                    .map_err(|e| io_err(&path)(e.into_io()))?;
                            } else {
                                self.vfs.remove_file(&path).map_err(io_err(&path))?;
                            }
                            self.vfs.sync_dir(self.dir).map_err(io_err(self.dir))?;
                        }
                        if keep_file {
                            end = LogOffset::segment_start(seg);
                        } else {
                            segment_count -= 1;
                        }
                        let lost = proven
                            .as_ref()
                            .filter(|(p, _)| *p > LogOffset::segment_start(seg))
                            .map_or(String::new(), |(_, claim)| {
                                format!("; {claim}: events there are lost")
                            });
                        report.repaired = Some(Repair {
                            segment: seg,
                            offset: 0,
                            reason: format!("{why}{lost}"),
                            bytes_dropped,
                            segments_removed: if keep_file { Vec::new() } else { vec![seg] },
                        });
                        report.index_rebuilt = true;
                        break;
                    }
                    // the newest segment's header never became durable: it holds no event
                    if self.o.read_only {
                        // a dry run of a repair says what the repair would remove
                        if self.o.repair {
                            report.removed_empty_segment = Some(seg);
                        }
                        segment_count -= 1;
                        break;
                    }
                    if seg == 0 {
                        deferred = Some(Deferred::NewFirstSegment);
                        end = LogOffset::segment_start(0);
                    } else {
                        deferred = Some(Deferred::Remove { segment: seg });
                        segment_count -= 1;
                    }
                    report.removed_empty_segment = Some(seg);
                    break;
                }
            }
            let stop = self.scan_frames(&*file, seg, offset, len, &mut index, &mut report)?;
            end = LogOffset::new(seg, stop);
            if is_last && stop > offset && !self.o.read_only {
                // Frames past the index may sit only in the page cache: after a failed
                // fdatasync the kernel keeps showing pages it will never write. Writing
                // them again and syncing makes them durable before anything builds on them.
                rewrite_durably(&*file, offset, stop).map_err(|e| OpenError::Io {
                    path: path.clone(),
                    source: std::io::Error::new(
                        e.kind(),
                        format!(
                            "writing offsets {offset}..{stop}, past the index, again to make \
                             them durable: {e}"
                        ),
                    ),
                })?;
            }
            if stop < len {
                let must_hold = proven
                    .as_ref()
                    .filter(|(p, _)| *p > LogOffset::new(seg, stop))
                    .map(|(_, claim)| claim.clone());
                let reason = describe_bad_frame(&*file, stop, len, self.o.frame_cap)
                    .map_err(read_err(&path, stop))?;
                let tail = if !is_last {
                    Tail::Damage(format!("{reason}, in a segment that is not the last"))
                } else if let Some(claim) = must_hold {
                    Tail::Damage(format!("{reason}; {claim}"))
                } else if limited {
                    Tail::Damage(format!(
                        "{reason}, before the end the live writer published ({len})"
                    ))
                } else {
                    self.classify_tail(&*file, stop, len, index.head + 1, &reason)
                        .map_err(read_err(&path, stop))?
                };
                match tail {
                    Tail::Room => {}
                    Tail::Torn => {
                        if !self.o.read_only {
                            deferred = Some(Deferred::Cut {
                                segment: seg,
                                at: stop,
                            });
                        }
                        report.torn_tail = Some(TornTail {
                            segment: seg,
                            offset: stop,
                            bytes: len - stop,
                        });
                    }
                    Tail::Damage(reason) if !self.o.repair => {
                        return Err(self.corrupted(seg, stop, reason));
                    }
                    Tail::Damage(reason) => {
                        let removed: Vec<u64> = (seg + 1..segment_count).collect();
                        if !self.o.read_only {
                            // the user asked for the cut: the records may describe what
                            // is cut, so they go first
                            self.remove_records()?;
                            file.set_len(stop).map_err(io_err(&path))?;
                            file.sync_data().map_err(io_err(&path))?;
                            for &r in removed.iter().rev() {
                                let path = segment_path(self.dir, r);
                                self.vfs.remove_file(&path).map_err(io_err(&path))?;
                            }
                            // sealed indexes of what was cut describe frames no longer there,
                            // and so do the group filters of the windows they are in
                            for r in seg..seg + 1 + removed.len() as u64 {
                                let path = sealed_index_path(self.dir, r);
                                match self.vfs.remove_file(&path) {
                                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                                        return Err(io_err(&path)(e));
                                    }
                                    _ => {}
                                }
                                if r % GROUP_SEGMENTS == 0 || r == seg {
                                    let path = group_filter_path(self.dir, r / GROUP_SEGMENTS);
                                    match self.vfs.remove_file(&path) {
                                        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                                            return Err(io_err(&path)(e));
                                        }
                                        _ => {}
                                    }
                                }
                            }
                            self.vfs.sync_dir(self.dir).map_err(io_err(self.dir))?;
                        }
                        segment_count = seg + 1;
                        report.repaired = Some(Repair {
                            segment: seg,
                            offset: stop,
                            reason,
                            bytes_dropped: len - stop,
                            segments_removed: removed,
                        });
                        report.index_rebuilt = true;
                        break;
                    }
                }
            }
            seg += 1;
        }
        // beside a live writer, the log must reach the end it published as synced: a
        // segment shorter than that, or missing, lost acknowledged events
        if let (Some(limit), Some(durable)) = (self.o.limit, self.o.limit_durable)
            && end < durable.min(limit)
            && report.repaired.is_none()
        {
            return Err(self.corrupted(
                end.segment,
                end.offset,
                format!(
                    "the log ends at {end}, but the live writer published it as synced up to \
                     {} in {PUBLISHED_FILE}: acknowledged events in between are lost",
                    durable.min(limit)
                ),
            ));
        }
        if let Some((proof, claim)) = &proven
            && *proof > end
            && report.repaired.is_none()
        {
            if !self.o.repair {
                return Err(self.corrupted(
                    end.segment,
                    end.offset,
                    format!("{claim}, but the log ends at {end}"),
                ));
            }
            if !self.o.read_only {
                self.remove_records()?;
            }
            report.index_rebuilt = true;
            report.repaired = Some(Repair {
                segment: end.segment,
                offset: end.offset,
                reason: format!(
                    "{claim}, but the log ends at {end}: those events are lost; \
                     the index file and the record of what was durable are removed and the \
                     log kept as it is"
                ),
                bytes_dropped: 0,
                segments_removed: Vec::new(),
            });
        }
        if !self.o.ignore_index {
            self.load_groups(&mut index, &mut report)?;
        }
        // everything is read and checked: an open refused above changed nothing
        if let Some(change) = deferred {
            self.apply(change)?;
        }
        let last_segment = match segment_count {
            0 => None,
            n => Some(open(n - 1)?),
        };
        let allocated = match (&last_segment, end.segment + 1 == segment_count) {
            (Some(f), true) => f
                .len()
                .map_err(io_err(&segment_path(self.dir, end.segment)))?,
            _ => end.offset,
        };
        Ok(Recovered {
            dir: self.dir.to_owned(),
            index,
            segment_count,
            last_segment,
            end,
            allocated: allocated.max(end.offset),
            report,
            stream_tables: stream_tables.into_iter().collect(),
        })
    }

    /// The record the writer published, if it is intact.
    fn published_record(&self) -> Result<Option<Published>, OpenError> {
        read_published(self.vfs, self.dir)
    }

    fn segment_numbers(&self) -> Result<Vec<u64>, OpenError> {
        let names = self.vfs.list(self.dir).map_err(io_err(self.dir))?;
        let mut numbers: Vec<u64> = names.iter().filter_map(|n| segment_number(n)).collect();
        numbers.sort_unstable();
        for (i, &n) in numbers.iter().enumerate() {
            if n != i as u64 {
                return Err(self.corrupted(
                    i as u64,
                    0,
                    format!("segment file {i} is missing (found segment {n} instead)"),
                ));
            }
        }
        Ok(numbers)
    }

    /// Whether segment `seg` has a sealed index file (intact or not: its presence proves
    /// that a later segment held a published frame). A file that is there but cannot be
    /// opened is there: only its absence proves nothing.
    fn has_sealed_index(&self, seg: u64) -> bool {
        match self
            .vfs
            .open(&sealed_index_path(self.dir, seg), OpenMode::Read)
        {
            Ok(_) => true,
            Err(e) => e.kind() != std::io::ErrorKind::NotFound,
        }
    }

    /// Reads `index.dat` and checks that what it says about frames is plausible, given
    /// the segments' lengths in all.
    fn load_index(&self, segment_bytes: u64) -> Result<IndexState, OpenError> {
        let file = match read_index_file(self.vfs, self.dir, index_file_cap(segment_bytes))? {
            IndexRead::Intact(file) => file,
            IndexRead::Absent | IndexRead::Damaged => return Ok(IndexState::Unusable),
            IndexRead::TooLong(_) => return Ok(IndexState::Implausible),
        };
        if let Some(limit) = self.o.limit
            && file.covered > limit
        {
            // written by the live writer after it published the end this read stops at:
            // it describes segments this read does not look at, and proves nothing of
            // those it does
            return Ok(IndexState::Unusable);
        }
        if file.covered.offset < SEGMENT_HEADER_LEN as u64 {
            return Ok(IndexState::Implausible);
        }
        if let Some((_, _, last)) = file.frames.last()
            && last.end() > file.covered
        {
            return Ok(IndexState::Implausible);
        }
        // readers allocate what the index says a frame is long: every frame must be a
        // plausible length. The frames follow each other without a gap (a segment's first
        // frame right after its header) and the last ends where the index says the log is
        // covered, or the covered end is the start of a later segment (rolled over to,
        // nothing in it yet): the scan starts at the covered end, so frames left out of
        // the list before it would never be read.
        let min_len = (FRAME_OVERHEAD + format::MIN_BODY_LEN) as u64;
        let segment_start = SEGMENT_HEADER_LEN as u64;
        let mut previous_end: Option<LogOffset> = None;
        for (_, _, at) in &file.frames {
            let len = u64::from(at.len);
            let start = LogOffset::new(at.segment, at.offset);
            let follows = match previous_end {
                None => at.offset >= segment_start,
                Some(end) if end.segment == at.segment => start == end,
                Some(end) => at.segment == end.segment + 1 && at.offset == segment_start,
            };
            if !(min_len..=self.o.frame_cap as u64).contains(&len) || !follows {
                return Ok(IndexState::Implausible);
            }
            previous_end = Some(at.end());
        }
        if let Some(end) = previous_end
            && end != file.covered
            && !(file.covered.segment > end.segment && file.covered.offset == segment_start)
        {
            return Ok(IndexState::Implausible);
        }
        Ok(IndexState::Intact(file))
    }

    /// Adds the frames `index.dat` lists in segments from `first_unsealed` on; `false`
    /// when it does not continue the sealed segments (it is older or newer than they
    /// are), and then nothing was added.
    fn load_recent(
        &self,
        index: &mut Index,
        file: &IndexFile,
        first_unsealed: u64,
        base_ordinals: Option<Vec<Option<u32>>>,
    ) -> bool {
        if file.covered.segment < first_unsealed {
            return false;
        }
        let mut position = file.first_position();
        let mut from = 0;
        for (i, (_, count, at)) in file.frames.iter().enumerate() {
            if at.segment >= first_unsealed {
                from = i;
                break;
            }
            position += count;
            from = i + 1;
        }
        let frames = &file.frames[from..];
        // the index lists every frame after the sealed segments: the first one starts
        // right after the header of the first segment not sealed, and an index listing
        // none covers nothing of that segment. (A list that starts later, or a covered
        // end further in, would have the scan start past frames that no index holds.)
        let start = LogOffset::segment_start(first_unsealed);
        let continues = position == index.head + 1
            && match frames.first() {
                Some((_, _, at)) => LogOffset::new(at.segment, at.offset) == start,
                None => file.covered == start,
            };
        if !continues {
            return false;
        }
        if let Err(e) = index.push_listed(file, from, position, base_ordinals) {
            // cannot happen: the frames continue the log, and versions are computed in order
            tracing::error!("index out of step: {e}");
        }
        index.covered = file.covered;
        true
    }

    /// Installs the id filter of each complete window of sealed segments whose group file
    /// is intact and was built for those segments (others are written again once the
    /// store runs). A failed read is an error.
    fn load_groups(&self, index: &mut Index, report: &mut RecoveryReport) -> Result<(), OpenError> {
        let windows = index.sealed.len() as u64 / GROUP_SEGMENTS;
        for w in 0..windows {
            let path = group_filter_path(self.dir, w);
            let file = match self.vfs.open(&path, OpenMode::Read) {
                Ok(file) => file,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(&path)(e)),
            };
            let first = (w * GROUP_SEGMENTS) as usize;
            let Some(members) = index.sealed.get(first..first + GROUP_SEGMENTS as usize) else {
                continue;
            };
            match IdGroup::read(&*file, w, members) {
                Ok(Ok(group)) => match index.install_group(group) {
                    Ok(()) => report.group_filters_loaded += 1,
                    Err(reason) => tracing::warn!("{}: {reason}", path.display()),
                },
                Ok(Err(reason)) => {
                    tracing::warn!("{}: {reason}; it is written again", path.display());
                }
                Err(e) => return Err(read_err(&path, 0)(e)),
            }
        }
        Ok(())
    }

    /// The sealed index of segment `seg`: `None` when it is missing or damaged (it is then
    /// rebuilt from the segment); a failed read is an error.
    /// Without runs, the segment's stream table is kept when it and as many more as the
    /// `left` segments still to read (the newest ones, kept in the end) fit the cache.
    fn read_sealed(
        &self,
        seg: u64,
        segment_len: u64,
        with_runs: bool,
        left: u64,
    ) -> Result<Option<ReadSealed>, OpenError> {
        let path = sealed_index_path(self.dir, seg);
        let file = match self.vfs.open(&path, OpenMode::Read) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            // a repair or a verification reads every frame, and reports or writes again
            // the derived files it cannot read
            Err(e) if self.o.ignore_index => {
                tracing::warn!("{}: {e}; it is read from the segment", path.display());
                return Ok(None);
            }
            Err(e) => return Err(io_err(&path)(e)),
        };
        let read = if with_runs {
            Sealed::read(&*file, seg, segment_len)
        } else {
            let keep = crate::seal::Keep {
                budget: self.o.table_budget,
                share: self.o.table_budget / usize::try_from(left.max(1)).unwrap_or(usize::MAX),
            };
            Sealed::read_summary(&*file, seg, segment_len, keep)
        };
        match read {
            Ok(read) => Ok(Some(read)),
            // the sealed index's reads name their offsets themselves
            Err(SealedError::Io(e)) => Err(io_err(&path)(e)),
            Err(SealedError::Damaged { offset, reason }) => {
                tracing::warn!(
                    "{} at offset {offset}: {reason}; it is rebuilt from the segment",
                    path.display()
                );
                Ok(None)
            }
        }
    }

    fn check_header(
        &self,
        file: &dyn VfsFile,
        seg: u64,
        next_position: Option<u64>,
    ) -> Result<(), HeaderProblem> {
        let mut b = [0u8; SEGMENT_HEADER_LEN];
        match file.read_exact_at(&mut b, 0) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(HeaderProblem::Bad(
                    "the file is shorter than a header".into(),
                ));
            }
            Err(e) => return Err(HeaderProblem::Io(e)),
        }
        let h = match SegmentHeader::decode(&b) {
            Ok(h) => h,
            Err(format::FormatError::NewerFormat { found }) => {
                return Err(HeaderProblem::Newer(found));
            }
            Err(e) => return Err(HeaderProblem::Bad(e.to_string())),
        };
        if h.segment_no != seg {
            return Err(HeaderProblem::Bad(format!(
                "header names segment {}",
                h.segment_no
            )));
        }
        if let Some(next_position) = next_position
            && h.first_position != next_position
        {
            return Err(HeaderProblem::Bad(format!(
                "header starts at position {}, but the log continues at {next_position}",
                h.first_position
            )));
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
        report: &mut RecoveryReport,
    ) -> Result<u64, OpenError> {
        let path = segment_path(self.dir, seg);
        let mut window = ReadAhead::default();
        while offset < len {
            let Some(bytes) = window
                .frame(file, offset, len, self.o.frame_cap)
                .map_err(read_err(&path, offset))?
            else {
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
            if index.push(&stream_id, entry, &frame_ids).is_err() {
                return Ok(offset);
            }
            report.frames_scanned += 1;
            if let Some(progress) = self.o.progress {
                progress(frame_len);
            }
            offset += frame_len;
        }
        Ok(offset)
    }

    /// Decides what the bytes after the last valid frame of the last segment are. They
    /// may be cut only when nothing proves that they were durable: no later frame that
    /// passes its checksum records the segment as synced past them, and they look like
    /// what a lost write leaves (zeros where bytes were owed, or the end of the file).
    fn classify_tail(
        &self,
        file: &dyn VfsFile,
        at: u64,
        len: u64,
        next_position: u64,
        reason: &str,
    ) -> std::io::Result<Tail> {
        if all_zero(file, at, len)? {
            return Ok(Tail::Room);
        }
        match self.proof_of_durability(file, at, len, next_position)? {
            Proof::Found { later, synced } => {
                return Ok(Tail::Damage(format!(
                    "{reason}; the frame at offset {later} passes its checksum and records \
                     that this segment was durable up to offset {synced} when it was written"
                )));
            }
            Proof::TooCostly { checked } => {
                return Ok(Tail::Damage(format!(
                    "{reason}; the {} bytes after it hold so many frame-like lengths that \
                     {checked} bytes were checked without ruling out a frame that proves \
                     them durable, so they are not cut",
                    len - at
                )));
            }
            Proof::None => {}
        }
        if !looks_unwritten(file, at, len, self.o.frame_cap)?
            && !stale_frame(file, at, len, self.o.frame_cap, next_position)?
        {
            return Ok(Tail::Damage(format!(
                "{reason}; its bytes are not what a write cut short by a crash leaves (no \
                 unwritten sector, lengths that disagree only where zeros stand, or end of file)"
            )));
        }
        Ok(Tail::Torn)
    }

    /// Looks for a frame in `from..len` that passes its checksum, belongs at or after
    /// `next_position`, and records its segment as durable past `from`. Every offset is
    /// tried, but the bytes of candidates read and checksummed are bounded by
    /// [`proof_budget`]: bytes crafted so that every offset looks like the start of a
    /// large frame would otherwise cost a read and a checksum of that size per offset.
    fn proof_of_durability(
        &self,
        file: &dyn VfsFile,
        from: u64,
        len: u64,
        next_position: u64,
    ) -> std::io::Result<Proof> {
        let budget = proof_budget(len - from, self.o.frame_cap);
        let mut checked = 0u64;
        let mut window = ReadAhead::default();
        let mut offset = from + 1;
        while offset + (FRAME_OVERHEAD + format::MIN_BODY_LEN) as u64 <= len {
            if checked > budget {
                return Ok(Proof::TooCostly { checked });
            }
            let mut step = 1;
            if let Some(bytes) = window.candidate(file, offset, len, self.o.frame_cap)? {
                checked += bytes.len() as u64;
                if let Ok(body) = format::check_frame(bytes)
                    && let Ok(frame) = Frame::parse(body)
                    && frame.place.first_position >= next_position
                {
                    if let Some(synced) = frame
                        .place
                        .synced_back
                        .and_then(|back| offset.checked_sub(back))
                        && synced > from
                    {
                        return Ok(Proof::Found {
                            later: offset,
                            synced,
                        });
                    }
                    step = bytes.len() as u64;
                }
            }
            offset += step;
        }
        Ok(Proof::None)
    }
}

/// What the search for a later frame proving a bad tail durable found.
enum Proof {
    /// No such frame.
    None,
    /// The frame at `later` records its segment as durable up to `synced`.
    Found { later: u64, synced: u64 },
    /// The search gave up after checking `checked` bytes of candidates: the tail is then
    /// kept and reported, never cut.
    TooCostly { checked: u64 },
}

/// The bytes of candidate frames the search for a proof reads and checksums in a tail of
/// `tail` bytes: each byte of the tail twice (real frames in it are checked once, then
/// stepped over), plus a few candidates of the largest size. An honest tail, what a crash
/// leaves of the last writes, stays far below it; only bytes made so that offset after
/// offset looks like a large frame reach it.
fn proof_budget(tail: u64, frame_cap: usize) -> u64 {
    tail.saturating_mul(2)
        .saturating_add((frame_cap as u64).saturating_mul(4))
}

/// The first place where the segments present do not hold what an intact index lists:
/// its covered segment missing or shorter than the covered end, or a listed frame past
/// the end of its segment.
fn first_unfit(index: &IndexFile, lens: &[u64]) -> Option<LogOffset> {
    let LogOffset {
        segment: seg,
        offset,
    } = index.covered;
    match lens.get(seg as usize) {
        None => return Some(LogOffset::new(seg, 0)),
        Some(&len) if len < offset => return Some(LogOffset::new(seg, len)),
        _ => {}
    }
    index.frames.iter().find_map(|(_, _, at)| {
        let len = *lens.get(at.segment as usize)?;
        (at.end().offset > len).then_some(LogOffset::new(at.segment, len))
    })
}

/// Whether an intact frame that continues the log at position `first` follows the header
/// of a segment `len` bytes long (a frame at another position means events were lost
/// before it: the header is then not written again, and the damage stays reported).
fn frame_follows_header(
    file: &dyn VfsFile,
    len: u64,
    frame_cap: usize,
    first: u64,
) -> std::io::Result<bool> {
    let start = SEGMENT_HEADER_LEN as u64;
    let mut prefix = [0u8; 8];
    if len < start + prefix.len() as u64 {
        return Ok(false);
    }
    file.read_exact_at(&mut prefix, start)?;
    let Ok(n) = format::frame_len(&prefix, frame_cap) else {
        return Ok(false);
    };
    if start + n as u64 > len {
        return Ok(false);
    }
    let mut frame = vec![0u8; n];
    file.read_exact_at(&mut frame, start)?;
    Ok(format::check_frame(&frame)
        .and_then(format::Frame::parse)
        .is_ok_and(|f| f.place.first_position == first))
}

/// Why a segment header is not accepted.
enum HeaderProblem {
    /// Written by a newer format.
    Newer(u32),
    /// Unreadable.
    Io(std::io::Error),
    /// Not a valid header of this segment.
    Bad(String),
}

/// Whether a last segment with a bad header is what a crash while creating it leaves: the
/// header is written and synced before anything else, so such a file is no longer than a
/// header and holds nothing but a prefix of the expected header with zeros. Anything else
/// is not ours to remove.
pub(crate) fn unfinished_segment(
    file: &dyn VfsFile,
    len: u64,
    seg: u64,
    first_position: u64,
) -> std::io::Result<bool> {
    if len > SEGMENT_HEADER_LEN as u64 {
        return Ok(false);
    }
    let mut b = vec![0u8; len as usize];
    file.read_exact_at(&mut b, 0)?;
    let expected = SegmentHeader {
        segment_no: seg,
        first_position,
    }
    .encode();
    let mut older = expected;
    older[8..12].copy_from_slice(&format::OLDEST_FORMAT_VERSION.to_le_bytes());
    Ok(b.iter()
        .zip(expected.iter().zip(older.iter()))
        .all(|(&got, (&a, &o))| got == 0 || got == a || got == o))
}

/// Whether the bytes at `at` are a whole frame of an older log (one cut at a torn tail
/// before this log grew over the same place): it passes its checksum, which covers its
/// position, and its position lies behind the one the log continues at. No frame of this
/// log can hold such a position there.
fn stale_frame(
    file: &dyn VfsFile,
    at: u64,
    len: u64,
    cap: usize,
    next_position: u64,
) -> std::io::Result<bool> {
    let mut window = ReadAhead::default();
    Ok(window
        .frame(file, at, len, cap)?
        .and_then(|bytes| format::check_frame(bytes).ok())
        .and_then(|body| Frame::parse(body).ok())
        .is_some_and(|f| f.end_position() <= next_position))
}

/// The size of the smallest unit a disk writes or loses as a whole: a lost write of a
/// frame whose both ends persisted leaves at least one such aligned block of zeros.
const SECTOR: u64 = 512;

/// Whether the bad frame at `at` is what a write cut short by a crash leaves: nothing
/// written at its start, a frame running past the end of the file, a trailing length
/// that differs from the leading one only where it holds zeros, or, with both lengths
/// intact, an aligned sector of zeros inside it or a sector torn partway (a run of zeros
/// up to a sector boundary). A flipped bit or garbage in a whole frame is none of these.
fn looks_unwritten(file: &dyn VfsFile, at: u64, len: u64, cap: usize) -> std::io::Result<bool> {
    if len - at < FRAME_PREFIX_LEN as u64 {
        return Ok(true);
    }
    let mut prefix = [0u8; FRAME_PREFIX_LEN];
    file.read_exact_at(&mut prefix, at)?;
    let leading = [prefix[0], prefix[1], prefix[2], prefix[3]];
    if leading == [0; 4] {
        return Ok(true);
    }
    // a sector boundary inside the length field with zeros before it: that sector was lost
    if let Some(k) = (1..4usize).find(|&k| (at + k as u64).is_multiple_of(SECTOR))
        && leading[..k].iter().all(|&b| b == 0)
    {
        return Ok(true);
    }
    // a write torn inside the length field (or the sector after it lost): zeros from the
    // tear on, through the next sector's worth of bytes or to the end of the file
    let zeros_from = leading.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    if zeros_from < 4 {
        let from = at + zeros_from as u64;
        if all_zero(file, from, (from + SECTOR).min(len))? {
            return Ok(true);
        }
    }
    let Ok(n) = format::frame_len(&prefix, cap) else {
        return Ok(false);
    };
    let n = n as u64;
    if at + n > len {
        return Ok(true);
    }
    let mut bytes = vec![0u8; n as usize];
    file.read_exact_at(&mut bytes, at)?;
    let t = n as usize - FRAME_SUFFIX_LEN;
    let trailing = &bytes[t..];
    // a stored checksum of zero is what an unwritten checksum field reads as (a real one
    // is zero once in four billion frames)
    if prefix[4..8] == [0; 4] {
        return Ok(true);
    }
    if trailing != leading {
        // the end of the frame was not written: its trailing length is the leading one
        // with zeros where bytes were owed
        return Ok(trailing
            .iter()
            .zip(leading.iter())
            .all(|(&t, &l)| t == l || t == 0));
    }
    let mut block = at.div_ceil(SECTOR) * SECTOR;
    while block < at + n {
        let from = (block - at) as usize;
        let to = ((block + SECTOR).min(at + n) - at) as usize;
        // a lost sector inside the frame
        if bytes[from..to].iter().all(|&b| b == 0) {
            return Ok(true);
        }
        // a sector torn partway: zeros from the tear up to its end, the next one written
        let run = bytes[..from].iter().rev().take_while(|&&b| b == 0).count();
        if run >= TORN_SECTOR_RUN {
            return Ok(true);
        }
        block += SECTOR;
    }
    Ok(false)
}

/// Zero bytes in a row, ending at a sector boundary, that count as a sector torn partway.
/// JSON holds no zero byte; the binary fields of a frame hold short runs (a small
/// position's high bytes), so a natural run ending exactly at a sector boundary is rare,
/// and a flipped bit in such a frame of the unproven last group is the accepted risk. A
/// sector torn within its last three bytes is refused as damage.
const TORN_SECTOR_RUN: usize = 4;

/// Writes `from..to` of the file again with what it reads, and syncs it.
fn rewrite_durably(file: &dyn VfsFile, from: u64, to: u64) -> std::io::Result<()> {
    let failed = |what: String| {
        move |e: std::io::Error| std::io::Error::new(e.kind(), format!("{what}: {e}"))
    };
    let mut buf = vec![0u8; READ_AHEAD.min((to - from) as usize)];
    let mut at = from;
    while at < to {
        let n = ((to - at) as usize).min(buf.len());
        file.read_exact_at(&mut buf[..n], at)
            .map_err(failed(format!("reading {n} bytes at offset {at}")))?;
        file.write_all_at(&buf[..n], at)
            .map_err(failed(format!("writing {n} bytes at offset {at}")))?;
        at += n as u64;
    }
    file.sync_data().map_err(failed("fdatasync".to_owned()))
}

/// Whether `from..to` of the file holds only zero bytes.
fn all_zero(file: &dyn VfsFile, from: u64, to: u64) -> std::io::Result<bool> {
    let mut buf = vec![0u8; READ_AHEAD.min((to - from) as usize)];
    let mut at = from;
    while at < to {
        let n = ((to - at) as usize).min(buf.len());
        file.read_exact_at(&mut buf[..n], at)?;
        if buf[..n].iter().any(|&b| b != 0) {
            return Ok(false);
        }
        at += n as u64;
    }
    Ok(true)
}

fn describe_bad_frame(
    file: &dyn VfsFile,
    offset: u64,
    len: u64,
    cap: usize,
) -> std::io::Result<String> {
    let mut prefix = [0u8; FRAME_PREFIX_LEN];
    if len - offset < FRAME_PREFIX_LEN as u64 {
        return Ok("incomplete frame header".into());
    }
    file.read_exact_at(&mut prefix, offset)?;
    Ok(match format::frame_len(&prefix, cap) {
        Err(e) => e.to_string(),
        Ok(n) if offset + n as u64 > len => {
            format!("frame of {n} bytes runs past the end of the file")
        }
        Ok(n) => {
            let mut bytes = vec![0u8; n];
            file.read_exact_at(&mut bytes, offset)?;
            match format::check_frame(&bytes).and_then(Frame::parse) {
                Err(e) => e.to_string(),
                Ok(f) => format!(
                    "frame at position {} does not continue the log or its stream",
                    f.place.first_position
                ),
            }
        }
    })
}

/// Writes the sealed index of a segment (atomically, synced) and reads back its summary and
/// its stream table (entries and names).
pub fn write_sealed(
    vfs: &dyn Vfs,
    dir: &Path,
    frames: &SegmentFrames,
) -> std::io::Result<(Sealed, Vec<u8>)> {
    let segment = frames.segment;
    let len = frames
        .frames
        .last()
        .map_or(SEGMENT_HEADER_LEN as u64, |(_, f)| f.at.end().offset);
    let bytes = Sealed::encode(frames, len)
        .ok_or_else(|| std::io::Error::other(format!("segment {segment} holds no frame")))?;
    let path = sealed_index_path(dir, segment);
    crate::vfs::write_atomically(vfs, dir, &path, &bytes)?;
    let file = vfs.open(&path, OpenMode::Read)?;
    Sealed::read(&*file, segment, len)
        .map(|read| (read.sealed, read.table))
        .map_err(|e| match e {
            SealedError::Io(e) => e,
            SealedError::Damaged { offset, reason } => std::io::Error::other(format!(
                "{} reads back damaged at offset {offset}: {reason}",
                path.display()
            )),
        })
}
