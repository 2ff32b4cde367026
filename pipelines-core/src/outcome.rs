//! What a step's result does (SEMANTICS 1.1).
//!
//! Every step expression is turned into an [`Outcome`] by the code `pipeline!` generates.
//! The conversion is chosen by the *type* of the expression, at compile time, in four
//! levels (the "autoref specialisation" technique, as `anyhow!` uses it):
//!
//! 1. types implementing [`IntoOutcome`]: `()`, the markers [`Break`], [`BreakAll`] and
//!    [`Cancel`], pipelines, [`Muted`] pipelines, and `Option`/`Result`
//!    wrapping any of these;
//! 2. `Result<Option<V>, E>`;
//! 3. `Option<V>` (`None` keeps the value, `Some(v)` replaces it) and `Result<V, E>`
//!    (`Err` goes to the error path);
//! 4. anything else is the new value.
//!
//! A step written `expr.await` is a future step: its future is polled by the interpreter
//! and its *output* goes through the same levels.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use crate::continuation::Continuation;
use crate::error::{BoxError, Error};
use crate::pipeline::{Muted, Pipeline};

/// A future a step is waiting on, already mapped to the outcome of its output.
pub(crate) type StepFuture<V, C> = Pin<Box<dyn Future<Output = Outcome<V, C>> + Send + 'static>>;

/// The effect of one step on its pipeline. Built by the code `pipeline!` generates, or by
/// an [`IntoOutcome`] implementation of your own.
///
/// # Examples
///
/// ```
/// use pipelines::{pipeline, IntoOutcome, Outcome, Runtime};
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
    /// Cancel this instance, as if `cancel` had been called on it.
    Cancel,
    /// Replace the rest of the run with this continuation (SEMANTICS 2.1): every nested
    /// level ends here, and the instance that drives them runs the continuation's frames.
    /// (Boxed: a continuation is large, and every step's outcome is moved around.)
    Resume(Box<Continuation<V, C>>),
}

/// An opaque future inside [`Outcome::Future`].
pub struct FutureOutcome<V, C>(pub(crate) StepFuture<V, C>);

