//! A step's view of its instance and continuations ([SEMANTICS 2.1]), including the seed
//! system's interpreter-state scenarios, under the paused clock.
//!
//! [SEMANTICS 2.1]: pipewright::semantics#21-a-steps-view-of-its-instance-and-continuations

mod support;

use std::time::Duration;

use pipewright::{pipeline, CancelReason, Continuation, Current, Error, Outcome, Runtime, Step};
use support::{entries, logging_runtime, push, run_sync, Log};

async fn sleep_ms(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

/// Lets the tasks the runtime spawned run until they wait on the clock again.
async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

// ---- the step's view of its instance ----------------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_step_sees_its_ident_its_parent_and_its_runtime_before_and_after_a_wait() {
    let (runtime, log) = logging_runtime();
    let child = pipeline!(|value: i32, log: &Log, current| {
        push(
            log,
            format!(
                "sync {} of {}",
                current.ident().id(),
                current.parent().unwrap().id()
            ),
        );
        sleep_ms(10).await;
        push(
            log,
            format!(
                "resumed {} of {}",
                current.ident().id(),
                current.parent().unwrap().id()
            ),
        );
        // A waiting step that names it gets its own copy.
        report(
            current.ident().id(),
            current.runtime().live_counts().0,
            log.clone(),
        )
        .await;
    });
    let parent = pipeline!(|value: i32, _log: &Log| {
        value = child.clone();
    });
    let handle = runtime.invoke_pipeline(&parent, 1).unwrap();
    let root = handle.ident().id();
    handle.await.unwrap();
    let lines = entries(&log);
    let child_id: u64 = lines[0]
        .split(' ')
        .nth(1)
        .and_then(|id| id.parse().ok())
        .unwrap();
    assert_ne!(child_id, root);
    assert_eq!(
        lines,
        [
            format!("sync {child_id} of {root}"),
            format!("resumed {child_id} of {root}"),
            format!("waiting step {child_id} sees 2 live"),
        ]
    );
}

async fn report(id: u64, live: usize, log: Log) {
    push(&log, format!("waiting step {id} sees {live} live"));
}

#[test]
fn rescue_and_finally_steps_see_their_instance_too() {
    let (runtime, log) = logging_runtime();
    let p = pipeline!(|value: i32, log: &Log, current| {
        value = Err::<i32, _>("boom");
        rescue!(|error| {
            push(log, format!("rescue {} {error:#}", current.ident().name()));
        });
        finally!(|error| {
            push(
                log,
                format!("finally {} {}", current.ident().name(), error.is_some()),
            );
        });
    });
    let runtime = runtime;
    let handle = runtime.invoke_pipeline(&p, 1).unwrap();
    let name = handle.ident().name().to_owned();
    drop(handle);
    assert_eq!(
        entries(&log),
        [
            format!("rescue {name} step failed: boom"),
            format!("finally {name} true")
        ]
    );
}

#[test]
fn a_root_has_no_parent() {
    let (runtime, log) = logging_runtime();
    let p = pipeline!(|value: i32, log: &Log, current| {
        push(log, format!("{:?}", current.parent()));
    });
    run_sync(&runtime, &p, 1).unwrap();
    assert_eq!(entries(&log), ["None"]);
}

// ---- fork ---------------------------------------------------------------------------------

#[test]
fn a_fork_with_a_new_value_runs_the_rest_first_then_the_original_goes_on() {
    let (runtime, log) = logging_runtime();
    let p = pipeline!(|value: i32, log: &Log, current| {
        push(log, format!("start {value}"));
        value = {
            if value == 1 {
                let fork = current.fork(current.continuation().with_value(10)).unwrap();
                push(
                    log,
                    format!("forked as a child: {}", fork != *current.ident()),
                );
            }
            value + 1
        };
        push(
            log,
            format!("end {value} (parent: {})", current.parent().is_some()),
        );
        value = value * 2;
    });
    assert_eq!(run_sync(&runtime, &p, 1).unwrap(), 4);
    assert_eq!(
        entries(&log),
        [
            "start 1",
            "end 10 (parent: true)",
            "forked as a child: true",
            "end 2 (parent: false)"
        ]
    );
    assert_eq!(runtime.live_counts().0, 0);
}

