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
//!
//! # When a handler fails
//!
//! A failure names the event it failed on: [`ProjectionError::ReadModel`] carries the
//! failing event's position, stream and type (handlers of a [`TransactionalProjection`]
//! say which event failed by returning an [`EventFailure`]). What happens next is the
//! projection's [`FailurePolicy`], set with [`WithCheckpoint::on_failure`]:
//!
//! - [`FailurePolicy::Stop`] (the default): the run stops with the error; the checkpoint
//!   is saved at the event before the failing one (a [`TransactionalProjection`] of one's
//!   own, which commits a batch or nothing, keeps it before the batch), so the next run
//!   starts at the failing event. Fix the handler (or the data it depends on) and run
//!   again. Nothing is skipped silently, and nothing handled is handled again.
//! - [`FailurePolicy::Retry`]: the event is tried again a number of times with a growing
//!   pause (for a failure that goes away: a database restarting), then the run stops.
//! - [`FailurePolicy::Park`]: the event is recorded in a [`DeadLetters`] store with the
//!   error, and the projection goes on with the next event. Parked events can be listed,
//!   and replayed with [`WithCheckpoint::replay_parked`] once the handler is fixed.
//!
//! A process manager is a projection whose handler runs commands; one event whose command
//! keeps failing stops it by default, and parking is the way to let it go on while the
//! event waits for a person.

use crate::envelope::RecordedEvent;
use crate::store::{EventStore, StoreError};
use crate::subscription::{Filter, Pass};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use uuid::Uuid;

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

    /// The checkpoint with the id of the event at its position, when the read model
    /// records it (see [`Mark`]). The default records none: `event_id` is `None`.
    fn checkpoint_mark(&mut self) -> Result<Mark, BoxError> {
        Ok(Mark::at(self.checkpoint()?))
    }

    /// [`apply_batch`](Self::apply_batch), recording the checkpoint with the id of the
    /// last event read. The default records the position only.
    fn apply_batch_marked(
        &mut self,
        events: &[RecordedEvent],
        checkpoint: Mark,
    ) -> Result<(), BoxError> {
        self.apply_batch(events, checkpoint.position)
    }
}

/// A checkpoint and the id of the event at its position.
///
/// A position alone cannot tell that the log was replaced under it: after a crash of a
/// store whose acknowledged appends were not yet durable (the file store in
/// `Durability::Periodic` or `None`), new appends take the positions of the lost events,
/// and a projection resuming from a saved position would skip them. With the event's id
/// the runner checks, before it reads on, that the event at the checkpoint is the one the
/// read model took into account, and stops with [`ProjectionError::HistoryReplaced`]
/// otherwise. [`WithCheckpoint`] records marks through [`CheckpointStore::save_mark`];
/// `MemoryCheckpoints` and the file store's `FileCheckpoints` keep them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Mark {
    /// The position of the last event taken into account (0 for none).
    pub position: u64,
    /// That event's id, when recorded.
    pub event_id: Option<Uuid>,
}

impl Mark {
    /// A position without an event id.
    pub fn at(position: u64) -> Self {
        Mark {
            position,
            event_id: None,
        }
    }
}

/// Durable checkpoints by projection name, for at-least-once projections.
pub trait CheckpointStore {
    /// The saved checkpoint (0 when none).
    fn load(&self, name: &str) -> Result<u64, BoxError>;
    /// Saves a checkpoint.
    fn save(&self, name: &str, position: u64) -> Result<(), BoxError>;

    /// The saved checkpoint with its event's id, when saved with one (see [`Mark`]). The
    /// default knows positions only.
    fn load_mark(&self, name: &str) -> Result<Mark, BoxError> {
        Ok(Mark::at(self.load(name)?))
    }

    /// Saves a checkpoint with its event's id. The default saves the position only.
    fn save_mark(&self, name: &str, mark: Mark) -> Result<(), BoxError> {
        self.save(name, mark.position)
    }
}

/// Checkpoints in memory (lost with the process), for tests. Keeps each checkpoint's
/// event id ([`Mark`]).
#[derive(Debug, Default)]
pub struct MemoryCheckpoints(Mutex<HashMap<String, Mark>>);

