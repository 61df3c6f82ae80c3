//! An async face for tokio services (feature `tokio`): commands and loads run off the
//! async threads (in place on a multi-threaded runtime, `block_in_place`; on the blocking
//! pool otherwise), live subscriptions are `futures_core::Stream`s.
//!
//! The core stays synchronous (one implementation, no runtime imposed, simple to test);
//! this module only moves its calls off the async threads. That matters doubly for
//! es-store-pg, whose synchronous client runs a runtime of its own and panics when called
//! from an async thread: call any store from async code only through this module or
//! `tokio::task::spawn_blocking`. `AsyncRepository` is cheap to clone and `'static`, so
//! handlers and spawned tasks take it by value; each `subscribe` call returns one
//! consumer's feed.
//!
//! ```
//! use es_core::asynchronous::AsyncRepository;
//! use es_core::{MemoryStore, Repository};
//! # use es_core::doc_support::{Account, AccountError};
//! use std::sync::Arc;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let accounts = AsyncRepository::new(Repository::<Account, _>::new(Arc::new(MemoryStore::new())));
//! let handler = accounts.clone(); // what an axum handler would hold
//! let done = handler.execute("7", |a| a.deposit(100)).await.unwrap();
//! assert_eq!(done.version, 1);
//! let err = accounts.execute("7", |a| a.withdraw(500)).await.unwrap_err();
//! assert!(matches!(err.rejected(), Some(AccountError::InsufficientFunds { .. })));
//! assert_eq!(accounts.load("7").await.unwrap().balance, 100);
//! # }
//! ```
//!
//! # Cancellation
//!
//! A command cannot be cancelled once its future has been polled: the store call runs to
//! its end whatever becomes of the future. On a multi-threaded runtime the first poll
//! runs the whole command (`block_in_place`), so a `tokio::time::timeout` around it
//! returns the command's result, never a timeout. Elsewhere the command runs on the blocking pool, and dropping its future
//! (a timeout, the losing arm of `select!`, a web client that went away) leaves it
//! running: its events may be stored although nobody learns its outcome.
//!
//! So treat a dropped command like a lost reply, never like one that did not happen. To
//! resend safely, send it with [`AsyncRepository::execute_expecting`] and the version the
//! client read: a resend after the first one landed is a `Conflict`, not a second
//! deposit. A reaction to an event (`Repository::execute_caused_by`) is recognised when
//! it runs again.
//!
//! ```
//! use es_core::asynchronous::AsyncRepository;
//! use es_core::{MemoryStore, Repository};
//! # use es_core::doc_support::Account;
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let accounts = AsyncRepository::new(Repository::<Account, _>::new(Arc::new(MemoryStore::new())));
//! // a deposit that cannot finish before its caller gives up on it after 10 ms
//! let (release, released) = std::sync::mpsc::channel::<()>();
//! let deposit = accounts.execute("7", move |a| {
//!     let _ = released.recv_timeout(Duration::from_secs(10));
//!     a.deposit(100)
//! });
//! let gave_up = tokio::time::timeout(Duration::from_millis(10), deposit).await;
//! assert!(gave_up.is_err());
//! release.send(()).unwrap();
//! // the command still runs to its end
//! let mut balance = 0;
//! for _ in 0..500 {
//!     balance = accounts.load("7").await.unwrap().balance;
//!     if balance == 100 {
//!         break;
//!     }
//!     tokio::time::sleep(Duration::from_millis(10)).await;
//! }
//! assert_eq!(balance, 100);
//! # }
//! ```

use crate::envelope::{Cause, Envelope, Metadata, RecordedEvent};
use crate::repository::{CommandError, Executed, LoadError, Loaded, Repository};
use crate::store::{EventStore, StoreError};
use crate::subscription::{Filter, Subscription};
use crate::{Aggregate, IntoEvents};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// Runs `f` off the async threads. On a multi-threaded runtime it runs in place
/// (`block_in_place`: the worker hands its other tasks to the others first), which spares
/// the hand-off to a pool thread and back; elsewhere on tokio's blocking pool. A panic in
/// `f` is resumed in the caller, as if `f` had run here; `None` only when the runtime is
/// shutting down.
async fn blocking<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> Option<R> {
    if tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
    {
        return Some(tokio::task::block_in_place(f));
    }
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => Some(r),
        Err(e) => match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(_) => None,
        },
    }
}

/// The errors of the repository's calls, which can carry a store's.
trait FromStoreError {
    fn from_store(e: StoreError) -> Self;
}

impl<E> FromStoreError for CommandError<E> {
    fn from_store(e: StoreError) -> Self {
        CommandError::Store(e)
    }
}

impl FromStoreError for LoadError {
    fn from_store(e: StoreError) -> Self {
        LoadError::Store(e)
    }
}

fn shutting_down() -> StoreError {
    StoreError::Io(std::io::Error::other(
        "the tokio runtime is shutting down: the call did not run",
    ))
}

