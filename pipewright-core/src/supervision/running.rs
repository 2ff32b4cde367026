//! A running supervisor: its handle, its task, and the tasks of its children.
//!
//! Stop signals are [`CancellationToken`]s: the supervisor's is a child of the runtime's
//! (stopping the runtime stops every supervisor), each child's is its own (a supervisor
//! stops its children one at a time, last started first). Children run in a
//! [`JoinSet`] owned by the supervisor's task, so their exits arrive as they end and no
//! child task outlives its supervisor.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::FutureExt;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Child, Failure, Restart, Strategy, SuperviseError, Supervisor, SupervisorError};
use crate::error::Error;
use crate::events::hooks::EventKind;
use crate::ident::Ident;
use crate::policy::Intensity;
use crate::runtime::{Core, Runtime};

/// The handle of a running supervisor: stop it, or await its end.
#[derive(Debug)]
pub struct SupervisorHandle {
    ident: Ident,
    stop: CancellationToken,
    task: JoinHandle<Result<(), SupervisorError>>,
}

impl SupervisorHandle {
    /// The supervisor's ident (its name, and a number unique in the runtime).
    pub fn ident(&self) -> &Ident {
        &self.ident
    }

    /// Stops the supervisor: its children are stopped (their work dropped) and dropped,
    /// which closes the channels they publish to, so consumers see the end. Await the
    /// handle to know when that is done. Dropping the handle does not stop it: like a
    /// pipeline invocation, a supervisor goes on without its handle.
    pub fn stop(&mut self) {
        self.stop.cancel();
    }
}

impl Future for SupervisorHandle {
    type Output = Result<(), SupervisorError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let supervisor = self.ident.name().to_owned();
        Pin::new(&mut self.task)
            .poll(cx)
            .map(|joined| joined.unwrap_or(Err(SupervisorError::Dropped { supervisor })))
    }
}

impl<C: Send + Sync + 'static> Runtime<C> {
    /// Starts `supervisor` on the current tokio runtime (or the runtime's executor).
    /// Its children start at once, in order.
    ///
    /// ```
    /// # use pipewright::Runtime;
    /// # use pipewright::supervision::{ChildSpec, Supervisor};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let runtime = Runtime::builder(()).start().unwrap();
    /// let mut handle = runtime
    ///     .supervise(Supervisor::new("idle").child(ChildSpec::from_fn("wait", || std::future::pending())))
    ///     .unwrap();
    /// handle.stop();
    /// handle.await.unwrap();
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`SuperviseError`] if the runtime was stopped or no tokio runtime is available.
    pub fn supervise(&self, supervisor: Supervisor) -> Result<SupervisorHandle, SuperviseError> {
        if self.is_stopped() {
            return Err(SuperviseError::Stopped);
        }
        let Some(executor) = self.core().executor() else {
            return Err(SuperviseError::NoExecutor);
        };
        let ident = self.core().ident(&supervisor.name);
        let stop = self.core().stop_signal();
        let core = Arc::clone(self.core());
        let task = executor.spawn(run_supervisor(
            core,
            ident.clone(),
            supervisor,
            stop.clone(),
        ));
        Ok(SupervisorHandle { ident, stop, task })
    }
}

/// How a child's task ended.
enum Exit {
    Normal,
    Failed(Failure),
    Stopped,
}

/// One child as the supervisor keeps it.
struct Slot {
    restart: Restart,
    ident: Ident,
    /// The child, while it is not running (it travels to its task and back).
    child: Option<Box<dyn Child>>,
    /// Stops the running child's task.
    stop: Option<CancellationToken>,
    /// It will not run again.
    done: bool,
}

type Exited = (usize, Box<dyn Child>, Exit);

struct Supervision<C> {
    core: Arc<Core<C>>,
    ident: Ident,
    slots: Vec<Slot>,
    /// The children's tasks; each gives its child back when it ends.
    running: JoinSet<Exited>,
    /// Exits that arrived while the supervisor waited for others.
    pending: VecDeque<Exited>,
}

