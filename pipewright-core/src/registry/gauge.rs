//! A queue's slot counts and statistics, readable and changeable without the registry's
//! lock: quick runs (`quick_slots.rs`) take and give back slots here, and a full dropping queue
//! refuses here, so an invocation that never becomes an entry takes no registry lock.
//!
//! The protocol between the lock-free side and the registry (modelled with loom below):
//! - One atomic word holds two counts: the slots held (live entries and quick runs) and
//!   the entries in the queue's waiting list. Both change by read-modify-write on that one
//!   word, so every change sees every earlier one (no reliance on `SeqCst` between two
//!   locations).
//! - Everyone takes a slot with [`Gauge::try_take`] (a compare-and-swap below the limit),
//!   so the count never passes it.
//! - The registry (under its lock) counts an entry as waiting when it links it, then
//!   tries to start waiting entries. A quick run gives its slot back and learns, from the
//!   same operation, whether an entry waits; if one does, it takes the lock to start it.
//!   So a freed slot is never left unused while an entry waits.
//! - A quick run takes a slot only while nobody waits (checked in the same
//!   compare-and-swap), so it never overtakes a waiting entry ([SEMANTICS 3.2]: waiting
//!   instances start in arrival order).
//! - A caller that waits for room in a full queue (a `tower` service's `poll_ready`)
//!   registers its waker in the gauge's list and sets the word's `ROOM_WANTED` bit, both
//!   under the list's lock, then reads whether a slot is free from that same operation.
//!   Each caller has one place in the list (a [`RoomPlace`], kept by the service clone),
//!   holding its latest waker: polling again replaces it, and the caller gives its place
//!   up when it goes (a dropped service), so the list holds at most one waker per live
//!   caller however many requests were refused meanwhile.
//!   Whoever gives a slot back learns from its `fetch_sub` whether the bit is set; only
//!   then does it take the list's lock, clear the bit and wake the list (after the
//!   registry's lock, if it holds it). So giving a slot back costs nothing more when
//!   nobody waits, and no waiter misses a slot: either its registration comes first in
//!   the word's order (the give-back sees the bit), or the give-back does (the waiter
//!   sees the slot free). Waking grants nothing: the woken caller looks again, and
//!   another may have taken the slot meanwhile.
//!
//! [SEMANTICS 3.2]: crate::semantics#32-behaviours

#[cfg(pipelines_loom)]
use loom::sync::{
    atomic::{AtomicU64, Ordering},
    Mutex as WakerLock,
};
#[cfg(not(pipelines_loom))]
use std::sync::{
    atomic::{AtomicU64, Ordering},
    Mutex as WakerLock,
};

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use slab::Slab;

use super::stats::Stats;
use super::QueueId;
use crate::behaviour::Concurrency;

/// One slot held, in the gauge's word (the low half).
const SLOT: u64 = 1;
/// One entry waiting, in the gauge's word (the high half).
const WAITER: u64 = 1 << 32;
const SLOTS: u64 = WAITER - 1;
/// Somebody waits for room (a slot to free) with a waker in the gauge's list; the top
/// bit, so the waiting entries keep 31 bits.
const ROOM_WANTED: u64 = 1 << 63;

/// The shared, lock-free part of a queue (see the module doc).
pub(crate) struct Gauge {
    /// The queue's index in the registry (stable for a queue with a fixed name).
    pub(crate) id: QueueId,
    pub(crate) concurrency: Concurrency,
    /// The most slots that may be held (a count no memory could hold for an unrestricted
    /// queue).
    limit: u64,
    /// Waiting entries (high half) and slots held (low half).
    counts: AtomicU64,
    /// Its own small lock: a quick run records its result without the registry's.
    stats: Mutex<Stats>,
    /// The callers waiting for room (see the module doc), one place each, woken when a
    /// slot is given back; touched only while `ROOM_WANTED` says somebody waits, and by
    /// callers taking or giving up their place.
    room_waiters: WakerLock<Slab<Option<Waker>>>,
}

/// A caller's place in a gauge's list of callers waiting for room: `None` until it first
/// waits. Whoever keeps one gives it back with [`Gauge::leave_room_waiters`] when it goes.
pub(crate) type RoomPlace = Option<usize>;

/// What giving a slot back found in the gauge's word.
#[must_use]
pub(crate) struct Freed(u64);

