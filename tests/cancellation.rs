//! Cancellation ([SEMANTICS 4]) from every source, detached children and waiting for
//! children ([SEMANTICS 2]), and `stop` with survivors.
//!
//! [SEMANTICS 4]: pipewright::semantics#4-cancellation
//! [SEMANTICS 2]: pipewright::semantics#2-nesting

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pipewright::introspection::InstanceState;
use pipewright::{pipeline, Cancel, CancelError, Ident, InvokeError, Pipeline, Runtime};
use tokio::time::sleep;

type Log = Arc<Mutex<Vec<String>>>;

fn push(log: &Log, entry: impl Into<String>) {
    log.lock().unwrap().push(entry.into());
}

fn entries(log: &Log) -> Vec<String> {
    log.lock().unwrap().clone()
}

/// A runtime that logs reported errors and `on_cancel` calls.
fn runtime(log: &Log) -> Runtime<Log> {
    let reported = log.clone();
    let cancelled = log.clone();
    Runtime::builder(log.clone())
        .error_reporter(move |ident, error| push(&reported, format!("reported {ident} {error:#}")))
        .on_cancel(move |ident| push(&cancelled, format!("on_cancel {}", ident.name())))
        .start()
        .unwrap()
}

/// Waits forever in its only step; logs its `finally!` with the error it sees.
fn forever(tag: &'static str) -> Pipeline<u32, Log> {
    pipeline!(|value: u32, log: &Log| {
        std::future::pending::<()>().await;
        finally!(|error| {
            push(
                log,
                format!(
                    "finally {tag} {}",
                    error.map_or("none".into(), |e| format!("{e:#}"))
                ),
            );
        });
    })
}

/// The live instance whose parent is `parent`.
fn child_of(runtime: &Runtime<Log>, parent: &Ident) -> Ident {
    runtime
        .active()
        .iter()
        .flat_map(|queue| queue.instances())
        .find(|instance| instance.parent() == Some(parent))
        .map(|instance| instance.ident().clone())
        .expect("a live child")
}

#[tokio::test(start_paused = true)]
async fn cancelling_a_child_climbs_to_the_top_and_cancels_children_first() {
    let log = Log::default();
    let runtime = runtime(&log);
    let leaf = forever("leaf");
    let middle = pipeline!(|value: u32, log: &Log| {
        value = &leaf;
        finally!(|error| {
            push(log, "finally middle");
        });
    });
    let top = pipeline!(|value: u32, log: &Log| {
        value = &middle;
        push(log, "top went on");
        finally!(|error| {
            push(log, "finally top");
        });
    });
    let handle = runtime.invoke_pipeline(&top, 1).unwrap();
    let middle_ident = child_of(&runtime, handle.ident());
    let leaf_ident = child_of(&runtime, &middle_ident);
    runtime.cancel(&leaf_ident).unwrap();
    assert!(handle.await.unwrap_err().is_cancelled());
    assert_eq!(
        entries(&log),
        [
            "on_cancel pipeline@".to_owned() + &leaf_ident.name()["pipeline@".len()..],
            "finally leaf instance cancelled: cancelled by its ident".into(),
            "finally middle".into(),
            "finally top".into(),
        ],
        "children first; nothing reported; on_cancel only for the one waiting on a future"
    );
    assert_eq!(runtime.live_counts().0, 0);
}

#[tokio::test(start_paused = true)]
async fn cancel_all_and_the_handle_cancel_reach_every_instance_once() {
    let log = Log::default();
    let runtime = runtime(&log);
    let p = forever("p");
    let handles: Vec<_> = (0..3)
        .map(|n| runtime.invoke_pipeline(&p, n).unwrap())
        .collect();
    let extra = runtime.invoke_pipeline(&p, 9).unwrap();
    assert_eq!(runtime.cancel_all(handles.iter().map(|h| h.ident())), 3);
    assert!(extra.cancel());
    assert!(
        extra.cancel(),
        "a second request finds it still live (cancelling): harmless"
    );
    for handle in handles {
        assert!(handle.await.unwrap_err().is_cancelled());
    }
    assert!(extra.await.unwrap_err().is_cancelled());
    let finals = entries(&log)
        .iter()
        .filter(|e| e.starts_with("finally p instance cancelled"))
        .count();
    assert_eq!(finals, 4, "finally! ran exactly once per instance");
}

