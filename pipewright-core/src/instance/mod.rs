//! The interpreter: one run of a pipeline, as an explicit state machine.
//!
//! An [`Instance`] knows which section (main, `rescue!`, `finally!`) and which step it is
//! at, holds the current value, and at most one thing it waits on: a step's future or a
//! child instance. [`Instance::drive`] runs steps synchronously, inline, until one of them
//! waits on something that is not ready, or until the instance completes. Nothing is
//! spawned, and no future or child is boxed, for steps that do not wait (an instance,
//! a synchronous child included, still has its control block: `tests/allocations.rs`).
//! A root's first synchronous steps may run before it is an instance at all (`quick_steps.rs`).
//!
//! Keeping the state explicit (rather than lowering the body to an `async` block) is what
//! lets the runtime run the synchronous stretch in the caller's stack, stop between steps
//! on cancellation, and jump to `rescue!` with the value from before the failing step.
//!
//! - `mod.rs`: the instance's state ([`Instance`], what it waits on, how it ends)
//! - `drive.rs`: running steps and polling what the instance waits on
//! - `ending.rs`: how it stops: the error path, cancellation, the `timeout` and `retry`
//!   modifiers, and recording its end
//! - `port.rs`: [`Port`], all the interpreter asks of the runtime that drives it
//! - `quick_steps.rs`: a quick run's steps on the bare value, and resuming one as an instance

mod drive;
mod ending;
mod port;
mod quick_steps;
#[cfg(test)]
mod tests;

use std::cell::Cell;
use std::pin::Pin;
use std::sync::Arc;

use crate::cancel_reason::Cancellation;
use crate::continuation::Frame;
use crate::control::sharing::Sharing;
use crate::control::Control;
use crate::error::Error;
use crate::events::hooks::InstanceSpan;
use crate::ident::{Ident, Name};
use crate::outcome::{Outcome, StepFuture};
use crate::pipeline::{Pipeline, Section};
use crate::policy::Intensity;
use crate::registry::EntryRef;

pub(crate) use self::port::{ChildStart, Port};
pub(crate) use self::quick_steps::{run_quick, QuickRun, QuickStop};

/// How an instance ended, as seen by its parent (or, for a root, by the runtime).
#[derive(Debug)]
pub(crate) enum Completion<V> {
    /// The last section ran to its end (or a step broke out) with this value.
    Finished(V),
    /// A step returned `BreakAll`: the parent must stop too, with this value.
    BrokeAll(V),
    /// An error that no `rescue!` handled.
    Failed(Error),
    /// The instance was cancelled, for this reason; its `finally!` has run if it had
    /// started.
    Cancelled(Cancellation),
    /// A child was dropped by its queue, which ended this instance too.
    Dropped,
}

/// What the instance will end with once `finally!` is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Normally,
    WithError,
    Cancelled(Cancellation),
    Dropped,
}

type SharedResult<V> = Result<V, Error>;

enum Waiting<V, C> {
    Nothing,
    Future(StepFuture<V, C>),
    /// The future resolved (see [`Instance::probe`]); its outcome is applied by the
    /// next [`Instance::drive`].
    Resolved(Outcome<V, C>),
    Child {
        child: Box<Instance<V, C>>,
        muted: bool,
    },
    /// A `use_existing` child: the result of an instance that was already live.
    Shared {
        sharing: Sharing<V>,
        muted: bool,
    },
    SharedReady {
        result: SharedResult<V>,
        muted: bool,
    },
    /// Cancelled: its children must end before its `finally!` runs.
    Children,
    /// A step failed and will be retried (same index, same value) after this delay.
    Backoff(Pin<Box<tokio::time::Sleep>>),
}

pub(crate) struct Instance<V, C> {
    pipeline: Pipeline<V, C>,
    id: EntryRef,
    ident: Ident,
    control: Arc<Control<V>>,
    value: V,
    section: Section,
    index: usize,
    /// The error `rescue!` handles and `finally!` sees.
    error: Option<Error>,
    ending: Ending,
    break_all: bool,
    /// `Cancelled` or `Dropped` once the instance must stop.
    cancel: Option<Ending>,
    waiting: Waiting<V, C>,
    /// `waiting` is a future not polled yet (the deadline waits for its first poll).
    unpolled_future: bool,
    /// No executor will drive it again (there is none, or it shut down): what it waits on
    /// fails with [`Error::NoExecutor`] and it does not wait for its children.
    no_executor: bool,
    /// Holds a slot in its queue (else it waits for one).
    admitted: bool,
    suspended: bool,
    completed: bool,
    /// The registry was told how it ended.
    recorded: bool,
    span: InstanceSpan,
    /// Retries made so far (`retry` modifier), created at the first failure (boxed: most
    /// instances never retry, and an instance is moved several times).
    retries: Option<Box<Intensity>>,
    /// When the main steps must be done (`timeout` modifier), armed when it starts.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    deadline_armed: bool,
    /// The timeout fired: a cancelled child means "timed out", not "cancelled".
    timed_out: bool,
    /// Driven by its parent, which waits for it (not a root, detached child or fork).
    nested: bool,
    /// Its result does not replace its parent's value.
    muted: bool,
    /// It resumed a continuation in place: the frames of its parents, outermost last,
    /// which each parent adopts in turn when the level inside it ends.
    outer_frames: Option<Box<[Frame<V, C>]>>,
}

