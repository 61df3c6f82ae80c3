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
