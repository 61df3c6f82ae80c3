//! A warehouse product: stock received, shipped and adjusted after counts, with the
//! invariant that stock on hand never goes below zero. Long streams are snapshotted.

use es_core::prelude::*;
use serde::{Deserialize, Serialize};

/// Stock arrived.
#[event]
#[derive(Debug, Clone, PartialEq)]
pub struct ProductReceived {
    /// Units.
    pub quantity: u64,
}

/// Stock left.
#[event]
#[derive(Debug, Clone, PartialEq)]
pub struct ProductShipped {
    /// Units.
    pub quantity: u64,
    /// The order it went to, if any.
    pub order_id: Option<String>,
}

/// A stock count corrected the figure.
#[event]
#[derive(Debug, Clone, PartialEq)]
pub struct InventoryAdjusted {
    /// Units added (positive) or removed (negative).
    pub delta: i64,
    /// Why.
    pub reason: String,
}

/// Units were set aside for an order.
#[event]
#[derive(Debug, Clone, PartialEq)]
pub struct StockReserved {
    /// Units.
    pub quantity: u64,
    /// The order.
    pub order_id: String,
}

/// The product's events.
#[event]
#[derive(Debug, Clone, PartialEq)]
pub enum ProductEvent {
    /// See [`ProductReceived`].
    ProductReceived(ProductReceived),
    /// See [`ProductShipped`].
    ProductShipped(ProductShipped),
    /// See [`InventoryAdjusted`].
    InventoryAdjusted(InventoryAdjusted),
    /// See [`StockReserved`].
    StockReserved(StockReserved),
}

/// The product's state, snapshotted every 100 events.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize, Aggregate)]
#[aggregate(kind = "product", event = ProductEvent, snapshot_every = 100)]
pub struct Product {
    /// Units in the warehouse.
    pub on_hand: u64,
    /// Units of `on_hand` set aside for orders.
    pub reserved: u64,
    /// Events folded (to show how much a load had to read).
    pub events: u64,
}

/// Why a product command refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StockError {
    /// Quantities are positive.
    #[error("quantity must be at least 1")]
    ZeroQuantity,
    /// The invariant.
    #[error("cannot take {requested} units: {available} available")]
    NotEnoughStock {
        /// Units available.
        available: u64,
        /// Units asked for.
        requested: u64,
    },
}

impl Apply<ProductReceived> for Product {
    fn apply(&mut self, e: &ProductReceived) {
        self.on_hand += e.quantity;
        self.events += 1;
    }
}
impl Apply<ProductShipped> for Product {
    fn apply(&mut self, e: &ProductShipped) {
        self.on_hand = self.on_hand.saturating_sub(e.quantity);
        if e.order_id.is_some() {
            self.reserved = self.reserved.saturating_sub(e.quantity);
        }
        self.events += 1;
    }
}
impl Apply<InventoryAdjusted> for Product {
    fn apply(&mut self, e: &InventoryAdjusted) {
        self.on_hand = self.on_hand.saturating_add_signed(e.delta);
        self.events += 1;
    }
}
impl Apply<StockReserved> for Product {
    fn apply(&mut self, e: &StockReserved) {
        self.reserved += e.quantity;
        self.events += 1;
    }
}

impl Product {
    /// Units neither shipped nor reserved.
    pub fn available(&self) -> u64 {
        self.on_hand.saturating_sub(self.reserved)
    }

    /// Records a delivery.
    pub fn receive(&self, quantity: u64) -> Result<ProductReceived, StockError> {
        if quantity == 0 {
            return Err(StockError::ZeroQuantity);
        }
        Ok(ProductReceived { quantity })
    }

    /// Ships unreserved stock; never more than is available.
    pub fn ship(&self, quantity: u64) -> Result<ProductShipped, StockError> {
        self.check_available(quantity)?;
        Ok(ProductShipped {
            quantity,
            order_id: None,
        })
    }

    /// Sets stock aside for an order.
    pub fn reserve(&self, quantity: u64, order_id: &str) -> Result<StockReserved, StockError> {
        self.check_available(quantity)?;
        Ok(StockReserved {
            quantity,
            order_id: order_id.to_owned(),
        })
    }

    /// Corrects the count; the result cannot go below what is reserved.
    pub fn adjust(&self, delta: i64, reason: &str) -> Result<InventoryAdjusted, StockError> {
        let after = self.on_hand as i128 + i128::from(delta);
        if after < self.reserved as i128 {
            return Err(StockError::NotEnoughStock {
                available: self.available(),
                requested: delta.unsigned_abs(),
            });
        }
        Ok(InventoryAdjusted {
            delta,
            reason: reason.to_owned(),
        })
    }

    fn check_available(&self, quantity: u64) -> Result<(), StockError> {
        if quantity == 0 {
            return Err(StockError::ZeroQuantity);
        }
        if quantity > self.available() {
            return Err(StockError::NotEnoughStock {
                available: self.available(),
                requested: quantity,
            });
        }
        Ok(())
    }
}