#[tokio::test(start_paused = true)]
async fn a_fork_that_waits_keeps_its_parent_live_and_is_cancelled_with_it() {
    let (runtime, log) = logging_runtime();
    let p = pipeline!(|value: i32, log: &Log, current| {
        {
            if value == 1 {
                current
                    .fork(current.continuation().with_value(100))
                    .unwrap();
            }
        };
        sleep_ms(50).await;
        push(log, format!("slept {value}"));
        finally!(|error| {
            push(log, format!("finally {value} {}", error.is_some()));
        });
    });
    let handle = runtime.invoke_pipeline(&p, 1).unwrap();
    let root = handle.ident().clone();
    tokio::time::sleep(Duration::from_millis(10)).await;
    // The root and its fork, both sleeping.
    assert_eq!(runtime.live_counts().0, 2);
    runtime.cancel(&root).unwrap();
    settle().await;
    assert!(matches!(
        handle.await,
        Err(Error::Cancelled {
            reason: CancelReason::Requested,
            ..
        })
    ));
    assert_eq!(entries(&log), ["finally 100 true", "finally 1 true"]);
    assert_eq!(runtime.live_counts().0, 0);
}

#[tokio::test(start_paused = true)]
async fn cancelling_a_fork_climbs_to_its_parent_unless_it_is_detached() {
    for detached in [false, true] {
        let (runtime, log) = logging_runtime();
        let p = pipeline!(|value: i32, log: &Log, current| {
            {
                if value == 1 {
                    let rest = current.continuation().with_value(100);
                    let fork = if detached {
                        current.fork_detached(rest)
                    } else {
                        current.fork(rest)
                    };
                    push(log, fork.unwrap().id().to_string());
                }
            };
            sleep_ms(50).await;
            push(log, format!("slept {value}"));
        });
        let handle = runtime.invoke_pipeline(&p, 1).unwrap();
        let fork_id: u64 = entries(&log)[0].parse().unwrap();
        let fork = runtime
            .active()
            .iter()
            .flat_map(|queue| queue.instances().to_vec())
            .find(|instance| instance.ident().id() == fork_id)
            .unwrap();
        assert_eq!(fork.parent(), Some(handle.ident()));
        assert_eq!(fork.is_detached(), detached);
        runtime.cancel(fork.ident()).unwrap();
        settle().await;
        tokio::time::sleep(Duration::from_millis(60)).await;
        let outcome = handle.await;
        if detached {
            assert_eq!(outcome.unwrap(), 1);
            assert_eq!(entries(&log)[1..], ["slept 1"]);
        } else {
            assert!(
                matches!(
                    outcome,
                    Err(Error::Cancelled {
                        reason: CancelReason::Requested,
                        ..
                    })
                ),
                "{outcome:?}"
            );
            assert_eq!(entries(&log).len(), 1);
        }
        assert_eq!(runtime.live_counts().0, 0);
    }
}

// ---- forks at the end of an instance ----------------------------------------------------

/// A context that keeps a step's view of its instance past the step.
#[derive(Default)]
struct Keeper {
    log: Log,
    kept: std::sync::Mutex<Option<Current<'static, i32, Keeper>>>,
}

#[tokio::test(start_paused = true)]
async fn a_fork_through_a_kept_view_is_refused_once_the_runtime_stopped() {
    let runtime = Runtime::builder(Keeper::default()).start().unwrap();
    // Spared by `stop`, so the instance the view belongs to is still live afterwards.
    let p = pipeline!(|value: i32, keeper: &Keeper, current| {
        {
            if value == 1 {
                *keeper.kept.lock().unwrap() = Some(current.to_static());
            }
        };
        sleep_ms(100).await;
        push(&keeper.log, format!("ran {value}"));
    })
    .cancel_on_shutdown(false);
    let handle = runtime.invoke_pipeline(&p, 1).unwrap();
    runtime.stop();
    let kept = runtime.context().kept.lock().unwrap().take().unwrap();
    let fork = kept.fork(kept.continuation().with_value(7));
    let detached = kept.fork_detached(kept.continuation().with_value(8));
    for refused in [fork, detached] {
        let error = refused.unwrap_err();
        assert_eq!(format!("{error:#}"), "step failed: runtime stopped");
    }
    drop(kept);
    assert_eq!(handle.await.unwrap(), 1);
    // Only the spared instance ran; neither fork did.
    assert_eq!(entries(&runtime.context().log), ["ran 1"]);
    assert_eq!(runtime.live_counts().0, 0);
}

