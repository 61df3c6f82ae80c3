//! Connecting creates the tables or upgrades them in one transaction, records their
//! version, and refuses (untouched) tables newer than the build; read-only stores create
//! nothing and write nothing.
mod common;

use es_core::projection::CheckpointStore;
use es_core::testing::conformance::events;
use es_core::{EventStore, ExpectedVersion, StoreError};
use es_store_pg::projection::PgCheckpoints;
use es_store_pg::schema::{CURRENT, set_up_to};
use es_store_pg::{ConnectError, PgStore, PgStoreOptions};

fn options(schema: &str) -> PgStoreOptions {
    PgStoreOptions {
        schema: schema.to_owned(),
        ..PgStoreOptions::default()
    }
}

fn version(client: &mut postgres::Client, schema: &str) -> i32 {
    client
        .query_one(&format!("SELECT version FROM \"{schema}\".es_schema"), &[])
        .unwrap()
        .get(0)
}

#[test]
fn connect_records_the_version_and_a_newer_one_is_refused_untouched() {
    let Some((store, guard)) = common::store() else {
        return;
    };
    store
        .append("s-1", ExpectedVersion::Any, events(1, 2))
        .unwrap();
    drop(store);
    let mut client = postgres::Client::connect(&guard.url, postgres::NoTls).unwrap();
    assert_eq!(version(&mut client, &guard.schema), CURRENT);
    client
        .execute(
            &format!("UPDATE \"{}\".es_schema SET version = $1", guard.schema),
            &[&(CURRENT + 1)],
        )
        .unwrap();
    let err = PgStore::connect_with(&guard.url, options(&guard.schema)).unwrap_err();
    match &err {
        ConnectError::SchemaTooNew {
            found, supported, ..
        } => {
            assert_eq!((*found, *supported), (CURRENT + 1, CURRENT));
        }
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
    assert!(err.to_string().contains("upgrade es-store-pg"), "{err}");
    assert_eq!(
        version(&mut client, &guard.schema),
        CURRENT + 1,
        "left as it was"
    );
    let read_only = PgStore::connect_with(
        &guard.url,
        PgStoreOptions {
            read_only: true,
            ..options(&guard.schema)
        },
    )
    .unwrap_err();
    assert!(
        matches!(read_only, ConnectError::SchemaTooNew { .. }),
        "{read_only:?}"
    );
}

#[test]
fn older_tables_are_upgraded_and_keep_their_events() {
    let Some(url) = common::url() else { return };
    let schema = common::fresh_schema();
    let _guard = common::SchemaGuard {
        url: url.clone(),
        schema: schema.clone(),
    };
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    set_up_to(&mut client, &schema, 1).unwrap();
    assert_eq!(version(&mut client, &schema), 1);
    // a read-only store does not upgrade
    let err = PgStore::connect_with(
        &url,
        PgStoreOptions {
            read_only: true,
            ..options(&schema)
        },
    )
    .unwrap_err();
    assert!(
        matches!(err, ConnectError::SchemaOutdated { found: 1, .. }),
        "{err:?}"
    );
    // events written by the older version
    client
        .batch_execute(&format!(
            "INSERT INTO \"{schema}\".es_events VALUES
                (1, 'old-1', 1, gen_random_uuid(), now(), 0, 'Old', 1, NULL, '{{\"n\":1}}', 0, 1);
             INSERT INTO \"{schema}\".es_streams VALUES ('old-1', 1);
             UPDATE \"{schema}\".es_head SET position = 1;"
        ))
        .unwrap();
    let store = PgStore::connect_with(&url, options(&schema)).unwrap();
    assert_eq!(version(&mut client, &schema), CURRENT);
    assert_eq!(store.stream_version("old-1").unwrap(), 1);
    let r = store
        .append("old-1", ExpectedVersion::Exact(1), events(2, 1))
        .unwrap();
    assert_eq!((r.first_version, r.first_position), (2, 2));
    assert!(
        es_core::SnapshotStore::load_snapshot(&store, "old-1", 9)
            .unwrap()
            .is_none()
    );
}

#[test]
fn processes_connecting_at_once_set_up_the_tables_once() {
    let Some(url) = common::url() else { return };
    let schema = common::fresh_schema();
    let _guard = common::SchemaGuard {
        url: url.clone(),
        schema: schema.clone(),
    };
    let stores: Vec<PgStore> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..6)
            .map(|_| scope.spawn(|| PgStore::connect_with(&url, options(&schema)).unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, store) in stores.iter().enumerate() {
        store
            .append("s-1", ExpectedVersion::Any, events(i as u64, 1))
            .unwrap();
    }
    assert_eq!(stores[0].head_position().unwrap(), 6);
}

#[test]
fn a_read_only_store_creates_nothing_and_refuses_writes() {
    let Some((store, guard)) = common::store() else {
        return;
    };
    store
        .append("s-1", ExpectedVersion::Any, events(1, 3))
        .unwrap();
    let missing = common::fresh_schema();
    let err = PgStore::connect_with(
        &guard.url,
        PgStoreOptions {
            read_only: true,
            ..options(&missing)
        },
    )
    .unwrap_err();
    assert!(matches!(err, ConnectError::SchemaMissing { .. }), "{err:?}");
    let mut client = postgres::Client::connect(&guard.url, postgres::NoTls).unwrap();
    let created = client
        .query_opt("SELECT 1 FROM pg_namespace WHERE nspname = $1", &[&missing])
        .unwrap();
    assert!(created.is_none(), "a read-only connect created a schema");
    let replica = PgStore::connect_with(
        &guard.url,
        PgStoreOptions {
            read_only: true,
            ..options(&guard.schema)
        },
    )
    .unwrap();
    assert_eq!(replica.head_position().unwrap(), 3);
    assert_eq!(replica.read_stream("s-1", 2).unwrap().count(), 2);
    let err = replica
        .append("s-1", ExpectedVersion::Any, events(4, 1))
        .unwrap_err();
    assert!(matches!(err, StoreError::ReadOnly(_)), "{err:?}");
}

#[test]
fn bad_options_are_refused_before_connecting() {
    for schema in [
        "",
        "Upper",
        "9lives",
        "has space",
        "quote\"d",
        &"x".repeat(49),
        "pg_temp",
        "pg_orders",
    ] {
        let err = PgStore::connect_with("postgres://nobody@127.0.0.1:1/none", options(schema))
            .unwrap_err();
        assert!(
            matches!(err, ConnectError::InvalidOptions(_)),
            "{schema:?}: {err:?}"
        );
    }
    let err = PgStore::connect("not a connection string ===").unwrap_err();
    assert!(matches!(err, ConnectError::InvalidUrl(_)), "{err:?}");
    let err = PgStore::connect_with(
        "postgres://nobody@127.0.0.1:1/none",
        PgStoreOptions {
            max_connections: 0,
            ..PgStoreOptions::default()
        },
    )
    .unwrap_err();
    assert!(matches!(err, ConnectError::InvalidOptions(_)), "{err:?}");
    // stream ids longer than PostgreSQL's indexes take (an append of one failed with the
    // server's error about an index row)
    let limits = es_core::Limits {
        max_stream_id_len: es_store_pg::MAX_STREAM_ID_LEN + 1,
        ..es_core::Limits::default()
    };
    let err = PgStore::connect_with(
        "postgres://nobody@127.0.0.1:1/none",
        PgStoreOptions {
            limits,
            ..PgStoreOptions::default()
        },
    )
    .unwrap_err();
    assert!(
        matches!(&err, ConnectError::InvalidOptions(m) if m.contains("max_stream_id_len")),
        "{err:?}"
    );
}

#[test]
fn checkpoints_made_before_the_store_are_kept_when_it_connects() {
    let Some(url) = common::url() else { return };
    let schema = common::fresh_schema();
    let _guard = common::SchemaGuard {
        url: url.clone(),
        schema: schema.clone(),
    };
    // a projection connects first and creates the checkpoints table
    let checkpoints = PgCheckpoints::connect(&url, &schema).unwrap();
    checkpoints.save("mailer", 7).unwrap();
    let store = PgStore::connect_with(&url, options(&schema)).unwrap();
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    assert_eq!(version(&mut client, &schema), CURRENT);
    assert_eq!(checkpoints.load("mailer").unwrap(), 7);
    store
        .append("s-1", ExpectedVersion::NoStream, events(1, 1))
        .unwrap();
    // and connecting again changes nothing
    drop(store);
    PgStore::connect_with(&url, options(&schema)).unwrap();
    assert_eq!(checkpoints.load("mailer").unwrap(), 7);
}

#[test]
fn processes_connecting_at_once_under_a_serializable_default_set_up_the_tables_once() {
    let Some(url) = common::url() else { return };
    let schema = common::fresh_schema();
    let _guard = common::SchemaGuard {
        url: url.clone(),
        schema: schema.clone(),
    };
    // every new transaction of these connections is serializable unless it says otherwise
    let url = format!("{url}?options=-c%20default_transaction_isolation%3Dserializable");
    let stores: Vec<PgStore> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..6)
            .map(|_| scope.spawn(|| PgStore::connect_with(&url, options(&schema))))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap().unwrap_or_else(|e| panic!("{e}")))
            .collect()
    });
    for (i, store) in stores.iter().enumerate() {
        store
            .append("s-1", ExpectedVersion::Any, events(i as u64, 1))
            .unwrap();
    }
    assert_eq!(stores[0].head_position().unwrap(), 6);
}

