//! The repository: load an aggregate, run a command on it, append what it decided.

use crate::aggregate::Aggregate;
use crate::envelope::{EventDecodeError, Metadata, NewEvent, RecordedEvent};
use crate::event::{EncodeError, EventSet, IntoEvents};
use crate::store::{AppendResult, EventStore, ExpectedVersion, StoreError};
use chrono::{DateTime, Utc};
use std::marker::PhantomData;
use std::ops::Deref;

/// An aggregate's state and the stream version it reflects.
#[derive(Debug, Clone, Default)]
pub struct Loaded<A> {
    /// The state after folding every event up to `version`.
    pub state: A,
    /// The stream version folded in (0 for a stream with no events).
    pub version: u64,
}

impl<A> Deref for Loaded<A> {
    type Target = A;
    fn deref(&self) -> &A {
        &self.state
    }
}

/// What a successful command did.
#[derive(Debug, Clone)]
pub struct Executed<A: Aggregate> {
    /// The state after the new events.
    pub state: A,
    /// The stream version after the command.
    pub version: u64,
    /// The events the command decided on (empty when it decided nothing).
    pub events: Vec<A::Events>,
    /// Where they were written; `None` when there were no events.
    pub appended: Option<AppendResult>,
    /// How many times the command ran (more than 1 after conflicts).
    pub attempts: u32,
}

/// Why loading an aggregate failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// A stored event could not be decoded into the aggregate's event set.
    #[error(transparent)]
    Decode(#[from] EventDecodeError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a command failed. Nothing was appended.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError<E> {
    /// The command refused: the domain's own error.
    #[error("command rejected: {0}")]
    Rejected(E),
    /// Other writers kept changing the stream; the command ran `attempts` times.
    #[error(
        "stream `{stream_id}` kept changing: {attempts} attempts conflicted, the last at version {actual}"
    )]
    Conflict {
        /// Stream id.
        stream_id: String,
        /// How many times the command ran.
        attempts: u32,
        /// The stream's version at the last conflict.
        actual: u64,
    },
    /// A stored event could not be decoded.
    #[error(transparent)]
    Decode(EventDecodeError),
    /// An event the command decided on could not be encoded.
    #[error(transparent)]
    Encode(EncodeError),
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
}

impl<E> CommandError<E> {
    /// The domain error, if the command refused.
    pub fn rejected(&self) -> Option<&E> {
        match self {
            CommandError::Rejected(e) => Some(e),
            _ => None,
        }
    }
}

impl<E> From<LoadError> for CommandError<E> {
    fn from(e: LoadError) -> Self {
        match e {
            LoadError::Decode(d) => CommandError::Decode(d),
            LoadError::Store(s) => CommandError::Store(s),
        }
    }
}

/// Loads aggregates of type `A` from store `S` and runs commands on them.
///
/// ```
/// use es_core::{MemoryStore, Repository};
/// # use es_core::doc_support::{Account, AccountError};
/// let accounts = Repository::<Account, _>::new(MemoryStore::new());
/// accounts.execute("7", |a| a.deposit(100)).unwrap();
/// let err = accounts.execute("7", |a| a.withdraw(500)).unwrap_err();
/// assert!(matches!(err.rejected(), Some(AccountError::InsufficientFunds { .. })));
/// let account = accounts.load("7").unwrap();
/// assert_eq!((account.balance, account.version), (100, 1));
/// ```
pub struct Repository<A, S> {
    store: S,
    max_attempts: u32,
    _aggregate: PhantomData<fn() -> A>,
}

impl<A: Aggregate, S: EventStore> Repository<A, S> {
    /// A repository over `store` that runs a conflicting command at most 5 times.
    pub fn new(store: S) -> Self {
        Repository {
            store,
            max_attempts: 5,
            _aggregate: PhantomData,
        }
    }

    /// Sets how many times a command runs before a conflict is reported (at least 1).
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The stream id of instance `id`.
    pub fn stream_id(&self, id: &str) -> String {
        A::stream_id(id)
    }

    /// The current state of instance `id` (the default state at version 0 when it has no
    /// events).
    pub fn load(&self, id: &str) -> Result<Loaded<A>, LoadError> {
        self.fold(&A::stream_id(id), |_| true)
    }

