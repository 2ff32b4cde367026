//! The reference model of admission: a small, obviously correct simulation of
//! what each behaviour does with a sequence of events, written independently of the
//! runtime. `tests/model_check.rs` drives the real runtime with the same events and
//! compares.
//!
//! Time is in milliseconds. Events happen on a 100 ms grid; an instance invoked with
//! argument `a` works `100 * (a + 1) + 1` ms, so an instance never ends on the grid (any
//! chain of k works ends k ms past it), and the order between an arrival and an end is
//! never a tie.

use std::collections::VecDeque;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Behaviour {
    Unrestricted,
    Restartable,
    Dropping,
    Enqueued,
    KeepLatest,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Config {
    pub(crate) behaviour: Behaviour,
    pub(crate) max: usize,
    pub(crate) use_existing: bool,
    /// Invocations go to an unrestricted outer pipeline whose one step runs the
    /// configured one as a child (nesting depth 2).
    pub(crate) nested: bool,
    /// With `nested`: the outer pipeline's first step resumes its own continuation
    /// ([SEMANTICS 2.1]), so the child runs from a resumed frame. Nobody can tell: the
    /// model expects exactly what it expects for `nested`.
    ///
    /// [SEMANTICS 2.1]: pipewright::semantics#21-a-steps-view-of-its-instance-and-continuations
    pub(crate) resumed: bool,
    /// One queue per key (`argument % 2`).
    pub(crate) keyed: bool,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Op {
    Invoke(u8),
    /// Cancels the invocation `index % invocations so far` (nothing if none yet).
    Cancel(usize),
    Stop,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Event {
    /// Grid steps (100 ms) before the event.
    pub(crate) gap: u64,
    pub(crate) op: Op,
}

pub(crate) const GRID: u64 = 100;

pub(crate) fn work(argument: u8) -> u64 {
    GRID * (u64::from(argument) + 1) + 1
}

pub(crate) fn key(argument: u8) -> u8 {
    argument % 2
}

/// How one invocation ended, as its caller and the watcher see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Finished {
        started: u64,
        ended: u64,
    },
    Cancelled {
        started: Option<u64>,
        ended: u64,
    },
    Dropped {
        at: u64,
    },
    /// Invoked after `stop`.
    Refused,
}

/// The model's answer: per invocation, its outcome and, for a `use_existing` caller of
/// a non-nested pipeline, the invocation whose instance it shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Expected {
    pub(crate) outcomes: Vec<Outcome>,
    pub(crate) shared_with: Vec<Option<usize>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Waiting,
    Running { started: u64, ends: u64 },
    Done(Outcome),
}

#[derive(Debug)]
struct Instance {
    argument: u8,
    queue: u8,
    state: State,
    /// Start order within its queue (restartable cancels the oldest).
    order: usize,
}

#[derive(Debug, Clone, Copy)]
enum Invocation {
    /// Owns instance `usize` (same index as `instances`).
    Owns(usize),
    /// Shares the instance of another invocation.
    Shares(usize),
    Dropped(u64),
    Refused,
}

struct Model {
    config: Config,
    instances: Vec<Instance>,
    /// Per queue, waiting instances in arrival order.
    waiting: [VecDeque<usize>; 2],
    invocations: Vec<(u64, Invocation)>,
    /// Nested sharers cancelled on their own (their outer was cancelled).
    own_cancel: Vec<Option<u64>>,
    stopped: bool,
    next_order: usize,
}

impl Model {
    fn limit(&self) -> usize {
        match self.config.behaviour {
            Behaviour::Unrestricted => usize::MAX,
            _ => self.config.max,
        }
    }

    fn running(&self, queue: u8) -> Vec<usize> {
        let mut running: Vec<usize> = (0..self.instances.len())
            .filter(|&i| {
                self.instances[i].queue == queue
                    && matches!(self.instances[i].state, State::Running { .. })
            })
            .collect();
        running.sort_by_key(|&i| self.instances[i].order);
        running
    }

