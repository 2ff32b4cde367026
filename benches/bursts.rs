//! Bursts: every concurrency behaviour against its hand-written tokio twin, at scale, in
//! one process run, printed as markdown tables (no criterion: a plain `fn main`).
//!
//! A *burst* is N invocations issued back to back from inside one `block_on` of a
//! current-thread tokio runtime, then the outcomes checked. Each row builds its tokio
//! runtime and its pipelines `Runtime` once (outside the timing) and invokes by registered
//! name (`runtime.invoke("work", arg)`), as users do. A row compares up to three sides:
//! the bare hand-written tokio code ("tokio"), a hand-written *bookkeeping twin* that
//! keeps the same books as the library ("books"), and the library ("pipelines"). For each
//! N (1,000, 10,000, 100,000) the row runs one unmeasured warm-up burst per side, then 5
//! measured bursts per side (the order of the sides rotating from one repeat to the
//! next); it prints the median ns per invocation, the spread (min-max) of each side, the
//! heap allocations per invocation (a counting `#[global_allocator]`), and the ratios of
//! the medians pipelines / tokio and pipelines / books: the first is what the library
//! costs over bare tokio, the second what it costs beyond the books its contract keeps. A
//! measured burst includes letting the tokio runtime settle (until no task the burst
//! spawned is alive), so no side leaves work for another's measurement.
//!
//! Unless said otherwise the job is `tokio::task::yield_now().await; value + 1` (a future
//! that is not ready on its first poll), so what is measured is the coordination.
//!
//! A bookkeeping twin is safe, plain Rust written as a careful programmer would. Every one
//! keeps: a unique `u64` ident per invocation (from an atomic counter; a refused one gets
//! one too); the queue's exact counts (running, waiting, performed, cancelled, panicked,
//! and last result and last cancelled ident, in a `Books` behind a `std::sync::Mutex`,
//! updated where the library updates its own; refusals in an atomic, as the library
//! refuses without a lock); the user's job under `catch_unwind`, so a panic is an outcome;
//! and a handle per caller with the ident and the outcome (`Outcome::Ok(v)`, `Cancelled`,
//! `Refused(argument)`, `Panicked`), from a `JoinHandle`, a `oneshot` or at once. Each
//! burst checks the twin's outcomes as the other sides check theirs, then takes its books
//! (resetting them) and checks the counts.
//!
//! 1. `restartable`: each invocation cancels the one in flight. By hand: keep the
//!    previous `AbortHandle`, abort it before `tokio::spawn`ing the next, await the last
//!    `JoinHandle`. Pipelines: `.restartable()`. Both check the last succeeded and the
//!    first was cancelled. Books: the live instances in a `HashMap` by ident, each with a
//!    `CancellationToken` raced with the job (`select!`), listable and cancellable by
//!    ident; an invocation cancels the live one before it spawns; a cancelled instance
//!    counts its cancellation once when its task ends; the handle awaits the
//!    `JoinHandle`. Checked: the last `Ok(n)`, the first `Cancelled` and no longer live,
//!    nothing live after, N performed of which N-1 cancelled, last result N.
//! 2. `dropping`: the first invocation runs, the other N-1 are refused at once. By hand:
//!    a one-permit `Semaphore`, `try_acquire_owned` (the permit moves into the spawned
//!    job) or count a refusal. Pipelines: `.dropping()`, N-1 handles are `is_dropped()`.
//!    Books: a slot gauge (an `AtomicUsize` taken by compare-and-swap below 1); a refused
//!    caller's handle holds `Refused(argument)`; the admitted job records its result and
//!    gives the slot back. Checked: N-1 refusals with their own argument, the one run
//!    `Ok(1)`, 1 performed, N-1 dropped, the slot free.
//! 3. `enqueued (ready job)`: one at a time in arrival order, the job is `value + 1` with
//!    no await. By hand: an `mpsc` channel into one long-lived worker task, a `oneshot`
//!    reply per job. Pipelines: `.enqueued()`. Both await every result and check it.
//!    Books: the same worker, fed (ident, argument, `oneshot`), counting each job waiting,
//!    then running, then performed with its result. Checked: every result, idents in
//!    arrival order, N performed, nothing waiting or running.
//! 4. `enqueued (yield job)`: the same with the yielding job.
//! 5. `keep_latest`: the first runs, the last runs after it, the ones in between never
//!    run. By hand: a `watch` channel into one long-lived worker that, after each job, runs
//!    the latest value; a second `watch` tells which value it finished last (the caller
//!    yields once after the first arrival so the worker starts it). Pipelines:
//!    `.keep_latest()`; the first and the last succeed, the others are cancelled. Books:
//!    one waiting place beside a running flag; an arrival while one runs takes the place,
//!    and the one it replaces counts as cancelled and its `oneshot` is told `Cancelled`;
//!    the task that ran a job runs the waiting one next. Checked: the first and the last
//!    `Ok`, the others `Cancelled`, 2 performed, N-2 cancelled, last result N.
//! 6. `unrestricted`: N jobs at once. By hand: a `JoinSet`, spawn N, join all. Pipelines:
//!    the default, await every handle. Books: a task per invocation counted running, then
//!    performed with its result. Checked: every result, N performed.
//! 7. `use_existing (16 keys)`: the argument is `i % 16`; callers with the same argument
//!    share the run in flight. By hand: a `HashMap<u64, Shared<BoxFuture>>` behind a
//!    mutex (the job removes its entry when done). Pipelines: `.use_existing()`. No
//!    bookkeeping twin.
//!
//! Then, in their own tables:
//!
//! - `sync 3-step invoke`: `handle.invoke(v).unwrap().try_result()` through a typed
//!   handle (`runtime.handle::<u64>("inc-3")`), and `invoke("inc-3", v)` by name, of a
//!   pipeline of three synchronous steps (no executor involved) vs three
//!   `#[inline(never)]` calls. The typed-handle case has a bookkeeping twin: an ident, a
//!   slot taken from a gauge (compare-and-swap below an unreachable limit, as the
//!   pipeline is unrestricted), the three calls under `catch_unwind`, the result recorded
//!   (performed, last result), the slot given back, and a handle holding the ident and
//!   the outcome that the caller reads (`try_outcome()`); the counts are checked after.
//! - `one await`: invoke and await a pipeline whose one step is `yield_now().await`, vs
//!   `tokio::spawn(async { yield_now().await }).await`. Like every current-thread runtime
//!   here, it has the I/O and time drivers enabled (as `#[tokio::main]` does), so each
//!   return to the scheduler also polls the driver: a fixed cost on both sides.
//! - `multi-thread scaling`: a multi-thread tokio runtime with 1, 2 and 4 workers, and as
//!   many OS threads invoking (each `Handle::block_on`s batches of 1,000 invocations and
//!   awaits them): (a) an unrestricted pipeline vs `spawn` of the same job, (b) a per-key
//!   enqueued pipeline over 1,000 keys vs `spawn` (and vs a hand-written per-key FIFO: one
//!   `tokio::sync::Mutex` per key locked by the spawned job). Throughput in invocations
//!   per second. The allocation counter is off in this section (it would be a contended
//!   atomic).
//! - `heap per suspended instance`: 10,000 instances suspended on
//!   `std::future::pending()`, heap delta / N, vs 10,000 tokio tasks on `pending()`; then
//!   all are cancelled / aborted and the heap checked to come back.
//!
//! Run with `cargo bench --bench bursts`. Shorter runs: `BURSTS_SIZES=1000,10000` (the
//! burst sizes, comma-separated) and `BURSTS_REPEATS=3` (measured bursts per side and
//! size; the other sections use them to size themselves too).
//!
//! Note: the dev-dependencies turn on pipewright-core's `tracing` feature, so the pipelines
//! side here carries its (subscriber-less, so cheap) spans, as in the other benches.

