//! What the runtime keeps on the heap once the work that needed it is gone, measured with
//! a counting global allocator (live bytes): a request shed by `LoadShed` leaves no waker
//! behind.
//!
//! The count is the whole process's, so the tests of this file take turns (`serial`),
//! and each runs its own single-threaded tokio runtime.
// The counting allocator implements `GlobalAlloc`, an unsafe trait; it only forwards to
// the system allocator.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use pipelines::{pipeline, Runtime};
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
            value;
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
