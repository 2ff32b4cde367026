//! One statement of a section as a step: its kind, whether it uses `?`, which header
//! bindings it names and what it captures; misuse inside a step is reported here.

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;
use syn::parse::ParseStream;
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{Expr, ExprClosure, Macro, Pat, Stmt};

use super::Errors;
use crate::model::{Effect, Mentions, Step, StepKind};

/// What a statement of a section turned out to be.
pub(super) enum Read {
    /// A step of the model.
    Step(Step),
    /// Not a step (its error is reported): it stands in (`model::StandIn`).
    Rejected,
    /// A `let` (its error is reported): it and the statements after it in its section
    /// stand in together, since they may name what it binds.
    Let,
    /// An item (its error is reported): kept beside the steps, so what names it resolves.
    Item,
}

/// Reads one statement as a step.
pub(super) fn parse_step(
    statement: &Stmt,
    names: &HeaderNames,
    errors: &mut Errors,
    section: &str,
) -> Read {
    let (expr, effect) = match statement.clone() {
        Stmt::Expr(expr, _) => match assignment(expr, names, errors) {
            Ok(step) => step,
            Err(()) => return Read::Rejected,
        },
        Stmt::Macro(stmt) => (
            Expr::Macro(syn::ExprMacro {
                attrs: stmt.attrs,
                mac: stmt.mac,
            }),
            Effect::Bare,
        ),
        // `let _ = expr;`: discarded on purpose.
        Stmt::Local(syn::Local {
            pat: Pat::Wild(_),
            init:
                Some(syn::LocalInit {
                    expr,
                    diverge: None,
                    ..
                }),
            ..
        }) => (*expr, Effect::Ignore),
        Stmt::Local(local) => {
            errors.push(
                &local,
                format!(
                    "a `{section}` step cannot declare a variable: each step sees only the value, the context and \
                     what the pipeline captures; put the `let` inside a block step `{{ let x = ...; ... }}`, \
                     or make it a step of its own that assigns the value (`value = ...;`); \
                     `let _ = ...;` discards a result on purpose"
                ),
            );
            return Read::Let;
        }
        Stmt::Item(item) => {
            errors.push(
                &item,
                format!("a `{section}` body holds steps, not items: define this item outside the `pipeline!`"),
            );
            return Read::Item;
        }
    };
    let kind = match expr {
        Expr::Await(awaited) => StepKind::Await {
            future: *awaited.base,
            await_span: awaited.await_token.span,
        },
        // `future.await?` waits like `future.await`: an `Err` output already goes to the
        // error path.
        Expr::Try(tried) if matches!(&*tried.expr, Expr::Await(_)) => match *tried.expr {
            Expr::Await(awaited) => StepKind::Await {
                future: *awaited.base,
                await_span: awaited.await_token.span,
            },
            other => StepKind::Sync(other),
        },
        // `Err(error)` re-raised as a step: the `Ok` type nobody names is `()`.
        other if effect == Effect::Bare => StepKind::Sync(pin_err_ok_type(other)),
        other => StepKind::Sync(other),
    };
    let inline = match &kind {
        StepKind::Sync(expr) | StepKind::Await { future: expr, .. } => expr,
    };
    let mut scan = InlineScan::default();
    scan.visit_expr(inline);
    let lost = lost_assignments(inline, names);
    let misused = !scan.awaits.is_empty() || !scan.returns.is_empty() || !lost.is_empty();
    for span in lost {
        let name = names
            .value_whole
            .as_ref()
            .map_or_else(|| "value".to_owned(), ToString::to_string);
        errors.push_span(
            span,
            format!(
                "this assignment to `{name}` would be lost: a step works on its own copy of the value, \
                 which changes only where a step assigns it as a whole; make the assignment the step \
                 itself, as in `{name} = if condition {{ new }} else {{ {name} }};`"
            ),
        );
    }
    for await_span in scan.awaits {
        errors.push_span(
            await_span,
            "`.await` can only end a step: a step waits on the one future it ends with; \
             make this a step of its own, or wrap the expression in `async { ... }.await`",
        );
    }
    for return_span in scan.returns {
        errors.push_span(
            return_span,
            "a step cannot `return`: a step's value is its expression; \
             to end the pipeline early, make the step `Break::with(value)` or `Break::now()`",
        );
    }
    let tokens = inline.to_token_stream();
    let mentions = Mentions {
        value: mentions_any(tokens.clone(), &names.value),
        ctx: mentions_any(tokens.clone(), &names.ctx),
        current: mentions_any(tokens.clone(), &names.current),
        error: mentions_any(tokens, &names.error),
    };
    let captures = if matches!(kind, StepKind::Await { .. }) && mentions.any() {
        captured_names(inline, names)
    } else {
        Vec::new()
    };
    if misused {
        return Read::Rejected;
    }
    Read::Step(Step {
        kind,
        effect,
        uses_try: scan.uses_try,
        mentions,
        captures,
    })
}

