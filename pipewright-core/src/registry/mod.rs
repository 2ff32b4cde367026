//! The live-instance registry: every live instance, grouped by queue, with the tree of
//! parents and children. It decides admission ([SEMANTICS 3.2]), which instances a
//! cancellation reaches ([SEMANTICS 4]), and frees slots when instances end.
//!
//! Decisions never call user code: they are returned as [`Effects`] (control blocks to
//! signal) and events, which the runtime carries out after releasing the locks. Each
//! queue's [`Gauge`] (slot counts and statistics) is shared outside the locks with quick
//! runs (`gauge.rs` states the protocol). Every operation is O(1) in the number of live
//! instances (hash maps and intrusive lists), except those that must visit a tree or a
//! whole queue (a cancellation, a snapshot).
//!
//! # Locks: shards and the tree
//!
//! A queue and its entries live in one [`Shard`], chosen by the hash of the queue's name,
//! each behind its own mutex: independent queues never contend. An entry's fields are
//! guarded by its shard's lock. Links *between* entries of different queues (parents and
//! children) are guarded by the tree lock as well: an operation that follows or changes
//! them holds the tree lock first, then locks the shards it reaches as it reaches them
//! (a [`Wide`] view). Any order of shards is safe under the tree lock: only one wide
//! operation runs at a time, and an operation on one shard holds no other registry lock
//! and waits for none. Both kinds take every lock they need before changing anything and
//! keep them to the end (two-phase locking), so every operation is atomic.
//!
//! Which entries an operation on one shard may touch: an entry that is not `indexed`
//! (a root that never had a child) has no links, so ending, cancelling or admitting it
//! touches its queue only. An entry that is `indexed` (it has a parent, or has had a
//! child) is in the tree's index (id -> shard), and ending or cancelling it is a wide
//! operation, as is a child's joining. A root's join is wide only if it may cancel an
//! `indexed` entry (restartable, keep-latest); the front methods below decide, under the
//! shard's lock, and otherwise let go of it and start over wide.
//!
//! # Invariants
//!
//! They hold whenever the locks are released:
//!
//! - Each entry is in exactly one place, which its `place` names: its queue's `live` list
//!   (it holds a slot), its `waiting` list (it waits for one), or neither once it is
//!   cancelling (a cancellation frees the slot at once). An entry whose own steps are over
//!   but whose children still run keeps its slot until it is removed.
//! - An entry lives in the shard of its queue, and its queue's lists link only entries
//!   of that shard. An entry is in the tree's index, under its shard, exactly when it
//!   is `indexed`; `indexed` never goes back to `false`; each queue counts its `indexed`
//!   members.
//! - An entry's `state` says `Running` while its instance is suspended unless events are
//!   recorded (a watcher or event streams): suspensions are a flag in the control block,
//!   which introspection reads.
//! - A queue's gauge counts the slots held (its `live` entries and its quick runs) and
//!   its `waiting` entries; the count never passes the queue's limit. A quick run
//!   (`quick_slots.rs`) holds a slot in the gauge only, never as an entry; it gives it back when
//!   it ends, or keeps it as the entry it becomes (adoption). Quick runs never happen in
//!   per-key queues, so `members` counts entries only.
//! - `Cancelling` is final: neither a state change nor another cancellation undoes it,
//!   and a value that arrives afterwards is recorded as a cancellation.
//! - `members` counts the entries of each queue, in whatever place. A per-key queue is
//!   forgotten (its slab slot reused, its statistics dropped) as soon as it has no
//!   members; a queue with a fixed name is kept for the runtime's life. A shard's
//!   `queue_ids` names exactly the occupied slots of its `queues` slab (only per-key
//!   queues, which never have quick runs, are removed, so no gauge held outside names a
//!   reused slot).
//! - Tables give back what a burst made them grow to: a shard's entries, queue names and
//!   spare gauges, the tree's index and a queue's `use_existing` index shrink once they
//!   hold less than a quarter of their capacity (above a small floor, so a steady load
//!   does not reallocate), and the `queues` slab down to its last occupied slot (slots
//!   are never moved: a queue keeps its [`QueueId`]).
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
//! - No user code runs under a lock: control blocks are signalled by [`Effects::apply`]
//!   afterwards, and what may (as far as can be told) be the last reference to a user
//!   value is handed back as [`Garbage`] to drop outside it.
//! - Events are recorded when the registry decides, under the locks of what they are
//!   about, so the watcher sees them in an order every caller's decisions agree with.
//!
//! # Files
//!
//! - `mod.rs`: [`Registry`], its entries, and the front: which lock each operation takes
//! - `shard.rs`: [`Shard`], and finding, declaring and forgetting its queues
//! - `view.rs`: [`View`] (one shard, or [`Wide`]: the tree lock and the shards reached)
//! - `admission.rs`: joining, starting waiting instances, state changes, finishing
//! - `cancel.rs`: which instances a cancellation reaches, and stopping the runtime
//! - `tree.rs`: parents and children (an intrusive list of siblings), removing an entry
//! - `lists.rs`: the intrusive live and waiting lists of a queue
//! - `effects.rs`: [`Effects`] and [`Garbage`], what is carried out after the locks
//! - `queue_state.rs`: a queue as the registry keeps it
//! - `gauge.rs`: a queue's slot counts, shared without the locks, and its statistics
//! - `stats.rs`: a queue's statistics (under its gauge's lock)
//! - `quick_slots.rs`: slots for instances that run inside `invoke` without an entry
//! - `introspect.rs`: snapshots of the live instances and the queues
//!
//! [SEMANTICS 3.2]: crate::semantics#32-behaviours
//! [SEMANTICS 4]: crate::semantics#4-cancellation

