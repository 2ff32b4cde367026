//! The Lua scripts that keep a fleet queue in Redis, and their replies as types. Each runs
//! atomically in one round trip (EVALSHA, loaded again by the client after a restart).

use redis::aio::ConnectionManager;
use redis::{RedisError, Script};

use crate::error::FleetError;

/// Where a queue is in Redis: the prefix of its keys. The braces make every key of a
/// queue one hash slot.
pub(crate) fn prefix(queue: &str) -> String {
    format!("pipelines:{{{queue}}}")
}

/// The channel a member's messages arrive on.
pub(crate) fn member_channel(member: &str) -> String {
    format!("pipelines:m:{member}")
}

pub(crate) struct Scripts {
    acquire: Script,
    release: Script,
    renew: Script,
    follow: Script,
}

macro_rules! script {
    ($file:literal) => {
        Script::new(concat!(
            include_str!("lua/prelude.lua"),
            "\n",
            include_str!(concat!("lua/", $file))
        ))
    };
}

impl Scripts {
    pub(crate) fn new() -> Self {
        Scripts {
            acquire: script!("acquire.lua"),
            release: script!("release.lua"),
            renew: script!("renew.lua"),
            follow: script!("follow.lua"),
        }
    }
}

/// What every script needs to know of its queue.
#[derive(Debug, Clone)]
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

    fn invocation<'a>(&self, script: &'a Script) -> redis::ScriptInvocation<'a> {
        let mut invocation = script.key(&self.prefix);
        invocation
            .arg(if self.audit { "1" } else { "0" })
            .arg(self.max);
        invocation
    }

    fn protocol(&self, reply: &[String]) -> FleetError {
        FleetError::Protocol {
            queue: self.queue.clone(),
            reply: reply.join(" "),
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
    /// Waiting; the first lease in the queue expires in this many ms (if any).
    Waiting(Option<u64>),
    Dropped,
    /// Shares the run of this leader.
    Shared(String),
    Mismatch(String),
}

/// Where an id stands, as a renewal finds it.
#[derive(Debug)]
pub(crate) enum Standing {
    Held(u64),
    Cancelling(u64),
    Waiting(Option<u64>),
    Gone,
}

/// Where a leader's run stands, for a follower.
#[derive(Debug)]
pub(crate) enum Followed {
    Done(String),
    Pending,
    Gone,
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

impl Scripts {
    pub(crate) async fn acquire(
        &self,
        connection: &ConnectionManager,
        keys: &Keys,
        request: AcquireRequest<'_>,
    ) -> Result<Acquired, FleetError> {
        let mut invocation = keys.invocation(&self.acquire);
        invocation
            .arg(request.id)
            .arg(request.behaviour)
            .arg(request.ttl_ms)
            .arg(request.config)
            .arg(request.argument);
        let reply: Vec<String> = invocation
            .invoke_async(&mut connection.clone())
            .await
            .map_err(|error| keys.unavailable(error))?;
        match reply.as_slice() {
            [kind, token] if kind == "admitted" => token
                .parse()
                .map(Acquired::Admitted)
                .map_err(|_| keys.protocol(&reply)),
            [kind, next] if kind == "waiting" => Ok(Acquired::Waiting(expiry(next))),
            [kind] if kind == "dropped" => Ok(Acquired::Dropped),
            [kind, leader] if kind == "shared" => Ok(Acquired::Shared(leader.clone())),
            [kind, existing] if kind == "mismatch" => Ok(Acquired::Mismatch(existing.clone())),
            _ => Err(keys.protocol(&reply)),
        }
    }

    /// Releases a lease (`token` given) or withdraws whatever `id` is (`None`), handing
    /// `payload` to the followers if it led a use-existing run. `true` if it still held
    /// its lease or place.
    pub(crate) async fn release(
        &self,
        connection: &ConnectionManager,
        keys: &Keys,
        id: &str,
        token: Option<u64>,
        payload: &str,
    ) -> Result<bool, FleetError> {
        let mut invocation = keys.invocation(&self.release);
        invocation
            .arg(id)
            .arg(token.map(|token| token.to_string()).unwrap_or_default())
            .arg(payload);
        let status: String = invocation
            .invoke_async(&mut connection.clone())
            .await
            .map_err(|error| keys.unavailable(error))?;
        Ok(status != "gone")
    }

    pub(crate) async fn renew(
        &self,
        connection: &ConnectionManager,
        keys: &Keys,
        id: &str,
        ttl_ms: u64,
    ) -> Result<Standing, FleetError> {
        let mut invocation = keys.invocation(&self.renew);
        invocation.arg(id).arg(ttl_ms);
        let reply: Vec<String> = invocation
            .invoke_async(&mut connection.clone())
            .await
            .map_err(|error| keys.unavailable(error))?;
        let token = |text: &String| text.parse().map_err(|_| keys.protocol(&reply));
        match reply.as_slice() {
            [kind, held] if kind == "held" => token(held).map(Standing::Held),
            [kind, held] if kind == "cancelling" => token(held).map(Standing::Cancelling),
            [kind, next] if kind == "waiting" => Ok(Standing::Waiting(expiry(next))),
            [kind] if kind == "gone" => Ok(Standing::Gone),
            _ => Err(keys.protocol(&reply)),
        }
    }

    pub(crate) async fn follow(
        &self,
        connection: &ConnectionManager,
        keys: &Keys,
        leader: &str,
    ) -> Result<Followed, FleetError> {
        let mut invocation = keys.invocation(&self.follow);
        invocation.arg(leader);
        let reply: Vec<String> = invocation
            .invoke_async(&mut connection.clone())
            .await
            .map_err(|error| keys.unavailable(error))?;
        match reply.as_slice() {
            [kind, payload] if kind == "done" => Ok(Followed::Done(payload.clone())),
            [kind] if kind == "pending" => Ok(Followed::Pending),
            [kind] if kind == "gone" => Ok(Followed::Gone),
            _ => Err(keys.protocol(&reply)),
        }
    }
}
