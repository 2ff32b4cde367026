/// What the steps multiply by.
pub(crate) struct Config {
    /// The factor.
    pub(crate) factor: i32,
}
/// Multiplies by the factor, adds one at the root, then doubles at the root; in a
/// restartable queue named `scale`.
///
/// The three-binding header `|value, ctx, current|`, a borrowed value, a waiting step
/// that names the view of its instance, and a queue configured after the macro.
pub(crate) fn pipeline() -> pipewright::Pipeline<i32, Config> {
    {
        static __PIPELINES_SITE: ::pipewright::__private::Site = ::pipewright::__private::Site::new(
            ::core::concat!(
                "pipeline@", ::core::file!(), ":", ::core::line!(), ":",
                ::core::column!()
            ),
        );
        ::pipewright::__private::Pipeline::<
            i32,
            Config,
        >::__from_steps(
            &__PIPELINES_SITE,
            ::pipewright::__private::Layout {
                main: 3usize,
                rescue: ::core::option::Option::None,
                finally: ::core::option::Option::None,
                current: true,
            },
            move |
                __pipelines_call: ::pipewright::__private::StepCall<'_, i32, Config>,
            | -> ::pipewright::__private::Outcome<i32, Config> {
                #[allow(unused_imports)]
                use ::pipewright::__private::{
                    OtherKind as _, ResultKind as _, TraitKind as _,
                    UnassignedValueKind as _,
                };
                #[allow(unreachable_patterns)]
                match __pipelines_call {
                    ::pipewright::__private::StepCall::Main {
                        index: 0usize,
                        value: __pipelines_value,
                        ctx: __pipelines_ctx,
                        current: __pipelines_current,
                    } => {
                        #[allow(unused_variables, unused_mut)]
                        let value: &i32 = __pipelines_value;
                        #[allow(unused_variables, unused_mut)]
                        let config: &Config = &**__pipelines_ctx;
                        ::pipewright::__private::assigned::<
                            i32,
                            Config,
                            _,
                        >(value * config.factor)
                    }
                    ::pipewright::__private::StepCall::Main {
                        index: 1usize,
                        value: __pipelines_value,
                        ctx: __pipelines_ctx,
                        current: __pipelines_current,
                    } => {
                        #[allow(unused_variables, unused_mut)]
                        let value: &i32 = __pipelines_value;
                        #[allow(unused_variables, unused_mut)]
                        let config: &Config = &**__pipelines_ctx;
                        #[allow(unused_variables, unused_mut)]
                        let current = match __pipelines_current {
                            ::core::option::Option::Some(__pipelines_current) => {
                                __pipelines_current
                            }
                            ::core::option::Option::None => {
                                return ::pipewright::__private::Outcome::Error(
                                    ::pipewright::__private::Error::new(
                                        "internal error: the step's view of its instance is missing; please report this bug",
                                    ),
                                );
                            }
                        };
                        ::pipewright::__private::assigned::<
                            i32,
                            Config,
                            _,
                        >(if current.parent().is_none() { value + 1 } else { *value })
                    }
                    ::pipewright::__private::StepCall::Main {
                        index: 2usize,
                        value: __pipelines_value,
                        ctx: __pipelines_ctx,
                        current: __pipelines_current,
                    } => {
                        let __pipelines_value_owned = ::core::clone::Clone::clone(
                            __pipelines_value,
                        );
                        let __pipelines_current_owned = ::pipewright::__private::Current::to_static(
                            match __pipelines_current {
                                ::core::option::Option::Some(__pipelines_current) => {
                                    __pipelines_current
                                }
                                ::core::option::Option::None => {
                                    return ::pipewright::__private::Outcome::Error(
                                        ::pipewright::__private::Error::new(
                                            "internal error: the step's view of its instance is missing; please report this bug",
                                        ),
                                    );
                                }
                            },
                        );
                        ::pipewright::__private::Outcome::from_future(async move {
                            #[allow(unused_variables, unused_mut)]
                            let value: &i32 = &__pipelines_value_owned;
                            #[allow(unused_variables, unused_mut)]
                            let current = &__pipelines_current_owned;
                            let __pipelines_future = std::future::ready(
                                if current.parent().is_some() { 0 } else { value * 2 },
                            );
                            let __pipelines_output = __pipelines_future.await;
                            let __pipelines_outcome: ::pipewright::__private::Outcome<
                                i32,
                                Config,
                            > = ::pipewright::__private::assigned::<
                                i32,
                                Config,
                                _,
                            >(__pipelines_output);
                            __pipelines_outcome
                        })
                    }
                    __pipelines_other => __pipelines_other.no_such_step(),
                }
            },
        )
    }
        .restartable()
        .queue("scale")
}
