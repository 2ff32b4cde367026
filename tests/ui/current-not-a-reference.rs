use pipewright::pipeline;

fn main() {
    let _p = pipeline!(|value: i32, _ctx: &(), current: pipewright::Current<i32, ()>| {
        value = value + 1;
    });
}
