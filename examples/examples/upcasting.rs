//! Schema evolution: history written by the first release of a subscription service,
//! read by today's code, whose events have changed shape and name since.
//!
//! `cargo run --example upcasting [DIR | --store postgres://URL]`
//!
//! Imports `examples/data/subscriptions-v1.jsonl` (an `es-store export` of release 1)
//! into a fresh store, then reads every stored event with the current event set,
//! showing how each one is brought up to date: JSON migration steps
//! (`migrate(1 => f)`), a typed step (`upcast_from = SubscribedV2` with `From`), a
//! renamed event (`aliases = ["InvoicePaid"]`) and a retired one (`ignore = [..]`).
//! A new event is then written at today's version beside the old ones, which stay as they
//! were stored.

use es_core::{Aggregate, Event, EventSet, EventStore, Repository};
use es_examples::store::{Args, ExampleStore, Location};
use es_examples::upcasting::{PaymentReceived, Subscribed, Subscription, SubscriptionEvent};
use es_store_fs::tools::import_jsonl;

/// The export of release 1, shipped with the example.
const EXPORT: &str = include_str!("../data/subscriptions-v1.jsonl");
const EXPORT_PATH: &str = "examples/data/subscriptions-v1.jsonl";

type BoxResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn main() -> BoxResult<()> {
    let args = Args::from_env()?;
    let location = Location::choose("upcasting", &args, args.plain(0));
    let store = ExampleStore::open(&location, true)?;

    // --- the history of release 1, imported as it was stored ----------------------------
    let report = import_jsonl(&store, &mut EXPORT.as_bytes())?;
    println!(
        "Imported {} events in {} streams from {EXPORT_PATH} into {location}.",
        report.events_imported, report.streams_imported,
    );
    println!(
        "Release 1 wrote them; today's code has Subscribed at version {} and calls \
         InvoicePaid `{}` (version {}).\n",
        Subscribed::VERSION,
        PaymentReceived::NAME,
        PaymentReceived::VERSION
    );

    // --- every stored event, read by today's code ----------------------------------------
    println!("How today's code reads each stored event:");
    for recorded in store.read_all(1)? {
        let recorded = recorded?;
        let stored = std::str::from_utf8(&recorded.payload)?;
        println!(
            "  {} #{}  {} v{} {stored}",
            recorded.stream_id,
            recorded.stream_version,
            recorded.event_type,
            recorded.schema_version
        );
        match recorded.decode::<SubscriptionEvent>()? {
            Some(envelope) => match upcast_route(&recorded.event_type, recorded.schema_version) {
                Some(route) => {
                    let now = envelope.event.encode()?;
                    let payload = String::from_utf8(now.payload)?;
                    println!(
                        "      -> {} v{} {payload}",
                        now.event_type, now.schema_version
                    );
                    println!("         by {route}");
                }
                None => println!("      -> read as stored: the current version"),
            },
            None => println!(
                "      -> skipped: a retired event type (`ignore = [\"{}\"]`)",
                recorded.event_type
            ),
        }
    }

    // --- state folded from the upcast events ---------------------------------------------
    let subscriptions = Repository::<Subscription, _>::new(&store);
    println!("\nState folded from them:");
    for id in ["ada", "grace"] {
        show(id, &subscriptions.load(id)?);
    }

    // --- a new event, at today's version, beside the old ones ----------------------------
    subscriptions.execute("ada", |s| s.pay(8_100))?;
    let versions: Vec<String> = store
        .read_stream(&Subscription::stream_id("ada"), 1)?
        .map(|e| e.map(|e| format!("{} v{}", e.event_type, e.schema_version)))
        .collect::<Result<_, _>>()?;
    println!(
        "\nAda pays for another year, written at today's version. Stream subscription-ada \
         now holds:\n  {}",
        versions.join(", ")
    );
    show("ada", &subscriptions.load("ada")?);
    println!(
        "Nothing was rewritten: the release 1 events are upcast each time they are read.\n\n\
         Golden payloads of every version (examples/fixtures/) pin these migrations:\n  \
         cargo test -p es-examples --test schema"
    );
    Ok(())
}

fn show(id: &str, loaded: &es_core::Loaded<Subscription>) {
    let contact = loaded
        .contact
        .as_ref()
        .map_or_else(String::new, |c| format!("{} <{}>", c.name, c.email));
    println!(
        "  {id}: {contact}, plan {}, paid {}, {} (stream version {})",
        loaded.plan,
        euros(loaded.paid_cents),
        if loaded.active { "active" } else { "cancelled" },
        loaded.version
    );
}

/// How today's code brings a stored event type and version up to date, in words; `None`
/// for a current version.
fn upcast_route(event_type: &str, version: u32) -> Option<&'static str> {
    match (event_type, version) {
        ("Subscribed", 1) => {
            Some("JSON step 1 => 2 `split_customer`, then typed step 2 => 3 `From<SubscribedV2>`")
        }
        ("Subscribed", 2) => Some("typed step 2 => 3 `From<SubscribedV2>`"),
        ("InvoicePaid", 1) => {
            Some("the alias of `PaymentReceived` (renamed), then JSON step 1 => 2 `euros_to_cents`")
        }
        ("PaymentReceived", 1) => Some("JSON step 1 => 2 `euros_to_cents`"),
        _ => None,
    }
}

/// Cents as euros: `9000` is `€90.00`.
fn euros(cents: u64) -> String {
    format!("€{}.{:02}", cents / 100, cents % 100)
}