// The counting allocator implements `GlobalAlloc`, an unsafe trait; it only forwards to
// the system allocator and counts.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::future::Future;
use std::hint::black_box;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::Instant;

use futures::future::FutureExt;
use pipewright::{pipeline, Invocation, Pipeline, Runtime};
use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

mod support;
use support::{current_thread, job, runtime_with, yield_job, SharedJob};

// ---------------------------------------------------------------------------------------
// The counting allocator.

struct Counting;

/// Counting is on everywhere but in the multi-thread section.
static COUNTING: AtomicBool = AtomicBool::new(true);
/// Allocations (and reallocations) made while counting.
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
/// Bytes allocated minus bytes freed while counting: only its differences mean anything.
static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
            LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        if COUNTING.load(Ordering::Relaxed) {
            LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        }
        unsafe { System.dealloc(pointer, layout) }
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
            LIVE_BYTES.fetch_add(size as isize - layout.size() as isize, Ordering::Relaxed);
        }
        unsafe { System.realloc(pointer, layout, size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.load(Ordering::Relaxed)
}

fn live_bytes() -> isize {
    LIVE_BYTES.load(Ordering::Relaxed)
}

// ---------------------------------------------------------------------------------------
// Configuration and statistics.

struct Config {
    sizes: Vec<u64>,
    repeats: usize,
}

impl Config {
    fn from_env() -> Self {
        let sizes = match std::env::var("BURSTS_SIZES") {
            Ok(sizes) => sizes
                .split(',')
                .map(|size| {
                    size.trim()
                        .replace('_', "")
                        .parse::<u64>()
                        .expect("BURSTS_SIZES: comma-separated positive integers")
                })
                .collect(),
            Err(_) => vec![1_000, 10_000, 100_000],
        };
        assert!(
            !sizes.is_empty() && sizes.iter().all(|&size| size >= 2),
            "BURSTS_SIZES: every size must be at least 2"
        );
        let repeats = match std::env::var("BURSTS_REPEATS") {
            Ok(repeats) => repeats
                .trim()
                .parse::<usize>()
                .expect("BURSTS_REPEATS: a positive integer"),
            Err(_) => 5,
        };
        assert!(repeats >= 1, "BURSTS_REPEATS must be at least 1");
        Config { sizes, repeats }
    }

    /// The largest burst size: the other sections size themselves on it.
    fn largest(&self) -> u64 {
        self.sizes.iter().copied().max().unwrap()
    }
}

/// One measured burst: per invocation.
#[derive(Clone, Copy)]
struct Sample {
    nanos: f64,
    allocations: f64,
}

fn sample(n: u64, burst: impl FnOnce()) -> Sample {
    let allocations_before = allocations();
    let start = Instant::now();
    burst();
    let elapsed = start.elapsed();
    let allocated = allocations() - allocations_before;
    Sample {
        nanos: elapsed.as_nanos() as f64 / n as f64,
        allocations: allocated as f64 / n as f64,
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len() % 2 == 1 {
        values[middle]
    } else {
        (values[middle - 1] + values[middle]) / 2.0
    }
}

#[derive(Clone)]
struct Stats {
    median: f64,
    min: f64,
    max: f64,
    allocations: f64,
}

impl Stats {
    fn of(samples: &[Sample]) -> Self {
        let mut nanos: Vec<f64> = samples.iter().map(|sample| sample.nanos).collect();
        let mut allocations: Vec<f64> = samples.iter().map(|sample| sample.allocations).collect();
        let median_nanos = median(&mut nanos);
        Stats {
            median: median_nanos,
            min: nanos[0],
            max: nanos[nanos.len() - 1],
            allocations: median(&mut allocations),
        }
    }

    fn nanos(&self) -> String {
        format!(
            "{} ({}-{})",
            fmt_nanos(self.median),
            fmt_nanos(self.min),
            fmt_nanos(self.max)
        )
    }
}

fn fmt_nanos(nanos: f64) -> String {
    if nanos >= 100.0 {
        format!("{nanos:.0}")
    } else {
        format!("{nanos:.1}")
    }
}

fn fmt_count(count: u64) -> String {
    let digits = count.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// One line of the burst table.
struct Line {
    row: &'static str,
    n: u64,
    tokio: Stats,
    /// The bookkeeping twin, if the row has one.
    books: Option<Stats>,
    pipelines: Stats,
}

/// A burst of one side: runs (and checks) one burst of the given size.
type Burst<'a> = &'a mut dyn FnMut(u64);

/// Runs a row at every size: a warm-up burst per side, then `repeats` measured bursts per
/// side, the order of the sides rotating from one repeat to the next (tokio, pipelines,
/// bookkeeping twin; then pipelines, bookkeeping twin, tokio; ...). Each closure runs (and
/// checks) one burst of the given size.
fn run_row(
    config: &Config,
    row: &'static str,
    mut tokio_burst: impl FnMut(u64),
    books_burst: Option<Burst<'_>>,
    mut pipelines_burst: impl FnMut(u64),
) -> Vec<Line> {
    let mut sides: Vec<&mut dyn FnMut(u64)> = vec![&mut tokio_burst, &mut pipelines_burst];
    if let Some(books_burst) = books_burst {
        sides.push(books_burst);
    }
    let mut lines = Vec::new();
    for &n in &config.sizes {
        let started = Instant::now();
        for side in sides.iter_mut() {
            side(n);
        }
        let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); sides.len()];
        for repeat in 0..config.repeats {
            for turn in 0..sides.len() {
                let side = (repeat + turn) % sides.len();
                let burst = &mut sides[side];
                samples[side].push(sample(n, || burst(n)));
            }
        }
        eprintln!(
            "  {row}, N = {}: {:.2} s",
            fmt_count(n),
            started.elapsed().as_secs_f64()
        );
        lines.push(Line {
            row,
            n,
            tokio: Stats::of(&samples[0]),
            books: samples.get(2).map(|samples| Stats::of(samples)),
            pipelines: Stats::of(&samples[1]),
        });
    }
    lines
}

// ---------------------------------------------------------------------------------------
// Shared pieces.

/// A pipelines runtime with `pipeline` registered as `"work"`, started inside `rt` so that
/// it spawns what waits there.
fn runtime_in(rt: &tokio::runtime::Runtime, pipeline: Pipeline<u64, ()>) -> Runtime<()> {
    let _inside = rt.enter();
    runtime_with(pipeline)
}

/// Runs `burst` on `rt`, then yields until no task that it spawned is alive, so that what
/// the burst left to clean up (aborted tasks, cancelled instances) is paid by the burst.
fn block_on_settled<F: Future>(rt: &tokio::runtime::Runtime, burst: F) -> F::Output {
    let metrics = rt.metrics();
    let before = metrics.num_alive_tasks();
    rt.block_on(async {
        let output = burst.await;
        while metrics.num_alive_tasks() > before {
            tokio::task::yield_now().await;
        }
        output
    })
}

/// Checks that the pipelines runtime has nothing live left after a burst.
fn assert_empty(runtime: &Runtime<()>) {
    assert_eq!(runtime.live_counts().0, 0, "instances left after a burst");
}

fn invoke(runtime: &Runtime<()>, value: u64) -> Invocation<u64> {
    runtime.invoke("work", black_box(value)).unwrap()
}

// ---------------------------------------------------------------------------------------
// The bookkeeping twins: hand-written tokio code that keeps the books the library keeps.

/// How an invocation of a bookkeeping twin ended, as its caller is told.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Outcome {
    Ok(u64),
    /// Cancelled or replaced before it finished (its clean-up ran).
    Cancelled,
    /// Refused at once: the caller gets its argument back.
    Refused(u64),
    /// The job panicked (the panic was contained).
    Panicked,
}

