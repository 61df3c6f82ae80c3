//! Three of the seed domains end to end on the file store, reopening the store between
//! commands: state, invariants, history and read models survive every reopen. (The
//! orders domain, with its SQLite read model, is `examples/tests/orders_sqlite.rs`, run
//! with the `sqlite` feature.)

// Amounts in cents are written as dollars_cents: `150_00` is $150.00.
#![allow(clippy::inconsistent_digit_grouping)]

use es_core::projection::{MemoryCheckpoints, ProjectionRunner, WithCheckpoint};
use es_core::subscription::Filter;
use es_core::{CommandError, EventStore, Repository};
use es_examples::bank::{Account, AccountError};
use es_examples::cart::{Cart, CartError, QuantitySold};
use es_examples::warehouse::{Product, StockError};
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
fn shopping_cart_across_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    with_store(d, |s| {
        Repository::<Cart, _>::new(s)
            .execute("1", |c| c.create("ann"))
            .unwrap()
    });
    with_store(d, |s| {
        let carts = Repository::<Cart, _>::new(s);
        carts
            .execute("1", |c| c.add_product("tea", 3, 400))
            .unwrap();
        carts.execute("1", |c| c.remove_product("tea", 1)).unwrap();
    });
    with_store(d, |s| {
        let carts = Repository::<Cart, _>::new(s);
        let err = carts
            .execute("1", |c| c.remove_product("tea", 9))
            .unwrap_err();
        assert!(matches!(
            err.rejected(),
            Some(CartError::NotEnoughInCart { in_cart: 2, .. })
        ));
        carts.execute("1", |c| c.purchase()).unwrap();
    });
    with_store(d, |s| {
        let carts = Repository::<Cart, _>::new(s);
        let cart = carts.load("1").unwrap();
        assert!(cart.purchased);
        assert_eq!((cart.version, cart.total_cents()), (4, 800));
        assert_eq!(carts.load_at("1", 2).unwrap().items["tea"].quantity, 3);
        let err = carts
            .execute("1", |c| c.add_product("cake", 1, 1))
            .unwrap_err();
        assert!(matches!(err.rejected(), Some(CartError::AlreadyPurchased)));
        let mut view = ProjectionRunner::new(
            s,
            WithCheckpoint::new(
                QuantitySold::default(),
                "sold",
                MemoryCheckpoints::default(),
            ),
        )
        .with_filter(Filter::all().kinds(["cart"]));
        view.run_to_head().unwrap();
        assert_eq!(view.projection().projection.0["tea"], 2);
    });
}

#[test]
fn bank_account_across_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for step in 0..4 {
        with_store(d, |s| {
            let accounts = Repository::<Account, _>::new(s);
            match step {
                0 => drop(accounts.execute("a", |a| a.open("Ann")).unwrap()),
                1 => drop(accounts.execute("a", |a| a.deposit(1_000)).unwrap()),
                2 => drop(accounts.execute("a", |a| a.withdraw(400)).unwrap()),
                _ => {
                    let err = accounts.execute("a", |a| a.withdraw(601)).unwrap_err();
                    assert!(matches!(
                        err,
                        CommandError::Rejected(AccountError::InsufficientFunds {
                            balance_cents: 600,
                            ..
                        })
                    ));
                }
            }
        });
    }
    with_store(d, |s| {
        let a = Repository::<Account, _>::new(s).load("a").unwrap();
        assert_eq!((a.balance_cents, a.version), (600, 3));
    });
}

#[test]
fn warehouse_snapshots_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    with_store(d, |s| {
        let products = Repository::<Product, _>::new(s);
        for _ in 0..250 {
            products.execute("p", |p| p.receive(1)).unwrap();
        }
    });
    with_store(d, |s| {
        let products = Repository::<Product, _>::new(s);
        let snapshot = s
            .snapshots()
            .unwrap()
            .load_snapshot("product-p", u64::MAX)
            .unwrap()
            .unwrap();
        assert_eq!(snapshot.version, 200);
        let p = products.load("p").unwrap();
        assert_eq!((p.on_hand, p.version, p.events), (250, 250, 250));
        let err = products.execute("p", |p| p.ship(251)).unwrap_err();
        assert!(matches!(
            err.rejected(),
            Some(StockError::NotEnoughStock { available: 250, .. })
        ));
        products.execute("p", |p| p.ship(250)).unwrap();
    });
    with_store(d, |s| {
        assert_eq!(
            Repository::<Product, _>::new(s).load("p").unwrap().on_hand,
            0
        );
    });
}

