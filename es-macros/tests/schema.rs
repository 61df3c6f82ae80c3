//! What the macros describe of a stored schema, and what invalidates a snapshot: the
//! fields of each event and of the event set (`Event::SCHEMA`, `EventSet::SCHEMA`), and a
//! snapshot fingerprint that changes with a `#[fingerprint]` handler's code and with the
//! event set's shapes, so that the repository rebuilds such a state from events.
// Each module is one release of the same code; not every release uses every item.
#![allow(dead_code)]

use es_core::prelude::*;
use es_core::schema::FieldSchema;
use std::sync::Arc;

mod shapes {
    use es_core::prelude::*;
    use std::collections::BTreeMap;

    /// Docs, derives and the order of named fields do not count.
    #[event(name = "OrderPlaced", version = 2, aliases = ["Ordered"], migrate(1 => super::same))]
    #[derive(Debug, Clone)]
    #[serde(rename_all = "camelCase")]
    pub struct OrderPlacedV2 {
        /// The lines.
        pub lines: BTreeMap<String, (u32, u64)>,
        #[serde(default, rename = "note")]
        pub r#comment: Option<String>,
        #[allow(clippy::pedantic)]
        pub at: [u8; 4],
    }

    #[event]
    pub struct Amount {
        pub cents: u64,
        #[serde(skip)]
        pub scratch: u8,
    }

    #[event]
    pub struct Ping {}

    #[event(ignore = ["OrderViewed", "OrderPrinted"])]
    pub enum OrderEvent {
        OrderPlacedV2(OrderPlacedV2),
        Amount(Amount),
        Ping(Ping),
    }
}

fn same(v: serde_json::Value) -> Result<serde_json::Value, UpcastError> {
    Ok(v)
}

/// The same struct as `shapes::OrderPlacedV2`, written differently.
mod reordered {
    use es_core::prelude::*;
    use std::collections::BTreeMap;

    #[event(name = "OrderPlaced", version = 2, aliases = ["Ordered"], migrate(1 => super::same))]
    #[serde(rename_all = "camelCase")]
    pub struct Renamed {
        pub at: [u8; 4],
        #[serde(default, rename = "note")]
        pub comment: Option<String>,
        pub lines: BTreeMap<String, (u32, u64)>,
    }
}

/// `shapes::OrderPlacedV2` with one field's type changed.
mod retyped {
    use es_core::prelude::*;
    use std::collections::BTreeMap;

    #[event(name = "OrderPlaced", version = 2, aliases = ["Ordered"], migrate(1 => super::same))]
    #[serde(rename_all = "camelCase")]
    pub struct OrderPlacedV2 {
        pub lines: BTreeMap<String, (u32, u32)>,
        #[serde(default, rename = "note")]
        pub comment: Option<String>,
        pub at: [u8; 4],
    }
}

#[test]
fn an_event_describes_its_stored_shape() {
    let schema = shapes::OrderPlacedV2::SCHEMA;
    assert_eq!(schema.name, "OrderPlaced");
    assert_eq!(schema.version, 2);
    assert_eq!(schema.aliases, ["Ordered"]);
    assert_eq!(schema.rust_type, "OrderPlacedV2");
    assert_eq!(schema.attributes, ["#[serde(rename_all = \"camelCase\")]"]);
    assert_eq!(
        schema.fields.unwrap(),
        [
            FieldSchema::new("at", "[u8; 4]", &[]),
            FieldSchema::new(
                "comment",
                "Option<String>",
                &["#[serde(default, rename = \"note\")]"]
            ),
            FieldSchema::new("lines", "BTreeMap<String, (u32, u64)>", &[]),
        ]
    );
    let amount: Vec<String> = shapes::Amount::SCHEMA
        .fields
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(amount, ["cents: u64", "#[serde(skip)] scratch: u8"]);
    assert_eq!(shapes::Ping::SCHEMA.fields, Some(&[][..]));
}

