//! A queue as the registry keeps it: its live and waiting lists (threaded through the
//! entries), its `use_existing` index, and its [`Gauge`] (slot counts and statistics).

use std::sync::Arc;

use super::gauge::Gauge;
use crate::behaviour::Concurrency;
use crate::ident::Name;
use crate::queue::FastMap;

/// One end-to-end list of instance ids, linked through the registry's entries.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct List {
    pub(crate) head: Option<u64>,
    pub(crate) tail: Option<u64>,
    pub(crate) len: usize,
}

/// A queue as the registry keeps it.
pub(crate) struct QueueState {
    pub(crate) name: Name,
    pub(crate) concurrency: Concurrency,
    /// Who set the configuration, for mismatch messages.
    pub(crate) configured_by: Name,
    /// Per-key queues are forgotten when they empty (there may be millions of keys);
    /// the others keep their configuration and statistics for the runtime's life.
    pub(crate) keyed: bool,
    /// Entries that belong to the queue (in a list or not, e.g. being cancelled); a
    /// per-key queue is forgotten when none is left.
    pub(crate) members: usize,
    /// Members that are `indexed` (in the tree): while there are any, a join that may
    /// cancel members (restartable, keep-latest) takes the tree lock.
    pub(crate) indexed_members: usize,
    /// Started instances that hold a slot (running, or finished and waiting for children).
    pub(crate) live: List,
    /// Admitted instances waiting for a slot, in arrival order.
    pub(crate) waiting: List,
    /// `use_existing` index: argument hash -> ids of live, unfinished instances. The
    /// hashes are keyed (`KeyedState`), so FNV's mix of them is as unpredictable.
    pub(crate) existing: FastMap<u64, Vec<u64>>,
    /// Bumped whenever `existing` changes, so a lookup made outside the lock can be
    /// validated.
    pub(crate) generation: u64,
    /// Slot counts and statistics, shared with the lock-free side (`gauge.rs`).
    pub(crate) gauge: Arc<Gauge>,
}

impl QueueState {
    pub(crate) fn new(
        name: Name,
        concurrency: Concurrency,
        configured_by: Name,
        keyed: bool,
        gauge: Arc<Gauge>,
    ) -> Self {
        QueueState {
            name,
            members: 0,
            indexed_members: 0,
            concurrency,
            configured_by,
            keyed,
            live: List::default(),
            waiting: List::default(),
            existing: FastMap::default(),
            generation: 0,
            gauge,
        }
    }
}
