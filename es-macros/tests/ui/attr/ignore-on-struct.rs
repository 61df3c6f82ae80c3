use es_core::prelude::*;

#[event(ignore = ["CartViewed"])]
pub struct CartCreated {
    pub user_id: String,
}

fn main() {}
