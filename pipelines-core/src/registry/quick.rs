//! Slots for quick runs: instances that run inside `invoke` without an entry (see
//! `runtime/quick.rs`). A quick run holds its slot as a count (`QueueState::quick`, also
//! counted in `members`), not as a linked entry; it ends by giving the slot back with its
//! result, or becomes an ordinary entry (adoption) the moment it has to be seen.

use std::sync::Arc;

use super::{Admission, Effects, Join, QueueId, Registry};
use crate::behaviour::{Behaviour, Concurrency};
use crate::error::{Error, InvokeError};
use crate::hooks::EventKind;
use crate::ident::{Ident, Name};
use crate::introspection::{Kept, KeptResult};

/// The queue's answer to a quick run.
pub(crate) enum Reservation {
    /// A slot is held for it.
    Held(QueueId),
    /// A full dropping queue refused it.
    Refused,
    /// No free slot: it must join the queue as an ordinary instance (to wait, or to be
    /// refused).
    Full,
}

impl Registry {
    /// Holds a free slot of `queue` for a quick run, creating the queue if needed.
    /// `hint` is the queue's index if it was resolved before (a fixed queue keeps it).
    /// Restartable queues and `use_existing` never get here: others act on their live
    /// instances, which a quick run is not.
    pub(crate) fn reserve(
        &mut self,
        queue: &Name,
        hint: Option<QueueId>,
        concurrency: Concurrency,
        ident: &Ident,
    ) -> Result<Reservation, InvokeError> {
        let hinted = hint.filter(|&id| {
            self.queue(id)
                .is_some_and(|state| state.concurrency == concurrency)
        });
        let id = match hinted {
            Some(id) => id,
            None => self.queue_for(queue, false, concurrency, &ident.name)?,
        };
        let Some(state) = self.queue_mut(id) else {
            return Err(InvokeError::Stopped);
        };
        if state.has_free_slot() {
            state.quick += 1;
            state.members += 1;
            return Ok(Reservation::Held(id));
        }
        if concurrency.behaviour() == Behaviour::Dropping {
            self.emit(ident, id, EventKind::Dropped);
            return Ok(Reservation::Refused);
        }
        Ok(Reservation::Full)
    }

    /// Records how a quick run ended and gives its slot back. A result replaces the
    /// queue's last result in place when the queue's previous one was kept the same way
    /// and nobody else looks at it (no allocation): the old value is returned, to be
    /// dropped after the lock is released.
    pub(crate) fn release<V: Send + Sync + 'static>(
        &mut self,
        queue: QueueId,
        result: Result<V, Error>,
        fx: &mut Effects,
    ) -> Option<V> {
        let mut replaced = None;
        if let Some(state) = self.queue_mut(queue) {
            state.stats.performed += 1;
            match result {
                Ok(value) => {
                    let in_place = match &mut state.stats.last_result {
                        Some(KeptResult::Alone(kept)) => Arc::get_mut(kept)
                            .and_then(|kept| kept.as_any_mut().downcast_mut::<V>()),
                        _ => None,
                    };
                    match in_place {
                        Some(slot) => replaced = Some(std::mem::replace(slot, value)),
                        None => {
                            let kept = KeptResult::Alone(Arc::new(Kept(value)));
                            if let Some(old) = state.stats.last_result.replace(kept) {
                                fx.discard_result(old);
                            }
                        }
                    }
                }
                Err(error) => state.stats.last_error = Some(error),
            }
        }
        self.give_back(queue, fx);
        replaced
    }

    /// Turns a quick run into an ordinary started entry: it keeps the slot it holds.
    pub(crate) fn adopt(&mut self, queue: QueueId, join: Join<'_>) {
        if let Some(state) = self.queue_mut(queue) {
            state.quick -= 1;
            state.members -= 1;
        }
        self.insert(join, queue, Admission::Start);
    }

    /// Gives back a quick run's slot (it never became an entry), and starts the waiting
    /// instances that slot lets in.
    pub(crate) fn give_back(&mut self, queue: QueueId, fx: &mut Effects) {
        if let Some(state) = self.queue_mut(queue) {
            state.quick -= 1;
            state.members -= 1;
        }
        self.fill_slots(queue, fx);
        self.forget_queue_if_empty(queue, fx);
    }
}
