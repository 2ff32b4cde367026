//! The interpreter: one run of a pipeline, as an explicit state machine.
//!
//! An [`Instance`] knows which section (main, `rescue!`, `finally!`) and which step it is
//! at, holds the current value, and at most one thing it waits on: a step's future or a
//! child instance. [`Instance::drive`] runs steps synchronously, inline, until one of them
//! waits on something that is not ready, or until the instance completes. Nothing is
//! spawned or boxed for steps that do not wait, which is what makes a synchronous
//! invocation allocation-free.
//!
//! Keeping the state explicit (rather than lowering the body to an `async` block) is what
//! lets the runtime run the synchronous stretch in the caller's stack, stop between steps
//! on cancellation, and jump to `rescue!` with the value from before the failing step.

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::Future;
use tokio::sync::oneshot;

use crate::cancellation::Control;
use crate::error::Error;
use crate::hooks::InstanceSpan;
use crate::ident::Ident;
use crate::introspection::InstanceState;
use crate::outcome::{Outcome, StepFuture};
use crate::pipeline::{Pipeline, StepCall};
use crate::policy::Intensity;
use crate::registry::Ending as Recorded;
use crate::runtime::{ChildStart, Core};

/// How an instance ended, as seen by its parent (or, for a root, by the runtime).
#[derive(Debug)]
pub(crate) enum Completion<V> {
    /// The last section ran to its end (or a step broke out) with this value.
    Finished(V),
    /// A step returned `BreakAll`: the parent must stop too, with this value.
    BrokeAll(V),
    /// An error that no `rescue!` handled.
    Failed(Error),
    /// The instance was cancelled; its `finally!` has run if it had started.
    Cancelled,
    /// A child was dropped by its queue, which ended this instance too.
    Dropped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    Main,
    Rescue,
    Finally,
}

/// What the instance will end with once `finally!` is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Normally,
    WithError,
    Cancelled,
    Dropped,
}

type SharedResult<V> = Result<V, Error>;

