//! [`model`](crate::model) to code.
//!
//! A pipeline becomes one closure that runs step `i` of a section, called by the runtime's
//! interpreter. Each step binds the header's patterns, evaluates the user's expression
//! inline and converts its result into an `Outcome` by type (see the runtime's `outcome`
//! module). A step ending in `.await` evaluates its future inline and hands it over,
//! boxed, to the interpreter, which polls it. Generated code names only
//! `<runtime crate>::__private::...` and `::core::...`.

mod stand_in;

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::Type;

use crate::model::{Binding, Effect, Pipeline, Section, Step, StepKind};
use crate::parse::Failure;

/// A `pipeline!` with errors: a `compile_error!` at each error's span and, when a model
/// could be built, its expansion (stand-ins included) beside them. It is type-checked
/// like a correct one, so code inside and after the macro keeps its types, and never
/// runs: the crate does not compile.
pub(crate) fn expand_failure(failure: Failure) -> TokenStream {
    let errors = failure.errors.to_compile_error();
    match &failure.model {
        Some(model) => {
            let best_effort = expand(model);
            quote! {{ #errors #best_effort }}
        }
        // No model: the header does not parse, or binds no typed value or no context
        // (or a fourth binding that a step names). The steps are not re-emitted, as
        // they could name what nothing binds, and the pipeline has no type to give:
        // only the errors, in a diverging block that adds no type error of its own.
        None => quote! {{ #errors loop {} }},
    }
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
    let steps = Steps {
        value_type: &value_type,
        ctx_type: &ctx_type,
        value: Lent::value(model),
        ctx: Lent::ctx(&model.ctx, &private),
        current: model
            .current
            .as_ref()
            .map(|binding| Lent::current(binding, &private)),
        private: &private,
        outcome: &outcome,
    };

    let mut arms = Vec::new();
    for (index, step) in model.main.iter().enumerate() {
        let body = steps.expand(step, None);
        arms.push(quote! {
            #private::StepCall::Main { index: #index, value: __pipelines_value, ctx: __pipelines_ctx, current: __pipelines_current } => {
                #body
            }
        });
    }
    if let Some(section) = &model.rescue {
        let error = Lent::rescue_error(&section.error, &private);
        for (index, step) in section.steps.iter().enumerate() {
            let body = steps.expand(step, Some(&error));
            arms.push(quote! {
                #private::StepCall::Rescue { index: #index, value: __pipelines_value, ctx: __pipelines_ctx, error: __pipelines_error, current: __pipelines_current } => {
                    #body
                }
            });
        }
    }
    if let Some(section) = &model.finally {
        let error = Lent::finally_error(&section.error, &private);
        for (index, step) in section.steps.iter().enumerate() {
            let body = steps.expand(step, Some(&error));
            arms.push(quote! {
                #private::StepCall::Finally { index: #index, value: __pipelines_value, ctx: __pipelines_ctx, error: __pipelines_error, current: __pipelines_current } => {
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
    let sees_current = model.current.is_some();
    arms.extend(stand_in::arm(model, &steps));
    // Items written among the steps (an error): beside the steps, for what names them.
    let items = &model.items;

    quote! {{
        static __PIPELINES_SITE: #private::Site = #private::Site::new(::core::concat!(
            "pipeline@", ::core::file!(), ":", ::core::line!(), ":", ::core::column!()
        ));
        #private::Pipeline::<#value_type, #ctx_type>::__from_steps(
            &__PIPELINES_SITE,
            #private::Layout {
                main: #main_len,
                rescue: #rescue_len,
                finally: #finally_len,
                current: #sees_current,
            },
            move |__pipelines_call: #private::StepCall<'_, #value_type, #ctx_type>|
                  -> #private::Outcome<#value_type, #ctx_type> {
                #[allow(unused_imports)]
                use #private::{
                    OtherKind as _, ResultKind as _, TraitKind as _, UnassignedValueKind as _,
                };
                #(
                    #[allow(unused)]
                    #items
                )*
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
        Some(Type::Reference(reference)) if model.value.by_ref => {
            let elem = &reference.elem;
            quote!(#elem)
        }
        Some(ty) => quote!(#ty),
        None => quote!(_),
    }
}

/// Converts `result` (an expression) into the step's `Outcome`, as its effect says (the
/// runtime's `outcome` module). Type errors of the conversion (an assigned value of the
/// wrong type) and the warning for a discarded value of the value's type point at
/// `span`, the user's step.
fn convert(result: TokenStream, effect: Effect, span: Span, types: &Types<'_>) -> TokenStream {
    let Types {
        private,
        value,
        ctx,
    } = types;
    match effect {
        Effect::Assign => {
            // At the step's own span (not only located there): a value of the wrong
            // type is reported at the expression assigned, not at the whole macro.
            let assigned = quote_spanned!(span=> assigned);
            quote_spanned! {span=> #private::#assigned::<#value, #ctx, _>(#result) }
        }
        Effect::Ignore => quote! { #private::ignored::<#value, #ctx, _>(#result) },
        Effect::Bare => {
            // The method call at the step's own span: the `deprecated` warning of a
            // discarded value of the value's type is reported there.
            let into_outcome = quote_spanned!(span=> into_outcome);
            let span = Span::call_site().located_at(span);
            quote_spanned! {span=>
                match #private::Discard::<_, #value>::new(#result) {
                    __pipelines_result => (&&&__pipelines_result)
                        .__pipelines_kind()
                        .#into_outcome(__pipelines_result.0),
                }
            }
        }
    }
}

/// The types a step's conversion names.
struct Types<'a> {
    private: &'a TokenStream,
    value: &'a TokenStream,
    ctx: &'a TokenStream,
}

/// An expression evaluated inline and converted; with `?` inside, it runs in a closure
/// returning a `Result`, whose `Err` takes the error path like any step's `Err`, and
/// whose `Ok` is converted as the expression would be.
fn inline_step(step: &Step, expr: &syn::Expr, types: &Types<'_>) -> TokenStream {
    let private = types.private;
    if step.uses_try {
        let converted = convert(quote!(__pipelines_ok), step.effect, expr.span(), types);
        let tried = inline_expr(step, expr, private);
        quote! {
            match #tried {
                ::core::result::Result::Ok(__pipelines_ok) => #converted,
                ::core::result::Result::Err(__pipelines_error) => {
                    #private::Outcome::Error(#private::Error::new(__pipelines_error))
                }
            }
        }
    } else {
        convert(quote!(#expr), step.effect, expr.span(), types)
    }
}

/// An expression evaluated inline; with `?` inside, it runs in a closure returning a
/// `Result` (for a future: its `Err` returns the step's error outcome).
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

/// One header binding (the value, the context, a section's error): how the step call
/// lends it, and how a waiting step's future owns it instead.
struct Lent {
    pat: syn::Pat,
    ty: Option<TokenStream>,
    /// The binding's source in the step call.
    lent: TokenStream,
    /// An owned copy made in the step call, moved into the future as `owned`...
    own: TokenStream,
    owned: syn::Ident,
    /// ... and the binding's source inside the future.
    from_owned: TokenStream,
}

impl Lent {
    fn value(model: &Pipeline) -> Self {
        let Binding { pat, ty } = &model.value.binding;
        let clone = quote!(::core::clone::Clone::clone(__pipelines_value));
        let owned = owned_name("value");
        let (lent, from_owned) = if model.value.by_ref {
            (quote!(__pipelines_value), quote!(&#owned))
        } else {
            (clone.clone(), quote!(#owned))
        };
        Lent {
            pat: pat.clone(),
            ty: ty.as_ref().map(|ty| quote!(#ty)),
            lent,
            own: clone,
            owned,
            from_owned,
        }
    }

    fn ctx(binding: &Binding, private: &TokenStream) -> Self {
        let Binding { pat, ty } = binding;
        let owned = owned_name("ctx");
        Lent {
            pat: pat.clone(),
            ty: ty.as_ref().map(|ty| quote!(#ty)),
            lent: quote!(&**__pipelines_ctx),
            own: quote!(#private::Arc::clone(__pipelines_ctx)),
            from_owned: quote!(&*#owned),
            owned,
        }
    }

    /// The step's view of its instance: lent as `&Current<'_, V, C>`; a waiting step's
    /// future owns a `Current<'static, V, C>` made from it.
    fn current(binding: &Binding, private: &TokenStream) -> Self {
        let Binding { pat, ty } = binding;
        let owned = owned_name("current");
        // Every call of a pipeline whose header binds it carries it; `None` would be a
        // bug of the runtime, reported as the step's error rather than a panic.
        let lent = quote! {
            match __pipelines_current {
                ::core::option::Option::Some(__pipelines_current) => __pipelines_current,
                ::core::option::Option::None => {
                    return #private::Outcome::Error(#private::Error::new(
                        "internal error: the step's view of its instance is missing; please report this bug",
                    ));
                }
            }
        };
        Lent {
            pat: pat.clone(),
            ty: ty.as_ref().map(|ty| quote!(#ty)),
            own: quote!(#private::Current::to_static(#lent)),
            lent,
            from_owned: quote!(&#owned),
            owned,
        }
    }

    /// `rescue!`'s `&Error`.
    fn rescue_error(binding: &Binding, private: &TokenStream) -> Self {
        let owned = owned_name("error");
        Lent::error(
            binding,
            quote!(&#private::Error),
            quote!(::core::clone::Clone::clone(__pipelines_error)),
            quote!(&#owned),
            owned,
        )
    }

    /// `finally!`'s `Option<&Error>`.
    fn finally_error(binding: &Binding, private: &TokenStream) -> Self {
        let owned = owned_name("error");
        Lent::error(
            binding,
            quote!(::core::option::Option<&#private::Error>),
            quote!(<::core::option::Option<&#private::Error>>::cloned(__pipelines_error)),
            quote!(::core::option::Option::as_ref(&#owned)),
            owned,
        )
    }

    fn error(
        binding: &Binding,
        default_type: TokenStream,
        own: TokenStream,
        from_owned: TokenStream,
        owned: syn::Ident,
    ) -> Self {
        let Binding { pat, ty } = binding;
        Lent {
            pat: pat.clone(),
            ty: Some(ty.as_ref().map_or(default_type, |ty| quote!(#ty))),
            lent: quote!(__pipelines_error),
            own,
            owned,
            from_owned,
        }
    }

    /// `let <pat>: <ty> = <source>;`
    fn bind(&self, source: &TokenStream) -> TokenStream {
        let Lent { pat, ty, .. } = self;
        let ty = ty.iter();
        quote! {
            #[allow(unused_variables, unused_mut)]
            let #pat #(: #ty)* = #source;
        }
    }
}

/// `__pipelines_<what>_owned`: the name of a binding's owned copy.
fn owned_name(what: &str) -> syn::Ident {
    quote::format_ident!("__pipelines_{}_owned", what)
}

/// Expands steps of one pipeline.
struct Steps<'a> {
    value_type: &'a TokenStream,
    ctx_type: &'a TokenStream,
    value: Lent,
    ctx: Lent,
    /// The optional third header binding.
    current: Option<Lent>,
    private: &'a TokenStream,
    /// The step's `Outcome<V, C>` type path: naming it lets a future whose output has the
    /// wrong type be reported at the step.
    outcome: &'a TokenStream,
}

impl Steps<'_> {
    /// The body of one step's match arm. `__pipelines_value: &V`, `__pipelines_ctx:
    /// &Arc<C>` and (in sections) `__pipelines_error` are in scope.
    fn expand(&self, step: &Step, error: Option<&Lent>) -> TokenStream {
        let private = self.private;
        let mentions = step.mentions;
        let bindings = [
            (mentions.value, Some(&self.value)),
            (mentions.ctx, Some(&self.ctx)),
            (mentions.current, self.current.as_ref()),
            (mentions.error, error),
        ];
        // The view of the instance is lent only to the steps that name it.
        let current = self.current.as_ref().filter(|_| mentions.current);
        let lent = [Some(&self.value), Some(&self.ctx), current, error]
            .into_iter()
            .flatten()
            .map(|binding| binding.bind(&binding.lent));
        let (future, await_span) = match &step.kind {
            StepKind::Sync(expr) => {
                let body = inline_step(step, expr, &self.types());
                return quote! { #(#lent)* #body };
            }
            StepKind::Await { future, await_span } => (future, *await_span),
        };
        let future_expr = self.future_expr(step, future);
        let wait = self.wait(step, future, await_span);
        let span = Span::call_site().located_at(future.span());
        if !mentions.any() {
            // Names no header binding: evaluated inline, as written, so it may use what
            // the pipeline captures; the future must own what it borrows.
            return quote_spanned! {span=>
                #(#lent)*
                let __pipelines_future = #future_expr;
                #private::Outcome::from_future(async move { #wait })
            };
        }
        // Names the value, the context or the error: evaluated inside the future, which
        // owns a copy of each binding it names (the context as an `Arc` share) and of each
        // variable it captures, so the future may borrow them.
        let mut owned = TokenStream::new();
        for capture in &step.captures {
            // At the capture's span: "not `Clone`" points at the variable.
            let span = Span::call_site().located_at(capture.span());
            owned.extend(quote_spanned! {span=>
                #[allow(unused_variables, clippy::redundant_clone)]
                let #capture = ::core::clone::Clone::clone(&#capture);
            });
        }
        let mut binds = TokenStream::new();
        for binding in bindings
            .iter()
            .filter_map(|(named, binding)| binding.filter(|_| *named))
        {
            let (own, name) = (&binding.own, &binding.owned);
            owned.extend(quote! { let #name = #own; });
            binds.extend(binding.bind(&binding.from_owned));
        }
        quote_spanned! {span=>
            #owned
            #private::Outcome::from_future(async move {
                #binds
                let __pipelines_future = #future_expr;
                #wait
            })
        }
    }

    /// The future expression; with `?` inside, an `Err` returns the step's error outcome
    /// (from the step call, or from the future it is evaluated in).
    fn future_expr(&self, step: &Step, future: &syn::Expr) -> TokenStream {
        let private = self.private;
        let future_expr = inline_expr(step, future, private);
        if step.uses_try {
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
        }
    }

    fn types(&self) -> Types<'_> {
        Types {
            private: self.private,
            value: self.value_type,
            ctx: self.ctx_type,
        }
    }

    /// Awaits `__pipelines_future` and converts its output into the step's outcome.
    fn wait(&self, step: &Step, future: &syn::Expr, await_span: Span) -> TokenStream {
        let outcome = self.outcome;
        let awaited = await_output(await_span);
        let output = convert(
            quote!(__pipelines_output),
            step.effect,
            future.span(),
            &self.types(),
        );
        // Type errors of the future's output point at the step, not the macro.
        let span = Span::call_site().located_at(future.span());
        quote_spanned! {span=>
            let __pipelines_output = #awaited;
            let __pipelines_outcome: #outcome = #output;
            __pipelines_outcome
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
