// A mistake in one event's attribute is the only error: the enum, the aggregate and the
// commands that use the event still type-check against the stub impls.
use es_core::prelude::*;

#[event(verison = 2)]
#[derive(Debug, Clone)]
pub struct CartCreated {
    pub user_id: String,
}

#[event]
pub enum CartEvent {
    CartCreated(CartCreated),
}

#[derive(Default, Aggregate)]
#[aggregate(kind = "cart", event = CartEvent)]
pub struct Cart;

impl Apply<CartCreated> for Cart {
    fn apply(&mut self, _: &CartCreated) {}
}

impl Cart {
    pub fn create(&self) -> Result<CartCreated, String> {
        Ok(CartCreated { user_id: "u".into() })
    }
}

fn main() {
    let carts = Repository::<Cart, _>::new(MemoryStore::new());
    let _ = carts.execute("1", |c| c.create());
    let _ = CartCreated::NAME;
}
