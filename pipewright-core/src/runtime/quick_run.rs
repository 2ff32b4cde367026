//! The quick path of a root invocation ([SEMANTICS 3.2] unchanged; see
//! docs/decisions/interpreter.md, "Quick runs").
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
//! the run has a place on this thread ([`QUICK_RUNS`], by depth: its id, the name of its
//! ident and what an entry needs, as plain `Copy` data), and each of those calls first
//! adopts this thread's innermost quick run as an entry if it is of its runtime, with a
//! control block whose argument is filled in when the step returns. So the step sees its
//! own instance (its argument not known yet), and cancelling or stopping reaches it: the
//! run stops after that step and goes on as the ordinary instance, which then sees the
//! cancellation. Steps that never ask pay one write of their place, and a look at a
//! counter after each step.
//!
//! [SEMANTICS 3.2]: crate::semantics#32-behaviours

use std::cell::Cell;
use std::mem::ManuallyDrop;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use super::core::contained;
use super::parked::root_join;
use super::route::QueueAt;
use super::Core;
use crate::control::{Control, ErasedControl};
use crate::error::{Error, Refused};
use crate::ident::{Ident, Name};
use crate::instance::{run_quick, Instance, QuickRun, QuickStop};
use crate::invocation::Invocation;
use crate::pipeline::Pipeline;
use crate::registry::{Asked, Effects, EntryRef, Gauge, QueueId, Replaced};

thread_local! {
    /// The quick runs whose steps run on this thread, one inside another's step: the
    /// first [`TRACKED`] of them, by depth (plain `Copy` data in fixed places: starting a
    /// run writes its place, ending it only lowers the depth; nothing is read back, and
    /// no destructor is involved).
    static QUICK_RUNS: [Cell<Asking>; TRACKED] = const { [const { Cell::new(Asking::NONE) }; TRACKED] };
    /// How many quick runs are running on this thread, one inside another.
    static QUICK_DEPTH: Cell<usize> = const { Cell::new(0) };
    /// The control block a step made for the quick run at each depth when it adopted it,
    /// taken by that run once its steps stop. (`ManuallyDrop`: no drop glue, as above;
    /// the run that was adopted always takes its own.)
    static ADOPTED: [AdoptedControl; TRACKED] = const { [const { Cell::new(None) }; TRACKED] };
    /// How many quick runs a step adopted on this thread: a run whose count moved during
    /// a step stops after it, to look.
    static ADOPTIONS: Cell<u64> = const { Cell::new(0) };
}

/// The place of a control block a step made for an adopted quick run.
type AdoptedControl = Cell<Option<ManuallyDrop<Arc<dyn ErasedControl>>>>;

/// How many nested quick runs a thread tracks: a step of one started deeper than that
/// (inside the steps of this many others) does not find its own run when it asks.
const TRACKED: usize = 8;

/// A quick run as a step that asks finds it: what its entry needs.
#[derive(Clone, Copy)]
struct Asking {
    /// The runtime, by its serial number (`ids.rs`; 0 is none): only its own calls
    /// adopt it.
    runtime: u64,
    id: u64,
    /// Its ident's name (static for every root; `None` would make it unadoptable).
    name: Option<&'static str>,
    queue_id: QueueId,
    cancel_on_shutdown: bool,
    pipeline_key: usize,
    /// A control block of the run's value type, its argument to be set.
    new_control: fn() -> Arc<dyn ErasedControl>,
}

impl Asking {
    /// An empty place (no runtime has the serial number 0).
    const NONE: Asking = Asking {
        runtime: 0,
        id: 0,
        name: None,
        queue_id: QueueId { shard: 0, slot: 0 },
        cancel_on_shutdown: false,
        pipeline_key: 0,
        new_control: pending_control::<()>,
    };
}

fn pending_control<V: Clone + Send + Sync + 'static>() -> Arc<dyn ErasedControl> {
    Arc::new(Control::<V>::pending(true))
}

/// How many quick runs steps adopted on this thread so far.
#[inline]
fn adoptions() -> u64 {
    ADOPTIONS.with(Cell::get)
}

