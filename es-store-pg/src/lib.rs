//! # es-store-pg
//!
//! An event store in PostgreSQL for es-core, for services that outgrow one process: any
//! number of processes append and read at once, the primary takes the writes, and read
//! replicas serve reads, subscriptions and projections.
//!
//! The same contract as the file store (the es-core conformance suite runs against it):
//!
//! - **global positions are dense and in commit order** across every process: a
//!   subscriber that reads `position > last` never misses an event that commits later
//!   with a lower number. Positions come from one head row updated in the append's
//!   transaction, not from a sequence (sequences leave holes and commit out of order);
//! - **expected versions are checked with the stream's row locked**;
//! - **idempotent retries** by event id, with the file store's rules;
//! - **group commit**: appends queued by a process's threads share one transaction, each
//!   with its own checks and its own outcome;
//! - **live subscriptions** are woken by LISTEN/NOTIFY and poll behind it;
//! - **snapshots** in a table, with the same fingerprint rules.
//!
//! ```no_run
//! use es_core::{EventStore, ExpectedVersion, NewEvent};
//! use es_store_pg::PgStore;
//!
//! let store = PgStore::connect("postgres://es@localhost/es")?;   // creates its tables
//! store.append("cart-1", ExpectedVersion::NoStream, vec![NewEvent::new("CartCreated", 1, b"{}".to_vec())])?;
//! for event in store.read_all(1)? {
//!     let event = event?;
//!     println!("{} {} {}", event.position, event.stream_id, event.event_type);
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The tables, what a position means, replicas and partitioning are described in
//! `docs/postgres.md` in the source repository.
#![warn(missing_docs)]

mod commit;
mod conn;
pub mod error;
mod listen;
pub mod projection;
pub mod schema;
mod snapshot;
mod store;

pub use error::{ConnectError, PgError};
pub use store::{MAX_STREAM_ID_LEN, PgStore, PgStoreOptions, WriteStats};

/// The throwaway PostgreSQL server the integration tests start, for unit tests that need
/// a server with settings of their own.
#[cfg(test)]
#[path = "../tests/common/server.rs"]
#[allow(dead_code)] // the unit tests use a part
mod throwaway_server;

/// A throwaway server started with `settings` (`name=value`, as for `postgres -c`), or
/// `None`, after saying so, when PostgreSQL's binaries are not installed (with `CI` set,
/// the test fails instead).
#[cfg(test)]
pub(crate) fn start_server(settings: &[&str]) -> Option<throwaway_server::Server> {
    match throwaway_server::Server::start_with(settings) {
        Ok(server) => Some(server),
        Err(why) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "cannot start a PostgreSQL server: {why}"
            );
            eprintln!("SKIPPED: this test needs PostgreSQL's binaries: {why}");
            None
        }
    }
}

/// The PostgreSQL client this crate uses, for read models written through
/// [`projection::PgReadModel`] (so that its version matches).
pub use postgres;
