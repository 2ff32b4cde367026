//! Mirrors the seed README's sixth example, composition: an `inc-2-pipeline` (async
//! increment, then increment) used as a step of `inc-3-pipeline` ("Returns a promise which
//! will resolve to 5").
//!
//! A pipeline written as a step runs as a child with the current value; its result
//! becomes the parent's value. The seed writes its second step as `(async-inc)` with no
//! argument, a slip in the original; here it is `async_inc(value).await`.
//! 0 -> 1 -> 2 -> `inc_2` (3, 4) -> 5.
//!
//! Run it with `cargo run --example nested_pipeline`.

use std::sync::Mutex;
use std::time::Duration;

use pipewright::{pipeline, Runtime};

/// The runtime's context: the application state the steps update.
#[derive(Debug, Default)]
struct Ctx {
    state: Mutex<Option<i32>>,
}

impl Ctx {
    /// The seed's `pipeline-reset!`: replaces the state and returns `()`, so the step
    /// keeps the pipeline's value.
    fn reset(&self, value: i32) {
        *self.state.lock().unwrap() = Some(value);
    }

    fn state(&self) -> Option<i32> {
        *self.state.lock().unwrap()
    }
}

/// Increments `value` after a 100 ms timer, like the seed's `async-inc`.
async fn async_inc(value: i32) -> i32 {
    tokio::time::sleep(Duration::from_millis(100)).await;
    value + 1
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let inc_2 = pipeline!(|value: i32, _ctx: &Ctx| {
        value = async_inc(value).await;
        value = value + 1;
    });

    let inc_3 = pipeline!(|value: i32, ctx: &Ctx| {
        value = value + 1;
        ctx.reset(value);
        value = async_inc(value).await;
        ctx.reset(value);
        value = inc_2.clone();
        ctx.reset(value);
        value = value + 1;
        ctx.reset(value);
    });

    let runtime = Runtime::builder(Ctx::default())
        .register("inc-3", inc_3)
        .start()?;

    let result = runtime.invoke("inc-3", 0)?.await?;
    assert_eq!(result, 5);
    assert_eq!(runtime.context().state(), Some(5));

    println!(
        "inc-3 (with inc-2 nested) invoked with 0 resolved to {result}; state is {:?}",
        runtime.context().state()
    );
    Ok(())
}
