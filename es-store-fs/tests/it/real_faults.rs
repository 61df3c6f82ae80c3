//! Faults of the real system rather than of a simulated disk:
//!
//! - a file system that is really full: a small `tmpfs` mounted for the test (as root;
//!   elsewhere the test says it was skipped and why);
//! - system calls that really fail, in a child process run under
//!   `strace -e inject=...`: `fdatasync`, `pwrite64` and `fallocate` failing with `EIO`
//!   or `ENOSPC` while a writer appends, and `pread64` failing with `EIO` while a store
//!   opens and reads. (Where `strace` is missing, the test says it was skipped.)
//!
//! Each checks what the simulated faults check: every acknowledged append is there after
//! a reopen, nothing is there in part, a failure is a typed error that names what
//! failed, and a failed read changes no file.

use crate::common::{Attempt, Outcome, event, next_append_works, verify};
use es_core::{EventStore, ExpectedVersion, StoreError};
use es_store_fs::{Durability, FileStore, FileStoreOptions};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs of `size` mounted at a fresh directory, unmounted on drop.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    /// Mounts it, or says why it cannot (not root, no permission to mount).
    fn mount(size: &str) -> Result<SmallDisk, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("running mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(SmallDisk { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Makes the file system `size` large, keeping its files.
    fn resize(&self, size: &str) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(self.dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

fn skipped(test: &str, why: &str) {
    println!("[skipped] {test}: {why}");
}

/// Up to `at_most` appends of about `size` bytes to a few streams, stopping at the first
/// that fails; returns the attempts and that failure.
fn append_some(store: &FileStore, size: usize, at_most: u64) -> (Vec<Attempt>, Option<StoreError>) {
    let mut attempts = Vec::new();
    let first = store.head_position().unwrap_or(0) * 2;
    for n in first..first + at_most {
        let stream = format!("s-{}", n % 5);
        let events = vec![event(&stream, n, size), event(&stream, n + 1_000_000, 30)];
        let result = store.append(&stream, ExpectedVersion::Any, events.clone());
        let outcome = match &result {
            Ok(r) => Outcome::Acked { result: *r, at: 0 },
            Err(StoreError::Io(_)) => Outcome::Failed,
            Err(_) => Outcome::Refused,
        };
        attempts.push(Attempt {
            stream,
            expected: ExpectedVersion::Any,
            events,
            started: 0,
            outcome,
            newest_segment: 0,
        });
        if let Err(e) = result {
            return (attempts, Some(e));
        }
    }
    (attempts, None)
}

/// Appends until one fails; returns the attempts and the failure.
fn append_until_failure(
    store: &FileStore,
    size: usize,
    at_most: u64,
) -> (Vec<Attempt>, StoreError) {
    match append_some(store, size, at_most) {
        (attempts, Some(e)) => (attempts, e),
        (_, None) => panic!("{at_most} appends did not fill the disk"),
    }
}

fn acked(a: &Attempt) -> bool {
    matches!(a.outcome, Outcome::Acked { .. })
}

/// A store on a file system that fills up: the append that finds it full fails with
/// `StorageFull`, naming the disk's state; the appends before it stay readable, in the
/// same process and after a reopen on the still full disk; once there is room again, the
/// store takes appends again. In every durability mode, with and without preallocation.
#[test]
fn a_really_full_file_system() {
    let periodic = Durability::Periodic(std::time::Duration::from_millis(1));
    for (durability, preallocate, size) in [
        (Durability::Always, 0, 3000),
        (Durability::Always, 64 * 1024, 700),
        (Durability::None, 0, 5000),
        (periodic, 64 * 1024, 3000),
        (Durability::Always, 0, 200),
        (periodic, 0, 9000),
    ] {
        let disk = match SmallDisk::mount("2m") {
            Ok(disk) => disk,
            Err(why) => return skipped("a_really_full_file_system", &why),
        };
        let dir = disk.path().join("store");
        let options = || FileStoreOptions {
            durability,
            segment_size: 256 * 1024,
            preallocate,
            ..FileStoreOptions::default()
        };
        let store = FileStore::open_with(&dir, options()).unwrap();
        let (attempts, error) = append_until_failure(&store, size, 100_000);
        let case = format!("{durability:?}, preallocate {preallocate}, events of {size} bytes");
        match &error {
            StoreError::Io(e) => {
                assert_eq!(e.kind(), std::io::ErrorKind::StorageFull, "{case}: {error}")
            }
            other => panic!("{case}: the append that filled the disk failed with {other:?}"),
        }
        verify(&store, &attempts, acked)
            .unwrap_or_else(|e| panic!("{case}, before reopening: {e}"));
        // more appends while the disk stays full: a large one fails again, typed; small
        // ones may fit in the room the failed append left
        let (more, again) = append_some(&store, 3000, 3);
        assert!(
            again.as_ref().is_none_or(|again| matches!(again, StoreError::Io(e) if e.kind() == std::io::ErrorKind::StorageFull)
                || matches!(again, StoreError::ReadOnly(_))),
            "{case}: {again:?}"
        );
        let attempts: Vec<Attempt> = attempts.into_iter().chain(more).collect();
        verify(&store, &attempts, acked).unwrap_or_else(|e| panic!("{case}, still full: {e}"));
        drop(store);

        // still full: the store opens and every acknowledged append is there
        let store = FileStore::open_with(&dir, options())
            .unwrap_or_else(|e| panic!("{case}: reopening on the full disk: {e}"));
        verify(&store, &attempts, acked).unwrap_or_else(|e| panic!("{case}, reopened full: {e}"));
        drop(store);

        disk.resize("16m");
        let store = FileStore::open_with(&dir, options()).unwrap();
        verify(&store, &attempts, acked).unwrap_or_else(|e| panic!("{case}, with room: {e}"));
        next_append_works(&store).unwrap_or_else(|e| panic!("{case}: {e}"));
        store.close().unwrap();
        let acknowledged = attempts.iter().filter(|a| acked(a)).count();
        println!(
            "[figure] real full disk, {case}: {acknowledged} appends acknowledged before it filled"
        );
    }
}

/// A store whose disk fills takes appends again in the same process once there is room:
/// the append that found the disk full wrote nothing that stays.
#[test]
fn a_full_file_system_with_room_again_takes_appends_without_a_reopen() {
    for durability in [Durability::Always, Durability::None] {
        let disk = match SmallDisk::mount("1m") {
            Ok(disk) => disk,
            Err(why) => {
                return skipped(
                    "a_full_file_system_with_room_again_takes_appends_without_a_reopen",
                    &why,
                );
            }
        };
        let dir = disk.path().join("store");
        let options = FileStoreOptions {
            durability,
            segment_size: 128 * 1024,
            ..FileStoreOptions::default()
        };
        let store = FileStore::open_with(&dir, options.clone()).unwrap();
        let (mut attempts, error) = append_until_failure(&store, 2000, 100_000);
        assert!(
            matches!(&error, StoreError::Io(e) if e.kind() == std::io::ErrorKind::StorageFull),
            "{error:?}"
        );
        disk.resize("8m");
        let (more, failed) = append_some(&store, 2000, 20);
        assert!(
            failed.is_none(),
            "{durability:?}: with room again: {failed:?}"
        );
        attempts.extend(more);
        verify(&store, &attempts, acked).unwrap();
        store.close().unwrap();
        let store = FileStore::open_with(&dir, options).unwrap();
        verify(&store, &attempts, acked).unwrap();
    }
}

const CHILD: &str = "ES_REAL_FAULT_CHILD";

/// Whether `strace` can run here.
fn strace_works() -> Result<(), String> {
    match Command::new("strace").arg("-V").output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!("strace -V failed: {out:?}")),
        Err(e) => Err(format!("strace is not installed ({e})")),
    }
}

