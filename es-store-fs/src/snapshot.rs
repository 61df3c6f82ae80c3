//! Snapshot files and projection checkpoint files: small files replaced atomically
//! (temporary file, sync, rename, directory sync) and checksummed.
//!
//! ```text
//! snapshots/<32 hex digits>.snap   (the first 16 bytes of the SHA-256 of the stream id,
//!                                   which is also inside)
//!   magic "ESSNAP02"
//!   count u32
//!   per snapshot, oldest first:
//!     version u64, global position of the event at that version u64,
//!     last event time: seconds i64 + nanoseconds u32,
//!     schema version u32, fingerprint u64,
//!     stream id: length u32 + UTF-8, state: length u32 + bytes
//!   CRC32C of everything before it, u32
//! ```
//!
//! A snapshot file is a cache: a missing or damaged file reads as "no snapshot", and the
//! aggregate is rebuilt from events; a file that cannot be read is an error naming it (the
//! repository logs it and rebuilds) and is not overwritten. Each entry names its stream,
//! and a file could hold several streams' snapshots, each keeping its own: earlier builds
//! named files by the sealed indexes' stream hash, which ids can be made to share. Such a
//! file is still read while the stream has no file of its own; the stream's next snapshot
//! goes to its own file, with its snapshots from the old one.

use crate::vfs::{OpenMode, Vfs, write_atomically, write_atomically_unique};
use chrono::DateTime;
use es_core::StoreError;
use es_core::projection::Mark;
use es_core::snapshot::{Snapshot, newest_at_or_below, retain_newest};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

const SNAPSHOT_MAGIC: &[u8; 8] = b"ESSNAP02";
/// Largest snapshot file read back.
const MAX_SNAPSHOT_FILE: u64 = 512 * 1024 * 1024;

/// The snapshots of one store directory.
pub(crate) struct SnapshotFiles {
    dir: PathBuf,
    vfs: Arc<dyn Vfs>,
    read_only: bool,
    /// Serializes read-modify-write of one file.
    write: Mutex<()>,
    /// The name of a stream's file ([`crate::layout::snapshot_name`]; tests make names
    /// collide).
    name: fn(&str) -> String,
}

impl SnapshotFiles {
    pub(crate) fn new(store_dir: &Path, vfs: Arc<dyn Vfs>, read_only: bool) -> Self {
        SnapshotFiles {
            dir: crate::layout::snapshot_dir(store_dir),
            vfs,
            read_only,
            write: Mutex::new(()),
            name: crate::layout::snapshot_name,
        }
    }

    fn path(&self, stream_id: &str) -> PathBuf {
        self.dir.join((self.name)(stream_id))
    }

    /// The snapshots in the file of `stream_id`: those of every stream whose id names that
    /// file (no other, but for a file an earlier build wrote), none when the file is
    /// missing or damaged (a cache: the repository rebuilds). A failed read is an error
    /// naming the file, so that a file that could not be read is not overwritten. When the
    /// file is missing, the file an earlier build named by the stream hash of the sealed
    /// indexes is read instead, and the flag returned is set.
    fn read(&self, stream_id: &str) -> Result<(Vec<Snapshot>, bool), StoreError> {
        if let Some(list) = self.read_file(&self.path(stream_id))? {
            return Ok((list, false));
        }
        Ok((self.read_legacy(stream_id)?, true))
    }

    /// The snapshots in the file an earlier build named by the stream hash of the sealed
    /// indexes; none when there is no such file.
    fn read_legacy(&self, stream_id: &str) -> Result<Vec<Snapshot>, StoreError> {
        let legacy = self
            .dir
            .join(crate::layout::legacy_snapshot_name(stream_id));
        Ok(self.read_file(&legacy)?.unwrap_or_default())
    }

