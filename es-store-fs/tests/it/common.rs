//! Shared helpers of the reliability tests: a ledger of attempted appends and the check
//! that a (re)opened store holds exactly what the ledger allows.
#![allow(dead_code)]

use es_core::{AppendResult, EventStore, ExpectedVersion, Metadata, NewEvent, RecordedEvent};
use es_store_fs::FileStore;
use es_store_fs::vfs::{DirLock, OpenMode, StdFs, Vfs, VfsFile};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Whether the long run was asked for (`ES_RELIABILITY_FULL=1`).
pub fn full() -> bool {
    std::env::var("ES_RELIABILITY_FULL").is_ok_and(|v| v != "0" && !v.is_empty())
}

/// `ci` in the default run, `full` in the long one.
pub fn scale(ci: u32, full_run: u32) -> u32 {
    if full() { full_run } else { ci }
}

/// proptest's settings for a test of `ci` cases in the default run and `full_run` in the
/// long one; a failing case is printed, not saved to a file beside the sources.
pub fn proptest_config(ci: u32, full_run: u32) -> proptest::test_runner::Config {
    proptest::test_runner::Config {
        cases: scale(ci, full_run),
        failure_persistence: None,
        ..proptest::test_runner::Config::default()
    }
}

/// Every event of the store in log order; a read error fails the test.
pub fn all_events(store: &FileStore) -> Vec<RecordedEvent> {
    store
        .read_all(1)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Prints a figure for RELIABILITY.md (visible with `--nocapture`).
pub fn figure(test: &str, what: &str, n: u64) {
    println!("[figure] {test}: {what} = {n}");
}

/// An event whose payload names its stream and number, padded to about `size` bytes.
pub fn event(stream: &str, n: u64, size: usize) -> NewEvent {
    let pad = "p".repeat(size.saturating_sub(24));
    let e = NewEvent::new(
        "Tested",
        1 + (n % 3) as u32,
        format!(r#"{{"s":"{stream}","n":{n},"pad":"{pad}"}}"#).into_bytes(),
    );
    if n.is_multiple_of(4) {
        e.with_metadata(Metadata::new().with_actor("tester").with("n", n))
    } else {
        e
    }
}

/// What became of an attempted append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Still running (or the machine died first).
    Pending,
    /// Acknowledged, at clock time `at`.
    Acked { result: AppendResult, at: u64 },
    /// Refused before writing (conflict, invalid input): must never appear.
    Refused,
    /// Failed with an I/O error: may or may not be stored, but never in part.
    Failed,
}

/// One attempted append.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub stream: String,
    pub expected: ExpectedVersion,
    pub events: Vec<NewEvent>,
    /// Clock time before the call.
    pub started: u64,
    pub outcome: Outcome,
    /// The newest segment file seen right after the call returned.
    pub newest_segment: u64,
}

/// Every append attempted in a run, from any thread.
#[derive(Debug, Default)]
pub struct Ledger {
    pub attempts: Mutex<Vec<Attempt>>,
}

impl Ledger {
    /// Records a call about to start; returns its number.
    pub fn start(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: &[NewEvent],
        now: u64,
    ) -> usize {
        let mut a = self.attempts.lock().unwrap();
        a.push(Attempt {
            stream: stream.to_owned(),
            expected,
            events: events.to_vec(),
            started: now,
            outcome: Outcome::Pending,
            newest_segment: 0,
        });
        a.len() - 1
    }

    /// Records how a call ended.
    pub fn finish(&self, i: usize, result: &Result<AppendResult, es_core::StoreError>, now: u64) {
        use es_core::StoreError as E;
        let outcome = match result {
            Ok(r) => Outcome::Acked {
                result: *r,
                at: now,
            },
            Err(E::Io(_)) => Outcome::Failed,
            Err(E::ReadOnly(_)) => Outcome::Refused,
            Err(_) => Outcome::Refused,
        };
        self.attempts.lock().unwrap()[i].outcome = outcome;
    }

