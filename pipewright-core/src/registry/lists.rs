//! The intrusive lists of a queue (its `live` and `waiting` lists): entries are linked
//! through their `prev` and `next` ids, so joining, leaving and starting are O(1).
//! Unlinking a live entry gives its slot back to the queue's gauge (and has whoever waits
//! for room woken after the lock); linking and unlinking a waiting one keeps the gauge's
//! count of waiting entries.

use std::sync::Arc;

use super::queue_state::List;
use super::view::View;
use super::{Effects, Link, Place};

impl View<'_> {
    pub(super) fn link(&mut self, id: u64, place: Place) {
        let Some(queue) = self.entry(id).map(|entry| entry.queue) else {
            return;
        };
        let Some(state) = self.queue_mut(queue) else {
            return;
        };
        let list = match place {
            // The slot was taken before (`Gauge::try_take`).
            Place::Live => &mut state.live,
            Place::Waiting => {
                state.gauge.add_waiting();
                &mut state.waiting
            }
            Place::None => return,
        };
        let old_tail = list.tail;
        list.tail = Some(id);
        if list.head.is_none() {
            list.head = Some(id);
        }
        list.len += 1;
        if let Some(tail) = old_tail.and_then(|tail| self.entry_mut(tail)) {
            tail.next = id.into();
        }
        if let Some(entry) = self.entry_mut(id) {
            entry.place = place;
            entry.prev = old_tail.into();
            entry.next = Link::NONE;
        }
    }

    pub(super) fn unlink(&mut self, id: u64, fx: &mut Effects) {
        let Some(entry) = self.entry_mut(id) else {
            return;
        };
        let (place, prev, next) = (entry.place, entry.prev.get(), entry.next.get());
        entry.place = Place::None;
        entry.prev = Link::NONE;
        entry.next = Link::NONE;
        let queue = entry.queue;
        let Some(state) = self.queue_mut(queue) else {
            return;
        };
        let list: &mut List = match place {
            Place::Live => {
                // The caller starts waiting entries afterwards if it should.
                if state.gauge.free().room_wanted() {
                    fx.room_freed.push(Arc::clone(&state.gauge));
                }
                &mut state.live
            }
            Place::Waiting => {
                state.gauge.remove_waiting();
                &mut state.waiting
            }
            Place::None => return,
        };
        list.len -= 1;
        if list.head == Some(id) {
            list.head = next;
        }
        if list.tail == Some(id) {
            list.tail = prev;
        }
        if let Some(prev) = prev.and_then(|prev| self.entry_mut(prev)) {
            prev.next = next.into();
        }
        if let Some(next) = next.and_then(|next| self.entry_mut(next)) {
            next.prev = prev.into();
        }
    }
}
