//! The pipeline value: a list of steps plus optional `rescue!` and `finally!` sections.
//!
//! `pipeline!` compiles a block into one closure that runs step number `i` of a section
//! ([`StepCall`]). The interpreter ([`crate::instance`]) decides which step runs next, so
//! it can suspend between steps, jump to `rescue!`, or stop on cancellation, while each
//! step itself is ordinary compiled Rust.

use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;

use std::time::Duration;

use crate::behaviour::{Behaviour, Concurrency};
use crate::error::Error;
use crate::ident::Name;
use crate::outcome::Outcome;
use crate::policy::{RestartPolicy, Retry, RetryWhen};
use crate::queue::{Queue, QueueOf, QueueSpec};

mod deep_drop;
mod steps;

pub use self::steps::{Layout, Site, StepCall};
pub(crate) use self::steps::{Section, StepsFn};

/// How equal arguments are found for `use_existing`: captured where `V: Hash + Eq` is
/// known, so the runtime needs no such bound.
pub(crate) struct ArgsIdentity<V> {
    pub(crate) hash: fn(&V) -> u64,
    pub(crate) eq: fn(&V, &V) -> bool,
}

impl<V> Clone for ArgsIdentity<V> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<V> Copy for ArgsIdentity<V> {}

/// Where and how a pipeline's instances run ([SEMANTICS 3]).
///
/// [SEMANTICS 3]: crate::semantics#3-queues-and-concurrency-behaviours
pub(crate) struct Config<V> {
    pub(crate) queue: QueueSpec<V>,
    pub(crate) concurrency: Concurrency,
    pub(crate) identity: Option<ArgsIdentity<V>>,
    pub(crate) cancel_on_shutdown: bool,
    pub(crate) detached: bool,
    pub(crate) retry: Option<Retry>,
    /// Whether a step's panic may be retried (`retry_panics`); off by default.
    pub(crate) retry_panics: bool,
    pub(crate) timeout: Option<Duration>,
}

impl<V> Clone for Config<V> {
    fn clone(&self) -> Self {
        Config {
            queue: self.queue.clone(),
            concurrency: self.concurrency,
            identity: self.identity,
            cancel_on_shutdown: self.cancel_on_shutdown,
            detached: self.detached,
            retry: self.retry.clone(),
            retry_panics: self.retry_panics,
            timeout: self.timeout,
        }
    }
}

struct Definition<V, C> {
    site: &'static Site,
    layout: Layout,
    /// Always there, except while the definition is dropped.
    steps: Option<Arc<StepsFn<V, C>>>,
    /// Drops the steps without recursing into the pipelines they hold
    /// ([`deep_drop`](self::deep_drop)); chosen where `V` and `C` are known to be
    /// `'static`, which setting them aside needs.
    drop_steps: fn(Arc<StepsFn<V, C>>),
    config: Config<V>,
}

impl<V, C> Definition<V, C> {
    fn steps(&self) -> &Arc<StepsFn<V, C>> {
        match &self.steps {
            Some(steps) => steps,
            // Taken only by `drop`, after which nothing reads it.
            None => unreachable!("the steps of a definition being dropped"),
        }
    }
}

impl<V, C> Drop for Definition<V, C> {
    fn drop(&mut self) {
        if let Some(steps) = self.steps.take() {
            (self.drop_steps)(steps);
        }
    }
}

/// A pipeline: steps that thread a value of type `V`, reading a context of type `C`.
/// Built by [`pipeline!`](crate::pipeline!); cheap to clone (the steps are shared).
///
/// # Examples
///
/// ```
/// use pipewright::{pipeline, Runtime};
///
/// let inc_3 = pipeline!(|value: i32, _ctx: &()| {
///     value = value + 1;
///     value = value + 1;
///     value = value + 1;
/// });
/// let runtime = Runtime::builder(()).register("inc-3", inc_3).start().unwrap();
/// let mut handle = runtime.invoke("inc-3", 0).unwrap();
/// assert_eq!(handle.try_result().unwrap().unwrap(), 3);
/// ```
pub struct Pipeline<V, C> {
    definition: Arc<Definition<V, C>>,
}

