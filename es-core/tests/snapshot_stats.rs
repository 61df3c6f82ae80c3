//! A snapshot that cannot be written does not fail the command that crossed
//! `snapshot_every`, and is not silent either: the repository counts it, with the reason.

use es_core::MemoryStore;
use es_core::prelude::*;
use std::collections::HashMap;

#[event]
#[derive(Debug, Clone, PartialEq)]
pub struct Moved {
    pub x: u32,
    pub y: u32,
}

#[event]
#[derive(Debug, Clone, PartialEq)]
pub enum BoardEvent {
    Moved(Moved),
}

/// Visits per square: JSON cannot encode a map whose keys are pairs.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize, Aggregate)]
#[aggregate(kind = "board", event = BoardEvent, snapshot_every = 2)]
pub struct Board {
    pub visits: HashMap<(u32, u32), u32>,
}

impl Apply<Moved> for Board {
    fn apply(&mut self, e: &Moved) {
        *self.visits.entry((e.x, e.y)).or_default() += 1;
    }
}

/// The same, keyed by text: its snapshots are written.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize, Aggregate)]
#[aggregate(kind = "board", event = BoardEvent, snapshot_every = 2)]
pub struct TextBoard {
    pub visits: HashMap<String, u32>,
}

impl Apply<Moved> for TextBoard {
    fn apply(&mut self, e: &Moved) {
        *self.visits.entry(format!("{},{}", e.x, e.y)).or_default() += 1;
    }
}

#[test]
fn snapshots_that_cannot_be_written_are_counted_with_the_reason() {
    let boards = Repository::<Board, _>::new(MemoryStore::new());
    for n in 0..4 {
        boards
            .execute("1", |_| {
                Ok::<_, std::convert::Infallible>(Moved { x: n, y: 1 })
            })
            .unwrap();
    }
    let stats = boards.snapshot_stats();
    assert_eq!((stats.written, stats.failed), (0, 2), "{stats:?}");
    let why = stats.last_failure.unwrap();
    assert!(
        why.contains("board-1") && why.contains("version 4"),
        "{why}"
    );
    // the events are stored all the same
    assert_eq!(boards.load("1").unwrap().version, 4);

    let text = Repository::<TextBoard, _>::new(boards.store());
    text.execute("2", |_| {
        Ok::<_, std::convert::Infallible>(Moved { x: 0, y: 0 })
    })
    .unwrap();
    text.execute("2", |_| {
        Ok::<_, std::convert::Infallible>(Moved { x: 1, y: 0 })
    })
    .unwrap();
    assert_eq!(
        text.snapshot_stats(),
        es_core::SnapshotStats {
            written: 1,
            failed: 0,
            last_failure: None
        }
    );
}
