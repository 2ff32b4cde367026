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
//! counted instead of kept, and the next event kept is preceded by
//! [`EventKind::Lagged`] with the count: a watcher slower than the runtime loses events
//! (and is told how many), it never makes the runtime's memory grow without bound.
//!
//! Event streams ([`Runtime::events`](crate::Runtime::events)): delivering an event also
//! sends it, with its sequence number (its place among the events kept), into a tokio
//! broadcast channel that every [`EventStream`](crate::EventStream) reads from. Sent by
//! the one deliverer, outside every lock, so subscribers see the watcher's order (the
//! registry's decision order). A subscriber remembers the sequence number the log had
//! reached when it subscribed: it skips events kept before (still on their way when it
//! subscribed) and counts the ones it lost, from the gaps, when it falls behind.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::broadcast;

use crate::error::Error;
use crate::hooks::{Event, EventKind, Hooks};

/// Undelivered events kept at most; see [`EventKind::Lagged`].
pub(crate) const EVENT_BACKLOG: usize = 1 << 16;

/// Events of others a caller delivers, past its own, before it hands the rest over.
pub(crate) const EXTRA_PER_CALL: usize = 64;

/// An event and its sequence number, as event streams receive them.
pub(crate) type Sequenced = (u64, Event);

pub(crate) struct EventLog {
    state: Mutex<LogState>,
    /// Where delivered events are also sent, when the runtime has event streams.
    stream: Option<broadcast::Sender<Sequenced>>,
}

#[derive(Default)]
struct LogState {
    backlog: VecDeque<Event>,
    /// Events kept so far (the backlog holds those from `delivered` to `recorded`).
    recorded: u64,
    delivered: u64,
    /// Someone holds the delivery role: a caller, or a drain task.
    delivering: bool,
    /// The highest `recorded` a caller left to the one delivering.
    owed: u64,
    /// Events not kept since the last one kept (the backlog was full).
    missed: u64,
}

impl EventLog {
    /// A log for a watcher, and for event streams holding `stream_capacity` events each.
    pub(crate) fn new(stream_capacity: Option<usize>) -> Self {
        EventLog {
            state: Mutex::default(),
            stream: stream_capacity.map(broadcast::Sender::new),
        }
    }

    /// A receiver of the events kept from now on, and the sequence number of the first
    /// of them; `None` without event streams.
    pub(crate) fn subscribe(&self) -> Option<(u64, broadcast::Receiver<Sequenced>)> {
        let stream = self.stream.as_ref()?;
        // Under the log's lock: every event numbered from `from` on is taken out of the
        // backlog after this, so it is sent after the receiver exists.
        let state = self.lock();
        Some((state.recorded, stream.subscribe()))
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
        if state.backlog.len() >= EVENT_BACKLOG {
            state.missed += 1;
            return;
        }
        if state.missed > 0 {
            let missed = std::mem::take(&mut state.missed);
            state.backlog.push_back(Event {
                ident: event.ident.clone(),
                queue: event.queue.clone(),
                kind: EventKind::Lagged { missed },
            });
            state.recorded += 1;
        }
        state.backlog.push_back(event);
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

/// Delivers the next event (to the watcher, then to the event streams); the lock is
/// released meanwhile.
fn deliver_one<'a>(
    log: &'a EventLog,
    mut state: MutexGuard<'a, LogState>,
    hooks: &Hooks,
) -> MutexGuard<'a, LogState> {
    let event = state.backlog.pop_front();
    let sequence = state.delivered;
    state.delivered += 1;
    drop(state);
    if let Some(event) = event {
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

    use super::{EventLog, EVENT_BACKLOG};
    use crate::event_stream::EventStream;
    use crate::hooks::{Event, EventKind, Hooks};
    use crate::ident::Ident;
    use crate::ident::Name;

    fn event(id: u64) -> Event {
        Event {
            ident: Ident {
                name: Name::Static("test"),
                id,
            },
            queue: Name::Static("test"),
            kind: EventKind::Started,
        }
    }

    #[test]
    fn a_full_backlog_counts_what_it_drops_and_says_so_before_the_next_event() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let hooks = Hooks {
            watcher: Some(Arc::new(move |event: &Event| {
                sink.lock()
                    .unwrap()
                    .push((event.ident().id(), event.kind().clone()))
            })),
            ..Hooks::default()
        };
        let log = Arc::new(EventLog::new(None));
        for id in 0..EVENT_BACKLOG as u64 + 10 {
            log.record(event(id));
        }
        log.deliver(&hooks, || None);
        assert_eq!(seen.lock().unwrap().len(), EVENT_BACKLOG);
        log.record(event(1_000_000));
        log.deliver(&hooks, || None);
        let seen = seen.lock().unwrap();
        let tail: Vec<_> = seen[EVENT_BACKLOG..].iter().collect();
        assert!(matches!(
            tail[0],
            (1_000_000, EventKind::Lagged { missed: 10 })
        ));
        assert!(matches!(tail[1], (1_000_000, EventKind::Started)));
        assert_eq!(tail.len(), 2);
    }

    #[test]
    fn a_subscriber_skips_events_kept_before_it_subscribed_though_delivered_after() {
        // Another caller was delivering when the subscription was made: the events it had
        // kept then reach the channel afterwards, and are not the subscriber's.
        let log = Arc::new(EventLog::new(Some(16)));
        log.record(event(1));
        log.record(event(2));
        let (from, receiver) = log.subscribe().unwrap();
        assert_eq!(from, 2);
        log.record(event(3));
        log.deliver(&Hooks::default(), || None);
        let mut stream = EventStream::new(from, receiver);
        let first = stream.next().now_or_never().flatten().unwrap();
        assert_eq!(first.ident().id(), 3);
        assert!(stream.next().now_or_never().is_none());
        assert!(EventLog::new(None).subscribe().is_none());
    }
}
