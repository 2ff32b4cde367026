//! Supervision (SEMANTICS 6), in the spirit of Erlang/OTP: restart policies with an
//! intensity limit and backoff (shared with the pipeline `retry` modifier), children that
//! resume where they failed, restart strategies and restart types.
//!
//! A supervisor runs on a tokio task. Each child runs on a task of its own and is given
//! back to the supervisor when it stops, so a restart calls [`Child::run`] again on the
//! same value: a child keeps what it needs to resume (a producer, its offset). Children
//! are stopped by a signal, not aborted, for the same reason.
//!
//! ```
//! use std::time::Duration;
//! use pipelines::supervision::{ChildSpec, RestartPolicy, Strategy, Supervisor};
//!
//! let supervisor = Supervisor::new("ingest")
//!     .strategy(Strategy::OneForOne)
//!     .policy(RestartPolicy::new(3, Duration::from_secs(5)).unwrap())
//!     .child(ChildSpec::from_fn("idle", || std::future::pending()));
//! # let _ = supervisor;
//! ```

pub use crate::policy::{Backoff, RestartPolicy};
pub use crate::producer::{source_fn, Producer, Source};

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::error::{BoxError, Error};
use crate::hooks::EventKind;
use crate::ident::Ident;
use crate::ident::Name;
use crate::policy::Intensity;
use crate::runtime::{Core, Runtime};

/// Why a child stopped with a failure: what failed, at which offset (if it has one), and
/// the error. It is the tagged message of SEMANTICS 6: reported through the error
/// reporter (wrapped in an [`Error`], from which `downcast_ref::<Failure>()` recovers it)
/// and the watcher, never a silent stop.
///
/// # Examples
///
/// ```
/// use pipelines::supervision::Failure;
///
/// let failure = Failure::new("read", "session timeout").at(42);
/// assert_eq!(failure.operation(), "read");
/// assert_eq!(failure.offset(), Some(42));
/// // What failed, once; the error is the `source()`.
/// assert_eq!(failure.to_string(), "read failed at offset 42");
/// assert_eq!(failure.error().message(), "session timeout");
/// ```
#[derive(Debug, Clone)]
pub struct Failure {
    operation: Arc<str>,
    offset: Option<u64>,
    error: Error,
}

impl Failure {
    /// A failure of `operation` (what the child was doing) with `error`.
    pub fn new(operation: impl Into<String>, error: impl Into<BoxError>) -> Self {
        Failure {
            operation: Arc::from(operation.into()),
            offset: None,
            error: Error::new(error),
        }
    }

    /// The same failure, at `offset`.
    #[must_use]
    pub fn at(mut self, offset: u64) -> Self {
        self.offset = Some(offset);
        self
    }

    /// What the child was doing.
    pub fn operation(&self) -> &str {
        &self.operation
    }

    /// Where in its source, if it reads by offset.
    pub fn offset(&self) -> Option<u64> {
        self.offset
    }

    /// The underlying error.
    pub fn error(&self) -> &Error {
        &self.error
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.offset {
            Some(offset) => write!(f, "{} failed at offset {offset}", self.operation),
            None => write!(f, "{} failed", self.operation),
        }
    }
}

impl std::error::Error for Failure {
    /// The child's own error (for an error it returned, that error itself: a child is not
    /// a step, so no "step failed" layer in between).
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.error {
            Error::Failed(source) => Some(&**source),
            other => Some(other),
        }
    }
}

/// Something a supervisor runs and restarts. `run` is called again on the same value after
/// a failure, so the child resumes from the state it kept (a producer, its offset).
/// `Ok(())` is a normal exit; `Err` a failure. A panic is a failure too (tagged `run`),
/// wherever it happens: in `run` itself, before it returns its future, or while the future
/// runs.
///
/// # Examples
///
/// ```
/// use pipelines::BoxFuture;
/// use pipelines::supervision::{Child, Failure};
///
/// /// Counts up to 3, failing once at 2; resumes where it failed.
/// struct Counter { next: u32, failed: bool }
///
/// impl Child for Counter {
///     fn run(&mut self) -> BoxFuture<'_, Result<(), Failure>> {
///         Box::pin(async move {
///             while self.next < 3 {
///                 if self.next == 2 && !self.failed {
///                     self.failed = true;
///                     return Err(Failure::new("count", "flaky").at(2));
///                 }
///                 self.next += 1;
///             }
///             Ok(())
///         })
///     }
/// }
/// # let _ = Counter { next: 0, failed: false };
/// ```
pub trait Child: Send + 'static {
    /// Runs until the child stops. Dropped mid-way when the supervisor stops the child.
    fn run(&mut self) -> BoxFuture<'_, Result<(), Failure>>;
}

