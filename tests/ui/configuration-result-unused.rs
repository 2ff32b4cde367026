#![deny(unused_must_use)]

use pipewright::pipeline;

fn main() {
    let p = pipeline!(|value: i32, _ctx: &()| {
        value = value + 1;
    });
    // A configuration method returns the configured pipeline: alone, it does nothing.
    p.clone().restartable();
    let _kept = p.enqueued();
}
