use es_core::prelude::*;

#[event]
pub struct Wrapped<T> {
    pub inner: T,
}

fn main() {}