#[tokio::test(start_paused = true)]
async fn cancelling_a_finished_or_foreign_ident_is_a_typed_error() {
    let log = Log::default();
    let runtime = runtime(&log);
    let quick = pipeline!(|value: u32, _log: &Log| {
        value = value;
    });
    let done = runtime.invoke_pipeline(&quick, 1).unwrap();
    let error = runtime.cancel(done.ident()).unwrap_err();
    assert_eq!(
        error,
        CancelError::NotLive {
            ident: done.ident().to_string()
        }
    );
    assert!(error.to_string().starts_with("no live instance `pipeline@"));
    // An ident of another runtime never cancels an instance here, even with the same id.
    let other = Runtime::builder(Log::default())
        .register("other", forever("other"))
        .start()
        .unwrap();
    let here = runtime.invoke_pipeline(&forever("here"), 1).unwrap();
    let foreign = other.invoke("other", 1_u32).unwrap();
    assert!(runtime.cancel(foreign.ident()).is_err());
    assert_eq!(
        runtime.instance(here.ident()).unwrap().state(),
        InstanceState::Suspended
    );
}

#[tokio::test(start_paused = true)]
async fn the_cancel_marker_cancels_its_tree_and_is_not_reported() {
    let log = Log::default();
    let runtime = runtime(&log);
    let p = pipeline!(|value: u32, log: &Log| {
        push(log, "before");
        Cancel;
        push(log, "never");
        finally!(|error| {
            push(log, format!("finally {}", error.unwrap()));
        });
    });
    let mut handle = runtime.invoke_pipeline(&p, 1).unwrap();
    assert!(handle.try_result().unwrap().unwrap_err().is_cancelled());
    assert_eq!(
        entries(&log),
        ["before", "finally instance cancelled: a step cancelled it"]
    );
    let queue = runtime.queue_info(p.site_name()).unwrap();
    assert_eq!(queue.last_cancelled(), Some(handle.ident()));
    assert!(queue.last_error().is_none());
}

#[tokio::test(start_paused = true)]
async fn a_waiting_instance_cancelled_before_it_starts_runs_nothing() {
    let log = Log::default();
    let runtime = runtime(&log);
    let p = forever("q").enqueued();
    let running = runtime.invoke_pipeline(&p, 1).unwrap();
    let waiting = runtime.invoke_pipeline(&p, 2).unwrap();
    assert_eq!(
        runtime.instance(waiting.ident()).unwrap().state(),
        InstanceState::Waiting
    );
    runtime.cancel(waiting.ident()).unwrap();
    assert!(waiting.await.unwrap_err().is_cancelled());
    assert!(
        entries(&log).is_empty(),
        "no step, no finally!, no on_cancel"
    );
    assert!(running.cancel());
    assert!(running.await.unwrap_err().is_cancelled());
}

#[tokio::test(start_paused = true)]
async fn dropping_a_handle_does_not_cancel_the_instance() {
    let log = Log::default();
    let runtime = runtime(&log);
    let p = pipeline!(|value: u32, log: &Log| {
        sleep(Duration::from_millis(10)).await;
        push(log, "done");
    });
    drop(runtime.invoke_pipeline(&p, 1).unwrap());
    sleep(Duration::from_millis(20)).await;
    assert_eq!(entries(&log), ["done"]);
}

// ---- detached children ---------------------------------------------------------------

fn audit() -> Pipeline<u32, Log> {
    pipeline!(|value: u32, log: &Log| {
        sleep(Duration::from_millis(100)).await;
        push(log, format!("audited {value}"));
        finally!(|error| {
            push(
                log,
                format!(
                    "finally audit {}",
                    error.map_or("none".into(), |e| format!("{e:#}"))
                ),
            );
        });
    })
    .detached()
}