    /// Notes the newest segment file right after call `i` returned.
    pub fn note_segment(&self, i: usize, newest_segment: u64) {
        self.attempts.lock().unwrap()[i].newest_segment = newest_segment;
    }

    pub fn snapshot(&self) -> Vec<Attempt> {
        self.attempts.lock().unwrap().clone()
    }
}

/// The number of a segment file's path, if it is one.
pub fn segment_number(path: &std::path::Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    name.strip_suffix(".seg")?.parse().ok()
}

/// What a check found.
#[derive(Debug, Default, Clone, Copy)]
pub struct Found {
    pub events: u64,
    pub appends: u64,
    pub required: u64,
}

fn read_all(store: &FileStore) -> Result<Vec<RecordedEvent>, String> {
    store
        .read_all(1)
        .map_err(|e| format!("read_all: {e}"))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("read_all item: {e}"))
}

/// Checks that `store` holds whole appends of `attempts` only, byte for byte, with dense
/// positions and versions, and every attempt for which `required` holds.
pub fn verify(
    store: &FileStore,
    attempts: &[Attempt],
    required: impl Fn(&Attempt) -> bool,
) -> Result<Found, String> {
    let all = read_all(store)?;
    let head = store.head_position().map_err(|e| e.to_string())?;
    if head != all.len() as u64 {
        return Err(format!("head {head} but {} events read", all.len()));
    }
    let mut by_id: HashMap<uuid::Uuid, (usize, usize)> = HashMap::new();
    for (a, attempt) in attempts.iter().enumerate() {
        for (k, e) in attempt.events.iter().enumerate() {
            by_id.insert(e.event_id, (a, k));
        }
    }
    let mut versions: BTreeMap<String, u64> = BTreeMap::new();
    let mut seen: HashSet<usize> = HashSet::new();
    let mut found = Found::default();
    let mut i = 0;
    while i < all.len() {
        let e = &all[i];
        if e.position != i as u64 + 1 {
            return Err(format!("position {} at index {i}", e.position));
        }
        let Some(&(a, k)) = by_id.get(&e.event_id) else {
            return Err(format!(
                "event {} at {} was never appended",
                e.event_id, e.position
            ));
        };
        let attempt = &attempts[a];
        if k != 0 {
            return Err(format!(
                "append {a} starts at its event {k} (position {}): a partial append",
                e.position
            ));
        }
        if !seen.insert(a) {
            return Err(format!("append {a} appears twice"));
        }
        if attempt.outcome == Outcome::Refused {
            return Err(format!("refused append {a} was stored at {}", e.position));
        }
        let n = attempt.events.len();
        if i + n > all.len() {
            return Err(format!("append {a} is cut short by the end of the log"));
        }
        let first_version = versions.get(&attempt.stream).copied().unwrap_or(0) + 1;
        for (k, sent) in attempt.events.iter().enumerate() {
            let got = &all[i + k];
            let want_version = first_version + k as u64;
            let same = got.event_id == sent.event_id
                && got.stream_id == attempt.stream
                && got.stream_version == want_version
                && got.position == i as u64 + 1 + k as u64
                && got.event_type == sent.event_type
                && got.schema_version == sent.schema_version
                && got.payload == sent.payload
                && got.metadata == sent.metadata
                && sent.timestamp.is_none_or(|t| t == got.timestamp);
            if !same {
                return Err(format!(
                    "append {a} event {k} differs: stored {got:?}, sent {sent:?}, wanted version {want_version}"
                ));
            }
        }
        if let Outcome::Acked { result, .. } = attempt.outcome {
            let stored = AppendResult {
                first_version,
                last_version: first_version + n as u64 - 1,
                first_position: i as u64 + 1,
                last_position: (i + n) as u64,
                retried: false,
            };
            if stored != result {
                return Err(format!(
                    "append {a} acknowledged as {result:?} but stored as {stored:?}"
                ));
            }
        }
        versions.insert(attempt.stream.clone(), first_version + n as u64 - 1);
        found.events += n as u64;
        found.appends += 1;
        i += n;
    }
    for (a, attempt) in attempts.iter().enumerate() {
        if required(attempt) {
            found.required += 1;
            if !seen.contains(&a) {
                return Err(format!(
                    "acknowledged append {a} ({:?} to `{}`) is lost",
                    attempt.outcome, attempt.stream
                ));
            }
        }
    }
    for (stream, &version) in &versions {
        let got = store.stream_version(stream).map_err(|e| e.to_string())?;
        if got != version {
            return Err(format!(
                "stream `{stream}` at version {got}, log says {version}"
            ));
        }
        let read: Vec<RecordedEvent> = store
            .read_stream(stream, 1)
            .map_err(|e| e.to_string())?
            .collect::<Result<_, _>>()
            .map_err(|e| format!("read_stream `{stream}`: {e}"))?;
        let from_log: Vec<&RecordedEvent> = all.iter().filter(|e| &e.stream_id == stream).collect();
        if read.len() != from_log.len() || read.iter().zip(&from_log).any(|(a, b)| a != *b) {
            return Err(format!("read_stream `{stream}` differs from the log"));
        }
    }
    Ok(found)
}

