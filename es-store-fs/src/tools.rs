//! Whole-store tools: verification of every frame, repair, and export to / import from
//! JSON Lines.

use crate::error::OpenError;
use crate::format::MAX_FRAME_LEN;
use crate::index::{Base, FrameEntry, Index, IndexFile};
use crate::layout::{INDEX_FILE, LogOffset, sealed_index_path, segment_number, segment_path};
use crate::recovery;
use crate::seal::Sealed;
use crate::vfs::{StdFs, Vfs};
use es_core::{EventStore, ExpectedVersion, NewEvent, RecordedEvent, StoreError};
use std::collections::BTreeMap;
use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::Path;

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Segment files.
    pub segments: u64,
    /// Frames checked.
    pub frames: u64,
    /// Events in the log.
    pub events: u64,
    /// Streams.
    pub streams: u64,
    /// Bytes of log checked.
    pub bytes: u64,
    /// A torn tail after the last valid frame (a crash before its append was
    /// acknowledged, not yet cut because the store was not reopened for writing).
    pub torn_tail: Option<crate::error::TornTail>,
    /// The state of `index.dat`.
    pub index: IndexStatus,
}

/// How `index.dat` compares with the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexStatus {
    /// Present and equal to the log up to what it covers.
    Consistent {
        /// Frames it covers.
        covered_frames: u64,
    },
    /// Absent: the next open rebuilds it.
    Missing,
    /// Failing its checksum or describing impossible frames: derived data, rebuilt at the
    /// next open.
    Unusable(String),
    /// Intact, but listing frames other than the log's: an open would trust it and reads
    /// would fail. Damage: [`verify`] reports it as an error.
    Disagrees(String),
    /// Written by the live writer after the end this check reads to (its covered end lies
    /// past it): not compared. A check once the writer has closed compares it.
    Newer,
}

/// Checks every frame of the store in `dir` (checksum, positions, stream versions) and
/// compares the index file with the log. It reaches the verdict an open would: damage
/// anywhere, a failed read, or an index proving the log once held more is an error; a
/// torn tail (what a crash left of appends never acknowledged) is reported and is not.
/// Read-only: takes no lock, changes nothing; beside a live writer it checks the log up
/// to the end the writer published. `progress` is called with the bytes of each frame
/// checked, out of `total`, which [`log_size`] gives.
///
/// Damage is `Err(OpenError::Corrupted { file, segment, offset, .. })`.
pub fn verify(dir: &Path, progress: &dyn Fn(u64)) -> Result<VerifyReport, OpenError> {
    verify_on(&StdFs, dir, progress)
}

/// [`verify`] on another file system (a simulated disk in tests).
#[doc(hidden)]
pub fn verify_on(
    vfs: &dyn Vfs,
    dir: &Path,
    progress: &dyn Fn(u64),
) -> Result<VerifyReport, OpenError> {
    crate::marker::inspect(vfs, dir, true)?;
    let (published, scanned) = crate::store::read_beside_writers(vfs, dir, |published| {
        recovery::recover(
            vfs,
            dir,
            recovery::RecoverOptions {
                ignore_index: true,
                limit: published.map(|p| p.end),
                limit_durable: published.map(|p| p.durable),
                progress: Some(progress),
                ..recovery::RecoverOptions::open(MAX_FRAME_LEN, true, false)
            },
        )
    })?;
    let scanned = scanned?;
    let limit = published.map(|p| p.end);
    let log = &scanned.index;
    let index_exists = vfs
        .open(&dir.join(INDEX_FILE), crate::vfs::OpenMode::Read)
        .is_ok();
    let segment_bytes = (0..scanned.segment_count)
        .map(|no| segment_len(vfs, dir, no))
        .sum();
    let index = match recovery::read_index_file(vfs, dir, recovery::index_file_cap(segment_bytes))?
    {
        recovery::IndexRead::Absent => IndexStatus::Missing,
        recovery::IndexRead::Damaged if !index_exists => IndexStatus::Missing,
        recovery::IndexRead::Damaged => {
            IndexStatus::Unusable("damaged (checksum or structure)".into())
        }
        recovery::IndexRead::TooLong(len) => IndexStatus::Unusable(format!(
            "{len} bytes long, more than an index of {segment_bytes} bytes of segments can be"
        )),
        // the live writer wrote it after publishing the end read above: it describes
        // frames this check does not read
        recovery::IndexRead::Intact(file) if limit.is_some_and(|l| file.covered > l) => {
            IndexStatus::Newer
        }
        recovery::IndexRead::Intact(file) => compare_index(log, &file),
    };
    if let Some((segment, why)) =
        compare_sealed(vfs, dir, log, scanned.segment_count, Compare::First)?.pop()
    {
        return Err(OpenError::Corrupted {
            file: sealed_index_path(dir, segment),
            segment,
            offset: 0,
            reason: format!("{why}; remove the sealed index to rebuild it from the segment"),
        });
    }
    if let Some((window, why)) =
        compare_groups(vfs, dir, log, scanned.segment_count, Compare::First)?.pop()
    {
        let path = crate::layout::group_filter_path(dir, window);
        return Err(OpenError::Corrupted {
            file: path,
            segment: window * crate::group::GROUP_SEGMENTS,
            offset: 0,
            reason: format!(
                "the group id filter is intact and fits its segments but {why}; remove it to \
                 rebuild it from their indexes"
            ),
        });
    }
    if let IndexStatus::Disagrees(why) = &index {
        return Err(OpenError::Corrupted {
            file: dir.join(INDEX_FILE),
            segment: log.covered.segment,
            offset: 0,
            reason: format!(
                "the index file is intact but {why}; remove it to rebuild it from the log"
            ),
        });
    }
    let bytes = log.recent.iter().map(|f| u64::from(f.at.len)).sum();
    Ok(VerifyReport {
        segments: scanned.segment_count,
        frames: log.recent.len() as u64,
        events: log.head,
        streams: log.stream_count() as u64,
        bytes,
        torn_tail: scanned.report.torn_tail,
        index,
    })
}

