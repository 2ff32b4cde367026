//! Compile-fail tests of `pipeline!` misuse: each `tests/ui/*.rs` must fail to compile
//! with the checked-in `.stderr`; each `tests/ui-pass/*.rs` compiles (forms that once
//! needed help, such as a re-raise's turbofish). Regenerate with
//! `TRYBUILD=overwrite cargo test --test compiletest`, then review the diff.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
    cases.pass("tests/ui-pass/*.rs");
}
