//! Running a root's steps before it is an instance (a quick run, see `runtime/quick_run.rs`):
//! main steps that return a value, and futures ready at their first poll, run here with
//! nothing but the value; at the first thing that needs the instance (a future that
//! waits, a nested pipeline, an error, a break, a cancellation, a `finally!` to run), the
//! run stops and an [`Instance`] goes on from that step
//! ([`Instance::resume_quick`]).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::task::{Context, Poll};

use super::port::Port;
use super::{InStep, Instance, Waiting};
use crate::error::Error;
use crate::outcome::{Outcome, StepFuture};
use crate::pipeline::{Pipeline, StepCall};

/// Where a quick run stopped before the end of its main steps (or at it).
pub(crate) enum QuickStop<V, C> {
    /// A step's outcome that needs the instance: it is applied at that step.
    Outcome(Outcome<V, C>),
    /// A future that was not ready at its first poll: the instance waits on it.
    Pending(StepFuture<V, C>),
    /// The main steps are done and `finally!` is left to run.
    MainDone,
    /// A step asked the runtime about its instance (`runtime/quick_run.rs`): the run stopped
    /// after it, to go on as the instance it became.
    Asked,
}

/// How far a quick run got: the step it is at, the current value, and why it stopped
/// (`None`: it ran to its end with this value).
pub(crate) struct QuickRun<V, C> {
    pub(crate) index: usize,
    pub(crate) value: V,
    pub(crate) stop: Option<QuickStop<V, C>>,
}

/// Runs `pipeline`'s main steps on `value` until one needs the instance. A panicking step
/// or future stops the run with its error, at that step, as the instance's driver would.
/// `asked` tells, after each step, whether a step asked about the run.
pub(crate) fn run_quick<V, C>(
    pipeline: &Pipeline<V, C>,
    ctx: &Arc<C>,
    value: V,
    asked: impl Fn() -> bool,
) -> QuickRun<V, C>
where
    V: Send + 'static,
{
    let _in_step = InStep::enter();
    let mut run = QuickRun {
        index: 0,
        value,
        stop: None,
    };
    let main = pipeline.layout().main;
    let steps = catch_unwind(AssertUnwindSafe(|| {
        let mut cx = Context::from_waker(futures::task::noop_waker_ref());
        while run.index < main {
            let call = StepCall::Main {
                index: run.index,
                value: &run.value,
                ctx,
                current: None,
            };
            let outcome = match pipeline.run_step(call) {
                Outcome::Future(future) => {
                    let mut future = future.0;
                    match future.as_mut().poll(&mut cx) {
                        Poll::Ready(outcome) => outcome,
                        Poll::Pending => return Some(QuickStop::Pending(future)),
                    }
                }
                outcome => outcome,
            };
            match outcome {
                Outcome::Value(value) => run.value = value,
                Outcome::Keep => {}
                outcome => return Some(QuickStop::Outcome(outcome)),
            }
            run.index += 1;
            if asked() {
                return Some(QuickStop::Asked);
            }
        }
        pipeline
            .layout()
            .finally
            .is_some()
            .then_some(QuickStop::MainDone)
    }));
    run.stop = match steps {
        Ok(stop) => stop,
        Err(panic) => Some(QuickStop::Outcome(Outcome::Error(Error::from_panic(panic)))),
    };
    run
}

impl<V, C> Instance<V, C>
where
    V: Clone + Send + Sync + 'static,
    C: Send + Sync + 'static,
{
    /// Goes on from where a quick run stopped: at main step `index` (the instance was
    /// built with the run's value). An outcome is applied at the next drive; a pending
    /// future is waited on (the instance is suspended, and has had its first poll).
    pub(crate) fn resume_quick(
        &mut self,
        index: usize,
        stop: QuickStop<V, C>,
        core: &impl Port<C>,
    ) {
        self.index = index;
        match stop {
            QuickStop::Outcome(outcome) => self.waiting = Waiting::Resolved(outcome),
            QuickStop::Pending(future) => {
                self.waiting = Waiting::Future(future);
                self.arm_deadline();
                self.mark_suspended(core);
            }
            QuickStop::MainDone | QuickStop::Asked => {}
        }
    }
}
