use es_core::prelude::*;

#[event(name = CartCreated, version = "2", aliases = "Old")]
pub struct CartCreated {
    pub user_id: String,
}

fn main() {}
