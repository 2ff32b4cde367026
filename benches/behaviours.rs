//! Each concurrency behaviour against what a Rust programmer would write by hand with
//! tokio, in the same run, with the same work: a job is one `yield_now` (a future that
//! is not ready on its first poll), so what is measured is the coordination, not timers.
//!
//! - restartable: 8 jobs, each cancelling the one in flight; await the last.
//!   By hand: keep the previous `AbortHandle`, abort it, spawn the next.
//! - enqueued: 8 jobs run one at a time, in order; await all.
//!   By hand: an mpsc channel and one worker task, replies through oneshot channels.
//! - dropping: 8 arrivals while the first runs; 7 are refused at once.
//!   By hand: `Semaphore::try_acquire_owned`, the permit travels with the spawned job.
//! - keep_latest: 8 arrivals while the first runs; the first and the last run.
//!   By hand: a `watch` channel and a worker that runs the latest value after each job.
//! - use_existing: 8 callers with the same argument share one run.
//!   By hand: a `HashMap` of `futures::future::Shared` behind a mutex.
//! - admission_scaling: one synchronous invoke with 10 vs 100,000 live instances in the
//!   runtime (admission is O(1): the two should be equal).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use futures::future::{BoxFuture, FutureExt, Shared};
use pipelines::{pipeline, Pipeline, Runtime};
use tokio::sync::{mpsc, oneshot, watch, Semaphore};

const BURST: u64 = 8;

fn tokio_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn job(value: u64) -> u64 {
    tokio::task::yield_now().await;
    value + 1
}

fn work() -> Pipeline<u64, ()> {
    pipeline!(|value: u64, _ctx: &()| {
        job(value).await;
    })
}

fn runtime_with(pipeline: Pipeline<u64, ()>) -> Runtime<()> {
    Runtime::builder(())
        .register("work", pipeline)
        .start()
        .unwrap()
}

fn restartable(c: &mut Criterion) {
    let rt = tokio_runtime();
    let mut group = c.benchmark_group("restartable");
    group.bench_function("hand_written", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut previous: Option<tokio::task::AbortHandle> = None;
                let mut last = None;
                for value in 0..BURST {
                    if let Some(handle) = previous.take() {
                        handle.abort();
                    }
                    let task = tokio::spawn(job(value));
                    previous = Some(task.abort_handle());
                    last = Some(task);
                }
                last.unwrap().await.unwrap()
            })
        })
    });
    let runtime = runtime_with(work().restartable());
    group.bench_function("pipeline", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut last = None;
                for value in 0..BURST {
                    last = Some(runtime.invoke("work", value).unwrap());
                }
                last.unwrap().await.unwrap()
            })
        })
    });
    group.finish();
}

fn enqueued(c: &mut Criterion) {
    let rt = tokio_runtime();
    let mut group = c.benchmark_group("enqueued");
    group.bench_function("hand_written", |b| {
        b.iter(|| {
            rt.block_on(async {
                let (jobs, mut inbox) = mpsc::channel::<(u64, oneshot::Sender<u64>)>(16);
                let worker = tokio::spawn(async move {
                    while let Some((value, reply)) = inbox.recv().await {
                        let _ = reply.send(job(value).await);
                    }
                });
                let mut replies = Vec::new();
                for value in 0..BURST {
                    let (reply, result) = oneshot::channel();
                    jobs.send((value, reply)).await.unwrap();
                    replies.push(result);
                }
                let mut sum = 0;
                for reply in replies {
                    sum += reply.await.unwrap();
                }
                drop(jobs);
                worker.await.unwrap();
                sum
            })
        })
    });
    let runtime = runtime_with(work().enqueued());
    group.bench_function("pipeline", |b| {
        b.iter(|| {
            rt.block_on(async {
                let handles: Vec<_> = (0..BURST)
                    .map(|value| runtime.invoke("work", value).unwrap())
                    .collect();
                let mut sum = 0;
                for handle in handles {
                    sum += handle.await.unwrap();
                }
                sum
            })
        })
    });
    group.finish();
}

