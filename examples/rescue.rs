//! Mirrors the seed README's fourth example: `inc-3-pipeline` with a `rejecting-promise`
//! step and a `rescue!` block that increments the value and stores the error in the state.
//!
//! When the awaited future fails, the remaining main steps are skipped and `rescue!` runs
//! with the value from *before* the failing step (1). It increments it to 2 and stores the
//! error in the state. The seed's comment says the promise "will resolve to 3", but its
//! own code yields 2 (0 -> `inc` 1 -> rejection -> rescue `inc` 2): the comment was carried
//! over from the earlier examples. This port asserts what the code actually computes, 2.
//!
//! Run it with `cargo run --example rescue`.

use std::sync::Mutex;
use std::time::Duration;

use pipewright::{pipeline, Runtime};

/// What the seed's `state*` atom can hold: a value, or the error that `rescue!` stored.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Value(i32),
    Error(String),
}

/// The runtime's context: the application state the steps update.
#[derive(Debug, Default)]
struct Ctx {
    state: Mutex<Option<State>>,
}

impl Ctx {
    /// The seed's `pipeline-reset!`: replaces the state and returns `()`, so the step
    /// keeps the pipeline's value.
    fn reset(&self, state: State) {
        *self.state.lock().unwrap() = Some(state);
    }

    fn state(&self) -> Option<State> {
        self.state.lock().unwrap().clone()
    }
}

/// Fails with "Some Error" after a 100 ms timer, like the seed's `rejecting-promise`.
async fn rejecting_future() -> Result<i32, &'static str> {
    tokio::time::sleep(Duration::from_millis(100)).await;
    Err("Some Error")
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let inc_3 = pipeline!(|value: i32, ctx: &Ctx| {
        value = value + 1;
        ctx.reset(State::Value(value));
        value = rejecting_future().await;
        // Skipped: the step above fails.
        ctx.reset(State::Value(value));
        value = value + 1;
        ctx.reset(State::Value(value));
        rescue!(|error| {
            // `value` is 1, the value from before `rejecting_future`.
            value = value + 1;
            ctx.reset(State::Error(error.message()));
        });
    });

    let runtime = Runtime::builder(Ctx::default())
        .register("inc-3", inc_3)
        .start()?;

    let result = runtime.invoke("inc-3", 0)?.await?;
    let state = runtime.context().state();
    assert_eq!(result, 2);
    assert_eq!(state, Some(State::Error("Some Error".to_owned())));

    println!("inc-3 invoked with 0 was rescued: result {result}, state {state:?}");
    Ok(())
}
