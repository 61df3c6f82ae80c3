//! Decoders and recovery on hostile bytes: arbitrary and mutated segments, frames and
//! index files never cause a panic or an allocation sized by an unchecked length (none
//! beyond the frame cap), and a `u32::MAX` length at the tail is cut as a torn tail.
//!
//! `ES_RELIABILITY_FULL=1` runs many more cases.

use crate::common::{event, figure, proptest_config};
use es_core::{EventStore, ExpectedVersion, RecordedEvent};
use es_store_fs::format::{self, Frame, SegmentHeader};
use es_store_fs::vfs::sim::SimFs;
use es_store_fs::{FileStore, FileStoreOptions, OpenError};
use proptest::prelude::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Records the largest single allocation of the current thread while tracking is on.
struct Tracking;

thread_local! {
    static TRACKING: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

fn note(size: usize) {
    let _ = TRACKING.try_with(|t| {
        if t.get() {
            let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
        }
    });
}

#[global_allocator]
static ALLOCATOR: Tracking = Tracking;

/// Runs `f` and returns the largest single allocation it made on this thread.
fn largest_allocation(f: impl FnOnce()) -> usize {
    LARGEST.with(|l| l.set(0));
    TRACKING.with(|t| t.set(true));
    f();
    TRACKING.with(|t| t.set(false));
    LARGEST.with(|l| l.get())
}

/// The frame cap of the default limits, as the store derives it: the largest append it
/// accepts plus per-event overhead.
fn frame_cap() -> usize {
    let l = es_core::Limits::default();
    l.max_batch_size
        + l.max_batch_events * (16 + 10 + 12 + 10 + 10 + 10 + 10 + l.max_event_type_len)
        + l.max_stream_id_len
        + 64
}

static CASES: AtomicU64 = AtomicU64::new(0);

/// Feeds bytes to every decoder of `format`.
fn decode_everything(bytes: &[u8]) {
    let _ = SegmentHeader::decode(bytes);
    let _ = format::frame_len(bytes, frame_cap());
    let _ = format::frame_len(bytes, u32::MAX as usize);
    if let Ok(body) = format::check_frame(bytes) {
        parse_body(body);
    }
    parse_body(bytes);
    if bytes.len() > 8 {
        parse_body(&bytes[8..]);
    }
}

fn parse_body(body: &[u8]) {
    if let Ok(frame) = Frame::parse(body) {
        let _ = frame.end_position();
        let mut out: Vec<RecordedEvent> = Vec::new();
        let _ = frame.into_recorded(0, &mut out);
    }
    if let Ok(frame) = Frame::parse(body) {
        let _ = frame.for_each_event(|_, e| {
            let _ = (e.event_type.len(), e.payload.len());
            Ok(())
        });
    }
}

/// A valid frame, to mutate.
fn valid_frame(events: usize, payload: usize) -> Vec<u8> {
    let prepared: Vec<format::PreparedEvent> = (0..events)
        .map(|i| format::PreparedEvent::from_new(event("s-1", i as u64, payload)).unwrap())
        .collect();
    let mut out = Vec::new();
    let place = format::FramePlace {
        first_position: 7,
        first_version: 3,
        timestamp: chrono::DateTime::from_timestamp(1_700_000_000, 5).unwrap(),
        synced_back: Some(40),
    };
    format::encode_frame(&mut out, place, "s-1", &prepared);
    out
}

/// Sets the four bytes at `at` and recomputes a frame's checksum, so that the decoder
/// past the checksum sees the change.
fn with_checksum(mut frame: Vec<u8>) -> Vec<u8> {
    if frame.len() >= format::FRAME_PREFIX_LEN + 4 {
        let crc = crc32c::crc32c(&frame[format::FRAME_PREFIX_LEN..]);
        frame[4..8].copy_from_slice(&crc.to_le_bytes());
    }
    frame
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, bit: u8 },
    Set { at: usize, byte: u8 },
    SetU32 { at: usize, value: u32 },
    Truncate { at: usize },
    Insert { at: usize, bytes: Vec<u8> },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Set { at, byte }),
        (
            any::<usize>(),
            prop_oneof![Just(u32::MAX), Just(0), Just(1 << 31), any::<u32>()]
        )
            .prop_map(|(at, value)| Mutation::SetU32 { at, value }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..64))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
    ]
}

