//! A server, members and runtimes for the fleet tests, and an observer that checks from
//! Redis's side what the user's steps saw (how many ran at once, fencing tokens).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pipelines::{Current, Runtime};
use pipelines_redis::testing::RedisServer;
use pipelines_redis::Fleet;
use redis::aio::ConnectionManager;
use redis::Script;

/// What every test runtime's steps can reach.
pub(crate) struct Ctx {
    pub(crate) fleet: Fleet,
    pub(crate) redis: ConnectionManager,
    pub(crate) log: Mutex<Vec<String>>,
}

impl Ctx {
    pub(crate) fn push(&self, entry: impl Into<String>) {
        self.log.lock().unwrap().push(entry.into());
    }
}

#[allow(dead_code)] // `server` is kept alive (and some tests restart it)
pub(crate) struct Fixture {
    pub(crate) server: RedisServer,
    pub(crate) fleets: Vec<Fleet>,
    pub(crate) runtimes: Vec<Runtime<Arc<Ctx>>>,
}

impl Fixture {
    /// Waits until Redis has run every member's releases: an invocation's result does
    /// not wait for its release (`Fleet::sync`).
    pub(crate) async fn sync(&self) {
        for fleet in &self.fleets {
            fleet.sync().await.unwrap();
        }
    }
}

/// A server and `members` runtimes, each with a fleet member of its own; `None` (the
/// harness printed why) when redis-server is not installed.
pub(crate) async fn fixture(members: usize) -> Option<Fixture> {
    let server = RedisServer::start_or_skip().unwrap()?;
    let mut fleets = Vec::new();
    let mut runtimes = Vec::new();
    for _ in 0..members {
        let fleet = Fleet::connect(&server.url()).await.unwrap();
        let ctx = Arc::new(Ctx {
            redis: fleet.connection(),
            fleet: fleet.clone(),
            log: Mutex::default(),
        });
        runtimes.push(Runtime::builder(ctx).start().unwrap());
        fleets.push(fleet);
    }
    Some(Fixture {
        server,
        fleets,
        runtimes,
    })
}

/// Counts, in Redis, the user's steps running at once per key (a set of their fencing
/// tokens, so that counting out is idempotent: a cancelled step's `finally!` counts it
/// out whether or not it got in, and commands of one connection run in order), keeps the
/// highest count, and, for a queue of max 1, checks that fencing tokens only increase
/// per key (-1 when one did not; with several holders, a later one may start first).
const ENTER: &str = r"
redis.call('SADD', KEYS[1], ARGV[1])
local live = redis.call('SCARD', KEYS[1])
if live > tonumber(redis.call('GET', KEYS[2]) or '0') then redis.call('SET', KEYS[2], live) end
local token = tonumber(ARGV[1])
if ARGV[2] == '1' and token <= tonumber(redis.call('GET', KEYS[3]) or '0') then return -1 end
redis.call('SET', KEYS[3], ARGV[1])
return live
";

/// Counts a step in; an error if more than `max` run at once or the token went back.
pub(crate) async fn enter(
    redis: &ConnectionManager,
    key: &str,
    token: u64,
    max: i64,
) -> Result<(), String> {
    let live: i64 = Script::new(ENTER)
        .key(format!("test:live:{key}"))
        .key(format!("test:peak:{key}"))
        .key(format!("test:token:{key}"))
        .arg(token)
        .arg(max)
        .invoke_async(&mut redis.clone())
        .await
        .map_err(|error| error.to_string())?;
    match live {
        -1 => Err(format!("{key}: token {token} is not above the last one")),
        live if live > max => Err(format!("{key}: {live} running at once")),
        _ => Ok(()),
    }
}

/// Counts a step out (idempotent).
pub(crate) async fn leave(redis: &ConnectionManager, key: &str, token: u64) {
    let _: i64 = redis::cmd("SREM")
        .arg(format!("test:live:{key}"))
        .arg(token)
        .query_async(&mut redis.clone())
        .await
        .unwrap();
}

/// The fencing token of the lease the step's instance runs under.
pub(crate) fn token(
    ctx: &Ctx,
    current: &Current<'_, impl Clone + Send + Sync + 'static, Arc<Ctx>>,
) -> u64 {
    ctx.fleet.lease(current).map_or(0, |lease| lease.token())
}

/// The most user steps that ran at once for `key`, as the observer saw it.
pub(crate) async fn observed_peak(redis: &ConnectionManager, key: &str) -> i64 {
    let peak: Option<i64> = redis::cmd("GET")
        .arg(format!("test:peak:{key}"))
        .query_async(&mut redis.clone())
        .await
        .unwrap();
    peak.unwrap_or(0)
}

/// How many times Redis ran a fleet function (FCALL) so far.
pub(crate) async fn script_calls(redis: &ConnectionManager) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut redis.clone())
        .await
        .unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix("cmdstat_fcall:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|calls| calls.parse().ok())
        .unwrap_or(0)
}

/// Waits (real time, polling a condition that a test expects to become true soon).
pub(crate) async fn eventually(mut condition: impl FnMut() -> bool) {
    for _ in 0..2_000 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("condition not reached within 10 s");
}
