//! The runtime of the `pipewright` crate: the step interpreter, the invocation handle and
//! the runtime that `pipeline!` targets.
//!
//! Use it through the `pipewright` crate, which re-exports everything here.
//!
//! ```
//! use pipewright::{pipeline, Runtime};
//!
//! let inc_3 = pipeline!(|value: i32, _ctx: &()| {
//!     value = value + 1;
//!     value = value + 1;
//!     value = value + 1;
//! });
//! let runtime = Runtime::builder(()).register("inc-3", inc_3).start().unwrap();
//! // Nothing waited, so the result is there as soon as `invoke` returns.
//! assert_eq!(runtime.invoke("inc-3", 0).unwrap().try_result().unwrap().unwrap(), 3);
//! ```
//!
//! # Features
//!
//! - `timeline` (on by default): [`Timeline`], a watcher that records what happened to
//!   each instance and renders it as an ASCII chart or an SVG picture.
//! - `tracing`: a `tracing` span per instance, entered while its steps run, with an event
//!   for each change of its state.
//! - `tower`: the [`service`] module: a registered pipeline as a `tower::Service`
//!   ([`PipelineHandle::into_service`]), whose readiness reflects a full dropping queue.
//!
// Without `timeline` there is no `Timeline` to link to: the link points to this section.
#![cfg_attr(not(feature = "timeline"), doc = "[`Timeline`]: #features")]
// Without `tower`, the same for its module and method.
#![cfg_attr(
    not(feature = "tower"),
    doc = "[`service`]: #features\n[`PipelineHandle::into_service`]: #features"
)]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![doc(test(attr(deny(warnings))))]
// docs.rs (nightly) labels the items a feature gates; stable builds never see this.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod behaviour;
mod cancel_on_drop;
mod cancel_reason;
mod continuation;
mod control;
pub mod error;
mod events;
mod ident;
mod instance;
pub mod introspection;
mod invocation;
pub mod outcome;
mod pipeline;
mod policy;
mod producer;
mod queue;
mod registry;
mod runtime;
/// What a user can rely on, section by section: the contract that the rest of this
/// documentation cites by its section numbers (the repository's `docs/SEMANTICS.md`,
/// kept in this crate as `SEMANTICS.md`).
///
#[doc = include_str!("../SEMANTICS.md")]
pub mod semantics {}
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub mod service;
pub mod supervision;
#[cfg(feature = "timeline")]
mod timeline;

pub use behaviour::{Behaviour, Concurrency, WhenFull};
pub use cancel_on_drop::CancelOnDrop;
pub use cancel_reason::CancelReason;
pub use continuation::{Continuation, Frame, Step};
pub use error::{
    BoxError, CancelError, Error, InvalidPolicy, InvokeError, Refused, StartError, SubscribeError,
};
pub use events::hooks::{Event, EventKind};
pub use events::stream::EventStream;
/// The boxed future [`Child::run`](supervision::Child::run) returns (re-exported from
/// `futures`).
pub use futures::future::BoxFuture;
pub use ident::Ident;
pub use invocation::Invocation;
pub use outcome::{Break, BreakAll, Cancel, IntoOutcome, Outcome};
pub use pipeline::Pipeline;
pub use policy::{Backoff, RestartPolicy};
pub use queue::Queue;
pub use runtime::PipelineHandle;
pub use runtime::{in_pipeline, Current, Runtime, RuntimeBuilder, Shutdown, WeakRuntime};
#[cfg(feature = "timeline")]
pub use timeline::Timeline;

/// How many pipelines may run one inside the other on one thread's stack: a step that
/// would nest deeper fails with [`Error::NestingTooDeep`] (a detached child starts on a
/// task of its own instead). The interpreter drives a child inside its parent's stack
/// frame, about 5 KiB per level in a debug build; 128 levels stay well inside the 2 MiB
/// stack of a tokio worker thread.
///
/// ```
/// use pipewright::{pipeline, Pipeline, Runtime, NESTING_LIMIT};
///
/// // Each level nests the next one until the value reaches zero.
/// fn countdown() -> Pipeline<usize, ()> {
///     pipeline!(|value: usize, _ctx: &()| {
///         value = value.saturating_sub(1);
///         value = if value > 0 { Some(countdown()) } else { None };
///     })
/// }
/// let runtime = Runtime::builder(()).start().unwrap();
/// let mut deep = runtime.invoke_pipeline(&countdown(), NESTING_LIMIT + 10).unwrap();
/// let error = deep.try_result().unwrap().unwrap_err();
/// assert!(matches!(error, pipewright::Error::NestingTooDeep { limit: NESTING_LIMIT }));
/// ```
pub const NESTING_LIMIT: usize = 128;

