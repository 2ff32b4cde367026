//! Finding, declaring and forgetting queues: the slab of [`QueueState`]s and the index of
//! their names. Joining looks a queue's name up once; everything after uses its index.

use std::sync::Arc;

use super::queue_state::QueueState;
use super::{Effects, Gauge, QueueId, Registry};
use crate::behaviour::Concurrency;
use crate::error::InvokeError;
use crate::ident::Name;

impl Registry {
    /// Declares a queue with a fixed name (registration); fails if it exists with another
    /// configuration.
    pub(crate) fn declare(
        &mut self,
        queue: Name,
        concurrency: Concurrency,
        by: Name,
    ) -> Result<Arc<Gauge>, InvokeError> {
        self.gauge_for(&queue, concurrency, &by)
    }

    pub(super) fn queue(&self, queue: QueueId) -> Option<&QueueState> {
        self.queues.get(queue)
    }

    pub(super) fn queue_mut(&mut self, queue: QueueId) -> Option<&mut QueueState> {
        self.queues.get_mut(queue)
    }

    pub(super) fn queue_named(&self, name: &Name) -> Option<&QueueState> {
        self.queue(*self.queue_ids.get(name)?)
    }

    pub(super) fn queue_for(
        &mut self,
        queue: &Name,
        keyed: bool,
        concurrency: Concurrency,
        by: &Name,
    ) -> Result<QueueId, InvokeError> {
        if let Some(problem) = concurrency.problem() {
            return Err(InvokeError::InvalidConcurrency {
                queue: queue.to_string(),
                concurrency,
                problem,
            });
        }
        let id = match self.queue_ids.get(queue) {
            Some(id) => *id,
            None => {
                let slot = self.queues.vacant_entry();
                let id = slot.key();
                let gauge = match self.spare_gauges.pop() {
                    Some(mut gauge) => match Arc::get_mut(&mut gauge) {
                        Some(reused) => {
                            *reused = Gauge::new(id, concurrency);
                            gauge
                        }
                        None => Arc::new(Gauge::new(id, concurrency)),
                    },
                    None => Arc::new(Gauge::new(id, concurrency)),
                };
                slot.insert(QueueState::new(
                    queue.clone(),
                    concurrency,
                    by.clone(),
                    keyed,
                    gauge,
                ));
                self.queue_ids.insert(queue.clone(), id);
                id
            }
        };
        let Some(state) = self.queue(id) else {
            // Unreachable: `queue_ids` only names occupied slots. Refusing is the
            // panic-free answer.
            return Err(InvokeError::Stopped);
        };
        if state.concurrency != concurrency {
            return Err(InvokeError::QueueMismatch {
                queue: queue.to_string(),
                existing: state.concurrency,
                existing_by: state.configured_by.to_string(),
                requested: concurrency,
                requested_by: by.to_string(),
            });
        }
        Ok(id)
    }

    /// Forgets a per-key queue no entry refers to any more (its slot is reused).
    pub(super) fn forget_queue_if_empty(&mut self, queue: QueueId, fx: &mut Effects) {
        if self
            .queue(queue)
            .is_some_and(|state| state.keyed && state.members == 0)
        {
            if let Some(state) = self.queues.try_remove(queue) {
                self.queue_ids.remove(&state.name);
                // Its statistics go with it (the last result dropped outside the lock).
                let stats = std::mem::take(&mut *state.gauge.stats());
                if let Some(last) = stats.last_result {
                    fx.discard_result(last);
                }
                self.spare_gauges.push(state.gauge);
            }
        }
    }
}
