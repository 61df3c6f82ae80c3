//! Projections: read models kept up to date from the global log, resuming from a durable
//! checkpoint.
//!
//! A checkpoint is the global position of the last event a projection has taken into
//! account (0 for none). Two ways to keep it:
//!
//! - **At least once**: a [`Projection`] plus a [`CheckpointStore`], joined by
//!   [`WithCheckpoint`]. The checkpoint is saved after the read model is updated, so a
//!   crash between the two makes the events since the last checkpoint run again: handlers
//!   must tolerate seeing an event twice.
//! - **Exactly once**: a [`TransactionalProjection`] stores its checkpoint in the same
//!   transaction as its update (a SQL read model does both in one commit), so each event
//!   takes effect exactly once across crashes.
//!
//! A [`ProjectionRunner`] drives either kind: to the head, up to a position or a point in
//! time, from zero (rebuild), or live in a background thread.

use crate::envelope::RecordedEvent;
use crate::store::{EventStore, StoreError};
use crate::subscription::Filter;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// A boxed error from a read model.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A read model updated one event at a time.
pub trait Projection {
    /// Takes one event into account.
    fn handle(&mut self, event: &RecordedEvent) -> Result<(), BoxError>;
    /// Forgets everything, before a rebuild from zero.
    fn reset(&mut self) -> Result<(), BoxError>;
}

/// A read model that commits each batch of events together with its checkpoint.
pub trait TransactionalProjection {
    /// The position of the last event taken into account (0 for none).
    fn checkpoint(&mut self) -> Result<u64, BoxError>;
    /// Takes `events` into account and records `checkpoint`, atomically. `events` may be
    /// empty when only filtered-out events were read.
    fn apply_batch(&mut self, events: &[RecordedEvent], checkpoint: u64) -> Result<(), BoxError>;
    /// Forgets everything and sets the checkpoint to 0.
    fn reset(&mut self) -> Result<(), BoxError>;
}

/// Durable checkpoints by projection name, for at-least-once projections.
pub trait CheckpointStore {
    /// The saved checkpoint (0 when none).
    fn load(&self, name: &str) -> Result<u64, BoxError>;
    /// Saves a checkpoint.
    fn save(&self, name: &str, position: u64) -> Result<(), BoxError>;
}

/// Checkpoints in memory (lost with the process), for tests.
#[derive(Debug, Default)]
pub struct MemoryCheckpoints(Mutex<HashMap<String, u64>>);

impl CheckpointStore for MemoryCheckpoints {
    fn load(&self, name: &str) -> Result<u64, BoxError> {
        Ok(*self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .unwrap_or(&0))
    }

    fn save(&self, name: &str, position: u64) -> Result<(), BoxError> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_owned(), position);
        Ok(())
    }
}

macro_rules! forward_checkpoints {
    ($($ty:ty),*) => {$(
        impl<C: CheckpointStore + ?Sized> CheckpointStore for $ty {
            fn load(&self, name: &str) -> Result<u64, BoxError> {
                (**self).load(name)
            }
            fn save(&self, name: &str, position: u64) -> Result<(), BoxError> {
                (**self).save(name, position)
            }
        }
    )*};
}
forward_checkpoints!(&C, Arc<C>, Box<C>);

/// An at-least-once projection: `P` updated event by event, its checkpoint saved under
/// `name` in `C` after each batch.
pub struct WithCheckpoint<P, C> {
    /// The read model.
    pub projection: P,
    name: String,
    checkpoints: C,
}

impl<P: Projection, C: CheckpointStore> WithCheckpoint<P, C> {
    /// Joins a projection to its checkpoint, saved under `name`.
    pub fn new(projection: P, name: impl Into<String>, checkpoints: C) -> Self {
        WithCheckpoint {
            projection,
            name: name.into(),
            checkpoints,
        }
    }
}

impl<P: Projection, C: CheckpointStore> TransactionalProjection for WithCheckpoint<P, C> {
    fn checkpoint(&mut self) -> Result<u64, BoxError> {
        self.checkpoints.load(&self.name)
    }

    fn apply_batch(&mut self, events: &[RecordedEvent], checkpoint: u64) -> Result<(), BoxError> {
        for e in events {
            self.projection.handle(e)?;
        }
        self.checkpoints.save(&self.name, checkpoint)
    }

    fn reset(&mut self) -> Result<(), BoxError> {
        self.projection.reset()?;
        self.checkpoints.save(&self.name, 0)
    }
}

/// Why a projection run stopped.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// Reading the log failed.
    #[error("reading the event log: {0}")]
    Store(#[from] StoreError),
    /// The read model failed at or after `position`.
    #[error("projection failed at position {position}: {source}")]
    ReadModel {
        /// The first position of the batch that failed.
        position: u64,
        /// What it reported.
        #[source]
        source: BoxError,
    },
}