/// A queue's books: counts and the last result, updated where the library updates its
/// own.
#[derive(Debug, Default)]
struct Books {
    /// Started and not ended (the twins with a slot gauge count these in the gauge).
    running: usize,
    /// Admitted, not started yet.
    waiting: usize,
    /// Started and ended, however they ended.
    performed: u64,
    cancelled: u64,
    panicked: u64,
    last_result: Option<u64>,
    last_cancelled: Option<u64>,
}

impl Books {
    /// Running, waiting, performed, cancelled, panicked.
    fn counts(&self) -> (usize, usize, u64, u64, u64) {
        (
            self.running,
            self.waiting,
            self.performed,
            self.cancelled,
            self.panicked,
        )
    }

    /// Records how a started instance ended, and that it no longer runs.
    fn end(&mut self, ident: u64, outcome: Outcome) {
        self.running -= 1;
        self.record(ident, outcome);
    }

    /// Records how a started instance ended.
    fn record(&mut self, ident: u64, outcome: Outcome) {
        self.performed += 1;
        match outcome {
            Outcome::Ok(value) => self.last_result = Some(value),
            Outcome::Cancelled => self.cancel(ident),
            Outcome::Panicked => self.panicked += 1,
            Outcome::Refused(_) => unreachable!("a started instance is not refused"),
        }
    }

    /// The clean-up of a cancelled instance, started or not: it counts once.
    fn cancel(&mut self, ident: u64) {
        self.cancelled += 1;
        self.last_cancelled = Some(ident);
    }
}

/// What a bookkeeping twin keeps under its one lock: the books and its own state.
#[derive(Default)]
struct Locked<S> {
    books: Books,
    own: S,
}

/// What every bookkeeping twin keeps: an ident per invocation (a refused one too), the
/// refusals, and the books with the twin's own state `S` behind one lock.
#[derive(Default)]
struct Ledger<S> {
    next_ident: AtomicU64,
    dropped: AtomicU64,
    state: Mutex<Locked<S>>,
}

impl<S> Ledger<S> {
    fn ident(&self) -> u64 {
        self.next_ident.fetch_add(1, Ordering::Relaxed)
    }

    fn refuse(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Locked<S>> {
        self.state.lock().unwrap()
    }

    /// The books and the refusals since the last call, reset (between bursts).
    fn take(&self) -> (Books, u64) {
        let books = std::mem::take(&mut self.lock().books);
        (books, self.dropped.swap(0, Ordering::Relaxed))
    }
}

/// Runs the job with its panics contained.
async fn contained(value: u64) -> Outcome {
    match AssertUnwindSafe(job(value)).catch_unwind().await {
        Ok(result) => Outcome::Ok(result),
        Err(_) => Outcome::Panicked,
    }
}

/// Where a caller's outcome comes from.
enum Pending {
    Done(Outcome),
    Reply(oneshot::Receiver<Outcome>),
    Task(tokio::task::JoinHandle<Outcome>),
}

/// A caller's handle: the invocation's ident and its outcome.
struct Handle {
    ident: u64,
    pending: Pending,
}

impl Handle {
    fn done(ident: u64, outcome: Outcome) -> Self {
        Handle {
            ident,
            pending: Pending::Done(outcome),
        }
    }

    /// The outcome if it is known already.
    fn try_outcome(&mut self) -> Option<Outcome> {
        let outcome = match &mut self.pending {
            Pending::Done(outcome) => return Some(*outcome),
            Pending::Reply(reply) => reply.try_recv().ok()?,
            Pending::Task(task) if task.is_finished() => Self::joined(task.now_or_never()?),
            Pending::Task(_) => return None,
        };
        self.pending = Pending::Done(outcome);
        Some(outcome)
    }

    async fn outcome(self) -> Outcome {
        match self.pending {
            Pending::Done(outcome) => outcome,
            // The other end went away without an answer: the work was dropped.
            Pending::Reply(reply) => reply.await.unwrap_or(Outcome::Cancelled),
            Pending::Task(task) => Self::joined(task.await),
        }
    }

    fn joined(joined: Result<Outcome, tokio::task::JoinError>) -> Outcome {
        match joined {
            Ok(outcome) => outcome,
            Err(error) if error.is_cancelled() => Outcome::Cancelled,
            Err(_) => Outcome::Panicked,
        }
    }
}

/// A queue's slots held, taken by compare-and-swap below its limit.
struct Gauge {
    held: AtomicUsize,
    limit: usize,
}

impl Gauge {
    fn new(limit: usize) -> Self {
        Gauge {
            held: AtomicUsize::new(0),
            limit,
        }
    }

    fn try_take(&self) -> bool {
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                (held < self.limit).then_some(held + 1)
            })
            .is_ok()
    }

    fn give_back(&self) {
        self.held.fetch_sub(1, Ordering::Release);
    }

    fn held(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }
}

/// The restartable twin: the live instances by ident, each with the token that cancels
/// it; a new invocation cancels the live one before it starts.
#[derive(Default)]
struct RestartableTwin {
    ledger: Ledger<HashMap<u64, CancellationToken>>,
}

impl RestartableTwin {
    fn invoke(self: &Arc<Self>, value: u64) -> Handle {
        let ident = self.ledger.ident();
        let token = CancellationToken::new();
        {
            let mut state = self.ledger.lock();
            let Locked { books, own: live } = &mut *state;
            for (_, previous) in live.drain() {
                previous.cancel();
            }
            live.insert(ident, token.clone());
            books.running += 1;
        }
        let twin = Arc::clone(self);
        let task = tokio::spawn(async move {
            let outcome = tokio::select! {
                biased;
                () = token.cancelled() => Outcome::Cancelled,
                outcome = contained(value) => outcome,
            };
            let mut state = twin.ledger.lock();
            state.own.remove(&ident);
            state.books.end(ident, outcome);
            outcome
        });
        Handle {
            ident,
            pending: Pending::Task(task),
        }
    }

    /// The idents of the live instances (not cancelled, not ended).
    fn live(&self) -> Vec<u64> {
        self.ledger.lock().own.keys().copied().collect()
    }

    /// Cancels a live instance; false if it is not live.
    fn cancel(&self, ident: u64) -> bool {
        let token = self.ledger.lock().own.remove(&ident);
        token.map(|token| token.cancel()).is_some()
    }
}

/// The dropping twin: one slot; an invocation that does not get it is refused at once.
struct DroppingTwin {
    ledger: Ledger<()>,
    slots: Gauge,
}

impl DroppingTwin {
    fn invoke(self: &Arc<Self>, value: u64) -> Handle {
        let ident = self.ledger.ident();
        if !self.slots.try_take() {
            self.ledger.refuse();
            return Handle::done(ident, Outcome::Refused(value));
        }
        let twin = Arc::clone(self);
        let task = tokio::spawn(async move {
            let outcome = contained(value).await;
            twin.ledger.lock().books.record(ident, outcome);
            twin.slots.give_back();
            outcome
        });
        Handle {
            ident,
            pending: Pending::Task(task),
        }
    }
}

/// What the enqueued twin's worker receives: the ident, the argument, the reply.
type Enqueued = (u64, u64, oneshot::Sender<Outcome>);

/// The enqueued twin: a channel into one long-lived worker that runs one job at a time,
/// in arrival order.
struct EnqueuedTwin {
    ledger: Arc<Ledger<()>>,
    jobs: mpsc::UnboundedSender<Enqueued>,
}

