//! # es-core
//!
//! The runtime of an event-sourcing framework: events with stable names and versioned
//! schemas, aggregates whose state is a fold over their events, commands as plain methods,
//! a [`Repository`] that loads, decides and appends with optimistic concurrency, the
//! [`EventStore`] contract every backend implements, and [`MemoryStore`].
//!
//! Most users depend on this crate and a store (`es-store-fs`), and write:
//!
//! ```ignore
//! use es_core::prelude::*;
//! ```
//!
//! With the default `derive` feature, `#[event]` and `#[derive(Aggregate)]` are re-exported
//! from `es-macros`, with `#[fingerprint]`, which adds an `Apply` handler's code to its
//! aggregate's snapshot fingerprint. The `testing` feature adds the store conformance
//! suite, a given/when/then helper for aggregate tests and the schema check
//! ([`schema`] describes what it checks; `docs/schema-safety.md` in the source repository
//! is its manual).
//!
//! Diagnostics go through the [`tracing`](https://docs.rs/tracing) crate: every repository
//! command, append, snapshot, subscription poll and projection batch runs in a span that
//! names its stream, versions and positions (`es.command`, `es.append`, `es.snapshot`,
//! `es.poll`, `es.projection.batch`), and warnings (a snapshot ignored because its state
//! no longer matches the code, a failure to close a store cleanly) are events. A service's
//! existing subscriber shows them; `tracing`'s `log` feature forwards them to a `log`
//! logger.
#![warn(missing_docs)]

pub mod aggregate;
#[cfg(feature = "tokio")]
pub mod asynchronous;
pub mod backend;
pub mod cache;
pub mod envelope;
pub mod event;
pub mod memory;
pub mod projection;
pub mod repository;
pub mod schema;
pub mod snapshot;
pub mod store;
pub mod subscription;
#[cfg(feature = "testing")]
pub mod testing;

// hidden: the compiler would offer its types in users' own errors ("the following other
// types implement `EventSet`"); the README says where its source is
#[doc(hidden)]
pub mod doc_support;
mod macro_support;

pub use aggregate::{Aggregate, Apply, SnapshotPolicy};
pub use cache::{CacheOptions, CacheStats};
pub use envelope::{
    Cause, Envelope, EventDecodeError, Metadata, NewEvent, RecordedEvent, RecordedEventRef,
    stream_kind,
};
pub use event::{
    DecodeError, EncodeError, EncodedEvent, Event, EventSet, IntoEvents, JsonError, MigrationFn,
    UpcastError,
};
pub use memory::MemoryStore;
pub use projection::{
    CheckpointFailed, CheckpointMoved, CheckpointStore, DeadLetters, EventFailure, FailurePolicy,
    Mark, Projection, ProjectionError, ProjectionRunner, Shared, TransactionalProjection,
    WithCheckpoint,
};
pub use repository::{CommandError, Executed, LoadError, Loaded, Repository, SnapshotStats};
pub use snapshot::{Snapshot, SnapshotStore};
pub use store::{
    AppendResult, Corruption, DataLocation, EventStore, EventStream, ExpectedVersion, Limits,
    StoreError, StreamEnd,
};
pub use subscription::{Filter, Subscription};

#[cfg(feature = "derive")]
pub use es_macros::{Aggregate, event, fingerprint};

/// What generated code and most users import.
pub mod prelude {
    pub use crate::{
        Aggregate, Apply, CommandError, Envelope, Event, EventSet, EventStore, ExpectedVersion,
        Loaded, MemoryStore, Metadata, Repository, UpcastError,
    };
    // `Aggregate` above is both the trait and, with `derive`, the derive macro.
    #[cfg(feature = "derive")]
    pub use es_macros::{event, fingerprint};
}

/// Paths the macros' generated code uses, so that users need not depend on serde.
#[doc(hidden)]
pub mod __private {
    pub use crate::macro_support::*;
    pub use serde;
    pub use serde_json;
}

/// The crate's own types re-exported for convenience: UUIDs and timestamps.
pub use chrono;
pub use uuid;
