//! What the registry decided, carried out after the lock is released: control blocks to
//! signal, and references to drop.

use std::sync::Arc;

use super::Gauge;
use crate::control::ErasedControl;
use crate::ident::Ident;
use crate::introspection::{ErasedKept, KeptResult};

/// What the registry decided that must be carried out after the lock is released.
/// Nothing is allocated for the common cases (one cancellation, one admission).
#[derive(Default)]
pub(crate) struct Effects {
    pub(crate) cancel: Controls,
    pub(crate) admit: Controls,
    pub(crate) children_done: Controls,
    /// Parked roots that were admitted: spawned.
    pub(crate) start: Few<Box<dyn Parked>>,
    /// Parked roots that were cancelled: ended here.
    pub(crate) end: Few<Box<dyn Parked>>,
    /// Queues that gave a slot back while somebody waited for room: their waiters are
    /// woken (`gauge.rs`).
    pub(crate) room_freed: Few<Arc<Gauge>>,
    pub(super) garbage: Garbage,
}

/// The task of a root that waits for a slot, kept by the registry instead of spawned
/// (waiting instances are data, not tasks).
pub(crate) trait Parked: Send {
    /// Admitted: spawns it (or, with no executor left, runs it to its end here).
    fn start(self: Box<Self>);
    /// Cancelled before it was admitted: ends it on this thread (no step, no
    /// `finally!`), telling its caller.
    fn end(self: Box<Self>);
}

/// A few items: the first inline, more in a vector, so the common case of one allocates
/// nothing.
pub(crate) struct Few<T> {
    one: Option<T>,
    more: Vec<T>,
}

impl<T> Default for Few<T> {
    fn default() -> Self {
        Few {
            one: None,
            more: Vec::new(),
        }
    }
}

impl<T> Few<T> {
    pub(crate) fn push(&mut self, item: T) {
        match self.one {
            None => self.one = Some(item),
            Some(_) => self.more.push(item),
        }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.one.iter().chain(&self.more)
    }

    fn is_empty(&self) -> bool {
        self.one.is_none()
    }
}

impl<T> IntoIterator for Few<T> {
    type Item = T;
    type IntoIter = std::iter::Chain<std::option::IntoIter<T>, std::vec::IntoIter<T>>;

    fn into_iter(self) -> Self::IntoIter {
        self.one.into_iter().chain(self.more)
    }
}

/// Control blocks to signal (or drop).
pub(crate) type Controls = Few<Arc<dyn ErasedControl>>;

/// References to drop outside the lock: the last one drops a user value, whose `Drop`
/// may panic.
#[derive(Default)]
pub(crate) struct Garbage {
    references: Few<Trash>,
    /// The instance whose end let go of them, to report a panicking `Drop` for.
    pub(crate) on_behalf_of: Option<Ident>,
}

/// A reference that may be the last one to a user value.
// Never read: held only to be dropped where a panicking `Drop` can be contained.
#[allow(dead_code)]
pub(crate) enum Trash {
    Control(Arc<dyn ErasedControl>),
    Kept(Arc<dyn ErasedKept>),
}

impl Garbage {
    pub(crate) fn is_empty(&self) -> bool {
        self.references.is_empty()
    }

    /// The references, one at a time, so each drop can be contained on its own.
    pub(crate) fn into_references(self) -> impl Iterator<Item = Trash> {
        self.references.into_iter()
    }
}

impl Effects {
    /// Keeps `control` to be dropped after the lock is released, if this is (as far as
    /// can be told) its last reference; otherwise dropping it now only decrements a count.
    pub(super) fn discard(&mut self, control: Arc<dyn ErasedControl>) {
        if Arc::strong_count(&control) > 1 {
            return;
        }
        self.garbage.references.push(Trash::Control(control));
    }

    /// Keeps a queue's last result to be dropped after the lock is released.
    pub(super) fn discard_result(&mut self, kept: KeptResult) {
        match kept {
            KeptResult::InControl(control) => self.discard(control),
            KeptResult::Alone(kept) => {
                if Arc::strong_count(&kept) == 1 {
                    self.garbage.references.push(Trash::Kept(kept));
                }
            }
        }
    }

    /// `true` if there is nothing to carry out.
    pub(crate) fn is_empty(&self) -> bool {
        self.cancel.is_empty()
            && self.admit.is_empty()
            && self.children_done.is_empty()
            && self.start.is_empty()
            && self.end.is_empty()
            && self.room_freed.is_empty()
            && self.garbage.is_empty()
    }

    /// Signals what was decided, and hands back what is left to drop. Called without the
    /// lock.
    pub(crate) fn apply(self) -> Garbage {
        for control in self.cancel.iter() {
            control.cancel();
        }
        for control in self.admit.iter() {
            control.wake();
        }
        for control in self.children_done.iter() {
            control.children_done();
        }
        // After the signals: a parked root ends by seeing its cancellation.
        for parked in self.start {
            parked.start();
        }
        for parked in self.end {
            parked.end();
        }
        for gauge in self.room_freed {
            gauge.wake_room_waiters();
        }
        self.garbage
    }
}
