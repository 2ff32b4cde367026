//! The error path (SEMANTICS 1.2): `rescue!`, `finally!`, the error reporter, panics.

mod support;

use std::time::Duration;

use pipelines::{pipeline, Error};
use support::{entries, logging_runtime, push, run_sync, Log};

#[test]
fn rescue_starts_from_the_value_before_the_failing_step() {
    let (runtime, log) = logging_runtime();
    let p = pipeline!(|value: i32, log: &Log| {
        value + 1;
        value + 10;
        Err::<i32, _>("boom");
        value + 1000;
        rescue!(|error| {
            push(log, format!("rescue saw {value} and {error}"));
            value + 1;
        });
    });
    assert_eq!(run_sync(&runtime, &p, 0).unwrap(), 12);
    assert_eq!(entries(&log), ["rescue saw 11 and step failed: boom"]);
}

#[tokio::test(start_paused = true)]
async fn rescue_after_a_failed_future_sees_the_value_before_it() {
    let (runtime, log) = logging_runtime();
    let p = pipeline!(|value: i32, log: &Log| {
        value + 1;
        async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Err::<i32, _>("rejected")
        }
        .await;
        value + 1000;
        rescue!(|error| {
            push(log, error.to_string());
            value + 1;
        });
    });
    assert_eq!(runtime.invoke_pipeline(&p, 0).unwrap().await.unwrap(), 2);
    assert_eq!(entries(&log), ["step failed: rejected"]);
}

#[test]
fn an_unhandled_error_fails_the_pipeline_and_is_reported_once() {
    let (runtime, log) = logging_runtime();
    let p = pipeline!(|value: i32, _log: &Log| {
        Err::<i32, _>("unhandled");
    });
    let error = run_sync(&runtime, &p, 0).unwrap_err();
    assert_eq!(error.to_string(), "step failed: unhandled");
    let reported = entries(&log);
    assert_eq!(reported.len(), 1);
    assert!(reported[0].starts_with("reported pipeline@tests/errors.rs:"));
    assert!(reported[0].ends_with("step failed: unhandled"));
}

#[test]
fn a_handled_error_is_not_reported() {
    let (runtime, log) = logging_runtime();
    let p = pipeline!(|value: i32, _log: &Log| {
        Err::<i32, _>("handled");
        rescue!(|error| {
            value;
        });
    });
    assert_eq!(run_sync(&runtime, &p, 3).unwrap(), 3);
    assert!(entries(&log).is_empty());
}

#[test]
fn an_error_in_rescue_goes_to_finally_with_the_new_error() {
    let (runtime, log) = logging_runtime();
    let p = pipeline!(|value: i32, log: &Log| {
        Err::<i32, _>("first");
        rescue!(|error| {
            Err::<i32, _>("second");
            value + 1000;
        });
        finally!(|error| {
            push(log, format!("finally saw {}", error.unwrap()));
        });
    });
    let error = run_sync(&runtime, &p, 0).unwrap_err();
    assert_eq!(error.to_string(), "step failed: second");
    assert_eq!(
        entries(&log),
        [
            "finally saw step failed: second".to_string(),
            format!("reported {} step failed: second", p.site_name())
        ]
    );
}

#[test]
fn finally_runs_on_success_without_an_error_and_threads_the_value() {
    let (runtime, log) = logging_runtime();
    let p = pipeline!(|value: i32, log: &Log| {
        value + 1;
        finally!(|error| {
            push(
                log,
                format!("finally error {:?}", error.map(|e| e.to_string())),
            );
            value * 10;
        });
    });
    assert_eq!(run_sync(&runtime, &p, 1).unwrap(), 20);
    assert_eq!(entries(&log), ["finally error None"]);
}

#[test]
fn finally_sees_a_handled_error_and_the_pipeline_succeeds() {
    let (runtime, log) = logging_runtime();
    let p = pipeline!(|value: i32, log: &Log| {
        Err::<i32, _>("handled");
        rescue!(|error| {
            value + 1;
        });
        finally!(|error| {
            push(log, format!("finally saw {}", error.unwrap()));
            value + 1;
        });
    });
    assert_eq!(run_sync(&runtime, &p, 0).unwrap(), 2);
    assert_eq!(entries(&log), ["finally saw step failed: handled"]);
}

#[test]
fn finally_does_not_swallow_an_unhandled_error() {
    let (runtime, log) = logging_runtime();
    let p = pipeline!(|value: i32, log: &Log| {
        Err::<i32, _>("not handled");
        finally!(|error| {
            push(log, "cleanup");
            value + 1;
        });
    });
    let error = run_sync(&runtime, &p, 0).unwrap_err();
    assert_eq!(error.to_string(), "step failed: not handled");
    let log = entries(&log);
    assert_eq!(log[0], "cleanup");
    assert_eq!(log.len(), 2, "reported once after finally: {log:?}");
}

#[test]
fn an_error_in_finally_fails_the_pipeline_and_stops_finally() {
    let (runtime, log) = logging_runtime();
    let p = pipeline!(|value: i32, log: &Log| {
        value + 1;
        finally!(|error| {
            Err::<i32, _>("cleanup failed");
            push(log, "not reached");
        });
    });
    let error = run_sync(&runtime, &p, 0).unwrap_err();
    assert_eq!(error.to_string(), "step failed: cleanup failed");
    assert_eq!(entries(&log).len(), 1);
}

#[test]
fn a_panicking_step_becomes_an_error_with_its_message() {
    let (runtime, log) = logging_runtime();
    let p = pipeline!(|value: i32, log: &Log| {
        value + 1;
        if value > 0 {
            panic!("step exploded at {value}")
        };
        rescue!(|error| {
            assert!(error.is_panic());
            push(log, error.to_string());
            value - 1;
        });
    });
    assert_eq!(run_sync(&runtime, &p, 0).unwrap(), 0);
    assert_eq!(entries(&log), ["step panicked: step exploded at 1"]);
    // The runtime keeps working after a panic.
    assert_eq!(run_sync(&runtime, &p, -5).unwrap(), -4);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_future_becomes_an_error() {
    let (runtime, _log) = logging_runtime();
    let p = pipeline!(|value: i32, _log: &Log| {
        async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            if value == 0 {
                panic!("future exploded");
            }
            value
        }
        .await;
    });
    let error: Error = runtime.invoke_pipeline(&p, 0).unwrap().await.unwrap_err();
    assert!(error.is_panic());
    assert_eq!(error.to_string(), "step panicked: future exploded");
}

#[test]
fn rescue_can_rethrow_the_same_error_without_nesting_it() {
    let (runtime, _log) = logging_runtime();
    let p = pipeline!(|value: i32, _log: &Log| {
        "x".parse::<i32>();
        rescue!(|error| {
            Err::<i32, _>(error.clone());
        });
    });
    let error = run_sync(&runtime, &p, 0).unwrap_err();
    assert!(error.downcast_ref::<std::num::ParseIntError>().is_some());
}

#[test]
fn the_error_type_is_usable_in_rescue_bindings() {
    let (runtime, _log) = logging_runtime();
    let p = pipeline!(|value: String, _log: &Log| {
        Err::<String, _>(std::io::Error::other("disk"));
        rescue!(|error: &Error| {
            format!("{}", error.downcast_ref::<std::io::Error>().unwrap());
        });
    });
    assert_eq!(run_sync(&runtime, &p, String::new()).unwrap(), "disk");
}
