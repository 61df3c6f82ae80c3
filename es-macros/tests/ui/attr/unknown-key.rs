use es_core::prelude::*;

#[event(verison = 2)]
pub struct CartCreated {
    pub user_id: String,
}

fn main() {}
