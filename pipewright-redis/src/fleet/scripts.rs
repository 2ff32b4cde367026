//! The Lua functions that keep a fleet queue in Redis (one Redis Functions library,
//! `lua/*.lua`), and their replies as types. Each call runs atomically in one round trip.
//!
//! A library rather than `EVALSHA` scripts: its helpers are defined once when it loads,
//! not at every call, and Redis keeps it across a restart with persistence and on
//! replicas, so a call that is not waited for is not lost to a missing script. The
//! library's name carries a hash of its text, so members running different versions do
//! not replace each other's; a server that lost it (restarted empty) gets it again from
//! the first call that misses it.

use std::fmt::Write as _;
use std::sync::{Arc, LazyLock};

use redis::aio::ConnectionManager;
use redis::{Cmd, ErrorKind, RedisError, RedisResult, Value};

use crate::error::FleetError;

const BODY: &str = concat!(
    include_str!("lua/prelude.lua"),
    "\n",
    include_str!("lua/acquire.lua"),
    "\n",
    include_str!("lua/release.lua"),
    "\n",
    include_str!("lua/renew.lua"),
    "\n",
    include_str!("lua/follow.lua"),
);

/// The library's text and its functions' names.
struct Library {
    text: String,
    acquire: String,
    release: String,
    renew: String,
    follow: String,
}

static LIBRARY: LazyLock<Library> = LazyLock::new(|| {
    // FNV-1a: a stable name for this text (std's hashers are not stable across builds).
    let hash = BODY.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    let name = format!("pipelines_{hash:016x}");
    let mut text = format!("#!lua name={name}\n{BODY}\n");
    let function = |function: &str| format!("{name}_{function}");
    for function in ["acquire", "release", "renew", "follow"] {
        let _ = writeln!(
            text,
            "redis.register_function('{name}_{function}', {function})"
        );
    }
    Library {
        acquire: function("acquire"),
        release: function("release"),
        renew: function("renew"),
        follow: function("follow"),
        text,
    }
});

/// Loads the library (again) into the server.
pub(crate) async fn load(connection: &mut ConnectionManager) -> RedisResult<()> {
    let _: String = redis::cmd("FUNCTION")
        .arg("LOAD")
        .arg("REPLACE")
        .arg(&LIBRARY.text)
        .query_async(connection)
        .await?;
    Ok(())
}

fn missing_function(error: &RedisError) -> bool {
    error.kind() == ErrorKind::ResponseError
        && error
            .detail()
            .is_some_and(|detail| detail.starts_with("Function not found"))
}

/// Sends `command` (loading the library first if the server lost it).
async fn call(mut connection: ConnectionManager, command: Cmd) -> RedisResult<Value> {
    match connection
        .send_packed_command(&command)
        .await
        .and_then(Value::extract_error)
    {
        Err(error) if missing_function(&error) => {
            load(&mut connection).await?;
            connection
                .send_packed_command(&command)
                .await
                .and_then(Value::extract_error)
        }
        reply => reply,
    }
}

/// Where a queue is in Redis: the prefix of its keys. The braces make every key of a
/// queue one hash slot.
pub(crate) fn prefix(queue: &str) -> String {
    format!("pipelines:{{{queue}}}")
}

/// The channel a member's messages arrive on.
pub(crate) fn member_channel(member: &str) -> String {
    format!("pipelines:m:{member}")
}

/// What every call needs to know of its queue.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct Keys {
    pub(crate) queue: String,
    pub(crate) prefix: String,
    pub(crate) audit: bool,
    pub(crate) max: usize,
    /// Holders may be asked to cancel.
    pub(crate) restartable: bool,
}

impl FleetError {
    /// The same error, for another request of the same call.
    pub(crate) fn copy(&self) -> FleetError {
        match self {
            FleetError::Unavailable { queue, source } => FleetError::Unavailable {
                queue: queue.clone(),
                source: RedisError::from((source.kind(), "fleet call failed", source.to_string())),
            },
            FleetError::Protocol { queue, reply } => FleetError::Protocol {
                queue: queue.clone(),
                reply: reply.clone(),
            },
            other => FleetError::Protocol {
                queue: String::new(),
                reply: other.to_string(),
            },
        }
    }
}

