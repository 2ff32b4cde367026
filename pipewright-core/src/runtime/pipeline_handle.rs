//! A registered pipeline resolved once: its name, its value type and its queue are
//! looked up when the handle is made, not at each invocation.

use std::fmt;
use std::sync::Arc;
#[cfg(feature = "tower")]
use std::task::{Context, Poll};

use super::Core;
#[cfg(feature = "tower")]
#[cfg(feature = "tower")]
use crate::error::InvokeError;
use crate::error::Refused;
use crate::ident::Name;
use crate::invocation::Invocation;
use crate::pipeline::Pipeline;
use crate::registry::Gauge;
#[cfg(feature = "tower")]
use crate::registry::RoomPlace;

/// A typed handle to a pipeline registered in a [`Runtime`](crate::Runtime), made by
/// [`Runtime::handle`](crate::Runtime::handle).
///
/// Invoking through it is [`Runtime::invoke`](crate::Runtime::invoke) without the name
/// lookup and the type check, which were done once; the argument's type is known, so an
/// integer literal takes the pipeline's type. It keeps the runtime alive, as a `Runtime`
/// clone does. Cheap to clone.
///
/// # Examples
///
/// ```
/// use pipewright::{pipeline, Runtime};
///
/// let runtime = Runtime::builder(())
///     .register("double", pipeline!(|value: u64, _ctx: &()| { value = value * 2; }))
///     .start()
///     .unwrap();
/// let double = runtime.handle::<u64>("double").unwrap();
/// let results: Vec<u64> = (1..=3)
///     .map(|n| double.invoke(n).unwrap().try_result().unwrap().unwrap())
///     .collect();
/// assert_eq!(results, [2, 4, 6]);
/// assert_eq!(double.name(), "double");
/// ```
pub struct PipelineHandle<V, C> {
    core: Arc<Core<C>>,
    pipeline: Pipeline<V, C>,
    name: Name,
    /// Its queue's gauge, if the queue is fixed (resolved at registration).
    queue: Option<Arc<Gauge>>,
}

impl<V, C> PipelineHandle<V, C>
where
    V: Clone + Send + Sync + 'static,
    C: Send + Sync + 'static,
{
    pub(crate) fn new(
        core: Arc<Core<C>>,
        pipeline: Pipeline<V, C>,
        name: Name,
        queue: Option<Arc<Gauge>>,
    ) -> Self {
        PipelineHandle {
            core,
            pipeline,
            name,
            queue,
        }
    }

    /// Invokes the pipeline with `argument`, as
    /// [`Runtime::invoke`](crate::Runtime::invoke) does; fails only if its queue refuses
    /// the argument's configuration or the runtime was stopped.
    ///
    /// ```
    /// # use pipewright::{pipeline, Runtime};
    /// let runtime = Runtime::builder(())
    ///     .register("inc", pipeline!(|value: u8, _ctx: &()| { value = value + 1; }))
    ///     .start()
    ///     .unwrap();
    /// let inc = runtime.handle::<u8>("inc").unwrap();
    /// assert_eq!(inc.invoke(41).unwrap().try_result().unwrap().unwrap(), 42);
    /// ```
    pub fn invoke(&self, argument: V) -> Result<Invocation<V>, Refused<V>> {
        self.core
            .start_root(&self.pipeline, &self.name, argument, self.queue.as_ref())
    }

    /// The name the pipeline is registered under.
    pub fn name(&self) -> &str {
        self.name.as_str()
    }

    /// Whether the pipeline's queue would take one more invocation: `Pending` only for a
    /// full dropping queue with a fixed name (and not `use_existing`, which may share a
    /// live instance), `cx` being woken when a slot frees or the runtime stops; an error
    /// once the runtime was stopped.
    ///
    /// `place` is the caller's place among those waiting for the queue's room: it keeps
    /// the latest waker only, and the caller gives it back with
    /// [`leave_room`](PipelineHandle::leave_room) when it goes.
    #[cfg(feature = "tower")]
    pub(crate) fn poll_room(
        &self,
        cx: &mut Context<'_>,
        place: &mut RoomPlace,
    ) -> Poll<Result<(), InvokeError>> {
        if self.core.is_stopped() {
            return Poll::Ready(Err(InvokeError::Stopped));
        }
        let Some(gauge) = self.queue.as_ref().filter(|gauge| {
            gauge.concurrency.behaviour().refuses_when_full() && !gauge.concurrency.use_existing()
        }) else {
            return Poll::Ready(Ok(()));
        };
        if gauge.poll_room(cx, place).is_ready() {
            return Poll::Ready(Ok(()));
        }
        // `stop` sets its flag, then wakes the registered: registered before its wake,
        // this caller is woken; after it, the flag is seen here.
        if self.core.is_stopped() {
            Poll::Ready(Err(InvokeError::Stopped))
        } else {
            Poll::Pending
        }
    }
}

impl<V, C> PipelineHandle<V, C> {
    /// Gives back a place [`poll_room`](PipelineHandle::poll_room) took, with its waker.
    #[cfg(feature = "tower")]
    pub(crate) fn leave_room(&self, place: RoomPlace) {
        if let (Some(place), Some(gauge)) = (place, &self.queue) {
            gauge.leave_room_waiters(place);
        }
    }
}

impl<V, C> Clone for PipelineHandle<V, C> {
    fn clone(&self) -> Self {
        PipelineHandle {
            core: Arc::clone(&self.core),
            pipeline: self.pipeline.clone(),
            name: self.name.clone(),
            queue: self.queue.clone(),
        }
    }
}

impl<V, C> fmt::Debug for PipelineHandle<V, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipelineHandle")
            .field("name", &self.name.as_str())
            .field("value_type", &std::any::type_name::<V>())
            .finish()
    }
}
