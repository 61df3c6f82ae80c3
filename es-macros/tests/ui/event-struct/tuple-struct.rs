// A tuple struct would be stored as a bare value or an array, which no later version can
// extend with a field.
use es_core::prelude::*;

#[event]
pub struct Deposited(pub u64);

#[event]
struct Moved(String, String);

fn main() {}
