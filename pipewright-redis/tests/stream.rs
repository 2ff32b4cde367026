//! The stream source inside one process.
//!
//! - Three consumers of one group, each a supervised producer and a loop that acknowledges
//!   each entry once it has recorded it; one is killed mid-way (its producer stopped and
//!   its receiver dropped with what its channel held, as a crash would: nothing it had not
//!   processed was acknowledged). Every entry is processed, and acknowledged; only what
//!   the killed consumer left comes again, to another consumer, flagged redelivered; each
//!   consumer processes what it read fresh in stream order.
//! - A consumer slower than `claim_after` is never handed its own in-flight entries again
//!   by its own claims; an entry it drops without acknowledging comes back to it, flagged.
//! - Acknowledgements made after the source is gone still reach Redis.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pipewright::supervision::{ChildSpec, Producer, Restart, Supervisor};
use pipewright::Runtime;
use pipewright_redis::testing::RedisServer;
use pipewright_redis::{RedisStreamSource, StreamEntry};
use redis::aio::MultiplexedConnection;

const ENTRIES: u64 = 300;

/// How many entries of `group` are pending (the summary form of XPENDING).
async fn pending_count(redis: &mut MultiplexedConnection, stream: &str, group: &str) -> i64 {
    let pending: redis::Value = redis::cmd("XPENDING")
        .arg(stream)
        .arg(group)
        .query_async(redis)
        .await
        .unwrap();
    let redis::Value::Array(summary) = pending else {
        panic!("{pending:?}")
    };
    match summary[0] {
        redis::Value::Int(count) => count,
        ref other => panic!("{other:?}"),
    }
}

/// The ids pending with `consumer`.
async fn pending_with(
    redis: &mut MultiplexedConnection,
    stream: &str,
    group: &str,
    consumer: &str,
) -> Vec<String> {
    let reply: redis::streams::StreamPendingCountReply = redis::cmd("XPENDING")
        .arg(stream)
        .arg(group)
        .arg("-")
        .arg("+")
        .arg(10_000)
        .arg(consumer)
        .query_async(redis)
        .await
        .unwrap();
    reply.ids.into_iter().map(|pending| pending.id).collect()
}

