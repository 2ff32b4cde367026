//! Fault injection: a panic in a main step, in `rescue!`, in `finally!`, and in
//! each hook (watcher, error reporter, transactor, on_cancel). Each time the panic is
//! reported (or, for a panicking reporter, contained), the instance ends as its error
//! path says, other instances and later invocations are unaffected, and nothing
//! deadlocks. (Panicking supervised children: tests/supervision.rs.)

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pipewright::{pipeline, EventKind, Pipeline, Runtime, RuntimeBuilder};

type Log = Arc<Mutex<Vec<String>>>;

fn push(log: &Log, entry: impl Into<String>) {
    log.lock().unwrap().push(entry.into());
}

fn entries(log: &Log) -> Vec<String> {
    log.lock().unwrap().clone()
}

/// A runtime builder whose reporter logs `reported <name>: <error>`.
fn reporting(log: &Log) -> RuntimeBuilder<Log> {
    let reports = log.clone();
    Runtime::builder(log.clone()).error_reporter(move |ident, error| {
        push(&reports, format!("reported {}: {error:#}", ident.name()));
    })
}

/// A step that panics (a function, so the step has a type).
fn explode(what: &str) {
    panic!("{what}");
}

fn healthy() -> Pipeline<u32, Log> {
    pipeline!(|value: u32, _log: &Log| {
        tokio::task::yield_now().await;
        value = value + 1;
    })
}

/// Other instances and later invocations still work.
async fn still_healthy(runtime: &Runtime<Log>) {
    let p = healthy();
    let handles: Vec<_> = (0..3)
        .map(|n| runtime.invoke_pipeline(&p, n).unwrap())
        .collect();
    for (n, handle) in handles.into_iter().enumerate() {
        assert_eq!(handle.await.unwrap(), n as u32 + 1);
    }
}

#[tokio::test(start_paused = true)]
async fn a_panic_in_a_main_step_fails_the_instance_and_is_reported() {
    let log = Log::default();
    let runtime = reporting(&log).start().unwrap();
    let p = pipeline!(|value: u32, _log: &Log| {
        tokio::task::yield_now().await;
        value = if value == 1 {
            panic!("main step broke")
        } else {
            value
        };
    });
    let survivor = runtime.invoke_pipeline(&p, 2).unwrap();
    let error = runtime.invoke_pipeline(&p, 1).unwrap().await.unwrap_err();
    assert!(error.is_panic());
    assert_eq!(survivor.await.unwrap(), 2);
    assert_eq!(entries(&log).len(), 1);
    assert!(entries(&log)[0].ends_with("step panicked: main step broke"));
    still_healthy(&runtime).await;
}

#[tokio::test(start_paused = true)]
async fn a_panic_in_rescue_goes_to_finally_and_fails_the_instance() {
    let log = Log::default();
    let runtime = reporting(&log).start().unwrap();
    let p = pipeline!(|value: u32, log: &Log| {
        value = Err::<u32, _>("first");
        rescue!(|error| {
            explode("rescue broke");
        });
        finally!(|error| {
            push(log, format!("finally saw: {}", error.unwrap()));
        });
    });
    let error = runtime.invoke_pipeline(&p, 1).unwrap().await.unwrap_err();
    assert!(error.is_panic());
    assert_eq!(
        entries(&log),
        [
            "finally saw: step panicked: rescue broke".to_owned(),
            format!("reported {}: step panicked: rescue broke", p.site_name())
        ]
    );
    still_healthy(&runtime).await;
}

#[tokio::test(start_paused = true)]
async fn a_panic_in_finally_fails_the_instance_once() {
    let log = Log::default();
    let runtime = reporting(&log).start().unwrap();
    let p = pipeline!(|value: u32, log: &Log| {
        value = value + 1;
        finally!(|error| {
            push(log, "finally started");
            explode("finally broke");
            push(log, "never");
        });
    });
    let error = runtime.invoke_pipeline(&p, 1).unwrap().await.unwrap_err();
    assert!(error.is_panic());
    let log = entries(&log);
    assert_eq!(log[0], "finally started");
    assert_eq!(log.len(), 2, "{log:?}");
    assert!(log[1].ends_with("step panicked: finally broke"));
    still_healthy(&runtime).await;
}