#[tokio::test(start_paused = true)]
async fn a_fork_through_a_view_kept_past_its_instance_is_refused() {
    let runtime = Runtime::builder(Keeper::default()).start().unwrap();
    let p = pipeline!(|value: i32, keeper: &Keeper, current| {
        {
            if value == 1 {
                *keeper.kept.lock().unwrap() = Some(current.to_static());
            }
        };
        push(&keeper.log, format!("ran {value}"));
    });
    assert_eq!(run_sync(&runtime, &p, 1).unwrap(), 1);
    let kept = runtime.context().kept.lock().unwrap().take().unwrap();
    let refused = kept.fork(kept.continuation().with_value(7));
    assert!(
        matches!(
            refused,
            Err(Error::Cancelled {
                reason: CancelReason::ParentEnded,
                ..
            })
        ),
        "{refused:?}"
    );
    assert_eq!(entries(&runtime.context().log), ["ran 1"]);
    assert_eq!(runtime.live_counts().0, 0);
}

#[tokio::test(start_paused = true)]
async fn a_fork_from_finally_of_a_cancelled_instance_is_refused_with_cancelled() {
    for detached in [false, true] {
        let (runtime, log) = logging_runtime();
        let p = pipeline!(|value: i32, log: &Log, current| {
            std::future::pending::<()>().await;
            finally!(|_error| {
                {
                    if value == 1 {
                        let rest = current.continuation().with_value(2);
                        let fork = if detached {
                            current.fork_detached(rest)
                        } else {
                            current.fork(rest)
                        };
                        push(log, format!("fork: {fork:?}"));
                    }
                };
                // What a fork would run: an hour-long wait.
                sleep_ms(if value == 1 { 0 } else { 3_600_000 }).await;
                push(log, format!("finally {value}"));
            });
        });
        let handle = runtime.invoke_pipeline(&p, 1).unwrap();
        settle().await;
        runtime.cancel(handle.ident()).unwrap();
        assert!(matches!(
            handle.await,
            Err(Error::Cancelled {
                reason: CancelReason::Requested,
                ..
            })
        ));
        settle().await;
        assert_eq!(
            entries(&log),
            [
                "fork: Err(Cancelled { reason: ParentEnded, by_parent: false })",
                "finally 1"
            ]
        );
        // Nothing is left waiting for the hour to pass.
        assert_eq!(runtime.live_counts().0, 0);
    }
}

#[tokio::test(start_paused = true)]
async fn a_detached_child_started_from_finally_of_a_cancelled_instance_does_not_start() {
    let (runtime, log) = logging_runtime();
    let hour_long = pipeline!(|value: i32, log: &Log| {
        push(log, "detached child started");
        sleep_ms(3_600_000).await;
    })
    .detached();
    let p = pipeline!(|value: i32, log: &Log| {
        std::future::pending::<()>().await;
        finally!(|_error| {
            value = hour_long.clone();
            push(log, "finally went on");
        });
    });
    let handle = runtime.invoke_pipeline(&p, 1).unwrap();
    settle().await;
    runtime.cancel(handle.ident()).unwrap();
    assert!(matches!(
        handle.await,
        Err(Error::Cancelled {
            reason: CancelReason::Requested,
            ..
        })
    ));
    assert_eq!(entries(&log), ["finally went on"]);
    assert_eq!(runtime.live_counts().0, 0);
}