impl EnqueuedTwin {
    /// Spawns the worker on `rt`; `ready`: the job is `value + 1`, with no await.
    fn start(rt: &tokio::runtime::Runtime, ready: bool) -> Self {
        let ledger: Arc<Ledger<()>> = Arc::default();
        let (jobs, mut inbox) = mpsc::unbounded_channel::<Enqueued>();
        let books = Arc::clone(&ledger);
        rt.spawn(async move {
            while let Some((ident, value, reply)) = inbox.recv().await {
                {
                    let mut state = books.lock();
                    state.books.waiting -= 1;
                    state.books.running += 1;
                }
                let outcome = if ready {
                    match std::panic::catch_unwind(|| value + 1) {
                        Ok(result) => Outcome::Ok(result),
                        Err(_) => Outcome::Panicked,
                    }
                } else {
                    contained(value).await
                };
                books.lock().books.end(ident, outcome);
                let _ = reply.send(outcome);
            }
        });
        EnqueuedTwin { ledger, jobs }
    }

    fn invoke(&self, value: u64) -> Handle {
        let ident = self.ledger.ident();
        let (reply, outcome) = oneshot::channel();
        self.ledger.lock().books.waiting += 1;
        if let Err(mpsc::error::SendError((_, value, _))) = self.jobs.send((ident, value, reply)) {
            // The worker is gone.
            self.ledger.lock().books.waiting -= 1;
            self.ledger.refuse();
            return Handle::done(ident, Outcome::Refused(value));
        }
        Handle {
            ident,
            pending: Pending::Reply(outcome),
        }
    }
}

/// An invocation of the keep-latest twin that waits for the one running.
struct Waiting {
    ident: u64,
    value: u64,
    reply: oneshot::Sender<Outcome>,
}

/// The keep-latest twin's state: whether one runs, and the one waiting place.
#[derive(Default)]
struct KeepLatest {
    running: bool,
    waiting: Option<Waiting>,
}

/// The keep-latest twin: an arrival while one runs takes the waiting place, and the one it
/// replaces is told it was cancelled; when the running one ends, the waiting one runs.
#[derive(Default)]
struct KeepLatestTwin {
    ledger: Ledger<KeepLatest>,
}

impl KeepLatestTwin {
    fn invoke(self: &Arc<Self>, value: u64) -> Handle {
        let ident = self.ledger.ident();
        let (reply, outcome) = oneshot::channel();
        let arrival = Waiting {
            ident,
            value,
            reply,
        };
        let (start, replaced) = {
            let mut state = self.ledger.lock();
            let Locked { books, own: queue } = &mut *state;
            if queue.running {
                let replaced = queue.waiting.replace(arrival);
                match &replaced {
                    Some(replaced) => books.cancel(replaced.ident),
                    None => books.waiting += 1,
                }
                (None, replaced)
            } else {
                queue.running = true;
                books.running += 1;
                (Some(arrival), None)
            }
        };
        if let Some(replaced) = replaced {
            let _ = replaced.reply.send(Outcome::Cancelled);
        }
        if let Some(first) = start {
            tokio::spawn(Arc::clone(self).run(first));
        }
        Handle {
            ident,
            pending: Pending::Reply(outcome),
        }
    }

    /// Runs `first`, then whatever waits when it ends, until nothing does.
    async fn run(self: Arc<Self>, first: Waiting) {
        let mut next = Some(first);
        while let Some(Waiting {
            ident,
            value,
            reply,
        }) = next
        {
            let outcome = contained(value).await;
            next = {
                let mut state = self.ledger.lock();
                let Locked { books, own: queue } = &mut *state;
                books.end(ident, outcome);
                let next = queue.waiting.take();
                if next.is_some() {
                    books.waiting -= 1;
                    books.running += 1;
                } else {
                    queue.running = false;
                }
                next
            };
            let _ = reply.send(outcome);
        }
    }
}

/// The unrestricted twin: every invocation runs at once, in a task of its own.
#[derive(Default)]
struct UnrestrictedTwin {
    ledger: Ledger<()>,
}

impl UnrestrictedTwin {
    fn invoke(self: &Arc<Self>, value: u64) -> Handle {
        let ident = self.ledger.ident();
        self.ledger.lock().books.running += 1;
        let twin = Arc::clone(self);
        let task = tokio::spawn(async move {
            let outcome = contained(value).await;
            twin.ledger.lock().books.end(ident, outcome);
            outcome
        });
        Handle {
            ident,
            pending: Pending::Task(task),
        }
    }
}

/// The twin of a synchronous 3-step invoke: a slot taken and given back around the three
/// calls, in the caller's thread.
struct SyncTwin {
    ledger: Ledger<()>,
    slots: Gauge,
}

impl SyncTwin {
    fn invoke(&self, value: u64) -> Handle {
        let ident = self.ledger.ident();
        if !self.slots.try_take() {
            self.ledger.refuse();
            return Handle::done(ident, Outcome::Refused(value));
        }
        let outcome = match std::panic::catch_unwind(|| inc(inc(inc(value)))) {
            Ok(result) => Outcome::Ok(result),
            Err(_) => Outcome::Panicked,
        };
        self.ledger.lock().books.record(ident, outcome);
        self.slots.give_back();
        Handle::done(ident, outcome)
    }
}

// ---------------------------------------------------------------------------------------
// The burst rows.

fn restartable(config: &Config) -> Vec<Line> {
    let rt = current_thread();
    let runtime = runtime_in(&rt, yield_job().restartable());
    let twin: Arc<RestartableTwin> = Arc::default();
    run_row(
        config,
        "restartable",
        |n| {
            block_on_settled(&rt, async {
                let mut previous: Option<tokio::task::AbortHandle> = None;
                let mut first = None;
                let mut last = None;
                for value in 0..n {
                    if let Some(previous) = previous.take() {
                        previous.abort();
                    }
                    let task = tokio::spawn(job(black_box(value)));
                    previous = Some(task.abort_handle());
                    if value == 0 {
                        first = Some(task);
                    } else {
                        last = Some(task);
                    }
                }
                assert_eq!(last.unwrap().await.unwrap(), n);
                assert!(first.unwrap().await.unwrap_err().is_cancelled());
            })
        },
        Some(&mut |n| {
            block_on_settled(&rt, async {
                let mut first = None;
                let mut last = None;
                for value in 0..n {
                    let handle = twin.invoke(black_box(value));
                    if value == 0 {
                        first = Some(handle);
                    } else {
                        last = Some(handle);
                    }
                }
                let (first, last) = (first.unwrap(), last.unwrap());
                assert_eq!(last.ident - first.ident, n - 1);
                assert_eq!(twin.live(), [last.ident]);
                assert!(!twin.cancel(first.ident), "the first is not live any more");
                assert_eq!(last.outcome().await, Outcome::Ok(n));
                assert_eq!(first.outcome().await, Outcome::Cancelled);
            });
            assert!(twin.live().is_empty());
            let (books, dropped) = twin.ledger.take();
            assert_eq!(books.counts(), (0, 0, n, n - 1, 0));
            assert_eq!((books.last_result, dropped), (Some(n), 0));
            assert!(books.last_cancelled.is_some());
        }),
        |n| {
            block_on_settled(&rt, async {
                let mut first = None;
                let mut last = None;
                for value in 0..n {
                    let handle = invoke(&runtime, value);
                    if value == 0 {
                        first = Some(handle);
                    } else {
                        last = Some(handle);
                    }
                }
                assert_eq!(last.unwrap().await.unwrap(), n);
                assert!(first.unwrap().await.unwrap_err().is_cancelled());
            });
            assert_empty(&runtime);
        },
    )
}

