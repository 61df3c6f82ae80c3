use es_core::prelude::*;
use serde_json::Value;

fn v1_to_v2(v: Value) -> Result<Value, UpcastError> {
    Ok(v)
}

fn v3_to_v4(v: Value) -> Result<Value, UpcastError> {
    Ok(v)
}

#[event(version = 4, migrate(1 => v1_to_v2, 3 => v3_to_v4))]
pub struct ProductAdded {
    pub product: String,
}

fn main() {}