impl CheckpointStore for MemoryCheckpoints {
    fn load(&self, name: &str) -> Result<u64, BoxError> {
        Ok(self.load_mark(name)?.position)
    }

    fn save(&self, name: &str, position: u64) -> Result<(), BoxError> {
        self.save_mark(name, Mark::at(position))
    }

    fn load_mark(&self, name: &str) -> Result<Mark, BoxError> {
        Ok(self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .copied()
            .unwrap_or_default())
    }

    fn save_mark(&self, name: &str, mark: Mark) -> Result<(), BoxError> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_owned(), mark);
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
            fn load_mark(&self, name: &str) -> Result<Mark, BoxError> {
                (**self).load_mark(name)
            }
            fn save_mark(&self, name: &str, mark: Mark) -> Result<(), BoxError> {
                (**self).save_mark(name, mark)
            }
        }
    )*};
}
forward_checkpoints!(&C, Arc<C>, Box<C>);

/// A handler's failure on one event: which event, and why. Return it (boxed) from
/// [`TransactionalProjection::apply_batch`] so that the error a run reports names the
/// event; [`WithCheckpoint`] wraps its handler's errors in it.
#[derive(Debug, thiserror::Error)]
#[error("{event_type} at position {position} of stream `{stream_id}`: {source}")]
pub struct EventFailure {
    /// Global position of the failing event.
    pub position: u64,
    /// Its stream.
    pub stream_id: String,
    /// Its type.
    pub event_type: String,
    /// What the handler reported.
    #[source]
    pub source: BoxError,
}

impl EventFailure {
    /// The failure of `event` with `source`.
    pub fn new(event: &RecordedEvent, source: BoxError) -> Self {
        EventFailure {
            position: event.position,
            stream_id: event.stream_id.clone(),
            event_type: event.event_type.clone(),
            source,
        }
    }
}

/// Another instance of the same projection applied the batch first (it moved the shared
/// checkpoint): nothing was applied here. A read model shared by competing instances (two
/// processes, for availability) returns it from
/// [`TransactionalProjection::apply_batch`], itself or as the source of its own error. A
/// run ([`ProjectionRunner::run_to_head`] and the like) reports it; a projection running
/// in the background ([`ProjectionRunner::spawn`]) reads the checkpoint again and goes
/// on, as the standby it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the checkpoint of projection `{name}` is at {found}, not {expected}: another instance applied this batch"
)]
pub struct CheckpointMoved {
    /// The projection.
    pub name: String,
    /// The checkpoint this instance started the batch from.
    pub expected: u64,
    /// The checkpoint found.
    pub found: u64,
}

/// The checkpoint store of a [`WithCheckpoint`] failed to load or save the checkpoint: the
/// read model's own handler did not fail. Its source is the checkpoint store's error
/// (which names the file or table).
#[derive(Debug, thiserror::Error)]
#[error("{action} the checkpoint of projection `{name}`: {source}")]
pub struct CheckpointFailed {
    /// The projection.
    pub name: String,
    /// `"loading"` or `"saving"`.
    pub action: &'static str,
    /// The checkpoint store's error.
    #[source]
    pub source: BoxError,
}

impl ProjectionError {
    /// Whether another instance applied the batch (a [`CheckpointMoved`] anywhere in the
    /// error's chain).
    pub fn is_checkpoint_moved(&self) -> bool {
        let ProjectionError::ReadModel { source, .. } = self else {
            return false;
        };
        let mut next: Option<&(dyn std::error::Error + 'static)> = Some(source.as_ref());
        while let Some(e) = next {
            if e.is::<CheckpointMoved>() {
                return true;
            }
            next = e.source();
        }
        false
    }
}

/// What a projection does when its handler fails on an event.
#[derive(Clone, Default)]
pub enum FailurePolicy {
    /// Stop the run with the error (the default).
    #[default]
    Stop,
    /// Try the event again up to `attempts` more times, pausing `backoff`, then twice
    /// that, and so on; then stop.
    Retry {
        /// Further attempts after the first failure.
        attempts: u32,
        /// The first pause.
        backoff: Duration,
    },
    /// Record the event and the error in a dead-letter store and go on.
    Park(Arc<dyn DeadLetters>),
}

impl std::fmt::Debug for FailurePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FailurePolicy::Stop => f.write_str("Stop"),
            FailurePolicy::Retry { attempts, backoff } => f
                .debug_struct("Retry")
                .field("attempts", attempts)
                .field("backoff", backoff)
                .finish(),
            FailurePolicy::Park(_) => f.write_str("Park(..)"),
        }
    }
}