/// A context that keeps a continuation captured in the main steps, for `finally!`.
#[derive(Default)]
struct Captured {
    log: Log,
    kept: std::sync::Mutex<Option<Continuation<i32, Captured>>>,
}

fn resuming_from_finally() -> pipewright::Pipeline<i32, Captured> {
    pipeline!(|value: i32, captured: &Captured, current| {
        {
            *captured.kept.lock().unwrap() = Some(current.continuation());
        };
        push(&captured.log, format!("main {value}"));
        sleep_ms(if value == 1 { 3_600_000 } else { 0 }).await;
        finally!(|error| {
            push(&captured.log, format!("finally, error: {error:?}"));
            captured
                .kept
                .lock()
                .unwrap()
                .take()
                .expect("captured in the main steps");
        });
    })
}

#[tokio::test(start_paused = true)]
async fn resuming_from_finally_is_refused_so_finally_runs_once_per_instance() {
    for cancelled in [true, false] {
        let runtime = Runtime::builder(Captured::default()).start().unwrap();
        let handle = runtime
            .invoke_pipeline(&resuming_from_finally(), if cancelled { 1 } else { 2 })
            .unwrap();
        settle().await;
        if cancelled {
            runtime.cancel(handle.ident()).unwrap();
        }
        let result = handle.await;
        let log = entries(&runtime.context().log);
        // `finally!`'s second step resumed the captured continuation (the main steps,
        // then `finally!` again): refused, so it ran once.
        let finallies = log
            .iter()
            .filter(|entry| entry.starts_with("finally"))
            .count();
        assert_eq!(finallies, 1, "{log:?}");
        // An error in `finally!` fails the instance, a cancelled one too.
        let error = result.unwrap_err();
        assert!(matches!(error, Error::ResumedInFinally), "{error:?}");
        assert_eq!(error.to_string(), "continuation resumed in finally!");
        assert_eq!(runtime.live_counts().0, 0);
    }
}

// ---- resume -------------------------------------------------------------------------------

/// The seed's "replace the continuation when the value is even": from the step that
/// decides, the rest of the pipeline runs from another value, with a step pushed at its end.
fn even_replaced(wait: bool) -> pipewright::Pipeline<i32, Log> {
    pipeline!(|value: i32, log: &Log, current| {
        value = value + 1;
        {
            async move {
                if wait {
                    sleep_ms(100).await;
                }
            }
        }
        .await;
        {
            if value % 2 == 0 {
                let mut rest = current.continuation();
                rest.innermost_mut().set_value(value * 100);
                rest.innermost_mut()
                    .push(Step::new(|value: &i32, log: &Log| {
                        push(log, format!("pushed step on {value}"));
                        Outcome::Value(value + 5)
                    }));
                Some(rest)
            } else {
                None
            }
        };
        push(log, format!("rest on {value}"));
        value = value + 1;
    })
}

#[test]
fn resuming_a_replaced_continuation_synchronously() {
    let (runtime, log) = logging_runtime();
    let p = even_replaced(false);
    assert_eq!(run_sync(&runtime, &p, 1).unwrap(), 206);
    assert_eq!(run_sync(&runtime, &p, 2).unwrap(), 4);
    assert_eq!(
        entries(&log),
        ["rest on 200", "pushed step on 201", "rest on 3"]
    );
    assert_eq!(runtime.live_counts().0, 0);
}

#[tokio::test(start_paused = true)]
async fn resuming_a_replaced_continuation_after_a_wait() {
    let (runtime, log) = logging_runtime();
    let p = even_replaced(true);
    let mut handle = runtime.invoke_pipeline(&p, 1).unwrap();
    tokio::time::sleep(Duration::from_millis(99)).await;
    assert!(handle.try_result().is_none());
    tokio::time::sleep(Duration::from_millis(1)).await;
    settle().await;
    assert_eq!(handle.try_result().unwrap().unwrap(), 206);
    assert_eq!(entries(&log), ["rest on 200", "pushed step on 201"]);
}

