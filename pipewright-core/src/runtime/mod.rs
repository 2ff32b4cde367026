//! The runtime: owns the context, the registered pipelines and the instances that wait.
//!
//! `invoke` runs the first synchronous stretch of an instance right in the caller's stack
//! (inside the transactor, if any). If the instance completes there, its result goes
//! straight into the returned handle: no task, no channel. When nothing observes it, it
//! runs as a quick run (`quick_run.rs`): no registry entry and no control block either. Only
//! an instance that waits on something is moved into a tokio task, which polls it from
//! then on; one that waits for a slot is parked in the registry until admitted.
//!
//! Each root invocation takes one route, chosen once by `Core::route` (`route.rs`):
//!
//! | route | taken when | what it builds | the instance's first poll |
//! |---|---|---|---|
//! | `Quick` | the queue is fixed, quick runs are on (no watcher, event stream or transactor), no `tracing` subscriber, the steps do not take `current`, no `use_existing`, the behaviour may run quick, and the gauge gave a slot | nothing: the steps run on the bare value (`quick_run.rs`, `instance/quick_steps.rs`); an instance only if a step must wait, nests, fails or asks about the runtime | in `invoke`, on the caller's thread |
//! | `Refused` | as `Quick`, but a full dropping queue | an ident | none |
//! | `Parked` | as `Quick`, but the queue is full and an executor is there | the instance and its task, joined and parked in one critical section (`parked.rs`) | on the executor once admitted; in `invoke` if the queue had room after all |
//! | `Ordinary` | anything else: per key, `use_existing`, restartable, observed, steps that take `current`, or a full queue without an executor | `Core::join`, then `carry_on` | in `invoke` when admitted; else on the executor once admitted |
//! | `invoke_future` (`pending.rs`) | the argument is a future | a control block and the task that waits for the argument | on the executor |
//!
//! - `mod.rs`: [`Runtime`], [`WeakRuntime`] and [`in_pipeline`]
//! - `pipeline_handle.rs`: [`PipelineHandle`], a registered pipeline resolved once
//! - `builder.rs`: [`RuntimeBuilder`] and the registered pipelines it collects
//! - `core.rs`: [`Core`], the shared state: glue between the registry and the instances
//! - `current.rs`: [`Current`], a step's view of its instance
//! - `ids.rs`: instance ids, from per-thread blocks
//! - `route.rs`: the route a root invocation takes, chosen once (a table of the routes
//!   and where each first polls the instance)
//! - `quick_run.rs`: the quick route of a root invocation, and its adoption as an instance
//! - `pending.rs`: a root invoked with a future for its argument
//! - `task.rs`: the tokio task that drives an instance once it waits (and its parked form)

mod builder;
mod core;
mod current;
mod ids;
mod parked;
mod pending;
mod pipeline_handle;
mod quick_run;
mod route;
mod shutdown;
mod task;

use std::any::type_name;
use std::fmt;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use crate::cancel_reason::CancelReason;
use crate::error::{BoxError, CancelError, InvokeError, Refused, SubscribeError};
use crate::events::hooks::Hooks;
use crate::events::stream::EventStream;
use crate::ident::{Ident, Name};
use crate::instance::in_step;
use crate::introspection::{ActiveQueue, InstanceInfo, QueueInfo};
use crate::invocation::Invocation;
use crate::pipeline::Pipeline;
use crate::registry::{Effects, Gauge};

pub use self::builder::RuntimeBuilder;
pub(crate) use self::core::Core;
pub use self::current::Current;
pub(crate) use self::current::FrameView;
pub use self::pipeline_handle::PipelineHandle;
pub use self::shutdown::Shutdown;

/// Runs pipelines: by registered name or by value, with a shared context.
///
/// Cheap to clone (all clones are the same runtime), `Send` and `Sync` when the context is.
///
/// # Examples
///
/// ```
/// use pipewright::{pipeline, Runtime};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// async fn async_inc(value: i32) -> i32 {
///     tokio::time::sleep(std::time::Duration::from_millis(100)).await;
///     value + 1
/// }
///
/// let inc_3 = pipeline!(|value: i32, _ctx: &()| {
///     value = value + 1;
///     value = async_inc(value).await;
///     value = value + 1;
/// });
/// let runtime = Runtime::builder(()).register("inc-3", inc_3).start().unwrap();
/// assert_eq!(runtime.invoke("inc-3", 0).unwrap().await.unwrap(), 3);
/// # }
/// ```
pub struct Runtime<C> {
    core: Arc<Core<C>>,
}

