//! The README's quickstart as a doc test of a crate whose dependencies are exactly those
//! the README lists, so that what a user copies compiles.

#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeQuickstart;
