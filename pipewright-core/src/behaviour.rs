//! Concurrency behaviours ([SEMANTICS 3.2]): what a queue does with a new instance when it
//! already holds `max` live instances.
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
pub enum Behaviour {
    /// Never full: every instance starts at once (the default).
    Unrestricted,
    /// The oldest live instances are cancelled until the new one fits; it starts.
    Restartable,
    /// The new instance never starts; its caller is told it was dropped.
    Dropping,
    /// The new instance waits; waiting instances start in arrival order.
    Enqueued,
    /// Every waiting instance is cancelled and the new one waits in their place.
    KeepLatest,
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
        match self.behaviour {
            Behaviour::Unrestricted => usize::MAX,
            _ => self.max,
        }
    }

    /// Why this configuration cannot be used, if it cannot.
    pub(crate) fn problem(&self) -> Option<&'static str> {
        (self.behaviour != Behaviour::Unrestricted && self.max == 0)
            .then_some("max is 0, nothing could run")
    }
}

impl fmt::Display for Concurrency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.behaviour {
            Behaviour::Unrestricted => write!(f, "unrestricted")?,
            behaviour => write!(f, "{behaviour}(max {})", self.max)?,
        }
        if self.use_existing {
            write!(f, " + use_existing")?;
        }
        Ok(())
    }
}
