//! Tokens to [`model`](crate::model), with every misuse reported at its own tokens.
//!
//! Problems are collected rather than returned one by one, so a user fixes all of them in
//! one round (as serde_derive does). A model is built whenever the header allows one,
//! errors or not: what is not a step of it stands in (`model::StandIn`), so the expansion
//! that goes with the errors keeps the types of the user's code.

mod closure;
mod stand_in;
mod step;
#[cfg(test)]
mod tests;

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;
use syn::parse::{ParseStream, Parser};
use syn::spanned::Spanned;
use syn::{Expr, ExprClosure, Item, Macro, Pat, Stmt, Type};

use self::closure::{read_closure, Body};
use self::stand_in::stand_in;
use self::step::{bound_names, mentions_any, parse_step, HeaderNames, Read};
use crate::model::{Binding, Pipeline, Section, SectionKind, StandIn, Step, ValueBinding};

/// A `pipeline!` with errors: every error, and the model when one could be built.
pub(crate) struct Failure {
    pub(crate) errors: syn::Error,
    /// Built when the header binds a typed value and a context, whatever else is wrong.
    pub(crate) model: Option<Box<Pipeline>>,
}

/// Parses `($crate) |value: V, ctx: &C| { steps }`.
pub(crate) fn parse(input: TokenStream) -> Result<Pipeline, Failure> {
    let mut errors = Errors::default();
    let model = parse_pipeline(input, &mut errors);
    match (errors.0, model) {
        (None, Some(model)) => Ok(model),
        (Some(errors), model) => Err(Failure {
            errors,
            model: model.map(Box::new),
        }),
        // Every path that builds no model reports why; this only keeps that promise.
        (None, None) => Err(Failure {
            errors: syn::Error::new(
                Span::call_site(),
                "internal error: `pipeline!` built nothing and said nothing; please report this bug",
            ),
            model: None,
        }),
    }
}

/// Collects errors; `parse` merges them into one `syn::Error`.
#[derive(Default)]
struct Errors(Option<syn::Error>);

impl Errors {
    fn push(&mut self, span: impl ToTokens, message: impl std::fmt::Display) {
        self.push_error(syn::Error::new_spanned(span, message));
    }

    fn push_span(&mut self, span: Span, message: impl std::fmt::Display) {
        self.push_error(syn::Error::new(span, message));
    }

    fn push_error(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(existing) => existing.combine(error),
            None => self.0 = Some(error),
        }
    }

    fn is_empty(&self) -> bool {
        self.0.is_none()
    }
}

const HEADER_HELP: &str = "a pipeline header binds a value and a context, and optionally \
     the step's view of its instance: write `pipeline!(|value: V, ctx: &C| { ... })` or \
     `pipeline!(|value: V, ctx: &C, current| { ... })`";

