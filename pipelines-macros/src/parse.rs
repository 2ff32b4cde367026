//! Tokens to [`model`](crate::model), with every misuse reported at its own tokens.
//!
//! Problems are collected rather than returned one by one, so a user fixes all of them in
//! one round (as serde_derive does).

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;
use syn::parse::ParseStream;
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{Expr, ExprClosure, Macro, Pat, Stmt, Type};

use crate::model::{Binding, Mentions, Pipeline, Section, Step, StepKind, ValueBinding};

/// Collects errors; `finish` merges them into one `syn::Error`.
#[derive(Default)]
struct Errors(Option<syn::Error>);

impl Errors {
    fn push(&mut self, span: impl ToTokens, message: impl std::fmt::Display) {
        let error = syn::Error::new_spanned(span, message);
        match &mut self.0 {
            Some(existing) => existing.combine(error),
            None => self.0 = Some(error),
        }
    }

    fn push_span(&mut self, span: Span, message: impl std::fmt::Display) {
        let error = syn::Error::new(span, message);
        match &mut self.0 {
            Some(existing) => existing.combine(error),
            None => self.0 = Some(error),
        }
    }

    fn finish<T>(self, value: T) -> syn::Result<T> {
        match self.0 {
            Some(error) => Err(error),
            None => Ok(value),
        }
    }
}

const HEADER_HELP: &str = "a pipeline header binds a value and a context, and optionally \
     the step's view of its instance: write `pipeline!(|value: V, ctx: &C| { ... })` or \
     `pipeline!(|value: V, ctx: &C, current| { ... })`";

/// Parses `($crate) |value: V, ctx: &C| { steps }`.
pub(crate) fn parse_pipeline(input: ParseStream<'_>) -> syn::Result<Pipeline> {
    let krate_group;
    syn::parenthesized!(krate_group in input);
    let krate: TokenStream = krate_group.parse()?;
    if input.is_empty() {
        return Err(syn::Error::new(
            Span::call_site(),
            "`pipeline!` needs a header and a block of steps: \
             write `pipeline!(|value: V, ctx: &C| { step; step; })`",
        ));
    }
    let closure: ExprClosure = input.parse().map_err(|error| {
        syn::Error::new(
            error.span(),
            format!("expected a pipeline: `|value: V, ctx: &C| {{ step; step; }}` ({error})"),
        )
    })?;
    if !input.is_empty() {
        let rest: TokenStream = input.parse()?;
        return Err(syn::Error::new_spanned(
            rest,
            "unexpected tokens after the pipeline's block: \
             `pipeline!` takes one `|value, ctx| { ... }`",
        ));
    }

    let mut errors = Errors::default();
    check_closure_modifiers(&closure, &mut errors, "pipeline");

    let header_span = header_tokens(&closure);
    let mut inputs = closure.inputs.iter();
    let value = inputs.next().map(split_binding);
    let ctx = inputs.next().map(split_binding);
    let current = inputs.next().map(split_binding);
    if !matches!(closure.inputs.len(), 2 | 3) {
        errors.push(
            &header_span,
            format!(
                "{HEADER_HELP}; this header binds {}",
                count(closure.inputs.len())
            ),
        );
    }
    if let Some(value) = &value {
        if matches!(value.ty, None | Some(Type::Infer(_))) {
            errors.push(
                &value.pat,
                "the value needs a type: write `|value: V, ctx: &C|` \
                 (what a step does depends on its type, which cannot be inferred from the steps)",
            );
        }
    }
    if let Some(Binding { ty: Some(ty), .. }) = &ctx {
        if !matches!(ty, Type::Reference(_) | Type::Infer(_)) {
            errors.push(
                ty,
                "the context is shared by every step and is borrowed: write `&C` instead of `C`",
            );
        }
    }

    if let Some(Binding { ty: Some(ty), .. }) = &current {
        if !matches!(ty, Type::Reference(_) | Type::Infer(_)) {
            errors.push(
                ty,
                "the step's view of its instance is lent to each step: \
                 write `current` or `current: &Current<V, C>`",
            );
        }
    }

    let statements = match &*closure.body {
        Expr::Block(block) if block.label.is_none() => block.block.stmts.clone(),
        other => {
            errors.push(
                other,
                "a pipeline's body is a block of steps: write `|value, ctx| { step; step; }`",
            );
            Vec::new()
        }
    };
    let names = HeaderNames {
        value: value
            .as_ref()
            .map(|b| bound_names(&b.pat))
            .unwrap_or_default(),
        ctx: ctx
            .as_ref()
            .map(|b| bound_names(&b.pat))
            .unwrap_or_default(),
        current: current
            .as_ref()
            .map(|b| bound_names(&b.pat))
            .unwrap_or_default(),
        error: Vec::new(),
    };
    let (main, rescue, finally) = parse_body(statements, &names, &mut errors);

    let (Some(value), Some(ctx)) = (value, ctx) else {
        return errors
            .finish(())
            .and_then(|()| Err(syn::Error::new_spanned(&header_span, HEADER_HELP)));
    };
    // `&V` borrows the value; `&'static T` (a lifetime named) is a value of that type.
    let by_ref =
        matches!(&value.ty, Some(Type::Reference(reference)) if reference.lifetime.is_none());
    errors.finish(Pipeline {
        krate,
        value: ValueBinding {
            binding: value,
            by_ref,
        },
        ctx,
        current,
        main,
        rescue,
        finally,
    })
}

