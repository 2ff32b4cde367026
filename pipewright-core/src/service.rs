//! A pipeline bound to its runtime as a [`tower` service](tower_service::Service)
//! (feature `tower`): [`PipelineService`], the error its calls end with
//! ([`ServiceError`]), and the future a call returns ([`ServiceFuture`]).
//!
//! ```
//! use pipewright::{pipeline, Runtime};
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let runtime = Runtime::builder(())
//!     .register("double", pipeline!(|value: u64, _ctx: &()| { value = value * 2; }))
//!     .start()
//!     .unwrap();
//! let double = runtime.handle::<u64>("double").unwrap().into_service();
//! assert_eq!(double.oneshot(21).await.unwrap(), 42);
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::error::{Error, InvokeError};
use crate::ident::Ident;
use crate::invocation::Invocation;
use crate::registry::RoomPlace;
use crate::runtime::PipelineHandle;

/// A registered pipeline as a [`tower::Service`](tower_service::Service): `call(value)`
/// invokes it with `value`, and its future is the invocation, which yields the pipeline's
/// result. Made from a typed handle:
/// [`PipelineHandle::into_service`](crate::PipelineHandle::into_service) or
/// [`PipelineService::new`]. Cheap to clone (a handle clone); clones share the runtime.
///
/// # Readiness
///
/// - A pipeline whose queue is **dropping** and full (with a fixed name, not
///   `use_existing`): [`poll_ready`](tower_service::Service::poll_ready) returns
///   `Pending`, and wakes the task when one of the queue's slots frees. Wrap the service
///   in [`tower::load_shed::LoadShed`](https://docs.rs/tower/latest/tower/load_shed/)
///   to turn that into an immediate `Overloaded` error: that is how a server sheds load.
///   Each service (each clone) waits with one waker, the one it was last polled with,
///   and gives it back when it is dropped: a request shed while the queue stays full
///   leaves nothing behind.
/// - Every other behaviour: always ready. Enqueued, keep-latest and restartable queues
///   never refuse for lack of room (they wait, cancel or replace), nor does
///   `use_existing` (an equal argument shares a live instance), nor a queue per key
///   (readiness cannot know the key before the argument).
/// - A stopped runtime: `poll_ready` returns [`ServiceError::Invoke`] with
///   [`InvokeError::Stopped`].
///
/// Readiness does not reserve the slot. Another caller (another clone, a plain
/// [`invoke`](crate::PipelineHandle::invoke), or a step) may take it between `poll_ready`
/// and `call`; the call then resolves to [`ServiceError::Instance`] with
/// [`Error::Dropped`] ([`ServiceError::is_dropped`]), as tower documents for services
/// that cannot reserve capacity.
///
/// Dropping the future does not cancel the instance (as with an [`Invocation`]): it runs
/// to its end, and its result is dropped.
///
/// # Examples
///
/// A dropping pipeline with one slot, behind `LoadShed`: while an export runs, the next
/// caller is refused at once.
///
/// ```
/// use std::time::Duration;
/// use pipewright::{pipeline, Runtime};
/// use tower::load_shed::{error::Overloaded, LoadShed};
/// use tower::ServiceExt;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let export = pipeline!(|rows: u32, _ctx: &()| {
///     tokio::time::sleep(Duration::from_secs(1)).await;
///     rows = rows * 10;
/// })
/// .dropping();
/// let runtime = Runtime::builder(()).register("export", export).start().unwrap();
/// let service = LoadShed::new(runtime.handle::<u32>("export").unwrap().into_service());
///
/// let first = tokio::spawn(service.clone().oneshot(3));
/// tokio::task::yield_now().await; // the first export starts and holds the slot
/// let refused = service.clone().oneshot(4).await.unwrap_err();
/// assert!(refused.is::<Overloaded>());
/// assert_eq!(first.await.unwrap().unwrap(), 30);
/// assert_eq!(service.oneshot(5).await.unwrap(), 50); // the slot is free again
/// # }
/// ```
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub struct PipelineService<V, C> {
    handle: PipelineHandle<V, C>,
    /// This service's place among the callers waiting for its queue's room, once it has
    /// waited: one waker (the latest), given back when the service is dropped, so a
    /// request shed while the queue is full leaves nothing behind.
    room: RoomPlace,
}