/// An event a projection could not handle, set aside.
#[derive(Debug, Clone, PartialEq)]
pub struct Parked {
    /// The event.
    pub event: RecordedEvent,
    /// The handler's error, as text.
    pub error: String,
}

/// Where parked events wait, by projection name. Implement it over a table or a file to
/// keep them across restarts; [`MemoryDeadLetters`] keeps them in memory.
pub trait DeadLetters: Send + Sync {
    /// Sets `event` aside for projection `name`.
    fn park(&self, name: &str, parked: Parked) -> Result<(), BoxError>;
    /// The events parked for `name`, in log order.
    fn parked(&self, name: &str) -> Result<Vec<Parked>, BoxError>;
    /// Removes the event at `position` from `name`'s parked events.
    fn remove(&self, name: &str, position: u64) -> Result<(), BoxError>;
}

/// Parked events in memory (lost with the process).
#[derive(Debug, Default)]
pub struct MemoryDeadLetters(Mutex<HashMap<String, Vec<Parked>>>);

impl DeadLetters for MemoryDeadLetters {
    fn park(&self, name: &str, parked: Parked) -> Result<(), BoxError> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let list = map.entry(name.to_owned()).or_default();
        if !list
            .iter()
            .any(|p| p.event.position == parked.event.position)
        {
            list.push(parked);
            list.sort_by_key(|p| p.event.position);
        }
        Ok(())
    }

    fn parked(&self, name: &str) -> Result<Vec<Parked>, BoxError> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        Ok(map.get(name).cloned().unwrap_or_default())
    }

    fn remove(&self, name: &str, position: u64) -> Result<(), BoxError> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(list) = map.get_mut(name) {
            list.retain(|p| p.event.position != position);
        }
        Ok(())
    }
}

/// An at-least-once projection: `P` updated event by event, its checkpoint saved under
/// `name` in `C` after each batch. When the handler fails on an event, the checkpoint is
/// saved at the event before it (when the batch handled one) and the run stops there: the
/// next run starts at the failing event.
///
/// The checkpoint says what the read model has taken into account, so it must last as
/// long as the read model does: a read model held in memory starts empty in each process,
/// and a checkpoint kept in a file would make it skip the history before it. Give an
/// in-memory read model [`MemoryCheckpoints`] (it reads the log from the start in each
/// process), or keep the read model itself where the checkpoint is kept; a read model in
/// a database saved in one transaction with its checkpoint implements
/// [`TransactionalProjection`] instead.
pub struct WithCheckpoint<P, C> {
    /// The read model.
    pub projection: P,
    name: String,
    checkpoints: C,
    policy: FailurePolicy,
}

impl<P: Projection, C: CheckpointStore> WithCheckpoint<P, C> {
    /// Joins a projection to its checkpoint, saved under `name`. A failing event stops
    /// the run ([`FailurePolicy::Stop`]) unless [`WithCheckpoint::on_failure`] says
    /// otherwise. The checkpoint store may restrict names: the file store's
    /// `FileCheckpoints` takes 1 to 128 ASCII letters, digits, `-` or `_`, and refuses
    /// another name when the run first loads the checkpoint.
    pub fn new(projection: P, name: impl Into<String>, checkpoints: C) -> Self {
        WithCheckpoint {
            projection,
            name: name.into(),
            checkpoints,
            policy: FailurePolicy::Stop,
        }
    }

