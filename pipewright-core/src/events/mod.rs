//! The watcher's event log: events are recorded under the registry's lock, in the order
//! the registry decided them, and delivered one at a time, in that order, without it.
//!
//! Who delivers: the caller that recorded events delivers them itself (so a synchronous
//! `invoke` has told the watcher everything by the time it returns), unless another
//! caller is delivering; then it leaves its events to that one and returns at once.
//! The work one caller does for others is bounded: past its own events it delivers at
//! most [`EXTRA_PER_CALL`] more, then hands the rest to a thread of its own (a blocking
//! task of the executor, or a new thread without one): a slow watcher then slows that
//! thread, not the callers.
//!
//! How much is kept: at most [`EVENT_BACKLOG`] undelivered events. Past that, events are
//! counted instead of kept, and the loss is announced with [`EventKind::Lagged`] and the
//! count: before the next event kept, or, if none is kept after them, as soon as the
//! deliverer has emptied the backlog (so once everything is delivered, the events told
//! plus the counts of the `Lagged` events are exactly the events that happened). A
//! watcher slower than the runtime loses events (and is told how many), it never makes
//! the runtime's memory grow without bound.
//!
//! Event streams ([`Runtime::events`](crate::Runtime::events)): delivering an event also
//! sends it, with its sequence number, into a tokio broadcast channel that every
//! [`EventStream`](crate::EventStream) reads from. Sent by the one deliverer, outside
//! every lock, so subscribers see the watcher's order (the registry's decision order).
//! Sequence numbers count every event that happened, kept or lost; a `Lagged` event is
//! sent with the number of the first event after the loss it announces, so it says "the
//! events before this number are accounted for". A subscriber remembers the sequence
//! number the log had reached when it subscribed: it skips events from before, and
//! counts the ones it lost (in the runtime's backlog or in its own buffer) from the gaps,
//! so its accounting is as exact as the watcher's.
//!
//! - `mod.rs`: the event log and its delivery
//! - `hooks.rs`: the hooks (error reporter, watcher, transactor, `on_cancel`), the events
//!   ([`Event`], [`EventKind`]) and the instance's `tracing` span
//! - `stream.rs`: [`EventStream`](crate::EventStream), a subscriber's stream of events

pub(crate) mod hooks;
pub(crate) mod stream;

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::broadcast;

use crate::error::Error;
use crate::ident::{Ident, Name};
use hooks::{Event, EventKind, Hooks};

/// Undelivered events kept at most; see [`EventKind::Lagged`].
pub(crate) const EVENT_BACKLOG: usize = 1 << 16;

/// Events of others a caller delivers, past its own, before it hands the rest over.
pub(crate) const EXTRA_PER_CALL: usize = 64;

/// An event and its sequence number, as event streams receive them: the number of the
/// events that happened before it (kept or not); for a `Lagged` event, of those that
/// happened before the first event after the loss it announces.
pub(crate) type Sequenced = (u64, Event);

pub(crate) struct EventLog {
    state: Mutex<LogState>,
    /// Where delivered events are also sent, when the runtime has event streams.
    stream: Option<broadcast::Sender<Sequenced>>,
    /// Undelivered events kept at most ([`EVENT_BACKLOG`], smaller in unit tests).
    backlog_cap: usize,
}

#[derive(Default)]
struct LogState {
    /// Undelivered events, each with its sequence number.
    backlog: VecDeque<Sequenced>,
    /// Entries put in the backlog so far, `Lagged` events included (the backlog holds
    /// those from `delivered` to `recorded`).
    recorded: u64,
    delivered: u64,
    /// Events that happened so far, kept or not: the next event's sequence number.
    sequence: u64,
    /// Someone holds the delivery role: a caller, or a drain task.
    delivering: bool,
    /// The highest `recorded` a caller left to the one delivering.
    owed: u64,
    /// Events not kept since the last one kept (the backlog was full).
    missed: u64,
    /// The ident and queue of the last of those, for a `Lagged` event that no kept event
    /// follows.
    last_missed: Option<(Ident, Name)>,
}

impl EventLog {
    /// A log for a watcher, and for event streams holding `stream_capacity` events each.
    pub(crate) fn new(stream_capacity: Option<usize>) -> Self {
        Self::with_backlog(stream_capacity, EVENT_BACKLOG)
    }

    fn with_backlog(stream_capacity: Option<usize>, backlog_cap: usize) -> Self {
        EventLog {
            state: Mutex::default(),
            stream: stream_capacity.map(broadcast::Sender::new),
            backlog_cap,
        }
    }

