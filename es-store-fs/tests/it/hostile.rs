//! Hostile input through the public API of the file store (stream ids with `../`, NUL,
//! control characters or 10 KB; empty batches; oversized events and batches; non-UTF-8,
//! non-JSON and deeply nested payloads and metadata) is refused with a clear, typed error
//! and leaves every byte on disk unchanged; path-like ids and type names are plain data
//! and never touch the file system. Runs on the real and the simulated disk.

use crate::common::event;
use es_core::{EventStore, ExpectedVersion, Limits, Metadata, NewEvent, StoreError};
use es_store_fs::vfs::sim::SimFs;
use es_store_fs::{FileStore, FileStoreOptions};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Every file under a directory (recursively) with its bytes, except the lock file.
type Files = BTreeMap<PathBuf, Vec<u8>>;

trait Disk {
    fn open(&self) -> FileStore;
    fn files(&self) -> Files;
    /// Files beside the store directory: hostile ids must never create any.
    fn outside(&self) -> Vec<PathBuf>;
}

struct Real {
    root: tempfile::TempDir,
}

impl Real {
    fn dir(&self) -> PathBuf {
        self.root.path().join("store")
    }
}

fn walk(dir: &Path, out: &mut Files) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            walk(&path, out);
        } else if path.file_name().is_some_and(|n| n != "LOCK") {
            out.insert(path.clone(), std::fs::read(&path).unwrap());
        }
    }
}

impl Disk for Real {
    fn open(&self) -> FileStore {
        FileStore::open(self.dir()).unwrap()
    }
    fn files(&self) -> Files {
        let mut out = Files::new();
        walk(&self.dir(), &mut out);
        out
    }
    fn outside(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.root.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| *p != self.dir())
            .collect()
    }
}

struct Sim(SimFs);

impl Disk for Sim {
    fn open(&self) -> FileStore {
        FileStore::open_with(
            "/root/store",
            FileStoreOptions {
                vfs: Arc::new(self.0.clone()),
                ..FileStoreOptions::default()
            },
        )
        .unwrap()
    }
    fn files(&self) -> Files {
        self.0
            .files()
            .into_iter()
            .filter(|p| p.starts_with("/root/store") && p.file_name().is_some_and(|n| n != "LOCK"))
            .map(|p| {
                let bytes = self.0.read_file(&p).unwrap();
                (p, bytes)
            })
            .collect()
    }
    fn outside(&self) -> Vec<PathBuf> {
        self.0
            .files()
            .into_iter()
            .filter(|p| !p.starts_with("/root/store"))
            .collect()
    }
}

fn disks() -> Vec<(&'static str, Box<dyn Disk>)> {
    vec![
        (
            "real disk",
            Box::new(Real {
                root: tempfile::tempdir().unwrap(),
            }),
        ),
        ("simulated disk", Box::new(Sim(SimFs::new(1)))),
    ]
}

/// Runs `append`, expects an error that `is_expected` accepts, and checks that no byte
/// on disk changed.
fn refused(
    disk: &dyn Disk,
    store: &FileStore,
    what: &str,
    is_expected: impl Fn(&StoreError) -> bool,
    append: impl FnOnce(&FileStore) -> Result<es_core::AppendResult, StoreError>,
) {
    store.checkpoint().unwrap();
    let before = disk.files();
    let head = store.head_position().unwrap();
    let err = match append(store) {
        Ok(r) => panic!("{what}: accepted as {r:?}"),
        Err(e) => e,
    };
    assert!(is_expected(&err), "{what}: unexpected error {err:?}");
    let message = err.to_string();
    assert!(
        message.len() < 400,
        "{what}: the message stays short: {message}"
    );
    assert_eq!(store.head_position().unwrap(), head, "{what}: head moved");
    // a checkpoint rewrites the index from the store's state: it must come out the same
    store.checkpoint().unwrap();
    assert!(disk.files() == before, "{what}: bytes on disk changed");
    assert!(disk.outside().is_empty(), "{what}: files outside the store");
}

