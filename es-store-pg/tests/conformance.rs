//! The PostgreSQL store passes the whole store conformance suite against a real server.
mod common;

es_core::store_conformance_tests!(common::fixture);
