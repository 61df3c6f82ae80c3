//! A background projection stops between batches when asked, also while appends come
//! faster than its handler, and one dropped without `stop` ends its scope.

use es_core::projection::{
    BoxError, MemoryCheckpoints, Projection, ProjectionRunner, WithCheckpoint,
};
use es_core::{EventStore, ExpectedVersion, MemoryStore, NewEvent, RecordedEvent};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A handler slower than the appends: 1 ms per event.
struct Slow(u64);

impl Projection for Slow {
    fn handle(&mut self, _: &RecordedEvent) -> Result<(), BoxError> {
        std::thread::sleep(Duration::from_millis(1));
        self.0 += 1;
        Ok(())
    }
    fn reset(&mut self) -> Result<(), BoxError> {
        self.0 = 0;
        Ok(())
    }
}

fn event() -> NewEvent {
    NewEvent::new("Noted", 1, b"{}".to_vec())
}

#[test]
fn stop_returns_between_batches_while_appends_outrun_the_handler() {
    let store = MemoryStore::new();
    for _ in 0..2_000 {
        store
            .append("s-1", ExpectedVersion::Any, vec![event()])
            .unwrap();
    }
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        // appends keep coming, faster than the handler takes them
        scope.spawn(|| {
            while !done.load(Ordering::SeqCst) {
                store
                    .append("s-2", ExpectedVersion::Any, vec![event()])
                    .unwrap();
                std::thread::sleep(Duration::from_micros(100));
            }
        });
        let runner = ProjectionRunner::new(
            &store,
            WithCheckpoint::new(Slow(0), "slow", MemoryCheckpoints::default()),
        )
        .with_batch_size(50);
        let running = runner.spawn_scoped(scope);
        std::thread::sleep(Duration::from_millis(200));
        let asked = Instant::now();
        let runner = running.stop().unwrap();
        let took = asked.elapsed();
        done.store(true, Ordering::SeqCst);
        assert!(took < Duration::from_secs(2), "stop took {took:?}");
        let handled = runner.projection().projection.0;
        assert!(handled > 0 && handled < 2_000, "{handled}");
    });
}

