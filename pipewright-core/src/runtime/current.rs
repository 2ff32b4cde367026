//! The step's view of its instance ([SEMANTICS 2.1]): its ident, its parent's, the runtime
//! that runs it, and its continuation.
//!
//! [SEMANTICS 2.1]: crate::semantics#21-a-steps-view-of-its-instance-and-continuations

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use super::{Core, Runtime};
use crate::continuation::{Continuation, Frame, Rest};
use crate::error::Error;
use crate::ident::Ident;
use crate::pipeline::{Pipeline, Section};
use crate::registry::EntryRef;

/// What a step sees of the instance that runs it: bind it as the optional third
/// parameter of a `pipeline!` header, `|value: V, ctx: &C, current|`, and every step of
/// that pipeline (`rescue!` and `finally!` included) can read it.
///
/// A synchronous step borrows it (`&Current<'_, V, C>`); a step that waits gets its own
/// copy (`Current<'static, V, C>`), taken when the step starts: its continuation is the
/// one at that step, which does not change while the step waits.
///
/// # Examples
///
/// ```
/// use pipewright::{pipeline, Runtime};
///
/// let child = pipeline!(|value: String, _ctx: &(), current| {
///     value = format!("{} in {}", current.ident().name(), current.parent().unwrap().name());
/// });
/// let parent = pipeline!(|value: String, _ctx: &()| {
///     value = child.clone();
/// });
/// let runtime = Runtime::builder(()).register("parent", parent).start().unwrap();
/// let mut handle = runtime.invoke("parent", String::new()).unwrap();
/// let text = handle.try_result().unwrap().unwrap();
/// assert!(text.starts_with("pipeline@") && text.ends_with(" in parent"), "{text}");
/// ```
pub struct Current<'a, V, C> {
    core: Cow<'a, Arc<Core<C>>>,
    id: EntryRef,
    view: View<'a, V, C>,
}

enum View<'a, V, C> {
    /// Borrowed from the interpreter, for one synchronous step.
    Lent(&'a FrameView<'a, V, C>),
    /// Taken for a step that waits.
    Owned(Continuation<V, C>),
}

/// Where an instance is, as the interpreter lends it to a step (and to the children it
/// drives, as their outer frame).
pub(crate) struct FrameView<'a, V, C> {
    pub(crate) pipeline: &'a Pipeline<V, C>,
    pub(crate) section: Section,
    /// The step running (for an outer frame: the step that nested the inner one).
    pub(crate) index: usize,
    pub(crate) value: &'a V,
    pub(crate) error: Option<&'a Error>,
    pub(crate) ident: &'a Ident,
    /// This instance runs as a muted child of the outer frame.
    pub(crate) muted: bool,
    pub(crate) outer: Option<&'a FrameView<'a, V, C>>,
}

impl<V: Clone, C> FrameView<'_, V, C> {
    fn frame(&self) -> Frame<V, C> {
        Frame::new(
            self.ident.clone(),
            self.value.clone(),
            self.muted,
            Rest {
                pipeline: self.pipeline.clone(),
                section: self.section,
                from: self.index + 1,
                error: self.error.cloned(),
            },
        )
    }
}

impl<'a, V, C> Current<'a, V, C> {
    pub(crate) fn lent(
        core: &'a Arc<Core<C>>,
        id: EntryRef,
        view: &'a FrameView<'a, V, C>,
    ) -> Self {
        Current {
            core: Cow::Borrowed(core),
            id,
            view: View::Lent(view),
        }
    }

    /// The instance running the step.
    pub fn ident(&self) -> &Ident {
        match &self.view {
            View::Lent(view) => view.ident,
            View::Owned(continuation) => continuation.innermost().ident(),
        }
    }

    /// The instance this one is a child of (nested, detached or forked), if any.
    pub fn parent(&self) -> Option<Ident>
    where
        C: Send + Sync + 'static,
    {
        let outer = match &self.view {
            View::Lent(view) => view.outer.map(|outer| outer.ident.clone()),
            View::Owned(continuation) => continuation.frame(1).map(|frame| frame.ident().clone()),
        };
        outer.or_else(|| self.core.parent_of(self.id))
    }

    /// The runtime running the step.
    pub fn runtime(&self) -> Runtime<C> {
        Runtime {
            core: Arc::clone(&self.core),
        }
    }
}

