//! Every way to misuse the public API at run time, each with its typed error and
//! the message that says what went wrong and how to fix it.

use std::time::Duration;

use pipewright::supervision::{ChildSpec, SuperviseError, Supervisor};
use pipewright::{
    pipeline, CancelError, Error, InvokeError, Queue, Runtime, StartError, SubscribeError,
};

fn inc() -> pipewright::Pipeline<u32, ()> {
    pipeline!(|value: u32, _ctx: &()| {
        value = value + 1;
    })
}

#[test]
fn invoking_an_unknown_name() {
    let runtime = Runtime::builder(()).start().unwrap();
    let error = runtime.invoke("missing", 1_u32).unwrap_err();
    assert_eq!(
        error,
        InvokeError::UnknownPipeline {
            name: "missing".into()
        }
    );
    assert_eq!(format!("{error:#}"), "no pipeline named `missing`");
}

#[test]
fn invoking_with_the_wrong_argument_type() {
    let runtime = Runtime::builder(()).register("inc", inc()).start().unwrap();
    let error = runtime.invoke("inc", 1_i64).unwrap_err();
    assert!(matches!(
        *error,
        InvokeError::WrongArgumentType {
            expected: "u32",
            found: "i64",
            ..
        }
    ));
    assert_eq!(
        format!("{error:#}"),
        "pipeline `inc` takes `u32`, not `i64`"
    );
}

#[test]
fn invoking_or_supervising_after_stop() {
    let runtime = Runtime::builder(()).register("inc", inc()).start().unwrap();
    runtime.stop();
    let error = runtime.invoke("inc", 1_u32).unwrap_err();
    assert_eq!(error, InvokeError::Stopped);
    assert_eq!(format!("{error:#}"), "runtime stopped");
    assert_eq!(
        runtime.invoke_pipeline(&inc(), 1).unwrap_err(),
        InvokeError::Stopped
    );
    let supervisor = Supervisor::new("late").child(ChildSpec::from_fn("x", || async { Ok(()) }));
    assert_eq!(
        runtime.supervise(supervisor).unwrap_err(),
        SuperviseError::Stopped
    );
}

#[test]
fn supervising_without_any_tokio_runtime() {
    let runtime = Runtime::builder(()).start().unwrap();
    let supervisor = Supervisor::new("s").child(ChildSpec::from_fn("x", || async { Ok(()) }));
    let error = runtime.supervise(supervisor).unwrap_err();
    assert_eq!(error, SuperviseError::NoExecutor);
    assert_eq!(format!("{error:#}"), "no tokio runtime available");
}

#[test]
fn registering_two_pipelines_under_one_name() {
    let error = Runtime::builder(())
        .register("inc", inc())
        .register("inc", inc())
        .start()
        .unwrap_err();
    assert_eq!(error, StartError::DuplicateName { name: "inc".into() });
    assert_eq!(format!("{error:#}"), "two pipelines named `inc`");
}

#[test]
fn sharing_a_queue_with_another_configuration() {
    let error = Runtime::builder(())
        .register("a", inc().queue("q").dropping())
        .register("b", inc().queue("q"))
        .start()
        .unwrap_err();
    assert!(matches!(
        error,
        StartError::Queue(InvokeError::QueueMismatch { .. })
    ));
    assert_eq!(
        format!("{error:#}"),
        "queue `q` is dropping(max 1) (set by `a`), not unrestricted (asked by `b`)"
    );
    // Only knowable at invoke: two unregistered pipelines.
    let runtime = Runtime::builder(()).start().unwrap();
    runtime
        .invoke_pipeline(&inc().queue("late").enqueued(), 1)
        .unwrap();
    let error = runtime
        .invoke_pipeline(&inc().queue("late").restartable(), 1)
        .unwrap_err();
    assert!(matches!(*error, InvokeError::QueueMismatch { .. }));
}

#[test]
fn a_queue_that_could_never_run_anything() {
    let error = Runtime::builder(())
        .register("never", inc().restartable().max(0))
        .start()
        .unwrap_err();
    assert_eq!(
        format!("{error:#}"),
        "queue `never` cannot use restartable(max 0): max is 0, nothing could run"
    );
}

