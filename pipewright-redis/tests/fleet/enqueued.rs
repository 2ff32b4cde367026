//! Enqueued and dropping fleet queues across three runtimes: max-live never exceeded (as
//! Redis's own counters and an independent observer saw it), the fleet's arrival order
//! kept, fencing tokens increasing, refusals as `Error::Dropped`, wake-ups by message.

use std::sync::Arc;
use std::time::Duration;

use pipewright::{pipeline, Pipeline};
use pipewright_redis::AuditEntry;

use crate::support::{self, fixture, fixture_with, script_calls, token, Ctx};

#[derive(Debug, Clone)]
struct Job {
    key: String,
    n: usize,
}

/// The user's pipeline: counts itself in and out (in Redis) around a short wait, checking
/// that at most `max` run at once and that its fencing token is the highest yet.
fn counted(max: usize) -> Pipeline<Job, Arc<Ctx>> {
    pipeline!(|job: Job, ctx: &Arc<Ctx>, current| {
        ctx.observer.enter(&job.key, token(ctx, current), max);
        tokio::time::sleep(Duration::from_micros(300)).await;
        ctx.observer.leave(&job.key, token(ctx, current));
    })
}

/// The full size: 3 runtimes x 1,000 invocations per key over 100 keys, all
/// invoked at once (300,000 instances, 3,000 in each key's queue). Generous time limits:
/// a debug build on two shared cores answers slowly under that load, and this test is
/// about max and order (renewal and outages have tests of their own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueued_per_key_holds_max_and_order_across_three_runtimes() {
    const KEYS: usize = 100;
    const PER_RUNTIME: usize = 1_000;
    let Some(fixture) =
        fixture_with(3, |fleet| fleet.response_timeout(Duration::from_secs(30))).await
    else {
        return;
    };
    let wrapped: Vec<_> = fixture
        .fleets
        .iter()
        .map(|fleet| {
            fleet
                .queue("save")
                .enqueued()
                .lease_ttl(Duration::from_secs(60))
                .audit(true)
                .wrap_by(counted(1), |job: &Job| job.key.clone())
        })
        .collect();
    let mut handles = Vec::new();
    for n in 0..PER_RUNTIME {
        for key in 0..KEYS {
            for (runtime, pipeline) in fixture.runtimes.iter().zip(&wrapped) {
                let job = Job {
                    key: format!("doc-{key}"),
                    n,
                };
                handles.push(runtime.invoke_pipeline(pipeline, job).unwrap());
            }
        }
    }
    for handle in handles {
        let job = handle.await.unwrap();
        assert!(job.n < PER_RUNTIME);
    }
    fixture.sync().await;
    let fleet = &fixture.fleets[0];
    let observer = &fixture.runtimes[0].context().observer;
    for key in 0..KEYS {
        let queue = format!("save:doc-{key}");
        let stats = fleet.stats(&queue).await.unwrap();
        assert_eq!(stats.peak, 1, "{queue}: {stats:?}");
        assert_eq!(stats.over, 0, "{queue}: {stats:?}");
        assert_eq!(
            stats.admitted,
            (3 * PER_RUNTIME) as u64,
            "{queue}: {stats:?}"
        );
        assert_eq!(stats.released, stats.admitted, "{queue}: {stats:?}");
        assert_eq!((stats.live, stats.waiting, stats.expired), (0, 0, 0));
        assert_eq!(observer.peak(&format!("doc-{key}")), 1);
        // Admitted in the fleet's arrival order, each after the previous one released.
        let log = fleet.audit_log(&queue).await.unwrap();
        let mut last_seq = 0;
        let mut holding = None;
        let mut admitted = 0;
        for entry in &log {
            match entry {
                AuditEntry::Admitted { seq, id, live, .. } => {
                    assert!(*seq > last_seq, "{queue}: admitted out of order: {entry:?}");
                    assert_eq!(*live, 1);
                    assert!(holding.is_none());
                    last_seq = *seq;
                    holding = Some(id.clone());
                    admitted += 1;
                }
                AuditEntry::Released { id, .. } => {
                    assert_eq!(holding.take().as_ref(), Some(id));
                }
                AuditEntry::Waiting { .. } => {}
                other => panic!("{queue}: unexpected {other:?}"),
            }
        }
        assert_eq!(admitted, 3 * PER_RUNTIME, "{queue}");
    }
}

