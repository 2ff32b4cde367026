//! A closure-shaped `|bindings| { statements }` (a pipeline, a `rescue!`, a `finally!`),
//! read so that one statement that does not parse costs only that statement.

use proc_macro2::{Delimiter, Group, Punct, Spacing, TokenStream, TokenTree};
use syn::parse::Parser;
use syn::{Block, Expr, ExprClosure, Stmt};

use super::Errors;

/// What the closure's body holds.
pub(super) enum Body {
    /// A block: its statements (those that parse).
    Statements(Vec<Stmt>),
    /// Anything else (an error for the caller to report).
    Other(Expr),
}

/// Reads `tokens` as a closure, then `rest` (tokens after it, which the caller reports).
/// When the closure does not parse but its header does and its body is a block, only the
/// statements that do not parse are lost (each reported with syn's error at its tokens;
/// re-emitting them would add rustc's own parse errors to it), so the others still build
/// a model and keep their types. Otherwise the error, worded by `describe`, is reported
/// and nothing is returned.
pub(super) fn read_closure(
    tokens: TokenStream,
    errors: &mut Errors,
    describe: impl FnOnce(&syn::Error) -> String,
) -> Option<(ExprClosure, Body, TokenStream)> {
    let whole = |input: syn::parse::ParseStream<'_>| {
        let closure: ExprClosure = input.parse()?;
        let rest: TokenStream = input.parse()?;
        Ok((closure, rest))
    };
    match whole.parse2(tokens.clone()) {
        Ok((mut closure, rest)) => {
            let body = match std::mem::replace(&mut *closure.body, empty_block()) {
                Expr::Block(block) if block.label.is_none() => Body::Statements(block.block.stmts),
                other => Body::Other(other),
            };
            Some((closure, body, rest))
        }
        Err(error) => match read_statement_by_statement(tokens, errors) {
            Some((closure, statements)) => {
                Some((closure, Body::Statements(statements), TokenStream::new()))
            }
            None => {
                errors.push_span(error.span(), describe(&error));
                None
            }
        },
    }
}

fn empty_block() -> Expr {
    syn::parse_quote!({})
}

/// The header (everything before a final `{ ... }`) parsed with an empty body, then the
/// body split at its top-level `;` and each piece parsed on its own. `None` when the
/// header does not parse, or when every piece does (the error is elsewhere).
fn read_statement_by_statement(
    tokens: TokenStream,
    errors: &mut Errors,
) -> Option<(ExprClosure, Vec<Stmt>)> {
    let mut trees: Vec<TokenTree> = tokens.into_iter().collect();
    let body = match trees.pop() {
        Some(TokenTree::Group(group)) if group.delimiter() == Delimiter::Brace => group,
        _ => return None,
    };
    let mut header: TokenStream = trees.into_iter().collect();
    header.extend([TokenTree::Group(Group::new(
        Delimiter::Brace,
        TokenStream::new(),
    ))]);
    let closure: ExprClosure = syn::parse2(header).ok()?;
    // `|x| a + {}` would parse too: the body must be the block itself.
    if !matches!(&*closure.body, Expr::Block(block) if block.label.is_none()) {
        return None;
    }
    let mut statements = Vec::new();
    let mut failed = false;
    for piece in pieces(&body) {
        match Block::parse_within.parse2(piece) {
            Ok(parsed) => statements.extend(parsed),
            Err(error) => {
                errors.push_error(error);
                failed = true;
            }
        }
    }
    failed.then_some((closure, statements))
}

/// The body's tokens split after each top-level `;` (a `;` inside brackets belongs to a
/// group). The last piece gets a `;` at the closing brace, so that syn reports a
/// statement cut short there rather than at the whole macro call.
fn pieces(body: &Group) -> Vec<TokenStream> {
    let mut pieces = Vec::new();
    let mut piece = TokenStream::new();
    for tree in body.stream() {
        let ends = matches!(&tree, TokenTree::Punct(punct) if punct.as_char() == ';');
        piece.extend([tree]);
        if ends {
            pieces.push(std::mem::take(&mut piece));
        }
    }
    if !piece.is_empty() {
        let mut semi = Punct::new(';', Spacing::Alone);
        semi.set_span(body.span_close());
        piece.extend([TokenTree::Punct(semi)]);
        pieces.push(piece);
    }
    pieces
}