async fn add(redis: &mut MultiplexedConnection, stream: &str, n: u64) -> String {
    redis::cmd("XADD")
        .arg(stream)
        .arg("*")
        .arg("n")
        .arg(n)
        .query_async(redis)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_consumers_one_killed_every_entry_processed() {
    let Some(server) = RedisServer::start_or_skip().unwrap() else {
        return;
    };
    let client = redis::Client::open(server.url()).unwrap();
    let mut writer = client.get_multiplexed_async_connection().await.unwrap();
    let runtime = Runtime::builder(()).start().unwrap();
    let processed: Arc<Mutex<Vec<(usize, StreamEntry)>>> = Arc::default();
    let mut supervisors = Vec::new();
    let mut drains = Vec::new();
    let mut acks = Vec::new();
    for consumer in 0..3 {
        let source =
            RedisStreamSource::builder(server.url(), "clicks", "indexers", format!("c{consumer}"))
                .claim_after(Duration::from_millis(300))
                .block(Duration::from_millis(50))
                .batch(5)
                .end_when_idle(Duration::from_millis(1_500))
                .connect()
                .await
                .unwrap();
        acks.push(source.acks());
        let (sender, mut receiver) = tokio::sync::mpsc::channel(4);
        let producer = ChildSpec::new(format!("c{consumer}"), Producer::new(source, sender))
            .restart(Restart::Transient);
        supervisors.push(
            runtime
                .supervise(Supervisor::new(format!("consumer-{consumer}")).child(producer))
                .unwrap(),
        );
        let processed = Arc::clone(&processed);
        drains.push(tokio::spawn(async move {
            while let Some(entry) = receiver.recv().await {
                // A consumer of some speed, so that all three get entries; the one to be
                // killed slower, so that its channel holds entries when it dies.
                let pause = if consumer == 1 { 3_000 } else { 500 };
                tokio::time::sleep(Duration::from_micros(pause)).await;
                processed.lock().unwrap().push((consumer, entry.clone()));
                entry.ack();
            }
        }));
    }
    let mut ids = Vec::new();
    let mut left = Vec::new();
    for n in 0..ENTRIES {
        ids.push(add(&mut writer, "clicks", n).await);
        if n == ENTRIES / 3 {
            // Kill consumer 1 once it processed some: what it fetched and did not
            // process (in its source, in its channel) stays pending.
            loop {
                let count = processed
                    .lock()
                    .unwrap()
                    .iter()
                    .filter(|(c, _)| *c == 1)
                    .count();
                if count >= 10 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            supervisors[1].stop();
            drains[1].abort();
            let _ = (&mut drains[1]).await;
            // What it processed is acknowledged; what it left is not.
            acks[1].flush().await.unwrap();
            left = pending_with(&mut writer, "clicks", "indexers", "c1").await;
        }
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
    // The live consumers end once nothing came for a while (after claiming what the
    // killed one left).
    for (consumer, drain) in drains.into_iter().enumerate() {
        if consumer != 1 {
            drain.await.unwrap();
        }
    }
    let processed = processed.lock().unwrap().clone();
    let mut times: HashMap<&str, usize> = HashMap::new();
    for (_, entry) in &processed {
        *times.entry(entry.id()).or_default() += 1;
        // Processed again only if delivered again, and then flagged.
        assert!(times[entry.id()] == 1 || entry.redelivered(), "{entry:?}");
    }
    for id in &ids {
        assert!(times.contains_key(id.as_str()), "entry {id} lost");
    }
    // What the killed consumer left went to another, flagged.
    let by_killed: HashSet<&str> = processed
        .iter()
        .filter(|(c, _)| *c == 1)
        .map(|(_, e)| e.id())
        .collect();
    for id in &left {
        assert!(
            !by_killed.contains(id.as_str()),
            "{id} processed yet pending"
        );
        assert!(
            processed
                .iter()
                .any(|(c, e)| *c != 1 && e.id() == id && e.redelivered()),
            "{id} left by the killed consumer"
        );
    }
    // Each consumer processed what it read fresh in stream order.
    for consumer in 0..3 {
        let fresh: Vec<&str> = processed
            .iter()
            .filter(|(c, e)| *c == consumer && !e.redelivered())
            .map(|(_, e)| e.id())
            .collect();
        assert!(!fresh.is_empty(), "consumer {consumer} got nothing");
        let position = |id: &str| ids.iter().position(|i| i == id).unwrap();
        assert!(
            fresh.windows(2).all(|w| position(w[0]) < position(w[1])),
            "consumer {consumer}"
        );
    }
    // Everything is acknowledged once the acknowledgements are through.
    for acks in &acks {
        acks.flush().await.unwrap();
    }
    assert_eq!(pending_count(&mut writer, "clicks", "indexers").await, 0);
    // Fields cross intact.
    let n: u64 = processed[0].1.field_str("n").unwrap().parse().unwrap();
    assert!(n < ENTRIES);
    println!(
        "{} processed for {ENTRIES} entries; the killed consumer left {} pending",
        processed.len(),
        left.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_is_not_handed_its_own_entries_twice() {
    let Some(server) = RedisServer::start_or_skip().unwrap() else {
        return;
    };
    let client = redis::Client::open(server.url()).unwrap();
    let mut writer = client.get_multiplexed_async_connection().await.unwrap();
    let mut ids = Vec::new();
    for n in 0..12 {
        ids.push(add(&mut writer, "slow", n).await);
    }
    // Each entry waits in the source and the channel, then is held, far longer than
    // `claim_after`: the source's own claims find them all idle enough.
    let source = RedisStreamSource::builder(server.url(), "slow", "workers", "w1")
        .claim_after(Duration::from_millis(60))
        .block(Duration::from_millis(10))
        .batch(2)
        .connect()
        .await
        .unwrap();
    let acks = source.acks();
    let (sender, mut receiver) = tokio::sync::mpsc::channel(2);
    let runtime = Runtime::builder(()).start().unwrap();
    let mut supervisor = runtime
        .supervise(Supervisor::new("slow").child(
            ChildSpec::new("reader", Producer::new(source, sender)).restart(Restart::Transient),
        ))
        .unwrap();
    let mut received = Vec::new();
    let mut dropped = None;
    let deadline = Instant::now() + Duration::from_secs(30);
    // Until every entry has been received, and the one dropped unacknowledged came back;
    // the last one is kept unacknowledged.
    let held = loop {
        assert!(Instant::now() < deadline, "{received:?}");
        let Ok(Some(entry)) =
            tokio::time::timeout(Duration::from_millis(100), receiver.recv()).await
        else {
            continue;
        };
        let entry: StreamEntry = entry;
        received.push((entry.id().to_owned(), entry.redelivered()));
        if received.len() == ids.len() + 1 {
            break entry;
        }
        if dropped.is_none() && entry.id() == ids[3] {
            // Dropped without acknowledgement: pending still, and claimable again.
            dropped = Some(entry.id().to_owned());
            drop(entry);
            continue;
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
        entry.ack();
    };
    let dropped = dropped.unwrap();
    let mut times: HashMap<&str, Vec<bool>> = HashMap::new();
    for (id, redelivered) in &received {
        times.entry(id.as_str()).or_default().push(*redelivered);
    }
    for id in &ids {
        let expected: &[bool] = if *id == dropped {
            &[false, true]
        } else {
            &[false]
        };
        assert_eq!(times[id.as_str()], expected, "{id}: {received:?}");
    }
    // Acknowledged after the source is gone (the producer and its source dropped): still
    // sent.
    supervisor.stop();
    let _ = supervisor.await;
    let end = receiver.recv().await;
    assert!(end.is_none(), "{end:?}");
    acks.flush().await.unwrap();
    assert_eq!(pending_count(&mut writer, "slow", "workers").await, 1);
    let copy = held.clone();
    assert!(!copy.is_acked());
    held.ack();
    assert!(copy.is_acked(), "clones share the acknowledgement");
    copy.ack(); // nothing more is sent
    acks.flush().await.unwrap();
    assert_eq!(pending_count(&mut writer, "slow", "workers").await, 0);
}
