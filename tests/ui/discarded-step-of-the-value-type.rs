#![deny(deprecated)]

use std::sync::atomic::{AtomicU64, Ordering};

use pipewright::pipeline;

fn main() {
    let _p = pipeline!(|id: u64, calls: &AtomicU64| {
        calls.fetch_add(1, Ordering::SeqCst);
        id * 10;
    });
}
