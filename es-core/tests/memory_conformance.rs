//! The in-memory store passes the whole store conformance suite.
es_core::store_conformance_tests!(es_core::MemoryStore::new);
