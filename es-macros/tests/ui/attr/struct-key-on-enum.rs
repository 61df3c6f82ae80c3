use es_core::prelude::*;

#[event]
pub struct CartCreated {
    pub user_id: String,
}

#[event(version = 2)]
pub enum CartEvent {
    CartCreated(CartCreated),
}

fn main() {}
