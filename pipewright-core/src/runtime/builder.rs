//! [`RuntimeBuilder`]: the context, the named pipelines and the hooks of a runtime to be,
//! checked and turned into a [`Runtime`] by `start`.

use std::any::{type_name, Any};
use std::fmt;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::ids::Ids;
use super::{Core, Runtime};
use crate::error::{Error, StartError};
use crate::events::hooks::{Event, Hooks};
use crate::events::{EventLog, EVENT_BACKLOG};
use crate::ident::{interned, Ident, Name};
use crate::pipeline::Pipeline;
use crate::queue::{FastMap, QueueSpec};
use crate::registry::Registry;

/// A registered pipeline, its value type erased so pipelines of any value type can share
/// one runtime. `invoke` recovers the type with a downcast, which is where a wrong
/// argument type is caught.
pub(super) struct Registered {
    pub(super) name: Arc<str>,
    /// `name` as its instances' idents name it (interned: copying it writes nothing
    /// shared), lent to every invocation.
    pub(super) ident_name: Name,
    pub(super) pipeline: Box<dyn Any + Send + Sync>,
    pub(super) value_type: &'static str,
    /// The fixed queue it runs in and its configuration, checked at `start`.
    pub(super) queue: Option<(Name, crate::behaviour::Concurrency)>,
    /// That queue's index in the registry, once declared.
    pub(super) gauge: Option<Arc<crate::registry::Gauge>>,
}

/// Builds a [`Runtime`]: its context, its named pipelines and its hooks.
///
/// # Examples
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use pipewright::{pipeline, Runtime};
///
/// let reported = Arc::new(Mutex::new(Vec::new()));
/// let sink = reported.clone();
/// let runtime = Runtime::builder(())
///     .register("parse", pipeline!(|value: String, _ctx: &()| {
///         value = value.trim().parse::<i64>().map(|n| (n * 2).to_string());
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
    pub(super) context: C,
    pub(super) pipelines: Vec<Registered>,
    pub(super) hooks: Hooks,
    pub(super) executor: Option<tokio::runtime::Handle>,
    /// Each event stream's capacity, when `events()` may subscribe.
    pub(super) event_capacity: Option<usize>,
}

impl<C> fmt::Debug for RuntimeBuilder<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RuntimeBuilder")
            .field(
                "pipelines",
                &self.pipelines.iter().map(|p| &*p.name).collect::<Vec<_>>(),
            )
            .field("hooks", &self.hooks)
            .field("event_capacity", &self.event_capacity)
            .finish_non_exhaustive()
    }
}

