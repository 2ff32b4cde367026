//! Soak (issue 6): 8 threads issue random invoke and cancel operations against a mix of
//! behaviours on a multi-thread tokio runtime, round after round, on one pipelines
//! runtime. After every round the invariants hold (every handle resolved, every started
//! instance ran `finally!` once, every step future was dropped, enqueued instances started
//! in arrival order, never more than `max` held a slot, the registry is empty), and the
//! heap (counted by a global allocator) is back to where the first round left it.
//!
//! The quick version (5 rounds of 10,000 operations) runs in the normal suite; the full
//! one, 10 rounds of 100,000 (1,000,000 operations), is ignored:
//! `cargo test --release --test soak -- --ignored --nocapture`.
// The counting allocator implements `GlobalAlloc`, an unsafe trait; it only forwards to
// the system allocator.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use pipelines::{
    pipeline, EventKind, Ident, Invocation, Pipeline, RestartPolicy, Runtime, WeakRuntime,
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
}

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
        value + 1;
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
        &child;
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
        if value % 2 == 1 {
            Err::<u64, _>("odd")
        } else {
            Ok(value)
        };
        rescue!(|error| {
            value;
        });
        finally!(|error| {
            {
                ctx.finally_runs.fetch_add(1, Ordering::Relaxed);
            };
        });
    })
    .retry(RestartPolicy::new(2, Duration::from_millis(1)).unwrap())
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
    ]
}

#[derive(Default)]
struct Watch {
    started: u64,
    lagged: u64,
    admitted: HashMap<String, Vec<Ident>>,
    started_order: HashMap<String, Vec<Ident>>,
    over_max: Vec<String>,
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
        .collect();
    let weak: Arc<OnceLock<WeakRuntime<Arc<Ctx>>>> = Arc::default();
    let (seen, from_watcher) = (watch.clone(), weak.clone());
    let checking = Arc::new(AtomicBool::new(true));
    let check_max = checking.clone();
    let mut builder = Runtime::builder(ctx.clone())
        .executor(tokio_runtime.handle().clone())
        .watcher(move |event| {
            let mut watch = seen.lock().unwrap();
            let queue = event.queue().to_owned();
            match event.kind() {
                EventKind::Lagged { missed } => watch.lagged += missed,
                EventKind::Admitted => watch
                    .admitted
                    .entry(queue)
                    .or_default()
                    .push(event.ident().clone()),
                EventKind::Started => {
                    watch.started += 1;
                    // Sampled: the watcher may query the runtime (no lock is held).
                    if check_max.load(Ordering::Relaxed) && watch.started % 16 == 0 {
                        if let (Some(max), Some(runtime)) = (
                            maxima.get(queue.as_str()),
                            from_watcher.get().and_then(WeakRuntime::upgrade),
                        ) {
                            let running = runtime.queue(&queue).map_or(0, |q| q.running());
                            if running > *max {
                                watch.over_max.push(format!("{queue}: {running} live"));
                            }
                        }
                    }
                    watch
                        .started_order
                        .entry(queue)
                        .or_default()
                        .push(event.ident().clone());
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
    for round in 0..rounds {
        let threads: Vec<_> = (0..THREADS)
            .map(|thread| {
                let runtime = runtime.clone();
                let names = names.clone();
                std::thread::spawn(move || {
                    let mut random = Random((round + 1) * 1_000_003 + thread * 7919 + 1);
                    let mut handles: Vec<Invocation<u64>> = Vec::new();
                    for _ in 0..operations / THREADS {
                        let draw = random.next();
                        if draw % 5 == 0 && !handles.is_empty() {
                            let index = (random.next() % handles.len() as u64) as usize;
                            handles[index].cancel();
                        } else {
                            let name = names[(draw % names.len() as u64) as usize];
                            let argument = random.next() % 8;
                            handles.push(runtime.invoke(name, argument).unwrap());
                        }
                    }
                    handles
                })
            })
            .collect();
        let handles: Vec<Invocation<u64>> = threads
            .into_iter()
            .flat_map(|thread| thread.join().unwrap())
            .collect();
        let count = handles.len();
        tokio_runtime.block_on(async {
            for handle in handles {
                let result = tokio::time::timeout(Duration::from_secs(60), handle)
                    .await
                    .expect("every handle resolves");
                if let Err(error) = result {
                    assert!(error.is_cancelled() || error.is_dropped(), "{error}");
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
            if watch.lock().unwrap().started == ctx.finally_runs.load(Ordering::Relaxed) {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(20));
        let (live, queues) = runtime.live_counts();
        // One queue per registered name, and the nested child's own.
        assert_eq!(
            (live, queues),
            (0, names.len() + 1),
            "round {round}: nothing left behind"
        );
        {
            let mut watch = watch.lock().unwrap();
            assert_eq!(watch.over_max, Vec::<String>::new(), "round {round}");
            assert_eq!(watch.lagged, 0, "round {round}: the watcher kept up");
            assert_eq!(
                ctx.finally_runs.load(Ordering::Relaxed),
                watch.started,
                "finally! once per started instance"
            );
            for queue in ["enqueued", "use-existing", "keep-latest"] {
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

#[test]
fn soak_quick() {
    soak(5, 10_000);
}

#[test]
#[ignore = "long: 1,000,000 operations; run with --release --ignored"]
fn soak_full() {
    soak(10, 100_000);
}