/// What [`repair_detailed`] found and did, or with `dry_run` would do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepairReport {
    /// What the open with repair on found and did (in a dry run, would do).
    pub recovery: crate::RecoveryReport,
    /// The events in the bytes the repair cuts, when it cuts any.
    pub cut: Option<CutEvents>,
    /// Index files that an open would trust but that disagree with the log. They are
    /// derived data: a repair writes every index again from the log, and cuts nothing of
    /// the log for them.
    pub stale_indexes: Vec<StaleIndex>,
    /// Where the log ended that a live writer had published, when one held the store: a
    /// dry run reads the log only up to there (beyond it, frames may still be being
    /// written), and a repair cannot run until the writer has closed.
    pub live_writer_end: Option<LogEnd>,
}

/// A place in the log: a segment and a byte offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogEnd {
    /// The segment.
    pub segment: u64,
    /// The byte offset in it.
    pub offset: u64,
}

/// The events in what a repair cuts, so that those still readable can be saved first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CutEvents {
    /// The first position cut: the one after the last event kept.
    pub first_position: u64,
    /// The last position known to be cut: that of the last intact frame after the
    /// damage, or the last position that `PUBLISHED` or `index.dat` records the log
    /// held, whichever is later. `None` when neither tells (the events of a damaged frame
    /// cannot be counted).
    pub last_position: Option<u64>,
    /// Frames after the damage that pass their checksum and continue the positions:
    /// intact, and readable while the store still opens.
    pub intact_frames: u64,
    /// The events of those frames.
    pub intact_events: u64,
    /// The first position of those frames.
    pub first_intact_position: Option<u64>,
    /// Whether every offset of the cut was searched for intact frames. Bytes made so
    /// that offset after offset looks like a large frame end the search early, and the
    /// counts are then only lower bounds.
    pub searched_whole: bool,
}

/// An index file that disagrees with the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaleIndex {
    /// The file.
    pub file: std::path::PathBuf,
    /// How it disagrees.
    pub reason: String,
}

/// Why [`repair_detailed`] failed.
#[derive(Debug, thiserror::Error)]
pub enum RepairError {
    /// The store could not be opened or read; nothing was changed.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// The repair was done (its cut, if any, made and synced) but closing the store
    /// failed: the report says what was cut.
    #[error(
        "the repair was made (any cut was synced before the store was closed), but closing \
         the store failed: {error}; the index is rebuilt from the log at the next open"
    )]
    NotClosed {
        /// What the repair found and did.
        report: Box<RepairReport>,
        /// Why closing failed.
        error: StoreError,
    },
    /// The repair was done, but a stale derived file could not be removed: an open
    /// would trust it. The report says what was cut.
    #[error(
        "the repair was made, but the stale derived file {} could not be removed: {error}; \
         remove it before the store is opened again, which would trust it",
        path.display()
    )]
    StaleLeft {
        /// What the repair found and did.
        report: Box<RepairReport>,
        /// The file.
        path: std::path::PathBuf,
        /// Why it could not be removed.
        error: std::io::Error,
    },
}

/// Opens the store in `dir` with repair on, as [`repair_detailed`] does, and returns what
/// the open found and did. A failure to close the store after the repair is an
/// [`OpenError::Io`] naming the directory.
pub fn repair(dir: &Path, dry_run: bool) -> Result<crate::RecoveryReport, OpenError> {
    match repair_detailed(dir, dry_run) {
        Ok(report) => Ok(report.recovery),
        Err(RepairError::Open(e)) => Err(e),
        Err(e @ (RepairError::NotClosed { .. } | RepairError::StaleLeft { .. })) => {
            Err(OpenError::Io {
                path: dir.to_owned(),
                source: std::io::Error::other(e.to_string()),
            })
        }
    }
}

/// Opens the store in `dir` with repair on: damage is cut at the first bad frame (later
/// segments are removed), what a durable record proves missing is reported, and the
/// report says exactly what was dropped (the bytes, the positions, and the events of the
/// intact frames after the damage) and which index files disagree with the log (the
/// repair writes them again). With `dry_run`, nothing on disk changes and the report
/// says what a repair would do; beside a live writer it reads the log only up to the end
/// the writer published, as [`verify`] does. Without `dry_run` it takes the write lock.
/// A directory that is not a store is refused either way, before anything is written.
///
/// The log is read once without the lock to count the events in what would be cut
/// (once cut they can no longer be read), then again by the repair itself.
///
/// A repair is the user's choice: it loses the events in what it cuts. Copy the directory
/// first if those bytes may matter.
pub fn repair_detailed(dir: &Path, dry_run: bool) -> Result<RepairReport, RepairError> {
    let vfs = StdFs;
    crate::marker::inspect(&vfs, dir, true)?;
    let assessed = assess_repair(&vfs, dir)?;
    if dry_run {
        return Ok(assessed);
    }
    // every stale sealed index and id filter goes, once the repair's recovery has read
    // the directory as it was and before its store writes anything: the store writes
    // them again (a filter in the background, a sealed index as it seals the segment;
    // until then a missing one is safe: the open reads the segment, look-ups each
    // segment's own filter). `index.dat` is never listed: the repair writes it anew
    let derived: Vec<std::path::PathBuf> = assessed
        .stale_indexes
        .iter()
        .map(|stale| stale.file.clone())
        .filter(|file| file.file_name().is_none_or(|n| n != INDEX_FILE))
        .collect();
    let (store, not_removed) = crate::FileStore::open_removing(
        dir,
        crate::FileStoreOptions {
            repair: true,
            ..crate::FileStoreOptions::default()
        },
        &derived,
    )?;
    let recovery = store.recovery_report().clone();
    // the events counted describe this cut only if the repair cut exactly there
    let cut = assessed
        .cut
        .filter(|_| recovery.repaired == assessed.recovery.repaired);
    let report = RepairReport {
        recovery,
        cut,
        stale_indexes: assessed.stale_indexes,
        live_writer_end: None,
    };
    let closed = store.close();
    if let Some((path, error)) = not_removed.into_iter().next() {
        return Err(RepairError::StaleLeft {
            report: Box::new(report),
            path,
            error,
        });
    }
    match closed {
        Ok(()) => Ok(report),
        Err(error) => Err(RepairError::NotClosed {
            report: Box::new(report),
            error,
        }),
    }
}