    fn start(&mut self, instance: usize, at: u64) {
        let ends = at + work(self.instances[instance].argument);
        self.instances[instance].state = State::Running { started: at, ends };
        self.instances[instance].order = self.next_order;
        self.next_order += 1;
    }

    fn fill(&mut self, queue: u8, at: u64) {
        while self.running(queue).len() < self.limit() {
            let Some(next) = self.waiting[queue as usize].pop_front() else {
                return;
            };
            self.start(next, at);
        }
    }

    fn cancel_instance(&mut self, instance: usize, at: u64) {
        if let Some(queue) = self.cancel_without_filling(instance, at) {
            self.fill(queue, at);
        }
    }

    /// Cancels one instance; returns its queue if it freed a slot.
    fn cancel_without_filling(&mut self, instance: usize, at: u64) -> Option<u8> {
        let queue = self.instances[instance].queue;
        match self.instances[instance].state {
            State::Waiting => {
                self.waiting[queue as usize].retain(|&i| i != instance);
                self.instances[instance].state = State::Done(Outcome::Cancelled {
                    started: None,
                    ended: at,
                });
                None
            }
            State::Running { started, .. } => {
                self.instances[instance].state = State::Done(Outcome::Cancelled {
                    started: Some(started),
                    ended: at,
                });
                Some(queue)
            }
            State::Done(_) => None,
        }
    }

    /// Processes every end up to `until`, in time order.
    fn advance(&mut self, until: u64) {
        loop {
            let next = (0..self.instances.len())
                .filter_map(|i| match self.instances[i].state {
                    State::Running { started, ends } if ends <= until => {
                        Some((ends, self.instances[i].order, i, started))
                    }
                    _ => None,
                })
                .min();
            let Some((ends, _, instance, started)) = next else {
                return;
            };
            self.instances[instance].state = State::Done(Outcome::Finished {
                started,
                ended: ends,
            });
            let queue = self.instances[instance].queue;
            self.fill(queue, ends);
        }
    }

    fn live(&self, instance: usize) -> bool {
        !matches!(self.instances[instance].state, State::Done(_))
    }

    fn invoke(&mut self, argument: u8, at: u64) {
        let index = self.invocations.len();
        self.own_cancel.push(None);
        if self.stopped {
            self.invocations.push((at, Invocation::Refused));
            return;
        }
        let queue = if self.config.keyed { key(argument) } else { 0 };
        if self.config.use_existing {
            let existing = self.invocations.iter().position(|(_, invocation)| {
                matches!(invocation, Invocation::Owns(i)
                    if self.instances[*i].argument == argument
                        && self.instances[*i].queue == queue
                        && self.live(*i))
            });
            if let Some(owner) = existing {
                self.invocations.push((at, Invocation::Shares(owner)));
                return;
            }
        }
        let instance = self.instances.len();
        self.instances.push(Instance {
            argument,
            queue,
            state: State::Waiting,
            order: usize::MAX,
        });
        if self.running(queue).len() < self.limit() {
            self.start(instance, at);
        } else {
            match self.config.behaviour {
                Behaviour::Unrestricted => self.start(instance, at),
                Behaviour::Restartable => {
                    while self.running(queue).len() >= self.limit() {
                        let oldest = self.running(queue)[0];
                        self.cancel_instance(oldest, at);
                    }
                    self.start(instance, at);
                }
                Behaviour::Dropping => {
                    self.instances[instance].state = State::Done(Outcome::Dropped { at });
                    self.invocations.push((at, Invocation::Dropped(at)));
                    return;
                }
                Behaviour::Enqueued => self.waiting[queue as usize].push_back(instance),
                Behaviour::KeepLatest => {
                    let replaced: Vec<usize> =
                        self.waiting[queue as usize].iter().copied().collect();
                    for waiting in replaced {
                        self.cancel_instance(waiting, at);
                    }
                    self.waiting[queue as usize].push_back(instance);
                }
            }
        }
        let _ = index;
        self.invocations.push((at, Invocation::Owns(instance)));
    }

