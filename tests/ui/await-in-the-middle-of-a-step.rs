use pipewright::pipeline;

async fn fetch(value: i32) -> i32 {
    value
}

fn main() {
    let _p = pipeline!(|value: i32, _ctx: &()| {
        fetch(value).await + 1;
    });
}
