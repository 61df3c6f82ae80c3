use es_core::prelude::*;

#[event(name = "ProductAdded")]
pub struct ProductAddedV1 {
    pub product: String,
}

#[event(version = 3, upcast_from = ProductAddedV1)]
pub struct ProductAdded {
    pub product: String,
}

impl From<ProductAddedV1> for ProductAdded {
    fn from(old: ProductAddedV1) -> Self {
        ProductAdded { product: old.product }
    }
}

fn main() {}
