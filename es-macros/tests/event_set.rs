//! `#[event]` on enums: encoding, decoding by name and alias through the upcast chains,
//! ignored and unknown types, and the conversions that let commands return structs.

use es_core::event::DecodeError;
use es_core::{Event, EventSet, IntoEvents, UpcastError, event};
use serde_json::{Value, json};

#[event]
#[derive(Debug, Clone, PartialEq)]
pub struct CartCreated {
    pub user_id: String,
}

/// Stored as "ItemAdded" v1 `{"sku"}` before the rename and version 2.
#[event(version = 2, aliases = ["ItemAdded"], migrate(1 => rename_sku))]
#[derive(Debug, Clone, PartialEq)]
pub struct ProductAdded {
    pub product: String,
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

#[event(name = "ProductRemoved", version = 2, migrate(1 => |v| Ok(v)))]
#[derive(Debug, Clone, PartialEq)]
pub struct ProductRemovedV2 {
    pub product: String,
}

#[event(version = 3, upcast_from = ProductRemovedV2)]
#[derive(Debug, Clone, PartialEq)]
pub struct ProductRemoved {
    pub product: String,
    pub all: bool,
}

impl From<ProductRemovedV2> for ProductRemoved {
    fn from(old: ProductRemovedV2) -> Self {
        ProductRemoved {
            product: old.product,
            all: true,
        }
    }
}

#[event(ignore = ["CartViewed", "CartShared"])]
#[derive(Debug, Clone, PartialEq)]
pub enum CartEvent {
    CartCreated(CartCreated),
    ProductAdded(ProductAdded),
    ProductRemoved(ProductRemoved),
}

fn decode(
    event_type: &str,
    version: u32,
    payload: Value,
) -> Result<Option<CartEvent>, DecodeError> {
    CartEvent::decode(event_type, version, payload.to_string().as_bytes())
}

#[test]
fn event_types_list_current_names_in_order() {
    assert_eq!(
        CartEvent::EVENT_TYPES,
        &["CartCreated", "ProductAdded", "ProductRemoved"]
    );
}

#[test]
fn every_variant_round_trips() {
    let events = [
        CartEvent::from(CartCreated {
            user_id: "u".into(),
        }),
        CartEvent::from(ProductAdded {
            product: "tea".into(),
        }),
        CartEvent::from(ProductRemoved {
            product: "tea".into(),
            all: false,
        }),
    ];
    for event in events {
        let encoded = event.encode().unwrap();
        assert_eq!(encoded.event_type, event.event_type());
        assert_eq!(encoded.schema_version, event.schema_version());
        let decoded =
            CartEvent::decode(encoded.event_type, encoded.schema_version, &encoded.payload)
                .unwrap();
        assert_eq!(decoded, Some(event));
    }
}

#[test]
fn encoding_writes_the_current_name_and_version() {
    let encoded = CartEvent::from(ProductRemoved {
        product: "tea".into(),
        all: true,
    })
    .encode()
    .unwrap();
    assert_eq!(encoded.event_type, "ProductRemoved");
    assert_eq!(encoded.schema_version, 3);
    assert_eq!(
        serde_json::from_slice::<Value>(&encoded.payload).unwrap(),
        json!({"product": "tea", "all": true})
    );
}

#[test]
fn old_versions_decode_through_both_kinds_of_chain() {
    let added = Some(CartEvent::ProductAdded(ProductAdded {
        product: "tea".into(),
    }));
    assert_eq!(
        decode("ProductAdded", 1, json!({"sku": "tea"})),
        Ok(added.clone())
    );
    assert_eq!(
        decode("ProductAdded", 2, json!({"product": "tea"})),
        Ok(added)
    );

    let removed = Some(CartEvent::ProductRemoved(ProductRemoved {
        product: "tea".into(),
        all: true,
    }));
    assert_eq!(
        decode("ProductRemoved", 1, json!({"product": "tea"})),
        Ok(removed.clone())
    );
    assert_eq!(
        decode("ProductRemoved", 2, json!({"product": "tea"})),
        Ok(removed)
    );
}

#[test]
fn aliases_decode_into_the_renamed_event() {
    let added = Some(CartEvent::ProductAdded(ProductAdded {
        product: "tea".into(),
    }));
    assert_eq!(decode("ItemAdded", 1, json!({"sku": "tea"})), Ok(added));
}

#[test]
fn ignored_types_decode_to_none_at_any_version() {
    assert_eq!(decode("CartViewed", 1, json!({})), Ok(None));
    assert_eq!(decode("CartShared", 9, json!(null)), Ok(None));
}

#[test]
fn unknown_types_are_an_error_naming_type_and_version() {
    let err = decode("CartExploded", 2, json!({})).unwrap_err();
    assert_eq!(
        err,
        DecodeError::UnknownType {
            event_type: "CartExploded".into(),
            version: 2
        }
    );
    assert_eq!(
        err.to_string(),
        "unknown event type `CartExploded` (schema version 2) for this event set"
    );
    // Names are case-sensitive.
    assert!(decode("cartcreated", 1, json!({"user_id": "u"})).is_err());
}

#[test]
fn future_versions_and_failing_migrations_are_typed_errors() {
    assert_eq!(
        decode("CartCreated", 2, json!({"user_id": "u"})),
        Err(DecodeError::FutureVersion {
            event_type: "CartCreated".into(),
            version: 2,
            supported: 1
        })
    );
    let err = decode("ItemAdded", 1, json!({"name": "tea"})).unwrap_err();
    assert!(
        matches!(&err, DecodeError::Upcast { event_type, version: 1, target_version: 2, source }
            if event_type == "ProductAdded" && source.step() == Some(1)),
        "{err:?}"
    );
}

#[test]
fn structs_sets_and_collections_convert_into_events() {
    let mut out: Vec<CartEvent> = Vec::new();
    CartCreated {
        user_id: "u".into(),
    }
    .into_events(&mut out);
    CartEvent::ProductAdded(ProductAdded {
        product: "a".into(),
    })
    .into_events(&mut out);
    (
        ProductAdded {
            product: "b".into(),
        },
        vec![ProductRemoved {
            product: "a".into(),
            all: true,
        }],
    )
        .into_events(&mut out);
    None::<CartCreated>.into_events(&mut out);
    let types: Vec<_> = out.iter().map(|e| e.event_type()).collect();
    assert_eq!(
        types,
        [
            "CartCreated",
            "ProductAdded",
            "ProductAdded",
            "ProductRemoved"
        ]
    );
}

#[test]
fn variant_structs_keep_their_own_event_impls() {
    assert_eq!(ProductRemoved::NAME, "ProductRemoved");
    assert_eq!(ProductRemovedV2::VERSION, 2);
}

/// Variant names are Rust-only: a set stores and decodes each event under its struct's
/// event name, so renaming a variant changes nothing in the store or the catalogue.
mod variant_named_apart {
    use es_core::event;

