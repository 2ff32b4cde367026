use pipewright::pipeline;

fn main() {
    let _p = pipeline!(|value: i32, _ctx: &()| -> i32 {
        value = value + 1;
    });
}