impl<C: Send + Sync + 'static> RuntimeBuilder<C> {
    /// Registers `pipeline` under `name`, so it can be invoked by name. Its implicit queue
    /// takes the name (an explicit or per-key queue is kept). The name's text is kept for
    /// the life of the process (once per distinct name, whatever the number of runtimes):
    /// register a bounded set of names, not one per request.
    ///
    /// ```
    /// # use pipewright::{pipeline, Runtime};
    /// let runtime = Runtime::builder(())
    ///     .register("inc", pipeline!(|value: i32, _ctx: &()| { value = value + 1; }))
    ///     .start()
    ///     .unwrap();
    /// assert!(runtime.is_registered("inc"));
    /// ```
    #[must_use]
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
            ident_name: Name::Static(interned(&name)),
            name,
            pipeline: Box::new(pipeline),
            value_type: type_name::<V>(),
            queue,
            gauge: None,
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
    /// # use pipewright::{pipeline, Runtime};
    /// let count = Arc::new(AtomicUsize::new(0));
    /// let seen = count.clone();
    /// let runtime = Runtime::builder(())
    ///     .error_reporter(move |_ident, _error| { seen.fetch_add(1, Ordering::SeqCst); })
    ///     .start()
    ///     .unwrap();
    /// let failing = pipeline!(|value: i32, _ctx: &()| { value = Err::<i32, _>("no"); });
    /// let _ = runtime.invoke_pipeline(&failing, 1).unwrap();
    /// assert_eq!(count.load(Ordering::SeqCst), 1);
    /// ```
    #[must_use]
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
    /// # use pipewright::{pipeline, Runtime};
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
    #[must_use]
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
    /// # use pipewright::{pipeline, EventKind, Runtime};
    /// let events = Arc::new(Mutex::new(Vec::new()));
    /// let sink = events.clone();
    /// let runtime = Runtime::builder(())
    ///     .watcher(move |event| sink.lock().unwrap().push(event.kind().clone()))
    ///     .start()
    ///     .unwrap();
    /// let failing = pipeline!(|value: i32, _ctx: &()| { value = Err::<i32, _>("no"); });
    /// let _ = runtime.invoke_pipeline(&failing, 1).unwrap();
    /// assert!(matches!(events.lock().unwrap()[2], EventKind::Failed(_)));
    /// ```
    #[must_use]
    pub fn watcher(mut self, watcher: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        self.hooks.watcher = Some(Arc::new(watcher));
        self
    }

    /// Lets [`Runtime::events`](crate::Runtime::events) subscribe to the runtime's events
    /// as [`EventStream`](crate::EventStream)s, each able to fall `capacity` events behind
    /// before it loses the oldest (and is told how many, with
    /// [`EventKind::Lagged`](crate::EventKind::Lagged)). The events are those the
    /// [watcher](RuntimeBuilder::watcher) is told, in the same order; a runtime may have
    /// both.
    ///
    /// It is an opt-in because recording events has a cost, paid by every invocation
    /// whether a subscriber is there or not: like a watcher, it turns off quick runs (a
    /// synchronous invocation then gets a registry entry and a control block, as when a
    /// watcher is set). A runtime built without it records nothing, and `events()` is
    /// refused with [`SubscribeError::NotEnabled`](crate::SubscribeError::NotEnabled).
    ///
    /// `capacity` must be from 1 to 65,536, else `start` refuses with
    /// [`StartError::EventCapacity`]. It is rounded up to a power of two, and the buffer
    /// (shared by all subscribers, about a hundred bytes per event) is allocated at `start`.
    ///
    /// ```
    /// use futures::StreamExt;
    /// use pipewright::{pipeline, EventKind, Runtime};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let runtime = Runtime::builder(()).event_stream(1024).start().unwrap();
    /// let mut events = runtime.events().unwrap();
    /// let slow = pipeline!(|value: u32, _ctx: &()| {
    ///     tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    /// });
    /// runtime.invoke_pipeline(&slow, 1).unwrap().await.unwrap();
    /// let mut kinds = Vec::new();
    /// while let Some(event) = events.next().await {
    ///     let end = matches!(event.kind(), EventKind::Finished);
    ///     kinds.push(format!("{:?}", event.kind()));
    ///     if end { break; }
    /// }
    /// assert_eq!(kinds, ["Admitted", "Started", "Suspended", "Resumed", "Finished"]);
    /// # }
    /// ```
    #[must_use]
    pub fn event_stream(mut self, capacity: usize) -> Self {
        self.event_capacity = Some(capacity);
        self
    }

    /// Sets the `on_cancel` hook: told which instance was cancelled while it waited on a
    /// future. The future itself is dropped, which stops the work behind it; use the hook
    /// for what dropping cannot undo (telling a server, releasing a lock elsewhere).
    ///
    /// ```
    /// # use std::sync::{Arc, Mutex};
    /// # use pipewright::{pipeline, Runtime};
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
    #[must_use]
    pub fn on_cancel(mut self, on_cancel: impl Fn(&Ident) + Send + Sync + 'static) -> Self {
        self.hooks.on_cancel = Some(Arc::new(on_cancel));
        self
    }

    /// The tokio runtime that drives instances which wait, when `invoke` is called from a
    /// thread outside any tokio runtime. By default it is the runtime `start` was called
    /// in, if any; an invocation from inside a tokio runtime always uses that one.
    ///
    /// ```
    /// # use pipewright::Runtime;
    /// let tokio_runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    /// let runtime = Runtime::builder(()).executor(tokio_runtime.handle().clone()).start().unwrap();
    /// # drop(runtime);
    /// ```
    #[must_use]
    pub fn executor(mut self, handle: tokio::runtime::Handle) -> Self {
        self.executor = Some(handle);
        self
    }

    /// Starts the runtime. Fails if two pipelines share a name, if pipelines that share
    /// a queue disagree on its configuration, or if the capacity given to
    /// [`event_stream`](RuntimeBuilder::event_stream) is out of range.
    ///
    /// ```
    /// # use pipewright::{pipeline, Runtime};
    /// let runtime = Runtime::builder("config").start().unwrap();
    /// assert_eq!(*runtime.context(), "config");
    ///
    /// let a = pipeline!(|value: u8, _ctx: &()| {}).queue("q").enqueued();
    /// let b = pipeline!(|value: u8, _ctx: &()| {}).queue("q").dropping();
    /// let error = Runtime::builder(()).register("a", a).register("b", b).start().unwrap_err();
    /// assert!(error.to_string().contains("queue `q` is enqueued(max 1) (set by `a`)"));
    /// ```
    pub fn start(self) -> Result<Runtime<C>, StartError> {
        let mut pipelines: FastMap<Arc<str>, Registered> = FastMap::default();
        if let Some(capacity) = self.event_capacity {
            if capacity == 0 || capacity > EVENT_BACKLOG {
                return Err(StartError::EventCapacity { capacity });
            }
        }
        // Events are recorded only for someone who will read them (see quick runs).
        let events = (self.hooks.watcher.is_some() || self.event_capacity.is_some())
            .then(|| Arc::new(EventLog::new(self.event_capacity)));
        let registry = Registry::new(events.clone(), Registry::default_shards());
        for mut registered in self.pipelines {
            if pipelines.contains_key(&registered.name) {
                return Err(StartError::DuplicateName {
                    name: registered.name.to_string(),
                });
            }
            if let Some((queue, concurrency)) = &registered.queue {
                let by = Name::Shared(Arc::clone(&registered.name));
                registered.gauge = Some(registry.declare(queue.clone(), *concurrency, by)?);
            }
            pipelines.insert(Arc::clone(&registered.name), registered);
        }
        let executor = self
            .executor
            .or_else(|| tokio::runtime::Handle::try_current().ok());
        let quick_runs = events.is_none() && self.hooks.transactor.is_none();
        Ok(Runtime {
            core: Arc::new(Core {
                context: Arc::new(self.context),
                pipelines,
                hooks: self.hooks,
                executor,
                stopped: AtomicBool::new(false),
                shutdown: CancellationToken::new(),
                ids: Ids::new(),
                registry,
                quick_runs,
                events,
                drained: tokio::sync::Notify::new(),
            }),
        })
    }
}
