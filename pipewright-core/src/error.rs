//! Error types: what a pipeline instance ends with, and what the runtime refuses.
//!
//! Two families, kept apart on purpose:
//! - [`Error`] is the error *inside* a pipeline: the one `rescue!` and `finally!` see, the
//!   one an awaited [`Invocation`](crate::Invocation) yields. It is cheap to clone because
//!   the same error reaches `rescue!`, `finally!`, the error reporter and the caller.
//! - [`InvokeError`] and [`StartError`] are returned synchronously by the runtime when it
//!   refuses a request; no pipeline code ran.
//! - [`InvalidPolicy`] is returned when a restart policy or a backoff is built with values
//!   that cannot work; nothing was configured.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use crate::behaviour::Concurrency;
use crate::cancel_reason::CancelReason;

/// A boxed error of any type a step can fail with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a pipeline instance did not produce a value.
///
/// Cancellation and dropping are outcomes, not failures: they are never given to the
/// error reporter, and [`Error::is_cancelled`] / [`Error::is_dropped`] tell them apart.
///
/// # Examples
///
/// ```
/// use pipewright::{pipeline, Runtime};
///
/// let failing = pipeline!(|value: i32, _ctx: &()| {
///     value = Err::<i32, _>(format!("{value} is not welcome"));
/// });
/// let runtime = Runtime::builder(()).start().unwrap();
/// let error = runtime.invoke_pipeline(&failing, 7).unwrap().try_result().unwrap().unwrap_err();
/// assert!(error.is_failed());
/// // `Display` says what happened; the step's own error is the `source()`, and its text is
/// // `message()`, so an error-chain printer shows each text once. `{:#}` gives both.
/// assert_eq!(error.to_string(), "step failed");
/// assert_eq!(error.message(), "7 is not welcome");
/// assert_eq!(format!("{error:#}"), "step failed: 7 is not welcome");
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub enum Error {
    /// A step returned `Err`, or a step's future resolved to `Err`.
    Failed(Arc<dyn std::error::Error + Send + Sync + 'static>),
    /// A step panicked; the panic was caught and its message kept.
    Panicked {
        /// The panic message (`"<non-string panic payload>"` when it was not a string).
        message: Arc<str>,
    },
    /// The instance was cancelled: by its ident, by `stop` or a shutdown, by its queue (a
    /// newer instance replaced it), by a `Cancel` step, a timeout, its handle being
    /// dropped or a fleet lease lost, or with its parent for one of these.
    Cancelled {
        /// Why: the source of the cancellation.
        reason: CancelReason,
        /// `true` when the cancellation reached this instance through its parent (the
        /// parent, or an ancestor, was cancelled for `reason`); `false` for the instance
        /// the cancellation named and the parents it climbed through.
        by_parent: bool,
    },
    /// The instance never started: its queue refused it. A main or `rescue!` step that
    /// returns it (`Err(Error::Dropped)`, as an admission outside the runtime does, such
    /// as a fleet-wide queue's) ends its instance the same way: dropped, `finally!` run
    /// with this error, no `rescue!`, not reported. So does a refused
    /// [`Current::fork`](crate::Current::fork)'s error passed on with `?`: match on it
    /// to carry on without the fork.
    Dropped,
    /// A step returned a future that was not ready, but no tokio runtime was available to
    /// wait for it. Invoke from inside a tokio runtime, or start the pipelines runtime
    /// inside one (or give it an executor with `RuntimeBuilder::executor`).
    NoExecutor,
    /// The instance ran longer than its [`timeout`](crate::Pipeline::timeout): what it
    /// waited on was dropped, and the error path runs (`rescue!` may handle it). Handle it
    /// there, or give the pipeline a longer timeout.
    TimedOut {
        /// The limit it exceeded.
        limit: std::time::Duration,
    },
    /// The invocation's result was already taken (by `try_result` or an earlier `.await`):
    /// keep the result of the first one.
    ResultTaken,
    /// A step nested a pipeline deeper than [`NESTING_LIMIT`](crate::NESTING_LIMIT) levels
    /// on one stack: the step that would nest fails with this error (`rescue!` may handle
    /// it), so deep recursion never overflows the thread's stack. A detached child past
    /// the limit starts on a task of its own instead (a fresh stack), when a tokio
    /// runtime is available. To repeat work many times, loop inside one step, or
    /// start each repetition as a detached child.
    NestingTooDeep {
        /// The limit it reached.
        limit: usize,
    },
    /// A `finally!` step returned a continuation to resume. `finally!` runs once per
    /// started instance, whatever ends it; resuming there would run the instance's steps,
    /// and its `finally!`, again (or, for a cancelled instance, skip them and run
    /// `finally!` twice), so the step fails with this error instead. To run the rest of
    /// a pipeline again after it ended, start it anew from `finally!`: fork the
    /// continuation ([`Current::fork`](crate::Current::fork)), or invoke
    /// [`Continuation::into_pipeline`](crate::Continuation::into_pipeline).
    ResumedInFinally,
    /// Not a step's error: what a supervisor reports to the error reporter and the
    /// watcher (a child's [`Failure`](crate::supervision::Failure), or its
    /// [`SupervisorError`](crate::supervision::SupervisorError) when it gives up). It
    /// reads as what failed, with no "step failed" before it; [`Error::downcast_ref`]
    /// reaches it.
    Supervision(Arc<dyn std::error::Error + Send + Sync + 'static>),
}

impl Error {
    /// Wraps any error a step failed with. An [`Error`] given here is kept as it is, so a
    /// `rescue!` that re-raises `Err(error.clone())` does not nest errors.
    ///
    /// ```
    /// use pipewright::Error;
    /// let error = Error::new("disk full");
    /// assert_eq!(error.message(), "disk full");
    /// assert_eq!(Error::new(error.clone()).message(), "disk full");
    /// ```
    pub fn new(error: impl Into<BoxError>) -> Self {
        match error.into().downcast::<Error>() {
            Ok(own) => *own,
            Err(other) => Error::Failed(Arc::from(other)),
        }
    }

    /// Turns a caught panic payload into an error that carries the panic message.
    pub(crate) fn from_panic(payload: Box<dyn Any + Send>) -> Self {
        let message: Arc<str> = if let Some(text) = payload.downcast_ref::<&'static str>() {
            Arc::from(*text)
        } else if let Some(text) = payload.downcast_ref::<String>() {
            Arc::from(text.as_str())
        } else {
            Arc::from("<non-string panic payload>")
        };
        Error::Panicked { message }
    }

    /// A panic of one of the runtime's hooks, named in the message.
    pub(crate) fn from_hook_panic(hook: &str, payload: Box<dyn Any + Send>) -> Self {
        match Error::from_panic(payload) {
            Error::Panicked { message } => Error::Panicked {
                message: Arc::from(format!("the {hook} panicked: {message}")),
            },
            other => other,
        }
    }

    /// What went wrong, in one line: for a step that failed, its own error's text (the
    /// [`source`](std::error::Error::source), which [`Display`](fmt::Display) leaves out
    /// so that chain printers do not repeat it); for a panic, its message; for anything
    /// else, the [`Display`](fmt::Display) text.
    ///
    /// ```
    /// use pipewright::Error;
    /// assert_eq!(Error::new("disk full").message(), "disk full");
    /// use pipewright::CancelReason;
    /// let stopped = Error::Cancelled { reason: CancelReason::Stopped, by_parent: false };
    /// assert_eq!(stopped.message(), "instance cancelled: the runtime stopped");
    /// let with_parent = Error::Cancelled { reason: CancelReason::Stopped, by_parent: true };
    /// assert_eq!(with_parent.message(), "instance cancelled with its parent: the runtime stopped");
    /// ```
    pub fn message(&self) -> String {
        match self {
            Error::Failed(source) => source.to_string(),
            Error::Panicked { message } => message.to_string(),
            other => other.to_string(),
        }
    }

    /// `true` for an error a step produced (`Err` or a panic), as opposed to cancellation
    /// or dropping.
    ///
    /// ```
    /// assert!(pipewright::Error::new("boom").is_failed());
    /// use pipewright::{CancelReason, Error};
    /// assert!(!Error::Cancelled { reason: CancelReason::Requested, by_parent: false }.is_failed());
    /// ```
    pub fn is_failed(&self) -> bool {
        matches!(
            self,
            Error::Failed(_)
                | Error::Panicked { .. }
                | Error::NoExecutor
                | Error::TimedOut { .. }
                | Error::NestingTooDeep { .. }
                | Error::ResumedInFinally
                | Error::Supervision(_)
        )
    }

    /// `true` when the instance exceeded its timeout.
    ///
    /// ```
    /// # use std::time::Duration;
    /// assert!(pipewright::Error::TimedOut { limit: Duration::from_secs(1) }.is_timeout());
    /// ```
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::TimedOut { .. })
    }

    /// `true` when the instance was cancelled, whatever the reason.
    ///
    /// ```
    /// use pipewright::{CancelReason, Error};
    /// assert!(Error::Cancelled { reason: CancelReason::Replaced, by_parent: false }.is_cancelled());
    /// ```
    pub fn is_cancelled(&self) -> bool {
        matches!(self, Error::Cancelled { .. })
    }

    /// Why the instance was cancelled; `None` if this is not a cancellation.
    ///
    /// ```
    /// use pipewright::{CancelReason, Error};
    /// let error = Error::Cancelled { reason: CancelReason::HandleDropped, by_parent: true };
    /// assert_eq!(error.cancel_reason(), Some(CancelReason::HandleDropped));
    /// assert_eq!(Error::Dropped.cancel_reason(), None);
    /// ```
    pub fn cancel_reason(&self) -> Option<CancelReason> {
        match self {
            Error::Cancelled { reason, .. } => Some(*reason),
            _ => None,
        }
    }

    /// `true` when the instance was dropped by its queue before it started.
    ///
    /// ```
    /// assert!(pipewright::Error::Dropped.is_dropped());
    /// ```
    pub fn is_dropped(&self) -> bool {
        matches!(self, Error::Dropped)
    }

    /// `true` when a step panicked.
    ///
    /// ```
    /// assert!(!pipewright::Error::new("no panic").is_panic());
    /// ```
    pub fn is_panic(&self) -> bool {
        matches!(self, Error::Panicked { .. })
    }

    /// The error a step failed with, if it is of type `E`.
    ///
    /// ```
    /// use std::num::ParseIntError;
    /// let parse_error = "x".parse::<i32>().unwrap_err();
    /// let error = pipewright::Error::new(parse_error.clone());
    /// assert_eq!(error.downcast_ref::<ParseIntError>(), Some(&parse_error));
    /// ```
    pub fn downcast_ref<E: std::error::Error + 'static>(&self) -> Option<&E> {
        match self {
            Error::Failed(source) | Error::Supervision(source) => source.downcast_ref::<E>(),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // The step's own error is the `source()`: not repeated here, unless asked for
            // with `{:#}` (one line with the whole chain, as `anyhow` prints it).
            Error::Failed(source) if f.alternate() => {
                write!(f, "step failed: {source}")?;
                let mut next = source.source();
                while let Some(cause) = next {
                    write!(f, ": {cause}")?;
                    next = cause.source();
                }
                Ok(())
            }
            Error::Failed(_) => f.write_str("step failed"),
            Error::Panicked { message } => write!(f, "step panicked: {message}"),
            Error::Cancelled {
                reason,
                by_parent: false,
            } => write!(f, "instance cancelled: {reason}"),
            Error::Cancelled {
                reason,
                by_parent: true,
            } => write!(f, "instance cancelled with its parent: {reason}"),
            Error::Dropped => f.write_str("instance dropped by its queue"),
            Error::NoExecutor => f.write_str("no tokio runtime to wait on"),
            Error::TimedOut { limit } => write!(f, "timed out after {limit:?}"),
            Error::ResultTaken => f.write_str("result already taken"),
            Error::NestingTooDeep { limit } => write!(f, "nested more than {limit} levels deep"),
            Error::ResumedInFinally => f.write_str("continuation resumed in finally!"),
            // What failed says so itself; its causes follow with `{:#}`, as for a step.
            Error::Supervision(failure) => {
                fmt::Display::fmt(failure, f)?;
                if f.alternate() {
                    let mut next = failure.source();
                    while let Some(cause) = next {
                        write!(f, ": {cause}")?;
                        next = cause.source();
                    }
                }
                Ok(())
            }
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Failed(source) => f.debug_tuple("Failed").field(source).finish(),
            Error::Panicked { message } => f
                .debug_struct("Panicked")
                .field("message", message)
                .finish(),
            Error::Cancelled { reason, by_parent } => f
                .debug_struct("Cancelled")
                .field("reason", reason)
                .field("by_parent", by_parent)
                .finish(),
            Error::Dropped => f.write_str("Dropped"),
            Error::NoExecutor => f.write_str("NoExecutor"),
            Error::TimedOut { limit } => f.debug_struct("TimedOut").field("limit", limit).finish(),
            Error::ResultTaken => f.write_str("ResultTaken"),
            Error::NestingTooDeep { limit } => f
                .debug_struct("NestingTooDeep")
                .field("limit", limit)
                .finish(),
            Error::ResumedInFinally => f.write_str("ResumedInFinally"),
            Error::Supervision(failure) => f.debug_tuple("Supervision").field(failure).finish(),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Failed(source) => Some(&**source),
            // Transparent: its own causes are the chain.
            Error::Supervision(failure) => failure.source(),
            _ => None,
        }
    }
}

