//! [`model`](crate::model) to code.
//!
//! A pipeline becomes one closure that runs step `i` of a section, called by the runtime's
//! interpreter. Each step binds the header's patterns, evaluates the user's expression
//! inline and converts its result into an `Outcome` by type (see the runtime's `outcome`
//! module). A step ending in `.await` evaluates its future inline and hands it over,
//! boxed, to the interpreter, which polls it. Generated code names only
//! `<runtime crate>::__private::...` and `::core::...`.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::Type;

use crate::model::{Binding, Pipeline, Section, Step, StepKind};

pub(crate) fn expand_errors(error: syn::Error) -> TokenStream {
    let errors = error.to_compile_error();
    // Diverging, so the failed `pipeline!` does not add type errors of its own.
    quote! {{ #errors loop {} }}
}

pub(crate) fn expand(model: &Pipeline) -> TokenStream {
    let krate = &model.krate;
    let private = quote!(#krate::__private);
    let value_type = value_type(model);
    let ctx_type = match &model.ctx.ty {
        Some(Type::Reference(reference)) => {
            let elem = &reference.elem;
            quote!(#elem)
        }
        _ => quote!(_),
    };

    let outcome = quote!(#private::Outcome<#value_type, #ctx_type>);
    let bind_value = bind_value(model);
    let bind_ctx = {
        let Binding { pat, ty } = &model.ctx;
        let ty = ty.iter();
        quote! {
            #[allow(unused_variables, unused_mut)]
            let #pat #(: #ty)* = __pipelines_ctx;
        }
    };

    let mut arms = Vec::new();
    for (index, step) in model.main.iter().enumerate() {
        let body = expand_step(step, &private, &outcome);
        arms.push(quote! {
            #private::StepCall::Main { index: #index, value: __pipelines_value, ctx: __pipelines_ctx } => {
                #bind_value
                #bind_ctx
                #body
            }
        });
    }
    if let Some(section) = &model.rescue {
        for (index, step) in section.steps.iter().enumerate() {
            let body = expand_step(step, &private, &outcome);
            let bind_error = bind_error(section, quote!(&#private::Error));
            arms.push(quote! {
                #private::StepCall::Rescue { index: #index, value: __pipelines_value, ctx: __pipelines_ctx, error: __pipelines_error } => {
                    #bind_value
                    #bind_ctx
                    #bind_error
                    #body
                }
            });
        }
    }
    if let Some(section) = &model.finally {
        for (index, step) in section.steps.iter().enumerate() {
            let body = expand_step(step, &private, &outcome);
            let bind_error = bind_error(section, quote!(::core::option::Option<&#private::Error>));
            arms.push(quote! {
                #private::StepCall::Finally { index: #index, value: __pipelines_value, ctx: __pipelines_ctx, error: __pipelines_error } => {
                    #bind_value
                    #bind_ctx
                    #bind_error
                    #body
                }
            });
        }
    }

    let main_len = model.main.len();
    let section_len = |section: &Option<Section>| match section {
        Some(section) => {
            let len = section.steps.len();
            quote!(::core::option::Option::Some(#len))
        }
        None => quote!(::core::option::Option::None),
    };
    let rescue_len = section_len(&model.rescue);
    let finally_len = section_len(&model.finally);

    quote! {{
        static __PIPELINES_SITE: #private::Site = #private::Site::new(::core::concat!(
            "pipeline@", ::core::file!(), ":", ::core::line!(), ":", ::core::column!()
        ));
        #private::Pipeline::<#value_type, #ctx_type>::__from_steps(
            &__PIPELINES_SITE,
            #private::Layout { main: #main_len, rescue: #rescue_len, finally: #finally_len },
            move |__pipelines_call: #private::StepCall<'_, #value_type, #ctx_type>|
                  -> #private::Outcome<#value_type, #ctx_type> {
                #[allow(unused_imports)]
                use #private::{
                    OptionKind as _, ResultKind as _, ResultOptionKind as _, TraitKind as _, ValueKind as _,
                };
                #[allow(unreachable_patterns)]
                match __pipelines_call {
                    #(#arms)*
                    __pipelines_other => __pipelines_other.no_such_step(),
                }
            },
        )
    }}
}

/// The value type `V`: the header's type, or its referent when steps borrow the value.
fn value_type(model: &Pipeline) -> TokenStream {
    match &model.value.binding.ty {
        Some(Type::Reference(reference)) => {
            let elem = &reference.elem;
            quote!(#elem)
        }
        Some(ty) => quote!(#ty),
        None => quote!(_),
    }
}

fn bind_value(model: &Pipeline) -> TokenStream {
    let Binding { pat, ty } = &model.value.binding;
    let ty = ty.iter();
    let source = if model.value.by_ref {
        quote!(__pipelines_value)
    } else {
        quote!(::core::clone::Clone::clone(__pipelines_value))
    };
    quote! {
        #[allow(unused_variables, unused_mut)]
        let #pat #(: #ty)* = #source;
    }
}

fn bind_error(section: &Section, default_type: TokenStream) -> TokenStream {
    let Binding { pat, ty } = &section.error;
    let ty = match ty {
        Some(ty) => quote!(#ty),
        None => default_type,
    };
    quote! {
        #[allow(unused_variables, unused_mut)]
        let #pat: #ty = __pipelines_error;
    }
}

/// Converts `result` (an expression) into an `Outcome` by its type. Type errors of the
/// conversion (a step whose type is not the value's) point at `span`, the user's step.
fn dispatch(result: TokenStream, span: Span, private: &TokenStream) -> TokenStream {
    let span = Span::call_site().located_at(span);
    quote_spanned! {span=>
        match #private::Wrap(#result) {
            __pipelines_result => (&&&&__pipelines_result)
                .__pipelines_kind()
                .into_outcome(__pipelines_result.0),
        }
    }
}

/// An expression evaluated inline; with `?` inside, it runs in a closure returning a
/// `Result`, whose `Err` then takes the error path like any step's `Err`.
fn inline_expr(step: &Step, expr: &syn::Expr, private: &TokenStream) -> TokenStream {
    if step.uses_try {
        quote! {
            (|| -> ::core::result::Result<_, #private::BoxError> {
                ::core::result::Result::Ok(#expr)
            })()
        }
    } else {
        quote!(#expr)
    }
}

/// `outcome` is the step's `Outcome<V, C>` type path: naming it lets a future whose
/// output has the wrong type be reported at the step.
fn expand_step(step: &Step, private: &TokenStream, outcome: &TokenStream) -> TokenStream {
    match &step.kind {
        StepKind::Sync(expr) => dispatch(inline_expr(step, expr, private), expr.span(), private),
        StepKind::Await {
            future: expr,
            await_span,
        } => {
            let future_expr = inline_expr(step, expr, private);
            let future = if step.uses_try {
                quote! {
                    match #future_expr {
                        ::core::result::Result::Ok(__pipelines_future) => __pipelines_future,
                        ::core::result::Result::Err(__pipelines_error) => {
                            return #private::Outcome::Error(#private::Error::new(__pipelines_error));
                        }
                    }
                }
            } else {
                future_expr
            };
            let awaited = await_output(*await_span);
            let output = dispatch(quote!(__pipelines_output), expr.span(), private);
            // Type errors of the future's output point at the step, not the macro.
            let span = Span::call_site().located_at(expr.span());
            quote_spanned! {span=>
                let __pipelines_future = #future;
                #private::Outcome::from_future(async move {
                    let __pipelines_output = #awaited;
                    let __pipelines_outcome: #outcome = #output;
                    __pipelines_outcome
                })
            }
        }
    }
}

/// `__pipelines_future.await`, with the user's `.await` span so that "not a future"
/// errors point at their code.
fn await_output(span: Span) -> TokenStream {
    // Only `.await` takes the user's span: the identifier must keep the macro's hygiene.
    let dot_await = quote_spanned!(span=> .await);
    quote!(__pipelines_future #dot_await)
}
