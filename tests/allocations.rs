//! Heap allocations of the synchronous invoke path, counted exactly with a counting global
//! allocator. A quick run (a root whose steps never wait and that nothing observes) must
//! cost no allocation at all; every other instance costs at least its control block, and
//! each test below states what else it may allocate.
// The counting allocator must implement `GlobalAlloc`, an unsafe trait; it only forwards
// to the system allocator.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::future::Future;

use pipewright::{pipeline, Runtime};

struct Counting;

thread_local! {
    // Per thread, so the test harness's other threads do not disturb the count.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|count| count.set(count.get() + 1));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|count| count.set(count.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_during(f: impl FnOnce()) -> u64 {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

fn inc(value: u64) -> u64 {
    value + 1
}

#[test]
fn a_synchronous_invoke_that_nothing_observes_allocates_nothing() {
    let inc_3 = pipeline!(|value: u64, _ctx: &()| {
        value = inc(value);
        value = inc(value);
        value = inc(value);
    });
    let runtime = Runtime::builder(())
        .register("inc-3", inc_3)
        .start()
        .unwrap();
    // Warm up thread-locals and lazily initialised state.
    let _ = runtime.invoke("inc-3", 0_u64).unwrap().try_result();
    let mut result = 0;
    let count = allocations_during(|| {
        for i in 0..1000 {
            result += runtime
                .invoke("inc-3", i)
                .unwrap()
                .try_result()
                .unwrap()
                .unwrap();
        }
    });
    assert_eq!(result, (0..1000).map(|i| i + 3).sum::<u64>());
    // A quick run: no control block, no entry, no task; the queue's last result is
    // replaced in place.
    assert_eq!(count, 0, "allocations for 1000 synchronous invocations");
}

#[test]
fn events_cost_allocations_only_on_a_runtime_built_with_an_event_stream() {
    let inc_3 = pipeline!(|value: u64, _ctx: &()| {
        value = inc(value);
        value = inc(value);
        value = inc(value);
    });
    let invoke_1000 = |runtime: &Runtime<()>| {
        let _ = runtime.invoke("inc-3", 0_u64).unwrap().try_result();
        allocations_during(|| {
            for i in 0..1000_u64 {
                let _ = runtime.invoke("inc-3", i).unwrap().try_result();
            }
        })
    };
    // Without the opt-in there is nothing to subscribe to, and nothing is recorded: the
    // quick runs stay allocation-free.
    let plain = Runtime::builder(())
        .register("inc-3", inc_3.clone())
        .start()
        .unwrap();
    assert_eq!(
        plain.events().unwrap_err(),
        pipewright::SubscribeError::NotEnabled
    );
    assert_eq!(invoke_1000(&plain), 0);
    // With it, every invocation is an ordinary instance (its control block at least),
    // subscriber or not.
    let streaming = Runtime::builder(())
        .register("inc-3", inc_3)
        .event_stream(16)
        .start()
        .unwrap();
    assert!(invoke_1000(&streaming) >= 1000);
    let _subscriber = streaming.events().unwrap();
    assert!(invoke_1000(&streaming) >= 1000);
}

#[test]
fn a_per_key_queue_that_comes_and_goes_allocates_no_queue_state() {
    let keyed = pipeline!(|value: u64, _ctx: &()| {
        value = inc(value);
    })
    .queue_by(|value: &u64| format!("key-{}", value % 4))
    .enqueued();
    let runtime = Runtime::builder(())
        .register("keyed", keyed)
        .start()
        .unwrap();
    // Each key once first: the registry's shard of each key's queue grows its tables.
    for i in 0..4_u64 {
        let _ = runtime.invoke("keyed", i).unwrap().try_result();
    }
    let count = allocations_during(|| {
        for i in 0..1000_u64 {
            let result = runtime.invoke("keyed", i).unwrap().try_result();
            assert_eq!(result.unwrap().unwrap(), i + 1);
        }
    });
    // Per invocation: the key (user code), its shared name, the control block. The queue
    // is forgotten when its invocation ends and its slot, gauge included, is reused.
    assert_eq!(count, 3000);
    assert!(runtime.queue_info("key-1").is_none());
}

#[test]
fn a_synchronous_invoke_by_value_with_a_transactor_and_rescue_allocates_only_its_control_block() {
    let p = pipeline!(|value: u64, _ctx: &()| {
        value = inc(value);
        if value > u64::MAX - 10 {
            Some(pipewright::Break::now())
        } else {
            None
        };
        value = inc(value);
        rescue!(|error| {
            value = 0;
        });
        finally!(|error| {
            ();
        });
    });
    let runtime = Runtime::builder(())
        .transactor(|stretch| stretch())
        .error_reporter(|_, _| {})
        .start()
        .unwrap();
    let _ = runtime.invoke_pipeline(&p, 0).unwrap().try_result();
    let count = allocations_during(|| {
        for i in 0..1000 {
            let _ = runtime.invoke_pipeline(&p, i).unwrap().try_result();
        }
    });
    assert_eq!(count, 1000);
}

#[test]
fn a_synchronous_nested_pipeline_allocates_a_control_block_per_instance() {
    let child = pipeline!(|value: u64, _ctx: &()| {
        value = inc(value);
    });
    let p = pipeline!(|value: u64, _ctx: &()| {
        value = &child;
        child.clone();
        value = inc(value);
    });
    let runtime = Runtime::builder(()).start().unwrap();
    let _ = runtime.invoke_pipeline(&p, 0).unwrap().try_result();
    let count = allocations_during(|| {
        let result = runtime
            .invoke_pipeline(&p, 1)
            .unwrap()
            .try_result()
            .unwrap();
        assert_eq!(result.unwrap(), 3);
    });
    // Three control blocks (the root and its two children); the root's list of children
    // in the registry is intrusive (links in the entries), so it allocates nothing.
    assert_eq!(count, 3);
}

#[test]
fn a_synchronous_use_existing_invoke_allocates_its_control_block_and_its_index_list() {
    // `use_existing` hashes the argument with the keyed hasher: drawing its keys (once
    // per process) and hashing allocate nothing.
    let shared = pipeline!(|value: u64, _ctx: &()| {
        value = inc(value);
    })
    .use_existing();
    let runtime = Runtime::builder(())
        .register("shared", shared)
        .start()
        .unwrap();
    let _ = runtime.invoke("shared", 0_u64).unwrap().try_result();
    let count = allocations_during(|| {
        for i in 0..1000_u64 {
            let result = runtime.invoke("shared", i).unwrap().try_result();
            assert_eq!(result.unwrap().unwrap(), i + 1);
        }
    });
    // Per invocation: the control block, and the list of ids under the argument's hash
    // in the queue's `use_existing` index (dropped when the instance's steps end).
    assert_eq!(count, 2000);
}

#[tokio::test(flavor = "current_thread")]
async fn a_full_dropping_queue_refuses_without_allocating() {
    let busy = pipeline!(|value: String, _ctx: &()| {
        std::future::pending::<()>().await;
    })
    .dropping();
    let runtime = Runtime::builder(()).register("busy", busy).start().unwrap();
    let running = runtime.invoke("busy", "first".to_string()).unwrap();
    // Made before counting: a `String` argument would allocate when cloned.
    let arguments: Vec<String> = (0..1000).map(|i| i.to_string()).collect();
    let mut refused = Vec::with_capacity(1000);
    let count = allocations_during(|| {
        for argument in arguments {
            refused.push(runtime.invoke("busy", argument).unwrap());
        }
    });
    assert_eq!(count, 0, "allocations for 1000 refused invocations");
    for (i, handle) in refused.iter_mut().enumerate() {
        assert_eq!(handle.argument(), Some(&i.to_string()));
        assert!(handle.try_result().unwrap().unwrap_err().is_dropped());
    }
    assert!(running.cancel());
}

#[tokio::test(flavor = "current_thread")]
async fn a_restartable_replacement_allocates_only_its_own_instance() {
    let latest = pipeline!(|value: u64, _ctx: &()| {
        tokio::task::yield_now().await;
        value = value + 1;
    })
    .restartable();
    let runtime = Runtime::builder(())
        .register("latest", latest)
        .start()
        .unwrap();
    let mut handles = Vec::with_capacity(1001);
    handles.push(runtime.invoke("latest", 0_u64).unwrap());
    let count = allocations_during(|| {
        for i in 1..=1000 {
            handles.push(runtime.invoke("latest", i).unwrap());
        }
    });
    // Per invocation: its control block, its step's boxed future and its tokio task.
    // Cancelling the one it replaces allocates nothing (it allocated 5 more before). The
    // rest is the amortised growth of tables: the cancelled instances stay registered
    // until their tasks run, after this loop (doublings of the registry's map and of
    // tokio's run queue), and the buffers the first cancellation grows for reuse.
    assert!(
        (3 * 1000..3 * 1000 + 32).contains(&count),
        "{count} allocations for 1000 restartable invocations"
    );
    let last = handles.pop().unwrap();
    assert_eq!(last.await.unwrap(), 1001);
    for handle in handles {
        assert!(handle.await.unwrap_err().is_cancelled());
    }
}

#[tokio::test(flavor = "current_thread")]
async fn callers_sharing_a_live_instance_allocate_only_its_table_of_sharers() {
    let shared = pipeline!(|value: u64, _ctx: &()| {
        tokio::task::yield_now().await;
        value = inc(value);
    })
    .use_existing();
    let runtime = Runtime::builder(())
        .register("shared", shared)
        .start()
        .unwrap();
    let leader = runtime.invoke("shared", 7_u64).unwrap();
    let mut sharers = Vec::with_capacity(1000);
    let count = allocations_during(|| {
        for _ in 0..1000 {
            sharers.push(runtime.invoke("shared", 7_u64).unwrap());
        }
    });
    // A sharer waits on the live instance's control block: no channel, no block of its
    // own, no list of candidates. The first one makes the instance's table of sharers.
    assert_eq!(count, 1, "allocations for 1000 sharing invocations");
    let mut cx = std::task::Context::from_waker(futures::task::noop_waker_ref());
    let waiting = allocations_during(|| {
        for sharer in &mut sharers {
            assert!(std::pin::Pin::new(sharer).poll(&mut cx).is_pending());
        }
    });
    // Their wakers share one table in the control block, grown by doubling.
    assert!(
        waiting <= 11,
        "{waiting} allocations for 1000 waiting sharers"
    );
    assert_eq!(leader.await.unwrap(), 8);
    for sharer in sharers {
        assert_eq!(sharer.await.unwrap(), 8);
    }
}
