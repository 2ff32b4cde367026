//! A fleet member: one connection to Redis (commands and messages on one RESP3
//! connection that reconnects by itself), an id the fleet's scripts address it by, and
//! the routes from the ids it holds in Redis (leases, waiting places, followers) to the
//! local instances behind them.

mod admission;
mod batch;
mod lease;
mod queue;
mod records;
mod registry;
mod renewal;
mod scripts;

use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::task::Context;
use std::time::Duration;

use pipewright::CancelReason;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{IntoConnectionInfo, ProtocolVersion, PushInfo, PushKind, Value};
use tokio::sync::Notify;

use crate::error::FleetError;
pub use lease::Lease;
pub use queue::FleetQueue;
pub use records::{AuditEntry, FleetStats};
use registry::{Message, Registry};

/// One process's (or one runtime's) membership in a fleet: a connection to Redis, used by
/// the [`FleetQueue`]s built from it. Cheap to clone; connect once and share it.
///
/// Every member has an id of its own (random); the fleet's scripts send it messages on
/// its own channel (a slot given to one of its waiting instances, a cancellation of one
/// of its instances), which it routes to the instance. Commands and messages share one
/// RESP3 connection that reconnects by itself and subscribes again; after a
/// reconnection every waiting instance looks where it stands, since messages sent
/// meanwhile are lost.
///
/// # Examples
///
/// ```no_run
/// use pipewright_redis::Fleet;
///
/// # async fn run() -> Result<(), pipewright_redis::FleetError> {
/// let fleet = Fleet::connect("redis://127.0.0.1:6379/").await?;
/// let saves = fleet.queue("saves").enqueued();
/// # let _ = saves;
/// # Ok(())
/// # }
/// # let _ = run;
/// ```
#[derive(Clone)]
pub struct Fleet {
    member: Arc<Member>,
}

impl fmt::Debug for Fleet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fleet")
            .field("member", &self.member.id)
            .finish_non_exhaustive()
    }
}

/// Configures a [`Fleet`] connection before it connects.
///
/// ```no_run
/// use std::time::Duration;
/// use pipewright_redis::Fleet;
///
/// # async fn run() -> Result<(), pipewright_redis::FleetError> {
/// let fleet = Fleet::builder("redis://127.0.0.1:6379/")
///     .response_timeout(Duration::from_millis(500))
///     .connect()
///     .await?;
/// # let _ = fleet;
/// # Ok(())
/// # }
/// # let _ = run;
/// ```
#[derive(Debug, Clone)]
pub struct FleetBuilder {
    url: String,
    response_timeout: Duration,
    connect_timeout: Duration,
}

impl FleetBuilder {
    /// How long a command may wait for Redis's answer before it fails (default 2 s). A
    /// fleet invocation that gets no answer in time fails with
    /// [`FleetError::Unavailable`].
    #[must_use]
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// How long one connection attempt may take (default 1 s).
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Connects, subscribes to the member's channel, and starts routing its messages.
    /// Call it inside a tokio runtime: the connection and the member's tasks live there.
    ///
    /// # Errors
    ///
    /// [`FleetError::Connect`] when the URL is wrong or Redis cannot be reached now.
    pub async fn connect(self) -> Result<Fleet, FleetError> {
        let mut info = self
            .url
            .as_str()
            .into_connection_info()
            .map_err(FleetError::Connect)?;
        // Messages arrive as pushes on the command connection: RESP3.
        info.redis.protocol = ProtocolVersion::RESP3;
        let client = redis::Client::open(info).map_err(FleetError::Connect)?;
        // Messages are routed where the connection hands them over (no task of ours in
        // between): to the member, once it exists.
        let router: Arc<OnceLock<Weak<Member>>> = Arc::default();
        let pushes = {
            let router = Arc::clone(&router);
            move |push: PushInfo| {
                if let Some(member) = router.get().and_then(Weak::upgrade) {
                    route(&member, push);
                }
                Ok::<(), std::convert::Infallible>(())
            }
        };
        let config = ConnectionManagerConfig::new()
            .set_push_sender(pushes)
            .set_automatic_resubscription()
            .set_response_timeout(self.response_timeout)
            .set_connection_timeout(self.connect_timeout)
            // Fail fast while Redis is down: a new invocation gets its error at once
            // instead of waiting through a long series of attempts.
            .set_number_of_retries(1)
            .set_factor(50)
            .set_max_delay(500);
        let mut connection = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(FleetError::Connect)?;
        scripts::load(&mut connection)
            .await
            .map_err(FleetError::Connect)?;
        let id: Arc<str> = Arc::from(member_id());
        connection
            .subscribe(scripts::member_channel(&id))
            .await
            .map_err(FleetError::Connect)?;
        let member = Arc::new(Member {
            id,
            connection,
            registry: Mutex::default(),
            batches: Mutex::default(),
            renewer: Arc::new(Notify::new()),
            executor: tokio::runtime::Handle::current(),
        });
        let _ = router.set(Arc::downgrade(&member));
        tokio::spawn(renewal::run(
            Arc::downgrade(&member),
            Arc::clone(&member.renewer),
        ));
        Ok(Fleet { member })
    }
}

impl Fleet {
    /// Connects with the default settings (see [`FleetBuilder`]).
    ///
    /// # Errors
    ///
    /// [`FleetError::Connect`] when the URL is wrong or Redis cannot be reached now.
    pub async fn connect(url: &str) -> Result<Fleet, FleetError> {
        Fleet::builder(url).connect().await
    }

