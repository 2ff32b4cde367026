//! Cancellation ([SEMANTICS 4]): which instances a cancellation reaches, marking them,
//! and the slots that frees; stopping the runtime cancels whole trees the same way.
//!
//! [SEMANTICS 4]: crate::semantics#4-cancellation

use std::sync::Arc;

use super::shard::CancelScratch;
use super::view::View;
use super::{Effects, Entry, Place, QueueId};
use crate::cancel_reason::{CancelReason, Cancellation};
use crate::events::hooks::EventKind;
use crate::introspection::InstanceState;
use crate::queue::FastSet;

impl View<'_> {
    /// Cancels the tree `id` belongs to: climbs through non-detached parents to the top,
    /// then marks the top and all its descendants, children first. Returns `false` if `id`
    /// is not live.
    pub(super) fn cancel(&mut self, id: u64, reason: CancelReason, fx: &mut Effects) -> bool {
        if !self.contains(id) {
            return false;
        }
        self.cancel_tree(id, reason, fx);
        true
    }

    /// Cancels the tree `id` belongs to. `id` and the parents it climbs through get
    /// `reason` directly; the rest of the tree gets it by its parent (`cancel_reason.rs`).
    pub(super) fn cancel_tree(&mut self, id: u64, reason: CancelReason, fx: &mut Effects) {
        // Taken out of `self` while the batch marks entries; put back, emptied, after.
        let mut scratch = self.take_scratch();
        scratch.path.push(id);
        let mut top = id;
        while let Some(entry) = self.entry(top) {
            match self.live_parent(entry) {
                Some(parent) if !entry.detached => {
                    top = parent;
                    scratch.path.push(parent);
                }
                _ => break,
            }
        }
        self.mark_trees(&[top], Cancellation::direct(reason), &mut scratch, fx);
        self.put_scratch(scratch);
    }

    /// Marks every tree of `tops` cancelled, each top with `cause` and the rest of each
    /// tree with its reason by their parent (see [`mark_trees`](View::mark_trees)).
    pub(super) fn cancel_trees(&mut self, tops: &[u64], cause: Cancellation, fx: &mut Effects) {
        let mut scratch = self.take_scratch();
        self.mark_trees(tops, cause, &mut scratch, fx);
        self.put_scratch(scratch);
    }

    /// Marks every tree of `tops` cancelled (each children first), then starts waiting
    /// instances in the slots that freed. Filling only after the whole batch is marked
    /// means no instance the batch cancels is started on the way. The tops and
    /// `scratch.path` get `cause`, every other instance its reason by its parent.
    fn mark_trees(
        &mut self,
        tops: &[u64],
        cause: Cancellation,
        scratch: &mut CancelScratch,
        fx: &mut Effects,
    ) {
        for &top in tops {
            self.post_order(top, scratch);
            for &id in &scratch.order {
                let cause = if id == top || scratch.path.contains(&id) {
                    cause
                } else {
                    Cancellation::by_parent(cause.reason)
                };
                scratch
                    .freed
                    .extend(self.mark_cancelled(id, Some(cause), fx));
            }
        }
        // In the order they freed, once each; a set, not `Vec::contains`: `stop` may
        // free thousands of per-key queues.
        if scratch.freed.len() > 1 {
            let mut seen = FastSet::default();
            scratch.freed.retain(|queue| seen.insert(*queue));
        }
        for &queue in &scratch.freed {
            self.fill_slots(queue, fx);
        }
    }

    /// Fills `scratch.order` with `top` and its descendants, children before their
    /// parents (an explicit stack of (id, children visited), no recursion).
    pub(super) fn post_order(&self, top: u64, scratch: &mut CancelScratch) {
        scratch.order.clear();
        scratch.stack.push((top, false));
        while let Some((id, visited)) = scratch.stack.pop() {
            if visited {
                scratch.order.push(id);
                continue;
            }
            scratch.stack.push((id, true));
            // Pushed last first, so the first child is visited first.
            scratch
                .stack
                .extend(self.children_last_first(id).map(|child| (child, false)));
        }
    }

    /// Takes `id` out of its queue as if cancelled, without touching its tree.
    pub(super) fn withdraw(&mut self, id: u64, fx: &mut Effects) {
        if let Some(queue) = self.mark_cancelled(id, None, fx) {
            self.fill_slots(queue, fx);
        }
    }

    /// Marks one instance cancelled and takes it out of its queue; returns the queue if
    /// that freed a slot (the caller starts waiting instances once its batch is done).
    /// A cancellation has a `reason`, which the control block keeps for the instance's
    /// driver and the watcher is told (`Cancelling`); a withdrawal has none (the
    /// instance's end follows at once, and says why itself).
    pub(super) fn mark_cancelled(
        &mut self,
        id: u64,
        cause: Option<Cancellation>,
        fx: &mut Effects,
    ) -> Option<QueueId> {
        let logging = self.log().is_some();
        let entry = self.entry_mut(id)?;
        if entry.state == InstanceState::Cancelling {
            return None;
        }
        entry.state = InstanceState::Cancelling;
        if let Some(cause) = cause {
            // Under the lock, before the flag (set after it is released): a driver that
            // sees the flag finds the reason.
            entry.control.set_cancel_reason(cause);
            if logging {
                let (ident, queue) = (entry.ident.clone(), entry.queue);
                let kind = EventKind::Cancelling {
                    reason: cause.reason,
                    by_parent: cause.by_parent,
                };
                self.emit(&ident, queue, kind);
            }
        }
        let entry = self.entry_mut(id)?;
        // An instance whose own steps are over (waiting for its children) has nothing
        // left to stop; it still gives up its slot at once.
        if !entry.done {
            fx.cancel.push(Arc::clone(&entry.control));
        }
        // A parked root never ran: it ends on the canceller's thread, no task spawned.
        if let Some(parked) = entry.parked.take() {
            fx.end.push(parked);
        }
        let (place, queue) = (entry.place, entry.queue);
        self.leave_existing(id);
        // Cancelling frees the slot at once.
        self.unlink(id, fx);
        (place == Place::Live).then_some(queue)
    }

    /// Cancels every tree whose top is `cancel_on_shutdown`. A tree's top is a root or a
    /// detached child (cancellation does not climb past it). One walk down from the roots:
    /// a cancelled top takes its whole subtree with it, so its descendants are not visited
    /// again as tops of their own (a chain of detached children stays linear).
    /// `everything`: the instances `stop` spares too (`cancel_on_shutdown(false)`, and
    /// what they run), for a shutdown past its deadline. Returns how many trees it
    /// cancelled, all marked before any slot is refilled.
    pub(super) fn stop(&mut self, everything: bool, fx: &mut Effects) -> usize {
        let mut tops = Vec::new();
        // (id, whether it is a tree's top); below the roots, only detached children are.
        // Roots by id, whatever shards they are in (popped from the end: newest pushed
        // first): arrival order among one thread's invocations (`runtime/ids.rs`).
        let mut stack: Vec<(u64, bool)> = self
            .entries()
            .into_iter()
            .filter(|entry| self.live_parent(entry).is_none())
            .map(|entry| (entry.ident.id, true))
            .collect();
        stack.sort_unstable_by_key(|&(id, _)| std::cmp::Reverse(id));
        while let Some((id, is_top)) = stack.pop() {
            let Some(entry) = self.entry(id) else {
                continue;
            };
            if is_top && (entry.cancel_on_shutdown || everything) {
                tops.push(id);
            } else {
                stack.extend(self.children_last_first(id).filter_map(|child| {
                    let detached = self.entry(child)?.detached;
                    Some((child, detached))
                }));
            }
        }
        let reason = if everything {
            CancelReason::ShutdownDeadline
        } else {
            CancelReason::Stopped
        };
        self.cancel_trees(&tops, Cancellation::direct(reason), fx);
        tops.len()
    }

    /// The entry's parent, if that is still live.
    pub(super) fn live_parent(&self, entry: &Entry) -> Option<u64> {
        entry.parent.get().filter(|parent| self.contains(*parent))
    }
}
