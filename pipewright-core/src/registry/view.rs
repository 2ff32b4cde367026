//! A [`View`] of the registry, which its decisions (`admission.rs`, `cancel.rs`,
//! `tree.rs`, `lists.rs`, `introspect.rs`) are written against once: one shard, locked by
//! the caller, or a [`Wide`] view, which holds the tree lock and locks each shard the
//! first time it reaches into it.

use std::cell::OnceCell;
use std::sync::Arc;

#[cfg(pipelines_loom)]
use loom::sync::{Mutex, MutexGuard};
#[cfg(not(pipelines_loom))]
use std::sync::{Mutex, MutexGuard};

use super::queue_state::QueueState;
use super::shard::{CancelScratch, Shard, Tree};
use super::{lock, Effects, Entry, QueueId, MAX_SHARDS};
use crate::error::InvokeError;
use crate::events::EventLog;
use crate::ident::Name;

/// What a decision is made on.
pub(crate) enum View<'a> {
    /// One shard: the decision touches no entry outside it (the front checked).
    One(&'a mut Shard),
    /// The tree lock, and the shards reached so far.
    Wide(Wide<'a>),
}

/// The tree lock, and the shards locked so far (each kept until the view is dropped).
pub(crate) struct Wide<'a> {
    shards: &'a [Mutex<Shard>],
    tree: MutexGuard<'a, Tree>,
    log: Option<&'a Arc<EventLog>>,
    held: [OnceCell<MutexGuard<'a, Shard>>; MAX_SHARDS],
}

impl<'a> Wide<'a> {
    pub(super) fn new(
        shards: &'a [Mutex<Shard>],
        tree: MutexGuard<'a, Tree>,
        log: Option<&'a Arc<EventLog>>,
    ) -> Self {
        Wide {
            shards,
            tree,
            log,
            held: std::array::from_fn(|_| OnceCell::new()),
        }
    }

    /// Locks `shard` now (if it is not held yet).
    pub(super) fn hold(&self, shard: usize) {
        self.shard(shard);
    }

    /// Locks every shard, in order.
    pub(super) fn hold_all(&self) {
        for shard in 0..self.shards.len() {
            self.hold(shard);
        }
    }

    /// The shards held.
    pub(super) fn held(&self) -> Vec<&Shard> {
        self.held
            .iter()
            .filter_map(OnceCell::get)
            .map(|guard| &**guard)
            .collect()
    }

    fn shard(&self, shard: usize) -> Option<&Shard> {
        let mutex = self.shards.get(shard)?;
        Some(self.held.get(shard)?.get_or_init(|| lock(mutex)))
    }

    fn shard_mut(&mut self, shard: usize) -> Option<&mut Shard> {
        let mutex = self.shards.get(shard)?;
        let cell = self.held.get_mut(shard)?;
        if cell.get().is_none() {
            let _ = cell.set(lock(mutex));
        }
        cell.get_mut().map(|guard| &mut **guard)
    }

    /// The shard of entry `id`: from the tree's index, or among the shards held (an entry
    /// reached through a queue's list is in that queue's shard, which is held; the entry
    /// an operation starts from is held by the front).
    fn locate(&self, id: u64) -> Option<usize> {
        if let Some(&shard) = self.tree.index.get(&id) {
            return Some(shard);
        }
        self.held.iter().position(|held| {
            held.get()
                .is_some_and(|shard| shard.entries.contains_key(&id))
        })
    }
}

impl View<'_> {
    pub(super) fn entry(&self, id: u64) -> Option<&Entry> {
        match self {
            View::One(shard) => shard.entries.get(&id),
            View::Wide(wide) => wide.shard(wide.locate(id)?)?.entries.get(&id),
        }
    }

    pub(super) fn entry_mut(&mut self, id: u64) -> Option<&mut Entry> {
        match self {
            View::One(shard) => shard.entries.get_mut(&id),
            View::Wide(wide) => {
                let shard = wide.locate(id)?;
                wide.shard_mut(shard)?.entries.get_mut(&id)
            }
        }
    }

    pub(super) fn contains(&self, id: u64) -> bool {
        self.entry(id).is_some()
    }

    pub(super) fn queue(&self, queue: QueueId) -> Option<&QueueState> {
        match self {
            View::One(shard) => shard.queue(queue),
            View::Wide(wide) => wide.shard(queue.shard)?.queue(queue),
        }
    }

    pub(super) fn queue_mut(&mut self, queue: QueueId) -> Option<&mut QueueState> {
        match self {
            View::One(shard) => shard.queue_mut(queue),
            View::Wide(wide) => wide.shard_mut(queue.shard)?.queue_mut(queue),
        }
    }

    pub(super) fn queue_named(&self, name: &Name) -> Option<&QueueState> {
        match self {
            View::One(shard) => shard.queue_named(name),
            View::Wide(wide) => wide
                .shard(super::shard_of(name, wide.shards.len()))?
                .queue_named(name),
        }
    }

    /// The queue named `queue` in its shard (created if needed; see
    /// [`Shard::queue_for`]).
    pub(super) fn queue_for(
        &mut self,
        queue: &Name,
        keyed: bool,
        concurrency: crate::behaviour::Concurrency,
        by: &Name,
    ) -> Result<QueueId, InvokeError> {
        let shard = match self {
            View::One(shard) => shard,
            View::Wide(wide) => {
                let shard = super::shard_of(queue, wide.shards.len());
                wide.shard_mut(shard).ok_or(InvokeError::Stopped)?
            }
        };
        shard.queue_for(queue, keyed, concurrency, by)
    }

    pub(super) fn forget_queue_if_empty(&mut self, queue: QueueId, fx: &mut Effects) {
        let shard = match self {
            View::One(shard) => Some(&mut **shard),
            View::Wide(wide) => wide.shard_mut(queue.shard),
        };
        if let Some(shard) = shard {
            shard.forget_queue_if_empty(queue, fx);
        }
    }

    /// Adds a new entry, not `indexed` yet, to its queue's shard.
    pub(super) fn insert_entry(&mut self, entry: Entry) {
        let (id, shard) = (entry.ident.id, entry.queue.shard);
        let held = match self {
            View::One(held) => Some(&mut **held),
            View::Wide(wide) => wide.shard_mut(shard),
        };
        if let Some(held) = held {
            held.entries.insert(id, entry);
        }
    }

    /// Puts `id` in the tree's index (it has a parent, or a child now). Only wide views link entries,
    /// so on one shard this does nothing (the front never asks).
    pub(super) fn index(&mut self, id: u64) {
        let View::Wide(wide) = self else {
            return;
        };
        let Some(shard) = wide.locate(id) else {
            return;
        };
        let Some(entry) = wide
            .shard_mut(shard)
            .and_then(|held| held.entries.get_mut(&id))
        else {
            return;
        };
        if entry.indexed {
            return;
        }
        entry.indexed = true;
        let queue = entry.queue;
        wide.tree.index.insert(id, shard);
        if let Some(state) = self.queue_mut(queue) {
            state.indexed_members += 1;
        }
    }

    /// Takes entry `id` out of its shard (and the tree's index); a table left mostly
    /// empty gives back what it grew to.
    pub(super) fn remove_entry(&mut self, id: u64) -> Option<Entry> {
        let entry = match self {
            View::One(shard) => {
                let entry = shard.entries.remove(&id)?;
                shard.release_capacity();
                entry
            }
            View::Wide(wide) => {
                let shard = wide.locate(id)?;
                if wide.tree.index.remove(&id).is_some() {
                    wide.tree.release_capacity();
                }
                let held = wide.shard_mut(shard)?;
                let entry = held.entries.remove(&id)?;
                held.release_capacity();
                entry
            }
        };
        if entry.indexed {
            if let Some(state) = self.queue_mut(entry.queue) {
                state.indexed_members -= 1;
            }
        }
        Some(entry)
    }

    /// Every entry of the shards held (a wide view that looks at everything holds all).
    pub(super) fn entries(&self) -> Vec<&Entry> {
        match self {
            View::One(shard) => shard.entries.values().collect(),
            View::Wide(wide) => wide
                .held()
                .into_iter()
                .flat_map(|shard| shard.entries.values())
                .collect(),
        }
    }

    /// The buffers of a cancellation batch, taken out while it marks entries.
    pub(super) fn take_scratch(&mut self) -> CancelScratch {
        match self {
            View::One(shard) => std::mem::take(&mut shard.scratch),
            View::Wide(wide) => std::mem::take(&mut wide.tree.scratch),
        }
    }

    pub(super) fn put_scratch(&mut self, mut scratch: CancelScratch) {
        scratch.clear();
        match self {
            View::One(shard) => shard.scratch = scratch,
            View::Wide(wide) => wide.tree.scratch = scratch,
        }
    }

    pub(super) fn log(&self) -> Option<&Arc<EventLog>> {
        match self {
            View::One(shard) => shard.log.as_ref(),
            View::Wide(wide) => wide.log,
        }
    }
}
