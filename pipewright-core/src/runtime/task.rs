//! The tokio task that drives an instance after its first wait.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use super::Core;
use crate::error::Error;
use crate::instance::Instance;
use crate::registry::Parked;

/// The tokio task that drives an instance after its first wait (or while it waits for a
/// slot).
pub(super) struct Task<V, C>
where
    V: Clone + Send + Sync + 'static,
    C: Send + Sync + 'static,
{
    pub(super) instance: Option<Instance<V, C>>,
    pub(super) core: Arc<Core<C>>,
}

impl<V, C> Future for Task<V, C>
where
    V: Clone + Send + Sync + 'static,
    C: Send + Sync + 'static,
{
    type Output = ();

    /// Drives the instance; its outcome goes to the caller through the control block.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let Some(instance) = this.instance.as_mut() else {
            return Poll::Ready(());
        };
        let control = instance.control();
        let polled = catch_unwind(AssertUnwindSafe(|| {
            // A wake-up whose future is still pending runs no step: no transaction.
            if this.core.hooks().has_transactor() && instance.probe(&this.core, cx).is_pending() {
                return Poll::Pending;
            }
            this.core.run_stretch(instance, cx)
        }));
        match polled {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(())) => {
                if let Some(instance) = this.instance.take() {
                    this.core.hand_over(instance);
                }
                Poll::Ready(())
            }
            // User code is contained where it runs; a panic here is the runtime's. The
            // caller is told, and the task ends (its drop ends the instance).
            Err(panic) => {
                control.complete(Err(Error::from_panic(panic)));
                Poll::Ready(())
            }
        }
    }
}

impl<V, C> Drop for Task<V, C>
where
    V: Clone + Send + Sync + 'static,
    C: Send + Sync + 'static,
{
    fn drop(&mut self) {
        if let Some(instance) = self.instance.take() {
            // The executor dropped the task before it completed: it is shutting down (or
            // was gone when the task was spawned). The instance cannot wait any more, so
            // it runs to its end here, `finally!` included, and its caller finds the
            // outcome in the control block.
            let control = instance.control();
            let outcome = self.core.run_without_executor(instance);
            control.complete(outcome);
        }
    }
}

impl<V, C> Parked for Task<V, C>
where
    V: Clone + Send + Sync + 'static,
    C: Send + Sync + 'static,
{
    fn start(self: Box<Self>) {
        match self.core.executor() {
            Some(executor) => drop(executor.spawn(*self)),
            // Dropping the task runs the instance to its end without an executor.
            None => drop(self),
        }
    }

    fn end(mut self: Box<Self>) {
        let Some(mut instance) = self.instance.take() else {
            return;
        };
        let mut cx = Context::from_waker(futures::task::noop_waker_ref());
        if self.core.run_stretch(&mut instance, &mut cx).is_ready() {
            self.core.hand_over(instance);
        } else {
            // Admitted after all (a slot was given before the cancellation): it runs
            // its `finally!` on a task.
            self.instance = Some(instance);
            self.start();
        }
    }
}

// The task holds no pinned data (see `Instance`'s `Unpin`).
impl<V, C> Unpin for Task<V, C>
where
    V: Clone + Send + Sync + 'static,
    C: Send + Sync + 'static,
{
}
