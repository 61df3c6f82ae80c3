//! Faults of the network, the server and the stored rows: a commit whose answer is lost
//! is reported as an unknown outcome until an attempt learns it, a read page stays within
//! its bytes whatever the events before it, a replica's refusal to LISTEN is taken as
//! final, and rows with impossible numbers are reported as corrupted.
mod common;

use common::proxy::Proxy;
use es_core::testing::conformance::events;
use es_core::{DataLocation, EventStore, ExpectedVersion, NewEvent, StoreError};
use es_store_pg::{PgError, PgStore, PgStoreOptions};
use std::time::Duration;

fn options(schema: &str) -> PgStoreOptions {
    PgStoreOptions {
        schema: schema.to_owned(),
        ..PgStoreOptions::default()
    }
}

#[test]
fn an_append_whose_commit_may_be_stored_reports_an_unknown_outcome() {
    let Some(url) = common::url() else { return };
    let schema = common::fresh_schema();
    let _guard = common::SchemaGuard {
        url: url.clone(),
        schema: schema.clone(),
    };
    let proxy = Proxy::start(&url);
    let store = PgStore::connect_with(
        &proxy.url,
        PgStoreOptions {
            max_connections: 2,
            connect_timeout: Duration::from_secs(1),
            ..options(&schema)
        },
    )
    .unwrap();
    store
        .append("s-1", ExpectedVersion::NoStream, events(1, 1))
        .unwrap();
    // the commit reaches the server, its answer never comes back, and no new connection
    // can be had to learn what happened
    proxy.cut_after_next_commit();
    let batch = events(2, 2);
    let err = store
        .append("s-1", ExpectedVersion::Exact(1), batch.clone())
        .unwrap_err();
    assert!(proxy.has_cut(), "the commit was cut: {err:?}");
    match &err {
        StoreError::Backend(e) => assert!(
            matches!(
                e.downcast_ref::<PgError>(),
                Some(PgError::CommitOutcomeUnknown { stream_id, .. }) if stream_id == "s-1"
            ),
            "{e:?}"
        ),
        other => panic!("expected an unknown outcome, got {other:?}"),
    }
    assert!(err.to_string().contains("resend the same events"), "{err}");
    // it was stored: resending learns it, and nothing is written twice
    proxy.accept();
    let again = store
        .append("s-1", ExpectedVersion::Exact(1), batch)
        .unwrap();
    assert!(again.retried, "{again:?}");
    assert_eq!((again.first_position, again.last_position), (2, 3));
    assert_eq!(store.head_position().unwrap(), 3);
}