/// The name the test harness gives `real_fault_child`, without the binary's name.
fn child_test_name(test: &str) -> String {
    let module = module_path!().split_once("::").map_or("", |(_, path)| path);
    if module.is_empty() {
        test.to_owned()
    } else {
        format!("{module}::{test}")
    }
}

/// Runs this test binary's `test` under `strace` with `inject` (an `-e inject=` value),
/// on the calls that touch the files `only` when it names any, the child's role given by
/// `env`; returns its stdout and stderr and whether it exited
/// cleanly.
fn run_under_strace(
    test: &str,
    inject: &str,
    only: &[PathBuf],
    env: &[(&str, String)],
) -> (String, String, bool) {
    let mut command = Command::new("strace");
    for path in only {
        command.arg("-P").arg(path);
    }
    command
        .args(["-f", "-qq", "-o", "/dev/null", "-e"])
        // a fault is injected only into a traced call
        .arg(format!(
            "trace={}",
            inject.split(':').next().unwrap_or_default()
        ))
        .arg("-e")
        .arg(format!("inject={inject}"))
        .arg(std::env::current_exe().unwrap())
        .args([
            child_test_name(test).as_str(),
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ]);
    for (k, v) in env {
        command.env(k, v);
    }
    let out = command.output().unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.success(),
    )
}

