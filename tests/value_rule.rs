//! The value changes only where a step says so ([SEMANTICS 1.1]): `value = ...` assigns it;
//! every other step keeps its Rust meaning, run for its effects.
//!
//! [SEMANTICS 1.1]: pipewright::semantics#11-what-a-step-does-with-the-value

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Mutex;

mod support;

use pipewright::{pipeline, Error, Runtime};
use support::run_sync as run;

// Written the natural way: the step's result (the old count) is a `u64`, the value's
// type, so it compiles with the warning of a forgotten `id =` (tests/ui has its text).
#[allow(deprecated)]
#[test]
fn a_call_that_returns_something_keeps_the_value() {
    let counted = pipeline!(|id: u64, calls: &AtomicU64| {
        calls.fetch_add(1, SeqCst); // a side effect: its result is discarded
        id = id * 10;
    });
    let runtime = Runtime::builder(AtomicU64::new(100)).start().unwrap();
    assert_eq!(run(&runtime, &counted, 7).unwrap(), 70);
    assert_eq!(runtime.context().load(SeqCst), 101);
}

type Cache = Mutex<HashMap<u32, String>>;

#[test]
fn an_insert_that_returns_the_previous_entry_keeps_the_value() {
    let remember = pipeline!(|name: String, cache: &Cache| {
        name = name.to_uppercase();
        cache.lock().unwrap().insert(1, name.clone()); // Some(previous), discarded
        name = format!("{name}!");
    });
    let runtime = Runtime::builder(Cache::default()).start().unwrap();
    assert_eq!(run(&runtime, &remember, "ann".into()).unwrap(), "ANN!");
    assert_eq!(run(&runtime, &remember, "bob".into()).unwrap(), "BOB!");
}

#[test]
fn a_bare_child_keeps_the_value_and_an_assigned_one_replaces_it() {
    let tenfold = pipeline!(|value: u32, seen: &Mutex<Vec<u32>>| {
        value = value * 10;
        seen.lock().unwrap().push(value);
    });
    let outer = pipeline!(|value: u32, _seen: &Mutex<Vec<u32>>| {
        tenfold.clone();
        value = value + 1;
        value = tenfold.clone();
        value = if value > 1_000 {
            Some(tenfold.clone())
        } else {
            None
        };
        value = if value > 1 {
            None
        } else {
            Some(tenfold.clone())
        };
    });
    let runtime = Runtime::builder(Mutex::new(Vec::new())).start().unwrap();
    assert_eq!(run(&runtime, &outer, 1).unwrap(), 20);
    assert_eq!(*runtime.context().lock().unwrap(), [10, 20]);
}

#[test]
fn compound_assignment_and_a_destructured_value() {
    let p = pipeline!(|value: u32, _ctx: &()| {
        value += 4;
        value *= 3;
        value -= 1;
    });
    let runtime = Runtime::builder(()).start().unwrap();
    assert_eq!(run(&runtime, &p, 1).unwrap(), 14);
    let swap = pipeline!(|(low, high): (u32, u32), _ctx: &()| {
        (low, high) = (high, low + 100);
    });
    assert_eq!(run(&runtime, &swap, (1, 2)).unwrap(), (2, 101));
    // A borrowed value is assigned the same way.
    let borrowed = pipeline!(|text: &String, _ctx: &()| {
        text = format!("{text}!");
        text += "?";
    });
    assert_eq!(run(&runtime, &borrowed, "hi".into()).unwrap(), "hi!?");
}

#[test]
fn let_underscore_discards_anything_and_a_bare_err_still_fails() {
    let p = pipeline!(|value: u32, _ctx: &()| {
        let _ = value * 100;
        let _ = Err::<u32, _>("discarded on purpose");
        value = value + 1;
        Err::<String, _>(format!("{value} failed"));
    });
    let runtime = Runtime::builder(()).start().unwrap();
    assert_eq!(run(&runtime, &p, 1).unwrap_err().message(), "2 failed");
}

#[test]
fn rescue_re_raises_without_a_turbofish() {
    let p = pipeline!(|value: u32, _ctx: &()| {
        value = value.checked_sub(1).ok_or("below zero")?;
        rescue!(|error| {
            Err(error.clone());
        });
    });
    let runtime = Runtime::builder(()).start().unwrap();
    assert_eq!(run(&runtime, &p, 1).unwrap(), 0);
    assert_eq!(run(&runtime, &p, 0).unwrap_err().message(), "below zero");
}

// The first step discards a `u32` on purpose: it gets the warning of a forgotten `value =`.
#[allow(deprecated)]
#[tokio::test(start_paused = true)]
async fn a_waiting_step_assigns_its_output_or_discards_it() {
    let p = pipeline!(|value: u32, _ctx: &()| {
        async move { value * 100 }.await; // discarded, as a bare step's result is
        value = async move { value + 1 }.await;
        value = async move { Ok::<u32, Error>(value * 2) }.await?;
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let _ = async move { value * 100 }.await;
    });
    let runtime = Runtime::builder(()).start().unwrap();
    let result = runtime.invoke_pipeline(&p, 1).unwrap().await;
    assert_eq!(result.unwrap(), 4);
}
