//! A step put into a continuation's frame by hand ([`Frame::insert`], [`Frame::push`]).

use std::fmt;
use std::sync::Arc;

use crate::outcome::Outcome;
use crate::pipeline::Pipeline;

#[cfg(doc)]
use super::Frame;

type CallFn<V, C> = dyn Fn(&V, &C) -> Outcome<V, C> + Send + Sync + 'static;

/// A step inserted into a continuation's frame: a closure over the value and the context
/// whose [`Outcome`] is applied like any step's, or a pipeline, which runs as a nested
/// child whose result becomes the value (as `value = child;` does), or is discarded
/// ([`Step::keeping_value`], as a bare `child;` is).
///
/// # Examples
///
/// ```
/// use pipewright::{pipeline, Outcome, Step};
///
/// let double: Step<u32, ()> = Step::new(|value: &u32, _ctx: &()| Outcome::Value(value * 2));
/// let nested: Step<u32, ()> = pipeline!(|value: u32, _ctx: &()| { value = value + 1; }).into();
/// # let _ = (double, nested);
/// ```
pub struct Step<V, C> {
    pub(crate) kind: StepKind<V, C>,
}

pub(crate) enum StepKind<V, C> {
    Call(Arc<CallFn<V, C>>),
    Nested {
        pipeline: Pipeline<V, C>,
        muted: bool,
    },
    /// Sets the value (a muted frame hands the next outer frame its own value back).
    Value(V),
}

impl<V, C> Step<V, C> {
    /// A step that calls `step` with the value and the context.
    pub fn new(step: impl Fn(&V, &C) -> Outcome<V, C> + Send + Sync + 'static) -> Self {
        Step {
            kind: StepKind::Call(Arc::new(step)),
        }
    }

    pub(crate) fn nested(pipeline: Pipeline<V, C>, muted: bool) -> Self {
        Step {
            kind: StepKind::Nested { pipeline, muted },
        }
    }

    pub(crate) fn value(value: V) -> Self {
        Step {
            kind: StepKind::Value(value),
        }
    }

    /// What the step does with `value`.
    pub(crate) fn run(&self, value: &V, ctx: &C) -> Outcome<V, C>
    where
        V: Clone,
    {
        match &self.kind {
            StepKind::Call(step) => step(value, ctx),
            StepKind::Nested { pipeline, muted } => Outcome::Nested {
                pipeline: pipeline.clone(),
                muted: *muted,
            },
            StepKind::Value(value) => Outcome::Value(value.clone()),
        }
    }
}

impl<V: Clone, C> Clone for Step<V, C> {
    fn clone(&self) -> Self {
        Step {
            kind: match &self.kind {
                StepKind::Call(step) => StepKind::Call(Arc::clone(step)),
                StepKind::Nested { pipeline, muted } => StepKind::Nested {
                    pipeline: pipeline.clone(),
                    muted: *muted,
                },
                StepKind::Value(value) => StepKind::Value(value.clone()),
            },
        }
    }
}

impl<V, C> From<Pipeline<V, C>> for Step<V, C> {
    fn from(pipeline: Pipeline<V, C>) -> Self {
        Step::nested(pipeline, false)
    }
}

impl<V, C> Step<V, C> {
    /// A step that runs `pipeline` as a nested child and discards its result: the value
    /// is kept (a bare `child;` step). `Step::from(pipeline)` assigns its result instead.
    ///
    /// ```
    /// use pipewright::{pipeline, Step};
    ///
    /// let audit = pipeline!(|value: u32, _ctx: &()| { value = value + 1; });
    /// let step: Step<u32, ()> = Step::keeping_value(audit);
    /// # let _ = step;
    /// ```
    pub fn keeping_value(pipeline: Pipeline<V, C>) -> Self {
        Step::nested(pipeline, true)
    }
}

impl<V, C> fmt::Debug for Step<V, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            StepKind::Call(_) => f.write_str("Step::Call(..)"),
            StepKind::Nested { pipeline, muted } => f
                .debug_struct("Step::Nested")
                .field("pipeline", &pipeline.site_name())
                .field("muted", muted)
                .finish(),
            StepKind::Value(_) => f.write_str("Step::Value(..)"),
        }
    }
}
