use pipewright::pipeline;

fn main() {
    let _p = pipeline!(|value: i32, _ctx: &()| {
        value = value + 1;
        rescue!(|error, other| { value = 0; });
    });
}
