//! Mirrors the seed README's fifth example: the `rescue` example plus a `finally!` block
//! that increments the value and logs "Running in the end" ("Returns a promise which will
//! resolve to 3").
//!
//! In this library `finally!` runs after `rescue!` and sees the error as
//! `Option<&pipewright::Error>` (`Some` here, even though `rescue!` handled it). The values
//! flow through every section: 0 -> `inc` 1 -> the future fails -> `rescue!` runs with the
//! value from before the failing step, 1, and increments it to 2 -> `finally!` increments
//! it to 3. Because `rescue!` handled the error, the pipeline succeeds, and a value a
//! `finally!` step produces becomes the result: 3, which matches the seed's comment.
//!
//! Run it with `cargo run --example finally`.

use std::sync::Mutex;
use std::time::Duration;

use pipewright::{pipeline, Runtime};

/// What the seed's `state*` atom can hold: a value, or the error that `rescue!` stored.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Value(i32),
    Error(String),
}

/// The runtime's context: the application state and a log of what `finally!` saw.
#[derive(Debug, Default)]
struct Ctx {
    state: Mutex<Option<State>>,
    log: Mutex<Vec<String>>,
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

    /// The seed's `js/console.log`: prints the line and keeps it, so `main` can check
    /// that `finally!` ran.
    fn log(&self, line: &str) {
        println!("{line}");
        self.log.lock().unwrap().push(line.to_owned());
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
        finally!(|error| {
            // `error` might be `None`; here it is the error `rescue!` handled.
            value = value + 1;
            ctx.log(&format!(
                "finally! saw error: {}",
                error.map_or("none".to_owned(), pipewright::Error::message)
            ));
            ctx.log("Running in the end");
        });
    });

    let runtime = Runtime::builder(Ctx::default())
        .register("inc-3", inc_3)
        .start()?;

    let result = runtime.invoke("inc-3", 0)?.await?;
    let state = runtime.context().state();
    assert_eq!(result, 3);
    assert_eq!(state, Some(State::Error("Some Error".to_owned())));
    assert_eq!(
        *runtime.context().log.lock().unwrap(),
        ["finally! saw error: Some Error", "Running in the end"]
    );

    println!(
        "inc-3 invoked with 0 resolved to {result} after rescue! and finally!; state {state:?}"
    );
    Ok(())
}