/// The tower side of a handle: written here, so the runtime's handle does not depend on
/// the tower module.
impl<V, C> PipelineHandle<V, C>
where
    V: Clone + Send + Sync + 'static,
    C: Send + Sync + 'static,
{
    /// The pipeline as a [`tower` service](PipelineService): calling it
    /// invokes the pipeline through this handle.
    ///
    /// ```
    /// use pipewright::{pipeline, Runtime};
    /// use tower::ServiceExt;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let runtime = Runtime::builder(())
    ///     .register("inc", pipeline!(|value: u8, _ctx: &()| { value = value + 1; }))
    ///     .start()
    ///     .unwrap();
    /// let inc = runtime.handle::<u8>("inc").unwrap().into_service();
    /// assert_eq!(inc.oneshot(41).await.unwrap(), 42);
    /// # }
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
    pub fn into_service(self) -> PipelineService<V, C> {
        PipelineService::new(self)
    }
}

impl<V, C> PipelineService<V, C>
where
    V: Clone + Send + Sync + 'static,
    C: Send + Sync + 'static,
{
    /// The pipeline `handle` resolves, as a service.
    ///
    /// ```
    /// # use pipewright::{pipeline, Runtime};
    /// use pipewright::service::PipelineService;
    ///
    /// let runtime = Runtime::builder(())
    ///     .register("inc", pipeline!(|value: u8, _ctx: &()| { value = value + 1; }))
    ///     .start()
    ///     .unwrap();
    /// let inc = PipelineService::new(runtime.handle::<u8>("inc").unwrap());
    /// assert_eq!(inc.handle().name(), "inc");
    /// ```
    pub fn new(handle: PipelineHandle<V, C>) -> Self {
        PipelineService { handle, room: None }
    }

    /// The handle it invokes through.
    pub fn handle(&self) -> &PipelineHandle<V, C> {
        &self.handle
    }

    fn not_invoked(&self, source: InvokeError) -> ServiceError {
        ServiceError::Invoke {
            pipeline: self.handle.name().to_owned(),
            source,
        }
    }
}

impl<V, C> tower_service::Service<V> for PipelineService<V, C>
where
    V: Clone + Send + Sync + 'static,
    C: Send + Sync + 'static,
{
    type Response = V;
    type Error = ServiceError;
    type Future = ServiceFuture<V>;

    /// `Pending` while a dropping queue is full (see [Readiness](PipelineService#readiness));
    /// an error once the runtime was stopped.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ServiceError>> {
        self.handle
            .poll_room(cx, &mut self.room)
            .map_err(|source| self.not_invoked(source))
    }

    /// Invokes the pipeline with `value`: the instance joins its queue now (and runs its
    /// first stretch here, if admitted); the future yields its result.
    fn call(&mut self, value: V) -> ServiceFuture<V> {
        let state = match self.handle.invoke(value) {
            Ok(invocation) => State::Invoked(invocation),
            Err(source) => State::NotInvoked(self.not_invoked(source.into_error())),
        };
        ServiceFuture { state }
    }
}

impl<V, C> Clone for PipelineService<V, C> {
    /// A service of its own: it shares the runtime and the handle's pipeline, not the
    /// place this one may have among the callers waiting for room.
    fn clone(&self) -> Self {
        PipelineService {
            handle: self.handle.clone(),
            room: None,
        }
    }
}

impl<V, C> Drop for PipelineService<V, C> {
    fn drop(&mut self) {
        self.handle.leave_room(self.room.take());
    }
}

impl<V, C> fmt::Debug for PipelineService<V, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipelineService")
            .field("handle", &self.handle)
            .finish()
    }
}

/// The future of a [`PipelineService`] call: the [`Invocation`], its error told apart
/// from a refusal to invoke. Dropping it does not cancel the instance.
///
/// ```
/// # use pipewright::{pipeline, Runtime};
/// use tower::Service;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let runtime = Runtime::builder(())
///     .register("inc", pipeline!(|value: u8, _ctx: &()| { value = value + 1; }))
///     .start()
///     .unwrap();
/// let mut inc = runtime.handle::<u8>("inc").unwrap().into_service();
/// let future = inc.call(1);
/// assert_eq!(future.invocation().unwrap().ident().name(), "inc");
/// assert_eq!(future.await.unwrap(), 2);
/// # }
/// ```
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub struct ServiceFuture<V> {
    state: State<V>,
}

enum State<V> {
    Invoked(Invocation<V>),
    /// Yielded (cloned) each time the future is polled: it is ready at once.
    NotInvoked(ServiceError),
}

impl<V> ServiceFuture<V> {
    /// The invocation, if the runtime accepted it: its ident, its argument, and
    /// [`cancel`](Invocation::cancel).
    pub fn invocation(&self) -> Option<&Invocation<V>> {
        match &self.state {
            State::Invoked(invocation) => Some(invocation),
            State::NotInvoked(_) => None,
        }
    }
}

