//! Supervision and producers ([SEMANTICS 6]): the click-log scenario, backpressure,
//! intensity and give-up, strategies, restart types, backoff timings and stopping. All
//! under tokio's paused clock.
//!
//! [SEMANTICS 6]: pipewright::semantics#6-supervision-and-producers

mod support;

use std::future::Future;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pipewright::supervision::{
    source_fn, Child, ChildSpec, Failure, Producer, Restart, Strategy, Supervisor, SupervisorError,
    SupervisorHandle,
};
use pipewright::{Backoff, BoxFuture, EventKind, RestartPolicy, Runtime};
use tokio::sync::mpsc;
use tokio::time::{sleep, Instant};

#[path = "../examples/click_producer.rs"]
mod click_producer;

#[tokio::test(start_paused = true)]
async fn every_click_reaches_the_consumer_exactly_once_in_order_despite_failures() {
    let report = click_producer::run(10_000, 7).await;
    assert_eq!(report.received, 10_000);
    assert!(report.in_order, "in order, none twice, none missing");
    assert_eq!(report.per_kind.values().sum::<u64>(), 10_000);
    assert_eq!(report.failures_injected, 10, "about 1 read in 1,000 fails");
    assert_eq!(
        report.failures_reported.len(),
        10,
        "each failure reported once"
    );
    assert_eq!(report.restarts, 10);
    assert_eq!(report.users, 500, "every simulated user clicked");
    assert_eq!(
        report.failures_reported[0],
        "click-producer: read failed at offset 1010"
    );
}

#[tokio::test(start_paused = true)]
async fn a_producer_never_reads_more_than_the_channel_holds_ahead_of_the_consumer() {
    let consumed = Arc::new(AtomicU64::new(0));
    let max_ahead = Arc::new(AtomicU64::new(0));
    let (seen, ahead) = (consumed.clone(), max_ahead.clone());
    let source = source_fn(move |offset: u64| {
        // Items read so far (this one included) minus items consumed.
        let read_ahead = offset + 1 - seen.load(Ordering::SeqCst);
        ahead.fetch_max(read_ahead, Ordering::SeqCst);
        async move { Ok::<_, std::io::Error>((offset < 200).then_some(offset)) }
    });
    let (sender, mut receiver) = mpsc::channel(16);
    let runtime = Runtime::builder(()).start().unwrap();
    runtime
        .supervise(Supervisor::new("slow").child(
            ChildSpec::new("numbers", Producer::new(source, sender)).restart(Restart::Transient),
        ))
        .unwrap();
    while let Some(item) = receiver.recv().await {
        assert_eq!(item, consumed.load(Ordering::SeqCst));
        consumed.fetch_add(1, Ordering::SeqCst);
        sleep(Duration::from_millis(10)).await; // a slow consumer
    }
    assert_eq!(consumed.load(Ordering::SeqCst), 200);
    // At most 17 allowed (capacity 16 + the one being read); the producer reserves the
    // slot before it reads, so even the item being read already has its place: 16.
    assert_eq!(max_ahead.load(Ordering::SeqCst), 16);
}

/// A child that counts its starts and the virtual time of each; fails while `failures`
/// are left, then does `then`.
#[derive(Clone, Copy, PartialEq)]
enum Then {
    Exit,
    Wait,
}

fn counted(name: &str, starts: Arc<Mutex<Vec<u128>>>, failures: u32, then: Then) -> ChildSpec {
    let origin = Instant::now();
    let left = Arc::new(AtomicU32::new(failures));
    ChildSpec::from_fn(name.to_owned(), move || {
        starts.lock().unwrap().push(origin.elapsed().as_millis());
        let failing = left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        async move {
            if failing {
                return Err(Failure::new("work", "injected"));
            }
            if then == Then::Wait {
                std::future::pending::<()>().await;
            }
            Ok(())
        }
    })
}

fn starts() -> Arc<Mutex<Vec<u128>>> {
    Arc::default()
}

