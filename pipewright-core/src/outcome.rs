//! What a step's result does ([SEMANTICS 1.1]): the value changes only where a step says
//! so.
//!
//! Every step expression is turned into an [`Outcome`] by the code `pipeline!` generates,
//! in one of three ways the macro chooses by the step's *syntax*:
//!
//! - **`value = expr;`** (the header's binding assigned): `expr` goes through
//!   [`dispatch::IntoAssigned`]: a value of the pipeline's type becomes the value, a
//!   `Result` of it too (its `Err` takes the error path), a pipeline runs as a child whose
//!   result becomes the value. Anything else is a compile error at `expr` naming the type
//!   expected.
//! - **`expr;`** (a bare step): chosen by the *type* of `expr`, at compile time (the
//!   "autoref specialisation" technique, as `anyhow!` uses it), in four levels:
//!   1. types implementing [`IntoOutcome`]: `()`, the markers [`Break`], [`BreakAll`],
//!      [`Cancel`], a continuation, pipelines (a child whose result is discarded), and
//!      `Option`/`Result` wrapping any of these;
//!   2. any other `Result`: an `Err` takes the error path, an `Ok` is discarded;
//!   3. the pipeline's value type: discarded, with a warning at the step (most likely a
//!      forgotten `value =`);
//!   4. anything else: discarded, as Rust discards a statement's value.
//! - **`let _ = expr;`**: evaluated, discarded, whatever its type.
//!
//! A step written `expr.await` (or `value = expr.await`) is a future step: its future is
//! polled by the interpreter and its *output* goes through the same rule.
//!
//! [SEMANTICS 1.1]: crate::semantics#11-what-a-step-does-with-the-value

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use crate::cancel_reason::CancelReason;
use crate::continuation::Continuation;
use crate::error::{BoxError, Error};
use crate::pipeline::Pipeline;

/// A future a step is waiting on, already mapped to the outcome of its output.
pub(crate) type StepFuture<V, C> = Pin<Box<dyn Future<Output = Outcome<V, C>> + Send + 'static>>;

/// The effect of one step on its pipeline. Built by the code `pipeline!` generates, or by
/// an [`IntoOutcome`] implementation of your own.
///
/// # Examples
///
/// ```
/// use pipewright::{pipeline, IntoOutcome, Outcome, Runtime};
///
/// /// A verdict that keeps the value when it is `Keep` and replaces it otherwise.
/// enum Verdict { Keep, Replace(i32) }
///
/// impl<C> IntoOutcome<i32, C> for Verdict {
///     fn into_outcome(self) -> Outcome<i32, C> {
///         match self {
///             Verdict::Keep => Outcome::Keep,
///             Verdict::Replace(value) => Outcome::Value(value),
///         }
///     }
/// }
///
/// let p = pipeline!(|value: i32, _ctx: &()| {
///     Verdict::Replace(value * 10);
///     Verdict::Keep;
/// });
/// let runtime = Runtime::builder(()).start().unwrap();
/// assert_eq!(runtime.invoke_pipeline(&p, 4).unwrap().try_result().unwrap().unwrap(), 40);
/// ```
#[non_exhaustive]
pub enum Outcome<V, C> {
    /// The step produced a new value.
    Value(V),
    /// The step was a side effect: keep the current value.
    Keep,
    /// Wait for this future, then apply its outcome.
    Future(#[doc(hidden)] FutureOutcome<V, C>),
    /// Run this pipeline as a child; `muted` children do not change the value.
    Nested {
        /// The child pipeline.
        pipeline: Pipeline<V, C>,
        /// Whether the child's result is ignored.
        muted: bool,
    },
    /// The step failed.
    Error(Error),
    /// Stop this pipeline now, with this value (or the current one).
    Break(Option<V>),
    /// Stop this pipeline and every pipeline above it, with this value (or the current one).
    BreakAll(Option<V>),
    /// Cancel this instance, as if `cancel` had been called on it, for this reason (the
    /// [`Cancel`] marker gives [`CancelReason::Step`]).
    Cancel(CancelReason),
    /// Replace the rest of the run with this continuation ([SEMANTICS 2.1]): every nested
    /// level ends here, and the instance that drives them runs the continuation's frames.
    /// (Boxed: a continuation is large, and every step's outcome is moved around.)
    ///
    /// [SEMANTICS 2.1]: crate::semantics#21-a-steps-view-of-its-instance-and-continuations
    Resume(Box<Continuation<V, C>>),
}

/// An opaque future inside [`Outcome::Future`].
pub struct FutureOutcome<V, C>(pub(crate) StepFuture<V, C>);

impl<V, C> Outcome<V, C> {
    /// An outcome that waits for `future` and then applies the outcome it resolves to.
    ///
    /// ```
    /// use pipewright::Outcome;
    /// let waiting: Outcome<i32, ()> = Outcome::from_future(async { Outcome::Value(1) });
    /// assert!(matches!(waiting, Outcome::Future(_)));
    /// ```
    pub fn from_future(future: impl Future<Output = Outcome<V, C>> + Send + 'static) -> Self {
        Outcome::Future(FutureOutcome(Box::pin(future)))
    }
}

impl<V, C> fmt::Debug for Outcome<V, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Value(_) => f.write_str("Value(..)"),
            Outcome::Keep => f.write_str("Keep"),
            Outcome::Future(_) => f.write_str("Future(..)"),
            Outcome::Nested { pipeline, muted } => f
                .debug_struct("Nested")
                .field("pipeline", pipeline)
                .field("muted", muted)
                .finish(),
            Outcome::Error(error) => f.debug_tuple("Error").field(error).finish(),
            Outcome::Break(value) => write!(f, "Break({})", some_or_none(value)),
            Outcome::BreakAll(value) => write!(f, "BreakAll({})", some_or_none(value)),
            Outcome::Cancel(reason) => f.debug_tuple("Cancel").field(reason).finish(),
            Outcome::Resume(continuation) => f.debug_tuple("Resume").field(continuation).finish(),
        }
    }
}

