//! A warehouse product: stock received, shipped and adjusted, never
//! below zero, with snapshots every 100 events on a long stream.
//!
//! `cargo run --example warehouse [DIR | --store postgres://URL]`

use es_core::{EventStore, Repository};
use es_examples::store::{Args, ExampleStore, Location};
use es_examples::warehouse::Product;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let args = Args::from_env()?;
    let location = Location::choose("warehouse", &args, args.plain(0));
    println!("Event store in {location}\n");
    let store = ExampleStore::open(&location, true)?;
    let products = Repository::<Product, _>::new(&store);

    products.execute("widget", |p| p.receive(10))?;
    products.execute("widget", |p| p.ship(4))?;
    let widget = products.load("widget")?;
    println!(
        "Widget: received 10, shipped 4 -> {} on hand",
        widget.on_hand
    );
    let err = products.execute("widget", |p| p.ship(7)).unwrap_err();
    println!("Shipping 7 is refused: {err}");
    let err = products
        .execute("widget", |p| p.adjust(-8, "count"))
        .unwrap_err();
    println!("Adjusting by -8 is refused: {err}");
    products.execute("widget", |p| p.adjust(-1, "damaged in storage"))?;
    println!(
        "Adjusted by -1 (damaged) -> {} on hand\n",
        products.load("widget")?.on_hand
    );

    // A busy product: a long stream. Every command that crosses a multiple of 100 events
    // writes a snapshot; loading reads the newest snapshot and only the events after it.
    println!("Recording 1,234 movements of the gadget...");
    for i in 0..1_234u64 {
        if i % 3 == 2 {
            products.execute("gadget", |p| p.ship(1))?;
        } else {
            products.execute("gadget", |p| p.receive(2))?;
        }
    }
    let snapshot = store
        .snapshots()
        .ok_or("both stores keep snapshots")?
        .load_snapshot("product-gadget", u64::MAX)?
        .ok_or("a snapshot was written")?;
    let start = Instant::now();
    let gadget = products.load("gadget")?;
    let took = start.elapsed();
    println!(
        "Gadget: {} on hand at version {}; the newest snapshot is at version {}, so the load \
         folded {} events instead of {} ({:?}).",
        gadget.on_hand,
        gadget.version,
        snapshot.version,
        gadget.version - snapshot.version,
        gadget.version,
        took
    );
    let at = products.load_at("gadget", 250)?;
    let older = store
        .snapshots()
        .ok_or("both stores keep snapshots")?
        .load_snapshot("product-gadget", 250)?;
    println!(
        "At version 250: {} on hand ({}; snapshots newer than the wanted version are never used).",
        at.on_hand,
        match older {
            Some(s) => format!("folded from the snapshot at version {}", s.version),
            None => "only the newest three snapshots are kept, so folded from the start".into(),
        }
    );
    Ok(())
}
