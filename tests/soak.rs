//! Soak: 8 threads issue random invoke and cancel operations against a mix of
//! behaviours on a multi-thread tokio runtime, round after round, on one pipelines
//! runtime. After every round the invariants hold (every handle resolved, every started
//! instance ran `finally!` once, every step future was dropped, enqueued instances started
//! in arrival order, never more than `max` held a slot, the registry is empty), and the
//! heap (counted by a global allocator) is back to where the first round left it.
//!
//! Continuations are in the mix: `forking` forks its continuation, attached
//! and detached, from the root and from a nested child, and some forks cancel themselves;
//! `resuming` resumes modified continuations, at the root and from a child in an
//! enqueued queue, at once and after a wait. Their steps really sleep, so cancellations
//! land while forks and resumed levels wait. The forks and resumes are counted in
//! the context (`Counts`), and the invariants cover them: see the checks after a round.
//!
//! The quick version (5 rounds of 10,000 operations) runs in the normal suite; the full
//! one, 10 rounds of 100,000 (1,000,000 operations), is ignored:
//! `cargo test --release --test soak -- --ignored --nocapture`.
// The counting allocator implements `GlobalAlloc`, an unsafe trait; it only forwards to
// the system allocator.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use pipewright::{
    pipeline, Cancel, Continuation, Current, EventKind, Ident, Invocation, Outcome, Pipeline,
    RestartPolicy, Runtime, Step, WeakRuntime,
};

struct Counting;

