//! The repository round-trips a hand-written aggregate (a bank account) on the in-memory
//! store, and every error path is typed: the domain's refusal, a conflict that outlives
//! the retries, an event that cannot be encoded, a stored event that cannot be decoded,
//! and the store's own errors.

use es_core::doc_support::{Account, AccountError, AccountEvent, Deposited, Withdrawn};
use es_core::testing::AggregateTest;
use es_core::{
    CommandError, DecodeError, EventStore, ExpectedVersion, LoadError, MemoryStore, Metadata,
    NewEvent, Repository, StoreError,
};

#[test]
fn a_bank_account_round_trips() {
    let accounts = Repository::<Account, _>::new(MemoryStore::new());
    let done = accounts.execute("7", |a| a.deposit(100)).unwrap();
    assert_eq!(
        (done.version, done.state.balance, done.attempts),
        (1, 100, 1)
    );
    accounts.execute("7", |a| a.withdraw(30)).unwrap();
    // several events at once, and none
    let both = accounts
        .execute("7", |a| {
            Ok::<_, AccountError>((a.deposit(5)?, a.withdraw(10)?))
        })
        .unwrap();
    assert_eq!(both.events.len(), 2);
    assert_eq!(both.appended.unwrap().len(), 2);
    let nothing = accounts
        .execute("7", |_| Ok::<_, AccountError>(()))
        .unwrap();
    assert!(nothing.appended.is_none());
    let account = accounts.load("7").unwrap();
    assert_eq!((account.balance, account.version), (65, 4));
    assert_eq!(accounts.load_at("7", 1).unwrap().balance, 100);
    assert_eq!(
        accounts.load_at("7", 99).unwrap().version,
        4,
        "capped at the stream's end"
    );
    let first_time = accounts.history("7").unwrap()[0].timestamp;
    assert_eq!(accounts.load_as_of("7", first_time).unwrap().balance, 100);
    assert_eq!(accounts.load("nobody").unwrap().version, 0);
    assert_eq!(accounts.stream_id("7"), "account-7");
}

#[test]
fn metadata_is_attached_to_every_event() {
    let accounts = Repository::<Account, _>::new(MemoryStore::new());
    let meta = Metadata::new()
        .with_actor("teller")
        .with("reason", "opening");
    accounts
        .execute_with("1", meta.clone(), |a| {
            Ok::<_, AccountError>(vec![a.deposit(1)?, a.deposit(2)?])
        })
        .unwrap();
    for e in accounts.history("1").unwrap() {
        assert_eq!(e.metadata, meta);
    }
}

#[test]
fn the_domain_error_is_returned_and_nothing_is_written() {
    let accounts = Repository::<Account, _>::new(MemoryStore::new());
    accounts.execute("1", |a| a.deposit(50)).unwrap();
    let err = accounts.execute("1", |a| a.withdraw(80)).unwrap_err();
    assert_eq!(
        err.rejected(),
        Some(&AccountError::InsufficientFunds {
            balance: 50,
            requested: 80
        })
    );
    assert!(err.to_string().contains("insufficient funds"), "{err}");
    assert_eq!(accounts.store().head_position().unwrap(), 1);
}

