//! Mirrors the seed README's third example: `inc-3-pipeline` updating the state after
//! each increment with `pipeline-reset!` ("Returns a promise which will resolve to 3").
//!
//! The seed keeps the state in an atom in the context (`{:state* (atom nil)}`); here the
//! context holds a `Mutex<Option<i32>>`. `Ctx::reset` returns `()`, which, like the
//! seed's `nil`, keeps the pipeline's value unchanged.
//!
//! Run it with `cargo run --example state_updates`.

use std::sync::Mutex;
use std::time::Duration;

use pipewright::{pipeline, Runtime};

/// The runtime's context: the application state the steps update.
#[derive(Debug, Default)]
struct Ctx {
    state: Mutex<Option<i32>>,
}

impl Ctx {
    /// The seed's `pipeline-reset!`: replaces the state and returns `()` (the seed's
    /// `nil`), so the step keeps the pipeline's value.
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
    let inc_3 = pipeline!(|value: i32, ctx: &Ctx| {
        value = value + 1;
        ctx.reset(value);
        value = async_inc(value).await;
        ctx.reset(value);
        value = value + 1;
        ctx.reset(value);
    });

    let runtime = Runtime::builder(Ctx::default())
        .register("inc-3", inc_3)
        .start()?;

    let handle = runtime.invoke("inc-3", 0)?;
    // The steps before `async_inc` ran inside `invoke`: the state already holds 1.
    assert_eq!(runtime.context().state(), Some(1));

    let result = handle.await?;
    assert_eq!(result, 3);
    assert_eq!(runtime.context().state(), Some(3));

    println!(
        "inc-3 invoked with 0 resolved to {result}; state is {:?}",
        runtime.context().state()
    );
    Ok(())
}
