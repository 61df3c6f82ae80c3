use es_core::prelude::*;

#[event]
pub struct CustomerRelocated {
    pub address: String,
}

#[event]
pub enum CustomerEvent {
    #[event]
    CustomerRelocated(CustomerRelocated),
}

fn main() {}
