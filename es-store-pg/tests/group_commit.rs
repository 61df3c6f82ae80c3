//! The group commit joins concurrent appends in shared transactions, and each append keeps
//! its own outcome: a conflict, an idempotent retry, a duplicate id or a database error
//! of one append never fails the appends committed beside it.
mod common;

use es_core::testing::conformance::{event, events};
use es_core::{AppendResult, EventStore, ExpectedVersion, StoreError};
use std::collections::HashMap;

#[test]
fn each_append_in_a_group_keeps_its_own_outcome() {
    let Some((store, _guard)) = common::store() else {
        return;
    };
    const THREADS: u64 = 12;
    const ROUNDS: u64 = 25;
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            let store = &store;
            scope.spawn(move || {
                let stream = format!("group-{t}");
                let mut version = 0;
                let mut previous = None;
                for round in 0..ROUNDS {
                    let batch = events(t * 1000 + round * 10, 1 + round % 3);
                    let r = store
                        .append(&stream, ExpectedVersion::Exact(version), batch.clone())
                        .unwrap();
                    let this = (r.first_version - 1, batch.clone());
                    assert_eq!(r.first_version, version + 1);
                    version = r.last_version;
                    match round % 4 {
                        0 => {
                            // a stale expectation
                            let err = store
                                .append(&stream, ExpectedVersion::Exact(version - 1), events(1, 1))
                                .unwrap_err();
                            assert!(
                                matches!(err, StoreError::Conflict { actual, .. } if actual == version),
                                "{err:?}"
                            );
                        }
                        1 => {
                            // the same append again: the original result
                            let again = store
                                .append(&stream, ExpectedVersion::Exact(r.first_version - 1), batch)
                                .unwrap();
                            assert_eq!(again, AppendResult { retried: true, ..r });
                        }
                        2 => {
                            // an id stored in this stream, sent to another
                            let err = store
                                .append(&format!("other-{t}"), ExpectedVersion::Any, batch)
                                .unwrap_err();
                            assert!(matches!(err, StoreError::DuplicateEventId { .. }), "{err:?}");
                        }
                        _ => {
                            if let Some((first, batch)) = previous.take() {
                                // an older append resent with a stale expectation
                                let err = store
                                    .append(&stream, ExpectedVersion::Exact(first + 5), batch)
                                    .unwrap_err();
                                assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
                            }
                        }
                    }
                    previous = Some(this);
                }
            });
        }
    });
    let stats = store.write_stats();
    let all: Vec<_> = store
        .read_all(1)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for (i, e) in all.iter().enumerate() {
        assert_eq!(e.position, i as u64 + 1);
    }
    let mut per_stream: HashMap<&str, u64> = HashMap::new();
    for e in &all {
        let v = per_stream.entry(e.stream_id.as_str()).or_default();
        *v += 1;
        assert_eq!(e.stream_version, *v);
    }
    assert!(per_stream.keys().all(|s| s.starts_with("group-")));
    assert_eq!(per_stream.len() as u64, THREADS);
    eprintln!(
        "{} appends acknowledged in {} transactions",
        stats.appends, stats.transactions
    );
    assert!(
        stats.transactions < stats.appends,
        "concurrent appends shared transactions: {stats:?}"
    );
}

