//! The runtime: owns the context, the registered pipelines and the instances that wait.
//!
//! `invoke` runs the first synchronous stretch of an instance right in the caller's stack
//! (inside the transactor, if any). If the instance completes there, its result goes
//! straight into the returned handle: no task, no channel, no allocation. Only an instance
//! that waits on something is moved into a tokio task, which polls it from then on.

use std::any::{type_name, Any};
use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll};

use tokio::sync::oneshot;

use crate::cancellation::{Control, ErasedControl};
use crate::error::{CancelError, Error, InvokeError, StartError};
use crate::events::EventLog;
use crate::hooks::{Event, Hooks, InstanceSpan};
use crate::ident::{Ident, Name};
use crate::instance::{in_step, Completion, Instance};
use crate::introspection::{ActiveQueue, InstanceInfo, InstanceState, QueueInfo};
use crate::invocation::Invocation;
use crate::pipeline::Pipeline;
use crate::pipeline_handle::PipelineHandle;
use crate::queue::{FastMap, QueueSpec};
use crate::registry::{Admission, Effects, Ending, Garbage, Join, Registry};

/// A registered pipeline, its value type erased so pipelines of any value type can share
/// one runtime. `invoke` recovers the type with a downcast, which is where a wrong
/// argument type is caught.
struct Registered {
    name: Arc<str>,
    pipeline: Box<dyn Any + Send + Sync>,
    value_type: &'static str,
    /// The fixed queue it runs in and its configuration, checked at `start`.
    queue: Option<(Name, crate::behaviour::Concurrency)>,
}

/// Builds a [`Runtime`]: its context, its named pipelines and its hooks.
///
/// # Examples
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use pipelines::{pipeline, Runtime};
///
/// let reported = Arc::new(Mutex::new(Vec::new()));
/// let sink = reported.clone();
/// let runtime = Runtime::builder(())
///     .register("parse", pipeline!(|value: String, _ctx: &()| {
///         value.trim().parse::<i64>().map(|n| (n * 2).to_string());
///     }))
///     .error_reporter(move |ident, error| {
///         sink.lock().unwrap().push(format!("{}: {error}", ident.name()))
///     })
///     .start()
///     .unwrap();
/// let doubled = runtime.invoke("parse", " 21 ".to_string()).unwrap().try_result().unwrap();
/// assert_eq!(doubled.unwrap(), "42");
/// assert!(runtime.invoke("parse", "x".to_string()).unwrap().try_result().unwrap().is_err());
/// assert_eq!(reported.lock().unwrap().len(), 1);
/// ```
pub struct RuntimeBuilder<C> {
    context: C,
    pipelines: Vec<Registered>,
    hooks: Hooks,
    executor: Option<tokio::runtime::Handle>,
}

impl<C> fmt::Debug for RuntimeBuilder<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RuntimeBuilder")
            .field(
                "pipelines",
                &self.pipelines.iter().map(|p| &*p.name).collect::<Vec<_>>(),
            )
            .field("hooks", &self.hooks)
            .finish_non_exhaustive()
    }
}

