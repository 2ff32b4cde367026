//! Each concurrency behaviour against what a Rust programmer would write by hand with
//! tokio, in the same run, with the same work per iteration. A job is one
//! `tokio::task::yield_now()` (a future that is not ready on its first poll) followed by
//! `value + 1`, so what is measured is the coordination, not timers. Every group uses one
//! current-thread tokio runtime, built once; an iteration is one `block_on` of a burst of
//! `BURST` (8) arrivals. Long-lived parts (the pipelines `Runtime`, the hand-written
//! worker tasks, semaphore and map) are set up once per group, outside the measurement.
//!
//! - `restartable`: 8 jobs start one after another, each cancelling the one in flight;
//!   await the last. By hand: keep the previous job's `AbortHandle`, abort it before
//!   spawning the next, await the last `JoinHandle`.
//! - `enqueued`: 8 jobs run one at a time, in arrival order; await all 8 results. By hand:
//!   an `mpsc` channel into one long-lived worker task that runs the jobs sequentially and
//!   replies through a `oneshot` per job.
//! - `dropping`: 8 arrivals while the first is in flight; the first runs, the other 7 are
//!   refused at once. By hand: a one-permit `Semaphore`; `try_acquire_owned` either gives
//!   the permit, which travels with the spawned job, or counts a drop.
//! - `keep_latest`: 8 arrivals while the first runs; only the first and the last run. By
//!   hand: a `watch` channel into one long-lived worker task that, after each job, runs
//!   the latest value (`changed` then `borrow_and_update`); a second `watch` tells the
//!   caller which value the worker finished last. The caller yields once after the first
//!   arrival so the worker starts it, as the pipeline starts its first instance at once.
//! - `use_existing`: 8 callers with the same argument share one run. By hand: a `HashMap`
//!   of `futures::future::Shared` spawned jobs behind a mutex; the job removes its entry
//!   when done.
//! - `admission_scaling`: one synchronous invoke (`try_result`, no executor involved) with
//!   10 vs 100,000 live instances of another pipeline in the runtime. Admission is O(1) in
//!   the number of live instances, so `live/10` and `live/100000` should be close.
//!
//! The pipeline side checks its results (`is_cancelled`, `is_dropped`, the values) once
//! before each group is measured, and cheaply on every iteration; the hand-written side
//! checks its values too.
//!
//! Run with `cargo bench --bench behaviours`.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use futures::future::FutureExt;
use pipewright::{pipeline, Invocation, Runtime};
use tokio::sync::{mpsc, oneshot, watch, Semaphore};

mod support;
use support::{current_thread, job, runtime_with, yield_job, SharedJob};

/// Arrivals per iteration.
const BURST: u64 = 8;

/// A burst of `BURST` invocations of `"work"` with the values `0..BURST`.
fn burst(runtime: &Runtime<()>) -> Vec<Invocation<u64>> {
    (0..BURST)
        .map(|value| runtime.invoke("work", black_box(value)).unwrap())
        .collect()
}

fn restartable(c: &mut Criterion) {
    let rt = current_thread();
    let runtime = runtime_with(yield_job().restartable());
    // Once, unmeasured: every instance but the last is cancelled, the last completes.
    rt.block_on(async {
        let handles = burst(&runtime);
        for (value, handle) in (0..BURST).zip(handles) {
            let result = handle.await;
            if value + 1 < BURST {
                assert!(result.unwrap_err().is_cancelled());
            } else {
                assert_eq!(result.unwrap(), BURST);
            }
        }
    });

    let mut group = c.benchmark_group("restartable");
    group.bench_function("hand_written", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut previous: Option<tokio::task::AbortHandle> = None;
                let mut last = None;
                for value in 0..BURST {
                    if let Some(previous) = previous.take() {
                        previous.abort();
                    }
                    let task = tokio::spawn(job(black_box(value)));
                    previous = Some(task.abort_handle());
                    last = Some(task);
                }
                let result = last.unwrap().await.unwrap();
                assert_eq!(result, BURST);
                result
            })
        })
    });
    group.bench_function("pipeline", |b| {
        b.iter(|| {
            rt.block_on(async {
                let last = burst(&runtime).pop().unwrap();
                let result = last.await.unwrap();
                assert_eq!(result, BURST);
                result
            })
        })
    });
    group.finish();
}

