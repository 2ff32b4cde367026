//! Slots for quick runs: instances that run inside `invoke` without an entry (see
//! `runtime/quick_run.rs`). A quick run takes its slot from its queue's [`Gauge`], without the
//! registry's lock, and ends by recording its result there and giving the slot back; the
//! lock is taken only if an entry waits for that slot, or when the run becomes an
//! ordinary entry (adoption) because it has to be seen.

use std::sync::Arc;

use super::view::View;
use super::{Admission, Effects, EntryRef, Gauge, Join, QueueId, Registry};
use crate::behaviour::Concurrency;
use crate::control::ErasedControl;
use crate::error::{Error, InvokeError};
use crate::ident::{Ident, Name};
use crate::introspection::{Kept, KeptResult};

/// A quick run adopted from inside a step: what its entry needs.
pub(crate) struct Asked<'a> {
    pub(crate) ident: &'a Ident,
    pub(crate) control: Arc<dyn ErasedControl>,
    pub(crate) cancel_on_shutdown: bool,
    pub(crate) pipeline_key: usize,
}

/// The queue's answer to a quick run.
pub(crate) enum Reservation {
    /// A slot is held for it.
    Held,
    /// A full dropping queue refused it.
    Refused,
    /// No free slot (or somebody waits for one): it must join the queue as an ordinary
    /// instance (to wait, or to be refused).
    Full,
}

/// What recording a quick run's result let go of, to be dropped by the caller (user
/// code, outside every lock).
pub(crate) enum Replaced<V> {
    Nothing,
    /// The previous result, replaced in place.
    Value(V),
    /// The previous result, kept another way.
    Kept(KeptResult),
}

impl Gauge {
    /// Holds a free slot for a quick run. Queues whose behaviour may not run quick
    /// (`Behaviour::may_run_quick`) and `use_existing` never get here.
    pub(crate) fn reserve(&self) -> Reservation {
        if self.try_take_quick() {
            Reservation::Held
        } else if self.concurrency.behaviour().refuses_when_full() && !self.has_free_slot() {
            Reservation::Refused
        } else {
            Reservation::Full
        }
    }

    /// Records how a quick run ended, before its slot is given back. A result replaces
    /// the queue's last result in place when the previous one was kept the same way and
    /// nobody else looks at it (no allocation).
    pub(crate) fn record<V: Send + Sync + 'static>(&self, result: Result<V, Error>) -> Replaced<V> {
        let mut guard = self.stats();
        let stats = &mut *guard;
        stats.performed += 1;
        match result {
            Ok(value) => {
                let in_place = match &mut stats.last_result {
                    Some(KeptResult::Alone(kept)) => {
                        Arc::get_mut(kept).and_then(|kept| kept.as_any_mut().downcast_mut::<V>())
                    }
                    _ => None,
                };
                match in_place {
                    Some(slot) => Replaced::Value(std::mem::replace(slot, value)),
                    None => {
                        let kept = KeptResult::Alone(Arc::new(Kept(value)));
                        match stats.last_result.replace(kept) {
                            Some(old) => Replaced::Kept(old),
                            None => Replaced::Nothing,
                        }
                    }
                }
            }
            Err(error) => {
                stats.last_error = Some(error);
                Replaced::Nothing
            }
        }
    }
}

impl Registry {
    /// The gauge of `queue` (created if needed) for a quick run, if its configuration is
    /// `concurrency`.
    pub(crate) fn gauge_for(
        &self,
        queue: &Name,
        concurrency: Concurrency,
        by: &Name,
    ) -> Result<Arc<Gauge>, InvokeError> {
        self.shard(self.shard_of(queue))
            .gauge_for(queue, concurrency, by)
    }

    /// Declares a queue with a fixed name (registration); fails if it exists with another
    /// configuration.
    pub(crate) fn declare(
        &self,
        queue: Name,
        concurrency: Concurrency,
        by: Name,
    ) -> Result<Arc<Gauge>, InvokeError> {
        self.gauge_for(&queue, concurrency, &by)
    }

    /// Turns a quick run into an ordinary started entry: it keeps the slot it holds. A
    /// root: its queue's shard is enough.
    pub(crate) fn adopt(&self, queue: QueueId, join: Join<'_>) {
        View::One(&mut self.shard(queue.shard)).insert(join, queue, Admission::Start);
    }

    /// Adopts a quick run as [`adopt`](Registry::adopt) does, from inside one of its own
    /// steps that asked about the runtime (`runtime/quick_run.rs`, "a step that asks"): the
    /// run holds its slot in `queue`, whose name and configuration are read here.
    pub(crate) fn adopt_asked(&self, queue: QueueId, asked: Asked<'_>) {
        let mut shard = self.shard(queue.shard);
        let Some((name, concurrency)) = shard
            .queue(queue)
            .map(|state| (state.name.clone(), state.concurrency))
        else {
            return;
        };
        let join = Join {
            at: EntryRef {
                id: asked.ident.id,
                shard: queue.shard,
            },
            ident: asked.ident,
            queue: &name,
            keyed: false,
            concurrency,
            control: asked.control,
            parent: None,
            detached: false,
            unwaited: false,
            cancel_on_shutdown: asked.cancel_on_shutdown,
            existing: None,
            pipeline_key: asked.pipeline_key,
        };
        View::One(&mut shard).insert(join, queue, Admission::Start);
    }

    /// Starts the waiting instances of `queue` that a slot given back by a quick run lets
    /// in.
    pub(crate) fn start_waiting(&self, queue: QueueId, fx: &mut Effects) {
        View::One(&mut self.shard(queue.shard)).fill_slots(queue, fx);
    }
}
