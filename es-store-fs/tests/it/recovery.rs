//! Recovery on open: torn tails are cut, damage before the tail is reported with segment
//! and offset, the index is rebuilt when missing or damaged, and the directory is private
//! and single-writer.

use crate::common;
use crate::common::all_events;
use es_core::{EventStore, ExpectedVersion, NewEvent, RecordedEvent, StoreError};
use es_store_fs::vfs::sim::{SimFs, SimOp};
use es_store_fs::{FileStore, FileStoreOptions, OpenError, TornTail};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn segment0(dir: &Path) -> PathBuf {
    dir.join(format!("{:020}.seg", 0))
}

fn event(n: u64) -> NewEvent {
    NewEvent::new(
        "Tested",
        1,
        format!(r#"{{"n":{n},"pad":"{}"}}"#, "x".repeat(40)).into_bytes(),
    )
}

/// Writes `frames` appends (two events each, alternating streams) and returns the segment
/// length after each append, starting with the length before the first.
fn build(dir: &Path, frames: u64) -> Vec<u64> {
    let options = FileStoreOptions {
        preallocate: 0,
        ..FileStoreOptions::default()
    };
    let store = FileStore::open_with(dir, options).unwrap();
    let mut ends = vec![fs::metadata(segment0(dir)).unwrap().len()];
    for i in 0..frames {
        store
            .append(
                &format!("s-{}", i % 2),
                ExpectedVersion::Any,
                vec![event(2 * i), event(2 * i + 1)],
            )
            .unwrap();
        ends.push(fs::metadata(segment0(dir)).unwrap().len());
    }
    drop(store);
    ends
}

/// What a power loss during the last append leaves of the records that prove how far
/// the log was durable: the index file is written at close, and the writer's last
/// updates of `PUBLISHED` (never synced on their own) may not have reached the disk.
fn forget_durable_records(dir: &Path) {
    fs::remove_file(dir.join("index.dat")).unwrap();
    fs::remove_file(dir.join("PUBLISHED")).unwrap();
}

/// Opens with repair: damage is cut (the user's explicit choice).
fn open_repairing(dir: &Path) -> Result<FileStore, OpenError> {
    open_repairing_with(dir, FileStoreOptions::default())
}

/// [`open_repairing`] with other options.
fn open_repairing_with(dir: &Path, options: FileStoreOptions) -> Result<FileStore, OpenError> {
    FileStore::open_with(
        dir,
        FileStoreOptions {
            repair: true,
            ..options
        },
    )
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

#[test]
fn torn_tail_cut_at_every_byte_offset_of_the_last_frame() {
    let base = tempfile::tempdir().unwrap();
    let ends = build(base.path(), 3);
    let (start, end) = (ends[2], ends[3]);
    for cut in start..end {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(base.path(), dir.path());
        forget_durable_records(dir.path());
        let f = fs::OpenOptions::new()
            .write(true)
            .open(segment0(dir.path()))
            .unwrap();
        f.set_len(cut).unwrap();
        drop(f);
        let store = FileStore::open(dir.path()).unwrap();
        let report = store.recovery_report().clone();
        if cut > start {
            assert_eq!(
                report.torn_tail,
                Some(TornTail {
                    segment: 0,
                    offset: start,
                    bytes: cut - start
                }),
                "cut at {cut}"
            );
        }
        assert_eq!(
            all_events(&store).len(),
            4,
            "cut at {cut}: the first two appends survive"
        );
        let r = store
            .append("s-0", ExpectedVersion::Exact(2), vec![event(99)])
            .unwrap();
        assert_eq!(r.first_position, 5);
        drop(store);
        let store = FileStore::open(dir.path()).unwrap();
        assert_eq!(
            store.recovery_report().torn_tail,
            None,
            "reopens clean after cut at {cut}"
        );
        assert_eq!(all_events(&store).len(), 5);
    }
}

#[test]
fn zeros_after_the_tail_are_room_and_garbage_is_refused_until_repaired() {
    let garbage: Vec<(&str, Vec<u8>)> = vec![
        ("zeros", vec![0u8; 10_000]),
        ("short", vec![7]),
        ("ones", vec![0xff; 3000]),
        (
            "pseudo-random",
            (0..5000u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
                .collect(),
        ),
        ("u32::MAX length", u32::MAX.to_le_bytes().repeat(4)),
    ];
    for (what, bytes) in garbage {
        let dir = tempfile::tempdir().unwrap();
        let ends = build(dir.path(), 2);
        fs::remove_file(dir.path().join("index.dat")).unwrap();
        let mut data = fs::read(segment0(dir.path())).unwrap();
        data.extend_from_slice(&bytes);
        fs::write(segment0(dir.path()), &data).unwrap();
        let store = match what {
            // zeros are room the writer fills ahead of its frames: kept, not reported
            "zeros" | "short" => {
                let store = FileStore::open(dir.path()).unwrap();
                let expected = (what == "short").then_some(TornTail {
                    segment: 0,
                    offset: ends[2],
                    bytes: 1,
                });
                assert_eq!(store.recovery_report().torn_tail, expected, "{what}");
                store
            }
            // no crash writes garbage: it may be an acknowledged frame gone bad, so the
            // open refuses, names the place, and changes nothing until repair is asked for
            _ => {
                let err = FileStore::open(dir.path()).unwrap_err();
                assert!(
                    matches!(&err, OpenError::Corrupted { segment: 0, offset, file, .. }
                        if *offset == ends[2] && file == &segment0(dir.path())),
                    "{what}: {err}"
                );
                assert_eq!(fs::read(segment0(dir.path())).unwrap(), data, "{what}");
                let store = open_repairing(dir.path()).unwrap();
                let repaired = store.recovery_report().repaired.clone().unwrap();
                assert_eq!(
                    (repaired.offset, repaired.bytes_dropped),
                    (ends[2], bytes.len() as u64),
                    "{what}"
                );
                store
            }
        };
        assert_eq!(all_events(&store).len(), 4, "{what}");
        store
            .append("s-9", ExpectedVersion::NoStream, vec![event(1)])
            .unwrap();
        assert_eq!(all_events(&store).len(), 5, "{what}");
    }
}

#[test]
fn a_flipped_bit_in_any_byte_of_an_acknowledged_frame_is_reported() {
    let base = tempfile::tempdir().unwrap();
    let ends = build(base.path(), 3);
    // the middle frame is acknowledged and followed by another one
    let (start, end) = (ends[1], ends[2]);
    for at in start..end {
        // without an index: open scans the log and must refuse it
        let dir = tempfile::tempdir().unwrap();
        copy_dir(base.path(), dir.path());
        let mut data = fs::read(segment0(dir.path())).unwrap();
        data[at as usize] ^= 0x10;
        fs::write(segment0(dir.path()), &data).unwrap();
        fs::remove_file(dir.path().join("index.dat")).unwrap();
        match FileStore::open(dir.path()) {
            Err(OpenError::Corrupted {
                segment, offset, ..
            }) => {
                assert_eq!((segment, offset), (0, start), "flip at {at}");
            }
            other => panic!("flip at {at}: expected a corruption error, got {other:?}"),
        }
        // with the index: open trusts the index, and reading the frame reports the damage
        let dir = tempfile::tempdir().unwrap();
        copy_dir(base.path(), dir.path());
        fs::write(segment0(dir.path()), &data).unwrap();
        let store = FileStore::open(dir.path()).unwrap();
        let err = store
            .read_all(1)
            .unwrap()
            .find_map(Result::err)
            .unwrap_or_else(|| panic!("flip at {at} went unnoticed by read_all"));
        // the error names the segment file and the damaged frame's offset, as fields
        let StoreError::Corrupted(corruption) = &err else {
            panic!("flip at {at}: {err:?}")
        };
        assert!(
            matches!(
                &corruption.location,
                es_core::DataLocation::File { path, offset }
                    if *path == segment0(Path::new("")) && *offset == start
            ),
            "flip at {at}: {corruption:?}"
        );
        assert!(
            err.to_string().contains(&format!("offset {start}")),
            "{err}"
        );
        let stream_err = store.read_stream("s-1", 1).unwrap().find_map(Result::err);
        assert!(
            matches!(stream_err, Some(StoreError::Corrupted(_))),
            "flip at {at}"
        );
        // with repair on, the log is cut at the damage and the report says so
        drop(store);
        fs::remove_file(dir.path().join("index.dat")).unwrap();
        let options = FileStoreOptions {
            repair: true,
            ..FileStoreOptions::default()
        };
        let store = FileStore::open_with(dir.path(), options).unwrap();
        let repair = store
            .recovery_report()
            .repaired
            .clone()
            .expect("a repair report");
        assert_eq!((repair.segment, repair.offset), (0, start));
        assert_eq!(repair.bytes_dropped, ends[3] - start);
        assert_eq!(all_events(&store).len(), 2);
    }
}

#[test]
fn a_damaged_segment_that_is_not_the_last_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let options = || FileStoreOptions {
        segment_size: 4096,
        ..FileStoreOptions::default()
    };
    let store = FileStore::open_with(dir.path(), options()).unwrap();
    for i in 0..100 {
        store
            .append("s-1", ExpectedVersion::Any, vec![event(i)])
            .unwrap();
    }
    drop(store);
    assert!(
        dir.path().join(format!("{:020}.seg", 2)).exists(),
        "several segments"
    );
    let seg0 = segment0(dir.path());
    let len = fs::metadata(&seg0).unwrap().len();
    // cut the end of a sealed segment: not a torn tail, since later segments exist
    fs::OpenOptions::new()
        .write(true)
        .open(&seg0)
        .unwrap()
        .set_len(len - 5)
        .unwrap();
    fs::remove_file(dir.path().join("index.dat")).unwrap();
    match FileStore::open_with(dir.path(), options()) {
        Err(OpenError::Corrupted {
            segment: 0, reason, ..
        }) => {
            assert!(reason.contains("not the last"), "{reason}")
        }
        other => panic!("expected corruption, got {other:?}"),
    }
    // a missing middle segment is reported by number, at the start of the missing file
    let seg1 = dir.path().join(format!("{:020}.seg", 1));
    fs::remove_file(&seg1).unwrap();
    let err = FileStore::open_with(dir.path(), options()).unwrap_err();
    assert!(
        matches!(&err, OpenError::Corrupted { file, segment: 1, offset: 0, reason }
            if *file == seg1 && reason.contains("segment file 1 is missing")),
        "{err:?}"
    );
}

#[test]
fn index_missing_or_damaged_is_rebuilt_with_identical_reads() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 20);
    let store = FileStore::open(dir.path()).unwrap();
    assert!(!store.recovery_report().index_rebuilt);
    assert_eq!(
        store.recovery_report().frames_scanned,
        0,
        "the index covers the log"
    );
    let reference = all_events(&store);
    let s1: Vec<_> = store
        .read_stream("s-1", 1)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    drop(store);
    let index = dir.path().join("index.dat");
    type Damage = Box<dyn Fn(&mut Vec<u8>)>;
    let damages: Vec<(&str, Damage)> = vec![
        ("deleted", Box::new(|_| {})),
        ("bit flip", Box::new(|b| b[20] ^= 1)),
        ("truncated", Box::new(|b| b.truncate(b.len() / 2))),
        ("empty", Box::new(|b| b.clear())),
        // a sparse file: read whole, it would take 200 GB of memory
        ("extended to 200 GB", Box::new(|_| {})),
    ];
    for (what, damage) in damages {
        let mut bytes = fs::read(&index).unwrap_or_default();
        if what == "deleted" {
            let _ = fs::remove_file(&index);
        } else if what == "extended to 200 GB" {
            fs::write(&index, b"").unwrap();
            let file = fs::OpenOptions::new().write(true).open(&index).unwrap();
            file.set_len(200 << 30).unwrap();
        } else {
            damage(&mut bytes);
            fs::write(&index, &bytes).unwrap();
        }
        let store = FileStore::open(dir.path()).unwrap();
        assert!(store.recovery_report().index_rebuilt, "{what}");
        assert_eq!(store.recovery_report().frames_scanned, 20, "{what}");
        assert_eq!(all_events(&store), reference, "{what}");
        let again: Vec<_> = store
            .read_stream("s-1", 1)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(again, s1, "{what}");
        // idempotency survives the rebuild: the ids came back from the log
        let retry = store.append(
            "s-0",
            ExpectedVersion::Any,
            vec![NewEvent {
                event_id: reference[0].event_id,
                ..event(0)
            }],
        );
        // the id is one of a two-event append: resent alone it is refused as a duplicate
        // (a retry must resend the whole append), which the rebuilt id map proves
        assert!(
            matches!(&retry, Err(StoreError::DuplicateEventId { event_id, .. }) if *event_id == reference[0].event_id),
            "{what}: {retry:?}"
        );
        drop(store);
    }
}

#[test]
fn preallocated_room_survives_a_crash_and_is_trimmed_at_close() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    for i in 0..10 {
        store
            .append("s-1", ExpectedVersion::Any, vec![event(i)])
            .unwrap();
    }
    let open_len = fs::metadata(segment0(dir.path())).unwrap().len();
    assert_eq!(open_len, 1 << 20, "the active segment grows in 1 MiB steps");
    // a crash now leaves the zero-filled room on disk: copy the directory as it is
    let crashed = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), crashed.path());
    let _ = fs::remove_file(crashed.path().join("index.dat"));
    let reopened = FileStore::open(crashed.path()).unwrap();
    assert_eq!(reopened.recovery_report().torn_tail, None);
    assert_eq!(all_events(&reopened).len(), 10);
    reopened
        .append("s-1", ExpectedVersion::Exact(10), vec![event(10)])
        .unwrap();
    drop(reopened);
    assert_eq!(
        all_events(&FileStore::open(crashed.path()).unwrap()).len(),
        11
    );
    drop(store);
    let closed_len = fs::metadata(segment0(dir.path())).unwrap().len();
    assert!(closed_len < open_len, "a clean close trims the room");
}

#[test]
fn events_after_the_index_are_scanned_on_open() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 5);
    let store = FileStore::open(dir.path()).unwrap();
    for i in 0..3 {
        store
            .append("late-1", ExpectedVersion::Any, vec![event(i)])
            .unwrap();
    }
    // simulate a crash: the index on disk is the one from the clean close before
    let stale_index = fs::read(dir.path().join("index.dat")).unwrap();
    drop(store);
    fs::write(dir.path().join("index.dat"), stale_index).unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    assert!(!store.recovery_report().index_rebuilt);
    assert_eq!(store.recovery_report().frames_scanned, 3);
    assert_eq!(store.stream_version("late-1").unwrap(), 3);
    assert_eq!(all_events(&store).len(), 13);
}