impl<V, C> fmt::Debug for FutureOutcome<V, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FutureOutcome(..)")
    }
}

fn some_or_none<V>(value: &Option<V>) -> &'static str {
    if value.is_some() {
        "Some(..)"
    } else {
        "None"
    }
}

/// Converts a step's result into its [`Outcome`]. Implement it for your own types to give
/// them a meaning as steps; plain values need no implementation (they become the value).
///
/// # Examples
///
/// ```
/// use pipewright::{IntoOutcome, Outcome};
/// let kept: Outcome<u8, ()> = ().into_outcome();
/// assert!(matches!(kept, Outcome::Keep));
/// ```
pub trait IntoOutcome<V, C> {
    /// The outcome this result stands for.
    fn into_outcome(self) -> Outcome<V, C>;
}

impl<V, C> IntoOutcome<V, C> for Outcome<V, C> {
    fn into_outcome(self) -> Outcome<V, C> {
        self
    }
}

impl<V, C> IntoOutcome<V, C> for () {
    fn into_outcome(self) -> Outcome<V, C> {
        Outcome::Keep
    }
}

impl<V, C, T: IntoOutcome<V, C>> IntoOutcome<V, C> for Option<T> {
    fn into_outcome(self) -> Outcome<V, C> {
        match self {
            Some(inner) => inner.into_outcome(),
            None => Outcome::Keep,
        }
    }
}

impl<V, C, T: IntoOutcome<V, C>, E: Into<BoxError>> IntoOutcome<V, C> for Result<T, E> {
    fn into_outcome(self) -> Outcome<V, C> {
        match self {
            Ok(inner) => inner.into_outcome(),
            Err(error) => Outcome::Error(Error::new(error)),
        }
    }
}

/// A pipeline as a bare step: it runs as a child with the current value, and its result
/// is discarded (`value = child;` keeps it).
impl<V, C> IntoOutcome<V, C> for Pipeline<V, C> {
    fn into_outcome(self) -> Outcome<V, C> {
        Outcome::Nested {
            pipeline: self,
            muted: true,
        }
    }
}

impl<V, C> IntoOutcome<V, C> for &Pipeline<V, C> {
    fn into_outcome(self) -> Outcome<V, C> {
        self.clone().into_outcome()
    }
}

impl<V, C> IntoOutcome<V, C> for Continuation<V, C> {
    fn into_outcome(self) -> Outcome<V, C> {
        Outcome::Resume(Box::new(self))
    }
}

impl<V, C> IntoOutcome<V, C> for Error {
    fn into_outcome(self) -> Outcome<V, C> {
        Outcome::Error(self)
    }
}

/// The "break" marker: a step that evaluates to it stops its pipeline at once (its
/// `finally!` still runs) and the pipeline returns the given value, or its current value.
/// A parent pipeline carries on with that result.
///
/// # Examples
///
/// ```
/// use pipewright::{pipeline, Break, Runtime};
///
/// let p = pipeline!(|value: i32, _ctx: &()| {
///     value = value + 1;
///     if value > 0 { Some(Break::now()) } else { None };
///     value = value + 100; // not reached for positive inputs
/// });
/// let runtime = Runtime::builder(()).start().unwrap();
/// assert_eq!(runtime.invoke_pipeline(&p, 1).unwrap().try_result().unwrap().unwrap(), 2);
/// assert_eq!(runtime.invoke_pipeline(&p, -5).unwrap().try_result().unwrap().unwrap(), 96);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Break<V>(Option<V>);

