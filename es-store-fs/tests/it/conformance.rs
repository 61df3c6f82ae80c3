//! The file store passes the whole store conformance suite, with fsync on every append.
use es_store_fs::FileStore;

fn make() -> (FileStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (FileStore::open(dir.path()).unwrap(), dir)
}

es_core::store_conformance_tests!(make);

mod small_segments {
    //! The same suite with tiny segments, so that appends roll over segment files often.
    use es_store_fs::{FileStore, FileStoreOptions};

    fn make() -> (FileStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let options = FileStoreOptions {
            segment_size: 4096,
            ..FileStoreOptions::default()
        };
        (FileStore::open_with(dir.path(), options).unwrap(), dir)
    }

    es_core::store_conformance_tests!(make);
}

/// The file store tells where a stream ends from its index while the stream's last frame
/// is in the active segment, also after a reopen, and says nothing (rather than a wrong
/// end) once that frame is sealed.
#[test]
fn stream_ends_come_from_the_index_while_recent() {
    use es_core::{EventStore, ExpectedVersion, NewEvent, StreamEnd};
    use es_store_fs::FileStoreOptions;
    let dir = tempfile::tempdir().unwrap();
    let options = || FileStoreOptions {
        segment_size: 4096,
        ..FileStoreOptions::default()
    };
    let event = |n: u64| NewEvent::new("Added", 1, format!(r#"{{"n":{n}}}"#).into_bytes());
    let store = FileStore::open_with(dir.path(), options()).unwrap();
    store
        .append("old", ExpectedVersion::NoStream, vec![event(0), event(1)])
        .unwrap();
    assert_eq!(
        store.stream_end("old").unwrap(),
        Some(StreamEnd {
            version: 2,
            position: 2
        })
    );
    // enough frames of another stream to seal the segment holding "old"
    for n in 0..100 {
        store
            .append("busy", ExpectedVersion::Any, vec![event(n)])
            .unwrap();
    }
    let busy = StreamEnd {
        version: 100,
        position: 102,
    };
    assert_eq!(store.stream_end("busy").unwrap(), Some(busy));
    assert_eq!(store.stream_end("old").unwrap(), None, "sealed: not told");
    assert_eq!(store.stream_version("old").unwrap(), 2);
    drop(store);
    let store = FileStore::open_with(dir.path(), options()).unwrap();
    assert_eq!(store.stream_end("busy").unwrap(), Some(busy));
    assert_eq!(store.stream_end("old").unwrap(), None);
    assert!(
        store.stream_end("bad\0id").is_err(),
        "an invalid id is refused"
    );
}

/// A read of the log walks each segment frame by frame: from every position, across
/// sealed segments and the active one, with and without the newest bytes in memory, and
/// after a reopen, it yields exactly the events from that position on, in order.
#[test]
fn log_reads_from_every_position_yield_exactly_the_events_after_it() {
    use es_core::{EventStore, ExpectedVersion, NewEvent};
    use es_store_fs::FileStoreOptions;
    use std::ops::ControlFlow;
    let dir = tempfile::tempdir().unwrap();
    let options = |recent_cache| FileStoreOptions {
        segment_size: 4096,
        recent_cache,
        ..FileStoreOptions::default()
    };
    let event = |n: u64| NewEvent::new("Added", 1, format!(r#"{{"n":{n}}}"#).into_bytes());
    let store = FileStore::open_with(dir.path(), options(0)).unwrap();
    let mut n = 0;
    for i in 0..120u64 {
        // frames of one to three events, streams interleaved
        let events = (0..1 + i % 3)
            .map(|_| {
                n += 1;
                event(n)
            })
            .collect();
        store
            .append(&format!("s-{}", i % 7), ExpectedVersion::Any, events)
            .unwrap();
    }
    let check = |store: &FileStore, n: u64, what: &str| {
        for from in 1..=n + 1 {
            let read: Vec<(u64, String)> = store
                .read_all(from)
                .unwrap()
                .map(|e| e.map(|e| (e.position, String::from_utf8(e.payload).unwrap())))
                .collect::<Result<_, _>>()
                .unwrap();
            let expected: Vec<(u64, String)> =
                (from..=n).map(|p| (p, format!(r#"{{"n":{p}}}"#))).collect();
            assert_eq!(read, expected, "{what}: read_all from {from}");
            let mut lent = Vec::new();
            store
                .visit_all(from, &mut |e| {
                    lent.push(e.position);
                    ControlFlow::Continue(())
                })
                .unwrap();
            assert_eq!(
                lent,
                (from..=n).collect::<Vec<_>>(),
                "{what}: visit_all from {from}"
            );
        }
    };
    assert!(
        std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| e
                .as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".seg"))
            .count()
            > 3,
        "the events span several segments"
    );
    check(&store, n, "written, nothing in memory");
    drop(store);
    let store = FileStore::open_with(dir.path(), options(1 << 20)).unwrap();
    check(&store, n, "reopened");
    // appended after the reopen: the newest frames are read from memory
    for _ in 0..10 {
        n += 1;
        store
            .append("late", ExpectedVersion::Any, vec![event(n)])
            .unwrap();
    }
    check(&store, n, "reopened, then appended");
}

/// Damage inside a sealed segment, with every index intact, is reported by a read of the
/// log naming the segment file and the damaged frame's offset; the frames before it are
/// read.
#[test]
fn damage_inside_a_sealed_segment_stops_a_log_read_at_the_damaged_frame() {
    let dir = tempfile::tempdir().unwrap();
    let sealed = sealed_frames(dir.path(), |n| format!(r#"{{"n":{n}}}"#));
    let (clean, name) = (&sealed.clean, sealed.name);
    // every frame, damaged in its length, its checksum, its body and its trailing length:
    // reads check frames a few at a time, so the damaged frame may be the first, the
    // second or the third of those checked together
    for (k, &damaged) in sealed.frames.iter().enumerate() {
        let len = u32::from_le_bytes(clean[damaged..damaged + 4].try_into().unwrap()) as usize;
        for byte in [1, 5, 20, len + 8] {
            let mut data = clean.clone();
            data[damaged + byte] ^= 0x01;
            let store = sealed.open_with(&data);
            let what = format!("byte {byte} of frame {k}");
            let read = log_read_stops_at(&store, name, damaged, &what);
            // every frame before the damaged one is read, one event each
            assert_eq!(read.len(), sealed.before + k, "{what}");
        }
    }
}

/// A whole frame with a valid checksum in the place of the next one (a frame written
/// twice, or copied by something other than the store) is reported by a read of the log,
/// owned or lent, naming the segment file and the offset of the frame out of place; the
/// frames before it are read and the copy is never yielded.
#[test]
fn a_valid_frame_out_of_place_stops_a_log_read_at_it() {
    let dir = tempfile::tempdir().unwrap();
    // payloads of one length, so that every frame can take the place of the next
    let sealed = sealed_frames(dir.path(), |n| format!(r#"{{"n":"{n:04}"}}"#));
    let (clean, frames, name) = (&sealed.clean, &sealed.frames, sealed.name);
    for k in 1..frames.len() {
        let (from, to) = (frames[k - 1], frames[k]);
        let len = to - from;
        assert!(
            frames.get(k + 1).is_none_or(|next| next - to == len),
            "frames of one length"
        );
        let mut data = clean.clone();
        data.copy_within(from..to, to);
        let store = sealed.open_with(&data);
        let read = log_read_stops_at(&store, name, to, &format!("frame {k}"));
        let expected: Vec<u64> = (1..=(sealed.before + k) as u64).collect();
        assert_eq!(read, expected, "frame {k}: each event once, in order");
    }
}

/// Reads the log from its start, owned (`read_all`) and lent (`visit_all`): both must stop
/// with the same error, reported as damage at `offset` of segment file `name`, after the
/// same events, whose positions it returns.
fn log_read_stops_at(store: &FileStore, name: &str, offset: usize, what: &str) -> Vec<u64> {
    use es_core::{DataLocation, EventStore, StoreError};
    let mut read = Vec::new();
    let mut events = store.read_all(1).unwrap();
    let err = loop {
        match events.next() {
            Some(Ok(e)) => read.push(e.position),
            Some(Err(e)) => break e,
            None => panic!("{what}: went unnoticed"),
        }
    };
    assert!(
        events.next().is_none(),
        "{what}: the read goes on after the error"
    );
    let StoreError::Corrupted(corruption) = &err else {
        panic!("{what}: {err:?}")
    };
    assert!(
        matches!(
            &corruption.location,
            DataLocation::File { path, offset: at }
                if path.ends_with(name) && *at == offset as u64
        ),
        "{what}: {corruption:?}"
    );
    let mut lent = Vec::new();
    let lent_err = store
        .visit_all(1, &mut |e| {
            lent.push(e.position);
            std::ops::ControlFlow::Continue(())
        })
        .unwrap_err();
    assert_eq!(lent_err.to_string(), err.to_string(), "{what}");
    assert_eq!(lent, read, "{what}: lent and owned reads differ");
    read
}

/// A store of 200 single-event appends to five streams in 4 KiB segments, and what the
/// damage tests need of its segment 1 (sealed: later segments exist).
struct SealedFrames {
    dir: std::path::PathBuf,
    options: es_store_fs::FileStoreOptions,
    /// The segment file's name, and its path.
    name: &'static str,
    path: std::path::PathBuf,
    /// Its bytes as written.
    clean: Vec<u8>,
    /// Its frames' offsets, from their lengths.
    frames: Vec<usize>,
    /// How many frames (one event each) segment 0 holds.
    before: usize,
}

impl SealedFrames {
    /// Opens the store with `data` in place of segment 1's bytes.
    fn open_with(&self, data: &[u8]) -> FileStore {
        std::fs::write(&self.path, data).unwrap();
        FileStore::open_with(&self.dir, self.options.clone()).unwrap()
    }
}

/// Writes [`SealedFrames`]'s store into `dir`, the `n`-th event's payload `payload(n)`.
fn sealed_frames(dir: &std::path::Path, payload: impl Fn(u64) -> String) -> SealedFrames {
    use es_core::{EventStore, ExpectedVersion, NewEvent};
    let options = es_store_fs::FileStoreOptions {
        segment_size: 4096,
        ..es_store_fs::FileStoreOptions::default()
    };
    let store = FileStore::open_with(dir, options.clone()).unwrap();
    for n in 1..=200 {
        let event = NewEvent::new("Added", 1, payload(n).into_bytes());
        store
            .append(&format!("s-{}", n % 5), ExpectedVersion::Any, vec![event])
            .unwrap();
    }
    drop(store);
    let name = "00000000000000000001.seg";
    let path = dir.join(name);
    let clean = std::fs::read(&path).unwrap();
    let frames = frame_offsets(&clean);
    assert!(frames.len() > 4, "{} frames", frames.len());
    let segment0 = std::fs::read(dir.join("00000000000000000000.seg")).unwrap();
    SealedFrames {
        dir: dir.to_owned(),
        options,
        name,
        path,
        clean,
        frames,
        before: frame_offsets(&segment0).len(),
    }
}

/// The offsets of a segment's frames, from each frame's length after the 32-byte header,
/// up to the zero-filled room after the last.
fn frame_offsets(segment: &[u8]) -> Vec<usize> {
    let mut frames = Vec::new();
    let mut at = 32;
    while let Some(len) = segment.get(at..at + 4) {
        let len = u32::from_le_bytes(len.try_into().unwrap()) as usize;
        if len == 0 {
            break;
        }
        frames.push(at);
        at += 12 + len;
    }
    frames
}

/// Reads of the log racing appends that fill and seal segment after segment each see a
/// gapless prefix of the log, never shorter than the one before.
#[test]
fn log_reads_racing_appends_and_seals_see_gapless_prefixes() {
    use es_core::{EventStore, ExpectedVersion, NewEvent};
    use es_store_fs::{Durability, FileStoreOptions};
    let dir = tempfile::tempdir().unwrap();
    let options = FileStoreOptions {
        segment_size: 4096,
        recent_cache: 1024,
        durability: Durability::None,
        ..FileStoreOptions::default()
    };
    let store = FileStore::open_with(dir.path(), options).unwrap();
    let total = 3000u64;
    std::thread::scope(|scope| {
        scope.spawn(|| {
            for n in 1..=total {
                let event = NewEvent::new("Added", 1, format!(r#"{{"n":{n}}}"#).into_bytes());
                store
                    .append(&format!("s-{}", n % 11), ExpectedVersion::Any, vec![event])
                    .unwrap();
            }
        });
        let mut seen = 0;
        while seen < total {
            let positions: Vec<u64> = store
                .read_all(1)
                .unwrap()
                .map(|e| e.unwrap().position)
                .collect();
            assert!(
                positions.len() as u64 >= seen,
                "a read saw fewer events than the last"
            );
            assert!(
                positions.iter().copied().eq(1..=positions.len() as u64),
                "a read of {} events has a gap",
                positions.len()
            );
            seen = positions.len() as u64;
        }
    });
}

/// A subscription and a projection that meet damage deliver every event before it first,
/// then the error: a consumer that stops at the first error (the async feed does) has
/// still seen all the events the log holds before the damaged frame.
#[test]
fn subscriptions_and_projections_deliver_the_events_before_damage_first() {
    use es_core::StoreError;
    use es_core::projection::{
        BoxError, MemoryCheckpoints, Projection, ProjectionError, ProjectionRunner, WithCheckpoint,
    };
    use es_core::subscription::Subscription;

    let dir = tempfile::tempdir().unwrap();
    let sealed = sealed_frames(dir.path(), |n| format!(r#"{{"n":{n}}}"#));
    let mut data = sealed.clean.clone();
    data[sealed.frames[3] + 20] ^= 1; // the body of segment 1's fourth frame
    let store = sealed.open_with(&data);
    let good = (sealed.before + 3) as u64;

    let mut sub = Subscription::new(&store, 1);
    for position in 1..=good {
        let event = sub
            .try_next()
            .unwrap_or_else(|e| panic!("at {position}: {e}"));
        assert_eq!(event.map(|e| e.position), Some(position));
    }
    assert!(matches!(sub.try_next(), Err(StoreError::Corrupted(_))));
    assert_eq!(sub.position(), good + 1);
    // again from the damaged event, with a timeout
    assert!(
        sub.next_timeout(std::time::Duration::from_millis(10))
            .is_err()
    );

    #[derive(Default)]
    struct Seen(Vec<u64>);
    impl Projection for Seen {
        fn handle(&mut self, e: &es_core::RecordedEvent) -> Result<(), BoxError> {
            self.0.push(e.position);
            Ok(())
        }
        fn reset(&mut self) -> Result<(), BoxError> {
            self.0.clear();
            Ok(())
        }
    }
    let checkpoints = MemoryCheckpoints::default();
    let mut runner = ProjectionRunner::new(
        &store,
        WithCheckpoint::new(Seen::default(), "seen", &checkpoints),
    );
    assert!(matches!(
        runner.run_to_head(),
        Err(ProjectionError::Store(StoreError::Corrupted(_)))
    ));
    assert_eq!(
        runner.projection().projection.0,
        (1..=good).collect::<Vec<_>>()
    );
    assert_eq!(
        es_core::CheckpointStore::load(&checkpoints, "seen").unwrap(),
        good
    );
}

/// A stream table cache too small for a segment's table (0 keeps none) keeps no copy of
/// it, and the table is read from its file: an empty copy was kept, and every read of a
/// stream with frames in a segment sealed while the store ran failed as damage.
#[test]
fn a_table_cache_too_small_for_a_table_reads_the_table_from_its_file() {
    use es_core::{EventStore, ExpectedVersion};
    let read_all_streams = |store: &FileStore, what: &str| {
        for s in 0..7 {
            let events: Vec<_> = store
                .read_stream(&format!("s-{s}"), 1)
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            assert!(events.len() >= 85, "{what}: {}", events.len());
        }
    };
    for cache in [0usize, 1000] {
        let dir = tempfile::tempdir().unwrap();
        let options = || es_store_fs::FileStoreOptions {
            segment_size: 16 << 10,
            durability: es_store_fs::Durability::None,
            stream_table_cache: cache,
            ..Default::default()
        };
        let store = FileStore::open_with(dir.path(), options()).unwrap();
        for n in 0..600u64 {
            let stream = format!("s-{}", n % 7);
            store
                .append(
                    &stream,
                    ExpectedVersion::Any,
                    vec![crate::common::event(&stream, n, 40)],
                )
                .unwrap();
        }
        store.checkpoint().unwrap();
        read_all_streams(&store, &format!("cache {cache}, live"));
        drop(store);
        let store = FileStore::open_with(dir.path(), options()).unwrap();
        read_all_streams(&store, &format!("cache {cache}, reopened"));
    }
}

/// A damaged entry of a stream's list of frames in a sealed index, met by the bisection
/// that finds where a read from a version starts, is reported as damage in the index
/// file, as a read of the whole list reports it: it was reported as a gap in the log,
/// naming the intact segment.
#[test]
fn a_damaged_frame_entry_met_by_the_bisection_is_reported_in_the_index() {
    use es_core::{EventStore, ExpectedVersion};
    let options = |cache: usize| es_store_fs::FileStoreOptions {
        segment_size: 64 << 10,
        durability: es_store_fs::Durability::None,
        stream_table_cache: cache,
        ..Default::default()
    };
    let read = |store: &FileStore, from: u64| -> Result<usize, String> {
        store
            .read_stream("long", from)
            .map_err(|e| e.to_string())?
            .map(|e| e.map_err(|e| e.to_string()))
            .collect::<Result<Vec<_>, _>>()
            .map(|v| v.len())
    };
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open_with(dir.path(), options(64 << 20)).unwrap();
    let idx = dir.path().join(format!("{:020}.idx", 0));
    let mut v = 0;
    while !idx.exists() {
        store
            .append(
                "long",
                ExpectedVersion::Exact(v),
                vec![crate::common::event("long", v, 40)],
            )
            .unwrap();
        v += 1;
        if v % 100 == 0 {
            store.checkpoint().unwrap();
        }
    }
    store.close().unwrap();
    let mut b = std::fs::read(&idx).unwrap();
    let u32_at = |b: &[u8], i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap()) as usize;
    let (frames, streams, names) = (u32_at(&b, 40), u32_at(&b, 44), u32_at(&b, 48));
    assert_eq!(streams, 1);
    let slots_at = 64 + 56 * streams + names;
    let filter_at = slots_at + 40 * frames;
    // single-event frames: entry t holds version t + 1; entry t's version made 1
    let from = (frames * 4 / 5) as u64;
    let at = slots_at + 40 * (from as usize - 1) + 16;
    assert_eq!(u64::from_le_bytes(b[at..at + 8].try_into().unwrap()), from);
    b[at..at + 8].copy_from_slice(&1u64.to_le_bytes());
    let crc = crc32c::crc32c(&b[64..filter_at]);
    b[56..60].copy_from_slice(&crc.to_le_bytes());
    let crc = crc32c::crc32c(&b[..60]);
    b[60..64].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&idx, &b).unwrap();
    for cache in [0usize, 64 << 20] {
        let store = FileStore::open_with(dir.path(), options(cache)).unwrap();
        for from in [1, from - 1, from, from + 1] {
            match read(&store, from) {
                Err(e) if e.contains(".idx") => {}
                other => panic!("cache {cache}, from {from}: {other:?}"),
            }
        }
    }
}
