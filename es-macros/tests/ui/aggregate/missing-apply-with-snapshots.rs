use es_core::prelude::*;

#[event]
pub struct Deposited {
    pub amount: u64,
}

#[event]
pub struct Withdrawn {
    pub amount: u64,
}

#[event]
pub enum AccountEvent {
    Deposited(Deposited),
    Withdrawn(Withdrawn),
}

#[derive(Default, Aggregate, serde::Serialize, serde::Deserialize)]
#[aggregate(kind = "account", event = AccountEvent, snapshot_every = 10)]
pub struct Account {
    pub balance: u64,
}

#[fingerprint]
impl Apply<Deposited> for Account {
    fn apply(&mut self, e: &Deposited) {
        self.balance += e.amount;
    }
}

fn main() {}
