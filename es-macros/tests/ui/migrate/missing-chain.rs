use es_core::prelude::*;

#[event(version = 3)]
pub struct ProductAdded {
    pub product: String,
}

fn main() {}
