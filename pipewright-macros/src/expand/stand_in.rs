//! The stand-ins of a `pipeline!` with errors (see `model::StandIn`): one more arm of
//! the step closure, past the main section's last step (so never called, and the crate
//! does not compile anyway), where one `async` block is built and dropped. In it, the
//! header's bindings are bound as for a step, and each stand-in follows in turn: its
//! section's error bindings bound to `loop {}` at their types, then its statements as
//! written. All are type-checked, in their order, with `.await` and `?` allowed
//! anywhere (the block returns a `Result`).

use proc_macro2::TokenStream;
use quote::quote;
use syn::Stmt;

use super::Steps;
use crate::model::{Binding, Pipeline, SectionKind, StandIn};

/// The arm, when there is anything to stand in.
pub(super) fn arm(model: &Pipeline, steps: &Steps<'_>) -> Option<TokenStream> {
    if model.stand_ins.is_empty() {
        return None;
    }
    let private = steps.private;
    let index = model.main.len();
    let bindings = [Some(&steps.value), Some(&steps.ctx), steps.current.as_ref()]
        .into_iter()
        .flatten()
        .map(|binding| binding.bind(&binding.lent));
    let stand_ins = model
        .stand_ins
        .iter()
        .map(|stand_in| in_sequence(stand_in, private));
    Some(quote! {
        #private::StepCall::Main { index: #index, value: __pipelines_value, ctx: __pipelines_ctx, current: __pipelines_current } => {
            #(#bindings)*
            #[allow(unused, unreachable_code)]
            let _ = async {
                #(#stand_ins)*
                ::core::result::Result::<(), #private::BoxError>::Ok(())
            };
            #private::Outcome::Keep
        }
    })
}

/// One stand-in's part of the sequence.
fn in_sequence(stand_in: &StandIn, private: &TokenStream) -> TokenStream {
    let errors = stand_in.errors.iter().map(|(Binding { pat, ty }, kind)| {
        let ty = match (ty, kind) {
            (Some(ty), _) => quote!(#ty),
            (None, SectionKind::Rescue) => quote!(&#private::Error),
            (None, SectionKind::Finally) => quote!(::core::option::Option<&#private::Error>),
        };
        quote!(let #pat: #ty = loop {};)
    });
    let statements = stand_in.statements.iter().map(statement);
    quote! {
        #(#errors)*
        #(#statements)*
    }
}

/// A statement as written, with the `;` it may lack at the end of a block.
fn statement(statement: &Stmt) -> TokenStream {
    match statement {
        Stmt::Expr(expr, None) => quote!(#expr;),
        Stmt::Macro(mac) if mac.semi_token.is_none() => quote!(#mac;),
        other => quote!(#other),
    }
}
