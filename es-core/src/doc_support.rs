//! A small bank account (`Account`, its events and its error) that the documentation's
//! examples and the README use, so that an example needs no domain of its own. It is
//! written by hand, without the macros: it shows what `#[event]` and
//! `#[derive(Aggregate)]` generate. Your own domain uses the macros.

use crate::event::{DecodeError, EncodeError, EncodedEvent, Event, EventSet, IntoEvents};
use crate::{Aggregate, Apply};
use serde::{Deserialize, Serialize};

/// Money came in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deposited {
    /// Amount in cents.
    pub amount: u64,
}

/// Money went out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Withdrawn {
    /// Amount in cents.
    pub amount: u64,
}

impl Event for Deposited {
    const NAME: &'static str = "Deposited";
    const VERSION: u32 = 1;
}

impl Event for Withdrawn {
    const NAME: &'static str = "Withdrawn";
    const VERSION: u32 = 1;
}

/// The account's events.
#[derive(Debug, Clone, PartialEq)]
pub enum AccountEvent {
    /// See [`Deposited`].
    Deposited(Deposited),
    /// See [`Withdrawn`].
    Withdrawn(Withdrawn),
}

impl EventSet for AccountEvent {
    const EVENT_TYPES: &'static [&'static str] = &["Deposited", "Withdrawn"];

    fn event_type(&self) -> &'static str {
        match self {
            AccountEvent::Deposited(_) => Deposited::NAME,
            AccountEvent::Withdrawn(_) => Withdrawn::NAME,
        }
    }

    fn schema_version(&self) -> u32 {
        match self {
            AccountEvent::Deposited(_) => Deposited::VERSION,
            AccountEvent::Withdrawn(_) => Withdrawn::VERSION,
        }
    }

    fn encode(&self) -> Result<EncodedEvent, EncodeError> {
        match self {
            AccountEvent::Deposited(e) => EncodeError::encode(e),
            AccountEvent::Withdrawn(e) => EncodeError::encode(e),
        }
    }

    fn decode(event_type: &str, version: u32, payload: &[u8]) -> Result<Option<Self>, DecodeError> {
        match event_type {
            Deposited::NAME => {
                Deposited::decode_stored(version, payload).map(|e| Some(Self::Deposited(e)))
            }
            Withdrawn::NAME => {
                Withdrawn::decode_stored(version, payload).map(|e| Some(Self::Withdrawn(e)))
            }
            other => Err(DecodeError::UnknownType {
                event_type: other.to_owned(),
                version,
            }),
        }
    }
}

impl IntoEvents<AccountEvent> for AccountEvent {
    fn into_events(self, out: &mut Vec<AccountEvent>) {
        out.push(self);
    }
}
impl IntoEvents<AccountEvent> for Deposited {
    fn into_events(self, out: &mut Vec<AccountEvent>) {
        out.push(AccountEvent::Deposited(self));
    }
}
impl IntoEvents<AccountEvent> for Withdrawn {
    fn into_events(self, out: &mut Vec<AccountEvent>) {
        out.push(AccountEvent::Withdrawn(self));
    }
}

/// A bank account.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Account {
    /// Balance in cents.
    pub balance: u64,
}

/// Why an account command refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AccountError {
    /// Zero amounts are refused.
    #[error("the amount must be positive")]
    ZeroAmount,
    /// Not enough money.
    #[error("insufficient funds: balance {balance}, requested {requested}")]
    InsufficientFunds {
        /// Balance in cents.
        balance: u64,
        /// Requested amount in cents.
        requested: u64,
    },
}

impl Account {
    /// Deposit command.
    pub fn deposit(&self, amount: u64) -> Result<Deposited, AccountError> {
        if amount == 0 {
            return Err(AccountError::ZeroAmount);
        }
        Ok(Deposited { amount })
    }

    /// Withdraw command.
    pub fn withdraw(&self, amount: u64) -> Result<Withdrawn, AccountError> {
        if amount == 0 {
            return Err(AccountError::ZeroAmount);
        }
        if amount > self.balance {
            return Err(AccountError::InsufficientFunds {
                balance: self.balance,
                requested: amount,
            });
        }
        Ok(Withdrawn { amount })
    }
}

impl Aggregate for Account {
    const KIND: &'static str = "account";
    type Events = AccountEvent;
    fn apply_event(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::Deposited(e) => self.apply(e),
            AccountEvent::Withdrawn(e) => self.apply(e),
        }
    }
}

impl Apply<Deposited> for Account {
    fn apply(&mut self, e: &Deposited) {
        self.balance += e.amount;
    }
}

impl Apply<Withdrawn> for Account {
    fn apply(&mut self, e: &Withdrawn) {
        self.balance = self.balance.saturating_sub(e.amount);
    }
}