#[test]
fn a_conflict_that_outlives_the_retries_is_reported() {
    let accounts = Repository::<Account, _>::new(MemoryStore::new()).with_max_attempts(3);
    let rival = Repository::<Account, _>::new(accounts.store());
    let mut runs = 0;
    let err = accounts
        .execute("1", |a| {
            runs += 1;
            // another writer appends every time this command decides
            rival.execute("1", |r| r.deposit(1)).unwrap();
            a.deposit(10)
        })
        .unwrap_err();
    assert_eq!(runs, 3);
    match err {
        CommandError::Conflict {
            stream_id,
            attempts,
            actual,
            expected,
        } => {
            assert_eq!((stream_id.as_str(), attempts, actual), ("account-1", 3, 3));
            assert_eq!(expected, None);
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    // one conflict, then success: the retry sees the rival's event
    let mut raced = false;
    let done = accounts
        .execute("1", |a| {
            if !raced {
                raced = true;
                rival.execute("1", |r| r.deposit(1)).unwrap();
            }
            a.deposit(10)
        })
        .unwrap();
    assert_eq!((done.attempts, done.state.balance), (2, 14));
}

/// A command expecting a version the stream is not at (behind it, or ahead of it) does not
/// run, and the error names both versions rather than a stream that "kept changing".
#[test]
fn a_stale_or_future_expected_version_names_both_versions_and_runs_nothing() {
    use es_core::Metadata;
    let accounts = Repository::<Account, _>::new(MemoryStore::new());
    accounts.execute("7", |a| a.deposit(10)).unwrap();
    accounts.execute("7", |a| a.deposit(10)).unwrap();
    for stale in [0, 1, 5] {
        let mut ran = false;
        let err = accounts
            .execute_expecting("7", stale, Metadata::new(), |a| {
                ran = true;
                a.deposit(1)
            })
            .unwrap_err();
        assert!(!ran, "expecting {stale}: the command ran");
        assert!(
            matches!(
                err,
                CommandError::Conflict { attempts: 0, actual: 2, expected: Some(e), .. } if e == stale
            ),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(
            message.contains("at version 2")
                && message.contains(&format!("expected version {stale}"))
                && !message.contains("kept changing"),
            "{message}"
        );
    }
    assert_eq!(accounts.store().head_position().unwrap(), 2);
}

#[test]
fn an_undecodable_stored_event_names_stream_and_position() {
    let store = MemoryStore::new();
    store
        .append(
            "other-1",
            ExpectedVersion::Any,
            vec![NewEvent::new("Noise", 1, b"{}".to_vec())],
        )
        .unwrap();
    store
        .append(
            "account-1",
            ExpectedVersion::Any,
            vec![NewEvent::new("Deposited", 1, br#"{"amount":5}"#.to_vec())],
        )
        .unwrap();
    store
        .append(
            "account-1",
            ExpectedVersion::Any,
            vec![NewEvent::new("Closed", 1, b"{}".to_vec())],
        )
        .unwrap();
    store
        .append(
            "account-2",
            ExpectedVersion::Any,
            vec![NewEvent::new("Deposited", 9, b"{}".to_vec())],
        )
        .unwrap();
    store
        .append(
            "account-3",
            ExpectedVersion::Any,
            vec![NewEvent::new("Deposited", 1, br#"{"amount":"x"}"#.to_vec())],
        )
        .unwrap();
    let accounts = Repository::<Account, _>::new(&store);
    let LoadError::Decode(e) = accounts.load("1").unwrap_err() else {
        panic!()
    };
    assert_eq!(
        (e.stream_id.as_str(), e.stream_version, e.position),
        ("account-1", 2, 3)
    );
    assert!(
        matches!(e.error, DecodeError::UnknownType { ref event_type, version: 1 } if event_type == "Closed")
    );
    let text = e.to_string();
    assert!(
        text.contains("account-1") && text.contains("Closed") && text.contains("position 3"),
        "{text}"
    );
    let LoadError::Decode(e) = accounts.load("2").unwrap_err() else {
        panic!()
    };
    assert!(matches!(
        e.error,
        DecodeError::FutureVersion {
            version: 9,
            supported: 1,
            ..
        }
    ));
    let LoadError::Decode(e) = accounts.load("3").unwrap_err() else {
        panic!()
    };
    assert!(matches!(e.error, DecodeError::Payload { .. }));
    // a command on such a stream fails with the same decode error, before it runs
    let err = accounts.execute("1", |a| a.deposit(1)).unwrap_err();
    assert!(matches!(err, CommandError::Decode(_)), "{err:?}");
}

#[test]
fn store_errors_pass_through() {
    let accounts = Repository::<Account, _>::new(MemoryStore::new());
    let err = accounts.execute("bad\nid", |a| a.deposit(1)).unwrap_err();
    assert!(
        matches!(err, CommandError::Store(StoreError::InvalidStreamId { .. })),
        "{err:?}"
    );
    let err = accounts.load("bad\0id").unwrap_err();
    assert!(
        matches!(err, LoadError::Store(StoreError::InvalidStreamId { .. })),
        "{err:?}"
    );
}

/// An event whose serialization always fails.
#[derive(serde::Deserialize)]
struct Unencodable;

impl serde::Serialize for Unencodable {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom(
            "this event refuses to be written",
        ))
    }
}

impl es_core::Event for Unencodable {
    const NAME: &'static str = "Unencodable";
    const VERSION: u32 = 1;
}

#[test]
fn an_event_that_cannot_be_encoded_is_a_typed_error() {
    let err = es_core::EncodeError::encode(&Unencodable).unwrap_err();
    assert_eq!(err.event_type, "Unencodable");
    assert!(err.to_string().contains("refuses to be written"), "{err}");
}

#[test]
fn given_when_then() {
    AggregateTest::<Account>::given(vec![Deposited { amount: 100 }])
        .when(|a| a.withdraw(40))
        .then_expect_events(Withdrawn { amount: 40 });
    AggregateTest::<Account>::given((Deposited { amount: 10 }, Withdrawn { amount: 10 }))
        .when(|a| a.withdraw(1))
        .then_expect_error(AccountError::InsufficientFunds {
            balance: 0,
            requested: 1,
        });
    AggregateTest::<Account>::given_no_events()
        .when(|a| a.deposit(0))
        .then_expect_error_matching(|e| *e == AccountError::ZeroAmount);
    let state = AggregateTest::<Account>::given(AccountEvent::Deposited(Deposited { amount: 3 }))
        .when(|a| a.deposit(4))
        .then_expect_events(Deposited { amount: 4 });
    assert_eq!(state.balance, 7);
}

#[test]
#[should_panic(expected = "decided other events than expected")]
fn given_when_then_reports_other_events() {
    AggregateTest::<Account>::given(Deposited { amount: 100 })
        .when(|a| a.withdraw(40))
        .then_expect_events(Withdrawn { amount: 41 });
}

/// An empty id is refused: it would name the stream `account-`, which no instance should
/// share. Nothing is written.
#[test]
fn an_empty_id_is_refused() {
    let accounts = Repository::<Account, _>::new(MemoryStore::new());
    let err = accounts.execute("", |a| a.deposit(1)).unwrap_err();
    assert!(
        matches!(&err, CommandError::Store(StoreError::InvalidStreamId { reason, .. }) if reason.contains("empty")),
        "{err}"
    );
    assert!(matches!(
        accounts.load(""),
        Err(LoadError::Store(StoreError::InvalidStreamId { .. }))
    ));
    assert_eq!(accounts.store().head_position().unwrap(), 0);
}

/// The id of an instance back from its stream id.
#[test]
fn the_id_comes_back_from_a_stream_id() {
    use es_core::Aggregate;
    assert_eq!(Account::id_of(&Account::stream_id("7")), Some("7"));
    assert_eq!(Account::id_of("account-a-b"), Some("a-b"));
    assert_eq!(Account::id_of("account-"), None);
    assert_eq!(Account::id_of("accounts-1"), None);
    assert_eq!(Account::id_of("cart-1"), None);
}

mod failing_projections {
    use es_core::projection::{
        BoxError, DeadLetters, FailurePolicy, MemoryCheckpoints, MemoryDeadLetters, Projection,
        ProjectionError, ProjectionRunner, WithCheckpoint,
    };
    use es_core::{EventStore, ExpectedVersion, MemoryStore, NewEvent, RecordedEvent};
    use std::sync::Arc;
    use std::time::Duration;

    /// Counts events; fails on `Bad` events `failures` times (then handles them).
    struct Flaky {
        handled: Vec<u64>,
        failures: u32,
    }

    impl Projection for Flaky {
        fn handle(&mut self, e: &RecordedEvent) -> Result<(), BoxError> {
            if e.event_type == "Bad" && self.failures > 0 {
                self.failures -= 1;
                return Err(format!("cannot take event {}", e.position).into());
            }
            self.handled.push(e.position);
            Ok(())
        }
        fn reset(&mut self) -> Result<(), BoxError> {
            self.handled.clear();
            Ok(())
        }
    }

    fn store() -> MemoryStore {
        let store = MemoryStore::new();
        for (stream, t) in [
            ("a-1", "Good"),
            ("a-2", "Good"),
            ("b-7", "Bad"),
            ("a-1", "Good"),
        ] {
            store
                .append(
                    stream,
                    ExpectedVersion::Any,
                    vec![NewEvent::new(t, 1, b"{}".to_vec())],
                )
                .unwrap();
        }
        store
    }

    /// With a store whose head only moves forward, a checkpoint past the head is a
    /// lagging read (a replica), not a loss: the run waits for the log to catch up.
    #[test]
    fn a_checkpoint_past_the_head_of_a_store_that_only_moves_forward_is_not_an_error() {
        use es_core::projection::CheckpointStore;
        let store = store();
        let head = store.head_position().unwrap();
        let checkpoints = Arc::new(MemoryCheckpoints::default());
        checkpoints.save("flaky", head + 7).unwrap();
        let projection = WithCheckpoint::new(
            Flaky {
                handled: vec![],
                failures: 0,
            },
            "flaky",
            checkpoints.clone(),
        );
        let mut runner = ProjectionRunner::new(&store, projection);
        assert_eq!(runner.run_to_head().unwrap(), head + 7);
    }

    /// The failing event's position, stream and type, not the batch's first position.
    #[test]
    fn a_failure_names_the_failing_event_and_stops_by_default() {
        let store = store();
        let checkpoints = Arc::new(MemoryCheckpoints::default());
        let projection = WithCheckpoint::new(
            Flaky {
                handled: vec![],
                failures: u32::MAX,
            },
            "flaky",
            checkpoints.clone(),
        );
        let mut runner = ProjectionRunner::new(&store, projection);
        let err = runner.run_to_head().unwrap_err();
        match &err {
            ProjectionError::ReadModel {
                position,
                stream_id,
                event_type,
                ..
            } => {
                assert_eq!(*position, 3);
                assert_eq!(stream_id.as_deref(), Some("b-7"));
                assert_eq!(event_type.as_deref(), Some("Bad"));
            }
            other => panic!("{other}"),
        }
        assert!(
            err.to_string().contains("position 3 (Bad of stream `b-7`)"),
            "{err}"
        );
        // stopped: the checkpoint is at the event before the failing one, not past it
        assert_eq!(
            es_core::CheckpointStore::load(&checkpoints, "flaky").unwrap(),
            2
        );
    }

    #[test]
    fn retry_gets_past_a_passing_failure_and_stops_on_a_lasting_one() {
        let store = store();
        let retry = FailurePolicy::Retry {
            attempts: 3,
            backoff: Duration::from_millis(1),
        };
        let projection = WithCheckpoint::new(
            Flaky {
                handled: vec![],
                failures: 2,
            },
            "retry",
            MemoryCheckpoints::default(),
        )
        .on_failure(retry.clone());
        let mut runner = ProjectionRunner::new(&store, projection);
        assert_eq!(runner.run_to_head().unwrap(), 4);
        assert_eq!(runner.projection().projection.handled, vec![1, 2, 3, 4]);

        let projection = WithCheckpoint::new(
            Flaky {
                handled: vec![],
                failures: 10,
            },
            "retry",
            MemoryCheckpoints::default(),
        )
        .on_failure(retry);
        let mut runner = ProjectionRunner::new(&store, projection);
        let err = runner.run_to_head().unwrap_err();
        assert!(
            matches!(err, ProjectionError::ReadModel { position: 3, .. }),
            "{err}"
        );
    }

    #[test]
    fn park_sets_the_event_aside_goes_on_and_replays_it_later() {
        let store = store();
        let dead = Arc::new(MemoryDeadLetters::default());
        let projection = WithCheckpoint::new(
            Flaky {
                handled: vec![],
                failures: 1,
            },
            "parking",
            MemoryCheckpoints::default(),
        )
        .on_failure(FailurePolicy::Park(dead.clone()));
        let mut runner = ProjectionRunner::new(&store, projection);
        assert_eq!(runner.run_to_head().unwrap(), 4);
        assert_eq!(runner.projection().projection.handled, vec![1, 2, 4]);
        let parked = dead.parked("parking").unwrap();
        assert_eq!(parked.len(), 1);
        assert_eq!(parked[0].event.position, 3);
        assert!(parked[0].error.contains("cannot take event 3"));
        // the handler now takes it: replayed and removed
        assert_eq!(runner.projection_mut().replay_parked().unwrap(), 0);
        assert_eq!(runner.projection().projection.handled, vec![1, 2, 4, 3]);
        assert!(dead.parked("parking").unwrap().is_empty());
    }
}

/// What a [`Hooked`] store's hook makes of an append before the store sees it: an answer
/// in the store's place, or `None` to let the append through.
type AppendHook = Box<
    dyn Fn(
            &MemoryStore,
            &str,
            ExpectedVersion,
            &[NewEvent],
        ) -> Option<Result<es_core::AppendResult, StoreError>>
        + Send
        + Sync,
>;

/// A memory store whose appends go through a hook first, and whose stream reads take
/// `read_delay` (a database's round trip).
struct Hooked {
    inner: MemoryStore,
    on_append: AppendHook,
    read_delay: std::time::Duration,
}

impl Hooked {
    fn new(
        on_append: impl Fn(
            &MemoryStore,
            &str,
            ExpectedVersion,
            &[NewEvent],
        ) -> Option<Result<es_core::AppendResult, StoreError>>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        Hooked {
            inner: MemoryStore::new(),
            on_append: Box::new(on_append),
            read_delay: std::time::Duration::ZERO,
        }
    }
}

/// The conflict another process's append would cause.
fn conflict(
    inner: &MemoryStore,
    stream_id: &str,
    expected: ExpectedVersion,
) -> Option<Result<es_core::AppendResult, StoreError>> {
    Some(inner.stream_version(stream_id).and_then(|actual| {
        Err(StoreError::Conflict {
            stream_id: stream_id.to_owned(),
            expected,
            actual,
        })
    }))
}

impl EventStore for Hooked {
    fn append(
        &self,
        stream_id: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<es_core::AppendResult, StoreError> {
        match (self.on_append)(&self.inner, stream_id, expected, &events) {
            Some(answer) => answer,
            None => self.inner.append(stream_id, expected, events),
        }
    }
    fn read_stream(
        &self,
        stream_id: &str,
        from_version: u64,
    ) -> Result<es_core::store::EventStream<'_>, StoreError> {
        std::thread::sleep(self.read_delay);
        self.inner.read_stream(stream_id, from_version)
    }
    fn read_all(&self, from_position: u64) -> Result<es_core::store::EventStream<'_>, StoreError> {
        self.inner.read_all(from_position)
    }
    fn stream_version(&self, stream_id: &str) -> Result<u64, StoreError> {
        self.inner.stream_version(stream_id)
    }
    fn head_position(&self) -> Result<u64, StoreError> {
        self.inner.head_position()
    }
}

/// A store whose appends are resent once, as a store does after its connection dropped
/// past the commit: the resend finds the events stored and reports the original append
/// with `retried` set.
fn resending() -> Hooked {
    Hooked::new(|inner, stream_id, expected, events| {
        inner
            .append(stream_id, expected, events.to_vec())
            .err()
            .map(Err)
    })
}

#[test]
fn a_command_whose_append_the_store_resent_reports_its_own_events() {
    // only a reaction's events can have been stored by another run (their ids derive
    // from the cause); a plain command's retried append is its own
    let accounts = Repository::<Account, _>::new(resending());
    let done = accounts.execute("1", |a| a.deposit(40)).unwrap();
    assert!(!done.already_applied);
    assert_eq!((done.version, done.state.balance), (1, 40));
    assert_eq!(done.events.len(), 1);
    assert!(done.appended.is_some_and(|a| a.retried));
    assert_eq!(accounts.load("1").unwrap().balance, 40);
}

/// A store on which another run of a reaction commits at a chosen moment: right after
/// this run's look-up of the reaction's id (which then reports the id absent), before
/// anything else this run does.
struct RacingReaction {
    inner: MemoryStore,
    rival: std::sync::Mutex<Option<Rival>>,
}

/// The other run, started once.
type Rival = Box<dyn FnOnce(&MemoryStore) + Send>;

impl EventStore for RacingReaction {
    fn append(
        &self,
        stream_id: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<es_core::AppendResult, StoreError> {
        self.inner.append(stream_id, expected, events)
    }
    fn read_stream(
        &self,
        stream_id: &str,
        from_version: u64,
    ) -> Result<es_core::store::EventStream<'_>, StoreError> {
        self.inner.read_stream(stream_id, from_version)
    }
    fn read_all(&self, from_position: u64) -> Result<es_core::store::EventStream<'_>, StoreError> {
        self.inner.read_all(from_position)
    }
    fn stream_version(&self, stream_id: &str) -> Result<u64, StoreError> {
        self.inner.stream_version(stream_id)
    }
    fn head_position(&self) -> Result<u64, StoreError> {
        self.inner.head_position()
    }
    fn version_of_event(
        &self,
        stream_id: &str,
        event_id: es_core::uuid::Uuid,
    ) -> Result<Option<u64>, StoreError> {
        let found = self.inner.version_of_event(stream_id, event_id);
        if let Some(rival) = self.rival.lock().unwrap().take() {
            rival(&self.inner);
        }
        found
    }
}

/// Two runs of one reaction race: the other run commits between this run's look-up of the
/// reaction's id and its load. This run must report `already_applied`, not refuse the
/// command against a state that already holds the other run's withdrawal.
#[test]
fn the_loser_of_a_reaction_race_around_its_look_up_reports_already_applied() {
    let setup = Repository::<Account, _>::new(MemoryStore::new());
    setup.execute("target", |a| a.deposit(100)).unwrap();
    setup.execute("payer", |a| a.deposit(1)).unwrap();
    let cause = setup
        .store()
        .read_stream("account-payer", 1)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let store = RacingReaction {
        inner: MemoryStore::new(),
        rival: std::sync::Mutex::new(None),
    };
    for e in setup.store().read_all(1).unwrap() {
        let e = e.unwrap();
        let mut new = NewEvent::new(&e.event_type, e.schema_version, e.payload.clone());
        new.event_id = e.event_id;
        store
            .inner
            .append(&e.stream_id, ExpectedVersion::Any, vec![new])
            .unwrap();
    }
    let rival_cause = cause.clone();
    *store.rival.lock().unwrap() = Some(Box::new(move |inner: &MemoryStore| {
        let rival = Repository::<Account, _>::new(inner);
        let done = rival
            .execute_caused_by("target", &rival_cause, |a| a.withdraw(100))
            .unwrap();
        assert!(!done.already_applied);
    }));
    let accounts = Repository::<Account, _>::new(&store);
    let done = accounts
        .execute_caused_by("target", &cause, |a| a.withdraw(100))
        .unwrap_or_else(|e| panic!("the losing run: {e}"));
    assert!(done.already_applied);
    assert_eq!((done.state.balance, done.version), (0, 2));
    assert_eq!(accounts.load("target").unwrap().balance, 0);
}

/// A reaction whose last attempt loses to another run of itself, stored after an unrelated
/// event (so that the stored copy does not follow this run's expected version), reports
/// `already_applied`: it reported a conflict, though the reaction is applied.
#[test]
fn a_reaction_that_loses_its_last_attempt_to_another_run_is_applied() {
    let store = MemoryStore::new();
    let setup = Repository::<Account, _>::new(&store);
    setup.execute("target", |a| a.deposit(100)).unwrap();
    setup.execute("payer", |a| a.deposit(1)).unwrap();
    let cause = store
        .read_stream("account-payer", 1)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let accounts = Repository::<Account, _>::new(&store).with_max_attempts(1);
    let mut raced = false;
    let done = accounts
        .execute_caused_by("target", &cause, |a| {
            if !raced {
                raced = true;
                let rival = Repository::<Account, _>::new(&store);
                rival.execute("target", |a| a.deposit(7)).unwrap();
                let other = rival
                    .execute_caused_by("target", &cause, |a| a.withdraw(100))
                    .unwrap();
                assert!(!other.already_applied);
            }
            a.withdraw(100)
        })
        .unwrap_or_else(|e| panic!("the losing run: {e}"));
    assert!(done.already_applied);
    assert_eq!((done.state.balance, done.version), (7, 3));
}

/// A typed subscription's envelope is a cause as the recorded event is: the same reaction,
/// recognised whichever of the two drove it.
#[test]
fn a_typed_subscriptions_envelope_drives_a_reaction() {
    use es_core::subscription::Subscription;
    let store = MemoryStore::new();
    let accounts = Repository::<Account, _>::new(&store);
    accounts.execute("payer", |a| a.deposit(5)).unwrap();
    let mut deposits = Subscription::new(&store, 1).typed::<Account>();
    let envelope = deposits
        .next_timeout(std::time::Duration::from_secs(1))
        .unwrap()
        .unwrap();
    let done = accounts
        .execute_caused_by("shop", &envelope, |a| a.deposit(5))
        .unwrap();
    assert!(!done.already_applied);
    let recorded = store.read_all(1).unwrap().next().unwrap().unwrap();
    let again = accounts
        .execute_caused_by("shop", &recorded, |a| a.deposit(5))
        .unwrap();
    assert!(again.already_applied);
    let stored = store
        .read_stream("account-shop", 1)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(stored.metadata.causation_id, Some(envelope.event_id));
    // through the pointers that hold events
    let held = std::sync::Arc::new(recorded.clone());
    let again = accounts.execute_caused_by("shop", &held, |a| a.deposit(5));
    assert!(again.unwrap().already_applied);
    let boxed = Box::new(recorded);
    let again = accounts.execute_caused_by("shop", &boxed, |a| a.deposit(5));
    assert!(again.unwrap().already_applied);
    let caused = es_core::Metadata::caused_by(&held);
    assert_eq!(caused.causation_id, Some(envelope.event_id));
}

/// Commands racing on one instance in one process, with the default attempts, all
/// succeed: their retries take turns (three in four ran out of attempts, conflicting
/// with each other again and again).
#[test]
fn commands_racing_on_one_instance_in_one_process_all_succeed() {
    // calls that take a while, as a database's round trips do, so that commands racing on
    // one instance overlap
    let mut store = Hooked::new(|_, _, _, _| {
        std::thread::sleep(std::time::Duration::from_micros(500));
        None
    });
    store.read_delay = std::time::Duration::from_micros(300);
    let start = std::sync::Barrier::new(16);
    let failed: usize = std::thread::scope(|scope| {
        let racing: Vec<_> = (0..16)
            .map(|_| {
                scope.spawn(|| {
                    let accounts = Repository::<Account, _>::new(&store);
                    start.wait();
                    accounts.execute("hot", |a| a.deposit(1)).is_err() as usize
                })
            })
            .collect();
        racing.into_iter().map(|t| t.join().unwrap()).sum()
    });
    assert_eq!(failed, 0);
    let hot = Repository::<Account, _>::new(&store.inner)
        .load("hot")
        .unwrap();
    assert_eq!((hot.balance, hot.version), (16, 16));
}

/// Threads that each run command after command on one instance, with the default
/// attempts, all succeed: a retry holding its turn is not raced by first attempts, which
/// wait for it (the retry lost to the next first attempt, attempt after attempt, and some
/// commands ran out of attempts under steady load).
#[test]
fn commands_under_steady_load_on_one_instance_all_succeed() {
    let mut store = Hooked::new(|_, _, _, _| {
        std::thread::sleep(std::time::Duration::from_micros(200));
        None
    });
    store.read_delay = std::time::Duration::from_micros(100);
    let start = std::sync::Barrier::new(8);
    let failed: usize = std::thread::scope(|scope| {
        let racing: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(|| {
                    let accounts = Repository::<Account, _>::new(&store);
                    start.wait();
                    (0..40)
                        .map(|_| accounts.execute("hot", |a| a.deposit(1)).is_err() as usize)
                        .sum::<usize>()
                })
            })
            .collect();
        racing.into_iter().map(|t| t.join().unwrap()).sum()
    });
    assert_eq!(failed, 0);
    let hot = Repository::<Account, _>::new(&store.inner)
        .load("hot")
        .unwrap();
    assert_eq!((hot.balance, hot.version), (320, 320));
}

/// A retrying command whose closure waits for another thread's command, which retries
/// too, on another stream or on its own: the first never waits for a turn (turns shared
/// by the streams of a stripe deadlocked it when both fell in one), the second waits for
/// its turn for a bounded time, then retries without one.
#[test]
fn a_retry_that_waits_for_another_threads_retry_does_not_deadlock() {
    // each thread's first append to each stream conflicts, as if another process had
    // appended first
    let refused = std::sync::Mutex::new(std::collections::HashSet::new());
    let store = Hooked::new(move |inner, stream_id, expected, _| {
        let first = (std::thread::current().id(), stream_id.to_owned());
        if refused.lock().unwrap().insert(first) {
            return conflict(inner, stream_id, expected);
        }
        None
    });
    for (outer, inner) in [("a", "b"), ("c", "c")] {
        let started = std::time::Instant::now();
        let accounts = Repository::<Account, _>::new(&store);
        let mut calls = 0;
        accounts
            .execute(outer, |a| {
                calls += 1;
                if calls == 2 {
                    // the second attempt holds the turn: wait for a thread's command
                    let store = &store;
                    std::thread::scope(|scope| {
                        scope
                            .spawn(move || {
                                Repository::<Account, _>::new(store)
                                    .execute(inner, |a| a.deposit(1))
                                    .unwrap()
                            })
                            .join()
                            .unwrap();
                    });
                }
                a.deposit(1)
            })
            .unwrap();
        let took = started.elapsed();
        let most = if outer == inner { 2_000 } else { 150 };
        assert!(
            took < std::time::Duration::from_millis(most),
            "{outer}/{inner}: {took:?}"
        );
    }
}

/// The conflicts each thread's appends meet, left to come.
type Refusals =
    std::sync::Arc<std::sync::Mutex<std::collections::HashMap<std::thread::ThreadId, u32>>>;

/// A store that refuses the appends of the threads given in its refusals with conflicts,
/// each as many times as said there.
fn refusing() -> (Hooked, Refusals) {
    let refusals = Refusals::default();
    let left = std::sync::Arc::clone(&refusals);
    let store = Hooked::new(move |inner, stream_id, expected, _| {
        let mut left = left.lock().unwrap();
        let times = left.get_mut(&std::thread::current().id())?;
        *times = times.checked_sub(1)?;
        conflict(inner, stream_id, expected)
    });
    (store, refusals)
}

/// Has the appends of this thread refused `times` times.
fn refuse_this_thread(refusals: &Refusals, times: u32) {
    refusals
        .lock()
        .unwrap()
        .insert(std::thread::current().id(), times);
}

/// A command whose retry turn another command holds waits for it once, at most 200 ms,
/// however many attempts it has (it waited that long before each of them); and a turn on
/// one store's stream does not hold up the same stream id in another store.
#[test]
fn a_retry_waits_for_a_turn_once_and_only_on_its_own_store() {
    let ((first, first_refusals), (second, second_refusals)) = (refusing(), refusing());
    let holding = std::sync::Barrier::new(2);
    std::thread::scope(|scope| {
        // holds the turn of `y` in the first store for a second
        scope.spawn(|| {
            refuse_this_thread(&first_refusals, 1);
            let mut calls = 0;
            Repository::<Account, _>::new(&first)
                .execute("y", |a| {
                    calls += 1;
                    if calls == 2 {
                        holding.wait();
                        std::thread::sleep(std::time::Duration::from_secs(1));
                    }
                    a.deposit(1)
                })
                .unwrap();
        });
        holding.wait();
        // conflicts on every attempt on the same stream: one wait for the turn
        refuse_this_thread(&first_refusals, u32::MAX);
        let started = std::time::Instant::now();
        let refused = Repository::<Account, _>::new(&first)
            .with_max_attempts(10)
            .execute("y", |a| a.deposit(1));
        assert!(refused.is_err());
        let took = started.elapsed();
        assert!(took < std::time::Duration::from_millis(600), "{took:?}");
        // the same stream id in another store: no wait
        refuse_this_thread(&second_refusals, 1);
        let started = std::time::Instant::now();
        Repository::<Account, _>::new(&second)
            .execute("y", |a| a.deposit(1))
            .unwrap();
        let took = started.elapsed();
        assert!(took < std::time::Duration::from_millis(100), "{took:?}");
    });
}