/// Appends to an existing stream and a new one, and reads both back.
pub fn next_append_works(store: &FileStore) -> Result<(), String> {
    let head = store.head_position().map_err(|e| e.to_string())?;
    let streams = store.streams();
    let target = streams
        .first()
        .map(|(s, _)| s.clone())
        .unwrap_or_else(|| "after-0".to_owned());
    let version = store.stream_version(&target).map_err(|e| e.to_string())?;
    let r = store
        .append(
            &target,
            ExpectedVersion::Exact(version),
            vec![event(&target, 900, 40), event(&target, 901, 40)],
        )
        .map_err(|e| format!("append after reopening: {e}"))?;
    if r.first_position != head + 1 || r.first_version != version + 1 {
        return Err(format!("append after reopening got {r:?} at head {head}"));
    }
    let fresh = format!("fresh-{head}");
    store
        .append(
            &fresh,
            ExpectedVersion::NoStream,
            vec![event(&fresh, 1, 10)],
        )
        .map_err(|e| format!("append to a new stream after reopening: {e}"))?;
    let tail: Vec<RecordedEvent> = store
        .read_all(head + 1)
        .map_err(|e| e.to_string())?
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    if tail.len() != 3 {
        return Err(format!("{} events after the head, expected 3", tail.len()));
    }
    Ok(())
}

/// Where each valid frame of a segment's bytes starts, and where the last one ends.
pub fn frame_starts(bytes: &[u8]) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut at = 32;
    while let Ok(n) = es_store_fs::format::frame_len(&bytes[at.min(bytes.len())..], 1 << 26) {
        if at + n > bytes.len() || es_store_fs::format::check_frame(&bytes[at..at + n]).is_err() {
            break;
        }
        starts.push(at);
        at += n;
    }
    starts.push(at);
    starts
}

/// The real file system, calling `before_sync` before every sync of a segment file (a
/// slow disk, a sync held until the test lets it go).
pub struct SegmentSyncHook {
    pub before_sync: Arc<dyn Fn() + Send + Sync>,
}

struct HookedFile {
    inner: Arc<dyn VfsFile>,
    before_sync: Option<Arc<dyn Fn() + Send + Sync>>,
}

impl std::fmt::Debug for SegmentSyncHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SegmentSyncHook")
    }
}

impl std::fmt::Debug for HookedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HookedFile")
            .field("inner", &self.inner)
            .finish()
    }
}

