//! A fleet member: one connection to Redis (commands and messages on one RESP3
//! connection that reconnects by itself), an id the fleet's scripts address it by, and
//! the routes from the ids it holds in Redis (leases, waiting places, followers) to the
//! local instances behind them.

mod admission;
mod lease;
mod queue;
mod records;
mod scripts;

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{IntoConnectionInfo, ProtocolVersion, PushInfo, PushKind, Value};
use tokio::sync::mpsc;

use crate::error::FleetError;
use lease::Held;
pub use lease::Lease;
pub use queue::FleetQueue;
pub use records::{AuditEntry, FleetStats};
use scripts::Scripts;

/// What a member is told about one of its ids, by a message or by a renewal that found
/// out what a lost message would have said.
#[derive(Debug)]
pub(crate) enum Signal {
    /// The waiting id was given a slot, with this fencing token.
    Admitted(u64),
    /// Cancel the instance behind the id (restartable, keep-latest).
    Cancel,
    /// The leader this follower waits for is done: its payload.
    Done(String),
    /// Messages may have been lost (a reconnection): look where the id stands now.
    Check,
}

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
/// use pipelines_redis::Fleet;
///
/// # async fn run() -> Result<(), pipelines_redis::FleetError> {
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
/// use pipelines_redis::Fleet;
///
/// # async fn run() -> Result<(), pipelines_redis::FleetError> {
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
        let (pushes, incoming) = mpsc::unbounded_channel();
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
        let id = member_id();
        connection
            .subscribe(scripts::member_channel(&id))
            .await
            .map_err(FleetError::Connect)?;
        let member = Arc::new(Member {
            id,
            connection,
            scripts: Scripts::new(),
            routes: Mutex::default(),
            leases: Mutex::default(),
            next: AtomicU64::new(1),
            executor: tokio::runtime::Handle::current(),
        });
        tokio::spawn(dispatch(Arc::downgrade(&member), incoming));
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

    pub(crate) fn member(&self) -> &Arc<Member> {
        &self.member
    }
}

pub(crate) struct Member {
    pub(crate) id: String,
    pub(crate) connection: ConnectionManager,
    pub(crate) scripts: Scripts,
    /// The local number of each id this member has in Redis -> its instance.
    routes: Mutex<HashMap<u64, mpsc::UnboundedSender<Signal>>>,
    /// The leases held by local instances, by (runtime, instance).
    pub(crate) leases: Mutex<HashMap<lease::LeaseKey, Held>>,
    next: AtomicU64,
    /// Where guards that run in `Drop` spawn their clean-up.
    pub(crate) executor: tokio::runtime::Handle,
}

impl Member {
    /// A new id (`member.n`) and the receiver of its signals.
    pub(crate) fn open_route(&self) -> (u64, String, mpsc::UnboundedReceiver<Signal>) {
        let number = self.next.fetch_add(1, Ordering::Relaxed);
        let (sender, receiver) = mpsc::unbounded_channel();
        lock(&self.routes).insert(number, sender);
        (number, format!("{}.{number}", self.id), receiver)
    }

    pub(crate) fn close_route(&self, number: u64) {
        lock(&self.routes).remove(&number);
    }

    fn route(&self, id: &str, signal: Signal) {
        let Some(number) = id
            .rsplit_once('.')
            .and_then(|(_, number)| number.parse().ok())
        else {
            return;
        };
        if let Some(route) = lock(&self.routes).get(&number) {
            let _ = route.send(signal);
        }
    }

    fn check_all(&self) {
        for route in lock(&self.routes).values() {
            let _ = route.send(Signal::Check);
        }
    }
}

/// A poisoned lock only means a panic elsewhere while it was held; the maps stay valid.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Routes the member's messages to its instances until the connection is gone.
async fn dispatch(member: Weak<Member>, mut incoming: mpsc::UnboundedReceiver<PushInfo>) {
    while let Some(push) = incoming.recv().await {
        let Some(member) = member.upgrade() else {
            return;
        };
        match push.kind {
            PushKind::Message => {
                if let Some(Value::BulkString(payload)) = push.data.get(1) {
                    if let Ok(text) = std::str::from_utf8(payload) {
                        deliver(&member, text);
                    }
                }
            }
            // Subscribed (again, after a reconnection): what was sent meanwhile is lost.
            PushKind::Subscribe => member.check_all(),
            _ => {}
        }
    }
}

/// `a ID TOKEN` (admitted), `c ID` (cancel), `d ID PAYLOAD` (leader done).
fn deliver(member: &Member, message: &str) {
    let mut parts = message.splitn(3, ' ');
    let (Some(kind), Some(id)) = (parts.next(), parts.next()) else {
        return;
    };
    let signal = match (kind, parts.next()) {
        ("a", Some(token)) => match token.parse() {
            Ok(token) => Signal::Admitted(token),
            Err(_) => return,
        },
        ("c", _) => Signal::Cancel,
        ("d", Some(payload)) => Signal::Done(payload.to_owned()),
        _ => return,
    };
    member.route(id, signal);
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