impl<C: Send + Sync + 'static> RuntimeBuilder<C> {
    /// Registers `pipeline` under `name`, so it can be invoked by name. Its implicit queue
    /// takes the name (an explicit or per-key queue is kept).
    ///
    /// ```
    /// # use pipelines::{pipeline, Runtime};
    /// let runtime = Runtime::builder(())
    ///     .register("inc", pipeline!(|value: i32, _ctx: &()| { value + 1; }))
    ///     .start()
    ///     .unwrap();
    /// assert!(runtime.is_registered("inc"));
    /// ```
    pub fn register<V>(mut self, name: impl Into<String>, pipeline: Pipeline<V, C>) -> Self
    where
        V: Clone + Send + Sync + 'static,
    {
        let name: Arc<str> = Arc::from(name.into());
        let pipeline = pipeline.registered_as(&name);
        let config = pipeline.config();
        let queue = match &config.queue {
            QueueSpec::Registered(queue) | QueueSpec::Explicit(queue) => {
                Some((queue.clone(), config.concurrency))
            }
            QueueSpec::Implicit | QueueSpec::Keyed(_) => None,
        };
        self.pipelines.push(Registered {
            name,
            pipeline: Box::new(pipeline),
            value_type: type_name::<V>(),
            queue,
        });
        self
    }

    /// Sets the error reporter: called exactly once for every error that no `rescue!`
    /// handled on the way up to the root instance (or a detached child), with that
    /// instance's ident. Cancelled and dropped instances are not errors and are not
    /// reported.
    ///
    /// ```
    /// # use std::sync::atomic::{AtomicUsize, Ordering};
    /// # use std::sync::Arc;
    /// # use pipelines::{pipeline, Runtime};
    /// let count = Arc::new(AtomicUsize::new(0));
    /// let seen = count.clone();
    /// let runtime = Runtime::builder(())
    ///     .error_reporter(move |_ident, _error| { seen.fetch_add(1, Ordering::SeqCst); })
    ///     .start()
    ///     .unwrap();
    /// let failing = pipeline!(|value: i32, _ctx: &()| { Err::<i32, _>("no"); });
    /// let _ = runtime.invoke_pipeline(&failing, 1).unwrap();
    /// assert_eq!(count.load(Ordering::SeqCst), 1);
    /// ```
    pub fn error_reporter(
        mut self,
        reporter: impl Fn(&Ident, &Error) + Send + Sync + 'static,
    ) -> Self {
        self.hooks.error_reporter = Some(Arc::new(reporter));
        self
    }

    /// Sets the transactor: it wraps every synchronous stretch of steps (from an
    /// invocation or a resumption up to the next wait or the end) and must call the
    /// function it is given, once. Use it to batch state updates. A transactor that does
    /// not call its function has the stretch run right after it returns.
    ///
    /// ```
    /// # use std::sync::{Arc, Mutex};
    /// # use pipelines::{pipeline, Runtime};
    /// let log = Arc::new(Mutex::new(Vec::new()));
    /// let in_log = log.clone();
    /// let runtime = Runtime::builder(log.clone())
    ///     .transactor(move |stretch| {
    ///         in_log.lock().unwrap().push("begin");
    ///         stretch();
    ///         in_log.lock().unwrap().push("commit");
    ///     })
    ///     .start()
    ///     .unwrap();
    /// let p = pipeline!(|value: i32, log: &Arc<Mutex<Vec<&'static str>>>| {
    ///     log.lock().unwrap().push("step");
    ///     log.lock().unwrap().push("step");
    /// });
    /// let _ = runtime.invoke_pipeline(&p, 0).unwrap();
    /// assert_eq!(*log.lock().unwrap(), ["begin", "step", "step", "commit"]);
    /// ```
    pub fn transactor(
        mut self,
        transactor: impl Fn(&mut dyn FnMut()) + Send + Sync + 'static,
    ) -> Self {
        self.hooks.transactor = Some(Arc::new(transactor));
        self
    }

    /// Sets the watcher: told of every change of an instance's state (see [`Event`]), in
    /// the order the changes happened, one event at a time, never while the runtime's
    /// lock is held. It may call back into the runtime.
    ///
    /// Who calls it: the caller whose call recorded the events, before that call returns
    /// (so after a synchronous `invoke` the watcher has seen its events), unless another
    /// thread is delivering; that one then delivers them, and hands what is left to a
    /// thread of its own after 64 events of others, so a slow watcher never stalls an
    /// unrelated caller. At most 65,536 undelivered events are kept: a watcher slower
    /// than the runtime loses the excess and is told how many with
    /// [`EventKind::Lagged`](crate::EventKind::Lagged).
    ///
    /// ```
    /// # use std::sync::{Arc, Mutex};
    /// # use pipelines::{pipeline, EventKind, Runtime};
    /// let events = Arc::new(Mutex::new(Vec::new()));
    /// let sink = events.clone();
    /// let runtime = Runtime::builder(())
    ///     .watcher(move |event| sink.lock().unwrap().push(event.kind().clone()))
    ///     .start()
    ///     .unwrap();
    /// let failing = pipeline!(|value: i32, _ctx: &()| { Err::<i32, _>("no"); });
    /// let _ = runtime.invoke_pipeline(&failing, 1).unwrap();
    /// assert!(matches!(events.lock().unwrap()[2], EventKind::Failed(_)));
    /// ```
    pub fn watcher(mut self, watcher: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        self.hooks.watcher = Some(Arc::new(watcher));
        self
    }

    /// Sets the `on_cancel` hook: told which instance was cancelled while it waited on a
    /// future. The future itself is dropped, which stops the work behind it; use the hook
    /// for what dropping cannot undo (telling a server, releasing a lock elsewhere).
    ///
    /// ```
    /// # use std::sync::{Arc, Mutex};
    /// # use pipelines::{pipeline, Runtime};
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let cancelled = Arc::new(Mutex::new(Vec::new()));
    /// let sink = cancelled.clone();
    /// let runtime = Runtime::builder(())
    ///     .on_cancel(move |ident| sink.lock().unwrap().push(ident.clone()))
    ///     .start()
    ///     .unwrap();
    /// let slow = pipeline!(|value: i32, _ctx: &()| { std::future::pending::<()>().await; });
    /// let handle = runtime.invoke_pipeline(&slow, 1).unwrap();
    /// assert!(handle.cancel());
    /// let ident = handle.ident().clone();
    /// assert!(handle.await.unwrap_err().is_cancelled());
    /// assert_eq!(*cancelled.lock().unwrap(), [ident]);
    /// # }
    /// ```
    pub fn on_cancel(mut self, on_cancel: impl Fn(&Ident) + Send + Sync + 'static) -> Self {
        self.hooks.on_cancel = Some(Arc::new(on_cancel));
        self
    }

    /// The tokio runtime that drives instances which wait, when `invoke` is called from a
    /// thread outside any tokio runtime. By default it is the runtime `start` was called
    /// in, if any; an invocation from inside a tokio runtime always uses that one.
    ///
    /// ```
    /// # use pipelines::Runtime;
    /// let tokio_runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    /// let runtime = Runtime::builder(()).executor(tokio_runtime.handle().clone()).start().unwrap();
    /// # drop(runtime);
    /// ```
    pub fn executor(mut self, handle: tokio::runtime::Handle) -> Self {
        self.executor = Some(handle);
        self
    }

    /// Starts the runtime. Fails if two pipelines share a name, or if pipelines that
    /// share a queue disagree on its configuration.
    ///
    /// ```
    /// # use pipelines::{pipeline, Runtime};
    /// let runtime = Runtime::builder("config").start().unwrap();
    /// assert_eq!(*runtime.context(), "config");
    ///
    /// let a = pipeline!(|value: u8, _ctx: &()| { value; }).set_queue("q").enqueued();
    /// let b = pipeline!(|value: u8, _ctx: &()| { value; }).set_queue("q").dropping();
    /// let error = Runtime::builder(()).register("a", a).register("b", b).start().unwrap_err();
    /// assert!(error.to_string().contains("queue `q` is configured as enqueued(max 1) (by `a`)"));
    /// ```
    pub fn start(self) -> Result<Runtime<C>, StartError> {
        let mut pipelines: FastMap<Arc<str>, Registered> = FastMap::default();
        let events = self
            .hooks
            .watcher
            .is_some()
            .then(|| Arc::new(EventLog::default()));
        let mut registry = Registry::new(events.clone());
        for registered in self.pipelines {
            if pipelines.contains_key(&registered.name) {
                return Err(StartError::DuplicateName {
                    name: registered.name.to_string(),
                });
            }
            if let Some((queue, concurrency)) = &registered.queue {
                let by = Name::Shared(Arc::clone(&registered.name));
                registry.declare(queue.clone(), *concurrency, by)?;
            }
            pipelines.insert(Arc::clone(&registered.name), registered);
        }
        let executor = self
            .executor
            .or_else(|| tokio::runtime::Handle::try_current().ok());
        Ok(Runtime {
            core: Arc::new(Core {
                context: Arc::new(self.context),
                pipelines,
                hooks: self.hooks,
                executor,
                stopped: AtomicBool::new(false),
                shutdown: tokio::sync::watch::channel(false).0,
                next_id: AtomicU64::new(1),
                registry: Mutex::new(registry),
                events,
            }),
        })
    }
}

