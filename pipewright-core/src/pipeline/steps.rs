//! What `pipeline!` compiles to and the interpreter calls: a pipeline's site, the layout
//! of its sections, and the call that runs one step.

use std::sync::Arc;

use crate::error::Error;
use crate::outcome::Outcome;
use crate::runtime::Current;

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
    /// The header binds the step's view of its instance ([`Current`]): every step call
    /// carries it, and the pipeline never runs without an instance (no quick run).
    pub current: bool,
}

/// The three sections of a pipeline's body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Section {
    Main,
    Rescue,
    Finally,
}

impl Layout {
    /// How many steps `section` has (0 for a section the pipeline does not have).
    pub(crate) fn len(&self, section: Section) -> usize {
        match section {
            Section::Main => self.main,
            Section::Rescue => self.rescue.unwrap_or(0),
            Section::Finally => self.finally.unwrap_or(0),
        }
    }
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
        /// The runtime's context (an `Arc`, so a waiting step's future can own a share).
        ctx: &'a Arc<C>,
        /// The step's view of its instance, when the pipeline's header binds it.
        current: Option<&'a Current<'a, V, C>>,
    },
    /// Step `index` of `rescue!`, handling `error`.
    Rescue {
        /// Step number within the section.
        index: usize,
        /// The current value.
        value: &'a V,
        /// The runtime's context (an `Arc`, so a waiting step's future can own a share).
        ctx: &'a Arc<C>,
        /// The error being handled.
        error: &'a Error,
        /// The step's view of its instance, when the pipeline's header binds it.
        current: Option<&'a Current<'a, V, C>>,
    },
    /// Step `index` of `finally!`, with the error if there was one.
    Finally {
        /// Step number within the section.
        index: usize,
        /// The current value.
        value: &'a V,
        /// The runtime's context (an `Arc`, so a waiting step's future can own a share).
        ctx: &'a Arc<C>,
        /// The error, if the pipeline failed or was cancelled.
        error: Option<&'a Error>,
        /// The step's view of its instance, when the pipeline's header binds it.
        current: Option<&'a Current<'a, V, C>>,
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

pub(crate) type StepsFn<V, C> = dyn Fn(StepCall<'_, V, C>) -> Outcome<V, C> + Send + Sync + 'static;
