//! The concurrency behaviours of [SEMANTICS 3.2], as exact timelines under tokio's paused
//! clock: every worked example, the same behaviours nested inside an unrestricted
//! pipeline, and `use_existing` alone and combined.
//!
//! [SEMANTICS 3.2]: pipewright::semantics#32-behaviours

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pipewright::{pipeline, Error, Invocation, Pipeline, Runtime};
use tokio::time::{sleep, Instant};

/// Records `(argument, milliseconds since the start)` when a pipeline completes its work,
/// and `finally <argument>` for every `finally!` that runs.
struct Recorder {
    start: Instant,
    done: Mutex<Vec<(u32, u64)>>,
    finals: Mutex<Vec<u32>>,
}

type Ctx = Arc<Recorder>;

impl Recorder {
    fn new() -> Ctx {
        Arc::new(Recorder {
            start: Instant::now(),
            done: Mutex::default(),
            finals: Mutex::default(),
        })
    }

    fn record(&self, value: u32) {
        let at = self.start.elapsed().as_millis() as u64;
        self.done.lock().unwrap().push((value, at));
    }

    fn done(&self) -> Vec<(u32, u64)> {
        self.done.lock().unwrap().clone()
    }

    fn finals(&self) -> usize {
        self.finals.lock().unwrap().len()
    }
}

/// The worked-example pipeline: sleeps 250 ms, then records its argument.
fn work() -> Pipeline<u32, Ctx> {
    pipeline!(|value: u32, rec: &Ctx| {
        sleep(Duration::from_millis(250)).await;
        rec.record(value);
        finally!(|error| {
            rec.finals.lock().unwrap().push(value);
        });
    })
}

/// Invocations 1..6 arrive 20 ms apart, with 4 and 5 together; returns every result.
async fn burst(invoke: impl Fn(u32) -> Invocation<u32>) -> Vec<Result<u32, Error>> {
    let mut handles = Vec::new();
    for (value, gap) in [(1, 20), (2, 20), (3, 20), (4, 0), (5, 20), (6, 0)] {
        handles.push(invoke(value));
        sleep(Duration::from_millis(gap)).await;
    }
    let mut results = Vec::new();
    for handle in handles {
        results.push(handle.await);
    }
    results
}

async fn run_burst(pipeline: Pipeline<u32, Ctx>) -> (Ctx, Vec<Result<u32, Error>>) {
    let rec = Recorder::new();
    let runtime = Runtime::builder(rec.clone())
        .register("work", pipeline)
        .start()
        .unwrap();
    let results = burst(|value| runtime.invoke("work", value).unwrap()).await;
    (rec, results)
}