/// Runs pipelines: by registered name or by value, with a shared context.
///
/// Cheap to clone (all clones are the same runtime), `Send` and `Sync` when the context is.
///
/// # Examples
///
/// ```
/// use pipelines::{pipeline, Runtime};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// async fn async_inc(value: i32) -> i32 {
///     tokio::time::sleep(std::time::Duration::from_millis(100)).await;
///     value + 1
/// }
///
/// let inc_3 = pipeline!(|value: i32, _ctx: &()| {
///     value + 1;
///     async_inc(value).await;
///     value + 1;
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
/// # use pipelines::Runtime;
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
/// # use pipelines::{in_pipeline, pipeline, Runtime};
/// assert!(!in_pipeline());
/// let p = pipeline!(|_value: bool, _ctx: &()| { in_pipeline(); });
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
    /// # use pipelines::Runtime;
    /// let runtime = Runtime::builder(5_u32).start().unwrap();
    /// assert_eq!(*runtime.context(), 5);
    /// ```
    pub fn builder(context: C) -> RuntimeBuilder<C> {
        RuntimeBuilder {
            context,
            pipelines: Vec::new(),
            hooks: Hooks::default(),
            executor: None,
        }
    }

    /// The context steps read.
    ///
    /// ```
    /// # use pipelines::Runtime;
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
    /// # use pipelines::Runtime;
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
    /// # use pipelines::Runtime;
    /// assert!(!Runtime::builder(()).start().unwrap().is_registered("nothing"));
    /// ```
    pub fn is_registered(&self, name: &str) -> bool {
        self.core.pipelines.contains_key(name)
    }

    /// `true` once [`stop`](Runtime::stop) was called.
    ///
    /// ```
    /// # use pipelines::Runtime;
    /// let runtime = Runtime::builder(()).start().unwrap();
    /// runtime.stop();
    /// assert!(runtime.is_stopped());
    /// ```
    pub fn is_stopped(&self) -> bool {
        self.core.stopped.load(Ordering::Acquire)
    }

    /// Invokes the pipeline registered under `name` with `argument`.
    ///
    /// The instance joins its queue now and, if admitted, starts in the caller's stack;
    /// see [`Invocation`] for how to get its result. Fails, without running anything, if
    /// no pipeline has this name, if its value type is not `V`, if its queue
    /// configuration conflicts with the queue's, or if the runtime was stopped.
    ///
    /// ```
    /// use pipelines::{pipeline, InvokeError, Runtime};
    ///
    /// let runtime = Runtime::builder(())
    ///     .register("inc", pipeline!(|value: i32, _ctx: &()| { value + 1; }))
    ///     .start()
    ///     .unwrap();
    /// assert_eq!(runtime.invoke("inc", 1).unwrap().try_result().unwrap().unwrap(), 2);
    /// let wrong = runtime.invoke("inc", "one").unwrap_err();
    /// assert!(matches!(wrong, InvokeError::WrongArgumentType { .. }));
    /// ```
    pub fn invoke<V>(&self, name: &str, argument: V) -> Result<Invocation<V>, InvokeError>
    where
        V: Clone + Send + Sync + 'static,
    {
        let (pipeline, name) = self.resolve::<V>(name)?;
        self.core.start_root(pipeline.clone(), name, argument)
    }

    /// Resolves the pipeline registered under `name` once, as a typed handle: invoking
    /// through it looks no name up and checks no type, and its argument type is known,
    /// so an integer literal gets the right type (`handle.invoke(1)` for a `u64`
    /// pipeline). Fails as [`invoke`](Runtime::invoke) would for an unknown name or a
    /// wrong value type.
    ///
    /// ```
    /// use pipelines::{pipeline, InvokeError, Runtime};
    ///
    /// let runtime = Runtime::builder(())
    ///     .register("inc", pipeline!(|value: u64, _ctx: &()| { value + 1; }))
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
        let (pipeline, name) = self.resolve::<V>(name)?;
        Ok(PipelineHandle::new(
            Arc::clone(&self.core),
            pipeline.clone(),
            name,
        ))
    }

    /// The pipeline registered under `name`, if its value type is `V`, and its name.
    fn resolve<V>(&self, name: &str) -> Result<(&Pipeline<V, C>, Name), InvokeError>
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
        Ok((pipeline, Name::Shared(Arc::clone(&registered.name))))
    }

    /// Invokes a pipeline value, registered or not, with `argument`. An unregistered
    /// pipeline is named after its site (`pipeline@file:line:column`) and runs in its
    /// implicit queue.
    ///
    /// ```
    /// # use pipelines::{pipeline, Runtime};
    /// let double = pipeline!(|value: i32, _ctx: &()| { value * 2; });
    /// let runtime = Runtime::builder(()).start().unwrap();
    /// let handle = runtime.invoke_pipeline(&double, 4).unwrap();
    /// assert!(handle.ident().name().starts_with("pipeline@"));
    /// ```
    pub fn invoke_pipeline<V>(
        &self,
        pipeline: &Pipeline<V, C>,
        argument: V,
    ) -> Result<Invocation<V>, InvokeError>
    where
        V: Clone + Send + Sync + 'static,
    {
        let name = Name::Static(pipeline.site_name());
        self.core.start_root(pipeline.clone(), name, argument)
    }

    /// Cancels the instance `ident` as SEMANTICS 4 says: climbs through its non-detached
    /// parents to the topmost one, and cancels that one and all its descendants,
    /// children first. Each started instance runs its `finally!` with
    /// [`Error::Cancelled`]; callers are told "cancelled".
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
    /// # use pipelines::{pipeline, Runtime};
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let forever = pipeline!(|value: i32, _ctx: &()| { std::future::pending::<()>().await; });
    /// let runtime = Runtime::builder(()).start().unwrap();
    /// let handle = runtime.invoke_pipeline(&forever, 1).unwrap();
    /// runtime.cancel(handle.ident()).unwrap();
    /// assert!(handle.await.unwrap_err().is_cancelled());
    /// # }
    /// ```
    pub fn cancel(&self, ident: &Ident) -> Result<(), CancelError> {
        if self.core.cancel_ident(ident) {
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
    /// # use pipelines::{pipeline, Runtime};
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let forever = pipeline!(|value: i32, _ctx: &()| { std::future::pending::<()>().await; });
    /// let runtime = Runtime::builder(()).start().unwrap();
    /// let handles: Vec<_> = (0..3).map(|n| runtime.invoke_pipeline(&forever, n).unwrap()).collect();
    /// assert_eq!(runtime.cancel_all(handles.iter().map(|h| h.ident())), 3);
    /// # }
    /// ```
    pub fn cancel_all<'a>(&self, idents: impl IntoIterator<Item = &'a Ident>) -> usize {
        idents
            .into_iter()
            .filter(|ident| self.core.cancel_ident(ident))
            .count()
    }

    /// Stops the runtime: refuses later invocations ([`InvokeError::Stopped`]), cancels
    /// every live instance whose pipeline is `cancel_on_shutdown` (the default), and stops
    /// its supervisors (their children's channels close). Instances of pipelines marked
    /// `cancel_on_shutdown(false)` finish normally, with their children.
    ///
    /// ```
    /// # use pipelines::{pipeline, Runtime, InvokeError};
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
        self.core.stopped.store(true, Ordering::Release);
        self.core.shutdown.send_replace(true);
        let mut fx = Effects::default();
        self.core.lock().stop(&mut fx);
        self.core.after(fx);
    }

    /// The live instances, grouped by queue (queues sorted by name): each with its ident,
    /// state, parent and argument.
    ///
    /// ```
    /// use pipelines::{pipeline, InstanceState, Runtime};
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
        self.core.lock().active()
    }

    /// The live instance `ident`, if it is live.
    ///
    /// ```
    /// # use pipelines::{pipeline, InstanceState, Runtime};
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let forever = pipeline!(|value: i32, _ctx: &()| { std::future::pending::<()>().await; });
    /// let runtime = Runtime::builder(()).start().unwrap();
    /// let handle = runtime.invoke_pipeline(&forever, 1).unwrap();
    /// assert_eq!(runtime.instance(handle.ident()).unwrap().state(), InstanceState::Suspended);
    /// # }
    /// ```
    pub fn instance(&self, ident: &Ident) -> Option<InstanceInfo> {
        self.core
            .lock()
            .instance(ident.id)
            .filter(|info| info.ident() == ident)
    }

    /// What the queue `name` holds and has done: running and waiting counts, how many
    /// instances it performed, its last result, last error and last cancellation. `None`
    /// for a queue that was never used (or a per-key queue that emptied).
    ///
    /// ```
    /// # use pipelines::{pipeline, Runtime};
    /// let p = pipeline!(|value: i32, _ctx: &()| { value + 1; });
    /// let runtime = Runtime::builder(()).register("inc", p).start().unwrap();
    /// runtime.invoke("inc", 1).unwrap();
    /// let queue = runtime.queue("inc").unwrap();
    /// assert_eq!((queue.running(), queue.waiting(), queue.performed()), (0, 0, 1));
    /// assert_eq!(queue.last_result().unwrap().downcast_ref::<i32>(), Some(&2));
    /// ```
    pub fn queue(&self, name: &str) -> Option<QueueInfo> {
        self.core.lock().queue_info(name)
    }

    /// How many instances are live (waiting, running, cancelling, or waiting for
    /// children), and how many queues the runtime keeps.
    ///
    /// ```
    /// # use pipelines::Runtime;
    /// assert_eq!(Runtime::builder(()).start().unwrap().live_counts(), (0, 0));
    /// ```
    pub fn live_counts(&self) -> (usize, usize) {
        let registry = self.core.lock();
        (registry.live_count(), registry.queue_count())
    }
}

