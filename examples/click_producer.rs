//! The seed's producer scenario: an append-only log of 10,000 click events (user id,
//! click kind) that fails a read with a simulated session timeout about once in 1,000
//! (seeded random numbers) and answers "invalid offset" past its end. A supervised
//! producer publishes the clicks into a bounded channel; a consumer counts them per kind.
//! Failures restart the producer at the offset that failed, so every click arrives exactly
//! once and in order.
//!
//! Run with `cargo run --example click_producer`. `tests/supervision.rs` runs the same
//! scenario (this file is included there) and checks the same things.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pipewright::supervision::{ChildSpec, Failure, Producer, Restart, Source, Supervisor};
use pipewright::{Backoff, BoxError, EventKind, RestartPolicy, Runtime};
use tokio::sync::mpsc;

/// A seeded xorshift64*: the same "random" clicks and failures on every run.
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Kind {
    AddToCart,
    Shipping,
    Payment,
}

#[derive(Debug, Clone)]
pub(crate) struct Click {
    pub(crate) sequence: u64,
    pub(crate) user: u64,
    pub(crate) kind: Kind,
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

/// The log client: `take(offset)` as in the seed.
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

/// The producer's view of the log: past the end means "all was read".
impl Source for ClickLog {
    type Item = Click;

    async fn read(&mut self, offset: u64) -> Result<Option<Click>, BoxError> {
        match self.take(offset) {
            Ok(click) => Ok(Some(click)),
            Err(LogError::InvalidOffset { .. }) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }
}

/// What a run of the scenario saw.
#[derive(Debug, Default)]
pub(crate) struct Report {
    /// Clicks received, in the order received.
    pub(crate) received: u64,
    /// `true` if every click arrived once, in order.
    pub(crate) in_order: bool,
    pub(crate) per_kind: BTreeMap<Kind, u64>,
    /// Distinct users who clicked.
    pub(crate) users: usize,
    pub(crate) failures_injected: u32,
    /// Failures the error reporter was told about, as messages.
    pub(crate) failures_reported: Vec<String>,
    /// Restarts the watcher was told about.
    pub(crate) restarts: u32,
}

/// Runs the scenario: `count` clicks from a log seeded with `seed`.
pub(crate) async fn run(count: u64, seed: u64) -> Report {
    let injected = Arc::new(AtomicU32::new(0));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let restarts = Arc::new(AtomicU32::new(0));
    let (reported, restarted) = (failures.clone(), restarts.clone());
    let runtime = Runtime::builder(())
        .error_reporter(move |ident, error| {
            let message = match error.downcast_ref::<Failure>() {
                Some(failure) => format!("{}: {failure}", ident.name()),
                None => format!("{}: {error:#}", ident.name()),
            };
            reported.lock().unwrap().push(message);
        })
        .watcher(move |event| {
            if let EventKind::ChildRestarted { .. } = event.kind() {
                restarted.fetch_add(1, Ordering::SeqCst);
            }
        })
        .start()
        .expect("the runtime starts");

    let (clicks, mut consumer) = mpsc::channel(64);
    let producer = Producer::new(ClickLog::new(count, seed, injected.clone()), clicks);
    let supervisor = Supervisor::new("clicks")
        .policy(
            // Keeps trying, however often the log fails: the backoff grows with the
            // restarts of the last second and starts over after a healthy second.
            RestartPolicy::unlimited(Duration::from_secs(1))
                .expect("a positive period")
                .with_backoff(
                    Backoff::exponential(Duration::from_millis(1), Duration::from_millis(50))
                        .expect("a positive start, a cap above it")
                        .with_jitter(),
                )
                .expect("an unlimited policy takes any backoff"),
        )
        .child(ChildSpec::new("click-producer", producer).restart(Restart::Transient));
    let supervisor = runtime
        .supervise(supervisor)
        .expect("inside a tokio runtime");

    let mut report = Report {
        in_order: true,
        ..Report::default()
    };
    let mut users = BTreeSet::new();
    while let Some(click) = consumer.recv().await {
        users.insert(click.user);
        report.in_order &= click.sequence == report.received;
        report.received += 1;
        *report.per_kind.entry(click.kind).or_default() += 1;
    }
    supervisor.await.expect("the supervisor ends normally");
    report.users = users.len();
    report.failures_injected = injected.load(Ordering::SeqCst);
    report.failures_reported = failures.lock().unwrap().clone();
    report.restarts = restarts.load(Ordering::SeqCst);
    report
}

#[allow(dead_code)] // `tests/supervision.rs` includes this file for `run`.
#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() {
    let report = run(10_000, 7).await;
    println!("clicks per kind ({} distinct users):", report.users);
    for (kind, count) in &report.per_kind {
        println!("  {kind:?}: {count}");
    }
    println!(
        "failures injected: {}, reported: {}, restarts: {}",
        report.failures_injected,
        report.failures_reported.len(),
        report.restarts
    );
    for failure in &report.failures_reported {
        println!("  {failure}");
    }
    assert_eq!(report.received, 10_000, "every click arrived");
    assert!(report.in_order, "exactly once, in order");
    assert_eq!(
        report.failures_reported.len(),
        report.failures_injected as usize
    );
    assert_eq!(report.restarts, report.failures_injected);
    println!(
        "all {} clicks arrived exactly once, in order",
        report.received
    );
}
