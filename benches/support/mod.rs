//! What the benches share: the job both sides run, its pipeline twin, and the runtimes.

use futures::future::{BoxFuture, Shared};
use pipewright::{pipeline, Pipeline, Runtime};

/// A current-thread tokio runtime with I/O and time, as `#[tokio::main]` builds.
pub(crate) fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The hand-written job: the same work as an instance of [`yield_job`].
pub(crate) async fn job(value: u64) -> u64 {
    tokio::task::yield_now().await;
    value + 1
}

/// The pipeline job: a waiting step (a future that is not ready on its first poll), then
/// a synchronous one.
pub(crate) fn yield_job() -> Pipeline<u64, ()> {
    pipeline!(|value: u64, _ctx: &()| {
        tokio::task::yield_now().await;
        value = value + 1;
    })
}

/// A pipelines runtime with `pipeline` registered as `"work"`.
pub(crate) fn runtime_with(pipeline: Pipeline<u64, ()>) -> Runtime<()> {
    Runtime::builder(())
        .register("work", pipeline)
        .start()
        .unwrap()
}

/// A job shared by the callers of the hand-written `use_existing` twin.
pub(crate) type SharedJob = Shared<BoxFuture<'static, u64>>;
