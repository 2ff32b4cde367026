//! What the runtime keeps on the heap once the work that needed it is gone, measured with
//! a counting global allocator (live bytes): a request shed by `LoadShed` leaves no waker
//! behind, and per-key queues give their memory back once their instances have ended.
//!
//! The count is the whole process's, so the tests of this file take turns (`serial`),
//! and each runs its own single-threaded tokio runtime.
// The counting allocator implements `GlobalAlloc`, an unsafe trait; it only forwards to
// the system allocator.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use pipewright::{pipeline, Runtime};
use tokio::sync::Semaphore;
use tower::load_shed::error::Overloaded;
use tower::load_shed::LoadShed;
use tower::ServiceExt;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(pointer, layout) }
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, size: usize) -> *mut u8 {
        LIVE.fetch_add(size as isize - layout.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(pointer, layout, size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// One test of this file at a time: the count of live bytes is the process's.
fn serial() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn live_bytes() -> isize {
    LIVE.load(Ordering::Relaxed)
}

fn tokio_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Sheds `count` requests, each from a task of its own (as a server serves each request),
/// through `LoadShed` around a clone of `service`, while its dropping queue is full.
async fn shed<S>(service: &LoadShed<S>, count: u32)
where
    S: tower::Service<u32> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::Response: Send,
{
    for value in 0..count {
        let request = tokio::spawn(service.clone().oneshot(value));
        let refused = request.await.unwrap().err().expect("shed");
        assert!(refused.is::<Overloaded>(), "{refused}");
    }
}

#[test]
fn a_shed_request_leaves_no_waker_behind() {
    let _turn = serial();
    tokio_runtime().block_on(async {
        let export = pipeline!(|value: u32, _ctx: &()| {
            std::future::pending::<()>().await;
            value = value;
        })
        .dropping();
        let runtime = Runtime::builder(())
            .register("export", export)
            .start()
            .unwrap();
        let service = runtime.handle::<u32>("export").unwrap().into_service();
        let shedding = LoadShed::new(service.clone());
        // The only slot is held for the whole test: every request is shed.
        let running = runtime.invoke("export", 0_u32).unwrap();
        // Warm up tokio's and the runtime's buffers.
        shed(&shedding, 100).await;
        let before = live_bytes();
        shed(&shedding, 10_000).await;
        let kept = live_bytes() - before;
        println!("10,000 shed requests: {kept:+} bytes");
        assert!(
            kept < 16 * 1024,
            "10,000 shed requests kept {kept} bytes ({} per request)",
            kept / 10_000
        );

        // A caller that waits for room is still woken when the slot frees.
        let waiter = tokio::spawn({
            let mut service = service.clone();
            async move { service.ready().await.map(|_| ()) }
        });
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(!waiter.is_finished());
        assert!(running.cancel());
        waiter.await.unwrap().unwrap();
    });
}

/// `rounds` rounds of `keys` distinct keys, each key's queue used by one instance; all of
/// a round's instances are live together (they wait on a gate), then the gate opens and
/// they all end. The live heap before the rounds (after warming up), and after each.
fn per_key_rounds(rounds: u32, keys: u32) -> (isize, Vec<isize>) {
    let tokio_runtime = tokio_runtime();
    tokio_runtime.block_on(async {
        let gate = Arc::new(Semaphore::new(0));
        let keyed = pipeline!(|value: u32, ctx: &Arc<Semaphore>| {
            {
                let gate = Arc::clone(ctx);
                async move {
                    drop(gate.acquire_owned().await);
                }
            }
            .await;
            value = value + 1;
        })
        .queue_by(|value: &u32| format!("user-{value}"));
        let fixed = keyed.clone().queue("warm-up");
        let runtime = Runtime::builder(Arc::clone(&gate)).start().unwrap();
        let round_of = |pipeline: pipewright::Pipeline<u32, Arc<Semaphore>>, from: u32, keys| {
            let (runtime, gate) = (runtime.clone(), Arc::clone(&gate));
            async move {
                let invocations: Vec<_> = (from..from + keys)
                    .map(|value| runtime.invoke_pipeline(&pipeline, value).unwrap())
                    .collect();
                gate.add_permits(keys as usize);
                for (invocation, value) in invocations.into_iter().zip(from..) {
                    assert_eq!(invocation.await.unwrap(), value + 1);
                }
                assert_eq!(runtime.live_counts().0, 0, "nothing live after a round");
            }
        };
        let round = |pipeline, from| round_of(pipeline, from, keys);
        // As many instances and tasks live at once, in a queue with a fixed name: tokio's
        // buffers and the registry's entry table grow to what a round needs (the queue
        // stays: a queue with a fixed name is kept).
        round(fixed, 0).await;
        // A few thousand keys: every shard of the registry has had a few dozen queues
        // and entries at once, and keeps the small tables it does not give back (so a
        // steady load does not reallocate them).
        round_of(keyed.clone(), 1 << 30, 4096).await;
        let before = live_bytes();
        let mut after = Vec::new();
        for number in 0..rounds {
            round(keyed.clone(), keys * (number + 1)).await;
            after.push(live_bytes());
        }
        (before, after)
    })
}

#[test]
fn distinct_per_key_queues_give_their_memory_back() {
    let _turn = serial();
    const ROUNDS: u32 = 5;
    const KEYS: u32 = 20_000;
    let (before, after) = per_key_rounds(ROUNDS, KEYS);
    let grown: Vec<isize> = after.iter().map(|heap| heap - before).collect();
    println!(
        "live heap after each round of {KEYS} keys, vs before: {grown:?} bytes ({} per key \
         after the first)",
        grown[0] / KEYS as isize
    );
    assert!(
        grown.iter().all(|grown| *grown < 256 * 1024),
        "the heap grew by {grown:?} bytes"
    );
    // Nothing accumulates from round to round.
    assert!(
        grown.last().unwrap() - grown[0] < 16 * 1024,
        "the heap crept by {} bytes over {} rounds",
        grown.last().unwrap() - grown[0],
        ROUNDS - 1
    );
}
