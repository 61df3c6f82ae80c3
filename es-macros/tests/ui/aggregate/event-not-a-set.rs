use es_core::prelude::*;

#[event]
pub struct CartCreated {
    pub user_id: String,
}

#[derive(Default, Aggregate)]
#[aggregate(kind = "cart", event = CartCreated)]
pub struct Cart {
    pub items: u32,
}

fn main() {}
