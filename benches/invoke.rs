//! Invocation overhead against hand-written baselines, in the same run.
//!
//! - `sync_3_steps`: a 3-step all-synchronous pipeline invoked through the runtime, vs
//!   calling the same three functions directly.
//! - `one_wait`: a pipeline with one step awaiting a future that completes later, vs
//!   `tokio::spawn` of the equivalent async block and awaiting its handle.
//!
//! Run with `cargo bench --bench invoke`; the ratios are in README's Performance section.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use pipewright::{pipeline, Runtime};

#[inline(never)]
fn inc(value: u64) -> u64 {
    value.wrapping_add(1)
}

fn sync_3_steps(c: &mut Criterion) {
    let inc_3 = pipeline!(|value: u64, _ctx: &()| {
        value = inc(value);
        value = inc(value);
        value = inc(value);
    });
    let runtime = Runtime::builder(())
        .register("inc-3", inc_3.clone())
        .start()
        .unwrap();
    let mut group = c.benchmark_group("sync_3_steps");
    group.bench_function("direct_calls", |b| {
        b.iter(|| inc(inc(inc(black_box(1_u64)))))
    });
    group.bench_function("invoke_by_name", |b| {
        b.iter(|| {
            runtime
                .invoke("inc-3", black_box(1_u64))
                .unwrap()
                .try_result()
                .unwrap()
                .unwrap()
        })
    });
    let handle = runtime.handle::<u64>("inc-3").unwrap();
    group.bench_function("invoke_by_handle", |b| {
        b.iter(|| {
            handle
                .invoke(black_box(1_u64))
                .unwrap()
                .try_result()
                .unwrap()
                .unwrap()
        })
    });
    group.bench_function("invoke_by_value", |b| {
        b.iter(|| {
            runtime
                .invoke_pipeline(&inc_3, black_box(1_u64))
                .unwrap()
                .try_result()
                .unwrap()
                .unwrap()
        })
    });
    group.finish();
}

fn one_wait(c: &mut Criterion) {
    let tokio_runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let runtime = tokio_runtime.block_on(async { Runtime::builder(()).start().unwrap() });
    let waits_once = pipeline!(|value: u64, _ctx: &()| {
        value = inc(value);
        value = async move {
            tokio::task::yield_now().await;
            inc(value)
        }
        .await;
        value = inc(value);
    });
    let mut group = c.benchmark_group("one_wait");
    group.bench_function("tokio_spawn", |b| {
        b.iter(|| {
            tokio_runtime.block_on(async {
                let value = inc(black_box(1_u64));
                let value = tokio::spawn(async move {
                    tokio::task::yield_now().await;
                    inc(value)
                })
                .await
                .unwrap();
                inc(value)
            })
        })
    });
    group.bench_function("pipeline", |b| {
        b.iter(|| {
            tokio_runtime.block_on(async {
                runtime
                    .invoke_pipeline(&waits_once, black_box(1_u64))
                    .unwrap()
                    .await
                    .unwrap()
            })
        })
    });
    group.finish();
}

criterion_group!(benches, sync_3_steps, one_wait);
criterion_main!(benches);