fn fault_options(mode: u64) -> FileStoreOptions {
    FileStoreOptions {
        durability: match mode % 3 {
            0 => Durability::Always,
            1 => Durability::Periodic(std::time::Duration::from_millis(1)),
            _ => Durability::None,
        },
        segment_size: 64 * 1024,
        preallocate: if mode.is_multiple_of(2) { 0 } else { 16 * 1024 },
        ..FileStoreOptions::default()
    }
}

/// The writer's role: appends one after the other, reporting each before it starts and
/// how it ended, until three have failed or 300 have been made; then closes the store.
/// Any panic fails the parent's check that the child exited cleanly.
#[test]
fn real_fault_writer_child() {
    let Ok(dir) = std::env::var(CHILD) else {
        return;
    };
    let mode: u64 = std::env::var("ES_REAL_FAULT_MODE")
        .unwrap()
        .parse()
        .unwrap();
    let say = |v: serde_json::Value| println!("\n{v}");
    let store = match FileStore::open_with(&dir, fault_options(mode)) {
        Ok(store) => store,
        Err(e) => return say(serde_json::json!({ "open_failed": e.to_string() })),
    };
    let mut failures = 0;
    for i in 0..300u64 {
        let stream = format!("s-{}", i % 7);
        let events: Vec<_> = (0..1 + i % 3)
            .map(|k| event(&stream, i << 8 | k, 100 + (i as usize * 37) % 2000))
            .collect();
        let key = i.to_string();
        say(serde_json::json!({
            "start": key,
            "stream": stream,
            "events": events.iter().map(crate::kill::event_json).collect::<Vec<_>>(),
        }));
        match store.append(&stream, ExpectedVersion::Any, events) {
            Ok(r) => say(serde_json::json!({
                "ack": key,
                "r": [r.first_version, r.last_version, r.first_position, r.last_position],
            })),
            Err(e) => {
                let kind = match &e {
                    StoreError::Io(_) => "io",
                    StoreError::ReadOnly(_) => "read-only",
                    _ => "other",
                };
                say(serde_json::json!({ "failed": key, "kind": kind, "message": e.to_string() }));
                failures += 1;
                if failures == 3 {
                    break;
                }
            }
        }
    }
    let closed = store.close().map_err(|e| e.to_string());
    say(serde_json::json!({ "closed": format!("{closed:?}") }));
}

/// Reads the writer child's report: the attempts, and the failure messages.
fn read_report(stdout: &str) -> (Vec<Attempt>, Vec<serde_json::Value>) {
    let mut attempts: Vec<Attempt> = Vec::new();
    let mut by_key = std::collections::HashMap::new();
    let mut failures = Vec::new();
    for line in stdout.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if let Some(key) = v["start"].as_str() {
            by_key.insert(key.to_owned(), attempts.len());
            attempts.push(crate::kill::started_attempt(&v));
        } else if let Some(key) = v["ack"].as_str() {
            attempts[by_key[key]].outcome = crate::kill::acked_outcome(&v);
        } else if let Some(key) = v["failed"].as_str() {
            attempts[by_key[key]].outcome = if v["kind"] == "io" {
                Outcome::Failed
            } else {
                Outcome::Refused
            };
            failures.push(v);
        } else if v.get("open_failed").is_some()
            || (v.get("closed").is_some() && v["closed"] != "Ok(())")
        {
            failures.push(v);
        }
    }
    (attempts, failures)
}