    /// Sets what happens when the handler fails on an event.
    ///
    /// ```
    /// use es_core::projection::{
    ///     BoxError, FailurePolicy, MemoryCheckpoints, MemoryDeadLetters, Projection,
    ///     ProjectionRunner, WithCheckpoint,
    /// };
    /// use es_core::{EventStore, ExpectedVersion, MemoryStore, NewEvent, RecordedEvent};
    /// use std::sync::Arc;
    ///
    /// struct Picky(u32);
    /// impl Projection for Picky {
    ///     fn handle(&mut self, e: &RecordedEvent) -> Result<(), BoxError> {
    ///         if e.event_type == "Bad" { return Err("cannot handle Bad".into()) }
    ///         self.0 += 1;
    ///         Ok(())
    ///     }
    ///     fn reset(&mut self) -> Result<(), BoxError> { self.0 = 0; Ok(()) }
    /// }
    ///
    /// let store = MemoryStore::new();
    /// for t in ["Good", "Bad", "Good"] {
    ///     store.append("s-1", ExpectedVersion::Any, vec![NewEvent::new(t, 1, b"{}".to_vec())]).unwrap();
    /// }
    /// let dead = Arc::new(MemoryDeadLetters::default());
    /// let projection = WithCheckpoint::new(Picky(0), "picky", MemoryCheckpoints::default())
    ///     .on_failure(FailurePolicy::Park(dead.clone()));
    /// let mut runner = ProjectionRunner::new(&store, projection);
    /// assert_eq!(runner.run_to_head().unwrap(), 3);
    /// assert_eq!(runner.projection().projection.0, 2);
    /// let parked = es_core::projection::DeadLetters::parked(&*dead, "picky").unwrap();
    /// assert_eq!(parked[0].event.position, 2);
    /// ```
    pub fn on_failure(mut self, policy: FailurePolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The projection's name (its checkpoint's and its parked events').
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs the handler again on every parked event of this projection, in log order;
    /// those it now handles are removed from the dead letters. Returns how many remain.
    /// Without [`FailurePolicy::Park`] there is nothing parked: 0.
    pub fn replay_parked(&mut self) -> Result<usize, BoxError> {
        let FailurePolicy::Park(dead) = &self.policy else {
            return Ok(0);
        };
        let dead = Arc::clone(dead);
        let mut remaining = 0;
        for p in dead.parked(&self.name)? {
            match self.projection.handle(&p.event) {
                Ok(()) => dead.remove(&self.name, p.event.position)?,
                Err(_) => remaining += 1,
            }
        }
        Ok(remaining)
    }

    /// Handles one event under the failure policy.
    fn handle_one(&mut self, e: &RecordedEvent) -> Result<(), BoxError> {
        let mut error = match self.projection.handle(e) {
            Ok(()) => return Ok(()),
            Err(error) => error,
        };
        match &self.policy {
            FailurePolicy::Stop => {}
            FailurePolicy::Retry { attempts, backoff } => {
                let mut pause = *backoff;
                for _ in 0..*attempts {
                    std::thread::sleep(pause);
                    pause = pause.saturating_mul(2);
                    match self.projection.handle(e) {
                        Ok(()) => return Ok(()),
                        Err(again) => error = again,
                    }
                }
            }
            FailurePolicy::Park(dead) => {
                let parked = Parked {
                    event: e.clone(),
                    error: error.to_string(),
                };
                return dead.park(&self.name, parked);
            }
        }
        Err(Box::new(EventFailure::new(e, error)))
    }
}

impl<P: Projection, C: CheckpointStore> TransactionalProjection for WithCheckpoint<P, C> {
    fn checkpoint(&mut self) -> Result<u64, BoxError> {
        let loaded = self.checkpoints.load(&self.name);
        loaded.map_err(|e| self.failed("loading", e))
    }

    fn apply_batch(&mut self, events: &[RecordedEvent], checkpoint: u64) -> Result<(), BoxError> {
        self.apply_batch_marked(events, Mark::at(checkpoint))
    }

    fn reset(&mut self) -> Result<(), BoxError> {
        self.projection.reset()?;
        let saved = self.checkpoints.save_mark(&self.name, Mark::default());
        saved.map_err(|e| self.failed("saving", e))
    }

    fn checkpoint_mark(&mut self) -> Result<Mark, BoxError> {
        let loaded = self.checkpoints.load_mark(&self.name);
        loaded.map_err(|e| self.failed("loading", e))
    }