impl<V> Future for ServiceFuture<V> {
    type Output = Result<V, ServiceError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().state {
            State::Invoked(invocation) => match Pin::new(&mut *invocation).poll(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Ok(value)) => Poll::Ready(Ok(value)),
                Poll::Ready(Err(source)) => Poll::Ready(Err(ServiceError::Instance {
                    instance: invocation.ident().clone(),
                    source,
                })),
            },
            State::NotInvoked(error) => Poll::Ready(Err(error.clone())),
        }
    }
}

impl<V> fmt::Debug for ServiceFuture<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.state {
            State::Invoked(invocation) => f.debug_tuple("ServiceFuture").field(invocation).finish(),
            State::NotInvoked(error) => f.debug_tuple("ServiceFuture").field(error).finish(),
        }
    }
}

/// Why a [`PipelineService`] gave no value: the runtime refused to invoke the pipeline
/// (nothing ran), or the instance ended without a value. The cause is the
/// [`source`](std::error::Error::source).
///
/// # Examples
///
/// ```
/// use pipewright::{pipeline, Error, InvokeError, Runtime};
/// use pipewright::service::ServiceError;
/// use tower::ServiceExt;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let runtime = Runtime::builder(())
///     .register("odd", pipeline!(|value: u8, _ctx: &()| {
///         value = if value % 2 == 1 { Ok(value) } else { Err(format!("{value} is even")) };
///     }))
///     .start()
///     .unwrap();
/// let odd = runtime.handle::<u8>("odd").unwrap().into_service();
///
/// let error = odd.clone().oneshot(2).await.unwrap_err();
/// let ServiceError::Instance { instance, source } = &error else { panic!("{error}") };
/// assert!(matches!(source, Error::Failed(_)));
/// assert_eq!(error.to_string(), format!("instance `{instance}` ended without a value"));
/// assert_eq!(source.message(), "2 is even");
///
/// runtime.stop();
/// let error = odd.oneshot(3).await.unwrap_err();
/// assert!(matches!(&error, ServiceError::Invoke { source: InvokeError::Stopped, .. }));
/// assert_eq!(error.to_string(), "could not invoke pipeline `odd`");
/// # }
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub enum ServiceError {
    /// The runtime refused to invoke the pipeline; nothing ran. After
    /// [`Runtime::stop`](crate::Runtime::stop) the source is [`InvokeError::Stopped`]
    /// (from `poll_ready` as well as from `call`): the service is done, build a new one
    /// from a new runtime. Other sources are as [`InvokeError`] documents (a queue
    /// configuration that cannot work, no tokio runtime where one is needed).
    #[error("could not invoke pipeline `{pipeline}`")]
    Invoke {
        /// The pipeline's registered name.
        pipeline: String,
        /// Why it was refused.
        #[source]
        source: InvokeError,
    },
    /// The instance ended without a value: a step failed or panicked, it was cancelled or
    /// timed out, or its queue dropped it ([`Error::Dropped`]: a dropping queue was full
    /// when the call came, though `poll_ready` had found room, see
    /// [Readiness](PipelineService#readiness); answer it as you answer load shedding).
    #[error("instance `{instance}` ended without a value")]
    Instance {
        /// The instance.
        instance: Ident,
        /// How it ended.
        #[source]
        source: Error,
    },
}

impl ServiceError {
    /// `true` when the pipeline's queue dropped the call for lack of room: the request
    /// may be tried again later (an HTTP server answers 503).
    ///
    /// ```
    /// use pipewright::InvokeError;
    /// use pipewright::service::ServiceError;
    ///
    /// let stopped = ServiceError::Invoke { pipeline: "export".into(), source: InvokeError::Stopped };
    /// assert!(!stopped.is_dropped());
    /// ```
    pub fn is_dropped(&self) -> bool {
        matches!(
            self,
            ServiceError::Instance {
                source: Error::Dropped,
                ..
            }
        )
    }

    /// The instance's error, if it was invoked.
    ///
    /// ```
    /// use pipewright::InvokeError;
    /// use pipewright::service::ServiceError;
    ///
    /// let stopped = ServiceError::Invoke { pipeline: "export".into(), source: InvokeError::Stopped };
    /// assert!(stopped.instance_error().is_none());
    /// ```
    pub fn instance_error(&self) -> Option<&Error> {
        match self {
            ServiceError::Instance { source, .. } => Some(source),
            ServiceError::Invoke { .. } => None,
        }
    }
}
