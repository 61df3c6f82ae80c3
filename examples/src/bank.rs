//! A bank account: the balance is a fold over deposits and withdrawals; a withdrawal
//! beyond the balance is refused; a blocked account refuses everything.

use es_core::prelude::*;

/// The account was opened.
#[event]
#[derive(Debug, Clone, PartialEq)]
pub struct AccountOpened {
    /// Holder's name.
    pub owner: String,
}

/// Money came in.
#[event]
#[derive(Debug, Clone, PartialEq)]
pub struct Deposited {
    /// Amount in cents.
    pub amount_cents: u64,
}

/// Money went out.
#[event]
#[derive(Debug, Clone, PartialEq)]
pub struct Withdrawn {
    /// Amount in cents.
    pub amount_cents: u64,
}

/// The account was blocked.
#[event]
#[derive(Debug, Clone, PartialEq)]
pub struct AccountBlocked {
    /// Why.
    pub reason: String,
}

/// The account's events.
#[event]
#[derive(Debug, Clone, PartialEq)]
pub enum AccountEvent {
    /// See [`AccountOpened`].
    AccountOpened(AccountOpened),
    /// See [`Deposited`].
    Deposited(Deposited),
    /// See [`Withdrawn`].
    Withdrawn(Withdrawn),
    /// See [`AccountBlocked`].
    AccountBlocked(AccountBlocked),
}

/// The account's state.
#[derive(Debug, Default, Clone, Aggregate)]
#[aggregate(kind = "account", event = AccountEvent)]
pub struct Account {
    /// Holder, once opened.
    pub owner: Option<String>,
    /// Balance in cents.
    pub balance_cents: u64,
    /// Whether it is blocked.
    pub blocked: bool,
}

/// Why an account command refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    /// Open runs once.
    #[error("the account is already open")]
    AlreadyOpen,
    /// Other commands need an open account.
    #[error("the account is not open")]
    NotOpen,
    /// Blocked accounts refuse money movements.
    #[error("the account is blocked")]
    Blocked,
    /// Amounts are positive.
    #[error("the amount must be positive")]
    ZeroAmount,
    /// Not enough money.
    #[error("insufficient funds: balance {balance_cents} cents, requested {requested_cents}")]
    InsufficientFunds {
        /// Balance.
        balance_cents: u64,
        /// Requested.
        requested_cents: u64,
    },
    /// A balance stays countable: a deposit that would take it past what it can hold is
    /// refused (stored, it would make every later load of the account overflow).
    #[error(
        "a deposit of {amount_cents} cents would take the balance of {balance_cents} past its limit"
    )]
    BalanceTooLarge {
        /// Balance.
        balance_cents: u64,
        /// Deposit.
        amount_cents: u64,
    },
}

impl Apply<AccountOpened> for Account {
    fn apply(&mut self, e: &AccountOpened) {
        self.owner = Some(e.owner.clone());
    }
}
impl Apply<Deposited> for Account {
    fn apply(&mut self, e: &Deposited) {
        self.balance_cents += e.amount_cents;
    }
}
impl Apply<Withdrawn> for Account {
    fn apply(&mut self, e: &Withdrawn) {
        self.balance_cents = self.balance_cents.saturating_sub(e.amount_cents);
    }
}
impl Apply<AccountBlocked> for Account {
    fn apply(&mut self, _: &AccountBlocked) {
        self.blocked = true;
    }
}

impl Account {
    fn active(&self) -> Result<(), AccountError> {
        match (&self.owner, self.blocked) {
            (None, _) => Err(AccountError::NotOpen),
            (_, true) => Err(AccountError::Blocked),
            _ => Ok(()),
        }
    }

    /// Opens the account.
    pub fn open(&self, owner: &str) -> Result<AccountOpened, AccountError> {
        if self.owner.is_some() {
            return Err(AccountError::AlreadyOpen);
        }
        Ok(AccountOpened {
            owner: owner.to_owned(),
        })
    }

    /// Deposits money.
    pub fn deposit(&self, amount_cents: u64) -> Result<Deposited, AccountError> {
        self.active()?;
        if amount_cents == 0 {
            return Err(AccountError::ZeroAmount);
        }
        if self.balance_cents.checked_add(amount_cents).is_none() {
            return Err(AccountError::BalanceTooLarge {
                balance_cents: self.balance_cents,
                amount_cents,
            });
        }
        Ok(Deposited { amount_cents })
    }

    /// Withdraws money, never beyond the balance.
    pub fn withdraw(&self, amount_cents: u64) -> Result<Withdrawn, AccountError> {
        self.active()?;
        if amount_cents == 0 {
            return Err(AccountError::ZeroAmount);
        }
        if amount_cents > self.balance_cents {
            return Err(AccountError::InsufficientFunds {
                balance_cents: self.balance_cents,
                requested_cents: amount_cents,
            });
        }
        Ok(Withdrawn { amount_cents })
    }

    /// Blocks the account.
    pub fn block(&self, reason: &str) -> Result<Option<AccountBlocked>, AccountError> {
        if self.owner.is_none() {
            return Err(AccountError::NotOpen);
        }
        // blocking twice decides nothing
        Ok((!self.blocked).then(|| AccountBlocked {
            reason: reason.to_owned(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use es_core::{CommandError, MemoryStore, Repository};

    /// A deposit that would take the balance past what it holds is refused: stored, it
    /// made every later load of the account overflow.
    #[test]
    fn a_deposit_past_the_largest_balance_is_refused() {
        let accounts = Repository::<Account, _>::new(MemoryStore::new());
        accounts.execute("1", |a| a.open("Dana")).unwrap();
        accounts.execute("1", |a| a.deposit(u64::MAX)).unwrap();
        match accounts.execute("1", |a| a.deposit(1)) {
            Err(CommandError::Rejected(AccountError::BalanceTooLarge { .. })) => {}
            other => panic!("{other:?}"),
        }
        assert_eq!(accounts.load("1").unwrap().balance_cents, u64::MAX);
    }
}