    fn apply_batch_marked(
        &mut self,
        events: &[RecordedEvent],
        checkpoint: Mark,
    ) -> Result<(), BoxError> {
        for (i, e) in events.iter().enumerate() {
            if let Err(error) = self.handle_one(e) {
                // the events before the failing one are taken into account: the checkpoint
                // moves to the last of them, so that a run again (with the same read model)
                // starts at the failing event instead of handling them a second time
                if let Some(handled) = i.checked_sub(1).map(|last| &events[last]) {
                    let mark = Mark {
                        position: handled.position,
                        event_id: Some(handled.event_id),
                    };
                    let saved = self.checkpoints.save_mark(&self.name, mark);
                    saved.map_err(|e| self.failed("saving", e))?;
                }
                return Err(error);
            }
        }
        let saved = self.checkpoints.save_mark(&self.name, checkpoint);
        saved.map_err(|e| self.failed("saving", e))
    }
}

impl<P, C> WithCheckpoint<P, C> {
    /// The checkpoint store's `error`, said to be the checkpoint's (not the handler's).
    fn failed(&self, action: &'static str, error: BoxError) -> BoxError {
        Box::new(CheckpointFailed {
            name: self.name.clone(),
            action,
            source: error,
        })
    }
}

/// A read model shared between the thread that keeps it up to date and the code that
/// queries it (a web handler, say): a projection spawned with
/// [`ProjectionRunner::spawn`] moves into its thread, and a clone of this handle stays
/// behind to read it.
///
/// ```
/// use es_core::projection::{BoxError, MemoryCheckpoints, Projection, ProjectionRunner, Shared, WithCheckpoint};
/// use es_core::{EventStore, ExpectedVersion, MemoryStore, NewEvent, RecordedEvent};
/// use std::sync::Arc;
/// use std::time::Duration;
///
/// #[derive(Default)]
/// struct Count(u64);
/// impl Projection for Count {
///     fn handle(&mut self, _: &RecordedEvent) -> Result<(), BoxError> { self.0 += 1; Ok(()) }
///     fn reset(&mut self) -> Result<(), BoxError> { self.0 = 0; Ok(()) }
/// }
///
/// let store = Arc::new(MemoryStore::new());
/// let view = Shared::new(WithCheckpoint::new(Count::default(), "count", MemoryCheckpoints::default()));
/// let running = ProjectionRunner::new(store.clone(), view.clone()).spawn();
/// store.append("s-1", ExpectedVersion::Any, vec![NewEvent::new("E", 1, b"{}".to_vec())]).unwrap();
/// assert!(running.wait_for(1, Duration::from_secs(5)));
/// assert_eq!(view.read().projection.0, 1);          // read while it keeps up
/// running.stop().unwrap();
/// ```
pub struct Shared<P>(Arc<std::sync::RwLock<P>>);

impl<P> Clone for Shared<P> {
    fn clone(&self) -> Self {
        Shared(Arc::clone(&self.0))
    }
}

impl<P> Shared<P> {
    /// Shares `projection`.
    pub fn new(projection: P) -> Self {
        Shared(Arc::new(std::sync::RwLock::new(projection)))
    }