impl<C: Send + Sync + 'static> Core<C> {
    /// Runs a root invocation of `pipeline` named `name` as a quick run in the queue
    /// `at`: the route chose it, and `at`'s gauge holds its slot.
    pub(super) fn start_quick<V>(
        self: &Arc<Self>,
        pipeline: &Pipeline<V, C>,
        name: &Name,
        at: &QueueAt<'_>,
        argument: V,
    ) -> Result<Invocation<V>, Refused<V>>
    where
        V: Clone + Send + Sync + 'static,
    {
        let (queue, gauge): (&Name, &Arc<Gauge>) = (&at.name, &at.gauge);
        let config = pipeline.config();
        let ident = self.ident(name);
        // The caller's handle keeps the argument; the steps consume the original.
        let kept_argument = match contained("clone", || argument.clone()) {
            Ok(kept) => kept,
            Err(error) => {
                self.give_back(gauge);
                return Err(Refused::new(error, argument));
            }
        };
        let depth = QUICK_DEPTH.get();
        let asking = Asking {
            runtime: self.ids.runtime(),
            id: ident.id,
            name: match ident.name {
                Name::Static(name) => Some(name),
                Name::Shared(_) => None,
            },
            queue_id: gauge.id,
            cancel_on_shutdown: config.cancel_on_shutdown,
            pipeline_key: pipeline.key(),
            new_control: pending_control::<V>,
        };
        if depth < TRACKED {
            QUICK_RUNS.with(|runs| runs[depth].set(asking));
        }
        QUICK_DEPTH.set(depth + 1);
        let seen = adoptions();
        let QuickRun { index, value, stop } =
            run_quick(pipeline, self.context(), argument, || adoptions() != seen);
        QUICK_DEPTH.set(depth);
        // Only a run whose steps asked looks: the count moved.
        let adopted = if adoptions() == seen {
            None
        } else {
            ADOPTED
                .with(|adopted| adopted.get(depth).and_then(Cell::take))
                .map(ManuallyDrop::into_inner)
        };
        if adopted.is_none() && stop.is_none() {
            return Ok(self.end_quick(gauge, ident, kept_argument, value));
        }
        let run = Adopted {
            queue,
            queue_id: gauge.id,
            ident,
            value,
            index,
        };
        let invocation = match (adopted, stop) {
            (Some(control), stop) => self.go_on_adopted(
                pipeline,
                run,
                kept_argument,
                control,
                stop.unwrap_or(QuickStop::Asked),
            ),
            (None, Some(stop)) => self.adopt(pipeline, run, kept_argument, stop),
            // Ended just above.
            (None, None) => unreachable!("a quick run that ended went on"),
        };
        Ok(invocation)
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

    /// A step of a quick run asked about the runtime (introspection, cancellation, stop):
    /// this thread's quick run, if it is of this runtime, becomes an entry now, so the
    /// answer includes it.
    pub(super) fn adopt_asking(&self) {
        let depth = QUICK_DEPTH.get();
        if depth == 0 || depth > TRACKED {
            return;
        }
        let mut run = QUICK_RUNS.with(|runs| runs[depth - 1].get());
        if run.runtime != self.ids.runtime() {
            return;
        }
        // Every root's ident name is static (a site's, or an interned registration name).
        let Some(name) = run.name else {
            return;
        };
        let ident = Ident {
            name: Name::Static(name),
            id: run.id,
        };
        let control = (run.new_control)();
        let asked = Asked {
            ident: &ident,
            control: Arc::clone(&control),
            cancel_on_shutdown: run.cancel_on_shutdown,
            pipeline_key: run.pipeline_key,
        };
        self.registry.adopt_asked(run.queue_id, asked);
        // Adopted once: a second ask finds the entry.
        run.runtime = 0;
        QUICK_RUNS.with(|runs| runs[depth - 1].set(run));
        ADOPTED.with(|adopted| adopted[depth - 1].set(Some(ManuallyDrop::new(control))));
        ADOPTIONS.with(|count| count.set(count.get() + 1));
        self.deliver_events();
    }

    /// A quick run that a step adopted goes on as the ordinary instance it became, from
    /// where it stopped (after the step that asked).
    fn go_on_adopted<V>(
        self: &Arc<Self>,
        pipeline: &Pipeline<V, C>,
        adopted: Adopted<'_, V>,
        argument: V,
        control: Arc<dyn ErasedControl>,
        stop: QuickStop<V, C>,
    ) -> Invocation<V>
    where
        V: Clone + Send + Sync + 'static,
    {
        let control = match control.into_any().downcast::<Control<V>>() {
            Ok(control) => control,
            // Made by `pending_control::<V>` for this very run.
            Err(_) => unreachable!("a quick run's control block of another type"),
        };
        control.set_argument(argument);
        self.go_on_as_instance(pipeline, adopted, control, stop)
    }

    /// A quick run that must be seen from now on becomes an ordinary instance, keeping
    /// its slot, and goes on from the step it stopped at.
    fn adopt<V>(
        self: &Arc<Self>,
        pipeline: &Pipeline<V, C>,
        adopted: Adopted<'_, V>,
        argument: V,
        stop: QuickStop<V, C>,
    ) -> Invocation<V>
    where
        V: Clone + Send + Sync + 'static,
    {
        let control = Arc::new(Control::new(argument, true));
        let at = adopted.entry();
        let join = root_join(
            pipeline,
            &adopted.ident,
            adopted.queue,
            at,
            Arc::clone(&control) as _,
        );
        self.registry.adopt(adopted.queue_id, join);
        self.deliver_events();
        self.go_on_as_instance(pipeline, adopted, control, stop)
    }

    /// An adopted quick run's instance (its entry recorded, its control block `control`),
    /// going on from the step it stopped at.
    fn go_on_as_instance<V>(
        self: &Arc<Self>,
        pipeline: &Pipeline<V, C>,
        adopted: Adopted<'_, V>,
        control: Arc<Control<V>>,
        stop: QuickStop<V, C>,
    ) -> Invocation<V>
    where
        V: Clone + Send + Sync + 'static,
    {
        let at = adopted.entry();
        let Adopted {
            queue,
            ident,
            value,
            index,
            ..
        } = adopted;
        let mut instance = Instance::new(
            pipeline.clone(),
            at,
            ident,
            Arc::clone(&control),
            value,
            queue,
            true,
        );
        // A pending future has had its first poll: the instance waits on it.
        let runs_now = !matches!(stop, QuickStop::Pending(_));
        instance.resume_quick(index, stop, self);
        self.carry_on(instance, control, runs_now)
    }
}

/// A quick run on its way to becoming an instance: where it runs and how far it got.
struct Adopted<'a, V> {
    queue: &'a Name,
    queue_id: QueueId,
    ident: Ident,
    value: V,
    index: usize,
}

impl<V> Adopted<'_, V> {
    /// Its entry: its ident's id, in its queue's shard.
    fn entry(&self) -> EntryRef {
        EntryRef {
            id: self.ident.id,
            shard: self.queue_id.shard,
        }
    }
}