/// A statement as a step: `value = expr` (the header's binding, whole) assigns `expr`,
/// `value op= expr` assigns the value so changed; anything else is a bare step. An
/// assignment to part of a destructured value is reported (`Err`).
fn assignment(expr: Expr, names: &HeaderNames, errors: &mut Errors) -> Result<(Expr, Effect), ()> {
    match expr {
        Expr::Assign(assign) => match target(&assign.left, names) {
            Target::Whole | Target::Pattern => Ok((*assign.right, Effect::Assign)),
            Target::Part(ident) => destructured(&ident, errors),
            Target::Other => Ok((Expr::Assign(assign), Effect::Bare)),
        },
        Expr::Binary(binary) if is_compound_assignment(&binary.op) => {
            match target(&binary.left, names) {
                Target::Whole => Ok((changed_copy(&binary), Effect::Assign)),
                Target::Part(ident) => destructured(&ident, errors),
                // A pattern cannot be changed in place: rustc says so at the step.
                Target::Pattern | Target::Other => Ok((Expr::Binary(binary), Effect::Bare)),
            }
        }
        other => Ok((other, Effect::Bare)),
    }
}

/// What the left side of an assignment names.
enum Target {
    /// The value's binding, bound whole by the header.
    Whole,
    /// The header's destructuring pattern, as written.
    Pattern,
    /// One name the header's pattern binds: part of the value.
    Part(syn::Ident),
    /// Anything else (a variable of the step's own).
    Other,
}

fn target(left: &Expr, names: &HeaderNames) -> Target {
    if names.value_whole.is_none()
        && names.value_pattern.as_deref() == Some(left.to_token_stream().to_string().as_str())
    {
        return Target::Pattern;
    }
    let named = match left {
        Expr::Path(path) if path.qself.is_none() => path
            .path
            .get_ident()
            .filter(|ident| names.value.contains(ident)),
        _ => None,
    };
    match named {
        Some(ident) if names.value_whole.as_ref() == Some(ident) => Target::Whole,
        Some(ident) => Target::Part(ident.clone()),
        None => Target::Other,
    }
}

/// Reports an assignment to part of a destructured value; the step is rejected.
fn destructured<T>(ident: &syn::Ident, errors: &mut Errors) -> Result<T, ()> {
    errors.push(
        ident,
        format!(
            "`{ident}` is part of a destructured value: a step assigns the value as a whole, with the \
             header's pattern on the left (`(a, b) = (b, a);` for `|(a, b): (T, T), ctx: &C|`)"
        ),
    );
    Err(())
}

