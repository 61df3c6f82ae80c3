//! Generated code names everything by absolute path: a module that shadows the prelude
//! and es-core's trait names, and declares items named like the generated locals, still
//! compiles and works.
#![allow(dead_code, non_camel_case_types, non_upper_case_globals)]

mod shadowed {
    use es_core::{UpcastError, event};

    // Shadow the prelude and es-core's names.
    pub struct Option;
    pub struct Result;
    pub struct Vec;
    pub struct String;
    pub struct Box;
    pub trait From {}
    pub trait Into {}
    pub trait Event {}
    pub trait EventSet {}
    pub trait Aggregate {}
    pub trait Apply {}
    pub trait IntoEvents {}
    pub mod serde {}
    pub mod serde_json {}
    pub mod core {}
    pub mod std {}
    // Shadow a primitive type: generated code names primitives as `::core::primitive::*`.
    // (`u32` only: serde's own derive names some primitives, such as `u64`, bare.)
    pub type u32 = i64;
    // Items named like the parameters and bindings of the generated code.
    pub const event: u8 = 0;
    pub const event_type: u8 = 0;
    pub const version: u8 = 0;
    pub const payload: u8 = 0;
    pub const out: u8 = 0;
    pub const aggregate: u8 = 0;
    pub const steps: u8 = 0;
    pub const e: u8 = 0;
    // Items named like the generated constants.
    pub const SCHEMA: u8 = 0;
    pub const FINGERPRINT: u8 = 0;
    pub const __ES_FIELDS: u8 = 0;
    pub const __ES_EVENTS: u8 = 0;
    pub const __ES_FINGERPRINT: u8 = 0;
    pub mod schema {}

    #[event(version = 2, migrate(1 => to_v2))]
    #[derive(Debug, Clone, PartialEq)]
    pub struct Opened {
        pub owner: ::std::string::String,
    }

    pub fn to_v2(
        v: ::serde_json::Value,
    ) -> ::core::result::Result<::serde_json::Value, UpcastError> {
        ::core::result::Result::Ok(v)
    }

    #[event(name = "Opened", version = 3, upcast_from = Opened)]
    #[derive(Debug, Clone, PartialEq)]
    pub struct OpenedV3 {
        pub owner: ::std::string::String,
    }

    impl ::core::convert::From<Opened> for OpenedV3 {
        fn from(old: Opened) -> Self {
            OpenedV3 { owner: old.owner }
        }
    }

    #[event(ignore = ["Old"])]
    #[derive(Debug, Clone, PartialEq)]
    pub enum AccountEvent {
        OpenedV3(OpenedV3),
    }

    #[derive(Debug, Default, es_core::Aggregate, ::serde::Serialize, ::serde::Deserialize)]
    #[aggregate(kind = "account", event = AccountEvent, snapshot_every = 10)]
    pub struct Account {
        pub owner: ::core::option::Option<::std::string::String>,
    }

    #[es_core::fingerprint]
    impl es_core::Apply<OpenedV3> for Account {
        fn apply(&mut self, opened: &OpenedV3) {
            self.owner = ::core::option::Option::Some(opened.owner.clone());
        }
    }
}

use es_core::{Aggregate, EventSet};
use shadowed::{Account, AccountEvent, OpenedV3};

#[test]
fn generated_code_ignores_shadowed_names() {
    let decoded = AccountEvent::decode("Opened", 1, br#"{"owner":"ann"}"#)
        .unwrap()
        .unwrap();
    assert_eq!(
        decoded,
        AccountEvent::OpenedV3(OpenedV3 {
            owner: "ann".into()
        })
    );
    let mut account = Account::default();
    account.apply_event(&decoded);
    assert_eq!(account.owner.as_deref(), Some("ann"));
    assert_eq!(AccountEvent::decode("Old", 1, b"{}").unwrap(), None);
    assert_eq!(AccountEvent::SCHEMA.unwrap().events[0].name, "Opened");
    assert_ne!(Account::snapshot_fingerprint(), 0);
}
