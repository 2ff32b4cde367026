//! Driving an instance: running its steps inline and polling what it waits on.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::task::{Context, Poll};

use futures::Future;

use super::port::{ChildStart, Port};
use super::{Completion, Ending, InStep, Instance, SharedResult, Waiting};
use crate::cancel_reason::{CancelReason, Cancellation};
use crate::continuation::{Continuation, Frame};
use crate::error::Error;
use crate::introspection::InstanceState;
use crate::outcome::Outcome;
use crate::pipeline::{Pipeline, Section, StepCall};
use crate::runtime::FrameView;

/// Where an instance stands, for a step it runs or a child it drives: its fields are
/// borrowed one by one (a macro, not a method), so a child it holds in `waiting` can be
/// driven while the view is lent.
macro_rules! here {
    ($instance:ident, $outer:expr) => {
        FrameView {
            pipeline: &$instance.pipeline,
            section: $instance.section,
            index: $instance.index,
            value: &$instance.value,
            error: $instance.error.as_ref(),
            ident: &$instance.ident,
            muted: $instance.muted,
            outer: $outer,
        }
    };
}

/// How far a walk over an instance's state goes (see [`Instance::probe`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Walk {
    /// Everything: steps, outcomes, the error path, the end.
    Run,
    /// Up to the first thing that changes the instance's course or runs user code.
    Probe,
}

