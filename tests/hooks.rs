//! Hooks and introspection ([SEMANTICS 5]): the watcher's events, the state the runtime
//! shows, and re-entrancy: steps and hooks that invoke, cancel and query the runtime.
//!
//! [SEMANTICS 5]: pipewright::semantics#5-the-runtime

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use pipewright::introspection::InstanceState;
use pipewright::{in_pipeline, pipeline, Event, EventKind, Pipeline, Runtime, WeakRuntime};
use tokio::time::sleep;

type Events = Arc<Mutex<Vec<String>>>;

/// `kind name#id` for each event, with names shortened to the registration name.
fn describe(event: &Event) -> String {
    let kind = match event.kind() {
        EventKind::Failed(error) => format!("Failed({error:#})"),
        other => format!("{other:?}"),
    };
    format!("{kind} {}#{}", event.ident().name(), event.ident().id())
}

fn watched<C: Send + Sync + 'static>(
    context: C,
    pipelines: Vec<(&str, Pipeline<u32, C>)>,
) -> (Runtime<C>, Events) {
    let events = Events::default();
    let sink = events.clone();
    let mut builder =
        Runtime::builder(context).watcher(move |event| sink.lock().unwrap().push(describe(event)));
    for (name, pipeline) in pipelines {
        builder = builder.register(name, pipeline);
    }
    (builder.start().unwrap(), events)
}

fn take(events: &Events) -> Vec<String> {
    std::mem::take(&mut events.lock().unwrap())
}

#[tokio::test(start_paused = true)]
async fn the_watcher_sees_every_state_change_in_order() {
    let sync = pipeline!(|value: u32, _ctx: &()| {
        value = value + 1;
    });
    let waits = pipeline!(|value: u32, _ctx: &()| {
        sleep(Duration::from_millis(10)).await;
        value = value + 1;
    })
    .enqueued();
    let fails = pipeline!(|value: u32, _ctx: &()| {
        value = Err::<u32, _>("no");
    });
    let (runtime, events) = watched(
        (),
        vec![("sync", sync), ("waits", waits.clone()), ("fails", fails)],
    );

    let first = runtime.invoke("sync", 1_u32).unwrap();
    let id = first.ident().id();
    assert_eq!(
        take(&events),
        [
            format!("Admitted sync#{id}"),
            format!("Started sync#{id}"),
            format!("Finished sync#{id}")
        ]
    );

    let a = runtime.invoke("waits", 1_u32).unwrap();
    let b = runtime.invoke("waits", 2_u32).unwrap();
    let (a_id, b_id) = (a.ident().id(), b.ident().id());
    a.await.unwrap();
    b.await.unwrap();
    assert_eq!(
        take(&events),
        [
            format!("Admitted waits#{a_id}"),
            format!("Started waits#{a_id}"),
            format!("Suspended waits#{a_id}"),
            format!("Admitted waits#{b_id}"),
            format!("Waiting waits#{b_id}"),
            format!("Resumed waits#{a_id}"),
            format!("Finished waits#{a_id}"),
            format!("Started waits#{b_id}"),
            format!("Suspended waits#{b_id}"),
            format!("Resumed waits#{b_id}"),
            format!("Finished waits#{b_id}"),
        ]
    );

    let failed = runtime.invoke("fails", 1_u32).unwrap();
    let id = failed.ident().id();
    assert_eq!(
        take(&events)[2],
        format!("Failed(step failed: no) fails#{id}")
    );
}

#[tokio::test(start_paused = true)]
async fn dropped_cancelled_and_waiting_for_children_are_events_too() {
    let slow = pipeline!(|value: u32, _ctx: &()| {
        sleep(Duration::from_millis(10)).await;
    });
    let background = pipeline!(|value: u32, _ctx: &()| {
        sleep(Duration::from_millis(10)).await;
    })
    .detached();
    let parent = pipeline!(|value: u32, _ctx: &()| {
        value = &background;
    });
    let (runtime, events) = watched((), vec![("slow", slow.dropping()), ("parent", parent)]);
    let running = runtime.invoke("slow", 1_u32).unwrap();
    let dropped = runtime.invoke("slow", 2_u32).unwrap();
    assert!(running.cancel());
    let (running_id, dropped_id) = (running.ident().id(), dropped.ident().id());
    assert!(running.await.unwrap_err().is_cancelled());
    assert_eq!(
        take(&events),
        [
            format!("Admitted slow#{running_id}"),
            format!("Started slow#{running_id}"),
            format!("Suspended slow#{running_id}"),
            format!("Dropped slow#{dropped_id}"),
            format!("Cancelling {{ reason: Requested, by_parent: false }} slow#{running_id}"),
            format!("Cancelled {{ reason: Requested, by_parent: false }} slow#{running_id}"),
        ]
    );

    let handle = runtime.invoke("parent", 1_u32).unwrap();
    let id = handle.ident().id();
    let events_now = take(&events);
    assert!(events_now.contains(&format!("Finished parent#{id}")));
    assert_eq!(
        events_now.last().unwrap(),
        &format!("WaitingForChildren parent#{id}")
    );
}

