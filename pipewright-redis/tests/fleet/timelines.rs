//! [SEMANTICS 3.2]'s worked timelines, fleet-wide: invocations 1..6 arrive 20 ms apart (4
//! and 5 together), each from the next of three runtimes; each run works 250 ms, then
//! records its argument in Redis. Every started instance's `finally!` runs once, in its
//! own runtime.
//!
//! [SEMANTICS 3.2]: pipewright::semantics#32-behaviours

use std::sync::Arc;
use std::time::Duration;

use pipewright::{pipeline, CancelReason};
use pipewright_redis::{FleetQueue, FleetStats};

use crate::support::{fixture, Ctx, Fixture};

/// Runs the timeline through the queue `configure` makes of each member's `queue(name)`;
/// returns what was recorded (in order), each invocation's outcome, and the queue's
/// statistics.
async fn timeline(
    fixture: &Fixture,
    configure: impl Fn(FleetQueue) -> FleetQueue,
) -> (Vec<u32>, Vec<&'static str>, FleetStats) {
    let work = pipeline!(|n: u32, ctx: &Arc<Ctx>| {
        ctx.push(format!("start {n}"));
        tokio::time::sleep(Duration::from_millis(250)).await;
        record(&ctx.redis, n).await;
        finally!(|error| {
            ctx.push(format!("finally {n} {}", how(error)));
        });
    });
    let wrapped: Vec<_> = fixture
        .fleets
        .iter()
        .map(|fleet| configure(fleet.queue("work")).wrap(work.clone()))
        .collect();
    let mut handles = Vec::new();
    for n in 1..=6_u32 {
        if n != 5 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let member = n as usize % 3;
        handles.push(
            fixture.runtimes[member]
                .invoke_pipeline(&wrapped[member], n)
                .unwrap(),
        );
    }
    let mut outcomes = Vec::new();
    for handle in handles {
        outcomes.push(match handle.await {
            Ok(_) => "ok",
            // Every cancellation in these timelines is a newer instance taking the place,
            // in this member or another.
            Err(error) if error.cancel_reason() == Some(CancelReason::Replaced) => "cancelled",
            Err(error) if error.is_dropped() => "dropped",
            Err(error) => panic!("{error:#}"),
        });
    }
    fixture.sync().await;
    let redis = fixture.fleets[0].connection();
    let recorded: Vec<u32> = redis::cmd("LRANGE")
        .arg("test:recorded")
        .arg(0)
        .arg(-1)
        .query_async(&mut redis.clone())
        .await
        .unwrap();
    // Each instance whose steps started ran its finally! exactly once, where it ran.
    for (member, runtime) in fixture.runtimes.iter().enumerate() {
        let log = runtime.context().log.lock().unwrap().clone();
        for entry in &log {
            if let Some(n) = entry.strip_prefix("start ") {
                let n: usize = n.parse().unwrap();
                assert_eq!(n % 3, member, "{log:?}");
                let finallies = log
                    .iter()
                    .filter(|e| e.starts_with(&format!("finally {n} ")))
                    .count();
                assert_eq!(finallies, 1, "{log:?}");
            }
        }
        let starts = log.iter().filter(|e| e.starts_with("start ")).count();
        assert_eq!(starts * 2, log.len(), "{log:?}");
    }
    let stats = fixture.fleets[0].stats("work").await.unwrap();
    (recorded, outcomes, stats)
}

async fn record(redis: &redis::aio::ConnectionManager, n: u32) -> redis::RedisResult<()> {
    redis::cmd("RPUSH")
        .arg("test:recorded")
        .arg(n)
        .query_async(&mut redis.clone())
        .await
}

fn how(error: Option<&pipewright::Error>) -> &'static str {
    match error {
        None => "ok",
        Some(error) if error.cancel_reason() == Some(CancelReason::Replaced) => "cancelled",
        Some(_) => "failed",
    }
}

