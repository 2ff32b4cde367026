//! Statements that stand in ([`StandIn`]): prepared so that they add no error of their own.

use syn::visit::Visit;
use syn::visit_mut::{self, VisitMut};
use syn::{Expr, Stmt};

use super::step::InlineScan;
use crate::model::{Binding, SectionKind, StandIn};

/// The stand-in of `statements`, with the error bindings of the sections they were
/// written in; `None` when nothing is left to stand in.
pub(super) fn stand_in(
    statements: Vec<Stmt>,
    errors: Vec<(Binding, SectionKind)>,
) -> Option<StandIn> {
    let statements: Vec<Stmt> = statements.into_iter().filter_map(prepare).collect();
    (!statements.is_empty()).then_some(StandIn { errors, statements })
}

/// A step's `return` (already reported) becomes `loop {}`: what it returns has no type a
/// stand-in could give it, and a mismatch would be reported too. A statement with a
/// `return` in a macro's arguments, which cannot be rewritten, is left out.
fn prepare(mut statement: Stmt) -> Option<Stmt> {
    ReplaceReturns.visit_stmt_mut(&mut statement);
    let mut scan = InlineScan::default();
    scan.visit_stmt(&statement);
    scan.returns.is_empty().then_some(statement)
}

/// Replaces `return` where it would leave the step: not in closures, async blocks or
/// items, which have their own (as `InlineScan` finds them).
struct ReplaceReturns;

impl VisitMut for ReplaceReturns {
    fn visit_expr_mut(&mut self, expr: &mut Expr) {
        if let Expr::Return(returned) = expr {
            let span = returned.return_token.span;
            *expr = syn::parse_quote_spanned!(span=> loop {});
            return;
        }
        visit_mut::visit_expr_mut(self, expr);
    }
    fn visit_expr_closure_mut(&mut self, _: &mut syn::ExprClosure) {}
    fn visit_expr_async_mut(&mut self, _: &mut syn::ExprAsync) {}
    fn visit_expr_try_block_mut(&mut self, _: &mut syn::ExprTryBlock) {}
    fn visit_item_mut(&mut self, _: &mut syn::Item) {}
}
