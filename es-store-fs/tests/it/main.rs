//! The integration tests of the file store, in one test binary: one module per subject,
//! and `common`, the ledger and checks the reliability tests share.
//!
//! One binary links the store and its dependencies once instead of once per file, and
//! every test in it runs under `cargo test` and `cargo nextest` alike.

mod common;

mod adversarial;
mod checkpoint_files;
mod cli;
mod conformance;
mod crash;
mod event_ids;
mod export_one_line_per_event;
mod faults;
mod fuzz;
mod group_commit;
mod hostile;
mod interleavings;
mod json_depth_limit;
mod kill;
mod model;
mod open_files;
mod projections;
mod real_faults;
mod recovery;
mod subscriptions;
mod tracing_spans;