/// `value op= right` as the value it assigns: a copy of the value, changed (`value` in
/// `right` is still the step's own).
fn changed_copy(binary: &syn::ExprBinary) -> Expr {
    let (op, right) = (&binary.op, &binary.right);
    // The step call's `&V`, with the hygiene of the code that binds it.
    let lent = syn::Ident::new("__pipelines_value", Span::call_site());
    syn::parse_quote_spanned! {binary.left.span()=>
        {
            let mut __pipelines_changed = ::core::clone::Clone::clone(#lent);
            __pipelines_changed #op #right;
            __pipelines_changed
        }
    }
}

fn is_compound_assignment(op: &syn::BinOp) -> bool {
    use syn::BinOp::*;
    matches!(
        op,
        AddAssign(_)
            | SubAssign(_)
            | MulAssign(_)
            | DivAssign(_)
            | RemAssign(_)
            | BitXorAssign(_)
            | BitAndAssign(_)
            | BitOrAssign(_)
            | ShlAssign(_)
            | ShrAssign(_)
    )
}

/// Assignments to the value's binding inside a step (in a block, a branch, a closure):
/// lost when the step ends, as each step has its own copy.
fn lost_assignments(expr: &Expr, names: &HeaderNames) -> Vec<Span> {
    struct Scan<'n> {
        names: &'n [syn::Ident],
        found: Vec<Span>,
    }
    impl Scan<'_> {
        fn note(&mut self, left: &Expr, whole: &dyn ToTokens) {
            if let Expr::Path(path) = left {
                if path.qself.is_none()
                    && path
                        .path
                        .get_ident()
                        .is_some_and(|ident| self.names.contains(ident))
                {
                    self.found.push(whole.span());
                }
            }
        }
    }
    impl<'ast> Visit<'ast> for Scan<'_> {
        fn visit_expr_assign(&mut self, node: &'ast syn::ExprAssign) {
            self.note(&node.left, node);
            syn::visit::visit_expr_assign(self, node);
        }
        fn visit_expr_binary(&mut self, node: &'ast syn::ExprBinary) {
            if is_compound_assignment(&node.op) {
                self.note(&node.left, node);
            }
            syn::visit::visit_expr_binary(self, node);
        }
        fn visit_item(&mut self, _: &'ast syn::Item) {}
    }
    let mut scan = Scan {
        names: &names.value,
        found: Vec::new(),
    };
    scan.visit_expr(expr);
    scan.found
}

/// `Err(error)` (or `Err(error)?`) as a bare step, with its `Ok` type `()`: nothing else
/// names it, and a re-raise in `rescue!` needs no turbofish.
fn pin_err_ok_type(expr: Expr) -> Expr {
    fn pinned(call: &mut syn::ExprCall) {
        let is_err = matches!(&*call.func, Expr::Path(path)
            if path.qself.is_none() && path.path.is_ident("Err"));
        if is_err {
            let span = call.func.span();
            *call.func = syn::parse_quote_spanned!(span=> ::core::result::Result::<(), _>::Err);
        }
    }
    let mut expr = expr;
    match &mut expr {
        Expr::Call(call) => pinned(call),
        Expr::Try(tried) => {
            if let Expr::Call(call) = &mut *tried.expr {
                pinned(call);
            }
        }
        _ => {}
    }
    expr
}

