//! The `es-store` command-line tool, run as a subprocess (the binary cargo builds for
//! these tests) on a store of shopping carts: listing, reading, verifying, exporting and
//! importing, and a corruption reported with a non-zero exit status.

use es_core::{EventStore, ExpectedVersion, Metadata, NewEvent};
use es_store_fs::FileStore;
use std::path::Path;
use std::process::{Command, Output};

fn run(bin: &Path, args: &[&str]) -> Output {
    Command::new(bin).args(args).output().expect("run")
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn event(event_type: &str, payload: &str) -> NewEvent {
    NewEvent::new(event_type, 1, payload.as_bytes().to_vec())
}

/// Carts 42 (seven events, bought by alice) and 43, and a user stream.
fn write_carts(dir: &Path) {
    let store = FileStore::open(dir).unwrap();
    let cart = |id: &str, events: Vec<NewEvent>| {
        store
            .append(&format!("cart-{id}"), ExpectedVersion::Any, events)
            .unwrap();
    };
    cart("42", vec![event("CartCreated", r#"{"user_id":"alice"}"#)]);
    for (product, quantity) in [("tea", 2), ("cups", 4), ("pot", 1), ("tea", 1)] {
        cart(
            "42",
            vec![event(
                "ProductAdded",
                &format!(
                    r#"{{"product":"{product}","quantity":{quantity},"unit_price_cents":350}}"#
                ),
            )],
        );
    }
    cart("42", vec![event("ProductRemoved", r#"{"product":"pot"}"#)]);
    cart(
        "42",
        vec![event("CartPurchased", "{}").with_metadata(Metadata::new().with_actor("alice"))],
    );
    // import writes a stream's events together: streams written one after the other
    // export the same after a round trip
    cart("43", vec![event("CartCreated", r#"{"user_id":"bob"}"#)]);
    for n in 0..10 {
        store
            .append(
                "user-alice",
                ExpectedVersion::Any,
                vec![event("Visited", &format!(r#"{{"page":{n}}}"#))],
            )
            .unwrap();
    }
    store.close().unwrap();
}

#[test]
fn the_tool_reads_verifies_exports_and_imports_a_store() {
    let tool = Path::new(env!("CARGO_BIN_EXE_es-store"));
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("events");
    write_carts(&store);
    let s = store.to_str().unwrap();

    let stats = run(tool, &["--json", "stats", s]);
    assert!(stats.status.success());
    let stats: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
    let events = stats["events"].as_u64().unwrap();
    assert!(events >= 17, "{stats}");

    let streams = text(&run(tool, &["streams", s, "--kind", "cart"]));
    assert!(streams.lines().any(|l| l == "cart-42\t7"), "{streams}");

    let read = run(tool, &["--json", "read", s, "cart-42", "--from", "7"]);
    let line: serde_json::Value = serde_json::from_slice(&read.stdout).unwrap();
    assert_eq!(line["event_type"], "CartPurchased");
    assert_eq!(line["metadata"]["actor"], "alice");

    let tail = text(&run(tool, &["tail", s, "--from", "2"]));
    assert!(tail.starts_with("#2 "), "{tail}");

    let verify = run(tool, &["verify", s]);
    assert!(verify.status.success(), "{}", text(&verify));
    assert!(
        text(&verify).contains(&format!("ok: {events} events")),
        "{}",
        text(&verify)
    );

    // export, then import into a new store: the same events with the same ids
    let export = work.path().join("export.jsonl");
    let out = run(tool, &["export", s, "--out", export.to_str().unwrap()]);
    assert!(out.status.success());
    let copy = work.path().join("copy");
    let import = run(
        tool,
        &[
            "--json",
            "import",
            copy.to_str().unwrap(),
            export.to_str().unwrap(),
        ],
    );
    assert!(import.status.success(), "{}", text(&import));
    let again = work.path().join("export2.jsonl");
    run(
        tool,
        &[
            "export",
            copy.to_str().unwrap(),
            "--out",
            again.to_str().unwrap(),
        ],
    );
    assert!(
        std::fs::read_to_string(&export).unwrap() == std::fs::read_to_string(&again).unwrap(),
        "a round trip through import changed the export"
    );
    // importing the same export again is idempotent: same ids, nothing written, and
    // the report says so rather than counting the streams as imported
    let twice = run(
        tool,
        &[
            "--json",
            "import",
            copy.to_str().unwrap(),
            export.to_str().unwrap(),
        ],
    );
    assert!(twice.status.success(), "{}", text(&twice));
    let report: serde_json::Value = serde_json::from_slice(&twice.stdout).unwrap();
    assert_eq!(report["streams_imported"], 0, "{report}");
    assert_eq!(report["events_imported"], 0, "{report}");
    assert_eq!(report["streams_already_imported"], 3, "{report}");
    let stats: serde_json::Value =
        serde_json::from_slice(&run(tool, &["--json", "stats", copy.to_str().unwrap()]).stdout)
            .unwrap();
    assert_eq!(stats["events"].as_u64(), Some(events));
    // other events for a stream that exists are refused, all of that stream and nothing else
    let other = std::fs::read_to_string(&export).unwrap();
    let mut lines: Vec<String> = other.lines().map(str::to_owned).collect();
    let first: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    let mut changed = first.clone();
    changed["event_id"] = serde_json::json!("00000000-0000-4000-8000-000000000001");
    lines[0] = changed.to_string();
    let conflicting = work.path().join("conflicting.jsonl");
    std::fs::write(&conflicting, lines.join("\n")).unwrap();
    let refused = run(
        tool,
        &[
            "import",
            copy.to_str().unwrap(),
            conflicting.to_str().unwrap(),
        ],
    );
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    let stream = first["stream_id"].as_str().unwrap();
    assert!(
        text(&refused).contains(&format!("refused stream `{stream}`")),
        "{}",
        text(&refused)
    );
    assert_eq!(text(&refused).matches("refused stream").count(), 1);

    // damage a frame in the middle of the log: verify names segment and offset
    let segment = store.join(format!("{:020}.seg", 0));
    let mut bytes = std::fs::read(&segment).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    std::fs::write(&segment, &bytes).unwrap();
    let bad = run(tool, &["verify", s]);
    assert_eq!(bad.status.code(), Some(1));
    let report = text(&bad);
    assert!(
        report.contains("CORRUPTED: ") && report.contains("(segment 0) at offset"),
        "{report}"
    );
    assert!(report.contains("00000000000000000000.seg"), "{report}");
    // an export meets the damage: the error names the store and its segment, not the
    // export's own file, and no file is left
    let damaged_export = work.path().join("damaged.jsonl");
    let failed = run(
        tool,
        &["export", s, "--out", damaged_export.to_str().unwrap()],
    );
    let stderr = String::from_utf8_lossy(&failed.stderr).into_owned();
    assert!(!failed.status.success());
    assert!(
        stderr.contains(&format!("reading {s}")) && stderr.contains("00000000000000000000.seg"),
        "{stderr}"
    );
    assert!(!damaged_export.exists());

    let missing = run(tool, &["stats", work.path().join("nope").to_str().unwrap()]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("is not a store directory"));

    // a directory that is not a store is refused by every command, and left alone
    let notes = work.path().join("notes");
    std::fs::create_dir(&notes).unwrap();
    std::fs::write(notes.join("todo.md"), "- buy tea\n").unwrap();
    for command in ["stats", "verify"] {
        let refused = run(tool, &[command, notes.to_str().unwrap()]);
        assert!(!refused.status.success(), "{command}");
    }
    assert_eq!(std::fs::read_dir(&notes).unwrap().count(), 1);
}

/// A stream longer than one append allows by default (10,000 events), up to the
/// tool's limit of 100,000, is imported whole, and an input line longer than any exported event is refused as it is read, naming
/// the line, without reading it whole.
#[test]
fn import_takes_long_streams_whole_and_refuses_endless_lines() {
    let tool = Path::new(env!("CARGO_BIN_EXE_es-store"));
    let work = tempfile::tempdir().unwrap();
    let from = work.path().join("from");
    let store = FileStore::open_with(
        &from,
        es_store_fs::FileStoreOptions {
            durability: es_store_fs::Durability::None,
            ..Default::default()
        },
    )
    .unwrap();
    for chunk in 0..100 {
        let events = (0..1000)
            .map(|n| event("Visited", &format!(r#"{{"page":{}}}"#, chunk * 1000 + n)))
            .collect();
        store
            .append("user-alice", ExpectedVersion::Any, events)
            .unwrap();
    }
    store.close().unwrap();
    let export = work.path().join("export.jsonl");
    let out = run(
        tool,
        &[
            "export",
            from.to_str().unwrap(),
            "--out",
            export.to_str().unwrap(),
        ],
    );
    assert!(out.status.success());
    let into = work.path().join("into");
    let import = run(
        tool,
        &[
            "--json",
            "import",
            into.to_str().unwrap(),
            export.to_str().unwrap(),
        ],
    );
    assert!(import.status.success(), "{}", text(&import));
    let report: serde_json::Value = serde_json::from_slice(&import.stdout).unwrap();
    assert_eq!(report["events_imported"], 100_000, "{report}");
    let imported = FileStore::open(&into).unwrap();
    assert_eq!(imported.head_position().unwrap(), 100_000);
    let tail: Vec<_> = imported
        .read_stream("user-alice", 99_999)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(tail.len(), 2);
    assert_eq!(tail[1].payload, br#"{"page":99999}"#);
    imported.close().unwrap();

    let target = FileStore::open(work.path().join("endless")).unwrap();
    let mut endless =
        std::io::BufReader::new(std::io::Read::chain(&b"\n"[..], std::io::repeat(b'a')));
    match es_store_fs::tools::import_jsonl(&target, &mut endless) {
        Err(es_store_fs::tools::ImportError::BadLine { line: 2, message }) => {
            assert!(message.contains("longer than"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(target.head_position().unwrap(), 0);
}

/// `tail --follow` stops with an error when the log it printed from was replaced: here a
/// store of two events, then one of seven (grown past what was printed), in place of one
/// of five. Going on would skip the events that take the printed positions again.
#[test]
fn tail_follow_stops_when_the_log_moves_back_below_what_it_printed() {
    for replacement in [2, 7] {
        tail_follow_stops_on_a_replaced_log(replacement);
    }
}

fn tail_follow_stops_on_a_replaced_log(replacement: u64) {
    use std::io::BufRead;
    let tool = Path::new(env!("CARGO_BIN_EXE_es-store"));
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("events");
    let fill = |dir: &Path, n: u64| {
        let store = FileStore::open(dir).unwrap();
        for k in 0..n {
            store
                .append(
                    "s-1",
                    ExpectedVersion::Any,
                    vec![event("Added", &format!(r#"{{"k":{k}}}"#))],
                )
                .unwrap();
        }
        store.close().unwrap();
    };
    fill(&dir, 5);
    let mut child = Command::new(tool)
        .args(["tail", dir.to_str().unwrap(), "--follow"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    for _ in 0..5 {
        lines.next().unwrap().unwrap();
    }
    // the shorter store is put in place at once (the tool polls twice a second)
    let shorter = work.path().join("shorter");
    fill(&shorter, replacement);
    std::fs::rename(&dir, work.path().join("gone")).unwrap();
    std::fs::rename(&shorter, &dir).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("tail --follow went on over a log that moved back");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(!status.success());
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(
        stderr.contains("was printed at position 5") && stderr.contains("was replaced"),
        "{stderr}"
    );
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The bytes of segment 0 of `dir` with the frame of `position` damaged (one frame per
/// event, as `write_carts` writes them): a byte of its body flipped, so that it fails its
/// checksum while the frames around it stay intact.
fn damage_frame(dir: &Path, position: usize) {
    let segment = dir.join(format!("{:020}.seg", 0));
    let mut bytes = std::fs::read(&segment).unwrap();
    let starts = crate::common::frame_starts(&bytes);
    let (from, to) = (starts[position - 1], starts[position]);
    bytes[(from + to) / 2] ^= 0x55;
    std::fs::write(&segment, &bytes).unwrap();
}

/// Makes the index file impossible to write: its temporary file's name is taken by a
/// directory that is not empty, so that closing the store fails after everything else.
fn block_the_index_write(dir: &Path) {
    std::fs::create_dir_all(dir.join("index.dat.tmp").join("in-the-way")).unwrap();
}

/// A repair that cut the log and then failed to write the index at close still says
/// what it cut (in text and in JSON), before its error, and exits non-zero.
#[test]
fn a_repair_whose_close_fails_still_reports_what_it_cut() {
    let tool = Path::new(env!("CARGO_BIN_EXE_es-store"));
    let work = tempfile::tempdir().unwrap();
    for json in [false, true] {
        let dir = work.path().join(if json { "json" } else { "text" });
        write_carts(&dir);
        damage_frame(&dir, 5);
        block_the_index_write(&dir);
        let mut args = vec!["repair", dir.to_str().unwrap()];
        if json {
            args.insert(0, "--json");
        }
        let o = run(tool, &args);
        assert!(!o.status.success(), "{}", text(&o));
        assert!(
            stderr(&o).contains("closing the store failed"),
            "{}",
            stderr(&o)
        );
        if json {
            let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            let repaired = &report["repaired"];
            assert!(repaired["bytes_dropped"].as_u64().unwrap() > 0, "{report}");
            assert_eq!(repaired["first_position_cut"], 5, "{report}");
            assert_eq!(repaired["last_position_cut"], 18, "{report}");
            assert!(report["close_error"].is_string(), "{report}");
        } else {
            let out = text(&o);
            assert!(
                out.contains("dropped ") && out.contains("bytes of segment 0"),
                "{out}"
            );
            assert!(
                out.contains("the 14 events at positions 5 to 18 were cut"),
                "{out}"
            );
        }
    }
}

/// An import whose close fails reports what it imported before the error, and exits
/// non-zero.
#[test]
fn an_import_whose_close_fails_still_reports_what_it_imported() {
    let tool = Path::new(env!("CARGO_BIN_EXE_es-store"));
    let work = tempfile::tempdir().unwrap();
    let from = work.path().join("from");
    write_carts(&from);
    let export = work.path().join("export.jsonl");
    let out = run(
        tool,
        &[
            "export",
            from.to_str().unwrap(),
            "--out",
            export.to_str().unwrap(),
        ],
    );
    assert!(out.status.success());
    for json in [false, true] {
        let into = work.path().join(if json { "json" } else { "text" });
        FileStore::open(&into).unwrap().close().unwrap();
        block_the_index_write(&into);
        let mut args = vec!["import", into.to_str().unwrap(), export.to_str().unwrap()];
        if json {
            args.insert(0, "--json");
        }
        let o = run(tool, &args);
        assert!(!o.status.success(), "{}", text(&o));
        assert!(
            stderr(&o).contains("after the import failed"),
            "{}",
            stderr(&o)
        );
        if json {
            let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            assert_eq!(report["events_imported"], 18, "{report}");
            assert_eq!(report["streams_imported"], 3, "{report}");
            assert!(report["close_error"].is_string(), "{report}");
        } else {
            assert!(
                text(&o).contains("imported 18 events in 3 streams"),
                "{}",
                text(&o)
            );
        }
    }
}

/// Beside a writer appending all the while (rolling small segments), a dry run of a
/// repair reads only what the writer published, as `verify` does, and finds nothing to
/// repair in a healthy store.
#[test]
fn a_repair_dry_run_beside_a_live_writer_finds_no_damage() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let tool = Path::new(env!("CARGO_BIN_EXE_es-store"));
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("events");
    let store = FileStore::open_with(
        &dir,
        es_store_fs::FileStoreOptions {
            segment_size: 64 * 1024,
            ..Default::default()
        },
    )
    .unwrap();
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let payload = format!(r#"{{"n":{n},"pad":"{}"}}"#, "x".repeat(200));
                store
                    .append(
                        &format!("w-{}", n % 5),
                        ExpectedVersion::Any,
                        vec![event("Written", &payload)],
                    )
                    .unwrap();
                n += 1;
            }
        });
        std::thread::sleep(std::time::Duration::from_millis(300));
        let checks = (|| {
            for _ in 0..12 {
                let o = run(
                    tool,
                    &["--json", "repair", "--dry-run", dir.to_str().unwrap()],
                );
                if !o.status.success() {
                    return Err(stderr(&o));
                }
                let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
                let healthy = report["repaired"].is_null()
                    && report["torn_tail"].is_null()
                    && report["removed_empty_segment"].is_null()
                    && report["headers_rewritten"] == serde_json::json!([])
                    && report["stale_indexes"] == serde_json::json!([])
                    && report["live_writer_end"].is_object();
                if !healthy {
                    return Err(report.to_string());
                }
            }
            let o = run(tool, &["repair", "--dry-run", dir.to_str().unwrap()]);
            let out = text(&o);
            if !(out.contains("a writer holds the store") && out.contains("no damage")) {
                return Err(out);
            }
            Ok(())
        })();
        stop.store(true, Ordering::Relaxed);
        if let Err(report) = checks {
            panic!("a dry run beside a live writer: {report}");
        }
    });
    store.close().unwrap();
}

/// The report of a repair, and of its dry run, names the positions cut and how many of
/// those events lie in intact frames after the damage, so that they can be saved first
/// (the command the dry run suggests saves exactly those).
#[test]
fn a_repair_names_the_positions_and_events_it_cuts() {
    let tool = Path::new(env!("CARGO_BIN_EXE_es-store"));
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("events");
    write_carts(&dir);
    damage_frame(&dir, 5);
    let d = dir.to_str().unwrap();

    let dry = run(tool, &["repair", "--dry-run", d]);
    assert!(dry.status.success(), "{}", stderr(&dry));
    let out = text(&dry);
    assert!(
        out.contains("the 14 events at positions 5 to 18 would be cut"),
        "{out}"
    );
    assert!(
        out.contains(
            "13 of them, in 13 intact frames from position 6 on, are still readable; the other 1"
        ),
        "{out}"
    );
    let save = format!("es-store --json tail {d} --from 6 > saved.jsonl");
    assert!(out.contains(&save), "{out}");
    let saved = run(tool, &["--json", "tail", d, "--from", "6"]);
    assert!(saved.status.success(), "{}", stderr(&saved));
    let positions: Vec<u64> = text(&saved)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["position"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(positions, (6..=18).collect::<Vec<_>>());

    let dry = run(tool, &["--json", "repair", "--dry-run", d]);
    let report: serde_json::Value = serde_json::from_slice(&dry.stdout).unwrap();
    let repaired = &report["repaired"];
    // the fields of before, and the new ones
    assert_eq!(repaired["segment"], 0, "{report}");
    assert!(repaired["bytes_dropped"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(
        repaired["segments_removed"],
        serde_json::json!([]),
        "{report}"
    );
    assert_eq!(repaired["first_position_cut"], 5, "{report}");
    assert_eq!(repaired["last_position_cut"], 18, "{report}");
    assert_eq!(repaired["intact_frames_after_damage"], 13, "{report}");
    assert_eq!(repaired["intact_events_after_damage"], 13, "{report}");
    assert_eq!(repaired["first_intact_position"], 6, "{report}");

    let repair = run(tool, &["repair", d]);
    assert!(repair.status.success(), "{}", stderr(&repair));
    assert!(
        text(&repair).contains("the 14 events at positions 5 to 18 were cut"),
        "{}",
        text(&repair)
    );
    let verify = run(tool, &["verify", d]);
    assert!(text(&verify).contains("ok: 4 events"), "{}", text(&verify));
    // the saved events go back where their streams end: cart-43 and user-alice whole,
    // cart-42 refused (its fifth event was in the damaged frame)
    assert!(
        out.contains(&format!("`es-store import {d} saved.jsonl`")),
        "{out}"
    );
    let saved_file = work.path().join("saved.jsonl");
    std::fs::write(&saved_file, &saved.stdout).unwrap();
    let import = run(tool, &["import", d, saved_file.to_str().unwrap()]);
    assert_eq!(import.status.code(), Some(2), "{}", stderr(&import));
    let out = format!("{}{}", text(&import), stderr(&import));
    assert!(out.contains("imported 11 events in 2 streams"), "{out}");
    assert!(out.contains("cart-42"), "{out}");
    let store = FileStore::open(&dir).unwrap();
    assert_eq!(store.stream_version("cart-42").unwrap(), 4);
    assert_eq!(store.stream_version("cart-43").unwrap(), 1);
    assert_eq!(store.stream_version("user-alice").unwrap(), 10);
}

/// `tail --json` and `read --json` print one object per line, as `export` does, whatever
/// the whitespace of a stored payload.
#[test]
fn event_listings_in_json_are_one_object_per_line() {
    let tool = Path::new(env!("CARGO_BIN_EXE_es-store"));
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("events");
    let store = FileStore::open(&dir).unwrap();
    for n in 0..2 {
        let pretty = format!("{{\n  \"n\": {n},\n  \"list\": [\n    1,\n    2\n  ]\n}}");
        store
            .append(
                "doc-1",
                ExpectedVersion::Any,
                vec![event("Pretty", &pretty)],
            )
            .unwrap();
    }
    store.close().unwrap();
    let d = dir.to_str().unwrap();
    for args in [
        vec!["--json", "tail", d],
        vec!["--json", "read", d, "doc-1"],
    ] {
        let o = run(tool, &args);
        assert!(o.status.success(), "{}", stderr(&o));
        let lines: Vec<&str> = std::str::from_utf8(&o.stdout).unwrap().lines().collect();
        assert_eq!(lines.len(), 2, "{args:?}: {}", text(&o));
        for (n, line) in lines.iter().enumerate() {
            let e: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(e["payload"], serde_json::json!({"n": n, "list": [1, 2]}));
        }
    }
}

/// A torn tail is not called "never acknowledged" outright: the tool cannot know the
/// durability mode the store was written in, and under `Periodic` or `None` a machine
/// crash can tear acknowledged appends.
#[test]
fn a_torn_tail_is_reported_with_what_each_durability_mode_promises() {
    use std::io::Write;
    let tool = Path::new(env!("CARGO_BIN_EXE_es-store"));
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("events");
    write_carts(&dir);
    // a frame whose length runs past the end of the file: what a write cut short leaves
    let mut segment = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.join(format!("{:020}.seg", 0)))
        .unwrap();
    segment.write_all(&200u32.to_le_bytes()).unwrap();
    segment.write_all(&[0xab; 30]).unwrap();
    drop(segment);
    let d = dir.to_str().unwrap();
    for args in [
        vec!["verify", d],
        vec!["repair", "--dry-run", d],
        vec!["stats", d],
    ] {
        let o = run(tool, &args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        let out = text(&o);
        assert!(out.contains("torn tail"), "{args:?}: {out}");
        assert!(
            out.contains("never acknowledged if the store was written with Durability::Always")
                && out.contains(
                    "Periodic or None a machine crash can tear appends that were acknowledged"
                ),
            "{args:?}: {out}"
        );
    }
}

/// `verify` names a segment it cannot open: here a link to nothing in place of one.
#[test]
fn verify_names_a_segment_it_cannot_open() {
    let tool = Path::new(env!("CARGO_BIN_EXE_es-store"));
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("events");
    write_carts(&dir);
    let link = dir.join(format!("{:020}.seg", 1));
    std::os::unix::fs::symlink(work.path().join("nowhere"), &link).unwrap();
    let o = run(tool, &["verify", dir.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains(&link.display().to_string()),
        "{}",
        stderr(&o)
    );
}

/// An import whose input cannot be read creates no store and names the input; a repair
/// refuses a directory that is not a store as its dry run does, and writes nothing.
#[test]
fn unreadable_inputs_and_non_stores_are_refused_before_anything_is_written() {
    let tool = Path::new(env!("CARGO_BIN_EXE_es-store"));
    let work = tempfile::tempdir().unwrap();
    let bad_utf8 = work.path().join("bad.jsonl");
    std::fs::write(&bad_utf8, b"{\"stream_id\":\"\xff\xfe\"}\n").unwrap();
    let a_directory = work.path().join("a-directory");
    std::fs::create_dir(&a_directory).unwrap();
    for input in [&bad_utf8, &a_directory] {
        let new = work.path().join("new");
        let o = run(
            tool,
            &["import", new.to_str().unwrap(), input.to_str().unwrap()],
        );
        assert!(!o.status.success(), "{input:?}");
        assert!(
            stderr(&o).contains(&input.display().to_string()),
            "{input:?}: {}",
            stderr(&o)
        );
        assert!(!new.exists(), "{input:?}: a store was created");
    }
    let empty = work.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let e = empty.to_str().unwrap();
    let dry = run(tool, &["repair", "--dry-run", e]);
    let real = run(tool, &["repair", e]);
    for o in [&dry, &real] {
        assert!(!o.status.success(), "{}", text(o));
        assert!(stderr(o).contains("is not an event store"), "{}", stderr(o));
    }
    assert_eq!(stderr(&dry), stderr(&real));
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0);
}

/// Control characters in stored text (an escape sequence in an actor, a C1 control in a
/// payload) are shown escaped to a person, never sent to the terminal; JSON output
/// escapes them as JSON does.
#[test]
fn stored_control_characters_are_escaped_in_text_output() {
    let tool = Path::new(env!("CARGO_BIN_EXE_es-store"));
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("events");
    let actor = "mallory\u{1b}]0;owned\u{7}\u{1b}[2J";
    let store = FileStore::open(&dir).unwrap();
    store
        .append(
            "doc-1",
            ExpectedVersion::Any,
            vec![
                event("Noted", "{\"note\":\"\u{9b}31mred\"}")
                    .with_metadata(Metadata::new().with_actor(actor)),
            ],
        )
        .unwrap();
    store.close().unwrap();
    let d = dir.to_str().unwrap();
    for args in [vec!["tail", d], vec!["read", d, "doc-1"]] {
        let o = run(tool, &args);
        assert!(o.status.success(), "{}", stderr(&o));
        let out = text(&o);
        assert!(
            !out.chars().any(|c| c.is_control() && c != '\n'),
            "{args:?}: {out:?}"
        );
        assert!(
            out.contains("by mallory\\u{1b}]0;owned\\u{7}\\u{1b}[2J"),
            "{out}"
        );
        assert!(out.contains("\\u{9b}31mred"), "{out}");
    }
    let o = run(tool, &["--json", "tail", d]);
    let e: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(e["metadata"]["actor"], actor);
    assert!(!o.stdout.contains(&0x1b));
}

/// Damage in a sealed index's section that an open does not check: `verify` reports it
/// and points to the dry run, which says the index would be written again and nothing of
/// the log cut; the repair does that, and `verify` then passes.
#[test]
fn a_damaged_sealed_index_is_rebuilt_by_a_repair_as_its_dry_run_says() {
    let tool = Path::new(env!("CARGO_BIN_EXE_es-store"));
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("events");
    let store = FileStore::open_with(
        &dir,
        es_store_fs::FileStoreOptions {
            segment_size: 4096,
            ..Default::default()
        },
    )
    .unwrap();
    for n in 0..100 {
        store
            .append(
                &format!("s-{}", n % 3),
                ExpectedVersion::Any,
                vec![event("Added", &format!(r#"{{"n":{n}}}"#))],
            )
            .unwrap();
    }
    store.close().unwrap();
    let sealed = dir.join(format!("{:020}.idx", 0));
    let mut bytes = std::fs::read(&sealed).unwrap();
    // the id table, at the end of section B, before its checksum
    let at = bytes.len() - 6;
    bytes[at] ^= 0x55;
    std::fs::write(&sealed, &bytes).unwrap();
    let d = dir.to_str().unwrap();

    let verify = run(tool, &["verify", d]);
    assert!(!verify.status.success());
    assert!(
        text(&verify).contains("00000000000000000000.idx")
            && text(&verify).contains(&format!("es-store repair --dry-run {d}")),
        "{}",
        text(&verify)
    );
    let dry = run(tool, &["repair", "--dry-run", d]);
    let out = text(&dry);
    assert!(!out.contains("no damage"), "{out}");
    assert!(
        out.contains(&format!(
            "would write {} again from the log",
            sealed.display()
        )) && out.contains("nothing of the log is cut"),
        "{out}"
    );
    let repair = run(tool, &["repair", d]);
    assert!(repair.status.success(), "{}", stderr(&repair));
    assert!(
        text(&repair).contains(&format!("wrote {} again from the log", sealed.display())),
        "{}",
        text(&repair)
    );
    let verify = run(tool, &["verify", d]);
    assert!(
        verify.status.success() && text(&verify).contains("ok: 100 events"),
        "{}",
        text(&verify)
    );
}

/// An export writes its own temporary file, created new: one of that name it did not
/// create (another export's, here planted under the export's own process id) is neither
/// written through nor removed. The export used to remove it on its way out.
#[test]
fn an_export_leaves_a_temporary_file_it_did_not_create_alone() {
    let tool = Path::new(env!("CARGO_BIN_EXE_es-store"));
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("store");
    write_carts(&dir);
    let out = root.path().join("out.jsonl");
    // `exec` keeps the shell's process id, which names the temporary file
    let script = format!(
        "echo another > '{out}'.$$.tmp; exec '{tool}' export '{dir}' --out '{out}'",
        out = out.display(),
        tool = tool.display(),
        dir = dir.display()
    );
    let o = Command::new("sh").arg("-c").arg(&script).output().unwrap();
    assert!(!o.status.success(), "{}", text(&o));
    assert!(stderr(&o).contains("File exists"), "{}", stderr(&o));
    let left: Vec<_> = std::fs::read_dir(root.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(std::fs::read(&left[0]).unwrap(), b"another\n");
    assert!(!out.exists());
    // with no such file in the way, the export writes its own and renames it over `out`
    std::fs::remove_file(&left[0]).unwrap();
    let o = run(
        tool,
        &[
            "export",
            dir.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&out).unwrap().lines().count(), 18);
}

/// A group id filter that is intact but lacks the ids of its segments, in two windows:
/// its fingerprints zeroed and its checksum made anew.
fn empty_the_filter(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let filter_len = u32::from_le_bytes(bytes[20..24].try_into().unwrap()) as usize;
    let body = bytes.len() - 4;
    let filter_at = body - filter_len;
    for b in &mut bytes[filter_at + 20..body] {
        *b = 0;
    }
    let crc = crate::common::crc32c_of(&bytes[..body]);
    bytes[body..].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(path, &bytes).unwrap();
}

/// Every stale derived file is listed and dealt with by one repair: two stale id
/// filters (a repair used to name the first only, and leave the filters to a background
/// build its close stopped, so that a duplicate id was accepted afterwards), and a
/// sealed index past the first that cannot be read (a repair used to stop on it).
#[test]
fn a_repair_deals_with_every_stale_index_file() {
    let tool = Path::new(env!("CARGO_BIN_EXE_es-store"));
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("events");
    let store = FileStore::open_with(&dir, crate::common::small_segments()).unwrap();
    let mut n = 0;
    let mut kept = None;
    while !dir.join(format!("{:020}.flt", 64)).exists() {
        let e = event("Added", &format!(r#"{{"n":{n}}}"#));
        if n == 10 {
            kept = Some(e.clone());
        }
        store
            .append(&format!("s-{}", n % 5), ExpectedVersion::Any, vec![e])
            .unwrap();
        n += 1;
    }
    store.close().unwrap();
    for window in [0, 64] {
        empty_the_filter(&dir.join(format!("{window:020}.flt")));
    }
    let linked = dir.join(format!("{:020}.idx", 3));
    std::fs::remove_file(&linked).unwrap();
    std::os::unix::fs::symlink(work.path(), &linked).unwrap();
    let d = dir.to_str().unwrap();

    let dry = run(tool, &["repair", "--dry-run", d]);
    let out = text(&dry);
    for file in [
        "00000000000000000000.flt",
        "00000000000000000064.flt",
        "00000000000000000003.idx",
    ] {
        assert!(out.contains(file), "{file}: {out}{}", stderr(&dry));
    }
    let repair = run(tool, &["repair", d]);
    assert!(
        repair.status.success(),
        "{}{}",
        text(&repair),
        stderr(&repair)
    );
    let verify = run(tool, &["verify", d]);
    assert!(
        verify.status.success(),
        "{}{}",
        text(&verify),
        stderr(&verify)
    );
    // the id of an event stored long ago is known: a retry in another stream is refused
    let store = FileStore::open_with(&dir, crate::common::small_segments()).unwrap();
    let err = store
        .append("elsewhere", ExpectedVersion::Any, vec![kept.unwrap()])
        .unwrap_err();
    assert!(
        matches!(err, es_core::StoreError::DuplicateEventId { .. }),
        "{err}"
    );
}

/// A store whose last segment (6) holds no frame, what a repair cut at its first frame
/// leaves; returns the events it holds and the id of one in segment 5.
fn store_with_an_empty_last_segment(tool: &Path, dir: &Path) -> (u64, uuid::Uuid) {
    let store = FileStore::open_with(dir, crate::common::small_segments()).unwrap();
    let mut n = 0;
    let mut in_five = None;
    while !dir.join(format!("{:020}.seg", 6)).exists() {
        if in_five.is_none() && dir.join(format!("{:020}.seg", 5)).exists() {
            n += 1;
            let e = event("Added", &format!(r#"{{"n":{n}}}"#));
            in_five = Some(e.event_id);
            store.append("s-1", ExpectedVersion::Any, vec![e]).unwrap();
            continue;
        }
        n += 1;
        store
            .append(
                "s-1",
                ExpectedVersion::Any,
                vec![event("Added", &format!(r#"{{"n":{n}}}"#))],
            )
            .unwrap();
    }
    store.close().unwrap();
    let last = dir.join(format!("{:020}.seg", 6));
    let mut bytes = std::fs::read(&last).unwrap();
    bytes[40] ^= 0x55;
    std::fs::write(&last, &bytes).unwrap();
    let repair = run(tool, &["repair", dir.to_str().unwrap()]);
    assert!(repair.status.success(), "{}", stderr(&repair));
    assert_eq!(std::fs::metadata(&last).unwrap().len(), 32);
    (n - 1, in_five.unwrap())
}

/// The sealed index before a last segment that holds no frame is checked by `verify` and
/// dealt with by a repair, as an open reads it: both used to stop at the segment of the
/// last frame, and passed a store whose next open was refused (a link in its place) or
/// trusted it (one of another store, intact, listing other ids: a duplicate id was then
/// accepted). The store cannot seal that segment again itself (it holds the newest
/// frame), so the repair removes it.
#[test]
fn the_sealed_index_before_an_empty_last_segment_is_checked() {
    let tool = Path::new(env!("CARGO_BIN_EXE_es-store"));
    for foreign in [false, true] {
        let work = tempfile::tempdir().unwrap();
        let dir = work.path().join("events");
        let (events, in_five) = store_with_an_empty_last_segment(tool, &dir);
        let sealed = dir.join(format!("{:020}.idx", 5));
        std::fs::remove_file(&sealed).unwrap();
        if foreign {
            let other = work.path().join("other");
            store_with_an_empty_last_segment(tool, &other);
            std::fs::copy(other.join(format!("{:020}.idx", 5)), &sealed).unwrap();
        } else {
            std::os::unix::fs::symlink(work.path(), &sealed).unwrap();
            assert!(FileStore::open_with(&dir, crate::common::small_segments()).is_err());
        }
        let d = dir.to_str().unwrap();
        let verify = run(tool, &["verify", d]);
        assert!(!verify.status.success(), "{}", text(&verify));
        let said = format!("{}{}", text(&verify), stderr(&verify));
        assert!(said.contains("00000000000000000005.idx"), "{said}");
        let dry = run(tool, &["repair", "--dry-run", d]);
        assert!(
            text(&dry).contains("00000000000000000005.idx"),
            "{}",
            text(&dry)
        );
        let repair = run(tool, &["repair", d]);
        assert!(repair.status.success(), "{}", stderr(&repair));
        let verify = run(tool, &["verify", d]);
        assert!(
            verify.status.success(),
            "{}{}",
            text(&verify),
            stderr(&verify)
        );
        let store = FileStore::open_with(&dir, crate::common::small_segments()).unwrap();
        assert_eq!(store.head_position().unwrap(), events);
        let mut again = event("Added", r#"{"n":0}"#);
        again.event_id = in_five;
        let err = store
            .append("elsewhere", ExpectedVersion::Any, vec![again])
            .unwrap_err();
        assert!(
            matches!(err, es_core::StoreError::DuplicateEventId { .. }),
            "{err}"
        );
    }
}

/// A stale derived file the repair cannot remove (a directory in place of an id filter)
/// stops the repair before it changes anything, naming the file: it used to be logged
/// and left, and the next open could trust a stale filter left that way.
#[test]
fn a_repair_that_cannot_remove_a_stale_filter_changes_nothing() {
    let tool = Path::new(env!("CARGO_BIN_EXE_es-store"));
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("events");
    let store = FileStore::open_with(&dir, crate::common::small_segments()).unwrap();
    let mut n = 0;
    while !dir.join(format!("{:020}.flt", 0)).exists() {
        store
            .append(
                "s-1",
                ExpectedVersion::Any,
                vec![event("Added", &format!(r#"{{"n":{n}}}"#))],
            )
            .unwrap();
        n += 1;
    }
    store.close().unwrap();
    let filter = dir.join(format!("{:020}.flt", 0));
    std::fs::remove_file(&filter).unwrap();
    std::fs::create_dir_all(filter.join("in-the-way")).unwrap();
    // damage to cut, so that a repair would change the log
    let last = (0u64..)
        .take_while(|i| dir.join(format!("{i:020}.seg")).exists())
        .last()
        .unwrap();
    let last = dir.join(format!("{last:020}.seg"));
    let mut bytes = std::fs::read(&last).unwrap();
    bytes[40] ^= 0x55;
    std::fs::write(&last, &bytes).unwrap();
    // the lock file names the last process that took the lock: not the store's data
    let contents = || {
        let mut files = crate::common::dir_contents(&dir);
        files.remove(&dir.join("LOCK"));
        files
    };
    let before = contents();
    let d = dir.to_str().unwrap();
    let repair = run(tool, &["repair", d]);
    assert!(!repair.status.success(), "{}", text(&repair));
    assert!(
        stderr(&repair).contains("00000000000000000000.flt"),
        "{}",
        stderr(&repair)
    );
    let after = contents();
    let changed: Vec<_> = after
        .keys()
        .chain(before.keys())
        .filter(|k| after.get(*k) != before.get(*k))
        .collect();
    assert!(changed.is_empty(), "changed: {changed:?}");
}

/// A repair does what its dry run said when a sealed index it removes is the proof that
/// the last segment was finished (a sealed index is written only once a later segment
/// holds a frame): a last segment with a damaged header and no intact frame after it is
/// emptied to a header by both. The repair used to remove the unreadable index before
/// its recovery, which then took the segment for an unfinished one and removed it whole.
#[test]
fn a_repair_and_its_dry_run_agree_when_a_sealed_index_it_removes_proves_a_segment() {
    let tool = Path::new(env!("CARGO_BIN_EXE_es-store"));
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("events");
    let store = FileStore::open_with(&dir, crate::common::small_segments()).unwrap();
    let mut n = 0;
    while !dir.join(format!("{:020}.seg", 3)).exists() {
        n += 1;
        store
            .append(
                "s-1",
                ExpectedVersion::Any,
                vec![event("Added", &format!(r#"{{"n":{n}}}"#))],
            )
            .unwrap();
    }
    store.close().unwrap();
    let last = dir.join(format!("{:020}.seg", 3));
    let mut bytes = std::fs::read(&last).unwrap();
    bytes[10] ^= 0x55; // the header
    bytes[40] ^= 0x55; // the first frame
    std::fs::write(&last, &bytes).unwrap();
    let sealed = dir.join(format!("{:020}.idx", 2));
    std::fs::remove_file(&sealed).unwrap();
    std::os::unix::fs::symlink(work.path(), &sealed).unwrap();
    let d = dir.to_str().unwrap();
    let dry = run(tool, &["--json", "repair", "--dry-run", d]);
    let dry: serde_json::Value = serde_json::from_str(text(&dry).trim()).unwrap();
    let repair = run(tool, &["--json", "repair", d]);
    assert!(repair.status.success(), "{}", stderr(&repair));
    let done: serde_json::Value = serde_json::from_str(text(&repair).trim()).unwrap();
    let removed = |v: &serde_json::Value| v["repaired"]["segments_removed"].clone();
    assert_eq!(removed(&dry), removed(&done), "{dry}\n{done}");
    assert!(last.exists());
    assert_eq!(
        done["repaired"]["first_position_cut"],
        dry["repaired"]["first_position_cut"]
    );
    let verify = run(tool, &["verify", d]);
    assert!(
        verify.status.success(),
        "{}{}",
        text(&verify),
        stderr(&verify)
    );
}

/// Bidirectional controls and line separators in stored text are written out in text
/// output and as JSON escapes in JSON output (as are DEL and C1 controls, which JSON
/// leaves as they are): nothing stored reorders or splits a printed line.
#[test]
fn bidirectional_controls_and_separators_are_escaped_in_every_output() {
    let tool = Path::new(env!("CARGO_BIN_EXE_es-store"));
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("events");
    let stream = "acct-\u{202e}evil\u{202c}-1";
    let actor = "bob\u{2066}x\u{2028}y";
    let store = FileStore::open(&dir).unwrap();
    store
        .append(
            stream,
            ExpectedVersion::Any,
            vec![
                event(
                    "Ty\u{202e}pe",
                    "{\"s\":\"x\u{202e}y\u{2029}z\u{7f}\u{9b}2J\"}",
                )
                .with_metadata(Metadata::new().with_actor(actor)),
            ],
        )
        .unwrap();
    store.close().unwrap();
    let d = dir.to_str().unwrap();
    // a line break ends each line and a tab separates columns: nothing else acts
    let acts = |c: char| es_core::store::acts_on_display(c) && c != '\n' && c != '\t';
    for args in [
        vec!["tail", d],
        vec!["read", d, stream],
        vec!["streams", d],
        vec!["--json", "tail", d],
        vec!["--json", "read", d, stream],
        vec!["--json", "streams", d],
    ] {
        let o = run(tool, &args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        let out = text(&o);
        assert!(!out.chars().any(acts), "{args:?}: {out:?}");
        assert!(out.contains("202e"), "{args:?}: {out}");
        if args[0] == "--json" {
            for line in out.lines() {
                serde_json::from_str::<serde_json::Value>(line)
                    .unwrap_or_else(|e| panic!("{args:?}: {e}: {line}"));
            }
        }
    }
    let o = run(tool, &["--json", "tail", d]);
    let e: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(e["stream_id"], stream);
    assert_eq!(e["metadata"]["actor"], actor);
    assert_eq!(e["payload"]["s"], "x\u{202e}y\u{2029}z\u{7f}\u{9b}2J");
    // an export is data, not a listing: payloads byte for byte, and an import stores
    // the very same events
    let exported = work.path().join("out.jsonl");
    let o = run(tool, &["export", d, "--out", exported.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let original = FileStore::open_read_only(&dir).unwrap();
    let payload = original
        .read_stream(stream, 1)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .payload;
    drop(original);
    let copy = work.path().join("copy");
    let o = run(
        tool,
        &["import", copy.to_str().unwrap(), exported.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let copied = FileStore::open(&copy).unwrap();
    let events: Vec<_> = copied
        .read_stream(stream, 1)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].metadata.actor.as_deref(), Some(actor));
    assert_eq!(events[0].event_type, "Ty\u{202e}pe");
    assert_eq!(events[0].payload, payload);
}

/// `export --out` never replaces what is not a regular file (a device, a FIFO, a
/// symbolic link, a directory), nor writes among a store's files; the file it writes is
/// private to its owner, or keeps the permissions of the file it replaces.
#[test]
fn an_export_refuses_special_files_and_store_directories_and_keeps_files_private() {
    use std::os::unix::fs::PermissionsExt;
    let tool = Path::new(env!("CARGO_BIN_EXE_es-store"));
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("events");
    write_carts(&dir);
    let d = dir.to_str().unwrap();
    let fifo = work.path().join("fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let link = work.path().join("link");
    std::os::unix::fs::symlink("/dev/null", &link).unwrap();
    let directory = work.path().join("directory");
    std::fs::create_dir(&directory).unwrap();
    std::fs::create_dir_all(dir.join("snapshots")).unwrap();
    let segment = dir.join("00000000000000000000.seg");
    let segment_before = std::fs::read(&segment).unwrap();
    for (target, why) in [
        (fifo.clone(), "a FIFO"),
        (link.clone(), "a symbolic link"),
        (directory.clone(), "a directory"),
        (segment.clone(), "event store"),
        (dir.join("export.jsonl"), "event store"),
        (dir.join("snapshots").join("export.jsonl"), "event store"),
    ] {
        let o = run(tool, &["export", d, "--out", target.to_str().unwrap()]);
        assert!(!o.status.success(), "{target:?}");
        assert!(stderr(&o).contains(why), "{target:?}: {}", stderr(&o));
    }
    assert_eq!(std::fs::read(&segment).unwrap(), segment_before);
    assert!(!dir.join("export.jsonl").exists());
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    let new = work.path().join("new.jsonl");
    let o = run(tool, &["export", d, "--out", new.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&new), 0o600);
    std::fs::set_permissions(&new, std::fs::Permissions::from_mode(0o640)).unwrap();
    let o = run(tool, &["export", d, "--out", new.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(mode(&new), 0o640);
}

/// A standard error that cannot be written never makes the tool panic: the message is
/// lost, the exit status tells the failure. (A closed standard output is opened on
/// `/dev/null` by Rust's runtime before the tool starts: it is one.)
#[test]
fn a_standard_error_that_cannot_be_written_is_not_panicked_on() {
    use std::process::Stdio;
    let tool = Path::new(env!("CARGO_BIN_EXE_es-store"));
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("events");
    write_carts(&dir);
    // standard error a pipe whose reader is gone: a message that cannot be written is lost
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let status = Command::new(tool)
        .args(["stats", "/no/such/store"])
        .stdout(Stdio::null())
        .stderr(writer)
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(1));
}

/// Suggested commands quote the store's path, so that pasting one runs it on that path
/// and never a command hidden in the path's name.
#[test]
fn suggested_commands_quote_the_path() {
    let tool = Path::new(env!("CARGO_BIN_EXE_es-store"));
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("st;touch PWNED;#'x");
    write_carts(&dir);
    damage_frame(&dir, 3);
    let o = run(tool, &["verify", dir.to_str().unwrap()]);
    assert!(!o.status.success());
    let out = text(&o);
    let line = out
        .lines()
        .find(|l| l.contains("es-store repair --dry-run"))
        .unwrap_or_else(|| panic!("{out}"));
    let command = &line[line.find("es-store repair").unwrap()..];
    // the shell's reading of the suggestion: the same path, one word
    let echoed = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "printf '%s\\n' {}",
            &command["es-store repair --dry-run ".len()..]
        ))
        .current_dir(work.path())
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&echoed.stdout).trim_end(),
        dir.to_str().unwrap()
    );
    assert!(!work.path().join("PWNED").exists());
}

/// A store path with a line break, a bidirectional control or bytes that are not UTF-8
/// is suggested in bash's `$'...'` quotes: pasted, the command names that very path (the
/// escapes of text output changed it inside plain quotes).
#[test]
fn suggested_commands_name_paths_with_control_characters_as_they_are() {
    use std::os::unix::ffi::OsStrExt;
    let tool = Path::new(env!("CARGO_BIN_EXE_es-store"));
    let work = tempfile::tempdir().unwrap();
    let names: [&[u8]; 3] = [b"st\nx", "st\u{202e}x'y".as_bytes(), b"st\xffx"];
    for name in names {
        let dir = work.path().join(std::ffi::OsStr::from_bytes(name));
        write_carts(&dir);
        damage_frame(&dir, 3);
        let o = Command::new(tool).arg("verify").arg(&dir).output().unwrap();
        assert!(!o.status.success());
        let out = text(&o);
        let line = out
            .lines()
            .find(|l| l.contains("es-store repair --dry-run"))
            .unwrap_or_else(|| panic!("{out}"));
        assert!(
            !line.chars().any(es_core::store::acts_on_display),
            "{line:?}"
        );
        let command = &line[line.find("es-store repair").unwrap()..];
        let echoed = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "printf '%s' {}",
                &command["es-store repair --dry-run ".len()..]
            ))
            .output()
            .unwrap();
        assert_eq!(echoed.stdout, dir.as_os_str().as_bytes(), "{command}");
    }
}

/// `read` of a stream that does not exist says so and fails; a stream read past its end
/// prints nothing and succeeds.
#[test]
fn reading_a_stream_that_does_not_exist_fails_naming_it() {
    let tool = Path::new(env!("CARGO_BIN_EXE_es-store"));
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("events");
    write_carts(&dir);
    let d = dir.to_str().unwrap();
    let o = run(tool, &["read", d, "cart-4242"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("no stream `cart-4242`"),
        "{}",
        stderr(&o)
    );
    let o = run(tool, &["read", d, "cart-43", "--from", "5"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(text(&o).is_empty());
}

/// An import whose input holds a field an exported event does not have, an id twice, or
/// an event the store would refuse is refused whole, before anything is written: it used
/// to drop the field, or write the streams before the refused one.
#[test]
fn an_import_the_store_would_refuse_in_part_writes_nothing() {
    let tool = Path::new(env!("CARGO_BIN_EXE_es-store"));
    let work = tempfile::tempdir().unwrap();
    let line = |stream: &str, id: u128, schema: u32, extra: &str| {
        format!(
            r#"{{"stream_id":"{stream}","stream_version":1,"position":1,"event_id":"{}","timestamp":"2026-01-01T00:00:00Z","event_type":"T","schema_version":{schema},"metadata":{{{extra}}},"payload":{{"n":1}}}}"#,
            uuid::Uuid::from_u128(id)
        )
    };
    let cases = [
        (
            vec![
                line("p-1", 1, 1, ""),
                line("p-2", 2, 0, ""),
                line("p-3", 3, 1, ""),
            ],
            "schema versions start at 1",
        ),
        (
            vec![line("a-1", 1, 1, ""), line("b-1", 1, 1, "")],
            "is the id of line 1 too",
        ),
        (
            vec![line("a-1", 1, 1, r#""tenant":"acme""#)],
            "unknown metadata field `tenant`",
        ),
        (
            vec![line("a-1", 1, 1, "").replace(r#""payload""#, r#""causation":"x","payload""#)],
            "unknown field `causation`",
        ),
    ];
    for (n, (lines, why)) in cases.into_iter().enumerate() {
        let input = work.path().join(format!("in-{n}.jsonl"));
        std::fs::write(&input, lines.join("\n")).unwrap();
        let dir = work.path().join(format!("store-{n}"));
        let o = run(
            tool,
            &["import", dir.to_str().unwrap(), input.to_str().unwrap()],
        );
        assert!(!o.status.success(), "{why}");
        assert!(stderr(&o).contains(why), "{why}: {}", stderr(&o));
        assert!(!dir.exists(), "{why}: the store was created");
    }
    // a line with every field an export writes is read
    let input = work.path().join("full.jsonl");
    let full = line(
        "a-1",
        9,
        1,
        &format!(
            r#""correlation_id":"{}","causation_id":"{}","actor":"x","extra":{{"k":1}}"#,
            uuid::Uuid::from_u128(7),
            uuid::Uuid::from_u128(8)
        ),
    );
    std::fs::write(&input, full).unwrap();
    let dir = work.path().join("full");
    let o = run(
        tool,
        &["import", dir.to_str().unwrap(), input.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", stderr(&o));
}

/// Damage in a sealed index's stream table (the part an open checks, and rebuilds the
/// index from its segment when it fails) is reported by `verify` as damage in the rest of
/// the index is, and the dry run and the repair say what they rewrite: `verify` passed
/// it, and the repair rewrote the file saying there was nothing to repair.
#[test]
fn a_damaged_stream_table_of_a_sealed_index_is_reported_and_its_rewrite_said() {
    let tool = Path::new(env!("CARGO_BIN_EXE_es-store"));
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("events");
    let store = FileStore::open_with(
        &dir,
        es_store_fs::FileStoreOptions {
            segment_size: 4096,
            ..Default::default()
        },
    )
    .unwrap();
    for n in 0..100 {
        store
            .append(
                &format!("s-{}", n % 3),
                ExpectedVersion::Any,
                vec![event("Added", &format!(r#"{{"n":{n}}}"#))],
            )
            .unwrap();
    }
    store.close().unwrap();
    let sealed = dir.join(format!("{:020}.idx", 0));
    let mut bytes = std::fs::read(&sealed).unwrap();
    bytes[100] ^= 0x55;
    std::fs::write(&sealed, &bytes).unwrap();
    let d = dir.to_str().unwrap();
    let verify = run(tool, &["verify", d]);
    assert!(!verify.status.success(), "{}", text(&verify));
    assert!(
        text(&verify).contains("00000000000000000000.idx")
            && text(&verify).contains("stream table is damaged"),
        "{}",
        text(&verify)
    );
    let dry = run(tool, &["repair", "--dry-run", d]);
    assert!(
        text(&dry).contains(&format!("would write {} again", sealed.display())),
        "{}",
        text(&dry)
    );
    let repair = run(tool, &["repair", d]);
    assert!(
        repair.status.success()
            && text(&repair).contains(&format!("wrote {} again", sealed.display())),
        "{}",
        text(&repair)
    );
    let verify = run(tool, &["verify", d]);
    assert!(verify.status.success(), "{}", text(&verify));
}