#[test]
fn a_second_writer_is_refused_with_the_holder_named() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    match FileStore::open(dir.path()) {
        Err(OpenError::Locked { holder, .. }) => {
            assert!(holder.contains(&std::process::id().to_string()), "{holder}")
        }
        other => panic!("expected a lock error, got {other:?}"),
    }
    // a read-only open takes no lock and sees what was written
    store
        .append("s-1", ExpectedVersion::Any, vec![event(1)])
        .unwrap();
    let reader = FileStore::open_read_only(dir.path()).unwrap();
    assert_eq!(reader.stream_version("s-1").unwrap(), 1);
    let err = reader
        .append("s-1", ExpectedVersion::Any, vec![event(2)])
        .unwrap_err();
    assert!(matches!(err, StoreError::ReadOnly(_)), "{err:?}");
    drop(store);
    FileStore::open(dir.path()).expect("the lock is released on drop");
}

#[cfg(unix)]
#[test]
fn directory_and_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("store");
    let store = FileStore::open(&dir).unwrap();
    store
        .append("s-1", ExpectedVersion::Any, vec![event(1)])
        .unwrap();
    store.checkpoint().unwrap();
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    for entry in fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(mode(&path), 0o600, "{}", path.display());
    }
}

#[test]
fn a_stale_frame_after_the_tail_is_not_mistaken_for_data() {
    // Cut the log after frame 2, append a different frame 3, then put the old frame 3 back
    // after it: the old bytes pass their checksum but belong to an older position.
    let dir = tempfile::tempdir().unwrap();
    let ends = build(dir.path(), 3);
    let data = fs::read(segment0(dir.path())).unwrap();
    let old_frame3 = data[ends[2] as usize..ends[3] as usize].to_vec();
    fs::OpenOptions::new()
        .write(true)
        .open(segment0(dir.path()))
        .unwrap()
        .set_len(ends[2])
        .unwrap();
    forget_durable_records(dir.path());
    let store = FileStore::open(dir.path()).unwrap();
    store
        .append(
            "s-7",
            ExpectedVersion::Any,
            vec![event(7), event(8), event(9)],
        )
        .unwrap();
    drop(store);
    let mut data = fs::read(segment0(dir.path())).unwrap();
    data.extend_from_slice(&old_frame3);
    fs::write(segment0(dir.path()), &data).unwrap();
    forget_durable_records(dir.path());
    let store = FileStore::open(dir.path()).unwrap();
    assert!(store.recovery_report().torn_tail.is_some());
    assert_eq!(all_events(&store).len(), 7);
}

#[test]
fn commit_times_never_go_backwards_across_a_reopen() {
    // events appended "in the future" (a clock that was ahead): after reopening with the
    // clock back, new commit times still follow them
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    store
        .append("s-1", ExpectedVersion::Any, vec![event(1)])
        .unwrap();
    let first = all_events(&store)[0].timestamp;
    drop(store);
    // move the stored commit time a day ahead by rewriting the frame with a later time
    let future = first + chrono::Duration::days(1);
    let segment = segment0(dir.path());
    let data = fs::read(&segment).unwrap();
    let frame_start = 32;
    let len = u32::from_le_bytes(data[frame_start..frame_start + 4].try_into().unwrap()) as usize;
    let mut frame = data[frame_start..frame_start + 12 + len].to_vec();
    // body: kind u8, synced back varint (1 byte here), position u64, version varint (1
    // byte here), then seconds i64
    let secs_at = 8 + 1 + 1 + 8 + 1;
    frame[secs_at..secs_at + 8].copy_from_slice(&future.timestamp().to_le_bytes());
    let crc = crc32c::crc32c(&frame[8..]);
    frame[4..8].copy_from_slice(&crc.to_le_bytes());
    let mut data = data;
    data[frame_start..frame_start + frame.len()].copy_from_slice(&frame);
    fs::write(&segment, &data).unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    assert_eq!(
        all_events(&store)[0].timestamp.timestamp(),
        future.timestamp()
    );
    store
        .append("s-1", ExpectedVersion::Any, vec![event(2)])
        .unwrap();
    let events = all_events(&store);
    assert!(
        events[1].timestamp >= events[0].timestamp,
        "{} < {}",
        events[1].timestamp,
        events[0].timestamp
    );
}

#[test]
fn a_long_garbage_tail_is_refused_and_repaired() {
    // 8 MiB of pseudo-random bytes after the last frame: the search for a later valid
    // frame tries every offset, and must not re-read the tail for each of them
    let dir = tempfile::tempdir().unwrap();
    let ends = build(dir.path(), 2);
    fs::remove_file(dir.path().join("index.dat")).unwrap();
    let mut data = fs::read(segment0(dir.path())).unwrap();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    data.extend((0..8 << 20).map(|_| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x as u8
    }));
    fs::write(segment0(dir.path()), &data).unwrap();
    // no crash writes garbage: refused, then cut by repair
    let err = FileStore::open(dir.path()).unwrap_err();
    assert!(
        matches!(err, OpenError::Corrupted { offset, .. } if offset == ends[2]),
        "{err}"
    );
    let store = open_repairing(dir.path()).unwrap();
    assert_eq!(
        store.recovery_report().repaired.as_ref().map(|r| r.offset),
        Some(ends[2])
    );
    assert_eq!(all_events(&store).len(), 4);
}

#[test]
fn a_tail_where_every_offset_looks_like_a_large_frame_is_refused_quickly() {
    // 40 MiB of `00 00 00 02` after a clean close: at every fourth offset the leading and
    // the trailing length agree on a 32 MiB frame, so a search for a later frame that
    // proves the tail durable would read and checksum 32 MiB per offset (hours). It is
    // bounded: the open refuses at the tail in seconds, and nothing is cut.
    let dir = tempfile::tempdir().unwrap();
    let ends = build(dir.path(), 2);
    let mut data = fs::read(segment0(dir.path())).unwrap();
    data.extend(std::iter::repeat_n([0u8, 0, 0, 2], 10 << 20).flatten());
    fs::write(segment0(dir.path()), &data).unwrap();
    let started = std::time::Instant::now();
    let err = FileStore::open(dir.path()).unwrap_err();
    assert!(
        matches!(&err, OpenError::Corrupted { offset, .. } if *offset == ends[2]),
        "{err}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "the open took {:?}",
        started.elapsed()
    );
    assert_eq!(
        fs::metadata(segment0(dir.path())).unwrap().len(),
        data.len() as u64
    );
    let read_only = FileStore::open_read_only(dir.path()).unwrap_err();
    assert!(
        matches!(read_only, OpenError::Corrupted { .. }),
        "{read_only}"
    );
}

/// A closed store of sealed segments (4 KiB each, one event per append, streams
/// interleaved): the number of its last segment, whose predecessor is sealed, and its
/// events.
fn store_of_sealed_segments(dir: &Path) -> (u64, Vec<RecordedEvent>) {
    let options = FileStoreOptions {
        segment_size: 4096,
        preallocate: 0,
        ..FileStoreOptions::default()
    };
    let store = FileStore::open_with(dir, options).unwrap();
    for i in 0..120u64 {
        store
            .append(
                &format!("s-{}", i % 5),
                ExpectedVersion::Any,
                vec![event(i)],
            )
            .unwrap();
    }
    let events = all_events(&store);
    drop(store);
    let last = (0..)
        .take_while(|&n| dir.join(format!("{n:020}.seg")).exists())
        .last()
        .unwrap();
    assert!(last >= 2, "several segments");
    assert!(
        dir.join(format!("{:020}.idx", last - 1)).exists(),
        "the segment before the last is sealed"
    );
    (last, events)
}

#[test]
fn a_last_segment_emptied_after_its_predecessor_was_sealed_is_damage_not_a_leftover() {
    // The segment before the last is sealed only once the last had a published frame,
    // and the last's header was synced before that frame: a last segment cut to nothing
    // or to zeros is damage, whatever PUBLISHED and index.dat say or do not say. It was
    // removed as the leftover of a crash while creating it, and the store then appended
    // to a segment that no longer existed.
    for (what, keep_index) in [("index.dat kept", true), ("index.dat deleted", false)] {
        for cut in [0usize, 20, 32] {
            let dir = tempfile::tempdir().unwrap();
            let (last, events) = store_of_sealed_segments(dir.path());
            let path = dir.path().join(format!("{last:020}.seg"));
            fs::write(&path, vec![0u8; cut]).unwrap();
            fs::write(dir.path().join("PUBLISHED"), b"garbage").unwrap();
            if !keep_index {
                fs::remove_file(dir.path().join("index.dat")).unwrap();
            }
            let err = FileStore::open(dir.path()).unwrap_err();
            assert!(
                matches!(&err, OpenError::Corrupted { segment, .. } if *segment == last),
                "{what}, cut to {cut}: {err}"
            );
            assert_eq!(fs::metadata(&path).unwrap().len(), cut as u64, "{what}");
            assert!(FileStore::open_read_only(dir.path()).is_err(), "{what}");
            // a repair empties the segment to a new header, keeps the sealed ones, and the
            // store appends and reopens
            let store = open_repairing(dir.path()).unwrap();
            let repair = store.recovery_report().repaired.clone().unwrap();
            assert_eq!(
                (repair.segment, repair.offset),
                (last, 0),
                "{what}: {repair:?}"
            );
            assert!(repair.segments_removed.is_empty(), "{what}");
            let kept = all_events(&store);
            assert!(!kept.is_empty() && kept.len() < events.len(), "{what}");
            assert_eq!(kept[..], events[..kept.len()], "{what}");
            store
                .append("s-new", ExpectedVersion::NoStream, vec![event(1000)])
                .unwrap();
            drop(store);
            let store = FileStore::open(dir.path()).unwrap();
            assert_eq!(all_events(&store).len(), kept.len() + 1, "{what}");
        }
    }
}

#[test]
fn a_deleted_last_segment_is_found_missing_by_the_sealed_index_before_it() {
    // with index.dat deleted and PUBLISHED damaged, nothing but the sealed index of the
    // segment before it proves that the last segment existed
    for (what, records_kept) in [("records kept", true), ("records gone", false)] {
        let dir = tempfile::tempdir().unwrap();
        let (last, events) = store_of_sealed_segments(dir.path());
        fs::remove_file(dir.path().join(format!("{last:020}.seg"))).unwrap();
        if !records_kept {
            fs::remove_file(dir.path().join("index.dat")).unwrap();
            fs::write(dir.path().join("PUBLISHED"), b"garbage").unwrap();
        }
        let err = FileStore::open(dir.path()).unwrap_err();
        assert!(
            matches!(&err, OpenError::Corrupted { segment, .. } if *segment == last),
            "{what}: {err}"
        );
        assert!(FileStore::open_read_only(dir.path()).is_err(), "{what}");
        let report = es_store_fs::tools::verify(dir.path(), &|_| {});
        assert!(report.is_err(), "{what}: verify passes");
        // a repair opens with what is left, and the store goes on
        let store = open_repairing(dir.path()).unwrap();
        assert!(store.recovery_report().repaired.is_some(), "{what}");
        let kept = all_events(&store);
        assert_eq!(kept[..], events[..kept.len()], "{what}");
        store
            .append("s-new", ExpectedVersion::NoStream, vec![event(1000)])
            .unwrap();
        drop(store);
        let store = FileStore::open(dir.path()).unwrap();
        assert_eq!(all_events(&store).len(), kept.len() + 1, "{what}");
        drop(store);
        es_store_fs::tools::verify(dir.path(), &|_| {}).unwrap();
    }
}

#[test]
fn a_damaged_header_of_the_segment_the_index_file_covers_is_reported() {
    // index.dat covers part of the last segment, so the scan starts after its header;
    // the header is checked all the same (it went unnoticed until a rebuild)
    for at in [0usize, 8, 12, 20] {
        let dir = tempfile::tempdir().unwrap();
        let (last, _) = store_of_sealed_segments(dir.path());
        let path = dir.path().join(format!("{last:020}.seg"));
        let mut bytes = fs::read(&path).unwrap();
        bytes[at] ^= 0x10;
        fs::write(&path, &bytes).unwrap();
        let err = FileStore::open(dir.path()).unwrap_err();
        assert!(
            matches!(&err, OpenError::Corrupted { segment, offset: 0, .. } if *segment == last),
            "byte {at}: {err}"
        );
        assert_eq!(fs::read(&path).unwrap(), bytes, "nothing rewritten");
    }
}

// ---------------------------------------------------------------------------------------
// Recovery cuts only what it can prove was never acknowledged.

const SIM_DIR: &str = "/db";

fn sim_options(fs: &SimFs) -> FileStoreOptions {
    FileStoreOptions {
        vfs: Arc::new(fs.clone()),
        ..FileStoreOptions::default()
    }
}

fn sim_segment(no: u64) -> PathBuf {
    Path::new(SIM_DIR).join(format!("{no:020}.seg"))
}

/// A store of `appends` one-event appends, acknowledged with fsync, left by a process
/// crash (no clean close, so no index file covers the last segment).
fn crashed_store(appends: u64) -> (SimFs, Vec<usize>) {
    let fs = SimFs::new(7);
    let store = FileStore::open_with(SIM_DIR, sim_options(&fs)).unwrap();
    for i in 0..appends {
        let stream = format!("s-{}", i % 7);
        store
            .append(&stream, ExpectedVersion::Any, vec![event(i)])
            .unwrap();
    }
    let image = fs.process_crash_image();
    drop(store);
    let starts = common::frame_starts(&image.read_file(sim_segment(0)).unwrap());
    assert_eq!(starts.len() as u64, appends + 1);
    (image, starts)
}