#[test]
fn hostile_stream_ids_are_refused_and_write_nothing() {
    let limits = Limits::default();
    let too_long = "x".repeat(limits.max_stream_id_len + 1);
    let ten_kb = "../".repeat(10 * 1024 / 3);
    let ids: Vec<(&str, String)> = vec![
        ("empty", String::new()),
        ("NUL", "cart-\0-1".into()),
        ("NUL traversal", "../\0../etc/passwd".into()),
        ("escape sequence", "\u{1b}[2J".into()),
        ("newline", "a\nb".into()),
        ("carriage return", "a\rb".into()),
        ("DEL", "\u{7f}".into()),
        ("C1 control", "next\u{85}line".into()),
        ("one byte over the limit", too_long),
        ("10 KB of ../", ten_kb),
        ("10 KB", "y".repeat(10 * 1024)),
    ];
    for (disk_name, disk) in disks() {
        let store = disk.open();
        store
            .append("seed-1", ExpectedVersion::Any, vec![event("seed-1", 1, 20)])
            .unwrap();
        for (what, id) in &ids {
            let what = format!("{disk_name}, stream id {what}");
            let invalid = |e: &StoreError| matches!(e, StoreError::InvalidStreamId { .. });
            refused(&*disk, &store, &what, invalid, |s| {
                s.append(id, ExpectedVersion::Any, vec![event("x", 1, 10)])
            });
            assert!(invalid(&store.read_stream(id, 1).err().unwrap()), "{what}");
            assert!(invalid(&store.stream_version(id).unwrap_err()), "{what}");
        }
        // the longest id allowed is fine
        let longest = "z".repeat(limits.max_stream_id_len);
        store
            .append(&longest, ExpectedVersion::NoStream, vec![event("z", 1, 10)])
            .unwrap();
        assert_eq!(store.stream_version(&longest).unwrap(), 1);
    }
}

