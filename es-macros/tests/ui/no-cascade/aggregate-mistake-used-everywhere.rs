// A mistake in the aggregate's attribute is the only error: the repository still
// type-checks against the stub impl.
use es_core::prelude::*;

#[event]
#[derive(Debug, Clone)]
pub struct CartCreated {
    pub user_id: String,
}

#[event]
pub enum CartEvent {
    CartCreated(CartCreated),
}

#[derive(Default, Aggregate)]
#[aggregate(kind = "shopping-cart", event = CartEvent)]
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
}