fn count(n: usize) -> String {
    match n {
        0 => "nothing".to_owned(),
        1 => "only one".to_owned(),
        n => format!("{n}"),
    }
}

/// The `|...|` part of a closure, for error spans.
fn header_tokens(closure: &ExprClosure) -> TokenStream {
    let mut tokens = TokenStream::new();
    closure.or1_token.to_tokens(&mut tokens);
    closure.inputs.to_tokens(&mut tokens);
    closure.or2_token.to_tokens(&mut tokens);
    tokens
}

fn check_closure_modifiers(closure: &ExprClosure, errors: &mut Errors, what: &str) {
    if let Some(token) = &closure.lifetimes {
        errors.push(
            token,
            format!("a {what} header takes no `for<...>`: remove it"),
        );
    }
    if let Some(token) = &closure.constness {
        errors.push(
            token,
            format!("a {what} header cannot be `const`: remove it"),
        );
    }
    if let Some(token) = &closure.movability {
        errors.push(
            token,
            format!("a {what} header cannot be `static`: remove it"),
        );
    }
    if let Some(token) = &closure.asyncness {
        errors.push(
            token,
            format!("a {what} header is not `async`: steps ending in `.await` wait by themselves; remove `async`"),
        );
    }
    if let Some(token) = &closure.capture {
        errors.push(
            token,
            format!("a {what} header takes no `move`: the pipeline always moves what its steps capture; remove `move`"),
        );
    }
    if let syn::ReturnType::Type(arrow, ty) = &closure.output {
        let mut tokens = arrow.to_token_stream();
        ty.to_tokens(&mut tokens);
        errors.push(
            tokens,
            format!(
                "a {what} header has no return type: a pipeline returns its value; remove `-> ...`"
            ),
        );
    }
}

