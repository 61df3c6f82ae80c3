//! Orders with payments and discounts on the file store, a process manager that
//! reserves stock when an order is placed, and a CQRS read model of order summaries in
//! SQLite, updated exactly once.
//!
//! `cargo run --example orders [DIR]`

// Amounts in cents are written as dollars_cents: `150_00` is $150.00.
#![allow(clippy::inconsistent_digit_grouping)]

use es_core::projection::ProjectionRunner;
use es_core::subscription::{Filter, Subscription};
use es_core::{Metadata, Repository};
use es_examples::orders::{Order, OrderLine, OrderSummaries, StockReservations};
use es_examples::warehouse::Product;
use es_examples::{dollars, fresh_data_dir};
use es_store_fs::FileStore;

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let dir = fresh_data_dir("orders")?;
    println!("Event store in {}\n", dir.display());
    let store = FileStore::open(dir.join("events"))?;
    let orders = Repository::<Order, _>::new(&store);
    let products = Repository::<Product, _>::new(&store);
    products.execute("keyboard", |p| p.receive(5))?;
    products.execute("mouse", |p| p.receive(1))?;

    let lines = vec![
        OrderLine {
            sku: "keyboard".into(),
            quantity: 2,
        },
        OrderLine {
            sku: "mouse".into(),
            quantity: 1,
        },
    ];
    let web = Metadata::new().with_actor("web-shop");
    orders.execute_with("1001", web.clone(), |o| {
        o.place("Dana", lines.clone(), 200_00)
    })?;
    let order = orders.load("1001")?;
    println!(
        "Order 1001 placed: {} owed, status {}",
        dollars(order.owed_cents()),
        order.status()
    );
    orders.execute("1001", |o| o.apply_discount("SPRING50", 50_00))?;
    let order = orders.load("1001")?;
    println!(
        "Discount SPRING50 applied: {} owed, status {}",
        dollars(order.owed_cents()),
        order.status()
    );
    let err = orders.execute("1001", |o| o.pay(200_00)).unwrap_err();
    println!("Paying $200.00 is refused: {err}");
    orders.execute("1001", |o| o.pay(150_00))?;
    let order = orders.load("1001")?;
    println!(
        "Paid $150.00: {} owed, status {}\n",
        dollars(order.owed_cents()),
        order.status()
    );

    orders.execute("1002", |o| {
        o.place(
            "Eli",
            vec![OrderLine {
                sku: "mouse".into(),
                quantity: 1,
            }],
            25_00,
        )
    })?;

    // The process manager reacts to every order placed.
    let mut manager = StockReservations {
        products,
        log: Vec::new(),
    };
    let react = |manager: &mut StockReservations<&FileStore>| -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let mut placed = Subscription::new(&store, 1).with_filter(Filter::all().kinds(["order"]));
        while let Some(event) = placed.try_next()? {
            manager.react(&event)?;
        }
        Ok(())
    };
    react(&mut manager)?;
    println!("Process manager, first run:");
    for (order, sku, outcome) in manager.log.drain(..) {
        println!("  {order}: {sku}: {outcome}");
    }
    // After a crash it would start again from an older checkpoint: nothing happens twice.
    react(&mut manager)?;
    println!("Process manager, run again from the start (as after a crash):");
    for (order, sku, outcome) in manager.log.drain(..) {
        println!("  {order}: {sku}: {outcome}");
    }
    let keyboard = manager.products.load("keyboard")?;
    println!(
        "Keyboards: {} on hand, {} reserved, {} available\n",
        keyboard.on_hand,
        keyboard.reserved,
        keyboard.available()
    );

    // The read model: order summaries in SQLite, each batch committed with its checkpoint.
    let db = dir.join("read-model.sqlite");
    let mut runner = ProjectionRunner::new(&store, OrderSummaries::open(&db)?)
        .with_filter(Filter::all().kinds(["order"]));
    let checkpoint = runner.run_to_head()?;
    println!(
        "Order summaries in {} (checkpoint {checkpoint}):",
        db.display()
    );
    print_summaries(runner.projection())?;

    orders.execute("1002", |o| o.pay(10_00))?;
    // A new runner on the same database resumes from the checkpoint it committed.
    let mut resumed = ProjectionRunner::new(&store, OrderSummaries::open(&db)?)
        .with_filter(Filter::all().kinds(["order"]));
    println!(
        "\nAfter a $10.00 payment on 1002, a new runner resumes at the stored checkpoint (lag {}):",
        resumed.lag()?
    );
    resumed.run_to_head()?;
    print_summaries(resumed.projection())?;
    Ok(())
}

fn print_summaries(model: &OrderSummaries) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    for row in model.rows()? {
        println!(
            "  {:<11} {:<5} total {:>8} discount {:>7} paid {:>8} owed {:>8} {}",
            row.order_id,
            row.customer,
            dollars(row.total_cents),
            dollars(row.discount_cents),
            dollars(row.paid_cents),
            dollars(row.owed_cents),
            row.status
        );
    }
    Ok(())
}
