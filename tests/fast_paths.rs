//! The fast paths of a root invocation: quick runs (a root that nothing observes runs
//! inside `invoke` without a registry entry while its steps are synchronous, and becomes
//! an ordinary instance at the first step that needs one) and parked waiting instances.
//! Everything a caller, a queue or another invocation can see must be what the ordinary
//! path shows.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use pipewright::{pipeline, Break, Invocation, Pipeline, Runtime, WeakRuntime};
use tokio::time::sleep;

#[derive(Default)]
struct Ctx {
    runtime: OnceLock<WeakRuntime<Ctx>>,
    log: Mutex<Vec<String>>,
    calls: AtomicU32,
    kept: Mutex<Option<Invocation<u32>>>,
}

impl Ctx {
    fn runtime(&self) -> Runtime<Ctx> {
        self.runtime.get().and_then(WeakRuntime::upgrade).unwrap()
    }

    fn log(&self, line: impl Into<String>) {
        self.log.lock().unwrap().push(line.into());
    }

    fn take_log(&self) -> Vec<String> {
        std::mem::take(&mut self.log.lock().unwrap())
    }
}

fn start(pipelines: Vec<(&str, Pipeline<u32, Ctx>)>) -> Runtime<Ctx> {
    let mut builder = Runtime::builder(Ctx::default());
    for (name, pipeline) in pipelines {
        builder = builder.register(name, pipeline);
    }
    let runtime = builder.start().unwrap();
    runtime.context().runtime.set(runtime.downgrade()).unwrap();
    runtime
}

/// Invokes `name` and takes the value it ended with inside `invoke`.
fn done<V, C>(runtime: &Runtime<C>, name: &str, argument: V) -> V
where
    V: Clone + Send + Sync + 'static,
    C: Send + Sync + 'static,
{
    let handle = runtime.handle::<V>(name).unwrap();
    handle
        .invoke(argument)
        .unwrap()
        .try_result()
        .unwrap()
        .unwrap()
}

#[test]
fn a_synchronous_invocation_keeps_the_queue_statistics_exact() {
    let double = pipeline!(|value: u32, _ctx: &Ctx| {
        value = value * 2;
    })
    .enqueued();
    let runtime = start(vec![("double", double)]);
    for value in 1..=3_u32 {
        assert_eq!(done(&runtime, "double", value), value * 2);
    }
    let queue = runtime.queue_info("double").unwrap();
    assert_eq!(queue.performed(), 3);
    assert_eq!(queue.running(), 0);
    assert_eq!(queue.waiting(), 0);
    assert_eq!(queue.last_result().unwrap().downcast_ref::<u32>(), Some(&6));
    assert!(runtime.active().is_empty());
}

/// The ident of the one instance `active()` lists from inside a step, as text.
fn listed_from_inside(ctx: &Ctx) -> Option<pipewright::Ident> {
    let active = ctx.runtime().active();
    let instances: Vec<_> = active.iter().flat_map(|queue| queue.instances()).collect();
    ctx.log(format!(
        "listed {} in {:?}",
        instances.len(),
        active.iter().map(|queue| queue.name()).collect::<Vec<_>>()
    ));
    instances.first().map(|instance| instance.ident().clone())
}

#[test]
fn a_step_that_asks_sees_its_own_quick_run_listed() {
    // The seed's "get-active from a running pipeline": nothing observes the runtime, so
    // the run starts without an entry; its step asks, and sees it.
    let p = pipeline!(|value: u32, ctx: &Ctx| {
        {
            let ident = listed_from_inside(ctx).unwrap();
            let info = ctx.runtime().instance(&ident).unwrap();
            ctx.log(format!(
                "{:?} {}",
                info.state(),
                ctx.runtime().live_counts().0
            ));
        };
        value = value + 1;
    });
    let runtime = start(vec![("p", p)]);
    let mut handle = runtime.handle::<u32>("p").unwrap().invoke(1).unwrap();
    // Still synchronous: the rest ran inline.
    assert_eq!(handle.try_result().unwrap().unwrap(), 2);
    assert_eq!(
        runtime.context().take_log(),
        ["listed 1 in [\"p\"]", "Running 1"]
    );
    assert!(runtime.active().is_empty());
    assert_eq!(runtime.live_counts().0, 0);
    let queue = runtime.queue_info("p").unwrap();
    assert_eq!((queue.running(), queue.performed()), (0, 1));
    assert_eq!(queue.last_result().unwrap().downcast_ref::<u32>(), Some(&2));
    // The next run asks again, and sees only itself.
    assert_eq!(done(&runtime, "p", 5_u32), 6);
    assert_eq!(
        runtime.context().take_log(),
        ["listed 1 in [\"p\"]", "Running 1"]
    );
}

