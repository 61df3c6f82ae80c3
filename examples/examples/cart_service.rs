//! The shopping cart as an HTTP service on the embedded file store.
//!
//! `cargo run --example cart_service --features http [DIR | postgres://URL] [ADDR]`
//!
//! Serves on `ADDR` (default `127.0.0.1:3000`) until interrupted; the routes are listed in
//! `es_examples::cart_service`. Given a `postgres://` URL instead of a directory, the
//! events, the view's checkpoint and its snapshots live in PostgreSQL (the `ES_PG_URL`
//! environment variable does the same). Try:
//!
//! ```sh
//! curl -i -X POST localhost:3000/carts/42 -H 'content-type: application/json' -d '{"user_id":"alice"}'
//! curl -i -X POST localhost:3000/carts/42/items -H 'content-type: application/json' \
//!      -H 'if-match: "1"' -d '{"product":"tea","quantity":2,"unit_price_cents":350}'
//! curl -i localhost:3000/carts/42
//! curl -N localhost:3000/feed            # the change feed, live
//! ```

use es_examples::cart_service::{Running, ServiceError, start};
use es_examples::fresh_data_dir;
use es_store_fs::{FileCheckpoints, FileStore};
use es_store_pg::PgStore;
use es_store_pg::projection::PgCheckpoints;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), ServiceError> {
    let addr = std::env::args()
        .nth(2)
        .unwrap_or_else(|| "127.0.0.1:3000".into());
    let url = std::env::args()
        .nth(1)
        .filter(|a| a.starts_with("postgres://") || a.starts_with("postgresql://"))
        .or_else(|| std::env::var("ES_PG_URL").ok());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let local = listener.local_addr()?;
    match url {
        Some(url) => {
            // the synchronous PostgreSQL client runs its own runtime: connect off the
            // async threads
            let (store, checkpoints) = tokio::task::spawn_blocking(move || {
                Ok::<_, ServiceError>((
                    Arc::new(PgStore::connect(&url)?),
                    PgCheckpoints::connect(&url, "public")?,
                ))
            })
            .await??;
            println!("Cart service on http://{local} (store in PostgreSQL)");
            serve(listener, start(store, checkpoints)).await
        }
        None => {
            let dir = fresh_data_dir("cart_service")?;
            let store = Arc::new(FileStore::open(dir.join("events"))?);
            let checkpoints = FileCheckpoints::open(dir.join("checkpoints"))?;
            println!(
                "Cart service on http://{local} (store in {})",
                dir.display()
            );
            serve(listener, start(store, checkpoints)).await
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
