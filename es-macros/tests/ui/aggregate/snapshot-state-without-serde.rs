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
#[aggregate(kind = "cart", event = CartEvent, snapshot_every = 100)]
pub struct Cart {
    pub items: u32,
}

impl Apply<CartCreated> for Cart {
    fn apply(&mut self, _: &CartCreated) {}
}

fn main() {}
