//! Generated code is quiet: every attribute of both macros, used in a crate that denies
//! warnings and clippy's default and pedantic groups (CI also runs clippy on this file).
#![deny(
    warnings,
    clippy::all,
    clippy::pedantic,
    rust_2018_idioms,
    unused_qualifications,
    unreachable_pub,
    trivial_casts,
    trivial_numeric_casts,
    unused_lifetimes,
    single_use_lifetimes,
    variant_size_differences
)]

mod domain {
    use es_core::prelude::*;
    use serde_json::Value;

    #[event]
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(crate) struct Opened {
        pub(crate) owner: String,
    }

    #[event(name = "Deposited", version = 2, migrate(1 => to_cents))]
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(crate) struct DepositedV2 {
        pub(crate) cents: u64,
    }

    pub(crate) fn to_cents(mut v: Value) -> Result<Value, UpcastError> {
        let units = v
            .as_object_mut()
            .and_then(|o| o.remove("amount"))
            .and_then(|a| a.as_u64())
            .ok_or_else(|| UpcastError::missing_field("amount"))?;
        Ok(serde_json::json!({ "cents": units * 100 }))
    }

    #[event(
        name = "Deposited",
        version = 3,
        aliases = ["MoneyIn"],
        upcast_from = DepositedV2
    )]
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(crate) struct Deposited {
        pub(crate) cents: u64,
        pub(crate) memo: String,
    }

    impl From<DepositedV2> for Deposited {
        fn from(old: DepositedV2) -> Self {
            Deposited {
                cents: old.cents,
                memo: String::new(),
            }
        }
    }

    #[event(version = 2, migrate(1 => |v| Ok(v)))]
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(crate) struct Withdrawn {
        pub(crate) cents: u64,
    }

    #[event]
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(crate) struct Closed {}

    #[event(ignore = ["Audited", "Viewed"])]
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(crate) enum AccountEvent {
        Opened(Opened),
        Deposited(Deposited),
        Withdrawn(Withdrawn),
        Closed(Closed),
    }

    #[derive(Debug, Default, Aggregate, serde::Serialize, serde::Deserialize)]
    #[aggregate(kind = "account", event = AccountEvent, snapshot_every = 100, snapshot_version = 2)]
    pub(crate) struct Account {
        pub(crate) balance: u64,
        pub(crate) open: bool,
    }

    impl Apply<Opened> for Account {
        fn apply(&mut self, _: &Opened) {
            self.open = true;
        }
    }

    #[fingerprint]
    impl Apply<Deposited> for Account {
        fn apply(&mut self, e: &Deposited) {
            self.balance += e.cents;
        }
    }

    impl Apply<Withdrawn> for Account {
        fn apply(&mut self, e: &Withdrawn) {
            self.balance -= e.cents;
        }
    }

    impl Apply<Closed> for Account {
        fn apply(&mut self, _: &Closed) {
            self.open = false;
        }
    }

    impl Account {
        pub(crate) fn deposit(&self, cents: u64) -> Result<Deposited, String> {
            if self.open {
                Ok(Deposited {
                    cents,
                    memo: String::new(),
                })
            } else {
                Err("closed".to_owned())
            }
        }
    }
}

use domain::{Account, AccountEvent, Deposited, Opened};
use es_core::{Aggregate, EventSet, MemoryStore, Repository};

#[test]
fn every_feature_compiles_quietly_and_works() {
    let accounts = Repository::<Account, _>::new(MemoryStore::new());
    accounts
        .execute("1", |_| Ok::<_, String>(Opened { owner: "a".into() }))
        .unwrap();
    accounts.execute("1", |a| a.deposit(5)).unwrap();
    assert_eq!(accounts.load("1").unwrap().balance, 5);
    assert_eq!(
        Account::snapshot_policy().map(|p| p.snapshot_version),
        Some(2)
    );
    let old = AccountEvent::decode("MoneyIn", 1, br#"{"amount":2}"#).unwrap();
    assert_eq!(
        old,
        Some(AccountEvent::Deposited(Deposited {
            cents: 200,
            memo: String::new()
        }))
    );
    assert_eq!(AccountEvent::decode("Viewed", 1, b"{}").unwrap(), None);
    let schema = AccountEvent::SCHEMA.unwrap();
    assert_eq!(schema.events.len(), 4);
    assert_ne!(Account::snapshot_fingerprint(), 0);
}
