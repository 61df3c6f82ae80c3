//! Exactly-once read models in PostgreSQL: rows and checkpoint commit together, a failure
//! mid-batch commits nothing of the batch, two instances of one projection never both
//! apply a batch, and a rebuild equals the incremental result.
mod common;

use es_core::projection::{BoxError, CheckpointStore, Mark, ProjectionError, WithCheckpoint};
use es_core::testing::conformance::events;
use es_core::{EventStore, ExpectedVersion, ProjectionRunner, RecordedEvent};
use es_store_pg::postgres::Transaction;
use es_store_pg::projection::{PgCheckpoints, PgProjection, PgReadModel};
use std::collections::BTreeMap;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Sums `n` per stream into table `sums`.
struct Sums {
    table: String,
    fail_at: Option<u64>,
    /// Held at the first event applied, inside the batch's transaction.
    gate: Option<Gate>,
}

impl Sums {
    fn new(table: &str) -> Sums {
        Sums {
            table: table.to_owned(),
            fail_at: None,
            gate: None,
        }
    }
}

/// Where a read model says it is inside its transaction, and waits to be let go.
struct Gate {
    inside: mpsc::Sender<()>,
    release: mpsc::Receiver<()>,
}

impl PgReadModel for Sums {
    fn apply(&mut self, tx: &mut Transaction<'_>, e: &RecordedEvent) -> Result<(), BoxError> {
        if Some(e.position) == self.fail_at {
            return Err("simulated failure".into());
        }
        if let Some(gate) = self.gate.take() {
            gate.inside.send(())?;
            gate.release.recv()?;
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
                fail_at,
                ..Sums::new(&table)
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
    let projection = PgProjection::connect(&url, &guard.schema, "sums", Sums::new(&table)).unwrap();
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

/// Creates the table `sums` in the test's schema; returns its qualified name.
fn create_sums(client: &mut postgres::Client, schema: &str) -> String {
    let table = format!("\"{schema}\".sums");
    client
        .batch_execute(&format!(
            "CREATE TABLE {table} (stream_id TEXT PRIMARY KEY, total BIGINT NOT NULL, events BIGINT NOT NULL)"
        ))
        .unwrap();
    table
}

/// What `sums` holds after every event of the log, each taken once.
fn reference(store: &es_store_pg::PgStore) -> BTreeMap<String, (i64, i64)> {
    let mut reference: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for e in store.read_all(1).unwrap() {
        let e = e.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&e.payload).unwrap();
        let entry = reference.entry(e.stream_id.clone()).or_default();
        entry.0 += v["n"].as_i64().unwrap();
        entry.1 += 1;
    }
    reference
}

/// The position in `es_checkpoints` of projection `name`.
fn checkpoint_row(client: &mut postgres::Client, schema: &str, name: &str) -> i64 {
    client
        .query_one(
            &format!("SELECT position FROM \"{schema}\".es_checkpoints WHERE name = $1"),
            &[&name],
        )
        .unwrap()
        .get(0)
}

/// Waits until a backend of application `name` waits for a lock.
fn wait_until_blocked(client: &mut postgres::Client, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let waiting: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE application_name = $1 AND wait_event_type = 'Lock'",
                &[&name],
            )
            .unwrap()
            .get(0);
        if waiting > 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "`{name}` never waited for a lock"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_reset_waits_for_a_batch_under_way_so_that_its_events_are_not_applied_twice() {
    let Some((store, guard)) = common::store() else {
        return;
    };
    for i in 0..12u64 {
        store
            .append(
                &format!("p-{}", i % 4),
                ExpectedVersion::Any,
                events(i * 10, 2),
            )
            .unwrap();
    }
    let mut client = postgres::Client::connect(&guard.url, postgres::NoTls).unwrap();
    let table = create_sums(&mut client, &guard.schema);
    let (inside_tx, inside) = mpsc::channel();
    let (release, release_rx) = mpsc::channel();
    let batching = PgProjection::connect(
        &guard.url,
        &guard.schema,
        "sums",
        Sums {
            gate: Some(Gate {
                inside: inside_tx,
                release: release_rx,
            }),
            ..Sums::new(&table)
        },
    )
    .unwrap();
    let resetting_name = format!("reset_{}", uuid::Uuid::new_v4().simple());
    let mut resetting = PgProjection::connect(
        &format!("{}?application_name={resetting_name}", guard.url),
        &guard.schema,
        "sums",
        Sums::new(&table),
    )
    .unwrap();
    std::thread::scope(|scope| {
        // one batch of the whole log, which inserts every row, held inside its transaction
        let batch = scope.spawn(|| {
            ProjectionRunner::new(&store, batching)
                .with_batch_size(1000)
                .run_to_head()
        });
        inside.recv().unwrap();
        let reset = scope.spawn(|| es_core::TransactionalProjection::reset(&mut resetting));
        wait_until_blocked(&mut client, &resetting_name);
        release.send(()).unwrap();
        assert_eq!(batch.join().unwrap().unwrap(), 24);
        reset.join().unwrap().unwrap();
    });
    assert_eq!(checkpoint_row(&mut client, &guard.schema, "sums"), 0);
    assert!(
        sums(&mut client, &table).is_empty(),
        "the reset deleted the rows of the batch it waited for"
    );
    let mut rebuilding = ProjectionRunner::new(&store, resetting);
    assert_eq!(rebuilding.run_to_head().unwrap(), 24);
    assert_eq!(
        sums(&mut client, &table),
        reference(&store),
        "every event applied once"
    );
}

#[test]
fn competing_instances_following_in_the_background_both_keep_running() {
    let Some((store, guard)) = common::store() else {
        return;
    };
    let mut client = postgres::Client::connect(&guard.url, postgres::NoTls).unwrap();
    let table = create_sums(&mut client, &guard.schema);
    let instance =
        || PgProjection::connect(&guard.url, &guard.schema, "sums", Sums::new(&table)).unwrap();
    std::thread::scope(|s| {
        let running: Vec<_> = (0..2)
            .map(|_| {
                ProjectionRunner::new(&store, instance())
                    .with_batch_size(2)
                    .spawn_scoped(s)
            })
            .collect();
        let started = Instant::now();
        let mut i = 0u64;
        while started.elapsed() < Duration::from_secs(2) {
            store
                .append(
                    &format!("p-{}", i % 5),
                    ExpectedVersion::Any,
                    events(i * 10, 1 + i % 3),
                )
                .unwrap();
            i += 1;
            if i.is_multiple_of(4) {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        let head = store.head_position().unwrap();
        for (n, r) in running.iter().enumerate() {
            assert!(
                r.wait_for(head, Duration::from_secs(30)),
                "instance {n} stopped at {} of {head}",
                r.checkpoint()
            );
            assert!(!r.is_finished(), "instance {n} stopped following");
        }
        for r in running {
            r.stop().unwrap();
        }
    });
    assert_eq!(
        sums(&mut client, &table),
        reference(&store),
        "every event applied once"
    );
}

/// A read model that catches the error of its statement and goes on.
struct Swallowing;

impl PgReadModel for Swallowing {
    fn apply(&mut self, tx: &mut Transaction<'_>, _: &RecordedEvent) -> Result<(), BoxError> {
        let _ = tx.execute("SELECT 1/0", &[]);
        Ok(())
    }

    fn reset(&mut self, tx: &mut Transaction<'_>) -> Result<(), BoxError> {
        let _ = tx.execute("SELECT 1/0", &[]);
        Ok(())
    }
}

#[test]
fn a_batch_whose_read_model_went_on_past_a_failed_statement_fails_and_leaves_the_checkpoint() {
    let Some((store, guard)) = common::store() else {
        return;
    };
    store
        .append("s-1", ExpectedVersion::Any, events(1, 3))
        .unwrap();
    let projection =
        PgProjection::connect(&guard.url, &guard.schema, "swallowing", Swallowing).unwrap();
    let mut runner = ProjectionRunner::new(&store, projection);
    let err = runner.run_to_head().unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("projection `swallowing`")
            && text.contains("the batch up to position 3")
            && text.contains("rolled back"),
        "{text}"
    );
    let mut client = postgres::Client::connect(&guard.url, postgres::NoTls).unwrap();
    assert_eq!(checkpoint_row(&mut client, &guard.schema, "swallowing"), 0);
    assert_eq!(runner.lag().unwrap(), 3, "nothing reported applied");
    // a reset through such a read model is not reported done either
    let err = runner.rebuild().unwrap_err();
    assert!(err.to_string().contains("the reset"), "{err}");
}

#[test]
fn two_instances_racing_under_a_serializable_default_find_the_checkpoint_moved() {
    let Some((store, guard)) = common::store() else {
        return;
    };
    for i in 0..40u64 {
        store
            .append(
                &format!("p-{}", i % 5),
                ExpectedVersion::Any,
                events(i * 10, 1),
            )
            .unwrap();
    }
    let head = store.head_position().unwrap();
    let mut client = postgres::Client::connect(&guard.url, postgres::NoTls).unwrap();
    let table = create_sums(&mut client, &guard.schema);
    // every new transaction of these connections is serializable unless it says otherwise
    let url = format!(
        "{}?options=-c%20default_transaction_isolation%3Dserializable",
        guard.url
    );
    let moved = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|scope| {
        for _ in 0..2 {
            let (store, moved) = (&store, &moved);
            let instance =
                PgProjection::connect(&url, &guard.schema, "sums", Sums::new(&table)).unwrap();
            scope.spawn(move || {
                let mut runner = ProjectionRunner::new(store, instance).with_batch_size(1);
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
    assert_eq!(sums(&mut client, &table), reference(&store));
    assert!(
        moved.into_inner() > 0,
        "the instances never raced for a batch"
    );
}

#[test]
fn a_checkpoint_saved_behind_the_recorded_one_stays_but_a_save_of_zero_resets_it() {
    let Some(url) = common::url() else { return };
    let schema = common::fresh_schema();
    let _guard = common::SchemaGuard {
        url: url.clone(),
        schema: schema.clone(),
    };
    let ahead = PgCheckpoints::connect(&url, &schema).unwrap();
    let lagging = PgCheckpoints::connect(&url, &schema).unwrap();
    let id = uuid::Uuid::new_v4();
    ahead
        .save_mark(
            "mailer",
            Mark {
                position: 1000,
                event_id: Some(id),
            },
        )
        .unwrap();
    lagging.save("mailer", 256).unwrap();
    assert_eq!(
        ahead.load_mark("mailer").unwrap(),
        Mark {
            position: 1000,
            event_id: Some(id)
        }
    );
    lagging.save("mailer", 1256).unwrap();
    assert_eq!(lagging.load_mark("mailer").unwrap(), Mark::at(1256));
    lagging.save("mailer", 0).unwrap();
    assert_eq!(ahead.load("mailer").unwrap(), 0);
    ahead.save("mailer", 5).unwrap();
    assert_eq!(lagging.load("mailer").unwrap(), 5);
}

/// Counts events, in memory: an at-least-once read model.
#[derive(Default)]
struct Count(u64);

impl es_core::Projection for Count {
    fn handle(&mut self, _: &RecordedEvent) -> Result<(), BoxError> {
        self.0 += 1;
        Ok(())
    }
    fn reset(&mut self) -> Result<(), BoxError> {
        self.0 = 0;
        Ok(())
    }
}

#[test]
fn a_log_replaced_under_a_checkpoint_is_found_by_projections_and_checkpoints_in_postgres() {
    let Some((store, guard)) = common::store() else {
        return;
    };
    store
        .append("s-1", ExpectedVersion::Any, events(1, 5))
        .unwrap();
    let mut client = postgres::Client::connect(&guard.url, postgres::NoTls).unwrap();
    let table = create_sums(&mut client, &guard.schema);
    let exactly_once =
        || PgProjection::connect(&guard.url, &guard.schema, "sums", Sums::new(&table)).unwrap();
    let at_least_once = || {
        WithCheckpoint::new(
            Count::default(),
            "count",
            PgCheckpoints::connect(&guard.url, &guard.schema).unwrap(),
        )
    };
    assert_eq!(
        ProjectionRunner::new(&store, exactly_once())
            .run_to_head()
            .unwrap(),
        5
    );
    assert_eq!(
        ProjectionRunner::new(&store, at_least_once())
            .run_to_head()
            .unwrap(),
        5
    );
    // the same log: both go on
    assert_eq!(
        ProjectionRunner::new(&store, exactly_once())
            .run_to_head()
            .unwrap(),
        5
    );
    assert_eq!(
        ProjectionRunner::new(&store, at_least_once())
            .run_to_head()
            .unwrap(),
        5
    );

    // another event at position 5 than the one both took into account
    let found = uuid::Uuid::new_v4();
    client
        .execute(
            &format!(
                "UPDATE \"{}\".es_events SET event_id = $1 WHERE position = 5",
                guard.schema
            ),
            &[&found],
        )
        .unwrap();
    for err in [
        ProjectionRunner::new(&store, exactly_once())
            .run_to_head()
            .unwrap_err(),
        ProjectionRunner::new(&store, at_least_once())
            .run_to_head()
            .unwrap_err(),
    ] {
        match err {
            ProjectionError::HistoryReplaced {
                checkpoint,
                found: f,
                ..
            } => assert_eq!((checkpoint, f), (5, found)),
            other => panic!("expected HistoryReplaced, got {other}"),
        }
    }

    // a checkpoint moved by a build that records no marks has none: nothing to check
    client
        .batch_execute(&format!(
            "UPDATE \"{}\".es_checkpoints SET position = 4",
            guard.schema
        ))
        .unwrap();
    let checkpoints = PgCheckpoints::connect(&guard.url, &guard.schema).unwrap();
    assert_eq!(checkpoints.load_mark("count").unwrap(), Mark::at(4));
    assert_eq!(
        ProjectionRunner::new(&store, at_least_once())
            .run_to_head()
            .unwrap(),
        5
    );
}

/// A batch handed to an instance that does not know where its checkpoint is (new, or
/// after an error) is applied only if it begins after the checkpoint recorded: two new
/// instances given the same batch apply it once, the second finding the checkpoint moved
/// (it applied it twice, as the compare-and-set moved the checkpoint from where the row
/// was when it looked, not from where the batch began). So are two batches that overlap.
#[test]
fn a_batch_that_overlaps_the_recorded_checkpoint_is_not_applied_again() {
    use es_core::TransactionalProjection;
    let Some((store, guard)) = common::store() else {
        return;
    };
    for i in 0..6u64 {
        store
            .append("p-1", ExpectedVersion::Any, events(i * 10, 1))
            .unwrap();
    }
    let all: Vec<RecordedEvent> = store.read_all(1).unwrap().map(Result::unwrap).collect();
    let mut client = postgres::Client::connect(&guard.url, postgres::NoTls).unwrap();
    let table = create_sums(&mut client, &guard.schema);
    let instance =
        || PgProjection::connect(&guard.url, &guard.schema, "sums", Sums::new(&table)).unwrap();
    let (mut a, mut b) = (instance(), instance());
    a.apply_batch_marked(&all[..3], Mark::at(3)).unwrap();
    let err = b.apply_batch_marked(&all[..3], Mark::at(3)).unwrap_err();
    assert!(err.to_string().contains("another instance"), "{err}");
    // a batch that begins inside what was applied, from an instance that knew an older
    // checkpoint
    let mut c = instance();
    assert_eq!(c.checkpoint().unwrap(), 3);
    a.apply_batch_marked(&all[3..5], Mark::at(5)).unwrap();
    let err = b.apply_batch_marked(&all[2..6], Mark::at(6)).unwrap_err();
    assert!(err.to_string().contains("another instance"), "{err}");
    let err = c.apply_batch_marked(&all[3..6], Mark::at(6)).unwrap_err();
    assert!(err.to_string().contains("another instance"), "{err}");
    // the one that follows on goes through
    b.apply_batch_marked(&all[5..6], Mark::at(6)).unwrap();
    assert_eq!(checkpoint_row(&mut client, &guard.schema, "sums"), 6);
    assert_eq!(sums(&mut client, &table), reference(&store));
}

/// A role granted only the rights to read and write the tables (as PostgreSQL 15 leaves
/// roles without the right to create) connects projections and checkpoints to a table
/// that is there: nothing is created, so nothing needs the right to create (the
/// `CREATE .. IF NOT EXISTS` it ran was refused).
#[test]
fn a_role_without_the_right_to_create_uses_the_checkpoints_table_that_is_there() {
    let Some((store, guard)) = common::store() else {
        return;
    };
    store
        .append("p-1", ExpectedVersion::NoStream, events(1, 1))
        .unwrap();
    let mut admin = postgres::Client::connect(&guard.url, postgres::NoTls).unwrap();
    let table = create_sums(&mut admin, &guard.schema);
    // the tables, set up by a role that may create them
    PgCheckpoints::connect(&guard.url, &guard.schema).unwrap();
    let role = format!("es_data_{}", guard.schema);
    let schema = &guard.schema;
    admin
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN;
             GRANT USAGE ON SCHEMA \"{schema}\" TO {role};
             GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA \"{schema}\" TO {role};"
        ))
        .unwrap();
    let config: postgres::Config = guard.url.parse().unwrap();
    let user = config.get_user().unwrap_or("postgres").to_owned();
    let role_url = guard
        .url
        .replacen(&format!("//{user}@"), &format!("//{role}@"), 1);
    assert_ne!(role_url, guard.url);
    let outcome = (|| -> Result<(), BoxError> {
        let checkpoints = PgCheckpoints::connect(&role_url, schema)?;
        checkpoints.save("mailer", 1)?;
        assert_eq!(checkpoints.load("mailer")?, 1);
        let projection = PgProjection::connect(&role_url, schema, "sums", Sums::new(&table))?;
        let mut runner = ProjectionRunner::new(&store, projection);
        assert_eq!(runner.run_to_head()?, 1);
        Ok(())
    })();
    let _ = admin.batch_execute(&format!(
        "REVOKE ALL ON ALL TABLES IN SCHEMA \"{schema}\" FROM {role};
         REVOKE ALL ON SCHEMA \"{schema}\" FROM {role}; DROP ROLE {role};"
    ));
    outcome.unwrap();
}

/// A read model's failed statement is reported with the server's message, not the
/// client's "db error" alone.
#[test]
fn a_read_models_failed_statement_says_what_the_server_said() {
    let Some((store, guard)) = common::store() else {
        return;
    };
    store
        .append("p-1", ExpectedVersion::NoStream, events(1, 1))
        .unwrap();
    // no such table
    let table = format!("\"{}\".missing", guard.schema);
    let projection =
        PgProjection::connect(&guard.url, &guard.schema, "sums", Sums::new(&table)).unwrap();
    let mut runner = ProjectionRunner::new(&store, projection);
    let err = runner.run_to_head().unwrap_err().to_string();
    assert!(
        err.contains("does not exist") && err.contains("42P01"),
        "{err}"
    );
    let err = runner.rebuild().unwrap_err().to_string();
    assert!(err.contains("does not exist"), "{err}");
}

/// Counts events in a table it creates itself.
struct SelfMade {
    table: String,
}

impl PgReadModel for SelfMade {
    fn apply(&mut self, tx: &mut Transaction<'_>, _: &RecordedEvent) -> Result<(), BoxError> {
        tx.execute(
            &format!("UPDATE {} SET events = events + 1", self.table),
            &[],
        )?;
        Ok(())
    }
    fn reset(&mut self, tx: &mut Transaction<'_>) -> Result<(), BoxError> {
        tx.execute(&format!("UPDATE {} SET events = 0", self.table), &[])?;
        Ok(())
    }
    fn set_up(&mut self, tx: &mut Transaction<'_>) -> Result<(), BoxError> {
        tx.batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {t} (events BIGINT NOT NULL);
             INSERT INTO {t} SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM {t})",
            t = self.table
        ))?;
        Ok(())
    }
}

/// Instances of a projection that start together create the read model's tables once,
/// under the set-up's lock (each creating them itself, the losers failed with a unique
/// violation); a set-up that fails is a connection error naming the projection.
#[test]
fn instances_starting_together_set_up_the_read_model_once() {
    let Some((store, guard)) = common::store() else {
        return;
    };
    store
        .append("p-1", ExpectedVersion::NoStream, events(1, 3))
        .unwrap();
    let table = format!("\"{}\".counted", guard.schema);
    let start = std::sync::Barrier::new(4);
    let instances: Vec<_> = std::thread::scope(|scope| {
        let started: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| {
                    start.wait();
                    let model = SelfMade {
                        table: table.clone(),
                    };
                    PgProjection::connect(&guard.url, &guard.schema, "counted", model)
                })
            })
            .collect();
        started.into_iter().map(|t| t.join().unwrap()).collect()
    });
    for instance in instances {
        let mut runner = ProjectionRunner::new(&store, instance.unwrap());
        assert_eq!(runner.run_to_head().unwrap(), 3);
    }
    let mut client = postgres::Client::connect(&guard.url, postgres::NoTls).unwrap();
    let counted: i64 = client
        .query_one(&format!("SELECT events FROM {table}"), &[])
        .unwrap()
        .get(0);
    assert_eq!(counted, 3);
    let broken = SelfMade {
        table: "no_such_schema.counted".into(),
    };
    let Err(err) = PgProjection::connect(&guard.url, &guard.schema, "broken", broken) else {
        panic!("a failing set-up connected");
    };
    assert!(
        matches!(&err, es_store_pg::ConnectError::ReadModelSetUp { name, .. } if name == "broken"),
        "{err:?}"
    );
    assert!(err.to_string().contains("does not exist"), "{err}");
}

