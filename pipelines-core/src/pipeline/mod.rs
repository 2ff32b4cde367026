//! The pipeline value: a list of steps plus optional `rescue!` and `finally!` sections.
//!
//! `pipeline!` compiles a block into one closure that runs step number `i` of a section
//! ([`StepCall`]). The interpreter ([`crate::instance`]) decides which step runs next, so
//! it can suspend between steps, jump to `rescue!`, or stop on cancellation, while each
//! step itself is ordinary compiled Rust.

use std::fmt;
use std::sync::Arc;

use std::time::Duration;

use crate::behaviour::Concurrency;
use crate::ident::Name;
use crate::outcome::Outcome;
use crate::policy::Retry;
use crate::queue::{QueueOf, QueueSpec};

mod configure;
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

/// Where and how a pipeline's instances run (SEMANTICS 3).
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
    steps: Arc<StepsFn<V, C>>,
    config: Config<V>,
}

/// A pipeline: steps that thread a value of type `V`, reading a context of type `C`.
/// Built by [`pipeline!`](crate::pipeline!); cheap to clone (the steps are shared).
///
/// # Examples
///
/// ```
/// use pipelines::{pipeline, Runtime};
///
/// let inc_3 = pipeline!(|value: i32, _ctx: &()| {
///     value + 1;
///     value + 1;
///     value + 1;
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
    {
        Pipeline {
            definition: Arc::new(Definition {
                site,
                layout,
                steps: Arc::new(steps),
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
                steps: Arc::clone(&self.definition.steps),
                config,
            }),
        }
    }

    /// The pipeline's concurrency configuration.
    ///
    /// ```
    /// # use pipelines::{pipeline, Behaviour};
    /// let p = pipeline!(|value: u8, _ctx: &()| { value; });
    /// assert_eq!(p.concurrency().behaviour(), Behaviour::Unrestricted);
    /// ```
    pub fn concurrency(&self) -> Concurrency {
        self.definition.config.concurrency
    }

    /// Whether `stop` cancels this pipeline's instances.
    ///
    /// ```
    /// # use pipelines::pipeline;
    /// assert!(pipeline!(|value: u8, _ctx: &()| { value; }).is_cancel_on_shutdown());
    /// ```
    pub fn is_cancel_on_shutdown(&self) -> bool {
        self.definition.config.cancel_on_shutdown
    }

    /// Whether the pipeline runs detached when nested.
    ///
    /// ```
    /// # use pipelines::pipeline;
    /// assert!(pipeline!(|value: u8, _ctx: &()| { value; }).detached().is_detached());
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
        Arc::as_ptr(&self.definition.steps).cast::<()>() as usize
    }

    /// Wraps the pipeline so that, as a step of another pipeline, it runs as a child but
    /// leaves the parent's value unchanged.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicI32, Ordering};
    /// use pipelines::{pipeline, Runtime};
    ///
    /// let seen = pipeline!(|value: i32, ctx: &AtomicI32| {
    ///     ctx.store(value * 100, Ordering::SeqCst);
    ///     value * 100;
    /// });
    /// let outer = pipeline!(|value: i32, _ctx: &AtomicI32| {
    ///     value + 1;
    ///     seen.clone().muted();
    ///     value + 1;
    /// });
    /// let runtime = Runtime::builder(AtomicI32::new(0)).start().unwrap();
    /// assert_eq!(runtime.invoke_pipeline(&outer, 0).unwrap().try_result().unwrap().unwrap(), 2);
    /// assert_eq!(runtime.context().load(Ordering::SeqCst), 100);
    /// ```
    #[must_use]
    pub fn muted(self) -> Muted<V, C> {
        Muted(self)
    }

    /// The name of the pipeline's source site, `pipeline@file:line:column`, which is also
    /// the name of its implicit queue.
    ///
    /// ```
    /// let p = pipelines::pipeline!(|value: u8, _ctx: &()| { value; });
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
    {
        let mut config = self.definition.config.clone();
        config.detached = false;
        Pipeline {
            definition: Arc::new(Definition {
                site: self.definition.site,
                layout,
                steps: Arc::new(steps),
                config,
            }),
        }
    }

    pub(crate) fn run_step(&self, call: StepCall<'_, V, C>) -> Outcome<V, C> {
        (self.definition.steps)(call)
    }
}

/// A pipeline that, run as a step, does not change the parent's value. See
/// [`Pipeline::muted`].
pub struct Muted<V, C>(pub(crate) Pipeline<V, C>);

impl<V, C> Clone for Muted<V, C> {
    fn clone(&self) -> Self {
        Muted(self.0.clone())
    }
}

impl<V, C> fmt::Debug for Muted<V, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Muted").field(&self.0).finish()
    }
}
