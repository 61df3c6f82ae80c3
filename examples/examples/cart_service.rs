//! The shopping cart as an HTTP service on the embedded file store, or on PostgreSQL.
//!
//! `cargo run --example cart_service --features http [DIR | --store postgres://URL] [ADDR]`
//!
//! Serves on `ADDR` (default `127.0.0.1:3000`) until interrupted; the routes are listed in
//! `es_examples::cart_service`. Given a `postgres://` URL instead of a directory (or in
//! the `ES_STORE` environment variable), the events and snapshots live in PostgreSQL,
//! schema `es_example_cart_service`, and are kept from one run to the next; a directory
//! is emptied first of what an example keeps there (one holding anything else is
//! refused). The "quantity sold" view lives in memory, its checkpoint with it: each
//! start rebuilds it from the log. Try:
//!
//! ```sh
//! curl -i -X POST localhost:3000/carts/42 -H 'content-type: application/json' -d '{"user_id":"alice"}'
//! curl -i -X POST localhost:3000/carts/42/items -H 'content-type: application/json' \
//!      -H 'if-match: "1"' -d '{"product":"tea","quantity":2,"unit_price_cents":350}'
//! curl -i localhost:3000/carts/42
//! curl -N localhost:3000/feed            # the change feed, live
//! ```

use es_core::projection::MemoryCheckpoints;
use es_examples::cart_service::{Running, ServiceError, start};
use es_examples::store::{Args, Location};
use es_store_fs::FileStore;
use es_store_pg::{PgStore, PgStoreOptions};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), ServiceError> {
    let args = Args::from_env().map_err(std::io::Error::other)?;
    // `[DIR | URL] [ADDR]`, or `--store X [ADDR]`
    let (location, addr) = match &args.store {
        Some(_) => (Location::choose("cart_service", &args, None), args.plain(0)),
        None => (
            Location::choose("cart_service", &args, args.plain(0)),
            args.plain(1),
        ),
    };
    let addr = addr.unwrap_or("127.0.0.1:3000").to_owned();
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let local = listener.local_addr()?;
    println!("Cart service on http://{local} (events in {location})");
    match location {
        Location::Postgres { url, schema } => {
            // the synchronous PostgreSQL client runs its own runtime: connect off the
            // async threads
            let store = tokio::task::spawn_blocking(move || {
                let options = PgStoreOptions {
                    schema: schema.clone(),
                    ..PgStoreOptions::default()
                };
                Ok::<_, ServiceError>(Arc::new(PgStore::connect_with(&url, options)?))
            })
            .await??;
            // the view lives in memory: its checkpoint with it, so that each start
            // rebuilds it from the log (a durable checkpoint beside an empty view would
            // skip what the view had counted)
            serve(listener, start(store, MemoryCheckpoints::default())).await
        }
        Location::Dir(dir) => {
            es_examples::store::start_afresh(&dir)?;
            let store = Arc::new(FileStore::open(dir.join("events"))?);
            serve(listener, start(store, MemoryCheckpoints::default())).await
        }
    }
}

async fn serve<S, C>(
    listener: tokio::net::TcpListener,
    service: Running<S, C>,
) -> Result<(), ServiceError>
where
    S: es_core::EventStore + Clone + Send + Sync + 'static,
    C: es_core::CheckpointStore + Send + Sync + 'static,
{
    axum::serve(listener, service.router)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    service.view.stop()?;
    Ok(())
}
