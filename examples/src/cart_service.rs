//! The shopping cart as an HTTP service (feature `http`): commands as `POST`s, the cart
//! with its version as an `ETag`, optimistic concurrency through `If-Match`, the audit
//! history, the "quantity sold" materialized view, and the change feed as server-sent
//! events that a client resumes with `Last-Event-ID`.
//!
//! | request | answer |
//! |---|---|
//! | `POST /carts/{id}` `{"user_id": ..}` | `201`, the cart |
//! | `POST /carts/{id}/items` `{"product", "quantity", "unit_price_cents"}` | `200`, the cart |
//! | `DELETE /carts/{id}/items/{product}?quantity=N` | `200`, the cart |
//! | `POST /carts/{id}/checkout` | `200`, the cart |
//! | `GET /carts/{id}` | `200` with `ETag: "<version>"`, or `404` |
//! | `GET /carts/{id}/history` | `200`, who did what and when |
//! | `GET /views/quantity-sold` | `200`, product to quantity, with the view's position |
//! | `GET /feed?from=P` | server-sent events from position `P` (or `Last-Event-ID` + 1), then live |
//!
//! Every write answers with the cart and its new `ETag`. A write that sends `If-Match`
//! runs only if the cart is still at that version (`412` otherwise); without it, a
//! conflicting write is retried on fresh state. A command the cart refuses is `422` with
//! the cart's own message; a command on a cart that does not exist is `404`. `X-Actor`
//! names who acts; it is stored in the events' metadata.

use crate::cart::{Cart, CartError, CartEvent, QuantitySold};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use es_core::asynchronous::{AsyncRepository, subscribe};
use es_core::projection::{
    BoxError, CheckpointStore, Progress, ProjectionRunner, RunningProjection, Shared,
    WithCheckpoint,
};
use es_core::subscription::Filter;
use es_core::{CommandError, EventStore, Executed, IntoEvents, Metadata, Repository};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use std::convert::Infallible;

/// The view's read model and checkpoint, shared with the thread that keeps it.
pub type SoldView<C> = Shared<WithCheckpoint<QuantitySold, C>>;

/// What the handlers share. Cheap to clone.
pub struct CartService<S, C> {
    carts: AsyncRepository<Cart, S>,
    store: S,
    view: SoldView<C>,
    view_progress: Progress<S>,
}

impl<S: Clone, C> Clone for CartService<S, C> {
    fn clone(&self) -> Self {
        CartService {
            carts: self.carts.clone(),
            store: self.store.clone(),
            view: self.view.clone(),
            view_progress: self.view_progress.clone(),
        }
    }
}

/// The running service's parts: its routes, and the projection thread to stop at the end.
pub struct Running<S, C>
where
    S: EventStore + Clone + Send + 'static,
    C: CheckpointStore + Send + Sync + 'static,
{
    /// The routes, ready for `axum::serve`.
    pub router: axum::Router,
    /// The thread that keeps the "quantity sold" view.
    pub view: RunningProjection<'static, S, SoldView<C>>,
}

/// Builds the service over `store`, starting the view's projection from its checkpoint
/// in `checkpoints`. Handlers call the synchronous store only from tokio's blocking pool.
///
/// The view is kept in memory, so its checkpoint must last exactly as long: give
/// `MemoryCheckpoints` (as the example does), and the view is rebuilt from the log at
/// each start. A durable checkpoint beside a view that starts empty would resume after
/// what the view had counted, and the counts would miss it.
pub fn start<S, C>(store: S, checkpoints: C) -> Running<S, C>
where
    S: EventStore + Clone + Send + Sync + 'static,
    C: CheckpointStore + Send + Sync + 'static,
{
    let view = Shared::new(WithCheckpoint::new(
        QuantitySold::default(),
        "quantity_sold",
        checkpoints,
    ));
    let running = ProjectionRunner::new(store.clone(), view.clone())
        .with_filter(Filter::all().kinds(["cart"]))
        .spawn();
    let service = CartService {
        // many clients may write one cart at once: a command retries on fresh state
        // until it lands, as long as it takes a burst of writers to drain
        carts: AsyncRepository::new(Repository::new(store.clone()).with_max_attempts(20)),
        store,
        view,
        view_progress: running.progress(),
    };
    let router = axum::Router::new()
        .route("/carts/{id}", post(create).get(show))
        .route("/carts/{id}/items", post(add))
        .route("/carts/{id}/items/{product}", delete(remove))
        .route("/carts/{id}/checkout", post(checkout))
        .route("/carts/{id}/history", get(history))
        .route("/views/quantity-sold", get(quantity_sold))
        .route("/feed", get(feed))
        .with_state(service);
    Running {
        router,
        view: running,
    }
}