#[test]
fn path_like_ids_and_type_names_are_plain_data() {
    for (disk_name, disk) in disks() {
        let store = disk.open();
        let names = [
            "../outside",
            "../../../../../../tmp/x",
            "/etc/passwd",
            "..",
            "snapshots/../index.dat",
            "00000000000000000001.seg",
            "LOCK",
            "index.dat",
        ];
        for (i, id) in names.iter().enumerate() {
            let e = NewEvent::new(*id, 1, format!(r#"{{"i":{i}}}"#).into_bytes());
            store
                .append(id, ExpectedVersion::NoStream, vec![e])
                .unwrap();
        }
        drop(store);
        assert!(
            disk.outside().is_empty(),
            "{disk_name}: files outside the store"
        );
        let files = disk.files();
        assert!(
            files.keys().all(|p| !names
                .iter()
                .any(|n| p.ends_with(n) && !n.ends_with(".dat") && !n.ends_with(".seg"))),
            "{disk_name}: a stream id became a file name: {:?}",
            files.keys().collect::<Vec<_>>()
        );
        let store = disk.open();
        for id in names {
            let got: Vec<_> = store
                .read_stream(id, 1)
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert_eq!(got.len(), 1, "{disk_name}: {id}");
            assert_eq!(
                (got[0].stream_id.as_str(), got[0].event_type.as_str()),
                (id, id)
            );
        }
    }
}

fn nested(depth: usize) -> serde_json::Value {
    let mut v = serde_json::Value::Null;
    for _ in 0..depth {
        v = serde_json::Value::Array(vec![v]);
    }
    v
}

#[test]
fn hostile_batches_payloads_and_metadata_are_refused_and_write_nothing() {
    let limits = Limits::default();
    let depth = limits.max_json_depth;
    let big_string = |len: usize| {
        let mut p = vec![b'"'];
        p.resize(len - 1, b'a');
        p.push(b'"');
        p
    };
    type Batch = Box<dyn Fn() -> Vec<NewEvent>>;
    type Case = (&'static str, Batch, fn(&StoreError) -> bool);
    let cases: Vec<Case> = vec![
        ("empty batch", Box::new(Vec::new), |e| {
            matches!(e, StoreError::EmptyBatch { .. })
        }),
        (
            "event one byte over the size limit",
            Box::new(move || {
                vec![NewEvent::new(
                    "Big",
                    1,
                    big_string(limits.max_event_size + 1),
                )]
            }),
            |e| matches!(e, StoreError::EventTooLarge { index: 0, .. }),
        ),
        (
            "batch over the byte limit",
            Box::new(move || {
                (0..limits.max_batch_size / limits.max_event_size + 1)
                    .map(|_| NewEvent::new("Big", 1, big_string(limits.max_event_size)))
                    .collect()
            }),
            |e| matches!(e, StoreError::BatchTooLarge { .. }),
        ),
        (
            "batch over the event count limit",
            Box::new(move || {
                (0..limits.max_batch_events + 1)
                    .map(|i| event("s", i as u64, 2))
                    .collect()
            }),
            |e| matches!(e, StoreError::BatchTooLarge { .. }),
        ),
        (
            "non-UTF-8 payload",
            Box::new(|| vec![NewEvent::new("T", 1, b"\"\xc3\x28\"".to_vec())]),
            |e| matches!(e, StoreError::InvalidEvent { .. }),
        ),
        (
            "raw NUL in a JSON string",
            Box::new(|| vec![NewEvent::new("T", 1, b"\"a\0b\"".to_vec())]),
            |e| matches!(e, StoreError::InvalidEvent { .. }),
        ),
        (
            "two JSON values",
            Box::new(|| vec![NewEvent::new("T", 1, b"{} {}".to_vec())]),
            |e| matches!(e, StoreError::InvalidEvent { .. }),
        ),
        (
            "payload one level too deep",
            Box::new(move || {
                vec![NewEvent::new(
                    "T",
                    1,
                    nested(depth + 1).to_string().into_bytes(),
                )]
            }),
            |e| matches!(e, StoreError::InvalidEvent { .. }),
        ),
        (
            "payload 100 000 levels deep",
            Box::new(|| {
                let p = format!("{}{}", "{\"a\":".repeat(100_000), "}".repeat(100_000));
                vec![NewEvent::new("T", 1, p.into_bytes())]
            }),
            |e| matches!(e, StoreError::InvalidEvent { .. }),
        ),
        (
            "metadata one level too deep",
            Box::new(move || {
                vec![
                    event("s", 1, 10)
                        .with_metadata(Metadata::new().with("deep", nested(depth + 1))),
                ]
            }),
            |e| matches!(e, StoreError::InvalidEvent { .. }),
        ),
        (
            "event type with a control character",
            Box::new(|| vec![NewEvent::new("Type\u{1b}", 1, b"{}".to_vec())]),
            |e| matches!(e, StoreError::InvalidEvent { .. }),
        ),
        (
            "event type of 10 KB",
            Box::new(|| vec![NewEvent::new("T".repeat(10 * 1024), 1, b"{}".to_vec())]),
            |e| matches!(e, StoreError::InvalidEvent { .. }),
        ),
        (
            "schema version 0",
            Box::new(|| vec![NewEvent::new("T", 0, b"{}".to_vec())]),
            |e| matches!(e, StoreError::InvalidEvent { .. }),
        ),
        (
            "one bad event among good ones",
            Box::new(|| {
                let mut b: Vec<NewEvent> = (0..5).map(|i| event("s", i, 10)).collect();
                b[4].payload = b"\xff".to_vec();
                b
            }),
            |e| matches!(e, StoreError::InvalidEvent { index: 4, .. }),
        ),
        (
            "the same event id twice",
            Box::new(|| {
                let e = event("s", 1, 10);
                vec![e.clone(), e]
            }),
            |e| matches!(e, StoreError::DuplicateEventId { .. }),
        ),
    ];
    for (disk_name, disk) in disks() {
        let store = disk.open();
        store
            .append("s-1", ExpectedVersion::Any, vec![event("s-1", 1, 20)])
            .unwrap();
        for (what, batch, is_expected) in &cases {
            refused(
                &*disk,
                &store,
                &format!("{disk_name}, {what}"),
                is_expected,
                |s| s.append("s-1", ExpectedVersion::Any, batch()),
            );
        }
        // right at the limits is accepted and round-trips
        let at_limit = vec![
            NewEvent::new("Big", 1, big_string(limits.max_event_size)),
            NewEvent::new("Deep", 1, nested(depth).to_string().into_bytes()),
            event("s-1", 2, 10).with_metadata(
                Metadata::new()
                    .with("deep", nested(depth - 1))
                    .with("nul \0 key", "value with \0 and \u{1b}"),
            ),
        ];
        store
            .append("s-1", ExpectedVersion::Exact(1), at_limit.clone())
            .unwrap();
        drop(store);
        let store = disk.open();
        let got: Vec<_> = store
            .read_stream("s-1", 2)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(got.len(), 3, "{disk_name}");
        for (g, sent) in got.iter().zip(&at_limit) {
            assert_eq!(g.payload, sent.payload, "{disk_name}");
            assert_eq!(g.metadata, sent.metadata, "{disk_name}");
        }
    }
}

#[test]
fn segment_sizes_out_of_bounds_are_refused_before_anything_is_created() {
    // below 4 KiB a frame hardly fits; above 2 GiB a sealed segment's index would count
    // past 32 bits and fail its own check on every seal
    for size in [0, 4095, FileStoreOptions::MAX_SEGMENT_SIZE + 1, u64::MAX] {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("store");
        let options = FileStoreOptions {
            segment_size: size,
            ..FileStoreOptions::default()
        };
        match FileStore::open_with(&dir, options) {
            Err(es_store_fs::OpenError::InvalidOptions(message)) => {
                assert!(message.contains("segment_size"), "{message}")
            }
            other => panic!("{size}: {:?}", other.map(|_| ())),
        }
        assert!(!dir.exists(), "{size}");
    }
    let root = tempfile::tempdir().unwrap();
    let options = FileStoreOptions {
        segment_size: FileStoreOptions::MAX_SEGMENT_SIZE,
        ..FileStoreOptions::default()
    };
    FileStore::open_with(root.path().join("store"), options).unwrap();
}
