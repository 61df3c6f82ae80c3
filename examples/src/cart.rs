//! A shopping cart: created, products added and removed, purchased. Once purchased, a
//! cart no longer changes; quantities never go negative.

use es_core::prelude::*;
use es_core::projection::{BoxError, Projection};
use es_core::{RecordedEvent, UpcastError};
use std::collections::BTreeMap;

/// A cart was opened for a user.
#[event]
#[derive(Debug, Clone, PartialEq)]
pub struct CartCreated {
    /// Who owns it.
    pub user_id: String,
}

/// A product was put in the cart. Version 1 had no price; those events read as free.
#[event(version = 2, migrate(1 => add_unit_price))]
#[derive(Debug, Clone, PartialEq)]
pub struct ProductAdded {
    /// Product name.
    pub product: String,
    /// How many.
    pub quantity: u32,
    /// Price of one, in cents.
    pub unit_price_cents: u64,
}

fn add_unit_price(mut v: serde_json::Value) -> Result<serde_json::Value, UpcastError> {
    let object = v
        .as_object_mut()
        .ok_or_else(|| UpcastError::new("ProductAdded v1 must be an object"))?;
    object.insert("unit_price_cents".into(), 0.into());
    Ok(v)
}

/// Some of a product was taken out.
#[event]
#[derive(Debug, Clone, PartialEq)]
pub struct ProductRemoved {
    /// Product name.
    pub product: String,
    /// How many.
    pub quantity: u32,
}

/// The cart was bought, with what was in it.
#[event]
#[derive(Debug, Clone, PartialEq)]
pub struct CartPurchased {
    /// Product name to quantity.
    pub items: BTreeMap<String, u32>,
    /// What was paid, in cents.
    pub total_cents: u64,
}

/// The cart's events.
#[event]
#[derive(Debug, Clone, PartialEq)]
pub enum CartEvent {
    /// See [`CartCreated`].
    CartCreated(CartCreated),
    /// See [`ProductAdded`].
    ProductAdded(ProductAdded),
    /// See [`ProductRemoved`].
    ProductRemoved(ProductRemoved),
    /// See [`CartPurchased`].
    CartPurchased(CartPurchased),
}

/// One product line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Line {
    /// How many.
    pub quantity: u32,
    /// Price of one, in cents (of the last addition).
    pub unit_price_cents: u64,
}

/// The cart's state.
#[derive(Debug, Default, Clone, Aggregate)]
#[aggregate(kind = "cart", event = CartEvent)]
pub struct Cart {
    /// Owner, once created.
    pub user_id: Option<String>,
    /// Products in the cart.
    pub items: BTreeMap<String, Line>,
    /// Whether it was bought.
    pub purchased: bool,
}

/// Why a cart command refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CartError {
    /// Commands other than create need a created cart.
    #[error("the cart does not exist")]
    NotCreated,
    /// Create runs once.
    #[error("the cart already exists")]
    AlreadyCreated,
    /// A bought cart is closed.
    #[error("the cart was already purchased")]
    AlreadyPurchased,
    /// Quantities are positive.
    #[error("quantity must be at least 1")]
    ZeroQuantity,
    /// Cannot remove more than is there.
    #[error("cannot remove {requested} of `{product}`: the cart holds {in_cart}")]
    NotEnoughInCart {
        /// Product.
        product: String,
        /// Held.
        in_cart: u32,
        /// Asked to remove.
        requested: u32,
    },
    /// Nothing to buy.
    #[error("the cart is empty")]
    Empty,
}

impl Apply<CartCreated> for Cart {
    fn apply(&mut self, e: &CartCreated) {
        self.user_id = Some(e.user_id.clone());
    }
}

impl Apply<ProductAdded> for Cart {
    fn apply(&mut self, e: &ProductAdded) {
        let line = self.items.entry(e.product.clone()).or_default();
        line.quantity += e.quantity;
        line.unit_price_cents = e.unit_price_cents;
    }
}

impl Apply<ProductRemoved> for Cart {
    fn apply(&mut self, e: &ProductRemoved) {
        if let Some(line) = self.items.get_mut(&e.product) {
            line.quantity = line.quantity.saturating_sub(e.quantity);
            if line.quantity == 0 {
                self.items.remove(&e.product);
            }
        }
    }
}

impl Apply<CartPurchased> for Cart {
    fn apply(&mut self, _: &CartPurchased) {
        self.purchased = true;
    }
}

impl Cart {
    fn open(&self) -> Result<(), CartError> {
        if self.user_id.is_none() {
            return Err(CartError::NotCreated);
        }
        if self.purchased {
            return Err(CartError::AlreadyPurchased);
        }
        Ok(())
    }

    /// Opens the cart.
    pub fn create(&self, user_id: &str) -> Result<CartCreated, CartError> {
        if self.user_id.is_some() {
            return Err(CartError::AlreadyCreated);
        }
        Ok(CartCreated {
            user_id: user_id.to_owned(),
        })
    }

    /// Puts `quantity` of `product` in the cart.
    pub fn add_product(
        &self,
        product: &str,
        quantity: u32,
        unit_price_cents: u64,
    ) -> Result<ProductAdded, CartError> {
        self.open()?;
        if quantity == 0 {
            return Err(CartError::ZeroQuantity);
        }
        Ok(ProductAdded {
            product: product.to_owned(),
            quantity,
            unit_price_cents,
        })
    }

    /// Takes `quantity` of `product` out.
    pub fn remove_product(
        &self,
        product: &str,
        quantity: u32,
    ) -> Result<ProductRemoved, CartError> {
        self.open()?;
        if quantity == 0 {
            return Err(CartError::ZeroQuantity);
        }
        let in_cart = self.items.get(product).map_or(0, |l| l.quantity);
        if quantity > in_cart {
            return Err(CartError::NotEnoughInCart {
                product: product.to_owned(),
                in_cart,
                requested: quantity,
            });
        }
        Ok(ProductRemoved {
            product: product.to_owned(),
            quantity,
        })
    }

    /// Buys what is in the cart.
    pub fn purchase(&self) -> Result<CartPurchased, CartError> {
        self.open()?;
        if self.items.is_empty() {
            return Err(CartError::Empty);
        }
        Ok(CartPurchased {
            items: self
                .items
                .iter()
                .map(|(p, l)| (p.clone(), l.quantity))
                .collect(),
            total_cents: self.total_cents(),
        })
    }

    /// What the cart costs now, in cents.
    pub fn total_cents(&self) -> u64 {
        self.items
            .values()
            .map(|l| u64::from(l.quantity) * l.unit_price_cents)
            .sum()
    }
}

/// A materialized view: quantity sold per product, from purchases.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct QuantitySold(pub BTreeMap<String, u64>);

impl Projection for QuantitySold {
    fn handle(&mut self, event: &RecordedEvent) -> Result<(), BoxError> {
        if let Some(envelope) = event.decode::<CartEvent>()?
            && let CartEvent::CartPurchased(p) = envelope.event
        {
            for (product, quantity) in p.items {
                *self.0.entry(product).or_default() += u64::from(quantity);
            }
        }
        Ok(())
    }

    fn reset(&mut self) -> Result<(), BoxError> {
        self.0.clear();
        Ok(())
    }
}
