//! The handle an invocation returns.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::control::sharing::Sharing;

use crate::cancel_on_drop::CancelOnDrop;
use crate::cancel_reason::CancelReason;
use crate::control::Control;
use crate::error::Error;
use crate::ident::Ident;

/// Cancels instances by ident without knowing the context type: what an [`Invocation`]
/// holds to cancel its instance (the runtime implements it).
pub(crate) trait Canceller: Send + Sync {
    fn cancel(&self, ident: &Ident, reason: CancelReason) -> bool;
}

/// The handle of one pipeline instance, returned by
/// [`Runtime::invoke`](crate::Runtime::invoke).
///
/// - When the pipeline ran to its end without waiting, the result is already here:
///   [`try_result`](Invocation::try_result) returns it without any executor.
/// - Otherwise the instance runs on a tokio task (or waits for a slot), and awaiting the
///   handle yields its result.
/// - A `use_existing` invocation that matched a live instance shares that instance's
///   result (and ident).
///
/// Like `tokio::spawn`, the work goes on without the handle: dropping it does not cancel
/// the instance; [`cancel`](Invocation::cancel) does, and so does dropping the handle
/// [`cancel_on_drop`](Invocation::cancel_on_drop) makes.
///
/// # Examples
///
/// ```
/// use pipewright::{pipeline, Runtime};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let slow_double = pipeline!(|value: u64, _ctx: &()| {
///     tokio::time::sleep(std::time::Duration::from_millis(100)).await;
///     value = value * 2;
/// });
/// let runtime = Runtime::builder(()).start().unwrap();
/// let mut handle = runtime.invoke_pipeline(&slow_double, 21).unwrap();
/// assert!(handle.try_result().is_none()); // still sleeping
/// assert_eq!(handle.await.unwrap(), 42);
/// # }
/// ```
pub struct Invocation<V> {
    ident: Ident,
    held: Held<V>,
    /// `None` for an invocation that ended before it was handed out without ever being
    /// registered (refused, or run to its end inside `invoke`): nothing to cancel.
    canceller: Option<Arc<dyn Canceller>>,
    state: State<V>,
}

/// What the handle keeps of its instance: the control block, or, for an invocation that
/// never had one (refused before anything was built, or run to its end inside `invoke`
/// without being registered), just the argument.
enum Held<V> {
    Control(Arc<Control<V>>),
    Argument(V),
}

enum State<V> {
    Ready(Result<V, Error>),
    /// Driven by a task, which hands the outcome over in the control block.
    Running,
    /// `use_existing`: waiting for the result of a live instance it shares.
    Shared(Sharing<V>),
    Taken,
}

impl<V> Invocation<V> {
    pub(crate) fn ready(
        ident: Ident,
        control: Arc<Control<V>>,
        canceller: Arc<dyn Canceller>,
        result: Result<V, Error>,
    ) -> Self {
        Invocation {
            ident,
            held: Held::Control(control),
            canceller: Some(canceller),
            state: State::Ready(result),
        }
    }

    /// An invocation that ran to its end inside `invoke` without a control block (a quick
    /// run).
    pub(crate) fn quick(ident: Ident, argument: V, result: Result<V, Error>) -> Self {
        Invocation {
            ident,
            held: Held::Argument(argument),
            canceller: None,
            state: State::Ready(result),
        }
    }

    /// An invocation its queue refused before anything was built (a full dropping
    /// queue): it holds its argument and ends as [`Error::Dropped`].
    pub(crate) fn refused(ident: Ident, argument: V) -> Self {
        Invocation {
            ident,
            held: Held::Argument(argument),
            canceller: None,
            state: State::Ready(Err(Error::Dropped)),
        }
    }

    pub(crate) fn running(
        ident: Ident,
        control: Arc<Control<V>>,
        canceller: Arc<dyn Canceller>,
    ) -> Self {
        Invocation {
            ident,
            held: Held::Control(control),
            canceller: Some(canceller),
            state: State::Running,
        }
    }

    pub(crate) fn shared(ident: Ident, sharing: Sharing<V>, canceller: Arc<dyn Canceller>) -> Self {
        Invocation {
            ident,
            held: Held::Control(Arc::clone(sharing.control())),
            canceller: Some(canceller),
            state: State::Shared(sharing),
        }
    }

    /// The argument the instance was invoked with (for a shared `use_existing` result,
    /// the argument of the instance that runs); `None` while an argument given as a future
    /// ([`Runtime::invoke_future`](crate::Runtime::invoke_future)) has not resolved.
    ///
    /// ```
    /// # use pipewright::{pipeline, Runtime};
    /// let p = pipeline!(|value: i32, _ctx: &()| { value = value * 2; });
    /// let runtime = Runtime::builder(()).start().unwrap();
    /// assert_eq!(runtime.invoke_pipeline(&p, 4).unwrap().argument(), Some(&4));
    /// ```
    pub fn argument(&self) -> Option<&V> {
        match &self.held {
            Held::Control(control) => control.argument(),
            Held::Argument(argument) => Some(argument),
        }
    }

    /// Cancels the instance, as [`Runtime::cancel`](crate::Runtime::cancel) does with its
    /// ident. Returns `false` if it was not live any more.
    ///
    /// ```
    /// # use pipewright::{pipeline, Runtime};
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let forever = pipeline!(|value: i32, _ctx: &()| { std::future::pending::<()>().await; });
    /// let runtime = Runtime::builder(()).start().unwrap();
    /// let handle = runtime.invoke_pipeline(&forever, 1).unwrap();
    /// assert!(handle.cancel());
    /// assert!(handle.await.unwrap_err().is_cancelled());
    /// # }
    /// ```
    pub fn cancel(&self) -> bool {
        self.cancel_because(CancelReason::Requested)
    }

