//! The orders read model in PostgreSQL, exactly once: two instances of the projector run
//! at once against one checkpoint while orders are placed, discounted and paid; every
//! event counts once in the rows, whichever instance applied it.
//!
//! Needs a server: `ES_PG_URL=postgres://... cargo test -p es-examples --test orders_postgres`
//! (CI starts one and sets `ES_PG_URL`).
// Amounts in cents are written as dollars_cents: `150_00` is $150.00.
#![allow(clippy::inconsistent_digit_grouping)]

use es_core::projection::ProjectionRunner;
use es_core::subscription::Filter;
use es_core::{EventStore, Repository};
use es_examples::orders::{Order, OrderLine, PgOrderSummaries};
use es_store_pg::postgres::{Client, NoTls};
use es_store_pg::projection::{PgProjection, ProjectionDbError};
use es_store_pg::{PgStore, PgStoreOptions};
use std::sync::atomic::{AtomicBool, Ordering};

const ORDERS: u64 = 40;

fn url() -> Option<String> {
    match std::env::var("ES_PG_URL") {
        Ok(url) => Some(url),
        Err(_) => {
            eprintln!("SKIPPED: ES_PG_URL is not set; the PostgreSQL read model needs a server");
            assert!(std::env::var_os("CI").is_none(), "CI must set ES_PG_URL");
            None
        }
    }
}

#[test]
fn two_projector_instances_apply_every_event_once() {
    let Some(url) = url() else { return };
    let schema = format!("orders_rm_{}", std::process::id());
    let mut db = Client::connect(&url, NoTls).unwrap();
    db.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .unwrap();
    let store = PgStore::connect_with(
        &url,
        PgStoreOptions {
            schema: schema.clone(),
            ..PgStoreOptions::default()
        },
    )
    .unwrap();
    let model = PgOrderSummaries::create(&mut db, &schema).unwrap();
    let orders = Repository::<Order, _>::new(&store);
    let writing = AtomicBool::new(true);
    let moved = std::thread::scope(|scope| {
        let instances: Vec<_> = (0..2)
            .map(|_| {
                let projection =
                    PgProjection::connect(&url, &schema, "order_summary", model.clone()).unwrap();
                let (store, writing) = (&store, &writing);
                scope.spawn(move || {
                    let mut runner = ProjectionRunner::new(store, projection)
                        .with_filter(Filter::all().kinds(["order"]))
                        .with_batch_size(3);
                    let mut moved = 0;
                    loop {
                        let done = !writing.load(Ordering::SeqCst);
                        match runner.run_to_head() {
                            Ok(_) => {}
                            Err(e) => {
                                // the other instance applied this batch first: nothing was
                                // written here, and the next run starts past it
                                let cause = std::error::Error::source(&e)
                                    .and_then(|s| s.downcast_ref::<ProjectionDbError>());
                                assert!(
                                    matches!(
                                        cause,
                                        Some(ProjectionDbError::CheckpointMoved { .. })
                                    ),
                                    "{e:?}"
                                );
                                moved += 1;
                                continue;
                            }
                        }
                        if done {
                            return moved;
                        }
                    }
                })
            })
            .collect();
        for n in 0..ORDERS {
            let id = n.to_string();
            let line = vec![OrderLine {
                sku: "kb".into(),
                quantity: 1,
            }];
            orders
                .execute(&id, |o| o.place("Dana", line.clone(), 100_00 + n))
                .unwrap();
            orders
                .execute(&id, |o| o.apply_discount("TEN", 10_00))
                .unwrap();
            orders.execute(&id, |o| o.pay(20_00)).unwrap();
            orders.execute(&id, |o| o.pay(30_00)).unwrap();
        }
        writing.store(false, Ordering::SeqCst);
        instances
            .into_iter()
            .map(|i| i.join().unwrap())
            .sum::<u64>()
    });
    let rows = model.rows(&mut db).unwrap();
    assert_eq!(rows.len() as u64, ORDERS);
    for row in &rows {
        let n: u64 = row.order_id.trim_start_matches("order-").parse().unwrap();
        assert_eq!(
            (row.total_cents, row.discount_cents, row.paid_cents),
            (100_00 + n, 10_00, 50_00),
            "{row:?}"
        );
    }
    let checkpoint: i64 = db
        .query_one(
            &format!("SELECT position FROM {schema}.es_checkpoints WHERE name = 'order_summary'"),
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(checkpoint as u64, store.head_position().unwrap());
    eprintln!("batches found already applied by the other instance: {moved}");
    db.batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .unwrap();
}