async fn run_supervisor<C: Send + Sync + 'static>(
    core: Arc<Core<C>>,
    ident: Ident,
    supervisor: Supervisor,
    stop: CancellationToken,
) -> Result<(), SupervisorError> {
    let slots = supervisor
        .children
        .into_iter()
        .map(|spec| Slot {
            ident: core.ident(&spec.name),
            restart: spec.restart,
            child: Some(spec.child),
            stop: None,
            done: false,
        })
        .collect();
    let mut run = Supervision {
        core,
        ident,
        slots,
        running: JoinSet::new(),
        pending: VecDeque::new(),
    };
    let mut intensity = Intensity::new(supervisor.policy, run.ident.id());
    for index in 0..run.slots.len() {
        run.start(index, None);
    }
    let mut restarts = 0;
    loop {
        if run.slots.iter().all(|slot| slot.done) {
            return Ok(());
        }
        let (index, child, exit) = match run.pending.pop_front() {
            Some(exited) => exited,
            None => tokio::select! {
                exited = run.next_exit() => match exited {
                    Some(exited) => exited,
                    // Unreachable: a child that is not done is running.
                    None => return Ok(()),
                },
                () = stop.cancelled() => {
                    run.stop_all().await;
                    return Ok(());
                }
            },
        };
        let slot = &mut run.slots[index];
        slot.child = Some(child);
        slot.stop = None;
        let failure = match exit {
            Exit::Normal => {
                run.emit(index, EventKind::ChildExited);
                None
            }
            Exit::Failed(failure) => {
                let error = Error::Supervision(Arc::new(failure.clone()));
                run.core.hooks().report(&run.slots[index].ident, &error);
                run.emit(index, EventKind::ChildFailed(error));
                Some(failure)
            }
            // Only the supervisor stops children; it waits for those exits itself.
            Exit::Stopped => continue,
        };
        let slot = &mut run.slots[index];
        let restart = match slot.restart {
            Restart::Permanent => true,
            Restart::Transient => failure.is_some(),
            Restart::Temporary => false,
        };
        if !restart {
            slot.done = true;
            slot.child = None;
            continue;
        }
        let Some(delay) = intensity.restart(Instant::now()) else {
            let error = SupervisorError::GaveUp {
                supervisor: run.ident.name().to_owned(),
                max_restarts: supervisor.policy.max_restarts(),
                within: supervisor.policy.within(),
                last_failure: failure,
            };
            let reported = Error::Supervision(Arc::new(error.clone()));
            run.core.hooks().report(&run.ident, &reported);
            run.core.emit(
                &run.ident,
                &supervisor.name,
                EventKind::SupervisorGaveUp(reported),
            );
            run.stop_all().await;
            return Err(error);
        };
        restarts += 1;
        // Which children restart, in start order.
        let group: Vec<usize> = match supervisor.strategy {
            Strategy::OneForOne => vec![index],
            Strategy::OneForAll => (0..run.slots.len()).collect(),
            Strategy::RestForOne => (index..run.slots.len()).collect(),
        };
        // Stop the others of the group, last started first (as OTP does).
        for &other in group.iter().rev() {
            if other != index {
                run.stop_child(other).await;
            }
        }
        if !delay.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                () = stop.cancelled() => {
                    run.stop_all().await;
                    return Ok(());
                }
            }
        }
        for &member in &group {
            let slot = &mut run.slots[member];
            if slot.done {
                continue;
            }
            if slot.restart == Restart::Temporary && member != index {
                // Stopped with the group; temporary children are never restarted.
                slot.done = true;
                slot.child = None;
                continue;
            }
            run.start(member, Some(restarts));
        }
    }
}

/// Runs `child` until it ends or `stop` fires. [`Child::run`] is called inside this
/// future's first poll, so whoever polls it under `catch_unwind` also catches a panic
/// raised before the child's own future exists.
async fn run_until_stopped(child: &mut dyn Child, stop: &CancellationToken) -> Exit {
    let run = child.run();
    tokio::select! {
        result = run => match result {
            Ok(()) => Exit::Normal,
            Err(failure) => Exit::Failed(failure),
        },
        () = stop.cancelled() => Exit::Stopped,
    }
}

impl<C: Send + Sync + 'static> Supervision<C> {
    fn emit(&self, index: usize, kind: EventKind) {
        self.core
            .emit(&self.slots[index].ident, self.ident.name_ref(), kind);
    }

    /// The next child to end. `None` when no child runs.
    async fn next_exit(&mut self) -> Option<Exited> {
        loop {
            match self.running.join_next().await? {
                Ok(exited) => return Some(exited),
                // A child's task never panics (its panics are caught inside it) and is
                // never aborted while the supervisor lives; a task the executor cancelled
                // as it shut down has nothing to give back.
                Err(_) => continue,
            }
        }
    }

    /// Runs child `index` on a task of its own, which gives the child back when it stops.
    fn start(&mut self, index: usize, restart: Option<u32>) {
        let slot = &mut self.slots[index];
        let Some(mut child) = slot.child.take() else {
            return;
        };
        let stop = CancellationToken::new();
        slot.stop = Some(stop.clone());
        self.running.spawn(async move {
            // A panic is a failure like any other: the child is given back and the
            // policy decides. The `catch_unwind` wraps the call of `run` too, not only
            // the future it returns: a panic before the future exists (in `run` itself,
            // or in a `ChildSpec::from_fn` closure) would otherwise end this task without
            // an exit, and the supervisor would wait for it forever.
            let exit = std::panic::AssertUnwindSafe(run_until_stopped(&mut *child, &stop))
                .catch_unwind()
                .await
                .unwrap_or_else(|panic| {
                    Exit::Failed(Failure {
                        operation: Arc::from("run"),
                        offset: None,
                        error: Error::from_panic(panic),
                    })
                });
            (index, child, exit)
        });
        self.emit(index, EventKind::ChildStarted);
        if let Some(restart) = restart {
            self.emit(index, EventKind::ChildRestarted { restart });
        }
    }

    /// Stops child `index` if it runs, and waits until its task gave it back. Exits of
    /// other children that arrive meanwhile are kept for the main loop.
    async fn stop_child(&mut self, index: usize) {
        let Some(stop) = self.slots[index].stop.take() else {
            return;
        };
        stop.cancel();
        while let Some((other, child, exit)) = self.next_exit().await {
            if other == index {
                self.slots[index].child = Some(child);
                return;
            }
            self.pending.push_back((other, child, exit));
        }
    }

    /// Stops every running child, then drops all children: the channels they publish to
    /// close.
    async fn stop_all(&mut self) {
        for index in (0..self.slots.len()).rev() {
            self.stop_child(index).await;
        }
        for (index, child, _) in std::mem::take(&mut self.pending) {
            self.slots[index].child = Some(child);
        }
        for slot in &mut self.slots {
            slot.child = None;
            slot.done = true;
        }
    }
}
