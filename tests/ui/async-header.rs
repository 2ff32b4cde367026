use pipewright::pipeline;

fn main() {
    let _p = pipeline!(async |value: i32, _ctx: &()| {
        value = value + 1;
    });
}
