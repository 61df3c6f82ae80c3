//! Exactly-once read models in PostgreSQL: rows and checkpoint commit together, a failure
//! mid-batch commits nothing of the batch, two instances of one projection never both
//! apply a batch, and a rebuild equals the incremental result.
mod common;

use es_core::projection::{BoxError, CheckpointStore};
use es_core::testing::conformance::events;
use es_core::{EventStore, ExpectedVersion, ProjectionRunner, RecordedEvent};
use es_store_pg::postgres::Transaction;
use es_store_pg::projection::{PgCheckpoints, PgProjection, PgReadModel};
use std::collections::BTreeMap;

/// Sums `n` per stream into table `sums`.
struct Sums {
    table: String,
    fail_at: Option<u64>,
}

impl PgReadModel for Sums {
    fn apply(&mut self, tx: &mut Transaction<'_>, e: &RecordedEvent) -> Result<(), BoxError> {
        if Some(e.position) == self.fail_at {
            return Err("simulated failure".into());
        }
        let v: serde_json::Value = serde_json::from_slice(&e.payload)?;
        let n = v["n"].as_i64().unwrap_or(0);
        tx.execute(
            &format!(
                "INSERT INTO {t} (stream_id, total, events) VALUES ($1, $2, 1)
                 ON CONFLICT (stream_id) DO UPDATE SET total = {t}.total + $2, events = {t}.events + 1",
                t = self.table
            ),
            &[&e.stream_id, &n],
        )?;
        Ok(())
    }

    fn reset(&mut self, tx: &mut Transaction<'_>) -> Result<(), BoxError> {
        tx.execute(&format!("DELETE FROM {}", self.table), &[])?;
        Ok(())
    }
}

fn sums(client: &mut postgres::Client, table: &str) -> BTreeMap<String, (i64, i64)> {
    client
        .query(
            &format!("SELECT stream_id, total, events FROM {table}"),
            &[],
        )
        .unwrap()
        .into_iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect()
}

#[test]
fn rows_and_checkpoint_commit_together_and_two_instances_never_both_apply() {
    let Some((store, guard)) = common::store() else {
        return;
    };
    for i in 0..60u64 {
        store
            .append(
                &format!("p-{}", i % 5),
                ExpectedVersion::Any,
                events(i * 10, 1 + i % 3),
            )
            .unwrap();
    }
    let head = store.head_position().unwrap();
    let table = format!("\"{}\".sums", guard.schema);
    let mut client = postgres::Client::connect(&guard.url, postgres::NoTls).unwrap();
    client
        .batch_execute(&format!(
            "CREATE TABLE {table} (stream_id TEXT PRIMARY KEY, total BIGINT NOT NULL, events BIGINT NOT NULL)"
        ))
        .unwrap();
    let projection = |fail_at| {
        PgProjection::connect(
            &guard.url,
            &guard.schema,
            "sums",
            Sums {
                table: table.clone(),
                fail_at,
            },
        )
        .unwrap()
    };
    // the reference: computed from the log
    let mut reference: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for e in store.read_all(1).unwrap() {
        let e = e.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&e.payload).unwrap();
        let entry = reference.entry(e.stream_id.clone()).or_default();
        entry.0 += v["n"].as_i64().unwrap();
        entry.1 += 1;
    }

    // a failure mid-batch commits nothing of that batch; the rerun resumes
    let mut crashing = ProjectionRunner::new(&store, projection(Some(head / 2))).with_batch_size(7);
    let err = crashing.run_to_head().unwrap_err();
    assert!(err.to_string().contains("simulated failure"), "{err}");
    let resumed_from = crashing
        .projection_mut()
        .client()
        .query_one(
            &format!(
                "SELECT position FROM \"{}\".es_checkpoints WHERE name = 'sums'",
                guard.schema
            ),
            &[],
        )
        .unwrap()
        .get::<_, i64>(0) as u64;
    assert!(
        resumed_from > 0 && resumed_from < head / 2,
        "{resumed_from}"
    );
    crashing.projection_mut().model_mut().fail_at = None;
    assert_eq!(crashing.run_to_head().unwrap(), head);
    assert_eq!(sums(&mut client, &table), reference);

    // two instances race over the same checkpoint from zero: each batch applied once
    es_core::TransactionalProjection::reset(crashing.projection_mut()).unwrap();
    assert!(sums(&mut client, &table).is_empty());
    let moved = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|scope| {
        for _ in 0..2 {
            let (store, moved) = (&store, &moved);
            let instance = projection(None);
            scope.spawn(move || {
                let mut runner = ProjectionRunner::new(store, instance).with_batch_size(3);
                loop {
                    match runner.run_to_head() {
                        Ok(p) if p == head => return,
                        Ok(_) => {}
                        Err(e) => {
                            assert!(e.to_string().contains("another instance"), "{e}");
                            moved.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                }
            });
        }
    });
    assert_eq!(
        sums(&mut client, &table),
        reference,
        "every event applied exactly once"
    );
    eprintln!(
        "two instances of one projection: {} batches found the checkpoint moved and wrote nothing",
        moved.into_inner()
    );

    // at-least-once checkpoints in the same table
    let checkpoints = PgCheckpoints::connect(&guard.url, &guard.schema).unwrap();
    assert_eq!(checkpoints.load("mailer").unwrap(), 0);
    checkpoints.save("mailer", 42).unwrap();
    checkpoints.save("mailer", 43).unwrap();
    assert_eq!(checkpoints.load("mailer").unwrap(), 43);
}