/// A writer process whose `fdatasync`, `pwrite64`, `fsync` (of a directory),
/// `fallocate` or `rename` really fails, once or from some call on, with `EIO` or
/// `ENOSPC`: it does not panic, every failure is a typed error, and after a reopen in a
/// process without faults every acknowledged append is there and none in part, and the
/// store takes appends.
#[test]
fn writer_system_calls_that_really_fail() {
    if std::env::var(CHILD).is_ok() {
        return;
    }
    if let Err(why) = strace_works() {
        return skipped("writer_system_calls_that_really_fail", &why);
    }
    let mut checked = 0u64;
    let mut failed_appends = 0u64;
    let mut round = 0u64;
    for syscall in [
        "fdatasync",
        "pwrite64",
        "fsync",
        "ftruncate",
        "rename",
        "openat",
    ] {
        for errno in ["EIO", "ENOSPC"] {
            // every call from some on, or one call (of `openat` only one: the C library
            // opens files too, when a thread ends)
            let whens: &[&str] = if syscall == "openat" {
                &["3", "20", "40", "90"]
            } else {
                &["3", "20", "7+", "60+"]
            };
            for when in whens {
                round += 1;
                let mode = round % 6;
                let dir = tempfile::tempdir().unwrap();
                let inject = format!("{syscall}:error={errno}:when={when}");
                let (stdout, stderr, clean) = run_under_strace(
                    "real_fault_writer_child",
                    &inject,
                    &[],
                    &[
                        (CHILD, dir.path().to_str().unwrap().to_owned()),
                        ("ES_REAL_FAULT_MODE", mode.to_string()),
                    ],
                );
                let case = format!("{inject}, mode {mode}");
                assert!(clean, "{case}: the writer did not exit cleanly:\n{stderr}");
                let (attempts, failures) = read_report(&stdout);
                for f in &failures {
                    let message = f["message"]
                        .as_str()
                        .or(f["open_failed"].as_str())
                        .or(f["closed"].as_str())
                        .unwrap_or("");
                    assert!(
                        !message.is_empty(),
                        "{case}: a failure without a message: {f}"
                    );
                }
                failed_appends += failures.len() as u64;
                println!(
                    "[case] {case}: {} acknowledged, {} failed{}",
                    attempts.iter().filter(|a| acked(a)).count(),
                    failures.len(),
                    failures
                        .first()
                        .map(|f| format!(": {f}"))
                        .unwrap_or_default()
                );
                let store = FileStore::open(dir.path())
                    .unwrap_or_else(|e| panic!("{case}: reopening without faults: {e}"));
                let found = verify(&store, &attempts, acked).unwrap_or_else(|e| {
                    panic!("{case}: {e}\nrecovery: {:?}", store.recovery_report())
                });
                checked += found.required;
                next_append_works(&store).unwrap_or_else(|e| panic!("{case}: {e}"));
            }
        }
    }
    println!(
        "[figure] real system call faults: {round} writer runs, {checked} acknowledged appends checked, {failed_appends} failures reported"
    );
}

/// The reader's role: opens the store (read-only when asked) and reads the whole log and
/// every stream, reporting what it read or the error it met.
#[test]
fn real_fault_reader_child() {
    let Ok(dir) = std::env::var("ES_REAL_FAULT_READ") else {
        return;
    };
    let read_only = std::env::var("ES_REAL_FAULT_RO").as_deref() == Ok("1");
    let say = |v: serde_json::Value| println!("\n{v}");
    let options = FileStoreOptions {
        read_only,
        ..FileStoreOptions::default()
    };
    let store = match FileStore::open_with(&dir, options) {
        Ok(store) => store,
        Err(e) => return say(serde_json::json!({ "error": e.to_string(), "at": "open" })),
    };
    let mut events = 0u64;
    match store.read_all(1) {
        Ok(all) => {
            for e in all {
                match e {
                    Ok(_) => events += 1,
                    Err(e) => {
                        return say(
                            serde_json::json!({ "error": e.to_string(), "at": "read_all" }),
                        );
                    }
                }
            }
        }
        Err(e) => return say(serde_json::json!({ "error": e.to_string(), "at": "read_all" })),
    }
    for (stream, _) in store.streams() {
        let read = store
            .read_stream(&stream, 1)
            .and_then(|s| s.collect::<Result<Vec<_>, _>>());
        if let Err(e) = read {
            return say(serde_json::json!({ "error": e.to_string(), "at": "read_stream" }));
        }
    }
    say(serde_json::json!({ "read": events }));
}

