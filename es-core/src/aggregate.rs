//! Aggregates: the consistency boundary whose state is a fold over its events.

use crate::event::EventSet;

/// The state of one kind of aggregate, rebuilt by applying its events in order.
///
/// `#[derive(Aggregate)]` implements it from `#[aggregate(kind = "...", event = Set)]`,
/// dispatching each variant of the set to an [`Apply`] handler. The kind is the prefix of
/// every stream of this aggregate: instance `42` of kind `cart` lives in stream `cart-42`.
///
/// ```
/// use es_core::{Aggregate, Apply};
/// # use es_core::doc_support::{AccountEvent, Deposited, Withdrawn};
/// #[derive(Default)]
/// struct Account { balance: i64 }
///
/// impl Aggregate for Account {
///     const KIND: &'static str = "account";
///     type Events = AccountEvent;
///     fn apply_event(&mut self, event: &AccountEvent) {
///         match event {
///             AccountEvent::Deposited(e) => self.apply(e),
///             AccountEvent::Withdrawn(e) => self.apply(e),
///         }
///     }
/// }
/// impl Apply<Deposited> for Account {
///     fn apply(&mut self, e: &Deposited) { self.balance += e.amount as i64 }
/// }
/// impl Apply<Withdrawn> for Account {
///     fn apply(&mut self, e: &Withdrawn) { self.balance -= e.amount as i64 }
/// }
///
/// let mut account = Account::default();
/// account.apply_event(&AccountEvent::Deposited(Deposited { amount: 5 }));
/// assert_eq!(account.balance, 5);
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an aggregate",
    label = "not an aggregate",
    note = "add `#[derive(Aggregate)]` and `#[aggregate(kind = \"...\", event = YourEvents)]` to `{Self}`"
)]
pub trait Aggregate: Default + Send + Sync + 'static {
    /// The aggregate kind: the prefix of its stream ids.
    const KIND: &'static str;
    /// The enum of this aggregate's events.
    type Events: EventSet;

    /// Folds one event of the set into the state. It must not fail: the event already
    /// happened.
    ///
    /// The repository calls it for you; `#[derive(Aggregate)]` implements it by handing
    /// each variant to its [`Apply`] handler. It is named apart from [`Apply::apply`] so
    /// that method syntax never has two candidates with both traits in scope (as the
    /// prelude brings them): `state.apply_event(&event)` folds any event of the set, and
    /// inside a handler `self.apply(&other)` calls the handler for `other`'s type. The
    /// handler keeps the short name because it is the one users write, once per event.
    fn apply_event(&mut self, event: &Self::Events);

    /// Snapshot settings; `None` keeps no snapshots.
    fn snapshot_policy() -> Option<SnapshotPolicy> {
        None
    }

    /// A fingerprint of the state type and its handlers, stored with each snapshot; a
    /// snapshot with another fingerprint is ignored. 0 means none.
    fn snapshot_fingerprint() -> u64 {
        0
    }

    /// Encodes the state for a snapshot; `None` when the aggregate keeps no snapshots.
    /// `#[derive(Aggregate)]` with `snapshot_every` implements it with serde_json.
    fn encode_snapshot(&self) -> Option<Result<Vec<u8>, String>> {
        None
    }

    /// Decodes a state encoded by [`Aggregate::encode_snapshot`].
    fn decode_snapshot(state: &[u8]) -> Option<Result<Self, String>> {
        let _ = state;
        None
    }

    /// The stream id of the instance `id`: `"{KIND}-{id}"`.
    fn stream_id(id: &str) -> String {
        let mut s = String::with_capacity(Self::KIND.len() + 1 + id.len());
        s.push_str(Self::KIND);
        s.push('-');
        s.push_str(id);
        s
    }

    /// The instance id back from a stream id of this aggregate (`"{KIND}-{id}"`), or
    /// `None` when the stream belongs to another kind. Handy in projections and process
    /// managers, which see stream ids:
    ///
    /// ```
    /// # use es_core::doc_support::Account;
    /// use es_core::Aggregate;
    /// assert_eq!(Account::id_of("account-42"), Some("42"));
    /// assert_eq!(Account::id_of("cart-42"), None);
    /// ```
    fn id_of(stream_id: &str) -> Option<&str> {
        stream_id
            .strip_prefix(Self::KIND)?
            .strip_prefix('-')
            .filter(|id| !id.is_empty())
    }
}

/// How often an aggregate is snapshotted and the version of its snapshot schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotPolicy {
    /// Write a snapshot each time a command crosses a multiple of this many events.
    pub every: u64,
    /// The snapshot schema version (the `snapshot_version` attribute); snapshots written
    /// under another version are ignored.
    pub snapshot_version: u32,
}

/// The handler for one event type.
///
/// `#[derive(Aggregate)]` calls `Apply<E>` for each variant of the event set, so a missing
/// handler is a compile error that names the event.
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no handler for `{E}`",
    label = "`{E}` is an event of this aggregate",
    note = "implement `Apply<{E}> for {Self}`: `impl Apply<{E}> for {Self} {{ fn apply(&mut self, event: &{E}) {{ .. }} }}`"
)]
pub trait Apply<E> {
    /// A fingerprint of this handler's code, part of the aggregate's snapshot
    /// fingerprint; 0 when unknown. `#[es_core::fingerprint]` on the impl block sets it.
    const FINGERPRINT: u64 = 0;

    /// Folds the event into the state.
    fn apply(&mut self, event: &E);
}
