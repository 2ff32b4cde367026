//! Promise: `finally!` runs exactly once per started instance, whatever ends it, even the
//! tokio runtime going away. An instance whose task the executor drops (it shuts down
//! with work in flight, or was already gone when the task was spawned) runs to its end
//! on the dropping thread: what it waits on fails with `NoExecutor`, its error path runs,
//! its caller is told the outcome, and the registry is empty afterwards.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use pipewright::{pipeline, Error, Runtime};

#[derive(Default)]
struct Counts {
    started: AtomicUsize,
    finally: AtomicUsize,
    rescued: AtomicUsize,
}

fn tokio_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn dropping_the_tokio_runtime_with_instances_in_flight_runs_each_finally_once() {
    let forever = pipeline!(|value: u32, ctx: &Counts| {
        {
            ctx.started.fetch_add(1, Ordering::SeqCst);
        };
        std::future::pending::<()>().await;
        finally!(|error| {
            {
                assert!(matches!(error, Some(Error::NoExecutor)));
                ctx.finally.fetch_add(1, Ordering::SeqCst);
            };
        });
    });
    // A child that waits inside a parent: both levels end, each `finally!` once.
    let child = forever.clone();
    let parent = pipeline!(|value: u32, ctx: &Counts| {
        value = &child;
        finally!(|error| {
            {
                ctx.finally.fetch_add(1, Ordering::SeqCst);
            };
        });
    });
    let tokio = tokio_runtime();
    let runtime = Runtime::builder(Counts::default())
        .register("forever", forever.clone().max(3).enqueued())
        .register("parent", parent)
        .executor(tokio.handle().clone())
        .start()
        .unwrap();
    // Two hold slots, one more waits for a slot (it never starts), one nests a child.
    let mut handles: Vec<_> = (0..4_u32)
        .map(|n| runtime.invoke("forever", n).unwrap())
        .collect();
    handles.push(runtime.invoke("parent", 9).unwrap());
    tokio.block_on(tokio::task::yield_now());
    assert_eq!(runtime.context().started.load(Ordering::SeqCst), 4);

    drop(tokio);

    // Each started instance ran its `finally!` once: those in the queue, the child, and
    // the parent. The one that waited for a slot may have been given the slot a finished
    // instance freed during the shutdown (then it started, and ran its `finally!` too).
    let started = runtime.context().started.load(Ordering::SeqCst);
    assert!(started == 4 || started == 5, "{started}");
    assert_eq!(
        runtime.context().finally.load(Ordering::SeqCst),
        started + 1
    );
    for handle in &mut handles {
        let error = handle.try_result().unwrap().unwrap_err();
        assert!(matches!(error, Error::NoExecutor), "{error:#}");
    }
    assert_eq!(runtime.live_counts().0, 0);
    assert!(runtime.active().is_empty());
}

#[test]
fn a_rescue_may_recover_from_the_executor_going_away() {
    let recovers = pipeline!(|value: u32, ctx: &Counts| {
        value = std::future::pending::<u32>().await;
        rescue!(|error| {
            value = {
                ctx.rescued.fetch_add(1, Ordering::SeqCst);
                value + 100
            };
        });
    });
    let tokio = tokio_runtime();
    let runtime = Runtime::builder(Counts::default())
        .register("recovers", recovers)
        .executor(tokio.handle().clone())
        .start()
        .unwrap();
    let mut handle = runtime.invoke("recovers", 1_u32).unwrap();
    drop(tokio);
    assert_eq!(handle.try_result().unwrap().unwrap(), 101);
    assert_eq!(runtime.context().rescued.load(Ordering::SeqCst), 1);
    assert_eq!(runtime.live_counts().0, 0);
}

#[test]
fn invoking_after_the_tokio_runtime_is_gone_reports_no_executor_and_runs_finally() {
    let waits = pipeline!(|value: u32, ctx: &Counts| {
        {
            ctx.started.fetch_add(1, Ordering::SeqCst);
        };
        std::future::pending::<()>().await;
        finally!(|error| {
            {
                ctx.finally.fetch_add(1, Ordering::SeqCst);
            };
        });
    });
    let tokio = tokio_runtime();
    let runtime = Runtime::builder(Counts::default())
        .register("waits", waits)
        .executor(tokio.handle().clone())
        .start()
        .unwrap();
    drop(tokio);
    let mut handle = runtime.invoke("waits", 1_u32).unwrap();
    let error = handle.try_result().unwrap().unwrap_err();
    assert!(matches!(error, Error::NoExecutor), "{error:#}");
    assert_eq!(runtime.context().started.load(Ordering::SeqCst), 1);
    assert_eq!(runtime.context().finally.load(Ordering::SeqCst), 1);
    assert_eq!(runtime.live_counts().0, 0);
}

#[test]
fn a_current_thread_runtime_inside_a_blocking_task_ends_its_instances_when_dropped() {
    let outer = tokio_runtime();
    let counts = Arc::new(AtomicUsize::new(0));
    let seen = counts.clone();
    let (finally_runs, result) = outer.block_on(async move {
        tokio::task::spawn_blocking(move || {
            let inner = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let waits = pipeline!(|value: u32, ctx: &Arc<AtomicUsize>| {
                tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
                finally!(|error| {
                    {
                        ctx.fetch_add(1, Ordering::SeqCst);
                    };
                });
            });
            let runtime = Runtime::builder(seen)
                .register("waits", waits)
                .start()
                .unwrap();
            let mut handle = inner.block_on(async {
                let handle = runtime.invoke("waits", 1_u32).unwrap();
                tokio::task::yield_now().await;
                // Handed out unawaited: the runtime goes away under it.
                Some(handle)
            });
            let mut handle = handle.take().unwrap();
            drop(inner);
            let result = handle.try_result().unwrap();
            (runtime.context().load(Ordering::SeqCst), result)
        })
        .await
        .unwrap()
    });
    assert_eq!(finally_runs, 1);
    assert!(matches!(result, Err(Error::NoExecutor)), "{result:?}");
    assert_eq!(counts.load(Ordering::SeqCst), 1);
}