/// The sealing thread records the stream table after the segments it sealed, so that an
/// open after a crash reads neither their frames nor their stream tables: it scans the
/// unsealed segment only, and holds every acknowledged event.
#[test]
fn after_a_crash_the_stream_table_recorded_at_the_last_seal_is_used() {
    let fs = SimFs::new(11);
    let options = || FileStoreOptions {
        segment_size: 4096,
        preallocate: 0,
        ..sim_options(&fs)
    };
    let store = FileStore::open_with(SIM_DIR, options()).unwrap();
    let index = Path::new(SIM_DIR).join("index.dat");
    let mut appended = Vec::new();
    for i in 0..300u64 {
        let stream = format!("s-{}", i % 7);
        let r = store
            .append(&stream, ExpectedVersion::Any, vec![event(i)])
            .unwrap();
        appended.push((stream, r.first_version));
    }
    // the last roll's sealing runs in the background
    let files = |image: &SimFs, ext: &str| {
        image
            .files()
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == ext))
            .count() as u64
    };
    let started = std::time::Instant::now();
    let image = loop {
        let image = fs.process_crash_image();
        if files(&image, "idx") + 1 == files(&image, "seg") && image.read_file(&index).is_some() {
            break image;
        }
        assert!(started.elapsed().as_secs() < 30, "sealing never finished");
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    drop(store);
    let last = image
        .read_file(sim_segment(files(&image, "seg") - 1))
        .unwrap();
    let frames_in_active = common::frame_starts(&last).len() as u64 - 1;
    let reopened = FileStore::open_with(
        SIM_DIR,
        FileStoreOptions {
            segment_size: 4096,
            preallocate: 0,
            ..sim_options(&image)
        },
    )
    .unwrap();
    assert!(!reopened.recovery_report().index_rebuilt);
    assert_eq!(reopened.recovery_report().sealed_tables_read, 0);
    assert!(
        reopened.recovery_report().frames_scanned <= frames_in_active,
        "{} frames scanned, {frames_in_active} in the unsealed segment",
        reopened.recovery_report().frames_scanned
    );
    let events = all_events(&reopened);
    assert_eq!(events.len(), appended.len());
    for (e, (stream, version)) in events.iter().zip(&appended) {
        assert_eq!((&e.stream_id, e.stream_version), (stream, *version));
    }
    for s in 0..7 {
        let id = format!("s-{s}");
        let n = appended.iter().filter(|(st, _)| *st == id).count() as u64;
        assert_eq!(reopened.stream_version(&id).unwrap(), n);
        assert_eq!(stream(&reopened, &id).len() as u64, n);
    }
}

fn assert_refused_at(fs: &SimFs, offset: usize, what: &str) {
    let before = fs.read_file(sim_segment(0)).unwrap();
    for options in [
        sim_options(fs),
        FileStoreOptions {
            read_only: true,
            ..sim_options(fs)
        },
    ] {
        match FileStore::open_with(SIM_DIR, options) {
            Err(OpenError::Corrupted {
                segment: 0,
                offset: at,
                file,
                ..
            }) if at == offset as u64 && file == sim_segment(0) => {}
            Err(e) => panic!("{what}: expected damage at offset {offset}, got {e}"),
            Ok(s) => panic!("{what}: opened, {:?}", s.recovery_report()),
        }
    }
    assert!(
        fs.read_file(sim_segment(0)).unwrap() == before,
        "{what}: the segment was changed"
    );
}

/// Zeros over acknowledged frames that no index covers (4 KiB, or only 32 bytes) are
/// damage, even when they look like the zero-filled room after the log: later frames
/// prove the bytes were durable. Nothing is cut.
#[test]
fn zeroed_acknowledged_frames_past_the_index_are_damage_not_a_torn_tail() {
    let (image, starts) = crashed_store(600);
    let last = starts.len() - 2;
    for (first_frame, len) in [(10, 4096), (300, 4096), (last - 3, 32), (1, 32), (450, 100)] {
        let fs = image.process_crash_image();
        let mut bytes = fs.read_file(sim_segment(0)).unwrap();
        let from = starts[first_frame] + 5;
        bytes[from..from + len].fill(0);
        fs.write_file(sim_segment(0), &bytes);
        assert_refused_at(&fs, starts[first_frame], &format!("{len} zeros at {from}"));
        // repair is the user's explicit choice, and cuts there
        let store = FileStore::open_with(
            SIM_DIR,
            FileStoreOptions {
                repair: true,
                ..sim_options(&fs)
            },
        )
        .unwrap();
        assert_eq!(store.head_position().unwrap(), first_frame as u64);
    }
}

/// The same after a clean close with `index.dat` deleted (which is always allowed).
#[test]
fn zeroed_frames_are_damage_after_the_index_file_is_deleted() {
    let fs = SimFs::new(3);
    let store = FileStore::open_with(SIM_DIR, sim_options(&fs)).unwrap();
    for i in 0..200 {
        store
            .append("s-1", ExpectedVersion::Any, vec![event(i)])
            .unwrap();
    }
    store.close().unwrap();
    es_store_fs::vfs::Vfs::remove_file(&fs, &Path::new(SIM_DIR).join("index.dat")).unwrap();
    let starts = common::frame_starts(&fs.read_file(sim_segment(0)).unwrap());
    let mut bytes = fs.read_file(sim_segment(0)).unwrap();
    bytes[starts[100]..starts[100] + 4096].fill(0);
    fs.write_file(sim_segment(0), &bytes);
    assert_refused_at(&fs, starts[100], "zeros after a clean close");
}

/// A bit flipped in the last frame of a store left by a crash (no index covers it) is
/// damage: a crash leaves zeros or nothing where a write was lost, never a flipped bit.
#[test]
fn a_flipped_bit_in_the_last_frame_is_damage_not_a_torn_tail() {
    let (image, starts) = crashed_store(20);
    let last = starts[starts.len() - 2];
    let end = starts[starts.len() - 1];
    for at in [last + 9, last + 30, (last + end) / 2, end - 6] {
        let fs = image.process_crash_image();
        let mut bytes = fs.read_file(sim_segment(0)).unwrap();
        bytes[at] ^= 0x04;
        fs.write_file(sim_segment(0), &bytes);
        assert_refused_at(&fs, last, &format!("bit flipped at {at}"));
    }
}

/// A failed read during recovery is an I/O error: nothing is cut, and once the disk
/// reads again every acknowledged event is there.
#[test]
fn a_failed_read_during_recovery_cuts_nothing() {
    let (image, _) = crashed_store(300);
    let fs = image.process_crash_image();
    let before = fs.read_file(sim_segment(0)).unwrap();
    fs.fail_persistently(SimOp::Read, std::io::ErrorKind::Other, Some(".seg"));
    match FileStore::open_with(SIM_DIR, sim_options(&fs)) {
        Err(OpenError::Io { path, .. }) => assert_eq!(path, sim_segment(0)),
        Err(e) => panic!("expected an I/O error, got {e}"),
        Ok(s) => panic!("opened, {:?}", s.recovery_report()),
    }
    fs.clear_faults();
    assert!(fs.read_file(sim_segment(0)).unwrap() == before);
    let store = FileStore::open_with(SIM_DIR, sim_options(&fs)).unwrap();
    assert_eq!(store.head_position().unwrap(), 300);
    drop(store);

    // one transient failure at every read recovery makes: an I/O error or a clean open
    // with every event, never damage and never fewer events
    let mut failures = 0;
    for skip in 0..64 {
        let fs = image.process_crash_image();
        fs.fail(SimOp::Read, skip, std::io::ErrorKind::Other, Some(".seg"));
        match FileStore::open_with(SIM_DIR, sim_options(&fs)) {
            Ok(store) => assert_eq!(store.head_position().unwrap(), 300, "skip {skip}"),
            Err(OpenError::Io { .. }) => failures += 1,
            Err(e) => panic!("skip {skip}: {e}"),
        }
        fs.clear_faults();
        let store = FileStore::open_with(SIM_DIR, sim_options(&fs)).unwrap();
        assert_eq!(store.head_position().unwrap(), 300, "skip {skip}, reopened");
    }
    assert!(failures > 0, "the fault hit recovery's reads");
}

/// A failed read of a frame is an I/O error naming the file and offset, not damage.
#[test]
fn a_failed_read_is_an_io_error_not_corruption() {
    let fs = SimFs::new(5);
    // nothing kept in memory: every read goes to the file
    let options = FileStoreOptions {
        recent_cache: 0,
        ..sim_options(&fs)
    };
    let store = FileStore::open_with(SIM_DIR, options).unwrap();
    for i in 0..10 {
        store
            .append("s-1", ExpectedVersion::Any, vec![event(i)])
            .unwrap();
    }
    fs.fail_persistently(SimOp::Read, std::io::ErrorKind::Other, Some(".seg"));
    let err = store.read_all(1).unwrap().next().unwrap().unwrap_err();
    match &err {
        StoreError::Io(e) => assert!(e.to_string().contains(".seg` at offset"), "{e}"),
        other => panic!("expected an I/O error, got {other}"),
    }
    let err = store.read_stream("s-1", 1).unwrap().next().unwrap();
    assert!(matches!(err, Err(StoreError::Io(_))), "{err:?}");
    fs.clear_faults();
    assert_eq!(store.read_all(1).unwrap().count(), 10);
}

/// The newest bytes of the log are kept in memory as written, and read back into memory
/// at open: reads of recent events do not touch the file, older ones still do (and report
/// its failures), and a frame damaged on disk before the open is found damaged in memory
/// too.
#[test]
fn recent_events_are_read_from_memory_and_older_ones_from_the_file() {
    let fs = SimFs::new(6);
    let options = || FileStoreOptions {
        recent_cache: 1024,
        ..sim_options(&fs)
    };
    let store = FileStore::open_with(SIM_DIR, options()).unwrap();
    for i in 0..20 {
        store
            .append(
                &format!("s-{}", i % 2),
                ExpectedVersion::Any,
                vec![event(i)],
            )
            .unwrap();
    }
    let check = |store: &FileStore| {
        fs.fail_persistently(SimOp::Read, std::io::ErrorKind::Other, Some(".seg"));
        // the newest events of each stream come from memory
        let newest: Vec<_> = store
            .read_stream("s-1", 10)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(newest.len(), 1);
        assert_eq!(newest[0].payload, event(19).payload);
        let tail: Vec<_> = store
            .read_all(20)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(tail.len(), 1);
        // the first ones no longer fit in 1 KiB: read from the file, which fails
        let err = store.read_stream("s-0", 1).unwrap().next().unwrap();
        assert!(matches!(err, Err(StoreError::Io(_))), "{err:?}");
        let err = store.read_all(1).unwrap().next().unwrap();
        assert!(matches!(err, Err(StoreError::Io(_))), "{err:?}");
        fs.clear_faults();
        let all: Vec<_> = store
            .read_all(1)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(all.len(), 20);
        for (i, e) in all.iter().enumerate() {
            assert_eq!(e.payload, event(i as u64).payload);
        }
    };
    check(&store);
    store.close().unwrap();
    // read back at open
    let store = FileStore::open_with(SIM_DIR, options()).unwrap();
    check(&store);
    let last = store.read_all(20).unwrap().next().unwrap().unwrap();
    store.close().unwrap();
    // a byte of the last frame flipped on disk: the copy read at open fails its checksum
    let path = sim_segment(0);
    let mut bytes = fs.read_file(&path).unwrap();
    let at = bytes.windows(7).position(|w| w == br#""n":19,"#).unwrap();
    bytes[at + 5] ^= 0x01;
    fs.write_file(&path, &bytes);
    let store = FileStore::open_with(SIM_DIR, options());
    match store {
        Err(e) => assert!(e.to_string().contains("00000000000000000000.seg"), "{e}"),
        Ok(store) => {
            let read = store.read_all(20).unwrap().next().unwrap();
            assert!(
                matches!(read, Err(StoreError::Corrupted(_))),
                "{read:?} (was {last:?})"
            );
        }
    }
}

/// When an intact index file proves the log held more than is left (the last segment
/// cut short or deleted), the open fails; nothing is rebuilt over the loss.
#[test]
fn losses_that_the_index_proves_are_refused() {
    let build = || {
        let fs = SimFs::new(9);
        let options = FileStoreOptions {
            segment_size: 4096,
            ..sim_options(&fs)
        };
        let store = FileStore::open_with(SIM_DIR, options).unwrap();
        for i in 0..100 {
            store
                .append("s-1", ExpectedVersion::Any, vec![event(i)])
                .unwrap();
        }
        store.close().unwrap();
        fs
    };
    let open = |fs: &SimFs| {
        FileStore::open_with(
            SIM_DIR,
            FileStoreOptions {
                segment_size: 4096,
                ..sim_options(fs)
            },
        )
    };
    let segments = build()
        .files()
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .count() as u64;
    assert!(segments >= 3);
    let last = sim_segment(segments - 1);

    // the last segment cut short, by a little or to its header
    for keep in [1usize, 100, 32] {
        let fs = build();
        let bytes = fs.read_file(&last).unwrap();
        fs.write_file(&last, &bytes[..bytes.len().saturating_sub(keep).max(32)]);
        let err = open(&fs).map(|_| ()).unwrap_err();
        assert!(
            matches!(err, OpenError::Corrupted { segment, .. } if segment == segments - 1),
            "cut by {keep}: {err}"
        );
    }
    // the last segment deleted
    let fs = build();
    es_store_fs::vfs::Vfs::remove_file(&fs, &last).unwrap();
    let err = open(&fs).map(|_| ()).unwrap_err();
    assert!(
        matches!(err, OpenError::Corrupted { segment, .. } if segment == segments - 1),
        "deleted: {err}"
    );
    // the last frame damaged: the index keeps every event known; reading it reports it
    let fs = build();
    let mut bytes = fs.read_file(&last).unwrap();
    let n = bytes.len();
    bytes[n - 20] ^= 1;
    fs.write_file(&last, &bytes);
    let store = open(&fs).unwrap();
    assert_eq!(store.head_position().unwrap(), 100);
    let read: Result<Vec<_>, _> = store.read_all(1).unwrap().collect();
    assert!(matches!(read, Err(StoreError::Corrupted(_))), "{read:?}");
}

/// A file named like the first segment that this store did not create (text, random
/// bytes, zeros) is refused and left as it is: in a directory that is not a store, and
/// inside a store.
#[test]
fn a_file_named_like_a_segment_that_is_not_one_is_left_alone() {
    let contents: Vec<(&str, Vec<u8>)> = vec![
        ("text", b"# notes\n".repeat(640)),
        (
            "random",
            (0..5000u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
                .collect(),
        ),
        ("zeros", vec![0; 5000]),
        (
            "a header's worth of text",
            b"this is not a segment file at all".to_vec(),
        ),
    ];
    for (what, bytes) in contents {
        let dir = tempfile::tempdir().unwrap();
        fs::write(segment0(dir.path()), &bytes).unwrap();
        let err = FileStore::open(dir.path()).map(|_| ()).unwrap_err();
        assert!(
            matches!(&err, OpenError::NotAStore { path, reason }
                if path == dir.path() && reason.contains("00000000000000000000.seg")),
            "{what}: {err}"
        );
        assert_eq!(fs::read(segment0(dir.path())).unwrap(), bytes, "{what}");
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "{what}: nothing added"
        );

        // inside a store: damage, named
        let dir = tempfile::tempdir().unwrap();
        drop(FileStore::open(dir.path()).unwrap());
        fs::remove_file(dir.path().join("index.dat")).unwrap();
        fs::write(segment0(dir.path()), &bytes).unwrap();
        let err = FileStore::open(dir.path()).map(|_| ()).unwrap_err();
        assert!(
            matches!(&err, OpenError::Corrupted { file, .. } if *file == segment0(dir.path())),
            "{what}, in a store: {err}"
        );
        assert_eq!(fs::read(segment0(dir.path())).unwrap(), bytes, "{what}");
    }
    // what a crash while creating segment 0 leaves (a prefix of its header) is redone
    let dir = tempfile::tempdir().unwrap();
    drop(FileStore::open(dir.path()).unwrap());
    let header = fs::read(segment0(dir.path())).unwrap()[..32].to_vec();
    for keep in [0, 5, 31] {
        fs::write(segment0(dir.path()), &header[..keep]).unwrap();
        let store = FileStore::open(dir.path()).unwrap();
        assert_eq!(store.recovery_report().removed_empty_segment, Some(0));
    }
}

/// A store is created only in a missing or empty directory; a file, or a directory of
/// other things, is refused before anything is written there. A store written before
/// markers existed (no `ES-STORE`, a valid first segment) is adopted.
#[test]
fn only_an_empty_or_missing_directory_becomes_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let notes = dir.path().join("notes");
    fs::create_dir(&notes).unwrap();
    fs::write(notes.join("README.md"), "# my notes\n").unwrap();
    let err = FileStore::open(&notes).map(|_| ()).unwrap_err();
    assert!(
        matches!(&err, OpenError::NotAStore { reason, .. } if reason.contains("README.md")),
        "{err}"
    );
    assert_eq!(
        fs::read_dir(&notes).unwrap().count(),
        1,
        "nothing was added"
    );

    let file = dir.path().join("a-file");
    fs::write(&file, "x").unwrap();
    let err = FileStore::open(&file).map(|_| ()).unwrap_err();
    assert!(err.to_string().contains("is a file"), "{err}");

    let missing = dir.path().join("new").join("store");
    let store = FileStore::open(&missing).unwrap();
    store
        .append("s-1", ExpectedVersion::NoStream, vec![event(1)])
        .unwrap();
    drop(store);
    assert!(missing.join("ES-STORE").exists());
    let err = FileStore::open_read_only(dir.path().join("nothing"))
        .map(|_| ())
        .unwrap_err();
    assert!(matches!(err, OpenError::NotAStore { .. }), "{err}");

    // written before markers existed: adopted
    fs::remove_file(missing.join("ES-STORE")).unwrap();
    let store = FileStore::open(&missing).unwrap();
    assert_eq!(store.head_position().unwrap(), 1);
    drop(store);
    assert!(missing.join("ES-STORE").exists());

    // a marker of a newer format
    fs::write(
        missing.join("ES-STORE"),
        "es-store-fs event store\nformat 99\n",
    )
    .unwrap();
    let err = FileStore::open(&missing).map(|_| ()).unwrap_err();
    assert!(
        matches!(err, OpenError::NewerFormat { found: 99, .. }),
        "{err}"
    );
}