fn count(starts: &Arc<Mutex<Vec<u128>>>) -> usize {
    starts.lock().unwrap().len()
}

async fn run_strategy(strategy: Strategy) -> [usize; 3] {
    let (a, b, c) = (starts(), starts(), starts());
    let runtime = Runtime::builder(()).start().unwrap();
    let mut handle = runtime
        .supervise(
            Supervisor::new("group")
                .strategy(strategy)
                .child(counted("a", a.clone(), 0, Then::Wait))
                .child(counted("b", b.clone(), 1, Then::Wait))
                .child(counted("c", c.clone(), 0, Then::Wait)),
        )
        .unwrap();
    sleep(Duration::from_millis(10)).await;
    handle.stop();
    handle.await.unwrap();
    [count(&a), count(&b), count(&c)]
}

#[tokio::test(start_paused = true)]
async fn one_for_one_restarts_only_the_failed_child() {
    assert_eq!(run_strategy(Strategy::OneForOne).await, [1, 2, 1]);
}

#[tokio::test(start_paused = true)]
async fn one_for_all_restarts_every_child() {
    assert_eq!(run_strategy(Strategy::OneForAll).await, [2, 2, 2]);
}

#[tokio::test(start_paused = true)]
async fn rest_for_one_restarts_the_failed_child_and_those_after_it() {
    assert_eq!(run_strategy(Strategy::RestForOne).await, [1, 2, 2]);
}

#[tokio::test(start_paused = true)]
async fn restart_types_decide_which_exits_restart() {
    let (permanent, transient_ok, transient_failing, temporary) =
        (starts(), starts(), starts(), starts());
    let reported = Arc::new(AtomicU32::new(0));
    let count_reports = reported.clone();
    let runtime = Runtime::builder(())
        .error_reporter(move |_, _| {
            count_reports.fetch_add(1, Ordering::SeqCst);
        })
        .start()
        .unwrap();
    let permanent_child = {
        // Exits normally twice, then waits: restarted after each normal exit.
        let starts = permanent.clone();
        ChildSpec::from_fn("permanent", move || {
            let run = {
                let mut starts = starts.lock().unwrap();
                starts.push(0);
                starts.len()
            };
            async move {
                if run > 2 {
                    std::future::pending::<()>().await;
                }
                Ok(())
            }
        })
    };
    let mut handle = runtime
        .supervise(
            Supervisor::new("types")
                .policy(RestartPolicy::new(10, Duration::from_secs(1)).unwrap())
                .child(permanent_child)
                .child(
                    counted("transient-ok", transient_ok.clone(), 0, Then::Exit)
                        .restart(Restart::Transient),
                )
                .child(
                    counted(
                        "transient-failing",
                        transient_failing.clone(),
                        1,
                        Then::Exit,
                    )
                    .restart(Restart::Transient),
                )
                .child(
                    counted("temporary", temporary.clone(), 1, Then::Exit)
                        .restart(Restart::Temporary),
                ),
        )
        .unwrap();
    sleep(Duration::from_millis(10)).await;
    handle.stop();
    handle.await.unwrap();
    assert_eq!(count(&permanent), 3);
    assert_eq!(count(&transient_ok), 1);
    assert_eq!(count(&transient_failing), 2);
    assert_eq!(count(&temporary), 1);
    assert_eq!(reported.load(Ordering::SeqCst), 2, "both failures reported");
}

#[tokio::test(start_paused = true)]
async fn restarts_wait_their_backoff() {
    let times = starts();
    let runtime = Runtime::builder(()).start().unwrap();
    runtime
        .supervise(
            Supervisor::new("backoff")
                .policy(
                    RestartPolicy::new(10, Duration::from_secs(10))
                        .unwrap()
                        .with_backoff(
                            Backoff::exponential(
                                Duration::from_millis(100),
                                Duration::from_millis(300),
                            )
                            .unwrap(),
                        )
                        .unwrap(),
                )
                .child(counted("flaky", times.clone(), 4, Then::Exit).restart(Restart::Transient)),
        )
        .unwrap()
        .await
        .unwrap();
    assert_eq!(*times.lock().unwrap(), [0, 100, 300, 600, 900]);
}