#[tokio::test(start_paused = true)]
async fn a_waiting_step_can_resume_the_continuation_it_was_given() {
    let (runtime, log) = logging_runtime();
    let p = pipeline!(|value: i32, log: &Log, current| {
        later(current.continuation().with_value(value * 10)).await;
        push(log, format!("rest on {value}"));
    });
    let handle = runtime.invoke_pipeline(&p, 3).unwrap();
    assert_eq!(handle.await.unwrap(), 30);
    assert_eq!(entries(&log), ["rest on 30"]);
}

async fn later(rest: Continuation<i32, Log>) -> Continuation<i32, Log> {
    sleep_ms(100).await;
    rest
}

#[test]
fn a_capture_two_levels_deep_flows_out_through_both_levels() {
    let (runtime, log) = logging_runtime();
    let inner = pipeline!(|value: i32, log: &Log, current| {
        {
            let rest = current.continuation();
            let idents: Vec<String> = rest.frames().map(|f| f.ident().name().to_owned()).collect();
            push(log, format!("captured {} frames", idents.len()));
            rest.with_value(value * 10)
        };
        push(log, format!("inner rest on {value}"));
        value = value + 1;
    });
    let middle = pipeline!(|value: i32, log: &Log| {
        value = inner.clone();
        push(log, format!("middle rest on {value}"));
        value = value + 100;
        finally!(|_error| {
            push(log, "middle finally");
        });
    });
    let outer = pipeline!(|value: i32, log: &Log| {
        value = middle.clone();
        push(log, format!("outer rest on {value}"));
        value = value + 1000;
        finally!(|_error| {
            push(log, "outer finally");
        });
    });
    assert_eq!(run_sync(&runtime, &outer, 1).unwrap(), 1111);
    assert_eq!(
        entries(&log),
        [
            "captured 3 frames",
            "inner rest on 10",
            "middle rest on 11",
            "middle finally",
            "outer rest on 111",
            "outer finally"
        ]
    );
    assert_eq!(runtime.live_counts().0, 0);
}

#[tokio::test(start_paused = true)]
async fn a_muted_level_keeps_its_own_value_when_resumed() {
    let (runtime, log) = logging_runtime();
    let inner = pipeline!(|value: i32, log: &Log, current| {
        sleep_ms(10).await;
        current.continuation().with_value(value * 10);
        push(log, format!("inner rest on {value}"));
        value = value + 1;
    });
    let outer = pipeline!(|value: i32, log: &Log| {
        value = value + 1;
        inner.clone();
        push(log, format!("outer rest on {value}"));
    });
    let handle = runtime.invoke_pipeline(&outer, 1).unwrap();
    assert_eq!(handle.await.unwrap(), 2);
    assert_eq!(entries(&log), ["inner rest on 20", "outer rest on 2"]);
}

#[test]
fn a_step_inserted_at_the_front_runs_a_nested_pipeline_whose_result_becomes_the_value() {
    let (runtime, log) = logging_runtime();
    let times_ten = pipeline!(|value: i32, log: &Log| {
        push(log, format!("inserted on {value}"));
        value = value * 10;
    });
    let times_ten_again = times_ten.clone();
    let with_a_step_after = pipeline!(|value: i32, log: &Log, current| {
        {
            let mut rest = current.continuation();
            rest.innermost_mut().insert(times_ten.clone());
            rest
        };
        value = value + 1;
    });
    let with_nothing_after = pipeline!(|value: i32, log: &Log, current| {
        {
            let mut rest = current.continuation();
            rest.innermost_mut().insert(times_ten_again.clone());
            assert_eq!(rest.innermost().remaining(), 1);
            rest
        };
    });
    assert_eq!(run_sync(&runtime, &with_a_step_after, 2).unwrap(), 21);
    assert_eq!(run_sync(&runtime, &with_nothing_after, 2).unwrap(), 20);
    assert_eq!(entries(&log), ["inserted on 2", "inserted on 2"]);
}