/// A child made of a function that starts its work anew each time (it keeps no state
/// across restarts unless the function captures some). See [`ChildSpec::from_fn`].
struct FnChild<F>(F);

impl<F, Fut> Child for FnChild<F>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), Failure>> + Send + 'static,
{
    fn run(&mut self) -> BoxFuture<'_, Result<(), Failure>> {
        Box::pin((self.0)())
    }
}

/// Which exits of a child lead to a restart (OTP's restart types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Restart {
    /// Always restarted, even after a normal exit (the default).
    #[default]
    Permanent,
    /// Restarted only after a failure.
    Transient,
    /// Never restarted.
    Temporary,
}

/// Which children restart when one fails (OTP's strategies).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// Only the child that stopped (the default).
    #[default]
    OneForOne,
    /// Every child: the others are stopped and all restart, in order.
    OneForAll,
    /// The child that stopped and those started after it.
    RestForOne,
}

/// A child with its name and restart type.
///
/// ```
/// use pipelines::supervision::{ChildSpec, Restart};
///
/// let spec = ChildSpec::from_fn("tick", || async { Ok(()) }).restart(Restart::Transient);
/// assert_eq!(spec.name(), "tick");
/// ```
pub struct ChildSpec {
    name: Name,
    restart: Restart,
    child: Box<dyn Child>,
}

impl fmt::Debug for ChildSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChildSpec")
            .field("name", &self.name)
            .field("restart", &self.restart)
            .finish_non_exhaustive()
    }
}

impl ChildSpec {
    /// `child`, named `name` (in events and reports), permanent.
    pub fn new(name: impl Into<String>, child: impl Child) -> Self {
        ChildSpec {
            name: Name::Shared(Arc::from(name.into())),
            restart: Restart::Permanent,
            child: Box::new(child),
        }
    }

    /// A child whose work is `start()`: called at each (re)start. A panic of `start`
    /// itself, before it returns its future, is a failure of the child like a panic of
    /// the future.
    ///
    /// ```
    /// use pipelines::supervision::{ChildSpec, Failure};
    ///
    /// let spec = ChildSpec::from_fn("ping", || async { Err(Failure::new("ping", "no answer")) });
    /// assert_eq!(spec.name(), "ping");
    /// ```
    pub fn from_fn<F, Fut>(name: impl Into<String>, start: F) -> Self
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), Failure>> + Send + 'static,
    {
        ChildSpec::new(name, FnChild(start))
    }

    /// Sets the restart type.
    #[must_use]
    pub fn restart(mut self, restart: Restart) -> Self {
        self.restart = restart;
        self
    }

    /// The child's name.
    pub fn name(&self) -> &str {
        self.name.as_str()
    }
}

/// A supervisor: children, a strategy and a restart policy. Start it with
/// [`Runtime::supervise`]; failures, restarts and a give-up are reported through that
/// runtime's error reporter and watcher.
///
/// # Examples
///
/// ```
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use std::sync::Arc;
/// use std::time::Duration;
/// use pipelines::{RestartPolicy, Runtime};
/// use pipelines::supervision::{ChildSpec, Failure, Restart, Supervisor};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let starts = Arc::new(AtomicU32::new(0));
/// let counter = starts.clone();
/// let flaky = ChildSpec::from_fn("flaky", move || {
///     let attempt = counter.fetch_add(1, Ordering::SeqCst);
///     async move {
///         if attempt < 2 { Err(Failure::new("work", "not yet")) } else { Ok(()) }
///     }
/// })
/// .restart(Restart::Transient);
/// let runtime = Runtime::builder(()).start().unwrap();
/// let supervisor = Supervisor::new("workers")
///     .policy(RestartPolicy::new(5, Duration::from_secs(1)).unwrap())
///     .child(flaky);
/// runtime.supervise(supervisor).unwrap().await.unwrap();
/// assert_eq!(starts.load(Ordering::SeqCst), 3);
/// # }
/// ```
#[derive(Debug)]
pub struct Supervisor {
    name: Name,
    strategy: Strategy,
    policy: RestartPolicy,
    children: Vec<ChildSpec>,
}

