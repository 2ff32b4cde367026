//! A held lease: its fencing token, for steps to read. (The member's renewer keeps it
//! alive: `renewal.rs`.)

use std::sync::Arc;
use std::time::Duration;

use pipewright::{Current, Ident};

use super::{lock, Fleet};

/// A fleet slot held by a running instance: the queue it belongs to and its **fencing
/// token**, which increases with every admission to that queue. Give the token to the
/// storage a step writes to, and have it refuse a write whose token is below one it has
/// seen: a holder that lost its lease (paused, partitioned) and still writes is refused.
///
/// Steps find it with [`Fleet::lease`].
///
/// ```
/// # use pipewright_redis::Lease;
/// fn accept(last_seen: u64, lease: &Lease) -> bool {
///     lease.token() > last_seen
/// }
/// # let _ = accept;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    queue: Arc<str>,
    token: u64,
}

impl Lease {
    pub(crate) fn new(queue: &str, token: u64) -> Self {
        Lease {
            queue: Arc::from(queue),
            token,
        }
    }

    /// The fleet queue the slot belongs to (with its key, for a per-key queue).
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// The fencing token: greater than every token given earlier in this queue.
    pub fn token(&self) -> u64 {
        self.token
    }
}

/// Which runtime (its context's address: unique among live runtimes, and a runtime lives
/// as long as its instances) and which instance holds a lease.
pub(crate) type LeaseKey = (usize, Ident);

pub(crate) fn lease_key<V, C: Send + Sync + 'static>(current: &Current<'_, V, C>) -> LeaseKey {
    (runtime_address(current), current.ident().clone())
}

fn runtime_address<V, C: Send + Sync + 'static>(current: &Current<'_, V, C>) -> usize {
    std::ptr::from_ref(current.runtime().context()).cast::<u8>() as usize
}

impl Fleet {
    /// The lease the running instance holds: `current`'s own, or that of the nearest
    /// instance it is nested in (the user's pipeline runs nested in the fleet queue's
    /// wrapper). `None` outside a fleet-wide pipeline.
    ///
    /// ```no_run
    /// use pipewright::pipeline;
    /// use pipewright_redis::Fleet;
    ///
    /// # fn build(fleet: Fleet) {
    /// let save = pipeline!(|doc: String, fleet: &Fleet, current| {
    ///     {
    ///         let token = fleet.lease(current).map(|lease| lease.token());
    ///         println!("saving {doc} with fencing token {token:?}");
    ///     };
    /// });
    /// let save = fleet.queue("saves").enqueued().wrap(save);
    /// # let _ = save;
    /// # }
    /// # let _ = build;
    /// ```
    pub fn lease<V, C>(&self, current: &Current<'_, V, C>) -> Option<Lease>
    where
        V: Clone + Send + Sync + 'static,
        C: Send + Sync + 'static,
    {
        let address = runtime_address(current);
        let registry = lock(&self.member().registry);
        let find = |ident: &Ident| registry.lease(&(address, ident.clone()));
        if let Some(lease) = find(current.ident()) {
            return Some(lease);
        }
        if let Some(lease) = current.parent().and_then(|parent| find(&parent)) {
            return Some(lease);
        }
        drop(registry);
        // Deeper: the frames of the instances it is nested in.
        let continuation = current.continuation();
        let registry = lock(&self.member().registry);
        let found = continuation
            .frames()
            .find_map(|frame| registry.lease(&(address, frame.ident().clone())));
        found
    }
}

pub(crate) fn ttl_millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}
