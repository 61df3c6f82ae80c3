//! An order with payments and discounts, a process manager that reserves stock when an
//! order is placed, and a CQRS read model of order summaries, updated exactly once (each
//! batch and its checkpoint commit in one transaction): in SQLite beside the file store
//! (`OrderSummaries`, feature `sqlite`), or in PostgreSQL beside the PostgreSQL store
//! ([`PgOrderSummaries`]).

use crate::warehouse::{Product, StockError};
use es_core::RecordedEvent;
use es_core::prelude::*;
use es_core::projection::BoxError;

/// One product line of an order.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OrderLine {
    /// Product id (the warehouse product's aggregate id).
    pub sku: String,
    /// Units.
    pub quantity: u64,
}

/// The order was placed.
#[event]
#[derive(Debug, Clone, PartialEq)]
pub struct OrderPlaced {
    /// Customer.
    pub customer: String,
    /// What was ordered.
    pub lines: Vec<OrderLine>,
    /// Price before discounts, in cents.
    pub total_cents: u64,
}

/// A discount was granted.
#[event]
#[derive(Debug, Clone, PartialEq)]
pub struct DiscountApplied {
    /// Code.
    pub code: String,
    /// Amount in cents.
    pub amount_cents: u64,
}

/// Money arrived.
#[event]
#[derive(Debug, Clone, PartialEq)]
pub struct PaymentReceived {
    /// Amount in cents.
    pub amount_cents: u64,
}

/// The order's events.
#[event]
#[derive(Debug, Clone, PartialEq)]
pub enum OrderEvent {
    /// See [`OrderPlaced`].
    OrderPlaced(OrderPlaced),
    /// See [`DiscountApplied`].
    DiscountApplied(DiscountApplied),
    /// See [`PaymentReceived`].
    PaymentReceived(PaymentReceived),
}

/// The order's state.
#[derive(Debug, Default, Clone, Aggregate)]
#[aggregate(kind = "order", event = OrderEvent)]
pub struct Order {
    /// Customer, once placed.
    pub customer: Option<String>,
    /// Price before discounts.
    pub total_cents: u64,
    /// Discounts granted.
    pub discount_cents: u64,
    /// Payments received.
    pub paid_cents: u64,
}

/// Why an order command refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    /// Place runs once.
    #[error("the order was already placed")]
    AlreadyPlaced,
    /// Other commands need a placed order.
    #[error("the order was not placed")]
    NotPlaced,
    /// An order has lines.
    #[error("an order needs at least one line")]
    NoLines,
    /// Each line orders at least one item: the stock reservations that follow an order
    /// refuse a quantity of 0, and an order they could never serve is refused here,
    /// where the caller sees why.
    #[error("line {line} (`{sku}`) orders no item: a quantity is at least 1")]
    ZeroQuantity {
        /// The line, from 1.
        line: usize,
        /// Its product.
        sku: String,
    },
    /// Amounts are positive.
    #[error("the amount must be positive")]
    ZeroAmount,
    /// Discounts cannot exceed what is owed.
    #[error("a discount of {discount_cents} exceeds the {owed_cents} owed")]
    DiscountTooLarge {
        /// Discount.
        discount_cents: u64,
        /// Owed.
        owed_cents: u64,
    },
    /// Payments cannot exceed what is owed.
    #[error("a payment of {amount_cents} exceeds the {owed_cents} owed")]
    Overpayment {
        /// Payment.
        amount_cents: u64,
        /// Owed.
        owed_cents: u64,
    },
}

impl Apply<OrderPlaced> for Order {
    fn apply(&mut self, e: &OrderPlaced) {
        self.customer = Some(e.customer.clone());
        self.total_cents = e.total_cents;
    }
}
impl Apply<DiscountApplied> for Order {
    fn apply(&mut self, e: &DiscountApplied) {
        self.discount_cents += e.amount_cents;
    }
}
impl Apply<PaymentReceived> for Order {
    fn apply(&mut self, e: &PaymentReceived) {
        self.paid_cents += e.amount_cents;
    }
}

impl Order {
    /// What is still owed, in cents.
    pub fn owed_cents(&self) -> u64 {
        self.total_cents
            .saturating_sub(self.discount_cents)
            .saturating_sub(self.paid_cents)
    }

