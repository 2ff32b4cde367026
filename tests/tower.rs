//! The `tower` feature (enabled for the test suite): a registered pipeline as a
//! `tower::Service`. Readiness reflects a full dropping queue (and nothing else), wakes
//! its task when a slot frees or the runtime stops, and errors keep a refusal to invoke
//! apart from the instance's own error. Paused clock throughout.

use std::time::Duration;

use futures::FutureExt;
use pipewright::service::{PipelineService, ServiceError};
use pipewright::{pipeline, Error, InvokeError, Pipeline, Runtime};
use tokio::time::{sleep, Instant};
use tower::load_shed::error::Overloaded;
use tower::load_shed::LoadShed;
use tower::{Service, ServiceExt};

const WORK: Duration = Duration::from_millis(100);

/// A behaviour's name, and how a pipeline is given it.
type Configure = (&'static str, fn(Pipeline<u32, ()>) -> Pipeline<u32, ()>);

/// Doubles its value after `WORK`.
fn slow_double() -> Pipeline<u32, ()> {
    pipeline!(|value: u32, _ctx: &()| {
        sleep(WORK).await;
        value = value * 2;
    })
}

fn service_of(pipeline: Pipeline<u32, ()>) -> (Runtime<()>, PipelineService<u32, ()>) {
    let runtime = Runtime::builder(())
        .register("p", pipeline)
        .start()
        .unwrap();
    let service = runtime.handle::<u32>("p").unwrap().into_service();
    (runtime, service)
}

/// Awaits `future`, failing instead of hanging if it is never woken: with the clock
/// paused and nothing else to do, time jumps to the deadline.
async fn woken<F: std::future::Future>(future: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(3600), future)
        .await
        .expect("never woken")
}

