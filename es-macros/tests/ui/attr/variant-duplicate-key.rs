// A key written twice on one variant, in one attribute or across two.
use es_core::prelude::*;

#[event]
pub struct CustomerRelocated {
    pub address: String,
}

#[event]
pub struct CustomerMoved {
    pub address: String,
}

#[event]
pub enum CustomerEvent {
    #[event(legacy, legacy)]
    CustomerRelocated(CustomerRelocated),
    #[event(legacy)]
    #[event(legacy)]
    CustomerMoved(CustomerMoved),
}

fn main() {}
