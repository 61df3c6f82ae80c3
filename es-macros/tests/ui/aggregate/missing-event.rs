use es_core::prelude::*;

#[derive(Default, Aggregate)]
#[aggregate(kind = "cart")]
pub struct Cart {
    pub items: u32,
}

fn main() {}