/// Reads the invocation, reporting into `errors`; the model unless the header rules one
/// out (no typed value, no context: steps would name what nothing binds, and the pipeline
/// would have no type to give code after it).
fn parse_pipeline(input: TokenStream, errors: &mut Errors) -> Option<Pipeline> {
    let split = |input: ParseStream<'_>| {
        let krate_group;
        syn::parenthesized!(krate_group in input);
        let krate: TokenStream = krate_group.parse()?;
        let rest: TokenStream = input.parse()?;
        Ok((krate, rest))
    };
    let (krate, rest) = split
        .parse2(input)
        .map_err(|error| errors.push_error(error))
        .ok()?;
    if rest.is_empty() {
        errors.push_span(
            Span::call_site(),
            "`pipeline!` needs a header and a block of steps: \
             write `pipeline!(|value: V, ctx: &C| { step; step; })`",
        );
        return None;
    }
    let (closure, body, after) = read_closure(rest, errors, |error| {
        format!("expected a pipeline: `|value: V, ctx: &C| {{ step; step; }}` ({error})")
    })?;
    if !after.is_empty() {
        errors.push(
            after,
            "unexpected tokens after the pipeline's block: \
             `pipeline!` takes one `|value, ctx| { ... }`",
        );
    }
    check_closure_modifiers(&closure, errors, "pipeline");

    let header_span = header_tokens(&closure);
    let mut inputs = closure.inputs.iter();
    let value = inputs.next().map(split_binding);
    let mut ctx = inputs.next().map(split_binding);
    let mut current = inputs.next().map(split_binding);
    let mut extra: Vec<Binding> = inputs.map(split_binding).collect();
    if !matches!(closure.inputs.len(), 2 | 3) {
        errors.push(
            &header_span,
            format!(
                "{HEADER_HELP}; this header binds {}",
                count(closure.inputs.len())
            ),
        );
    }
    let mut value_typed = true;
    if let Some(value) = &value {
        if matches!(value.ty, None | Some(Type::Infer(_))) {
            errors.push(
                &value.pat,
                "the value needs a type: write `|value: V, ctx: &C|` \
                 (what a step does depends on its type, which cannot be inferred from the steps)",
            );
            value_typed = false;
        }
    }
    // A context or view of the instance that is not a reference is modelled as the
    // reference the error asks for, so the steps type-check as they will once it is fixed.
    if let Some(Binding { ty: Some(ty), .. }) = &mut ctx {
        if !matches!(ty, Type::Reference(_) | Type::Infer(_)) {
            errors.push(
                &*ty,
                "the context is shared by every step and is borrowed: write `&C` instead of `C`",
            );
            *ty = syn::parse_quote!(&#ty);
        }
    }
    if let Some(binding) = &mut current {
        if let Some(ty) = binding.ty.as_mut() {
            if !matches!(ty, Type::Reference(_) | Type::Infer(_)) {
                errors.push(
                    &*ty,
                    "the step's view of its instance is lent to each step: \
                     write `current` or `current: &Current<V, C>`",
                );
                if names_current(ty) {
                    *ty = syn::parse_quote!(&#ty);
                } else {
                    // Something else than a view of the instance: like a binding past
                    // the third, it rules the model out if a step names it.
                    extra.push(binding.clone());
                    binding.ty = None;
                }
            }
        }
    }

    let (statements, standing_in) = body_statements(body, errors, || {
        "a pipeline's body is a block of steps: write `|value, ctx| { step; step; }`".to_owned()
    });
    let names = HeaderNames {
        value: value
            .as_ref()
            .map(|b| bound_names(&b.pat))
            .unwrap_or_default(),
        value_whole: value.as_ref().and_then(|b| match &b.pat {
            Pat::Ident(ident) if ident.subpat.is_none() => Some(ident.ident.clone()),
            _ => None,
        }),
        value_pattern: value.as_ref().map(|b| b.pat.to_token_stream().to_string()),
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
    let mut recovered = Recovered::default();
    let extra_named = names_any(&statements, &extra);
    let mut main = Reader::new(&names, "pipeline!", standing_in);
    let (rescue, finally) = parse_body(statements, &mut main, errors, &mut recovered);
    let (main, main_stand_in) = main.finish(Vec::new());
    // First, as the main steps are written first (the sections' are in already).
    if let Some(main_stand_in) = main_stand_in {
        recovered.stand_ins.insert(0, main_stand_in);
    }

    let (Some(value), Some(ctx)) = (value, ctx) else {
        if errors.is_empty() {
            errors.push(&header_span, HEADER_HELP);
        }
        return None;
    };
    // No model when a step names a binding past the third, which nothing would bind,
    // nor without the value's type: `Pipeline<_, C>` would be a new error wherever
    // nothing after the macro says what `_` is.
    if extra_named || !value_typed {
        return None;
    }
    // `&V` borrows the value; `&'static T` (a lifetime named) is a value of that type.
    let by_ref =
        matches!(&value.ty, Some(Type::Reference(reference)) if reference.lifetime.is_none());
    Some(Pipeline {
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
        stand_ins: recovered.stand_ins,
        items: recovered.items,
    })
}

/// A body's statements, and whether they only stand in: a body that is not a block is
/// reported, and stands in as the one statement it is (as a step, an `async { .. }` body
/// would be a type error too).
fn body_statements(
    body: Body,
    errors: &mut Errors,
    message: impl FnOnce() -> String,
) -> (Vec<Stmt>, bool) {
    match body {
        Body::Statements(statements) => (statements, false),
        Body::Other(expr) => {
            errors.push(&expr, message());
            (vec![Stmt::Expr(expr, None)], true)
        }
    }
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

/// Whether `ty` is a path to `Current` (`Current<V, C>`, `pipewright::Current<V, C>`).
fn names_current(ty: &Type) -> bool {
    matches!(ty, Type::Path(path) if path.path.segments.last().is_some_and(|last| last.ident == "Current"))
}

/// Whether `statements` name (by identifier) what one of `bindings` binds.
fn names_any(statements: &[Stmt], bindings: &[Binding]) -> bool {
    let names: Vec<syn::Ident> = bindings
        .iter()
        .flat_map(|binding| bound_names(&binding.pat))
        .collect();
    statements
        .iter()
        .any(|statement| mentions_any(statement.to_token_stream(), &names))
}

fn section_of(mac: &Macro) -> Option<SectionKind> {
    let last = mac.path.segments.last()?;
    if last.ident == "rescue" {
        Some(SectionKind::Rescue)
    } else if last.ident == "finally" {
        Some(SectionKind::Finally)
    } else {
        None
    }
}

fn statement_macro(statement: &Stmt) -> Option<&Macro> {
    match statement {
        Stmt::Macro(stmt) => Some(&stmt.mac),
        Stmt::Expr(Expr::Macro(expr), _) => Some(&expr.mac),
        _ => None,
    }
}

/// What the body holds besides the model's steps (see `model::StandIn`).
#[derive(Default)]
struct Recovered {
    stand_ins: Vec<StandIn>,
    items: Vec<Item>,
    /// What the `let`s read so far bind: a step of a later section that names it stands
    /// in, after them (the stand-ins are one sequence), rather than name what nothing
    /// binds.
    let_names: Vec<syn::Ident>,
}

/// Reads the statements of one section into its steps, setting aside what stands in.
struct Reader<'a> {
    names: &'a HeaderNames,
    /// `pipeline!`, `rescue!` or `finally!`, for messages.
    section: &'static str,
    steps: Vec<Step>,
    stand_in: Vec<Stmt>,
    /// Every later statement stands in: after a `let` (they may name what it binds), in
    /// a section that is not kept, after a section (misplaced steps).
    standing_in: bool,
}

impl<'a> Reader<'a> {
    fn new(names: &'a HeaderNames, section: &'static str, standing_in: bool) -> Self {
        Reader {
            names,
            section,
            steps: Vec::new(),
            stand_in: Vec::new(),
            standing_in,
        }
    }

    fn read(&mut self, statement: Stmt, errors: &mut Errors, recovered: &mut Recovered) {
        match parse_step(&statement, self.names, errors, self.section) {
            Read::Item => {
                if let Stmt::Item(item) = statement {
                    recovered.items.push(item);
                }
            }
            Read::Step(step)
                if !self.standing_in
                    && !mentions_any(statement.to_token_stream(), &recovered.let_names) =>
            {
                self.steps.push(step)
            }
            Read::Step(_) | Read::Rejected => self.stand_in.push(statement),
            Read::Let => {
                if let Stmt::Local(local) = &statement {
                    recovered.let_names.extend(bound_names(&local.pat));
                }
                self.stand_in.push(statement);
                self.standing_in = true;
            }
        }
    }

    /// The steps, and what stands in (with the error bindings in scope).
    fn finish(self, errors: Vec<(Binding, SectionKind)>) -> (Vec<Step>, Option<StandIn>) {
        (self.steps, stand_in(self.stand_in, errors))
    }
}

/// Splits a pipeline body into main steps (read by `main`) and sections, checking their
/// order.
fn parse_body(
    statements: Vec<Stmt>,
    main: &mut Reader<'_>,
    errors: &mut Errors,
    recovered: &mut Recovered,
) -> (Option<Section>, Option<Section>) {
    let names = main.names;
    let mut rescue: Option<Section> = None;
    let mut finally: Option<Section> = None;
    let (mut rescue_seen, mut finally_seen) = (false, false);
    // The first section seen, to report steps placed after it (once).
    let mut first_section: Option<(SectionKind, Span)> = None;
    let mut misplaced_reported = false;

    for statement in statements {
        if let Some(kind) = statement_macro(&statement).and_then(section_of) {
            let mac = statement_macro(&statement).cloned();
            let Some(mac) = mac else { continue };
            let span = mac.path.span();
            // A section that is not kept (a second one, `rescue!` after `finally!`) still
            // has its steps read: their errors are reported and they stand in.
            let (keep, problem) = match kind {
                SectionKind::Rescue if rescue_seen => (
                    false,
                    Some("a pipeline has at most one `rescue!` section: merge the two into one"),
                ),
                SectionKind::Rescue if finally_seen => (
                    false,
                    Some("`rescue!` must come before `finally!`: `finally!` is the last section; move this `rescue!` above it"),
                ),
                SectionKind::Finally if finally_seen => (
                    false,
                    Some("a pipeline has at most one `finally!` section: merge the two into one"),
                ),
                _ => (true, None),
            };
            let section = parse_section(&mac, kind, keep, names, &[], errors, recovered);
            if let Some(problem) = problem {
                errors.push(&mac.path, problem);
            }
            match kind {
                SectionKind::Rescue if keep => rescue = section,
                SectionKind::Finally if keep => finally = section,
                _ => {}
            }
            match kind {
                SectionKind::Rescue => rescue_seen = true,
                SectionKind::Finally => finally_seen = true,
            }
            first_section.get_or_insert((kind, span));
            main.standing_in = true;
            continue;
        }
        main.read(statement, errors, recovered);
        if let Some((kind, span)) = first_section {
            if !misplaced_reported {
                errors.push_span(
                    span,
                    format!(
                        "`{}` must come after every step of the pipeline: move the steps that follow it above it",
                        kind.macro_name()
                    ),
                );
                misplaced_reported = true;
            }
        }
    }
    (rescue, finally)
}

/// Parses `rescue!(|error| { steps })` or `finally!(|error| { steps })`; a section that is
/// not `keep` only stands in. `outer`: the error bindings of the sections it is nested in
/// (an error), in scope where it stands in.
fn parse_section(
    mac: &Macro,
    kind: SectionKind,
    keep: bool,
    names: &HeaderNames,
    outer: &[(Binding, SectionKind)],
    errors: &mut Errors,
    recovered: &mut Recovered,
) -> Option<Section> {
    let macro_name = kind.macro_name();
    let (closure, body, after) = read_closure(mac.tokens.clone(), errors, |error| {
        format!("expected `{macro_name}(|error| {{ step; step; }})` ({error})")
    })?;
    if !after.is_empty() {
        errors.push(
            after,
            format!("unexpected tokens after the `{macro_name}` block: write `{macro_name}(|error| {{ step; step; }})`"),
        );
    }
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
    let (statements, standing_in) = body_statements(body, errors, || {
        format!("a `{macro_name}` body is a block of steps: write `{macro_name}(|error| {{ step; step; }})`")
    });
    // The section's error binding: the first, unless a statement names a later one
    // (nothing would bind it).
    let rest: Vec<Binding> = closure.inputs.iter().skip(1).map(split_binding).collect();
    let error = closure
        .inputs
        .first()
        .map(split_binding)
        .filter(|_| !names_any(&statements, &rest));
    let names = HeaderNames {
        error: error
            .as_ref()
            .map(|binding| bound_names(&binding.pat))
            .unwrap_or_default(),
        ..names.clone()
    };
    let mut in_scope = outer.to_vec();
    in_scope.extend(error.clone().map(|binding| (binding, kind)));
    let mut reader = Reader::new(&names, macro_name, standing_in || !keep);
    for statement in statements {
        if let Some(inner) = statement_macro(&statement).and_then(section_of) {
            let Some(mac) = statement_macro(&statement).cloned() else {
                continue;
            };
            errors.push(
                &mac.path,
                format!(
                    "`{}` cannot be nested inside `{macro_name}`: sections belong at the end of the pipeline's body",
                    inner.macro_name()
                ),
            );
            parse_section(&mac, inner, false, &names, &in_scope, errors, recovered);
            continue;
        }
        reader.read(statement, errors, recovered);
    }
    // Without an error binding, nothing binds what the steps may call the error: the
    // section is dropped, as they could not be expanded without a new error.
    let error = error?;
    let (steps, stands_in) = reader.finish(in_scope);
    recovered.stand_ins.extend(stands_in);
    keep.then_some(Section { error, steps })
}