    /// A receiver of the events kept from now on, and the sequence number of the first
    /// of them; `None` without event streams.
    pub(crate) fn subscribe(&self) -> Option<(u64, broadcast::Receiver<Sequenced>)> {
        let stream = self.stream.as_ref()?;
        // Under the log's lock: every event numbered from `from` on is taken out of the
        // backlog after this, so it is sent after the receiver exists.
        let state = self.lock();
        Some((state.sequence, stream.subscribe()))
    }

    /// Sends a delivered event to the event streams, if any subscriber is there to read
    /// it. Sending may drop an event a lagging subscriber did not read, and its error's
    /// `Drop` is user code: a panic there is reported for the event's instance.
    fn publish(&self, sequence: u64, event: Event, hooks: &Hooks) {
        let Some(stream) = &self.stream else {
            return;
        };
        if stream.receiver_count() == 0 {
            return;
        }
        let ident = event.ident.clone();
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| drop(stream.send((sequence, event)))))
        {
            let error = Error::from_hook_panic("drop of an event no subscriber read", panic);
            hooks.report(&ident, &error);
        }
    }

    fn lock(&self) -> MutexGuard<'_, LogState> {
        // Consistent at every unlock: no user code runs under this lock.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps `event` for delivery (called under the registry's lock, so events are kept
    /// in the order the registry decided them).
    pub(crate) fn record(&self, event: Event) {
        let mut state = self.lock();
        let sequence = state.sequence;
        state.sequence += 1;
        if state.backlog.len() >= self.backlog_cap {
            state.missed += 1;
            let Event { ident, queue, kind } = event;
            let previous = state.last_missed.replace((ident, queue));
            // The rest of the event (an error, perhaps) is dropped outside the log's lock.
            drop(state);
            drop((previous, kind));
            return;
        }
        if state.missed > 0 {
            state.announce_missed(sequence, event.ident.clone(), event.queue.clone());
        }
        state.backlog.push_back((sequence, event));
        state.recorded += 1;
    }

    /// Delivers the events recorded so far (see the module's documentation for who
    /// delivers what).
    pub(crate) fn deliver(
        self: &Arc<Self>,
        hooks: &Hooks,
        executor: impl Fn() -> Option<tokio::runtime::Handle>,
    ) {
        let mut state = self.lock();
        let target = state.recorded;
        if state.delivered >= target {
            return;
        }
        if state.delivering {
            state.owed = state.owed.max(target);
            return;
        }
        state.delivering = true;
        let mut role = Role {
            log: Arc::clone(self),
            held: true,
        };
        let mut extra = EXTRA_PER_CALL;
        loop {
            if state.delivered >= target {
                if state.delivered >= state.owed {
                    // Given back in the same critical section as the last look at `owed`:
                    // a caller that leaves its events to us either did so before (and
                    // they were delivered) or will find the role free.
                    role.release(&mut state);
                    return;
                }
                if extra == 0 {
                    drop(state);
                    hand_over(role, hooks.clone(), executor());
                    return;
                }
                extra -= 1;
            }
            state = deliver_one(self, state, hooks);
        }
    }
}

/// Moves the delivery role, with what is owed, to a thread of its own: a blocking task
/// of the executor, or a new thread without one. If neither can run it, the role is
/// dropped and given back (the events wait for the next caller).
fn hand_over(role: Role, hooks: Hooks, executor: Option<tokio::runtime::Handle>) {
    match executor {
        Some(executor) => drop(executor.spawn_blocking(move || role.drain(&hooks))),
        None => {
            let _ = std::thread::Builder::new()
                .name("pipelines-events".into())
                .spawn(move || role.drain(&hooks));
        }
    }
}

impl LogState {
    /// Puts a `Lagged` event about `ident` in `queue` in the backlog, for the events
    /// missed since the last one kept; `sequence` is the number of the first event after
    /// them.
    fn announce_missed(&mut self, sequence: u64, ident: Ident, queue: Name) {
        let missed = std::mem::take(&mut self.missed);
        self.last_missed = None;
        let kind = EventKind::Lagged { missed };
        self.backlog
            .push_back((sequence, Event { ident, queue, kind }));
        self.recorded += 1;
    }
}

