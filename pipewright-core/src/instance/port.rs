//! The interpreter's port: everything an instance asks of the runtime that drives it, as
//! one narrow trait. The runtime implements it (`runtime/core.rs`); the interpreter is
//! written against it alone, so it can be read without the runtime and unit-tested with
//! a fake (`tests.rs`).

use std::sync::Arc;

use super::Instance;
use crate::cancel_reason::{CancelReason, Cancellation};
use crate::control::sharing::Sharing;
use crate::control::ErasedControl;
use crate::error::Error;
use crate::ident::Ident;
use crate::introspection::InstanceState;
use crate::pipeline::Pipeline;
use crate::registry::{EntryRef, Recorded};
use crate::runtime::{Current, FrameView};

/// What a nested pipeline step turned into.
pub(crate) enum ChildStart<V, C> {
    /// Run it (it may still have to wait for a slot).
    Run(Instance<V, C>),
    /// It runs on its own; the parent carries on.
    Detached,
    /// `use_existing`: the result of a live instance.
    Shared(Sharing<V>),
    /// Its queue refused it.
    Dropped,
    /// Its queue configuration is wrong: the step fails with this error.
    Refused(Error),
}

/// What an instance asks of the runtime that drives it.
pub(crate) trait Port<C>: Send + Sync {
    /// The runtime's context, lent to every step.
    fn context(&self) -> &Arc<C>;

    /// The step's view of its instance, for steps that take `current`; `None` where the
    /// port has no runtime to show (a fake).
    fn current<'a, V>(
        &'a self,
        at: EntryRef,
        view: &'a FrameView<'a, V, C>,
    ) -> Option<Current<'a, V, C>>;

    /// Joins a nested pipeline's queue as a child of `parent`.
    fn start_child<V>(
        &self,
        parent: EntryRef,
        pipeline: Pipeline<V, C>,
        value: V,
    ) -> ChildStart<V, C>
    where
        V: Clone + Send + Sync + 'static;

    /// Records a suspension or a resumption.
    fn set_state(&self, at: EntryRef, state: InstanceState);

    /// Cancels the tree `at` belongs to (it climbs); `false` if `at` is not live.
    fn cancel(&self, at: EntryRef, reason: CancelReason) -> bool;

    /// Cancels `at` and its descendants, without climbing to its parents.
    fn cancel_below(&self, at: EntryRef, cause: Cancellation);

    /// Takes `at` out of its queue without cancelling its tree.
    fn withdraw(&self, at: EntryRef);

    /// Records how `at`'s own steps ended; the cancellation, if one was accepted before
    /// its value arrived (the value must then be reported as that cancellation).
    fn finish(
        &self,
        at: EntryRef,
        ending: Recorded,
        result: Option<Arc<dyn ErasedControl>>,
    ) -> Option<Cancellation>;

    /// `true` if `at` must wait for children still live before its `finally!` (it is
    /// told when they are done).
    fn await_children(&self, at: EntryRef) -> bool;

    /// Tells the `on_cancel` hook that `ident` was cancelled while it waited on a future.
    fn cancelled_while_waiting(&self, ident: &Ident);
}
