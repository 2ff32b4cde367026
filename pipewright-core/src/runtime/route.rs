//! Which route a root invocation takes: decided once, in [`Core::route`], and carried out
//! by [`Core::start_root`]. Every root invocation by name, by pipeline value or through a
//! [`PipelineHandle`](crate::PipelineHandle) goes through here; `invoke_future` is the one
//! other entry (its argument is not there yet).
//!
//! The routes, and where each polls the instance first, are the table in the runtime's
//! module header (`mod.rs`).

use std::borrow::Cow;
use std::sync::Arc;

use super::Core;
use crate::error::InvokeError;
use crate::events::hooks::InstanceSpan;
use crate::ident::Name;
use crate::pipeline::Pipeline;
use crate::queue::QueueOf;
use crate::registry::{Gauge, Reservation};

/// How a root invocation is carried out.
pub(super) enum Route<'a> {
    /// A quick run in `queue`, holding a slot of its gauge already.
    Quick(QueueAt<'a>),
    /// Refused at once: a full dropping queue.
    Refused,
    /// Joined and parked in one critical section: the queue is full.
    Parked(QueueAt<'a>),
    /// The ordinary join.
    Ordinary,
}

/// A fixed queue, by name and gauge.
pub(super) struct QueueAt<'a> {
    pub(super) name: Cow<'a, Name>,
    pub(super) gauge: Cow<'a, Arc<Gauge>>,
}

impl<C: Send + Sync + 'static> Core<C> {
    /// Decides the route of a root invocation of `pipeline` named `name`. `hint` is its
    /// queue's gauge, if it was resolved at registration with this configuration. A
    /// `Quick` route holds its slot: the caller runs it or gives the slot back.
    pub(super) fn route<'a, V>(
        &self,
        pipeline: &'a Pipeline<V, C>,
        name: &Name,
        hint: Option<&'a Arc<Gauge>>,
    ) -> Result<Route<'a>, InvokeError> {
        let config = pipeline.config();
        let concurrency = config.concurrency;
        let QueueOf::Fixed(queue) = pipeline.queue_of() else {
            return Ok(Route::Ordinary);
        };
        if !self.quick_runs
            // Its steps see their instance: it needs one from the start.
            || pipeline.layout().current
            || concurrency.use_existing()
            || !concurrency.behaviour().may_run_quick()
            || InstanceSpan::observed()
        {
            return Ok(Route::Ordinary);
        }
        // A queue resolved at registration keeps its gauge: no lock, no name lookup.
        let gauge = match hint {
            Some(gauge) => Cow::Borrowed(gauge),
            None => Cow::Owned(self.registry.gauge_for(&queue, concurrency, name)?),
        };
        let reservation = gauge.reserve();
        let at = QueueAt { name: queue, gauge };
        Ok(match reservation {
            Reservation::Held => Route::Quick(at),
            Reservation::Refused => Route::Refused,
            // It will most likely wait: joined and parked in one critical section.
            Reservation::Full if self.has_executor() => Route::Parked(at),
            Reservation::Full => Route::Ordinary,
        })
    }
}