enum Waiting<V, C> {
    Nothing,
    Future(StepFuture<V, C>),
    /// The future resolved (see [`Instance::poll_waiting`]); its outcome is applied by the
    /// next [`Instance::drive`].
    Resolved(Outcome<V, C>),
    Child {
        child: Box<Instance<V, C>>,
        muted: bool,
    },
    /// A `use_existing` child: the result of an instance that was already live.
    Shared {
        receiver: oneshot::Receiver<SharedResult<V>>,
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
    id: u64,
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
    /// Retries made so far (`retry` modifier), created at the first failure.
    retries: Option<Intensity>,
    /// When the main steps must be done (`timeout` modifier), armed when it starts.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    deadline_armed: bool,
    /// The timeout fired: a cancelled child means "timed out", not "cancelled".
    timed_out: bool,
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
    /// An instance the registry has recorded; `admitted` tells whether it holds a slot.
    pub(crate) fn new(
        pipeline: Pipeline<V, C>,
        id: u64,
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
        }
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

    /// The instance will never be driven again (its task was dropped by a shutting-down
    /// tokio runtime): it ends as cancelled for the registry, children first, and callers
    /// sharing its result are told it was cancelled.
    pub(crate) fn abandon(&mut self, core: &Arc<Core<C>>) {
        if let Waiting::Child { child, .. } = &mut self.waiting {
            child.abandon(core);
        }
        if !self.recorded {
            self.recorded = true;
            core.withdraw(self.id);
            core.finish(self.id, Recorded::Cancelled, None);
        }
        drop(self.control.take_sharers());
    }

    /// Asks the instance to stop: at its next chance it drops what it waits on (children
    /// are cancelled first), runs `finally!` with [`Error::Cancelled`] and completes as
    /// cancelled. An instance already in `finally!` finishes it.
    fn request_cancel(&mut self) {
        if self.cancel.is_none() {
            self.cancel = Some(Ending::Cancelled);
        }
    }

    /// Fails the instance with an error from outside its steps (a panicking transactor):
    /// what it waits on is dropped (a waiting child is abandoned), and its error path runs
    /// at the next drive. `false` if it had already completed.
    pub(crate) fn fail_from_outside(&mut self, error: Error, core: &Arc<Core<C>>) -> bool {
        if self.completed {
            return false;
        }
        if let Waiting::Child { child, .. } = &mut self.waiting {
            child.abandon(core);
        }
        self.waiting = Waiting::Nothing;
        if self.admitted {
            self.fail(error);
        } else {
            self.fail_unstarted(error, core);
        }
        true
    }

    /// An instance still waiting for a slot fails: it leaves its queue without starting
    /// (no step, no `finally!`).
    fn fail_unstarted(&mut self, error: Error, core: &Arc<Core<C>>) {
        core.withdraw(self.id);
        self.error = Some(error);
        self.ending = Ending::WithError;
        self.completed = true;
    }

    /// Replaces what the instance waits on with `error`, as if the awaited future had
    /// failed. Used when a future cannot be waited for at all (no executor).
    pub(crate) fn fail_waiting(&mut self, error: Error, core: &Arc<Core<C>>) {
        // Nothing will wake it again: it does not wait for its children either.
        self.no_executor = true;
        if !self.admitted {
            // It cannot wait for a slot either.
            self.fail_unstarted(error, core);
            return;
        }
        match std::mem::replace(&mut self.waiting, Waiting::Nothing) {
            Waiting::Nothing | Waiting::Children | Waiting::Backoff(_) => {}
            Waiting::Future(_) | Waiting::Resolved(_) => self.fail(error),
            Waiting::Shared { muted, .. } | Waiting::SharedReady { muted, .. } => {
                self.apply_child(Completion::Failed(error), muted, core)
            }
            Waiting::Child { mut child, muted } => {
                child.fail_waiting(error, core);
                self.waiting = Waiting::Child { child, muted };
            }
        }
    }

    /// Runs steps until the instance completes or waits on something that is not ready.
    /// `cx` is the waker of whoever will poll again; a synchronous invocation passes a
    /// no-op waker and moves the instance to a task if it returns `Pending`. Once it
    /// returns `Ready`, [`Instance::into_completion`] tells how it ended.
    ///
    /// Panics of steps and futures are caught once per stretch, not once per step: the
    /// state machine is unchanged by a step that panics, so the panic is attributed to
    /// the step (or future) it was at, and the stretch goes on with the error path.
    pub(crate) fn drive(&mut self, core: &Arc<Core<C>>, cx: &mut Context<'_>) -> Poll<()> {
        let _in_step = InStep::enter();
        let span = self.span.clone();
        let _entered = span.enter();
        loop {
            match catch_unwind(AssertUnwindSafe(|| self.run(core, cx))) {
                Ok(poll) => return poll,
                Err(payload) => {
                    // A future that panicked is finished for good: drop it.
                    if matches!(self.waiting, Waiting::Future(_) | Waiting::Resolved(_)) {
                        self.waiting = Waiting::Nothing;
                    }
                    self.fail(Error::from_panic(payload));
                }
            }
        }
    }

    fn run(&mut self, core: &Arc<Core<C>>, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            if self.completed {
                self.record_end(core);
                return Poll::Ready(());
            }
            if !self.admitted {
                // A slot given counts as started (the registry said so), even if a
                // cancellation arrived before this driver ran: it then runs `finally!`.
                if self.control.is_admitted() {
                    self.admitted = true;
                    self.span.state("started");
                    continue;
                }
                if self.cancel.is_some() || self.control.is_cancelled() {
                    // Cancelled while it waited for a slot: no step and no `finally!`.
                    self.ending = self.cancel.unwrap_or(Ending::Cancelled);
                    self.completed = true;
                    continue;
                }
                self.control.register(cx.waker());
                if self.control.is_admitted() || self.control.is_cancelled() {
                    continue;
                }
                return Poll::Pending;
            }
            if self.cancel.is_none() && self.control.is_cancelled() {
                self.cancel = Some(Ending::Cancelled);
            }
            if !self.deadline_armed {
                self.arm_deadline();
            }
            // The deadline is looked at only while the instance waits on something: a
            // synchronous stretch is never interrupted, and costs one branch.
            if self.section == Section::Main
                && self.cancel.is_none()
                && !matches!(self.waiting, Waiting::Nothing | Waiting::Resolved(_))
                && !self.unpolled_future
                && self.deadline_passed(cx)
            {
                self.time_out();
                continue;
            }
            if self.cancel.is_some() && self.section != Section::Finally {
                match &mut self.waiting {
                    // Children first: the child runs its own `finally!`, then reports
                    // `Cancelled`, which cancels this instance below.
                    Waiting::Child { child, .. } => child.request_cancel(),
                    Waiting::Children => {}
                    waiting => {
                        if matches!(waiting, Waiting::Future(_)) {
                            core.hooks().cancelled_while_waiting(&self.ident);
                        }
                        // Dropping the future stops the work behind it.
                        self.waiting = Waiting::Children;
                        continue;
                    }
                }
            }
            // A future gets its first poll before the deadline is looked at: one that is
            // ready at once never suspends, so no deadline can interrupt it.
            self.unpolled_future = false;
            match &mut self.waiting {
                Waiting::Future(future) => match future.as_mut().poll(cx) {
                    Poll::Pending => {
                        self.mark_suspended(core);
                        return Poll::Pending;
                    }
                    Poll::Ready(outcome) => {
                        self.waiting = Waiting::Nothing;
                        self.mark_resumed(core);
                        self.apply(outcome, core, cx);
                    }
                },
                Waiting::Resolved(_) => {
                    if let Waiting::Resolved(outcome) =
                        std::mem::replace(&mut self.waiting, Waiting::Nothing)
                    {
                        self.mark_resumed(core);
                        self.apply(outcome, core, cx);
                    }
                }
                Waiting::Child { child, .. } => {
                    if child.drive(core, cx).is_pending() {
                        self.mark_suspended(core);
                        return Poll::Pending;
                    }
                    if let Waiting::Child { child, muted } =
                        std::mem::replace(&mut self.waiting, Waiting::Nothing)
                    {
                        self.mark_resumed(core);
                        self.apply_child(child.into_completion(), muted, core);
                    }
                }
                Waiting::Shared { receiver, .. } => match Pin::new(receiver).poll(cx) {
                    Poll::Pending => {
                        self.mark_suspended(core);
                        return Poll::Pending;
                    }
                    Poll::Ready(result) => {
                        if let Waiting::Shared { muted, .. } =
                            std::mem::replace(&mut self.waiting, Waiting::Nothing)
                        {
                            self.mark_resumed(core);
                            self.apply_shared(result.unwrap_or(Err(Error::Cancelled)), muted, core);
                        }
                    }
                },
                Waiting::SharedReady { .. } => {
                    if let Waiting::SharedReady { result, muted } =
                        std::mem::replace(&mut self.waiting, Waiting::Nothing)
                    {
                        self.mark_resumed(core);
                        self.apply_shared(result, muted, core);
                    }
                }
                Waiting::Backoff(delay) => match delay.as_mut().poll(cx) {
                    Poll::Pending => {
                        self.mark_suspended(core);
                        return Poll::Pending;
                    }
                    // Retry: the same step, with the same value.
                    Poll::Ready(()) => {
                        self.waiting = Waiting::Nothing;
                        self.mark_resumed(core);
                    }
                },
                Waiting::Children => {
                    if !self.no_executor && core.await_children(self.id) {
                        self.control.register(cx.waker());
                        if !self.control.take_children_done() {
                            return Poll::Pending;
                        }
                    } else {
                        self.waiting = Waiting::Nothing;
                        self.cancel_now();
                    }
                }
                Waiting::Nothing => self.run_next_step(core, cx),
            }
        }
    }