mod admission;
mod cancel;
mod effects;
mod gauge;
mod introspect;
mod lists;
#[cfg(all(test, pipelines_loom))]
mod loom_model;
mod queue_state;
mod quick_slots;
mod shard;
mod stats;
mod tree;
mod view;

use std::hash::BuildHasher;
use std::sync::{Arc, PoisonError};

#[cfg(pipelines_loom)]
use loom::sync::{Mutex, MutexGuard};
#[cfg(not(pipelines_loom))]
use std::sync::{Mutex, MutexGuard};

use crate::behaviour::Concurrency;
use crate::cancel_reason::{CancelReason, Cancellation};
use crate::control::ErasedControl;
use crate::error::{Error, InvokeError};
use crate::events::hooks::{Event, EventKind};
use crate::events::EventLog;
use crate::ident::{Ident, Name};
use crate::introspection::{ActiveQueue, InstanceInfo, InstanceState, QueueInfo};
use crate::queue::KeyedState;

use self::shard::{Shard, Tree};
use self::view::{View, Wide};

pub(crate) use self::effects::{Effects, Few, Garbage, Parked};
pub(crate) use self::gauge::Gauge;
#[cfg(feature = "tower")]
pub(crate) use self::gauge::RoomPlace;
pub(crate) use self::quick_slots::{Asked, Replaced, Reservation};

/// The most shards a registry has (a [`Wide`] view keeps a place for each).
const MAX_SHARDS: usize = 64;

/// Which list of its queue an entry is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    None,
    Live,
    Waiting,
}

/// Where a queue is: its shard, and its index in that shard's slab. A queue with a fixed
/// name keeps it for the runtime's life, so it can be resolved once (registration).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct QueueId {
    pub(crate) shard: usize,
    pub(crate) slot: usize,
}

/// An entry's id and its shard: what an instance holds to reach its entry without a
/// search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EntryRef {
    pub(crate) id: u64,
    pub(crate) shard: usize,
}

