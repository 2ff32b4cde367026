//! The live-instance registry: every live instance, grouped by queue, with the tree of
//! parents and children. It decides admission (SEMANTICS 3.2), which instances a
//! cancellation reaches (SEMANTICS 4), and frees slots when instances end.
//!
//! Everything here runs under the runtime's lock and never calls user code: decisions are
//! returned as [`Effects`] (control blocks to signal) and events, which the runtime
//! carries out after releasing the lock. The one exception is each queue's [`Gauge`]
//! (slot counts and statistics), which quick runs use without the lock (`gauge.rs`
//! states the protocol). Every operation is O(1) in the number of live
//! instances (hash maps and intrusive lists), except those that must visit a tree or a
//! whole queue (a cancellation, a snapshot).
//!
//! # Invariants
//!
//! They hold whenever the lock is released:
//!
//! - Each entry is in exactly one place, which its `place` names: its queue's `live` list
//!   (it holds a slot), its `waiting` list (it waits for one), or neither once it is
//!   cancelling (a cancellation frees the slot at once). An entry whose own steps are over
//!   but whose children still run keeps its slot until it is removed.
//! - An entry's `state` says `Running` while its instance is suspended unless events are
//!   recorded (a watcher or event streams): suspensions are a flag in the control block, which introspection reads.
//! - A queue's gauge counts the slots held (its `live` entries and its quick runs) and
//!   its `waiting` entries; the count never passes the queue's limit. A quick run
//!   (`quick.rs`) holds a slot in the gauge only, never as an entry; it gives it back when
//!   it ends, or keeps it as the entry it becomes (adoption). Quick runs never happen in
//!   per-key queues, so `members` counts entries only.
//! - `Cancelling` is final: neither a state change nor another cancellation undoes it,
//!   and a value that arrives afterwards is recorded as a cancellation.
//! - `members` counts the entries of each queue, in whatever place. A per-key queue is
//!   forgotten (its slab slot reused, its statistics dropped) as soon as it has no
//!   members; a queue with a fixed name is kept for the runtime's life. `queue_ids` names
//!   exactly the occupied slots of the `queues` slab (only per-key queues, which never
//!   have quick runs, are removed, so no gauge held outside names a reused slot).
//! - An entry's `children` list (first and last, linked through the children's sibling
//!   links, in joining order) holds exactly the live entries that joined with it as their
//!   parent. An entry is removed only once its own steps are over and it has no live
//!   children; removing the last child of such a parent removes the parent too.
//! - An entry is in its queue's `use_existing` index (under the hash its `existing`
//!   holds) from joining until it is cancelled, withdrawn or its steps end; the queue's
//!   `generation` changes with every change of that index.
//! - Waiting instances start in arrival order as slots free, and nobody who arrives
//!   later takes a slot while one waits; a batch of cancellations is marked in full
//!   before any slot is refilled, so none it cancels is started.
//! - No user code runs under the lock: control blocks are signalled by
//!   [`Effects::apply`] afterwards, and what may (as far as can be told) be the last
//!   reference to a user value is handed back as [`Garbage`] to drop outside it.
//! - Events are recorded when the registry decides, under the lock, so the watcher sees
//!   them in decision order across all callers.
//!
//! # Files
//!
//! - `mod.rs`: [`Registry`] and its entries; queues, admission, state changes, finishing
//! - `cancel.rs`: which instances a cancellation reaches, and stopping the runtime
//! - `effects.rs`: [`Effects`] and [`Garbage`], what is carried out after the lock
//! - `queue_state.rs`: a queue as the registry keeps it
//! - `queues.rs`: finding, declaring and forgetting queues (the slab and the name index)
//! - `lists.rs`: the intrusive live and waiting lists of a queue
//! - `tree.rs`: parents and children (an intrusive list of siblings), removing an entry
//! - `gauge.rs`: a queue's slot counts and statistics, shared without the lock
//! - `quick.rs`: slots for instances that run inside `invoke` without an entry
//! - `introspect.rs`: snapshots of the live instances and the queues

mod cancel;
mod effects;
mod gauge;
mod introspect;
mod lists;
mod queue_state;
mod queues;
mod quick;
mod tree;

use std::sync::Arc;

use slab::Slab;

