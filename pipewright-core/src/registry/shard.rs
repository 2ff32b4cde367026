//! A [`Shard`]: the queues whose names hash to it, and their entries, behind one lock;
//! finding, declaring and forgetting its queues (a slab and an index of their names), and
//! shrinking its tables once mostly empty ([`shrink_map`]). Joining looks a queue's name
//! up once; everything after uses its [`QueueId`]. Also the tree's index, kept under the
//! tree lock.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;

use slab::Slab;

use super::queue_state::QueueState;
use super::{Candidate, Effects, Entry, Existing, Few, Gauge, QueueId};
use crate::behaviour::Concurrency;
use crate::error::InvokeError;
use crate::events::EventLog;
use crate::ident::Name;
use crate::queue::{FastMap, KeyedMap};

/// Some queues and their entries, behind one of the registry's locks.
pub(crate) struct Shard {
    pub(super) index: usize,
    pub(super) entries: FastMap<u64, Entry>,
    /// Queues live in a slab and entries refer to them by index, so the hot paths never
    /// hash or compare a queue name (only joining looks the name up, once).
    pub(super) queues: Slab<QueueState>,
    /// Keyed, not FNV: a per-key queue's name is computed from an argument.
    pub(super) queue_ids: KeyedMap<Name, usize>,
    /// The gauges of forgotten queues, reused (when nobody holds them any more) so a
    /// per-key queue that comes and goes per invocation allocates no gauge. At most as
    /// many as the shard has queues (and a few more): a burst of keys does not leave its
    /// gauges behind.
    pub(super) spare_gauges: Vec<Arc<Gauge>>,
    /// `queues` is next shrunk (if it is mostly empty) once it has no more queues than
    /// this: half the most it had since the last try, and half what it had at that try.
    /// So a try (a scan of the slab) comes only after the queues have halved, however
    /// keys come and go, and a slab that cannot shrink (a queue kept in a high slot) is
    /// not scanned at every forgotten queue.
    pub(super) shrink_queues_at: usize,
    /// Reused by cancellations on this shard alone, so one allocates nothing once they
    /// have grown.
    pub(super) scratch: CancelScratch,
    pub(super) log: Option<Arc<EventLog>>,
}

/// What the tree lock guards besides the right to lock shards in any order: where each
/// `indexed` entry is, and a wide cancellation's buffers.
#[derive(Default)]
pub(crate) struct Tree {
    pub(super) index: FastMap<u64, usize>,
    pub(super) scratch: CancelScratch,
}

/// Buffers a cancellation batch works in (see `cancel_trees`).
#[derive(Default)]
pub(crate) struct CancelScratch {
    /// The instance a cancellation names and the parents it climbs through.
    pub(super) path: Vec<u64>,
    pub(super) order: Vec<u64>,
    pub(super) stack: Vec<(u64, bool)>,
    pub(super) freed: Vec<QueueId>,
}

impl Shard {
    pub(super) fn new(index: usize, log: Option<Arc<EventLog>>) -> Self {
        Shard {
            index,
            entries: FastMap::default(),
            queues: Slab::new(),
            queue_ids: KeyedMap::default(),
            spare_gauges: Vec::new(),
            shrink_queues_at: 0,
            scratch: CancelScratch::default(),
            log,
        }
    }

    pub(super) fn queue(&self, queue: QueueId) -> Option<&QueueState> {
        if queue.shard != self.index {
            return None;
        }
        self.queues.get(queue.slot)
    }

    pub(super) fn queue_mut(&mut self, queue: QueueId) -> Option<&mut QueueState> {
        if queue.shard != self.index {
            return None;
        }
        self.queues.get_mut(queue.slot)
    }

    pub(super) fn queue_named(&self, name: &Name) -> Option<&QueueState> {
        self.queues.get(*self.queue_ids.get(name)?)
    }

