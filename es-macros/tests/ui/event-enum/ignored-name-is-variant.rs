use es_core::prelude::*;

#[event]
pub struct CartCreated {
    pub user_id: String,
}

#[event(ignore = ["CartViewed", "CartCreated"])]
pub enum CartEvent {
    CartCreated(CartCreated),
}

fn main() {}
