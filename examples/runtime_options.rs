//! Seed README, "runtime options": the transactor wraps each synchronous stretch of steps,
//! the watcher sees every state change, the error reporter gets unhandled errors, and
//! `on_cancel` is told about instances cancelled while they waited.
//!
//! Run with `cargo run --example runtime_options`; it checks its own results.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pipewright::{pipeline, Runtime};

type Log = Arc<Mutex<Vec<String>>>;

fn push(log: &Log, entry: impl Into<String>) {
    log.lock().unwrap().push(entry.into());
}

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() {
    let log = Log::default();
    let (in_transaction, watched, reported, cancelled) =
        (log.clone(), log.clone(), log.clone(), log.clone());
    let inc_then_wait = pipeline!(|value: i32, log: &Log| {
        push(log, "step 1");
        push(log, "step 2");
        tokio::time::sleep(Duration::from_millis(100)).await;
        push(log, "step 3");
        value = value + 1;
    });
    let fails = pipeline!(|value: i32, _log: &Log| {
        value = Err::<i32, _>("broken");
    });
    let waits = pipeline!(|value: i32, _log: &Log| {
        std::future::pending::<()>().await;
    });
    let runtime = Runtime::builder(log.clone())
        .register("inc", inc_then_wait)
        .register("fails", fails)
        .register("waits", waits)
        .transactor(move |stretch| {
            push(&in_transaction, "begin");
            stretch();
            push(&in_transaction, "commit");
        })
        .watcher(move |event| {
            if event.ident().name() == "inc" {
                push(&watched, format!("watcher: {:?}", event.kind()));
            }
        })
        .error_reporter(move |ident, error| {
            push(&reported, format!("reported {}: {error:#}", ident.name()))
        })
        .on_cancel(move |ident| push(&cancelled, format!("on_cancel {}", ident.name())))
        .start()
        .unwrap();

    assert_eq!(runtime.invoke("inc", 1).unwrap().await.unwrap(), 2);
    let _ = runtime.invoke("fails", 1).unwrap().await;
    let waiting = runtime.invoke("waits", 1).unwrap();
    waiting.cancel();
    let _ = waiting.await;

    let log = log.lock().unwrap().clone();
    for entry in &log {
        println!("{entry}");
    }
    let inc: Vec<&str> = log
        .iter()
        .map(String::as_str)
        .filter(|entry| !entry.starts_with("watcher"))
        .take(8)
        .collect();
    assert_eq!(
        inc,
        ["begin", "step 1", "step 2", "commit", "begin", "step 3", "commit", "begin"],
        "one transaction per synchronous stretch"
    );
    assert!(log.contains(&"watcher: Finished".to_owned()));
    assert!(log.contains(&"reported fails: step failed: broken".to_owned()));
    assert!(log.contains(&"on_cancel waits".to_owned()));
}
