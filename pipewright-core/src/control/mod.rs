//! The control block of one instance: how the registry reaches an instance that runs
//! elsewhere (another task, another thread, or further up the same stack).
//!
//! The registry decides under its lock *what* happens (this instance is cancelled, that one
//! may start); the control block carries the decision to the code that drives the
//! instance: a flag plus the waker of whoever polls it, so a suspended instance wakes up,
//! sees the flag, drops its in-flight future and runs `finally!`. The instance checks its
//! flags between steps with one atomic load.
//!
//! The block also holds the invocation's argument (for introspection and `use_existing`),
//! the last successful result (for queue statistics and for the callers that share the
//! instance's result through `use_existing`), and how those callers are told it ended
//! (`sharing.rs`).
//!
//! - `mod.rs`: [`Control`] and its erased form, [`ErasedControl`]
//! - `signals.rs`: its flags, cancellation reason and waker (with their loom model)
//! - `sharing.rs`: the callers that share the instance's result

pub(crate) mod sharing;
pub(crate) mod signals;

use std::any::{type_name, Any};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll, Waker};

use futures::task::AtomicWaker;

use crate::cancel_reason::{Cancellation, REQUESTED};
use crate::error::Error;
use sharing::{SharedEnd, Sharers};
use signals::Signals;

/// An instance's argument: known when it was invoked, or set once when the future it
/// was invoked with resolves (`invoke_future`). Two variants, so that the common case
/// pays for no synchronisation.
enum Argument<V> {
    Known(V),
    Pending(OnceLock<V>),
}

/// The typed control block of one instance.
pub(crate) struct Control<V> {
    signals: Signals,
    argument: Argument<V>,
    result: OnceLock<V>,
    /// Made by the first caller that shares the result: most instances have none, and
    /// the table stays out of every control block's size.
    sharers: OnceLock<Box<Sharers>>,
    /// The outcome of an instance whose task the executor dropped (it shut down): the
    /// drop ran the instance to its end, and its caller finds the outcome here.
    /// The outcome of a root instance driven by a task, for its caller: set once
    /// ([`complete`](Control::complete)), taken once.
    outcome: Mutex<Option<Result<V, Error>>>,
    /// The caller waiting for `outcome`.
    caller: AtomicWaker,
}

impl<V> Control<V> {
    pub(crate) fn new(argument: V, admitted: bool) -> Self {
        Control::with_argument(Argument::Known(argument), admitted)
    }

    /// The control block of an instance whose argument is not known yet.
    pub(crate) fn pending(admitted: bool) -> Self {
        Control::with_argument(Argument::Pending(OnceLock::new()), admitted)
    }

    fn with_argument(argument: Argument<V>, admitted: bool) -> Self {
        Control {
            signals: Signals::new(admitted),
            argument,
            result: OnceLock::new(),
            sharers: OnceLock::new(),
            outcome: Mutex::new(None),
            caller: AtomicWaker::new(),
        }
    }

    /// The argument, once it is known.
    pub(crate) fn argument(&self) -> Option<&V> {
        match &self.argument {
            Argument::Known(argument) => Some(argument),
            Argument::Pending(argument) => argument.get(),
        }
    }

    /// Records the argument of an instance invoked with a future, once it resolved.
    pub(crate) fn set_argument(&self, argument: V) {
        if let Argument::Pending(pending) = &self.argument {
            let _ = pending.set(argument);
        }
    }

    /// Remembers who to wake, then tells whether there is something to react to. In this
    /// order, a signal that lands between the two is never lost.
    pub(crate) fn register(&self, waker: &Waker) {
        self.signals.register(waker);
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        self.signals.is_cancelled()
    }

    /// Why it was cancelled: the reason the registry kept when it marked the instance,
    /// else `fallback` (a cancellation its own driver decided).
    pub(crate) fn cancelled_because(&self, fallback: Cancellation) -> Cancellation {
        self.signals.cancel_reason().unwrap_or(fallback)
    }

    /// Why a flagged instance was cancelled: the registry keeps a reason whenever it
    /// raises the flag, so the fallback (a request by ident) is never told in practice.
    pub(crate) fn cancellation(&self) -> Cancellation {
        self.cancelled_because(REQUESTED)
    }

    pub(crate) fn is_admitted(&self) -> bool {
        self.signals.is_admitted()
    }

    pub(crate) fn set_suspended(&self, suspended: bool) {
        self.signals.set_suspended(suspended);
    }

    pub(crate) fn take_children_done(&self) -> bool {
        self.signals.take_children_done()
    }

