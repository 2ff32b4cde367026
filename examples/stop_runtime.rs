//! Seed README, "stopping the runtime": `stop` cancels what is running (each instance
//! runs its `finally!`), lets pipelines marked `cancel_on_shutdown(false)` finish, and
//! refuses new invocations.
//!
//! Run with `cargo run --example stop_runtime`; it checks its own results.

use std::sync::Mutex;
use std::time::Duration;

use pipewright::{pipeline, InvokeError, Runtime};

type Log = Mutex<Vec<String>>;

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() {
    let inc_3 = pipeline!(|value: i32, _log: &Log| {
        value = value + 1;
        value = value + 1;
        value = value + 1;
    });
    let slow = pipeline!(|value: i32, log: &Log| {
        tokio::time::sleep(Duration::from_secs(60)).await;
        finally!(|error| {
            log.lock().unwrap().push(format!(
                "slow ended: {}",
                error.map_or("ok".into(), |e| e.to_string())
            ));
        });
    });
    let flush = pipeline!(|value: i32, log: &Log| {
        tokio::time::sleep(Duration::from_millis(10)).await;
        log.lock().unwrap().push("flush finished".to_owned());
    })
    .cancel_on_shutdown(false);
    let runtime = Runtime::builder(Log::default())
        .register("inc-3", inc_3)
        .register("slow", slow)
        .register("flush", flush)
        .start()
        .unwrap();

    let mut three = runtime.invoke("inc-3", 0).unwrap();
    println!("inc-3 returned {:?}", three.try_result());
    let slow = runtime.invoke("slow", 0).unwrap();
    let flush = runtime.invoke("flush", 0).unwrap();

    runtime.stop();
    let slow = slow.await;
    let flush = flush.await;
    println!("slow: {slow:?}; flush: {flush:?}");
    assert!(slow.unwrap_err().is_cancelled());
    assert_eq!(flush.unwrap(), 0);
    let refused = runtime.invoke("inc-3", 0).unwrap_err();
    println!("after stop: {refused}");
    assert_eq!(refused, InvokeError::Stopped);
    let log = runtime.context().lock().unwrap().clone();
    println!("{log:?}");
    assert_eq!(
        log,
        [
            "slow ended: instance cancelled: the runtime stopped",
            "flush finished"
        ]
    );
}
