//! Test helpers (feature `testing`): the store conformance suite, a given/when/then
//! harness for aggregates, and the schema check of golden payloads and the catalogue.

pub mod conformance;
pub mod counter;
mod given;
pub mod schema;

pub use given::{AggregateTest, Outcome};
pub use schema::{SchemaCheck, SchemaFailure, SchemaProblem, SchemaReport};

use crate::{EventStore, MemoryStore};

/// Something that holds a store under test, with whatever must live as long as it (a
/// temporary directory, say).
pub trait StoreFixture {
    /// The store type.
    type Store: EventStore;
    /// The store.
    fn store(&self) -> &Self::Store;
}

impl StoreFixture for MemoryStore {
    type Store = MemoryStore;
    fn store(&self) -> &MemoryStore {
        self
    }
}

impl<S: EventStore, G> StoreFixture for (S, G) {
    type Store = S;
    fn store(&self) -> &S {
        &self.0
    }
}

/// Generates one `#[test]` per conformance behaviour for a store.
///
/// `$make` is a function or closure returning a fresh [`StoreFixture`] for each test.
///
/// ```ignore
/// es_core::store_conformance_tests!(es_core::MemoryStore::new);
/// ```
#[macro_export]
macro_rules! store_conformance_tests {
    ($make:expr) => {
        $crate::store_conformance_tests!(@each $make;
            append_and_read_stream,
            read_stream_from_version,
            read_all_in_commit_order,
            read_all_from_position,
            visits_lend_what_reads_return,
            unknown_stream_is_empty,
            expected_any,
            expected_no_stream,
            expected_stream_exists,
            expected_exact,
            conflict_reports_actual_version,
            idempotent_retry_returns_original_result,
            idempotent_retry_with_stale_expectation_conflicts,
            duplicate_id_in_other_stream_is_rejected,
            partial_retry_is_rejected,
            duplicate_id_within_batch_is_rejected,
            invalid_stream_ids_are_rejected,
            opaque_stream_ids_round_trip,
            empty_batch_is_rejected,
            oversized_event_is_rejected,
            invalid_payloads_are_rejected,
            invalid_event_types_are_rejected,
            one_bad_event_fails_the_whole_batch,
            metadata_ids_and_timestamps_round_trip,
            timestamps_never_decrease,
            racing_writers_one_winner_per_version,
            concurrent_appends_global_order_is_commit_order,
            streaming_read_of_large_history,
            snapshots_newest_at_or_below,
            repository_snapshots,
            live_subscription_has_no_gap_or_duplicate,
            subscription_filters,
            projections_resume_rebuild_and_stop_in_time,
            background_projection_follows_live,
            process_manager_rerun_issues_no_duplicates,
            reaction_covered_by_a_snapshot_is_not_repeated,
            event_ids_are_found_in_their_stream,
            stream_ends_name_the_last_event,
            cached_repository_sees_other_writers,
            cached_reaction_is_not_repeated,
            waits_take_any_timeout
        );
    };
    (@each $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                let fixture = ($make)();
                $crate::testing::conformance::$name(
                    $crate::testing::StoreFixture::store(&fixture),
                );
            }
        )*
    };
}
