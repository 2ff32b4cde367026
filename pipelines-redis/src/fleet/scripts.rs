//! The Lua functions that keep a fleet queue in Redis (one Redis Functions library,
//! `lua/*.lua`), and their replies as types. Each call runs atomically in one round trip.
//!
//! A library rather than `EVALSHA` scripts: its helpers are defined once when it loads,
//! not at every call (that halved the server time of a call), and Redis keeps it across
//! a restart with persistence and on replicas, so a call that is not waited for is not
//! lost to a missing script. The library's name carries a hash of its text, so members
//! running different versions do not replace each other's; a server that lost it
//! (restarted empty) gets it again from the first call that misses it.

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
}

impl Keys {
    pub(crate) fn new(queue: String, audit: bool, max: usize) -> Self {
        Keys {
            prefix: prefix(&queue),
            queue,
            audit,
            max,
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

pub(crate) struct AcquireRequest<'a> {
    pub(crate) id: &'a str,
    pub(crate) behaviour: &'a str,
    pub(crate) ttl_ms: u64,
    pub(crate) config: &'a str,
    pub(crate) argument: &'a str,
}

pub(crate) async fn acquire(
    connection: &ConnectionManager,
    keys: &Keys,
    request: AcquireRequest<'_>,
) -> Result<Acquired, FleetError> {
    let mut command = keys.call(&LIBRARY.acquire);
    command
        .arg(request.id)
        .arg(request.behaviour)
        .arg(request.ttl_ms)
        .arg(request.config)
        .arg(request.argument);
    let reply = call(connection.clone(), command)
        .await
        .map_err(|error| keys.unavailable(error))?;
    let parsed = match texts(&reply).as_deref() {
        Some(["admitted", token]) => token.parse().ok().map(Acquired::Admitted),
        Some(["waiting", next]) => Some(Acquired::Waiting(expiry(next))),
        Some(["dropped"]) => Some(Acquired::Dropped),
        Some(["shared", leader]) => Some(Acquired::Shared((*leader).to_owned())),
        Some(["mismatch", existing]) => Some(Acquired::Mismatch((*existing).to_owned())),
        _ => None,
    };
    parsed.ok_or_else(|| keys.protocol(&reply))
}

/// Releases a lease (`token` given) or withdraws whatever `id` is (`None`), handing
/// `payload` to the followers if it led a use-existing run. `true` if it still held its
/// lease or place. Owns its arguments: it is sent without waiting for the reply.
pub(crate) async fn release(
    connection: ConnectionManager,
    keys: Arc<Keys>,
    id: Arc<str>,
    token: Option<u64>,
    payload: String,
) -> Result<bool, FleetError> {
    let mut command = keys.call(&LIBRARY.release);
    command.arg(&*id);
    match token {
        Some(token) => command.arg(token),
        None => command.arg(""),
    };
    command.arg(payload);
    let reply = call(connection, command)
        .await
        .map_err(|error| keys.unavailable(error))?;
    match text(&reply) {
        Some(status) => Ok(status != "gone"),
        None => Err(keys.protocol(&reply)),
    }
}

/// Renews the leases and waiting places of `ids` (one queue's, one ttl); the first
/// expiry in the queue and where each id stands, in order.
pub(crate) async fn renew(
    connection: ConnectionManager,
    keys: &Keys,
    ttl_ms: u64,
    ids: impl Iterator<Item = &str>,
) -> Result<(Option<u64>, Vec<Standing>), FleetError> {
    let mut command = keys.call(&LIBRARY.renew);
    command.arg(ttl_ms);
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
