//! Snapshots: an aggregate's state saved at a stream version, so that loading a long
//! stream folds only the events after it.
//!
//! Snapshots are a cache. A missing, damaged or stale snapshot is never an error: the
//! repository logs a warning and rebuilds the state from events.

use crate::store::StoreError;
use chrono::{DateTime, Utc};

/// A saved state of one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The stream.
    pub stream_id: String,
    /// The stream version the state reflects (events 1..=version folded in).
    pub version: u64,
    /// The global position of the event at `version`: a snapshot is used only if the
    /// stream still holds that very event there, at this position and recorded at
    /// `last_event_at` (0 skips both checks). The time matters where positions are
    /// taken again: after a crash took back events that were acknowledged but not yet
    /// durable, new events take their versions and positions, never their times. A
    /// snapshot that fails the check gives way to an older one, or to a fold from the
    /// first event.
    pub position: u64,
    /// Timestamp of the event at `version`, as the store recorded it: it anchors the
    /// snapshot with `position`, and tells as-of loads whether the snapshot lies before
    /// the wanted time.
    pub last_event_at: DateTime<Utc>,
    /// The aggregate's snapshot schema version ([`SnapshotPolicy::snapshot_version`],
    /// the `snapshot_version` attribute).
    ///
    /// [`SnapshotPolicy::snapshot_version`]: crate::SnapshotPolicy::snapshot_version
    pub snapshot_version: u32,
    /// A fingerprint of the state type and its handlers; a snapshot with another one is
    /// ignored (0 when the aggregate declares none).
    pub fingerprint: u64,
    /// The encoded state (JSON).
    pub state: Vec<u8>,
}

/// Where snapshots are kept. Stores that keep snapshots return themselves from
/// [`EventStore::snapshots`](crate::EventStore::snapshots).
pub trait SnapshotStore: Send + Sync {
    /// Saves a snapshot. Implementations keep at least the newest one per stream, and
    /// replace atomically: a crash leaves the old or the new snapshot, never a mix.
    fn save_snapshot(&self, snapshot: &Snapshot) -> Result<(), StoreError>;

    /// The newest snapshot of `stream_id` at or below `max_version`, if any.
    fn load_snapshot(
        &self,
        stream_id: &str,
        max_version: u64,
    ) -> Result<Option<Snapshot>, StoreError>;
}

/// How many snapshots a store keeps per stream: the newest, and older ones for loads at
/// earlier versions.
pub const SNAPSHOTS_KEPT: usize = 3;

/// Keeps the newest [`SNAPSHOTS_KEPT`] of a stream's snapshots, sorted by version, with
/// `snapshot` added (replacing one at the same version).
pub fn retain_newest(list: &mut Vec<Snapshot>, snapshot: &Snapshot) {
    list.retain(|s| s.version != snapshot.version);
    list.push(snapshot.clone());
    list.sort_by_key(|s| s.version);
    let excess = list.len().saturating_sub(SNAPSHOTS_KEPT);
    list.drain(..excess);
}

/// The newest snapshot of a sorted list at or below `max_version`.
pub fn newest_at_or_below(list: &[Snapshot], max_version: u64) -> Option<&Snapshot> {
    list.iter().rev().find(|s| s.version <= max_version)
}