/// A segment written by a newer format is its own error, not damage.
#[test]
fn a_segment_of_a_newer_format_is_refused_as_such() {
    let dir = tempfile::tempdir().unwrap();
    drop(FileStore::open(dir.path()).unwrap());
    let mut bytes = fs::read(segment0(dir.path())).unwrap();
    bytes[8..12].copy_from_slice(&(es_store_fs::format::FORMAT_VERSION + 1).to_le_bytes());
    let crc = crc32c::crc32c(&bytes[..28]);
    bytes[28..32].copy_from_slice(&crc.to_le_bytes());
    fs::write(segment0(dir.path()), &bytes).unwrap();
    fs::remove_file(dir.path().join("index.dat")).unwrap();
    let err = FileStore::open(dir.path()).map(|_| ()).unwrap_err();
    assert!(
        matches!(err, OpenError::NewerFormat { found, .. } if found == es_store_fs::format::FORMAT_VERSION + 1),
        "{err}"
    );
    assert!(err.to_string().contains("newer version"), "{err}");
}

/// Deleting `LOCK` while a writer runs does not let a second writer in: the directory
/// itself is locked.
#[test]
fn deleting_the_lock_file_does_not_admit_a_second_writer() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    fs::remove_file(dir.path().join("LOCK")).unwrap();
    let err = FileStore::open(dir.path()).map(|_| ()).unwrap_err();
    assert!(matches!(err, OpenError::Locked { .. }), "{err}");
    store
        .append("s-1", ExpectedVersion::NoStream, vec![event(1)])
        .unwrap();
    drop(store);
    let store = FileStore::open(dir.path()).unwrap();
    assert_eq!(store.head_position().unwrap(), 1);
}

/// A second open in the same process says so, instead of naming our own pid as another
/// writer.
#[test]
fn a_second_open_in_this_process_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let _store = FileStore::open(dir.path()).unwrap();
    let err = FileStore::open(dir.path()).map(|_| ()).unwrap_err();
    assert!(err.to_string().contains("this process"), "{err}");
}

/// With `Periodic` durability, `close` releases the lock before it returns.
#[test]
fn periodic_close_releases_the_lock_before_returning() {
    let dir = tempfile::tempdir().unwrap();
    let options = || FileStoreOptions {
        durability: es_store_fs::Durability::Periodic(std::time::Duration::from_millis(1)),
        ..FileStoreOptions::default()
    };
    for i in 0..300 {
        let store = FileStore::open_with(dir.path(), options())
            .unwrap_or_else(|e| panic!("reopen {i}: {e}"));
        store
            .append("s-1", ExpectedVersion::Any, vec![event(i)])
            .unwrap();
        store.close().unwrap();
    }
}

/// The race of a read-only open with a writer that rolls into a new segment and writes
/// `index.dat` between the reader's reads of `PUBLISHED` and of `index.dat`: the index
/// describes a segment past the end the reader stops at, and was taken as proof that the
/// segment had gone missing.
#[test]
fn a_read_only_open_ignores_an_index_file_written_after_the_end_it_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open_with(
        dir.path(),
        FileStoreOptions {
            segment_size: 4096,
            preallocate: 0,
            ..FileStoreOptions::default()
        },
    )
    .unwrap();
    let segment = |n: u64| dir.path().join(format!("{n:020}.seg"));
    let mut i = 0;
    while !segment(1).exists() {
        store
            .append("s", ExpectedVersion::Any, vec![event(i)])
            .unwrap();
        i += 1;
    }
    // what the reader read of PUBLISHED: an end in segment 1
    let published = fs::read(dir.path().join("PUBLISHED")).unwrap();
    let acknowledged = store.head_position().unwrap();
    // the writer rolls into segment 2 and writes its index file
    while !segment(2).exists() {
        store
            .append("s", ExpectedVersion::Any, vec![event(i)])
            .unwrap();
        i += 1;
    }
    store.checkpoint().unwrap();
    fs::write(dir.path().join("PUBLISHED"), &published).unwrap();
    let reader = FileStore::open_read_only(dir.path()).unwrap();
    let seen = all_events(&reader);
    assert!(
        seen.len() as u64 >= acknowledged,
        "{} < {acknowledged}",
        seen.len()
    );
    for (n, e) in seen.iter().enumerate() {
        assert_eq!(e.position, n as u64 + 1);
    }
    drop(reader);
    // so does a verification: the index is newer than the end it checks, not damage
    let report = es_store_fs::tools::verify(dir.path(), &|_| {})
        .unwrap_or_else(|e| panic!("verify beside the writer: {e}"));
    assert!(
        matches!(report.index, es_store_fs::tools::IndexStatus::Newer),
        "{:?}",
        report.index
    );
    drop(store);
}

/// Read-only opens beside a live writer never fail on the writer's tail and see only
/// what it acknowledged.
#[test]
fn read_only_opens_beside_a_live_writer_see_only_acknowledged_appends() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        FileStore::open_with(
            dir.path(),
            FileStoreOptions {
                segment_size: 64 * 1024,
                ..FileStoreOptions::default()
            },
        )
        .unwrap(),
    );
    let acked = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..2)
        .map(|t| {
            let (store, acked, stop) = (store.clone(), acked.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let r = store
                        .append(&format!("w-{t}"), ExpectedVersion::Any, vec![event(i)])
                        .unwrap();
                    acked.fetch_max(r.last_position, std::sync::atomic::Ordering::SeqCst);
                    i += 1;
                }
            })
        })
        .collect();
    for round in 0..60 {
        let reader =
            FileStore::open_read_only(dir.path()).unwrap_or_else(|e| panic!("round {round}: {e}"));
        let seen = reader.head_position().unwrap();
        let acked_now = acked.load(std::sync::atomic::Ordering::SeqCst);
        // an append is published before its appender records it: allow the groups in
        // flight
        assert!(
            seen <= acked_now + 64,
            "round {round}: saw {seen}, acked {acked_now}"
        );
        let events: Vec<_> = reader
            .read_all(1)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_eq!(events.len() as u64, seen);
        let report = es_store_fs::tools::verify(dir.path(), &|_| {})
            .unwrap_or_else(|e| panic!("round {round}, verify: {e}"));
        assert!(report.events >= seen);
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for w in writers {
        w.join().unwrap();
    }
}

/// While the disk stays full, failed appends leave nothing behind in the writer.
#[test]
fn failed_appends_on_a_full_disk_leave_nothing_behind() {
    let fs = SimFs::new(2);
    let store = FileStore::open_with(
        SIM_DIR,
        FileStoreOptions {
            preallocate: 0,
            ..sim_options(&fs)
        },
    )
    .unwrap();
    store
        .append("s-1", ExpectedVersion::Any, vec![event(0)])
        .unwrap();
    fs.set_capacity(Some(fs.used_bytes()));
    for i in 0..2000 {
        let err = store
            .append("s-1", ExpectedVersion::Any, vec![event(i)])
            .unwrap_err();
        assert!(matches!(err, StoreError::Io(_)), "{err}");
    }
    assert_eq!(store.failures_held(), 0);
    fs.set_capacity(None);
    store
        .append("s-1", ExpectedVersion::Exact(1), vec![event(1)])
        .unwrap();
}

/// `es-store verify` agrees with what an open would do: a flipped bit in the last frame
/// of a cleanly closed store fails it; `repair --dry-run` says what a repair would drop
/// and changes nothing; `repair` then drops exactly that.
#[test]
fn the_tool_verifies_like_an_open_and_repairs_on_request() {
    let tool = env!("CARGO_BIN_EXE_es-store");
    let dir = tempfile::tempdir().unwrap();
    let ends = build(dir.path(), 5);
    let s = dir.path().to_str().unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(tool)
            .args(args)
            .output()
            .unwrap()
    };
    let ok = run(&["verify", s]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );

    let mut bytes = fs::read(segment0(dir.path())).unwrap();
    let at = (ends[4] + 20) as usize;
    bytes[at] ^= 0x01;
    fs::write(segment0(dir.path()), &bytes).unwrap();
    let bad = run(&["verify", s]);
    let out = String::from_utf8_lossy(&bad.stdout);
    assert!(!bad.status.success(), "{out}");
    assert!(out.contains(&format!("at offset {}", ends[4])), "{out}");

    let dry = run(&["--json", "repair", "--dry-run", s]);
    assert!(dry.status.success());
    let report: serde_json::Value = serde_json::from_slice(&dry.stdout).unwrap();
    assert_eq!(report["repaired"]["offset"], ends[4]);
    assert_eq!(report["repaired"]["bytes_dropped"], ends[5] - ends[4]);
    assert_eq!(
        fs::read(segment0(dir.path())).unwrap(),
        bytes,
        "a dry run changes nothing"
    );

    let repair = run(&["repair", s]);
    assert!(repair.status.success());
    let after = run(&["verify", s]);
    assert!(
        after.status.success(),
        "{}",
        String::from_utf8_lossy(&after.stdout)
    );
    let store = FileStore::open(dir.path()).unwrap();
    assert_eq!(all_events(&store).len(), 8);
}

/// A small deterministic generator for the damage campaign.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// One damage to one file of a store: what the adversary did.
fn damage(rng: &mut Rng, bytes: &mut Vec<u8>) -> String {
    let len = bytes.len() as u64;
    if len == 0 {
        return "nothing (empty file)".into();
    }
    match rng.below(6) {
        0 => {
            let n = [32, 100, 512, 4096, 8192][rng.below(5) as usize].min(len);
            let at = rng.below(len - n + 1) as usize;
            bytes[at..at + n as usize].fill(0);
            format!("{n} zeros at {at}")
        }
        1 => {
            let at = rng.below(len) as usize;
            bytes[at] ^= 1 << rng.below(8);
            format!("a bit flipped at {at}")
        }
        2 => {
            let n = (1 + rng.below(64)).min(len);
            let at = rng.below(len - n + 1) as usize;
            for b in &mut bytes[at..at + n as usize] {
                *b = rng.next() as u8;
            }
            format!("{n} random bytes at {at}")
        }
        3 => {
            let keep = rng.below(len);
            bytes.truncate(keep as usize);
            format!("cut to {keep} bytes")
        }
        4 => {
            let n = 1 + rng.below(200);
            bytes.extend((0..n).map(|_| rng.next() as u8));
            format!("{n} random bytes appended")
        }
        _ => {
            let n = 1 + rng.below(4);
            for _ in 0..n {
                let at = rng.below(len) as usize;
                bytes[at] = bytes[at].wrapping_add(1 + rng.below(255) as u8);
            }
            format!("{n} bytes changed")
        }
    }
}