/// `ok`, `cancelled` or `dropped` for each result, to compare outcomes at a glance.
fn outcomes(results: &[Result<u32, Error>]) -> Vec<&'static str> {
    results
        .iter()
        .map(|result| match result {
            Ok(_) => "ok",
            Err(error) if error.is_cancelled() => "cancelled",
            Err(error) if error.is_dropped() => "dropped",
            Err(_) => "failed",
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn unrestricted_runs_everything_at_once() {
    let (rec, results) = run_burst(work()).await;
    assert_eq!(
        rec.done(),
        [(1, 250), (2, 270), (3, 290), (4, 310), (5, 310), (6, 330)]
    );
    assert_eq!(outcomes(&results), ["ok"; 6]);
}

#[tokio::test(start_paused = true)]
async fn restartable_max_1_records_only_the_last() {
    let (rec, results) = run_burst(work().restartable()).await;
    assert_eq!(rec.done(), [(6, 330)]);
    assert_eq!(
        outcomes(&results),
        [
            "cancelled",
            "cancelled",
            "cancelled",
            "cancelled",
            "cancelled",
            "ok"
        ]
    );
    assert_eq!(rec.finals(), 6, "every started instance ran finally! once");
}

#[tokio::test(start_paused = true)]
async fn restartable_max_3_records_4_5_6() {
    let (rec, results) = run_burst(work().restartable().max(3)).await;
    assert_eq!(rec.done(), [(4, 310), (5, 310), (6, 330)]);
    assert_eq!(
        outcomes(&results),
        ["cancelled", "cancelled", "cancelled", "ok", "ok", "ok"]
    );
    assert_eq!(rec.finals(), 6);
}

#[tokio::test(start_paused = true)]
async fn dropping_max_1_records_only_the_first() {
    let (rec, results) = run_burst(work().dropping()).await;
    assert_eq!(rec.done(), [(1, 250)]);
    assert_eq!(
        outcomes(&results),
        ["ok", "dropped", "dropped", "dropped", "dropped", "dropped"]
    );
    assert_eq!(rec.finals(), 1, "dropped instances never started");
}

#[tokio::test(start_paused = true)]
async fn dropping_max_3_records_the_first_three() {
    let (rec, results) = run_burst(work().dropping().max(3)).await;
    assert_eq!(rec.done(), [(1, 250), (2, 270), (3, 290)]);
    assert_eq!(
        outcomes(&results),
        ["ok", "ok", "ok", "dropped", "dropped", "dropped"]
    );
}

#[tokio::test(start_paused = true)]
async fn keep_latest_max_1_records_the_first_then_the_last() {
    let (rec, results) = run_burst(work().keep_latest()).await;
    assert_eq!(rec.done(), [(1, 250), (6, 500)]);
    assert_eq!(
        outcomes(&results),
        [
            "ok",
            "cancelled",
            "cancelled",
            "cancelled",
            "cancelled",
            "ok"
        ]
    );
    assert_eq!(rec.finals(), 2, "replaced instances never started");
}

#[tokio::test(start_paused = true)]
async fn keep_latest_max_3_keeps_the_latest_waiting() {
    let (rec, results) = run_burst(work().keep_latest().max(3)).await;
    // 1, 2, 3 run; 4 waits, 5 replaces it, 6 replaces 5; 6 starts when 1 ends.
    assert_eq!(rec.done(), [(1, 250), (2, 270), (3, 290), (6, 500)]);
    assert_eq!(
        outcomes(&results),
        ["ok", "ok", "ok", "cancelled", "cancelled", "ok"]
    );
}

#[tokio::test(start_paused = true)]
async fn enqueued_max_1_runs_all_six_in_order_one_at_a_time() {
    let (rec, results) = run_burst(work().enqueued()).await;
    assert_eq!(
        rec.done(),
        [
            (1, 250),
            (2, 500),
            (3, 750),
            (4, 1000),
            (5, 1250),
            (6, 1500)
        ]
    );
    assert_eq!(outcomes(&results), ["ok"; 6]);
}

#[tokio::test(start_paused = true)]
async fn enqueued_max_3_starts_waiting_instances_as_slots_free() {
    let (rec, _) = run_burst(work().enqueued().max(3)).await;
    assert_eq!(
        rec.done(),
        [(1, 250), (2, 270), (3, 290), (4, 500), (5, 520), (6, 540)]
    );
}

// ---- nested: the child keeps its own queue and behaviour ------------------------------

/// An unrestricted outer pipeline whose only step runs `inner` as a child.
fn outer(inner: Pipeline<u32, Ctx>) -> Pipeline<u32, Ctx> {
    pipeline!(|value: u32, _rec: &Ctx| {
        value = &inner;
    })
}

async fn run_nested(inner: Pipeline<u32, Ctx>) -> (Ctx, Vec<Result<u32, Error>>) {
    let rec = Recorder::new();
    let runtime = Runtime::builder(rec.clone()).start().unwrap();
    let outer = outer(inner);
    let results = burst(|value| runtime.invoke_pipeline(&outer, value).unwrap()).await;
    (rec, results)
}

#[tokio::test(start_paused = true)]
async fn a_nested_restartable_pipeline_restarts_and_cancels_the_parents_above_it() {
    let (rec, results) = run_nested(work().restartable()).await;
    assert_eq!(rec.done(), [(6, 330)]);
    assert_eq!(
        outcomes(&results),
        [
            "cancelled",
            "cancelled",
            "cancelled",
            "cancelled",
            "cancelled",
            "ok"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_nested_enqueued_pipeline_serialises_the_unrestricted_parents() {
    let (rec, results) = run_nested(work().enqueued()).await;
    assert_eq!(
        rec.done(),
        [
            (1, 250),
            (2, 500),
            (3, 750),
            (4, 1000),
            (5, 1250),
            (6, 1500)
        ]
    );
    assert_eq!(
        results.into_iter().map(Result::unwrap).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5, 6]
    );
}

#[tokio::test(start_paused = true)]
async fn a_nested_dropping_pipeline_drops_the_parents_of_dropped_children() {
    let (rec, results) = run_nested(work().dropping()).await;
    assert_eq!(rec.done(), [(1, 250)]);
    assert_eq!(
        outcomes(&results),
        ["ok", "dropped", "dropped", "dropped", "dropped", "dropped"]
    );
}

#[tokio::test(start_paused = true)]
async fn a_nested_keep_latest_pipeline_keeps_the_first_and_the_last() {
    let (rec, results) = run_nested(work().keep_latest()).await;
    assert_eq!(rec.done(), [(1, 250), (6, 500)]);
    assert_eq!(
        outcomes(&results),
        [
            "ok",
            "cancelled",
            "cancelled",
            "cancelled",
            "cancelled",
            "ok"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_pipeline_built_inside_a_step_joins_one_implicit_queue_across_runs() {
    // The inner `pipeline!` expression is evaluated anew at each run of the outer one;
    // every pipeline it produces joins the same implicit queue, so it still restarts.
    let outer = pipeline!(|value: u32, _rec: &Ctx| {
        value = pipeline!(|value: u32, rec: &Ctx| {
            sleep(Duration::from_millis(250)).await;
            rec.record(value);
        })
        .restartable();
    });
    let rec = Recorder::new();
    let runtime = Runtime::builder(rec.clone()).start().unwrap();
    let results = burst(|value| runtime.invoke_pipeline(&outer, value).unwrap()).await;
    assert_eq!(rec.done(), [(6, 330)]);
    assert_eq!(outcomes(&results)[5], "ok");
}

// ---- use_existing --------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn use_existing_shares_a_live_instance_with_equal_arguments() {
    let rec = Recorder::new();
    let runtime = Runtime::builder(rec.clone())
        .register("load", work().use_existing())
        .start()
        .unwrap();
    let first = runtime.invoke("load", 1_u32).unwrap();
    sleep(Duration::from_millis(100)).await;
    let same = runtime.invoke("load", 1_u32).unwrap();
    let other = runtime.invoke("load", 2_u32).unwrap();
    assert_eq!(first.ident(), same.ident());
    assert_ne!(first.ident(), other.ident());
    assert_eq!(same.argument(), Some(&1));
    assert_eq!(
        (
            first.await.unwrap(),
            same.await.unwrap(),
            other.await.unwrap()
        ),
        (1, 1, 2)
    );
    assert_eq!(rec.done(), [(1, 250), (2, 350)]);
    assert_eq!(runtime.queue_info("load").unwrap().performed(), 2);
    // Once finished, the instance is not shared any more: a new invocation runs again.
    runtime.invoke("load", 1_u32).unwrap().await.unwrap();
    assert_eq!(rec.done().len(), 3);
}

#[tokio::test(start_paused = true)]
async fn use_existing_with_enqueued_shares_running_and_waiting_instances() {
    let rec = Recorder::new();
    let runtime = Runtime::builder(rec.clone())
        .register("save", work().enqueued().use_existing())
        .start()
        .unwrap();
    let one = runtime.invoke("save", 1_u32).unwrap();
    let two = runtime.invoke("save", 2_u32).unwrap(); // waits
    let two_again = runtime.invoke("save", 2_u32).unwrap(); // shares the waiting one
    let one_again = runtime.invoke("save", 1_u32).unwrap(); // shares the running one
    assert_eq!(two.ident(), two_again.ident());
    assert_eq!(one.ident(), one_again.ident());
    let results = [one.await, two.await, two_again.await, one_again.await];
    assert_eq!(results.map(Result::unwrap), [1, 2, 2, 1]);
    assert_eq!(rec.done(), [(1, 250), (2, 500)]);
}

#[tokio::test(start_paused = true)]
async fn use_existing_with_restartable_shares_instead_of_restarting() {
    let rec = Recorder::new();
    let runtime = Runtime::builder(rec.clone())
        .register("search", work().restartable().use_existing())
        .start()
        .unwrap();
    let first = runtime.invoke("search", 1_u32).unwrap();
    let shared = runtime.invoke("search", 1_u32).unwrap();
    sleep(Duration::from_millis(50)).await;
    let newer = runtime.invoke("search", 2_u32).unwrap();
    // The newer argument restarts the queue: both callers of 1 are told "cancelled".
    assert!(first.await.unwrap_err().is_cancelled());
    assert!(shared.await.unwrap_err().is_cancelled());
    assert_eq!(newer.await.unwrap(), 2);
    assert_eq!(rec.done(), [(2, 300)]);
}

#[tokio::test(start_paused = true)]
async fn use_existing_with_dropping_shares_rather_than_drops() {
    let rec = Recorder::new();
    let runtime = Runtime::builder(rec.clone())
        .register("submit", work().dropping().use_existing())
        .start()
        .unwrap();
    let first = runtime.invoke("submit", 1_u32).unwrap();
    let same = runtime.invoke("submit", 1_u32).unwrap();
    let different = runtime.invoke("submit", 2_u32).unwrap();
    assert!(different.await.unwrap_err().is_dropped());
    assert_eq!((first.await.unwrap(), same.await.unwrap()), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn use_existing_as_a_nested_step_shares_the_live_child() {
    let load = work().use_existing();
    let outer = outer(load);
    let rec = Recorder::new();
    let runtime = Runtime::builder(rec.clone()).start().unwrap();
    let a = runtime.invoke_pipeline(&outer, 7).unwrap();
    let b = runtime.invoke_pipeline(&outer, 7).unwrap();
    assert_ne!(a.ident(), b.ident(), "the parents are distinct instances");
    assert_eq!((a.await.unwrap(), b.await.unwrap()), (7, 7));
    assert_eq!(rec.done(), [(7, 250)], "the child ran once");
}
