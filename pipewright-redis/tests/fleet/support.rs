//! A server, members and runtimes for the fleet tests, and an observer that checks what
//! the user's steps saw (how many ran at once, fencing tokens).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pipewright::{Current, Runtime};
use pipewright_redis::testing::RedisServer;
use pipewright_redis::{Fleet, FleetBuilder};
use redis::aio::ConnectionManager;

/// What every test runtime's steps can reach.
pub(crate) struct Ctx {
    pub(crate) fleet: Fleet,
    pub(crate) redis: ConnectionManager,
    pub(crate) log: Mutex<Vec<String>>,
    /// Shared by every runtime of the fixture.
    pub(crate) observer: Arc<Observer>,
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
    fixture_with(members, |builder| builder).await
}

/// [`fixture`], each member's connection configured by `configure`.
pub(crate) async fn fixture_with(
    members: usize,
    configure: impl Fn(FleetBuilder) -> FleetBuilder,
) -> Option<Fixture> {
    let server = RedisServer::start_or_skip().unwrap()?;
    let mut fleets = Vec::new();
    let mut runtimes = Vec::new();
    let observer = Arc::new(Observer::default());
    for _ in 0..members {
        let fleet = configure(Fleet::builder(server.url()))
            .connect()
            .await
            .unwrap();
        let ctx = Arc::new(Ctx {
            redis: fleet.connection(),
            fleet: fleet.clone(),
            log: Mutex::default(),
            observer: Arc::clone(&observer),
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

/// Counts the user's steps running at once per key, as the steps report it: every member
/// of a fixture is in this process, so every step of every member reports here, at the
/// moment it starts and ends (no network between). A step's fencing tokens are kept in a
/// set, so that counting out is idempotent (a cancelled step's `finally!` counts it out
/// whether or not it got in). For a queue of max 1 it also checks that fencing tokens
/// only increase per key (with several holders, a later one may start first).
#[derive(Default)]
pub(crate) struct Observer {
    keys: Mutex<HashMap<String, Observed>>,
}

#[derive(Default)]
struct Observed {
    live: HashSet<u64>,
    peak: usize,
    last_token: u64,
}

impl Observer {
    /// Counts a step in; an error if more than `max` run at once or the token went back.
    pub(crate) fn enter(&self, key: &str, token: u64, max: usize) -> Result<(), String> {
        let mut keys = self.keys.lock().unwrap();
        let observed = keys.entry(key.to_owned()).or_default();
        observed.live.insert(token);
        let live = observed.live.len();
        observed.peak = observed.peak.max(live);
        if max == 1 && token <= observed.last_token {
            return Err(format!("{key}: token {token} is not above the last one"));
        }
        observed.last_token = token;
        if live > max {
            return Err(format!("{key}: {live} running at once"));
        }
        Ok(())
    }

    /// Counts a step out (idempotent).
    pub(crate) fn leave(&self, key: &str, token: u64) {
        if let Some(observed) = self.keys.lock().unwrap().get_mut(key) {
            observed.live.remove(&token);
        }
    }

    /// The most steps that ran at once for `key`.
    pub(crate) fn peak(&self, key: &str) -> usize {
        self.keys
            .lock()
            .unwrap()
            .get(key)
            .map_or(0, |observed| observed.peak)
    }
}

/// The fencing token of the lease the step's instance runs under.
pub(crate) fn token(
    ctx: &Ctx,
    current: &Current<'_, impl Clone + Send + Sync + 'static, Arc<Ctx>>,
) -> u64 {
    ctx.fleet.lease(current).map_or(0, |lease| lease.token())
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
