//! The tree of parents and children: a parent's children are an intrusive list (its
//! `children` ends, the children's sibling links), in joining order, so a child joins
//! and leaves in O(1). Removing an ended entry climbs to its parent, which may end too.

use std::sync::Arc;

use super::{Effects, Place, Registry};
use crate::ident::Ident;

impl Registry {
    /// `true` if `id` has live children; if so, its control is told when they are done.
    pub(crate) fn await_children(&mut self, id: u64) -> bool {
        match self.entries.get_mut(&id) {
            Some(entry) if !entry.children.is_empty() => {
                entry.wake_when_childless = true;
                true
            }
            _ => false,
        }
    }

    /// Removes a finished, childless entry: frees its slot, detaches it from its parent
    /// (which may in turn be removable, and so on up: a loop, not a recursion, so a long
    /// chain of finished parents cannot overflow the stack), forgets an empty per-key queue.
    pub(super) fn remove(&mut self, id: u64, fx: &mut Effects) {
        let mut next = Some(id);
        while let Some(id) = next.take() {
            let place = self.entries.get(&id).map(|entry| entry.place);
            self.unlink(id, fx);
            let Some(entry) = self.entries.remove(&id) else {
                return;
            };
            if let Some(state) = self.queue_mut(entry.queue) {
                state.members -= 1;
            }
            if place == Some(Place::Live) {
                self.fill_slots(entry.queue, fx);
            }
            self.forget_queue_if_empty(entry.queue, fx);
            fx.discard(entry.control);
            if self.entries.is_empty() {
                self.release_capacity();
            }
            let Some(parent_id) = entry.parent else {
                return;
            };
            self.remove_child(parent_id, entry.prev_sibling, entry.next_sibling);
            let Some(parent) = self.entries.get_mut(&parent_id) else {
                return;
            };
            if parent.children.is_empty() {
                if parent.done {
                    next = Some(parent_id);
                } else if parent.wake_when_childless {
                    parent.wake_when_childless = false;
                    fx.children_done.push(Arc::clone(&parent.control));
                }
            }
        }
    }

    /// Appends `child` to `parent`'s children.
    pub(super) fn add_child(&mut self, parent: u64, child: u64) {
        let Some(last) = self.entries.get_mut(&parent).map(|parent| {
            let last = parent.children.last.replace(child);
            parent.children.first.get_or_insert(child);
            last
        }) else {
            return;
        };
        if let Some(last) = last.and_then(|last| self.entries.get_mut(&last)) {
            last.next_sibling = Some(child);
        }
        if let Some(child) = self.entries.get_mut(&child) {
            child.prev_sibling = last;
            child.next_sibling = None;
        }
    }

    /// Unlinks a removed child, whose siblings were `prev` and `next`, from `parent`.
    fn remove_child(&mut self, parent: u64, prev: Option<u64>, next: Option<u64>) {
        match prev.and_then(|prev| self.entries.get_mut(&prev)) {
            Some(prev) => prev.next_sibling = next,
            None => {
                if let Some(parent) = self.entries.get_mut(&parent) {
                    parent.children.first = next;
                }
            }
        }
        match next.and_then(|next| self.entries.get_mut(&next)) {
            Some(next) => next.prev_sibling = prev,
            None => {
                if let Some(parent) = self.entries.get_mut(&parent) {
                    parent.children.last = prev;
                }
            }
        }
    }

    /// `id`'s live children, last first.
    pub(super) fn children_last_first(&self, id: u64) -> impl Iterator<Item = u64> + '_ {
        let last = self.entries.get(&id).and_then(|entry| entry.children.last);
        std::iter::successors(last, |child| {
            self.entries.get(child).and_then(|child| child.prev_sibling)
        })
    }

    /// The ident of `id`'s parent, if it has one (and both are live).
    pub(crate) fn parent_of(&self, id: u64) -> Option<Ident> {
        let parent = self.entries.get(&id)?.parent?;
        self.ident_of(parent)
    }
}
