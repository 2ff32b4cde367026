//! What a member knows of the ids it has in Redis: the local instance behind each (waiting
//! for a slot, holding one, following a leader), the leases by instance (for `finally!`
//! and [`Fleet::lease`](super::Fleet::lease)), and the renewal groups (one per queue and
//! lease ttl) the member's renewer takes its batches from. One lock; no user code and no
//! cancellation runs under it (cancellations are handed back to the caller).

mod groups;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use pipewright::CancelReason;

use super::lease::{ttl_millis, Lease, LeaseKey};
use super::scripts::Keys;
pub(crate) use groups::{Batch, Renewed};
use groups::{Group, GroupKey};

/// Cancels the instance behind a lease (`Runtime::cancel` of its ident).
/// Cancels a holder's instance, saying why.
pub(crate) type CancelFn = Arc<dyn Fn(CancelReason) + Send + Sync>;

/// A holder to cancel, and why.
pub(crate) type Cancellation = (CancelFn, CancelReason);

/// A member's message about one of its ids: `a ID TOKEN`, `c ID`, `d ID PAYLOAD`.
#[derive(Debug)]
pub(crate) enum Message {
    /// Given a slot with this fencing token.
    Admitted(u64),
    /// Cancel the instance behind the id (restartable, keep-latest).
    Cancel,
    /// The leader this follower waits for is done: its payload.
    Done(String),
}

/// What an instance that waits is told: by a message, or by a renewal that found out
/// what a lost message would have said. Each waiting instance is told once (a follower
/// is told again after a `Check`).
#[derive(Debug)]
pub(crate) enum Signal {
    /// Given a slot with this fencing token; Redis confirmed the lease no earlier than
    /// `confirmed`.
    Admitted { token: u64, confirmed: Instant },
    /// Given a slot and asked to give it up at once (restartable).
    Cancelling { token: u64, confirmed: Instant },
    /// Its wait was cancelled (restartable, keep-latest), or its place is gone.
    Cancel,
    /// Its waiting place could not be confirmed for as long as Redis keeps it.
    Lost(String),
    /// The leader a follower waits for is done: its payload.
    Done(String),
    /// Messages may have been lost (a reconnection): a follower looks where it stands.
    Check,
}

enum State {
    /// Its request is on the wire, or it waits: the next signal goes to the instance.
    Waiting(Option<oneshot::Sender<Signal>>),
    /// A use-existing follower: waits for its leader's result.
    Following(Option<oneshot::Sender<Signal>>),
    /// Holds a lease; `cancel` is taken when it is used (once).
    Holding {
        token: u64,
        cancel: Option<CancelFn>,
    },
    /// Held a lease that is gone or could not be confirmed in time: cancelled, no longer
    /// renewed (the release still goes out, and finds it gone).
    Lost { token: u64 },
}

struct Entry {
    id: Arc<str>,
    keys: Arc<Keys>,
    ttl: Duration,
    state: State,
    /// The latest moment Redis is known to have extended it (a request's send time).
    confirmed: Instant,
    /// Changes with `state`, so a renewal's reply about an earlier state is ignored.
    generation: u32,
    /// In its renewal group.
    grouped: bool,
    /// A holder was asked to cancel before it held (the message came first).
    cancel_asked: bool,
    /// The registry's epoch when it was opened: a reconnection since means messages
    /// about it may have been lost.
    epoch: u64,
}

impl Entry {
    fn holds(&self) -> bool {
        matches!(self.state, State::Holding { .. } | State::Lost { .. })
    }

    /// When it must have been confirmed again: a holder stops while its lease still
    /// protects it (two thirds of the ttl after its last confirmation); a waiting place
    /// is lost with its ttl (places are renewed per member and queue: `places`).
    fn deadline(&self, places: Instant) -> Instant {
        if self.holds() {
            self.confirmed + self.ttl * 2 / 3
        } else {
            self.confirmed.max(places) + self.ttl
        }
    }
}

#[derive(Default)]
pub(crate) struct Registry {
    next: u64,
    entries: HashMap<u64, Entry>,
    leases: HashMap<LeaseKey, u64>,
    groups: HashMap<GroupKey, Group>,
    epoch: u64,
    /// When the renewer wakes next; it is woken sooner if something is due sooner.
    wake: Option<Instant>,
}

impl Registry {
    /// A new id (`member.ttl.n`) for an admission about to be sent, and the receiver of its
    /// signal.
    pub(crate) fn open(
        &mut self,
        member: &str,
        keys: Arc<Keys>,
        ttl: Duration,
    ) -> (u64, Arc<str>, oneshot::Receiver<Signal>) {
        self.next += 1;
        let number = self.next;
        // The lease ttl it asks for travels in the id (Redis gives it that lease).
        let id: Arc<str> = Arc::from(format!("{member}.{}.{number}", ttl_millis(ttl)));
        let (sender, receiver) = oneshot::channel();
        self.entries.insert(
            number,
            Entry {
                id: Arc::clone(&id),
                keys,
                ttl,
                state: State::Waiting(Some(sender)),
                confirmed: Instant::now(),
                generation: 0,
                grouped: false,
                cancel_asked: false,
                epoch: self.epoch,
            },
        );
        (number, id, receiver)
    }

