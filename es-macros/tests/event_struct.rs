//! `#[event]` on structs: names, versions, serde through es-core, and both kinds of upcast
//! chain decoding every stored version into the current type.

use es_core::event;
use es_core::event::DecodeError;
use es_core::{Event, UpcastError};
use serde_json::{Value, json};

#[event]
#[derive(Debug, Clone, PartialEq)]
struct CartCreated {
    user_id: String,
}

#[event(name = "cart.checked_out", aliases = ["CheckedOut", "cart.purchased"])]
#[derive(Debug, Clone, PartialEq)]
struct CheckedOut {
    total_cents: u64,
}

/// Field attributes of serde keep working under `#[event]`.
#[event]
#[derive(Debug, Clone, PartialEq)]
struct Tagged {
    #[serde(rename = "t")]
    tag: String,
    #[serde(default)]
    note: Option<String>,
}

/// An event without data: braces, so that it is stored as an object a later version can
/// extend (a unit struct is refused).
#[event]
#[derive(Debug, Clone, PartialEq)]
struct CartClosed {}

// ---- JSON chain: v1 {"sku"} -> v2 {"product"} -> v3 {"product", "quantity"} ----

#[event(version = 3, migrate(2 => add_quantity, 1 => rename_sku))]
#[derive(Debug, Clone, PartialEq)]
struct ProductAdded {
    product: String,
    quantity: u32,
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

fn add_quantity(mut v: Value) -> Result<Value, UpcastError> {
    let object = v
        .as_object_mut()
        .ok_or_else(|| UpcastError::new("expected an object"))?;
    object.insert("quantity".into(), json!(1));
    Ok(v)
}

// ---- Typed chain: v1 JSON -> v2 struct -> From -> v3 struct -> From -> v4 struct ----

#[event(name = "Deposited", version = 2, migrate(1 => cents_from_units))]
#[derive(Debug, Clone, PartialEq)]
struct DepositedV2 {
    amount_cents: u64,
}

fn cents_from_units(v: Value) -> Result<Value, UpcastError> {
    let units = v["amount"]
        .as_u64()
        .ok_or_else(|| UpcastError::missing_field("amount"))?;
    if units > 1_000_000 {
        return Err(UpcastError::new(format!("implausible amount {units}")));
    }
    Ok(json!({ "amount_cents": units * 100 }))
}

#[event(name = "Deposited", version = 3, upcast_from = DepositedV2)]
#[derive(Debug, Clone, PartialEq)]
struct DepositedV3 {
    amount_cents: u64,
    currency: String,
}

impl From<DepositedV2> for DepositedV3 {
    fn from(old: DepositedV2) -> Self {
        DepositedV3 {
            amount_cents: old.amount_cents,
            currency: "EUR".into(),
        }
    }
}

/// Renamed at version 4: the old name is an alias, and the typed step accepts it.
#[event(name = "MoneyDeposited", version = 4, aliases = ["Deposited"], upcast_from = DepositedV3)]
#[derive(Debug, Clone, PartialEq)]
struct MoneyDeposited {
    cents: u64,
    currency: String,
    memo: Option<String>,
}

impl From<DepositedV3> for MoneyDeposited {
    fn from(old: DepositedV3) -> Self {
        MoneyDeposited {
            cents: old.amount_cents,
            currency: old.currency,
            memo: None,
        }
    }
}

#[event(name = "Deposited", version = 2, migrate(1 => |v| Ok(v)))]
#[derive(Debug, Clone, PartialEq)]
struct WithClosure {
    amount: u64,
}

fn round_trip<E: Event + PartialEq + std::fmt::Debug>(event: &E) {
    let bytes = serde_json::to_vec(event).unwrap();
    let back = E::decode_stored(E::VERSION, &bytes).unwrap();
    assert_eq!(&back, event);
}

#[test]
fn names_and_versions_default_to_the_rust_name_and_one() {
    assert_eq!(CartCreated::NAME, "CartCreated");
    assert_eq!(CartCreated::VERSION, 1);
    assert!(CartCreated::ALIASES.is_empty());
    assert_eq!(CheckedOut::NAME, "cart.checked_out");
    assert_eq!(CheckedOut::ALIASES, &["CheckedOut", "cart.purchased"]);
    assert_eq!(ProductAdded::VERSION, 3);
    assert_eq!(
        (MoneyDeposited::NAME, MoneyDeposited::VERSION),
        ("MoneyDeposited", 4)
    );
}

#[test]
fn current_versions_round_trip() {
    round_trip(&CartCreated {
        user_id: "u1".into(),
    });
    round_trip(&CheckedOut { total_cents: 500 });
    round_trip(&Tagged {
        tag: "x".into(),
        note: Some("n".into()),
    });
    round_trip(&CartClosed {});
    round_trip(&ProductAdded {
        product: "tea".into(),
        quantity: 2,
    });
    round_trip(&MoneyDeposited {
        cents: 1,
        currency: "EUR".into(),
        memo: Some("rent".into()),
    });
}

#[test]
fn an_event_without_fields_is_stored_as_an_empty_object() {
    assert_eq!(serde_json::to_vec(&CartClosed {}).unwrap(), b"{}");
    assert_eq!(CartClosed::decode_stored(1, b"{}").unwrap(), CartClosed {});
}

#[test]
fn serde_field_attributes_apply() {
    let bytes = serde_json::to_vec(&Tagged {
        tag: "x".into(),
        note: None,
    })
    .unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&bytes).unwrap(),
        json!({"t": "x", "note": null})
    );
    let decoded = Tagged::decode_stored(1, br#"{"t":"y"}"#).unwrap();
    assert_eq!(decoded.note, None);
}