fn split_binding(pat: &Pat) -> Binding {
    match pat {
        Pat::Type(typed) => Binding {
            pat: (*typed.pat).clone(),
            ty: Some((*typed.ty).clone()),
        },
        other => Binding {
            pat: other.clone(),
            ty: None,
        },
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum SectionName {
    Rescue,
    Finally,
}

impl SectionName {
    fn of(mac: &Macro) -> Option<Self> {
        let last = mac.path.segments.last()?;
        if last.ident == "rescue" {
            Some(SectionName::Rescue)
        } else if last.ident == "finally" {
            Some(SectionName::Finally)
        } else {
            None
        }
    }

    fn macro_name(self) -> &'static str {
        match self {
            SectionName::Rescue => "rescue!",
            SectionName::Finally => "finally!",
        }
    }
}

fn statement_macro(statement: &Stmt) -> Option<&Macro> {
    match statement {
        Stmt::Macro(stmt) => Some(&stmt.mac),
        Stmt::Expr(Expr::Macro(expr), _) => Some(&expr.mac),
        _ => None,
    }
}

type Body = (Vec<Step>, Option<Section>, Option<Section>);

/// Splits a pipeline body into main steps and sections, checking their order.
fn parse_body(statements: Vec<Stmt>, names: &HeaderNames, errors: &mut Errors) -> Body {
    let mut main = Vec::new();
    let mut rescue: Option<Section> = None;
    let mut finally: Option<Section> = None;
    // The first section seen, to report steps placed after it (once).
    let mut first_section: Option<(SectionName, Span)> = None;
    let mut misplaced_reported = false;

    for statement in statements {
        if let Some(name) = statement_macro(&statement).and_then(SectionName::of) {
            let mac = statement_macro(&statement).cloned();
            let Some(mac) = mac else { continue };
            let span = mac.path.span();
            let section = parse_section(&mac, name, names, errors);
            match name {
                SectionName::Rescue => {
                    if rescue.is_some() {
                        errors.push(
                            &mac.path,
                            "a pipeline has at most one `rescue!` section: merge the two into one",
                        );
                    } else if finally.is_some() {
                        errors.push(
                            &mac.path,
                            "`rescue!` must come before `finally!`: `finally!` is the last section; move this `rescue!` above it",
                        );
                    } else {
                        rescue = section;
                    }
                }
                SectionName::Finally => {
                    if finally.is_some() {
                        errors.push(
                            &mac.path,
                            "a pipeline has at most one `finally!` section: merge the two into one",
                        );
                    } else {
                        finally = section;
                    }
                }
            }
            first_section.get_or_insert((name, span));
            continue;
        }
        let step = parse_step(statement, names, errors, "pipeline!");
        if let Some((name, span)) = first_section {
            if !misplaced_reported {
                errors.push_span(
                    span,
                    format!(
                        "`{}` must come after every step of the pipeline: move the steps that follow it above it",
                        name.macro_name()
                    ),
                );
                misplaced_reported = true;
            }
            continue;
        }
        if let Some(step) = step {
            main.push(step);
        }
    }
    (main, rescue, finally)
}

/// Parses `rescue!(|error| { steps })` or `finally!(|error| { steps })`.
fn parse_section(
    mac: &Macro,
    name: SectionName,
    names: &HeaderNames,
    errors: &mut Errors,
) -> Option<Section> {
    let macro_name = name.macro_name();
    let closure: ExprClosure = match mac.parse_body() {
        Ok(closure) => closure,
        Err(error) => {
            errors.push_span(
                error.span(),
                format!("expected `{macro_name}(|error| {{ step; step; }})` ({error})"),
            );
            return None;
        }
    };
    check_closure_modifiers(&closure, errors, macro_name);
    if closure.inputs.len() != 1 {
        errors.push(
            header_tokens(&closure),
            format!(
                "a `{macro_name}` header binds exactly one error: write `{macro_name}(|error| {{ ... }})`; this header binds {}",
                count(closure.inputs.len())
            ),
        );
    }
    let statements = match &*closure.body {
        Expr::Block(block) if block.label.is_none() => block.block.stmts.clone(),
        other => {
            errors.push(
                other,
                format!("a `{macro_name}` body is a block of steps: write `{macro_name}(|error| {{ step; step; }})`"),
            );
            Vec::new()
        }
    };
    let names = HeaderNames {
        error: closure
            .inputs
            .first()
            .map(|pat| bound_names(&split_binding(pat).pat))
            .unwrap_or_default(),
        ..names.clone()
    };
    let mut steps = Vec::new();
    for statement in statements {
        if let Some(inner) = statement_macro(&statement).and_then(SectionName::of) {
            let path = statement_macro(&statement).map(|mac| mac.path.clone());
            errors.push(
                path,
                format!(
                    "`{}` cannot be nested inside `{macro_name}`: sections belong at the end of the pipeline's body",
                    inner.macro_name()
                ),
            );
            continue;
        }
        if let Some(step) = parse_step(statement, &names, errors, macro_name) {
            steps.push(step);
        }
    }
    let error = closure.inputs.first().map(split_binding)?;
    Some(Section { error, steps })
}

/// Parses one statement as a step.
fn parse_step(
    statement: Stmt,
    names: &HeaderNames,
    errors: &mut Errors,
    section: &str,
) -> Option<Step> {
    let expr = match statement {
        Stmt::Expr(expr, _) => expr,
        Stmt::Macro(stmt) => Expr::Macro(syn::ExprMacro {
            attrs: stmt.attrs,
            mac: stmt.mac,
        }),
        Stmt::Local(local) => {
            errors.push(
                &local,
                format!(
                    "a `{section}` step cannot declare a variable: each step sees only the value, the context and \
                     what the pipeline captures; put the `let` inside a block step `{{ let x = ...; ... }}`, \
                     or make the binding a step of its own that returns the new value"
                ),
            );
            return None;
        }
        Stmt::Item(item) => {
            errors.push(
                &item,
                format!("a `{section}` body holds steps, not items: define this item outside the `pipeline!`"),
            );
            return None;
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
        other => StepKind::Sync(other),
    };
    let inline = match &kind {
        StepKind::Sync(expr) | StepKind::Await { future: expr, .. } => expr,
    };
    let mut scan = InlineScan::default();
    scan.visit_expr(inline);
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
    Some(Step {
        kind,
        uses_try: scan.uses_try,
        mentions,
        captures,
    })
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
struct HeaderNames {
    value: Vec<syn::Ident>,
    ctx: Vec<syn::Ident>,
    current: Vec<syn::Ident>,
    error: Vec<syn::Ident>,
}

/// Every identifier a pattern binds.
fn bound_names(pat: &Pat) -> Vec<syn::Ident> {
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
fn mentions_any(tokens: TokenStream, names: &[syn::Ident]) -> bool {
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
struct InlineScan {
    awaits: Vec<Span>,
    returns: Vec<Span>,
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