fn dropping(config: &Config) -> Vec<Line> {
    let rt = current_thread();
    let runtime = runtime_in(&rt, yield_job().dropping());
    let permits = Arc::new(Semaphore::new(1));
    let twin = Arc::new(DroppingTwin {
        ledger: Ledger::default(),
        slots: Gauge::new(1),
    });
    run_row(
        config,
        "dropping",
        |n| {
            block_on_settled(&rt, async {
                let mut running = None;
                let mut refused = 0;
                for value in 0..n {
                    match Arc::clone(&permits).try_acquire_owned() {
                        Ok(permit) => {
                            running = Some(tokio::spawn(async move {
                                let result = job(black_box(value)).await;
                                drop(permit);
                                result
                            }));
                        }
                        Err(_) => refused += 1,
                    }
                }
                let result = running.unwrap().await.unwrap();
                assert_eq!((result, refused), (1, n - 1));
            })
        },
        Some(&mut |n| {
            block_on_settled(&rt, async {
                let mut running = Vec::new();
                let mut refused = 0;
                let mut idents = (u64::MAX, 0);
                for value in 0..n {
                    let mut handle = twin.invoke(black_box(value));
                    idents = (idents.0.min(handle.ident), idents.1.max(handle.ident));
                    match handle.try_outcome() {
                        None => running.push(handle),
                        Some(Outcome::Refused(argument)) if argument == value => refused += 1,
                        Some(other) => panic!("unexpected outcome {other:?}"),
                    }
                }
                assert_eq!(idents.1 - idents.0, n - 1);
                assert_eq!((running.len() as u64, refused), (1, n - 1));
                assert_eq!(running.pop().unwrap().outcome().await, Outcome::Ok(1));
            });
            assert_eq!(twin.slots.held(), 0);
            let (books, dropped) = twin.ledger.take();
            assert_eq!(books.counts(), (0, 0, 1, 0, 0));
            assert_eq!((books.last_result, dropped), (Some(1), n - 1));
        }),
        |n| {
            block_on_settled(&rt, async {
                let mut running = Vec::new();
                let mut dropped = 0;
                for value in 0..n {
                    let mut handle = invoke(&runtime, value);
                    match handle.try_result() {
                        None => running.push(handle),
                        Some(Err(error)) if error.is_dropped() => dropped += 1,
                        Some(other) => panic!("unexpected outcome {other:?}"),
                    }
                }
                assert_eq!((running.len() as u64, dropped), (1, n - 1));
                assert_eq!(running.pop().unwrap().await.unwrap(), 1);
            });
            assert_empty(&runtime);
        },
    )
}

fn enqueued(config: &Config, ready: bool) -> Vec<Line> {
    let rt = current_thread();
    let pipeline = if ready {
        pipeline!(|value: u64, _ctx: &()| {
            value = value + 1;
        })
    } else {
        yield_job()
    };
    let runtime = runtime_in(&rt, pipeline.enqueued());
    // The hand-written worker lives as long as the pipelines runtime's queue does.
    let (jobs, mut inbox) = mpsc::unbounded_channel::<(u64, oneshot::Sender<u64>)>();
    rt.spawn(async move {
        while let Some((value, reply)) = inbox.recv().await {
            let result = if ready { value + 1 } else { job(value).await };
            let _ = reply.send(result);
        }
    });
    let twin = EnqueuedTwin::start(&rt, ready);
    let row = if ready {
        "enqueued (ready job)"
    } else {
        "enqueued (yield job)"
    };
    run_row(
        config,
        row,
        |n| {
            block_on_settled(&rt, async {
                let replies: Vec<_> = (0..n)
                    .map(|value| {
                        let (reply, result) = oneshot::channel();
                        jobs.send((black_box(value), reply)).unwrap();
                        result
                    })
                    .collect();
                for (value, reply) in (0..n).zip(replies) {
                    assert_eq!(reply.await.unwrap(), value + 1);
                }
            })
        },
        Some(&mut |n| {
            block_on_settled(&rt, async {
                let handles: Vec<Handle> =
                    (0..n).map(|value| twin.invoke(black_box(value))).collect();
                let first = handles[0].ident;
                for (value, handle) in (0..n).zip(handles) {
                    assert_eq!(handle.ident, first + value);
                    assert_eq!(handle.outcome().await, Outcome::Ok(value + 1));
                }
            });
            let (books, dropped) = twin.ledger.take();
            assert_eq!(books.counts(), (0, 0, n, 0, 0));
            assert_eq!((books.last_result, dropped), (Some(n), 0));
        }),
        |n| {
            block_on_settled(&rt, async {
                let handles: Vec<_> = (0..n).map(|value| invoke(&runtime, value)).collect();
                for (value, handle) in (0..n).zip(handles) {
                    assert_eq!(handle.await.unwrap(), value + 1);
                }
            });
            assert_empty(&runtime);
        },
    )
}

fn keep_latest(config: &Config) -> Vec<Line> {
    let rt = current_thread();
    let runtime = runtime_in(&rt, yield_job().keep_latest());
    // The hand-written worker: after each job, the latest value sent (if any) runs next;
    // `finished` holds the last value it ran and `runs` counts the jobs it ran. Values grow
    // from burst to burst (`base`), so the caller can tell this burst's last job from an
    // earlier one.
    let (latest, mut changes) = watch::channel(0_u64);
    let (finished_tx, mut finished) = watch::channel(0_u64);
    let runs = Arc::new(AtomicU64::new(0));
    let worker_runs = Arc::clone(&runs);
    rt.spawn(async move {
        while changes.changed().await.is_ok() {
            let value = *changes.borrow_and_update();
            job(value).await;
            worker_runs.fetch_add(1, Ordering::Relaxed);
            finished_tx.send_replace(value);
        }
    });
    let twin: Arc<KeepLatestTwin> = Arc::default();
    let mut base = 0_u64;
    run_row(
        config,
        "keep_latest",
        |n| {
            let first = base + 1;
            let last = base + n;
            base += n;
            let runs_before = runs.load(Ordering::Relaxed);
            let finished = &mut finished;
            block_on_settled(&rt, async {
                latest.send_replace(black_box(first));
                // The worker starts the first job before the others arrive.
                tokio::task::yield_now().await;
                for value in first + 1..=last {
                    latest.send_replace(black_box(value));
                }
                let done = *finished.wait_for(|&done| done == last).await.unwrap();
                assert_eq!(done, last);
            });
            assert_eq!(runs.load(Ordering::Relaxed) - runs_before, 2);
        },
        Some(&mut |n| {
            let first = block_on_settled(&rt, async {
                let handles: Vec<Handle> =
                    (0..n).map(|value| twin.invoke(black_box(value))).collect();
                let first = handles[0].ident;
                for (value, handle) in (0..n).zip(handles) {
                    assert_eq!(handle.ident, first + value);
                    let outcome = handle.outcome().await;
                    if value == 0 || value + 1 == n {
                        assert_eq!(outcome, Outcome::Ok(value + 1));
                    } else {
                        assert_eq!(outcome, Outcome::Cancelled);
                    }
                }
                first
            });
            let (books, dropped) = twin.ledger.take();
            assert_eq!(books.counts(), (0, 0, 2, n - 2, 0));
            assert_eq!((books.last_result, dropped), (Some(n), 0));
            // The last one replaced is the one before the last.
            assert_eq!(books.last_cancelled, Some(first + n - 2));
            let state = twin.ledger.lock();
            assert!(!state.own.running && state.own.waiting.is_none());
        }),
        |n| {
            block_on_settled(&rt, async {
                let handles: Vec<_> = (0..n).map(|value| invoke(&runtime, value)).collect();
                for (value, handle) in (0..n).zip(handles) {
                    let result = handle.await;
                    if value == 0 || value + 1 == n {
                        assert_eq!(result.unwrap(), value + 1);
                    } else {
                        assert!(result.unwrap_err().is_cancelled());
                    }
                }
            });
            assert_empty(&runtime);
        },
    )
}

