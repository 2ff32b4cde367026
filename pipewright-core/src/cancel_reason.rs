//! Why an instance was cancelled ([SEMANTICS 4]): one value, carried from where the
//! cancellation was decided to the caller ([`Error::Cancelled`]), to `finally!` (its
//! `error`) and to the watcher ([`EventKind::Cancelling`] and [`EventKind::Cancelled`]).
//!
//! Which instances get which reason: a cancellation names one instance (or a tree's top,
//! when the runtime stops) and climbs through its non-detached parents to the top. Every
//! instance of the tree gets the source's reason (as a Go context's cause reaches the
//! contexts derived from it); those the cancellation named or climbed through get it
//! directly, every other one *with its parent* (`by_parent`: its parent was cancelled).
//! A pipeline that wraps another (a fleet-wide queue) so passes its reason, such as a
//! lost lease, to the pipeline it runs. The first reason an instance gets is the one it
//! keeps.
//!
//! [SEMANTICS 4]: crate::semantics#4-cancellation
//! [`Error::Cancelled`]: crate::Error::Cancelled
//! [`EventKind::Cancelling`]: crate::EventKind::Cancelling
//! [`EventKind::Cancelled`]: crate::EventKind::Cancelled

use std::fmt;

/// Why an instance was cancelled.
///
/// A service answers differently for each: "409 superseded" for
/// [`Replaced`](CancelReason::Replaced), "503 shutting down" for
/// [`Stopped`](CancelReason::Stopped), nothing at all for
/// [`HandleDropped`](CancelReason::HandleDropped) (the client is gone).
///
/// # Examples
///
/// ```
/// use pipewright::{pipeline, CancelReason, Error, Runtime};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let search = pipeline!(|query: String, _ctx: &()| {
///     tokio::task::yield_now().await;
///     query = format!("results for {query}");
/// })
/// .restartable();
/// let runtime = Runtime::builder(()).start().unwrap();
/// let first = runtime.invoke_pipeline(&search, "ru".to_string()).unwrap();
/// let second = runtime.invoke_pipeline(&search, "rust".to_string()).unwrap();
/// let error = first.await.unwrap_err();
/// assert!(matches!(
///     error,
///     Error::Cancelled { reason: CancelReason::Replaced, by_parent: false }
/// ));
/// assert_eq!(error.cancel_reason(), Some(CancelReason::Replaced));
/// assert_eq!(error.to_string(), "instance cancelled: replaced by a newer instance");
/// assert_eq!(second.await.unwrap(), "results for rust");
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CancelReason {
    /// A newer instance took its place: its queue is restartable, or keep-latest (the
    /// instance waited, and a newer one replaced it).
    Replaced,
    /// Cancelled by its ident: [`Runtime::cancel`](crate::Runtime::cancel),
    /// [`cancel_all`](crate::Runtime::cancel_all) or
    /// [`Invocation::cancel`](crate::Invocation::cancel) named it, or one of its
    /// descendants (cancellation climbs).
    Requested,
    /// The runtime stopped ([`Runtime::stop`](crate::Runtime::stop) or a
    /// [`shutdown`](crate::Runtime::shutdown)).
    Stopped,
    /// A [`shutdown`](crate::Runtime::shutdown)'s grace period ran out while the instance
    /// was still live (one `stop` spared, or one still in its `finally!`'s children).
    ShutdownDeadline,
    /// The instance it ran under ran out of time
    /// ([`Pipeline::timeout`](crate::Pipeline::timeout)): the timed-out instance fails
    /// with [`Error::TimedOut`](crate::Error::TimedOut), and the child it waited on is
    /// cancelled, by its parent, with this reason.
    TimedOut,
    /// Its handle was dropped, and the handle was tied to it with
    /// [`Invocation::cancel_on_drop`](crate::Invocation::cancel_on_drop).
    HandleDropped,
    /// One of its own steps (or a descendant's, in a non-detached child) returned the
    /// [`Cancel`](crate::Cancel) marker.
    Step,
    /// It would have been a child (a fork, or a child nested in `finally!`) of an
    /// instance that was being cancelled or had ended: it never started.
    ParentEnded,
    /// A child it waited on was dropped by its queue, so it could not go on: its caller
    /// is told [`Error::Dropped`](crate::Error::Dropped), and the watcher this reason.
    ChildDropped,
    /// The instance held a slot of a fleet-wide queue and its lease was lost (the store
    /// was unreachable for longer than the lease): another process may run in its place.
    LeaseLost,
}

impl CancelReason {
    /// Every reason, in declaration order (for tests and for tables of counts).
    pub const ALL: [CancelReason; 10] = [
        CancelReason::Replaced,
        CancelReason::Requested,
        CancelReason::Stopped,
        CancelReason::ShutdownDeadline,
        CancelReason::TimedOut,
        CancelReason::HandleDropped,
        CancelReason::Step,
        CancelReason::ParentEnded,
        CancelReason::ChildDropped,
        CancelReason::LeaseLost,
    ];