/// Why the runtime refused an invocation. Nothing ran.
///
/// # Examples
///
/// ```
/// use pipewright::{InvokeError, Runtime};
///
/// let runtime = Runtime::builder(()).start().unwrap();
/// // `invoke` gives the argument back with the error (a `Refused`), which derefs to it.
/// let refused = runtime.invoke::<i32>("missing", 1).unwrap_err();
/// assert!(matches!(*refused, InvokeError::UnknownPipeline { .. }));
/// let error: InvokeError = refused.into();
/// assert_eq!(error.to_string(), "no pipeline named `missing`");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvokeError {
    /// No pipeline is registered under this name. Register it with
    /// `Runtime::builder(..).register(name, pipeline)`, or invoke the pipeline value with
    /// [`invoke_pipeline`](crate::Runtime::invoke_pipeline).
    #[error("no pipeline named `{name}`")]
    UnknownPipeline {
        /// The name that was asked for.
        name: String,
    },
    /// The pipeline exists but its value type is not the argument's type. Pass a value
    /// of the pipeline's type (an integer literal may need a suffix, as in `0_u64`), or
    /// resolve a typed handle once with [`Runtime::handle`](crate::Runtime::handle), which
    /// gives literals the right type.
    #[error("pipeline `{name}` takes `{expected}`, not `{found}`")]
    WrongArgumentType {
        /// The registered name.
        name: String,
        /// The pipeline's value type.
        expected: &'static str,
        /// The runtime's context type.
        context: &'static str,
        /// The type that was passed.
        found: &'static str,
    },
    /// The runtime was stopped; it accepts no more invocations. Start a new runtime.
    #[error("runtime stopped")]
    Stopped,
    /// Waiting work needs a tokio runtime and none is available (neither the current one
    /// nor the runtime's executor). Call from inside a tokio runtime, or give the runtime
    /// an executor with `RuntimeBuilder::executor`.
    #[error("no tokio runtime available")]
    NoExecutor,
    /// The pipeline's queue is already used with another concurrency configuration.
    /// Pipelines sharing a queue must have identical configurations: put them in one
    /// [`Queue`](crate::Queue) value, or give them distinct queues.
    #[error("queue `{queue}` is {existing} (set by `{existing_by}`), not {requested} (asked by `{requested_by}`)")]
    QueueMismatch {
        /// The queue's name.
        queue: String,
        /// The configuration the queue has.
        existing: Concurrency,
        /// The pipeline that gave the queue its configuration.
        existing_by: String,
        /// The configuration that was refused.
        requested: Concurrency,
        /// The pipeline that asked for it.
        requested_by: String,
    },
    /// The pipeline's concurrency configuration cannot work: `problem` says why (a
    /// `max(0)` that would never run anything, a `use_existing` queue whose pipeline
    /// cannot compare arguments). Use a max of at least 1; call `.use_existing()` on the
    /// pipeline itself (its value type must be `Hash + Eq`).
    #[error("queue `{queue}` cannot use {concurrency}: {problem}")]
    InvalidConcurrency {
        /// The queue's name.
        queue: String,
        /// The configuration that was refused.
        concurrency: Concurrency,
        /// What is wrong.
        problem: &'static str,
    },
    /// User code the runtime runs on the argument before the instance exists panicked:
    /// its `Clone`, the `Hash` or `Eq` a `use_existing` queue compares it with, or the
    /// function of a per-key queue. Nothing was started and nothing is left behind. Make
    /// that code total (a per-key function that returns a fallback key instead of
    /// panicking, for example).
    #[error("{operation} of the argument panicked: {message}")]
    ArgumentPanicked {
        /// What panicked: `"clone"`, `"hash"`, `"eq"` or `"queue key"`.
        operation: &'static str,
        /// The panic message.
        message: String,
    },
    /// [`Runtime::invoke_future`](crate::Runtime::invoke_future) was given a pipeline
    /// whose queue must see the argument to admit it: a queue per key (the key is
    /// computed from the argument) or `use_existing` (arguments are compared). Await the
    /// argument first and call [`invoke`](crate::Runtime::invoke).
    #[error("pipeline `{pipeline}` needs its argument at once ({needs})")]
    ArgumentNeeded {
        /// The pipeline's name.
        pipeline: String,
        /// What needs it: `"a queue per key"` or `"use_existing"`.
        needs: &'static str,
    },
}

