//! A magazine subscription whose events changed shape after its first release, read with
//! today's code: the history written by version 1 is never rewritten, it is upcast each
//! time it is read.
//!
//! What changed since the first release (`examples/data/subscriptions-v1.jsonl` was
//! exported from it):
//!
//! | stored by release 1 | read today as | how |
//! | --- | --- | --- |
//! | `Subscribed` v1 `{customer: "Name <email>", plan}` | `Subscribed` v3 `{contact: {name, email}, plan}` | JSON step 1 → 2 ([`split_customer`]) into [`SubscribedV2`], then typed 2 → 3 (`From<SubscribedV2>`) |
//! | `InvoicePaid` v1 `{euros}` | `PaymentReceived` v2 `{amount_cents, currency}` | renamed (`aliases = ["InvoicePaid"]`), JSON step 1 → 2 ([`euros_to_cents`]) |
//! | `PlanChanged` v1, `Cancelled` v1 | the same | unchanged |
//! | `NewsletterOpened` v1 | nothing | retired: the set ignores it |
//!
//! The golden payloads of every version are in `examples/fixtures/`, and
//! `examples/tests/schema.rs` checks that these migrations still read them.

use es_core::UpcastError;
use es_core::prelude::*;
use serde_json::Value;

/// Someone subscribed. Version 1 stored the customer as one `"Name <email>"` string;
/// version 2 split it (JSON step); version 3 groups the two in a [`Contact`] (typed step).
#[event(version = 3, upcast_from = SubscribedV2)]
#[derive(Debug, Clone, PartialEq)]
pub struct Subscribed {
    /// Who.
    pub contact: Contact,
    /// `monthly` or `yearly`.
    pub plan: String,
}

/// Whom to write to.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Contact {
    /// Full name.
    pub name: String,
    /// E-mail address.
    pub email: String,
}

/// `Subscribed` as version 2 stored it, kept as a type so that version 3 converts from it
/// with `From`.
#[event(name = "Subscribed", version = 2, migrate(1 => split_customer))]
#[derive(Debug, Clone, PartialEq)]
pub struct SubscribedV2 {
    /// Full name.
    pub name: String,
    /// E-mail address.
    pub email: String,
    /// `monthly` or `yearly`.
    pub plan: String,
}

impl From<SubscribedV2> for Subscribed {
    fn from(old: SubscribedV2) -> Self {
        Subscribed {
            contact: Contact {
                name: old.name,
                email: old.email,
            },
            plan: old.plan,
        }
    }
}

/// Version 1 → 2 of `Subscribed`: `"customer": "Ada Lovelace <ada@example.com>"` becomes
/// `"name"` and `"email"`.
pub fn split_customer(mut v: Value) -> Result<Value, UpcastError> {
    let object = v
        .as_object_mut()
        .ok_or_else(|| UpcastError::new("Subscribed v1 must be an object"))?;
    let customer = object
        .remove("customer")
        .ok_or_else(|| UpcastError::missing_field("customer"))?;
    let customer = customer
        .as_str()
        .ok_or_else(|| UpcastError::new("`customer` must be a string"))?;
    let (name, email) = match customer.split_once('<') {
        Some((name, rest)) => (name.trim(), rest.trim_end_matches('>').trim()),
        None => (customer.trim(), ""),
    };
    object.insert("name".into(), name.into());
    object.insert("email".into(), email.into());
    Ok(v)
}

/// A payment came in. Release 1 called it `InvoicePaid` and stored whole euros.
#[event(version = 2, aliases = ["InvoicePaid"], migrate(1 => euros_to_cents))]
#[derive(Debug, Clone, PartialEq)]
pub struct PaymentReceived {
    /// Amount in cents.
    pub amount_cents: u64,
    /// ISO 4217 code.
    pub currency: String,
}

/// Version 1 → 2 of `PaymentReceived`: `{"euros": 9}` becomes
/// `{"amount_cents": 900, "currency": "EUR"}`. An amount whose cents a `u64` cannot hold
/// is refused: a wrapped or saturated figure would load as a payment nobody made.
pub fn euros_to_cents(v: Value) -> Result<Value, UpcastError> {
    let euros = v
        .get("euros")
        .and_then(Value::as_u64)
        .ok_or_else(|| UpcastError::missing_field("euros"))?;
    let cents = euros.checked_mul(100).ok_or_else(|| {
        UpcastError::new(format!(
            "{euros} euros is more cents than `amount_cents` (a u64) can hold"
        ))
    })?;
    Ok(serde_json::json!({ "amount_cents": cents, "currency": "EUR" }))
}

