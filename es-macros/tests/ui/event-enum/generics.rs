use es_core::prelude::*;

#[event]
pub enum CartEvent<T> {
    Created(T),
}

fn main() {}
