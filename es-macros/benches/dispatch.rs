//! The cost of what the macros generate, against what a user would write by hand:
//! replaying 1,000,000 events through the derived `Aggregate::apply_event` versus a hand-written
//! `match`, and decoding a current-version payload versus old payloads that are upcast
//! through a JSON chain and through a typed chain.
//!
//! `cargo bench -p es-macros --bench dispatch`

use criterion::{Criterion, criterion_group, criterion_main};
use es_core::{Aggregate, Apply, EventSet, UpcastError, event};
use serde_json::{Value, json};
use std::hint::black_box;

const REPLAYED: usize = 1_000_000;

#[event]
#[derive(Debug, Clone)]
pub struct Deposited {
    pub amount: u64,
}

#[event]
#[derive(Debug, Clone)]
pub struct Withdrawn {
    pub amount: u64,
}

#[event]
#[derive(Debug, Clone)]
pub struct FeeCharged {
    pub cents: u64,
}

#[event]
#[derive(Debug, Clone)]
pub struct Frozen {
    pub reason: String,
}

#[event]
#[derive(Debug, Clone)]
pub struct Unfrozen {}

#[event]
#[derive(Debug, Clone)]
pub enum AccountEvent {
    Deposited(Deposited),
    Withdrawn(Withdrawn),
    FeeCharged(FeeCharged),
    Frozen(Frozen),
    Unfrozen(Unfrozen),
}

/// Folded through the generated dispatch to the `Apply` handlers below.
#[derive(Debug, Default, Aggregate)]
#[aggregate(kind = "account", event = AccountEvent)]
pub struct Account {
    balance: i64,
    fees: u64,
    frozen: u32,
}

impl Apply<Deposited> for Account {
    fn apply(&mut self, e: &Deposited) {
        self.balance += e.amount as i64;
    }
}
impl Apply<Withdrawn> for Account {
    fn apply(&mut self, e: &Withdrawn) {
        self.balance -= e.amount as i64;
    }
}
impl Apply<FeeCharged> for Account {
    fn apply(&mut self, e: &FeeCharged) {
        self.fees += e.cents;
    }
}
impl Apply<Frozen> for Account {
    fn apply(&mut self, e: &Frozen) {
        self.frozen += e.reason.len() as u32;
    }
}
impl Apply<Unfrozen> for Account {
    fn apply(&mut self, _: &Unfrozen) {
        self.frozen = 0;
    }
}

/// The same state and the same updates, with `apply` written as one `match`.
#[derive(Debug, Default)]
pub struct HandAccount {
    balance: i64,
    fees: u64,
    frozen: u32,
}

impl Aggregate for HandAccount {
    const KIND: &'static str = "hand_account";
    type Events = AccountEvent;

    fn apply_event(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::Deposited(e) => self.balance += e.amount as i64,
            AccountEvent::Withdrawn(e) => self.balance -= e.amount as i64,
            AccountEvent::FeeCharged(e) => self.fees += e.cents,
            AccountEvent::Frozen(e) => self.frozen += e.reason.len() as u32,
            AccountEvent::Unfrozen(_) => self.frozen = 0,
        }
    }
}

/// A mixed history whose variant order a branch predictor cannot learn.
fn history() -> Vec<AccountEvent> {
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..REPLAYED)
        .map(|i| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let amount = (seed >> 40) % 1000;
            match (seed >> 33) % 8 {
                0..=2 => AccountEvent::Deposited(Deposited { amount }),
                3..=4 => AccountEvent::Withdrawn(Withdrawn { amount }),
                5 => AccountEvent::FeeCharged(FeeCharged { cents: amount }),
                6 => AccountEvent::Frozen(Frozen {
                    reason: if i % 2 == 0 { "audit" } else { "fraud" }.to_owned(),
                }),
                _ => AccountEvent::Unfrozen(Unfrozen {}),
            }
        })
        .collect()
}

fn replay<A: Aggregate>(events: &[A::Events]) -> A {
    let mut state = A::default();
    for event in events {
        state.apply_event(black_box(event));
    }
    state
}