/// The damage campaign: stores written with acknowledged appends (left by a process
/// crash, or closed cleanly), one damage to one file (a segment, the index file or the
/// published record: zeros, flipped bits, random bytes, a cut, bytes appended, or the
/// file deleted). The open either refuses with a typed error and changes nothing, or
/// opens with every acknowledged event readable and unchanged (a read may report damage
/// in frames the index covers, never return something else). Silent loss: never. And
/// `verify` agrees: it fails whenever the open refuses or a read finds damage.
#[test]
fn damage_anywhere_is_refused_or_reported_and_never_silently_cut() {
    let cases = common::scale(300, 20_000);
    let (mut refused, mut intact, mut reported, mut torn) = (0u64, 0u64, 0u64, 0u64);
    for case in 0..cases {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (u64::from(case) << 20 | 1));
        let fs = SimFs::new(u64::from(case));
        let options = |fs: &SimFs| FileStoreOptions {
            segment_size: [4096, 16 * 1024, 1 << 20][case as usize % 3],
            preallocate: [0, 4096, 1 << 20][(case as usize / 3) % 3],
            ..sim_options(fs)
        };
        let store = FileStore::open_with(SIM_DIR, options(&fs)).unwrap();
        let mut acked = Vec::new();
        for i in 0..(20 + rng.below(200)) {
            let stream = format!("s-{}", rng.below(5));
            let events: Vec<_> = (0..1 + rng.below(3))
                .map(|k| common::event(&stream, i * 10 + k, 20 + rng.below(300) as usize))
                .collect();
            let ids: Vec<_> = events.iter().map(|e| e.event_id).collect();
            let r = store.append(&stream, ExpectedVersion::Any, events).unwrap();
            for (k, id) in ids.into_iter().enumerate() {
                acked.push((r.first_position + k as u64, id));
            }
        }
        let image = if case % 2 == 0 {
            let image = fs.process_crash_image();
            drop(store);
            image
        } else {
            store.close().unwrap();
            fs
        };
        let reference: Vec<RecordedEvent> = {
            let clean = image.process_crash_image();
            let store = FileStore::open_with(SIM_DIR, options(&clean)).unwrap();
            store
                .read_all(1)
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        };
        assert_eq!(reference.len(), acked.len());
        let mut files: Vec<PathBuf> = image
            .files()
            .into_iter()
            .filter(|p| p.file_name().is_some_and(|n| n != "LOCK"))
            .collect();
        files.sort();
        let target = files[rng.below(files.len() as u64) as usize].clone();
        let what = if rng.below(12) == 0 {
            es_store_fs::vfs::Vfs::remove_file(&image, &target).unwrap();
            "deleted".to_owned()
        } else {
            let mut bytes = image.read_file(&target).unwrap();
            let what = damage(&mut rng, &mut bytes);
            image.write_file(&target, &bytes);
            what
        };
        let what = format!("case {case}: {} {what}", target.display());
        let before: Vec<_> = files.iter().map(|f| image.read_file(f)).collect();
        let verified = es_store_fs::tools::verify_on(&image, Path::new(SIM_DIR), &|_| {});
        match FileStore::open_with(SIM_DIR, options(&image)) {
            Err(
                OpenError::Corrupted { .. }
                | OpenError::NewerFormat { .. }
                | OpenError::NotAStore { .. },
            ) => {
                refused += 1;
                let after: Vec<_> = files.iter().map(|f| image.read_file(f)).collect();
                assert!(before == after, "{what}: a refused open changed files");
                assert!(verified.is_err(), "{what}: verify passed what open refused");
            }
            Err(e) => panic!("{what}: unexpected error {e}"),
            Ok(store) => {
                if store.recovery_report().torn_tail.is_some() {
                    torn += 1;
                }
                assert_eq!(
                    store.head_position().unwrap(),
                    acked.len() as u64,
                    "{what}: the open lost acknowledged events: {:?}",
                    store.recovery_report()
                );
                // the events lent by `visit_all` are those `read_all` yields, up to the
                // same error
                let mut yielded = Vec::new();
                let mut read = Ok(());
                for e in store.read_all(1).unwrap() {
                    match e {
                        Ok(e) => yielded.push(e),
                        Err(e) => {
                            read = Err(e);
                            break;
                        }
                    }
                }
                let mut lent = Vec::new();
                let visited = store.visit_all(1, &mut |e| {
                    lent.push(e.to_recorded());
                    std::ops::ControlFlow::Continue(())
                });
                assert!(lent == yielded, "{what}: visit_all lent other events");
                assert_eq!(
                    visited.as_ref().map_err(ToString::to_string),
                    read.as_ref().map_err(ToString::to_string),
                    "{what}: visit_all and read_all end differently"
                );
                let read = read.map(|()| yielded);
                match read {
                    Ok(events) => {
                        assert!(events == reference, "{what}: events differ after the open");
                        intact += 1;
                    }
                    Err(StoreError::Corrupted(c)) => {
                        assert!(
                            verified.is_err(),
                            "{what}: verify passed damage a read found: {c}"
                        );
                        reported += 1;
                    }
                    Err(e) => panic!("{what}: {e}"),
                }
            }
        }
    }
    common::figure("damage", "cases", u64::from(cases));
    common::figure("damage", "open refused, nothing changed", refused);
    common::figure("damage", "opened, every acknowledged event intact", intact);
    common::figure("damage", "opened, damage reported on read", reported);
    common::figure("damage", "opened with a torn tail cut", torn);
    common::figure("damage", "silent losses", 0);
}

/// A store of hundreds of segments opens and reads with a bounded number of open files.
#[test]
fn a_store_of_many_segments_keeps_few_files_open() {
    let dir = tempfile::tempdir().unwrap();
    let options = || FileStoreOptions {
        segment_size: 4096,
        preallocate: 0,
        durability: es_store_fs::Durability::None,
        ..FileStoreOptions::default()
    };
    let store = FileStore::open_with(dir.path(), options()).unwrap();
    for i in 0..12_000 {
        store
            .append(
                &format!("s-{}", i % 50),
                ExpectedVersion::Any,
                vec![event(i)],
            )
            .unwrap();
    }
    drop(store);
    let segments = fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "seg")
        })
        .count();
    assert!(segments > 300, "{segments} segments");
    let open_files = || fs::read_dir("/proc/self/fd").unwrap().count();
    let before = open_files();
    let store = FileStore::open_with(dir.path(), options()).unwrap();
    assert_eq!(store.read_all(1).unwrap().count(), 12_000);
    for s in 0..50 {
        assert_eq!(
            store.read_stream(&format!("s-{s}"), 1).unwrap().count(),
            240
        );
    }
    assert!(store.log_bytes().unwrap() > 0);
    let held = open_files().saturating_sub(before);
    // other tests of this binary open files too: the bound is far below one per segment
    assert!(held < 150, "{held} files held open for {segments} segments");
    // a rebuild from the log (no index) opens one segment at a time too
    drop(store);
    fs::remove_file(dir.path().join("index.dat")).unwrap();
    let store = FileStore::open_with(dir.path(), options()).unwrap();
    assert!(store.recovery_report().index_rebuilt);
    assert_eq!(store.head_position().unwrap(), 12_000);
}

/// Appends `appends` batches of one to three events to seven streams; returns each
/// append's stream and event ids.
fn build_segments(dir: &Path, appends: u64) -> Vec<(String, Vec<uuid::Uuid>)> {
    let store = FileStore::open_with(dir, common::small_segments()).unwrap();
    let mut written = Vec::new();
    for i in 0..appends {
        let stream = format!("s-{}", i % 7);
        let events: Vec<NewEvent> = (0..1 + i % 3).map(|k| event(10 * i + k)).collect();
        let ids = events.iter().map(|e| e.event_id).collect();
        store.append(&stream, ExpectedVersion::Any, events).unwrap();
        written.push((stream, ids));
    }
    store.close().unwrap();
    written
}

/// Removes `index.dat` and every sealed index: an open then has nothing to start from
/// but the log, and reads every segment's header.
fn remove_indexes(dir: &Path) {
    fs::remove_file(dir.join("index.dat")).unwrap();
    for no in 0..segment_count(dir) {
        let _ = fs::remove_file(sealed_index(dir, no));
    }
}

fn sealed_index(dir: &Path, no: u64) -> PathBuf {
    dir.join(format!("{no:020}.idx"))
}

fn segment_count(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".seg")
        })
        .count() as u64
}

fn stream(store: &FileStore, id: &str) -> Vec<RecordedEvent> {
    store
        .read_stream(id, 1)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Every sealed segment gets its own index; a reopen reads them instead of the log, and
/// reads, stream reads and idempotent retries of events in sealed segments agree with
/// the log.
#[test]
fn sealed_segments_are_found_through_their_own_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let written = build_segments(dir.path(), 300);
    let segments = segment_count(dir.path());
    assert!(segments > 5, "several segments");
    for no in 0..segments - 1 {
        assert!(sealed_index(dir.path(), no).exists(), "segment {no} sealed");
    }
    assert!(
        !sealed_index(dir.path(), segments - 1).exists(),
        "the active one is not"
    );
    let store = FileStore::open_with(dir.path(), common::small_segments()).unwrap();
    assert!(!store.recovery_report().index_rebuilt);
    assert_eq!(store.recovery_report().frames_scanned, 0);
    let events = all_events(&store);
    let expected: usize = written.iter().map(|(_, ids)| ids.len()).sum();
    assert_eq!(events.len(), expected);
    for s in 0..7 {
        let id = format!("s-{s}");
        let from_log: Vec<_> = events
            .iter()
            .filter(|e| e.stream_id == id)
            .cloned()
            .collect();
        assert_eq!(stream(&store, &id), from_log, "{id}");
        let tail: Vec<_> = store
            .read_stream(&id, 20)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(tail, from_log[19..], "{id} from version 20");
        assert_eq!(store.stream_version(&id).unwrap(), from_log.len() as u64);
    }
    let from_middle: Vec<_> = store
        .read_all(250)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(from_middle, events[249..]);
    // a retry of the first append (in segment 0) returns the original result
    let (first_stream, first_ids) = &written[0];
    let retry: Vec<NewEvent> = first_ids
        .iter()
        .enumerate()
        .map(|(k, id)| event(k as u64).with_id(*id))
        .collect();
    let again = store
        .append(first_stream, ExpectedVersion::NoStream, retry.clone())
        .unwrap();
    assert_eq!((again.first_position, again.last_version), (1, 1));
    // the same ids in another stream are refused
    let err = store
        .append("elsewhere", ExpectedVersion::Any, retry)
        .unwrap_err();
    assert!(
        matches!(err, StoreError::DuplicateEventId { .. }),
        "{err:?}"
    );
    assert_eq!(all_events(&store).len(), expected);
}

/// The stream table `index.dat` records at close (as it stood after the sealed segments)
/// spares the next open the sealed stream tables; an old copy of the file, segments
/// sealed after it was written, or a table that does not add up to the segments' events
/// fall back to the sealed indexes with the same result.
#[test]
fn the_stream_table_recorded_at_close_is_used_only_when_it_fits() {
    let dir = tempfile::tempdir().unwrap();
    build_segments(dir.path(), 300);
    let index_path = dir.path().join("index.dat");
    let old_index = fs::read(&index_path).unwrap();
    let store = FileStore::open_with(dir.path(), common::small_segments()).unwrap();
    assert_eq!(store.recovery_report().frames_scanned, 0);
    assert!(!store.recovery_report().index_rebuilt);
    for i in 300..400u64 {
        let stream = format!("s-{}", i % 11);
        store
            .append(&stream, ExpectedVersion::Any, vec![event(10 * i)])
            .unwrap();
    }
    store.close().unwrap();
    let reference = FileStore::open_with(dir.path(), common::small_segments()).unwrap();
    let events = all_events(&reference);
    let versions = reference.streams();
    assert_eq!(versions.len(), 11);
    drop(reference);
    let report = es_store_fs::tools::verify(dir.path(), &|_| {}).unwrap();
    assert!(
        matches!(
            report.index,
            es_store_fs::tools::IndexStatus::Consistent { .. }
        ),
        "{:?}",
        report.index
    );
    let sealed = segment_count(dir.path()) - 1;
    // `tables_read` says how many sealed stream tables the open may parse
    let check = |what: &str, tables_read: &dyn Fn(u64) -> bool| {
        let store = FileStore::open_with(dir.path(), common::small_segments()).unwrap();
        let read = store.recovery_report().sealed_tables_read;
        assert!(tables_read(read), "{what}: {read} of {sealed} tables read");
        assert_eq!(all_events(&store), events, "{what}");
        assert_eq!(store.streams(), versions, "{what}");
        for (id, version) in &versions {
            assert_eq!(stream(&store, id).len() as u64, *version, "{what}: {id}");
        }
        // the next append to each stream continues it
        for (id, version) in &versions {
            let r = store
                .append(id, ExpectedVersion::Exact(*version), vec![event(1)])
                .unwrap();
            assert_eq!(r.first_version, version + 1, "{what}: {id}");
        }
        drop(store);
    };
    let saved: Vec<(PathBuf, Vec<u8>)> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let bytes = fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    let restore = || {
        for e in fs::read_dir(dir.path()).unwrap() {
            let p = e.unwrap().path();
            if p.is_file() {
                fs::remove_file(p).unwrap();
            }
        }
        for (p, bytes) in &saved {
            fs::write(p, bytes).unwrap();
        }
    };
    check("the current index file", &|read| read == 0);
    restore();
    // an older copy: written before the last 100 appends sealed more segments
    fs::write(&index_path, &old_index).unwrap();
    check("an older index file", &|read| read > 0 && read < sealed);
    restore();
    // a table whose versions do not add up to the segments' events (checksum made right)
    let mut bad = fs::read(&index_path).unwrap();
    // magic, covered end, head, the number of sealed segments (one byte), the number of
    // streams (one byte), then "s-0": its length, its id, its version
    assert_eq!(&bad[34..38], b"\x03s-0");
    assert!(bad[38] < 0x7f, "a one-byte version");
    bad[38] += 1;
    let n = bad.len() - 4;
    let crc = crc32c::crc32c(&bad[..n]);
    bad[n..].copy_from_slice(&crc.to_le_bytes());
    fs::write(&index_path, &bad).unwrap();
    let err = es_store_fs::tools::verify(dir.path(), &|_| {}).unwrap_err();
    assert!(err.to_string().contains("stream `s-0`"), "{err}");
    check("a table that does not add up", &|read| read == sealed);
}