/// A [`Repository`] for async code: the same commands, loads and errors, each run off the
/// async threads. Clone it into every handler.
pub struct AsyncRepository<A, S> {
    inner: Arc<Repository<A, S>>,
}

/// The id and correlation id of a reaction's cause, taken from an event of any kind.
struct Caused {
    event_id: uuid::Uuid,
    correlation_id: Option<uuid::Uuid>,
}

impl Cause for Caused {
    fn event_id(&self) -> uuid::Uuid {
        self.event_id
    }
    fn correlation_id(&self) -> Option<uuid::Uuid> {
        self.correlation_id
    }
}

impl<A, S> Clone for AsyncRepository<A, S> {
    fn clone(&self) -> Self {
        AsyncRepository {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<A, S> AsyncRepository<A, S>
where
    A: Aggregate + Send + 'static,
    A::Events: Send,
    S: EventStore + 'static,
{
    /// Wraps a repository, with its settings: a repository built with a
    /// [state cache](Repository#the-state-cache) keeps it, shared by every clone of the
    /// wrapper.
    ///
    /// ```
    /// use es_core::asynchronous::AsyncRepository;
    /// use es_core::{CacheOptions, MemoryStore, Repository};
    /// # use es_core::doc_support::Account;
    /// use std::sync::Arc;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let accounts = AsyncRepository::new(
    ///     Repository::<Account, _>::new(Arc::new(MemoryStore::new()))
    ///         .with_cache(CacheOptions::default()),
    /// );
    /// accounts.execute("7", |a| a.deposit(100)).await.unwrap();
    /// accounts.clone().execute("7", |a| a.deposit(1)).await.unwrap();
    /// assert_eq!(accounts.repository().cache_stats().unwrap().hits, 1);
    /// # }
    /// ```
    pub fn new(repository: Repository<A, S>) -> Self {
        AsyncRepository {
            inner: Arc::new(repository),
        }
    }

    /// Runs `f` with the repository and the id, off the async threads; a runtime that is
    /// shutting down (the call did not run) is a store error.
    async fn call<R: Send + 'static, Er: FromStoreError + Send + 'static>(
        &self,
        id: impl Into<String>,
        f: impl FnOnce(&Repository<A, S>, &str) -> Result<R, Er> + Send + 'static,
    ) -> Result<R, Er> {
        let (repository, id) = (Arc::clone(&self.inner), id.into());
        blocking(move || f(&repository, &id))
            .await
            .unwrap_or_else(|| Err(Er::from_store(shutting_down())))
    }

    /// The synchronous repository, for code that is already off the async threads.
    pub fn repository(&self) -> &Repository<A, S> {
        &self.inner
    }

    /// [`Repository::execute`], off the async threads. Dropping the future does not stop
    /// the command (see [the module's notes on cancellation](self#cancellation)).
    pub async fn execute<T, E, F>(
        &self,
        id: impl Into<String>,
        command: F,
    ) -> Result<Executed<A>, CommandError<E>>
    where
        F: FnMut(&A) -> Result<T, E> + Send + 'static,
        T: IntoEvents<A::Events>,
        E: Send + 'static,
    {
        self.execute_with(id, Metadata::new(), command).await
    }

    /// [`Repository::execute_with`] (with metadata: who, why, correlation), off the async
    /// threads.
    pub async fn execute_with<T, E, F>(
        &self,
        id: impl Into<String>,
        metadata: Metadata,
        command: F,
    ) -> Result<Executed<A>, CommandError<E>>
    where
        F: FnMut(&A) -> Result<T, E> + Send + 'static,
        T: IntoEvents<A::Events>,
        E: Send + 'static,
    {
        self.call(id, move |repository, id| {
            repository.execute_with(id, metadata, command)
        })
        .await
    }

    /// [`Repository::execute_expecting`] (only if the instance is still at `version`), off
    /// the async threads.
    pub async fn execute_expecting<T, E, F>(
        &self,
        id: impl Into<String>,
        version: u64,
        metadata: Metadata,
        command: F,
    ) -> Result<Executed<A>, CommandError<E>>
    where
        F: FnMut(&A) -> Result<T, E> + Send + 'static,
        T: IntoEvents<A::Events>,
        E: Send + 'static,
    {
        self.call(id, move |repository, id| {
            repository.execute_expecting(id, version, metadata, command)
        })
        .await
    }

    /// [`Repository::execute_caused_by`] (a reaction to `cause`, at most once), off the
    /// async threads. The future keeps only the cause's ids, so that it is `Send` whatever
    /// holds the event (an `Rc`).
    pub fn execute_caused_by<T, E, F>(
        &self,
        id: impl Into<String>,
        cause: impl Cause,
        command: F,
    ) -> impl Future<Output = Result<Executed<A>, CommandError<E>>> + '_
    where
        F: FnMut(&A) -> Result<T, E> + Send + 'static,
        T: IntoEvents<A::Events>,
        E: Send + 'static,
    {
        self.execute_caused_by_as(id, cause, String::new(), command)
    }

    /// [`Repository::execute_caused_by_as`] (one of several named reactions to `cause` on
    /// one instance, each at most once), off the async threads. The future keeps only the
    /// cause's ids, so that it is `Send` whatever holds the event (an `Rc`).
    pub fn execute_caused_by_as<T, E, F>(
        &self,
        id: impl Into<String>,
        cause: impl Cause,
        reaction: impl Into<String>,
        command: F,
    ) -> impl Future<Output = Result<Executed<A>, CommandError<E>>> + '_
    where
        F: FnMut(&A) -> Result<T, E> + Send + 'static,
        T: IntoEvents<A::Events>,
        E: Send + 'static,
    {
        let (id, reaction): (String, String) = (id.into(), reaction.into());
        // what the reaction needs of its cause, taken before the future is made
        let cause = Caused {
            event_id: cause.event_id(),
            correlation_id: cause.correlation_id(),
        };
        async move {
            self.call(id, move |repository, id| {
                repository.execute_caused_by_as(id, &cause, &reaction, command)
            })
            .await
        }
    }

    /// [`Repository::load`], off the async threads.
    pub async fn load(&self, id: impl Into<String>) -> Result<Loaded<A>, LoadError> {
        self.call(id, move |repository, id| repository.load(id))
            .await
    }

    /// [`Repository::load_at`], off the async threads.
    pub async fn load_at(
        &self,
        id: impl Into<String>,
        version: u64,
    ) -> Result<Loaded<A>, LoadError> {
        self.call(id, move |repository, id| repository.load_at(id, version))
            .await
    }

    /// [`Repository::load_as_of`] (the state as it was at `timestamp`), off the async
    /// threads.
    pub async fn load_as_of(
        &self,
        id: impl Into<String>,
        timestamp: chrono::DateTime<chrono::Utc>,
    ) -> Result<Loaded<A>, LoadError> {
        self.call(id, move |repository, id| {
            repository.load_as_of(id, timestamp)
        })
        .await
    }

    /// [`Repository::history`], off the async threads.
    pub async fn history(
        &self,
        id: impl Into<String>,
    ) -> Result<Vec<Envelope<A::Events>>, LoadError> {
        self.call(id, move |repository, id| repository.history(id))
            .await
    }
}

/// Events of the global log from a position on, then live, as a `Stream`. Dropping it
/// stops the blocking task that feeds it (within about 100 ms).
///
/// ```
/// use es_core::asynchronous::subscribe;
/// use es_core::subscription::Filter;
/// use es_core::{EventStore, ExpectedVersion, MemoryStore, NewEvent};
/// use std::future::poll_fn;
/// use std::pin::Pin;
/// use std::sync::Arc;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let store = Arc::new(MemoryStore::new());
/// let mut feed = subscribe(store.clone(), 1, Filter::all());
/// store.append("cart-1", ExpectedVersion::Any, vec![NewEvent::new("CartCreated", 1, b"{}".to_vec())]).unwrap();
/// // `futures::StreamExt::next` does the same
/// let next = poll_fn(|cx| futures_core::Stream::poll_next(Pin::new(&mut feed), cx)).await;
/// assert_eq!(next.unwrap().unwrap().event_type, "CartCreated");
/// # }
/// ```
pub struct EventFeed {
    rx: tokio::sync::mpsc::Receiver<Result<RecordedEvent, StoreError>>,
}

impl EventFeed {
    /// The next event, waiting for it. `None` after an error was delivered.
    pub async fn next_event(&mut self) -> Option<Result<RecordedEvent, StoreError>> {
        self.rx.recv().await
    }
}

impl futures_core::Stream for EventFeed {
    type Item = Result<RecordedEvent, StoreError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

/// Events buffered between the blocking reader and the stream's consumer.
const FEED_BUFFER: usize = 256;
/// How often the blocking reader looks whether the stream was dropped.
const FEED_POLL: Duration = Duration::from_millis(100);

/// Subscribes to the global log from `from_position` (1 for all of it): catch-up, then
/// live, filtered by `filter`. Each subscription reads on a thread of its own while it
/// lives, not on tokio's blocking pool: subscriptions as many as the pool's threads would
/// otherwise leave the repository's calls waiting for ever on a `current_thread` runtime.
/// An error ends the stream after it is delivered (also when no thread can be started).
pub fn subscribe<S>(store: S, from_position: u64, filter: Filter) -> EventFeed
where
    S: EventStore + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(FEED_BUFFER);
    let report = tx.clone();
    let started = std::thread::Builder::new()
        .name("es-event-feed".into())
        .spawn(move || {
            let mut subscription = Subscription::new(&store, from_position).with_filter(filter);
            while !tx.is_closed() {
                match subscription.next_timeout(FEED_POLL) {
                    Ok(Some(event)) => {
                        if tx.blocking_send(Ok(event)).is_err() {
                            return;
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e));
                        return;
                    }
                }
            }
        });
    if let Err(e) = started {
        let _ = report.try_send(Err(StoreError::Io(e)));
    }
    EventFeed { rx }
}
