//! Stream consumption throughput against a local redis-server (started here): entries per
//! second that one `RedisStreamSource` feeding a supervised `Producer` delivers to a
//! consumer through a bounded channel, 10,000 entries already in the stream, default
//! source settings (a read fetches 10), channel of 64. A round ends once the consumer has
//! received every entry and Redis has acknowledged them all.
//!
//! `cargo bench -p pipewright-redis --bench stream`

use std::time::{Duration, Instant};

use pipewright::supervision::{ChildSpec, Producer, Restart, Supervisor};
use pipewright::Runtime;
use pipewright_redis::testing::RedisServer;
use pipewright_redis::RedisStreamSource;
use redis::aio::ConnectionManager;

const ENTRIES: usize = 10_000;
const ROUNDS: usize = 3;

async fn fill(connection: &mut ConnectionManager, stream: &str) {
    for chunk in 0..ENTRIES / 500 {
        let mut pipe = redis::pipe();
        for n in chunk * 500..(chunk + 1) * 500 {
            pipe.cmd("XADD")
                .arg(stream)
                .arg("*")
                .arg("n")
                .arg(n)
                .ignore();
        }
        let () = pipe.query_async(connection).await.unwrap();
    }
}

async fn pending(connection: &mut ConnectionManager, stream: &str) -> i64 {
    let summary: redis::Value = redis::cmd("XPENDING")
        .arg(stream)
        .arg("bench")
        .query_async(connection)
        .await
        .unwrap();
    match summary {
        redis::Value::Array(parts) => match parts.first() {
            Some(redis::Value::Int(count)) => *count,
            _ => -1,
        },
        _ => -1,
    }
}

/// Entries per second for one round on a fresh stream.
async fn round(
    url: &str,
    connection: &mut ConnectionManager,
    runtime: &Runtime<()>,
    n: usize,
) -> f64 {
    let stream = format!("bench-{n}");
    fill(connection, &stream).await;
    let source = RedisStreamSource::builder(url, &stream, "bench", "consumer")
        .connect()
        .await
        .unwrap();
    let acks = source.acks();
    let (sender, mut receiver) = tokio::sync::mpsc::channel(64);
    let started = Instant::now();
    let producer =
        ChildSpec::new("reader", Producer::new(source, sender)).restart(Restart::Transient);
    let mut supervisor = runtime
        .supervise(Supervisor::new(format!("bench-{n}")).child(producer))
        .unwrap();
    let mut received = 0;
    while received < ENTRIES {
        let Some(entry) = receiver.recv().await else {
            break;
        };
        entry.ack();
        received += 1;
    }
    acks.flush().await.unwrap();
    let elapsed = started.elapsed();
    supervisor.stop();
    assert_eq!(received, ENTRIES);
    assert_eq!(pending(connection, &stream).await, 0);
    ENTRIES as f64 / elapsed.as_secs_f64()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let server = RedisServer::start_or_skip()
        .unwrap()
        .expect("the bench needs redis-server");
    let client = redis::Client::open(server.url()).unwrap();
    let mut connection = ConnectionManager::new(client).await.unwrap();
    let runtime = Runtime::builder(()).start().unwrap();
    // One round to warm up (connections, allocator), not counted.
    round(&server.url(), &mut connection, &runtime, 0).await;
    let mut rates = Vec::new();
    for n in 1..=ROUNDS {
        let rate = round(&server.url(), &mut connection, &runtime, n).await;
        println!("round {n}: {rate:>9.0} entries/s");
        rates.push(rate);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    rates.sort_by(f64::total_cmp);
    println!(
        "stream consume, {ENTRIES} entries, ack when done: median {:.0} entries/s (min {:.0}, max {:.0})",
        rates[ROUNDS / 2],
        rates[0],
        rates[ROUNDS - 1]
    );
}