/// Where a run stops.
#[derive(Debug, Clone, Copy)]
enum Until {
    Head,
    Position(u64),
    Time(DateTime<Utc>),
}

/// Drives a projection over a store's log.
///
/// ```
/// use es_core::{EventStore, ExpectedVersion, MemoryStore, NewEvent, RecordedEvent};
/// use es_core::projection::{BoxError, MemoryCheckpoints, Projection, ProjectionRunner, WithCheckpoint};
///
/// #[derive(Default)]
/// struct Count(u64);
/// impl Projection for Count {
///     fn handle(&mut self, _: &RecordedEvent) -> Result<(), BoxError> { self.0 += 1; Ok(()) }
///     fn reset(&mut self) -> Result<(), BoxError> { self.0 = 0; Ok(()) }
/// }
///
/// let store = MemoryStore::new();
/// for _ in 0..3 {
///     store.append("cart-1", ExpectedVersion::Any, vec![NewEvent::new("Added", 1, b"{}".to_vec())]).unwrap();
/// }
/// let mut runner = ProjectionRunner::new(&store, WithCheckpoint::new(Count::default(), "count", MemoryCheckpoints::default()));
/// assert_eq!(runner.run_to_head().unwrap(), 3);
/// assert_eq!(runner.projection().projection.0, 3);
/// ```
pub struct ProjectionRunner<S, P> {
    store: S,
    projection: P,
    filter: Filter,
    batch_size: usize,
}

impl<S: EventStore, P: TransactionalProjection> ProjectionRunner<S, P> {
    /// A runner with no filter and batches of 256 events.
    pub fn new(store: S, projection: P) -> Self {
        ProjectionRunner {
            store,
            projection,
            filter: Filter::all(),
            batch_size: 256,
        }
    }

    /// Hands the projection only events that pass `filter` (its checkpoint still moves
    /// past the others).
    pub fn with_filter(mut self, filter: Filter) -> Self {
        self.filter = filter;
        self
    }

    /// Events per batch (per checkpoint save or transaction).
    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// The projection.
    pub fn projection(&self) -> &P {
        &self.projection
    }

    /// The projection, mutably.
    pub fn projection_mut(&mut self) -> &mut P {
        &mut self.projection
    }

    /// Takes the projection back.
    pub fn into_projection(self) -> P {
        self.projection
    }

    /// How many events of the log the projection has not taken into account yet.
    pub fn lag(&mut self) -> Result<u64, ProjectionError> {
        let checkpoint = self.checkpoint()?;
        Ok(self.store.head_position()?.saturating_sub(checkpoint))
    }

    fn checkpoint(&mut self) -> Result<u64, ProjectionError> {
        self.projection
            .checkpoint()
            .map_err(|source| ProjectionError::ReadModel {
                position: 0,
                source,
            })
    }

    /// Processes every event up to the current head; returns the new checkpoint.
    pub fn run_to_head(&mut self) -> Result<u64, ProjectionError> {
        self.run(Until::Head)
    }

    /// Processes events up to and including `position`.
    pub fn run_until_position(&mut self, position: u64) -> Result<u64, ProjectionError> {
        self.run(Until::Position(position))
    }

    /// Processes events recorded at or before `time`: a read model as it was then.
    pub fn run_until_time(&mut self, time: DateTime<Utc>) -> Result<u64, ProjectionError> {
        self.run(Until::Time(time))
    }

    /// Resets the read model and its checkpoint, then processes the whole log.
    pub fn rebuild(&mut self) -> Result<u64, ProjectionError> {
        self.projection
            .reset()
            .map_err(|source| ProjectionError::ReadModel {
                position: 0,
                source,
            })?;
        self.run_to_head()
    }

    fn run(&mut self, until: Until) -> Result<u64, ProjectionError> {
        let mut checkpoint = self.checkpoint()?;
        loop {
            let (batch, last_read, done) = self.read_batch(checkpoint, until)?;
            if last_read == checkpoint {
                return Ok(checkpoint);
            }
            self.projection
                .apply_batch(&batch, last_read)
                .map_err(|source| ProjectionError::ReadModel {
                    position: checkpoint + 1,
                    source,
                })?;
            checkpoint = last_read;
            if done {
                return Ok(checkpoint);
            }
        }
    }

    /// Reads up to one batch after `checkpoint`: the events that pass the filter, the
    /// position of the last event read, and whether the stop point was reached.
    fn read_batch(
        &self,
        checkpoint: u64,
        until: Until,
    ) -> Result<(Vec<RecordedEvent>, u64, bool), ProjectionError> {
        let mut batch = Vec::new();
        let mut last = checkpoint;
        let mut read = 0;
        for event in self.store.read_all(checkpoint + 1)? {
            let event = event?;
            let past = match until {
                Until::Head => false,
                Until::Position(p) => event.position > p,
                Until::Time(t) => event.timestamp > t,
            };
            if past {
                return Ok((batch, last, true));
            }
            last = event.position;
            read += 1;
            if self.filter.matches(&event) {
                batch.push(event);
            }
            if read >= self.batch_size {
                return Ok((batch, last, false));
            }
        }
        Ok((batch, last, true))
    }
}