    /// The snapshots in the file at `path`; `None` when there is no such file.
    fn read_file(&self, path: &Path) -> Result<Option<Vec<Snapshot>>, StoreError> {
        let failed = |e: std::io::Error| {
            StoreError::Io(std::io::Error::new(
                e.kind(),
                format!("reading the snapshot file `{}`: {e}", path.display()),
            ))
        };
        let file = match self.vfs.open(path, OpenMode::Read) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(failed(e)),
        };
        let len = file.len().map_err(failed)?;
        if len > MAX_SNAPSHOT_FILE {
            tracing::warn!("ignoring oversized snapshot file {}", path.display());
            return Ok(Some(Vec::new()));
        }
        let mut bytes = vec![0u8; len as usize];
        file.read_exact_at(&mut bytes, 0).map_err(failed)?;
        match decode(&bytes) {
            Some(list) => Ok(Some(list)),
            None => {
                tracing::warn!("ignoring damaged snapshot file {}", path.display());
                Ok(Some(Vec::new()))
            }
        }
    }

    pub(crate) fn save(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        if self.read_only {
            return Err(StoreError::ReadOnly(
                "the store was opened read-only".into(),
            ));
        }
        let size = encoded_len(snapshot);
        if size > MAX_SNAPSHOT_ENTRY {
            return Err(StoreError::SnapshotTooLarge {
                stream_id: snapshot.stream_id.clone(),
                size,
                max: MAX_SNAPSHOT_ENTRY,
            });
        }
        let _guard = self.write.lock().unwrap_or_else(|e| e.into_inner());
        // streams whose ids name one file share it: each keeps its own snapshots. The
        // stream's snapshots in an earlier build's file move to its own file; the other
        // streams' stay where they are
        let (found, legacy) = match self.read_file(&self.path(&snapshot.stream_id))? {
            Some(list) => (list, false),
            // the new file leaves an earlier build's file as it is: one that cannot be
            // read only keeps its older snapshots from moving over
            None => match self.read_legacy(&snapshot.stream_id) {
                Ok(list) => (list, true),
                Err(e) => {
                    tracing::warn!("{e}; the stream's older snapshots stay there");
                    (Vec::new(), true)
                }
            },
        };
        let (mut list, mut others): (Vec<Snapshot>, Vec<Snapshot>) = found
            .into_iter()
            .partition(|s| s.stream_id == snapshot.stream_id);
        if legacy {
            others.clear();
        }
        retain_newest(&mut list, snapshot);
        // the file is read back only up to its cap: the other streams' snapshots, then
        // this stream's older ones, make room for the newest
        let size = |list: &[Snapshot], others: &[Snapshot]| {
            FILE_OVERHEAD + list.iter().chain(others).map(encoded_len).sum::<u64>()
        };
        while !others.is_empty() && size(&list, &others) > MAX_SNAPSHOT_FILE {
            others.remove(0);
        }
        while list.len() > 1 && size(&list, &others) > MAX_SNAPSHOT_FILE {
            list.remove(0);
        }
        others.extend(list);
        let list = others;
        self.vfs.create_store_dir(&self.dir)?;
        write_atomically(
            &*self.vfs,
            &self.dir,
            &self.path(&snapshot.stream_id),
            &encode(&list),
        )?;
        Ok(())
    }

    pub(crate) fn load(
        &self,
        stream_id: &str,
        max_version: u64,
    ) -> Result<Option<Snapshot>, StoreError> {
        let (mut list, _) = self.read(stream_id)?;
        list.retain(|s| s.stream_id == stream_id);
        list.sort_by_key(|s| s.version);
        Ok(newest_at_or_below(&list, max_version).cloned())
    }
}

/// The most snapshots a file is read with: the newest [`es_core::snapshot::SNAPSHOTS_KEPT`]
/// of each of many streams sharing a file, far more than ever shared one. A file that
/// claims more is read as damaged (a cache: ignored, and replaced by the next save).
const MAX_SNAPSHOTS_IN_A_FILE: usize = 4096;

/// The bytes of a snapshot file besides its snapshots: magic, count and checksum.
const FILE_OVERHEAD: u64 = 8 + 4 + 4;

/// The largest snapshot kept: one that fits a file alone (its lengths are 32-bit).
const MAX_SNAPSHOT_ENTRY: u64 = MAX_SNAPSHOT_FILE - FILE_OVERHEAD;

/// The bytes one snapshot takes in a file.
fn encoded_len(s: &Snapshot) -> u64 {
    (8 + 8 + 8 + 4 + 4 + 8 + 4 + 4 + s.stream_id.len() + s.state.len()) as u64
}