#[test]
fn appending_the_rest_of_the_pipeline_runs_the_tail_twice() {
    let (runtime, log) = logging_runtime();
    let p = pipeline!(|value: i32, log: &Log, current| {
        {
            let mut rest = current.continuation();
            let again = rest.clone().into_pipeline();
            rest.innermost_mut().push(again);
            rest
        };
        push(
            log,
            format!("tail on {value} by {}", current.parent().is_some()),
        );
        value = value + 1;
    });
    assert_eq!(run_sync(&runtime, &p, 1).unwrap(), 3);
    assert_eq!(entries(&log), ["tail on 1 by false", "tail on 2 by true"]);
}

#[tokio::test(start_paused = true)]
async fn a_resumed_level_goes_on_in_place_keeping_its_ident_and_its_slot() {
    let (runtime, log) = logging_runtime();
    let inner = pipeline!(|value: i32, log: &Log, current| {
        {
            push(log, format!("captured by {}", current.ident().id()));
            current.continuation().with_value(5)
        };
        sleep_ms(100).await;
        push(
            log,
            format!("inner rest on {value} by {}", current.ident().id()),
        );
    })
    .enqueued()
    .queue("inner");
    let outer = pipeline!(|value: i32, _log: &Log| {
        value = inner.clone();
    });
    let handle = runtime.invoke_pipeline(&outer, 1).unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    let queue = runtime.queue_info("inner").unwrap();
    assert_eq!((queue.running(), queue.performed()), (1, 0));
    let active = runtime.active();
    let level = active
        .iter()
        .find(|queue| queue.name() == "inner")
        .map(|queue| queue.instances()[0].clone())
        .unwrap();
    assert_eq!(level.parent(), Some(handle.ident()));
    assert_eq!(handle.await.unwrap(), 5);
    let id = level.ident().id();
    assert_eq!(
        entries(&log),
        [
            format!("captured by {id}"),
            format!("inner rest on 5 by {id}")
        ]
    );
    assert_eq!(runtime.queue_info("inner").unwrap().performed(), 1);
}

/// Found by the soak: a level that resumed used to end and hand its `finally!` to a
/// frame that re-joined its queue; cancelled before that frame got a slot, the level's
/// `finally!` never ran. Resumed in place, it keeps its slot and runs it once.
#[tokio::test(start_paused = true)]
async fn a_level_that_resumed_runs_its_finally_once_even_if_cancelled_right_after() {
    let (runtime, log) = logging_runtime();
    let child = pipeline!(|value: i32, log: &Log, current| {
        push(log, format!("child started on {value}"));
        sleep_ms(10).await;
        {
            (value == 1).then(|| current.continuation().with_value(100))
        };
        sleep_ms(10).await;
        push(log, format!("child rest on {value}"));
        finally!(|_error| {
            push(log, format!("child finally on {value}"));
        });
    })
    .enqueued()
    .queue("inner");
    let root = pipeline!(|value: i32, log: &Log| {
        value = child.clone();
        finally!(|_error| {
            push(log, format!("root finally on {value}"));
        });
    });
    let first = runtime.invoke_pipeline(&root, 1).unwrap();
    tokio::time::sleep(Duration::from_millis(1)).await;
    let second = runtime.invoke_pipeline(&root, 2).unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    settle().await;
    runtime.cancel(first.ident()).unwrap();
    assert!(matches!(
        first.await,
        Err(Error::Cancelled {
            reason: CancelReason::Requested,
            ..
        })
    ));
    assert_eq!(second.await.unwrap(), 2);
    assert_eq!(
        entries(&log),
        [
            "child started on 1",
            "child finally on 100",
            "root finally on 1",
            "child started on 2",
            "child rest on 2",
            "child finally on 2",
            "root finally on 2"
        ]
    );
    assert_eq!(runtime.live_counts().0, 0);
}

