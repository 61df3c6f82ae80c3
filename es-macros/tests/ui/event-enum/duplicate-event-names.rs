use es_core::prelude::*;

#[event]
pub struct CartCreated {
    pub user_id: String,
}

#[event(name = "CartCreated", version = 1)]
pub struct CartOpened {
    pub user_id: String,
}

#[event]
pub enum CartEvent {
    CartCreated(CartCreated),
    CartOpened(CartOpened),
}

fn main() {}
