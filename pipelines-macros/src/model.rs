//! What a `pipeline!` invocation means, once parsed and checked.

use proc_macro2::TokenStream;
use syn::{Expr, Pat, Type};

/// A whole `pipeline!` invocation.
pub(crate) struct Pipeline {
    /// The runtime crate's path (`$crate` of the forwarding `macro_rules!`).
    pub(crate) krate: TokenStream,
    /// How each step sees the value.
    pub(crate) value: ValueBinding,
    /// How each step sees the context.
    pub(crate) ctx: Binding,
    /// The optional third binding: the step's view of its instance (`Current`).
    pub(crate) current: Option<Binding>,
    pub(crate) main: Vec<Step>,
    pub(crate) rescue: Option<Section>,
    pub(crate) finally: Option<Section>,
}

/// A pattern with an optional type, as in a closure parameter.
pub(crate) struct Binding {
    pub(crate) pat: Pat,
    pub(crate) ty: Option<Type>,
}

/// The value binding. `by_ref` when its type is `&V`: steps borrow the value instead of
/// getting a clone.
pub(crate) struct ValueBinding {
    pub(crate) binding: Binding,
    pub(crate) by_ref: bool,
}

/// A `rescue!` or `finally!` section.
pub(crate) struct Section {
    pub(crate) error: Binding,
    pub(crate) steps: Vec<Step>,
}

/// One step.
pub(crate) struct Step {
    pub(crate) kind: StepKind,
    /// The step uses `?` outside nested closures and async blocks (macro calls included),
    /// so its synchronous part is evaluated in a closure that returns a `Result`.
    pub(crate) uses_try: bool,
    /// Which header bindings the step's tokens name. A waiting step that names one is
    /// evaluated inside its future, which owns what the binding borrows.
    pub(crate) mentions: Mentions,
    /// Variables from the environment the step names (single identifiers that the step
    /// does not bind itself). A waiting step evaluated inside its future clones them in.
    pub(crate) captures: Vec<syn::Ident>,
}

/// Header bindings a step names (by identifier, anywhere in its tokens).
#[derive(Clone, Copy, Default)]
pub(crate) struct Mentions {
    pub(crate) value: bool,
    pub(crate) ctx: bool,
    /// The step's view of its instance (the optional third header binding).
    pub(crate) current: bool,
    /// The section's error (`rescue!`/`finally!` only).
    pub(crate) error: bool,
}

impl Mentions {
    pub(crate) fn any(self) -> bool {
        self.value || self.ctx || self.current || self.error
    }
}

pub(crate) enum StepKind {
    /// Runs inline; its result goes through the outcome table.
    Sync(Expr),
    /// `expr.await`: evaluates `expr` inline, then waits on it; the future's output goes
    /// through the outcome table.
    Await {
        future: Expr,
        /// The user's `.await`, for error spans.
        await_span: proc_macro2::Span,
    },
}
