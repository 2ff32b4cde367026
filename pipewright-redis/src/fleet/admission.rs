//! Admission to a fleet queue, as the wrapper's first step runs it: one call when a slot
//! is free; otherwise a waiting place, left when a message (or the member's renewer,
//! which finds what a lost message said) gives the slot or cancels the wait. And the
//! release in the wrapper's `finally!`, sent without waiting for its reply.

use std::sync::Arc;
use std::time::Duration;

use pipewright::{Behaviour, CancelReason, Concurrency, Current, Error, Outcome, WhenFull};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::batch::{self, withdrawal};
use super::lease::{lease_key, ttl_millis};
use super::registry::{CancelFn, Signal};
use super::scripts::{self, AcquireRequest, Acquired, Followed, Keys, Standing};
use super::{lock, Fleet, Member};
use crate::error::FleetError;

pub(crate) type KeyFn<V> = Arc<dyn Fn(&V) -> String + Send + Sync>;

/// How a use-existing queue's arguments and results cross the wire.
pub(crate) struct Codec<V> {
    encode: fn(&V) -> serde_json::Result<String>,
    decode: fn(&str) -> serde_json::Result<V>,
}

impl<V: Serialize + DeserializeOwned> Codec<V> {
    pub(crate) fn json() -> Self {
        Codec {
            encode: |value| serde_json::to_string(value),
            decode: |text| serde_json::from_str(text),
        }
    }
}

/// One wrapped pipeline's way into its fleet queue.
pub(crate) struct Gate<V> {
    pub(crate) fleet: Fleet,
    pub(crate) name: String,
    pub(crate) concurrency: Concurrency,
    pub(crate) lease_ttl: Duration,
    pub(crate) audit: bool,
    pub(crate) key: Option<KeyFn<V>>,
    pub(crate) codec: Option<Codec<V>>,
    /// The queue's keys, when it is one queue (not per key).
    pub(crate) keys: Option<Arc<Keys>>,
    /// The configuration every member of the queue must share, as text.
    pub(crate) config: Arc<str>,
}

/// How many renewals an admission that came late may send before its instance starts.
const RENEW_TRIES: usize = 2;

/// A lease given, confirmed by Redis no earlier than the instant it carries.
enum Fresh {
    Held(Instant),
    /// Held, and asked to give it up at once (restartable).
    Cancelling(Instant),
}

/// Withdraws an id from Redis if its admission is abandoned half-way (the instance was
/// cancelled while it waited, or while its request was on the wire).
struct Pending {
    member: Arc<Member>,
    keys: Arc<Keys>,
    id: Arc<str>,
    number: u64,
    leads: bool,
    armed: bool,
}

impl Pending {
    fn settle(mut self) {
        self.armed = false;
        lock(&self.member.registry).close(self.number);
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        lock(&self.member.registry).close(self.number);
        let payload = if self.leads { "c" } else { "" };
        self.member.detach(withdrawal(
            self.member.connection.clone(),
            Arc::clone(&self.keys),
            Arc::clone(&self.id),
            payload,
        ));
    }
}

/// The behaviour's meaning ([`Behaviour::when_full`]) as the scripts know it.
pub(crate) fn behaviour_code(behaviour: Behaviour) -> &'static str {
    match behaviour.when_full() {
        WhenFull::CancelOldest => "r",
        WhenFull::Refuse => "d",
        WhenFull::Wait => "e",
        WhenFull::ReplaceWaiting => "k",
        // Never full; a meaning added to the core later needs its own code here.
        _ => "u",
    }
}

/// What the calls for the fleet queue `queue` need to know of it.
pub(crate) fn queue_keys(queue: String, audit: bool, concurrency: Concurrency) -> Arc<Keys> {
    let max = if concurrency.behaviour().is_limited() {
        concurrency.max()
    } else {
        i32::MAX as usize
    };
    let restartable = concurrency.behaviour().cancels_live();
    Arc::new(Keys::new(queue, audit, max, restartable))
}