impl<C> Clone for Runtime<C> {
    fn clone(&self) -> Self {
        Runtime {
            core: Arc::clone(&self.core),
        }
    }
}

impl<C> fmt::Debug for Runtime<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&str> = self.core.pipelines.keys().map(|k| &**k).collect();
        names.sort_unstable();
        f.debug_struct("Runtime")
            .field("pipelines", &names)
            .field("stopped", &self.core.stopped.load(Ordering::Acquire))
            .finish_non_exhaustive()
    }
}

/// A runtime reference that does not keep the runtime alive: put it in the context (or
/// in a hook) to call back into the runtime without a reference cycle.
///
/// ```
/// # use pipewright::Runtime;
/// let runtime = Runtime::builder(()).start().unwrap();
/// let weak = runtime.downgrade();
/// assert!(weak.upgrade().is_some());
/// drop(runtime);
/// assert!(weak.upgrade().is_none());
/// ```
pub struct WeakRuntime<C> {
    core: Weak<Core<C>>,
}

impl<C> WeakRuntime<C> {
    /// The runtime, if it is still alive.
    pub fn upgrade(&self) -> Option<Runtime<C>> {
        self.core.upgrade().map(|core| Runtime { core })
    }
}

impl<C> Clone for WeakRuntime<C> {
    fn clone(&self) -> Self {
        WeakRuntime {
            core: Weak::clone(&self.core),
        }
    }
}

impl<C> fmt::Debug for WeakRuntime<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WeakRuntime")
    }
}

/// `true` while the current thread runs a pipeline step or polls a step's future.
///
/// ```
/// # use pipewright::{in_pipeline, pipeline, Runtime};
/// assert!(!in_pipeline());
/// let p = pipeline!(|_value: bool, _ctx: &()| { _value = in_pipeline(); });
/// let runtime = Runtime::builder(()).start().unwrap();
/// assert!(runtime.invoke_pipeline(&p, false).unwrap().try_result().unwrap().unwrap());
/// ```
pub fn in_pipeline() -> bool {
    in_step()
}