    fn mark_suspended(&mut self, core: &Arc<Core<C>>) {
        if !self.suspended {
            self.suspended = true;
            self.span.state("suspended");
            core.set_state(self.id, InstanceState::Suspended);
        }
    }

    fn mark_resumed(&mut self, core: &Arc<Core<C>>) {
        if self.suspended {
            self.suspended = false;
            self.span.state("resumed");
            core.set_state(self.id, InstanceState::Running);
        }
    }

    /// Polls only what the instance waits on (the innermost future), running no step.
    /// `Pending` means a [`drive`](Instance::drive) now would run no step either; the
    /// runtime uses it to open a transaction only for stretches that run steps.
    pub(crate) fn poll_waiting(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.control.register(cx.waker());
        if self.section == Section::Main && self.deadline_passed(cx) {
            return Poll::Ready(());
        }
        if !self.admitted {
            let signalled = self.control.is_admitted() || self.control.is_cancelled();
            return if signalled || self.cancel.is_some() {
                Poll::Ready(())
            } else {
                Poll::Pending
            };
        }
        let cancelling = self.cancel.is_some() || self.control.is_cancelled();
        if cancelling && self.section != Section::Finally {
            return match self.waiting {
                Waiting::Children if !self.control.take_children_done() => Poll::Pending,
                _ => Poll::Ready(()),
            };
        }
        match &mut self.waiting {
            Waiting::Future(future) => match catch_unwind(AssertUnwindSafe(|| {
                let _in_step = InStep::enter();
                future.as_mut().poll(cx)
            }))
            .map_err(Error::from_panic)
            {
                Ok(Poll::Pending) => Poll::Pending,
                Ok(Poll::Ready(outcome)) => {
                    self.waiting = Waiting::Resolved(outcome);
                    Poll::Ready(())
                }
                Err(panic) => {
                    self.waiting = Waiting::Resolved(Outcome::Error(panic));
                    Poll::Ready(())
                }
            },
            Waiting::Child { child, .. } => child.poll_waiting(cx),
            Waiting::Backoff(delay) => delay.as_mut().poll(cx),
            Waiting::Shared { receiver, .. } => match Pin::new(receiver).poll(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(result) => {
                    if let Waiting::Shared { muted, .. } = self.waiting {
                        self.waiting = Waiting::SharedReady {
                            result: result.unwrap_or(Err(Error::Cancelled)),
                            muted,
                        };
                    }
                    Poll::Ready(())
                }
            },
            Waiting::Children
            | Waiting::Nothing
            | Waiting::Resolved(_)
            | Waiting::SharedReady { .. } => Poll::Ready(()),
        }
    }

