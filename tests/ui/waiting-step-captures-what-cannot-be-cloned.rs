use std::sync::atomic::{AtomicU32, Ordering};

use pipewright::pipeline;

async fn save(value: u32) -> u32 {
    value
}

fn main() {
    // A waiting step that names the value (or the context) runs inside its future, which
    // owns a clone of what the step captures: an `AtomicU32` cannot be cloned (share it
    // through an `Arc`, or the context).
    let calls = AtomicU32::new(0);
    let _p = pipeline!(|value: u32, _ctx: &()| {
        value = {
            calls.fetch_add(1, Ordering::SeqCst);
            save(value)
        }
        .await;
    });
}