    /// Forgets an id (its admission settled, or was abandoned).
    pub(crate) fn close(&mut self, number: u64) {
        if let Some(entry) = self.entries.remove(&number) {
            self.ungroup(number, &entry);
        }
    }

    /// The admission is waiting (Redis confirmed its place at `confirmed`): renew it
    /// with the others of its queue. `true` if the renewer must be woken.
    pub(crate) fn wait(
        &mut self,
        number: u64,
        confirmed: Instant,
        next_expiry: Option<u64>,
    ) -> bool {
        let epoch = self.epoch;
        let Some(entry) = self.entries.get_mut(&number) else {
            return false;
        };
        entry.confirmed = confirmed;
        let missed = entry.epoch != epoch;
        let at = self.group(number);
        let now = Instant::now();
        if let Some(group) = at.as_ref().and_then(|key| self.groups.get_mut(key)) {
            if let Some(ms) = next_expiry {
                let look = now + Duration::from_millis(ms + 2);
                group.look = Some(group.look.map_or(look, |earlier| earlier.min(look)));
            }
            if missed {
                // Reconnected while its request was on the wire: look at once.
                group.due = now;
                group.full = true;
            }
        }
        self.needs_wake(at)
    }

    /// The admission holds a lease: recorded for `finally!` and [`Fleet::lease`], renewed
    /// with the others of its queue. Redis gave it no earlier than `confirmed`. Returns
    /// whether it was asked to cancel already, and whether the renewer must be woken.
    pub(crate) fn hold(
        &mut self,
        number: u64,
        token: u64,
        confirmed: Instant,
        cancel: CancelFn,
        lease: LeaseKey,
    ) -> (bool, bool) {
        let Some(entry) = self.entries.get_mut(&number) else {
            return (false, false);
        };
        entry.confirmed = confirmed;
        let asked = entry.cancel_asked;
        entry.state = State::Holding {
            token,
            cancel: (!asked).then_some(cancel),
        };
        entry.generation = entry.generation.wrapping_add(1);
        self.leases.insert(lease, number);
        let at = self.group(number);
        (asked, self.needs_wake(at))
    }

    /// A follower: it waits for its leader, and is not renewed.
    pub(crate) fn follow(&mut self, number: u64) {
        if let Some(entry) = self.entries.get_mut(&number) {
            if let State::Waiting(sender) = &mut entry.state {
                entry.state = State::Following(sender.take());
            }
        }
    }

    /// A follower told `Check` waits for its next signal.
    pub(crate) fn rearm(&mut self, number: u64) -> Option<oneshot::Receiver<Signal>> {
        let entry = self.entries.get_mut(&number)?;
        let (sender, receiver) = oneshot::channel();
        entry.state = State::Following(Some(sender));
        Some(receiver)
    }

    /// `finally!`: the lease the instance holds (its queue and id), forgotten.
    pub(crate) fn release(&mut self, lease: &LeaseKey) -> Option<(Arc<Keys>, Arc<str>)> {
        let number = self.leases.remove(lease)?;
        let entry = self.entries.remove(&number)?;
        self.ungroup(number, &entry);
        Some((entry.keys, entry.id))
    }

    /// The lease an instance holds, if any.
    pub(crate) fn lease(&self, lease: &LeaseKey) -> Option<Lease> {
        let entry = self.entries.get(self.leases.get(lease)?)?;
        match entry.state {
            State::Holding { token, .. } | State::Lost { token } => {
                Some(Lease::new(&entry.keys.queue, token))
            }
            _ => None,
        }
    }

    /// A message for `number`: its instance is told, or the cancellation to run (by the
    /// caller, outside the lock) is returned.
    pub(crate) fn deliver(&mut self, number: u64, message: Message) -> Option<CancelFn> {
        let entry = self.entries.get_mut(&number)?;
        // The slot was given after its place was last confirmed (its own admission, or
        // its member's places in the queue).
        let places = self
            .groups
            .get(&(Arc::clone(&entry.keys), entry.ttl))
            .map_or(entry.confirmed, |group| group.places);
        let confirmed = entry.confirmed.max(places);
        match (&mut entry.state, message) {
            (State::Waiting(sender), message) => {
                let signal = match message {
                    Message::Admitted(token) => Signal::Admitted { token, confirmed },
                    Message::Cancel => {
                        // Also for a holder whose admission is not recorded yet.
                        entry.cancel_asked = true;
                        Signal::Cancel
                    }
                    Message::Done(payload) => Signal::Done(payload),
                };
                if let Some(sender) = sender.take() {
                    let _ = sender.send(signal);
                }
                None
            }
            (State::Following(sender), Message::Done(payload)) => {
                if let Some(sender) = sender.take() {
                    let _ = sender.send(Signal::Done(payload));
                }
                None
            }
            (State::Holding { cancel, .. }, Message::Cancel) => cancel.take(),
            _ => None,
        }
    }

    /// Subscribed again after a reconnection: messages sent meanwhile are lost, so every
    /// group is renewed at once and every follower looks.
    pub(crate) fn check_all(&mut self) {
        self.epoch += 1;
        let now = Instant::now();
        for group in self.groups.values_mut() {
            group.due = now;
            group.full = true;
        }
        for entry in self.entries.values_mut() {
            if let State::Following(sender) = &mut entry.state {
                if let Some(sender) = sender.take() {
                    let _ = sender.send(Signal::Check);
                }
            }
        }
        self.wake = None;
    }
}