impl<S, P> ProjectionRunner<S, P>
where
    S: EventStore + Clone + Send,
    P: TransactionalProjection + Send,
{
    /// Runs the projection in a background thread that follows the log live until
    /// stopped. `S` is cloned to report the lag (use an `Arc` or a reference).
    pub fn spawn(self) -> RunningProjection<'static, S, P>
    where
        S: 'static,
        P: 'static,
    {
        self.start(|job| Handle::Owned(std::thread::spawn(job)))
    }

    /// Like [`ProjectionRunner::spawn`], in a scoped thread, so that the store may be a
    /// reference to a local.
    pub fn spawn_scoped<'scope>(
        self,
        scope: &'scope std::thread::Scope<'scope, '_>,
    ) -> RunningProjection<'scope, S, P>
    where
        S: 'scope,
        P: 'scope,
    {
        self.start(|job| Handle::Scoped(scope.spawn(job)))
    }

    /// Starts [`ProjectionRunner::follow`] on a thread made by `spawn`.
    fn start<'scope>(
        self,
        spawn: impl FnOnce(Job<'scope, S, P>) -> Handle<'scope, Outcome<S, P>>,
    ) -> RunningProjection<'scope, S, P>
    where
        S: 'scope,
        P: 'scope,
    {
        let store = self.store.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let progress = Arc::new(AtomicU64::new(0));
        let (s, p) = (Arc::clone(&stop), Arc::clone(&progress));
        let handle = spawn(Box::new(move || self.follow(&s, &p)));
        RunningProjection {
            store,
            stop,
            progress,
            handle,
        }
    }

    /// The background loop: catch up, publish the checkpoint, wait for appends.
    fn follow(mut self, stop: &AtomicBool, progress: &AtomicU64) -> Outcome<S, P> {
        let result = (|| {
            loop {
                let checkpoint = self.run_to_head()?;
                progress.store(checkpoint, Ordering::SeqCst);
                if stop.load(Ordering::SeqCst) {
                    return Ok(());
                }
                self.store
                    .wait_for_head(checkpoint, Duration::from_millis(50))?;
            }
        })();
        (self, result)
    }
}

type Outcome<S, P> = (ProjectionRunner<S, P>, Result<(), ProjectionError>);

/// The body of a background projection thread.
type Job<'scope, S, P> = Box<dyn FnOnce() -> Outcome<S, P> + Send + 'scope>;

enum Handle<'scope, T> {
    Owned(JoinHandle<T>),
    Scoped(std::thread::ScopedJoinHandle<'scope, T>),
}

/// A projection running in a background thread.
pub struct RunningProjection<'scope, S, P> {
    store: S,
    stop: Arc<AtomicBool>,
    progress: Arc<AtomicU64>,
    handle: Handle<'scope, Outcome<S, P>>,
}

impl<S: EventStore, P: TransactionalProjection> RunningProjection<'_, S, P> {
    /// The last checkpoint the thread reached.
    pub fn checkpoint(&self) -> u64 {
        self.progress.load(Ordering::SeqCst)
    }

    /// How many events of the log the projection has not reached yet.
    pub fn lag(&self) -> Result<u64, StoreError> {
        Ok(self
            .store
            .head_position()?
            .saturating_sub(self.checkpoint()))
    }

    /// Whether the thread has stopped (after [`RunningProjection::stop`] or an error).
    pub fn is_finished(&self) -> bool {
        match &self.handle {
            Handle::Owned(h) => h.is_finished(),
            Handle::Scoped(h) => h.is_finished(),
        }
    }

    /// Waits until the checkpoint reaches `position` or `timeout` passes; returns whether
    /// it did.
    pub fn wait_for(&self, position: u64, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        while self.checkpoint() < position {
            if std::time::Instant::now() >= deadline || self.is_finished() {
                return self.checkpoint() >= position;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        true
    }

    /// Stops after the current batch and returns the runner (with the projection), or
    /// the error that stopped the thread.
    pub fn stop(self) -> Result<ProjectionRunner<S, P>, ProjectionError> {
        self.stop.store(true, Ordering::SeqCst);
        let joined = match self.handle {
            Handle::Owned(h) => h.join(),
            Handle::Scoped(h) => h.join(),
        };
        match joined {
            Ok((runner, Ok(()))) => Ok(runner),
            Ok((_, Err(e))) => Err(e),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}
