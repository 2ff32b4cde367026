//! The pipeline value: a list of steps plus optional `rescue!` and `finally!` sections.
//!
//! `pipeline!` compiles a block into one closure that runs step number `i` of a section
//! ([`StepCall`]). The interpreter ([`crate::instance`]) decides which step runs next, so
//! it can suspend between steps, jump to `rescue!`, or stop on cancellation, while each
//! step itself is ordinary compiled Rust.

use std::fmt;
use std::sync::Arc;

use crate::error::Error;
use crate::outcome::Outcome;

/// Where a `pipeline!` expression stands in the source. Every pipeline one expression
/// produces shares its site, and the site names the pipeline's implicit queue.
#[doc(hidden)]
#[derive(Debug)]
pub struct Site {
    name: &'static str,
}

impl Site {
    #[doc(hidden)]
    pub const fn new(name: &'static str) -> Self {
        Site { name }
    }

    /// The site's name, `pipeline@file:line:column`.
    pub(crate) fn name(&'static self) -> &'static str {
        self.name
    }
}

/// How many steps each section of a pipeline has.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Steps in the main body.
    pub main: usize,
    /// Steps in `rescue!`, if the pipeline has one.
    pub rescue: Option<usize>,
    /// Steps in `finally!`, if the pipeline has one.
    pub finally: Option<usize>,
}

/// Which step the interpreter asks the generated closure to run, with what it may read.
#[doc(hidden)]
#[derive(Debug)]
pub enum StepCall<'a, V, C> {
    /// Step `index` of the main body.
    Main {
        /// Step number within the section.
        index: usize,
        /// The current value.
        value: &'a V,
        /// The runtime's context.
        ctx: &'a C,
    },
    /// Step `index` of `rescue!`, handling `error`.
    Rescue {
        /// Step number within the section.
        index: usize,
        /// The current value.
        value: &'a V,
        /// The runtime's context.
        ctx: &'a C,
        /// The error being handled.
        error: &'a Error,
    },
    /// Step `index` of `finally!`, with the error if there was one.
    Finally {
        /// Step number within the section.
        index: usize,
        /// The current value.
        value: &'a V,
        /// The runtime's context.
        ctx: &'a C,
        /// The error, if the pipeline failed or was cancelled.
        error: Option<&'a Error>,
    },
}

impl<V, C> StepCall<'_, V, C> {
    /// The outcome of a call that names no step: an internal error, never a panic.
    #[doc(hidden)]
    pub fn no_such_step(&self) -> Outcome<V, C> {
        let (section, index) = match self {
            StepCall::Main { index, .. } => ("main", index),
            StepCall::Rescue { index, .. } => ("rescue!", index),
            StepCall::Finally { index, .. } => ("finally!", index),
        };
        Outcome::Error(Error::new(format!(
            "internal error: the pipeline has no step {index} in its {section} section; please report this bug"
        )))
    }
}

type StepsFn<V, C> = dyn Fn(StepCall<'_, V, C>) -> Outcome<V, C> + Send + Sync + 'static;

struct Definition<V, C> {
    site: &'static Site,
    layout: Layout,
    steps: Box<StepsFn<V, C>>,
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
        f.debug_struct("Pipeline")
            .field("site", &self.definition.site.name)
            .field("layout", &self.definition.layout)
            .finish_non_exhaustive()
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
                steps: Box::new(steps),
            }),
        }
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