fn enqueued(c: &mut Criterion) {
    let rt = current_thread();
    let runtime = runtime_with(yield_job().enqueued());
    // Once, unmeasured: all run, in order.
    rt.block_on(async {
        for (value, handle) in (0..BURST).zip(burst(&runtime)) {
            assert_eq!(handle.await.unwrap(), value + 1);
        }
    });

    // The hand-written worker lives as long as the pipeline runtime's queue does.
    let (jobs, mut inbox) = mpsc::unbounded_channel::<(u64, oneshot::Sender<u64>)>();
    rt.spawn(async move {
        while let Some((value, reply)) = inbox.recv().await {
            let _ = reply.send(job(value).await);
        }
    });

    let mut group = c.benchmark_group("enqueued");
    group.bench_function("hand_written", |b| {
        b.iter(|| {
            rt.block_on(async {
                let replies: Vec<_> = (0..BURST)
                    .map(|value| {
                        let (reply, result) = oneshot::channel();
                        jobs.send((black_box(value), reply)).unwrap();
                        result
                    })
                    .collect();
                let mut sum = 0;
                for reply in replies {
                    sum += reply.await.unwrap();
                }
                assert_eq!(sum, BURST * (BURST + 1) / 2);
                sum
            })
        })
    });
    group.bench_function("pipeline", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut sum = 0;
                for handle in burst(&runtime) {
                    sum += handle.await.unwrap();
                }
                assert_eq!(sum, BURST * (BURST + 1) / 2);
                sum
            })
        })
    });
    group.finish();
}

fn dropping(c: &mut Criterion) {
    let rt = current_thread();
    let runtime = runtime_with(yield_job().dropping());
    // Once, unmeasured: the first runs, the others are dropped.
    rt.block_on(async {
        for (value, handle) in (0..BURST).zip(burst(&runtime)) {
            let result = handle.await;
            if value == 0 {
                assert_eq!(result.unwrap(), 1);
            } else {
                assert!(result.unwrap_err().is_dropped());
            }
        }
    });

    let permits = Arc::new(Semaphore::new(1));
    let mut group = c.benchmark_group("dropping");
    group.bench_function("hand_written", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut running = None;
                let mut dropped = 0;
                for value in 0..BURST {
                    match Arc::clone(&permits).try_acquire_owned() {
                        Ok(permit) => {
                            running = Some(tokio::spawn(async move {
                                let result = job(black_box(value)).await;
                                drop(permit);
                                result
                            }));
                        }
                        Err(_) => dropped += 1,
                    }
                }
                let result = running.unwrap().await.unwrap();
                assert_eq!((result, dropped), (1, BURST - 1));
                (result, dropped)
            })
        })
    });
    group.bench_function("pipeline", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut result = 0;
                let mut dropped = 0;
                for handle in burst(&runtime) {
                    match handle.await {
                        Ok(value) => result = value,
                        Err(error) => {
                            assert!(error.is_dropped());
                            dropped += 1;
                        }
                    }
                }
                assert_eq!((result, dropped), (1, BURST - 1));
                (result, dropped)
            })
        })
    });
    group.finish();
}

fn keep_latest(c: &mut Criterion) {
    let rt = current_thread();
    let runtime = runtime_with(yield_job().keep_latest());
    // Once, unmeasured: the first and the last run, the ones in between are cancelled.
    rt.block_on(async {
        for (value, handle) in (0..BURST).zip(burst(&runtime)) {
            let result = handle.await;
            if value == 0 || value + 1 == BURST {
                assert_eq!(result.unwrap(), value + 1);
            } else {
                assert!(result.unwrap_err().is_cancelled());
            }
        }
    });

    // The hand-written worker: after each job, the latest value sent (if any) runs next;
    // `finished` holds the last value it ran. Values grow across iterations (`base`), so
    // the caller can tell this iteration's last job from an earlier one.
    // `runs` counts the jobs the worker ran, to check afterwards that it ran two per
    // iteration (the first and the last), as the pipeline does.
    let (latest, mut changes) = watch::channel(0_u64);
    let (finished_tx, mut finished) = watch::channel(0_u64);
    let runs = Arc::new(AtomicU64::new(0));
    let worker_runs = Arc::clone(&runs);
    rt.spawn(async move {
        while changes.changed().await.is_ok() {
            let value = *changes.borrow_and_update();
            job(value).await;
            worker_runs.fetch_add(1, Ordering::Relaxed);
            finished_tx.send_replace(value);
        }
    });
    let mut base = 0_u64;
    let mut iterations = 0_u64;

    let mut group = c.benchmark_group("keep_latest");
    group.bench_function("hand_written", |b| {
        b.iter(|| {
            base += BURST;
            iterations += 1;
            let (latest, finished) = (&latest, &mut finished);
            rt.block_on(async move {
                let first = base;
                let last = base + BURST - 1;
                latest.send_replace(black_box(first));
                // The worker starts the first job before the others arrive.
                tokio::task::yield_now().await;
                for value in first + 1..=last {
                    latest.send_replace(black_box(value));
                }
                let done = *finished.wait_for(|&done| done == last).await.unwrap();
                assert_eq!(done, last);
                done
            })
        })
    });
    group.bench_function("pipeline", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut ran = 0;
                let mut last = 0;
                for handle in burst(&runtime) {
                    if let Ok(value) = handle.await {
                        ran += 1;
                        last = value;
                    }
                }
                assert_eq!((ran, last), (2, BURST));
                last
            })
        })
    });
    group.finish();
    assert_eq!(runs.load(Ordering::Relaxed), 2 * iterations);
}

