//! Concurrency behaviours ([SEMANTICS 3.2]): what a queue does with a new instance when it
//! already holds `max` live instances.
//!
//! Each behaviour's meaning is written once, here: [`Behaviour::when_full`] says what a
//! full queue does, and every place that acts on a behaviour asks it (or a predicate built
//! on it: [`Behaviour::cancels_live`], [`Behaviour::cancels_waiting`],
//! [`Behaviour::refuses_when_full`], [`Behaviour::waits_when_full`],
//! [`Behaviour::is_limited`], and inside the crate `may_run_quick` and
//! `joins_touch_other_entries`) rather than naming behaviours. Adding a behaviour is its
//! variant, its [`WhenFull`] and its admission in `registry/admission.rs`. The shortcut
//! methods (`restartable()`, ...) of `Pipeline`, `Queue` and the fleet's `FleetQueue` are
//! written once too, by [`behaviour_shortcuts!`](crate::__behaviour_shortcuts).
//!
//! [SEMANTICS 3.2]: crate::semantics#32-behaviours

use std::fmt;

/// What a full queue does with a new instance.
///
/// # Examples
///
/// ```
/// use pipewright::{Behaviour, Concurrency};
///
/// let saves = Concurrency::new(Behaviour::Enqueued).with_max(2);
/// assert_eq!(saves.to_string(), "enqueued(max 2)");
/// assert_eq!(Concurrency::default().behaviour(), Behaviour::Unrestricted);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Behaviour {
    /// Never full: every instance starts at once (the default).
    Unrestricted,
    /// The oldest live instances are cancelled until the new one fits; it starts. For
    /// "cancel the stale request".
    ///
    /// ```
    /// use pipewright::{pipeline, Runtime};
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let search = pipeline!(|query: String, _ctx: &()| {
    ///     tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    ///     query = format!("results for {query}");
    /// })
    /// .restartable();
    /// let runtime = Runtime::builder(()).register("search", search).start().unwrap();
    /// let stale = runtime.invoke("search", "ru".to_string()).unwrap();
    /// let fresh = runtime.invoke("search", "rust".to_string()).unwrap();
    /// assert!(stale.await.unwrap_err().is_cancelled());
    /// assert_eq!(fresh.await.unwrap(), "results for rust");
    /// # }
    /// ```
    Restartable,
    /// The new instance never starts; its caller is told it was dropped. For "drop
    /// duplicate clicks".
    ///
    /// ```
    /// use pipewright::{pipeline, Runtime};
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let submit = pipeline!(|form: u32, _ctx: &()| {
    ///     tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    /// })
    /// .dropping();
    /// let runtime = Runtime::builder(()).register("submit", submit).start().unwrap();
    /// let first = runtime.invoke("submit", 1_u32).unwrap();
    /// let double_click = runtime.invoke("submit", 1_u32).unwrap();
    /// assert!(double_click.await.unwrap_err().is_dropped());
    /// assert_eq!(first.await.unwrap(), 1);
    /// # }
    /// ```
    Dropping,
    /// The new instance waits; waiting instances start in arrival order. For "run saves
    /// one at a time".
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use pipewright::{pipeline, Runtime};
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let save = pipeline!(|n: u32, log: &Arc<Mutex<Vec<u32>>>| {
    ///     tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    ///     log.lock().unwrap().push(n);
    /// })
    /// .enqueued();
    /// let runtime = Runtime::builder(Arc::default()).register("save", save).start().unwrap();
    /// let handles: Vec<_> = (1..=3).map(|n| runtime.invoke("save", n as u32).unwrap()).collect();
    /// for handle in handles {
    ///     handle.await.unwrap();
    /// }
    /// assert_eq!(*runtime.context().lock().unwrap(), [1, 2, 3]);
    /// # }
    /// ```
    Enqueued,
    /// Every waiting instance is cancelled and the new one waits in their place. For
    /// "refresh, but only with the newest request".
    ///
    /// ```
    /// use pipewright::{pipeline, Runtime};
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let refresh = pipeline!(|n: u32, _ctx: &()| {
    ///     tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    /// })
    /// .keep_latest();
    /// let runtime = Runtime::builder(()).register("refresh", refresh).start().unwrap();
    /// let running = runtime.invoke("refresh", 1_u32).unwrap();
    /// let replaced = runtime.invoke("refresh", 2_u32).unwrap();
    /// let latest = runtime.invoke("refresh", 3_u32).unwrap();
    /// assert!(replaced.await.unwrap_err().is_cancelled());
    /// assert_eq!((running.await.unwrap(), latest.await.unwrap()), (1, 3));
    /// # }
    /// ```
    KeepLatest,
}

/// What a queue whose slots are all taken does with a new instance: the meaning of a
/// [`Behaviour`], in the terms the admission code acts on.
///
/// ```
/// use pipewright::{Behaviour, WhenFull};
/// assert_eq!(Behaviour::KeepLatest.when_full(), WhenFull::ReplaceWaiting);
/// assert!(Behaviour::KeepLatest.cancels_waiting() && Behaviour::KeepLatest.waits_when_full());
/// assert!(Behaviour::Restartable.cancels_live() && !Behaviour::Restartable.refuses_when_full());
/// assert!(!Behaviour::Unrestricted.is_limited());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WhenFull {
    /// A queue that is never full: the instance starts (unrestricted).
    Start,
    /// The oldest live instances are cancelled until the new one fits (restartable).
    CancelOldest,
    /// The new instance is refused (dropping).
    Refuse,
    /// The new instance waits for a slot, in arrival order (enqueued).
    Wait,
    /// The instances waiting are cancelled, and the new one waits in their place
    /// (keep-latest).
    ReplaceWaiting,
}

impl Behaviour {
    /// What a full queue of this behaviour does with a new instance.
    pub const fn when_full(self) -> WhenFull {
        match self {
            Behaviour::Unrestricted => WhenFull::Start,
            Behaviour::Restartable => WhenFull::CancelOldest,
            Behaviour::Dropping => WhenFull::Refuse,
            Behaviour::Enqueued => WhenFull::Wait,
            Behaviour::KeepLatest => WhenFull::ReplaceWaiting,
        }
    }

    /// A new instance cancels live ones to make room.
    pub const fn cancels_live(self) -> bool {
        matches!(self.when_full(), WhenFull::CancelOldest)
    }

    /// A new instance cancels the instances waiting for a slot.
    pub const fn cancels_waiting(self) -> bool {
        matches!(self.when_full(), WhenFull::ReplaceWaiting)
    }

    /// A full queue refuses a new instance at once.
    pub const fn refuses_when_full(self) -> bool {
        matches!(self.when_full(), WhenFull::Refuse)
    }

    /// A new instance of a full queue waits for a slot.
    pub const fn waits_when_full(self) -> bool {
        matches!(self.when_full(), WhenFull::Wait | WhenFull::ReplaceWaiting)
    }

    /// The queue has a maximum of live instances.
    pub const fn is_limited(self) -> bool {
        !matches!(self.when_full(), WhenFull::Start)
    }

    /// An instance may run as a quick run (no registry entry while its synchronous steps
    /// run): a quick run is live without an entry, so no other invocation of its queue
    /// may need to act on live instances.
    pub(crate) const fn may_run_quick(self) -> bool {
        !self.cancels_live()
    }

    /// Joining cancels other entries of the queue (live or waiting): the join must see
    /// every entry of the queue, wherever its tree keeps it.
    pub(crate) const fn joins_touch_other_entries(self) -> bool {
        self.cancels_live() || self.cancels_waiting()
    }
}

/// The shortcut methods that set a behaviour (`restartable()`, `dropping()`,
/// `enqueued()`, `keep_latest()`, `unrestricted()`), written once for every type that
/// configures a queue: `Pipeline`, `Queue` and the fleet's `FleetQueue`. Expanded inside
/// an `impl` block whose type has a method `$set(self, Behaviour) -> Self`; `$behaviour`
/// is the path the docs link `Behaviour` with, where the macro is expanded.
#[doc(hidden)]
#[macro_export]
macro_rules! __behaviour_shortcuts {
    ($set:ident, $behaviour:literal) => {
        /// Restartable: when the queue is full, its oldest live instances are cancelled
        /// until the new one fits (see
        #[doc = concat!("[`Behaviour::Restartable`](", $behaviour, "::Restartable)).")]
        #[must_use]
        pub fn restartable(self) -> Self {
            self.$set($crate::Behaviour::Restartable)
        }

        /// Dropping: when the queue is full, the new instance never starts and its caller
        /// is told it was dropped (see
        #[doc = concat!("[`Behaviour::Dropping`](", $behaviour, "::Dropping)).")]
        #[must_use]
        pub fn dropping(self) -> Self {
            self.$set($crate::Behaviour::Dropping)
        }

        /// Enqueued: when the queue is full, the new instance waits; waiting instances
        /// start in arrival order (see
        #[doc = concat!("[`Behaviour::Enqueued`](", $behaviour, "::Enqueued)).")]
        #[must_use]
        pub fn enqueued(self) -> Self {
            self.$set($crate::Behaviour::Enqueued)
        }

        /// Keep-latest: when the queue is full, every waiting instance is cancelled and
        /// the new one waits in their place (see
        #[doc = concat!("[`Behaviour::KeepLatest`](", $behaviour, "::KeepLatest)).")]
        #[must_use]
        pub fn keep_latest(self) -> Self {
            self.$set($crate::Behaviour::KeepLatest)
        }

        /// Unrestricted (the default): never full, every instance starts at once (see
        #[doc = concat!("[`Behaviour::Unrestricted`](", $behaviour, "::Unrestricted)).")]
        #[must_use]
        pub fn unrestricted(self) -> Self {
            self.$set($crate::Behaviour::Unrestricted)
        }
    };
}

impl fmt::Display for Behaviour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Behaviour::Unrestricted => "unrestricted",
            Behaviour::Restartable => "restartable",
            Behaviour::Dropping => "dropping",
            Behaviour::Enqueued => "enqueued",
            Behaviour::KeepLatest => "keep_latest",
        })
    }
}

/// A queue's whole concurrency configuration: behaviour, maximum of live instances, and
/// whether equal invocations share one live instance (`use_existing`).
///
/// Pipelines may share a queue only if their `Concurrency` is equal.
///
/// # Examples
///
/// ```
/// use pipewright::{Behaviour, Concurrency};
///
/// let search = Concurrency::new(Behaviour::Restartable).with_use_existing(true);
/// assert_eq!(search.max(), 1);
/// assert!(search.use_existing());
/// assert_eq!(search.to_string(), "restartable(max 1) + use_existing");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Concurrency {
    behaviour: Behaviour,
    max: usize,
    use_existing: bool,
}

impl Default for Concurrency {
    fn default() -> Self {
        Concurrency::new(Behaviour::Unrestricted)
    }
}

impl Concurrency {
    /// `behaviour` with `max` 1 and without `use_existing`.
    ///
    /// ```
    /// # use pipewright::{Behaviour, Concurrency};
    /// assert_eq!(Concurrency::new(Behaviour::Dropping).max(), 1);
    /// ```
    pub const fn new(behaviour: Behaviour) -> Self {
        Concurrency {
            behaviour,
            max: 1,
            use_existing: false,
        }
    }

    /// The same configuration with another behaviour (`max` and `use_existing` kept).
    ///
    /// ```
    /// # use pipewright::{Behaviour, Concurrency};
    /// let queue = Concurrency::new(Behaviour::Enqueued).with_max(3);
    /// assert_eq!(queue.with_behaviour(Behaviour::Dropping).to_string(), "dropping(max 3)");
    /// ```
    #[must_use]
    pub const fn with_behaviour(mut self, behaviour: Behaviour) -> Self {
        self.behaviour = behaviour;
        self
    }

    /// The same configuration with at most `max` live instances. `max` must be at least 1
    /// (0 is refused when a pipeline joins its queue, with [`InvalidConcurrency`]); it is
    /// ignored by [`Behaviour::Unrestricted`].
    ///
    /// [`InvalidConcurrency`]: crate::InvokeError::InvalidConcurrency
    ///
    /// ```
    /// # use pipewright::{Behaviour, Concurrency};
    /// assert_eq!(Concurrency::new(Behaviour::Restartable).with_max(3).max(), 3);
    /// ```
    #[must_use]
    pub const fn with_max(mut self, max: usize) -> Self {
        self.max = max;
        self
    }

    /// The same configuration, sharing live instances between equal invocations or not.
    ///
    /// ```
    /// # use pipewright::{Behaviour, Concurrency};
    /// assert!(Concurrency::new(Behaviour::Enqueued).with_use_existing(true).use_existing());
    /// ```
    #[must_use]
    pub const fn with_use_existing(mut self, use_existing: bool) -> Self {
        self.use_existing = use_existing;
        self
    }

    /// What a full queue does.
    ///
    /// ```
    /// # use pipewright::{Behaviour, Concurrency};
    /// assert_eq!(Concurrency::new(Behaviour::KeepLatest).behaviour(), Behaviour::KeepLatest);
    /// ```
    pub const fn behaviour(&self) -> Behaviour {
        self.behaviour
    }

    /// The maximum number of live instances (meaningless when unrestricted).
    ///
    /// ```
    /// # use pipewright::Concurrency;
    /// assert_eq!(Concurrency::default().max(), 1);
    /// ```
    pub const fn max(&self) -> usize {
        self.max
    }

    /// Whether an invocation equal to a live one shares that instance's result.
    ///
    /// ```
    /// # use pipewright::Concurrency;
    /// assert!(!Concurrency::default().use_existing());
    /// ```
    pub const fn use_existing(&self) -> bool {
        self.use_existing
    }

    /// How many instances may be live at once.
    pub(crate) fn limit(&self) -> usize {
        if self.behaviour.is_limited() {
            self.max
        } else {
            usize::MAX
        }
    }

    /// Why this configuration cannot be used, if it cannot.
    pub(crate) fn problem(&self) -> Option<&'static str> {
        (self.behaviour.is_limited() && self.max == 0).then_some("max is 0, nothing could run")
    }
}

impl fmt::Display for Concurrency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.behaviour.is_limited() {
            write!(f, "{}(max {})", self.behaviour, self.max)?;
        } else {
            write!(f, "{}", self.behaviour)?;
        }
        if self.use_existing {
            write!(f, " + use_existing")?;
        }
        Ok(())
    }
}