/// Lets spawned tasks run until they wait on something.
async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn every_behaviour_answers_through_ready_and_oneshot() {
    let behaviours: [Configure; 6] = [
        ("unrestricted", |p| p),
        ("restartable", Pipeline::restartable),
        ("dropping", Pipeline::dropping),
        ("enqueued", Pipeline::enqueued),
        ("keep-latest", Pipeline::keep_latest),
        ("use-existing", Pipeline::use_existing),
    ];
    for (name, configure) in behaviours {
        let (_runtime, mut service) = service_of(configure(slow_double()));
        let value = service.ready().await.unwrap().call(4).await;
        assert_eq!(value.unwrap(), 8, "{name}: ready + call");
        assert_eq!(service.oneshot(5).await.unwrap(), 10, "{name}: oneshot");
    }
    // A pipeline that never waits answers in `call` itself.
    let (_runtime, service) = service_of(pipeline!(|value: u32, _ctx: &()| {
        value = value + 1;
    }));
    assert_eq!(service.oneshot(1).now_or_never().unwrap().unwrap(), 2);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn only_a_full_dropping_queue_is_not_ready() {
    let full_but_never_refusing: [Configure; 4] = [
        ("restartable", Pipeline::restartable),
        ("enqueued", Pipeline::enqueued),
        ("keep-latest", Pipeline::keep_latest),
        ("dropping use-existing", |p| p.dropping().use_existing()),
    ];
    for (name, configure) in full_but_never_refusing {
        let (runtime, mut service) = service_of(configure(slow_double()));
        let running = runtime.invoke("p", 1_u32).unwrap();
        assert_eq!(
            runtime.queue_info("p").unwrap().running(),
            1,
            "{name}: full"
        );
        assert!(
            service.ready().now_or_never().is_some(),
            "{name}: ready though full"
        );
        drop(running);
    }
    let (runtime, mut service) = service_of(slow_double().dropping());
    let _running = runtime.invoke("p", 1_u32).unwrap();
    assert!(service.ready().now_or_never().is_none(), "dropping: full");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_full_dropping_queue_becomes_ready_exactly_when_its_instance_ends() {
    let (runtime, service) = service_of(slow_double().dropping().max(2));
    let start = Instant::now();
    let first = runtime.invoke("p", 1_u32).unwrap();
    sleep(Duration::from_millis(30)).await;
    let second = runtime.invoke("p", 2_u32).unwrap();
    let waiter = tokio::spawn({
        let mut service = service.clone();
        async move {
            service.ready().await.unwrap();
            Instant::now()
        }
    });
    settle().await;
    assert!(!waiter.is_finished(), "both slots held: not ready");
    // The first instance ends at `WORK`, freeing a slot: the waiter is ready then.
    assert_eq!(woken(waiter).await.unwrap() - start, WORK);
    assert_eq!(first.await.unwrap(), 2);
    assert_eq!(runtime.queue_info("p").unwrap().running(), 1);
    assert_eq!(second.await.unwrap(), 4);
    assert_eq!(Instant::now() - start, WORK + Duration::from_millis(30));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_slot_freed_by_a_cancellation_or_a_quick_run_wakes_the_waiter() {
    // Cancelled: the slot is free at once, long before the instance would have ended.
    let (runtime, service) = service_of(slow_double().dropping());
    let running = runtime.invoke("p", 1_u32).unwrap();
    let waiter = tokio::spawn({
        let mut service = service.clone();
        async move {
            service.ready().await.unwrap();
        }
    });
    settle().await;
    assert!(!waiter.is_finished());
    let start = Instant::now();
    assert!(running.cancel());
    woken(waiter).await.unwrap();
    assert_eq!(
        Instant::now(),
        start,
        "woken by the cancellation, not by time"
    );

    // A pipeline that never waits holds its slot only inside `invoke`: always free after.
    let (_runtime, mut service) = service_of(
        pipeline!(|value: u32, _ctx: &()| {
            value = value + 1;
        })
        .dropping(),
    );
    for value in 0..3 {
        let ready = service.ready().now_or_never().unwrap().unwrap();
        assert_eq!(
            ready.call(value).now_or_never().unwrap().unwrap(),
            value + 1
        );
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn load_shed_refuses_at_once_while_the_dropping_queue_is_full() {
    let (_runtime, service) = service_of(slow_double().dropping());
    let service = LoadShed::new(service);
    let start = Instant::now();
    let first = tokio::spawn(service.clone().oneshot(3));
    settle().await;
    let refused = service
        .clone()
        .oneshot(4)
        .now_or_never()
        .expect("refused without waiting")
        .unwrap_err();
    assert!(refused.is::<Overloaded>(), "{refused}");
    assert_eq!(first.await.unwrap().unwrap(), 6);
    assert_eq!(Instant::now() - start, WORK);
    assert_eq!(service.oneshot(5).await.unwrap(), 10);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_stopped_runtime_fails_poll_ready_and_call() {
    let (runtime, mut service) = service_of(slow_double());
    runtime.stop();
    let error = service.ready().await.unwrap_err();
    assert!(matches!(
        &error,
        ServiceError::Invoke {
            pipeline,
            source: InvokeError::Stopped,
        } if pipeline == "p"
    ));
    assert_eq!(error.to_string(), "could not invoke pipeline `p`");
    // Called without asking first: the same refusal, from the future.
    let error = service.call(1).await.unwrap_err();
    assert!(matches!(
        error,
        ServiceError::Invoke {
            source: InvokeError::Stopped,
            ..
        }
    ));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn stopping_wakes_a_caller_that_waits_for_room() {
    // The running instance is not cancelled by `stop`: no slot frees, yet the waiter
    // learns the runtime stopped.
    let (runtime, service) = service_of(slow_double().dropping().cancel_on_shutdown(false));
    let running = runtime.invoke("p", 1_u32).unwrap();
    let waiter = tokio::spawn({
        let mut service = service.clone();
        async move { service.ready().await.map(|_| ()) }
    });
    settle().await;
    assert!(!waiter.is_finished());
    let start = Instant::now();
    runtime.stop();
    let error = woken(waiter).await.unwrap().unwrap_err();
    assert!(matches!(
        error,
        ServiceError::Invoke {
            source: InvokeError::Stopped,
            ..
        }
    ));
    assert_eq!(Instant::now(), start);
    assert_eq!(running.await.unwrap(), 2, "it finished normally");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn errors_keep_the_instance_error_as_their_source() {
    let failing = pipeline!(|value: u32, _ctx: &()| {
        sleep(WORK).await;
        value = Err::<u32, _>(format!("{value} rows missing"));
    });
    let (_runtime, service) = service_of(failing);
    let error = service.oneshot(3).await.unwrap_err();
    let ServiceError::Instance { instance, source } = &error else {
        panic!("not an instance error: {error:?}");
    };
    assert_eq!(instance.name(), "p");
    assert!(source.is_failed());
    assert_eq!(source.message(), "3 rows missing");
    assert_eq!(
        error.to_string(),
        format!("instance `{instance}` ended without a value")
    );
    let source = std::error::Error::source(&error).unwrap();
    assert_eq!(source.to_string(), "step failed");
    assert!(error.instance_error().is_some_and(Error::is_failed));
    assert!(!error.is_dropped());

    // Cancelled through the invocation the future holds.
    let (_runtime, mut service) = service_of(slow_double());
    let future = service.call(1);
    assert!(future.invocation().unwrap().cancel());
    let error = future.await.unwrap_err();
    assert!(error.instance_error().is_some_and(Error::is_cancelled));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn readiness_reserves_nothing_a_call_that_finds_no_room_is_dropped() {
    let (_runtime, service) = service_of(slow_double().dropping());
    let (mut first, mut second) = (service.clone(), service);
    first.ready().await.unwrap();
    second.ready().await.unwrap();
    let running = first.call(1);
    let error = second.call(2).await.unwrap_err();
    assert!(error.is_dropped(), "{error:?}");
    assert!(matches!(
        error,
        ServiceError::Instance {
            source: Error::Dropped,
            ..
        }
    ));
    assert_eq!(running.await.unwrap(), 2);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_task_that_waits_is_woken_however_often_others_polled_before() {
    // Polled again and again while full (with wakers that would wake nothing), the task
    // that then waits is still woken when the slot frees.
    let (runtime, mut service) = service_of(slow_double().dropping());
    let running = runtime.invoke("p", 1_u32).unwrap();
    let waker = futures::task::noop_waker();
    let mut cx = std::task::Context::from_waker(&waker);
    for _ in 0..1000 {
        assert!(service.poll_ready(&mut cx).is_pending());
    }
    let start = Instant::now();
    woken(service.ready()).await.unwrap();
    assert_eq!(Instant::now() - start, WORK);
    assert_eq!(running.await.unwrap(), 2);
}
