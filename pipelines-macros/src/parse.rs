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

use crate::model::{Binding, Pipeline, Section, Step, StepKind, ValueBinding};

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

const HEADER_HELP: &str = "a pipeline header binds exactly a value and a context: \
     write `pipeline!(|value: V, ctx: &C| { ... })`";

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
    if closure.inputs.len() != 2 {
        errors.push(
            &header_span,
            format!(
                "{HEADER_HELP}; this header binds {}",
                count(closure.inputs.len())
            ),
        );
    }
    if let Some(Binding { ty: Some(ty), .. }) = &ctx {
        if !matches!(ty, Type::Reference(_) | Type::Infer(_)) {
            errors.push(
                ty,
                "the context is shared by every step and is borrowed: write `&C` instead of `C`",
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
    let (main, rescue, finally) = parse_body(statements, &mut errors);

    let (Some(value), Some(ctx)) = (value, ctx) else {
        return errors
            .finish(())
            .and_then(|()| Err(syn::Error::new_spanned(&header_span, HEADER_HELP)));
    };
    let by_ref = matches!(value.ty, Some(Type::Reference(_)));
    errors.finish(Pipeline {
        krate,
        value: ValueBinding {
            binding: value,
            by_ref,
        },
        ctx,
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
fn parse_body(statements: Vec<Stmt>, errors: &mut Errors) -> Body {
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
            let section = parse_section(&mac, name, errors);
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
        let step = parse_step(statement, errors, "pipeline!");
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
fn parse_section(mac: &Macro, name: SectionName, errors: &mut Errors) -> Option<Section> {
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
        if let Some(step) = parse_step(statement, errors, macro_name) {
            steps.push(step);
        }
    }
    let error = closure.inputs.first().map(split_binding)?;
    Some(Section { error, steps })
}

/// Parses one statement as a step.
fn parse_step(statement: Stmt, errors: &mut Errors, section: &str) -> Option<Step> {
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
    Some(Step {
        kind,
        uses_try: scan.uses_try,
    })
}

/// Finds `.await` and `?` in the part of a step that runs inline (not inside nested
/// closures, async blocks or items, which have their own rules).
#[derive(Default)]
struct InlineScan {
    awaits: Vec<Span>,
    uses_try: bool,
}

impl<'ast> Visit<'ast> for InlineScan {
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