/// Ends every connection of the server whose application name is `name`.
fn terminate(url: &str, name: &str) -> u64 {
    let mut admin = postgres::Client::connect(url, postgres::NoTls).unwrap();
    admin
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            &[&name],
        )
        .unwrap()
        .len() as u64
}

#[test]
fn projections_and_checkpoints_connect_again_after_losing_their_connection() {
    let Some((store, guard)) = common::store() else {
        return;
    };
    for i in 0..10u64 {
        store
            .append(
                &format!("p-{}", i % 3),
                ExpectedVersion::Any,
                events(i * 10, 2),
            )
            .unwrap();
    }
    let table = format!("\"{}\".sums", guard.schema);
    let mut client = postgres::Client::connect(&guard.url, postgres::NoTls).unwrap();
    client
        .batch_execute(&format!(
            "CREATE TABLE {table} (stream_id TEXT PRIMARY KEY, total BIGINT NOT NULL, events BIGINT NOT NULL)"
        ))
        .unwrap();
    let name = format!("proj_{}", uuid::Uuid::new_v4().simple());
    let url = format!("{}?application_name={name}", guard.url);
    let projection = PgProjection::connect(
        &url,
        &guard.schema,
        "sums",
        Sums {
            table: table.clone(),
            fail_at: None,
        },
    )
    .unwrap();
    let checkpoints = PgCheckpoints::connect(&url, &guard.schema).unwrap();
    let mut runner = ProjectionRunner::new(&store, projection).with_batch_size(4);
    assert_eq!(runner.run_to_head().unwrap(), 20);
    checkpoints.save("mailer", 5).unwrap();

    assert_eq!(terminate(&guard.url, &name), 2, "both connections ended");
    for i in 10..15u64 {
        store
            .append(
                &format!("p-{}", i % 3),
                ExpectedVersion::Any,
                events(i * 10, 2),
            )
            .unwrap();
    }
    assert_eq!(checkpoints.load("mailer").unwrap(), 5);
    checkpoints.save("mailer", 6).unwrap();
    assert_eq!(runner.run_to_head().unwrap(), 30);
    let total: i64 = sums(&mut client, &table).values().map(|(_, n)| n).sum();
    assert_eq!(total, 30, "every event applied once");

    // lost in the middle of a run: the next run goes on from the checkpoint
    assert_eq!(terminate(&guard.url, &name), 2);
    for i in 15..20u64 {
        store
            .append(
                &format!("p-{}", i % 3),
                ExpectedVersion::Any,
                events(i * 10, 2),
            )
            .unwrap();
    }
    assert_eq!(runner.run_to_head().unwrap(), 40);
    let total: i64 = sums(&mut client, &table).values().map(|(_, n)| n).sum();
    assert_eq!(total, 40, "every event applied once");
    assert_eq!(checkpoints.load("mailer").unwrap(), 6);
}
