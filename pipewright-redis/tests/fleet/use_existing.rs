//! Use-existing across the fleet: an equal argument anywhere shares the leader's one run
//! (its result, its failure, its cancellation); distinct arguments run on their own.

use std::sync::Arc;
use std::time::Duration;

use pipewright::{pipeline, Pipeline};
use pipewright_redis::FleetError;

use crate::support::{fixture, Ctx};

/// Counts its runs per argument in Redis, works 200 ms, and returns ten times the
/// argument (or fails for 13).
fn load() -> Pipeline<u64, Arc<Ctx>> {
    pipeline!(|id: u64, ctx: &Arc<Ctx>| {
        count_run(&ctx.redis, id).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        id = if id == 13 {
            Err(format!("{id} is unlucky"))
        } else {
            Ok(id * 10)
        };
    })
}

async fn count_run(redis: &redis::aio::ConnectionManager, id: u64) -> redis::RedisResult<()> {
    redis::cmd("INCR")
        .arg(format!("test:runs:{id}"))
        .query_async(&mut redis.clone())
        .await
}

async fn runs(fixture: &crate::support::Fixture, id: u64) -> u64 {
    let runs: Option<u64> = redis::cmd("GET")
        .arg(format!("test:runs:{id}"))
        .query_async(&mut fixture.fleets[0].connection())
        .await
        .unwrap();
    runs.unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn equal_arguments_share_one_run_across_runtimes() {
    let Some(fixture) = fixture(3).await else {
        return;
    };
    let wrapped: Vec<_> = fixture
        .fleets
        .iter()
        .map(|fleet| fleet.queue("load").unrestricted().wrap_use_existing(load()))
        .collect();
    let mut handles = Vec::new();
    for round in 0..3 {
        for (runtime, pipeline) in fixture.runtimes.iter().zip(&wrapped) {
            for id in [1, 2, 3] {
                handles.push((id, runtime.invoke_pipeline(pipeline, id).unwrap()));
            }
        }
        if round == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    for (id, handle) in handles {
        assert_eq!(handle.await.unwrap(), id * 10);
    }
    fixture.sync().await;
    for id in [1, 2, 3] {
        assert_eq!(runs(&fixture, id).await, 1, "argument {id}");
    }
    let stats = fixture.fleets[0].stats("load").await.unwrap();
    assert_eq!((stats.admitted, stats.shared), (3, 24), "{stats:?}");
    // Once the run is over, an equal argument runs again.
    assert_eq!(
        fixture.runtimes[1]
            .invoke_pipeline(&wrapped[1], 1)
            .unwrap()
            .await
            .unwrap(),
        10
    );
    assert_eq!(runs(&fixture, 1).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_share_the_leaders_failure_and_cancellation() {
    let Some(fixture) = fixture(2).await else {
        return;
    };
    let wrapped: Vec<_> = fixture
        .fleets
        .iter()
        .map(|fleet| {
            fleet
                .queue("load")
                .enqueued()
                .max(4)
                .wrap_use_existing(load())
        })
        .collect();
    let leader = fixture.runtimes[0]
        .invoke_pipeline(&wrapped[0], 13)
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let follower = fixture.runtimes[1]
        .invoke_pipeline(&wrapped[1], 13)
        .unwrap();
    assert!(leader.await.unwrap_err().is_failed());
    let error = follower.await.unwrap_err();
    match error.downcast_ref::<FleetError>() {
        Some(FleetError::LeaderFailed { message, .. }) => assert_eq!(message, "13 is unlucky"),
        _ => panic!("{error:#}"),
    }

    let leader = fixture.runtimes[0].invoke_pipeline(&wrapped[0], 7).unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let follower = fixture.runtimes[1].invoke_pipeline(&wrapped[1], 7).unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(leader.cancel());
    let requested = Some(pipewright::CancelReason::Requested);
    assert_eq!(leader.await.unwrap_err().cancel_reason(), requested);
    // The leader's reason reaches the follower in the other process.
    assert_eq!(follower.await.unwrap_err().cancel_reason(), requested);
    assert_eq!(runs(&fixture, 7).await, 1);
}
