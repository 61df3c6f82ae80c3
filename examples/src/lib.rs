//! The seed domains of the framework, shared by the runnable examples and the
//! cross-crate tests: a shopping cart with a materialized view, a bank account, a
//! warehouse product with a stock invariant, and an order with payments, discounts, a
//! process manager and a SQLite read model; and a subscription whose events changed
//! shape since its first release, read through upcasting.

pub mod bank;
pub mod cart;
#[cfg(feature = "http")]
pub mod cart_service;
pub mod orders;
pub mod upcasting;
pub mod warehouse;

use std::path::PathBuf;

/// The directory an example keeps its store in: the first command-line argument, or
/// `target/example-data/<name>`. It is emptied first, so every run tells the same story.
pub fn fresh_data_dir(name: &str) -> std::io::Result<PathBuf> {
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target").join("example-data").join(name));
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Cents as dollars: `15000` is `$150.00`.
pub fn dollars(cents: u64) -> String {
    format!("${}.{:02}", cents / 100, cents % 100)
}
