// A mistyped `name` on the previous version of an event is the only error: the newer
// version that upcasts from it is not also told that it names another event.
use es_core::prelude::*;

#[event(nam = "CartCreated")]
pub struct CartCreatedV1 {
    pub user_id: String,
}

#[event(version = 2, upcast_from = CartCreatedV1)]
pub struct CartCreated {
    pub user_id: String,
}

impl From<CartCreatedV1> for CartCreated {
    fn from(old: CartCreatedV1) -> Self {
        CartCreated { user_id: old.user_id }
    }
}

fn main() {}
