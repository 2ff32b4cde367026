//! Introspection ([SEMANTICS 5]): snapshots of the live instances and of each queue.
//!
//! Snapshots are taken under the runtime's lock and handed out as plain values, so
//! looking at them never blocks the runtime. [`Runtime::active`](crate::Runtime::active),
//! [`Runtime::instance`](crate::Runtime::instance) and
//! [`Runtime::queue_info`](crate::Runtime::queue_info) return them.
//!
//! ```
//! use pipewright::introspection::{InstanceState, QueueInfo};
//! use pipewright::{pipeline, Runtime};
//!
//! let runtime = Runtime::builder(()).register("inc", pipeline!(|v: u8, _c: &()| { v = v + 1; })).start().unwrap();
//! runtime.invoke("inc", 1_u8).unwrap();
//! let queue: QueueInfo = runtime.queue_info("inc").unwrap();
//! assert_eq!(queue.performed(), 1);
//! assert!(runtime.active().is_empty());
//! # let _ = InstanceState::Running;
//! ```
//!
//! [SEMANTICS 5]: crate::semantics#5-the-runtime

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use crate::behaviour::Concurrency;
use crate::control::ErasedControl;
use crate::error::Error;
use crate::ident::Ident;

/// Where a live instance is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum InstanceState {
    /// Admitted, waiting for a slot in its queue.
    Waiting,
    /// Running its steps.
    Running,
    /// Waiting on a future or a child that is not ready.
    Suspended,
    /// Cancelled: dropping its work and running `finally!`. Holds no slot.
    Cancelling,
    /// Done with its own steps; detached children are still live. Holds its slot.
    WaitingForChildren,
}

/// A value kept by the runtime without its type: an instance's argument or a queue's
/// last result. Recover it with [`downcast_ref`](Value::downcast_ref).
///
/// # Examples
///
/// ```
/// use pipewright::{pipeline, Runtime};
///
/// let runtime = Runtime::builder(())
///     .register("double", pipeline!(|value: u32, _ctx: &()| { value = value * 2; }))
///     .start()
///     .unwrap();
/// runtime.invoke("double", 21_u32).unwrap();
/// let last = runtime.queue_info("double").unwrap().last_result().cloned().unwrap();
/// assert_eq!(last.downcast_ref::<u32>(), Some(&42));
/// assert_eq!(last.downcast_ref::<i64>(), None);
/// ```
#[derive(Clone)]
pub struct Value {
    source: Source,
}

/// Where a [`Value`] is kept.
#[derive(Clone)]
enum Source {
    Argument(Arc<dyn ErasedControl>),
    /// The result an instance's control block holds.
    Result(Arc<dyn ErasedControl>),
    /// A result kept on its own (an instance that ran without a control block).
    Kept(Arc<dyn ErasedKept>),
}

impl Value {
    pub(crate) fn argument(control: Arc<dyn ErasedControl>) -> Self {
        Value {
            source: Source::Argument(control),
        }
    }

    pub(crate) fn result(kept: &KeptResult) -> Self {
        Value {
            source: match kept {
                KeptResult::InControl(control) => Source::Result(Arc::clone(control)),
                KeptResult::Alone(kept) => Source::Kept(Arc::clone(kept)),
            },
        }
    }

    fn any(&self) -> Option<&dyn Any> {
        match &self.source {
            Source::Argument(control) => control.argument_any(),
            Source::Result(control) => control.result_any(),
            Source::Kept(kept) => Some(kept.as_any()),
        }
    }

    /// The value, if it is a `V`.
    pub fn downcast_ref<V: 'static>(&self) -> Option<&V> {
        self.any()?.downcast_ref()
    }

    /// The name of the value's type.
    pub fn type_name(&self) -> &'static str {
        match &self.source {
            Source::Argument(control) | Source::Result(control) => control.value_type(),
            Source::Kept(kept) => kept.value_type(),
        }
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Value<{}>", self.type_name())
    }
}

/// A queue's last result, as the registry keeps it: in the control block of the instance
/// that returned it, or on its own when that instance had none (it ran to its end inside
/// `invoke`, see `runtime/quick_run.rs`).
pub(crate) enum KeptResult {
    InControl(Arc<dyn ErasedControl>),
    Alone(Arc<dyn ErasedKept>),
}

/// A value kept on its own, without its type.
pub(crate) trait ErasedKept: Send + Sync + 'static {
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
    fn value_type(&self) -> &'static str;
}

/// The concrete [`ErasedKept`]: a `V` kept on its own.
pub(crate) struct Kept<V>(pub(crate) V);

impl<V: Send + Sync + 'static> ErasedKept for Kept<V> {
    fn as_any(&self) -> &dyn Any {
        &self.0
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        &mut self.0
    }

    fn value_type(&self) -> &'static str {
        std::any::type_name::<V>()
    }
}

/// One live instance, as seen by [`Runtime::active`](crate::Runtime::active).
#[derive(Debug, Clone)]
pub struct InstanceInfo {
    pub(crate) ident: Ident,
    pub(crate) queue: String,
    pub(crate) state: InstanceState,
    pub(crate) parent: Option<Ident>,
    pub(crate) detached: bool,
    pub(crate) argument: Value,
}

impl InstanceInfo {
    /// The instance's identity.
    pub fn ident(&self) -> &Ident {
        &self.ident
    }

    /// The queue it is in.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// Where it is in its life.
    pub fn state(&self) -> InstanceState {
        self.state
    }

    /// The instance it runs as a child of, if any.
    pub fn parent(&self) -> Option<&Ident> {
        self.parent.as_ref()
    }

    /// `true` if it runs detached from its parent.
    pub fn is_detached(&self) -> bool {
        self.detached
    }

    /// The argument it was invoked with.
    pub fn argument(&self) -> &Value {
        &self.argument
    }
}

/// The live instances of one queue.
#[derive(Debug, Clone)]
pub struct ActiveQueue {
    pub(crate) name: String,
    pub(crate) instances: Vec<InstanceInfo>,
}

impl ActiveQueue {
    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its live instances: slot holders in arrival order, then waiting ones, then those
    /// being cancelled.
    pub fn instances(&self) -> &[InstanceInfo] {
        &self.instances
    }
}

/// What a queue holds and has done, as seen by [`Runtime::queue_info`](crate::Runtime::queue_info).
#[derive(Debug, Clone)]
pub struct QueueInfo {
    pub(crate) name: String,
    pub(crate) concurrency: Concurrency,
    pub(crate) running: usize,
    pub(crate) waiting: usize,
    pub(crate) performed: u64,
    pub(crate) last_result: Option<Value>,
    pub(crate) last_error: Option<Error>,
    pub(crate) last_cancelled: Option<Ident>,
}

impl QueueInfo {
    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its concurrency configuration.
    pub fn concurrency(&self) -> Concurrency {
        self.concurrency
    }

    /// Instances holding a slot: running, suspended, or waiting for their children.
    pub fn running(&self) -> usize {
        self.running
    }

    /// Instances waiting for a slot.
    pub fn waiting(&self) -> usize {
        self.waiting
    }

    /// How many started instances have completed (any way) in this queue.
    pub fn performed(&self) -> u64 {
        self.performed
    }

    /// The value of the last instance that finished with one.
    pub fn last_result(&self) -> Option<&Value> {
        self.last_result.as_ref()
    }

    /// The error of the last instance that failed.
    pub fn last_error(&self) -> Option<&Error> {
        self.last_error.as_ref()
    }

    /// The last instance that was cancelled.
    pub fn last_cancelled(&self) -> Option<&Ident> {
        self.last_cancelled.as_ref()
    }
}
