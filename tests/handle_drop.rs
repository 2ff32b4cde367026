//! A handle tied to its instance (`Invocation::cancel_on_drop`): dropping it cancels the
//! instance, whose `finally!` runs once and whose queue frees the slot; a plain handle's
//! drop lets the work go on, and a handle that shares another caller's instance only
//! leaves.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pipewright::{pipeline, Pipeline, Runtime};
use tokio::time::sleep;

type Log = Arc<Mutex<Vec<String>>>;

fn push(log: &Log, entry: impl Into<String>) {
    log.lock().unwrap().push(entry.into());
}

fn entries(log: &Log) -> Vec<String> {
    log.lock().unwrap().clone()
}

/// A search that takes a minute, one at a time, logging how it ends.
fn slow_search() -> Pipeline<u32, Log> {
    pipeline!(|query: u32, log: &Log| {
        sleep(Duration::from_secs(60)).await;
        push(log, format!("searched {query}"));
        finally!(|error| {
            push(log, format!("finally {query} {error:?}"));
        });
    })
    .enqueued()
}

async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn dropping_a_tied_handle_cancels_its_instance_and_frees_the_slot() {
    let log = Log::default();
    let runtime = Runtime::builder(log.clone())
        .register("search", slow_search())
        .start()
        .unwrap();
    let tied = runtime.invoke("search", 1_u32).unwrap().cancel_on_drop();
    // Waits for the slot the first one holds.
    let next = runtime.invoke("search", 2_u32).unwrap();
    settle().await;
    drop(tied);
    settle().await;
    assert_eq!(
        entries(&log),
        ["finally 1 Some(Cancelled { reason: HandleDropped, by_parent: false })"]
    );
    let queue = runtime.queue_info("search").unwrap();
    assert_eq!(
        (queue.running(), queue.waiting()),
        (1, 0),
        "the next one has the slot"
    );
    assert_eq!(next.await.unwrap(), 2);
    assert_eq!(
        entries(&log),
        [
            "finally 1 Some(Cancelled { reason: HandleDropped, by_parent: false })",
            "searched 2",
            "finally 2 None"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_caller_that_gives_up_mid_wait_cancels_the_work() {
    // What a server does when the client disconnects: it drops the handler's future.
    let log = Log::default();
    let runtime = Runtime::builder(log.clone()).start().unwrap();
    let handler = {
        let runtime = runtime.clone();
        async move {
            let handle = runtime.invoke_pipeline(&slow_search(), 7).unwrap();
            handle.cancel_on_drop().await
        }
    };
    assert!(tokio::time::timeout(Duration::from_secs(1), handler)
        .await
        .is_err());
    settle().await;
    assert_eq!(
        entries(&log),
        ["finally 7 Some(Cancelled { reason: HandleDropped, by_parent: false })"]
    );
    assert_eq!(runtime.live_counts().0, 0);
}

#[tokio::test(start_paused = true)]
async fn a_finished_disarmed_or_plain_handle_cancels_nothing() {
    let log = Log::default();
    let runtime = Runtime::builder(log.clone()).start().unwrap();
    let quick = pipeline!(|value: u32, _log: &Log| {
        value = value + 1;
    });
    let done = runtime.invoke_pipeline(&quick, 1).unwrap().cancel_on_drop();
    assert_eq!(done.await.unwrap(), 2);
    let plain = runtime.invoke_pipeline(&slow_search(), 1).unwrap();
    let disarmed = runtime
        .invoke_pipeline(&slow_search(), 2)
        .unwrap()
        .cancel_on_drop();
    drop(plain);
    drop(disarmed.disarm());
    settle().await;
    assert_eq!(runtime.live_counts().0, 2, "both go on");
    sleep(Duration::from_secs(200)).await;
    let mut ended = entries(&log);
    ended.sort();
    assert_eq!(
        ended,
        [
            "finally 1 None",
            "finally 2 None",
            "searched 1",
            "searched 2"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_tied_handle_that_shares_another_callers_instance_only_leaves() {
    let log = Log::default();
    let shared = pipeline!(|query: u32, log: &Log| {
        sleep(Duration::from_secs(1)).await;
        push(log, format!("searched {query}"));
    })
    .use_existing();
    let runtime = Runtime::builder(log.clone()).start().unwrap();
    let first = runtime.invoke_pipeline(&shared, 5).unwrap();
    let sharer = runtime
        .invoke_pipeline(&shared, 5)
        .unwrap()
        .cancel_on_drop();
    assert_eq!(sharer.ident(), first.ident());
    drop(sharer);
    assert_eq!(first.await.unwrap(), 5);
    assert_eq!(entries(&log), ["searched 5"]);
}