/// What a nested pipeline step turned into.
pub(crate) enum ChildStart<V, C> {
    /// Run it (it may still have to wait for a slot).
    Run(Instance<V, C>),
    /// It runs on its own; the parent carries on.
    Detached,
    /// `use_existing`: the result of a live instance.
    Shared(oneshot::Receiver<Result<V, Error>>),
    /// Its queue refused it.
    Dropped,
    /// Its queue configuration is wrong: the step fails with this error.
    Refused(Error),
}

/// The outcome of joining a queue.
enum Joined<V, C> {
    Run(Instance<V, C>, Arc<Control<V>>),
    Shared {
        ident: Ident,
        control: Arc<Control<V>>,
        receiver: oneshot::Receiver<Result<V, Error>>,
    },
    Dropped(Ident, Arc<Control<V>>),
}

/// Cancels instances by id without knowing the context type: what an [`Invocation`]
/// holds to cancel its instance.
pub(crate) trait Canceller: Send + Sync {
    fn cancel(&self, ident: &Ident) -> bool;
}

/// The runtime's shared state. Instances reach it through `&Core`, handles through
/// `Arc<dyn Canceller>`.
pub(crate) struct Core<C> {
    /// In an `Arc` so that a waiting step's future can own a share of it.
    context: Arc<C>,
    pipelines: FastMap<Arc<str>, Registered>,
    hooks: Hooks,
    executor: Option<tokio::runtime::Handle>,
    stopped: AtomicBool,
    /// Tells supervisors the runtime stopped.
    shutdown: tokio::sync::watch::Sender<bool>,
    next_id: AtomicU64,
    registry: Mutex<Registry>,
    /// The watcher's events (also recorded into by the registry), when there is one.
    events: Option<Arc<EventLog>>,
}

