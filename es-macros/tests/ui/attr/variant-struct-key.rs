// A variant's name is never stored, so a stored name is not given on the variant.
use es_core::prelude::*;

#[event]
pub struct ProductAdded {
    pub product: String,
}

#[event]
pub enum CartEvent {
    #[event(name = "ItemAdded")]
    Added(ProductAdded),
}

fn main() {}
