//! Supervision and producers (SEMANTICS 6, issue 4): the click-log scenario, backpressure,
//! intensity and give-up, strategies, restart types, backoff timings and stopping. All
//! under tokio's paused clock.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pipelines::{
    source_fn, Backoff, BoxError, ChildSpec, EventKind, Failure, Producer, Restart, RestartPolicy,
    Runtime, Source, Strategy, Supervisor, SupervisorError,
};
use tokio::sync::mpsc;
use tokio::time::{sleep, Instant};

/// A seeded xorshift64*: deterministic "random" numbers for the simulated log.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    AddToCart,
    Shipping,
    Payment,
}

#[derive(Debug, Clone)]
struct Click {
    sequence: u64,
    user: u64,
    kind: Kind,
}

#[derive(Debug)]
enum LogError {
    SessionTimeout { offset: u64 },
    InvalidOffset { offset: u64 },
}

impl std::fmt::Display for LogError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LogError::SessionTimeout { offset } => write!(f, "session timeout at {offset}"),
            LogError::InvalidOffset { offset } => write!(f, "invalid offset {offset}"),
        }
    }
}

impl std::error::Error for LogError {}

/// The seed's append-only log client: `take(offset)`, a simulated session timeout on
/// about 1 read in 1,000, an invalid-offset error past the end.
struct ClickLog {
    clicks: Vec<Click>,
    random: Random,
    injected: Arc<AtomicU32>,
}

impl ClickLog {
    fn new(count: u64, seed: u64, injected: Arc<AtomicU32>) -> Self {
        let mut random = Random(seed);
        let kinds = [Kind::AddToCart, Kind::Shipping, Kind::Payment];
        let clicks = (0..count)
            .map(|sequence| Click {
                sequence,
                user: random.next() % 500,
                kind: kinds[(random.next() % 3) as usize],
            })
            .collect();
        ClickLog {
            clicks,
            random,
            injected,
        }
    }

    fn take(&mut self, offset: u64) -> Result<Click, LogError> {
        if self.random.next() % 1000 == 0 {
            self.injected.fetch_add(1, Ordering::SeqCst);
            return Err(LogError::SessionTimeout { offset });
        }
        self.clicks
            .get(offset as usize)
            .cloned()
            .ok_or(LogError::InvalidOffset { offset })
    }
}

impl Source for ClickLog {
    type Item = Click;

    async fn read(&mut self, offset: u64) -> Result<Option<Click>, BoxError> {
        match self.take(offset) {
            Ok(click) => Ok(Some(click)),
            // Past the end of the log: all was read.
            Err(LogError::InvalidOffset { .. }) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn every_click_reaches_the_consumer_exactly_once_in_order_despite_failures() {
    let injected = Arc::new(AtomicU32::new(0));
    let reported = Arc::new(Mutex::new(Vec::new()));
    let sink = reported.clone();
    let runtime = Runtime::builder(())
        .error_reporter(move |ident, error| {
            let failure = error.downcast_ref::<Failure>().expect("a tagged failure");
            sink.lock()
                .unwrap()
                .push(format!("{} {failure}", ident.name()));
        })
        .start()
        .unwrap();
    let (sender, mut receiver) = mpsc::channel(64);
    let producer = Producer::new(ClickLog::new(10_000, 7, injected.clone()), sender);
    let supervisor =
        Supervisor::new("clicks")
            .policy(RestartPolicy::new(50, Duration::from_secs(1)).with_backoff(
                Backoff::exponential(Duration::from_millis(1), Duration::from_millis(50)),
            ))
            .child(ChildSpec::new("click-producer", producer).restart(Restart::Transient));
    let handle = runtime.supervise(supervisor).unwrap();
    let mut next = 0;
    let mut per_kind: HashMap<Kind, u64> = HashMap::new();
    while let Some(click) = receiver.recv().await {
        assert_eq!(click.sequence, next, "in order, none twice, none missing");
        assert!(click.user < 500);
        next += 1;
        *per_kind.entry(click.kind).or_default() += 1;
    }
    handle.await.unwrap();
    assert_eq!(next, 10_000);
    assert_eq!(per_kind.values().sum::<u64>(), 10_000);
    let injected = injected.load(Ordering::SeqCst);
    assert!(
        (5..=20).contains(&injected),
        "about 10 failures: {injected}"
    );
    let reported = reported.lock().unwrap();
    assert_eq!(
        reported.len(),
        injected as usize,
        "each failure reported once"
    );
    assert!(reported[0].starts_with("click-producer read failed at offset "));
    assert!(reported[0].contains("session timeout at"));
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
                .policy(RestartPolicy::new(10, Duration::from_secs(1)))
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
                    RestartPolicy::new(10, Duration::from_secs(10)).with_backoff(
                        Backoff::exponential(
                            Duration::from_millis(100),
                            Duration::from_millis(300),
                        ),
                    ),
                )
                .child(counted("flaky", times.clone(), 4, Then::Exit).restart(Restart::Transient)),
        )
        .unwrap()
        .await
        .unwrap();
    assert_eq!(*times.lock().unwrap(), [0, 100, 300, 600, 900]);
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
                .push(format!("{}: {error}", ident.name()));
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
                .policy(RestartPolicy::new(2, Duration::from_secs(1)))
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
        error.to_string(),
        "supervisor `fragile` gave up: more than 2 restarts within 1s (last failure: read \
         failed at offset 0: disk error at 0); its children were stopped and their channels \
         closed"
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
        "reader: step failed: read failed at offset 0: disk error at 0"
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
                .policy(RestartPolicy::new(0, Duration::from_secs(1)))
                .child(ChildSpec::new("numbers", Producer::new(numbers, sender))),
        )
        .unwrap()
        .await;
    assert!(result.is_err());
    assert_eq!(*reported.lock().unwrap(), ["publish"]);
}
