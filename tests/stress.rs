//! The runtime under concurrent use ([SEMANTICS 5]): several threads invoke into one
//! enqueued queue with max 3; the watcher's event stream (delivered in the order the
//! registry changed) proves the invariants.
//!
//! [SEMANTICS 5]: pipewright::semantics#5-the-runtime

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use pipewright::{pipeline, EventKind, Invocation, Runtime};

#[derive(Default)]
struct Watch {
    live: usize,
    max_live: usize,
    started_ever: HashMap<u64, bool>,
    admitted: Vec<u64>,
    started: Vec<u64>,
    ended: usize,
}

fn assert_send_sync<T: Send + Sync>() {}

#[test]
fn the_runtime_and_its_handles_are_send_and_sync() {
    assert_send_sync::<Runtime<()>>();
    assert_send_sync::<Invocation<u32>>();
    assert_send_sync::<pipewright::Pipeline<u32, ()>>();
}

#[test]
fn concurrent_invocations_never_exceed_max_and_start_in_arrival_order() {
    const THREADS: u64 = 4;
    const PER_THREAD: u64 = 500;
    let tokio_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    let watch = Arc::new(Mutex::new(Watch::default()));
    let seen = watch.clone();
    let work = pipeline!(|value: u64, _ctx: &()| {
        tokio::task::yield_now().await;
        value = value * 2;
        tokio::task::yield_now().await;
    })
    .enqueued()
    .max(3);
    let runtime = Runtime::builder(())
        .register("work", work)
        .executor(tokio_runtime.handle().clone())
        .watcher(move |event| {
            let mut watch = seen.lock().unwrap();
            let id = event.ident().id();
            match event.kind() {
                EventKind::Admitted => watch.admitted.push(id),
                EventKind::Started => {
                    watch.live += 1;
                    watch.max_live = watch.max_live.max(watch.live);
                    watch.started.push(id);
                    watch.started_ever.insert(id, true);
                }
                EventKind::Finished | EventKind::Failed(_) | EventKind::Cancelled { .. } => {
                    if watch.started_ever.get(&id).copied().unwrap_or(false) {
                        watch.live -= 1;
                    }
                    watch.ended += 1;
                }
                _ => {}
            }
        })
        .start()
        .unwrap();

    let threads: Vec<_> = (0..THREADS)
        .map(|thread| {
            let runtime = runtime.clone();
            std::thread::spawn(move || {
                (0..PER_THREAD)
                    .map(|i| {
                        let argument = thread * 10_000 + i;
                        (argument, runtime.invoke("work", argument).unwrap())
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let handles: Vec<_> = threads
        .into_iter()
        .flat_map(|thread| thread.join().unwrap())
        .collect();
    tokio_runtime.block_on(async {
        for (argument, handle) in handles {
            assert_eq!(handle.await.unwrap(), argument * 2);
        }
    });
    // Events may still be in delivery on another thread: wait until all are seen.
    let total = (THREADS * PER_THREAD) as usize;
    for _ in 0..1000 {
        if watch.lock().unwrap().ended == total {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let watch = watch.lock().unwrap();
    assert_eq!(watch.ended, total);
    assert_eq!(
        watch.max_live, 3,
        "never more than max live, and the max was used"
    );
    assert_eq!(watch.live, 0);
    assert_eq!(
        watch.started, watch.admitted,
        "enqueued instances start in arrival order"
    );
    assert_eq!(runtime.live_counts().0, 0);
}
