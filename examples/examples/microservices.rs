//! Two services that talk only through the store's log: an orders service, and a payments
//! service run as two instances, each a separate process sharing one PostgreSQL store.
//!
//! `cargo run --example microservices -- --store postgres://URL` (or `ES_STORE=postgres://...`)
//!
//! The launcher empties the example's schema and starts three processes of this same
//! program:
//!
//! - `orders`: places orders, then follows the log and records each payment's outcome on
//!   its order (`PaymentReceived`), until every order it placed is settled;
//! - `payments` twice (`payments-1` and `payments-2`): both follow the log and react to
//!   every `OrderPlaced` by charging the card. They compete for each order: a reaction's
//!   event ids are derived from the event that caused it, so when both instances charge
//!   the same order, the store keeps one charge and the other instance learns that the
//!   order was already handled. Either instance can stop at any time; the other does all
//!   the work.
//!
//! No service calls another: an order reaches the payments service as an event in the
//! log, and its outcome comes back the same way. When the orders service is done, the
//! launcher stops the payments instances and checks, from the store alone, that every
//! order was charged or declined exactly once and that every charge was recorded on its
//! order exactly once.
//!
//! Each service can also be started by hand: payments instances in as many terminals as
//! you like (`cargo run --example microservices -- --store URL payments payments-3`), and
//! `... orders 20` once per emptied schema (it places orders 5001 to 5020; a second run
//! finds them placed and stops, saying so). The launcher empties the schema; started by hand,
//! nothing is emptied.
//!
//! The file store admits one writing process, so this example needs PostgreSQL.

// Amounts in cents are written as dollars_cents: `150_00` is $150.00.
#![allow(clippy::inconsistent_digit_grouping)]

use es_core::projection::BoxError;
use es_core::subscription::{Filter, Subscription};
use es_core::{Aggregate, CommandError, EventStore, Repository};
use es_examples::dollars;
use es_examples::orders::{Order, OrderError, OrderEvent, OrderLine};
use es_examples::payments::{Payment, PaymentError, PaymentEvent};
use es_examples::store::{Args, ExampleStore, Location};
use std::collections::BTreeMap;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// Cards take at most this much: bigger orders are declined.
const CARD_LIMIT_CENTS: u64 = 300_00;
/// How many orders the orders service places when the launcher starts it.
const ORDERS: u64 = 24;
/// How long the whole run may take before the launcher gives up.
const DEADLINE: Duration = Duration::from_secs(120);

fn main() -> Result<(), BoxError> {
    let args = Args::from_env()?;
    let location = Location::choose("microservices", &args, None);
    if !location.is_postgres() {
        return Err(format!(
            "the services of this example are separate processes sharing one store, and the \
             file store admits one writing process: run it on PostgreSQL with \
             `--store postgres://USER@HOST/DB` or ES_STORE (the store chosen was {location})"
        )
        .into());
    }
    match args.plain(0) {
        None => launch(&location),
        Some("orders") => {
            let count = match args.plain(1) {
                Some(n) => n.parse().map_err(|e| format!("`{n}` orders: {e}"))?,
                None => ORDERS,
            };
            orders_service(&location, count)
        }
        Some("payments") => payments_service(&location, args.plain(1).unwrap_or("payments")),
        Some(other) => Err(format!(
            "unknown service `{other}`: run `orders [COUNT]`, `payments [NAME]`, or nothing to launch all"
        )
        .into()),
    }
}

