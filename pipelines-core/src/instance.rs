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
use std::task::{Context, Poll};

use crate::error::Error;
use crate::outcome::{Outcome, StepFuture};
use crate::pipeline::{Pipeline, StepCall};

/// How an instance ended, as seen by its parent (or, for a root, by the runtime).
#[derive(Debug)]
pub(crate) enum Completion<V> {
    /// The last section ran to its end (or a step broke out) with this value.
    Finished(V),
    /// A step returned `BreakAll`: the parent must stop too, with this value.
    BrokeAll(V),
    /// An error that no `rescue!` handled.
    Failed(Error),
    /// The instance was cancelled; its `finally!` has run.
    Cancelled,
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
}

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
}

pub(crate) struct Instance<V, C> {
    pipeline: Pipeline<V, C>,
    value: V,
    section: Section,
    index: usize,
    /// The error `rescue!` handles and `finally!` sees.
    error: Option<Error>,
    ending: Ending,
    break_all: bool,
    cancel_requested: bool,
    waiting: Waiting<V, C>,
    completed: bool,
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

impl<V: Clone, C> Instance<V, C> {
    pub(crate) fn new(pipeline: Pipeline<V, C>, value: V) -> Self {
        Instance {
            pipeline,
            value,
            section: Section::Main,
            index: 0,
            error: None,
            ending: Ending::Normally,
            break_all: false,
            cancel_requested: false,
            waiting: Waiting::Nothing,
            completed: false,
        }
    }

    /// Asks the instance to stop: at its next chance it drops what it waits on (children
    /// are cancelled first), runs `finally!` with [`Error::Cancelled`] and completes as
    /// cancelled. An instance already in `finally!` finishes it.
    pub(crate) fn request_cancel(&mut self) {
        self.cancel_requested = true;
    }