    fn run_next_step(&mut self, core: &Arc<Core<C>>, cx: &mut Context<'_>) {
        let layout = self.pipeline.layout();
        let section_len = match self.section {
            Section::Main => layout.main,
            Section::Rescue => layout.rescue.unwrap_or(0),
            Section::Finally => layout.finally.unwrap_or(0),
        };
        if self.index >= section_len {
            self.end_section();
            return;
        }
        let index = self.index;
        let value = &self.value;
        let ctx = core.context();
        let call = match self.section {
            Section::Main => StepCall::Main { index, value, ctx },
            Section::Rescue => match &self.error {
                Some(error) => StepCall::Rescue {
                    index,
                    value,
                    ctx,
                    error,
                },
                // Unreachable by construction (rescue is entered with an error); failing
                // is the panic-free answer.
                None => {
                    self.fail(Error::new(
                        "internal error: rescue! entered without an error",
                    ));
                    return;
                }
            },
            Section::Finally => StepCall::Finally {
                index,
                value,
                ctx,
                error: self.error.as_ref(),
            },
        };
        let outcome = self.pipeline.run_step(call);
        self.apply(outcome, core, cx);
    }

    fn apply(&mut self, outcome: Outcome<V, C>, core: &Arc<Core<C>>, cx: &mut Context<'_>) {
        match outcome {
            Outcome::Value(value) => {
                self.value = value;
                self.index += 1;
            }
            Outcome::Keep => self.index += 1,
            Outcome::Future(future) => {
                self.waiting = Waiting::Future(future.0);
                self.unpolled_future = true;
            }
            Outcome::Nested { pipeline, muted } => {
                match core.start_child(self.id, pipeline, self.value.clone()) {
                    // The child runs inline; it is boxed only if it has to wait.
                    ChildStart::Run(mut child) => match child.drive(core, cx) {
                        Poll::Ready(()) => self.apply_child(child.into_completion(), muted, core),
                        Poll::Pending => {
                            self.waiting = Waiting::Child {
                                child: Box::new(child),
                                muted,
                            }
                        }
                    },
                    ChildStart::Detached => self.index += 1,
                    ChildStart::Shared(receiver) => {
                        self.waiting = Waiting::Shared { receiver, muted }
                    }
                    ChildStart::Dropped => self.apply_child(Completion::Dropped, muted, core),
                    ChildStart::Refused(error) => self.fail(error),
                }
            }
            Outcome::Error(error) => self.fail(error),
            Outcome::Break(value) => {
                if let Some(value) = value {
                    self.value = value;
                }
                self.end_section();
            }
            Outcome::BreakAll(value) => {
                if let Some(value) = value {
                    self.value = value;
                }
                self.break_all = true;
                self.end_section();
            }
            Outcome::Cancel => {
                self.index += 1;
                self.request_cancel();
                // Through the registry, so the whole tree (detached children included)
                // is cancelled, as `cancel(ident)` would.
                core.cancel_id(self.id);
            }
        }
    }