fn encode(list: &[Snapshot]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(SNAPSHOT_MAGIC);
    out.extend_from_slice(&(list.len() as u32).to_le_bytes());
    for s in list {
        out.extend_from_slice(&s.version.to_le_bytes());
        out.extend_from_slice(&s.position.to_le_bytes());
        out.extend_from_slice(&s.last_event_at.timestamp().to_le_bytes());
        out.extend_from_slice(&s.last_event_at.timestamp_subsec_nanos().to_le_bytes());
        out.extend_from_slice(&s.snapshot_version.to_le_bytes());
        out.extend_from_slice(&s.fingerprint.to_le_bytes());
        out.extend_from_slice(&(s.stream_id.len() as u32).to_le_bytes());
        out.extend_from_slice(s.stream_id.as_bytes());
        out.extend_from_slice(&(s.state.len() as u32).to_le_bytes());
        out.extend_from_slice(&s.state);
    }
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

fn decode(bytes: &[u8]) -> Option<Vec<Snapshot>> {
    let (body, crc) = bytes.split_at_checked(bytes.len().checked_sub(4)?)?;
    if crc32c::crc32c(body).to_le_bytes() != crc {
        return None;
    }
    let mut at = 0usize;
    let mut take = |n: usize| -> Option<&[u8]> {
        let s = body.get(at..at.checked_add(n)?)?;
        at += n;
        Some(s)
    };
    if take(8)? != SNAPSHOT_MAGIC {
        return None;
    }
    let u32_of = |b: &[u8]| u32::from_le_bytes(b.try_into().unwrap_or([0; 4]));
    let u64_of = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
    let count = u32_of(take(4)?);
    // a file holds a stream's few newest snapshots (an earlier build's, those of the few
    // streams whose ids shared its name): one claiming many more was not written by the
    // store, and decoding millions of tiny entries would take gigabytes
    if count as usize > MAX_SNAPSHOTS_IN_A_FILE {
        return None;
    }
    let mut list = Vec::new();
    for _ in 0..count {
        let version = u64_of(take(8)?);
        let position = u64_of(take(8)?);
        let secs = u64_of(take(8)?) as i64;
        let nanos = u32_of(take(4)?);
        let snapshot_version = u32_of(take(4)?);
        let fingerprint = u64_of(take(8)?);
        let id_len = u32_of(take(4)?) as usize;
        let stream_id = std::str::from_utf8(take(id_len)?).ok()?.to_owned();
        let state_len = u32_of(take(4)?) as usize;
        let state = take(state_len)?.to_vec();
        list.push(Snapshot {
            stream_id,
            version,
            position,
            last_event_at: DateTime::from_timestamp(secs, nanos)?,
            snapshot_version,
            fingerprint,
            state,
        });
    }
    (at == body.len()).then_some(list)
}

// A checkpoint file, `<name>.checkpoint` in the checkpoint directory:
//
//   magic "ESCKPT03" ("ESCKPT02" when saved without an event id)
//   name: length u32 + UTF-8 (1 to MAX_CHECKPOINT_NAME bytes)
//   position u64
//   event id: 16 bytes (in "ESCKPT03" only)
//   CRC32C of everything before it, u32
//
// A file with an event id has its own magic, so that a build that knows only "ESCKPT02"
// says it is not a checkpoint file it reads, rather than calling it damaged. The earliest
// layout, still read: position u64 + CRC32C of it u32 (12 bytes, no name).

const CHECKPOINT_MAGIC: &[u8; 8] = b"ESCKPT02";
const MARKED_CHECKPOINT_MAGIC: &[u8; 8] = b"ESCKPT03";
/// Longest checkpoint name.
const MAX_CHECKPOINT_NAME: usize = 128;
/// Length of a file in the earlier layout, which holds no name.
const UNNAMED_CHECKPOINT_LEN: usize = 12;
/// Largest checkpoint file read back.
const MAX_CHECKPOINT_FILE: u64 = (8 + 4 + MAX_CHECKPOINT_NAME + 8 + 16 + 4) as u64;

/// Why [`FileCheckpoints`] could not load or save a checkpoint. Each names the file, or
/// the name that cannot be one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointFileError {
    /// The projection name cannot name a checkpoint file: names are 1 to 128 ASCII
    /// letters, digits, `-` or `_`. Nothing was read or written.
    #[error("invalid projection name {name:?}: use 1 to 128 ASCII letters, digits, '-' or '_'")]
    InvalidName {
        /// The name given.
        name: String,
    },
    /// The file failed a check (its checksum, its length, its layout).
    #[error("checkpoint file {} is damaged: {reason}", path.display())]
    Damaged {
        /// The checkpoint file.
        path: PathBuf,
        /// Which check failed.
        reason: String,
    },
    /// The file holds another name's checkpoint (copied or renamed across names).
    #[error(
        "checkpoint file {} holds the checkpoint of `{found}`, not of `{expected}` (copied or renamed from another name?)",
        path.display()
    )]
    OtherName {
        /// The checkpoint file.
        path: PathBuf,
        /// The name it was saved for.
        found: String,
        /// The name it was loaded for.
        expected: String,
    },
    /// Reading the file failed.
    #[error("reading checkpoint file {}: {source}", path.display())]
    Io {
        /// The checkpoint file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Saving the file failed; the checkpoint saved before stays.
    #[error("saving checkpoint file {}: {source}", path.display())]
    Save {
        /// The checkpoint file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The file was written in a newer layout than this build reads.
    #[error(
        "checkpoint file {} is of a newer format ({magic}) than this build reads: written by a newer version; keep it and run that version",
        path.display()
    )]
    Newer {
        /// The checkpoint file.
        path: PathBuf,
        /// The layout's magic.
        magic: String,
    },
}

