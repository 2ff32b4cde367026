//! The tree of parents and children: a parent's children are an intrusive list (its
//! `children` ends, the children's sibling links), in joining order, so a child joins
//! and leaves in O(1). Removing an ended entry climbs to its parent, which may end too.

use std::sync::Arc;

use super::view::View;
use super::{Effects, Link, Place};
use crate::ident::Ident;

impl<'a> View<'a> {
    /// Removes a finished, childless entry: frees its slot, detaches it from its parent
    /// (which may in turn be removable, and so on up: a loop, not a recursion, so a long
    /// chain of finished parents cannot overflow the stack), forgets an empty per-key queue.
    pub(super) fn remove(&mut self, id: u64, fx: &mut Effects) {
        let mut next = Some(id);
        while let Some(id) = next.take() {
            let place = self.entry(id).map(|entry| entry.place);
            self.unlink(id, fx);
            let Some(entry) = self.remove_entry(id) else {
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
            let Some(parent_id) = entry.parent.get() else {
                return;
            };
            self.remove_child(
                parent_id,
                entry.prev_sibling.get(),
                entry.next_sibling.get(),
            );
            let Some(parent) = self.entry_mut(parent_id) else {
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
        let Some(last) = self.entry_mut(parent).map(|parent| {
            let last = std::mem::replace(&mut parent.children.last, child.into()).get();
            if parent.children.first.get().is_none() {
                parent.children.first = child.into();
            }
            last
        }) else {
            return;
        };
        if let Some(last) = last.and_then(|last| self.entry_mut(last)) {
            last.next_sibling = child.into();
        }
        if let Some(child) = self.entry_mut(child) {
            child.prev_sibling = last.into();
            child.next_sibling = Link::NONE;
        }
    }

    /// Unlinks a removed child, whose siblings were `prev` and `next`, from `parent`.
    pub(super) fn remove_child(&mut self, parent: u64, prev: Option<u64>, next: Option<u64>) {
        match prev.and_then(|prev| self.entry_mut(prev)) {
            Some(prev) => prev.next_sibling = next.into(),
            None => {
                if let Some(parent) = self.entry_mut(parent) {
                    parent.children.first = next.into();
                }
            }
        }
        match next.and_then(|next| self.entry_mut(next)) {
            Some(next) => next.prev_sibling = prev.into(),
            None => {
                if let Some(parent) = self.entry_mut(parent) {
                    parent.children.last = prev.into();
                }
            }
        }
    }

    /// `id`'s live children, last first.
    pub(super) fn children_last_first<'s>(&'s self, id: u64) -> ChildrenLastFirst<'s, 'a> {
        ChildrenLastFirst {
            view: self,
            next: self.entry(id).and_then(|entry| entry.children.last.get()),
        }
    }

    /// The ident of `id`'s parent, if it has one (and both are live).
    pub(super) fn parent_of(&self, id: u64) -> Option<Ident> {
        let parent = self.entry(id)?.parent.get()?;
        self.ident_of(parent)
    }
}

/// An entry's live children, last first (following the sibling links back).
pub(super) struct ChildrenLastFirst<'s, 'a> {
    view: &'s View<'a>,
    next: Option<u64>,
}

impl Iterator for ChildrenLastFirst<'_, '_> {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        let child = self.next?;
        self.next = self
            .view
            .entry(child)
            .and_then(|entry| entry.prev_sibling.get());
        Some(child)
    }
}