fn unrestricted(config: &Config) -> Vec<Line> {
    let rt = current_thread();
    let runtime = runtime_in(&rt, yield_job());
    let twin: Arc<UnrestrictedTwin> = Arc::default();
    run_row(
        config,
        "unrestricted",
        |n| {
            block_on_settled(&rt, async {
                let mut set = JoinSet::new();
                for value in 0..n {
                    set.spawn(job(black_box(value)));
                }
                let mut sum = 0;
                while let Some(result) = set.join_next().await {
                    sum += result.unwrap();
                }
                assert_eq!(sum, n * (n + 1) / 2);
            })
        },
        Some(&mut |n| {
            block_on_settled(&rt, async {
                let handles: Vec<Handle> =
                    (0..n).map(|value| twin.invoke(black_box(value))).collect();
                let first = handles[0].ident;
                for (value, handle) in (0..n).zip(handles) {
                    assert_eq!(handle.ident, first + value);
                    assert_eq!(handle.outcome().await, Outcome::Ok(value + 1));
                }
            });
            let (books, dropped) = twin.ledger.take();
            assert_eq!((books.counts(), dropped), ((0, 0, n, 0, 0), 0));
            let last = books.last_result.unwrap();
            assert!((1..=n).contains(&last), "last result {last}");
        }),
        |n| {
            block_on_settled(&rt, async {
                let handles: Vec<_> = (0..n).map(|value| invoke(&runtime, value)).collect();
                for (value, handle) in (0..n).zip(handles) {
                    assert_eq!(handle.await.unwrap(), value + 1);
                }
            });
            assert_empty(&runtime);
        },
    )
}

const KEYS: u64 = 16;

fn use_existing(config: &Config) -> Vec<Line> {
    let rt = current_thread();
    let runtime = runtime_in(&rt, yield_job().use_existing());
    let in_flight: Arc<Mutex<HashMap<u64, SharedJob>>> = Arc::default();
    run_row(
        config,
        "use_existing (16 keys)",
        |n| {
            block_on_settled(&rt, async {
                let callers: Vec<SharedJob> = (0..n)
                    .map(|value| {
                        let key = black_box(value % KEYS);
                        in_flight
                            .lock()
                            .unwrap()
                            .entry(key)
                            .or_insert_with(|| {
                                let in_flight = Arc::clone(&in_flight);
                                let task = tokio::spawn(async move {
                                    let result = job(key).await;
                                    in_flight.lock().unwrap().remove(&key);
                                    result
                                });
                                async move { task.await.unwrap() }.boxed().shared()
                            })
                            .clone()
                    })
                    .collect();
                for (value, caller) in (0..n).zip(callers) {
                    assert_eq!(caller.await, value % KEYS + 1);
                }
            });
            assert!(in_flight.lock().unwrap().is_empty());
        },
        None,
        |n| {
            block_on_settled(&rt, async {
                let handles: Vec<_> = (0..n).map(|value| invoke(&runtime, value % KEYS)).collect();
                assert_eq!(runtime.live_counts().0 as u64, KEYS.min(n));
                for (value, handle) in (0..n).zip(handles) {
                    assert_eq!(handle.await.unwrap(), value % KEYS + 1);
                }
            });
            assert_empty(&runtime);
        },
    )
}

fn print_burst_table(lines: &[Line], config: &Config) {
    println!(
        "### Bursts (current-thread tokio runtime; median of {} bursts per side, ns per \
         invocation)\n",
        config.repeats
    );
    println!(
        "| row | N | tokio ns (min-max) | books ns (min-max) | pipelines ns (min-max) \
         | pipelines / tokio | pipelines / books | tokio allocs/inv | books allocs/inv \
         | pipelines allocs/inv |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for line in lines {
        let books = line.books.as_ref();
        println!(
            "| {} | {} | {} | {} | {} | {:.2} | {} | {:.2} | {} | {:.2} |",
            line.row,
            fmt_count(line.n),
            line.tokio.nanos(),
            books.map_or("-".to_owned(), Stats::nanos),
            line.pipelines.nanos(),
            line.pipelines.median / line.tokio.median,
            books.map_or("-".to_owned(), |books| format!(
                "{:.2}",
                line.pipelines.median / books.median
            )),
            line.tokio.allocations,
            books.map_or("-".to_owned(), |books| format!("{:.2}", books.allocations)),
            line.pipelines.allocations,
        );
    }
    println!();
}

// ---------------------------------------------------------------------------------------
// Synchronous invoke and one await.

#[inline(never)]
fn inc(value: u64) -> u64 {
    value.wrapping_add(1)
}

/// Measures `calls` calls of `call` (given the call's index) `repeats` times.
fn per_call(calls: u64, repeats: usize, mut call: impl FnMut(u64)) -> Stats {
    call(0);
    let samples: Vec<Sample> = (0..repeats)
        .map(|_| {
            sample(calls, || {
                for i in 0..calls {
                    call(i);
                }
            })
        })
        .collect();
    Stats::of(&samples)
}

/// One line of the pair table: the case, the calls per run, the hand-written side, its
/// bookkeeping twin (if the case has one) and the pipelines side.
type PairLine<'a> = (&'a str, u64, Stats, Option<Stats>, Stats);

