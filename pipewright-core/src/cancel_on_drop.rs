//! [`CancelOnDrop`]: a handle whose drop cancels its instance (opt-in).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::cancel_reason::CancelReason;
use crate::error::Error;
use crate::ident::Ident;
use crate::invocation::Invocation;

/// An [`Invocation`] tied to its instance: dropping it before the result was taken
/// cancels the instance (its `finally!` runs once, its queue frees the slot), as
/// tokio-util's `AbortOnDropHandle` does for a task. Made by
/// [`Invocation::cancel_on_drop`].
///
/// The default stays as `tokio::spawn`'s: a plain `Invocation` dropped lets the work go
/// on. Tie the work to the handle where dropping the handle is how the caller says it
/// went away: an HTTP handler's future, which the server drops when the client
/// disconnects. A handle that shares another caller's instance (`use_existing`) only
/// leaves when dropped: the other callers still wait on that instance.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use pipewright::{pipeline, Runtime};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let search = pipeline!(|query: String, _ctx: &()| {
///     tokio::time::sleep(Duration::from_secs(60)).await;
///     query = format!("results for {query}");
/// });
/// let runtime = Runtime::builder(()).start().unwrap();
/// let handle = runtime.invoke_pipeline(&search, "rust".into()).unwrap().cancel_on_drop();
/// // The caller gives up after a second: the search is cancelled with its handle.
/// assert!(tokio::time::timeout(Duration::from_secs(1), handle).await.is_err());
/// tokio::task::yield_now().await;
/// assert_eq!(runtime.live_counts().0, 0);
/// # }
/// ```
#[must_use = "dropping a `CancelOnDrop` cancels its instance at once"]
pub struct CancelOnDrop<V> {
    /// `None` once disarmed.
    invocation: Option<Invocation<V>>,
}

impl<V> CancelOnDrop<V> {
    pub(crate) fn new(invocation: Invocation<V>) -> Self {
        CancelOnDrop {
            invocation: Some(invocation),
        }
    }

    /// The instance's ident.
    ///
    /// ```
    /// # use pipewright::{pipeline, Runtime};
    /// let p = pipeline!(|value: u32, _ctx: &()| {});
    /// let runtime = Runtime::builder(()).register("p", p).start().unwrap();
    /// assert_eq!(runtime.invoke("p", 1_u32).unwrap().cancel_on_drop().ident().name(), "p");
    /// ```
    pub fn ident(&self) -> &Ident {
        match &self.invocation {
            Some(invocation) => invocation.ident(),
            // Disarming consumes the guard: nothing can ask it afterwards.
            None => unreachable!("a disarmed CancelOnDrop was used"),
        }
    }

    /// The plain handle back: dropping it no longer cancels the instance.
    ///
    /// ```
    /// # use pipewright::{pipeline, Runtime};
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let p = pipeline!(|value: u32, _ctx: &()| {
    ///     tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    /// });
    /// let runtime = Runtime::builder(()).start().unwrap();
    /// let handle = runtime.invoke_pipeline(&p, 1).unwrap().cancel_on_drop().disarm();
    /// drop(handle);
    /// assert_eq!(runtime.live_counts().0, 1); // goes on, as a plain handle's does
    /// # }
    /// ```
    pub fn disarm(mut self) -> Invocation<V> {
        match self.invocation.take() {
            Some(invocation) => invocation,
            None => unreachable!("a disarmed CancelOnDrop was used"),
        }
    }
}

impl<V> Future for CancelOnDrop<V> {
    type Output = Result<V, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.invocation.as_mut() {
            Some(invocation) => Pin::new(invocation).poll(cx),
            None => Poll::Ready(Err(Error::ResultTaken)),
        }
    }
}

impl<V> Drop for CancelOnDrop<V> {
    fn drop(&mut self) {
        if let Some(invocation) = &self.invocation {
            if invocation.owns_a_running_instance() {
                invocation.cancel_because(CancelReason::HandleDropped);
            }
        }
    }
}

impl<V> fmt::Debug for CancelOnDrop<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CancelOnDrop")
            .field("invocation", &self.invocation)
            .finish()
    }
}
