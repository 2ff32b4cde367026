//! The quick path of a root invocation (SEMANTICS 3.2 unchanged; DESIGN.md "Quick runs").
//!
//! Most invocations of a synchronous pipeline start and end inside `invoke`. When nothing
//! could see such an instance in between (no watcher or event stream, no transactor, no
//! `tracing` subscriber, and a queue whose other invocations never act on its live
//! instances: not restartable, not `use_existing`, not per key), it needs no registry
//! entry, no control block and no `Instance`: its queue holds a slot for it as a count,
//! its steps run on the bare value, and the slot is given back with its result. The
//! moment it needs to be seen (a future that waits, a nested pipeline, an error, a break,
//! a cancellation, a `finally!`), it becomes an ordinary instance at the step it reached,
//! keeping its slot.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use super::core::contained;
use super::parked::root_join;
use super::Core;
use crate::behaviour::Behaviour;
use crate::cancellation::Control;
use crate::error::{Error, Refused};
use crate::hooks::InstanceSpan;
use crate::ident::{Ident, Name};
use crate::instance::{run_quick, Instance, QuickRun, QuickStop};
use crate::invocation::Invocation;
use crate::pipeline::Pipeline;
use crate::queue::QueueOf;
use crate::registry::{Effects, EntryRef, Gauge, QueueId, Replaced, Reservation};

/// What the quick path made of an invocation.
pub(super) enum Quick<V> {
    /// It was handled (ran, was refused, or failed to join).
    Done(Result<Invocation<V>, Refused<V>>),
    /// It must take the ordinary path; the argument is handed back.
    Declined(V),
}

impl<C: Send + Sync + 'static> Core<C> {
    /// Tries the quick path for a root invocation of `pipeline` named `name` (`hint`: its
    /// queue's gauge, if resolved at registration with this configuration).
    pub(super) fn start_quick<V>(
        self: &Arc<Self>,
        pipeline: &Pipeline<V, C>,
        name: &Name,
        argument: V,
        hint: Option<&Arc<Gauge>>,
    ) -> Quick<V>
    where
        V: Clone + Send + Sync + 'static,
    {
        let config = pipeline.config();
        let concurrency = config.concurrency;
        let QueueOf::Fixed(queue) = pipeline.queue_of() else {
            return Quick::Declined(argument);
        };
        let queue: &Name = &queue;
        if !self.quick_runs
            // Its steps see their instance: it needs one from the start.
            || pipeline.layout().current
            || concurrency.use_existing()
            || concurrency.behaviour() == Behaviour::Restartable
            || InstanceSpan::observed()
        {
            return Quick::Declined(argument);
        }
        // A queue resolved at registration keeps its gauge: no lock, no name lookup.
        let resolved;
        let gauge = match hint {
            Some(gauge) => gauge,
            None => match self.registry.gauge_for(queue, concurrency, name) {
                Ok(gauge) => {
                    resolved = gauge;
                    &resolved
                }
                Err(error) => return Quick::Done(Err(Refused::new(error, argument))),
            },
        };
        match gauge.reserve() {
            Reservation::Held => {}
            Reservation::Refused => {
                let ident = self.ident(name);
                return Quick::Done(Ok(Invocation::refused(ident, argument)));
            }
            // It will most likely wait: joined and parked in one critical section.
            Reservation::Full if self.has_executor() => {
                let parked = self.start_parked(pipeline, name.clone(), queue, gauge.id, argument);
                return Quick::Done(parked);
            }
            Reservation::Full => return Quick::Declined(argument),
        }
        let ident = self.ident(name);
        // The caller's handle keeps the argument; the steps consume the original.
        let kept_argument = match contained("clone", || argument.clone()) {
            Ok(kept) => kept,
            Err(error) => {
                self.give_back(gauge);
                return Quick::Done(Err(Refused::new(error, argument)));
            }
        };
        let QuickRun { index, value, stop } = run_quick(pipeline, self.context(), argument);
        let invocation = match stop {
            None => self.end_quick(gauge, ident, kept_argument, value),
            Some(stop) => {
                let adopted = Adopted {
                    queue,
                    queue_id: gauge.id,
                    ident,
                    argument: kept_argument,
                    value,
                    index,
                };
                self.adopt(pipeline, adopted, stop)
            }
        };
        Quick::Done(Ok(invocation))
    }

    /// A quick run reached its end: its result is kept for the queue's statistics, and
    /// its slot is given back.
    fn end_quick<V>(&self, gauge: &Gauge, ident: Ident, argument: V, value: V) -> Invocation<V>
    where
        V: Clone + Send + Sync + 'static,
    {
        // The kept copy is user code: a panicking `Clone` fails the instance.
        let kept = catch_unwind(AssertUnwindSafe(|| value.clone())).map_err(Error::from_panic);
        let (replaced, result) = match kept {
            Ok(kept) => (gauge.record(Ok(kept)), Ok(value)),
            Err(error) => {
                drop(value);
                (gauge.record::<V>(Err(error.clone())), Err(error))
            }
        };
        self.give_back(gauge);
        match replaced {
            Replaced::Nothing => {}
            Replaced::Value(value) => self.drop_kept(value, Some(&ident)),
            Replaced::Kept(kept) => self.drop_kept(kept, Some(&ident)),
        }
        if let Err(error) = &result {
            self.hooks.report(&ident, error);
        }
        Invocation::quick(ident, argument, result)
    }

    /// Gives a quick run's slot back; if an instance waits for it, the registry starts it;
    /// if a caller waits for room, it is woken.
    fn give_back(&self, gauge: &Gauge) {
        let freed = gauge.free();
        if freed.entry_waits() {
            let mut fx = Effects::default();
            self.registry.start_waiting(gauge.id, &mut fx);
            self.after(&mut fx);
        }
        if freed.room_wanted() {
            gauge.wake_room_waiters();
        }
    }

    /// A quick run that must be seen from now on becomes an ordinary instance, keeping
    /// its slot, and goes on from the step it stopped at.
    fn adopt<V>(
        self: &Arc<Self>,
        pipeline: &Pipeline<V, C>,
        adopted: Adopted<'_, V>,
        stop: QuickStop<V, C>,
    ) -> Invocation<V>
    where
        V: Clone + Send + Sync + 'static,
    {
        let Adopted {
            queue,
            queue_id,
            ident,
            argument,
            value,
            index,
        } = adopted;
        let id = ident.id;
        let control = Arc::new(Control::new(argument, true));
        let at = EntryRef {
            id,
            shard: queue_id.shard,
        };
        let join = root_join(pipeline, &ident, queue, at, Arc::clone(&control) as _);
        self.registry.adopt(queue_id, join);
        self.deliver_events();
        let span = InstanceSpan::new(&ident, queue);
        span.state("started");
        let mut instance = Instance::new(
            pipeline.clone(),
            at,
            ident.clone(),
            Arc::clone(&control),
            value,
            true,
            span,
        );
        // A pending future has had its first poll: the instance waits on it.
        let runs_now = !matches!(stop, QuickStop::Pending(_));
        instance.resume_quick(index, stop, self);
        self.carry_on(instance, control, runs_now)
    }
}

/// A quick run on its way to becoming an instance.
struct Adopted<'a, V> {
    queue: &'a Name,
    queue_id: QueueId,
    ident: Ident,
    argument: V,
    value: V,
    index: usize,
}
