//! The value changes only where a step says so (SEMANTICS 1.1): `value = ...` assigns it;
//! every other step keeps its Rust meaning, run for its effects.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Mutex;

use pipelines::{pipeline, Error, Runtime};

fn run<V, C>(
    runtime: &Runtime<C>,
    pipeline: &pipelines::Pipeline<V, C>,
    value: V,
) -> Result<V, Error>
where
    V: Clone + Send + Sync + 'static,
    C: Send + Sync + 'static,
{
    runtime
        .invoke_pipeline(pipeline, value)
        .unwrap()
        .try_result()
        .expect("synchronous")
}

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
