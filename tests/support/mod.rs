//! Helpers shared by the integration tests.
#![allow(dead_code)] // each test file uses its own subset

use std::sync::{Arc, Mutex};

use pipewright::{Error, Pipeline, Runtime};

/// A shared log: the context of the logging runtime.
pub(crate) type Log = Arc<Mutex<Vec<String>>>;

/// A runtime whose context is a log, with an error reporter that logs
/// `reported <pipeline name> <error>`.
pub(crate) fn logging_runtime() -> (Runtime<Log>, Log) {
    let log: Log = Arc::default();
    let reported = log.clone();
    let runtime = Runtime::builder(log.clone())
        .error_reporter(move |ident, error| {
            reported
                .lock()
                .unwrap()
                .push(format!("reported {} {error:#}", ident.name()));
        })
        .start()
        .unwrap();
    (runtime, log)
}

pub(crate) fn push(log: &Log, entry: impl Into<String>) {
    log.lock().unwrap().push(entry.into());
}

pub(crate) fn entries(log: &Log) -> Vec<String> {
    log.lock().unwrap().clone()
}

/// Invokes `pipeline` and returns its result, which must be there at once.
pub(crate) fn run_sync<V, C>(
    runtime: &Runtime<C>,
    pipeline: &Pipeline<V, C>,
    value: V,
) -> Result<V, Error>
where
    V: Clone + Send + Sync + 'static,
    C: Send + Sync + 'static,
{
    runtime
        .invoke_pipeline(pipeline, value)
        .unwrap()
        .try_result()
        .expect("the pipeline should not have waited")
}

/// Every message of an error chain, outermost first (what `anyhow`'s `{:#}` prints).
pub(crate) fn chain(error: &(dyn std::error::Error + 'static)) -> Vec<String> {
    // Plain `Display`, as chain printers use it (not the `{:#}` one-liner).
    let mut messages = vec![error.to_string()];
    let mut next = error.source();
    while let Some(source) = next {
        messages.push(source.to_string());
        next = source.source();
    }
    messages
}