struct Entry {
    ident: Ident,
    queue: QueueId,
    control: Arc<dyn ErasedControl>,
    parent: Link,
    detached: bool,
    /// It has a parent or has had a child: it is in the tree's index, and what ends or
    /// cancels it takes the tree lock.
    indexed: bool,
    /// Its live children, in joining order: an intrusive list through the children's
    /// sibling links, so a child leaves in O(1) however many siblings it has.
    children: Siblings,
    prev_sibling: Link,
    next_sibling: Link,
    state: InstanceState,
    place: Place,
    prev: Link,
    next: Link,
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

/// A link from an entry to another, by id, in 8 bytes: ids start at 1, so 0 is "none"
/// (an `Option<u64>` takes 16). An entry has seven.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Link(u64);

impl Link {
    const NONE: Link = Link(0);

    fn get(self) -> Option<u64> {
        (self.0 != 0).then_some(self.0)
    }
}

impl From<Option<u64>> for Link {
    fn from(id: Option<u64>) -> Self {
        Link(id.unwrap_or(0))
    }
}

impl From<u64> for Link {
    fn from(id: u64) -> Self {
        Link(id)
    }
}

/// The ends of an entry's list of children.
#[derive(Debug, Default, Clone, Copy)]
struct Siblings {
    first: Link,
    last: Link,
}

impl Siblings {
    fn is_empty(&self) -> bool {
        self.first.get().is_none()
    }
}

/// A request to join a queue.
pub(crate) struct Join<'a> {
    /// The new entry's id, and the shard of its queue ([`Registry::shard_of`]).
    pub(crate) at: EntryRef,
    pub(crate) ident: &'a Ident,
    pub(crate) queue: &'a Name,
    pub(crate) keyed: bool,
    pub(crate) concurrency: Concurrency,
    pub(crate) control: Arc<dyn ErasedControl>,
    pub(crate) parent: Option<EntryRef>,
    pub(crate) detached: bool,
    /// Nobody waits for it (a detached child, a fork): it is refused if its parent is
    /// cancelling or gone, or it would outlive the cancellation that ends its parent.
    pub(crate) unwaited: bool,
    pub(crate) cancel_on_shutdown: bool,
    /// Argument hash, for `use_existing`.
    pub(crate) existing: Option<u64>,
    pub(crate) pipeline_key: usize,
}

/// The queue's answer to a [`Join`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    Start,
    Wait,
    Drop,
    /// An unwaited child whose parent is cancelling or gone: not recorded.
    ParentEnded,
}

/// How an instance ended, for statistics and events.
pub(crate) enum Recorded {
    Finished,
    Failed(Error),
    Cancelled(Cancellation),
}

/// A live instance found by a `use_existing` lookup, to be compared outside the lock.
pub(crate) struct Candidate {
    pub(crate) ident: Ident,
    pub(crate) control: Arc<dyn ErasedControl>,
}

/// What a `use_existing` lookup found in a queue: the live instances whose argument
/// hashes alike, and the queue's generation and slot to validate a comparison with.
pub(crate) struct Existing {
    pub(crate) generation: u64,
    pub(crate) shard: usize,
    /// `None` if the queue does not exist (yet).
    pub(crate) slot: Option<usize>,
    pub(crate) candidates: Few<Candidate>,
}

/// The registry: shards of queues and entries, and the tree lock (see the module doc).
pub(crate) struct Registry {
    shards: Box<[Mutex<Shard>]>,
    tree: Mutex<Tree>,
    /// Where events are recorded: only when a watcher or event streams will read them.
    log: Option<Arc<EventLog>>,
}

/// Locks `mutex`. The registry is consistent at every unlock (no user code runs under
/// its locks), so a poisoned lock is still safe to use.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The shard, of `count`, of the queue named `queue`. The keyed hasher: a per-key
/// queue's name is computed from an argument.
fn shard_of(queue: &Name, count: usize) -> usize {
    (KeyedState.hash_one(queue) % count as u64) as usize
}

