//! Guards `Limits::max_json_depth`: limits that would let a store accept JSON nested too
//! deep for serde_json to read back are refused, and JSON at the largest accepted depth
//! is read back, also inside an exported line wrapped once more.

use es_core::store::LimitsError;
use es_core::{EventStore, ExpectedVersion, Limits, MemoryStore, Metadata, NewEvent};
use serde_json::Value;

/// `depth` nested objects around `null`: `{"a":{"a":null}}` is depth 2.
fn nested_objects(depth: usize) -> String {
    let mut json = String::new();
    for _ in 0..depth {
        json.push_str(r#"{"a":"#);
    }
    json.push_str("null");
    json.push_str(&"}".repeat(depth));
    json
}

/// `depth` nested arrays around `0`.
fn nested_arrays(depth: usize) -> String {
    format!("{}0{}", "[".repeat(depth), "]".repeat(depth))
}

/// The deepest nesting serde_json decodes, measured rather than assumed.
fn serde_json_deepest_readable() -> usize {
    let reads = |depth: usize| {
        serde_json::from_str::<Value>(&nested_objects(depth)).is_ok()
            && serde_json::from_str::<Value>(&nested_arrays(depth)).is_ok()
    };
    let mut depth = 1;
    while reads(depth + 1) {
        depth += 1;
        assert!(depth < 100_000, "serde_json no longer limits nesting");
    }
    depth
}

fn deepest_metadata() -> Metadata {
    let value: Value = serde_json::from_str(&nested_objects(Limits::MAX_READABLE_JSON_DEPTH))
        .expect("the deepest accepted value decodes");
    Metadata::new().with_actor("tester").with("deep", value)
}

#[test]
fn the_largest_accepted_depth_reads_back_inside_two_more_levels_of_objects() {
    let deepest = serde_json_deepest_readable();
    let max = Limits::MAX_READABLE_JSON_DEPTH;
    println!("serde_json reads JSON nested {deepest} levels deep");

    // A payload at the limit, wrapped in two objects (an exported line, and an envelope
    // around that line).
    let payload = nested_objects(max);
    let wrapped = format!(r#"{{"outer":{{"payload":{payload}}}}}"#);
    assert!(serde_json::from_str::<Value>(&wrapped).is_ok());

    // A metadata value at the limit, as the metadata object holds it (inside the object
    // and its `extra` map), wrapped in two more objects.
    let metadata = serde_json::to_string(&deepest_metadata()).unwrap();
    let wrapped = format!(r#"{{"outer":{{"metadata":{metadata}}}}}"#);
    assert!(serde_json::from_str::<Value>(&wrapped).is_ok());
    assert!(
        max + 4 <= deepest,
        "serde_json reads {deepest} levels; a metadata value at {max} reaches {}",
        max + 4
    );
}

#[test]
fn limits_above_the_readable_depth_are_refused_naming_the_field_and_the_maximum() {
    let too_deep = Limits {
        max_json_depth: 200,
        ..Limits::default()
    };
    let err = too_deep.validate().unwrap_err();
    assert_eq!(
        err,
        LimitsError::JsonDepthTooDeep {
            value: 200,
            max: Limits::MAX_READABLE_JSON_DEPTH
        }
    );
    let message = err.to_string();
    assert!(message.contains("max_json_depth"), "{message}");
    assert!(
        message.contains(&Limits::MAX_READABLE_JSON_DEPTH.to_string()),
        "{message}"
    );

    let err = MemoryStore::with_limits(too_deep).unwrap_err();
    assert!(err.to_string().contains("max_json_depth"), "{err}");

    let one_over = Limits {
        max_json_depth: Limits::MAX_READABLE_JSON_DEPTH + 1,
        ..Limits::default()
    };
    assert!(one_over.validate().is_err());
    assert!(Limits::default().validate().is_ok());
}

#[test]
fn limits_that_refuse_every_append_are_refused() {
    type Case = (&'static str, fn(&mut Limits));
    let cases: [Case; 5] = [
        ("max_stream_id_len", |l| l.max_stream_id_len = 0),
        ("max_event_type_len", |l| l.max_event_type_len = 0),
        ("max_event_size", |l| l.max_event_size = 0),
        ("max_batch_events", |l| l.max_batch_events = 0),
        ("max_batch_size", |l| l.max_batch_size = 0),
    ];
    for (field, set) in cases {
        let mut limits = Limits::default();
        set(&mut limits);
        assert_eq!(limits.validate(), Err(LimitsError::Zero { field }));
        assert!(MemoryStore::with_limits(limits).is_err(), "{field}");
    }
    // Scalar payloads remain possible at depth 0.
    let flat = Limits {
        max_json_depth: 0,
        ..Limits::default()
    };
    let store = MemoryStore::with_limits(flat).unwrap();
    store
        .append(
            "s",
            ExpectedVersion::Any,
            vec![NewEvent::new("T", 1, b"1".to_vec())],
        )
        .unwrap();
}

#[test]
fn a_memory_store_at_the_largest_depth_accepts_and_reads_back_and_exports() {
    let max = Limits::MAX_READABLE_JSON_DEPTH;
    let store = MemoryStore::with_limits(Limits {
        max_json_depth: max,
        ..Limits::default()
    })
    .unwrap();
    let payload = nested_arrays(max).into_bytes();
    let event = NewEvent::new("Deep", 1, payload.clone()).with_metadata(deepest_metadata());
    store
        .append("deep-1", ExpectedVersion::NoStream, vec![event])
        .unwrap();

    let too_deep = NewEvent::new("Deep", 1, nested_arrays(max + 1).into_bytes());
    assert!(
        store
            .append("deep-2", ExpectedVersion::NoStream, vec![too_deep])
            .is_err()
    );

    let read: Vec<_> = store
        .read_all(1)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].payload, payload);
    assert_eq!(read[0].metadata, deepest_metadata());

    // As an exported line, and that line inside one more object.
    let line = serde_json::to_string(&read[0]).unwrap();
    assert_eq!(
        serde_json::from_str::<es_core::RecordedEvent>(&line).unwrap(),
        read[0]
    );
    let enveloped = format!(r#"{{"event":{line}}}"#);
    assert!(serde_json::from_str::<Value>(&enveloped).is_ok());
}