/// What a repair of `dir` would do, read without the lock and changing nothing.
fn assess_repair(vfs: &dyn Vfs, dir: &Path) -> Result<RepairReport, OpenError> {
    let (published, recovered) = crate::store::read_beside_writers(vfs, dir, |published| {
        recovery::recover(
            vfs,
            dir,
            recovery::RecoverOptions {
                limit: published.map(|p| p.end),
                limit_durable: published.map(|p| p.durable),
                ..recovery::RecoverOptions::open(MAX_FRAME_LEN, true, true)
            },
        )
    })?;
    let recovered = recovered?;
    let limit = published.map(|p| p.end);
    let log = &recovered.index;
    // every segment file, also those a repair would remove, bounds the index file
    let segment_bytes = vfs
        .list(dir)
        .map_err(|source| unreadable(dir.to_owned(), source))?
        .iter()
        .filter_map(|name| segment_number(name))
        .map(|no| segment_len(vfs, dir, no))
        .fold(0u64, u64::saturating_add);
    let index_cap = recovery::index_file_cap(segment_bytes);
    let cut = match &recovered.report.repaired {
        Some(r) if r.bytes_dropped > 0 || !r.segments_removed.is_empty() => {
            Some(count_cut(vfs, dir, r, log.head, published, index_cap)?)
        }
        _ => None,
    };
    let mut stale_indexes = Vec::new();
    for (segment, reason) in compare_sealed(vfs, dir, log, recovered.segment_count, Compare::All)? {
        stale_indexes.push(StaleIndex {
            file: sealed_index_path(dir, segment),
            reason,
        });
    }
    for (window, reason) in compare_groups(vfs, dir, log, recovered.segment_count, Compare::All)? {
        stale_indexes.push(StaleIndex {
            file: crate::layout::group_filter_path(dir, window),
            reason,
        });
    }
    // a cut removes the index file whatever it holds
    if recovered.report.repaired.is_none()
        && let recovery::IndexRead::Intact(file) = recovery::read_index_file(vfs, dir, index_cap)?
        && limit.is_none_or(|l| file.covered <= l)
        && let IndexStatus::Disagrees(reason) = compare_index(log, &file)
    {
        stale_indexes.push(StaleIndex {
            file: dir.join(INDEX_FILE),
            reason,
        });
    }
    Ok(RepairReport {
        recovery: recovered.report,
        cut,
        stale_indexes,
        live_writer_end: limit.map(|l| LogEnd {
            segment: l.segment,
            offset: l.offset,
        }),
    })
}

/// The events in what `repair` cuts, the log being kept up to position `kept_head`: the
/// intact frames after the damage (in the segment cut and in those removed whole) that
/// continue the positions, and the last position a record proves the log held.
fn count_cut(
    vfs: &dyn Vfs,
    dir: &Path,
    repair: &crate::Repair,
    kept_head: u64,
    live_writer: Option<crate::published::Published>,
    index_cap: u64,
) -> Result<CutEvents, OpenError> {
    let mut cut = CutEvents {
        first_position: kept_head + 1,
        last_position: None,
        intact_frames: 0,
        intact_events: 0,
        first_intact_position: None,
        searched_whole: true,
    };
    let mut regions = vec![(
        repair.segment,
        repair.offset,
        repair.offset.saturating_add(repair.bytes_dropped),
    )];
    // a segment whose header is cut is both the segment cut and one removed
    regions.extend(
        repair
            .segments_removed
            .iter()
            .filter(|&&no| no != repair.segment)
            .map(|&no| (no, 0, segment_len(vfs, dir, no))),
    );
    let bytes_cut = regions
        .iter()
        .map(|(_, from, to)| to.saturating_sub(*from))
        .fold(0u64, u64::saturating_add);
    // bytes crafted so that every offset looks like a large frame would cost a checksum
    // of that size per offset: the search stops after twice the bytes cut plus a few
    // frames of the largest size, far more than honest bytes need
    let mut budget = bytes_cut
        .saturating_mul(2)
        .saturating_add((MAX_FRAME_LEN as u64).saturating_mul(4));
    let mut next_position = kept_head + 1;
    'regions: for (segment, from, to) in regions {
        let path = segment_path(dir, segment);
        let file = vfs
            .open(&path, crate::vfs::OpenMode::Read)
            .map_err(|source| unreadable(path.clone(), source))?;
        let mut window = crate::read_ahead::ReadAhead::default();
        let mut offset = from;
        while offset + (crate::format::FRAME_OVERHEAD + crate::format::MIN_BODY_LEN) as u64 <= to {
            let candidate = window
                .candidate(&*file, offset, to, MAX_FRAME_LEN)
                .map_err(|e| {
                    unreadable(
                        path.clone(),
                        std::io::Error::new(e.kind(), format!("reading at offset {offset}: {e}")),
                    )
                })?;
            let mut step = 1;
            if let Some(bytes) = candidate {
                if bytes.len() as u64 > budget {
                    cut.searched_whole = false;
                    break 'regions;
                }
                budget -= bytes.len() as u64;
                // an older frame left behind by an earlier cut has a position behind the
                // log's: it is not one of the events cut
                if let Ok(body) = crate::format::check_frame(bytes)
                    && let Ok(frame) = crate::format::Frame::parse(body)
                    && frame.count > 0
                    && frame.place.first_position >= next_position
                {
                    cut.intact_frames += 1;
                    cut.intact_events = cut.intact_events.saturating_add(frame.count);
                    cut.first_intact_position
                        .get_or_insert(frame.place.first_position);
                    next_position = frame.place.first_position.saturating_add(frame.count);
                    step = bytes.len() as u64;
                }
            }
            offset += step;
        }
    }
    let last_intact = (next_position > kept_head + 1).then(|| next_position - 1);
    // beside a live writer, only the record read with the end the log was read to
    let (index_head, published_head) = match live_writer {
        Some(published) => (None, Some(published.head)),
        None => {
            let index_head = match recovery::read_index_file(vfs, dir, index_cap)? {
                recovery::IndexRead::Intact(file) => Some(file.head),
                _ => None,
            };
            (
                index_head,
                recovery::read_published(vfs, dir)?.map(|p| p.head),
            )
        }
    };
    cut.last_position = [last_intact, index_head, published_head]
        .into_iter()
        .flatten()
        .filter(|&head| head > kept_head)
        .max();
    Ok(cut)
}

