use es_core::prelude::*;

#[event(version = 1)]
pub struct ItemAdded {
    pub product: String,
}

#[event(version = 2, upcast_from = ItemAdded)]
pub struct ProductAdded {
    pub product: String,
}

impl From<ItemAdded> for ProductAdded {
    fn from(old: ItemAdded) -> Self {
        ProductAdded { product: old.product }
    }
}

fn main() {}
