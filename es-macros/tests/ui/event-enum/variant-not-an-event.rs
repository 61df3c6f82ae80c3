use es_core::prelude::*;

pub struct CartCreated {
    pub user_id: String,
}

#[event]
pub enum CartEvent {
    CartCreated(CartCreated),
}

fn main() {}
