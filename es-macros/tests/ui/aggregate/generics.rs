use es_core::prelude::*;

#[derive(Default, Aggregate)]
#[aggregate(kind = "cart", event = CartEvent)]
pub struct Cart<T> {
    pub items: Vec<T>,
}

fn main() {}
