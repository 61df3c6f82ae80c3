use es_core::prelude::*;

#[event(name = "ProductAdded")]
pub struct ProductAddedV1 {
    pub product: String,
}

#[event(version = 2, upcast_from = ProductAddedV1)]
pub struct ProductAdded {
    pub product: String,
}

fn main() {}