#[tokio::test(start_paused = true)]
async fn the_backoff_starts_over_after_a_healthy_stretch_longer_than_the_period() {
    // A log daemon's flaky source: four quick failures, then 800 ms of healthy reading
    // (the policy's period is 300 ms) before the next failure, then a clean end.
    let times = starts();
    let origin = Instant::now();
    let run = Arc::new(AtomicU32::new(0));
    let child = {
        let times = times.clone();
        ChildSpec::from_fn("reader", move || {
            times.lock().unwrap().push(origin.elapsed().as_millis());
            let run = run.fetch_add(1, Ordering::SeqCst);
            async move {
                match run {
                    0..=3 => Err(Failure::new("read", "flaky")),
                    4 => {
                        sleep(Duration::from_millis(800)).await;
                        Err(Failure::new("read", "flaky again"))
                    }
                    _ => Ok(()),
                }
            }
        })
        .restart(Restart::Transient)
    };
    let backoff = Backoff::exponential(Duration::from_millis(10), Duration::from_secs(1)).unwrap();
    let policy = RestartPolicy::new(4, Duration::from_millis(300))
        .unwrap()
        .with_backoff(backoff)
        .unwrap();
    let runtime = Runtime::builder(()).start().unwrap();
    runtime
        .supervise(Supervisor::new("daemon").policy(policy).child(child))
        .unwrap()
        .await
        .unwrap();
    // Waits of 10, 20, 40 and 80 ms; after the healthy stretch, 10 ms again (it was 160:
    // the exponent used to be every restart since the supervisor began).
    assert_eq!(*times.lock().unwrap(), [0, 10, 30, 70, 150, 960]);
}

#[tokio::test(start_paused = true)]
async fn exceeding_the_intensity_gives_up_reports_it_and_closes_the_channels() {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let reported = Arc::new(Mutex::new(Vec::new()));
    let reports = reported.clone();
    let runtime = Runtime::builder(())
        .watcher(move |event| {
            let kind = match event.kind() {
                EventKind::ChildRestarted { restart } => format!("restarted {restart}"),
                EventKind::ChildStarted => "started".into(),
                EventKind::ChildFailed(_) => "failed".into(),
                EventKind::SupervisorGaveUp(_) => "gave up".into(),
                other => format!("{other:?}"),
            };
            sink.lock().unwrap().push(format!(
                "{} {kind} in {}",
                event.ident().name(),
                event.queue()
            ));
        })
        .error_reporter(move |ident, error| {
            reports
                .lock()
                .unwrap()
                .push(format!("{}: {error:#}", ident.name()));
        })
        .start()
        .unwrap();
    let (sender, mut receiver) = mpsc::channel::<u64>(4);
    let broken =
        source_fn(
            |offset: u64| async move { Err::<Option<u64>, _>(format!("disk error at {offset}")) },
        );
    let handle = runtime
        .supervise(
            Supervisor::new("fragile")
                .policy(RestartPolicy::new(2, Duration::from_secs(1)).unwrap())
                .child(ChildSpec::new("reader", Producer::new(broken, sender))),
        )
        .unwrap();
    assert_eq!(receiver.recv().await, None, "the consumer sees the end");
    let error = handle.await.unwrap_err();
    assert!(matches!(
        error,
        SupervisorError::GaveUp {
            max_restarts: 2,
            ..
        }
    ));
    assert_eq!(
        support::chain(&error),
        [
            "supervisor `fragile` gave up after 2 restarts within 1s",
            "read failed at offset 0",
            "disk error at 0"
        ]
    );
    assert_eq!(
        *events.lock().unwrap(),
        [
            "reader started in fragile",
            "reader failed in fragile",
            "reader started in fragile",
            "reader restarted 1 in fragile",
            "reader failed in fragile",
            "reader started in fragile",
            "reader restarted 2 in fragile",
            "reader failed in fragile",
            "fragile gave up in fragile",
        ]
    );
    let reported = reported.lock().unwrap();
    assert_eq!(
        reported.len(),
        4,
        "three failures and the give-up: {reported:?}"
    );
    assert_eq!(
        reported[0],
        "reader: read failed at offset 0: disk error at 0"
    );
    // What failed says so: the supervisor, not a step.
    assert_eq!(
        reported[3],
        "fragile: supervisor `fragile` gave up after 2 restarts within 1s: \
         read failed at offset 0: disk error at 0"
    );
}