fn cart_json(id: &str, version: u64, cart: &Cart) -> Value {
    let items: serde_json::Map<String, Value> = cart
        .items
        .iter()
        .map(|(p, l)| {
            (
                p.clone(),
                json!({"quantity": l.quantity, "unit_price_cents": l.unit_price_cents}),
            )
        })
        .collect();
    json!({
        "id": id,
        "version": version,
        "user_id": cart.user_id,
        "items": items,
        "purchased": cart.purchased,
        "total_cents": cart.total_cents(),
    })
}

fn etag(version: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{version}\"")).unwrap_or(HeaderValue::from_static("\"0\""))
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, Json(json!({"error": message.to_string()}))).into_response()
}

/// The version an `If-Match` header names: `"3"`, `W/"3"` or `3`. `Err` when it is
/// there but names no version.
fn if_match(headers: &HeaderMap) -> Result<Option<u64>, ()> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .map(|v| v.trim().trim_start_matches("W/").trim_matches('"'))
        .and_then(|v| v.parse().ok())
        .map(Some)
        .ok_or(())
}

fn metadata(headers: &HeaderMap) -> Metadata {
    match headers.get("x-actor").and_then(|v| v.to_str().ok()) {
        Some(actor) => Metadata::new().with_actor(actor),
        None => Metadata::new(),
    }
}