use crate::behaviour::{Behaviour, Concurrency};
use crate::cancellation::ErasedControl;
use crate::error::{Error, InvokeError};
use crate::events::EventLog;
use crate::hooks::{Event, EventKind};
use crate::ident::Ident;
use crate::ident::Name;
use crate::introspection::{InstanceState, KeptResult};
use crate::queue::{FastMap, KeyedMap};

use self::queue_state::QueueState;

pub(crate) use self::effects::{Effects, Garbage, Parked};
pub(crate) use self::gauge::Gauge;
pub(crate) use self::quick::{Replaced, Reservation};

/// Which list of its queue an entry is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    None,
    Live,
    Waiting,
}

/// Index of a queue in the registry's slab. A queue with a fixed name keeps its index
/// for the runtime's life, so it can be resolved once (registration) and used as a hint.
pub(crate) type QueueId = usize;

struct Entry {
    ident: Ident,
    queue: QueueId,
    control: Arc<dyn ErasedControl>,
    parent: Option<u64>,
    detached: bool,
    /// Its live children, in joining order: an intrusive list through the children's
    /// sibling links, so a child leaves in O(1) however many siblings it has.
    children: Siblings,
    prev_sibling: Option<u64>,
    next_sibling: Option<u64>,
    state: InstanceState,
    place: Place,
    prev: Option<u64>,
    next: Option<u64>,
    /// Its own steps are over (it may still wait for children).
    done: bool,
    started: bool,
    cancel_on_shutdown: bool,
    /// Argument hash, while the entry is in its queue's `use_existing` index.
    existing: Option<u64>,
    pipeline_key: usize,
    /// A cancelled instance waits for its children before its `finally!`.
    wake_when_childless: bool,
    /// A root waiting for a slot, kept here instead of on a task until it is admitted
    /// (then spawned) or cancelled (then ended by the canceller).
    parked: Option<Box<dyn Parked>>,
}

/// The ends of an entry's list of children.
#[derive(Debug, Default, Clone, Copy)]
struct Siblings {
    first: Option<u64>,
    last: Option<u64>,
}

impl Siblings {
    fn is_empty(&self) -> bool {
        self.first.is_none()
    }
}

/// A request to join a queue.
pub(crate) struct Join<'a> {
    pub(crate) id: u64,
    pub(crate) ident: &'a Ident,
    pub(crate) queue: &'a Name,
    pub(crate) keyed: bool,
    pub(crate) concurrency: Concurrency,
    pub(crate) control: Arc<dyn ErasedControl>,
    pub(crate) parent: Option<u64>,
    pub(crate) detached: bool,
    pub(crate) cancel_on_shutdown: bool,
    pub(crate) existing: Option<u64>,
    pub(crate) pipeline_key: usize,
}

/// The queue's answer to a [`Join`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    Start,
    Wait,
    Drop,
}

/// How an instance ended, for statistics and events.
pub(crate) enum Ending {
    Finished,
    Failed(Error),
    Cancelled,
}

/// A live instance found by a `use_existing` lookup, to be compared outside the lock.
pub(crate) struct Candidate {
    pub(crate) ident: Ident,
    pub(crate) control: Arc<dyn ErasedControl>,
}

#[derive(Default)]
pub(crate) struct Registry {
    entries: FastMap<u64, Entry>,
    /// Queues live in a slab and entries refer to them by index, so the hot paths never
    /// hash or compare a queue name (only joining looks the name up, once).
    queues: Slab<QueueState>,
    /// Keyed, not FNV: a per-key queue's name is computed from an argument.
    queue_ids: KeyedMap<Name, QueueId>,
    /// The gauges of forgotten queues, reused (when nobody holds them any more) so a
    /// per-key queue that comes and goes per invocation allocates no gauge.
    spare_gauges: Vec<Arc<Gauge>>,
    /// Where events are recorded: only when a watcher or event streams will read them.
    log: Option<Arc<EventLog>>,
    /// Reused by cancellations, so that one allocates nothing once they have grown.
    scratch: CancelScratch,
}

/// Buffers a cancellation batch works in (see `cancel_trees`).
#[derive(Default)]
pub(super) struct CancelScratch {
    pub(super) order: Vec<u64>,
    pub(super) stack: Vec<(u64, bool)>,
    pub(super) freed: Vec<QueueId>,
}

impl Registry {
    pub(crate) fn new(log: Option<Arc<EventLog>>) -> Self {
        Registry {
            log,
            ..Registry::default()
        }
    }

