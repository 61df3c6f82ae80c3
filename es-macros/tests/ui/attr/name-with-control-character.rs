use es_core::prelude::*;

#[event(name = "Cart\nCreated")]
pub struct CartCreated {
    pub user_id: String,
}

fn main() {}
