//! Errors of opening a file store and what recovery did.

use std::path::PathBuf;

/// Why a store could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// Another process (or another handle in this one) holds the directory's write lock.
    #[error(
        "event store `{}` is locked by another writer ({holder}); one process writes a store: other processes read it with `FileStore::open_read_only` (the log as it was when opened), or share a PostgreSQL store to write from several",
        dir.display()
    )]
    Locked {
        /// The store directory.
        dir: PathBuf,
        /// What the lock file says about the holder.
        holder: String,
    },
    /// The log is damaged before its tail; nothing was changed. Open with
    /// `FileStoreOptions::repair` to truncate at the damage.
    #[error("corrupted event store: `{}` (segment {segment}) at offset {offset}: {reason}", file.display())]
    Corrupted {
        /// The damaged file.
        file: PathBuf,
        /// Segment number.
        segment: u64,
        /// Byte offset in the segment.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A segment was written by a newer version of the store; nothing was changed.
    #[error("`{}` was written by a newer version of the store (format {found}; this build reads formats up to {supported})", file.display())]
    NewerFormat {
        /// The segment file.
        file: PathBuf,
        /// Its format version.
        found: u32,
        /// The newest format this build reads.
        supported: u32,
    },
    /// The path is not a store: a file, a directory holding other things, or (for a
    /// read-only open) nothing at all. Nothing was created or changed.
    #[error("`{}` is not an event store: {reason}", path.display())]
    NotAStore {
        /// The path given.
        path: PathBuf,
        /// What was found there.
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
    /// Sealed segments whose stream tables were parsed: those after the stream table
    /// that `index.dat` recorded (all of them when it recorded none or could not be used).
    pub sealed_tables_read: u64,
    /// Group id filters loaded, each answering for 64 sealed segments.
    pub group_filters_loaded: u64,
    /// What a crash left after the last acknowledged frame of the last segment: cut
    /// (read-only opens and verification only report it).
    pub torn_tail: Option<TornTail>,
    /// A new last segment whose header never became durable, removed (by a dry run of a
    /// repair: that a repair would remove it).
    pub removed_empty_segment: Option<u64>,
    /// With repair on: the damage found and what was dropped.
    pub repaired: Option<Repair>,
    /// With repair on: segments whose damaged header was written again, the frames after
    /// it intact (nothing was dropped for them).
    pub headers_rewritten: Vec<HeaderRewrite>,
}

/// A segment header a repair wrote again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderRewrite {
    /// The segment.
    pub segment: u64,
    /// What was wrong with the header.
    pub reason: String,
}

/// The unacknowledged end of the log that a crash left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TornTail {
    /// The last segment.
    pub segment: u64,
    /// Where the last valid frame ends.
    pub offset: u64,
    /// Bytes after it.
    pub bytes: u64,
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
