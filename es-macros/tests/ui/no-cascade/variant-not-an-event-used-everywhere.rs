// A struct without `#[event]` in an event set is one error, at the variant: the set, the
// aggregate, its snapshots and the commands that use it report nothing else.
use es_core::prelude::*;

#[derive(Debug, Clone)]
pub struct CartCreated {
    pub user_id: String,
}

#[event]
pub struct CartCleared {}

#[event]
pub enum CartEvent {
    CartCreated(CartCreated),
    CartCleared(CartCleared),
}

#[derive(Default, Aggregate, serde::Serialize, serde::Deserialize)]
#[aggregate(kind = "cart", event = CartEvent, snapshot_every = 10)]
pub struct Cart {}

impl Apply<CartCreated> for Cart {
    fn apply(&mut self, _: &CartCreated) {}
}

impl Apply<CartCleared> for Cart {
    fn apply(&mut self, _: &CartCleared) {}
}

impl Cart {
    pub fn clear(&self) -> Result<CartCleared, String> {
        Ok(CartCleared {})
    }
}

fn main() {
    let carts = Repository::<Cart, _>::new(MemoryStore::new());
    let _ = carts.execute("1", |c| c.clear());
    let _ = CartEvent::from(CartCreated { user_id: "u".into() });
}