impl Supervisor {
    /// A one-for-one supervisor with the default policy and no children yet.
    pub fn new(name: impl Into<String>) -> Self {
        Supervisor {
            name: Name::Shared(Arc::from(name.into())),
            strategy: Strategy::OneForOne,
            policy: RestartPolicy::default(),
            children: Vec::new(),
        }
    }

    /// Sets which children restart when one stops.
    #[must_use]
    pub fn strategy(mut self, strategy: Strategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// Sets the restart intensity and backoff.
    #[must_use]
    pub fn policy(mut self, policy: RestartPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Adds a child; children start in the order they are added.
    #[must_use]
    pub fn child(mut self, child: ChildSpec) -> Self {
        self.children.push(child);
        self
    }
}

/// Why [`Runtime::supervise`] refused to start a supervisor. Nothing was started.
///
/// ```
/// use pipelines::Runtime;
/// use pipelines::supervision::{ChildSpec, SuperviseError, Supervisor};
///
/// let runtime = Runtime::builder(()).start().unwrap();
/// let supervisor = Supervisor::new("idle").child(ChildSpec::from_fn("wait", || std::future::pending()));
/// // Outside a tokio runtime, nothing could run the supervisor.
/// assert_eq!(runtime.supervise(supervisor).unwrap_err(), SuperviseError::NoExecutor);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SuperviseError {
    /// The runtime was stopped; it starts nothing more. Start a new runtime.
    #[error("runtime stopped")]
    Stopped,
    /// A supervisor runs on a tokio runtime and none is available (neither the current one
    /// nor the runtime's executor). Call from inside a tokio runtime, or give the runtime
    /// an executor with `RuntimeBuilder::executor`.
    #[error("no tokio runtime available")]
    NoExecutor,
}

/// Why a supervisor ended other than by [`stop`](SupervisorHandle::stop) or by all its
/// children ending.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SupervisorError {
    /// The restart intensity was exceeded: its children were stopped and their channels
    /// closed. Allow more restarts (or a longer period) in the supervisor's
    /// [`RestartPolicy`], or fix what keeps failing: the last
    /// failure is the `source()`.
    #[error("supervisor `{supervisor}` gave up after {max_restarts} restarts within {within:?}")]
    GaveUp {
        /// The supervisor's name.
        supervisor: String,
        /// The policy's maximum.
        max_restarts: u32,
        /// The policy's period.
        within: Duration,
        /// What the child that stopped last reported; `None` when it was a normal exit of
        /// a permanent child.
        #[source]
        last_failure: Option<Failure>,
    },
    /// The tokio runtime dropped the supervisor's task.
    #[error("supervisor `{supervisor}` was dropped by its tokio runtime")]
    Dropped {
        /// The supervisor's name.
        supervisor: String,
    },
}

/// The handle of a running supervisor: stop it, or await its end.
#[derive(Debug)]
pub struct SupervisorHandle {
    ident: Ident,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), SupervisorError>>,
}

impl SupervisorHandle {
    /// The supervisor's ident (its name, and a number unique in the runtime).
    pub fn ident(&self) -> &Ident {
        &self.ident
    }

    /// Stops the supervisor: its children are stopped (their work dropped) and dropped,
    /// which closes the channels they publish to, so consumers see the end. Await the
    /// handle to know when that is done.
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Future for SupervisorHandle {
    type Output = Result<(), SupervisorError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let supervisor = self.ident.name().to_owned();
        std::pin::Pin::new(&mut self.task)
            .poll(cx)
            .map(|joined| joined.unwrap_or(Err(SupervisorError::Dropped { supervisor })))
    }
}

impl<C: Send + Sync + 'static> Runtime<C> {
    /// Starts `supervisor` on the current tokio runtime (or the runtime's executor).
    /// Its children start at once, in order.
    ///
    /// ```
    /// # use pipelines::Runtime;
    /// # use pipelines::supervision::{ChildSpec, Supervisor};
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
        let (stop, stopped) = oneshot::channel();
        let core = Arc::clone(self.core());
        let task = executor.spawn(run_supervisor(core, ident.clone(), supervisor, stopped));
        Ok(SupervisorHandle {
            ident,
            stop: Some(stop),
            task,
        })
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
    stop: Option<oneshot::Sender<()>>,
    /// It will not run again.
    done: bool,
}

