//! The stream source: three consumers of one group, each a supervised producer; one is
//! killed mid-way (its producer dropped, as a crash would: its fetched entries stay
//! pending). Every entry is delivered, none lost; each consumer delivers the entries it
//! read fresh in stream order; only what the killed consumer had handed out but not
//! acknowledged comes twice, marked redelivered, with its id.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pipelines::supervision::{ChildSpec, Producer, Restart, Supervisor};
use pipelines::Runtime;
use pipelines_redis::testing::RedisServer;
use pipelines_redis::{RedisStreamSource, StreamEntry};

const ENTRIES: u64 = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_consumers_one_killed_every_entry_delivered() {
    let Some(server) = RedisServer::start_or_skip().unwrap() else {
        return;
    };
    let client = redis::Client::open(server.url()).unwrap();
    let mut writer = client.get_multiplexed_async_connection().await.unwrap();
    let runtime = Runtime::builder(()).start().unwrap();
    let delivered: Arc<Mutex<Vec<(usize, StreamEntry)>>> = Arc::default();
    let mut supervisors = Vec::new();
    let mut drains = Vec::new();
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
        let (sender, mut receiver) = tokio::sync::mpsc::channel(4);
        let producer = ChildSpec::new(format!("c{consumer}"), Producer::new(source, sender))
            .restart(Restart::Transient);
        supervisors.push(
            runtime
                .supervise(Supervisor::new(format!("consumer-{consumer}")).child(producer))
                .unwrap(),
        );
        let delivered = Arc::clone(&delivered);
        drains.push(tokio::spawn(async move {
            while let Some(entry) = receiver.recv().await {
                delivered.lock().unwrap().push((consumer, entry));
                // A consumer of some speed, so that all three get entries.
                tokio::time::sleep(Duration::from_micros(500)).await;
            }
        }));
    }
    let mut ids = Vec::new();
    for n in 0..ENTRIES {
        let id: String = redis::cmd("XADD")
            .arg("clicks")
            .arg("*")
            .arg("n")
            .arg(n)
            .query_async(&mut writer)
            .await
            .unwrap();
        ids.push(id);
        if n == ENTRIES / 3 {
            // Kill consumer 1 once it delivered some: what it fetched stays pending.
            loop {
                let count = delivered
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
        }
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
    // The live consumers end once nothing came for a while (after claiming what the
    // killed one left).
    for drain in drains {
        drain.await.unwrap();
    }
    let delivered = delivered.lock().unwrap().clone();
    let mut times: HashMap<&str, usize> = HashMap::new();
    for (_, entry) in &delivered {
        *times.entry(entry.id()).or_default() += 1;
    }
    for id in &ids {
        assert!(times.contains_key(id.as_str()), "entry {id} lost");
    }
    // Twice at most, and only an entry the killed consumer handed out and did not
    // acknowledge (the last one it delivered), redelivered by another.
    let twice: Vec<&&str> = times
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, _)| id)
        .collect();
    assert!(twice.len() <= 1, "{twice:?}");
    for id in twice {
        let copies: Vec<&(usize, StreamEntry)> =
            delivered.iter().filter(|(_, e)| e.id() == *id).collect();
        assert_eq!(copies.len(), 2);
        assert_eq!(copies[0].0, 1);
        assert!(copies[1].1.redelivered());
    }
    // Each consumer delivered what it read fresh in stream order.
    for consumer in 0..3 {
        let fresh: Vec<&str> = delivered
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
    // Everything is acknowledged: nothing pending in the group.
    let pending: redis::Value = redis::cmd("XPENDING")
        .arg("clicks")
        .arg("indexers")
        .query_async(&mut writer)
        .await
        .unwrap();
    let redis::Value::Array(summary) = pending else {
        panic!("{pending:?}")
    };
    assert_eq!(summary[0], redis::Value::Int(0), "{summary:?}");
    // Fields cross intact.
    let n: u64 = delivered[0].1.field_str("n").unwrap().parse().unwrap();
    assert!(n < ENTRIES);
}