    fn apply_shared(&mut self, result: SharedResult<V>, muted: bool, core: &Arc<Core<C>>) {
        let completion = match result {
            Ok(value) => Completion::Finished(value),
            Err(error) if error.is_cancelled() => Completion::Cancelled,
            Err(error) if error.is_dropped() => Completion::Dropped,
            Err(error) => Completion::Failed(error),
        };
        self.apply_child(completion, muted, core);
    }

    fn apply_child(&mut self, completion: Completion<V>, muted: bool, core: &Arc<Core<C>>) {
        match completion {
            Completion::Finished(value) => {
                if !muted {
                    self.value = value;
                }
                self.index += 1;
            }
            // `BreakAll` is explicit control flow: its value reaches the root even through
            // a muted child.
            Completion::BrokeAll(value) => {
                self.value = value;
                self.break_all = true;
                self.end_section();
            }
            Completion::Failed(error) => self.fail(error),
            // The child was cancelled because this instance timed out.
            Completion::Cancelled if self.timed_out && self.section == Section::Main => {
                self.fail(self.timeout_error())
            }
            // Cancellation climbs: a cancelled child cancels the instance waiting on it.
            Completion::Cancelled => {
                self.request_cancel();
                core.cancel_id(self.id);
            }
            // So does a child its queue dropped: this instance cannot go on without it.
            Completion::Dropped => {
                if self.section != Section::Finally {
                    self.cancel = Some(Ending::Dropped);
                }
                core.cancel_id(self.id);
            }
        }
    }

    /// Starts the clock of the `timeout` modifier, once the instance runs.
    fn arm_deadline(&mut self) {
        self.deadline_armed = true;
        if let (Some(limit), Ok(_)) = (
            self.pipeline.config().timeout,
            tokio::runtime::Handle::try_current(),
        ) {
            self.deadline = Some(Box::pin(tokio::time::sleep(limit)));
        }
    }

    fn deadline_passed(&mut self, cx: &mut Context<'_>) -> bool {
        match &mut self.deadline {
            Some(deadline) => deadline.as_mut().poll(cx).is_ready(),
            None => false,
        }
    }

    fn timeout_error(&self) -> Error {
        Error::TimedOut {
            limit: self.pipeline.config().timeout.unwrap_or_default(),
        }
    }

    /// The deadline passed while the instance waited: a waiting child is cancelled first
    /// (its completion then fails this instance), anything else is dropped and the error
    /// path runs with `Error::TimedOut`.
    fn time_out(&mut self) {
        self.timed_out = true;
        self.deadline = None;
        match &mut self.waiting {
            Waiting::Child { child, .. } => child.request_cancel(),
            _ => {
                self.waiting = Waiting::Nothing;
                self.fail(self.timeout_error());
            }
        }
    }

    /// The `retry` modifier: a failed main step is run again (same index, same value)
    /// after the policy's backoff, unless the policy gives up or a timeout fired.
    fn retry(&mut self) -> bool {
        let Some(policy) = self.pipeline.config().retry else {
            return false;
        };
        if self.timed_out || self.cancel.is_some() {
            return false;
        }
        let id = self.id;
        let retries = self
            .retries
            .get_or_insert_with(|| Intensity::new(policy, id));
        let Some(delay) = retries.restart(tokio::time::Instant::now()) else {
            return false;
        };
        if !delay.is_zero() {
            if tokio::runtime::Handle::try_current().is_err() {
                return false;
            }
            self.waiting = Waiting::Backoff(Box::pin(tokio::time::sleep(delay)));
        }
        true
    }

    /// The error path of SEMANTICS 1.2.
    fn fail(&mut self, error: Error) {
        if self.section == Section::Main && self.retry() {
            return;
        }
        match self.section {
            Section::Main if self.pipeline.layout().rescue.is_some() => {
                // `value` is still the value from before the failing step.
                self.section = Section::Rescue;
                self.index = 0;
                self.error = Some(error);
            }
            Section::Main | Section::Rescue => self.enter_finally(Some(error), Ending::WithError),
            Section::Finally => {
                self.error = Some(error);
                self.ending = Ending::WithError;
                self.completed = true;
            }
        }
    }