/// A derived file that exists but cannot be opened or read: an open would fail on it, so
/// a verification does too, naming it.
fn unreadable(path: std::path::PathBuf, source: std::io::Error) -> OpenError {
    OpenError::Io { path, source }
}

/// A derived file, `None` when it is absent (an open then writes it again); one that is
/// there but cannot be opened is an error naming it.
fn open_if_present(
    vfs: &dyn Vfs,
    path: std::path::PathBuf,
) -> Result<Option<std::sync::Arc<dyn crate::vfs::VfsFile>>, OpenError> {
    match vfs.open(&path, crate::vfs::OpenMode::Read) {
        Ok(file) => Ok(Some(file)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(unreadable(path, source)),
    }
}

/// Compares `index.dat` with the log, scanned whole into `log`.
fn compare_index(log: &Index, file: &IndexFile) -> IndexStatus {
    let first = file.first_position();
    let start = log.recent.partition_point(|f| f.first_position < first);
    let listed = log.recent.iter().skip(start);
    if file.frames.len() > log.recent.len() - start
        || (!file.frames.is_empty()
            && log
                .recent
                .get(start)
                .is_none_or(|f| f.first_position != first))
    {
        return IndexStatus::Disagrees("its frames differ from the log".into());
    }
    for ((ordinal, count, at), f) in file.frames.iter().zip(listed) {
        if *count != f.count || *at != f.at {
            return IndexStatus::Disagrees("its frames differ from the log".into());
        }
        let stream = file
            .stream_ids
            .get(*ordinal as usize)
            .map_or("", String::as_str);
        if log.stream_of_recent(f.first_position) != Some(stream) {
            return IndexStatus::Disagrees(format!("stream `{stream}` differs from the log"));
        }
    }
    let ids = log.recent_ids_from(first);
    if file.ids.len() > ids.len() || file.ids[..] != ids[..file.ids.len()] {
        return IndexStatus::Disagrees("its event ids differ from the log".into());
    }
    // the end it covers is where the frame of its last position ends in the log (or the
    // start of the next segment): an open starts its scan there
    let frame_end = if file.head == 0 {
        Some(LogOffset::segment_start(0))
    } else {
        // the frame holding the last position
        let i = log
            .recent
            .partition_point(|f| f.first_position + f.count <= file.head);
        log.recent
            .get(i)
            .filter(|f| f.first_position + f.count - 1 == file.head)
            .map(|f| f.at.end())
    };
    let covered_fits = frame_end.is_some_and(|end| {
        file.covered == end || file.covered == LogOffset::segment_start(end.segment + 1)
    });
    if !covered_fits {
        return IndexStatus::Disagrees(format!(
            "it covers the log up to {} at position {}, where no frame of the log ends",
            file.covered, file.head
        ));
    }
    if let Some(base) = &file.base
        && let Err(why) = compare_base(log, file, base)
    {
        return IndexStatus::Disagrees(why);
    }
    IndexStatus::Consistent {
        covered_frames: file.frames.len() as u64,
    }
}

/// Compares the stream table `index.dat` records after its sealed segments with the
/// log's first `base.sealed` segments.
fn compare_base(log: &Index, file: &IndexFile, base: &Base) -> Result<(), String> {
    let mut streams: HashMap<&str, (u64, Option<u64>)> = HashMap::new();
    let mut events = 0u64;
    for (f, ordinal) in log.recent_with_streams() {
        if f.at.segment >= base.sealed {
            break;
        }
        events += f.count;
        let id = log.stream_ids.get(ordinal as usize).map_or("", |s| &**s);
        let s = streams.entry(id).or_default();
        s.0 += f.count;
        s.1 = Some(f.at.segment);
    }
    if events + 1 != file.first_position() {
        return Err(format!(
            "its stream table covers {} events, the log's first {} segments hold {events}",
            file.first_position() - 1,
            base.sealed
        ));
    }
    for (id, &recorded) in file.stream_ids.iter().zip(&base.streams) {
        let found = streams.remove(id.as_str()).unwrap_or_default();
        if recorded != found {
            return Err(format!(
                "its stream table has stream `{id}` at version {} (newest segment {:?}) \
                 after segment {}, the log at version {} (newest segment {:?})",
                recorded.0,
                recorded.1,
                base.sealed.saturating_sub(1),
                found.0,
                found.1
            ));
        }
    }
    match streams.keys().next() {
        Some(id) => Err(format!("its stream table lacks stream `{id}`")),
        None => Ok(()),
    }
}

/// Checks each group id filter that an open would use (intact, built for the sealed
/// segments present) against the event ids of its segments, scanned whole into `log`:
/// the windows whose filter lacks an id or cannot be read (the first only, for
/// `Compare::First`).
fn compare_groups(
    vfs: &dyn Vfs,
    dir: &Path,
    log: &Index,
    segments: u64,
    how: Compare,
) -> Result<Vec<(u64, String)>, OpenError> {
    use crate::group::{GROUP_SEGMENTS, IdGroup};
    let mut found = Vec::new();
    let Some(last) = last_segment(log, segments) else {
        return Ok(found);
    };
    let base = log.first_recent_position();
    let mut ids: Option<Vec<uuid::Uuid>> = None;
    for window in 0..last / GROUP_SEGMENTS {
        if how == Compare::First && !found.is_empty() {
            break;
        }
        let open = |path: &Path| vfs.open(path, crate::vfs::OpenMode::Read).ok();
        // absent, an open writes it again; unreadable, an open fails on it
        let path = crate::layout::group_filter_path(dir, window);
        let file = match open_if_present(vfs, path) {
            Ok(Some(file)) => file,
            Ok(None) => continue,
            Err(e) => {
                how.unreadable(e, window, &mut found)?;
                continue;
            }
        };
        let mut members = Vec::new();
        for segment in window * GROUP_SEGMENTS..(window + 1) * GROUP_SEGMENTS {
            let read = open(&sealed_index_path(dir, segment)).and_then(|f| {
                let len = segment_len(vfs, dir, segment);
                Sealed::read_summary(&*f, segment, len, crate::seal::Keep::NOTHING).ok()
            });
            match read {
                Some(read) => members.push(std::sync::Arc::new(read.sealed)),
                None => break,
            }
        }
        if how == Compare::All && members.len() < GROUP_SEGMENTS as usize {
            // not to be checked, and not to be trusted once the sealed indexes missing
            // are written again: a repair lets an open build it anew
            let why = "the sealed indexes of its segments cannot all be read, so it cannot \
                       be checked";
            found.push((window, why.to_owned()));
            continue;
        }
        let group = match IdGroup::read(&*file, window, &members) {
            Ok(Ok(group)) => group,
            // damaged or built for other segments: written again by an open
            Ok(Err(_)) => continue,
            Err(source) => {
                let e = unreadable(crate::layout::group_filter_path(dir, window), source);
                how.unreadable(e, window, &mut found)?;
                continue;
            }
        };
        let (Some(first), Some(last)) = (members.first(), members.last()) else {
            continue;
        };
        let ids = ids.get_or_insert_with(|| log.recent_ids_from(base));
        let from = first.first_position.saturating_sub(base) as usize;
        let count = last.end_position().saturating_sub(first.first_position) as usize;
        let of_window = ids.iter().skip(from).take(count);
        if let Some(id) = of_window.into_iter().find(|id| !group.may_hold(id)) {
            found.push((window, format!("lacks event id {id}")));
        }
    }
    Ok(found)
}

/// The last of `segments` segments, the one never sealed, when the log holds a frame:
/// every segment before it is sealed, also when it holds no frame yet (an open reads
/// their sealed indexes and filters all the same).
fn last_segment(log: &Index, segments: u64) -> Option<u64> {
    log.recent.back().map(|_| segments.saturating_sub(1))
}

/// How a comparison of an index file with the log treats what it finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compare {
    /// Stop at the first file that disagrees; one that cannot be read is an error (an
    /// open fails on it): what `verify` reports.
    First,
    /// List every file that disagrees or cannot be read: a repair writes each again.
    All,
}