#[test]
fn the_fingerprint_follows_the_stored_shape_not_the_spelling() {
    let fingerprint = shapes::OrderPlacedV2::SCHEMA.fingerprint;
    assert_ne!(fingerprint, 0);
    assert_eq!(reordered::Renamed::SCHEMA.fingerprint, fingerprint);
    assert_ne!(retyped::OrderPlacedV2::SCHEMA.fingerprint, fingerprint);
}

#[test]
fn an_event_set_lists_its_events_and_ignored_names() {
    let set = shapes::OrderEvent::SCHEMA.expect("described by #[event]");
    assert_eq!(set.name, "OrderEvent");
    assert_eq!(set.ignored, ["OrderViewed", "OrderPrinted"]);
    let names: Vec<_> = set.events.iter().map(|e| (e.name, e.version)).collect();
    assert_eq!(names, [("OrderPlaced", 2), ("Amount", 1), ("Ping", 1)]);
    assert_eq!(set.event("Ordered").map(|e| e.name), Some("OrderPlaced"));
    assert_eq!(set.events[0], shapes::OrderPlacedV2::SCHEMA);
}

/// One release of an account aggregate: the same state, events and snapshot settings,
/// with the deposit handler's body given.
macro_rules! account {
    ($events:ident, $(#[$handler:meta])* |$state:ident, $e:ident| $deposit:expr) => {
        use es_core::prelude::*;
        use serde::{Deserialize, Serialize};

        pub use crate::$events::{AccountEvent, Deposited};

        #[derive(Debug, Default, Aggregate, Serialize, Deserialize)]
        #[aggregate(kind = "account", event = AccountEvent, snapshot_every = 10)]
        pub struct Account {
            pub balance: u64,
            /// Events folded since load (not in the snapshot): tells a snapshot load from
            /// a full replay.
            #[serde(skip)]
            #[aggregate(transient)]
            pub folded: u64,
        }

        $(#[$handler])*
        impl Apply<Deposited> for Account {
            fn apply(&mut self, $e: &Deposited) {
                let $state = self;
                $state.folded += 1;
                $deposit;
            }
        }
    };
}

mod events {
    use es_core::prelude::*;

    #[event]
    #[derive(Debug, Clone)]
    pub struct Deposited {
        pub amount: u64,
    }

    #[event]
    #[derive(Debug, Clone)]
    pub enum AccountEvent {
        Deposited(Deposited),
    }
}

/// The released code, its handler fingerprinted.
mod released {
    account!(
        events,
        #[fingerprint]
        |account, e| account.balance += e.amount
    );
}

/// The same code, reformatted (spacing and comments are not tokens).
mod reformatted {
    account!(
        events,
        #[fingerprint]
        |account, e| account.balance += e.amount /* same */
    );
}

/// Deposits now count in cents: old snapshots hold amounts in units.
mod changed {
    account!(
        events,
        #[fingerprint]
        |account, e| account.balance += e.amount * 100
    );
}

/// The released code and the changed code without `#[fingerprint]`: the derive cannot see
/// the change.
mod unmarked_released {
    account!(events, |account, e| account.balance += e.amount);
}
mod unmarked_changed {
    account!(events, |account, e| account.balance += e.amount * 100);
}

/// `Deposited` with a new field.
mod events_v2 {
    use es_core::prelude::*;

    #[event]
    #[derive(Debug, Clone)]
    pub struct Deposited {
        pub amount: u64,
        #[serde(default)]
        pub memo: String,
    }

    #[event]
    #[derive(Debug, Clone)]
    pub enum AccountEvent {
        Deposited(Deposited),
    }
}

/// The released code over the changed event.
mod event_changed {
    account!(
        events_v2,
        #[fingerprint]
        |account, e| account.balance += e.amount
    );
}

#[test]
fn fingerprint_hashes_the_handlers_code() {
    use es_core::Apply;
    let released = <released::Account as Apply<events::Deposited>>::FINGERPRINT;
    assert_ne!(released, 0);
    assert_eq!(
        <reformatted::Account as Apply<events::Deposited>>::FINGERPRINT,
        released
    );
    assert_ne!(
        <changed::Account as Apply<events::Deposited>>::FINGERPRINT,
        released
    );
    assert_eq!(
        <unmarked_released::Account as Apply<events::Deposited>>::FINGERPRINT,
        0
    );
    // The handler's tokens name the event type, not its definition.
    assert_eq!(
        <event_changed::Account as Apply<events_v2::Deposited>>::FINGERPRINT,
        released
    );
}

#[test]
fn the_snapshot_fingerprint_covers_state_handlers_and_event_shapes() {
    let released = released::Account::snapshot_fingerprint();
    assert_eq!(reformatted::Account::snapshot_fingerprint(), released);
    assert_ne!(changed::Account::snapshot_fingerprint(), released);
    assert_ne!(unmarked_released::Account::snapshot_fingerprint(), released);
    assert_ne!(event_changed::Account::snapshot_fingerprint(), released);
    // What the derive cannot see: handlers without `#[fingerprint]`.
    assert_eq!(
        unmarked_changed::Account::snapshot_fingerprint(),
        unmarked_released::Account::snapshot_fingerprint()
    );
}

/// 25 deposits of 1 by the released code: snapshots at 10 and 20.
fn store_with_history<A: ExecuteDeposit>() -> Arc<MemoryStore> {
    let store = Arc::new(MemoryStore::new());
    let accounts = Repository::<A, _>::new(Arc::clone(&store));
    for _ in 0..25 {
        A::deposit_one(&accounts);
    }
    store
}

trait ExecuteDeposit: Aggregate + Sized {
    fn deposit_one(repository: &Repository<Self, Arc<MemoryStore>>);
}

macro_rules! execute_deposit {
    ($($module:ident),*) => {$(
        impl ExecuteDeposit for $module::Account {
            fn deposit_one(repository: &Repository<Self, Arc<MemoryStore>>) {
                repository
                    .execute("1", |_| Ok::<_, String>($module::Deposited { amount: 1 }))
                    .unwrap();
            }
        }
    )*};
}
execute_deposit!(released, unmarked_released);

#[test]
fn a_changed_handler_invalidates_old_snapshots() {
    let store = store_with_history::<released::Account>();

    // The same code loads from the snapshot at 20 and folds 5 events.
    let same = Repository::<reformatted::Account, _>::new(Arc::clone(&store))
        .load("1")
        .unwrap();
    assert_eq!((same.balance, same.folded, same.version), (25, 5, 25));

    // The changed handler ignores the snapshot and replays all 25 events in cents.
    let changed = Repository::<changed::Account, _>::new(Arc::clone(&store))
        .load("1")
        .unwrap();
    assert_eq!((changed.balance, changed.folded), (2500, 25));

    // So does a change of an event's shape.
    let event_changed = Repository::<event_changed::Account, _>::new(store)
        .load("1")
        .unwrap();
    assert_eq!((event_changed.balance, event_changed.folded), (25, 25));
}

#[test]
fn without_fingerprint_a_changed_handler_reuses_stale_snapshots() {
    let store = store_with_history::<unmarked_released::Account>();
    let stale = Repository::<unmarked_changed::Account, _>::new(store)
        .load("1")
        .unwrap();
    // 20 from the snapshot (units) + 5 events in cents: the mix that `#[fingerprint]`
    // (or a new `snapshot_version`) prevents.
    assert_eq!((stale.balance, stale.folded), (20 + 500, 5));
}

/// A stored snapshot is only reused while the fingerprint of the code that wrote it keeps
/// its value, so the text the macros hash and the hash itself must not change between
/// releases: these are the values of the released code above.
#[test]
fn fingerprints_keep_their_values_between_releases() {
    use es_core::Apply;
    assert_eq!(
        format!(
            "{:#018x}",
            <released::Account as Apply<events::Deposited>>::FINGERPRINT
        ),
        "0x668473047b269591"
    );
    assert_eq!(
        format!("{:#018x}", released::Account::snapshot_fingerprint()),
        "0xc990a41006ea5e85"
    );
}
