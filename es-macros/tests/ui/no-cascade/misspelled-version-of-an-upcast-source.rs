// A mistyped `version` on the previous version of an event is the only error: the newer
// version that upcasts from it is not also told that it names the wrong version.
use es_core::prelude::*;

fn to_v2(v: serde_json::Value) -> Result<serde_json::Value, UpcastError> {
    Ok(v)
}

#[event(name = "CartCreated", verison = 2, migrate(1 => to_v2))]
pub struct CartCreatedV2 {
    pub user_id: String,
}

#[event(version = 3, upcast_from = CartCreatedV2)]
pub struct CartCreated {
    pub user_id: String,
}

impl From<CartCreatedV2> for CartCreated {
    fn from(old: CartCreatedV2) -> Self {
        CartCreated { user_id: old.user_id }
    }
}

fn main() {}