    /// The queue named `queue` (created if needed), if its configuration is
    /// `concurrency`; `by` names who asks, for the mismatch message.
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
        let slot = match self.queue_ids.get(queue) {
            Some(slot) => *slot,
            None => {
                let vacant = self.queues.vacant_entry();
                let id = QueueId {
                    shard: self.index,
                    slot: vacant.key(),
                };
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
                vacant.insert(QueueState::new(
                    queue.clone(),
                    concurrency,
                    by.clone(),
                    keyed,
                    gauge,
                ));
                self.queue_ids.insert(queue.clone(), id.slot);
                self.shrink_queues_at = self.shrink_queues_at.max(self.queues.len() / 2);
                id.slot
            }
        };
        let Some(state) = self.queues.get(slot) else {
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
        Ok(QueueId {
            shard: self.index,
            slot,
        })
    }

    /// Forgets a per-key queue no entry refers to any more (its slot is reused), and
    /// shrinks the shard's queue tables once they are mostly empty.
    pub(super) fn forget_queue_if_empty(&mut self, queue: QueueId, fx: &mut Effects) {
        if self
            .queue(queue)
            .is_some_and(|state| state.keyed && state.members == 0)
        {
            if let Some(state) = self.queues.try_remove(queue.slot) {
                self.queue_ids.remove(&state.name);
                // Its statistics go with it (the last result dropped outside the lock).
                let stats = std::mem::take(&mut *state.gauge.stats());
                if let Some(last) = stats.last_result {
                    fx.discard_result(last);
                }
                let spares = SPARE_GAUGES.max(self.queues.len());
                if self.spare_gauges.len() < spares {
                    self.spare_gauges.push(state.gauge);
                }
                self.spare_gauges.truncate(spares);
                self.shrink_queue_tables();
            }
        }
    }

    /// Gives back what the queue tables grew to, once mostly empty (see [`shrink_map`]):
    /// a runtime that saw many keys at once does not keep a place for each.
    fn shrink_queue_tables(&mut self) {
        shrink_map(&mut self.queue_ids, KEPT_QUEUES);
        if self.spare_gauges.capacity() > KEPT_QUEUES
            && self.spare_gauges.len() < self.spare_gauges.capacity() / 4
        {
            self.spare_gauges.shrink_to(self.spare_gauges.len() * 2);
        }
        let (len, capacity) = (self.queues.len(), self.queues.capacity());
        if len <= self.shrink_queues_at && capacity > KEPT_QUEUES && len < capacity / 4 {
            // Only down to the last occupied slot: queues keep their slots.
            self.queues.shrink_to_fit();
            self.shrink_queues_at = len / 2;
        }
    }

    /// The gauge of `queue` (created if needed), if its configuration is `concurrency`.
    pub(super) fn gauge_for(
        &mut self,
        queue: &Name,
        concurrency: Concurrency,
        by: &Name,
    ) -> Result<Arc<Gauge>, InvokeError> {
        let id = self.queue_for(queue, false, concurrency, by)?;
        match self.queue(id) {
            Some(state) => Ok(Arc::clone(&state.gauge)),
            None => Err(InvokeError::Stopped),
        }
    }

    pub(super) fn existing_candidates(
        &self,
        queue: &Name,
        slot: Option<usize>,
        hash: u64,
        pipeline_key: usize,
    ) -> Existing {
        let mut existing = Existing {
            generation: 0,
            shard: self.index,
            slot: None,
            candidates: Few::default(),
        };
        let Some((slot, state)) = self.locate(slot, queue) else {
            return existing;
        };
        let found = state
            .existing
            .get(&hash)
            .into_iter()
            .flatten()
            .filter_map(|id| self.entries.get(id))
            .filter(|entry| entry.pipeline_key == pipeline_key);
        for entry in found {
            existing.candidates.push(Candidate {
                ident: entry.ident.clone(),
                control: Arc::clone(&entry.control),
            });
        }
        existing.generation = state.generation;
        existing.slot = Some(slot);
        existing
    }

