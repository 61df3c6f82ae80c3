// A state kept in snapshots may not have serde skip a field: restored from a snapshot it
// would hold the field's default, where a replay gives it its value.
use es_core::prelude::*;

#[event]
pub struct Added {
    pub n: u64,
}

#[event]
pub enum CounterEvent {
    Added(Added),
}

#[derive(Default, Aggregate, serde::Serialize, serde::Deserialize)]
#[aggregate(kind = "counter", event = CounterEvent, snapshot_every = 10)]
pub struct Counter {
    pub total: u64,
    #[serde(skip)]
    pub last: u64,
    #[serde(default, skip_deserializing)]
    pub seen: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(default, skip_serializing)]
    pub written: u64,
    // said to be left out of snapshots: accepted
    #[serde(skip)]
    #[aggregate(transient)]
    pub folded: u64,
    #[aggregate(kind = "x")]
    pub misplaced: u64,
    // said to be left out, but serde keeps it
    #[aggregate(transient)]
    pub kept: u64,
}

impl Apply<Added> for Counter {
    fn apply(&mut self, e: &Added) {
        self.total += e.n;
        self.last = e.n;
        self.seen += 1;
        self.folded += 1;
    }
}

fn main() {}