/// The most bytes read of a checkpoint file to tell a newer layout from damage.
const MAX_NEWER_CHECKPOINT_FILE: u64 = 64 * 1024;

/// The magic of a checkpoint layout newer than this build's (`ESCKPT` and a number past
/// that of [`MARKED_CHECKPOINT_MAGIC`]) in a file whose last four bytes are the CRC32C of the rest, as in every layout: a
/// newer build wrote the file, which is not damage. (A bit flipped in the magic fails the
/// checksum, and is damage.)
fn newer_checkpoint_magic(bytes: &[u8]) -> Option<String> {
    let (family, newest) = MARKED_CHECKPOINT_MAGIC.split_at(6);
    let digits = bytes.strip_prefix(family)?.get(..2)?;
    let newer = digits.iter().all(u8::is_ascii_digit) && digits > newest;
    let (body, crc) = bytes.split_at_checked(bytes.len().checked_sub(4)?)?;
    let intact = crc32c::crc32c(body).to_le_bytes() == crc;
    (newer && intact).then(|| String::from_utf8_lossy(&bytes[..8]).into_owned())
}

/// What a checkpoint file holds: the name it was saved for (none in the earliest layout),
/// the position, and the id of the event there (none in the earlier layouts, or when
/// saved without one).
#[derive(Debug, PartialEq, Eq)]
struct CheckpointContent<'a> {
    name: Option<&'a str>,
    position: u64,
    event_id: Option<uuid::Uuid>,
}

fn encode_checkpoint(name: &str, mark: Mark) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + 4 + name.len() + 8 + 16 + 4);
    out.extend_from_slice(if mark.event_id.is_some() {
        MARKED_CHECKPOINT_MAGIC
    } else {
        CHECKPOINT_MAGIC
    });
    out.extend_from_slice(&(name.len() as u32).to_le_bytes());
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(&mark.position.to_le_bytes());
    if let Some(id) = mark.event_id {
        out.extend_from_slice(id.as_bytes());
    }
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Decodes either layout; the error says what is wrong.
fn decode_checkpoint(bytes: &[u8]) -> Result<CheckpointContent<'_>, String> {
    let (body, crc) = bytes
        .len()
        .checked_sub(4)
        .and_then(|at| bytes.split_at_checked(at))
        .ok_or_else(|| format!("{} bytes is too short", bytes.len()))?;
    if crc32c::crc32c(body).to_le_bytes() != crc {
        return Err("checksum mismatch".into());
    }
    let u64_at = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
    if bytes.len() == UNNAMED_CHECKPOINT_LEN {
        return Ok(CheckpointContent {
            name: None,
            position: u64_at(body),
            event_id: None,
        });
    }
    let (rest, id_len) = if let Some(rest) = body.strip_prefix(CHECKPOINT_MAGIC.as_slice()) {
        (rest, 0)
    } else if let Some(rest) = body.strip_prefix(MARKED_CHECKPOINT_MAGIC.as_slice()) {
        (rest, 16)
    } else {
        return Err("not a checkpoint file (wrong magic)".into());
    };
    let (len, rest) = rest.split_at_checked(4).ok_or("truncated name length")?;
    let len = u32::from_le_bytes(len.try_into().unwrap_or([0; 4])) as usize;
    if len == 0 || len > MAX_CHECKPOINT_NAME || rest.len() != len + 8 + id_len {
        return Err(format!(
            "a name length of {len} does not fit a {} byte file",
            bytes.len()
        ));
    }
    let (name, rest) = rest.split_at(len);
    let (position, event_id) = rest.split_at(8);
    let name = std::str::from_utf8(name).map_err(|e| format!("the name is not UTF-8: {e}"))?;
    Ok(CheckpointContent {
        name: Some(name),
        position: u64_at(position),
        event_id: uuid::Uuid::from_slice(event_id).ok(),
    })
}

