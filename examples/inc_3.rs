//! Mirrors the seed README's first example: a pipeline that increments its argument three
//! times (`inc-3-pipeline`, "Returns 3").
//!
//! No step waits, so the pipeline runs to its end inside `invoke`: the result is in the
//! handle as soon as `invoke` returns, with no `.await` and no tokio runtime at all.
//!
//! Run it with `cargo run --example inc_3`.

use pipewright::{pipeline, Runtime};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let inc_3 = pipeline!(|value: i32, _ctx: &()| {
        value = value + 1;
        value = value + 1;
        value = value + 1;
    });

    let runtime = Runtime::builder(()).register("inc-3", inc_3).start()?;

    // `try_result` is `Some` right away: the pipeline completed synchronously.
    let result = runtime
        .invoke("inc-3", 0)?
        .try_result()
        .expect("a pipeline that never waits completes inside `invoke`")?;
    assert_eq!(result, 3);

    println!("inc-3 invoked with 0 returned {result} synchronously (no .await)");
    Ok(())
}
