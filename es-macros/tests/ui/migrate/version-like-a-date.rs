use es_core::prelude::*;
use serde_json::Value;

fn v1_to_v2(v: Value) -> Result<Value, UpcastError> {
    Ok(v)
}

// a date used as the version: the message lists a few missing steps, not millions
#[event(version = 20240115, migrate(1 => v1_to_v2))]
pub struct ProductAdded {
    pub product: String,
}

#[event(version = 4000000000)]
pub struct ProductRemoved {
    pub product: String,
}

fn main() {}