/// Streams of segments that hold thousands of them are found in the sealed indexes on
/// disk (one block of the stream table per lookup) exactly as in a table held in memory.
#[test]
fn streams_among_thousands_per_segment_are_found_on_disk_and_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let options = |cache: usize| FileStoreOptions {
        segment_size: 256 * 1024,
        preallocate: 0,
        stream_table_cache: cache,
        ..FileStoreOptions::default()
    };
    let store = FileStore::open_with(dir.path(), options(0)).unwrap();
    let streams = 3000u64;
    for round in 0..4u64 {
        for s in 0..streams {
            // a shuffled order per round, so that streams interleave in the log
            let s = (s * 7919 + round * 104_729) % streams;
            store
                .append(
                    &format!("stream-{s}"),
                    ExpectedVersion::Any,
                    vec![event(round)],
                )
                .unwrap();
        }
    }
    store.close().unwrap();
    assert!(segment_count(dir.path()) > 2);
    let check = |what: &str, cache: usize| {
        let store = FileStore::open_with(dir.path(), options(cache)).unwrap();
        let events = all_events(&store);
        assert_eq!(events.len() as u64, 4 * streams);
        let mut by_stream: std::collections::HashMap<&str, Vec<&RecordedEvent>> =
            std::collections::HashMap::new();
        for e in &events {
            by_stream.entry(e.stream_id.as_str()).or_default().push(e);
        }
        for s in 0..streams {
            let id = format!("stream-{s}");
            let read = stream(&store, &id);
            let expected: Vec<RecordedEvent> = by_stream[id.as_str()]
                .iter()
                .map(|e| (*e).clone())
                .collect();
            assert_eq!(read, expected, "{what}: {id}");
        }
        for absent in 0..500 {
            let id = format!("stream-absent-{absent}");
            assert!(stream(&store, &id).is_empty(), "{what}: {id}");
        }
    };
    // no memory for stream tables: they are searched on disk
    check("tables on disk", 0);
    // a segment's stream entries and names take about 130 KiB here, its frame lists about
    // 78 KiB more: 190 KiB keeps the entries and names of the newest segment, not its
    // lists
    let entries_only = 190 << 10;
    // the default cache: open keeps the tables, whether it parses them or not
    check(
        "tables in memory, from the table index.dat recorded",
        64 << 20,
    );
    check(
        "entries and names in memory, lists on disk, from index.dat",
        entries_only,
    );
    fs::remove_file(dir.path().join("index.dat")).unwrap();
    check("tables in memory, parsed", 64 << 20);
    check(
        "entries and names in memory, lists on disk, parsed",
        entries_only,
    );
    check("tables on disk, parsed", 0);
}

/// Polls `done` until it holds, failing after a minute.
fn wait_until(what: &str, done: impl Fn() -> bool) {
    let started = std::time::Instant::now();
    while !done() {
        assert!(
            started.elapsed().as_secs() < 60,
            "{what}: not within a minute"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// A store of 4 KiB segments with single-event appends to 13 streams until 70 segments
/// exist, once the sealing thread has written the group filter of segments 0–63; each
/// append's stream, event id and result.
fn build_grouped(dir: &Path) -> (FileStore, Vec<(String, uuid::Uuid, es_core::AppendResult)>) {
    let store = FileStore::open_with(dir, common::small_segments()).unwrap();
    let mut written = Vec::new();
    let mut i = 0u64;
    while segment_count(dir) < 70 {
        let stream = format!("s-{}", i % 13);
        let e = event(i);
        let id = e.event_id;
        let r = store
            .append(&stream, ExpectedVersion::Any, vec![e])
            .unwrap();
        written.push((stream, id, r));
        i += 1;
    }
    let group = dir.join(format!("{:020}.flt", 0));
    wait_until("the group filter written", || group.exists());
    (store, written)
}

/// Once 64 segments are sealed, one id filter answers for all of them: idempotent
/// retries and duplicate ids of events in those segments are still recognised, before
/// and after a reopen, and with the group's file damaged (then it is written again).
#[test]
fn a_group_filter_answers_for_sixty_four_sealed_segments() {
    let dir = tempfile::tempdir().unwrap();
    let group = dir.path().join(format!("{:020}.flt", 0));
    let (store, written) = build_grouped(dir.path());
    let check = |store: &FileStore, what: &str| {
        // every 97th append again, from the group's segments and after them
        for (stream, id, r) in written.iter().step_by(97) {
            let again = store
                .append(stream, ExpectedVersion::Any, vec![event(0).with_id(*id)])
                .unwrap();
            assert!(again.retried, "{what}: a retry of {id}");
            assert_eq!(again.first_position, r.first_position, "{what}");
            let err = store
                .append(
                    "elsewhere",
                    ExpectedVersion::Any,
                    vec![event(0).with_id(*id)],
                )
                .unwrap_err();
            assert!(
                matches!(err, StoreError::DuplicateEventId { .. }),
                "{what}: {err:?}"
            );
        }
        let fresh = store
            .append("fresh", ExpectedVersion::Any, vec![event(1)])
            .unwrap();
        assert!(!fresh.retried, "{what}");
    };
    check(&store, "while running");
    store.close().unwrap();
    let store = FileStore::open_with(dir.path(), common::small_segments()).unwrap();
    assert_eq!(store.recovery_report().group_filters_loaded, 1);
    check(&store, "after a reopen");
    store.close().unwrap();
    let intact = fs::read(&group).unwrap();
    let mut bytes = intact.clone();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x20;
    fs::write(&group, &bytes).unwrap();
    let store = FileStore::open_with(dir.path(), common::small_segments()).unwrap();
    assert_eq!(store.recovery_report().group_filters_loaded, 0);
    check(&store, "with the group's file damaged");
    // the sealing thread writes it again in the background
    wait_until("the group filter written again", || {
        fs::read(&group).unwrap() == intact
    });
    store.close().unwrap();
    es_store_fs::tools::verify(dir.path(), &|_| {}).unwrap();
}

/// A last segment whose header reads back as garbage (a crash before the new segment's
/// header was synced, on a disk that returns garbage for unsynced writes, or damage) is
/// refused naming it, and a repair removes it, keeping every event before it.
#[test]
fn a_garbled_header_of_the_last_segment_is_refused_and_repaired() {
    let dir = tempfile::tempdir().unwrap();
    build_segments(dir.path(), 120);
    let reference =
        all_events(&FileStore::open_with(dir.path(), common::small_segments()).unwrap());
    let n = segment_count(dir.path());
    let garbled = dir.path().join(format!("{n:020}.seg"));
    let garbage: Vec<u8> = (0..32u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    fs::write(&garbled, &garbage).unwrap();
    let err = FileStore::open_with(dir.path(), common::small_segments())
        .map(|_| ())
        .unwrap_err();
    assert!(
        matches!(&err, OpenError::Corrupted { file, segment, offset: 0, .. }
            if *file == garbled && *segment == n),
        "{err}"
    );
    assert_eq!(fs::read(&garbled).unwrap(), garbage, "nothing changed");
    assert!(es_store_fs::tools::verify(dir.path(), &|_| {}).is_err());
    let store = open_repairing_with(dir.path(), common::small_segments()).unwrap();
    let repair = store.recovery_report().repaired.clone().unwrap();
    assert_eq!((repair.segment, repair.offset), (n, 0));
    assert_eq!(repair.segments_removed, vec![n]);
    assert_eq!(repair.bytes_dropped, 32);
    assert_eq!(all_events(&store), reference);
    store
        .append("after", ExpectedVersion::NoStream, vec![event(1)])
        .unwrap();
    store.close().unwrap();
    let store = FileStore::open_with(dir.path(), common::small_segments()).unwrap();
    assert_eq!(all_events(&store).len(), reference.len() + 1);
}

/// A repair that cuts the log inside a window of segments removes that window's group
/// filter, which describes ids no longer there.
#[test]
fn a_repair_removes_the_group_filter_of_the_window_it_cuts() {
    let dir = tempfile::tempdir().unwrap();
    let group = dir.path().join(format!("{:020}.flt", 0));
    let (store, _) = build_grouped(dir.path());
    store.close().unwrap();
    // a frame of segment 10 damaged, and its sealed index gone: the segment is scanned
    let seg10 = dir.path().join(format!("{:020}.seg", 10));
    let mut bytes = fs::read(&seg10).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x04;
    fs::write(&seg10, bytes).unwrap();
    fs::remove_file(sealed_index(dir.path(), 10)).unwrap();
    let err = FileStore::open_with(dir.path(), common::small_segments())
        .map(|_| ())
        .unwrap_err();
    assert!(
        matches!(err, OpenError::Corrupted { segment: 10, .. }),
        "{err}"
    );
    let store = open_repairing_with(dir.path(), common::small_segments()).unwrap();
    let repair = store.recovery_report().repaired.clone().unwrap();
    assert_eq!(repair.segment, 10);
    assert!(!group.exists(), "the cut window's group filter is removed");
    assert_eq!(store.recovery_report().group_filters_loaded, 0);
    drop(store);
    es_store_fs::tools::verify(dir.path(), &|_| {}).unwrap();
}

/// A sealed index that is missing or whose stream table is damaged is rebuilt from its
/// segment, with identical reads.
#[test]
fn a_missing_or_damaged_sealed_index_is_rebuilt_from_its_segment() {
    let dir = tempfile::tempdir().unwrap();
    build_segments(dir.path(), 200);
    let reference =
        all_events(&FileStore::open_with(dir.path(), common::small_segments()).unwrap());
    let s3 = stream(
        &FileStore::open_with(dir.path(), common::small_segments()).unwrap(),
        "s-3",
    );
    fs::remove_file(sealed_index(dir.path(), 1)).unwrap();
    let mut bytes = fs::read(sealed_index(dir.path(), 2)).unwrap();
    bytes[70] ^= 0x10;
    fs::write(sealed_index(dir.path(), 2), bytes).unwrap();
    let store = FileStore::open_with(dir.path(), common::small_segments()).unwrap();
    assert!(
        store.recovery_report().frames_scanned > 0,
        "rebuilt from the log"
    );
    assert_eq!(all_events(&store), reference);
    assert_eq!(stream(&store, "s-3"), s3);
    store.close().unwrap();
    assert!(sealed_index(dir.path(), 1).exists(), "written again");
    es_store_fs::tools::verify(dir.path(), &|_| {}).unwrap();
    let store = FileStore::open_with(dir.path(), common::small_segments()).unwrap();
    assert_eq!(store.recovery_report().frames_scanned, 0);
    assert_eq!(all_events(&store), reference);
}

/// Damage in a sealed index's frame table (not read at open) is reported by the read
/// that meets it, naming the file, and by verify; never trusted.
#[test]
fn a_damaged_frame_table_in_a_sealed_index_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    build_segments(dir.path(), 200);
    let path = sealed_index(dir.path(), 0);
    let mut bytes = fs::read(&path).unwrap();
    let n = bytes.len();
    // the last id entry's position
    bytes[n - 8] ^= 0x40;
    bytes[n - 30] ^= 0x01;
    fs::write(&path, bytes).unwrap();
    assert!(es_store_fs::tools::verify(dir.path(), &|_| {}).is_err());
    fs::remove_file(&path).unwrap();
    es_store_fs::tools::verify(dir.path(), &|_| {}).unwrap();
}

/// Writes `index.dat` as the previous format did: every frame from the log's start.
fn write_single_index_file(dir: &Path) {
    write_single_index_file_with(dir, |_| {});
}

/// [`write_single_index_file`], with `change` applied to the frames it lists (stream
/// ordinal, event count, segment, offset, length) before they are encoded.
fn write_single_index_file_with(
    dir: &Path,
    change: impl FnOnce(&mut Vec<(u64, u64, u64, u64, u64)>),
) {
    use es_store_fs::format::{self, Frame, SEGMENT_HEADER_LEN};
    let mut streams: Vec<String> = Vec::new();
    let mut frames = Vec::new();
    let mut ids = Vec::new();
    let mut covered = (0, 0);
    for no in 0..segment_count(dir) {
        let bytes = fs::read(dir.join(format!("{no:020}.seg"))).unwrap();
        let mut at = SEGMENT_HEADER_LEN;
        covered = (no, at as u64);
        while at + 8 <= bytes.len() {
            let Ok(n) = format::frame_len(&bytes[at..at + 8], format::MAX_FRAME_LEN) else {
                break;
            };
            if at + n > bytes.len() {
                break;
            }
            let Ok(body) = format::check_frame(&bytes[at..at + n]) else {
                break;
            };
            let frame = Frame::parse(body).unwrap();
            let ordinal = match streams.iter().position(|s| s == frame.stream_id) {
                Some(o) => o,
                None => {
                    streams.push(frame.stream_id.to_owned());
                    streams.len() - 1
                }
            };
            let count = frame.count;
            frame
                .for_each_event(|_, e| {
                    ids.push(e.event_id);
                    Ok(())
                })
                .unwrap();
            frames.push((ordinal as u64, count, no, at as u64, n as u64));
            at += n;
            covered = (no, at as u64);
        }
    }
    let var = |out: &mut Vec<u8>, mut v: u64| loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            break;
        }
        out.push(b | 0x80);
    };
    // a change that drops frames from the end drops their ids and events too
    change(&mut frames);
    ids.truncate(frames.iter().map(|f| f.1 as usize).sum());
    let mut out = b"ESINDEX1".to_vec();
    out.extend_from_slice(&covered.0.to_le_bytes());
    out.extend_from_slice(&covered.1.to_le_bytes());
    out.extend_from_slice(&(ids.len() as u64).to_le_bytes());
    var(&mut out, streams.len() as u64);
    for s in &streams {
        var(&mut out, s.len() as u64);
        out.extend_from_slice(s.as_bytes());
    }
    var(&mut out, frames.len() as u64);
    for (o, c, s, at, n) in frames {
        for v in [o, c, s, at, n] {
            var(&mut out, v);
        }
    }
    for id in ids {
        out.extend_from_slice(id.as_bytes());
    }
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    fs::write(dir.join("index.dat"), out).unwrap();
}

/// An `index.dat` whose checksum holds but that leaves out the newest frames, its covered
/// end unchanged (so that a scan from there would never read them), or a frame in the
/// middle: not used, the log is read instead, and every acknowledged event is there.
#[test]
fn an_index_file_that_leaves_out_frames_is_not_used() {
    let dir = tempfile::tempdir().unwrap();
    build_segments(dir.path(), 200);
    let reference =
        all_events(&FileStore::open_with(dir.path(), common::small_segments()).unwrap());
    for drop in ["the last three", "one in the middle"] {
        write_single_index_file_with(dir.path(), |frames| match drop {
            "the last three" => frames.truncate(frames.len() - 3),
            _ => {
                let middle = frames.len() / 2;
                frames.remove(middle);
            }
        });
        let store = FileStore::open_with(dir.path(), common::small_segments()).unwrap();
        assert!(store.recovery_report().index_rebuilt, "{drop}");
        assert_eq!(all_events(&store), reference, "{drop}");
    }
}

/// Rewrites `index.dat` (the current format) without its first `drop` recent frames
/// (all of them with `None`) and their event ids, the head moved back by their events,
/// the covered end unchanged, the checksum made to hold: an index that leaves frames at
/// the start of the active segment out, as a forger who knows the format would.
fn forge_index_without_first_frames(dir: &Path, drop: Option<usize>) {
    let path = dir.join("index.dat");
    let bytes = fs::read(&path).unwrap();
    assert_eq!(&bytes[..8], b"ESINDEX3");
    let body = &bytes[..bytes.len() - 4];
    fn var(body: &[u8], at: &mut usize) -> u64 {
        let (mut v, mut shift) = (0u64, 0);
        loop {
            let b = body[*at];
            *at += 1;
            v |= u64::from(b & 0x7f) << shift;
            shift += 7;
            if b & 0x80 == 0 {
                return v;
            }
        }
    }
    let mut at = 32;
    let _sealed = var(body, &mut at);
    for _ in 0..var(body, &mut at) {
        // the id's length and bytes, then its version and newest sealed segment
        at += var(body, &mut at) as usize;
        var(body, &mut at);
        var(body, &mut at);
    }
    let frames_at = at;
    let n = var(body, &mut at) as usize;
    let frames: Vec<[u64; 5]> = (0..n)
        .map(|_| std::array::from_fn(|_| var(body, &mut at)))
        .collect();
    let ids: Vec<&[u8]> = body[at..].chunks(16).collect();
    let drop = drop.unwrap_or(n);
    assert!(drop <= n && n > 0, "{drop} of {n} frames");
    let dropped_events: u64 = frames[..drop].iter().map(|f| f[1]).sum();
    let put = |out: &mut Vec<u8>, mut v: u64| loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            break;
        }
        out.push(b | 0x80);
    };
    let mut out = body[..frames_at].to_vec();
    let head = u64::from_le_bytes(out[24..32].try_into().unwrap()) - dropped_events;
    out[24..32].copy_from_slice(&head.to_le_bytes());
    put(&mut out, (n - drop) as u64);
    for f in &frames[drop..] {
        for v in f {
            put(&mut out, *v);
        }
    }
    for id in &ids[dropped_events as usize..] {
        out.extend_from_slice(id);
    }
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    fs::write(&path, out).unwrap();
}

