//! A stream consumer *process* killed with SIGKILL mid-stream, while entries sit in its
//! producer's channel: nothing it had not processed was acknowledged, so another
//! consumer takes every such entry over once it has been idle for `claim_after`. Checked
//! with Redis: every entry is processed at least once, nothing is left pending, no entry
//! was acknowledged without having been processed, and an entry processed twice was
//! flagged redelivered on its second delivery.
//!
//! The child is this test binary run again (`consumes_until_killed`, which does nothing
//! unless `PIPELINES_STREAM_CHILD_URL` is set). Each consumer processes an entry in a
//! pipeline that records it in Redis (a list, in processing order) and acknowledges it in
//! its `finally!` once the record is stored.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pipewright::supervision::{ChildSpec, Producer, Restart, Supervisor, SupervisorHandle};
use pipewright::{pipeline, Pipeline, Runtime};
use pipewright_redis::testing::RedisServer;
use pipewright_redis::{RedisStreamSource, StreamAcks, StreamEntry};
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamInfoGroupsReply, StreamPendingCountReply};

#[path = "support/child.rs"]
mod child;

const CHILD_URL: &str = "PIPELINES_STREAM_CHILD_URL";
const STREAM: &str = "orders";
const GROUP: &str = "billing";
const PROCESSED: &str = "processed";
const ENTRIES: usize = 200;
const CHANNEL: usize = 4;
const CLAIM_AFTER: Duration = Duration::from_millis(500);

struct Ctx {
    redis: MultiplexedConnection,
    consumer: &'static str,
    /// How long processing an entry takes.
    pause: Duration,
    /// Entries waiting in the channel when the one being processed was received.
    waiting: AtomicUsize,
}

/// Records the entry as processed (`id redelivered consumer waiting`), at the end of the
/// list: the list is in processing order.
async fn record(ctx: &Ctx, entry: &StreamEntry) -> redis::RedisResult<()> {
    tokio::time::sleep(ctx.pause).await;
    let line = format!(
        "{} {} {} {}",
        entry.id(),
        u8::from(entry.redelivered()),
        ctx.consumer,
        ctx.waiting.load(Ordering::Relaxed)
    );
    redis::cmd("RPUSH")
        .arg(PROCESSED)
        .arg(line)
        .query_async(&mut ctx.redis.clone())
        .await
}

/// Processing: recorded, then acknowledged once the pipeline ends (only when the record
/// was stored: an entry whose record failed stays pending, to be delivered again).
fn processing() -> Pipeline<StreamEntry, Ctx> {
    pipeline!(|entry: StreamEntry, ctx: &Ctx| {
        record(ctx, &entry).await?;
        finally!(|error| {
            if error.is_none() {
                entry.ack();
            }
        });
    })
}

/// A consumer named `consumer`: a supervised producer reading the stream into a bounded
/// channel, and a loop that processes each entry it receives, one at a time.
struct Consumer {
    runtime: Runtime<Ctx>,
    acks: StreamAcks,
    receiver: tokio::sync::mpsc::Receiver<StreamEntry>,
}

async fn consumer(
    url: &str,
    consumer: &'static str,
    pause: Duration,
) -> (Consumer, SupervisorHandle) {
    let client = redis::Client::open(url).unwrap();
    let ctx = Ctx {
        redis: client.get_multiplexed_async_connection().await.unwrap(),
        consumer,
        pause,
        waiting: AtomicUsize::new(0),
    };
    let source = RedisStreamSource::builder(url, STREAM, GROUP, consumer)
        .claim_after(CLAIM_AFTER)
        .block(Duration::from_millis(50))
        .batch(5)
        .connect()
        .await
        .unwrap();
    let acks = source.acks();
    let (sender, receiver) = tokio::sync::mpsc::channel(CHANNEL);
    let runtime = Runtime::builder(ctx)
        .register("process", processing())
        .start()
        .unwrap();
    let producer =
        ChildSpec::new("reader", Producer::new(source, sender)).restart(Restart::Transient);
    let supervisor = runtime
        .supervise(Supervisor::new(consumer).child(producer))
        .unwrap();
    let consumer = Consumer {
        runtime,
        acks,
        receiver,
    };
    (consumer, supervisor)
}

impl Consumer {
    /// Processes the next entry; `false` once the channel is closed.
    async fn process_next(&mut self) -> bool {
        let Some(entry) = self.receiver.recv().await else {
            return false;
        };
        self.runtime
            .context()
            .waiting
            .store(self.receiver.len(), Ordering::Relaxed);
        self.runtime
            .invoke("process", entry)
            .unwrap()
            .await
            .unwrap();
        true
    }
}

/// The child's part: consumes slowly (so that its channel stays full) until killed.
#[tokio::test]
async fn consumes_until_killed() {
    let Ok(url) = std::env::var(CHILD_URL) else {
        return;
    };
    let (mut consumer, _supervisor) = consumer(&url, "child", Duration::from_millis(5)).await;
    println!("consuming");
    while consumer.process_next().await {}
}

/// What the consumers recorded: `(id, redelivered, consumer, waiting)`, in order.
async fn processed(redis: &mut MultiplexedConnection) -> Vec<(String, bool, String, usize)> {
    let lines: Vec<String> = redis::cmd("LRANGE")
        .arg(PROCESSED)
        .arg(0)
        .arg(-1)
        .query_async(redis)
        .await
        .unwrap();
    lines
        .iter()
        .map(|line| {
            let parts: Vec<&str> = line.split(' ').collect();
            (
                parts[0].to_owned(),
                parts[1] == "1",
                parts[2].to_owned(),
                parts[3].parse().unwrap(),
            )
        })
        .collect()
}

