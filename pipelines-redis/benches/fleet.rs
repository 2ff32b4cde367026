//! Fleet throughput and latency against a local redis-server (started here):
//!
//! - admissions per second through one enqueued fleet queue (max 1, and max 4), and
//!   through 1,000 per-key queues, with 1, 2 and 4 runtimes (each its own member and
//!   connection) issuing invocations at once;
//! - the added latency of a fleet-wide invoke over a local one when a slot is free
//!   (invoke and await, one after the other).
//!
//! `cargo bench -p pipelines-redis --bench fleet` (README, "Fleet scale").

use std::time::Instant;

use pipelines::{pipeline, Pipeline, Runtime};
use pipelines_redis::testing::RedisServer;
use pipelines_redis::Fleet;

const JOBS: usize = 6_000;
const ROUNDS: usize = 3;

fn job() -> Pipeline<u64, ()> {
    pipeline!(|n: u64, _ctx: &()| {
        n + 1;
    })
}

async fn members(url: &str, count: usize) -> Vec<(Fleet, Runtime<()>)> {
    let mut members = Vec::new();
    for _ in 0..count {
        let fleet = Fleet::connect(url).await.unwrap();
        members.push((fleet, Runtime::builder(()).start().unwrap()));
    }
    members
}

/// Jobs per second, median of `ROUNDS`: every member invokes its share at once.
async fn throughput(url: &str, runtimes: usize, max: usize, keys: usize, round_name: &str) -> f64 {
    let members = members(url, runtimes).await;
    let mut rates = Vec::new();
    for round in 0..ROUNDS {
        let name = format!("{round_name}-{round}");
        let wrapped: Vec<_> = members
            .iter()
            .map(|(fleet, _)| {
                let queue = fleet.queue(name.clone()).enqueued().max(max);
                if keys > 1 {
                    queue.wrap_by(job(), move |n: &u64| (n % keys as u64).to_string())
                } else {
                    queue.wrap(job())
                }
            })
            .collect();
        let started = Instant::now();
        let mut handles = Vec::with_capacity(JOBS);
        for n in 0..JOBS {
            let member = n % runtimes;
            handles.push(
                members[member]
                    .1
                    .invoke_pipeline(&wrapped[member], n as u64)
                    .unwrap(),
            );
        }
        for handle in handles {
            handle.await.unwrap();
        }
        rates.push(JOBS as f64 / started.elapsed().as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

/// Median microseconds per invoke-and-await, one after the other.
async fn latency(runtime: &Runtime<()>, pipeline: &Pipeline<u64, ()>, count: usize) -> f64 {
    let mut samples = Vec::with_capacity(count);
    for n in 0..count {
        let started = Instant::now();
        runtime
            .invoke_pipeline(pipeline, n as u64)
            .unwrap()
            .await
            .unwrap();
        samples.push(started.elapsed());
    }
    samples.sort();
    samples[samples.len() / 2].as_secs_f64() * 1e6
}

fn main() {
    let Some(server) = RedisServer::start_or_skip().unwrap() else {
        return;
    };
    let url = server.url();
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    tokio.block_on(async {
        println!("fleet admissions per second ({JOBS} jobs, median of {ROUNDS}):");
        println!(
            "| runtimes | one queue, max 1 | one queue, max 4 | 1,000 per-key queues, max 1 |"
        );
        println!("| ---: | ---: | ---: | ---: |");
        for runtimes in [1, 2, 4] {
            let one = throughput(&url, runtimes, 1, 1, &format!("one-{runtimes}")).await;
            let four = throughput(&url, runtimes, 4, 1, &format!("four-{runtimes}")).await;
            let keyed = throughput(&url, runtimes, 1, 1_000, &format!("keyed-{runtimes}")).await;
            println!("| {runtimes} | {one:.0} | {four:.0} | {keyed:.0} |");
        }
        let (fleet, runtime) = members(&url, 1).await.pop().unwrap();
        let local = job();
        let wrapped = fleet.queue("latency").enqueued().wrap(job());
        // Warm up: scripts loaded, connection busy.
        latency(&runtime, &wrapped, 500).await;
        latency(&runtime, &local, 500).await;
        let fleet_us = latency(&runtime, &wrapped, 5_000).await;
        let local_us = latency(&runtime, &local, 5_000).await;
        let ping = {
            let mut connection = fleet.connection();
            let mut samples = Vec::new();
            for _ in 0..5_000 {
                let started = Instant::now();
                let _: String = redis::cmd("PING")
                    .query_async(&mut connection)
                    .await
                    .unwrap();
                samples.push(started.elapsed());
            }
            samples.sort();
            samples[samples.len() / 2]
        };
        println!();
        println!("invoke + await, slot free (median of 5,000):");
        println!("| local | fleet-wide | added | one PING round trip |");
        println!("| ---: | ---: | ---: | ---: |");
        println!(
            "| {local_us:.1} us | {fleet_us:.1} us | {:.1} us | {:.1} us |",
            fleet_us - local_us,
            ping.as_secs_f64() * 1e6
        );
    });
}