/// A burst from one member to one queue shares calls (the requests made while a call is
/// on the wire go together in the next one) and keeps its order; and each release runs
/// before anything the member sends later: its own statistics, read right after the
/// last result without `sync`, count every release.
#[tokio::test]
async fn a_burst_shares_calls_keeps_order_and_releases_before_what_follows() {
    const BURST: u64 = 200;
    let Some(fixture) = fixture(1).await else {
        return;
    };
    let fleet = &fixture.fleets[0];
    let wrapped = fleet.queue("burst").enqueued().audit(true).wrap(counted(1));
    let observer = fleet.connection();
    let before = script_calls(&observer).await;
    let handles: Vec<_> = (0..BURST as usize)
        .map(|n| {
            let job = Job {
                key: "burst".into(),
                n,
            };
            fixture.runtimes[0].invoke_pipeline(&wrapped, job).unwrap()
        })
        .collect();
    for handle in handles {
        handle.await.unwrap();
    }
    let stats = fleet.stats("burst").await.unwrap();
    assert_eq!(
        (stats.admitted, stats.released, stats.live, stats.waiting),
        (BURST, BURST, 0, 0),
        "{stats:?}"
    );
    assert_eq!(stats.peak, 1);
    // Admitted in the order the member numbered its requests (as it invoked).
    let numbers: Vec<u64> = fleet
        .audit_log("burst")
        .await
        .unwrap()
        .iter()
        .filter_map(|entry| match entry {
            AuditEntry::Admitted { id, .. } => id.rsplit('.').next()?.parse().ok(),
            _ => None,
        })
        .collect();
    assert_eq!(numbers.len(), BURST as usize);
    assert!(
        numbers.windows(2).all(|pair| pair[0] < pair[1]),
        "{numbers:?}"
    );
    // A call per release, and a few for the admissions, not one each.
    let calls = script_calls(&observer).await - before;
    assert!(calls < BURST + BURST / 4, "{calls} calls");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueued_max_3_across_three_runtimes() {
    let Some(fixture) = fixture(3).await else {
        return;
    };
    let wrapped: Vec<_> = fixture
        .fleets
        .iter()
        .map(|fleet| fleet.queue("batch").enqueued().max(3).wrap(counted(3)))
        .collect();
    let mut handles = Vec::new();
    for n in 0..60 {
        for (runtime, pipeline) in fixture.runtimes.iter().zip(&wrapped) {
            let job = Job {
                key: "batch".into(),
                n,
            };
            handles.push(runtime.invoke_pipeline(pipeline, job).unwrap());
        }
    }
    for handle in handles {
        handle.await.unwrap();
    }
    fixture.sync().await;
    let stats = fixture.fleets[0].stats("batch").await.unwrap();
    assert_eq!(
        (stats.peak, stats.over, stats.admitted),
        (3, 0, 180),
        "{stats:?}"
    );
    assert!(fixture.runtimes[0].context().observer.peak("batch") <= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_refuses_with_dropped_while_the_fleet_is_full() {
    let Some(fixture) = fixture(3).await else {
        return;
    };
    let (release, released) = tokio::sync::watch::channel(false);
    let hold = pipeline!(|job: Job, ctx: &Arc<Ctx>| {
        ctx.push(format!("ran {}", job.n));
        {
            let mut released = released.clone();
            async move { released.wait_for(|done| *done).await.map(|_| ()) }
        }
        .await;
        finally!(|error| {
            ctx.push(format!("finally {}", job.n));
        });
    });
    let wrapped: Vec<_> = fixture
        .fleets
        .iter()
        .map(|fleet| fleet.queue("submit").dropping().max(2).wrap(hold.clone()))
        .collect();
    let job = |n| Job {
        key: "submit".into(),
        n,
    };
    let first = fixture.runtimes[0]
        .invoke_pipeline(&wrapped[0], job(1))
        .unwrap();
    let second = fixture.runtimes[1]
        .invoke_pipeline(&wrapped[1], job(2))
        .unwrap();
    let ctx0 = fixture.runtimes[0].context().clone();
    let ctx1 = fixture.runtimes[1].context().clone();
    support::eventually(|| {
        ctx0.log.lock().unwrap().len() == 1 && ctx1.log.lock().unwrap().len() == 1
    })
    .await;
    // Full: every runtime's new invocation is refused, exactly as a local dropping queue
    // refuses (no step of the user's pipeline ran, no finally!, nothing reported).
    for (n, (runtime, pipeline)) in fixture.runtimes.iter().zip(&wrapped).enumerate() {
        let error = runtime
            .invoke_pipeline(pipeline, job(10 + n))
            .unwrap()
            .await
            .unwrap_err();
        assert!(error.is_dropped(), "{error:?}");
    }
    release.send(true).unwrap();
    first.await.unwrap();
    second.await.unwrap();
    // Free again, once their releases (which their callers do not wait for) have run.
    fixture.sync().await;
    let third = fixture.runtimes[2]
        .invoke_pipeline(&wrapped[2], job(3))
        .unwrap();
    third.await.unwrap();
    fixture.sync().await;
    let stats = fixture.fleets[0].stats("submit").await.unwrap();
    assert_eq!(
        (stats.admitted, stats.dropped, stats.peak),
        (3, 3, 2),
        "{stats:?}"
    );
    let logs: Vec<Vec<String>> = fixture
        .runtimes
        .iter()
        .map(|runtime| runtime.context().log.lock().unwrap().clone())
        .collect();
    assert_eq!(logs[0], ["ran 1", "finally 1"]);
    assert_eq!(logs[1], ["ran 2", "finally 2"]);
    assert_eq!(logs[2], ["ran 3", "finally 3"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_instance_is_woken_by_a_message_not_by_polling() {
    let Some(fixture) = fixture(2).await else {
        return;
    };
    let (release, released) = tokio::sync::watch::channel(false);
    let hold = pipeline!(|job: Job, ctx: &Arc<Ctx>| {
        ctx.push(format!("ran {}", job.n));
        {
            let mut released = released.clone();
            async move { released.wait_for(|done| *done).await.map(|_| ()) }
        }
        .await;
    });
    // A long lease: a waiter's own look (a third of it) would come far too late.
    let wrapped: Vec<_> = fixture
        .fleets
        .iter()
        .map(|fleet| {
            fleet
                .queue("wake")
                .lease_ttl(Duration::from_secs(120))
                .wrap(hold.clone())
        })
        .collect();
    let job = |n| Job {
        key: "wake".into(),
        n,
    };
    // A first run, so that only the calls below are counted.
    release.send(true).unwrap();
    fixture.runtimes[0]
        .invoke_pipeline(&wrapped[0], job(0))
        .unwrap()
        .await
        .unwrap();
    release.send(false).unwrap();
    fixture.sync().await;
    let observer = fixture.fleets[0].connection();
    let before = script_calls(&observer).await;

    let first = fixture.runtimes[0]
        .invoke_pipeline(&wrapped[0], job(1))
        .unwrap();
    let ctx0 = fixture.runtimes[0].context().clone();
    support::eventually(|| ctx0.log.lock().unwrap().len() == 2).await;
    let second = fixture.runtimes[1]
        .invoke_pipeline(&wrapped[1], job(2))
        .unwrap();
    while fixture.fleets[0].stats("wake").await.unwrap().waiting == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    release.send(true).unwrap();
    first.await.unwrap();
    second.await.unwrap();
    fixture.sync().await;
    // Two acquisitions and two releases: the waiter was told, it never looked.
    assert_eq!(script_calls(&observer).await - before, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_is_renewed_while_its_instance_runs_past_its_ttl() {
    let Some(fixture) = fixture(2).await else {
        return;
    };
    let slow = pipeline!(|job: Job, ctx: &Arc<Ctx>, current| {
        ctx.observer.enter(&job.key, token(ctx, current), 1);
        // Five times the lease's time to live.
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        ctx.observer.leave(&job.key, token(ctx, current));
    });
    let wrapped: Vec<_> = fixture
        .fleets
        .iter()
        .map(|fleet| {
            fleet
                .queue("slow")
                .lease_ttl(Duration::from_millis(200))
                .wrap(slow.clone())
        })
        .collect();
    let job = |n| Job {
        key: "slow".into(),
        n,
    };
    let first = fixture.runtimes[0]
        .invoke_pipeline(&wrapped[0], job(1))
        .unwrap();
    let second = fixture.runtimes[1]
        .invoke_pipeline(&wrapped[1], job(2))
        .unwrap();
    first.await.unwrap();
    second.await.unwrap();
    fixture.sync().await;
    let stats = fixture.fleets[0].stats("slow").await.unwrap();
    assert_eq!(
        (stats.admitted, stats.expired, stats.peak),
        (2, 0, 1),
        "{stats:?}"
    );
    assert_eq!(fixture.runtimes[0].context().observer.peak("slow"), 1);
}
