use es_core::prelude::*;

#[event]
pub struct CartCreated {
    pub user_id: String,
}

#[event]
pub enum CartEvent {
    CartCreated(CartCreated),
}

#[derive(Default, Aggregate)]
#[aggregate(kind = "cart", event = CartEvent, snapshot_every = 0, snapshot_version = 2)]
pub struct Cart;

#[derive(Default, Aggregate)]
#[aggregate(kind = "basket", event = CartEvent, snapshot_every = 10, snapshot_version = 0)]
pub struct Basket;

impl<E> Apply<E> for Cart {
    fn apply(&mut self, _: &E) {}
}

impl<E> Apply<E> for Basket {
    fn apply(&mut self, _: &E) {}
}

fn main() {}
