use pipewright::pipeline;

fn main() {
    let _p = pipeline!(|value: i32, _ctx: &()| value + 1);
}