#[test]
fn a_quick_run_cancelled_by_its_own_step_stops_there_and_runs_finally() {
    let p = pipeline!(|value: u32, ctx: &Ctx| {
        {
            let ident = listed_from_inside(ctx).unwrap();
            ctx.log(format!("cancel: {:?}", ctx.runtime().cancel(&ident)));
        };
        ctx.log("the next step ran");
        finally!(|error| {
            ctx.log(format!("finally {error:?}"));
        });
    });
    let runtime = start(vec![("p", p)]);
    let mut handle = runtime.invoke("p", 1_u32).unwrap();
    assert!(handle.try_result().unwrap().unwrap_err().is_cancelled());
    assert_eq!(
        runtime.context().take_log(),
        [
            "listed 1 in [\"p\"]",
            "cancel: Ok(())",
            "finally Some(Cancelled { reason: Requested, by_parent: false })"
        ]
    );
    assert_eq!(runtime.live_counts().0, 0);
    assert_eq!(runtime.queue_info("p").unwrap().running(), 0);
}

#[test]
fn a_quick_run_whose_step_stops_the_runtime_is_cancelled() {
    let p = pipeline!(|value: u32, ctx: &Ctx| {
        ctx.runtime().stop();
        ctx.log("the next step ran");
        finally!(|error| {
            ctx.log(format!("finally {error:?}"));
        });
    });
    let runtime = start(vec![("p", p)]);
    let mut handle = runtime.invoke("p", 1_u32).unwrap();
    assert!(handle.try_result().unwrap().unwrap_err().is_cancelled());
    assert_eq!(
        runtime.context().take_log(),
        ["finally Some(Cancelled { reason: Stopped, by_parent: false })"]
    );
    assert_eq!(runtime.live_counts().0, 0);
}

#[test]
fn a_quick_run_inside_another_s_step_sees_itself_and_each_goes_on() {
    let inner = pipeline!(|value: u32, ctx: &Ctx| {
        {
            listed_from_inside(ctx);
        };
        value = value * 10;
    });
    let outer = pipeline!(|value: u32, ctx: &Ctx| {
        {
            let inner = ctx.runtime().invoke("inner", value).unwrap().try_result();
            ctx.log(format!("inner {inner:?}"));
        };
        value = value + 1;
    });
    let runtime = start(vec![("inner", inner), ("outer", outer)]);
    assert_eq!(done(&runtime, "outer", 1_u32), 2);
    assert_eq!(
        runtime.context().take_log(),
        // The outer run waits on the inner one's stack: not listed from there (it is
        // from its own steps).
        ["listed 1 in [\"inner\"]", "inner Some(Ok(10))"]
    );
    assert_eq!(runtime.live_counts().0, 0);
}

#[test]
fn a_run_that_asked_then_started_one_that_asks_too_keeps_its_own_instance() {
    let inner = pipeline!(|value: u32, ctx: &Ctx| {
        {
            listed_from_inside(ctx);
        };
        value = value * 10;
    });
    let outer = pipeline!(|value: u32, ctx: &Ctx| {
        {
            listed_from_inside(ctx);
            let inner = ctx.runtime().invoke("inner", value).unwrap().try_result();
            ctx.log(format!("inner {inner:?}"));
        };
        value = value + 1;
    });
    let runtime = start(vec![("inner", inner), ("outer", outer)]);
    assert_eq!(done(&runtime, "outer", 1_u32), 2);
    assert_eq!(
        runtime.context().take_log(),
        [
            "listed 1 in [\"outer\"]",
            "listed 2 in [\"inner\", \"outer\"]",
            "inner Some(Ok(10))"
        ]
    );
    assert_eq!(runtime.live_counts().0, 0);
    for queue in ["inner", "outer"] {
        let queue = runtime.queue_info(queue).unwrap();
        assert_eq!((queue.running(), queue.performed()), (0, 1));
    }
}

