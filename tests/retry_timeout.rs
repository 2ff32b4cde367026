//! The `retry` and `timeout` modifiers: a retried instance resumes at the failed
//! step with the value from before it; a timed-out instance takes the error path with
//! `Error::TimedOut`, and `finally!` still runs. `retry_if` retries only the errors its
//! predicate accepts, and a panic is retried only with `retry_panics(true)`.
//! Exact timings under the paused clock.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pipewright::{pipeline, Backoff, Error, InvalidPolicy, RestartPolicy, Runtime};
use tokio::time::{sleep, Instant};

#[derive(Default)]
struct Ctx {
    log: Mutex<Vec<String>>,
    failures_left: AtomicU32,
}

impl Ctx {
    fn failing(failures: u32) -> Ctx {
        Ctx {
            log: Mutex::default(),
            failures_left: AtomicU32::new(failures),
        }
    }

    fn push(&self, entry: String) {
        self.log.lock().unwrap().push(entry);
    }

    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Fails while failures are left.
    fn flaky(&self, value: u32) -> Result<u32, String> {
        let left = self.failures_left.load(Ordering::SeqCst);
        if left > 0 {
            self.failures_left.store(left - 1, Ordering::SeqCst);
            Err(format!("flaky at {value}"))
        } else {
            Ok(value * 10)
        }
    }
}

fn millis_since(start: Instant) -> u128 {
    start.elapsed().as_millis()
}

