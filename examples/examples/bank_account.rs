//! A bank account on the file store: the balance is a fold over deposits and
//! withdrawals, a withdrawal beyond the balance is refused, and a subscriber reacts when
//! an account is blocked.
//!
//! `cargo run --example bank_account [DIR | --store postgres://URL]`

// Amounts in cents are written as dollars_cents: `150_00` is $150.00.
#![allow(clippy::inconsistent_digit_grouping)]

use es_core::subscription::{Filter, Subscription};
use es_core::{Aggregate, Metadata, Repository};
use es_examples::bank::{Account, AccountEvent};
use es_examples::dollars;
use es_examples::store::{Args, ExampleStore, Location};
use std::time::Duration;

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let args = Args::from_env()?;
    let location = Location::choose("bank_account", &args, args.plain(0));
    println!("Event store in {location}\n");
    let store = ExampleStore::open(&location, true)?;
    let accounts = Repository::<Account, _>::new(&store);

    // A compliance service subscribes to blocked accounts from the start of the log; it
    // catches up with history, then follows live appends.
    std::thread::scope(
        |scope| -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
            let compliance = scope.spawn(|| -> Result<Vec<String>, String> {
                let mut blocked = Subscription::new(&store, 1)
                    .with_filter(Filter::all().event_types(["AccountBlocked"]))
                    .typed::<Account>();
                let mut seen = Vec::new();
                while let Some(e) = blocked
                    .next_timeout(Duration::from_secs(5))
                    .map_err(|e| e.to_string())?
                {
                    if let AccountEvent::AccountBlocked(b) = &e.event {
                        let line = format!(
                            "compliance notified: {} blocked at position {} ({})",
                            e.stream_id, e.position, b.reason
                        );
                        println!("    >> {line}");
                        seen.push(line);
                    }
                    if seen.len() == 1 {
                        break;
                    }
                }
                Ok(seen)
            });

            let teller = Metadata::new().with_actor("teller-7");
            accounts.execute_with("alice", teller.clone(), |a| a.open("Alice"))?;
            accounts.execute_with("alice", teller.clone(), |a| a.deposit(100_00))?;
            accounts.execute_with("alice", teller.clone(), |a| a.withdraw(30_00))?;
            accounts.execute_with("alice", teller.clone(), |a| a.deposit(12_50))?;
            let alice = accounts.load("alice")?;
            println!(
                "Alice: deposited $100.00, withdrew $30.00, deposited $12.50 -> balance {} (version {})",
                dollars(alice.balance_cents),
                alice.version
            );

            let err = accounts
                .execute("alice", |a| a.withdraw(500_00))
                .unwrap_err();
            println!("Withdrawing $500.00 is refused: {err}");

            // the balance is a fold: replaying the events by hand gives the same figure
            let mut folded = Account::default();
            for e in accounts.history("alice")? {
                folded.apply_event(&e.event);
            }
            println!(
                "Folding the history by hand gives {}",
                dollars(folded.balance_cents)
            );

            accounts.execute("bob", |a| a.open("Bob"))?;
            accounts.execute("bob", |a| a.deposit(5_00))?;
            println!("\nBlocking Bob's account after a fraud report...");
            accounts.execute_with("bob", Metadata::new().with_actor("fraud-desk"), |a| {
                a.block("card reported stolen")
            })?;
            let err = accounts.execute("bob", |a| a.withdraw(1_00)).unwrap_err();
            println!("Withdrawing from Bob's blocked account is refused: {err}");
            let again = accounts.execute("bob", |a| a.block("again"))?;
            println!(
                "Blocking it again decides nothing ({} events appended).",
                again.events.len()
            );

            let seen = compliance.join().map_err(|_| "subscriber panicked")??;
            println!("\nThe subscriber saw {} blocked account(s).", seen.len());
            Ok(())
        },
    )?;
    Ok(())
}