/// Single-identifier paths an expression names that neither it nor the header binds:
/// the variables it captures from around the `pipeline!` (and, harmlessly, functions).
/// Names starting with an uppercase letter are taken for constants, statics and types.
fn captured_names(expr: &Expr, names: &HeaderNames) -> Vec<syn::Ident> {
    /// Walks the expression with the names in scope at each point (blocks, closures,
    /// match arms, `for` loops; an `if let`'s names count until the end of its block).
    #[derive(Default)]
    struct Scan {
        used: Vec<syn::Ident>,
        scopes: Vec<Vec<syn::Ident>>,
    }
    impl Scan {
        /// Records a use of `ident` that may be a captured variable.
        fn note_use(&mut self, ident: &syn::Ident) {
            let text = ident.to_string();
            let lowercase = text.starts_with(|c: char| c.is_lowercase() || c == '_');
            let bound = self.scopes.iter().flatten().any(|bound| bound == ident);
            if lowercase && text != "self" && !bound && !self.used.contains(ident) {
                self.used.push(ident.clone());
            }
        }
        fn bind(&mut self, pat: &Pat) {
            let names = bound_names(pat);
            match self.scopes.last_mut() {
                Some(scope) => scope.extend(names),
                None => self.scopes.push(names),
            }
        }
        fn scoped(&mut self, pats: &[&Pat], visit: impl FnOnce(&mut Self)) {
            self.scopes.push(Vec::new());
            for pat in pats {
                self.bind(pat);
            }
            visit(self);
            self.scopes.pop();
        }
    }
    impl<'ast> Visit<'ast> for Scan {
        fn visit_expr_path(&mut self, node: &'ast syn::ExprPath) {
            if let (None, Some(ident)) = (&node.qself, node.path.get_ident()) {
                self.note_use(ident);
            }
            syn::visit::visit_expr_path(self, node);
        }
        fn visit_block(&mut self, node: &'ast syn::Block) {
            self.scoped(&[], |scan| syn::visit::visit_block(scan, node));
        }
        fn visit_local(&mut self, node: &'ast syn::Local) {
            if let Some(init) = &node.init {
                self.visit_expr(&init.expr);
                if let Some((_, diverge)) = &init.diverge {
                    self.visit_expr(diverge);
                }
            }
            self.bind(&node.pat);
        }
        fn visit_expr_let(&mut self, node: &'ast syn::ExprLet) {
            self.visit_expr(&node.expr);
            self.bind(&node.pat);
        }
        fn visit_expr_closure(&mut self, node: &'ast ExprClosure) {
            let params: Vec<&Pat> = node.inputs.iter().collect();
            self.scoped(&params, |scan| scan.visit_expr(&node.body));
        }
        fn visit_arm(&mut self, node: &'ast syn::Arm) {
            self.scoped(&[&node.pat], |scan| {
                if let Some((_, guard)) = &node.guard {
                    scan.visit_expr(guard);
                }
                scan.visit_expr(&node.body);
            });
        }
        fn visit_expr_for_loop(&mut self, node: &'ast syn::ExprForLoop) {
            self.visit_expr(&node.expr);
            self.scoped(&[&node.pat], |scan| scan.visit_block(&node.body));
        }
        fn visit_macro(&mut self, node: &'ast Macro) {
            for expr in macro_exprs(node) {
                self.visit_expr(&expr);
            }
            for ident in format_arg_idents(node.tokens.clone()) {
                self.note_use(&ident);
            }
        }
        fn visit_item(&mut self, _: &'ast syn::Item) {}
    }
    let mut scan = Scan::default();
    scan.visit_expr(expr);
    let header: Vec<&syn::Ident> = names
        .value
        .iter()
        .chain(&names.ctx)
        .chain(&names.current)
        .chain(&names.error)
        .collect();
    scan.used
        .into_iter()
        .filter(|ident| !header.contains(&ident))
        .collect()
}

/// The expressions of a macro call that takes expressions (`vec![a, b]`, `vec![a; n]`,
/// `format!(..)`, `assert!(..)`); nothing for other token shapes.
fn macro_exprs(mac: &Macro) -> Vec<Expr> {
    use syn::parse::Parser;
    use syn::punctuated::Punctuated;
    let list = Punctuated::<Expr, syn::Token![,]>::parse_terminated.parse2(mac.tokens.clone());
    if let Ok(list) = list {
        return list.into_iter().collect();
    }
    let repeat = |input: ParseStream<'_>| -> syn::Result<Vec<Expr>> {
        let item: Expr = input.parse()?;
        input.parse::<syn::Token![;]>()?;
        Ok(vec![item, input.parse()?])
    };
    repeat.parse2(mac.tokens.clone()).unwrap_or_default()
}

/// The identifiers the header (and the section's error binding) bind.
#[derive(Clone, Default)]
pub(super) struct HeaderNames {
    pub(super) value: Vec<syn::Ident>,
    /// The value's binding when the header binds it whole (an identifier): the name a
    /// step assigns.
    pub(super) value_whole: Option<syn::Ident>,
    /// The value's pattern as written in the header: a destructured value is assigned
    /// by writing the same pattern on the left (`(a, b) = (b, a);`).
    pub(super) value_pattern: Option<String>,
    pub(super) ctx: Vec<syn::Ident>,
    pub(super) current: Vec<syn::Ident>,
    pub(super) error: Vec<syn::Ident>,
}

/// Every identifier a pattern binds.
pub(super) fn bound_names(pat: &Pat) -> Vec<syn::Ident> {
    #[derive(Default)]
    struct Collect(Vec<syn::Ident>);
    impl<'ast> Visit<'ast> for Collect {
        fn visit_pat_ident(&mut self, node: &'ast syn::PatIdent) {
            self.0.push(node.ident.clone());
            syn::visit::visit_pat_ident(self, node);
        }
    }
    let mut collect = Collect::default();
    collect.visit_pat(pat);
    collect.0
}

/// The tokens of `tokens`, groups flattened (their delimiters dropped).
fn leaf_tokens(tokens: TokenStream) -> Vec<proc_macro2::TokenTree> {
    let mut leaves = Vec::new();
    for token in tokens {
        match token {
            proc_macro2::TokenTree::Group(group) => leaves.extend(leaf_tokens(group.stream())),
            leaf => leaves.push(leaf),
        }
    }
    leaves
}