#[tokio::test(start_paused = true)]
async fn a_parent_finished_before_its_detached_child_waits_for_it_and_keeps_its_slot() {
    let log = Log::default();
    let audit = audit();
    let save = pipeline!(|value: u32, log: &Log| {
        value = &audit;
        push(log, format!("saved {value}"));
    })
    .dropping();
    let runtime = Runtime::builder(log.clone())
        .register("save", save)
        .start()
        .unwrap();
    let mut first = runtime.invoke("save", 1_u32).unwrap();
    assert_eq!(
        first.try_result().unwrap().unwrap(),
        1,
        "the caller does not wait"
    );
    let parent = runtime.instance(first.ident()).unwrap();
    assert_eq!(parent.state(), InstanceState::WaitingForChildren);
    let child = child_of(&runtime, first.ident());
    assert!(runtime.instance(&child).unwrap().is_detached());
    // The parent still holds the dropping queue's only slot.
    assert!(runtime
        .invoke("save", 2_u32)
        .unwrap()
        .await
        .unwrap_err()
        .is_dropped());
    sleep(Duration::from_millis(150)).await;
    assert_eq!(
        entries(&log),
        ["saved 1", "audited 1", "finally audit none"]
    );
    assert!(runtime.instance(first.ident()).is_none());
    assert_eq!(
        runtime
            .invoke("save", 3_u32)
            .unwrap()
            .try_result()
            .unwrap()
            .unwrap(),
        3
    );
}