#[tokio::test(start_paused = true)]
async fn a_retried_instance_resumes_at_the_failed_step_with_the_value_before_it() {
    let start = Instant::now();
    let p = pipeline!(|value: u32, ctx: &Ctx| {
        value = {
            ctx.push(format!("first step with {value}"));
            value + 1
        };
        value = {
            ctx.push(format!(
                "flaky step with {value} at {}",
                millis_since(start)
            ));
            ctx.flaky(value)
        };
        rescue!(|error| {
            ctx.push("rescue".into());
        });
    })
    .retry(
        RestartPolicy::new(3, Duration::from_secs(60))
            .unwrap()
            .with_backoff(Backoff::Fixed(Duration::from_millis(100)))
            .unwrap(),
    );
    let runtime = Runtime::builder(Ctx::failing(2)).start().unwrap();
    assert_eq!(runtime.invoke_pipeline(&p, 1).unwrap().await.unwrap(), 20);
    assert_eq!(
        runtime.context().log(),
        [
            "first step with 1",
            "flaky step with 2 at 0",
            "flaky step with 2 at 100",
            "flaky step with 2 at 200",
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn when_the_policy_gives_up_rescue_runs_with_the_last_error_then_finally() {
    let start = Instant::now();
    let p = pipeline!(|value: u32, ctx: &Ctx| {
        value = {
            ctx.push(format!("try at {}", millis_since(start)));
            ctx.flaky(value)
        };
        rescue!(|error| {
            ctx.push(format!("rescue: {error:#}"));
            value = 0;
        });
        finally!(|error| {
            ctx.push("finally".into());
        });
    })
    .retry(
        RestartPolicy::new(3, Duration::from_secs(60))
            .unwrap()
            .with_backoff(
                Backoff::exponential(Duration::from_millis(10), Duration::from_millis(25)).unwrap(),
            )
            .unwrap(),
    );
    let runtime = Runtime::builder(Ctx::failing(100)).start().unwrap();
    assert_eq!(runtime.invoke_pipeline(&p, 7).unwrap().await.unwrap(), 0);
    // Tries at 0, then after 10, 20 and 25 (capped) ms; then the policy gives up.
    assert_eq!(
        runtime.context().log(),
        [
            "try at 0",
            "try at 10",
            "try at 30",
            "try at 55",
            "rescue: step failed: flaky at 7",
            "finally",
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_future_and_a_failed_child_are_retried_at_their_step() {
    let attempts = Arc::new(AtomicU32::new(0));
    let counter = attempts.clone();
    let child = pipeline!(|value: u32, ctx: &Ctx| {
        sleep(Duration::from_millis(5)).await;
        value = ctx.flaky(value);
    });
    let p = pipeline!(|value: u32, ctx: &Ctx| {
        value = {
            counter.fetch_add(1, Ordering::SeqCst);
            async move { Ok::<u32, String>(value + 1) }
        }
        .await;
        value = &child;
    })
    .retry(RestartPolicy::new(5, Duration::from_secs(1)).unwrap());
    let runtime = Runtime::builder(Ctx::failing(3)).start().unwrap();
    assert_eq!(runtime.invoke_pipeline(&p, 1).unwrap().await.unwrap(), 20);
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        1,
        "the step before was not re-run"
    );
}

/// Counts how many times it was dropped: proves the in-flight work stopped.
struct DropWitness(Arc<AtomicU32>);

impl Drop for DropWitness {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test(start_paused = true)]
async fn a_timeout_drops_the_work_and_rescue_and_finally_run() {
    let drops = Arc::new(AtomicU32::new(0));
    let witness = drops.clone();
    let start = Instant::now();
    let p = pipeline!(|value: u32, ctx: &Ctx| {
        value = value + 1;
        value = {
            let witness = DropWitness(witness.clone());
            async move {
                sleep(Duration::from_secs(10)).await;
                drop(witness);
                value
            }
        }
        .await;
        rescue!(|error| {
            ctx.push(format!(
                "rescue at {} with {value}: {}",
                millis_since(start),
                error.is_timeout()
            ));
        });
        finally!(|error| {
            ctx.push(format!(
                "finally: {}",
                error.map_or("none".into(), |e| format!("{e:#}"))
            ));
        });
    })
    .timeout(Duration::from_millis(300));
    let runtime = Runtime::builder(Ctx::default()).start().unwrap();
    assert_eq!(runtime.invoke_pipeline(&p, 1).unwrap().await.unwrap(), 2);
    assert_eq!(drops.load(Ordering::SeqCst), 1, "the future was dropped");
    assert_eq!(
        runtime.context().log(),
        [
            "rescue at 300 with 2: true".to_owned(),
            "finally: timed out after 300ms".into(),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_timeout_without_rescue_fails_the_instance_and_is_reported() {
    let reported = Arc::new(Mutex::new(Vec::new()));
    let sink = reported.clone();
    let p = pipeline!(|value: u32, _ctx: &Ctx| {
        sleep(Duration::from_secs(10)).await;
    })
    .timeout(Duration::from_secs(1));
    let runtime = Runtime::builder(Ctx::default())
        .error_reporter(move |_, error| sink.lock().unwrap().push(error.is_timeout()))
        .start()
        .unwrap();
    let error = runtime.invoke_pipeline(&p, 1).unwrap().await.unwrap_err();
    assert!(error.is_timeout() && error.is_failed());
    assert_eq!(*reported.lock().unwrap(), [true]);
}

#[tokio::test(start_paused = true)]
async fn a_timeout_cancels_a_waiting_child_first() {
    let child = pipeline!(|value: u32, ctx: &Ctx| {
        sleep(Duration::from_secs(10)).await;
        finally!(|error| {
            ctx.push(format!("child finally: {}", error.unwrap()));
        });
    });
    let p = pipeline!(|value: u32, ctx: &Ctx| {
        value = &child;
        rescue!(|error| {
            ctx.push(format!("parent rescue: timed out {}", error.is_timeout()));
        });
    })
    .timeout(Duration::from_millis(50));
    let runtime = Runtime::builder(Ctx::default()).start().unwrap();
    assert_eq!(runtime.invoke_pipeline(&p, 3).unwrap().await.unwrap(), 3);
    assert_eq!(
        runtime.context().log(),
        [
            "child finally: instance cancelled with its parent: the instance it ran under timed out",
            "parent rescue: timed out true"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn retries_stop_at_the_timeout() {
    let p = pipeline!(|value: u32, ctx: &Ctx| {
        value = ctx.flaky(value);
        rescue!(|error| {
            ctx.push(format!("rescue: timed out {}", error.is_timeout()));
        });
    })
    .retry(
        RestartPolicy::unlimited(Duration::from_secs(60))
            .unwrap()
            .with_backoff(Backoff::Fixed(Duration::from_millis(100)))
            .unwrap(),
    )
    .timeout(Duration::from_millis(250));
    let runtime = Runtime::builder(Ctx::failing(1000)).start().unwrap();
    let start = Instant::now();
    runtime.invoke_pipeline(&p, 1).unwrap().await.unwrap();
    assert_eq!(millis_since(start), 250);
    assert_eq!(runtime.context().log(), ["rescue: timed out true"]);
}

#[test]
fn a_policy_cannot_express_unbounded_restarts_in_zero_time() {
    // No restart is within a zero period of another: such a policy would never give up.
    for max_restarts in [0, 3, u32::MAX] {
        assert_eq!(
            RestartPolicy::new(max_restarts, Duration::ZERO),
            Err(InvalidPolicy::ZeroPeriod)
        );
    }
    assert_eq!(
        InvalidPolicy::ZeroPeriod.to_string(),
        "restart period is zero"
    );
    let shortest = RestartPolicy::new(3, Duration::from_nanos(1)).unwrap();
    assert_eq!(shortest.within(), Duration::from_nanos(1));
}

#[test]
fn an_exponential_backoff_must_start_above_zero_and_be_capped_no_lower_than_its_start() {
    assert_eq!(
        Backoff::exponential(Duration::ZERO, Duration::from_secs(1)),
        Err(InvalidPolicy::ZeroInitialDelay)
    );
    let error =
        Backoff::exponential(Duration::from_secs(1), Duration::from_millis(10)).unwrap_err();
    assert_eq!(
        error,
        InvalidPolicy::CapBelowInitialDelay {
            initial: Duration::from_secs(1),
            max: Duration::from_millis(10),
        }
    );
    assert_eq!(
        format!("{error:#}"),
        "backoff cap 10ms is below its initial delay 1s"
    );
    assert_eq!(
        InvalidPolicy::ZeroInitialDelay.to_string(),
        "initial backoff delay is zero"
    );
    // A cap equal to the start is a fixed delay, spelled the long way: allowed.
    let flat = Backoff::exponential(Duration::from_secs(1), Duration::from_secs(1)).unwrap();
    assert_eq!(flat.delay(5, 0), Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn a_step_retried_with_a_one_nanosecond_period_and_no_backoff_gives_up_after_its_max_restarts(
) {
    let tries = Arc::new(AtomicU32::new(0));
    let counter = tries.clone();
    let p = pipeline!(|value: u32, ctx: &Ctx| {
        value = {
            counter.fetch_add(1, Ordering::SeqCst);
            ctx.flaky(value)
        };
        rescue!(|error| {
            ctx.push(format!("rescue: {error:#}"));
        });
    })
    .retry(RestartPolicy::new(3, Duration::from_nanos(1)).unwrap());
    let runtime = Runtime::builder(Ctx::failing(u32::MAX)).start().unwrap();
    // The tries fail at once and the paused clock does not move between them: all of them
    // are within the period, so the policy gives up and the invoke returns in the caller's
    // thread.
    let result = runtime.invoke_pipeline(&p, 1).unwrap().try_result();
    assert_eq!(result.map(Result::unwrap), Some(1));
    assert_eq!(
        tries.load(Ordering::SeqCst),
        4,
        "the first try and 3 retries"
    );
    assert_eq!(runtime.context().log(), ["rescue: step failed: flaky at 1"]);
}

/// What the `retry_if` tests' steps fail with: busy is worth another try, gone is not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fetch {
    Busy,
    Gone,
}

impl std::fmt::Display for Fetch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Fetch::Busy => "busy",
            Fetch::Gone => "gone",
        })
    }
}

impl std::error::Error for Fetch {}

fn is_busy(error: &Error) -> bool {
    error.downcast_ref::<Fetch>() == Some(&Fetch::Busy)
}

/// Fails with `script[n]` at its n-th call (counted in `calls`), then succeeds.
fn scripted(calls: &AtomicU32, script: &[Fetch], value: u32) -> Result<u32, Fetch> {
    let call = calls.fetch_add(1, Ordering::SeqCst) as usize;
    script
        .get(call)
        .map_or(Ok(value * 10), |failure| Err(*failure))
}

#[tokio::test(start_paused = true)]
async fn retry_if_retries_only_the_errors_its_predicate_accepts() {
    let start = Instant::now();
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let p = pipeline!(|value: u32, ctx: &Ctx| {
        value = value + 1;
        value = {
            ctx.push(format!("try with {value} at {}", millis_since(start)));
            async move {
                sleep(Duration::from_millis(1)).await;
                scripted(&counter, &[Fetch::Busy, Fetch::Busy, Fetch::Gone], value)
            }
        }
        .await;
        rescue!(|error| {
            ctx.push(format!(
                "rescue with {value} at {}: {error:#}",
                millis_since(start)
            ));
            value = 0;
        });
    })
    .retry_if(
        RestartPolicy::new(5, Duration::from_secs(60))
            .unwrap()
            .with_backoff(Backoff::Fixed(Duration::from_millis(100)))
            .unwrap(),
        is_busy,
    );
    let runtime = Runtime::builder(Ctx::default()).start().unwrap();
    assert_eq!(runtime.invoke_pipeline(&p, 1).unwrap().await.unwrap(), 0);
    // Busy twice: retried at the same step, with the value from before it; gone: rescued
    // at once, though the policy had restarts left.
    assert_eq!(
        runtime.context().log(),
        [
            "try with 2 at 0",
            "try with 2 at 101",
            "try with 2 at 202",
            "rescue with 2 at 203: step failed: gone",
        ]
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[test]
fn an_error_the_predicate_refuses_takes_the_error_path_at_once_and_uses_no_restart() {
    // Gone first: no retry, no backoff (so no executor needed), rescued inside `invoke`.
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let asked = Arc::new(Mutex::new(Vec::new()));
    let seen = asked.clone();
    let p = pipeline!(|value: u32, ctx: &Ctx| {
        value = scripted(&counter, &[Fetch::Gone, Fetch::Busy], value);
        rescue!(|error| {
            ctx.push(format!("rescue: {error:#}"));
        });
    })
    .retry_if(
        RestartPolicy::new(1, Duration::from_secs(60))
            .unwrap()
            .with_backoff(Backoff::Fixed(Duration::from_secs(1)))
            .unwrap(),
        move |error: &Error| {
            seen.lock().unwrap().push(error.message());
            is_busy(error)
        },
    );
    let runtime = Runtime::builder(Ctx::default()).start().unwrap();
    let result = runtime.invoke_pipeline(&p, 3).unwrap().try_result();
    assert_eq!(result.map(Result::unwrap), Some(3));
    assert_eq!(runtime.context().log(), ["rescue: step failed: gone"]);
    assert_eq!(*asked.lock().unwrap(), ["gone"]);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn retry_if_keeps_the_policy_s_counter_and_exponential_backoff() {
    let start = Instant::now();
    let asked = Arc::new(AtomicU32::new(0));
    let counter = asked.clone();
    let p = pipeline!(|value: u32, ctx: &Ctx| {
        value = {
            ctx.push(format!("try at {}", millis_since(start)));
            Err::<u32, _>(Fetch::Busy)
        };
        rescue!(|error| {
            ctx.push(format!("rescue at {}: {error:#}", millis_since(start)));
        });
    })
    .retry_if(
        RestartPolicy::new(3, Duration::from_secs(60))
            .unwrap()
            .with_backoff(
                Backoff::exponential(Duration::from_millis(10), Duration::from_millis(25)).unwrap(),
            )
            .unwrap(),
        move |error: &Error| {
            counter.fetch_add(1, Ordering::SeqCst);
            is_busy(error)
        },
    );
    let runtime = Runtime::builder(Ctx::default()).start().unwrap();
    assert_eq!(runtime.invoke_pipeline(&p, 7).unwrap().await.unwrap(), 7);
    // Tries at 0, then after 10, 20 and 25 (capped) ms; the policy gives up after 3.
    assert_eq!(
        runtime.context().log(),
        [
            "try at 0",
            "try at 10",
            "try at 30",
            "try at 55",
            "rescue at 55: step failed: busy",
        ]
    );
    // Asked at each failure, the last one included (then the policy said no).
    assert_eq!(asked.load(Ordering::SeqCst), 4);
}

/// Panics at its first `panics` calls (counted in `calls`), then doubles the value.
fn panicky(calls: &AtomicU32, panics: u32, value: u32) -> u32 {
    if calls.fetch_add(1, Ordering::SeqCst) < panics {
        panic!("transient panic");
    }
    value * 2
}

#[test]
fn a_panicking_step_is_not_retried_by_default_even_by_a_predicate_that_accepts_everything() {
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let asked = Arc::new(AtomicU32::new(0));
    let seen = asked.clone();
    let policy = RestartPolicy::new(3, Duration::from_secs(60)).unwrap();
    let p = pipeline!(|value: u32, ctx: &Ctx| {
        value = panicky(&counter, 1, value);
        rescue!(|error| {
            ctx.push(format!("rescue: {error:#}"));
        });
    });
    let runtime = Runtime::builder(Ctx::default()).start().unwrap();
    let everything = p.clone().retry_if(policy, move |_: &Error| {
        seen.fetch_add(1, Ordering::SeqCst);
        true
    });
    for pipeline in [p.retry(policy), everything] {
        calls.store(0, Ordering::SeqCst);
        let result = runtime.invoke_pipeline(&pipeline, 5).unwrap().try_result();
        assert_eq!(result.map(Result::unwrap), Some(5), "rescued, not retried");
        assert_eq!(calls.load(Ordering::SeqCst), 1, "tried once");
    }
    assert_eq!(
        runtime.context().log(),
        ["rescue: step panicked: transient panic"; 2]
    );
    assert_eq!(
        asked.load(Ordering::SeqCst),
        0,
        "the predicate never saw the panic"
    );
}

#[tokio::test(start_paused = true)]
async fn a_panic_in_a_nested_pipeline_is_not_retried_by_default() {
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let child = pipeline!(|value: u32, _ctx: &Ctx| {
        sleep(Duration::from_millis(10)).await;
        value = panicky(&counter, 1, value);
    });
    let p = pipeline!(|value: u32, _ctx: &Ctx| {
        value = &child;
    })
    .retry(RestartPolicy::new(3, Duration::from_secs(60)).unwrap());
    let runtime = Runtime::builder(Ctx::default()).start().unwrap();
    let error = runtime.invoke_pipeline(&p, 5).unwrap().await.unwrap_err();
    assert!(error.is_panic(), "{error:#}");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // With the opt-in, the nested pipeline runs again and succeeds.
    calls.store(0, Ordering::SeqCst);
    let p = p.retry_panics(true);
    assert_eq!(runtime.invoke_pipeline(&p, 5).unwrap().await.unwrap(), 10);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn with_retry_panics_a_panicking_step_is_retried_after_the_backoff_within_the_policy() {
    let start = Instant::now();
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    // `retry_panics` may come before `retry`.
    let p = pipeline!(|value: u32, ctx: &Ctx| {
        value = value + 1;
        value = {
            ctx.push(format!("try with {value} at {}", millis_since(start)));
            panicky(&counter, 2, value)
        };
        rescue!(|error| {
            ctx.push(format!("rescue: {error:#}"));
        });
    })
    .retry_panics(true)
    .retry(
        RestartPolicy::new(2, Duration::from_secs(60))
            .unwrap()
            .with_backoff(Backoff::Fixed(Duration::from_millis(50)))
            .unwrap(),
    );
    let runtime = Runtime::builder(Ctx::default()).start().unwrap();
    assert_eq!(runtime.invoke_pipeline(&p, 1).unwrap().await.unwrap(), 4);
    assert_eq!(
        runtime.context().log(),
        ["try with 2 at 0", "try with 2 at 50", "try with 2 at 100"]
    );
    // One panic more than the policy allows: the last panic is rescued.
    calls.store(0, Ordering::SeqCst);
    let counter = calls.clone();
    let p = pipeline!(|value: u32, ctx: &Ctx| {
        value = panicky(&counter, 3, value);
        rescue!(|error| {
            ctx.push(format!("rescue: {error:#}"));
        });
    })
    .retry(RestartPolicy::new(2, Duration::from_secs(60)).unwrap())
    .retry_panics(true);
    let result = runtime.invoke_pipeline(&p, 1).unwrap().try_result();
    assert_eq!(result.map(Result::unwrap), Some(1));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(
        runtime.context().log()[3..],
        ["rescue: step panicked: transient panic"]
    );
}

#[test]
fn with_retry_panics_the_predicate_decides_for_panics_too() {
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let p = pipeline!(|value: u32, _ctx: &Ctx| {
        value = if value == 0 {
            scripted(&counter, &[Fetch::Gone], value)
        } else {
            Ok(panicky(&counter, 1, value))
        };
    })
    .retry_if(
        RestartPolicy::new(3, Duration::from_secs(60)).unwrap(),
        |error: &Error| error.is_panic(),
    )
    .retry_panics(true);
    let runtime = Runtime::builder(Ctx::default()).start().unwrap();
    // A panic the predicate accepts is retried.
    let result = runtime.invoke_pipeline(&p, 4).unwrap().try_result();
    assert_eq!(result.map(Result::unwrap), Some(8));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    // An error it refuses is not.
    calls.store(0, Ordering::SeqCst);
    let error = runtime
        .invoke_pipeline(&p, 0)
        .unwrap()
        .try_result()
        .unwrap()
        .unwrap_err();
    assert_eq!(error.downcast_ref::<Fetch>(), Some(&Fetch::Gone));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[test]
fn a_panicking_predicate_fails_the_step_with_its_panic_unretried() {
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let p = pipeline!(|value: u32, ctx: &Ctx| {
        value = scripted(&counter, &[Fetch::Busy], value);
        rescue!(|error| {
            ctx.push(format!("rescue: {error:#}"));
        });
    })
    .retry_if(
        RestartPolicy::new(3, Duration::from_secs(60)).unwrap(),
        |_: &Error| -> bool { panic!("predicate bug") },
    )
    .retry_panics(true);
    let runtime = Runtime::builder(Ctx::default()).start().unwrap();
    let result = runtime.invoke_pipeline(&p, 2).unwrap().try_result();
    assert_eq!(result.map(Result::unwrap), Some(2));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        runtime.context().log(),
        ["rescue: step panicked: the retry predicate panicked: predicate bug"]
    );
}
