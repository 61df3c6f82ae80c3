//! Orders with payments and discounts, a process manager that reserves stock when an
//! order is placed, and a CQRS read model of order summaries, updated exactly once: in
//! SQLite beside the file store, or in PostgreSQL beside the PostgreSQL store.
//!
//! `cargo run --example orders --features sqlite [DIR | --store postgres://URL]`

// Amounts in cents are written as dollars_cents: `150_00` is $150.00.
#![allow(clippy::inconsistent_digit_grouping)]

use es_core::projection::BoxError;
use es_core::projection::ProjectionRunner;
use es_core::subscription::{Filter, Subscription};
use es_core::{Metadata, Repository};
use es_examples::dollars;
use es_examples::orders::{
    Order, OrderLine, OrderSummaries, PgOrderSummaries, StockReservations, SummaryRow,
};
use es_examples::store::{Args, ExampleStore, Location};
use es_examples::warehouse::Product;
use es_store_pg::projection::PgProjection;

fn main() -> Result<(), BoxError> {
    let args = Args::from_env()?;
    let location = Location::choose("orders", &args, args.plain(0));
    println!("Event store in {location}\n");
    let store = ExampleStore::open(&location, true)?;
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
    let react = |manager: &mut StockReservations<&ExampleStore>| -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
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
    // After a crash it would start again from an older checkpoint: nothing it did happens
    // twice (each reservation is recorded under an id derived from its cause). What it
    // refused is not recorded: run again after stock arrived, it would reserve then.
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

    // The read model: order summaries in a database, each batch committed with its
    // checkpoint; a new runner on the same database resumes from the checkpoint it
    // committed.
    let pay_1002 = || orders.execute("1002", |o| o.pay(10_00)).map(|_| ());
    match &location {
        Location::Dir(dir) => {
            let db = dir.join("read-model.sqlite");
            let mut runner = ProjectionRunner::new(&store, OrderSummaries::open(&db)?)
                .with_filter(Filter::all().kinds(["order"]));
            let checkpoint = runner.run_to_head()?;
            println!(
                "Order summaries in {} (checkpoint {checkpoint}):",
                db.display()
            );
            print_summaries(runner.projection().rows()?);

            pay_1002()?;
            let mut resumed = ProjectionRunner::new(&store, OrderSummaries::open(&db)?)
                .with_filter(Filter::all().kinds(["order"]));
            println!(
                "\nAfter a $10.00 payment on 1002, a new runner resumes at the stored checkpoint (lag {}):",
                resumed.lag()?
            );
            resumed.run_to_head()?;
            print_summaries(resumed.projection().rows()?);
        }
        Location::Postgres { url, schema } => {
            let mut db = es_store_pg::postgres::Client::connect(url, es_store_pg::postgres::NoTls)?;
            let model = PgOrderSummaries::create(&mut db, schema)?;
            let open = || PgProjection::connect(url, schema, "order_summary", model.clone());
            let mut runner =
                ProjectionRunner::new(&store, open()?).with_filter(Filter::all().kinds(["order"]));
            let checkpoint = runner.run_to_head()?;
            println!(
                "Order summaries in PostgreSQL, table {schema}.order_summary (checkpoint {checkpoint}):"
            );
            print_summaries(model.rows(&mut db)?);

            pay_1002()?;
            // Two instances of the projector (two processes in production): each batch's
            // rows and checkpoint commit together, and the checkpoint moves only from the
            // value the batch was read at, so the payment is counted once.
            let mut second =
                ProjectionRunner::new(&store, open()?).with_filter(Filter::all().kinds(["order"]));
            println!(
                "\nAfter a $10.00 payment on 1002, two instances of the projector resume at the stored checkpoint (lag {}):",
                second.lag()?
            );
            second.run_to_head()?;
            match runner.run_to_head() {
                Ok(at) => {
                    println!("  the first instance finds nothing left to apply (checkpoint {at})")
                }
                Err(e) => println!("  the first instance applied nothing: {e}"),
            }
            print_summaries(model.rows(&mut db)?);
        }
    }
    Ok(())
}

fn print_summaries(rows: Vec<SummaryRow>) {
    for row in rows {
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
}
