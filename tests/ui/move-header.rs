use pipewright::pipeline;

fn main() {
    let _p = pipeline!(move |value: i32, _ctx: &()| {
        value = value + 1;
    });
}