#[test]
fn a_continuation_captured_elsewhere_runs_as_a_child_in_place_of_the_rest() {
    let (runtime, log) = logging_runtime();
    let kept: std::sync::Arc<std::sync::Mutex<Option<Continuation<i32, Log>>>> =
        std::sync::Arc::default();
    let keep = kept.clone();
    let capture = pipeline!(|value: i32, log: &Log, current| {
        {
            *keep.lock().unwrap() = Some(current.continuation());
        };
        push(log, format!("captured rest on {value}"));
        value = value + 1;
    });
    let take = kept.clone();
    let elsewhere = pipeline!(|value: i32, log: &Log| {
        take.lock()
            .unwrap()
            .take()
            .map(|rest| rest.with_value(value * 10));
        push(log, format!("never on {value}"));
        finally!(|_error| {
            push(log, format!("elsewhere finally on {value}"));
        });
    });
    assert_eq!(run_sync(&runtime, &capture, 1).unwrap(), 2);
    assert_eq!(run_sync(&runtime, &elsewhere, 3).unwrap(), 31);
    assert_eq!(
        entries(&log),
        [
            "captured rest on 1",
            "captured rest on 30",
            "elsewhere finally on 31"
        ]
    );
    assert_eq!(runtime.live_counts().0, 0);
}

#[test]
fn a_continuation_shows_its_frames() {
    let runtime = Runtime::builder(()).start().unwrap();
    let inner = pipeline!(|value: i32, _ctx: &(), current| {
        value = {
            let rest = current.continuation();
            let frames: Vec<(usize, bool, i32)> = rest
                .frames()
                .map(|frame| (frame.remaining(), frame.is_muted(), *frame.value()))
                .collect();
            assert_eq!(frames, [(1, false, 3), (0, true, 3), (2, false, 2)]);
            assert_eq!(rest.len(), 3);
            assert!(rest.frame(3).is_none());
            value
        };
        value = value + 1;
    });
    let middle = pipeline!(|value: i32, _ctx: &()| {
        value = value + 1;
        value = inner.clone();
    });
    let outer = pipeline!(|value: i32, _ctx: &()| {
        value = value + 1;
        middle.clone();
        value = value + 1;
        value = value + 1;
    });
    assert_eq!(
        runtime
            .invoke_pipeline(&outer, 1)
            .unwrap()
            .try_result()
            .unwrap()
            .unwrap(),
        4
    );
}

#[test]
fn the_watcher_sees_a_fork_and_a_resumed_frame_like_any_child() {
    let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = events.clone();
    let runtime = Runtime::builder(())
        .watcher(move |event| {
            sink.lock()
                .unwrap()
                .push(format!("{:?} #{}", event.kind(), event.ident().id()));
        })
        .start()
        .unwrap();
    let p = pipeline!(|value: i32, _ctx: &(), current| {
        {
            if value == 1 {
                current.fork(current.continuation().with_value(2)).unwrap();
            }
        };
        value = value + 1;
    });
    let handle = runtime.invoke_pipeline(&p, 1).unwrap();
    let root = handle.ident().id();
    let fork = root + 1;
    let seen = events.lock().unwrap().clone();
    assert_eq!(
        seen,
        [
            format!("Admitted #{root}"),
            format!("Started #{root}"),
            format!("Admitted #{fork}"),
            format!("Started #{fork}"),
            format!("Finished #{fork}"),
            format!("Finished #{root}"),
        ]
    );
}

#[test]
fn a_continuation_captured_in_rescue_runs_the_rest_of_rescue_then_finally() {
    let (runtime, log) = logging_runtime();
    let p = pipeline!(|value: i32, log: &Log, current| {
        value = Err::<i32, _>("no");
        rescue!(|error| {
            {
                let mut rest = current.continuation().with_value(value * 10);
                rest.innermost_mut()
                    .insert(Step::new(|value: &i32, log: &Log| {
                        push(log, format!("inserted on {value}"));
                        Outcome::Keep
                    }));
                rest
            };
            push(log, format!("rescue rest on {value}: {error:#}"));
            value = value + 1;
        });
        finally!(|error| {
            push(
                log,
                format!("finally on {value}, error: {}", error.is_some()),
            );
        });
    });
    assert_eq!(run_sync(&runtime, &p, 4).unwrap(), 41);
    assert_eq!(
        entries(&log),
        [
            "inserted on 40",
            "rescue rest on 40: step failed: no",
            "finally on 41, error: true"
        ]
    );
}