/// Durable projection checkpoints, one small file per projection name in a directory.
/// Names are 1 to 128 ASCII letters, digits, `-` or `_` (they name the files); another
/// name is refused with [`CheckpointFileError::InvalidName`] when first loaded or saved.
///
/// Its own `load`, `save`, `load_mark` and `save_mark` return [`CheckpointFileError`],
/// which `?` turns into any error type, `Box<dyn Error>` included; through the
/// [`CheckpointStore`](es_core::CheckpointStore) trait (as
/// [`WithCheckpoint`](es_core::projection::WithCheckpoint) calls them) the same errors
/// come boxed.
///
/// Each file records the name it was saved for, and loading refuses a file that holds
/// another name's checkpoint (a file copied or renamed across names) with an error naming
/// the file, the name it holds and the name expected. Files written before names were
/// recorded hold no name; they are still read, without that check, and the next save
/// rewrites them with the name.
///
/// Saves may run concurrently, also for one name: each writes its own temporary file
/// and renames it over the checkpoint file, so a load sees one complete saved value, and
/// the last rename wins. A crash can leave a temporary file
/// (`<name>.checkpoint.<process id>-<n>.tmp`) behind; it is never read as a checkpoint and
/// may be deleted.
///
/// ```
/// use es_core::CheckpointStore;
/// let dir = tempfile::tempdir().unwrap();
/// let checkpoints = es_store_fs::FileCheckpoints::open(dir.path()).unwrap();
/// assert_eq!(checkpoints.load("sales").unwrap(), 0);
/// checkpoints.save("sales", 42).unwrap();
/// assert_eq!(es_store_fs::FileCheckpoints::open(dir.path()).unwrap().load("sales").unwrap(), 42);
/// ```
#[derive(Debug)]
pub struct FileCheckpoints {
    dir: PathBuf,
    vfs: Arc<dyn Vfs>,
}

impl FileCheckpoints {
    /// Opens (creating) a checkpoint directory on the real file system.
    pub fn open(dir: impl AsRef<Path>) -> std::io::Result<Self> {
        Self::open_with(dir, Arc::new(crate::vfs::StdFs))
    }

    /// Opens a checkpoint directory on `vfs`.
    pub fn open_with(dir: impl AsRef<Path>, vfs: Arc<dyn Vfs>) -> std::io::Result<Self> {
        let dir = dir.as_ref().to_owned();
        vfs.create_dir_all(&dir)?;
        Ok(FileCheckpoints { dir, vfs })
    }