/// An `index.dat` forged to leave out the first frames of the active segment (or all of
/// them, covering the segment up to its end without listing a frame), its checksum made
/// to hold: the scan would start after frames no index holds, hiding acknowledged events.
/// It is not used (the log is read), and `verify` says it disagrees with the log.
#[test]
fn an_index_file_that_leaves_out_the_first_frames_of_the_active_segment_is_not_used() {
    let dir = tempfile::tempdir().unwrap();
    build_segments(dir.path(), 200);
    let reference =
        all_events(&FileStore::open_with(dir.path(), common::small_segments()).unwrap());
    let original = fs::read(dir.path().join("index.dat")).unwrap();
    for drop in [None, Some(1), Some(2)] {
        fs::write(dir.path().join("index.dat"), &original).unwrap();
        forge_index_without_first_frames(dir.path(), drop);
        match es_store_fs::tools::verify(dir.path(), &|_| {}) {
            Ok(report) => assert!(
                matches!(
                    report.index,
                    es_store_fs::tools::IndexStatus::Disagrees(_)
                        | es_store_fs::tools::IndexStatus::Unusable(_)
                ),
                "{drop:?}: {:?}",
                report.index
            ),
            Err(e) => assert!(e.to_string().contains("index"), "{drop:?}: {e}"),
        }
        let store = FileStore::open_with(dir.path(), common::small_segments()).unwrap();
        assert!(store.recovery_report().index_rebuilt, "{drop:?}");
        assert_eq!(all_events(&store), reference, "{drop:?}");
        store.close().unwrap();
    }
}

/// An `index.dat` whose checksum holds but whose last frame lies at the largest offset
/// (its end overflows): not used, the log is read instead, no panic.
#[test]
fn an_index_file_with_a_frame_at_the_largest_offset_is_not_used() {
    let dir = tempfile::tempdir().unwrap();
    build_segments(dir.path(), 200);
    let reference =
        all_events(&FileStore::open_with(dir.path(), common::small_segments()).unwrap());
    for at in [u64::MAX, u64::MAX - 100] {
        write_single_index_file_with(dir.path(), |frames| {
            if let Some(last) = frames.last_mut() {
                last.3 = at;
            }
        });
        if at == u64::MAX - 100 {
            // and the index says it covers the log up to the largest offset too
            let path = dir.path().join("index.dat");
            let mut bytes = fs::read(&path).unwrap();
            bytes[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
            let n = bytes.len() - 4;
            let crc = crc32c::crc32c(&bytes[..n]);
            bytes[n..].copy_from_slice(&crc.to_le_bytes());
            fs::write(&path, bytes).unwrap();
        }
        // verify says the index is not the log's (unusable, or intact and disagreeing)
        match es_store_fs::tools::verify(dir.path(), &|_| {}) {
            Ok(report) => assert!(
                !matches!(
                    report.index,
                    es_store_fs::tools::IndexStatus::Consistent { .. }
                ),
                "{:?}",
                report.index
            ),
            Err(e) => assert!(e.to_string().contains("index"), "{e}"),
        }
        match FileStore::open_with(dir.path(), common::small_segments()) {
            Ok(store) => {
                assert!(store.recovery_report().index_rebuilt);
                assert_eq!(all_events(&store), reference);
            }
            // an index that says the log reaches past its end is a record of a loss:
            // refused, naming the segment
            Err(e) => {
                assert!(at != u64::MAX, "{e}");
                assert!(
                    matches!(&e, es_store_fs::OpenError::Corrupted { segment, .. } if *segment == segment_count(dir.path()) - 1),
                    "{e:?}"
                );
            }
        }
    }
}

/// A store written before segments had their own indexes (one `index.dat` listing every
/// frame) opens from that file without reading the log, and gets the sealed indexes.
#[test]
fn a_store_with_the_single_index_file_of_the_previous_format_opens_without_a_scan() {
    let dir = tempfile::tempdir().unwrap();
    build_segments(dir.path(), 200);
    let reference =
        all_events(&FileStore::open_with(dir.path(), common::small_segments()).unwrap());
    let segments = segment_count(dir.path());
    for no in 0..segments {
        let _ = fs::remove_file(sealed_index(dir.path(), no));
    }
    write_single_index_file(dir.path());
    let store = FileStore::open_with(dir.path(), common::small_segments()).unwrap();
    assert!(!store.recovery_report().index_rebuilt);
    assert_eq!(store.recovery_report().frames_scanned, 0);
    assert_eq!(all_events(&store), reference);
    store.close().unwrap();
    for no in 0..segments - 1 {
        assert!(sealed_index(dir.path(), no).exists(), "segment {no} sealed");
    }
    let store = FileStore::open_with(dir.path(), common::small_segments()).unwrap();
    assert_eq!(store.recovery_report().frames_scanned, 0);
    assert_eq!(all_events(&store), reference);
}

/// A sealed index or a group id filter that exists but cannot be read (here a directory
/// stands where the file should be, so reads fail with EISDIR): an open fails on it, and
/// so does `verify`, naming the file, rather than passing the store.
#[test]
fn verify_fails_on_a_sealed_index_or_group_filter_it_cannot_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open_with(
        dir.path(),
        FileStoreOptions {
            durability: es_store_fs::Durability::None,
            ..common::small_segments()
        },
    )
    .unwrap();
    let mut i = 0;
    while segment_count(dir.path()) < 70 {
        store
            .append(
                &format!("s-{}", i % 7),
                ExpectedVersion::Any,
                vec![event(i)],
            )
            .unwrap();
        i += 1;
    }
    store.close().unwrap();
    es_store_fs::tools::verify(dir.path(), &|_| {}).unwrap();
    for path in [
        sealed_index(dir.path(), 1),
        dir.path().join(format!("{:020}.flt", 0)),
    ] {
        assert!(path.exists(), "{}", path.display());
        let saved = fs::read(&path).unwrap();
        fs::remove_file(&path).unwrap();
        fs::create_dir(&path).unwrap();
        match es_store_fs::tools::verify(dir.path(), &|_| {}) {
            Err(OpenError::Io { path: named, .. }) => assert_eq!(named, path),
            other => panic!("{}: {other:?}", path.display()),
        }
        fs::remove_dir(&path).unwrap();
        fs::write(&path, saved).unwrap();
    }
    es_store_fs::tools::verify(dir.path(), &|_| {}).unwrap();
}

/// A damaged header of a segment in the middle of the log, its frames intact: an open
/// that reads the header (no index to start from) refuses, naming the segment; `verify`
/// reports it; a dry run of a repair says it would write the header again and changes
/// nothing; the repair writes it again and drops no event.
#[test]
fn a_repair_writes_a_damaged_middle_header_again_and_drops_nothing() {
    let dir = tempfile::tempdir().unwrap();
    build_segments(dir.path(), 200);
    let reference =
        all_events(&FileStore::open_with(dir.path(), common::small_segments()).unwrap());
    assert!(segment_count(dir.path()) >= 3);
    let segment = dir.path().join(format!("{:020}.seg", 1));
    let mut bytes = fs::read(&segment).unwrap();
    bytes[13] ^= 0x20;
    fs::write(&segment, &bytes).unwrap();
    // nothing to start from but the log: the header is read, and refused
    remove_indexes(dir.path());
    match FileStore::open_with(dir.path(), common::small_segments()) {
        Err(OpenError::Corrupted {
            segment: 1,
            offset: 0,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        es_store_fs::tools::verify(dir.path(), &|_| {}),
        Err(OpenError::Corrupted { segment: 1, .. })
    ));
    let dry = es_store_fs::tools::repair(dir.path(), true).unwrap();
    assert_eq!(dry.headers_rewritten.len(), 1, "{dry:?}");
    assert_eq!(dry.headers_rewritten[0].segment, 1);
    assert!(dry.repaired.is_none(), "{dry:?}");
    assert_eq!(fs::read(&segment).unwrap(), bytes, "a dry run wrote");
    let done = es_store_fs::tools::repair(dir.path(), false).unwrap();
    assert_eq!(done.headers_rewritten.len(), 1, "{done:?}");
    assert!(done.repaired.is_none(), "{done:?}");
    es_store_fs::tools::verify(dir.path(), &|_| {}).unwrap();
    let store = FileStore::open_with(dir.path(), common::small_segments()).unwrap();
    assert_eq!(all_events(&store), reference);
}

/// The last segment deleted, and the sealed index of the one before it (the proof that a
/// later segment existed) there but failing to open: the open refuses, naming the
/// missing segment, rather than taking the index for absent and the log for whole.
#[test]
fn a_sealed_index_that_cannot_be_opened_still_proves_a_later_segment() {
    let dir = tempfile::tempdir().unwrap();
    build_segments(dir.path(), 200);
    let last = segment_count(dir.path()) - 1;
    fs::remove_file(dir.path().join(format!("{last:020}.seg"))).unwrap();
    // the sealed index is the only record left of the lost segment
    fs::remove_file(dir.path().join("index.dat")).unwrap();
    fs::remove_file(dir.path().join("PUBLISHED")).unwrap();
    let failing = common::failing_open(
        format!("{:020}.idx", last - 1),
        std::io::ErrorKind::PermissionDenied,
    );
    let result = FileStore::open_with(
        dir.path(),
        FileStoreOptions {
            vfs: Arc::new(failing),
            ..common::small_segments()
        },
    );
    match result {
        Err(OpenError::Corrupted { segment, .. }) => assert_eq!(segment, last),
        Ok(store) => panic!("opened, {} events", all_events(&store).len()),
        Err(e) => panic!("{e}"),
    }
}

/// A disk too full for sealed indexes (every `.idx` write fails) under `Periodic`
/// durability: `close` reports the sealing's failure, but still syncs the log first, so
/// that a power loss right after it loses no acknowledged event.
#[test]
fn close_syncs_the_log_even_when_sealing_fails() {
    // a power loss keeps nothing that was not synced
    let fs = SimFs::with_options(
        11,
        es_store_fs::vfs::sim::SimOptions {
            keep_percent: 0,
            ..Default::default()
        },
    );
    fs.fail_persistently(SimOp::Write, std::io::ErrorKind::StorageFull, Some(".idx"));
    let options = FileStoreOptions {
        durability: es_store_fs::Durability::Periodic(std::time::Duration::from_secs(3600)),
        segment_size: 4096,
        preallocate: 0,
        ..sim_options(&fs)
    };
    let store = FileStore::open_with(SIM_DIR, options.clone()).unwrap();
    // appends go on across rolls; some are refused while the disk is full (none of
    // those counts)
    let mut acknowledged = 0;
    for i in 0..200 {
        if store
            .append("s-1", ExpectedVersion::Any, vec![event(i)])
            .is_ok()
        {
            acknowledged += 1;
        }
    }
    let segments = es_store_fs::vfs::Vfs::list(&fs, Path::new(SIM_DIR))
        .unwrap()
        .iter()
        .filter(|n| n.ends_with(".seg"))
        .count();
    assert!(
        segments >= 2 && acknowledged > 0,
        "{segments} segments, {acknowledged}"
    );
    assert!(store.close().is_err(), "the sealing's failure is reported");
    fs.crash();
    fs.clear_faults();
    let store = FileStore::open_with(SIM_DIR, options).unwrap();
    assert_eq!(store.head_position().unwrap(), acknowledged);
}

/// A preallocation step larger than a segment (as large as `u64::MAX`) is taken as the
/// segment's size: appends work across rolls, and nothing panics inside a commit.
#[test]
fn a_preallocation_step_larger_than_a_segment_is_taken_as_the_segment_size() {
    for preallocate in [u64::MAX, 1 << 40, 64 * 1024 * 1024 + 1] {
        let dir = tempfile::tempdir().unwrap();
        let options = FileStoreOptions {
            preallocate,
            segment_size: 64 * 1024,
            durability: es_store_fs::Durability::None,
            ..FileStoreOptions::default()
        };
        let store = FileStore::open_with(dir.path(), options.clone()).unwrap();
        for i in 0..1000 {
            store
                .append("s-1", ExpectedVersion::Any, vec![event(i)])
                .unwrap();
        }
        store.close().unwrap();
        assert!(segment_count(dir.path()) > 1);
        let store = FileStore::open_with(dir.path(), options).unwrap();
        assert_eq!(store.head_position().unwrap(), 1000, "{preallocate}");
    }
}

/// Events lost at the end of a segment in the middle of the log: the next segment's
/// header names a later position than the log reaches. A repair does not write that
/// header again as if it continued the log (the frame after it does not): the damage is
/// refused, and the header, which tells how much was lost, is left as it is.
#[test]
fn a_repair_does_not_rewrite_a_header_over_lost_events() {
    let dir = tempfile::tempdir().unwrap();
    build_segments(dir.path(), 200);
    assert!(segment_count(dir.path()) >= 4);
    let one = dir.path().join(format!("{:020}.seg", 1));
    let starts = common::frame_starts(&fs::read(&one).unwrap());
    let file = fs::OpenOptions::new().write(true).open(&one).unwrap();
    file.set_len(starts[starts.len() - 2] as u64).unwrap();
    drop(file);
    remove_indexes(dir.path());
    let two = dir.path().join(format!("{:020}.seg", 2));
    let before = fs::read(&two).unwrap();
    for dry_run in [true, false] {
        match es_store_fs::tools::repair(dir.path(), dry_run) {
            Err(OpenError::Corrupted { .. }) => {}
            Ok(report) => assert!(report.headers_rewritten.is_empty(), "{report:?}"),
            Err(e) => panic!("{e}"),
        }
        assert_eq!(
            fs::read(&two).unwrap()[..32],
            before[..32],
            "dry run {dry_run}"
        );
    }
}

/// Appends one event at a time until segment `until` exists, then `more` events; returns
/// how many were appended.
fn fill_to_segment(dir: &Path, store: &FileStore, until: u64, more: u64) -> u64 {
    let mut n = 0;
    while !dir.join(format!("{until:020}.seg")).exists() {
        store
            .append("s-1", ExpectedVersion::Any, vec![event(n)])
            .unwrap();
        n += 1;
    }
    for _ in 0..more {
        store
            .append("s-1", ExpectedVersion::Any, vec![event(n)])
            .unwrap();
        n += 1;
    }
    n
}

/// An intact `index.dat` proves the events it lists even when it cannot be used (a sealed
/// index it builds on is gone, so the log is scanned): acknowledged frames at the end
/// that read back as zeros are damage, not room the writer claimed. (The open used to
/// succeed without them.)
#[test]
fn an_intact_index_file_proves_its_events_even_when_a_sealed_index_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open_with(dir.path(), common::small_segments()).unwrap();
    fill_to_segment(dir.path(), &store, 3, 1);
    // the record as a power loss may leave it, before the last appends rewrote it
    let stale = fs::read(dir.path().join("PUBLISHED")).unwrap();
    let end_segment = u64::from_le_bytes(stale[8..16].try_into().unwrap());
    let end_offset = u64::from_le_bytes(stale[16..24].try_into().unwrap());
    for n in 0..3 {
        store
            .append("s-1", ExpectedVersion::Any, vec![event(1000 + n)])
            .unwrap();
    }
    let acknowledged = store.head_position().unwrap();
    store.close().unwrap();
    fs::write(dir.path().join("PUBLISHED"), &stale).unwrap();
    let seg = dir.path().join(format!("{end_segment:020}.seg"));
    let len = fs::metadata(&seg).unwrap().len();
    assert!(len > end_offset);
    let zeros = vec![0u8; (len - end_offset) as usize];
    let file = fs::OpenOptions::new().write(true).open(&seg).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&file, &zeros, end_offset).unwrap();
    drop(file);
    fs::remove_file(dir.path().join(format!("{:020}.idx", 0))).unwrap();
    let before = common::dir_contents(dir.path());
    match FileStore::open_with(dir.path(), common::small_segments()) {
        Err(OpenError::Corrupted { reason, .. }) => {
            assert!(reason.contains("index.dat records"), "{reason}");
        }
        Err(e) => panic!("{e}"),
        Ok(s) => panic!(
            "opened with {} of {acknowledged} acknowledged events",
            s.head_position().unwrap()
        ),
    }
    assert_eq!(
        common::dir_contents(dir.path()),
        before,
        "a refused open changed files"
    );
}