type Exited = (usize, Box<dyn Child>, Exit);

struct Supervision<C> {
    core: Arc<Core<C>>,
    ident: Ident,
    slots: Vec<Slot>,
    exits: mpsc::UnboundedSender<Exited>,
    inbox: mpsc::UnboundedReceiver<Exited>,
    /// Exits that arrived while the supervisor waited for others.
    pending: VecDeque<Exited>,
}

async fn run_supervisor<C: Send + Sync + 'static>(
    core: Arc<Core<C>>,
    ident: Ident,
    supervisor: Supervisor,
    stopped: oneshot::Receiver<()>,
) -> Result<(), SupervisorError> {
    let mut stopped = Some(stopped);
    let mut shutdown = core.shutdown();
    let (exits, inbox) = mpsc::unbounded_channel();
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
        exits,
        inbox,
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
                exited = run.inbox.recv() => match exited {
                    Some(exited) => exited,
                    // Unreachable: the supervision holds a sender.
                    None => return Ok(()),
                },
                () = stop_requested(&mut stopped, &mut shutdown) => {
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
                let error = Error::new(failure.clone());
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
            let reported = Error::new(error.clone());
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
                () = stop_requested(&mut stopped, &mut shutdown) => {
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

/// Runs `child` until it ends or `stopped` fires. [`Child::run`] is called inside this
/// future's first poll, so whoever polls it under `catch_unwind` also catches a panic
/// raised before the child's own future exists.
async fn run_until_stopped(child: &mut dyn Child, stopped: &mut oneshot::Receiver<()>) -> Exit {
    let run = child.run();
    tokio::select! {
        result = run => match result {
            Ok(()) => Exit::Normal,
            Err(failure) => Exit::Failed(failure),
        },
        _ = stopped => Exit::Stopped,
    }
}

/// Resolves when the handle asked to stop, or the runtime was stopped. A dropped handle is
/// not a request: like a pipeline invocation, a supervisor goes on without its handle.
async fn stop_requested(
    stopped: &mut Option<oneshot::Receiver<()>>,
    shutdown: &mut tokio::sync::watch::Receiver<bool>,
) {
    let handle = async {
        if let Some(receiver) = stopped {
            if receiver.await.is_ok() {
                return;
            }
            *stopped = None;
        }
        std::future::pending::<()>().await
    };
    let runtime = async {
        if shutdown.wait_for(|stopped| *stopped).await.is_err() {
            // The runtime is gone without stopping: nothing will come from it.
            std::future::pending::<()>().await
        }
    };
    tokio::select! {
        () = handle => {}
        () = runtime => {}
    }
}

impl<C: Send + Sync + 'static> Supervision<C> {
    fn emit(&self, index: usize, kind: EventKind) {
        self.core
            .emit(&self.slots[index].ident, self.ident.name_ref(), kind);
    }

    /// Runs child `index` on a task of its own, which gives the child back when it stops.
    fn start(&mut self, index: usize, restart: Option<u32>) {
        let slot = &mut self.slots[index];
        let Some(mut child) = slot.child.take() else {
            return;
        };
        let (stop, mut stopped) = oneshot::channel::<()>();
        slot.stop = Some(stop);
        let exits = self.exits.clone();
        tokio::spawn(async move {
            // A panic is a failure like any other: the child is given back and the
            // policy decides. The `catch_unwind` wraps the call of `run` too, not only
            // the future it returns: a panic before the future exists (in `run` itself,
            // or in a `ChildSpec::from_fn` closure) would otherwise end this task without
            // an exit, and the supervisor would wait for it forever.
            let exit = std::panic::AssertUnwindSafe(run_until_stopped(&mut *child, &mut stopped))
                .catch_unwind()
                .await
                .unwrap_or_else(|panic| {
                    Exit::Failed(Failure {
                        operation: Arc::from("run"),
                        offset: None,
                        error: Error::from_panic(panic),
                    })
                });
            let _ = exits.send((index, child, exit));
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
        let _ = stop.send(());
        while let Some((other, child, exit)) = self.inbox.recv().await {
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
