use es_core::prelude::*;

#[event]
pub struct CustomerRelocated {
    pub address: String,
}

#[event]
pub enum CustomerEvent {
    #[event(legacy = true)]
    CustomerRelocated(CustomerRelocated),
}

fn main() {}
