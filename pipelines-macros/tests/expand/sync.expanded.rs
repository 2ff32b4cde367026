/// Adds one, doubles up to 10, then subtracts one (an error below zero).
///
/// Synchronous steps: a new value, `Option` (maybe a new value), `?` (the error path).
pub(crate) fn pipeline() -> pipelines::Pipeline<i32, ()> {
    {
        static __PIPELINES_SITE: ::pipelines::__private::Site = ::pipelines::__private::Site::new(
            ::core::concat!(
                "pipeline@", ::core::file!(), ":", ::core::line!(), ":",
                ::core::column!()
            ),
        );
        ::pipelines::__private::Pipeline::<
            i32,
            (),
        >::__from_steps(
            &__PIPELINES_SITE,
            ::pipelines::__private::Layout {
                main: 3usize,
                rescue: ::core::option::Option::None,
                finally: ::core::option::Option::None,
                current: false,
            },
            move |
                __pipelines_call: ::pipelines::__private::StepCall<'_, i32, ()>,
            | -> ::pipelines::__private::Outcome<i32, ()> {
                #[allow(unused_imports)]
                use ::pipelines::__private::{
                    OptionKind as _, ResultKind as _, ResultOptionKind as _,
                    TraitKind as _, ValueKind as _,
                };
                #[allow(unreachable_patterns)]
                match __pipelines_call {
                    ::pipelines::__private::StepCall::Main {
                        index: 0usize,
                        value: __pipelines_value,
                        ctx: __pipelines_ctx,
                        current: __pipelines_current,
                    } => {
                        #[allow(unused_variables, unused_mut)]
                        let value: i32 = ::core::clone::Clone::clone(__pipelines_value);
                        #[allow(unused_variables, unused_mut)]
                        let _ctx: &() = &**__pipelines_ctx;
                        match ::pipelines::__private::Wrap(value + 1) {
                            __pipelines_result => {
                                (&&&&__pipelines_result)
                                    .__pipelines_kind()
                                    .into_outcome(__pipelines_result.0)
                            }
                        }
                    }
                    ::pipelines::__private::StepCall::Main {
                        index: 1usize,
                        value: __pipelines_value,
                        ctx: __pipelines_ctx,
                        current: __pipelines_current,
                    } => {
                        #[allow(unused_variables, unused_mut)]
                        let value: i32 = ::core::clone::Clone::clone(__pipelines_value);
                        #[allow(unused_variables, unused_mut)]
                        let _ctx: &() = &**__pipelines_ctx;
                        match ::pipelines::__private::Wrap(
                            if value > 10 { None } else { Some(value * 2) },
                        ) {
                            __pipelines_result => {
                                (&&&&__pipelines_result)
                                    .__pipelines_kind()
                                    .into_outcome(__pipelines_result.0)
                            }
                        }
                    }
                    ::pipelines::__private::StepCall::Main {
                        index: 2usize,
                        value: __pipelines_value,
                        ctx: __pipelines_ctx,
                        current: __pipelines_current,
                    } => {
                        #[allow(unused_variables, unused_mut)]
                        let value: i32 = ::core::clone::Clone::clone(__pipelines_value);
                        #[allow(unused_variables, unused_mut)]
                        let _ctx: &() = &**__pipelines_ctx;
                        match ::pipelines::__private::Wrap(
                            (|| -> ::core::result::Result<
                                _,
                                ::pipelines::__private::BoxError,
                            > {
                                ::core::result::Result::Ok(
                                    value
                                        .checked_sub(1)
                                        .filter(|left| *left >= 0)
                                        .ok_or("below zero")?,
                                )
                            })(),
                        ) {
                            __pipelines_result => {
                                (&&&&__pipelines_result)
                                    .__pipelines_kind()
                                    .into_outcome(__pipelines_result.0)
                            }
                        }
                    }
                    __pipelines_other => __pipelines_other.no_such_step(),
                }
            },
        )
    }
}