    fn cancel_now(&mut self) {
        match self.cancel {
            Some(Ending::Dropped) => self.enter_finally(Some(Error::Dropped), Ending::Dropped),
            _ => self.enter_finally(Some(Error::Cancelled), Ending::Cancelled),
        }
    }

    /// The current section ran out of steps, or a step broke out of it.
    fn end_section(&mut self) {
        match self.section {
            Section::Main => self.enter_finally(None, Ending::Normally),
            // The error was handled; `finally!` still sees it.
            Section::Rescue => {
                let error = self.error.take();
                self.enter_finally(error, Ending::Normally)
            }
            Section::Finally => self.completed = true,
        }
    }

    fn enter_finally(&mut self, error: Option<Error>, ending: Ending) {
        self.error = error;
        self.ending = ending;
        if self.pipeline.layout().finally.is_some() {
            self.section = Section::Finally;
            self.index = 0;
        } else {
            self.completed = true;
        }
    }

    /// The ending as the caller will see it.
    fn final_ending(&self) -> Ending {
        match (self.ending, self.cancel) {
            // A cancellation requested while `finally!` ran still ends as cancelled.
            (Ending::Normally, Some(cancel)) => cancel,
            (ending, _) => ending,
        }
    }

    /// Tells the registry how the instance ended (once), and hands the result to the
    /// callers that share it.
    ///
    /// The clones made here (the value kept for the queue's statistics, one per sharer)
    /// run user code: a panicking `Clone` is the instance's error, as a panicking step
    /// would be, and the registry still hears of the end, so the slot is freed.
    fn record_end(&mut self, core: &Arc<Core<C>>) {
        if self.recorded {
            return;
        }
        self.recorded = true;
        if matches!(self.final_ending(), Ending::Normally) {
            match catch_unwind(AssertUnwindSafe(|| self.value.clone())) {
                Ok(kept) => self.control.set_result(kept),
                Err(panic) => {
                    self.error = Some(Error::from_panic(panic));
                    self.ending = Ending::WithError;
                }
            }
        }
        let recorded = match self.final_ending() {
            Ending::Normally => Recorded::Finished,
            Ending::WithError => Recorded::Failed(self.error.clone().unwrap_or_else(missing_error)),
            Ending::Cancelled | Ending::Dropped => Recorded::Cancelled,
        };
        let result = matches!(recorded, Recorded::Finished)
            .then(|| Arc::clone(&self.control) as Arc<dyn crate::cancellation::ErasedControl>);
        if core.finish(self.id, recorded, result) {
            // A cancellation was accepted before the value arrived: it wins.
            self.cancel = Some(Ending::Cancelled);
        }
        let shared = match self.final_ending() {
            Ending::Normally => Ok(()),
            Ending::WithError => Err(self.error.clone().unwrap_or_else(missing_error)),
            Ending::Cancelled => Err(Error::Cancelled),
            Ending::Dropped => Err(Error::Dropped),
        };
        self.span.state(match &shared {
            Ok(()) => "finished",
            Err(error) if error.is_cancelled() || error.is_dropped() => "cancelled",
            Err(_) => "failed",
        });
        for sharer in self.control.take_sharers() {
            let result = match &shared {
                Ok(()) => {
                    catch_unwind(AssertUnwindSafe(|| self.value.clone())).map_err(Error::from_panic)
                }
                Err(error) => Err(error.clone()),
            };
            // A sharer that went away hands the value back; its `Drop` is user code too.
            if let Err(panic) = catch_unwind(AssertUnwindSafe(|| drop(sharer.send(result)))) {
                let error = Error::from_hook_panic("drop of a value the runtime kept", panic);
                core.hooks().report(&self.ident, &error);
            }
        }
    }

    /// How the instance ended. Meaningful once [`Instance::drive`] returned `Ready`.
    pub(crate) fn into_completion(self) -> Completion<V> {
        match self.final_ending() {
            Ending::WithError => Completion::Failed(self.error.unwrap_or_else(missing_error)),
            Ending::Cancelled => Completion::Cancelled,
            Ending::Dropped => Completion::Dropped,
            Ending::Normally if self.break_all => Completion::BrokeAll(self.value),
            Ending::Normally => Completion::Finished(self.value),
        }
    }
}

