//! A graceful shutdown to await: stop, wait for what is left to end, and past a deadline
//! cancel the rest.

use std::time::Duration;

use super::{Core, Runtime};

/// How a [`Runtime::shutdown`] went: how many instances its deadline had to cancel
/// (instances spared by [`stop`](Runtime::stop), `cancel_on_shutdown(false)`, that were
/// still running when the grace period ended).
///
/// ```
/// # use std::time::Duration;
/// # use pipewright::Runtime;
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let runtime = Runtime::builder(()).start().unwrap();
/// assert_eq!(runtime.shutdown(Duration::from_secs(5)).await.forced(), 0);
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Shutdown {
    forced: usize,
}

impl Shutdown {
    /// How many live instances the deadline cancelled.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use pipewright::Runtime;
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// # let runtime = Runtime::builder(()).start().unwrap();
    /// let report = runtime.shutdown(Duration::ZERO).await;
    /// assert_eq!(report.forced(), 0); // nothing was running
    /// # }
    /// ```
    pub fn forced(&self) -> usize {
        self.forced
    }
}

impl<C: Send + Sync + 'static> Runtime<C> {
    /// Stops the runtime and waits until every live instance has ended: the cancelled
    /// ones once their `finally!` has run, the ones `stop` spares
    /// (`cancel_on_shutdown(false)`) once they finish. If some are still live after
    /// `grace`, they are cancelled too, and the future resolves once their `finally!` has
    /// run. Like tokio-util's `TaskTracker::close` and `wait`, with a deadline.
    ///
    /// A `finally!` that never ends keeps the future waiting (cancellation does not cut
    /// `finally!` short): put a [`timeout`](crate::Pipeline::timeout) on what it waits
    /// for, or wrap the call in `tokio::time::timeout`. Supervisors are stopped (their
    /// children's channels close) but not waited for.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use pipewright::{pipeline, Runtime};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let flush = pipeline!(|value: u32, _ctx: &()| {
    ///     tokio::time::sleep(Duration::from_secs(2)).await; // allowed to finish
    /// })
    /// .cancel_on_shutdown(false);
    /// let runtime = Runtime::builder(()).start().unwrap();
    /// let handle = runtime.invoke_pipeline(&flush, 1).unwrap();
    /// let report = runtime.shutdown(Duration::from_secs(10)).await;
    /// assert_eq!(report.forced(), 0);
    /// assert_eq!(handle.await.unwrap(), 1);
    /// assert_eq!(runtime.live_counts().0, 0);
    /// # }
    /// ```
    pub async fn shutdown(&self, grace: Duration) -> Shutdown {
        self.stop();
        if tokio::time::timeout(grace, self.core.drained())
            .await
            .is_ok()
        {
            return Shutdown { forced: 0 };
        }
        let forced = self.core.cancel_every_live();
        self.core.drained().await;
        Shutdown { forced }
    }
}

impl<C: Send + Sync + 'static> Core<C> {
    /// Resolves once the registry holds no live instance.
    pub(super) async fn drained(&self) {
        loop {
            let notified = self.drained.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before the look, so an end in between is not missed.
            notified.as_mut().enable();
            if self.registry.counts().0 == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Cancels every instance still live, spared ones included, in one batch (none that
    /// waits for a slot starts meanwhile); returns how many trees it cancelled.
    fn cancel_every_live(&self) -> usize {
        let mut fx = crate::registry::Effects::default();
        let cancelled = self.registry.cancel_everything(&mut fx);
        self.after(&mut fx);
        cancelled
    }

    /// Wakes a waiting [`shutdown`](Runtime::shutdown) after the registry changed, once
    /// the runtime is stopped (before that nobody waits: one flag read).
    pub(super) fn wake_shutdown(&self) {
        if self.is_stopped() {
            self.drained.notify_waiters();
        }
    }
}
