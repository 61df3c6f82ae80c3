//! The repository's state cache: recent aggregate states kept between commands, so that
//! a command reads only the events appended since the state it starts from.
//!
//! A cached state is the fold of the first `version` events of its stream, anchored to
//! the global position and the id of the event at `version` (a snapshot is anchored to
//! its position and time). A command takes the
//! state out, reads the events after it, checking first that the stream still holds the
//! anchoring event, decides, appends, and puts the new state back. When the store tells
//! that the stream still ends at the anchoring event ([`EventStore::stream_end`](crate::EventStore::stream_end)), there
//! is nothing to read. A conflict, a failed
//! read or a failed append drops the entry: the next command rebuilds the state from the
//! snapshot and the events, as without a cache. A rejected command, or one whose expected
//! version is stale, puts back the state it saw, which is current. The state a command sees is therefore always the one a
//! full replay gives.
//!
//! Entries are bounded by count and by an estimate of their size in bytes; when either
//! bound is passed, the entries not used since the clock hand last passed them go first
//! (the CLOCK approximation of least-recently-used).

use foldhash::fast::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Bounds of a repository's state cache, given to
/// [`Repository::with_cache`](crate::Repository::with_cache).
///
/// The defaults keep up to 10,000 states and 64 MiB (as estimated by the weigher, see
/// [`Repository::with_cache_weighed`](crate::Repository::with_cache_weighed)).
///
/// ```
/// use es_core::CacheOptions;
/// let options = CacheOptions::default().max_entries(1_000).max_bytes(8 << 20);
/// assert_eq!((options.entries, options.bytes), (1_000, 8 << 20));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheOptions {
    /// The most states kept (default 10,000). 0 keeps none.
    pub entries: usize,
    /// The most bytes kept, as the weigher estimates them (default 64 MiB). 0 keeps none.
    pub bytes: usize,
}

impl Default for CacheOptions {
    fn default() -> Self {
        CacheOptions {
            entries: 10_000,
            bytes: 64 * 1024 * 1024,
        }
    }
}

impl CacheOptions {
    /// Sets the most states kept.
    pub fn max_entries(mut self, entries: usize) -> Self {
        self.entries = entries;
        self
    }

    /// Sets the most bytes kept. The cache is split in shards that each keep a share of
    /// it, at least 4 MiB (or all of it, when it is smaller): a state larger than its
    /// shard's share is not kept.
    pub fn max_bytes(mut self, bytes: usize) -> Self {
        self.bytes = bytes;
        self
    }
}

/// What a repository's state cache holds and has done, from
/// [`Repository::cache_stats`](crate::Repository::cache_stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// States held now.
    pub entries: usize,
    /// Their estimated size in bytes.
    pub bytes: usize,
    /// Commands and loads that started from a cached state.
    pub hits: u64,
    /// Commands and loads that found none and rebuilt the state.
    pub misses: u64,
    /// States dropped to stay within the bounds.
    pub evictions: u64,
    /// States dropped because their stream no longer held the event they were anchored
    /// to (a history replaced under the repository), or after a conflict, a failed read
    /// or a failed append.
    pub invalidations: u64,
}

/// Where a folded state ends: the global position of its last event (0 when unknown) and
/// that event's id, when known. The id tells histories apart where positions cannot: a
/// store whose log end moved back (a failover that lost commits) hands the same versions
/// and positions to other events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Tip {
    pub(crate) position: u64,
    pub(crate) event_id: Option<uuid::Uuid>,
}

impl From<u64> for Tip {
    fn from(position: u64) -> Tip {
        Tip {
            position,
            event_id: None,
        }
    }
}

/// A state taken from the cache: the fold of the first `version` events, the last of
/// which is `tip`.
pub(crate) struct Cached<A> {
    pub(crate) state: A,
    pub(crate) version: u64,
    pub(crate) tip: Tip,
}

struct Entry<A> {
    /// `None` while a command has it out.
    state: Option<A>,
    version: u64,
    tip: Tip,
    weight: usize,
    /// Which insertion this is: the clock's queue names entries by stream and insertion,
    /// so that a queue slot of a removed entry is recognised and skipped.
    insertion: u64,
    referenced: bool,
}

struct Shard<A> {
    map: HashMap<String, Entry<A>, RandomState>,
    /// The clock: streams in insertion order, each with the insertion it names.
    clock: VecDeque<(String, u64)>,
    bytes: usize,
    next_insertion: u64,
}

/// The shared cache of one repository and its clones.
pub(crate) struct StateCache<A> {
    shards: Box<[Mutex<Shard<A>>]>,
    hasher: RandomState,
    /// Bounds per shard.
    entries: usize,
    bytes: usize,
    copy: fn(&A) -> A,
    weigh: fn(&A) -> usize,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
    invalidations: AtomicU64,
}

/// The least share of the byte bound a shard has, unless the whole bound is smaller.
const MIN_SHARD_BYTES: usize = 4 << 20;

/// The estimated size of an entry beyond its state: the key's allocation, the map's and
/// the clock's slots.
const ENTRY_OVERHEAD: usize = 96;