/// Whether `tokens` contain one of `names` as an identifier or an inline format argument.
/// A field or method of the same name counts as well: it only means the step is evaluated
/// inside its future, which works for it just as well.
pub(super) fn mentions_any(tokens: TokenStream, names: &[syn::Ident]) -> bool {
    !names.is_empty()
        && leaf_tokens(tokens).into_iter().any(|token| match token {
            proc_macro2::TokenTree::Ident(ident) => names.contains(&ident),
            proc_macro2::TokenTree::Literal(literal) => format_args_of(&literal)
                .iter()
                .any(|arg| names.iter().any(|name| name == arg)),
            _ => false,
        })
}

/// The identifiers a string literal names as inline format arguments (`"{name}"`,
/// `"{name:?}"`): a format macro reads them as variables.
fn format_args_of(literal: &proc_macro2::Literal) -> Vec<String> {
    let Ok(syn::Lit::Str(text)) = syn::parse2::<syn::Lit>(literal.to_token_stream()) else {
        return Vec::new();
    };
    let text = text.value();
    let mut names = Vec::new();
    let mut rest = text.as_str();
    while let Some(open) = rest.find('{') {
        rest = &rest[open + 1..];
        if let Some(escaped) = rest.strip_prefix('{') {
            rest = escaped;
            continue;
        }
        let end = rest.find(['}', ':']).unwrap_or(rest.len());
        let name = rest[..end].trim();
        if syn::parse_str::<syn::Ident>(name).is_ok() {
            names.push(name.to_owned());
        }
    }
    names
}

/// Inline format arguments of every string literal in `tokens`, as identifiers at the
/// literal's span (where a format macro resolves them).
fn format_arg_idents(tokens: TokenStream) -> Vec<syn::Ident> {
    leaf_tokens(tokens)
        .into_iter()
        .filter_map(|token| match token {
            proc_macro2::TokenTree::Literal(literal) => Some(literal),
            _ => None,
        })
        .flat_map(|literal| {
            format_args_of(&literal)
                .into_iter()
                .map(move |name| syn::Ident::new(&name, literal.span()))
        })
        .collect()
}

/// Finds `.await`, `?` and `return` in the part of a step that runs inline (not inside
/// nested closures, async blocks or items, which have their own rules), also in the
/// arguments of macro calls.
#[derive(Default)]
pub(super) struct InlineScan {
    awaits: Vec<Span>,
    pub(super) returns: Vec<Span>,
    uses_try: bool,
}

impl<'ast> Visit<'ast> for InlineScan {
    fn visit_expr_return(&mut self, node: &'ast syn::ExprReturn) {
        self.returns.push(node.return_token.span);
        syn::visit::visit_expr_return(self, node);
    }
    fn visit_macro(&mut self, node: &'ast Macro) {
        // Most macros take expressions (`vec![..]`, `format!(..)`, `assert!(..)`); read
        // them as such. Other token shapes are scanned for a bare `?`.
        let exprs = macro_exprs(node);
        if exprs.is_empty() {
            self.uses_try |= contains_question_mark(node.tokens.clone());
        }
        for expr in &exprs {
            self.visit_expr(expr);
        }
    }
    fn visit_expr_await(&mut self, node: &'ast syn::ExprAwait) {
        self.awaits.push(node.await_token.span);
        syn::visit::visit_expr_await(self, node);
    }
    fn visit_expr_try(&mut self, node: &'ast syn::ExprTry) {
        self.uses_try = true;
        syn::visit::visit_expr_try(self, node);
    }
    fn visit_expr_closure(&mut self, _: &'ast ExprClosure) {}
    fn visit_expr_async(&mut self, _: &'ast syn::ExprAsync) {}
    fn visit_expr_try_block(&mut self, _: &'ast syn::ExprTryBlock) {}
    fn visit_item(&mut self, _: &'ast syn::Item) {}
}

fn contains_question_mark(tokens: TokenStream) -> bool {
    leaf_tokens(tokens).into_iter().any(
        |token| matches!(token, proc_macro2::TokenTree::Punct(punct) if punct.as_char() == '?'),
    )
}