    /// Pending while something is owed, paid after.
    pub fn status(&self) -> &'static str {
        match (&self.customer, self.owed_cents()) {
            (None, _) => "none",
            (Some(_), 0) => "paid",
            _ => "pending",
        }
    }

    /// Places the order.
    pub fn place(
        &self,
        customer: &str,
        lines: Vec<OrderLine>,
        total_cents: u64,
    ) -> Result<OrderPlaced, OrderError> {
        if self.customer.is_some() {
            return Err(OrderError::AlreadyPlaced);
        }
        if lines.is_empty() {
            return Err(OrderError::NoLines);
        }
        if let Some((i, line)) = lines.iter().enumerate().find(|(_, l)| l.quantity == 0) {
            return Err(OrderError::ZeroQuantity {
                line: i + 1,
                sku: line.sku.clone(),
            });
        }
        if total_cents == 0 {
            return Err(OrderError::ZeroAmount);
        }
        Ok(OrderPlaced {
            customer: customer.to_owned(),
            lines,
            total_cents,
        })
    }

    /// Grants a discount of at most what is owed.
    pub fn apply_discount(
        &self,
        code: &str,
        amount_cents: u64,
    ) -> Result<DiscountApplied, OrderError> {
        self.placed()?;
        if amount_cents == 0 {
            return Err(OrderError::ZeroAmount);
        }
        if amount_cents > self.owed_cents() {
            return Err(OrderError::DiscountTooLarge {
                discount_cents: amount_cents,
                owed_cents: self.owed_cents(),
            });
        }
        Ok(DiscountApplied {
            code: code.to_owned(),
            amount_cents,
        })
    }

    /// Records a payment of at most what is owed.
    pub fn pay(&self, amount_cents: u64) -> Result<PaymentReceived, OrderError> {
        self.placed()?;
        if amount_cents == 0 {
            return Err(OrderError::ZeroAmount);
        }
        if amount_cents > self.owed_cents() {
            return Err(OrderError::Overpayment {
                amount_cents,
                owed_cents: self.owed_cents(),
            });
        }
        Ok(PaymentReceived { amount_cents })
    }

    fn placed(&self) -> Result<(), OrderError> {
        self.customer
            .as_ref()
            .map(|_| ())
            .ok_or(OrderError::NotPlaced)
    }
}

/// The process manager: when an order is placed, reserve its lines' stock. Runs each
/// reaction at most once (see [`Repository::execute_caused_by`]), so it is safe to run
/// again from an older checkpoint after a crash.
pub struct StockReservations<S: EventStore> {
    /// The warehouse products.
    pub products: Repository<Product, S>,
    /// What it did, for display: (order, sku, outcome).
    pub log: Vec<(String, String, String)>,
}

impl<S: EventStore> StockReservations<S> {
    /// Reacts to one event of the log (events of other aggregates are ignored).
    pub fn react(&mut self, event: &RecordedEvent) -> Result<(), BoxError> {
        if event.kind() != Order::KIND {
            return Ok(());
        }
        let Some(envelope) = event.decode::<OrderEvent>()? else {
            return Ok(());
        };
        let OrderEvent::OrderPlaced(placed) = envelope.event else {
            return Ok(());
        };
        let order_id = event.stream_id.clone();
        // one reaction per line, named by the line's number: an order may list a product
        // twice, and each line reserves its own quantity, once
        for (number, line) in placed.lines.iter().enumerate() {
            let reaction = format!("line-{}", number + 1);
            let outcome =
                match self
                    .products
                    .execute_caused_by_as(&line.sku, event, &reaction, |p| {
                        p.reserve(line.quantity, &order_id)
                    }) {
                    Ok(done) if done.already_applied => "already reserved".to_owned(),
                    Ok(done) => format!(
                        "reserved {} (available now {})",
                        line.quantity,
                        done.state.available()
                    ),
                    Err(CommandError::Rejected(StockError::NotEnoughStock {
                        available, ..
                    })) => {
                        format!("not enough stock ({available} available)")
                    }
                    Err(e) => return Err(e.into()),
                };
            self.log.push((order_id.clone(), line.sku.clone(), outcome));
        }
        Ok(())
    }
}

/// The process manager as a projection: it owns its repository, so it can run in a
/// background thread (`ProjectionRunner::spawn`), behind a `Shared` handle that lets a
/// service read its log while it keeps up.
impl<S: EventStore> es_core::projection::Projection for StockReservations<S> {
    fn handle(&mut self, event: &RecordedEvent) -> Result<(), BoxError> {
        self.react(event)
    }

    fn reset(&mut self) -> Result<(), BoxError> {
        self.log.clear();
        Ok(())
    }
}

/// One order summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SummaryRow {
    /// Stream id of the order.
    pub order_id: String,
    /// Customer.
    pub customer: String,
    /// Price before discounts.
    pub total_cents: u64,
    /// Discounts.
    pub discount_cents: u64,
    /// Payments.
    pub paid_cents: u64,
    /// Still owed.
    pub owed_cents: u64,
    /// `pending` or `paid`.
    pub status: &'static str,
}

