//! The `ES-STORE` file: what makes a directory recognisable as an event store.
//!
//! ```text
//! ES-STORE (text, written once when the store is created, synced)
//!   es-store-fs event store
//!   format <n>
//! ```
//!
//! A writable open creates a store only in a missing or empty directory (a lock file or
//! a published record left by a crash during creation count as empty). A directory with
//! the marker is a store; one with segment files but no marker is a store written before
//! markers existed, adopted when its first segment has a valid header. Anything else (a
//! file, a directory of other things) is refused before anything is written there.

use crate::error::OpenError;
use crate::format::{self, SEGMENT_HEADER_LEN, SegmentHeader};
use crate::layout::{
    LOCK_FILE, MARKER_FILE, PUBLISHED_FILE, segment_name, segment_number, segment_path,
    temporary_name,
};
use crate::vfs::{OpenMode, Vfs, write_atomically};
use std::io::ErrorKind;
use std::path::Path;

const FIRST_LINE: &str = "es-store-fs event store";

/// What a directory holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// Nothing: the path does not exist.
    Nothing,
    /// An empty directory (or one a crash left while creating a store).
    Empty,
    /// A store with its marker.
    Store,
    /// A store written before markers existed.
    Unmarked,
}

fn not_a_store(dir: &Path, reason: String) -> OpenError {
    OpenError::NotAStore {
        path: dir.to_owned(),
        reason,
    }
}

/// Looks at `dir` without changing anything, and refuses what is not a store.
pub fn inspect(vfs: &dyn Vfs, dir: &Path, read_only: bool) -> Result<Found, OpenError> {
    let names = match vfs.list(dir) {
        Ok(names) => names,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            if read_only {
                return Err(not_a_store(dir, "there is nothing at that path".into()));
            }
            // a file in the way is told apart from nothing at all
            return match vfs.open(dir, OpenMode::Read) {
                Ok(_) => Err(not_a_store(dir, "it is a file, not a directory".into())),
                Err(_) => Ok(Found::Nothing),
            };
        }
        Err(e) if e.kind() == ErrorKind::NotADirectory => {
            return Err(not_a_store(dir, "it is a file, not a directory".into()));
        }
        Err(source) => {
            return Err(OpenError::Io {
                path: dir.to_owned(),
                source,
            });
        }
    };
    let marked = names.iter().any(|n| n == MARKER_FILE);
    if marked && check(vfs, dir)? {
        return Ok(Found::Store);
    }
    // a damaged marker proves nothing either way: the segments decide, as for a store
    // written before markers existed
    let is_segment = |n: &str| segment_number(n).is_some();
    if names.iter().any(|n| is_segment(n)) {
        let first = segment_path(dir, 0);
        // a crash while creating the store (before the marker) can leave segment 0 with
        // a partial header: adopted like a store, and recovery redoes the header
        let first_name = segment_name(0);
        let only_segment_0 =
            names.iter().filter(|n| is_segment(n)).count() == 1 && names.contains(&first_name);
        if only_segment_0
            && let Ok(file) = vfs.open(&first, OpenMode::Read)
            && let Ok(len) = file.len()
            && crate::recovery::unfinished_segment(&*file, len, 0, 1).unwrap_or(false)
        {
            return Ok(Found::Unmarked);
        }
        let mut header = [0u8; SEGMENT_HEADER_LEN];
        let valid = vfs
            .open(&first, OpenMode::Read)
            .and_then(|f| f.read_exact_at(&mut header, 0))
            .is_ok()
            && match SegmentHeader::decode(&header) {
                Ok(h) => h.segment_no == 0,
                Err(format::FormatError::NewerFormat { found }) => {
                    return Err(OpenError::NewerFormat {
                        file: first,
                        found,
                        supported: format::FORMAT_VERSION,
                    });
                }
                Err(_) => false,
            };
        if valid {
            return Ok(Found::Unmarked);
        }
        if marked {
            return Err(not_a_store(
                dir,
                format!(
                    "its {MARKER_FILE} file is damaged and `{}` is not a segment of this \
                     store's format; nothing was changed",
                    first.display()
                ),
            ));
        }
        return Err(not_a_store(
            dir,
            format!(
                "it has no {MARKER_FILE} file, and `{}` is not a segment of this store's \
                 format; nothing was changed",
                first.display()
            ),
        ));
    }
    // what a crash while creating a store can leave: the lock, the published record, the
    // marker's own temporary file
    let marker_tmp = temporary_name(MARKER_FILE);
    let foreign: Vec<&String> = names
        .iter()
        .filter(|n| *n != LOCK_FILE && *n != PUBLISHED_FILE && **n != marker_tmp)
        .collect();
    if foreign.is_empty() {
        if read_only {
            return Err(not_a_store(dir, "the directory holds no store".into()));
        }
        return Ok(Found::Empty);
    }
    let shown: Vec<&str> = foreign.iter().take(3).map(|s| s.as_str()).collect();
    Err(not_a_store(
        dir,
        format!(
            "the directory holds other files ({}{}); a store is created only in an empty or \
             missing directory",
            shown.join(", "),
            if foreign.len() > 3 { ", …" } else { "" }
        ),
    ))
}

/// Checks the marker: `false` when it is not intact; a store of a newer format is refused
/// as such.
fn check(vfs: &dyn Vfs, dir: &Path) -> Result<bool, OpenError> {
    let path = dir.join(MARKER_FILE);
    let io = |source| OpenError::Io {
        path: path.clone(),
        source,
    };
    let file = vfs.open(&path, OpenMode::Read).map_err(io)?;
    let mut bytes = vec![0u8; 256];
    let n = file.read_at(&mut bytes, 0).map_err(io)?;
    let text = String::from_utf8_lossy(&bytes[..n]);
    let mut lines = text.lines();
    let version = (lines.next() == Some(FIRST_LINE))
        .then(|| {
            lines
                .next()?
                .strip_prefix("format ")?
                .trim()
                .parse::<u32>()
                .ok()
        })
        .flatten();
    match version {
        Some(found) if found > format::FORMAT_VERSION => Err(OpenError::NewerFormat {
            file: path,
            found,
            supported: format::FORMAT_VERSION,
        }),
        Some(_) => Ok(true),
        None => Ok(false),
    }
}

/// Writes the marker (atomically, synced).
pub fn write(vfs: &dyn Vfs, dir: &Path) -> Result<(), OpenError> {
    let path = dir.join(MARKER_FILE);
    let text = format!("{FIRST_LINE}\nformat {}\n", format::FORMAT_VERSION);
    write_atomically(vfs, dir, &path, text.as_bytes())
        .map_err(|source| OpenError::Io { path, source })
}
