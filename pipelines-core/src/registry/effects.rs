//! What the registry decided, carried out after the lock is released: control blocks to
//! signal, and references to drop.

use std::sync::Arc;

use crate::cancellation::ErasedControl;
use crate::ident::Ident;

/// What the registry decided that must be carried out after the lock is released.
/// Nothing is allocated for the common cases (one cancellation, one admission).
#[derive(Default)]
pub(crate) struct Effects {
    pub(crate) cancel: Controls,
    pub(crate) admit: Controls,
    pub(crate) children_done: Controls,
    pub(super) garbage: Garbage,
}

/// Control blocks to signal (or drop): the first inline, more in a vector, so the common
/// case of one allocates nothing.
#[derive(Default)]
pub(crate) struct Controls {
    one: Option<Arc<dyn ErasedControl>>,
    more: Vec<Arc<dyn ErasedControl>>,
}

impl Controls {
    pub(crate) fn push(&mut self, control: Arc<dyn ErasedControl>) {
        match self.one {
            None => self.one = Some(control),
            Some(_) => self.more.push(control),
        }
    }

    fn iter(&self) -> impl Iterator<Item = &Arc<dyn ErasedControl>> {
        self.one.iter().chain(&self.more)
    }
}

/// References to drop outside the lock: the last one drops a user value, whose `Drop`
/// may panic.
#[derive(Default)]
pub(crate) struct Garbage {
    references: Controls,
    /// The instance whose end let go of them, to report a panicking `Drop` for.
    pub(crate) on_behalf_of: Option<Ident>,
}

impl Garbage {
    pub(crate) fn is_empty(&self) -> bool {
        self.references.one.is_none()
    }

    /// The references, one at a time, so each drop can be contained on its own.
    pub(crate) fn into_references(self) -> impl Iterator<Item = Arc<dyn ErasedControl>> {
        self.references.one.into_iter().chain(self.references.more)
    }
}

impl Effects {
    /// Keeps `control` to be dropped after the lock is released, if this is (as far as
    /// can be told) its last reference; otherwise dropping it now only decrements a count.
    pub(super) fn discard(&mut self, control: Arc<dyn ErasedControl>) {
        if Arc::strong_count(&control) > 1 {
            return;
        }
        self.garbage.references.push(control);
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
        self.garbage
    }
}