impl Registry {
    /// A registry of `shards` shards (at least one, at most [`MAX_SHARDS`]).
    pub(crate) fn new(log: Option<Arc<EventLog>>, shards: usize) -> Self {
        let count = shards.clamp(1, MAX_SHARDS);
        Registry {
            shards: (0..count)
                .map(|index| Mutex::new(Shard::new(index, log.clone())))
                .collect(),
            tree: Mutex::new(Tree::default()),
            log,
        }
    }

    /// How many shards suit this machine: a few per core, so that independent queues
    /// rarely share one.
    pub(crate) fn default_shards() -> usize {
        let cores = std::thread::available_parallelism().map_or(1, |cores| cores.get());
        (cores * 4).next_power_of_two().min(MAX_SHARDS)
    }

    /// The shard of the queue named `queue`.
    pub(crate) fn shard_of(&self, queue: &Name) -> usize {
        shard_of(queue, self.shards.len())
    }

    fn shard(&self, shard: usize) -> MutexGuard<'_, Shard> {
        lock(&self.shards[shard % self.shards.len()])
    }

    /// The tree lock, and no shard yet.
    fn wide(&self) -> Wide<'_> {
        Wide::new(&self.shards, lock(&self.tree), self.log.as_ref())
    }

    /// The tree lock and every shard, in order: a view of everything.
    fn everything(&self) -> Wide<'_> {
        let wide = self.wide();
        wide.hold_all();
        wide
    }

    // ---- joining -------------------------------------------------------------------

    /// A full dropping queue refuses before anything is built: `true` if `queue` exists,
    /// has this configuration, is dropping and has no free slot (the refusal is then
    /// recorded, as [`join`](Registry::join) would). Anything else is left to `join`,
    /// which also reports a configuration mismatch.
    ///
    /// `shard` is the queue's ([`shard_of`](Registry::shard_of)), computed once by the
    /// caller for the whole join.
    pub(crate) fn refuses_at_once(
        &self,
        queue: &Name,
        shard: usize,
        concurrency: Concurrency,
        ident: &Ident,
    ) -> bool {
        View::One(&mut self.shard(shard)).refuses_at_once(queue, concurrency, ident)
    }

    /// The live, unfinished instances of `pipeline_key` in `queue` whose argument hashes
    /// to `hash`, and where the queue was, to validate the comparison with.
    ///
    /// `shard` is the queue's ([`shard_of`](Registry::shard_of)), computed once by the
    /// caller for the whole join; `slot` its slot, if resolved at registration.
    pub(crate) fn existing_candidates(
        &self,
        queue: &Name,
        shard: usize,
        slot: Option<usize>,
        hash: u64,
        pipeline_key: usize,
    ) -> Existing {
        self.shard(shard)
            .existing_candidates(queue, slot, hash, pipeline_key)
    }

    /// Runs `share` (joining a live instance's sharers) if `queue`'s generation is still
    /// the one `existing` saw, under the lock that keeps it so; `false` if it changed.
    pub(crate) fn share_if_current(
        &self,
        queue: &Name,
        existing: &Existing,
        share: impl FnOnce(),
    ) -> bool {
        let current =
            self.shard(existing.shard).generation(existing.slot, queue) == existing.generation;
        if current {
            share();
        }
        current
    }

    /// Decides what happens to a new instance and records it: on its queue's shard
    /// alone for a root whose join cancels no `indexed` entry, wide otherwise.
    pub(crate) fn join(&self, join: Join<'_>, fx: &mut Effects) -> Result<Admission, InvokeError> {
        self.join_with(join, |view, join| view.join(join, fx))
    }

    /// `use_existing`: joins as [`join`](Registry::join) does if the queue's generation is
    /// still `generation` (no instance to share has joined since the caller looked, see
    /// [`existing_candidates`](Registry::existing_candidates)), checked under the same
    /// lock; `None` if it changed (nothing was done: the caller looks again).
    pub(crate) fn join_if_current(
        &self,
        join: Join<'_>,
        generation: u64,
        fx: &mut Effects,
    ) -> Result<Option<Admission>, InvokeError> {
        self.join_with(join, |view, join| {
            let current = view
                .queue_named(join.queue)
                .map_or(0, |state| state.generation);
            if current != generation {
                return Ok(None);
            }
            view.join(join, fx).map(Some)
        })
    }

    /// Runs `decide` on the view a join needs: its queue's shard alone for a root whose
    /// join cancels no `indexed` entry, wide otherwise (holding the parent's shard).
    fn join_with<'j, R>(
        &self,
        join: Join<'j>,
        decide: impl FnOnce(&mut View<'_>, Join<'j>) -> R,
    ) -> R {
        if join.parent.is_none() {
            let mut shard = self.shard(join.at.shard);
            if shard.joins_alone(join.queue, join.concurrency) {
                return decide(&mut View::One(&mut shard), join);
            }
        }
        let wide = self.wide();
        wide.hold(join.at.shard);
        if let Some(parent) = join.parent {
            wide.hold(parent.shard);
        }
        decide(&mut View::Wide(wide), join)
    }

    /// Keeps `parked` (the task of root `at`, which waits for a slot) until it is
    /// admitted or cancelled. Handed back if that already happened (or `at` is gone):
    /// the caller spawns it as it is.
    pub(crate) fn park(
        &self,
        at: EntryRef,
        parked: Box<dyn Parked>,
    ) -> Result<(), Box<dyn Parked>> {
        View::One(&mut self.shard(at.shard)).park(at.id, parked)
    }

    /// Joins as [`join`](Registry::join) does and, if the root waits, parks it in the same
    /// critical section: `park` (called under the lock, nothing else) moves the instance
    /// into its task. A task the entry does not take (admitted or cancelled already) is
    /// handed back to be started as it is.
    pub(crate) fn join_parking(
        &self,
        join: Join<'_>,
        fx: &mut Effects,
        park: impl FnOnce() -> Box<dyn Parked>,
    ) -> Result<(Admission, Option<Box<dyn Parked>>), InvokeError> {
        let id = join.at.id;
        self.join_with(join, |view, join| {
            let admission = view.join(join, fx)?;
            let refused = match admission {
                Admission::Wait => view.park(id, park()).err(),
                _ => None,
            };
            Ok((admission, refused))
        })
    }

    // ---- running and ending ----------------------------------------------------------

    /// Records a state change the instance's driver observed (suspended, resumed).
    pub(crate) fn set_state(&self, at: EntryRef, state: InstanceState) {
        View::One(&mut self.shard(at.shard)).set_state(at.id, state);
    }

    /// `true` if `at` has live children; if so, its control is told when they are done.
    pub(crate) fn await_children(&self, at: EntryRef) -> bool {
        self.shard(at.shard).await_children(at.id)
    }

    /// Records the end of an instance's own steps (see [`View::finish`]).
    pub(crate) fn finish(
        &self,
        at: EntryRef,
        ending: Recorded,
        result: Option<Arc<dyn ErasedControl>>,
        fx: &mut Effects,
    ) -> Option<Cancellation> {
        self.on_entry(at, |view| view.finish(at.id, ending, result, fx))
    }

    /// Runs `decide` on the view an operation on entry `at` and its tree needs: its shard
    /// alone if it is not `indexed` (it has no links), wide otherwise (holding its shard).
    fn on_entry<R>(&self, at: EntryRef, decide: impl FnOnce(&mut View<'_>) -> R) -> R {
        {
            let mut shard = self.shard(at.shard);
            if !shard.is_indexed(at.id) {
                return decide(&mut View::One(&mut shard));
            }
        }
        let wide = self.wide();
        wide.hold(at.shard);
        decide(&mut View::Wide(wide))
    }

    /// Takes `at` out of its queue without cancelling its tree (it could not wait).
    pub(crate) fn withdraw(&self, at: EntryRef, fx: &mut Effects) {
        View::One(&mut self.shard(at.shard)).withdraw(at.id, fx);
    }

    // ---- cancelling ------------------------------------------------------------------

    /// Cancels the tree `at` belongs to (see [`View::cancel`]); `false` if it is not live.
    pub(crate) fn cancel(&self, at: EntryRef, reason: CancelReason, fx: &mut Effects) -> bool {
        self.on_entry(at, |view| view.cancel(at.id, reason, fx))
    }

    /// Cancels `at` and its descendants, without climbing to its parents (a child its
    /// timed-out parent gives up on).
    pub(crate) fn cancel_below(&self, at: EntryRef, cause: Cancellation, fx: &mut Effects) {
        self.on_entry(at, |view| {
            if view.contains(at.id) {
                view.cancel_trees(&[at.id], cause, fx);
            }
        });
    }

    /// Cancels the tree of the live instance `ident`, wherever it is (a user's request:
    /// every shard is searched); `false` if it is not live.
    pub(crate) fn cancel_ident(
        &self,
        ident: &Ident,
        reason: CancelReason,
        fx: &mut Effects,
    ) -> bool {
        let mut view = View::Wide(self.everything());
        view.ident_of(ident.id).as_ref() == Some(ident) && view.cancel(ident.id, reason, fx)
    }

    /// Cancels every tree whose top is `cancel_on_shutdown`.
    pub(crate) fn stop(&self, fx: &mut Effects) {
        View::Wide(self.everything()).stop(false, fx);
    }

    /// Cancels every live tree, those `stop` spares included (a shutdown past its
    /// deadline); returns how many.
    pub(crate) fn cancel_everything(&self, fx: &mut Effects) -> usize {
        View::Wide(self.everything()).stop(true, fx)
    }

    // ---- looking -------------------------------------------------------------------

    /// The ident of `at`'s parent, if it has one (and both are live).
    pub(crate) fn parent_of(&self, at: EntryRef) -> Option<Ident> {
        let wide = self.wide();
        wide.hold(at.shard);
        View::Wide(wide).parent_of(at.id)
    }

    /// Active instances grouped by queue (see [`View::active`]).
    pub(crate) fn active(&self) -> Vec<ActiveQueue> {
        View::Wide(self.everything()).active()
    }

    pub(crate) fn instance(&self, id: u64) -> Option<InstanceInfo> {
        View::Wide(self.everything()).instance(id)
    }

    pub(crate) fn queue_info(&self, name: &str) -> Option<QueueInfo> {
        let name = Name::Shared(Arc::from(name));
        View::One(&mut self.shard(self.shard_of(&name))).queue_info(&name)
    }

    /// How many instances are live, and how many queues are kept.
    pub(crate) fn counts(&self) -> (usize, usize) {
        let wide = self.everything();
        wide.held()
            .into_iter()
            .fold((0, 0), |(entries, queues), shard| {
                (entries + shard.entry_count(), queues + shard.queue_count())
            })
    }

    // ---- events ----------------------------------------------------------------------

    /// Records an event about something outside the queues (a supervised child).
    pub(crate) fn emit_named(&self, ident: &Ident, queue: &Name, kind: EventKind) {
        if let Some(log) = &self.log {
            log.record(Event {
                ident: ident.clone(),
                queue: queue.clone(),
                kind,
            });
        }
    }
}

impl Shard {
    /// `true` if a root joining `queue` cancels no `indexed` entry, so the join needs
    /// this shard only (`Behaviour::joins_touch_other_entries`: the join may cancel
    /// entries of the queue, live or waiting).
    fn joins_alone(&self, queue: &Name, concurrency: Concurrency) -> bool {
        !concurrency.behaviour().joins_touch_other_entries()
            || self
                .queue_named(queue)
                .map_or(true, |state| state.indexed_members == 0)
    }
}