    /// Reads the read model; the projection waits for the guard before its next batch.
    pub fn read(&self) -> std::sync::RwLockReadGuard<'_, P> {
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes the read model (to replay parked events, say).
    pub fn write(&self) -> std::sync::RwLockWriteGuard<'_, P> {
        self.0.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl<P: TransactionalProjection> TransactionalProjection for Shared<P> {
    fn checkpoint(&mut self) -> Result<u64, BoxError> {
        self.write().checkpoint()
    }

    fn apply_batch(&mut self, events: &[RecordedEvent], checkpoint: u64) -> Result<(), BoxError> {
        self.write().apply_batch(events, checkpoint)
    }

    fn reset(&mut self) -> Result<(), BoxError> {
        self.write().reset()
    }

    fn checkpoint_mark(&mut self) -> Result<Mark, BoxError> {
        self.write().checkpoint_mark()
    }

    fn apply_batch_marked(
        &mut self,
        events: &[RecordedEvent],
        checkpoint: Mark,
    ) -> Result<(), BoxError> {
        self.write().apply_batch_marked(events, checkpoint)
    }
}

/// Why a projection run stopped.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// Reading the log failed.
    #[error("reading the event log: {0}")]
    Store(#[from] StoreError),
    /// The read model failed at `position` (the failing event's, when the handler named
    /// it with an [`EventFailure`]; otherwise the first of the batch that failed).
    #[error(
        "projection failed at position {position}{}: {source}",
        describe(stream_id, event_type)
    )]
    ReadModel {
        /// Where it failed.
        position: u64,
        /// The failing event's stream, when known.
        stream_id: Option<String>,
        /// The failing event's type, when known.
        event_type: Option<String>,
        /// What it reported.
        #[source]
        source: BoxError,
    },
    /// The read model has taken into account events up to `checkpoint`, but the log ends
    /// before it, at `head`: either the checkpoint is not one of this log (saved for
    /// another store, or by another read model under the same name), or events it has
    /// seen are no longer in the log (a crash took back appends that were acknowledged but
    /// not yet durable, or a repair cut the log). Reading on would skip the events that
    /// take those positions again. Check where the checkpoint came from, or rebuild the
    /// read model ([`ProjectionRunner::rebuild`]). Checked only with stores whose head can
    /// move back ([`EventStore::head_can_move_back`]).
    #[error(
        "the read model's checkpoint, position {checkpoint}, is past the end of the log, position {head}: either the checkpoint is not one of this log (saved for another store, or under this name by another read model), or the log no longer holds events the read model has taken into account (a crash took back appends that were not yet durable, or a repair cut the log), and then the read model must be rebuilt. (A store opened read-only shows the log as it was when opened: if the checkpoint came from the writer since, open the store again instead.)"
    )]
    CheckpointAhead {
        /// The read model's checkpoint.
        checkpoint: u64,
        /// The log's last position.
        head: u64,
    },
    /// The event at the read model's checkpoint is not the one it took into account:
    /// the log there was replaced (a crash took back appends that were not yet durable,
    /// and new appends took their positions; or a repair cut the log and it grew again).
    /// Reading on would skip the new events at and before the checkpoint. Rebuild the
    /// read model ([`ProjectionRunner::rebuild`]). Checked once per runner, when the
    /// checkpoint was saved with its event's id ([`Mark`]).
    #[error(
        "the read model's checkpoint, position {checkpoint}, was taken at event {expected}, but the log holds event {found} there: the log was replaced after the checkpoint (a crash took back appends that were not yet durable, and new appends took their positions, or a repair cut the log); rebuild the read model"
    )]
    HistoryReplaced {
        /// The read model's checkpoint.
        checkpoint: u64,
        /// The id of the event it took into account there.
        expected: Uuid,
        /// The id of the event the log holds there now.
        found: Uuid,
    },
}

fn describe(stream_id: &Option<String>, event_type: &Option<String>) -> String {
    match (stream_id, event_type) {
        (Some(s), Some(t)) => format!(" ({t} of stream `{s}`)"),
        _ => String::new(),
    }
}

impl ProjectionError {
    /// A read model's error for a batch starting at `first`: the failing event's place
    /// when the error names it.
    fn read_model(first: u64, source: BoxError) -> Self {
        match source.downcast::<EventFailure>() {
            Ok(f) => ProjectionError::ReadModel {
                position: f.position,
                stream_id: Some(f.stream_id),
                event_type: Some(f.event_type),
                source: f.source,
            },
            Err(source) => ProjectionError::ReadModel {
                position: first,
                stream_id: None,
                event_type: None,
                source,
            },
        }
    }
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
    /// Whether the event at the checkpoint was found to be the one marked (once per
    /// runner: later checkpoints are this runner's own).
    mark_checked: bool,
}

impl<S: EventStore, P: TransactionalProjection> ProjectionRunner<S, P> {
    /// A runner with no filter and batches of 256 events.
    pub fn new(store: S, projection: P) -> Self {
        ProjectionRunner {
            store,
            projection,
            filter: Filter::all(),
            batch_size: 256,
            mark_checked: false,
        }
    }

    /// Hands the projection only events that pass `filter` (its checkpoint still moves
    /// past the others).
    pub fn with_filter(mut self, filter: Filter) -> Self {
        self.filter = filter;
        self
    }