/// An invocation the runtime refused, with the argument it was given back (as tokio's
/// `SendError<T>` gives back the value it could not send). It dereferences to the
/// [`InvokeError`] that says why, compares equal to it, and converts into it (so `?`
/// works in a function that returns `InvokeError`). Nothing ran.
///
/// # Examples
///
/// ```
/// use pipewright::{InvokeError, Runtime};
///
/// let runtime = Runtime::builder(()).start().unwrap();
/// let refused = runtime.invoke("missing", String::from("report.csv")).unwrap_err();
/// assert!(matches!(*refused, InvokeError::UnknownPipeline { .. }));
/// assert_eq!(refused.to_string(), "no pipeline named `missing`");
/// // Not lost: the argument comes back, to retry or to hand elsewhere.
/// assert_eq!(refused.into_argument(), "report.csv");
/// ```
pub struct Refused<V> {
    error: InvokeError,
    argument: V,
}

impl<V> Refused<V> {
    pub(crate) fn new(error: InvokeError, argument: V) -> Self {
        Refused { error, argument }
    }

    /// Why the invocation was refused.
    pub fn error(&self) -> &InvokeError {
        &self.error
    }

    /// The argument the invocation was given.
    pub fn argument(&self) -> &V {
        &self.argument
    }

    /// Takes the argument back.
    #[must_use]
    pub fn into_argument(self) -> V {
        self.argument
    }