// The interpreter never pins anything inside an instance: futures are boxed and pinned on
// their own, and children are boxed. Moving an instance between polls is therefore sound,
// whatever `V` is.
impl<V, C> Unpin for Instance<V, C> {}

thread_local! {
    static STEP_DEPTH: Cell<usize> = const { Cell::new(0) };
}

/// `true` while the current thread runs a pipeline step (or polls a step's future).
pub(crate) fn in_step() -> bool {
    STEP_DEPTH.with(|depth| depth.get() > 0)
}

/// How many instances the current thread is driving, one inside the other: the depth of
/// the interpreter's recursion on this stack.
pub(crate) fn driving_depth() -> usize {
    STEP_DEPTH.with(Cell::get)
}

/// Marks the current thread as running step code for [`in_step`], until dropped.
struct InStep;

impl InStep {
    fn enter() -> Self {
        STEP_DEPTH.with(|depth| depth.set(depth.get() + 1));
        InStep
    }
}

impl Drop for InStep {
    fn drop(&mut self) {
        STEP_DEPTH.with(|depth| depth.set(depth.get() - 1));
    }
}

impl<V, C> Instance<V, C>
where
    V: Clone + Send + Sync + 'static,
    C: Send + Sync + 'static,
{
    /// An instance the registry has recorded in `queue`; `admitted` tells whether it
    /// holds a slot. Every route builds its instance here (a root invoked with a future,
    /// whose span began before it, with [`with_span`](Instance::with_span)).
    pub(crate) fn new(
        pipeline: Pipeline<V, C>,
        id: EntryRef,
        ident: Ident,
        control: Arc<Control<V>>,
        value: V,
        queue: &Name,
        admitted: bool,
    ) -> Self {
        let span = InstanceSpan::joined(&ident, queue, admitted);
        Instance::with_span(pipeline, id, ident, control, value, admitted, span)
    }

    /// [`new`](Instance::new), with the span it began with.
    pub(crate) fn with_span(
        pipeline: Pipeline<V, C>,
        id: EntryRef,
        ident: Ident,
        control: Arc<Control<V>>,
        value: V,
        admitted: bool,
        span: InstanceSpan,
    ) -> Self {
        Instance {
            pipeline,
            id,
            ident,
            control,
            value,
            section: Section::Main,
            index: 0,
            error: None,
            ending: Ending::Normally,
            break_all: false,
            cancel: None,
            waiting: Waiting::Nothing,
            unpolled_future: false,
            no_executor: false,
            admitted,
            suspended: false,
            completed: false,
            recorded: false,
            span,
            retries: None,
            deadline: None,
            deadline_armed: false,
            timed_out: false,
            nested: false,
            muted: false,
            outer_frames: None,
        }
    }

    /// Marks it as a child its parent drives and waits for (`muted`: as a muted child).
    pub(crate) fn set_nested(&mut self, muted: bool) {
        self.nested = true;
        self.muted = muted;
    }

    /// The argument back, from an instance that never ran a step (its value is still
    /// the argument).
    pub(crate) fn into_argument(self) -> V {
        self.value
    }

    /// Where its registry entry is.
    pub(crate) fn entry(&self) -> EntryRef {
        self.id
    }

    pub(crate) fn ident(&self) -> &Ident {
        &self.ident
    }

    pub(crate) fn control(&self) -> Arc<Control<V>> {
        Arc::clone(&self.control)
    }

    /// `true` once the instance holds a slot in its queue.
    pub(crate) fn is_admitted(&self) -> bool {
        self.admitted
    }

    /// Built to wait for a slot, but its queue had room when it joined.
    pub(crate) fn admitted_at_join(&mut self) {
        self.admitted = true;
        self.span.state("started");
    }
}