#[test]
fn checkpoints_of_a_table_made_without_marks_gain_them_when_a_projection_connects() {
    let Some(url) = common::url() else { return };
    let schema = common::fresh_schema();
    let _guard = common::SchemaGuard {
        url: url.clone(),
        schema: schema.clone(),
    };
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    // the table as builds without marks made it, with a checkpoint of theirs
    client
        .batch_execute(&format!(
            "CREATE SCHEMA \"{schema}\";
             CREATE TABLE \"{schema}\".es_checkpoints (
                name TEXT PRIMARY KEY,
                position BIGINT NOT NULL CHECK (position >= 0)
             );
             INSERT INTO \"{schema}\".es_checkpoints VALUES ('mailer', 7);"
        ))
        .unwrap();
    let checkpoints = PgCheckpoints::connect(&url, &schema).unwrap();
    assert_eq!(
        checkpoints.load_mark("mailer").unwrap(),
        es_core::projection::Mark::at(7)
    );
    let id = uuid::Uuid::new_v4();
    let mark = es_core::projection::Mark {
        position: 8,
        event_id: Some(id),
    };
    checkpoints.save_mark("mailer", mark).unwrap();
    assert_eq!(checkpoints.load_mark("mailer").unwrap(), mark);
    // the store's set-up keeps the table and its marks
    PgStore::connect_with(&url, options(&schema)).unwrap();
    assert_eq!(checkpoints.load_mark("mailer").unwrap(), mark);
}