/// Every file of `dir` but the lock, with its bytes.
fn files_of(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name() != "LOCK")
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

/// A store whose `pread64` really fails, once or from some call on, while a process
/// opens it (writable or read-only) and reads it: the process does not panic, a failure
/// is an error naming the file it was reading, a failed open changes no file and a
/// successful one no byte of a segment, and a later open without faults reads every
/// event.
#[test]
fn reads_that_really_fail() {
    if std::env::var("ES_REAL_FAULT_READ").is_ok() {
        return;
    }
    if let Err(why) = strace_works() {
        return skipped("reads_that_really_fail", &why);
    }
    let mut errors = 0u64;
    let mut runs = 0u64;
    for without_index in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let options = FileStoreOptions {
            segment_size: 64 * 1024,
            ..FileStoreOptions::default()
        };
        let store = FileStore::open_with(dir.path(), options).unwrap();
        let (attempts, failure) = append_some(&store, 700, 400);
        assert!(failure.is_none(), "{failure:?}");
        let events: u64 = attempts.iter().map(|a| a.events.len() as u64).sum();
        store.close().unwrap();
        if without_index {
            std::fs::remove_file(dir.path().join("index.dat")).unwrap();
        }
        for read_only in [false, true] {
            for when in ["1", "2", "5", "20", "60", "3+", "30+"] {
                runs += 1;
                let before = files_of(dir.path());
                let inject = format!("pread64:error=EIO:when={when}");
                let (stdout, stderr, clean) = run_under_strace(
                    "real_fault_reader_child",
                    &inject,
                    // the store's files only: the loader reads libraries with pread64
                    &before
                        .keys()
                        .map(|name| dir.path().join(name))
                        .collect::<Vec<_>>(),
                    &[
                        (
                            "ES_REAL_FAULT_READ",
                            dir.path().to_str().unwrap().to_owned(),
                        ),
                        (
                            "ES_REAL_FAULT_RO",
                            if read_only { "1" } else { "0" }.to_owned(),
                        ),
                    ],
                );
                let case =
                    format!("{inject}, read-only {read_only}, index.dat removed {without_index}");
                assert!(clean, "{case}: the reader did not exit cleanly:\n{stderr}");
                let report = stdout
                    .lines()
                    .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                    .next_back()
                    .unwrap_or_else(|| panic!("{case}: no report:\n{stdout}\n{stderr}"));
                let after = files_of(dir.path());
                if let Some(error) = report["error"].as_str() {
                    errors += 1;
                    // the file by its path, and where in it (the marker is read whole)
                    assert!(
                        error.contains(dir.path().to_str().unwrap())
                            && (error.contains("offset") || error.contains("ES-STORE")),
                        "{case}: the error does not name the file and offset: {error}"
                    );
                    if report["at"] == "open" {
                        assert!(before == after, "{case}: a failed open changed files");
                    }
                } else {
                    assert_eq!(report["read"], events, "{case}: {report}");
                }
                for (name, bytes) in &before {
                    if name.ends_with(".seg") {
                        let now = after
                            .get(name)
                            .unwrap_or_else(|| panic!("{case}: {name} is gone"));
                        assert!(
                            now.len() >= bytes.len() && now[..bytes.len()] == bytes[..],
                            "{case}: {name} was changed"
                        );
                    }
                }
                println!("[case] {case}: {report}");
            }
        }
        let store = FileStore::open(dir.path()).unwrap();
        verify(&store, &attempts, acked).unwrap();
    }
    println!(
        "[figure] real read faults: {runs} opens, {errors} failed with an error naming the file"
    );
}
