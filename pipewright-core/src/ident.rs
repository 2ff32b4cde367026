//! Names and idents: how pipelines, queues and instances are named. A module of its own
//! so that the registry, the interpreter and the runtime all use it without depending on
//! each other.

use std::collections::HashSet;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

/// A name that is either static (a pipeline's site) or shared (registration names, explicit
/// and per-key queue names). Equality and hashing look at the text only.
#[derive(Clone)]
pub(crate) enum Name {
    Static(&'static str),
    Shared(Arc<str>),
}

impl Name {
    pub(crate) fn as_str(&self) -> &str {
        match self {
            Name::Static(name) => name,
            Name::Shared(name) => name,
        }
    }
}

impl PartialEq for Name {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Name {}

impl Hash for Name {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text of a registration name, kept for the life of the process: every instance's
/// ident names its pipeline, and a `&'static str` is copied with no reference count to
/// write (an `Arc<str>` shared by every invocation of a pipeline, from every thread, is
/// one more write they share). Each distinct name is kept once, however many runtimes
/// register it.
pub(crate) fn interned(name: &str) -> &'static str {
    static NAMES: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut names = NAMES
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    match names.get(name) {
        Some(kept) => kept,
        None => {
            let kept: &'static str = Box::leak(name.into());
            names.insert(kept);
            kept
        }
    }
}

/// The identity of one pipeline instance: the pipeline's name and a number unique within
/// its runtime.
///
/// # Examples
///
/// ```
/// use pipewright::{pipeline, Runtime};
///
/// let p = pipeline!(|value: i32, _ctx: &()| {});
/// let runtime = Runtime::builder(()).register("echo", p).start().unwrap();
/// let first = runtime.invoke("echo", 1).unwrap();
/// let second = runtime.invoke("echo", 2).unwrap();
/// assert_eq!(first.ident().name(), "echo");
/// assert_ne!(first.ident(), second.ident());
/// assert_eq!(second.ident().to_string(), format!("echo#{}", second.ident().id()));
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Ident {
    pub(crate) name: Name,
    pub(crate) id: u64,
}

impl Ident {
    pub(crate) fn name_ref(&self) -> &Name {
        &self.name
    }

    /// The name the pipeline was invoked by: its registration name, or for an unregistered
    /// pipeline its site name (`pipeline@file:line:column`).
    pub fn name(&self) -> &str {
        self.name.as_str()
    }

    /// The instance number, unique within the runtime.
    pub fn id(&self) -> u64 {
        self.id
    }
}

impl fmt::Display for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.name.as_str(), self.id)
    }
}

impl fmt::Debug for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ident({self})")
    }
}
