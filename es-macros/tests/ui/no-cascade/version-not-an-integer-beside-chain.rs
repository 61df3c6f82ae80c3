// A version that is not an integer literal is the only error: neither the migration step
// nor the `upcast_from` beside it is also reported as wrong for version 1.
use es_core::prelude::*;

fn to_v2(v: serde_json::Value) -> Result<serde_json::Value, UpcastError> {
    Ok(v)
}

#[event(name = "CartCreated", version = "2", migrate(1 => to_v2))]
pub struct CartCreatedV2 {
    pub user_id: String,
}

#[event(version = "3", upcast_from = CartCreatedV2)]
pub struct CartCreated {
    pub user_id: String,
}

impl From<CartCreatedV2> for CartCreated {
    fn from(old: CartCreatedV2) -> Self {
        CartCreated { user_id: old.user_id }
    }
}

fn main() {}