impl Compare {
    /// A derived file that could not be read: an error for `verify`, one more file to
    /// write again for a repair.
    fn unreadable(
        self,
        error: OpenError,
        number: u64,
        found: &mut Vec<(u64, String)>,
    ) -> Result<(), OpenError> {
        match self {
            Compare::First => Err(error),
            Compare::All => {
                found.push((number, format!("it cannot be read: {error}")));
                Ok(())
            }
        }
    }
}

/// The length of segment `no`'s file, 0 when it cannot be opened (the scan before has
/// reported that).
fn segment_len(vfs: &dyn Vfs, dir: &Path, no: u64) -> u64 {
    vfs.open(&segment_path(dir, no), crate::vfs::OpenMode::Read)
        .and_then(|f| f.len())
        .unwrap_or(0)
}

/// Compares each intact sealed index with its segment, scanned whole into `log`: those
/// that disagree or cannot be read, with what differs (the first only, for
/// `Compare::First`), a damaged one among them (the next open rebuilds it).
fn compare_sealed(
    vfs: &dyn Vfs,
    dir: &Path,
    log: &Index,
    segments: u64,
    how: Compare,
) -> Result<Vec<(u64, String)>, OpenError> {
    let mut found = Vec::new();
    let Some(last) = last_segment(log, segments) else {
        return Ok(found);
    };
    for segment in 0..last {
        if how == Compare::First && !found.is_empty() {
            break;
        }
        if let Some(stale) = compare_one_sealed(vfs, dir, log, segment)
            .or_else(|e| how.unreadable(e, segment, &mut found).map(|()| None))?
        {
            found.push((segment, stale));
        }
    }
    Ok(found)
}