/// Runs a command (under `If-Match` when given) and answers with the cart.
async fn run<S, C, T>(
    service: &CartService<S, C>,
    id: String,
    headers: &HeaderMap,
    created: bool,
    command: impl FnMut(&Cart) -> Result<T, CartError> + Send + 'static,
) -> Response
where
    S: EventStore + Clone + Send + Sync + 'static,
    T: IntoEvents<CartEvent>,
{
    let Ok(expected) = if_match(headers) else {
        return error(
            StatusCode::BAD_REQUEST,
            "If-Match must name a cart version, as the ETag gave it",
        );
    };
    let metadata = metadata(headers);
    let result = match expected {
        Some(version) => {
            service
                .carts
                .execute_expecting(id.clone(), version, metadata, command)
                .await
        }
        None => {
            service
                .carts
                .execute_with(id.clone(), metadata, command)
                .await
        }
    };
    match result {
        Ok(Executed { state, version, .. }) => {
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            let mut response = (status, Json(cart_json(&id, version, &state))).into_response();
            response.headers_mut().insert(header::ETAG, etag(version));
            response
        }
        Err(CommandError::Rejected(CartError::NotCreated)) => {
            error(StatusCode::NOT_FOUND, CartError::NotCreated)
        }
        Err(CommandError::Rejected(e)) => error(StatusCode::UNPROCESSABLE_ENTITY, e),
        Err(CommandError::Conflict { actual, .. }) if expected.is_some() => {
            let mut response = error(
                StatusCode::PRECONDITION_FAILED,
                format!("the cart is at version {actual}; read it again"),
            );
            response.headers_mut().insert(header::ETAG, etag(actual));
            response
        }
        Err(e @ CommandError::Conflict { .. }) => error(StatusCode::CONFLICT, e),
        Err(CommandError::Store(e @ es_core::StoreError::InvalidStreamId { .. })) => {
            error(StatusCode::BAD_REQUEST, e)
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

#[derive(Deserialize)]
struct Create {
    user_id: String,
}

async fn create<S, C>(
    State(service): State<CartService<S, C>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Create>,
) -> Response
where
    S: EventStore + Clone + Send + Sync + 'static,
{
    run(&service, id, &headers, true, move |c| {
        c.create(&body.user_id)
    })
    .await
}

#[derive(Deserialize)]
struct Add {
    product: String,
    quantity: u32,
    #[serde(default)]
    unit_price_cents: u64,
}

async fn add<S, C>(
    State(service): State<CartService<S, C>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Add>,
) -> Response
where
    S: EventStore + Clone + Send + Sync + 'static,
{
    run(&service, id, &headers, false, move |c| {
        c.add_product(&body.product, body.quantity, body.unit_price_cents)
    })
    .await
}

#[derive(Deserialize)]
struct Remove {
    #[serde(default = "one")]
    quantity: u32,
}

fn one() -> u32 {
    1
}

async fn remove<S, C>(
    State(service): State<CartService<S, C>>,
    Path((id, product)): Path<(String, String)>,
    Query(query): Query<Remove>,
    headers: HeaderMap,
) -> Response
where
    S: EventStore + Clone + Send + Sync + 'static,
{
    run(&service, id, &headers, false, move |c| {
        c.remove_product(&product, query.quantity)
    })
    .await
}

async fn checkout<S, C>(
    State(service): State<CartService<S, C>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response
where
    S: EventStore + Clone + Send + Sync + 'static,
{
    run(&service, id, &headers, false, |c| c.purchase()).await
}

async fn show<S, C>(State(service): State<CartService<S, C>>, Path(id): Path<String>) -> Response
where
    S: EventStore + Clone + Send + Sync + 'static,
{
    match service.carts.load(id.clone()).await {
        Ok(cart) if cart.version == 0 => error(StatusCode::NOT_FOUND, CartError::NotCreated),
        Ok(cart) => {
            let mut response = Json(cart_json(&id, cart.version, &cart)).into_response();
            response
                .headers_mut()
                .insert(header::ETAG, etag(cart.version));
            response
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn history<S, C>(State(service): State<CartService<S, C>>, Path(id): Path<String>) -> Response
where
    S: EventStore + Clone + Send + Sync + 'static,
{
    match service.carts.history(id).await {
        Ok(events) if events.is_empty() => error(StatusCode::NOT_FOUND, CartError::NotCreated),
        Ok(events) => {
            let entries: Vec<Value> = events
                .iter()
                .map(|e| {
                    json!({
                        "version": e.stream_version,
                        "position": e.position,
                        "event_type": event_name(&e.event),
                        "timestamp": e.timestamp.to_rfc3339(),
                        "actor": e.metadata.actor,
                        "event": event_json(&e.event),
                    })
                })
                .collect();
            Json(entries).into_response()
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

fn event_name(event: &CartEvent) -> &'static str {
    match event {
        CartEvent::CartCreated(_) => "CartCreated",
        CartEvent::ProductAdded(_) => "ProductAdded",
        CartEvent::ProductRemoved(_) => "ProductRemoved",
        CartEvent::CartPurchased(_) => "CartPurchased",
    }
}

fn event_json(event: &CartEvent) -> Value {
    match event {
        CartEvent::CartCreated(e) => json!({"user_id": e.user_id}),
        CartEvent::ProductAdded(e) => json!({
            "product": e.product, "quantity": e.quantity, "unit_price_cents": e.unit_price_cents
        }),
        CartEvent::ProductRemoved(e) => json!({"product": e.product, "quantity": e.quantity}),
        CartEvent::CartPurchased(e) => json!({"items": e.items, "total_cents": e.total_cents}),
    }
}

async fn quantity_sold<S, C>(State(service): State<CartService<S, C>>) -> Response
where
    S: EventStore + Clone + Send + Sync + 'static,
{
    let sold = service.view.read().projection.0.clone();
    let position = service.view_progress.checkpoint();
    // the store is synchronous (PostgreSQL's client even runs its own runtime): off the
    // async threads
    let progress = service.view_progress.clone();
    // a lag that could not be read is said so, never shown as 0 (caught up)
    let lag = match tokio::task::spawn_blocking(move || progress.lag()).await {
        Ok(Ok(lag)) => json!(lag),
        Ok(Err(e)) => json!({"error": e.to_string()}),
        Err(e) => json!({"error": e.to_string()}),
    };
    Json(json!({"quantity_sold": sold, "position": position, "lag": lag})).into_response()
}

#[derive(Deserialize)]
struct From {
    from: Option<u64>,
}

/// The change feed: every event of the log from the asked position (or the one after
/// `Last-Event-ID`), then live. Each SSE event carries the position as its id, the event
/// type as its name, and the stored event as JSON.
async fn feed<S, C>(
    State(service): State<CartService<S, C>>,
    Query(query): Query<From>,
    headers: HeaderMap,
) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>>
where
    S: EventStore + Clone + Send + Sync + 'static,
{
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        // an id past any position resumes after nothing, not from the start
        .map(|last| last.saturating_add(1));
    let from = resume.or(query.from).unwrap_or(1);
    let stream = subscribe(service.store.clone(), from, Filter::all()).map(|event| {
        Ok(match event {
            Ok(e) => Event::default()
                .id(e.position.to_string())
                .event(e.event_type.clone())
                .data(serde_json::to_string(&e).unwrap_or_default()),
            Err(err) => Event::default().event("error").data(err.to_string()),
        })
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// A boxed error, for `main`.
pub type ServiceError = BoxError;
