//! Expansion snapshots: in each `tests/expand/NAME.rs`, every `pipeline!` call is
//! replaced by what this crate expands it to, and the file, pretty-printed, must equal
//! the checked-in `tests/expand/NAME.expanded.rs`. `PIPELINES_BLESS=1 cargo test -p
//! pipewright-macros snapshots` rewrites them (review the diff). The runtime's path is
//! written `::pipewright`, so the expanded files compile as they are
//! (`tests/expanded.rs` runs them beside the macro's own).

use std::path::{Path, PathBuf};

use proc_macro2::TokenStream;
use quote::quote;
use syn::visit_mut::{self, VisitMut};
use syn::{Expr, Macro, Stmt};

use crate::{expand, parse};

/// Replaces each `pipeline!` call (by its last path segment) with its expansion,
/// nested calls included.
struct ExpandPipelines;

impl ExpandPipelines {
    fn expansion(mac: &Macro) -> Option<Expr> {
        let last = mac.path.segments.last()?;
        if last.ident != "pipeline" {
            return None;
        }
        let tokens = &mac.tokens;
        let input = quote!((::pipewright) #tokens);
        let expanded: TokenStream = match parse::parse(input) {
            Ok(model) => expand::expand(&model),
            Err(failure) => expand::expand_failure(failure),
        };
        match syn::parse2(expanded) {
            Ok(expr) => Some(expr),
            Err(error) => panic!(
                "the expansion of `{}` is not an expression: {error}",
                quote!(#mac)
            ),
        }
    }
}

impl VisitMut for ExpandPipelines {
    fn visit_expr_mut(&mut self, expr: &mut Expr) {
        if let Expr::Macro(call) = expr {
            if let Some(expanded) = Self::expansion(&call.mac) {
                *expr = expanded;
            }
        }
        visit_mut::visit_expr_mut(self, expr);
    }

    fn visit_stmt_mut(&mut self, stmt: &mut Stmt) {
        if let Stmt::Macro(call) = stmt {
            if let Some(expanded) = Self::expansion(&call.mac) {
                *stmt = Stmt::Expr(expanded, call.semi_token);
            }
        }
        visit_mut::visit_stmt_mut(self, stmt);
    }
}

fn expand_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/expand")
}

/// The pretty-printed expansion of the file at `input`.
fn expand_file(input: &Path) -> String {
    let text = std::fs::read_to_string(input).unwrap();
    let mut file = syn::parse_file(&text).unwrap();
    ExpandPipelines.visit_file_mut(&mut file);
    prettyplease::unparse(&file)
}

/// The first differing line of `expected` and `actual`, with some context.
fn first_difference(expected: &str, actual: &str) -> String {
    let (expected, actual): (Vec<&str>, Vec<&str>) =
        (expected.lines().collect(), actual.lines().collect());
    let line = expected
        .iter()
        .zip(&actual)
        .position(|(e, a)| e != a)
        .unwrap_or(expected.len().min(actual.len()));
    let around = |lines: &[&str]| {
        lines
            .iter()
            .enumerate()
            .skip(line.saturating_sub(3))
            .take(7)
            .map(|(number, text)| format!("{:>5} | {text}\n", number + 1))
            .collect::<String>()
    };
    format!(
        "first difference at line {}\n--- checked in\n{}--- expanded now\n{}",
        line + 1,
        around(&expected),
        around(&actual)
    )
}

#[test]
fn expansions_match_the_checked_in_snapshots() {
    let bless = std::env::var_os("PIPELINES_BLESS").is_some_and(|value| value == "1");
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(expand_dir())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            let name = path.file_name().unwrap().to_string_lossy();
            name.ends_with(".rs") && !name.ends_with(".expanded.rs")
        })
        .collect();
    inputs.sort();
    assert!(
        inputs.len() >= 3,
        "the snapshot inputs are missing: {inputs:?}"
    );
    let mut failures = Vec::new();
    for input in &inputs {
        let snapshot = input.with_extension("expanded.rs");
        let actual = expand_file(input);
        // Twice: the text must not depend on anything that varies between runs.
        assert_eq!(
            actual,
            expand_file(input),
            "{} expands differently twice",
            input.display()
        );
        if bless {
            std::fs::write(&snapshot, &actual).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&snapshot).unwrap_or_default();
        if expected != actual {
            let shown = snapshot
                .strip_prefix(env!("CARGO_MANIFEST_DIR"))
                .unwrap_or(&snapshot);
            failures.push(format!(
                "{} does not match its expansion ({}):\n{}",
                shown.display(),
                "PIPELINES_BLESS=1 rewrites it",
                first_difference(&expected, &actual)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