impl VfsFile for HookedFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.inner.read_at(buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.inner.write_all_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        if let Some(hook) = &self.before_sync {
            hook();
        }
        self.inner.sync_data()
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
    fn try_lock(&self) -> io::Result<bool> {
        self.inner.try_lock()
    }
}

impl Vfs for SegmentSyncHook {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        StdFs.create_dir_all(path)
    }
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn VfsFile>> {
        let segment = path.extension().is_some_and(|e| e == "seg");
        Ok(Arc::new(HookedFile {
            inner: StdFs.open(path, mode)?,
            before_sync: segment.then(|| Arc::clone(&self.before_sync)),
        }))
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        StdFs.list(dir)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        StdFs.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        StdFs.remove_file(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        StdFs.sync_dir(dir)
    }
    fn lock_dir(&self, dir: &Path) -> io::Result<Option<DirLock>> {
        StdFs.lock_dir(dir)
    }
    fn shared_by_the_process(&self) -> bool {
        StdFs.shared_by_the_process()
    }
}

/// A projection that counts the events it is handed.
#[derive(Debug, Default)]
pub struct Count(pub u64);

impl es_core::projection::Projection for Count {
    fn handle(&mut self, _: &RecordedEvent) -> Result<(), es_core::projection::BoxError> {
        self.0 += 1;
        Ok(())
    }
    fn reset(&mut self) -> Result<(), es_core::projection::BoxError> {
        self.0 = 0;
        Ok(())
    }
}

/// The real file system, calling `before_open` with every path about to be opened: an
/// error it returns is the open's (a file that cannot be opened: permissions, a failing
/// disk), and it may act first (start another process's writer, say).
pub struct OnOpen {
    pub before_open: BeforeOpen,
}

/// What [`OnOpen`] calls before each open.
pub type BeforeOpen = Arc<dyn Fn(&Path) -> io::Result<()> + Send + Sync>;

impl std::fmt::Debug for OnOpen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnOpen")
    }
}

/// Opening a path whose name contains `name` fails with `kind`.
pub fn failing_open(name: String, kind: io::ErrorKind) -> OnOpen {
    OnOpen {
        before_open: Arc::new(move |path| {
            if path.to_string_lossy().contains(&name) {
                return Err(io::Error::new(kind, "opening refused by the test"));
            }
            Ok(())
        }),
    }
}

impl Vfs for OnOpen {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        StdFs.create_dir_all(path)
    }
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn VfsFile>> {
        (self.before_open)(path)?;
        StdFs.open(path, mode)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        StdFs.list(dir)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        StdFs.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        StdFs.remove_file(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        StdFs.sync_dir(dir)
    }
    fn lock_dir(&self, dir: &Path) -> io::Result<Option<DirLock>> {
        StdFs.lock_dir(dir)
    }
    fn shared_by_the_process(&self) -> bool {
        StdFs.shared_by_the_process()
    }
}

/// Every entry under `dir`: a file with its bytes, anything else (a directory, a FIFO, a
/// link) with none and, for a directory, what it holds. To check that an operation
/// changed nothing.
pub fn dir_contents(
    dir: &std::path::Path,
) -> std::collections::BTreeMap<std::path::PathBuf, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let kind = std::fs::symlink_metadata(&path).unwrap().file_type();
            let bytes = if kind.is_file() {
                std::fs::read(&path).unwrap()
            } else {
                Vec::new()
            };
            if kind.is_dir() {
                todo.push(path.clone());
            }
            out.insert(path, bytes);
        }
    }
    out
}

/// Options of a store that rolls a segment every few appends.
pub fn small_segments() -> es_store_fs::FileStoreOptions {
    es_store_fs::FileStoreOptions {
        segment_size: 4096,
        preallocate: 0,
        ..es_store_fs::FileStoreOptions::default()
    }
}

/// CRC32C (Castagnoli), bit by bit: the tests do not depend on the crate's checksum
/// code to make a file's checksum hold.
pub fn crc32c_of(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
