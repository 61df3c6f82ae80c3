//! The PostgreSQL server the tests run against: `ES_PG_URL` when it is set, otherwise a
//! throwaway server this test process starts in a temporary directory (one per process,
//! stopped and removed when the process ends), when PostgreSQL's binaries are installed.
//! When neither is possible the tests say loudly that they were skipped, and fail instead
//! when the `CI` environment variable is set.
#![allow(dead_code)] // each test binary uses a part

pub mod proxy;
mod server;

pub use server::Server;

use es_store_pg::{PgStore, PgStoreOptions};
use std::sync::OnceLock;

/// The server's connection string, or `None` (after saying so) when there is no server.
pub fn url() -> Option<String> {
    static URL: OnceLock<Option<String>> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("ES_PG_URL")
            && !url.is_empty()
        {
            return Some(url);
        }
        match Server::start() {
            // the shared server lives as long as the process; the watchdog removes it
            Ok(server) => Some(std::mem::ManuallyDrop::new(server).url.clone()),
            Err(why) => {
                let message = format!(
                    "PostgreSQL tests SKIPPED: no ES_PG_URL, and no throwaway server could be started: {why}"
                );
                assert!(
                    std::env::var_os("CI").is_none(),
                    "{message} (CI is set: failing instead of skipping)"
                );
                eprintln!("\n{}\n{message}\n{}\n", "!".repeat(78), "!".repeat(78));
                None
            }
        }
    })
    .clone()
}

/// A store in a fresh schema of its own, dropped with the guard.
pub fn store() -> Option<(PgStore, SchemaGuard)> {
    store_with(PgStoreOptions::default())
}

/// A store with `options`, in a fresh schema of its own.
pub fn store_with(options: PgStoreOptions) -> Option<(PgStore, SchemaGuard)> {
    let url = url()?;
    let schema = fresh_schema();
    let store = PgStore::connect_with(
        &url,
        PgStoreOptions {
            schema: schema.clone(),
            ..options
        },
    )
    .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
    Some((store, SchemaGuard { url, schema }))
}

/// A schema name no other test uses.
pub fn fresh_schema() -> String {
    format!("t_{}", uuid::Uuid::new_v4().simple())
}

/// Drops its schema (and the tables in it) when dropped.
pub struct SchemaGuard {
    pub url: String,
    pub schema: String,
}

impl Drop for SchemaGuard {
    fn drop(&mut self) {
        if let Ok(mut client) = postgres::Client::connect(&self.url, postgres::NoTls) {
            let _ = client.batch_execute(&format!(
                "DROP SCHEMA IF EXISTS \"{}\" CASCADE",
                self.schema
            ));
        }
    }
}

/// A conformance fixture: a fresh store, or a skip.
pub fn fixture() -> (PgStore, SchemaGuard) {
    match store() {
        Some(f) => f,
        None => skip(),
    }
}

/// Ends a test that has no server: it passes, after `url` said loudly why.
pub fn skip() -> ! {
    // a test with no server has nothing to check; unwinding here would mark it failed
    std::process::exit(0)
}
