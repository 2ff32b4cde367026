//! A held lease: its fencing token for steps to read, and the task that renews it while its
//! instance runs and cancels the instance when it cannot.

use std::sync::Arc;
use std::time::Duration;

use pipelines::{Current, Ident};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::scripts::{Keys, Standing};
use super::{lock, Fleet, Member, Signal};

/// A fleet slot held by a running instance: the queue it belongs to and its **fencing
/// token**, which increases with every admission to that queue. Give the token to the
/// storage a step writes to, and have it refuse a write whose token is below one it has
/// seen: a holder that lost its lease (paused, partitioned) and still writes is refused.
///
/// Steps find it with [`Fleet::lease`].
///
/// ```
/// # use pipelines_redis::Lease;
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

/// What the member keeps of a lease one of its instances holds.
pub(crate) struct Held {
    pub(crate) keys: Keys,
    pub(crate) id: String,
    pub(crate) route: u64,
    pub(crate) token: u64,
    pub(crate) renewal: AbortHandle,
    /// It leads a use-existing run: its result goes to the followers.
    pub(crate) leads: bool,
}

impl Fleet {
    /// The lease the running instance holds: `current`'s own, or that of the nearest
    /// instance it is nested in (the user's pipeline runs nested in the fleet queue's
    /// wrapper). `None` outside a fleet-wide pipeline.
    ///
    /// ```no_run
    /// use pipelines::pipeline;
    /// use pipelines_redis::Fleet;
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
        let leases = lock(&self.member().leases);
        let find = |ident: &Ident| {
            leases.get(&(address, ident.clone())).map(|held| Lease {
                queue: Arc::from(held.keys.queue.as_str()),
                token: held.token,
            })
        };
        if let Some(lease) = find(current.ident()) {
            return Some(lease);
        }
        if let Some(lease) = current.parent().and_then(|parent| find(&parent)) {
            return Some(lease);
        }
        drop(leases);
        // Deeper: the frames of the instances it is nested in.
        let continuation = current.continuation();
        let leases = lock(&self.member().leases);
        let found = continuation.frames().find_map(|frame| {
            leases
                .get(&(address, frame.ident().clone()))
                .map(|held| Lease {
                    queue: Arc::from(held.keys.queue.as_str()),
                    token: held.token,
                })
        });
        found
    }
}

/// Renews a lease every third of its time to live until aborted (the instance released
/// it). A lease found gone (expired, Redis restarted empty) cancels the instance; so does
/// a lease that could not be confirmed for two thirds of its time to live (Redis out of
/// reach): the instance stops while the lease still protects it.
pub(crate) async fn renew(
    member: Arc<Member>,
    keys: Keys,
    id: String,
    ttl: Duration,
    mut signals: mpsc::UnboundedReceiver<Signal>,
    cancel: Arc<dyn Fn() + Send + Sync>,
    mut confirmed: Instant,
) {
    let interval = ttl / 3;
    let ttl_ms = ttl_millis(ttl);
    let mut cancelled = false;
    let mut next = confirmed + interval;
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(next) => {}
            signal = signals.recv() => match signal {
                Some(Signal::Cancel) => {
                    if !cancelled {
                        cancelled = true;
                        cancel();
                    }
                    continue;
                }
                Some(Signal::Check) => {}
                Some(_) => continue,
                None => return,
            },
        }
        let sent = Instant::now();
        match member
            .scripts
            .renew(&member.connection, &keys, &id, ttl_ms)
            .await
        {
            Ok(Standing::Held(_)) => {
                confirmed = sent;
                next = sent + interval;
            }
            Ok(Standing::Cancelling(_)) => {
                confirmed = sent;
                next = sent + interval;
                if !cancelled {
                    cancelled = true;
                    cancel();
                }
            }
            Ok(Standing::Gone | Standing::Waiting(_)) => {
                if !cancelled {
                    cancel();
                }
                return;
            }
            Err(_) => {
                if Instant::now() >= confirmed + interval * 2 {
                    if !cancelled {
                        cancel();
                    }
                    return;
                }
                // Try again soon: the connection reconnects by itself.
                next = Instant::now() + (ttl / 10).max(Duration::from_millis(1));
            }
        }
    }
}

pub(crate) fn ttl_millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}