impl<V> Break<V> {
    /// Stop and return the current value.
    pub fn now() -> Self {
        Break(None)
    }
    /// Stop and return `value`.
    ///
    /// ```
    /// # use pipewright::{pipeline, Break, Runtime};
    /// let p = pipeline!(|value: i32, _ctx: &()| { Break::with(value * 2); value = value + 1; });
    /// # let runtime = Runtime::builder(()).start().unwrap();
    /// # assert_eq!(runtime.invoke_pipeline(&p, 4).unwrap().try_result().unwrap().unwrap(), 8);
    /// ```
    pub fn with(value: V) -> Self {
        Break(Some(value))
    }
}

impl<V, C> IntoOutcome<V, C> for Break<V> {
    fn into_outcome(self) -> Outcome<V, C> {
        Outcome::Break(self.0)
    }
}

/// The "break all" marker: stops this pipeline and every pipeline above it up to the
/// root; each runs its `finally!`, and the root returns the given value (or the value of
/// the pipeline that broke).
///
/// # Examples
///
/// ```
/// use pipewright::{pipeline, BreakAll, Runtime};
///
/// let inner = pipeline!(|value: i32, _ctx: &()| { BreakAll::with(value * 10); });
/// let outer = pipeline!(|value: i32, _ctx: &()| {
///     value = inner.clone();
///     value = value + 1; // not reached
/// });
/// let runtime = Runtime::builder(()).start().unwrap();
/// assert_eq!(runtime.invoke_pipeline(&outer, 2).unwrap().try_result().unwrap().unwrap(), 20);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakAll<V>(Option<V>);

impl<V> BreakAll<V> {
    /// Stop everything and return the current value.
    pub fn now() -> Self {
        BreakAll(None)
    }
    /// Stop everything and return `value`.
    pub fn with(value: V) -> Self {
        BreakAll(Some(value))
    }
}

impl<V, C> IntoOutcome<V, C> for BreakAll<V> {
    fn into_outcome(self) -> Outcome<V, C> {
        Outcome::BreakAll(self.0)
    }
}

/// The "cancel" marker: the instance cancels itself, exactly as if it had been cancelled
/// from outside: cancellation climbs to the topmost non-detached parent, every instance
/// on the way runs its `finally!` with [`Error::Cancelled`], and callers are told
/// "cancelled".
///
/// # Examples
///
/// ```
/// use pipewright::{pipeline, Cancel, Runtime};
///
/// let p = pipeline!(|value: i32, _ctx: &()| {
///     if value < 0 { Some(Cancel) } else { None };
///     value = value * 2;
/// });
/// let runtime = Runtime::builder(()).start().unwrap();
/// let outcome = runtime.invoke_pipeline(&p, -1).unwrap().try_result().unwrap();
/// assert!(outcome.unwrap_err().is_cancelled());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cancel;

impl<V, C> IntoOutcome<V, C> for Cancel {
    fn into_outcome(self) -> Outcome<V, C> {
        Outcome::Cancel(CancelReason::Step)
    }
}

/// The compile-time dispatch used by generated code. Not public API.
#[doc(hidden)]
pub mod dispatch {
    use super::*;

    use std::marker::PhantomData;

