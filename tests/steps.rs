//! What each kind of step result does ([SEMANTICS 1.1]), through the public API.
//!
//! [SEMANTICS 1.1]: pipewright::semantics#11-what-a-step-does-with-the-value

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod support;

use pipewright::{pipeline, Break, BreakAll, Cancel, Pipeline, Runtime};
use support::run_sync;

fn runtime<C: Send + Sync + 'static>(ctx: C) -> Runtime<C> {
    Runtime::builder(ctx).start().unwrap()
}

#[test]
fn a_new_value_replaces_the_value() {
    let p = pipeline!(|value: i32, _ctx: &()| {
        value = value + 1;
        value = value * 10;
    });
    assert_eq!(run_sync(&runtime(()), &p, 1).unwrap(), 20);
}

#[test]
fn a_step_that_does_not_assign_keeps_the_value_whatever_its_result() {
    let p = pipeline!(|value: i32, _ctx: &()| {
        value = value + 1;
        ();
        None::<i32>;
        Some(value + 1);
        if value > 100 {
            Some(0)
        } else {
            None
        };
        Ok::<(), String>(());
        Ok::<Option<i32>, String>(Some(value + 4));
        Ok::<u64, String>(7);
        format!("{value}");
        vec![value; 3].len();
        let _ = value * 100;
    });
    assert_eq!(run_sync(&runtime(()), &p, 1).unwrap(), 2);
}

#[test]
fn an_assigned_value_or_ok_replaces_the_value() {
    let p = pipeline!(|value: i32, _ctx: &()| {
        value = value + 1;
        value = Ok::<i32, String>(value * 3);
        value = Ok::<i32, String>(value + 4)?;
        value += 10;
        value *= 2;
    });
    assert_eq!(run_sync(&runtime(()), &p, 1).unwrap(), 40);
}

#[test]
fn an_err_that_is_not_assigned_still_takes_the_error_path() {
    let p = pipeline!(|value: i32, _ctx: &()| {
        Err::<u64, _>("not assigned, still an error");
        value = value + 1;
    });
    let error = run_sync(&runtime(()), &p, 1).unwrap_err();
    assert_eq!(error.message(), "not assigned, still an error");
    let ignored = pipeline!(|value: i32, _ctx: &()| {
        let _ = Err::<u64, _>("discarded on purpose");
        value = value + 1;
    });
    assert_eq!(run_sync(&runtime(()), &ignored, 1).unwrap(), 2);
}

#[test]
fn a_pipeline_that_never_waits_has_its_result_when_invoke_returns() {
    // No tokio runtime exists on this thread: the result cannot come from an executor.
    assert!(tokio::runtime::Handle::try_current().is_err());
    let p = pipeline!(|value: u64, _ctx: &()| {
        value = value + 1;
        value = value + 1;
        value = value + 1;
    });
    let runtime = Runtime::builder(()).register("inc-3", p).start().unwrap();
    let mut handle = runtime.invoke("inc-3", 0_u64).unwrap();
    assert!(handle.is_finished());
    assert_eq!(handle.try_result().unwrap().unwrap(), 3);
}

#[test]
fn a_future_ready_on_first_poll_does_not_suspend() {
    // Still no executor: a ready future must be consumed inline.
    let p = pipeline!(|value: i32, _ctx: &()| {
        value = std::future::ready(value + 1).await;
        value = async move { value * 2 }.await;
        futures::future::ready(()).await;
    });
    assert_eq!(run_sync(&runtime(()), &p, 1).unwrap(), 4);
}

#[tokio::test(start_paused = true)]
async fn a_pending_future_suspends_and_resumes_with_its_output() {
    let p = pipeline!(|value: i32, _ctx: &()| {
        value = value + 1;
        value = async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            value * 10
        }
        .await;
        value = value + 1;
    });
    let runtime = runtime(());
    let started = tokio::time::Instant::now();
    let mut handle = runtime.invoke_pipeline(&p, 1).unwrap();
    assert!(handle.try_result().is_none());
    assert_eq!(handle.await.unwrap(), 21);
    assert_eq!(started.elapsed(), Duration::from_millis(100));
}

