use es_core::prelude::*;

#[event]
fn cart_created() {}

fn main() {}
