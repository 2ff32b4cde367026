//! Cancellation ([SEMANTICS 4]): which instances a cancellation reaches, marking them,
//! and the slots that frees; stopping the runtime cancels whole trees the same way.
//!
//! [SEMANTICS 4]: crate::semantics#4-cancellation

use std::sync::Arc;

use super::shard::CancelScratch;
use super::view::View;
use super::{Effects, Entry, Place, QueueId};
use crate::hooks::EventKind;
use crate::introspection::InstanceState;
use crate::queue::FastSet;

impl View<'_> {
    /// Cancels the tree `id` belongs to: climbs through non-detached parents to the top,
    /// then marks the top and all its descendants, children first. Returns `false` if `id`
    /// is not live.
    pub(super) fn cancel(&mut self, id: u64, fx: &mut Effects) -> bool {
        if !self.contains(id) {
            return false;
        }
        self.cancel_tree(id, fx);
        true
    }

    pub(super) fn cancel_tree(&mut self, id: u64, fx: &mut Effects) {
        let mut top = id;
        while let Some(entry) = self.entry(top) {
            match self.live_parent(entry) {
                Some(parent) if !entry.detached => top = parent,
                _ => break,
            }
        }
        self.cancel_trees(&[top], fx);
    }

    /// Marks every tree of `tops` cancelled (each children first), then starts waiting
    /// instances in the slots that freed. Filling only after the whole batch is marked
    /// means no instance the batch cancels is started on the way.
    pub(super) fn cancel_trees(&mut self, tops: &[u64], fx: &mut Effects) {
        // Taken out of `self` while the batch marks entries; put back, emptied, after.
        let mut scratch = self.take_scratch();
        for &top in tops {
            self.post_order(top, &mut scratch);
            for &id in &scratch.order {
                scratch.freed.extend(self.mark_cancelled(id, true, fx));
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
        self.put_scratch(scratch);
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
        if let Some(queue) = self.mark_cancelled(id, false, fx) {
            self.fill_slots(queue, fx);
        }
    }

    /// Marks one instance cancelled and takes it out of its queue; returns the queue if
    /// that freed a slot (the caller starts waiting instances once its batch is done).
    /// `announce` tells the watcher (`Cancelling`): a cancellation, not a withdrawal
    /// (which is followed at once by the instance's end).
    pub(super) fn mark_cancelled(
        &mut self,
        id: u64,
        announce: bool,
        fx: &mut Effects,
    ) -> Option<QueueId> {
        let logging = self.log().is_some();
        let entry = self.entry_mut(id)?;
        if entry.state == InstanceState::Cancelling {
            return None;
        }
        entry.state = InstanceState::Cancelling;
        if announce && logging {
            let (ident, queue) = (entry.ident.clone(), entry.queue);
            self.emit(&ident, queue, EventKind::Cancelling);
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
        // Roots in arrival order (popped from the end: newest pushed first), whatever
        // shards they are in.
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
        self.cancel_trees(&tops, fx);
        tops.len()
    }

    /// The entry's parent, if that is still live.
    pub(super) fn live_parent(&self, entry: &Entry) -> Option<u64> {
        entry.parent.filter(|parent| self.contains(*parent))
    }
}
