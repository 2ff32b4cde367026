//! Fleet throughput and latency against a local redis-server (started here):
//!
//! - admissions per second through one enqueued fleet queue (max 1, and max 4), and
//!   through 1,000 per-key queues, with 1, 2, 3 and 4 runtimes (each its own member and
//!   connection) issuing invocations at once; with the CPU time Redis spent per job;
//! - the added latency of a fleet-wide invoke over a local one when a slot is free
//!   (invoke and await, one after the other, and 1 ms apart), beside one PING round trip
//!   and the time Redis spends in a fleet call.
//!
//! `cargo bench -p pipewright-redis --bench fleet` (README, "Fleet scale").

use std::time::{Duration, Instant};

use pipewright::{pipeline, Pipeline, Runtime};
use pipewright_redis::testing::RedisServer;
use pipewright_redis::Fleet;
use redis::aio::ConnectionManager;

const JOBS: usize = 6_000;
const ROUNDS: usize = 3;

fn job() -> Pipeline<u64, ()> {
    pipeline!(|n: u64, _ctx: &()| {
        n = n + 1;
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

/// A field of `INFO section`, as a number.
async fn info(connection: &mut ConnectionManager, section: &str, field: &str) -> f64 {
    let text: String = redis::cmd("INFO")
        .arg(section)
        .query_async(connection)
        .await
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| {
            rest.trim_start_matches([':', '='])
                .split(',')
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}

/// Redis's CPU time so far, in seconds.
async fn redis_cpu(connection: &mut ConnectionManager) -> f64 {
    info(connection, "cpu", "used_cpu_user").await + info(connection, "cpu", "used_cpu_sys").await
}

/// Jobs per second and Redis's CPU microseconds per job, median of `ROUNDS` (by rate):
/// every member invokes its share at once.
async fn throughput(
    url: &str,
    runtimes: usize,
    max: usize,
    keys: usize,
    round_name: &str,
) -> (f64, f64) {
    let members = members(url, runtimes).await;
    let mut observer = members[0].0.connection();
    let mut rounds = Vec::new();
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
        let cpu = redis_cpu(&mut observer).await;
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
        // Every release has run (the callers do not wait for them).
        for (fleet, _) in &members {
            fleet.sync().await.unwrap();
        }
        let rate = JOBS as f64 / started.elapsed().as_secs_f64();
        let cpu_us = (redis_cpu(&mut observer).await - cpu) * 1e6 / JOBS as f64;
        rounds.push((rate, cpu_us));
    }
    rounds.sort_by(|a, b| a.0.total_cmp(&b.0));
    rounds[rounds.len() / 2]
}

/// Median microseconds per invoke-and-await, one after the other, or `gap` apart.
async fn latency(
    runtime: &Runtime<()>,
    pipeline: &Pipeline<u64, ()>,
    count: usize,
    gap: Option<Duration>,
) -> f64 {
    let mut samples = Vec::with_capacity(count);
    for n in 0..count {
        if let Some(gap) = gap {
            tokio::time::sleep(gap).await;
        }
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
        println!("fleet admissions per second ({JOBS} jobs, median of {ROUNDS}), and Redis's CPU us per job:");
        println!(
            "| runtimes | one queue, max 1 | one queue, max 4 | 1,000 per-key queues, max 1 |"
        );
        println!("| ---: | ---: | ---: | ---: |");
        for runtimes in [1, 2, 3, 4] {
            let mut row = format!("| {runtimes} |");
            for (label, max, keys) in [("one", 1, 1), ("four", 4, 1), ("keyed", 1, 1_000)] {
                let (rate, cpu) =
                    throughput(&url, runtimes, max, keys, &format!("{label}-{runtimes}")).await;
                row.push_str(&format!(" {rate:.0} ({cpu:.0} us) |"));
            }
            println!("{row}");
        }
        let (fleet, runtime) = members(&url, 1).await.pop().unwrap();
        let mut connection = fleet.connection();
        let local = job();
        let wrapped = fleet.queue("latency").enqueued().wrap(job());
        // Warm up: the library loaded, the connection busy.
        latency(&runtime, &wrapped, 500, None).await;
        latency(&runtime, &local, 500, None).await;
        let calls = info(&mut connection, "commandstats", "cmdstat_fcall:calls").await;
        let fleet_usec = fcall_usec(&mut connection).await;
        let fleet_us = latency(&runtime, &wrapped, 5_000, None).await;
        let call_us = (fcall_usec(&mut connection).await - fleet_usec)
            / (info(&mut connection, "commandstats", "cmdstat_fcall:calls").await - calls);
        let spaced_us = latency(
            &runtime,
            &wrapped,
            1_000,
            Some(Duration::from_millis(1)),
        )
        .await;
        let local_us = latency(&runtime, &local, 5_000, None).await;
        let ping_us = ping(&mut connection, 5_000, None).await;
        let spaced_ping_us = ping(&mut connection, 1_000, Some(Duration::from_millis(1))).await;
        println!();
        println!("invoke + await, slot free (median of 5,000; 1,000 when 1 ms apart):");
        println!("| | local | fleet-wide | added | one PING round trip | Redis's time in one fleet call |");
        println!("| --- | ---: | ---: | ---: | ---: | ---: |");
        println!(
            "| one after the other | {local_us:.1} us | {fleet_us:.1} us | {:.1} us | {ping_us:.1} us | {call_us:.1} us |",
            fleet_us - local_us,
        );
        println!(
            "| 1 ms apart | {local_us:.1} us | {spaced_us:.1} us | {:.1} us | {spaced_ping_us:.1} us | |",
            spaced_us - local_us,
        );
    });
}

/// Median microseconds of a PING round trip, one after the other or `gap` apart.
async fn ping(connection: &mut ConnectionManager, count: usize, gap: Option<Duration>) -> f64 {
    let mut samples = Vec::with_capacity(count);
    for _ in 0..count {
        if let Some(gap) = gap {
            tokio::time::sleep(gap).await;
        }
        let started = Instant::now();
        let _: String = redis::cmd("PING").query_async(connection).await.unwrap();
        samples.push(started.elapsed());
    }
    samples.sort();
    samples[samples.len() / 2].as_secs_f64() * 1e6
}

/// The microseconds Redis spent in fleet calls so far.
async fn fcall_usec(connection: &mut ConnectionManager) -> f64 {
    let text: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(connection)
        .await
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix("cmdstat_fcall:"))
        .and_then(|rest| rest.split(',').find_map(|part| part.strip_prefix("usec=")))
        .and_then(|usec| usec.parse().ok())
        .unwrap_or(0.0)
}
