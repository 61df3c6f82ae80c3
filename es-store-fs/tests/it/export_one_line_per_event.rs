//! Guards `export_jsonl`: one line per event whatever whitespace the stored payloads hold
//! (pretty-printed, line breaks between tokens, deep nesting), and an import of that
//! export gives back every event unchanged.
//!
//! `ES_RELIABILITY_FULL=1` runs many more cases.

use crate::common::{all_events, scale};
use es_core::{
    EventStore, ExpectedVersion, Limits, Metadata, NewEvent, RecordedEvent, chrono, uuid::Uuid,
};
use es_store_fs::tools::{export_jsonl, import_jsonl};
use es_store_fs::{Durability, FileStore, FileStoreOptions};
use proptest::prelude::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

fn open(dir: &Path, limits: Limits) -> FileStore {
    FileStore::open_with(
        dir,
        FileStoreOptions {
            durability: Durability::None,
            limits,
            ..FileStoreOptions::default()
        },
    )
    .unwrap()
}

/// Exports `from`, checks the export has one line per event, imports it into `into`,
/// and checks `into` holds the same events: ids, streams, versions, types, schema
/// versions, times, metadata, and payloads equal as JSON values.
fn export_import_and_compare(from: &FileStore, into: &FileStore) -> Result<(), TestCaseError> {
    let originals = all_events(from);
    let mut export = Vec::new();
    let exported = export_jsonl(from, 1, &mut export).unwrap();
    prop_assert_eq!(exported, originals.len() as u64);
    let text = String::from_utf8(export).unwrap();
    let start: String = text.chars().take(400).collect();
    prop_assert_eq!(
        text.lines().count(),
        originals.len(),
        "export starts:\n{}",
        start
    );
    prop_assert!(text.is_empty() || text.ends_with('\n'));
    for line in text.lines() {
        prop_assert!(
            serde_json::from_str::<Value>(line).is_ok(),
            "line: {}",
            line
        );
    }

    let report = import_jsonl(into, &mut text.as_bytes()).unwrap();
    prop_assert!(report.streams_refused.is_empty(), "{:?}", report);
    prop_assert_eq!(report.events_imported, originals.len() as u64);

    let imported: BTreeMap<Uuid, RecordedEvent> = all_events(into)
        .into_iter()
        .map(|e| (e.event_id, e))
        .collect();
    prop_assert_eq!(imported.len(), originals.len());
    for original in &originals {
        let copy = &imported[&original.event_id];
        prop_assert_eq!(&copy.stream_id, &original.stream_id);
        prop_assert_eq!(copy.stream_version, original.stream_version);
        prop_assert_eq!(&copy.event_type, &original.event_type);
        prop_assert_eq!(copy.schema_version, original.schema_version);
        prop_assert_eq!(copy.timestamp, original.timestamp);
        prop_assert_eq!(&copy.metadata, &original.metadata);
        let parsed = |bytes: &[u8]| serde_json::from_slice::<Value>(bytes).unwrap();
        prop_assert_eq!(parsed(&copy.payload), parsed(&original.payload));
    }
    Ok(())
}

/// Text for JSON strings and keys: line breaks, tabs, quotes, backslashes, control
/// characters, accents, astral-plane characters.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z \n\r\t\"\\\\/é€😀\u{0}\u{1f}\u{2028}]{0,10}",
        prop::collection::vec(any::<char>(), 0..6).prop_map(String::from_iter),
    ]
}

fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        // Dyadic fractions: decoded exactly, so that values compare equal after a round
        // trip through text.
        (any::<i32>(), 0..20i32).prop_map(|(m, e)| Value::from(f64::from(m) / 2f64.powi(e))),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(8, 64, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((text(), inner), 0..5)
                .prop_map(|entries| Value::Object(entries.into_iter().collect())),
        ]
    })
}

/// How a payload's text is laid out.
#[derive(Debug, Clone)]
enum Layout {
    Compact,
    Pretty,
    /// These pieces of whitespace, in turn, around every token.
    Spaced(Vec<String>),
}

fn layout() -> impl Strategy<Value = Layout> {
    prop_oneof![
        Just(Layout::Compact),
        Just(Layout::Pretty),
        prop::collection::vec("[ \t\r\n]{0,4}", 1..6).prop_map(Layout::Spaced),
    ]
}

