use es_core::prelude::*;

#[event(colour = "blue")]
pub struct CartCreated {
    pub user_id: String,
}

fn main() {}