#[tokio::test(start_paused = true)]
async fn stopping_a_supervisor_stops_its_children_and_the_consumer_sees_the_end() {
    let endless = source_fn(|offset: u64| async move { Ok::<_, std::io::Error>(Some(offset)) });
    let (sender, mut receiver) = mpsc::channel(8);
    let runtime = Runtime::builder(()).start().unwrap();
    let mut handle = runtime
        .supervise(Supervisor::new("endless").child(ChildSpec::new(
            "numbers",
            Producer::new(endless, sender).starting_at(100),
        )))
        .unwrap();
    assert_eq!(receiver.recv().await, Some(100));
    assert_eq!(receiver.recv().await, Some(101));
    handle.stop();
    handle.await.unwrap();
    let mut rest = Vec::new();
    while let Some(item) = receiver.recv().await {
        rest.push(item);
    }
    assert!(
        rest.len() <= 8,
        "only what was already in the channel: {rest:?}"
    );
    assert_eq!(rest.first(), Some(&102));
}

#[tokio::test(start_paused = true)]
async fn a_consumer_that_closes_the_channel_is_a_publish_failure() {
    let numbers = source_fn(|offset: u64| async move { Ok::<_, std::io::Error>(Some(offset)) });
    let (sender, receiver) = mpsc::channel(2);
    drop(receiver);
    let reported = Arc::new(Mutex::new(Vec::new()));
    let sink = reported.clone();
    let runtime = Runtime::builder(())
        .error_reporter(move |_, error| {
            if let Some(failure) = error.downcast_ref::<Failure>() {
                sink.lock().unwrap().push(failure.operation().to_owned());
            }
        })
        .start()
        .unwrap();
    let result = runtime
        .supervise(
            Supervisor::new("orphan")
                .policy(RestartPolicy::new(0, Duration::from_secs(1)).unwrap())
                .child(ChildSpec::new("numbers", Producer::new(numbers, sender))),
        )
        .unwrap()
        .await;
    assert!(result.is_err());
    assert_eq!(*reported.lock().unwrap(), ["publish"]);
}

#[tokio::test(start_paused = true)]
async fn a_child_that_panics_is_restarted_per_policy() {
    let runs = Arc::new(AtomicU32::new(0));
    let counter = runs.clone();
    let reported = Arc::new(Mutex::new(Vec::new()));
    let sink = reported.clone();
    let runtime = Runtime::builder(())
        .error_reporter(move |_, error| sink.lock().unwrap().push(format!("{error:#}")))
        .start()
        .unwrap();
    runtime
        .supervise(
            Supervisor::new("panicky").child(
                ChildSpec::from_fn("panicky", move || {
                    let run = counter.fetch_add(1, Ordering::SeqCst);
                    async move {
                        if run == 0 {
                            panic!("first run panics");
                        }
                        Ok(())
                    }
                })
                .restart(Restart::Transient),
            ),
        )
        .unwrap()
        .await
        .unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    assert_eq!(
        *reported.lock().unwrap(),
        ["run failed: step panicked: first run panics"]
    );
}

/// A runtime supervising a producer of 0, 1, 2, ... into a channel of 4.
fn endless() -> (Runtime<()>, SupervisorHandle, mpsc::Receiver<u64>) {
    let endless = source_fn(|offset: u64| async move { Ok::<_, std::io::Error>(Some(offset)) });
    let (sender, receiver) = mpsc::channel(4);
    let runtime = Runtime::builder(()).start().unwrap();
    let handle = runtime
        .supervise(
            Supervisor::new("endless")
                .child(ChildSpec::new("numbers", Producer::new(endless, sender))),
        )
        .unwrap();
    (runtime, handle, receiver)
}