impl<V, C> Instance<V, C>
where
    V: Clone + Send + Sync + 'static,
    C: Send + Sync + 'static,
{
    /// Runs steps until the instance completes or waits on something that is not ready.
    /// `cx` is the waker of whoever will poll again; a synchronous invocation passes a
    /// no-op waker and moves the instance to a task if it returns `Pending`. Once it
    /// returns `Ready`, [`Instance::into_completion`] tells how it ended.
    ///
    /// Panics of steps and futures are caught once per stretch, not once per step: the
    /// state machine is unchanged by a step that panics, so the panic is attributed to
    /// the step (or future) it was at, and the stretch goes on with the error path.
    ///
    /// `outer` is where the parent that drives it stands (`None` for an instance nobody
    /// drives: a root, a detached child, a fork), lent to steps that see their instance.
    pub(crate) fn drive(
        &mut self,
        core: &impl Port<C>,
        cx: &mut Context<'_>,
        outer: Option<&FrameView<'_, V, C>>,
    ) -> Poll<()> {
        self.walk(core, cx, outer, Walk::Run)
    }

    /// Polls only what the instance waits on (the innermost future), running no user
    /// code: `Pending` means a [`drive`](Instance::drive) now would run no step either.
    /// The runtime uses it to open a transaction only for stretches that run steps. It
    /// is the same walk as `drive`, stopped where `drive` would go on.
    pub(crate) fn probe(&mut self, core: &impl Port<C>, cx: &mut Context<'_>) -> Poll<()> {
        self.walk(core, cx, None, Walk::Probe)
    }

    fn walk(
        &mut self,
        core: &impl Port<C>,
        cx: &mut Context<'_>,
        outer: Option<&FrameView<'_, V, C>>,
        walk: Walk,
    ) -> Poll<()> {
        let _in_step = InStep::enter();
        let span = self.span.clone();
        let _entered = span.enter();
        loop {
            match catch_unwind(AssertUnwindSafe(|| self.run(core, cx, outer, walk))) {
                Ok(poll) => return poll,
                Err(payload) => {
                    let error = Error::from_panic(payload);
                    // A future that panicked is finished for good: it is dropped here.
                    let future_panicked =
                        matches!(self.waiting, Waiting::Future(_) | Waiting::Resolved(_));
                    if future_panicked && walk == Walk::Probe {
                        // The error path may run user code (a `retry_if` predicate):
                        // left to `drive`, as the future's outcome.
                        self.waiting = Waiting::Resolved(Outcome::Error(error));
                        return Poll::Ready(());
                    }
                    if future_panicked {
                        self.waiting = Waiting::Nothing;
                    }
                    self.fail(error);
                }
            }
        }
    }

    /// The one walk over the instance's state. `Walk::Probe` returns `Ready` wherever
    /// `Walk::Run` would change the instance's course or run user code.
    fn run(
        &mut self,
        core: &impl Port<C>,
        cx: &mut Context<'_>,
        outer: Option<&FrameView<'_, V, C>>,
        walk: Walk,
    ) -> Poll<()> {
        let probe = walk == Walk::Probe;
        loop {
            if self.completed {
                if probe {
                    return Poll::Ready(());
                }
                self.record_end(core);
                return Poll::Ready(());
            }
            if !self.admitted {
                // A slot given counts as started (the registry said so), even if a
                // cancellation arrived before this driver ran: it then runs `finally!`.
                let signalled = self.control.is_admitted()
                    || self.cancel.is_some()
                    || self.control.is_cancelled();
                if signalled && probe {
                    return Poll::Ready(());
                }
                if self.control.is_admitted() {
                    self.admitted = true;
                    self.span.state("started");
                    continue;
                }
                if signalled {
                    // Cancelled while it waited for a slot: no step and no `finally!`.
                    self.ending = self
                        .cancel
                        .unwrap_or_else(|| Ending::Cancelled(self.control.cancellation()));
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
                self.cancel = Some(Ending::Cancelled(self.control.cancellation()));
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
                if probe {
                    return Poll::Ready(());
                }
                self.time_out(core);
                continue;
            }
            if self.cancel.is_some() && self.section != Section::Finally {
                match &mut self.waiting {
                    Waiting::Children => {}
                    _ if probe => return Poll::Ready(()),
                    // Children first: the child runs its own `finally!`, then reports
                    // `Cancelled`, which cancels this instance below.
                    Waiting::Child { child, .. } => {
                        let reason = match self.cancel {
                            Some(Ending::Cancelled(cause)) => cause.reason,
                            _ => CancelReason::ChildDropped,
                        };
                        child.request_cancel(Cancellation::by_parent(reason))
                    }
                    waiting => {
                        if matches!(waiting, Waiting::Future(_)) {
                            core.cancelled_while_waiting(&self.ident);
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
                    Poll::Pending if self.suspend(core, cx) => return Poll::Pending,
                    Poll::Pending => {}
                    Poll::Ready(outcome) if probe => {
                        self.waiting = Waiting::Resolved(outcome);
                        return Poll::Ready(());
                    }
                    Poll::Ready(outcome) => {
                        self.waiting = Waiting::Nothing;
                        self.mark_resumed(core);
                        self.apply(outcome, core, cx, outer);
                    }
                },
                Waiting::Resolved(_) if probe => return Poll::Ready(()),
                Waiting::Resolved(_) => {
                    if let Waiting::Resolved(outcome) =
                        std::mem::replace(&mut self.waiting, Waiting::Nothing)
                    {
                        self.mark_resumed(core);
                        self.apply(outcome, core, cx, outer);
                    }
                }
                Waiting::Child { child, .. } => {
                    let polled = if probe {
                        child.probe(core, cx)
                    } else {
                        let here = here!(self, outer);
                        child.drive(core, cx, Some(&here))
                    };
                    if polled.is_pending() {
                        if self.suspend(core, cx) {
                            return Poll::Pending;
                        }
                        continue;
                    }
                    if probe {
                        return Poll::Ready(());
                    }
                    if let Waiting::Child { child, muted } =
                        std::mem::replace(&mut self.waiting, Waiting::Nothing)
                    {
                        self.mark_resumed(core);
                        self.child_ended(*child, muted, core);
                    }
                }
                Waiting::Shared { sharing, .. } => match sharing.poll_result(cx) {
                    Poll::Pending if self.suspend(core, cx) => return Poll::Pending,
                    Poll::Pending => {}
                    Poll::Ready(result) => {
                        if let Waiting::Shared { muted, .. } = self.waiting {
                            self.waiting = Waiting::SharedReady { result, muted };
                        }
                    }
                },
                Waiting::SharedReady { .. } if probe => return Poll::Ready(()),
                Waiting::SharedReady { .. } => {
                    if let Waiting::SharedReady { result, muted } =
                        std::mem::replace(&mut self.waiting, Waiting::Nothing)
                    {
                        self.mark_resumed(core);
                        self.apply_shared(result, muted, core);
                    }
                }
                Waiting::Backoff(delay) => match delay.as_mut().poll(cx) {
                    Poll::Pending if self.suspend(core, cx) => return Poll::Pending,
                    Poll::Pending => {}
                    // The step runs again (see below), and a slept sleep stays ready.
                    Poll::Ready(()) if probe => return Poll::Ready(()),
                    // Retry: the same step, with the same value.
                    Poll::Ready(()) => {
                        self.waiting = Waiting::Nothing;
                        self.mark_resumed(core);
                    }
                },
                Waiting::Children if probe => {
                    self.control.register(cx.waker());
                    let cancelling = self.cancel.is_some() && self.section != Section::Finally;
                    if cancelling && !self.control.take_children_done() {
                        return Poll::Pending;
                    }
                    return Poll::Ready(());
                }
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
                Waiting::Nothing if probe => return Poll::Ready(()),
                Waiting::Nothing => self.run_next_step(core, cx, outer),
            }
        }
    }

    /// Before returning `Pending`: a cancellation must wake whoever polls (the control
    /// block's waker). `false` if one arrived meanwhile, so the walk goes on instead.
    fn suspend(&mut self, core: &impl Port<C>, cx: &mut Context<'_>) -> bool {
        self.control.register(cx.waker());
        if self.cancel.is_none() && self.control.is_cancelled() {
            return false;
        }
        self.mark_suspended(core);
        true
    }

    pub(super) fn mark_suspended(&mut self, core: &impl Port<C>) {
        if !self.suspended {
            self.suspended = true;
            self.span.state("suspended");
            self.control.set_suspended(true);
            core.set_state(self.id, InstanceState::Suspended);
        }
    }

    fn mark_resumed(&mut self, core: &impl Port<C>) {
        if self.suspended {
            self.suspended = false;
            self.span.state("resumed");
            self.control.set_suspended(false);
            core.set_state(self.id, InstanceState::Running);
        }
    }

    fn run_next_step(
        &mut self,
        core: &impl Port<C>,
        cx: &mut Context<'_>,
        outer: Option<&FrameView<'_, V, C>>,
    ) {
        let layout = self.pipeline.layout();
        if self.index >= layout.len(self.section) {
            self.end_section();
            return;
        }
        let index = self.index;
        let value = &self.value;
        let ctx = core.context();
        let here = here!(self, outer);
        let current = if layout.current {
            core.current(self.id, &here)
        } else {
            None
        };
        let current = current.as_ref();
        let call = match self.section {
            Section::Main => StepCall::Main {
                index,
                value,
                ctx,
                current,
            },
            Section::Rescue => match &self.error {
                Some(error) => StepCall::Rescue {
                    index,
                    value,
                    ctx,
                    error,
                    current,
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
                current,
            },
        };
        let outcome = self.pipeline.run_step(call);
        self.apply(outcome, core, cx, outer);
    }

    fn apply(
        &mut self,
        outcome: Outcome<V, C>,
        core: &impl Port<C>,
        cx: &mut Context<'_>,
        outer: Option<&FrameView<'_, V, C>>,
    ) {
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
                    ChildStart::Run(mut child) => {
                        child.set_nested(muted);
                        let here = here!(self, outer);
                        let polled = child.drive(core, cx, Some(&here));
                        match polled {
                            Poll::Ready(()) => self.child_ended(child, muted, core),
                            Poll::Pending => {
                                self.waiting = Waiting::Child {
                                    child: Box::new(child),
                                    muted,
                                }
                            }
                        }
                    }
                    ChildStart::Detached => self.index += 1,
                    ChildStart::Shared(sharing) => {
                        self.waiting = Waiting::Shared { sharing, muted }
                    }
                    ChildStart::Dropped => self.apply_child(Completion::Dropped, muted, core),
                    ChildStart::Refused(error) => self.fail(error),
                }
            }
            // A step that reports a refusal of its own (an admission outside this
            // runtime, such as a fleet-wide queue's) ends the instance as dropped, the way
            // a nested child its queue dropped does: no `rescue!`, never reported.
            Outcome::Error(error) if error.is_dropped() && self.section != Section::Finally => {
                self.apply_child(Completion::Dropped, false, core)
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
            Outcome::Cancel(reason) => {
                self.index += 1;
                self.request_cancel(Cancellation::direct(reason));
                // Through the registry, so the whole tree (detached children included)
                // is cancelled, as `cancel(ident)` would.
                core.cancel(self.id, reason);
            }
            // `finally!` runs once per started instance: going back from it would run
            // it again.
            Outcome::Resume(_) if self.section == Section::Finally => {
                self.fail(Error::ResumedInFinally)
            }
            Outcome::Resume(continuation) => self.resume(*continuation),
        }
    }

    /// A step returned a continuation ([SEMANTICS 2.1]). One captured along this
    /// instance's own chain is resumed *in place*: this instance adopts its frame (the
    /// rest of its pipeline as the continuation has it) and goes on, and each parent
    /// adopts its own frame when the level inside it ends. No level ends early, so each
    /// keeps its slot and runs its `finally!` once. A continuation captured elsewhere
    /// runs as a child in place of this pipeline's remaining main steps.
    ///
    /// [SEMANTICS 2.1]: crate::semantics#21-a-steps-view-of-its-instance-and-continuations
    fn resume(&mut self, continuation: Continuation<V, C>) {
        if continuation.innermost().ident() == &self.ident {
            let (innermost, outer) = continuation.into_frames();
            let (value, pipeline) = innermost.into_parts();
            self.adopt(pipeline, value);
            self.outer_frames = (!outer.is_empty()).then(|| outer.into_boxed_slice());
            return;
        }
        let (value, pipeline) = continuation.into_start();
        let instead = Frame::replacing_the_rest(
            self.ident.clone(),
            value,
            &self.pipeline,
            self.section,
            self.error.clone(),
            pipeline,
        );
        let (value, pipeline) = instead.into_parts();
        self.adopt(pipeline, value);
    }

    /// Goes on with `pipeline` (a frame's remaining steps) from `value`.
    fn adopt(&mut self, pipeline: Pipeline<V, C>, value: V) {
        self.pipeline = pipeline;
        self.value = value;
        self.section = Section::Main;
        self.index = 0;
        self.error = None;
        self.ending = Ending::Normally;
        self.break_all = false;
    }

    /// A nested child it waited for has ended. If the child resumed a continuation that
    /// holds this instance's frame, this instance adopts it (with the child's result as
    /// its value, unless the child ran muted) and passes the frames further out on.
    fn child_ended(&mut self, mut child: Instance<V, C>, muted: bool, core: &impl Port<C>) {
        let frames = child.outer_frames.take();
        match (frames, child.into_completion()) {
            // A child nested in `finally!` resumed this level's frame: as if a step of
            // `finally!` had (see `apply`).
            (Some(frames), Completion::Finished(_))
                if self.section == Section::Finally
                    && frames
                        .first()
                        .is_some_and(|frame| frame.ident() == &self.ident) =>
            {
                self.fail(Error::ResumedInFinally)
            }
            (Some(frames), Completion::Finished(result))
                if frames
                    .first()
                    .is_some_and(|frame| frame.ident() == &self.ident) =>
            {
                let mut frames = frames.into_vec();
                let mine = frames.remove(0);
                let (value, pipeline) = mine.into_parts();
                self.adopt(pipeline, if muted { value } else { result });
                self.outer_frames = (!frames.is_empty()).then(|| frames.into_boxed_slice());
            }
            (_, completion) => self.apply_child(completion, muted, core),
        }
    }

    fn apply_shared(&mut self, result: SharedResult<V>, muted: bool, core: &impl Port<C>) {
        let completion = match result {
            Ok(value) => Completion::Finished(value),
            Err(Error::Cancelled { reason, by_parent }) => {
                Completion::Cancelled(Cancellation { reason, by_parent })
            }
            Err(error) if error.is_dropped() => Completion::Dropped,
            Err(error) => Completion::Failed(error),
        };
        self.apply_child(completion, muted, core);
    }

    pub(super) fn apply_child(
        &mut self,
        completion: Completion<V>,
        muted: bool,
        core: &impl Port<C>,
    ) {
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
            Completion::Cancelled(_) if self.timed_out && self.section == Section::Main => {
                self.fail(self.timeout_error())
            }
            // Cancellation climbs: a cancelled child cancels the instance waiting on it.
            // The path it climbs keeps the child's reason (`cancel_reason.rs`).
            Completion::Cancelled(cause) => {
                self.request_cancel(Cancellation::direct(cause.reason));
                core.cancel(self.id, cause.reason);
            }
            // So does a child its queue dropped: this instance cannot go on without it.
            Completion::Dropped => {
                if self.section != Section::Finally {
                    self.cancel = Some(Ending::Dropped);
                }
                core.cancel(self.id, CancelReason::ChildDropped);
            }
        }
    }
}