fn use_existing(c: &mut Criterion) {
    let rt = current_thread();
    let runtime = runtime_with(yield_job().use_existing());
    // Once, unmeasured: all 8 get the one run's result, and only one instance was live.
    rt.block_on(async {
        let handles: Vec<_> = (0..BURST)
            .map(|_| runtime.invoke("work", 7_u64).unwrap())
            .collect();
        assert_eq!(runtime.live_counts().0, 1);
        for handle in handles {
            assert_eq!(handle.await.unwrap(), 8);
        }
    });

    let in_flight: Arc<Mutex<HashMap<u64, SharedJob>>> = Arc::default();
    let mut group = c.benchmark_group("use_existing");
    group.bench_function("hand_written", |b| {
        b.iter(|| {
            rt.block_on(async {
                let callers: Vec<SharedJob> = (0..BURST)
                    .map(|_| {
                        let key = black_box(7_u64);
                        in_flight
                            .lock()
                            .unwrap()
                            .entry(key)
                            .or_insert_with(|| {
                                let in_flight = Arc::clone(&in_flight);
                                let task = tokio::spawn(async move {
                                    let result = job(key).await;
                                    in_flight.lock().unwrap().remove(&key);
                                    result
                                });
                                async move { task.await.unwrap() }.boxed().shared()
                            })
                            .clone()
                    })
                    .collect();
                let mut sum = 0;
                for caller in callers {
                    sum += caller.await;
                }
                assert_eq!(sum, 8 * BURST);
                sum
            })
        })
    });
    group.bench_function("pipeline", |b| {
        b.iter(|| {
            rt.block_on(async {
                let handles: Vec<_> = (0..BURST)
                    .map(|_| runtime.invoke("work", black_box(7_u64)).unwrap())
                    .collect();
                let mut sum = 0;
                for handle in handles {
                    sum += handle.await.unwrap();
                }
                assert_eq!(sum, 8 * BURST);
                sum
            })
        })
    });
    group.finish();
}

fn admission_scaling(c: &mut Criterion) {
    let mut group = c.benchmark_group("admission_scaling");
    for live in [10_u64, 100_000] {
        let rt = current_thread();
        let forever = pipeline!(|value: u64, _ctx: &()| {
            std::future::pending::<()>().await;
        });
        let quick = pipeline!(|value: u64, _ctx: &()| {
            value = value + 1;
        });
        let runtime = Runtime::builder(())
            .register("forever", forever)
            .register("quick", quick)
            .start()
            .unwrap();
        {
            // Instances that wait are spawned on the current tokio runtime.
            let _guard = rt.enter();
            for value in 0..live {
                drop(runtime.invoke("forever", value).unwrap());
            }
        }
        assert_eq!(runtime.live_counts().0 as u64, live);
        assert_eq!(
            runtime
                .invoke("quick", 1_u64)
                .unwrap()
                .try_result()
                .unwrap()
                .unwrap(),
            2
        );
        group.bench_with_input(BenchmarkId::new("live", live), &live, |b, _| {
            b.iter(|| {
                runtime
                    .invoke("quick", black_box(1_u64))
                    .unwrap()
                    .try_result()
            })
        });
        assert_eq!(runtime.live_counts().0 as u64, live);
    }
    group.finish();
}

criterion_group!(
    benches,
    restartable,
    enqueued,
    dropping,
    keep_latest,
    use_existing,
    admission_scaling
);
criterion_main!(benches);
