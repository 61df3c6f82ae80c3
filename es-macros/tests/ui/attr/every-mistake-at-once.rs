// Each mistake is reported at its own token, in one compilation.
use es_core::prelude::*;

#[event(name = "", verison = 2, aliases = ["Old", 3, "Old"], upcast_from)]
pub struct CartCreated {
    pub user_id: String,
}

fn main() {}
