//! Seed README, "queues": the same pipeline registered under two names runs in two
//! queues; pipelines calling it run it in its own implicit queue; an explicit queue is
//! kept whatever happens; and two pipelines that read shared state share one enqueued
//! queue so they run one after the other.
//!
//! Run with `cargo run --example shared_queue`; it checks its own results.

use std::sync::Mutex;
use std::time::Duration;

use pipewright::{pipeline, Runtime};

async fn async_inc(value: i64) -> i64 {
    tokio::time::sleep(Duration::from_millis(100)).await;
    value + 1
}

async fn async_dec(value: i64) -> i64 {
    tokio::time::sleep(Duration::from_millis(100)).await;
    value - 1
}

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() {
    // One pipeline, two registrations: two queues named after the registrations.
    let inc = pipeline!(|value: i64, _state: &Mutex<i64>| {
        value = value + 1;
    });
    let inc_site = inc.site_name();
    let nested = inc.clone();
    let runtime = Runtime::builder(Mutex::new(0))
        .register("inc-1", inc.clone())
        .register("inc-2", inc.clone())
        .register(
            "calls-inc",
            pipeline!(|value: i64, _state: &Mutex<i64>| {
                value = &nested;
            }),
        )
        .start()
        .unwrap();
    runtime.invoke("inc-1", 1_i64).unwrap();
    runtime.invoke("inc-2", 1_i64).unwrap();
    runtime.invoke("calls-inc", 1_i64).unwrap();
    for queue in ["inc-1", "inc-2", "calls-inc", inc_site] {
        let performed = runtime.queue_info(queue).map_or(0, |q| q.performed());
        println!("queue {queue}: performed {performed}");
        assert_eq!(performed, 1);
    }

    // Two pipelines reading and writing the same state share an enqueued queue, so the
    // second reads the state only after the first wrote it.
    let inc_state = pipeline!(|value: i64, state: &Mutex<i64>| {
        value = *state.lock().unwrap();
        value = async_inc(value).await;
        *state.lock().unwrap() = value;
    })
    .enqueued()
    .queue("state-updates");
    let dec_state = pipeline!(|value: i64, state: &Mutex<i64>| {
        value = *state.lock().unwrap();
        value = async_dec(value).await;
        *state.lock().unwrap() = value;
    })
    .enqueued()
    .queue("state-updates");
    let runtime = Runtime::builder(Mutex::new(10))
        .register("inc", inc_state)
        .register("dec", dec_state)
        .start()
        .unwrap();
    let first = runtime.invoke("inc", 0_i64).unwrap();
    let second = runtime.invoke("dec", 0_i64).unwrap();
    println!("inc resolved to {}", first.await.unwrap());
    println!("dec resolved to {}", second.await.unwrap());
    let state = *runtime.context().lock().unwrap();
    println!("state is {state}: inc read 10 and wrote 11, then dec read 11 and wrote 10");
    assert_eq!(state, 10);
}
