//! Every compile error the macros emit, pinned: each `tests/ui/<category>/<mistake>.rs`
//! fails to compile with exactly the `.stderr` beside it.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*/*.rs");
}