#[tokio::test(start_paused = true)]
async fn cancelling_a_detached_child_does_not_reach_its_parent() {
    let log = Log::default();
    let runtime = runtime(&log);
    let audit = audit();
    let parent = pipeline!(|value: u32, log: &Log| {
        value = &audit;
        sleep(Duration::from_millis(200)).await;
        push(log, "parent done");
    });
    let handle = runtime.invoke_pipeline(&parent, 1).unwrap();
    let child = child_of(&runtime, handle.ident());
    runtime.cancel(&child).unwrap();
    assert_eq!(handle.await.unwrap(), 1);
    assert_eq!(
        entries(&log),
        [
            "on_cancel ".to_owned() + child.name(),
            "finally audit instance cancelled: cancelled by its ident".into(),
            "parent done".into()
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn cancelling_a_parent_cancels_its_detached_children_first() {
    let log = Log::default();
    let runtime = runtime(&log);
    let audit = audit();
    let parent = pipeline!(|value: u32, log: &Log| {
        value = &audit;
        std::future::pending::<()>().await;
        finally!(|error| {
            push(log, "finally parent");
        });
    });
    let handle = runtime.invoke_pipeline(&parent, 1).unwrap();
    let child = child_of(&runtime, handle.ident());
    assert!(handle.cancel());
    assert!(handle.await.unwrap_err().is_cancelled());
    let log = entries(&log);
    let child_final = log
        .iter()
        .position(|e| {
            e == "finally audit instance cancelled with its parent: cancelled by its ident"
        })
        .unwrap();
    let parent_final = log.iter().position(|e| e == "finally parent").unwrap();
    assert!(child_final < parent_final, "children first: {log:?}");
    assert!(runtime.instance(&child).is_none());
}

#[tokio::test(start_paused = true)]
async fn cancelling_a_parent_that_waits_for_children_cancels_them() {
    let log = Log::default();
    let runtime = runtime(&log);
    let audit = audit();
    let parent = pipeline!(|value: u32, _log: &Log| {
        value = &audit;
    });
    let mut handle = runtime.invoke_pipeline(&parent, 1).unwrap();
    assert_eq!(handle.try_result().unwrap().unwrap(), 1);
    runtime.cancel(handle.ident()).unwrap();
    tokio::task::yield_now().await;
    assert_eq!(
        entries(&log)[1],
        "finally audit instance cancelled with its parent: cancelled by its ident"
    );
    assert_eq!(runtime.live_counts().0, 0);
}

// ---- stop ----------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn stop_cancels_all_but_the_survivors_which_finish_normally() {
    let log = Log::default();
    let child = pipeline!(|value: u32, log: &Log| {
        sleep(Duration::from_millis(50)).await;
        push(log, "child of survivor ran");
    });
    let survivor = pipeline!(|value: u32, log: &Log| {
        sleep(Duration::from_millis(100)).await;
        value = &child;
        push(log, "survivor finished");
    })
    .cancel_on_shutdown(false);
    let runtime = Runtime::builder(log.clone())
        .register("survivor", survivor)
        .register("victim", forever("victim"))
        .start()
        .unwrap();
    let kept = runtime.invoke("survivor", 1_u32).unwrap();
    let lost = runtime.invoke("victim", 1_u32).unwrap();
    runtime.stop();
    assert_eq!(
        runtime.invoke("victim", 2_u32).unwrap_err(),
        InvokeError::Stopped
    );
    assert!(lost.await.unwrap_err().is_cancelled());
    assert_eq!(kept.await.unwrap(), 1);
    assert_eq!(
        entries(&log),
        [
            "finally victim instance cancelled: the runtime stopped",
            "child of survivor ran",
            "survivor finished"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn restartable_cancellation_runs_each_finally_exactly_once_and_reports_nothing() {
    let log = Log::default();
    let runtime = runtime(&log);
    let p = pipeline!(|value: u32, log: &Log| {
        sleep(Duration::from_millis(100)).await;
        finally!(|error| {
            push(log, format!("finally {value}"));
        });
    })
    .restartable();
    let handles: Vec<_> = (0..5)
        .map(|n| runtime.invoke_pipeline(&p, n).unwrap())
        .collect();
    for handle in handles {
        let _ = handle.await;
    }
    let log = entries(&log);
    let finals: Vec<_> = log.iter().filter(|e| e.starts_with("finally")).collect();
    assert_eq!(
        finals,
        [
            "finally 0",
            "finally 1",
            "finally 2",
            "finally 3",
            "finally 4"
        ]
    );
    assert!(log.iter().all(|e| !e.starts_with("reported")));
    assert_eq!(log.iter().filter(|e| e.starts_with("on_cancel")).count(), 4);
}

#[tokio::test(start_paused = true)]
async fn restarting_a_queue_whose_oldest_waits_for_children_cancels_them_and_starts() {
    let log = Log::default();
    let audit = audit();
    let save = pipeline!(|value: u32, log: &Log| {
        value = &audit;
        push(log, format!("saved {value}"));
    })
    .restartable();
    let runtime = Runtime::builder(log.clone())
        .register("save", save)
        .start()
        .unwrap();
    let mut first = runtime.invoke("save", 1_u32).unwrap();
    assert_eq!(first.try_result().unwrap().unwrap(), 1);
    assert_eq!(
        runtime.instance(first.ident()).unwrap().state(),
        InstanceState::WaitingForChildren
    );
    let mut second = runtime.invoke("save", 2_u32).unwrap();
    assert_eq!(second.try_result().unwrap().unwrap(), 2);
    sleep(Duration::from_millis(150)).await;
    assert_eq!(
        entries(&log),
        [
            "saved 1",
            "saved 2",
            "finally audit instance cancelled with its parent: replaced by a newer instance",
            "audited 2",
            "finally audit none"
        ]
    );
    assert_eq!(
        runtime.live_counts(),
        (0, 2),
        "nothing live; the two queues remain"
    );
}

/// A parent's children are a linked list: children that end in the middle of it leave
/// it, and a cancellation still reaches every one that is left, in joining order.
#[tokio::test(start_paused = true)]
async fn children_that_end_leave_their_parents_list_and_a_cancellation_reaches_the_rest() {
    let log = Log::default();
    let child = pipeline!(|value: u32, log: &Log| {
        sleep(Duration::from_millis(if value % 2 == 0 {
            10
        } else {
            1000
        }))
        .await;
        push(log, format!("ended {value}"));
        finally!(|error| {
            push(
                log,
                format!(
                    "finally {value}: {}",
                    error.map_or("none".into(), |e| format!("{e:#}"))
                ),
            );
        });
    })
    .detached();
    let parent = pipeline!(|value: u32, log: &Log| {
        value = 1_u32;
        value = &child;
        value = 2_u32;
        value = &child;
        value = 3_u32;
        value = &child;
        value = 4_u32;
        value = &child;
        value = 5_u32;
        value = &child;
        sleep(Duration::from_millis(1000)).await;
        finally!(|_error| {
            push(log, format!("finally parent {value}"));
        });
    });
    let runtime = Runtime::builder(log.clone()).start().unwrap();
    let handle = runtime.invoke_pipeline(&parent, 0).unwrap();
    sleep(Duration::from_millis(50)).await;
    assert_eq!(
        entries(&log),
        ["ended 2", "finally 2: none", "ended 4", "finally 4: none"]
    );
    assert_eq!(
        runtime.live_counts().0,
        4,
        "the parent and children 1, 3 and 5"
    );
    runtime.cancel(handle.ident()).unwrap();
    assert!(handle.await.unwrap_err().is_cancelled());
    sleep(Duration::from_millis(1)).await;
    assert_eq!(
        entries(&log)[4..],
        [
            "finally 1: instance cancelled with its parent: cancelled by its ident",
            "finally 3: instance cancelled with its parent: cancelled by its ident",
            "finally 5: instance cancelled with its parent: cancelled by its ident",
            "finally parent 5",
        ]
    );
    assert_eq!(runtime.live_counts().0, 0);
}
