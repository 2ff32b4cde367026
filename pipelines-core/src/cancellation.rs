//! Cancellation that reaches an instance running on another task.
//!
//! The interpreter itself cancels between steps ([`crate::instance`]); this module is the
//! bridge from a caller on any thread to the task that drives a suspended instance: a flag
//! plus the task's waker, so the task wakes, sees the flag and starts its cancellation
//! (dropping the in-flight future, then running `finally!`).

use std::sync::atomic::{AtomicBool, Ordering};

use futures::task::AtomicWaker;

/// A cancellation request for one suspended instance.
#[derive(Debug, Default)]
pub(crate) struct CancelSignal {
    requested: AtomicBool,
    waker: AtomicWaker,
}

impl CancelSignal {
    /// Requests cancellation and wakes the task driving the instance.
    pub(crate) fn cancel(&self) {
        self.requested.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// Remembers the task to wake, then tells whether cancellation was requested. In this
    /// order, a request that lands between the two is never lost.
    pub(crate) fn register_and_check(&self, waker: &std::task::Waker) -> bool {
        self.waker.register(waker);
        self.requested.load(Ordering::Acquire)
    }
}
