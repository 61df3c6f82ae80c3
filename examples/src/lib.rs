//! The seed domains of the framework, shared by the runnable examples and the
//! cross-crate tests: a shopping cart with a materialized view, a bank account, a
//! warehouse product with a stock invariant, and an order with payments, discounts, a
//! process manager and a SQLite read model; and a subscription whose events changed
//! shape since its first release, read through upcasting.
//!
//! Every example runs on the embedded file store by default, or on PostgreSQL when given
//! `--store postgres://...` (or `ES_STORE`): see [`store`].

pub mod bank;
pub mod cart;
#[cfg(feature = "http")]
pub mod cart_service;
pub mod orders;
pub mod payments;
pub mod store;
pub mod upcasting;
pub mod warehouse;

/// Cents as dollars: `15000` is `$150.00`.
pub fn dollars(cents: u64) -> String {
    format!("${}.{:02}", cents / 100, cents % 100)
}
