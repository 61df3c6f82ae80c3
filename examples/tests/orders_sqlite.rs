//! The orders domain end to end on the file store, reopening the store between commands:
//! the process manager reserves stock once however often it runs, and the SQLite read
//! model resumes from its checkpoint. Needs the `sqlite` feature:
//! `cargo test -p es-examples --features sqlite --test orders_sqlite`.
#![cfg(feature = "sqlite")]
// Amounts in cents are written as dollars_cents: `150_00` is $150.00.
#![allow(clippy::inconsistent_digit_grouping)]

use es_core::projection::ProjectionRunner;
use es_core::subscription::Filter;
use es_core::{EventStore, Repository};
use es_examples::orders::{Order, OrderLine, OrderSummaries, StockReservations};
use es_examples::warehouse::Product;
use es_store_fs::FileStore;
use std::path::Path;

/// Runs `f` on a freshly opened store, then closes it.
fn with_store<T>(dir: &Path, f: impl FnOnce(&FileStore) -> T) -> T {
    let store = FileStore::open(dir).expect("open");
    let out = f(&store);
    store.close().expect("close");
    out
}

#[test]
fn orders_process_manager_and_sqlite_read_model_across_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("events");
    let db = dir.path().join("summary.sqlite");
    with_store(&d, |s| {
        Repository::<Product, _>::new(s)
            .execute("kb", |p| p.receive(5))
            .unwrap();
        let orders = Repository::<Order, _>::new(s);
        // the same product on two lines: each line reserves its own quantity
        let line = vec![
            OrderLine {
                sku: "kb".into(),
                quantity: 2,
            },
            OrderLine {
                sku: "kb".into(),
                quantity: 1,
            },
        ];
        orders
            .execute("1", |o| o.place("Dana", line.clone(), 200_00))
            .unwrap();
        orders
            .execute("1", |o| o.apply_discount("SPRING50", 50_00))
            .unwrap();
        assert_eq!(orders.load("1").unwrap().owed_cents(), 150_00);
    });
    // the process manager runs twice over the same log, with a reopen in between
    for _ in 0..2 {
        with_store(&d, |s| {
            let mut manager = StockReservations {
                products: Repository::<Product, _>::new(s),
                log: Vec::new(),
            };
            for e in s.read_all(1).unwrap() {
                manager.react(&e.unwrap()).unwrap();
            }
            let p = manager.products.load("kb").unwrap();
            assert_eq!(
                (p.reserved, p.available()),
                (3, 2),
                "reserved once, however often it runs"
            );
        });
    }
    with_store(&d, |s| {
        let mut runner = ProjectionRunner::new(s, OrderSummaries::open(&db).unwrap())
            .with_filter(Filter::all().kinds(["order"]));
        runner.run_to_head().unwrap();
        Repository::<Order, _>::new(s)
            .execute("1", |o| o.pay(150_00))
            .unwrap();
    });
    with_store(&d, |s| {
        let mut runner = ProjectionRunner::new(s, OrderSummaries::open(&db).unwrap())
            .with_filter(Filter::all().kinds(["order"]));
        assert_eq!(
            runner.lag().unwrap(),
            1,
            "resumes from the checkpoint in SQLite"
        );
        runner.run_to_head().unwrap();
        let rows = runner.projection().rows().unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].owed_cents, rows[0].status), (0, "paid"));
        assert_eq!(rows[0].discount_cents, 50_00);
    });
}

/// The SQLite read model keeps the id of the event at its checkpoint: a log replaced
/// under it (its directory deleted, new events taking the old positions) stops the
/// runner with `HistoryReplaced`, where it skipped the new events and reported itself
/// caught up.
#[test]
fn the_sqlite_read_model_stops_at_a_replaced_log() {
    use es_core::projection::ProjectionError;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("events");
    let db = dir.path().join("summary.sqlite");
    let line = vec![OrderLine {
        sku: "kb".into(),
        quantity: 1,
    }];
    let place_and_pay = |s: &FileStore, id: &str| {
        let orders = Repository::<Order, _>::new(s);
        orders
            .execute(id, |o| o.place("Dana", line.clone(), 100_00))
            .unwrap();
        orders.execute(id, |o| o.pay(100_00)).unwrap();
    };
    with_store(&d, |s| {
        place_and_pay(s, "0");
        let mut runner = ProjectionRunner::new(s, OrderSummaries::open(&db).unwrap());
        runner.run_to_head().unwrap();
    });
    std::fs::remove_dir_all(&d).unwrap();
    with_store(&d, |s| {
        place_and_pay(s, "1");
        let mut runner = ProjectionRunner::new(s, OrderSummaries::open(&db).unwrap());
        match runner.run_to_head() {
            Err(ProjectionError::HistoryReplaced { .. }) => {}
            other => panic!("the replaced log went unnoticed: {other:?}"),
        }
    });
}

/// An order line of no item is refused when the order is placed: stored, the stock
/// reservations that follow would refuse it at every run, and stop there.
#[test]
fn an_order_line_of_no_item_is_refused_when_placed() {
    use es_examples::orders::OrderError;
    let dir = tempfile::tempdir().unwrap();
    with_store(&dir.path().join("events"), |s| {
        let orders = Repository::<Order, _>::new(s);
        let lines = vec![
            OrderLine {
                sku: "kb".into(),
                quantity: 1,
            },
            OrderLine {
                sku: "mouse".into(),
                quantity: 0,
            },
        ];
        match orders.execute("1", |o| o.place("Dana", lines.clone(), 100_00)) {
            Err(es_core::CommandError::Rejected(OrderError::ZeroQuantity { line: 2, sku })) => {
                assert_eq!(sku, "mouse")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(s.head_position().unwrap(), 0);
    });
}
