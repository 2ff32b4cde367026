//! What needs separate OS processes: a member killed with SIGKILL in the middle of a
//! step. Its slot is freed once its lease expires (within the lease's time to live of
//! its last renewal), the instances waiting in other processes are admitted in turn, and
//! nothing else is lost. A member killed while its instances wait: their places expire
//! with its renewals, and they are never handed a slot.
//!
//! The child is this test binary run again (`holds_a_slot_until_killed` or
//! `waits_until_killed`, which do nothing unless `PIPELINES_REDIS_CHILD_URL` or
//! `PIPELINES_REDIS_WAITER_URL` is set).

use std::sync::Arc;
use std::time::{Duration, Instant};

use pipewright::{pipeline, Runtime};
use pipewright_redis::testing::RedisServer;
use pipewright_redis::{AuditEntry, Fleet};

#[path = "support/child.rs"]
mod child;

const CHILD_URL: &str = "PIPELINES_REDIS_CHILD_URL";
const WAITER_URL: &str = "PIPELINES_REDIS_WAITER_URL";
const TTL: Duration = Duration::from_millis(1_000);

fn queue(fleet: &Fleet) -> pipewright_redis::FleetQueue {
    fleet.queue("crash").enqueued().lease_ttl(TTL).audit(true)
}

/// The child's part: takes the slot, says so, and holds it until killed.
#[tokio::test]
async fn holds_a_slot_until_killed() {
    let Ok(url) = std::env::var(CHILD_URL) else {
        return;
    };
    let fleet = Fleet::connect(&url).await.unwrap();
    let hold = pipeline!(|n: u32, _ctx: &()| {
        {
            println!("holding");
            std::future::pending::<()>()
        }
        .await;
    });
    let runtime = Runtime::builder(()).start().unwrap();
    let _ = runtime
        .invoke_pipeline(&queue(&fleet).wrap(hold), 0)
        .unwrap()
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_killed_mid_step_frees_its_slot_within_the_lease_ttl() {
    let Some(server) = RedisServer::start_or_skip().unwrap() else {
        return;
    };
    let mut child = child::spawn_until(
        "holds_a_slot_until_killed",
        CHILD_URL,
        &server.url(),
        "holding",
    );

    // Three instances of this process wait behind the child's.
    let fleet = Fleet::connect(&server.url()).await.unwrap();
    let ran: Arc<std::sync::Mutex<Vec<u32>>> = Arc::default();
    let work = pipeline!(|n: u32, ran: &Arc<std::sync::Mutex<Vec<u32>>>| {
        ran.lock().unwrap().push(n);
    });
    let runtime = Runtime::builder(Arc::clone(&ran)).start().unwrap();
    let wrapped = queue(&fleet).wrap(work);
    let waiting: Vec<_> = (1..=3)
        .map(|n| runtime.invoke_pipeline(&wrapped, n).unwrap())
        .collect();
    while fleet.stats("crash").await.unwrap().waiting < 3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    child.kill().unwrap(); // SIGKILL: no finally!, no release
    child.wait().unwrap();
    let killed = Instant::now();
    for handle in waiting {
        handle.await.unwrap();
    }
    let freed_after = killed.elapsed();
    // Its last renewal was at most a third of the ttl before the kill; the waiters look
    // again just after the lease expires. Generous: this is not a speed test.
    assert!(freed_after < TTL * 3, "slot freed after {freed_after:?}");
    assert_eq!(*ran.lock().unwrap(), [1, 2, 3]);
    let stats = fleet.stats("crash").await.unwrap();
    assert_eq!(
        (stats.expired, stats.peak, stats.over),
        (1, 1, 0),
        "{stats:?}"
    );
    assert_eq!((stats.live, stats.waiting), (0, 0));
    let log = fleet.audit_log("crash").await.unwrap();
    let expired = log
        .iter()
        .position(|entry| matches!(entry, AuditEntry::Expired { .. }))
        .unwrap();
    let next = log
        .iter()
        .skip(1)
        .position(|entry| matches!(entry, AuditEntry::Admitted { .. }))
        .unwrap()
        + 1;
    assert!(expired < next, "{log:?}");
    println!("slot freed {freed_after:?} after the kill (lease ttl {TTL:?})");
}

fn waiters_queue(fleet: &Fleet) -> pipewright_redis::FleetQueue {
    fleet
        .queue("dead-waiters")
        .enqueued()
        .lease_ttl(TTL)
        .audit(true)
}

/// The child's part: waits behind the parent's holder, says so, and waits until killed.
#[tokio::test]
async fn waits_until_killed() {
    let Ok(url) = std::env::var(WAITER_URL) else {
        return;
    };
    let fleet = Fleet::connect(&url).await.unwrap();
    let work = pipeline!(|n: u32, _ctx: &()| {
        n = n + 1;
    });
    let runtime = Runtime::builder(()).start().unwrap();
    let waiting = runtime
        .invoke_pipeline(&waiters_queue(&fleet).wrap(work), 0)
        .unwrap();
    while fleet.stats("dead-waiters").await.unwrap().waiting == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!("waiting");
    let _ = waiting.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_members_waiting_instances_go_with_its_places() {
    let Some(server) = RedisServer::start_or_skip().unwrap() else {
        return;
    };
    let fleet = Fleet::connect(&server.url()).await.unwrap();
    let (release, released) = tokio::sync::watch::channel(false);
    let hold = pipeline!(|n: u32, _ctx: &()| {
        {
            let mut released = released.clone();
            async move { released.wait_for(|done| *done).await.map(|_| ()) }
        }
        .await;
    });
    let runtime = Runtime::builder(()).start().unwrap();
    let wrapped = waiters_queue(&fleet).wrap(hold);
    let holder = runtime.invoke_pipeline(&wrapped, 1).unwrap();
    while fleet.stats("dead-waiters").await.unwrap().live == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let mut child = child::spawn_until("waits_until_killed", WAITER_URL, &server.url(), "waiting");
    child.kill().unwrap(); // SIGKILL: its renewals stop
    child.wait().unwrap();

    // The holder's own renewals purge the queue: the child's places expire.
    let killed = Instant::now();
    while fleet.stats("dead-waiters").await.unwrap().waiting > 0 {
        assert!(killed.elapsed() < TTL * 10, "the dead member's place stays");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    release.send(true).unwrap();
    holder.await.unwrap();
    // The slot is free at once: nobody dead was handed it.
    runtime.invoke_pipeline(&wrapped, 2).unwrap().await.unwrap();
    fleet.sync().await.unwrap();
    let stats = fleet.stats("dead-waiters").await.unwrap();
    assert_eq!(
        (stats.admitted, stats.expired, stats.live, stats.waiting),
        (2, 1, 0, 0),
        "{stats:?}"
    );
    let log = fleet.audit_log("dead-waiters").await.unwrap();
    let waiter = log
        .iter()
        .find_map(|entry| match entry {
            AuditEntry::Waiting { id, .. } => Some(id.clone()),
            _ => None,
        })
        .unwrap();
    assert!(log
        .iter()
        .any(|entry| matches!(entry, AuditEntry::Expired { id } if *id == waiter)));
    assert!(!log
        .iter()
        .any(|entry| matches!(entry, AuditEntry::Admitted { id, .. } if *id == waiter)));
}
