use es_core::prelude::*;

#[derive(Default, Aggregate)]
pub struct Cart {
    pub items: u32,
}

fn main() {}