impl<V> Gate<V>
where
    V: Clone + Send + Sync + 'static,
{
    fn keys(&self, value: &V) -> Arc<Keys> {
        match (&self.keys, &self.key) {
            (Some(keys), _) => Arc::clone(keys),
            (None, Some(key)) => queue_keys(
                format!("{}:{}", self.name, key(value)),
                self.audit,
                self.concurrency,
            ),
            (None, None) => queue_keys(self.name.clone(), self.audit, self.concurrency),
        }
    }

    fn failed<C>(error: FleetError) -> Outcome<V, C> {
        Outcome::Error(Error::new(error))
    }

    /// The wrapper's first step: `Keep` once admitted, the leader's result (a `Break`)
    /// for a follower, `Err(Dropped)` when refused, `Cancel` when the fleet cancelled the
    /// wait, a [`FleetError`] when Redis could not be asked.
    pub(crate) async fn admit<C>(&self, value: &V, current: &Current<'_, V, C>) -> Outcome<V, C>
    where
        C: Send + Sync + 'static,
    {
        let keys = self.keys(value);
        let argument = match &self.codec {
            Some(codec) => match (codec.encode)(value) {
                Ok(json) => json,
                Err(source) => {
                    return Self::failed(FleetError::Encode {
                        queue: keys.queue.clone(),
                        source,
                    })
                }
            },
            None => String::new(),
        };
        let member = self.fleet.member();
        let (number, id, mut signal) =
            lock(&member.registry).open(&member.id, Arc::clone(&keys), self.lease_ttl);
        let mut pending = Pending {
            member: Arc::clone(member),
            keys: Arc::clone(&keys),
            id: Arc::clone(&id),
            number,
            leads: self.codec.is_some(),
            armed: true,
        };
        let sent = Instant::now();
        let request = AcquireRequest {
            id: Arc::clone(&id),
            behaviour: behaviour_code(self.concurrency.behaviour()),
            config: Arc::clone(&self.config),
            argument,
        };
        // An error leaves the guard armed: the request may have reached Redis.
        let acquired = match batch::acquire(member, &keys, request).await {
            Ok(acquired) => acquired,
            Err(error) => return Self::failed(error),
        };
        match acquired {
            Acquired::Admitted(token) => {
                return match self.fresh(member, &keys, &id, sent).await {
                    Ok(Fresh::Held(confirmed)) => self.hold(current, pending, token, confirmed),
                    // Another member's newer instance asked for the slot (restartable).
                    Ok(Fresh::Cancelling(confirmed)) => {
                        self.hold(current, pending, token, confirmed);
                        Outcome::Cancel(CancelReason::Replaced)
                    }
                    // The guard withdraws the id, should Redis still have it.
                    Err(error) => Self::failed(error),
                };
            }
            Acquired::Dropped => {
                pending.settle();
                return Outcome::Error(Error::Dropped);
            }
            Acquired::Mismatch(existing) => {
                pending.settle();
                return Self::failed(FleetError::Mismatch {
                    queue: keys.queue.clone(),
                    existing,
                    requested: self.config.to_string(),
                });
            }
            Acquired::Shared(leader) => {
                // A follower holds nothing to withdraw.
                pending.armed = false;
                lock(&member.registry).follow(number);
                let outcome = self.follow(member, &keys, &leader, number, signal).await;
                pending.settle();
                return outcome;
            }
            Acquired::Waiting(next) => {
                let wake = lock(&member.registry).wait(number, sent, next);
                member.wake_renewer(wake);
            }
        }
        // Waiting: for a message, or for what the renewer finds.
        match (&mut signal).await {
            Ok(Signal::Admitted { token, confirmed }) => {
                match self.fresh(member, &keys, &id, confirmed).await {
                    Ok(Fresh::Held(confirmed)) => self.hold(current, pending, token, confirmed),
                    // Another member's newer instance asked for the slot (restartable).
                    Ok(Fresh::Cancelling(confirmed)) => {
                        self.hold(current, pending, token, confirmed);
                        Outcome::Cancel(CancelReason::Replaced)
                    }
                    Err(error) => Self::failed(error),
                }
            }
            Ok(Signal::Cancelling { token, confirmed }) => {
                // Given a slot and asked to give it up at once: hold it, so that
                // `finally!` releases it, and cancel.
                self.hold(current, pending, token, confirmed);
                Outcome::Cancel(CancelReason::Replaced)
            }
            Ok(Signal::Lost(detail)) => {
                // Out of reach for longer than the place is kept: it is lost (the guard
                // withdraws it, should Redis still have it).
                Self::failed(keys.unavailable(redis::RedisError::from((
                    redis::ErrorKind::IoError,
                    "waiting place lost",
                    detail,
                ))))
            }
            // A newer instance took its waiting place (keep-latest, or restartable).
            Ok(Signal::Cancel | Signal::Done(_) | Signal::Check) | Err(_) => {
                pending.settle();
                Outcome::Cancel(CancelReason::Replaced)
            }
        }
    }

    /// A lease just given, confirmed by Redis no earlier than `confirmed`, with enough of
    /// its time left for the renewer: a holder is cancelled two thirds of the ttl after
    /// its last confirmation, and renewed a third after it. An admission whose reply came
    /// late (its request waited on the wire for a reconnection, say) has less than that
    /// third left, or none: its lease is renewed now, before its instance starts (a
    /// renewal counts from when it is sent), instead of the instance starting only to be
    /// cancelled at once. The local deadline stays no later than Redis's expiry. Still
    /// late after a few tries (Redis answering that slowly): the renewer decides, as for
    /// any holder.
    async fn fresh(
        &self,
        member: &Member,
        keys: &Keys,
        id: &str,
        mut confirmed: Instant,
    ) -> Result<Fresh, FleetError> {
        for _ in 0..RENEW_TRIES {
            let deadline = confirmed + self.lease_ttl * 2 / 3;
            if deadline >= Instant::now() + self.lease_ttl / 3 {
                break;
            }
            let sent = Instant::now();
            let (_, standings) = scripts::renew(
                member.connection.clone(),
                keys,
                scripts::Renewal {
                    ttl_ms: ttl_millis(self.lease_ttl),
                    member: &member.id,
                    waiters: false,
                    full: false,
                },
                std::iter::once(id),
            )
            .await?;
            match standings.first() {
                Some(Standing::Held(_)) => confirmed = sent,
                Some(Standing::Cancelling(_)) => return Ok(Fresh::Cancelling(sent)),
                // Expired in Redis before it could be renewed: it protects nothing.
                _ => {
                    return Err(keys.unavailable(redis::RedisError::from((
                        redis::ErrorKind::IoError,
                        "lease expired before its instance started",
                    ))))
                }
            }
        }
        Ok(Fresh::Held(confirmed))
    }

    /// Admitted: the lease is recorded for `finally!`, for [`Fleet::lease`] and for the
    /// member's renewer. `Cancel` if it was asked to give the slot up already.
    fn hold<C>(
        &self,
        current: &Current<'_, V, C>,
        mut pending: Pending,
        token: u64,
        confirmed: Instant,
    ) -> Outcome<V, C>
    where
        C: Send + Sync + 'static,
    {
        let runtime = current.runtime().downgrade();
        let ident = current.ident().clone();
        let cancel: CancelFn = Arc::new(move |reason| {
            if let Some(runtime) = runtime.upgrade() {
                let _ = runtime.cancel_with(&ident, reason);
            }
        });
        let (asked, wake) = lock(&pending.member.registry).hold(
            pending.number,
            token,
            confirmed,
            cancel,
            lease_key(current),
        );
        pending.member.wake_renewer(wake);
        // From here on `finally!` releases it.
        pending.armed = false;
        if asked {
            // A newer instance in another member asked for the slot (restartable).
            Outcome::Cancel(CancelReason::Replaced)
        } else {
            Outcome::Keep
        }
    }

    /// A follower waits for its leader's result.
    async fn follow<C>(
        &self,
        member: &Member,
        keys: &Keys,
        leader: &str,
        number: u64,
        mut signal: oneshot::Receiver<Signal>,
    ) -> Outcome<V, C> {
        loop {
            tokio::select! {
                () = tokio::time::sleep(self.lease_ttl / 3) => {}
                received = &mut signal => match received {
                    Ok(Signal::Done(payload)) => return self.shared(keys, &payload),
                    // Look now (messages may have been lost), then wait for the next.
                    // (Its entry cannot be gone while it follows; if it were, the leader
                    // could not be followed.)
                    _ => match lock(&member.registry).rearm(number) {
                        Some(next) => signal = next,
                        None => {
                            return Self::failed(FleetError::LeaderLost {
                                queue: keys.queue.clone(),
                            })
                        }
                    },
                }
            }
            match scripts::follow(&member.connection, keys, leader).await {
                Ok(Followed::Done(payload)) => return self.shared(keys, &payload),
                Ok(Followed::Pending) => {}
                Ok(Followed::Gone) => {
                    return Self::failed(FleetError::LeaderLost {
                        queue: keys.queue.clone(),
                    })
                }
                Err(error) => return Self::failed(error),
            }
        }
    }

    /// A leader's result, as its follower's outcome.
    fn shared<C>(&self, keys: &Keys, payload: &str) -> Outcome<V, C> {
        let queue = || keys.queue.clone();
        match payload.split_at(payload.len().min(1)) {
            ("o", json) => match self.codec.as_ref().map(|codec| (codec.decode)(json)) {
                Some(Ok(value)) => Outcome::Break(Some(value)),
                Some(Err(source)) => Self::failed(FleetError::Decode {
                    queue: queue(),
                    source,
                }),
                None => Self::failed(FleetError::Protocol {
                    queue: queue(),
                    reply: payload.to_owned(),
                }),
            },
            ("f", message) => Self::failed(FleetError::LeaderFailed {
                queue: queue(),
                message: message.to_owned(),
            }),
            // The leader's reason; an older member sends none.
            ("c", reason) => {
                Outcome::Cancel(CancelReason::from_name(reason).unwrap_or(CancelReason::Requested))
            }
            _ => Self::failed(FleetError::LeaderLost { queue: queue() }),
        }
    }

    /// The wrapper's `finally!`: releases the lease this instance holds (if it got one),
    /// handing its result to its followers if it led a use-existing run. The release is
    /// sent without waiting for its reply: queued on the member's connection, it runs
    /// before anything the member sends later; one that cannot reach Redis leaves the
    /// slot to expire with its lease.
    pub(crate) fn release<C>(&self, value: &V, error: Option<&Error>, current: &Current<'_, V, C>)
    where
        C: Send + Sync + 'static,
    {
        let member = self.fleet.member();
        let Some((keys, id)) = lock(&member.registry).release(&lease_key(current)) else {
            return;
        };
        let payload = match (error, &self.codec) {
            (None, Some(codec)) => match (codec.encode)(value) {
                Ok(json) => format!("o{json}"),
                Err(error) => format!("f{error}"),
            },
            (Some(error), Some(_)) if error.is_cancelled() || error.is_dropped() => {
                // A leader that started and ends dropped: a child of it was dropped.
                let reason = error.cancel_reason().unwrap_or(CancelReason::ChildDropped);
                format!("c{}", reason.as_str())
            }
            (Some(error), Some(_)) => format!("f{}", error.message()),
            (_, None) => String::new(),
        };
        let connection = member.connection.clone();
        member.detach(async move {
            let _ = scripts::release(connection, keys, id, payload).await;
        });
    }
}