/// Starts the three processes, waits for the orders service, stops the payments
/// instances and checks the outcome from the log.
fn launch(location: &Location) -> Result<(), BoxError> {
    let Location::Postgres { url, .. } = location else {
        unreachable!("checked by main")
    };
    ExampleStore::open(location, true)?.close()?;
    println!("Launching 1 orders service and 2 payments instances on {location}\n");
    let exe = std::env::current_exe()?;
    let start = |service: &[&str]| -> Result<Child, BoxError> {
        Ok(Command::new(&exe)
            .arg("--store")
            .arg(url)
            .args(service)
            .spawn()?)
    };
    let mut payments = vec![
        Stopper(start(&["payments", "payments-1"])?),
        Stopper(start(&["payments", "payments-2"])?),
    ];
    let count = ORDERS.to_string();
    let mut orders = Stopper(start(&["orders", &count])?);
    let started = Instant::now();
    let status = loop {
        if let Some(status) = orders.0.try_wait()? {
            break status;
        }
        for p in &mut payments {
            if let Some(status) = p.0.try_wait()? {
                return Err(format!("a payments instance stopped on its own: {status}").into());
            }
        }
        if started.elapsed() > DEADLINE {
            return Err(format!("the services did not finish within {DEADLINE:?}").into());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(payments);
    if !status.success() {
        return Err(format!("the orders service failed: {status}").into());
    }
    check(location)
}

/// Kills its process when dropped, so that no service outlives the launcher.
struct Stopper(Child);

impl Drop for Stopper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The orders service: places `count` orders, then records each payment's outcome.
fn orders_service(location: &Location, count: u64) -> Result<(), BoxError> {
    let store = ExampleStore::open(location, false)?;
    let orders = Repository::<Order, _>::new(&store);
    let first = store.head_position()? + 1;
    let mut open = BTreeMap::new();
    for n in 0..count {
        let id = format!("{}", 5001 + n);
        let quantity = 1 + n % 4;
        let total = quantity * (45_00 + 25_00 * (n % 5));
        let line = OrderLine {
            sku: ["keyboard", "mouse", "monitor"][n as usize % 3].to_owned(),
            quantity,
        };
        match orders.execute(&id, |o| o.place("Dana", vec![line.clone()], total)) {
            Ok(_) => {}
            // a second run on the same schema finds them placed, and stops
            Err(es_core::CommandError::Rejected(OrderError::AlreadyPlaced)) => {
                return Err(format!(
                    "order-{id} is already placed: this schema holds an earlier run's orders \
                     (the launcher empties it; by hand, drop it first)"
                )
                .into());
            }
            Err(e) => return Err(e.into()),
        }
        open.insert(Order::stream_id(&id), total);
        println!("[orders]     placed order-{id} for {}", dollars(total));
    }
    // the outcomes arrive through the log, from whichever payments instance decided
    let mut outcomes =
        Subscription::new(&store, first).with_filter(Filter::all().kinds([Payment::KIND]));
    while !open.is_empty() {
        let Some(recorded) = outcomes.next_timeout(DEADLINE)? else {
            return Err(format!("{} orders still wait for a payment", open.len()).into());
        };
        let Some(event) = recorded.decode::<PaymentEvent>()? else {
            continue;
        };
        let recorded = &recorded;
        match &event.event {
            PaymentEvent::PaymentCaptured(captured) => {
                let id = Order::id_of(&captured.order).ok_or("a payment names no order")?;
                let done =
                    orders.execute_caused_by(id, recorded, |o| o.pay(captured.amount_cents))?;
                let note = if done.already_applied {
                    " (already recorded)"
                } else {
                    ""
                };
                println!(
                    "[orders]     {} paid {} (charged by {}){note}",
                    captured.order,
                    dollars(captured.amount_cents),
                    captured.by
                );
                open.remove(&captured.order);
            }
            PaymentEvent::PaymentDeclined(declined) => {
                println!(
                    "[orders]     {} stays pending: payment declined by {}, {}",
                    declined.order, declined.by, declined.reason
                );
                open.remove(&declined.order);
            }
        }
    }
    println!("[orders]     every order placed is settled");
    store.close()
}

/// A payments instance: charges every order placed, in competition with other instances.
fn payments_service(location: &Location, name: &str) -> Result<(), BoxError> {
    let store = ExampleStore::open(location, false)?;
    let payments = Repository::<Payment, _>::new(&store);
    let mut placed =
        Subscription::new(&store, 1).with_filter(Filter::all().event_types(["OrderPlaced"]));
    // runs until stopped
    loop {
        let Some(recorded) = placed.next_timeout(Duration::from_secs(3600))? else {
            continue;
        };
        let Some(event) = recorded.decode::<OrderEvent>()? else {
            continue;
        };
        let OrderEvent::OrderPlaced(order) = &event.event else {
            continue;
        };
        let order_stream = &recorded.stream_id;
        let id = Order::id_of(order_stream).ok_or("an order stream without an id")?;
        match payments.execute_caused_by(id, &recorded, |p| {
            p.charge(order_stream, order.total_cents, CARD_LIMIT_CENTS, name)
        }) {
            Ok(done) if done.already_applied => {
                println!("[{name}] {order_stream}: already handled by the other instance")
            }
            Ok(done) => match &done.events[..] {
                [PaymentEvent::PaymentCaptured(c)] => {
                    println!(
                        "[{name}] {order_stream}: charged {}",
                        dollars(c.amount_cents)
                    )
                }
                [PaymentEvent::PaymentDeclined(d)] => {
                    println!("[{name}] {order_stream}: declined, {}", d.reason)
                }
                _ => {}
            },
            // decided by a reaction to an earlier placement of the same order id
            Err(CommandError::Rejected(PaymentError::AlreadyDecided)) => {
                println!("[{name}] {order_stream}: already decided")
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Reads the outcome back from the store and checks it.
fn check(location: &Location) -> Result<(), BoxError> {
    let store = ExampleStore::open(location, false)?;
    let orders = Repository::<Order, _>::new(&store);
    let payments = Repository::<Payment, _>::new(&store);
    let mut by_instance: BTreeMap<String, u64> = BTreeMap::new();
    let (mut paid, mut declined) = (0, 0);
    for n in 0..ORDERS {
        let id = format!("{}", 5001 + n);
        let payment = payments.history(&id)?;
        let order = orders.history(&id)?;
        let payments_recorded = order
            .iter()
            .filter(|e| matches!(e.event, OrderEvent::PaymentReceived(_)))
            .count();
        match &payment[..] {
            [one] => match &one.event {
                PaymentEvent::PaymentCaptured(c) => {
                    *by_instance.entry(c.by.clone()).or_default() += 1;
                    if payments_recorded != 1 || orders.load(&id)?.status() != "paid" {
                        return Err(format!(
                            "order-{id} was charged once but recorded {payments_recorded} payments"
                        )
                        .into());
                    }
                    paid += 1;
                }
                PaymentEvent::PaymentDeclined(d) => {
                    *by_instance.entry(d.by.clone()).or_default() += 1;
                    if payments_recorded != 0 {
                        return Err(format!("declined order-{id} recorded a payment").into());
                    }
                    declined += 1;
                }
            },
            other => {
                return Err(format!(
                    "order-{id} has {} payment events, not exactly one",
                    other.len()
                )
                .into());
            }
        }
    }
    println!(
        "\nChecked from the log: {ORDERS} orders, {paid} paid and {declined} declined, each decided \
         exactly once and recorded on its order exactly once."
    );
    for (instance, n) in by_instance {
        println!("  {instance} decided {n}");
    }
    store.close()
}