/// How the sealed index of `segment` disagrees with the log, if it does; an error when
/// it cannot be read.
fn compare_one_sealed(
    vfs: &dyn Vfs,
    dir: &Path,
    log: &Index,
    segment: u64,
) -> Result<Option<String>, OpenError> {
    // absent, an open builds it from its segment; unreadable, an open fails on it
    let Some(file) = open_if_present(vfs, sealed_index_path(dir, segment))? else {
        return Ok(None);
    };
    let read = match Sealed::read(&*file, segment, segment_len(vfs, dir, segment)) {
        Ok(read) => read,
        // an open rebuilds it, but it is damage on the disk all the same: reported as
        // damage elsewhere in the index is
        Err(crate::seal::SealedError::Damaged { offset, reason }) => {
            return Ok(Some(format!(
                "its stream table is damaged at offset {offset}: {reason}"
            )));
        }
        Err(crate::seal::SealedError::Io(source)) => {
            return Err(unreadable(sealed_index_path(dir, segment), source));
        }
    };
    // every stream's frame list comes with the table, so every stream is searched in
    // memory
    let (sealed, table) = (read.sealed, read.table);
    // an intact stream table is trusted at open: the rest must be intact too
    let frames = match sealed.check_all(&*file) {
        Ok(frames) => frames,
        Err(crate::seal::SealedError::Io(e)) => {
            return Ok(Some(format!("it cannot be read: {e}")));
        }
        Err(crate::seal::SealedError::Damaged { offset, reason }) => {
            return Ok(Some(format!("damaged at offset {offset}: {reason}")));
        }
    };
    // the segment's frames: the log's recent frames are in log order
    let from = log.recent.partition_point(|f| f.at.segment < segment);
    let to = log.recent.partition_point(|f| f.at.segment <= segment);
    let of_segment: Vec<_> = log.recent.range(from..to).copied().collect();
    if frames != of_segment {
        return Ok(Some("its frames differ from the segment".into()));
    }
    // each stream's list of frames, searched once per stream
    let mut by_stream: HashMap<&str, Vec<FrameEntry>> = HashMap::new();
    for f in &of_segment {
        if let Some(stream) = log.stream_of_recent(f.first_position) {
            by_stream.entry(stream).or_default().push(*f);
        }
    }
    if by_stream.len() != sealed.streams as usize {
        return Ok(Some(format!(
            "it lists {} streams, the segment holds {}",
            sealed.streams,
            by_stream.len()
        )));
    }
    let src = crate::seal::TableSource::Memory(&table, Some(&*file));
    for (stream, expected) in &by_stream {
        let listed = sealed
            .find_stream(&src, stream)
            .ok()
            .flatten()
            .and_then(|run| sealed.stream_frames(&src, &run, 1).ok());
        if listed.as_ref() != Some(expected) {
            return Ok(Some(format!("stream `{stream}` differs from the segment")));
        }
    }
    // the id table, read whole: in id order (what a look-up searches), and the
    // segment's ids with their positions, no more and no fewer
    let mut listed = match sealed.read_ids(&*file) {
        Ok(ids) => ids,
        Err(crate::seal::SealedError::Io(e)) => {
            return Ok(Some(format!("it cannot be read: {e}")));
        }
        Err(crate::seal::SealedError::Damaged { offset, reason }) => {
            return Ok(Some(format!("damaged at offset {offset}: {reason}")));
        }
    };
    if !listed.is_sorted_by_key(|(id, _)| *id) {
        return Ok(Some("its event id table is out of order".into()));
    }
    let mut expected: Vec<(uuid::Uuid, u64)> = log
        .recent_ids_in(sealed.first_position, sealed.events as usize)
        .into_iter()
        .zip(sealed.first_position..)
        .collect();
    listed.sort_unstable();
    expected.sort_unstable();
    if listed != expected {
        return Ok(Some("its event ids differ from the segment".into()));
    }
    Ok(None)
}

/// Bytes of all segment files in `dir`, for progress bars. A segment that cannot be
/// opened (a link, which the store never follows, or a file gone since the listing) is
/// an error naming it.
pub fn log_size(dir: &Path) -> Result<u64, OpenError> {
    let mut total = 0u64;
    let names = StdFs
        .list(dir)
        .map_err(|source| unreadable(dir.to_owned(), source))?;
    for name in names {
        if segment_number(&name).is_some() {
            let path = dir.join(name);
            let len = StdFs
                .open(&path, crate::vfs::OpenMode::Read)
                .and_then(|file| file.len())
                .map_err(|source| unreadable(path, source))?;
            total = total.saturating_add(len);
        }
    }
    Ok(total)
}

/// Writes every event of the log from `from` on, one JSON object per line; returns how
/// many.
///
/// Each event is exactly one line whatever the whitespace of its stored payload: the
/// payload is written without the whitespace between its tokens (a pretty-printed payload
/// comes out compact; its strings, numbers and key order are kept as stored), and the
/// metadata is written compactly.
pub fn export_jsonl<S: EventStore + ?Sized>(
    store: &S,
    from: u64,
    out: &mut dyn Write,
) -> Result<u64, ExportError> {
    let mut n = 0;
    for event in store.read_all(from)? {
        write_event_line(out, event?)?;
        n += 1;
    }
    out.flush()?;
    Ok(n)
}

/// Writes `event` as one line of JSON, as [`export_jsonl`] does: the payload without the
/// whitespace between its tokens (its strings, numbers and key order kept as stored),
/// the rest compact, then a line break.
///
/// The payload's strings are written as stored, byte for byte (an import stores the same
/// bytes); a line meant for a terminal goes through [`json_displayable`] first.
pub fn write_event_line(out: &mut dyn Write, mut event: RecordedEvent) -> std::io::Result<()> {
    event.payload = without_whitespace(&event.payload);
    serde_json::to_writer(&mut *out, &event)?;
    out.write_all(b"\n")
}

/// JSON text with every character that acts on a terminal
/// ([`es_core::store::acts_on_display`]: control characters JSON leaves as they are, such
/// as DEL and C1 controls, line separators, bidirectional controls) written as a JSON
/// escape (`\u202e`): the same JSON value, shown as it is. Outside strings, JSON text holds
/// no such character.
pub fn json_displayable(json: &str) -> std::borrow::Cow<'_, str> {
    use es_core::store::acts_on_display;
    if !json.chars().any(acts_on_display) {
        return std::borrow::Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if acts_on_display(c) {
            // every such character lies in the basic plane: one escape
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// JSON text without the whitespace between its tokens.
///
/// A JSON string cannot hold a raw line break (it must be escaped), so the result is one
/// line. The text is copied otherwise byte for byte rather than decoded and encoded
/// again: that would change numbers beyond `f64` precision and the order of keys, and
/// would be bounded by the decoder's nesting limit. Well-formed input is assumed (the
/// store checked it on append).
pub fn without_whitespace(json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(json.len());
    let (mut in_string, mut escaped) = (false, false);
    for &b in json {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
        } else if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            continue;
        } else if b == b'"' {
            in_string = true;
        }
        out.push(b);
    }
    out
}

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Reading the store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Writing failed.
    #[error("writing the export: {0}")]
    Io(#[from] std::io::Error),
}