impl Keys {
    pub(crate) fn new(queue: String, audit: bool, max: usize, restartable: bool) -> Self {
        Keys {
            prefix: prefix(&queue),
            queue,
            audit,
            max,
            restartable,
        }
    }

    /// `FCALL function 1 prefix audit max`, for the function's own arguments to follow.
    fn call(&self, function: &str) -> Cmd {
        let mut command = redis::cmd("FCALL");
        command
            .arg(function)
            .arg(1)
            .arg(&self.prefix)
            .arg(if self.audit { "1" } else { "0" })
            .arg(self.max);
        command
    }

    fn protocol(&self, reply: &Value) -> FleetError {
        FleetError::Protocol {
            queue: self.queue.clone(),
            reply: format!("{reply:?}"),
        }
    }

    pub(crate) fn unavailable(&self, source: RedisError) -> FleetError {
        FleetError::Unavailable {
            queue: self.queue.clone(),
            source,
        }
    }
}

/// The answer to a request for a slot.
#[derive(Debug)]
pub(crate) enum Acquired {
    Admitted(u64),
    /// Waiting; the first lease or place in the queue expires in this many ms (if any).
    Waiting(Option<u64>),
    Dropped,
    /// Shares the run of this leader.
    Shared(String),
    Mismatch(String),
}

/// Where an id stands, as a renewal finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Standing {
    Held(u64),
    Cancelling(u64),
    Waiting,
    Gone,
}

/// Where a leader's run stands, for a follower.
#[derive(Debug)]
pub(crate) enum Followed {
    Done(String),
    Pending,
    Gone,
}

/// A reply's text parts, if it is an array of strings.
fn texts(reply: &Value) -> Option<Vec<&str>> {
    match reply {
        Value::Array(items) => items.iter().map(text).collect(),
        _ => None,
    }
}

fn text(value: &Value) -> Option<&str> {
    match value {
        Value::BulkString(bytes) => std::str::from_utf8(bytes).ok(),
        Value::SimpleString(text) => Some(text),
        _ => None,
    }
}

fn expiry(text: &str) -> Option<u64> {
    text.parse::<i64>()
        .ok()
        .and_then(|ms| u64::try_from(ms).ok())
}

/// One request for a slot.
pub(crate) struct AcquireRequest {
    /// `member.ttl.n`: the id carries the lease ttl it asks for.
    pub(crate) id: Arc<str>,
    pub(crate) behaviour: &'static str,
    pub(crate) config: Arc<str>,
    /// The argument as JSON, for use-existing (empty otherwise).
    pub(crate) argument: String,
}

/// Asks for slots for `requests` (in arrival order), in one call; the answers in order.
pub(crate) async fn acquire(
    connection: &ConnectionManager,
    keys: &Keys,
    requests: impl Iterator<Item = &AcquireRequest>,
) -> Result<Vec<Acquired>, FleetError> {
    let mut command = keys.call(&LIBRARY.acquire);
    for request in requests {
        command
            .arg(&*request.id)
            .arg(request.behaviour)
            .arg(&*request.config)
            .arg(&request.argument);
    }
    let reply = call(connection.clone(), command)
        .await
        .map_err(|error| keys.unavailable(error))?;
    let parsed = match &reply {
        Value::Array(items) => items
            .chunks(2)
            .map(|pair| match (text(&pair[0]), pair.get(1)) {
                (Some("admitted"), Some(token)) => number(token).map(Acquired::Admitted),
                (Some("waiting"), Some(next)) => Some(Acquired::Waiting(number(next))),
                (Some("dropped"), _) => Some(Acquired::Dropped),
                (Some("shared"), Some(leader)) => {
                    text(leader).map(|leader| Acquired::Shared(leader.to_owned()))
                }
                (Some("mismatch"), Some(existing)) => {
                    text(existing).map(|existing| Acquired::Mismatch(existing.to_owned()))
                }
                _ => None,
            })
            .collect::<Option<Vec<_>>>(),
        _ => None,
    };
    parsed.ok_or_else(|| keys.protocol(&reply))
}

