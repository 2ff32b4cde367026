/// A `pipeline!` with errors (never compiled): its best-effort expansion. The `let` and
/// the steps after it, the step with `.await` in its middle and the misplaced step
/// stand in; the other steps expand as usual, beside the errors.
pub(crate) fn pipeline() -> pipewright::Pipeline<i32, ()> {
    {
        ::core::compile_error! {
            "a `pipeline!` step cannot declare a variable: each step sees only the value, the context and what the pipeline captures; put the `let` inside a block step `{ let x = ...; ... }`, or make it a step of its own that assigns the value (`value = ...;`); `let _ = ...;` discards a result on purpose"
        }
        ::core::compile_error! {
            "`.await` can only end a step: a step waits on the one future it ends with; make this a step of its own, or wrap the expression in `async { ... }.await`"
        }
        ::core::compile_error! {
            "`rescue!` must come after every step of the pipeline: move the steps that follow it above it"
        }
        {
            static __PIPELINES_SITE: ::pipewright::__private::Site = ::pipewright::__private::Site::new(
                ::core::concat!(
                    "pipeline@", ::core::file!(), ":", ::core::line!(), ":",
                    ::core::column!()
                ),
            );
            ::pipewright::__private::Pipeline::<
                i32,
                (),
            >::__from_steps(
                &__PIPELINES_SITE,
                ::pipewright::__private::Layout {
                    main: 1usize,
                    rescue: ::core::option::Option::Some(1usize),
                    finally: ::core::option::Option::None,
                    current: false,
                },
                move |
                    __pipelines_call: ::pipewright::__private::StepCall<'_, i32, ()>,
                | -> ::pipewright::__private::Outcome<i32, ()> {
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
                            let value: i32 = ::core::clone::Clone::clone(
                                __pipelines_value,
                            );
                            #[allow(unused_variables, unused_mut)]
                            let _ctx: &() = &**__pipelines_ctx;
                            ::pipewright::__private::assigned::<i32, (), _>(value + 1)
                        }
                        ::pipewright::__private::StepCall::Rescue {
                            index: 0usize,
                            value: __pipelines_value,
                            ctx: __pipelines_ctx,
                            error: __pipelines_error,
                            current: __pipelines_current,
                        } => {
                            #[allow(unused_variables, unused_mut)]
                            let value: i32 = ::core::clone::Clone::clone(
                                __pipelines_value,
                            );
                            #[allow(unused_variables, unused_mut)]
                            let _ctx: &() = &**__pipelines_ctx;
                            #[allow(unused_variables, unused_mut)]
                            let error: &::pipewright::__private::Error = __pipelines_error;
                            match ::pipewright::__private::Discard::<_, i32>::new(0) {
                                __pipelines_result => {
                                    (&&&__pipelines_result)
                                        .__pipelines_kind()
                                        .into_outcome(__pipelines_result.0)
                                }
                            }
                        }
                        ::pipewright::__private::StepCall::Main {
                            index: 1usize,
                            value: __pipelines_value,
                            ctx: __pipelines_ctx,
                            current: __pipelines_current,
                        } => {
                            #[allow(unused_variables, unused_mut)]
                            let value: i32 = ::core::clone::Clone::clone(
                                __pipelines_value,
                            );
                            #[allow(unused_variables, unused_mut)]
                            let _ctx: &() = &**__pipelines_ctx;
                            #[allow(unused, unreachable_code)]
                            let _ = async {
                                let doubled = value * 2;
                                doubled + 1;
                                value + 3;
                                let error: &::pipewright::__private::Error = loop {};
                                std::future::ready(0).await + 1;
                                ::core::result::Result::<
                                    (),
                                    ::pipewright::__private::BoxError,
                                >::Ok(())
                            };
                            ::pipewright::__private::Outcome::Keep
                        }
                        __pipelines_other => __pipelines_other.no_such_step(),
                    }
                },
            )
        }
    }
}
