//! Hooks: user code the runtime calls at well-defined moments ([SEMANTICS 5]).
//!
//! Hooks never run while the runtime holds its internal lock, so they may call back into
//! the runtime (invoke, cancel, query, stop). Watcher events are recorded under the lock,
//! in the order the state changed, and delivered after it is released, one at a time: a
//! watcher that invokes sees the events its own invocation caused after the event it is
//! handling, never nested inside it.
//!
//! [SEMANTICS 5]: crate::semantics#5-the-runtime

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use crate::cancel_reason::CancelReason;
use crate::error::Error;
use crate::ident::Ident;
use crate::ident::Name;

/// Called exactly once for every error that no `rescue!` handled on the way up to the
/// root instance. Cancellation and dropping are not errors and are not reported.
pub(crate) type ErrorReporter = Arc<dyn Fn(&Ident, &Error) + Send + Sync + 'static>;

/// Wraps every synchronous stretch of steps; it must call the function it is given once.
pub(crate) type Transactor = Arc<dyn Fn(&mut dyn FnMut()) + Send + Sync + 'static>;

/// Told of every change of an instance's state.
pub(crate) type Watcher = Arc<dyn Fn(&Event) + Send + Sync + 'static>;

/// Told which instance was cancelled while it waited on a future (the future is dropped).
pub(crate) type OnCancel = Arc<dyn Fn(&Ident) + Send + Sync + 'static>;

/// What happened to an instance, as told to the [watcher](crate::RuntimeBuilder::watcher).
///
/// An instance that starts at once is told `Admitted` then `Started`; one that must wait
/// for a slot is told `Admitted`, `Waiting`, and `Started` when a slot frees. Each
/// instance that was admitted ends with exactly one of `Finished`, `Failed` or
/// `Cancelled`; a cancelled one is told `Cancelling` first, when it gives up its slot.
/// An invocation the queue refused is told only `Dropped`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum EventKind {
    /// The queue accepted the instance: it is live from now on.
    Admitted,
    /// The queue is full: the instance waits for a slot.
    Waiting,
    /// The instance took its slot and starts running its steps.
    Started,
    /// The instance waits on a future (or a child) that is not ready.
    Suspended,
    /// What the instance waited on is ready; its steps go on.
    Resumed,
    /// The instance completed with a value.
    Finished,
    /// The instance completed with an error no `rescue!` handled.
    Failed(Error),
    /// The instance was cancelled (its `finally!` has run if it had started), for this
    /// reason (the one its caller and its `finally!` are told).
    Cancelled {
        /// Why (see [`Error::Cancelled`]).
        reason: CancelReason,
        /// The cancellation reached it through its parent.
        by_parent: bool,
    },
    /// A cancellation reached the instance: it gave up its slot (or its waiting place)
    /// at once, so a waiting instance may start now. Its end follows once it has stopped:
    /// `Cancelled`, or `Failed` for an error it raised before the cancellation reached it.
    /// Counting `Started` minus `Cancelling` and the ends of instances not cancelled gives
    /// the slots held at each moment. Its end says the same reason, unless another
    /// cancellation reached the instance's own driver first (two racing cancellations).
    Cancelling {
        /// Why (see [`Error::Cancelled`]).
        reason: CancelReason,
        /// The cancellation reached it through its parent.
        by_parent: bool,
    },
    /// The watcher fell behind: this many events before this one were not kept (at most
    /// 65,536 undelivered events are kept), so counts built from events are off by them.
    /// Told before the next event kept, with its ident and queue; if none is kept after
    /// them, as soon as the events kept before are delivered, with the ident and queue of
    /// the last event lost. So once every event is delivered, the events told plus these
    /// counts are exactly the events that happened. An
    /// [`EventStream`](crate::EventStream) is told the same way when its subscriber fell
    /// more than the stream's capacity behind and lost this many events (the count then
    /// includes those the runtime did not keep).
    Lagged {
        /// Events not delivered.
        missed: u64,
    },
    /// The queue refused the invocation: it never started.
    Dropped,
    /// The instance completed, but detached children are still live: it keeps its slot
    /// until they are done.
    WaitingForChildren,
    /// A supervised child started (the event's queue is its supervisor's name).
    ChildStarted,
    /// A supervised child stopped without failing.
    ChildExited,
    /// A supervised child failed; the error wraps a [`Failure`](crate::supervision::Failure).
    ChildFailed(Error),
    /// A supervised child is started again, after this many restarts of its supervisor.
    ChildRestarted {
        /// Restarts of the supervisor so far, this one included.
        restart: u32,
    },
    /// A supervisor exceeded its restart intensity: it stopped its children and gave up.
    SupervisorGaveUp(Error),
}

/// One change of an instance's state: which instance, in which queue, what happened.
///
/// # Examples
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use pipewright::{pipeline, Runtime};
///
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let sink = seen.clone();
/// let runtime = Runtime::builder(())
///     .register("noop", pipeline!(|value: i32, _ctx: &()| {}))
///     .watcher(move |event| sink.lock().unwrap().push(format!("{:?}", event.kind())))
///     .start()
///     .unwrap();
/// runtime.invoke("noop", 1).unwrap();
/// assert_eq!(*seen.lock().unwrap(), ["Admitted", "Started", "Finished"]);
/// ```
#[derive(Debug, Clone)]
pub struct Event {
    pub(crate) ident: Ident,
    pub(crate) queue: Name,
    pub(crate) kind: EventKind,
}

