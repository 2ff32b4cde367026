/// Adds one, doubles up to 10, then subtracts one (an error below zero).
///
/// Synchronous steps: an assigned value, one assigned conditionally, `?` (the error
/// path), and a bare step whose result is discarded.
pub(crate) fn pipeline() -> pipewright::Pipeline<i32, ()> {
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
                        ::pipewright::__private::assigned::<
                            i32,
                            (),
                            _,
                        >(if value > 10 { value } else { value * 2 })
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
                        match ::pipewright::__private::Discard::<
                            _,
                            i32,
                        >::new(value.checked_mul(2)) {
                            __pipelines_result => {
                                (&&&__pipelines_result)
                                    .__pipelines_kind()
                                    .into_outcome(__pipelines_result.0)
                            }
                        }
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
                        match (|| -> ::core::result::Result<
                            _,
                            ::pipewright::__private::BoxError,
                        > {
                            ::core::result::Result::Ok(
                                value
                                    .checked_sub(1)
                                    .filter(|left| *left >= 0)
                                    .ok_or("below zero")?,
                            )
                        })() {
                            ::core::result::Result::Ok(__pipelines_ok) => {
                                ::pipewright::__private::assigned::<
                                    i32,
                                    (),
                                    _,
                                >(__pipelines_ok)
                            }
                            ::core::result::Result::Err(__pipelines_error) => {
                                ::pipewright::__private::Outcome::Error(
                                    ::pipewright::__private::Error::new(__pipelines_error),
                                )
                            }
                        }
                    }
                    __pipelines_other => __pipelines_other.no_such_step(),
                }
            },
        )
    }
}