/// The group's pending entries: id -> owner.
async fn pending(redis: &mut MultiplexedConnection) -> HashMap<String, String> {
    let reply: StreamPendingCountReply = redis::cmd("XPENDING")
        .arg(STREAM)
        .arg(GROUP)
        .arg("-")
        .arg("+")
        .arg(10 * ENTRIES)
        .query_async(redis)
        .await
        .unwrap();
    reply
        .ids
        .into_iter()
        .map(|pending| (pending.id, pending.consumer))
        .collect()
}

/// A stream id as a number pair, to compare.
fn position(id: &str) -> (u64, u64) {
    let (millis, sequence) = id.split_once('-').unwrap();
    (millis.parse().unwrap(), sequence.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_process_killed_mid_stream_loses_nothing() {
    let Some(server) = RedisServer::start_or_skip().unwrap() else {
        return;
    };
    let client = redis::Client::open(server.url()).unwrap();
    let mut redis = client.get_multiplexed_async_connection().await.unwrap();
    let mut ids = Vec::new();
    for n in 0..ENTRIES {
        let id: String = redis::cmd("XADD")
            .arg(STREAM)
            .arg("*")
            .arg("n")
            .arg(n)
            .query_async(&mut redis)
            .await
            .unwrap();
        ids.push(id);
    }

    let mut child = child::spawn_until(
        "consumes_until_killed",
        CHILD_URL,
        &server.url(),
        "consuming",
    );
    // Kill it once it has processed some, with its channel full behind them (the
    // receipt of the last one had freed a slot).
    let started = Instant::now();
    loop {
        let done = processed(&mut redis).await;
        if done.len() >= 30 && done.last().is_some_and(|last| last.3 == CHANNEL - 1) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "never full: {done:?}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    child.kill().unwrap(); // SIGKILL: no destructor, no last acknowledgement
    child.wait().unwrap();

    // What the dead consumer left: everything it was given and did not process is still
    // pending; what is acknowledged was processed.
    let by_child: HashSet<String> = processed(&mut redis)
        .await
        .into_iter()
        .map(|(id, ..)| id)
        .collect();
    let left = pending(&mut redis).await;
    let groups: StreamInfoGroupsReply = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(STREAM)
        .query_async(&mut redis)
        .await
        .unwrap();
    let last_delivered = position(&groups.groups[0].last_delivered_id);
    let given: Vec<&String> = ids
        .iter()
        .filter(|id| position(id) <= last_delivered)
        .collect();
    let acknowledged_unprocessed: Vec<&&String> = given
        .iter()
        .filter(|id| !left.contains_key(id.as_str()) && !by_child.contains(id.as_str()))
        .collect();
    let unprocessed_pending = given
        .iter()
        .filter(|id| left.contains_key(id.as_str()) && !by_child.contains(id.as_str()))
        .count();
    println!(
        "killed after processing {}: given {}, acknowledged without being processed {}, \
         left pending unprocessed {unprocessed_pending}",
        by_child.len(),
        given.len(),
        acknowledged_unprocessed.len()
    );

    // Another consumer takes over: the rest of the stream, and what the dead one left
    // once it has been idle for `claim_after`.
    let (mut heir, mut supervisor) = consumer(&server.url(), "heir", Duration::ZERO).await;
    let heir = tokio::spawn(async move {
        while heir.process_next().await {}
        heir.acks
    });
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut lost = ids.len();
    while Instant::now() < deadline {
        let done: HashSet<String> = processed(&mut redis)
            .await
            .into_iter()
            .map(|(id, ..)| id)
            .collect();
        lost = ids.iter().filter(|id| !done.contains(*id)).count();
        if lost == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Stopping the producer closes the channel: the heir ends once it has processed
    // what is in it.
    supervisor.stop();
    let acks = heir.await.unwrap();
    acks.flush().await.unwrap();
    println!("entries never processed: {lost}");

    assert!(
        acknowledged_unprocessed.is_empty(),
        "acknowledged without being processed: {acknowledged_unprocessed:?}"
    );
    assert_eq!(lost, 0, "entries lost");
    // The kill came while entries sat in the child's channel.
    assert!(unprocessed_pending > 0);
    let pending_after = pending(&mut redis).await;
    assert!(pending_after.is_empty(), "{pending_after:?}");
    let records = processed(&mut redis).await;
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (id, redelivered, consumer, _) in &records {
        let times = seen.entry(id.as_str()).or_default();
        *times += 1;
        assert!(
            *times == 1 || *redelivered,
            "{id} processed again by {consumer} without the flag"
        );
    }
    // What the dead one left pending and unprocessed went to the heir, flagged.
    for (id, owner) in &left {
        assert_eq!(owner, "child");
        if !by_child.contains(id) {
            assert!(records.iter().any(|(i, redelivered, consumer, _)| i == id
                && *redelivered
                && consumer == "heir"));
        }
    }
    // Each consumer processed what it read fresh in stream order.
    for name in ["child", "heir"] {
        let fresh: Vec<(u64, u64)> = records
            .iter()
            .filter(|(_, redelivered, consumer, _)| consumer == name && !redelivered)
            .map(|(id, ..)| position(id))
            .collect();
        assert!(fresh.windows(2).all(|w| w[0] < w[1]), "{name}");
    }
    let twice = seen.values().filter(|times| **times > 1).count();
    println!(
        "{} records for {} entries: {twice} processed twice (flagged redelivered)",
        records.len(),
        ids.len()
    );
}