#[tokio::test(start_paused = true)]
async fn stopping_the_runtime_stops_its_supervisors() {
    let (runtime, handle, mut receiver) = endless();
    assert_eq!(receiver.recv().await, Some(0));
    runtime.stop();
    handle.await.unwrap();
    while receiver.recv().await.is_some() {}
}

#[tokio::test(start_paused = true)]
async fn a_supervisor_goes_on_without_its_handle_until_the_runtime_stops() {
    let (runtime, handle, mut receiver) = endless();
    drop(handle);
    for expected in 0..100 {
        assert_eq!(receiver.recv().await, Some(expected));
    }
    runtime.stop();
    // The channel closes once the supervisor has stopped its child and dropped it.
    ended(async { while receiver.recv().await.is_some() {} }).await;
}

/// Awaits `future`, failing the test if it has not ended after an hour of (paused, so
/// virtual) time: a supervisor that hangs fails the test instead of hanging it.
async fn ended<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(3600), future)
        .await
        .expect("it never ended")
}

/// A runtime whose error reporter writes to `reports` and whose watcher writes the
/// supervision events to `events`, one line each.
fn recording(reports: &Arc<Mutex<Vec<String>>>, events: &Arc<Mutex<Vec<String>>>) -> Runtime<()> {
    let (reports, events) = (reports.clone(), events.clone());
    Runtime::builder(())
        .error_reporter(move |ident, error| {
            reports
                .lock()
                .unwrap()
                .push(format!("{}: {error:#}", ident.name()));
        })
        .watcher(move |event| {
            let kind = match event.kind() {
                EventKind::ChildStarted => "started".to_owned(),
                EventKind::ChildFailed(error) => format!("failed: {error:#}"),
                EventKind::ChildRestarted { restart } => format!("restarted {restart}"),
                EventKind::ChildExited => "exited".to_owned(),
                EventKind::SupervisorGaveUp(_) => "gave up".to_owned(),
                _ => return,
            };
            events
                .lock()
                .unwrap()
                .push(format!("{} {kind}", event.ident().name()));
        })
        .start()
        .unwrap()
}

/// A child whose `run` panics in its synchronous part, before it returns its future, the
/// first time; later runs wait until stopped.
struct PanicsBeforeItsFuture {
    runs: Arc<AtomicU32>,
}

impl Child for PanicsBeforeItsFuture {
    fn run(&mut self) -> BoxFuture<'_, Result<(), Failure>> {
        if self.runs.fetch_add(1, Ordering::SeqCst) == 0 {
            panic!("run panics before its future");
        }
        Box::pin(std::future::pending())
    }
}

