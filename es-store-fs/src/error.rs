//! Errors of opening a file store and what recovery did.

use std::path::PathBuf;

/// Why a store could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// Another process (or another handle in this one) holds the directory's write lock.
    #[error("event store `{}` is locked by another writer ({holder})", dir.display())]
    Locked {
        /// The store directory.
        dir: PathBuf,
        /// What the lock file says about the holder.
        holder: String,
    },
    /// The log is damaged before its tail; nothing was changed. Open with
    /// `FileStoreOptions::repair` to truncate at the damage.
    #[error("corrupted event store: segment {segment} at offset {offset}: {reason}")]
    Corrupted {
        /// Segment number.
        segment: u64,
        /// Byte offset in the segment.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// An option is out of range.
    #[error("invalid option: {0}")]
    InvalidOptions(String),
    /// An I/O error on a file.
    #[error("I/O error on `{}`: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// What opening the store found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Whether the index file was missing or unusable and was rebuilt from the log.
    pub index_rebuilt: bool,
    /// Frames read from the log beyond what the index file covered.
    pub frames_scanned: u64,
    /// A torn or garbage tail cut off the last segment: (segment, offset, bytes dropped).
    pub torn_tail: Option<(u64, u64, u64)>,
    /// A new last segment whose header never became durable, removed.
    pub removed_empty_segment: Option<u64>,
    /// With repair on: the damage found and what was dropped.
    pub repaired: Option<Repair>,
}

/// What a repair dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repair {
    /// Segment of the first bad frame.
    pub segment: u64,
    /// Its offset.
    pub offset: u64,
    /// Why it was bad.
    pub reason: String,
    /// Bytes cut from that segment.
    pub bytes_dropped: u64,
    /// Later segments removed whole.
    pub segments_removed: Vec<u64>,
}