/// Delivers the next event (to the watcher, then to the event streams); the lock is
/// released meanwhile.
///
/// Taking the last event out of the backlog while events were lost since the last one
/// kept announces the loss at once: no kept event may follow to announce it, and then,
/// once everything is delivered, the watcher would not have been told. The deliverer owes
/// that `Lagged` event as its own, so it delivers it before it gives the role back.
fn deliver_one<'a>(
    log: &'a EventLog,
    mut state: MutexGuard<'a, LogState>,
    hooks: &Hooks,
) -> MutexGuard<'a, LogState> {
    let next = state.backlog.pop_front();
    state.delivered += 1;
    if state.backlog.is_empty() && state.missed > 0 {
        if let Some((ident, queue)) = state.last_missed.take() {
            let sequence = state.sequence;
            state.announce_missed(sequence, ident, queue);
            state.owed = state.owed.max(state.recorded);
        }
    }
    drop(state);
    if let Some((sequence, event)) = next {
        hooks.watch(&event);
        log.publish(sequence, event, hooks);
    }
    log.lock()
}

/// The delivery role: one holder at a time. Dropping it unreleased gives it back.
struct Role {
    log: Arc<EventLog>,
    held: bool,
}

impl Role {
    fn release(&mut self, state: &mut LogState) {
        self.held = false;
        state.delivering = false;
        // A burst's backlog is not kept as capacity.
        if state.backlog.is_empty() && state.backlog.capacity() > 256 {
            state.backlog = VecDeque::new();
        }
    }

    /// Delivers everything owed, then gives the role back.
    fn drain(mut self, hooks: &Hooks) {
        let log = Arc::clone(&self.log);
        let mut state = log.lock();
        while state.delivered < state.owed.min(state.recorded) {
            state = deliver_one(&log, state, hooks);
        }
        self.release(&mut state);
    }
}

