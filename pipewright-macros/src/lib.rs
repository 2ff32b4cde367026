//! The `pipeline!` procedural macro. Use it through the `pipewright` crate, whose
//! `pipeline!` forwards here with the path of the runtime crate.
//!
//! The macro works in phases, each in its own module: `parse` reads the tokens into the
//! `model` (header, steps, `rescue!`, `finally!`), reporting every misuse it finds at
//! once, and `expand` generates the code. A `pipeline!` with errors still expands to its
//! best effort beside them (`expand::expand_failure`), so its types survive in an editor.
//!
//! ```text
//! let p = pipewright::pipeline!(|value: i32, _ctx: &()| { value + 1; });
//! ```
//!
//! (The runnable examples are in the `pipewright` crate, which this crate cannot depend on.)
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod expand;
mod model;
mod parse;

use proc_macro::TokenStream;

/// Implementation of `pipewright::pipeline!`. Not public API: its input starts with the
/// runtime crate's path in parentheses.
#[doc(hidden)]
#[proc_macro]
pub fn pipeline_impl(input: TokenStream) -> TokenStream {
    match parse::parse(input.into()) {
        Ok(model) => expand::expand(&model).into(),
        Err(failure) => expand::expand_failure(failure).into(),
    }
}

#[cfg(test)]
mod snapshots;
