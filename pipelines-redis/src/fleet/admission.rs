//! Admission to a fleet queue, as the wrapper's first step runs it: one script when a
//! slot is free; otherwise a waiting place, left when a message (or a renewal that finds
//! what a lost message said) gives the slot or cancels the wait. And the release in the
//! wrapper's `finally!`.

use std::sync::Arc;
use std::time::Duration;

use pipelines::{Behaviour, Concurrency, Current, Error, Outcome};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::lease::{self, lease_key, ttl_millis, Held};
use super::scripts::{AcquireRequest, Acquired, Followed, Keys, Standing};
use super::{lock, Fleet, Member, Signal};
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
}

/// Withdraws an id from Redis if its admission is abandoned half-way (the instance was
/// cancelled while it waited, or while its request was on the wire).
struct Pending {
    member: Arc<Member>,
    keys: Keys,
    id: String,
    route: u64,
    leads: bool,
    armed: bool,
}

impl Pending {
    fn settle(mut self) {
        self.armed = false;
        self.member.close_route(self.route);
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        self.member.close_route(self.route);
        let member = Arc::clone(&self.member);
        let keys = self.keys.clone();
        let id = std::mem::take(&mut self.id);
        let payload = if self.leads { "c" } else { "" };
        self.member.executor.spawn(async move {
            let _ = member
                .scripts
                .release(&member.connection, &keys, &id, None, payload)
                .await;
        });
    }
}

fn behaviour_code(behaviour: Behaviour) -> &'static str {
    match behaviour {
        Behaviour::Restartable => "r",
        Behaviour::Dropping => "d",
        Behaviour::Enqueued => "e",
        Behaviour::KeepLatest => "k",
        _ => "u",
    }
}

