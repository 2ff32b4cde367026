//! The error path ([SEMANTICS 1.2]): `rescue!`, `finally!`, the error reporter, panics.
//!
//! [SEMANTICS 1.2]: pipewright::semantics#12-errors-rescue-and-finally

mod support;

use std::time::Duration;

use pipewright::{pipeline, CancelReason, Error};
use support::{entries, logging_runtime, push, run_sync, Log};

#[test]
fn rescue_starts_from_the_value_before_the_failing_step() {
    let (runtime, log) = logging_runtime();
    let p = pipeline!(|value: i32, log: &Log| {
        value = value + 1;
        value = value + 10;
        value = Err::<i32, _>("boom");
        value = value + 1000;
        rescue!(|error| {
            push(log, format!("rescue saw {value} and {error:#}"));
            value = value + 1;
        });
    });
    assert_eq!(run_sync(&runtime, &p, 0).unwrap(), 12);
    assert_eq!(entries(&log), ["rescue saw 11 and step failed: boom"]);
}

#[tokio::test(start_paused = true)]
async fn rescue_after_a_failed_future_sees_the_value_before_it() {
    let (runtime, log) = logging_runtime();
    let p = pipeline!(|value: i32, log: &Log| {
        value = value + 1;
        value = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Err::<i32, _>("rejected")
        }
        .await;
        value = value + 1000;
        rescue!(|error| {
            push(log, format!("{error:#}"));
            value = value + 1;
        });
    });
    assert_eq!(runtime.invoke_pipeline(&p, 0).unwrap().await.unwrap(), 2);
    assert_eq!(entries(&log), ["step failed: rejected"]);
}

#[test]
fn an_unhandled_error_fails_the_pipeline_and_is_reported_once() {
    let (runtime, log) = logging_runtime();
    let p = pipeline!(|value: i32, _log: &Log| {
        value = Err::<i32, _>("unhandled");
    });
    let error = run_sync(&runtime, &p, 0).unwrap_err();
    assert_eq!(format!("{error:#}"), "step failed: unhandled");
    let reported = entries(&log);
    assert_eq!(reported.len(), 1);
    assert!(reported[0].starts_with("reported pipeline@tests/errors.rs:"));
    assert!(reported[0].ends_with("step failed: unhandled"));
}

#[test]
fn a_step_returning_dropped_ends_its_instance_as_dropped() {
    let (runtime, log) = logging_runtime();
    let refused = pipeline!(|value: i32, log: &Log| {
        value = Err::<i32, _>(Error::Dropped);
        value = value + 1; // not reached
        rescue!(|error| {
            push(log, "rescued");
        });
        finally!(|error| {
            push(log, format!("finally {}", error.unwrap()));
        });
    });
    let error = run_sync(&runtime, &refused, 1).unwrap_err();
    assert!(error.is_dropped(), "{error:?}");
    // As a dropped child does, it takes its parent with it.
    let parent = pipeline!(|value: i32, _log: &Log| {
        value = refused.clone();
        value = value + 100; // not reached
    });
    assert!(run_sync(&runtime, &parent, 1).unwrap_err().is_dropped());
    // No rescue!, nothing reported; finally! saw the refusal.
    assert_eq!(
        entries(&log),
        [
            "finally instance dropped by its queue",
            "finally instance dropped by its queue"
        ]
    );
}

#[test]
fn a_handled_error_is_not_reported() {
    let (runtime, log) = logging_runtime();
    let p = pipeline!(|value: i32, _log: &Log| {
        value = Err::<i32, _>("handled");
        rescue!(|error| {
            value = value;
        });
    });
    assert_eq!(run_sync(&runtime, &p, 3).unwrap(), 3);
    assert!(entries(&log).is_empty());
}

#[test]
fn an_error_in_rescue_goes_to_finally_with_the_new_error() {
    let (runtime, log) = logging_runtime();
    let p = pipeline!(|value: i32, log: &Log| {
        value = Err::<i32, _>("first");
        rescue!(|error| {
            value = Err::<i32, _>("second");
            value = value + 1000;
        });
        finally!(|error| {
            push(log, format!("finally saw {:#}", error.unwrap()));
        });
    });
    let error = run_sync(&runtime, &p, 0).unwrap_err();
    assert_eq!(format!("{error:#}"), "step failed: second");
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
        value = value + 1;
        finally!(|error| {
            push(
                log,
                format!("finally error {:?}", error.map(|e| format!("{e:#}"))),
            );
            value = value * 10;
        });
    });
    assert_eq!(run_sync(&runtime, &p, 1).unwrap(), 20);
    assert_eq!(entries(&log), ["finally error None"]);
}

