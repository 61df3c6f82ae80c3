//! Snapshot files and projection checkpoint files: small files replaced atomically
//! (temporary file, sync, rename, directory sync) and checksummed.
//!
//! ```text
//! snapshots/<16 hex digits>.snap   (the digits hash the stream id; the id is inside)
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
//! A snapshot file is a cache: a missing, damaged or foreign file (two stream ids whose
//! hashes collide) reads as "no snapshot", and the aggregate is rebuilt from events.

use crate::vfs::{OpenMode, Vfs, write_atomically};
use chrono::DateTime;
use es_core::StoreError;
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
}

/// A stable 64-bit hash of a stream id, for file names.
fn stream_hash(stream_id: &str) -> u64 {
    let low = crc32c::crc32c(stream_id.as_bytes());
    let high = crc32c::crc32c_append(0x9e37_79b9, stream_id.as_bytes());
    (u64::from(high) << 32) | u64::from(low)
}

impl SnapshotFiles {
    pub(crate) fn new(store_dir: &Path, vfs: Arc<dyn Vfs>, read_only: bool) -> Self {
        SnapshotFiles {
            dir: store_dir.join("snapshots"),
            vfs,
            read_only,
            write: Mutex::new(()),
        }
    }

    fn path(&self, stream_id: &str) -> PathBuf {
        self.dir
            .join(format!("{:016x}.snap", stream_hash(stream_id)))
    }

    /// The snapshots in the stream's file, or none when the file is missing or unusable.
    fn read(&self, stream_id: &str) -> Vec<Snapshot> {
        let path = self.path(stream_id);
        let Ok(file) = self.vfs.open(&path, OpenMode::Read) else {
            return Vec::new();
        };
        let Ok(len) = file.len() else {
            return Vec::new();
        };
        if len > MAX_SNAPSHOT_FILE {
            log::warn!("ignoring oversized snapshot file {}", path.display());
            return Vec::new();
        }
        let mut bytes = vec![0u8; len as usize];
        if file.read_exact_at(&mut bytes, 0).is_err() {
            return Vec::new();
        }
        match decode(&bytes) {
            Some(list) if list.iter().all(|s| s.stream_id == stream_id) => list,
            Some(_) => Vec::new(),
            None => {
                log::warn!("ignoring damaged snapshot file {}", path.display());
                Vec::new()
            }
        }
    }

    pub(crate) fn save(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        if self.read_only {
            return Err(StoreError::ReadOnly(
                "the store was opened read-only".into(),
            ));
        }
        let _guard = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let mut list = self.read(&snapshot.stream_id);
        retain_newest(&mut list, snapshot);
        self.vfs.create_dir_all(&self.dir)?;
        write_atomically(
            &*self.vfs,
            &self.dir,
            &self.path(&snapshot.stream_id),
            &encode(&list),
        )?;
        Ok(())
    }

    pub(crate) fn load(&self, stream_id: &str, max_version: u64) -> Option<Snapshot> {
        newest_at_or_below(&self.read(stream_id), max_version).cloned()
    }
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
        out.extend_from_slice(&s.schema_version.to_le_bytes());
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
    let mut list = Vec::new();
    for _ in 0..count {
        let version = u64_of(take(8)?);
        let position = u64_of(take(8)?);
        let secs = u64_of(take(8)?) as i64;
        let nanos = u32_of(take(4)?);
        let schema_version = u32_of(take(4)?);
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
            schema_version,
            fingerprint,
            state,
        });
    }
    (at == body.len()).then_some(list)
}

/// Durable projection checkpoints, one small file per projection name in a directory.
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

    fn path(&self, name: &str) -> Result<PathBuf, es_core::projection::BoxError> {
        let ok = !name.is_empty()
            && name.len() <= 128
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            return Err(format!(
                "invalid projection name {name:?}: use 1 to 128 ASCII letters, digits, '-' or '_'"
            )
            .into());
        }
        Ok(self.dir.join(format!("{name}.checkpoint")))
    }
}

impl es_core::CheckpointStore for FileCheckpoints {
    fn load(&self, name: &str) -> Result<u64, es_core::projection::BoxError> {
        let path = self.path(name)?;
        let file = match self.vfs.open(&path, OpenMode::Read) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e.into()),
        };
        let mut b = [0u8; 12];
        file.read_exact_at(&mut b, 0)
            .map_err(|e| format!("checkpoint {}: {e}", path.display()))?;
        let (value, crc) = b.split_at(8);
        if crc32c::crc32c(value).to_le_bytes() != crc {
            return Err(format!("checkpoint {} is damaged", path.display()).into());
        }
        Ok(u64::from_le_bytes(value.try_into().unwrap_or([0; 8])))
    }

    fn save(&self, name: &str, position: u64) -> Result<(), es_core::projection::BoxError> {
        let path = self.path(name)?;
        let mut b = position.to_le_bytes().to_vec();
        b.extend_from_slice(&crc32c::crc32c(&position.to_le_bytes()).to_le_bytes());
        write_atomically(&*self.vfs, &self.dir, &path, &b)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_files_round_trip_and_reject_damage() {
        let s = Snapshot {
            stream_id: "cart-1".into(),
            version: 7,
            position: 12,
            last_event_at: DateTime::from_timestamp(1000, 5).unwrap(),
            schema_version: 2,
            fingerprint: 99,
            state: br#"{"items":3}"#.to_vec(),
        };
        let bytes = encode(std::slice::from_ref(&s));
        assert_eq!(decode(&bytes).unwrap(), vec![s]);
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 1;
            assert!(decode(&bad).is_none(), "byte {i}");
        }
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_none());
        }
    }
}
