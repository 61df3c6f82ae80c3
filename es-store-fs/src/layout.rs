//! The store directory: the one module that names its files and creates segments.
//!
//! ```text
//! <dir>/
//!   ES-STORE              marker: what makes the directory recognisable as a store
//!   LOCK                  held by the one writing process; names the holder
//!   PUBLISHED             the writer's record of the acknowledged and durable ends
//!   index.dat             the persisted stream index (derived data)
//!   index.dat.tmp         an index being written
//!   <n:020>.seg           log segments 0, 1, 2, … with no gaps
//!   <n:020>.idx           the sealed index of segment n, written once it is sealed
//!   <n:020>.flt           the id filter of sealed segments n … n + 63 (n a multiple of 64)
//!   snapshots/<h:032x>.snap  the newest snapshots of one stream (h: the first 16 bytes of the SHA-256 of its id)
//! ```
//!
//! Everything else here is about places in the log: a [`LogOffset`] names a byte of one
//! segment, and segments are created only through [`create_segment`].

use crate::format::{SEGMENT_HEADER_LEN, SegmentHeader};
use crate::vfs::{OpenMode, Vfs, VfsFile};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Name of the lock file.
pub const LOCK_FILE: &str = "LOCK";
/// Name of the writer's record of the acknowledged and durable ends.
pub const PUBLISHED_FILE: &str = "PUBLISHED";
/// Name of the marker file.
pub const MARKER_FILE: &str = "ES-STORE";
/// Name of the persisted stream index.
pub const INDEX_FILE: &str = "index.dat";
/// Suffix of segment files.
pub const SEGMENT_SUFFIX: &str = ".seg";
/// Directory of snapshot files, inside the store directory.
pub const SNAPSHOT_DIR: &str = "snapshots";
/// Suffix of snapshot files.
const SNAPSHOT_SUFFIX: &str = ".snap";
/// Digits of a segment number in its file name.
const SEGMENT_DIGITS: usize = 20;

/// The name of the temporary file [`crate::vfs::write_atomically`] writes beside `name`.
pub fn temporary_name(name: &str) -> String {
    format!("{name}.tmp")
}

/// The file name of segment `no`.
pub fn segment_name(no: u64) -> String {
    format!("{no:0width$}{SEGMENT_SUFFIX}", width = SEGMENT_DIGITS)
}

/// The path of segment `no`.
pub fn segment_path(dir: &Path, no: u64) -> PathBuf {
    dir.join(segment_name(no))
}

/// The segment number a file name stands for, if it is a segment's name.
pub fn segment_number(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(SEGMENT_SUFFIX)?;
    if stem.len() != SEGMENT_DIGITS || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// Suffix of sealed segment index files.
pub const SEALED_INDEX_SUFFIX: &str = ".idx";

/// The path of segment `no`'s sealed index.
pub fn sealed_index_path(dir: &Path, no: u64) -> PathBuf {
    dir.join(format!(
        "{no:0width$}{SEALED_INDEX_SUFFIX}",
        width = SEGMENT_DIGITS
    ))
}

/// The path of the id filter of the group of sealed segments `window`.
pub fn group_filter_path(dir: &Path, window: u64) -> PathBuf {
    dir.join(format!(
        "{:0width$}.flt",
        window * crate::group::GROUP_SEGMENTS,
        width = SEGMENT_DIGITS
    ))
}

/// The snapshot directory of the store in `dir`.
pub fn snapshot_dir(dir: &Path) -> PathBuf {
    dir.join(SNAPSHOT_DIR)
}

/// The name of the snapshot file of `stream_id`: the first 32 hex digits of the SHA-256 of
/// the id. A file is read and written whole, so ids made to share one would make each
/// snapshot of theirs cost all of theirs; no one can make ids share this hash.
pub fn snapshot_name(stream_id: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(stream_id.as_bytes());
    let mut name = String::with_capacity(32 + SNAPSHOT_SUFFIX.len());
    for b in &digest[..16] {
        name.push_str(&format!("{b:02x}"));
    }
    name.push_str(SNAPSHOT_SUFFIX);
    name
}

/// The name earlier builds gave the snapshot file of `stream_id`: 16 hex digits of the
/// sealed indexes' stream hash, a CRC, which ids can be made to share by the thousand.
/// Read only when the file named by [`snapshot_name`] does not exist.
pub fn legacy_snapshot_name(stream_id: &str) -> String {
    format!(
        "{:016x}{SNAPSHOT_SUFFIX}",
        crate::seal::stream_hash(stream_id)
    )
}

/// A place in the log: a byte offset in one segment. Ordered as the log is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct LogOffset {
    /// Segment number.
    pub segment: u64,
    /// Byte offset in the segment.
    pub offset: u64,
}

impl LogOffset {
    /// `offset` in `segment`.
    pub const fn new(segment: u64, offset: u64) -> Self {
        LogOffset { segment, offset }
    }

    /// The first frame's place in `segment`, right after its header.
    pub const fn segment_start(segment: u64) -> Self {
        LogOffset::new(segment, SEGMENT_HEADER_LEN as u64)
    }
}

impl fmt::Display for LogOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "segment {} offset {}", self.segment, self.offset)
    }
}

/// Writes segment `segment_no`'s header at the start of `file` and syncs it.
pub fn write_header(
    file: &dyn VfsFile,
    segment_no: u64,
    first_position: u64,
) -> Result<(), CreateSegmentError> {
    let header = SegmentHeader {
        segment_no,
        first_position,
    };
    file.write_all_at(&header.encode(), 0)
        .map_err(CreateSegmentError::Write)?;
    file.sync_data().map_err(CreateSegmentError::Sync)
}

/// Why a segment could not be created. A failed write (a full disk) leaves nothing the
/// log depends on; a failed sync may have dropped pages the kernel will not write again.
#[derive(Debug)]
pub enum CreateSegmentError {
    /// Creating the file or writing its header failed.
    Write(io::Error),
    /// Syncing the header or the directory failed.
    Sync(io::Error),
}

impl CreateSegmentError {
    /// The I/O error, whichever step failed.
    pub fn into_io(self) -> io::Error {
        match self {
            CreateSegmentError::Write(e) | CreateSegmentError::Sync(e) => e,
        }
    }
}

/// Creates segment `no` (replacing a leftover file of a failed attempt), writes and syncs
/// its header, and syncs the directory so that the new file survives a crash.
pub fn create_segment(
    vfs: &dyn Vfs,
    dir: &Path,
    no: u64,
    first_position: u64,
) -> Result<Arc<dyn VfsFile>, CreateSegmentError> {
    let file = vfs
        .open(&segment_path(dir, no), OpenMode::CreateTruncate)
        .map_err(CreateSegmentError::Write)?;
    write_header(&*file, no, first_position)?;
    vfs.sync_dir(dir).map_err(CreateSegmentError::Sync)?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_round_trip_and_nothing_else_parses() {
        for no in [0, 1, 42, u64::MAX] {
            assert_eq!(segment_number(&segment_name(no)), Some(no));
        }
        for name in [
            "0.seg",
            "0000000000000000000a.seg",
            "00000000000000000000.sag",
        ] {
            assert_eq!(segment_number(name), None, "{name}");
        }
        assert!(LogOffset::new(1, 0) > LogOffset::new(0, u64::MAX));
    }
}