/// Builds a [`Pipeline`] from a block of steps.
///
/// ```text
/// pipeline!(|value: V, ctx: &C| {            // or |value: V, ctx: &C, current|
///     value = step;                           // a step that changes the value says so
///     step;                                   // any other step runs for its effects
///     value = future_step.await;              // a step ending in `.await` may wait
///     rescue!(|error| { step; value = step; });   // optional: handles an error of the steps
///     finally!(|error| { step; step; });      // optional: runs whatever happened
/// })
/// ```
///
/// **The value changes only where a step says so** ([SEMANTICS 1.1]), by assigning the
/// header's binding: `value = expr;` (a `V`, a `Result<V, _>` whose `Err` takes the error
/// path, or a pipeline run as a child whose result becomes the value), `value = fut.await;`,
/// `value += n;`. Every other step keeps its Rust meaning: it runs for its effects and its
/// result is discarded, except that an `Err` takes the error path, a pipeline runs as a
/// child (the value kept), and the markers [`Break`], [`BreakAll`], [`Cancel`] and a
/// [`Continuation`] act. `let _ = expr;` discards anything on purpose. A bare step whose
/// result has the value's type is most likely a forgotten `value =` and gets a warning
/// at the step. Each step sees the value as the header binds it: `value: V` gives each
/// step its own clone, `value: &V` a borrow (a synchronous step clones nothing; a waiting
/// step that names the value borrows its future's own clone, see below), so an
/// assignment inside a block or closure would be lost, and is a compile error. The value
/// needs a type in the header; `return` is not a step (use [`Break`]); `?` anywhere in a
/// step, macro arguments included, takes the error path.
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
/// use pipewright::{pipeline, Runtime};
///
/// let counted = pipeline!(|id: u64, calls: &AtomicU64| {
///     // A side effect whose result (the old count) is a `u64` like the value: discarded
///     // on purpose, or the step would get the warning of a forgotten `id =`.
///     let _ = calls.fetch_add(1, SeqCst);
///     id = id * 10;                           // the new value
/// });
/// let runtime = Runtime::builder(AtomicU64::new(100)).start().unwrap();
/// assert_eq!(runtime.invoke_pipeline(&counted, 7).unwrap().try_result().unwrap().unwrap(), 70);
/// ```
///
/// # What a waiting step may borrow
///
/// A step ending in `.await` that names the value, the context or its section's error is
/// evaluated *inside* the future it waits on, and that future owns what they borrow: a
/// share of the context (the runtime keeps it in an `Arc`), its own clone of the value
/// (and of the error), and a clone of every variable it captures from around the
/// `pipeline!`. So `api.search(&query).await` borrows `api: &Api` and `query` freely, and
/// dropping the future (a cancellation) is safe. Such a step's captured variables must be
/// `Clone` (share what cannot be cloned through an `Arc`, or the context). A waiting step
/// that names none of them is evaluated inline as written, so its future must own what it
/// uses. Either way the future is polled at once: a ready future does not suspend.
///
/// ```
/// use pipewright::{pipeline, Runtime};
///
/// struct Api { base: String }
/// impl Api {
///     async fn get(&self, path: &str) -> String { format!("{}/{path}", self.base) }
/// }
///
/// let fetch = pipeline!(|path: String, api: &Api| {
///     path = api.get(&path).await;
/// });
/// let runtime = Runtime::builder(Api { base: "https://example.com".into() }).start().unwrap();
/// let url = runtime.invoke_pipeline(&fetch, "a".into()).unwrap().try_result().unwrap();
/// assert_eq!(url.unwrap(), "https://example.com/a");
/// ```
///
/// # A step's view of its instance, and continuations
///
/// A third header binding, `|value: V, ctx: &C, current|`, gives every step of the
/// pipeline (`rescue!` and `finally!` included) a [`Current`]: its instance's ident, its
/// parent's, the runtime that runs it, and its [`Continuation`] ([SEMANTICS 2.1]):
///
/// - a continuation's frames run innermost first: the rest of this pipeline after the
///   step, then the rest of each pipeline it is nested in, up to the instance that
///   drives them all (a root, a detached child or a fork); each frame has its value, and
///   steps can be inserted before or pushed after its remaining ones;
/// - a step that returns a continuation **resumes** it: each level goes on in place with
///   its frame (the same instance, ident and queue slot), each frame's result becoming
///   the next outer frame's value (unless that level ran as a bare child step, whose
///   result is discarded), and
///   each level runs its `finally!` once, at its end; synchronously when nothing waits;
/// - [`Current::fork`] starts a continuation as a new child of this instance, inline
///   until it waits, while the step carries on; [`Current::fork_detached`] when
///   cancelling the fork must not climb to this instance;
/// - [`Continuation::into_pipeline`] turns the rest into a pipeline value;
/// - forked frames are children like any other: they join their pipeline's queue, get
///   fresh idents, are cancelled with their parent, run their `finally!`, and the
///   watcher sees them.
///
/// ```
/// use pipewright::{pipeline, Runtime};
///
/// let p = pipeline!(|value: i32, _ctx: &(), current| {
///     // An odd value goes on doubled: the rest of the run, from another value.
///     if value % 2 == 1 { Some(current.continuation().with_value(value * 2)) } else { None };
///     value = value + 1;
/// });
/// let runtime = Runtime::builder(()).start().unwrap();
/// assert_eq!(runtime.invoke_pipeline(&p, 3).unwrap().try_result().unwrap().unwrap(), 7);
/// assert_eq!(runtime.invoke_pipeline(&p, 4).unwrap().try_result().unwrap().unwrap(), 5);
/// ```
///
/// # Examples
///
/// ```
/// use pipewright::{pipeline, Runtime};
///
/// let checked_half = pipeline!(|value: i32, _ctx: &()| {
///     value = if value % 2 == 0 { Ok(value / 2) } else { Err(format!("{value} is odd")) };
///     rescue!(|error| {
///         value = -1;
///     });
/// });
/// let runtime = Runtime::builder(()).start().unwrap();
/// assert_eq!(runtime.invoke_pipeline(&checked_half, 8).unwrap().try_result().unwrap().unwrap(), 4);
/// assert_eq!(runtime.invoke_pipeline(&checked_half, 7).unwrap().try_result().unwrap().unwrap(), -1);
/// ```
///
/// [SEMANTICS 1.1]: crate::semantics#11-what-a-step-does-with-the-value
/// [SEMANTICS 2.1]: crate::semantics#21-a-steps-view-of-its-instance-and-continuations
#[macro_export]
macro_rules! pipeline {
    ($($body:tt)*) => {
        $crate::__private::pipeline_impl! { ($crate) $($body)* }
    };
}