/// A reply's non-negative integer (a number, or a number as text).
fn number(value: &Value) -> Option<u64> {
    match value {
        Value::Int(number) => u64::try_from(*number).ok(),
        other => text(other).and_then(expiry),
    }
}

/// Releases the lease of `id` or withdraws whatever it is (a waiting place, an admission
/// being abandoned), handing `payload` to the followers if it led a use-existing run.
/// `true` if it still held its lease or place. Owns its arguments: it is sent without
/// waiting for the reply.
pub(crate) async fn release(
    connection: ConnectionManager,
    keys: Arc<Keys>,
    id: Arc<str>,
    payload: String,
) -> Result<bool, FleetError> {
    let mut command = keys.call(&LIBRARY.release);
    command
        .arg(&*id)
        .arg(payload)
        .arg(if keys.restartable { "1" } else { "0" });
    let reply = call(connection, command)
        .await
        .map_err(|error| keys.unavailable(error))?;
    match text(&reply) {
        Some(status) => Ok(status != "gone"),
        None => Err(keys.protocol(&reply)),
    }
}

/// What a renewal call renews besides its ids.
pub(crate) struct Renewal<'a> {
    pub(crate) ttl_ms: u64,
    pub(crate) member: &'a str,
    /// The member has waiters in the queue: their places are renewed (together).
    pub(crate) waiters: bool,
    /// The ids may be waiters (a look after messages may have been lost).
    pub(crate) full: bool,
}

/// Renews the leases of `ids` (one queue's, one ttl) and the member's waiting places in
/// the queue; the first expiry in the queue and where each id stands, in order.
pub(crate) async fn renew(
    connection: ConnectionManager,
    keys: &Keys,
    renewal: Renewal<'_>,
    ids: impl Iterator<Item = &str>,
) -> Result<(Option<u64>, Vec<Standing>), FleetError> {
    let flag = |on: bool| if on { "1" } else { "0" };
    let mut command = keys.call(&LIBRARY.renew);
    command
        .arg(renewal.ttl_ms)
        .arg(renewal.member)
        .arg(flag(renewal.waiters))
        .arg(flag(renewal.full));
    for id in ids {
        command.arg(id);
    }
    let reply = call(connection, command)
        .await
        .map_err(|error| keys.unavailable(error))?;
    let parsed = texts(&reply).and_then(|parts| {
        let (next, standings) = parts.split_first()?;
        let standings = standings
            .iter()
            .map(|standing| {
                let (kind, token) = standing.split_at(standing.len().min(1));
                match kind {
                    "h" => token.parse().ok().map(Standing::Held),
                    "c" => token.parse().ok().map(Standing::Cancelling),
                    "w" => Some(Standing::Waiting),
                    "g" => Some(Standing::Gone),
                    _ => None,
                }
            })
            .collect::<Option<Vec<_>>>()?;
        Some((expiry(next), standings))
    });
    parsed.ok_or_else(|| keys.protocol(&reply))
}

pub(crate) async fn follow(
    connection: &ConnectionManager,
    keys: &Keys,
    leader: &str,
) -> Result<Followed, FleetError> {
    let mut command = keys.call(&LIBRARY.follow);
    command.arg(leader);
    let reply = call(connection.clone(), command)
        .await
        .map_err(|error| keys.unavailable(error))?;
    let parsed = match texts(&reply).as_deref() {
        Some(["done", payload]) => Some(Followed::Done((*payload).to_owned())),
        Some(["pending"]) => Some(Followed::Pending),
        Some(["gone"]) => Some(Followed::Gone),
        _ => None,
    };
    parsed.ok_or_else(|| keys.protocol(&reply))
}