#[tokio::test(start_paused = true)]
async fn a_future_output_goes_through_the_same_table() {
    let p = pipeline!(|value: i32, _ctx: &()| {
        async {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        .await;
        async { Some(0) }.await;
        value = async move { Ok::<i32, String>(value + 5) }.await;
        value = async move { Ok::<i32, String>(value * 2) }.await?;
        let _ = async move { value * 100 }.await;
    });
    assert_eq!(
        runtime(()).invoke_pipeline(&p, 1).unwrap().await.unwrap(),
        12
    );
}

#[test]
fn a_failed_future_takes_the_error_path() {
    let p = pipeline!(|value: i32, _ctx: &()| {
        value = async { Err::<i32, _>("async failure") }.await;
        value = value + 100;
    });
    let error = run_sync(&runtime(()), &p, 1).unwrap_err();
    assert_eq!(format!("{error:#}"), "step failed: async failure");
}

#[test]
fn question_mark_inside_a_step_sends_the_error_to_the_error_path() {
    let p = pipeline!(|value: String, _ctx: &()| {
        value = (value.trim().parse::<i32>()? * 2).to_string();
        rescue!(|error| {
            value = format!("rescued: {error:#}");
        });
    });
    let runtime = runtime(());
    assert_eq!(run_sync(&runtime, &p, " 21 ".into()).unwrap(), "42");
    assert_eq!(
        run_sync(&runtime, &p, "x".into()).unwrap(),
        "rescued: step failed: invalid digit found in string"
    );
}

#[test]
fn steps_can_borrow_the_value_instead_of_cloning_it() {
    let p = pipeline!(|value: &String, _ctx: &()| {
        value = value.len().to_string();
        value = format!("{value}!");
    });
    assert_eq!(run_sync(&runtime(()), &p, "hello".into()).unwrap(), "5!");
}

#[test]
fn a_value_type_with_a_lifetime_is_a_value_not_a_borrow() {
    // `&'static str` is the value's type (only a lifetime-less `&T` borrows the value).
    let p = pipeline!(|value: &'static str, _ctx: &()| {
        value = value.trim();
        value = if value.is_empty() { "empty" } else { value };
    });
    let runtime = runtime(());
    assert_eq!(run_sync(&runtime, &p, "  hi ").unwrap(), "hi");
    assert_eq!(run_sync(&runtime, &p, "   ").unwrap(), "empty");
    let waits = pipeline!(|value: &'static [u8], _ctx: &()| {
        async {
            tokio::task::yield_now().await;
        }
        .await;
        value = &value[1..];
    });
    let tokio = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let rest = tokio.block_on(async { runtime.invoke_pipeline(&waits, b"abc").unwrap().await });
    assert_eq!(rest.unwrap(), b"bc");
}

#[test]
fn header_patterns_destructure_value_and_context() {
    struct Ctx {
        offset: i32,
        calls: AtomicUsize,
    }
    let p = pipeline!(|(a, b): (i32, i32), Ctx { offset, calls }: &Ctx| {
        {
            calls.fetch_add(1, Ordering::SeqCst);
        };
        (a, b) = (a + offset, b + offset);
        (a, b) = (b, a);
    });
    let runtime = runtime(Ctx {
        offset: 10,
        calls: AtomicUsize::new(0),
    });
    assert_eq!(run_sync(&runtime, &p, (1, 2)).unwrap(), (12, 11));
    assert_eq!(runtime.context().calls.load(Ordering::SeqCst), 1);
}

#[test]
fn steps_capture_their_environment() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = log.clone();
    let p = pipeline!(|value: i32, _ctx: &()| {
        sink.lock().unwrap().push(value);
        value = value + 1;
        sink.lock().unwrap().push(value);
    });
    run_sync(&runtime(()), &p, 5).unwrap();
    assert_eq!(*log.lock().unwrap(), [5, 6]);
}

#[test]
fn break_stops_the_pipeline_with_the_current_or_given_value() {
    let now = pipeline!(|value: i32, _ctx: &()| {
        value = value + 1;
        Break::now();
        value = value + 100;
    });
    let with = pipeline!(|value: i32, _ctx: &()| {
        Break::with(value * 7);
        value = value + 100;
    });
    let runtime = runtime(());
    assert_eq!(run_sync(&runtime, &now, 1).unwrap(), 2);
    assert_eq!(run_sync(&runtime, &with, 1).unwrap(), 7);
}

#[test]
fn break_still_runs_finally() {
    let p = pipeline!(|value: i32, _ctx: &()| {
        Break::with(value + 1);
        value = value + 100;
        finally!(|error| {
            assert!(error.is_none());
            value = value * 10;
        });
    });
    assert_eq!(run_sync(&runtime(()), &p, 1).unwrap(), 20);
}

#[test]
fn break_all_at_the_root_is_a_plain_result() {
    let p = pipeline!(|value: i32, _ctx: &()| {
        BreakAll::with(value + 1);
        value = value + 100;
    });
    assert_eq!(run_sync(&runtime(()), &p, 1).unwrap(), 2);
}

#[test]
fn cancel_marker_cancels_the_instance_and_runs_finally() {
    let finally_runs = Arc::new(AtomicUsize::new(0));
    let seen = finally_runs.clone();
    let p = pipeline!(|value: i32, _ctx: &()| {
        value = value + 1;
        Cancel;
        value = value + 100;
        rescue!(|error| {
            value = value + 1000;
        });
        finally!(|error| {
            assert!(error.unwrap().is_cancelled());
            {
                seen.fetch_add(1, Ordering::SeqCst);
            };
        });
    });
    let error = run_sync(&runtime(()), &p, 1).unwrap_err();
    assert!(error.is_cancelled());
    assert_eq!(finally_runs.load(Ordering::SeqCst), 1);
}

#[test]
fn in_pipeline_is_true_only_inside_steps() {
    let p = pipeline!(|value: bool, _ctx: &()| {
        value = pipewright::in_pipeline();
    });
    assert!(!pipewright::in_pipeline());
    assert!(run_sync(&runtime(()), &p, false).unwrap());
    assert!(!pipewright::in_pipeline());
}

#[test]
fn one_pipeline_expression_has_one_site() {
    fn make() -> Pipeline<i32, ()> {
        pipeline!(|value: i32, _ctx: &()| {
            value = value;
        })
    }
    let other = pipeline!(|value: i32, _ctx: &()| {
        value = value;
    });
    assert_eq!(make().site_name(), make().site_name());
    assert_ne!(make().site_name(), other.site_name());
    assert!(other.site_name().starts_with("pipeline@tests/steps.rs:"));
}