impl<A> StateCache<A> {
    pub(crate) fn new(options: CacheOptions, copy: fn(&A) -> A, weigh: fn(&A) -> usize) -> Self {
        // enough shards that concurrent commands rarely wait for each other, few enough
        // that each shard's share of the bounds stays meaningful: at least 256 states and
        // [`MIN_SHARD_BYTES`] (a state larger than its shard's share is not kept)
        let wanted = (options.entries / 256)
            .min(options.bytes / MIN_SHARD_BYTES)
            .clamp(1, 16);
        let shards = 1 << wanted.ilog2();
        StateCache {
            shards: (0..shards)
                .map(|_| {
                    Mutex::new(Shard {
                        map: HashMap::default(),
                        clock: VecDeque::new(),
                        bytes: 0,
                        next_insertion: 0,
                    })
                })
                .collect(),
            hasher: RandomState::default(),
            entries: options.entries.div_ceil(shards),
            bytes: options.bytes.div_ceil(shards),
            copy,
            weigh,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            invalidations: AtomicU64::new(0),
        }
    }

    fn shard(&self, stream_id: &str) -> std::sync::MutexGuard<'_, Shard<A>> {
        let index = (self.hasher.hash_one(stream_id) as usize) & (self.shards.len() - 1);
        // a panic while holding a shard leaves it consistent: every update below is
        // completed before anything that could panic (the weigher runs outside the lock)
        self.shards[index].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes the state of `stream_id` out of the cache, for a command that will put back
    /// the state it ends with (the entry stays, so that putting it back allocates nothing).
    pub(crate) fn take(&self, stream_id: &str) -> Option<Cached<A>> {
        let mut shard = self.shard(stream_id);
        let taken = shard.map.get_mut(stream_id).and_then(|e| {
            e.referenced = true;
            Some(Cached {
                state: e.state.take()?,
                version: e.version,
                tip: e.tip,
            })
        });
        drop(shard);
        self.count(taken.is_some());
        taken
    }

    /// A copy of the state of `stream_id`, left in the cache.
    pub(crate) fn get(&self, stream_id: &str) -> Option<Cached<A>> {
        let mut shard = self.shard(stream_id);
        let found = shard.map.get_mut(stream_id).and_then(|e| {
            e.referenced = true;
            Some(Cached {
                state: (self.copy)(e.state.as_ref()?),
                version: e.version,
                tip: e.tip,
            })
        });
        drop(shard);
        self.count(found.is_some());
        found
    }

