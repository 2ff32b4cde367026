async fn halve(value: i32) -> Result<i32, String> {
    if value % 2 == 0 { Ok(value / 2) } else { Err(format!("{value} is odd")) }
}
/// Waiting steps (one naming the value, one naming nothing), nested pipelines, `rescue!`
/// and `finally!`: halves the value (an odd one is rescued as -1), adds one in a child,
/// multiplies by ten in another, and subtracts 100 at the end after an error.
pub(crate) fn pipeline() -> pipewright::Pipeline<i32, ()> {
    let add_one = {
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
                rescue: ::core::option::Option::None,
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
                        let value: i32 = ::core::clone::Clone::clone(__pipelines_value);
                        #[allow(unused_variables, unused_mut)]
                        let _ctx: &() = &**__pipelines_ctx;
                        ::pipewright::__private::assigned::<i32, (), _>(value + 1)
                    }
                    __pipelines_other => __pipelines_other.no_such_step(),
                }
            },
        )
    };
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
                main: 4usize,
                rescue: ::core::option::Option::Some(1usize),
                finally: ::core::option::Option::Some(1usize),
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
                        #[allow(unused_variables, clippy::redundant_clone)]
                        let halve = ::core::clone::Clone::clone(&halve);
                        let __pipelines_value_owned = ::core::clone::Clone::clone(
                            __pipelines_value,
                        );
                        ::pipewright::__private::Outcome::from_future(async move {
                            #[allow(unused_variables, unused_mut)]
                            let value: i32 = __pipelines_value_owned;
                            let __pipelines_future = halve(value);
                            let __pipelines_output = __pipelines_future.await;
                            let __pipelines_outcome: ::pipewright::__private::Outcome<
                                i32,
                                (),
                            > = ::pipewright::__private::assigned::<
                                i32,
                                (),
                                _,
                            >(__pipelines_output);
                            __pipelines_outcome
                        })
                    }
                    ::pipewright::__private::StepCall::Main {
                        index: 1usize,
                        value: __pipelines_value,
                        ctx: __pipelines_ctx,
                        current: __pipelines_current,
                    } => {
                        #[allow(unused_variables, unused_mut)]
                        let value: i32 = ::core::clone::Clone::clone(__pipelines_value);
                        #[allow(unused_variables, unused_mut)]
                        let _ctx: &() = &**__pipelines_ctx;
                        let __pipelines_future = std::future::ready(());
                        ::pipewright::__private::Outcome::from_future(async move {
                            let __pipelines_output = __pipelines_future.await;
                            let __pipelines_outcome: ::pipewright::__private::Outcome<
                                i32,
                                (),
                            > = match ::pipewright::__private::Discard::<
                                _,
                                i32,
                            >::new(__pipelines_output) {
                                __pipelines_result => {
                                    (&&&__pipelines_result)
                                        .__pipelines_kind()
                                        .into_outcome(__pipelines_result.0)
                                }
                            };
                            __pipelines_outcome
                        })
                    }
                    ::pipewright::__private::StepCall::Main {
                        index: 2usize,
                        value: __pipelines_value,
                        ctx: __pipelines_ctx,
                        current: __pipelines_current,
                    } => {
                        #[allow(unused_variables, unused_mut)]
                        let value: i32 = ::core::clone::Clone::clone(__pipelines_value);
                        #[allow(unused_variables, unused_mut)]
                        let _ctx: &() = &**__pipelines_ctx;
                        ::pipewright::__private::assigned::<i32, (), _>(add_one.clone())
                    }
                    ::pipewright::__private::StepCall::Main {
                        index: 3usize,
                        value: __pipelines_value,
                        ctx: __pipelines_ctx,
                        current: __pipelines_current,
                    } => {
                        #[allow(unused_variables, unused_mut)]
                        let value: i32 = ::core::clone::Clone::clone(__pipelines_value);
                        #[allow(unused_variables, unused_mut)]
                        let _ctx: &() = &**__pipelines_ctx;
                        ::pipewright::__private::assigned::<
                            i32,
                            (),
                            _,
                        >({
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
                                    rescue: ::core::option::Option::None,
                                    finally: ::core::option::Option::None,
                                    current: false,
                                },
                                move |
                                    __pipelines_call: ::pipewright::__private::StepCall<
                                        '_,
                                        i32,
                                        (),
                                    >,
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
                                            ::pipewright::__private::assigned::<i32, (), _>(value * 10)
                                        }
                                        __pipelines_other => __pipelines_other.no_such_step(),
                                    }
                                },
                            )
                        })
                    }
                    ::pipewright::__private::StepCall::Rescue {
                        index: 0usize,
                        value: __pipelines_value,
                        ctx: __pipelines_ctx,
                        error: __pipelines_error,
                        current: __pipelines_current,
                    } => {
                        #[allow(unused_variables, unused_mut)]
                        let value: i32 = ::core::clone::Clone::clone(__pipelines_value);
                        #[allow(unused_variables, unused_mut)]
                        let _ctx: &() = &**__pipelines_ctx;
                        #[allow(unused_variables, unused_mut)]
                        let error: &::pipewright::__private::Error = __pipelines_error;
                        ::pipewright::__private::assigned::<
                            i32,
                            (),
                            _,
                        >(if error.to_string().is_empty() { 0 } else { -1 })
                    }
                    ::pipewright::__private::StepCall::Finally {
                        index: 0usize,
                        value: __pipelines_value,
                        ctx: __pipelines_ctx,
                        error: __pipelines_error,
                        current: __pipelines_current,
                    } => {
                        #[allow(unused_variables, unused_mut)]
                        let value: i32 = ::core::clone::Clone::clone(__pipelines_value);
                        #[allow(unused_variables, unused_mut)]
                        let _ctx: &() = &**__pipelines_ctx;
                        #[allow(unused_variables, unused_mut)]
                        let error: ::core::option::Option<
                            &::pipewright::__private::Error,
                        > = __pipelines_error;
                        ::pipewright::__private::assigned::<
                            i32,
                            (),
                            _,
                        >(if error.is_some() { value - 100 } else { value })
                    }
                    __pipelines_other => __pipelines_other.no_such_step(),
                }
            },
        )
    }
}