fn missing_error() -> Error {
    Error::new("internal error: failed without an error; please report this bug")
}

#[cfg(test)]
mod tests {
    //! The state machine driven directly, with hand-written step closures.

    use std::future::Future;
    use std::pin::Pin;
    use std::sync::Arc;
    use std::task::{Context, Poll};

    use crate::error::Error;
    use crate::invocation::Invocation;
    use crate::outcome::Outcome;
    use crate::pipeline::{Layout, Pipeline, Site, StepCall};
    use crate::runtime::Runtime;

    static SITE: Site = Site::new("pipeline@unit");

    /// A pipeline whose steps are given as `(section, index) -> outcome`, section being
    /// 0 main, 1 rescue, 2 finally. Each call is recorded into the context.
    fn pipeline(
        layout: Layout,
        step: impl Fn(u8, usize, i32, Option<&Error>) -> Outcome<i32, Calls> + Send + Sync + 'static,
    ) -> Pipeline<i32, Calls> {
        Pipeline::__from_steps(
            &SITE,
            layout,
            move |call: StepCall<'_, i32, Calls>| match call {
                StepCall::Main { index, value, ctx } => {
                    ctx.record(0, index, *value);
                    step(0, index, *value, None)
                }
                StepCall::Rescue {
                    index,
                    value,
                    ctx,
                    error,
                } => {
                    ctx.record(1, index, *value);
                    step(1, index, *value, Some(error))
                }
                StepCall::Finally {
                    index,
                    value,
                    ctx,
                    error,
                } => {
                    ctx.record(2, index, *value);
                    step(2, index, *value, error)
                }
            },
        )
    }

    #[derive(Default)]
    struct Calls(std::sync::Mutex<Vec<(u8, usize, i32)>>);

    impl Calls {
        fn record(&self, section: u8, index: usize, value: i32) {
            self.0.lock().unwrap().push((section, index, value));
        }
        fn take(&self) -> Vec<(u8, usize, i32)> {
            std::mem::take(&mut self.0.lock().unwrap())
        }
    }

    fn layout(main: usize, rescue: Option<usize>, finally: Option<usize>) -> Layout {
        Layout {
            main,
            rescue,
            finally,
        }
    }

    /// Invokes `pipeline` on a fresh runtime whose context records the calls.
    fn run(pipeline: &Pipeline<i32, Calls>, value: i32) -> (Runtime<Calls>, Invocation<i32>) {
        let runtime = Runtime::builder(Calls::default()).start().unwrap();
        let handle = runtime.invoke_pipeline(pipeline, value).unwrap();
        (runtime, handle)
    }

    fn finished(handle: &mut Invocation<i32>) -> i32 {
        match handle.try_result() {
            Some(Ok(value)) => value,
            other => panic!("expected a value, got {other:?}"),
        }
    }

    #[test]
    fn main_steps_thread_the_value_then_finally_runs() {
        let p = pipeline(layout(2, None, Some(1)), |section, _, value, error| {
            assert!(error.is_none());
            match section {
                0 => Outcome::Value(value + 1),
                _ => Outcome::Keep,
            }
        });
        let (runtime, mut handle) = run(&p, 0);
        assert_eq!(finished(&mut handle), 2);
        assert_eq!(runtime.context().take(), [(0, 0, 0), (0, 1, 1), (2, 0, 2)]);
    }

    #[test]
    fn an_error_jumps_to_rescue_with_the_previous_value() {
        let p = pipeline(
            layout(3, Some(1), Some(1)),
            |section, index, value, error| match (section, index) {
                (0, 1) => Outcome::Error(Error::new("boom")),
                (1, _) => {
                    assert_eq!(error.unwrap().to_string(), "step failed: boom");
                    Outcome::Value(value * 10)
                }
                (2, _) => {
                    assert!(error.is_some(), "finally sees the handled error");
                    Outcome::Keep
                }
                _ => Outcome::Value(value + 1),
            },
        );
        let (runtime, mut handle) = run(&p, 1);
        assert_eq!(finished(&mut handle), 20);
        assert_eq!(
            runtime.context().take(),
            [(0, 0, 1), (0, 1, 2), (1, 0, 2), (2, 0, 20)]
        );
    }

    #[test]
    fn without_rescue_the_error_survives_finally() {
        let p = pipeline(layout(2, None, Some(1)), |section, _, _, _| match section {
            0 => Outcome::Error(Error::new("kept")),
            _ => Outcome::Value(99),
        });
        let (runtime, mut handle) = run(&p, 0);
        let error = handle.try_result().unwrap().unwrap_err();
        assert_eq!(error.to_string(), "step failed: kept");
        assert_eq!(runtime.context().take(), [(0, 0, 0), (2, 0, 0)]);
    }

    #[test]
    fn an_error_in_finally_stops_it() {
        let p = pipeline(layout(0, None, Some(2)), |_, _, _, _| {
            Outcome::Error(Error::new("in finally"))
        });
        let (runtime, mut handle) = run(&p, 0);
        assert!(handle.try_result().unwrap().unwrap_err().is_failed());
        assert_eq!(runtime.context().take(), [(2, 0, 0)]);
    }

    /// A future that is pending once, then ready with its outcome.
    struct PendingOnce(Option<Outcome<i32, Calls>>, bool);

    impl Future for PendingOnce {
        type Output = Outcome<i32, Calls>;
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            if self.1 {
                Poll::Ready(self.0.take().unwrap_or(Outcome::Keep))
            } else {
                self.1 = true;
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_pending_future_suspends_and_resumes_at_the_next_step() {
        let p = pipeline(layout(3, None, None), |_, index, value, _| match index {
            1 => Outcome::from_future(PendingOnce(Some(Outcome::Value(value * 5)), false)),
            _ => Outcome::Value(value + 1),
        });
        let (runtime, mut handle) = run(&p, 1);
        assert!(handle.try_result().is_none(), "suspended");
        assert_eq!(runtime.context().take(), [(0, 0, 1), (0, 1, 2)]);
        assert_eq!(handle.await.unwrap(), 11);
        assert_eq!(runtime.context().take(), [(0, 2, 10)]);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn cancelling_a_waiting_instance_drops_the_future_and_runs_finally_once() {
        let dropped = Arc::new(());
        let witness = Arc::clone(&dropped);
        let p = pipeline(
            layout(2, Some(1), Some(1)),
            move |section, _, _, error| match section {
                0 => {
                    let witness = Arc::clone(&witness);
                    Outcome::from_future(async move {
                        let _witness = witness;
                        std::future::pending::<Outcome<i32, Calls>>().await
                    })
                }
                _ => {
                    assert!(error.unwrap().is_cancelled());
                    Outcome::Keep
                }
            },
        );
        let (runtime, handle) = run(&p, 0);
        assert_eq!(
            Arc::strong_count(&dropped),
            3,
            "the pipeline and the future hold it"
        );
        assert!(handle.cancel());
        assert!(handle.await.unwrap_err().is_cancelled());
        assert_eq!(Arc::strong_count(&dropped), 2, "the future was dropped");
        assert_eq!(
            runtime.context().take(),
            [(0, 0, 0), (2, 0, 0)],
            "no rescue, one finally"
        );
    }

    #[test]
    fn a_nested_child_runs_inline_and_its_cancellation_climbs() {
        let child = pipeline(layout(1, None, None), |_, _, _, _| Outcome::Cancel);
        let parent = pipeline(
            layout(2, None, Some(1)),
            move |section, index, _, _| match (section, index) {
                (0, 0) => Outcome::Nested {
                    pipeline: child.clone(),
                    muted: false,
                },
                _ => Outcome::Keep,
            },
        );
        let (runtime, mut handle) = run(&parent, 7);
        assert!(handle.try_result().unwrap().unwrap_err().is_cancelled());
        // Parent step 0, child step 0, then the parent's finally; parent step 1 never runs.
        assert_eq!(runtime.context().take(), [(0, 0, 7), (0, 0, 7), (2, 0, 7)]);
    }

    #[test]
    fn a_panicking_step_is_an_error() {
        let p = pipeline(
            layout(1, Some(1), None),
            |section, _, _, error| match section {
                0 => panic!("unit panic"),
                _ => {
                    assert!(error.unwrap().is_panic());
                    Outcome::Value(-1)
                }
            },
        );
        let (_runtime, mut handle) = run(&p, 0);
        assert_eq!(finished(&mut handle), -1);
    }
}
