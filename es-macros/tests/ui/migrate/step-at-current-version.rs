use es_core::prelude::*;
use serde_json::Value;

fn v1_to_v2(v: Value) -> Result<Value, UpcastError> {
    Ok(v)
}

fn v2_to_v3(v: Value) -> Result<Value, UpcastError> {
    Ok(v)
}

#[event(version = 2, migrate(1 => v1_to_v2, 2 => v2_to_v3))]
pub struct ProductAdded {
    pub product: String,
}

fn main() {}
