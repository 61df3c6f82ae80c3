use es_core::prelude::*;

#[fingerprint]
pub struct Account {
    pub balance: u64,
}

fn main() {}
