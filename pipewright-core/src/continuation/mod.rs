//! Continuations ([SEMANTICS 2.1]): what is left of an instance and of each parent it is
//! nested in, captured by a step as a value.
//!
//! A [`Continuation`] is a list of [`Frame`]s, innermost first: the rest of the capturing
//! pipeline, then the rest of each parent up to the instance that drives them all (a
//! root, a detached child or a fork). A frame is the pipeline it belongs to, the section
//! and step it goes on from, its value, and the steps inserted before or pushed after
//! it. A frame's remaining steps become a pipeline (`program.rs`) that keeps its site,
//! queue and configuration: a resumed level goes on with it in place (the same instance,
//! in the same slot), and a forked frame runs it as a child of the same pipeline would.
//!
//! - `mod.rs`: [`Continuation`] and [`Frame`]
//! - `step.rs`: [`Step`], a step inserted by hand
//! - `program.rs`: a frame, or a whole continuation, as a pipeline
//!
//! [SEMANTICS 2.1]: crate::semantics#21-a-steps-view-of-its-instance-and-continuations

mod program;
mod step;

use std::fmt;

use crate::error::Error;
use crate::ident::Ident;
use crate::pipeline::{Pipeline, Section};

pub use self::step::Step;

/// What is left of a run, captured by a step: the rest of its pipeline, then the rest of
/// each pipeline it is nested in, innermost first.
///
/// A step gets one from [`Current::continuation`](crate::Current::continuation). Then:
///
/// - **resume**: a step that returns a continuation replaces the rest of the run with it.
///   Each level goes on in place with its frame: the capturing instance at once, each
///   parent when the level inside it ends, with that level's result as its value (unless
///   it ran muted). The instances, their idents and their slots stay; each runs its
///   `finally!` once, at its end. A continuation captured in another run is run as a
///   child in place of the remaining steps;
/// - **fork**: [`Current::fork`](crate::Current::fork) starts it as a new child of the
///   capturing instance, while the step carries on;
/// - **into a pipeline**: [`into_pipeline`](Continuation::into_pipeline) makes the rest a
///   pipeline value, to nest or invoke like any other.
///
/// # Examples
///
/// Fork the rest of the pipeline with another value: the fork runs the remaining steps
/// first (synchronously, nothing waits), then the capturing step carries on.
///
/// ```
/// use std::sync::Mutex;
/// use pipewright::{pipeline, Runtime};
///
/// let p = pipeline!(|value: u32, seen: &Mutex<Vec<u32>>, current| {
///     value = {
///         let fork = current.continuation().with_value(value * 100);
///         current.fork(fork).unwrap();
///         value + 1
///     };
///     seen.lock().unwrap().push(value);
/// });
/// let runtime = Runtime::builder(Mutex::new(Vec::new())).register("p", p).start().unwrap();
/// assert_eq!(runtime.invoke("p", 1_u32).unwrap().try_result().unwrap().unwrap(), 2);
/// assert_eq!(*runtime.context().lock().unwrap(), [100, 2]);
/// ```
pub struct Continuation<V, C> {
    innermost: Frame<V, C>,
    /// The frames around it, innermost first.
    outer: Vec<Frame<V, C>>,
}

/// One level of a [`Continuation`]: the rest of one instance's pipeline.
///
/// # Examples
///
/// ```
/// use pipewright::{pipeline, Outcome, Runtime, Step};
///
/// let p = pipeline!(|value: u32, _ctx: &(), current| {
///     {
///         let mut rest = current.continuation();
///         rest.innermost_mut().insert(Step::new(|value: &u32, _: &()| Outcome::Value(value * 10)));
///         rest
///     };
///     value = value + 1;
/// });
/// let runtime = Runtime::builder(()).start().unwrap();
/// let mut handle = runtime.invoke_pipeline(&p, 4).unwrap();
/// assert_eq!(handle.try_result().unwrap().unwrap(), 41);
/// ```
pub struct Frame<V, C> {
    ident: Ident,
    value: V,
    /// Its result does not replace the next outer frame's value (it ran muted).
    muted: bool,
    front: Vec<Step<V, C>>,
    rest: Rest<V, C>,
    back: Vec<Step<V, C>>,
}

/// The steps of the frame's own pipeline it goes on with.
pub(crate) struct Rest<V, C> {
    pub(crate) pipeline: Pipeline<V, C>,
    pub(crate) section: Section,
    /// The first step left in `section`.
    pub(crate) from: usize,
    /// The error `rescue!` or `finally!` steps see (captured there).
    pub(crate) error: Option<Error>,
}

