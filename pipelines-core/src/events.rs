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

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::hooks::{Event, EventKind, Hooks};

/// Undelivered events kept at most; see [`EventKind::Lagged`].
pub(crate) const EVENT_BACKLOG: usize = 1 << 16;

/// Events of others a caller delivers, past its own, before it hands the rest over.
pub(crate) const EXTRA_PER_CALL: usize = 64;

#[derive(Default)]
pub(crate) struct EventLog {
    state: Mutex<LogState>,
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

/// Delivers the next event; the lock is released while the watcher runs.
fn deliver_one<'a>(
    log: &'a EventLog,
    mut state: MutexGuard<'a, LogState>,
    hooks: &Hooks,
) -> MutexGuard<'a, LogState> {
    let event = state.backlog.pop_front();
    state.delivered += 1;
    drop(state);
    if let Some(event) = event {
        hooks.watch(&event);
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

    use super::{EventLog, EVENT_BACKLOG};
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
        let log = Arc::new(EventLog::default());
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
}