#[tokio::test(start_paused = true)]
async fn a_panicking_watcher_is_reported_and_changes_nothing_else() {
    let log = Log::default();
    let runtime = reporting(&log)
        .register("victim", healthy())
        .watcher(|event| {
            if event.ident().name() == "victim" && matches!(event.kind(), EventKind::Started) {
                panic!("watcher broke");
            }
        })
        .start()
        .unwrap();
    assert_eq!(runtime.invoke("victim", 1_u32).unwrap().await.unwrap(), 2);
    assert_eq!(runtime.invoke("victim", 2_u32).unwrap().await.unwrap(), 3);
    assert_eq!(
        entries(&log),
        [
            "reported victim: step panicked: the watcher panicked: watcher broke",
            "reported victim: step panicked: the watcher panicked: watcher broke"
        ]
    );
    still_healthy(&runtime).await;
}

#[tokio::test(start_paused = true)]
async fn a_panicking_error_reporter_is_contained() {
    let runtime = Runtime::builder(Log::default())
        .error_reporter(|_, _| panic!("reporter broke"))
        .start()
        .unwrap();
    let failing = pipeline!(|value: u32, _log: &Log| {
        value = Err::<u32, _>("no");
    });
    for _ in 0..3 {
        let error = runtime
            .invoke_pipeline(&failing, 1)
            .unwrap()
            .await
            .unwrap_err();
        assert_eq!(format!("{error:#}"), "step failed: no");
    }
    still_healthy(&runtime).await;
}

#[tokio::test(start_paused = true)]
async fn a_panicking_transactor_fails_the_instance_it_wrapped() {
    let log = Log::default();
    let first_call = Arc::new(AtomicBool::new(true));
    let runtime = reporting(&log)
        .transactor(move |stretch| {
            if first_call.swap(false, Ordering::SeqCst) {
                panic!("transactor broke");
            }
            stretch();
        })
        .start()
        .unwrap();
    let p = pipeline!(|value: u32, log: &Log| {
        push(log, "step ran");
        value = value + 1;
        rescue!(|error| {
            push(log, format!("rescue saw: {error:#}"));
            value = 0;
        });
    });
    // The first stretch never ran inside the transactor: the instance fails, and its
    // error path runs outside any transaction.
    assert_eq!(runtime.invoke_pipeline(&p, 1).unwrap().await.unwrap(), 0);
    assert_eq!(
        entries(&log),
        ["rescue saw: step panicked: the transactor panicked: transactor broke"]
    );
    assert_eq!(runtime.invoke_pipeline(&p, 1).unwrap().await.unwrap(), 2);
    still_healthy(&runtime).await;
}

#[tokio::test(start_paused = true)]
async fn a_transactor_that_panics_after_its_stretch_is_reported() {
    let log = Log::default();
    let calls = Arc::new(AtomicU32::new(0));
    let runtime = reporting(&log)
        .transactor(move |stretch| {
            stretch();
            if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                panic!("commit broke");
            }
        })
        .start()
        .unwrap();
    let p = pipeline!(|value: u32, _log: &Log| {
        value = value + 1;
    });
    // The instance completed inside the stretch: its result stands, the panic is reported.
    assert_eq!(runtime.invoke_pipeline(&p, 1).unwrap().await.unwrap(), 2);
    assert_eq!(entries(&log).len(), 1);
    assert!(entries(&log)[0].ends_with("the transactor panicked: commit broke"));
    still_healthy(&runtime).await;
}

#[tokio::test(start_paused = true)]
async fn a_panicking_on_cancel_hook_is_reported_and_the_cancellation_completes() {
    let log = Log::default();
    let runtime = reporting(&log)
        .on_cancel(|_| panic!("on_cancel broke"))
        .start()
        .unwrap();
    let p = pipeline!(|value: u32, log: &Log| {
        tokio::time::sleep(Duration::from_secs(60)).await;
        finally!(|error| {
            push(log, format!("finally: {}", error.unwrap()));
        });
    });
    let handle = runtime.invoke_pipeline(&p, 1).unwrap();
    tokio::task::yield_now().await;
    handle.cancel();
    assert!(handle.await.unwrap_err().is_cancelled());
    let log = entries(&log);
    assert_eq!(log.len(), 2, "{log:?}");
    assert!(log[0].ends_with("step panicked: the on_cancel hook panicked: on_cancel broke"));
    assert_eq!(
        log[1],
        "finally: instance cancelled: cancelled by its ident"
    );
    still_healthy(&runtime).await;
}