fn print_pair_table(title: &str, rows: &[PairLine<'_>], repeats: usize) {
    println!("### {title} (median of {repeats} runs, ns per call)\n");
    println!(
        "| case | calls per run | hand-written ns (min-max) | books ns (min-max) \
         | pipelines ns (min-max) | pipelines / hand-written | pipelines / books \
         | hand-written allocs/call | books allocs/call | pipelines allocs/call |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (case, calls, hand, books, pipelines) in rows {
        println!(
            "| {case} | {} | {} | {} | {} | {:.2} | {} | {:.2} | {} | {:.2} |",
            fmt_count(*calls),
            hand.nanos(),
            books.as_ref().map_or("-".to_owned(), Stats::nanos),
            pipelines.nanos(),
            pipelines.median / hand.median,
            books.as_ref().map_or("-".to_owned(), |books| format!(
                "{:.2}",
                pipelines.median / books.median
            )),
            hand.allocations,
            books
                .as_ref()
                .map_or("-".to_owned(), |books| format!("{:.2}", books.allocations)),
            pipelines.allocations,
        );
    }
    println!();
}

fn sync_and_one_await(config: &Config) {
    // Synchronous: no tokio runtime at all.
    let calls = config.largest() * 10;
    let inc_3 = pipeline!(|value: u64, _ctx: &()| {
        value = value + 1;
        value = value + 1;
        value = value + 1;
    });
    let runtime = Runtime::builder(())
        .register("inc-3", inc_3)
        .start()
        .unwrap();
    let started = Instant::now();
    let hand = per_call(calls, config.repeats, |i| {
        let result = inc(inc(inc(black_box(i))));
        assert_eq!(result, i + 3);
    });
    // Unrestricted, as the pipeline: a slot below a limit no count reaches.
    let twin = SyncTwin {
        ledger: Ledger::default(),
        slots: Gauge::new(usize::MAX),
    };
    let books = per_call(calls, config.repeats, |i| {
        let mut handle = twin.invoke(black_box(i));
        black_box(handle.ident);
        assert_eq!(handle.try_outcome(), Some(Outcome::Ok(i + 3)));
    });
    let (twin_books, dropped) = twin.ledger.take();
    // `per_call` makes one unmeasured call before the measured runs.
    let performed = calls * config.repeats as u64 + 1;
    assert_eq!(twin_books.counts(), (0, 0, performed, 0, 0));
    assert_eq!((twin_books.last_result, dropped), (Some(calls - 1 + 3), 0));
    assert_eq!(twin.slots.held(), 0);
    let by_name = per_call(calls, config.repeats, |i| {
        let result = runtime
            .invoke("inc-3", black_box(i))
            .unwrap()
            .try_result()
            .unwrap()
            .unwrap();
        assert_eq!(result, i + 3);
    });
    let inc_3 = runtime.handle::<u64>("inc-3").unwrap();
    let by_handle = per_call(calls, config.repeats, |i| {
        let result = inc_3
            .invoke(black_box(i))
            .unwrap()
            .try_result()
            .unwrap()
            .unwrap();
        assert_eq!(result, i + 3);
    });
    eprintln!(
        "  sync 3-step invoke: {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let sync_handle = (
        "sync 3-step invoke (typed handle) vs 3 calls",
        calls,
        hand.clone(),
        Some(books),
        by_handle,
    );
    let sync_name = (
        "sync 3-step invoke (by name) vs 3 calls",
        calls,
        hand,
        None,
        by_name,
    );

    // One await, on a current-thread tokio runtime; a run is one `block_on`.
    let ops = config.largest();
    let rt = current_thread();
    let one_await = pipeline!(|value: u64, _ctx: &()| {
        tokio::task::yield_now().await;
    });
    let runtime = {
        let _inside = rt.enter();
        Runtime::builder(())
            .register("one-await", one_await)
            .start()
            .unwrap()
    };
    let started = Instant::now();
    let run = |spawn: bool| {
        sample(ops, || {
            block_on_settled(&rt, async {
                for i in 0..ops {
                    let value = black_box(i);
                    let result = if spawn {
                        tokio::spawn(async move {
                            tokio::task::yield_now().await;
                            value
                        })
                        .await
                        .unwrap()
                    } else {
                        runtime.invoke("one-await", value).unwrap().await.unwrap()
                    };
                    assert_eq!(result, i);
                }
            })
        })
    };
    run(true);
    run(false);
    let mut hand = Vec::new();
    let mut pipelines = Vec::new();
    for repeat in 0..config.repeats {
        if repeat % 2 == 0 {
            hand.push(run(true));
            pipelines.push(run(false));
        } else {
            pipelines.push(run(false));
            hand.push(run(true));
        }
    }
    eprintln!("  one await: {:.2} s", started.elapsed().as_secs_f64());
    let one = (
        "one await: invoke + await vs tokio::spawn + await",
        ops,
        Stats::of(&hand),
        None,
        Stats::of(&pipelines),
    );
    print_pair_table(
        "Synchronous invoke and one await",
        &[sync_handle, sync_name, one],
        config.repeats,
    );
}

// ---------------------------------------------------------------------------------------
// Multi-thread scaling.

const BATCH: u64 = 1_000;
const PER_KEY_KEYS: u64 = 1_000;

/// Runs `per_thread(thread, count)` on `threads` OS threads at once and returns the
/// throughput in invocations per second (`threads * count` invocations).
fn throughput(threads: usize, count: u64, per_thread: impl Fn(u64, u64) + Sync) -> f64 {
    let barrier = Barrier::new(threads + 1);
    let mut start = None;
    std::thread::scope(|scope| {
        for thread in 0..threads {
            let (barrier, per_thread) = (&barrier, &per_thread);
            scope.spawn(move || {
                barrier.wait();
                per_thread(thread as u64, count);
            });
        }
        barrier.wait();
        start = Some(Instant::now());
    });
    let elapsed = start.unwrap().elapsed();
    (threads as u64 * count) as f64 / elapsed.as_secs_f64()
}

/// One thread's share: batches of `BATCH` started by `start`, then awaited and checked.
async fn batches<F, H>(thread: u64, count: u64, start: F)
where
    F: Fn(u64) -> H,
    H: Future<Output = u64>,
{
    let mut done = 0;
    while done < count {
        let batch = BATCH.min(count - done);
        let first = thread * count + done;
        let handles: Vec<H> = (first..first + batch).map(&start).collect();
        let mut sum = 0;
        for handle in handles {
            sum += handle.await;
        }
        // Each job returns its value + 1.
        assert_eq!(sum, (first + 1..=first + batch).sum::<u64>());
        done += batch;
    }
}

struct ScalingLine {
    workers: usize,
    case: &'static str,
    spawn: Stats,
    pipelines: Stats,
    per_key: Option<Stats>,
}

/// Throughput statistics in invocations per second, from `repeats` measurements.
fn rate_stats(rates: &mut [f64]) -> Stats {
    let median_rate = median(rates);
    Stats {
        median: median_rate,
        min: rates[0],
        max: rates[rates.len() - 1],
        allocations: f64::NAN,
    }
}

fn fmt_rate(rate: &Stats) -> String {
    format!(
        "{:.2} M ({:.2}-{:.2})",
        rate.median / 1e6,
        rate.min / 1e6,
        rate.max / 1e6
    )
}

fn scaling(config: &Config) -> Vec<ScalingLine> {
    // A contended atomic in the allocator would tax the side that allocates more.
    COUNTING.store(false, Ordering::Relaxed);
    let total = config.largest() * 2;
    let mut lines = Vec::new();
    for workers in [1_usize, 2, 4] {
        let started = Instant::now();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
            .unwrap();
        let handle = rt.handle().clone();
        let unrestricted = Runtime::builder(())
            .executor(handle.clone())
            .register("work", yield_job())
            .start()
            .unwrap();
        let per_key = Runtime::builder(())
            .executor(handle.clone())
            .register(
                "work",
                yield_job()
                    .enqueued()
                    .queue_by(|value: &u64| format!("k{}", value % PER_KEY_KEYS)),
            )
            .start()
            .unwrap();
        let locks: Arc<Vec<tokio::sync::Mutex<()>>> = Arc::new(
            (0..PER_KEY_KEYS)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
        );
        let count = total / workers as u64;

        let spawn_run = || {
            throughput(workers, count, |thread, count| {
                handle.block_on(batches(thread, count, |value| {
                    let task = tokio::spawn(job(black_box(value)));
                    async move { task.await.unwrap() }
                }))
            })
        };
        let pipelines_run = |runtime: &Runtime<()>| {
            throughput(workers, count, |thread, count| {
                handle.block_on(batches(thread, count, |value| {
                    let invocation = invoke(runtime, value);
                    async move { invocation.await.unwrap() }
                }))
            })
        };
        let per_key_run = || {
            throughput(workers, count, |thread, count| {
                handle.block_on(batches(thread, count, |value| {
                    let locks = Arc::clone(&locks);
                    let task = tokio::spawn(async move {
                        let _turn = locks[(value % PER_KEY_KEYS) as usize].lock().await;
                        job(black_box(value)).await
                    });
                    async move { task.await.unwrap() }
                }))
            })
        };

        // Warm-up, then the measurements interleaved.
        spawn_run();
        pipelines_run(&unrestricted);
        pipelines_run(&per_key);
        per_key_run();
        let (mut spawns, mut plain, mut keyed, mut hand_keyed) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..config.repeats {
            spawns.push(spawn_run());
            plain.push(pipelines_run(&unrestricted));
            keyed.push(pipelines_run(&per_key));
            hand_keyed.push(per_key_run());
        }
        // No instance left, and no per-key queue (they are forgotten when they empty).
        assert_eq!(unrestricted.live_counts().0, 0);
        assert_eq!(per_key.live_counts(), (0, 0));
        let spawn = rate_stats(&mut spawns);
        lines.push(ScalingLine {
            workers,
            case: "(a) unrestricted",
            spawn: spawn.clone(),
            pipelines: rate_stats(&mut plain),
            per_key: None,
        });
        lines.push(ScalingLine {
            workers,
            case: "(b) enqueued per key, 1,000 keys",
            spawn,
            pipelines: rate_stats(&mut keyed),
            per_key: Some(rate_stats(&mut hand_keyed)),
        });
        eprintln!(
            "  scaling, {workers} worker(s): {:.2} s",
            started.elapsed().as_secs_f64()
        );
    }
    COUNTING.store(true, Ordering::Relaxed);
    lines
}

fn print_scaling_table(lines: &[ScalingLine], config: &Config) {
    println!(
        "### Multi-thread scaling (invocations per second, median of {} runs of {} \
         invocations; as many invoking OS threads as workers, {} per batch)\n",
        config.repeats,
        fmt_count(config.largest() * 2),
        fmt_count(BATCH)
    );
    println!(
        "| workers = invoking threads | case | tokio::spawn (min-max) | pipelines (min-max) \
         | time ratio pipelines / spawn | hand-written per-key Mutex + spawn (min-max) |"
    );
    println!("| ---: | --- | ---: | ---: | ---: | ---: |");
    for line in lines {
        println!(
            "| {} | {} | {} | {} | {:.2} | {} |",
            line.workers,
            line.case,
            fmt_rate(&line.spawn),
            fmt_rate(&line.pipelines),
            line.spawn.median / line.pipelines.median,
            line.per_key.as_ref().map_or("-".to_owned(), fmt_rate),
        );
    }
    println!();
}

// ---------------------------------------------------------------------------------------
// Heap per suspended instance.

const SUSPENDED: usize = 10_000;

/// Yields often enough for every task spawned so far to have been polled once (a
/// current-thread runtime polls at most 61 tasks between two polls of `block_on`'s
/// future).
async fn let_tasks_run(tasks: usize) {
    for _ in 0..tasks / 16 + 64 {
        tokio::task::yield_now().await;
    }
}

struct HeapLine {
    side: &'static str,
    per_instance: f64,
    handle_size: usize,
    left_after: isize,
}

fn heap_per_suspended() -> Vec<HeapLine> {
    let rt = current_thread();
    let forever = pipeline!(|value: u64, _ctx: &()| {
        std::future::pending::<()>().await;
    });
    let runtime = {
        let _inside = rt.enter();
        Runtime::builder(())
            .register("forever", forever)
            .start()
            .unwrap()
    };
    // Warm up both sides at full size (the scheduler's run queue and the registry's tables
    // grow to hold them and keep their capacity), unmeasured.
    let warm_up = SUSPENDED;
    rt.block_on(async {
        let handles: Vec<_> = (0..warm_up)
            .map(|value| runtime.invoke("forever", value as u64).unwrap())
            .collect();
        let tasks: Vec<_> = (0..warm_up)
            .map(|_| tokio::spawn(std::future::pending::<()>()))
            .collect();
        let_tasks_run(2 * warm_up).await;
        for handle in &handles {
            assert!(handle.cancel());
        }
        for task in &tasks {
            task.abort();
        }
        for handle in handles {
            assert!(handle.await.unwrap_err().is_cancelled());
        }
        for task in tasks {
            assert!(task.await.unwrap_err().is_cancelled());
        }
    });
    assert_eq!(runtime.live_counts().0, 0);

    let mut lines = Vec::new();

    // tokio tasks on `pending()`.
    let mut tasks = Vec::with_capacity(SUSPENDED);
    let (per_task, left_after) = rt.block_on(async {
        let before = live_bytes();
        for _ in 0..SUSPENDED {
            tasks.push(tokio::spawn(std::future::pending::<()>()));
        }
        let_tasks_run(SUSPENDED).await;
        assert_eq!(rt.metrics().num_alive_tasks(), SUSPENDED);
        let delta = live_bytes() - before;
        for task in &tasks {
            task.abort();
        }
        for task in tasks.drain(..) {
            assert!(task.await.unwrap_err().is_cancelled());
        }
        let_tasks_run(SUSPENDED).await;
        (delta as f64 / SUSPENDED as f64, live_bytes() - before)
    });
    lines.push(HeapLine {
        side: "tokio::spawn(pending())",
        per_instance: per_task,
        handle_size: std::mem::size_of::<tokio::task::JoinHandle<()>>(),
        left_after,
    });

    // Pipeline instances suspended on `pending()`.
    let mut handles = Vec::with_capacity(SUSPENDED);
    let (per_instance, left_after) = rt.block_on(async {
        let before = live_bytes();
        for value in 0..SUSPENDED {
            handles.push(runtime.invoke("forever", value as u64).unwrap());
        }
        let_tasks_run(SUSPENDED).await;
        assert_eq!(runtime.live_counts().0, SUSPENDED);
        assert_eq!(rt.metrics().num_alive_tasks(), SUSPENDED);
        let delta = live_bytes() - before;
        for handle in &handles {
            assert!(handle.cancel());
        }
        for handle in handles.drain(..) {
            assert!(handle.await.unwrap_err().is_cancelled());
        }
        let_tasks_run(SUSPENDED).await;
        (delta as f64 / SUSPENDED as f64, live_bytes() - before)
    });
    assert_eq!(runtime.live_counts().0, 0);
    lines.push(HeapLine {
        side: "pipeline instance on pending()",
        per_instance,
        handle_size: std::mem::size_of::<Invocation<u64>>(),
        left_after,
    });
    lines
}

fn print_heap_table(lines: &[HeapLine]) {
    println!(
        "### Heap per suspended instance ({} live at once, current-thread runtime; the \
         handles' vector is allocated beforehand and not counted)\n",
        fmt_count(SUSPENDED as u64)
    );
    println!(
        "| side | heap bytes per instance | handle size (bytes, inline) | heap left after \
         cancelling all (bytes) |"
    );
    println!("| --- | ---: | ---: | ---: |");
    for line in lines {
        println!(
            "| {} | {:.1} | {} | {} |",
            line.side, line.per_instance, line.handle_size, line.left_after
        );
    }
    println!();
}

// ---------------------------------------------------------------------------------------

fn main() {
    let config = Config::from_env();
    let started = Instant::now();
    let cores = std::thread::available_parallelism().map_or(0, |cores| cores.get());
    println!(
        "## bursts: pipelines vs hand-written tokio\n\nsizes {}, {} measured run(s) per side, \
         {cores} core(s), release build; ratios = pipelines / hand-written (bare tokio) and \
         pipelines / books (the hand-written bookkeeping twin); above 1: pipelines is \
         slower\n",
        config
            .sizes
            .iter()
            .map(|&size| fmt_count(size))
            .collect::<Vec<_>>()
            .join(" / "),
        config.repeats
    );

    eprintln!("bursts:");
    let mut lines = Vec::new();
    lines.extend(restartable(&config));
    lines.extend(dropping(&config));
    lines.extend(enqueued(&config, true));
    lines.extend(enqueued(&config, false));
    lines.extend(keep_latest(&config));
    lines.extend(unrestricted(&config));
    lines.extend(use_existing(&config));
    print_burst_table(&lines, &config);

    eprintln!("synchronous invoke and one await:");
    sync_and_one_await(&config);

    eprintln!("multi-thread scaling:");
    let scaling = scaling(&config);
    print_scaling_table(&scaling, &config);

    eprintln!("heap per suspended instance:");
    let heap = heap_per_suspended();
    print_heap_table(&heap);

    let elapsed = started.elapsed();
    println!("total time: {:.1} s", elapsed.as_secs_f64());
}