#[test]
fn a_page_holds_a_bounded_number_of_bytes_after_small_events() {
    let Some(url) = common::url() else { return };
    let schema = common::fresh_schema();
    let _guard = common::SchemaGuard {
        url: url.clone(),
        schema: schema.clone(),
    };
    let proxy = Proxy::start(&url);
    let store = PgStore::connect_with(&proxy.url, options(&schema)).unwrap();
    // enough small events for pages to grow to their most rows
    for i in 0..4 {
        store
            .append("small", ExpectedVersion::Any, events(i * 1000, 1000))
            .unwrap();
    }
    // then events near the size limit
    let large = |i: usize| {
        let pad = "x".repeat(1000 * 1024);
        NewEvent::new(
            "Large",
            1,
            format!(r#"{{"i":{i},"pad":"{pad}"}}"#).into_bytes(),
        )
    };
    for round in 0..3 {
        store
            .append(
                "large",
                ExpectedVersion::Any,
                (0..8).map(|i| large(round * 8 + i)).collect(),
            )
            .unwrap();
    }
    let before = proxy.largest_answer();
    let read = store
        .read_all(1)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    assert_eq!(read.len(), 4000 + 24);
    assert!(read.iter().map(|e| e.position).eq(1..=4024));
    let page = proxy.largest_answer();
    eprintln!("the largest page read: {page} bytes (appends: {before})");
    // 4 MiB a page, plus one event past it, plus the rows' framing
    assert!(
        page < 6 * 1024 * 1024,
        "a page of {page} bytes: pages are bounded by their bytes"
    );
    let stream = store
        .read_stream("large", 1)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    assert!(stream.iter().map(|e| e.stream_version).eq(1..=24));
}

#[test]
fn a_replica_is_asked_to_listen_once() {
    let Some((writer, guard)) = common::store() else {
        return;
    };
    let proxy = Proxy::start(&guard.url);
    proxy.act_as_replica();
    let reader = PgStore::connect_with(
        &proxy.url,
        PgStoreOptions {
            read_only: true,
            poll_interval: Duration::from_millis(50),
            ..options(&guard.schema)
        },
    )
    .unwrap();
    // waiting starts the listener; polling finds the appends without it
    reader.wait_for_head(0, Duration::ZERO).unwrap();
    writer
        .append("r-1", ExpectedVersion::Any, events(1, 1))
        .unwrap();
    assert_eq!(reader.wait_for_head(0, Duration::from_secs(10)).unwrap(), 1);
    // the listener would have tried again several times by now
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(proxy.listens(), 1, "LISTEN is not tried again on a replica");
}

#[test]
fn rows_with_impossible_numbers_are_reported_as_corrupted() {
    let Some((store, guard)) = common::store() else {
        return;
    };
    let s = &guard.schema;
    let id = uuid::Uuid::new_v4();
    let mut client = postgres::Client::connect(&guard.url, postgres::NoTls).unwrap();
    // an event stored at stream version 0, which no append writes
    client
        .execute(
            &format!(
                "INSERT INTO \"{s}\".es_events VALUES
                    (1, 'bad-1', 0, $1, now(), 0, 'Tested', 1, NULL, '{{\"n\":1}}', 0, 1)"
            ),
            &[&id],
        )
        .unwrap();
    client
        .batch_execute(&format!(
            "INSERT INTO \"{s}\".es_streams VALUES ('bad-1', 1);
             UPDATE \"{s}\".es_head SET position = 1;"
        ))
        .unwrap();
    let corrupted_at_bad_1 = |err: &StoreError| match err {
        StoreError::Corrupted(c) => matches!(
            &c.location,
            DataLocation::StoredEvent { stream_id: Some(s), .. } if s == "bad-1"
        ),
        _ => false,
    };
    let err = store
        .read_all(1)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap_err();
    assert!(corrupted_at_bad_1(&err), "{err:?}");
    let err = store.version_of_event("bad-1", id).unwrap_err();
    assert!(corrupted_at_bad_1(&err), "{err:?}");
    // an append resending that id finds the row and reports it
    let mut resent = events(1, 1);
    resent[0].event_id = id;
    let err = store
        .append("bad-1", ExpectedVersion::Any, resent)
        .unwrap_err();
    assert!(corrupted_at_bad_1(&err), "{err:?}");
    assert!(err.to_string().contains("stream version 0"), "{err}");
    // other streams are unaffected
    store
        .append("good-1", ExpectedVersion::NoStream, events(2, 1))
        .unwrap();
}

/// A writer process that freezes in the middle of its commit (here: its `COMMIT` never
/// reaches the server, nothing comes back and its sockets stay open, as for a process
/// stopped or cut off) holds the lock on the log's head. The server ends its idle
/// transaction after `idle_transaction_timeout`, and the appends of other processes go
/// on; the frozen transaction is rolled back. (Before, every other writer waited for as
/// long as the frozen one stayed frozen: hours, or for ever.)
#[test]
fn a_writer_frozen_in_its_commit_does_not_hold_up_the_others() {
    let Some(url) = common::url() else { return };
    let schema = common::fresh_schema();
    let _guard = common::SchemaGuard {
        url: url.clone(),
        schema: schema.clone(),
    };
    let quick = || PgStoreOptions {
        idle_transaction_timeout: Duration::from_secs(1),
        connect_timeout: Duration::from_secs(2),
        ..options(&schema)
    };
    let proxy = Proxy::start(&url);
    let frozen = std::sync::Arc::new(PgStore::connect_with(&proxy.url, quick()).unwrap());
    let other = PgStore::connect_with(&url, quick()).unwrap();
    frozen
        .append("a-1", ExpectedVersion::NoStream, events(1, 1))
        .unwrap();
    proxy.freeze_at_next_commit();
    let writer = std::sync::Arc::clone(&frozen);
    std::thread::spawn(move || {
        // never answered: the proxy holds its sockets open
        let _ = writer.append("a-2", ExpectedVersion::NoStream, events(2, 1));
    });
    let started = std::time::Instant::now();
    while !proxy.is_frozen() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no COMMIT came"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let (done, took) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let started = std::time::Instant::now();
        let appended = other.append("b-1", ExpectedVersion::NoStream, events(3, 1));
        let _ = done.send((appended.map(|a| a.last_position), started.elapsed(), other));
    });
    let (appended, waited, other) = took
        .recv_timeout(Duration::from_secs(20))
        .expect("another process's append waited behind the frozen writer");
    appended.unwrap();
    assert!(waited < Duration::from_secs(10), "{waited:?}");
    // the frozen transaction was rolled back
    assert_eq!(other.stream_version("a-2").unwrap(), 0);
    assert_eq!(other.stream_version("a-1").unwrap(), 1);
}

/// The server counts the time it takes to receive a statement as idle time: a group's
/// write, which carries every payload in one message, is given the time to send its bytes
/// on a slow link on top of `idle_transaction_timeout` (an append of 900 KB on a link of
/// 256 KiB/s was ended by the server at every attempt).
#[test]
fn a_large_append_on_a_slow_link_is_given_the_time_to_send_it() {
    let Some(url) = common::url() else { return };
    let schema = common::fresh_schema();
    let _guard = common::SchemaGuard {
        url: url.clone(),
        schema: schema.clone(),
    };
    let proxy = Proxy::start(&url);
    let store = PgStore::connect_with(
        &proxy.url,
        PgStoreOptions {
            idle_transaction_timeout: Duration::from_secs(1),
            ..options(&schema)
        },
    )
    .unwrap();
    store
        .append("s-0", ExpectedVersion::NoStream, events(1, 1))
        .unwrap();
    proxy.throttle_upstream(256 * 1024);
    let payload = format!(r#"{{"text":"{}"}}"#, "x".repeat(900_000)).into_bytes();
    let started = std::time::Instant::now();
    let appended = store
        .append(
            "s-1",
            ExpectedVersion::NoStream,
            vec![NewEvent::new("Large", 1, payload)],
        )
        .unwrap();
    assert!(started.elapsed() > Duration::from_secs(2), "not throttled");
    proxy.throttle_upstream(0);
    assert_eq!(appended.last_version, 1);
    assert_eq!(store.read_stream("s-1", 1).unwrap().count(), 1);
}
