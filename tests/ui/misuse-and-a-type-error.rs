use pipewright::{pipeline, Pipeline};

async fn fetch(value: i32) -> i32 {
    value
}

fn main() {
    // A misuse in one step hides nothing else: the other steps are still type-checked
    // (their type errors are reported with it), and the pipeline keeps its type.
    let p = pipeline!(|value: i32, _ctx: &()| {
        fetch(value).await + 1;
        value = "not an i32";
    });
    let _restartable: Pipeline<i32, ()> = p.restartable();
}
