//! A payment for an order, taken by a payments service that runs apart from the orders
//! service and learns of orders only from the store's log (see the `microservices`
//! example): the card is charged when the order's amount is within the card's limit, and
//! declined otherwise.

use es_core::prelude::*;

/// The card was charged.
#[event]
#[derive(Debug, Clone, PartialEq)]
pub struct PaymentCaptured {
    /// Stream id of the order paid for.
    pub order: String,
    /// Amount charged, in cents.
    pub amount_cents: u64,
    /// The payments service instance that charged it.
    pub by: String,
}

/// The charge was refused.
#[event]
#[derive(Debug, Clone, PartialEq)]
pub struct PaymentDeclined {
    /// Stream id of the order.
    pub order: String,
    /// Amount asked for, in cents.
    pub amount_cents: u64,
    /// Why.
    pub reason: String,
    /// The payments service instance that decided.
    pub by: String,
}

/// The payment's events.
#[event]
#[derive(Debug, Clone, PartialEq)]
pub enum PaymentEvent {
    /// See [`PaymentCaptured`].
    PaymentCaptured(PaymentCaptured),
    /// See [`PaymentDeclined`].
    PaymentDeclined(PaymentDeclined),
}

/// One order's payment: its stream is `payment-<order id>`.
#[derive(Debug, Default, Clone, Aggregate)]
#[aggregate(kind = "payment", event = PaymentEvent)]
pub struct Payment {
    /// What happened, once it did.
    pub outcome: Option<PaymentEvent>,
}

impl Apply<PaymentCaptured> for Payment {
    fn apply(&mut self, e: &PaymentCaptured) {
        self.outcome = Some(PaymentEvent::PaymentCaptured(e.clone()));
    }
}
impl Apply<PaymentDeclined> for Payment {
    fn apply(&mut self, e: &PaymentDeclined) {
        self.outcome = Some(PaymentEvent::PaymentDeclined(e.clone()));
    }
}

/// Why a payment command refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentError {
    /// An order is charged once.
    #[error("the payment for this order was already decided")]
    AlreadyDecided,
    /// Nothing to charge.
    #[error("the amount must be positive")]
    ZeroAmount,
}

impl Payment {
    /// Charges `amount_cents` for `order` on a card that takes at most `limit_cents`;
    /// `by` names the service instance deciding.
    pub fn charge(
        &self,
        order: &str,
        amount_cents: u64,
        limit_cents: u64,
        by: &str,
    ) -> Result<PaymentEvent, PaymentError> {
        if self.outcome.is_some() {
            return Err(PaymentError::AlreadyDecided);
        }
        if amount_cents == 0 {
            return Err(PaymentError::ZeroAmount);
        }
        Ok(if amount_cents <= limit_cents {
            PaymentEvent::PaymentCaptured(PaymentCaptured {
                order: order.to_owned(),
                amount_cents,
                by: by.to_owned(),
            })
        } else {
            PaymentEvent::PaymentDeclined(PaymentDeclined {
                order: order.to_owned(),
                amount_cents,
                reason: format!("over the card's limit of {}", crate::dollars(limit_cents)),
                by: by.to_owned(),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use es_core::{MemoryStore, Repository};

    #[test]
    fn a_payment_is_decided_once() {
        let payments = Repository::<Payment, _>::new(MemoryStore::new());
        let done = payments
            .execute("7", |p| p.charge("order-7", 12_000, 50_000, "a"))
            .unwrap();
        assert!(matches!(
            done.state.outcome,
            Some(PaymentEvent::PaymentCaptured(_))
        ));
        let again = payments.execute("7", |p| p.charge("order-7", 12_000, 50_000, "a"));
        assert!(matches!(
            again,
            Err(es_core::CommandError::Rejected(
                PaymentError::AlreadyDecided
            ))
        ));
        let declined = payments
            .execute("8", |p| p.charge("order-8", 90_000, 50_000, "a"))
            .unwrap();
        assert!(matches!(
            declined.state.outcome,
            Some(PaymentEvent::PaymentDeclined(_))
        ));
    }
}