/// What [`import_jsonl`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Streams imported whole.
    pub streams_imported: u64,
    /// Events imported.
    pub events_imported: u64,
    /// Streams that already held these events' ids as one append (the same input
    /// imported before; ids are compared, not payloads): nothing of them was written
    /// again.
    pub streams_already_imported: u64,
    /// Streams refused, with why (nothing of them was written).
    pub streams_refused: Vec<RefusedStream>,
}

/// A stream [`import_jsonl`] did not write, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedStream {
    /// The stream.
    pub stream_id: String,
    /// What the store answered to its append.
    pub reason: String,
}

/// Why an import could not start.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// A line is not an exported event.
    #[error("line {line}: {message}")]
    BadLine {
        /// 1-based line number.
        line: u64,
        /// What is wrong.
        message: String,
    },
    /// A stream's events are ones the store would refuse ([`CheckedImport::check`]).
    #[error("stream `{stream_id}`: {reason}")]
    Refused {
        /// The stream.
        stream_id: String,
        /// What the store's checks say.
        reason: String,
    },
    /// Reading the input failed.
    #[error("reading the import: {0}")]
    Io(#[from] std::io::Error),
}

/// The longest line [`import_jsonl`] reads: an exported event is at most one frame of
/// the log, plus the names of its fields and the text forms of its id and time.
pub const MAX_IMPORT_LINE: usize = MAX_FRAME_LEN + 1024 * 1024;

/// Imports events exported by [`export_jsonl`], keeping their ids, times, metadata and
/// stream versions (global positions are assigned anew): [`read_import`], then
/// [`write_import`]. A malformed line refuses the whole import before anything is
/// written; a stream whose events the store refuses is reported, the streams before it
/// written (the `es-store` tool checks the whole input against the store's limits first,
/// with [`CheckedImport::check`]).
pub fn import_jsonl<S: EventStore + ?Sized>(
    store: &S,
    input: &mut dyn BufRead,
) -> Result<ImportReport, ImportError> {
    Ok(write_import(store, read_import(input)?))
}

/// Every event of an input to import, checked, grouped by stream in the order of each
/// stream's first event in the input.
#[derive(Debug, Clone, Default)]
pub struct CheckedImport {
    /// Each stream with the version of its first event in the input, and its events.
    streams: Vec<(String, u64, Vec<NewEvent>)>,
}

impl CheckedImport {
    /// Checks every stream's events as a store under `limits` checks an append (stream
    /// id, event types, schema versions, sizes, JSON), so that an input with an event the
    /// store would refuse is refused whole before anything is written, rather than after
    /// the streams before it.
    pub fn check(&self, limits: &es_core::Limits) -> Result<(), ImportError> {
        for (stream, _, events) in &self.streams {
            limits
                .check_append(stream, events)
                .map_err(|e| ImportError::Refused {
                    stream_id: stream.clone(),
                    reason: e.to_string(),
                })?;
        }
        Ok(())
    }
}

/// The fields of an exported event ([`RecordedEvent`]), and of its metadata: an input
/// line with another is refused, since the import would drop it.
const EVENT_FIELDS: [&str; 9] = [
    "stream_id",
    "stream_version",
    "position",
    "event_id",
    "timestamp",
    "event_type",
    "schema_version",
    "metadata",
    "payload",
];
const METADATA_FIELDS: [&str; 4] = ["correlation_id", "causation_id", "actor", "extra"];

/// A field of `line` (an exported event, already decoded) that an exported event does
/// not have, named.
fn unknown_field(line: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    let object = value.as_object()?;
    if let Some(key) = object.keys().find(|k| !EVENT_FIELDS.contains(&k.as_str())) {
        return Some(format!(
            "unknown field `{key}`: an exported event has the fields {}",
            EVENT_FIELDS.join(", ")
        ));
    }
    let metadata = object.get("metadata").and_then(|m| m.as_object())?;
    let key = metadata
        .keys()
        .find(|k| !METADATA_FIELDS.contains(&k.as_str()))?;
    Some(format!(
        "unknown metadata field `{key}`: metadata has the fields {}; other values go in \
         `extra`",
        METADATA_FIELDS.join(", ")
    ))
}

