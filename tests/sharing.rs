//! Callers sharing a live instance's result (`use_existing`): every way the instance can
//! end reaches every sharer, each sharer takes its own copy, and a sharer that goes away
//! or polls from another task disturbs nobody.

use std::future::Future;
use std::panic::panic_any;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Context;
use std::time::Duration;

use pipewright::{pipeline, Error, Pipeline, Runtime};
use tokio::time::sleep;

/// Panics when cloned once the flag is set: the copy a sharer makes is user code.
#[derive(Debug)]
struct Fragile {
    value: u32,
    explode: Arc<AtomicBool>,
}

impl PartialEq for Fragile {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

impl Eq for Fragile {}

impl std::hash::Hash for Fragile {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.value.hash(state);
    }
}

impl Clone for Fragile {
    fn clone(&self) -> Self {
        if self.explode.load(Ordering::SeqCst) {
            panic_any("clone refused");
        }
        Fragile {
            value: self.value,
            explode: Arc::clone(&self.explode),
        }
    }
}

fn runtime_with<V: Clone + Send + Sync + 'static>(
    name: &'static str,
    pipeline: Pipeline<V, ()>,
) -> Runtime<()> {
    Runtime::builder(())
        .register(name, pipeline)
        .start()
        .unwrap()
}

fn slow_inc() -> Pipeline<u32, ()> {
    pipeline!(|value: u32, _ctx: &()| {
        sleep(Duration::from_millis(100)).await;
        value = value + 1;
    })
    .use_existing()
}

#[tokio::test(start_paused = true)]
async fn every_sharer_gets_the_value_and_a_dropped_sharer_disturbs_nobody() {
    let runtime = runtime_with("inc", slow_inc());
    let leader = runtime.invoke("inc", 1_u32).unwrap();
    let mut sharers: Vec<_> = (0..5)
        .map(|_| runtime.invoke("inc", 1_u32).unwrap())
        .collect();
    assert!(sharers
        .iter()
        .all(|sharer| sharer.ident() == leader.ident()));
    // Each sharer waits (its waker registered), then two of them go away.
    let mut cx = Context::from_waker(futures::task::noop_waker_ref());
    for sharer in &mut sharers {
        assert!(Pin::new(sharer).poll(&mut cx).is_pending());
    }
    assert!(!sharers[0].is_finished());
    assert!(sharers[0].try_result().is_none());
    drop(sharers.remove(3));
    drop(sharers.remove(1));
    // One sharer waits on another task.
    let elsewhere = tokio::spawn(sharers.pop().unwrap());
    sleep(Duration::from_millis(150)).await;
    assert!(sharers[0].is_finished());
    assert_eq!(sharers[0].try_result().unwrap().unwrap(), 2);
    assert!(sharers[0].try_result().is_none(), "taken once");
    assert_eq!(sharers.pop().unwrap().await.unwrap(), 2);
    assert_eq!(elsewhere.await.unwrap().unwrap(), 2);
    assert_eq!(leader.await.unwrap(), 2);
    assert_eq!(runtime.queue_info("inc").unwrap().performed(), 1);
}

#[tokio::test(start_paused = true)]
async fn sharers_see_the_error_of_a_failed_instance() {
    let failing = pipeline!(|value: u32, _ctx: &()| {
        sleep(Duration::from_millis(100)).await;
        value = Err::<u32, _>(Error::new(format!("no {value}")));
    })
    .use_existing();
    let runtime = runtime_with("fail", failing);
    let leader = runtime.invoke("fail", 7_u32).unwrap();
    let sharer = runtime.invoke("fail", 7_u32).unwrap();
    let failed = format!("{:?}", leader.await.unwrap_err());
    assert!(failed.contains("no 7"), "{failed}");
    assert_eq!(format!("{:?}", sharer.await.unwrap_err()), failed);
}

#[tokio::test(start_paused = true)]
async fn sharers_of_a_cancelled_instance_are_cancelled_too() {
    let runtime = runtime_with("inc", slow_inc());
    let leader = runtime.invoke("inc", 1_u32).unwrap();
    let waiting = runtime.invoke("inc", 1_u32).unwrap();
    let waiting = tokio::spawn(waiting);
    sleep(Duration::from_millis(10)).await;
    let late = runtime.invoke("inc", 1_u32).unwrap();
    assert!(leader.cancel());
    assert!(waiting.await.unwrap().unwrap_err().is_cancelled());
    assert!(late.await.unwrap_err().is_cancelled());
    assert!(leader.await.unwrap_err().is_cancelled());
}

#[tokio::test(start_paused = true)]
async fn a_sharer_whose_copy_panics_gets_the_panic_and_the_others_their_value() {
    let explode = Arc::new(AtomicBool::new(false));
    let keep = pipeline!(|value: Fragile, _ctx: &()| {
        sleep(Duration::from_millis(100)).await;
    })
    .use_existing();
    let runtime = runtime_with("keep", keep);
    let argument = Fragile {
        value: 3,
        explode: Arc::clone(&explode),
    };
    let leader = runtime.invoke("keep", argument.clone()).unwrap();
    let mut calm = runtime.invoke("keep", argument.clone()).unwrap();
    let mut touchy = runtime.invoke("keep", argument).unwrap();
    sleep(Duration::from_millis(150)).await;
    // The instance ended with its value kept; the first sharer copies it in peace.
    assert_eq!(calm.try_result().unwrap().unwrap().value, 3);
    explode.store(true, Ordering::SeqCst);
    let error = touchy.try_result().unwrap().unwrap_err();
    assert!(error.is_panic(), "{error:?}");
    explode.store(false, Ordering::SeqCst);
    assert_eq!(leader.await.unwrap().value, 3);
}