static ALLOCATED: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size() as isize, Ordering::Relaxed);
        System.alloc(layout)
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        ALLOCATED.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        System.dealloc(pointer, layout)
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, size: usize) -> *mut u8 {
        ALLOCATED.fetch_add(size as isize - layout.size() as isize, Ordering::Relaxed);
        System.realloc(pointer, layout, size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[derive(Default)]
struct Ctx {
    finally_runs: AtomicU64,
    futures_created: AtomicU64,
    futures_dropped: AtomicU64,
    /// Forks the runtime accepted (`fork` / `fork_detached` returned `Ok`), by kind.
    forks_attached: AtomicU64,
    forks_detached: AtomicU64,
    /// Forks refused for another reason than their instance being cancelled (that one
    /// is `Error::Cancelled`): none expected, their queue is unrestricted.
    forks_refused: AtomicU64,
    /// Forks refused because the forking instance was being cancelled meanwhile.
    forks_of_cancelled: AtomicU64,
    /// `finally!` runs at a fork's outermost level (the `forking` root's `finally!` on a
    /// forked value), and those that saw a cancellation.
    fork_finally_runs: AtomicU64,
    forks_cancelled: AtomicU64,
    /// Roots of `resuming` that resumed their own (modified) continuation: nothing ends.
    root_resumes: AtomicU64,
    /// Nested instances that resumed their continuation (at once, or after a wait): each
    /// goes on in place with its frame, and runs its `finally!` once, on the resumed value.
    children_resumed: AtomicU64,
    children_resumed_after_a_wait: AtomicU64,
    /// `finally!` runs of those (their value carries the `CHILD_RESUMED` mark).
    children_resumed_finally: AtomicU64,
}

/// Marks on the values (invocations take 0..8; steps only add small numbers): a fork
/// goes on from its capturer's value marked `FORKED` (and `CANCELS` if it is to cancel
/// itself), a resumed continuation from one marked `ROOT_RESUMED` or `CHILD_RESUMED`.
/// Only unmarked values fork or resume (so nothing does it twice), and `finally!` tells
/// by the mark what it closes.
const FORKED: u64 = 1 << 40;
const CANCELS: u64 = 1 << 41;
const ROOT_RESUMED: u64 = 1 << 42;
const CHILD_RESUMED: u64 = 1 << 43;

/// The queue of `resuming`'s nested child (a level that resumes keeps its slot there).
const RESUMED_QUEUE: &str = "resumed-frames";
const RESUMED_MAX: usize = 8;

struct Token(Arc<Ctx>);

impl Drop for Token {
    fn drop(&mut self) {
        self.0.futures_dropped.fetch_add(1, Ordering::Relaxed);
    }
}

fn work() -> Pipeline<u64, Arc<Ctx>> {
    pipeline!(|value: u64, ctx: &Arc<Ctx>| {
        {
            ctx.futures_created.fetch_add(1, Ordering::Relaxed);
            let token = Token(ctx.clone());
            async move {
                for _ in 0..(value % 3) {
                    tokio::task::yield_now().await;
                }
                drop(token);
            }
        }
        .await;
        value = value + 1;
        finally!(|error| {
            {
                ctx.finally_runs.fetch_add(1, Ordering::Relaxed);
            };
        });
    })
}

/// `work` nested in a parent: both levels run `finally!`.
fn nested() -> Pipeline<u64, Arc<Ctx>> {
    let child = work().enqueued().max(2);
    pipeline!(|value: u64, ctx: &Arc<Ctx>| {
        value = &child;
        finally!(|error| {
            {
                ctx.finally_runs.fetch_add(1, Ordering::Relaxed);
            };
        });
    })
}

/// Odd values fail at once, are retried under a policy with a tiny period (which must
/// give up, not spin), then rescued.
fn retrying() -> Pipeline<u64, Arc<Ctx>> {
    pipeline!(|value: u64, ctx: &Arc<Ctx>| {
        value = if value % 2 == 1 {
            Err::<u64, _>("odd")
        } else {
            Ok(value)
        };
        rescue!(|error| {
            value = value;
        });
        finally!(|error| {
            {
                ctx.finally_runs.fetch_add(1, Ordering::Relaxed);
            };
        });
    })
    .retry(RestartPolicy::new(2, Duration::from_millis(1)).unwrap())
}

/// A step future tracked by a `Token` that waits: it yields, then, unless the value is a
/// multiple of 4, really sleeps (100 to 300 µs by the value; tokio's timer makes that
/// about a millisecond), so the random cancellations land while forks and resumed frames
/// wait. Started on an invoking thread (no tokio context), it yields until it goes on on
/// the executor.
fn sleeping(ctx: &Arc<Ctx>, value: u64) -> impl Future<Output = ()> + Send + 'static {
    ctx.futures_created.fetch_add(1, Ordering::Relaxed);
    let token = Token(ctx.clone());
    async move {
        tokio::task::yield_now().await;
        while tokio::runtime::Handle::try_current().is_err() {
            tokio::task::yield_now().await;
        }
        if value % 4 != 0 {
            tokio::time::sleep(Duration::from_micros(100 * (value % 4))).await;
        }
        drop(token);
    }
}

/// The `finally!` of `forking`: counts the run, and a fork's (whose outermost level is
/// `forking`'s rest, wherever it was captured).
fn forking_finally(ctx: &Ctx, value: u64, error: Option<&pipewright::Error>) {
    ctx.finally_runs.fetch_add(1, Ordering::Relaxed);
    if value & FORKED != 0 {
        ctx.fork_finally_runs.fetch_add(1, Ordering::Relaxed);
        if error.is_some_and(pipewright::Error::is_cancelled) {
            ctx.forks_cancelled.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Forks the rest of the run with a marked value (to cancel itself once `forking`'s
/// child is done if `cancels`), attached or detached, and counts it.
fn fork_with(
    ctx: &Ctx,
    current: &Current<'_, u64, Arc<Ctx>>,
    value: u64,
    detached: bool,
    cancels: bool,
) {
    let mark = if cancels { FORKED | CANCELS } else { FORKED };
    let rest = current.continuation().with_value(value | mark);
    let forked = if detached {
        current.fork_detached(rest)
    } else {
        current.fork(rest)
    };
    let counter = match forked {
        Ok(_) if detached => &ctx.forks_detached,
        Ok(_) => &ctx.forks_attached,
        Err(error) if error.is_cancelled() => &ctx.forks_of_cancelled,
        Err(_) => &ctx.forks_refused,
    };
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Forks at two levels. An invocation with 1 (5) forks the root's rest, attached
/// (detached), at its first step: the fork runs the sleep, the nested child, and the rest
/// of the root with its `finally!`. With 3 (7), the nested child forks its continuation
/// (its rest, then the root's), attached (detached), after a sleep. The forks go on
/// while the step that forked carries on. The forks from 3 and 5 cancel themselves once
/// the child is done: the attached fork's cancellation climbs (through the child) to the
/// root, the detached one's does not. Forks join the root's queue, unrestricted, so
/// they always start.
fn forking() -> Pipeline<u64, Arc<Ctx>> {
    let child = forking_child();
    pipeline!(|value: u64, ctx: &Arc<Ctx>, current| {
        {
            if value == 1 || value == 5 {
                fork_with(ctx, current, value, value == 5, value == 5);
            }
        };
        sleeping(ctx, value).await;
        value = &child;
        {
            (value & CANCELS != 0).then_some(Cancel)
        };
        value = value + 1;
        finally!(|error| {
            forking_finally(ctx, value, error);
        });
    })
}

fn forking_child() -> Pipeline<u64, Arc<Ctx>> {
    pipeline!(|value: u64, ctx: &Arc<Ctx>, current| {
        sleeping(ctx, value + 1).await;
        {
            if value == 3 || value == 7 {
                fork_with(ctx, current, value, value == 7, value == 3);
            }
        };
        sleeping(ctx, value).await;
        value = value + 1;
        finally!(|error| {
            {
                ctx.finally_runs.fetch_add(1, Ordering::Relaxed);
            };
        });
    })
}

/// A pipeline with `finally!` that resumed continuations run as an inserted step.
fn inserted() -> Pipeline<u64, Arc<Ctx>> {
    pipeline!(|value: u64, ctx: &Arc<Ctx>| {
        sleeping(ctx, value).await;
        value = value + 1;
        finally!(|error| {
            {
                ctx.finally_runs.fetch_add(1, Ordering::Relaxed);
            };
        });
    })
}

/// Resumes at two levels. An invocation with 1 resumes the root's own continuation from
/// a synchronous step (5: from a step that sleeps first), from a marked value, with the
/// `inserted` pipeline inserted in front and a step pushed at the end: the root goes on
/// with it, nothing ends. With 3 (7), the nested child, in an enqueued queue, resumes its
/// continuation (its rest, then the root's) from a synchronous step (a step that sleeps
/// first) from a marked value (with a step pushed): the child goes on in place with its
/// frame, keeping its slot, and the root adopts its own frame when the child ends.
fn resuming() -> Pipeline<u64, Arc<Ctx>> {
    let child = resuming_child()
        .enqueued()
        .max(RESUMED_MAX)
        .queue(RESUMED_QUEUE);
    let inserted = inserted();
    pipeline!(|value: u64, ctx: &Arc<Ctx>, current| {
        {
            if value == 1 {
                ctx.root_resumes.fetch_add(1, Ordering::Relaxed);
                Some(modified(current.continuation(), value, &inserted))
            } else {
                None
            }
        };
        {
            let rest = (value == 5).then(|| modified(current.continuation(), value, &inserted));
            let ctx = ctx.clone();
            async move {
                let rest = rest?;
                sleeping(&ctx, value).await;
                ctx.root_resumes.fetch_add(1, Ordering::Relaxed);
                Some(rest)
            }
        }
        .await;
        value = &child;
        sleeping(ctx, value).await;
        value = value + 1;
        finally!(|error| {
            {
                ctx.finally_runs.fetch_add(1, Ordering::Relaxed);
            };
        });
    })
}

/// The root's continuation from a marked value, with `inserted` in front and a step
/// pushed at the end.
fn modified(
    mut rest: Continuation<u64, Arc<Ctx>>,
    value: u64,
    inserted: &Pipeline<u64, Arc<Ctx>>,
) -> Continuation<u64, Arc<Ctx>> {
    rest.innermost_mut().set_value(value | ROOT_RESUMED);
    rest.innermost_mut().insert(inserted.clone());
    rest.innermost_mut().push(plus_one());
    rest
}

fn resuming_child() -> Pipeline<u64, Arc<Ctx>> {
    pipeline!(|value: u64, ctx: &Arc<Ctx>, current| {
        {
            if value == 3 {
                // Counted when the continuation is returned: the instance goes on with it.
                ctx.children_resumed.fetch_add(1, Ordering::Relaxed);
                let mut rest = current.continuation().with_value(value | CHILD_RESUMED);
                rest.innermost_mut().push(plus_one());
                Some(rest)
            } else {
                None
            }
        };
        {
            let rest =
                (value == 7).then(|| current.continuation().with_value(value | CHILD_RESUMED));
            let ctx = ctx.clone();
            async move {
                let rest = rest?;
                sleeping(&ctx, value).await;
                ctx.children_resumed_after_a_wait
                    .fetch_add(1, Ordering::Relaxed);
                ctx.children_resumed.fetch_add(1, Ordering::Relaxed);
                Some(rest)
            }
        }
        .await;
        sleeping(ctx, value).await;
        value = value + 1;
        finally!(|error| {
            {
                ctx.finally_runs.fetch_add(1, Ordering::Relaxed);
                if value & CHILD_RESUMED != 0 {
                    ctx.children_resumed_finally.fetch_add(1, Ordering::Relaxed);
                }
            };
        });
    })
}

fn plus_one() -> Step<u64, Arc<Ctx>> {
    Step::new(|value: &u64, _: &Arc<Ctx>| Outcome::Value(value + 1))
}

/// A registration name, its pipeline, and its max live if it is restricted.
type Entry = (&'static str, Pipeline<u64, Arc<Ctx>>, Option<usize>);

fn pipelines() -> Vec<Entry> {
    vec![
        ("unrestricted", work(), None),
        ("restartable", work().restartable().max(2), Some(2)),
        ("dropping", work().dropping().max(3), Some(3)),
        ("enqueued", work().enqueued().max(3), Some(3)),
        ("keep-latest", work().keep_latest().max(2), Some(2)),
        (
            "use-existing",
            work().enqueued().max(2).use_existing(),
            Some(2),
        ),
        ("nested", nested(), None),
        ("retrying", retrying(), None),
        ("forking", forking(), None),
        ("resuming", resuming(), None),
    ]
}

/// One invocation of a soak thread, and whether the thread cancelled it.
struct Invoked {
    handle: Invocation<u64>,
    name: &'static str,
    argument: u64,
    cancelled: bool,
}

#[derive(Default)]
struct Watch {
    started: u64,
    lagged: u64,
    admitted: HashMap<String, Vec<Ident>>,
    started_order: HashMap<String, Vec<Ident>>,
    over_max: Vec<String>,
}

/// Appends `ident` to `queue`'s list (the queue's name is copied once per round).
fn record(lists: &mut HashMap<String, Vec<Ident>>, queue: &str, ident: &Ident) {
    match lists.get_mut(queue) {
        Some(list) => list.push(ident.clone()),
        None => {
            lists.insert(queue.to_owned(), vec![ident.clone()]);
        }
    }
}

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

fn soak(rounds: u64, operations: u64) {
    const THREADS: u64 = 8;
    let tokio_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let ctx = Arc::new(Ctx::default());
    let watch = Arc::new(Mutex::new(Watch::default()));
    let maxima: HashMap<&str, usize> = pipelines()
        .iter()
        .filter_map(|(name, _, max)| max.map(|max| (*name, max)))
        .chain([(RESUMED_QUEUE, RESUMED_MAX)])
        .collect();
    let weak: Arc<OnceLock<WeakRuntime<Arc<Ctx>>>> = Arc::default();
    let (seen, from_watcher) = (watch.clone(), weak.clone());
    let checking = Arc::new(AtomicBool::new(true));
    let check_max = checking.clone();
    let mut builder = Runtime::builder(ctx.clone())
        .executor(tokio_runtime.handle().clone())
        .watcher(move |event| {
            // The other kinds are not counted: they cost no lock and no allocation, so
            // the watcher keeps up with the waits of the continuations' steps too.
            if !matches!(
                event.kind(),
                EventKind::Lagged { .. } | EventKind::Admitted | EventKind::Started
            ) {
                return;
            }
            let mut watch = seen.lock().unwrap();
            let watch = &mut *watch;
            let queue = event.queue();
            match event.kind() {
                EventKind::Lagged { missed } => watch.lagged += missed,
                EventKind::Admitted => record(&mut watch.admitted, queue, event.ident()),
                EventKind::Started => {
                    watch.started += 1;
                    // Sampled: the watcher may query the runtime (no lock is held).
                    if check_max.load(Ordering::Relaxed) && watch.started % 16 == 0 {
                        if let (Some(max), Some(runtime)) = (
                            maxima.get(queue),
                            from_watcher.get().and_then(WeakRuntime::upgrade),
                        ) {
                            let running = runtime.queue_info(queue).map_or(0, |q| q.running());
                            if running > *max {
                                watch.over_max.push(format!("{queue}: {running} live"));
                            }
                        }
                    }
                    record(&mut watch.started_order, queue, event.ident());
                }
                _ => {}
            }
        });
    for (name, pipeline, _) in pipelines() {
        builder = builder.register(name, pipeline);
    }
    let runtime = builder.start().unwrap();
    weak.set(runtime.downgrade()).unwrap();
    let names: Vec<&str> = pipelines().iter().map(|(name, _, _)| *name).collect();

    let mut settled = None;
    let mut before = Counts::of(&ctx);
    for round in 0..rounds {
        let threads: Vec<_> = (0..THREADS)
            .map(|thread| {
                let runtime = runtime.clone();
                let names = names.clone();
                std::thread::spawn(move || {
                    let mut random = Random((round + 1) * 1_000_003 + thread * 7919 + 1);
                    let mut handles: Vec<Invoked> = Vec::new();
                    for _ in 0..operations / THREADS {
                        let draw = random.next();
                        if draw % 5 == 0 && !handles.is_empty() {
                            let index = (random.next() % handles.len() as u64) as usize;
                            handles[index].handle.cancel();
                            handles[index].cancelled = true;
                        } else {
                            // Not `draw % len`: with 10 names, draws ≡ 0 (mod 5) cancel, so
                            // the names at 0 and 5 would never be drawn.
                            let name = names[(draw / 5 % names.len() as u64) as usize];
                            let argument = random.next() % 8;
                            handles.push(Invoked {
                                handle: runtime.invoke(name, argument).unwrap(),
                                name,
                                argument,
                                cancelled: false,
                            });
                        }
                    }
                    handles
                })
            })
            .collect();
        let handles: Vec<Invoked> = threads
            .into_iter()
            .flat_map(|thread| thread.join().unwrap())
            .collect();
        let count = handles.len();
        // Roots of `forking` from 3 whose attached fork's cancellation reached them.
        let mut climbed = 0;
        tokio_runtime.block_on(async {
            for invoked in handles {
                let result = tokio::time::timeout(Duration::from_secs(60), invoked.handle)
                    .await
                    .expect("every handle resolves");
                if let Err(error) = &result {
                    assert!(error.is_cancelled() || error.is_dropped(), "{error:#}");
                }
                // Nothing else cancels `forking` and `resuming` roots (unrestricted) but
                // their own thread, and the self-cancelling attached fork from 3, which
                // climbs to its root unless the root ended first (the fork and the root
                // go on side by side). The detached fork from 5 cancels itself too, and
                // must not reach its root.
                let (name, argument) = (invoked.name, invoked.argument);
                if invoked.cancelled || !matches!(name, "forking" | "resuming") {
                    continue;
                }
                if name == "forking" && argument == 3 {
                    climbed += u64::from(result.is_err());
                } else {
                    assert!(
                        result.is_ok(),
                        "round {round}: {name} from {argument}: {result:?}"
                    );
                }
            }
        });
        // Wait until every instance is gone (cancelled ones may still run `finally!`).
        for _ in 0..10_000 {
            if runtime.live_counts().0 == 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        // And until the watcher has caught up with the events (delivery may have been
        // handed to a thread of its own).
        for _ in 0..10_000 {
            if watch.lock().unwrap().started == owed_finally(&ctx) {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(20));
        let (live, queues) = runtime.live_counts();
        // One queue per registered name, and the nested children's own: `nested`'s,
        // `forking`'s, `resuming`'s (named `RESUMED_QUEUE`) and `inserted`'s (forks and
        // resumed frames join their pipelines' queues, and add none).
        assert_eq!(
            (live, queues),
            (0, names.len() + 4),
            "round {round}: nothing left behind"
        );
        {
            let mut watch = watch.lock().unwrap();
            assert_eq!(watch.over_max, Vec::<String>::new(), "round {round}");
            assert_eq!(watch.lagged, 0, "round {round}: the watcher kept up");
            // Forks are instances like any child (they have their `Started`); a level that
            // resumed goes on in place, so it is one instance with one `finally!`.
            assert_eq!(
                owed_finally(&ctx),
                watch.started,
                "finally! once per started instance"
            );
            for queue in ["enqueued", "use-existing", "keep-latest", RESUMED_QUEUE] {
                let started = watch.started_order.get(queue).cloned().unwrap_or_default();
                let admitted: Vec<Ident> = watch.admitted[queue]
                    .iter()
                    .filter(|ident| started.contains(ident))
                    .cloned()
                    .collect();
                assert_eq!(
                    started, admitted,
                    "round {round}: {queue} started in arrival order"
                );
            }
            // Forget this round's traces so the next round's memory is comparable.
            watch.admitted = HashMap::new();
            watch.started_order = HashMap::new();
        }
        assert_eq!(
            ctx.futures_created.load(Ordering::Relaxed),
            ctx.futures_dropped.load(Ordering::Relaxed),
            "every step future was dropped"
        );
        let now = Counts::of(&ctx);
        let this_round = now.minus(&before);
        println!(
            "round {round}: {} forks ({} attached, {} cancelled, {climbed} cancelled their \
             root), {} root resumes, {} children resumed ({} after a wait)",
            this_round.forks_attached + this_round.forks_detached,
            this_round.forks_attached,
            this_round.forks_cancelled,
            this_round.root_resumes,
            this_round.children_resumed,
            this_round.children_resumed_after_a_wait,
        );
        assert_eq!(now.forks_refused, 0, "round {round}: forks start");
        assert_eq!(
            now.fork_finally_runs,
            now.forks_attached + now.forks_detached,
            "round {round}: every fork ran its finally! once"
        );
        // A child that resumed goes on in place: it runs its own `finally!` once, on
        // the resumed value (it used to end and hand it to a frame that re-joined its
        // queue, which lost it when cancelled before that frame started).
        assert_eq!(
            now.children_resumed_finally, now.children_resumed,
            "round {round}: every child that resumed ran its finally! once: {now:?}"
        );
        // The workload did what it is for, this round.
        assert!(
            this_round.forks_attached > 0
                && this_round.forks_detached > 0
                && climbed > 0
                && this_round.forks_cancelled > 0
                && this_round.root_resumes > 0
                && this_round.children_resumed_after_a_wait > 0
                && this_round.children_resumed > this_round.children_resumed_after_a_wait,
            "round {round}: {this_round:?}"
        );
        before = now;
        // Watcher events may still be on their way: measure once the heap is still.
        let mut heap = ALLOCATED.load(Ordering::Relaxed);
        for _ in 0..200 {
            std::thread::sleep(Duration::from_millis(5));
            let now = ALLOCATED.load(Ordering::Relaxed);
            if now == heap {
                break;
            }
            heap = now;
        }
        let baseline = *settled.get_or_insert(heap);
        println!(
            "round {round}: {count} invocations, heap {heap} bytes ({:+} vs after round 0)",
            heap - baseline
        );
        // Back to where the first round ended, give or take a few small buffers (tokio's
        // and the registry's tables keep up to a few hundred slots): nothing accumulates.
        assert!(
            (heap - baseline).abs() < 256 * 1024,
            "round {round}: heap moved by {} bytes",
            heap - baseline
        );
    }
    checking.store(false, Ordering::Relaxed);
}

/// `finally!` runs so far: one is owed per started instance.
fn owed_finally(ctx: &Ctx) -> u64 {
    ctx.finally_runs.load(Ordering::Relaxed)
}

/// The fork and resume counters of `Ctx`, at one moment.
#[derive(Debug, Default)]
struct Counts {
    forks_attached: u64,
    forks_detached: u64,
    forks_refused: u64,
    fork_finally_runs: u64,
    forks_cancelled: u64,
    root_resumes: u64,
    children_resumed: u64,
    children_resumed_after_a_wait: u64,
    children_resumed_finally: u64,
}

impl Counts {
    fn of(ctx: &Ctx) -> Counts {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        Counts {
            forks_attached: load(&ctx.forks_attached),
            forks_detached: load(&ctx.forks_detached),
            forks_refused: load(&ctx.forks_refused),
            fork_finally_runs: load(&ctx.fork_finally_runs),
            forks_cancelled: load(&ctx.forks_cancelled),
            root_resumes: load(&ctx.root_resumes),
            children_resumed: load(&ctx.children_resumed),
            children_resumed_after_a_wait: load(&ctx.children_resumed_after_a_wait),
            children_resumed_finally: load(&ctx.children_resumed_finally),
        }
    }

    fn minus(&self, earlier: &Counts) -> Counts {
        Counts {
            forks_attached: self.forks_attached - earlier.forks_attached,
            forks_detached: self.forks_detached - earlier.forks_detached,
            forks_refused: self.forks_refused - earlier.forks_refused,
            fork_finally_runs: self.fork_finally_runs - earlier.fork_finally_runs,
            forks_cancelled: self.forks_cancelled - earlier.forks_cancelled,
            root_resumes: self.root_resumes - earlier.root_resumes,
            children_resumed: self.children_resumed - earlier.children_resumed,
            children_resumed_after_a_wait: self.children_resumed_after_a_wait
                - earlier.children_resumed_after_a_wait,
            children_resumed_finally: self.children_resumed_finally
                - earlier.children_resumed_finally,
        }
    }
}

#[test]
fn soak_quick() {
    soak(5, 10_000);
}

#[test]
#[ignore = "long: 1,000,000 operations; run with --release --ignored"]
fn soak_full() {
    soak(10, 100_000);
}
