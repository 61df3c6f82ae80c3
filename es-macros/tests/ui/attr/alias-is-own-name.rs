use es_core::prelude::*;

#[event(name = "CartOpened", aliases = ["CartCreated", "CartOpened", "CartCreated"])]
pub struct CartCreated {
    pub user_id: String,
}

fn main() {}
