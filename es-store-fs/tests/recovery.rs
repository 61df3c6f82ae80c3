//! Recovery on open: torn tails are cut, damage before the tail is reported with segment
//! and offset, the index is rebuilt when missing or damaged, and the directory is private
//! and single-writer.

use es_core::{EventStore, ExpectedVersion, NewEvent, RecordedEvent, StoreError};
use es_store_fs::{FileStore, FileStoreOptions, OpenError, TornTail};
use std::fs;
use std::path::{Path, PathBuf};

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

fn all(store: &FileStore) -> Vec<RecordedEvent> {
    store
        .read_all(1)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
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
        fs::remove_file(dir.path().join("index.dat")).unwrap();
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
            all(&store).len(),
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
        assert_eq!(all(&store).len(), 5);
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
                let store = FileStore::open_with(
                    dir.path(),
                    FileStoreOptions {
                        repair: true,
                        ..FileStoreOptions::default()
                    },
                )
                .unwrap();
                let repaired = store.recovery_report().repaired.clone().unwrap();
                assert_eq!(
                    (repaired.offset, repaired.bytes_dropped),
                    (ends[2], bytes.len() as u64),
                    "{what}"
                );
                store
            }
        };
        assert_eq!(all(&store).len(), 4, "{what}");
        store
            .append("s-9", ExpectedVersion::NoStream, vec![event(1)])
            .unwrap();
        assert_eq!(all(&store).len(), 5, "{what}");
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
        assert!(matches!(err, StoreError::Corrupted(_)), "{err:?}");
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
        assert_eq!(all(&store).len(), 2);
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
    // a missing middle segment is reported by number
    fs::remove_file(dir.path().join(format!("{:020}.seg", 1))).unwrap();
    let err = FileStore::open_with(dir.path(), options()).unwrap_err();
    assert!(
        err.to_string().contains("segment file 1 is missing"),
        "{err}"
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
    let reference = all(&store);
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
    ];
    for (what, damage) in damages {
        let mut bytes = fs::read(&index).unwrap_or_default();
        if what == "deleted" {
            let _ = fs::remove_file(&index);
        } else {
            damage(&mut bytes);
            fs::write(&index, &bytes).unwrap();
        }
        let store = FileStore::open(dir.path()).unwrap();
        assert!(store.recovery_report().index_rebuilt, "{what}");
        assert_eq!(store.recovery_report().frames_scanned, 20, "{what}");
        assert_eq!(all(&store), reference, "{what}");
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
        assert!(
            retry.is_err() || retry.unwrap().first_position == 1,
            "{what}"
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
    assert_eq!(all(&reopened).len(), 10);
    reopened
        .append("s-1", ExpectedVersion::Exact(10), vec![event(10)])
        .unwrap();
    drop(reopened);
    assert_eq!(all(&FileStore::open(crashed.path()).unwrap()).len(), 11);
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
    assert_eq!(all(&store).len(), 13);
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
    fs::remove_file(dir.path().join("index.dat")).unwrap();
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
    fs::remove_file(dir.path().join("index.dat")).unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    assert!(store.recovery_report().torn_tail.is_some());
    assert_eq!(all(&store).len(), 7);
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
    let first = all(&store)[0].timestamp;
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
    assert_eq!(all(&store)[0].timestamp.timestamp(), future.timestamp());
    store
        .append("s-1", ExpectedVersion::Any, vec![event(2)])
        .unwrap();
    let events = all(&store);
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
    let store = FileStore::open_with(
        dir.path(),
        FileStoreOptions {
            repair: true,
            ..FileStoreOptions::default()
        },
    )
    .unwrap();
    assert_eq!(
        store.recovery_report().repaired.as_ref().map(|r| r.offset),
        Some(ends[2])
    );
    assert_eq!(all(&store).len(), 4);
}
