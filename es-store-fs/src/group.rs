//! Id filters over groups of sealed segments: one filter for the event ids of each
//! window of [`GROUP_SEGMENTS`] consecutive sealed segments, so that an append checks its
//! ids against a filter per window instead of one per segment. A store of small segments
//! otherwise pays a filter probe per sealed segment for every id it appends (1,709 probes
//! per id at 10,000,000 events in 1 MiB segments).
//!
//! All integers are little-endian.
//!
//! ```text
//! <first:020>.flt   (first = window × 64, the window's first segment)
//!   magic b"ESIDGRP1"
//!   first segment u64
//!   segment count u32 (64)
//!   filter length L u32
//!   per segment: sealed length u64, first position u64, event count u64, the CRC32C
//!                of its sealed index's frame and id tables u64 (as that file records it)
//!   filter: L bytes (a binary fuse filter with 16-bit fingerprints of the ids' keys:
//!           20-byte descriptor, then the fingerprints, u16 each)
//!   CRC32C of everything before it u32
//! ```
//!
//! The file is derived data: the sealing thread writes it (temporary name, synced,
//! renamed, directory synced) once every segment of its window is sealed, from the
//! segments' id tables after checking their checksums. It is used only when intact and
//! when each segment it lists matches the sealed segment of that number (length,
//! positions, and the checksum of the id table it was built from); otherwise it is
//! ignored (the segments' own filters answer) and written again. A repair that cuts the
//! log removes the group files of the windows it touches. Windows holding more
//! than [`GROUP_MAX_EVENTS`] events get no group filter: their segments are large, so
//! there are few of them, and building one would need memory in proportion.

use crate::seal::{IdFilter, Sealed, SealedError, id_key};
use crate::vfs::VfsFile;
use std::io;
use std::sync::Arc;
use uuid::Uuid;

/// Sealed segments per group.
pub const GROUP_SEGMENTS: u64 = 64;
/// The most events a group filter is built for.
pub const GROUP_MAX_EVENTS: u64 = 2_000_000;

const MAGIC: &[u8; 8] = b"ESIDGRP1";
const HEADER_LEN: usize = 24;
const MEMBER_LEN: usize = 32;

/// The id filter of one window of sealed segments.
pub struct IdGroup {
    /// Window number: it covers segments `window × 64 ..= window × 64 + 63`.
    pub window: u64,
    filter: IdFilter,
}

impl std::fmt::Debug for IdGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdGroup")
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

/// What a group's file records of a member: sealed length, first position, events, the
/// checksum of its frame and id tables.
fn member_record(s: &Sealed) -> [u64; 4] {
    [s.len, s.first_position, s.events, u64::from(s.tables_crc)]
}

/// Whether `members` are exactly the segments of window `window`, all sealed.
pub fn is_window(window: u64, members: &[Arc<Sealed>]) -> bool {
    members.len() as u64 == GROUP_SEGMENTS
        && members
            .iter()
            .enumerate()
            .all(|(i, s)| s.segment == window * GROUP_SEGMENTS + i as u64)
}

impl IdGroup {
    /// Whether a segment of the window may hold event `id` (no false negatives).
    pub fn may_hold(&self, id: &Uuid) -> bool {
        self.filter.may_hold(id_key(id))
    }

    /// The file of window `window` for `members` (its sealed segments) and the keys of
    /// all their event ids; `None` when no filter can be built.
    pub fn encode(window: u64, members: &[Arc<Sealed>], mut keys: Vec<u64>) -> Option<Vec<u8>> {
        let filter = IdFilter::build(&mut keys)?;
        let mut out =
            Vec::with_capacity(HEADER_LEN + members.len() * MEMBER_LEN + filter.len() + 4);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(window * GROUP_SEGMENTS).to_le_bytes());
        out.extend_from_slice(&(members.len() as u32).to_le_bytes());
        out.extend_from_slice(&u32::try_from(filter.len()).ok()?.to_le_bytes());
        for m in members {
            for v in member_record(m) {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        out.extend_from_slice(&filter);
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        Some(out)
    }

    /// Parses a group file of window `window`, checking it against `members`.
    pub fn parse(bytes: &[u8], window: u64, members: &[Arc<Sealed>]) -> Result<IdGroup, String> {
        let (body, crc) = bytes
            .split_at_checked(bytes.len().wrapping_sub(4))
            .ok_or("shorter than a header")?;
        if crc32c::crc32c(body).to_le_bytes() != crc {
            return Err("checksum mismatch".into());
        }
        let u64_at = |i: usize| {
            body.get(i..i + 8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_le_bytes)
        };
        let u32_at = |i: usize| {
            body.get(i..i + 4)
                .and_then(|b| b.try_into().ok())
                .map(u32::from_le_bytes)
        };
        if body.get(..8) != Some(MAGIC) {
            return Err("not a group filter (bad magic)".into());
        }
        if u64_at(8) != Some(window * GROUP_SEGMENTS)
            || u32_at(16).map(u64::from) != Some(GROUP_SEGMENTS)
            || !is_window(window, members)
        {
            return Err("it names other segments".into());
        }
        let filter_len = u32_at(20).ok_or("shorter than a header")? as usize;
        let filter_at = HEADER_LEN + members.len() * MEMBER_LEN;
        if filter_at.checked_add(filter_len) != Some(body.len()) {
            return Err("its length does not fit its counts".into());
        }
        for (i, m) in members.iter().enumerate() {
            let at = HEADER_LEN + i * MEMBER_LEN;
            let recorded = [u64_at(at), u64_at(at + 8), u64_at(at + 16), u64_at(at + 24)];
            if recorded != member_record(m).map(Some) {
                return Err(format!(
                    "segment {} is not the one it was built for",
                    m.segment
                ));
            }
        }
        let filter = IdFilter::parse(&body[filter_at..]).ok_or("an unusable filter")?;
        Ok(IdGroup { window, filter })
    }

    /// Reads and parses the group file `file` (see [`IdGroup::parse`]); a read that
    /// fails is an error of its own.
    pub fn read(
        file: &dyn VfsFile,
        window: u64,
        members: &[Arc<Sealed>],
    ) -> Result<Result<IdGroup, String>, io::Error> {
        let len = file.len()?;
        // a header, a record per member, a filter of at most ~2.5 bytes per event
        let most = (HEADER_LEN + members.len() * MEMBER_LEN + 4) as u64
            + 64 * 1024
            + members.iter().map(|m| m.events * 3).sum::<u64>();
        if len > most {
            return Ok(Err(format!(
                "{len} bytes long, more than its segments need"
            )));
        }
        let mut bytes = vec![0u8; len as usize];
        file.read_exact_at(&mut bytes, 0)?;
        Ok(Self::parse(&bytes, window, members))
    }

    /// The keys of every event id of `members`, read from their sealed indexes with
    /// `open_index`.
    pub fn keys(
        members: &[Arc<Sealed>],
        open_index: impl Fn(u64) -> Result<Arc<dyn VfsFile>, SealedError>,
    ) -> Result<Vec<u64>, (u64, SealedError)> {
        let mut keys = Vec::with_capacity(members.iter().map(|m| m.events as usize).sum());
        for m in members {
            let file = open_index(m.segment).map_err(|e| (m.segment, e))?;
            m.id_keys(&*file, &mut keys).map_err(|e| (m.segment, e))?;
        }
        Ok(keys)
    }
}