/// A refused open changes nothing, also when what refuses it is read after the log was
/// scanned: a torn tail found in the scan is cut only once the whole directory is
/// accepted. (The open used to cut it, then refuse an unreadable group filter.)
#[test]
fn a_torn_tail_is_cut_only_by_an_open_that_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open_with(dir.path(), common::small_segments()).unwrap();
    // enough sealed segments for a group filter
    fill_to_segment(dir.path(), &store, 66, 0);
    store.close().unwrap();
    let last = (0u64..)
        .take_while(|i| dir.path().join(format!("{i:020}.seg")).exists())
        .last()
        .unwrap();
    let seg = dir.path().join(format!("{last:020}.seg"));
    // a frame's first bytes, the rest never written: a torn, unacknowledged write
    let mut bytes = fs::read(&seg).unwrap();
    bytes.extend_from_slice(&[200, 0, 0, 0, 0x11, 0x22, 0x33, 0x44, 2, 9, 9]);
    fs::write(&seg, &bytes).unwrap();
    let filter = dir.path().join(format!("{:020}.flt", 0));
    assert!(filter.exists(), "no group filter was written");
    fs::remove_file(&filter).unwrap();
    fs::create_dir(&filter).unwrap();
    let err = FileStore::open_with(dir.path(), common::small_segments()).unwrap_err();
    assert!(err.to_string().contains(".flt"), "{err}");
    assert_eq!(
        fs::read(&seg).unwrap(),
        bytes,
        "the refused open cut the segment"
    );
    // once the filter is readable again (it is derived data: gone is fine), the tail goes
    fs::remove_dir(&filter).unwrap();
    let store = FileStore::open_with(dir.path(), common::small_segments()).unwrap();
    assert_eq!(store.recovery_report().torn_tail.map(|t| t.bytes), Some(11));
    assert_eq!(fs::metadata(&seg).unwrap().len(), bytes.len() as u64 - 11);
}

/// A FIFO in place of a file of the store is refused, naming it: the open used to block
/// until some process wrote to the FIFO. Nothing else in the directory changes.
#[test]
fn a_fifo_in_place_of_a_store_file_is_refused_without_waiting() {
    for name in [
        "index.dat",
        "PUBLISHED",
        "ES-STORE",
        "LOCK",
        "00000000000000000000.idx",
        "00000000000000000001.seg",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open_with(dir.path(), common::small_segments()).unwrap();
        fill_to_segment(dir.path(), &store, 1, 1);
        store.close().unwrap();
        let path = dir.path().join(name);
        let _ = fs::remove_file(&path);
        let made = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .unwrap();
        assert!(made.success());
        let before = common::dir_contents(dir.path());
        for read_only in [false, true] {
            let (tx, rx) = std::sync::mpsc::channel();
            let at = dir.path().to_owned();
            std::thread::spawn(move || {
                let opened = if read_only {
                    FileStore::open_read_only(&at)
                } else {
                    FileStore::open_with(&at, common::small_segments())
                };
                let _ = tx.send(opened.map(|_| ()).map_err(|e| e.to_string()));
            });
            let opened = rx
                .recv_timeout(std::time::Duration::from_secs(20))
                .unwrap_or_else(|_| panic!("{name}, read-only {read_only}: the open blocks"));
            if name == "LOCK" && read_only {
                // a read-only open takes no lock
                continue;
            }
            let err = opened.expect_err(name);
            assert!(
                err.contains(name) && err.contains("FIFO"),
                "{name}, read-only {read_only}: {err}"
            );
        }
        assert_eq!(common::dir_contents(dir.path()), before, "{name}");
    }
}

/// A segment longer than any the store writes (a sparse file) is refused before its
/// length is used: the open used to scan gigabytes of zeros (and lengths near `i64::MAX`,
/// where a file system allows them, overflowed their sum).
#[test]
fn a_segment_longer_than_any_the_store_writes_is_refused() {
    for (segment, len) in [(0u64, 5u64 << 30), (1, 1u64 << 43)] {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open_with(dir.path(), common::small_segments()).unwrap();
        fill_to_segment(dir.path(), &store, 2, 1);
        store.close().unwrap();
        let path = dir.path().join(format!("{segment:020}.seg"));
        fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len)
            .unwrap();
        for read_only in [false, true] {
            let opened = if read_only {
                FileStore::open_read_only(dir.path())
            } else {
                FileStore::open_with(dir.path(), common::small_segments())
            };
            match opened {
                Err(OpenError::Corrupted { file, reason, .. }) => {
                    assert_eq!(file, path);
                    assert!(reason.contains(&format!("{len} bytes long")), "{reason}");
                }
                Err(e) => panic!("{e}"),
                Ok(_) => panic!("opened"),
            }
        }
        assert_eq!(fs::metadata(&path).unwrap().len(), len);
    }
}

/// A symbolic link in place of the `snapshots` directory is refused: a snapshot used to
/// be written through it, outside the store.
#[test]
fn snapshots_are_not_written_through_a_linked_directory() {
    use es_core::snapshot::{Snapshot, SnapshotStore};
    let root = tempfile::tempdir().unwrap();
    let (dir, outside) = (root.path().join("store"), root.path().join("outside"));
    fs::create_dir(&outside).unwrap();
    let store = FileStore::open(&dir).unwrap();
    store
        .append("s-1", ExpectedVersion::Any, vec![event(1)])
        .unwrap();
    std::os::unix::fs::symlink(&outside, dir.join("snapshots")).unwrap();
    let snapshot = Snapshot {
        stream_id: "s-1".into(),
        version: 1,
        position: 1,
        last_event_at: chrono::Utc::now(),
        snapshot_version: 1,
        fingerprint: 0,
        state: b"{}".to_vec(),
    };
    let err = store.save_snapshot(&snapshot).unwrap_err().to_string();
    assert!(err.contains("symbolic link"), "{err}");
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
}

/// A directory that lost every segment, `index.dat` and `PUBLISHED` but kept a sealed
/// index held events: it is refused, not opened as a new, empty log (whose next open
/// then failed on the stale sealed index beside the new segment 0).
#[test]
fn a_log_whose_segments_are_all_gone_is_refused_while_a_sealed_index_remains() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open_with(dir.path(), common::small_segments()).unwrap();
    fill_to_segment(dir.path(), &store, 2, 1);
    store.close().unwrap();
    for entry in fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if name.ends_with(".seg") || name == "index.dat" || name == "PUBLISHED" {
            fs::remove_file(&path).unwrap();
        }
    }
    let before = common::dir_contents(dir.path());
    let err = FileStore::open_with(dir.path(), common::small_segments()).unwrap_err();
    assert!(
        matches!(&err, OpenError::Corrupted { reason, .. } if reason.contains("sealed index")),
        "{err}"
    );
    assert_eq!(common::dir_contents(dir.path()), before);
}

/// A repair that cuts the log before the durable end `PUBLISHED` recorded removes that
/// record (and the index file) before the cut, durably: `PUBLISHED` is written again at
/// every open without a sync, so a power loss after the repair brought the old record
/// back, claiming more than the log holds, and the next open was refused.
#[test]
fn a_power_loss_after_a_repair_brings_back_no_record_of_what_was_cut() {
    let fs = written_back_store(FileStoreOptions::default().segment_size, 10);
    let options = |repair: bool| FileStoreOptions {
        vfs: Arc::new(fs.clone()),
        repair,
        ..FileStoreOptions::default()
    };
    // damage in the middle of the log: the user repairs
    let segment = Path::new("/db/00000000000000000000.seg");
    let mut bytes = fs.read_file(segment).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    fs.write_file(segment, &bytes);
    let store = FileStore::open_with("/db", options(true)).unwrap();
    assert!(store.recovery_report().repaired.is_some());
    let kept = store.head_position().unwrap();
    assert!(kept < 10);
    store.close().unwrap();
    // a power loss some time after the repair: what the store synced is there
    fs.crash();
    let store = FileStore::open_with("/db", options(false))
        .expect("the repaired store opens after a power loss");
    assert_eq!(store.head_position().unwrap(), kept);
}

/// The repair of a log whose last segment is gone (the segment before it sealed) removes
/// the records of how far the log reached, durably, as every repair does: `PUBLISHED`,
/// left in place, came back after a power loss and refused the next open.
#[test]
fn a_power_loss_after_repairing_a_lost_last_segment_brings_back_no_record_of_it() {
    use es_store_fs::vfs::Vfs;
    let fs = written_back_store(4096, 100);
    let options = |repair: bool| FileStoreOptions {
        vfs: Arc::new(fs.clone()),
        repair,
        segment_size: 4096,
        ..FileStoreOptions::default()
    };
    let mut segments: Vec<_> = fs
        .files()
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".seg"))
        .collect();
    segments.sort();
    let last = segments.last().unwrap().clone();
    assert!(
        fs.read_file(segments[segments.len() - 2].with_extension("idx"))
            .is_some()
    );
    fs.remove_file(&last).unwrap();
    fs.sync_dir(Path::new("/db")).unwrap();
    assert!(FileStore::open_with("/db", options(false)).is_err());
    let store = FileStore::open_with("/db", options(true)).unwrap();
    assert!(store.recovery_report().repaired.is_some());
    let kept = store.head_position().unwrap();
    store.close().unwrap();
    fs.crash();
    let store = FileStore::open_with("/db", options(false))
        .expect("the repaired store opens after a power loss");
    assert_eq!(store.head_position().unwrap(), kept);
}

/// A store of `events` one-event appends to one stream, in segments of `segment_size`,
/// on a simulated disk that keeps nothing unsynced at a power loss; closed, then every
/// file written back by the system in its own time (`PUBLISHED` among them).
fn written_back_store(segment_size: u64, events: u64) -> SimFs {
    use es_store_fs::vfs::sim::SimOptions;
    let fs = SimFs::with_options(
        3,
        SimOptions {
            keep_percent: 0,
            ..SimOptions::default()
        },
    );
    let options = FileStoreOptions {
        vfs: Arc::new(fs.clone()),
        segment_size,
        ..FileStoreOptions::default()
    };
    let store = FileStore::open_with("/db", options).unwrap();
    for n in 0..events {
        store
            .append(
                "s-1",
                ExpectedVersion::Any,
                vec![common::event("s-1", n, 40)],
            )
            .unwrap();
    }
    store.close().unwrap();
    for path in fs.files() {
        let bytes = fs.read_file(&path).unwrap();
        fs.write_file(&path, &bytes);
    }
    fs
}