#[test]
fn a_database_error_fails_only_its_own_append() {
    let Some((store, guard)) = common::store() else {
        return;
    };
    // a trigger that refuses one event type, standing in for any statement-level failure
    let mut client = postgres::Client::connect(&guard.url, postgres::NoTls).unwrap();
    let s = &guard.schema;
    client
        .batch_execute(&format!(
            "CREATE FUNCTION \"{s}\".refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                IF NEW.event_type = 'Poison' THEN RAISE EXCEPTION 'poison refused'; END IF;
                RETURN NEW;
             END $$;
             CREATE TRIGGER refuse_poison BEFORE INSERT ON \"{s}\".es_events
             FOR EACH ROW EXECUTE FUNCTION \"{s}\".refuse_poison();"
        ))
        .unwrap();
    const THREADS: u64 = 8;
    const ROUNDS: u64 = 30;
    let poison = || es_core::NewEvent::new("Poison", 1, b"{}".to_vec());
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            let store = &store;
            scope.spawn(move || {
                for round in 0..ROUNDS {
                    if t == 0 {
                        let err = store
                            .append(
                                "poison-1",
                                ExpectedVersion::Any,
                                vec![event(round), poison()],
                            )
                            .unwrap_err();
                        assert!(err.to_string().contains("poison refused"), "{err}");
                    } else {
                        store
                            .append(
                                &format!("fine-{t}"),
                                ExpectedVersion::Any,
                                vec![event(round)],
                            )
                            .unwrap();
                    }
                }
            });
        }
    });
    assert_eq!(store.head_position().unwrap(), (THREADS - 1) * ROUNDS);
    assert_eq!(store.stream_version("poison-1").unwrap(), 0);
    let all: Vec<_> = store
        .read_all(1)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(all.len() as u64, (THREADS - 1) * ROUNDS);
    assert!(
        all.iter()
            .enumerate()
            .all(|(i, e)| e.position == i as u64 + 1)
    );
}

#[test]
fn an_append_from_an_async_thread_fails_with_an_error_not_a_panic() {
    // the synchronous client panics when it blocks inside an async runtime: the group's
    // appends fail with an error each, and the store goes on
    let Some((store, _guard)) = common::store() else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let inside = runtime
        .block_on(async { store.append("async-1", ExpectedVersion::NoStream, events(1, 1)) });
    assert!(matches!(inside, Err(StoreError::Backend(_))), "{inside:?}");
    store
        .append("async-1", ExpectedVersion::NoStream, events(2, 1))
        .unwrap();
    assert_eq!(store.stream_version("async-1").unwrap(), 1);
}

#[test]
fn appends_from_many_stores_commit_when_the_server_defaults_to_serializable() {
    let Some((first, guard)) = common::store() else {
        return;
    };
    // every new transaction of these connections is serializable unless it says otherwise
    let url = format!(
        "{}?options=-c%20default_transaction_isolation%3Dserializable",
        guard.url
    );
    let mut check = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let level: String = check
        .query_one("SHOW default_transaction_isolation", &[])
        .unwrap()
        .get(0);
    assert_eq!(level, "serializable");
    drop(first);
    const STORES: u64 = 4;
    const THREADS: u64 = 3;
    const ROUNDS: u64 = 20;
    let stores: Vec<es_store_pg::PgStore> = (0..STORES)
        .map(|_| {
            es_store_pg::PgStore::connect_with(
                &url,
                es_store_pg::PgStoreOptions {
                    schema: guard.schema.clone(),
                    ..es_store_pg::PgStoreOptions::default()
                },
            )
            .unwrap()
        })
        .collect();
    std::thread::scope(|scope| {
        for (s, store) in stores.iter().enumerate() {
            for t in 0..THREADS {
                scope.spawn(move || {
                    for round in 0..ROUNDS {
                        let n = (s as u64 * THREADS + t) * 1000 + round;
                        // one stream every writer contends for, and one of its own
                        store
                            .append("hot", ExpectedVersion::Any, events(n * 2, 1))
                            .unwrap();
                        store
                            .append(
                                &format!("own-{s}-{t}"),
                                ExpectedVersion::Any,
                                events(n * 2 + 1, 1),
                            )
                            .unwrap();
                    }
                });
            }
        }
    });
    let total = STORES * THREADS * ROUNDS * 2;
    assert_eq!(stores[0].head_position().unwrap(), total);
    assert_eq!(
        stores[0].stream_version("hot").unwrap(),
        STORES * THREADS * ROUNDS
    );
}
