//! The shopping cart as an HTTP service on the embedded file store.
//!
//! `cargo run --example cart_service --features http [DIR] [ADDR]`
//!
//! Serves on `ADDR` (default `127.0.0.1:3000`) until interrupted; the routes are listed in
//! `es_examples::cart_service`. Try:
//!
//! ```sh
//! curl -i -X POST localhost:3000/carts/42 -H 'content-type: application/json' -d '{"user_id":"alice"}'
//! curl -i -X POST localhost:3000/carts/42/items -H 'content-type: application/json' \
//!      -H 'if-match: "1"' -d '{"product":"tea","quantity":2,"unit_price_cents":350}'
//! curl -i localhost:3000/carts/42
//! curl -N localhost:3000/feed            # the change feed, live
//! ```

use es_examples::cart_service::{ServiceError, start};
use es_examples::fresh_data_dir;
use es_store_fs::{FileCheckpoints, FileStore};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), ServiceError> {
    let dir = fresh_data_dir("cart_service")?;
    let addr = std::env::args()
        .nth(2)
        .unwrap_or_else(|| "127.0.0.1:3000".into());
    let store = Arc::new(FileStore::open(dir.join("events"))?);
    let checkpoints = FileCheckpoints::open(dir.join("checkpoints"))?;
    let service = start(store, checkpoints);
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!(
        "Cart service on http://{} (store in {})",
        listener.local_addr()?,
        dir.display()
    );
    axum::serve(listener, service.router)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    service.view.stop()?;
    Ok(())
}
