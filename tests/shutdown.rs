//! A graceful shutdown to await (`Runtime::shutdown`): it stops the runtime, resolves once
//! every `finally!` has run and every spared instance has ended, and past its deadline
//! cancels what remains.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pipewright::{pipeline, InvokeError, Pipeline, Runtime};
use tokio::time::{sleep, Instant};

type Log = Arc<Mutex<Vec<String>>>;

fn push(log: &Log, entry: impl Into<String>) {
    log.lock().unwrap().push(entry.into());
}

fn entries(log: &Log) -> Vec<String> {
    log.lock().unwrap().clone()
}

/// Waits `secs` in its main steps and 3 s in its `finally!` (a cleanup that takes time),
/// logging when each ends.
fn with_slow_cleanup(secs: u64) -> Pipeline<u32, Log> {
    pipeline!(|value: u32, log: &Log| {
        sleep(Duration::from_secs(secs)).await;
        push(log, format!("done {value}"));
        finally!(|error| {
            sleep(Duration::from_secs(3)).await;
            push(log, format!("cleaned {value} {}", error.is_some()));
        });
    })
}

#[tokio::test(start_paused = true)]
async fn shutdown_resolves_after_the_last_finally_and_the_spared_instances() {
    let log = Log::default();
    let runtime = Runtime::builder(log.clone()).start().unwrap();
    let cancelled = runtime
        .invoke_pipeline(&with_slow_cleanup(3_600), 1)
        .unwrap();
    let spared = runtime
        .invoke_pipeline(&with_slow_cleanup(5).cancel_on_shutdown(false), 2)
        .unwrap();
    let start = Instant::now();
    let report = runtime.shutdown(Duration::from_secs(60)).await;
    // The spared one's 5 s and its 3 s cleanup; the cancelled one's cleanup ran meanwhile.
    assert_eq!(start.elapsed(), Duration::from_secs(8));
    assert_eq!(report.forced(), 0);
    assert_eq!(runtime.live_counts().0, 0);
    assert_eq!(
        entries(&log),
        ["cleaned 1 true", "done 2", "cleaned 2 false"]
    );
    assert!(cancelled.await.unwrap_err().is_cancelled());
    assert_eq!(spared.await.unwrap(), 2);
    // Refused afterwards, as after `stop`.
    let refused = runtime
        .invoke_pipeline(&with_slow_cleanup(1), 3)
        .unwrap_err();
    assert_eq!(*refused, InvokeError::Stopped);
}

#[tokio::test(start_paused = true)]
async fn past_its_deadline_shutdown_cancels_what_remains_and_waits_for_its_finally() {
    let log = Log::default();
    let runtime = Runtime::builder(log.clone()).start().unwrap();
    let spared = with_slow_cleanup(3_600)
        .cancel_on_shutdown(false)
        .enqueued();
    let running = runtime.invoke_pipeline(&spared, 1).unwrap();
    let waiting = runtime.invoke_pipeline(&spared, 2).unwrap();
    let start = Instant::now();
    let report = runtime.shutdown(Duration::from_secs(10)).await;
    // 10 s of grace, then the running one's 3 s cleanup (the waiting one never started).
    assert_eq!(start.elapsed(), Duration::from_secs(13));
    assert_eq!(report.forced(), 2);
    assert_eq!(entries(&log), ["cleaned 1 true"]);
    assert!(running.await.unwrap_err().is_cancelled());
    assert!(waiting.await.unwrap_err().is_cancelled());
    assert_eq!(runtime.live_counts().0, 0);
}

#[tokio::test(start_paused = true)]
async fn a_runtime_with_nothing_live_shuts_down_at_once() {
    let runtime = Runtime::builder(Log::default()).start().unwrap();
    let quick = pipeline!(|value: u32, _log: &Log| {
        value = value + 1;
    });
    assert_eq!(
        runtime.invoke_pipeline(&quick, 1).unwrap().await.unwrap(),
        2
    );
    let start = Instant::now();
    assert_eq!(runtime.shutdown(Duration::from_secs(5)).await.forced(), 0);
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert!(runtime.is_stopped());
}