/// Handles an error of a pipeline's main steps. Only valid as a section at the end of a
/// [`pipeline!`] body; anywhere else it is a compile error.
///
/// ```compile_fail
/// let misplaced = pipewright::rescue!(|error| { 1; });
/// ```
#[macro_export]
macro_rules! rescue {
    ($($tokens:tt)*) => {
        ::core::compile_error!(
            "`rescue!` is only valid as a section at the end of a `pipeline!` body: \
             move it inside `pipeline!(|value, ctx| { ...; rescue!(|error| { ... }); })`"
        )
    };
}

/// Runs at the end of a pipeline whatever happened. Only valid as the last section of a
/// [`pipeline!`] body; anywhere else it is a compile error.
///
/// ```compile_fail
/// let misplaced = pipewright::finally!(|error| { 1; });
/// ```
#[macro_export]
macro_rules! finally {
    ($($tokens:tt)*) => {
        ::core::compile_error!(
            "`finally!` is only valid as the last section of a `pipeline!` body: \
             move it inside `pipeline!(|value, ctx| { ...; finally!(|error| { ... }); })`"
        )
    };
}

/// What the code `pipeline!` generates refers to. Not public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::error::{BoxError, Error};
    pub use crate::outcome::dispatch::{
        assigned, ignored, Discard, OtherKind, ResultKind, TraitKind, UnassignedValueKind,
    };
    pub use crate::outcome::Outcome;
    pub use crate::pipeline::{Layout, Pipeline, Site, StepCall};
    pub use crate::runtime::Current;
    pub use ::core;
    pub use ::std::sync::Arc;
    pub use pipewright_macros::pipeline_impl;
}