    fn cancel(&mut self, target: usize, at: u64) {
        match self.invocations[target].1 {
            Invocation::Owns(instance) => self.cancel_instance(instance, at),
            Invocation::Shares(owner) => {
                if self.config.nested {
                    // The sharer's outer pipeline is cancelled alone; the shared child
                    // goes on for its owner.
                    if self.outcome_of(owner, false).is_none() && self.own_cancel[target].is_none()
                    {
                        self.own_cancel[target] = Some(at);
                    }
                } else if let Invocation::Owns(instance) = self.invocations[owner].1 {
                    // The handle's ident is the shared instance's: it is cancelled.
                    self.cancel_instance(instance, at);
                }
            }
            Invocation::Dropped(_) | Invocation::Refused => {}
        }
    }

    /// Everything live is cancelled at once: no waiting instance starts on the way.
    fn stop(&mut self, at: u64) {
        self.stopped = true;
        for instance in 0..self.instances.len() {
            self.cancel_without_filling(instance, at);
        }
    }

    /// The outcome of invocation `index` if it has ended.
    fn outcome_of(&self, index: usize, nested_view: bool) -> Option<Outcome> {
        let (invoked, invocation) = self.invocations[index];
        let inner = match invocation {
            Invocation::Refused => return Some(Outcome::Refused),
            Invocation::Dropped(at) => return Some(Outcome::Dropped { at }),
            Invocation::Owns(instance) => match self.instances[instance].state {
                State::Done(outcome) => outcome,
                _ => return None,
            },
            Invocation::Shares(owner) => {
                let shared = self.outcome_of(owner, false)?;
                if nested_view {
                    if let Some(cancelled) = self.own_cancel[index] {
                        let shared_end = match shared {
                            Outcome::Finished { ended, .. } | Outcome::Cancelled { ended, .. } => {
                                ended
                            }
                            _ => u64::MAX,
                        };
                        if cancelled < shared_end {
                            return Some(Outcome::Cancelled {
                                started: Some(invoked),
                                ended: cancelled,
                            });
                        }
                    }
                }
                shared
            }
        };
        if !nested_view {
            return Some(inner);
        }
        // The outer pipeline starts at once and ends as its child does.
        Some(match inner {
            Outcome::Finished { ended, .. } => Outcome::Finished {
                started: invoked,
                ended,
            },
            Outcome::Cancelled { ended, .. } => Outcome::Cancelled {
                started: Some(invoked),
                ended,
            },
            other => other,
        })
    }
}

/// What the runtime should do with `events` under `config`.
pub(crate) fn expected(config: Config, events: &[Event]) -> Expected {
    let mut model = Model {
        config,
        instances: Vec::new(),
        waiting: [VecDeque::new(), VecDeque::new()],
        invocations: Vec::new(),
        own_cancel: Vec::new(),
        stopped: false,
        next_order: 0,
    };
    let mut now = 0;
    for event in events {
        now += event.gap * GRID;
        model.advance(now);
        match event.op {
            Op::Invoke(argument) => model.invoke(argument, now),
            Op::Cancel(index) => {
                if !model.invocations.is_empty() {
                    let target = index % model.invocations.len();
                    model.cancel(target, now);
                }
            }
            Op::Stop => model.stop(now),
        }
    }
    model.advance(u64::MAX);
    let outcomes = (0..model.invocations.len())
        .map(|index| {
            model
                .outcome_of(index, config.nested)
                .expect("everything ends")
        })
        .collect();
    let shared_with = model
        .invocations
        .iter()
        .map(|(_, invocation)| match invocation {
            Invocation::Shares(owner) if !config.nested => Some(*owner),
            _ => None,
        })
        .collect();
    Expected {
        outcomes,
        shared_with,
    }
}