impl<V, C> Outcome<V, C> {
    /// An outcome that waits for `future` and then applies the outcome it resolves to.
    ///
    /// ```
    /// use pipelines::Outcome;
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
            Outcome::Cancel => f.write_str("Cancel"),
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
/// use pipelines::{IntoOutcome, Outcome};
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

impl<V, C> IntoOutcome<V, C> for Pipeline<V, C> {
    fn into_outcome(self) -> Outcome<V, C> {
        Outcome::Nested {
            pipeline: self,
            muted: false,
        }
    }
}

impl<V, C> IntoOutcome<V, C> for &Pipeline<V, C> {
    fn into_outcome(self) -> Outcome<V, C> {
        self.clone().into_outcome()
    }
}

impl<V, C> IntoOutcome<V, C> for Muted<V, C> {
    fn into_outcome(self) -> Outcome<V, C> {
        Outcome::Nested {
            pipeline: self.0,
            muted: true,
        }
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
/// use pipelines::{pipeline, Break, Runtime};
///
/// let p = pipeline!(|value: i32, _ctx: &()| {
///     value + 1;
///     if value > 0 { Some(Break::now()) } else { None };
///     value + 100; // not reached for positive inputs
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
    /// # use pipelines::{pipeline, Break, Runtime};
    /// let p = pipeline!(|value: i32, _ctx: &()| { Break::with(value * 2); value + 1; });
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
/// use pipelines::{pipeline, BreakAll, Runtime};
///
/// let inner = pipeline!(|value: i32, _ctx: &()| { BreakAll::with(value * 10); });
/// let outer = pipeline!(|value: i32, _ctx: &()| {
///     inner.clone();
///     value + 1; // not reached
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
/// use pipelines::{pipeline, Cancel, Runtime};
///
/// let p = pipeline!(|value: i32, _ctx: &()| {
///     if value < 0 { Some(Cancel) } else { None };
///     value * 2;
/// });
/// let runtime = Runtime::builder(()).start().unwrap();
/// let outcome = runtime.invoke_pipeline(&p, -1).unwrap().try_result().unwrap();
/// assert!(outcome.unwrap_err().is_cancelled());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cancel;

impl<V, C> IntoOutcome<V, C> for Cancel {
    fn into_outcome(self) -> Outcome<V, C> {
        Outcome::Cancel
    }
}

/// The compile-time dispatch used by generated code. Not public API.
#[doc(hidden)]
pub mod dispatch {
    use super::*;

    use std::marker::PhantomData;

    /// Wraps a step's result so that method resolution can pick its conversion.
    #[derive(Debug)]
    pub struct Wrap<T>(pub T);

    /// Level 1: the type implements [`IntoOutcome`]. Carries `V` and `C` so that they are
    /// inferred from the step's expected outcome.
    #[derive(Debug)]
    pub struct TraitTag<V, C>(PhantomData<fn() -> (V, C)>);
    /// Level 2: `Result<Option<V>, E>`.
    #[derive(Debug)]
    pub struct ResultOptionTag;
    /// Level 3: `Option<V>`.
    #[derive(Debug)]
    pub struct OptionTag;
    /// Level 2: `Result<V, E>`.
    #[derive(Debug)]
    pub struct ResultTag;
    /// Level 3: a plain value.
    #[derive(Debug)]
    pub struct ValueTag;

    pub trait TraitKind<V, C> {
        #[inline(always)]
        fn __pipelines_kind(&self) -> TraitTag<V, C> {
            TraitTag(PhantomData)
        }
    }
    impl<V, C, T: IntoOutcome<V, C>> TraitKind<V, C> for &&&Wrap<T> {}

    pub trait ResultOptionKind {
        #[inline(always)]
        fn __pipelines_kind(&self) -> ResultOptionTag {
            ResultOptionTag
        }
    }
    impl<T, E> ResultOptionKind for &&Wrap<Result<Option<T>, E>> {}

    pub trait OptionKind {
        #[inline(always)]
        fn __pipelines_kind(&self) -> OptionTag {
            OptionTag
        }
    }
    impl<T> OptionKind for &Wrap<Option<T>> {}

    pub trait ResultKind {
        #[inline(always)]
        fn __pipelines_kind(&self) -> ResultTag {
            ResultTag
        }
    }
    impl<T, E> ResultKind for &Wrap<Result<T, E>> {}

    pub trait ValueKind {
        #[inline(always)]
        fn __pipelines_kind(&self) -> ValueTag {
            ValueTag
        }
    }
    impl<T> ValueKind for Wrap<T> {}

    impl<V, C> TraitTag<V, C> {
        #[inline(always)]
        pub fn into_outcome<T: IntoOutcome<V, C>>(self, result: T) -> Outcome<V, C> {
            result.into_outcome()
        }
    }
    impl ResultOptionTag {
        #[inline(always)]
        pub fn into_outcome<V, C, E: Into<BoxError>>(
            self,
            result: Result<Option<V>, E>,
        ) -> Outcome<V, C> {
            match result {
                Ok(Some(value)) => Outcome::Value(value),
                Ok(None) => Outcome::Keep,
                Err(error) => Outcome::Error(Error::new(error)),
            }
        }
    }
    impl OptionTag {
        #[inline(always)]
        pub fn into_outcome<V, C>(self, result: Option<V>) -> Outcome<V, C> {
            match result {
                Some(value) => Outcome::Value(value),
                None => Outcome::Keep,
            }
        }
    }
    impl ResultTag {
        #[inline(always)]
        pub fn into_outcome<V, C, E: Into<BoxError>>(self, result: Result<V, E>) -> Outcome<V, C> {
            match result {
                Ok(value) => Outcome::Value(value),
                Err(error) => Outcome::Error(Error::new(error)),
            }
        }
    }
    impl ValueTag {
        #[inline(always)]
        pub fn into_outcome<V, C>(self, value: V) -> Outcome<V, C> {
            Outcome::Value(value)
        }
    }
}
