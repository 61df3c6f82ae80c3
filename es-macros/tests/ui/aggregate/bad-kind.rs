use es_core::prelude::*;

#[event]
pub struct CartCreated {
    pub user_id: String,
}

#[event]
pub enum CartEvent {
    CartCreated(CartCreated),
}

impl<E> Apply<E> for ShoppingCart {
    fn apply(&mut self, _: &E) {}
}
impl<E> Apply<E> for EmptyKind {
    fn apply(&mut self, _: &E) {}
}
impl<E> Apply<E> for SpacedKind {
    fn apply(&mut self, _: &E) {}
}
impl<E> Apply<E> for ControlKind {
    fn apply(&mut self, _: &E) {}
}

#[derive(Default, Aggregate)]
#[aggregate(kind = "shopping-cart", event = CartEvent)]
pub struct ShoppingCart;

#[derive(Default, Aggregate)]
#[aggregate(kind = "", event = CartEvent)]
pub struct EmptyKind;

#[derive(Default, Aggregate)]
#[aggregate(kind = "shopping cart", event = CartEvent)]
pub struct SpacedKind;

#[derive(Default, Aggregate)]
#[aggregate(kind = "cart\t", event = CartEvent)]
pub struct ControlKind;

fn main() {}
