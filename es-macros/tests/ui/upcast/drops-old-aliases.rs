// Version 2 answers to "ItemAdded", the name version 1 was stored under; version 3 upcasts
// from version 2 but forgets the alias, so stored "ItemAdded" events would no longer load.
use es_core::prelude::*;

#[event(name = "ItemAdded")]
pub struct ItemAddedV1 {
    pub item: String,
}

#[event(name = "ProductAdded", version = 2, aliases = ["ItemAdded"], upcast_from = ItemAddedV1)]
pub struct ProductAddedV2 {
    pub product: String,
}

impl From<ItemAddedV1> for ProductAddedV2 {
    fn from(old: ItemAddedV1) -> Self {
        ProductAddedV2 { product: old.item }
    }
}

#[event(version = 3, upcast_from = ProductAddedV2)]
pub struct ProductAdded {
    pub product: String,
    pub quantity: u32,
}

impl From<ProductAddedV2> for ProductAdded {
    fn from(old: ProductAddedV2) -> Self {
        ProductAdded { product: old.product, quantity: 1 }
    }
}

fn main() {}