    /// The generation of `queue` (0 if it does not exist), looked for at `slot` first.
    pub(super) fn generation(&self, slot: Option<usize>, queue: &Name) -> u64 {
        self.locate(slot, queue)
            .map_or(0, |(_, state)| state.generation)
    }

    /// `queue`'s slot and state: at `slot` if it is still there (a slot resolved earlier
    /// may have gone to another queue since), else looked up by name.
    fn locate(&self, slot: Option<usize>, queue: &Name) -> Option<(usize, &QueueState)> {
        if let Some((slot, state)) = slot.and_then(|slot| Some((slot, self.queues.get(slot)?))) {
            if state.name == *queue {
                return Some((slot, state));
            }
        }
        let slot = *self.queue_ids.get(queue)?;
        Some((slot, self.queues.get(slot)?))
    }

    pub(super) fn is_indexed(&self, id: u64) -> bool {
        self.entries.get(&id).is_some_and(|entry| entry.indexed)
    }

    /// `true` if `id` has live children; if so, its control is told when they are done.
    /// Its children list is its own field: this shard's lock is enough.
    pub(super) fn await_children(&mut self, id: u64) -> bool {
        match self.entries.get_mut(&id) {
            Some(entry) if !entry.children.is_empty() => {
                entry.wake_when_childless = true;
                true
            }
            _ => false,
        }
    }

    /// Gives back what a burst made the entry table grow to, once it is mostly empty
    /// (after an entry was removed): a runtime that was busy for a moment does not keep
    /// its peak memory forever. Small tables are kept, so a steady trickle of invocations
    /// does not reallocate (a few dozen entries a shard: the registry as a whole keeps a
    /// few hundred, as one table did).
    pub(super) fn release_capacity(&mut self) {
        const KEPT_ENTRIES: usize = 32;
        shrink_map(&mut self.entries, KEPT_ENTRIES);
    }

    pub(super) fn entry_count(&self) -> usize {
        self.entries.len()
    }

    pub(super) fn queue_count(&self) -> usize {
        self.queue_ids.len()
    }
}

impl Tree {
    /// Gives back what a burst of trees made the index grow to, once it is mostly empty
    /// (after an entry left it).
    pub(super) fn release_capacity(&mut self) {
        shrink_map(&mut self.index, KEPT_INDEX);
    }
}

/// Queues (and names) a shard keeps room for however few it has.
const KEPT_QUEUES: usize = 16;

/// Spare gauges a shard keeps however few queues it has.
const SPARE_GAUGES: usize = 4;

/// Indexed entries the tree keeps room for, and `use_existing` hashes a queue keeps room
/// for, however few there are.
pub(super) const KEPT_INDEX: usize = 256;

/// Shrinks `map` once it holds less than a quarter of its capacity, to twice what it
/// holds (nothing, if it is empty), unless its capacity is `kept` or less. A table the
/// size of a steady load is never shrunk; one left by a burst is, and each shrink (a
/// rehash of what is left) follows at least as many removals as it moves entries, so it
/// costs O(1) per removal.
pub(super) fn shrink_map<K: Eq + Hash, V, S: BuildHasher>(map: &mut HashMap<K, V, S>, kept: usize) {
    let (len, capacity) = (map.len(), map.capacity());
    if capacity > kept && len < capacity / 4 {
        map.shrink_to(len * 2);
    }
}

impl CancelScratch {
    /// Empties the buffers; a batch that made them large (`stop`) does not keep its peak.
    pub(super) fn clear(&mut self) {
        const KEPT: usize = 256;
        if self.order.capacity() > KEPT
            || self.freed.capacity() > KEPT
            || self.path.capacity() > KEPT
        {
            *self = CancelScratch::default();
        } else {
            self.path.clear();
            self.order.clear();
            self.stack.clear();
            self.freed.clear();
        }
    }
}