#[test]
fn json_chain_upcasts_every_older_version() {
    let want = ProductAdded {
        product: "tea".into(),
        quantity: 1,
    };
    assert_eq!(
        ProductAdded::decode_stored(1, br#"{"sku":"tea"}"#).unwrap(),
        want
    );
    assert_eq!(
        ProductAdded::decode_stored(2, br#"{"product":"tea"}"#).unwrap(),
        want
    );
    assert_eq!(
        ProductAdded::decode_stored(3, br#"{"product":"tea","quantity":1}"#).unwrap(),
        want
    );
}

#[test]
fn typed_chain_composes_with_the_json_chain_below_it() {
    let want = MoneyDeposited {
        cents: 300,
        currency: "EUR".into(),
        memo: None,
    };
    assert_eq!(
        MoneyDeposited::decode_stored(1, br#"{"amount":3}"#).unwrap(),
        want
    );
    assert_eq!(
        MoneyDeposited::decode_stored(2, br#"{"amount_cents":300}"#).unwrap(),
        want
    );
    assert_eq!(
        MoneyDeposited::decode_stored(3, br#"{"amount_cents":300,"currency":"EUR"}"#).unwrap(),
        want
    );
    assert_eq!(
        DepositedV3::decode_stored(1, br#"{"amount":3}"#).unwrap(),
        DepositedV3 {
            amount_cents: 300,
            currency: "EUR".into()
        }
    );
}

#[test]
fn a_closure_can_be_a_step() {
    assert_eq!(
        WithClosure::decode_stored(1, br#"{"amount":3}"#).unwrap(),
        WithClosure { amount: 3 }
    );
}

#[test]
fn a_failing_step_is_an_upcast_error_naming_the_step() {
    let err = ProductAdded::decode_stored(1, br#"{"name":"tea"}"#).unwrap_err();
    let DecodeError::Upcast {
        event_type,
        version,
        target_version,
        source,
    } = &err
    else {
        panic!("expected an upcast error, got {err:?}");
    };
    assert_eq!(
        (event_type.as_str(), *version, *target_version),
        ("ProductAdded", 1, 3)
    );
    assert_eq!(source.step(), Some(1));
    assert_eq!(source.message(), "missing field `sku`");
    assert_eq!(
        err.to_string(),
        "cannot upcast `ProductAdded` from version 1 to 3: migration 1 => 2: missing field `sku`"
    );
}

#[test]
fn a_failing_step_deep_in_a_typed_chain_keeps_its_step() {
    let err = MoneyDeposited::decode_stored(1, br#"{"amount":5000000}"#).unwrap_err();
    let DecodeError::Upcast {
        event_type,
        version,
        target_version,
        source,
    } = &err
    else {
        panic!("expected an upcast error, got {err:?}");
    };
    assert_eq!(
        (event_type.as_str(), *version, *target_version),
        ("MoneyDeposited", 1, 4)
    );
    assert_eq!(source.step(), Some(1));
    assert!(source.message().contains("implausible amount"), "{source}");
}

#[test]
fn a_migrated_payload_that_does_not_fit_is_an_upcast_error() {
    let err = ProductAdded::decode_stored(2, br#"{"product":7}"#).unwrap_err();
    assert!(
        matches!(&err, DecodeError::Upcast { version: 2, .. }),
        "{err:?}"
    );
}

#[test]
fn future_and_zero_versions_are_refused() {
    let err = ProductAdded::decode_stored(4, br#"{}"#).unwrap_err();
    assert_eq!(
        err,
        DecodeError::FutureVersion {
            event_type: "ProductAdded".into(),
            version: 4,
            supported: 3
        }
    );
    let err = CartCreated::decode_stored(2, br#"{"user_id":"u"}"#).unwrap_err();
    assert!(
        matches!(err, DecodeError::FutureVersion { supported: 1, .. }),
        "{err:?}"
    );
    let err = CartCreated::decode_stored(0, br#"{"user_id":"u"}"#).unwrap_err();
    assert!(
        matches!(err, DecodeError::InvalidVersion { version: 0, .. }),
        "{err:?}"
    );
}

#[test]
fn a_current_payload_that_does_not_fit_is_a_payload_error() {
    let err = CartCreated::decode_stored(1, br#"{"user":"u"}"#).unwrap_err();
    assert!(
        matches!(&err, DecodeError::Payload { event_type, version: 1, .. } if event_type == "CartCreated"),
        "{err:?}"
    );
}

/// A payload of an `#[event]` struct's current version is a JSON object of fields. serde's
/// derive also reads an array by the order the fields are declared in, which the schema
/// check leaves free to change: an array, or any other value, is a payload error, never a
/// decode by position.
#[test]
fn a_current_payload_that_is_not_an_object_is_refused() {
    for payload in [
        &br#"["u-1"]"#[..],
        b" [\"u-1\"]",
        b"5",
        b"null",
        b"\"u\"",
        b"true",
    ] {
        let err = CartCreated::decode_stored(1, payload).unwrap_err();
        assert!(
            matches!(&err, DecodeError::Payload { event_type, version: 1, .. } if event_type == "CartCreated"),
            "{err:?}"
        );
        assert!(err.to_string().contains("a JSON object"), "{err}");
        let value: Value = serde_json::from_slice(payload).unwrap();
        let err = CartCreated::from_value(1, value).unwrap_err();
        assert!(matches!(&err, DecodeError::Payload { .. }), "{err:?}");
    }
    // through a typed step: the older type's current version is refused the same way
    let err = MoneyDeposited::decode_stored(2, br#"[500]"#).unwrap_err();
    assert!(err.to_string().contains("a JSON object"), "{err}");
    // an empty object is an object
    assert!(CartClosed::decode_stored(1, b" {} ").is_ok());
    // not JSON at all stays a parse error
    let err = CartCreated::decode_stored(1, b"[1,").unwrap_err();
    assert!(matches!(&err, DecodeError::Payload { .. }), "{err:?}");
}

/// An older version's payload reaches the steps as it was stored, whatever it is (a bare
/// value written by an earlier, hand-written version, wrapped by a step); what the last
/// step returns must be an object of fields; a step that panics on a value it did not
/// expect (`v["n"] = ..` on an array) is that step's error, not a panic of the load.
#[test]
fn steps_take_any_stored_value_and_their_panics_are_their_errors() {
    #[event(name = "Wrapped", version = 2, migrate(1 => |v| Ok(json!({ "amount": v }))))]
    #[derive(Debug)]
    struct Wrapped {
        amount: u64,
    }
    assert_eq!(Wrapped::decode_stored(1, b"5").unwrap().amount, 5);

    #[event(name = "Steps", version = 3, migrate(1 => |_| Ok(json!([1])), 2 => set_n))]
    #[derive(Debug)]
    struct Steps {
        n: u32,
    }
    fn set_n(mut v: Value) -> Result<Value, UpcastError> {
        v["n"] = json!(1);
        Ok(v)
    }
    let err = Steps::decode_stored(1, b"{}").unwrap_err();
    match &err {
        DecodeError::Upcast { source, .. } => assert_eq!(source.step(), Some(2), "{err}"),
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("panicked"), "{err}");
    assert_eq!(Steps::decode_stored(2, b"{}").unwrap().n, 1);

    #[event(name = "Listed", version = 2, migrate(1 => |_| Ok(json!(["tea", 3]))))]
    #[derive(Debug)]
    struct Listed {
        product: String,
        quantity: u32,
    }
    let err = Listed::decode_stored(1, b"{}").unwrap_err();
    assert!(err.to_string().contains("no JSON object"), "{err}");
    // JSON steps that expect an object say so in their own errors
    for version in [1, 2] {
        let err = ProductAdded::decode_stored(version, br#"["tea", 3]"#).unwrap_err();
        assert!(matches!(&err, DecodeError::Upcast { .. }), "{err:?}");
    }
}

/// A hand-written event whose payload is no object (a bare string) is read back as before:
/// the object rule is `#[event]`'s.
#[test]
fn a_hand_written_event_may_store_a_bare_value() {
    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Renamed(String);
    impl Event for Renamed {
        const NAME: &'static str = "Renamed";
        const VERSION: u32 = 1;
    }
    let encoded = Renamed("x".into()).encode_stored().unwrap();
    assert_eq!(encoded.payload, br#""x""#);
    assert_eq!(
        Renamed::decode_stored(1, &encoded.payload).unwrap(),
        Renamed("x".into())
    );
}

// ---- What an older version carries: typed steps read the stored bytes, JSON steps a Value ----

/// The largest integers serde reads exactly, stored before version 2.
#[event(name = "SupplyMinted")]
#[derive(Debug, Clone, PartialEq)]
struct SupplyMintedV1 {
    supply: u128,
}

/// Version 2 upcasts version 1 with a typed step that changes nothing.
#[event(version = 2, upcast_from = SupplyMintedV1)]
#[derive(Debug, Clone, PartialEq)]
struct SupplyMinted {
    supply: u128,
}

impl From<SupplyMintedV1> for SupplyMinted {
    fn from(old: SupplyMintedV1) -> Self {
        SupplyMinted { supply: old.supply }
    }
}

/// The same payload brought up to date by a JSON step instead.
#[event(name = "SupplyMinted", version = 2, migrate(1 => |v| Ok(v)))]
#[derive(Debug, Clone, PartialEq)]
struct SupplyMintedByJson {
    supply: u128,
}

/// A JSON step into a float field: the integer becomes its nearest float, as a direct
/// parse of the field makes it.
#[event(name = "SupplyMinted", version = 2, migrate(1 => |v| Ok(v)))]
#[derive(Debug, Clone, PartialEq)]
struct SupplyMeasured {
    supply: f64,
}

/// Raw JSON kept as it was written, stored before version 2.
#[event(name = "Annotated")]
struct AnnotatedV1 {
    note: Box<serde_json::value::RawValue>,
}

#[event(version = 2, upcast_from = AnnotatedV1)]
struct Annotated {
    note: Box<serde_json::value::RawValue>,
}

impl From<AnnotatedV1> for Annotated {
    fn from(old: AnnotatedV1) -> Self {
        Annotated { note: old.note }
    }
}

const U128_MAX_PAYLOAD: &[u8] = br#"{"supply":340282366920938463463374607431768211455}"#;

#[test]
fn a_typed_step_reads_an_integer_beyond_64_bits_exactly() {
    assert_eq!(
        SupplyMinted::decode_stored(1, U128_MAX_PAYLOAD).unwrap(),
        SupplyMinted { supply: u128::MAX }
    );
}

#[test]
fn a_json_step_refuses_an_integer_beyond_64_bits_instead_of_reading_a_float() {
    {
        let err = SupplyMintedByJson::decode_stored(1, U128_MAX_PAYLOAD).unwrap_err();
        let DecodeError::Upcast {
            event_type,
            version,
            target_version,
            source,
        } = &err
        else {
            panic!("expected an upcast error, got {err:?}");
        };
        assert_eq!(
            (event_type.as_str(), *version, *target_version),
            ("SupplyMinted", 1, 2)
        );
        assert!(
            source
                .message()
                .contains("340282366920938463463374607431768211455")
                && source.message().contains("64-bit"),
            "{err}"
        );
    }
    // a float field takes the float a direct parse gives it (an integer written by a
    // producer of floats, say), through a JSON step as at the current version
    assert_eq!(
        SupplyMeasured::decode_stored(1, U128_MAX_PAYLOAD).unwrap(),
        SupplyMeasured::decode_stored(2, U128_MAX_PAYLOAD).unwrap()
    );
    // within 64 bits, a JSON step reads integers exactly
    assert_eq!(
        SupplyMintedByJson::decode_stored(1, br#"{"supply":18446744073709551615}"#)
            .unwrap()
            .supply,
        u128::from(u64::MAX)
    );
}

#[test]
fn a_typed_step_refuses_duplicate_keys_as_the_current_version_does() {
    let payload = br#"{"supply":1,"supply":2}"#;
    assert!(SupplyMinted::decode_stored(2, payload).is_err());
    let err = SupplyMinted::decode_stored(1, payload).unwrap_err();
    assert!(
        err.to_string().contains("duplicate field `supply`"),
        "{err}"
    );
}

#[test]
fn a_typed_step_keeps_raw_json_as_it_was_stored() {
    let stored = br#"{"note":{"z": 1,  "a": [1.50, 2]}}"#;
    let decoded = Annotated::decode_stored(1, stored).unwrap();
    assert_eq!(decoded.note.get(), r#"{"z": 1,  "a": [1.50, 2]}"#);
}