fn dispatch(c: &mut Criterion) {
    let events = history();
    let mut group = c.benchmark_group("replay_1m");
    group.sample_size(50);
    group.measurement_time(std::time::Duration::from_secs(10));
    group.bench_function("generated_dispatch", |b| {
        b.iter(|| black_box(replay::<Account>(&events)))
    });
    group.bench_function("hand_written_match", |b| {
        b.iter(|| black_box(replay::<HandAccount>(&events)))
    });
    group.finish();
    let (generated, hand) = (replay::<Account>(&events), replay::<HandAccount>(&events));
    assert_eq!(
        (generated.balance, generated.fees, generated.frozen),
        (hand.balance, hand.fees, hand.frozen)
    );
}

// ---- decoding: current version, JSON chain, typed chain ----

/// Version 3 of a JSON-migrated event: v1 `{"sku","qty"}`, v2 `{"product","qty"}`.
#[event(version = 3, migrate(1 => rename_sku, 2 => rename_qty))]
#[derive(Debug, Clone)]
pub struct ProductAdded {
    pub product: String,
    pub quantity: u32,
    pub unit_price_cents: u64,
}

fn rename_sku(mut v: Value) -> Result<Value, UpcastError> {
    let object = v
        .as_object_mut()
        .ok_or_else(|| UpcastError::new("expected an object"))?;
    let sku = object
        .remove("sku")
        .ok_or_else(|| UpcastError::missing_field("sku"))?;
    object.insert("product".into(), sku);
    Ok(v)
}

fn rename_qty(mut v: Value) -> Result<Value, UpcastError> {
    let object = v
        .as_object_mut()
        .ok_or_else(|| UpcastError::new("expected an object"))?;
    let qty = object
        .remove("qty")
        .ok_or_else(|| UpcastError::missing_field("qty"))?;
    object.insert("quantity".into(), qty);
    object.insert("unit_price_cents".into(), json!(0));
    Ok(v)
}

/// The same history kept as types: v1 JSON -> v2 struct -> `From` -> v3 struct.
#[event(name = "ProductRemoved", version = 2, migrate(1 => rename_sku))]
#[derive(Debug, Clone)]
pub struct ProductRemovedV2 {
    pub product: String,
    pub qty: u32,
}

#[event(version = 3, upcast_from = ProductRemovedV2)]
#[derive(Debug, Clone)]
pub struct ProductRemoved {
    pub product: String,
    pub quantity: u32,
    pub unit_price_cents: u64,
}

impl From<ProductRemovedV2> for ProductRemoved {
    fn from(old: ProductRemovedV2) -> Self {
        ProductRemoved {
            product: old.product,
            quantity: old.qty,
            unit_price_cents: 0,
        }
    }
}

#[event]
#[derive(Debug, Clone)]
pub enum CartEvent {
    ProductAdded(ProductAdded),
    ProductRemoved(ProductRemoved),
}

fn decoding(c: &mut Criterion) {
    let current = br#"{"product":"Product 1","quantity":3,"unit_price_cents":1299}"#.to_vec();
    let v1 = br#"{"sku":"Product 1","qty":3}"#.to_vec();
    let mut group = c.benchmark_group("decode");
    let mut bench = |name: &str, event_type: &'static str, version: u32, payload: &[u8]| {
        assert!(matches!(
            CartEvent::decode(event_type, version, payload),
            Ok(Some(_))
        ));
        group.bench_function(name, |b| {
            b.iter(|| {
                CartEvent::decode(
                    black_box(event_type),
                    black_box(version),
                    black_box(payload),
                )
            })
        });
    };
    bench("current_version", "ProductAdded", 3, &current);
    bench("v1_json_chain", "ProductAdded", 1, &v1);
    bench("v1_typed_chain", "ProductRemoved", 1, &v1);
    group.finish();
}

criterion_group!(benches, dispatch, decoding);
criterion_main!(benches);
