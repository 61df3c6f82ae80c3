use es_core::prelude::*;

#[event]
pub struct Deposited {
    pub amount: u64,
}

#[event]
pub enum AccountEvent {
    Deposited(Deposited),
}

#[derive(Default, Aggregate)]
#[aggregate(kind = "account", event = AccountEvent)]
pub struct Account {
    pub balance: u64,
}

#[fingerprint]
impl std::fmt::Display for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.balance)
    }
}

impl Apply<Deposited> for Account {
    fn apply(&mut self, e: &Deposited) {
        self.balance += e.amount;
    }
}

fn main() {}