    /// Keeps the successful result for the queue's statistics.
    pub(crate) fn set_result(&self, value: V) {
        let _ = self.result.set(value);
    }

    /// The successful result, once kept.
    pub(crate) fn result(&self) -> Option<&V> {
        self.result.get()
    }

    /// Counts a caller sharing this instance's result: its end will be told. Called
    /// under the registry's lock while the instance is live and unfinished, so before
    /// [`end_sharing`](Control::end_sharing) looks.
    pub(crate) fn add_sharer(&self) {
        self.sharers();
    }

    /// Tells the callers sharing the result, if any, how the instance ended.
    pub(crate) fn end_sharing(&self, end: impl FnOnce() -> SharedEnd) {
        if let Some(sharers) = self.sharers.get() {
            sharers.end(end());
        }
    }

    pub(crate) fn sharers(&self) -> &Sharers {
        self.sharers.get_or_init(|| Box::new(Sharers::new()))
    }

    /// Keeps the outcome of an instance whose task was dropped, for its caller.
    /// Hands the outcome of a root instance to its caller. The first outcome wins (a
    /// task that panics after completing, or is dropped after, sets none).
    pub(crate) fn complete(&self, outcome: Result<V, Error>) {
        if self.signals.set_done() {
            *self.outcome.lock().unwrap_or_else(PoisonError::into_inner) = Some(outcome);
            self.signals.set_delivered();
            self.caller.wake();
        }
    }

    /// `true` once the outcome is there (taken or not).
    pub(crate) fn is_complete(&self) -> bool {
        self.signals.is_delivered()
    }

    /// Takes the outcome if it is there; `Some(Err(ResultTaken))` if it was taken.
    pub(crate) fn try_take(&self) -> Option<Result<V, Error>> {
        if !self.signals.is_delivered() {
            return None;
        }
        Some(
            self.outcome
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take()
                .unwrap_or(Err(Error::ResultTaken)),
        )
    }

    /// Waits for the outcome.
    pub(crate) fn poll_outcome(&self, cx: &mut Context<'_>) -> Poll<Result<V, Error>> {
        if let Some(outcome) = self.try_take() {
            return Poll::Ready(outcome);
        }
        self.caller.register(cx.waker());
        match self.try_take() {
            Some(outcome) => Poll::Ready(outcome),
            None => Poll::Pending,
        }
    }
}

/// The control block without its value type, as the registry holds it.
pub(crate) trait ErasedControl: Send + Sync + 'static {
    /// Requests cancellation and wakes the instance's driver.
    fn cancel(&self);
    /// Keeps why it is cancelled (the first reason wins). Called under the registry's
    /// lock when it marks the instance, before [`cancel`](ErasedControl::cancel).
    fn set_cancel_reason(&self, reason: Cancellation);
    /// Why it was cancelled (see [`Control::cancellation`]).
    fn cancellation(&self) -> Cancellation;
    /// Gives the instance its slot, without waking its driver. Called under the
    /// registry's lock, so that any later cancellation's flag is seen with it: an
    /// instance that sees "cancelled" also sees "admitted" if it was started.
    fn set_admitted(&self);
    /// Wakes the instance's driver (after `set_admitted`, outside the lock).
    fn wake(&self);
    /// Tells an instance waiting for its children that they are done.
    fn children_done(&self);
    fn is_suspended(&self) -> bool;
    fn argument_any(&self) -> Option<&dyn Any>;
    fn result_any(&self) -> Option<&dyn Any>;
    fn value_type(&self) -> &'static str;
    fn as_any(&self) -> &dyn Any;
    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
}

impl<V: Send + Sync + 'static> ErasedControl for Control<V> {
    fn cancel(&self) {
        self.signals.cancel();
    }

    fn set_cancel_reason(&self, reason: Cancellation) {
        self.signals.set_cancel_reason(reason);
    }

    fn cancellation(&self) -> Cancellation {
        Control::cancellation(self)
    }

    fn set_admitted(&self) {
        self.signals.set_admitted();
    }

    fn wake(&self) {
        self.signals.wake();
    }

    fn children_done(&self) {
        self.signals.children_done();
    }

    fn is_suspended(&self) -> bool {
        self.signals.is_suspended()
    }

    fn argument_any(&self) -> Option<&dyn Any> {
        self.argument().map(|argument| argument as &dyn Any)
    }

    fn result_any(&self) -> Option<&dyn Any> {
        self.result.get().map(|value| value as &dyn Any)
    }

    fn value_type(&self) -> &'static str {
        type_name::<V>()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }
}