    /// Starts configuring a connection to the Redis at `url` (`redis://host:port/db`).
    pub fn builder(url: impl Into<String>) -> FleetBuilder {
        FleetBuilder {
            url: url.into(),
            response_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(1),
        }
    }

    /// A fleet queue named `name` (enqueued, max 1 until configured otherwise). Its
    /// behaviour and max hold across every member that uses the same name on the same
    /// Redis.
    pub fn queue(&self, name: impl Into<String>) -> FleetQueue {
        FleetQueue::new(self.clone(), name.into())
    }

    /// This member's id in the fleet (random, fixed for the connection's life).
    pub fn member_id(&self) -> &str {
        &self.member.id
    }

    /// The connection to Redis, for commands of your own (it reconnects by itself).
    pub fn connection(&self) -> ConnectionManager {
        self.member.connection.clone()
    }

    /// Waits until Redis has run every command this member sent before, the releases of
    /// its ended instances included: an invocation's result does not wait for its
    /// release, which is on its way (queued on this member's connection, so it runs
    /// before anything the member sends later, such as [`stats`](Fleet::stats)) but may
    /// not have run yet. Await it before reading the fleet's records through another
    /// connection, or before the process exits (an unsent release leaves the slot taken
    /// until its lease expires, as after a crash).
    ///
    /// ```no_run
    /// # async fn run(fleet: pipewright_redis::Fleet) -> Result<(), pipewright_redis::FleetError> {
    /// // ... invocations of fleet-wide pipelines have ended ...
    /// fleet.sync().await?; // their slots are free in Redis now
    /// # Ok(())
    /// # }
    /// # let _ = run;
    /// ```
    ///
    /// # Errors
    ///
    /// [`FleetError::Unreachable`] when Redis does not answer.
    pub async fn sync(&self) -> Result<(), FleetError> {
        let _: String = redis::cmd("PING")
            .query_async(&mut self.connection())
            .await
            .map_err(FleetError::Unreachable)?;
        Ok(())
    }

    pub(crate) fn member(&self) -> &Arc<Member> {
        &self.member
    }
}

pub(crate) struct Member {
    pub(crate) id: Arc<str>,
    pub(crate) connection: ConnectionManager,
    /// Its ids in Redis, the local instances behind them, and their renewal groups.
    pub(crate) registry: Mutex<Registry>,
    /// Admissions waiting for their queue's call on the wire to end.
    pub(crate) batches: Mutex<batch::Batches>,
    /// Wakes the renewer (something is due sooner than it planned, or the member is gone).
    pub(crate) renewer: Arc<Notify>,
    /// Where guards that run in `Drop` spawn their clean-up, and detached calls finish.
    pub(crate) executor: tokio::runtime::Handle,
}

impl Member {
    /// Wakes the renewer if `wake` says it must look sooner than it planned.
    pub(crate) fn wake_renewer(&self, wake: bool) {
        if wake {
            self.renewer.notify_one();
        }
    }

    /// Sends a call without waiting for its reply: it is polled once here, which puts
    /// the command on the connection's queue (or, when that queue is full, in its fair
    /// line for a place), so Redis runs it before anything this member sends later; the
    /// rest (the reply, a reload of the library after a restart) finishes in a task of
    /// its own.
    pub(crate) fn detach(&self, call: impl Future<Output = ()> + Send + 'static) {
        let _context = self.executor.enter();
        // Unconstrained: a spent cooperative budget must not postpone the send.
        let mut call = Box::pin(tokio::task::unconstrained(call));
        let mut context = Context::from_waker(futures::task::noop_waker_ref());
        if call.as_mut().poll(&mut context).is_pending() {
            self.executor.spawn(call);
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        // The renewer notices the member is gone and ends.
        self.renewer.notify_one();
    }
}

/// A poisoned lock only means a panic elsewhere while it was held; the maps stay valid.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Routes one of the member's messages to its instance.
fn route(member: &Member, push: PushInfo) {
    match push.kind {
        PushKind::Message => {
            if let Some(Value::BulkString(payload)) = push.data.get(1) {
                if let Ok(text) = std::str::from_utf8(payload) {
                    deliver(member, text);
                }
            }
        }
        // Subscribed (again, after a reconnection): what was sent meanwhile is lost.
        PushKind::Subscribe => {
            lock(&member.registry).check_all();
            member.renewer.notify_one();
        }
        _ => {}
    }
}

/// `a ID TOKEN` (admitted), `c ID` (cancel), `d ID PAYLOAD` (leader done).
fn deliver(member: &Member, text: &str) {
    let mut parts = text.splitn(3, ' ');
    let (Some(kind), Some(id)) = (parts.next(), parts.next()) else {
        return;
    };
    let message = match (kind, parts.next()) {
        ("a", Some(token)) => match token.parse() {
            Ok(token) => Message::Admitted(token),
            Err(_) => return,
        },
        ("c", _) => Message::Cancel,
        ("d", Some(payload)) => Message::Done(payload.to_owned()),
        _ => return,
    };
    let Some(number) = id
        .rsplit_once('.')
        .and_then(|(_, number)| number.parse().ok())
    else {
        return;
    };
    let cancel = lock(&member.registry).deliver(number, message);
    // Outside the lock: a cancelled instance's `finally!` takes it.
    // A newer instance in another member asked for the slot (restartable).
    if let Some(cancel) = cancel {
        cancel(CancelReason::Replaced);
    }
}

/// A random member id: process id, clock and the standard library's random hash keys.
fn member_id() -> String {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    if let Ok(since) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        hasher.write_u128(since.as_nanos());
    }
    format!("{:016x}", hasher.finish())
}
