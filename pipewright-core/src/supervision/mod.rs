//! Supervision ([SEMANTICS 6]), in the spirit of Erlang/OTP: restart policies with an
//! intensity limit and backoff (shared with the pipeline `retry` modifier), children that
//! resume where they failed, restart strategies and restart types.
//!
//! A supervisor runs on a tokio task of its own, started by
//! [`Runtime::supervise`](crate::Runtime::supervise). Each child runs on a task of its own
//! and is given back to the supervisor when it stops, so a restart calls [`Child::run`]
//! again on the same value: a child keeps what it needs to resume (a producer, its
//! offset). Children are stopped by a signal, not aborted, for the same reason.
//!
//! ```
//! use std::time::Duration;
//! use pipewright::supervision::{ChildSpec, RestartPolicy, Strategy, Supervisor};
//!
//! let supervisor = Supervisor::new("ingest")
//!     .strategy(Strategy::OneForOne)
//!     .policy(RestartPolicy::new(3, Duration::from_secs(5)).unwrap())
//!     .child(ChildSpec::from_fn("idle", || std::future::pending()));
//! # let _ = supervisor;
//! ```
//!
//! [SEMANTICS 6]: crate::semantics#6-supervision-and-producers

mod running;

pub use self::running::SupervisorHandle;
pub use crate::policy::{Backoff, RestartPolicy};
pub use crate::producer::{source_fn, Producer, Source};

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use crate::error::{BoxError, Error};
use crate::ident::Name;

/// Why a child stopped with a failure: what failed, at which offset (if it has one), and
/// the error. It is the tagged message of [SEMANTICS 6]: reported through the error
/// reporter (wrapped in an [`Error`], from which `downcast_ref::<Failure>()` recovers it)
/// and the watcher, never a silent stop.
///
/// # Examples
///
/// ```
/// use pipewright::supervision::Failure;
///
/// let failure = Failure::new("read", "session timeout").at(42);
/// assert_eq!(failure.operation(), "read");
/// assert_eq!(failure.offset(), Some(42));
/// // What failed, once; the error is the `source()`.
/// assert_eq!(failure.to_string(), "read failed at offset 42");
/// assert_eq!(failure.error().message(), "session timeout");
/// ```
///
/// [SEMANTICS 6]: crate::semantics#6-supervision-and-producers
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
/// use pipewright::BoxFuture;
/// use pipewright::supervision::{Child, Failure};
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
/// use pipewright::supervision::{ChildSpec, Restart};
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
    /// use pipewright::supervision::{ChildSpec, Failure};
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
/// [`Runtime::supervise`](crate::Runtime::supervise); failures, restarts and a give-up are reported through that
/// runtime's error reporter and watcher.
///
/// # Examples
///
/// ```
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use std::sync::Arc;
/// use std::time::Duration;
/// use pipewright::{RestartPolicy, Runtime};
/// use pipewright::supervision::{ChildSpec, Failure, Restart, Supervisor};
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

/// Why [`Runtime::supervise`](crate::Runtime::supervise) refused to start a supervisor. Nothing was started.
///
/// ```
/// use pipewright::Runtime;
/// use pipewright::supervision::{ChildSpec, SuperviseError, Supervisor};
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
