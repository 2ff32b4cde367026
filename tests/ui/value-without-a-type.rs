use pipewright::pipeline;

fn main() {
    let _p = pipeline!(|value, _ctx: &()| {
        value + 1_i32;
    });
}