/// The process manager owns its repository: it runs in a background thread, and a service
/// reads what it did, its position and its lag while it keeps up, then stops it cleanly.
#[test]
fn a_process_manager_runs_in_the_background_and_can_be_read() {
    use es_core::projection::Shared;
    use es_examples::orders::{Order, OrderLine, StockReservations};
    use std::sync::Arc;
    use std::time::Duration;

    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(FileStore::open(dir.path()).unwrap());
    Repository::<Product, _>::new(store.clone())
        .execute("kb", |p| p.receive(3))
        .unwrap();
    let manager = Shared::new(WithCheckpoint::new(
        StockReservations {
            products: Repository::<Product, _>::new(store.clone()),
            log: Vec::new(),
        },
        "reservations",
        MemoryCheckpoints::default(),
    ));
    let running = ProjectionRunner::new(store.clone(), manager.clone()).spawn();
    let progress = running.progress();
    let placed = Repository::<Order, _>::new(store.clone())
        .execute("1", |o| {
            o.place(
                "Dana",
                vec![OrderLine {
                    sku: "kb".into(),
                    quantity: 2,
                }],
                10_000,
            )
        })
        .unwrap();
    let position = placed.appended.unwrap().last_position;
    assert!(running.wait_for(position, Duration::from_secs(10)));
    assert!(progress.checkpoint() >= position);
    assert!(progress.lag().unwrap() <= store.head_position().unwrap() - position);
    let log = manager.read().projection.log.clone();
    assert_eq!(log.len(), 1);
    assert!(log[0].2.starts_with("reserved 2"), "{log:?}");
    running.stop().unwrap();
    let product = Repository::<Product, _>::new(store.clone())
        .load("kb")
        .unwrap();
    assert_eq!(product.reserved, 2);
}

mod readings {
    //! A sensor whose events hold a float and a field serde skips: what is cached after a
    //! command is what a replay of the stored events gives, and an event that does not
    //! read back from its encoding is refused before it is stored.
    use es_core::prelude::*;

    #[event]
    #[derive(Debug, Clone, PartialEq)]
    pub struct Measured {
        pub value: f64,
        #[serde(skip)]
        pub note: String,
    }

    #[event]
    #[derive(Debug, Clone, PartialEq)]
    pub enum SensorEvent {
        Measured(Measured),
    }

    #[derive(Debug, Default, Clone, Aggregate)]
    #[aggregate(kind = "sensor", event = SensorEvent)]
    pub struct Sensor {
        pub readings: u64,
        pub sum: f64,
        pub notes: Vec<String>,
    }

    impl Apply<Measured> for Sensor {
        fn apply(&mut self, e: &Measured) {
            self.readings += 1;
            self.sum += e.value;
            self.notes.push(e.note.clone());
        }
    }

    impl Sensor {
        pub fn measure(&self, value: f64) -> Result<Measured, std::convert::Infallible> {
            Ok(Measured {
                value,
                note: "only in memory".into(),
            })
        }
    }
}

#[test]
fn the_cached_state_is_what_the_stored_events_give_and_unreadable_events_are_refused() {
    use es_core::CacheOptions;
    use readings::Sensor;
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let cached = Repository::<Sensor, _>::new(&store).with_cache(CacheOptions::default());
    let done = cached.execute("s1", |s| s.measure(1.5)).unwrap();
    // the note is skipped by serde: the stored event has none, and neither has the state
    assert_eq!(done.state.notes, vec![String::new()]);
    cached.execute("s1", |s| s.measure(2.0)).unwrap();
    let from_cache = cached.load("s1").unwrap();
    let replayed = Repository::<Sensor, _>::new(&store).load("s1").unwrap();
    assert_eq!(
        (from_cache.readings, from_cache.sum, &from_cache.notes),
        (replayed.readings, replayed.sum, &replayed.notes)
    );
    // NaN encodes as `null`, which a float cannot decode: stored, it would make the
    // stream unreadable for every later load
    let err = cached.execute("s1", |s| s.measure(f64::NAN)).unwrap_err();
    assert!(
        matches!(&err, CommandError::Unreadable { event_type, .. } if event_type == "Measured"),
        "{err}"
    );
    assert_eq!(store.stream_version("sensor-s1").unwrap(), 2);
    assert_eq!(
        Repository::<Sensor, _>::new(&store)
            .load("s1")
            .unwrap()
            .readings,
        2
    );
}