impl<C: Send + Sync + 'static> Canceller for Core<C> {
    fn cancel(&self, ident: &Ident) -> bool {
        self.cancel_ident(ident)
    }
}

impl<C: Send + Sync + 'static> Core<C> {
    pub(crate) fn context(&self) -> &Arc<C> {
        &self.context
    }

    pub(crate) fn hooks(&self) -> &Hooks {
        &self.hooks
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        // The registry is consistent at every unlock (no user code runs under the lock),
        // so a poisoned lock is still safe to use.
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Carries out what the registry decided, after the lock was released: signals, then
    /// events, then drops the references the registry let go of.
    fn after(&self, fx: Effects) {
        let garbage = fx.apply();
        self.deliver_events();
        if !garbage.is_empty() {
            self.drop_garbage(garbage);
        }
    }

    /// Drops values the runtime kept (a queue's last result, an argument). Their `Drop` is
    /// user code: a panic there is reported, for the instance whose end let go of them,
    /// and changes no outcome (the instance it belonged to has already ended).
    fn drop_garbage(&self, garbage: Garbage) {
        let ident = garbage.on_behalf_of.clone();
        for reference in garbage.into_references() {
            if let Err(panic) = catch_unwind(AssertUnwindSafe(move || drop(reference))) {
                let ident = ident
                    .clone()
                    .unwrap_or_else(|| self.ident(&Name::Static("pipelines")));
                let error = Error::from_hook_panic("drop of a value the runtime kept", panic);
                self.hooks.report(&ident, &error);
            }
        }
    }

    /// Delivers recorded events in order, one at a time (see `events` for who delivers
    /// what).
    fn deliver_events(&self) {
        if let Some(log) = &self.events {
            log.deliver(&self.hooks, || self.executor());
        }
    }

    /// Tells the watcher about something outside the queues (supervision).
    pub(crate) fn emit(&self, ident: &Ident, queue: &Name, kind: crate::hooks::EventKind) {
        self.lock().emit_named(ident, queue, kind);
        self.deliver_events();
    }

    /// A fresh ident for something the runtime does not run as an instance.
    pub(crate) fn ident(&self, name: &Name) -> Ident {
        Ident {
            name: name.clone(),
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
        }
    }

    pub(crate) fn set_state(&self, id: u64, state: InstanceState) {
        self.lock().set_state(id, state);
        self.deliver_events();
    }

    pub(crate) fn await_children(&self, id: u64) -> bool {
        self.lock().await_children(id)
    }

    pub(crate) fn cancel_id(&self, id: u64) -> bool {
        let mut fx = Effects::default();
        let cancelled = self.lock().cancel(id, &mut fx);
        self.after(fx);
        cancelled
    }

    fn cancel_ident(&self, ident: &Ident) -> bool {
        let mut fx = Effects::default();
        let cancelled = {
            let mut registry = self.lock();
            registry.ident_of(ident.id).as_ref() == Some(ident)
                && registry.cancel(ident.id, &mut fx)
        };
        self.after(fx);
        cancelled
    }

    /// Takes `id` out of its queue without cancelling its tree (it could not wait).
    pub(crate) fn withdraw(&self, id: u64) {
        let mut fx = Effects::default();
        self.lock().withdraw(id, &mut fx);
        self.after(fx);
    }

    /// Records how `id` ended; `true` if a cancellation was accepted before its value
    /// arrived (the value must then be reported as cancelled).
    pub(crate) fn finish(
        &self,
        id: u64,
        ending: Ending,
        result: Option<Arc<dyn ErasedControl>>,
    ) -> bool {
        let mut fx = Effects::default();
        let cancelled_first = self.lock().finish(id, ending, result, &mut fx);
        self.after(fx);
        cancelled_first
    }

    /// Joins `pipeline`'s queue with `argument` and builds the instance, or says why not.
    fn join<V>(
        &self,
        pipeline: Pipeline<V, C>,
        name: Name,
        argument: V,
        parent: Option<u64>,
        detached: bool,
    ) -> Result<Joined<V, C>, InvokeError>
    where
        V: Clone + Send + Sync + 'static,
    {
        let config = pipeline.config();
        // Borrowed from the configuration where possible: no reference count to touch.
        let computed;
        let (queue, keyed) = match &config.queue {
            QueueSpec::Implicit => {
                computed = Name::Static(pipeline.site_name());
                (&computed, false)
            }
            QueueSpec::Registered(queue) | QueueSpec::Explicit(queue) => (queue, false),
            // User code: called before the lock is taken.
            QueueSpec::Keyed(key) => {
                computed = Name::Shared(Arc::from(contained("queue key", || key(&argument))?));
                (&computed, true)
            }
        };
        let concurrency = config.concurrency;
        let identity = match (concurrency.use_existing(), config.identity) {
            (false, _) => None,
            (true, Some(identity)) => Some(identity),
            (true, None) => {
                return Err(InvokeError::InvalidConcurrency {
                    queue: queue.to_string(),
                    concurrency,
                    problem: "use_existing must compare arguments: call `.use_existing()` on the pipeline (its value type must be `Hash + Eq`)",
                })
            }
        };
        let hash = match identity {
            Some(identity) => Some(contained("hash", || (identity.hash)(&argument))?),
            None => None,
        };
        let control = Arc::new(Control::new(
            contained("clone", || argument.clone())?,
            false,
        ));
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let ident = Ident { name, id };
        let pipeline_key = pipeline.key();
        let mut fx = Effects::default();
        let admission = loop {
            let mut registry = self.lock();
            if let (Some(hash), Some(identity)) = (hash, identity) {
                let (generation, candidates) =
                    registry.existing_candidates(queue, hash, pipeline_key);
                if !candidates.is_empty() {
                    // Equality is user code: compared without the lock, then validated.
                    drop(registry);
                    let found = contained("eq", || {
                        candidates.iter().find(|candidate| {
                            candidate
                                .control
                                .as_any()
                                .downcast_ref::<Control<V>>()
                                .is_some_and(|other| (identity.eq)(other.argument(), &argument))
                        })
                    })?;
                    let found =
                        found.map(|found| (found.ident.clone(), Arc::clone(&found.control)));
                    registry = self.lock();
                    if registry.generation(queue) != generation {
                        drop(registry);
                        drop(found);
                        drop(candidates);
                        continue;
                    }
                    if let Some((found_ident, found_control)) = found {
                        if let Ok(shared) = found_control.into_any().downcast::<Control<V>>() {
                            let (sender, receiver) = oneshot::channel();
                            shared.add_sharer(sender);
                            drop(registry);
                            drop(candidates);
                            return Ok(Joined::Shared {
                                ident: found_ident,
                                control: shared,
                                receiver,
                            });
                        }
                    }
                }
            }
            let join = Join {
                id,
                ident: &ident,
                queue,
                keyed,
                concurrency,
                control: Arc::clone(&control) as Arc<dyn ErasedControl>,
                parent,
                detached,
                cancel_on_shutdown: config.cancel_on_shutdown,
                existing: hash,
                pipeline_key,
            };
            match registry.join(join, &mut fx) {
                Ok(admission) => break admission,
                Err(error) => return Err(error),
            }
        };
        self.after(fx);
        Ok(match admission {
            Admission::Drop => Joined::Dropped(ident, control),
            Admission::Start | Admission::Wait => {
                let span = InstanceSpan::new(&ident, queue);
                if admission == Admission::Start {
                    span.state("started");
                } else {
                    span.state("waiting");
                }
                let instance = Instance::new(
                    pipeline,
                    id,
                    ident,
                    Arc::clone(&control),
                    argument,
                    admission == Admission::Start,
                    span,
                );
                Joined::Run(instance, control)
            }
        })
    }

    /// A root invocation: joins the queue, runs the first stretch inline if admitted, and
    /// moves the instance to a task if it has to wait.
    pub(crate) fn start_root<V>(
        self: &Arc<Self>,
        pipeline: Pipeline<V, C>,
        name: Name,
        argument: V,
    ) -> Result<Invocation<V>, InvokeError>
    where
        V: Clone + Send + Sync + 'static,
    {
        if self.stopped.load(Ordering::Acquire) {
            return Err(InvokeError::Stopped);
        }
        let canceller = Arc::clone(self) as Arc<dyn Canceller>;
        let (mut instance, control) = match self.join(pipeline, name, argument, None, false)? {
            Joined::Run(instance, control) => (instance, control),
            Joined::Shared {
                ident,
                control,
                receiver,
            } => return Ok(Invocation::shared(ident, control, canceller, receiver)),
            Joined::Dropped(ident, control) => {
                return Ok(Invocation::ready(
                    ident,
                    control,
                    canceller,
                    Err(Error::Dropped),
                ))
            }
        };
        let ident = instance.ident().clone();
        let mut cx = Context::from_waker(futures::task::noop_waker_ref());
        if instance.is_admitted() && self.run_stretch(&mut instance, &mut cx).is_ready() {
            let result = self.finish_root(&ident, instance.into_completion());
            return Ok(Invocation::ready(ident, control, canceller, result));
        }
        let Some(executor) = self.executor() else {
            let result = self.run_without_executor(instance);
            return Ok(Invocation::ready(ident, control, canceller, result));
        };
        let task = executor.spawn(Task {
            instance: Some(instance),
            core: Arc::clone(self),
        });
        Ok(Invocation::running(ident, control, canceller, task))
    }

    /// A nested pipeline step (SEMANTICS 2).
    pub(crate) fn start_child<V>(
        self: &Arc<Self>,
        parent: u64,
        pipeline: Pipeline<V, C>,
        value: V,
    ) -> ChildStart<V, C>
    where
        V: Clone + Send + Sync + 'static,
    {
        let detached = pipeline.is_detached();
        // The child would be driven one level deeper on this stack: past the limit, a
        // detached child goes to a task of its own (a fresh stack), anything else fails.
        let too_deep = crate::instance::driving_depth() >= crate::NESTING_LIMIT;
        let on_a_task = too_deep && detached && self.executor().is_some();
        if too_deep && !on_a_task {
            return ChildStart::Refused(Error::NestingTooDeep {
                limit: crate::NESTING_LIMIT,
            });
        }
        let name = Name::Static(pipeline.site_name());
        match self.join(pipeline, name, value, Some(parent), detached) {
            Err(error) => ChildStart::Refused(Error::new(error)),
            Ok(Joined::Dropped(..)) if detached => ChildStart::Detached,
            Ok(Joined::Dropped(..)) => ChildStart::Dropped,
            Ok(Joined::Shared { .. }) if detached => ChildStart::Detached,
            Ok(Joined::Shared { receiver, .. }) => ChildStart::Shared(receiver),
            Ok(Joined::Run(mut instance, _)) if detached => {
                // Runs inline within the parent's stretch, then on a task of its own.
                let mut cx = Context::from_waker(futures::task::noop_waker_ref());
                if on_a_task
                    || !instance.is_admitted()
                    || instance.drive(self, &mut cx).is_pending()
                {
                    self.wait_on_task(instance);
                } else {
                    let ident = instance.ident().clone();
                    let _ = self.finish_root(&ident, instance.into_completion());
                }
                ChildStart::Detached
            }
            Ok(Joined::Run(instance, _)) => ChildStart::Run(instance),
        }
    }

    /// Moves a waiting detached instance to a task; without any executor, it fails.
    fn wait_on_task<V>(self: &Arc<Self>, instance: Instance<V, C>)
    where
        V: Clone + Send + Sync + 'static,
    {
        match self.executor() {
            Some(executor) => {
                drop(executor.spawn(Task {
                    instance: Some(instance),
                    core: Arc::clone(self),
                }));
            }
            None => drop(self.run_without_executor(instance)),
        }
    }

    /// Runs `instance` to its end on this thread when nothing can wait (no tokio runtime,
    /// or the one it waited on shut down): what it waits on fails with
    /// [`Error::NoExecutor`], and its error path runs synchronously (a `rescue!` or
    /// `finally!` step that waits fails the same way), so `finally!` still runs once.
    fn run_without_executor<V>(self: &Arc<Self>, mut instance: Instance<V, C>) -> Result<V, Error>
    where
        V: Clone + Send + Sync + 'static,
    {
        let mut cx = Context::from_waker(futures::task::noop_waker_ref());
        while self.run_stretch(&mut instance, &mut cx).is_pending() {
            instance.fail_waiting(Error::NoExecutor, self);
        }
        let ident = instance.ident().clone();
        self.finish_root(&ident, instance.into_completion())
    }

    /// Resolves once the runtime was stopped.
    pub(crate) fn shutdown(&self) -> tokio::sync::watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    pub(crate) fn executor(&self) -> Option<tokio::runtime::Handle> {
        tokio::runtime::Handle::try_current()
            .ok()
            .or_else(|| self.executor.clone())
    }

    /// Drives `instance` for one synchronous stretch, inside the transactor.
    fn run_stretch<V>(
        self: &Arc<Self>,
        instance: &mut Instance<V, C>,
        cx: &mut Context<'_>,
    ) -> Poll<()>
    where
        V: Clone + Send + Sync + 'static,
    {
        let mut polled = None;
        let transaction = self
            .hooks
            .in_transaction(&mut || polled = Some(instance.drive(self, cx)));
        if let Err(panic) = transaction {
            // The transactor panicked, before or after the stretch: the instance fails
            // (its error path runs outside any transaction), or, if it had already
            // completed, the panic is reported for it.
            if !instance.fail_from_outside(panic.clone(), self) {
                self.hooks.report(instance.ident(), &panic);
            }
            return instance.drive(self, cx);
        }
        match polled {
            Some(polled) => polled,
            None => instance.drive(self, cx),
        }
    }

    /// The caller's view of a root instance's completion; reports unhandled errors.
    fn finish_root<V>(&self, ident: &Ident, completion: Completion<V>) -> Result<V, Error> {
        match completion {
            Completion::Finished(value) | Completion::BrokeAll(value) => Ok(value),
            Completion::Failed(error) => {
                self.hooks.report(ident, &error);
                Err(error)
            }
            Completion::Cancelled => Err(Error::Cancelled),
            Completion::Dropped => Err(Error::Dropped),
        }
    }
}