impl<V: Clone, C> Clone for Rest<V, C> {
    fn clone(&self) -> Self {
        Rest {
            pipeline: self.pipeline.clone(),
            section: self.section,
            from: self.from,
            error: self.error.clone(),
        }
    }
}

impl<V, C> Frame<V, C> {
    pub(crate) fn new(ident: Ident, value: V, muted: bool, rest: Rest<V, C>) -> Self {
        Frame {
            ident,
            value,
            muted,
            front: Vec::new(),
            rest,
            back: Vec::new(),
        }
    }

    /// The instance this frame is the rest of.
    pub fn ident(&self) -> &Ident {
        &self.ident
    }

    /// The value the frame goes on with. An outer frame's value is replaced by the result
    /// of the frame inside it, unless that one ran muted.
    pub fn value(&self) -> &V {
        &self.value
    }

    /// Replaces the value the frame goes on with.
    pub fn set_value(&mut self, value: V) {
        self.value = value;
    }

    /// `true` if the frame's result does not flow to the next outer frame (its pipeline
    /// ran as a muted child).
    pub fn is_muted(&self) -> bool {
        self.muted
    }

    /// Inserts `step` before the frame's remaining steps (and before the steps inserted
    /// earlier).
    pub fn insert(&mut self, step: impl Into<Step<V, C>>) {
        self.front.insert(0, step.into());
    }

    /// Appends `step` after the frame's remaining steps (and after the steps pushed
    /// earlier).
    pub fn push(&mut self, step: impl Into<Step<V, C>>) {
        self.back.push(step.into());
    }

    /// How many steps the frame has left in its section, inserted and pushed ones included
    /// (a `rescue!` or `finally!` that would follow is not counted).
    pub fn remaining(&self) -> usize {
        let own = self
            .rest
            .pipeline
            .layout()
            .len(self.rest.section)
            .saturating_sub(self.rest.from);
        self.front.len() + own + self.back.len()
    }
}

impl<V: Clone, C> Clone for Frame<V, C> {
    fn clone(&self) -> Self {
        Frame {
            ident: self.ident.clone(),
            value: self.value.clone(),
            muted: self.muted,
            front: self.front.clone(),
            rest: self.rest.clone(),
            back: self.back.clone(),
        }
    }
}

impl<V, C> fmt::Debug for Frame<V, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Frame")
            .field("ident", &self.ident)
            .field("pipeline", &self.rest.pipeline.site_name())
            .field("section", &self.rest.section)
            .field("from", &self.rest.from)
            .field("muted", &self.muted)
            .field("inserted", &self.front.len())
            .field("pushed", &self.back.len())
            .finish_non_exhaustive()
    }
}

impl<V, C> Continuation<V, C> {
    pub(crate) fn new(innermost: Frame<V, C>, outer: Vec<Frame<V, C>>) -> Self {
        Continuation { innermost, outer }
    }

    /// Its innermost frame and the frames around it (innermost first).
    pub(crate) fn into_frames(self) -> (Frame<V, C>, Vec<Frame<V, C>>) {
        (self.innermost, self.outer)
    }

    /// The frame of the capturing pipeline.
    pub fn innermost(&self) -> &Frame<V, C> {
        &self.innermost
    }

    /// The frame of the capturing pipeline, to change.
    pub fn innermost_mut(&mut self) -> &mut Frame<V, C> {
        &mut self.innermost
    }

    /// The frame `index` levels out from the capturing pipeline (0 is the innermost).
    pub fn frame(&self, index: usize) -> Option<&Frame<V, C>> {
        match index {
            0 => Some(&self.innermost),
            _ => self.outer.get(index - 1),
        }
    }

    /// The frame `index` levels out from the capturing pipeline, to change.
    pub fn frame_mut(&mut self, index: usize) -> Option<&mut Frame<V, C>> {
        match index {
            0 => Some(&mut self.innermost),
            _ => self.outer.get_mut(index - 1),
        }
    }

    /// The frames, innermost first.
    pub fn frames(&self) -> impl Iterator<Item = &Frame<V, C>> {
        std::iter::once(&self.innermost).chain(&self.outer)
    }

    /// How many frames (nesting levels) it has; at least one.
    pub fn len(&self) -> usize {
        1 + self.outer.len()
    }

    /// Always `false`: a continuation has at least its innermost frame.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The same continuation, going on with `value` (the innermost frame's value).
    #[must_use]
    pub fn with_value(mut self, value: V) -> Self {
        self.innermost.value = value;
        self
    }
}

impl<V: Clone, C> Clone for Continuation<V, C> {
    fn clone(&self) -> Self {
        Continuation {
            innermost: self.innermost.clone(),
            outer: self.outer.clone(),
        }
    }
}

impl<V, C> fmt::Debug for Continuation<V, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.frames()).finish()
    }
}
