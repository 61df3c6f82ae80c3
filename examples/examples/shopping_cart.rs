//! The main demo: shopping carts on the embedded file store (or on PostgreSQL).
//!
//! `cargo run --example shopping_cart [DIR | --store postgres://URL]`
//!
//! Shows commands as plain methods with invariants, an optimistic-concurrency conflict
//! resolved by retry, the audit history of a cart with who/when/why metadata, the cart at
//! an earlier point in time, a materialized view kept by a projection, and the store
//! reopened with everything still there.

use es_core::projection::{MemoryCheckpoints, ProjectionRunner, WithCheckpoint};
use es_core::subscription::Filter;
use es_core::{Metadata, Repository};
use es_examples::cart::{Cart, CartEvent, QuantitySold};
use es_examples::dollars;
use es_examples::store::{Args, ExampleStore, Location};
use std::sync::Arc;
use std::time::Duration;

type BoxResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn main() -> BoxResult<()> {
    let args = Args::from_env()?;
    let location = Location::choose("shopping_cart", &args, args.plain(0));
    println!("Event store in {location}\n");
    let store = Arc::new(ExampleStore::open(&location, true)?);
    let carts = Repository::<Cart, _>::new(Arc::clone(&store));

    // --- commands: plain methods that check the cart and return events -------------------
    let alice = Metadata::new()
        .with_actor("alice")
        .with("reason", "weekly groceries");
    carts.execute_with("42", alice.clone(), |c| c.create("alice"))?;
    carts.execute_with("42", alice.clone(), |c| {
        c.add_product("Coffee beans", 2, 1_250)
    })?;
    carts.execute_with("42", alice.clone(), |c| c.add_product("Oat milk", 3, 199))?;
    carts.execute_with("42", alice.clone().with("reason", "too much milk"), |c| {
        c.remove_product("Oat milk", 1)
    })?;
    println!("Cart 42 after four commands:");
    show(&carts.load("42")?);

    // invariants are the command's own errors, and nothing is written
    let err = carts
        .execute("42", |c| c.remove_product("Oat milk", 5))
        .unwrap_err();
    println!("Removing 5 oat milk is refused: {err}");
    let err = carts
        .execute("42", |c| c.add_product("Tea", 0, 300))
        .unwrap_err();
    println!("Adding 0 tea is refused: {err}\n");

    // --- optimistic concurrency: another client changes the cart mid-command -------------
    let bob = Repository::<Cart, _>::new(Arc::clone(&store));
    let mut raced = false;
    let done = carts.execute_with("42", alice.clone(), |cart| {
        if !raced {
            raced = true;
            // while this command decides, bob (same household) adds bread
            bob.execute_with("42", Metadata::new().with_actor("bob"), |c| {
                c.add_product("Bread", 1, 349)
            })
            .expect("bob's command");
        }
        cart.add_product("Coffee beans", 1, 1_250)
    })?;
    println!(
        "Alice's add ran {} times: the first attempt conflicted with Bob's append at version {}, \
         the retry saw his bread and succeeded at version {}.\n",
        done.attempts,
        done.version - 1,
        done.version
    );

    // --- purchase; after it the cart is closed -----------------------------------------
    let bought = carts.execute_with("42", alice.clone().with("reason", "checkout"), |c| {
        c.purchase()
    })?;
    println!("Purchased for {}.", dollars(bought.state.total_cents()));
    let err = carts
        .execute("42", |c| c.add_product("Chocolate", 1, 250))
        .unwrap_err();
    println!("Adding after the purchase is refused: {err}\n");

    // --- audit history: who did what, when, and why ------------------------------------
    println!("Audit history of cart 42:");
    for e in carts.history("42")? {
        let who = e.metadata.actor.as_deref().unwrap_or("-");
        let why = e
            .metadata
            .extra
            .get("reason")
            .and_then(|r| r.as_str())
            .unwrap_or("-");
        println!(
            "  v{} {} by {:<5} ({}) {}",
            e.stream_version,
            e.timestamp.format("%H:%M:%S%.3f"),
            who,
            why,
            describe(&e.event)
        );
    }

    // --- time travel --------------------------------------------------------------------
    let then = carts.load_at("42", 3)?;
    println!("\nCart 42 as it was at version 3:");
    show(&then);
    let history = carts.history("42")?;
    let as_of = history[4].timestamp;
    let at_time = carts.load_as_of("42", as_of)?;
    println!(
        "Cart 42 as of {} (version {}):",
        as_of.format("%H:%M:%S%.3f"),
        at_time.version
    );
    show(&at_time);

    // --- a materialized view: quantity sold per product --------------------------------
    for (id, user, items) in [
        (
            "43",
            "carol",
            vec![("Coffee beans", 1, 1_250), ("Bread", 2, 349)],
        ),
        ("44", "dave", vec![("Oat milk", 6, 199)]),
    ] {
        carts.execute(id, |c| c.create(user))?;
        for (product, quantity, price) in &items {
            carts.execute(id, |c| c.add_product(product, *quantity, *price))?;
        }
        carts.execute(id, |c| c.purchase())?;
    }
    // the view lives in memory, and so does its checkpoint: a durable checkpoint beside a
    // view that starts empty would skip, at the next start, what the view had counted
    let view = WithCheckpoint::new(
        QuantitySold::default(),
        "quantity_sold",
        MemoryCheckpoints::default(),
    );
    let running = ProjectionRunner::new(Arc::clone(&store), view)
        .with_filter(Filter::all().kinds(["cart"]))
        .spawn();
    let head = es_core::EventStore::head_position(&*store)?;
    if !running.wait_for(head, Duration::from_secs(10)) {
        return Err("the projection did not reach the head within 10 s".into());
    }
    // a purchase made while the projection runs is picked up live
    carts.execute("45", |c| c.create("erin"))?;
    carts.execute("45", |c| c.add_product("Bread", 1, 349))?;
    carts.execute("45", |c| c.purchase())?;
    let head = es_core::EventStore::head_position(&*store)?;
    if !running.wait_for(head, Duration::from_secs(10)) {
        return Err("the projection did not reach the head within 10 s".into());
    }
    println!(
        "\nQuantity sold per product (projection at position {}, lag {}):",
        running.checkpoint(),
        running.lag()?
    );
    let runner = running.stop()?;
    for (product, quantity) in &runner.projection().projection.0 {
        println!("  {product:<14} {quantity}");
    }

    // --- durability: close, reopen, same state ------------------------------------------
    drop(runner);
    drop(bob);
    drop(carts);
    let store = Arc::into_inner(store).ok_or("store still shared")?;
    store.close()?;
    let store = ExampleStore::open(&location, false)?;
    let carts = Repository::<Cart, _>::new(&store);
    let reopened = carts.load("42")?;
    println!(
        "\nReopened the store: cart 42 is at version {}, purchased: {}, total {}.",
        reopened.version,
        reopened.purchased,
        dollars(reopened.total_cents())
    );
    Ok(())
}

fn show(cart: &es_core::Loaded<Cart>) {
    for (product, line) in &cart.items {
        println!(
            "  {:<14} x{} at {}",
            product,
            line.quantity,
            dollars(line.unit_price_cents)
        );
    }
    println!(
        "  total {} (version {})\n",
        dollars(cart.total_cents()),
        cart.version
    );
}

fn describe(e: &CartEvent) -> String {
    match e {
        CartEvent::CartCreated(e) => format!("cart created for {}", e.user_id),
        CartEvent::ProductAdded(e) => format!("added {} x {}", e.quantity, e.product),
        CartEvent::ProductRemoved(e) => format!("removed {} x {}", e.quantity, e.product),
        CartEvent::CartPurchased(e) => format!(
            "purchased {} products for {}",
            e.items.len(),
            dollars(e.total_cents)
        ),
    }
}