#[test]
fn a_running_projection_dropped_without_stop_ends_its_scope() {
    let store = MemoryStore::new();
    store
        .append("s-1", ExpectedVersion::Any, vec![event()])
        .unwrap();
    let started = Instant::now();
    std::thread::scope(|scope| {
        let runner = ProjectionRunner::new(
            &store,
            WithCheckpoint::new(Slow(0), "slow", MemoryCheckpoints::default()),
        );
        let running = runner.spawn_scoped(scope);
        std::thread::sleep(Duration::from_millis(20));
        drop(running);
    });
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// A read model whose checkpoint says the largest position (a sentinel cast to `u64`):
/// no panic and no replay from the start; nothing lies after it.
#[test]
fn a_checkpoint_at_the_largest_position_reads_nothing_and_does_not_panic() {
    use es_core::projection::{BoxError, TransactionalProjection};
    use es_core::{EventStore, ExpectedVersion, MemoryStore, NewEvent, ProjectionRunner};
    struct AtTheEnd(u64);
    impl TransactionalProjection for AtTheEnd {
        fn checkpoint(&mut self) -> Result<u64, BoxError> {
            Ok(u64::MAX)
        }
        fn apply_batch(
            &mut self,
            events: &[es_core::RecordedEvent],
            _: u64,
        ) -> Result<(), BoxError> {
            self.0 += events.len() as u64;
            Ok(())
        }
        fn reset(&mut self) -> Result<(), BoxError> {
            Ok(())
        }
    }
    let store = MemoryStore::new();
    store
        .append(
            "s-1",
            ExpectedVersion::Any,
            vec![NewEvent::new("E", 1, b"{}".to_vec())],
        )
        .unwrap();
    let mut runner = ProjectionRunner::new(&store, AtTheEnd(0));
    assert_eq!(runner.run_to_head().unwrap(), u64::MAX);
    assert_eq!(runner.projection().0, 0);
}

/// A read model shared with a competing instance: the other instance applies some
/// batches first (here every other one), and this one is told `CheckpointMoved`. Running
/// in the background, it reads the checkpoint again and goes on instead of ending.
#[test]
fn a_background_projection_goes_on_when_another_instance_applied_the_batch() {
    use es_core::projection::{CheckpointMoved, TransactionalProjection};

    struct Shared {
        checkpoint: u64,
        handled: u64,
        batches: u64,
    }
    impl TransactionalProjection for Shared {
        fn checkpoint(&mut self) -> Result<u64, BoxError> {
            Ok(self.checkpoint)
        }
        fn apply_batch(
            &mut self,
            events: &[RecordedEvent],
            checkpoint: u64,
        ) -> Result<(), BoxError> {
            self.batches += 1;
            if self.batches % 2 == 1 {
                // the other instance took this batch
                let expected = self.checkpoint;
                self.checkpoint = checkpoint;
                return Err(Box::new(CheckpointMoved {
                    name: "shared".into(),
                    expected,
                    found: checkpoint,
                }));
            }
            self.handled += events.len() as u64;
            self.checkpoint = checkpoint;
            Ok(())
        }
        fn reset(&mut self) -> Result<(), BoxError> {
            self.checkpoint = 0;
            Ok(())
        }
    }

    let store = MemoryStore::new();
    for _ in 0..100 {
        store
            .append("s-1", ExpectedVersion::Any, vec![event()])
            .unwrap();
    }
    std::thread::scope(|scope| {
        let runner = ProjectionRunner::new(
            &store,
            Shared {
                checkpoint: 0,
                handled: 0,
                batches: 0,
            },
        )
        .with_batch_size(10);
        let running = runner.spawn_scoped(scope);
        assert!(running.wait_for(100, Duration::from_secs(10)), "it stopped");
        let runner = running.stop().unwrap();
        assert_eq!(runner.projection().checkpoint, 100);
        assert_eq!(runner.projection().handled, 50);
    });
}

/// Asked to stop while a batch it loses to a competing instance is under way, a
/// background projection stops cleanly: nothing was applied here, and the runner comes
/// back with its read model.
#[test]
fn stopping_while_losing_a_batch_to_another_instance_is_a_clean_stop() {
    use es_core::projection::{CheckpointMoved, TransactionalProjection};
    use std::sync::mpsc;

    struct Losing(mpsc::Sender<()>);
    impl TransactionalProjection for Losing {
        fn checkpoint(&mut self) -> Result<u64, BoxError> {
            Ok(0)
        }
        fn apply_batch(&mut self, _: &[RecordedEvent], checkpoint: u64) -> Result<(), BoxError> {
            let _ = self.0.send(());
            std::thread::sleep(Duration::from_millis(200));
            Err(Box::new(CheckpointMoved {
                name: "losing".into(),
                expected: 0,
                found: checkpoint,
            }))
        }
        fn reset(&mut self) -> Result<(), BoxError> {
            Ok(())
        }
    }

    let store = MemoryStore::new();
    store
        .append("s-1", ExpectedVersion::Any, vec![event()])
        .unwrap();
    let (entered, inside) = mpsc::channel();
    std::thread::scope(|scope| {
        let running = ProjectionRunner::new(&store, Losing(entered)).spawn_scoped(scope);
        inside.recv().unwrap();
        assert!(running.stop().is_ok(), "a stop asked for ended in an error");
    });
}

/// Counts events, failing once on the event at `fail_at`.
struct FailsOnce {
    seen: Vec<u64>,
    fail_at: Option<u64>,
}

impl Projection for FailsOnce {
    fn handle(&mut self, e: &RecordedEvent) -> Result<(), BoxError> {
        if self.fail_at == Some(e.position) {
            self.fail_at = None;
            return Err("not now".into());
        }
        self.seen.push(e.position);
        Ok(())
    }
    fn reset(&mut self) -> Result<(), BoxError> {
        self.seen.clear();
        Ok(())
    }
}

/// A handler that fails in the middle of a batch: the events before it are checkpointed,
/// so that running again handles each event once (it used to hand the whole batch over
/// again, and a read model that counts counted them twice).
#[test]
fn a_failure_in_a_batch_checkpoints_the_events_handled_before_it() {
    use es_core::projection::CheckpointStore;
    let store = MemoryStore::new();
    for _ in 0..10 {
        store
            .append("s-1", ExpectedVersion::Any, vec![event()])
            .unwrap();
    }
    let checkpoints = MemoryCheckpoints::default();
    let projection = FailsOnce {
        seen: Vec::new(),
        fail_at: Some(4),
    };
    let mut runner = ProjectionRunner::new(
        &store,
        WithCheckpoint::new(projection, "once", &checkpoints),
    );
    let err = runner.run_to_head().unwrap_err();
    assert!(err.to_string().contains("not now"), "{err}");
    assert_eq!(checkpoints.load("once").unwrap(), 3);
    let mark = checkpoints.load_mark("once").unwrap();
    assert_eq!(mark.position, 3);
    assert!(mark.event_id.is_some());
    assert_eq!(runner.run_to_head().unwrap(), 10);
    assert_eq!(
        runner.projection().projection.seen,
        (1..=10).collect::<Vec<_>>()
    );
    // a failure on a batch's first event leaves the checkpoint where it was
    store
        .append("s-1", ExpectedVersion::Any, vec![event()])
        .unwrap();
    runner.projection_mut().projection.fail_at = Some(11);
    runner.run_to_head().unwrap_err();
    assert_eq!(checkpoints.load("once").unwrap(), 10);
    assert_eq!(runner.run_to_head().unwrap(), 11);
    assert_eq!(runner.projection().projection.seen.len(), 11);
}

/// An exactly-once projection whose other instance applies a batch first: the first
/// batch after the reset is applied elsewhere (the checkpoint moves under this one).
struct Contended {
    checkpoint: u64,
    /// Events applied here and by the other instance.
    here: u64,
    elsewhere: u64,
    contend: bool,
}

impl es_core::projection::TransactionalProjection for Contended {
    fn checkpoint(&mut self) -> Result<u64, BoxError> {
        Ok(self.checkpoint)
    }
    fn apply_batch(&mut self, events: &[RecordedEvent], checkpoint: u64) -> Result<(), BoxError> {
        if std::mem::take(&mut self.contend) {
            // the other instance applied this batch and moved the checkpoint
            self.elsewhere += events.len() as u64;
            let expected = self.checkpoint;
            self.checkpoint = checkpoint;
            return Err(Box::new(es_core::projection::CheckpointMoved {
                name: "contended".into(),
                expected,
                found: checkpoint,
            }));
        }
        self.here += events.len() as u64;
        self.checkpoint = checkpoint;
        Ok(())
    }
    fn reset(&mut self) -> Result<(), BoxError> {
        self.checkpoint = 0;
        self.here = 0;
        self.elsewhere = 0;
        self.contend = true;
        Ok(())
    }
}

/// A rebuild while another instance follows the log goes on when that instance applies a
/// batch first, as a projection in the background does: it returned `CheckpointMoved`
/// after its reset was committed, and a caller retrying reset the read model again.
#[test]
fn a_rebuild_goes_on_when_another_instance_applies_a_batch_first() {
    let store = MemoryStore::new();
    for _ in 0..10 {
        store
            .append("s-1", ExpectedVersion::Any, vec![event()])
            .unwrap();
    }
    let projection = Contended {
        checkpoint: 10,
        here: 0,
        elsewhere: 0,
        contend: false,
    };
    let mut runner = ProjectionRunner::new(&store, projection).with_batch_size(4);
    assert_eq!(runner.rebuild().unwrap(), 10);
    let p = runner.projection();
    assert_eq!((p.elsewhere, p.here, p.checkpoint), (4, 6, 10));
}