fn mutate(bytes: &mut Vec<u8>, m: &Mutation) {
    if bytes.is_empty() {
        return;
    }
    let n = bytes.len();
    match m {
        Mutation::Flip { at, bit } => bytes[at % n] ^= 1 << bit,
        Mutation::Set { at, byte } => bytes[at % n] = *byte,
        Mutation::SetU32 { at, value } => {
            let at = at % n;
            for (i, b) in value.to_le_bytes().iter().enumerate() {
                if at + i < n {
                    bytes[at + i] = *b;
                }
            }
        }
        Mutation::Truncate { at } => bytes.truncate(at % n),
        Mutation::Insert { at, bytes: ins } => {
            let at = at % n;
            bytes.splice(at..at, ins.iter().copied());
        }
    }
}

#[test]
fn frame_decoders_survive_arbitrary_bytes() {
    let largest = AtomicU64::new(0);
    proptest!(proptest_config(3000, 200_000), |(bytes in prop::collection::vec(any::<u8>(), 0..4096))| {
        let n = largest_allocation(|| decode_everything(&bytes));
        prop_assert!(n <= 16 * bytes.len() + 4096, "{n} bytes allocated for {} input bytes", bytes.len());
        largest.fetch_max(n as u64, Ordering::Relaxed);
        CASES.fetch_add(1, Ordering::Relaxed);
    });
    figure(
        "decoders, arbitrary bytes",
        "largest allocation",
        largest.into_inner(),
    );
}

#[test]
fn frame_decoders_survive_mutated_frames() {
    let frames = [valid_frame(1, 10), valid_frame(3, 200), valid_frame(12, 50)];
    proptest!(proptest_config(3000, 200_000), |(
        which in 0usize..3,
        mutations in prop::collection::vec(mutation(), 1..6),
        recompute in any::<bool>(),
    )| {
        let mut bytes = frames[which].clone();
        for m in &mutations {
            mutate(&mut bytes, m);
        }
        if recompute {
            bytes = with_checksum(bytes);
        }
        let n = largest_allocation(|| decode_everything(&bytes));
        prop_assert!(n <= 16 * bytes.len() + 4096, "{n} bytes allocated for {} input bytes", bytes.len());
        CASES.fetch_add(1, Ordering::Relaxed);
    });
}

const DIR: &str = "/db";

/// A small valid store: its files, by name.
fn valid_store() -> Vec<(String, Vec<u8>)> {
    let fs = SimFs::new(1);
    let options = FileStoreOptions {
        vfs: Arc::new(fs.clone()),
        segment_size: 4096,
        preallocate: 0,
        ..FileStoreOptions::default()
    };
    let store = FileStore::open_with(DIR, options).unwrap();
    for i in 0..30u64 {
        let stream = format!("s-{}", i % 4);
        let events = (0..1 + i % 3)
            .map(|k| event(&stream, i * 10 + k, 90))
            .collect();
        store.append(&stream, ExpectedVersion::Any, events).unwrap();
    }
    store.close().unwrap();
    fs.files()
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n != "LOCK"))
        .map(|p| {
            let bytes = fs.read_file(&p).unwrap();
            (p.file_name().unwrap().to_string_lossy().into_owned(), bytes)
        })
        .collect()
}

