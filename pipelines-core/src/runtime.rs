//! The runtime: owns the context, the registered pipelines and the instances that wait.
//!
//! `invoke` runs the first synchronous stretch of an instance right in the caller's stack
//! (inside the transactor, if any). If the instance completes there, its result goes
//! straight into the returned handle: no task, no channel, no allocation. Only an instance
//! that waits on something is moved into a tokio task, which polls it from then on.

use std::any::{type_name, Any};
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasherDefault, Hasher};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use crate::cancellation::CancelSignal;
use crate::error::{Error, InvokeError, StartError};
use crate::hooks::Hooks;
use crate::instance::{in_step, Completion, Instance};
use crate::invocation::Invocation;
use crate::pipeline::Pipeline;

/// The name part of an [`Ident`]: a registration name or a pipeline's site name.
#[derive(Clone, PartialEq, Eq, Hash)]
enum Name {
    Static(&'static str),
    Shared(Arc<str>),
}

impl Name {
    fn as_str(&self) -> &str {
        match self {
            Name::Static(name) => name,
            Name::Shared(name) => name,
        }
    }
}

/// The identity of one pipeline instance: the pipeline's name and a number unique within
/// its runtime.
///
/// # Examples
///
/// ```
/// use pipelines::{pipeline, Runtime};
///
/// let p = pipeline!(|value: i32, _ctx: &()| { value; });
/// let runtime = Runtime::builder(()).register("echo", p).start().unwrap();
/// let first = runtime.invoke("echo", 1).unwrap();
/// let second = runtime.invoke("echo", 2).unwrap();
/// assert_eq!(first.ident().name(), "echo");
/// assert_ne!(first.ident(), second.ident());
/// assert_eq!(second.ident().to_string(), format!("echo#{}", second.ident().id()));
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Ident {
    name: Name,
    id: u64,
}

impl Ident {
    /// The name the pipeline was invoked by: its registration name, or for an unregistered
    /// pipeline its site name (`pipeline@file:line:column`).
    pub fn name(&self) -> &str {
        self.name.as_str()
    }

    /// The instance number, unique within the runtime.
    pub fn id(&self) -> u64 {
        self.id
    }
}

impl fmt::Display for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.name.as_str(), self.id)
    }
}

impl fmt::Debug for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ident({self})")
    }
}

/// FNV-1a, for the registry's names: they are short and chosen by the program (not by an
/// attacker), so a fast hash beats SipHash's flooding resistance on the invoke path.
struct NameHasher(u64);

