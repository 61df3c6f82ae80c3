//! Given past events, when a command runs, then these events or this error.

use crate::{Aggregate, EventSet, IntoEvents};
use std::fmt::Debug;

/// A given/when/then test of one aggregate's command.
///
/// Given events are encoded and decoded before they are applied, so the test also proves
/// that they survive a trip through the store.
///
/// ```
/// use es_core::testing::AggregateTest;
/// # use es_core::doc_support::{Account, AccountError, Deposited, Withdrawn};
/// AggregateTest::<Account>::given(Deposited { amount: 100 })
///     .when(|a| a.withdraw(30))
///     .then_expect_events(Withdrawn { amount: 30 });
///
/// AggregateTest::<Account>::given(Deposited { amount: 100 })
///     .when(|a| a.withdraw(300))
///     .then_expect_error(AccountError::InsufficientFunds { balance: 100, requested: 300 });
/// ```
pub struct AggregateTest<A: Aggregate> {
    state: A,
}

impl<A: Aggregate> AggregateTest<A> {
    /// Starts from the default state.
    pub fn given_no_events() -> Self {
        AggregateTest {
            state: A::default(),
        }
    }

    /// Starts from the state after `events`.
    #[track_caller]
    pub fn given(events: impl IntoEvents<A::Events>) -> Self {
        let mut list = Vec::new();
        events.into_events(&mut list);
        let mut state = A::default();
        for event in list {
            let encoded = event
                .encode()
                .unwrap_or_else(|e| panic!("given event cannot be encoded: {e}"));
            let decoded =
                A::Events::decode(encoded.event_type, encoded.schema_version, &encoded.payload)
                    .unwrap_or_else(|e| panic!("given event does not decode back: {e}"));
            if let Some(decoded) = decoded {
                state.apply_event(&decoded);
            }
        }
        AggregateTest { state }
    }

    /// Runs the command on the given state.
    pub fn when<T, E>(self, command: impl FnOnce(&A) -> Result<T, E>) -> Outcome<A, E>
    where
        T: IntoEvents<A::Events>,
    {
        let result = command(&self.state).map(|t| {
            let mut events = Vec::new();
            t.into_events(&mut events);
            events
        });
        Outcome {
            state: self.state,
            result,
        }
    }
}

/// The result of [`AggregateTest::when`], to assert on.
pub struct Outcome<A: Aggregate, E> {
    state: A,
    result: Result<Vec<A::Events>, E>,
}

impl<A: Aggregate, E: Debug> Outcome<A, E> {
    /// Asserts the command decided exactly these events (compared by type, version and
    /// JSON payload) and returns the state after applying them.
    #[track_caller]
    pub fn then_expect_events(self, expected: impl IntoEvents<A::Events>) -> A {
        let mut want = Vec::new();
        expected.into_events(&mut want);
        let got = match self.result {
            Ok(got) => got,
            Err(e) => panic!("expected events, but the command failed: {e:?}"),
        };
        let show = |events: &[A::Events]| -> Vec<String> {
            events
                .iter()
                .map(|e| match e.encode() {
                    Ok(enc) => format!(
                        "{} v{} {}",
                        enc.event_type,
                        enc.schema_version,
                        String::from_utf8_lossy(&enc.payload)
                    ),
                    Err(err) => format!("<unencodable: {err}>"),
                })
                .collect()
        };
        let (got_text, want_text) = (show(&got), show(&want));
        assert_eq!(
            got_text, want_text,
            "the command decided other events than expected (left: decided, right: expected)"
        );
        let mut state = self.state;
        for e in &got {
            state.apply_event(e);
        }
        state
    }

    /// Asserts the command decided no event.
    #[track_caller]
    pub fn then_expect_no_events(self) {
        self.then_expect_events(());
    }

    /// Asserts the command failed with exactly this error.
    #[track_caller]
    pub fn then_expect_error(self, expected: E)
    where
        E: PartialEq,
    {
        match self.result {
            Err(e) => assert_eq!(e, expected, "the command failed with another error"),
            Ok(events) => panic!(
                "expected error {expected:?}, but the command decided {} event(s)",
                events.len()
            ),
        }
    }

    /// Asserts the command failed with an error that satisfies `check`.
    #[track_caller]
    pub fn then_expect_error_matching(self, check: impl FnOnce(&E) -> bool) {
        match self.result {
            Err(e) => assert!(
                check(&e),
                "the command failed with an unexpected error: {e:?}"
            ),
            Ok(events) => panic!(
                "expected an error, but the command decided {} event(s)",
                events.len()
            ),
        }
    }
}
