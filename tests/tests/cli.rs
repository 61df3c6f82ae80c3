//! The `es-store` command-line tool, run as a subprocess on a store the shopping cart
//! example produced: listing, reading, verifying, exporting and importing, and a
//! corruption reported with a non-zero exit status.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Builds the example and the tool (a no-op after `cargo test --workspace`) and returns
/// the target directory holding them.
fn build() -> PathBuf {
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--quiet",
            "-p",
            "es-examples",
            "-p",
            "es-store-fs",
            "--example",
            "shopping_cart",
            "--bin",
            "es-store",
        ])
        .status()
        .expect("cargo build");
    assert!(status.success(), "building the example and the tool failed");
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .to_owned()
}

fn run(bin: &Path, args: &[&str]) -> Output {
    Command::new(bin).args(args).output().expect("run")
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn the_tool_reads_verifies_exports_and_imports_an_example_store() {
    let target = build();
    let tool = target.join("es-store");
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("demo");
    let example = run(
        &target.join("examples").join("shopping_cart"),
        &[data.to_str().unwrap()],
    );
    assert!(
        example.status.success(),
        "{}",
        String::from_utf8_lossy(&example.stderr)
    );
    assert!(text(&example).contains("Reopened the store"));
    let store = data.join("events");
    let s = store.to_str().unwrap();

    let stats = run(&tool, &["--json", "stats", s]);
    assert!(stats.status.success());
    let stats: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
    let events = stats["events"].as_u64().unwrap();
    assert!(events >= 17, "{stats}");

    let streams = text(&run(&tool, &["streams", s, "--kind", "cart"]));
    assert!(streams.lines().any(|l| l == "cart-42\t7"), "{streams}");

    let read = run(&tool, &["--json", "read", s, "cart-42", "--from", "7"]);
    let line: serde_json::Value = serde_json::from_slice(&read.stdout).unwrap();
    assert_eq!(line["event_type"], "CartPurchased");
    assert_eq!(line["metadata"]["actor"], "alice");

    let tail = text(&run(&tool, &["tail", s, "--from", "2"]));
    assert!(tail.starts_with("#2 "), "{tail}");

    let verify = run(&tool, &["verify", s]);
    assert!(verify.status.success(), "{}", text(&verify));
    assert!(
        text(&verify).contains(&format!("ok: {events} events")),
        "{}",
        text(&verify)
    );

    // export, then import into a new store: the same events with the same ids
    let export = work.path().join("export.jsonl");
    let out = run(&tool, &["export", s, "--out", export.to_str().unwrap()]);
    assert!(out.status.success());
    let copy = work.path().join("copy");
    let import = run(
        &tool,
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
        &tool,
        &[
            "export",
            copy.to_str().unwrap(),
            "--out",
            again.to_str().unwrap(),
        ],
    );
    assert_eq!(
        std::fs::read(&export).unwrap(),
        std::fs::read(&again).unwrap()
    );
    // importing the same export again is idempotent: same ids, nothing written
    let twice = run(
        &tool,
        &["import", copy.to_str().unwrap(), export.to_str().unwrap()],
    );
    assert!(twice.status.success(), "{}", text(&twice));
    let stats: serde_json::Value =
        serde_json::from_slice(&run(&tool, &["--json", "stats", copy.to_str().unwrap()]).stdout)
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
        &tool,
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
    let bad = run(&tool, &["verify", s]);
    assert_eq!(bad.status.code(), Some(1));
    let report = text(&bad);
    assert!(
        report.contains("CORRUPTED: ") && report.contains("(segment 0) at offset"),
        "{report}"
    );
    assert!(report.contains("00000000000000000000.seg"), "{report}");

    let missing = run(
        &tool,
        &["stats", work.path().join("nope").to_str().unwrap()],
    );
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("is not a store directory"));
}
