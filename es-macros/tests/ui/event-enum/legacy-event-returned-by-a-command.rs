// A legacy variant's event is read from history but no longer produced: a command that
// returns it, or a conversion into the set, does not compile.
use es_core::prelude::*;

#[event]
pub struct CustomerRelocated {
    pub address: String,
    pub billing_address: String,
}

#[event]
pub struct ShippingAddressChanged {
    pub address: String,
}

#[event]
pub enum CustomerEvent {
    #[event(legacy)]
    CustomerRelocated(CustomerRelocated),
    ShippingAddressChanged(ShippingAddressChanged),
}

#[derive(Default, Aggregate)]
#[aggregate(kind = "customer", event = CustomerEvent)]
pub struct Customer;

impl Apply<CustomerRelocated> for Customer {
    fn apply(&mut self, _: &CustomerRelocated) {}
}

impl Apply<ShippingAddressChanged> for Customer {
    fn apply(&mut self, _: &ShippingAddressChanged) {}
}

impl Customer {
    pub fn relocate(&self, address: &str) -> Result<CustomerRelocated, String> {
        Ok(CustomerRelocated {
            address: address.into(),
            billing_address: address.into(),
        })
    }
}

fn main() {
    let customers = Repository::<Customer, _>::new(MemoryStore::new());
    let _ = customers.execute("1", |c| c.relocate("1 High St"));
    let _ = CustomerEvent::from(CustomerRelocated {
        address: "a".into(),
        billing_address: "b".into(),
    });
}