fn sorted(mut values: Vec<u32>) -> Vec<u32> {
    values.sort_unstable();
    values
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restartable_max_1_only_6_is_recorded() {
    let Some(fixture) = fixture(3).await else {
        return;
    };
    let (recorded, outcomes, stats) = timeline(&fixture, FleetQueue::restartable).await;
    assert_eq!(recorded, [6]);
    assert_eq!(
        outcomes,
        [
            "cancelled",
            "cancelled",
            "cancelled",
            "cancelled",
            "cancelled",
            "ok"
        ]
    );
    assert_eq!(
        (stats.peak, stats.over, stats.live, stats.waiting),
        (1, 0, 0, 0),
        "{stats:?}"
    );
    // 1 ran and was cancelled where it ran (finally! there). Whether 2..5 started
    // depends on how soon each cancelled holder gave its slot back (cancellation
    // crosses processes); any that did was cancelled where it ran, like 1.
    let log = fixture.runtimes[1].context().log.lock().unwrap().clone();
    assert_eq!(log[..2], ["start 1", "finally 1 cancelled"]);
    for runtime in &fixture.runtimes {
        let log = runtime.context().log.lock().unwrap().clone();
        for entry in log.iter().filter(|e| e.starts_with("finally ")) {
            let expected = if entry.starts_with("finally 6 ") {
                "ok"
            } else {
                "cancelled"
            };
            assert!(entry.ends_with(expected), "{log:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restartable_max_3_records_4_5_6() {
    let Some(fixture) = fixture(3).await else {
        return;
    };
    let (recorded, outcomes, stats) = timeline(&fixture, |q| q.restartable().max(3)).await;
    assert_eq!(sorted(recorded), [4, 5, 6]);
    assert_eq!(
        outcomes,
        ["cancelled", "cancelled", "cancelled", "ok", "ok", "ok"]
    );
    assert_eq!((stats.peak, stats.over), (3, 0), "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_max_1_records_only_1_and_max_3_records_1_2_3() {
    let Some(fixture) = fixture(3).await else {
        return;
    };
    let (recorded, outcomes, _) = timeline(&fixture, FleetQueue::dropping).await;
    assert_eq!(recorded, [1]);
    assert_eq!(
        outcomes,
        ["ok", "dropped", "dropped", "dropped", "dropped", "dropped"]
    );
    let Some(fixture) = crate::support::fixture(3).await else {
        return;
    };
    let (recorded, outcomes, _) = timeline(&fixture, |q| q.dropping().max(3)).await;
    assert_eq!(sorted(recorded), [1, 2, 3]);
    assert_eq!(
        outcomes,
        ["ok", "ok", "ok", "dropped", "dropped", "dropped"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_latest_max_1_records_1_then_6() {
    let Some(fixture) = fixture(3).await else {
        return;
    };
    let (recorded, outcomes, stats) = timeline(&fixture, FleetQueue::keep_latest).await;
    assert_eq!(recorded, [1, 6]);
    assert_eq!(
        outcomes,
        [
            "ok",
            "cancelled",
            "cancelled",
            "cancelled",
            "cancelled",
            "ok"
        ]
    );
    assert_eq!((stats.peak, stats.replaced), (1, 4), "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_latest_max_3_has_one_waiting_place() {
    let Some(fixture) = fixture(3).await else {
        return;
    };
    let (recorded, outcomes, stats) = timeline(&fixture, |q| q.keep_latest().max(3)).await;
    assert_eq!(sorted(recorded), [1, 2, 3, 6]);
    assert_eq!(outcomes, ["ok", "ok", "ok", "cancelled", "cancelled", "ok"]);
    assert_eq!((stats.peak, stats.replaced), (3, 2), "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueued_max_1_records_all_six_one_after_the_other() {
    let Some(fixture) = fixture(3).await else {
        return;
    };
    let (recorded, outcomes, stats) = timeline(&fixture, FleetQueue::enqueued).await;
    // 4 and 5 arrive together, from two runtimes: either may be first in the fleet.
    assert_eq!(recorded[..3], [1, 2, 3]);
    assert_eq!(sorted(recorded[3..5].to_vec()), [4, 5]);
    assert_eq!(recorded[5], 6);
    assert_eq!(outcomes, ["ok"; 6]);
    assert_eq!((stats.peak, stats.admitted), (1, 6), "{stats:?}");
}
