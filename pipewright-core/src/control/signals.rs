//! The flags and the waker of one instance's control block: how a decision the registry
//! took under its lock (admitted, cancelled, children done) reaches the code that drives
//! the instance, which may be on another thread or suspended.
//!
//! The protocol, modelled with loom below (`RUSTFLAGS="--cfg pipelines_loom"`):
//! - the driver registers its waker, then reads the flags; the signaller sets a flag,
//!   then wakes. Either the driver sees the flag, or it is woken: no signal is lost.
//! - `admitted` is set (under the registry's lock) before any later `cancelled`, with
//!   release/acquire ordering: a driver that sees "cancelled" also sees "admitted" if the
//!   instance was given its slot, so a started instance always runs its `finally!`.

#[cfg(pipelines_loom)]
use loom::future::AtomicWaker;
#[cfg(pipelines_loom)]
use loom::sync::atomic::{AtomicU8, Ordering};

#[cfg(not(pipelines_loom))]
use futures::task::AtomicWaker;
#[cfg(not(pipelines_loom))]
use std::sync::atomic::{AtomicU8, Ordering};

use std::task::Waker;

use crate::cancel_reason::Cancellation;

const CANCELLED: u8 = 1;
const ADMITTED: u8 = 2;
/// Set when the instance waits for its children to end before running `finally!`.
const CHILDREN_DONE: u8 = 4;
const SUSPENDED: u8 = 16;
/// A root's outcome is being handed over (set once, by the first to finish).
const DONE: u8 = 32;
/// The outcome is in place for the caller.
const DELIVERED: u8 = 64;

pub(crate) struct Signals {
    flags: AtomicU8,
    /// Why it was cancelled ([`Cancellation::to_byte`]; 0 until a reason is given): set
    /// before the `CANCELLED` flag, so a driver that sees the flag finds it.
    reason: AtomicU8,
    waker: AtomicWaker,
}

impl Signals {
    pub(crate) fn new(admitted: bool) -> Self {
        Signals {
            flags: AtomicU8::new(if admitted { ADMITTED } else { 0 }),
            reason: AtomicU8::new(0),
            waker: AtomicWaker::new(),
        }
    }

    /// Remembers who to wake. Read the flags after this: a signal that lands between the
    /// two is then never lost.
    pub(crate) fn register(&self, waker: &Waker) {
        #[cfg(pipelines_loom)]
        self.waker.register_by_ref(waker);
        #[cfg(not(pipelines_loom))]
        self.waker.register(waker);
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        self.flags.load(Ordering::Acquire) & CANCELLED != 0
    }

    pub(crate) fn is_admitted(&self) -> bool {
        self.flags.load(Ordering::Acquire) & ADMITTED != 0
    }

    /// Consumes the "children done" signal.
    /// Whether the instance waits on something that is not ready (for introspection).
    pub(crate) fn is_suspended(&self) -> bool {
        self.flags.load(Ordering::Acquire) & SUSPENDED != 0
    }

    /// Set by the instance's driver alone; read by introspection.
    pub(crate) fn set_suspended(&self, suspended: bool) {
        if suspended {
            self.flags.fetch_or(SUSPENDED, Ordering::AcqRel);
        } else {
            self.flags.fetch_and(!SUSPENDED, Ordering::AcqRel);
        }
    }

    /// Claims the right to hand over the outcome: `true` the first time only.
    pub(crate) fn set_done(&self) -> bool {
        self.flags.fetch_or(DONE, Ordering::AcqRel) & DONE == 0
    }

    pub(crate) fn set_delivered(&self) {
        self.flags.fetch_or(DELIVERED, Ordering::AcqRel);
    }

    pub(crate) fn is_delivered(&self) -> bool {
        self.flags.load(Ordering::Acquire) & DELIVERED != 0
    }

    pub(crate) fn take_children_done(&self) -> bool {
        self.flags.fetch_and(!CHILDREN_DONE, Ordering::AcqRel) & CHILDREN_DONE != 0
    }