fn dropping(c: &mut Criterion) {
    let rt = tokio_runtime();
    let mut group = c.benchmark_group("dropping");
    let permits = Arc::new(Semaphore::new(1));
    group.bench_function("hand_written", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut running = None;
                let mut dropped = 0;
                for value in 0..BURST {
                    match Arc::clone(&permits).try_acquire_owned() {
                        Ok(permit) => {
                            running = Some(tokio::spawn(async move {
                                let result = job(value).await;
                                drop(permit);
                                result
                            }))
                        }
                        Err(_) => dropped += 1,
                    }
                }
                (running.unwrap().await.unwrap(), dropped)
            })
        })
    });
    let runtime = runtime_with(work().dropping());
    group.bench_function("pipeline", |b| {
        b.iter(|| {
            rt.block_on(async {
                let handles: Vec<_> = (0..BURST)
                    .map(|value| runtime.invoke("work", value).unwrap())
                    .collect();
                let mut dropped = 0;
                let mut result = 0;
                for handle in handles {
                    match handle.await {
                        Ok(value) => result = value,
                        Err(_) => dropped += 1,
                    }
                }
                (result, dropped)
            })
        })
    });
    group.finish();
}

fn keep_latest(c: &mut Criterion) {
    let rt = tokio_runtime();
    let mut group = c.benchmark_group("keep_latest");
    group.bench_function("hand_written", |b| {
        b.iter(|| {
            rt.block_on(async {
                // The worker runs the latest value after each job; `done` reports each
                // finished job so the caller knows when the last one ran.
                let (latest, mut changes) = watch::channel(None::<u64>);
                let (done, mut finished) = mpsc::unbounded_channel();
                let worker = tokio::spawn(async move {
                    while changes.changed().await.is_ok() {
                        let value = *changes.borrow_and_update();
                        if let Some(value) = value {
                            let _ = done.send(job(value).await);
                        }
                    }
                });
                for value in 0..BURST {
                    latest.send_replace(Some(value));
                    if value == 0 {
                        // The first one starts at once, as with the pipeline.
                        tokio::task::yield_now().await;
                    }
                }
                let mut last = 0;
                while last != BURST {
                    last = finished.recv().await.unwrap();
                }
                drop(latest);
                worker.await.unwrap();
                last
            })
        })
    });
    let runtime = runtime_with(work().keep_latest());
    group.bench_function("pipeline", |b| {
        b.iter(|| {
            rt.block_on(async {
                let handles: Vec<_> = (0..BURST)
                    .map(|value| runtime.invoke("work", value).unwrap())
                    .collect();
                let mut last = 0;
                for handle in handles {
                    if let Ok(value) = handle.await {
                        last = value;
                    }
                }
                last
            })
        })
    });
    group.finish();
}

type SharedJob = Shared<BoxFuture<'static, u64>>;

fn use_existing(c: &mut Criterion) {
    let rt = tokio_runtime();
    let mut group = c.benchmark_group("use_existing");
    let in_flight: Arc<Mutex<HashMap<u64, SharedJob>>> = Arc::default();
    group.bench_function("hand_written", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut callers = Vec::new();
                for _ in 0..BURST {
                    let shared = in_flight
                        .lock()
                        .unwrap()
                        .entry(7)
                        .or_insert_with(|| {
                            let registry = Arc::clone(&in_flight);
                            let task = tokio::spawn(async move {
                                let result = job(7).await;
                                registry.lock().unwrap().remove(&7);
                                result
                            });
                            async move { task.await.unwrap() }.boxed().shared()
                        })
                        .clone();
                    callers.push(shared);
                }
                let mut sum = 0;
                for caller in callers {
                    sum += caller.await;
                }
                sum
            })
        })
    });
    let runtime = runtime_with(work().use_existing());
    group.bench_function("pipeline", |b| {
        b.iter(|| {
            rt.block_on(async {
                let handles: Vec<_> = (0..BURST)
                    .map(|_| runtime.invoke("work", 7_u64).unwrap())
                    .collect();
                let mut sum = 0;
                for handle in handles {
                    sum += handle.await.unwrap();
                }
                sum
            })
        })
    });
    group.finish();
}

fn admission_scaling(c: &mut Criterion) {
    let mut group = c.benchmark_group("admission_scaling");
    for live in [10_u64, 100_000] {
        let rt = tokio_runtime();
        let forever = pipeline!(|value: u64, _ctx: &()| {
            std::future::pending::<()>().await;
        });
        let quick = pipeline!(|value: u64, _ctx: &()| {
            value + 1;
        });
        let runtime = Runtime::builder(())
            .register("forever", forever)
            .register("quick", quick)
            .start()
            .unwrap();
        {
            let _guard = rt.enter();
            for value in 0..live {
                runtime.invoke("forever", value).unwrap();
            }
        }
        assert_eq!(runtime.live_counts().0 as u64, live);
        group.bench_with_input(BenchmarkId::new("live", live), &live, |b, _| {
            b.iter(|| runtime.invoke("quick", 1_u64).unwrap().try_result())
        });
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
