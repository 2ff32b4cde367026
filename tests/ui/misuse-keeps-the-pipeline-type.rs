use pipewright::{pipeline, Pipeline};

fn main() {
    // The pipeline with a misuse is still a `Pipeline<i32, ()>`: the code after it
    // type-checks as usual (only the deliberate mismatch on the last line is reported).
    let p = pipeline!(|value: i32, _ctx: &()| {
        let doubled = value * 2;
        doubled + 1;
    });
    let queued = p.enqueued().queue("work");
    let _wrong: Pipeline<String, ()> = queued;
}
