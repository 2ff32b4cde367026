//! Promises attacked from outside: nesting never overflows the stack (running a deep
//! pipeline, or dropping one), `stop` handles many queues and long detached chains, a zero
//! timeout does not fail a ready future.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pipewright::{pipeline, CancelReason, Error, Pipeline, Runtime, NESTING_LIMIT};

/// The stack of a tokio worker thread: what deep nesting must not overflow.
const WORKER_STACK: usize = 2 << 20;

fn on_worker_stack<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(WORKER_STACK)
        .spawn(work)
        .unwrap()
        .join()
        .unwrap()
}

/// Runs `work` to completion on a current-thread tokio runtime, on a worker-sized stack.
fn block_on_worker_stack<F>(work: impl FnOnce() -> F + Send + 'static) -> F::Output
where
    F: std::future::Future,
    F::Output: Send + 'static,
{
    on_worker_stack(|| {
        let tokio = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        tokio.block_on(work())
    })
}

/// Nests the next level until the value reaches zero.
fn countdown() -> Pipeline<usize, ()> {
    pipeline!(|value: usize, _ctx: &()| {
        value = value.saturating_sub(1);
        value = if value > 0 { Some(countdown()) } else { None };
    })
}

/// Like `countdown`, but each level waits before it nests.
fn waiting_countdown() -> Pipeline<usize, ()> {
    pipeline!(|value: usize, _ctx: &()| {
        tokio::task::yield_now().await;
        value = value.saturating_sub(1);
        value = if value > 0 {
            Some(waiting_countdown())
        } else {
            None
        };
    })
}

#[test]
fn synchronous_nesting_up_to_the_limit_runs_and_past_it_is_a_typed_error() {
    let (within, past) = on_worker_stack(|| {
        let runtime = Runtime::builder(()).start().unwrap();
        let run = |levels: usize| {
            runtime
                .invoke_pipeline(&countdown(), levels)
                .unwrap()
                .try_result()
                .expect("nothing waits")
        };
        // A value of n makes n instances, one inside the other.
        (run(NESTING_LIMIT), run(NESTING_LIMIT + 1))
    });
    assert_eq!(within.unwrap(), 0);
    let error = past.unwrap_err();
    assert!(
        matches!(
            error,
            Error::NestingTooDeep {
                limit: NESTING_LIMIT
            }
        ),
        "{error:?}"
    );
    assert_eq!(
        format!("{error:#}"),
        format!("nested more than {NESTING_LIMIT} levels deep")
    );
}

#[test]
fn nesting_too_deep_takes_the_error_path_and_leaves_nothing_behind() {
    on_worker_stack(|| {
        let runtime = Runtime::builder(()).start().unwrap();
        let guarded = pipeline!(|value: usize, _ctx: &()| {
            value = countdown();
            rescue!(|error| {
                value = if matches!(error, Error::NestingTooDeep { .. }) {
                    usize::MAX
                } else {
                    0
                };
            });
        });
        let result = runtime
            .invoke_pipeline(&guarded, NESTING_LIMIT * 8)
            .unwrap()
            .try_result();
        assert_eq!(result.unwrap().unwrap(), usize::MAX);
        assert!(runtime.active().is_empty(), "{:?}", runtime.active());
    });
}

#[test]
fn nesting_levels_that_wait_first_stop_at_the_limit_too() {
    let (within, past) = block_on_worker_stack(|| async move {
        let runtime = Runtime::builder(()).start().unwrap();
        let within = runtime
            .invoke_pipeline(&waiting_countdown(), NESTING_LIMIT)
            .unwrap()
            .await;
        let past = runtime
            .invoke_pipeline(&waiting_countdown(), NESTING_LIMIT + 1)
            .unwrap()
            .await;
        (within, past)
    });
    assert_eq!(within.unwrap(), 0);
    assert!(
        matches!(past, Err(Error::NestingTooDeep { .. })),
        "{past:?}"
    );
}

/// The environment variable that makes this test binary, re-run as a child process, build
/// and drop the deep value (a stack overflow aborts the process it happens in).
const DEEP_DROP_CHILD: &str = "PIPELINES_DEEP_DROP_CHILD";

/// A pipeline value nested `levels` deep: each level's step holds the next.
fn nested_value(levels: usize) -> Pipeline<u64, ()> {
    let mut nested = pipeline!(|value: u64, _ctx: &()| {
        value = value + 1;
    });
    for _ in 0..levels {
        let inner = nested;
        nested = pipeline!(|value: u64, _ctx: &()| {
            value = inner.clone();
        });
    }
    nested
}

#[test]
fn dropping_a_deeply_nested_pipeline_value_does_not_overflow_the_stack() {
    const LEVELS: usize = 100_000;
    if std::env::var_os(DEEP_DROP_CHILD).is_some() {
        // In the child: on a worker-sized stack, refused to run, then dropped.
        let dropped = std::thread::Builder::new()
            .stack_size(WORKER_STACK)
            .spawn(|| {
                let deep = nested_value(LEVELS);
                let runtime = Runtime::builder(()).start().unwrap();
                let refused = runtime.invoke_pipeline(&deep, 0).unwrap().try_result();
                assert!(
                    matches!(refused, Some(Err(Error::NestingTooDeep { .. }))),
                    "{refused:?}"
                );
                drop(deep);
                drop(nested_value(LEVELS).clone());
            })
            .unwrap()
            .join();
        assert!(dropped.is_ok());
        return;
    }
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "dropping_a_deeply_nested_pipeline_value_does_not_overflow_the_stack",
            "--nocapture",
        ])
        .env(DEEP_DROP_CHILD, "1")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "the child died ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    // The child ran the test (a filter that matched nothing would pass too).
    assert!(String::from_utf8_lossy(&output.stdout).contains("1 passed"));
}

