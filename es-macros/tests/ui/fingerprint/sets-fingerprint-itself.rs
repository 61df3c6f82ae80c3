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
impl Apply<Deposited> for Account {
    const FINGERPRINT: u64 = 7;

    fn apply(&mut self, e: &Deposited) {
        self.balance += e.amount;
    }
}

fn main() {}