    /// The state of instance `id` after its first `version` events (fewer when the stream
    /// is shorter; `Loaded::version` says how many were folded).
    pub fn load_at(&self, id: &str, version: u64) -> Result<Loaded<A>, LoadError> {
        self.fold(&A::stream_id(id), |e| e.stream_version <= version)
    }

    /// The state of instance `id` as of `timestamp`: every event recorded at or before it.
    pub fn load_as_of(&self, id: &str, timestamp: DateTime<Utc>) -> Result<Loaded<A>, LoadError> {
        self.fold(&A::stream_id(id), |e| e.timestamp <= timestamp)
    }

    /// The recorded events of instance `id`, decoded, for audit views.
    pub fn history(&self, id: &str) -> Result<Vec<crate::Envelope<A::Events>>, LoadError> {
        let mut out = Vec::new();
        for recorded in self.store.read_stream(&A::stream_id(id), 1)? {
            if let Some(envelope) = recorded?.decode::<A::Events>()? {
                out.push(envelope);
            }
        }
        Ok(out)
    }

    /// Folds the stream's events while `keep` holds.
    fn fold(
        &self,
        stream_id: &str,
        mut keep: impl FnMut(&RecordedEvent) -> bool,
    ) -> Result<Loaded<A>, LoadError> {
        let mut loaded = Loaded {
            state: A::default(),
            version: 0,
        };
        for recorded in self.store.read_stream(stream_id, 1)? {
            let recorded = recorded?;
            if !keep(&recorded) {
                break;
            }
            if let Some(envelope) = recorded.decode::<A::Events>()? {
                loaded.state.apply(&envelope.event);
            }
            loaded.version = recorded.stream_version;
        }
        Ok(loaded)
    }

    /// Loads instance `id`, runs `command` on its state and appends the events it returns
    /// with the loaded version as expectation. On a conflict it reloads and runs the
    /// command again, up to the configured number of attempts.
    ///
    /// The command is a plain function of the state returning one event, several (`Vec`,
    /// tuple, array), none (`()`, `None`), or its own error.
    pub fn execute<T, E>(
        &self,
        id: &str,
        command: impl FnMut(&A) -> Result<T, E>,
    ) -> Result<Executed<A>, CommandError<E>>
    where
        T: IntoEvents<A::Events>,
    {
        self.execute_with(id, Metadata::default(), command)
    }

    /// [`Repository::execute`] attaching `metadata` (actor, correlation, reason…) to every
    /// event the command appends.
    pub fn execute_with<T, E>(
        &self,
        id: &str,
        metadata: Metadata,
        mut command: impl FnMut(&A) -> Result<T, E>,
    ) -> Result<Executed<A>, CommandError<E>>
    where
        T: IntoEvents<A::Events>,
    {
        let stream_id = A::stream_id(id);
        let mut attempts = 0;
        loop {
            attempts += 1;
            let Loaded { mut state, version } = self.fold(&stream_id, |_| true)?;
            let mut events = Vec::new();
            command(&state)
                .map_err(CommandError::Rejected)?
                .into_events(&mut events);
            if events.is_empty() {
                return Ok(Executed {
                    state,
                    version,
                    events,
                    appended: None,
                    attempts,
                });
            }
            let batch = events
                .iter()
                .map(|e| {
                    e.encode()
                        .map(|enc| NewEvent::from_encoded(enc).with_metadata(metadata.clone()))
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(CommandError::Encode)?;
            let expected = if version == 0 {
                ExpectedVersion::NoStream
            } else {
                ExpectedVersion::Exact(version)
            };
            match self.store.append(&stream_id, expected, batch) {
                Ok(appended) => {
                    for e in &events {
                        state.apply(e);
                    }
                    return Ok(Executed {
                        state,
                        version: appended.last_version,
                        events,
                        appended: Some(appended),
                        attempts,
                    });
                }
                Err(StoreError::Conflict { actual, .. }) if attempts >= self.max_attempts => {
                    return Err(CommandError::Conflict {
                        stream_id,
                        attempts,
                        actual,
                    });
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(CommandError::Store(e)),
            }
        }
    }
}
