//! Shared domain code of the examples.
