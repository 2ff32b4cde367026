//! How an instance stops: cancellation and failures from outside its steps, the error
//! path of [SEMANTICS 1.2], the `timeout` and `retry` modifiers, and telling the registry
//! (and the callers sharing its result) how it ended.
//!
//! [SEMANTICS 1.2]: crate::semantics#12-errors-rescue-and-finally

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::task::Context;

use futures::Future;

use super::port::Port;
use super::{Completion, Ending, Instance, Waiting};
use crate::cancel_reason::{CancelReason, Cancellation};
use crate::control::sharing::SharedEnd;
use crate::error::Error;
use crate::pipeline::Section;
use crate::policy::Intensity;
use crate::registry::Recorded;

impl<V, C> Instance<V, C>
where
    V: Clone + Send + Sync + 'static,
    C: Send + Sync + 'static,
{
    /// The instance will never be driven again (its parent failed from outside, see
    /// [`fail_from_outside`](Instance::fail_from_outside)): it ends as cancelled for the
    /// registry, children first, and callers sharing its result are told it was cancelled.
    fn abandon(&mut self, core: &impl Port<C>) {
        if let Waiting::Child { child, .. } = &mut self.waiting {
            child.abandon(core);
        }
        if !self.recorded {
            self.recorded = true;
            core.withdraw(self.id);
            // Its parent failed from outside: it ended.
            let cause = Cancellation::by_parent(CancelReason::ParentEnded);
            core.finish(self.id, Recorded::Cancelled(cause), None);
        }
        self.control.end_sharing(|| {
            SharedEnd::Cancelled(Cancellation::by_parent(CancelReason::ParentEnded))
        });
    }

    /// Asks the instance to stop: at its next chance it drops what it waits on (children
    /// are cancelled first), runs `finally!` with [`Error::Cancelled`] and completes as
    /// cancelled. An instance already in `finally!` finishes it. The reason is the one
    /// the registry gave it, if it was marked already (the reason is kept under the
    /// registry's lock, before the flag is raised), else `reason`.
    pub(super) fn request_cancel(&mut self, reason: Cancellation) {
        if self.cancel.is_none() {
            self.cancel = Some(Ending::Cancelled(self.control.cancelled_because(reason)));
        }
    }

    /// Fails the instance with an error from outside its steps (a panicking transactor):
    /// what it waits on is dropped (a waiting child is abandoned), and its error path runs
    /// at the next drive. `false` if it had already completed.
    pub(crate) fn fail_from_outside(&mut self, error: Error, core: &impl Port<C>) -> bool {
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
    fn fail_unstarted(&mut self, error: Error, core: &impl Port<C>) {
        core.withdraw(self.id);
        self.error = Some(error);
        self.ending = Ending::WithError;
        self.completed = true;
    }

    /// Replaces what the instance waits on with `error`, as if the awaited future had
    /// failed. Used when a future cannot be waited for at all (no executor).
    pub(crate) fn fail_waiting(&mut self, error: Error, core: &impl Port<C>) {
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
    /// Starts the clock of the `timeout` modifier, once the instance runs.
    pub(super) fn arm_deadline(&mut self) {
        self.deadline_armed = true;
        if let (Some(limit), Ok(_)) = (
            self.pipeline.config().timeout,
            tokio::runtime::Handle::try_current(),
        ) {
            self.deadline = Some(Box::pin(tokio::time::sleep(limit)));
        }
    }

    pub(super) fn deadline_passed(&mut self, cx: &mut Context<'_>) -> bool {
        match &mut self.deadline {
            Some(deadline) => deadline.as_mut().poll(cx).is_ready(),
            None => false,
        }
    }

    pub(super) fn timeout_error(&self) -> Error {
        Error::TimedOut {
            limit: self.pipeline.config().timeout.unwrap_or_default(),
        }
    }

    /// The deadline passed while the instance waited: a waiting child is cancelled first
    /// (its completion then fails this instance), anything else is dropped and the error
    /// path runs with `Error::TimedOut`. The child's tree is cancelled through the
    /// registry without climbing (this instance fails, it is not cancelled), so it gives
    /// up its slot at once and the watcher is told, as for any cancellation.
    pub(super) fn time_out(&mut self, core: &impl Port<C>) {
        self.timed_out = true;
        self.deadline = None;
        match &mut self.waiting {
            Waiting::Child { child, .. } => {
                let cause = Cancellation::by_parent(CancelReason::TimedOut);
                child.request_cancel(cause);
                core.cancel_below(child.id, cause);
            }
            _ => {
                self.waiting = Waiting::Nothing;
                self.fail(self.timeout_error());
            }
        }
    }

    /// The `retry` modifier: a failed main step is run again (same index, same value)
    /// after the policy's backoff, unless the error is not one to retry (a panic without
    /// `retry_panics`, one the `retry_if` predicate refuses), the policy gives up or a
    /// timeout fired. A panicking predicate replaces `error` with its panic.
    fn retry(&mut self, error: &mut Error) -> bool {
        let config = self.pipeline.config();
        let Some(retry) = &config.retry else {
            return false;
        };
        if self.timed_out || self.cancel.is_some() {
            return false;
        }
        match retry.accepts(error, config.retry_panics) {
            Ok(true) => {}
            Ok(false) => return false,
            Err(panicked) => {
                *error = panicked;
                return false;
            }
        }
        let policy = retry.policy;
        let id = self.id.id;
        let retries = self
            .retries
            .get_or_insert_with(|| Box::new(Intensity::new(policy, id)));
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

    /// The error path of [SEMANTICS 1.2].
    ///
    /// [SEMANTICS 1.2]: crate::semantics#12-errors-rescue-and-finally
    pub(super) fn fail(&mut self, mut error: Error) {
        if self.section == Section::Main && self.retry(&mut error) {
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

    pub(super) fn cancel_now(&mut self) {
        match self.cancel {
            Some(Ending::Dropped) => self.enter_finally(Some(Error::Dropped), Ending::Dropped),
            Some(Ending::Cancelled(cause)) => {
                self.enter_finally(Some(cause.error()), Ending::Cancelled(cause))
            }
            // Not asked to stop: as a request by ident would.
            _ => {
                let cause = self.control.cancellation();
                self.enter_finally(Some(cause.error()), Ending::Cancelled(cause))
            }
        }
    }

    /// The current section ran out of steps, or a step broke out of it.
    pub(super) fn end_section(&mut self) {
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

    /// Tells the registry how the instance ended (once), and the callers that share its
    /// result (each makes its own copy of the kept value, see `sharing.rs`).
    ///
    /// The clone made here (the value kept for the queue's statistics and the sharers)
    /// runs user code: a panicking `Clone` is the instance's error, as a panicking step
    /// would be, and the registry still hears of the end, so the slot is freed.
    pub(super) fn record_end(&mut self, core: &impl Port<C>) {
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
            Ending::Cancelled(reason) => Recorded::Cancelled(reason),
            // A child was dropped: this instance is cancelled, its tree with it.
            Ending::Dropped => {
                Recorded::Cancelled(Cancellation::direct(CancelReason::ChildDropped))
            }
        };
        let result = matches!(recorded, Recorded::Finished)
            .then(|| Arc::clone(&self.control) as Arc<dyn crate::control::ErasedControl>);
        if let Some(cause) = core.finish(self.id, recorded, result) {
            // A cancellation was accepted before the value arrived: it wins.
            self.cancel = Some(Ending::Cancelled(cause));
        }
        let ending = self.final_ending();
        self.span.state(match ending {
            Ending::Normally => "finished",
            Ending::WithError => "failed",
            Ending::Cancelled(_) | Ending::Dropped => "cancelled",
        });
        self.control.end_sharing(|| match ending {
            Ending::Normally => SharedEnd::Finished,
            Ending::WithError => {
                SharedEnd::Failed(self.error.clone().unwrap_or_else(missing_error))
            }
            Ending::Cancelled(reason) => SharedEnd::Cancelled(reason),
            Ending::Dropped => SharedEnd::Dropped,
        });
    }

    /// How the instance ended. Meaningful once [`Instance::drive`] returned `Ready`.
    pub(crate) fn into_completion(self) -> Completion<V> {
        match self.final_ending() {
            Ending::WithError => Completion::Failed(self.error.unwrap_or_else(missing_error)),
            Ending::Cancelled(reason) => Completion::Cancelled(reason),
            Ending::Dropped => Completion::Dropped,
            Ending::Normally if self.break_all => Completion::BrokeAll(self.value),
            Ending::Normally => Completion::Finished(self.value),
        }
    }
}

fn missing_error() -> Error {
    Error::new("internal error: failed without an error; please report this bug")
}
