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
#[aggregate(kind = "cart", event = CartEvent)]
#[aggregate(kind = "basket")]
pub struct Cart;

impl Apply<CartCreated> for Cart {
    fn apply(&mut self, _: &CartCreated) {}
}

fn main() {}
