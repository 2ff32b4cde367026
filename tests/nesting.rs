//! Pipelines as steps of pipelines ([SEMANTICS 2], without queues).
//!
//! [SEMANTICS 2]: pipewright::semantics#2-nesting

mod support;

use std::time::Duration;

use pipewright::{pipeline, Break, BreakAll, Cancel};
use support::{entries, logging_runtime, push, run_sync, Log};

async fn async_inc(value: i32) -> i32 {
    tokio::time::sleep(Duration::from_millis(100)).await;
    value + 1
}

#[test]
fn a_child_gets_the_current_value_and_its_result_becomes_the_value() {
    let (runtime, _) = logging_runtime();
    let double = pipeline!(|value: i32, _log: &Log| {
        value = value * 2;
    });
    let p = pipeline!(|value: i32, _log: &Log| {
        value = value + 1;
        value = double.clone();
        value = &double;
        value = value + 1;
    });
    assert_eq!(run_sync(&runtime, &p, 1).unwrap(), 9);
}

#[test]
fn a_child_can_come_from_an_expression_built_at_each_run() {
    let (runtime, _) = logging_runtime();
    let p = pipeline!(|value: i32, _log: &Log| {
        value = if value > 0 {
            pipeline!(|value: i32, _log: &Log| {
                value = value * 100;
            })
        } else {
            pipeline!(|value: i32, _log: &Log| {
                value = value - 100;
            })
        };
    });
    assert_eq!(run_sync(&runtime, &p, 2).unwrap(), 200);
    assert_eq!(run_sync(&runtime, &p, 0).unwrap(), -100);
}

#[tokio::test(start_paused = true)]
async fn a_child_can_come_from_a_future_and_can_wait() {
    let (runtime, _) = logging_runtime();
    let inc_2 = pipeline!(|value: i32, _log: &Log| {
        value = async_inc(value).await;
        value = value + 1;
    });
    let p = pipeline!(|value: i32, _log: &Log| {
        value = value + 1;
        value = async_inc(value).await;
        value = {
            let inc_2 = inc_2.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(10)).await;
                inc_2
            }
        }
        .await;
        value = value + 1;
    });
    let started = tokio::time::Instant::now();
    assert_eq!(runtime.invoke_pipeline(&p, 0).unwrap().await.unwrap(), 5);
    assert_eq!(started.elapsed(), Duration::from_millis(210));
}

#[test]
fn a_childs_unhandled_error_reaches_the_parents_rescue_and_is_not_reported() {
    let (runtime, log) = logging_runtime();
    let failing = pipeline!(|value: i32, log: &Log| {
        value = value + 1;
        value = Err::<i32, _>("child failed");
        finally!(|error| {
            push(log, "child finally");
        });
    });
    let p = pipeline!(|value: i32, log: &Log| {
        value = value + 10;
        value = failing.clone();
        value = value + 1000;
        rescue!(|error| {
            push(log, format!("parent rescue at {value}: {error:#}"));
        });
    });
    assert_eq!(run_sync(&runtime, &p, 0).unwrap(), 10);
    assert_eq!(
        entries(&log),
        [
            "child finally",
            "parent rescue at 10: step failed: child failed"
        ]
    );
}

#[test]
fn an_error_no_rescue_handles_is_reported_exactly_once_at_the_root() {
    let (runtime, log) = logging_runtime();
    let leaf = pipeline!(|value: i32, _log: &Log| {
        value = Err::<i32, _>("deep");
    });
    let middle = pipeline!(|value: i32, _log: &Log| {
        value = leaf.clone();
    });
    let root = pipeline!(|value: i32, _log: &Log| {
        value = middle.clone();
    });
    let error = run_sync(&runtime, &root, 0).unwrap_err();
    assert_eq!(format!("{error:#}"), "step failed: deep");
    assert_eq!(
        entries(&log),
        [format!("reported {} step failed: deep", root.site_name())]
    );
}

#[test]
fn break_ends_only_the_child() {
    let (runtime, _) = logging_runtime();
    let child = pipeline!(|value: i32, _log: &Log| {
        Break::with(value + 1);
        value = value + 100;
    });
    let p = pipeline!(|value: i32, _log: &Log| {
        value = child.clone();
        value = value * 10;
    });
    assert_eq!(run_sync(&runtime, &p, 1).unwrap(), 20);
}

#[test]
fn break_all_ends_the_whole_chain_and_every_finally_runs() {
    let (runtime, log) = logging_runtime();
    let leaf = pipeline!(|value: i32, log: &Log| {
        BreakAll::with(value + 1);
        value = value + 100;
        finally!(|error| {
            push(log, "leaf finally");
        });
    });
    let middle = pipeline!(|value: i32, log: &Log| {
        value = leaf.clone();
        value = value + 100;
        finally!(|error| {
            push(log, "middle finally");
        });
    });
    let root = pipeline!(|value: i32, log: &Log| {
        value = middle.clone();
        value = value + 100;
        finally!(|error| {
            push(log, format!("root finally at {value}"));
        });
    });
    assert_eq!(run_sync(&runtime, &root, 1).unwrap(), 2);
    assert_eq!(
        entries(&log),
        ["leaf finally", "middle finally", "root finally at 2"]
    );
}

#[test]
fn a_muted_child_runs_but_keeps_the_parents_value() {
    let (runtime, log) = logging_runtime();
    let child = pipeline!(|value: i32, log: &Log| {
        push(log, format!("child got {value}"));
        value = value * 100;
    });
    let p = pipeline!(|value: i32, _log: &Log| {
        value = value + 1;
        child.clone();
        value = value + 1;
    });
    assert_eq!(run_sync(&runtime, &p, 0).unwrap(), 2);
    assert_eq!(entries(&log), ["child got 1"]);
}

#[test]
fn a_cancel_marker_in_a_child_cancels_up_to_the_root_children_first() {
    let (runtime, log) = logging_runtime();
    let child = pipeline!(|value: i32, log: &Log| {
        Cancel;
        finally!(|error| {
            push(log, format!("child finally: {}", error.unwrap()));
        });
    });
    let root = pipeline!(|value: i32, log: &Log| {
        value = child.clone();
        value = value + 100;
        rescue!(|error| {
            push(log, "root rescue must not run");
        });
        finally!(|error| {
            push(log, format!("root finally: {}", error.unwrap()));
        });
    });
    let error = run_sync(&runtime, &root, 0).unwrap_err();
    assert!(error.is_cancelled());
    assert_eq!(
        entries(&log),
        [
            "child finally: instance cancelled: a step cancelled it",
            "root finally: instance cancelled: a step cancelled it"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn stop_cancels_a_waiting_child_and_its_parent_children_first() {
    let (runtime, log) = logging_runtime();
    let child = pipeline!(|value: i32, log: &Log| {
        std::future::pending::<()>().await;
        finally!(|error| {
            push(log, format!("child finally: {}", error.unwrap()));
        });
    });
    let root = pipeline!(|value: i32, log: &Log| {
        value = child.clone();
        finally!(|error| {
            push(log, format!("root finally: {}", error.unwrap()));
        });
    });
    let handle = runtime.invoke_pipeline(&root, 0).unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    runtime.stop();
    assert!(handle.await.unwrap_err().is_cancelled());
    assert_eq!(
        entries(&log),
        [
            "child finally: instance cancelled with its parent: the runtime stopped",
            "root finally: instance cancelled: the runtime stopped"
        ]
    );
}
