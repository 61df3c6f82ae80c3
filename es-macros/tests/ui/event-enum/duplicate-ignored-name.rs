use es_core::prelude::*;

#[event]
pub struct CartCreated {
    pub user_id: String,
}

#[event(ignore = ["CartViewed", "CartViewed"])]
pub enum CartEvent {
    CartCreated(CartCreated),
}

fn main() {}