impl<V, C> Clone for Pipeline<V, C> {
    fn clone(&self) -> Self {
        Pipeline {
            definition: Arc::clone(&self.definition),
        }
    }
}

impl<V, C> fmt::Debug for Pipeline<V, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let config = &self.definition.config;
        f.debug_struct("Pipeline")
            .field("site", &self.definition.site.name())
            .field("layout", &self.definition.layout)
            .field("queue", &config.queue)
            .field("concurrency", &config.concurrency)
            .field("cancel_on_shutdown", &config.cancel_on_shutdown)
            .field("detached", &config.detached)
            .finish()
    }
}

impl<V, C> Pipeline<V, C> {
    /// Builds a pipeline from the closure `pipeline!` generates. Not public API.
    #[doc(hidden)]
    pub fn __from_steps<F>(site: &'static Site, layout: Layout, steps: F) -> Self
    where
        F: Fn(StepCall<'_, V, C>) -> Outcome<V, C> + Send + Sync + 'static,
        V: 'static,
        C: 'static,
    {
        Pipeline {
            definition: Arc::new(Definition {
                site,
                layout,
                steps: Some(Arc::new(steps)),
                drop_steps: self::deep_drop::drop_steps,
                config: Config {
                    queue: QueueSpec::Implicit,
                    concurrency: Concurrency::default(),
                    identity: None,
                    cancel_on_shutdown: true,
                    detached: false,
                    retry: None,
                    retry_panics: false,
                    timeout: None,
                },
            }),
        }
    }

    /// A copy of this pipeline (same steps, same implicit queue) with `change` applied to
    /// its configuration.
    fn configured(self, change: impl FnOnce(&mut Config<V>)) -> Self {
        let mut config = self.definition.config.clone();
        change(&mut config);
        Pipeline {
            definition: Arc::new(Definition {
                site: self.definition.site,
                layout: self.definition.layout,
                steps: Some(Arc::clone(self.definition.steps())),
                drop_steps: self.definition.drop_steps,
                config,
            }),
        }
    }

    fn with_behaviour(self, behaviour: Behaviour) -> Self {
        self.configured(|config| config.concurrency = config.concurrency.with_behaviour(behaviour))
    }

    crate::__behaviour_shortcuts!(with_behaviour, "crate::Behaviour");

    /// Sets the maximum number of live instances of the queue (default 1). Must be at
    /// least 1; ignored by the unrestricted default.
    ///
    /// ```
    /// # use pipewright::pipeline;
    /// let p = pipeline!(|value: u8, _ctx: &()| {}).restartable().max(3);
    /// assert_eq!(p.concurrency().max(), 3);
    /// ```
    #[must_use]
    pub fn max(self, max: usize) -> Self {
        self.configured(|config| config.concurrency = config.concurrency.with_max(max))
    }

    /// Use-existing: an invocation whose argument equals that of a live, unfinished
    /// instance of this pipeline in the queue gets that instance's result instead of a new
    /// run. Combines with every behaviour.
    ///
    /// ```
    /// use pipewright::{pipeline, Runtime};
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let load = pipeline!(|id: u32, _ctx: &()| {
    ///     tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    ///     id = id * 10;
    /// })
    /// .use_existing();
    /// let runtime = Runtime::builder(()).register("load", load).start().unwrap();
    /// let first = runtime.invoke("load", 7_u32).unwrap();
    /// let same = runtime.invoke("load", 7_u32).unwrap();
    /// assert_eq!(first.ident(), same.ident());
    /// assert_eq!((first.await.unwrap(), same.await.unwrap()), (70, 70));
    /// assert_eq!(runtime.queue_info("load").unwrap().performed(), 1);
    /// # }
    /// ```
    #[must_use]
    pub fn use_existing(self) -> Self
    where
        V: Hash + Eq,
    {
        self.configured(|config| {
            config.concurrency = config.concurrency.with_use_existing(true);
            config.identity = Some(ArgsIdentity {
                // Keyed: the arguments may be chosen by whoever calls the program.
                hash: |value| crate::queue::KeyedState.hash_one(value),
                eq: |a, b| a == b,
            });
        })
    }

    /// Whether `stop` cancels this pipeline's instances (the default) or lets them finish.
    ///
    /// ```
    /// # use pipewright::pipeline;
    /// let flush = pipeline!(|value: u8, _ctx: &()| {}).cancel_on_shutdown(false);
    /// assert!(!flush.is_cancel_on_shutdown());
    /// ```
    #[must_use]
    pub fn cancel_on_shutdown(self, cancel: bool) -> Self {
        self.configured(|config| config.cancel_on_shutdown = cancel)
    }

    /// Detached: as a step of another pipeline, the child starts and the parent carries
    /// on at once (its value unchanged). Cancelling the parent still cancels the child;
    /// cancelling the child does not reach the parent. A parent that finishes while
    /// detached children are live keeps its queue slot until they are done. A detached
    /// child nested in the `finally!` of a parent that is being cancelled is not started
    /// (it would be cancelled with its parent at once), as one its queue drops is not.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use pipewright::{pipeline, Runtime};
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let audit = pipeline!(|value: u32, log: &Arc<Mutex<Vec<String>>>| {
    ///     tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    ///     log.lock().unwrap().push(format!("audited {value}"));
    /// })
    /// .detached();
    /// let save = pipeline!(|value: u32, log: &Arc<Mutex<Vec<String>>>| {
    ///     audit.clone();
    ///     log.lock().unwrap().push(format!("saved {value}"));
    /// });
    /// let runtime = Runtime::builder(Arc::default()).start().unwrap();
    /// let mut handle = runtime.invoke_pipeline(&save, 5).unwrap();
    /// assert_eq!(handle.try_result().unwrap().unwrap(), 5); // did not wait for the audit
    /// tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    /// assert_eq!(*runtime.context().lock().unwrap(), ["saved 5", "audited 5"]);
    /// # }
    /// ```
    #[must_use]
    pub fn detached(self) -> Self {
        self.configured(|config| config.detached = true)
    }

    /// Retries a failed main step: the instance resumes **at the failed step**, with the
    /// value it had before that step (the steps before it do not run again), after the
    /// policy's backoff, until the policy gives up; only then does `rescue!` run. A nested
    /// pipeline that fails counts as its step failing. Waiting between retries needs a
    /// tokio runtime; without one, a retry that must wait is not made.
    ///
    /// Every error is retried except a panic ([`Error::Panicked`], in the step or in a
    /// pipeline it nests): a panic is a bug, and running the same code on the same value
    /// again would most likely panic again. [`retry_panics`](Pipeline::retry_panics)
    /// opts in. To retry only some errors, use [`retry_if`](Pipeline::retry_if). Errors
    /// after a timeout or a cancellation are never retried. `retry` replaces an earlier
    /// `retry` or `retry_if` (its predicate included).
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// use std::time::Duration;
    /// use pipewright::{pipeline, Backoff, RestartPolicy, Runtime};
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let flaky = pipeline!(|value: u32, attempts: &AtomicU32| {
    ///     value = value + 1;
    ///     value = if attempts.fetch_add(1, Ordering::SeqCst) < 2 { Err("flaky") } else { Ok(value * 10) };
    /// })
    /// .retry(RestartPolicy::new(3, Duration::from_secs(60)).unwrap().with_backoff(Backoff::Fixed(Duration::from_millis(100))).unwrap());
    /// let runtime = Runtime::builder(AtomicU32::new(0)).start().unwrap();
    /// assert_eq!(runtime.invoke_pipeline(&flaky, 1).unwrap().await.unwrap(), 20);
    /// assert_eq!(runtime.context().load(Ordering::SeqCst), 3);
    /// # }
    /// ```
    #[must_use]
    pub fn retry(self, policy: RestartPolicy) -> Self {
        self.configured(|config| config.retry = Some(Retry { policy, when: None }))
    }

    /// Retries a failed main step as [`retry`](Pipeline::retry) does, but only when
    /// `retry_when` returns `true` for its error; any other error takes the error path
    /// at once (and uses up none of the policy's restarts). The predicate sees the error
    /// as `rescue!` would: match on it, or look inside with
    /// [`Error::downcast_ref`].
    ///
    /// Panics are not given to the predicate, and not retried, unless
    /// [`retry_panics`](Pipeline::retry_panics) opts in; then the predicate decides for
    /// them too ([`Error::is_panic`] tells them apart). A predicate that panics is not
    /// obeyed: the step fails with [`Error::Panicked`] naming the predicate, unretried.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// use std::time::Duration;
    /// use pipewright::{pipeline, RestartPolicy, Runtime};
    ///
    /// #[derive(Debug)]
    /// enum FetchError { Busy, NotFound }
    /// impl std::fmt::Display for FetchError {
    ///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    ///         f.write_str(match self { FetchError::Busy => "busy", FetchError::NotFound => "not found" })
    ///     }
    /// }
    /// impl std::error::Error for FetchError {}
    ///
    /// // Busy twice, then not found.
    /// fn fetch_once(calls: &AtomicU32) -> Result<u32, FetchError> {
    ///     match calls.fetch_add(1, Ordering::SeqCst) {
    ///         0 | 1 => Err(FetchError::Busy),
    ///         _ => Err(FetchError::NotFound),
    ///     }
    /// }
    ///
    /// // Retried while busy, not once it is not found.
    /// let fetch = pipeline!(|id: u32, calls: &AtomicU32| {
    ///     id = fetch_once(calls);
    ///     rescue!(|error| { id = 0; });
    /// })
    /// .retry_if(RestartPolicy::new(5, Duration::from_secs(60)).unwrap(), |error| {
    ///     matches!(error.downcast_ref::<FetchError>(), Some(FetchError::Busy))
    /// });
    /// let runtime = Runtime::builder(AtomicU32::new(0)).start().unwrap();
    /// assert_eq!(runtime.invoke_pipeline(&fetch, 7).unwrap().try_result().unwrap().unwrap(), 0);
    /// assert_eq!(runtime.context().load(Ordering::SeqCst), 3);
    /// ```
    #[must_use]
    pub fn retry_if(
        self,
        policy: RestartPolicy,
        retry_when: impl Fn(&Error) -> bool + Send + Sync + 'static,
    ) -> Self {
        let when: RetryWhen = Arc::new(retry_when);
        self.configured(|config| {
            config.retry = Some(Retry {
                policy,
                when: Some(when),
            })
        })
    }

    /// Whether a panicking main step may be retried by [`retry`](Pipeline::retry) or
    /// [`retry_if`](Pipeline::retry_if) (off by default: a panic goes to `rescue!` at
    /// once). With `true`, a panic ([`Error::Panicked`]) is retried like any other error,
    /// if the predicate of `retry_if` accepts it. Use it for code that panics on a
    /// transient condition you cannot change (a third-party client that `unwrap`s a
    /// network result). Order does not matter: it may come before or after `retry`; on
    /// its own it does nothing.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// use std::time::Duration;
    /// use pipewright::{pipeline, RestartPolicy, Runtime};
    ///
    /// let shaky = pipeline!(|value: u32, calls: &AtomicU32| {
    ///     value = if calls.fetch_add(1, Ordering::SeqCst) == 0 { panic!("connection reset") } else { value * 2 };
    /// });
    /// let policy = RestartPolicy::new(3, Duration::from_secs(60)).unwrap();
    /// let runtime = Runtime::builder(AtomicU32::new(0)).start().unwrap();
    ///
    /// let error = runtime.invoke_pipeline(&shaky.clone().retry(policy), 4).unwrap().try_result().unwrap();
    /// assert!(error.unwrap_err().is_panic()); // not retried
    ///
    /// runtime.context().store(0, Ordering::SeqCst);
    /// let retried = shaky.retry(policy).retry_panics(true);
    /// assert_eq!(runtime.invoke_pipeline(&retried, 4).unwrap().try_result().unwrap().unwrap(), 8);
    /// ```
    #[must_use]
    pub fn retry_panics(self, retry: bool) -> Self {
        self.configured(|config| config.retry_panics = retry)
    }

    /// Limits how long an instance's main steps may take: past `limit`, what it waits on
    /// is dropped (a waiting child is cancelled first) and the error path runs with
    /// [`Error::TimedOut`], which `rescue!` can handle; `finally!` still runs. The limit is
    /// checked whenever the instance waits (a synchronous stretch is never interrupted)
    /// and needs a tokio runtime.
    ///
    /// ```
    /// use std::time::Duration;
    /// use pipewright::{pipeline, Runtime};
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let slow = pipeline!(|value: u32, _ctx: &()| {
    ///     tokio::time::sleep(Duration::from_secs(10)).await;
    ///     rescue!(|error| {
    ///         value = if error.is_timeout() { Ok(0) } else { Err(error.clone()) };
    ///     });
    /// })
    /// .timeout(Duration::from_secs(1));
    /// let runtime = Runtime::builder(()).start().unwrap();
    /// assert_eq!(runtime.invoke_pipeline(&slow, 5).unwrap().await.unwrap(), 0);
    /// # }
    /// ```
    #[must_use]
    pub fn timeout(self, limit: Duration) -> Self {
        self.configured(|config| config.timeout = Some(limit))
    }

    /// Runs the pipeline in the queue named `name`, whatever it is registered as. Every
    /// pipeline in a queue must have the same concurrency configuration.
    ///
    /// ```
    /// # use pipewright::{pipeline, Runtime};
    /// let p = pipeline!(|value: u8, _ctx: &()| {}).queue("shared");
    /// let runtime = Runtime::builder(()).register("p", p).start().unwrap();
    /// runtime.invoke("p", 1_u8).unwrap();
    /// assert_eq!(runtime.queue_info("shared").unwrap().performed(), 1);
    /// ```
    #[must_use]
    pub fn queue(self, name: impl Into<String>) -> Self {
        let name: Arc<str> = Arc::from(name.into());
        self.configured(|config| config.queue = QueueSpec::Explicit(Name::Shared(name)))
    }

    /// The former name of [`queue`](Pipeline::queue).
    #[deprecated(
        since = "0.1.0",
        note = "renamed to `queue` (one naming scheme for builders)"
    )]
    #[must_use]
    pub fn set_queue(self, name: impl Into<String>) -> Self {
        self.queue(name)
    }

    /// Runs each instance in the queue named by `key(argument)`: one queue per key (per
    /// article, per user, ...). Per-key queues are forgotten when they empty.
    ///
    /// ```
    /// use pipewright::{pipeline, Runtime};
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let upvote = pipeline!(|article: u32, _ctx: &()| {
    ///     tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    /// })
    /// .dropping()
    /// .queue_by(|article: &u32| format!("upvote-{article}"));
    /// let runtime = Runtime::builder(()).register("upvote", upvote).start().unwrap();
    /// let one = runtime.invoke("upvote", 1_u32).unwrap();
    /// let two = runtime.invoke("upvote", 2_u32).unwrap(); // another queue: not dropped
    /// assert_eq!((one.await.unwrap(), two.await.unwrap()), (1, 2));
    /// # }
    /// ```
    #[must_use]
    pub fn queue_by(self, key: impl Fn(&V) -> String + Send + Sync + 'static) -> Self {
        let key: Arc<dyn Fn(&V) -> String + Send + Sync> = Arc::new(key);
        self.configured(|config| config.queue = QueueSpec::Keyed(key))
    }

    /// The former name of [`queue_by`](Pipeline::queue_by).
    #[deprecated(
        since = "0.1.0",
        note = "renamed to `queue_by` (one naming scheme for builders)"
    )]
    #[must_use]
    pub fn set_queue_by(self, key: impl Fn(&V) -> String + Send + Sync + 'static) -> Self {
        self.queue_by(key)
    }

    /// Runs the pipeline in `queue`, with the queue's concurrency configuration.
    ///
    /// ```
    /// # use pipewright::{pipeline, Behaviour, Queue};
    /// let saves = Queue::new("saves").enqueued().max(2);
    /// let p = pipeline!(|value: u8, _ctx: &()| {}).in_queue(&saves);
    /// assert_eq!(p.concurrency().behaviour(), Behaviour::Enqueued);
    /// assert_eq!(p.concurrency().max(), 2);
    /// ```
    #[must_use]
    pub fn in_queue(self, queue: &Queue) -> Self {
        let (name, concurrency) = (queue.shared_name(), queue.concurrency());
        self.configured(|config| {
            config.queue = QueueSpec::Explicit(Name::Shared(name));
            config.concurrency = concurrency;
        })
    }

    /// The pipeline's concurrency configuration.
    ///
    /// ```
    /// # use pipewright::{pipeline, Behaviour};
    /// let p = pipeline!(|value: u8, _ctx: &()| {});
    /// assert_eq!(p.concurrency().behaviour(), Behaviour::Unrestricted);
    /// ```
    pub fn concurrency(&self) -> Concurrency {
        self.definition.config.concurrency
    }

    /// Whether `stop` cancels this pipeline's instances.
    ///
    /// ```
    /// # use pipewright::pipeline;
    /// assert!(pipeline!(|value: u8, _ctx: &()| {}).is_cancel_on_shutdown());
    /// ```
    pub fn is_cancel_on_shutdown(&self) -> bool {
        self.definition.config.cancel_on_shutdown
    }

    /// Whether the pipeline runs detached when nested.
    ///
    /// ```
    /// # use pipewright::pipeline;
    /// assert!(pipeline!(|value: u8, _ctx: &()| {}).detached().is_detached());
    /// ```
    pub fn is_detached(&self) -> bool {
        self.definition.config.detached
    }

    /// The queue an invocation joins, as far as it is known without the argument.
    pub(crate) fn queue_of(&self) -> QueueOf<'_, V> {
        self.definition.config.queue.of(self.site_name())
    }

    pub(crate) fn config(&self) -> &Config<V> {
        &self.definition.config
    }

    /// The same pipeline registered under `name`: its implicit queue takes the name.
    pub(crate) fn registered_as(self, name: &Arc<str>) -> Self {
        match self.definition.config.queue {
            QueueSpec::Implicit => {
                let name = Arc::clone(name);
                self.configured(|config| config.queue = QueueSpec::Registered(Name::Shared(name)))
            }
            _ => self,
        }
    }

    /// Identifies the steps: pipelines that share steps are "the same pipeline" for
    /// `use_existing`.
    pub(crate) fn key(&self) -> usize {
        Arc::as_ptr(self.definition.steps()).cast::<()>() as usize
    }

    /// The name of the pipeline's source site, `pipeline@file:line:column`, which is also
    /// the name of its implicit queue.
    ///
    /// ```
    /// let p = pipewright::pipeline!(|value: u8, _ctx: &()| {});
    /// assert!(p.site_name().starts_with("pipeline@"));
    /// ```
    pub fn site_name(&self) -> &'static str {
        self.definition.site.name()
    }

    pub(crate) fn layout(&self) -> Layout {
        self.definition.layout
    }

    /// A pipeline that runs `steps` (laid out as `layout`) where `self` runs: same site,
    /// so the same implicit queue, and the same configuration, except that it is never
    /// detached (a continuation's frames, see `continuation`).
    pub(crate) fn with_steps<F>(&self, layout: Layout, steps: F) -> Self
    where
        F: Fn(StepCall<'_, V, C>) -> Outcome<V, C> + Send + Sync + 'static,
        V: 'static,
        C: 'static,
    {
        let mut config = self.definition.config.clone();
        config.detached = false;
        Pipeline {
            definition: Arc::new(Definition {
                site: self.definition.site,
                layout,
                steps: Some(Arc::new(steps)),
                drop_steps: self::deep_drop::drop_steps,
                config,
            }),
        }
    }

    pub(crate) fn run_step(&self, call: StepCall<'_, V, C>) -> Outcome<V, C> {
        (self.definition.steps())(call)
    }
}