impl Event {
    /// The instance this event is about.
    pub fn ident(&self) -> &Ident {
        &self.ident
    }

    /// The queue the instance belongs to.
    pub fn queue(&self) -> &str {
        self.queue.as_str()
    }

    /// What happened.
    pub fn kind(&self) -> &EventKind {
        &self.kind
    }
}

/// The hooks a runtime was started with.
#[derive(Clone, Default)]
pub(crate) struct Hooks {
    pub(crate) error_reporter: Option<ErrorReporter>,
    pub(crate) transactor: Option<Transactor>,
    pub(crate) watcher: Option<Watcher>,
    pub(crate) on_cancel: Option<OnCancel>,
}

impl fmt::Debug for Hooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hooks")
            .field("error_reporter", &self.error_reporter.is_some())
            .field("transactor", &self.transactor.is_some())
            .field("watcher", &self.watcher.is_some())
            .field("on_cancel", &self.on_cancel.is_some())
            .finish()
    }
}

impl Hooks {
    /// `true` if stretches run inside a transactor.
    pub(crate) fn has_transactor(&self) -> bool {
        self.transactor.is_some()
    }

    /// Runs `stretch` inside the transactor, if there is one. A panicking transactor is
    /// an error for the instance whose stretch it wrapped (the caller fails it).
    pub(crate) fn in_transaction(&self, stretch: &mut dyn FnMut()) -> Result<(), Error> {
        match &self.transactor {
            Some(transactor) => catch_unwind(AssertUnwindSafe(|| transactor(stretch)))
                .map_err(|panic| Error::from_hook_panic("transactor", panic)),
            None => {
                stretch();
                Ok(())
            }
        }
    }

    /// Reports an error. No hook may take the runtime down with it: a panicking reporter
    /// is contained here, and, having nobody else to tell, its panic is written to
    /// standard error.
    pub(crate) fn report(&self, ident: &Ident, error: &Error) {
        if let Some(reporter) = &self.error_reporter {
            if let Err(panic) = catch_unwind(AssertUnwindSafe(|| reporter(ident, error))) {
                eprintln!(
                    "pipelines: {} (while reporting `{error}` for {ident})",
                    Error::from_hook_panic("error reporter", panic)
                );
            }
        }
    }

    /// Tells `on_cancel`; its panic is reported for the instance.
    pub(crate) fn cancelled_while_waiting(&self, ident: &Ident) {
        if let Some(on_cancel) = &self.on_cancel {
            if let Err(panic) = catch_unwind(AssertUnwindSafe(|| on_cancel(ident))) {
                self.report(ident, &Error::from_hook_panic("on_cancel hook", panic));
            }
        }
    }

    /// Tells the watcher; its panic is reported for the event's instance.
    pub(crate) fn watch(&self, event: &Event) {
        if let Some(watcher) = &self.watcher {
            if let Err(panic) = catch_unwind(AssertUnwindSafe(|| watcher(event))) {
                self.report(&event.ident, &Error::from_hook_panic("watcher", panic));
            }
        }
    }
}

/// The `tracing` span of one instance (feature `tracing`): created when the instance
/// joins its queue (as a child of the span current then, so nesting shows), entered while
/// its steps run, with an event for each change of its state. Without the feature it is
/// empty and every method compiles to nothing.
#[derive(Clone)]
pub(crate) struct InstanceSpan {
    #[cfg(feature = "tracing")]
    span: tracing::Span,
}

impl InstanceSpan {
    #[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
    pub(crate) fn new(ident: &Ident, queue: &Name) -> Self {
        InstanceSpan {
            #[cfg(feature = "tracing")]
            span: tracing::info_span!(
                "pipeline",
                name = ident.name(),
                id = ident.id(),
                queue = queue.as_str()
            ),
        }
    }

    /// The span of an instance that joined `queue`, in the state it starts in: started if
    /// `admitted`, else waiting for a slot.
    pub(crate) fn joined(ident: &Ident, queue: &Name, admitted: bool) -> Self {
        let span = InstanceSpan::new(ident, queue);
        span.state(if admitted { "started" } else { "waiting" });
        span
    }

    /// `true` if a `tracing` subscriber would record an instance's span (always `false`
    /// without the feature): an instance nobody records may run without one.
    pub(crate) fn observed() -> bool {
        #[cfg(feature = "tracing")]
        {
            tracing::enabled!(tracing::Level::INFO)
        }
        #[cfg(not(feature = "tracing"))]
        {
            false
        }
    }

    /// Enters the span until the guard is dropped.
    pub(crate) fn enter(&self) -> impl Drop + '_ {
        #[cfg(feature = "tracing")]
        {
            self.span.enter()
        }
        #[cfg(not(feature = "tracing"))]
        {
            NotTracing
        }
    }

    /// Records a change of the instance's state.
    #[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
    pub(crate) fn state(&self, state: &'static str) {
        #[cfg(feature = "tracing")]
        tracing::debug!(parent: &self.span, state, "pipeline instance {state}");
    }
}

/// The guard of [`InstanceSpan::enter`] without the `tracing` feature.
#[cfg(not(feature = "tracing"))]
struct NotTracing;

#[cfg(not(feature = "tracing"))]
impl Drop for NotTracing {
    fn drop(&mut self) {}
}
