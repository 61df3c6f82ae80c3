use es_core::prelude::*;

#[event(version = 0, version = 2)]
pub struct CartCreated {
    pub user_id: String,
}

fn main() {}
