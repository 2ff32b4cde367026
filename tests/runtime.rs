//! The runtime: invocation by name or value, typed refusals, hooks, stop, executors.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pipewright::{pipeline, Error, Invocation, InvokeError, Pipeline, Runtime, StartError};

fn inc() -> Pipeline<i32, ()> {
    pipeline!(|value: i32, _ctx: &()| {
        value = value + 1;
    })
}

#[test]
fn runtime_and_handles_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    fn assert_send<T: Send>() {}
    assert_send_sync::<Runtime<()>>();
    assert_send_sync::<Pipeline<String, ()>>();
    assert_send::<Invocation<String>>();
    assert_send_sync::<Error>();
}

#[test]
fn unknown_names_are_a_typed_error() {
    let runtime = Runtime::builder(()).register("inc", inc()).start().unwrap();
    let error = runtime.invoke::<i32>("nope", 1).unwrap_err();
    assert_eq!(
        error,
        InvokeError::UnknownPipeline {
            name: "nope".into()
        }
    );
    assert_eq!(format!("{error:#}"), "no pipeline named `nope`");
}

#[test]
fn a_wrong_argument_type_is_a_typed_error_naming_both_types() {
    let runtime = Runtime::builder(()).register("inc", inc()).start().unwrap();
    let error = runtime.invoke("inc", 1_u64).unwrap_err();
    assert_eq!(
        format!("{error:#}"),
        "pipeline `inc` takes `i32`, not `u64`"
    );
}

#[test]
fn duplicate_names_are_refused_at_start() {
    let error = Runtime::builder(())
        .register("inc", inc())
        .register("inc", inc())
        .start()
        .unwrap_err();
    assert_eq!(format!("{error:#}"), "two pipelines named `inc`");
    assert!(matches!(error, StartError::DuplicateName { .. }));
}

#[test]
fn one_pipeline_can_be_registered_under_two_names() {
    let p = inc();
    let runtime = Runtime::builder(())
        .register("a", p.clone())
        .register("b", p)
        .start()
        .unwrap();
    assert!(runtime.is_registered("a") && runtime.is_registered("b"));
    let a = runtime.invoke("a", 1).unwrap();
    let b = runtime.invoke("b", 1).unwrap();
    assert_eq!(a.ident().name(), "a");
    assert_eq!(b.ident().name(), "b");
    assert_ne!(a.ident().id(), b.ident().id());
}

#[test]
fn invoking_after_stop_is_refused() {
    let runtime = Runtime::builder(()).register("inc", inc()).start().unwrap();
    runtime.stop();
    assert_eq!(runtime.invoke("inc", 1).unwrap_err(), InvokeError::Stopped);
    assert_eq!(
        runtime.invoke_pipeline(&inc(), 1).unwrap_err(),
        InvokeError::Stopped
    );
}

#[tokio::test(start_paused = true)]
async fn the_transactor_wraps_every_synchronous_stretch() {
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let in_transactor = log.clone();
    let runtime = Runtime::builder(log.clone())
        .transactor(move |stretch| {
            in_transactor.lock().unwrap().push("begin".into());
            stretch();
            in_transactor.lock().unwrap().push("commit".into());
        })
        .start()
        .unwrap();
    let p = pipeline!(|value: i32, log: &Arc<Mutex<Vec<String>>>| {
        log.lock().unwrap().push(format!("step {value}"));
        value = value + 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
        log.lock().unwrap().push(format!("step {value}"));
        value = value + 1;
        log.lock().unwrap().push(format!("step {value}"));
    });
    assert_eq!(runtime.invoke_pipeline(&p, 0).unwrap().await.unwrap(), 2);
    assert_eq!(
        *log.lock().unwrap(),
        ["begin", "step 0", "commit", "begin", "step 1", "step 2", "commit"]
    );
}

#[test]
fn a_transactor_that_forgets_to_call_still_gets_the_steps_run() {
    let runtime = Runtime::builder(())
        .transactor(|_stretch| {})
        .register("inc", inc())
        .start()
        .unwrap();
    assert_eq!(
        runtime
            .invoke("inc", 1)
            .unwrap()
            .try_result()
            .unwrap()
            .unwrap(),
        2
    );
}

