use es_core::prelude::*;

#[event]
pub struct CartCreated {
    pub user_id: String,
}

#[event]
pub struct ProductAdded {
    pub product: String,
}

#[event]
pub enum CartEvent {
    CartCreated(CartCreated),
    ProductAdded(ProductAdded),
}

#[derive(Default, Aggregate)]
#[aggregate(kind = "cart", event = CartEvent)]
pub struct Cart {
    pub items: u32,
}

impl Apply<CartCreated> for Cart {
    fn apply(&mut self, _: &CartCreated) {}
}

fn main() {}
