//! An argument that is itself a future (`Runtime::invoke_future`): the invocation joins
//! its queue at once and waits for the argument as its first suspension.

mod support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pipewright::introspection::InstanceState;
use pipewright::{pipeline, BoxError, CancelReason, Error, InvokeError, Refused, Runtime};
use support::{entries, logging_runtime, push, Log};
use tokio::time::{sleep, Instant};

/// An argument ready after `ms`, that counts its drops (a dropped argument stopped).
fn later(
    value: u32,
    ms: u64,
    dropped: &Arc<AtomicU32>,
) -> impl std::future::Future<Output = Result<u32, BoxError>> {
    struct OnDrop(Arc<AtomicU32>);
    impl Drop for OnDrop {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let guard = OnDrop(dropped.clone());
    async move {
        sleep(Duration::from_millis(ms)).await;
        drop(guard);
        Ok(value)
    }
}

fn logged(log_name: &'static str) -> pipewright::Pipeline<u32, Log> {
    pipeline!(|value: u32, log: &Log| {
        push(log, format!("{log_name} {value} at {:?}", Instant::now()));
        value = value * 10;
        finally!(|_error| {
            push(log, format!("finally {value}"));
        });
    })
}

#[tokio::test(start_paused = true)]
async fn an_invocation_joins_at_once_and_keeps_its_place_in_arrival_order() {
    let (runtime, log) = logging_runtime();
    let start = Instant::now();
    let save = logged("save").enqueued();
    let dropped = Arc::default();
    let first = runtime
        .invoke_pipeline_future(&save, later(1, 100, &dropped))
        .unwrap();
    let second = runtime.invoke_pipeline(&save, 2).unwrap();
    // The first holds the slot while its argument is on its way; the second waits.
    let name = first.ident().name().to_owned();
    let queue = runtime.queue_info(&name).unwrap();
    assert_eq!((queue.running(), queue.waiting()), (1, 1));
    let info = runtime.instance(first.ident()).unwrap();
    assert_eq!(info.state(), InstanceState::Suspended);
    assert_eq!(info.argument().downcast_ref::<u32>(), None);
    assert_eq!(first.argument(), None);
    assert_eq!(first.await.unwrap(), 10);
    assert_eq!(second.await.unwrap(), 20);
    let at_100 = format!("{:?}", start + Duration::from_millis(100));
    assert_eq!(
        entries(&log),
        [
            format!("save 1 at {at_100}"),
            "finally 10".to_owned(),
            format!("save 2 at {at_100}"),
            "finally 20".to_owned()
        ]
    );
    assert_eq!(runtime.live_counts().0, 0);
}

#[tokio::test(start_paused = true)]
async fn a_registered_pipeline_gets_its_argument_and_shows_it_once_known() {
    let runtime = Runtime::builder(())
        .register(
            "double",
            pipeline!(|value: u32, _ctx: &()| {
                value = value * 2;
            }),
        )
        .start()
        .unwrap();
    let dropped = Arc::default();
    let mut handle = runtime
        .invoke_future("double", later(21, 10, &dropped))
        .unwrap();
    assert!(handle.try_result().is_none());
    sleep(Duration::from_millis(10)).await;
    assert_eq!(handle.await.unwrap(), 42);
    assert_eq!(dropped.load(Ordering::SeqCst), 1);
    assert!(matches!(
        runtime
            .invoke_future::<u64, _, BoxError>("double", async { Ok(1_u64) })
            .map_err(Refused::into_error),
        Err(InvokeError::WrongArgumentType { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn behaviours_act_on_an_invocation_whose_argument_is_pending() {
    let (runtime, log) = logging_runtime();
    let dropped = Arc::default();
    // Restartable: the newer invocation cancels the pending one, whose argument stops.
    let search = logged("search").restartable().queue("search");
    let stale = runtime
        .invoke_pipeline_future(&search, later(1, 100, &dropped))
        .unwrap();
    let fresh = runtime.invoke_pipeline(&search, 2).unwrap();
    assert!(matches!(
        stale.await,
        Err(Error::Cancelled {
            reason: CancelReason::Replaced,
            ..
        })
    ));
    assert_eq!(dropped.load(Ordering::SeqCst), 1);
    assert_eq!(fresh.await.unwrap(), 20);
    // Dropping: the pending one holds the slot, the next is refused at once.
    let click = logged("click").dropping().queue("click");
    let held = runtime
        .invoke_pipeline_future(&click, later(3, 100, &dropped))
        .unwrap();
    let mut refused = runtime.invoke_pipeline(&click, 4).unwrap();
    assert!(matches!(refused.try_result(), Some(Err(Error::Dropped))));
    assert_eq!(held.await.unwrap(), 30);
    // Keep-latest: a pending one waiting for the slot is replaced by a newer one.
    let refresh = logged("refresh").keep_latest().queue("refresh");
    let running = runtime
        .invoke_pipeline_future(&refresh, later(5, 50, &dropped))
        .unwrap();
    let replaced = runtime
        .invoke_pipeline_future(&refresh, later(6, 10, &dropped))
        .unwrap();
    let latest = runtime.invoke_pipeline(&refresh, 7).unwrap();
    assert!(matches!(
        replaced.await,
        Err(Error::Cancelled {
            reason: CancelReason::Replaced,
            ..
        })
    ));
    assert_eq!(running.await.unwrap(), 50);
    assert_eq!(latest.await.unwrap(), 70);
    // No step ran for the cancelled ones: no `finally!` either.
    assert_eq!(
        entries(&log)
            .iter()
            .filter(|line| line.starts_with("finally"))
            .count(),
        4
    );
    assert_eq!(runtime.live_counts().0, 0);
}

#[tokio::test(start_paused = true)]
async fn an_argument_that_fails_or_panics_fails_the_invocation_and_frees_the_slot() {
    let (runtime, log) = logging_runtime();
    let save = logged("save").enqueued();
    let failing = runtime
        .invoke_pipeline_future(&save, async {
            sleep(Duration::from_millis(10)).await;
            Err::<u32, BoxError>("the upload broke".into())
        })
        .unwrap();
    let panicking = runtime
        .invoke_pipeline_future(&save, async {
            sleep(Duration::from_millis(10)).await;
            panic!("argument exploded");
            #[allow(unreachable_code)]
            Ok::<u32, BoxError>(0)
        })
        .unwrap();
    let next = runtime.invoke_pipeline(&save, 9).unwrap();
    let name = next.ident().name().to_owned();
    let error = failing.await.unwrap_err();
    assert_eq!(format!("{error:#}"), "step failed: the upload broke");
    let error = panicking.await.unwrap_err();
    assert!(
        format!("{error:#}").contains("argument exploded"),
        "{error:#}"
    );
    assert_eq!(next.await.unwrap(), 90);
    let lines = entries(&log);
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert!(lines[0].starts_with(&format!("reported {name} step failed: the upload broke")));
    assert!(
        lines[1].starts_with(&format!("reported {name}")) && lines[1].contains("argument exploded")
    );
    assert!(lines[2].starts_with("save 9"));
    assert_eq!(lines[3], "finally 90");
    let queue = runtime.queue_info(&name).unwrap();
    assert_eq!(queue.performed(), 3);
    assert_eq!(runtime.live_counts().0, 0);
}

#[tokio::test(start_paused = true)]
async fn cancelling_or_stopping_drops_the_pending_argument() {
    let (runtime, _log) = logging_runtime();
    let dropped = Arc::default();
    let p = logged("p");
    let cancelled = runtime
        .invoke_pipeline_future(&p, later(1, 100, &dropped))
        .unwrap();
    assert!(cancelled.cancel());
    assert!(matches!(
        cancelled.await,
        Err(Error::Cancelled {
            reason: CancelReason::Requested,
            ..
        })
    ));
    assert_eq!(dropped.load(Ordering::SeqCst), 1);
    let stopped = runtime
        .invoke_pipeline_future(&p, later(2, 100, &dropped))
        .unwrap();
    runtime.stop();
    assert!(matches!(
        stopped.await,
        Err(Error::Cancelled {
            reason: CancelReason::Stopped,
            ..
        })
    ));
    assert_eq!(dropped.load(Ordering::SeqCst), 2);
    assert_eq!(runtime.live_counts().0, 0);
    let refused = runtime
        .invoke_pipeline_future(&p, later(3, 1, &dropped))
        .unwrap_err();
    assert_eq!(refused, InvokeError::Stopped);
    // The future comes back, never polled: it still does what it was made to.
    assert_eq!(refused.into_argument().await.unwrap(), 3);
}

#[test]
fn what_needs_the_argument_at_once_is_refused() {
    let runtime = Runtime::builder(()).start().unwrap();
    let per_key = pipeline!(|value: u32, _ctx: &()| {
        value = value;
    })
    .queue_by(|value: &u32| value.to_string());
    let shared = pipeline!(|value: u32, _ctx: &()| {
        value = value;
    })
    .use_existing();
    let tokio = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let _inside = tokio.enter();
    for (pipeline, needs) in [(per_key, "a queue per key"), (shared, "use_existing")] {
        let invoked = runtime.invoke_pipeline_future(&pipeline, async { Ok::<_, BoxError>(1_u32) });
        match invoked.map_err(Refused::into_error) {
            Err(InvokeError::ArgumentNeeded { needs: found, .. }) => assert_eq!(found, needs),
            other => panic!("expected ArgumentNeeded, got {:?}", other.map(|_| ())),
        }
    }
}

#[test]
fn outside_a_tokio_runtime_nothing_can_wait_for_the_argument() {
    let runtime = Runtime::builder(()).start().unwrap();
    let p = pipeline!(|value: u32, _ctx: &()| {
        value = value;
    });
    let refused = runtime
        .invoke_pipeline_future(&p, async { Ok::<_, BoxError>(1_u32) })
        .unwrap_err();
    assert_eq!(refused, InvokeError::NoExecutor);
}
