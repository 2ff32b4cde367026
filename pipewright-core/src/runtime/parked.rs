//! A root that will most likely wait for a slot: its queue (enqueued or keep-latest) was
//! full when the quick path looked. Its instance and task are built before the registry's
//! lock, so that it joins and is parked in one critical section (the ordinary path takes
//! its shard's lock twice: to join, then to park).

use std::sync::Arc;

use super::core::contained;
use super::task::Task;
use super::Core;
use crate::control::{Control, ErasedControl};
use crate::error::{Error, Refused};
use crate::ident::{Ident, Name};
use crate::instance::Instance;
use crate::invocation::Canceller;
use crate::invocation::Invocation;
use crate::pipeline::Pipeline;
use crate::registry::{Admission, Effects, EntryRef, Join, QueueId};

/// A root's request to join a queue that is neither per key nor `use_existing`: what a
/// parked root, an adopted quick run and a root invoked with a future send.
pub(super) fn root_join<'a, V, C>(
    pipeline: &Pipeline<V, C>,
    ident: &'a Ident,
    queue: &'a Name,
    at: EntryRef,
    control: Arc<dyn ErasedControl>,
) -> Join<'a> {
    let config = pipeline.config();
    Join {
        at,
        ident,
        queue,
        keyed: false,
        concurrency: config.concurrency,
        control,
        parent: None,
        detached: false,
        unwaited: false,
        cancel_on_shutdown: config.cancel_on_shutdown,
        existing: None,
        pipeline_key: pipeline.key(),
    }
}

impl<C: Send + Sync + 'static> Core<C> {
    /// Joins `queue` (not per key, no `use_existing`; `queue_id` is where its gauge
    /// says it is) with `argument` and parks the root
    /// if it waits. Needs an executor (the caller checked): a parked root is spawned once
    /// admitted.
    pub(super) fn start_parked<V>(
        self: &Arc<Self>,
        pipeline: &Pipeline<V, C>,
        name: &Name,
        queue: &Name,
        queue_id: QueueId,
        argument: V,
    ) -> Result<Invocation<V>, Refused<V>>
    where
        V: Clone + Send + Sync + 'static,
    {
        let ident = self.ident(name);
        let id = ident.id;
        let kept = match contained("clone", || argument.clone()) {
            Ok(kept) => kept,
            Err(error) => return Err(Refused::new(error, argument)),
        };
        let control = Arc::new(Control::new(kept, false));
        let at = EntryRef {
            id,
            shard: queue_id.shard,
        };
        let instance = Instance::new(
            pipeline.clone(),
            at,
            ident.clone(),
            Arc::clone(&control),
            argument,
            queue,
            false,
        );
        // Allocated before the lock; the instance moves in only if it is parked.
        let mut task = Box::new(Task {
            instance: None,
            core: Arc::clone(self),
        });
        let mut instance = Some(instance);
        let join = root_join(pipeline, &ident, queue, at, Arc::clone(&control) as _);
        let mut fx = Effects::default();
        let parked = self.registry.join_parking(join, &mut fx, || {
            task.instance = instance.take();
            task
        });
        self.after(&mut fx);
        let joined = match instance {
            // Moved into its task: parked, or handed back (admitted or cancelled already).
            None => Ok(match parked {
                Ok((_, Some(task))) => Err(task),
                _ => Ok(()),
            }),
            Some(instance) => match parked {
                Ok((admission, _)) => Err((admission, instance)),
                // Never joined: the instance never ran, and the argument goes back.
                Err(error) => return Err(Refused::new(error, instance.into_argument())),
            },
        };
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
