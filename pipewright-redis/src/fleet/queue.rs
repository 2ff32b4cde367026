//! `FleetQueue`: a queue whose behaviour and max hold across the fleet, and the wrapper
//! that puts a pipeline in it.

use std::sync::Arc;
use std::time::Duration;

use pipewright::{pipeline, Behaviour, Concurrency, Pipeline};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::admission::{queue_keys, Codec, Gate};
use super::Fleet;

/// A queue whose concurrency behaviour and `max` hold across every member of the fleet
/// (every runtime connected to the same Redis that uses the same queue name). Build it
/// with [`Fleet::queue`], configure it like a local [`pipewright::Queue`], then
/// [`wrap`](FleetQueue::wrap) a pipeline in it.
///
/// | behaviour | when the fleet's `max` slots are taken |
/// | --- | --- |
/// | [`enqueued`](FleetQueue::enqueued) (the default) | waits; waiting instances start in the fleet's arrival order |
/// | [`dropping`](FleetQueue::dropping) | refused: the caller gets [`pipewright::Error::Dropped`] |
/// | [`restartable`](FleetQueue::restartable) | the oldest holders are cancelled wherever they run (their `finally!` runs there); the new instance starts once a slot is released or its lease expired |
/// | [`keep_latest`](FleetQueue::keep_latest) | one waiting place in the fleet: whoever waits is cancelled, the new one waits |
/// | [`use_existing`](FleetQueue::wrap_use_existing) | an equal argument anywhere in the fleet shares the leader's result |
///
/// Each slot is a **lease** in Redis with a time to live ([`lease_ttl`](FleetQueue::lease_ttl),
/// 10 s by default), renewed every third of it while the instance runs and released in
/// its `finally!` (the caller's result does not wait for the release: [`Fleet::sync`]);
/// a crashed member's leases expire and the next waiting instance, in any process, is
/// admitted. Each lease has a fencing token ([`Fleet::lease`]).
///
/// # Examples
///
/// ```no_run
/// use pipewright::{pipeline, Runtime};
/// use pipewright_redis::Fleet;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let fleet = Fleet::connect("redis://127.0.0.1:6379/").await?;
/// let save = pipeline!(|doc: String, _ctx: &()| {
///     tokio::time::sleep(std::time::Duration::from_millis(10)).await;
///     doc = format!("saved {doc}");
/// });
/// // One save at a time per document, across every process of the fleet.
/// let save = fleet.queue("save").enqueued().wrap_by(save, |doc: &String| doc.clone());
/// let runtime = Runtime::builder(()).register("save", save).start()?;
/// assert_eq!(runtime.invoke("save", "doc-1".to_string())?.await?, "saved doc-1");
/// # Ok(())
/// # }
/// # let _ = run;
/// ```
#[derive(Debug, Clone)]
pub struct FleetQueue {
    fleet: Fleet,
    name: String,
    concurrency: Concurrency,
    lease_ttl: Duration,
    audit: bool,
}

impl FleetQueue {
    pub(crate) fn new(fleet: Fleet, name: String) -> Self {
        FleetQueue {
            fleet,
            name,
            concurrency: Concurrency::new(Behaviour::Enqueued),
            lease_ttl: Duration::from_secs(10),
            audit: false,
        }
    }

    /// The queue's name (a per-key queue's names are `name:key`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its configuration (behaviour and max; `use_existing` is chosen by the wrap).
    pub fn concurrency(&self) -> Concurrency {
        self.concurrency
    }

    pipewright::__behaviour_shortcuts!(behaviour, "pipewright::Behaviour");

    fn behaviour(mut self, behaviour: Behaviour) -> Self {
        self.concurrency = self.concurrency.with_behaviour(behaviour);
        self
    }

    /// At most `max` live instances in the fleet (default 1; 0 is taken as 1).
    #[must_use]
    pub fn max(mut self, max: usize) -> Self {
        self.concurrency = self.concurrency.with_max(max.max(1));
        self
    }