    /// The live, unfinished instances of `pipeline_key` in `queue` whose argument hashes
    /// to `hash`, and the queue's generation to validate the comparison with.
    pub(crate) fn existing_candidates(
        &self,
        queue: &Name,
        hash: u64,
        pipeline_key: usize,
    ) -> (u64, Vec<Candidate>) {
        let Some(state) = self.queue_named(queue) else {
            return (0, Vec::new());
        };
        let candidates = state
            .existing
            .get(&hash)
            .into_iter()
            .flatten()
            .filter_map(|id| self.entries.get(id))
            .filter(|entry| entry.pipeline_key == pipeline_key)
            .map(|entry| Candidate {
                ident: entry.ident.clone(),
                control: Arc::clone(&entry.control),
            })
            .collect();
        (state.generation, candidates)
    }

    pub(crate) fn generation(&self, queue: &Name) -> u64 {
        self.queue_named(queue).map_or(0, |state| state.generation)
    }

    /// Decides what happens to a new instance and records it.
    /// A full dropping queue refuses before anything is built: `true` if `queue` exists,
    /// has this configuration, is dropping and has no free slot (the refusal is then
    /// recorded, as [`join`](Registry::join) would). Anything else is left to `join`,
    /// which also reports a configuration mismatch.
    pub(crate) fn refuses_at_once(
        &mut self,
        queue: &Name,
        concurrency: Concurrency,
        ident: &Ident,
    ) -> bool {
        let Some(&id) = self.queue_ids.get(queue) else {
            return false;
        };
        let refuses = self.queue(id).is_some_and(|state| {
            state.concurrency == concurrency
                && concurrency.behaviour() == Behaviour::Dropping
                && !state.gauge.has_free_slot()
        });
        if refuses {
            self.emit(ident, id, EventKind::Dropped);
        }
        refuses
    }

    pub(crate) fn join(
        &mut self,
        join: Join<'_>,
        fx: &mut Effects,
    ) -> Result<Admission, InvokeError> {
        let queue = self.queue_for(join.queue, join.keyed, join.concurrency, &join.ident.name)?;
        let Some(state) = self.queue(queue) else {
            return Err(InvokeError::Stopped);
        };
        let gauge = Arc::clone(&state.gauge);
        // Nobody overtakes a waiting instance (a slot a quick run just gave back is
        // theirs, see `gauge.rs`).
        let nobody_waits = state.waiting.head.is_none();
        let behaviour = join.concurrency.behaviour();
        let admission = match behaviour {
            Behaviour::Restartable => {
                self.make_room(queue, &gauge, fx);
                Admission::Start
            }
            _ if nobody_waits && gauge.try_take() => Admission::Start,
            // Unreachable (no limit); starting is what the behaviour asks for.
            Behaviour::Unrestricted => {
                gauge.take_over_limit();
                Admission::Start
            }
            Behaviour::Dropping => Admission::Drop,
            Behaviour::Enqueued | Behaviour::KeepLatest => Admission::Wait,
        };
        if admission == Admission::Drop {
            self.emit(join.ident, queue, EventKind::Dropped);
            self.forget_queue_if_empty(queue, fx);
            return Ok(admission);
        }
        if behaviour == Behaviour::KeepLatest && admission == Admission::Wait {
            while let Some(waiting) = self.queue(queue).and_then(|state| state.waiting.head) {
                self.cancel_tree(waiting, fx);
            }
        }
        self.insert(join, queue, admission);
        if admission == Admission::Wait {
            // A quick run may have given its slot back since `try_take` failed, and not
            // seen this instance waiting yet: look again (the other half of the protocol
            // in `gauge.rs`).
            self.fill_slots(queue, fx);
        }
        Ok(admission)
    }

    /// Restartable: cancels the oldest live instances of `queue` until a slot is free,
    /// and takes it.
    fn make_room(&mut self, queue: QueueId, gauge: &Gauge, fx: &mut Effects) {
        while !gauge.try_take() {
            let Some(oldest) = self.queue(queue).and_then(|state| state.live.head) else {
                // Cannot happen (a restartable queue has no quick runs, so every slot is a
                // live entry); starting over the limit is what the behaviour asks for.
                gauge.take_over_limit();
                return;
            };
            self.cancel_tree(oldest, fx);
            let still_live = self
                .entries
                .get(&oldest)
                .is_some_and(|entry| entry.place == Place::Live);
            if still_live {
                // Cannot happen (cancelling always unlinks); never loop on it.
                gauge.take_over_limit();
                return;
            }
        }
    }

