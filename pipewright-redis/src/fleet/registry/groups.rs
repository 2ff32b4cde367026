//! The renewal groups: a member's ids in one queue (with one lease ttl), renewed by one
//! call every third of the ttl (the leases by id, the waiting places together); and what
//! a renewal's reply, or the lack of one, does to each id.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use pipewright::CancelReason;
use tokio::time::Instant;

use super::{Cancellation, Entry, Registry, Signal, State};
use crate::fleet::scripts::{Keys, Standing};

/// The most ids one renewal call carries.
const BATCH: usize = 1_000;

pub(super) type GroupKey = (Arc<Keys>, Duration);

/// One queue's ids (with one ttl) that the member renews together.
pub(super) struct Group {
    numbers: HashSet<u64>,
    /// The next regular renewal (every third of the ttl).
    pub(super) due: Instant,
    /// A look just after the first lease in the queue expires (a crashed holder's slot
    /// is handed on then, and nobody would say so).
    pub(super) look: Option<Instant>,
    /// Renewal calls on the wire.
    in_flight: usize,
    /// The earliest moment one of its ids may have to be cancelled or failed.
    deadline: Instant,
    /// When Redis last renewed the member's waiting places in the queue (all at once).
    pub(super) places: Instant,
    /// The next call looks where every id stands (messages may have been lost).
    pub(super) full: bool,
    /// The last renewal error, for waiters that give up.
    error: Option<String>,
}

/// One renewal call: a queue, a ttl and up to [`BATCH`] ids (the holders, or every id
/// for a full look), each with its generation.
pub(crate) struct Batch {
    key: GroupKey,
    pub(crate) ids: Vec<(u64, u32, Arc<str>)>,
    pub(crate) sent: Instant,
    /// The member has waiters in the queue: their places are renewed.
    pub(crate) waiters: bool,
    /// A full look: every id is asked about.
    pub(crate) full: bool,
}

impl Batch {
    pub(crate) fn keys(&self) -> &Keys {
        &self.key.0
    }

    pub(crate) fn ttl(&self) -> Duration {
        self.key.1
    }
}

/// What a renewal reply says: the first expiry in the queue (ms), and each id's standing.
pub(crate) type Renewed = (Option<u64>, Vec<Standing>);

/// What the renewer must do now: calls to send, instances to cancel, and when to wake.
pub(crate) struct Due {
    pub(crate) batches: Vec<Batch>,
    pub(crate) cancels: Vec<Cancellation>,
    pub(crate) wake: Option<Instant>,
}

impl Registry {
    /// Adds `number` to its group (created if needed); the group's key.
    pub(super) fn group(&mut self, number: u64) -> Option<GroupKey> {
        let entry = self.entries.get_mut(&number)?;
        let key = (Arc::clone(&entry.keys), entry.ttl);
        let deadline = entry.deadline(entry.confirmed);
        let due = entry.confirmed + entry.ttl / 3;
        let join = !entry.grouped;
        entry.grouped = true;
        let group = self.groups.entry(key.clone()).or_insert_with(|| Group {
            numbers: HashSet::new(),
            due,
            look: None,
            in_flight: 0,
            deadline,
            places: entry.confirmed,
            full: false,
            error: None,
        });
        if join {
            group.numbers.insert(number);
        }
        group.deadline = group.deadline.min(deadline);
        Some(key)
    }

    pub(super) fn ungroup(&mut self, number: u64, entry: &Entry) {
        if !entry.grouped {
            return;
        }
        let key = (Arc::clone(&entry.keys), entry.ttl);
        if let Some(group) = self.groups.get_mut(&key) {
            group.numbers.remove(&number);
            if group.numbers.is_empty() && group.in_flight == 0 {
                self.groups.remove(&key);
            }
        }
    }

    /// Whether the group at `key` needs the renewer sooner than it planned to wake.
    pub(super) fn needs_wake(&mut self, key: Option<GroupKey>) -> bool {
        let Some(group) = key.and_then(|key| self.groups.get(&key)) else {
            return false;
        };
        let at = group.next_wake();
        match self.wake {
            Some(wake) if wake <= at => false,
            _ => {
                self.wake = Some(at);
                true
            }
        }
    }

    /// The renewer's turn: renewal calls for the groups due (or due soon: a sixth of
    /// their ttl early, so that groups share wake-ups), the holders to cancel and the
    /// waiters to fail for want of confirmation, and when to wake next.
    pub(crate) fn due(&mut self, now: Instant) -> Due {
        let mut due = Due {
            batches: Vec::new(),
            cancels: Vec::new(),
            wake: None,
        };
        let entries = &mut self.entries;
        for (key, group) in &mut self.groups {
            if group.deadline <= now {
                group.deadline = expire(entries, group, now, &mut due.cancels);
            }
            let early = now + key.1 / 6;
            let looked = group.look.is_some_and(|look| look <= now);
            if group.in_flight == 0 && !group.numbers.is_empty() && (group.due <= early || looked) {
                group.look = None;
                let full = std::mem::take(&mut group.full);
                let mut waiters = false;
                let mut ids: Vec<(u64, u32, Arc<str>)> = Vec::new();
                for number in &group.numbers {
                    if let Some(entry) = entries.get(number) {
                        let holds = entry.holds();
                        waiters |= !holds;
                        // Waiters are renewed together; asked about in a full look only.
                        if holds || full {
                            ids.push((*number, entry.generation, Arc::clone(&entry.id)));
                        }
                    }
                }
                loop {
                    let rest = ids.split_off(ids.len().min(BATCH));
                    due.batches.push(Batch {
                        key: key.clone(),
                        ids,
                        sent: now,
                        waiters,
                        full,
                    });
                    group.in_flight += 1;
                    if rest.is_empty() {
                        break;
                    }
                    ids = rest;
                }
                // Until the reply says otherwise; retried then if it failed.
                group.due = now + key.1 / 3;
            }
            let wake = group.next_wake();
            due.wake = Some(due.wake.map_or(wake, |earlier| earlier.min(wake)));
        }
        self.groups
            .retain(|_, group| !group.numbers.is_empty() || group.in_flight > 0);
        self.wake = due.wake;
        due
    }