// ---- introspection -------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn active_instances_are_grouped_by_queue_with_state_and_arguments() {
    let child = pipeline!(|value: u32, _ctx: &()| {
        std::future::pending::<()>().await;
    })
    .queue("children");
    let parent = pipeline!(|value: u32, _ctx: &()| {
        value = &child;
    });
    let save = pipeline!(|value: u32, _ctx: &()| {
        std::future::pending::<()>().await;
    })
    .enqueued();
    let runtime = Runtime::builder(())
        .register("parent", parent)
        .register("save", save)
        .start()
        .unwrap();
    let p = runtime.invoke("parent", 7_u32).unwrap();
    let s1 = runtime.invoke("save", 1_u32).unwrap();
    let s2 = runtime.invoke("save", 2_u32).unwrap();
    let active = runtime.active();
    let names: Vec<_> = active.iter().map(|queue| queue.name()).collect();
    assert_eq!(names, ["children", "parent", "save"]);
    let child_info = &active[0].instances()[0];
    assert_eq!(child_info.parent(), Some(p.ident()));
    assert_eq!(child_info.argument().downcast_ref::<u32>(), Some(&7));
    assert_eq!(child_info.state(), InstanceState::Suspended);
    assert_eq!(active[1].instances()[0].state(), InstanceState::Suspended);
    let save: Vec<_> = active[2]
        .instances()
        .iter()
        .map(|i| (i.ident().clone(), i.state()))
        .collect();
    assert_eq!(
        save,
        [
            (s1.ident().clone(), InstanceState::Suspended),
            (s2.ident().clone(), InstanceState::Waiting)
        ]
    );
    let queue = runtime.queue_info("save").unwrap();
    assert_eq!(
        (queue.running(), queue.waiting(), queue.performed()),
        (1, 1, 0)
    );
    runtime.stop();
    tokio::task::yield_now().await;
    assert!(runtime.active().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_instance_leaves_active_at_once_and_is_found_until_its_finally_is_done() {
    let slow = pipeline!(|value: u32, _ctx: &()| {
        sleep(Duration::from_millis(100)).await;
        finally!(|_error| {
            sleep(Duration::from_millis(10)).await;
        });
    });
    // The watcher looks the instance up when it is told of the cancellation.
    let weak: Arc<OnceLock<WeakRuntime<()>>> = Arc::default();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (from_hook, sink) = (weak.clone(), seen.clone());
    let runtime = Runtime::builder(())
        .register("slow", slow)
        .watcher(move |event| {
            if matches!(event.kind(), EventKind::Cancelling { .. }) {
                let runtime = from_hook.get().and_then(WeakRuntime::upgrade).unwrap();
                let state = runtime.instance(event.ident()).map(|info| info.state());
                sink.lock().unwrap().push(state);
            }
        })
        .start()
        .unwrap();
    weak.set(runtime.downgrade()).unwrap();
    let handle = runtime.invoke("slow", 1_u32).unwrap();
    sleep(Duration::from_millis(1)).await;
    assert_eq!(runtime.active()[0].instances().len(), 1);
    assert!(handle.cancel());
    // Its slot is free at once, and the list agrees with the queue's count...
    assert!(runtime.active().is_empty());
    assert_eq!(runtime.queue_info("slow").unwrap().running(), 0);
    // ... while the instance runs its `finally!`, and can be looked up meanwhile.
    tokio::task::yield_now().await;
    let info = runtime.instance(handle.ident()).unwrap();
    assert_eq!(info.state(), InstanceState::Cancelling);
    assert_eq!(runtime.live_counts().0, 1);
    assert_eq!(*seen.lock().unwrap(), [Some(InstanceState::Cancelling)]);
    sleep(Duration::from_millis(10)).await;
    tokio::task::yield_now().await;
    assert!(runtime.instance(handle.ident()).is_none());
    assert!(handle.await.unwrap_err().is_cancelled());
}

#[test]
fn queues_keep_their_last_result_error_and_cancellation() {
    let p = pipeline!(|value: u32, _ctx: &()| {
        value = if value == 0 {
            Err("zero")
        } else {
            Ok(value * 10)
        };
        // The value is 90 here, after the step above.
        if value == 90 {
            Some(pipewright::Cancel)
        } else {
            None
        };
    });
    let runtime = Runtime::builder(()).register("p", p).start().unwrap();
    runtime.invoke("p", 4_u32).unwrap();
    runtime.invoke("p", 0_u32).unwrap();
    let cancelled = runtime.invoke("p", 9_u32).unwrap();
    let queue = runtime.queue_info("p").unwrap();
    assert_eq!(queue.performed(), 3);
    assert_eq!(
        queue.last_result().unwrap().downcast_ref::<u32>(),
        Some(&40)
    );
    assert_eq!(queue.last_result().unwrap().type_name(), "u32");
    assert_eq!(
        format!("{:#}", queue.last_error().unwrap()),
        "step failed: zero"
    );
    assert_eq!(queue.last_cancelled(), Some(cancelled.ident()));
    assert!(runtime.is_registered("p"));
    assert!(!runtime.is_registered("q"));
}

#[test]
fn in_pipeline_tells_whether_code_runs_inside_a_step() {
    let p = pipeline!(|value: bool, _ctx: &()| {
        value = in_pipeline();
    });
    let runtime = Runtime::builder(()).start().unwrap();
    assert!(!in_pipeline());
    assert!(runtime
        .invoke_pipeline(&p, false)
        .unwrap()
        .try_result()
        .unwrap()
        .unwrap());
    assert!(!in_pipeline());
}

// ---- re-entrancy ---------------------------------------------------------------------

/// A context that lets steps reach their own runtime without a reference cycle.
#[derive(Default)]
struct Ctx {
    runtime: OnceLock<WeakRuntime<Ctx>>,
    log: Mutex<Vec<String>>,
}

impl Ctx {
    fn runtime(&self) -> Runtime<Ctx> {
        self.runtime
            .get()
            .and_then(WeakRuntime::upgrade)
            .expect("runtime is alive")
    }
}

#[tokio::test(start_paused = true)]
async fn a_step_can_query_active_instances_and_cancel_others() {
    let victim = pipeline!(|value: u32, ctx: &Ctx| {
        std::future::pending::<()>().await;
        finally!(|error| {
            ctx.log
                .lock()
                .unwrap()
                .push(format!("victim {value} ended"));
        });
    });
    let sweeper = pipeline!(|value: u32, ctx: &Ctx| {
        value = {
            let runtime = ctx.runtime();
            let victims: Vec<_> = runtime
                .active()
                .into_iter()
                .filter(|queue| queue.name() == "victim")
                .flat_map(|queue| queue.instances().to_vec())
                .map(|instance| instance.ident().clone())
                .collect();
            let me_running = runtime
                .queue_info("sweeper")
                .map(|queue| queue.running())
                .unwrap_or_default();
            ctx.log
                .lock()
                .unwrap()
                .push(format!("sweeper sees itself running: {me_running}"));
            runtime.cancel_all(&victims) as u32
        };
    });
    let runtime = Runtime::builder(Ctx::default())
        .register("victim", victim)
        .register("sweeper", sweeper)
        .start()
        .unwrap();
    runtime.context().runtime.set(runtime.downgrade()).unwrap();
    let victims: Vec<_> = (0..3)
        .map(|n| runtime.invoke("victim", n as u32).unwrap())
        .collect();
    let mut sweep = runtime.invoke("sweeper", 0_u32).unwrap();
    assert_eq!(sweep.try_result().unwrap().unwrap(), 3);
    for victim in victims {
        assert!(victim.await.unwrap_err().is_cancelled());
    }
    let log = runtime.context().log.lock().unwrap().clone();
    assert_eq!(log[0], "sweeper sees itself running: 1");
    assert_eq!(log.len(), 4);
}

#[tokio::test(start_paused = true)]
async fn a_watcher_can_invoke_and_hooks_can_query_without_deadlock() {
    let follow_up = pipeline!(|value: u32, ctx: &Ctx| {
        ctx.log.lock().unwrap().push(format!("follow-up {value}"));
    });
    let main = pipeline!(|value: u32, _ctx: &Ctx| {
        tokio::task::yield_now().await;
        value = value + 1;
    });
    let handle_slot: Arc<OnceLock<WeakRuntime<Ctx>>> = Arc::default();
    let from_watcher = handle_slot.clone();
    let from_reporter = handle_slot.clone();
    let runtime = Runtime::builder(Ctx::default())
        .register("main", main)
        .register("follow-up", follow_up)
        .watcher(move |event| {
            if event.ident().name() == "main" && matches!(event.kind(), EventKind::Finished) {
                let runtime = from_watcher.get().and_then(WeakRuntime::upgrade).unwrap();
                // Invoking from the watcher: its own events are delivered after this one.
                runtime.invoke("follow-up", 100_u32).unwrap();
                assert!(runtime.active().iter().all(|queue| queue.name() != "main"));
            }
        })
        .error_reporter(move |_, _| {
            let runtime = from_reporter.get().and_then(WeakRuntime::upgrade).unwrap();
            let _ = runtime.queue_info("main");
        })
        .start()
        .unwrap();
    handle_slot.set(runtime.downgrade()).unwrap();
    runtime.context().runtime.set(runtime.downgrade()).unwrap();
    assert_eq!(runtime.invoke("main", 1_u32).unwrap().await.unwrap(), 2);
    assert_eq!(*runtime.context().log.lock().unwrap(), ["follow-up 100"]);
}