impl Freed {
    /// An entry waits for a slot: the registry must start it.
    pub(crate) fn entry_waits(&self) -> bool {
        self.0 & !ROOM_WANTED >= WAITER
    }

    /// A caller waits for room: [`Gauge::wake_room_waiters`] must wake it (outside the
    /// registry's lock).
    pub(crate) fn room_wanted(&self) -> bool {
        self.0 & ROOM_WANTED != 0
    }
}

impl Gauge {
    pub(crate) fn new(id: QueueId, concurrency: Concurrency) -> Self {
        Gauge {
            id,
            concurrency,
            limit: u64::try_from(concurrency.limit()).map_or(SLOTS, |limit| limit.min(SLOTS)),
            counts: AtomicU64::new(0),
            stats: Mutex::new(Stats::default()),
            room_waiters: WakerLock::new(Slab::new()),
        }
    }

    /// Takes a slot if one is free.
    pub(crate) fn try_take(&self) -> bool {
        self.take_if(|counts| counts & SLOTS < self.limit)
    }

    /// Takes a slot for a quick run: only if one is free and nobody waits for one.
    pub(crate) fn try_take_quick(&self) -> bool {
        self.take_if(|counts| counts & !ROOM_WANTED < self.limit)
    }

    fn take_if(&self, free: impl Fn(u64) -> bool) -> bool {
        let mut counts = self.counts.load(Ordering::Acquire);
        loop {
            if !free(counts) {
                return false;
            }
            match self.counts.compare_exchange_weak(
                counts,
                counts + SLOT,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(now) => counts = now,
            }
        }
    }

    /// Takes a slot whatever the count: only where a behaviour says the instance starts
    /// and no slot could be freed for it (which the registry's invariants rule out).
    pub(crate) fn take_over_limit(&self) {
        self.counts.fetch_add(SLOT, Ordering::AcqRel);
    }

    /// Gives a slot back, and says who waits for it: an entry (a quick run must then have
    /// the registry start it), a caller waiting for room (to be woken).
    pub(crate) fn free(&self) -> Freed {
        Freed(self.counts.fetch_sub(SLOT, Ordering::AcqRel))
    }