impl SummaryRow {
    fn new(order_id: String, customer: String, total: u64, discount: u64, paid: u64) -> Self {
        let owed = total.saturating_sub(discount).saturating_sub(paid);
        SummaryRow {
            order_id,
            customer,
            total_cents: total,
            discount_cents: discount,
            paid_cents: paid,
            owed_cents: owed,
            status: if owed == 0 { "paid" } else { "pending" },
        }
    }
}

#[cfg(feature = "sqlite")]
pub use sqlite::OrderSummaries;

/// The SQLite read model (feature `sqlite`, so that the other examples do not build SQLite).
#[cfg(feature = "sqlite")]
mod sqlite {
    use super::{OrderEvent, SummaryRow};
    use es_core::RecordedEvent;
    use es_core::projection::{BoxError, Mark, TransactionalProjection};
    use rusqlite::{Connection, OptionalExtension, params};

    /// Order summaries in SQLite: one row per order, and the projection's checkpoint in the
    /// same database, written in the same transaction.
    pub struct OrderSummaries {
        conn: Connection,
    }

    impl OrderSummaries {
        /// Opens (creating) the read model database.
        pub fn open(path: &std::path::Path) -> rusqlite::Result<Self> {
            let conn = Connection::open(path)?;
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "synchronous", "FULL")?;
            conn.execute_batch(
                "CREATE TABLE IF NOT EXISTS order_summary (
                    order_id TEXT PRIMARY KEY,
                    customer TEXT NOT NULL,
                    total_cents INTEGER NOT NULL,
                    discount_cents INTEGER NOT NULL DEFAULT 0,
                    paid_cents INTEGER NOT NULL DEFAULT 0
                 );
                 CREATE TABLE IF NOT EXISTS checkpoint (
                    name TEXT PRIMARY KEY,
                    position INTEGER NOT NULL,
                    event_id TEXT
                 );",
            )?;
            // a database of an earlier version of this model has no event id column
            let has_event_id: bool = conn.query_row(
                "SELECT COUNT(*) > 0 FROM pragma_table_info('checkpoint') WHERE name = 'event_id'",
                [],
                |r| r.get(0),
            )?;
            if !has_event_id {
                conn.execute("ALTER TABLE checkpoint ADD COLUMN event_id TEXT", [])?;
            }
            Ok(OrderSummaries { conn })
        }

        /// All rows: (order, customer, total, discount, paid, owed, status).
        pub fn rows(&self) -> rusqlite::Result<Vec<SummaryRow>> {
            let mut stmt = self.conn.prepare(
                "SELECT order_id, customer, total_cents, discount_cents, paid_cents FROM order_summary ORDER BY order_id",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(SummaryRow::new(
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                ))
            })?;
            rows.collect()
        }
    }

    const CHECKPOINT_NAME: &str = "order_summary";

    // The checkpoint is kept with the id of the event at its position (a `Mark`), so that
    // a log replaced under the read model (a crash of a store that acknowledged appends
    // before they were durable) stops the runner with `HistoryReplaced` instead of
    // letting it skip the events that took the old positions.
    impl TransactionalProjection for OrderSummaries {
        fn checkpoint(&mut self) -> Result<u64, BoxError> {
            Ok(self.checkpoint_mark()?.position)
        }

        fn checkpoint_mark(&mut self) -> Result<Mark, BoxError> {
            let row: Option<(u64, Option<String>)> = self
                .conn
                .query_row(
                    "SELECT position, event_id FROM checkpoint WHERE name = ?1",
                    params![CHECKPOINT_NAME],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let Some((position, event_id)) = row else {
                return Ok(Mark::at(0));
            };
            let event_id = event_id.map(|id| uuid::Uuid::parse_str(&id)).transpose()?;
            Ok(Mark { position, event_id })
        }

        fn apply_batch(
            &mut self,
            events: &[RecordedEvent],
            checkpoint: u64,
        ) -> Result<(), BoxError> {
            self.apply_batch_marked(events, Mark::at(checkpoint))
        }

        fn apply_batch_marked(
            &mut self,
            events: &[RecordedEvent],
            checkpoint: Mark,
        ) -> Result<(), BoxError> {
            let tx = self.conn.transaction()?;
            for recorded in events {
                let Some(envelope) = recorded.decode::<OrderEvent>()? else {
                    continue;
                };
                let id = &recorded.stream_id;
                match envelope.event {
                    OrderEvent::OrderPlaced(e) => {
                        tx.execute(
                            "INSERT INTO order_summary (order_id, customer, total_cents) VALUES (?1, ?2, ?3)",
                            params![id, e.customer, e.total_cents],
                        )?;
                    }
                    OrderEvent::DiscountApplied(e) => {
                        tx.execute(
                            "UPDATE order_summary SET discount_cents = discount_cents + ?2 WHERE order_id = ?1",
                            params![id, e.amount_cents],
                        )?;
                    }
                    OrderEvent::PaymentReceived(e) => {
                        tx.execute(
                            "UPDATE order_summary SET paid_cents = paid_cents + ?2 WHERE order_id = ?1",
                            params![id, e.amount_cents],
                        )?;
                    }
                }
            }
            tx.execute(
                "INSERT INTO checkpoint (name, position, event_id) VALUES (?1, ?2, ?3)
                 ON CONFLICT(name) DO UPDATE SET position = excluded.position,
                    event_id = excluded.event_id",
                params![
                    CHECKPOINT_NAME,
                    checkpoint.position,
                    checkpoint.event_id.map(|id| id.to_string())
                ],
            )?;
            tx.commit()?;
            Ok(())
        }

        fn reset(&mut self) -> Result<(), BoxError> {
            let tx = self.conn.transaction()?;
            tx.execute("DELETE FROM order_summary", [])?;
            tx.execute(
                "DELETE FROM checkpoint WHERE name = ?1",
                params![CHECKPOINT_NAME],
            )?;
            tx.commit()?;
            Ok(())
        }
    }
}

