//! What a `pipeline!` invocation means, once parsed and checked.

use proc_macro2::TokenStream;
use syn::{Expr, Item, Pat, Stmt, Type};

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
    /// Statements the body holds that are not steps, kept only while the invocation has
    /// errors (see [`StandIn`]); empty for a correct one.
    pub(crate) stand_ins: Vec<StandIn>,
    /// Items written among the steps (an error), kept so that what names them resolves.
    pub(crate) items: Vec<Item>,
}

/// Statements of a `pipeline!` with errors that are not steps of its model (a `let`, a
/// step with a misuse, the steps of a misplaced section...), re-emitted where they are
/// type-checked with the header's bindings in scope but never run: rust-analyzer keeps
/// their types and completions, and rustc reports their type errors with the misuse.
/// The stand-ins of a pipeline follow one another in one sequence, main section first,
/// so a later one sees what an earlier one's `let` binds.
pub(crate) struct StandIn {
    /// The error bindings of the section they were written in (outermost first: a
    /// section nested in another, an error, sees both).
    pub(crate) errors: Vec<(Binding, SectionKind)>,
    /// As written, in order; prepared so that they add no error of their own (a `return`
    /// is replaced).
    pub(crate) statements: Vec<Stmt>,
}

/// `rescue!` or `finally!`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum SectionKind {
    Rescue,
    Finally,
}

impl SectionKind {
    pub(crate) fn macro_name(self) -> &'static str {
        match self {
            SectionKind::Rescue => "rescue!",
            SectionKind::Finally => "finally!",
        }
    }
}

/// A pattern with an optional type, as in a closure parameter.
#[derive(Clone)]
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
    /// What its result does: the value changes only where a step says so (the value rule,
    /// section 1.1 of `docs/SEMANTICS.md`).
    pub(crate) effect: Effect,
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

/// What a step does with its result.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Effect {
    /// `expr;`: run for its effects; its type decides the rest (a `Result`'s `Err`, a
    /// nested pipeline, a marker), and a result of the value's type is warned about.
    Bare,
    /// `value = expr;` (the header's binding): the result becomes the value.
    Assign,
    /// `let _ = expr;`: discarded, whatever it is.
    Ignore,
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