/// Each level starts the next as a detached child and counts itself.
fn detached_chain() -> Pipeline<usize, Arc<AtomicUsize>> {
    pipeline!(|value: usize, done: &Arc<AtomicUsize>| {
        {
            done.fetch_add(1, Ordering::SeqCst);
        };
        value = value.saturating_sub(1);
        if value > 0 {
            Some(detached_chain().detached())
        } else {
            None
        };
    })
}

#[test]
fn a_long_chain_of_detached_children_runs_to_the_end_on_fresh_stacks() {
    const LEVELS: usize = 5_000;
    let done = block_on_worker_stack(|| async move {
        let done = Arc::new(AtomicUsize::new(0));
        let runtime = Runtime::builder(done.clone()).start().unwrap();
        runtime
            .invoke_pipeline(&detached_chain(), LEVELS)
            .unwrap()
            .await
            .unwrap();
        // Past the limit, each detached child continues on a task of its own.
        while !runtime.active().is_empty() {
            tokio::task::yield_now().await;
        }
        done.load(Ordering::SeqCst)
    });
    assert_eq!(done, LEVELS);
}

/// A detached child that waits for ever, whose parent is over: the chain stays live.
fn parked_chain() -> Pipeline<usize, ()> {
    pipeline!(|value: usize, _ctx: &()| {
        value = value.saturating_sub(1);
        if value > 0 {
            Some(parked_chain().detached())
        } else {
            None
        };
        std::future::pending::<()>().await;
    })
}

#[test]
fn stop_cancels_a_long_detached_chain_and_many_per_key_queues() {
    // The sizes at which `stop` took seconds when it was quadratic (its cost is measured,
    // not asserted here).
    let levels: usize = 5_000;
    let keys: usize = 10_000;
    block_on_worker_stack(move || async move {
        let runtime = Runtime::builder(()).start().unwrap();
        let chain = runtime.invoke_pipeline(&parked_chain(), levels).unwrap();
        let per_key = pipeline!(|key: usize, _ctx: &()| {
            std::future::pending::<()>().await;
        })
        .queue_by(|key: &usize| format!("key-{key}"))
        .enqueued();
        let keyed: Vec<_> = (0..keys)
            .map(|key| runtime.invoke_pipeline(&per_key, key).unwrap())
            .collect();
        // Let the detached levels past the nesting limit start on their tasks.
        while runtime
            .active()
            .iter()
            .map(|queue| queue.instances().len())
            .sum::<usize>()
            < levels + keys
        {
            tokio::task::yield_now().await;
        }
        runtime.stop();
        assert!(chain.await.unwrap_err().is_cancelled());
        for handle in keyed {
            assert!(handle.await.unwrap_err().is_cancelled());
        }
        while !runtime.active().is_empty() {
            tokio::task::yield_now().await;
        }
    });
}