#[test]
fn a_quick_run_holds_its_slot_while_its_steps_run() {
    // Re-entrant invocations from inside a synchronous step see the slot taken.
    let inner = pipeline!(|value: u32, ctx: &Ctx| {
        value = {
            let runtime = ctx.runtime();
            let running = runtime.queue_info("one").unwrap().running();
            ctx.log(format!("running {running}"));
            if value == 0 {
                let again = runtime.invoke("one", 1_u32).unwrap().try_result();
                ctx.log(format!("again {again:?}"));
            }
            value
        };
    })
    .dropping()
    .max(1);
    let runtime = start(vec![("one", inner)]);
    assert_eq!(done(&runtime, "one", 0_u32), 0);
    assert_eq!(
        runtime.context().take_log(),
        ["running 1", "again Some(Err(Dropped))"]
    );
    assert_eq!(runtime.queue_info("one").unwrap().running(), 0);
    assert_eq!(runtime.queue_info("one").unwrap().performed(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_instance_that_waits_for_a_quick_run_starts_when_it_ends() {
    let one_at_a_time = pipeline!(|value: u32, ctx: &Ctx| {
        value = {
            ctx.log(format!("start {value}"));
            if value == 0 {
                // Waits for the slot this run holds.
                let waiting = ctx.runtime().invoke("one", 1_u32).unwrap();
                ctx.log(format!(
                    "second finished inside the first: {}",
                    waiting.is_finished()
                ));
                *ctx.kept.lock().unwrap() = Some(waiting);
            }
            value + 10
        };
    })
    .enqueued()
    .max(1);
    let runtime = start(vec![("one", one_at_a_time)]);
    let first = runtime.invoke("one", 0_u32).unwrap();
    assert!(first.is_finished());
    // The first run's end gave its slot to the second.
    let queue = runtime.queue_info("one").unwrap();
    assert_eq!((queue.running(), queue.waiting()), (1, 0));
    let second = runtime.context().kept.lock().unwrap().take().unwrap();
    assert_eq!(second.await.unwrap(), 11);
    assert_eq!(
        runtime.context().take_log(),
        [
            "start 0",
            "second finished inside the first: false",
            "start 1"
        ]
    );
    assert_eq!(runtime.queue_info("one").unwrap().performed(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_run_that_waits_goes_on_from_the_step_it_reached() {
    let p = pipeline!(|value: u32, ctx: &Ctx| {
        value = {
            ctx.calls.fetch_add(1, Ordering::SeqCst);
            value + 1
        };
        value = value * 10;
        sleep(Duration::from_millis(5)).await;
        value = value + 1;
    });
    let runtime = start(vec![("p", p)]);
    let mut handle = runtime.invoke("p", 1_u32).unwrap();
    assert!(handle.try_result().is_none());
    let info = runtime.instance(handle.ident()).unwrap();
    assert_eq!(
        info.state(),
        pipewright::introspection::InstanceState::Suspended
    );
    assert_eq!(info.argument().downcast_ref::<u32>(), Some(&1));
    assert_eq!(runtime.queue_info("p").unwrap().running(), 1);
    assert_eq!(handle.await.unwrap(), 21);
    // The steps before the wait ran once.
    assert_eq!(runtime.context().calls.load(Ordering::SeqCst), 1);
    assert!(runtime.active().is_empty());
    assert_eq!(runtime.queue_info("p").unwrap().performed(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_timeout_counts_from_the_invocation_not_from_the_wait() {
    let p = pipeline!(|value: u32, _ctx: &Ctx| {
        value = value + 1;
        sleep(Duration::from_millis(50)).await;
    })
    .timeout(Duration::from_millis(20));
    let runtime = start(vec![("p", p)]);
    let started = tokio::time::Instant::now();
    let error = runtime.invoke("p", 1_u32).unwrap().await.unwrap_err();
    assert!(error.is_timeout(), "{error:?}");
    assert_eq!(started.elapsed(), Duration::from_millis(20));
}

fn fails_on_two(value: u32) -> Result<u32, String> {
    if value == 2 {
        Err("two".to_owned())
    } else {
        Ok(value)
    }
}

fn panics_on_two(value: u32) -> u32 {
    assert_ne!(value, 2, "two");
    value
}

/// A pipeline whose second step is `second`, with `rescue!` and `finally!` that log.
fn guarded(second: fn(u32) -> Result<u32, String>) -> Pipeline<u32, Ctx> {
    pipeline!(|value: u32, ctx: &Ctx| {
        value = value + 1;
        value = second(value);
        value = value + 1000;
        rescue!(|error| {
            value = {
                ctx.log(format!("rescued {value}: {error:#}"));
                value
            };
        });
        finally!(|error| {
            {
                ctx.log(format!("finally {value} {}", error.is_some()));
            };
        });
    })
}

#[test]
fn an_error_after_synchronous_steps_takes_the_error_path_with_the_value_before_it() {
    let runtime = start(vec![("p", guarded(fails_on_two))]);
    let run = |value: u32| runtime.invoke("p", value).unwrap().try_result().unwrap();
    assert_eq!(run(1).unwrap(), 2);
    assert_eq!(
        runtime.context().take_log(),
        ["rescued 2: step failed: two", "finally 2 true"]
    );
    assert_eq!(run(5).unwrap(), 1006);
    assert_eq!(runtime.context().take_log(), ["finally 1006 false"]);
    assert_eq!(runtime.queue_info("p").unwrap().performed(), 2);
    assert!(runtime.active().is_empty());
}

#[test]
fn a_panic_after_synchronous_steps_takes_the_error_path_at_its_step() {
    let runtime = start(vec![("p", guarded(|value| Ok(panics_on_two(value))))]);
    assert_eq!(done(&runtime, "p", 1_u32), 2);
    let log = runtime.context().take_log();
    assert!(log[0].starts_with("rescued 2: "), "{log:?}");
    assert!(log[0].contains("two"), "{log:?}");
    assert_eq!(log[1], "finally 2 true");
}

#[test]
fn a_failure_without_rescue_is_reported_and_kept_as_the_queue_s_last_error() {
    let reported = Arc::new(AtomicUsize::new(0));
    let counter = reported.clone();
    let p = pipeline!(|value: u32, _ctx: &()| {
        value = value + 1;
        value = fails_on_two(value);
    });
    let runtime = Runtime::builder(())
        .register("p", p)
        .error_reporter(move |_, _| {
            counter.fetch_add(1, Ordering::SeqCst);
        })
        .start()
        .unwrap();
    let error = runtime.invoke("p", 1_u32).unwrap().try_result().unwrap();
    assert_eq!(format!("{:#}", error.unwrap_err()), "step failed: two");
    assert_eq!(reported.load(Ordering::SeqCst), 1);
    let queue = runtime.queue_info("p").unwrap();
    assert_eq!(
        format!("{:#}", queue.last_error().unwrap()),
        "step failed: two"
    );
    assert_eq!(queue.performed(), 1);
    assert_eq!(queue.running(), 0);
}

#[test]
fn a_break_after_synchronous_steps_still_runs_finally() {
    let p = pipeline!(|value: u32, ctx: &Ctx| {
        value = value + 1;
        Break::with(value * 7);
        value = value + 1000;
        finally!(|error| {
            {
                ctx.log(format!("finally {value}"));
            };
        });
    });
    let runtime = start(vec![("p", p)]);
    assert_eq!(done(&runtime, "p", 1_u32), 14);
    assert_eq!(runtime.context().take_log(), ["finally 14"]);
}

#[test]
fn a_nested_pipeline_makes_the_run_an_instance_its_child_can_name_as_parent() {
    let child = pipeline!(|value: u32, ctx: &Ctx| {
        value = {
            let runtime = ctx.runtime();
            let mine = runtime
                .active()
                .into_iter()
                .flat_map(|queue| queue.instances().to_vec())
                .filter(|instance| instance.parent().is_some())
                .count();
            ctx.log(format!("children with a parent: {mine}"));
            value * 2
        };
    });
    let parent = pipeline!(|value: u32, _ctx: &Ctx| {
        value = value + 1;
        value = &child;
        value = value + 1;
    });
    let runtime = start(vec![("parent", parent)]);
    assert_eq!(done(&runtime, "parent", 1_u32), 5);
    assert_eq!(runtime.context().take_log(), ["children with a parent: 1"]);
    assert!(runtime.active().is_empty());
}

/// A value whose `Clone` panics once armed, and whose `Drop` panics when told to.
#[derive(Debug, PartialEq)]
struct Touchy {
    armed: bool,
    explode_on_drop: bool,
    /// The pipelines below return an exploding value for such an argument.
    make_explosive: bool,
}

impl Touchy {
    fn calm() -> Self {
        Touchy {
            armed: false,
            explode_on_drop: false,
            make_explosive: false,
        }
    }
}

impl Clone for Touchy {
    fn clone(&self) -> Self {
        assert!(!self.armed, "clone of an armed value");
        Touchy {
            armed: false,
            explode_on_drop: self.explode_on_drop,
            make_explosive: self.make_explosive,
        }
    }
}

impl Drop for Touchy {
    fn drop(&mut self) {
        if self.explode_on_drop && !std::thread::panicking() {
            panic!("drop of a touchy value");
        }
    }
}

#[test]
fn a_result_whose_clone_panics_fails_the_run_and_frees_its_slot() {
    let p = pipeline!(|value: Touchy, _ctx: &()| {
        value = Touchy {
            armed: true,
            ..Touchy::calm()
        };
    })
    .enqueued()
    .max(1);
    let reported = Arc::new(AtomicUsize::new(0));
    let counter = reported.clone();
    let runtime = Runtime::builder(())
        .register("p", p)
        .error_reporter(move |_, _| {
            counter.fetch_add(1, Ordering::SeqCst);
        })
        .start()
        .unwrap();
    let error = runtime
        .invoke("p", Touchy::calm())
        .unwrap()
        .try_result()
        .unwrap();
    assert!(error
        .unwrap_err()
        .to_string()
        .contains("clone of an armed value"));
    assert_eq!(reported.load(Ordering::SeqCst), 1);
    let queue = runtime.queue_info("p").unwrap();
    assert_eq!((queue.running(), queue.performed()), (0, 1));
    assert!(queue.last_error().is_some());
    // The slot is free: the next invocation runs at once.
    assert!(runtime.invoke("p", Touchy::calm()).unwrap().is_finished());
}

#[test]
fn a_kept_result_whose_drop_panics_is_reported_and_changes_no_outcome() {
    let p = pipeline!(|value: Touchy, _ctx: &()| {
        value = Touchy {
            explode_on_drop: value.make_explosive,
            ..Touchy::calm()
        };
    });
    let reports = Arc::new(Mutex::new(Vec::new()));
    let sink = reports.clone();
    let runtime = Runtime::builder(())
        .register("p", p)
        .error_reporter(move |_, error| sink.lock().unwrap().push(format!("{error:#}")))
        .start()
        .unwrap();
    let explosive = Touchy {
        make_explosive: true,
        ..Touchy::calm()
    };
    let first = runtime
        .invoke("p", explosive)
        .unwrap()
        .try_result()
        .unwrap();
    // The caller's copy would explode too: keep it out of the way.
    std::mem::forget(first);
    assert!(reports.lock().unwrap().is_empty());
    // The queue's kept copy of the first result is replaced, and its drop panics.
    let second = runtime
        .invoke("p", Touchy::calm())
        .unwrap()
        .try_result()
        .unwrap();
    assert_eq!(second.unwrap(), Touchy::calm());
    let reports = reports.lock().unwrap().clone();
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert!(
        reports[0].contains("drop of a value the runtime kept"),
        "{reports:?}"
    );
}

// Waiting instances are data: a root that waits for a slot is kept by the registry, not
// by a task, until it is admitted (then spawned) or cancelled (then ended at once).

#[tokio::test(start_paused = true)]
async fn a_replaced_waiting_instance_ends_at_once_without_a_task() {
    let latest = pipeline!(|value: u32, _ctx: &Ctx| {
        sleep(Duration::from_millis(10)).await;
        value = value * 10;
    })
    .keep_latest();
    let runtime = start(vec![("latest", latest)]);
    let running = runtime.invoke("latest", 1_u32).unwrap();
    let mut replaced = runtime.invoke("latest", 2_u32).unwrap();
    assert!(replaced.try_result().is_none());
    let kept = runtime.invoke("latest", 3_u32).unwrap();
    // No executor turn in between: the replaced instance ended inside `invoke`.
    assert!(replaced.is_finished());
    assert!(replaced.try_result().unwrap().unwrap_err().is_cancelled());
    let queue = runtime.queue_info("latest").unwrap();
    assert_eq!((queue.running(), queue.waiting()), (1, 1));
    assert_eq!(queue.last_cancelled(), Some(replaced.ident()));
    assert_eq!(running.await.unwrap(), 10);
    assert_eq!(kept.await.unwrap(), 30);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_waiting_instance_ends_at_once_and_an_admitted_one_runs() {
    let one = pipeline!(|value: u32, ctx: &Ctx| {
        {
            ctx.log(format!("start {value}"));
        };
        sleep(Duration::from_millis(10)).await;
        value = value;
        finally!(|error| {
            {
                ctx.log(format!("finally {value}"));
            };
        });
    })
    .enqueued();
    let runtime = start(vec![("one", one)]);
    let first = runtime.invoke("one", 1_u32).unwrap();
    let second = runtime.invoke("one", 2_u32).unwrap();
    let third = runtime.invoke("one", 3_u32).unwrap();
    assert!(second.cancel());
    assert!(second.is_finished());
    assert!(second.await.unwrap_err().is_cancelled());
    assert_eq!(first.await.unwrap(), 1);
    assert_eq!(third.await.unwrap(), 3);
    // The cancelled one never started: no step, no `finally!`.
    assert_eq!(
        runtime.context().take_log(),
        ["start 1", "finally 1", "start 3", "finally 3"]
    );
    assert!(runtime.active().is_empty());
}

/// Many threads invoke one enqueued queue at once, some runs synchronous (quick runs that
/// give their slot back without the registry's lock), some waiting: every invocation
/// runs exactly once, none is left waiting with a slot free, and the counts end exact.
#[test]
fn concurrent_quick_runs_and_waiting_instances_all_run_and_the_counts_end_exact() {
    const THREADS: u32 = 4;
    const PER_THREAD: u32 = 2_000;
    let executor = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let runtime = {
        let _inside = executor.enter();
        start(vec![(
            "mixed",
            pipeline!(|value: u32, ctx: &Ctx| {
                value = {
                    ctx.calls.fetch_add(1, Ordering::Relaxed);
                    value
                };
                value = async move {
                    if value % 3 == 0 {
                        tokio::task::yield_now().await;
                    }
                    value
                }
                .await;
            })
            .enqueued()
            .max(2),
        )])
    };
    let threads: Vec<_> = (0..THREADS)
        .map(|thread| {
            let runtime = runtime.clone();
            let handle = executor.handle().clone();
            std::thread::spawn(move || {
                let mixed = runtime.handle::<u32>("mixed").unwrap();
                let invocations: Vec<_> = (0..PER_THREAD)
                    .map(|i| mixed.invoke(thread * PER_THREAD + i).unwrap())
                    .collect();
                handle.block_on(async {
                    for (i, invocation) in invocations.into_iter().enumerate() {
                        let expected = thread * PER_THREAD + u32::try_from(i).unwrap();
                        assert_eq!(invocation.await.unwrap(), expected);
                    }
                });
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let total = THREADS * PER_THREAD;
    assert_eq!(runtime.context().calls.load(Ordering::Relaxed), total);
    let queue = runtime.queue_info("mixed").unwrap();
    assert_eq!(
        (queue.running(), queue.waiting(), queue.performed()),
        (0, 0, u64::from(total))
    );
}