/// The longest stream id the options may allow is taken by every table, with a snapshot.
#[test]
fn the_longest_stream_id_allowed_is_stored() {
    let Some(url) = common::url() else { return };
    let schema = common::fresh_schema();
    let _guard = common::SchemaGuard {
        url: url.clone(),
        schema: schema.clone(),
    };
    let limits = es_core::Limits {
        max_stream_id_len: es_store_pg::MAX_STREAM_ID_LEN,
        ..es_core::Limits::default()
    };
    let store = PgStore::connect_with(
        &url,
        PgStoreOptions {
            limits,
            ..options(&schema)
        },
    )
    .unwrap();
    // characters that do not compress: a stream id of random hexadecimal digits
    let mut id = String::new();
    while id.len() < es_store_pg::MAX_STREAM_ID_LEN {
        id.push_str(&uuid::Uuid::new_v4().simple().to_string());
    }
    id.truncate(es_store_pg::MAX_STREAM_ID_LEN);
    store
        .append(&id, ExpectedVersion::NoStream, events(1, 2))
        .unwrap();
    assert_eq!(store.read_stream(&id, 1).unwrap().count(), 2);
    let snapshot = es_core::Snapshot {
        stream_id: id.clone(),
        version: 2,
        position: 0,
        last_event_at: chrono::Utc::now(),
        snapshot_version: 1,
        fingerprint: 1,
        state: b"{}".to_vec(),
    };
    es_core::SnapshotStore::save_snapshot(&store, &snapshot).unwrap();
    assert!(
        es_core::SnapshotStore::load_snapshot(&store, &id, 2)
            .unwrap()
            .is_some()
    );
}

/// A table named as the store's but not the store's (a `version` of another type) is a
/// connection error naming what was read, not a panic.
#[test]
fn a_foreign_table_under_the_stores_name_is_an_error_not_a_panic() {
    let Some(url) = common::url() else { return };
    let schema = common::fresh_schema();
    let _guard = common::SchemaGuard {
        url: url.clone(),
        schema: schema.clone(),
    };
    let mut admin = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    admin
        .batch_execute(&format!(
            "CREATE SCHEMA \"{schema}\";
             CREATE TABLE \"{schema}\".es_schema (version TEXT);
             INSERT INTO \"{schema}\".es_schema VALUES ('one');"
        ))
        .unwrap();
    for read_only in [false, true] {
        let err = PgStore::connect_with(
            &url,
            PgStoreOptions {
                read_only,
                ..options(&schema)
            },
        )
        .unwrap_err();
        assert!(
            matches!(&err, ConnectError::Database { during, .. } if during.contains("schema version")),
            "{err:?}"
        );
    }
}