impl Drop for Role {
    fn drop(&mut self) {
        if self.held {
            let log = Arc::clone(&self.log);
            self.release(&mut log.lock());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use futures::{FutureExt, StreamExt};

    use super::hooks::{Event, EventKind, Hooks};
    use super::EventLog;
    use crate::events::stream::EventStream;
    use crate::ident::Ident;
    use crate::ident::Name;

    fn event_of(id: u64) -> Event {
        Event {
            ident: Ident {
                name: Name::Static("test"),
                id,
            },
            queue: Name::Static("test"),
            kind: EventKind::Started,
        }
    }

    /// What a watcher was told: `(id, kind)`.
    type Told = Arc<Mutex<Vec<(u64, EventKind)>>>;

    /// Hooks whose watcher records what it is told into the result, after running
    /// `also` on each event (which may record more events).
    fn telling(also: impl Fn(&Event) + Send + Sync + 'static) -> (Hooks, Told) {
        let seen: Told = Arc::default();
        let sink = seen.clone();
        let hooks = Hooks {
            watcher: Some(Arc::new(move |event: &Event| {
                also(event);
                sink.lock()
                    .unwrap()
                    .push((event.ident().id(), event.kind().clone()))
            })),
            ..Hooks::default()
        };
        (hooks, seen)
    }

    /// What `stream` has ready now.
    fn ready(stream: &mut EventStream) -> Vec<(u64, EventKind)> {
        let mut read = Vec::new();
        while let Some(Some(event)) = stream.next().now_or_never() {
            read.push((event.ident().id(), event.kind().clone()));
        }
        read
    }

    /// Events told that are not `Lagged`, and the sum of the `Lagged` counts.
    fn accounted(told: &[(u64, EventKind)]) -> (u64, u64) {
        told.iter()
            .fold((0, 0), |(events, lost), (_, kind)| match kind {
                EventKind::Lagged { missed } => (events, lost + missed),
                _ => (events + 1, lost),
            })
    }

    #[test]
    fn a_full_backlog_counts_what_it_drops_and_says_so_before_the_next_event() {
        // Room for 4. While the first event is delivered, 3 more happen: the first is
        // kept, 2 are lost; while the second is delivered, one more happens and is kept,
        // after the announcement of the 2 lost.
        let log = Arc::new(EventLog::with_backlog(None, 4));
        let during = Arc::clone(&log);
        // As callers do, each records then delivers: it finds the role taken, and leaves
        // its events to the one delivering.
        let (hooks, seen) = telling(move |event| {
            match event.ident().id() {
                0 => (100..103).for_each(|id| during.record(event_of(id))),
                1 => during.record(event_of(103)),
                _ => return,
            }
            during.deliver(&Hooks::default(), || None);
        });
        (0..4).for_each(|id| log.record(event_of(id)));
        log.deliver(&hooks, || None);
        let seen = seen.lock().unwrap();
        let told: Vec<String> = seen
            .iter()
            .map(|(id, kind)| format!("{id} {kind:?}"))
            .collect();
        assert_eq!(
            told,
            [
                "0 Started",
                "1 Started",
                "2 Started",
                "3 Started",
                "100 Started",
                "103 Lagged { missed: 2 }",
                "103 Started"
            ]
        );
        assert_eq!(accounted(&seen), (6, 2));
    }

    #[test]
    fn a_loss_no_kept_event_follows_is_announced_once_the_backlog_is_delivered() {
        let (hooks, seen) = telling(|_| {});
        let log = Arc::new(EventLog::with_backlog(None, 4));
        (0..10).for_each(|id| log.record(event_of(id)));
        log.deliver(&hooks, || None);
        {
            let seen = seen.lock().unwrap();
            // With the ident of the last event lost: no event follows.
            assert!(matches!(
                seen[..],
                [
                    (0, EventKind::Started),
                    (1, EventKind::Started),
                    (2, EventKind::Started),
                    (3, EventKind::Started),
                    (9, EventKind::Lagged { missed: 6 })
                ]
            ));
        }
        // Announced once: the next event kept comes alone.
        log.record(event_of(10));
        log.deliver(&hooks, || None);
        let seen = seen.lock().unwrap();
        assert!(matches!(seen[5..], [(10, EventKind::Started)]));
        assert_eq!(accounted(&seen), (5, 6));
    }

    #[test]
    fn a_subscriber_accounts_for_every_event_whatever_its_buffer_and_the_backlog_lost() {
        // The backlog keeps 4 of 10 events, then the 11th; one subscriber keeps up, one
        // reads only at the end, one subscribed after the loss (room for 16 each).
        let log = Arc::new(EventLog::with_backlog(Some(16), 4));
        let (from, receiver) = log.subscribe().unwrap();
        let mut keeping_up = EventStream::new(from, receiver);
        let (from, receiver) = log.subscribe().unwrap();
        let mut slow = EventStream::new(from, receiver);
        let stream_of_one = {
            let log = Arc::new(EventLog::with_backlog(Some(1), 4));
            let (from, receiver) = log.subscribe().unwrap();
            (0..10).for_each(|id| log.record(event_of(id)));
            log.deliver(&Hooks::default(), || None);
            (log, EventStream::new(from, receiver))
        };
        let (watcher, seen) = telling(|_| {});
        (0..10).for_each(|id| log.record(event_of(id)));
        log.deliver(&watcher, || None);
        let mut late = {
            let (from, receiver) = log.subscribe().unwrap();
            EventStream::new(from, receiver)
        };
        let mut read = ready(&mut keeping_up);
        log.record(event_of(10));
        log.deliver(&watcher, || None);
        read.extend(ready(&mut keeping_up));
        let told = seen.lock().unwrap().clone();
        assert_eq!(accounted(&told), (5, 6));
        // What the watcher was told, in its order.
        assert_eq!(format!("{read:?}"), format!("{told:?}"));
        drop(log);
        let told_slow = ready(&mut slow);
        assert_eq!(accounted(&told_slow), (5, 6));
        let told_late = ready(&mut late);
        assert!(matches!(told_late[..], [(10, EventKind::Started)]));

        // Room for 1, read at the end: the gap counts the events its buffer lost and
        // those the backlog lost, each once.
        let (log, mut stream) = stream_of_one;
        log.record(event_of(10));
        log.deliver(&Hooks::default(), || None);
        drop(log);
        let told = ready(&mut stream);
        assert!(matches!(
            told[..],
            [
                (10, EventKind::Lagged { missed: 10 }),
                (10, EventKind::Started)
            ]
        ));
    }

    #[test]
    fn a_subscriber_skips_events_kept_before_it_subscribed_though_delivered_after() {
        // Another caller was delivering when the subscription was made: the events it had
        // kept then reach the channel afterwards, and are not the subscriber's.
        let log = Arc::new(EventLog::new(Some(16)));
        log.record(event_of(1));
        log.record(event_of(2));
        let (from, receiver) = log.subscribe().unwrap();
        assert_eq!(from, 2);
        log.record(event_of(3));
        log.deliver(&Hooks::default(), || None);
        let mut stream = EventStream::new(from, receiver);
        let first = stream.next().now_or_never().flatten().unwrap();
        assert_eq!(first.ident().id(), 3);
        assert!(stream.next().now_or_never().is_none());
        assert!(EventLog::new(None).subscribe().is_none());
    }
}