#[tokio::test(start_paused = true)]
async fn dropping_the_handle_does_not_cancel_the_instance() {
    let done = Arc::new(AtomicUsize::new(0));
    let runtime = Runtime::builder(done.clone()).start().unwrap();
    let p = pipeline!(|value: i32, done: &Arc<AtomicUsize>| {
        tokio::time::sleep(Duration::from_millis(50)).await;
        {
            done.fetch_add(1, Ordering::SeqCst);
        };
    });
    drop(runtime.invoke_pipeline(&p, 0).unwrap());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(done.load(Ordering::SeqCst), 1);
}

#[test]
fn a_waiting_step_without_any_executor_fails_with_a_clear_error() {
    assert!(tokio::runtime::Handle::try_current().is_err());
    let runtime = Runtime::builder(()).start().unwrap();
    let p = pipeline!(|value: i32, _ctx: &()| {
        value = std::future::pending::<i32>().await;
        rescue!(|error| {
            assert!(matches!(error, Error::NoExecutor));
            value = -1;
        });
    });
    let result = runtime
        .invoke_pipeline(&p, 0)
        .unwrap()
        .try_result()
        .unwrap();
    assert_eq!(result.unwrap(), -1);
}

#[test]
fn invocations_from_outside_tokio_run_on_the_configured_executor() {
    let tokio_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_time()
        .build()
        .unwrap();
    let runtime = Runtime::builder(())
        .executor(tokio_runtime.handle().clone())
        .start()
        .unwrap();
    let p = pipeline!(|value: i32, _ctx: &()| {
        tokio::task::yield_now().await;
        value = value + 1;
    });
    let handle = runtime.invoke_pipeline(&p, 1).unwrap();
    assert_eq!(tokio_runtime.block_on(handle).unwrap(), 2);
}

#[tokio::test(start_paused = true)]
async fn finally_may_wait_after_a_cancellation() {
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let runtime = Runtime::builder(log.clone()).start().unwrap();
    let p = pipeline!(|value: i32, log: &Arc<Mutex<Vec<String>>>| {
        std::future::pending::<()>().await;
        finally!(|error| {
            tokio::time::sleep(Duration::from_millis(20)).await;
            log.lock()
                .unwrap()
                .push(format!("cleaned up after: {}", error.unwrap()));
        });
    });
    let handle = runtime.invoke_pipeline(&p, 0).unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    runtime.stop();
    let started = tokio::time::Instant::now();
    assert!(handle.await.unwrap_err().is_cancelled());
    assert_eq!(started.elapsed(), Duration::from_millis(20));
    assert_eq!(
        *log.lock().unwrap(),
        ["cleaned up after: instance cancelled: the runtime stopped"]
    );
}

#[tokio::test(start_paused = true)]
async fn the_result_is_taken_once() {
    let runtime = Runtime::builder(()).start().unwrap();
    let mut handle = runtime.invoke_pipeline(&inc(), 1).unwrap();
    assert_eq!(handle.try_result().unwrap().unwrap(), 2);
    assert!(!handle.is_finished());
    assert!(matches!(handle.await, Err(Error::ResultTaken)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runtime_is_usable_from_many_threads() {
    let runtime = Runtime::builder(()).start().unwrap();
    let p = pipeline!(|value: u64, _ctx: &()| {
        tokio::task::yield_now().await;
        value = value * 2;
    });
    let mut threads = Vec::new();
    for t in 0..4_u64 {
        let runtime = runtime.clone();
        let p = p.clone();
        threads.push(tokio::spawn(async move {
            let mut sum = 0;
            for i in 0..100 {
                sum += runtime
                    .invoke_pipeline(&p, t * 1000 + i)
                    .unwrap()
                    .await
                    .unwrap();
            }
            sum
        }));
    }
    let mut total = 0;
    for thread in threads {
        total += thread.await.unwrap();
    }
    let expected: u64 = (0..4_u64)
        .flat_map(|t| (0..100).map(move |i| 2 * (t * 1000 + i)))
        .sum();
    assert_eq!(total, expected);
}