fn render(value: &Value, layout: &Layout) -> String {
    match layout {
        Layout::Compact => serde_json::to_string(value).unwrap(),
        Layout::Pretty => serde_json::to_string_pretty(value).unwrap(),
        Layout::Spaced(pieces) => {
            let mut out = String::new();
            let mut turn = 0;
            spaced(value, pieces, &mut turn, &mut out);
            out
        }
    }
}

fn spaced(value: &Value, pieces: &[String], turn: &mut usize, out: &mut String) {
    space(pieces, turn, out);
    match value {
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                spaced(item, pieces, turn, out);
            }
            space(pieces, turn, out);
            out.push(']');
        }
        Value::Object(entries) => {
            out.push('{');
            for (i, (key, item)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                space(pieces, turn, out);
                out.push_str(&serde_json::to_string(key).unwrap());
                space(pieces, turn, out);
                out.push(':');
                spaced(item, pieces, turn, out);
            }
            space(pieces, turn, out);
            out.push('}');
        }
        scalar => out.push_str(&serde_json::to_string(scalar).unwrap()),
    }
    space(pieces, turn, out);
}

/// The next piece of whitespace.
fn space(pieces: &[String], turn: &mut usize, out: &mut String) {
    out.push_str(&pieces[*turn % pieces.len()]);
    *turn += 1;
}

#[derive(Debug, Clone)]
struct Written {
    stream: u8,
    payload: Value,
    layout: Layout,
    metadata: Option<(String, Vec<(String, Value)>)>,
    timestamp: Option<i64>,
}

fn written() -> impl Strategy<Value = Written> {
    (
        0..3u8,
        json(),
        layout(),
        prop::option::of((text(), prop::collection::vec((text(), json()), 0..3))),
        prop::option::of(0..4_000_000_000i64),
    )
        .prop_map(|(stream, payload, layout, metadata, timestamp)| Written {
            stream,
            payload,
            layout,
            metadata,
            timestamp,
        })
}

#[test]
fn export_then_import_round_trips_any_payload_layout() {
    let config = ProptestConfig {
        cases: scale(128, 2000),
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(events in prop::collection::vec(written(), 0..12))| {
        let dir = tempfile::tempdir().unwrap();
        let from = open(&dir.path().join("from"), Limits::default());
        for w in &events {
            let mut event = NewEvent::new(
                format!("Type{}", w.stream),
                1 + u32::from(w.stream),
                render(&w.payload, &w.layout).into_bytes(),
            );
            if let Some((actor, extra)) = &w.metadata {
                let mut metadata = Metadata::new().with_actor(actor.clone());
                for (key, value) in extra {
                    metadata = metadata.with(key.clone(), value.clone());
                }
                event = event.with_metadata(metadata);
            }
            if let Some(secs) = w.timestamp {
                event = event.with_timestamp(chrono::DateTime::from_timestamp(secs, 7).unwrap());
            }
            from.append(&format!("s-{}", w.stream), ExpectedVersion::Any, vec![event]).unwrap();
        }
        let into = open(&dir.path().join("into"), Limits::default());
        export_import_and_compare(&from, &into)?;
    });
}

#[test]
fn export_then_import_round_trips_pretty_payloads_at_the_deepest_accepted_nesting() {
    let max = Limits::MAX_READABLE_JSON_DEPTH;
    let limits = Limits {
        max_json_depth: max,
        ..Limits::default()
    };
    let mut deep = Value::String("line\nbreak".into());
    for level in 0..max {
        deep = if level % 2 == 0 {
            Value::Array(vec![deep, Value::Null])
        } else {
            serde_json::json!({ "k\n": deep, "n": level })
        };
    }
    let dir = tempfile::tempdir().unwrap();
    let from = open(&dir.path().join("from"), limits);
    let event = NewEvent::new("Deep", 1, serde_json::to_vec_pretty(&deep).unwrap())
        .with_metadata(Metadata::new().with("deep", deep.clone()));
    from.append("deep-1", ExpectedVersion::NoStream, vec![event])
        .unwrap();
    let into = open(&dir.path().join("into"), limits);
    export_import_and_compare(&from, &into).unwrap();
}
