//! Queues ([SEMANTICS 3.1]): which queue an instance joins, the queue as a value, and the
//! hashers of the runtime's maps: a fast fixed one for keys the runtime or the program
//! chooses, a keyed one for keys that come from arguments. What the registry keeps per
//! queue is in `registry/queue_state.rs`.
//!
//! [SEMANTICS 3.1]: crate::semantics#31-which-queue-an-instance-joins

use std::borrow::Cow;
use std::collections::hash_map::{DefaultHasher, RandomState};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::{Arc, OnceLock};

use crate::behaviour::{Behaviour, Concurrency};
use crate::ident::Name;

/// FNV-1a, for maps whose keys the runtime or the program chooses: instance and queue
/// ids, registered pipeline names. Nobody outside the program picks them, so a fast
/// fixed hash beats SipHash's flooding resistance on the invoke path. Keys computed from
/// arguments (which whoever calls the program may choose) use [`KeyedState`] instead.
pub(crate) struct FastHasher(u64);

impl Default for FastHasher {
    fn default() -> Self {
        FastHasher(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0 ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn write_u64(&mut self, value: u64) {
        // Instance numbers: one multiply-xorshift instead of eight FNV rounds.
        let mixed = (self.0 ^ value).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = mixed ^ (mixed >> 29);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

pub(crate) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;
pub(crate) type FastSet<K> = HashSet<K, BuildHasherDefault<FastHasher>>;

/// SipHash-1-3 (std's `RandomState`) under keys drawn once per process, for what is
/// hashed from arguments: `use_existing` arguments and the names of per-key queues. With
/// a fixed public hash such as FNV, whoever chooses the arguments can choose ones that
/// land in the same bucket and turn every lookup, made under the registry's lock, into a
/// scan; with secret keys they cannot tell where an argument lands. One set of keys per
/// process, not per map, because `use_existing` hashes through a plain `fn` pointer
/// (`ArgsIdentity::hash`), which carries no state. Drawing the keys and hashing allocate
/// nothing.
#[derive(Clone, Copy, Default)]
pub(crate) struct KeyedState;

impl BuildHasher for KeyedState {
    type Hasher = DefaultHasher;

    fn build_hasher(&self) -> DefaultHasher {
        static KEYS: OnceLock<RandomState> = OnceLock::new();
        KEYS.get_or_init(RandomState::new).build_hasher()
    }
}

pub(crate) type KeyedMap<K, V> = HashMap<K, V, KeyedState>;

/// A named queue that carries its own concurrency configuration. Pipelines placed in it
/// with [`Pipeline::in_queue`](crate::Pipeline::in_queue) take both its name and its
/// configuration, so they cannot disagree about how the queue behaves.
///
/// # Examples
///
/// ```
/// use pipewright::{pipeline, Queue, Runtime};
///
/// let saves = Queue::new("saves").enqueued();
/// let save_title = pipeline!(|value: String, _ctx: &()| {}).in_queue(&saves);
/// let save_body = pipeline!(|value: String, _ctx: &()| {}).in_queue(&saves);
/// let runtime = Runtime::builder(())
///     .register("save-title", save_title)
///     .register("save-body", save_body)
///     .start()
///     .unwrap();
/// runtime.invoke("save-title", "t".to_string()).unwrap();
/// assert_eq!(runtime.queue_info("saves").unwrap().performed(), 1);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queue {
    name: Arc<str>,
    concurrency: Concurrency,
}

impl Queue {
    /// An unrestricted queue named `name`.
    ///
    /// ```
    /// # use pipewright::Queue;
    /// assert_eq!(Queue::new("uploads").name(), "uploads");
    /// ```
    pub fn new(name: impl Into<String>) -> Self {
        Queue {
            name: Arc::from(name.into()),
            concurrency: Concurrency::default(),
        }
    }

    /// The queue's name.
    ///
    /// ```
    /// # use pipewright::Queue;
    /// assert_eq!(Queue::new("q").name(), "q");
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The queue's concurrency configuration.
    ///
    /// ```
    /// # use pipewright::{Behaviour, Queue};
    /// assert_eq!(Queue::new("q").dropping().concurrency().behaviour(), Behaviour::Dropping);
    /// ```
    pub fn concurrency(&self) -> Concurrency {
        self.concurrency
    }

    crate::__behaviour_shortcuts!(behaviour, "crate::Behaviour");

    /// Sets the maximum number of live instances (default 1).
    ///
    /// ```
    /// # use pipewright::Queue;
    /// assert_eq!(Queue::new("q").enqueued().max(3).concurrency().max(), 3);
    /// ```
    #[must_use]
    pub fn max(mut self, max: usize) -> Self {
        self.concurrency = self.concurrency.with_max(max);
        self
    }

    /// Makes equal invocations of the same pipeline share one live instance. Pipelines
    /// placed in such a queue must also call
    /// [`Pipeline::use_existing`](crate::Pipeline::use_existing), which is where their
    /// value type is required to be `Hash + Eq`.
    ///
    /// ```
    /// # use pipewright::Queue;
    /// assert!(Queue::new("q").use_existing().concurrency().use_existing());
    /// ```
    #[must_use]
    pub fn use_existing(mut self) -> Self {
        self.concurrency = self.concurrency.with_use_existing(true);
        self
    }

    fn behaviour(mut self, behaviour: Behaviour) -> Self {
        self.concurrency = self.concurrency.with_behaviour(behaviour);
        self
    }

    pub(crate) fn shared_name(&self) -> Arc<str> {
        Arc::clone(&self.name)
    }
}

/// How a pipeline's queue name is found ([SEMANTICS 3.1]).
///
/// [SEMANTICS 3.1]: crate::semantics#31-which-queue-an-instance-joins
pub(crate) enum QueueSpec<V> {
    /// The implicit queue of the `pipeline!` site.
    Implicit,
    /// Renamed by registration (replaces `Implicit` only).
    Registered(Name),
    /// Set explicitly: kept in every case.
    Explicit(Name),
    /// Computed from the invocation's argument: one queue per key.
    Keyed(Arc<dyn Fn(&V) -> String + Send + Sync>),
}

/// The queue an invocation joins, as far as it is known without looking at the argument.
pub(crate) enum QueueOf<'a, V> {
    /// Named by the configuration, or after the `pipeline!` site (borrowed where possible:
    /// no reference count to touch).
    Fixed(Cow<'a, Name>),
    /// One queue per key: the key function, to call on the argument.
    Keyed(&'a (dyn Fn(&V) -> String + Send + Sync)),
}

impl<V> QueueSpec<V> {
    /// The queue of a pipeline whose `pipeline!` site is named `site`.
    pub(crate) fn of(&self, site: &'static str) -> QueueOf<'_, V> {
        match self {
            QueueSpec::Implicit => QueueOf::Fixed(Cow::Owned(Name::Static(site))),
            QueueSpec::Registered(queue) | QueueSpec::Explicit(queue) => {
                QueueOf::Fixed(Cow::Borrowed(queue))
            }
            QueueSpec::Keyed(key) => QueueOf::Keyed(&**key),
        }
    }
}

impl<V> Clone for QueueSpec<V> {
    fn clone(&self) -> Self {
        match self {
            QueueSpec::Implicit => QueueSpec::Implicit,
            QueueSpec::Registered(name) => QueueSpec::Registered(name.clone()),
            QueueSpec::Explicit(name) => QueueSpec::Explicit(name.clone()),
            QueueSpec::Keyed(key) => QueueSpec::Keyed(Arc::clone(key)),
        }
    }
}

impl<V> fmt::Debug for QueueSpec<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueueSpec::Implicit => f.write_str("implicit"),
            QueueSpec::Registered(name) => write!(f, "registered {name:?}"),
            QueueSpec::Explicit(name) => write!(f, "explicit {name:?}"),
            QueueSpec::Keyed(_) => f.write_str("per key"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::hash::{BuildHasher, BuildHasherDefault};

    use super::{FastHasher, KeyedState};

    #[test]
    fn the_keyed_hash_is_stable_within_the_process_and_not_the_fixed_one() {
        // Equal arguments must meet in the `use_existing` index, from any thread.
        let here = KeyedState.hash_one("article-7");
        let elsewhere = std::thread::spawn(|| KeyedState.hash_one("article-7"))
            .join()
            .unwrap();
        assert_eq!(here, elsewhere);
        assert_ne!(
            here,
            BuildHasherDefault::<FastHasher>::default().hash_one("article-7"),
            "keyed by the process's secret keys, not FNV"
        );
    }
}
