use es_core::prelude::*;
use serde_json::Value;

fn v1_to_v2(v: Value) -> Result<Value, UpcastError> {
    Ok(v)
}

#[event(name = "ProductAdded", version = 2, migrate(1 => v1_to_v2))]
pub struct ProductAddedV2 {
    pub product: String,
}

#[event(version = 3, migrate(1 => v1_to_v2), upcast_from = ProductAddedV2)]
pub struct ProductAdded {
    pub product: String,
}

impl From<ProductAddedV2> for ProductAdded {
    fn from(old: ProductAddedV2) -> Self {
        ProductAdded { product: old.product }
    }
}

fn main() {}
