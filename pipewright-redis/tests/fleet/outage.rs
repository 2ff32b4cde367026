//! Redis out of reach, then back (restarted empty on the same port): new invocations
//! fail with a typed error meanwhile; an instance that cannot renew its lease is
//! cancelled (its `finally!` runs); a waiting one gives up with the typed error; the
//! client reconnects and subscribes again by itself, and service resumes with no slot
//! left taken.

use std::sync::Arc;
use std::time::Duration;

use pipewright::pipeline;
use pipewright_redis::FleetError;

use crate::support::{fixture, script_calls, Ctx};

fn unavailable(error: &pipewright::Error) -> bool {
    matches!(
        error.downcast_ref::<FleetError>(),
        Some(FleetError::Unavailable { .. })
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_then_restarted() {
    let Some(mut fixture) = fixture(2).await else {
        return;
    };
    let (release, released) = tokio::sync::watch::channel(false);
    let hold = pipeline!(|n: u32, ctx: &Arc<Ctx>| {
        ctx.push(format!("start {n}"));
        {
            let mut released = released.clone();
            async move { released.wait_for(|done| *done).await.map(|_| ()) }
        }
        .await;
        finally!(|error| {
            ctx.push(format!(
                "finally {n} cancelled={:?}",
                error.and_then(|e| e.cancel_reason())
            ));
        });
    });
    let queue = |fleet: &pipewright_redis::Fleet, ttl| {
        fleet
            .queue("outage")
            .lease_ttl(Duration::from_millis(ttl))
            .wrap(hold.clone())
    };
    let short: Vec<_> = fixture.fleets.iter().map(|f| queue(f, 600)).collect();
    let holder = fixture.runtimes[0].invoke_pipeline(&short[0], 1).unwrap();
    let ctx0 = fixture.runtimes[0].context().clone();
    crate::support::eventually(|| ctx0.log.lock().unwrap().len() == 1).await;
    let waiter = fixture.runtimes[1].invoke_pipeline(&short[1], 2).unwrap();
    while fixture.fleets[0].stats("outage").await.unwrap().waiting == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    fixture.server.kill();
    // A new invocation fails with the typed error, from either member.
    for (runtime, pipeline) in fixture.runtimes.iter().zip(&short) {
        let error = runtime
            .invoke_pipeline(pipeline, 3)
            .unwrap()
            .await
            .unwrap_err();
        assert!(unavailable(&error), "{error:#}");
    }
    // The holder cannot renew: cancelled (its lease lost), its finally! ran; the waiter
    // gives up.
    assert_eq!(
        holder.await.unwrap_err().cancel_reason(),
        Some(pipewright::CancelReason::LeaseLost)
    );
    assert_eq!(
        fixture.runtimes[0].context().log.lock().unwrap().clone(),
        ["start 1", "finally 1 cancelled=Some(LeaseLost)"]
    );
    let error = waiter.await.unwrap_err();
    assert!(unavailable(&error), "{error:#}");
    assert!(fixture.runtimes[1].context().log.lock().unwrap().is_empty());

    fixture.server.restart().unwrap();
    // Service resumes (the client reconnects by itself; the first tries may still see
    // the old connection fail).
    release.send(true).unwrap();
    let mut resumed = false;
    for _ in 0..200 {
        match fixture.runtimes[1]
            .invoke_pipeline(&short[1], 4)
            .unwrap()
            .await
        {
            Ok(_) => {
                resumed = true;
                break;
            }
            Err(error) => assert!(unavailable(&error), "{error:#}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(resumed);
    // Both members are subscribed again: a waiter is woken by a message (a look of its
    // own would come only after 40 s), with no call beyond the four below.
    release.send(false).unwrap();
    let long: Vec<_> = fixture.fleets.iter().map(|f| queue(f, 120_000)).collect();
    for (runtime, pipeline) in fixture.runtimes.iter().zip(&long) {
        release.send(true).unwrap();
        runtime.invoke_pipeline(pipeline, 5).unwrap().await.unwrap();
        release.send(false).unwrap();
    }
    fixture.sync().await;
    let observer = fixture.fleets[0].connection();
    let before = script_calls(&observer).await;
    let first = fixture.runtimes[0].invoke_pipeline(&long[0], 6).unwrap();
    let ctx0 = fixture.runtimes[0].context().clone();
    crate::support::eventually(|| ctx0.log.lock().unwrap().iter().any(|e| e == "start 6")).await;
    let second = fixture.runtimes[1].invoke_pipeline(&long[1], 7).unwrap();
    while fixture.fleets[0].stats("outage").await.unwrap().waiting == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    release.send(true).unwrap();
    first.await.unwrap();
    second.await.unwrap();
    fixture.sync().await;
    assert_eq!(script_calls(&observer).await - before, 4);
    let stats = fixture.fleets[0].stats("outage").await.unwrap();
    assert_eq!(
        (stats.live, stats.waiting, stats.over),
        (0, 0, 0),
        "{stats:?}"
    );
}

/// Redis killed and restarted while the members are idle: the next invocations' requests
/// wait on the wire for the reconnection (a second or so). An instance admitted that late
/// starts with a lease Redis has just given it; it is not cancelled for a renewal deadline
/// counted from when its request was queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_admitted_after_a_restart_are_not_cancelled() {
    const INVOCATIONS: u32 = 60;
    let Some(mut fixture) = fixture(1).await else {
        return;
    };
    let work = pipeline!(|n: u32, ctx: &Arc<Ctx>| {
        ctx.push(format!("start {n}"));
        tokio::time::sleep(Duration::from_millis(20)).await;
        finally!(|error| {
            if error.is_some_and(|e| e.is_cancelled()) {
                ctx.push(format!("cancelled {n}"));
            }
        });
    });
    let wrapped = fixture.fleets[0]
        .queue("restarted")
        .enqueued()
        .max(2)
        .lease_ttl(Duration::from_millis(1_500))
        .wrap(work);
    let runtime = &fixture.runtimes[0];
    // Connected and warm.
    runtime.invoke_pipeline(&wrapped, 0).unwrap().await.unwrap();

    fixture.server.kill();
    fixture.server.restart().unwrap();
    let started = std::time::Instant::now();
    let handles: Vec<_> = (1..=INVOCATIONS)
        .map(|n| runtime.invoke_pipeline(&wrapped, n).unwrap())
        .collect();
    let mut outcomes = Vec::new();
    for handle in handles {
        outcomes.push(handle.await.map(|_| ()));
    }
    let log = runtime.context().log.lock().unwrap().clone();
    let admitted = log.iter().filter(|e| e.starts_with("start ")).count() - 1;
    let cancelled: Vec<&String> = log.iter().filter(|e| e.starts_with("cancelled ")).collect();
    let refused = outcomes
        .iter()
        .filter(|o| o.as_ref().is_err_and(unavailable))
        .count();
    println!(
        "{admitted} of {INVOCATIONS} admitted after the restart, {} cancelled, {refused} \
         unavailable, in {:?}",
        cancelled.len(),
        started.elapsed()
    );
    assert!(
        cancelled.is_empty(),
        "admitted, then cancelled: {cancelled:?}"
    );
    for outcome in &outcomes {
        if let Err(error) = outcome {
            assert!(unavailable(error), "{error:#}");
        }
    }
    assert!(admitted > 0);
}