    /// A lease's time to live (default 10 s; at least 30 ms), and that of the member's
    /// waiting places in the queue. A crashed member's slots are free again (and its
    /// waiting instances gone) at most this long after its last renewal; a member that
    /// cannot renew for two thirds of it cancels the instance.
    #[must_use]
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl.max(Duration::from_millis(30));
        self
    }

    /// Keep an audit log of every admission, wait, refusal, release and expiry in Redis
    /// (read it with [`Fleet::audit_log`]); for tests and investigations: it grows with
    /// every invocation while the queue is busy (and is forgotten a day after it idles).
    #[must_use]
    pub fn audit(mut self, audit: bool) -> Self {
        self.audit = audit;
        self
    }

    /// `pipeline` in this fleet queue: the returned pipeline takes a slot in the fleet
    /// (one Redis round trip when one is free), runs `pipeline` as a nested child, and
    /// releases the slot in its `finally!` (sent without waiting for the answer: see
    /// [`Fleet::sync`]).
    ///
    /// Locally the wrapper is unrestricted (its local queue is `fleet:NAME`): the fleet
    /// decides. Give `pipeline` no behaviour of its own, or it applies locally too, as
    /// for any nested pipeline.
    pub fn wrap<V, C>(&self, pipeline: Pipeline<V, C>) -> Pipeline<V, C>
    where
        V: Clone + Send + Sync + 'static,
        C: Send + Sync + 'static,
    {
        self.build(pipeline, None, None)
    }

    /// Like [`wrap`](FleetQueue::wrap), with one fleet queue per key: an instance for
    /// argument `v` joins the fleet queue `NAME:key(v)` (one save at a time per
    /// document, say).
    pub fn wrap_by<V, C>(
        &self,
        pipeline: Pipeline<V, C>,
        key: impl Fn(&V) -> String + Send + Sync + 'static,
    ) -> Pipeline<V, C>
    where
        V: Clone + Send + Sync + 'static,
        C: Send + Sync + 'static,
    {
        self.build(pipeline, Some(Arc::new(key)), None)
    }

    /// Like [`wrap`](FleetQueue::wrap), and **use-existing** across the fleet: an
    /// invocation whose argument equals (as JSON) that of a live instance anywhere in
    /// the fleet gets that instance's result (its failure as
    /// [`FleetError::LeaderFailed`](crate::FleetError::LeaderFailed), its cancellation as
    /// a cancellation) instead of a new run. Arguments and results cross the wire as
    /// JSON, hence the serde bounds; equal arguments must serialize equally (no
    /// `HashMap` fields, whose order varies).
    pub fn wrap_use_existing<V, C>(&self, pipeline: Pipeline<V, C>) -> Pipeline<V, C>
    where
        V: Clone + Send + Sync + Serialize + DeserializeOwned + 'static,
        C: Send + Sync + 'static,
    {
        self.build(pipeline, None, Some(Codec::json()))
    }

    /// [`wrap_use_existing`](FleetQueue::wrap_use_existing) with one fleet queue per key
    /// (see [`wrap_by`](FleetQueue::wrap_by)).
    pub fn wrap_use_existing_by<V, C>(
        &self,
        pipeline: Pipeline<V, C>,
        key: impl Fn(&V) -> String + Send + Sync + 'static,
    ) -> Pipeline<V, C>
    where
        V: Clone + Send + Sync + Serialize + DeserializeOwned + 'static,
        C: Send + Sync + 'static,
    {
        self.build(pipeline, Some(Arc::new(key)), Some(Codec::json()))
    }

    fn build<V, C>(
        &self,
        inner: Pipeline<V, C>,
        key: Option<super::admission::KeyFn<V>>,
        codec: Option<Codec<V>>,
    ) -> Pipeline<V, C>
    where
        V: Clone + Send + Sync + 'static,
        C: Send + Sync + 'static,
    {
        let concurrency = self.concurrency.with_use_existing(codec.is_some());
        let keys = key
            .is_none()
            .then(|| queue_keys(self.name.clone(), self.audit, concurrency));
        let gate = Arc::new(Gate {
            fleet: self.fleet.clone(),
            name: self.name.clone(),
            concurrency,
            lease_ttl: self.lease_ttl,
            audit: self.audit,
            key,
            codec,
            keys,
            config: Arc::from(concurrency.to_string()),
        });
        let local_queue = format!("fleet:{}", self.name);
        pipeline!(|value: V, _ctx: &C, current| {
            gate.admit(&value, current).await;
            value = inner.clone();
            finally!(|error| {
                gate.release(&value, error, current);
            });
        })
        .queue(local_queue)
    }
}