/// Reads events exported by [`export_jsonl`]: every line is parsed (a field an exported
/// event does not have is refused, not dropped), each stream's versions checked (dense
/// from its first event's, 1 for a whole stream), and every event id must be new to the
/// input. Nothing is written, so an input
/// that cannot be read is refused before a store is opened; [`CheckedImport::check`]
/// then checks the events as the store will.
///
/// The whole input is held in memory; a line longer than [`MAX_IMPORT_LINE`] is refused
/// as it is read.
pub fn read_import(input: &mut dyn BufRead) -> Result<CheckedImport, ImportError> {
    let mut order: Vec<String> = Vec::new();
    let mut streams: BTreeMap<String, Vec<NewEvent>> = BTreeMap::new();
    let mut ids: HashMap<uuid::Uuid, u64> = HashMap::new();
    let mut first_versions: HashMap<String, u64> = HashMap::new();
    let mut line_no = 0u64;
    let mut bytes = Vec::new();
    loop {
        bytes.clear();
        // no more than a line can hold of one event: a longer line is refused before it
        // is read whole
        let read = std::io::Read::take(&mut *input, MAX_IMPORT_LINE as u64 + 1)
            .read_until(b'\n', &mut bytes)?;
        if read == 0 {
            break;
        }
        line_no += 1;
        if bytes.len() > MAX_IMPORT_LINE {
            return Err(ImportError::BadLine {
                line: line_no,
                message: format!(
                    "longer than {MAX_IMPORT_LINE} bytes, more than an exported event can be"
                ),
            });
        }
        let line = std::str::from_utf8(&bytes).map_err(|e| ImportError::BadLine {
            line: line_no,
            message: format!("not UTF-8: {e}"),
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let event: RecordedEvent =
            serde_json::from_str(line).map_err(|e| ImportError::BadLine {
                line: line_no,
                message: e.to_string(),
            })?;
        if let Some(message) = unknown_field(line) {
            return Err(ImportError::BadLine {
                line: line_no,
                message,
            });
        }
        if let Some(first) = ids.insert(event.event_id, line_no) {
            return Err(ImportError::BadLine {
                line: line_no,
                message: format!(
                    "event id {} is the id of line {first} too: ids name one event each",
                    event.event_id
                ),
            });
        }
        let list = streams.entry(event.stream_id.clone()).or_insert_with(|| {
            order.push(event.stream_id.clone());
            Vec::new()
        });
        // a stream's first event may be a later one (events saved from a store, to be
        // appended where the stream ends); from there on, versions follow each other
        let first = *first_versions
            .entry(event.stream_id.clone())
            .or_insert(event.stream_version);
        let expected = first.saturating_add(list.len() as u64);
        if event.stream_version == 0 {
            return Err(ImportError::BadLine {
                line: line_no,
                message: format!(
                    "stream `{}` has an event at version 0; versions start at 1",
                    event.stream_id
                ),
            });
        }
        if event.stream_version != expected {
            return Err(ImportError::BadLine {
                line: line_no,
                message: format!(
                    "stream `{}` jumps to version {}; expected {expected}",
                    event.stream_id, event.stream_version
                ),
            });
        }
        list.push(NewEvent {
            event_id: event.event_id,
            event_type: event.event_type,
            schema_version: event.schema_version,
            timestamp: Some(event.timestamp),
            metadata: event.metadata,
            payload: event.payload,
        });
    }
    let streams = order
        .into_iter()
        .map(|stream| {
            let events = streams.remove(&stream).unwrap_or_default();
            let first = first_versions.get(&stream).copied().unwrap_or(1);
            (stream, first, events)
        })
        .collect();
    Ok(CheckedImport { streams })
}

/// Appends the streams of `import`, each on its own, all or nothing, expecting the
/// stream not to exist, or, for a stream whose first event in the input has version
/// `n > 1` (events saved from a store, say before a repair cut the log), to end at
/// version `n - 1`: a stream that does not end there, or whose events the store refuses,
/// is reported in [`ImportReport::streams_refused`] and nothing of it is written.
///
/// A stream larger than one append allows (the store's `Limits`) is refused rather than
/// split, since a split stream could be half imported. A stream that already holds these
/// events' ids as one append (the same input imported before) is counted in
/// [`ImportReport::streams_already_imported`], and nothing is written for it: importing
/// the same input twice is harmless.
pub fn write_import<S: EventStore + ?Sized>(store: &S, import: CheckedImport) -> ImportReport {
    let mut report = ImportReport::default();
    for (stream, first, batch) in import.streams {
        let count = batch.len() as u64;
        let expected = match first {
            1 => ExpectedVersion::NoStream,
            n => ExpectedVersion::Exact(n - 1),
        };
        match store.append(&stream, expected, batch) {
            // the store already held these very events as one append (an import run
            // before): nothing was written, and the stream existed
            Ok(appended) if appended.retried => report.streams_already_imported += 1,
            Ok(_) => {
                report.streams_imported += 1;
                report.events_imported += count;
            }
            Err(e) => report.streams_refused.push(RefusedStream {
                stream_id: stream,
                reason: e.to_string(),
            }),
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::LogOffset;

    /// The fields an import knows are the fields an export writes, every one of them set.
    #[test]
    fn the_fields_an_import_knows_are_those_an_export_writes() {
        let mut metadata = es_core::Metadata::new()
            .with_correlation_id(uuid::Uuid::from_u128(1))
            .with_causation_id(uuid::Uuid::from_u128(2))
            .with_actor("alice");
        metadata.extra.insert("k".into(), serde_json::json!(1));
        let event = RecordedEvent {
            stream_id: "s-1".into(),
            stream_version: 1,
            position: 1,
            event_id: uuid::Uuid::from_u128(3),
            timestamp: chrono::DateTime::from_timestamp(1, 0).unwrap(),
            event_type: "T".into(),
            schema_version: 1,
            metadata,
            payload: b"{}".to_vec(),
        };
        let mut line = Vec::new();
        write_event_line(&mut line, event).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&line).unwrap();
        let keys = |v: &serde_json::Value| {
            let mut keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            keys.sort();
            keys
        };
        let sorted = |names: &[&str]| {
            let mut names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
            names.sort();
            names
        };
        assert_eq!(keys(&value), sorted(&EVENT_FIELDS));
        assert_eq!(keys(&value["metadata"]), sorted(&METADATA_FIELDS));
        assert_eq!(unknown_field(std::str::from_utf8(&line).unwrap()), None);
    }

    /// A base of no sealed segment that still lists a stream at some version (its
    /// checksum recomputed): a disagreement named in words, not a panic.
    #[test]
    fn a_base_of_no_segment_listing_a_stream_disagrees() {
        let log = Index::new(LogOffset::segment_start(0));
        let base = Base {
            sealed: 0,
            streams: vec![(5, None)],
        };
        let file = IndexFile {
            covered: LogOffset::segment_start(0),
            head: 0,
            stream_ids: vec!["cart-1".into()],
            frames: Vec::new(),
            ids: Vec::new(),
            from_start: false,
            base: Some(base.clone()),
        };
        let why = compare_base(&log, &file, &base).unwrap_err();
        assert!(why.contains("`cart-1` at version 5"), "{why}");
    }
}