#[tokio::test(start_paused = true)]
async fn a_child_whose_run_panics_before_returning_its_future_is_a_reported_failure_and_is_restarted(
) {
    let (reports, events) = (Arc::default(), Arc::default());
    let runtime = recording(&reports, &events);
    let runs = Arc::new(AtomicU32::new(0));
    let child = PanicsBeforeItsFuture { runs: runs.clone() };
    let mut handle = runtime
        .supervise(Supervisor::new("eager").child(ChildSpec::new("eager", child)))
        .unwrap();
    sleep(Duration::from_millis(10)).await;
    assert_eq!(runs.load(Ordering::SeqCst), 2, "restarted once, then waits");
    assert_eq!(
        *reports.lock().unwrap(),
        ["eager: run failed: step panicked: run panics before its future"]
    );
    assert_eq!(
        *events.lock().unwrap(),
        [
            "eager started",
            "eager failed: run failed: step panicked: run panics before its future",
            "eager started",
            "eager restarted 1",
        ]
    );
    handle.stop();
    ended(handle).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_from_fn_child_that_panics_before_building_its_future_counts_against_the_policy() {
    let (reports, events) = (Arc::default(), Arc::default());
    let runtime = recording(&reports, &events);
    let starts = Arc::new(AtomicU32::new(0));
    let counter = starts.clone();
    let doomed = ChildSpec::from_fn("doomed", move || {
        let start = counter.fetch_add(1, Ordering::SeqCst);
        if start < 100 {
            panic!("start {start} panics");
        }
        std::future::ready(Ok(()))
    });
    let handle = runtime
        .supervise(
            Supervisor::new("doomed")
                .policy(RestartPolicy::new(2, Duration::from_secs(1)).unwrap())
                .child(doomed),
        )
        .unwrap();
    let error = ended(handle).await.unwrap_err();
    let SupervisorError::GaveUp {
        supervisor,
        max_restarts,
        within,
        last_failure: Some(last_failure),
    } = &error
    else {
        panic!("expected GaveUp with a failure, got {error:?}");
    };
    assert_eq!(
        (supervisor.as_str(), *max_restarts, *within),
        ("doomed", 2, Duration::from_secs(1))
    );
    assert_eq!(last_failure.operation(), "run");
    assert!(last_failure.error().is_panic());
    assert_eq!(
        support::chain(&error),
        [
            "supervisor `doomed` gave up after 2 restarts within 1s",
            "run failed",
            "step panicked: start 2 panics"
        ]
    );
    assert_eq!(
        starts.load(Ordering::SeqCst),
        3,
        "the first start and 2 restarts"
    );
    assert_eq!(
        reports.lock().unwrap().len(),
        4,
        "3 failures and the give-up"
    );
    assert_eq!(
        events.lock().unwrap().last().map(String::as_str),
        Some("doomed gave up")
    );
}

/// A supervisor with a temporary child that panics before building its future (so it is
/// not restarted) and a child that waits until stopped.
fn supervisor_with_a_child_that_panicked_before_its_future() -> Supervisor {
    Supervisor::new("half-broken")
        .child(
            ChildSpec::from_fn("broken", || -> std::future::Ready<Result<(), Failure>> {
                panic!("panics before its future")
            })
            .restart(Restart::Temporary),
        )
        .child(ChildSpec::from_fn("waiting", std::future::pending))
}

/// Supervises the child that panicked before its future, stops it with `stop`, and
/// checks that the supervisor ends.
async fn stopped_after_an_early_panic(stop: impl FnOnce(&Runtime<()>, &mut SupervisorHandle)) {
    let runtime = Runtime::builder(()).start().unwrap();
    let mut handle = runtime
        .supervise(supervisor_with_a_child_that_panicked_before_its_future())
        .unwrap();
    sleep(Duration::from_millis(10)).await;
    stop(&runtime, &mut handle);
    ended(handle).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn stopping_a_supervisor_whose_child_panicked_before_returning_its_future_returns() {
    stopped_after_an_early_panic(|_, handle| handle.stop()).await;
}

#[tokio::test(start_paused = true)]
async fn stopping_the_runtime_ends_a_supervisor_whose_child_panicked_before_returning_its_future() {
    stopped_after_an_early_panic(|runtime, _| runtime.stop()).await;
}

#[tokio::test(start_paused = true)]
async fn a_supervisor_with_a_one_nanosecond_period_gives_up_after_its_max_restarts() {
    let times = starts();
    let runtime = Runtime::builder(()).start().unwrap();
    let handle = runtime
        .supervise(
            Supervisor::new("hasty")
                .policy(RestartPolicy::new(3, Duration::from_nanos(1)).unwrap())
                .child(counted("failing", times.clone(), u32::MAX, Then::Exit)),
        )
        .unwrap();
    // The child fails at once and the paused clock does not move between restarts: all
    // of them are within the period.
    let error = ended(handle).await.unwrap_err();
    assert!(matches!(
        error,
        SupervisorError::GaveUp {
            max_restarts: 3,
            ..
        }
    ));
    assert_eq!(count(&times), 4, "the first start and 3 restarts");
}
