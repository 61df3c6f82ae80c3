// A variant that a `#[cfg]` compiles out would leave its stored events without a decoder
// in some builds; the macro refuses it rather than failing on every generated arm.
use es_core::prelude::*;

#[event]
pub struct CartCreated {
    pub user_id: String,
}

#[event]
pub struct CartAudited {
    pub by: String,
}

#[event]
pub struct CartShared {
    pub with: String,
}

#[event]
pub enum CartEvent {
    CartCreated(CartCreated),
    #[cfg(any())]
    CartAudited(CartAudited),
    #[cfg_attr(all(), cfg(any()))]
    CartShared(CartShared),
}

fn main() {}
