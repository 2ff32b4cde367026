//! Admission ([SEMANTICS 3.2]): joining a queue, starting waiting instances as slots
//! free, state changes, and recording how an instance's own steps ended.
//!
//! [SEMANTICS 3.2]: crate::semantics#32-behaviours

use std::sync::Arc;

use super::shard::{shrink_map, KEPT_INDEX};
use super::view::View;
use super::{
    Admission, Effects, Entry, Gauge, Join, Link, Parked, Place, QueueId, Recorded, Siblings,
};
use crate::behaviour::{Concurrency, WhenFull};
use crate::cancel_reason::{CancelReason, Cancellation};
use crate::control::ErasedControl;
use crate::error::InvokeError;
use crate::events::hooks::{Event, EventKind};
use crate::ident::{Ident, Name};
use crate::introspection::{InstanceState, KeptResult};

impl View<'_> {
    /// A full dropping queue refuses before anything is built (see
    /// [`Registry::refuses_at_once`](super::Registry::refuses_at_once)).
    pub(super) fn refuses_at_once(
        &mut self,
        queue: &Name,
        concurrency: Concurrency,
        ident: &Ident,
    ) -> bool {
        let Some(state) = self.queue_named(queue) else {
            return false;
        };
        let id = state.gauge.id;
        let refuses = state.concurrency == concurrency
            && concurrency.behaviour().refuses_when_full()
            && !state.gauge.has_free_slot();
        if refuses {
            self.emit(ident, id, EventKind::Dropped);
        }
        refuses
    }

    /// Decides what happens to a new instance and records it.
    pub(super) fn join(
        &mut self,
        join: Join<'_>,
        fx: &mut Effects,
    ) -> Result<Admission, InvokeError> {
        if let (true, Some(parent)) = (join.unwaited, join.parent) {
            // Under the parent's lock: a cancellation of the parent either came first and
            // refuses this child, or comes after and reaches it.
            let parent_goes_on = self
                .entry(parent.id)
                .is_some_and(|entry| entry.state != InstanceState::Cancelling);
            if !parent_goes_on {
                return Ok(Admission::ParentEnded);
            }
        }
        let queue = self.queue_for(join.queue, join.keyed, join.concurrency, &join.ident.name)?;
        let Some(state) = self.queue(queue) else {
            return Err(InvokeError::Stopped);
        };
        let gauge = Arc::clone(&state.gauge);
        // Nobody overtakes a waiting instance (a slot a quick run just gave back is
        // theirs, see `gauge.rs`).
        let nobody_waits = state.waiting.head.is_none();
        // The behaviour's meaning, `Behaviour::when_full`, decides what a full queue does.
        let when_full = join.concurrency.behaviour().when_full();
        let admission = match when_full {
            WhenFull::CancelOldest => {
                self.make_room(queue, &gauge, fx);
                Admission::Start
            }
            _ if nobody_waits && gauge.try_take() => Admission::Start,
            // Unreachable (no limit); starting is what the behaviour asks for.
            WhenFull::Start => {
                gauge.take_over_limit();
                Admission::Start
            }
            WhenFull::Refuse => Admission::Drop,
            WhenFull::Wait | WhenFull::ReplaceWaiting => Admission::Wait,
        };
        if admission == Admission::Drop {
            self.emit(join.ident, queue, EventKind::Dropped);
            self.forget_queue_if_empty(queue, fx);
            return Ok(admission);
        }
        if when_full == WhenFull::ReplaceWaiting && admission == Admission::Wait {
            while let Some(waiting) = self.queue(queue).and_then(|state| state.waiting.head) {
                self.cancel_tree(waiting, CancelReason::Replaced, fx);
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
    pub(super) fn make_room(&mut self, queue: QueueId, gauge: &Gauge, fx: &mut Effects) {
        while !gauge.try_take() {
            let Some(oldest) = self.queue(queue).and_then(|state| state.live.head) else {
                // Cannot happen (a restartable queue has no quick runs, so every slot is a
                // live entry); starting over the limit is what the behaviour asks for.
                gauge.take_over_limit();
                return;
            };
            self.cancel_tree(oldest, CancelReason::Replaced, fx);
            let still_live = self
                .entry(oldest)
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
    pub(super) fn insert(&mut self, join: Join<'_>, queue: QueueId, admission: Admission) {
        let id = join.at.id;
        let parent = join.parent.map(|parent| parent.id);
        self.insert_entry(Entry {
            ident: join.ident.clone(),
            queue,
            control: join.control,
            parent: parent.into(),
            detached: join.detached,
            indexed: false,
            children: Siblings::default(),
            prev_sibling: Link::NONE,
            next_sibling: Link::NONE,
            state: InstanceState::Waiting,
            place: Place::None,
            prev: Link::NONE,
            next: Link::NONE,
            done: false,
            started: false,
            cancel_on_shutdown: join.cancel_on_shutdown,
            existing: None,
            pipeline_key: join.pipeline_key,
            wake_when_childless: false,
            parked: None,
        });
        if let Some(parent) = parent {
            // Both ends of the link go in the tree's index: only wide views join children.
            self.index(id);
            self.index(parent);
            self.add_child(parent, id);
        }
        if let Some(state) = self.queue_mut(queue) {
            state.members += 1;
        }
        if let (Some(hash), Some(state)) = (join.existing, self.queue_mut(queue)) {
            state.existing.entry(hash).or_default().push(id);
            state.generation += 1;
            if let Some(entry) = self.entry_mut(id) {
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
    pub(super) fn start(&mut self, id: u64) {
        self.link(id, Place::Live);
        let logging = self.log().is_some();
        if let Some(entry) = self.entry_mut(id) {
            entry.started = true;
            entry.state = InstanceState::Running;
            if logging {
                let (ident, queue) = (entry.ident.clone(), entry.queue);
                self.emit(&ident, queue, EventKind::Started);
            }
        }
    }

    /// Starts waiting instances of `queue` while it has free slots.
    pub(super) fn fill_slots(&mut self, queue: QueueId, fx: &mut Effects) {
        while let Some(next) = self
            .queue(queue)
            .and_then(|state| state.waiting.head.filter(|_| state.gauge.try_take()))
        {
            self.unlink(next, fx);
            self.start(next);
            if let Some(entry) = self.entry_mut(next) {
                entry.control.set_admitted();
                match entry.parked.take() {
                    Some(parked) => fx.start.push(parked),
                    None => fx.admit.push(Arc::clone(&entry.control)),
                }
            }
        }
    }

    pub(super) fn leave_existing(&mut self, id: u64) {
        let Some(entry) = self.entry_mut(id) else {
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
                    shrink_map(&mut state.existing, KEPT_INDEX);
                }
            }
            state.generation += 1;
        }
    }

    /// Keeps `parked` (the task of root `id`, which waits for a slot) until `id` is
    /// admitted or cancelled. Handed back if that already happened (or `id` is gone):
    /// the caller spawns it as it is.
    pub(super) fn park(&mut self, id: u64, parked: Box<dyn Parked>) -> Result<(), Box<dyn Parked>> {
        match self.entry_mut(id) {
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
    pub(super) fn set_state(&mut self, id: u64, state: InstanceState) {
        let logging = self.log().is_some();
        let Some(entry) = self.entry_mut(id) else {
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
        if logging {
            let (ident, queue) = (entry.ident.clone(), entry.queue);
            self.emit(&ident, queue, kind);
        }
    }

    /// Records the end of an instance's own steps. `result` is its control block when it
    /// finished with a value (it holds the value for the queue's statistics).
    ///
    /// Returns the cancellation if a value arrived after one was accepted (the instance
    /// was already `Cancelling`): it is recorded, and must be reported, as that
    /// cancellation, so that [`cancel`](View::cancel) answering "yes" is never followed
    /// by the caller receiving the value.
    pub(super) fn finish(
        &mut self,
        id: u64,
        mut ending: Recorded,
        mut result: Option<Arc<dyn ErasedControl>>,
        fx: &mut Effects,
    ) -> Option<Cancellation> {
        let logging = self.log().is_some();
        let entry = self.entry_mut(id)?;
        let cancelled_first = (matches!(ending, Recorded::Finished)
            && entry.state == InstanceState::Cancelling)
            .then(|| entry.control.cancellation());
        if let Some(cause) = cancelled_first {
            ending = Recorded::Cancelled(cause);
            if let Some(result) = result.take() {
                fx.discard(result);
            }
        }
        entry.done = true;
        let started = entry.started;
        let queue = entry.queue;
        let ident =
            (logging || matches!(ending, Recorded::Cancelled(_))).then(|| entry.ident.clone());
        let waits_for_children = !entry.children.is_empty();
        self.leave_existing(id);
        if let Some(state) = self.queue(queue) {
            let mut stats = state.gauge.stats();
            if started {
                stats.performed += 1;
            }
            match &ending {
                Recorded::Finished => {
                    let kept = result.map(KeptResult::InControl);
                    if let Some(old) = std::mem::replace(&mut stats.last_result, kept) {
                        fx.discard_result(old);
                    }
                }
                Recorded::Failed(error) => stats.last_error = Some(error.clone()),
                Recorded::Cancelled(_) => stats.last_cancelled.clone_from(&ident),
            }
        }
        if !fx.garbage.is_empty() && fx.garbage.on_behalf_of.is_none() {
            fx.garbage.on_behalf_of = self.ident_of(id);
        }
        let kind = match ending {
            Recorded::Finished => EventKind::Finished,
            Recorded::Failed(error) => EventKind::Failed(error),
            Recorded::Cancelled(cause) => EventKind::Cancelled {
                reason: cause.reason,
                by_parent: cause.by_parent,
            },
        };
        if let Some(ident) = &ident {
            self.emit(ident, queue, kind);
        }
        if waits_for_children {
            if let Some(entry) = self.entry_mut(id) {
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

    pub(super) fn ident_of(&self, id: u64) -> Option<Ident> {
        self.entry(id).map(|entry| entry.ident.clone())
    }

    // ---- events ----------------------------------------------------------------------

    /// Records an event about `ident` in `queue`, if events are recorded.
    pub(super) fn emit(&self, ident: &Ident, queue: QueueId, kind: EventKind) {
        let (Some(log), Some(state)) = (self.log(), self.queue(queue)) else {
            return;
        };
        log.record(Event {
            ident: ident.clone(),
            queue: state.name.clone(),
            kind,
        });
    }
}