    /// Records a joined instance in `queue` (admitted: it starts, holding a slot it has
    /// taken, or waits, as `admission` says).
    fn insert(&mut self, join: Join<'_>, queue: QueueId, admission: Admission) {
        let id = join.id;
        self.entries.insert(
            id,
            Entry {
                ident: join.ident.clone(),
                queue,
                control: join.control,
                parent: join.parent,
                detached: join.detached,
                children: Siblings::default(),
                prev_sibling: None,
                next_sibling: None,
                state: InstanceState::Waiting,
                place: Place::None,
                prev: None,
                next: None,
                done: false,
                started: false,
                cancel_on_shutdown: join.cancel_on_shutdown,
                existing: None,
                pipeline_key: join.pipeline_key,
                wake_when_childless: false,
                parked: None,
            },
        );
        if let Some(parent) = join.parent {
            self.add_child(parent, id);
        }
        if let Some(state) = self.queue_mut(queue) {
            state.members += 1;
        }
        if let (Some(hash), Some(state)) = (join.existing, self.queue_mut(queue)) {
            state.existing.entry(hash).or_default().push(id);
            state.generation += 1;
            if let Some(entry) = self.entries.get_mut(&id) {
                entry.existing = Some(hash);
            }
        }
        self.emit(join.ident, queue, EventKind::Admitted);
        match admission {
            Admission::Start => self.start(id),
            _ => {
                self.link(id, Place::Waiting);
                self.emit(join.ident, queue, EventKind::Waiting);
            }
        }
    }

    /// Marks `id` started, in the slot it has taken.
    fn start(&mut self, id: u64) {
        self.link(id, Place::Live);
        if let Some(entry) = self.entries.get_mut(&id) {
            entry.started = true;
            entry.state = InstanceState::Running;
            if self.log.is_some() {
                let (ident, queue) = (entry.ident.clone(), entry.queue);
                self.emit(&ident, queue, EventKind::Started);
            }
        }
    }

    /// Starts waiting instances of `queue` while it has free slots.
    fn fill_slots(&mut self, queue: QueueId, fx: &mut Effects) {
        while let Some(next) = self
            .queue(queue)
            .and_then(|state| state.waiting.head.filter(|_| state.gauge.try_take()))
        {
            self.unlink(next, fx);
            self.start(next);
            if let Some(entry) = self.entries.get_mut(&next) {
                entry.control.set_admitted();
                match entry.parked.take() {
                    Some(parked) => fx.start.push(parked),
                    None => fx.admit.push(Arc::clone(&entry.control)),
                }
            }
        }
    }

    fn leave_existing(&mut self, id: u64) {
        let Some(entry) = self.entries.get_mut(&id) else {
            return;
        };
        let Some(hash) = entry.existing.take() else {
            return;
        };
        let queue = entry.queue;
        if let Some(state) = self.queue_mut(queue) {
            if let Some(ids) = state.existing.get_mut(&hash) {
                ids.retain(|other| *other != id);
                if ids.is_empty() {
                    state.existing.remove(&hash);
                }
            }
            state.generation += 1;
        }
    }

    /// Keeps `parked` (the task of root `id`, which waits for a slot) until `id` is
    /// admitted or cancelled. Handed back if that already happened (or `id` is gone):
    /// the caller spawns it as it is.
    pub(crate) fn park(&mut self, id: u64, parked: Box<dyn Parked>) -> Result<(), Box<dyn Parked>> {
        match self.entries.get_mut(&id) {
            Some(entry)
                if entry.place == Place::Waiting && entry.state != InstanceState::Cancelling =>
            {
                entry.parked = Some(parked);
                Ok(())
            }
            _ => Err(parked),
        }
    }

    /// Records a state change the instance's driver observed (suspended, resumed).
    pub(crate) fn set_state(&mut self, id: u64, state: InstanceState) {
        let Some(entry) = self.entries.get_mut(&id) else {
            return;
        };
        if entry.state == InstanceState::Cancelling {
            return;
        }
        entry.state = state;
        let kind = match state {
            InstanceState::Suspended => EventKind::Suspended,
            _ => EventKind::Resumed,
        };
        if self.log.is_some() {
            let (ident, queue) = (entry.ident.clone(), entry.queue);
            self.emit(&ident, queue, kind);
        }
    }