    /// Replaces what the instance waits on with `error`, as if the awaited future had
    /// failed. Used when a future cannot be waited for at all (no executor).
    pub(crate) fn fail_waiting(&mut self, error: Error) {
        match std::mem::replace(&mut self.waiting, Waiting::Nothing) {
            Waiting::Nothing => {}
            Waiting::Future(_) | Waiting::Resolved(_) => self.fail(error),
            Waiting::Child { mut child, muted } => {
                child.fail_waiting(error);
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
    pub(crate) fn drive(&mut self, ctx: &C, cx: &mut Context<'_>) -> Poll<()> {
        let _in_step = InStep::enter();
        loop {
            match catch_unwind(AssertUnwindSafe(|| self.run(ctx, cx))) {
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

    fn run(&mut self, ctx: &C, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            if self.completed {
                return Poll::Ready(());
            }
            if self.cancel_requested && self.section != Section::Finally {
                match &mut self.waiting {
                    // Children first: the child runs its own `finally!`, then reports
                    // `Cancelled`, which cancels this instance below.
                    Waiting::Child { child, .. } => child.request_cancel(),
                    Waiting::Future(_) | Waiting::Resolved(_) | Waiting::Nothing => {
                        // Dropping the future stops the work behind it.
                        self.waiting = Waiting::Nothing;
                        self.cancel_now();
                        continue;
                    }
                }
            }
            match &mut self.waiting {
                Waiting::Future(future) => match future.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(outcome) => {
                        self.waiting = Waiting::Nothing;
                        self.apply(outcome, ctx, cx);
                    }
                },
                Waiting::Resolved(_) => {
                    if let Waiting::Resolved(outcome) =
                        std::mem::replace(&mut self.waiting, Waiting::Nothing)
                    {
                        self.apply(outcome, ctx, cx);
                    }
                }
                Waiting::Child { child, .. } => {
                    if child.drive(ctx, cx).is_pending() {
                        return Poll::Pending;
                    }
                    if let Waiting::Child { child, muted } =
                        std::mem::replace(&mut self.waiting, Waiting::Nothing)
                    {
                        self.apply_child(child.into_completion(), muted);
                    }
                }
                Waiting::Nothing => self.run_next_step(ctx, cx),
            }
        }
    }

    /// Polls only what the instance waits on (the innermost future), running no step.
    /// `Pending` means a [`drive`](Instance::drive) now would run no step either; the
    /// runtime uses it to open a transaction only for stretches that run steps.
    pub(crate) fn poll_waiting(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.cancel_requested && self.section != Section::Finally {
            return Poll::Ready(());
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
            Waiting::Nothing | Waiting::Resolved(_) => Poll::Ready(()),
        }
    }

    fn run_next_step(&mut self, ctx: &C, cx: &mut Context<'_>) {
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
        self.apply(outcome, ctx, cx);
    }

    fn apply(&mut self, outcome: Outcome<V, C>, ctx: &C, cx: &mut Context<'_>) {
        match outcome {
            Outcome::Value(value) => {
                self.value = value;
                self.index += 1;
            }
            Outcome::Keep => self.index += 1,
            Outcome::Future(future) => self.waiting = Waiting::Future(future.0),
            Outcome::Nested { pipeline, muted } => {
                // The child runs inline; it is boxed only if it has to wait.
                let mut child = Instance::new(pipeline, self.value.clone());
                match child.drive(ctx, cx) {
                    Poll::Ready(()) => self.apply_child(child.into_completion(), muted),
                    Poll::Pending => {
                        self.waiting = Waiting::Child {
                            child: Box::new(child),
                            muted,
                        }
                    }
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
            }
        }
    }

    fn apply_child(&mut self, completion: Completion<V>, muted: bool) {
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
            // Cancellation climbs: a cancelled child cancels the instance waiting on it.
            Completion::Cancelled => self.request_cancel(),
        }
    }

    /// The error path of SEMANTICS 1.2.
    fn fail(&mut self, error: Error) {
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
        self.enter_finally(Some(Error::Cancelled), Ending::Cancelled);
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

    /// How the instance ended. Meaningful once [`Instance::drive`] returned `Ready`.
    pub(crate) fn into_completion(self) -> Completion<V> {
        match self.ending {
            Ending::WithError => Completion::Failed(
                self.error
                    .unwrap_or_else(|| Error::new("internal error: failed without an error")),
            ),
            Ending::Cancelled => Completion::Cancelled,
            // A cancellation requested while `finally!` ran still ends as cancelled.
            Ending::Normally if self.cancel_requested => Completion::Cancelled,
            Ending::Normally if self.break_all => Completion::BrokeAll(self.value),
            Ending::Normally => Completion::Finished(self.value),
        }
    }
}

#[cfg(test)]
mod tests {
    //! The state machine driven directly, with hand-written step closures.

    use std::future::Future;
    use std::pin::Pin;
    use std::sync::Arc;
    use std::task::{Context, Poll};

    use super::{Completion, Instance};
    use crate::error::Error;
    use crate::outcome::Outcome;
    use crate::pipeline::{Layout, Pipeline, Site, StepCall};

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

    fn run(
        pipeline: &Pipeline<i32, Calls>,
        value: i32,
        calls: &Calls,
    ) -> (Poll<()>, Instance<i32, Calls>) {
        let mut instance = Instance::new(pipeline.clone(), value);
        let mut cx = Context::from_waker(futures::task::noop_waker_ref());
        (instance.drive(calls, &mut cx), instance)
    }

    fn finished(completion: Completion<i32>) -> i32 {
        match completion {
            Completion::Finished(value) => value,
            other => panic!("expected Finished, got {other:?}"),
        }
    }

    #[test]
    fn main_steps_thread_the_value_then_finally_runs() {
        let calls = Calls::default();
        let p = pipeline(layout(2, None, Some(1)), |section, _, value, error| {
            assert!(error.is_none());
            match section {
                0 => Outcome::Value(value + 1),
                _ => Outcome::Keep,
            }
        });
        let (poll, instance) = run(&p, 0, &calls);
        assert!(poll.is_ready());
        assert_eq!(finished(instance.into_completion()), 2);
        assert_eq!(calls.take(), [(0, 0, 0), (0, 1, 1), (2, 0, 2)]);
    }

    #[test]
    fn an_error_jumps_to_rescue_with_the_previous_value() {
        let calls = Calls::default();
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
        let (_, instance) = run(&p, 1, &calls);
        assert_eq!(finished(instance.into_completion()), 20);
        assert_eq!(calls.take(), [(0, 0, 1), (0, 1, 2), (1, 0, 2), (2, 0, 20)]);
    }

    #[test]
    fn without_rescue_the_error_survives_finally() {
        let calls = Calls::default();
        let p = pipeline(layout(2, None, Some(1)), |section, _, _, _| match section {
            0 => Outcome::Error(Error::new("kept")),
            _ => Outcome::Value(99),
        });
        let (_, instance) = run(&p, 0, &calls);
        match instance.into_completion() {
            Completion::Failed(error) => assert_eq!(error.to_string(), "step failed: kept"),
            other => panic!("expected Failed, got {other:?}"),
        }
        assert_eq!(calls.take(), [(0, 0, 0), (2, 0, 0)]);
    }

    #[test]
    fn an_error_in_finally_stops_it() {
        let calls = Calls::default();
        let p = pipeline(layout(0, None, Some(2)), |_, _, _, _| {
            Outcome::Error(Error::new("in finally"))
        });
        let (_, instance) = run(&p, 0, &calls);
        assert!(matches!(instance.into_completion(), Completion::Failed(_)));
        assert_eq!(calls.take(), [(2, 0, 0)]);
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

    #[test]
    fn a_pending_future_suspends_and_resumes_at_the_next_step() {
        let calls = Calls::default();
        let p = pipeline(layout(3, None, None), |_, index, value, _| match index {
            1 => Outcome::from_future(PendingOnce(Some(Outcome::Value(value * 5)), false)),
            _ => Outcome::Value(value + 1),
        });
        let (poll, mut instance) = run(&p, 1, &calls);
        assert!(poll.is_pending());
        assert_eq!(calls.take(), [(0, 0, 1), (0, 1, 2)]);
        let mut cx = Context::from_waker(futures::task::noop_waker_ref());
        assert!(instance.poll_waiting(&mut cx).is_ready());
        assert!(instance.drive(&calls, &mut cx).is_ready());
        assert_eq!(finished(instance.into_completion()), 11);
        assert_eq!(calls.take(), [(0, 2, 10)]);
    }

    #[test]
    fn cancelling_a_waiting_instance_drops_the_future_and_runs_finally_once() {
        let calls = Calls::default();
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
        let (poll, mut instance) = run(&p, 0, &calls);
        assert!(poll.is_pending());
        assert_eq!(
            Arc::strong_count(&dropped),
            3,
            "the pipeline and the future hold it"
        );
        instance.request_cancel();
        let mut cx = Context::from_waker(futures::task::noop_waker_ref());
        assert!(instance.drive(&calls, &mut cx).is_ready());
        assert_eq!(Arc::strong_count(&dropped), 2, "the future was dropped");
        assert!(matches!(instance.into_completion(), Completion::Cancelled));
        assert_eq!(
            calls.take(),
            [(0, 0, 0), (2, 0, 0)],
            "no rescue, one finally"
        );
    }

    #[test]
    fn a_nested_child_runs_inline_and_its_cancellation_climbs() {
        let calls = Calls::default();
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
        let (poll, instance) = run(&parent, 7, &calls);
        assert!(poll.is_ready());
        assert!(matches!(instance.into_completion(), Completion::Cancelled));
        // Parent step 0, child step 0, then the parent's finally; parent step 1 never runs.
        assert_eq!(calls.take(), [(0, 0, 7), (0, 0, 7), (2, 0, 7)]);
    }

    #[test]
    fn a_panicking_step_is_an_error() {
        let calls = Calls::default();
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
        let (_, instance) = run(&p, 0, &calls);
        assert_eq!(finished(instance.into_completion()), -1);
    }
}