impl Default for NameHasher {
    fn default() -> Self {
        NameHasher(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for NameHasher {
    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0 ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type Registry = HashMap<Arc<str>, Registered, BuildHasherDefault<NameHasher>>;

/// A registered pipeline, its value type erased so pipelines of any value type can share
/// one runtime. `invoke` recovers the type with a downcast, which is where a wrong
/// argument type is caught.
struct Registered {
    name: Arc<str>,
    pipeline: Box<dyn Any + Send + Sync>,
    value_type: &'static str,
}

struct Shared<C> {
    context: C,
    pipelines: Registry,
    hooks: Hooks,
    executor: Option<tokio::runtime::Handle>,
    stopped: AtomicBool,
    next_id: AtomicU64,
    /// Cancellation signals of the instances that run on tasks, for `stop`.
    suspended: Mutex<HashMap<u64, Arc<CancelSignal>>>,
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
    /// Registers `pipeline` under `name`, so it can be invoked by name.
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
        V: Clone + Send + 'static,
    {
        self.pipelines.push(Registered {
            name: Arc::from(name.into()),
            pipeline: Box::new(pipeline),
            value_type: type_name::<V>(),
        });
        self
    }

    /// Sets the error reporter: called exactly once for every error that no `rescue!`
    /// handled on the way up to the root instance, with the root's ident. Cancelled and
    /// dropped instances are not errors and are not reported.
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

    /// Starts the runtime. Fails if two pipelines share a name.
    ///
    /// ```
    /// # use pipelines::Runtime;
    /// let runtime = Runtime::builder("config").start().unwrap();
    /// assert_eq!(*runtime.context(), "config");
    /// ```
    pub fn start(self) -> Result<Runtime<C>, StartError> {
        let mut pipelines = Registry::default();
        for registered in self.pipelines {
            if pipelines.contains_key(&registered.name) {
                return Err(StartError::DuplicateName {
                    name: registered.name.to_string(),
                });
            }
            pipelines.insert(Arc::clone(&registered.name), registered);
        }
        let executor = self
            .executor
            .or_else(|| tokio::runtime::Handle::try_current().ok());
        Ok(Runtime {
            shared: Arc::new(Shared {
                context: self.context,
                pipelines,
                hooks: self.hooks,
                executor,
                stopped: AtomicBool::new(false),
                next_id: AtomicU64::new(1),
                suspended: Mutex::new(HashMap::new()),
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
    shared: Arc<Shared<C>>,
}

impl<C> Clone for Runtime<C> {
    fn clone(&self) -> Self {
        Runtime {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<C> fmt::Debug for Runtime<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&str> = self.shared.pipelines.keys().map(|k| &**k).collect();
        names.sort_unstable();
        f.debug_struct("Runtime")
            .field("pipelines", &names)
            .field("stopped", &self.shared.stopped.load(Ordering::Acquire))
            .finish_non_exhaustive()
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
        &self.shared.context
    }

    /// `true` if a pipeline is registered under `name`.
    ///
    /// ```
    /// # use pipelines::Runtime;
    /// assert!(!Runtime::builder(()).start().unwrap().is_registered("nothing"));
    /// ```
    pub fn is_registered(&self, name: &str) -> bool {
        self.shared.pipelines.contains_key(name)
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
        self.shared.stopped.load(Ordering::Acquire)
    }

    /// Invokes the pipeline registered under `name` with `argument`.
    ///
    /// The instance starts now, in the caller's stack; see [`Invocation`] for how to get
    /// its result. Fails, without running anything, if no pipeline has this name, if its
    /// value type is not `V`, or if the runtime was stopped.
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
        V: Clone + Send + 'static,
    {
        let Some(registered) = self.shared.pipelines.get(name) else {
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
        let name = Name::Shared(Arc::clone(&registered.name));
        self.start_instance(pipeline.clone(), name, argument)
    }

    /// Invokes a pipeline value, registered or not, with `argument`. An unregistered
    /// pipeline is named after its site (`pipeline@file:line:column`).
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
        V: Clone + Send + 'static,
    {
        let name = Name::Static(pipeline.site_name());
        self.start_instance(pipeline.clone(), name, argument)
    }

    /// Stops the runtime: refuses later invocations and cancels every instance that is
    /// waiting on a task (each runs its `finally!` with [`Error::Cancelled`]).
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
        self.shared.stopped.store(true, Ordering::Release);
        // Signals are collected under the lock and fired after it is released: waking a
        // task must never happen while the runtime's lock is held.
        let signals: Vec<Arc<CancelSignal>> = self
            .shared
            .suspended
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        for signal in signals {
            signal.cancel();
        }
    }

    fn start_instance<V>(
        &self,
        pipeline: Pipeline<V, C>,
        name: Name,
        argument: V,
    ) -> Result<Invocation<V>, InvokeError>
    where
        V: Clone + Send + 'static,
    {
        if self.is_stopped() {
            return Err(InvokeError::Stopped);
        }
        let ident = Ident {
            name,
            id: self.shared.next_id.fetch_add(1, Ordering::Relaxed),
        };
        let mut instance = Instance::new(pipeline, argument);
        let mut cx = Context::from_waker(futures::task::noop_waker_ref());
        if self.shared.run_stretch(&mut instance, &mut cx).is_ready() {
            let result = self.shared.finish_root(&ident, instance.into_completion());
            return Ok(Invocation::ready(ident, result));
        }
        let executor = tokio::runtime::Handle::try_current()
            .ok()
            .or_else(|| self.shared.executor.clone());
        let Some(executor) = executor else {
            // Nothing can wait for the future: fail it, and let the error path run
            // synchronously (a `rescue!` or `finally!` that waits fails the same way).
            while self.shared.run_stretch(&mut instance, &mut cx).is_pending() {
                instance.fail_waiting(Error::NoExecutor);
            }
            let result = self.shared.finish_root(&ident, instance.into_completion());
            return Ok(Invocation::ready(ident, result));
        };
        let signal = Arc::new(CancelSignal::default());
        self.shared
            .suspended
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(ident.id, Arc::clone(&signal));
        let task = Task {
            instance: Some(instance),
            shared: Arc::clone(&self.shared),
            ident: ident.clone(),
            signal,
        };
        Ok(Invocation::running(ident, executor.spawn(task)))
    }
}

impl<C> Shared<C> {
    /// Drives `instance` for one synchronous stretch, inside the transactor.
    fn run_stretch<V: Clone>(
        &self,
        instance: &mut Instance<V, C>,
        cx: &mut Context<'_>,
    ) -> Poll<()> {
        let mut polled = None;
        self.hooks
            .in_transaction(&mut || polled = Some(instance.drive(&self.context, cx)));
        match polled {
            Some(polled) => polled,
            None => instance.drive(&self.context, cx),
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
        }
    }

    fn forget_suspended(&self, id: u64) {
        self.suspended
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
    }
}

/// The tokio task that drives an instance after its first wait.
struct Task<V, C> {
    instance: Option<Instance<V, C>>,
    shared: Arc<Shared<C>>,
    ident: Ident,
    signal: Arc<CancelSignal>,
}

impl<V: Clone, C> Future for Task<V, C> {
    type Output = Result<V, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let Some(instance) = this.instance.as_mut() else {
            return Poll::Ready(Err(Error::ResultTaken));
        };
        if this.signal.register_and_check(cx.waker()) {
            instance.request_cancel();
        }
        // A wake-up whose future is still pending runs no step: no transaction for it.
        if instance.poll_waiting(cx).is_pending() {
            return Poll::Pending;
        }
        if this.shared.run_stretch(instance, cx).is_pending() {
            return Poll::Pending;
        }
        this.shared.forget_suspended(this.ident.id);
        match this.instance.take() {
            Some(instance) => Poll::Ready(
                this.shared
                    .finish_root(&this.ident, instance.into_completion()),
            ),
            None => Poll::Ready(Err(Error::ResultTaken)),
        }
    }
}

impl<V, C> Drop for Task<V, C> {
    fn drop(&mut self) {
        if self.instance.is_some() {
            // The tokio runtime dropped the task before it completed.
            self.shared.forget_suspended(self.ident.id);
        }
    }
}

// The task holds no pinned data (see `Instance`'s `Unpin`).
impl<V, C> Unpin for Task<V, C> {}