impl<V, C> Current<'_, V, C>
where
    V: Clone + Send + Sync + 'static,
    C: Send + Sync + 'static,
{
    /// What is left of the run after this step: the rest of this pipeline, then the rest
    /// of each pipeline it is nested in, up to the instance that drives them (a root, a
    /// detached child or a fork). Each frame starts with the value it has now (the
    /// innermost: the value this step was given).
    pub fn continuation(&self) -> Continuation<V, C> {
        match &self.view {
            View::Owned(continuation) => continuation.clone(),
            View::Lent(view) => {
                let mut outer = Vec::new();
                let mut next = view.outer;
                while let Some(frame) = next {
                    outer.push(frame.frame());
                    next = frame.outer;
                }
                Continuation::new(view.frame(), outer)
            }
        }
    }

    /// Starts `continuation` as a new child of this instance, with fresh idents, and
    /// returns its ident; the step carries on. The fork runs inline until it waits on
    /// something, like any nested pipeline started synchronously.
    ///
    /// The fork is this instance's child: cancelling this instance cancels it, and this
    /// instance stays live (keeping its queue slot) until it ends, like a parent whose
    /// detached child still runs; its result goes nowhere. Cancelling the fork cancels
    /// this instance's tree too, as cancelling any non-detached child does: use
    /// [`fork_detached`](Current::fork_detached) when it should not.
    ///
    /// The fork joins its pipeline's queue like any child: in a queue with no room it
    /// waits for a slot, and if that slot is the one this instance keeps (an enqueued
    /// pipeline with `max(1)` forking itself), it never gets it. Fork pipelines whose
    /// queue has room (unrestricted, the default, always has).
    ///
    /// # Errors
    ///
    /// Why the fork could not start: its queue refused it ([`Error::Dropped`]), its
    /// queue's configuration did ([`Error::Failed`], whose source is the
    /// [`InvokeError`](crate::InvokeError)), the runtime was stopped ([`Error::Failed`]
    /// with [`InvokeError::Stopped`](crate::InvokeError::Stopped): every way into a stopped
    /// runtime is refused, a kept view included), this instance is being cancelled or has
    /// ended ([`Error::Cancelled`]: a fork started from the `finally!` of a cancelled
    /// instance would be cancelled with it at once, so it is not started), or it would
    /// nest too deep on this thread outside any tokio runtime
    /// ([`Error::NestingTooDeep`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Mutex;
    /// use pipewright::{pipeline, Runtime};
    ///
    /// let p = pipeline!(|value: u32, log: &Mutex<Vec<u32>>, current| {
    ///     {
    ///         if value < 100 {
    ///             current.fork(current.continuation().with_value(value * 100)).unwrap();
    ///         }
    ///     };
    ///     log.lock().unwrap().push(value);
    /// });
    /// let runtime = Runtime::builder(Mutex::new(Vec::new())).register("p", p).start().unwrap();
    /// runtime.invoke("p", 1_u32).unwrap();
    /// assert_eq!(*runtime.context().lock().unwrap(), [100, 1]);
    /// ```
    pub fn fork(&self, continuation: Continuation<V, C>) -> Result<Ident, Error> {
        let (value, pipeline) = continuation.into_start();
        self.core.start_fork(self.id, pipeline, value, false)
    }

    /// Like [`fork`](Current::fork), but the fork is a detached child: cancelling it does
    /// not climb to this instance (cancelling this instance still cancels it).
    ///
    /// # Errors
    ///
    /// As [`fork`](Current::fork).
    pub fn fork_detached(&self, continuation: Continuation<V, C>) -> Result<Ident, Error> {
        let (value, pipeline) = continuation.into_start();
        self.core.start_fork(self.id, pipeline, value, true)
    }

    /// A copy that owns what it holds, for a step's future to keep (the code `pipeline!`
    /// writes for a waiting step that names the binding calls it).
    pub fn to_static(&self) -> Current<'static, V, C> {
        Current {
            core: Cow::Owned(Arc::clone(&self.core)),
            id: self.id,
            view: View::Owned(self.continuation()),
        }
    }
}

impl<V, C> fmt::Debug for Current<'_, V, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Current")
            .field("ident", self.ident())
            .finish_non_exhaustive()
    }
}
