use es_core::prelude::*;

#[event]
pub struct CartCreated {
    pub user_id: String,
}

#[event]
pub enum CartEvent {
    CartCreated(CartCreated),
    CartOpened(CartCreated),
}

fn main() {}