    /// Why, and the argument.
    #[must_use]
    pub fn into_parts(self) -> (InvokeError, V) {
        (self.error, self.argument)
    }

    /// Why, dropping the argument.
    #[must_use]
    pub fn into_error(self) -> InvokeError {
        self.error
    }
}

impl<V> std::ops::Deref for Refused<V> {
    type Target = InvokeError;

    fn deref(&self) -> &InvokeError {
        &self.error
    }
}

/// Shows the error, not the argument: `V` need not be `Debug` for `unwrap()` to work.
impl<V> fmt::Debug for Refused<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Refused")
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

/// The refusal's own message: a `Refused` is its [`InvokeError`] with the argument attached.
impl<V> fmt::Display for Refused<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl<V> std::error::Error for Refused<V> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.error)
    }
}

impl<V> PartialEq<InvokeError> for Refused<V> {
    fn eq(&self, other: &InvokeError) -> bool {
        self.error == *other
    }
}

impl<V> From<Refused<V>> for InvokeError {
    fn from(refused: Refused<V>) -> Self {
        refused.error
    }
}

/// Why [`RuntimeBuilder::start`](crate::RuntimeBuilder::start) refused to start.
///
/// # Examples
///
/// ```
/// use pipewright::{pipeline, Runtime, StartError};
///
/// let p = pipeline!(|value: i32, _ctx: &()| { value = value + 1; });
/// let error = Runtime::builder(()).register("inc", p.clone()).register("inc", p).start().unwrap_err();
/// assert_eq!(error, StartError::DuplicateName { name: "inc".into() });
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// Two pipelines were registered under the same name: give each a distinct name.
    #[error("two pipelines named `{name}`")]
    DuplicateName {
        /// The repeated name.
        name: String,
    },
    /// A registered pipeline's queue configuration conflicts with another one, or cannot
    /// work (see [`InvokeError::QueueMismatch`] and [`InvokeError::InvalidConcurrency`]).
    #[error(transparent)]
    Queue(#[from] InvokeError),
    /// The capacity given to
    /// [`RuntimeBuilder::event_stream`](crate::RuntimeBuilder::event_stream) is zero (no
    /// event could be kept for a subscriber) or above 65,536 (the most undelivered events
    /// the runtime keeps for its watcher, too). Give a capacity from 1 to 65,536; it is
    /// rounded up to a power of two, and that many events are allocated at `start`.
    #[error("event stream capacity {capacity} is outside 1..=65536")]
    EventCapacity {
        /// The capacity given.
        capacity: usize,
    },
}

