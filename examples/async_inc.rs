//! Mirrors the seed README's second example: `inc-3-pipeline` whose middle step is
//! `async-inc`, an increment that resolves after a 100 ms timer ("Returns a promise which
//! will resolve to 3").
//!
//! The first step runs inside `invoke`; the pipeline then waits on the timer, so the
//! handle has no result yet and has to be awaited.
//!
//! Run it with `cargo run --example async_inc`.

use std::time::{Duration, Instant};

use pipewright::{pipeline, Runtime};

/// Increments `value` after a 100 ms timer, like the seed's `async-inc`.
async fn async_inc(value: i32) -> i32 {
    tokio::time::sleep(Duration::from_millis(100)).await;
    value + 1
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let inc_3 = pipeline!(|value: i32, _ctx: &()| {
        value = value + 1;
        value = async_inc(value).await;
        value = value + 1;
    });

    let runtime = Runtime::builder(()).register("inc-3", inc_3).start()?;

    let started = Instant::now();
    let mut handle = runtime.invoke("inc-3", 0)?;
    // Unlike the synchronous `inc_3` example, the result is not there yet: the
    // pipeline is waiting on `async_inc`'s timer.
    assert!(handle.try_result().is_none());

    let result = handle.await?;
    let elapsed = started.elapsed();
    assert_eq!(result, 3);
    assert!(elapsed >= Duration::from_millis(100));

    println!("inc-3 invoked with 0 resolved to {result} after {elapsed:?}");
    Ok(())
}
