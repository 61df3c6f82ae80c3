use es_core::prelude::*;

#[event]
pub enum CartEvent {}

fn main() {}