/// Why [`Runtime::events`](crate::Runtime::events) could not subscribe.
///
/// # Examples
///
/// ```
/// use pipewright::{Runtime, SubscribeError};
///
/// let runtime = Runtime::builder(()).start().unwrap();
/// let error = runtime.events().unwrap_err();
/// assert_eq!(error, SubscribeError::NotEnabled);
/// assert_eq!(error.to_string(), "event streams are not enabled");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SubscribeError {
    /// The runtime was built without
    /// [`RuntimeBuilder::event_stream`](crate::RuntimeBuilder::event_stream). A runtime
    /// records events only when someone will read them, because recording them costs
    /// every invocation its fast path; build it with `.event_stream(capacity)` to
    /// subscribe (or use [`RuntimeBuilder::watcher`](crate::RuntimeBuilder::watcher)).
    #[error("event streams are not enabled")]
    NotEnabled,
}

/// Why a cancellation request did nothing.
///
/// # Examples
///
/// ```
/// use pipewright::{pipeline, CancelError, Runtime};
///
/// let runtime = Runtime::builder(()).start().unwrap();
/// let p = pipeline!(|value: i32, _ctx: &()| {});
/// let handle = runtime.invoke_pipeline(&p, 1).unwrap();
/// let error = runtime.cancel(handle.ident()).unwrap_err();
/// assert!(matches!(error, CancelError::NotLive { .. }));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CancelError {
    /// No live instance has this ident: it already ended, never started, or belongs to
    /// another runtime. Nothing was cancelled.
    #[error("no live instance `{ident}`")]
    NotLive {
        /// The ident that was asked for.
        ident: String,
    },
}