    /// Keeps the first reason given; later ones are ignored.
    pub(crate) fn set_cancel_reason(&self, reason: Cancellation) {
        let _ =
            self.reason
                .compare_exchange(0, reason.to_byte(), Ordering::AcqRel, Ordering::Acquire);
    }

    pub(crate) fn cancel_reason(&self) -> Option<Cancellation> {
        Cancellation::from_byte(self.reason.load(Ordering::Acquire))
    }

    /// Requests cancellation and wakes the driver.
    pub(crate) fn cancel(&self) {
        self.signal(CANCELLED);
    }

    /// Tells a driver waiting for its children that they are done.
    pub(crate) fn children_done(&self) {
        self.signal(CHILDREN_DONE);
    }

    /// Gives the slot without waking (called under the registry's lock; the wake follows
    /// outside it).
    pub(crate) fn set_admitted(&self) {
        self.flags.fetch_or(ADMITTED, Ordering::AcqRel);
    }

    pub(crate) fn wake(&self) {
        self.waker.wake();
    }

    fn signal(&self, flag: u8) {
        self.flags.fetch_or(flag, Ordering::AcqRel);
        self.waker.wake();
    }
}

#[cfg(all(test, pipelines_loom))]
mod loom_model {
    //! Every interleaving of a driver and a signaller on two threads (loom explores them
    //! all, under the C11 memory model).

    use std::sync::Arc as StdArc;
    use std::task::Waker;

    use futures::task::ArcWake;
    use loom::sync::atomic::{AtomicBool, Ordering};
    use loom::sync::Arc;

    use super::Signals;

    /// A waker that records that it was woken.
    struct Flag(AtomicBool);

    impl ArcWake for Flag {
        fn wake_by_ref(flag: &StdArc<Self>) {
            flag.0.store(true, Ordering::SeqCst);
        }
    }

    fn flag_waker() -> (StdArc<Flag>, Waker) {
        let flag = StdArc::new(Flag(AtomicBool::new(false)));
        (flag.clone(), futures::task::waker(flag))
    }

    /// The driver registers its waker, then looks (`seen`); another thread `signal`s.
    /// Either the driver saw the signal or it was woken: no signal is lost.
    fn seen_or_woken(admitted: bool, signal: fn(&Signals), seen: fn(&Signals) -> bool) {
        loom::model(move || {
            let signals = Arc::new(Signals::new(admitted));
            let (woken, waker) = flag_waker();
            let signaller = {
                let signals = signals.clone();
                loom::thread::spawn(move || signal(&signals))
            };
            signals.register(&waker);
            let saw = seen(&signals);
            signaller.join().unwrap();
            assert!(saw || woken.0.load(Ordering::SeqCst), "lost wake-up");
        });
    }

    #[test]
    fn a_cancellation_is_seen_or_wakes_the_driver() {
        seen_or_woken(true, Signals::cancel, Signals::is_cancelled);
    }

    #[test]
    fn children_done_is_taken_or_wakes_the_driver() {
        seen_or_woken(true, Signals::children_done, Signals::take_children_done);
    }

    #[test]
    fn an_admission_is_seen_or_wakes_the_driver() {
        // In the registry: the slot is given under the lock, the wake-up follows.
        seen_or_woken(
            false,
            |signals| {
                signals.set_admitted();
                signals.wake();
            },
            Signals::is_admitted,
        );
    }

    #[test]
    fn a_driver_that_sees_cancelled_also_sees_admitted_when_it_was_given_its_slot() {
        loom::model(|| {
            let signals = Arc::new(Signals::new(false));
            let registry = {
                let signals = signals.clone();
                // In the registry: a slot frees, this instance gets it, then a later
                // request cancels it.
                loom::thread::spawn(move || {
                    signals.set_admitted();
                    signals.wake();
                    signals.cancel();
                })
            };
            // The driver of an instance waiting for its slot.
            if signals.is_cancelled() {
                assert!(
                    signals.is_admitted(),
                    "started, but would skip its finally!"
                );
            }
            registry.join().unwrap();
        });
    }
}