/// Runs user code the runtime calls on an argument before the instance exists: a panic
/// there refuses the invocation instead of unwinding through the runtime.
fn contained<T>(operation: &'static str, code: impl FnOnce() -> T) -> Result<T, InvokeError> {
    catch_unwind(AssertUnwindSafe(code)).map_err(|panic| {
        let message = match Error::from_panic(panic) {
            Error::Panicked { message } => message.to_string(),
            other => other.to_string(),
        };
        InvokeError::ArgumentPanicked { operation, message }
    })
}

/// The tokio task that drives an instance after its first wait (or while it waits for a
/// slot).
struct Task<V, C>
where
    V: Clone + Send + Sync + 'static,
    C: Send + Sync + 'static,
{
    instance: Option<Instance<V, C>>,
    core: Arc<Core<C>>,
}

impl<V, C> Future for Task<V, C>
where
    V: Clone + Send + Sync + 'static,
    C: Send + Sync + 'static,
{
    type Output = Result<V, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let Some(instance) = this.instance.as_mut() else {
            return Poll::Ready(Err(Error::ResultTaken));
        };
        // A wake-up whose future is still pending runs no step: no transaction for it.
        if instance.poll_waiting(cx).is_pending() {
            return Poll::Pending;
        }
        if this.core.run_stretch(instance, cx).is_pending() {
            return Poll::Pending;
        }
        match this.instance.take() {
            Some(instance) => {
                let ident = instance.ident().clone();
                Poll::Ready(this.core.finish_root(&ident, instance.into_completion()))
            }
            None => Poll::Ready(Err(Error::ResultTaken)),
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
            control.set_orphaned(outcome);
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