/// Why a [`RestartPolicy`](crate::RestartPolicy) or a [`Backoff`](crate::Backoff) was
/// refused when it was built: it would describe something that cannot work, such as a
/// policy that never gives up. Each variant says how to fix it.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use pipewright::{Backoff, InvalidPolicy, RestartPolicy};
///
/// let error = RestartPolicy::new(3, Duration::ZERO).unwrap_err();
/// assert_eq!(error, InvalidPolicy::ZeroPeriod);
/// assert_eq!(error.to_string(), "restart period is zero");
///
/// let error = Backoff::exponential(Duration::from_secs(1), Duration::from_millis(10)).unwrap_err();
/// assert_eq!(error.to_string(), "backoff cap 10ms is below its initial delay 1s");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidPolicy {
    /// The period restarts are counted over is zero. No restart is ever within a zero
    /// period of another, so the policy would never give up: a retried step that fails
    /// at once would be retried in a loop, a supervisor would restart its child without
    /// end. Give a positive period: `RestartPolicy::new(3, Duration::from_secs(5))` allows
    /// 3 restarts in any 5 seconds.
    #[error("restart period is zero")]
    ZeroPeriod,
    /// An exponential backoff starts at zero: twice zero is zero, so it would never wait.
    /// Use [`Backoff::None`](crate::Backoff::None) for no wait, or a positive initial
    /// delay.
    #[error("initial backoff delay is zero")]
    ZeroInitialDelay,
    /// An exponential backoff's cap is below its initial delay: every delay would be the
    /// cap, a fixed backoff in disguise. Give a cap at least as long as the initial
    /// delay, or use [`Backoff::Fixed`](crate::Backoff::Fixed) with the delay you mean.
    #[error("backoff cap {max:?} is below its initial delay {initial:?}")]
    CapBelowInitialDelay {
        /// The initial delay given.
        initial: std::time::Duration,
        /// The cap given.
        max: std::time::Duration,
    },
    /// The backoff makes the limit unreachable: `max_restarts` restarts of a child that
    /// fails at once wait at least `least` in all, which is not shorter than the period,
    /// so they never all fall within one period and the policy would never give up.
    /// Allow fewer restarts, a longer period or shorter delays; or, if never giving up is
    /// what is meant, say so with
    /// [`RestartPolicy::unlimited`](crate::RestartPolicy::unlimited).
    #[error("{max_restarts} restarts wait at least {least:?} of backoff, not within {within:?}")]
    LimitUnreachable {
        /// The restarts allowed within the period.
        max_restarts: u32,
        /// The period.
        within: std::time::Duration,
        /// The least total backoff of `max_restarts` restarts.
        least: std::time::Duration,
    },
}