/// Opens a store on these files (plain, then with repair) and reads everything it
/// offers; returns whether the plain open succeeded.
fn open_and_read(fs: &SimFs, dir: &Path) -> bool {
    let mut opened = false;
    for repair in [false, true] {
        let options = FileStoreOptions {
            vfs: Arc::new(fs.clone()),
            repair,
            ..FileStoreOptions::default()
        };
        let Ok(store) = FileStore::open_with(dir, options) else {
            continue;
        };
        opened |= !repair;
        if let Ok(events) = store.read_all(1) {
            for e in events {
                if e.is_err() {
                    break;
                }
            }
        }
        for (stream, _) in store.streams() {
            if let Ok(events) = store.read_stream(&stream, 1) {
                for e in events {
                    if e.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = store.append("after", ExpectedVersion::Any, vec![event("after", 1, 10)]);
    }
    opened
}

fn is_index(name: &str) -> bool {
    name == "index.dat"
}

#[test]
fn store_directories_with_mutated_files_never_panic() {
    let files = valid_store();
    assert!(files.len() >= 4, "several segments and an index");
    let opened = AtomicU64::new(0);
    let largest = AtomicU64::new(0);
    proptest!(proptest_config(300, 20_000), |(
        target in any::<prop::sample::Index>(),
        mutations in prop::collection::vec(mutation(), 1..5),
        drop_index in any::<bool>(),
    )| {
        let fs = SimFs::new(2);
        let target = target.index(files.len());
        for (i, (name, bytes)) in files.iter().enumerate() {
            if drop_index && is_index(name) && i != target {
                continue;
            }
            let mut bytes = bytes.clone();
            if i == target {
                for m in &mutations {
                    mutate(&mut bytes, m);
                }
                if is_index(name) && bytes.len() >= 4 {
                    // get past the checksum, to reach the decoder and the checks after it
                    let body = bytes.len() - 4;
                    let crc = crc32c::crc32c(&bytes[..body]);
                    bytes[body..].copy_from_slice(&crc.to_le_bytes());
                }
            }
            fs.write_file(PathBuf::from(DIR).join(name), &bytes);
        }
        let mut ok = false;
        let n = largest_allocation(|| ok = open_and_read(&fs, Path::new(DIR)));
        prop_assert!(n <= frame_cap(), "{n} bytes allocated; the frame cap is {}", frame_cap());
        largest.fetch_max(n as u64, Ordering::Relaxed);
        opened.fetch_add(u64::from(ok), Ordering::Relaxed);
        CASES.fetch_add(1, Ordering::Relaxed);
    });
    figure(
        "mutated store directories",
        "opened without repair",
        opened.into_inner(),
    );
    figure(
        "mutated store directories",
        "largest allocation",
        largest.into_inner(),
    );
}

#[test]
fn store_directories_of_arbitrary_bytes_never_panic() {
    proptest!(proptest_config(300, 20_000), |(
        segments in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..3000), 1..4),
        index in prop::option::of(prop::collection::vec(any::<u8>(), 0..600)),
        header in any::<bool>(),
    )| {
        let fs = SimFs::new(3);
        for (no, mut bytes) in segments.into_iter().enumerate() {
            if header {
                let h = SegmentHeader { segment_no: no as u64, first_position: 1 };
                bytes.splice(0..0, h.encode());
            }
            fs.write_file(PathBuf::from(DIR).join(format!("{no:020}.seg")), &bytes);
        }
        if let Some(index) = index {
            fs.write_file(PathBuf::from(DIR).join("index.dat"), &index);
        }
        let n = largest_allocation(|| {
            open_and_read(&fs, Path::new(DIR));
        });
        prop_assert!(n <= frame_cap(), "{n} bytes allocated; the frame cap is {}", frame_cap());
        CASES.fetch_add(1, Ordering::Relaxed);
    });
}

/// A frame length of `u32::MAX` (and other lengths past the format's cap) at the tail of
/// the log is not what a crash leaves: the open refuses it, and repair cuts it; a length
/// the format allows that runs past the end of the file is a torn tail. Nothing is
/// allocated for either, on the simulated and the real disk.
#[test]
fn absurd_lengths_at_the_tail_are_refused_and_repaired_without_allocating() {
    let files = valid_store();
    let last_segment = files
        .iter()
        .filter(|(n, _)| n.ends_with(".seg"))
        .map(|(n, _)| n.clone())
        .max()
        .unwrap();
    let mut checked = 0;
    for length in [u32::MAX, u32::MAX - 11, 1 << 31, frame_cap() as u32 + 1] {
        // a length the format allows, running past the end of the file, is a write cut
        // short; one past the format's cap was never written by the store
        let plausible = length as usize <= format::MAX_FRAME_LEN;
        for tail_extra in [0usize, 4, 100] {
            let mut tail = length.to_le_bytes().to_vec();
            tail.extend(std::iter::repeat_n(0xAB, 4 + tail_extra));
            // the simulated disk
            let fs = SimFs::new(4);
            for (name, bytes) in &files {
                let mut bytes = bytes.clone();
                if *name == last_segment {
                    bytes.extend_from_slice(&tail);
                }
                fs.write_file(PathBuf::from(DIR).join(name), &bytes);
            }
            let options = FileStoreOptions {
                vfs: Arc::new(fs.clone()),
                ..FileStoreOptions::default()
            };
            let repair = FileStoreOptions {
                repair: true,
                ..options.clone()
            };
            let mut head = 0;
            let n = largest_allocation(|| {
                let store = if plausible {
                    let store = FileStore::open_with(DIR, options).unwrap();
                    assert!(store.recovery_report().torn_tail.is_some());
                    store
                } else {
                    let err = FileStore::open_with(DIR, options).unwrap_err();
                    assert!(matches!(err, OpenError::Corrupted { .. }), "{err}");
                    let store = FileStore::open_with(DIR, repair).unwrap();
                    assert!(store.recovery_report().repaired.is_some());
                    store
                };
                head = store
                    .read_all(1)
                    .unwrap()
                    .collect::<Result<Vec<_>, _>>()
                    .unwrap()
                    .len();
            });
            assert_eq!(head, 30 + 30);
            assert!(
                n <= frame_cap(),
                "{n} bytes allocated for length {length:#x}"
            );
            // the real disk
            let dir = tempfile::tempdir().unwrap();
            for (name, bytes) in &files {
                let mut bytes = bytes.clone();
                if *name == last_segment {
                    bytes.extend_from_slice(&tail);
                }
                std::fs::write(dir.path().join(name), &bytes).unwrap();
            }
            let n = largest_allocation(|| {
                if plausible {
                    let store = FileStore::open(dir.path()).unwrap();
                    assert!(store.recovery_report().torn_tail.is_some());
                    assert_eq!(store.read_all(1).unwrap().count(), 60);
                    return;
                }
                let err = FileStore::open(dir.path()).unwrap_err();
                assert!(matches!(err, OpenError::Corrupted { .. }), "{err}");
                let store = FileStore::open_with(
                    dir.path(),
                    FileStoreOptions {
                        repair: true,
                        ..FileStoreOptions::default()
                    },
                )
                .unwrap();
                assert!(store.recovery_report().repaired.is_some());
                assert_eq!(store.read_all(1).unwrap().count(), 60);
            });
            assert!(
                n <= frame_cap(),
                "{n} bytes allocated for length {length:#x}"
            );
            checked += 1;
        }
    }
    figure("absurd tail lengths", "cases on each disk", checked);
}

/// A few mutated directories on the real disk, to show the simulated one stands in for it.
#[test]
fn mutated_directories_on_the_real_disk_never_panic() {
    let files = valid_store();
    let mut runner = proptest::test_runner::TestRunner::new(proptest_config(40, 2000));
    runner
        .run(
            &(
                any::<prop::sample::Index>(),
                prop::collection::vec(mutation(), 1..4),
            ),
            |(target, mutations)| {
                let dir = tempfile::tempdir().unwrap();
                let target = target.index(files.len());
                for (i, (name, bytes)) in files.iter().enumerate() {
                    let mut bytes = bytes.clone();
                    if i == target {
                        for m in &mutations {
                            mutate(&mut bytes, m);
                        }
                    }
                    std::fs::write(dir.path().join(name), &bytes).unwrap();
                }
                for repair in [false, true] {
                    let options = FileStoreOptions {
                        repair,
                        ..FileStoreOptions::default()
                    };
                    if let Ok(store) = FileStore::open_with(dir.path(), options)
                        && let Ok(events) = store.read_all(1)
                    {
                        let _ = events.take_while(|e| e.is_ok()).count();
                    }
                }
                CASES.fetch_add(1, Ordering::Relaxed);
                Ok(())
            },
        )
        .unwrap();
}

fn varint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return out;
        }
        out.push(b | 0x80);
    }
}