    /// Events per batch (per checkpoint save or transaction). A batch that ends inside
    /// an append of many events reads on to the end of that append (at most 16,384 events
    /// more): a store reads such an append whole, so each batch stopping inside it would
    /// read it again from its start.
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
            .map_err(|source| ProjectionError::read_model(0, source))
    }

    /// The checkpoint, checked once per runner against the event marked at it: the log
    /// must still hold that event there.
    fn checked_checkpoint(&mut self) -> Result<u64, ProjectionError> {
        if self.mark_checked {
            return self.checkpoint();
        }
        let mark = self
            .projection
            .checkpoint_mark()
            .map_err(|source| ProjectionError::read_model(0, source))?;
        if let (Some(expected), true) = (mark.event_id, mark.position > 0) {
            // an event at the checkpoint that cannot be read (damage) is not this run's to
            // read: the run reads from the next one, as it did before checkpoints had ids,
            // and the check is made again on the next run
            let at = match self
                .store
                .read_all(mark.position)
                .and_then(|mut events| events.next().transpose())
            {
                Ok(at) => at,
                Err(e) => {
                    tracing::warn!(
                        position = mark.position,
                        "cannot read the event at the checkpoint to check it: {e}"
                    );
                    return Ok(mark.position);
                }
            };
            match at {
                Some(e) if e.position == mark.position && e.event_id != expected => {
                    return Err(ProjectionError::HistoryReplaced {
                        checkpoint: mark.position,
                        expected,
                        found: e.event_id,
                    });
                }
                Some(e) if e.position == mark.position => {}
                // the log ends before the checkpoint: reported by the run, as ever
                _ => return Ok(mark.position),
            }
        }
        self.mark_checked = true;
        Ok(mark.position)
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
    ///
    /// Other instances of an exactly-once projection that follow the log meanwhile take
    /// part in the rebuild: a batch one of them applied first ([`CheckpointMoved`]) is
    /// theirs, and this run reads the checkpoint again and goes on, as a projection in
    /// the background does, instead of returning that error after its reset has been
    /// committed (a caller retrying would reset the read model again).
    pub fn rebuild(&mut self) -> Result<u64, ProjectionError> {
        self.projection
            .reset()
            .map_err(|source| ProjectionError::read_model(0, source))?;
        loop {
            match self.run_to_head() {
                Err(e) if e.is_checkpoint_moved() => continue,
                done => return done,
            }
        }
    }

    fn run(&mut self, until: Until) -> Result<u64, ProjectionError> {
        self.run_while(until, &|_| true)
    }

    /// [`run`](Self::run), asking `go_on` with the checkpoint after each batch whether to
    /// read the next: a background projection stops between batches when asked, rather
    /// than after a whole catch-up (which appends faster than its handler never end).
    fn run_while(
        &mut self,
        until: Until,
        go_on: &dyn Fn(u64) -> bool,
    ) -> Result<u64, ProjectionError> {
        let mut checkpoint = self.checked_checkpoint()?;
        loop {
            let (batch, last_read, last_id, done) = self.read_batch(checkpoint, until)?;
            if last_read == checkpoint {
                // nothing after the checkpoint: a log that ends before it has lost events
                // the read model has seen (asked only here, where nothing was read, and
                // only of a store whose head can move back: a replica's merely lags)
                if self.store.head_can_move_back() {
                    let head = self.store.head_position()?;
                    if head < checkpoint {
                        return Err(ProjectionError::CheckpointAhead { checkpoint, head });
                    }
                }
                return Ok(checkpoint);
            }
            let span = tracing::debug_span!(
                "es.projection.batch",
                from = checkpoint.saturating_add(1),
                to = last_read,
                events = batch.len()
            );
            let mark = Mark {
                position: last_read,
                event_id: last_id,
            };
            span.in_scope(|| self.projection.apply_batch_marked(&batch, mark))
                .map_err(|source| {
                    ProjectionError::read_model(checkpoint.saturating_add(1), source)
                })?;
            checkpoint = last_read;
            if done || !go_on(checkpoint) {
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
    ) -> Result<(Vec<RecordedEvent>, u64, Option<Uuid>, bool), ProjectionError> {
        let mut batch = Vec::new();
        let mut last = checkpoint;
        let mut last_id = None;
        let mut pass = Pass::new(self.batch_size);
        for event in self.store.read_all(checkpoint.saturating_add(1))? {
            let event = match event {
                Ok(event) => event,
                // the events read before the error are taken into account first; the
                // next batch starts at the event that failed, and reports it
                Err(_) if last > checkpoint => return Ok((batch, last, last_id, false)),
                Err(e) => return Err(e.into()),
            };
            if pass.ends_before(&event) {
                return Ok((batch, last, last_id, false));
            }
            let past = match until {
                Until::Head => false,
                Until::Position(p) => event.position > p,
                Until::Time(t) => event.timestamp > t,
            };
            if past {
                return Ok((batch, last, last_id, true));
            }
            last = event.position;
            last_id = Some(event.event_id);
            pass.take(&event);
            if self.filter.matches(&event) {
                batch.push(event);
            }
        }
        Ok((batch, last, last_id, true))
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
            handle: Some(handle),
        }
    }

    /// The background loop: catch up, publish the checkpoint, wait for appends.
    fn follow(mut self, stop: &AtomicBool, progress: &AtomicU64) -> Outcome<S, P> {
        let result = (|| {
            loop {
                let run = self.run_while(Until::Head, &|checkpoint| {
                    progress.store(checkpoint, Ordering::SeqCst);
                    !stop.load(Ordering::SeqCst)
                });
                let checkpoint = match run {
                    // a competing instance applied the batch: nothing was applied here; go
                    // on from its checkpoint, or stop as asked
                    Err(e) if e.is_checkpoint_moved() => {
                        if stop.load(Ordering::SeqCst) {
                            return Ok(());
                        }
                        continue;
                    }
                    run => run?,
                };
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
///
/// Dropped without [`stop`](Self::stop), a projection started with
/// [`ProjectionRunner::spawn`] goes on following the log, as a dropped `JoinHandle`'s
/// thread goes on; one started with [`ProjectionRunner::spawn_scoped`] is asked to stop
/// after its current batch, since its scope joins it on leaving (and would otherwise wait
/// for ever).
pub struct RunningProjection<'scope, S, P> {
    store: S,
    stop: Arc<AtomicBool>,
    progress: Arc<AtomicU64>,
    /// Taken by `stop`.
    handle: Option<Handle<'scope, Outcome<S, P>>>,
}

impl<S, P> Drop for RunningProjection<'_, S, P> {
    fn drop(&mut self) {
        if matches!(self.handle, Some(Handle::Scoped(_))) {
            self.stop.store(true, Ordering::SeqCst);
        }
    }
}

/// The progress of a running projection, cheap to clone into the code that reports it.
#[derive(Clone)]
pub struct Progress<S> {
    store: S,
    checkpoint: Arc<AtomicU64>,
}

impl<S: EventStore> Progress<S> {
    /// The last checkpoint the projection reached.
    pub fn checkpoint(&self) -> u64 {
        self.checkpoint.load(Ordering::SeqCst)
    }

    /// How many events of the log the projection has not reached yet.
    pub fn lag(&self) -> Result<u64, StoreError> {
        Ok(self
            .store
            .head_position()?
            .saturating_sub(self.checkpoint()))
    }
}

impl<S: EventStore + Clone, P: TransactionalProjection> RunningProjection<'_, S, P> {
    /// A handle on the projection's position and lag that outlives borrows of `self`.
    pub fn progress(&self) -> Progress<S> {
        Progress {
            store: self.store.clone(),
            checkpoint: Arc::clone(&self.progress),
        }
    }
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
            Some(Handle::Owned(h)) => h.is_finished(),
            Some(Handle::Scoped(h)) => h.is_finished(),
            None => true,
        }
    }

    /// Waits until the checkpoint reaches `position` or `timeout` passes; returns whether
    /// it did.
    pub fn wait_for(&self, position: u64, timeout: Duration) -> bool {
        let deadline = crate::backend::deadline_after(timeout);
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
    pub fn stop(mut self) -> Result<ProjectionRunner<S, P>, ProjectionError> {
        self.stop.store(true, Ordering::SeqCst);
        let joined = match self.handle.take() {
            Some(Handle::Owned(h)) => h.join(),
            Some(Handle::Scoped(h)) => h.join(),
            // taken only here, once
            None => unreachable!("a running projection is stopped once"),
        };
        match joined {
            Ok((runner, Ok(()))) => Ok(runner),
            Ok((_, Err(e))) => Err(e),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}
