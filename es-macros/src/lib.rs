//! Macros for es-core.