#[test]
fn finally_sees_a_handled_error_and_the_pipeline_succeeds() {
    let (runtime, log) = logging_runtime();
    let p = pipeline!(|value: i32, log: &Log| {
        value = Err::<i32, _>("handled");
        rescue!(|error| {
            value = value + 1;
        });
        finally!(|error| {
            push(log, format!("finally saw {:#}", error.unwrap()));
            value = value + 1;
        });
    });
    assert_eq!(run_sync(&runtime, &p, 0).unwrap(), 2);
    assert_eq!(entries(&log), ["finally saw step failed: handled"]);
}

#[test]
fn finally_does_not_swallow_an_unhandled_error() {
    let (runtime, log) = logging_runtime();
    let p = pipeline!(|value: i32, log: &Log| {
        value = Err::<i32, _>("not handled");
        finally!(|error| {
            push(log, "cleanup");
            value = value + 1;
        });
    });
    let error = run_sync(&runtime, &p, 0).unwrap_err();
    assert_eq!(format!("{error:#}"), "step failed: not handled");
    let log = entries(&log);
    assert_eq!(log[0], "cleanup");
    assert_eq!(log.len(), 2, "reported once after finally: {log:?}");
}

#[test]
fn an_error_in_finally_fails_the_pipeline_and_stops_finally() {
    let (runtime, log) = logging_runtime();
    let p = pipeline!(|value: i32, log: &Log| {
        value = value + 1;
        finally!(|error| {
            value = Err::<i32, _>("cleanup failed");
            push(log, "not reached");
        });
    });
    let error = run_sync(&runtime, &p, 0).unwrap_err();
    assert_eq!(format!("{error:#}"), "step failed: cleanup failed");
    assert_eq!(entries(&log).len(), 1);
}

