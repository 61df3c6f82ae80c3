//! A small hand-written aggregate for the conformance suite: a counter whose events add
//! to it. Variants differ only in their snapshot settings.

use crate::event::{DecodeError, EncodeError, EncodedEvent, Event, EventSet, IntoEvents};
use crate::{Aggregate, SnapshotPolicy};
use serde::{Deserialize, Serialize};

/// Adds `n` to a counter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Added {
    /// How much.
    pub n: u64,
}

impl Event for Added {
    const NAME: &'static str = "Added";
    const VERSION: u32 = 1;
}

/// The counter's events.
#[derive(Debug, Clone, PartialEq)]
pub enum CounterEvent {
    /// See [`Added`].
    Added(Added),
}

impl EventSet for CounterEvent {
    const EVENT_TYPES: &'static [&'static str] = &["Added"];
    fn event_type(&self) -> &'static str {
        Added::NAME
    }
    fn schema_version(&self) -> u32 {
        Added::VERSION
    }
    fn encode(&self) -> Result<EncodedEvent, EncodeError> {
        let CounterEvent::Added(e) = self;
        EncodeError::encode(e)
    }
    fn decode(event_type: &str, version: u32, payload: &[u8]) -> Result<Option<Self>, DecodeError> {
        match event_type {
            Added::NAME => {
                Added::decode_stored(version, payload).map(|e| Some(CounterEvent::Added(e)))
            }
            other => Err(DecodeError::UnknownType {
                event_type: other.to_owned(),
                version,
            }),
        }
    }
}

impl IntoEvents<CounterEvent> for Added {
    fn into_events(self, out: &mut Vec<CounterEvent>) {
        out.push(CounterEvent::Added(self));
    }
}

macro_rules! counter {
    ($(#[$doc:meta])* $name:ident, $policy:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
        pub struct $name {
            /// Sum of what was added.
            pub total: u64,
            /// Number of events folded.
            pub events: u64,
        }

        impl Aggregate for $name {
            const KIND: &'static str = "counter";
            type Events = CounterEvent;
            fn apply_event(&mut self, event: &CounterEvent) {
                let CounterEvent::Added(e) = event;
                self.total += e.n;
                self.events += 1;
            }
            fn snapshot_policy() -> Option<SnapshotPolicy> {
                $policy
            }
            fn encode_snapshot(&self) -> Option<Result<Vec<u8>, String>> {
                Self::snapshot_policy()?;
                Some(serde_json::to_vec(self).map_err(|e| e.to_string()))
            }
            fn decode_snapshot(state: &[u8]) -> Option<Result<Self, String>> {
                Self::snapshot_policy()?;
                Some(serde_json::from_slice(state).map_err(|e| e.to_string()))
            }
        }

        impl $name {
            /// Adds `n`.
            pub fn add(&self, n: u64) -> Result<Added, std::convert::Infallible> {
                Ok(Added { n })
            }
        }
    };
}

counter!(
    /// A counter without snapshots.
    Counter,
    None
);
counter!(
    /// A counter snapshotted every 10 events, snapshot schema version 1.
    SnapCounter,
    Some(SnapshotPolicy { every: 10, snapshot_version: 1 })
);
counter!(
    /// The same counter at snapshot schema version 2: snapshots of version 1 are ignored.
    SnapCounterV2,
    Some(SnapshotPolicy { every: 10, snapshot_version: 2 })
);
