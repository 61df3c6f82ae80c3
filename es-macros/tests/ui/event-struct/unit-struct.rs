// A unit struct would be stored as `null`, which no later version can extend with a field.
use es_core::prelude::*;

#[event]
pub struct CartClosed;

fn main() {}