/// Creates its table, then swallows the error of a statement that fails.
struct Careless;

impl PgReadModel for Careless {
    fn apply(&mut self, _: &mut Transaction<'_>, _: &RecordedEvent) -> Result<(), BoxError> {
        Ok(())
    }
    fn reset(&mut self, _: &mut Transaction<'_>) -> Result<(), BoxError> {
        Ok(())
    }
    fn set_up(&mut self, tx: &mut Transaction<'_>) -> Result<(), BoxError> {
        tx.batch_execute("CREATE TABLE IF NOT EXISTS careless (n BIGINT)")?;
        let _ = tx.batch_execute("CREATE INDEX ON no_such_table (n)");
        Ok(())
    }
}

/// A set-up that went on past a failed statement had its transaction rolled back by the
/// commit, reported as a success: the connect succeeded without the table.
#[test]
fn a_set_up_that_went_on_past_a_failed_statement_fails_the_connect() {
    let Some((_store, guard)) = common::store() else {
        return;
    };
    let url = format!("{}?options=-c%20search_path%3D{}", guard.url, guard.schema);
    let Err(err) = PgProjection::connect(&url, &guard.schema, "careless", Careless) else {
        panic!("the connect succeeded");
    };
    assert!(
        matches!(&err, es_store_pg::ConnectError::ReadModelSetUp { name, .. } if name == "careless"),
        "{err:?}"
    );
}
