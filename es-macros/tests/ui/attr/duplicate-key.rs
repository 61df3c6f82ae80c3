use es_core::prelude::*;

#[event(name = "CartCreated", name = "CartOpened")]
pub struct CartCreated {
    pub user_id: String,
}

fn main() {}