#[tokio::test(start_paused = true)]
async fn a_zero_timeout_does_not_fail_a_future_that_is_ready_at_once() {
    let p = pipeline!(|value: u32, _ctx: &()| {
        value = async { value + 1 }.await;
        value = std::future::ready(value * 10).await;
    })
    .timeout(Duration::ZERO);
    let runtime = Runtime::builder(()).start().unwrap();
    let result = runtime.invoke_pipeline(&p, 1).unwrap().try_result();
    assert_eq!(result.unwrap().unwrap(), 20);

    let waits = pipeline!(|value: u32, _ctx: &()| {
        tokio::time::sleep(Duration::from_millis(1)).await;
    })
    .timeout(Duration::ZERO);
    let error = runtime
        .invoke_pipeline(&waits, 1)
        .unwrap()
        .await
        .unwrap_err();
    assert!(
        error.is_timeout(),
        "a future that waits is timed out: {error:?}"
    );
}

/// Runs `work(thread)` on `threads` OS threads at once; their results, in thread order.
fn on_threads<T: Send>(threads: u64, work: impl Fn(u64) -> T + Sync) -> Vec<T> {
    std::thread::scope(|scope| {
        let work = &work;
        let spawned: Vec<_> = (0..threads)
            .map(|thread| scope.spawn(move || work(thread)))
            .collect();
        spawned
            .into_iter()
            .map(|thread| thread.join().unwrap())
            .collect()
    })
}

fn two_workers() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Slots held, reconstructed from the watcher's events alone.
#[derive(Default)]
struct Held {
    ids: std::collections::HashSet<u64>,
    peak: usize,
    /// Instances whose end was told.
    ended: usize,
}

#[test]
fn the_watcher_sees_a_cancelled_instance_free_its_slot_so_max_live_holds_in_events() {
    use pipewright::EventKind;
    const THREADS: u32 = 4;
    const PER_THREAD: u32 = 1_500;
    let tokio = two_workers();
    let work = pipeline!(|value: u32, _ctx: &()| {
        tokio::task::yield_now().await;
        value = value + 1;
    })
    .restartable()
    .max(2);
    let held = Arc::new((
        std::sync::Mutex::new(Held::default()),
        std::sync::Condvar::new(),
    ));
    let sink = held.clone();
    let runtime = Runtime::builder(())
        .register("work", work)
        .executor(tokio.handle().clone())
        .watcher(move |event| {
            let mut held = sink.0.lock().unwrap();
            if matches!(
                event.kind(),
                EventKind::Finished | EventKind::Failed(_) | EventKind::Cancelled { .. }
            ) {
                held.ended += 1;
                sink.1.notify_all();
            }
            let id = event.ident().id();
            match event.kind() {
                EventKind::Started => {
                    held.ids.insert(id);
                    held.peak = held.peak.max(held.ids.len());
                }
                EventKind::Cancelling { .. }
                | EventKind::Finished
                | EventKind::Failed(_)
                | EventKind::Cancelled { .. } => {
                    held.ids.remove(&id);
                }
                _ => {}
            }
        })
        .start()
        .unwrap();
    let handles: Vec<_> = on_threads(THREADS.into(), |thread| {
        (0..PER_THREAD)
            .map(|n| {
                runtime
                    .invoke("work", thread as u32 * PER_THREAD + n)
                    .unwrap()
            })
            .collect::<Vec<_>>()
    })
    .into_iter()
    .flatten()
    .collect();
    tokio.block_on(async {
        for handle in handles {
            let _ = handle.await;
        }
    });
    // Events are delivered after the decisions they record, possibly on another thread
    // once the handles have resolved: wait until every end has been told.
    let total = (THREADS * PER_THREAD) as usize;
    let (held, _) = held
        .1
        .wait_timeout_while(held.0.lock().unwrap(), Duration::from_secs(60), |held| {
            held.ended < total
        })
        .unwrap();
    assert_eq!(held.ended, total);
    assert!(
        held.peak <= 2,
        "events show {} slots held at once",
        held.peak
    );
    assert!(held.ids.is_empty());
    assert_eq!(runtime.live_counts().0, 0);
}