    /// Cancels the instance, giving `reason` (see [`Runtime::cancel_with`](crate::Runtime::cancel_with)).
    pub(crate) fn cancel_because(&self, reason: CancelReason) -> bool {
        self.canceller
            .as_ref()
            .is_some_and(|canceller| canceller.cancel(&self.ident, reason))
    }

    /// The instance's identity: pipeline name and instance number.
    ///
    /// ```
    /// # use pipewright::{pipeline, Runtime};
    /// let p = pipeline!(|value: i32, _ctx: &()| {});
    /// let runtime = Runtime::builder(()).register("same", p).start().unwrap();
    /// let handle = runtime.invoke("same", 1).unwrap();
    /// assert_eq!(handle.ident().name(), "same");
    /// ```
    pub fn ident(&self) -> &Ident {
        &self.ident
    }

    /// `true` once the instance has completed (and its result was not taken yet).
    ///
    /// ```
    /// # use pipewright::{pipeline, Runtime};
    /// let p = pipeline!(|value: i32, _ctx: &()| { value = value + 1; });
    /// # let runtime = Runtime::builder(()).start().unwrap();
    /// assert!(runtime.invoke_pipeline(&p, 1).unwrap().is_finished());
    /// ```
    pub fn is_finished(&self) -> bool {
        match &self.state {
            State::Ready(_) => true,
            State::Running => self.control().is_some_and(|control| control.is_complete()),
            State::Shared(sharing) => sharing.is_finished(),
            State::Taken => false,
        }
    }

    /// Takes the result if the instance has completed, without waiting and without an
    /// executor. Returns `None` while it runs, and after the result was taken.
    ///
    /// ```
    /// # use pipewright::{pipeline, Runtime};
    /// let p = pipeline!(|value: i32, _ctx: &()| { value = value + 1; });
    /// # let runtime = Runtime::builder(()).start().unwrap();
    /// let mut handle = runtime.invoke_pipeline(&p, 1).unwrap();
    /// assert_eq!(handle.try_result().unwrap().unwrap(), 2);
    /// assert!(handle.try_result().is_none());
    /// ```
    pub fn try_result(&mut self) -> Option<Result<V, Error>> {
        match std::mem::replace(&mut self.state, State::Taken) {
            State::Ready(result) => Some(result),
            State::Running => {
                let taken = self.control().and_then(|control| control.try_take());
                if taken.is_none() {
                    self.state = State::Running;
                }
                taken
            }
            State::Shared(sharing) => {
                let result = sharing.try_result();
                if result.is_none() {
                    self.state = State::Shared(sharing);
                }
                result
            }
            State::Taken => None,
        }
    }
}

impl<V> Invocation<V> {
    /// Ties the instance to this handle: dropping the returned [`CancelOnDrop`] before
    /// the result was taken cancels the instance (opt-in; a plain handle's drop lets the
    /// work go on, like `tokio::spawn`'s). For an HTTP handler: the server drops the
    /// handler's future when the client disconnects, and the work stops with it.
    ///
    /// ```
    /// # use pipewright::{pipeline, Runtime};
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let forever = pipeline!(|value: u32, _ctx: &()| { std::future::pending::<()>().await; });
    /// let runtime = Runtime::builder(()).start().unwrap();
    /// drop(runtime.invoke_pipeline(&forever, 1).unwrap().cancel_on_drop());
    /// tokio::task::yield_now().await;
    /// assert_eq!(runtime.live_counts().0, 0);
    /// # }
    /// ```
    pub fn cancel_on_drop(self) -> CancelOnDrop<V> {
        CancelOnDrop::new(self)
    }

    /// Whether this handle's own instance may still be running (not finished, not
    /// shared with other callers): what dropping a [`CancelOnDrop`] cancels.
    pub(crate) fn owns_a_running_instance(&self) -> bool {
        matches!(self.state, State::Running) && !self.is_finished()
    }

    fn control(&self) -> Option<&Control<V>> {
        match &self.held {
            Held::Control(control) => Some(control),
            Held::Argument(_) => None,
        }
    }
}

impl<V> Future for Invocation<V> {
    type Output = Result<V, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        match &mut this.state {
            State::Running => match this.control().map(|control| control.poll_outcome(cx)) {
                Some(Poll::Pending) => Poll::Pending,
                Some(Poll::Ready(outcome)) => {
                    this.state = State::Taken;
                    Poll::Ready(outcome)
                }
                None => {
                    this.state = State::Taken;
                    Poll::Ready(Err(Error::ResultTaken))
                }
            },
            State::Shared(sharing) => match sharing.poll_result(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(result) => {
                    this.state = State::Taken;
                    Poll::Ready(result)
                }
            },
            State::Ready(_) => match std::mem::replace(&mut this.state, State::Taken) {
                State::Ready(result) => Poll::Ready(result),
                _ => Poll::Ready(Err(Error::ResultTaken)),
            },
            State::Taken => Poll::Ready(Err(Error::ResultTaken)),
        }
    }
}

// The handle holds no pinned data: the result, a control block or a receiver, all `Unpin`.
impl<V> Unpin for Invocation<V> {}

impl<V> fmt::Debug for Invocation<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Ready(Ok(_)) => "finished",
            State::Ready(Err(_)) => "ended without a value",
            State::Running => "running",
            State::Shared(_) => "sharing a live instance's result",
            State::Taken => "result taken",
        };
        f.debug_struct("Invocation")
            .field("ident", &self.ident)
            .field("state", &state)
            .finish()
    }
}
