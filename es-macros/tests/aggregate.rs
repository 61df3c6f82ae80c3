//! `#[derive(Aggregate)]`: kind, dispatch to `Apply` handlers, snapshot settings, and the
//! generated code working with the repository, the in-memory store and the test helper,
//! including decode errors that say which stream and position failed.

use es_core::event::DecodeError;
use es_core::testing::AggregateTest;
use es_core::{
    Aggregate, Apply, EventStore, ExpectedVersion, LoadError, MemoryStore, NewEvent, Repository,
    SnapshotPolicy, UpcastError, event,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

#[event]
#[derive(Debug, Clone, PartialEq)]
pub struct CartCreated {
    pub user_id: String,
}

#[event(version = 2, migrate(1 => default_quantity))]
#[derive(Debug, Clone, PartialEq)]
pub struct ProductAdded {
    pub product: String,
    pub quantity: u32,
}

fn default_quantity(mut v: Value) -> Result<Value, UpcastError> {
    let object = v
        .as_object_mut()
        .ok_or_else(|| UpcastError::new("expected an object"))?;
    if object.contains_key("quantity") {
        return Err(UpcastError::new("version 1 had no quantity"));
    }
    object.insert("quantity".into(), 1.into());
    Ok(v)
}

#[event]
#[derive(Debug, Clone, PartialEq)]
pub struct CartPurchased {}

#[event(ignore = ["CartViewed"])]
#[derive(Debug, Clone, PartialEq)]
pub enum CartEvent {
    CartCreated(CartCreated),
    ProductAdded(ProductAdded),
    CartPurchased(CartPurchased),
}

#[derive(Debug, Default, Clone, PartialEq, Aggregate)]
#[aggregate(kind = "cart", event = CartEvent)]
pub struct Cart {
    owner: Option<String>,
    items: BTreeMap<String, u32>,
    purchased: bool,
}

impl Apply<CartCreated> for Cart {
    fn apply(&mut self, e: &CartCreated) {
        self.owner = Some(e.user_id.clone());
    }
}

impl Apply<ProductAdded> for Cart {
    fn apply(&mut self, e: &ProductAdded) {
        *self.items.entry(e.product.clone()).or_default() += e.quantity;
    }
}

impl Apply<CartPurchased> for Cart {
    fn apply(&mut self, _: &CartPurchased) {
        self.purchased = true;
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CartError {
    NoSuchCart,
    AlreadyPurchased,
    Empty,
}

impl Cart {
    pub fn create(&self, user_id: &str) -> Result<CartCreated, CartError> {
        Ok(CartCreated {
            user_id: user_id.into(),
        })
    }

    pub fn add_product(&self, product: &str, quantity: u32) -> Result<ProductAdded, CartError> {
        if self.owner.is_none() {
            return Err(CartError::NoSuchCart);
        }
        if self.purchased {
            return Err(CartError::AlreadyPurchased);
        }
        Ok(ProductAdded {
            product: product.into(),
            quantity,
        })
    }

    /// Several events of different types from one command.
    pub fn add_and_purchase(
        &self,
        product: &str,
    ) -> Result<(ProductAdded, CartPurchased), CartError> {
        Ok((self.add_product(product, 1)?, CartPurchased {}))
    }

    pub fn purchase(&self) -> Result<CartPurchased, CartError> {
        if self.items.is_empty() {
            return Err(CartError::Empty);
        }
        Ok(CartPurchased {})
    }
}

/// Snapshot settings: every 50 events, snapshot schema 3. Snapshots are JSON through
/// serde, so the state derives serde's traits.
#[derive(Debug, Default, PartialEq, Aggregate, Serialize, Deserialize)]
#[aggregate(kind = "cart_snapshotted", event = CartEvent)]
#[aggregate(snapshot_every = 50, snapshot_version = 3)]
pub struct SnapshottedCart {
    events: u64,
    items: BTreeMap<String, u32>,
}

impl Apply<CartCreated> for SnapshottedCart {
    fn apply(&mut self, _: &CartCreated) {
        self.events += 1;
    }
}

impl Apply<ProductAdded> for SnapshottedCart {
    fn apply(&mut self, e: &ProductAdded) {
        self.events += 1;
        *self.items.entry(e.product.clone()).or_default() += e.quantity;
    }
}

impl Apply<CartPurchased> for SnapshottedCart {
    fn apply(&mut self, _: &CartPurchased) {
        self.events += 1;
    }
}

impl SnapshottedCart {
    pub fn add(&self, product: &str) -> Result<ProductAdded, CartError> {
        Ok(ProductAdded {
            product: product.into(),
            quantity: 1,
        })
    }
}

#[derive(Debug, Default, Aggregate, Serialize, Deserialize)]
#[aggregate(kind = "cart_default_snapshot", event = CartEvent, snapshot_every = 1)]
pub struct DefaultSnapshotVersion;

impl<E> Apply<E> for DefaultSnapshotVersion {
    fn apply(&mut self, _: &E) {}
}

/// The same shape as `DefaultSnapshotVersion`, documented differently.
#[derive(Debug, Default, Aggregate, Serialize, Deserialize)]
#[aggregate(kind = "cart_same_shape", event = CartEvent, snapshot_every = 1)]
pub struct SameShape;

impl<E> Apply<E> for SameShape {
    fn apply(&mut self, _: &E) {}
}

/// `SnapshottedCart` with one more field: its snapshots are not `SnapshottedCart`'s.
#[derive(Debug, Default, Aggregate, Serialize, Deserialize)]
#[aggregate(kind = "cart_snapshotted", event = CartEvent)]
#[aggregate(snapshot_every = 50, snapshot_version = 3)]
pub struct SnapshottedCartWithOwner {
    events: u64,
    items: BTreeMap<String, u32>,
    owner: Option<String>,
}

impl<E> Apply<E> for SnapshottedCartWithOwner {
    fn apply(&mut self, _: &E) {}
}

#[test]
fn kind_events_and_stream_ids() {
    assert_eq!(Cart::KIND, "cart");
    assert_eq!(Cart::stream_id("42"), "cart-42");
    assert_eq!(Cart::snapshot_policy(), None);
}

#[test]
fn snapshot_settings_become_a_policy() {
    assert_eq!(
        SnapshottedCart::snapshot_policy(),
        Some(SnapshotPolicy {
            every: 50,
            snapshot_version: 3
        })
    );
    assert_eq!(
        DefaultSnapshotVersion::snapshot_policy(),
        Some(SnapshotPolicy {
            every: 1,
            snapshot_version: 1
        })
    );
}

#[test]
fn snapshots_encode_the_state_as_json_and_decode_it_back() {
    let mut cart = SnapshottedCart::default();
    Aggregate::apply_event(
        &mut cart,
        &CartEvent::from(ProductAdded {
            product: "tea".into(),
            quantity: 2,
        }),
    );
    let bytes = cart.encode_snapshot().unwrap().unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&bytes).unwrap(),
        serde_json::json!({"events": 1, "items": {"tea": 2}})
    );
    assert_eq!(
        SnapshottedCart::decode_snapshot(&bytes).unwrap().unwrap(),
        cart
    );
    let err = SnapshottedCart::decode_snapshot(b"[1]")
        .unwrap()
        .unwrap_err();
    assert!(err.contains("expected struct SnapshottedCart"), "{err}");
    // Without `snapshot_every`, there is nothing to encode.
    assert!(Cart::default().encode_snapshot().is_none());
    assert_eq!(Cart::snapshot_fingerprint(), 0);
}

#[test]
fn the_fingerprint_follows_the_shape_of_the_state() {
    let fingerprint = SnapshottedCart::snapshot_fingerprint();
    assert_ne!(fingerprint, 0);
    assert_ne!(
        fingerprint,
        SnapshottedCartWithOwner::snapshot_fingerprint()
    );
    assert_eq!(
        DefaultSnapshotVersion::snapshot_fingerprint(),
        SameShape::snapshot_fingerprint()
    );
}

#[test]
fn the_repository_loads_from_a_derived_snapshot() {
    let carts = Repository::<SnapshottedCart, _>::new(MemoryStore::new());
    for i in 0..120 {
        carts
            .execute("1", |c| c.add(&format!("p{}", i % 7)))
            .unwrap();
    }
    let loaded = carts.load("1").unwrap();
    assert_eq!(loaded.version, 120);
    assert_eq!(loaded.events, 120);
    assert_eq!(loaded.items.values().sum::<u32>(), 120);
    // Two snapshots were written, at 50 and 100; the newest decodes into the state.
    let snapshot = carts
        .store()
        .snapshots()
        .unwrap()
        .load_snapshot("cart_snapshotted-1", u64::MAX)
        .unwrap()
        .unwrap();
    assert_eq!(snapshot.version, 100);
    assert_eq!(snapshot.snapshot_version, 3);
    assert_eq!(
        snapshot.fingerprint,
        SnapshottedCart::snapshot_fingerprint()
    );
    let state = SnapshottedCart::decode_snapshot(&snapshot.state)
        .unwrap()
        .unwrap();
    assert_eq!(state.events, 100);
}

#[test]
fn apply_dispatches_each_variant_to_its_handler() {
    let mut cart = Cart::default();
    Aggregate::apply_event(
        &mut cart,
        &CartEvent::from(CartCreated {
            user_id: "u".into(),
        }),
    );
    Aggregate::apply_event(
        &mut cart,
        &CartEvent::from(ProductAdded {
            product: "tea".into(),
            quantity: 2,
        }),
    );
    Aggregate::apply_event(
        &mut cart,
        &CartEvent::from(ProductAdded {
            product: "tea".into(),
            quantity: 1,
        }),
    );
    Aggregate::apply_event(&mut cart, &CartEvent::from(CartPurchased {}));
    assert_eq!(cart.owner.as_deref(), Some("u"));
    assert_eq!(cart.items["tea"], 3);
    assert!(cart.purchased);
}

#[test]
fn given_when_then() {
    AggregateTest::<Cart>::given(CartCreated {
        user_id: "u".into(),
    })
    .when(|c| c.add_product("tea", 2))
    .then_expect_events(ProductAdded {
        product: "tea".into(),
        quantity: 2,
    });

    let cart = AggregateTest::<Cart>::given((
        CartCreated {
            user_id: "u".into(),
        },
        ProductAdded {
            product: "tea".into(),
            quantity: 1,
        },
    ))
    .when(|c| c.add_and_purchase("milk"))
    .then_expect_events(vec![
        CartEvent::from(ProductAdded {
            product: "milk".into(),
            quantity: 1,
        }),
        CartEvent::from(CartPurchased {}),
    ]);
    assert!(cart.purchased);

    AggregateTest::<Cart>::given_no_events()
        .when(|c| c.add_product("tea", 1))
        .then_expect_error(CartError::NoSuchCart);

    AggregateTest::<Cart>::given(CartCreated {
        user_id: "u".into(),
    })
    .when(|c| c.purchase())
    .then_expect_error(CartError::Empty);
}

#[test]
fn the_repository_runs_commands_and_replays_history() {
    let carts = Repository::<Cart, _>::new(MemoryStore::new());
    carts.execute("1", |c| c.create("alice")).unwrap();
    carts.execute("1", |c| c.add_product("tea", 2)).unwrap();
    let done = carts.execute("1", |c| c.add_and_purchase("milk")).unwrap();
    assert_eq!(done.version, 4);
    let loaded = carts.load("1").unwrap();
    assert_eq!(loaded.version, 4);
    assert_eq!(loaded.state, done.state);
    assert_eq!(loaded.items.len(), 2);
    assert!(loaded.purchased);
    let err = carts.execute("1", |c| c.add_product("jam", 1)).unwrap_err();
    assert_eq!(err.rejected(), Some(&CartError::AlreadyPurchased));
    let then = carts.load_at("1", 2).unwrap();
    assert_eq!(then.items["tea"], 2);
    assert!(!then.purchased);
}

#[test]
fn stored_old_versions_and_ignored_types_load_through_the_repository() {
    let store = MemoryStore::new();
    store
        .append(
            "cart-7",
            ExpectedVersion::NoStream,
            vec![
                NewEvent::new("CartCreated", 1, br#"{"user_id":"bob"}"#.to_vec()),
                NewEvent::new("ProductAdded", 1, br#"{"product":"tea"}"#.to_vec()),
                NewEvent::new("CartViewed", 1, br#"{"by":"bob"}"#.to_vec()),
                NewEvent::new(
                    "ProductAdded",
                    2,
                    br#"{"product":"tea","quantity":4}"#.to_vec(),
                ),
            ],
        )
        .unwrap();
    let carts = Repository::<Cart, _>::new(store);
    let cart = carts.load("7").unwrap();
    assert_eq!(cart.version, 4);
    assert_eq!(cart.items["tea"], 5);
    assert_eq!(cart.owner.as_deref(), Some("bob"));
    assert_eq!(carts.history("7").unwrap().len(), 3);
}

fn load_error(events: Vec<NewEvent>) -> es_core::EventDecodeError {
    let store = MemoryStore::new();
    store
        .append(
            "cart-other",
            ExpectedVersion::Any,
            vec![NewEvent::new(
                "CartCreated",
                1,
                br#"{"user_id":"x"}"#.to_vec(),
            )],
        )
        .unwrap();
    store
        .append("cart-9", ExpectedVersion::NoStream, events)
        .unwrap();
    let carts = Repository::<Cart, _>::new(store);
    match carts.load("9") {
        Err(LoadError::Decode(e)) => e,
        other => panic!("expected a decode error, got {other:?}"),
    }
}

#[test]
fn an_unknown_type_names_the_stream_and_position() {
    let err = load_error(vec![
        NewEvent::new("CartCreated", 1, br#"{"user_id":"bob"}"#.to_vec()),
        NewEvent::new("CartExploded", 1, b"{}".to_vec()),
    ]);
    assert_eq!(
        (err.stream_id.as_str(), err.stream_version, err.position),
        ("cart-9", 2, 3)
    );
    assert_eq!(
        err.error,
        DecodeError::UnknownType {
            event_type: "CartExploded".into(),
            version: 1
        }
    );
    assert_eq!(
        err.to_string(),
        "cannot decode event 2 of stream `cart-9` (global position 3): unknown event type `CartExploded` (schema version 1) for this event set"
    );
}

#[test]
fn a_future_version_names_the_stream_and_position() {
    let err = load_error(vec![NewEvent::new(
        "ProductAdded",
        3,
        br#"{"product":"tea","quantity":1}"#.to_vec(),
    )]);
    assert_eq!((err.stream_version, err.position), (1, 2));
    assert_eq!(
        err.error,
        DecodeError::FutureVersion {
            event_type: "ProductAdded".into(),
            version: 3,
            supported: 2
        }
    );
}

#[test]
fn a_failing_migration_names_the_stream_and_position() {
    let err = load_error(vec![NewEvent::new(
        "ProductAdded",
        1,
        br#"{"product":"tea","quantity":1}"#.to_vec(),
    )]);
    assert_eq!(err.stream_id, "cart-9");
    let DecodeError::Upcast { source, .. } = &err.error else {
        panic!("expected an upcast error, got {:?}", err.error);
    };
    assert_eq!(source.step(), Some(1));
    assert!(
        err.to_string()
            .contains("migration 1 => 2: version 1 had no quantity"),
        "{err}"
    );
}

#[test]
fn recorded_events_decode_with_their_envelope() {
    let store = MemoryStore::new();
    store
        .append(
            "cart-3",
            ExpectedVersion::NoStream,
            vec![
                NewEvent::new("ProductAdded", 1, br#"{"product":"tea"}"#.to_vec()),
                NewEvent::new("CartViewed", 1, b"{}".to_vec()),
            ],
        )
        .unwrap();
    let recorded: Vec<_> = store
        .read_stream("cart-3", 1)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let first = recorded[0].decode::<CartEvent>().unwrap().unwrap();
    assert_eq!(
        first.event,
        CartEvent::ProductAdded(ProductAdded {
            product: "tea".into(),
            quantity: 1
        })
    );
    assert_eq!((first.stream_id.as_str(), first.position), ("cart-3", 1));
    assert!(recorded[1].decode::<CartEvent>().unwrap().is_none());
}

/// A handler that forwards to another with method syntax. With `Aggregate` and `Apply`
/// both in scope (the prelude brings them), `apply` names only the handlers, so
/// `self.apply(&other)` picks the handler by the event's type.
mod forwarding {
    use es_core::prelude::*;

    #[event]
    #[derive(Debug, Clone)]
    pub struct Deposited {
        pub amount: u64,
    }

    /// Opening with an initial amount is a deposit as well.
    #[event]
    #[derive(Debug, Clone)]
    pub struct Opened {
        pub initial: u64,
    }

    #[event]
    #[derive(Debug, Clone)]
    pub enum AccountEvent {
        Opened(Opened),
        Deposited(Deposited),
    }

    #[derive(Debug, Default, Aggregate)]
    #[aggregate(kind = "account", event = AccountEvent)]
    pub struct Account {
        pub open: bool,
        pub balance: u64,
        pub deposits: u32,
    }

    impl Apply<Opened> for Account {
        fn apply(&mut self, e: &Opened) {
            self.open = true;
            self.apply(&Deposited { amount: e.initial });
        }
    }

    impl Apply<Deposited> for Account {
        fn apply(&mut self, e: &Deposited) {
            self.balance += e.amount;
            self.deposits += 1;
        }
    }
}

#[test]
fn a_handler_forwards_to_another_with_method_syntax() {
    use forwarding::{Account, AccountEvent, Deposited, Opened};
    let mut account = Account::default();
    account.apply_event(&AccountEvent::from(Opened { initial: 5 }));
    account.apply_event(&AccountEvent::from(Deposited { amount: 2 }));
    assert!(account.open);
    assert_eq!((account.balance, account.deposits), (7, 2));
}

/// An event split in two: the old event stays in the set as a legacy variant, still
/// decoded and applied, while commands produce the two events that replaced it.
mod split {
    use es_core::prelude::*;

    #[event]
    #[derive(Debug, Clone, PartialEq)]
    pub struct Registered {
        pub name: String,
    }

    /// Replaced by `ShippingAddressChanged` and `BillingAddressChanged`; kept unchanged so
    /// that stored events still load.
    #[event]
    #[derive(Debug, Clone, PartialEq)]
    pub struct CustomerRelocated {
        pub address: String,
        pub billing_address: String,
    }

    #[event]
    #[derive(Debug, Clone, PartialEq)]
    pub struct ShippingAddressChanged {
        pub address: String,
    }

    #[event]
    #[derive(Debug, Clone, PartialEq)]
    pub struct BillingAddressChanged {
        pub address: String,
    }

    #[event]
    #[derive(Debug, Clone, PartialEq)]
    pub enum CustomerEvent {
        Registered(Registered),
        /// Read from history, no longer produced.
        #[event(legacy)]
        CustomerRelocated(CustomerRelocated),
        ShippingAddressChanged(ShippingAddressChanged),
        BillingAddressChanged(BillingAddressChanged),
    }

    #[derive(Debug, Default, Aggregate)]
    #[aggregate(kind = "customer", event = CustomerEvent)]
    pub struct Customer {
        pub shipping: Option<String>,
        pub billing: Option<String>,
    }

    impl Apply<Registered> for Customer {
        fn apply(&mut self, _: &Registered) {}
    }

    impl Apply<CustomerRelocated> for Customer {
        fn apply(&mut self, e: &CustomerRelocated) {
            self.apply(&ShippingAddressChanged {
                address: e.address.clone(),
            });
            self.apply(&BillingAddressChanged {
                address: e.billing_address.clone(),
            });
        }
    }

    impl Apply<ShippingAddressChanged> for Customer {
        fn apply(&mut self, e: &ShippingAddressChanged) {
            self.shipping = Some(e.address.clone());
        }
    }

    impl Apply<BillingAddressChanged> for Customer {
        fn apply(&mut self, e: &BillingAddressChanged) {
            self.billing = Some(e.address.clone());
        }
    }

    impl Customer {
        pub fn relocate(
            &self,
            address: &str,
        ) -> Result<(ShippingAddressChanged, BillingAddressChanged), String> {
            Ok((
                ShippingAddressChanged {
                    address: address.into(),
                },
                BillingAddressChanged {
                    address: address.into(),
                },
            ))
        }
    }
}

#[test]
fn a_legacy_event_is_decoded_and_applied() {
    use es_core::{Event, EventSet};
    use split::{Customer, CustomerEvent, CustomerRelocated};
    let store = MemoryStore::new();
    store
        .append(
            "customer-1",
            ExpectedVersion::NoStream,
            vec![
                NewEvent::new("Registered", 1, br#"{"name":"ann"}"#.to_vec()),
                NewEvent::new(
                    "CustomerRelocated",
                    1,
                    br#"{"address":"1 High St","billing_address":"PO Box 7"}"#.to_vec(),
                ),
            ],
        )
        .unwrap();
    let customers = Repository::<Customer, _>::new(store);
    let customer = customers.load("1").unwrap();
    assert_eq!(customer.shipping.as_deref(), Some("1 High St"));
    assert_eq!(customer.billing.as_deref(), Some("PO Box 7"));

    // Commands produce the events that replaced it.
    customers.execute("1", |c| c.relocate("2 Low Rd")).unwrap();
    let types: Vec<_> = customers
        .history("1")
        .unwrap()
        .iter()
        .map(|e| e.event.event_type())
        .collect();
    assert_eq!(
        types,
        [
            "Registered",
            "CustomerRelocated",
            "ShippingAddressChanged",
            "BillingAddressChanged"
        ]
    );
    assert_eq!(
        customers.load("1").unwrap().billing.as_deref(),
        Some("2 Low Rd")
    );

    // The set still lists, describes and encodes it, and the struct still reads.
    assert!(CustomerEvent::EVENT_TYPES.contains(&"CustomerRelocated"));
    assert!(
        CustomerEvent::SCHEMA
            .unwrap()
            .event("CustomerRelocated")
            .is_some()
    );
    let old = CustomerRelocated {
        address: "a".into(),
        billing_address: "b".into(),
    };
    let encoded = CustomerEvent::CustomerRelocated(old.clone())
        .encode()
        .unwrap();
    assert_eq!(
        CustomerRelocated::decode_stored(1, &encoded.payload).unwrap(),
        old
    );
}

/// `#[aggregate(transient)]` on a state without snapshots (nor serde) is accepted: there is
/// no snapshot for the field to differ in.
mod transient_without_snapshots {
    use es_core::prelude::*;

    #[event]
    #[derive(Debug, Clone)]
    pub struct Noted {
        pub n: u64,
    }

    #[event]
    #[derive(Debug, Clone)]
    pub enum NoteEvent {
        Noted(Noted),
    }

    #[derive(Debug, Default, Aggregate)]
    #[aggregate(kind = "note", event = NoteEvent)]
    pub struct Notes {
        pub total: u64,
        #[aggregate(transient)]
        pub folded: u64,
    }

    impl Apply<Noted> for Notes {
        fn apply(&mut self, e: &Noted) {
            self.total += e.n;
            self.folded += 1;
        }
    }

    #[test]
    fn compiles_and_folds() {
        let mut notes = Notes::default();
        notes.apply(&Noted { n: 2 });
        assert_eq!((notes.total, notes.folded), (2, 1));
    }
}
