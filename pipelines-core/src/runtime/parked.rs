//! A root that will most likely wait for a slot: its queue (enqueued or keep-latest) was
//! full when the quick path looked. Its instance and task are built before the registry's
//! lock, so that it joins and is parked in one critical section (the ordinary path takes
//! the lock twice: to join, then to park).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::core::contained;
use super::task::Task;
use super::{Canceller, Core};
use crate::cancellation::{Control, ErasedControl};
use crate::error::{Error, Refused};
use crate::hooks::InstanceSpan;
use crate::ident::{Ident, Name};
use crate::instance::Instance;
use crate::invocation::Invocation;
use crate::pipeline::Pipeline;
use crate::registry::{Admission, Effects, Join};

/// A root's request to join a queue that is neither per key nor `use_existing`: what a
/// parked root and an adopted quick run both send.
pub(super) fn root_join<'a, V, C>(
    pipeline: &Pipeline<V, C>,
    ident: &'a Ident,
    queue: &'a Name,
    control: Arc<dyn ErasedControl>,
) -> Join<'a> {
    let config = pipeline.config();
    Join {
        id: ident.id,
        ident,
        queue,
        keyed: false,
        concurrency: config.concurrency,
        control,
        parent: None,
        detached: false,
        cancel_on_shutdown: config.cancel_on_shutdown,
        existing: None,
        pipeline_key: pipeline.key(),
    }
}

impl<C: Send + Sync + 'static> Core<C> {
    /// Joins `queue` (not per key, no `use_existing`) with `argument` and parks the root
    /// if it waits. Needs an executor (the caller checked): a parked root is spawned once
    /// admitted.
    pub(super) fn start_parked<V>(
        self: &Arc<Self>,
        pipeline: &Pipeline<V, C>,
        name: Name,
        queue: &Name,
        argument: V,
    ) -> Result<Invocation<V>, Refused<V>>
    where
        V: Clone + Send + Sync + 'static,
    {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let ident = Ident { name, id };
        let kept = match contained("clone", || argument.clone()) {
            Ok(kept) => kept,
            Err(error) => return Err(Refused::new(error, argument)),
        };
        let control = Arc::new(Control::new(kept, false));
        let span = InstanceSpan::new(&ident, queue);
        span.state("waiting");
        let instance = Instance::new(
            pipeline.clone(),
            id,
            ident.clone(),
            Arc::clone(&control),
            argument,
            false,
            span,
        );
        // Allocated before the lock; the instance moves in only if it is parked.
        let mut task = Box::new(Task {
            instance: None,
            core: Arc::clone(self),
        });
        let join = root_join(pipeline, &ident, queue, Arc::clone(&control) as _);
        let mut fx = Effects::default();
        let mut registry = self.lock();
        let joined = match registry.join(join, &mut fx) {
            Ok(Admission::Wait) => {
                task.instance = Some(instance);
                Ok(registry.park(id, task))
            }
            Ok(admission) => Err((admission, instance)),
            Err(error) => {
                drop(registry);
                // Never joined: the instance never ran, and the argument goes back.
                return Err(Refused::new(error, instance.into_argument()));
            }
        };
        drop(registry);
        self.after(&mut fx);
        let canceller = Arc::clone(self) as Arc<dyn Canceller>;
        match joined {
            // Parked: spawned once admitted, ended at once if cancelled first.
            Ok(Ok(())) => Ok(Invocation::running(ident, control, canceller)),
            // Admitted by the join's last look for a free slot: what the ordinary path
            // does when its park comes too late.
            Ok(Err(task)) => {
                task.start();
                Ok(Invocation::running(ident, control, canceller))
            }
            Err((Admission::Drop, _)) => {
                let dropped = Err(Error::Dropped);
                Ok(Invocation::ready(ident, control, canceller, dropped))
            }
            // The queue had room after all.
            Err((_, mut instance)) => {
                instance.admitted_at_join();
                Ok(self.carry_on(instance, control, true))
            }
        }
    }
}
