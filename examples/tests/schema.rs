//! Guards stored history: the golden payload of every stored version of the examples'
//! events still reads through today's migrations into a state, and the schema catalogue
//! (`fixtures/schema-catalogue.json`) matches the code, so that changing an event's fields
//! without a new version fails here.
//!
//! After a deliberate change, `ES_SCHEMA_BLESS=1 cargo test -p es-examples --test schema`
//! writes the golden payloads of new versions from the samples below and regenerates the
//! catalogue (docs/schema-safety.md).

use es_core::testing::SchemaCheck;
use es_examples::cart::{self, Cart, CartEvent};
use es_examples::upcasting::{self, Subscription, SubscriptionEvent};
use std::collections::BTreeMap;

/// One value of each event type: what a bless run writes a new version's golden payload
/// from.
fn subscription_samples() -> Vec<SubscriptionEvent> {
    vec![
        upcasting::Subscribed {
            contact: upcasting::Contact {
                name: "Ada Lovelace".into(),
                email: "ada@example.com".into(),
            },
            plan: "monthly".into(),
        }
        .into(),
        upcasting::PaymentReceived {
            amount_cents: 900,
            currency: "EUR".into(),
        }
        .into(),
        upcasting::PlanChanged {
            plan: "yearly".into(),
        }
        .into(),
        upcasting::Cancelled {
            reason: "moving to a new ship".into(),
        }
        .into(),
    ]
}

fn cart_samples() -> Vec<CartEvent> {
    vec![
        cart::CartCreated {
            user_id: "alice".into(),
        }
        .into(),
        cart::ProductAdded {
            product: "Coffee beans".into(),
            quantity: 2,
            unit_price_cents: 1_250,
        }
        .into(),
        cart::ProductRemoved {
            product: "Coffee beans".into(),
            quantity: 1,
        }
        .into(),
        cart::CartPurchased {
            items: BTreeMap::from([("Coffee beans".to_owned(), 1)]),
            total_cents: 1_250,
        }
        .into(),
    ]
}

#[test]
fn stored_event_versions_still_read_and_the_catalogue_matches() {
    SchemaCheck::new(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures"))
        .aggregate::<Subscription>(subscription_samples())
        .aggregate::<Cart>(cart_samples())
        .run();
}