    fn path(&self, name: &str) -> Result<PathBuf, CheckpointFileError> {
        let ok = !name.is_empty()
            && name.len() <= MAX_CHECKPOINT_NAME
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            return Err(CheckpointFileError::InvalidName {
                name: name.to_owned(),
            });
        }
        Ok(self.dir.join(format!("{name}.checkpoint")))
    }

    /// The checkpoint saved under `name` (0 when none), as
    /// [`CheckpointStore::load`](es_core::CheckpointStore::load) with a typed error.
    pub fn load(&self, name: &str) -> Result<u64, CheckpointFileError> {
        Ok(self.load_mark(name)?.position)
    }

    /// Saves `position` under `name`, as
    /// [`CheckpointStore::save`](es_core::CheckpointStore::save) with a typed error.
    pub fn save(&self, name: &str, position: u64) -> Result<(), CheckpointFileError> {
        self.save_mark(name, Mark::at(position))
    }

    /// The checkpoint saved under `name`, with its event's id when saved with one.
    pub fn load_mark(&self, name: &str) -> Result<Mark, CheckpointFileError> {
        let path = self.path(name)?;
        let file = match self.vfs.open(&path, OpenMode::Read) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Mark::default()),
            Err(source) => return Err(CheckpointFileError::Io { path, source }),
        };
        let len = match file.len() {
            Ok(len) => len,
            Err(source) => return Err(CheckpointFileError::Io { path, source }),
        };
        // a file of a newer layout may be larger than any this build writes
        if len > MAX_NEWER_CHECKPOINT_FILE {
            let reason = format!("{len} bytes is larger than any checkpoint file");
            return Err(CheckpointFileError::Damaged { path, reason });
        }
        let mut bytes = vec![0u8; len as usize];
        if let Err(source) = file.read_exact_at(&mut bytes, 0) {
            return Err(CheckpointFileError::Io { path, source });
        }
        if let Some(magic) = newer_checkpoint_magic(&bytes) {
            return Err(CheckpointFileError::Newer { path, magic });
        }
        if len > MAX_CHECKPOINT_FILE {
            let reason = format!("{len} bytes is larger than any checkpoint file");
            return Err(CheckpointFileError::Damaged { path, reason });
        }
        match decode_checkpoint(&bytes) {
            Ok(CheckpointContent {
                name: Some(found), ..
            }) if found != name => Err(CheckpointFileError::OtherName {
                path,
                found: found.to_owned(),
                expected: name.to_owned(),
            }),
            Ok(content) => Ok(Mark {
                position: content.position,
                event_id: content.event_id,
            }),
            Err(reason) => Err(CheckpointFileError::Damaged { path, reason }),
        }
    }

    /// Saves `mark` under `name`.
    pub fn save_mark(&self, name: &str, mark: Mark) -> Result<(), CheckpointFileError> {
        let path = self.path(name)?;
        write_atomically_unique(&*self.vfs, &self.dir, &path, &encode_checkpoint(name, mark))
            .map_err(|source| CheckpointFileError::Save { path, source })
    }
}

impl es_core::CheckpointStore for FileCheckpoints {
    fn load(&self, name: &str) -> Result<u64, es_core::projection::BoxError> {
        Ok(FileCheckpoints::load(self, name)?)
    }

    fn save(&self, name: &str, position: u64) -> Result<(), es_core::projection::BoxError> {
        Ok(FileCheckpoints::save(self, name, position)?)
    }

    fn load_mark(&self, name: &str) -> Result<Mark, es_core::projection::BoxError> {
        Ok(FileCheckpoints::load_mark(self, name)?)
    }

