use es_core::prelude::*;
use serde_json::Value;

fn step(v: Value) -> Result<Value, UpcastError> {
    Ok(v)
}

#[event(version = 3, migrate(1 => step, 2 => step, 7 => step))]
pub struct ProductAdded {
    pub product: String,
}

fn main() {}