    /// `Ready` if a slot is free; otherwise `Pending`, with `cx`'s waker in the caller's
    /// `place` (taken now if it has none), to be woken when a slot is given back (or by
    /// [`wake_room_waiters`](Gauge::wake_room_waiters)). The place keeps one waker: the
    /// latest.
    #[cfg_attr(not(feature = "tower"), allow(dead_code))]
    pub(crate) fn poll_room(&self, cx: &mut Context<'_>, place: &mut RoomPlace) -> Poll<()> {
        if self.has_free_slot() {
            return Poll::Ready(());
        }
        let mut waiters = self.room_waiters();
        let replaced = match place.and_then(|key| waiters.get_mut(key)) {
            Some(Some(waker)) if waker.will_wake(cx.waker()) => None,
            Some(kept) => kept.replace(cx.waker().clone()),
            None => {
                *place = Some(waiters.insert(Some(cx.waker().clone())));
                None
            }
        };
        // Set under the list's lock, and read in the same operation: a slot given back
        // before this is seen here, one given back after it sees the bit.
        let counts = self.counts.fetch_or(ROOM_WANTED, Ordering::AcqRel);
        drop(waiters);
        // A waker is foreign code: dropped outside the lock.
        drop(replaced);
        if counts & SLOTS < self.limit {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Gives up a caller's place (and the waker in it) in the list of callers waiting for
    /// room; a list left empty gives back what a crowd of callers made it grow to.
    #[cfg_attr(not(feature = "tower"), allow(dead_code))]
    pub(crate) fn leave_room_waiters(&self, place: usize) {
        /// Places kept by an empty list, so one caller coming and going allocates nothing.
        const KEPT: usize = 16;
        let (waker, emptied) = {
            let mut waiters = self.room_waiters();
            let waker = waiters.try_remove(place).flatten();
            let emptied = (waiters.is_empty() && waiters.capacity() > KEPT)
                .then(|| std::mem::take(&mut *waiters));
            (waker, emptied)
        };
        // A waker is foreign code: dropped outside the lock.
        drop((waker, emptied));
    }

    /// Wakes every caller waiting for room (their places stay theirs). Called without the
    /// registry's lock: a waker is foreign code.
    pub(crate) fn wake_room_waiters(&self) {
        let woken: Vec<Waker> = {
            let mut waiters = self.room_waiters();
            // Cleared under the list's lock, so the bit is set whenever the list holds a
            // waker registered since the last wake.
            self.counts.fetch_and(!ROOM_WANTED, Ordering::AcqRel);
            waiters
                .iter_mut()
                .filter_map(|(_, waker)| waker.take())
                .collect()
        };
        for waker in woken {
            waker.wake();
        }
    }

    fn room_waiters(&self) -> impl std::ops::DerefMut<Target = Slab<Option<Waker>>> + '_ {
        // Only inserts, removals and takes happen under this lock: a poisoned one is
        // consistent.
        self.room_waiters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn has_free_slot(&self) -> bool {
        self.counts.load(Ordering::Acquire) & SLOTS < self.limit
    }

    /// The slots held (live entries and quick runs).
    pub(crate) fn running(&self) -> usize {
        usize::try_from(self.counts.load(Ordering::Acquire) & SLOTS).unwrap_or(usize::MAX)
    }

    /// Called by the registry, under its lock, as it links a waiting entry.
    pub(crate) fn add_waiting(&self) {
        self.counts.fetch_add(WAITER, Ordering::AcqRel);
    }

    /// Called by the registry, under its lock, as it unlinks a waiting entry.
    pub(crate) fn remove_waiting(&self) {
        self.counts.fetch_sub(WAITER, Ordering::AcqRel);
    }

    /// The queue's statistics. Taken under the registry's lock or without it (never the
    /// other way round), and never held while user code runs.
    pub(crate) fn stats(&self) -> MutexGuard<'_, Stats> {
        // Only plain assignments happen under this lock: a poisoned one is consistent.
        self.stats.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(all(test, not(pipelines_loom)))]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::{Context, Wake, Waker};

    use super::{Gauge, QueueId, RoomPlace};
    use crate::behaviour::{Behaviour, Concurrency};

    /// Counts its wakes.
    #[derive(Default)]
    struct Counter(AtomicUsize);

    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn full_gauge() -> Gauge {
        let gauge = Gauge::new(
            QueueId { shard: 0, slot: 0 },
            Concurrency::new(Behaviour::Dropping),
        );
        assert!(gauge.try_take());
        gauge
    }

    #[test]
    fn a_place_keeps_the_latest_waker_only_and_leaving_takes_it_away() {
        let gauge = full_gauge();
        let counters: Vec<Arc<Counter>> = (0..100).map(|_| Arc::default()).collect();
        let mut place: RoomPlace = None;
        for counter in &counters {
            let waker = Waker::from(Arc::clone(counter));
            assert!(gauge
                .poll_room(&mut Context::from_waker(&waker), &mut place)
                .is_pending());
        }
        // The replaced wakers were dropped: only the list holds the last one.
        assert!(counters[..99]
            .iter()
            .all(|counter| Arc::strong_count(counter) == 1));
        assert_eq!(Arc::strong_count(&counters[99]), 2);
        let other = Arc::new(Counter::default());
        let mut other_place: RoomPlace = None;
        let waker = Waker::from(Arc::clone(&other));
        assert!(gauge
            .poll_room(&mut Context::from_waker(&waker), &mut other_place)
            .is_pending());
        assert_ne!(place, other_place);
        assert_eq!(gauge.room_waiters().len(), 2);

        // A freed slot wakes each place's waker once; the places stay.
        assert!(gauge.free().room_wanted());
        gauge.wake_room_waiters();
        assert_eq!(counters[99].0.load(Ordering::SeqCst), 1);
        assert_eq!(other.0.load(Ordering::SeqCst), 1);
        assert!(counters[..99]
            .iter()
            .all(|counter| counter.0.load(Ordering::SeqCst) == 0));
        assert_eq!(gauge.room_waiters().len(), 2);

        // Full again, polled again: the same place; then both leave.
        assert!(gauge.try_take());
        let again = place;
        assert!(gauge
            .poll_room(&mut Context::from_waker(&waker), &mut place)
            .is_pending());
        assert_eq!(place, again);
        gauge.leave_room_waiters(place.unwrap());
        gauge.leave_room_waiters(other_place.unwrap());
        assert_eq!(gauge.room_waiters().len(), 0);
        assert_eq!(Arc::strong_count(&other), 2, "only `waker` holds it now");
    }
}

#[cfg(all(test, pipelines_loom))]
mod loom_model {
    use super::{Gauge, QueueId};
    use crate::behaviour::{Behaviour, Concurrency};
    use loom::sync::atomic::{AtomicBool, Ordering};
    use loom::sync::{Arc, Mutex};
    use loom::thread;