    /// A renewal call's reply (or error): confirmations, and what the ids it found
    /// changed are told. Returns the holders to cancel.
    pub(crate) fn apply(
        &mut self,
        batch: Batch,
        reply: Result<Renewed, String>,
    ) -> Vec<Cancellation> {
        let mut cancels = Vec::new();
        let now = Instant::now();
        let Some(group) = self.groups.get_mut(&batch.key) else {
            return cancels;
        };
        group.in_flight = group.in_flight.saturating_sub(1);
        let (next_expiry, standings) = match reply {
            Ok(renewed) => renewed,
            Err(error) => {
                // Try again soon (the connection reconnects by itself), looking at every
                // id: a message may be lost meanwhile.
                group.error = Some(error);
                group.full |= batch.full;
                group.due = now + (batch.key.1 / 10).max(Duration::from_millis(1));
                return cancels;
            }
        };
        group.error = None;
        if batch.waiters {
            group.places = group.places.max(batch.sent);
        }
        if let Some(ms) = next_expiry {
            let look = now + Duration::from_millis(ms + 2);
            if look < group.due {
                group.look = Some(look);
            }
        }
        let mut gone = Vec::new();
        for ((number, generation, _), standing) in batch.ids.iter().zip(standings) {
            let Some(entry) = self.entries.get_mut(number) else {
                continue;
            };
            if entry.generation != *generation {
                continue;
            }
            match (&mut entry.state, standing) {
                (State::Holding { .. }, Standing::Held(_)) => {
                    entry.confirmed = entry.confirmed.max(batch.sent);
                }
                // Another member's newer instance asked for the slot (restartable).
                (State::Holding { cancel, .. }, Standing::Cancelling(_)) => {
                    entry.confirmed = entry.confirmed.max(batch.sent);
                    cancels.extend(cancel.take().map(|cancel| (cancel, CancelReason::Replaced)));
                }
                (State::Holding { token, cancel }, Standing::Gone | Standing::Waiting) => {
                    cancels.extend(
                        cancel
                            .take()
                            .map(|cancel| (cancel, CancelReason::LeaseLost)),
                    );
                    entry.state = State::Lost { token: *token };
                    entry.generation = entry.generation.wrapping_add(1);
                    gone.push(*number);
                }
                (State::Waiting(_), Standing::Waiting) => {
                    entry.confirmed = entry.confirmed.max(batch.sent);
                }
                (State::Waiting(sender), Standing::Held(token)) => {
                    if let Some(sender) = sender.take() {
                        let _ = sender.send(Signal::Admitted {
                            token,
                            confirmed: batch.sent,
                        });
                    }
                }
                (State::Waiting(sender), Standing::Cancelling(token)) => {
                    if let Some(sender) = sender.take() {
                        let _ = sender.send(Signal::Cancelling {
                            token,
                            confirmed: batch.sent,
                        });
                    }
                }
                (State::Waiting(sender), Standing::Gone) => {
                    if let Some(sender) = sender.take() {
                        let _ = sender.send(Signal::Cancel);
                    }
                    gone.push(*number);
                }
                _ => {}
            }
        }
        for number in gone {
            if let Some(entry) = self.entries.get_mut(&number) {
                entry.grouped = false;
            }
            if let Some(group) = self.groups.get_mut(&batch.key) {
                group.numbers.remove(&number);
            }
        }
        if let Some(group) = self.groups.get_mut(&batch.key) {
            let places = group.places;
            group.deadline = group
                .numbers
                .iter()
                .filter_map(|number| self.entries.get(number))
                .map(|entry| entry.deadline(places))
                .min()
                .unwrap_or(now + batch.key.1);
            if group.numbers.is_empty() && group.in_flight == 0 {
                self.groups.remove(&batch.key);
            }
        }
        cancels
    }
}

impl Group {
    fn next_wake(&self) -> Instant {
        let mut wake = self.deadline;
        if self.in_flight == 0 {
            wake = wake.min(self.due);
            if let Some(look) = self.look {
                wake = wake.min(look);
            }
        }
        wake
    }
}

/// The ids of `group` left unconfirmed too long: holders are cancelled (and no longer
/// renewed), waiters fail. Returns the group's next deadline.
fn expire(
    entries: &mut HashMap<u64, Entry>,
    group: &mut Group,
    now: Instant,
    cancels: &mut Vec<Cancellation>,
) -> Instant {
    let mut next = now + Duration::from_secs(3600);
    let error = group
        .error
        .clone()
        .unwrap_or_else(|| "no answer from redis".to_owned());
    let places = group.places;
    group.numbers.retain(|number| {
        let Some(entry) = entries.get_mut(number) else {
            return false;
        };
        let deadline = entry.deadline(places);
        if deadline > now {
            next = next.min(deadline);
            return true;
        }
        match &mut entry.state {
            State::Holding { token, cancel } => {
                cancels.extend(
                    cancel
                        .take()
                        .map(|cancel| (cancel, CancelReason::LeaseLost)),
                );
                entry.state = State::Lost { token: *token };
            }
            State::Waiting(sender) => {
                if let Some(sender) = sender.take() {
                    let _ = sender.send(Signal::Lost(error.clone()));
                }
            }
            _ => {}
        }
        entry.generation = entry.generation.wrapping_add(1);
        entry.grouped = false;
        false
    });
    next
}