/// The subscriber moved to another plan.
#[event]
#[derive(Debug, Clone, PartialEq)]
pub struct PlanChanged {
    /// The new plan.
    pub plan: String,
}

/// The subscription ended.
#[event]
#[derive(Debug, Clone, PartialEq)]
pub struct Cancelled {
    /// Why, in the subscriber's words.
    pub reason: String,
}

/// The subscription's events. `NewsletterOpened`, a tracking event of release 1, is
/// retired: stored ones are skipped.
#[event(ignore = ["NewsletterOpened"])]
#[derive(Debug, Clone, PartialEq)]
pub enum SubscriptionEvent {
    /// See [`Subscribed`].
    Subscribed(Subscribed),
    /// See [`PaymentReceived`].
    PaymentReceived(PaymentReceived),
    /// See [`PlanChanged`].
    PlanChanged(PlanChanged),
    /// See [`Cancelled`].
    Cancelled(Cancelled),
}

/// A subscription's state.
#[derive(Debug, Default, Clone, PartialEq, Aggregate)]
#[aggregate(kind = "subscription", event = SubscriptionEvent)]
pub struct Subscription {
    /// The subscriber, once subscribed.
    pub contact: Option<Contact>,
    /// The current plan.
    pub plan: String,
    /// Everything paid, in cents.
    pub paid_cents: u64,
    /// Until cancelled.
    pub active: bool,
}

impl Apply<Subscribed> for Subscription {
    fn apply(&mut self, e: &Subscribed) {
        self.contact = Some(e.contact.clone());
        self.plan = e.plan.clone();
        self.active = true;
    }
}

impl Apply<PaymentReceived> for Subscription {
    fn apply(&mut self, e: &PaymentReceived) {
        self.paid_cents += e.amount_cents;
    }
}

impl Apply<PlanChanged> for Subscription {
    fn apply(&mut self, e: &PlanChanged) {
        self.plan = e.plan.clone();
    }
}

impl Apply<Cancelled> for Subscription {
    fn apply(&mut self, _: &Cancelled) {
        self.active = false;
    }
}

/// Why a subscription command refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscriptionError {
    /// Payments need an active subscription.
    #[error("the subscription is not active")]
    NotActive,
    /// Nothing to pay.
    #[error("a payment must be more than zero")]
    ZeroPayment,
}

impl Subscription {
    /// Records a payment, in euro cents.
    pub fn pay(&self, amount_cents: u64) -> Result<PaymentReceived, SubscriptionError> {
        if !self.active {
            return Err(SubscriptionError::NotActive);
        }
        if amount_cents == 0 {
            return Err(SubscriptionError::ZeroPayment);
        }
        Ok(PaymentReceived {
            amount_cents,
            currency: "EUR".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn version_one_reads_as_the_current_events() {
        let subscribed = SubscriptionEvent::decode(
            "Subscribed",
            1,
            br#"{"customer": "Ada Lovelace <ada@example.com>", "plan": "monthly"}"#,
        )
        .unwrap();
        assert_eq!(
            subscribed,
            Some(SubscriptionEvent::Subscribed(Subscribed {
                contact: Contact {
                    name: "Ada Lovelace".into(),
                    email: "ada@example.com".into()
                },
                plan: "monthly".into()
            }))
        );
        let paid = SubscriptionEvent::decode("InvoicePaid", 1, br#"{"euros": 9}"#).unwrap();
        assert_eq!(
            paid,
            Some(SubscriptionEvent::PaymentReceived(PaymentReceived {
                amount_cents: 900,
                currency: "EUR".into()
            }))
        );
        assert_eq!(
            SubscriptionEvent::decode("NewsletterOpened", 1, b"{}").unwrap(),
            None
        );
    }

    #[test]
    fn euros_beyond_what_cents_can_hold_are_refused() {
        let err = euros_to_cents(json!({ "euros": u64::MAX })).unwrap_err();
        assert!(err.message().contains(&u64::MAX.to_string()), "{err}");
        assert_eq!(
            euros_to_cents(json!({ "euros": u64::MAX / 100 })).unwrap()["amount_cents"],
            json!(u64::MAX / 100 * 100)
        );
    }

    #[test]
    fn a_customer_without_an_address_keeps_the_name() {
        let v = split_customer(json!({"customer": "Grace", "plan": "yearly"})).unwrap();
        assert_eq!(v, json!({"name": "Grace", "email": "", "plan": "yearly"}));
        assert!(split_customer(json!({"plan": "yearly"})).is_err());
    }
}