    #[event(name = "ProductAdded")]
    #[derive(Debug, Clone, PartialEq)]
    pub struct ProductAddedV1 {
        pub product: String,
    }

    #[event]
    #[derive(Debug, Clone, PartialEq)]
    pub enum CartEvent {
        Added(ProductAddedV1),
    }

    /// The same set before its variant was renamed.
    pub mod before {
        use es_core::event;

        #[event]
        pub enum CartEvent {
            ProductAdded(super::ProductAddedV1),
        }
    }
}

#[test]
fn a_variant_named_apart_from_its_event_is_stored_under_the_event_name() {
    use variant_named_apart::{CartEvent, ProductAddedV1, before};
    let added = CartEvent::Added(ProductAddedV1 {
        product: "tea".into(),
    });
    assert_eq!(CartEvent::EVENT_TYPES, ["ProductAdded"]);
    let encoded = added.encode().unwrap();
    assert_eq!(encoded.event_type, "ProductAdded");
    assert_eq!(
        CartEvent::decode("ProductAdded", 1, &encoded.payload).unwrap(),
        Some(added)
    );
    assert_eq!(
        CartEvent::decode("Added", 1, &encoded.payload),
        Err(DecodeError::UnknownType {
            event_type: "Added".into(),
            version: 1
        })
    );
    let (renamed, original) = (
        CartEvent::SCHEMA.unwrap(),
        before::CartEvent::SCHEMA.unwrap(),
    );
    assert_eq!(renamed.events, original.events);
    assert_eq!(renamed.fingerprint(), original.fingerprint());
}
