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
//!
//! **A step that asks.** A quick run's own steps may ask the runtime about it: list the
//! active instances, look one up, cancel by ident, stop the runtime. While its steps run,
//! the run is on this thread's list of quick runs ([`QUICK_RUNS`]: its ident and what an
//! entry needs, moved there, nothing cloned), and each of those calls first adopts the
//! runs of its runtime on that list as entries, with a control block whose argument is
//! filled in when the step returns. So the step sees its own instance (its argument not
//! known yet), and cancelling or stopping reaches it: the run stops after that step and
//! goes on as the ordinary instance, which then sees the cancellation. Steps that never
//! ask pay a push and a pop on the list, and a look at a counter after each step.

use std::cell::{Cell, RefCell};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use super::core::contained;
use super::parked::root_join;
use super::Core;
use crate::behaviour::{Behaviour, Concurrency};
use crate::cancellation::{Control, ErasedControl};
use crate::error::{Error, Refused};
use crate::hooks::InstanceSpan;
use crate::ident::{Ident, Name};
use crate::instance::{run_quick, Instance, QuickRun, QuickStop};
use crate::invocation::Invocation;
use crate::pipeline::Pipeline;
use crate::queue::QueueOf;
use crate::registry::{Asked, Effects, EntryRef, Gauge, QueueId, Replaced, Reservation};

thread_local! {
    /// The quick runs whose steps run on this thread, innermost last.
    static QUICK_RUNS: RefCell<Vec<Asking>> = const { RefCell::new(Vec::new()) };
    /// How many quick runs a step adopted on this thread: a run whose count moved during
    /// a step stops after it, to look.
    static ADOPTIONS: Cell<u64> = const { Cell::new(0) };
}

/// A quick run on this thread's list, as a step that asks finds it.
struct Asking {
    /// The runtime's `Core`, by address: only its own calls adopt it.
    core: usize,
    ident: Ident,
    queue_id: QueueId,
    concurrency: Concurrency,
    cancel_on_shutdown: bool,
    pipeline_key: usize,
    /// A control block of the run's value type, its argument to be set.
    new_control: fn() -> Arc<dyn ErasedControl>,
    /// Its control block, once a step adopted it.
    adopted: Option<Arc<dyn ErasedControl>>,
}

fn pending_control<V: Clone + Send + Sync + 'static>() -> Arc<dyn ErasedControl> {
    Arc::new(Control::<V>::pending(true))
}

/// How many quick runs steps adopted on this thread so far.
fn adoptions() -> u64 {
    ADOPTIONS.with(Cell::get)
}

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
        QUICK_RUNS.with(|runs| {
            runs.borrow_mut().push(Asking {
                core: self.address(),
                ident,
                queue_id: gauge.id,
                concurrency,
                cancel_on_shutdown: config.cancel_on_shutdown,
                pipeline_key: pipeline.key(),
                new_control: pending_control::<V>,
                adopted: None,
            })
        });
        let seen = adoptions();
        let QuickRun { index, value, stop } =
            run_quick(pipeline, self.context(), argument, || adoptions() != seen);
        let Asking { ident, adopted, .. } = QUICK_RUNS
            .with(|runs| runs.borrow_mut().pop())
            .expect("a quick run takes its own place off the list");
        if let Some(control) = adopted {
            let adopted = Adopted {
                queue,
                queue_id: gauge.id,
                ident,
                argument: kept_argument,
                value,
                index,
            };
            let stop = stop.unwrap_or(QuickStop::Asked);
            return Quick::Done(Ok(self.go_on_adopted(pipeline, adopted, control, stop)));
        }
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

    /// The runtime's identity for the quick runs on a thread's list.
    fn address(&self) -> usize {
        std::ptr::from_ref(self) as usize
    }

    /// A step of a quick run asked about the runtime (introspection, cancellation, stop):
    /// the quick runs of this runtime on this thread become entries now, so the answer
    /// includes them.
    pub(super) fn adopt_asking(&self) {
        let me = self.address();
        let adopted = QUICK_RUNS.with(|runs| {
            let mut runs = runs.borrow_mut();
            let mut adopted = 0;
            for run in runs
                .iter_mut()
                .filter(|run| run.core == me && run.adopted.is_none())
            {
                let control = (run.new_control)();
                let asked = Asked {
                    ident: &run.ident,
                    concurrency: run.concurrency,
                    control: Arc::clone(&control),
                    cancel_on_shutdown: run.cancel_on_shutdown,
                    pipeline_key: run.pipeline_key,
                };
                self.registry.adopt_asked(run.queue_id, asked);
                run.adopted = Some(control);
                adopted += 1;
            }
            adopted
        });
        if adopted > 0 {
            ADOPTIONS.with(|count| count.set(count.get() + adopted));
            self.deliver_events();
        }
    }

    /// A quick run that a step adopted goes on as the ordinary instance it became, from
    /// where it stopped (after the step that asked).
    fn go_on_adopted<V>(
        self: &Arc<Self>,
        pipeline: &Pipeline<V, C>,
        adopted: Adopted<'_, V>,
        control: Arc<dyn ErasedControl>,
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
        let control = match control.into_any().downcast::<Control<V>>() {
            Ok(control) => control,
            // Made by `pending_control::<V>` for this very run.
            Err(_) => unreachable!("a quick run's control block of another type"),
        };
        control.set_argument(argument);
        let at = EntryRef {
            id: ident.id,
            shard: queue_id.shard,
        };
        let span = InstanceSpan::new(&ident, queue);
        span.state("started");
        let mut instance = Instance::new(
            pipeline.clone(),
            at,
            ident,
            Arc::clone(&control),
            value,
            true,
            span,
        );
        let runs_now = !matches!(stop, QuickStop::Pending(_));
        instance.resume_quick(index, stop, self);
        self.carry_on(instance, control, runs_now)
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