    fn count(&self, hit: bool) {
        let counter = if hit { &self.hits } else { &self.misses };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// A copy of `state`, to keep one and hand out the other.
    pub(crate) fn copy(&self, state: &A) -> A {
        (self.copy)(state)
    }

    /// Keeps `state` as the state of `stream_id` at `version`, unless the cache already
    /// holds a newer one (another command put it there meanwhile).
    pub(crate) fn put(&self, stream_id: &str, state: A, version: u64, tip: impl Into<Tip>) {
        let tip = tip.into();
        if self.entries == 0 || version == 0 {
            return;
        }
        let weight = (self.weigh)(&state)
            .saturating_add(stream_id.len())
            .saturating_add(ENTRY_OVERHEAD);
        if weight > self.bytes {
            return;
        }
        let mut shard = self.shard(stream_id);
        if let Some(existing) = shard.map.get_mut(stream_id) {
            if existing.state.is_some() && existing.version > version {
                return;
            }
            let old = std::mem::replace(&mut existing.weight, weight);
            existing.state = Some(state);
            existing.version = version;
            existing.tip = tip;
            existing.referenced = true;
            shard.bytes = shard.bytes.saturating_sub(old).saturating_add(weight);
        } else {
            let insertion = shard.next_insertion;
            shard.next_insertion += 1;
            shard.map.insert(
                stream_id.to_owned(),
                Entry {
                    state: Some(state),
                    version,
                    tip,
                    weight,
                    insertion,
                    referenced: false,
                },
            );
            shard.clock.push_back((stream_id.to_owned(), insertion));
            shard.bytes = shard.bytes.saturating_add(weight);
        }
        let evicted = self.evict(&mut shard);
        drop(shard);
        if evicted > 0 {
            self.evictions.fetch_add(evicted, Ordering::Relaxed);
        }
    }

    /// Drops entries until the shard is within its bounds; returns how many went.
    fn evict(&self, shard: &mut Shard<A>) -> u64 {
        let mut evicted = 0;
        while shard.map.len() > self.entries || shard.bytes > self.bytes {
            let Some((stream_id, insertion)) = shard.clock.pop_front() else {
                break;
            };
            let Some(entry) = shard.map.get_mut(&stream_id) else {
                continue;
            };
            if entry.insertion != insertion {
                continue;
            }
            if entry.referenced && entry.state.is_some() {
                entry.referenced = false;
                shard.clock.push_back((stream_id, insertion));
                continue;
            }
            if let Some(gone) = shard.map.remove(&stream_id) {
                shard.bytes = shard.bytes.saturating_sub(gone.weight);
                evicted += 1;
            }
        }
        // slots of removed entries accumulate when nothing is evicted: sweep them
        if shard.clock.len() > 2 * shard.map.len() + 64 {
            let map = &shard.map;
            shard
                .clock
                .retain(|(s, i)| map.get(s).is_some_and(|e| e.insertion == *i));
        }
        evicted
    }

    /// Drops the state of `stream_id` (after a conflict or an error).
    pub(crate) fn invalidate(&self, stream_id: &str) {
        let mut shard = self.shard(stream_id);
        if let Some(gone) = shard.map.remove(stream_id) {
            shard.bytes = shard.bytes.saturating_sub(gone.weight);
        }
        drop(shard);
        self.invalidations.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn stats(&self) -> CacheStats {
        let (mut entries, mut bytes) = (0, 0);
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            entries += shard.map.len();
            bytes = shard.bytes.saturating_add(bytes);
        }
        CacheStats {
            entries,
            bytes,
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            invalidations: self.invalidations.load(Ordering::Relaxed),
        }
    }

    /// Drops every state.
    pub(crate) fn clear(&self) {
        for shard in self.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            shard.map.clear();
            shard.clock.clear();
            shard.bytes = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(entries: usize, bytes: usize) -> StateCache<u64> {
        StateCache::new(CacheOptions { entries, bytes }, |s| *s, |_| 8)
    }

    /// A state that fits the byte bound is kept, however many entries are allowed: the
    /// bound was split among 16 shards, and a state of more than a sixteenth was never kept.
    #[test]
    fn a_large_state_within_the_byte_bound_is_kept() {
        let c: StateCache<u64> = StateCache::new(
            CacheOptions {
                entries: 10_000,
                bytes: 1 << 20,
            },
            |s| *s,
            |_| 200 << 10,
        );
        c.put("s-a", 1, 1, 1);
        c.put("s-b", 2, 1, 2);
        assert!(c.get("s-a").is_some() && c.get("s-b").is_some());
        // the default bound, 64 MiB, keeps states of nearly 4 MiB
        let c: StateCache<u64> = StateCache::new(
            CacheOptions {
                entries: 10_000,
                bytes: 64 << 20,
            },
            |s| *s,
            |_| (4 << 20) - 1024,
        );
        c.put("s-a", 1, 1, 1);
        assert!(c.get("s-a").is_some());
    }

    #[test]
    fn keeps_at_most_the_entries_asked_for() {
        let c = cache(3, usize::MAX);
        for i in 0..10u64 {
            c.put(&format!("s-{i}"), i, 1, i + 1);
        }
        let stats = c.stats();
        assert_eq!((stats.entries, stats.evictions), (3, 7));
    }

    #[test]
    fn keeps_at_most_the_bytes_asked_for() {
        let per_entry = 8 + 3 + ENTRY_OVERHEAD;
        let c = cache(100, 2 * per_entry);
        for i in 0..5u64 {
            c.put(&format!("s-{i}"), i, 1, 1);
        }
        assert_eq!(c.stats().entries, 2);
        assert!(c.stats().bytes <= 2 * per_entry);
    }

    #[test]
    fn a_used_entry_outlives_an_unused_one() {
        let c = cache(2, usize::MAX);
        c.put("s-a", 1, 1, 1);
        c.put("s-b", 2, 1, 2);
        assert!(c.get("s-a").is_some());
        c.put("s-c", 3, 1, 3);
        assert!(c.get("s-a").is_some(), "the used entry stays");
        assert!(c.get("s-b").is_none(), "the unused one goes");
    }

    #[test]
    fn an_older_state_never_replaces_a_newer_one() {
        let c = cache(10, usize::MAX);
        c.put("s-a", 7, 7, 70);
        c.put("s-a", 5, 5, 50);
        let got = c.take("s-a").unwrap();
        assert_eq!((got.state, got.version, got.tip.position), (7, 7, 70));
        assert!(c.take("s-a").is_none(), "take removes");
    }

    #[test]
    fn zero_bounds_keep_nothing() {
        for c in [cache(0, usize::MAX), cache(10, 0)] {
            c.put("s-a", 1, 1, 1);
            assert_eq!(c.stats().entries, 0);
        }
    }

    #[test]
    fn huge_weights_do_not_overflow() {
        let c = StateCache::new(
            CacheOptions {
                entries: 10,
                bytes: usize::MAX,
            },
            |s: &u64| *s,
            |_| usize::MAX,
        );
        for i in 0..3u64 {
            c.put(&format!("s-{i}"), i, 1, 1);
        }
        c.invalidate("s-0");
        assert!(c.stats().entries <= 3);
    }

    #[test]
    fn removed_slots_do_not_pile_up() {
        let c = cache(10, usize::MAX);
        for i in 0..10_000u64 {
            c.put("s-a", i, i + 1, i + 1);
            c.invalidate("s-a");
        }
        let shard = c.shards[0].lock().unwrap();
        assert!(shard.clock.len() <= 2 * shard.map.len() + 65);
    }
}