#[test]
fn cancel_answers_ok_exactly_when_the_caller_is_told_cancelled() {
    let tokio = two_workers();
    let work = pipeline!(|value: u32, _ctx: &()| {
        tokio::task::yield_now().await;
        value = value + 1;
    });
    let runtime = Runtime::builder(())
        .register("work", work)
        .executor(tokio.handle().clone())
        .start()
        .unwrap();
    let (mut cancelled, mut finished) = (0, 0);
    for n in 0..3_000_u32 {
        let handle = runtime.invoke("work", n).unwrap();
        // A varying delay, so the cancellation lands anywhere around the instance's end:
        // at once, after a spin, or after a sleep long enough for a worker to finish it.
        match n % 3 {
            0 => {}
            1 => (0..(n % 97) * 20).for_each(|_| std::hint::spin_loop()),
            _ => std::thread::sleep(Duration::from_micros(u64::from(n % 200))),
        }
        let accepted = runtime.cancel(handle.ident()).is_ok();
        let result = tokio.block_on(handle);
        if accepted {
            cancelled += 1;
            assert!(
                matches!(
                    result,
                    Err(Error::Cancelled {
                        reason: CancelReason::Requested,
                        ..
                    })
                ),
                "cancel said yes, the caller got {result:?}"
            );
        } else {
            finished += 1;
            assert_eq!(result.unwrap(), n + 1, "cancel said no");
        }
    }
    // Both answers happened, so the race window was crossed.
    assert!(cancelled > 0 && finished > 0, "{cancelled} / {finished}");
}

thread_local! {
    /// Events the watcher was told on this thread.
    static WATCHED_HERE: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

#[test]
fn a_slow_watcher_does_not_make_one_invoke_deliver_everybody_elses_events() {
    use std::time::{Duration, Instant};
    const THREADS: u64 = 3;
    const PER_THREAD: u64 = 2_000;
    let delivered = Arc::new(AtomicUsize::new(0));
    let seen = delivered.clone();
    let runtime = Runtime::builder(())
        .register(
            "sync",
            pipeline!(|value: u64, _ctx: &()| {
                value = value + 1;
            }),
        )
        .watcher(move |_| {
            // A watcher that takes ~20 µs per event.
            let start = Instant::now();
            while start.elapsed() < Duration::from_micros(20) {
                std::hint::spin_loop();
            }
            WATCHED_HERE.with(|here| here.set(here.get() + 1));
            seen.fetch_add(1, Ordering::SeqCst);
        })
        .start()
        .unwrap();
    let most = on_threads(THREADS, |thread| {
        let mut most = 0;
        for n in 0..PER_THREAD {
            let before = WATCHED_HERE.with(|here| here.get());
            let mut handle = runtime.invoke("sync", thread * PER_THREAD + n).unwrap();
            assert!(handle.try_result().unwrap().is_ok());
            most = most.max(WATCHED_HERE.with(|here| here.get()) - before);
        }
        most
    })
    .into_iter()
    .max()
    .unwrap();
    // One invoke records 3 events in 2 critical sections; each delivery round takes its
    // own events, those the other threads recorded but have not delivered yet (3 each),
    // and at most 64 more. Before, one call could deliver thousands.
    assert!(
        most <= 2 * (3 + 3 * 3 + 64),
        "one invoke delivered {most} events"
    );
    // Everything is delivered in the end, by the callers or the thread they handed to.
    let expected = (3 * THREADS * PER_THREAD) as usize;
    let deadline = Instant::now() + Duration::from_secs(60);
    while delivered.load(Ordering::SeqCst) < expected && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(delivered.load(Ordering::SeqCst), expected);
}