#[test]
fn a_panicking_step_becomes_an_error_with_its_message() {
    let (runtime, log) = logging_runtime();
    let p = pipeline!(|value: i32, log: &Log| {
        value = value + 1;
        if value > 0 {
            panic!("step exploded at {value}")
        };
        rescue!(|error| {
            assert!(error.is_panic());
            push(log, format!("{error:#}"));
            value = value - 1;
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
        value = async move {
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
    assert_eq!(format!("{error:#}"), "step panicked: future exploded");
}

#[test]
fn rescue_can_rethrow_the_same_error_without_nesting_it() {
    let (runtime, _log) = logging_runtime();
    let p = pipeline!(|value: i32, _log: &Log| {
        value = "x".parse::<i32>();
        rescue!(|error| {
            value = Err::<i32, _>(error.clone());
        });
    });
    let error = run_sync(&runtime, &p, 0).unwrap_err();
    assert!(error.downcast_ref::<std::num::ParseIntError>().is_some());
}

#[test]
fn the_error_type_is_usable_in_rescue_bindings() {
    let (runtime, _log) = logging_runtime();
    let p = pipeline!(|value: String, _log: &Log| {
        value = Err::<String, _>(std::io::Error::other("disk"));
        rescue!(|error: &Error| {
            value = format!("{}", error.downcast_ref::<std::io::Error>().unwrap());
        });
    });
    assert_eq!(run_sync(&runtime, &p, String::new()).unwrap(), "disk");
}

/// Every error type, printed as an error-chain printer (anyhow, eyre, tracing) prints it:
/// each message once. A message that repeats its `source()`'s text would show it twice.
#[tokio::test(start_paused = true)]
async fn an_error_chain_shows_each_text_once() {
    use pipewright::supervision::{
        ChildSpec, Failure, SuperviseError, Supervisor, SupervisorError,
    };
    use pipewright::{Backoff, CancelError, InvokeError, RestartPolicy};

    fn assert_no_repeat(error: &(dyn std::error::Error + 'static), expected: &[&str]) {
        let messages = support::chain(error);
        assert_eq!(messages, expected);
        for (i, outer) in messages.iter().enumerate() {
            for inner in &messages[i + 1..] {
                assert!(
                    !outer.contains(inner.as_str()),
                    "{outer:?} repeats its source {inner:?}"
                );
            }
        }
    }

    let io = std::io::Error::other("disk full");
    let step = Error::new(io);
    assert_no_repeat(&step, &["step failed", "disk full"]);
    assert_eq!(step.message(), "disk full");
    assert_eq!(format!("{step:#}"), "step failed: disk full");
    assert_no_repeat(
        &Error::Cancelled {
            reason: CancelReason::Stopped,
            by_parent: false,
        },
        &["instance cancelled: the runtime stopped"],
    );
    assert_no_repeat(&Error::Dropped, &["instance dropped by its queue"]);
    assert_no_repeat(&Error::NoExecutor, &["no tokio runtime to wait on"]);
    assert_no_repeat(
        &Error::TimedOut {
            limit: Duration::from_millis(300),
        },
        &["timed out after 300ms"],
    );
    assert_no_repeat(&Error::ResultTaken, &["result already taken"]);

    // A panic keeps its message in its own text (it has no source).
    let (runtime, _log) = logging_runtime();
    let panics = pipeline!(|value: i32, _log: &Log| {
        value = {
            if value > 0 {
                panic!("boom {value}");
            }
            value
        };
    });
    let panicked = run_sync(&runtime, &panics, 7).unwrap_err();
    assert_no_repeat(&panicked, &["step panicked: boom 7"]);
    assert_eq!(panicked.message(), "boom 7");

    let unknown = runtime.invoke::<i32>("nope", 1).unwrap_err();
    assert_no_repeat(&unknown, &["no pipeline named `nope`"]);
    assert_no_repeat(&InvokeError::Stopped, &["runtime stopped"]);
    let ended = runtime.invoke_pipeline(&panics, 0).unwrap();
    let cancel = runtime.cancel(ended.ident()).unwrap_err();
    assert!(matches!(cancel, CancelError::NotLive { .. }));
    assert_no_repeat(&cancel, &[&format!("no live instance `{}`", ended.ident())]);
    assert_no_repeat(&SuperviseError::NoExecutor, &["no tokio runtime available"]);
    assert_no_repeat(
        &RestartPolicy::new(1, Duration::ZERO).unwrap_err(),
        &["restart period is zero"],
    );
    assert!(Backoff::exponential(Duration::ZERO, Duration::from_secs(1)).is_err());

    // A supervisor that gives up: its last failure is the source, the child's error next.
    let failure = Failure::new("read", "session timeout").at(42);
    assert_no_repeat(&failure, &["read failed at offset 42", "session timeout"]);
    let supervisor = Supervisor::new("fragile")
        .policy(RestartPolicy::new(1, Duration::from_secs(1)).unwrap())
        .child(ChildSpec::from_fn("reader", || async {
            Err::<(), _>(Failure::new("read", "disk error").at(3))
        }));
    let handle = runtime.supervise(supervisor).unwrap();
    let gave_up = handle.await.unwrap_err();
    assert!(matches!(gave_up, SupervisorError::GaveUp { .. }));
    assert_no_repeat(
        &gave_up,
        &[
            "supervisor `fragile` gave up after 1 restarts within 1s",
            "read failed at offset 3",
            "disk error",
        ],
    );
}

/// An argument no `Debug` can print: a refusal must still be `Debug` (for `unwrap`).
#[derive(Clone, PartialEq)]
struct Document(String);

fn document(text: &str) -> Document {
    Document(text.to_owned())
}

#[test]
fn a_refused_invocation_gives_its_argument_back() {
    use pipewright::{InvokeError, Refused, Runtime};
    let save = pipeline!(|value: Document, _ctx: &()| {
        value = value;
    })
    .queue("saves");
    let runtime = Runtime::builder(())
        .register("save", save.clone())
        .start()
        .unwrap();

    // Refused before any queue is looked at: an unknown name.
    let refused = runtime.invoke("missing", document("a")).unwrap_err();
    assert_eq!(
        refused,
        InvokeError::UnknownPipeline {
            name: "missing".into()
        }
    );
    assert_eq!(refused.to_string(), "no pipeline named `missing`");
    assert!(format!("{refused:?}").starts_with("Refused { error: UnknownPipeline"));
    assert!(refused.into_argument() == document("a"));

    // Refused by the queue: another configuration of `saves`.
    let conflicting = save.clone().dropping();
    let refused = runtime
        .invoke_pipeline(&conflicting, document("b"))
        .unwrap_err();
    assert!(matches!(*refused, InvokeError::QueueMismatch { .. }));
    let (error, argument) = refused.into_parts();
    assert!(matches!(error, InvokeError::QueueMismatch { .. }));
    assert!(argument == document("b"));

    // Refused by a stopped runtime, through a typed handle; `?` turns it into the error.
    let handle = runtime.handle::<Document>("save").unwrap();
    runtime.stop();
    let refused: Refused<Document> = handle.invoke(document("c")).unwrap_err();
    assert_eq!(*refused.error(), InvokeError::Stopped);
    assert!(*refused.argument() == document("c"));
    let through_question_mark = || -> Result<(), InvokeError> {
        handle.invoke(document("d"))?;
        Ok(())
    };
    assert_eq!(through_question_mark(), Err(InvokeError::Stopped));
}