    fn save_mark(&self, name: &str, mark: Mark) -> Result<(), es_core::projection::BoxError> {
        Ok(FileCheckpoints::save_mark(self, name, mark)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_files_round_trip_in_every_layout_and_reject_damage() {
        let id = uuid::Uuid::from_u128(0x1234_5678_9abc_def0_1234_5678_9abc_def0);
        let marked = encode_checkpoint(
            "sales",
            Mark {
                position: 42,
                event_id: Some(id),
            },
        );
        let content = CheckpointContent {
            name: Some("sales"),
            position: 42,
            event_id: Some(id),
        };
        assert_eq!(decode_checkpoint(&marked), Ok(content));
        // a build that reads only the layout without ids finds another magic, not damage
        assert_eq!(&marked[..8], MARKED_CHECKPOINT_MAGIC);
        let bytes = encode_checkpoint("sales", Mark::at(42));
        let named = CheckpointContent {
            name: Some("sales"),
            position: 42,
            event_id: None,
        };
        assert_eq!(decode_checkpoint(&bytes), Ok(named));
        let longest = Mark {
            position: 1,
            event_id: Some(id),
        };
        assert!(
            encode_checkpoint(&"n".repeat(MAX_CHECKPOINT_NAME), longest).len() as u64
                <= MAX_CHECKPOINT_FILE
        );
        for bytes in [&bytes, &marked] {
            for i in 0..bytes.len() {
                let mut bad = bytes.clone();
                bad[i] ^= 1;
                assert!(decode_checkpoint(&bad).is_err(), "byte {i}");
            }
            for cut in 0..bytes.len() {
                assert!(decode_checkpoint(&bytes[..cut]).is_err(), "cut at {cut}");
            }
        }
        let mut unnamed = 7u64.to_le_bytes().to_vec();
        unnamed.extend_from_slice(&crc32c::crc32c(&7u64.to_le_bytes()).to_le_bytes());
        let content = CheckpointContent {
            name: None,
            position: 7,
            event_id: None,
        };
        assert_eq!(decode_checkpoint(&unnamed), Ok(content));
    }

    /// Two streams whose ids name one file share it: each keeps its own snapshots,
    /// neither evicts the other's.
    #[test]
    fn streams_whose_ids_name_one_file_keep_their_own_snapshots() {
        let dir = tempfile::tempdir().unwrap();
        let files = SnapshotFiles {
            name: |_| "shared.snap".to_owned(),
            ..SnapshotFiles::new(dir.path(), Arc::new(crate::vfs::StdFs), false)
        };
        let (a, b) = ("cart-a", "cart-b");
        let snapshot = |stream: &str, version: u64| Snapshot {
            stream_id: stream.to_owned(),
            version,
            ..sample()
        };
        files.save(&snapshot(a, 10)).unwrap();
        files.save(&snapshot(b, 20)).unwrap();
        files.save(&snapshot(a, 30)).unwrap();
        assert_eq!(files.path(a), files.path(b));
        assert_eq!(
            files.load(a, u64::MAX).unwrap().map(|s| s.version),
            Some(30)
        );
        assert_eq!(files.load(a, 29).unwrap().map(|s| s.version), Some(10));
        assert_eq!(
            files.load(b, u64::MAX).unwrap().map(|s| s.version),
            Some(20)
        );
        assert_eq!(files.load(b, 19).unwrap(), None);
    }

    /// Ids made to share the sealed indexes' stream hash (thousands are easy to make) get
    /// a snapshot file each: a file of all of them would be read and written whole for
    /// every snapshot of any of them.
    #[test]
    fn ids_made_to_share_a_stream_hash_get_a_snapshot_file_each() {
        let ids = crate::seal::tests::ids_of_one_hash(200);
        let dir = tempfile::tempdir().unwrap();
        let files = SnapshotFiles::new(dir.path(), Arc::new(crate::vfs::StdFs), false);
        for (n, id) in ids.iter().enumerate() {
            let snapshot = Snapshot {
                stream_id: id.clone(),
                version: n as u64 + 1,
                ..sample()
            };
            files.save(&snapshot).unwrap();
        }
        let written = std::fs::read_dir(crate::layout::snapshot_dir(dir.path()))
            .unwrap()
            .count();
        assert_eq!(written, ids.len());
        for (n, id) in ids.iter().enumerate() {
            let (list, legacy) = files.read(id).unwrap();
            assert!(!legacy);
            assert_eq!(list.len(), 1, "{id}");
            assert_eq!(list[0].version, n as u64 + 1);
        }
    }

    /// A file an earlier build named by the stream hash is read while the stream has no
    /// file of its own; the stream's next snapshot goes to its own file, with its older
    /// snapshots and without the other streams' of the old file, which stays as it was.
    #[test]
    fn a_file_named_by_an_earlier_build_is_read_and_left_as_it_was() {
        let ids = crate::seal::tests::ids_of_one_hash(2);
        let (a, b) = (&ids[0], &ids[1]);
        let dir = tempfile::tempdir().unwrap();
        let earlier = SnapshotFiles {
            name: crate::layout::legacy_snapshot_name,
            ..SnapshotFiles::new(dir.path(), Arc::new(crate::vfs::StdFs), false)
        };
        let snapshot = |stream: &str, version: u64| Snapshot {
            stream_id: stream.to_owned(),
            version,
            ..sample()
        };
        earlier.save(&snapshot(a, 10)).unwrap();
        earlier.save(&snapshot(b, 20)).unwrap();
        let old = earlier.path(a);
        assert_eq!(old, earlier.path(b));
        let old_bytes = std::fs::read(&old).unwrap();
        let files = SnapshotFiles::new(dir.path(), Arc::new(crate::vfs::StdFs), false);
        assert_eq!(
            files.load(a, u64::MAX).unwrap().map(|s| s.version),
            Some(10)
        );
        assert_eq!(
            files.load(b, u64::MAX).unwrap().map(|s| s.version),
            Some(20)
        );
        files.save(&snapshot(a, 30)).unwrap();
        assert_eq!(
            files.load(a, u64::MAX).unwrap().map(|s| s.version),
            Some(30)
        );
        assert_eq!(files.load(a, 29).unwrap().map(|s| s.version), Some(10));
        let (own, legacy) = files.read(a).unwrap();
        assert!(!legacy);
        assert!(own.iter().all(|s| s.stream_id == *a), "{own:?}");
        assert_eq!(
            files.load(b, u64::MAX).unwrap().map(|s| s.version),
            Some(20)
        );
        assert_eq!(std::fs::read(&old).unwrap(), old_bytes);
    }

    /// A file claiming more snapshots than a file ever holds is read as damaged, without
    /// decoding them: millions of tiny entries would take gigabytes.
    #[test]
    fn a_file_of_more_snapshots_than_a_file_holds_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let files = SnapshotFiles::new(dir.path(), Arc::new(crate::vfs::StdFs), false);
        let tiny = |n: usize| Snapshot {
            version: n as u64 + 1,
            state: Vec::new(),
            ..sample()
        };
        let within: Vec<Snapshot> = (0..MAX_SNAPSHOTS_IN_A_FILE).map(tiny).collect();
        assert_eq!(
            decode(&encode(&within)).map(|l| l.len()),
            Some(within.len())
        );
        let beyond: Vec<Snapshot> = (0..=MAX_SNAPSHOTS_IN_A_FILE).map(tiny).collect();
        assert_eq!(decode(&encode(&beyond)), None);
        std::fs::create_dir_all(crate::layout::snapshot_dir(dir.path())).unwrap();
        std::fs::write(files.path("cart-1"), encode(&beyond)).unwrap();
        assert_eq!(files.load("cart-1", u64::MAX).unwrap(), None);
        files.save(&sample()).unwrap();
        assert_eq!(files.load("cart-1", u64::MAX).unwrap(), Some(sample()));
    }

    /// A snapshot file that cannot be read is an error naming it, and is not overwritten.
    #[test]
    fn a_snapshot_file_that_cannot_be_read_is_an_error_and_stays() {
        let dir = tempfile::tempdir().unwrap();
        let files = SnapshotFiles::new(dir.path(), Arc::new(crate::vfs::StdFs), false);
        files.save(&sample()).unwrap();
        let path = files.path("cart-1");
        // a directory in its place: opening it for reading works, reading it fails
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        let err = files.load("cart-1", u64::MAX).unwrap_err().to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(files.save(&sample()).is_err());
        assert!(path.is_dir());
    }

    /// A small snapshot of `cart-1` at version 7.
    fn sample() -> Snapshot {
        Snapshot {
            stream_id: "cart-1".into(),
            version: 7,
            position: 12,
            last_event_at: DateTime::from_timestamp(1000, 5).unwrap(),
            snapshot_version: 2,
            fingerprint: 99,
            state: br#"{"items":3}"#.to_vec(),
        }
    }

    #[test]
    fn snapshot_files_round_trip_and_reject_damage() {
        let s = sample();
        let bytes = encode(std::slice::from_ref(&s));
        assert_eq!(decode(&bytes).unwrap(), vec![s.clone()]);
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 1;
            assert!(decode(&bad).is_none(), "byte {i}");
        }
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_none());
        }
        assert_eq!(encoded_len(&s) + FILE_OVERHEAD, bytes.len() as u64);
    }

    #[test]
    fn a_snapshot_larger_than_a_file_is_refused_and_the_saved_ones_kept() {
        // saved, it would have been a file too large to read back (or, past 4 GiB, one
        // whose length field wraps): every snapshot of the stream lost behind an `Ok`
        let dir = tempfile::tempdir().unwrap();
        let files = SnapshotFiles::new(dir.path(), Arc::new(crate::vfs::StdFs), false);
        let small = sample();
        files.save(&small).unwrap();
        let large = Snapshot {
            version: 8,
            state: vec![b' '; MAX_SNAPSHOT_ENTRY as usize],
            ..small.clone()
        };
        match files.save(&large) {
            Err(StoreError::SnapshotTooLarge {
                stream_id,
                size,
                max,
            }) => {
                assert_eq!(stream_id, "cart-1");
                assert!(size > max);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(files.load("cart-1", u64::MAX).unwrap(), Some(small));
    }
}