impl<V> Gate<V>
where
    V: Clone + Send + Sync + 'static,
{
    fn queue_name(&self, value: &V) -> String {
        match &self.key {
            Some(key) => format!("{}:{}", self.name, key(value)),
            None => self.name.clone(),
        }
    }

    fn max(&self) -> usize {
        match self.concurrency.behaviour() {
            Behaviour::Unrestricted => i32::MAX as usize,
            _ => self.concurrency.max(),
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
        let queue = self.queue_name(value);
        let keys = Keys::new(queue, self.audit, self.max());
        let argument = match &self.codec {
            Some(codec) => match (codec.encode)(value) {
                Ok(json) => json,
                Err(source) => {
                    return Self::failed(FleetError::Encode {
                        queue: keys.queue,
                        source,
                    })
                }
            },
            None => String::new(),
        };
        let member = Arc::clone(self.fleet.member());
        let (route, id, mut signals) = member.open_route();
        let mut pending = Pending {
            member: Arc::clone(&member),
            keys: keys.clone(),
            id: id.clone(),
            route,
            leads: self.codec.is_some(),
            armed: true,
        };
        let config = self.concurrency.to_string();
        let ttl_ms = ttl_millis(self.lease_ttl);
        let sent = Instant::now();
        let request = AcquireRequest {
            id: &id,
            behaviour: behaviour_code(self.concurrency.behaviour()),
            ttl_ms,
            config: &config,
            argument: &argument,
        };
        let acquired = match member
            .scripts
            .acquire(&member.connection, &keys, request)
            .await
        {
            Ok(acquired) => acquired,
            // The request may have reached Redis: the guard withdraws it.
            Err(error) => return Self::failed(error),
        };
        let mut next_expiry = match acquired {
            Acquired::Admitted(token) => {
                return self.hold(current, pending, signals, token, sent);
            }
            Acquired::Dropped => {
                pending.settle();
                return Outcome::Error(Error::Dropped);
            }
            Acquired::Mismatch(existing) => {
                pending.settle();
                return Self::failed(FleetError::Mismatch {
                    queue: keys.queue,
                    existing,
                    requested: config,
                });
            }
            Acquired::Shared(leader) => {
                // A follower holds nothing to withdraw.
                pending.armed = false;
                let outcome = self.follow(&member, &keys, &leader, &mut signals).await;
                pending.settle();
                return outcome;
            }
            Acquired::Waiting(next) => next,
        };
        // Waiting: for a message, or for the moment to look again (a third of the ttl,
        // or just after the first lease in the queue expires, if that comes sooner: a
        // crashed holder frees its slot then, and nobody would say so).
        let mut confirmed = sent;
        loop {
            let interval = self.lease_ttl / 3;
            let wake = match next_expiry {
                Some(ms) => interval.min(Duration::from_millis(ms + 2)),
                None => interval,
            };
            tokio::select! {
                () = tokio::time::sleep(wake) => {}
                signal = signals.recv() => match signal {
                    Some(Signal::Admitted(token)) => {
                        return self.hold(current, pending, signals, token, Instant::now());
                    }
                    Some(Signal::Cancel) => {
                        pending.settle();
                        return Outcome::Cancel;
                    }
                    Some(Signal::Check) => {}
                    Some(Signal::Done(_)) | None => continue,
                }
            }
            let asked = Instant::now();
            match member
                .scripts
                .renew(&member.connection, &keys, &id, ttl_ms)
                .await
            {
                Ok(Standing::Waiting(next)) => {
                    confirmed = asked;
                    next_expiry = next;
                }
                Ok(Standing::Held(token)) => {
                    return self.hold(current, pending, signals, token, asked);
                }
                Ok(Standing::Cancelling(token)) => {
                    // Given a slot and asked to give it up at once: hold it, so that
                    // `finally!` releases it, and cancel.
                    self.hold(current, pending, signals, token, asked);
                    return Outcome::Cancel;
                }
                Ok(Standing::Gone) => {
                    pending.settle();
                    return Outcome::Cancel;
                }
                Err(error) => {
                    if asked >= confirmed + self.lease_ttl {
                        // Out of reach for longer than the place is kept: it is lost.
                        return Self::failed(error);
                    }
                    next_expiry = Some(ttl_millis(self.lease_ttl / 10));
                }
            }
        }
    }

    /// Admitted: the lease is recorded for `finally!` and for [`Fleet::lease`], and its
    /// renewal starts.
    fn hold<C>(
        &self,
        current: &Current<'_, V, C>,
        pending: Pending,
        signals: mpsc::UnboundedReceiver<Signal>,
        token: u64,
        sent: Instant,
    ) -> Outcome<V, C>
    where
        C: Send + Sync + 'static,
    {
        let runtime = current.runtime().downgrade();
        let ident = current.ident().clone();
        let cancel: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
            if let Some(runtime) = runtime.upgrade() {
                let _ = runtime.cancel(&ident);
            }
        });
        let member = Arc::clone(&pending.member);
        let renewal = tokio::spawn(lease::renew(
            Arc::clone(&member),
            pending.keys.clone(),
            pending.id.clone(),
            self.lease_ttl,
            signals,
            cancel,
            sent,
        ));
        let held = Held {
            keys: pending.keys.clone(),
            id: pending.id.clone(),
            route: pending.route,
            token,
            renewal: renewal.abort_handle(),
            leads: pending.leads,
        };
        lock(&member.leases).insert(lease_key(current), held);
        // From here on `finally!` releases it.
        let mut pending = pending;
        pending.armed = false;
        Outcome::Keep
    }

    /// A follower waits for its leader's result.
    async fn follow<C>(
        &self,
        member: &Member,
        keys: &Keys,
        leader: &str,
        signals: &mut mpsc::UnboundedReceiver<Signal>,
    ) -> Outcome<V, C> {
        loop {
            tokio::select! {
                () = tokio::time::sleep(self.lease_ttl / 3) => {}
                signal = signals.recv() => match signal {
                    Some(Signal::Done(payload)) => return self.shared(keys, &payload),
                    Some(Signal::Check) => {}
                    Some(_) | None => continue,
                }
            }
            match member
                .scripts
                .follow(&member.connection, keys, leader)
                .await
            {
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
            ("c", _) => Outcome::Cancel,
            _ => Self::failed(FleetError::LeaderLost { queue: queue() }),
        }
    }

    /// The wrapper's `finally!`: releases the lease this instance holds (if it got one),
    /// handing its result to its followers if it led a use-existing run. A release that
    /// cannot reach Redis leaves the slot to expire with its lease.
    pub(crate) async fn release<C>(
        &self,
        value: &V,
        error: Option<&Error>,
        current: &Current<'_, V, C>,
    ) where
        C: Send + Sync + 'static,
    {
        let Some(held) = lock(&self.fleet.member().leases).remove(&lease_key(current)) else {
            return;
        };
        held.renewal.abort();
        let member = Arc::clone(self.fleet.member());
        member.close_route(held.route);
        let payload = if held.leads {
            match (error, &self.codec) {
                (None, Some(codec)) => match (codec.encode)(value) {
                    Ok(json) => format!("o{json}"),
                    Err(error) => format!("f{error}"),
                },
                (Some(error), _) if error.is_cancelled() || error.is_dropped() => "c".into(),
                (Some(error), _) => format!("f{}", error.message()),
                (None, None) => String::new(),
            }
        } else {
            String::new()
        };
        let _ = member
            .scripts
            .release(
                &member.connection,
                &held.keys,
                &held.id,
                Some(held.token),
                &payload,
            )
            .await;
    }
}