    /// A short name without spaces, stable across releases: a label for logs and metrics.
    ///
    /// ```
    /// assert_eq!(pipewright::CancelReason::LeaseLost.as_str(), "lease_lost");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            CancelReason::Replaced => "replaced",
            CancelReason::Requested => "requested",
            CancelReason::Stopped => "stopped",
            CancelReason::ShutdownDeadline => "shutdown_deadline",
            CancelReason::TimedOut => "timed_out",
            CancelReason::HandleDropped => "handle_dropped",
            CancelReason::Step => "step",
            CancelReason::ParentEnded => "parent_ended",
            CancelReason::ChildDropped => "child_dropped",
            CancelReason::LeaseLost => "lease_lost",
        }
    }

    /// The reason whose [`as_str`](CancelReason::as_str) name is `name`, if any: for a
    /// reason sent between processes as text.
    ///
    /// ```
    /// use pipewright::CancelReason;
    /// assert_eq!(CancelReason::from_name("replaced"), Some(CancelReason::Replaced));
    /// assert_eq!(CancelReason::from_name("bored"), None);
    /// ```
    pub fn from_name(name: &str) -> Option<CancelReason> {
        CancelReason::ALL
            .into_iter()
            .find(|reason| reason.as_str() == name)
    }

    /// The reason as one byte, for an atomic (never 0: 0 is "no reason yet"): its place
    /// in [`ALL`](CancelReason::ALL), which lists the variants in declaration order.
    pub(crate) fn to_byte(self) -> u8 {
        self as u8 + 1
    }

    /// The reason a byte from [`to_byte`](CancelReason::to_byte) stands for.
    pub(crate) fn from_byte(byte: u8) -> Option<CancelReason> {
        CancelReason::ALL
            .get(usize::from(byte).checked_sub(1)?)
            .copied()
    }
}

impl fmt::Display for CancelReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CancelReason::Replaced => "replaced by a newer instance",
            CancelReason::Requested => "cancelled by its ident",
            CancelReason::Stopped => "the runtime stopped",
            CancelReason::ShutdownDeadline => "the shutdown's grace period ran out",
            CancelReason::TimedOut => "the instance it ran under timed out",
            CancelReason::HandleDropped => "its handle was dropped",
            CancelReason::Step => "a step cancelled it",
            CancelReason::ParentEnded => "its parent had ended",
            CancelReason::ChildDropped => "a child it waited on was dropped",
            CancelReason::LeaseLost => "its fleet lease was lost",
        })
    }
}

/// A reason, and whether it reached the instance through its parent: what an instance
/// keeps of its cancellation, inside the crate (the public types spell both fields out:
/// [`Error::Cancelled`](crate::Error::Cancelled)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cancellation {
    pub(crate) reason: CancelReason,
    pub(crate) by_parent: bool,
}

impl Cancellation {
    /// The instance the cancellation named, or a parent it climbed through.
    pub(crate) fn direct(reason: CancelReason) -> Self {
        Cancellation {
            reason,
            by_parent: false,
        }
    }

    /// A descendant: its parent was cancelled for `reason`.
    pub(crate) fn by_parent(reason: CancelReason) -> Self {
        Cancellation {
            reason,
            by_parent: true,
        }
    }

    /// What the caller and `finally!` are told.
    pub(crate) fn error(self) -> crate::Error {
        crate::Error::Cancelled {
            reason: self.reason,
            by_parent: self.by_parent,
        }
    }

    /// The cancellation as one byte, for an atomic (never 0: 0 is "none yet").
    pub(crate) fn to_byte(self) -> u8 {
        self.reason.to_byte() | if self.by_parent { BY_PARENT } else { 0 }
    }

    /// The cancellation a byte from [`to_byte`](Cancellation::to_byte) stands for.
    pub(crate) fn from_byte(byte: u8) -> Option<Cancellation> {
        Some(Cancellation {
            reason: CancelReason::from_byte(byte & !BY_PARENT)?,
            by_parent: byte & BY_PARENT != 0,
        })
    }
}

/// What an instance that sees its cancellation without a reason kept assumes: a request by
/// ident (the registry keeps a reason for every cancellation it marks).
pub(crate) const REQUESTED: Cancellation = Cancellation {
    reason: CancelReason::Requested,
    by_parent: false,
};

/// The bit of [`Cancellation::to_byte`] that says "by its parent".
const BY_PARENT: u8 = 0x80;

#[cfg(test)]
mod tests {
    use super::{CancelReason, Cancellation};

    #[test]
    fn every_reason_survives_the_round_trip_through_a_byte() {
        for reason in CancelReason::ALL {
            assert_ne!(reason.to_byte(), 0);
            assert_eq!(CancelReason::from_byte(reason.to_byte()), Some(reason));
        }
        assert_eq!(CancelReason::from_byte(0), None);
        assert_eq!(CancelReason::from_byte(200), None);
        for reason in CancelReason::ALL {
            assert_eq!(CancelReason::from_name(reason.as_str()), Some(reason));
            for cancellation in [
                Cancellation::direct(reason),
                Cancellation::by_parent(reason),
            ] {
                assert_eq!(
                    Cancellation::from_byte(cancellation.to_byte()),
                    Some(cancellation)
                );
            }
        }
    }
}
