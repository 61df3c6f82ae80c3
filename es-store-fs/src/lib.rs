//! # es-store-fs
//!
//! A durable, file-based, append-only event store for es-core: one directory on disk, no
//! server, like SQLite. Appends are framed and checksummed batches in segment files,
//! acknowledged after `fdatasync` by default, with concurrent appenders sharing one write
//! and one sync (group commit). A persisted stream index makes reading one stream cost
//! O(that stream), and opening a large store cheap.
//!
//! The on-disk format, the fsync protocol and what a crash leaves behind are described in
//! `docs/storage-format.md`.
#![warn(missing_docs)]

mod crc;
pub mod error;
pub mod format;
mod group;
mod index;
mod layout;
mod marker;
mod published;
mod read_ahead;
mod recovery;
mod seal;
mod snapshot;
mod store;
pub mod tools;
pub mod vfs;

pub use error::{HeaderRewrite, OpenError, RecoveryReport, Repair, TornTail};
pub use layout::LOCK_FILE;
pub use snapshot::{CheckpointFileError, FileCheckpoints};
pub use store::{Durability, FileStore, FileStoreOptions, WriteStats};