/// An index file whose checksum holds but which claims a frame of absurd length (or
/// one past the end of its segment) is not trusted: reading the stream allocates nothing
/// for that length.
#[test]
fn an_index_claiming_absurd_frame_lengths_is_not_trusted() {
    let fs = SimFs::new(5);
    let options = || FileStoreOptions {
        vfs: Arc::new(fs.clone()),
        preallocate: 0,
        ..FileStoreOptions::default()
    };
    let store = FileStore::open_with(DIR, options()).unwrap();
    for i in 0..2 {
        store
            .append("s", ExpectedVersion::Any, vec![event("s", i, 40)])
            .unwrap();
    }
    store.close().unwrap();
    let path = PathBuf::from(DIR).join("index.dat");
    let index = fs.read_file(&path).unwrap();
    // magic, covered end, head; no sealed segment; one stream "s" (length, id, version
    // and newest segment before the recent frames); two frames; the first frame's fields
    let first_frame = 32 + 1 + 1 + 1 + 1 + 1 + 1 + 1;
    assert_eq!(&index[first_frame..first_frame + 4], &[0, 1, 0, 32]);
    let len_at = first_frame + 4;
    let len_end = len_at + index[len_at..].iter().position(|b| b & 0x80 == 0).unwrap() + 1;
    for claimed in [0xF000_0000u64, u64::from(u32::MAX), 1 << 24, 100_000] {
        let mut bad = index[..len_at].to_vec();
        bad.extend(varint(claimed));
        bad.extend_from_slice(&index[len_end..index.len() - 4]);
        let crc = crc32c::crc32c(&bad);
        bad.extend_from_slice(&crc.to_le_bytes());
        fs.write_file(&path, &bad);
        let n = largest_allocation(|| {
            let store = FileStore::open_with(DIR, options()).unwrap();
            let events: Vec<_> = store.read_stream("s", 1).unwrap().collect();
            assert!(events.iter().all(|e| e.is_ok()), "{events:?}");
            assert_eq!(events.len(), 2);
            assert!(store.recovery_report().index_rebuilt);
        });
        assert!(
            n <= 2 << 20,
            "{n} bytes allocated for a claimed length of {claimed}"
        );
    }
}