    /// What `value = expr` accepts: a value of the pipeline's type, a `Result` of one, a
    /// pipeline (run as a child, its result the new value) or an `Option` of a pipeline.
    #[diagnostic::on_unimplemented(
        message = "`value = ...` needs a `{V}` (the pipeline's value type), a `Result<{V}, _>` or a pipeline of `{V}` (or an `Option` of one), not `{Self}`",
        label = "this is a `{Self}`, not a `{V}`",
        note = "a step changes the value only by assigning it; to run something for its effects, write it as a step of its own without `value =`"
    )]
    pub trait IntoAssigned<V, C> {
        /// The outcome of assigning `self` to the value.
        fn into_assigned(self) -> Outcome<V, C>;
    }

    impl<V, C> IntoAssigned<V, C> for V {
        #[inline(always)]
        fn into_assigned(self) -> Outcome<V, C> {
            Outcome::Value(self)
        }
    }

    impl<V, C, E: Into<BoxError>> IntoAssigned<V, C> for Result<V, E> {
        #[inline(always)]
        fn into_assigned(self) -> Outcome<V, C> {
            match self {
                Ok(value) => Outcome::Value(value),
                Err(error) => Outcome::Error(Error::new(error)),
            }
        }
    }

    impl<V, C> IntoAssigned<V, C> for Pipeline<V, C> {
        #[inline(always)]
        fn into_assigned(self) -> Outcome<V, C> {
            Outcome::Nested {
                pipeline: self,
                muted: false,
            }
        }
    }

    impl<V, C> IntoAssigned<V, C> for &Pipeline<V, C> {
        #[inline(always)]
        fn into_assigned(self) -> Outcome<V, C> {
            self.clone().into_assigned()
        }
    }

    /// A child to run if there is one (`value = if c { Some(child) } else { None };`):
    /// its result becomes the value; `None` keeps the value.
    impl<V, C> IntoAssigned<V, C> for Option<Pipeline<V, C>> {
        #[inline(always)]
        fn into_assigned(self) -> Outcome<V, C> {
            match self {
                Some(pipeline) => pipeline.into_assigned(),
                None => Outcome::Keep,
            }
        }
    }

    /// `value = expr`'s outcome.
    #[inline(always)]
    pub fn assigned<V, C, T: IntoAssigned<V, C>>(assigned: T) -> Outcome<V, C> {
        assigned.into_assigned()
    }

    /// A bare step's result, with the pipeline's value type `V` beside it (so the level
    /// of a discarded value of that type can tell).
    #[derive(Debug)]
    pub struct Discard<T, V>(pub T, pub PhantomData<fn() -> V>);

    impl<T, V> Discard<T, V> {
        #[inline(always)]
        pub fn new(result: T) -> Self {
            Discard(result, PhantomData)
        }
    }

    #[derive(Debug)]
    pub struct TraitTag<V, C>(PhantomData<fn() -> (V, C)>);
    #[derive(Debug)]
    pub struct ResultTag;
    #[derive(Debug)]
    pub struct UnassignedValue;
    #[derive(Debug)]
    pub struct OtherTag;

    pub trait TraitKind<V, C> {
        #[inline(always)]
        fn __pipelines_kind(&self) -> TraitTag<V, C> {
            TraitTag(PhantomData)
        }
    }
    impl<V, C, T: IntoOutcome<V, C>> TraitKind<V, C> for &&&Discard<T, V> {}

    pub trait ResultKind {
        #[inline(always)]
        fn __pipelines_kind(&self) -> ResultTag {
            ResultTag
        }
    }
    impl<T, E, V> ResultKind for &&Discard<Result<T, E>, V> {}

    pub trait UnassignedValueKind {
        #[inline(always)]
        fn __pipelines_kind(&self) -> UnassignedValue {
            UnassignedValue
        }
    }
    impl<V> UnassignedValueKind for &Discard<V, V> {}

    pub trait OtherKind {
        #[inline(always)]
        fn __pipelines_kind(&self) -> OtherTag {
            OtherTag
        }
    }
    impl<T, V> OtherKind for Discard<T, V> {}

    impl<V, C> TraitTag<V, C> {
        #[inline(always)]
        pub fn into_outcome<T: IntoOutcome<V, C>>(self, result: T) -> Outcome<V, C> {
            result.into_outcome()
        }
    }
    impl ResultTag {
        #[inline(always)]
        pub fn into_outcome<V, C, T, E: Into<BoxError>>(
            self,
            result: Result<T, E>,
        ) -> Outcome<V, C> {
            match result {
                Ok(_) => Outcome::Keep,
                Err(error) => Outcome::Error(Error::new(error)),
            }
        }
    }
    impl UnassignedValue {
        /// Discards a result of the value's type: most likely a forgotten `value =`, so
        /// its use is a warning at the step (a `deprecated` note is the one warning a
        /// macro can raise on stable Rust).
        #[inline(always)]
        #[deprecated(
            note = "this step's result has the pipeline's value type and is discarded: \
                    the value changes only where a step assigns it; to keep the result, \
                    write `value = ...;` (with the header's name for the value); to discard \
                    it on purpose, write `let _ = ...;`"
        )]
        pub fn into_outcome<V, C>(self, result: V) -> Outcome<V, C> {
            drop(result);
            Outcome::Keep
        }
    }
    impl OtherTag {
        #[inline(always)]
        pub fn into_outcome<V, C, T>(self, result: T) -> Outcome<V, C> {
            drop(result);
            Outcome::Keep
        }
    }

    /// `let _ = expr;`: discarded, whatever it is.
    #[inline(always)]
    pub fn ignored<V, C, T>(result: T) -> Outcome<V, C> {
        drop(result);
        Outcome::Keep
    }
}