    const QUEUE: QueueId = QueueId { shard: 0, slot: 0 };

    /// The registry's side, reduced to the gauge and one waiting entry: joins as a waiter
    /// (or starts), and starts waiting entries while slots are free.
    struct Queue {
        gauge: Gauge,
        /// The registry's lock, and the waiting entry it protects (`true`: it waits).
        registry: Mutex<bool>,
        started: AtomicBool,
    }

    impl Queue {
        fn fill_slots(&self, waiting: &mut bool) {
            if *waiting && self.gauge.try_take() {
                *waiting = false;
                self.gauge.remove_waiting();
                self.started.store(true, Ordering::SeqCst);
            }
        }
    }

    /// A quick run holds the only slot and gives it back while an enqueued instance
    /// joins: the joiner is always started, by itself or by the quick run.
    #[test]
    fn loom_model_a_freed_slot_reaches_a_waiter() {
        loom::model(|| {
            let concurrency = Concurrency::new(Behaviour::Enqueued);
            let queue = Arc::new(Queue {
                gauge: Gauge::new(QUEUE, concurrency),
                registry: Mutex::new(false),
                started: AtomicBool::new(false),
            });
            assert!(queue.gauge.try_take_quick());
            let quick = {
                let queue = Arc::clone(&queue);
                thread::spawn(move || {
                    if queue.gauge.free().entry_waits() {
                        let mut waiting = queue.registry.lock().unwrap();
                        queue.fill_slots(&mut waiting);
                    }
                })
            };
            {
                let mut waiting = queue.registry.lock().unwrap();
                if queue.gauge.try_take() {
                    queue.started.store(true, Ordering::SeqCst);
                } else {
                    *waiting = true;
                    queue.gauge.add_waiting();
                    queue.fill_slots(&mut waiting);
                }
            }
            quick.join().unwrap();
            assert!(queue.started.load(Ordering::SeqCst));
            assert_eq!(queue.gauge.running(), 1);
        });
    }

    /// Wakes by setting a flag.
    struct Flag(AtomicBool);

    impl std::task::Wake for Flag {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    /// A caller polls for room while the only slot is given back: it sees the slot free,
    /// or it is woken (a waiter never misses a freed slot).
    #[test]
    fn loom_model_a_freed_slot_wakes_a_caller_waiting_for_room() {
        loom::model(|| {
            let concurrency = Concurrency::new(Behaviour::Dropping);
            let gauge = Arc::new(Gauge::new(QUEUE, concurrency));
            assert!(gauge.try_take_quick());
            let releaser = {
                let gauge = Arc::clone(&gauge);
                thread::spawn(move || {
                    if gauge.free().room_wanted() {
                        gauge.wake_room_waiters();
                    }
                })
            };
            let flag = std::sync::Arc::new(Flag(AtomicBool::new(false)));
            let waker = std::task::Waker::from(std::sync::Arc::clone(&flag));
            let mut cx = std::task::Context::from_waker(&waker);
            let ready = gauge.poll_room(&mut cx, &mut None).is_ready();
            releaser.join().unwrap();
            assert!(ready || flag.0.load(Ordering::SeqCst));
            assert!(
                gauge.try_take_quick(),
                "the bit does not keep quick runs out"
            );
        });
    }

    /// A quick run never takes a slot from under a waiting entry.
    #[test]
    fn loom_model_a_quick_run_does_not_overtake() {
        loom::model(|| {
            let concurrency = Concurrency::new(Behaviour::Enqueued);
            let gauge = Arc::new(Gauge::new(QUEUE, concurrency));
            assert!(gauge.try_take());
            gauge.add_waiting();
            let releaser = {
                let gauge = Arc::clone(&gauge);
                thread::spawn(move || {
                    assert!(gauge.free().entry_waits());
                })
            };
            assert!(!gauge.try_take_quick());
            releaser.join().unwrap();
        });
    }
}