    /// Records the end of an instance's own steps. `result` is its control block when it
    /// finished with a value (it holds the value for the queue's statistics).
    ///
    /// Returns `true` if a value arrived after a cancellation was accepted (the instance
    /// was already `Cancelling`): it is recorded, and must be reported, as cancelled, so that [`cancel`](Registry::cancel) answering "yes" is never followed
    /// by the caller receiving the value.
    pub(crate) fn finish(
        &mut self,
        id: u64,
        mut ending: Ending,
        mut result: Option<Arc<dyn ErasedControl>>,
        fx: &mut Effects,
    ) -> bool {
        let Some(entry) = self.entries.get_mut(&id) else {
            return false;
        };
        let cancelled_first =
            matches!(ending, Ending::Finished) && entry.state == InstanceState::Cancelling;
        if cancelled_first {
            ending = Ending::Cancelled;
            if let Some(result) = result.take() {
                fx.discard(result);
            }
        }
        entry.done = true;
        let started = entry.started;
        let queue = entry.queue;
        let ident = (self.log.is_some() || matches!(ending, Ending::Cancelled))
            .then(|| entry.ident.clone());
        let waits_for_children = !entry.children.is_empty();
        self.leave_existing(id);
        if let Some(state) = self.queue(queue) {
            let mut stats = state.gauge.stats();
            if started {
                stats.performed += 1;
            }
            match &ending {
                Ending::Finished => {
                    let kept = result.map(KeptResult::InControl);
                    if let Some(old) = std::mem::replace(&mut stats.last_result, kept) {
                        fx.discard_result(old);
                    }
                }
                Ending::Failed(error) => stats.last_error = Some(error.clone()),
                Ending::Cancelled => stats.last_cancelled.clone_from(&ident),
            }
        }
        if !fx.garbage.is_empty() && fx.garbage.on_behalf_of.is_none() {
            fx.garbage.on_behalf_of = self.ident_of(id);
        }
        let kind = match ending {
            Ending::Finished => EventKind::Finished,
            Ending::Failed(error) => EventKind::Failed(error),
            Ending::Cancelled => EventKind::Cancelled,
        };
        if let Some(ident) = &ident {
            self.emit(ident, queue, kind);
        }
        if waits_for_children {
            if let Some(entry) = self.entries.get_mut(&id) {
                if entry.state != InstanceState::Cancelling {
                    entry.state = InstanceState::WaitingForChildren;
                    if let Some(ident) = &ident {
                        self.emit(ident, queue, EventKind::WaitingForChildren);
                    }
                }
            }
        } else {
            self.remove(id, fx);
        }
        cancelled_first
    }

    /// Gives back what a burst made the tables grow to, once nothing is live: a runtime
    /// that was busy for a moment does not keep its peak memory forever. Small tables
    /// are kept, so a steady trickle of invocations does not reallocate.
    fn release_capacity(&mut self) {
        const KEPT: usize = 256;
        if self.entries.capacity() > KEPT {
            self.entries = FastMap::default();
        }
        for (_, state) in self.queues.iter_mut() {
            if state.existing.capacity() > KEPT {
                state.existing = FastMap::default();
            }
        }
    }

    pub(crate) fn ident_of(&self, id: u64) -> Option<Ident> {
        self.entries.get(&id).map(|entry| entry.ident.clone())
    }

    pub(crate) fn live_count(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn queue_count(&self) -> usize {
        self.queue_ids.len()
    }

    // ---- events ----------------------------------------------------------------------

    /// Records an event about something outside the queues (a supervised child).
    pub(crate) fn emit_named(&mut self, ident: &Ident, queue: &Name, kind: EventKind) {
        if let Some(log) = &self.log {
            log.record(Event {
                ident: ident.clone(),
                queue: queue.clone(),
                kind,
            });
        }
    }

    fn emit(&mut self, ident: &Ident, queue: QueueId, kind: EventKind) {
        if self.log.is_none() {
            return;
        }
        if let Some(name) = self.queue(queue).map(|state| state.name.clone()) {
            self.emit_named(ident, &name, kind);
        }
    }
}