/// Order summaries in PostgreSQL: the same rows as the SQLite model's, in table
/// `order_summary` of the store's schema. Run it inside a
/// [`PgProjection`](es_store_pg::projection::PgProjection): each batch's rows and the
/// projection's checkpoint commit in one transaction, and the checkpoint moves by
/// compare-and-set, so two instances of the projector never both apply a batch.
#[derive(Debug, Clone)]
pub struct PgOrderSummaries {
    table: String,
}

impl PgOrderSummaries {
    /// The read model in `schema` (which must exist: the store creates it), creating its
    /// table when absent.
    pub fn create(
        client: &mut es_store_pg::postgres::Client,
        schema: &str,
    ) -> Result<Self, BoxError> {
        es_store_pg::schema::check_schema_name(schema)?;
        let table = format!("\"{schema}\".order_summary");
        client.batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {table} (
                order_id text PRIMARY KEY,
                customer text NOT NULL,
                total_cents bigint NOT NULL,
                discount_cents bigint NOT NULL DEFAULT 0,
                paid_cents bigint NOT NULL DEFAULT 0
             )"
        ))?;
        Ok(PgOrderSummaries { table })
    }

    /// All rows, by order id.
    pub fn rows(
        &self,
        client: &mut es_store_pg::postgres::Client,
    ) -> Result<Vec<SummaryRow>, BoxError> {
        let rows = client.query(
            &format!(
                "SELECT order_id, customer, total_cents, discount_cents, paid_cents FROM {} ORDER BY order_id",
                self.table
            ),
            &[],
        )?;
        let cents = |v: i64| u64::try_from(v).unwrap_or(0);
        Ok(rows
            .iter()
            .map(|r| {
                SummaryRow::new(
                    r.get(0),
                    r.get(1),
                    cents(r.get(2)),
                    cents(r.get(3)),
                    cents(r.get(4)),
                )
            })
            .collect())
    }
}

impl es_store_pg::projection::PgReadModel for PgOrderSummaries {
    fn apply(
        &mut self,
        tx: &mut es_store_pg::postgres::Transaction<'_>,
        recorded: &RecordedEvent,
    ) -> Result<(), BoxError> {
        let Some(envelope) = recorded.decode::<OrderEvent>()? else {
            return Ok(());
        };
        let id = &recorded.stream_id;
        let cents = |v: u64| i64::try_from(v).map_err(|_| format!("{v} cents is past BIGINT"));
        let t = &self.table;
        match envelope.event {
            OrderEvent::OrderPlaced(e) => {
                tx.execute(
                    &format!(
                        "INSERT INTO {t} (order_id, customer, total_cents) VALUES ($1, $2, $3)"
                    ),
                    &[id, &e.customer, &cents(e.total_cents)?],
                )?;
            }
            OrderEvent::DiscountApplied(e) => {
                tx.execute(
                    &format!(
                        "UPDATE {t} SET discount_cents = discount_cents + $2 WHERE order_id = $1"
                    ),
                    &[id, &cents(e.amount_cents)?],
                )?;
            }
            OrderEvent::PaymentReceived(e) => {
                tx.execute(
                    &format!("UPDATE {t} SET paid_cents = paid_cents + $2 WHERE order_id = $1"),
                    &[id, &cents(e.amount_cents)?],
                )?;
            }
        }
        Ok(())
    }

    fn reset(&mut self, tx: &mut es_store_pg::postgres::Transaction<'_>) -> Result<(), BoxError> {
        tx.execute(&format!("DELETE FROM {}", self.table), &[])?;
        Ok(())
    }
}