#[test]
fn a_use_existing_queue_for_a_pipeline_that_cannot_compare_arguments() {
    let runtime = Runtime::builder(()).start().unwrap();
    let error = runtime
        .invoke_pipeline(&inc().in_queue(&Queue::new("shared").use_existing()), 1)
        .unwrap_err();
    assert!(matches!(*error, InvokeError::InvalidConcurrency { .. }));
    assert_eq!(
        format!("{error:#}"),
        "queue `shared` cannot use unrestricted + use_existing: arguments cannot be compared"
    );
}

#[tokio::test(start_paused = true)]
async fn cancelling_an_unknown_finished_or_foreign_ident() {
    let runtime = Runtime::builder(()).start().unwrap();
    let done = runtime.invoke_pipeline(&inc(), 1).unwrap();
    let error = runtime.cancel(done.ident()).unwrap_err();
    assert_eq!(
        error,
        CancelError::NotLive {
            ident: done.ident().to_string()
        }
    );
    assert_eq!(
        format!("{error:#}"),
        format!("no live instance `{}`", done.ident())
    );
    assert!(!done.cancel());
    let other = Runtime::builder(()).start().unwrap();
    let forever = pipeline!(|value: u32, _ctx: &()| {
        std::future::pending::<()>().await;
    });
    let foreign = other.invoke_pipeline(&forever, 1).unwrap();
    assert!(runtime.cancel(foreign.ident()).is_err());
    assert_eq!(runtime.cancel_all([foreign.ident(), done.ident()]), 0);
}

#[tokio::test(start_paused = true)]
async fn taking_a_result_twice() {
    let runtime = Runtime::builder(()).start().unwrap();
    let slow = pipeline!(|value: u32, _ctx: &()| {
        tokio::time::sleep(Duration::from_millis(10)).await;
    });
    let mut handle = runtime.invoke_pipeline(&slow, 1).unwrap();
    assert_eq!((&mut handle).await.unwrap(), 1);
    let error = (&mut handle).await.unwrap_err();
    assert!(matches!(error, Error::ResultTaken));
    assert_eq!(format!("{error:#}"), "result already taken");
    assert!(handle.try_result().is_none());
}

#[test]
fn waiting_without_any_tokio_runtime() {
    let runtime = Runtime::builder(()).start().unwrap();
    let waits = pipeline!(|value: u32, _ctx: &()| {
        std::future::pending::<()>().await;
    });
    let error = runtime
        .invoke_pipeline(&waits, 1)
        .unwrap()
        .try_result()
        .unwrap()
        .unwrap_err();
    assert!(matches!(error, Error::NoExecutor));
    assert_eq!(format!("{error:#}"), "no tokio runtime to wait on");
    // An instance that would have to wait for a slot fails the same way.
    let queue = pipeline!(|value: u32, _ctx: &()| {
        tokio::task::yield_now().await;
    })
    .enqueued();
    let first = runtime.invoke_pipeline(&queue, 1).unwrap().try_result();
    assert!(
        first.is_some(),
        "without an executor nothing is left running"
    );
}

#[test]
fn subscribing_to_events_without_the_opt_in_or_with_an_impossible_capacity() {
    let runtime = Runtime::builder(()).register("inc", inc()).start().unwrap();
    let error = runtime.events().unwrap_err();
    assert_eq!(error, SubscribeError::NotEnabled);
    assert_eq!(error.to_string(), "event streams are not enabled");
    // A watcher records events, but only `event_stream` makes them a stream.
    let watched = Runtime::builder(()).watcher(|_| {}).start().unwrap();
    assert_eq!(watched.events().unwrap_err(), SubscribeError::NotEnabled);
    let error = Runtime::builder(()).event_stream(0).start().unwrap_err();
    assert_eq!(error, StartError::EventCapacity { capacity: 0 });
    assert_eq!(
        error.to_string(),
        "event stream capacity 0 is outside 1..=65536"
    );
}