impl<C: Send + Sync + 'static> Runtime<C> {
    /// Starts building a runtime around `context`, which every step can read.
    ///
    /// ```
    /// # use pipewright::Runtime;
    /// let runtime = Runtime::builder(5_u32).start().unwrap();
    /// assert_eq!(*runtime.context(), 5);
    /// ```
    pub fn builder(context: C) -> RuntimeBuilder<C> {
        RuntimeBuilder {
            context,
            pipelines: Vec::new(),
            hooks: Hooks::default(),
            executor: None,
            event_capacity: None,
        }
    }

    /// The context steps read.
    ///
    /// ```
    /// # use pipewright::Runtime;
    /// assert_eq!(Runtime::builder("ctx").start().unwrap().context().len(), 3);
    /// ```
    pub fn context(&self) -> &C {
        &self.core.context
    }

    pub(crate) fn core(&self) -> &Arc<Core<C>> {
        &self.core
    }

    /// A reference that does not keep the runtime alive.
    ///
    /// ```
    /// # use pipewright::Runtime;
    /// let runtime = Runtime::builder(()).start().unwrap();
    /// assert!(runtime.downgrade().upgrade().is_some());
    /// ```
    pub fn downgrade(&self) -> WeakRuntime<C> {
        WeakRuntime {
            core: Arc::downgrade(&self.core),
        }
    }

    /// `true` if a pipeline is registered under `name`.
    ///
    /// ```
    /// # use pipewright::Runtime;
    /// assert!(!Runtime::builder(()).start().unwrap().is_registered("nothing"));
    /// ```
    pub fn is_registered(&self, name: &str) -> bool {
        self.core.pipelines.contains_key(name)
    }

    /// `true` once [`stop`](Runtime::stop) was called.
    ///
    /// ```
    /// # use pipewright::Runtime;
    /// let runtime = Runtime::builder(()).start().unwrap();
    /// runtime.stop();
    /// assert!(runtime.is_stopped());
    /// ```
    pub fn is_stopped(&self) -> bool {
        self.core.is_stopped()
    }

    /// Invokes the pipeline registered under `name` with `argument`.
    ///
    /// The instance joins its queue now and, if admitted, starts in the caller's stack;
    /// see [`Invocation`] for how to get its result. Fails, without running anything, if
    /// no pipeline has this name, if its value type is not `V`, if its queue
    /// configuration conflicts with the queue's, or if the runtime was stopped.
    ///
    /// # Errors
    ///
    /// A [`Refused`] with the [`InvokeError`] that says why, and the argument, given back.
    ///
    /// ```
    /// use pipewright::{pipeline, InvokeError, Runtime};
    ///
    /// let runtime = Runtime::builder(())
    ///     .register("inc", pipeline!(|value: i32, _ctx: &()| { value = value + 1; }))
    ///     .start()
    ///     .unwrap();
    /// assert_eq!(runtime.invoke("inc", 1).unwrap().try_result().unwrap().unwrap(), 2);
    /// let wrong = runtime.invoke("inc", "one").unwrap_err();
    /// assert!(matches!(*wrong, InvokeError::WrongArgumentType { .. }));
    /// assert_eq!(wrong.into_argument(), "one", "the argument comes back");
    /// ```
    pub fn invoke<V>(&self, name: &str, argument: V) -> Result<Invocation<V>, Refused<V>>
    where
        V: Clone + Send + Sync + 'static,
    {
        match self.resolve::<V>(name) {
            Ok((pipeline, name, queue)) => self.core.start_root(pipeline, name, argument, queue),
            Err(error) => Err(Refused::new(error, argument)),
        }
    }

    /// Invokes the pipeline registered under `name` with an argument that is still a
    /// future (the seed system's promise as an argument): the instance joins its queue
    /// now, so it keeps its place in arrival order and can be cancelled, restarted,
    /// replaced or refused at once, and waits for the argument as its first suspension.
    /// Once the argument is there, it runs as if invoked with it.
    ///
    /// An argument that fails (or panics) fails the invocation with its error, reported
    /// once to the error reporter like an unhandled step error; no step ran, so there is
    /// no value for `rescue!` or `finally!` to run with, and they do not run. The same
    /// holds for an instance cancelled while its argument is pending.
    ///
    /// # Errors
    ///
    /// As [`invoke`](Runtime::invoke); besides, [`InvokeError::ArgumentNeeded`] for a
    /// pipeline whose queue needs the argument to admit it (per key, `use_existing`), and
    /// [`InvokeError::NoExecutor`] outside a tokio runtime (something must wait for the
    /// argument).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use pipewright::{pipeline, BoxError, Runtime};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let save = pipeline!(|value: u32, _ctx: &()| { value = value * 10; }).enqueued();
    /// let runtime = Runtime::builder(()).register("save", save).start().unwrap();
    /// let later = async {
    ///     tokio::time::sleep(Duration::from_millis(100)).await;
    ///     Ok::<_, BoxError>(4_u32)
    /// };
    /// let first = runtime.invoke_future("save", later).unwrap();
    /// // Joined at once: the next invocation waits behind it, in arrival order.
    /// let second = runtime.invoke("save", 5_u32).unwrap();
    /// assert_eq!(runtime.queue_info("save").unwrap().waiting(), 1);
    /// assert_eq!(first.await.unwrap(), 40);
    /// assert_eq!(second.await.unwrap(), 50);
    /// # }
    /// ```
    pub fn invoke_future<V, F, E>(
        &self,
        name: &str,
        argument: F,
    ) -> Result<Invocation<V>, Refused<F>>
    where
        V: Clone + Send + Sync + 'static,
        F: Future<Output = Result<V, E>> + Send + 'static,
        E: Into<BoxError>,
    {
        match self.resolve::<V>(name) {
            Ok((pipeline, name, _)) => {
                self.core
                    .start_root_future(pipeline, name.clone(), argument)
            }
            Err(error) => Err(Refused::new(error, argument)),
        }
    }

    /// [`invoke_future`](Runtime::invoke_future) for a pipeline value, registered or not
    /// (named and queued as [`invoke_pipeline`](Runtime::invoke_pipeline) says).
    ///
    /// # Errors
    ///
    /// As [`invoke_future`](Runtime::invoke_future).
    ///
    /// ```
    /// # use pipewright::{pipeline, BoxError, Runtime};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let double = pipeline!(|value: i32, _ctx: &()| { value = value * 2; });
    /// let runtime = Runtime::builder(()).start().unwrap();
    /// let handle = runtime.invoke_pipeline_future(&double, async { Ok::<_, BoxError>(4) }).unwrap();
    /// assert_eq!(handle.await.unwrap(), 8);
    /// # }
    /// ```
    pub fn invoke_pipeline_future<V, F, E>(
        &self,
        pipeline: &Pipeline<V, C>,
        argument: F,
    ) -> Result<Invocation<V>, Refused<F>>
    where
        V: Clone + Send + Sync + 'static,
        F: Future<Output = Result<V, E>> + Send + 'static,
        E: Into<BoxError>,
    {
        let name = Name::Static(pipeline.site_name());
        self.core.start_root_future(pipeline, name, argument)
    }

    /// Resolves the pipeline registered under `name` once, as a typed handle: invoking
    /// through it looks no name up and checks no type, and its argument type is known,
    /// so an integer literal gets the right type (`handle.invoke(1)` for a `u64`
    /// pipeline). Fails as [`invoke`](Runtime::invoke) would for an unknown name or a
    /// wrong value type.
    ///
    /// ```
    /// use pipewright::{pipeline, InvokeError, Runtime};
    ///
    /// let runtime = Runtime::builder(())
    ///     .register("inc", pipeline!(|value: u64, _ctx: &()| { value = value + 1; }))
    ///     .start()
    ///     .unwrap();
    /// let inc = runtime.handle::<u64>("inc").unwrap();
    /// assert_eq!(inc.invoke(1).unwrap().try_result().unwrap().unwrap(), 2);
    /// assert!(matches!(
    ///     runtime.handle::<i32>("inc").unwrap_err(),
    ///     InvokeError::WrongArgumentType { .. }
    /// ));
    /// ```
    pub fn handle<V>(&self, name: &str) -> Result<PipelineHandle<V, C>, InvokeError>
    where
        V: Clone + Send + Sync + 'static,
    {
        let (pipeline, name, queue) = self.resolve::<V>(name)?;
        Ok(PipelineHandle::new(
            Arc::clone(&self.core),
            pipeline.clone(),
            name.clone(),
            queue.cloned(),
        ))
    }

    /// The pipeline registered under `name`, if its value type is `V`, and its name.
    #[allow(clippy::type_complexity)]
    fn resolve<V>(
        &self,
        name: &str,
    ) -> Result<(&Pipeline<V, C>, &Name, Option<&Arc<Gauge>>), InvokeError>
    where
        V: Clone + Send + Sync + 'static,
    {
        let Some(registered) = self.core.pipelines.get(name) else {
            return Err(InvokeError::UnknownPipeline {
                name: name.to_owned(),
            });
        };
        let Some(pipeline) = registered.pipeline.downcast_ref::<Pipeline<V, C>>() else {
            return Err(InvokeError::WrongArgumentType {
                name: name.to_owned(),
                expected: registered.value_type,
                context: type_name::<C>(),
                found: type_name::<V>(),
            });
        };
        Ok((pipeline, &registered.ident_name, registered.gauge.as_ref()))
    }

    /// Invokes a pipeline value, registered or not, with `argument`. An unregistered
    /// pipeline is named after its site (`pipeline@file:line:column`) and runs in its
    /// implicit queue.
    ///
    /// ```
    /// # use pipewright::{pipeline, Runtime};
    /// let double = pipeline!(|value: i32, _ctx: &()| { value = value * 2; });
    /// let runtime = Runtime::builder(()).start().unwrap();
    /// let handle = runtime.invoke_pipeline(&double, 4).unwrap();
    /// assert!(handle.ident().name().starts_with("pipeline@"));
    /// ```
    pub fn invoke_pipeline<V>(
        &self,
        pipeline: &Pipeline<V, C>,
        argument: V,
    ) -> Result<Invocation<V>, Refused<V>>
    where
        V: Clone + Send + Sync + 'static,
    {
        let name = Name::Static(pipeline.site_name());
        self.core.start_root(pipeline, &name, argument, None)
    }

    /// Cancels the instance `ident` as [SEMANTICS 4] says: climbs through its non-detached
    /// parents to the topmost one, and cancels that one and all its descendants,
    /// children first. Each started instance runs its `finally!` with
    /// [`Error::Cancelled`](crate::Error::Cancelled), and callers are told "cancelled",
    /// with [`CancelReason::Requested`]: `ident` and the parents it climbs through
    /// directly, the rest of the tree `by_parent`.
    ///
    /// The answer is exact: `Ok` means the instance had not ended, and its caller will
    /// not get a value (a value that arrives after the cancellation was accepted is
    /// dropped; an error the instance raised before the cancellation reached it is still
    /// reported as that error). `Err(NotLive)` means it had already ended, or never
    /// existed here. An instance whose own steps were over but that still waited for
    /// detached children is live: its children are cancelled, its caller already has its
    /// value.
    ///
    /// ```
    /// # use pipewright::{pipeline, Runtime};
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let forever = pipeline!(|value: i32, _ctx: &()| { std::future::pending::<()>().await; });
    /// let runtime = Runtime::builder(()).start().unwrap();
    /// let handle = runtime.invoke_pipeline(&forever, 1).unwrap();
    /// runtime.cancel(handle.ident()).unwrap();
    /// let error = handle.await.unwrap_err();
    /// assert_eq!(error.cancel_reason(), Some(pipewright::CancelReason::Requested));
    /// # }
    /// ```
    ///
    /// [SEMANTICS 4]: crate::semantics#4-cancellation
    pub fn cancel(&self, ident: &Ident) -> Result<(), CancelError> {
        self.cancel_with(ident, CancelReason::Requested)
    }

    /// Cancels the instance `ident` as [`cancel`](Runtime::cancel) does, giving `reason`
    /// instead of [`CancelReason::Requested`] to `ident` and the parents it climbs
    /// through: for code that cancels on behalf of something the reasons name, such as a
    /// fleet-wide queue whose lease was lost ([`CancelReason::LeaseLost`]) or that a
    /// newer instance replaced in another process ([`CancelReason::Replaced`]).
    ///
    /// ```
    /// # use pipewright::{pipeline, CancelReason, Runtime};
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let forever = pipeline!(|value: i32, _ctx: &()| { std::future::pending::<()>().await; });
    /// let runtime = Runtime::builder(()).start().unwrap();
    /// let handle = runtime.invoke_pipeline(&forever, 1).unwrap();
    /// runtime.cancel_with(handle.ident(), CancelReason::LeaseLost).unwrap();
    /// let error = handle.await.unwrap_err();
    /// assert_eq!(error.cancel_reason(), Some(CancelReason::LeaseLost));
    /// # }
    /// ```
    pub fn cancel_with(&self, ident: &Ident, reason: CancelReason) -> Result<(), CancelError> {
        self.core.adopt_asking();
        if self.core.cancel_ident(ident, reason) {
            Ok(())
        } else {
            Err(CancelError::NotLive {
                ident: ident.to_string(),
            })
        }
    }

    /// Cancels every instance in `idents` (see [`cancel`](Runtime::cancel)); returns how
    /// many of them were live.
    ///
    /// ```
    /// # use pipewright::{pipeline, Runtime};
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let forever = pipeline!(|value: i32, _ctx: &()| { std::future::pending::<()>().await; });
    /// let runtime = Runtime::builder(()).start().unwrap();
    /// let handles: Vec<_> = (0..3).map(|n| runtime.invoke_pipeline(&forever, n).unwrap()).collect();
    /// assert_eq!(runtime.cancel_all(handles.iter().map(|h| h.ident())), 3);
    /// # }
    /// ```
    pub fn cancel_all<'a>(&self, idents: impl IntoIterator<Item = &'a Ident>) -> usize {
        self.core.adopt_asking();
        idents
            .into_iter()
            .filter(|ident| self.core.cancel_ident(ident, CancelReason::Requested))
            .count()
    }

    /// Stops the runtime: refuses later invocations ([`InvokeError::Stopped`]), cancels
    /// every live instance whose pipeline is `cancel_on_shutdown` (the default), and stops
    /// its supervisors (their children's channels close). Instances of pipelines marked
    /// `cancel_on_shutdown(false)` finish normally, with their children. Called from a
    /// step, it cancels that step's own instance too (the next step does not run; its
    /// `finally!` does). Forks started through a step's [`Current`] afterwards are
    /// refused as invocations are.
    ///
    /// ```
    /// # use pipewright::{pipeline, Runtime, InvokeError};
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let forever = pipeline!(|value: i32, _ctx: &()| { std::future::pending::<()>().await; });
    /// let runtime = Runtime::builder(()).start().unwrap();
    /// let handle = runtime.invoke_pipeline(&forever, 1).unwrap();
    /// runtime.stop();
    /// assert!(handle.await.unwrap_err().is_cancelled());
    /// assert_eq!(runtime.invoke_pipeline(&forever, 2).unwrap_err(), InvokeError::Stopped);
    /// # }
    /// ```
    pub fn stop(&self) {
        // A quick run whose step stops the runtime is cancelled like any instance.
        self.core.adopt_asking();
        self.core.stopped.store(true, Ordering::Release);
        self.core.shutdown.cancel();
        let mut fx = Effects::default();
        self.core.registry.stop(&mut fx);
        self.core.after(&mut fx);
        // A service waiting for room in a full dropping queue learns that the runtime
        // stopped (after the flag: it looks at it again once registered, see
        // `PipelineHandle::poll_room`).
        #[cfg(feature = "tower")]
        for registered in self.core.pipelines.values() {
            if let Some(gauge) = &registered.gauge {
                gauge.wake_room_waiters();
            }
        }
    }

    /// Subscribes to the runtime's events: a [`Stream`](futures::Stream) of every
    /// [`Event`](crate::Event) the runtime records from now on, in the order it decided
    /// them (the order the [watcher](RuntimeBuilder::watcher) sees). Events are sent to the
    /// stream when they are delivered: after a synchronous `invoke` returns, its events
    /// are in the stream (unless another thread was delivering at that moment; they follow
    /// shortly). Any number of subscribers may read at once, each at its own pace; one that
    /// falls behind by more than the capacity given to
    /// [`event_stream`](RuntimeBuilder::event_stream) is told how many events it missed
    /// ([`EventKind::Lagged`](crate::EventKind::Lagged)), and never slows the runtime. See
    /// [`EventStream`].
    ///
    /// # Errors
    ///
    /// [`SubscribeError::NotEnabled`] if the runtime was built without
    /// [`event_stream`](RuntimeBuilder::event_stream): such a runtime records no events
    /// (unless it has a watcher), so it keeps its fast paths.
    ///
    /// ```
    /// use futures::{FutureExt, StreamExt};
    /// use pipewright::{pipeline, EventKind, Runtime};
    ///
    /// let runtime = Runtime::builder(()).event_stream(64).start().unwrap();
    /// let inc = pipeline!(|value: u32, _ctx: &()| { value = value + 1; });
    /// runtime.invoke_pipeline(&inc, 1).unwrap(); // before anyone subscribed: not seen
    /// let mut first = runtime.events().unwrap();
    /// let ident = runtime.invoke_pipeline(&inc, 2).unwrap().ident().clone();
    /// let mut second = runtime.events().unwrap();
    /// // Synchronous: its events are there already.
    /// let event = first.next().now_or_never().flatten().unwrap();
    /// assert_eq!(event.ident(), &ident);
    /// assert!(matches!(event.kind(), EventKind::Admitted));
    /// assert_eq!(first.by_ref().take(2).collect::<Vec<_>>().now_or_never().unwrap().len(), 2);
    /// assert!(first.next().now_or_never().is_none()); // nothing more yet
    /// assert!(second.next().now_or_never().is_none()); // subscribed after them
    /// ```
    pub fn events(&self) -> Result<EventStream, SubscribeError> {
        let (from, receiver) = self
            .core
            .events
            .as_ref()
            .and_then(|log| log.subscribe())
            .ok_or(SubscribeError::NotEnabled)?;
        Ok(EventStream::new(from, receiver))
    }

    /// The active instances, grouped by queue (queues sorted by name; in each, those that
    /// hold a slot, then those that wait for one, each by ident: the order they arrived
    /// in, among the invocations of one thread): each with its ident, state, parent and
    /// argument.
    ///
    /// An instance leaves this list the moment it stops holding (or waiting for) a slot:
    /// once cancelled, it is not listed, so the list agrees with
    /// [`QueueInfo::running`](crate::introspection::QueueInfo::running) and
    /// [`QueueInfo::waiting`](crate::introspection::QueueInfo::waiting). It stays live until its
    /// `finally!` is done: [`instance`](Runtime::instance) and
    /// [`live_counts`](Runtime::live_counts) still see it, with the state
    /// [`Cancelling`](crate::introspection::InstanceState::Cancelling), so a hook such as the watcher's
    /// `Cancelling` event can still look it up.
    ///
    /// A step that asks sees its own instance (and, for a child, its parents), even one
    /// that started without a registry entry because nothing observes the runtime (a
    /// *quick run*, README "The runtime"): asking makes it an ordinary instance, whose
    /// argument is listed once that step has returned. Such a run on another thread is
    /// not listed until it waits for something.
    ///
    /// ```
    /// use pipewright::{pipeline, Runtime};
    /// use pipewright::introspection::InstanceState;
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let save = pipeline!(|value: u32, _ctx: &()| {
    ///     tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    /// })
    /// .enqueued();
    /// let runtime = Runtime::builder(()).register("save", save).start().unwrap();
    /// runtime.invoke("save", 1_u32).unwrap();
    /// runtime.invoke("save", 2_u32).unwrap();
    /// let active = runtime.active();
    /// let states: Vec<_> = active[0].instances().iter().map(|i| i.state()).collect();
    /// assert_eq!(active[0].name(), "save");
    /// assert_eq!(states, [InstanceState::Suspended, InstanceState::Waiting]);
    /// assert_eq!(active[0].instances()[1].argument().downcast_ref::<u32>(), Some(&2));
    /// # }
    /// ```
    pub fn active(&self) -> Vec<ActiveQueue> {
        self.core.adopt_asking();
        self.core.registry.active()
    }

    /// The live instance `ident`, if it is live: from the moment it joins its queue until
    /// its `finally!` is done (a cancelled instance included, see [`active`](Runtime::active)).
    ///
    /// ```
    /// # use pipewright::{pipeline, Runtime};
    /// # use pipewright::introspection::InstanceState;
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let forever = pipeline!(|value: i32, _ctx: &()| { std::future::pending::<()>().await; });
    /// let runtime = Runtime::builder(()).start().unwrap();
    /// let handle = runtime.invoke_pipeline(&forever, 1).unwrap();
    /// assert_eq!(runtime.instance(handle.ident()).unwrap().state(), InstanceState::Suspended);
    /// # }
    /// ```
    pub fn instance(&self, ident: &Ident) -> Option<InstanceInfo> {
        self.core.adopt_asking();
        self.core
            .registry
            .instance(ident.id)
            .filter(|info| info.ident() == ident)
    }

    /// What the queue `name` holds and has done: running and waiting counts, how many
    /// instances it performed, its last result, last error and last cancellation. `None`
    /// for a queue that was never used (or a per-key queue that emptied).
    ///
    /// ```
    /// # use pipewright::{pipeline, Runtime};
    /// let p = pipeline!(|value: i32, _ctx: &()| { value = value + 1; });
    /// let runtime = Runtime::builder(()).register("inc", p).start().unwrap();
    /// runtime.invoke("inc", 1).unwrap();
    /// let queue = runtime.queue_info("inc").unwrap();
    /// assert_eq!((queue.running(), queue.waiting(), queue.performed()), (0, 0, 1));
    /// assert_eq!(queue.last_result().unwrap().downcast_ref::<i32>(), Some(&2));
    /// ```
    pub fn queue_info(&self, name: &str) -> Option<QueueInfo> {
        self.core.registry.queue_info(name)
    }

    /// How many instances are live (waiting, running, cancelling, or waiting for
    /// children), and how many queues the runtime keeps.
    ///
    /// ```
    /// # use pipewright::Runtime;
    /// assert_eq!(Runtime::builder(()).start().unwrap().live_counts(), (0, 0));
    /// ```
    pub fn live_counts(&self) -> (usize, usize) {
        self.core.adopt_asking();
        self.core.registry.counts()
    }
}
